//! Storage replication rules: failing replication jobs.

use super::text;
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};

/// Failed runs in a row from which a replication job is critical.
const REPLICATION_REPEATED_FAILURES: f64 = 3.0;

pub(super) fn replication(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status != "failing" {
        return;
    }
    // One failed run is retried at the next schedule; from the third in a row the replica is
    // falling behind and a failover would lose data.
    let fail_count = r
        .attrs
        .get("fail_count")
        .and_then(serde_json::Value::as_f64);
    let severity = if fail_count.is_some_and(|n| n >= REPLICATION_REPEATED_FAILURES) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = Detection::on(r, "replication-failing", severity, Category::Backup);
    d.title = format!("replication {} is failing", r.name);
    let error = text(r, "error").unwrap_or("no error text");
    d.description = format!("Storage replication job {} keeps failing.", r.name);
    d.recommendation = "Check the target node is reachable over SSH and has the storage; \
                        then run the job by hand (`pvesr run`)."
        .into();
    d.evidence = format!(
        "fail_count = {}; error: {error}",
        fail_count.map_or("?".to_owned(), |n| format!("{n:.0}"))
    );
    out.push(d);
}
