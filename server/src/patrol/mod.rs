//! Patrol: deterministic detectors over a snapshot of state and history, each a pure
//! function of its inputs and `now`: `heuristics` (threshold rules), `forecast` (capacity
//! forecasts), `finding` (the vocabulary of what they report) and `lifecycle` (how findings
//! open, repeat, resolve and come back). [`snapshot`] is the one
//! place that reads the store for them.

pub mod anomaly;
pub mod correlate;
pub mod finding;
pub mod forecast;
pub mod heuristics;
pub mod lifecycle;
pub mod run;
pub mod settings;
pub mod silence;

use crate::store::{Store, StoreError};
use heuristics::Snapshot;

/// An alert that fired and asks for a Patrol run of its organisation; the findings on its
/// resource then carry its id, and the alert's timeline gets them as its analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTrigger {
    /// The alert's organisation.
    pub org: String,
    /// The alert.
    pub alert_id: String,
    /// Its resource's canonical id.
    pub resource_id: String,
}

/// Whether a firing alert may start a Patrol run: the single hook for the `ai_alerts` licence
/// gate (DESIGN §1.4). Until licences exist every installation may.
pub fn alert_runs_enabled() -> bool {
    true
}

/// Metrics whose recent history the detectors need (levels that must hold over a window).
const WINDOWED: &[&str] = &[
    "storage_used_pct",
    "datastore_used_pct",
    "cpu_pct",
    "mem_used_pct",
    "restart_count",
];
/// Most points read per series.
const MAX_POINTS: usize = 10_000;
/// How far back and at which step forecasts read capacity metrics.
const TREND_LOOKBACK_MS: i64 = 7 * 86_400_000;
const TREND_STEP_MS: i64 = 300_000;
/// How far back and at which step anomaly baselines read their metrics.
const BASELINE_LOOKBACK_MS: i64 = 7 * 86_400_000;
const BASELINE_STEP_MS: i64 = 3_600_000;

/// The state of every resource and agent of `org`, the last `lookback_ms` of the windowed
/// metrics each resource has, seven days of its capacity metrics in 5-minute averages, and
/// seven days of its baseline metrics in hourly averages.
///
/// # Errors
/// Storage failures.
pub fn snapshot(
    store: &Store,
    org: &str,
    now_ms: i64,
    lookback_ms: i64,
) -> Result<Snapshot, StoreError> {
    let resources = store.list_resources(org)?;
    let mut history = std::collections::BTreeMap::new();
    let mut trend_history = std::collections::BTreeMap::new();
    let mut baseline_history = std::collections::BTreeMap::new();
    for r in &resources {
        for &metric in WINDOWED.iter().filter(|m| r.latest.contains_key(**m)) {
            let points = store.history(
                org,
                &r.id,
                metric,
                now_ms - lookback_ms,
                now_ms,
                None,
                MAX_POINTS,
            )?;
            history.insert((r.id.clone(), metric.to_owned()), points);
        }
        if let Some(metric) =
            heuristics::capacity_metric(&r.kind).filter(|m| r.latest.contains_key(*m))
        {
            let points = store.history(
                org,
                &r.id,
                metric,
                now_ms - TREND_LOOKBACK_MS,
                now_ms,
                Some(TREND_STEP_MS),
                MAX_POINTS,
            )?;
            trend_history.insert((r.id.clone(), metric.to_owned()), points);
        }
        for &metric in anomaly::METRICS
            .iter()
            .filter(|m| r.latest.contains_key(**m))
        {
            let points = store.history(
                org,
                &r.id,
                metric,
                now_ms - BASELINE_LOOKBACK_MS,
                now_ms,
                Some(BASELINE_STEP_MS),
                MAX_POINTS,
            )?;
            baseline_history.insert((r.id.clone(), metric.to_owned()), points);
        }
    }
    let agents = store
        .list_agents()?
        .into_iter()
        .filter(|a| a.org_id == org)
        .collect();
    Ok(Snapshot {
        now_ms,
        resources,
        history,
        trend_history,
        baseline_history,
        agents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IngestItem;
    use finding::Severity;
    use warden_shared::ids::ResourceId;
    use warden_shared::telemetry::{Resource, Sample, TelemetryBatch};

    #[test]
    fn detectors_read_state_and_history_from_the_store() {
        const NOW: i64 = 1_800_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("warden.redb")).unwrap();
        let id = ResourceId::new("storage:pve2/local-zfs").unwrap();
        // 30 minutes at 91 %, one sample a minute, in one batch.
        let batch = TelemetryBatch {
            seq: 1,
            collector: "proxmox".into(),
            collected_at_ms: NOW,
            resources: vec![Resource {
                id: id.clone(),
                name: "local-zfs".into(),
                parent: Some(ResourceId::new("node:pve2").unwrap()),
                status: "available".into(),
                attrs: Vec::new(),
            }],
            samples: (0..=30)
                .map(|m| Sample {
                    resource_id: id.clone(),
                    metric: "storage_used_pct".into(),
                    ts_ms: NOW - (30 - m) * 60_000,
                    value: 91.0,
                })
                .collect(),
            ..TelemetryBatch::default()
        };
        let item = IngestItem {
            agent_id: "pve2-1".into(),
            org_id: "default".into(),
            batch,
            provenance: Vec::new(),
        };
        store.ingest(&[item], NOW).unwrap();

        let s = snapshot(&store, "default", NOW, 3_600_000).unwrap();
        assert_eq!(s.history.values().map(Vec::len).sum::<usize>(), 31);
        // 30 minutes in 5-minute averages (the bucket of each 5 minutes, plus `now`'s).
        assert_eq!(s.trend_history.values().map(Vec::len).sum::<usize>(), 7);
        let found = heuristics::detect(
            &s,
            &heuristics::Thresholds::default(),
            &std::collections::BTreeMap::new(),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].resource_id, "storage:pve2/local-zfs");
        assert_eq!(found[0].severity, Severity::Critical);
        assert_eq!(found[0].node.as_deref(), Some("pve2"));
    }
}
