//! Threshold heuristics: pure detectors over a [`Snapshot`] (resource state, recent history,
//! `now`). A level must hold over a whole window, not in one sample; a state (a failed job, a
//! crash loop, a pool's health) is read from the latest report. So are levels that move slowly
//! (guest and host filesystem usage, disk temperature, certificate expiry; see each detector
//! for why one reading is enough). Thresholds come from [`Thresholds`].
//!
//! One file per kind of resource (`storage`, `node`, `guest`, `backup`, `disk`, `docker`, `k8s`,
//! `pbs`, `replication`, and `certificate` for any kind that reports certificates); this file
//! holds the thresholds, the dispatch by kind ([`detect`]) and the helpers the rules share.

mod backup;
mod certificate;
mod disk;
mod docker;
mod guest;
mod k8s;
mod node;
mod pbs;
mod replication;
mod storage;
#[cfg(test)]
mod tests;

use super::snapshot::Snapshot;
use crate::model::ResourceRecord;
use crate::model::finding::{Detection, Severity};
use backup::backup_age;
use certificate::certificates;
use disk::{disk, disk_health, disk_temperature};
use docker::container;
use guest::{guest_disk, guest_memory};
use k8s::{k8s_node, k8s_pressure, pod, pvc, warning_storms, workload};
use node::{failed_tasks, host_fs, node, node_offline, storage_mounts, updates_pending};
use pbs::pbs_jobs;
use replication::replication;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use storage::{ceph, storage, zfs_pool};
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

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
        for r in resources.iter().filter(|r| {
            matches!(
                ResourceKind::from_prefix(&r.kind),
                Some(ResourceKind::Vm | ResourceKind::SystemContainer)
            )
        }) {
            if let Some(n) = latest_value(r, metric::BACKUP_FAILED_24H).filter(|n| *n > 0.0)
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
        match ResourceKind::from_prefix(&r.kind) {
            Some(ResourceKind::Storage) => {
                storage(s, t, r, &mut out);
                zfs_pool(r, &mut out);
                ceph(r, &mut out);
            }
            Some(ResourceKind::PbsDatastore) => {
                storage(s, t, r, &mut out);
                pbs_jobs(r, &mut out);
            }
            Some(ResourceKind::Node) => {
                node_offline(s.now_ms, r, &mut out);
                node(s, t, r, &mut out);
                let watched = watched.get(r.id.as_str()).map_or(&[][..], Vec::as_slice);
                host_fs(t, r, watched, &mut out);
                updates_pending(r, &mut out);
                failed_tasks(&fleet, r, &mut out);
            }
            Some(ResourceKind::Vm | ResourceKind::SystemContainer) => {
                backup_age(t, r, &mut out);
                guest_memory(s, t, r, &mut out);
                guest_disk(t, r, &mut out);
            }
            Some(ResourceKind::Pod) => pod(s.now_ms, &fleet, r, &mut out),
            Some(ResourceKind::PhysicalDisk) => {
                disk_health(r, &mut out);
                disk(t, r, &mut out);
                disk_temperature(t, r, &mut out);
            }
            Some(ResourceKind::AppContainer) => container(s, r, &mut out),
            Some(ResourceKind::K8sNode) => {
                k8s_node(r, &mut out);
                k8s_pressure(r, &mut out);
            }
            Some(ResourceKind::K8sWorkload) => workload(r, &mut out),
            Some(ResourceKind::Pvc) => pvc(r, &mut out),
            Some(ResourceKind::Replication) => replication(r, &mut out),
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
    match ResourceKind::from_prefix(kind)? {
        ResourceKind::Storage => Some(metric::STORAGE_USED_PCT),
        ResourceKind::PbsDatastore => Some(metric::DATASTORE_USED_PCT),
        _ => None,
    }
}

fn text<'a>(r: &'a ResourceRecord, attr: &str) -> Option<&'a str> {
    r.attrs.get(attr).and_then(serde_json::Value::as_str)
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
