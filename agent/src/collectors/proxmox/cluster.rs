//! The cluster as `/cluster/status` and `/cluster/resources` show it: the view that decides
//! who reports what, and the reporter's cluster-wide objects (guests, shared storage, nodes
//! the cluster sees offline).

use super::api::{num, pct, put};
use super::guests::guest_kind;
use super::storage::{StorageEntry, storage_resource};
use crate::collectors::{Collected, CollectorError, resource_id};
use serde::Deserialize;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Resource, Value};

#[derive(Deserialize)]
pub(super) struct ClusterStatusEntry {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default, deserialize_with = "num")]
    online: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    quorate: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct ClusterResource {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) node: Option<String>,
    pub(super) status: Option<String>,
    name: Option<String>,
    pub(super) storage: Option<String>,
    plugintype: Option<String>,
    pub(super) content: Option<String>,
    lock: Option<String>,
    #[serde(default, deserialize_with = "num")]
    pub(super) vmid: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    template: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    pub(super) shared: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    cpu: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    maxcpu: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    mem: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    maxmem: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    disk: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    maxdisk: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    uptime: Option<f64>,
}

/// What `/cluster/status` says, reduced to what the collector decides with.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ClusterView {
    /// The cluster name, or the node's own name when standalone.
    pub(super) cluster: String,
    /// Nodes and whether the cluster sees them online.
    pub(super) nodes: Vec<(String, bool)>,
    /// The online node with the lowest name: it reports cluster-wide objects.
    pub(super) reporter: Option<String>,
    pub(super) quorate: Option<bool>,
    /// No cluster: the node is alone, and so is its agent.
    pub(super) standalone: bool,
}

impl ClusterView {
    pub(super) fn from_status(entries: &[ClusterStatusEntry], own: &str) -> Self {
        let cluster_entry = entries.iter().find(|e| e.kind == "cluster");
        let mut nodes: Vec<(String, bool)> = entries
            .iter()
            .filter(|e| e.kind == "node")
            .filter_map(|e| e.name.clone().map(|n| (n, e.online == Some(1.0))))
            .collect();
        nodes.sort();
        let reporter = nodes
            .iter()
            .find(|(_, online)| *online)
            .map(|(n, _)| n.clone());
        Self {
            cluster: cluster_entry
                .and_then(|c| c.name.clone())
                .unwrap_or_else(|| own.to_owned()),
            reporter: reporter.or_else(|| cluster_entry.is_none().then(|| own.to_owned())),
            quorate: cluster_entry.and_then(|c| c.quorate).map(|q| q == 1.0),
            standalone: cluster_entry.is_none(),
            nodes,
        }
    }

    pub(super) fn is_online(&self, node: &str) -> bool {
        self.nodes.iter().any(|(n, online)| n == node && *online)
    }

    pub(super) fn is_reporter(&self, node: &str) -> bool {
        self.reporter.as_deref() == Some(node)
    }

    /// Whether `node`'s own agent describes `node:<node>`: while the cluster sees it online
    /// (a standalone node always). Otherwise the reporter does, as `offline`.
    pub(super) fn describes_itself(&self, node: &str) -> bool {
        self.standalone || self.is_online(node)
    }
}

/// Whether `r` comes from `/cluster/resources` (reporter): a guest, a shared storage (or
/// Ceph), or another node the cluster sees offline.
pub(super) fn is_cluster_object(r: &Resource, own: &str) -> bool {
    match ResourceKind::of(&r.id) {
        Some(ResourceKind::Vm | ResourceKind::SystemContainer) => true,
        Some(ResourceKind::Storage) => r.parent.is_none(),
        Some(ResourceKind::Node) => r.id.name() != own,
        _ => false,
    }
}

/// Guests, shared storage and offline nodes from `/cluster/resources` (reporter only).
pub(super) fn cluster_objects(
    out: &mut Collected,
    view: &ClusterView,
    resources: &[ClusterResource],
    now_ms: i64,
) -> Result<(), CollectorError> {
    for (name, online) in &view.nodes {
        if !online {
            let id = resource_id(name, canonical::node(name))?;
            out.resources.push(Resource {
                id,
                name: name.clone(),
                parent: None,
                status: "offline".into(),
                attrs: vec![("cluster".into(), Value::from(view.cluster.as_str()))],
            });
        }
    }
    let mut shared_seen = std::collections::BTreeSet::new();
    for r in resources {
        match r.kind.as_str() {
            "qemu" | "lxc" => {
                let Some(vmid) = r.vmid else {
                    out.problems
                        .push(format!("guest without vmid: {:?}", r.name));
                    continue;
                };
                let Some(kind) = guest_kind(&r.kind) else {
                    continue;
                };
                let id = resource_id(
                    &vmid.to_string(),
                    canonical::guest(kind, &view.cluster, vmid as u32),
                )?;
                let parent = match r.node.as_deref() {
                    Some(n) => Some(resource_id(n, canonical::node(n))?),
                    None => None,
                };
                let running = r.status.as_deref() == Some("running");
                if running {
                    put(out, &id, metric::CPU_PCT, now_ms, r.cpu.map(|c| c * 100.0));
                    put(out, &id, metric::MEM_USED_BYTES, now_ms, r.mem);
                    put(out, &id, metric::MEM_USED_PCT, now_ms, pct(r.mem, r.maxmem));
                    put(out, &id, metric::UPTIME_SECONDS, now_ms, r.uptime);
                }
                put(out, &id, metric::MEM_TOTAL_BYTES, now_ms, r.maxmem);
                put(out, &id, metric::DISK_TOTAL_BYTES, now_ms, r.maxdisk);
                // A container's root disk usage is real; a VM's `disk` is 0 unless PVE asks
                // its guest agent, so VMs get theirs from the agent (`guest_fs_*`).
                if running && kind == ResourceKind::SystemContainer {
                    put(out, &id, metric::DISK_USED_BYTES, now_ms, r.disk);
                    put(
                        out,
                        &id,
                        metric::DISK_USED_PCT,
                        now_ms,
                        pct(r.disk, r.maxdisk),
                    );
                }
                out.resources.push(Resource {
                    id,
                    name: r.name.clone().unwrap_or_else(|| vmid.to_string()),
                    parent,
                    status: r.status.clone().unwrap_or_else(|| "unknown".into()),
                    attrs: vec![
                        ("vmid".into(), Value::Int(vmid as i64)),
                        ("node".into(), Value::from(r.node.clone())),
                        ("template".into(), Value::from(r.template.map(|t| t == 1.0))),
                        ("cpus".into(), Value::from(r.maxcpu)),
                        ("lock".into(), Value::from(r.lock.clone())),
                    ],
                });
            }
            "storage" if r.shared == Some(1.0) => {
                let Some(name) = r.storage.clone() else {
                    continue;
                };
                if !shared_seen.insert(name.clone()) {
                    continue;
                }
                let id = resource_id(&name, canonical::storage(&view.cluster, &name))?;
                let entry = StorageEntry {
                    storage: name,
                    plugin: r.plugintype.clone(),
                    content: r.content.clone(),
                    shared: Some(1.0),
                    active: r
                        .status
                        .as_deref()
                        .map(|s| if s == "available" { 1.0 } else { 0.0 }),
                    enabled: None,
                    total: r.maxdisk,
                    used: r.disk,
                };
                storage_resource(out, &id, None, &entry, now_ms);
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::proxmox::tests::*;

    #[test]
    fn the_lowest_online_node_reports_and_standalone_nodes_report_themselves() {
        let status: Vec<ClusterStatusEntry> = fixture("cluster_status.pve9.json");
        let view = ClusterView::from_status(&status, "srv-proxmox-03");
        assert_eq!(view.cluster, "devcluster");
        assert_eq!(view.reporter.as_deref(), Some("srv-proxmox-01"));
        assert_eq!(view.quorate, Some(true));
        // Same answer whichever node asks.
        assert_eq!(
            view,
            ClusterView {
                ..ClusterView::from_status(&status, "srv-proxmox-01")
            }
        );
        let standalone = vec![ClusterStatusEntry {
            kind: "node".into(),
            name: Some("solo".into()),
            online: Some(1.0),
            quorate: None,
        }];
        let v = ClusterView::from_status(&standalone, "solo");
        assert_eq!(
            (v.cluster.as_str(), v.reporter.as_deref()),
            ("solo", Some("solo"))
        );
    }

    #[test]
    fn cluster_resources_name_guests_by_cluster_and_vmid() {
        let resources: Vec<ClusterResource> = fixture("cluster_resources.mixed.json");
        let status: Vec<ClusterStatusEntry> = fixture("cluster_status.pve9.json");
        let view = ClusterView::from_status(&status, "x");
        let mut out = Collected::default();
        cluster_objects(&mut out, &view, &resources, 5).unwrap();
        let vm = out
            .resources
            .iter()
            .find(|r| r.id.as_str() == "vm:devcluster/100")
            .unwrap();
        assert_eq!(
            (vm.name.as_str(), vm.status.as_str()),
            ("server1", "running")
        );
        assert_eq!(vm.parent.as_ref().unwrap().as_str(), "node:node2");
        assert_eq!(
            value(&out, "vm:devcluster/100", metric::MEM_USED_BYTES),
            Some(842_551_296.0)
        );
        let template = out
            .resources
            .iter()
            .find(|r| r.id.as_str() == "vm:devcluster/101")
            .unwrap();
        assert!(
            template
                .attrs
                .contains(&("template".into(), Value::Bool(true)))
        );
        assert_eq!(
            value(&out, "vm:devcluster/101", metric::CPU_PCT),
            None,
            "a stopped guest has no cpu sample"
        );
        crate::collectors::assert_provenance_complete(&unconnected(), &out);
    }
}
