//! Threshold heuristics: pure detectors over a [`Snapshot`] (resource state, recent history,
//! `now`). A level must hold over a whole window, not in one sample; a state (a failed job, a
//! crash loop, a pool's health) is read from the latest report. So are levels that move slowly
//! (guest and host filesystem usage, disk temperature, certificate expiry; see each detector
//! for why one reading is enough). Thresholds come from [`Thresholds`].

use super::finding::{Category, Detection, Severity};
use crate::store::{AgentRecord, ResourceRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the detectors look at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the run happens, ms since the epoch.
    pub now_ms: i64,
    /// Current state of every resource.
    pub resources: Vec<ResourceRecord>,
    /// Recent history, `(resource id, metric)` → `(ms, value)` in time order: one point per
    /// minute with samples, stamped with the minute's start, holding the minute's average (for
    /// a counter such as `restart_count`, its highest value: the reading at the minute's end).
    pub history: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// Days of history of capacity metrics, for forecasts: hourly averages, then 5-minute
    /// averages for the last few hours (points stamped with their bucket's start).
    pub trend_history: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// Days of hourly averages of the metrics anomaly baselines learn from
    /// ([`super::anomaly::METRICS`]), whole hours up to the current one (which is left out).
    pub baseline_history: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// The organisation's agents (revoked ones included), with when each was last heard from
    /// and the health of each of its collectors.
    pub agents: Vec<AgentRecord>,
    /// The server's own store and its disk (the default organisation's runs only).
    pub store: Option<crate::store::StoreStatus>,
}

/// A warning and a critical level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Levels {
    /// Warning at or above this.
    pub warning: f64,
    /// Critical at or above this.
    pub critical: f64,
}

/// Thresholds of the heuristics (DESIGN §3, issue 4's defaults). Serialised as the
/// `thresholds` of `/api/ai/patrol/settings`; a field missing from stored settings takes its
/// default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// How long a level must hold, ms.
    pub window_ms: i64,
    /// Storage used: watch at 70 %, warning 80 %, critical 90 %.
    pub storage_watch: f64,
    /// Storage warning/critical.
    pub storage: Levels,
    /// Node CPU and memory: 75 / 85 %.
    pub node: Levels,
    /// Guest memory: 80 / 88 %.
    pub guest_memory: Levels,
    /// Newest backup older than this is a finding, seconds.
    pub backup_max_age_s: f64,
    /// SMART wear-out (percent of life left) below this.
    pub wearout_min_pct: f64,
    /// Guest disk used (the fullest filesystem of a VM, a container's root disk): watch at
    /// 75 %.
    pub guest_disk_watch: f64,
    /// Guest disk used: warning 85 %, critical 92 %.
    pub guest_disk: Levels,
    /// Temperature of a hard disk or SATA/SAS SSD, °C: warning 55, critical 65 (the usual
    /// maximum operating temperature of hard disks is 55–60 °C).
    pub disk_temp_c: Levels,
    /// Temperature of an NVMe drive, °C: warning 70, critical 80. NVMe drives run hotter
    /// (50–60 °C under load is normal) and throttle themselves from about 70–80 °C, so the
    /// disk levels would flag healthy drives.
    pub nvme_temp_c: Levels,
    /// A certificate expiring within this many days is a warning.
    pub cert_warning_days: f64,
    /// Within this many days, or expired: critical.
    pub cert_critical_days: f64,
    /// A host's own filesystems (the host collector's `fs_used_pct{mount="…"}`): warning
    /// 85 %, critical 95 %.
    pub host_fs: Levels,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window_ms: 10 * 60_000,
            storage_watch: 70.0,
            storage: Levels {
                warning: 80.0,
                critical: 90.0,
            },
            node: Levels {
                warning: 75.0,
                critical: 85.0,
            },
            guest_memory: Levels {
                warning: 80.0,
                critical: 88.0,
            },
            backup_max_age_s: 48.0 * 3600.0,
            wearout_min_pct: 20.0,
            guest_disk_watch: 75.0,
            guest_disk: Levels {
                warning: 85.0,
                critical: 92.0,
            },
            disk_temp_c: Levels {
                warning: 55.0,
                critical: 65.0,
            },
            nvme_temp_c: Levels {
                warning: 70.0,
                critical: 80.0,
            },
            cert_warning_days: 14.0,
            cert_critical_days: 3.0,
            host_fs: Levels {
                warning: 85.0,
                critical: 95.0,
            },
        }
    }
}

/// What the per-resource rules read beyond their own resource, gathered in one pass.
struct Fleet<'a> {
    /// Every resource by id.
    by_id: HashMap<&'a str, &'a ResourceRecord>,
    /// By node name: the failed vzdump tasks of its guests in the last 24 h (the sum of their
    /// `backup_failed_24h`), which `backup-failed` and `backup-age` already report.
    backup_failures: HashMap<String, f64>,
}

impl<'a> Fleet<'a> {
    fn of(resources: &'a [ResourceRecord]) -> Self {
        let mut backup_failures: HashMap<String, f64> = HashMap::new();
        for r in resources
            .iter()
            .filter(|r| matches!(r.kind.as_str(), "vm" | "lxc"))
        {
            if let Some(n) = latest_value(r, "backup_failed_24h").filter(|n| *n > 0.0)
                && let Some(node) = r.node()
            {
                *backup_failures.entry(node).or_default() += n;
            }
        }
        Self {
            by_id: resources.iter().map(|r| (r.id.as_str(), r)).collect(),
            backup_failures,
        }
    }
}

/// Runs every heuristic, with `overrides` (by canonical resource id) in place of `t` for the
/// resources they name.
pub fn detect(
    s: &Snapshot,
    t: &Thresholds,
    overrides: &BTreeMap<String, Thresholds>,
) -> Vec<Detection> {
    let mut out = Vec::new();
    let watched = storage_mounts(&s.resources);
    let fleet = Fleet::of(&s.resources);
    for r in &s.resources {
        let t = overrides.get(&r.id).unwrap_or(t);
        match r.kind.as_str() {
            "storage" => {
                storage(s, t, r, &mut out);
                zfs_pool(r, &mut out);
                ceph(r, &mut out);
            }
            "pbs-datastore" => {
                storage(s, t, r, &mut out);
                pbs_jobs(r, &mut out);
            }
            "node" => {
                node_offline(s.now_ms, r, &mut out);
                node(s, t, r, &mut out);
                let watched = watched.get(r.id.as_str()).map_or(&[][..], Vec::as_slice);
                host_fs(t, r, watched, &mut out);
                updates_pending(r, &mut out);
                failed_tasks(&fleet, r, &mut out);
            }
            "vm" | "lxc" => {
                backup_age(t, r, &mut out);
                guest_memory(s, t, r, &mut out);
                guest_disk(t, r, &mut out);
            }
            "pod" => pod(s.now_ms, &fleet, r, &mut out),
            "disk" => {
                disk_health(r, &mut out);
                disk(t, r, &mut out);
                disk_temperature(t, r, &mut out);
            }
            "docker" => container(s, r, &mut out),
            "k8s-node" => {
                k8s_node(r, &mut out);
                k8s_pressure(r, &mut out);
            }
            "k8s-workload" => workload(r, &mut out),
            "pvc" => pvc(r, &mut out),
            "replication" => replication(r, &mut out),
            _ => {}
        }
        // Any resource that reports certificates: PVE nodes today, PBS hosts alike.
        certificates(s.now_ms, t, r, &mut out);
    }
    // After the rest: a storm counts only the warnings no other finding explains.
    warning_storms(&s.resources, &mut out);
    out
}

/// The lowest value of `metric` over the last `window`, if the history covers the window
/// (its first point is at least 80 % of a window old): "held for the whole window".
fn sustained_min(s: &Snapshot, id: &str, metric: &str, window_ms: i64) -> Option<f64> {
    let points = s.history.get(&(id.to_owned(), metric.to_owned()))?;
    let since = s.now_ms - window_ms;
    let recent: Vec<&(i64, f64)> = points.iter().filter(|p| p.0 >= since).collect();
    let first = recent.first()?;
    if s.now_ms - first.0 < window_ms * 4 / 5 || recent.len() < 2 {
        return None;
    }
    recent.iter().map(|p| p.1).reduce(f64::min)
}

fn level(v: f64, l: Levels) -> Option<Severity> {
    if v >= l.critical {
        Some(Severity::Critical)
    } else if v >= l.warning {
        Some(Severity::Warning)
    } else {
        None
    }
}

fn minutes(ms: i64) -> i64 {
    ms / 60_000
}

/// The used-percent metric of a storage pool or datastore, the one capacity rules and
/// forecasts read.
pub(crate) fn capacity_metric(kind: &str) -> Option<&'static str> {
    match kind {
        "storage" => Some("storage_used_pct"),
        "pbs-datastore" => Some("datastore_used_pct"),
        _ => None,
    }
}

fn storage(s: &Snapshot, t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
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
fn zfs_pool(r: &ResourceRecord, out: &mut Vec<Detection>) {
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
fn ceph(r: &ResourceRecord, out: &mut Vec<Detection>) {
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
    let osds = ["ceph_osds_total", "ceph_osds_up", "ceph_osds_in"].map(|m| latest_value(r, m));
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

fn node(s: &Snapshot, t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    for (metric, what, key) in [
        ("cpu_pct", "CPU", "node-cpu"),
        ("mem_used_pct", "memory", "node-memory"),
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

/// A backup older than the limit is a warning; older than twice the limit (4 days by default:
/// several nightly runs missed) critical, since a restore would lose that much. A failed backup
/// with a recent good one is a warning: the data is still protected by the older backup, and
/// if the failures go on the backup's age escalates.
fn backup_age(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    // One sample per backup storage; the newest backup anywhere counts.
    let newest = r
        .latest
        .iter()
        .filter(|(m, _)| m.starts_with("backup_last_age_seconds"))
        .map(|(_, l)| l.value)
        .reduce(f64::min);
    let failed = r
        .latest
        .get("backup_failed_24h")
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

/// Pending longer than this is a finding.
const POD_PENDING_MS: i64 = 5 * 60_000;
/// A container restarting this often within an hour is a finding.
const RESTARTS_PER_HOUR: f64 = 3.0;
/// This often, it is down more than it runs: critical.
const RESTARTS_CRITICAL_PER_HOUR: f64 = 10.0;

fn text<'a>(r: &'a ResourceRecord, attr: &str) -> Option<&'a str> {
    r.attrs.get(attr).and_then(serde_json::Value::as_str)
}

/// Whether the workload of a failing pod still serves: `Some(false)` when the workload
/// reports no replica available, `None` when that is unknown (a job's pod, a pod without a
/// known controller, a workload that is not reported).
fn still_served(fleet: &Fleet<'_>, r: &ResourceRecord) -> Option<bool> {
    let w = fleet.by_id.get(text(r, "workload")?)?;
    let desired = latest_value(w, "replicas_desired")?;
    let unavailable = latest_value(w, "replicas_unavailable")?;
    Some(desired <= 0.0 || unavailable < desired)
}

/// The last termination of a pod's container as evidence (`OOMKilled (exit code 137)`), and
/// what to do about a crash loop with that cause.
fn crash_cause(r: &ResourceRecord) -> (String, String) {
    let reason = text(r, "last_termination_reason");
    let code = r
        .attrs
        .get("last_exit_code")
        .and_then(serde_json::Value::as_i64);
    let ns = text(r, "namespace").unwrap_or("<namespace>");
    let logs = format!("`kubectl logs {} -n {ns} --previous`", r.name);
    let cause = match (reason, code) {
        (Some(reason), Some(code)) => format!("{reason} (exit code {code})"),
        (Some(reason), None) => reason.to_owned(),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "unknown".to_owned(),
    };
    let advice = match (reason, code) {
        (Some("OOMKilled"), _) => format!(
            "The container was killed for using more memory than its limit: restarting it will \
             not help. Raise `resources.limits.memory` (and the request) of the container in \
             its workload, or find what makes it grow ({logs} shows the last output before the \
             kill)."
        ),
        (_, Some(137)) => format!(
            "Exit code 137 without an OOM kill is a SIGKILL from outside, usually a failing \
             liveness probe: check the probe's path, timeout and initialDelaySeconds in \
             `kubectl describe pod {} -n {ns}`, and read {logs}.",
            r.name
        ),
        (_, Some(126 | 127)) | (Some("ContainerCannotRun" | "StartError"), _) => format!(
            "The container cannot start its command (exit 127: not found, 126: not \
             executable): check the image's entrypoint and the pod's `command`/`args`; \
             `kubectl describe pod {} -n {ns}` shows the runtime's error.",
            r.name
        ),
        (_, Some(0)) | (Some("Completed"), _) => format!(
            "The container exits successfully, and its pod's restartPolicy starts it again: \
             its main process must keep running (or the work belongs in a Job). Read {logs}."
        ),
        (_, Some(code)) => format!(
            "The application exits with code {code}: read why in the previous container's log, \
             {logs}, and the pod's events; fix the crash or its configuration (a missing \
             setting, secret or dependency)."
        ),
        _ => format!(
            "Read the previous container's log ({logs}) and the pod's events; fix the crash or \
             its configuration."
        ),
    };
    (cause, advice)
}

/// Crash loops, image pulls and pods pending too long: critical when the pod's workload has no
/// replica available (the service is down), else warning (degraded, or its impact unknown).
fn pod(now_ms: i64, fleet: &Fleet<'_>, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let restarts = r.latest.get("restarts").map_or(0.0, |l| l.value);
    let created = r
        .attrs
        .get("created_ms")
        .and_then(serde_json::Value::as_i64);
    let down = still_served(fleet, r) == Some(false);
    let severity = if down {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = match r.status.as_str() {
        "CrashLoopBackOff" => {
            let (cause, advice) = crash_cause(r);
            let mut d = Detection::on(r, "pod-crashloop", severity, Category::Reliability);
            d.title = format!("{} is crash-looping", r.name);
            d.description = format!(
                "Pod {} keeps restarting ({restarts:.0} restarts; last exit: {cause}).",
                r.name
            );
            d.recommendation = advice;
            d.evidence = format!(
                "status CrashLoopBackOff, restarts = {restarts:.0}; last termination: {cause}"
            );
            d
        }
        "ImagePullBackOff" | "ErrImagePull" => {
            let mut d = Detection::on(r, "pod-image", severity, Category::Reliability);
            d.title = format!("{} cannot pull its image", r.name);
            d.description = format!("Pod {} is stuck in {}.", r.name, r.status);
            d.recommendation = "Check the image name and tag, and the registry credentials \
                                (imagePullSecrets)."
                .into();
            d.evidence = format!("status {}", r.status);
            d
        }
        _ if text(r, "phase") == Some("Pending")
            && created.is_some_and(|c| now_ms - c > POD_PENDING_MS) =>
        {
            let minutes = (now_ms - created.unwrap_or(now_ms)) / 60_000;
            let mut d = Detection::on(r, "pod-pending", severity, Category::Reliability);
            d.title = format!("{} pending for {minutes} min", r.name);
            d.description = format!(
                "Pod {} has not started {minutes} minutes after it was created.",
                r.name
            );
            d.recommendation = "Read the pod's events: unschedulable (resources, taints, node \
                                selectors), an unbound volume, or an image still pulling."
                .into();
            d.evidence = format!("phase Pending for {minutes} min (> 5)");
            d
        }
        _ => return,
    };
    if down {
        d.evidence.push_str(&format!(
            "; its workload {} has no replica available",
            text(r, "workload").unwrap_or_default()
        ));
    }
    if let Some(w) = text(r, "last_warning") {
        d.evidence.push_str(&format!("; last warning: {w}"));
    }
    out.push(d);
}

fn container(s: &Snapshot, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let in_hour = s
        .history
        .get(&(r.id.clone(), "restart_count".to_owned()))
        .and_then(|p| {
            let since = s.now_ms - 3_600_000;
            let recent: Vec<f64> = p.iter().filter(|x| x.0 >= since).map(|x| x.1).collect();
            Some(recent.last()? - recent.first()?)
        })
        .unwrap_or(0.0);
    let oom = r.attrs.get("oom_killed") == Some(&serde_json::Value::Bool(true));
    let unhealthy = text(r, "health") == Some("unhealthy");
    let (key, title, evidence) = if in_hour >= RESTARTS_PER_HOUR {
        (
            "container-restarts",
            format!("{} restarted {in_hour:.0} times in the last hour", r.name),
            format!("restart_count +{in_hour:.0} in 60 min (>= {RESTARTS_PER_HOUR:.0})"),
        )
    } else if oom {
        (
            "container-oom",
            format!("{} was OOM-killed", r.name),
            "oom_killed = true".to_owned(),
        )
    } else if unhealthy {
        (
            "container-unhealthy",
            format!("{} is unhealthy", r.name),
            "health = unhealthy".to_owned(),
        )
    } else {
        return;
    };
    let severity = if in_hour >= RESTARTS_CRITICAL_PER_HOUR {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = Detection::on(r, key, severity, Category::Reliability);
    d.title = title;
    d.description = format!(
        "Container {} on {}: {}.",
        r.name,
        d.node.clone().unwrap_or_default(),
        d.title
    );
    d.recommendation = "Read the container's log (`docker logs`); for OOM kills raise its memory \
                        limit or fix the leak; for failing health checks check what the check \
                        tests."
        .into();
    d.evidence = evidence;
    out.push(d);
}

fn guest_memory(s: &Snapshot, t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(v) = sustained_min(s, &r.id, "mem_used_pct", t.window_ms) else {
        return;
    };
    let Some(severity) = level(v, t.guest_memory) else {
        return;
    };
    let mut d = Detection::on(r, "guest-memory", severity, Category::Performance);
    d.title = format!("{} memory at {v:.0} %", r.name);
    d.description = format!(
        "{} has used at least {v:.1} % of its memory for {} minutes.",
        r.name,
        minutes(t.window_ms)
    );
    d.recommendation = "Give the guest more memory or find what grows inside it.".into();
    d.evidence = format!("mem_used_pct >= {v:.1} % for {} min", minutes(t.window_ms));
    out.push(d);
}

fn k8s_node(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status == "Ready" {
        return;
    }
    let mut d = Detection::on(
        r,
        "k8s-node-not-ready",
        Severity::Critical,
        Category::Reliability,
    );
    d.title = format!("Kubernetes node {} is {}", r.name, r.status);
    d.description = format!(
        "Node {} is not Ready; its pods are not served and will be evicted.",
        r.name
    );
    d.recommendation = "Check the kubelet and the container runtime on the node, its network, \
                        and disk or memory pressure."
        .into();
    d.evidence = format!("condition Ready = {}", r.status);
    out.push(d);
}

fn workload(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let kind = text(r, "kind").unwrap_or("workload");
    if r.latest.get("job_failed").is_some_and(|l| l.value > 0.0) {
        let mut d = Detection::on(r, "job-failed", Severity::Warning, Category::Reliability);
        d.title = format!("job {} failed", r.name);
        let reason = text(r, "failure_reason").unwrap_or("unknown reason");
        d.description = format!("Job {} failed: {reason}.", r.name);
        d.recommendation =
            "Read the logs of its failed pods and fix the cause; then re-run it.".into();
        d.evidence = format!(
            "condition Failed: {reason}{}",
            text(r, "failure_message")
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
        out.push(d);
        return;
    }
    let unavailable = r
        .latest
        .get("replicas_unavailable")
        .map_or(0.0, |l| l.value);
    if unavailable <= 0.0 {
        return;
    }
    let desired = r.latest.get("replicas_desired").map_or(0.0, |l| l.value);
    let severity = if unavailable >= desired {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = Detection::on(r, "replicas-unavailable", severity, Category::Reliability);
    d.title = format!(
        "{kind} {}: {unavailable:.0} of {desired:.0} replicas unavailable",
        r.name
    );
    d.description = format!("The {kind} {} is running below its desired size.", r.name);
    d.recommendation =
        "Look at its pods (crash loops, pending, image pulls) and their events.".into();
    d.evidence = format!("replicas_unavailable = {unavailable:.0}, desired = {desired:.0}");
    out.push(d);
}

fn pvc(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let severity = match r.status.as_str() {
        "Pending" => Severity::Warning,
        "Lost" => Severity::Critical,
        _ => return,
    };
    let mut d = Detection::on(r, "pvc-unbound", severity, Category::Reliability);
    d.title = format!("volume claim {} is {}", r.name, r.status);
    d.description = format!(
        "The claim {} is {}: the pods that mount it cannot start.",
        r.name, r.status
    );
    d.recommendation = "Check its storage class and provisioner; a Lost claim's volume is gone \
                        and needs restoring from backup."
        .into();
    d.evidence = format!("phase {}", r.status);
    out.push(d);
}

/// Failed tasks of a PBS datastore within 24 h from which a failing GC, prune or sync job is
/// critical.
const PBS_REPEATED_FAILURES: f64 = 3.0;

fn pbs_jobs(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let failed_tasks = latest_value(r, "tasks_failed_24h").unwrap_or(0.0);
    for (metric, l) in &r.latest {
        let Some(job) = metric
            .strip_prefix("job_last_ok{job=\"")
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

/// Failed runs in a row from which a replication job is critical.
const REPLICATION_REPEATED_FAILURES: f64 = 3.0;

fn replication(r: &ResourceRecord, out: &mut Vec<Detection>) {
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

/// A node its cluster reports offline (PVE's `/cluster/status`): down, fenced or cut off.
fn node_offline(now_ms: i64, r: &ResourceRecord, out: &mut Vec<Detection>) {
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

/// A disk whose SMART self-assessment failed (PVE reports health `FAILED`).
fn disk_health(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status != "failing" {
        return;
    }
    let mut d = Detection::on(r, "disk-health", Severity::Critical, Category::Reliability);
    let model = text(r, "model").unwrap_or("disk");
    d.title = format!("{}: SMART health check failed", r.name);
    d.description = format!(
        "The {model} {} failed its SMART self-assessment: the drive predicts its own failure.",
        r.name
    );
    d.recommendation = "Replace the disk now; check that its pool or array is redundant and \
                        that recent backups of what it holds exist."
        .into();
    d.evidence = format!("SMART health = {}", text(r, "health").unwrap_or("FAILED"));
    out.push(d);
}

fn disk(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(left) = r.latest.get("disk_wearout_pct").map(|l| l.value) else {
        return;
    };
    if left >= t.wearout_min_pct {
        return;
    }
    let severity = if left < t.wearout_min_pct / 2.0 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = Detection::on(r, "disk-wearout", severity, Category::Reliability);
    d.title = format!("{}: {left:.0} % of SSD life left", r.name);
    d.description = format!(
        "The SSD {} reports {left:.0} % of its rated write endurance left.",
        r.name
    );
    d.recommendation = "Plan its replacement; move write-heavy guests off it meanwhile.".into();
    d.evidence = format!("disk_wearout_pct = {left:.0} (< {:.0})", t.wearout_min_pct);
    out.push(d);
}

const GIB: f64 = 1_073_741_824.0;

/// The latest value of `metric`.
fn latest_value(r: &ResourceRecord, metric: &str) -> Option<f64> {
    r.latest.get(metric).map(|l| l.value)
}

/// The members of the labelled family `metric{label="…"}` as (label value, value, sample
/// time), from the newest reading only: a member that is no longer reported (a filesystem
/// unmounted, a certificate file removed) keeps its last sample in `latest` for ever, and
/// must not raise findings from there. One reading sends all members with one timestamp.
fn newest_family<'a>(r: &'a ResourceRecord, metric: &str, label: &str) -> Vec<(&'a str, f64, i64)> {
    let prefix = format!("{metric}{{{label}=\"");
    let members: Vec<(&str, f64, i64)> = r
        .latest
        .iter()
        .filter_map(|(m, l)| {
            let v = m.strip_prefix(prefix.as_str())?.strip_suffix("\"}")?;
            Some((v, l.value, l.ts_ms))
        })
        .collect();
    let newest = members.iter().map(|m| m.2).max().unwrap_or(0);
    members.into_iter().filter(|m| m.2 == newest).collect()
}

/// One filesystem of a guest or a host, as the disk rules see it.
struct Filesystem<'a> {
    /// Mount point (`/` for a container's root disk; `C:` on Windows).
    mount: &'a str,
    /// The metric the percentage came from, for the evidence.
    metric: String,
    pct: f64,
    used: Option<f64>,
    total: Option<f64>,
}

impl Filesystem<'_> {
    fn evidence(&self) -> String {
        match (self.used, self.total) {
            (Some(u), Some(t)) => format!(
                "{} = {:.1} % ({:.1} of {:.1} GiB)",
                self.metric,
                self.pct,
                u / GIB,
                t / GIB
            ),
            _ => format!("{} = {:.1} %", self.metric, self.pct),
        }
    }
}

/// A guest's filesystems: a container's root disk (`disk_used_pct`, from PVE) and what a VM's
/// guest agent reports (`guest_fs_used_pct{mountpoint="…"}`, newest reading only).
fn guest_filesystems(r: &ResourceRecord) -> Vec<Filesystem<'_>> {
    let mut out = Vec::new();
    if let Some(pct) = latest_value(r, "disk_used_pct") {
        out.push(Filesystem {
            mount: "/",
            metric: "disk_used_pct".into(),
            pct,
            used: latest_value(r, "disk_used_bytes"),
            total: latest_value(r, "disk_total_bytes"),
        });
    }
    for (mount, pct, _) in newest_family(r, "guest_fs_used_pct", "mountpoint") {
        let labelled = |m: &str| latest_value(r, &format!("{m}{{mountpoint=\"{mount}\"}}"));
        out.push(Filesystem {
            mount,
            metric: format!("guest_fs_used_pct{{mountpoint=\"{mount}\"}}"),
            pct,
            used: labelled("guest_fs_used_bytes"),
            total: labelled("guest_fs_total_bytes"),
        });
    }
    out
}

/// The VMID of a guest: its `vmid` attribute, else the end of its id (`lxc:c/104`).
fn vmid(r: &ResourceRecord) -> String {
    r.attrs
        .get("vmid")
        .and_then(serde_json::Value::as_i64)
        .map_or_else(
            || r.id.rsplit('/').next().unwrap_or_default().to_owned(),
            |v| v.to_string(),
        )
}

/// Guest disk usage: the fullest filesystem of a VM (from its guest agent) or a container's
/// root disk, against `guest_disk_watch` and `guest_disk`. Read from the latest reading, not
/// held over a window: disk usage moves slowly, the collector reads VMs' filesystems only
/// every few minutes (too sparse for a 10-minute window), and a full disk is a problem from
/// its first reading.
fn guest_disk(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let mut fs = guest_filesystems(r);
    fs.sort_by(|a, b| b.pct.total_cmp(&a.pct));
    let Some(worst) = fs.first() else {
        return;
    };
    let severity = match level(worst.pct, t.guest_disk) {
        Some(sev) => sev,
        None if worst.pct >= t.guest_disk_watch => Severity::Watch,
        None => return,
    };
    let container = r.kind == "lxc";
    let what = if container { "container" } else { "VM" };
    let id = vmid(r);
    let mut d = Detection::on(r, "guest-disk", severity, Category::Capacity);
    d.title = format!("{}: {} is {:.0} % full", r.name, worst.mount, worst.pct);
    let size = match (worst.used, worst.total) {
        (Some(u), Some(t)) => format!(" ({:.1} of {:.1} GiB used)", u / GIB, t / GIB),
        _ => String::new(),
    };
    d.description = format!(
        "The filesystem {} of {what} {id} ({}) is {:.1} % full{size}; writes inside the guest \
         fail once it is full.",
        worst.mount, r.name, worst.pct
    );
    // How much to grow for the fullest filesystem to drop just under the watch level.
    let target = (t.guest_disk_watch - 5.0).max(10.0) / 100.0;
    let grow = match (worst.used, worst.total) {
        (Some(u), Some(total)) => ((u / target - total) / GIB).ceil().max(1.0),
        _ => 8.0,
    };
    d.recommendation = if container {
        format!(
            "Grow the container's root disk with `pct resize {id} rootfs +{grow:.0}G`, or free \
             space inside it (logs, package caches, old data)."
        )
    } else {
        format!(
            "Free space inside the guest (logs, package caches, old data), or grow the virtual \
             disk that holds {} with `qm disk resize {id} <disk> +{grow:.0}G` (e.g. scsi0) and \
             then the partition and filesystem inside the guest.",
            worst.mount
        )
    };
    let over: Vec<String> = fs
        .iter()
        .filter(|f| f.pct >= t.guest_disk_watch)
        .map(Filesystem::evidence)
        .collect();
    d.evidence = format!(
        "{} (watch {:.0} %, warning {:.0} %, critical {:.0} %)",
        over.join("; "),
        t.guest_disk_watch,
        t.guest_disk.warning,
        t.guest_disk.critical
    );
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
fn storage_mounts(resources: &[ResourceRecord]) -> BTreeMap<&str, Vec<(String, bool)>> {
    let mut out: BTreeMap<&str, Vec<(String, bool)>> = BTreeMap::new();
    for r in resources {
        let Some(node) = r.parent.as_deref().filter(|p| p.starts_with("node:")) else {
            continue;
        };
        if r.kind != "storage" || latest_value(r, "storage_used_pct").is_none() {
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
fn host_fs(
    t: &Thresholds,
    r: &ResourceRecord,
    watched: &[(String, bool)],
    out: &mut Vec<Detection>,
) {
    for (mount, pct, _) in newest_family(r, "fs_used_pct", "mount") {
        let Some(severity) = level(pct, t.host_fs) else {
            continue;
        };
        if watched_by_storage(mount, watched) {
            continue;
        }
        let labelled = |m: &str| latest_value(r, &format!("{m}{{mount=\"{mount}\"}}"));
        let fs = Filesystem {
            mount,
            metric: format!("fs_used_pct{{mount=\"{mount}\"}}"),
            pct,
            used: labelled("fs_used_bytes"),
            total: labelled("fs_total_bytes"),
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

/// Disk temperature from SMART (`disk_temp_celsius`), against `nvme_temp_c` for NVMe drives
/// and `disk_temp_c` for the rest. The latest reading counts: the collector reads SMART every
/// few minutes, and a drive's temperature changes slowly (its thermal mass smooths out
/// seconds-long spikes), so one reading over the limit already means minutes over it.
fn disk_temperature(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(temp) = latest_value(r, "disk_temp_celsius") else {
        return;
    };
    let nvme = text(r, "type") == Some("nvme") || r.name.starts_with("/dev/nvme");
    let (limits, class) = if nvme {
        (t.nvme_temp_c, "NVMe")
    } else {
        (t.disk_temp_c, "disk")
    };
    let Some(severity) = level(temp, limits) else {
        return;
    };
    let (which, at) = if severity == Severity::Critical {
        ("critical", limits.critical)
    } else {
        ("warning", limits.warning)
    };
    let mut d = Detection::on(r, "disk-temperature", severity, Category::Reliability);
    let node = d.node.clone();
    d.title = format!("{}: {temp:.0} °C", r.name);
    let model = text(r, "model")
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    d.description = format!(
        "The {class} {}{model} reports {temp:.0} °C, at or above the {which} level of \
         {at:.0} °C; hot drives wear out faster, throttle and fail earlier.",
        r.name
    );
    d.recommendation = format!(
        "Check the cooling of {}: fans, airflow and dust filters, drive spacing, room \
         temperature. Move heavy I/O off the drive until it is back under {:.0} °C.",
        node.as_deref().unwrap_or("its host"),
        limits.warning
    );
    d.evidence = format!(
        "disk_temp_celsius = {temp:.0} ({class} levels: warning {:.0} °C, critical {:.0} °C)",
        limits.warning, limits.critical
    );
    out.push(d);
}

/// A duration in the largest unit that fits: days, hours or minutes.
fn span(secs: f64) -> String {
    let s = secs.abs();
    let (n, unit) = if s >= 86_400.0 {
        (s / 86_400.0, "day")
    } else if s >= 3600.0 {
        (s / 3600.0, "hour")
    } else {
        (s / 60.0, "minute")
    };
    let n = n.floor();
    if n == 1.0 {
        format!("1 {unit}")
    } else {
        format!("{n:.0} {unit}s")
    }
}

/// What to do about a certificate file of a Proxmox node, by its name.
fn renew_advice(file: &str) -> &'static str {
    match file {
        "pveproxy-ssl.pem" => {
            "Renew the API and web GUI certificate: with ACME run `pvenode acme cert renew` \
             (and find out why the daily automatic renewal did not: `journalctl -u \
             pve-daily-update`); a custom certificate must be replaced by uploading a new one \
             (node > System > Certificates)."
        }
        "pve-ssl.pem" => {
            "Renew the node certificate signed by the cluster CA with `pvecm updatecerts \
             --force`, then `systemctl restart pveproxy`."
        }
        "pve-root-ca.pem" => {
            "The cluster CA expires: plan its renewal (Proxmox VE certificate management \
             docs); node certificates it signed stop being trusted with it."
        }
        // Proxmox Backup Server's API and GUI certificate.
        "proxy.pem" => {
            "Renew the Proxmox Backup Server certificate: with ACME run `proxmox-backup-manager \
             acme cert order`, a self-signed one is regenerated by `proxmox-backup-manager cert \
             update --force`; then `systemctl reload proxmox-backup-proxy`."
        }
        _ => "Renew or replace the certificate before it expires.",
    }
}

/// Certificates expiring soon (`cert_expires_in_seconds{file="…"}`, any resource kind):
/// warning within `cert_warning_days`, critical within `cert_critical_days` or expired. The
/// collector reads certificates rarely (they change rarely) and sends the time left at each
/// run; the time left now is counted down from when the sample was taken, so it stays exact
/// between readings. One finding per resource, for its certificate expiring first.
fn certificates(now_ms: i64, t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let mut expiring: Vec<(&str, f64)> = newest_family(r, "cert_expires_in_seconds", "file")
        .into_iter()
        .map(|(file, left, ts)| (file, left - (now_ms - ts) as f64 / 1000.0))
        .filter(|(_, left)| *left < t.cert_warning_days * 86_400.0)
        .collect();
    expiring.sort_by(|a, b| a.1.total_cmp(&b.1));
    let Some(&(file, left)) = expiring.first() else {
        return;
    };
    let severity = if left < t.cert_critical_days * 86_400.0 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = Detection::on(r, "certificate-expiry", severity, Category::Security);
    let when = if left <= 0.0 {
        format!("expired {} ago", span(left))
    } else {
        format!("expires in {}", span(left))
    };
    d.title = format!("{}: certificate {file} {when}", r.name);
    d.description = format!(
        "The certificate {file} of {} {when}; TLS clients (browsers, API clients, other \
         cluster nodes) reject an expired certificate.",
        r.name
    );
    d.recommendation = renew_advice(file).into();
    let all: Vec<String> = expiring
        .iter()
        .map(|(f, l)| format!("{f}: {:.1} days left", l / 86_400.0))
        .collect();
    d.evidence = format!(
        "cert_expires_in_seconds: {} (warning under {:.0} days, critical under {:.0})",
        all.join("; "),
        t.cert_warning_days,
        t.cert_critical_days
    );
    out.push(d);
}

/// Pending package updates of a Proxmox VE node (`updates_pending`, the entries of
/// `/nodes/{node}/apt/update`): info, one finding per node with the count. A node without
/// pending updates is silent. The API lists packages, not whether an update fixes a security
/// issue, so the finding says how to see that.
fn updates_pending(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(n) = latest_value(r, "updates_pending").filter(|n| *n >= 1.0) else {
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
fn failed_tasks(fleet: &Fleet<'_>, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let unattributed = latest_value(r, "backup_failed_unattributed_24h").unwrap_or(0.0);
    if unattributed >= 1.0 {
        out.push(failed_backup_job(r, unattributed));
    }
    let Some(failed) = latest_value(r, "tasks_failed_24h") else {
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

/// Failed backup jobs of a node that name no guest (`backup_failed_unattributed_24h`: a
/// job that failed before it started any guest, or whose log could not be read): warning, as
/// a failed backup is; the guests' `backup-age` escalates if it goes on.
fn failed_backup_job(r: &ResourceRecord, n: f64) -> Detection {
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

/// A Kubernetes node's pressure conditions (the collector's `memory_pressure`,
/// `disk_pressure`, `pid_pressure` attributes): warning, one finding per node naming each
/// condition. The kubelet is evicting pods or refusing new ones, but the node still serves. A
/// node that is not Ready has its own critical finding, which says it all.
fn k8s_pressure(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status != "Ready" {
        return;
    }
    let on: Vec<(&str, &str)> = [
        ("memory_pressure", "MemoryPressure"),
        ("disk_pressure", "DiskPressure"),
        ("pid_pressure", "PIDPressure"),
    ]
    .into_iter()
    .filter(|(attr, _)| r.attrs.get(*attr) == Some(&serde_json::Value::Bool(true)))
    .collect();
    if on.is_empty() {
        return;
    }
    let names: Vec<&str> = on.iter().map(|(_, c)| *c).collect();
    let mut d = Detection::on(
        r,
        "k8s-node-pressure",
        Severity::Warning,
        Category::Reliability,
    );
    d.title = format!("Kubernetes node {} under {}", r.name, names.join(", "));
    d.description = format!(
        "The kubelet on {} reports {}: it evicts pods to reclaim what runs short and admits no \
         new pods that need it.",
        r.name,
        names.join(" and ")
    );
    let mut advice = Vec::new();
    for (attr, _) in &on {
        advice.push(match *attr {
            "memory_pressure" => format!(
                "Memory: find the biggest consumers with `kubectl top pods -A --sort-by=memory` \
                 (on {}), set memory requests and limits so the scheduler places pods by what \
                 they use, or add memory or nodes.",
                r.name
            ),
            "disk_pressure" => "Disk: free the kubelet's filesystems (unused images with \
                                `crictl rmi --prune`, container logs, emptyDir volumes); check \
                                log rotation and the image garbage collection thresholds."
                .to_owned(),
            _ => "PIDs: find the process that forks or leaks threads (`ps -eLf | wc -l`, by \
                  container) and set a pod PID limit (`podPidsLimit`)."
                .to_owned(),
        });
    }
    d.recommendation = advice.join(" ");
    let mut evidence: Vec<String> = names.iter().map(|c| format!("{c} = True")).collect();
    if let Some(w) = text(r, "last_warning") {
        evidence.push(format!("last warning: {w}"));
    }
    d.evidence = evidence.join("; ");
    out.push(d);
}

/// Warning events within an hour on a cluster that no other finding explains, from which they
/// are a storm: watch, and warning from [`WARNING_STORM_WARNING`].
const WARNING_STORM_WATCH: f64 = 100.0;
const WARNING_STORM_WARNING: f64 = 500.0;
/// Objects named in a storm's evidence.
const STORM_OBJECTS: usize = 3;

/// Kubernetes Warning event storms: a cluster's `warning_events_1h` less the warnings of the
/// objects (pods, nodes, workloads, claims) that already have a finding, at or above
/// [`WARNING_STORM_WATCH`]. The evidence names the objects with the most warnings and their
/// latest one. Runs after the other rules, over their findings.
fn warning_storms(resources: &[ResourceRecord], out: &mut Vec<Detection>) {
    const METRIC: &str = "warning_events_1h";
    let has_finding: HashSet<&str> = out.iter().map(|d| d.resource_id.as_str()).collect();
    // By cluster name, its objects with warnings: (count, sample time, object).
    let mut clusters: HashMap<&str, Vec<(f64, i64, &ResourceRecord)>> = HashMap::new();
    for r in resources {
        if !matches!(r.kind.as_str(), "pod" | "k8s-node" | "k8s-workload" | "pvc") {
            continue;
        }
        let Some(l) = r.latest.get(METRIC).filter(|l| l.value > 0.0) else {
            continue;
        };
        if let Some(cluster) =
            r.id.split_once(':')
                .and_then(|(_, rest)| rest.split('/').next())
        {
            clusters
                .entry(cluster)
                .or_default()
                .push((l.value, l.ts_ms, r));
        }
    }
    let mut found = Vec::new();
    for r in resources.iter().filter(|r| r.kind == "k8s-cluster") {
        let Some(sum) = r.latest.get(METRIC) else {
            continue;
        };
        let total = sum.value;
        // An object whose warnings aged out is no longer sent: its last count is older than
        // the cluster's, which every run sends.
        let current = clusters
            .remove(r.name.as_str())
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.1 >= sum.ts_ms);
        let (mut explained, mut objects) = (0.0, Vec::new());
        for (n, _, o) in current {
            if has_finding.contains(o.id.as_str()) {
                explained += n;
            } else {
                objects.push((n, o));
            }
        }
        let rest = total - explained;
        let severity = if rest >= WARNING_STORM_WARNING {
            Severity::Warning
        } else if rest >= WARNING_STORM_WATCH {
            Severity::Watch
        } else {
            continue;
        };
        objects.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let mut d = Detection::on(r, "k8s-warning-storm", severity, Category::Reliability);
        d.title = format!(
            "Kubernetes cluster {}: {rest:.0} warning events in the last hour",
            r.name
        );
        d.description = format!(
            "The cluster {} recorded {total:.0} Warning events in the last hour, {rest:.0} of them \
             about objects no other finding covers: something keeps failing (mounts, probes, \
             scheduling, DNS, image pulls) without yet breaking a workload.",
            r.name
        );
        d.recommendation = "Group the warnings by reason with `kubectl get events -A \
                            --field-selector type=Warning --sort-by=.lastTimestamp`; the \
                            objects in the evidence have the most. Fix the most frequent \
                            reason first: one cause usually produces most of a storm."
            .into();
        let top: Vec<String> = objects
            .iter()
            .take(STORM_OBJECTS)
            .map(|(n, o)| match text(o, "last_warning") {
                Some(w) => format!("{} {n:.0} ({w})", o.id),
                None => format!("{} {n:.0}", o.id),
            })
            .collect();
        let mut evidence = format!(
            "warning_events_1h = {total:.0}, {explained:.0} on objects with their own finding \
             (watch from {WARNING_STORM_WATCH:.0}, warning from {WARNING_STORM_WARNING:.0})"
        );
        if !top.is_empty() {
            evidence.push_str(&format!("; most: {}", top.join("; ")));
        } else if let Some(w) = text(r, "last_warning") {
            evidence.push_str(&format!("; latest: {w}"));
        }
        d.evidence = evidence;
        found.push(d);
    }
    out.extend(found);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LatestSample;

    const NOW: i64 = 1_800_000_000_000;

    fn record(id: &str, status: &str) -> ResourceRecord {
        let (kind, name) = id.split_once(':').unwrap();
        ResourceRecord {
            id: id.into(),
            kind: kind.into(),
            name: name.rsplit('/').next().unwrap().into(),
            status: status.into(),
            ..ResourceRecord::default()
        }
    }

    fn latest(r: &mut ResourceRecord, metric: &str, value: f64) {
        r.latest
            .insert(metric.into(), LatestSample { ts_ms: NOW, value });
    }

    /// A series of `minutes` one-minute samples ending now.
    fn series(s: &mut Snapshot, id: &str, metric: &str, minutes: i64, f: impl Fn(i64) -> f64) {
        let points = (0..=minutes)
            .map(|m| (NOW - (minutes - m) * 60_000, f(m)))
            .collect();
        s.history.insert((id.into(), metric.into()), points);
    }

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
            "storage_used_pct",
            30,
            |m| 88.0 + m as f64 * 0.1,
        );
        // One sample over 90 % among 85 % ones is not a sustained 90 %.
        series(&mut s, "storage:pve1/spiky", "storage_used_pct", 30, |m| {
            if m == 29 { 95.0 } else { 85.0 }
        });
        // Five minutes of history cannot show ten minutes held.
        series(&mut s, "storage:pve1/new", "storage_used_pct", 5, |_| 99.0);
        series(
            &mut s,
            "pbs-datastore:pbs1/store1",
            "datastore_used_pct",
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
    fn node_cpu_and_memory() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![record("node:pve1", "online")],
            ..Snapshot::default()
        };
        series(&mut s, "node:pve1", "cpu_pct", 20, |_| 80.0);
        series(&mut s, "node:pve1", "mem_used_pct", 20, |m| {
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
    fn backups_pods_and_disks_from_their_latest_state() {
        let mut old = record("lxc:demo/104", "running");
        latest(
            &mut old,
            "backup_last_age_seconds{storage=\"pbs\"}",
            4.0 * 86_400.0,
        );
        let mut fresh_elsewhere = record("vm:demo/100", "running");
        latest(
            &mut fresh_elsewhere,
            "backup_last_age_seconds{storage=\"pbs\"}",
            5.0 * 86_400.0,
        );
        latest(
            &mut fresh_elsewhere,
            "backup_last_age_seconds{storage=\"nfs\"}",
            3600.0,
        );
        let mut failing = record("vm:demo/101", "running");
        latest(
            &mut failing,
            "backup_last_age_seconds{storage=\"pbs\"}",
            3600.0,
        );
        latest(&mut failing, "backup_failed_24h", 1.0);
        let mut crash = record("pod:k/shop/web-1", "CrashLoopBackOff");
        latest(&mut crash, "restarts", 7.0);
        crash
            .attrs
            .insert("last_termination_reason".into(), "OOMKilled".into());
        let running = record("pod:k/shop/web-2", "Running");
        let mut worn = record("disk:pve1/sdb", "healthy");
        latest(&mut worn, "disk_wearout_pct", 18.0);
        let mut unknown = record("disk:pve1/sda", "healthy");
        unknown
            .attrs
            .insert("wearout".into(), serde_json::Value::Null);
        let s = Snapshot {
            now_ms: NOW,
            resources: vec![old, fresh_elsewhere, failing, crash, running, worn, unknown],
            ..Snapshot::default()
        };
        let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
        let keys: Vec<(&str, &str)> = found
            .iter()
            .map(|d| (d.resource_id.as_str(), d.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("lxc:demo/104", "backup-age"),
                ("vm:demo/101", "backup-failed"),
                ("pod:k/shop/web-1", "pod-crashloop"),
                ("disk:pve1/sdb", "disk-wearout"),
            ]
        );
        assert!(found[0].title.contains("96 h"), "{}", found[0].title);
        assert!(found[2].description.contains("OOMKilled"));
        assert_eq!(found[3].severity, Severity::Warning);
    }

    #[test]
    fn kubernetes_pbs_replication_containers_and_guest_memory() {
        let attr = |r: &mut ResourceRecord, k: &str, v: serde_json::Value| {
            r.attrs.insert(k.into(), v);
        };
        let mut pending = record("pod:k/shop/new-1", "Pending");
        attr(&mut pending, "phase", "Pending".into());
        attr(&mut pending, "created_ms", (NOW - 6 * 60_000).into());
        let mut young = record("pod:k/shop/new-2", "Pending");
        attr(&mut young, "phase", "Pending".into());
        attr(&mut young, "created_ms", (NOW - 60_000).into());
        let mut pull = record("pod:k/shop/bad-image", "ImagePullBackOff");
        attr(&mut pull, "phase", "Pending".into());
        attr(
            &mut pull,
            "last_warning",
            "Failed: rpc error: not found".into(),
        );
        let node = record("k8s-node:k/worker-2", "NotReady");
        let ready = record("k8s-node:k/worker-1", "Ready");
        let mut deploy = record("k8s-workload:k/shop/deployment/web", "Degraded");
        attr(&mut deploy, "kind", "deployment".into());
        latest(&mut deploy, "replicas_desired", 3.0);
        latest(&mut deploy, "replicas_unavailable", 1.0);
        let mut job = record("k8s-workload:k/shop/job/backup-1", "Failed");
        attr(&mut job, "failure_reason", "BackoffLimitExceeded".into());
        latest(&mut job, "job_failed", 1.0);
        let lost = record("pvc:k/shop/data", "Lost");
        let bound = record("pvc:k/shop/uploads", "Bound");
        let mut store = record("pbs-datastore:pbs1/store1", "available");
        latest(&mut store, "job_last_ok{job=\"gc\"}", 0.0);
        latest(&mut store, "job_last_ok{job=\"sync/s-offsite\"}", 1.0);
        attr(&mut store, "gc_last_state", "EIO: I/O error".into());
        let mut repl = record("replication:demo/100-0", "failing");
        attr(&mut repl, "error", "exit code 255".into());
        attr(&mut repl, "fail_count", 3.into());
        let mut oom = record("docker:h/worker", "running");
        attr(&mut oom, "oom_killed", true.into());
        let restarting = record("docker:h/flappy", "running");
        let mut vm = record("vm:demo/100", "running");
        vm.attrs.insert("node".into(), "pve1".into());
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![
                pending, young, pull, node, ready, deploy, job, lost, bound, store, repl, oom,
                restarting, vm,
            ],
            ..Snapshot::default()
        };
        series(&mut s, "docker:h/flappy", "restart_count", 50, |m| {
            (m / 10) as f64
        });
        series(&mut s, "vm:demo/100", "mem_used_pct", 15, |_| 90.0);
        let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
        let got: Vec<(&str, &str, Severity)> = found
            .iter()
            .map(|d| (d.resource_id.as_str(), d.key.as_str(), d.severity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("pod:k/shop/new-1", "pod-pending", Severity::Warning),
                ("pod:k/shop/bad-image", "pod-image", Severity::Warning),
                (
                    "k8s-node:k/worker-2",
                    "k8s-node-not-ready",
                    Severity::Critical
                ),
                (
                    "k8s-workload:k/shop/deployment/web",
                    "replicas-unavailable",
                    Severity::Warning
                ),
                (
                    "k8s-workload:k/shop/job/backup-1",
                    "job-failed",
                    Severity::Warning
                ),
                ("pvc:k/shop/data", "pvc-unbound", Severity::Critical),
                (
                    "pbs-datastore:pbs1/store1",
                    "pbs-gc-failed",
                    Severity::Warning
                ),
                (
                    "replication:demo/100-0",
                    "replication-failing",
                    Severity::Critical
                ),
                ("docker:h/worker", "container-oom", Severity::Warning),
                ("docker:h/flappy", "container-restarts", Severity::Warning),
                ("vm:demo/100", "guest-memory", Severity::Critical),
            ]
        );
        assert!(
            found[1].evidence.contains("rpc error"),
            "{}",
            found[1].evidence
        );
        assert!(found[6].evidence.contains("EIO"), "{}", found[6].evidence);
        assert!(
            found[7].evidence.contains("fail_count = 3"),
            "{}",
            found[7].evidence
        );
        assert!(found[9].title.contains("5 times"), "{}", found[9].title);
        assert_eq!(found[10].node.as_deref(), Some("pve1"));
    }

    fn latest_at(r: &mut ResourceRecord, metric: &str, value: f64, ts_ms: i64) {
        r.latest
            .insert(metric.into(), LatestSample { ts_ms, value });
    }

    fn attr(r: &mut ResourceRecord, k: &str, v: impl Into<serde_json::Value>) {
        r.attrs.insert(k.into(), v.into());
    }

    #[test]
    fn pending_updates_are_info_and_a_node_without_any_is_silent() {
        let mut some = record("node:pve1", "online");
        latest(&mut some, "updates_pending", 14.0);
        let mut one = record("node:pve2", "online");
        latest(&mut one, "updates_pending", 1.0);
        let mut none = record("node:pve3", "online");
        latest(&mut none, "updates_pending", 0.0);
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
            latest(&mut r, "tasks_failed_24h", failed);
            r
        };
        let guest = |vmid: u32, node: &str, failed: f64| {
            let mut r = record(&format!("vm:c/{vmid}"), "running");
            attr(&mut r, "node", node);
            latest(&mut r, "backup_failed_24h", failed);
            latest(&mut r, "backup_last_age_seconds{storage=\"pbs\"}", 3600.0);
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
    fn kubernetes_node_pressure_names_each_condition() {
        let node = |name: &str, status: &str, memory: bool, disk: bool, pid: bool| {
            let mut r = record(&format!("k8s-node:k/{name}"), status);
            attr(&mut r, "memory_pressure", memory);
            attr(&mut r, "disk_pressure", disk);
            attr(&mut r, "pid_pressure", pid);
            r
        };
        let mut both = node("w1", "Ready", true, true, false);
        attr(
            &mut both,
            "last_warning",
            "EvictionThresholdMet: Attempting to reclaim memory",
        );
        let resources = vec![
            both,
            node("w2", "Ready", false, false, true),
            node("w3", "Ready", false, false, false),
            // Not Ready says it all.
            node("w4", "NotReady", true, false, false),
        ];
        let found = found(resources, &Thresholds::default());
        let got: Vec<(&str, &str, Severity)> = found
            .iter()
            .map(|d| (d.resource_id.as_str(), d.key.as_str(), d.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("k8s-node:k/w1", "k8s-node-pressure", Severity::Warning),
                ("k8s-node:k/w2", "k8s-node-pressure", Severity::Warning),
                ("k8s-node:k/w4", "k8s-node-not-ready", Severity::Critical),
            ]
        );
        assert_eq!(
            found[0].evidence,
            "MemoryPressure = True; DiskPressure = True; last warning: EvictionThresholdMet: \
             Attempting to reclaim memory"
        );
        assert!(found[0].recommendation.contains("kubectl top pods"));
        assert!(found[0].recommendation.contains("crictl rmi --prune"));
        assert!(
            found[1].title.ends_with("under PIDPressure"),
            "{}",
            found[1].title
        );
        assert!(found[1].recommendation.contains("podPidsLimit"));
    }

    #[test]
    fn a_warning_storm_counts_only_warnings_no_finding_explains() {
        let cluster = |name: &str, warnings: f64| {
            let mut r = record(&format!("k8s-cluster:{name}"), "reachable");
            latest(&mut r, "warning_events_1h", warnings);
            r
        };
        let pod = |id: &str, status: &str, warnings: f64, ts: i64, last: &str| {
            let mut r = record(id, status);
            latest_at(&mut r, "warning_events_1h", warnings, ts);
            attr(&mut r, "last_warning", last);
            r
        };
        let dns = "DNSConfigForming: Nameserver limits were exceeded";
        let resources = vec![
            // 130 unexplained of 400: the crash loop's 270 have their finding.
            cluster("a", 400.0),
            pod(
                "pod:a/shop/crash",
                "CrashLoopBackOff",
                270.0,
                NOW,
                "BackOff: Back-off",
            ),
            pod("pod:a/shop/web-1", "Running", 70.0, NOW, dns),
            pod("pod:a/shop/web-2", "Running", 60.0, NOW, dns),
            // Aged out an hour ago: no longer counted or named.
            pod("pod:a/shop/old", "Running", 900.0, NOW - 3_600_000, dns),
            // 600 on one cluster: warning.
            cluster("b", 600.0),
            pod("pod:b/x/y", "Running", 600.0, NOW, dns),
            // 150, but 100 of them explained: quiet.
            cluster("c", 150.0),
            pod("pod:c/x/crash", "CrashLoopBackOff", 100.0, NOW, "BackOff"),
            cluster("d", 99.0),
        ];
        let found = found(resources, &Thresholds::default());
        let storms = keyed(&found, "k8s-warning-storm");
        assert_eq!(
            storms,
            [
                ("k8s-cluster:a", Severity::Watch),
                ("k8s-cluster:b", Severity::Warning)
            ]
        );
        let a = found
            .iter()
            .find(|d| d.resource_id == "k8s-cluster:a")
            .unwrap();
        assert_eq!(
            a.title,
            "Kubernetes cluster a: 130 warning events in the last hour"
        );
        assert!(
            a.evidence
                .starts_with("warning_events_1h = 400, 270 on objects with their own finding"),
            "{}",
            a.evidence
        );
        assert!(
            a.evidence.contains(&format!(
                "most: pod:a/shop/web-1 70 ({dns}); pod:a/shop/web-2 60"
            )),
            "{}",
            a.evidence
        );
        assert!(!a.evidence.contains("old"), "{}", a.evidence);
    }

    #[test]
    fn crash_loop_evidence_names_the_cause_and_the_advice_follows_it() {
        let crash = |name: &str, reason: Option<&str>, code: Option<i64>| {
            let mut r = record(&format!("pod:k/shop/{name}"), "CrashLoopBackOff");
            attr(&mut r, "namespace", "shop");
            latest(&mut r, "restarts", 9.0);
            if let Some(reason) = reason {
                attr(&mut r, "last_termination_reason", reason);
            }
            if let Some(code) = code {
                attr(&mut r, "last_exit_code", code);
            }
            r
        };
        let found = found(
            vec![
                crash("oom", Some("OOMKilled"), Some(137)),
                crash("error", Some("Error"), Some(1)),
                crash("killed", Some("Error"), Some(137)),
                crash("done", Some("Completed"), Some(0)),
                crash("nocmd", Some("StartError"), Some(128)),
                crash("unknown", None, None),
            ],
            &Thresholds::default(),
        );
        let by = |name: &str| {
            found
                .iter()
                .find(|d| d.resource_id == format!("pod:k/shop/{name}"))
                .unwrap()
        };
        let oom = by("oom");
        assert_eq!(
            oom.evidence,
            "status CrashLoopBackOff, restarts = 9; last termination: OOMKilled (exit code 137)"
        );
        assert!(oom.recommendation.contains("resources.limits.memory"));
        assert!(oom.recommendation.contains("restarting it will not help"));
        let error = by("error");
        assert!(
            error
                .evidence
                .ends_with("last termination: Error (exit code 1)")
        );
        assert!(
            error
                .recommendation
                .contains("`kubectl logs error -n shop --previous`"),
            "{}",
            error.recommendation
        );
        assert!(!error.recommendation.contains("memory"));
        assert!(by("killed").recommendation.contains("liveness probe"));
        assert!(by("done").recommendation.contains("restartPolicy"));
        assert!(by("nocmd").recommendation.contains("entrypoint"));
        assert!(
            by("unknown")
                .evidence
                .ends_with("last termination: unknown")
        );
    }

    #[test]
    fn severity_policy_escalates_what_puts_data_or_service_at_risk() {
        let t = Thresholds::default();
        let mut resources = Vec::new();
        // Backups: 3 days old is a warning, 5 days critical.
        for (vmid, days) in [(100, 3.0), (101, 5.0)] {
            let mut g = record(&format!("vm:c/{vmid}"), "running");
            latest(
                &mut g,
                "backup_last_age_seconds{storage=\"pbs\"}",
                days * 86_400.0,
            );
            resources.push(g);
        }
        // PBS: a failed verify is critical at once; GC after repeated failures.
        let mut ds = record("pbs-datastore:pbs/a", "available");
        latest(&mut ds, "job_last_ok{job=\"verify/v1\"}", 0.0);
        latest(&mut ds, "job_last_ok{job=\"gc\"}", 0.0);
        latest(&mut ds, "tasks_failed_24h", 2.0);
        resources.push(ds);
        let mut ds = record("pbs-datastore:pbs/b", "available");
        latest(&mut ds, "job_last_ok{job=\"gc\"}", 0.0);
        latest(&mut ds, "job_last_ok{job=\"sync/s1\"}", 0.0);
        latest(&mut ds, "tasks_failed_24h", 3.0);
        resources.push(ds);
        // Replication: one failure a warning, three in a row critical.
        for (job, fails) in [("100-0", 1), ("101-0", 3)] {
            let mut r = record(&format!("replication:c/{job}"), "failing");
            attr(&mut r, "fail_count", fails);
            resources.push(r);
        }
        // A crash-looping pod whose deployment still serves, and one whose does not.
        for (name, desired, unavailable) in [("web", 3.0, 1.0), ("db", 1.0, 1.0)] {
            let wid = format!("k8s-workload:k/shop/deployment/{name}");
            let mut w = record(&wid, "Degraded");
            latest(&mut w, "replicas_desired", desired);
            latest(&mut w, "replicas_unavailable", unavailable);
            resources.push(w);
            let mut p = record(&format!("pod:k/shop/{name}-1"), "CrashLoopBackOff");
            attr(&mut p, "workload", wid.as_str());
            resources.push(p);
        }
        let f = found(resources, &t);
        let want = [
            ("vm:c/100", "backup-age", Severity::Warning),
            ("vm:c/101", "backup-age", Severity::Critical),
            (
                "pbs-datastore:pbs/a",
                "pbs-verify/v1-failed",
                Severity::Critical,
            ),
            ("pbs-datastore:pbs/a", "pbs-gc-failed", Severity::Warning),
            ("pbs-datastore:pbs/b", "pbs-gc-failed", Severity::Critical),
            (
                "pbs-datastore:pbs/b",
                "pbs-sync/s1-failed",
                Severity::Critical,
            ),
            (
                "replication:c/100-0",
                "replication-failing",
                Severity::Warning,
            ),
            (
                "replication:c/101-0",
                "replication-failing",
                Severity::Critical,
            ),
            ("pod:k/shop/web-1", "pod-crashloop", Severity::Warning),
            (
                "k8s-workload:k/shop/deployment/web",
                "replicas-unavailable",
                Severity::Warning,
            ),
            ("pod:k/shop/db-1", "pod-crashloop", Severity::Critical),
            (
                "k8s-workload:k/shop/deployment/db",
                "replicas-unavailable",
                Severity::Critical,
            ),
        ];
        for (id, key, severity) in want {
            assert_eq!(sev(&f, id, key), Some(severity), "{id} {key}: {f:#?}");
        }
        assert_eq!(f.len(), want.len(), "{f:#?}");
        let db = f
            .iter()
            .find(|d| d.resource_id == "pod:k/shop/db-1")
            .unwrap();
        assert!(
            db.evidence.contains("has no replica available"),
            "{}",
            db.evidence
        );
        let old = f.iter().find(|d| d.resource_id == "vm:c/101").unwrap();
        assert!(
            old.evidence.contains("critical over 345600"),
            "{}",
            old.evidence
        );
    }

    #[test]
    fn a_container_restarting_ten_times_an_hour_is_critical() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![
                record("docker:h/flappy", "running"),
                record("docker:h/dead", "running"),
            ],
            ..Snapshot::default()
        };
        series(&mut s, "docker:h/flappy", "restart_count", 60, |m| {
            (m / 15) as f64
        });
        series(&mut s, "docker:h/dead", "restart_count", 60, |m| {
            (m / 5) as f64
        });
        let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
        assert_eq!(
            sev(&found, "docker:h/flappy", "container-restarts"),
            Some(Severity::Warning)
        );
        assert_eq!(
            sev(&found, "docker:h/dead", "container-restarts"),
            Some(Severity::Critical)
        );
    }

    fn found(resources: Vec<ResourceRecord>, t: &Thresholds) -> Vec<Detection> {
        let s = Snapshot {
            now_ms: NOW,
            resources,
            ..Snapshot::default()
        };
        detect(&s, t, &BTreeMap::new())
    }

    #[test]
    fn a_backup_job_that_names_no_guest_is_a_backup_finding_not_a_failed_task() {
        let mut r = record("node:pve1", "online");
        latest(&mut r, "tasks_failed_24h", 2.0);
        latest(&mut r, "backup_failed_unattributed_24h", 1.0);
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

    /// The resources and severities of the findings with `key`.
    fn keyed<'a>(found: &'a [Detection], key: &str) -> Vec<(&'a str, Severity)> {
        found
            .iter()
            .filter(|d| d.key == key)
            .map(|d| (d.resource_id.as_str(), d.severity))
            .collect()
    }

    fn sev(found: &[Detection], id: &str, key: &str) -> Option<Severity> {
        found
            .iter()
            .find(|d| d.resource_id == id && d.key == key)
            .map(|d| d.severity)
    }

    const GIB: f64 = 1_073_741_824.0;

    /// A container whose root disk is `pct` % of 8 GiB full.
    fn container(vmid: u32, pct: f64) -> ResourceRecord {
        let mut r = record(&format!("lxc:c/{vmid}"), "running");
        r.attrs.insert("vmid".into(), vmid.into());
        latest(&mut r, "disk_used_pct", pct);
        latest(&mut r, "disk_used_bytes", 8.0 * GIB * pct / 100.0);
        latest(&mut r, "disk_total_bytes", 8.0 * GIB);
        r
    }

    fn vm_fs(r: &mut ResourceRecord, mount: &str, used_gib: f64, total_gib: f64, ts: i64) {
        let m = |name: &str| format!("{name}{{mountpoint=\"{mount}\"}}");
        latest_at(r, &m("guest_fs_used_bytes"), used_gib * GIB, ts);
        latest_at(r, &m("guest_fs_total_bytes"), total_gib * GIB, ts);
        latest_at(r, &m("guest_fs_used_pct"), used_gib / total_gib * 100.0, ts);
    }

    #[test]
    fn offline_nodes_and_failing_disks_are_critical() {
        let mut pve3 = record("node:pve3", "offline");
        pve3.updated_at_ms = NOW - 4 * 60_000;
        let mut sdb = record("disk:pve1/S3Z9NB0K", "failing");
        sdb.name = "/dev/sdb".into();
        sdb.attrs.insert("health".into(), "FAILED".into());
        let list = found(
            vec![
                pve3,
                record("node:pve1", "online"),
                sdb,
                record("disk:pve1/S3Z9NB0J", "healthy"),
            ],
            &Thresholds::default(),
        );
        assert_eq!(list.len(), 2, "{list:#?}");
        assert_eq!(
            sev(&list, "node:pve3", "node-offline"),
            Some(Severity::Critical)
        );
        assert_eq!(
            sev(&list, "disk:pve1/S3Z9NB0K", "disk-health"),
            Some(Severity::Critical)
        );
        let node = list.iter().find(|d| d.key == "node-offline").unwrap();
        assert!(node.evidence.contains("4 min ago"), "{}", node.evidence);
    }

    #[test]
    fn guest_disk_levels_from_the_latest_reading() {
        let t = Thresholds::default();
        // Edges: watch from 75 %, warning from 85 %, critical from 92 %.
        let edges = [
            (74.9, None),
            (75.0, Some(Severity::Watch)),
            (84.9, Some(Severity::Watch)),
            (85.0, Some(Severity::Warning)),
            (91.9, Some(Severity::Warning)),
            (92.0, Some(Severity::Critical)),
        ];
        for (pct, want) in edges {
            let f = found(vec![container(104, pct)], &t);
            assert_eq!(sev(&f, "lxc:c/104", "guest-disk"), want, "{pct} %");
        }

        let f = found(vec![container(104, 95.0)], &t);
        let d = &f[0];
        assert_eq!(d.category, Category::Capacity);
        assert_eq!(d.title, "104: / is 95 % full");
        assert!(
            d.evidence
                .starts_with("disk_used_pct = 95.0 % (7.6 of 8.0 GiB)"),
            "{}",
            d.evidence
        );
        // 7.6 GiB at 70 % needs 10.9 GiB: 3 more.
        assert!(
            d.recommendation.contains("`pct resize 104 rootfs +3G`"),
            "{}",
            d.recommendation
        );

        // A VM: its fullest filesystem counts, all over the watch level are in the evidence.
        let mut vm = record("vm:c/100", "running");
        vm.attrs.insert("vmid".into(), 100.into());
        vm_fs(&mut vm, "/", 40.0, 50.0, NOW);
        vm_fs(&mut vm, "/var", 8.8, 10.0, NOW);
        vm_fs(&mut vm, "/boot/efi", 0.1, 0.5, NOW);
        // Unmounted since: its last sample is older than the newest reading and ignored.
        let mut gone = record("vm:c/101", "running");
        vm_fs(&mut gone, "/mnt/old", 9.9, 10.0, NOW - 600_000);
        vm_fs(&mut gone, "/", 1.0, 10.0, NOW);
        let healthy = container(105, 40.0);
        let f = found(vec![vm, gone, healthy], &t);
        assert_eq!(f.len(), 1, "{f:?}");
        let d = &f[0];
        assert_eq!(
            (d.resource_id.as_str(), d.severity),
            ("vm:c/100", Severity::Warning)
        );
        assert_eq!(d.title, "100: /var is 88 % full");
        assert_eq!(
            d.evidence,
            "guest_fs_used_pct{mountpoint=\"/var\"} = 88.0 % (8.8 of 10.0 GiB); \
             guest_fs_used_pct{mountpoint=\"/\"} = 80.0 % (40.0 of 50.0 GiB) \
             (watch 75 %, warning 85 %, critical 92 %)"
        );
        assert!(
            d.recommendation.contains("`qm disk resize 100 <disk> +3G`"),
            "{}",
            d.recommendation
        );

        // Per-resource thresholds apply.
        let mut loose = t.clone();
        loose.guest_disk_watch = 96.0;
        loose.guest_disk = Levels {
            warning: 97.0,
            critical: 99.0,
        };
        let s = Snapshot {
            now_ms: NOW,
            resources: vec![container(104, 95.0), container(106, 95.0)],
            ..Snapshot::default()
        };
        let overrides = BTreeMap::from([("lxc:c/104".to_owned(), loose)]);
        let f = detect(&s, &t, &overrides);
        let ids: Vec<&str> = f.iter().map(|d| d.resource_id.as_str()).collect();
        assert_eq!(ids, vec!["lxc:c/106"]);
    }

    #[test]
    fn disk_temperature_has_its_own_levels_for_nvme() {
        let t = Thresholds::default();
        let disk = |id: &str, kind: &str, temp: Option<f64>| {
            let mut r = record(id, "healthy");
            r.parent = Some("node:pve1".into());
            r.attrs.insert("type".into(), kind.into());
            r.attrs.insert("model".into(), "ST4000VN008".into());
            if let Some(v) = temp {
                latest(&mut r, "disk_temp_celsius", v);
            }
            r
        };
        for (temp, want) in [
            (54.0, None),
            (55.0, Some(Severity::Warning)),
            (64.0, Some(Severity::Warning)),
            (65.0, Some(Severity::Critical)),
        ] {
            let f = found(vec![disk("disk:pve1/Z1", "hdd", Some(temp))], &t);
            assert_eq!(sev(&f, "disk:pve1/Z1", "disk-temperature"), want, "{temp}");
        }
        for (temp, want) in [
            (65.0, None),
            (70.0, Some(Severity::Warning)),
            (80.0, Some(Severity::Critical)),
        ] {
            let f = found(vec![disk("disk:pve1/N1", "nvme", Some(temp))], &t);
            assert_eq!(sev(&f, "disk:pve1/N1", "disk-temperature"), want, "{temp}");
        }
        // Without PVE's type, the device name tells an NVMe drive.
        let mut by_name = disk("disk:pve1/N2", "unknown", Some(65.0));
        by_name.name = "/dev/nvme1n1".into();
        let f = found(vec![by_name, disk("disk:pve1/U", "ssd", None)], &t);
        assert!(f.is_empty(), "{f:?}");

        let f = found(vec![disk("disk:pve1/Z1", "hdd", Some(58.0))], &t);
        let d = &f[0];
        assert_eq!(d.category, Category::Reliability);
        assert_eq!(d.title, "Z1: 58 °C");
        assert_eq!(d.node.as_deref(), Some("pve1"));
        assert!(d.description.contains("(ST4000VN008)"), "{}", d.description);
        assert!(d.recommendation.contains("cooling of pve1"));
        assert_eq!(
            d.evidence,
            "disk_temp_celsius = 58 (disk levels: warning 55 °C, critical 65 °C)"
        );
        // A worn and hot drive: two findings, each under its own key.
        let mut both = disk("disk:pve1/Z2", "ssd", Some(66.0));
        latest(&mut both, "disk_wearout_pct", 5.0);
        let f = found(vec![both], &t);
        let keys: Vec<(&str, Severity)> = f.iter().map(|d| (d.key.as_str(), d.severity)).collect();
        assert_eq!(
            keys,
            vec![
                ("disk-wearout", Severity::Critical),
                ("disk-temperature", Severity::Critical)
            ]
        );
    }

    #[test]
    fn certificates_count_down_from_their_reading() {
        let t = Thresholds::default();
        let day = 86_400.0;
        let node = |name: &str, certs: &[(&str, f64)], read_ms: i64| {
            let mut r = record(&format!("node:{name}"), "online");
            for (file, left) in certs {
                latest_at(
                    &mut r,
                    &format!("cert_expires_in_seconds{{file=\"{file}\"}}"),
                    *left,
                    read_ms,
                );
            }
            r
        };
        let resources = vec![
            // 15 days left two days ago: 13 now.
            node(
                "pve1",
                &[
                    ("pve-ssl.pem", 400.0 * day),
                    ("pveproxy-ssl.pem", 15.0 * day),
                ],
                NOW - 2 * 86_400_000,
            ),
            node("pve2", &[("pveproxy-ssl.pem", -2.5 * day)], NOW),
            // Exactly 14 days is not within 14 days.
            node("pve3", &[("pveproxy-ssl.pem", 14.0 * day)], NOW),
            node("pve4", &[("pve-ssl.pem", 2.9 * day)], NOW),
            // Any kind that reports certificates (a PBS host here).
            node("pbs1", &[("proxy.pem", 10.0 * day)], NOW),
        ];
        let mut gone = node("pve5", &[("pveproxy-ssl.pem", 1.0 * day)], NOW - 7_200_000);
        // The custom certificate was removed since; only the newest reading counts.
        latest(
            &mut gone,
            "cert_expires_in_seconds{file=\"pve-ssl.pem\"}",
            500.0 * day,
        );
        let mut resources = resources;
        resources.push(gone);
        let f = found(resources, &t);
        let got: Vec<(&str, Severity)> = f
            .iter()
            .map(|d| (d.resource_id.as_str(), d.severity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("node:pve1", Severity::Warning),
                ("node:pve2", Severity::Critical),
                ("node:pve4", Severity::Critical),
                ("node:pbs1", Severity::Warning),
            ]
        );
        assert!(
            f.iter()
                .all(|d| d.key == "certificate-expiry" && d.category == Category::Security)
        );
        assert_eq!(
            f[0].title,
            "pve1: certificate pveproxy-ssl.pem expires in 13 days"
        );
        assert_eq!(
            f[0].evidence,
            "cert_expires_in_seconds: pveproxy-ssl.pem: 13.0 days left (warning under 14 days, \
             critical under 3)"
        );
        assert!(f[0].recommendation.contains("pvenode acme cert renew"));
        assert_eq!(
            f[1].title,
            "pve2: certificate pveproxy-ssl.pem expired 2 days ago"
        );
        assert_eq!(
            f[2].title,
            "pve4: certificate pve-ssl.pem expires in 2 days"
        );
        assert!(f[2].recommendation.contains("pvecm updatecerts --force"));
        assert!(f[3].recommendation.contains("proxmox-backup-manager"));
        assert_eq!(span(90.0 * 60.0), "1 hour");
        assert_eq!(span(-125.0), "2 minutes");
    }

    #[test]
    fn a_healthy_fleet_raises_nothing_and_old_settings_take_the_new_defaults() {
        let t = Thresholds::default();
        let mut vm = record("vm:c/100", "running");
        vm_fs(&mut vm, "/", 10.0, 50.0, NOW);
        let mut hdd = record("disk:pve1/Z1", "healthy");
        latest(&mut hdd, "disk_temp_celsius", 38.0);
        let mut node = record("node:pve1", "online");
        latest(
            &mut node,
            "cert_expires_in_seconds{file=\"pve-ssl.pem\"}",
            500.0 * 86_400.0,
        );
        host_mount(&mut node, "/", 84.9, NOW);
        host_mount(&mut node, "/boot/efi", 1.2, NOW);
        let resources = vec![
            container(104, 30.0),
            vm,
            hdd,
            node,
            zfs("pve1", "rpool", "online", &[]),
            ceph_cluster("healthy", "HEALTH_OK", "", [15.0, 15.0, 15.0]),
        ];
        let f = found(resources, &t);
        assert!(f.is_empty(), "{f:?}");

        // Settings stored before these thresholds existed read with their defaults.
        let old: Thresholds = serde_json::from_value(serde_json::json!({
            "window_ms": 600_000,
            "storage_watch": 70.0,
            "wearout_min_pct": 20.0
        }))
        .unwrap();
        assert_eq!(old, t);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["guest_disk_watch"], 75.0);
        assert_eq!(v["guest_disk"]["critical"], 92.0);
        assert_eq!(v["disk_temp_c"]["warning"], 55.0);
        assert_eq!(v["nvme_temp_c"]["warning"], 70.0);
        assert_eq!(v["cert_warning_days"], 14.0);
        assert_eq!(v["cert_critical_days"], 3.0);
        assert_eq!(v["host_fs"]["warning"], 85.0);
        assert_eq!(v["host_fs"]["critical"], 95.0);
    }

    /// A ZFS pool as the PVE collector describes it: status the health in lower case, the
    /// `zpool status` texts for a pool that is not online.
    fn zfs(node: &str, pool: &str, status: &str, detail: &[(&str, &str)]) -> ResourceRecord {
        let mut r = record(&format!("storage:{node}/zfs:{pool}"), status);
        r.name = pool.into();
        r.parent = Some(format!("node:{node}"));
        r.attrs.insert("plugin".into(), "zfs".into());
        r.attrs.insert("pool".into(), pool.into());
        r.attrs
            .insert("health".into(), status.to_ascii_uppercase().into());
        for (k, v) in detail {
            r.attrs.insert((*k).into(), (*v).into());
        }
        latest(&mut r, "storage_used_pct", 40.0);
        r
    }

    /// The cluster's Ceph: status, health, health checks and OSDs (total, up, in).
    fn ceph_cluster(status: &str, health: &str, checks: &str, osds: [f64; 3]) -> ResourceRecord {
        let mut r = record("storage:prod/ceph", status);
        r.attrs.insert("plugin".into(), "ceph".into());
        r.attrs.insert("health".into(), health.into());
        r.attrs.insert("health_checks".into(), checks.into());
        for (m, v) in ["ceph_osds_total", "ceph_osds_up", "ceph_osds_in"]
            .into_iter()
            .zip(osds)
        {
            latest(&mut r, m, v);
        }
        r
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

    /// A filesystem of a host as the host collector reports it (of 100 GiB).
    fn host_mount(r: &mut ResourceRecord, mount: &str, pct: f64, ts: i64) {
        let m = |name: &str| format!("{name}{{mount=\"{mount}\"}}");
        latest_at(r, &m("fs_total_bytes"), 100.0 * GIB, ts);
        latest_at(r, &m("fs_used_bytes"), pct * GIB, ts);
        latest_at(r, &m("fs_used_pct"), pct, ts);
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
            "fs_used_pct{mount=\"/\"} = 91.0 % (91.0 of 100.0 GiB) (warning 85 %, critical 95 %)"
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
        latest(&mut local, "storage_used_pct", 96.0);
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
