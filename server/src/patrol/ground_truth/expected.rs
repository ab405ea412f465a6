//! What each seeded problem of the troubled fleet must raise ([`expected`]), and nothing else.

use super::*;

/// A check on a finding's evidence.
#[derive(Debug, Clone)]
pub(super) enum Needle {
    /// Contains this text.
    Text(String),
    /// The number right after this text lies in `lo..=hi`.
    Num(String, f64, f64),
}

/// A finding a seeded problem must raise.
#[derive(Debug, Clone)]
pub(super) struct Expect {
    pub(super) resource_id: String,
    pub(super) key: String,
    pub(super) severity: Severity,
    pub(super) evidence: Vec<Needle>,
    /// Linked under the root finding (resource id, key).
    pub(super) under: Option<(String, String)>,
    /// For capacity forecasts: the true days to full (within ±10 %).
    pub(super) days_to_full: Option<f64>,
    /// Why this expectation fails today, if it does (see the report of these tests).
    pub(super) known: Option<&'static str>,
}

pub(super) fn want(resource_id: &str, key: &str, severity: Severity) -> Expect {
    Expect {
        resource_id: resource_id.into(),
        key: key.into(),
        severity,
        evidence: Vec::new(),
        under: None,
        days_to_full: None,
        known: None,
    }
}

impl Expect {
    fn text(mut self, t: impl Into<String>) -> Self {
        self.evidence.push(Needle::Text(t.into()));
        self
    }

    fn num(mut self, after: impl Into<String>, lo: f64, hi: f64) -> Self {
        self.evidence.push(Needle::Num(after.into(), lo, hi));
        self
    }

    fn under(mut self, resource_id: &str, key: &str) -> Self {
        self.under = Some((resource_id.into(), key.into()));
        self
    }
}

fn disk_id(node: &str, dev: &str, prefix: &str) -> String {
    format!(
        "disk:{node}/{prefix}{:06}",
        hash(&format!("{node}{dev}")) % 1_000_000
    )
}

const KNOWN_PBS_STATE: &str = "rules::pbs_jobs looks up `<kind>_last_state` \
                               (`verify_last_state`); the PBS collector writes \
                               `<kind>/<id>_last_state` (`verify/v-fast_last_state`)";

/// The findings `t` must raise, and nothing else.
pub(super) fn expected(t: Trouble) -> Vec<Expect> {
    use Severity::{Critical, Warning};
    let guest = guest_id;
    match t {
        Trouble::StorageWarning => vec![
            want("storage:pve2/local-lvm", "storage-usage", Warning).num(
                "storage_used_pct >= ",
                82.5,
                84.5,
            ),
        ],
        // The pool and the PVE storage on it are one problem: the storage's finding is linked
        // under the pool's.
        Trouble::ZfsPoolFull => vec![
            want("storage:pve3/zfs:tank", "storage-usage", Critical)
                .num("storage_used_pct >= ", 92.0, 93.5)
                .num("PVE storage tank on it: storage_used_pct >= ", 92.3, 93.8),
            want("storage:pve3/tank", "storage-usage", Critical)
                .num("storage_used_pct >= ", 92.3, 93.8)
                .under("storage:pve3/zfs:tank", "storage-usage"),
        ],
        Trouble::NodeCpu => {
            vec![want("node:pve4", "node-cpu", Critical).num("cpu_pct >= ", 85.0, 91.0)]
        }
        Trouble::GuestMemory => {
            vec![want(&guest(100), "guest-memory", Warning).num("mem_used_pct >= ", 80.5, 84.0)]
        }
        Trouble::ContainerDiskFull => vec![
            want(&guest(101), "guest-disk", Critical)
                .num("disk_used_pct = ", 93.4, 93.6)
                .text("(7.5 of 8.0 GiB)"),
        ],
        Trouble::VmFilesystemFull => vec![want(&guest(102), "guest-disk", Warning).num(
            format!(
                "{} = ",
                metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/var")
            ),
            86.9,
            87.1,
        )],
        Trouble::BackupOld => vec![want(&guest(105), "backup-age", Warning).num(
            "backup_last_age_seconds = ",
            276_479.0,
            276_481.0,
        )],
        Trouble::BackupFailed => {
            vec![want(&guest(108), "backup-failed", Warning).text("backup_failed_24h > 0")]
        }
        Trouble::PbsGcFailed => vec![
            want("pbs-datastore:pbs1/fast", "pbs-gc-failed", Warning)
                .text(format!(
                    "{} = 0",
                    metric::labelled(metric::JOB_LAST_OK, "job", "gc")
                ))
                .text("EIO: I/O error"),
        ],
        // KNOWN: rules::pbs_jobs reads the job's state from `<kind>_last_state`
        // (`verify_last_state`), but the PBS collector names it after the job, `<kind>/<id>`
        // (`verify/v-fast_last_state`): only `gc` finds its error text, the others say "last
        // state: failed".
        // A failed verify puts restores at risk: critical.
        Trouble::PbsVerifyFailed => {
            let mut e = want(
                "pbs-datastore:pbs1/fast",
                "pbs-verify/v-fast-failed",
                Critical,
            )
            .text("verification failed");
            e.known = Some(KNOWN_PBS_STATE);
            vec![e]
        }
        Trouble::PbsSyncFailed => {
            let mut e = want(
                "pbs-datastore:pbs1/store1",
                "pbs-sync/s-offsite-failed",
                Warning,
            )
            .text("remote 'offsite'");
            e.known = Some(KNOWN_PBS_STATE);
            vec![e]
        }
        Trouble::ReplicationFailing => vec![
            // Four failures in a row: the replica falls behind, critical.
            want("replication:prod/120-0", "replication-failing", Critical)
                .text("fail_count = 4")
                .text("exit code 255"),
        ],
        Trouble::SsdWornOut => vec![
            want(
                &disk_id("pve1", "/dev/sda", "S6KMNE0W"),
                "disk-wearout",
                Warning,
            )
            .text("disk_wearout_pct = 12"),
        ],
        Trouble::SmartFailing => vec![
            want(
                &disk_id("pve2", "/dev/sdd", "WWZ5"),
                "disk-health",
                Critical,
            )
            .text("SMART health = FAILED"),
        ],
        Trouble::NodeOffline => {
            let root = format!("node:{SPARE}");
            let key = "correlated-node-down";
            vec![
                want(&root, key, Critical)
                    .text("status = offline")
                    .text("Linked: "),
                want(&root, "node-offline", Critical)
                    .text("cluster status = offline")
                    .under(&root, key),
                want(
                    &format!("agent:{}", agent_id(SPARE)),
                    "agent-silent",
                    Warning,
                )
                .text("last heard from 20 min ago")
                .under(&root, key),
            ]
        }
        Trouble::HddHot => vec![
            want(
                &disk_id("pve3", "/dev/sdc", "WWZ4"),
                "disk-temperature",
                Warning,
            )
            .text("disk_temp_celsius = 58 (disk levels"),
        ],
        Trouble::NvmeHot => vec![
            want(
                &disk_id("pve4", "/dev/nvme0n1", "S69ENF0R"),
                "disk-temperature",
                Critical,
            )
            .text("disk_temp_celsius = 82 (NVMe levels"),
        ],
        Trouble::CertExpiring => vec![want("node:pve2", "certificate-expiry", Warning).num(
            "pveproxy-ssl.pem: ",
            9.9,
            10.0,
        )],
        Trouble::ContainerRestarts => vec![
            want("docker:dock1/api", "container-restarts", Warning)
                .text("restart_count +5 in 60 min"),
        ],
        Trouble::ContainerUnhealthy => vec![
            want("docker:dock1/web", "container-unhealthy", Warning).text("health = unhealthy"),
        ],
        Trouble::MemoryPressure => {
            let root = "node:dock2";
            let key = "correlated-memory-pressure";
            vec![
                want(root, key, Critical)
                    .num("mem_used_pct >= ", 92.0, 96.5)
                    .text("Linked: "),
                want("node:dock2", "node-memory", Critical)
                    .num("mem_used_pct >= ", 92.0, 96.5)
                    .under(root, key),
                want("docker:dock2/worker", "container-oom", Warning)
                    .text("oom_killed = true")
                    .under(root, key),
                want("docker:dock2/cache", "container-restarts", Warning)
                    .text("restart_count +4")
                    .under(root, key),
            ]
        }
        Trouble::PodCrashLoop => vec![
            want(
                &format!("pod:{K8S}/shop/{}", pod_name("checkout", 0)),
                "pod-crashloop",
                Warning,
            )
            .text("restarts = 14")
            .text("last termination: Error (exit code 1)")
            .text("Back-off restarting failed container"),
            want(
                &format!("k8s-workload:{K8S}/shop/deployment/checkout"),
                "replicas-unavailable",
                Warning,
            )
            .text("replicas_unavailable = 1, desired = 3"),
        ],
        Trouble::PodImagePull => vec![
            want(
                &format!("pod:{K8S}/shop/{}", image_pull_pod()),
                "pod-image",
                Warning,
            )
            .text("status ImagePullBackOff")
            .text("manifest unknown"),
        ],
        Trouble::PodPending => vec![
            want(
                &format!(
                    "pod:{K8S}/batch/{}",
                    pod_name(&report_job(pending_since(NOW0)), 0)
                ),
                "pod-pending",
                Warning,
            )
            .text("phase Pending for 12 min")
            .text("Insufficient memory"),
        ],
        Trouble::K8sNodeNotReady => vec![
            want(
                &format!("k8s-node:{K8S}/worker-4"),
                "k8s-node-not-ready",
                Critical,
            )
            .text("condition Ready = NotReady"),
        ],
        Trouble::ReplicasUnavailable => vec![
            want(
                &format!("k8s-workload:{K8S}/shop/statefulset/db"),
                "replicas-unavailable",
                Critical,
            )
            .text("replicas_unavailable = 2, desired = 2"),
        ],
        Trouble::JobFailed => vec![
            want(
                &format!("k8s-workload:{K8S}/batch/job/{}", etl_job()),
                "job-failed",
                Warning,
            )
            .text("BackoffLimitExceeded"),
        ],
        Trouble::PvcPending => vec![
            want(
                &format!("pvc:{K8S}/shop/uploads-v2"),
                "pvc-unbound",
                Warning,
            )
            .text("phase Pending"),
        ],
        Trouble::StorageFilling => {
            let mut e = want("storage:pve3/local-lvm", "storage-forecast", Warning)
                .num("storage_used_pct: ", 68.0, 70.0)
                .num("now, +", 5.4, 6.6);
            e.days_to_full = Some((100.0 - FILL_NOW) / FILL_PER_DAY);
            vec![e]
        }
        Trouble::CpuAnomaly => vec![
            want(&guest(104), "anomaly-cpu_pct", Warning)
                .num("cpu_pct ", 70.0, 74.0)
                .text("own history"),
        ],
        Trouble::AgentSilent => vec![
            want(
                &format!("agent:{}", agent_id("dock3")),
                "agent-silent",
                Warning,
            )
            .text("last heard from 12 min ago"),
        ],
        Trouble::CollectorFailing => vec![
            want(
                &format!("agent:{}", agent_id("dock4")),
                "collector-failing:docker",
                Warning,
            )
            .text("status failed")
            .text("permission denied"),
        ],
        Trouble::BackupFrozen => vec![
            want(&guest(103), "backup-not-running", Warning).text("3 h before the guest's latest"),
        ],
        Trouble::BackupTargetFull => {
            let root = format!("storage:{CLUSTER}/pbs-archive");
            let mut out = vec![
                want(&root, "storage-usage", Critical)
                    .num("storage_used_pct >= ", 92.0, 93.5)
                    .under(&root, "correlated-backup-target-full"),
                want(&root, "correlated-backup-target-full", Critical)
                    .num("storage_used_pct >= ", 92.0, 93.5)
                    .text("Linked: "),
                // The datastore behind `pbs-archive`: correlation matches by storage name, and
                // PVE names the storage, PBS the datastore.
                want("pbs-datastore:pbs1/archive", "storage-usage", Critical).num(
                    "datastore_used_pct >= ",
                    92.0,
                    93.5,
                ),
            ];
            for vmid in ARCHIVE_GUESTS {
                out.push(
                    want(&guest(vmid), "backup-age", Warning)
                        .num("backup_last_age_seconds = ", 302_000.0, 303_000.0)
                        .under(&root, "correlated-backup-target-full"),
                );
            }
            out
        }
        Trouble::ZfsDegraded => vec![
            want("storage:pve1/zfs:tank", "zfs-pool-health", Warning)
                .text("health DEGRADED")
                .text("(FAULTED, too many errors)"),
        ],
        Trouble::CephWarning => vec![
            want(&format!("storage:{CLUSTER}/ceph"), "ceph-health", Warning)
                .text("checks: OSD_DOWN,PG_DEGRADED")
                .text("OSDs: 1 down, 0 out"),
        ],
        Trouble::HostFsFull => vec![
            want(&format!("node:{PBS}"), "host-fs:/", Warning)
                .num(
                    format!("{} = ", metric::labelled(metric::FS_USED_PCT, "mount", "/")),
                    90.9,
                    91.1,
                )
                .text("(109.2 of 120.0 GiB)"),
        ],
        Trouble::UpdatesPending => {
            vec![want("node:pve2", "updates-pending", Severity::Info).text("updates_pending = 14")]
        }
        Trouble::TasksFailed => {
            vec![want("node:pve4", "tasks-failed", Severity::Watch).text("tasks_failed_24h = 3")]
        }
        Trouble::K8sNodePressure => vec![
            want(
                &format!("k8s-node:{K8S}/worker-3"),
                "k8s-node-pressure",
                Warning,
            )
            .text("DiskPressure = True")
            .text("FreeDiskSpaceFailed"),
        ],
        Trouble::K8sWarningStorm => vec![
            want(
                &format!("k8s-cluster:{K8S}"),
                "k8s-warning-storm",
                Severity::Watch,
            )
            .text("warning_events_1h = 412")
            .text("DNSConfigForming: Nameserver limits were exceeded"),
        ],
        Trouble::PodOomKilled => vec![
            want(
                &format!("pod:{K8S}/shop/{}", pod_name("search", 0)),
                "pod-crashloop",
                Warning,
            )
            .text("restarts = 23")
            .text("last termination: OOMKilled (exit code 137)"),
            want(
                &format!("k8s-workload:{K8S}/shop/deployment/search"),
                "replicas-unavailable",
                Warning,
            )
            .text("replicas_unavailable = 1, desired = 2"),
        ],
        Trouble::PbsEstimateFull => vec![
            want("pbs-datastore:pbs1/vault", "storage-forecast", Warning)
                .num("datastore_days_to_full = ", 5.49, 5.5)
                .num("Warden's history: ", 3.8, 4.1),
        ],
        Trouble::BackupStorm => {
            let mut out = vec![
                want("node:pve3", "storm-backup-failed", Warning)
                    .text("6 findings of `backup-failed`"),
            ];
            for vmid in STORM_GUESTS {
                out.push(
                    want(&guest(vmid), "backup-failed", Warning)
                        .under("node:pve3", "storm-backup-failed"),
                );
            }
            out
        }
    }
}

/// The hourly report job of the hour of `t` (a CronJob names its jobs by the scheduled
/// minute since the epoch).
pub(super) fn report_job(t: i64) -> String {
    format!("report-{}", t.div_euclid(HOUR) * 60)
}

/// When the pending pod of [`Trouble::PodPending`] was created.
pub(super) fn pending_since(now: i64) -> i64 {
    now - 12 * MIN - 10 * SEC
}
