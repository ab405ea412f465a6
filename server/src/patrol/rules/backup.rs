//! Backup rules: a guest's newest backup too old, failed backups, failed backup jobs that name
//! no guest.

use super::Thresholds;
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use warden_shared::metric;

/// A backup older than the limit is a warning; older than twice the limit (4 days by default:
/// several nightly runs missed) critical, since a restore would lose that much. A failed backup
/// with a recent good one is a warning: the data is still protected by the older backup, and
/// if the failures go on the backup's age escalates.
pub(super) fn backup_age(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    // One sample per backup storage; the newest backup anywhere counts.
    let newest = r
        .latest
        .iter()
        .filter(|(m, _)| m.starts_with(metric::BACKUP_LAST_AGE_SECONDS))
        .map(|(_, l)| l.value)
        .reduce(f64::min);
    let failed = r
        .latest
        .get(metric::BACKUP_FAILED_24H)
        .is_some_and(|l| l.value > 0.0);
    if let Some(age) = newest
        && age > t.backup_max_age_s
    {
        let severity = if age > 2.0 * t.backup_max_age_s {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut d = Detection::on(r, "backup-age", severity, Category::Backup);
        let hours = age / 3600.0;
        d.title = format!("{}: last backup {hours:.0} h ago", r.name);
        d.description = format!(
            "The newest backup of {} is {:.1} days old; backups have stopped or keep failing.",
            r.name,
            hours / 24.0
        );
        d.recommendation = "Check the backup job that covers this guest (schedule, selection, \
                            target storage) and run one now."
            .into();
        d.evidence = format!(
            "backup_last_age_seconds = {age:.0} (> {:.0}; critical over {:.0})",
            t.backup_max_age_s,
            2.0 * t.backup_max_age_s
        );
        out.push(d);
    } else if failed {
        let mut d = Detection::on(r, "backup-failed", Severity::Warning, Category::Backup);
        d.title = format!("{}: backup failed", r.name);
        d.description = format!("A backup task of {} failed in the last 24 hours.", r.name);
        d.recommendation = "Read the failed vzdump task's log on the node and fix its cause; \
                            then run the backup again."
            .into();
        d.evidence = "backup_failed_24h > 0".into();
        out.push(d);
    }
}

/// Failed backup jobs of a node that name no guest (`backup_failed_unattributed_24h`: a
/// job that failed before it started any guest, or whose log could not be read): warning, as
/// a failed backup is; the guests' `backup-age` escalates if it goes on.
pub(super) fn failed_backup_job(r: &ResourceRecord, n: f64) -> Detection {
    let mut d = Detection::on(r, "backup-job-failed", Severity::Warning, Category::Backup);
    let plural = if n == 1.0 { "" } else { "s" };
    d.title = format!("{}: {n:.0} backup job{plural} failed", r.name);
    d.description = format!(
        "{n:.0} scheduled backup job{plural} on {} failed in the last 24 hours without naming          which guest's backup failed (the job stopped before starting any, or its log could not          be read).",
        r.name
    );
    d.recommendation = format!(
        "Open the failed vzdump task in {}'s Task History (or `pvenode task list --errors 1          --typefilter vzdump`) and read its log; a missing or full backup storage is the usual          cause. Then run the job again (Datacenter > Backup > Run now).",
        r.name
    );
    d.evidence = format!("backup_failed_unattributed_24h = {n:.0}");
    d
}

#[cfg(test)]
mod tests {
    use super::super::Thresholds;
    use super::super::tests::*;
    use super::*;

    #[test]
    fn a_backup_job_that_names_no_guest_is_a_backup_finding_not_a_failed_task() {
        let mut r = record("node:pve1", "online");
        latest(&mut r, metric::TASKS_FAILED_24H, 2.0);
        latest(&mut r, metric::BACKUP_FAILED_UNATTRIBUTED_24H, 1.0);
        let found = found(vec![r], &Thresholds::default());
        let job = found.iter().find(|d| d.key == "backup-job-failed").unwrap();
        assert_eq!(
            (job.severity, job.category),
            (Severity::Warning, Category::Backup)
        );
        assert_eq!(job.evidence, "backup_failed_unattributed_24h = 1");
        // The other failed task is still reported, the backup job not twice.
        let tasks = found.iter().find(|d| d.key == "tasks-failed").unwrap();
        assert!(tasks.title.contains(": 1 task failed"), "{}", tasks.title);
    }
}
