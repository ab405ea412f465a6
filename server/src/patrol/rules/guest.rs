//! Guest rules (VMs and containers): memory held high, full filesystems.

use super::{
    Filesystem, GIB, Thresholds, latest_value, level, minutes, newest_family, sustained_min,
};
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use crate::patrol::snapshot::Snapshot;
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

pub(super) fn guest_memory(
    s: &Snapshot,
    t: &Thresholds,
    r: &ResourceRecord,
    out: &mut Vec<Detection>,
) {
    let Some(v) = sustained_min(s, &r.id, metric::MEM_USED_PCT, t.window_ms) else {
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

/// A guest's filesystems: a container's root disk (`disk_used_pct`, from PVE) and what a VM's
/// guest agent reports (`guest_fs_used_pct{mountpoint="…"}`, newest reading only).
fn guest_filesystems(r: &ResourceRecord) -> Vec<Filesystem<'_>> {
    let mut out = Vec::new();
    if let Some(pct) = latest_value(r, metric::DISK_USED_PCT) {
        out.push(Filesystem {
            mount: "/",
            metric: metric::DISK_USED_PCT.into(),
            pct,
            used: latest_value(r, metric::DISK_USED_BYTES),
            total: latest_value(r, metric::DISK_TOTAL_BYTES),
        });
    }
    for (mount, pct, _) in newest_family(r, metric::GUEST_FS_USED_PCT, "mountpoint") {
        let labelled = |m: &str| latest_value(r, &format!("{m}{{mountpoint=\"{mount}\"}}"));
        out.push(Filesystem {
            mount,
            metric: metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", mount),
            pct,
            used: labelled(metric::GUEST_FS_USED_BYTES),
            total: labelled(metric::GUEST_FS_TOTAL_BYTES),
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
pub(super) fn guest_disk(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
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
    let container = ResourceKind::from_prefix(&r.kind) == Some(ResourceKind::SystemContainer);
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

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::{Levels, Thresholds, detect};
    use super::*;
    use std::collections::BTreeMap;

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
            format!(
                "{} = 88.0 % (8.8 of 10.0 GiB); {} = 80.0 % (40.0 of 50.0 GiB) \
                 (watch 75 %, warning 85 %, critical 92 %)",
                metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/var"),
                metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/")
            )
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
}
