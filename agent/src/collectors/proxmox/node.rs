//! The node itself, from `/nodes/{node}/status`: its samples and its description.

use super::api::{num, nums, pct, put};
use super::cluster::ClusterView;
use crate::collectors::Collected;
use serde::Deserialize;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::telemetry::{Resource, Value};

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default, deserialize_with = "num")]
    total: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    used: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    available: Option<f64>,
}

#[derive(Deserialize, Default)]
struct CpuInfo {
    #[serde(default, deserialize_with = "num")]
    cpus: Option<f64>,
    model: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NodeStatus {
    #[serde(default, deserialize_with = "num")]
    cpu: Option<f64>,
    #[serde(default, deserialize_with = "nums")]
    loadavg: Vec<Option<f64>>,
    #[serde(default)]
    memory: Usage,
    #[serde(default)]
    swap: Usage,
    #[serde(default)]
    rootfs: Usage,
    #[serde(default, deserialize_with = "num")]
    uptime: Option<f64>,
    kversion: Option<String>,
    pveversion: Option<String>,
    #[serde(default)]
    cpuinfo: CpuInfo,
}

/// The node's samples into `out`; returns its description, which the caller sends only
/// while it owns `node:<name>` (see the module doc).
pub(super) fn node_resource(
    out: &mut Collected,
    id: &ResourceId,
    name: &str,
    view: &ClusterView,
    st: &NodeStatus,
    now_ms: i64,
) -> Resource {
    // Memory used excludes cache: PVE 8+ sends `available`; older `used` already excludes it.
    let mem_used = match (st.memory.total, st.memory.available) {
        (Some(t), Some(a)) => Some(t - a),
        _ => st.memory.used,
    };
    put(out, id, metric::CPU_PCT, now_ms, st.cpu.map(|c| c * 100.0));
    put(out, id, metric::MEM_TOTAL_BYTES, now_ms, st.memory.total);
    put(out, id, metric::MEM_USED_BYTES, now_ms, mem_used);
    put(
        out,
        id,
        metric::MEM_USED_PCT,
        now_ms,
        pct(mem_used, st.memory.total),
    );
    put(out, id, metric::SWAP_TOTAL_BYTES, now_ms, st.swap.total);
    put(out, id, metric::SWAP_USED_BYTES, now_ms, st.swap.used);
    put(
        out,
        id,
        metric::ROOTFS_USED_PCT,
        now_ms,
        pct(st.rootfs.used, st.rootfs.total),
    );
    for (i, metric) in [metric::LOAD1, metric::LOAD5, metric::LOAD15]
        .into_iter()
        .enumerate()
    {
        put(
            out,
            id,
            metric,
            now_ms,
            st.loadavg.get(i).copied().flatten(),
        );
    }
    put(out, id, metric::UPTIME_SECONDS, now_ms, st.uptime);
    Resource {
        id: id.clone(),
        name: name.to_owned(),
        parent: None,
        status: "online".into(),
        attrs: vec![
            ("cluster".into(), Value::from(view.cluster.as_str())),
            ("quorate".into(), Value::from(view.quorate)),
            ("pve_version".into(), Value::from(st.pveversion.clone())),
            ("kernel".into(), Value::from(st.kversion.clone())),
            (
                "cpu_count".into(),
                Value::from(st.cpuinfo.cpus.map(|c| c as i64)),
            ),
            ("cpu_model".into(), Value::from(st.cpuinfo.model.clone())),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::proxmox::tests::*;
    use warden_shared::resource::canonical;

    #[test]
    fn node_status_becomes_metrics_without_zeros_for_unknowns() {
        let st: NodeStatus = fixture("nodes_node_status.pve7.4.json");
        let id = canonical::node("pve1").unwrap();
        let view = ClusterView {
            cluster: "c".into(),
            nodes: vec![],
            reporter: None,
            quorate: None,
            standalone: false,
        };
        let mut out = Collected::default();
        let node = node_resource(&mut out, &id, "pve1", &view, &st, 1);
        assert_eq!(
            value(&out, "node:pve1", metric::MEM_USED_BYTES),
            Some(8_095_399_936.0)
        );
        assert_eq!(
            value(&out, "node:pve1", metric::LOAD1),
            Some(0.0),
            "loadavg arrives as strings"
        );
        assert!((value(&out, "node:pve1", metric::CPU_PCT).unwrap() - 0.260_552).abs() < 1e-3);
        // Swap total is 0 here: there is no swap, so no percentage is invented.
        assert_eq!(
            value(&out, "node:pve1", metric::SWAP_TOTAL_BYTES),
            Some(0.0)
        );
        assert!(node.attrs.contains(&("quorate".into(), Value::Unknown)));
        crate::collectors::assert_provenance_complete(&unconnected(), &out);
    }
}
