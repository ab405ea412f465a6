//! Where each metric of the Proxmox VE collector comes from: its provenance table.

use warden_shared::resource::ResourceKind;
use warden_shared::telemetry::Provenance;

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
pub(super) const PROVENANCE: &[Provenance] = &[
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
