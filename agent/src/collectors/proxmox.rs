//! The Proxmox VE collector: reads the node's own API (`https://127.0.0.1:8006/api2/json`)
//! with a read-only API token and turns it into nodes, guests and storage pools.
//!
//! Who reports what, so that a cluster is described once and the same way whichever agent
//! does it:
//! - every agent reports its own node (`/nodes/{node}/status`), its node-local storage
//!   (`/nodes/{node}/storage`, `shared = 0`) and, for its running VMs, the memory the guest
//!   itself sees (balloon statistics);
//! - the *reporter*, the online node with the lowest name in `/cluster/status`, also reports
//!   the cluster-wide objects from `/cluster/resources`: every guest (named by cluster and
//!   VMID, so migrations keep the id), shared storage, and nodes the cluster sees offline.
//!
//! On failure the last good resources are sent again with `stale = true` and no samples, and
//! the run is `Degraded` with the reason; nothing is ever reported as zero for "unknown".

use super::proxmox_api::{ApiClient, Endpoint, Product, label_value, num, nums, pct, put, settle};
use super::{Collected, Collector, CollectorError, ProxmoxConfig, resource_id};
use serde::Deserialize;
use warden_shared::ResourceId;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Resource, Value};

/// Reads the Proxmox VE API of this node.
pub(crate) struct ProxmoxCollector {
    node: String,
    api: ApiClient,
    timeout: std::time::Duration,
    /// Resources of the last fully successful run, re-sent as stale when the API fails.
    last_good: Vec<Resource>,
}

impl ProxmoxCollector {
    pub(crate) fn new(hostname: &str, cfg: &ProxmoxConfig) -> Self {
        Self {
            node: cfg.node.clone().unwrap_or_else(|| hostname.to_owned()),
            api: ApiClient::new(Endpoint {
                product: Product::Pve,
                url: cfg.url.clone(),
                token_id: cfg.token_id.clone(),
                token_secret_file: cfg.token_secret_file.clone(),
                ca_file: cfg.ca_file.clone(),
                fingerprint: cfg.fingerprint.clone(),
                timeout: cfg.timeout,
            }),
            timeout: cfg.timeout,
            last_good: Vec::new(),
        }
    }

    async fn read(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let status: Vec<ClusterStatusEntry> = self.api.get("/cluster/status").await?;
        let view = ClusterView::from_status(&status, &self.node);
        let mut out = Collected::default();

        let node_path = format!("/nodes/{}/status", self.node);
        let node_status: NodeStatus = self.api.get(&node_path).await?;
        let node_id = resource_id(&self.node, canonical::node(&self.node))?;
        node_resource(&mut out, &node_id, &self.node, &view, &node_status, now_ms);

        let now_s = now_ms / 1000;
        let mut backup_pools = Vec::new();
        match self
            .api
            .get::<Vec<StorageEntry>>(&format!("/nodes/{}/storage", self.node))
            .await
        {
            Ok(pools) => {
                for pool in pools.iter().filter(|p| p.shared != Some(1.0)) {
                    let id =
                        resource_id(&pool.storage, canonical::storage(&self.node, &pool.storage))?;
                    storage_resource(&mut out, &id, Some(&node_id), pool, now_ms);
                    if pool.active == Some(1.0) && holds_backups(pool.content.as_deref()) {
                        backup_pools.push(pool.storage.clone());
                    }
                }
            }
            Err(e) => out.problems.push(e.to_string()),
        }
        self.disks(&mut out, &node_id, now_ms).await;
        match self
            .api
            .get::<Vec<serde_json::Value>>(&format!("/nodes/{}/apt/update", self.node))
            .await
        {
            Ok(updates) => out.sample(&node_id, "updates_pending", now_ms, updates.len() as f64),
            Err(e) => out.problems.push(e.to_string()),
        }

        let reporter = view.reporter.as_deref() == Some(self.node.as_str());
        let resources: Vec<ClusterResource> = if reporter {
            let resources: Vec<ClusterResource> = self.api.get("/cluster/resources").await?;
            cluster_objects(&mut out, &view, &resources, now_ms)?;
            match self
                .api
                .get::<Vec<HaEntry>>("/cluster/ha/status/current")
                .await
            {
                Ok(ha) => ha_states(&mut out, &view, &ha),
                Err(e) => out.problems.push(e.to_string()),
            }
            match self.api.get::<CephStatus>("/cluster/ceph/status").await {
                Ok(ceph) => ceph_resource(&mut out, &view, &ceph, now_ms)?,
                // A cluster without (PVE-managed) Ceph answers 500 "binary not installed"
                // or "not initialized": nothing to report, not a problem.
                Err(CollectorError::Proxmox(m))
                    if m.contains("not installed") || m.contains("not initialized") => {}
                Err(e) => out.problems.push(e.to_string()),
            }
            // Shared backup storage is read once, by the reporter.
            let mut shared: Vec<String> = resources
                .iter()
                .filter(|r| r.kind == "storage" && r.shared == Some(1.0))
                .filter(|r| {
                    r.status.as_deref() == Some("available") && holds_backups(r.content.as_deref())
                })
                .filter_map(|r| r.storage.clone())
                .collect();
            shared.sort();
            shared.dedup();
            backup_pools.extend(shared);
            resources
        } else {
            // Not the reporter: only what needs this node (its guests' balloon statistics
            // and backup failures).
            match self.api.get("/cluster/resources?type=vm").await {
                Ok(r) => r,
                Err(e) => {
                    out.problems.push(e.to_string());
                    Vec::new()
                }
            }
        };
        self.balloon_memory(&mut out, &view, &resources, now_ms)
            .await;
        self.failed_tasks(&mut out, &node_id, &view, &resources, now_s)
            .await;
        for pool in backup_pools {
            self.backups(&mut out, &view, &pool, now_s).await;
        }
        Ok(out)
    }

    /// Physical disks of this node with SMART health and wear-out.
    async fn disks(&mut self, out: &mut Collected, node_id: &ResourceId, now_ms: i64) {
        let disks = match self
            .api
            .get::<Vec<DiskEntry>>(&format!("/nodes/{}/disks/list", self.node))
            .await
        {
            Ok(d) => d,
            Err(e) => return out.problems.push(e.to_string()),
        };
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
            let status = match d.health.as_deref() {
                Some("PASSED" | "OK") => "healthy",
                Some("FAILED") => "failing",
                _ => "unknown",
            };
            put(out, &id, "disk_size_bytes", now_ms, d.size);
            // PVE shows wear-out as percent of life used, or "N/A" (then: unknown).
            put(out, &id, "disk_wearout_pct", now_ms, d.wearout);
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
    }

    /// Failed tasks of this node in the last 24 h: a count on the node, and per own guest the
    /// failed backups (vzdump), 0 included, since the task list was read successfully.
    async fn failed_tasks(
        &mut self,
        out: &mut Collected,
        node_id: &ResourceId,
        view: &ClusterView,
        resources: &[ClusterResource],
        now_s: i64,
    ) {
        let path = format!(
            "/nodes/{}/tasks?errors=1&limit=500&since={}",
            self.node,
            now_s - 86_400
        );
        let tasks = match self.api.get::<Vec<TaskEntry>>(&path).await {
            Ok(t) => t,
            Err(e) => return out.problems.push(e.to_string()),
        };
        let now_ms = now_s * 1000;
        out.sample(node_id, "tasks_failed_24h", now_ms, tasks.len() as f64);
        for r in resources
            .iter()
            .filter(|r| r.node.as_deref() == Some(self.node.as_str()))
        {
            let (Some(vmid), Some(kind)) = (r.vmid, guest_kind(&r.kind)) else {
                continue;
            };
            let vmid_text = (vmid as u32).to_string();
            let failed = tasks
                .iter()
                .filter(|t| t.kind == "vzdump" && t.id.as_deref() == Some(vmid_text.as_str()))
                .count();
            if let Ok(id) = canonical::guest(kind, &view.cluster, vmid as u32) {
                out.sample(&id, "backup_failed_24h", now_ms, failed as f64);
            }
        }
    }

    /// Age of the newest backup per guest on one backup storage, as
    /// `backup_last_age_seconds{storage="…"}` and `backup_count{storage="…"}`.
    async fn backups(
        &mut self,
        out: &mut Collected,
        view: &ClusterView,
        storage: &str,
        now_s: i64,
    ) {
        let path = format!(
            "/nodes/{}/storage/{storage}/content?content=backup",
            self.node
        );
        let entries = match self.api.get::<Vec<BackupEntry>>(&path).await {
            Ok(e) => e,
            Err(e) => return out.problems.push(e.to_string()),
        };
        let mut newest: std::collections::BTreeMap<(u32, ResourceKind), (i64, u32)> =
            Default::default();
        for e in &entries {
            let (Some(vmid), Some(ctime)) = (e.vmid, e.ctime) else {
                continue;
            };
            let kind = match e.subtype.as_deref() {
                Some("lxc") => ResourceKind::SystemContainer,
                _ => ResourceKind::Vm,
            };
            let slot = newest.entry((vmid as u32, kind)).or_insert((i64::MIN, 0));
            slot.0 = slot.0.max(ctime as i64);
            slot.1 += 1;
        }
        let now_ms = now_s * 1000;
        for ((vmid, kind), (ctime, count)) in newest {
            if let Ok(id) = canonical::guest(kind, &view.cluster, vmid) {
                let label = label_value(storage);
                out.sample(
                    &id,
                    format!("backup_last_age_seconds{{storage=\"{label}\"}}"),
                    now_ms,
                    (now_s - ctime).max(0) as f64,
                );
                out.sample(
                    &id,
                    format!("backup_count{{storage=\"{label}\"}}"),
                    now_ms,
                    f64::from(count),
                );
            }
        }
    }

    /// The memory running VMs on this node see themselves (balloon driver), as
    /// `guest_mem_used_bytes` / `guest_mem_total_bytes`; absent where the guest has no driver.
    async fn balloon_memory(
        &mut self,
        out: &mut Collected,
        view: &ClusterView,
        resources: &[ClusterResource],
        now_ms: i64,
    ) {
        let own_vms: Vec<u32> = resources
            .iter()
            .filter(|r| r.kind == "qemu" && r.node.as_deref() == Some(self.node.as_str()))
            .filter(|r| r.status.as_deref() == Some("running"))
            .filter_map(|r| r.vmid.map(|v| v as u32))
            .collect();
        for vmid in own_vms {
            let path = format!("/nodes/{}/qemu/{vmid}/status/current", self.node);
            match self.api.get::<GuestStatus>(&path).await {
                Ok(st) => {
                    let Some(b) = st.ballooninfo else { continue };
                    let (Some(total), Some(free)) = (b.total_mem, b.free_mem) else {
                        continue;
                    };
                    if let Ok(id) = canonical::guest(ResourceKind::Vm, &view.cluster, vmid) {
                        out.sample(&id, "guest_mem_total_bytes", now_ms, total);
                        out.sample(&id, "guest_mem_used_bytes", now_ms, total - free);
                    }
                }
                Err(e) => out.problems.push(e.to_string()),
            }
        }
    }
}

impl Collector for ProxmoxCollector {
    fn name(&self) -> &'static str {
        "proxmox"
    }

    async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let mut last_good = std::mem::take(&mut self.last_good);
        let result = settle(&mut last_good, self.timeout, self.read(now_ms)).await;
        self.last_good = last_good;
        result
    }
}

// ---- API shapes (field names as PVE sends them; numbers may arrive as strings) ----

#[derive(Deserialize)]
struct ClusterStatusEntry {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default, deserialize_with = "num")]
    online: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    quorate: Option<f64>,
}

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
struct NodeStatus {
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

#[derive(Deserialize)]
struct StorageEntry {
    storage: String,
    #[serde(rename = "type")]
    plugin: Option<String>,
    content: Option<String>,
    #[serde(default, deserialize_with = "num")]
    shared: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    active: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    enabled: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    total: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    used: Option<f64>,
}

#[derive(Deserialize)]
struct ClusterResource {
    #[serde(rename = "type")]
    kind: String,
    node: Option<String>,
    status: Option<String>,
    name: Option<String>,
    storage: Option<String>,
    plugintype: Option<String>,
    content: Option<String>,
    lock: Option<String>,
    #[serde(default, deserialize_with = "num")]
    vmid: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    template: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    shared: Option<f64>,
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

#[derive(Deserialize)]
struct TaskEntry {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

#[derive(Deserialize)]
struct BackupEntry {
    subtype: Option<String>,
    #[serde(default, deserialize_with = "num")]
    vmid: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    ctime: Option<f64>,
}

#[derive(Deserialize)]
struct CephStatus {
    health: Option<CephHealth>,
    pgmap: Option<CephPgMap>,
    osdmap: Option<CephOsdMap>,
}

#[derive(Deserialize)]
struct CephHealth {
    status: Option<String>,
    #[serde(default)]
    checks: std::collections::BTreeMap<String, serde_json::Value>,
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

#[derive(Deserialize)]
struct HaEntry {
    #[serde(rename = "type")]
    kind: String,
    sid: Option<String>,
    state: Option<String>,
}

#[derive(Deserialize)]
struct GuestStatus {
    ballooninfo: Option<BalloonInfo>,
}

#[derive(Deserialize)]
struct BalloonInfo {
    #[serde(default, deserialize_with = "num")]
    total_mem: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    free_mem: Option<f64>,
}

/// What `/cluster/status` says, reduced to what the collector decides with.
#[derive(Debug, PartialEq)]
struct ClusterView {
    /// The cluster name, or the node's own name when standalone.
    cluster: String,
    /// Nodes and whether the cluster sees them online.
    nodes: Vec<(String, bool)>,
    /// The online node with the lowest name: it reports cluster-wide objects.
    reporter: Option<String>,
    quorate: Option<bool>,
}

impl ClusterView {
    fn from_status(entries: &[ClusterStatusEntry], own: &str) -> Self {
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
            nodes,
        }
    }
}

/// The cluster's Ceph as `storage:<cluster>/ceph`: health, capacity and OSD counts.
fn ceph_resource(
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
        put(out, &id, "storage_total_bytes", now_ms, pg.bytes_total);
        put(out, &id, "storage_used_bytes", now_ms, pg.bytes_used);
        put(
            out,
            &id,
            "storage_used_pct",
            now_ms,
            pct(pg.bytes_used, pg.bytes_total),
        );
    }
    if let Some(osd) = &ceph.osdmap {
        put(out, &id, "ceph_osds_total", now_ms, osd.num_osds);
        put(out, &id, "ceph_osds_up", now_ms, osd.num_up_osds);
        put(out, &id, "ceph_osds_in", now_ms, osd.num_in_osds);
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

/// HA-managed guests get an `ha_state` attribute (`started`, `fence`, `error`, ...);
/// guests without one are not HA-managed.
fn ha_states(out: &mut Collected, view: &ClusterView, entries: &[HaEntry]) {
    for e in entries.iter().filter(|e| e.kind == "service") {
        let Some((kind, vmid)) = e.sid.as_deref().and_then(|s| s.split_once(':')) else {
            continue;
        };
        let kind = match kind {
            "vm" => ResourceKind::Vm,
            "ct" => ResourceKind::SystemContainer,
            _ => continue,
        };
        let Some(id) = vmid
            .parse()
            .ok()
            .and_then(|v| canonical::guest(kind, &view.cluster, v).ok())
        else {
            continue;
        };
        if let Some(r) = out.resources.iter_mut().find(|r| r.id == id) {
            r.attrs
                .push(("ha_state".into(), Value::from(e.state.clone())));
        }
    }
}

fn holds_backups(content: Option<&str>) -> bool {
    content.is_some_and(|c| c.split(',').any(|c| c.trim() == "backup"))
}

fn guest_kind(pve_type: &str) -> Option<ResourceKind> {
    match pve_type {
        "qemu" => Some(ResourceKind::Vm),
        "lxc" => Some(ResourceKind::SystemContainer),
        _ => None,
    }
}

fn node_resource(
    out: &mut Collected,
    id: &ResourceId,
    name: &str,
    view: &ClusterView,
    st: &NodeStatus,
    now_ms: i64,
) {
    // Memory used excludes cache: PVE 8+ sends `available`; older `used` already excludes it.
    let mem_used = match (st.memory.total, st.memory.available) {
        (Some(t), Some(a)) => Some(t - a),
        _ => st.memory.used,
    };
    put(out, id, "cpu_pct", now_ms, st.cpu.map(|c| c * 100.0));
    put(out, id, "mem_total_bytes", now_ms, st.memory.total);
    put(out, id, "mem_used_bytes", now_ms, mem_used);
    put(
        out,
        id,
        "mem_used_pct",
        now_ms,
        pct(mem_used, st.memory.total),
    );
    put(out, id, "swap_total_bytes", now_ms, st.swap.total);
    put(out, id, "swap_used_bytes", now_ms, st.swap.used);
    put(
        out,
        id,
        "rootfs_used_pct",
        now_ms,
        pct(st.rootfs.used, st.rootfs.total),
    );
    for (i, metric) in ["load1", "load5", "load15"].into_iter().enumerate() {
        put(
            out,
            id,
            metric,
            now_ms,
            st.loadavg.get(i).copied().flatten(),
        );
    }
    put(out, id, "uptime_seconds", now_ms, st.uptime);
    out.resources.push(Resource {
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
    });
}

fn storage_resource(
    out: &mut Collected,
    id: &ResourceId,
    parent: Option<&ResourceId>,
    p: &StorageEntry,
    now_ms: i64,
) {
    put(out, id, "storage_total_bytes", now_ms, p.total);
    put(out, id, "storage_used_bytes", now_ms, p.used);
    put(out, id, "storage_used_pct", now_ms, pct(p.used, p.total));
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

/// Guests, shared storage and offline nodes from `/cluster/resources` (reporter only).
fn cluster_objects(
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
                    put(out, &id, "cpu_pct", now_ms, r.cpu.map(|c| c * 100.0));
                    put(out, &id, "mem_used_bytes", now_ms, r.mem);
                    put(out, &id, "mem_used_pct", now_ms, pct(r.mem, r.maxmem));
                    put(out, &id, "uptime_seconds", now_ms, r.uptime);
                }
                put(out, &id, "mem_total_bytes", now_ms, r.maxmem);
                put(out, &id, "disk_total_bytes", now_ms, r.maxdisk);
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

    use crate::collectors::proxmox_api::Envelope;
    use serde::de::DeserializeOwned;

    fn fixture<T: DeserializeOwned>(name: &str) -> T {
        let path = format!(
            "{}/../tests/fixtures/pve/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str::<Envelope<T>>(&text).unwrap().data
    }

    fn value(out: &Collected, id: &str, metric: &str) -> Option<f64> {
        out.samples
            .iter()
            .find(|s| s.resource_id.as_str() == id && s.metric == metric)
            .map(|s| s.value)
    }

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
    fn node_status_becomes_metrics_without_zeros_for_unknowns() {
        let st: NodeStatus = fixture("nodes_node_status.pve7.4.json");
        let id = canonical::node("pve1").unwrap();
        let view = ClusterView {
            cluster: "c".into(),
            nodes: vec![],
            reporter: None,
            quorate: None,
        };
        let mut out = Collected::default();
        node_resource(&mut out, &id, "pve1", &view, &st, 1);
        assert_eq!(
            value(&out, "node:pve1", "mem_used_bytes"),
            Some(8_095_399_936.0)
        );
        assert_eq!(
            value(&out, "node:pve1", "load1"),
            Some(0.0),
            "loadavg arrives as strings"
        );
        assert!((value(&out, "node:pve1", "cpu_pct").unwrap() - 0.260_552).abs() < 1e-3);
        // Swap total is 0 here: there is no swap, so no percentage is invented.
        assert_eq!(value(&out, "node:pve1", "swap_total_bytes"), Some(0.0));
        let attrs = &out.resources[0].attrs;
        assert!(attrs.contains(&("quorate".into(), Value::Unknown)));
    }

    #[test]
    fn ha_services_mark_their_guests() {
        let ha: Vec<HaEntry> = fixture("ha_status_current.pve9.2_maintenance.json");
        let view = ClusterView {
            cluster: "c".into(),
            nodes: vec![],
            reporter: None,
            quorate: None,
        };
        let mut out = Collected::default();
        out.resources.push(Resource {
            id: canonical::guest(ResourceKind::Vm, "c", 100).unwrap(),
            name: "g".into(),
            parent: None,
            status: "running".into(),
            attrs: vec![],
        });
        ha_states(&mut out, &view, &ha);
        assert_eq!(
            out.resources[0].attrs,
            vec![("ha_state".into(), Value::from("started"))]
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
            value(&out, "vm:devcluster/100", "mem_used_bytes"),
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
            value(&out, "vm:devcluster/101", "cpu_pct"),
            None,
            "a stopped guest has no cpu sample"
        );
    }
}
