//! Anomaly scores against learned baselines: is a resource's CPU or memory now far above what
//! is usual for it at this time of day? A pure detector over a [`Snapshot`] (its
//! `baseline_history` of hourly averages, its recent `history` and `now_ms`), tuned by
//! [`AnomalyConfig`]. It owns [`METRICS`], the metrics the snapshot reads baselines for.
//!
//! Method:
//! 1. **Current level**: the median of the last `window_ms` (15 minutes) of raw samples, when
//!    they span at least 80 % of the window with at least three samples; without recent
//!    history, the latest sample if it is at most 5 minutes old. One sample is never a level.
//! 2. **Own baseline**: the resource's hourly averages at the same UTC hour of day on earlier
//!    days, reduced to their median and MAD (median absolute deviation). Once at least
//!    `min_weekday_weeks` earlier weeks have data at the same weekday *and* hour, that slot
//!    replaces the hour of day, so weekly patterns are learned (the store keeps 7 days by
//!    default, so this needs longer retention). Hourly buckets that overlap the current window
//!    are left out: they hold what is being scored.
//! 3. **Fleet prior**: the current hour of day pooled over every resource of the same kind and
//!    metric, computed once per run, when at least `min_fleet_resources` resources contribute.
//!    A new resource is scored against it from its first window of samples. As the resource's
//!    own days at this hour (`n`) accumulate, its own baseline takes the weight
//!    `w = min(1, n / full_weight_days)`. The two are blended as a mixture: median
//!    `w·m_own + (1−w)·m_fleet`, spread `sqrt(w·s_own² + (1−w)·s_fleet² + w(1−w)·(m_own −
//!    m_fleet)²)`, so a resource that is consistently unlike its peers is not called anomalous
//!    while the prior fades out. Without a prior the own baseline needs three days at this hour.
//! 4. **Score**: robust z = (current − median) / (1.4826 · max(MAD, `min_mad_pct`)). The floor
//!    keeps flat series (memory at 41.0 % ± 0.05) from turning wiggles into huge scores.
//! 5. **Finding**: upward deviations only (these are utilisation metrics; a drop is good news,
//!    or a silence, which other detectors own), when z ≥ `watch_z` *and* the level is at least
//!    `min_delta_pct` points above the baseline (2 % → 5 % CPU is no anomaly). Warning from
//!    `warning_z`, except that a baseline that is mostly the fleet's (w < ½) gives at most
//!    Watch: "busier than its peers" is weaker evidence than "busier than itself". Never
//!    Critical: fixed thresholds own that.
//! 6. **Recurrence**: a level the resource's own history shows recurring at this time is not
//!    raised. Weekly: it was reached (within `min_delta_pct`) at the same weekday and hour in
//!    an earlier week, before the day-of-week baseline has enough weeks (a weekly scrub).
//!    Daily, shorter than an hour: hourly averages show a 25-minute nightly job only as its
//!    share of the hour (PBS verifying at 55 % from 03:00 to 03:25 over 10 % makes 03:00's
//!    average 29 %), so a level is let pass when the hour's usual average sits above the hours
//!    either side by as much as that level held for a quarter of the hour would lift it.
//!
//! Limit: a recurring job shorter than a quarter of an hour, at a level far above its hour's
//! average, can still look anomalous while it runs.
//!
//! Cost: the run scores one hour of day, the current one. One forward search through each
//! series collects its values at that hour (and the hours either side) into shared buffers;
//! fleet priors are computed once per (kind, metric) from them; recent history is joined in
//! key order; records are looked up only for what is raised. About 3.4 million hourly points
//! (10,000 resources, two metrics, seven days) take a few tens of milliseconds.

use super::snapshot::Snapshot;
use crate::model::finding::{Category, Detection, Severity, Source};
use crate::model::{LatestSample, ResourceRecord};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

/// Metrics baselines are learned for; the snapshot reads seven days of hourly averages of each.
/// Nodes (PVE nodes and agents' own hosts), VMs, LXC guests and Docker containers report both;
/// no collector reports an IO-wait share yet.
pub const METRICS: &[&str] = &[metric::CPU_PCT, metric::MEM_USED_PCT];

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// MAD times this estimates the standard deviation of normally distributed data.
const MAD_SCALE: f64 = 1.4826;
/// The smallest MAD floor used whatever the configuration says, so a score is always finite.
const MIN_MAD_FLOOR: f64 = 0.01;
/// Fewest raw samples in the window for a current level.
const MIN_WINDOW_SAMPLES: usize = 3;
/// Without recent history, the latest sample counts only if it is at most this old.
const LATEST_FRESH_MS: i64 = 5 * 60_000;
/// Own days at this hour needed to score against the own baseline alone (no fleet prior).
const MIN_OWN_ALONE: usize = 3;
/// The shortest share of an hour a recurring job is assumed to run for (15 minutes).
const BURST_SHARE: f64 = 0.25;
/// Weekday names, from Sunday (the epoch was a Thursday).
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// How anomaly detection is tuned. Serialised as the `anomaly` object of
/// `/api/ai/patrol/settings`; a field missing from stored settings takes its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Whether anomaly findings are raised at all.
    pub enabled: bool,
    /// Robust z-score from which a deviation is a Watch finding.
    pub watch_z: f64,
    /// Robust z-score from which it is a Warning (own baselines only).
    pub warning_z: f64,
    /// The level must also be at least this many percentage points above the baseline.
    pub min_delta_pct: f64,
    /// Floor on the baseline's MAD, percentage points.
    pub min_mad_pct: f64,
    /// The current level is the median of this much recent history, ms.
    pub window_ms: i64,
    /// Own days of history at an hour after which the resource's own baseline fully replaces
    /// the fleet prior for that hour.
    pub full_weight_days: u32,
    /// Earlier weeks with data at the same weekday and hour before the day-of-week baseline
    /// replaces the hour-of-day one.
    pub min_weekday_weeks: u32,
    /// Fewest resources of a kind with history at the hour for a fleet prior.
    pub min_fleet_resources: u32,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            watch_z: 4.0,
            warning_z: 6.0,
            min_delta_pct: 15.0,
            min_mad_pct: 2.0,
            window_ms: 15 * 60_000,
            full_weight_days: 4,
            min_weekday_weeks: 2,
            min_fleet_resources: 5,
        }
    }
}

impl AnomalyConfig {
    /// Range and order checks on every field, each problem named as `anomaly.<field>`.
    pub fn check(&self, problems: &mut Vec<String>) {
        let mut range = |name: &str, v: f64, lo: f64, hi: f64| {
            if !(lo..=hi).contains(&v) {
                problems.push(format!("anomaly.{name} must be from {lo} to {hi}"));
            }
        };
        range("watch_z", self.watch_z, 1.0, 50.0);
        range("warning_z", self.warning_z, 1.0, 100.0);
        range("min_delta_pct", self.min_delta_pct, 0.0, 100.0);
        range("min_mad_pct", self.min_mad_pct, 0.1, 50.0);
        // The run reads an hour of recent history; a longer window could never be covered.
        range("window_ms", self.window_ms as f64, 60_000.0, 3_600_000.0);
        range(
            "full_weight_days",
            f64::from(self.full_weight_days),
            1.0,
            60.0,
        );
        range(
            "min_weekday_weeks",
            f64::from(self.min_weekday_weeks),
            1.0,
            52.0,
        );
        range(
            "min_fleet_resources",
            f64::from(self.min_fleet_resources),
            1.0,
            100_000.0,
        );
        if self.warning_z < self.watch_z {
            problems.push(format!(
                "anomaly.warning_z ({}) must not be below anomaly.watch_z ({})",
                self.warning_z, self.watch_z
            ));
        }
    }
}

/// Scores every baselined metric of every resource: each series of `baseline_history` (the
/// snapshot reads one for every baselined metric a resource reports), in the order of that
/// map.
pub fn detect(s: &Snapshot, cfg: &AnomalyConfig) -> Vec<Detection> {
    let mut out = Vec::new();
    if !cfg.enabled {
        return out;
    }
    let slot = Slot::at(s.now_ms, cfg.window_ms);
    // One pass over all baseline history: each series' values at the current slot, kept in
    // shared buffers (no allocation per series).
    let mut buf = Buffers::default();
    let series: Vec<(&(String, String), Collected)> = s
        .baseline_history
        .iter()
        .map(|(key, points)| (key, collect_slot(points, slot, &mut buf)))
        .collect();
    let priors = fleet_priors(&series, &buf.hour, cfg);
    // Recent history is joined to the series in key order rather than looked up key by key,
    // and resource records are indexed only once one is needed (a detection, or a series
    // without recent history): most runs score 20,000 series and touch no record.
    let mut history = s.history.iter().peekable();
    let mut index: Option<HashMap<&str, &ResourceRecord>> = None;
    let mut record = |id: &str| {
        index
            .get_or_insert_with(|| s.resources.iter().map(|r| (r.id.as_str(), r)).collect())
            .get(id)
            .copied()
    };
    let mut window = Vec::new();
    for (key, c) in &series {
        let (id, metric) = (key.0.as_str(), key.1.as_str());
        let recent = loop {
            match history.peek().map(|&(k, points)| (k.cmp(key), points)) {
                Some((Ordering::Less, _)) => _ = history.next(),
                Some((Ordering::Equal, points)) => break Some(points.as_slice()),
                _ => break None,
            }
        };
        let latest = match recent {
            Some(_) => None,
            None => record(id).and_then(|r| r.latest.get(metric)),
        };
        let Some(current) = current_level(s.now_ms, recent, latest, cfg.window_ms, &mut window)
        else {
            continue;
        };
        let own = own(&mut buf, c, s.now_ms);
        let prior = priors.get(&(kind_of(id), metric));
        let Some(b) = baseline(&own, prior, cfg) else {
            continue;
        };
        let sc = score(current.value, &b, cfg);
        let Some(severity) = sc.severity else {
            continue;
        };
        if recurring(&own, &b, current.value, cfg) {
            continue;
        }
        if let Some(r) = record(id) {
            out.push(detection(r, metric, current, &b, &sc, slot, cfg, severity));
        }
    }
    out
}

/// Where `now` falls, and which hourly buckets may serve as baseline.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// UTC hour of day, 0–23.
    hour: i64,
    /// Day of week, 0 = Sunday.
    weekday: i64,
    /// Buckets starting after this overlap the current window.
    last_start_ms: i64,
}

impl Slot {
    fn at(now_ms: i64, window_ms: i64) -> Self {
        Self {
            hour: hour_of_day(now_ms),
            weekday: weekday(now_ms),
            last_start_ms: now_ms - window_ms.max(0) - HOUR_MS,
        }
    }

    /// "14:00 UTC", or "Tue 14:00 UTC" for a day-of-week baseline.
    fn when(self, weekday: bool) -> String {
        let day = usize::try_from(self.weekday).map_or("", |d| WEEKDAYS[d % 7]);
        if weekday {
            format!("{day} {:02}:00 UTC", self.hour)
        } else {
            format!("{:02}:00 UTC", self.hour)
        }
    }
}

fn hour_of_day(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS).rem_euclid(24)
}

fn weekday(ts_ms: i64) -> i64 {
    // 1970-01-01 was a Thursday (4).
    (ts_ms.div_euclid(DAY_MS) + 4).rem_euclid(7)
}

/// The kind of a canonical id (`<kind>:<name>`), the same as its record's `kind`.
fn kind_of(id: &str) -> &str {
    // A byte scan: kinds are short, and this runs for every series.
    id.bytes().position(|b| b == b':').map_or(id, |i| &id[..i])
}

/// A median and a MAD.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    median: f64,
    mad: f64,
}

/// The median of `v`, reordering it; `None` when empty.
fn median_in_place(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    // Most slices are a week of days or a window of samples: sorting them is cheapest.
    if n <= 32 {
        v.sort_unstable_by(f64::total_cmp);
        return Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        });
    }
    let (left, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *mid;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lo + hi) / 2.0)
}

/// Median and MAD of `v`, overwriting it with the absolute deviations.
fn median_mad(v: &mut [f64]) -> Option<Spread> {
    let median = median_in_place(v)?;
    for x in v.iter_mut() {
        *x = (*x - median).abs();
    }
    let mad = median_in_place(v)?;
    Some(Spread { median, mad })
}

/// The pooled baseline of one (kind, metric) at the current hour.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Prior {
    spread: Spread,
    /// Resources with history at this hour that were pooled.
    resources: usize,
}

/// Fleet priors for the current hour by (kind, metric), for those with enough resources.
fn fleet_priors<'a>(
    series: &[(&'a (String, String), Collected)],
    hour: &[f64],
    cfg: &AnomalyConfig,
) -> BTreeMap<(&'a str, &'a str), Prior> {
    let mut pools: BTreeMap<(&str, &str), (Vec<f64>, usize)> = BTreeMap::new();
    for ((id, metric), c) in series {
        if c.hour.is_empty() {
            continue;
        }
        let (values, resources) = pools.entry((kind_of(id), metric.as_str())).or_default();
        values.extend_from_slice(&hour[c.hour.clone()]);
        *resources += 1;
    }
    let min = usize::try_from(cfg.min_fleet_resources.max(1)).unwrap_or(usize::MAX);
    pools
        .into_iter()
        .filter(|(_, (_, n))| *n >= min)
        .filter_map(|(k, (mut values, resources))| {
            median_mad(&mut values).map(|spread| (k, Prior { spread, resources }))
        })
        .collect()
}

/// A current level and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Current {
    value: f64,
    /// The window's median (`true`) or the latest sample alone.
    windowed: bool,
}

/// The sustained level now from a series' `recent` history (time-ordered): the median of the
/// window, or the fresh `latest` sample when the snapshot has no recent history of it at all.
fn current_level(
    now_ms: i64,
    recent: Option<&[(i64, f64)]>,
    latest: Option<&LatestSample>,
    window_ms: i64,
    buf: &mut Vec<f64>,
) -> Option<Current> {
    let Some(points) = recent else {
        let latest = latest?;
        let fresh = now_ms - latest.ts_ms <= LATEST_FRESH_MS && latest.value.is_finite();
        return fresh.then_some(Current {
            value: latest.value,
            windowed: false,
        });
    };
    let since = now_ms - window_ms;
    let start = points.partition_point(|p| p.0 < since);
    buf.clear();
    let mut first = None;
    for &(ts, v) in &points[start..] {
        if ts <= now_ms && v.is_finite() {
            first.get_or_insert(ts);
            buf.push(v);
        }
    }
    // Held over most of the window, as the heuristics require.
    if now_ms - first? < window_ms * 4 / 5 || buf.len() < MIN_WINDOW_SAMPLES {
        return None;
    }
    median_in_place(buf).map(|value| Current {
        value,
        windowed: true,
    })
}

/// A resource's own history at the current slot.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Own {
    /// Median and MAD at this hour of day.
    hour: Option<Spread>,
    /// Days with data at this hour.
    hour_n: usize,
    /// Median and MAD at this weekday and hour.
    weekday: Option<Spread>,
    /// Weeks with data at this weekday and hour.
    weekday_n: usize,
    /// The highest hourly average at this weekday and hour.
    weekday_max: Option<f64>,
    /// The usual level of the hours either side (the mean of their medians).
    neighbours: Option<f64>,
    /// Span of the own history, days.
    days: f64,
}

/// The buffers every series' slot values are collected into (shared: no allocation per
/// series).
#[derive(Debug, Default)]
struct Buffers {
    /// Values at the slot's hour of day.
    hour: Vec<f64>,
    /// Values at the slot's weekday and hour.
    weekday: Vec<f64>,
    /// Values in the hour before the slot's.
    before: Vec<f64>,
    /// Values in the hour after the slot's.
    after: Vec<f64>,
}

/// One series' history at the current slot: ranges into the [`Buffers`].
#[derive(Debug, Clone, Default, PartialEq)]
struct Collected {
    hour: Range<usize>,
    weekday: Range<usize>,
    before: Range<usize>,
    after: Range<usize>,
    /// Days with data at this hour.
    days: usize,
    /// Weeks with data at this weekday and hour.
    weeks: usize,
    /// Its first usable point.
    first_ms: Option<i64>,
}

/// Appends the finite values of `points` (time-ordered) at the slot's hour of day on earlier
/// days to `buf.hour` (those on the slot's weekday also to `buf.weekday`), and those of the
/// hours either side to `buf.before` and `buf.after`. The hot loop of a run: a forward search
/// from one day's hour to the next, no calendar arithmetic per point.
fn collect_slot(points: &[(i64, f64)], slot: Slot, buf: &mut Buffers) -> Collected {
    let starts = (
        buf.hour.len(),
        buf.weekday.len(),
        buf.before.len(),
        buf.after.len(),
    );
    let mut c = Collected {
        first_ms: points
            .first()
            .map(|p| p.0)
            .filter(|&f| f <= slot.last_start_ms),
        ..Collected::default()
    };
    if let Some(first) = c.first_ms {
        // The start of the slot's hour on the first point's day, or on the next day.
        let mut day = first.div_euclid(DAY_MS) * DAY_MS + slot.hour * HOUR_MS;
        if day + 2 * HOUR_MS <= first {
            day += DAY_MS;
        }
        // Buckets starting later overlap the window.
        let usable = &points[..gallop(points, |p| p.0 <= slot.last_start_ms)];
        let finite = |range: &[(i64, f64)], into: &mut Vec<f64>| {
            into.extend(range.iter().map(|p| p.1).filter(|v| v.is_finite()));
        };
        let mut i = 0;
        while i < usable.len() {
            i += gallop(&usable[i..], |p| p.0 < day - HOUR_MS);
            let a = i + gallop(&usable[i..], |p| p.0 < day);
            let b = a + gallop(&usable[a..], |p| p.0 < day + HOUR_MS);
            let e = b + gallop(&usable[b..], |p| p.0 < day + 2 * HOUR_MS);
            finite(&usable[i..a], &mut buf.before);
            finite(&usable[b..e], &mut buf.after);
            let before = buf.hour.len();
            finite(&usable[a..b], &mut buf.hour);
            if buf.hour.len() > before {
                c.days += 1;
                if weekday(day) == slot.weekday {
                    c.weeks += 1;
                    buf.weekday.extend_from_slice(&buf.hour[before..]);
                }
            }
            i = e;
            day += DAY_MS;
        }
    }
    c.hour = starts.0..buf.hour.len();
    c.weekday = starts.1..buf.weekday.len();
    c.before = starts.2..buf.before.len();
    c.after = starts.3..buf.after.len();
    c
}

/// `slice.partition_point(pred)` by exponential search from the front: a few probes when the
/// answer is near, as the next day's hour is in hourly data.
fn gallop(slice: &[(i64, f64)], pred: impl Fn(&(i64, f64)) -> bool) -> usize {
    let mut hi = 1;
    while hi < slice.len() && pred(&slice[hi]) {
        hi *= 2;
    }
    let lo = hi / 2;
    lo + slice[lo..hi.min(slice.len())].partition_point(pred)
}

/// The own baseline parts from a series' collected values (reordered in place).
fn own(buf: &mut Buffers, c: &Collected, now_ms: i64) -> Own {
    let weekday = &mut buf.weekday[c.weekday.clone()];
    let before = median_in_place(&mut buf.before[c.before.clone()]);
    let after = median_in_place(&mut buf.after[c.after.clone()]);
    Own {
        hour_n: c.days,
        weekday_n: c.weeks,
        weekday_max: weekday.iter().copied().reduce(f64::max),
        hour: median_mad(&mut buf.hour[c.hour.clone()]),
        weekday: median_mad(weekday),
        neighbours: match (before, after) {
            (Some(b), Some(a)) => Some((b + a) / 2.0),
            (b, a) => b.or(a),
        },
        days: c
            .first_ms
            .map_or(0.0, |f| (now_ms - f) as f64 / DAY_MS as f64),
    }
}

/// What a level is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Baseline {
    median: f64,
    /// The blended MAD, before the floor.
    mad: f64,
    /// Share of the resource's own history: 0 = fleet prior only, 1 = own only.
    own_weight: f64,
    /// Whether the own part is the day-of-week slot.
    weekday: bool,
    /// Own days of history at this hour.
    own_points: usize,
    /// Span of the own history, days.
    own_days: f64,
    /// Resources in the fleet prior; 0 when it was not used.
    fleet_resources: usize,
}

/// The baseline from the own slot and the fleet prior; `None` when neither is good enough.
fn baseline(own: &Own, prior: Option<&Prior>, cfg: &AnomalyConfig) -> Option<Baseline> {
    let weeks = usize::try_from(cfg.min_weekday_weeks.max(1)).unwrap_or(usize::MAX);
    let own_spread = match own.weekday {
        Some(w) if own.weekday_n >= weeks => Some((w, true)),
        _ => own.hour.map(|h| (h, false)),
    };
    let (w, own_part, fleet) = match (own_spread, prior) {
        (None, None) => return None,
        (None, Some(p)) => (0.0, None, Some(p)),
        (Some(_), None) if own.hour_n < MIN_OWN_ALONE => return None,
        (Some(o), None) => (1.0, Some(o), None),
        (Some(o), Some(p)) => {
            let full = f64::from(cfg.full_weight_days.max(1));
            let w = (own.hour_n as f64 / full).min(1.0);
            (w, Some(o), (w < 1.0).then_some(p))
        }
    };
    let (o, weekday) = own_part.unwrap_or((
        Spread {
            median: 0.0,
            mad: 0.0,
        },
        false,
    ));
    let f = fleet.map_or(o, |p| p.spread);
    // Mixture moments, in MAD units: the spread also covers the two medians' disagreement.
    let gap = (o.median - f.median) / MAD_SCALE;
    let var = w * o.mad.powi(2) + (1.0 - w) * f.mad.powi(2) + w * (1.0 - w) * gap.powi(2);
    Some(Baseline {
        median: w * o.median + (1.0 - w) * f.median,
        mad: var.sqrt(),
        own_weight: w,
        weekday,
        own_points: own.hour_n,
        own_days: own.days,
        fleet_resources: fleet.map_or(0, |p| p.resources),
    })
}

/// A level scored against its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score {
    /// The robust z-score.
    z: f64,
    /// The MAD used, after the floor.
    mad: f64,
    /// The finding it makes, if any.
    severity: Option<Severity>,
}

fn score(current: f64, b: &Baseline, cfg: &AnomalyConfig) -> Score {
    let mad = b.mad.max(cfg.min_mad_pct.max(MIN_MAD_FLOOR));
    let z = (current - b.median) / (MAD_SCALE * mad);
    let meaningful = current - b.median >= cfg.min_delta_pct;
    let severity = if !meaningful || z < cfg.watch_z {
        None
    } else if z >= cfg.warning_z && b.own_weight >= 0.5 {
        Some(Severity::Warning)
    } else {
        Some(Severity::Watch)
    };
    Score { z, mad, severity }
}

/// Whether `current` is a level the resource's own history shows recurring at this time:
///
/// - **Weekly**: it was already reached (within `min_delta_pct`) at the same weekday and hour
///   in an earlier week, and the day-of-week baseline does not have enough weeks yet.
/// - **Daily, shorter than an hour**: the hour's usual average sits above the hours either
///   side by at least the MAD floor, and by as much as the current level would lift it if it
///   held for a quarter of the hour ([`BURST_SHARE`]). Hourly averages cannot show a 25-minute
///   nightly job's level, only its share of the hour; this is that share, inverted.
fn recurring(own: &Own, b: &Baseline, current: f64, cfg: &AnomalyConfig) -> bool {
    let weekly = !b.weekday
        && own
            .weekday_max
            .is_some_and(|m| m >= current - cfg.min_delta_pct);
    let daily = match (own.hour, own.neighbours) {
        (Some(h), Some(around)) => {
            let lift = h.median - around;
            lift > cfg.min_mad_pct && current <= around + lift / BURST_SHARE
        }
        _ => false,
    };
    weekly || daily
}

/// "CPU" / "memory" for a metric.
fn what(metric: &str) -> &str {
    match metric {
        metric::CPU_PCT => "CPU",
        metric::MEM_USED_PCT => "memory",
        other => other,
    }
}

/// A kind's noun, singular or plural.
fn kind_noun(kind: &str, n: usize) -> String {
    let one = match ResourceKind::from_prefix(kind) {
        Some(ResourceKind::Node) => "node",
        Some(ResourceKind::Vm) => "VM",
        Some(ResourceKind::SystemContainer) => "LXC container",
        Some(ResourceKind::AppContainer) => "Docker container",
        _ => return kind.to_owned(),
    };
    if n == 1 {
        one.to_owned()
    } else {
        format!("{one}s")
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one finding, all computed by the caller"
)]
fn detection(
    r: &ResourceRecord,
    metric: &str,
    current: Current,
    b: &Baseline,
    sc: &Score,
    slot: Slot,
    cfg: &AnomalyConfig,
    severity: Severity,
) -> Detection {
    let what = what(metric);
    let when = slot.when(b.weekday);
    let cur = current.value;
    let minutes = cfg.window_ms / 60_000;
    let peers = kind_noun(&r.kind, b.fleet_resources);
    let mut d = Detection::on(
        r,
        &format!("anomaly-{metric}"),
        severity,
        Category::Performance,
    );
    d.source = Source::Anomaly;
    let held = if current.windowed {
        format!("has held around {cur:.1} % for the last {minutes} minutes")
    } else {
        format!("is at {cur:.1} %")
    };
    let learned = if b.own_weight >= 1.0 {
        format!("learned from {:.1} days of its own history", b.own_days)
    } else if b.own_weight <= 0.0 {
        format!(
            "judging by the {} {peers} with history at this hour, as it has none of its own \
             yet",
            b.fleet_resources
        )
    } else {
        format!(
            "blending its own {} days at this hour ({:.0} %) with the {} {peers} with history \
             at this hour ({:.0} %)",
            b.own_points,
            b.own_weight * 100.0,
            b.fleet_resources,
            (1.0 - b.own_weight) * 100.0
        )
    };
    if b.own_weight <= 0.0 {
        d.title = format!(
            "{}: {what} at {cur:.0} %, far above similar {peers} at {when} (~{:.0} %)",
            r.name, b.median
        );
    } else {
        d.title = format!(
            "{}: {what} at {cur:.0} %, unusually high for {when} (usually ~{:.0} %)",
            r.name, b.median
        );
    }
    d.description = format!(
        "{what} on {} {held}. At {when} it is usually {:.1} % (± {:.1}), {learned}; this is \
         {:.1} robust standard deviations and {:.1} points above that.",
        r.name,
        b.median,
        sc.mad,
        sc.z,
        cur - b.median
    );
    d.recommendation = if metric == metric::MEM_USED_PCT {
        format!(
            "Find what grew in memory on {} (a leak, a new workload, more data held in memory) \
             and whether it is expected; restart or limit it before memory runs out. If \
             this is the new normal, the baseline learns it within about four days.",
            r.name
        )
    } else {
        format!(
            "Find what is using {what} on {} (its top processes, or its busiest guests or \
             containers) and whether it is expected: a runaway process, a job started off \
             schedule, a traffic spike. If this is the new normal, the baseline learns it \
             within about four days.",
            r.name
        )
    };
    let source = if current.windowed {
        format!("{minutes}-min median")
    } else {
        "latest sample".to_owned()
    };
    let floor = if b.mad < sc.mad {
        format!(", MAD floor; measured {:.2}", b.mad)
    } else {
        String::new()
    };
    let basis = if b.own_weight >= 1.0 {
        format!("own history {:.1} days", b.own_days)
    } else if b.own_weight <= 0.0 {
        format!("fleet prior of {} {peers}", b.fleet_resources)
    } else {
        format!(
            "{:.0} % own history ({} days at this hour) + {:.0} % fleet prior of {} {peers}",
            b.own_weight * 100.0,
            b.own_points,
            (1.0 - b.own_weight) * 100.0,
            b.fleet_resources
        )
    };
    d.evidence = format!(
        "{metric} {cur:.1} % ({source}) vs baseline {:.1} % ± {:.1} (median ± MAD{floor}, \
         {when}, {basis}); z = {:.1}, +{:.1} points",
        b.median,
        sc.mad,
        sc.z,
        cur - b.median
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    const MIN: i64 = 60_000;
    /// Monday 2027-01-18 00:00 UTC.
    const MONDAY: i64 = 20_836 * DAY_MS;

    /// `day` days, `hour` hours and `min` minutes after [`MONDAY`].
    fn t(day: i64, hour: i64, min: i64) -> i64 {
        MONDAY + day * DAY_MS + hour * HOUR_MS + min * MIN
    }

    /// xorshift64*: deterministic noise without a crate.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Roughly standard normal (Irwin–Hall).
        fn gauss(&mut self) -> f64 {
            (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
        }
    }

    /// A daily cycle: `base` ± `amp`, peaking at `peak` o'clock UTC.
    fn daily(base: f64, amp: f64, peak: f64) -> impl Fn(i64) -> f64 {
        move |ts| {
            let h = ts.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
            base + amp * (TAU * (h - peak) / 24.0).cos()
        }
    }

    fn snapshot(now: i64) -> Snapshot {
        Snapshot {
            now_ms: now,
            ..Snapshot::default()
        }
    }

    /// One series of `id`: hourly averages since `now - span` (the current partial hour
    /// included, as the store returns it), one-minute samples for the last hour, and the
    /// latest sample. `noise` is the per-sample noise; hourly averages get a fifth of it plus
    /// a day-to-day wobble. `spikes` is the chance of a one-sample spike to 100 %.
    struct Series<'a> {
        id: &'a str,
        metric: &'a str,
        span: i64,
        noise: f64,
        spikes: f64,
        /// Samples each hourly average is taken over (1: the middle of the hour).
        per_hour: i64,
    }

    impl Series<'_> {
        fn add(&self, s: &mut Snapshot, rng: &mut Rng, level: impl Fn(i64) -> f64) {
            let now = s.now_ms;
            let start = now - self.span;
            let mut hourly = Vec::new();
            let mut b = start.div_euclid(HOUR_MS) * HOUR_MS;
            while b <= now {
                let (lo, hi) = (b.max(start), (b + HOUR_MS).min(now));
                let n = self.per_hour.max(1);
                let avg = (0..n)
                    .map(|k| level(lo + (hi - lo) * (2 * k + 1) / (2 * n)))
                    .sum::<f64>()
                    / n as f64;
                let v = avg + rng.gauss() * (0.2 * self.noise + 0.5);
                hourly.push((b, v.max(0.0)));
                b += HOUR_MS;
            }
            let mut raw = Vec::new();
            let mut ts = (now - HOUR_MS).max(start);
            while ts <= now {
                let spike = rng.unit() < self.spikes;
                let v = if spike {
                    100.0
                } else {
                    level(ts) + rng.gauss() * self.noise
                };
                raw.push((ts, v.clamp(0.0, 100.0)));
                ts += MIN;
            }
            let key = (self.id.to_owned(), self.metric.to_owned());
            // Series of one resource are added one after the other.
            let idx = match s.resources.last().filter(|r| r.id == self.id) {
                Some(_) => s.resources.len() - 1,
                None => {
                    let (kind, name) = self.id.split_once(':').unwrap();
                    s.resources.push(ResourceRecord {
                        id: self.id.into(),
                        kind: kind.into(),
                        name: name.rsplit('/').next().unwrap_or(name).into(),
                        status: "running".into(),
                        ..ResourceRecord::default()
                    });
                    s.resources.len() - 1
                }
            };
            if let Some(&(ts_ms, value)) = raw.last() {
                s.resources[idx]
                    .latest
                    .insert(self.metric.into(), LatestSample { ts_ms, value });
            }
            s.baseline_history.insert(key.clone(), hourly);
            s.history.insert(key, raw);
        }
    }

    fn cpu(id: &str, days: f64) -> Series<'_> {
        Series {
            id,
            metric: metric::CPU_PCT,
            span: (days * DAY_MS as f64) as i64,
            noise: 3.0,
            spikes: 0.0,
            per_hour: 1,
        }
    }

    /// A CPU series of a resource first seen `minutes` ago.
    fn fresh(id: &str, minutes: i64) -> Series<'_> {
        Series {
            span: minutes * MIN,
            ..cpu(id, 0.0)
        }
    }

    /// `f` until `minutes` ago, then `level`.
    fn jump(f: impl Fn(i64) -> f64, now: i64, minutes: i64, level: f64) -> impl Fn(i64) -> f64 {
        move |ts| {
            if ts > now - minutes * MIN {
                level
            } else {
                f(ts)
            }
        }
    }

    /// `healthy` similar VMs at 15–25 % with a mild daily cycle, seven days each.
    fn vm_fleet(s: &mut Snapshot, rng: &mut Rng, healthy: usize) {
        for i in 0..healthy {
            let id = format!("vm:c/{i}");
            let base = 15.0 + 10.0 * rng.unit();
            cpu(&id, 7.0).add(s, rng, daily(base, 4.0, 14.0));
        }
    }

    fn own_slot(points: &[(i64, f64)], slot: Slot, now: i64) -> Own {
        let mut buf = Buffers::default();
        let c = collect_slot(points, slot, &mut buf);
        own(&mut buf, &c, now)
    }

    fn z_of(evidence: &str) -> f64 {
        let z = evidence.split("z = ").nth(1).unwrap();
        z.split(',').next().unwrap().parse().unwrap()
    }

    #[test]
    fn calendar_helpers() {
        assert_eq!(weekday(MONDAY), 1);
        assert_eq!(weekday(t(1, 23, 59)), 2);
        assert_eq!(hour_of_day(t(3, 14, 7)), 14);
        let slot = Slot::at(t(1, 10, 7), 15 * MIN);
        assert_eq!(slot.when(true), "Tue 10:00 UTC");
        assert_eq!(slot.when(false), "10:00 UTC");
        // 09:00's bucket ends at 10:00, after the window started at 09:52.
        assert_eq!(slot.last_start_ms, t(1, 8, 52));
        // Long slices take the selection path.
        let mut long: Vec<f64> = (0..41).map(|i| f64::from((i * 17) % 41)).collect();
        assert_eq!(median_in_place(&mut long), Some(20.0));
        assert_eq!(
            median_in_place(&mut long[..40]).map(|m| m.round()),
            Some(20.0)
        );
        let mut even: Vec<f64> = (0..40).rev().map(f64::from).collect();
        assert_eq!(median_in_place(&mut even), Some(19.5));
        let points: Vec<(i64, f64)> = (0..100).map(|i| (i * 10, 0.0)).collect();
        for x in [-5, 0, 5, 10, 15, 333, 990, 5000] {
            assert_eq!(
                gallop(&points, |p| p.0 < x),
                points.partition_point(|p| p.0 < x),
                "{x}"
            );
        }
        assert_eq!(gallop(&[], |_| true), 0);
        let mut v = vec![3.0, 1.0, 2.0, 10.0];
        assert_eq!(
            median_mad(&mut v),
            Some(Spread {
                median: 2.5,
                mad: 1.0
            })
        );
    }

    #[test]
    fn a_level_normal_at_14_is_anomalous_at_03() {
        // Busy afternoons (~60 % at 14:00), quiet nights (~11 % at 03:00).
        let profile = daily(35.0, 25.0, 14.0);
        for (hour, expect) in [(14, None), (3, Some(Severity::Warning))] {
            let now = t(7, hour, 7);
            let mut s = snapshot(now);
            let mut rng = Rng(7);
            cpu("vm:c/app", 7.0).add(&mut s, &mut rng, jump(&profile, now, 20, 60.0));
            let found = detect(&s, &AnomalyConfig::default());
            assert_eq!(found.first().map(|d| d.severity), expect, "{found:?}");
            if let Some(d) = found.first() {
                assert_eq!(found.len(), 1);
                assert_eq!(d.key, "anomaly-cpu_pct");
                assert_eq!(
                    (d.source, d.category),
                    (Source::Anomaly, Category::Performance)
                );
                assert!(d.evidence.contains("03:00 UTC"), "{}", d.evidence);
                assert!(
                    d.evidence.contains("own history 7.0 days"),
                    "{}",
                    d.evidence
                );
                assert!(
                    d.title.contains("unusually high for 03:00 UTC"),
                    "{}",
                    d.title
                );
            }
        }
    }

    #[test]
    fn a_daily_job_shorter_than_an_hour_is_learned() {
        // A verify job every night from 03:00 to 03:25 at 55 %, over 10 % the rest of the day:
        // 03:00's hourly average is only ~29 %.
        let job = |ts: i64| {
            let m = ts.rem_euclid(DAY_MS);
            if (3 * HOUR_MS..3 * HOUR_MS + 25 * MIN).contains(&m) {
                55.0
            } else {
                10.0
            }
        };
        let run = |now: i64, level: Option<f64>| {
            let mut s = snapshot(now);
            let series = Series {
                per_hour: 12,
                ..cpu("node:pbs1", 7.0)
            };
            match level {
                Some(l) => series.add(&mut s, &mut Rng(4), jump(job, now, 20, l)),
                None => series.add(&mut s, &mut Rng(4), job),
            }
            detect(&s, &AnomalyConfig::default())
        };
        assert!(run(t(7, 3, 15), None).is_empty(), "tonight's job");
        // The same level at 05:15 is an anomaly; so is one at 03:15 that no quarter-hour job
        // at that level explains (10 % + 4 x 19 points = 85 %).
        assert_eq!(run(t(7, 5, 15), Some(55.0)).len(), 1);
        assert_eq!(run(t(7, 3, 15), Some(100.0)).len(), 1);
    }

    #[test]
    fn day_of_week_baselines_once_enough_weeks_exist() {
        // 20 % flat, but Mondays 09:00–12:00 run a batch at 70 %.
        let profile = |ts: i64| {
            let h = hour_of_day(ts);
            if weekday(ts) == 1 && (9..12).contains(&h) {
                70.0
            } else {
                20.0
            }
        };
        let run = |now: i64, days: f64, level: f64| {
            let mut s = snapshot(now);
            let mut rng = Rng(3);
            let mut series = cpu("node:pve1", days);
            series.noise = 1.0;
            series.add(&mut s, &mut rng, jump(profile, now, 20, level));
            detect(&s, &AnomalyConfig::default())
        };
        // Three weeks: Monday 10:00 learns its own baseline.
        let monday = t(21, 10, 7);
        let mut s = snapshot(monday);
        cpu("node:pve1", 21.0).add(&mut s, &mut Rng(3), profile);
        let key = ("node:pve1".to_owned(), metric::CPU_PCT.to_owned());
        let slot = Slot::at(monday, 15 * MIN);
        let own = own_slot(&s.baseline_history[&key], slot, monday);
        assert_eq!((own.hour_n, own.weekday_n), (21, 3));
        let b = baseline(&own, None, &AnomalyConfig::default()).unwrap();
        assert!(b.weekday && (b.median - 70.0).abs() < 3.0, "{b:?}");

        assert!(
            run(monday, 21.0, 70.0).is_empty(),
            "the Monday batch is usual"
        );
        let high = run(monday, 21.0, 95.0);
        assert_eq!(high.len(), 1, "{high:?}");
        assert!(
            high[0].evidence.contains("Mon 10:00 UTC"),
            "{}",
            high[0].evidence
        );
        assert!(
            high[0].evidence.contains("baseline 70."),
            "{}",
            high[0].evidence
        );
        // The same level on a Tuesday is not.
        let tuesday = run(t(22, 10, 7), 22.0, 70.0);
        assert_eq!(tuesday.len(), 1, "{tuesday:?}");
        assert!(
            tuesday[0].evidence.contains("Tue 10:00 UTC"),
            "{}",
            tuesday[0].evidence
        );
        assert!(
            tuesday[0].evidence.contains("baseline 20."),
            "{}",
            tuesday[0].evidence
        );
        // With one week only (the store's default), last Monday's batch still counts as a
        // weekly habit, though the hour-of-day baseline says 20 %.
        assert!(run(t(7, 10, 7), 7.0, 70.0).is_empty());
        assert_eq!(run(t(8, 10, 7), 7.0, 70.0).len(), 1);
    }

    #[test]
    fn a_new_resource_is_scored_against_its_fleet_within_its_first_hour() {
        let now = t(7, 14, 7);
        let mut s = snapshot(now);
        let mut rng = Rng(11);
        vm_fleet(&mut s, &mut rng, 40);
        fresh("vm:c/hot", 30).add(&mut s, &mut rng, |_| 90.0);
        fresh("vm:c/calm", 30).add(&mut s, &mut rng, |_| 24.0);
        // Eight minutes cannot show a sustained level.
        fresh("vm:c/young", 8).add(&mut s, &mut rng, |_| 95.0);
        let found = detect(&s, &AnomalyConfig::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(d.resource_id, "vm:c/hot");
        assert_eq!(
            d.severity,
            Severity::Watch,
            "peers alone give at most a watch"
        );
        assert!(
            d.evidence.contains("fleet prior of 40 VMs"),
            "{}",
            d.evidence
        );
        assert!(d.title.contains("far above similar VMs"), "{}", d.title);
        assert!(z_of(&d.evidence) > 6.0, "{}", d.evidence);
    }

    #[test]
    fn own_history_takes_over_from_the_prior_without_nagging() {
        let prior = Prior {
            spread: Spread {
                median: 20.0,
                mad: 2.0,
            },
            resources: 30,
        };
        let cfg = AnomalyConfig::default();
        let own = |n: usize| Own {
            hour: Some(Spread {
                median: 60.0,
                mad: 1.0,
            }),
            hour_n: n,
            days: n as f64,
            ..Own::default()
        };
        let fleet = baseline(&Own::default(), Some(&prior), &cfg).unwrap();
        assert_eq!((fleet.median, fleet.own_weight), (20.0, 0.0));
        let half = baseline(&own(2), Some(&prior), &cfg).unwrap();
        assert_eq!((half.median, half.own_weight), (40.0, 0.5));
        assert_eq!(half.fleet_resources, 30);
        let full = baseline(&own(5), Some(&prior), &cfg).unwrap();
        assert_eq!(
            (full.median, full.own_weight, full.fleet_resources),
            (60.0, 1.0, 0)
        );
        // Without a prior, one or two days are not a baseline.
        assert!(baseline(&own(2), None, &cfg).is_none());
        assert_eq!(baseline(&own(3), None, &cfg).unwrap().median, 60.0);
        // A VM that always runs at 60 % among peers at 20 %: flagged while new, quiet as soon
        // as its own days show that 60 % is its normal.
        assert!(score(60.0, &fleet, &cfg).severity.is_some());
        for n in 1..=6 {
            let b = baseline(&own(n), Some(&prior), &cfg).unwrap();
            assert_eq!(score(60.0, &b, &cfg).severity, None, "{n} days: {b:?}");
        }

        // End to end: two days of its own at this hour, blended with 20 peers.
        let now = t(7, 14, 7);
        let mut s = snapshot(now);
        let mut rng = Rng(5);
        vm_fleet(&mut s, &mut rng, 20);
        cpu("vm:c/young", 2.2).add(
            &mut s,
            &mut rng,
            jump(daily(20.0, 4.0, 14.0), now, 20, 80.0),
        );
        let found = detect(&s, &cfg);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .evidence
                .contains("50 % own history (2 days at this hour) + 50 % fleet prior of 21 VMs"),
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn the_mad_floor_keeps_flat_series_from_scoring_wiggles() {
        let now = t(7, 3, 7);
        let cfg = AnomalyConfig {
            min_delta_pct: 0.0,
            ..AnomalyConfig::default()
        };
        let run = |level: f64| {
            let mut s = snapshot(now);
            let mut series = cpu("lxc:c/flat", 7.0);
            series.noise = 0.0;
            let mut rng = Rng(1);
            series.add(&mut s, &mut rng, jump(|_| 5.0, now, 20, level));
            // No noise at all: the hourly averages are exactly 5.0 give or take the wobble.
            for p in s.baseline_history.values_mut().flatten() {
                p.1 = 5.0;
            }
            detect(&s, &cfg)
        };
        assert!(run(5.4).is_empty(), "a 0.4-point wiggle on a flat line");
        let b = Baseline {
            median: 5.0,
            mad: 0.0,
            own_weight: 1.0,
            weekday: false,
            own_points: 7,
            own_days: 7.0,
            fleet_resources: 0,
        };
        let sc = score(5.4, &b, &cfg);
        assert!(sc.z.is_finite() && sc.z < 0.2, "{sc:?}");
        let found = run(25.0);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(
            found[0]
                .evidence
                .contains("± 2.0 (median ± MAD, MAD floor; measured 0.00")
        );
        // 20 points over 1.4826 x 2.
        assert!(
            (z_of(&found[0].evidence) - 6.7).abs() < 0.05,
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn evidence_carries_the_score_and_the_baseline() {
        let now = t(7, 3, 7);
        let mut s = snapshot(now);
        let mut rng = Rng(9);
        let mut series = cpu("docker:h/web", 6.0);
        series.metric = metric::MEM_USED_PCT;
        series.noise = 0.0;
        series.add(&mut s, &mut rng, jump(|_| 40.0, now, 30, 75.0));
        // 38, 40 and 42 % on alternating days: median 40, MAD 2.
        for p in s.baseline_history.values_mut().flatten() {
            p.1 = 38.0 + 2.0 * (p.0.div_euclid(DAY_MS) % 3) as f64;
        }
        let found = detect(&s, &AnomalyConfig::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(d.key, "anomaly-mem_used_pct");
        assert_eq!(
            d.evidence,
            "mem_used_pct 75.0 % (15-min median) vs baseline 40.0 % ± 2.0 (median ± MAD, \
             03:00 UTC, own history 6.0 days); z = 11.8, +35.0 points"
        );
        assert!(d.title.starts_with("web: memory at 75 %"), "{}", d.title);
        assert!(
            d.description
                .contains("held around 75.0 % for the last 15 minutes")
        );
        assert!(d.recommendation.contains("leak"));
    }

    #[test]
    fn drops_stale_data_and_single_samples_are_not_anomalies() {
        let now = t(7, 3, 7);
        let base = |s: &mut Snapshot, level: f64| {
            cpu("vm:c/db", 7.0).add(s, &mut Rng(2), jump(|_| 60.0, now, 20, level));
        };
        let mut s = snapshot(now);
        base(&mut s, 2.0);
        assert!(detect(&s, &AnomalyConfig::default()).is_empty(), "a drop");

        // Only the latest sample, no recent history: used when fresh, never when stale.
        let mut s = snapshot(now);
        base(&mut s, 60.0);
        s.history.clear();
        let latest = |s: &mut Snapshot, ts_ms| {
            s.resources[0]
                .latest
                .insert(metric::CPU_PCT.into(), LatestSample { ts_ms, value: 99.0 });
        };
        latest(&mut s, now - MIN);
        let found = detect(&s, &AnomalyConfig::default());
        assert_eq!(found.len(), 1);
        assert!(
            found[0].evidence.contains("(latest sample)"),
            "{}",
            found[0].evidence
        );
        latest(&mut s, now - 10 * MIN);
        assert!(detect(&s, &AnomalyConfig::default()).is_empty());

        // One spike in the window is not a level; disabled finds nothing.
        let mut s = snapshot(now);
        base(&mut s, 60.0);
        for p in s.history.values_mut().flatten().rev().take(3) {
            p.1 = 100.0;
        }
        assert!(detect(&s, &AnomalyConfig::default()).is_empty());
        let mut s = snapshot(now);
        base(&mut s, 99.0);
        let off = AnomalyConfig {
            enabled: false,
            ..AnomalyConfig::default()
        };
        assert!(detect(&s, &off).is_empty());
        assert_eq!(detect(&s, &AnomalyConfig::default()).len(), 1);
    }

    /// `n` resources of every kind with daily cycles and noise, a few of them new.
    fn healthy_fleet(now: i64, n: usize, spikes: f64) -> Snapshot {
        let mut s = snapshot(now);
        let mut rng = Rng(0x5EED);
        let kinds = ["node", "vm", "lxc", "docker"];
        for i in 0..n {
            let id = format!("{}:c/{i}", kinds[i % kinds.len()]);
            let new = i % 10 == 9;
            let days = if new { 0.5 / 24.0 } else { 7.0 };
            let base = 8.0 + 40.0 * rng.unit();
            let amp = 3.0 + 15.0 * rng.unit();
            let peak = 10.0 + 8.0 * rng.unit();
            Series {
                spikes,
                ..cpu(&id, days)
            }
            .add(&mut s, &mut rng, daily(base, amp, peak));
            let mem = 30.0 + 40.0 * rng.unit();
            let mem_amp = 2.0 * rng.unit();
            Series {
                id: &id,
                metric: metric::MEM_USED_PCT,
                span: (days * DAY_MS as f64) as i64,
                noise: 0.7,
                spikes: 0.0,
                per_hour: 1,
            }
            .add(&mut s, &mut rng, daily(mem, mem_amp, peak));
        }
        s
    }

    #[test]
    fn a_healthy_fleet_is_quiet_all_day_even_without_the_delta_guard() {
        let strict = AnomalyConfig {
            min_delta_pct: 0.0,
            ..AnomalyConfig::default()
        };
        for hour in 0..24 {
            let s = healthy_fleet(t(7, hour, 7), 50, 0.02);
            assert_eq!(s.resources.len(), 50);
            for cfg in [AnomalyConfig::default(), strict.clone()] {
                let found = detect(&s, &cfg);
                assert!(found.is_empty(), "{hour}:07 {:?}", found.first());
            }
        }
        // The same fleet with one resource seeded above its own hour-of-day baseline.
        let now = t(7, 3, 7);
        let mut s = healthy_fleet(now, 50, 0.02);
        cpu("vm:c/seeded", 7.0).add(
            &mut s,
            &mut Rng(99),
            jump(daily(20.0, 10.0, 14.0), now, 25, 55.0),
        );
        let found = detect(&s, &AnomalyConfig::default());
        let ids: Vec<&str> = found.iter().map(|d| d.resource_id.as_str()).collect();
        assert_eq!(ids, ["vm:c/seeded"]);
    }

    #[test]
    fn ten_thousand_resources_run_and_stay_quiet() {
        let s = healthy_fleet(t(7, 15, 7), 10_000, 0.0);
        assert_eq!(s.baseline_history.len(), 20_000);
        assert!(detect(&s, &AnomalyConfig::default()).is_empty());
    }

    #[test]
    fn settings_names_defaults_and_checks() {
        let v = serde_json::to_value(AnomalyConfig::default()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "enabled": true,
                "watch_z": 4.0,
                "warning_z": 6.0,
                "min_delta_pct": 15.0,
                "min_mad_pct": 2.0,
                "window_ms": 900_000,
                "full_weight_days": 4,
                "min_weekday_weeks": 2,
                "min_fleet_resources": 5,
            })
        );
        let partial: AnomalyConfig =
            serde_json::from_value(serde_json::json!({"watch_z": 5.0})).unwrap();
        assert_eq!(partial.watch_z, 5.0);
        assert_eq!(partial.warning_z, 6.0);
        assert!(serde_json::from_value::<AnomalyConfig>(serde_json::json!({"z": 1})).is_err());
        let mut problems = Vec::new();
        AnomalyConfig::default().check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        AnomalyConfig {
            watch_z: 7.0,
            window_ms: 10,
            min_mad_pct: 0.0,
            ..AnomalyConfig::default()
        }
        .check(&mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("anomaly.warning_z (6)")));
    }
}
