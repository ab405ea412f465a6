//! The Proxmox Backup Server collector against the PBS API simulator: exact datastore,
//! job and backup-group values from known answers, failed GC / verification / sync jobs,
//! and every failure mode giving degraded health with the last good values marked stale.

use std::time::Duration;
use warden_agent::collectors::{CollectorsConfig, DockerConfig, HostConfig, PbsConfig};
use warden_shared::metric;
use warden_shared::telemetry::{HealthStatus, Value};
use warden_sim::pbs::{Fault, JobKind, PbsSim, PbsSimOptions};
use warden_tests::collect::{assert_provenance_complete, runtime, start, status, value};

const HOST: &str = "pbs1";

fn config(sim: &PbsSim, dir: &std::path::Path, pin: bool) -> CollectorsConfig {
    let token = PbsSimOptions::fast().token;
    let (token_id, secret) = token.split_once(':').unwrap();
    let secret_file = dir.join("pbs.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let ca_file = dir.join("proxy.pem");
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
        pbs: PbsConfig {
            enabled: true,
            url: sim.base_url(),
            token_id: token_id.to_owned(),
            token_secret_file: secret_file,
            ca_file,
            fingerprint: pin.then(|| sim.cert_fingerprint()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        },
        ..CollectorsConfig::default()
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn datastores_jobs_and_backup_groups_match_the_api() {
    let sim = PbsSim::start(PbsSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let world = sim.world();
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path(), false), HOST);
        let b = r
            .next_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;
        assert!(!world.datastores.is_empty());
        for ds in &world.datastores {
            let id = format!("pbs-datastore:{HOST}/{}", ds.name);
            let res = b
                .resources
                .iter()
                .find(|x| x.id.as_str() == id)
                .unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(res.status, "available");
            assert_eq!(
                value(&b, &id, metric::DATASTORE_TOTAL_BYTES),
                Some(ds.usage.total as f64)
            );
            assert_eq!(
                value(&b, &id, metric::DATASTORE_USED_BYTES),
                Some(ds.usage.used as f64)
            );
            if ds.gc.disk_bytes > 0 {
                let dedup = ds.gc.index_data_bytes as f64 / ds.gc.disk_bytes as f64;
                assert_eq!(
                    value(&b, &id, metric::DATASTORE_DEDUP_FACTOR),
                    Some(metric::round(metric::DATASTORE_DEDUP_FACTOR, dedup))
                );
            }
            for job in world.jobs.iter().filter(|j| j.store == ds.name) {
                let kind = match job.kind {
                    JobKind::Prune => "prune",
                    JobKind::Verify => "verify",
                    JobKind::Sync => "sync",
                };
                let metric =
                    metric::labelled(metric::JOB_LAST_OK, "job", &format!("{kind}/{}", job.id));
                let expected = job.last_run_state.as_deref().map(|s| {
                    if s.eq_ignore_ascii_case("ok") || s.starts_with("WARNINGS") {
                        1.0
                    } else {
                        0.0
                    }
                });
                assert_eq!(value(&b, &id, &metric), expected, "{metric}");
            }
            // One resource per backup group, with the newest snapshot's age and verification.
            let mut groups: Vec<(String, String)> = world
                .snapshots
                .iter()
                .filter(|s| s.store == ds.name)
                .map(|s| (s.backup_type.clone(), s.backup_id.clone()))
                .collect();
            groups.sort();
            groups.dedup();
            for (t, gid) in groups {
                let snaps: Vec<_> = world
                    .snapshots
                    .iter()
                    .filter(|s| s.store == ds.name && s.backup_type == t && s.backup_id == gid)
                    .collect();
                let newest = snaps.iter().max_by_key(|s| s.backup_time).unwrap();
                let bid = format!("backup:{HOST}/{}/{t}/{gid}", ds.name);
                let g = b
                    .resources
                    .iter()
                    .find(|x| x.id.as_str() == bid)
                    .unwrap_or_else(|| panic!("{bid} missing"));
                assert_eq!(g.parent.as_ref().unwrap().as_str(), id);
                assert_eq!(
                    value(&b, &bid, metric::BACKUP_COUNT),
                    Some(snaps.len() as f64)
                );
                let age = value(&b, &bid, metric::BACKUP_LAST_AGE_SECONDS).unwrap();
                assert!(
                    (age - (now_s() - newest.backup_time) as f64).abs() <= 5.0,
                    "{bid}: {age}"
                );
                let want = match newest.verification.as_ref().map(|v| v.state.as_str()) {
                    Some("ok") => "verified",
                    Some("failed") => "verify-failed",
                    _ => "unverified",
                };
                assert_eq!(g.status, want, "{bid}");
            }
        }

        // A failing GC and a failed verification show within one run.
        let store = world.datastores[0].name.clone();
        let id = format!("pbs-datastore:{HOST}/{store}");
        sim.fail_gc(&store, "unable to access chunk store - disk full")
            .unwrap();
        let t = sim.add_snapshot(&store, "vm", "4242");
        assert!(sim.fail_verification(&store, "vm", "4242", t));
        let b = r
            .next_where("the failed gc", |b| {
                value(b, &id, &metric::labelled(metric::JOB_LAST_OK, "job", "gc")) == Some(0.0)
            })
            .await;
        let ds = b.resources.iter().find(|x| x.id.as_str() == id).unwrap();
        assert!(
            ds.attrs.iter().any(|(k, v)| k == "gc_last_state"
                && matches!(v, Value::Text(s) if s.contains("disk full")))
        );
        assert!(value(&b, &id, metric::TASKS_FAILED_24H).unwrap() >= 1.0);
        assert!(value(&b, &id, metric::SNAPSHOTS_VERIFY_FAILED).unwrap() >= 1.0);
        let g = b
            .resources
            .iter()
            .find(|x| x.id.as_str() == format!("backup:{HOST}/{store}/vm/4242"))
            .unwrap();
        assert_eq!(g.status, "verify-failed");
        r.stop();
    });
}

#[test]
fn every_failure_mode_degrades_and_keeps_the_last_values_stale() {
    let sim = PbsSim::start(PbsSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (Fault::BadToken, "authentication failed (401)"),
        (
            Fault::ServerError("datastore backend unreachable".into()),
            "unreachable",
        ),
        (Fault::Slow(Duration::from_secs(3)), "did not answer within"),
        (Fault::MalformedJson, "malformed JSON"),
    ];
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path(), true), HOST);
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
            assert_eq!(b.resources.len(), good.resources.len(), "{fault:?}");
            assert!(
                b.resources
                    .iter()
                    .all(|x| x.attrs.contains(&("stale".into(), Value::Bool(true))))
            );
            sim.clear_faults();
            r.next_where("recovered", |b| status(b) == HealthStatus::Ok)
                .await;
        }
        // One datastore unavailable: the others still report, that one says so.
        let store = sim.world().datastores[0].name.clone();
        sim.set_fault(Fault::DatastoreUnavailable(store.clone()));
        let id = format!("pbs-datastore:{HOST}/{store}");
        let b = r
            .next_where("the unavailable datastore", |b| {
                b.resources
                    .iter()
                    .any(|x| x.id.as_str() == id && x.status != "available")
            })
            .await;
        assert_eq!(
            value(&b, &id, metric::DATASTORE_USED_BYTES),
            None,
            "unknown, not zero"
        );
        r.stop();
    });
}

#[test]
fn every_metric_carries_its_provenance() {
    let sim = PbsSim::start(PbsSimOptions::fast());
    let tmp = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path(), false), HOST);
        let b = r
            .next_provenanced_where("a healthy batch", |b| status(b) == HealthStatus::Ok)
            .await;
        assert_provenance_complete(&b);
        let sources: std::collections::BTreeSet<&str> =
            b.provenance.iter().map(|p| &*p.source).collect();
        assert_eq!(sources, ["pbs"].into());
        r.stop();
    });
}
