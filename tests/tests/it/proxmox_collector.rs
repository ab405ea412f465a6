//! The Proxmox VE collector against the PVE API simulator: exact resources and values from
//! known answers with the provenance of every metric, who reports cluster-wide objects, a
//! migration that keeps the guest's id, a node going away (with one writing agent per
//! resource throughout), and every failure mode giving degraded health with the last good
//! values the agent still owns marked stale (never zeros). The slow reads (SMART
//! temperatures, guest filesystems, certificates) report exact values at their own cadence,
//! within their budget, and end as Patrol findings when the simulator seeds trouble.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use warden_agent::collectors::{CollectorsConfig, DockerConfig, HostConfig, ProxmoxConfig};
use warden_shared::metric;
use warden_shared::resource::canonical;
use warden_shared::telemetry::{HealthStatus, ProvenancedBatch, Resource, TelemetryBatch, Value};
use warden_sim::pve::{Fault, PveSim, PveSimOptions, ReplicationJob, SmartKind, ZfsPool};
use warden_tests::collect::{
    Running, assert_provenance_complete, resource, runtime, start, status, value,
};
use warden_tests::{AgentProc, ServerProc, eventually};

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
            .next_provenanced_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;
        // Every metric says where it comes from.
        assert_provenance_complete(&b);
        assert!(b.provenance.iter().all(|p| p.source == "proxmox"));
        let b = b.batch;

        // Its own node, exactly as the API said.
        let n1 = world.nodes.iter().find(|n| n.name == "node1").unwrap();
        let node = resource(&b, "node:node1");
        assert_eq!(node.status, "online");
        assert!(
            node.attrs
                .contains(&("cluster".into(), Value::from(CLUSTER)))
        );
        assert_eq!(
            value(&b, "node:node1", metric::MEM_USED_BYTES),
            Some(n1.mem as f64)
        );
        assert_eq!(
            value(&b, "node:node1", metric::MEM_TOTAL_BYTES),
            Some(n1.maxmem as f64)
        );
        assert_eq!(
            value(&b, "node:node1", metric::CPU_PCT),
            Some(metric::round(metric::CPU_PCT, n1.cpu * 100.0))
        );
        assert_eq!(
            value(&b, "node:node1", metric::LOAD1),
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
                assert_eq!(
                    value(&b, &id, metric::MEM_USED_BYTES),
                    Some(g.mem as f64),
                    "{id}"
                );
            } else {
                assert_eq!(r.status, "stopped");
                assert_eq!(
                    value(&b, &id, metric::CPU_PCT),
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
            assert_eq!(
                value(&b, &id, metric::STORAGE_USED_BYTES),
                Some(s.used as f64)
            );
            assert_eq!(
                value(&b, &id, metric::STORAGE_TOTAL_BYTES),
                Some(s.total as f64)
            );
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
            value(&b, &ceph_id, metric::STORAGE_USED_BYTES),
            ceph["pgmap"]["bytes_used"].as_f64()
        );
        assert_eq!(
            value(&b, &ceph_id, metric::CEPH_OSDS_UP),
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
            b.samples
                .iter()
                .all(|s| s.metric != metric::DISK_WEAROUT_PCT),
            "N/A wear-out is not a number"
        );
        assert_eq!(
            value(&b, "node:node1", metric::UPDATES_PENDING),
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
            let metric = metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", &bk.storage);
            let age = value(&b, &id, &metric).unwrap_or_else(|| panic!("{metric} for {id}"));
            assert!(
                (age - (now_s - newest) as f64).abs() <= 5.0,
                "{id}: age {age}"
            );
            let metric = metric::labelled(metric::BACKUP_COUNT, "storage", &bk.storage);
            assert_eq!(value(&b, &id, &metric), Some(count as f64));
        }
        // A Ceph warning shows with the check's name.
        sim.with_world(|w| {
            if let Some(c) = w.ceph.as_mut() {
                c["health"] = warden_sim::pve::ceph_health_warn();
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
        assert_eq!(value(&b, &victim_id, metric::BACKUP_FAILED_24H), Some(0.0));
        sim.add_failed_vzdump(
            "node1",
            victim.vmid,
            "job failed: storage 'pbs' is not online",
        );
        let b = reporter
            .next_where("the failed backup", |b| {
                value(b, &victim_id, metric::BACKUP_FAILED_24H) == Some(1.0)
            })
            .await;
        assert!(value(&b, "node:node1", metric::TASKS_FAILED_24H).unwrap() >= 1.0);
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
                .all(|r| matches!(r.id.kind(), "node" | "storage" | "disk" | "replication")),
            "{:?}",
            b.resources
        );
        assert!(b.resources.iter().all(|r| {
            r.id.as_str() == "node:node2"
            || r.id.as_str().starts_with("storage:node2/")
            || r.id.as_str().starts_with("disk:node2/")
            // The replication job of its own guest 100.
            || r.id.as_str() == canonical::replication(CLUSTER, "100-0").unwrap().to_string()
        }));
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
        assert_eq!(value(&b, &id, metric::CPU_PCT), None);
        r.stop();
    });
}

#[test]
fn every_failure_mode_degrades_and_keeps_the_last_values_stale() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    // The third field: whether the failed run could still read `/cluster/status`, which
    // decides what the agent still owns and re-sends. (Every read after it that fails costs
    // only its part: see `a_missing_privilege_costs_only_what_needs_it`.)
    let cases = [
        (Fault::BadToken, "authentication failed (401)", false),
        (
            Fault::ServerError("cluster not ready - no quorum?".into()),
            "no quorum",
            false,
        ),
        (
            Fault::Slow(Duration::from_secs(3)),
            "did not answer within",
            false,
        ),
        (Fault::MalformedJson, "malformed JSON", false),
    ];
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let good = r
            .next_where("healthy", |b| status(b) == HealthStatus::Ok)
            .await;
        let node_local =
            |id: &str| id.starts_with("storage:node1/") || id.starts_with("disk:node1/");
        for (fault, expect, view_read) in cases {
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
            // The last good resources this agent still owns are kept. node1 is the reporter
            // and the cluster sees it online: with the view read, that is everything but the
            // replication jobs (whose guests may have moved meanwhile); without it, who owns
            // what cannot be known, so only what no other agent can own, its node-local
            // storage, pools and disks.
            let kept: Vec<&str> = good
                .resources
                .iter()
                .map(|x| x.id.as_str())
                .filter(|id| {
                    if view_read {
                        !id.starts_with("replication:")
                    } else {
                        node_local(id)
                    }
                })
                .collect();
            assert!(kept.iter().any(|id| node_local(id)), "{kept:?}");
            assert_eq!(
                sorted_ids(&b),
                sorted(kept),
                "{fault:?}: the last good resources this agent still owns are kept"
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

#[test]
fn a_missing_privilege_costs_only_what_needs_it() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let good = r
            .next_where("healthy", |b| status(b) == HealthStatus::Ok)
            .await;
        // Sys.Audit on /nodes/node1 guards the node's status, disks, tasks and updates.
        sim.set_fault(Fault::MissingPrivilege {
            path: "/nodes/node1".into(),
        });
        let b = r
            .next_where("degraded naming Sys.Audit", |b| {
                status(b) == HealthStatus::Degraded
                    && b.health
                        .as_ref()
                        .and_then(|h| h.message.as_deref())
                        .is_some_and(|m| m.contains("Sys.Audit"))
            })
            .await;
        let message = b.health.as_ref().unwrap().message.clone().unwrap();
        for part in ["/nodes/node1/status", "/nodes/node1/disks/list"] {
            assert!(message.contains(part), "{message}");
        }
        // The node is kept as it was, stale (its description comes only from its status);
        // the disks, whose list failed, are left out this time (the server keeps their last
        // description); the rest is fresh.
        let without_disks: Vec<&str> = sorted_ids(&good)
            .into_iter()
            .filter(|id| !id.starts_with("disk:"))
            .collect();
        assert_eq!(sorted_ids(&b), without_disks);
        let stale: Vec<&str> = b
            .resources
            .iter()
            .filter(|x| is_stale(x))
            .map(|x| x.id.as_str())
            .collect();
        assert_eq!(stale, vec!["node:node1"]);
        assert_eq!(value(&b, "node:node1", metric::MEM_USED_BYTES), None);
        for g in &sim.world().guests {
            let prefix = if g.kind.as_str() == "qemu" {
                "vm"
            } else {
                "lxc"
            };
            let id = format!("{prefix}:{CLUSTER}/{}", g.vmid);
            assert!(!is_stale(resource(&b, &id)), "{id}");
            assert_eq!(
                value(&b, &id, metric::MEM_TOTAL_BYTES),
                Some(g.maxmem as f64),
                "{id}"
            );
        }
        sim.clear_faults();
        let back = r
            .next_where("recovered", |b| status(b) == HealthStatus::Ok)
            .await;
        assert!(back.resources.iter().all(|x| !is_stale(x)));
        r.stop();
    });
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn job<'a>(world: &'a [ReplicationJob], id: &str) -> &'a ReplicationJob {
    world.iter().find(|j| j.id == id).unwrap()
}

fn attr<'a>(b: &'a TelemetryBatch, id: &str, key: &str) -> Option<&'a Value> {
    resource(b, id)
        .attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// A pool's samples are exactly what `/nodes/{node}/disks/zfs` said.
fn assert_pool(b: &TelemetryBatch, p: &ZfsPool) {
    let id = format!("storage:{}/zfs:{}", p.node, p.name);
    let r = resource(b, &id);
    assert_eq!(r.name, p.name);
    assert_eq!(
        r.parent.as_ref().unwrap().as_str(),
        format!("node:{}", p.node)
    );
    assert_eq!(r.status, p.health.to_lowercase());
    assert!(r.attrs.contains(&("plugin".into(), Value::from("zfs"))));
    let free = p.size - p.alloc;
    for (metric, want) in [
        (metric::STORAGE_TOTAL_BYTES, p.size as f64),
        (metric::STORAGE_USED_BYTES, p.alloc as f64),
        (metric::STORAGE_FREE_BYTES, free as f64),
        (
            metric::STORAGE_USED_PCT,
            p.alloc as f64 / p.size as f64 * 100.0,
        ),
        (metric::ZFS_FRAG_PCT, f64::from(p.frag)),
        (metric::ZFS_DEDUP_RATIO, p.dedup),
    ] {
        let want = metric::round(metric, want);
        assert_eq!(value(b, &id, metric), Some(want), "{id} {metric}");
    }
}

#[test]
fn replication_and_zfs_pools_come_from_the_node_that_owns_them() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let world = sim.world();
    runtime().block_on(async {
        // node3 runs CT 105, whose job to node4 keeps failing. It is not the reporter: it
        // describes the job, and puts the job's numbers on the guest, but not the guest.
        let mut n3 = start(
            &config(&sim, tmp.path(), "node3", false),
            "ignored-hostname",
        );
        let b = n3
            .next_provenanced_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;
        assert_provenance_complete(&b);
        let sourced = |b: &ProvenancedBatch, kind: &str, metric: &str| {
            b.provenance
                .iter()
                .any(|p| p.kind == kind && p.metric == metric && p.method.contains("GET /nodes/"))
        };
        for metric in [
            metric::REPLICATION_FAIL_COUNT,
            metric::REPLICATION_LAST_SYNC_AGE_SECONDS,
            metric::REPLICATION_LAST_DURATION_SECONDS,
        ] {
            assert!(sourced(&b, "lxc", metric), "{metric}");
        }
        for metric in [
            metric::STORAGE_FREE_BYTES,
            metric::ZFS_FRAG_PCT,
            metric::ZFS_DEDUP_RATIO,
        ] {
            assert!(sourced(&b, "storage", metric), "{metric}");
        }
        let b = b.batch;
        let failing = job(&world.replication, "105-0");
        let job_id = canonical::replication(CLUSTER, "105-0")
            .unwrap()
            .to_string();
        let guest = format!("lxc:{CLUSTER}/105");
        let r = resource(&b, &job_id);
        assert_eq!((r.name.as_str(), r.status.as_str()), ("105-0", "failing"));
        assert_eq!(r.parent.as_ref().unwrap().as_str(), guest);
        assert_eq!(
            attr(&b, &job_id, "error"),
            Some(&Value::from(failing.error.clone().unwrap()))
        );
        for (k, v) in [
            ("guest", Value::Int(105)),
            ("source", Value::from("node3")),
            ("target", Value::from("node4")),
            ("schedule", Value::from("*/30")),
            ("fail_count", Value::Int(3)),
            ("last_sync", Value::Int(failing.last_sync)),
            ("next_sync", Value::Int(failing.last_try + 1800)),
        ] {
            assert_eq!(attr(&b, &job_id, k), Some(&v), "{k}");
        }
        assert_eq!(
            value(
                &b,
                &guest,
                &metric::labelled(metric::REPLICATION_FAIL_COUNT, "job", "105-0")
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &b,
                &guest,
                &metric::labelled(metric::REPLICATION_LAST_DURATION_SECONDS, "job", "105-0")
            ),
            failing
                .duration
                .map(|d| metric::round(metric::REPLICATION_LAST_DURATION_SECONDS, d))
        );
        let age = value(
            &b,
            &guest,
            &metric::labelled(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, "job", "105-0"),
        )
        .unwrap();
        assert!(
            ((now_s() - failing.last_sync) as f64 - age).abs() <= 5.0,
            "age {age}"
        );
        assert!(
            b.resources
                .iter()
                .all(|r| !matches!(r.id.kind(), "vm" | "lxc")),
            "the guest itself is the reporter's"
        );
        for p in world.zfs_pools.iter().filter(|p| p.node == "node3") {
            assert_pool(&b, p);
        }
        assert!(attr(&b, "storage:node3/zfs:rpool", "zpool_status").is_none());
        n3.stop();

        // node1 (the reporter): its never-synced job 102-0 and its degraded pool.
        sim.freeze_clock(sim.now());
        let mut n1 = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let b = n1
            .next_provenanced_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;
        assert_provenance_complete(&b);
        let b = b.batch;
        let pending = canonical::replication(CLUSTER, "102-0")
            .unwrap()
            .to_string();
        assert_eq!(resource(&b, &pending).status, "pending");
        assert_eq!(attr(&b, &pending, "last_sync"), None);
        let vm102 = format!("vm:{CLUSTER}/102");
        assert_eq!(
            value(
                &b,
                &vm102,
                &metric::labelled(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, "job", "102-0")
            ),
            None,
            "never synced: no age, not 0"
        );
        assert_eq!(
            value(
                &b,
                &vm102,
                &metric::labelled(metric::REPLICATION_FAIL_COUNT, "job", "102-0")
            ),
            Some(0.0)
        );
        let jobs: Vec<_> = b
            .resources
            .iter()
            .filter(|r| r.id.kind() == "replication")
            .collect();
        assert_eq!(jobs.len(), 1, "only the jobs of node1's guests: {jobs:?}");
        for p in world.zfs_pools.iter().filter(|p| p.node == "node1") {
            assert_pool(&b, p);
        }
        let tank = "storage:node1/zfs:tank";
        assert_eq!(resource(&b, tank).status, "degraded");
        assert_eq!(
            attr(&b, tank, "zpool_action"),
            Some(&Value::from("Replace the device using 'zpool replace'."))
        );
        let bad = match attr(&b, tank, "zpool_bad_devices") {
            Some(Value::Text(t)) => t.clone(),
            other => panic!("{other:?}"),
        };
        assert!(
            bad.starts_with("8211457322491634120 (UNAVAIL, was /dev/disk/by-id/ata-ST4000VN008"),
            "{bad}"
        );
        // Not a PVE storage of the same kind of name.
        assert!(
            b.resources
                .iter()
                .any(|r| r.id.as_str() == "storage:node1/local-zfs")
        );

        // A storage filling at a steady rate, seen through the collector (frozen sim clock).
        let local = world
            .storages
            .iter()
            .find(|s| s.node == "node1" && s.storage == "local")
            .unwrap();
        assert!(sim.set_storage_fill_rate("node1", "local", 36_000_000_000.0));
        sim.advance_clock(Duration::from_secs(600));
        let want = (local.used + 6_000_000_000) as f64;
        n1.next_where("local grown by 10 minutes of filling", |b| {
            value(b, "storage:node1/local", metric::STORAGE_USED_BYTES) == Some(want)
        })
        .await;

        // A migration takes the job along: now node1 reports 105-0.
        assert!(sim.migrate(105, "node1"));
        let b = n1
            .next_where("105-0 from node1", |b| {
                b.resources.iter().any(|r| r.id.as_str() == job_id)
            })
            .await;
        assert_eq!(attr(&b, &job_id, "source"), Some(&Value::from("node1")));
        n1.stop();
    });
}

#[test]
fn replication_and_zfs_failures_degrade_the_run_and_keep_everything_else() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let path_error = |prefix: &str, status: u16, reason: &str| Fault::PathError {
        prefix: prefix.into(),
        status,
        reason: reason.into(),
    };
    let cases = [
        (
            path_error(
                "/nodes/node1/replication",
                500,
                "cfs-lock 'file-replication_cfg' error: got lock request timeout",
            ),
            "GET /nodes/node1/replication: HTTP 500 cfs-lock 'file-replication_cfg' error",
        ),
        (
            path_error(
                "/nodes/node1/replication",
                403,
                "Permission check failed (/vms/102, VM.Audit)",
            ),
            "GET /nodes/node1/replication: permission denied (403 Permission check failed (/vms/102, VM.Audit))",
        ),
        (
            path_error(
                "/nodes/node1/disks/zfs",
                403,
                "Permission check failed (/, Sys.Audit)",
            ),
            "GET /nodes/node1/disks/zfs: permission denied (403 Permission check failed (/, Sys.Audit)); give the token the PVEAuditor role on /",
        ),
        (
            path_error(
                "/nodes/node1/disks/zfs",
                500,
                "command '/sbin/zpool list -HpPLo name,size,alloc,free,frag,dedup,health' failed: got timeout",
            ),
            "GET /nodes/node1/disks/zfs: HTTP 500 command '/sbin/zpool list",
        ),
        (
            path_error(
                "/nodes/node1/disks/zfs/tank",
                500,
                "command '/sbin/zpool status -P tank' failed: got timeout",
            ),
            "GET /nodes/node1/disks/zfs/tank: HTTP 500",
        ),
    ];
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let good = r
            .next_where("healthy", |b| status(b) == HealthStatus::Ok)
            .await;
        let is_job = |id: &str| id.starts_with("replication:");
        let is_pool = |id: &str| id.starts_with("storage:node1/zfs:");
        for (fault, expect) in cases {
            sim.set_fault(fault.clone());
            let b = r
                .next_where(&format!("degraded with {expect:?}"), |b| {
                    b.health
                        .as_ref()
                        .and_then(|h| h.message.as_deref())
                        .is_some_and(|m| m.contains(expect))
                })
                .await;
            assert_eq!(status(&b), HealthStatus::Degraded, "{fault:?}");
            assert!(
                b.resources
                    .iter()
                    .all(|x| !x.attrs.iter().any(|(k, _)| k == "stale")),
                "{fault:?}: a partial failure is not a stale run"
            );
            // Everything the failing endpoint does not feed is still there, with values.
            for x in good.resources.iter() {
                let id = x.id.as_str();
                let fed = match &fault {
                    Fault::PathError { prefix, .. } if prefix.ends_with("/replication") => {
                        is_job(id)
                    }
                    Fault::PathError { prefix, .. } if prefix.ends_with("/disks/zfs") => {
                        is_pool(id)
                    }
                    _ => false,
                };
                assert_eq!(
                    b.resources.iter().any(|y| y.id == x.id),
                    !fed,
                    "{fault:?}: {id}"
                );
            }
            assert_eq!(
                value(&b, "node:node1", metric::MEM_TOTAL_BYTES),
                value(&good, "node:node1", metric::MEM_TOTAL_BYTES)
            );
            match &fault {
                Fault::PathError { prefix, .. } if prefix.ends_with("/replication") => {
                    assert!(
                        b.samples
                            .iter()
                            .all(|s| !s.metric.starts_with("replication_")),
                        "no replication numbers, not zeros"
                    );
                    assert!(b.resources.iter().any(|x| is_pool(x.id.as_str())));
                }
                Fault::PathError { prefix, .. } if prefix.ends_with("/disks/zfs") => {
                    assert!(b.samples.iter().all(|s| !is_pool(s.resource_id.as_str())));
                    assert!(b.resources.iter().any(|x| is_job(x.id.as_str())));
                }
                _ => {
                    // Only the detail failed: the pool is there with its health, without
                    // zpool status's texts.
                    let tank = resource(&b, "storage:node1/zfs:tank");
                    assert_eq!(tank.status, "degraded");
                    assert!(tank.attrs.iter().all(|(k, _)| !k.starts_with("zpool_")));
                    assert!(
                        value(&b, "storage:node1/zfs:tank", metric::STORAGE_USED_BYTES).is_some()
                    );
                }
            }
            sim.clear_faults();
            r.next_where("recovered", |b| status(b) == HealthStatus::Ok)
                .await;
        }

        // A node without the ZFS tools has no pools; that is not a problem.
        sim.set_fault(path_error(
            "/nodes/node1/disks/zfs",
            500,
            "zfsutils-linux not installed",
        ));
        let b = r
            .next_where("no pools", |b| {
                !b.resources.iter().any(|x| is_pool(x.id.as_str()))
            })
            .await;
        assert_eq!(status(&b), HealthStatus::Ok, "{:?}", b.health);
        r.stop();
    });
}

fn sorted(mut ids: Vec<&str>) -> Vec<&str> {
    ids.sort_unstable();
    ids
}

fn sorted_ids(b: &TelemetryBatch) -> Vec<&str> {
    sorted(b.resources.iter().map(|r| r.id.as_str()).collect())
}

fn has(b: &TelemetryBatch, id: &str) -> bool {
    b.resources.iter().any(|r| r.id.as_str() == id)
}

fn is_stale(r: &Resource) -> bool {
    r.attrs.contains(&("stale".into(), Value::Bool(true)))
}

/// No resource is described by both agents: the server keeps the last description it gets,
/// so two writers would make it flap.
fn assert_one_writer(a: &TelemetryBatch, b: &TelemetryBatch) {
    let both: Vec<&str> = sorted_ids(a).into_iter().filter(|id| has(b, id)).collect();
    assert!(both.is_empty(), "described by two agents: {both:?}");
}

fn message(b: &TelemetryBatch) -> &str {
    b.health
        .as_ref()
        .and_then(|h| h.message.as_deref())
        .unwrap_or("")
}

#[test]
fn a_node_its_own_agent_cannot_read_is_described_only_by_the_reporter() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let ok = |b: &TelemetryBatch| status(b) == HealthStatus::Ok;
    runtime().block_on(async {
        let mut n1 = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let mut n3 = start(
            &config(&sim, tmp.path(), "node3", false),
            "ignored-hostname",
        );
        let b1 = n1.next_where("node1 healthy", ok).await;
        let b3 = n3.next_where("node3 healthy", ok).await;
        assert_eq!(resource(&b3, "node:node3").status, "online");
        assert!(
            has(&b1, &format!("vm:{CLUSTER}/100")),
            "node1 is the reporter"
        );
        assert_one_writer(&b1, &b3);

        // node3 drops out: the cluster sees it offline and its own API answers 595 for it.
        sim.stop_node("node3");
        let b1 = n1
            .next_where("node3 offline from the reporter", |b| {
                b.resources
                    .iter()
                    .any(|r| r.id.as_str() == "node:node3" && r.status == "offline")
            })
            .await;
        assert_eq!(status(&b1), HealthStatus::Ok);
        for _ in 0..3 {
            // Several runs: the status must not flap between the two agents' reports.
            let b3 = n3
                .next_where("node3's agent failing", |b| message(b).contains("595"))
                .await;
            assert_eq!(status(&b3), HealthStatus::Degraded);
            assert!(
                !has(&b3, "node:node3"),
                "node:node3 is the reporter's while the cluster sees node3 offline"
            );
            assert!(
                !b3.resources.iter().any(|r| r.id.kind() == "replication"),
                "a job follows its guest, which a failed run cannot see"
            );
            // What nobody else describes stays, marked stale.
            assert!(!b3.resources.is_empty());
            assert!(
                b3.resources.iter().all(|r| is_stale(r)
                    && (r.id.as_str().starts_with("storage:node3/")
                        || r.id.as_str().starts_with("disk:node3/"))),
                "{:?}",
                sorted_ids(&b3)
            );
            let b1 = n1.next_where("a reporter batch", ok).await;
            assert_eq!(resource(&b1, "node:node3").status, "offline");
            assert_one_writer(&b1, &b3);
        }

        // node3 is back: it describes itself again, and the reporter no longer does.
        sim.start_node("node3");
        // (A run that read the view just before may still leave the node to the reporter.)
        let b3 = n3
            .next_where("node3 back", |b| ok(b) && has(b, "node:node3"))
            .await;
        assert_eq!(resource(&b3, "node:node3").status, "online");
        let b1 = n1
            .next_where("node3 online to the reporter", |b| {
                ok(b) && !has(b, "node:node3")
            })
            .await;
        assert_one_writer(&b1, &b3);
        n1.stop();
        n3.stop();
    });
}

#[test]
fn a_reporter_the_cluster_lost_leaves_the_cluster_and_its_node_to_the_next() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let ok = |b: &TelemetryBatch| status(b) == HealthStatus::Ok;
    let vm100 = format!("vm:{CLUSTER}/100");
    runtime().block_on(async {
        let mut n1 = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let mut n2 = start(
            &config(&sim, tmp.path(), "node2", false),
            "ignored-hostname",
        );
        let b1 = n1.next_where("node1 healthy", ok).await;
        let b2 = n2.next_where("node2 healthy", ok).await;
        assert!(has(&b1, &vm100) && !has(&b2, &vm100));
        assert_one_writer(&b1, &b2);

        // node1 cannot read its own node's status, but the cluster still sees it online: it
        // stays the reporter, keeps its node as it was (stale) and reads everything else.
        sim.set_fault(Fault::PathError {
            prefix: "/nodes/node1/status".into(),
            status: 595,
            reason: "No route to host".into(),
        });
        let b1 = n1
            .next_where("node1 degraded", |b| message(b).contains("595"))
            .await;
        assert_eq!(status(&b1), HealthStatus::Degraded);
        let stale: Vec<&str> = b1
            .resources
            .iter()
            .filter(|r| is_stale(r))
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(stale, vec!["node:node1"]);
        assert!(value(&b1, &vm100, metric::MEM_TOTAL_BYTES).is_some());
        let b2 = n2.next_where("node2", ok).await;
        assert_one_writer(&b1, &b2);

        // Now the cluster loses node1 too: node2 takes over the cluster and describes node1
        // as offline; node1 sends neither, only what is its own.
        sim.stop_node("node1");
        let b2 = n2
            .next_where("node2 reporting node1 offline", |b| {
                b.resources
                    .iter()
                    .any(|r| r.id.as_str() == "node:node1" && r.status == "offline")
            })
            .await;
        assert!(has(&b2, &vm100), "node2 is the reporter now");
        let b1 = n1
            .next_where("node1 without the cluster", |b| {
                message(b).contains("595") && !has(b, "node:node1") && !has(b, &vm100)
            })
            .await;
        assert!(!b1.resources.is_empty() && b1.resources.iter().all(|r| !is_stale(r)));
        assert!(
            b1.resources.iter().all(|r| {
                let id = r.id.as_str();
                id.starts_with("storage:node1/")
                    || id.starts_with("disk:node1/")
                    || id.starts_with("replication:")
            }),
            "{:?}",
            sorted_ids(&b1)
        );
        assert_one_writer(&b1, &b2);

        // node1's API answers again while the cluster still sees it offline (it is the
        // simulator's local node): it measures itself, but node2 describes it.
        sim.clear_faults();
        let b1 = n1.next_where("node1 healthy again", ok).await;
        assert!(!has(&b1, "node:node1") && !has(&b1, &vm100));
        // Its pools, disks and storage, and the job of its guest 102: nothing of the cluster.
        let own_job = canonical::replication(CLUSTER, "102-0")
            .unwrap()
            .to_string();
        assert!(has(&b1, &own_job));
        assert!(
            b1.resources.iter().all(|r| {
                let id = r.id.as_str();
                id.starts_with("storage:node1/") || id.starts_with("disk:node1/") || id == own_job
            }),
            "{:?}",
            sorted_ids(&b1)
        );
        assert!(value(&b1, "node:node1", metric::MEM_USED_BYTES).is_some());
        let b2 = n2.next_where("node2", ok).await;
        assert_eq!(resource(&b2, "node:node1").status, "offline");
        assert_one_writer(&b1, &b2);

        // node1 rejoins: the reporter again, describing itself.
        sim.start_node("node1");
        let b1 = n1
            .next_where("node1 reporting again", |b| ok(b) && has(b, &vm100))
            .await;
        assert_eq!(resource(&b1, "node:node1").status, "online");
        let b2 = n2
            .next_where("node2 no longer reporting", |b| ok(b) && !has(b, &vm100))
            .await;
        assert_one_writer(&b1, &b2);
        n1.stop();
        n2.stop();
    });
}

/// Samples by (resource id, metric) → (value, time), gathered from healthy batches until
/// every `want`ed one has arrived: slow reads that do not fit one run's budget (a loaded
/// machine) continue in the next.
async fn gather(
    r: &mut Running,
    want: &[(String, String)],
) -> BTreeMap<(String, String), (f64, i64)> {
    let mut got = BTreeMap::new();
    for _ in 0..20 {
        let b = r
            .next_provenanced_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;
        assert_provenance_complete(&b);
        for s in &b.batch.samples {
            got.insert(
                (s.resource_id.as_str().to_owned(), s.metric.clone()),
                (s.value, s.ts_ms),
            );
        }
        if want.iter().all(|k| got.contains_key(k)) {
            return got;
        }
    }
    let missing: Vec<_> = want.iter().filter(|k| !got.contains_key(*k)).collect();
    panic!("never reported: {missing:?}");
}

fn key(id: &str, metric: &str) -> (String, String) {
    (id.to_owned(), metric.to_owned())
}

/// Trouble seeded in the simulator before an agent for node1 starts: a hot SATA drive, an
/// NVMe drive, an ACME certificate expiring in 5 days, container 106's root disk at 94.6 %,
/// and VM 100 moved to node1 with its root filesystem at 90 %. Returns VM 100's root
/// filesystem size.
fn seed_trouble(sim: &PveSim) -> u64 {
    assert!(sim.set_disk_temperature("/dev/sdb", 61));
    sim.with_world(|w| {
        let d = w
            .smart
            .iter_mut()
            .find(|d| d.devpath == "/dev/sdc")
            .unwrap();
        d.kind = SmartKind::Nvme;
        d.temperature = Some(47);
    });
    assert!(sim.set_cert_expiry("node1", "pveproxy-ssl.pem", sim.now() + 5 * 86_400));
    assert!(sim.set_guest_disk(106, "/", 7_900_000_000));
    // On node1, node1's agent asks VM 100's guest agent.
    assert!(sim.migrate(100, "node1"));
    let total = sim
        .world()
        .guests
        .iter()
        .find(|g| g.vmid == 100)
        .unwrap()
        .agent
        .as_ref()
        .unwrap()
        .filesystems[0]
        .total;
    assert!(sim.set_guest_disk(100, "/", total / 10 * 9));
    total
}

#[test]
fn slow_reads_report_disk_temperatures_guest_disks_and_certificates_exactly() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    seed_trouble(&sim);
    let world = sim.world();
    let vm = format!("vm:{CLUSTER}/100");
    let fs_metric = |m: &str, mount: &str| metric::labelled(m, "mountpoint", mount);
    let mut want = vec![
        key("disk:node1/drive-scsi0", metric::DISK_TEMP_CELSIUS),
        key("disk:node1/drive-scsi1", metric::DISK_TEMP_CELSIUS),
        key("disk:node1/drive-scsi2", metric::DISK_TEMP_CELSIUS),
        key(&vm, &fs_metric(metric::GUEST_FS_USED_PCT, "/")),
    ];
    let certs: Vec<_> = world
        .certificates
        .iter()
        .filter(|c| c.node.as_deref().is_none_or(|n| n == "node1"))
        .collect();
    assert_eq!(certs.len(), 3);
    for c in &certs {
        let metric = metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", &c.filename);
        want.push(key("node:node1", &metric));
    }
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        let got = gather(&mut r, &want).await;
        let v = |id: &str, metric: &str| got.get(&key(id, metric)).map(|x| x.0);

        // SMART: SAS, SATA (attribute 194) and NVMe text, each exactly.
        assert_eq!(
            v("disk:node1/drive-scsi0", metric::DISK_TEMP_CELSIUS),
            Some(31.0)
        );
        assert_eq!(
            v("disk:node1/drive-scsi1", metric::DISK_TEMP_CELSIUS),
            Some(61.0)
        );
        assert_eq!(
            v("disk:node1/drive-scsi2", metric::DISK_TEMP_CELSIUS),
            Some(47.0)
        );

        // Certificates: the time left when the sample was taken.
        for c in &certs {
            let metric = metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", &c.filename);
            let (left, ts) = got[&key("node:node1", &metric)];
            let want = metric::round(&metric, c.notafter as f64 - ts as f64 / 1000.0);
            assert_eq!(left, want, "{metric}");
        }

        // Containers: the root disk from /cluster/resources, running ones only.
        for g in world.guests.iter().filter(|g| g.kind.as_str() == "lxc") {
            let id = format!("lxc:{CLUSTER}/{}", g.vmid);
            if g.running {
                assert_eq!(v(&id, metric::DISK_USED_BYTES), Some(g.disk as f64), "{id}");
                assert_eq!(
                    v(&id, metric::DISK_USED_PCT),
                    Some(metric::round(
                        metric::DISK_USED_PCT,
                        g.disk as f64 / g.maxdisk as f64 * 100.0
                    )),
                    "{id}"
                );
            } else {
                assert_eq!(v(&id, metric::DISK_USED_PCT), None, "{id}");
            }
        }
        assert_eq!(
            v(&format!("lxc:{CLUSTER}/106"), metric::DISK_USED_BYTES),
            Some(7.9e9)
        );

        // VM 100: what its guest agent says, per filesystem; the snap image is left out.
        let fs = &world
            .guests
            .iter()
            .find(|g| g.vmid == 100)
            .unwrap()
            .agent
            .as_ref()
            .unwrap()
            .filesystems;
        for f in fs.iter().filter(|f| f.fstype != "squashfs") {
            let m = &f.mountpoint;
            assert_eq!(
                v(&vm, &fs_metric(metric::GUEST_FS_USED_BYTES, m)),
                Some(f.used as f64),
                "{m}"
            );
            assert_eq!(
                v(&vm, &fs_metric(metric::GUEST_FS_TOTAL_BYTES, m)),
                Some(f.total as f64),
                "{m}"
            );
            assert_eq!(
                v(&vm, &fs_metric(metric::GUEST_FS_USED_PCT, m)),
                Some(metric::round(
                    metric::GUEST_FS_USED_PCT,
                    f.used as f64 / f.total as f64 * 100.0
                )),
                "{m}"
            );
        }
        assert!(
            got.keys().all(|(_, m)| !m.contains("/snap/")),
            "read-only images skipped"
        );
        assert!(
            got.keys()
                .all(|(id, m)| !m.starts_with("guest_fs_") || *id == vm),
            "only VM 100 runs on node1 with an agent"
        );
        assert_eq!(
            v(&vm, metric::DISK_USED_PCT),
            None,
            "a VM's disk in /cluster/resources is 0"
        );

        // Slow reads are not repeated every run: a cooler drive shows only at the next SMART
        // read, minutes away; the certificate countdown goes on every run.
        assert!(sim.set_disk_temperature("/dev/sdb", 40));
        for _ in 0..3 {
            let b = r
                .next_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
                .await;
            assert!(
                b.samples
                    .iter()
                    .all(|s| s.metric != metric::DISK_TEMP_CELSIUS)
            );
            assert!(
                b.samples
                    .iter()
                    .any(|s| s.metric.starts_with(metric::CERT_EXPIRES_IN_SECONDS))
            );
        }
        r.stop();
    });
}

#[test]
fn a_hanging_guest_agent_costs_its_budget_not_the_run() {
    let sim = PveSim::start(PveSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    assert!(sim.migrate(100, "node1"));
    // Longer than the whole run may take (1 s).
    sim.set_fault(Fault::SlowPath {
        prefix: "/nodes/node1/qemu/100/agent".into(),
        delay: Duration::from_secs(3),
    });
    let vm = format!("vm:{CLUSTER}/100");
    runtime().block_on(async {
        let mut r = start(
            &config(&sim, tmp.path(), "node1", false),
            "ignored-hostname",
        );
        for _ in 0..3 {
            let b = r.next_where("a batch", |_| true).await;
            assert_eq!(status(&b), HealthStatus::Ok, "{:?}", b.health);
            assert!(value(&b, &vm, metric::MEM_USED_BYTES).is_some());
            assert!(b.samples.iter().all(|s| !s.metric.starts_with("guest_fs_")));
        }
        // The read stayed due: once the agent answers, the next run has it.
        sim.clear_faults();
        r.next_where("VM 100's filesystems", |b| {
            value(
                b,
                &vm,
                &metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/"),
            )
            .is_some()
        })
        .await;
        r.stop();
    });
}

/// The findings API's (key, severity) per resource id.
fn findings(server: &ServerProc) -> BTreeMap<String, Vec<(String, String)>> {
    let (s, v) = server.get("/api/ai/patrol/findings?limit=500");
    assert_eq!(s, 200, "{v}");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for f in v["items"].as_array().unwrap() {
        out.entry(f["resource_id"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                f["key"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
            ));
    }
    out
}

/// A real server and a real agent for node1 reading `sim` every `every` (also its
/// timeout), enrolled and started.
fn server_and_agent(sim: &PveSim, dir: &Path, every: &str) -> (ServerProc, AgentProc) {
    let server = ServerProc::start(&dir.join("server"), &[]);
    let (token_id, secret) = PveSimOptions::fast()
        .token
        .split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    let secret_file = dir.join("pve.secret");
    warden_io::fs::write_private(&secret_file, format!("{secret}\n").as_bytes()).unwrap();
    let mut agent = AgentProc::new(
        &dir.join("agent"),
        &format!(
            "hostname = \"node1\"\n[collectors.host]\nenabled = false\n[collectors.docker]\nenabled = false\n\
             [collectors.proxmox]\nenabled = true\nurl = \"{}\"\ntoken_id = \"{token_id}\"\n\
             token_secret_file = \"{}\"\nfingerprint = \"{}\"\nnode = \"node1\"\ninterval = \"{every}\"\ntimeout = \"{every}\"\n",
            sim.base_url(),
            secret_file.display(),
            sim.cert_fingerprint()
        ),
    );
    agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    (server, agent)
}

/// End to end: the seeded trouble read by a real agent and stored by a real server becomes
/// Patrol findings with the default thresholds.
#[test]
fn seeded_trouble_becomes_patrol_findings() {
    let sim = PveSim::start(PveSimOptions::fast());
    seed_trouble(&sim);
    let tmp = tempfile::tempdir().unwrap();
    let (server, _agent) = server_and_agent(&sim, tmp.path(), "2s");
    let stored = |id: &str, metric: &str| {
        let (s, v) = server.get(&format!("/api/resources/{id}"));
        s == 200 && v["metrics"][metric]["value"].is_number()
    };
    let vm = format!("vm:{CLUSTER}/100");
    let ct = format!("lxc:{CLUSTER}/106");
    eventually(Duration::from_secs(30), "the slow reads stored", || {
        (stored("disk:node1/drive-scsi1", metric::DISK_TEMP_CELSIUS)
            && stored(
                &vm,
                &metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/"),
            )
            && stored(&ct, metric::DISK_USED_PCT)
            && stored(
                "node:node1",
                &metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", "pveproxy-ssl.pem"),
            ))
        .then_some(())
    });
    let (s, run) = server.post("/api/ai/patrol/run", None);
    assert_eq!(s, 200, "{run}");
    let f = findings(&server);
    let has = |id: &str, key: &str, severity: &str| {
        f.get(id)
            .is_some_and(|v| v.contains(&(key.to_owned(), severity.to_owned())))
    };
    assert!(has(&ct, "guest-disk", "critical"), "{f:?}");
    assert!(has(&vm, "guest-disk", "warning"), "{f:?}");
    assert!(
        has("disk:node1/drive-scsi1", "disk-temperature", "warning"),
        "{f:?}"
    );
    assert!(has("node:node1", "certificate-expiry", "warning"), "{f:?}");
    // Healthy neighbours raise nothing of these kinds: the cool drives, the NVMe drive at
    // 47 °C, the other containers, the CA and node certificate.
    for (id, list) in &f {
        for (key, _) in list {
            if matches!(
                key.as_str(),
                "guest-disk" | "disk-temperature" | "certificate-expiry"
            ) {
                assert!(
                    [
                        ct.as_str(),
                        vm.as_str(),
                        "disk:node1/drive-scsi1",
                        "node:node1"
                    ]
                    .contains(&id.as_str()),
                    "{id}: {key}"
                );
            }
        }
    }
}

/// The metric `metric` of resource `id` as the server stores it.
fn stored_value(server: &ServerProc, id: &str, metric: &str) -> Option<f64> {
    let (s, v) = server.get(&format!("/api/resources/{id}"));
    (s == 200).then(|| v["metrics"][metric]["value"].as_f64())?
}

/// smartctl calls a failing drive `FAILED!`, and PVE passes that on: the disk is failing
/// and Patrol says so.
#[test]
fn a_disk_smartctl_calls_failed_is_failing() {
    let sim = PveSim::start(PveSimOptions::fast());
    assert!(sim.set_disk_health("/dev/sdb", "FAILED!"));
    let tmp = tempfile::tempdir().unwrap();
    let (server, _agent) = server_and_agent(&sim, tmp.path(), "2s");
    let disk = "disk:node1/drive-scsi1";
    let r = eventually(Duration::from_secs(30), "the disks stored", || {
        let (s, v) = server.get(&format!("/api/resources/{disk}"));
        (s == 200).then_some(v)
    });
    assert_eq!(r["status"], "failing", "{r}");
    assert_eq!(r["attrs"]["health"], "FAILED!", "{r}");
    // Its healthy neighbours stay healthy.
    let (_, ok) = server.get("/api/resources/disk:node1/drive-scsi0");
    assert_eq!(ok["status"], "healthy", "{ok}");
    let (s, run) = server.post("/api/ai/patrol/run", None);
    assert_eq!(s, 200, "{run}");
    let f = findings(&server);
    assert!(
        f.get(disk)
            .is_some_and(|v| v.contains(&("disk-health".to_owned(), "critical".to_owned()))),
        "{f:?}"
    );
}

/// A scheduled backup job runs as one task without a VMID; its log says which guests
/// failed. Those get `backup_failed_24h`, and a failed job whose log names nobody counts at
/// the node.
#[test]
fn failed_backup_jobs_reach_their_guests_or_the_node() {
    let sim = PveSim::start(PveSimOptions::fast());
    let denied = "unable to open file '/etc/pve/nodes/node1/qemu-server/101.conf.tmp.4242' - \
                  Permission denied";
    sim.add_vzdump_job(
        "node1",
        &[
            (101, Some(denied)),
            (102, None),
            (200, Some("no such volume 'local-zfs:vm-200-disk-0'")),
        ],
    );
    sim.add_failed_vzdump_job(
        "node1",
        "could not activate storage 'pbs': pbs: error fetching datastores - 500 Can't connect to 10.0.0.9:8007",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (server, _agent) = server_and_agent(&sim, tmp.path(), "2s");
    let vm = |vmid: u32| format!("vm:{CLUSTER}/{vmid}");
    eventually(Duration::from_secs(30), "the failed backups stored", || {
        (stored_value(&server, &vm(101), metric::BACKUP_FAILED_24H).is_some_and(|v| v >= 1.0)
            && stored_value(&server, &vm(200), metric::BACKUP_FAILED_24H).is_some_and(|v| v >= 1.0))
        .then_some(())
    });
    assert_eq!(
        stored_value(&server, &vm(102), metric::BACKUP_FAILED_24H),
        Some(0.0),
        "VM 102's backup in that job worked"
    );
    assert_eq!(
        stored_value(
            &server,
            "node:node1",
            metric::BACKUP_FAILED_UNATTRIBUTED_24H
        ),
        Some(1.0)
    );
    assert_eq!(
        stored_value(&server, "node:node1", metric::TASKS_FAILED_24H),
        Some(2.0)
    );
    let (s, run) = server.post("/api/ai/patrol/run", None);
    assert_eq!(s, 200, "{run}");
    let f = findings(&server);
    for id in [vm(101), vm(200)] {
        assert!(
            f.get(&id)
                .is_some_and(|v| v.iter().any(|(k, _)| k == "backup-failed")),
            "{id}: {f:?}"
        );
    }
    assert!(
        !f.get(&vm(102))
            .is_some_and(|v| v.iter().any(|(k, _)| k == "backup-failed")),
        "{f:?}"
    );
}

/// A node that fails about one request in ten (500) and answers another one in ten too
/// slowly for a request's time: every run still reports every guest, the runs say which
/// reads failed, and no run is cut off as a whole.
#[test]
fn a_flaky_api_still_shows_every_guest_and_names_what_failed() {
    let sim = PveSim::start(PveSimOptions::fast());
    sim.set_fault(Fault::Flaky {
        seed: 11,
        percent: 20,
        // Longer than the whole run may take (3 s): before each request had its own
        // limit, one such answer cost the run.
        delay: Duration::from_secs(4),
    });
    let world = sim.world();
    let guests: Vec<String> = world
        .guests
        .iter()
        .map(|g| {
            let prefix = if g.kind.as_str() == "qemu" {
                "vm"
            } else {
                "lxc"
            };
            format!("{prefix}:{CLUSTER}/{}", g.vmid)
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let (server, _agent) = server_and_agent(&sim, tmp.path(), "3s");
    // When each guest's last sample was taken (the server's `at`), if stored.
    let sampled = |server: &ServerProc| -> Vec<Option<String>> {
        let list = server.list_all("/api/resources");
        guests
            .iter()
            .map(|id| {
                list.iter().find(|r| r["id"] == id.as_str())?["metrics"][metric::MEM_TOTAL_BYTES]
                    ["at"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    eventually(Duration::from_secs(60), "every guest stored", || {
        sampled(&server).iter().all(Option::is_some).then_some(())
    });
    // No run is cut off by the run's own time limit (the collector's, at 90 %, or the
    // runner's): each ends with what it read.
    let health = |server: &ServerProc| -> (String, String) {
        let agents = server.agents();
        let h = &agents[0]["collectors"]["proxmox"];
        (
            h["status"].as_str().unwrap_or_default().to_owned(),
            h["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    // Fresh all along: within every 3 runs, a run read every guest again.
    let mut last = sampled(&server);
    for _ in 0..3 {
        let until = std::time::Instant::now() + Duration::from_secs(9);
        while std::time::Instant::now() < until {
            let (status, message) = health(&server);
            assert!(
                !message.contains("timed out after") && !message.contains("the API did not"),
                "{status}: {message}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let now = sampled(&server);
        for ((id, before), after) in guests.iter().zip(&last).zip(&now) {
            assert!(
                after.is_some() && after != before,
                "{id}: not read again in 9 s ({before:?} -> {after:?})"
            );
        }
        last = now;
    }
    // The health says which reads failed, by path and how.
    let message = eventually(Duration::from_secs(60), "a degraded run named", || {
        let (status, message) = health(&server);
        (status == "degraded"
            && message.contains("GET /")
            && (message.contains("HTTP 500 Internal Server Error")
                || message.contains("did not answer within")))
        .then_some(message)
    });
    assert!(
        !message.contains("4f1c2a0e"),
        "no secret in health: {message}"
    );
}
