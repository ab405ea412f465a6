//! Physical disk rules: failed SMART health, SSD wear-out, temperature.

use super::{Thresholds, latest_value, level, text};
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use warden_shared::metric;

/// A disk whose SMART self-assessment failed (PVE reports health `FAILED`).
pub(super) fn disk_health(r: &ResourceRecord, out: &mut Vec<Detection>) {
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

pub(super) fn disk(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(left) = r.latest.get(metric::DISK_WEAROUT_PCT).map(|l| l.value) else {
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

/// Disk temperature from SMART (`disk_temp_celsius`), against `nvme_temp_c` for NVMe drives
/// and `disk_temp_c` for the rest. The latest reading counts: the collector reads SMART every
/// few minutes, and a drive's temperature changes slowly (its thermal mass smooths out
/// seconds-long spikes), so one reading over the limit already means minutes over it.
pub(super) fn disk_temperature(t: &Thresholds, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let Some(temp) = latest_value(r, metric::DISK_TEMP_CELSIUS) else {
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

#[cfg(test)]
mod tests {
    use super::super::Thresholds;
    use super::super::tests::*;
    use super::*;

    #[test]
    fn disk_temperature_has_its_own_levels_for_nvme() {
        let t = Thresholds::default();
        let disk = |id: &str, kind: &str, temp: Option<f64>| {
            let mut r = record(id, "healthy");
            r.parent = Some("node:pve1".into());
            r.attrs.insert("type".into(), kind.into());
            r.attrs.insert("model".into(), "ST4000VN008".into());
            if let Some(v) = temp {
                latest(&mut r, metric::DISK_TEMP_CELSIUS, v);
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
        latest(&mut both, metric::DISK_WEAROUT_PCT, 5.0);
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
}
