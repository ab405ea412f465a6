//! The Proxmox VE collector against the PVE API simulator: exact resources and values from
//! known answers, who reports cluster-wide objects, a migration that keeps the guest's id,
//! a node going away, and every failure mode giving degraded health with the last good
//! values marked stale (never zeros).

use std::path::Path;
use std::time::Duration;
use warden_agent::collectors::{CollectorsConfig, DockerConfig, HostConfig, ProxmoxConfig};
use warden_shared::telemetry::{HealthStatus, Value};
use warden_tests::collect::{resource, runtime, start, status, value};
use warden_tests::sim::pve::{Fault, PveSim, PveSimOptions};

const CLUSTER: &str = "clustername";

fn config(sim: &PveSim, dir: &Path, node: &str, pin: bool) -> CollectorsConfig {
    let (token_id, secret) = PveSimOptions::fast()
        .token
        .split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    let secret_file = dir.join(format!("{node}.secret"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let ca_file = dir.join("pve-root-ca.pem");
    std::fs::write(&ca_file, sim.ca_pem()).unwrap();
    CollectorsConfig {
        host: HostConfig {
            enabled: false,
            ..HostConfig::default()
        },
        docker: DockerConfig {
            enabled: false,
            ..DockerConfig::default()
        },
        proxmox: ProxmoxConfig {
            enabled: true,
            url: sim.base_url(),
            token_id,
            token_secret_file: secret_file,
            ca_file,
            fingerprint: pin.then(|| sim.cert_fingerprint()),
            node: Some(node.to_owned()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        },
        ..CollectorsConfig::default()
    }
}

#[test]
fn the_reporter_describes_the_cluster_and_others_describe_themselves() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let world = sim.world();
    runtime().block_on(async {
        let mut reporter = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let b = reporter
            .next_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;

        // Its own node, exactly as the API said.
        let n1 = world.nodes.iter().find(|n| n.name == "node1").unwrap();
        let node = resource(&b, "node:node1");
        assert_eq!(node.status, "online");
        assert!(
            node.attrs
                .contains(&("cluster".into(), Value::from(CLUSTER)))
        );
        assert_eq!(
            value(&b, "node:node1", "mem_used_bytes"),
            Some(n1.mem as f64)
        );
        assert_eq!(
            value(&b, "node:node1", "mem_total_bytes"),
            Some(n1.maxmem as f64)
        );
        assert!((value(&b, "node:node1", "cpu_pct").unwrap() - n1.cpu * 100.0).abs() < 1e-9);
        assert_eq!(
            value(&b, "node:node1", "load1"),
            n1.loadavg[0].parse().ok(),
            "loadavg arrives as strings"
        );

        // Every guest, named by cluster and VMID, with its node as parent.
        for g in &world.guests {
            let prefix = if g.kind.as_str() == "qemu" {
                "vm"
            } else {
                "lxc"
            };
            let id = format!("{prefix}:{CLUSTER}/{}", g.vmid);
            let r = resource(&b, &id);
            let ha = r.attrs.iter().any(|(k, _)| k == "ha_state");
            assert_eq!(ha, g.ha_managed, "{id}: ha_state only on HA-managed guests");
            assert_eq!(
                r.parent.as_ref().unwrap().as_str(),
                format!("node:{}", g.node)
            );
            assert_eq!(r.name, g.name);
            if g.running {
                assert_eq!(r.status, "running");
                assert_eq!(value(&b, &id, "mem_used_bytes"), Some(g.mem as f64), "{id}");
            } else {
                assert_eq!(r.status, "stopped");
                assert_eq!(
                    value(&b, &id, "cpu_pct"),
                    None,
                    "a stopped guest has no cpu sample"
                );
            }
        }
        // Node-local storage under the node, shared storage once under the cluster.
        for s in world
            .storages
            .iter()
            .filter(|s| s.node == "node1" && !s.shared)
        {
            let id = format!("storage:node1/{}", s.storage);
            assert_eq!(
                resource(&b, &id).parent.as_ref().unwrap().as_str(),
                "node:node1"
            );
            assert_eq!(value(&b, &id, "storage_used_bytes"), Some(s.used as f64));
            assert_eq!(value(&b, &id, "storage_total_bytes"), Some(s.total as f64));
        }
        let shared: Vec<_> = world
            .storages
            .iter()
            .filter(|s| s.shared)
            .map(|s| s.storage.clone())
            .collect();
        assert!(!shared.is_empty());
        for name in &shared {
            let id = format!("storage:{CLUSTER}/{name}");
            assert_eq!(
                b.resources.iter().filter(|r| r.id.as_str() == id).count(),
                1,
                "{id}"
            );
        }
        // Ceph: health and capacity as one storage resource of the cluster.
        let ceph_id = format!("storage:{CLUSTER}/ceph");
        assert_eq!(resource(&b, &ceph_id).status, "healthy");
        let ceph = world.ceph.clone().unwrap();
        assert_eq!(
            value(&b, &ceph_id, "storage_used_bytes"),
            ceph["pgmap"]["bytes_used"].as_f64()
        );
        assert_eq!(
            value(&b, &ceph_id, "ceph_osds_up"),
            ceph["osdmap"]["num_up_osds"].as_f64()
        );

        // Disks with SMART health; a wear-out of "N/A" is unknown, not zero.
        let disks: Vec<_> = b
            .resources
            .iter()
            .filter(|r| r.id.kind() == "disk")
            .collect();
        assert_eq!(disks.len(), world.disks.as_array().unwrap().len());
        assert!(
            disks
                .iter()
                .all(|d| d.parent.as_ref().unwrap().as_str() == "node:node1")
        );
        assert!(disks.iter().all(|d| d.status == "healthy"), "{disks:?}");
        assert!(
            b.samples.iter().all(|s| s.metric != "disk_wearout_pct"),
            "N/A wear-out is not a number"
        );
        assert_eq!(
            value(&b, "node:node1", "updates_pending"),
            Some(world.apt_updates.as_array().unwrap().len() as f64)
        );
        // The newest backup per guest on the shared backup storage, with its age.
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let backed_up: Vec<_> = world
            .backups
            .iter()
            .filter(|bk| {
                world
                    .storages
                    .iter()
                    .any(|s| s.storage == bk.storage && s.shared)
            })
            .collect();
        assert!(!backed_up.is_empty());
        for bk in &backed_up {
            let prefix = if bk.subtype == "lxc" { "lxc" } else { "vm" };
            let id = format!("{prefix}:{CLUSTER}/{}", bk.vmid);
            let newest = backed_up
                .iter()
                .filter(|o| o.vmid == bk.vmid && o.storage == bk.storage)
                .map(|o| o.ctime)
                .max()
                .unwrap();
            let count = backed_up
                .iter()
                .filter(|o| o.vmid == bk.vmid && o.storage == bk.storage)
                .count();
            let metric = format!("backup_last_age_seconds{{storage=\"{}\"}}", bk.storage);
            let age = value(&b, &id, &metric).unwrap_or_else(|| panic!("{metric} for {id}"));
            assert!(
                (age - (now_s - newest) as f64).abs() <= 5.0,
                "{id}: age {age}"
            );
            let metric = format!("backup_count{{storage=\"{}\"}}", bk.storage);
            assert_eq!(value(&b, &id, &metric), Some(count as f64));
        }
        // A Ceph warning shows with the check's name.
        sim.with_world(|w| {
            if let Some(c) = w.ceph.as_mut() {
                c["health"] = warden_tests::sim::pve::ceph_health_warn();
            }
        });
        let b = reporter
            .next_where("ceph warning", |b| {
                b.resources
                    .iter()
                    .any(|r| r.id.as_str() == ceph_id && r.status == "warning")
            })
            .await;
        assert!(
            resource(&b, &ceph_id)
                .attrs
                .contains(&("health_checks".into(), Value::from("OSD_NEARFULL")))
        );

        // A failed backup shows on the guest within one run.
        let victim = world.guests.iter().find(|g| g.node == "node1").unwrap();
        let prefix = if victim.kind.as_str() == "qemu" {
            "vm"
        } else {
            "lxc"
        };
        let victim_id = format!("{prefix}:{CLUSTER}/{}", victim.vmid);
        assert_eq!(value(&b, &victim_id, "backup_failed_24h"), Some(0.0));
        sim.add_failed_vzdump(
            "node1",
            victim.vmid,
            "job failed: storage 'pbs' is not online",
        );
        let b = reporter
            .next_where("the failed backup", |b| {
                value(b, &victim_id, "backup_failed_24h") == Some(1.0)
            })
            .await;
        assert!(value(&b, "node:node1", "tasks_failed_24h").unwrap() >= 1.0);
        reporter.stop();

        // Another node's agent (pinning the certificate instead of trusting the CA) reports
        // only itself: no guests, no shared storage.
        let mut other = start(&config(&sim, tmp.path(), "node2", true), "ignored-hostname");
        let b = other
            .next_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;
        assert!(b.resources.iter().any(|r| r.id.as_str() == "node:node2"));
        assert!(
            b.resources
                .iter()
                .all(|r| matches!(r.id.kind(), "node" | "storage" | "disk")),
            "{:?}",
            b.resources
        );
        assert!(b.resources.iter().all(|r| r.id.as_str() == "node:node2"
            || r.id.as_str().starts_with("storage:node2/")
            || r.id.as_str().starts_with("disk:node2/")));
        other.stop();
    });
}

#[test]
fn a_migrated_guest_keeps_its_id_and_a_lost_node_is_reported_offline() {
    let sim = PveSim::start(PveSimOptions::fast());
    // This cluster has no Ceph: PVE answers 500 "binary not installed", which is not a problem.
    sim.with_world(|w| w.ceph = None);
    let tmp = tempfile::tempdir().unwrap();
    let world = sim.world();
    let guest = world
        .guests
        .iter()
        .find(|g| g.kind.as_str() == "qemu" && g.node != "node3")
        .unwrap()
        .clone();
    let id = format!("vm:{CLUSTER}/{}", guest.vmid);
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let b = r
            .next_where("healthy", |b| status(b) == HealthStatus::Ok)
            .await;
        assert!(
            b.resources
                .iter()
                .all(|r| !r.id.as_str().ends_with("/ceph"))
        );
        assert_eq!(
            resource(&b, &id).parent.as_ref().unwrap().as_str(),
            format!("node:{}", guest.node)
        );

        assert!(sim.migrate(guest.vmid, "node3"));
        let b = r
            .next_where("the guest on node3", |b| {
                b.resources.iter().any(|x| {
                    x.id.as_str() == id
                        && x.parent
                            .as_ref()
                            .is_some_and(|p| p.as_str() == "node:node3")
                })
            })
            .await;
        assert_eq!(
            b.resources.iter().filter(|x| x.id.as_str() == id).count(),
            1,
            "one guest, same id"
        );

        sim.set_fault(Fault::NodeGone("node3".into()));
        let b = r
            .next_where("node3 offline", |b| {
                b.resources
                    .iter()
                    .any(|x| x.id.as_str() == "node:node3" && x.status == "offline")
            })
            .await;
        assert_eq!(
            status(&b),
            HealthStatus::Ok,
            "a lost peer is news, not a collector failure"
        );
        assert_eq!(
            resource(&b, &id).status,
            "unknown",
            "its guests' state is unknown, not stopped"
        );
        assert_eq!(value(&b, &id, "cpu_pct"), None);
        r.stop();
    });
}

#[test]
fn every_failure_mode_degrades_and_keeps_the_last_values_stale() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (Fault::BadToken, "authentication failed (401)"),
        (
            Fault::MissingPrivilege {
                path: "/nodes/node1".into(),
            },
            "Sys.Audit",
        ),
        (
            Fault::ServerError("cluster not ready - no quorum?".into()),
            "no quorum",
        ),
        (Fault::Slow(Duration::from_secs(3)), "did not answer within"),
        (Fault::MalformedJson, "malformed JSON"),
    ];
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let good = r
            .next_where("healthy", |b| status(b) == HealthStatus::Ok)
            .await;
        for (fault, expect) in cases {
            sim.set_fault(fault.clone());
            // Wait for this fault's reason: on a loaded machine a run may also time out
            // for its own reasons, which is not what this case is about.
            let b = r
                .next_where(&format!("degraded with {expect:?} under {fault:?}"), |b| {
                    status(b) != HealthStatus::Ok
                        && b.health
                            .as_ref()
                            .and_then(|h| h.message.as_deref())
                            .is_some_and(|m| m.contains(expect))
                })
                .await;
            let h = b.health.as_ref().unwrap();
            assert_eq!(h.status, HealthStatus::Degraded, "{fault:?}");
            assert!(
                h.message.as_deref().unwrap_or("").contains(expect),
                "{fault:?}: {:?}",
                h.message
            );
            assert!(b.samples.is_empty(), "{fault:?}: no values, never zeros");
            assert_eq!(
                b.resources.len(),
                good.resources.len(),
                "{fault:?}: the last good resources are kept"
            );
            assert!(
                b.resources
                    .iter()
                    .all(|x| x.attrs.contains(&("stale".into(), Value::Bool(true)))),
                "{fault:?}"
            );
            sim.clear_faults();
            let back = r
                .next_where("recovered", |b| status(b) == HealthStatus::Ok)
                .await;
            assert!(
                back.resources
                    .iter()
                    .all(|x| !x.attrs.iter().any(|(k, _)| k == "stale"))
            );
            assert!(!back.samples.is_empty());
        }
        r.stop();
    });
    // Without any good values yet, a failure is a plain failed run.
    let tmp2 = tempfile::tempdir().unwrap();
    sim.set_fault(Fault::BadToken);
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp2.path(), "node1", false),
            "ignored-hostname",
        );
        let b = r.next_where("a batch", |_| true).await;
        assert_eq!(status(&b), HealthStatus::Failed);
        assert!(b.resources.is_empty() && b.samples.is_empty());
        r.stop();
    });
}
