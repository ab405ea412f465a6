//! Metric history reads: `GET /api/metrics/history` (one series) and `POST /api/metrics/query`
//! (up to [`MAX_SERIES`] series, one step for all), both through [`read`]: raw points, or
//! per-bucket means (with minima and maxima) from the tier the step names, at most
//! `max_points` per series; a raw answer that would be longer is downsampled to the finest of
//! [`AUTO_STEPS_MS`] that fits ([`auto_step`]).

use super::query::ApiQuery;
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::rfc3339_ms;
use crate::model::ProvenanceRecord;
use crate::store::{Aggregate, Store};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Most points one series of an answer may carry, and the default `max_points`.
const MAX_POINTS: usize = 20_000;
/// Most series one `POST /api/metrics/query` may read.
const MAX_SERIES: usize = 100;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// The steps a raw answer longer than `max_points` is downsampled to, finest first.
const AUTO_STEPS_MS: [i64; 6] = [
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    HOUR_MS,
    6 * HOUR_MS,
    24 * HOUR_MS,
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    resource_id: String,
    metric: String,
    /// RFC 3339 or Unix milliseconds; default: one hour before `to`.
    from: Option<String>,
    /// RFC 3339 or Unix milliseconds; default: now.
    to: Option<String>,
    /// Bucket width like "1m" or seconds; default: raw points (downsampled if too many).
    step: Option<String>,
    /// Most points in the answer, 1 to [`MAX_POINTS`] (the default).
    max_points: Option<usize>,
}

/// The body of `POST /api/metrics/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryBody {
    series: Vec<SeriesRef>,
    from: Option<Scalar>,
    to: Option<Scalar>,
    step: Option<Scalar>,
    max_points: Option<usize>,
}

/// One series of a query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesRef {
    resource_id: String,
    metric: String,
}

/// A time or step in a JSON body: a number (Unix ms, step seconds) or a string, read as the
/// query string's form of it is.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Number(i64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(s) => s.clone(),
        }
    }
}

pub(super) fn parse_time(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{name} = {s:?} is neither RFC 3339 nor Unix milliseconds"
            ))
        })
}

/// The tier a step reads: a multiple of an hour the hour tier, of a minute the minute tier,
/// anything else (and no step) raw samples. Minutes the minute tier no longer keeps or has not
/// rolled up yet are read from raw samples whatever the tier; the answer is the same.
fn tier(step_ms: Option<i64>) -> &'static str {
    match step_ms {
        Some(s) if s % HOUR_MS == 0 => "hour",
        Some(s) if s % MINUTE_MS == 0 => "minute",
        _ => "raw",
    }
}

/// Buckets of width `step_ms` (aligned to the epoch) that `from_ms..=to_ms` touches.
fn buckets(from_ms: i64, to_ms: i64, step_ms: i64) -> i64 {
    to_ms.div_euclid(step_ms) - from_ms.div_euclid(step_ms) + 1
}

/// The finest of [`AUTO_STEPS_MS`] that gives at most `max_points` buckets over
/// `from_ms..=to_ms`; `None` if even a day is too fine.
fn auto_step(from_ms: i64, to_ms: i64, max_points: usize) -> Option<i64> {
    let max = i64::try_from(max_points).unwrap_or(i64::MAX);
    AUTO_STEPS_MS
        .into_iter()
        .find(|&s| buckets(from_ms, to_ms, s) <= max)
}

/// What a read covers, checked.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: i64,
    to: i64,
    /// An explicit step, ms.
    step_ms: Option<i64>,
    max_points: usize,
}

impl Window {
    /// Parses and checks the parameters both routes share.
    fn parse(
        from: Option<&str>,
        to: Option<&str>,
        step: Option<&str>,
        max_points: Option<usize>,
    ) -> Result<Self, ApiError> {
        let to = to
            .map(|s| parse_time("to", s))
            .transpose()?
            .unwrap_or_else(crate::clock::now_ms);
        let from = from
            .map(|s| parse_time("from", s))
            .transpose()?
            .unwrap_or(to.saturating_sub(HOUR_MS));
        if from > to {
            return Err(ApiError::BadRequest("from must not be after to".into()));
        }
        let max_points = match max_points.unwrap_or(MAX_POINTS) {
            n @ 1..=MAX_POINTS => n,
            n => {
                return Err(ApiError::BadRequest(format!(
                    "max_points must be 1 to {MAX_POINTS}, got {n}"
                )));
            }
        };
        let step_ms = match step {
            None | Some("") => None,
            Some(s) => {
                let ms = match s.parse::<u64>() {
                    Ok(secs) => secs.saturating_mul(1000),
                    Err(_) => humantime::parse_duration(s)
                        .map_err(|e| ApiError::BadRequest(format!("step {s:?}: {e}")))?
                        .as_millis()
                        .try_into()
                        .unwrap_or(u64::MAX),
                };
                if ms == 0 {
                    return Err(ApiError::BadRequest("step must be positive".into()));
                }
                let ms = i64::try_from(ms).unwrap_or(i64::MAX);
                let n = buckets(from, to, ms);
                if n > i64::try_from(max_points).unwrap_or(i64::MAX) {
                    return Err(ApiError::BadRequest(format!(
                        "step {s:?} gives {n} buckets over the range, more than max_points \
                         ({max_points}); narrow the range or set a larger step"
                    )));
                }
                Some(ms)
            }
        };
        Ok(Self {
            from,
            to,
            step_ms,
            max_points,
        })
    }
}

/// One series of an answer.
struct SeriesAnswer {
    /// `(ms, value)`: raw samples, or bucket starts and the mean of their samples.
    points: Vec<(i64, f64)>,
    /// With a step: the minimum and maximum of each bucket, as `points`.
    spread: Option<Vec<(f64, f64)>>,
    /// Of the latest value.
    provenance: Option<ProvenanceRecord>,
}

impl SeriesAnswer {
    fn stepped(buckets: Vec<(i64, Aggregate)>, provenance: Option<ProvenanceRecord>) -> Self {
        Self {
            points: buckets.iter().map(|(t, a)| (*t, a.mean())).collect(),
            spread: Some(buckets.iter().map(|(_, a)| (a.min, a.max)).collect()),
            provenance,
        }
    }

    /// The fields of the series in an answer.
    fn fields(&self, out: &mut serde_json::Map<String, Value>) {
        out.insert(
            "points".into(),
            self.points.iter().map(|(t, v)| json!([t, v])).collect(),
        );
        if let Some(spread) = &self.spread {
            out.insert(
                "min".into(),
                spread.iter().map(|(lo, _)| json!(lo)).collect(),
            );
            out.insert(
                "max".into(),
                spread.iter().map(|(_, hi)| json!(hi)).collect(),
            );
        }
        // Of the latest value; null when the agent did not say (before protocol 1.2).
        let p = self.provenance.as_ref();
        out.insert("source".into(), json!(p.map(|p| &p.source)));
        out.insert("method".into(), json!(p.map(|p| &p.method)));
    }
}

/// What [`read`] answers.
struct Answer {
    /// The step the points are bucketed by: the explicit one, the automatic one, or none.
    step_ms: Option<i64>,
    /// Whether the step was chosen because raw points would exceed `max_points`.
    downsampled: bool,
    /// In the order asked.
    series: Vec<SeriesAnswer>,
}

impl Answer {
    /// The fields every answer has.
    fn head(&self, w: &Window) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        out.insert("from".into(), json!(rfc3339_ms(w.from)));
        out.insert("to".into(), json!(rfc3339_ms(w.to)));
        out.insert("step_ms".into(), json!(self.step_ms));
        out.insert("tier".into(), json!(tier(self.step_ms)));
        out.insert("downsampled".into(), json!(self.downsampled));
        out
    }
}

/// Reads `series` (resource id, metric) of `org` over `w`: with a step, per-bucket aggregates
/// from its tier; without, raw points, or, if a series has more than `max_points` of them,
/// every series at the finest automatic step that fits.
async fn read(
    store: &Arc<Store>,
    org: &str,
    series: &[(String, String)],
    w: Window,
) -> Result<Answer, ApiError> {
    if let Some(step) = w.step_ms {
        return Ok(Answer {
            step_ms: Some(step),
            downsampled: false,
            series: stepped(store, org, series, w, step).await?,
        });
    }
    let raw = raw(store, org, series, w).await?;
    // Buckets before a series' first sample are empty, and a series with at most
    // `max_points` samples has at most that many non-empty buckets: the step needs to fit
    // only from the first sample of the series that overflow.
    let Some(first) = raw
        .iter()
        .filter(|s| s.points.len() > w.max_points)
        .filter_map(|s| s.points.first().map(|p| p.0))
        .min()
    else {
        return Ok(Answer {
            step_ms: None,
            downsampled: false,
            series: raw,
        });
    };
    let step = auto_step(first, w.to, w.max_points).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "more than {} points even at a step of one day; narrow the range or raise max_points",
            w.max_points
        ))
    })?;
    Ok(Answer {
        step_ms: Some(step),
        downsampled: true,
        series: stepped(store, org, series, w, step).await?,
    })
}

/// Up to `max_points + 1` raw points of each series (one more shows an overflow).
async fn raw(
    store: &Arc<Store>,
    org: &str,
    series: &[(String, String)],
    w: Window,
) -> Result<Vec<SeriesAnswer>, ApiError> {
    let (store, org, series) = (store.clone(), org.to_owned(), series.to_vec());
    blocking(move || {
        series
            .iter()
            .map(|(rid, metric)| {
                Ok(SeriesAnswer {
                    points: store.history(
                        &org,
                        rid,
                        metric,
                        w.from,
                        w.to,
                        None,
                        w.max_points + 1,
                    )?,
                    spread: None,
                    provenance: store.provenance(&org, rid, metric)?,
                })
            })
            .collect()
    })
    .await
}

/// Per-bucket aggregates of each series from the tier of `step`.
async fn stepped(
    store: &Arc<Store>,
    org: &str,
    series: &[(String, String)],
    w: Window,
    step: i64,
) -> Result<Vec<SeriesAnswer>, ApiError> {
    let (store, org, series) = (store.clone(), org.to_owned(), series.to_vec());
    blocking(move || {
        let refs: Vec<(&str, &str)> = series
            .iter()
            .map(|(r, m)| (r.as_str(), m.as_str()))
            .collect();
        let buckets = store
            .view()?
            .series_aggregates(&org, &refs, w.from, w.to, step)?;
        buckets
            .into_iter()
            .zip(&series)
            .map(|(b, (rid, metric))| {
                Ok(SeriesAnswer::stepped(
                    b,
                    store.provenance(&org, rid, metric)?,
                ))
            })
            .collect()
    })
    .await
}

/// `GET /api/metrics/history`: one series.
pub(super) async fn history(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let w = Window::parse(
        q.from.as_deref(),
        q.to.as_deref(),
        q.step.as_deref(),
        q.max_points,
    )?;
    let series = [(q.resource_id.clone(), q.metric.clone())];
    let answer = read(&state.store, &caller.org, &series, w).await?;
    let mut out = answer.head(&w);
    out.insert("resource_id".into(), json!(q.resource_id));
    out.insert("metric".into(), json!(q.metric));
    if let Some(s) = answer.series.first() {
        s.fields(&mut out);
    }
    Ok(Json(Value::Object(out)))
}

/// `POST /api/metrics/query`: several series with one step. A read: no audit event.
pub(super) async fn query(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<QueryBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(q) = body?;
    if q.series.is_empty() || q.series.len() > MAX_SERIES {
        return Err(ApiError::BadRequest(format!(
            "series must list 1 to {MAX_SERIES} series, got {}",
            q.series.len()
        )));
    }
    let text = |s: &Option<Scalar>| s.as_ref().map(Scalar::text);
    let (from, to, step) = (text(&q.from), text(&q.to), text(&q.step));
    let w = Window::parse(
        from.as_deref(),
        to.as_deref(),
        step.as_deref(),
        q.max_points,
    )?;
    let series: Vec<(String, String)> = q
        .series
        .into_iter()
        .map(|s| (s.resource_id, s.metric))
        .collect();
    let answer = read(&state.store, &caller.org, &series, w).await?;
    let mut out = answer.head(&w);
    let list: Vec<Value> = answer
        .series
        .iter()
        .zip(series)
        .map(|(s, (rid, metric))| {
            let mut o = serde_json::Map::new();
            o.insert("resource_id".into(), json!(rid));
            o.insert("metric".into(), json!(metric));
            s.fields(&mut o);
            Value::Object(o)
        })
        .collect();
    out.insert("series".into(), Value::Array(list));
    Ok(Json(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 24 * HOUR_MS;

    #[test]
    fn buckets_count_every_epoch_aligned_bucket_the_range_touches() {
        assert_eq!(buckets(0, 0, MINUTE_MS), 1);
        assert_eq!(buckets(0, MINUTE_MS - 1, MINUTE_MS), 1);
        assert_eq!(buckets(0, MINUTE_MS, MINUTE_MS), 2);
        // A range shorter than the step may straddle a boundary.
        assert_eq!(buckets(MINUTE_MS - 1, MINUTE_MS, MINUTE_MS), 2);
        assert_eq!(buckets(-1, 0, MINUTE_MS), 2);
        assert_eq!(buckets(0, 7 * DAY_MS - 1, HOUR_MS), 168);
    }

    #[test]
    fn the_automatic_step_is_the_finest_that_fits() {
        let to = 1_700_000_000_000 / DAY_MS * DAY_MS - 1;
        // One hour: 60 one-minute buckets.
        assert_eq!(auto_step(to - HOUR_MS + 1, to, 60), Some(MINUTE_MS));
        assert_eq!(auto_step(to - HOUR_MS + 1, to, 59), Some(5 * MINUTE_MS));
        assert_eq!(auto_step(to - HOUR_MS + 1, to, 12), Some(5 * MINUTE_MS));
        assert_eq!(auto_step(to - HOUR_MS + 1, to, 11), Some(15 * MINUTE_MS));
        assert_eq!(auto_step(to - HOUR_MS + 1, to, 1), Some(HOUR_MS));
        // Seven days: 10,080 minutes fit the default, 168 hours fit 200, 7 days fit 7.
        let from = to - 7 * DAY_MS + 1;
        assert_eq!(auto_step(from, to, MAX_POINTS), Some(MINUTE_MS));
        assert_eq!(auto_step(from, to, 10_079), Some(5 * MINUTE_MS));
        assert_eq!(auto_step(from, to, 200), Some(HOUR_MS));
        assert_eq!(auto_step(from, to, 28), Some(6 * HOUR_MS));
        assert_eq!(auto_step(from, to, 7), Some(DAY_MS));
        // Not even a day fits.
        assert_eq!(auto_step(from, to, 6), None);
        // Whatever fits, fits.
        for max in [1, 2, 5, 50, 500, 5_000, MAX_POINTS] {
            for span in [0, MINUTE_MS, HOUR_MS + 7, DAY_MS, 30 * DAY_MS] {
                if let Some(s) = auto_step(to - span, to, max) {
                    assert!(buckets(to - span, to, s) <= max as i64, "{max} {span} {s}");
                }
            }
        }
    }

    #[test]
    fn steps_name_the_tier_they_read() {
        assert_eq!(tier(None), "raw");
        assert_eq!(tier(Some(30_000)), "raw");
        assert_eq!(tier(Some(90_000)), "raw");
        assert_eq!(tier(Some(MINUTE_MS)), "minute");
        assert_eq!(tier(Some(15 * MINUTE_MS)), "minute");
        assert_eq!(tier(Some(90 * MINUTE_MS)), "minute");
        assert_eq!(tier(Some(HOUR_MS)), "hour");
        assert_eq!(tier(Some(DAY_MS)), "hour");
    }

    #[test]
    fn windows_refuse_what_cannot_be_answered() {
        let ok = Window::parse(Some("0"), Some("3600000"), Some("1m"), None).unwrap();
        assert_eq!(
            (ok.from, ok.to, ok.step_ms, ok.max_points),
            (0, 3_600_000, Some(60_000), MAX_POINTS)
        );
        let bad = [
            (Some("10"), Some("0"), None, None),
            (Some("0"), Some("10"), Some("0"), None),
            (Some("0"), Some("10"), Some("soon"), None),
            (Some("0"), Some("10"), None, Some(0)),
            (Some("0"), Some("10"), None, Some(MAX_POINTS + 1)),
            // 61 one-minute buckets.
            (Some("0"), Some("3600000"), Some("60"), Some(60)),
            (Some("yesterday"), None, None, None),
        ];
        for (from, to, step, max) in bad {
            assert!(
                Window::parse(from, to, step, max).is_err(),
                "{from:?} {to:?} {step:?} {max:?}"
            );
        }
    }
}
