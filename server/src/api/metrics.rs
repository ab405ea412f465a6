//! `GET /api/metrics/history`: one series over a time range, optionally averaged per step,
//! with the source and method of the metric's latest value.

use super::query::ApiQuery;
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::rfc3339_ms;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

/// Most points one response may carry.
const MAX_POINTS: usize = 20_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    resource_id: String,
    metric: String,
    /// RFC 3339 or Unix milliseconds; default: one hour before `to`.
    from: Option<String>,
    /// RFC 3339 or Unix milliseconds; default: now.
    to: Option<String>,
    /// Bucket width like "1m" or seconds; default: raw points.
    step: Option<String>,
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

pub(super) async fn history(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let to =
        q.to.as_deref()
            .map(|s| parse_time("to", s))
            .transpose()?
            .unwrap_or_else(crate::clock::now_ms);
    let from = q
        .from
        .as_deref()
        .map(|s| parse_time("from", s))
        .transpose()?
        .unwrap_or(to - 3_600_000);
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    let step_ms = match q.step.as_deref() {
        None | Some("") => None,
        Some(s) => {
            let ms = match s.parse::<u64>() {
                Ok(secs) => secs.saturating_mul(1000),
                Err(_) => humantime::parse_duration(s)
                    .map_err(|e| ApiError::BadRequest(format!("step {s:?}: {e}")))?
                    .as_millis() as u64,
            };
            if ms == 0 {
                return Err(ApiError::BadRequest("step must be positive".into()));
            }
            Some(i64::try_from(ms).unwrap_or(i64::MAX))
        }
    };
    let store = state.store.clone();
    let (rid, metric) = (q.resource_id.clone(), q.metric.clone());
    let (points, provenance) = blocking(move || {
        let org = caller.org.as_str();
        let points = store.history(org, &rid, &metric, from, to, step_ms, MAX_POINTS + 1)?;
        Ok((points, store.provenance(org, &rid, &metric)?))
    })
    .await?;
    if points.len() > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "more than {MAX_POINTS} points; narrow the range or set a larger step"
        )));
    }
    Ok(Json(json!({
        "resource_id": q.resource_id,
        "metric": q.metric,
        "from": rfc3339_ms(from),
        "to": rfc3339_ms(to),
        "step_ms": step_ms,
        "points": points.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
        // Of the latest value; null when the agent did not say (before protocol 1.2).
        "source": provenance.as_ref().map(|p| &p.source),
        "method": provenance.as_ref().map(|p| &p.method),
    })))
}
