//! Proxmox VE API simulator: a mutable cluster model served over HTTPS with PVE's quirks.
//!
//! Field names and value types follow the real captures in `tests/fixtures/pve/` and the
//! schema notes (`{"data": ...}` envelope, 0/1 booleans, `vmid` as a string in the LXC list,
//! `loadavg` as strings, empty 401 bodies after ~3 s, reasons in the status line).
//!
//! Replication (`/cluster/replication`, `/nodes/{node}/replication[/{id}/status]`) and ZFS
//! (`/nodes/{node}/disks/zfs[/{name}]`) have no public captures; their field sets follow the
//! PVE sources (pve-manager `PVE/API2/Replication.pm`, pve-guest-common
//! `PVE/ReplicationState.pm`, pve-storage `PVE/API2/Disks/ZFS.pm`). So do SMART
//! (`/nodes/{node}/disks/smart`, pve-storage `PVE::Diskmanage::get_smart_data`), certificates
//! (`/nodes/{node}/certificates/info`, pve-manager `PVE/API2/Certificates.pm` and pve-common
//! `PVE::Certificate::get_certificate_info`) and the guest agent's filesystems
//! (`/nodes/{node}/qemu/{vmid}/agent/get-fsinfo`, QEMU's `guest-get-fsinfo`).
//!
//! Time-based behaviour (a storage filling at a steady rate, a disk wearing out, HA
//! timestamps, new tasks) follows the simulator's clock: the wall clock, or frozen and
//! advanced by hand in tests ([`PveSimHandle::freeze_clock`], [`PveSimHandle::advance_clock`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use warden_sim::pve::{Fault, PveSim, PveSimOptions};
//! let sim = PveSim::start(PveSimOptions::fast());
//! let r = sim.get("/cluster/resources?type=vm");
//! assert_eq!(r.status, 200);
//! sim.migrate(100, "node3");
//! sim.set_storage_fill_rate("node1", "local", 50e9); // bytes per hour
//! sim.stop_backups(105, Duration::from_secs(3 * 86_400));
//! sim.set_guest_disk(106, "/", 7_900_000_000); // CT 106's root disk nearly full
//! sim.set_disk_temperature("/dev/sdb", 61);
//! sim.set_cert_expiry("node1", "pveproxy-ssl.pem", sim.now() + 5 * 86_400);
//! sim.set_fault(Fault::MalformedJson);
//! ```

pub use super::API_PREFIX;
use super::{HttpsServer, RawResponse, Request, Response, Sim, TlsIdentity};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// QEMU VM or LXC container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestKind {
    /// `qemu`
    Qemu,
    /// `lxc`
    Lxc,
}

impl GuestKind {
    /// `"qemu"` or `"lxc"`, as in `type` and in the URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Lxc => "lxc",
        }
    }
}

/// One cluster member.
#[derive(Clone, Debug)]
pub struct Node {
    /// Node name (`node`).
    pub name: String,
    /// Corosync node id.
    pub nodeid: u32,
    /// Cluster IP.
    pub ip: String,
    /// Whether the node is up (`online` 1/0, `status` online/offline).
    pub online: bool,
    /// CPU usage fraction 0..1.
    pub cpu: f64,
    /// Logical CPUs.
    pub maxcpu: u32,
    /// Used memory, bytes.
    pub mem: u64,
    /// Total memory, bytes.
    pub maxmem: u64,
    /// Used root filesystem, bytes.
    pub disk: u64,
    /// Root filesystem size, bytes.
    pub maxdisk: u64,
    /// Uptime, seconds.
    pub uptime: u64,
    /// Load averages 1/5/15 min (PVE sends strings).
    pub loadavg: [String; 3],
    /// `ssl_fingerprint` in `/nodes`.
    pub ssl_fingerprint: String,
    /// Subscription level (`""` = none).
    pub level: String,
}

/// One VM or container.
#[derive(Clone, Debug)]
pub struct Guest {
    /// VM id.
    pub vmid: u32,
    /// qemu or lxc.
    pub kind: GuestKind,
    /// Name.
    pub name: String,
    /// Node the guest lives on.
    pub node: String,
    /// `running` (true) or `stopped` (false).
    pub running: bool,
    /// CPU usage fraction 0..1.
    pub cpu: f64,
    /// vCPUs (`maxcpu` / `cpus`).
    pub maxcpu: u32,
    /// Used memory, bytes.
    pub mem: u64,
    /// Configured memory, bytes.
    pub maxmem: u64,
    /// Used root disk, bytes (qemu usually reports 0).
    pub disk: u64,
    /// Root disk size, bytes.
    pub maxdisk: u64,
    /// Template flag (0/1 on the wire).
    pub template: bool,
    /// Config lock (`backup`, `migrate`, …).
    pub lock: Option<String>,
    /// `;`-separated tags.
    pub tags: Option<String>,
    /// Uptime, seconds.
    pub uptime: u64,
    /// Network bytes in.
    pub netin: u64,
    /// Network bytes out.
    pub netout: u64,
    /// Block bytes read.
    pub diskread: u64,
    /// Block bytes written.
    pub diskwrite: u64,
    /// Host PID while running.
    pub pid: u32,
    /// Managed by the HA stack.
    pub ha_managed: bool,
    /// QEMU guest agent, when enabled in the VM's configuration (VMs only).
    pub agent: Option<GuestAgent>,
}

/// The QEMU guest agent of a VM (`agent: 1` in its configuration).
#[derive(Clone, Debug)]
pub struct GuestAgent {
    /// Whether it answers inside the guest; if not, PVE says `QEMU guest agent is not running`.
    pub running: bool,
    /// What `guest-get-fsinfo` lists.
    pub filesystems: Vec<GuestFs>,
}

/// One filesystem as `guest-get-fsinfo` reports it.
#[derive(Clone, Debug)]
pub struct GuestFs {
    /// Device (`sda1`, `dm-0`, `loop0`).
    pub name: String,
    /// Mount point.
    pub mountpoint: String,
    /// Filesystem type (`ext4`, `vfat`, `squashfs`, `NTFS`).
    pub fstype: String,
    /// `total-bytes`: the capacity users may fill (without blocks reserved for root).
    pub total: u64,
    /// `used-bytes`.
    pub used: u64,
    /// Serial of the virtual disk it lives on (`drive-scsi0`), if any.
    pub serial: Option<String>,
}

impl GuestFs {
    /// A filesystem `mountpoint` on device `name` of `fstype`.
    pub fn new(name: &str, mountpoint: &str, fstype: &str, total: u64, used: u64) -> Self {
        Self {
            name: name.to_owned(),
            mountpoint: mountpoint.to_owned(),
            fstype: fstype.to_owned(),
            total,
            used,
            serial: None,
        }
    }
}

/// How `smartctl` reads a drive, which decides the shape of PVE's SMART answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmartKind {
    /// SATA: `type: "ata"` and the attribute table (temperature in attribute 194).
    Ata,
    /// NVMe: `type: "text"`, the health log as text (`Temperature: 41 Celsius`).
    Nvme,
    /// SAS/SCSI: `type: "text"` (`Current Drive Temperature: 34 C`).
    Sas,
}

/// SMART data of one disk of [`World::disks`] (every node's disk with that path).
#[derive(Clone, Debug)]
pub struct DiskSmart {
    /// `devpath` of the disk.
    pub devpath: String,
    /// Shape of the answer.
    pub kind: SmartKind,
    /// `PASSED`, `FAILED!` (ATA, NVMe: smartctl's words) or `OK` (SAS).
    pub health: String,
    /// Current temperature, °C; `None`: the drive reports none.
    pub temperature: Option<u32>,
    /// Power-on hours.
    pub power_on_hours: u32,
}

/// A certificate file of `/nodes/{node}/certificates/info`.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// Node whose `/etc/pve/nodes/<node>/` holds it; `None` for the cluster CA
    /// (`/etc/pve/pve-root-ca.pem`), which every node lists.
    pub node: Option<String>,
    /// `pve-root-ca.pem`, `pve-ssl.pem` or `pveproxy-ssl.pem`.
    pub filename: String,
    /// Subject, OpenSSL one-line form.
    pub subject: String,
    /// Issuer, OpenSSL one-line form.
    pub issuer: String,
    /// Start of validity, epoch s.
    pub notbefore: i64,
    /// End of validity, epoch s.
    pub notafter: i64,
    /// Subject alternative names.
    pub san: Vec<String>,
    /// SHA-256 fingerprint, colon-separated hex.
    pub fingerprint: String,
}

/// Certificate file names PVE lists, in its order.
pub const CERT_FILES: [&str; 3] = ["pve-root-ca.pem", "pve-ssl.pem", "pveproxy-ssl.pem"];

/// One storage as seen from one node (shared storages appear once per node, as in PVE).
#[derive(Clone, Debug)]
pub struct Storage {
    /// Node this entry belongs to.
    pub node: String,
    /// Storage id.
    pub storage: String,
    /// Plugin type (`dir`, `zfspool`, `nfs`, `pbs`, …).
    pub kind: String,
    /// Shared flag.
    pub shared: bool,
    /// Content list (`images,rootdir`).
    pub content: String,
    /// Used bytes.
    pub used: u64,
    /// Total bytes.
    pub total: u64,
    /// Reachable.
    pub active: bool,
    /// Enabled in the config.
    pub enabled: bool,
    /// Growth of `used` in bytes per hour (negative: shrinking), applied at serve time from
    /// `fill_since` on, so a pool fills at a steady rate while the simulator runs. Capped at
    /// `total`, floored at 0. Set it with [`PveSimHandle::set_storage_fill_rate`].
    pub fill_bytes_per_hour: f64,
    /// Epoch second at which `used` was measured; the fill rate counts from here.
    pub fill_since: i64,
}

impl Storage {
    /// Used bytes at epoch second `t`, with the fill rate applied.
    pub fn used_at(&self, t: i64) -> u64 {
        if self.fill_bytes_per_hour == 0.0 {
            return self.used.min(self.total);
        }
        let grown =
            self.used as f64 + self.fill_bytes_per_hour * (t - self.fill_since) as f64 / 3600.0;
        grown.clamp(0.0, self.total as f64) as u64
    }
}

/// A storage replication job (`/etc/pve/replication.cfg` plus the source node's state).
///
/// The source node is not stored: as in PVE it is the node the guest runs on, so a migration
/// moves the job to the new node's `/nodes/{node}/replication`.
#[derive(Clone, Debug)]
pub struct ReplicationJob {
    /// `<guest>-<jobnum>`, e.g. `100-0`.
    pub id: String,
    /// Guest VMID.
    pub guest: u32,
    /// Job number.
    pub jobnum: u32,
    /// Target node.
    pub target: String,
    /// Calendar event (`*/15` when `None`, PVE's default).
    pub schedule: Option<String>,
    /// Description.
    pub comment: Option<String>,
    /// Disabled flag (`disable: 1`).
    pub disable: bool,
    /// Rate limit, MB/s.
    pub rate: Option<f64>,
    /// Start of the last successful sync, epoch s; 0 = never synced (PVE sends 0).
    pub last_sync: i64,
    /// Start of the last attempt, epoch s; 0 = never tried.
    pub last_try: i64,
    /// Duration of the last attempt, seconds.
    pub duration: Option<f64>,
    /// Consecutive failures.
    pub fail_count: u32,
    /// Error of the last failed attempt.
    pub error: Option<String>,
    /// Worker PID while a sync runs.
    pub pid: Option<u32>,
}

impl ReplicationJob {
    /// A new, never-run job `<guest>-<jobnum>` to `target` on the default schedule.
    pub fn new(guest: u32, jobnum: u32, target: &str) -> Self {
        Self {
            id: format!("{guest}-{jobnum}"),
            guest,
            jobnum,
            target: target.to_owned(),
            schedule: None,
            comment: None,
            disable: false,
            rate: None,
            last_sync: 0,
            last_try: 0,
            duration: None,
            fail_count: 0,
            error: None,
            pid: None,
        }
    }
}

/// One device of a ZFS pool in `zpool status`.
#[derive(Clone, Debug)]
pub struct ZfsDevice {
    /// Device path (`/dev/disk/by-id/...-part3`) or, for a missing one, its GUID.
    pub name: String,
    /// `ONLINE`, `DEGRADED`, `FAULTED`, `OFFLINE`, `UNAVAIL`, `REMOVED`.
    pub state: String,
    /// Message column (`was /dev/...` for a missing device), usually empty.
    pub msg: String,
}

/// A ZFS pool of one node (`zpool list` / `zpool status`).
#[derive(Clone, Debug)]
pub struct ZfsPool {
    /// Node the pool belongs to.
    pub node: String,
    /// Pool name.
    pub name: String,
    /// Size, bytes.
    pub size: u64,
    /// Allocated, bytes (`free` = `size - alloc`).
    pub alloc: u64,
    /// Fragmentation, percent.
    pub frag: u32,
    /// Dedup ratio (1.0 = none).
    pub dedup: f64,
    /// `ONLINE`, `DEGRADED`, `FAULTED`, `OFFLINE`, `UNAVAIL`, `REMOVED`, `SUSPENDED`.
    pub health: String,
    /// `status:` text of `zpool status` (absent when healthy).
    pub status: Option<String>,
    /// `action:` text (absent when healthy).
    pub action: Option<String>,
    /// `scan:` text (last scrub/resilver).
    pub scan: Option<String>,
    /// `errors:` text.
    pub errors: String,
    /// The vdev grouping the devices (`mirror-0`, `raidz1-0`), `None` for plain disks.
    pub vdev: Option<String>,
    /// Member devices.
    pub devices: Vec<ZfsDevice>,
}

/// A steady wear-out decline of one disk in [`World::disks`], applied at serve time.
#[derive(Clone, Debug)]
pub struct DiskWear {
    /// `devpath` of the disk.
    pub devpath: String,
    /// PVE's `wearout` (percent of life left, 100 = new) at `since`.
    pub wearout: f64,
    /// Decline in percentage points per hour.
    pub points_per_hour: f64,
    /// Epoch second `wearout` was measured at.
    pub since: i64,
}

impl DiskWear {
    /// Wear-out at epoch second `t`, floored at 0.
    pub fn wearout_at(&self, t: i64) -> f64 {
        let hours = (t - self.since) as f64 / 3600.0;
        (self.wearout - self.points_per_hour * hours).clamp(0.0, 100.0)
    }
}

/// A finished task in a node's task list.
#[derive(Clone, Debug)]
pub struct Task {
    /// Node that ran it.
    pub node: String,
    /// Worker PID.
    pub pid: u32,
    /// Process start (clock ticks).
    pub pstart: u64,
    /// Start, epoch seconds.
    pub starttime: i64,
    /// End, epoch seconds.
    pub endtime: i64,
    /// Task type (`vzdump`, `qmigrate`, …).
    pub kind: String,
    /// Task id (vmid for per-guest tasks, `""` for job-level vzdump).
    pub id: String,
    /// User.
    pub user: String,
    /// Exit text: `OK`, `WARNINGS: n` or the error (`job errors` for a backup job in which
    /// some guests failed).
    pub status: String,
    /// Its log (`/nodes/{node}/tasks/{upid}/log`); empty: just the closing `TASK OK` or
    /// `TASK ERROR: <status>` line.
    pub log: Vec<String>,
}

impl Task {
    /// `UPID:<node>:<pid hex8>:<pstart hex8>:<starttime hex8>:<type>:<id>:<user>:`
    pub fn upid(&self) -> String {
        format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

/// A backup volume on a storage (`content=backup`).
#[derive(Clone, Debug)]
pub struct Backup {
    /// Storage holding it.
    pub storage: String,
    /// Volume id.
    pub volid: String,
    /// Guest.
    pub vmid: u32,
    /// Creation, epoch seconds.
    pub ctime: i64,
    /// `pbs-vm`, `pbs-ct`, `vma.zst`, `tar.zst`, …
    pub format: String,
    /// `qemu` or `lxc`.
    pub subtype: String,
    /// Bytes.
    pub size: u64,
}

/// Everything the simulator serves; change it at runtime through [`PveSimHandle::with_world`].
#[derive(Clone, Debug)]
pub struct World {
    /// `None` = standalone node (no `cluster` entry in `/cluster/status`).
    pub cluster_name: Option<String>,
    /// Corosync config version.
    pub config_version: u32,
    /// `/version`: (`version`, `release`, `repoid`).
    pub version: (String, String, String),
    /// The node the API is served from (`local: 1`).
    pub local_node: String,
    /// Members.
    pub nodes: Vec<Node>,
    /// VMs and containers.
    pub guests: Vec<Guest>,
    /// Storages, one entry per node.
    pub storages: Vec<Storage>,
    /// Finished tasks.
    pub tasks: Vec<Task>,
    /// Backup volumes.
    pub backups: Vec<Backup>,
    /// `/cluster/ceph/status` object; `None` = Ceph not installed.
    pub ceph: Option<Value>,
    /// `/nodes/{node}/disks/list` array (same for all nodes).
    pub disks: Value,
    /// `/nodes/{node}/apt/update` array (same for all nodes).
    pub apt_updates: Value,
    /// Storage replication jobs.
    pub replication: Vec<ReplicationJob>,
    /// ZFS pools of all nodes (`/nodes/{node}/disks/zfs`); a node without pools answers `[]`.
    pub zfs_pools: Vec<ZfsPool>,
    /// Wear-out declines of entries in `disks`, by device path.
    pub disk_wear: Vec<DiskWear>,
    /// SMART data of entries in `disks`; a disk without one answers as a drive whose
    /// `smartctl` failed (`health: UNKNOWN`).
    pub smart: Vec<DiskSmart>,
    /// Certificates of the nodes and the cluster CA.
    pub certificates: Vec<Certificate>,
}

/// A switchable misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every request gets `401 permission denied - invalid PVE ticket` (empty body, auth delay).
    BadToken,
    /// Requests needing a privilege on this ACL path (`/vms/100`, `/storage/local`,
    /// `/nodes/node1`, `/`) get `403 Permission check failed (<path>, <priv>)`; lists leave
    /// such objects out, like PVE does.
    MissingPrivilege {
        /// ACL path.
        path: String,
    },
    /// Every request gets `500 <text>`.
    ServerError(String),
    /// Every answer is delayed by this much.
    Slow(Duration),
    /// Answers to requests whose path (under `/api2/json`, without the query) starts with
    /// `prefix` are delayed by `delay`, e.g. a guest agent that hangs.
    SlowPath {
        /// Path prefix, e.g. `/nodes/node1/qemu/100/agent`.
        prefix: String,
        /// Delay.
        delay: Duration,
    },
    /// A seeded share of requests misbehaves, each its own way: `500 Internal Server Error`
    /// or an answer delayed by `delay` (a loaded or failing node). Which ones follows from
    /// `seed` and the request's number, so a run of the same requests misbehaves alike.
    Flaky {
        /// Seed of the choice.
        seed: u64,
        /// Share of requests hit, percent (half of them fail, half are slow).
        percent: u8,
        /// Delay of the slow ones.
        delay: Duration,
    },
    /// Every 200 answer body is cut in half.
    MalformedJson,
    /// The node is unreachable: its `/nodes/{node}/…` calls get `595 No route to host`, and it
    /// shows as offline in cluster views.
    NodeGone(String),
    /// Requests whose path (under `/api2/json`, without the query) starts with `prefix` get
    /// `<status> <reason>`, e.g. `403 Permission check failed (/, Sys.Audit)` on
    /// `/nodes/node1/disks/zfs` or `500 zfsutils-linux not installed`; the rest answer normally.
    PathError {
        /// Path prefix, e.g. `/nodes/node1/replication`.
        prefix: String,
        /// HTTP status.
        status: u16,
        /// Reason (status line and, with error messages on, `message`).
        reason: String,
    },
}

/// Start-up options.
#[derive(Clone, Debug)]
pub struct PveSimOptions {
    /// Accepted API token, `USER@REALM!TOKENID=SECRET`.
    pub token: String,
    /// Delay of 401 answers (real PVE: ~3 s).
    pub auth_delay: Duration,
    /// libpve-http-server-perl >= 5.2.0 (PVE 8.3+, 9): error bodies carry `"message"`.
    pub error_messages: bool,
    /// Initial world.
    pub world: World,
}

impl Default for PveSimOptions {
    fn default() -> Self {
        Self {
            token: "warden@pve!monitor=4f1c2a0e-5b7d-4c3e-9a8f-1d2e3f405162".to_owned(),
            auth_delay: Duration::from_secs(3),
            error_messages: true,
            world: World::default(),
        }
    }
}

impl PveSimOptions {
    /// Defaults with a zero 401 delay (for tests).
    pub fn fast() -> Self {
        Self {
            auth_delay: Duration::ZERO,
            ..Self::default()
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// (year, month, day, hour, minute, second, weekday 0=Sun) of an epoch time, UTC.
fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32, usize) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0);
    let n = |v: i64| u32::try_from(v).unwrap_or(0);
    (
        y,
        n(m),
        n(d),
        n(secs / 3600),
        n(secs % 3600 / 60),
        n(secs % 60),
        wd,
    )
}

/// `2023-12-14T04:34:34Z`
fn iso(t: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `Thu Sep 10 19:48:41 2026` (as in HA status texts).
fn ctime_text(t: i64) -> String {
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(t);
    let month = MO[usize::try_from(mo).unwrap_or(1).saturating_sub(1) % 12];
    format!("{} {month} {d:02} {h:02}:{mi:02}:{s:02} {y}", WD[wd])
}

fn fixture_data(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|mut v| v.get_mut("data").map(Value::take))
        .unwrap_or(Value::Null)
}

#[allow(clippy::too_many_arguments)]
fn node(
    name: &str,
    nodeid: u32,
    cpu: f64,
    maxcpu: u32,
    mem: u64,
    maxmem: u64,
    disk: u64,
    maxdisk: u64,
    uptime: u64,
    fp: &str,
) -> Node {
    Node {
        name: name.to_owned(),
        nodeid,
        ip: format!("192.168.1.{nodeid}"),
        online: true,
        cpu,
        maxcpu,
        mem,
        maxmem,
        disk,
        maxdisk,
        uptime,
        loadavg: ["0.12".to_owned(), "0.08".to_owned(), "0.05".to_owned()],
        ssl_fingerprint: fp.to_owned(),
        level: String::new(),
    }
}

fn guest(vmid: u32, kind: GuestKind, name: &str, node: &str, running: bool) -> Guest {
    Guest {
        vmid,
        kind,
        name: name.to_owned(),
        node: node.to_owned(),
        running,
        cpu: 0.0,
        maxcpu: 1,
        mem: 0,
        maxmem: 536_870_912,
        disk: 0,
        maxdisk: 8_589_934_592,
        template: false,
        lock: None,
        tags: None,
        uptime: 0,
        netin: 0,
        netout: 0,
        diskread: 0,
        diskwrite: 0,
        pid: 0,
        ha_managed: false,
        agent: None,
    }
}

/// A Debian guest's filesystems on a disk of `disk_bytes`, `used` bytes on `/`: the root
/// filesystem, the EFI partition, and a snap package's read-only image (always full).
pub fn linux_filesystems(disk_bytes: u64, used: u64) -> Vec<GuestFs> {
    // ext4 keeps 5 % for root, which `total-bytes` leaves out; the EFI partition takes 512 MiB.
    let root_total = (disk_bytes.saturating_sub(536_870_912)) / 100 * 95;
    let mut root = GuestFs::new("sda1", "/", "ext4", root_total, used.min(root_total));
    root.serial = Some("drive-scsi0".to_owned());
    let mut efi = GuestFs::new("sda15", "/boot/efi", "vfat", 109_422_592, 6_334_464);
    efi.serial = Some("drive-scsi0".to_owned());
    vec![
        root,
        efi,
        GuestFs::new(
            "loop0",
            "/snap/core22/1380",
            "squashfs",
            77_463_552,
            77_463_552,
        ),
    ]
}

/// SMART of a SATA drive at `celsius` °C.
fn ata(devpath: &str, celsius: u32) -> DiskSmart {
    DiskSmart {
        devpath: devpath.to_owned(),
        kind: SmartKind::Ata,
        health: "PASSED".to_owned(),
        temperature: Some(celsius),
        power_on_hours: 14_123,
    }
}

/// The certificates of a node joined `age_days` ago: `pve-ssl.pem`, signed by the cluster CA
/// for two years, as `pvecm` creates it.
fn node_certificate(n: &Node, t: i64, age_days: i64) -> Certificate {
    let issued = t - age_days * 86_400;
    Certificate {
        node: Some(n.name.clone()),
        filename: "pve-ssl.pem".to_owned(),
        subject: format!(
            "/OU=PVE Cluster Node/O=Proxmox Virtual Environment/CN={}.example.lan",
            n.name
        ),
        issuer: CA_SUBJECT.to_owned(),
        notbefore: issued,
        notafter: issued + 2 * 365 * 86_400,
        san: vec![
            "127.0.0.1".to_owned(),
            "0000:0000:0000:0000:0000:0000:0000:0001".to_owned(),
            "localhost".to_owned(),
            n.ip.clone(),
            n.name.clone(),
            format!("{}.example.lan", n.name),
        ],
        fingerprint: n.ssl_fingerprint.clone(),
    }
}

/// The cluster CA's subject (pve-cluster `PVE::Cluster::Setup::gen_pveca_cert`).
const CA_SUBJECT: &str = concat!(
    "/CN=Proxmox Virtual Environment",
    "/OU=3f0d1c52-8b2e-4a7d-9a41-5e2f7c6b1d90/O=PVE Cluster Manager CA"
);

/// The cluster CA, created `age_days` ago for ten years.
fn cluster_ca(t: i64, age_days: i64) -> Certificate {
    let issued = t - age_days * 86_400;
    Certificate {
        node: None,
        filename: "pve-root-ca.pem".to_owned(),
        subject: CA_SUBJECT.to_owned(),
        issuer: CA_SUBJECT.to_owned(),
        notbefore: issued,
        notafter: issued + 10 * 365 * 86_400,
        san: Vec::new(),
        fingerprint: "6B:2E:91:0C:D4:7A:33:58:E1:9F:02:BB:46:C8:7D:15:A0:E3:5C:98:21:4F:6D:B7:0E:83:19:CA:52:F6:7B:D4".to_owned(),
    }
}

impl Default for World {
    /// The 4-node cluster of `cluster_resources.mixed.json` / `cluster_status.pve7.json`
    /// (values copied from the captures), plus containers shaped like
    /// `nodes_node_lxc.strings.json`, the storages of `nodes_node_storage.pve9.json`, a PBS
    /// storage with backups shaped like `storage_content.backup_pbs.json`, and vzdump tasks
    /// shaped like `nodes_node_tasks.vzdump_ok.pve9.json`. Healthy where the captures say
    /// nothing: the disks run at 31–38 °C, VM 100's guest agent reports its root filesystem
    /// 23 % full, and the certificates have most of their life ahead.
    fn default() -> Self {
        let t = now();
        let nodes = vec![
            node(
                "node1",
                1,
                0.003_369_104_067_881_21,
                8,
                2_113_265_664,
                65_919_459_328,
                10_486_546_432,
                951_055_941_632,
                872_854,
                "80:D4:F2:DF:64:95:CD:8D:A0:82:82:AC:48:BA:C0:7A:1B:6B:87:8B:FE:B9:83:1C:95:4E:79:58:77:99:69:F5",
            ),
            node(
                "node2",
                2,
                0.003_653_878_093_339_98,
                12,
                8_127_873_024,
                33_567_911_936,
                2_797_338_624,
                940_166_742_016,
                874_373,
                "17:F1:B6:52:8B:0C:22:4A:97:1F:B2:F2:90:3D:29:0A:D0:DF:BE:0E:76:5A:B5:EC:F6:2E:6E:8F:60:E6:C5:C0",
            ),
            node(
                "node3",
                3,
                0.005_491_762_356_465_3,
                4,
                1_681_965_056,
                16_668_827_648,
                2_983_723_008,
                482_713_534_464,
                872_961,
                "1D:56:94:B4:75:4B:5C:33:46:DD:14:38:6C:EC:6E:12:A8:F0:66:64:5E:F2:40:F7:60:2A:C0:9F:BF:6C:51:3C",
            ),
            node(
                "node4",
                4,
                0.007_240_948_813_982_52,
                4,
                1_698_938_880,
                16_651_702_272,
                2_789_867_520,
                482_719_825_920,
                872_920,
                "0D:78:80:CD:64:8E:96:E5:31:87:1C:45:3C:62:93:2F:23:4C:D5:02:42:FE:C8:40:DC:AF:3D:2A:F8:B4:F6:CE",
            ),
        ];

        let mut g100 = guest(100, GuestKind::Qemu, "server1", "node2", true);
        g100.cpu = 0.024_906_019_546_946_1;
        g100.mem = 842_551_296;
        g100.maxmem = 1_073_741_824;
        g100.maxdisk = 34_359_738_368;
        g100.uptime = 874_350;
        g100.netin = 2_456_116_121;
        g100.netout = 545_248_946;
        g100.diskread = 4_510_777_856;
        g100.diskwrite = 6_059_209_728;
        g100.pid = 1_563_102;
        g100.ha_managed = true;
        g100.agent = Some(GuestAgent {
            running: true,
            filesystems: linux_filesystems(g100.maxdisk, 7_344_300_032),
        });
        let mut g101 = guest(101, GuestKind::Qemu, "leap154", "node1", false);
        g101.maxcpu = 4;
        g101.maxmem = 16_777_216_000;
        g101.maxdisk = 68_719_476_736;
        g101.template = true;
        let mut g102 = guest(102, GuestKind::Qemu, "machine-test", "node1", false);
        g102.maxcpu = 4;
        g102.maxmem = 8_388_608_000;
        g102.maxdisk = 53_901_000_704;
        g102.tags = Some("go-proxmox+cloud-init".to_owned());
        let mut g200 = guest(200, GuestKind::Qemu, "VM 200", "node1", false);
        g200.maxcpu = 4;
        g200.maxmem = 8_388_608_000;
        g200.maxdisk = 53_901_000_704;
        let mut g106 = guest(106, GuestKind::Lxc, "test", "node3", true);
        g106.disk = 640_397_312;
        g106.maxdisk = 8_350_298_112;
        g106.mem = 34_304_000;
        g106.uptime = 919_760;
        g106.netin = 94_558_593;
        g106.netout = 1_618_542;
        g106.diskread = 273_694_720;
        g106.diskwrite = 200_982_528;
        g106.pid = 248_173;
        let mut g105 = guest(105, GuestKind::Lxc, "zort", "node3", true);
        g105.disk = 639_303_680;
        g105.maxdisk = 8_350_298_112;
        g105.mem = 34_508_800;
        g105.uptime = 919_761;
        g105.netin = 94_560_801;
        g105.netout = 1_619_838;
        g105.diskread = 283_123_712;
        g105.diskwrite = 201_687_040;
        g105.pid = 248_045;
        let mut g103 = guest(103, GuestKind::Lxc, "test-container", "node4", false);
        g103.template = true;
        g103.tags = Some("tag1;tag2".to_owned());

        let mut storages = Vec::new();
        for n in &nodes {
            storages.push(Storage {
                node: n.name.clone(),
                storage: "local".to_owned(),
                kind: "dir".to_owned(),
                shared: false,
                content: "backup,vztmpl,iso".to_owned(),
                used: n.disk,
                total: n.maxdisk,
                active: true,
                enabled: true,
                fill_bytes_per_hour: 0.0,
                fill_since: t,
            });
            storages.push(Storage {
                node: n.name.clone(),
                storage: "local-zfs".to_owned(),
                kind: "zfspool".to_owned(),
                shared: false,
                content: "images,rootdir".to_owned(),
                used: 14_446_702_592,
                total: 955_016_175_616,
                active: true,
                enabled: true,
                fill_bytes_per_hour: 0.0,
                fill_since: t,
            });
            storages.push(Storage {
                node: n.name.clone(),
                storage: "synology".to_owned(),
                kind: "nfs".to_owned(),
                shared: true,
                content: "backup,images".to_owned(),
                used: 1_391_442_395_136,
                total: 1_915_211_874_304,
                active: true,
                enabled: true,
                fill_bytes_per_hour: 0.0,
                fill_since: t,
            });
            storages.push(Storage {
                node: n.name.clone(),
                storage: "pbs".to_owned(),
                kind: "pbs".to_owned(),
                shared: true,
                content: "backup".to_owned(),
                used: 273_804_166_061 * 3,
                total: 4_000_787_030_016,
                active: true,
                enabled: true,
                fill_bytes_per_hour: 0.0,
                fill_since: t,
            });
        }

        let day = 86_400;
        let mut backups = Vec::new();
        for (vmid, subtype, format, size) in [
            (100u32, "qemu", "pbs-vm", 34_359_738_368u64),
            (105, "lxc", "pbs-ct", 639_303_680),
            (106, "lxc", "pbs-ct", 640_397_312),
        ] {
            for age in [2 * day, day] {
                let ctime = t - age - 3600;
                let dir = if subtype == "qemu" { "vm" } else { "ct" };
                backups.push(Backup {
                    storage: "pbs".to_owned(),
                    volid: format!("pbs:backup/{dir}/{vmid}/{}", iso(ctime)),
                    vmid,
                    ctime,
                    format: format.to_owned(),
                    subtype: subtype.to_owned(),
                    size,
                });
            }
        }

        let tasks = ["node2", "node3"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let start = t - day - 3600 + i64::try_from(i).unwrap_or(0) * 60;
                Task {
                    node: (*n).to_owned(),
                    pid: 2_146_406 + u32::try_from(i).unwrap_or(0),
                    pstart: 70_119_940,
                    starttime: start,
                    endtime: start + 433,
                    kind: "vzdump".to_owned(),
                    id: String::new(),
                    user: "root@pam".to_owned(),
                    status: "OK".to_owned(),
                    log: Vec::new(),
                }
            })
            .collect();

        let replication = default_replication(t);
        let zfs_pools = nodes
            .iter()
            .map(|n| rpool(&n.name))
            .chain([tank_degraded("node1")])
            .collect();
        // The fixture's disks as a SAS drive and two SATA drives, all comfortably cool.
        let smart = vec![
            DiskSmart {
                devpath: "/dev/sda".to_owned(),
                kind: SmartKind::Sas,
                health: "OK".to_owned(),
                temperature: Some(31),
                power_on_hours: 20_411,
            },
            ata("/dev/sdb", 38),
            ata("/dev/sdc", 36),
        ];
        let certificates = std::iter::once(cluster_ca(t, 400))
            .chain(nodes.iter().map(|n| node_certificate(n, t, 400)))
            .collect();

        Self {
            cluster_name: Some("clustername".to_owned()),
            config_version: 4,
            version: ("9.1.1".to_owned(), "9.1".to_owned(), "0f39f621".to_owned()),
            local_node: "node1".to_owned(),
            nodes,
            guests: vec![g100, g101, g102, g200, g106, g105, g103],
            storages,
            tasks,
            backups,
            ceph: Some(ceph_ok()),
            disks: fixture_data(include_str!(
                "../../fixtures/pve/disks_list.qemu_lab_ceph.json"
            )),
            apt_updates: fixture_data(include_str!("../../fixtures/pve/apt_update.pve9.json")),
            replication,
            zfs_pools,
            disk_wear: Vec::new(),
            smart,
            certificates,
        }
    }
}

impl World {
    /// A cluster `cluster` of the named nodes with `guests` guests spread round-robin over
    /// them, cloned from the default world's shapes: each node gets the default node's
    /// figures, its local storages and the shared ones; every running guest has a backup from
    /// yesterday and the day before on `pbs`; each node has a healthy `rpool`; no replication
    /// jobs; each node has its certificate (330 more days to go). Used by benchmarks (hundreds
    /// of nodes) and the demo fleet.
    pub fn scaled(cluster: &str, node_names: &[String], guests: usize) -> Self {
        let mut w = Self::default();
        let t = now();
        let node_tpl = w.nodes[0].clone();
        let guest_tpls = w.guests.clone();
        let storage_tpls: Vec<_> = w
            .storages
            .iter()
            .filter(|s| s.node == node_tpl.name)
            .cloned()
            .collect();
        let n = node_names.len().max(1);
        w.cluster_name = Some(cluster.to_owned());
        w.local_node = node_names.first().cloned().unwrap_or_default();
        w.nodes = node_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut node = node_tpl.clone();
                node.name.clone_from(name);
                node.nodeid = u32::try_from(i + 1).unwrap_or(u32::MAX);
                node.ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
                node
            })
            .collect();
        w.guests = (0..guests)
            .map(|i| {
                let mut g = guest_tpls[i % guest_tpls.len()].clone();
                g.vmid = u32::try_from(100 + i).unwrap_or(u32::MAX);
                g.name = format!("guest-{}", 100 + i);
                g.node = node_names[i % n].clone();
                g.template = false;
                g
            })
            .collect();
        w.storages = node_names
            .iter()
            .flat_map(|name| {
                storage_tpls.iter().map(move |s| {
                    let mut s = s.clone();
                    s.node.clone_from(name);
                    s
                })
            })
            .collect();
        let day = 86_400;
        w.backups = w
            .guests
            .iter()
            .filter(|g| g.running)
            .flat_map(|g| {
                let (dir, format, subtype) = match g.kind {
                    GuestKind::Lxc => ("ct", "pbs-ct", "lxc"),
                    GuestKind::Qemu => ("vm", "pbs-vm", "qemu"),
                };
                [2 * day, day].map(|age| {
                    let ctime = t - age - 3600;
                    Backup {
                        storage: "pbs".to_owned(),
                        volid: format!("pbs:backup/{dir}/{}/{}", g.vmid, iso(ctime)),
                        vmid: g.vmid,
                        ctime,
                        format: format.to_owned(),
                        subtype: subtype.to_owned(),
                        size: g.maxdisk / 3,
                    }
                })
            })
            .collect();
        w.tasks.retain(|task| task.node == node_tpl.name);
        for task in &mut w.tasks {
            task.node.clone_from(&w.local_node);
        }
        w.replication.clear();
        w.zfs_pools = node_names.iter().map(|name| rpool(name)).collect();
        w.certificates = std::iter::once(cluster_ca(t, 400))
            .chain(w.nodes.iter().map(|n| node_certificate(n, t, 400)))
            .collect();
        w
    }
}

/// Replication jobs of the default world (field set of PVE's `/nodes/{node}/replication`;
/// no public capture exists, see the fixtures README):
/// - `100-0`: VM 100 (node2) to node1 every 15 min, last synced 5 min ago;
/// - `105-0`: CT 105 (node3) to node4 every 30 min, failing 3 times since its last success 3 h
///   ago (a broken `pvesm import` over SSH, as PVE words it);
/// - `102-0`: VM 102 (node1) to node2, created but never run (`last_sync` 0).
fn default_replication(t: i64) -> Vec<ReplicationJob> {
    let mut ok = ReplicationJob::new(100, 0, "node1");
    ok.last_sync = t - 300;
    ok.last_try = t - 300;
    ok.duration = Some(2.834_177);
    let mut failing = ReplicationJob::new(105, 0, "node4");
    failing.schedule = Some("*/30".to_owned());
    failing.comment = Some("CT 105 standby copy".to_owned());
    failing.last_sync = t - 3 * 3600;
    failing.last_try = t - 600;
    failing.duration = Some(1.276_418);
    failing.fail_count = 3;
    let snap = format!("__replicate_105-0_{}__", t - 600);
    failing.error = Some(format!(
        "command 'set -o pipefail && pvesm export local-zfs:subvol-105-disk-0 zfs - -with-snapshots 1 -snapshot {snap} | /usr/bin/ssh -e none -o 'BatchMode=yes' -o 'HostKeyAlias=node4' root@192.168.1.4 -- pvesm import local-zfs:subvol-105-disk-0 zfs - -with-snapshots 1 -snapshot {snap} -allow-rename 0' failed: exit code 255"
    ));
    let never = ReplicationJob::new(102, 0, "node2");
    vec![ok, failing, never]
}

/// The `rpool` a PVE installer creates on ZFS (a mirror of two SSDs), healthy.
pub fn rpool(node: &str) -> ZfsPool {
    let dev = |n: u32| ZfsDevice {
        name: format!("/dev/disk/by-id/ata-SAMSUNG_MZ7L3960HCJR-00A07_S662NE0W10{n:04}-part3"),
        state: "ONLINE".to_owned(),
        msg: String::new(),
    };
    ZfsPool {
        node: node.to_owned(),
        name: "rpool".to_owned(),
        size: 996_432_412_672,
        alloc: 15_393_064_960,
        frag: 3,
        dedup: 1.0,
        health: "ONLINE".to_owned(),
        status: None,
        action: None,
        scan: Some(
            "scrub repaired 0B in 00:01:12 with 0 errors on Sun Nov  8 00:25:13 2026".to_owned(),
        ),
        errors: "No known data errors".to_owned(),
        vdev: Some("mirror-0".to_owned()),
        devices: vec![dev(1), dev(2)],
    }
}

/// A `tank` raidz1 pool that lost one of its three disks: `DEGRADED`, with `zpool status`'s
/// texts for that case.
pub fn tank_degraded(node: &str) -> ZfsPool {
    let dev = |n: u32, state: &str, msg: &str| ZfsDevice {
        name: format!("/dev/disk/by-id/ata-ST4000VN008-2DR166_ZDH1{n:04}-part1"),
        state: state.to_owned(),
        msg: msg.to_owned(),
    };
    let mut missing = dev(3, "UNAVAIL", "");
    missing.msg = format!("was {}", missing.name);
    missing.name = "8211457322491634120".to_owned();
    ZfsPool {
        node: node.to_owned(),
        name: "tank".to_owned(),
        size: 11_957_188_952_064,
        alloc: 8_674_038_792_192,
        frag: 17,
        dedup: 1.0,
        health: "DEGRADED".to_owned(),
        status: Some(
            "One or more devices could not be used because the label is missing or invalid. Sufficient replicas exist for the pool to continue functioning in a degraded state."
                .to_owned(),
        ),
        action: Some("Replace the device using 'zpool replace'.".to_owned()),
        scan: Some("scrub repaired 0B in 05:12:44 with 0 errors on Sun Nov  8 05:36:45 2026".to_owned()),
        errors: "No known data errors".to_owned(),
        vdev: Some("raidz1-0".to_owned()),
        devices: vec![dev(1, "ONLINE", ""), dev(2, "ONLINE", ""), missing],
    }
}

/// A healthy Ceph status using the keys of `ceph_status.reef_health_warn.json` (trimmed).
pub fn ceph_ok() -> Value {
    json!({
        "fsid": "5c1b7d8e-2f3a-4b6c-9d0e-1f2a3b4c5d6e",
        "health": {"checks": {}, "status": "HEALTH_OK", "mutes": []},
        "quorum_names": ["node1", "node2", "node3"],
        "pgmap": {
            "bytes_total": 51_850_204_151_808u64, "pgs_by_state": [{"count": 577, "state_name": "active+clean"}],
            "bytes_used": 31_663_826_219_008u64, "write_bytes_sec": 2_697_932, "num_objects": 3_059_395,
            "read_bytes_sec": 50_660, "num_pgs": 577, "bytes_avail": 20_186_377_932_800u64,
            "read_op_per_sec": 3, "write_op_per_sec": 211, "num_pools": 4, "data_bytes": 10_589_439_042_005u64
        },
        "osdmap": {
            "epoch": 33_867, "num_in_osds": 21, "num_osds": 21, "osd_up_since": 1_739_293_535,
            "osd_in_since": 1_739_293_526, "num_up_osds": 21, "num_remapped_pgs": 0
        }
    })
}

/// The `health` object of `ceph_status.reef_health_warn.json` (OSD/pool nearfull warning).
pub fn ceph_health_warn() -> Value {
    json!({
        "checks": {
            "OSD_NEARFULL": {
                "severity": "HEALTH_WARN",
                "detail": [{"message": "osd.3 is near full"}],
                "summary": {"message": "1 nearfull osd(s)", "count": 1},
                "muted": false
            }
        },
        "status": "HEALTH_WARN",
        "mutes": []
    })
}

/// The simulator's clock: the wall clock shifted by `offset`, or frozen (tests).
#[derive(Clone, Copy, Debug, Default)]
struct Clock {
    frozen: Option<i64>,
    offset: i64,
}

impl Clock {
    fn now(self) -> i64 {
        self.frozen.unwrap_or_else(|| now() + self.offset)
    }
}

struct State {
    world: World,
    faults: Vec<Fault>,
    token: String,
    auth_delay: Duration,
    error_messages: bool,
    requests: u64,
    clock: Clock,
}

/// Cloneable control handle of a running simulator.
#[derive(Clone)]
pub struct PveSimHandle {
    state: Arc<Mutex<State>>,
}

/// A running simulator; stops when dropped. Derefs to its [`PveSimHandle`].
pub type PveSim = Sim<PveSimHandle>;

impl Sim<PveSimHandle> {
    /// Starts the simulator on `127.0.0.1:<free port>` with a fresh CA and certificate.
    ///
    /// # Panics
    /// If the certificate or the listener cannot be created.
    pub fn start(opts: PveSimOptions) -> Self {
        let identity = TlsIdentity::generate("Proxmox Virtual Environment", &opts.world.local_node)
            .expect("simulator certificate");
        let state = Arc::new(Mutex::new(State {
            world: opts.world,
            faults: Vec::new(),
            token: opts.token,
            auth_delay: opts.auth_delay,
            error_messages: opts.error_messages,
            requests: 0,
            clock: Clock::default(),
        }));
        let st = state.clone();
        let server = HttpsServer::start(&identity, Arc::new(move |req| handle(&st, req)))
            .expect("start PVE simulator");
        Self::new(PveSimHandle { state }, identity, server)
    }

    /// `Authorization` header value for the configured token.
    pub fn auth_header(&self) -> String {
        format!("PVEAPIToken={}", self.lock().token)
    }

    /// `GET {base}{path}` with the configured token (path relative to `/api2/json`).
    ///
    /// # Panics
    /// On transport errors.
    pub fn get(&self, path: &str) -> RawResponse {
        let auth = self.auth_header();
        self.get_with_auth(path, Some(&auth))
    }
}

impl PveSimHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces all faults with this one.
    pub fn set_fault(&self, fault: Fault) {
        self.lock().faults = vec![fault];
    }

    /// Adds a fault to the active ones.
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Active faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// Changes the accepted token (`USER@REALM!TOKENID=SECRET`).
    pub fn set_token(&self, token: &str) {
        token.clone_into(&mut self.lock().token);
    }

    /// Changes the delay of 401 answers.
    pub fn set_auth_delay(&self, d: Duration) {
        self.lock().auth_delay = d;
    }

    /// Switches between PVE ≥ 8.3 error bodies (`"message"`) and older `{"data":null}`.
    pub fn set_error_messages(&self, on: bool) {
        self.lock().error_messages = on;
    }

    /// Number of requests answered so far (including rejected ones).
    pub fn request_count(&self) -> u64 {
        self.lock().requests
    }

    /// A snapshot of the world.
    pub fn world(&self) -> World {
        self.lock().world.clone()
    }

    /// Runs `f` on the world under the lock.
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.lock().world)
    }

    /// Runs `f` on the world and the simulator's current time under the lock.
    fn with_world_now<R>(&self, f: impl FnOnce(&mut World, i64) -> R) -> R {
        let mut st = self.lock();
        let t = st.clock.now();
        f(&mut st.world, t)
    }

    /// The simulator's current time, epoch seconds: the wall clock unless frozen or advanced.
    /// Time-based evolution (fill rates, wear-out), HA timestamps and new tasks use it.
    pub fn now(&self) -> i64 {
        self.lock().clock.now()
    }

    /// Stops the simulator's clock at epoch second `at` (for tests: values derived from time
    /// stay put until [`Self::advance_clock`]).
    pub fn freeze_clock(&self, at: i64) {
        self.lock().clock.frozen = Some(at);
    }

    /// Moves the simulator's clock forward by `by` (whole seconds), frozen or not.
    pub fn advance_clock(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        let mut st = self.lock();
        match &mut st.clock.frozen {
            Some(t) => *t = t.saturating_add(secs),
            None => st.clock.offset = st.clock.offset.saturating_add(secs),
        }
    }

    /// Moves a guest to another node (a finished migration); adds a `qmigrate`/`vzmigrate`
    /// task on the source node. Returns false if the guest or node does not exist.
    pub fn migrate(&self, vmid: u32, to: &str) -> bool {
        self.with_world_now(|w, t| {
            if !w.nodes.iter().any(|n| n.name == to) {
                return false;
            }
            let Some(g) = w.guests.iter_mut().find(|g| g.vmid == vmid) else {
                return false;
            };
            let from = std::mem::replace(&mut g.node, to.to_owned());
            let kind = match g.kind {
                GuestKind::Qemu => "qmigrate",
                GuestKind::Lxc => "vzmigrate",
            };
            push_task(w, t, &from, kind, &vmid.to_string(), "OK");
            true
        })
    }

    /// Sets the used bytes of a storage on one node (all nodes if shared), from now on; a fill
    /// rate keeps running from this value. Returns false if it does not exist.
    pub fn set_storage_usage(&self, node: &str, storage: &str, used: u64) -> bool {
        self.for_storage(node, storage, |s, t| {
            s.used = used.min(s.total);
            s.fill_since = t;
        })
    }

    /// Lets a storage on one node (all nodes if shared) fill at `bytes_per_hour` from now on
    /// (negative: free up), computed from the simulator's clock at each answer and capped at
    /// its total; 0 stops it. Returns false if it does not exist.
    pub fn set_storage_fill_rate(&self, node: &str, storage: &str, bytes_per_hour: f64) -> bool {
        self.for_storage(node, storage, |s, t| {
            s.used = s.used_at(t);
            s.fill_since = t;
            s.fill_bytes_per_hour = bytes_per_hour;
        })
    }

    fn for_storage(&self, node: &str, storage: &str, f: impl Fn(&mut Storage, i64)) -> bool {
        self.with_world_now(|w, t| {
            let shared = w
                .storages
                .iter()
                .find(|s| s.node == node && s.storage == storage)
                .map(|s| s.shared);
            let Some(shared) = shared else { return false };
            for s in &mut w.storages {
                if s.storage == storage && (shared || s.node == node) {
                    f(s, t);
                }
            }
            true
        })
    }

    /// Sets a disk's wear-out (PVE's `wearout`: percent of life left) from now on, keeping
    /// any decline rate. Returns false if no disk has this `devpath`.
    pub fn set_disk_wearout(&self, devpath: &str, wearout: f64) -> bool {
        self.with_world_now(|w, t| {
            if !has_disk(&w.disks, devpath) {
                return false;
            }
            match w.disk_wear.iter_mut().find(|d| d.devpath == devpath) {
                Some(d) => {
                    d.wearout = wearout.clamp(0.0, 100.0);
                    d.since = t;
                }
                None => w.disk_wear.push(DiskWear {
                    devpath: devpath.to_owned(),
                    wearout: wearout.clamp(0.0, 100.0),
                    points_per_hour: 0.0,
                    since: t,
                }),
            }
            true
        })
    }

    /// Lets a disk's wear-out decline by `points_per_hour` percentage points per hour from now
    /// on (0 stops it), floored at 0. Returns false if the disk does not exist or has no
    /// numeric wear-out (`"N/A"`): give it one with [`Self::set_disk_wearout`] first.
    pub fn set_disk_wear_rate(&self, devpath: &str, points_per_hour: f64) -> bool {
        self.with_world_now(|w, t| {
            if let Some(d) = w.disk_wear.iter_mut().find(|d| d.devpath == devpath) {
                d.wearout = d.wearout_at(t);
                d.since = t;
                d.points_per_hour = points_per_hour;
                return true;
            }
            let current = w
                .disks
                .as_array()
                .and_then(|a| a.iter().find(|d| d["devpath"] == devpath))
                .and_then(|d| d["wearout"].as_f64());
            let Some(wearout) = current else { return false };
            w.disk_wear.push(DiskWear {
                devpath: devpath.to_owned(),
                wearout,
                points_per_hour,
                since: t,
            });
            true
        })
    }

    /// Makes a guest's backups look stopped: its backup volumes move back in time so the
    /// newest is `newest_age` old (spacing and count kept, volids renamed to match). Nothing in
    /// the simulator makes new backups by itself, so they stay stopped until
    /// [`Self::add_vzdump_ok`]. Returns false if the guest has no backups.
    pub fn stop_backups(&self, vmid: u32, newest_age: Duration) -> bool {
        let age = i64::try_from(newest_age.as_secs()).unwrap_or(i64::MAX);
        self.with_world_now(|w, t| {
            let Some(newest) = w
                .backups
                .iter()
                .filter(|b| b.vmid == vmid)
                .map(|b| b.ctime)
                .max()
            else {
                return false;
            };
            let shift = newest - (t - age);
            for b in w.backups.iter_mut().filter(|b| b.vmid == vmid) {
                let old = iso(b.ctime);
                b.ctime -= shift;
                if let Some(prefix) = b.volid.strip_suffix(&old) {
                    b.volid = format!("{prefix}{}", iso(b.ctime));
                }
            }
            true
        })
    }

    /// Records a finished 1.5 s attempt of replication job `job` now: `Some(error)` fails it
    /// (one more in `fail_count`, `error` set), `None` succeeds (`last_sync` = now, failures
    /// cleared). Returns false if the job does not exist.
    pub fn set_replication_result(&self, job: &str, error: Option<&str>) -> bool {
        self.with_world_now(|w, t| {
            let Some(j) = w.replication.iter_mut().find(|j| j.id == job) else {
                return false;
            };
            j.last_try = t;
            j.duration = Some(1.5);
            j.pid = None;
            match error {
                Some(e) => {
                    j.fail_count += 1;
                    j.error = Some(e.to_owned());
                }
                None => {
                    j.last_sync = t;
                    j.fail_count = 0;
                    j.error = None;
                }
            }
            true
        })
    }

    /// Sets the health of a node's ZFS pool (`ONLINE`, `DEGRADED`, `FAULTED`, ...). Returns
    /// false if the pool does not exist.
    pub fn set_zfs_health(&self, node: &str, pool: &str, health: &str) -> bool {
        self.with_world(|w| {
            let Some(p) = w
                .zfs_pools
                .iter_mut()
                .find(|p| p.node == node && p.name == pool)
            else {
                return false;
            };
            health.clone_into(&mut p.health);
            true
        })
    }

    /// Adds a failed `vzdump` task for `vmid` on `node` (status = `error`); returns its UPID.
    pub fn add_failed_vzdump(&self, node: &str, vmid: u32, error: &str) -> String {
        self.with_world_now(|w, t| push_task(w, t, node, "vzdump", &vmid.to_string(), error))
    }

    /// Adds a scheduled backup job's task on `node` as PVE runs it: one `vzdump` task with an
    /// empty id for all `guests`, each `(vmid, None)` backed up or `(vmid, Some(error))`
    /// failed, with vzdump's log (`ERROR: Backup of VM <vmid> failed - <error>`); its status
    /// is `job errors` when any failed. Returns the UPID.
    pub fn add_vzdump_job(&self, node: &str, guests: &[(u32, Option<&str>)]) -> String {
        self.with_world_now(|w, t| {
            let vmids: Vec<String> = guests.iter().map(|(v, _)| v.to_string()).collect();
            let mut log = vec![format!(
                "INFO: starting new backup job: vzdump {} --mode snapshot --storage pbs \
                 --notes-template '{{{{guestname}}}}' --mailnotification failure",
                vmids.join(" ")
            )];
            for (vmid, error) in guests {
                let kind = w
                    .guests
                    .iter()
                    .find(|g| g.vmid == *vmid)
                    .map_or("qemu", |g| g.kind.as_str());
                log.push(format!("INFO: Starting Backup of VM {vmid} ({kind})"));
                log.push(format!("INFO: Backup started at {}", iso(t - 60)));
                match error {
                    Some(e) => {
                        log.push(format!("ERROR: Backup of VM {vmid} failed - {e}"));
                        log.push(format!("INFO: Failed at {}", iso(t - 50)));
                    }
                    None => {
                        log.push("INFO: status = running".to_owned());
                        log.push(format!("INFO: Finished Backup of VM {vmid} (00:00:12)"));
                    }
                }
            }
            let failed = guests.iter().any(|(_, e)| e.is_some());
            log.push(format!("INFO: Backup finished at {}", iso(t)));
            log.push(if failed {
                "INFO: Backup job finished with errors".to_owned()
            } else {
                "INFO: Backup job finished successfully".to_owned()
            });
            let status = if failed { "job errors" } else { "OK" };
            let upid = push_task(w, t, node, "vzdump", "", status);
            if let Some(task) = w.tasks.last_mut() {
                task.log = log;
            }
            upid
        })
    }

    /// Adds a backup job's task on `node` (empty id) that failed as a whole with `error`
    /// before any guest, over `--all` guests, so its log names none. Returns the UPID.
    pub fn add_failed_vzdump_job(&self, node: &str, error: &str) -> String {
        self.with_world_now(|w, t| {
            let upid = push_task(w, t, node, "vzdump", "", error);
            if let Some(task) = w.tasks.last_mut() {
                task.log = vec![
                    "INFO: starting new backup job: vzdump --all 1 --mode snapshot --storage pbs"
                        .to_owned(),
                ];
            }
            upid
        })
    }

    /// Sets a disk's SMART health as `/nodes/{node}/disks/list` and `disks/smart` report
    /// it: `PASSED`, `OK`, `FAILED!` (smartctl's word for a failing ATA or NVMe drive),
    /// `UNKNOWN`. Returns false if no disk has this `devpath`.
    pub fn set_disk_health(&self, devpath: &str, health: &str) -> bool {
        self.with_world(|w| {
            let Some(d) = w
                .disks
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|d| d["devpath"] == devpath))
            else {
                return false;
            };
            d["health"] = json!(health);
            if let Some(s) = w.smart.iter_mut().find(|s| s.devpath == devpath) {
                health.clone_into(&mut s.health);
            }
            true
        })
    }

    /// Adds a successful `vzdump` task for `vmid` on `node` plus a backup volume on
    /// `storage`; returns the UPID.
    pub fn add_vzdump_ok(&self, node: &str, vmid: u32, storage: &str) -> String {
        self.with_world_now(|w, t| {
            let upid = push_task(w, t, node, "vzdump", &vmid.to_string(), "OK");
            let lxc = w
                .guests
                .iter()
                .any(|g| g.vmid == vmid && g.kind == GuestKind::Lxc);
            let (dir, format, subtype) = if lxc {
                ("ct", "pbs-ct", "lxc")
            } else {
                ("vm", "pbs-vm", "qemu")
            };
            w.backups.push(Backup {
                storage: storage.to_owned(),
                volid: format!("{storage}:backup/{dir}/{vmid}/{}", iso(t)),
                vmid,
                ctime: t,
                format: format.to_owned(),
                subtype: subtype.to_owned(),
                size: 1_073_741_824,
            });
            upid
        })
    }

    /// Sets how full a guest's disk is, `used` bytes capped at its size: a container's root
    /// disk (`mountpoint` `/`; `disk` in `/cluster/resources`) or the filesystem at
    /// `mountpoint` that a VM's guest agent reports. Returns false if the guest, or the VM's
    /// agent or that filesystem, does not exist.
    pub fn set_guest_disk(&self, vmid: u32, mountpoint: &str, used: u64) -> bool {
        self.with_world(|w| {
            let Some(g) = w.guests.iter_mut().find(|g| g.vmid == vmid) else {
                return false;
            };
            match (g.kind, g.agent.as_mut()) {
                (GuestKind::Lxc, _) if mountpoint == "/" => {
                    g.disk = used.min(g.maxdisk);
                    true
                }
                (GuestKind::Qemu, Some(agent)) => {
                    let Some(fs) = agent
                        .filesystems
                        .iter_mut()
                        .find(|f| f.mountpoint == mountpoint)
                    else {
                        return false;
                    };
                    fs.used = used.min(fs.total);
                    true
                }
                _ => false,
            }
        })
    }

    /// Starts or stops the guest agent inside a VM (its configuration keeps it enabled).
    /// Returns false if the VM has no agent configured.
    pub fn set_guest_agent_running(&self, vmid: u32, running: bool) -> bool {
        self.with_world(|w| {
            let agent = w
                .guests
                .iter_mut()
                .find(|g| g.vmid == vmid)
                .and_then(|g| g.agent.as_mut());
            agent.map(|a| a.running = running).is_some()
        })
    }

    /// Sets a disk's temperature, °C (the disk with this path on every node); a disk without
    /// SMART data gets a SATA drive's. Returns false if no disk has this `devpath`.
    pub fn set_disk_temperature(&self, devpath: &str, celsius: u32) -> bool {
        self.with_world(|w| {
            if !has_disk(&w.disks, devpath) {
                return false;
            }
            match w.smart.iter_mut().find(|d| d.devpath == devpath) {
                Some(d) => d.temperature = Some(celsius),
                None => w.smart.push(ata(devpath, celsius)),
            }
            true
        })
    }

    /// Sets when certificate `filename` of `node` expires, epoch s (the cluster CA,
    /// `pve-root-ca.pem`, is every node's). A `pveproxy-ssl.pem` that does not exist yet
    /// appears, as a 90-day Let's Encrypt certificate ending then. Returns false for an
    /// unknown node or file name.
    pub fn set_cert_expiry(&self, node: &str, filename: &str, not_after: i64) -> bool {
        self.with_world(|w| {
            let Some(n) = w.nodes.iter().find(|n| n.name == node).cloned() else {
                return false;
            };
            if !CERT_FILES.contains(&filename) {
                return false;
            }
            let owner = (filename != "pve-root-ca.pem").then(|| node.to_owned());
            if let Some(c) = w
                .certificates
                .iter_mut()
                .find(|c| c.filename == filename && c.node == owner)
            {
                c.notafter = not_after;
                return true;
            }
            let mut c = match filename {
                "pve-root-ca.pem" => cluster_ca(not_after, 0),
                "pve-ssl.pem" => node_certificate(&n, not_after, 0),
                _ => Certificate {
                    node: owner,
                    filename: filename.to_owned(),
                    subject: format!("/CN={}.example.lan", n.name),
                    issuer: "/C=US/O=Let's Encrypt/CN=R11".to_owned(),
                    notbefore: not_after - 90 * 86_400,
                    notafter: not_after,
                    san: vec![format!("{}.example.lan", n.name)],
                    fingerprint: "3A:91:C4:0F:7E:22:D8:B5:61:0C:AF:93:4E:17:D2:68:B0:5F:E9:3C:72:A4:08:DD:1B:96:C3:5E:40:F7:2A:89".to_owned(),
                },
            };
            c.notafter = not_after;
            w.certificates.push(c);
            true
        })
    }

    /// Powers a node off: offline in cluster views, its calls answer 595.
    pub fn stop_node(&self, name: &str) {
        self.set_node_online(name, false);
    }

    /// Brings a node back.
    pub fn start_node(&self, name: &str) {
        self.set_node_online(name, true);
    }

    fn set_node_online(&self, name: &str, online: bool) {
        self.with_world(|w| {
            for n in w.nodes.iter_mut().filter(|n| n.name == name) {
                n.online = online;
                if online {
                    n.uptime = 60;
                }
            }
        });
    }

    /// Starts or stops a guest.
    pub fn set_guest_running(&self, vmid: u32, running: bool) {
        self.with_world(|w| {
            for g in w.guests.iter_mut().filter(|g| g.vmid == vmid) {
                g.running = running;
                if running {
                    g.pid = 100_000 + vmid;
                } else {
                    g.cpu = 0.0;
                    g.mem = 0;
                    g.uptime = 0;
                    g.pid = 0;
                }
            }
        });
    }
}

fn has_disk(disks: &Value, devpath: &str) -> bool {
    disks
        .as_array()
        .is_some_and(|a| a.iter().any(|d| d["devpath"] == devpath))
}

fn push_task(w: &mut World, t: i64, node: &str, kind: &str, id: &str, status: &str) -> String {
    let n = u32::try_from(w.tasks.len()).unwrap_or(0);
    let task = Task {
        node: node.to_owned(),
        pid: 3_000_000 + n * 17,
        pstart: 80_000_000 + u64::from(n) * 1000,
        starttime: t - 120,
        endtime: t,
        kind: kind.to_owned(),
        id: id.to_owned(),
        user: "root@pam".to_owned(),
        status: status.to_owned(),
        log: Vec::new(),
    };
    let upid = task.upid();
    w.tasks.push(task);
    upid
}

// ---------------------------------------------------------------------------------------------
// Request handling

enum Reply {
    Data(Value),
    DataTotal(Value, usize),
    Error {
        status: u16,
        reason: String,
        errors: Option<Value>,
    },
}

fn err(status: u16, reason: impl Into<String>) -> Reply {
    Reply::Error {
        status,
        reason: reason.into(),
        errors: None,
    }
}

fn base_headers() -> Vec<(String, String)> {
    vec![
        ("Cache-Control".to_owned(), "max-age=0".to_owned()),
        ("Pragma".to_owned(), "no-cache".to_owned()),
        ("Server".to_owned(), "pve-api-daemon/3.0".to_owned()),
    ]
}

fn json_response(status: u16, reason: &str, body: &Value, delay: Duration) -> Response {
    let mut headers = base_headers();
    headers.push((
        "Content-Type".to_owned(),
        "application/json;charset=UTF-8".to_owned(),
    ));
    Response {
        status,
        reason: reason.to_owned(),
        headers,
        body: body.to_string().into_bytes(),
        delay,
    }
}

fn handle(state: &Mutex<State>, req: &Request) -> Response {
    let mut st = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    st.requests += 1;
    let slow: Duration = st
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::Slow(d) => Some(*d),
            Fault::SlowPath { prefix, delay } => req
                .path
                .strip_prefix(API_PREFIX)
                .is_some_and(|p| p.starts_with(prefix.as_str()))
                .then_some(*delay),
            _ => None,
        })
        .sum();

    // Authentication happens before anything else; failures have an empty body.
    let auth = req.header("authorization");
    let unauthorized = match auth {
        None => Some("No ticket"),
        Some(a)
            if st.faults.contains(&Fault::BadToken)
                || a.strip_prefix("PVEAPIToken=") != Some(st.token.as_str()) =>
        {
            Some("permission denied - invalid PVE ticket")
        }
        Some(_) => None,
    };
    if let Some(reason) = unauthorized {
        return Response {
            status: 401,
            reason: reason.to_owned(),
            headers: base_headers(),
            body: Vec::new(),
            delay: st.auth_delay + slow,
        };
    }

    let mut slow = slow;
    let mut flaky_error = false;
    for f in &st.faults {
        if let Fault::Flaky {
            seed,
            percent,
            delay,
        } = f
        {
            let roll = splitmix64(seed ^ st.requests);
            if roll % 100 < u64::from(*percent) {
                if (roll >> 32) & 1 == 0 {
                    flaky_error = true;
                } else {
                    slow += *delay;
                }
            }
        }
    }

    let reply = if let Some(rest) = req.path.strip_prefix(API_PREFIX) {
        if req.method == "GET" {
            let path = rest.trim_end_matches('/');
            if let Some(text) = st.faults.iter().find_map(|f| match f {
                Fault::ServerError(t) => Some(t.clone()),
                _ => None,
            }) {
                err(500, text)
            } else if flaky_error {
                err(500, "Internal Server Error")
            } else if let Some((status, reason)) = st.faults.iter().find_map(|f| match f {
                Fault::PathError {
                    prefix,
                    status,
                    reason,
                } if path.starts_with(prefix.as_str()) => Some((*status, reason.clone())),
                _ => None,
            }) {
                err(status, reason)
            } else {
                route(&st, path, req)
            }
        } else {
            err(
                501,
                format!("Method '{} {}' not implemented", req.method, req.path),
            )
        }
    } else {
        err(
            501,
            format!("Method '{} {}' not implemented", req.method, req.path),
        )
    };

    match reply {
        Reply::Data(d) => ok_response(&st, &json!({ "data": d }), slow),
        Reply::DataTotal(d, total) => ok_response(&st, &json!({ "data": d, "total": total }), slow),
        Reply::Error {
            status,
            reason,
            errors,
        } => {
            let mut body = json!({ "data": null });
            if let Some(e) = errors {
                body["errors"] = e;
            }
            if st.error_messages {
                body["message"] = Value::String(format!("{reason}\n"));
            }
            json_response(status, &reason, &body, slow)
        }
    }
}

fn ok_response(st: &State, body: &Value, delay: Duration) -> Response {
    let mut r = json_response(200, "OK", body, delay);
    if st.faults.contains(&Fault::MalformedJson) {
        let cut = r.body.len() / 2;
        r.body.truncate(cut);
    }
    r
}

impl State {
    fn denied(&self, acl_path: &str) -> bool {
        self.faults.iter().any(|f| match f {
            Fault::MissingPrivilege { path } => path == acl_path || path == "/",
            _ => false,
        })
    }

    fn node_down(&self, name: &str) -> bool {
        self.faults.contains(&Fault::NodeGone(name.to_owned()))
            || self.world.nodes.iter().any(|n| n.name == name && !n.online)
    }

    fn node(&self, name: &str) -> Option<&Node> {
        self.world.nodes.iter().find(|n| n.name == name)
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// A well-mixed 64-bit value of `x` (SplitMix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn b(v: bool) -> u8 {
    u8::from(v)
}

fn route(st: &State, path: &str, req: &Request) -> Reply {
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let w = &st.world;
    match seg.as_slice() {
        ["version"] => Reply::Data(json!({
            "version": w.version.0, "release": w.version.1, "repoid": w.version.2
        })),
        ["cluster", "status"] => {
            if st.denied("/") {
                return forbidden("/", "Sys.Audit");
            }
            Reply::Data(cluster_status(st))
        }
        ["cluster", "resources"] => cluster_resources(st, req.query("type")),
        ["cluster", "replication"] => Reply::Data(Value::Array(
            w.replication
                .iter()
                .filter(|j| !st.denied(&format!("/vms/{}", j.guest)))
                .map(|j| replication_config(w, j))
                .collect(),
        )),
        ["cluster", "ha", "status", "current"] => {
            if st.denied("/") {
                return forbidden("/", "Sys.Audit");
            }
            Reply::Data(ha_status(st))
        }
        ["cluster", "ceph", "status"] => {
            if st.denied("/") {
                return forbidden("/", "Sys.Audit");
            }
            match &w.ceph {
                Some(c) => Reply::Data(c.clone()),
                None => err(500, "binary not installed: /usr/bin/ceph-mon"),
            }
        }
        ["nodes"] => Reply::Data(Value::Array(
            w.nodes.iter().map(|n| node_index(st, n)).collect(),
        )),
        ["nodes", node, rest @ ..] => node_route(st, node, rest, req),
        _ => err(
            501,
            format!(
                "Method 'GET {API_PREFIX}/{}' not implemented",
                seg.join("/")
            ),
        ),
    }
}

fn forbidden(path: &str, privilege: &str) -> Reply {
    err(
        403,
        format!("Permission check failed ({path}, {privilege})"),
    )
}

fn node_route(st: &State, node: &str, rest: &[&str], req: &Request) -> Reply {
    let w = &st.world;
    let Some(n) = st.node(node) else {
        return err(
            500,
            format!(
                "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
            ),
        );
    };
    if node != w.local_node && st.node_down(node) {
        return err(595, "No route to host");
    }
    let node_acl = format!("/nodes/{node}");
    match rest {
        ["status"] => {
            if st.denied(&node_acl) {
                return forbidden(&node_acl, "Sys.Audit");
            }
            Reply::Data(node_status(w, n))
        }
        ["qemu"] | ["lxc"] => {
            let kind = if rest[0] == "qemu" {
                GuestKind::Qemu
            } else {
                GuestKind::Lxc
            };
            let list = w
                .guests
                .iter()
                .filter(|g| g.node == node && g.kind == kind)
                .filter(|g| !st.denied(&format!("/vms/{}", g.vmid)))
                .map(guest_list_entry)
                .collect();
            Reply::Data(Value::Array(list))
        }
        [kind @ ("qemu" | "lxc"), vmid, "status", "current"] => {
            let vm_acl = format!("/vms/{vmid}");
            if st.denied(&vm_acl) {
                return forbidden(&vm_acl, "VM.Audit");
            }
            let dir = if *kind == "qemu" {
                "qemu-server"
            } else {
                "lxc"
            };
            let g = vmid.parse::<u32>().ok().and_then(|id| {
                w.guests
                    .iter()
                    .find(|g| g.vmid == id && g.node == node && g.kind.as_str() == *kind)
            });
            match g {
                Some(g) => Reply::Data(guest_status(g)),
                None => err(
                    500,
                    format!("Configuration file 'nodes/{node}/{dir}/{vmid}.conf' does not exist"),
                ),
            }
        }
        ["qemu", vmid, "agent", "get-fsinfo"] => guest_fsinfo(st, node, vmid),
        ["storage"] => {
            let list = w
                .storages
                .iter()
                .filter(|s| s.node == node)
                .filter(|s| !st.denied(&format!("/storage/{}", s.storage)))
                .filter(|s| {
                    req.query("content")
                        .is_none_or(|c| s.content.split(',').any(|x| x == c))
                })
                .map(|s| storage_entry(s, st.now()))
                .collect();
            Reply::Data(Value::Array(list))
        }
        ["storage", storage, "content"] => {
            let acl = format!("/storage/{storage}");
            if st.denied(&acl) {
                return forbidden(&acl, "Datastore.Audit");
            }
            let Some(s) = w
                .storages
                .iter()
                .find(|s| s.node == node && s.storage == *storage)
            else {
                return err(500, format!("storage '{storage}' does not exist"));
            };
            if !s.active {
                return err(500, format!("storage '{storage}' is not online"));
            }
            let want = req.query("content");
            let vmid = req.query("vmid").and_then(|v| v.parse::<u32>().ok());
            let list = if want.is_none_or(|c| c == "backup") {
                w.backups
                    .iter()
                    .filter(|b| b.storage == *storage && vmid.is_none_or(|v| v == b.vmid))
                    .map(|b| {
                        json!({
                            "content": "backup", "ctime": b.ctime, "format": b.format,
                            "size": b.size, "subtype": b.subtype, "vmid": b.vmid, "volid": b.volid
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Reply::Data(Value::Array(list))
        }
        ["tasks"] => {
            if st.denied(&node_acl) {
                return forbidden(&node_acl, "Sys.Audit");
            }
            node_tasks(w, node, req)
        }
        // The owner may read its own tasks; anyone else needs Sys.Audit on the node.
        ["tasks", upid, "log"] => {
            if st.denied(&node_acl) {
                return forbidden(&node_acl, "Sys.Audit");
            }
            task_log(w, node, upid, req)
        }
        ["disks", "list"] => {
            if st.denied(&node_acl) {
                return forbidden(&node_acl, "Sys.Audit");
            }
            Reply::Data(disks_at(w, st.now()))
        }
        // Sys.Audit on `/`, not on the node (pve-storage `PVE/API2/Disks.pm`).
        ["disks", "smart"] => {
            if st.denied("/") {
                return forbidden("/", "Sys.Audit");
            }
            disk_smart(w, req)
        }
        // Any authenticated user may read them (`user => 'all'`).
        ["certificates", "info"] => Reply::Data(certificates_info(w, node)),
        // PVE checks Sys.Audit on `/` for both (pve-storage `PVE/API2/Disks/ZFS.pm`).
        ["disks", "zfs"] => {
            if st.denied("/") {
                return forbidden("/", "Sys.Audit");
            }
            Reply::Data(Value::Array(
                w.zfs_pools
                    .iter()
                    .filter(|p| p.node == node)
                    .map(zfs_list_entry)
                    .collect(),
            ))
        }
        ["disks", "zfs", name] => {
            if st.denied("/") {
                return forbidden("/", "Sys.Audit");
            }
            match w
                .zfs_pools
                .iter()
                .find(|p| p.node == node && p.name == *name)
            {
                Some(p) => Reply::Data(zfs_detail(p)),
                None => err(
                    500,
                    format!("command '/sbin/zpool status -P {name}' failed: exit code 1"),
                ),
            }
        }
        ["replication"] => {
            let guest = req.query("guest").and_then(|g| g.parse::<u32>().ok());
            Reply::Data(Value::Array(
                node_replication(st, node, true)
                    .filter(|j| guest.is_none_or(|g| g == j.guest))
                    .filter(|j| !st.denied(&format!("/vms/{}", j.guest)))
                    .map(|j| replication_status(st, node, j))
                    .collect(),
            ))
        }
        ["replication", id, "status"] => {
            // Unlike the list, this one leaves out disabled jobs (PVE's job_status()).
            let Some(j) = node_replication(st, node, false).find(|j| j.id == *id) else {
                return err(500, format!("no such replication job '{id}'"));
            };
            let vm_acl = format!("/vms/{}", j.guest);
            if st.denied(&vm_acl) {
                return forbidden(&vm_acl, "VM.Audit");
            }
            Reply::Data(replication_status(st, node, j))
        }
        ["apt", "update"] => {
            if st.denied(&node_acl) {
                return forbidden(&node_acl, "Sys.Audit");
            }
            Reply::Data(w.apt_updates.clone())
        }
        _ => err(
            501,
            format!(
                "Method 'GET {API_PREFIX}/nodes/{node}/{}' not implemented",
                rest.join("/")
            ),
        ),
    }
}

fn cluster_status(st: &State) -> Value {
    let w = &st.world;
    let mut out = Vec::new();
    let online = w.nodes.iter().filter(|n| !st.node_down(&n.name)).count();
    if let Some(name) = &w.cluster_name {
        out.push(json!({
            "type": "cluster", "version": w.config_version, "quorate": b(online * 2 > w.nodes.len()),
            "name": name, "id": "cluster", "nodes": w.nodes.len()
        }));
    }
    for n in &w.nodes {
        out.push(json!({
            "name": n.name, "nodeid": n.nodeid, "id": format!("node/{}", n.name),
            "online": b(!st.node_down(&n.name)), "type": "node", "ip": n.ip,
            "local": b(n.name == w.local_node), "level": n.level
        }));
    }
    Value::Array(out)
}

fn node_index(st: &State, n: &Node) -> Value {
    if st.node_down(&n.name) {
        return json!({
            "level": n.level, "node": n.name, "ssl_fingerprint": n.ssl_fingerprint,
            "status": "offline", "type": "node", "id": format!("node/{}", n.name)
        });
    }
    json!({
        "uptime": n.uptime, "level": n.level, "maxmem": n.maxmem, "disk": n.disk, "node": n.name,
        "maxdisk": n.maxdisk, "mem": n.mem, "ssl_fingerprint": n.ssl_fingerprint, "status": "online",
        "type": "node", "cpu": n.cpu, "id": format!("node/{}", n.name), "maxcpu": n.maxcpu
    })
}

fn resource_vm(st: &State, g: &Guest) -> Value {
    let down = st.node_down(&g.node);
    let running = g.running && !down;
    let status = if down {
        "unknown"
    } else if g.running {
        "running"
    } else {
        "stopped"
    };
    let mut v = json!({
        "netout": g.netout, "type": g.kind.as_str(), "name": g.name, "maxcpu": g.maxcpu,
        "mem": if running { g.mem } else { 0 }, "netin": g.netin, "maxmem": g.maxmem,
        "disk": g.disk, "node": g.node, "cpu": if running { g.cpu } else { 0.0 },
        "maxdisk": g.maxdisk, "vmid": g.vmid, "diskwrite": g.diskwrite, "diskread": g.diskread,
        "status": status, "template": b(g.template), "id": format!("{}/{}", g.kind.as_str(), g.vmid),
        "uptime": if running { g.uptime } else { 0 }
    });
    if let Some(t) = &g.tags {
        v["tags"] = json!(t);
    }
    if let Some(l) = &g.lock {
        v["lock"] = json!(l);
    }
    if g.ha_managed {
        v["hastate"] = json!(if down { "fence" } else { "started" });
    }
    v
}

fn cluster_resources(st: &State, ty: Option<&str>) -> Reply {
    let w = &st.world;
    let (vms, nodes, storage) = match ty {
        None => (true, true, true),
        Some("vm") => (true, false, false),
        Some("node") => (false, true, false),
        Some("storage") => (false, false, true),
        Some("sdn") => (false, false, false),
        Some(other) => {
            return Reply::Error {
                status: 400,
                reason: "Parameter verification failed.".to_owned(),
                errors: Some(json!({
                    "type": format!("value '{other}' does not have a value in the enumeration 'vm, storage, node, sdn'")
                })),
            };
        }
    };
    let mut out = Vec::new();
    if vms {
        out.extend(
            w.guests
                .iter()
                .filter(|g| !st.denied(&format!("/vms/{}", g.vmid)))
                .map(|g| resource_vm(st, g)),
        );
    }
    if nodes {
        for n in &w.nodes {
            if st.node_down(&n.name) {
                out.push(json!({
                    "type": "node", "level": n.level, "id": format!("node/{}", n.name),
                    "status": "offline", "node": n.name
                }));
            } else {
                out.push(json!({
                    "maxdisk": n.maxdisk, "cpu": n.cpu, "node": n.name, "disk": n.disk,
                    "maxmem": n.maxmem, "mem": n.mem, "maxcpu": n.maxcpu, "type": "node",
                    "uptime": n.uptime, "level": n.level, "id": format!("node/{}", n.name),
                    "cgroup-mode": 2, "status": "online"
                }));
            }
        }
    }
    if storage {
        for s in &w.storages {
            if st.denied(&format!("/storage/{}", s.storage)) {
                continue;
            }
            let ok = s.active && s.enabled && !st.node_down(&s.node);
            out.push(json!({
                "shared": b(s.shared), "type": "storage",
                "status": if ok { "available" } else { "unknown" },
                "plugintype": s.kind, "id": format!("storage/{}/{}", s.node, s.storage),
                "storage": s.storage, "node": s.node, "disk": s.used_at(st.now()), "content": s.content,
                "maxdisk": s.total
            }));
        }
    }
    Reply::Data(Value::Array(out))
}

fn guest_list_entry(g: &Guest) -> Value {
    let mut v = json!({
        "cpu": g.cpu, "cpus": g.maxcpu, "disk": g.disk, "diskread": g.diskread,
        "diskwrite": g.diskwrite, "maxdisk": g.maxdisk, "maxmem": g.maxmem, "mem": g.mem,
        "name": g.name, "netin": g.netin, "netout": g.netout, "status": if g.running { "running" } else { "stopped" },
        "uptime": g.uptime, "vmid": g.vmid
    });
    if g.running {
        v["pid"] = json!(g.pid);
    }
    if g.kind == GuestKind::Lxc {
        // The container list sends vmid as a string (nodes_node_lxc.*.json).
        v["vmid"] = json!(g.vmid.to_string());
        v["maxswap"] = json!(g.maxmem);
        v["swap"] = json!(0);
        v["type"] = json!("lxc");
    }
    if g.template {
        v["template"] = json!(1);
    }
    if let Some(t) = &g.tags {
        v["tags"] = json!(t);
    }
    if let Some(l) = &g.lock {
        v["lock"] = json!(l);
    }
    v
}

fn guest_status(g: &Guest) -> Value {
    let ha = if g.ha_managed {
        json!({"managed": 1, "state": "started"})
    } else {
        json!({"managed": 0})
    };
    let status = if g.running { "running" } else { "stopped" };
    let mut v = match g.kind {
        GuestKind::Qemu => {
            let mut v = json!({
                "diskwrite": g.diskwrite, "cpus": g.maxcpu, "ha": ha, "maxmem": g.maxmem,
                "uptime": g.uptime, "cpu": g.cpu,
                "qmpstatus": status, "status": status, "maxdisk": g.maxdisk, "diskread": g.diskread,
                "vmid": g.vmid, "mem": g.mem, "name": g.name, "netout": g.netout, "netin": g.netin,
                "disk": g.disk
            });
            // Only when enabled in the configuration.
            if g.agent.is_some() {
                v["agent"] = json!(1);
            }
            if g.running {
                v["pid"] = json!(g.pid);
                v["running-machine"] = json!("pc-i440fx-8.0+pve0");
                v["running-qemu"] = json!("8.0.2");
            }
            v
        }
        GuestKind::Lxc => {
            let mut v = json!({
                "swap": 0, "name": g.name, "diskread": g.diskread, "vmid": g.vmid,
                "diskwrite": g.diskwrite, "mem": g.mem, "netin": g.netin, "disk": g.disk,
                "cpu": g.cpu, "type": "lxc", "uptime": g.uptime, "maxmem": g.maxmem,
                "status": status, "cpus": g.maxcpu, "ha": ha, "maxdisk": g.maxdisk,
                "netout": g.netout, "maxswap": g.maxmem
            });
            if g.running {
                v["pid"] = json!(g.pid);
            }
            v
        }
    };
    if g.template {
        v["template"] = json!(1);
    }
    if let Some(t) = &g.tags {
        v["tags"] = json!(t);
    }
    if let Some(l) = &g.lock {
        v["lock"] = json!(l);
    }
    v
}

fn storage_entry(s: &Storage, t: i64) -> Value {
    let mut v = json!({
        "type": s.kind, "storage": s.storage, "content": s.content,
        "active": b(s.active), "enabled": b(s.enabled), "shared": b(s.shared)
    });
    if s.active && s.enabled {
        let used = s.used_at(t);
        #[allow(clippy::cast_precision_loss)]
        let frac = if s.total == 0 {
            0.0
        } else {
            used as f64 / s.total as f64
        };
        v["used"] = json!(used);
        v["total"] = json!(s.total);
        v["avail"] = json!(s.total.saturating_sub(used));
        v["used_fraction"] = json!(frac);
    }
    v
}

/// `/nodes/{node}/disks/list` at time `t`: wear-out declines applied (an integer, as PVE
/// sends it for SATA SSDs).
fn disks_at(w: &World, t: i64) -> Value {
    let mut disks = w.disks.clone();
    if let Some(list) = disks.as_array_mut() {
        for d in list {
            if let Some(wear) = w.disk_wear.iter().find(|x| d["devpath"] == x.devpath) {
                let pct = wear.wearout_at(t).round() as i64;
                d["wearout"] = json!(pct);
            }
        }
    }
    disks
}

/// `/nodes/{node}/qemu/{vmid}/agent/get-fsinfo`: `{"result": [...]}` from the guest agent,
/// or PVE's errors for a VM that is not there, not running, or without a running agent.
fn guest_fsinfo(st: &State, node: &str, vmid: &str) -> Reply {
    let acl = format!("/vms/{vmid}");
    // PVE 9; PVE 8 asked for VM.Monitor.
    if st.denied(&acl) {
        return forbidden(&acl, "VM.GuestAgent.Audit");
    }
    let g = vmid.parse::<u32>().ok().and_then(|id| {
        st.world
            .guests
            .iter()
            .find(|g| g.vmid == id && g.node == node && g.kind == GuestKind::Qemu)
    });
    let Some(g) = g else {
        return err(
            500,
            format!("Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"),
        );
    };
    if !g.running {
        return err(500, format!("VM {vmid} is not running"));
    }
    let Some(agent) = &g.agent else {
        return err(500, "No QEMU guest agent configured");
    };
    if !agent.running {
        return err(500, "QEMU guest agent is not running");
    }
    let result: Vec<Value> = agent
        .filesystems
        .iter()
        .map(|f| {
            let disk: Vec<Value> = f
                .serial
                .iter()
                .map(|serial| {
                    json!({
                        "bus-type": "scsi", "bus": 0, "target": 0, "unit": 0,
                        "pci-controller": {"domain": 0, "bus": 9, "slot": 1, "function": 0},
                        "serial": serial, "dev": format!("/dev/{}", f.name)
                    })
                })
                .collect();
            json!({
                "name": f.name, "mountpoint": f.mountpoint, "type": f.fstype,
                "total-bytes": f.total, "used-bytes": f.used, "disk": disk
            })
        })
        .collect();
    Reply::Data(json!({ "result": result }))
}

/// `/nodes/{node}/disks/smart?disk=<devpath>[&healthonly=1]` (`get_smart_data`'s answer; a
/// failing `smartctl` leaves only `health: UNKNOWN`).
fn disk_smart(w: &World, req: &Request) -> Reply {
    let Some(devpath) = req.query("disk") else {
        return param_error("disk", "property is missing and it is not optional");
    };
    let valid = devpath.strip_prefix("/dev/").is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '/')
    });
    if !valid {
        return param_error("disk", "value does not match the regex pattern");
    }
    if !has_disk(&w.disks, devpath) {
        return err(500, "not a valid block device");
    }
    let Some(d) = w.smart.iter().find(|d| d.devpath == devpath) else {
        return Reply::Data(json!({"health": "UNKNOWN"}));
    };
    if req.query("healthonly").is_some_and(|v| v == "1") {
        return Reply::Data(json!({"health": d.health}));
    }
    Reply::Data(smart_answer(d))
}

fn param_error(param: &str, what: &str) -> Reply {
    Reply::Error {
        status: 400,
        reason: "Parameter verification failed.".to_owned(),
        errors: Some(json!({ param: what })),
    }
}

/// PVE's parse of `smartctl -H -A -f brief`: ATA attributes with their columns (`id` as the
/// padded text PVE captures), or the text after `START OF SMART DATA SECTION` with `wearout`
/// from NVMe's `Percentage Used`.
fn smart_answer(d: &DiskSmart) -> Value {
    match d.kind {
        SmartKind::Ata => {
            let attr = |id: u32, name: &str, flags: &str, value: u32, worst: u32, raw: String| {
                json!({
                    "id": format!("{id:>3}"), "name": name, "flags": flags, "value": value,
                    "normalized": value, "worst": worst, "threshold": 0, "fail": "-", "raw": raw
                })
            };
            let mut attributes = vec![
                attr(5, "Reallocated_Sector_Ct", "PO--CK", 100, 100, "0".into()),
                attr(
                    9,
                    "Power_On_Hours",
                    "-O--CK",
                    97,
                    97,
                    d.power_on_hours.to_string(),
                ),
                attr(12, "Power_Cycle_Count", "-O--CK", 99, 99, "41".into()),
                attr(177, "Wear_Leveling_Count", "PO--C-", 99, 99, "12".into()),
            ];
            if let Some(t) = d.temperature {
                let value = 100u32.saturating_sub(t);
                attributes.push(attr(
                    194,
                    "Temperature_Celsius",
                    "-O---K",
                    value,
                    value.saturating_sub(7),
                    format!("{t} (Min/Max 20/{})", t.max(45)),
                ));
            }
            attributes.push(attr(
                199,
                "UDMA_CRC_Error_Count",
                "-O--CK",
                100,
                100,
                "0".into(),
            ));
            json!({"health": d.health, "type": "ata", "attributes": attributes})
        }
        SmartKind::Nvme => {
            let temp = d
                .temperature
                .map(|t| format!("Temperature:                        {t} Celsius\n"))
                .unwrap_or_default();
            let text = format!(
                "SMART/Health Information (NVMe Log 0x02)\n\
                 Critical Warning:                   0x00\n\
                 {temp}\
                 Available Spare:                    100%\n\
                 Available Spare Threshold:          10%\n\
                 Percentage Used:                    3%\n\
                 Data Units Read:                    21,371,492 [10.9 TB]\n\
                 Data Units Written:                 31,574,153 [16.1 TB]\n\
                 Power Cycles:                       41\n\
                 Power On Hours:                     {}\n\
                 Unsafe Shutdowns:                   7\n\
                 Media and Data Integrity Errors:    0\n\
                 Error Information Log Entries:      0\n",
                d.power_on_hours
            );
            json!({"health": d.health, "type": "text", "text": text, "wearout": 97})
        }
        SmartKind::Sas => {
            let temp = d.temperature.map_or_else(
                || "Current Drive Temperature:     <not available>\n".to_owned(),
                |t| format!("Current Drive Temperature:     {t} C\n"),
            );
            let text = format!(
                "{temp}Drive Trip Temperature:        65 C\n\n\
                 Accumulated power on time, hours:minutes {}:12\n\
                 Elements in grown defect list: 0\n",
                d.power_on_hours
            );
            json!({"health": d.health, "type": "text", "text": text})
        }
    }
}

/// `/nodes/{node}/certificates/info`: the cluster CA, then the node's own files, in PVE's
/// order; `pem` is a placeholder (nothing reads it).
fn certificates_info(w: &World, node: &str) -> Value {
    let mut list: Vec<&Certificate> = w
        .certificates
        .iter()
        .filter(|c| c.node.as_deref().is_none_or(|n| n == node))
        .collect();
    list.sort_by_key(|c| CERT_FILES.iter().position(|f| *f == c.filename));
    Value::Array(
        list.into_iter()
            .map(|c| {
                json!({
                    "filename": c.filename, "fingerprint": c.fingerprint, "issuer": c.issuer,
                    "notafter": c.notafter, "notbefore": c.notbefore,
                    "pem": "-----BEGIN CERTIFICATE-----\nMIIC (simulated)\n\
                             -----END CERTIFICATE-----\n",
                    "public-key-bits": 2048, "public-key-type": "rsaEncryption",
                    "san": c.san, "subject": c.subject
                })
            })
            .collect(),
    )
}

/// `zpool list -HpPLo name,size,alloc,free,frag,dedup,health` as PVE returns it.
fn zfs_list_entry(p: &ZfsPool) -> Value {
    json!({
        "name": p.name, "size": p.size, "alloc": p.alloc, "free": p.size.saturating_sub(p.alloc),
        "frag": p.frag, "dedup": p.dedup, "health": p.health
    })
}

/// PVE's parse of `zpool status -P <pool>`: the texts, and the vdev tree as nested
/// `children` (`leaf` as PVE's `preparetree` sets it).
fn zfs_detail(p: &ZfsPool) -> Value {
    let device = |d: &ZfsDevice| json!({"name": d.name, "state": d.state, "read": 0, "write": 0, "cksum": 0, "msg": d.msg, "leaf": 1});
    let devices: Vec<Value> = p.devices.iter().map(device).collect();
    let members = match &p.vdev {
        Some(vdev) => vec![json!({
            "name": vdev, "state": p.health, "read": 0, "write": 0, "cksum": 0, "msg": "",
            "leaf": 0, "children": devices
        })],
        None => devices,
    };
    let mut v = json!({
        "name": p.name, "state": p.health, "errors": p.errors, "leaf": 0,
        "children": [{
            "name": p.name, "state": p.health, "read": 0, "write": 0, "cksum": 0, "msg": "",
            "leaf": 0, "children": members
        }]
    });
    for (k, text) in [
        ("status", &p.status),
        ("action", &p.action),
        ("scan", &p.scan),
    ] {
        if let Some(t) = text {
            v[k] = json!(t);
        }
    }
    v
}

/// Jobs `/nodes/{node}/replication` lists: those of guests on `node`, never to itself;
/// disabled ones only with `with_disabled` (PVE's `job_status($get_disabled)`).
fn node_replication<'a>(
    st: &'a State,
    node: &'a str,
    with_disabled: bool,
) -> impl Iterator<Item = &'a ReplicationJob> + 'a {
    st.world.replication.iter().filter(move |j| {
        st.world
            .guests
            .iter()
            .any(|g| g.vmid == j.guest && g.node == node)
            && j.target != node
            && (with_disabled || !j.disable)
    })
}

/// The `/cluster/replication` entry: configuration only (`source` once the job has run).
fn replication_config(w: &World, j: &ReplicationJob) -> Value {
    let mut v = json!({
        "type": "local", "id": j.id, "guest": j.guest, "jobnum": j.jobnum, "target": j.target
    });
    if let Some(s) = &j.schedule {
        v["schedule"] = json!(s);
    }
    if let Some(c) = &j.comment {
        v["comment"] = json!(c);
    }
    if j.disable {
        v["disable"] = json!(1);
    }
    if let Some(r) = j.rate {
        v["rate"] = json!(r);
    }
    if j.last_try > 0
        && let Some(g) = w.guests.iter().find(|g| g.vmid == j.guest)
    {
        v["source"] = json!(g.node);
    }
    v
}

/// A `/nodes/{node}/replication` entry: the configuration plus the source node's state
/// (`last_sync`/`last_try` 0 when never, as PVE initialises them), `vmtype`, `next_sync`,
/// and `pid` while running (fields of pve-manager `PVE/API2/Replication.pm` and
/// pve-guest-common `PVE/ReplicationState.pm`).
fn replication_status(st: &State, node: &str, j: &ReplicationJob) -> Value {
    let w = &st.world;
    let mut v = replication_config(w, j);
    v["source"] = json!(node);
    let vmtype = w
        .guests
        .iter()
        .find(|g| g.vmid == j.guest)
        .map_or("qemu", |g| g.kind.as_str());
    v["vmtype"] = json!(vmtype);
    v["last_sync"] = json!(j.last_sync);
    v["last_try"] = json!(j.last_try);
    v["fail_count"] = json!(j.fail_count);
    v["next_sync"] = json!(next_sync(st, j));
    if let Some(d) = j.duration {
        v["duration"] = json!(d);
    }
    if let Some(e) = &j.error {
        v["error"] = json!(e);
    }
    if let Some(pid) = j.pid {
        v["pid"] = json!(pid);
    }
    v
}

/// PVE's next run: after a failure 5/10 min, then every 30 min (0 while the target is
/// offline); otherwise the next schedule slot after the last try. Only `*/N` minute schedules
/// are understood here (anything else runs every 15 min); a never-tried job is due at the next
/// slot from now.
fn next_sync(st: &State, j: &ReplicationJob) -> i64 {
    if j.fail_count > 0 {
        if st.node_down(&j.target) {
            return 0;
        }
        let wait = if j.fail_count < 3 {
            5 * i64::from(j.fail_count)
        } else {
            30
        };
        return j.last_try + 60 * wait;
    }
    let every = j
        .schedule
        .as_deref()
        .and_then(|s| s.strip_prefix("*/"))
        .and_then(|m| m.parse::<i64>().ok())
        .filter(|m| *m > 0)
        .unwrap_or(15)
        * 60;
    let from = if j.last_try > 0 { j.last_try } else { st.now() };
    (from / every + 1) * every
}

fn node_status(w: &World, n: &Node) -> Value {
    let (version, _, repoid) = &w.version;
    let free = n.maxmem.saturating_sub(n.mem);
    let rootfree = n.maxdisk.saturating_sub(n.disk);
    json!({
        "idle": 0, "cpu": n.cpu, "ksm": {"shared": 0}, "swap": {"total": 0, "free": 0, "used": 0},
        "pveversion": format!("pve-manager/{version}/{repoid}"), "wait": 0, "uptime": n.uptime,
        "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)",
        "cpuinfo": {
            "mhz": "3400.000", "model": "Intel(R) Core(TM) i7-6700 CPU @ 3.40GHz", "sockets": 1,
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr", "hvm": "1",
            "cores": n.maxcpu.div_ceil(2), "user_hz": 100, "cpus": n.maxcpu
        },
        "loadavg": n.loadavg,
        "memory": {"total": n.maxmem, "free": free, "used": n.mem, "available": free},
        "rootfs": {"total": n.maxdisk, "free": rootfree, "used": n.disk, "avail": rootfree},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "current-kernel": {
            "machine": "x86_64", "release": "6.14.8-2-pve", "sysname": "Linux",
            "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)"
        }
    })
}

fn node_tasks(w: &World, node: &str, req: &Request) -> Reply {
    let num = |k: &str| req.query(k).and_then(|v| v.parse::<usize>().ok());
    let errors_only = req.query("errors").is_some_and(|v| v == "1");
    let typefilter = req.query("typefilter");
    let vmid = req.query("vmid");
    let since = req.query("since").and_then(|v| v.parse::<i64>().ok());
    let mut list: Vec<&Task> = w
        .tasks
        .iter()
        .filter(|t| t.node == node)
        .filter(|t| !errors_only || t.status != "OK")
        .filter(|t| typefilter.is_none_or(|f| t.kind == f))
        .filter(|t| vmid.is_none_or(|v| t.id == v))
        .filter(|t| since.is_none_or(|s| t.starttime >= s))
        .collect();
    list.sort_by_key(|t| std::cmp::Reverse(t.starttime));
    let total = list.len();
    let start = num("start").unwrap_or(0);
    let limit = num("limit").unwrap_or(50);
    let data = list
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|t| {
            json!({
                "pid": t.pid, "type": t.kind, "user": t.user, "starttime": t.starttime,
                "pstart": t.pstart, "status": t.status, "node": t.node, "id": t.id,
                "endtime": t.endtime, "upid": t.upid()
            })
        })
        .collect();
    Reply::DataTotal(Value::Array(data), total)
}

/// `/nodes/{node}/tasks/{upid}/log?start=&limit=`: `{"n": <line number>, "t": <text>}` from
/// `start` (default 0), at most `limit` lines (default 50, as PVE), with `total`.
fn task_log(w: &World, node: &str, upid: &str, req: &Request) -> Reply {
    if !upid.starts_with("UPID:") || upid.split(':').count() != 9 {
        return err(400, format!("unable to parse worker upid '{upid}'"));
    }
    let Some(task) = w.tasks.iter().find(|t| t.node == node && t.upid() == upid) else {
        return err(
            500,
            format!("task log file '/var/log/pve/tasks/{upid}' does not exist"),
        );
    };
    let closing = if task.status == "OK" {
        "TASK OK".to_owned()
    } else if task.status.starts_with("WARNINGS") {
        format!("TASK {}", task.status)
    } else {
        format!("TASK ERROR: {}", task.status)
    };
    let lines: Vec<&str> = task
        .log
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(closing.as_str()))
        .collect();
    let num = |k: &str| req.query(k).and_then(|v| v.parse::<usize>().ok());
    let start = num("start").unwrap_or(0);
    let limit = num("limit").unwrap_or(50);
    let data = lines
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, t)| json!({"n": i + 1, "t": t}))
        .collect();
    Reply::DataTotal(Value::Array(data), lines.len())
}

fn ha_status(st: &State) -> Value {
    let w = &st.world;
    let t = st.now();
    let online = w.nodes.iter().filter(|n| !st.node_down(&n.name)).count();
    let quorate = online * 2 > w.nodes.len();
    let master = w
        .nodes
        .iter()
        .find(|n| !st.node_down(&n.name))
        .map_or_else(|| w.local_node.clone(), |n| n.name.clone());
    let mut out = vec![
        json!({"id": "quorum", "node": w.local_node, "quorate": b(quorate),
               "status": if quorate { "OK".to_owned() } else { format!("No quorum on node '{}'!", w.local_node) },
               "type": "quorum"}),
        json!({"id": "master", "node": master, "type": "master", "timestamp": t,
               "status": format!("{master} (active, {})", ctime_text(t))}),
    ];
    for n in &w.nodes {
        let active = w.guests.iter().any(|g| g.ha_managed && g.node == n.name);
        let status = if st.node_down(&n.name) {
            format!(
                "{} (old timestamp - dead?, {})",
                n.name,
                ctime_text(t - 300)
            )
        } else if active {
            format!("{} (active, watchdog active, {})", n.name, ctime_text(t))
        } else {
            format!("{} (idle, watchdog standby, {})", n.name, ctime_text(t))
        };
        out.push(
            json!({"id": format!("lrm:{}", n.name), "node": n.name, "type": "lrm",
                        "timestamp": t, "status": status}),
        );
    }
    for g in w.guests.iter().filter(|g| g.ha_managed) {
        let prefix = if g.kind == GuestKind::Qemu {
            "vm"
        } else {
            "ct"
        };
        let sid = format!("{prefix}:{}", g.vmid);
        let state = if st.node_down(&g.node) {
            "fence"
        } else if g.running {
            "started"
        } else {
            "stopped"
        };
        out.push(json!({
            "crm_state": state, "failback": 1, "id": format!("service:{sid}"), "max_relocate": 1,
            "max_restart": 1, "node": g.node, "request_state": "started", "sid": sid,
            "state": state, "status": format!("{sid} ({}, {state})", g.node), "type": "service"
        }));
    }
    Value::Array(out)
}
