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
mod ceph;
mod certs;
mod cluster;
mod disks;
mod guests;
mod ha;
mod node;
mod provenance;
mod replication;
mod slow;
mod storage;
mod tasks;
#[cfg(test)]
mod tests;
mod zfs;

use self::api::{ApiClient, Endpoint, Product, mark_stale, settle};
use self::ceph::{CephStatus, ceph_absent, ceph_resource};
use self::cluster::{
    ClusterResource, ClusterStatusEntry, ClusterView, cluster_objects, is_cluster_object,
};
use self::ha::{HaEntry, ha_states};
use self::node::{NodeStatus, node_resource};
use self::provenance::PROVENANCE;
use self::slow::{Budget, SlowReads};
use self::storage::{StorageEntry, holds_backups, storage_resource};
use super::{Collected, Collector, CollectorError, ProxmoxConfig, resource_id};
use std::collections::{BTreeMap, HashSet};
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Provenance, Resource, Value};

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
            Ok(updates) => out.sample(
                &node_id,
                metric::UPDATES_PENDING,
                now_ms,
                updates.len() as f64,
            ),
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
        let own_node =
            |p: &ResourceId| ResourceKind::of(p) == Some(ResourceKind::Node) && p.name() == own;
        match ResourceKind::of(&r.id) {
            // Its owner follows the guest, which a failed run cannot see.
            Some(ResourceKind::Replication) => false,
            Some(ResourceKind::Node) if r.id.name() == own => {
                view.map_or(self.standalone, |v| v.describes_itself(own))
            }
            // A node the cluster saw offline: the reporter's while it still is.
            Some(ResourceKind::Node) => view.map_or(self.standalone, |v| {
                v.is_reporter(own) && !v.is_online(r.id.name())
            }),
            Some(ResourceKind::Storage | ResourceKind::PhysicalDisk)
                if r.parent.as_ref().is_some_and(own_node) =>
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

fn is_stale(r: &Resource) -> bool {
    r.attrs.contains(&("stale".into(), Value::Bool(true)))
}
