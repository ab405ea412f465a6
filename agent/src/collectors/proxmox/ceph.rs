//! The cluster's Ceph (`/cluster/ceph/status`, read by the reporter) as
//! `storage:<cluster>/ceph`.

use super::api::{num, pct, put};
use super::cluster::ClusterView;
use crate::collectors::{Collected, CollectorError, resource_id};
use serde::Deserialize;
use std::collections::BTreeMap;
use warden_shared::metric;
use warden_shared::resource::canonical;
use warden_shared::telemetry::{Resource, Value};

#[derive(Deserialize)]
pub(super) struct CephStatus {
    health: Option<CephHealth>,
    pgmap: Option<CephPgMap>,
    osdmap: Option<CephOsdMap>,
}

#[derive(Deserialize)]
struct CephHealth {
    status: Option<String>,
    #[serde(default)]
    checks: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct CephPgMap {
    #[serde(default, deserialize_with = "num")]
    bytes_total: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    bytes_used: Option<f64>,
}

#[derive(Deserialize)]
struct CephOsdMap {
    #[serde(default, deserialize_with = "num")]
    num_osds: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    num_up_osds: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    num_in_osds: Option<f64>,
}

/// The cluster's Ceph as `storage:<cluster>/ceph`: health, capacity and OSD counts.
pub(super) fn ceph_resource(
    out: &mut Collected,
    view: &ClusterView,
    ceph: &CephStatus,
    now_ms: i64,
) -> Result<(), CollectorError> {
    let id = resource_id("ceph", canonical::storage(&view.cluster, "ceph"))?;
    let health = ceph.health.as_ref();
    let status = match health.and_then(|h| h.status.as_deref()) {
        Some("HEALTH_OK") => "healthy",
        Some("HEALTH_WARN") => "warning",
        Some("HEALTH_ERR") => "error",
        _ => "unknown",
    };
    if let Some(pg) = &ceph.pgmap {
        put(
            out,
            &id,
            metric::STORAGE_TOTAL_BYTES,
            now_ms,
            pg.bytes_total,
        );
        put(out, &id, metric::STORAGE_USED_BYTES, now_ms, pg.bytes_used);
        put(
            out,
            &id,
            metric::STORAGE_USED_PCT,
            now_ms,
            pct(pg.bytes_used, pg.bytes_total),
        );
    }
    if let Some(osd) = &ceph.osdmap {
        put(out, &id, metric::CEPH_OSDS_TOTAL, now_ms, osd.num_osds);
        put(out, &id, metric::CEPH_OSDS_UP, now_ms, osd.num_up_osds);
        put(out, &id, metric::CEPH_OSDS_IN, now_ms, osd.num_in_osds);
    }
    let checks: Vec<&str> = health
        .map(|h| h.checks.keys().map(String::as_str).collect())
        .unwrap_or_default();
    out.resources.push(Resource {
        id,
        name: "ceph".into(),
        parent: None,
        status: status.into(),
        attrs: vec![
            ("plugin".into(), Value::from("ceph")),
            (
                "health".into(),
                Value::from(health.and_then(|h| h.status.clone())),
            ),
            ("health_checks".into(), Value::from(checks.join(","))),
        ],
    });
    Ok(())
}

/// Whether a `/cluster/ceph/status` error says the cluster has no (PVE-managed) Ceph.
pub(super) fn ceph_absent(message: &str) -> bool {
    message.contains("not installed") || message.contains("not initialized")
}
