//! Tests of the downsampled tiers: roll-ups, late and replaced samples, hour closing, files
//! without tiers, and bulk reads against raw history.

use super::super::keys::{MINUTES_KEPT_KEY, SERIES, parse_tier_key, series_name};
use super::*;
use crate::model::IngestItem;
use crate::store::AggregateQuery;
use redb::ReadableTableMetadata;
use std::collections::BTreeMap;
use warden_shared::ids::ResourceId;
use warden_shared::metric;
use warden_shared::telemetry::{Sample, TelemetryBatch};

const ORG: &str = "default";
/// An hour boundary.
const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("warden.redb")).unwrap();
    (dir, store)
}

/// What was stored, last write wins: (resource, metric) -> ts -> value.
#[derive(Default)]
struct Model(BTreeMap<(String, String), BTreeMap<i64, f64>>);

/// Feeds `store` and the model the same samples.
struct Feed<'a> {
    store: &'a Store,
    model: Model,
    seqs: BTreeMap<String, u64>,
}

impl<'a> Feed<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            model: Model::default(),
            seqs: BTreeMap::new(),
        }
    }

    /// One batch from `agent` with `samples` (resource, metric, ts, value), stored at `now`.
    fn send(&mut self, agent: &str, samples: &[(&str, &str, i64, f64)], now: i64) {
        let seq = self.seqs.entry(agent.to_owned()).or_default();
        *seq += 1;
        let batch = TelemetryBatch {
            seq: *seq,
            collector: "host".into(),
            collected_at_ms: now,
            samples: samples
                .iter()
                .map(|&(r, m, ts_ms, value)| Sample {
                    resource_id: ResourceId::new(r).unwrap(),
                    metric: m.into(),
                    ts_ms,
                    value,
                })
                .collect(),
            ..TelemetryBatch::default()
        };
        let item = IngestItem {
            agent_id: agent.into(),
            org_id: ORG.into(),
            batch,
            provenance: Vec::new(),
        };
        let out = self.store.ingest(&[item], now).unwrap();
        assert!(out[0].stored);
        for &(r, m, ts, v) in samples {
            self.model
                .0
                .entry((r.to_owned(), m.to_owned()))
                .or_default()
                .insert(ts, v);
        }
    }
}

/// A deterministic wobbly value.
fn value(i: i64) -> f64 {
    let x = (i.wrapping_mul(2_654_435_761) % 1000) as f64;
    40.0 + x / 37.0 - (i % 7) as f64 * 1.3
}

fn series_id(store: &Store, res: &str, metric: &str) -> u64 {
    let txn = store.read_txn().unwrap();
    let table = txn.open_table(SERIES).unwrap();
    let mut name = String::new();
    series_name(&mut name, ORG, res, metric);
    table.get(name.as_str()).unwrap().unwrap().value()
}

/// Which tier [`rows`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Minutes,
    Hours,
}

/// All rows of a tier: (minute or hour, series) -> aggregate.
fn rows(store: &Store, tier: Tier) -> BTreeMap<(i64, u64), Aggregate> {
    let txn = store.read_txn().unwrap();
    let mut out = BTreeMap::new();
    match tier {
        Tier::Minutes => {
            for e in txn.open_table(MINUTES).unwrap().iter().unwrap() {
                let (k, v) = e.unwrap();
                let (b, _, s) = parse_tier_key(k.value());
                out.insert((b, s), Aggregate::decode(v.value()));
            }
        }
        Tier::Hours => {
            for e in txn.open_table(HOURS).unwrap().iter().unwrap() {
                let (k, v) = e.unwrap();
                let (day, _, s) = parse_tier_key(k.value());
                let row = Day::decode(v.value()).unwrap();
                assert!(
                    row.0.iter().any(Option::is_some),
                    "empty day rows are removed"
                );
                for (h, a) in (day * 24..).zip(row.0) {
                    if let Some(a) = a {
                        out.insert((h, s), a);
                    }
                }
            }
        }
    }
    out
}

fn rolled(store: &Store) -> Option<(i64, i64)> {
    marks_of(store).map(|m| (m.minutes, m.hours))
}

fn marks_of(store: &Store) -> Option<Marks> {
    let txn = store.read_txn().unwrap();
    marks(&txn.open_table(META).unwrap()).unwrap()
}

fn agg_of(values: impl IntoIterator<Item = f64>) -> Option<Aggregate> {
    let mut acc = None;
    for v in values {
        fold(&mut acc, &Aggregate::of(v));
    }
    acc
}

fn assert_same(what: &str, got: &Aggregate, want: &Aggregate) {
    assert_eq!(got.count, want.count, "{what}: count");
    assert_eq!(got.min, want.min, "{what}: min");
    assert_eq!(got.max, want.max, "{what}: max");
    let tolerance = 1e-9 * want.sum.abs().max(1.0);
    assert!(
        (got.sum - want.sum).abs() <= tolerance,
        "{what}: sum {} != {}",
        got.sum,
        want.sum
    );
}

/// The tiers hold exactly the model's aggregates within the watermarks, and nothing else.
fn check_tiers(store: &Store, model: &Model) {
    let marks = marks_of(store).expect("rolled up");
    let Marks {
        minutes: minute_wm,
        hours: hour_wm,
        kept,
        ..
    } = marks;
    assert!(kept <= hour_wm * 60 && hour_wm * 60 <= minute_wm && kept % 60 == 0);
    let mut want_minutes = BTreeMap::new();
    let mut want_hours = BTreeMap::new();
    for ((res, metric), points) in &model.0 {
        let id = series_id(store, res, metric);
        let mut by_minute: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for (&ts, &v) in points {
            by_minute.entry(bucket_of(ts)).or_default().push(v);
        }
        let key = metric_key(metric);
        for (m, vs) in by_minute {
            let hour = m.div_euclid(MINUTES_PER_HOUR);
            if m >= kept && marks.minute_rolled(m, id) && !marks.is_packed(hour, key, id) {
                want_minutes.insert((m, id), agg_of(vs.iter().copied()).unwrap());
            }
            if marks.hour_rolled(hour, key, id) {
                let h = want_hours
                    .entry((m.div_euclid(MINUTES_PER_HOUR), id))
                    .or_insert_with(Vec::new);
                h.extend(vs);
            }
        }
    }
    let got = rows(store, Tier::Minutes);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want_minutes.keys().collect::<Vec<_>>(),
        "minute rows"
    );
    for (k, want) in &want_minutes {
        assert_same(&format!("minute {k:?}"), &got[k], want);
    }
    let got = rows(store, Tier::Hours);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want_hours.keys().collect::<Vec<_>>(),
        "hour rows"
    );
    for (k, vs) in &want_hours {
        let want = agg_of(vs.iter().copied()).unwrap();
        assert_same(&format!("hour {k:?}"), &got[k], &want);
    }
}

/// Rolls up everything closed at `now`.
fn settle(store: &Store, now: i64) {
    while store.roll_up(now).unwrap().pending {}
}

/// Three hours of two series, a sample every 7 s (several per minute, irregular phase), sent
/// in 2-minute batches with `now` following the data.
fn three_hours(feed: &mut Feed<'_>) -> i64 {
    let mut now = T0;
    let mut i = 0i64;
    while now < T0 + 3 * HOUR {
        let samples: Vec<_> = (0..17)
            .flat_map(|k| {
                let ts = now + k * 7_000;
                i += 1;
                [
                    ("node:a", metric::CPU_PCT, ts, value(i)),
                    (
                        "node:b",
                        metric::MEM_USED_PCT,
                        ts + 3_000,
                        value(i + 5) / 2.0,
                    ),
                ]
            })
            .collect();
        now += 17 * 7_000;
        feed.send("a1", &samples, now + 1_000);
    }
    now
}

#[test]
fn tiers_hold_exactly_the_raw_aggregates() {
    let (_dir, store) = open();
    let mut feed = Feed::new(&store);
    let end = three_hours(&mut feed);
    // As ingest left it: minutes before the previous one and hours before that are rolled up.
    let (m, h) = rolled(&store).unwrap();
    assert_eq!(m, bucket_of(end + 1_000) - GRACE_MINUTES);
    assert_eq!(h, m.div_euclid(60));
    check_tiers(&store, &feed.model);
    // The data ends 25 s into the fourth hour, so the third is still open.
    assert_eq!(rows(&store, Tier::Hours).len(), 2 * 2);
    settle(&store, end + 2 * HOUR);
    check_tiers(&store, &feed.model);
    assert_eq!(rows(&store, Tier::Hours).len(), 2 * 4);
}

#[test]
fn hours_close_once_all_their_minutes_are_rolled_up() {
    let (_dir, store) = open();
    let mut feed = Feed::new(&store);
    feed.send(
        "a1",
        &[("node:a", metric::CPU_PCT, T0 + 5 * MIN, 1.0)],
        T0 + 5 * MIN,
    );
    feed.send(
        "a1",
        &[("node:a", metric::CPU_PCT, T0 + 59 * MIN, 3.0)],
        T0 + 59 * MIN,
    );
    // The last minute of the hour is still open: no hour row yet.
    assert_eq!(rolled(&store), Some((bucket_of(T0 + 58 * MIN), T0 / HOUR)));
    assert!(rows(&store, Tier::Hours).is_empty());
    // One minute after the hour ended, its last minute is still within the grace period.
    feed.send(
        "a1",
        &[("node:a", metric::CPU_PCT, T0 + 60 * MIN, 5.0)],
        T0 + 60 * MIN + 30_000,
    );
    assert!(rows(&store, Tier::Hours).is_empty());
    // Then it closes, and the hour row covers both samples.
    feed.send(
        "a1",
        &[("node:a", metric::CPU_PCT, T0 + 61 * MIN, 7.0)],
        T0 + 61 * MIN,
    );
    let hours = rows(&store, Tier::Hours);
    assert_eq!(hours.len(), 1);
    let a = hours.values().next().unwrap();
    assert_eq!((a.count, a.sum, a.min, a.max), (2, 4.0, 1.0, 3.0));
    check_tiers(&store, &feed.model);
    // Nothing is due: no write transaction.
    assert_eq!(store.roll_up(T0 + 61 * MIN).unwrap(), RollUp::default());
}

#[test]
fn late_out_of_order_and_replaced_samples_keep_the_tiers_exact() {
    let (_dir, store) = open();
    let mut feed = Feed::new(&store);
    let end = three_hours(&mut feed);
    let (minute_wm, hour_wm) = rolled(&store).unwrap();
    assert!(
        minute_wm > hour_wm * 60,
        "the current hour is partly rolled up"
    );

    // Late samples in closed hours and in rolled minutes of the open hour, newest first, for
    // an existing and a new series.
    let late: Vec<_> = [
        T0 + 2 * HOUR + 30 * MIN + 500,
        T0 + HOUR + 10 * MIN + 1,
        T0 + 3,
    ]
    .into_iter()
    .flat_map(|ts| {
        [
            ("node:a", metric::CPU_PCT, ts, 99.5),
            ("node:c", metric::CPU_PCT, ts, 0.25),
        ]
    })
    .collect();
    let open_hour = (minute_wm - 1) * MIN + 1;
    let mut late = late;
    late.push(("node:a", metric::CPU_PCT, open_hour, -4.0));
    feed.send("a2", &late, end + 2_000);
    check_tiers(&store, &feed.model);

    // Replacing the minimum of a minute and of its hour with a larger value: both are
    // recomputed, the minimum rises.
    let points = &feed.model.0[&("node:a".to_owned(), metric::CPU_PCT.to_owned())];
    let (&ts, &low) = points
        .range(T0 + HOUR..T0 + 2 * HOUR)
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap();
    feed.send(
        "a3",
        &[("node:a", metric::CPU_PCT, ts, low + 1_000.0)],
        end + 3_000,
    );
    check_tiers(&store, &feed.model);
    let hour = rows(&store, Tier::Hours)[&(
        ts.div_euclid(HOUR),
        series_id(&store, "node:a", metric::CPU_PCT),
    )];
    assert!(hour.min > low);

    // A replay the seq check skips changes nothing.
    let before = (rows(&store, Tier::Minutes), rows(&store, Tier::Hours));
    let replay = IngestItem {
        agent_id: "a3".into(),
        org_id: ORG.into(),
        batch: TelemetryBatch {
            seq: 1,
            samples: vec![Sample {
                resource_id: ResourceId::new("node:a").unwrap(),
                metric: metric::CPU_PCT.into(),
                ts_ms: ts,
                value: -1e9,
            }],
            ..TelemetryBatch::default()
        },
        provenance: Vec::new(),
    };
    assert!(!store.ingest(&[replay], end + 4_000).unwrap()[0].stored);
    assert_eq!(
        (rows(&store, Tier::Minutes), rows(&store, Tier::Hours)),
        before
    );

    // The same sample sent again with the same value (a second agent's overlapping report).
    feed.send(
        "a4",
        &[("node:a", metric::CPU_PCT, ts, low + 1_000.0)],
        end + 5_000,
    );
    assert_eq!(
        (rows(&store, Tier::Minutes), rows(&store, Tier::Hours)),
        before
    );
    settle(&store, end + HOUR);
    check_tiers(&store, &feed.model);
}

/// Everything `aggregates` gives for `q`, as (bucket, mean) per resource.
fn means(store: &Store, q: &AggregateQuery<'_>) -> Vec<Vec<(i64, f64)>> {
    store
        .view()
        .unwrap()
        .aggregates(ORG, std::slice::from_ref(q))
        .unwrap()[0]
        .iter()
        .map(|b| b.iter().map(|(t, a)| (*t, a.mean())).collect())
        .collect()
}

fn assert_close(got: &[(i64, f64)], want: &[(i64, f64)], what: &str) {
    assert_eq!(
        got.iter().map(|p| p.0).collect::<Vec<_>>(),
        want.iter().map(|p| p.0).collect::<Vec<_>>(),
        "{what}: buckets"
    );
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0),
            "{what}: {g:?} != {w:?}"
        );
    }
}

#[test]
fn bulk_reads_equal_raw_history_whatever_tier_holds_the_data() {
    let (_dir, store) = open();
    let mut feed = Feed::new(&store);
    // Eleven series, so bulk reads use range reads (and one series point lookups).
    let resources: Vec<String> = (0..11).map(|i| format!("vm:c/{}", 100 + i)).collect();
    // From 22:00 UTC: the hours span two rows (days) of the hour tier.
    let start = T0 + 14 * HOUR;
    let mut now = start;
    let mut i = 0;
    while now < start + 5 * HOUR {
        let samples: Vec<_> = resources
            .iter()
            .enumerate()
            .flat_map(|(k, r)| {
                (0..4).map(move |j| {
                    (
                        r.as_str(),
                        metric::CPU_PCT,
                        now + j * 13_000 + k as i64,
                        0.0,
                    )
                })
            })
            .map(|(r, m, ts, _)| {
                i += 1;
                (r, m, ts, value(i))
            })
            .collect();
        now += 4 * 13_000;
        feed.send("a1", &samples, now + 500);
    }
    let (minute_wm, hour_wm) = rolled(&store).unwrap();
    assert!(hour_wm >= (start + 4 * HOUR) / HOUR && minute_wm > hour_wm * 60);
    let ranges = [
        (start - HOUR, now + HOUR),
        (start + 17_345, now - 1),
        (start + HOUR + 59_999, start + 4 * HOUR + 61_000),
        (start + 2 * HOUR, start + 3 * HOUR - 1),
        (start + 4 * HOUR + 30 * MIN + 7, now),
        (start + 30_000, start + 40_000),
    ];
    for step in [MIN, 5 * MIN, HOUR, 2 * HOUR, 45_000] {
        for (from, to) in ranges {
            let all: Vec<&str> = resources.iter().map(String::as_str).collect();
            for ids in [vec![all[3]], all.clone()] {
                let q = AggregateQuery {
                    metric: metric::CPU_PCT,
                    resources: ids.clone(),
                    from_ms: from,
                    to_ms: to,
                    step_ms: step,
                };
                let got = means(&store, &q);
                for (r, got) in ids.iter().zip(&got) {
                    let want = store
                        .history(ORG, r, metric::CPU_PCT, from, to, Some(step), 100_000)
                        .unwrap();
                    assert_close(got, &want, &format!("{r} step {step} {from}..={to}"));
                    // One series read by its id reads the same.
                    let one = store
                        .view()
                        .unwrap()
                        .series_aggregates(ORG, &[(r, metric::CPU_PCT)], from, to, step)
                        .unwrap();
                    let one: Vec<_> = one[0].iter().map(|(t, a)| (*t, a.mean())).collect();
                    assert_close(&one, &want, &format!("one {r} step {step} {from}..={to}"));
                }
            }
        }
    }
    // Unknown series and metrics give no buckets; a bad step is refused.
    let q = AggregateQuery {
        metric: "nope",
        resources: vec!["vm:c/100", "vm:c/999"],
        from_ms: T0,
        to_ms: now,
        step_ms: MIN,
    };
    assert_eq!(means(&store, &q), vec![Vec::new(), Vec::new()]);
    let bad = AggregateQuery { step_ms: 0, ..q };
    assert!(matches!(
        store.view().unwrap().aggregates(ORG, &[bad]),
        Err(StoreError::InvalidStep(0))
    ));
}

#[test]
fn a_file_without_tiers_reads_the_same_and_catches_up_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    let store = Store::open(&path).unwrap();
    let mut feed = Feed::new(&store);
    let end = three_hours(&mut feed);
    let q = AggregateQuery {
        metric: metric::CPU_PCT,
        resources: vec!["node:a"],
        from_ms: T0 - 30_000,
        to_ms: end,
        step_ms: HOUR,
    };
    let before = means(&store, &q);
    let model = feed.model;
    // What a file written before the tiers existed looks like: no tier tables, no watermarks.
    {
        let txn = store.write_txn().unwrap();
        txn.delete_table(MINUTES).unwrap();
        txn.delete_table(HOURS).unwrap();
        let mut meta = txn.open_table(META).unwrap();
        meta.remove(MINUTES_ROLLED_KEY).unwrap();
        meta.remove(HOURS_ROLLED_KEY).unwrap();
        meta.remove(MINUTES_KEPT_KEY).unwrap();
        drop(meta);
        txn.commit().unwrap();
    }
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(rolled(&store), None);
    assert_close(&means(&store, &q)[0], &before[0], "from raw samples");
    // The backlog is rolled up a bounded step at a time.
    let mut calls = 0;
    while store.roll_up_bounded(end + 2_000, 300).unwrap().pending {
        calls += 1;
        assert!(calls < 1_000);
    }
    assert!(calls > 3, "{calls} calls");
    check_tiers(&store, &model);
    assert_eq!(rows(&store, Tier::Hours).len(), 4);
    let txn = store.read_txn().unwrap();
    assert_eq!(
        txn.open_table(HOURS).unwrap().len().unwrap(),
        2,
        "one row a day and series"
    );
    drop(txn);
    assert_close(&means(&store, &q)[0], &before[0], "from the tiers");
}

#[test]
fn old_minutes_are_pruned_and_late_samples_there_still_count() {
    let (_dir, store) = open();
    let mut feed = Feed::new(&store);
    let end = three_hours(&mut feed);
    let q = AggregateQuery {
        metric: metric::CPU_PCT,
        resources: vec!["node:a"],
        from_ms: T0 + 17_000,
        to_ms: end,
        step_ms: 5 * MIN,
    };
    let before = means(&store, &q);
    // Two days and a half later the minute rows of the first hours are gone.
    let later = T0 + 53 * HOUR;
    feed.send("a2", &[("node:a", metric::CPU_PCT, later, 1.0)], later);
    settle(&store, later);
    let marks = marks_of(&store).unwrap();
    assert_eq!(
        marks.kept,
        (later / MIN - 1 - MINUTE_TIER_KEEP_MINUTES) / 60 * 60
    );
    assert!(
        rows(&store, Tier::Minutes)
            .keys()
            .all(|(m, _)| *m >= marks.kept)
    );
    assert!(
        rows(&store, Tier::Minutes)
            .keys()
            .any(|(m, _)| *m < T0 / MIN + 180)
    );
    check_tiers(&store, &feed.model);
    assert_close(
        &means(&store, &q)[0],
        &before[0],
        "pruned minutes from raw samples",
    );
    // A late sample and a replaced one in pruned minutes: the hours stay exact, no minute
    // rows come back.
    let points = &feed.model.0[&("node:a".to_owned(), metric::CPU_PCT.to_owned())];
    let (&ts, &high) = points
        .range(T0..T0 + HOUR)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap();
    feed.send(
        "a3",
        &[
            ("node:a", metric::CPU_PCT, T0 + 20 * MIN + 1, 55.0),
            ("node:a", metric::CPU_PCT, ts, high - 500.0),
        ],
        later + 1_000,
    );
    check_tiers(&store, &feed.model);
    let hour =
        rows(&store, Tier::Hours)[&(T0 / HOUR, series_id(&store, "node:a", metric::CPU_PCT))];
    assert!(hour.max < high);
}

#[test]
fn aggregates_merge_exactly() {
    let mut a = Aggregate::of(2.0);
    a.add(-1.0);
    let mut b = Aggregate::of(7.5);
    b.merge(&a);
    assert_eq!(
        (b.count, b.sum, b.min, b.max, b.mean()),
        (3, 8.5, -1.0, 7.5, 8.5 / 3.0)
    );
    assert_eq!(Aggregate::decode(&b.encode()), b);
    let mut day = Day::default();
    day.0[0] = Some(a);
    day.0[23] = Some(b);
    let bytes = day.encode();
    assert_eq!(bytes.len(), 4 + 2 * 32);
    assert_eq!(Day::decode(&bytes).unwrap(), day);
    assert!(Day::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(Day::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    assert_eq!(
        Day::decode(&Day::default().encode()).unwrap(),
        Day::default()
    );
    assert_eq!(whole_minutes(0, 59_999), (0, 1));
    assert_eq!(whole_minutes(1, 119_999), (1, 2));
    assert_eq!(whole_minutes(-60_000, -1), (-1, 0));
    assert_eq!(whole_minutes(1, 59_999), (1, 1));
}

/// The aggregates of every series in the model, per `step` bucket (its start).
fn model_buckets(model: &Model, metric: &str, res: &str, step: i64) -> Vec<(i64, Aggregate)> {
    let mut out: BTreeMap<i64, Option<Aggregate>> = BTreeMap::new();
    if let Some(points) = model.0.get(&(res.to_owned(), metric.to_owned())) {
        for (&ts, &v) in points {
            fold(
                out.entry(ts.div_euclid(step) * step).or_default(),
                &Aggregate::of(v),
            );
        }
    }
    out.into_iter().map(|(t, a)| (t, a.unwrap())).collect()
}

/// Roll-ups, hour roll-ups and packing stopped at every kind of cursor (between head groups
/// of a minute, between slices of an hour), with late and replacing samples on both sides of
/// each cursor after every step, keep the tiers and every read exact.
#[test]
fn tiers_stay_exact_whatever_cursor_a_step_stops_at() {
    let (_dir, store) = open();
    let mut feed = Feed::new(&store);
    // 100 resources of two metrics: series ids span four head groups (64 ids) and many
    // slices.
    let resources: Vec<String> = (0..100).map(|i| format!("vm:c/{}", 100 + i)).collect();
    let metrics = [metric::CPU_PCT, metric::MEM_USED_PCT];
    // Two hours and ten minutes, a sample a minute per series, stored at T0: ingest rolls
    // nothing up, the backlog is worked off below in small steps.
    let mut i = 0;
    for minute in 0..130 {
        let ts = T0 + minute * MIN + 5_000;
        let mut samples = Vec::new();
        for r in &resources {
            for m in metrics {
                i += 1;
                samples.push((r.as_str(), m, ts, value(i)));
            }
        }
        feed.send("a1", &samples, T0);
    }
    // Everything is closed, and the first two hours are past the packing grace.
    let now = T0 + 2 * HOUR + 50 * MIN;
    let picked = [&resources[0], &resources[50], &resources[99]];
    let (mut mid_minute, mut mid_hour, mut mid_pack) = (false, false, false);
    let mut step = 0i64;
    loop {
        let rolled = store.roll_up_bounded(now, 1_000).unwrap();
        let packed = store.pack_bounded(now, 1, 1).unwrap();
        step += 1;
        let m = marks_of(&store).unwrap();
        mid_minute |= m.roll_group > 0;
        mid_hour |= m.hour_cursor != Slice::default();
        mid_pack |= m.pack_cursor != Slice::default();
        // Late samples of series before and after each cursor: in the minute being rolled
        // up, the hour being rolled up and the hour being packed; every third step one
        // replaces a stored sample.
        let mut late = Vec::new();
        for (k, r) in picked.iter().enumerate() {
            for metric in metrics {
                for ts in [
                    m.minutes * MIN + 7_000 + step,
                    m.hours * HOUR + 17 * MIN + step,
                    m.packed * HOUR + 33 * MIN + step,
                ] {
                    late.push((r.as_str(), metric, ts, value(step * 7 + k as i64)));
                }
                if step % 3 == 0 {
                    let ts = T0 + (step * 11 + k as i64 * 37) % 130 * MIN + 5_000;
                    late.push((r.as_str(), metric, ts, 500.0 + step as f64));
                }
            }
        }
        late.retain(|s| s.2 < T0 + 130 * MIN);
        // At T0, so ingest's own roll-up has nothing due and the steps stay small.
        feed.send("a2", &late, T0);
        check_tiers(&store, &feed.model);
        for metric in metrics {
            for bucket in [MIN, HOUR] {
                let q = AggregateQuery {
                    metric,
                    resources: resources.iter().map(String::as_str).collect(),
                    from_ms: T0,
                    to_ms: now,
                    step_ms: bucket,
                };
                let got = store.view().unwrap().aggregates(ORG, &[q]).unwrap();
                for (r, got) in resources.iter().zip(&got[0]) {
                    let want = model_buckets(&feed.model, metric, r, bucket);
                    assert_eq!(got.len(), want.len(), "step {step}: {r} {metric} {bucket}");
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(g.0, w.0, "step {step}: {r} {metric}");
                        assert_same(&format!("step {step}: {r} {metric} {}", g.0), &g.1, &w.1);
                    }
                }
            }
        }
        if !rolled.pending && !packed.more {
            break;
        }
        assert!(step < 1_000, "the upkeep does not finish");
    }
    assert!(
        mid_minute && mid_hour && mid_pack,
        "{mid_minute} {mid_hour} {mid_pack}"
    );
    assert!(step > 40, "{step} steps");
    let m = marks_of(&store).unwrap();
    assert_eq!(
        (m.minutes, m.hours, m.packed),
        (
            bucket_of(now) - 1,
            (T0 + 2 * HOUR) / HOUR,
            (T0 + 2 * HOUR) / HOUR
        )
    );
}
