//! The node's ZFS pools (`/nodes/{node}/disks/zfs`) as node-local storage, with
//! `zpool status`'s explanation for pools that are not online.

use super::ProxmoxCollector;
use super::api::{num, pct, put};
use crate::collectors::{Collected, CollectorError, resource_id};
use serde::Deserialize;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::canonical;
use warden_shared::telemetry::{Resource, Value};

/// One entry of `/nodes/{node}/disks/zfs` (`zpool list -HpPLo ...`).
#[derive(Deserialize)]
struct ZfsPoolEntry {
    name: String,
    #[serde(default, deserialize_with = "num")]
    size: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    alloc: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    free: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    frag: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    dedup: Option<f64>,
    health: Option<String>,
}

/// `/nodes/{node}/disks/zfs/{name}` (PVE's parse of `zpool status -P`).
#[derive(Deserialize)]
struct ZfsPoolDetail {
    status: Option<String>,
    action: Option<String>,
    scan: Option<String>,
    errors: Option<String>,
    #[serde(default)]
    children: Vec<ZfsVdev>,
}

#[derive(Deserialize)]
struct ZfsVdev {
    name: String,
    state: Option<String>,
    msg: Option<String>,
    #[serde(default)]
    children: Vec<Self>,
}

/// What PVE answers (500) on a node without the ZFS tools.
const ZFS_NOT_INSTALLED: &str = "zfsutils-linux not installed";

/// `storage:<node>/zfs:<pool>`. PVE storage ids (`storage:<node>/<id>`) cannot contain `:`,
/// so a pool never collides with a PVE storage of the same name (`local-zfs` on `rpool`, or a
/// `zfspool` storage named like its pool).
fn zfs_pool_id(node: &str, pool: &str) -> Result<ResourceId, CollectorError> {
    resource_id(pool, canonical::storage(node, &format!("zfs:{pool}")))
}

/// PVE's `pve-storage-id` form, which `/disks/zfs/{name}` requires.
fn is_pve_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A ZFS pool as a node-local storage resource: `storage_total_bytes` (size),
/// `storage_used_bytes` (allocated), `storage_free_bytes`, `storage_used_pct`,
/// `zfs_frag_pct`, `zfs_dedup_ratio`; status is the pool's health in lower case (`online`,
/// `degraded`, `faulted`, ...). From `detail` (pools not `ONLINE`): `zpool status`'s texts
/// and the devices that are not online.
fn zfs_resource(
    out: &mut Collected,
    id: &ResourceId,
    node_id: &ResourceId,
    p: &ZfsPoolEntry,
    detail: Option<&ZfsPoolDetail>,
    now_ms: i64,
) {
    put(out, id, metric::STORAGE_TOTAL_BYTES, now_ms, p.size);
    put(out, id, metric::STORAGE_USED_BYTES, now_ms, p.alloc);
    put(out, id, metric::STORAGE_FREE_BYTES, now_ms, p.free);
    put(
        out,
        id,
        metric::STORAGE_USED_PCT,
        now_ms,
        pct(p.alloc, p.size),
    );
    put(out, id, metric::ZFS_FRAG_PCT, now_ms, p.frag);
    put(out, id, metric::ZFS_DEDUP_RATIO, now_ms, p.dedup);
    let status = p
        .health
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map_or_else(|| "unknown".to_owned(), str::to_ascii_lowercase);
    let mut attrs = vec![
        ("plugin".into(), Value::from("zfs")),
        ("pool".into(), Value::from(p.name.as_str())),
        ("health".into(), Value::from(p.health.clone())),
    ];
    if let Some(d) = detail {
        let mut bad = Vec::new();
        bad_devices(&d.children, &mut bad);
        for (k, v) in [
            ("zpool_status", &d.status),
            ("zpool_action", &d.action),
            ("zpool_scan", &d.scan),
            ("zpool_errors", &d.errors),
        ] {
            if let Some(v) = v {
                attrs.push((k.into(), Value::from(v.as_str())));
            }
        }
        attrs.push(("zpool_bad_devices".into(), Value::from(bad.join(", "))));
    }
    out.resources.push(Resource {
        id: id.clone(),
        name: p.name.clone(),
        parent: Some(node_id.clone()),
        status,
        attrs,
    });
}

/// Leaf devices whose state is not `ONLINE` (spares: not `AVAIL`/`INUSE`), as
/// `name (STATE[, msg])`.
fn bad_devices(vdevs: &[ZfsVdev], out: &mut Vec<String>) {
    for v in vdevs {
        if !v.children.is_empty() {
            bad_devices(&v.children, out);
            continue;
        }
        let Some(state) = v.state.as_deref() else {
            continue;
        };
        if matches!(state, "ONLINE" | "AVAIL" | "INUSE") {
            continue;
        }
        match v.msg.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            Some(msg) => out.push(format!("{} ({state}, {msg})", v.name)),
            None => out.push(format!("{} ({state})", v.name)),
        }
    }
}

impl ProxmoxCollector {
    /// This node's ZFS pools (see [`zfs_resource`]); for a pool that is not `ONLINE` also
    /// `zpool status`'s explanation. A node without ZFS tools has none, which is no problem.
    pub(super) async fn zfs_pools(
        &mut self,
        out: &mut Collected,
        node_id: &ResourceId,
        now_ms: i64,
    ) {
        let path = format!("/nodes/{}/disks/zfs", self.node);
        let pools = match self
            .api
            .get_unless::<Vec<ZfsPoolEntry>>(&path, |m| m.contains(ZFS_NOT_INSTALLED))
            .await
        {
            Ok(p) => p,
            Err(CollectorError::Proxmox(m)) if m.contains(ZFS_NOT_INSTALLED) => return,
            Err(e) => return out.problems.push(e.to_string()),
        };
        for pool in pools {
            let id = match zfs_pool_id(&self.node, &pool.name) {
                Ok(id) => id,
                Err(e) => {
                    out.problems.push(e.to_string());
                    continue;
                }
            };
            // The detail endpoint takes only names of PVE's storage-id form.
            let detail = if pool.health.as_deref() != Some("ONLINE") && is_pve_id(&pool.name) {
                match self
                    .api
                    .get::<ZfsPoolDetail>(&format!("{path}/{}", pool.name))
                    .await
                {
                    Ok(d) => Some(d),
                    Err(e) => {
                        out.problems.push(e.to_string());
                        None
                    }
                }
            } else {
                None
            };
            zfs_resource(out, &id, node_id, &pool, detail.as_ref(), now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::proxmox::tests::*;

    /// Field set of `/nodes/{node}/disks/zfs` and `/disks/zfs/{name}` per pve-storage
    /// `PVE/API2/Disks/ZFS.pm` (no public capture exists).
    #[test]
    fn zfs_pools_are_node_local_storage_named_apart_from_pve_storage() {
        let pools: Vec<ZfsPoolEntry> = serde_json::from_str(
            r#"[
            {"name":"rpool","size":996432412672,"alloc":15393064960,"free":981039347712,
             "frag":3,"dedup":1,"health":"ONLINE"},
            {"name":"tank","size":12000000000000,"alloc":9000000000000,"free":3000000000000,
             "frag":17,"dedup":1.25,"health":"DEGRADED"}
        ]"#,
        )
        .unwrap();
        let detail: ZfsPoolDetail = serde_json::from_str(
            r#"{"name":"tank","state":"DEGRADED","status":"One or more devices could not be used.",
             "action":"Replace the device using 'zpool replace'.","errors":"No known data errors",
             "leaf":0,"children":[{"name":"tank","state":"DEGRADED","msg":"","leaf":0,"children":[
               {"name":"raidz1-0","state":"DEGRADED","msg":"","leaf":0,"children":[
                 {"name":"/dev/sda1","state":"ONLINE","read":0,"write":0,"cksum":0,"msg":"","leaf":1},
                 {"name":"8211457322491634120","state":"UNAVAIL","read":0,"write":0,"cksum":0,
                  "msg":"was /dev/sdc1","leaf":1}]}]},
               {"name":"spares","msg":"","leaf":0,"children":[
                 {"name":"/dev/sdd1","state":"AVAIL","msg":"","leaf":1}]}]}"#,
        )
        .unwrap();
        let node = canonical::node("pve1").unwrap();
        let mut out = Collected::default();
        for p in &pools {
            let id = zfs_pool_id("pve1", &p.name).unwrap();
            let d = (p.name == "tank").then_some(&detail);
            zfs_resource(&mut out, &id, &node, p, d, 7);
        }
        let rpool = "storage:pve1/zfs:rpool";
        assert_ne!(rpool, canonical::storage("pve1", "rpool").unwrap().as_str());
        assert_eq!(
            value(&out, rpool, metric::STORAGE_TOTAL_BYTES),
            Some(996_432_412_672.0)
        );
        assert_eq!(
            value(&out, rpool, metric::STORAGE_USED_BYTES),
            Some(15_393_064_960.0)
        );
        assert_eq!(
            value(&out, rpool, metric::STORAGE_FREE_BYTES),
            Some(981_039_347_712.0)
        );
        assert_eq!(value(&out, rpool, metric::ZFS_FRAG_PCT), Some(3.0));
        assert_eq!(value(&out, rpool, metric::ZFS_DEDUP_RATIO), Some(1.0));
        let tank = "storage:pve1/zfs:tank";
        assert_eq!(value(&out, tank, metric::STORAGE_USED_PCT), Some(75.0));
        assert_eq!(value(&out, tank, metric::ZFS_DEDUP_RATIO), Some(1.25));
        let st: Vec<(&str, &str)> = out
            .resources
            .iter()
            .map(|r| (r.status.as_str(), r.parent.as_ref().unwrap().as_str()))
            .collect();
        assert_eq!(st, vec![("online", "node:pve1"), ("degraded", "node:pve1")]);
        assert_eq!(
            attr(&out, tank, "zpool_bad_devices"),
            Some(&Value::from("8211457322491634120 (UNAVAIL, was /dev/sdc1)"))
        );
        assert_eq!(
            attr(&out, tank, "zpool_action"),
            Some(&Value::from("Replace the device using 'zpool replace'."))
        );
        assert_eq!(attr(&out, rpool, "zpool_status"), None);
        // Pool names may hold characters PVE storage ids cannot (':', ' ').
        assert_eq!(
            zfs_pool_id("pve1", "data:2 old").unwrap().as_str(),
            "storage:pve1/zfs:data:2 old"
        );
        assert!(zfs_pool_id("pve1", "bad\u{7}").is_err());
        assert!(
            is_pve_id("tank") && is_pve_id("r.pool-2") && !is_pve_id("data:2") && !is_pve_id("2x")
        );
        crate::collectors::assert_provenance_complete(&unconnected(), &out);
    }
}
