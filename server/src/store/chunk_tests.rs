//! Tests of the chunk store on a real redb file: sealing, merged reads, late samples,
//! retention and restarts, checked against a model map of what was acknowledged.

use super::*;
use crate::model::IngestItem;
use proptest::prelude::*;
use std::collections::BTreeMap;
use warden_shared::ids::ResourceId;
use warden_shared::telemetry::{Resource, Sample, TelemetryBatch};

const ORG: &str = "default";
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2027-01-15T00:00:00Z, a window boundary.
const T0: i64 = 1_800_000_000_000 / HOUR * HOUR;
const METRIC: &str = "cpu.usage_pct";

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("warden.redb")).unwrap();
    (dir, store)
}

fn res(n: usize) -> String {
    format!("node:n{n}")
}

/// One agent's batch: `(resource number, ts, value)` samples.
fn item(seq: u64, samples: &[(usize, i64, f64)]) -> IngestItem {
    let mut resources: Vec<usize> = samples.iter().map(|s| s.0).collect();
    resources.sort_unstable();
    resources.dedup();
    IngestItem {
        agent_id: "a1".into(),
        org_id: ORG.into(),
        batch: TelemetryBatch {
            seq,
            collector: "host".into(),
            collected_at_ms: samples.iter().map(|s| s.1).max().unwrap_or(T0),
            resources: resources
                .iter()
                .map(|&r| Resource {
                    id: ResourceId::new(res(r)).unwrap(),
                    name: res(r),
                    parent: None,
                    status: "online".into(),
                    attrs: Vec::new(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(r, ts_ms, value)| Sample {
                    resource_id: ResourceId::new(res(r)).unwrap(),
                    metric: METRIC.into(),
                    ts_ms,
                    value,
                })
                .collect(),
            ..Default::default()
        },
        provenance: Vec::new(),
    }
}

fn history(store: &Store, r: usize) -> Vec<(i64, f64)> {
    store
        .history(ORG, &res(r), METRIC, i64::MIN, i64::MAX, None, usize::MAX)
        .unwrap()
}

/// Bit patterns, so -0.0 and 0.0 differ.
fn bits(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
    points.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

/// Runs upkeep passes at `now` until nothing is left.
fn settle(store: &Store, now: i64) {
    for _ in 0..1000 {
        if !store.pass(now).unwrap().more {
            return;
        }
    }
    panic!("upkeep never caught up");
}

#[test]
fn sealed_windows_read_back_exactly_and_leave_the_head() {
    let (_dir, store) = open();
    // Three hours of two series at ~10 s with millisecond jitter and a gap.
    let mut seq = 0;
    let mut want: BTreeMap<usize, Vec<(i64, f64)>> = BTreeMap::new();
    for minute in 0..180 {
        if (50..70).contains(&minute) {
            continue;
        }
        seq += 1;
        let samples: Vec<_> = (0..2)
            .flat_map(|r| {
                (0..6).map(move |k| {
                    let ts = T0 + minute * MIN + k * 10_000 + (minute * 7 + k) % 13;
                    (r, ts, (minute * 6 + k) as f64 * 0.5 + r as f64)
                })
            })
            .collect();
        for &(r, ts, v) in &samples {
            want.entry(r).or_default().push((ts, v));
        }
        store
            .ingest(&[item(seq, &samples)], T0 + minute * MIN + MIN)
            .unwrap();
    }
    assert_eq!(store.usage().unwrap().chunks.entries, 0);
    settle(&store, T0 + 3 * HOUR + 11 * MIN);
    let after = store.usage().unwrap();
    // Windows 0..3 are sealed: one chunk per series and window, nothing left in the head.
    assert_eq!(after.chunks.entries, 6);
    assert_eq!(after.head.entries, 0);
    assert_eq!(after.sealed_until_ms, Some(T0 + 3 * HOUR), "{after:?}");
    for r in 0..2 {
        assert_eq!(bits(&history(&store, r)), bits(&want[&r]));
    }
    // A range read across a window boundary and a stepped read match the raw samples.
    let part = store
        .history(
            ORG,
            &res(1),
            METRIC,
            T0 + HOUR - 30_000,
            T0 + HOUR + 30_000,
            None,
            100,
        )
        .unwrap();
    let expect: Vec<_> = want[&1]
        .iter()
        .copied()
        .filter(|(t, _)| (T0 + HOUR - 30_000..=T0 + HOUR + 30_000).contains(t))
        .collect();
    assert_eq!(bits(&part), bits(&expect));
}

#[test]
fn late_samples_merge_into_sealed_chunks_and_the_tiers_follow() {
    let (_dir, store) = open();
    let samples: Vec<_> = (0..120).map(|i| (0, T0 + i * 30_000, 10.0)).collect();
    store.ingest(&[item(1, &samples)], T0 + HOUR).unwrap();
    settle(&store, T0 + 2 * HOUR);
    assert_eq!(store.usage().unwrap().chunks.entries, 1);
    // A new sample in a sealed window, and one that replaces a sealed value (the maximum).
    store
        .ingest(
            &[item(2, &[(0, T0 + 15_000, 10.0), (0, T0 + 30_000, 99.0)])],
            T0 + 2 * HOUR,
        )
        .unwrap();
    let h = history(&store, 0);
    assert_eq!(h.len(), 121);
    assert_eq!(h[1], (T0 + 15_000, 10.0));
    assert_eq!(h[2], (T0 + 30_000, 99.0));
    // The head stays empty: late samples went into the chunk.
    assert_eq!(store.usage().unwrap().head.entries, 0);
    // The minute tier's first minute now has 3 samples with the new maximum.
    let view = store.view().unwrap();
    let aggs = view
        .aggregates(
            ORG,
            &[AggregateQuery {
                metric: METRIC,
                resources: vec![res(0).as_str()],
                from_ms: T0,
                to_ms: T0 + MIN - 1,
                step_ms: MIN,
            }],
        )
        .unwrap();
    let (_, a) = aggs[0][0][0];
    assert_eq!((a.count, a.max, a.min), (3, 99.0, 10.0));
}

#[test]
fn samples_older_than_raw_retention_are_refused_and_counted() {
    let (_dir, store) = open();
    store
        .set_retention(Retention {
            raw_ms: DAY,
            minute_ms: DAY,
            hour_ms: DAY,
        })
        .unwrap();
    let now = T0 + 10 * DAY;
    let out = store
        .ingest(
            &[item(1, &[(0, now - DAY - 1, 1.0), (0, now - DAY + 1, 2.0)])],
            now,
        )
        .unwrap();
    assert!(out[0].stored);
    assert_eq!(history(&store, 0), [(now - DAY + 1, 2.0)]);
    assert_eq!(store.counters().too_old.load(Ordering::Relaxed), 1);
}

#[test]
fn edge_values_and_irregular_times_survive_sealing() {
    let (_dir, store) = open();
    let values = [
        -0.0,
        0.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        1e308,
        -1.5,
        0.1 + 0.2,
        123_456_789.123_456_78,
        f64::EPSILON,
    ];
    // Irregular gaps from 1 ms to 20 minutes, including the window boundary itself.
    let gaps = [
        1, 999, 10_000, 1, 1_200_000, 37, 59_999, 2, 600_000, 3, 1, 17,
    ];
    let mut ts = T0 - 2 * HOUR;
    let samples: Vec<_> = values
        .iter()
        .zip(gaps)
        .map(|(&v, g)| {
            ts += g;
            (0, ts, v)
        })
        .chain([(0, T0 - HOUR, 7.0), (0, T0 - 1, 8.0)])
        .collect();
    store.ingest(&[item(1, &samples)], T0).unwrap();
    settle(&store, T0 + HOUR);
    assert!(store.usage().unwrap().chunks.entries >= 2);
    let mut want: Vec<_> = samples.iter().map(|&(_, t, v)| (t, v)).collect();
    want.sort_by_key(|p| p.0);
    assert_eq!(bits(&history(&store, 0)), bits(&want));
}

#[test]
fn retention_keeps_a_month_of_ingest_bounded_on_disk() {
    let (dir, store) = open();
    store
        .set_retention(Retention {
            raw_ms: 7 * DAY,
            minute_ms: 2 * DAY,
            hour_ms: 7 * DAY,
        })
        .unwrap();
    // 10 series at 60 s for 30 simulated days, eight hours per batch, upkeep after each.
    let mut sizes = Vec::new();
    for step in 0..30 * 3 {
        let base = T0 + step * 8 * HOUR;
        let samples: Vec<_> = (0..10)
            .flat_map(|r| (0..480).map(move |m| (r, base + m * MIN, (m % 7) as f64)))
            .collect();
        let now = base + 8 * HOUR;
        store
            .ingest(&[item(step as u64 + 1, &samples)], now)
            .unwrap();
        settle(&store, now + 15 * MIN);
        if step % 3 == 2 {
            sizes.push(
                std::fs::metadata(dir.path().join("warden.redb"))
                    .unwrap()
                    .len(),
            );
        }
    }
    let now = T0 + 30 * DAY + 15 * MIN;
    let usage = store.usage().unwrap();
    // Raw: the windows from the horizon's on, 10 series.
    let windows = (now / HOUR) - ((now - 7 * DAY) / HOUR);
    assert_eq!(usage.chunks.entries, windows as u64 * 10, "{usage:?}");
    let h = history(&store, 3);
    assert_eq!(h.first().map(|p| p.0), Some((now - 7 * DAY) / HOUR * HOUR));
    assert_eq!(h.len() as i64, windows * 60);
    // Hour rows: whole days from the horizon's day on.
    assert!(usage.hour.entries <= 9 * 10, "{usage:?}");
    // The file stops growing once retention deletes as much as ingest adds.
    let (week2, last) = (sizes[13], sizes[29]);
    assert!(last <= week2 + week2 / 4, "{sizes:?}");
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// Ingest samples `(resource, minutes after the clock's hour - 180, value)` and advance
    /// the clock by `advance` minutes.
    Ingest(Vec<(usize, i64, i8)>, i64),
    /// An upkeep pass (roll-up, retention, seal) with the current clock.
    Upkeep,
    /// Close and reopen the store.
    Restart,
    /// Store a new value for the `n`-th acknowledged sample (modulo their number): a late
    /// sample that replaces one, in whichever tier its minute is by now.
    Replace(usize, i8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            prop::collection::vec((0..3usize, 0..240i64, any::<i8>()), 1..40),
            0..90i64
        )
            .prop_map(|(s, a)| Op::Ingest(s, a)),
        3 => Just(Op::Upkeep),
        1 => Just(Op::Restart),
        1 => (any::<usize>(), any::<i8>()).prop_map(|(n, v)| Op::Replace(n, v)),
    ]
}

/// The model's aggregates of resource `r` in buckets of `step` over `[from, to]`.
fn model_buckets(
    model: &BTreeMap<(usize, i64), f64>,
    r: usize,
    from: i64,
    to: i64,
    step: i64,
) -> Vec<(i64, Aggregate)> {
    let mut out: Vec<(i64, Aggregate)> = Vec::new();
    for (&(_, ts), &v) in model.range((r, from)..=(r, to)) {
        let b = ts.div_euclid(step) * step;
        match out.last_mut() {
            Some((last, a)) if *last == b => a.add(v),
            _ => out.push((b, Aggregate::of(v))),
        }
    }
    out
}

/// Counts, minima and maxima bit for bit, sums up to rounding.
fn same_buckets(got: &[(i64, Aggregate)], want: &[(i64, Aggregate)]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|((gb, g), (wb, w))| {
            gb == wb
                && (g.count, g.min.to_bits(), g.max.to_bits())
                    == (w.count, w.min.to_bits(), w.max.to_bits())
                && (g.sum - w.sum).abs() <= 1e-9 * w.sum.abs().max(1.0)
        })
}

/// Minute- and hour-step reads of every resource over the kept raw range equal the model:
/// `aggregates` (Patrol's bulk read) and `series_aggregates` (`/api/metrics/history`).
fn check_tiers_against(
    store: &Store,
    model: &BTreeMap<(usize, i64), f64>,
    now: i64,
    raw_ms: i64,
) -> Result<(), TestCaseError> {
    // Whole hours from the raw horizon's next hour: raw samples before it may be gone
    // while aggregates of them are still kept.
    let from = (now - raw_ms).div_euclid(HOUR) * HOUR + HOUR;
    let to = now + 2 * HOUR;
    let names: Vec<String> = (0..3).map(res).collect();
    let view = store.view().unwrap();
    for step in [MIN, 5 * MIN, HOUR] {
        let q = AggregateQuery {
            metric: METRIC,
            resources: names.iter().map(String::as_str).collect(),
            from_ms: from,
            to_ms: to,
            step_ms: step,
        };
        let got = view.aggregates(ORG, &[q]).unwrap();
        let series: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), METRIC)).collect();
        let one_by_one = view
            .series_aggregates(ORG, &series, from, to, step)
            .unwrap();
        for r in 0..3 {
            let want = model_buckets(model, r, from, to, step);
            prop_assert!(
                same_buckets(&got[0][r], &want),
                "aggregates r{} step {}: {:?} != {:?}",
                r,
                step,
                got[0][r],
                want
            );
            prop_assert!(
                same_buckets(&one_by_one[r], &want),
                "series_aggregates r{} step {}",
                r,
                step
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of ingests, seals, packing, restarts, retention passes and replaced
    /// samples reads back exactly what was acknowledged and has not expired, raw and from the
    /// minute and hour tiers.
    #[test]
    fn reads_equal_the_model_after_any_sequence(ops in prop::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.redb");
        let mut store = Store::open(&path).unwrap();
        let policy = Retention { raw_ms: 3 * HOUR, minute_ms: 2 * HOUR, hour_ms: 4 * HOUR };
        store.set_retention(policy).unwrap();
        let mut model: BTreeMap<(usize, i64), f64> = BTreeMap::new();
        let mut now = T0 + 4 * HOUR;
        let mut seq = 0;
        for op in ops {
            match op {
                Op::Ingest(samples, advance) => {
                    seq += 1;
                    // Times from three hours back (some refused as too old) to an hour
                    // ahead, at millisecond offsets so series interleave.
                    let samples: Vec<_> = samples
                        .into_iter()
                        .map(|(r, m, v)| (r, now - 3 * HOUR + m * MIN + r as i64, f64::from(v) / 4.0))
                        .collect();
                    store.ingest(&[item(seq, &samples)], now).unwrap();
                    for (r, ts, v) in samples {
                        if ts >= now - policy.raw_ms {
                            model.insert((r, ts), v);
                        }
                    }
                    now += advance * MIN;
                }
                Op::Upkeep => {
                    store.pass(now).unwrap();
                    // Retention deletes whole windows before the horizon's.
                    let horizon = (now - policy.raw_ms).div_euclid(HOUR) * HOUR;
                    model.retain(|(_, ts), _| *ts >= horizon);
                }
                Op::Restart => {
                    drop(store);
                    store = Store::open(&path).unwrap();
                    store.set_retention(policy).unwrap();
                }
                Op::Replace(n, v) => {
                    let horizon = now - policy.raw_ms;
                    let kept: Vec<_> = model.range(..).filter(|(k, _)| k.1 >= horizon).collect();
                    if !kept.is_empty() {
                        let (&(r, ts), _) = kept[n % kept.len()];
                        let v = f64::from(v) / 4.0;
                        seq += 1;
                        store.ingest(&[item(seq, &[(r, ts, v)])], now).unwrap();
                        model.insert((r, ts), v);
                    }
                }
            }
            check_tiers_against(&store, &model, now, policy.raw_ms)?;
            for r in 0..3 {
                let want: Vec<_> = model
                    .range((r, i64::MIN)..=(r, i64::MAX))
                    .map(|(&(_, t), &v)| (t, v))
                    .collect();
                prop_assert_eq!(bits(&history(&store, r)), bits(&want));
            }
        }
    }
}

/// The previous release's store (`tests/fixtures/store/`, made by `make_legacy.rs` there).
mod legacy {
    pub(super) const T0: i64 = 1_764_547_200_000;
    pub(super) const METRICS: [&str; 3] =
        ["cpu.usage_pct", "memory.used_bytes", "net.rx_bytes_per_s"];

    /// What the generator stored for resource `r`, metric `m`.
    pub(super) fn series(r: usize, m: usize) -> Vec<(i64, f64)> {
        (0..180)
            .flat_map(|minute| {
                (0..6).map(move |k| T0 + minute * 60_000 + k * 10_000 + r as i64 * 7)
            })
            .map(|ts| (ts, value(r, m, ts)))
            .collect()
    }

    fn value(r: usize, m: usize, ts: i64) -> f64 {
        let step = (ts - T0) / 10_000;
        match m {
            0 => ((step * 7 + r as i64 * 13) % 1000) as f64 / 10.0,
            1 => 1_000_000_000.0 + (step % 360) as f64 * 4096.0 + r as f64,
            _ => ((step * 31 + r as i64) % 977) as f64 * 0.25,
        }
    }
}

#[test]
fn a_store_from_the_previous_release_converts_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/store/legacy-a76c7fc.redb");
    std::fs::copy(&fixture, &path).unwrap();
    let read_all = |store: &Store| {
        let mut out = Vec::new();
        for r in 0..4 {
            for (m, metric) in legacy::METRICS.iter().enumerate() {
                let got = store
                    .history(ORG, &res(r), metric, i64::MIN, i64::MAX, None, usize::MAX)
                    .unwrap();
                assert_eq!(
                    bits(&got),
                    bits(&legacy::series(r, m)),
                    "node:n{r} {metric}"
                );
                out.push(got.len());
            }
        }
        out
    };
    // Its per-sample head is packed when it is opened, in steps: interrupt after one.
    {
        let db = Database::create(&path).unwrap();
        assert_eq!(head::convert_step(&db, 5000).unwrap(), 5000);
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(read_all(&store), [1080; 12]);
    let usage = store.usage().unwrap();
    // One packed row a minute (the 12 series share a group), and a second one for the
    // minute the interrupted step split.
    assert_eq!((usage.head.entries, usage.chunks.entries), (181, 0));
    // Convert a step at a time, restarting in between as an interrupted server would.
    let now = legacy::T0 + 4 * HOUR;
    let mut store = store;
    let mut steps = 0;
    loop {
        let sealed = store.seal(now, 1).unwrap();
        steps += 1;
        read_all(&store);
        drop(store);
        store = Store::open(&path).unwrap();
        if sealed.samples == 0 {
            store.roll_up(now).unwrap();
        }
        if !sealed.more && sealed.until_ms == Some(legacy::T0 + 3 * HOUR) {
            break;
        }
        assert!(steps < 50, "conversion does not finish");
    }
    assert!(
        steps >= 2,
        "the conversion was interrupted at least once: {steps}"
    );
    let usage = store.usage().unwrap();
    assert_eq!(
        (usage.head.entries, usage.chunks.entries),
        (0, 36),
        "{usage:?}"
    );
    read_all(&store);
}

#[test]
fn final_hours_of_the_minute_tier_are_packed_and_read_the_same() {
    let (dir, store) = open();
    // Three hours of 12 series (more than the point-read limit, so the range-read path too)
    // at 10 s with one-decimal values, then a quarter hour into the fourth.
    let samples: Vec<_> = (0..12)
        .flat_map(|r| {
            (0..3 * 360 + 90).map(move |i| {
                (
                    r,
                    T0 + i * 10_000 + r as i64,
                    ((i * 7 + r as i64) % 50) as f64 / 10.0,
                )
            })
        })
        .collect();
    let now = T0 + 3 * HOUR + 15 * MIN;
    store.ingest(&[item(1, &samples)], now).unwrap();
    let names: Vec<String> = (0..12).map(res).collect();
    let read = |store: &Store| {
        let view = store.view().unwrap();
        [MIN, HOUR].map(|step| {
            let q = AggregateQuery {
                metric: METRIC,
                resources: names.iter().map(String::as_str).collect(),
                from_ms: T0,
                to_ms: now,
                step_ms: step,
            };
            let few: Vec<(&str, &str)> = names[..2].iter().map(|n| (n.as_str(), METRIC)).collect();
            (
                view.aggregates(ORG, &[q]).unwrap().remove(0),
                view.series_aggregates(ORG, &few, T0, now, step).unwrap(),
            )
        })
    };
    // Rolled up, not packed yet.
    while store.roll_up(now).unwrap().pending {}
    let rows = store.usage().unwrap().minute;
    assert_eq!(rows.entries, 12 * (3 * 60 + 14), "{rows:?}");
    let before = read(&store);
    settle(&store, now);
    let packed = store.usage().unwrap().minute;
    // Three hours packed (one row per series and hour), the fourth still in minute rows.
    assert_eq!(packed.entries, 12 * (3 + 14), "{packed:?}");
    assert!(packed.bytes * 4 < rows.bytes, "{rows:?} -> {packed:?}");
    let after = read(&store);
    for (step, (b, a)) in before.iter().zip(&after).enumerate() {
        for (x, y) in b.0.iter().zip(&a.0).chain(b.1.iter().zip(&a.1)) {
            assert!(same_buckets(y, x), "step {step}: {y:?} != {x:?}");
        }
    }
    // A late sample in a packed hour and one replacing a packed hour's maximum.
    let late = [(0, T0 + 5_000, 100.0), (1, T0 + 10_001, -3.0)];
    store.ingest(&[item(2, &late)], now).unwrap();
    drop(store);
    let store = Store::open(&dir.path().join("warden.redb")).unwrap();
    let view = store.view().unwrap();
    let first = |r: usize| {
        view.series_aggregates(ORG, &[(res(r).as_str(), METRIC)], T0, T0 + MIN - 1, MIN)
            .unwrap()[0][0]
            .1
    };
    let (a, b) = (first(0), first(1));
    assert_eq!((a.count, a.max), (7, 100.0), "{a:?}");
    assert_eq!((b.count, b.min), (6, -3.0), "{b:?}");
    let hour = view
        .series_aggregates(ORG, &[(res(0).as_str(), METRIC)], T0, T0 + HOUR - 1, HOUR)
        .unwrap()[0][0]
        .1;
    assert_eq!((hour.count, hour.max), (361, 100.0), "{hour:?}");
    assert_eq!(store.usage().unwrap().minute.entries, 12 * (3 + 14));
}

#[test]
fn packing_is_resumable_a_metric_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    let mut store = Store::open(&path).unwrap();
    // Two metrics of 3 series over three hours at 20 s, then ten minutes into the fourth.
    const OTHER: &str = "mem.used_pct";
    let samples: Vec<_> = (0..3)
        .flat_map(|r| (0..3 * 180 + 30).map(move |i| (r, T0 + i * 20_000, (i % 9) as f64 * 0.5)))
        .collect();
    let mut other = item(2, &samples);
    for s in &mut other.batch.samples {
        s.metric = OTHER.into();
        s.value += 1.0;
    }
    let now = T0 + 3 * HOUR + 12 * MIN;
    store.ingest(&[item(1, &samples), other], now).unwrap();
    while store.roll_up(now).unwrap().pending {}
    let read = |store: &Store| {
        let view = store.view().unwrap();
        let names: Vec<String> = (0..3).map(res).collect();
        [METRIC, OTHER].map(|metric| {
            let q = AggregateQuery {
                metric,
                resources: names.iter().map(String::as_str).collect(),
                from_ms: T0,
                to_ms: now,
                step_ms: MIN,
            };
            view.aggregates(ORG, &[q]).unwrap().remove(0)
        })
    };
    let want = read(&store);
    // One (hour, metric) slice a transaction, reopening after each as a killed server would.
    let mut steps = 0;
    loop {
        let done = store.pack_bounded(now, 1, 1).unwrap();
        let got = read(&store);
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!(same_buckets(g, w), "step {steps}: {g:?} != {w:?}");
        }
        drop(store);
        store = Store::open(&path).unwrap();
        steps += 1;
        if !done.more {
            break;
        }
        assert!(steps < 20, "packing does not finish");
    }
    // Three hours of two metrics, one slice each (the last call may find nothing left).
    assert!((6..=7).contains(&steps), "{steps} steps");
    let usage = store.usage().unwrap();
    assert_eq!(usage.minute.entries, 2 * 3 * (3 + 10), "{usage:?}");
}

#[test]
fn usage_counts_each_orgs_series_and_apportions_the_bytes() {
    let (_dir, store) = open();
    let mut a = item(1, &[(0, T0, 1.0), (1, T0, 2.0), (2, T0, 3.0)]);
    a.org_id = "acme".into();
    let mut b = item(1, &[(0, T0, 4.0)]);
    b.org_id = "beta".into();
    b.agent_id = "b1".into();
    store.ingest(&[a, b], T0).unwrap();
    let usage = store.usage().unwrap();
    let got: Vec<(&str, u64)> = usage
        .orgs
        .iter()
        .map(|o| (o.org.as_str(), o.series))
        .collect();
    assert_eq!(got, [("acme", 3), ("beta", 1)]);
    assert_eq!(usage.series, 4);
    let bytes = usage.head.bytes + usage.chunks.bytes + usage.minute.bytes + usage.hour.bytes;
    let (acme, beta) = (usage.orgs[0].bytes_estimated, usage.orgs[1].bytes_estimated);
    assert_eq!(acme, bytes * 3 / 4);
    assert_eq!(beta, bytes / 4);
}
