//! Storage rules: storage pool and datastore usage held over the window, ZFS pools that are
//! not online, Ceph not `HEALTH_OK`.

use super::{Thresholds, capacity_metric, latest_value, level, minutes, sustained_min, text};
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use crate::patrol::snapshot::Snapshot;
use warden_shared::metric;

pub(super) fn storage(s: &Snapshot, t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(metric) = capacity_metric(&r.kind) else {
        return;
    };
    let Some(v) = sustained_min(s, &r.id, metric, t.window_ms) else {
        return;
    };
    let severity = match level(v, t.storage) {
        Some(sev) => sev,
        None if v >= t.storage_watch => Severity::Watch,
        None => return,
    };
    let mut d = Detection::on(r, "storage-usage", severity, Category::Capacity);
    d.title = format!("{} is {v:.0} % full", r.name);
    d.description = format!(
        "{} has stayed at or above {v:.1} % used for the last {} minutes.",
        r.name,
        minutes(t.window_ms)
    );
    d.recommendation = "Free space (old backups, snapshots, unused disks) or extend the pool \
                        before writes start failing."
        .into();
    d.evidence = format!("{metric} >= {v:.1} % for {} min", minutes(t.window_ms));
    out.push(d);
}

/// A ZFS pool (`storage:<node>/zfs:<pool>`) that is not online. The collector's status is the
/// pool's health in lower case: `degraded` (redundancy lost, data still served) is a warning;
/// `faulted`, `unavail`, `removed`, `offline` (the pool cannot serve data) and `suspended`
/// (I/O stopped after device failures) are critical.
pub(super) fn zfs_pool(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if text(r, "plugin") != Some("zfs") {
        return;
    }
    let severity = match r.status.as_str() {
        "degraded" => Severity::Warning,
        "faulted" | "unavail" | "removed" | "offline" | "suspended" => Severity::Critical,
        _ => return,
    };
    let pool = text(r, "pool").unwrap_or(&r.name);
    let health = r.status.to_ascii_uppercase();
    let bad = text(r, "zpool_bad_devices").filter(|b| !b.is_empty());
    let mut d = Detection::on(r, "zfs-pool-health", severity, Category::Reliability);
    let on = d
        .node
        .as_deref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_default();
    d.title = format!("ZFS pool {pool}{on} is {health}");
    let what = match r.status.as_str() {
        "degraded" => "has lost redundancy: it still serves data, but one more failure can lose it",
        "suspended" => "has suspended all I/O after device failures: what uses it hangs",
        _ => "cannot serve data: guests and services on it fail",
    };
    let zfs_says = text(r, "zpool_status")
        .map(|t| format!(" ZFS: {t}"))
        .unwrap_or_default();
    d.description = format!("The ZFS pool {pool}{on} {what}.{zfs_says}");
    // The first device that is not online, as `zpool replace` takes it.
    let device = bad
        .and_then(|b| b.split(" (").next())
        .unwrap_or("<failed device>");
    let mut advice = match r.status.as_str() {
        "degraded" => format!(
            "Run `zpool status -x {pool}`{on} to see the failed device, replace the disk and \
             run `zpool replace {pool} {device} <new device>` (a /dev/disk/by-id path); \
             `zpool status {pool}` shows the resilver until it is done. Until then the pool has \
             no redundancy: check that recent backups of its guests exist."
        ),
        "suspended" => format!(
            "Run `zpool status -x {pool}`{on} and check the devices' cabling, controller and \
             `dmesg`; once they are back, resume I/O with `zpool clear {pool}`. Replace a dead \
             device with `zpool replace {pool} {device} <new device>`."
        ),
        _ => format!(
            "Run `zpool status -x {pool}`{on}: reconnect the missing devices or replace them \
             (`zpool replace {pool} {device} <new device>`), then `zpool clear {pool}`. If the \
             pool cannot be brought back, restore its guests from backup."
        ),
    };
    if let Some(action) = text(r, "zpool_action") {
        advice.push_str(&format!(" ZFS advises: {action}"));
    }
    d.recommendation = advice;
    let mut evidence = vec![format!(
        "health {}",
        text(r, "health").unwrap_or(health.as_str())
    )];
    if let Some(b) = bad {
        evidence.push(format!("devices not online: {b}"));
    }
    for (attr, what) in [("zpool_errors", "errors"), ("zpool_scan", "scan")] {
        if let Some(v) = text(r, attr) {
            evidence.push(format!("{what}: {v}"));
        }
    }
    d.evidence = evidence.join("; ");
    out.push(d);
}

/// The cluster's Ceph (`storage:<cluster>/ceph`) not `HEALTH_OK`: the collector's status
/// `warning` (`HEALTH_WARN`) is a warning, `error` (`HEALTH_ERR`) critical. The evidence names
/// the health checks (`health_checks`) and the OSDs down or out (`ceph_osds_*`).
pub(super) fn ceph(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if text(r, "plugin") != Some("ceph") {
        return;
    }
    let (severity, fallback) = match r.status.as_str() {
        "warning" => (Severity::Warning, "HEALTH_WARN"),
        "error" => (Severity::Critical, "HEALTH_ERR"),
        _ => return,
    };
    let health = text(r, "health").unwrap_or(fallback);
    let checks = text(r, "health_checks").filter(|c| !c.is_empty());
    let cluster =
        r.id.split_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or_default();
    let osds = [
        metric::CEPH_OSDS_TOTAL,
        metric::CEPH_OSDS_UP,
        metric::CEPH_OSDS_IN,
    ]
    .map(|m| latest_value(r, m));
    let mut d = Detection::on(r, "ceph-health", severity, Category::Reliability);
    d.title = match checks {
        Some(c) => format!("Ceph of {cluster} is {health}: {}", c.replace(',', ", ")),
        None => format!("Ceph of {cluster} is {health}"),
    };
    d.description = format!(
        "Ceph of the cluster {cluster} reports {health}{}.",
        if severity == Severity::Critical {
            ": some data is unavailable or at risk, and I/O to it may block"
        } else {
            ": it still serves data, but with less redundancy or headroom than configured"
        }
    );
    let mut advice = "Run `ceph health detail` on a node of the cluster to see what each check \
                      means and which OSDs, placement groups or pools it concerns."
        .to_owned();
    let mut evidence = vec![
        format!("health {health}"),
        format!("checks: {}", checks.unwrap_or("none listed")),
    ];
    if let [Some(total), Some(up), Some(inside)] = osds {
        let (down, outside) = (total - up, total - inside);
        evidence.push(format!(
            "OSDs: {down:.0} down, {outside:.0} out ({total:.0} total, {up:.0} up, {inside:.0} in)"
        ));
        if down > 0.0 {
            advice.push_str(
                " Find the down OSDs with `ceph osd tree down` and start them on their node \
                 (`systemctl start ceph-osd@<id>`); if the disk behind one failed, replace it \
                 (destroy and re-create the OSD).",
            );
        }
    }
    if checks.is_some_and(|c| c.contains("FULL")) {
        advice.push_str(" For full OSDs or pools, free space or add OSDs before writes stop.");
    }
    d.recommendation = advice;
    d.evidence = evidence.join("; ");
    out.push(d);
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::{Thresholds, detect};
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn storage_levels_must_hold_for_the_whole_window() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![
                record("storage:pve2/local-zfs", "available"),
                record("storage:pve1/spiky", "available"),
                record("storage:pve1/new", "available"),
                record("pbs-datastore:pbs1/store1", "available"),
            ],
            ..Snapshot::default()
        };
        series(
            &mut s,
            "storage:pve2/local-zfs",
            metric::STORAGE_USED_PCT,
            30,
            |m| 88.0 + m as f64 * 0.1,
        );
        // One sample over 90 % among 85 % ones is not a sustained 90 %.
        series(
            &mut s,
            "storage:pve1/spiky",
            metric::STORAGE_USED_PCT,
            30,
            |m| {
                if m == 29 { 95.0 } else { 85.0 }
            },
        );
        // Five minutes of history cannot show ten minutes held.
        series(
            &mut s,
            "storage:pve1/new",
            metric::STORAGE_USED_PCT,
            5,
            |_| 99.0,
        );
        series(
            &mut s,
            "pbs-datastore:pbs1/store1",
            metric::DATASTORE_USED_PCT,
            30,
            |_| 72.0,
        );
        let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
        let by_id = |id: &str| found.iter().find(|d| d.resource_id == id);
        let zfs = by_id("storage:pve2/local-zfs").unwrap();
        // The last 10 minutes run from 90.0 to 91.0: critical.
        assert_eq!(
            (zfs.severity, zfs.category),
            (Severity::Critical, Category::Capacity)
        );
        assert_eq!(zfs.node.as_deref(), None);
        assert!(zfs.evidence.contains("90.0"), "{}", zfs.evidence);
        assert_eq!(
            by_id("storage:pve1/spiky").unwrap().severity,
            Severity::Warning
        );
        assert!(by_id("storage:pve1/new").is_none());
        assert_eq!(
            by_id("pbs-datastore:pbs1/store1").unwrap().severity,
            Severity::Watch
        );
    }

    #[test]
    fn pools_that_are_not_online_and_ceph_not_ok() {
        let t = Thresholds::default();
        let degraded = zfs(
            "pve1",
            "tank",
            "degraded",
            &[
                (
                    "zpool_status",
                    "One or more devices are faulted in response to persistent errors.",
                ),
                (
                    "zpool_action",
                    "Replace the faulted device, or use 'zpool clear' to mark the device repaired.",
                ),
                ("zpool_errors", "No known data errors"),
                (
                    "zpool_bad_devices",
                    "ata-ST8000VN004_WWZ5 (FAULTED, too many errors), sdx (UNAVAIL)",
                ),
            ],
        );
        // A PVE storage on the pool (`zfspool`) has PVE's storage statuses: not a pool health.
        let mut zfspool = record("storage:pve1/local-zfs", "unavailable");
        zfspool.attrs.insert("plugin".into(), "zfspool".into());
        let resources = vec![
            degraded,
            zfs("pve2", "tank", "faulted", &[]),
            zfs("pve3", "tank", "suspended", &[]),
            zfs("pve4", "tank", "unavail", &[]),
            zfs("pve1", "rpool", "online", &[]),
            // No health read: nothing to say.
            zfs("pve2", "rpool", "unknown", &[]),
            zfspool,
        ];
        let f = found(resources, &t);
        let got: Vec<(&str, &str, Severity)> = f
            .iter()
            .map(|d| (d.resource_id.as_str(), d.key.as_str(), d.severity))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "storage:pve1/zfs:tank",
                    "zfs-pool-health",
                    Severity::Warning
                ),
                (
                    "storage:pve2/zfs:tank",
                    "zfs-pool-health",
                    Severity::Critical
                ),
                (
                    "storage:pve3/zfs:tank",
                    "zfs-pool-health",
                    Severity::Critical
                ),
                (
                    "storage:pve4/zfs:tank",
                    "zfs-pool-health",
                    Severity::Critical
                ),
            ]
        );
        let d = &f[0];
        assert_eq!(d.category, Category::Reliability);
        assert_eq!(d.node.as_deref(), Some("pve1"));
        assert_eq!(d.title, "ZFS pool tank on pve1 is DEGRADED");
        assert!(
            d.description.contains("persistent errors"),
            "{}",
            d.description
        );
        assert!(
            d.recommendation
                .contains("`zpool replace tank ata-ST8000VN004_WWZ5 <new device>`"),
            "{}",
            d.recommendation
        );
        assert!(d.recommendation.contains("`zpool status -x tank` on pve1"));
        assert!(d.recommendation.ends_with("to mark the device repaired."));
        assert_eq!(
            d.evidence,
            "health DEGRADED; devices not online: ata-ST8000VN004_WWZ5 (FAULTED, too many \
             errors), sdx (UNAVAIL); errors: No known data errors"
        );
        assert!(
            f[1].recommendation
                .contains("restore its guests from backup")
        );
        assert!(f[2].recommendation.contains("`zpool clear tank`"));
        assert_eq!(f[3].evidence, "health UNAVAIL");

        // Ceph: HEALTH_WARN a warning, HEALTH_ERR critical, HEALTH_OK and unknown nothing.
        let warn = ceph_cluster(
            "warning",
            "HEALTH_WARN",
            "OSD_DOWN,PG_DEGRADED",
            [15.0, 14.0, 15.0],
        );
        let f = found(vec![warn], &t);
        assert_eq!(f.len(), 1, "{f:?}");
        let d = &f[0];
        assert_eq!(
            (d.key.as_str(), d.severity, d.category),
            ("ceph-health", Severity::Warning, Category::Reliability)
        );
        assert_eq!(
            d.title,
            "Ceph of prod is HEALTH_WARN: OSD_DOWN, PG_DEGRADED"
        );
        assert_eq!(
            d.evidence,
            "health HEALTH_WARN; checks: OSD_DOWN,PG_DEGRADED; OSDs: 1 down, 0 out (15 total, \
             14 up, 15 in)"
        );
        assert!(d.recommendation.starts_with("Run `ceph health detail`"));
        assert!(d.recommendation.contains("`ceph osd tree down`"));
        let err = ceph_cluster("error", "HEALTH_ERR", "OSD_FULL", [15.0, 15.0, 13.0]);
        let f = found(vec![err], &t);
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(f[0].evidence.contains("0 down, 2 out"), "{}", f[0].evidence);
        assert!(f[0].recommendation.contains("add OSDs"));
        assert!(!f[0].recommendation.contains("osd tree down"));
        let f = found(
            vec![
                ceph_cluster("healthy", "HEALTH_OK", "", [15.0, 15.0, 15.0]),
                ceph_cluster("unknown", "", "", [15.0, 15.0, 15.0]),
            ],
            &t,
        );
        assert!(f.is_empty(), "{f:?}");
    }
}
