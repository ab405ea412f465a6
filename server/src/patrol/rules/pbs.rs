//! Proxmox Backup Server rules: failed GC, prune, verify and sync jobs of a datastore.

use super::{latest_value, text};
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use warden_shared::metric;

/// Failed tasks of a PBS datastore within 24 h from which a failing GC, prune or sync job is
/// critical.
const PBS_REPEATED_FAILURES: f64 = 3.0;

pub(super) fn pbs_jobs(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let failed_tasks = latest_value(r, metric::TASKS_FAILED_24H).unwrap_or(0.0);
    for (metric, l) in &r.latest {
        let Some(job) = metric
            .strip_prefix(metric::JOB_LAST_OK)
            .and_then(|j| j.strip_prefix("{job=\""))
            .and_then(|j| j.strip_suffix("\"}"))
        else {
            continue;
        };
        if l.value != 0.0 {
            continue;
        }
        // The collector names it after the job (`verify/v-fast_last_state`); GC has no id.
        let kind = job.split('/').next().unwrap_or(job);
        let state = text(r, &format!("{job}_last_state"))
            .or_else(|| text(r, &format!("{kind}_last_state")))
            .unwrap_or("failed");
        // A failed verify means snapshots may not restore: data protection at risk. The other
        // jobs degrade (space not freed, old snapshots kept, the offsite copy behind) until
        // they keep failing.
        let repeated = failed_tasks >= PBS_REPEATED_FAILURES;
        let severity = if kind == "verify" || repeated {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut d = Detection::on(r, &format!("pbs-{job}-failed"), severity, Category::Backup);
        d.title = format!("{}: {job} failed", r.name);
        d.description = format!("The last {job} job of datastore {} failed: {state}", r.name);
        d.recommendation = "Read the task log on the PBS host and fix the cause (disk errors, \
                            permissions, the remote for sync jobs)."
            .into();
        d.evidence = format!(
            "{metric} = 0; last state: {state}; tasks_failed_24h = {failed_tasks:.0}{}",
            if repeated { " (repeated)" } else { "" }
        );
        out.push(d);
    }
}
