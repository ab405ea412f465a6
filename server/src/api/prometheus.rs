//! `GET /metrics`: the server's own counters in Prometheus text format.

use super::{ApiState, Caller};
use crate::store::{Store, WebhookState};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub(super) async fn metrics(State(state): State<ApiState>, caller: Caller) -> impl IntoResponse {
    let s = &state.writer.stats;
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
    let store = state.store.status();
    put(
        "warden_store_writable",
        "gauge",
        "1 when the store takes writes, 0 after a write failed (a full disk) until it is reopened.",
        u64::from(store.failure.is_none()),
    );
    if let Some(space) = store.space {
        put(
            "warden_store_disk_free_bytes",
            "gauge",
            "Free space on the disk holding the store.",
            space.free,
        );
    }
    put(
        "warden_store_reserve_bytes",
        "gauge",
        "Free space kept for the audit log; telemetry is refused below it.",
        store.reserve,
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
        "warden_agent_identity_conflicts_total",
        "counter",
        "Agent connections refused because another live process held the same identity.",
        s.identity_conflicts.load(Ordering::Relaxed),
    );
    put(
        "warden_ingest_commits_total",
        "counter",
        "Store commits (group commits).",
        s.commits.load(Ordering::Relaxed),
    );
    store_history(&state.store, &mut out);
    webhooks(&state, caller.org, &mut out).await;
    remote_write(&state, &mut out).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// One endpoint's figure from its state, dead-letter count and the audit head.
type Value = fn(&WebhookState, usize, u64) -> u64;

/// Per-endpoint webhook delivery: messages delivered, failed attempts, dead letters, and how
/// many audit events the endpoint is behind (alert on a growing lag).
async fn webhooks(state: &ApiState, org: String, out: &mut String) {
    let store = state.store.clone();
    let read =
        super::blocking(move || Ok((store.webhook_list(&org)?, store.audit_head(&org)?))).await;
    let Ok((list, head)) = read else {
        return;
    };
    let head = head.map_or(0, |h| h.seq);
    let metrics: [(&str, &str, &str, Value); 4] = [
        (
            "warden_webhook_delivered_total",
            "counter",
            "Webhook messages delivered.",
            |s, _, _| s.delivered,
        ),
        (
            "warden_webhook_failed_attempts_total",
            "counter",
            "Failed webhook delivery attempts.",
            |s, _, _| s.failed_attempts,
        ),
        (
            "warden_webhook_dead_letters",
            "gauge",
            "Webhook messages in the dead-letter list.",
            |_, d, _| d as u64,
        ),
        (
            "warden_webhook_lag_events",
            "gauge",
            "Audit events not yet passed to the endpoint.",
            |s, _, head| head.saturating_sub(s.event_seq),
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (ep, st, dead) in &list {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"{}\"}} {}",
                ep.id,
                value(st, *dead, head)
            );
        }
    }
}

/// Metric history: size per tier (from the usage the upkeep task measures once a minute; absent
/// until it first has), retention per tier, and what the store refused, sealed and expired.
fn store_history(store: &Store, out: &mut String) {
    let mut family = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let tiers = |f: &dyn Fn(&str) -> u64| -> Vec<(String, u64)> {
        ["head", "chunks", "minute", "hour"]
            .iter()
            .map(|t| (format!("{{tier=\"{t}\"}}"), f(t)))
            .collect()
    };
    if let Some(u) = store.cached_usage() {
        let by = |t: &str| match t {
            "head" => u.head,
            "chunks" => u.chunks,
            "minute" => u.minute,
            _ => u.hour,
        };
        family(
            "warden_store_tier_bytes",
            "gauge",
            "Bytes of metric history per tier (head: raw samples not sealed yet; chunks: sealed raw samples; minute and hour aggregates).",
            &tiers(&|t| by(t).bytes),
        );
        family(
            "warden_store_tier_entries",
            "gauge",
            "Entries of metric history per tier (head rows, chunks, minute rows or packed hours, hour rows of a day).",
            &tiers(&|t| by(t).entries),
        );
        let orgs = |f: &dyn Fn(&crate::store::OrgUsage) -> u64| -> Vec<(String, u64)> {
            u.orgs
                .iter()
                .map(|o| (format!("{{org=\"{}\"}}", o.org), f(o)))
                .collect()
        };
        family(
            "warden_store_org_series",
            "gauge",
            "Series of metric history per organisation.",
            &orgs(&|o| o.series),
        );
        family(
            "warden_store_org_bytes_estimated",
            "gauge",
            "Bytes of metric history per organisation, estimated from its share of the series.",
            &orgs(&|o| o.bytes_estimated),
        );
        family(
            "warden_store_file_bytes",
            "gauge",
            "Size of the store's database file.",
            &[(String::new(), u.file_bytes)],
        );
    }
    let r = store.retention();
    let secs = |ms: i64| u64::try_from(ms / 1000).unwrap_or(0);
    family(
        "warden_store_retention_seconds",
        "gauge",
        "How long each tier keeps metric history.",
        &[
            ("{tier=\"raw\"}".to_owned(), secs(r.raw_ms)),
            ("{tier=\"minute\"}".to_owned(), secs(r.minute_ms)),
            ("{tier=\"hour\"}".to_owned(), secs(r.hour_ms)),
        ],
    );
    let c = store.counters();
    family(
        "warden_store_refused_samples_total",
        "counter",
        "Samples refused by the store, by reason (too_old: older than raw retention).",
        &[(
            "{reason=\"too_old\"}".to_owned(),
            c.too_old.load(Ordering::Relaxed),
        )],
    );
    family(
        "warden_store_sealed_samples_total",
        "counter",
        "Raw samples sealed into compressed chunks.",
        &[(String::new(), c.sealed_samples.load(Ordering::Relaxed))],
    );
    family(
        "warden_store_expired_chunks_total",
        "counter",
        "Chunks deleted by retention.",
        &[(String::new(), c.expired_chunks.load(Ordering::Relaxed))],
    );
}

/// The remote-write sink's backlog and counters (`store/outbox.rs`), when it is on.
async fn remote_write(state: &ApiState, out: &mut String) {
    let store = state.store.clone();
    let Ok(s) = super::blocking(move || store.outbox_stats()).await else {
        return;
    };
    if !s.enabled {
        return;
    }
    let dropped = "warden_remote_write_dropped_samples_total";
    let metrics: [(&str, &str, &str, String); 6] = [
        (
            "warden_remote_write_backlog_samples",
            "gauge",
            "Stored samples waiting to be shipped.",
            format!(" {}", s.backlog_samples),
        ),
        (
            "warden_remote_write_backlog_rows",
            "gauge",
            "Outbox rows (commits, cut at batch_samples) waiting to be shipped.",
            format!(" {}", s.backlog_rows),
        ),
        (
            "warden_remote_write_sent_samples_total",
            "counter",
            "Samples the receiver acknowledged since the server started.",
            format!(" {}", s.sent_samples),
        ),
        (
            "warden_remote_write_failed_requests_total",
            "counter",
            "Requests that failed (429, 5xx, timeout, connection) and were retried.",
            format!(" {}", s.failed_requests),
        ),
        (
            dropped,
            "counter",
            "Samples never shipped: the oldest past max_backlog_samples (backlog_full), or in a batch the receiver refused (rejected).",
            format!(
                "{{reason=\"backlog_full\"}} {}\n{dropped}{{reason=\"rejected\"}} {}",
                s.dropped_samples, s.rejected_samples
            ),
        ),
        (
            "warden_remote_write_last_success_timestamp_seconds",
            "gauge",
            "When the receiver last acknowledged a batch (0: not since the server started).",
            format!(" {:.3}", s.last_success_ms as f64 / 1000.0),
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{value}"
        );
    }
}
