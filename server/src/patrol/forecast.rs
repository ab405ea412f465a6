//! Capacity forecasts: when will a percentage series (a storage pool's `storage_used_pct`)
//! reach 100 %? A pure function of the points and `now`.
//!
//! Method:
//! 1. The series is reduced to time buckets of equal width over its span (the median of each
//!    bucket), so the sampling rate (10 s, 60 s, irregular) does not change the answer and one
//!    dense burst cannot outvote the rest.
//! 2. A Theil–Sen fit over the buckets: the slope is the median of all pairwise slopes, over
//!    real timestamps, never sample counts. It shrugs off outliers (a cleanup, a one-off spike).
//! 3. A 95 % interval for the slope from the ranks of the pairwise slopes (Sen 1968), turned
//!    into an interval on days-to-full.
//! 4. No forecast from too little data (too few buckets or too short a span), from a flat or
//!    falling trend, or when the slope's interval includes zero.

use super::snapshot::Snapshot;
use crate::model::finding::{CapacityForecast, Category, Detection, Severity, Source};
use serde::{Deserialize, Serialize};
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

/// Buckets the series is reduced to (at most).
const BUCKETS: usize = 96;
/// z for a two-sided 95 % interval.
const Z95: f64 = 1.96;
const MS_PER_DAY: f64 = 86_400_000.0;
/// A forecast further out than this many times its history span has low confidence.
const EXTRAPOLATION: f64 = 5.0;

/// When a forecast is made at all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// Shortest span of history, in hours.
    pub min_span_hours: f64,
    /// Fewest non-empty buckets.
    pub min_buckets: usize,
    /// Forecasts further out than this many days are not made (nothing to act on).
    pub horizon_days: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            min_span_hours: 6.0,
            min_buckets: 24,
            horizon_days: 365.0,
        }
    }
}

/// How far to trust a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// The slope's interval is within ±25 % of the estimate.
    High,
    /// Within ±60 %.
    Medium,
    /// Wider, or the forecast reaches more than five times its history span ahead.
    Low,
}

/// "local-lvm is at 87 % and growing ~4 %/day; full in ~3 days".
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Forecast {
    /// The fitted level now, percent.
    pub current_pct: f64,
    /// Growth, percentage points per day.
    pub daily_change_pct: f64,
    /// Days until 100 % at that growth.
    pub days_to_full: f64,
    /// 95 % interval on `days_to_full` (the faster and the slower plausible growth).
    pub days_to_full_low: f64,
    /// Upper end of the interval; infinite when the slow end of the growth is near zero.
    pub days_to_full_high: f64,
    /// How narrow the interval is.
    pub confidence: Confidence,
    /// History used, in days.
    pub span_days: f64,
}

/// The forecast for `points` (`(ms since the epoch, percent)`, in any order), or `None` when
/// the data cannot support one. `now_ms` is when the forecast is made.
pub fn capacity(points: &[(i64, f64)], now_ms: i64, cfg: &ForecastConfig) -> Option<Forecast> {
    let buckets = enough_history(points, cfg)?;
    let span_ms = buckets.last()?.0 - buckets.first()?.0;
    let mut slopes = Vec::with_capacity(buckets.len() * (buckets.len() - 1) / 2);
    for (i, &(ti, yi)) in buckets.iter().enumerate() {
        for &(tj, yj) in &buckets[i + 1..] {
            if tj > ti {
                slopes.push((yj - yi) / (tj - ti));
            }
        }
    }
    slopes.sort_by(f64::total_cmp);
    let slope = median_sorted(&slopes)?;
    // Sen's rank interval: C = z * sqrt(n(n-1)(2n+5)/18) pairs either side of the median.
    let n = buckets.len() as f64;
    let c = Z95 * (n * (n - 1.0) * (2.0 * n + 5.0) / 18.0).sqrt();
    let count = slopes.len() as f64;
    let lo_idx = (((count - c) / 2.0).floor().max(0.0)) as usize;
    let hi_idx = ((((count + c) / 2.0).ceil()) as usize).min(slopes.len() - 1);
    let (slope_lo, slope_hi) = (slopes[lo_idx], slopes[hi_idx]);
    if slope <= 0.0 || slope_lo <= 0.0 {
        return None;
    }
    // Intercept: the median of the residual levels, evaluated at `now`.
    let mut levels: Vec<f64> = buckets.iter().map(|&(t, y)| y - slope * t).collect();
    levels.sort_by(f64::total_cmp);
    let now = now_ms as f64;
    let current = (median_sorted(&levels)? + slope * now).clamp(0.0, 100.0);
    let per_day = slope * MS_PER_DAY;
    let days = (100.0 - current) / per_day;
    if !days.is_finite() || days > cfg.horizon_days {
        return None;
    }
    let low = (100.0 - current) / (slope_hi * MS_PER_DAY);
    let high = (100.0 - current) / (slope_lo * MS_PER_DAY);
    let spread = (slope_hi - slope_lo) / 2.0 / slope;
    let span_days = span_ms / MS_PER_DAY;
    // Reaching far beyond the history (two days of data, "full in eight weeks") is a guess
    // whatever the interval says: daily cycles and one-off changes dominate short spans.
    let confidence = if days > EXTRAPOLATION * span_days || spread > 0.6 {
        Confidence::Low
    } else if spread > 0.25 {
        Confidence::Medium
    } else {
        Confidence::High
    };
    Some(Forecast {
        current_pct: current,
        daily_change_pct: per_day,
        days_to_full: days,
        days_to_full_low: low,
        days_to_full_high: high,
        confidence,
        span_days,
    })
}

/// The buckets of `points` when they are enough for a forecast: at least `min_buckets` of
/// them over at least `min_span_hours`.
fn enough_history(points: &[(i64, f64)], cfg: &ForecastConfig) -> Option<Vec<(f64, f64)>> {
    let buckets = bucket_medians(points)?;
    let span_ms = buckets.last()?.0 - buckets.first()?.0;
    (buckets.len() >= cfg.min_buckets && span_ms >= cfg.min_span_hours * 3_600_000.0)
        .then_some(buckets)
}

/// The severity of a forecast `days` from full: critical within 3 days, warning within 7,
/// watch within 30, none further out.
fn severity_of(days: f64) -> Option<Severity> {
    if days < 3.0 {
        Some(Severity::Critical)
    } else if days < 7.0 {
        Some(Severity::Warning)
    } else if days < 30.0 {
        Some(Severity::Watch)
    } else {
        None
    }
}

/// Capacity findings for every storage pool and datastore whose forecast history in `s`
/// supports a forecast: critical within 3 days of full, warning within 7, watch within 30. A
/// PBS datastore whose history in Warden is too short for a forecast takes PBS's own estimate
/// instead ([`pbs_estimate`]).
pub fn detect(s: &Snapshot, cfg: &ForecastConfig) -> Vec<Detection> {
    let mut out = Vec::new();
    for r in &s.resources {
        let Some(metric) = super::rules::capacity_metric(&r.kind) else {
            continue;
        };
        let points = s
            .trend_history
            .get(&(r.id.clone(), metric.to_owned()))
            .map_or(&[][..], Vec::as_slice);
        let Some(f) = capacity(points, s.now_ms, cfg) else {
            if ResourceKind::from_prefix(&r.kind) == Some(ResourceKind::PbsDatastore)
                && enough_history(points, cfg).is_none()
            {
                out.extend(pbs_estimate(s.now_ms, r, points, cfg));
            }
            continue;
        };
        let Some(severity) = severity_of(f.days_to_full) else {
            continue;
        };
        let mut d = Detection::on(r, "storage-forecast", severity, Category::Capacity);
        d.source = Source::Forecast;
        d.title = format!(
            "{} is at {:.0} % and growing ~{:.1} %/day; full in ~{}",
            r.name,
            f.current_pct,
            f.daily_change_pct,
            days_text(f.days_to_full)
        );
        d.description = format!(
            "A robust trend over the last {:.1} days puts {} at 100 % in {} ({:?} confidence).",
            f.span_days,
            r.name,
            interval_text(f.days_to_full_low, f.days_to_full_high),
            f.confidence
        );
        d.recommendation = "Free space or extend the pool before it fills; find what grows \
                            (new guests, snapshots, backups kept longer)."
            .into();
        d.evidence = format!(
            "{metric}: {:.1} % now, {:+.2} points/day (Theil–Sen over {:.1} days), \
             {:.1} days to full (95 %: {})",
            f.current_pct,
            f.daily_change_pct,
            f.span_days,
            f.days_to_full,
            range_text(
                &format!("{:.1}", f.days_to_full_low),
                &format!("{:.1}", f.days_to_full_high),
                "–"
            )
        );
        d.capacity_forecast = Some(CapacityForecast {
            metric: metric.to_owned(),
            current_pct: f.current_pct,
            daily_change_pct: f.daily_change_pct,
            days_to_full: f.days_to_full,
        });
        out.push(d);
    }
    out
}

/// PBS's own days-to-full estimate of a datastore (`datastore_days_to_full`, from PBS's usage
/// history), for a datastore Warden has watched too briefly to forecast itself. The estimate
/// counts down from when it was read. Severities as for Warden's forecasts.
fn pbs_estimate(
    now_ms: i64,
    r: &crate::model::ResourceRecord,
    points: &[(i64, f64)],
    cfg: &ForecastConfig,
) -> Option<Detection> {
    let est = r.latest.get(metric::DATASTORE_DAYS_TO_FULL)?;
    let days = est.value - (now_ms - est.ts_ms) as f64 / MS_PER_DAY;
    if !(days > 0.0 && days.is_finite()) {
        return None;
    }
    let severity = severity_of(days)?;
    let used = r.latest.get(metric::DATASTORE_USED_PCT).map(|l| l.value);
    let mut d = Detection::on(r, "storage-forecast", severity, Category::Capacity);
    d.source = Source::Forecast;
    d.title = match used {
        Some(u) => format!(
            "{} is at {u:.0} %; PBS expects it full in ~{}",
            r.name,
            days_text(days)
        ),
        None => format!("{}: PBS expects it full in ~{}", r.name, days_text(days)),
    };
    let hours = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (b.0 - a.0) as f64 / 3_600_000.0,
        _ => 0.0,
    };
    d.description = format!(
        "Proxmox Backup Server estimates from its own usage history that {} fills up in {}. \
         Warden has {hours:.1} hours of its history, too little for a forecast of its own \
         (it needs {:.0}).",
        r.name,
        days_text(days),
        cfg.min_span_hours
    );
    d.recommendation = "Free space (prune with a shorter retention, then run garbage \
                        collection) or extend the datastore before backups start failing."
        .into();
    d.evidence = format!(
        "datastore_days_to_full = {days:.1} (PBS's estimated-full-date); Warden's history: \
         {hours:.1} h, under the {:.0} h a forecast needs",
        cfg.min_span_hours
    );
    if let Some(u) = used {
        d.evidence
            .push_str(&format!("; datastore_used_pct = {u:.1} %"));
        d.capacity_forecast = Some(CapacityForecast {
            metric: metric::DATASTORE_USED_PCT.into(),
            current_pct: u,
            daily_change_pct: (100.0 - u) / days,
            days_to_full: days,
        });
    }
    Some(d)
}

/// "in 2 to 4 days", or "in about 5 hours" when both bounds read the same.
fn interval_text(low: f64, high: f64) -> String {
    let (lo, hi) = (days_text(low), days_text(high));
    if lo == hi {
        format!("about {lo}")
    } else {
        range_text(&lo, &hi, " to ")
    }
}

/// `lo<sep>hi`, or one of them when they read the same.
fn range_text(lo: &str, hi: &str, sep: &str) -> String {
    if lo == hi {
        lo.to_owned()
    } else {
        format!("{lo}{sep}{hi}")
    }
}

/// "5 hours", "1 day", "3 days"; "an unknown time" for an infinite bound.
fn days_text(days: f64) -> String {
    let (n, unit) = if !days.is_finite() {
        return "an unknown time".to_owned();
    } else if days * 24.0 < 23.5 {
        ((days * 24.0).round().max(1.0), "hour")
    } else {
        (days.round(), "day")
    };
    if n == 1.0 {
        format!("1 {unit}")
    } else {
        format!("{n:.0} {unit}s")
    }
}

/// `(bucket centre ms, median value)` of up to [`BUCKETS`] equal-width time buckets, empty
/// buckets left out; `None` for fewer than two finite points.
fn bucket_medians(points: &[(i64, f64)]) -> Option<Vec<(f64, f64)>> {
    let finite: Vec<(i64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
    let start = finite.iter().map(|p| p.0).min()?;
    let end = finite.iter().map(|p| p.0).max()?;
    if end <= start {
        return None;
    }
    let width = (end - start) as f64 / BUCKETS as f64;
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); BUCKETS];
    for (t, y) in finite {
        let i = (((t - start) as f64 / width) as usize).min(BUCKETS - 1);
        buckets[i].push(y);
    }
    Some(
        buckets
            .into_iter()
            .enumerate()
            .filter_map(|(i, mut ys)| {
                ys.sort_by(f64::total_cmp);
                let centre = start as f64 + (i as f64 + 0.5) * width;
                median_sorted(&ys).map(|m| (centre, m))
            })
            .collect(),
    )
}

fn median_sorted(v: &[f64]) -> Option<f64> {
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    /// A pool at `start_pct` growing `rate` points per day for `span`, sampled by `step`
    /// (irregular when `jitter`), with Gaussian-like noise of `noise` points, a daily wave of
    /// `wave` points and an occasional spike; ends at `now`.
    struct Series {
        start_pct: f64,
        rate: f64,
        span: i64,
        noise: f64,
        wave: f64,
    }

    impl Series {
        fn sample(&self, rng: &mut StdRng, now: i64, step: i64, jitter: bool) -> Vec<(i64, f64)> {
            let t0 = now - self.span;
            let mut t = t0;
            let mut out = Vec::new();
            while t <= now {
                let days = (t - t0) as f64 / DAY as f64;
                let noise: f64 = (0..4).map(|_| rng.random_range(-1.0..1.0)).sum::<f64>() / 2.0;
                let wave = self.wave * (days * std::f64::consts::TAU).sin();
                let spike = if rng.random_bool(0.002) { 15.0 } else { 0.0 };
                let y = self.start_pct + self.rate * days + noise * self.noise + wave + spike;
                out.push((t, y.clamp(0.0, 100.0)));
                t += if jitter {
                    rng.random_range(step / 4..step * 2)
                } else {
                    step
                };
            }
            out
        }

        /// The true days to full at `span` (the end of the series).
        fn truth(&self) -> f64 {
            let now_pct = self.start_pct + self.rate * self.span as f64 / DAY as f64;
            (100.0 - now_pct) / self.rate
        }
    }

    #[test]
    fn days_to_full_within_ten_percent_in_nine_cases_of_ten_at_any_sampling() {
        let mut rng = StdRng::seed_from_u64(7);
        let cfg = ForecastConfig::default();
        let now = 1_800_000_000_000;
        let mut cases = 0;
        let mut good = [0; 3];
        for _ in 0..60 {
            let rate = rng.random_range(1.0..8.0);
            let span = rng.random_range(2..8) * DAY;
            let start = rng.random_range(20.0..50.0);
            let s = Series {
                start_pct: start,
                rate,
                span,
                noise: 0.6,
                wave: 0.5,
            };
            let truth = s.truth();
            if !(1.0..=60.0).contains(&truth) {
                continue;
            }
            cases += 1;
            for (k, (step, jitter)) in [(10_000, false), (60_000, false), (45_000, true)]
                .into_iter()
                .enumerate()
            {
                let points = s.sample(&mut rng, now, step, jitter);
                let f = capacity(&points, now, &cfg).expect("a clear trend gets a forecast");
                if ((f.days_to_full - truth) / truth).abs() <= 0.10 {
                    good[k] += 1;
                }
                assert!(
                    f.days_to_full_low <= f.days_to_full && f.days_to_full <= f.days_to_full_high,
                    "{f:?}"
                );
            }
        }
        assert!(cases >= 40, "{cases}");
        for (k, g) in good.iter().enumerate() {
            assert!(
                *g * 10 >= cases * 9,
                "sampling {k}: {g} of {cases} within ±10 %"
            );
        }
    }

    #[test]
    fn the_same_series_gives_the_same_answer_at_10s_60s_and_irregular_sampling() {
        let mut rng = StdRng::seed_from_u64(11);
        let now = 1_800_000_000_000;
        let s = Series {
            start_pct: 40.0,
            rate: 4.0,
            span: 5 * DAY,
            noise: 0.4,
            wave: 0.3,
        };
        let cfg = ForecastConfig::default();
        let answers: Vec<f64> = [(10_000, false), (60_000, false), (30_000, true)]
            .into_iter()
            .map(|(step, jitter)| {
                capacity(&s.sample(&mut rng, now, step, jitter), now, &cfg)
                    .unwrap()
                    .days_to_full
            })
            .collect();
        let (min, max) = answers
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!((max - min) / min < 0.05, "{answers:?}");
        assert!((min - s.truth()).abs() / s.truth() < 0.1, "{answers:?}");
    }

    #[test]
    fn a_filling_pool_becomes_a_forecast_finding() {
        use crate::model::ResourceRecord;
        let now = 1_800_000_000_000;
        let id = "storage:pve2/local-zfs";
        let points: Vec<(i64, f64)> = (0..=3 * 24 * 12)
            .map(|i| {
                (
                    now - 3 * DAY + i * 300_000,
                    71.0 + 5.0 * (i * 300_000) as f64 / DAY as f64,
                )
            })
            .collect();
        let mut s = Snapshot {
            now_ms: now,
            resources: vec![ResourceRecord {
                id: id.into(),
                kind: "storage".into(),
                name: "local-zfs".into(),
                ..ResourceRecord::default()
            }],
            ..Snapshot::default()
        };
        s.trend_history
            .insert((id.into(), metric::STORAGE_USED_PCT.into()), points);
        let found = detect(&s, &ForecastConfig::default());
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!(
            (d.severity, d.source),
            (Severity::Critical, Source::Forecast)
        );
        assert_eq!(
            d.title,
            "local-zfs is at 86 % and growing ~5.0 %/day; full in ~3 days"
        );
        let cf = d.capacity_forecast.as_ref().unwrap();
        assert!((cf.days_to_full - 2.8).abs() < 0.05, "{cf:?}");
        assert_eq!(cf.metric, metric::STORAGE_USED_PCT);
    }

    #[test]
    fn an_interval_whose_bounds_read_the_same_is_said_once() {
        assert_eq!(interval_text(0.2, 0.21), "about 5 hours");
        assert_eq!(interval_text(2.0, 4.0), "2 days to 4 days");
        assert_eq!(interval_text(0.5, 1.0), "12 hours to 1 day");
        assert_eq!(
            interval_text(1.0, f64::INFINITY),
            "1 day to an unknown time"
        );
        assert_eq!(days_text(1.2), "1 day");
        assert_eq!(days_text(1.0 / 24.0), "1 hour");
        assert_eq!(range_text("0.2", "0.2", "–"), "0.2");
        assert_eq!(range_text("0.2", "0.3", "–"), "0.2–0.3");
        // A pool filling fast and steadily: both ends of the interval read the same.
        use crate::model::ResourceRecord;
        let now = 1_800_000_000_000;
        let id = "storage:pve2/local-zfs";
        let points: Vec<(i64, f64)> = (0..=12 * 12)
            .map(|i| {
                let t = now - 12 * HOUR + i * 300_000;
                (
                    t,
                    41.0 + 6.0 * (t - (now - 12 * HOUR)) as f64 / HOUR as f64 / 2.4,
                )
            })
            .collect();
        let mut s = Snapshot {
            now_ms: now,
            resources: vec![ResourceRecord {
                id: id.into(),
                kind: "storage".into(),
                name: "local-zfs".into(),
                ..ResourceRecord::default()
            }],
            ..Snapshot::default()
        };
        s.trend_history
            .insert((id.into(), metric::STORAGE_USED_PCT.into()), points);
        let found = detect(&s, &ForecastConfig::default());
        let d = &found[0];
        // 71 % now, 2.5 points an hour: 11.6 hours.
        assert!(
            d.description
                .contains("at 100 % in about 12 hours (High confidence)"),
            "{}",
            d.description
        );
        assert!(d.evidence.ends_with("(95 %: 0.5)"), "{}", d.evidence);
    }

    #[test]
    fn a_datastore_watched_too_briefly_takes_the_estimate_of_pbs() {
        use crate::model::{LatestSample, ResourceRecord};
        let now = 1_800_000_000_000;
        let datastore = |name: &str, days: f64, read_ms: i64| {
            let mut r = ResourceRecord {
                id: format!("pbs-datastore:pbs1/{name}"),
                kind: "pbs-datastore".into(),
                name: name.into(),
                ..ResourceRecord::default()
            };
            for (m, v, ts) in [
                (metric::DATASTORE_DAYS_TO_FULL, days, read_ms),
                (metric::DATASTORE_USED_PCT, 64.0, now),
            ] {
                r.latest.insert(
                    m.into(),
                    LatestSample {
                        ts_ms: ts,
                        value: v,
                    },
                );
            }
            r
        };
        let flat = |hours: i64| -> Vec<(i64, f64)> {
            (0..=hours * 12)
                .map(|i| (now - hours * HOUR + i * 300_000, 64.0))
                .collect()
        };
        let mut s = Snapshot {
            now_ms: now,
            resources: vec![
                // Four hours of history: PBS's 5.5 days, read a day ago, count.
                datastore("young", 5.5, now - DAY),
                // No history at all, PBS says 2 days: critical.
                datastore("new", 2.0, now),
                // A week of flat history: Warden's own "no forecast" stands.
                datastore("old", 2.0, now),
                // PBS far out: nothing.
                datastore("roomy", 400.0, now),
            ],
            ..Snapshot::default()
        };
        for (name, hours) in [("young", 4), ("old", 7 * 24), ("roomy", 2)] {
            s.trend_history.insert(
                (
                    format!("pbs-datastore:pbs1/{name}"),
                    metric::DATASTORE_USED_PCT.into(),
                ),
                flat(hours),
            );
        }
        let found = detect(&s, &ForecastConfig::default());
        let got: Vec<(&str, Severity)> = found
            .iter()
            .map(|d| (d.resource_id.as_str(), d.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("pbs-datastore:pbs1/young", Severity::Warning),
                ("pbs-datastore:pbs1/new", Severity::Critical),
            ]
        );
        let d = &found[0];
        assert_eq!(
            (d.key.as_str(), d.source),
            ("storage-forecast", Source::Forecast)
        );
        assert_eq!(d.title, "young is at 64 %; PBS expects it full in ~5 days");
        assert!(
            d.evidence.starts_with(
                "datastore_days_to_full = 4.5 (PBS's estimated-full-date); Warden's history: 4.0 h"
            ),
            "{}",
            d.evidence
        );
        let cf = d.capacity_forecast.as_ref().unwrap();
        assert!((cf.days_to_full - 4.5).abs() < 1e-9, "{cf:?}");
        assert!((cf.daily_change_pct - 8.0).abs() < 1e-9, "{cf:?}");
    }

    #[test]
    fn a_textbook_pool() {
        // 60 % a week ago, +4 points a day, sampled every minute without noise: 88 % now,
        // full in 3 days.
        let now = 1_800_000_000_000;
        let points: Vec<(i64, f64)> = (0..=7 * 24 * 60)
            .map(|m| {
                let t = now - 7 * DAY + m * 60_000;
                (t, 60.0 + 4.0 * (t - (now - 7 * DAY)) as f64 / DAY as f64)
            })
            .collect();
        let f = capacity(&points, now, &ForecastConfig::default()).unwrap();
        assert!((f.current_pct - 88.0).abs() < 0.05, "{f:?}");
        assert!((f.daily_change_pct - 4.0).abs() < 1e-6, "{f:?}");
        assert!((f.days_to_full - 3.0).abs() < 0.02, "{f:?}");
        assert_eq!(f.confidence, Confidence::High);
        assert!((f.span_days - 7.0).abs() < 0.1);
    }

    #[test]
    fn no_forecast_from_too_little_too_flat_or_falling_data() {
        let now = 1_800_000_000_000;
        let cfg = ForecastConfig::default();
        let line = |hours: i64, step_min: i64, rate: f64| -> Vec<(i64, f64)> {
            (0..=hours * 60 / step_min)
                .map(|i| {
                    let t = now - hours * HOUR + i * step_min * 60_000;
                    (t, 50.0 + rate * (t - now) as f64 / DAY as f64)
                })
                .collect()
        };
        assert_eq!(capacity(&[], now, &cfg), None);
        assert_eq!(capacity(&[(now, 50.0)], now, &cfg), None);
        assert_eq!(
            capacity(&line(2, 1, 5.0), now, &cfg),
            None,
            "2 h is too short"
        );
        assert_eq!(
            capacity(&line(48, 240, 5.0), now, &cfg),
            None,
            "12 buckets are too few"
        );
        assert_eq!(capacity(&line(72, 1, 0.0), now, &cfg), None, "flat");
        assert_eq!(capacity(&line(72, 1, -3.0), now, &cfg), None, "falling");
        assert_eq!(
            capacity(&line(72, 1, 0.01), now, &cfg),
            None,
            "beyond the horizon"
        );
        // Pure noise around a level: the slope's interval includes zero.
        let mut rng = StdRng::seed_from_u64(3);
        let noise: Vec<(i64, f64)> = (0..4320)
            .map(|i| {
                (
                    now - 3 * DAY + i * 60_000,
                    50.0 + rng.random_range(-2.0..2.0),
                )
            })
            .collect();
        assert_eq!(capacity(&noise, now, &cfg), None, "noise");
        // NaNs are ignored, not propagated.
        let mut with_nan = line(72, 1, 5.0);
        with_nan[100].1 = f64::NAN;
        assert!(capacity(&with_nan, now, &cfg).is_some());
    }
}
