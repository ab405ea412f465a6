//! `GET /api/store`: how much disk metric history takes, by tier, how long each tier keeps it,
//! and what the store refused, sealed and expired since it started.

use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::rfc3339_ms;
use crate::store::{FREE_HISTORY_DAYS, Retention, TierUsage};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// A duration in its largest whole unit: `7d`, `50h`, `90m`, `30s`, `1500ms`.
fn compact(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| ms != 0 && ms % unit == 0)
        .map_or_else(
            || format!("{ms}ms"),
            |(unit, name)| format!("{}{name}", ms / unit),
        )
}

/// `{raw, raw_ms, minute, minute_ms, hour, hour_ms}`.
fn retention(r: Retention) -> Value {
    json!({
        "raw": compact(r.raw_ms),
        "raw_ms": r.raw_ms,
        "minute": compact(r.minute_ms),
        "minute_ms": r.minute_ms,
        "hour": compact(r.hour_ms),
        "hour_ms": r.hour_ms,
    })
}

fn tier(t: TierUsage) -> Value {
    json!({ "entries": t.entries, "bytes": t.bytes })
}

/// The store's file, retention, sizes per tier (measured now: walks the tables' pages, about a
/// second on tens of gigabytes), counters since start and its disk. Per org: its series and
/// its share of the bytes, estimated from its share of the series.
pub(super) async fn store(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let usage = blocking(move || store.usage()).await?;
    let status = state.store.status();
    let counters = state.store.counters();
    let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    Ok(Json(json!({
        "path": status.path.display().to_string(),
        "retention": retention(state.store.retention()),
        // The licence issue wires `long_term_metrics` (crate::start bounds retention with
        // it); until then history is the free days.
        "licensed_history_days": FREE_HISTORY_DAYS,
        "tiers": {
            "head": tier(usage.head),
            "chunks": tier(usage.chunks),
            "minute": tier(usage.minute),
            "hour": tier(usage.hour),
        },
        "series": usage.series,
        "orgs": usage.orgs,
        "file_bytes": usage.file_bytes,
        "sealed_until": usage.sealed_until_ms.and_then(rfc3339_ms),
        "refused_too_old": count(&counters.too_old),
        "sealed_samples": count(&counters.sealed_samples),
        "expired_chunks": count(&counters.expired_chunks),
        "disk": {
            "free": status.space.map(|s| s.free),
            "total": status.space.map(|s| s.total),
            "reserve": status.reserve,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_in_their_largest_whole_unit() {
        assert_eq!(compact(7 * 86_400_000), "7d");
        assert_eq!(compact(50 * 3_600_000), "50h");
        assert_eq!(compact(90 * 60_000), "90m");
        assert_eq!(compact(30_000), "30s");
        assert_eq!(compact(1500), "1500ms");
        assert_eq!(compact(0), "0ms");
    }
}
