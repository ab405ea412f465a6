//! The metric vocabulary of the agent↔server contract: every metric name a collector sends,
//! its unit, and how labelled names such as `fs_used_pct{mount="/"}` are built and read.
//!
//! Collectors, Patrol's detectors, alert rules and tests name metrics through these
//! constants, never through string literals (a tidy test enforces it), so a rename is one
//! edit here and a typo is a compile error. Names are part of the wire contract: changing a
//! constant's text breaks stored history, alert rules and dashboards, so add names, never
//! rename them.
//!
//! A name may carry labels in Prometheus form, `name{key="value"}`; [`labelled`] builds
//! such a name and [`base`] strips the labels again.

/// The unit of a metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A percentage, 0–100.
    Percent,
    /// Bytes.
    Bytes,
    /// Bytes per second, averaged over the collection interval.
    BytesPerSecond,
    /// Seconds (an age, a duration, a time left).
    Seconds,
    /// Days.
    Days,
    /// Degrees Celsius.
    Celsius,
    /// A count of things or events.
    Count,
    /// A dimensionless ratio or factor (load average, dedup ratio).
    Ratio,
    /// 1 for yes, 0 for no.
    Bool,
}

impl Unit {
    /// The unit's short name, as the API and docs print it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Percent => "percent",
            Self::Bytes => "bytes",
            Self::BytesPerSecond => "bytes_per_second",
            Self::Seconds => "seconds",
            Self::Days => "days",
            Self::Celsius => "celsius",
            Self::Count => "count",
            Self::Ratio => "ratio",
            Self::Bool => "bool",
        }
    }
}

impl Unit {
    /// Decimals the agent keeps for a value in this unit: what the sensors behind it can
    /// tell, and no more (see `docs/metrics-precision.md`). Integers stay integers.
    pub const fn decimals(self) -> u8 {
        match self {
            // 0.01 points: finer than any CPU tick count, page count or block count over
            // a collection interval turns into on a threshold users set in whole points.
            Self::Percent => 2,
            // Whole bytes and whole events; rates from byte or sector counters.
            Self::Bytes | Self::BytesPerSecond | Self::Count | Self::Bool => 0,
            // Milliseconds: ages and durations come from clocks read to the millisecond.
            Self::Seconds => 3,
            // About 9 seconds: forecasts, far coarser than that.
            Self::Days => 4,
            // 0.1 °C: the resolution of common sensors (and finer than their accuracy).
            Self::Celsius => 1,
            // Load averages (`/proc/loadavg` prints two decimals), dedup factors.
            Self::Ratio => 2,
        }
    }
}

/// `value` rounded to the decimals of `name`'s unit ([`Unit::decimals`]); names outside the
/// vocabulary, values that are not finite and values too large to carry those decimals are
/// returned as they are. A value that rounds to zero is `+0.0`, never `-0.0`.
///
/// The result is the shortest decimal the server's chunk codec stores in a few bits.
#[must_use]
pub fn round(name: &str, value: f64) -> f64 {
    let Some(unit) = unit(name) else {
        return value;
    };
    round_to(value, unit.decimals())
}

/// `value` rounded to `decimals` decimal places (see [`round`]).
#[must_use]
fn round_to(value: f64, decimals: u8) -> f64 {
    /// Integers up to here are exact in f64: larger values have no decimals to drop.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let scale = 10f64.powi(i32::from(decimals));
    let scaled = (value * scale).round();
    if !scaled.is_finite() || scaled.abs() >= EXACT {
        return value;
    }
    if scaled == 0.0 {
        return 0.0;
    }
    scaled / scale
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $name:ident = $text:literal, $unit:ident;)*) => {
        $($(#[$doc])* pub const $name: &str = $text;)*

        /// Every metric name with its unit, in declaration order.
        pub const ALL: &[(&str, Unit)] = &[$(($text, Unit::$unit)),*];
    };
}

metrics! {
    // Compute and memory: nodes, guests, containers, pods.
    /// CPU busy share of the resource's CPUs.
    CPU_PCT = "cpu_pct", Percent;
    /// Memory in use.
    MEM_USED_BYTES = "mem_used_bytes", Bytes;
    /// Memory in use as a share of the total (or the limit).
    MEM_USED_PCT = "mem_used_pct", Percent;
    /// Memory installed or assigned.
    MEM_TOTAL_BYTES = "mem_total_bytes", Bytes;
    /// A container's memory limit.
    MEM_LIMIT_BYTES = "mem_limit_bytes", Bytes;
    /// Swap configured.
    SWAP_TOTAL_BYTES = "swap_total_bytes", Bytes;
    /// Swap in use.
    SWAP_USED_BYTES = "swap_used_bytes", Bytes;
    /// One-minute load average.
    LOAD1 = "load1", Ratio;
    /// Five-minute load average.
    LOAD5 = "load5", Ratio;
    /// Fifteen-minute load average.
    LOAD15 = "load15", Ratio;
    /// Time since boot or start.
    UPTIME_SECONDS = "uptime_seconds", Seconds;
    /// A temperature sensor (labelled by sensor).
    TEMP_CELSIUS = "temp_celsius", Celsius;
    /// Memory in use as the guest agent sees it.
    GUEST_MEM_USED_BYTES = "guest_mem_used_bytes", Bytes;
    /// Memory installed as the guest agent sees it.
    GUEST_MEM_TOTAL_BYTES = "guest_mem_total_bytes", Bytes;

    // Filesystems and disks.
    /// A filesystem's size (labelled by mount).
    FS_TOTAL_BYTES = "fs_total_bytes", Bytes;
    /// A filesystem's used space (labelled by mount).
    FS_USED_BYTES = "fs_used_bytes", Bytes;
    /// A filesystem's used share (labelled by mount).
    FS_USED_PCT = "fs_used_pct", Percent;
    /// A guest filesystem's size, from the guest agent (labelled by mount).
    GUEST_FS_TOTAL_BYTES = "guest_fs_total_bytes", Bytes;
    /// A guest filesystem's used space, from the guest agent (labelled by mount).
    GUEST_FS_USED_BYTES = "guest_fs_used_bytes", Bytes;
    /// A guest filesystem's used share, from the guest agent (labelled by mount).
    GUEST_FS_USED_PCT = "guest_fs_used_pct", Percent;
    /// A container's root filesystem used share.
    ROOTFS_USED_PCT = "rootfs_used_pct", Percent;
    /// A guest's virtual disk size.
    DISK_TOTAL_BYTES = "disk_total_bytes", Bytes;
    /// A guest's virtual disk space in use.
    DISK_USED_BYTES = "disk_used_bytes", Bytes;
    /// A guest's virtual disk used share.
    DISK_USED_PCT = "disk_used_pct", Percent;
    /// Block device reads (labelled by device).
    DISK_READ_BYTES_PER_S = "disk_read_bytes_per_s", BytesPerSecond;
    /// Block device writes (labelled by device).
    DISK_WRITE_BYTES_PER_S = "disk_write_bytes_per_s", BytesPerSecond;
    /// A physical disk's size.
    DISK_SIZE_BYTES = "disk_size_bytes", Bytes;
    /// A physical disk's wear (100 = worn out).
    DISK_WEAROUT_PCT = "disk_wearout_pct", Percent;
    /// A physical disk's temperature.
    DISK_TEMP_CELSIUS = "disk_temp_celsius", Celsius;

    // Network.
    /// Bytes received (labelled by interface).
    NET_RX_BYTES_PER_S = "net_rx_bytes_per_s", BytesPerSecond;
    /// Bytes sent (labelled by interface).
    NET_TX_BYTES_PER_S = "net_tx_bytes_per_s", BytesPerSecond;

    // Storage pools.
    /// A storage pool's size.
    STORAGE_TOTAL_BYTES = "storage_total_bytes", Bytes;
    /// A storage pool's used space.
    STORAGE_USED_BYTES = "storage_used_bytes", Bytes;
    /// A storage pool's free space.
    STORAGE_FREE_BYTES = "storage_free_bytes", Bytes;
    /// A storage pool's used share.
    STORAGE_USED_PCT = "storage_used_pct", Percent;
    /// A ZFS pool's fragmentation.
    ZFS_FRAG_PCT = "zfs_frag_pct", Percent;
    /// A ZFS pool's deduplication ratio.
    ZFS_DEDUP_RATIO = "zfs_dedup_ratio", Ratio;
    /// Ceph OSDs in the cluster.
    CEPH_OSDS_TOTAL = "ceph_osds_total", Count;
    /// Ceph OSDs up.
    CEPH_OSDS_UP = "ceph_osds_up", Count;
    /// Ceph OSDs in.
    CEPH_OSDS_IN = "ceph_osds_in", Count;
    /// A persistent volume claim's capacity.
    CAPACITY_BYTES = "capacity_bytes", Bytes;

    // Backups and replication.
    /// Backups of a guest that failed in the last 24 hours.
    BACKUP_FAILED_24H = "backup_failed_24h", Count;
    /// Failed backup tasks on a node that name no guest, in the last 24 hours.
    BACKUP_FAILED_UNATTRIBUTED_24H = "backup_failed_unattributed_24h", Count;
    /// Age of the newest backup.
    BACKUP_LAST_AGE_SECONDS = "backup_last_age_seconds", Seconds;
    /// Backups kept.
    BACKUP_COUNT = "backup_count", Count;
    /// One backup's size.
    BACKUP_SIZE_BYTES = "backup_size_bytes", Bytes;
    /// A PBS datastore's size.
    DATASTORE_TOTAL_BYTES = "datastore_total_bytes", Bytes;
    /// A PBS datastore's used space.
    DATASTORE_USED_BYTES = "datastore_used_bytes", Bytes;
    /// A PBS datastore's used share.
    DATASTORE_USED_PCT = "datastore_used_pct", Percent;
    /// A PBS datastore's deduplication factor.
    DATASTORE_DEDUP_FACTOR = "datastore_dedup_factor", Ratio;
    /// PBS's own estimate of days until the datastore is full.
    DATASTORE_DAYS_TO_FULL = "datastore_days_to_full", Days;
    /// Snapshots in a PBS group or datastore.
    SNAPSHOTS_TOTAL = "snapshots_total", Count;
    /// Snapshots never verified.
    SNAPSHOTS_UNVERIFIED = "snapshots_unverified", Count;
    /// Snapshots whose last verification failed.
    SNAPSHOTS_VERIFY_FAILED = "snapshots_verify_failed", Count;
    /// A scheduled job's last run succeeded (labelled by job).
    JOB_LAST_OK = "job_last_ok", Bool;
    /// Time since a scheduled job last ran (labelled by job).
    JOB_LAST_RUN_AGE_SECONDS = "job_last_run_age_seconds", Seconds;
    /// A replication job's consecutive failures (labelled by job).
    REPLICATION_FAIL_COUNT = "replication_fail_count", Count;
    /// Time since a replication job last synced (labelled by job).
    REPLICATION_LAST_SYNC_AGE_SECONDS = "replication_last_sync_age_seconds", Seconds;
    /// How long a replication job's last sync took (labelled by job).
    REPLICATION_LAST_DURATION_SECONDS = "replication_last_duration_seconds", Seconds;

    // Node housekeeping.
    /// Package updates waiting to be installed.
    UPDATES_PENDING = "updates_pending", Count;
    /// Failed tasks in the last 24 hours.
    TASKS_FAILED_24H = "tasks_failed_24h", Count;
    /// Time until a certificate expires.
    CERT_EXPIRES_IN_SECONDS = "cert_expires_in_seconds", Seconds;

    // Containers and Kubernetes.
    /// Restarts of a container since it was created.
    RESTART_COUNT = "restart_count", Count;
    /// Container restarts of a pod.
    RESTARTS = "restarts", Count;
    /// 1 when a pod, node or workload is ready.
    READY = "ready", Bool;
    /// Kubernetes warning events in the last hour.
    WARNING_EVENTS_1H = "warning_events_1h", Count;
    /// Containers on a Docker engine.
    CONTAINERS_TOTAL = "containers_total", Count;
    /// Running containers on a Docker engine.
    CONTAINERS_RUNNING = "containers_running", Count;
    /// Paused containers on a Docker engine.
    CONTAINERS_PAUSED = "containers_paused", Count;
    /// Stopped containers on a Docker engine.
    CONTAINERS_STOPPED = "containers_stopped", Count;
    /// Nodes of a Kubernetes cluster.
    NODES = "nodes", Count;
    /// Nodes of a Kubernetes cluster that are ready.
    NODES_READY = "nodes_ready", Count;
    /// Pods of a Kubernetes cluster.
    PODS = "pods", Count;
    /// Pods of a Kubernetes cluster in one phase (labelled by phase).
    PODS_BY_PHASE = "pods_by_phase", Count;
    /// Replicas a workload asks for.
    REPLICAS_DESIRED = "replicas_desired", Count;
    /// Replicas of a workload that are ready.
    REPLICAS_READY = "replicas_ready", Count;
    /// Replicas of a workload that are not available.
    REPLICAS_UNAVAILABLE = "replicas_unavailable", Count;
    /// 1 when a Kubernetes job has failed.
    JOB_FAILED = "job_failed", Bool;
}

/// The unit of `name` (labels ignored), if it is a known metric.
pub fn unit(name: &str) -> Option<Unit> {
    let name = base(name);
    ALL.iter().find(|(n, _)| *n == name).map(|(_, u)| *u)
}

/// The metric name without its labels: `fs_used_pct` for `fs_used_pct{mount="/"}`.
pub fn base(name: &str) -> &str {
    name.split_once('{').map_or(name, |(base, _)| base)
}

/// `name{key="value"}`, escaping the value the way Prometheus label values are escaped.
pub fn labelled(name: &str, key: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + key.len() + value.len() + 5);
    out.push_str(name);
    out.push('{');
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_plain() {
        let mut seen = HashSet::new();
        for (name, _) in ALL {
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn labels_are_built_escaped_and_stripped() {
        let name = labelled(FS_USED_PCT, "mount", "/");
        assert_eq!(name, "fs_used_pct{mount=\"/\"}");
        assert_eq!(base(&name), FS_USED_PCT);
        assert_eq!(base(CPU_PCT), CPU_PCT);
        assert_eq!(
            labelled(JOB_LAST_OK, "job", "a\"b\\c\nd"),
            "job_last_ok{job=\"a\\\"b\\\\c\\nd\"}"
        );
        assert_eq!(base(&labelled(JOB_LAST_OK, "job", "a{b}")), JOB_LAST_OK);
    }

    #[test]
    fn rounding_keeps_what_sensors_tell() {
        assert_eq!(round(CPU_PCT, 96.984_931_945_800_78), 96.98);
        assert_eq!(
            round(&labelled(FS_USED_PCT, "mount", "/"), 82.975_476),
            82.98
        );
        assert_eq!(
            round(NET_RX_BYTES_PER_S, 1_171_837.761_495_791),
            1_171_838.0
        );
        assert_eq!(round(LOAD1, 3.23), 3.23);
        assert_eq!(round(UPTIME_SECONDS, 5.0), 5.0);
        assert_eq!(round(TEMP_CELSIUS, 45.125), 45.1);
        assert_eq!(round(MEM_USED_BYTES, 981_082_112.0), 981_082_112.0);
        // Negative zero would cost the codec its decimal path.
        assert_eq!(round(CPU_PCT, -0.001).to_bits(), 0.0f64.to_bits());
        // Outside the vocabulary, not finite, or too large to carry decimals: unchanged.
        assert_eq!(round("hologram_flux", 0.123_456_789), 0.123_456_789);
        assert!(round(CPU_PCT, f64::NAN).is_nan());
        assert_eq!(round(CPU_PCT, f64::INFINITY), f64::INFINITY);
        assert_eq!(round(CPU_PCT, 1e300), 1e300);
        assert_eq!(round(MEM_USED_BYTES, 1e17 + 0.5), 1e17 + 0.5);
    }

    #[test]
    fn units_follow_labels() {
        assert_eq!(
            unit(&labelled(FS_USED_PCT, "mount", "/")),
            Some(Unit::Percent)
        );
        assert_eq!(unit(DATASTORE_DAYS_TO_FULL), Some(Unit::Days));
        assert_eq!(unit("hologram_flux"), None);
    }
}
