//! The node's physical disks (`/nodes/{node}/disks/list`) with SMART health and wear-out,
//! and their temperature from SMART data, read at its own cadence.

use super::ProxmoxCollector;
use super::api::{num, put};
use super::slow::{Budget, SlowRead, SlowReads};
use crate::collectors::Collected;
use serde::Deserialize;
use tracing::warn;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::canonical;
use warden_shared::telemetry::{Resource, Value};

/// How often each disk's SMART data is read: a `smartctl` run on the node per disk.
const SMART_EVERY_MS: i64 = 5 * 60_000;

#[derive(Deserialize)]
struct DiskEntry {
    devpath: Option<String>,
    serial: Option<String>,
    model: Option<String>,
    health: Option<String>,
    used: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "num")]
    size: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    wearout: Option<f64>,
}

/// `/nodes/{node}/disks/smart` (pve-storage `PVE::Diskmanage::get_smart_data`): ATA drives as
/// `type: "ata"` with the attribute table, NVMe and SAS drives as `type: "text"` with
/// `smartctl`'s text; only `health` when `smartctl` failed.
#[derive(Deserialize)]
struct SmartData {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    attributes: Vec<SmartAttribute>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct SmartAttribute {
    /// The attribute number, as text (`"194"`, `"  9"`).
    #[serde(default, deserialize_with = "num")]
    id: Option<f64>,
    name: Option<String>,
    /// `smartctl`'s raw column, e.g. `38 (Min/Max 20/45)`.
    #[serde(default)]
    raw: serde_json::Value,
}

/// A disk's SMART self-assessment, as PVE passes on `smartctl`'s words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmartHealth {
    /// `PASSED` (ATA, NVMe) or `OK` (SCSI/SAS).
    Passed,
    /// `FAILED!` (smartctl's word for ATA and NVMe, also taken without the `!`), or a
    /// SCSI informational exception naming a failure (`FAILURE PREDICTION THRESHOLD
    /// EXCEEDED`, `... IMPENDING FAILURE ...`).
    Failed,
    /// No verdict: absent, empty, or PVE's `UNKNOWN` (smartctl could not tell).
    Unknown,
    /// A text not in smartctl's vocabulary: unknown too, and worth a log line.
    Unrecognised,
}

/// Reads `health` of `/nodes/{node}/disks/list` (case and surrounding space ignored).
fn smart_health(health: Option<&str>) -> SmartHealth {
    let h = health
        .map(str::trim)
        .unwrap_or_default()
        .to_ascii_uppercase();
    match h.trim_end_matches('!').trim_end() {
        "PASSED" | "OK" => SmartHealth::Passed,
        "FAILED" => SmartHealth::Failed,
        "" | "UNKNOWN" => SmartHealth::Unknown,
        t if t.contains("FAILURE") => SmartHealth::Failed,
        _ => SmartHealth::Unrecognised,
    }
}

/// A drive's temperature from PVE's SMART answer, °C: ATA attribute 194 (the drive's own
/// sensor; `..._x10` variants in tenths), else 190 (airflow); NVMe `Temperature: N Celsius`;
/// SAS `Current Drive Temperature: N C`. 0 and implausible values are a sensor that reports
/// nothing, so unknown.
fn smart_temperature(s: &SmartData) -> Option<f64> {
    let t = if s.kind.as_deref() == Some("ata") {
        [194.0, 190.0].iter().find_map(|id| {
            let a = s.attributes.iter().find(|a| a.id == Some(*id))?;
            let raw = match &a.raw {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(t) => leading_number(t),
                _ => None,
            }?;
            let tenths = a.name.as_deref().is_some_and(|n| n.ends_with("_x10"));
            Some(if tenths { raw / 10.0 } else { raw })
        })
    } else {
        s.text.as_deref().and_then(|text| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                matches!(key.trim(), "Temperature" | "Current Drive Temperature")
                    .then(|| leading_number(value))
                    .flatten()
            })
        })
    };
    t.filter(|t| *t > 0.0 && *t < 150.0)
}

/// The first whole number in `s` (`" 38 (Min/Max 20/45)"` → 38).
fn leading_number(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// PVE's pattern for `disks/smart`'s `disk` parameter.
fn is_block_device_path(p: &str) -> bool {
    p.strip_prefix("/dev/").is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '/')
    })
}

impl ProxmoxCollector {
    /// Temperature of this node's disks from SMART (`disk_temp_celsius`), each disk every
    /// [`SMART_EVERY_MS`].
    pub(super) async fn smart(
        &mut self,
        out: &mut Collected,
        slow: &mut SlowReads,
        budget: &Budget,
        disks: &[(String, ResourceId)],
        now_ms: i64,
    ) {
        slow.due.retain(|read, _| match read {
            SlowRead::Smart(d) => disks.iter().any(|(p, _)| p == d),
            _ => true,
        });
        for (devpath, id) in disks {
            let read = SlowRead::Smart(devpath.clone());
            // PVE accepts only such paths; another one would fail every time.
            if !slow.is_due(&read, now_ms) || !is_block_device_path(devpath) {
                continue;
            }
            let path = format!("/nodes/{}/disks/smart?disk={devpath}", self.node);
            match budget.run(self.api.get::<SmartData>(&path)).await {
                None => break,
                Some(Ok(data)) => {
                    put(
                        out,
                        id,
                        metric::DISK_TEMP_CELSIUS,
                        now_ms,
                        smart_temperature(&data),
                    );
                    slow.due.insert(read, now_ms + SMART_EVERY_MS);
                }
                Some(Err(e)) => out.problems.push(e.to_string()),
            }
        }
    }

    /// Physical disks of this node with SMART health and wear-out; returns their device
    /// paths and ids, or `None` when the list could not be read.
    pub(super) async fn disks(
        &mut self,
        out: &mut Collected,
        node_id: &ResourceId,
        now_ms: i64,
    ) -> Option<Vec<(String, ResourceId)>> {
        let disks = match self
            .api
            .get::<Vec<DiskEntry>>(&format!("/nodes/{}/disks/list", self.node))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                out.problems.push(e.to_string());
                return None;
            }
        };
        let mut seen = Vec::new();
        for d in disks {
            let Some(devpath) = d.devpath.clone() else {
                continue;
            };
            // The serial survives re-cabling; the device path is the fallback.
            let key = d
                .serial
                .clone()
                .filter(|s| !s.is_empty() && s != "unknown")
                .unwrap_or(devpath.clone());
            let Ok(id) = canonical::physical_disk(&self.node, &key) else {
                continue;
            };
            let status = match smart_health(d.health.as_deref()) {
                SmartHealth::Passed => "healthy",
                SmartHealth::Failed => "failing",
                SmartHealth::Unknown => "unknown",
                SmartHealth::Unrecognised => {
                    // Once per disk: the text stays until the drive or smartctl changes.
                    if self.odd_health.len() < 1024 && self.odd_health.insert(id.clone()) {
                        warn!(
                            node = %self.node,
                            disk = %devpath,
                            health = d.health.as_deref().unwrap_or_default(),
                            "disk health text not understood, reported as unknown"
                        );
                    }
                    "unknown"
                }
            };
            put(out, &id, metric::DISK_SIZE_BYTES, now_ms, d.size);
            // PVE's `wearout` is the percent of life left (100 = new; its GUI shows 100 minus
            // this), or "N/A" (then: unknown).
            put(out, &id, metric::DISK_WEAROUT_PCT, now_ms, d.wearout);
            seen.push((devpath.clone(), id.clone()));
            out.resources.push(Resource {
                id,
                name: devpath.clone(),
                parent: Some(node_id.clone()),
                status: status.into(),
                attrs: vec![
                    ("devpath".into(), Value::from(devpath)),
                    (
                        "model".into(),
                        Value::from(d.model.map(|m| m.trim().to_owned())),
                    ),
                    ("serial".into(), Value::from(d.serial)),
                    ("type".into(), Value::from(d.kind)),
                    ("health".into(), Value::from(d.health)),
                    ("used_by".into(), Value::from(d.used)),
                ],
            });
        }
        Some(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_temperatures_of_ata_nvme_and_sas_drives() {
        let temp = |v: serde_json::Value| smart_temperature(&serde_json::from_value(v).unwrap());
        let ata = |attrs: &[(&str, &str, serde_json::Value)]| {
            let attributes: Vec<serde_json::Value> = attrs
                .iter()
                .map(|(id, name, raw)| serde_json::json!({"id": id, "name": name, "raw": raw}))
                .collect();
            serde_json::json!({"health": "PASSED", "type": "ata", "attributes": attributes})
        };
        let text = |t: &str| serde_json::json!({"health": "PASSED", "type": "text", "text": t});
        // smartctl's default raw format for 194 (preferred to 190), a plain number, a number.
        assert_eq!(
            temp(ata(&[
                ("  5", "Reallocated_Sector_Ct", "0".into()),
                ("190", "Airflow_Temperature_Cel", "35".into()),
                ("194", "Temperature_Celsius", "38 (Min/Max 20/45)".into()),
            ])),
            Some(38.0)
        );
        assert_eq!(
            temp(ata(&[("194", "Temperature_Celsius", 41.into())])),
            Some(41.0)
        );
        // Only the airflow sensor; a drive reporting tenths of a degree.
        assert_eq!(
            temp(ata(&[(
                "190",
                "Airflow_Temperature_Cel",
                "33 (Min/Max 25/40)".into()
            )])),
            Some(33.0)
        );
        assert_eq!(
            temp(ata(&[("194", "Temperature_Celsius_x10", "385".into())])),
            Some(38.5)
        );
        // NVMe: the composite temperature, not the per-sensor lines.
        let nvme = "SMART/Health Information (NVMe Log 0x02)\n\
                    Critical Warning:                   0x00\n\
                    Temperature:                        47 Celsius\n\
                    Available Spare:                    100%\n\
                    Percentage Used:                    2%\n\
                    Temperature Sensor 1:               52 Celsius\n";
        assert_eq!(temp(text(nvme)), Some(47.0));
        let sas = "Current Drive Temperature:     34 C\nDrive Trip Temperature:        65 C\n";
        assert_eq!(temp(text(sas)), Some(34.0));
        // No sensor, a sensor that says 0, smartctl failing (only a health), a raw48 value.
        assert_eq!(
            temp(text("Current Drive Temperature:     <not available>\n")),
            None
        );
        assert_eq!(
            temp(ata(&[("194", "Temperature_Celsius", "0".into())])),
            None
        );
        assert_eq!(temp(serde_json::json!({"health": "UNKNOWN"})), None);
        assert_eq!(
            temp(ata(&[(
                "194",
                "Temperature_Celsius",
                "1099511627812".into()
            )])),
            None,
            "a raw48 value is not a temperature"
        );
        assert!(is_block_device_path("/dev/sda") && is_block_device_path("/dev/cciss/c0d0"));
        assert!(!is_block_device_path("/dev/") && !is_block_device_path("/dev/sd a&x=1"));
    }

    #[test]
    fn smart_health_follows_smartctls_words() {
        for (text, want) in [
            (Some("PASSED"), SmartHealth::Passed),
            (Some("OK"), SmartHealth::Passed),
            (Some(" passed\n"), SmartHealth::Passed),
            (Some("FAILED!"), SmartHealth::Failed),
            (Some("FAILED"), SmartHealth::Failed),
            (Some("failed! "), SmartHealth::Failed),
            (
                Some("FAILURE PREDICTION THRESHOLD EXCEEDED [asc=5d, ascq=0]"),
                SmartHealth::Failed,
            ),
            (Some("UNKNOWN"), SmartHealth::Unknown),
            (Some(""), SmartHealth::Unknown),
            (None, SmartHealth::Unknown),
            (Some("Unknown"), SmartHealth::Unknown),
            (Some("SELF-TEST IN PROGRESS"), SmartHealth::Unrecognised),
        ] {
            assert_eq!(smart_health(text), want, "{text:?}");
        }
    }
}
