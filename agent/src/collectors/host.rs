//! The `host` collector: this machine's CPU, memory, swap, load, filesystems, disk and network IO,
//! temperatures and uptime, read with sysinfo and `<root>/proc/diskstats`.
//!
//! sysinfo reads are blocking, so each run happens on the blocking pool. The state (previous
//! counters for rates, the sysinfo handles) sits behind a mutex that a run only `try_lock`s: if a
//! previous run is stuck (a hung NFS `statvfs`), the new run fails fast with
//! [`CollectorError::Busy`] instead of stacking up threads. Process lists are never refreshed,
//! which keeps the agent small.

use super::{Collected, Collector, CollectorError, resource_id};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Instant;
use sysinfo::{Components, DiskRefreshKind, Disks, Networks, System};
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Provenance, Resource, Value};

/// Bytes per sector in `/proc/diskstats`, whatever the device's real sector size.
const DISKSTATS_SECTOR_BYTES: u64 = 512;

/// Filesystem types that hold no persistent user data and only add noise.
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// A metric of this machine's node, read by the `host` collector.
const fn node(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::Node, metric, "host", method)
}

/// Where each metric comes from. sysinfo reads Linux's `/proc` and `/sys` itself (always
/// the real root); disk IO is read from `<root>/proc/diskstats` directly.
const PROVENANCE: &[Provenance] = &[
    node(
        metric::CPU_PCT,
        "sysinfo: /proc/stat, busy share of all CPUs between two reads",
    ),
    node(metric::MEM_TOTAL_BYTES, "sysinfo: /proc/meminfo MemTotal"),
    node(
        metric::MEM_USED_BYTES,
        "sysinfo: /proc/meminfo MemTotal - MemAvailable (page cache excluded)",
    ),
    node(
        metric::MEM_USED_PCT,
        "sysinfo: /proc/meminfo (MemTotal - MemAvailable) / MemTotal",
    ),
    node(metric::SWAP_TOTAL_BYTES, "sysinfo: /proc/meminfo SwapTotal"),
    node(
        metric::SWAP_USED_BYTES,
        "sysinfo: /proc/meminfo SwapTotal - SwapFree",
    ),
    node(metric::LOAD1, "sysinfo: /proc/loadavg, 1-minute average"),
    node(metric::LOAD5, "sysinfo: /proc/loadavg, 5-minute average"),
    node(metric::LOAD15, "sysinfo: /proc/loadavg, 15-minute average"),
    node(
        metric::UPTIME_SECONDS,
        "sysinfo: /proc/uptime (else the sysinfo(2) call)",
    ),
    node(
        metric::FS_TOTAL_BYTES,
        "sysinfo: statvfs(mount) f_blocks x f_frsize, mounts from /proc/mounts",
    ),
    node(
        metric::FS_USED_BYTES,
        "sysinfo: statvfs(mount) (f_blocks - f_bavail) x f_frsize",
    ),
    node(
        metric::FS_USED_PCT,
        "sysinfo: statvfs(mount) (f_blocks - f_bavail) / f_blocks",
    ),
    node(
        metric::DISK_READ_BYTES_PER_S,
        "/proc/diskstats sectors read x 512, per second between runs",
    ),
    node(
        metric::DISK_WRITE_BYTES_PER_S,
        "/proc/diskstats sectors written x 512, per second between runs",
    ),
    node(
        metric::NET_RX_BYTES_PER_S,
        "sysinfo: /sys/class/net/<iface>/statistics/rx_bytes, per second between runs",
    ),
    node(
        metric::NET_TX_BYTES_PER_S,
        "sysinfo: /sys/class/net/<iface>/statistics/tx_bytes, per second between runs",
    ),
    node(
        metric::TEMP_CELSIUS,
        "sysinfo: /sys/class/hwmon/hwmon*/temp*_input",
    ),
];

/// Reads this machine.
pub(crate) struct HostCollector {
    state: Arc<Mutex<HostState>>,
}

impl HostCollector {
    pub(crate) fn new(hostname: &str, root: PathBuf) -> Self {
        Self {
            state: Arc::new(Mutex::new(HostState {
                hostname: hostname.to_owned(),
                root,
                handles: None,
                prev_disk: None,
                prev_net: None,
                static_attrs: None,
            })),
        }
    }
}

impl Collector for HostCollector {
    fn name(&self) -> &'static str {
        "host"
    }

    fn provenance(&self) -> &[Provenance] {
        PROVENANCE
    }

    async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || {
            let mut guard = match state.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::WouldBlock) => return Err(CollectorError::Busy),
                // A panic in an earlier run left the state usable: it only holds counters.
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            };
            guard.collect(now_ms)
        })
        .await
        .map_err(CollectorError::Task)?
    }
}

/// sysinfo handles, kept between runs because CPU usage and rates are deltas.
struct Handles {
    system: System,
    disks: Disks,
    networks: Networks,
    components: Components,
}

/// Cumulative counters at one instant, keyed by device or interface name.
type Counters = (Instant, HashMap<String, (u64, u64)>);

struct HostState {
    hostname: String,
    root: PathBuf,
    handles: Option<Handles>,
    prev_disk: Option<Counters>,
    prev_net: Option<Counters>,
    /// Attributes that do not change while the agent runs (OS, kernel, CPU count).
    static_attrs: Option<Vec<(String, Value)>>,
}

impl HostState {
    fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let node = resource_id(&self.hostname, canonical::node(&self.hostname))?;
        let mut out = Collected::default();
        let first_run = self.handles.is_none();
        let handles = match &mut self.handles {
            Some(h) => {
                h.system.refresh_cpu_usage();
                h.system.refresh_memory();
                h.disks
                    .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
                h.networks.refresh(true);
                h.components.refresh(true);
                h
            }
            None => {
                let sysinfo_err = |what| move |source| CollectorError::Sysinfo { what, source };
                let mut system = System::new().map_err(sysinfo_err("system information"))?;
                // CPU usage is the delta between two refreshes at least 200ms apart.
                system.refresh_cpu_usage();
                std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
                system.refresh_cpu_usage();
                system.refresh_memory();
                let disks = Disks::new_with_refreshed_list_specifics(
                    DiskRefreshKind::nothing().with_storage(),
                )
                .map_err(sysinfo_err("filesystems"))?;
                let networks = Networks::new_with_refreshed_list()
                    .map_err(sysinfo_err("network interfaces"))?;
                // Temperatures are optional: a machine without sensors is not a problem.
                let components = Components::new_with_refreshed_list()
                    .or_else(|_| Components::new())
                    .map_err(sysinfo_err("sensors"))?;
                self.handles.insert(Handles {
                    system,
                    disks,
                    networks,
                    components,
                })
            }
        };

        let sys = &handles.system;
        let cpus = sys.cpus().len();
        if cpus > 0 {
            out.sample(
                &node,
                metric::CPU_PCT,
                now_ms,
                f64::from(sys.global_cpu_usage()),
            );
        } else {
            out.problems.push("cpu usage: no cpus listed".to_owned());
        }
        memory_samples(&mut out, &node, now_ms, sys);
        match System::load_average() {
            Ok(l) => {
                out.sample(&node, metric::LOAD1, now_ms, l.one);
                out.sample(&node, metric::LOAD5, now_ms, l.five);
                out.sample(&node, metric::LOAD15, now_ms, l.fifteen);
            }
            Err(e) => out.problems.push(format!("load average: {e}")),
        }
        match System::uptime() {
            Ok(up) => out.sample(&node, metric::UPTIME_SECONDS, now_ms, up as f64),
            Err(e) => out.problems.push(format!("uptime: {e}")),
        }

        let filesystems = select_filesystems(handles.disks.iter().map(|d| FsEntry {
            device: d.name().to_string_lossy().into_owned(),
            mount: d.mount_point().to_string_lossy().into_owned(),
            fs_type: d.file_system().to_string_lossy().into_owned(),
            total: d.total_space(),
            available: d.available_space(),
        }));
        for fs in &filesystems {
            let used = fs.total.saturating_sub(fs.available);
            out.sample(
                &node,
                metric::labelled(metric::FS_TOTAL_BYTES, "mount", &fs.mount),
                now_ms,
                fs.total as f64,
            );
            out.sample(
                &node,
                metric::labelled(metric::FS_USED_BYTES, "mount", &fs.mount),
                now_ms,
                used as f64,
            );
            out.sample(
                &node,
                metric::labelled(metric::FS_USED_PCT, "mount", &fs.mount),
                now_ms,
                pct(used, fs.total),
            );
        }

        let now = Instant::now();
        match read_diskstats(&self.root) {
            Ok(current) => {
                let prev = self.prev_disk.replace((now, current));
                if let (Some(prev), Some(cur)) = (prev, &self.prev_disk) {
                    for (dev, read, write) in rates(&prev, cur) {
                        out.sample(
                            &node,
                            metric::labelled(metric::DISK_READ_BYTES_PER_S, "device", &dev),
                            now_ms,
                            read,
                        );
                        out.sample(
                            &node,
                            metric::labelled(metric::DISK_WRITE_BYTES_PER_S, "device", &dev),
                            now_ms,
                            write,
                        );
                    }
                }
            }
            Err(e) => {
                self.prev_disk = None;
                out.problems.push(format!("disk io: {e}"));
            }
        }

        let net: HashMap<String, (u64, u64)> = handles
            .networks
            .iter()
            .map(|(name, data)| (name.to_string_lossy().into_owned(), data))
            .filter(|(name, _)| keep_interface(name))
            .map(|(name, d)| (name, (d.total_received(), d.total_transmitted())))
            .collect();
        if let Some(prev) = self.prev_net.replace((now, net))
            && let Some(cur) = &self.prev_net
        {
            for (iface, rx, tx) in rates(&prev, cur) {
                out.sample(
                    &node,
                    metric::labelled(metric::NET_RX_BYTES_PER_S, "iface", &iface),
                    now_ms,
                    rx,
                );
                out.sample(
                    &node,
                    metric::labelled(metric::NET_TX_BYTES_PER_S, "iface", &iface),
                    now_ms,
                    tx,
                );
            }
        }

        let mut sensors = HashSet::new();
        for c in handles.components.iter() {
            if let Some(t) = c.temperature()
                && sensors.insert(c.label().to_owned())
            {
                out.sample(
                    &node,
                    metric::labelled(metric::TEMP_CELSIUS, "sensor", c.label()),
                    now_ms,
                    f64::from(t),
                );
            }
        }

        let mut attrs = self
            .static_attrs
            .get_or_insert_with(|| static_attrs(&self.hostname, cpus))
            .clone();
        attrs.push((
            "filesystems".to_owned(),
            Value::Int(filesystems.len() as i64),
        ));
        out.resources.push(Resource {
            id: node,
            name: self.hostname.clone(),
            parent: None,
            status: "online".to_owned(),
            attrs,
        });
        if first_run {
            tracing::debug!(
                collector = "host",
                cpus,
                filesystems = filesystems.len(),
                "host collector initialised"
            );
        }
        Ok(out)
    }
}

fn memory_samples(out: &mut Collected, node: &ResourceId, now_ms: i64, sys: &System) {
    let total = sys.total_memory();
    if total == 0 {
        out.problems.push("memory: totals unavailable".to_owned());
        return;
    }
    // "Used" excludes page cache and reclaimable memory: what the kernel could not hand out now.
    let used = total.saturating_sub(sys.available_memory());
    out.sample(node, metric::MEM_TOTAL_BYTES, now_ms, total as f64);
    out.sample(node, metric::MEM_USED_BYTES, now_ms, used as f64);
    out.sample(node, metric::MEM_USED_PCT, now_ms, pct(used, total));
    out.sample(
        node,
        metric::SWAP_TOTAL_BYTES,
        now_ms,
        sys.total_swap() as f64,
    );
    out.sample(
        node,
        metric::SWAP_USED_BYTES,
        now_ms,
        sys.used_swap() as f64,
    );
}

fn static_attrs(hostname: &str, cpus: usize) -> Vec<(String, Value)> {
    let ok = |r: Result<String, sysinfo::Error>| Value::from(r.ok());
    vec![
        ("hostname".to_owned(), Value::from(hostname)),
        ("os".to_owned(), ok(System::long_os_version())),
        ("os_id".to_owned(), Value::from(System::distribution_id())),
        ("kernel".to_owned(), ok(System::kernel_version())),
        ("arch".to_owned(), Value::from(System::cpu_arch())),
        (
            "cpu_count".to_owned(),
            if cpus > 0 {
                Value::Int(cpus as i64)
            } else {
                Value::Unknown
            },
        ),
        (
            "boot_time".to_owned(),
            Value::from(System::boot_time().ok().and_then(|t| i64::try_from(t).ok())),
        ),
        ("system_hostname".to_owned(), ok(System::host_name())),
    ]
}

/// `part / whole` as a percentage (NaN when `whole` is 0, which [`Collected::sample`] drops).
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// One mounted filesystem as sysinfo reports it.
#[derive(Debug, Clone, PartialEq)]
struct FsEntry {
    device: String,
    mount: String,
    fs_type: String,
    total: u64,
    available: u64,
}

/// Drops pseudo and empty filesystems, and keeps one mount per device: bind mounts (such as
/// `/var/lib/docker` on the root device) would otherwise count the same space twice. The
/// shortest mount path wins, so `/` beats `/var/lib/docker`. Sorted by mount point.
fn select_filesystems(entries: impl IntoIterator<Item = FsEntry>) -> Vec<FsEntry> {
    let mut by_device: HashMap<String, FsEntry> = HashMap::new();
    for fs in entries {
        if fs.total == 0 || PSEUDO_FS.contains(&fs.fs_type.as_str()) {
            continue;
        }
        match by_device.get(&fs.device) {
            Some(kept) if (kept.mount.len(), &kept.mount) <= (fs.mount.len(), &fs.mount) => {}
            _ => {
                by_device.insert(fs.device.clone(), fs);
            }
        }
    }
    let mut out: Vec<FsEntry> = by_device.into_values().collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out
}

/// Interfaces worth a rate: not loopback, not the per-container veth ends Docker creates.
fn keep_interface(name: &str) -> bool {
    name != "lo" && !name.starts_with("veth")
}

/// Reads `<root>/proc/diskstats`, keeping whole block devices listed in `<root>/sys/block`
/// (partitions are counted in their disk). Values are cumulative (read bytes, written bytes).
fn read_diskstats(root: &Path) -> Result<HashMap<String, (u64, u64)>, CollectorError> {
    let path = root.join("proc/diskstats");
    let text = std::fs::read_to_string(&path).map_err(|source| CollectorError::Io {
        path: path.clone(),
        source,
    })?;
    let devices = std::fs::read_dir(root.join("sys/block")).ok().map(|dir| {
        dir.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<HashSet<_>>()
    });
    Ok(parse_diskstats(&text, devices.as_ref()))
}

/// Parses `/proc/diskstats`. `devices` (the names in `/sys/block`) restricts the result to whole
/// disks; without it, partitions are kept too. Loop, RAM and optical devices are always skipped.
fn parse_diskstats(text: &str, devices: Option<&HashSet<String>>) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // major minor name reads merged sectors_read ms writes merged sectors_written ...
        let (Some(name), Some(read), Some(written)) = (fields.get(2), fields.get(5), fields.get(9))
        else {
            continue;
        };
        if ["loop", "ram", "sr", "fd"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        if devices.is_some_and(|d| !d.contains(*name)) {
            continue;
        }
        if let (Ok(r), Ok(w)) = (read.parse::<u64>(), written.parse::<u64>()) {
            out.insert(
                (*name).to_owned(),
                (
                    r.saturating_mul(DISKSTATS_SECTOR_BYTES),
                    w.saturating_mul(DISKSTATS_SECTOR_BYTES),
                ),
            );
        }
    }
    out
}

/// Per-second rates of two cumulative counters between two readings, sorted by name. Names
/// missing from either reading and counters that went backwards (a reset) yield nothing.
fn rates(prev: &Counters, cur: &Counters) -> Vec<(String, f64, f64)> {
    let secs = cur.0.saturating_duration_since(prev.0).as_secs_f64();
    if secs <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<(String, f64, f64)> = cur
        .1
        .iter()
        .filter_map(|(name, &(a, b))| {
            let &(pa, pb) = prev.1.get(name)?;
            let da = a.checked_sub(pa)?;
            let db = b.checked_sub(pb)?;
            Some((name.clone(), da as f64 / secs, db as f64 / secs))
        })
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fs(device: &str, mount: &str, fs_type: &str, total: u64) -> FsEntry {
        FsEntry {
            device: device.into(),
            mount: mount.into(),
            fs_type: fs_type.into(),
            total,
            available: total / 4,
        }
    }

    #[test]
    fn filesystems_are_deduplicated_and_filtered() {
        let picked = select_filesystems(vec![
            fs("/dev/vda", "/var/lib/docker", "ext4", 100),
            fs("/dev/vda", "/", "ext4", 100),
            fs(
                "overlay",
                "/var/lib/docker/overlay2/x/merged",
                "overlay",
                100,
            ),
            fs("tmpfs", "/dev/shm", "tmpfs", 100),
            fs("/dev/loop0", "/snap/core/1", "squashfs", 100),
            fs("/dev/vdb1", "/data", "xfs", 200),
            fs("rpool/data", "/rpool/data", "zfs", 300),
            fs("rpool/ROOT", "/rpool/ROOT", "zfs", 300),
            fs("none", "/empty", "ext4", 0),
        ]);
        let mounts: Vec<&str> = picked.iter().map(|f| f.mount.as_str()).collect();
        assert_eq!(mounts, ["/", "/data", "/rpool/ROOT", "/rpool/data"]);
    }

    #[test]
    fn diskstats_parsing() {
        let text = "\
   7       0 loop0 10 0 80 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 36526 7756 3984234 29604 9426 33561 4667008 21743 1 6488 51805 4664 17 295248 413 1192 43
 254       1 vda1 100 0 200 0 10 0 20 0 0 0 0
   8       0 sda 1 2 3
";
        let all = parse_diskstats(text, None);
        assert_eq!(all.get("vda"), Some(&(3_984_234 * 512, 4_667_008 * 512)));
        assert_eq!(all.get("vda1"), Some(&(200 * 512, 20 * 512)));
        assert!(!all.contains_key("loop0"), "loop devices are skipped");
        assert!(!all.contains_key("sda"), "short lines are skipped");

        let disks: HashSet<String> = ["vda".to_owned(), "loop0".to_owned()].into();
        let whole = parse_diskstats(text, Some(&disks));
        assert_eq!(whole.keys().collect::<Vec<_>>(), ["vda"]);
    }

    #[test]
    fn diskstats_from_a_fixture_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/block/sda")).unwrap();
        std::fs::write(
            dir.path().join("proc/diskstats"),
            "8 0 sda 1 0 8 0 1 0 16 0 0 0 0\n8 1 sda1 1 0 8 0 1 0 16 0 0 0 0\n",
        )
        .unwrap();
        let stats = read_diskstats(dir.path()).unwrap();
        assert_eq!(stats, HashMap::from([("sda".to_owned(), (4096, 8192))]));
        let missing = read_diskstats(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().starts_with("cannot read "), "{missing}");
    }

    #[test]
    fn rates_from_counter_deltas() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let prev = (
            t0,
            HashMap::from([
                ("eth0".to_owned(), (1_000, 500)),
                ("eth1".to_owned(), (9_000, 9_000)),
            ]),
        );
        let cur = (
            t1,
            HashMap::from([
                ("eth0".to_owned(), (3_000, 700)),
                // Counter reset (interface re-created): no rate rather than a negative one.
                ("eth1".to_owned(), (10, 10)),
                // New interface: no previous reading yet.
                ("eth2".to_owned(), (5, 5)),
            ]),
        );
        assert_eq!(
            rates(&prev, &cur),
            vec![("eth0".to_owned(), 1_000.0, 100.0)]
        );
        assert!(
            rates(&cur, &cur).is_empty(),
            "zero elapsed time gives no rates"
        );
    }

    #[test]
    fn interface_filter() {
        assert!(keep_interface("eth0"));
        assert!(keep_interface("docker0"));
        assert!(!keep_interface("lo"));
        assert!(!keep_interface("veth12ab"));
    }

    #[test]
    fn percentages() {
        assert!((pct(1, 4) - 25.0).abs() < 1e-9);
        assert!(pct(1, 0).is_nan());
    }

    #[tokio::test]
    async fn collects_this_machine() {
        let mut c = HostCollector::new("testhost", PathBuf::from("/"));
        let first = c.collect(1).await.unwrap();
        let node = &first.resources[0];
        assert_eq!(node.id.as_str(), "node:testhost");
        assert_eq!(node.status, "online");
        let metric =
            |c: &Collected, m: &str| c.samples.iter().find(|s| s.metric == m).map(|s| s.value);
        let total = metric(&first, metric::MEM_TOTAL_BYTES).unwrap();
        let used = metric(&first, metric::MEM_USED_BYTES).unwrap();
        assert!(total > 0.0 && used > 0.0 && used <= total);
        assert!(
            metric(&first, metric::CPU_PCT).is_some(),
            "first run waits for a cpu delta"
        );
        assert!(metric(&first, metric::UPTIME_SECONDS).unwrap() > 0.0);
        assert!(
            metric(&first, &metric::labelled(metric::FS_USED_PCT, "mount", "/")).is_some(),
            "{:?}",
            first.samples
        );
        assert!(
            !first
                .samples
                .iter()
                .any(|s| s.metric.starts_with("disk_read")),
            "rates need two runs"
        );
        std::thread::sleep(Duration::from_millis(50));
        let second = c.collect(2).await.unwrap();
        assert!(
            second
                .samples
                .iter()
                .any(|s| metric::base(&s.metric) == metric::DISK_READ_BYTES_PER_S),
            "{:?}",
            second.samples
        );
        assert!(second.samples.iter().all(|s| s.ts_ms == 2));
        crate::collectors::assert_provenance_complete(&c, &first);
        crate::collectors::assert_provenance_complete(&c, &second);
    }

    #[test]
    fn every_metric_has_its_provenance() {
        // What this machine may lack (sensors, network rates) is covered by a fixed set.
        let id = ResourceId::new("node:h").unwrap();
        let mut all = Collected::default();
        for metric in [
            metric::CPU_PCT,
            metric::MEM_TOTAL_BYTES,
            metric::MEM_USED_BYTES,
            metric::MEM_USED_PCT,
            metric::SWAP_TOTAL_BYTES,
            metric::SWAP_USED_BYTES,
            metric::LOAD1,
            metric::LOAD5,
            metric::LOAD15,
            metric::UPTIME_SECONDS,
            &metric::labelled(metric::FS_TOTAL_BYTES, "mount", "/"),
            &metric::labelled(metric::FS_USED_BYTES, "mount", "/"),
            &metric::labelled(metric::FS_USED_PCT, "mount", "/"),
            &metric::labelled(metric::DISK_READ_BYTES_PER_S, "device", "sda"),
            &metric::labelled(metric::DISK_WRITE_BYTES_PER_S, "device", "sda"),
            &metric::labelled(metric::NET_RX_BYTES_PER_S, "iface", "eth0"),
            &metric::labelled(metric::NET_TX_BYTES_PER_S, "iface", "eth0"),
            &metric::labelled(metric::TEMP_CELSIUS, "sensor", "coretemp Package id 0"),
        ] {
            all.sample(&id, metric, 1, 1.0);
        }
        let c = HostCollector::new("h", PathBuf::from("/"));
        crate::collectors::assert_provenance_complete(&c, &all);
        assert_eq!(
            PROVENANCE.len(),
            all.samples.len(),
            "no entry without a metric"
        );
    }
}
