//! The snapshot Patrol's detectors read: the state of every resource and agent of an
//! organisation and the history they need, built from one read of the store ([`snapshot`]).

use super::{anomaly, rules};
use crate::model::{AgentRecord, ResourceRecord};
use crate::store::{AggregateQuery, Store, StoreError};
use std::collections::BTreeMap;
use warden_shared::metric;

/// What the detectors look at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the run happens, ms since the epoch.
    pub now_ms: i64,
    /// Current state of every resource.
    pub resources: Vec<ResourceRecord>,
    /// Recent history, `(resource id, metric)` → `(ms, value)` in time order: one point per
    /// minute with samples, stamped with the minute's start, holding the minute's average (for
    /// a counter such as `restart_count`, its highest value: the reading at the minute's end).
    pub history: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// Days of history of capacity metrics, for forecasts: hourly averages, then 5-minute
    /// averages for the last few hours (points stamped with their bucket's start).
    pub trend_history: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// Days of hourly averages of the metrics anomaly baselines learn from
    /// ([`super::anomaly::METRICS`]), whole hours up to the current one (which is left out).
    pub baseline_history: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// The organisation's agents (revoked ones included), with when each was last heard from
    /// and the health of each of its collectors.
    pub agents: Vec<AgentRecord>,
    /// The server's own store and its disk (the default organisation's runs only).
    pub store: Option<crate::store::StoreStatus>,
}

/// Metrics whose recent history the detectors need (levels that must hold over a window).
pub(super) const WINDOWED: &[&str] = &[
    metric::STORAGE_USED_PCT,
    metric::DATASTORE_USED_PCT,
    metric::CPU_PCT,
    metric::MEM_USED_PCT,
    metric::RESTART_COUNT,
];
/// Windowed metrics that are counters: their per-minute point is the minute's highest value
/// (the reading at its end), so differences count what happened in between.
pub(super) const COUNTERS: &[&str] = &[metric::RESTART_COUNT];
/// Capacity metrics of any resource kind ([`rules::capacity_metric`]).
const CAPACITY: &[&str] = &[metric::STORAGE_USED_PCT, metric::DATASTORE_USED_PCT];
/// Most points read per series.
const MAX_POINTS: usize = 10_000;
pub(super) const MINUTE_MS: i64 = 60_000;
pub(super) const HOUR_MS: i64 = 3_600_000;
/// How far back forecasts read capacity metrics: hourly averages, then 5-minute averages for
/// the last [`TREND_FINE_HOURS`] whole hours and the current one, so a young series (the demo's
/// 12 hours) still has enough points for a forecast.
pub(super) const TREND_LOOKBACK_MS: i64 = 7 * 86_400_000;
pub(super) const TREND_STEP_MS: i64 = 300_000;
pub(super) const TREND_FINE_HOURS: i64 = 5;
/// How far back anomaly baselines read their metrics, in hourly averages.
pub(super) const BASELINE_LOOKBACK_MS: i64 = 7 * 86_400_000;

/// Which map of the snapshot a query fills.
#[derive(Clone, Copy)]
enum Part {
    History,
    Trend,
    Baseline,
}

/// The state of every resource and agent of `org` and the history the detectors read, from
/// one read transaction and the store's downsampled tiers (see the [`Snapshot`] fields):
/// per-minute points of the windowed metrics from the start of the minute `lookback_ms` ago,
/// seven days of capacity metrics in hourly and recent 5-minute averages, and seven days of
/// baseline metrics in hourly averages (whole hours, up to the current one).
///
/// # Errors
/// Storage failures.
pub fn snapshot(
    store: &Store,
    org: &str,
    now_ms: i64,
    lookback_ms: i64,
) -> Result<Snapshot, StoreError> {
    let view = store.view()?;
    let resources = view.resources(org)?;
    let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let floor_hour = |ms: i64| ms.div_euclid(HOUR_MS) * HOUR_MS;
    let trend_split = hour - TREND_FINE_HOURS * HOUR_MS;
    let with = |metric: &str| -> Vec<&str> {
        resources
            .iter()
            .filter(|r| r.latest.contains_key(metric))
            .map(|r| r.id.as_str())
            .collect()
    };
    let mut queries = Vec::new();
    let mut parts = Vec::new();
    let mut query = |part, metric, resources, from_ms, to_ms, step_ms| {
        parts.push(part);
        queries.push(AggregateQuery {
            metric,
            resources,
            from_ms,
            to_ms,
            step_ms,
        });
    };
    let window_from = (now_ms - lookback_ms).div_euclid(MINUTE_MS) * MINUTE_MS;
    for &metric in WINDOWED {
        query(
            Part::History,
            metric,
            with(metric),
            window_from,
            now_ms,
            MINUTE_MS,
        );
    }
    for &metric in CAPACITY {
        let ids: Vec<&str> = resources
            .iter()
            .filter(|r| {
                rules::capacity_metric(&r.kind) == Some(metric) && r.latest.contains_key(metric)
            })
            .map(|r| r.id.as_str())
            .collect();
        let from = floor_hour(now_ms - TREND_LOOKBACK_MS);
        query(
            Part::Trend,
            metric,
            ids.clone(),
            from,
            trend_split - 1,
            HOUR_MS,
        );
        query(Part::Trend, metric, ids, trend_split, now_ms, TREND_STEP_MS);
    }
    for &metric in anomaly::METRICS {
        let from = floor_hour(now_ms - BASELINE_LOOKBACK_MS);
        query(
            Part::Baseline,
            metric,
            with(metric),
            from,
            hour - 1,
            HOUR_MS,
        );
    }
    let results = view.aggregates(org, &queries)?;
    drop(view);

    let mut history = BTreeMap::new();
    let mut trend_history = BTreeMap::new();
    let mut baseline_history = BTreeMap::new();
    for ((q, part), result) in queries.iter().zip(parts).zip(results) {
        let counter = COUNTERS.contains(&q.metric);
        let map: &mut BTreeMap<(String, String), Vec<(i64, f64)>> = match part {
            Part::History => &mut history,
            Part::Trend => &mut trend_history,
            Part::Baseline => &mut baseline_history,
        };
        for (id, buckets) in q.resources.iter().zip(result) {
            let points = map
                .entry(((*id).to_owned(), q.metric.to_owned()))
                .or_default();
            let room = MAX_POINTS.saturating_sub(points.len());
            points.extend(buckets.iter().take(room).map(|(t, a)| {
                let v = if counter && matches!(part, Part::History) {
                    a.max
                } else {
                    a.mean()
                };
                (*t, v)
            }));
        }
    }
    let agents = store
        .list_agents()?
        .into_iter()
        .filter(|a| a.org_id == org)
        .collect();
    // The server's own disk belongs to whoever runs the server: the default organisation.
    let store_status = (org == warden_shared::DEFAULT_ORG).then(|| store.status());
    Ok(Snapshot {
        now_ms,
        resources,
        history,
        trend_history,
        baseline_history,
        agents,
        store: store_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IngestItem;
    use crate::model::finding::Severity;
    use crate::patrol::forecast;
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
                    metric: metric::STORAGE_USED_PCT.into(),
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
        let found = rules::detect(&s, &rules::Thresholds::default(), &BTreeMap::new());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].resource_id, "storage:pve2/local-zfs");
        assert_eq!(found[0].severity, Severity::Critical);
        assert_eq!(found[0].node.as_deref(), Some("pve2"));
    }

    const NOW: i64 = 1_800_000_000_000 + 20_000;

    fn batch(seq: u64, now: i64, samples: Vec<(&str, &str, i64, f64)>) -> IngestItem {
        IngestItem {
            agent_id: "a1".into(),
            org_id: "default".into(),
            batch: TelemetryBatch {
                seq,
                collector: "proxmox".into(),
                collected_at_ms: now,
                samples: samples
                    .into_iter()
                    .map(|(r, m, ts_ms, value)| Sample {
                        resource_id: ResourceId::new(r).unwrap(),
                        metric: m.into(),
                        ts_ms,
                        value,
                    })
                    .collect(),
                ..TelemetryBatch::default()
            },
            provenance: Vec::new(),
        }
    }

    fn assert_close(got: &[(i64, f64)], want: &[(i64, f64)], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: {got:?} != {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.0 == w.0 && (g.1 - w.1).abs() < 1e-9,
                "{what}: {g:?} != {w:?}"
            );
        }
    }

    #[test]
    fn the_snapshot_reads_the_tiers_as_raw_history_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("warden.redb")).unwrap();
        // Eight days, sent an hour at a time: a node's CPU and a storage pool every 30 s, a
        // container's restart counter every 10 s, with `now` following.
        let start = NOW - 8 * 86_400_000;
        let mut seq = 0;
        let mut t = start;
        while t <= NOW - 1_000 {
            let end = (t + 3_600_000).min(NOW);
            let mut samples = Vec::new();
            let mut ts = t;
            while ts < end {
                let i = (ts - start) / 10_000;
                if i % 3 == 0 {
                    let cpu = 40.0 + ((i * 7919) % 37) as f64 + (ts as f64 / 8.64e7).sin() * 20.0;
                    samples.push(("node:pve1", metric::CPU_PCT, ts, cpu));
                    let used = 50.0 + (ts - start) as f64 / 86_400_000.0 + (i % 5) as f64 * 0.01;
                    samples.push(("storage:pve1/tank", metric::STORAGE_USED_PCT, ts, used));
                }
                samples.push(("docker:h/app", metric::RESTART_COUNT, ts, (i / 200) as f64));
                ts += 10_000;
            }
            seq += 1;
            store
                .ingest(&[batch(seq, end, samples)], end + 1_000)
                .unwrap();
            t = end;
        }
        let s = snapshot(&store, "default", NOW, 3_600_000).unwrap();
        let key = |r: &str, m: &str| (r.to_owned(), m.to_owned());
        let history = |r: &str, m: &str, from: i64, to: i64, step: i64| {
            store
                .history("default", r, m, from, to, Some(step), 100_000)
                .unwrap()
        };
        // Windowed: per-minute averages from the minute an hour ago.
        let from = (NOW - 3_600_000) / 60_000 * 60_000;
        assert_close(
            &s.history[&key("node:pve1", metric::CPU_PCT)],
            &history("node:pve1", metric::CPU_PCT, from, NOW, 60_000),
            "cpu window",
        );
        // Every minute of the hour (the current one has no sample yet).
        assert_eq!(s.history[&key("node:pve1", metric::CPU_PCT)].len(), 60);
        // The counter: each minute's highest reading.
        let restarts = &s.history[&key("docker:h/app", metric::RESTART_COUNT)];
        let raw = store
            .history(
                "default",
                "docker:h/app",
                metric::RESTART_COUNT,
                from,
                NOW,
                None,
                100_000,
            )
            .unwrap();
        for (t, v) in restarts {
            let max = raw
                .iter()
                .filter(|p| p.0 >= *t && p.0 < t + 60_000)
                .map(|p| p.1)
                .fold(f64::MIN, f64::max);
            assert_eq!(*v, max);
        }
        // Baselines: hourly averages of whole hours, seven days back.
        let hour = NOW / 3_600_000 * 3_600_000;
        let week = (NOW - 7 * 86_400_000) / 3_600_000 * 3_600_000;
        assert_close(
            &s.baseline_history[&key("node:pve1", metric::CPU_PCT)],
            &history("node:pve1", metric::CPU_PCT, week, hour - 1, 3_600_000),
            "baseline",
        );
        assert_eq!(
            s.baseline_history[&key("node:pve1", metric::CPU_PCT)].len(),
            168
        );
        // Trends: hourly, then 5-minute averages for the last five hours and this one.
        let split = hour - 5 * 3_600_000;
        let mut want = history(
            "storage:pve1/tank",
            metric::STORAGE_USED_PCT,
            week,
            split - 1,
            3_600_000,
        );
        want.extend(history(
            "storage:pve1/tank",
            metric::STORAGE_USED_PCT,
            split,
            NOW,
            300_000,
        ));
        assert_close(
            &s.trend_history[&key("storage:pve1/tank", metric::STORAGE_USED_PCT)],
            &want,
            "trend",
        );
        let f = forecast::detect(&s, &forecast::ForecastConfig::default());
        assert!(
            f.is_empty(),
            "a pool at 58 % growing 1 %/day is months from full: {f:?}"
        );
        let trend = &s.trend_history[&key("storage:pve1/tank", metric::STORAGE_USED_PCT)];
        let fc = forecast::capacity(trend, NOW, &forecast::ForecastConfig::default()).unwrap();
        assert!((fc.daily_change_pct - 1.0).abs() < 0.05, "{fc:?}");
    }

    #[test]
    fn a_backfilled_half_day_forecasts_at_once() {
        // As the demo does: a pool reports now, then 12 hours of 5-minute points are stored
        // behind it in one batch (all late for the tiers).
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("warden.redb")).unwrap();
        let pool = "storage:pve1/tank";
        store
            .ingest(
                &[batch(
                    1,
                    NOW,
                    vec![(pool, metric::STORAGE_USED_PCT, NOW, 90.0)],
                )],
                NOW,
            )
            .unwrap();
        let backfill = (1..=144)
            .map(|i| {
                let wobble = ((i * 7919) % 11) as f64 / 25.0 - 0.2;
                let ts = NOW - i * 300_000;
                (
                    pool,
                    metric::STORAGE_USED_PCT,
                    ts,
                    90.0 - 0.5 * (i as f64 / 12.0) + wobble,
                )
            })
            .collect();
        store
            .ingest(&[batch(2, NOW, backfill)], NOW + 1_000)
            .unwrap();
        let s = snapshot(&store, "default", NOW + 2_000, 3_600_000).unwrap();
        let found = forecast::detect(&s, &forecast::ForecastConfig::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let f = found[0].capacity_forecast.as_ref().unwrap();
        assert!((f.daily_change_pct - 12.0).abs() < 1.0, "{f:?}");
    }
}
