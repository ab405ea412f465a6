//! Proxmox VE node rules: offline nodes, CPU and memory held high, a host's own full
//! filesystems, pending package updates and failed tasks.

use super::backup::failed_backup_job;
use super::{
    Filesystem, Fleet, GIB, Thresholds, latest_value, level, minutes, newest_family, sustained_min,
    text,
};
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use crate::patrol::snapshot::Snapshot;
use std::collections::BTreeMap;
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

pub(super) fn node(s: &Snapshot, t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    for (metric, what, key) in [
        (metric::CPU_PCT, "CPU", "node-cpu"),
        (metric::MEM_USED_PCT, "memory", "node-memory"),
    ] {
        let Some(v) = sustained_min(s, &r.id, metric, t.window_ms) else {
            continue;
        };
        let Some(severity) = level(v, t.node) else {
            continue;
        };
        let mut d = Detection::on(r, key, severity, Category::Performance);
        d.title = format!("{} {what} at {v:.0} %", r.name);
        d.description = format!(
            "{what} on {} has stayed at or above {v:.1} % for {} minutes.",
            r.name,
            minutes(t.window_ms)
        );
        d.recommendation = format!(
            "Find what is using the {what} on {} (top guests or containers) and move or limit it.",
            r.name
        );
        d.evidence = format!("{metric} >= {v:.1} % for {} min", minutes(t.window_ms));
        out.push(d);
    }
}

/// A node its cluster reports offline (PVE's `/cluster/status`): down, fenced or cut off.
pub(super) fn node_offline(now_ms: i64, r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status != "offline" {
        return;
    }
    let mut d = Detection::on(r, "node-offline", Severity::Critical, Category::Reliability);
    let since = minutes(now_ms - r.updated_at_ms);
    d.title = format!("{} is offline", r.name);
    d.description = format!(
        "The cluster reports {} offline: its guests are down or being recovered by HA, and \
         it holds no quorum vote.",
        r.name
    );
    d.recommendation = format!(
        "Check {}'s power and network (IPMI or console first); once it is back, `pvecm status` \
         shows it in the quorum again.",
        r.name
    );
    d.evidence = format!("cluster status = offline (reported {since} min ago)");
    out.push(d);
}

/// Mount points under which PVE and PBS mount their storages and datastores: their usage is
/// watched by `storage-usage`.
const STORAGE_MOUNT_DIRS: [&str; 2] = ["/mnt/pve/", "/mnt/datastore/"];

/// By node id, mount points of the node whose filesystem a storage rule already watches, with
/// whether the mounts under them count too: `/` where PVE's `local` directory storage reports
/// (it is `/var/lib/vz` on the root filesystem), and `/<pool>` with everything under it for
/// each ZFS pool (PVE's default mount points; container subvolumes there are also watched by
/// `guest-disk`).
pub(super) fn storage_mounts(resources: &[ResourceRecord]) -> BTreeMap<&str, Vec<(String, bool)>> {
    let mut out: BTreeMap<&str, Vec<(String, bool)>> = BTreeMap::new();
    for r in resources {
        let Some(node) = r.parent.as_deref().filter(|p| p.starts_with("node:")) else {
            continue;
        };
        if ResourceKind::from_prefix(&r.kind) != Some(ResourceKind::Storage)
            || latest_value(r, metric::STORAGE_USED_PCT).is_none()
        {
            continue;
        }
        let mount = match text(r, "plugin") {
            Some("dir") if r.name == "local" => ("/".to_owned(), false),
            Some("zfs") => (format!("/{}", text(r, "pool").unwrap_or(&r.name)), true),
            _ => continue,
        };
        out.entry(node).or_default().push(mount);
    }
    out
}

/// Whether a storage rule watches the filesystem at `mount` (see [`storage_mounts`]).
fn watched_by_storage(mount: &str, watched: &[(String, bool)]) -> bool {
    STORAGE_MOUNT_DIRS.iter().any(|d| mount.starts_with(d))
        || watched.iter().any(|(m, subtree)| {
            mount == m
                || *subtree
                    && mount
                        .strip_prefix(m.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// A host's own filesystems (`fs_used_pct{mount="…"}` from the host collector, newest reading
/// only), one finding per mount at or above `host_fs`, keyed `host-fs:<mount>`. Filesystems a
/// storage rule watches are left to it ([`watched_by_storage`]), so a full `local` storage or
/// ZFS pool is one finding, not two. Read from the latest reading, like guest disks: usage
/// moves slowly and a full filesystem is a problem from its first reading.
pub(super) fn host_fs(
    t: &Thresholds,
    r: &ResourceRecord,
    watched: &[(String, bool)],
    out: &mut Vec<Detection>,
) {
    for (mount, pct, _) in newest_family(r, metric::FS_USED_PCT, "mount") {
        let Some(severity) = level(pct, t.host_fs) else {
            continue;
        };
        if watched_by_storage(mount, watched) {
            continue;
        }
        let labelled = |m: &str| latest_value(r, &format!("{m}{{mount=\"{mount}\"}}"));
        let fs = Filesystem {
            mount,
            metric: metric::labelled(metric::FS_USED_PCT, "mount", mount),
            pct,
            used: labelled(metric::FS_USED_BYTES),
            total: labelled(metric::FS_TOTAL_BYTES),
        };
        let mut d = Detection::on(r, &format!("host-fs:{mount}"), severity, Category::Capacity);
        d.title = format!("{}: {mount} is {pct:.0} % full", r.name);
        let size = match (fs.used, fs.total) {
            (Some(u), Some(t)) => format!(" ({:.1} of {:.1} GiB used)", u / GIB, t / GIB),
            _ => String::new(),
        };
        d.description = format!(
            "The filesystem {mount} of {} is {pct:.1} % full{size}; what writes there (logs, \
             package updates, databases, containers) fails once it is full.",
            r.name
        );
        d.recommendation = if mount.starts_with("/boot") {
            format!(
                "Remove old kernels from {mount} with `apt autoremove --purge` (`dpkg -l \
                 'linux-image*' 'proxmox-kernel*'` lists them; keep the running one, `uname \
                 -r`), or grow the partition."
            )
        } else {
            format!(
                "Find what grew with `du -xh --max-depth=2 {mount} | sort -h | tail -20`. Usual \
                 causes: logs (`journalctl --vacuum-size=500M`, old files in /var/log), package \
                 caches (`apt-get clean`), on Docker hosts unused images and build cache \
                 (`docker system prune`). Free that space, or grow the filesystem."
            )
        };
        d.evidence = format!(
            "{} (warning {:.0} %, critical {:.0} %)",
            fs.evidence(),
            t.host_fs.warning,
            t.host_fs.critical
        );
        out.push(d);
    }
}

/// Pending package updates of a Proxmox VE node (`updates_pending`, the entries of
/// `/nodes/{node}/apt/update`): info, one finding per node with the count. A node without
/// pending updates is silent. The API lists packages, not whether an update fixes a security
/// issue, so the finding says how to see that.
pub(super) fn updates_pending(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(n) = latest_value(r, metric::UPDATES_PENDING).filter(|n| *n >= 1.0) else {
        return;
    };
    let mut d = Detection::on(r, "updates-pending", Severity::Info, Category::General);
    let plural = if n == 1.0 { "" } else { "s" };
    d.title = format!("{}: {n:.0} package update{plural} pending", r.name);
    d.description = format!(
        "apt on {} lists {n:.0} package{plural} with a newer version (the list the daily \
         `pveupdate` refreshes). Proxmox VE does not say which of them are security updates.",
        r.name
    );
    d.recommendation = format!(
        "Review them on {} (node > Updates, or `apt list --upgradable`; `apt list --upgradable \
         | grep -i security` shows security updates) and install them in a maintenance window \
         with `apt full-upgrade` (never plain `apt upgrade` on Proxmox VE); if a new kernel \
         comes with them, migrate the guests off and reboot.",
        r.name
    );
    d.evidence = format!("updates_pending = {n:.0}");
    out.push(d);
}

/// Failed tasks of a node within 24 h no other finding explains, from which the finding is a
/// warning.
const TASKS_FAILED_WARNING: f64 = 5.0;

/// Failed tasks of a Proxmox VE node within 24 h (`tasks_failed_24h`) beyond the failed backups
/// of its guests (reported by `backup-failed`): watch, warning from
/// [`TASKS_FAILED_WARNING`]. Migrations, snapshots, disk moves and job-level backups fail
/// here without any other trace.
pub(super) fn failed_tasks(fleet: &Fleet<'_>, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let unattributed = latest_value(r, metric::BACKUP_FAILED_UNATTRIBUTED_24H).unwrap_or(0.0);
    if unattributed >= 1.0 {
        out.push(failed_backup_job(r, unattributed));
    }
    let Some(failed) = latest_value(r, metric::TASKS_FAILED_24H) else {
        return;
    };
    let backups = fleet.backup_failures.get(&r.name).copied().unwrap_or(0.0) + unattributed;
    let other = failed - backups;
    if other < 1.0 {
        return;
    }
    let severity = if other >= TASKS_FAILED_WARNING {
        Severity::Warning
    } else {
        Severity::Watch
    };
    let mut d = Detection::on(r, "tasks-failed", severity, Category::Reliability);
    let plural = if other == 1.0 { "" } else { "s" };
    d.title = format!(
        "{}: {other:.0} task{plural} failed in the last 24 hours",
        r.name
    );
    d.description = format!(
        "{other:.0} task{plural} on {} ended with an error in the last 24 hours (migrations, \
         snapshots, disk moves, backup jobs and the like), besides the failed backups of its \
         guests that their own findings report.",
        r.name
    );
    d.recommendation = format!(
        "List them with `pvenode task list --errors 1` on {} (or node > Task History, Only \
         Errors) and read each task's log for its error.",
        r.name
    );
    d.evidence = if backups > 0.0 {
        format!(
            "tasks_failed_24h = {failed:.0}, of which {backups:.0} failed backups of its guests \
             (watch from 1 other, warning from {TASKS_FAILED_WARNING:.0})"
        )
    } else {
        format!(
            "tasks_failed_24h = {failed:.0} (watch from 1, warning from \
             {TASKS_FAILED_WARNING:.0})"
        )
    };
    out.push(d);
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::{Levels, Thresholds, detect};
    use super::*;

    #[test]
    fn node_cpu_and_memory() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![record("node:pve1", "online")],
            ..Snapshot::default()
        };
        series(&mut s, "node:pve1", metric::CPU_PCT, 20, |_| 80.0);
        series(&mut s, "node:pve1", metric::MEM_USED_PCT, 20, |m| {
            if m % 2 == 0 { 90.0 } else { 60.0 }
        });
        let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].key.as_str(), found[0].severity),
            ("node-cpu", Severity::Warning)
        );
        assert_eq!(found[0].node.as_deref(), Some("pve1"));
    }

    #[test]
    fn pending_updates_are_info_and_a_node_without_any_is_silent() {
        let mut some = record("node:pve1", "online");
        latest(&mut some, metric::UPDATES_PENDING, 14.0);
        let mut one = record("node:pve2", "online");
        latest(&mut one, metric::UPDATES_PENDING, 1.0);
        let mut none = record("node:pve3", "online");
        latest(&mut none, metric::UPDATES_PENDING, 0.0);
        let unknown = record("node:pve4", "online");
        let found = found(vec![some, one, none, unknown], &Thresholds::default());
        let got: Vec<(&str, &str, Severity)> = found
            .iter()
            .map(|d| (d.resource_id.as_str(), d.key.as_str(), d.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("node:pve1", "updates-pending", Severity::Info),
                ("node:pve2", "updates-pending", Severity::Info),
            ]
        );
        assert_eq!(found[0].title, "pve1: 14 package updates pending");
        assert_eq!(found[1].title, "pve2: 1 package update pending");
        assert_eq!(found[0].evidence, "updates_pending = 14");
        assert!(found[0].recommendation.contains("apt full-upgrade"));
        assert!(found[0].recommendation.contains("security"));
    }

    #[test]
    fn failed_tasks_beyond_the_failed_backups_of_the_nodes_guests() {
        let node = |name: &str, failed: f64| {
            let mut r = record(&format!("node:{name}"), "online");
            latest(&mut r, metric::TASKS_FAILED_24H, failed);
            r
        };
        let guest = |vmid: u32, node: &str, failed: f64| {
            let mut r = record(&format!("vm:c/{vmid}"), "running");
            attr(&mut r, "node", node);
            latest(&mut r, metric::BACKUP_FAILED_24H, failed);
            latest(
                &mut r,
                &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
                3600.0,
            );
            r
        };
        let resources = vec![
            // Its one failure is the backup `backup-failed` reports.
            node("pve1", 1.0),
            guest(100, "pve1", 1.0),
            // Two migrations failed besides a backup.
            node("pve2", 3.0),
            guest(101, "pve2", 1.0),
            // Six failures, no guest's.
            node("pve3", 6.0),
            node("pve4", 0.0),
        ];
        let found = found(resources, &Thresholds::default());
        let tasks = keyed(&found, "tasks-failed");
        assert_eq!(
            tasks,
            [
                ("node:pve2", Severity::Watch),
                ("node:pve3", Severity::Warning)
            ]
        );
        let pve2 = found.iter().find(|d| d.resource_id == "node:pve2").unwrap();
        assert_eq!(pve2.title, "pve2: 2 tasks failed in the last 24 hours");
        assert!(
            pve2.evidence
                .starts_with("tasks_failed_24h = 3, of which 1 failed backups"),
            "{}",
            pve2.evidence
        );
        assert!(pve2.recommendation.contains("pvenode task list --errors 1"));
    }

    #[test]
    fn host_filesystems_one_finding_per_full_mount() {
        let t = Thresholds::default();
        for (pct, want) in [
            (84.9, None),
            (85.0, Some(Severity::Warning)),
            (94.9, Some(Severity::Warning)),
            (95.0, Some(Severity::Critical)),
        ] {
            let mut r = record("node:dock1", "online");
            host_mount(&mut r, "/", pct, NOW);
            let f = found(vec![r], &t);
            assert_eq!(sev(&f, "node:dock1", "host-fs:/"), want, "{pct} %");
        }

        let mut dock = record("node:dock1", "online");
        host_mount(&mut dock, "/", 91.0, NOW);
        host_mount(&mut dock, "/boot", 97.0, NOW);
        host_mount(&mut dock, "/srv", 40.0, NOW);
        // Unmounted since: ignored.
        host_mount(&mut dock, "/mnt/usb", 99.0, NOW - 600_000);
        let f = found(vec![dock], &t);
        let got: Vec<(&str, Severity)> = f.iter().map(|d| (d.key.as_str(), d.severity)).collect();
        assert_eq!(
            got,
            vec![
                ("host-fs:/", Severity::Warning),
                ("host-fs:/boot", Severity::Critical)
            ]
        );
        let d = &f[0];
        assert_eq!(
            (d.category, d.node.as_deref()),
            (Category::Capacity, Some("dock1"))
        );
        assert_eq!(d.title, "dock1: / is 91 % full");
        assert_eq!(
            d.evidence,
            format!(
                "{} = 91.0 % (91.0 of 100.0 GiB) (warning 85 %, critical 95 %)",
                metric::labelled(metric::FS_USED_PCT, "mount", "/")
            )
        );
        assert!(d.description.contains("(91.0 of 100.0 GiB used)"));
        assert!(
            d.recommendation
                .contains("`du -xh --max-depth=2 / | sort -h")
        );
        assert!(f[1].recommendation.contains("`apt autoremove --purge`"));

        // What a storage rule watches is left to it: PVE and PBS storage mounts, `/` under
        // PVE's `local` storage, a ZFS pool's datasets (container subvolumes among them).
        let mut pve1 = record("node:pve1", "online");
        for m in [
            "/",
            "/mnt/pve/cephfs",
            "/mnt/datastore/store1",
            "/rpool",
            "/rpool/data/subvol-101-disk-0",
            "/rpoolx",
        ] {
            host_mount(&mut pve1, m, 96.0, NOW);
        }
        let mut local = record("storage:pve1/local", "available");
        local.parent = Some("node:pve1".into());
        local.attrs.insert("plugin".into(), "dir".into());
        latest(&mut local, metric::STORAGE_USED_PCT, 96.0);
        // pve2's `local` reports no usage (disabled): its `/` is Patrol's to watch.
        let mut pve2 = record("node:pve2", "online");
        host_mount(&mut pve2, "/", 96.0, NOW);
        let mut off = record("storage:pve2/local", "disabled");
        off.parent = Some("node:pve2".into());
        off.attrs.insert("plugin".into(), "dir".into());
        let resources = vec![pve1, local, zfs("pve1", "rpool", "online", &[]), pve2, off];
        let f = found(resources, &t);
        let got: Vec<(&str, &str)> = f
            .iter()
            .filter(|d| d.key.starts_with("host-fs"))
            .map(|d| (d.resource_id.as_str(), d.key.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("node:pve1", "host-fs:/rpoolx"), ("node:pve2", "host-fs:/")]
        );

        // Per-resource thresholds apply.
        let mut loose = t.clone();
        loose.host_fs = Levels {
            warning: 97.0,
            critical: 99.0,
        };
        let node = |name: &str| {
            let mut r = record(&format!("node:{name}"), "online");
            host_mount(&mut r, "/", 96.0, NOW);
            r
        };
        let s = Snapshot {
            now_ms: NOW,
            resources: vec![node("a"), node("b")],
            ..Snapshot::default()
        };
        let overrides = BTreeMap::from([("node:a".to_owned(), loose)]);
        let f = detect(&s, &t, &overrides);
        let ids: Vec<&str> = f.iter().map(|d| d.resource_id.as_str()).collect();
        assert_eq!(ids, vec!["node:b"]);
    }
}
