//! `GET /metrics`: the server's own counters in Prometheus text format.

use super::ApiState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub(super) async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let s = &state.stats;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    put(
        "warden_agents_connected",
        "gauge",
        "Agents with a live QUIC session.",
        state.live.len() as u64,
    );
    let audit = state.audit.stats();
    put(
        "warden_audit_events_total",
        "counter",
        "Audit events durably stored.",
        audit.stored.load(Ordering::Relaxed),
    );
    put(
        "warden_audit_write_failures_total",
        "counter",
        "Audit events that could not be stored (see the log).",
        audit.failed.load(Ordering::Relaxed),
    );
    put(
        "warden_audit_signing_enabled",
        "gauge",
        "1 when audit events are signed, 0 when signing is unavailable.",
        u64::from(state.audit.keys().is_some()),
    );
    put(
        "warden_ingest_samples_total",
        "counter",
        "Samples durably stored.",
        s.samples_stored.load(Ordering::Relaxed),
    );
    put(
        "warden_ingest_batches_total",
        "counter",
        "Batches durably stored.",
        s.batches_stored.load(Ordering::Relaxed),
    );
    put(
        "warden_ingest_batches_duplicate_total",
        "counter",
        "Replayed batches skipped because they were already stored.",
        s.batches_duplicate.load(Ordering::Relaxed),
    );
    put(
        "warden_ingest_commits_total",
        "counter",
        "Store commits (group commits).",
        s.commits.load(Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
