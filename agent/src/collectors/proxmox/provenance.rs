//! Where each metric of the Proxmox VE collector comes from: its provenance table.

use warden_shared::metric;
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
    node(metric::CPU_PCT, "GET /nodes/{node}/status: cpu x 100"),
    node(
        metric::MEM_TOTAL_BYTES,
        "GET /nodes/{node}/status: memory.total",
    ),
    node(
        metric::MEM_USED_BYTES,
        "GET /nodes/{node}/status: memory.total - memory.available (PVE 8+), else \
         memory.used (both exclude cache)",
    ),
    node(
        metric::MEM_USED_PCT,
        "GET /nodes/{node}/status: (memory.total - memory.available, else memory.used) / \
         memory.total x 100",
    ),
    node(
        metric::SWAP_TOTAL_BYTES,
        "GET /nodes/{node}/status: swap.total",
    ),
    node(
        metric::SWAP_USED_BYTES,
        "GET /nodes/{node}/status: swap.used",
    ),
    node(
        metric::ROOTFS_USED_PCT,
        "GET /nodes/{node}/status: rootfs.used / rootfs.total x 100",
    ),
    node(
        metric::LOAD1,
        "GET /nodes/{node}/status: loadavg[0] (sent as text)",
    ),
    node(
        metric::LOAD5,
        "GET /nodes/{node}/status: loadavg[1] (sent as text)",
    ),
    node(
        metric::LOAD15,
        "GET /nodes/{node}/status: loadavg[2] (sent as text)",
    ),
    node(metric::UPTIME_SECONDS, "GET /nodes/{node}/status: uptime"),
    node(
        metric::UPDATES_PENDING,
        "GET /nodes/{node}/apt/update: entries, counted",
    ),
    node(
        metric::TASKS_FAILED_24H,
        "GET /nodes/{node}/tasks?errors=1&limit=500&since=<now - 24 h>: entries, counted \
         (at most 500)",
    ),
    node(
        metric::BACKUP_FAILED_UNATTRIBUTED_24H,
        "GET /nodes/{node}/tasks?errors=1&limit=500&since=<now - 24 h>: failed vzdump tasks \
         without a VMID whose log (GET /nodes/{node}/tasks/{upid}/log, at most 4 new logs a \
         run) names no failed guest or is not read yet, counted",
    ),
    node(
        metric::CERT_EXPIRES_IN_SECONDS,
        "GET /nodes/{node}/certificates/info (once an hour): notafter - now per certificate \
         (label file = filename: pve-root-ca.pem, pve-ssl.pem, pveproxy-ssl.pem), sent every \
         run from the last answer",
    ),
    vm(metric::CPU_PCT, GUEST_CPU),
    vm(metric::MEM_USED_BYTES, GUEST_MEM_USED),
    vm(metric::MEM_USED_PCT, GUEST_MEM_PCT),
    vm(metric::UPTIME_SECONDS, GUEST_UPTIME),
    vm(metric::MEM_TOTAL_BYTES, GUEST_MEM_TOTAL),
    vm(metric::DISK_TOTAL_BYTES, GUEST_DISK_TOTAL),
    vm(
        metric::GUEST_MEM_TOTAL_BYTES,
        "GET /nodes/{node}/qemu/{vmid}/status/current (running VMs of the agent's node): \
         ballooninfo.total_mem, absent without a balloon driver",
    ),
    vm(
        metric::GUEST_MEM_USED_BYTES,
        "GET /nodes/{node}/qemu/{vmid}/status/current (running VMs of the agent's node): \
         ballooninfo.total_mem - ballooninfo.free_mem, absent without a balloon driver",
    ),
    vm(
        metric::GUEST_FS_USED_BYTES,
        "GET /nodes/{node}/qemu/{vmid}/agent/get-fsinfo (running VMs of the agent's node whose \
         guest agent is enabled, per status/current agent = 1; each every 5 minutes): \
         result[].used-bytes per filesystem (label mountpoint; read-only images such as \
         squashfs and iso9660 skipped, one mount per device)",
    ),
    vm(
        metric::GUEST_FS_TOTAL_BYTES,
        "GET /nodes/{node}/qemu/{vmid}/agent/get-fsinfo (as guest_fs_used_bytes): \
         result[].total-bytes (excludes blocks reserved for root, like df)",
    ),
    vm(
        metric::GUEST_FS_USED_PCT,
        "GET /nodes/{node}/qemu/{vmid}/agent/get-fsinfo (as guest_fs_used_bytes): \
         result[].used-bytes / total-bytes x 100",
    ),
    vm(metric::BACKUP_FAILED_24H, GUEST_BACKUP_FAILED),
    vm(
        metric::BACKUP_LAST_AGE_SECONDS,
        "GET /nodes/{node}/storage/{storage}/content?content=backup (node-local backup \
         storage by its node's agent, shared by the reporter): now - newest ctime of the \
         VMID's backups whose subtype is not lxc (label storage)",
    ),
    vm(
        metric::BACKUP_COUNT,
        "GET /nodes/{node}/storage/{storage}/content?content=backup: the VMID's backups whose \
         subtype is not lxc, counted (label storage)",
    ),
    vm(metric::REPLICATION_FAIL_COUNT, REPLICATION_FAIL_COUNT),
    vm(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, REPLICATION_AGE),
    vm(
        metric::REPLICATION_LAST_DURATION_SECONDS,
        REPLICATION_DURATION,
    ),
    lxc(metric::CPU_PCT, GUEST_CPU),
    lxc(metric::MEM_USED_BYTES, GUEST_MEM_USED),
    lxc(metric::MEM_USED_PCT, GUEST_MEM_PCT),
    lxc(metric::UPTIME_SECONDS, GUEST_UPTIME),
    lxc(metric::MEM_TOTAL_BYTES, GUEST_MEM_TOTAL),
    lxc(metric::DISK_TOTAL_BYTES, GUEST_DISK_TOTAL),
    lxc(
        metric::DISK_USED_BYTES,
        "GET /cluster/resources (reporter): disk (the root disk), running containers only",
    ),
    lxc(
        metric::DISK_USED_PCT,
        "GET /cluster/resources (reporter): disk / maxdisk x 100, running containers only",
    ),
    lxc(metric::BACKUP_FAILED_24H, GUEST_BACKUP_FAILED),
    lxc(
        metric::BACKUP_LAST_AGE_SECONDS,
        "GET /nodes/{node}/storage/{storage}/content?content=backup (node-local backup \
         storage by its node's agent, shared by the reporter): now - newest ctime of the \
         VMID's backups with subtype lxc (label storage)",
    ),
    lxc(
        metric::BACKUP_COUNT,
        "GET /nodes/{node}/storage/{storage}/content?content=backup: the VMID's backups with \
         subtype lxc, counted (label storage)",
    ),
    lxc(metric::REPLICATION_FAIL_COUNT, REPLICATION_FAIL_COUNT),
    lxc(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, REPLICATION_AGE),
    lxc(
        metric::REPLICATION_LAST_DURATION_SECONDS,
        REPLICATION_DURATION,
    ),
    storage(
        metric::STORAGE_TOTAL_BYTES,
        "node-local PVE storage: GET /nodes/{node}/storage total; shared PVE storage: \
         GET /cluster/resources (reporter) maxdisk; ZFS pool: GET /nodes/{node}/disks/zfs \
         size; Ceph: GET /cluster/ceph/status (reporter) pgmap.bytes_total",
    ),
    storage(
        metric::STORAGE_USED_BYTES,
        "node-local PVE storage: GET /nodes/{node}/storage used; shared PVE storage: \
         GET /cluster/resources (reporter) disk; ZFS pool: GET /nodes/{node}/disks/zfs \
         alloc; Ceph: GET /cluster/ceph/status (reporter) pgmap.bytes_used",
    ),
    storage(
        metric::STORAGE_USED_PCT,
        "node-local PVE storage: GET /nodes/{node}/storage used / total x 100; shared PVE \
         storage: GET /cluster/resources (reporter) disk / maxdisk x 100; ZFS pool: \
         GET /nodes/{node}/disks/zfs alloc / size x 100; Ceph: GET /cluster/ceph/status \
         (reporter) pgmap.bytes_used / pgmap.bytes_total x 100",
    ),
    storage(
        metric::STORAGE_FREE_BYTES,
        "ZFS pools only: GET /nodes/{node}/disks/zfs free",
    ),
    storage(metric::ZFS_FRAG_PCT, "GET /nodes/{node}/disks/zfs: frag"),
    storage(
        metric::ZFS_DEDUP_RATIO,
        "GET /nodes/{node}/disks/zfs: dedup",
    ),
    storage(
        metric::CEPH_OSDS_TOTAL,
        "GET /cluster/ceph/status (reporter): osdmap.num_osds",
    ),
    storage(
        metric::CEPH_OSDS_UP,
        "GET /cluster/ceph/status (reporter): osdmap.num_up_osds",
    ),
    storage(
        metric::CEPH_OSDS_IN,
        "GET /cluster/ceph/status (reporter): osdmap.num_in_osds",
    ),
    disk(
        metric::DISK_SIZE_BYTES,
        "GET /nodes/{node}/disks/list: size",
    ),
    disk(
        metric::DISK_WEAROUT_PCT,
        "GET /nodes/{node}/disks/list: wearout (percent of life left, 100 = new), absent \
         when PVE says N/A",
    ),
    disk(
        metric::DISK_TEMP_CELSIUS,
        "GET /nodes/{node}/disks/smart?disk={devpath} (each disk every 5 minutes): ATA \
         attribute 194 (else 190 Airflow_Temperature_Cel), first number of raw; NVMe text \
         'Temperature: N Celsius'; SAS text 'Current Drive Temperature: N C'; absent when \
         the drive reports none (or 0)",
    ),
];
