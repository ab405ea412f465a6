//! PVE storage (`/nodes/{node}/storage`; shared storage from `/cluster/resources`) as
//! storage resources.

use super::api::{num, pct, put};
use crate::collectors::Collected;
use serde::Deserialize;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::telemetry::{Resource, Value};

#[derive(Deserialize)]
pub(super) struct StorageEntry {
    pub(super) storage: String,
    #[serde(rename = "type")]
    pub(super) plugin: Option<String>,
    pub(super) content: Option<String>,
    #[serde(default, deserialize_with = "num")]
    pub(super) shared: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    pub(super) active: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    pub(super) enabled: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    pub(super) total: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    pub(super) used: Option<f64>,
}

pub(super) fn holds_backups(content: Option<&str>) -> bool {
    content.is_some_and(|c| c.split(',').any(|c| c.trim() == "backup"))
}

pub(super) fn storage_resource(
    out: &mut Collected,
    id: &ResourceId,
    parent: Option<&ResourceId>,
    p: &StorageEntry,
    now_ms: i64,
) {
    put(out, id, metric::STORAGE_TOTAL_BYTES, now_ms, p.total);
    put(out, id, metric::STORAGE_USED_BYTES, now_ms, p.used);
    put(
        out,
        id,
        metric::STORAGE_USED_PCT,
        now_ms,
        pct(p.used, p.total),
    );
    let status = match (p.enabled, p.active) {
        (Some(0.0), _) => "disabled",
        (_, Some(1.0)) => "available",
        (_, Some(_)) => "unavailable",
        _ => "unknown",
    };
    out.resources.push(Resource {
        id: id.clone(),
        name: p.storage.clone(),
        parent: parent.cloned(),
        status: status.into(),
        attrs: vec![
            ("plugin".into(), Value::from(p.plugin.clone())),
            ("content".into(), Value::from(p.content.clone())),
            ("shared".into(), Value::from(p.shared.map(|s| s == 1.0))),
        ],
    });
}
