//! Threshold heuristics: pure detectors over a [`Snapshot`] (resource state, recent history,
//! `now`). A level must hold over a whole window, not in one sample; a state (a failed job, a
//! crash loop) is read from the latest report. Thresholds come from [`Thresholds`].

use super::finding::{Category, Detection, Severity};
use crate::store::ResourceRecord;
use std::collections::BTreeMap;

/// What the detectors look at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the run happens, ms since the epoch.
    pub now_ms: i64,
    /// Current state of every resource.
    pub resources: Vec<ResourceRecord>,
    /// Recent history, `(resource id, metric)` → `(ms, value)` in time order.
    pub history: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// Days of history of capacity metrics at a coarse step, for forecasts.
    pub trend_history: BTreeMap<(String, String), Vec<(i64, f64)>>,
}

/// A warning and a critical level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Warning at or above this.
    pub warning: f64,
    /// Critical at or above this.
    pub critical: f64,
}

/// Thresholds of the heuristics (DESIGN §3, issue 4's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// How long a level must hold, ms.
    pub window_ms: i64,
    /// Storage used: watch at 70 %, warning 80 %, critical 90 %.
    pub storage_watch: f64,
    /// Storage warning/critical.
    pub storage: Levels,
    /// Node CPU and memory: 75 / 85 %.
    pub node: Levels,
    /// Newest backup older than this is a finding, seconds.
    pub backup_max_age_s: f64,
    /// SMART wear-out (percent of life left) below this.
    pub wearout_min_pct: f64,
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
            backup_max_age_s: 48.0 * 3600.0,
            wearout_min_pct: 20.0,
        }
    }
}

/// Runs every heuristic.
pub fn detect(s: &Snapshot, t: &Thresholds) -> Vec<Detection> {
    let mut out = Vec::new();
    for r in &s.resources {
        match r.kind.as_str() {
            "storage" | "pbs-datastore" => storage(s, t, r, &mut out),
            "node" => node(s, t, r, &mut out),
            "vm" | "lxc" => backup_age(t, r, &mut out),
            "pod" => pod(r, &mut out),
            "disk" => disk(t, r, &mut out),
            _ => {}
        }
    }
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

fn storage(s: &Snapshot, t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let metric = if r.kind == "storage" {
        "storage_used_pct"
    } else {
        "datastore_used_pct"
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
        let mut d = Detection::on(r, "backup-age", Severity::Warning, Category::Backup);
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
            "backup_last_age_seconds = {age:.0} (> {:.0})",
            t.backup_max_age_s
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

fn pod(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status != "CrashLoopBackOff" {
        return;
    }
    let restarts = r.latest.get("restarts").map_or(0.0, |l| l.value);
    let mut d = Detection::on(r, "pod-crashloop", Severity::Warning, Category::Reliability);
    d.title = format!("{} is crash-looping", r.name);
    let last = r
        .attrs
        .get("last_termination_reason")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown");
    d.description = format!(
        "Pod {} keeps restarting ({restarts:.0} restarts; last exit: {last}).",
        r.name
    );
    d.recommendation = "Read the previous container's log (`kubectl logs --previous`) and the \
                        pod's events; fix the crash or its configuration."
        .into();
    d.evidence = format!("status CrashLoopBackOff, restarts = {restarts:.0}");
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
        let found = detect(&s, &Thresholds::default());
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
        let found = detect(&s, &Thresholds::default());
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
        let found = detect(&s, &Thresholds::default());
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
}
