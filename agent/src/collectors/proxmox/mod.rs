//! The Proxmox VE collector: reads the node's own API (`https://127.0.0.1:8006/api2/json`)
//! with a read-only API token and turns it into nodes, guests and storage pools.
//!
//! Who reports what, so that a cluster is described once and the same way whichever agent
//! does it:
//! - every agent reports its own node (`/nodes/{node}/status`), its node-local storage
//!   (`/nodes/{node}/storage`, `shared = 0`) and disks, and, for its running VMs, the memory
//!   the guest itself sees (balloon statistics);
//! - the *reporter*, the online node with the lowest name in `/cluster/status`, also reports
//!   the cluster-wide objects from `/cluster/resources`: every guest (named by cluster and
//!   VMID, so migrations keep the id), shared storage, Ceph, and nodes the cluster sees
//!   offline;
//! - every agent reports its ZFS pools (`/nodes/{node}/disks/zfs`) and the replication jobs
//!   whose guest runs on it (`/nodes/{node}/replication` lists exactly those, with the state
//!   only that node keeps): samples on the guest, and the job's state and last error as a
//!   `replication:<cluster>/<job>` resource whose parent is the guest. The guest resource
//!   itself stays the reporter's.
//!
//! Ownership: the server keeps the last description it received of a resource, so two agents
//! describing one resource would overwrite each other (a status flapping between `online` and
//! `offline`). Every resource id therefore has exactly one writing agent at a time, decided by
//! the cluster view, which all agents of a cluster read alike:
//! - `node:<n>` is the agent of `n` while the cluster sees `n` online, and the reporter's
//!   (status `offline`) while it sees `n` offline. An agent whose own node the cluster sees
//!   offline but whose API still answers sends its node's samples, not the node resource;
//! - guests, shared storage and Ceph are the reporter's;
//! - a node's local storage, ZFS pools and disks are its agent's; nobody else writes them;
//! - a replication job is the agent's of the node its guest runs on.
//!
//! Failures: each request has its own time limit and transient failures are retried (see
//! [`ApiClient`]); reads start only until 80 % of the timeout, so a run always ends with what
//! it read. A read that still fails costs only its part: the run is `Degraded`, naming each
//! failed read. Where a read describes resources, its failure re-sends the last good ones
//! marked `stale = true` rather than nothing: `/nodes/{node}/status` the node,
//! `/cluster/resources` (reporter) the guests, shared storage and offline nodes. Other
//! failed lists (storage, disks, pools, replication) leave their resources out for the run.
//! A run fails as a whole when it cannot read `/cluster/status` or reads nothing else (a node
//! whose own API answers nothing): it sends no samples, is `Degraded` with the reason, and
//! re-sends as stale those of its last good resources it still owns: under the view the
//! failed run read, or, when it could not read `/cluster/status`, only the node-local ones,
//! which no other agent can own (on a standalone node: all). Replication jobs are never
//! re-sent: their owner follows the guest, which a failed run cannot see. Nothing is ever
//! reported as zero for "unknown". In a network partition each side has its own view and
//! reporter; the rule holds per view.
//!
//! Backups: a scheduled backup job over several guests runs as one `vzdump` task without a
//! VMID; when it fails (`job errors`), its log (read once per task) says which guests
//! failed. Failed backup tasks that name no guest are counted on the node.
//!
//! Slow reads: what changes slowly and costs the node something per read runs at its own
//! cadence, not every run: SMART data per disk (a `smartctl` run each; disk temperature)
//! and each own running VM's filesystems through its guest agent (a round trip into the
//! guest, up to seconds when the agent hangs) every 5 minutes, the node's certificates once
//! an hour. A read is due again only after it succeeded, so a failing one keeps the run
//! `Degraded` with its reason; they share a quarter of the run's timeout, and what does not
//! fit waits for the next run. Their schedule advances only with a successful run, whose
//! samples reach the server. The time a certificate has left is sent every run, computed
//! from the last answer (its expiry does not change between readings).

pub(crate) mod api;

use self::api::{
    ApiClient, Endpoint, Product, label_value, mark_stale, num, nums, pct, put, settle,
};
use super::{Collected, Collector, CollectorError, ProxmoxConfig, resource_id};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use tracing::warn;
use warden_shared::ResourceId;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Provenance, Resource, Value};

/// A metric of a node.
const fn node(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::Node, metric, "proxmox", method)
}

/// A metric of a VM.
const fn vm(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::Vm, metric, "proxmox", method)
}

/// A metric of a container.
const fn lxc(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::SystemContainer, metric, "proxmox", method)
}

/// A metric of a storage: PVE storage, ZFS pool or Ceph.
const fn storage(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::Storage, metric, "proxmox", method)
}

/// A metric of a physical disk.
const fn disk(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::PhysicalDisk, metric, "proxmox", method)
}

/// Methods VMs and containers share.
const GUEST_CPU: &str = "GET /cluster/resources (reporter): cpu x 100, running guests only";
const GUEST_MEM_USED: &str = "GET /cluster/resources (reporter): mem, running guests only";
const GUEST_MEM_PCT: &str =
    "GET /cluster/resources (reporter): mem / maxmem x 100, running guests only";
const GUEST_UPTIME: &str = "GET /cluster/resources (reporter): uptime, running guests only";
const GUEST_MEM_TOTAL: &str = "GET /cluster/resources (reporter): maxmem";
const GUEST_DISK_TOTAL: &str = "GET /cluster/resources (reporter): maxdisk";
const GUEST_BACKUP_FAILED: &str = "GET /nodes/{node}/tasks?errors=1&limit=500&since=<now - 24 h> \
     on the guest's node (node from /cluster/resources): failed tasks (status not OK nor \
     WARNINGS) of type vzdump whose id is the VMID, plus failed backup jobs without an id whose \
     log (GET /nodes/{node}/tasks/{upid}/log, read once per task) has 'ERROR: Backup of VM \
     <vmid> failed', else lists the VMID and never finished it; counted (0 when there are \
     none)";
const REPLICATION_FAIL_COUNT: &str = "GET /nodes/{node}/replication on the node the guest runs \
     on: fail_count of the job (label job = the job id)";
const REPLICATION_AGE: &str = "GET /nodes/{node}/replication on the node the guest runs on: \
     now - last_sync of the job, absent while last_sync is 0 (never synced; label job)";
const REPLICATION_DURATION: &str = "GET /nodes/{node}/replication on the node the guest runs \
     on: duration of the job's last sync (label job)";

/// Where each metric comes from: the node's own PVE API (paths relative to `/api2/json`;
/// `{node}` is the agent's node unless said otherwise).
const PROVENANCE: &[Provenance] = &[
    node("cpu_pct", "GET /nodes/{node}/status: cpu x 100"),
    node("mem_total_bytes", "GET /nodes/{node}/status: memory.total"),
    node(
        "mem_used_bytes",
        "GET /nodes/{node}/status: memory.total - memory.available (PVE 8+), else \
         memory.used (both exclude cache)",
    ),
    node(
        "mem_used_pct",
        "GET /nodes/{node}/status: (memory.total - memory.available, else memory.used) / \
         memory.total x 100",
    ),
    node("swap_total_bytes", "GET /nodes/{node}/status: swap.total"),
    node("swap_used_bytes", "GET /nodes/{node}/status: swap.used"),
    node(
        "rootfs_used_pct",
        "GET /nodes/{node}/status: rootfs.used / rootfs.total x 100",
    ),
    node(
        "load1",
        "GET /nodes/{node}/status: loadavg[0] (sent as text)",
    ),
    node(
        "load5",
        "GET /nodes/{node}/status: loadavg[1] (sent as text)",
    ),
    node(
        "load15",
        "GET /nodes/{node}/status: loadavg[2] (sent as text)",
    ),
    node("uptime_seconds", "GET /nodes/{node}/status: uptime"),
    node(
        "updates_pending",
        "GET /nodes/{node}/apt/update: entries, counted",
    ),
    node(
        "tasks_failed_24h",
        "GET /nodes/{node}/tasks?errors=1&limit=500&since=<now - 24 h>: entries, counted \
         (at most 500)",
    ),
    node(
        "backup_failed_unattributed_24h",
        "GET /nodes/{node}/tasks?errors=1&limit=500&since=<now - 24 h>: failed vzdump tasks \
         without a VMID whose log (GET /nodes/{node}/tasks/{upid}/log, at most 4 new logs a \
         run) names no failed guest or is not read yet, counted",
    ),
    node(
        "cert_expires_in_seconds",
        "GET /nodes/{node}/certificates/info (once an hour): notafter - now per certificate \
         (label file = filename: pve-root-ca.pem, pve-ssl.pem, pveproxy-ssl.pem), sent every \
         run from the last answer",
    ),
    vm("cpu_pct", GUEST_CPU),
    vm("mem_used_bytes", GUEST_MEM_USED),
    vm("mem_used_pct", GUEST_MEM_PCT),
    vm("uptime_seconds", GUEST_UPTIME),
    vm("mem_total_bytes", GUEST_MEM_TOTAL),
    vm("disk_total_bytes", GUEST_DISK_TOTAL),
    vm(
        "guest_mem_total_bytes",
        "GET /nodes/{node}/qemu/{vmid}/status/current (running VMs of the agent's node): \
         ballooninfo.total_mem, absent without a balloon driver",
    ),
    vm(
        "guest_mem_used_bytes",
        "GET /nodes/{node}/qemu/{vmid}/status/current (running VMs of the agent's node): \
         ballooninfo.total_mem - ballooninfo.free_mem, absent without a balloon driver",
    ),
    vm(
        "guest_fs_used_bytes",
        "GET /nodes/{node}/qemu/{vmid}/agent/get-fsinfo (running VMs of the agent's node whose \
         guest agent is enabled, per status/current agent = 1; each every 5 minutes): \
         result[].used-bytes per filesystem (label mountpoint; read-only images such as \
         squashfs and iso9660 skipped, one mount per device)",
    ),
    vm(
        "guest_fs_total_bytes",
        "GET /nodes/{node}/qemu/{vmid}/agent/get-fsinfo (as guest_fs_used_bytes): \
         result[].total-bytes (excludes blocks reserved for root, like df)",
    ),
    vm(
        "guest_fs_used_pct",
        "GET /nodes/{node}/qemu/{vmid}/agent/get-fsinfo (as guest_fs_used_bytes): \
         result[].used-bytes / total-bytes x 100",
    ),
    vm("backup_failed_24h", GUEST_BACKUP_FAILED),
    vm(
        "backup_last_age_seconds",
        "GET /nodes/{node}/storage/{storage}/content?content=backup (node-local backup \
         storage by its node's agent, shared by the reporter): now - newest ctime of the \
         VMID's backups whose subtype is not lxc (label storage)",
    ),
    vm(
        "backup_count",
        "GET /nodes/{node}/storage/{storage}/content?content=backup: the VMID's backups whose \
         subtype is not lxc, counted (label storage)",
    ),
    vm("replication_fail_count", REPLICATION_FAIL_COUNT),
    vm("replication_last_sync_age_seconds", REPLICATION_AGE),
    vm("replication_last_duration_seconds", REPLICATION_DURATION),
    lxc("cpu_pct", GUEST_CPU),
    lxc("mem_used_bytes", GUEST_MEM_USED),
    lxc("mem_used_pct", GUEST_MEM_PCT),
    lxc("uptime_seconds", GUEST_UPTIME),
    lxc("mem_total_bytes", GUEST_MEM_TOTAL),
    lxc("disk_total_bytes", GUEST_DISK_TOTAL),
    lxc(
        "disk_used_bytes",
        "GET /cluster/resources (reporter): disk (the root disk), running containers only",
    ),
    lxc(
        "disk_used_pct",
        "GET /cluster/resources (reporter): disk / maxdisk x 100, running containers only",
    ),
    lxc("backup_failed_24h", GUEST_BACKUP_FAILED),
    lxc(
        "backup_last_age_seconds",
        "GET /nodes/{node}/storage/{storage}/content?content=backup (node-local backup \
         storage by its node's agent, shared by the reporter): now - newest ctime of the \
         VMID's backups with subtype lxc (label storage)",
    ),
    lxc(
        "backup_count",
        "GET /nodes/{node}/storage/{storage}/content?content=backup: the VMID's backups with \
         subtype lxc, counted (label storage)",
    ),
    lxc("replication_fail_count", REPLICATION_FAIL_COUNT),
    lxc("replication_last_sync_age_seconds", REPLICATION_AGE),
    lxc("replication_last_duration_seconds", REPLICATION_DURATION),
    storage(
        "storage_total_bytes",
        "node-local PVE storage: GET /nodes/{node}/storage total; shared PVE storage: \
         GET /cluster/resources (reporter) maxdisk; ZFS pool: GET /nodes/{node}/disks/zfs \
         size; Ceph: GET /cluster/ceph/status (reporter) pgmap.bytes_total",
    ),
    storage(
        "storage_used_bytes",
        "node-local PVE storage: GET /nodes/{node}/storage used; shared PVE storage: \
         GET /cluster/resources (reporter) disk; ZFS pool: GET /nodes/{node}/disks/zfs \
         alloc; Ceph: GET /cluster/ceph/status (reporter) pgmap.bytes_used",
    ),
    storage(
        "storage_used_pct",
        "node-local PVE storage: GET /nodes/{node}/storage used / total x 100; shared PVE \
         storage: GET /cluster/resources (reporter) disk / maxdisk x 100; ZFS pool: \
         GET /nodes/{node}/disks/zfs alloc / size x 100; Ceph: GET /cluster/ceph/status \
         (reporter) pgmap.bytes_used / pgmap.bytes_total x 100",
    ),
    storage(
        "storage_free_bytes",
        "ZFS pools only: GET /nodes/{node}/disks/zfs free",
    ),
    storage("zfs_frag_pct", "GET /nodes/{node}/disks/zfs: frag"),
    storage("zfs_dedup_ratio", "GET /nodes/{node}/disks/zfs: dedup"),
    storage(
        "ceph_osds_total",
        "GET /cluster/ceph/status (reporter): osdmap.num_osds",
    ),
    storage(
        "ceph_osds_up",
        "GET /cluster/ceph/status (reporter): osdmap.num_up_osds",
    ),
    storage(
        "ceph_osds_in",
        "GET /cluster/ceph/status (reporter): osdmap.num_in_osds",
    ),
    disk("disk_size_bytes", "GET /nodes/{node}/disks/list: size"),
    disk(
        "disk_wearout_pct",
        "GET /nodes/{node}/disks/list: wearout (percent of life left, 100 = new), absent \
         when PVE says N/A",
    ),
    disk(
        "disk_temp_celsius",
        "GET /nodes/{node}/disks/smart?disk={devpath} (each disk every 5 minutes): ATA \
         attribute 194 (else 190 Airflow_Temperature_Cel), first number of raw; NVMe text \
         'Temperature: N Celsius'; SAS text 'Current Drive Temperature: N C'; absent when \
         the drive reports none (or 0)",
    ),
];

/// Most task logs read per run (each once, see `ProxmoxCollector::task_logs`); the others
/// wait for the next runs.
const MAX_TASK_LOGS_PER_RUN: usize = 4;
/// Most lines of a task log read: a backup job logs some dozens per guest.
const TASK_LOG_LINES: u32 = 20_000;
/// How often each disk's SMART data is read: a `smartctl` run on the node per disk.
const SMART_EVERY_MS: i64 = 5 * 60_000;
/// How often each VM's filesystems are read through its guest agent.
const GUEST_FS_EVERY_MS: i64 = 5 * 60_000;
/// How often the node's certificates are read.
const CERTS_EVERY_MS: i64 = 3_600_000;
/// How long guest-agent reads pause after a 403: PVE 8 requires `VM.Monitor` for them, which
/// `PVEAuditor` lacks (PVE 9's `VM.GuestAgent.Audit` is in it).
const AGENT_DENIED_PAUSE_MS: i64 = 3_600_000;
/// Filesystems a guest agent may list whose usage means nothing: read-only images, always
/// full (snap packages, a cloud-init or installer CD).
const IMAGE_FS: &[&str] = &["squashfs", "iso9660", "udf"];
/// Most filesystems reported per VM (a Kubernetes node may mount hundreds of volumes).
const MAX_GUEST_FS: usize = 32;

/// Reads the Proxmox VE API of this node.
pub(crate) struct ProxmoxCollector {
    node: String,
    api: ApiClient,
    timeout: std::time::Duration,
    /// Resources of the last fully successful run; a failed run re-sends those it still owns
    /// as stale.
    last_good: Vec<Resource>,
    /// The cluster view of the current run, once `/cluster/status` answered.
    view: Option<ClusterView>,
    /// Whether the last view read was a standalone node's: then no other agent can own
    /// anything this one reports.
    standalone: bool,
    /// The schedule of slow reads as of the last successful run.
    slow: SlowReads,
    /// The schedule the current run leaves, committed when it succeeds.
    next_slow: Option<SlowReads>,
    /// What the logs of failed multi-guest backup jobs said, by UPID: the VMIDs whose backup
    /// failed (empty: none named). A finished task's log does not change, so each is read
    /// once; entries leave with their task's 24 h.
    task_logs: BTreeMap<String, Vec<u32>>,
    /// Disks whose SMART health text was not understood and already logged, by id.
    odd_health: HashSet<ResourceId>,
}

/// A read done at its own cadence (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SlowRead {
    /// `/nodes/{node}/certificates/info`.
    Certificates,
    /// `/nodes/{node}/disks/smart` of one device path.
    Smart(String),
    /// `/nodes/{node}/qemu/{vmid}/agent/get-fsinfo` of one VM.
    GuestFs(u32),
}

/// When slow reads are due, and what is kept between them.
#[derive(Debug, Clone, Default)]
struct SlowReads {
    /// When each read is due next, ms since the epoch; a read not listed is due now.
    due: BTreeMap<SlowRead, i64>,
    /// Guest-agent reads pause until then (ms), after a 403.
    agent_denied_until_ms: i64,
    /// The certificates of the last successful read: file name (label-safe), expiry (epoch s).
    certs: Vec<(String, f64)>,
}

impl SlowReads {
    fn is_due(&self, read: &SlowRead, now_ms: i64) -> bool {
        self.due.get(read).is_none_or(|t| *t <= now_ms)
    }
}

/// The time slow reads may take in one run.
struct Budget {
    until: tokio::time::Instant,
}

impl Budget {
    /// `d` from now, but never past `deadline`.
    fn new(d: std::time::Duration, deadline: tokio::time::Instant) -> Self {
        Self {
            until: (tokio::time::Instant::now() + d).min(deadline),
        }
    }

    /// `read`'s outcome, or `None` when the budget runs out first (or already has).
    async fn run<T>(&self, read: impl Future<Output = T>) -> Option<T> {
        let left = self
            .until
            .checked_duration_since(tokio::time::Instant::now())
            .filter(|d| !d.is_zero())?;
        tokio::time::timeout(left, read).await.ok()
    }
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
            view: None,
            standalone: false,
            slow: SlowReads::default(),
            next_slow: None,
            task_logs: BTreeMap::new(),
            odd_health: HashSet::new(),
        }
    }

    async fn read(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        self.api.start_run();
        self.view = None;
        let status: Vec<ClusterStatusEntry> = self.api.get("/cluster/status").await?;
        let view = ClusterView::from_status(&status, &self.node);
        self.standalone = view.standalone;
        self.view = Some(view.clone());
        let mut out = Collected::default();

        // What no other agent can tell comes first, the node-local details after: a run cut
        // short by slow or failing endpoints still reports the node and the guests.
        let node_path = format!("/nodes/{}/status", self.node);
        let node_id = resource_id(&self.node, canonical::node(&self.node))?;
        match self.api.get::<NodeStatus>(&node_path).await {
            Ok(node_status) => {
                let node =
                    node_resource(&mut out, &node_id, &self.node, &view, &node_status, now_ms);
                // While the cluster sees this node offline, the reporter describes it
                // (`offline`); this agent adds only what it measured.
                if view.describes_itself(&self.node) {
                    out.resources.push(node);
                }
            }
            Err(e) => {
                out.problems.push(e.to_string());
                if view.describes_itself(&self.node) {
                    self.resend_stale(&mut out, |r| r.id == node_id);
                }
            }
        }

        let now_s = now_ms / 1000;
        let mut backup_pools = Vec::new();
        let reporter = view.reporter.as_deref() == Some(self.node.as_str());
        let resources: Vec<ClusterResource> = if reporter {
            let resources = match self
                .api
                .get::<Vec<ClusterResource>>("/cluster/resources")
                .await
            {
                Ok(resources) => {
                    cluster_objects(&mut out, &view, &resources, now_ms)?;
                    match self
                        .api
                        .get::<Vec<HaEntry>>("/cluster/ha/status/current")
                        .await
                    {
                        Ok(ha) => ha_states(&mut out, &view, &ha),
                        Err(e) => out.problems.push(e.to_string()),
                    }
                    resources
                }
                // The guests, shared storage and offline nodes of the last good run stay,
                // marked stale, rather than disappear (a node the cluster sees online again
                // is its own agent's).
                Err(e) => {
                    out.problems.push(e.to_string());
                    let ceph = canonical::storage(&view.cluster, "ceph").ok();
                    self.resend_stale(&mut out, |r| {
                        Some(&r.id) != ceph.as_ref()
                            && is_cluster_object(r, &self.node)
                            && (r.id.kind() != "node" || !view.is_online(r.id.name()))
                    });
                    Vec::new()
                }
            };
            match self
                .api
                .get_unless::<CephStatus>("/cluster/ceph/status", ceph_absent)
                .await
            {
                Ok(ceph) => ceph_resource(&mut out, &view, &ceph, now_ms)?,
                // A cluster without (PVE-managed) Ceph answers 500 "binary not installed"
                // or "not initialized": nothing to report, not a problem.
                Err(CollectorError::Proxmox(m)) if ceph_absent(&m) => {}
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
        let disks = self.disks(&mut out, &node_id, now_ms).await;
        self.zfs_pools(&mut out, &node_id, now_ms).await;
        match self
            .api
            .get::<Vec<serde_json::Value>>(&format!("/nodes/{}/apt/update", self.node))
            .await
        {
            Ok(updates) => out.sample(&node_id, "updates_pending", now_ms, updates.len() as f64),
            Err(e) => out.problems.push(e.to_string()),
        }

        let agent_vms = self
            .balloon_memory(&mut out, &view, &resources, now_ms)
            .await;
        self.replication(&mut out, &view, &resources, now_ms).await;
        self.failed_tasks(&mut out, &node_id, &view, &resources, now_s)
            .await;
        for pool in backup_pools {
            self.backups(&mut out, &view, &pool, now_s).await;
        }

        // Nothing read but the cluster view (a node whose own API answers nothing): a failed
        // run, which re-sends what this agent still owns.
        if out.samples.is_empty()
            && out.resources.iter().all(is_stale)
            && let Some(first) = out.problems.first()
        {
            let more = out.problems.len() - 1;
            return Err(CollectorError::Proxmox(if more == 0 {
                first.clone()
            } else {
                format!("{first} (and {more} more failed reads)")
            }));
        }

        // Slow reads come last, within their own budget: the rest of the run is done by then.
        // The budget also ends well before `settle` (at 90 % of the timeout) would fail the
        // whole run.
        let mut slow = self.slow.clone();
        let budget = Budget::new(self.timeout / 4, self.api.deadline());
        self.certificates(&mut out, &mut slow, &budget, &node_id, now_ms)
            .await;
        if let Some(disks) = &disks {
            self.smart(&mut out, &mut slow, &budget, disks, now_ms)
                .await;
        }
        self.guest_filesystems(&mut out, &mut slow, &budget, &view, &agent_vms, now_ms)
            .await;
        self.next_slow = Some(slow);
        Ok(out)
    }

    /// The node's certificates: read once an hour, and every run the time each has left
    /// according to the last answer, as `cert_expires_in_seconds{file="…"}` on the node.
    async fn certificates(
        &mut self,
        out: &mut Collected,
        slow: &mut SlowReads,
        budget: &Budget,
        node_id: &ResourceId,
        now_ms: i64,
    ) {
        if slow.is_due(&SlowRead::Certificates, now_ms) {
            let path = format!("/nodes/{}/certificates/info", self.node);
            match budget.run(self.api.get::<Vec<CertInfo>>(&path)).await {
                // Out of time: the next run reads them.
                None => {}
                Some(Ok(certs)) => {
                    slow.certs = certs
                        .into_iter()
                        .filter_map(|c| Some((label_value(&c.filename?), c.notafter?)))
                        .collect();
                    slow.due
                        .insert(SlowRead::Certificates, now_ms + CERTS_EVERY_MS);
                }
                Some(Err(e)) => out.problems.push(e.to_string()),
            }
        }
        let now_s = now_ms as f64 / 1000.0;
        for (file, not_after) in &slow.certs {
            out.sample(
                node_id,
                format!("cert_expires_in_seconds{{file=\"{file}\"}}"),
                now_ms,
                not_after - now_s,
            );
        }
    }

    /// Temperature of this node's disks from SMART (`disk_temp_celsius`), each disk every
    /// [`SMART_EVERY_MS`].
    async fn smart(
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
                        "disk_temp_celsius",
                        now_ms,
                        smart_temperature(&data),
                    );
                    slow.due.insert(read, now_ms + SMART_EVERY_MS);
                }
                Some(Err(e)) => out.problems.push(e.to_string()),
            }
        }
    }

    /// The filesystems of this node's running VMs with an enabled guest agent (`vms`), each
    /// VM every [`GUEST_FS_EVERY_MS`] (see [`guest_fs_samples`]). A guest agent that is not
    /// running or does not answer is the guest's business, not a problem of the run; a 403
    /// pauses these reads for [`AGENT_DENIED_PAUSE_MS`].
    async fn guest_filesystems(
        &mut self,
        out: &mut Collected,
        slow: &mut SlowReads,
        budget: &Budget,
        view: &ClusterView,
        vms: &[u32],
        now_ms: i64,
    ) {
        slow.due.retain(|read, _| match read {
            SlowRead::GuestFs(v) => vms.contains(v),
            _ => true,
        });
        if now_ms < slow.agent_denied_until_ms {
            return;
        }
        for &vmid in vms {
            let read = SlowRead::GuestFs(vmid);
            if !slow.is_due(&read, now_ms) {
                continue;
            }
            let path = format!("/nodes/{}/qemu/{vmid}/agent/get-fsinfo", self.node);
            match budget
                .run(
                    self.api
                        .get_unless::<AgentResult<Vec<GuestFsInfo>>>(&path, agent_unavailable),
                )
                .await
            {
                None => break,
                Some(Ok(answer)) => {
                    if let Ok(id) = canonical::guest(ResourceKind::Vm, &view.cluster, vmid) {
                        guest_fs_samples(out, &id, &answer.result, now_ms);
                    }
                    slow.due.insert(read, now_ms + GUEST_FS_EVERY_MS);
                }
                Some(Err(CollectorError::Proxmox(m))) if m.contains("(403 ") => {
                    warn!(
                        node = %self.node,
                        error = %m,
                        "guest agent reads are not permitted, so VM filesystem usage is not \
                         collected (PVE 9: VM.GuestAgent.Audit, in PVEAuditor; PVE 8: \
                         VM.Monitor); retrying in an hour"
                    );
                    slow.agent_denied_until_ms = now_ms + AGENT_DENIED_PAUSE_MS;
                    break;
                }
                Some(Err(CollectorError::Proxmox(m))) if agent_unavailable(&m) => {
                    slow.due.insert(read, now_ms + GUEST_FS_EVERY_MS);
                }
                Some(Err(e)) => out.problems.push(e.to_string()),
            }
        }
    }

    /// Physical disks of this node with SMART health and wear-out; returns their device
    /// paths and ids, or `None` when the list could not be read.
    async fn disks(
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
            put(out, &id, "disk_size_bytes", now_ms, d.size);
            // PVE's `wearout` is the percent of life left (100 = new; its GUI shows 100 minus
            // this), or "N/A" (then: unknown).
            put(out, &id, "disk_wearout_pct", now_ms, d.wearout);
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

    /// This node's ZFS pools (see [`zfs_resource`]); for a pool that is not `ONLINE` also
    /// `zpool status`'s explanation. A node without ZFS tools has none, which is no problem.
    async fn zfs_pools(&mut self, out: &mut Collected, node_id: &ResourceId, now_ms: i64) {
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

    /// Replication jobs whose guest runs on this node (see [`replication_job`]).
    async fn replication(
        &mut self,
        out: &mut Collected,
        view: &ClusterView,
        resources: &[ClusterResource],
        now_ms: i64,
    ) {
        let path = format!("/nodes/{}/replication", self.node);
        match self.api.get::<Vec<ReplicationEntry>>(&path).await {
            Ok(jobs) => {
                for job in &jobs {
                    replication_job(out, view, resources, &self.node, job, now_ms);
                }
            }
            Err(e) => out.problems.push(e.to_string()),
        }
    }

    /// Failed tasks of this node in the last 24 h: a count on the node, and per own guest the
    /// failed backups (vzdump), 0 included, since the task list was read successfully. A
    /// backup job over several guests runs as one task without a VMID; its log names the
    /// guests whose backup failed (see [`vzdump_failures`]). Failed backup tasks no guest
    /// can be named for are counted on the node (`backup_failed_unattributed_24h`).
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
        // Failed backups per VMID.
        let mut failed: BTreeMap<u32, u32> = BTreeMap::new();
        let mut unattributed = 0u32;
        let mut reads = 0;
        for task in &tasks {
            let upid = task.upid.as_deref().and_then(Upid::parse);
            let kind = task.kind.as_deref().or(upid.as_ref().map(|u| u.kind));
            if kind != Some("vzdump") || !backup_failed(task.status.as_deref()) {
                continue;
            }
            let id = task.id.as_deref().or(upid.as_ref().map(|u| u.id));
            if let Some(vmid) = id.and_then(|i| i.parse::<u32>().ok()) {
                *failed.entry(vmid).or_default() += 1;
                continue;
            }
            let Some(upid) = task.upid.as_deref().filter(|_| upid.is_some()) else {
                unattributed += 1;
                continue;
            };
            if !self.task_logs.contains_key(upid) && reads < MAX_TASK_LOGS_PER_RUN {
                reads += 1;
                let log = format!(
                    "/nodes/{}/tasks/{}/log?start=0&limit={TASK_LOG_LINES}",
                    self.node,
                    path_segment(upid)
                );
                match self.api.get::<Vec<TaskLogLine>>(&log).await {
                    Ok(lines) => {
                        let guests = vzdump_failures(lines.iter().map(|l| l.t.as_str()));
                        self.task_logs.insert(upid.to_owned(), guests);
                    }
                    Err(e) => out.problems.push(e.to_string()),
                }
            }
            match self.task_logs.get(upid).filter(|g| !g.is_empty()) {
                Some(guests) => {
                    for vmid in guests {
                        *failed.entry(*vmid).or_default() += 1;
                    }
                }
                // Not read yet (the next run reads it) or naming nobody.
                None => unattributed += 1,
            }
        }
        self.task_logs
            .retain(|upid, _| tasks.iter().any(|t| t.upid.as_deref() == Some(upid)));
        out.sample(
            node_id,
            "backup_failed_unattributed_24h",
            now_ms,
            f64::from(unattributed),
        );
        for r in resources
            .iter()
            .filter(|r| r.node.as_deref() == Some(self.node.as_str()))
        {
            let (Some(vmid), Some(kind)) = (r.vmid, guest_kind(&r.kind)) else {
                continue;
            };
            let count = failed.get(&(vmid as u32)).copied().unwrap_or(0);
            if let Ok(id) = canonical::guest(kind, &view.cluster, vmid as u32) {
                out.sample(&id, "backup_failed_24h", now_ms, f64::from(count));
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
        let mut newest: BTreeMap<(u32, ResourceKind), (i64, u32)> = Default::default();
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
    /// Returns those VMs whose guest agent is enabled.
    async fn balloon_memory(
        &mut self,
        out: &mut Collected,
        view: &ClusterView,
        resources: &[ClusterResource],
        now_ms: i64,
    ) -> Vec<u32> {
        let mut with_agent = Vec::new();
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
                    if st.agent == Some(1.0) {
                        with_agent.push(vmid);
                    }
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
        with_agent
    }

    /// Re-sends, marked stale, the resources of the last good run that `which` selects: for
    /// a part of the run that could not be read.
    fn resend_stale(&self, out: &mut Collected, which: impl Fn(&Resource) -> bool) {
        out.resources.extend(
            self.last_good
                .iter()
                .filter(|r| which(r))
                .cloned()
                .map(mark_stale),
        );
    }

    /// Whether a resource of the last good run is still this agent's to write, in a run that
    /// failed: under the view this run read, or, without one, only what no other agent can
    /// ever write (the node's local storage, pools and disks; on a standalone node all).
    fn still_owned(&self, r: &Resource) -> bool {
        let own = self.node.as_str();
        let view = self.view.as_ref();
        match r.id.kind() {
            // Its owner follows the guest, which a failed run cannot see.
            REPLICATION_PREFIX => false,
            "node" if r.id.name() == own => {
                view.map_or(self.standalone, |v| v.describes_itself(own))
            }
            // A node the cluster saw offline: the reporter's while it still is.
            "node" => view.map_or(self.standalone, |v| {
                v.is_reporter(own) && !v.is_online(r.id.name())
            }),
            "storage" | "disk"
                if r.parent
                    .as_ref()
                    .is_some_and(|p| p.kind() == "node" && p.name() == own) =>
            {
                true
            }
            // Guests, shared storage, Ceph.
            _ => view.map_or(self.standalone, |v| v.is_reporter(own)),
        }
    }
}

impl Collector for ProxmoxCollector {
    fn name(&self) -> &'static str {
        "proxmox"
    }

    fn provenance(&self) -> &[Provenance] {
        PROVENANCE
    }

    async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        // `settle` bounds the run; it gets nothing to fall back on, because what a failed run
        // may re-send depends on who owns what now (see the module doc).
        let mut fresh = Vec::new();
        self.next_slow = None;
        match settle(&mut fresh, self.timeout, self.read(now_ms)).await {
            Ok(out) => {
                self.last_good = fresh;
                if let Some(slow) = self.next_slow.take() {
                    self.slow = slow;
                }
                Ok(out)
            }
            Err(e) => {
                let stale: Vec<Resource> = self
                    .last_good
                    .iter()
                    .filter(|r| self.still_owned(r))
                    .cloned()
                    .map(mark_stale)
                    .collect();
                if stale.is_empty() {
                    return Err(e);
                }
                Ok(Collected {
                    resources: stale,
                    samples: Vec::new(),
                    problems: vec![e.to_string()],
                })
            }
        }
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

/// One entry of `/nodes/{node}/tasks`; `type` and `id` repeat what the UPID says.
#[derive(Deserialize)]
struct TaskEntry {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    upid: Option<String>,
    /// `OK`, `WARNINGS: n`, or the error (`job errors` for a backup job with failed guests).
    status: Option<String>,
}

/// One line of `/nodes/{node}/tasks/{upid}/log`.
#[derive(Deserialize)]
struct TaskLogLine {
    #[serde(default)]
    t: String,
}

#[derive(Deserialize)]
struct BackupEntry {
    subtype: Option<String>,
    #[serde(default, deserialize_with = "num")]
    vmid: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    ctime: Option<f64>,
}

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

/// One entry of `/nodes/{node}/replication`: the job's configuration plus this node's state.
#[derive(Deserialize)]
struct ReplicationEntry {
    id: String,
    #[serde(default, deserialize_with = "num")]
    guest: Option<f64>,
    target: Option<String>,
    schedule: Option<String>,
    comment: Option<String>,
    /// `qemu` or `lxc`.
    vmtype: Option<String>,
    #[serde(default, deserialize_with = "num")]
    disable: Option<f64>,
    remove_job: Option<String>,
    /// Start of the last successful sync; 0 = never.
    #[serde(default, deserialize_with = "num")]
    last_sync: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    next_sync: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    duration: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    fail_count: Option<f64>,
    error: Option<String>,
    /// Set while a sync runs.
    #[serde(default, deserialize_with = "num")]
    pid: Option<f64>,
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
    /// 1 when the guest agent is enabled in the VM's configuration.
    #[serde(default, deserialize_with = "num")]
    agent: Option<f64>,
}

/// One entry of `/nodes/{node}/certificates/info` (pve-common `PVE::Certificate`).
#[derive(Deserialize)]
struct CertInfo {
    /// `pve-root-ca.pem`, `pve-ssl.pem` or `pveproxy-ssl.pem`.
    filename: Option<String>,
    /// Expiry, epoch seconds.
    #[serde(default, deserialize_with = "num")]
    notafter: Option<f64>,
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

/// The `{"result": …}` of guest agent commands.
#[derive(Deserialize)]
struct AgentResult<T> {
    result: T,
}

/// One filesystem of `guest-get-fsinfo` (QEMU guest agent).
#[derive(Deserialize)]
struct GuestFsInfo {
    /// The device (`sda1`, `dm-0`; a volume GUID path on Windows).
    name: Option<String>,
    mountpoint: Option<String>,
    #[serde(rename = "type")]
    fstype: Option<String>,
    /// Capacity available to users (without blocks reserved for root), bytes.
    #[serde(rename = "total-bytes", default, deserialize_with = "num")]
    total: Option<f64>,
    #[serde(rename = "used-bytes", default, deserialize_with = "num")]
    used: Option<f64>,
}

#[derive(Deserialize)]
struct BalloonInfo {
    #[serde(default, deserialize_with = "num")]
    total_mem: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    free_mem: Option<f64>,
}

/// What `/cluster/status` says, reduced to what the collector decides with.
#[derive(Debug, Clone, PartialEq)]
struct ClusterView {
    /// The cluster name, or the node's own name when standalone.
    cluster: String,
    /// Nodes and whether the cluster sees them online.
    nodes: Vec<(String, bool)>,
    /// The online node with the lowest name: it reports cluster-wide objects.
    reporter: Option<String>,
    quorate: Option<bool>,
    /// No cluster: the node is alone, and so is its agent.
    standalone: bool,
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
            standalone: cluster_entry.is_none(),
            nodes,
        }
    }

    fn is_online(&self, node: &str) -> bool {
        self.nodes.iter().any(|(n, online)| n == node && *online)
    }

    fn is_reporter(&self, node: &str) -> bool {
        self.reporter.as_deref() == Some(node)
    }

    /// Whether `node`'s own agent describes `node:<node>`: while the cluster sees it online
    /// (a standalone node always). Otherwise the reporter does, as `offline`.
    fn describes_itself(&self, node: &str) -> bool {
        self.standalone || self.is_online(node)
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

/// What PVE answers (500) on a node without the ZFS tools.
const ZFS_NOT_INSTALLED: &str = "zfsutils-linux not installed";
/// The id prefix of replication jobs (not a [`ResourceKind`] yet; ids accept new prefixes).
const REPLICATION_PREFIX: &str = "replication";

/// `storage:<node>/zfs:<pool>`. PVE storage ids (`storage:<node>/<id>`) cannot contain `:`,
/// so a pool never collides with a PVE storage of the same name (`local-zfs` on `rpool`, or a
/// `zfspool` storage named like its pool).
fn zfs_pool_id(node: &str, pool: &str) -> Result<ResourceId, CollectorError> {
    resource_id(pool, canonical::storage(node, &format!("zfs:{pool}")))
}

/// `replication:<cluster>/<job>`: the job id (`<vmid>-<n>`) is unique in the cluster and
/// survives a migration of its guest.
fn replication_job_id(cluster: &str, job: &str) -> Result<ResourceId, CollectorError> {
    resource_id(
        job,
        ResourceId::of(REPLICATION_PREFIX, &format!("{cluster}/{job}")),
    )
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
    put(out, id, "storage_total_bytes", now_ms, p.size);
    put(out, id, "storage_used_bytes", now_ms, p.alloc);
    put(out, id, "storage_free_bytes", now_ms, p.free);
    put(out, id, "storage_used_pct", now_ms, pct(p.alloc, p.size));
    put(out, id, "zfs_frag_pct", now_ms, p.frag);
    put(out, id, "zfs_dedup_ratio", now_ms, p.dedup);
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

/// One replication job of a guest on `node`: `replication_fail_count{job="…"}`,
/// `replication_last_sync_age_seconds{job="…"}` (absent until the first successful sync; PVE
/// sends 0 then) and `replication_last_duration_seconds{job="…"}` on the guest, and a
/// `replication:<cluster>/<job>` resource (parent: the guest) with status `ok`, `failing`,
/// `syncing`, `pending` (never synced yet), `disabled` or `removing`, and the last error.
fn replication_job(
    out: &mut Collected,
    view: &ClusterView,
    resources: &[ClusterResource],
    node: &str,
    j: &ReplicationEntry,
    now_ms: i64,
) {
    let Some(vmid) = j.guest.map(|g| g as u32) else {
        return out
            .problems
            .push(format!("replication job {}: no guest", j.id));
    };
    let kind = j.vmtype.as_deref().and_then(guest_kind).or_else(|| {
        resources
            .iter()
            .find(|r| r.vmid == Some(f64::from(vmid)))
            .and_then(|r| guest_kind(&r.kind))
    });
    let Some(kind) = kind else {
        return out.problems.push(format!(
            "replication job {}: guest {vmid} is neither a VM nor a container",
            j.id
        ));
    };
    let (guest_id, job_id) = match (
        resource_id(&j.id, canonical::guest(kind, &view.cluster, vmid)),
        replication_job_id(&view.cluster, &j.id),
    ) {
        (Ok(g), Ok(r)) => (g, r),
        (Err(e), _) | (_, Err(e)) => return out.problems.push(e.to_string()),
    };
    let label = label_value(&j.id);
    let last_sync = j.last_sync.filter(|t| *t > 0.0);
    let now_s = (now_ms / 1000) as f64;
    put(
        out,
        &guest_id,
        &format!("replication_fail_count{{job=\"{label}\"}}"),
        now_ms,
        j.fail_count,
    );
    put(
        out,
        &guest_id,
        &format!("replication_last_sync_age_seconds{{job=\"{label}\"}}"),
        now_ms,
        last_sync.map(|t| (now_s - t).max(0.0)),
    );
    put(
        out,
        &guest_id,
        &format!("replication_last_duration_seconds{{job=\"{label}\"}}"),
        now_ms,
        j.duration,
    );
    let failing = j.fail_count.is_some_and(|f| f > 0.0);
    let status = if j.disable == Some(1.0) {
        "disabled"
    } else if j.remove_job.is_some() {
        "removing"
    } else if failing {
        "failing"
    } else if j.pid.is_some() {
        "syncing"
    } else if last_sync.is_none() {
        "pending"
    } else {
        "ok"
    };
    let mut attrs = vec![
        ("guest".into(), Value::Int(i64::from(vmid))),
        ("source".into(), Value::from(node)),
        ("target".into(), Value::from(j.target.clone())),
        // PVE's default when the job has none.
        (
            "schedule".into(),
            Value::from(j.schedule.as_deref().unwrap_or("*/15")),
        ),
        (
            "fail_count".into(),
            Value::from(j.fail_count.map(|f| f as i64)),
        ),
    ];
    if let Some(t) = last_sync {
        attrs.push(("last_sync".into(), Value::Int(t as i64)));
    }
    if let Some(t) = j.next_sync.filter(|t| *t > 0.0) {
        attrs.push(("next_sync".into(), Value::Int(t as i64)));
    }
    if let Some(e) = j.error.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        attrs.push(("error".into(), Value::from(e)));
    }
    if let Some(c) = &j.comment {
        attrs.push(("comment".into(), Value::from(c.as_str())));
    }
    out.resources.push(Resource {
        id: job_id,
        name: j.id.clone(),
        parent: Some(guest_id),
        status: status.into(),
        attrs,
    });
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

/// Whether a guest-agent error says the agent cannot answer (not running, not configured,
/// hung, the VM stopped meanwhile): the guest's state, not a failure of the run.
fn agent_unavailable(message: &str) -> bool {
    ["guest agent", "is not running", "got timeout"]
        .iter()
        .any(|m| message.contains(m))
}

/// A VM's filesystems as `guest_fs_used_bytes`, `guest_fs_total_bytes` and
/// `guest_fs_used_pct`, labelled `mountpoint`: read-only images ([`IMAGE_FS`]) and
/// filesystems without a size are skipped, a device mounted twice (bind mounts, btrfs
/// subvolumes) counts once at its shortest mount point, and at most [`MAX_GUEST_FS`].
fn guest_fs_samples(out: &mut Collected, id: &ResourceId, fs: &[GuestFsInfo], now_ms: i64) {
    let mut fs: Vec<(&GuestFsInfo, String)> = fs
        .iter()
        .filter(|f| {
            f.fstype
                .as_deref()
                .is_none_or(|t| !IMAGE_FS.contains(&t.to_ascii_lowercase().as_str()))
        })
        .filter(|f| f.total.is_some_and(|t| t > 0.0) && f.used.is_some())
        .filter_map(|f| {
            let label = label_value(f.mountpoint.as_deref()?);
            (!label.is_empty()).then_some((f, label))
        })
        .collect();
    fs.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.1.cmp(&b.1)));
    let mut devices = HashSet::new();
    let mut mounts = HashSet::new();
    for (f, mount) in fs {
        if f.name.as_ref().is_some_and(|d| !devices.insert(d.as_str()))
            || !mounts.insert(mount.clone())
        {
            continue;
        }
        if mounts.len() > MAX_GUEST_FS {
            break;
        }
        let label = |m: &str| format!("{m}{{mountpoint=\"{mount}\"}}");
        put(out, id, &label("guest_fs_used_bytes"), now_ms, f.used);
        put(out, id, &label("guest_fs_total_bytes"), now_ms, f.total);
        put(
            out,
            id,
            &label("guest_fs_used_pct"),
            now_ms,
            pct(f.used, f.total),
        );
    }
}

/// The fields of a task id, `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`
/// (pve-common `PVE::Tools::upid_decode`; pids and times in hex, `id` possibly empty).
#[derive(Debug, PartialEq, Eq)]
struct Upid<'a> {
    kind: &'a str,
    id: &'a str,
}

impl<'a> Upid<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let mut f = s.strip_prefix("UPID:")?.split(':');
        f.next().filter(|node| !node.is_empty())?;
        for _ in 0..3 {
            let hex = f.next()?;
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
        }
        let kind = f.next().filter(|k| !k.is_empty())?;
        let id = f.next()?;
        f.next().filter(|user| !user.is_empty())?;
        // The trailing `:` leaves one empty field, and nothing may follow.
        (f.next() == Some("") && f.next().is_none()).then_some(Self { kind, id })
    }
}

/// Whether a finished task's status says it failed: not `OK`, not `WARNINGS: n` (and a
/// running task, without status, has not failed yet).
fn backup_failed(status: Option<&str>) -> bool {
    status
        .map(str::trim)
        .is_some_and(|s| !s.is_empty() && s != "OK" && !s.starts_with("WARNINGS"))
}

/// The guests a failed backup job's log names as failed (sorted): those with an
/// `ERROR: Backup of VM <vmid> failed - …` line; without any, those its first line
/// (`INFO: starting new backup job: vzdump <vmid>… --option …`) lists and no
/// `Finished Backup of VM <vmid>` line covers (a job that died before or between guests).
/// Empty when the log names none (a job over `--all` or a pool that failed as a whole).
/// vzdump says `VM` for containers too.
fn vzdump_failures<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
    let vmid_after = |line: &str, marker: &str| -> Option<u32> {
        let rest = &line[line.find(marker)? + marker.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let (mut failed, mut listed, mut finished) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let line = line.trim();
        if line.starts_with("ERROR:") && line.contains(" failed") {
            failed.extend(vmid_after(line, "Backup of VM "));
        } else if let Some(v) = vmid_after(line, "Finished Backup of VM ") {
            finished.push(v);
        } else if let Some(i) = line.find("starting new backup job: vzdump") {
            let args = &line[i + "starting new backup job: vzdump".len()..];
            listed.extend(
                args.split_whitespace()
                    .take_while(|a| !a.starts_with('-'))
                    .filter_map(|a| a.parse::<u32>().ok()),
            );
        }
    }
    if failed.is_empty() {
        failed = listed
            .into_iter()
            .filter(|v| !finished.contains(v))
            .collect();
    }
    failed.sort_unstable();
    failed.dedup();
    failed
}

/// `s` as one URL path segment: unreserved characters and those a UPID carries (`:@!`) as
/// they are, the rest percent-encoded.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_stale(r: &Resource) -> bool {
    r.attrs.contains(&("stale".into(), Value::Bool(true)))
}

/// Whether `r` comes from `/cluster/resources` (reporter): a guest, a shared storage (or
/// Ceph), or another node the cluster sees offline.
fn is_cluster_object(r: &Resource, own: &str) -> bool {
    match r.id.kind() {
        "vm" | "lxc" => true,
        "storage" => r.parent.is_none(),
        "node" => r.id.name() != own,
        _ => false,
    }
}

/// Whether a `/cluster/ceph/status` error says the cluster has no (PVE-managed) Ceph.
fn ceph_absent(message: &str) -> bool {
    message.contains("not installed") || message.contains("not initialized")
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

/// The node's samples into `out`; returns its description, which the caller sends only
/// while it owns `node:<name>` (see the module doc).
fn node_resource(
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
                // A container's root disk usage is real; a VM's `disk` is 0 unless PVE asks
                // its guest agent, so VMs get theirs from the agent (`guest_fs_*`).
                if running && kind == ResourceKind::SystemContainer {
                    put(out, &id, "disk_used_bytes", now_ms, r.disk);
                    put(out, &id, "disk_used_pct", now_ms, pct(r.disk, r.maxdisk));
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

    use crate::collectors::proxmox::api::Envelope;
    use serde::de::DeserializeOwned;
    use std::sync::{Arc, Mutex};

    fn fixture<T: DeserializeOwned>(name: &str) -> T {
        let path = format!(
            "{}/../tests/fixtures/pve/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str::<Envelope<T>>(&text).unwrap().data
    }

    /// A collector that is never run: for its provenance table.
    fn unconnected() -> ProxmoxCollector {
        ProxmoxCollector::new("pve1", &ProxmoxConfig::default())
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
            standalone: false,
        };
        let mut out = Collected::default();
        let node = node_resource(&mut out, &id, "pve1", &view, &st, 1);
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
        assert!(node.attrs.contains(&("quorate".into(), Value::Unknown)));
        crate::collectors::assert_provenance_complete(&unconnected(), &out);
    }

    #[test]
    fn ha_services_mark_their_guests() {
        let ha: Vec<HaEntry> = fixture("ha_status_current.pve9.2_maintenance.json");
        let view = ClusterView {
            cluster: "c".into(),
            nodes: vec![],
            reporter: None,
            quorate: None,
            standalone: false,
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

    fn view(cluster: &str) -> ClusterView {
        ClusterView {
            cluster: cluster.into(),
            nodes: vec![],
            reporter: None,
            quorate: None,
            standalone: false,
        }
    }

    fn attr<'a>(out: &'a Collected, id: &str, key: &str) -> Option<&'a Value> {
        out.resources
            .iter()
            .find(|r| r.id.as_str() == id)
            .and_then(|r| r.attrs.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v)
    }

    /// Field set of `/nodes/{node}/replication` per pve-manager `PVE/API2/Replication.pm`
    /// and pve-guest-common `PVE/ReplicationState.pm` (no public capture exists).
    const REPLICATION: &str = r#"[
        {"type":"local","id":"100-0","guest":100,"jobnum":0,"target":"pve2","source":"pve1",
         "vmtype":"qemu","schedule":"*/5","last_sync":1700000000,"last_try":1700000000,
         "next_sync":1700000300,"fail_count":0,"duration":3.2},
        {"type":"local","id":"105-1","guest":"105","jobnum":1,"target":"pve3","source":"pve1",
         "vmtype":"lxc","last_sync":1699990000,"last_try":1700000500,"next_sync":1700002300,
         "fail_count":"4","duration":0.8,"error":"storage 'local-zfs' is not available\n"},
        {"type":"local","id":"102-0","guest":102,"jobnum":0,"target":"pve2","source":"pve1",
         "last_sync":0,"last_try":0,"next_sync":900,"fail_count":0},
        {"type":"local","id":"103-0","guest":103,"jobnum":0,"target":"pve2","source":"pve1",
         "vmtype":"qemu","disable":1,"last_sync":1690000000,"last_try":1690000000,
         "next_sync":0,"fail_count":0}
    ]"#;

    #[test]
    fn replication_jobs_report_on_the_guest_and_as_a_job_resource() {
        let jobs: Vec<ReplicationEntry> = serde_json::from_str(REPLICATION).unwrap();
        // 102 has no vmtype: its kind comes from the cluster resources.
        let resources: Vec<ClusterResource> =
            serde_json::from_str(r#"[{"type":"lxc","vmid":102,"node":"pve1","status":"running"}]"#)
                .unwrap();
        let mut out = Collected::default();
        let now_ms = 1_700_000_600_000;
        for j in &jobs {
            replication_job(&mut out, &view("c"), &resources, "pve1", j, now_ms);
        }
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let ok = "vm:c/100";
        assert_eq!(
            value(&out, ok, r#"replication_fail_count{job="100-0"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(
                &out,
                ok,
                r#"replication_last_sync_age_seconds{job="100-0"}"#
            ),
            Some(600.0)
        );
        assert_eq!(
            value(
                &out,
                ok,
                r#"replication_last_duration_seconds{job="100-0"}"#
            ),
            Some(3.2)
        );
        let failing = "lxc:c/105";
        assert_eq!(
            value(&out, failing, r#"replication_fail_count{job="105-1"}"#),
            Some(4.0)
        );
        assert_eq!(
            value(
                &out,
                failing,
                r#"replication_last_sync_age_seconds{job="105-1"}"#
            ),
            Some(10_600.0)
        );
        // Never synced: PVE says 0, which is no age at all.
        assert_eq!(
            value(
                &out,
                "lxc:c/102",
                r#"replication_last_sync_age_seconds{job="102-0"}"#
            ),
            None
        );
        assert_eq!(
            value(&out, "lxc:c/102", r#"replication_fail_count{job="102-0"}"#),
            Some(0.0)
        );

        let statuses: Vec<(&str, &str, &str)> = out
            .resources
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.status.as_str(),
                    r.parent.as_ref().map_or("", |p| p.as_str()),
                )
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("replication:c/100-0", "ok", "vm:c/100"),
                ("replication:c/105-1", "failing", "lxc:c/105"),
                ("replication:c/102-0", "pending", "lxc:c/102"),
                ("replication:c/103-0", "disabled", "vm:c/103"),
            ]
        );
        let id = "replication:c/105-1";
        assert_eq!(
            attr(&out, id, "error"),
            Some(&Value::from("storage 'local-zfs' is not available"))
        );
        assert_eq!(attr(&out, id, "target"), Some(&Value::from("pve3")));
        assert_eq!(attr(&out, id, "source"), Some(&Value::from("pve1")));
        assert_eq!(attr(&out, id, "schedule"), Some(&Value::from("*/15")));
        assert_eq!(attr(&out, id, "fail_count"), Some(&Value::Int(4)));
        assert_eq!(
            attr(&out, id, "last_sync"),
            Some(&Value::Int(1_699_990_000))
        );
        assert_eq!(attr(&out, "replication:c/100-0", "error"), None);
        assert_eq!(attr(&out, "replication:c/102-0", "last_sync"), None);
        assert_eq!(attr(&out, "replication:c/103-0", "next_sync"), None);
        crate::collectors::assert_provenance_complete(&unconnected(), &out);
    }

    #[test]
    fn a_replication_job_of_an_unknown_guest_is_a_problem_not_a_guess() {
        let jobs: Vec<ReplicationEntry> =
            serde_json::from_str(r#"[{"id":"300-0","guest":300,"target":"b"}]"#).unwrap();
        let mut out = Collected::default();
        replication_job(&mut out, &view("c"), &[], "a", &jobs[0], 1);
        assert!(out.resources.is_empty() && out.samples.is_empty());
        assert_eq!(out.problems.len(), 1);
    }

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
            value(&out, rpool, "storage_total_bytes"),
            Some(996_432_412_672.0)
        );
        assert_eq!(
            value(&out, rpool, "storage_used_bytes"),
            Some(15_393_064_960.0)
        );
        assert_eq!(
            value(&out, rpool, "storage_free_bytes"),
            Some(981_039_347_712.0)
        );
        assert_eq!(value(&out, rpool, "zfs_frag_pct"), Some(3.0));
        assert_eq!(value(&out, rpool, "zfs_dedup_ratio"), Some(1.0));
        let tank = "storage:pve1/zfs:tank";
        assert_eq!(value(&out, tank, "storage_used_pct"), Some(75.0));
        assert_eq!(value(&out, tank, "zfs_dedup_ratio"), Some(1.25));
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
        crate::collectors::assert_provenance_complete(&unconnected(), &out);
    }

    const NOW_S: i64 = 1_780_000_000;

    /// `pve1`'s failed tasks: VM 100's own backup, a backup job over VMs 100 and 101 whose
    /// log says 101 failed, a job over all guests that failed as a whole, a backup with
    /// warnings (not a failure) and a failed migration (not a backup).
    const FAKE_TASKS: &str = r#"[
        {"type":"vzdump","id":"100","status":"unable to find configuration file for VM 100",
         "upid":"UPID:pve1:0000A001:00B00001:6A000001:vzdump:100:root@pam:"},
        {"type":"vzdump","id":"","status":"job errors",
         "upid":"UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:"},
        {"type":"vzdump","id":"","status":"could not activate storage 'pbs'",
         "upid":"UPID:pve1:0000A003:00B00003:6A000003:vzdump::root@pam:"},
        {"type":"vzdump","id":"101","status":"WARNINGS: 1",
         "upid":"UPID:pve1:0000A004:00B00004:6A000004:vzdump:101:root@pam:"},
        {"type":"qmigrate","id":"100","status":"migration aborted",
         "upid":"UPID:pve1:0000A005:00B00005:6A000005:qmigrate:100:root@pam:"}
    ]"#;

    /// A cluster `c` seen by node `pve1`'s API: `pve1` (running VM 100 with a balloon driver
    /// and container 101, both replicated and backed up), `pve2`, and `pve3`, which is down.
    struct FakePve {
        /// Nodes the cluster sees offline.
        offline: Vec<&'static str>,
        /// Path prefixes that answer `595 No route to host`.
        failing: Vec<&'static str>,
        /// No cluster: `/cluster/status` lists only `pve1`.
        standalone: bool,
        /// Path prefixes that answer `403 Permission check failed`.
        denied: Vec<&'static str>,
        /// VM 100's guest agent is not running (500).
        agent_down: bool,
        /// Requests per path (without the query).
        hits: BTreeMap<String, usize>,
    }

    impl Default for FakePve {
        fn default() -> Self {
            Self {
                offline: vec!["pve3"],
                failing: Vec::new(),
                standalone: false,
                denied: Vec::new(),
                agent_down: false,
                hits: BTreeMap::new(),
            }
        }
    }

    impl FakePve {
        /// `(status, body)` for a path with its query.
        fn answer(&mut self, path: &str) -> (u16, String) {
            let bare = path.split('?').next().unwrap_or_default();
            *self.hits.entry(bare.to_owned()).or_default() += 1;
            if self.failing.iter().any(|p| path.starts_with(p)) {
                return (595, String::new());
            }
            if self.denied.iter().any(|p| path.starts_with(p)) {
                let body =
                    r#"{"data":null,"message":"Permission check failed (/vms/100, VM.Monitor)\n"}"#;
                return (403, body.to_owned());
            }
            let path = bare;
            let node = |name: &str| {
                let online = !self.offline.contains(&name);
                format!(
                    r#"{{"type":"node","name":"{name}","online":{}}}"#,
                    u8::from(online)
                )
            };
            let data = match path {
                "/cluster/status" if self.standalone => format!("[{}]", node("pve1")),
                "/cluster/status" => format!(
                    r#"[{{"type":"cluster","name":"c","quorate":1}},{},{},{}]"#,
                    node("pve1"),
                    node("pve2"),
                    node("pve3")
                ),
                "/nodes/pve1/status" => r#"{"cpu":0.25,"loadavg":["0.5","0.4","0.3"],
                    "memory":{"total":1000,"used":600,"available":500},
                    "swap":{"total":100,"used":10},"rootfs":{"total":200,"used":50},
                    "uptime":3600,"kversion":"Linux 6.8","pveversion":"pve-manager/9.1.1",
                    "cpuinfo":{"cpus":8,"model":"EPYC"}}"#
                    .to_owned(),
                "/nodes/pve1/storage" => r#"[{"storage":"local","type":"dir",
                    "content":"backup,iso","shared":0,"active":1,"enabled":1,
                    "total":1000,"used":100}]"#
                    .to_owned(),
                "/nodes/pve1/storage/local/content" | "/nodes/pve1/storage/nfs/content" => {
                    format!(
                        r#"[{{"subtype":"qemu","vmid":100,"ctime":{}}},
                            {{"subtype":"lxc","vmid":101,"ctime":{}}}]"#,
                        NOW_S - 3600,
                        NOW_S - 7200
                    )
                }
                "/nodes/pve1/disks/list" => r#"[{"devpath":"/dev/sda","serial":"S1",
                    "model":"SSD","health":"PASSED","used":"ZFS","type":"ssd",
                    "size":1000,"wearout":97}]"#
                    .to_owned(),
                "/nodes/pve1/disks/smart" => r#"{"health":"PASSED","type":"ata","attributes":[
                    {"id":"  9","name":"Power_On_Hours","flags":"-O--CK","value":97,
                     "normalized":97,"worst":97,"threshold":0,"fail":"-","raw":"14123"},
                    {"id":"194","name":"Temperature_Celsius","flags":"-O---K","value":62,
                     "normalized":62,"worst":55,"threshold":0,"fail":"-",
                     "raw":"38 (Min/Max 20/45)"}]}"#
                    .to_owned(),
                "/nodes/pve1/certificates/info" => format!(
                    r#"[{{"filename":"pve-root-ca.pem","notafter":{},"notbefore":1}},
                        {{"filename":"pve-ssl.pem","notafter":{},"notbefore":1,
                          "subject":"/OU=PVE Cluster Node/CN=pve1"}}]"#,
                    NOW_S + 3000 * 86_400,
                    NOW_S + 400 * 86_400
                ),
                "/nodes/pve1/qemu/100/agent/get-fsinfo" if self.agent_down => {
                    let body = r#"{"data":null,"message":"QEMU guest agent is not running\n"}"#;
                    return (500, body.to_owned());
                }
                "/nodes/pve1/qemu/100/agent/get-fsinfo" => r#"{"result":[
                    {"name":"sda1","mountpoint":"/","type":"ext4","total-bytes":1000,
                     "used-bytes":250,"disk":[{"bus-type":"scsi","serial":"drive-scsi0"}]}]}"#
                    .to_owned(),
                "/nodes/pve1/disks/zfs" => r#"[{"name":"rpool","size":1000,"alloc":100,
                    "free":900,"frag":3,"dedup":1.0,"health":"ONLINE"}]"#
                    .to_owned(),
                "/nodes/pve1/apt/update" => r#"[{"Package":"pve-manager"}]"#.to_owned(),
                "/cluster/resources" => r#"[
                    {"type":"qemu","vmid":100,"node":"pve1","status":"running","name":"v",
                     "cpu":0.5,"maxcpu":2,"mem":100,"maxmem":200,"maxdisk":1000,"uptime":60},
                    {"type":"lxc","vmid":101,"node":"pve1","status":"running","name":"ct",
                     "cpu":0.1,"maxcpu":1,"mem":50,"maxmem":100,"disk":125,"maxdisk":500,
                     "uptime":30},
                    {"type":"storage","storage":"nfs","node":"pve1","shared":1,
                     "status":"available","content":"backup","plugintype":"nfs",
                     "disk":10,"maxdisk":100}]"#
                    .to_owned(),
                "/cluster/ha/status/current" => "[]".to_owned(),
                "/cluster/ceph/status" => r#"{"health":{"status":"HEALTH_OK","checks":{}},
                    "pgmap":{"bytes_total":1000,"bytes_used":100},
                    "osdmap":{"num_osds":3,"num_up_osds":3,"num_in_osds":3}}"#
                    .to_owned(),
                "/nodes/pve1/qemu/100/status/current" => {
                    r#"{"agent":1,"ballooninfo":{"total_mem":200,"free_mem":50}}"#.to_owned()
                }
                "/nodes/pve1/replication" => format!(
                    r#"[{{"id":"100-0","guest":100,"vmtype":"qemu","target":"pve2",
                          "last_sync":{0},"duration":2,"fail_count":0}},
                        {{"id":"101-0","guest":101,"vmtype":"lxc","target":"pve2",
                          "last_sync":{0},"duration":1,"fail_count":0}}]"#,
                    NOW_S - 600
                ),
                "/nodes/pve1/tasks" => FAKE_TASKS.to_owned(),
                log if log.starts_with("/nodes/pve1/tasks/") && log.ends_with("/log") => {
                    let lines: &[&str] = if log.contains(":0000A002:") {
                        &[
                            "INFO: starting new backup job: vzdump 100 101 --mode snapshot \
                             --storage pbs --notes-template '{{guestname}}'",
                            "INFO: Starting Backup of VM 100 (qemu)",
                            "INFO: Finished Backup of VM 100 (00:00:12)",
                            "INFO: Starting Backup of VM 101 (lxc)",
                            "ERROR: Backup of VM 101 failed - unable to open file \
                             '/etc/pve/nodes/pve1/lxc/101.conf.tmp.4242' - Permission denied",
                            "INFO: Failed at 2026-06-01 02:00:14",
                            "INFO: Backup job finished with errors",
                            "TASK ERROR: job errors",
                        ]
                    } else {
                        &[
                            "INFO: starting new backup job: vzdump --all 1 --storage pbs",
                            "TASK ERROR: could not activate storage 'pbs': pbs: error \
                             fetching datastores - 500 Can't connect to 10.0.0.9:8007",
                        ]
                    };
                    let lines: Vec<String> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, t)| serde_json::json!({"n": i + 1, "t": t}).to_string())
                        .collect();
                    format!("[{}]", lines.join(","))
                }
                _ => return (404, String::new()),
            };
            (200, format!(r#"{{"data":{data}}}"#))
        }
    }

    /// A plain-HTTP [`FakePve`] (the TLS side is tested against the simulator).
    async fn serve(listener: tokio::net::TcpListener, pve: Arc<Mutex<FakePve>>) {
        while let Ok((conn, _)) = listener.accept().await {
            let pve = Arc::clone(&pve);
            tokio::spawn(crate::collectors::answer_http(conn, move |path| {
                pve.lock().unwrap().answer(path)
            }));
        }
    }

    /// A collector for `pve1` against a [`FakePve`] that the test can change.
    async fn fake_pve1() -> (
        ProxmoxCollector,
        Arc<Mutex<FakePve>>,
        tokio::task::JoinHandle<()>,
        tempfile::TempDir,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pve = Arc::new(Mutex::new(FakePve::default()));
        let server = tokio::spawn(serve(listener, Arc::clone(&pve)));
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let cfg = ProxmoxConfig {
            enabled: true,
            url,
            token_id: "warden@pve!agent".into(),
            token_secret_file: secret,
            // Plain HTTP never uses it; any well-formed pin will do.
            fingerprint: Some("00".repeat(32)),
            node: Some("pve1".into()),
            ..ProxmoxConfig::default()
        };
        (ProxmoxCollector::new("ignored", &cfg), pve, server, dir)
    }

    fn ids(out: &Collected) -> Vec<&str> {
        let mut ids: Vec<&str> = out.resources.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn every_metric_has_its_provenance() {
        let (mut c, _pve, server, _dir) = fake_pve1().await;
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let mut emitted: Vec<(&str, &str)> = out
            .samples
            .iter()
            .map(|s| {
                (
                    s.resource_id.kind(),
                    warden_shared::telemetry::metric_base(&s.metric),
                )
            })
            .collect();
        emitted.sort_unstable();
        emitted.dedup();
        assert_eq!(
            emitted.len(),
            PROVENANCE.len(),
            "every entry is emitted: {emitted:?}"
        );
        crate::collectors::assert_provenance_complete(&c, &out);
        // Methods name the endpoint they read.
        assert!(PROVENANCE.iter().all(|p| p.method.contains("GET /")));
        server.abort();
    }

    #[tokio::test]
    async fn a_failed_run_re_sends_only_what_this_agent_still_owns() {
        let (mut c, pve, server, _dir) = fake_pve1().await;
        let good = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(
            ids(&good),
            vec![
                "disk:pve1/S1",
                "lxc:c/101",
                "node:pve1",
                "node:pve3",
                "replication:c/100-0",
                "replication:c/101-0",
                "storage:c/ceph",
                "storage:c/nfs",
                "storage:pve1/local",
                "storage:pve1/zfs:rpool",
                "vm:c/100",
            ]
        );
        let local = vec![
            "disk:pve1/S1",
            "storage:pve1/local",
            "storage:pve1/zfs:rpool",
        ];
        let stale = |out: &Collected| {
            assert!(out.samples.is_empty());
            assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
            assert!(
                out.resources
                    .iter()
                    .all(|r| r.attrs.contains(&("stale".into(), Value::Bool(true))))
            );
        };

        // A failing endpoint costs only its part: the node's status keeps the node as it
        // was (stale, without samples); everything else is read afresh.
        pve.lock().unwrap().failing = vec!["/nodes/pve1/status"];
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert!(
            out.problems[0].contains("/nodes/pve1/status") && out.problems[0].contains("595"),
            "{:?}",
            out.problems
        );
        assert_eq!(ids(&out), ids(&good));
        let stale_ids = |out: &Collected| -> Vec<String> {
            let mut v: Vec<String> = out
                .resources
                .iter()
                .filter(|r| r.attrs.contains(&("stale".into(), Value::Bool(true))))
                .map(|r| r.id.as_str().to_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(stale_ids(&out), vec!["node:pve1"]);
        assert_eq!(value(&out, "node:pve1", "mem_used_bytes"), None);
        assert_eq!(value(&out, "vm:c/100", "mem_used_bytes"), Some(100.0));
        // Twice in a row: still there, still stale.
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(stale_ids(&out), vec!["node:pve1"]);

        // Without /cluster/resources the reporter keeps the guests, shared storage and the
        // offline node it described last, stale; Ceph and the node-local parts are fresh.
        pve.lock().unwrap().failing = vec!["/cluster/resources"];
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert_eq!(ids(&out), ids(&good));
        assert_eq!(
            stale_ids(&out),
            vec!["lxc:c/101", "node:pve3", "storage:c/nfs", "vm:c/100"]
        );
        assert_eq!(value(&out, "node:pve1", "mem_used_bytes"), Some(500.0));
        assert_eq!(value(&out, "vm:c/100", "mem_used_bytes"), None);
        // pve3 is back meanwhile: its own agent describes it, not this stale re-send.
        pve.lock().unwrap().offline.clear();
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(
            stale_ids(&out),
            vec!["lxc:c/101", "storage:c/nfs", "vm:c/100"]
        );
        pve.lock().unwrap().failing.clear();
        pve.lock().unwrap().offline = vec!["pve3"];
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert!(stale_ids(&out).is_empty());

        // Without a view this run cannot know who owns what: again only the node-local ones.
        *pve.lock().unwrap() = FakePve {
            failing: vec!["/cluster/status"],
            ..FakePve::default()
        };
        let out = c.collect(NOW_S * 1000).await.unwrap();
        stale(&out);
        assert_eq!(ids(&out), local);

        // A node that the cluster sees offline but whose API answers: its samples, but the
        // node resource is the reporter's (pve2), as are the guests.
        *pve.lock().unwrap() = FakePve {
            offline: vec!["pve1", "pve3"],
            ..FakePve::default()
        };
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(
            ids(&out),
            vec![
                "disk:pve1/S1",
                "replication:c/100-0",
                "replication:c/101-0",
                "storage:pve1/local",
                "storage:pve1/zfs:rpool",
            ]
        );
        assert_eq!(value(&out, "node:pve1", "mem_used_bytes"), Some(500.0));
        // That run's resources are now the last good ones: no node:pve1 to re-send.
        pve.lock().unwrap().failing = vec!["/cluster/status"];
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(ids(&out), local);
        server.abort();
    }

    #[tokio::test]
    async fn a_standalone_node_owns_everything_it_reports() {
        let (mut c, pve, server, _dir) = fake_pve1().await;
        pve.lock().unwrap().standalone = true;
        let good = c.collect(NOW_S * 1000).await.unwrap();
        assert!(ids(&good).contains(&"vm:pve1/100"), "{:?}", ids(&good));
        pve.lock().unwrap().failing = vec!["/cluster/status"];
        let out = c.collect(NOW_S * 1000).await.unwrap();
        let all: Vec<&str> = ids(&good)
            .into_iter()
            .filter(|id| !id.starts_with("replication:"))
            .collect();
        assert_eq!(ids(&out), all);
        server.abort();
    }

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
    fn guest_filesystems_skip_images_and_second_mounts() {
        let fs: Vec<GuestFsInfo> = serde_json::from_str(
            r#"[
            {"name":"sda1","mountpoint":"/","type":"ext4","total-bytes":31500000000,
             "used-bytes":9000000000,"total-bytes-privileged":33000000000,
             "disk":[{"bus-type":"scsi","bus":0,"target":0,"unit":0,"serial":"drive-scsi0",
                      "dev":"/dev/sda1"}]},
            {"name":"sda15","mountpoint":"/boot/efi","type":"vfat","total-bytes":109422592,
             "used-bytes":6334464,"disk":[]},
            {"name":"loop0","mountpoint":"/snap/core22/1380","type":"squashfs",
             "total-bytes":77463552,"used-bytes":77463552,"disk":[]},
            {"name":"sr0","mountpoint":"/media/cdrom","type":"iso9660","total-bytes":374784,
             "used-bytes":374784,"disk":[]},
            {"name":"sda1","mountpoint":"/var/lib/docker/volumes","type":"ext4",
             "total-bytes":31500000000,"used-bytes":9000000000,"disk":[]},
            {"name":"sdb","mountpoint":"/data","type":"xfs","disk":[]},
            {"name":"\\\\?\\Volume{7d4f2e15-0000-0000-0000-100000000000}\\","mountpoint":"C:\\",
             "type":"NTFS","total-bytes":"63757611008","used-bytes":"31878805504","disk":[]}
        ]"#,
        )
        .unwrap();
        let id = canonical::guest(ResourceKind::Vm, "c", 100).unwrap();
        let mut out = Collected::default();
        guest_fs_samples(&mut out, &id, &fs, 7);
        let mut got: Vec<(&str, f64)> = out
            .samples
            .iter()
            .filter(|s| s.metric.starts_with("guest_fs_used_pct"))
            .map(|s| (s.metric.as_str(), (s.value * 10.0).round() / 10.0))
            .collect();
        got.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(
            got,
            vec![
                (r#"guest_fs_used_pct{mountpoint="/"}"#, 28.6),
                (r#"guest_fs_used_pct{mountpoint="/boot/efi"}"#, 5.8),
                (r#"guest_fs_used_pct{mountpoint="C:"}"#, 50.0),
            ]
        );
        assert_eq!(
            value(&out, "vm:c/100", r#"guest_fs_total_bytes{mountpoint="/"}"#),
            Some(31_500_000_000.0)
        );
        assert_eq!(
            value(&out, "vm:c/100", r#"guest_fs_used_bytes{mountpoint="C:"}"#),
            Some(31_878_805_504.0)
        );
        // Many volumes (a Kubernetes node): at most MAX_GUEST_FS.
        let many: Vec<GuestFsInfo> = (0..100)
            .map(|i| GuestFsInfo {
                name: Some(format!("sd{i}")),
                mountpoint: Some(format!("/var/lib/kubelet/pods/{i:03}")),
                fstype: Some("ext4".into()),
                total: Some(100.0),
                used: Some(1.0),
            })
            .collect();
        let mut out = Collected::default();
        guest_fs_samples(&mut out, &id, &many, 7);
        assert_eq!(out.samples.len(), 3 * MAX_GUEST_FS);
    }

    fn hits(pve: &Mutex<FakePve>, path: &str) -> usize {
        pve.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }

    #[tokio::test]
    async fn backup_jobs_are_attributed_through_their_logs_read_once() {
        let (mut c, pve, server, _dir) = fake_pve1().await;
        for _ in 0..2 {
            let out = c.collect(NOW_S * 1000).await.unwrap();
            assert!(out.problems.is_empty(), "{:?}", out.problems);
            assert_eq!(value(&out, "node:pve1", "tasks_failed_24h"), Some(5.0));
            // Its own failed task, not the job that backed it up.
            assert_eq!(value(&out, "vm:c/100", "backup_failed_24h"), Some(1.0));
            // The job's log names it; the backup with warnings did not fail.
            assert_eq!(value(&out, "lxc:c/101", "backup_failed_24h"), Some(1.0));
            // The job over all guests that failed as a whole names nobody.
            assert_eq!(
                value(&out, "node:pve1", "backup_failed_unattributed_24h"),
                Some(1.0)
            );
        }
        // Each failed job's log once; the per-guest tasks need none.
        let logs: Vec<(String, usize)> = pve
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|(p, _)| p.ends_with("/log"))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        assert_eq!(
            logs,
            vec![
                (
                    "/nodes/pve1/tasks/UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:/log"
                        .to_owned(),
                    1
                ),
                (
                    "/nodes/pve1/tasks/UPID:pve1:0000A003:00B00003:6A000003:vzdump::root@pam:/log"
                        .to_owned(),
                    1
                ),
            ]
        );
        // A log that cannot be read leaves the task unattributed and says why; it is read
        // again next time.
        let (mut c, pve, server2, _dir2) = fake_pve1().await;
        pve.lock().unwrap().failing = vec!["/nodes/pve1/tasks/UPID"];
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
        assert_eq!(value(&out, "lxc:c/101", "backup_failed_24h"), Some(0.0));
        assert_eq!(
            value(&out, "node:pve1", "backup_failed_unattributed_24h"),
            Some(2.0)
        );
        pve.lock().unwrap().failing.clear();
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(value(&out, "lxc:c/101", "backup_failed_24h"), Some(1.0));
        server.abort();
        server2.abort();
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

    #[test]
    fn vzdump_logs_name_the_guests_whose_backup_failed() {
        // Explicit per-guest errors win; containers are "VM" too.
        let log = [
            "INFO: starting new backup job: vzdump 100 101 102 --mode snapshot --storage pbs",
            "INFO: Starting Backup of VM 100 (qemu)",
            "ERROR: Backup of VM 100 failed - VM 100 qmp command 'backup' failed - got timeout",
            "INFO: Starting Backup of VM 101 (lxc)",
            "INFO: Finished Backup of VM 101 (00:01:02)",
            "INFO: Starting Backup of VM 102 (qemu)",
            "ERROR: Backup of VM 102 failed - unable to open file '/x' - Permission denied",
            "INFO: Backup job finished with errors",
            "TASK ERROR: job errors",
        ];
        assert_eq!(vzdump_failures(log), vec![100, 102]);
        // A job that died between guests: the listed ones it never finished.
        let died = [
            "INFO: starting new backup job: vzdump 100 101 --storage local --exclude 7",
            "INFO: Finished Backup of VM 100 (00:00:12)",
            "TASK ERROR: interrupted by signal",
        ];
        assert_eq!(vzdump_failures(died), vec![101]);
        // A job over all guests that failed before any: nobody to name.
        let all = [
            "INFO: starting new backup job: vzdump --all 1 --storage pbs",
            "TASK ERROR: could not activate storage 'pbs'",
        ];
        assert!(vzdump_failures(all).is_empty());
        assert!(vzdump_failures([]).is_empty());
        // Garbage is not a VMID.
        assert!(vzdump_failures(["ERROR: Backup of VM abc failed - x"]).is_empty());
    }

    #[test]
    fn upids_parse_with_and_without_an_id() {
        assert_eq!(
            Upid::parse("UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:"),
            Some(Upid {
                kind: "vzdump",
                id: ""
            })
        );
        assert_eq!(
            Upid::parse("UPID:node-2:002F3A1B:0A1B2C3D:65F0A1B2:vzdump:101:warden@pve!monitor:"),
            Some(Upid {
                kind: "vzdump",
                id: "101"
            })
        );
        for bad in [
            "",
            "UPID:",
            "UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam",
            "UPID:pve1:zz:00B00002:6A000002:vzdump::root@pam:",
            "UPID:pve1:0000A002:00B00002:6A000002:vzdump:::",
            "UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:x",
            "TASK:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:",
        ] {
            assert_eq!(Upid::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            path_segment("UPID:n:1:2:3:vzdump::a@pve!t:"),
            "UPID:n:1:2:3:vzdump::a@pve!t:"
        );
        assert_eq!(path_segment("a/b c%"), "a%2Fb%20c%25");
    }

    #[tokio::test]
    async fn slow_reads_keep_their_own_cadence() {
        let (mut c, pve, server, _dir) = fake_pve1().await;
        let smart = "/nodes/pve1/disks/smart";
        let certs = "/nodes/pve1/certificates/info";
        let fsinfo = "/nodes/pve1/qemu/100/agent/get-fsinfo";
        let at = |minutes: i64| NOW_S * 1000 + minutes * 60_000;
        let out = c.collect(at(0)).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(value(&out, "disk:pve1/S1", "disk_temp_celsius"), Some(38.0));
        let cert = r#"cert_expires_in_seconds{file="pve-ssl.pem"}"#;
        assert_eq!(value(&out, "node:pve1", cert), Some(400.0 * 86_400.0));
        assert_eq!(
            value(
                &out,
                "node:pve1",
                r#"cert_expires_in_seconds{file="pve-root-ca.pem"}"#
            ),
            Some(3000.0 * 86_400.0)
        );
        assert_eq!(
            value(&out, "vm:c/100", r#"guest_fs_used_pct{mountpoint="/"}"#),
            Some(25.0)
        );
        assert_eq!(value(&out, "lxc:c/101", "disk_used_bytes"), Some(125.0));
        assert_eq!(value(&out, "lxc:c/101", "disk_used_pct"), Some(25.0));
        assert_eq!(
            value(&out, "vm:c/100", "disk_used_pct"),
            None,
            "a VM's disk is 0"
        );
        let once = [(smart, 1), (certs, 1), (fsinfo, 1)];
        for (p, n) in once {
            assert_eq!(hits(&pve, p), n, "{p}");
        }

        // A minute later: nothing slow is read again; the certificate countdown goes on.
        let out = c.collect(at(1)).await.unwrap();
        for (p, n) in once {
            assert_eq!(hits(&pve, p), n, "{p}");
        }
        assert_eq!(
            value(&out, "node:pve1", cert),
            Some(400.0 * 86_400.0 - 60.0)
        );
        assert_eq!(value(&out, "disk:pve1/S1", "disk_temp_celsius"), None);
        assert_eq!(
            hits(&pve, "/nodes/pve1/status"),
            2,
            "the rest runs every time"
        );

        // A failed run leaves the schedule as it was: the next good run reads what is due.
        pve.lock().unwrap().failing = vec!["/cluster/status"];
        let out = c.collect(at(5)).await.unwrap();
        assert!(out.samples.is_empty());
        assert_eq!((hits(&pve, smart), hits(&pve, fsinfo)), (1, 1));
        pve.lock().unwrap().failing.clear();
        let out = c.collect(at(6)).await.unwrap();
        assert_eq!((hits(&pve, smart), hits(&pve, fsinfo)), (2, 2));
        assert_eq!(value(&out, "disk:pve1/S1", "disk_temp_celsius"), Some(38.0));
        assert_eq!(hits(&pve, certs), 1);

        // A failing read stays due, so the run says why until it works again.
        pve.lock().unwrap().failing = vec![smart];
        let out = c.collect(at(11)).await.unwrap();
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert!(
            out.problems[0].contains("disks/smart"),
            "{:?}",
            out.problems
        );
        let out = c.collect(at(12)).await.unwrap();
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        pve.lock().unwrap().failing.clear();
        let out = c.collect(at(13)).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(value(&out, "disk:pve1/S1", "disk_temp_celsius"), Some(38.0));

        // An hour after the first read, the certificates are read again.
        c.collect(at(61)).await.unwrap();
        assert_eq!(hits(&pve, certs), 2);
        server.abort();
    }

    #[tokio::test]
    async fn guest_agent_trouble_is_the_guests_not_the_runs() {
        let (mut c, pve, server, _dir) = fake_pve1().await;
        let fsinfo = "/nodes/pve1/qemu/100/agent/get-fsinfo";
        let at = |minutes: i64| NOW_S * 1000 + minutes * 60_000;
        let fs_samples = |out: &Collected| {
            out.samples
                .iter()
                .filter(|s| s.metric.starts_with("guest_fs_"))
                .count()
        };
        pve.lock().unwrap().agent_down = true;
        let out = c.collect(at(0)).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(fs_samples(&out), 0);
        // Asked again at the usual cadence, not every run.
        c.collect(at(1)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 1);
        pve.lock().unwrap().agent_down = false;
        let out = c.collect(at(5)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 2);
        assert_eq!(fs_samples(&out), 3);

        // Not permitted (PVE 8 without VM.Monitor): no problem, and no retry for an hour.
        pve.lock().unwrap().denied = vec!["/nodes/pve1/qemu/100/agent"];
        let out = c.collect(at(10)).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(hits(&pve, fsinfo), 3);
        c.collect(at(30)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 3);
        pve.lock().unwrap().denied.clear();
        let out = c.collect(at(71)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 4);
        assert_eq!(fs_samples(&out), 3);
        server.abort();
    }
}
