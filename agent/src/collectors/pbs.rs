//! The Proxmox Backup Server collector: datastores (usage, deduplication, days to full),
//! the last garbage collection, prune, verify and sync results, backup groups with the age
//! and verification state of their newest snapshot, and failed tasks.
//!
//! Node status (CPU, memory, disks) comes from the host collector of the same agent.
//! Failures follow the shared rule: the last good resources are re-sent `stale`, never zeros.

use super::proxmox::api::{ApiClient, Endpoint, Product, label_value, num, pct, put, settle};
use super::{Collected, Collector, CollectorError, PbsConfig, resource_id};
use serde::Deserialize;
use std::collections::BTreeMap;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Provenance, Resource, Value};

/// A metric of a datastore.
const fn datastore(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::PbsDatastore, metric, "pbs", method)
}

/// A metric of a backup group.
const fn group(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::Backup, metric, "pbs", method)
}

/// Where each metric comes from: the PBS API (paths relative to `/api2/json`).
const PROVENANCE: &[Provenance] = &[
    datastore(
        metric::DATASTORE_TOTAL_BYTES,
        "GET /status/datastore-usage total",
    ),
    datastore(
        metric::DATASTORE_USED_BYTES,
        "GET /status/datastore-usage used",
    ),
    datastore(
        metric::DATASTORE_USED_PCT,
        "GET /status/datastore-usage used / total",
    ),
    datastore(
        metric::DATASTORE_DEDUP_FACTOR,
        "GET /status/datastore-usage gc-status index-data-bytes / disk-bytes",
    ),
    datastore(
        metric::DATASTORE_DAYS_TO_FULL,
        "GET /status/datastore-usage estimated-full-date - now",
    ),
    datastore(
        metric::JOB_LAST_OK,
        "GET /admin/{gc,prune,verify,sync} last-run-state: 1 for OK or WARNINGS, else 0",
    ),
    datastore(
        metric::JOB_LAST_RUN_AGE_SECONDS,
        "GET /admin/{gc,prune,verify,sync} now - last-run-endtime",
    ),
    datastore(
        metric::TASKS_FAILED_24H,
        "GET /nodes/localhost/tasks?errors=1&since=now-24h, tasks whose worker_id names the \
         datastore",
    ),
    datastore(
        metric::SNAPSHOTS_TOTAL,
        "GET /admin/datastore/{store}/snapshots, counted",
    ),
    datastore(
        metric::SNAPSHOTS_VERIFY_FAILED,
        "GET /admin/datastore/{store}/snapshots with verification.state failed, counted",
    ),
    datastore(
        metric::SNAPSHOTS_UNVERIFIED,
        "GET /admin/datastore/{store}/snapshots without verification, counted",
    ),
    group(
        metric::BACKUP_LAST_AGE_SECONDS,
        "GET /admin/datastore/{store}/snapshots now - newest backup-time of the group",
    ),
    group(
        metric::BACKUP_COUNT,
        "GET /admin/datastore/{store}/snapshots of the group, counted",
    ),
    group(
        metric::BACKUP_SIZE_BYTES,
        "GET /admin/datastore/{store}/snapshots size of the group's newest snapshot",
    ),
];

/// Reads the PBS API of this host.
pub(crate) struct PbsCollector {
    host: String,
    api: ApiClient,
    timeout: std::time::Duration,
    last_good: Vec<Resource>,
}

impl PbsCollector {
    pub(crate) fn new(hostname: &str, cfg: &PbsConfig) -> Self {
        Self {
            host: hostname.to_owned(),
            api: ApiClient::new(Endpoint {
                product: Product::Pbs,
                url: cfg.url.clone(),
                token_id: cfg.token_id.clone(),
                token_secret_file: cfg.token_secret_file.clone(),
                ca_file: cfg.ca_file.clone(),
                fingerprint: cfg.fingerprint.clone(),
                timeout: cfg.timeout,
            }),
            timeout: cfg.timeout,
            last_good: Vec::new(),
        }
    }

    async fn read(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let now_s = now_ms / 1000;
        // Retried reads stop in time for the run to end with what it read.
        self.api.start_run();
        let usage: Vec<DatastoreUsage> = self.api.get("/status/datastore-usage").await?;
        let mut out = Collected::default();
        // Jobs, maintenance and tasks are detail: a failure there degrades, it does not fail.
        let datastores: Vec<DatastoreInfo> =
            or_problem(self.api.get("/admin/datastore").await, &mut out);
        let gc: Vec<Job> = or_problem(self.api.get("/admin/gc").await, &mut out);
        let mut jobs = Vec::new();
        for kind in ["prune", "verify", "sync"] {
            let list: Vec<Job> =
                or_problem(self.api.get(&format!("/admin/{kind}")).await, &mut out);
            jobs.extend(list.into_iter().map(|j| (kind, j)));
        }
        let tasks = format!(
            "/nodes/localhost/tasks?errors=1&limit=500&since={}",
            now_s - 86_400
        );
        let failed: Vec<Task> = or_problem(self.api.get(&tasks).await, &mut out);

        for ds in &usage {
            let id = resource_id(&ds.store, canonical::pbs_datastore(&self.host, &ds.store))?;
            let maintenance = datastores
                .iter()
                .find(|d| d.store == ds.store)
                .and_then(|d| d.maintenance.clone());
            let status = if let Some(err) = &ds.error {
                out.problems.push(format!("datastore {}: {err}", ds.store));
                "unavailable"
            } else if maintenance.is_some() {
                "maintenance"
            } else if ds.mount_status.as_deref() == Some("notmounted") {
                "unmounted"
            } else {
                "available"
            };
            // A negative `avail` is PBS's "could not read": unknown, not a value.
            let known = |v: Option<f64>| v.filter(|v| *v >= 0.0);
            let (total, used) = (known(ds.total), known(ds.used));
            put(&mut out, &id, metric::DATASTORE_TOTAL_BYTES, now_ms, total);
            put(&mut out, &id, metric::DATASTORE_USED_BYTES, now_ms, used);
            put(
                &mut out,
                &id,
                metric::DATASTORE_USED_PCT,
                now_ms,
                pct(used, total),
            );
            if let Some(gcs) = &ds.gc_status {
                let dedup = match (gcs.index_data_bytes, gcs.disk_bytes) {
                    (Some(index), Some(disk)) if disk > 0.0 => Some(index / disk),
                    _ => None,
                };
                put(&mut out, &id, metric::DATASTORE_DEDUP_FACTOR, now_ms, dedup);
            }
            let days_to_full = ds
                .estimated_full_date
                .filter(|t| *t > now_s as f64)
                .map(|t| (t - now_s as f64) / 86_400.0);
            put(
                &mut out,
                &id,
                metric::DATASTORE_DAYS_TO_FULL,
                now_ms,
                days_to_full,
            );

            let mut attrs = vec![
                ("backend".into(), Value::from(ds.backend_type.clone())),
                ("maintenance".into(), Value::from(maintenance)),
            ];
            let gc_job = gc
                .iter()
                .find(|g| g.store.as_deref() == Some(ds.store.as_str()));
            job_outcome(&mut out, &id, &mut attrs, "gc", gc_job, now_s);
            for (kind, job) in jobs
                .iter()
                .filter(|(_, j)| j.store.as_deref() == Some(ds.store.as_str()))
            {
                let name = format!("{kind}/{}", job.id.as_deref().unwrap_or("?"));
                job_outcome(&mut out, &id, &mut attrs, &name, Some(job), now_s);
            }
            let failed_here = failed
                .iter()
                .filter(|t| {
                    t.worker_id
                        .as_deref()
                        .is_some_and(|w| w == ds.store || w.starts_with(&format!("{}:", ds.store)))
                })
                .count();
            out.sample(&id, metric::TASKS_FAILED_24H, now_ms, failed_here as f64);
            out.resources.push(Resource {
                id: id.clone(),
                name: ds.store.clone(),
                parent: None,
                status: status.into(),
                attrs,
            });
            if status == "available" {
                self.snapshots(&mut out, &id, &ds.store, now_s).await;
            }
        }
        Ok(out)
    }

    /// Backup groups of one datastore, from its snapshot list: newest snapshot age, count
    /// and the newest snapshot's verification state; plus totals on the datastore.
    async fn snapshots(
        &mut self,
        out: &mut Collected,
        ds_id: &ResourceId,
        store: &str,
        now_s: i64,
    ) {
        let snaps: Vec<Snapshot> = match self
            .api
            .get(&format!("/admin/datastore/{store}/snapshots"))
            .await
        {
            Ok(s) => s,
            Err(e) => return out.problems.push(e.to_string()),
        };
        let now_ms = now_s * 1000;
        let mut groups: BTreeMap<(String, String), Vec<&Snapshot>> = BTreeMap::new();
        for s in &snaps {
            groups
                .entry((s.backup_type.clone(), s.backup_id.clone()))
                .or_default()
                .push(s);
        }
        let failed = snaps
            .iter()
            .filter(|s| s.verification.as_ref().is_some_and(|v| v.state == "failed"))
            .count();
        let unverified = snaps.iter().filter(|s| s.verification.is_none()).count();
        out.sample(ds_id, metric::SNAPSHOTS_TOTAL, now_ms, snaps.len() as f64);
        out.sample(
            ds_id,
            metric::SNAPSHOTS_VERIFY_FAILED,
            now_ms,
            failed as f64,
        );
        out.sample(
            ds_id,
            metric::SNAPSHOTS_UNVERIFIED,
            now_ms,
            unverified as f64,
        );
        for ((kind, backup_id), list) in groups {
            let Some(newest) = list
                .iter()
                .max_by(|a, b| a.backup_time.total_cmp(&b.backup_time))
            else {
                continue;
            };
            let scope = format!("{}/{store}", self.host);
            let Ok(id) = canonical::backup(&scope, &format!("{kind}/{backup_id}")) else {
                continue;
            };
            out.sample(
                &id,
                metric::BACKUP_LAST_AGE_SECONDS,
                now_ms,
                (now_s as f64 - newest.backup_time).max(0.0),
            );
            out.sample(&id, metric::BACKUP_COUNT, now_ms, list.len() as f64);
            put(out, &id, metric::BACKUP_SIZE_BYTES, now_ms, newest.size);
            let verification = newest.verification.as_ref().map(|v| v.state.clone());
            out.resources.push(Resource {
                id,
                name: format!("{kind}/{backup_id}"),
                parent: Some(ds_id.clone()),
                status: match verification.as_deref() {
                    Some("failed") => "verify-failed",
                    Some("ok") => "verified",
                    _ => "unverified",
                }
                .into(),
                attrs: vec![
                    ("backup_type".into(), Value::from(kind.as_str())),
                    ("backup_id".into(), Value::from(backup_id.as_str())),
                    (
                        "guest_kind".into(),
                        Value::from(guest_kind(&kind).map(|k| k.prefix())),
                    ),
                    ("comment".into(), Value::from(newest.comment.clone())),
                    ("last_verification".into(), Value::from(verification)),
                ],
            });
        }
    }
}

/// The value, or its default with the error noted as a problem (a `Degraded` run).
fn or_problem<T: Default>(r: Result<T, CollectorError>, out: &mut Collected) -> T {
    r.unwrap_or_else(|e| {
        out.problems.push(e.to_string());
        T::default()
    })
}

/// `vm` and `ct` backups belong to guests; `host` backups to machines.
fn guest_kind(backup_type: &str) -> Option<ResourceKind> {
    match backup_type {
        "vm" => Some(ResourceKind::Vm),
        "ct" => Some(ResourceKind::SystemContainer),
        _ => None,
    }
}

/// Records one job's last result on the datastore: `job_last_ok{job="…"}` (1/0),
/// `job_last_run_age_seconds{job="…"}`, and the state text as an attribute.
fn job_outcome(
    out: &mut Collected,
    id: &ResourceId,
    attrs: &mut Vec<(String, Value)>,
    name: &str,
    job: Option<&Job>,
    now_s: i64,
) {
    let Some(job) = job else { return };
    let label = label_value(name);
    let now_ms = now_s * 1000;
    if let Some(state) = &job.last_run_state {
        let ok = state.eq_ignore_ascii_case("ok") || state.starts_with("WARNINGS");
        out.sample(
            id,
            metric::labelled(metric::JOB_LAST_OK, "job", &label),
            now_ms,
            if ok { 1.0 } else { 0.0 },
        );
    }
    let age = job.last_run_endtime.map(|t| (now_s as f64 - t).max(0.0));
    put(
        out,
        id,
        &metric::labelled(metric::JOB_LAST_RUN_AGE_SECONDS, "job", &label),
        now_ms,
        age,
    );
    attrs.push((
        format!("{name}_last_state"),
        Value::from(job.last_run_state.clone()),
    ));
}

impl Collector for PbsCollector {
    fn name(&self) -> &'static str {
        "pbs"
    }

    fn provenance(&self) -> &[Provenance] {
        PROVENANCE
    }

    async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let mut last_good = std::mem::take(&mut self.last_good);
        let result = settle(&mut last_good, self.timeout, self.read(now_ms)).await;
        self.last_good = last_good;
        result
    }
}

// ---- API shapes (field names as PBS sends them) ----

#[derive(Deserialize)]
struct DatastoreUsage {
    store: String,
    #[serde(default, deserialize_with = "num")]
    total: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    used: Option<f64>,
    #[serde(rename = "backend-type")]
    backend_type: Option<String>,
    #[serde(rename = "mount-status")]
    mount_status: Option<String>,
    error: Option<String>,
    #[serde(rename = "estimated-full-date", default, deserialize_with = "num")]
    estimated_full_date: Option<f64>,
    #[serde(rename = "gc-status")]
    gc_status: Option<GcStatus>,
}

#[derive(Deserialize)]
struct GcStatus {
    #[serde(rename = "index-data-bytes", default, deserialize_with = "num")]
    index_data_bytes: Option<f64>,
    #[serde(rename = "disk-bytes", default, deserialize_with = "num")]
    disk_bytes: Option<f64>,
}

#[derive(Deserialize)]
struct DatastoreInfo {
    store: String,
    maintenance: Option<String>,
}

/// A GC, prune, verify or sync job's status (the fields they share).
#[derive(Deserialize)]
struct Job {
    id: Option<String>,
    store: Option<String>,
    #[serde(rename = "last-run-state")]
    last_run_state: Option<String>,
    #[serde(rename = "last-run-endtime", default, deserialize_with = "num")]
    last_run_endtime: Option<f64>,
}

#[derive(Deserialize)]
struct Task {
    worker_id: Option<String>,
}

#[derive(Deserialize)]
struct Snapshot {
    #[serde(rename = "backup-type")]
    backup_type: String,
    #[serde(rename = "backup-id")]
    backup_id: String,
    #[serde(rename = "backup-time", deserialize_with = "required_num")]
    backup_time: f64,
    comment: Option<String>,
    #[serde(default, deserialize_with = "num")]
    size: Option<f64>,
    verification: Option<Verification>,
}

#[derive(Deserialize)]
struct Verification {
    state: String,
}

fn required_num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    num(d)?.ok_or_else(|| serde::de::Error::custom("expected a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::proxmox::api::Envelope;

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!(
            "{}/../tests/fixtures/pbs/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str::<Envelope<T>>(&text).unwrap().data
    }

    #[test]
    fn fixtures_parse() {
        let usage: Vec<DatastoreUsage> = fixture("status_datastore_usage.trimmed.json");
        assert_eq!(usage[0].store, "slow-xfs");
        assert_eq!(usage[0].total, Some(7_999_425_155_072.0));
        let snaps: Vec<Snapshot> = fixture("datastore_snapshots.trimmed.json");
        assert!(snaps.iter().any(|s| s.verification.is_none()));
        assert!(
            snaps
                .iter()
                .any(|s| s.verification.as_ref().is_some_and(|v| v.state == "ok"))
        );
    }

    #[test]
    fn job_outcomes_are_ok_or_not_never_guessed() {
        let id = canonical::pbs_datastore("pbs", "store1").unwrap();
        let mut out = Collected::default();
        let mut attrs = Vec::new();
        let failed = Job {
            id: Some("v1".into()),
            store: Some("store1".into()),
            last_run_state: Some("verification failed - 3 errors".into()),
            last_run_endtime: Some(100.0),
        };
        job_outcome(&mut out, &id, &mut attrs, "verify/v1", Some(&failed), 160);
        let never = Job {
            id: Some("s1".into()),
            store: None,
            last_run_state: None,
            last_run_endtime: None,
        };
        job_outcome(&mut out, &id, &mut attrs, "sync/s1", Some(&never), 160);
        let metric = |m: &str| out.samples.iter().find(|s| s.metric == m).map(|s| s.value);
        assert_eq!(
            metric(&metric::labelled(metric::JOB_LAST_OK, "job", "verify/v1")),
            Some(0.0)
        );
        assert_eq!(
            metric(&metric::labelled(
                metric::JOB_LAST_RUN_AGE_SECONDS,
                "job",
                "verify/v1"
            )),
            Some(60.0)
        );
        assert_eq!(
            metric(&metric::labelled(metric::JOB_LAST_OK, "job", "sync/s1")),
            None,
            "a job that never ran is unknown"
        );
        assert!(attrs.contains(&("sync/s1_last_state".into(), Value::Unknown)));
    }

    const NOW_S: i64 = 1_780_000_000;

    /// The PBS answer for `path`, with one datastore that has every metric.
    fn answer(path: &str) -> String {
        let data = if path.starts_with("/status/datastore-usage") {
            format!(
                r#"[{{"store":"store1","total":1000,"used":250,"backend-type":"filesystem",
                    "estimated-full-date":{},
                    "gc-status":{{"index-data-bytes":3000,"disk-bytes":1000}}}}]"#,
                NOW_S + 10 * 86_400
            )
        } else if path.ends_with("/snapshots") {
            format!(
                r#"[{{"backup-type":"vm","backup-id":"100","backup-time":{},"size":1234,
                    "verification":{{"state":"ok"}}}}]"#,
                NOW_S - 3600
            )
        } else if path.starts_with("/admin/datastore") {
            r#"[{"store":"store1"}]"#.to_owned()
        } else if path.starts_with("/admin/") {
            format!(
                r#"[{{"id":"j1","store":"store1","last-run-state":"OK","last-run-endtime":{}}}]"#,
                NOW_S - 600
            )
        } else if path.starts_with("/nodes/localhost/tasks") {
            r#"[{"worker_id":"store1"}]"#.to_owned()
        } else {
            "null".to_owned()
        };
        format!(r#"{{"data":{data}}}"#)
    }

    /// A plain-HTTP stand-in for the PBS API (the TLS side is tested against the simulator).
    async fn fake_pbs(listener: tokio::net::TcpListener) {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(crate::collectors::answer_http(conn, |path| {
                (200, answer(path))
            }));
        }
    }

    #[tokio::test]
    async fn every_metric_has_its_provenance() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(fake_pbs(listener));
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let cfg = PbsConfig {
            enabled: true,
            url,
            token_id: "warden@pbs!audit".into(),
            token_secret_file: secret,
            // Plain HTTP never uses it; any well-formed pin will do.
            fingerprint: Some("00".repeat(32)),
            ..PbsConfig::default()
        };
        let mut c = PbsCollector::new("pbs1", &cfg);
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let mut bases: Vec<&str> = out
            .samples
            .iter()
            .map(|s| metric::base(&s.metric))
            .collect();
        bases.sort_unstable();
        bases.dedup();
        assert_eq!(
            bases.len(),
            PROVENANCE.len(),
            "every metric is emitted: {bases:?}"
        );
        crate::collectors::assert_provenance_complete(&c, &out);
        server.abort();
    }
}
