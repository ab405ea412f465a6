//! Ground truth for Patrol (tests only): a generator of realistic synthetic fleets as
//! [`Snapshot`]s, and tests that run every detector the way [`super::run::run`] does over them.
//!
//! The fleet is what the collectors send, with the ids, attributes and metric names of
//! `agent/src/collectors/*.rs`: a five-node Proxmox VE cluster (nodes, 100 VMs and containers,
//! node-local and shared storage, ZFS pools, Ceph, disks with SMART data, replication jobs,
//! certificates, backups), a Proxmox Backup Server (datastores, jobs, backup groups, its host's
//! filesystems), four Docker hosts (their node, engine and containers) and a Kubernetes
//! cluster (nodes, pods, workloads, jobs, volume claims): about 380 resources from 11 agents,
//! each series with the history [`super::snapshot`] reads (per-minute points over the last
//! hour, seven days of hourly and recent 5-minute averages of capacity metrics, seven days of
//! hourly averages of baseline metrics), daily cycles, nightly jobs and deterministic noise
//! (xorshift, seeded).
//!
//! - **Control fleet**: healthy. Patrol must find nothing in it, whatever the seed and the hour.
//! - **Troubled fleet**: the control fleet with [`Trouble`]s seeded, each with the findings it
//!   must raise ([`expected`]): Patrol must find exactly those, nothing else.

use super::anomaly;
use super::correlate;
use super::finding::{Detection, Severity};
use super::forecast;
use super::rules;
use super::run::RunSettings;
use super::silence;
use super::snapshot::Snapshot;
use crate::store::{AgentRecord, CollectorHealthRecord, LatestSample, ResourceRecord};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const GIB: f64 = 1_073_741_824.0;
const TIB: f64 = 1024.0 * GIB;
/// 2027-01-15T08:00:00Z, a Friday.
const NOW0: i64 = 1_800_000_000_000;
const ORG: &str = "default";

/// The Proxmox VE cluster.
const CLUSTER: &str = "prod";
const PVE_NODES: [&str; 4] = ["pve1", "pve2", "pve3", "pve4"];
/// A fifth node without guests (storage and quorum only).
const SPARE: &str = "pve5";
/// Guests are VMIDs 100..200, on `PVE_NODES[(vmid - 100) % 4]`; containers where
/// `vmid % 5` is 1 or 3.
const FIRST_VMID: u32 = 100;
const GUESTS: u32 = 100;
const STOPPED: [u32; 5] = [117, 139, 158, 176, 193];
const TEMPLATES: [u32; 2] = [198, 199];
/// A VM created three hours ago: no history before, no backup yet.
const NEW_GUEST: u32 = 197;
/// The Proxmox Backup Server's host.
const PBS: &str = "pbs1";
const DOCKER_HOSTS: [&str; 4] = ["dock1", "dock2", "dock3", "dock4"];
/// The Kubernetes cluster and the host name of its agent's pod.
const K8S: &str = "k8s-prod";
const K8S_AGENT: &str = "warden-agent-5d8f7c9b6-kq2xv";
const K8S_WORKERS: [&str; 4] = ["worker-1", "worker-2", "worker-3", "worker-4"];

// ---- deterministic randomness ----

/// xorshift64*: the fleet's structure draws from one, seeded per fleet.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut r = Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        if r.0 == 0 {
            r.0 = 0x2545_F491_4F6C_DD1D;
        }
        // Mix the seed in.
        for _ in 0..4 {
            r.next();
        }
        r
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Noise in [-1, 1] for the series `key` at `t`, the same whenever it is asked for (so raw
/// samples, averages and the latest value of a series agree).
fn noise(key: u64, t: i64) -> f64 {
    let mut r = Rng::new(key ^ (t as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    r.unit() * 2.0 - 1.0
}

/// A small stable hash of a text, for names (`checkout-6c8d9b7f4d-x2x4k`) that must not
/// depend on the seed.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn alnum(h: u64, len: usize) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = h;
    (0..len)
        .map(|_| {
            let c = CHARS[(h % CHARS.len() as u64) as usize];
            h = (h / CHARS.len() as u64) ^ h.rotate_left(17);
            char::from(c)
        })
        .collect()
}

// ---- the shape of a metric over time ----

/// A percentage over time: a level with growth, a daily wave, day-to-day wobble, sample noise,
/// and optionally a sudden change.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// The level at `now` (before the wave), percent.
    level: f64,
    /// Growth, points per day; the level is reached at `now`.
    per_day: f64,
    /// Daily wave amplitude, points, peaking at `peak_hour` UTC.
    daily: f64,
    peak_hour: f64,
    /// Day-to-day offset amplitude, points.
    wobble: f64,
    /// Sample noise amplitude, points.
    noise: f64,
    /// From this time on the series holds this level instead.
    step: Option<(i64, f64)>,
    /// A daily job: from this minute of the day (UTC), for this many minutes, this many points
    /// higher.
    bump: Option<(i64, i64, f64)>,
    key: u64,
}

impl Shape {
    /// The noiseless value at `t`.
    fn at(&self, t: i64, now: i64) -> f64 {
        if let Some((since, to)) = self.step
            && t >= since
        {
            return to;
        }
        let days = (t - now) as f64 / DAY as f64;
        let hour = t.rem_euclid(DAY) as f64 / HOUR as f64;
        let wave = self.daily * ((hour - self.peak_hour) / 24.0 * std::f64::consts::TAU).cos();
        let wobble = self.wobble * noise(self.key ^ 0x5EED, t.div_euclid(DAY));
        let job = match self.bump {
            Some((start, minutes, height))
                if (start..start + minutes).contains(&(t.rem_euclid(DAY) / MIN)) =>
            {
                height
            }
            _ => 0.0,
        };
        self.level + self.per_day * days + wave + wobble + job
    }

    /// One sample at `t`.
    fn sample(&self, t: i64, now: i64) -> f64 {
        (self.at(t, now) + self.noise * noise(self.key, t)).clamp(0.0, 100.0)
    }

    /// The average of the samples taken every `step` within `[lo, hi]`.
    fn average(&self, lo: i64, hi: i64, step: i64, now: i64) -> f64 {
        let n = ((hi - lo) / step.max(1) + 1) as f64;
        let mean = (0..8)
            .map(|k| self.at(lo + (hi - lo) * k / 7, now))
            .sum::<f64>()
            / 8.0;
        (mean + self.noise * noise(self.key ^ 0xB0C7, lo) / n.sqrt()).clamp(0.0, 100.0)
    }

    fn flat(self, level: f64, noise: f64) -> Self {
        Self {
            level,
            per_day: 0.0,
            daily: 0.0,
            wobble: noise / 2.0,
            noise,
            ..self
        }
    }
}

// ---- seeded problems ----

/// A problem seeded into the troubled fleet. [`expected`] says what each must raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trouble {
    /// `local-lvm` of pve2 held at 84 %.
    StorageWarning,
    /// The ZFS pool `tank` of pve3 at 93 %.
    ZfsPoolFull,
    /// pve4's CPU at 89 % for days.
    NodeCpu,
    /// VM 100 (pve1) at 83 % memory for days.
    GuestMemory,
    /// Container 101's root disk 93.5 % full.
    ContainerDiskFull,
    /// VM 102's `/var` 87 % full.
    VmFilesystemFull,
    /// VM 105's backups (to `nfs-backup`) stopped 3.2 days ago.
    BackupOld,
    /// Container 108's backup failed last night.
    BackupFailed,
    /// PBS datastore `fast`: garbage collection failed.
    PbsGcFailed,
    /// PBS datastore `fast`: the verify job failed.
    PbsVerifyFailed,
    /// PBS datastore `store1`: the sync job failed.
    PbsSyncFailed,
    /// Replication 120-0 fails (SSH to the target).
    ReplicationFailing,
    /// pve1's first SSD has 12 % of its life left.
    SsdWornOut,
    /// A hard disk of pve2 fails its SMART self-assessment.
    SmartFailing,
    /// The spare node pve5 powered off 20 minutes ago: the cluster shows it offline, its agent
    /// is silent.
    NodeOffline,
    /// A hard disk of pve3 at 58 °C.
    HddHot,
    /// pve4's NVMe drive at 82 °C.
    NvmeHot,
    /// pve2's `pveproxy-ssl.pem` expires in 10 days (ACME renewal failing).
    CertExpiring,
    /// `docker:dock1/api` restarted 5 times in the last hour.
    ContainerRestarts,
    /// `docker:dock1/web` fails its health check.
    ContainerUnhealthy,
    /// dock2 at 94 % memory: `worker` OOM-killed, `cache` restarting.
    MemoryPressure,
    /// A `checkout` pod crash-loops (its deployment one replica short).
    PodCrashLoop,
    /// A new `api` pod cannot pull its image (the old replicas still serve).
    PodImagePull,
    /// A `report` job's pod pending for 12 minutes (unschedulable).
    PodPending,
    /// Kubernetes node `worker-4` NotReady.
    K8sNodeNotReady,
    /// Statefulset `shop/db`: no replica available.
    ReplicasUnavailable,
    /// Job `batch/nightly-etl-…` failed.
    JobFailed,
    /// Claim `shop/uploads-v2` pending (unknown storage class).
    PvcPending,
    /// pve3's `local-lvm` grows 6 points a day, now at 69 %.
    StorageFilling,
    /// VM 104's CPU at 72 % for 40 minutes; usually about 8 % at any hour.
    CpuAnomaly,
    /// The agent of dock3 silent for 12 minutes.
    AgentSilent,
    /// dock4's Docker collector failing for 40 minutes.
    CollectorFailing,
    /// Container 103's backup age not updated for 3 hours.
    BackupFrozen,
    /// PBS datastore `archive` (PVE storage `pbs-archive`) at 93 %: the backups of guests 130,
    /// 131 and 133 stopped.
    BackupTargetFull,
    /// Last night's backup of the six guests 106..=126 of pve3 failed.
    BackupStorm,
    /// pve1's ZFS pool `tank` DEGRADED: ZFS faulted one of its two hard disks.
    ZfsDegraded,
    /// Ceph HEALTH_WARN: one of its 15 OSDs down, placement groups degraded.
    CephWarning,
    /// The PBS host's root filesystem 91 % full (task logs).
    HostFsFull,
    /// pve2 has 14 package updates pending (the control fleet has none).
    UpdatesPending,
    /// Three migrations off pve4 failed today.
    TasksFailed,
    /// Kubernetes node `worker-3` under DiskPressure (images filled its disk).
    K8sNodePressure,
    /// Kubernetes: the pods on `worker-1` log DNSConfigForming warnings, 412 in the last hour.
    K8sWarningStorm,
    /// A `search` pod crash-loops, OOM-killed (exit code 137); its deployment one replica
    /// short.
    PodOomKilled,
    /// PBS datastore `vault`, attached 4 hours ago (moved over from another PBS host) at
    /// 64 %: PBS estimates it full in 5.5 days; Warden's own history is too short to forecast.
    PbsEstimateFull,
}

const ALL: [Trouble; 44] = [
    Trouble::StorageWarning,
    Trouble::ZfsPoolFull,
    Trouble::NodeCpu,
    Trouble::GuestMemory,
    Trouble::ContainerDiskFull,
    Trouble::VmFilesystemFull,
    Trouble::BackupOld,
    Trouble::BackupFailed,
    Trouble::PbsGcFailed,
    Trouble::PbsVerifyFailed,
    Trouble::PbsSyncFailed,
    Trouble::ReplicationFailing,
    Trouble::SsdWornOut,
    Trouble::SmartFailing,
    Trouble::NodeOffline,
    Trouble::HddHot,
    Trouble::NvmeHot,
    Trouble::CertExpiring,
    Trouble::ContainerRestarts,
    Trouble::ContainerUnhealthy,
    Trouble::MemoryPressure,
    Trouble::PodCrashLoop,
    Trouble::PodImagePull,
    Trouble::PodPending,
    Trouble::K8sNodeNotReady,
    Trouble::ReplicasUnavailable,
    Trouble::JobFailed,
    Trouble::PvcPending,
    Trouble::StorageFilling,
    Trouble::CpuAnomaly,
    Trouble::AgentSilent,
    Trouble::CollectorFailing,
    Trouble::BackupFrozen,
    Trouble::BackupTargetFull,
    Trouble::BackupStorm,
    Trouble::ZfsDegraded,
    Trouble::CephWarning,
    Trouble::HostFsFull,
    Trouble::UpdatesPending,
    Trouble::TasksFailed,
    Trouble::K8sNodePressure,
    Trouble::K8sWarningStorm,
    Trouble::PodOomKilled,
    Trouble::PbsEstimateFull,
];

/// Guests whose backups fail in [`Trouble::BackupStorm`] (all on pve3).
const STORM_GUESTS: [u32; 6] = [106, 110, 114, 118, 122, 126];
/// Guests backing up to `pbs-archive` only.
const ARCHIVE_GUESTS: [u32; 3] = [130, 131, 133];
/// Guests backing up to `nfs-backup` only.
const NFS_GUESTS: [u32; 3] = [105, 145, 165];
/// How fast pve3's `local-lvm` fills in [`Trouble::StorageFilling`], and where it is now.
const FILL_PER_DAY: f64 = 6.0;
const FILL_NOW: f64 = 69.0;

// ---- the generator ----

/// One collector of one agent: who it is, when it last ran, until when its data is current.
#[derive(Debug, Clone)]
struct Run {
    agent_id: String,
    /// Its resources were last described then (its last successful run).
    data_ms: i64,
    /// Its sampling interval.
    step_ms: i64,
}

struct Gen {
    now: i64,
    rng: Rng,
    trouble: BTreeSet<Trouble>,
    snap: Snapshot,
    /// By resource (same index as `snap.resources`): its collector's sampling interval, and
    /// when its samples end (when it was last described, unless another agent describes it).
    step: Vec<i64>,
    end: Vec<i64>,
    runs: BTreeMap<(String, String), Run>,
    /// Raw history the run reads, ms (run.rs: twice the window, at least an hour).
    lookback_ms: i64,
    /// Series of resources added now start then (a guest created a few hours ago).
    born_ms: i64,
}

/// The agent id of a host: `<host>-<6 hex>`, as enrollment makes it.
fn agent_id(host: &str) -> String {
    format!("{host}-{:06x}", hash(host) & 0xFF_FFFF)
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// How often each collector runs, ms (the intervals the sample configs use).
fn interval(collector: &str) -> i64 {
    match collector {
        "host" => 15 * SEC,
        "docker" | "proxmox" | "kubernetes" => 30 * SEC,
        _ => 60 * SEC,
    }
}

fn guest_node(vmid: u32) -> &'static str {
    PVE_NODES[((vmid - FIRST_VMID) % 4) as usize]
}

fn guest_kind(vmid: u32) -> &'static str {
    if matches!(vmid % 5, 1 | 3) {
        "lxc"
    } else {
        "vm"
    }
}

fn guest_id(vmid: u32) -> String {
    format!("{}:{CLUSTER}/{vmid}", guest_kind(vmid))
}

fn guest_name(vmid: u32) -> String {
    const ROLES: [&str; 12] = [
        "web", "app", "db", "cache", "mail", "git", "ci", "mon", "dns", "proxy", "build", "files",
    ];
    match vmid {
        100 => "erp-db".into(),
        104 => "wiki".into(),
        _ => format!("{}-{vmid}", ROLES[(vmid % 12) as usize]),
    }
}

fn backup_storage(vmid: u32) -> &'static str {
    if ARCHIVE_GUESTS.contains(&vmid) {
        "pbs-archive"
    } else if NFS_GUESTS.contains(&vmid) {
        "nfs-backup"
    } else {
        "pbs"
    }
}

/// The start of the latest run of a daily job at `minute_of_day` (UTC) at or before `t`.
fn last_daily(t: i64, minute_of_day: i64) -> i64 {
    let today = t.div_euclid(DAY) * DAY + minute_of_day * MIN;
    if today <= t { today } else { today - DAY }
}

/// When the nightly backup of `vmid` starts: 01:00 plus a minute per guest.
fn backup_minute(vmid: u32) -> i64 {
    60 + i64::from(vmid % 60)
}

fn pod_name(workload: &str, replica: usize) -> String {
    format!(
        "{workload}-{}-{}",
        alnum(hash(workload), 10),
        alnum(hash(&format!("{workload}/{replica}")), 5)
    )
}

impl Gen {
    fn new(seed: u64, now: i64, trouble: &[Trouble]) -> Self {
        let t = RunSettings::default().thresholds;
        Self {
            now,
            rng: Rng::new(seed),
            trouble: trouble.iter().copied().collect(),
            snap: Snapshot {
                now_ms: now,
                ..Snapshot::default()
            },
            step: Vec::new(),
            end: Vec::new(),
            runs: BTreeMap::new(),
            lookback_ms: (t.window_ms * 2).max(HOUR),
            born_ms: i64::MIN,
        }
    }

    fn has(&self, t: Trouble) -> bool {
        self.trouble.contains(&t)
    }

    fn build(mut self) -> Snapshot {
        self.pve();
        self.pbs();
        for host in DOCKER_HOSTS {
            self.docker_host(host);
        }
        self.kubernetes();
        // The store lists resources by id.
        self.snap.resources.sort_by(|a, b| a.id.cmp(&b.id));
        self.snap
    }

    /// An agent on `host` running `collectors`, all current unless trouble says otherwise.
    fn agent(&mut self, host: &str, collectors: &[&str]) {
        let id = agent_id(host);
        let silent = host == "dock3" && self.has(Trouble::AgentSilent);
        let off = host == SPARE && self.has(Trouble::NodeOffline);
        // The server last stored a batch of it then (its clock).
        let seen = if silent {
            self.now - 12 * MIN - 5 * SEC
        } else if off {
            self.now - 20 * MIN - 30 * SEC
        } else {
            self.now - self.rng.below(3_000) as i64 - 200
        };
        let mut health = BTreeMap::new();
        for &c in collectors {
            let step = interval(c);
            let last_run = seen - 300 - self.rng.below(step as u64) as i64;
            let mut h = CollectorHealthRecord {
                status: "ok".into(),
                message: None,
                last_success_ms: Some(last_run),
                last_run_ms: last_run,
                duration_ms: 80 + self.rng.below(900),
            };
            if host == "dock4" && c == "docker" && self.has(Trouble::CollectorFailing) {
                h.status = "failed".into();
                h.message = Some(
                    "docker: permission denied while trying to connect to the Docker daemon \
                     socket at unix:///var/run/docker.sock"
                        .into(),
                );
                h.last_success_ms = Some(last_run - 40 * MIN);
            }
            self.runs.insert(
                (host.to_owned(), c.to_owned()),
                Run {
                    agent_id: id.clone(),
                    data_ms: h.last_success_ms.unwrap_or(last_run),
                    step_ms: step,
                },
            );
            health.insert(c.to_owned(), h);
        }
        self.snap.agents.push(AgentRecord {
            id,
            org_id: ORG.into(),
            hostname: host.into(),
            version: "0.4.2".into(),
            enrolled_at_ms: self.now - 120 * DAY,
            revoked_at_ms: None,
            cert_serial: format!("{:016x}", hash(host)),
            cert_not_after_unix: (self.now + 300 * DAY) / 1000,
            last_seen_ms: Some(seen),
            protocol: Some("1.2".into()),
            dropped_samples: 0,
            collectors: health,
            identity_conflict: None,
        });
    }

    /// When `host`'s `collector` last described its resources.
    fn run_ms(&self, host: &str, collector: &str) -> i64 {
        self.runs[&(host.to_owned(), collector.to_owned())].data_ms
    }

    /// A resource described by `host`'s `collector`; returns its index.
    #[expect(
        clippy::too_many_arguments,
        reason = "the fields of one resource as its collector describes it"
    )]
    fn add(
        &mut self,
        host: &str,
        collector: &str,
        id: &str,
        name: &str,
        parent: Option<&str>,
        status: &str,
        attrs: Value,
    ) -> usize {
        let run = self.runs[&(host.to_owned(), collector.to_owned())].clone();
        let (kind, _) = id.split_once(':').unwrap_or((id, ""));
        self.snap.resources.push(ResourceRecord {
            id: id.into(),
            org_id: ORG.into(),
            kind: kind.into(),
            name: name.into(),
            parent: parent.map(str::to_owned),
            status: status.into(),
            attrs: obj(attrs),
            agent_id: run.agent_id,
            collector: collector.into(),
            updated_at_ms: run.data_ms,
            latest: BTreeMap::new(),
            provenance: BTreeMap::new(),
        });
        self.step.push(run.step_ms);
        self.end.push(run.data_ms);
        self.snap.resources.len() - 1
    }

    /// A fresh shape with a random key.
    fn shape(&mut self, level: f64, daily: f64, noise: f64) -> Shape {
        Shape {
            level,
            per_day: 0.0,
            daily,
            peak_hour: self.rng.range(9.0, 17.0),
            wobble: noise / 2.0,
            noise,
            step: None,
            bump: None,
            key: self.rng.next(),
        }
    }

    /// A percentage series of resource `i`: its latest sample, and the history the snapshot
    /// holds of it (see [`super::snapshot`]: per-minute averages of windowed metrics over the
    /// lookback, hourly and recent 5-minute averages of capacity metrics, hourly averages of
    /// baseline metrics), up to when its collector last described it.
    fn pct(&mut self, i: usize, metric: &str, shape: Shape) -> f64 {
        let (now, end, step) = (self.now, self.end[i], self.step[i]);
        let value = shape.sample(end, now);
        let r = &mut self.snap.resources[i];
        r.latest
            .insert(metric.into(), LatestSample { ts_ms: end, value });
        let key = (r.id.clone(), metric.to_owned());
        let capacity = rules::capacity_metric(&r.kind) == Some(metric);
        if super::snapshot::WINDOWED.contains(&metric) {
            let points = self.minutes(end, step, |t| shape.sample(t, now), false);
            self.snap.history.insert(key.clone(), points);
        }
        let hour = now.div_euclid(super::snapshot::HOUR_MS) * super::snapshot::HOUR_MS;
        let week_ago = (now - super::snapshot::TREND_LOOKBACK_MS)
            .div_euclid(super::snapshot::HOUR_MS)
            * super::snapshot::HOUR_MS;
        if capacity {
            let split = hour - super::snapshot::TREND_FINE_HOURS * super::snapshot::HOUR_MS;
            let mut points = buckets(
                &shape,
                now,
                week_ago.max(self.born_ms),
                (split - 1).min(end),
                super::snapshot::HOUR_MS,
                step,
            );
            points.extend(buckets(
                &shape,
                now,
                split.max(self.born_ms),
                end,
                super::snapshot::TREND_STEP_MS,
                step,
            ));
            self.snap.trend_history.insert(key.clone(), points);
        }
        if anomaly::METRICS.contains(&metric) {
            let from = (now - super::snapshot::BASELINE_LOOKBACK_MS)
                .div_euclid(super::snapshot::HOUR_MS)
                * super::snapshot::HOUR_MS;
            let from = from.max(self.born_ms);
            let points = buckets(
                &shape,
                now,
                from,
                (hour - 1).min(end),
                super::snapshot::HOUR_MS,
                step,
            );
            self.snap.baseline_history.insert(key, points);
        }
        value
    }

    /// Per-minute points of a series sampled every `step` up to `end`, over the lookback, as
    /// the snapshot reads windowed metrics: each minute's average, or for counters its highest
    /// value.
    fn minutes(
        &self,
        end: i64,
        step: i64,
        value_at: impl Fn(i64) -> f64,
        counter: bool,
    ) -> Vec<(i64, f64)> {
        let from = (self.now - self.lookback_ms).div_euclid(super::snapshot::MINUTE_MS)
            * super::snapshot::MINUTE_MS;
        let from = from.max(self.born_ms);
        let mut samples = Vec::new();
        let mut t = end;
        while t >= from {
            samples.push((t, value_at(t)));
            t -= step;
        }
        samples.reverse();
        let mut points: Vec<(i64, f64, f64)> = Vec::new();
        for (t, v) in samples {
            let minute = t.div_euclid(super::snapshot::MINUTE_MS) * super::snapshot::MINUTE_MS;
            match points.last_mut() {
                Some((m, acc, n)) if *m == minute => {
                    *acc = if counter { acc.max(v) } else { *acc + v };
                    *n += 1.0;
                }
                _ => points.push((minute, v, 1.0)),
            }
        }
        points
            .into_iter()
            .map(|(m, acc, n)| (m, if counter { acc } else { acc / n }))
            .collect()
    }

    /// A counter of resource `i` (`value_at(t)`), with per-minute history if the snapshot reads
    /// it.
    fn counter(&mut self, i: usize, metric: &str, value_at: impl Fn(i64) -> f64) {
        let (end, step) = (self.end[i], self.step[i]);
        let latest = LatestSample {
            ts_ms: end,
            value: value_at(end),
        };
        if super::snapshot::WINDOWED.contains(&metric) {
            let counter = super::snapshot::COUNTERS.contains(&metric);
            let points = self.minutes(end, step, &value_at, counter);
            let id = self.snap.resources[i].id.clone();
            self.snap.history.insert((id, metric.to_owned()), points);
        }
        self.snap.resources[i].latest.insert(metric.into(), latest);
    }

    /// A value of resource `i` sampled at its latest report.
    fn gauge(&mut self, i: usize, metric: &str, value: f64) {
        self.gauge_at(i, metric, value, self.end[i]);
    }

    /// A value of resource `i` sampled at `ts` (by another agent, or at a slower cadence).
    fn gauge_at(&mut self, i: usize, metric: &str, value: f64, ts: i64) {
        self.snap.resources[i]
            .latest
            .insert(metric.into(), LatestSample { ts_ms: ts, value });
    }

    // ---- Proxmox VE ----

    fn pve(&mut self) {
        for node in PVE_NODES.into_iter().chain([SPARE]) {
            self.agent(node, &["proxmox"]);
        }
        for node in PVE_NODES.into_iter().chain([SPARE]) {
            self.pve_node(node);
        }
        self.shared_storage();
        for vmid in FIRST_VMID..FIRST_VMID + GUESTS {
            self.guest(vmid);
        }
        self.ceph();
    }

    /// The cluster's Ceph, reported by the reporter: three OSDs on each node (their disks are
    /// not modelled). Its values draw nothing from the fleet's randomness, so the rest of the
    /// fleet is the same with or without it.
    fn ceph(&mut self) {
        let warn = self.has(Trouble::CephWarning);
        let (status, health, checks) = if warn {
            ("warning", "HEALTH_WARN", "OSD_DOWN,PG_DEGRADED")
        } else {
            ("healthy", "HEALTH_OK", "")
        };
        let i = self.add(
            "pve1",
            "proxmox",
            &format!("storage:{CLUSTER}/ceph"),
            "ceph",
            None,
            status,
            json!({"plugin": "ceph", "health": health, "health_checks": checks}),
        );
        let shape = Shape {
            level: 46.0,
            per_day: 0.0,
            daily: 0.0,
            peak_hour: 0.0,
            wobble: 0.1,
            noise: 0.2,
            step: None,
            bump: None,
            key: hash("ceph"),
        };
        let total = 5.0 * 3.0 * 3.84e12;
        let pct = self.pct(i, "storage_used_pct", shape);
        self.gauge(i, "storage_total_bytes", total);
        self.gauge(i, "storage_used_bytes", total * pct / 100.0);
        let up = if warn { 14.0 } else { 15.0 };
        for (m, v) in [
            ("ceph_osds_total", 15.0),
            ("ceph_osds_up", up),
            ("ceph_osds_in", 15.0),
        ] {
            self.gauge(i, m, v);
        }
    }

    fn pve_node(&mut self, node: &str) {
        let id = format!("node:{node}");
        let cores = [32, 48, 64][self.rng.below(3) as usize];
        let attrs = json!({
            "cluster": CLUSTER,
            "quorate": true,
            "pve_version": "pve-manager/8.3.2/3e76eec21c4a14a7",
            "kernel": "Linux 6.8.12-5-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-5",
            "cpu_count": cores,
            "cpu_model": "AMD EPYC 7443P 24-Core Processor",
        });
        let i = if node == SPARE && self.has(Trouble::NodeOffline) {
            // Powered off: the reporter describes it offline; its own agent's last samples stay.
            let i = self.add(
                "pve1",
                "proxmox",
                &id,
                node,
                None,
                "offline",
                json!({"cluster": CLUSTER}),
            );
            self.end[i] = self.run_ms(node, "proxmox");
            self.step[i] = interval("proxmox");
            i
        } else {
            self.add(node, "proxmox", &id, node, None, "online", attrs)
        };
        let level = self.rng.range(12.0, 30.0);
        let amplitude = self.rng.range(4.0, 12.0);
        let mut cpu = self.shape(level, amplitude, 3.0);
        // The nightly backups (01:00-01:50) compress and send every guest's disks.
        cpu.bump = Some((60, 50, 15.0));
        if node == "pve4" && self.has(Trouble::NodeCpu) {
            // Saturated all day long (its backups are moved elsewhere).
            cpu = Shape {
                bump: None,
                level: 89.0,
                daily: 1.0,
                noise: 1.0,
                wobble: 0.5,
                ..cpu
            };
        }
        self.pct(i, "cpu_pct", cpu);
        let level = self.rng.range(35.0, 62.0);
        let mem = self.shape(level, 3.0, 1.0);
        let mem_pct = self.pct(i, "mem_used_pct", mem);
        let mem_total = [256.0, 384.0, 512.0][self.rng.below(3) as usize] * GIB;
        self.gauge(i, "mem_total_bytes", mem_total);
        self.gauge(i, "mem_used_bytes", mem_total * mem_pct / 100.0);
        self.gauge(i, "swap_total_bytes", 8.0 * GIB);
        let v = self.rng.range(0.0, 0.3) * GIB;
        self.gauge(i, "swap_used_bytes", v);
        let v = self.rng.range(8.0, 30.0);
        self.gauge(i, "rootfs_used_pct", v);
        for (m, f) in [("load1", 1.0), ("load5", 0.9), ("load15", 0.8)] {
            let load = f64::from(cores) * self.rng.range(0.1, 0.3) * f;
            self.gauge(i, m, load);
        }
        let v = self.rng.range(10.0, 90.0) * 86_400.0;
        self.gauge(i, "uptime_seconds", v);
        // A healthy fleet is up to date: pending updates are a finding (info). The draw keeps
        // the rest of the fleet as it was.
        let _ = self.rng.below(25);
        let updates = if node == "pve2" && self.has(Trouble::UpdatesPending) {
            14.0
        } else {
            0.0
        };
        self.gauge(i, "updates_pending", updates);
        // Failed tasks: the failed backups of its guests (their own findings), and migrations.
        let mut failed = match node {
            "pve1" if self.has(Trouble::BackupFailed) => 1.0,
            "pve3" if self.has(Trouble::BackupStorm) => 6.0,
            _ => 0.0,
        };
        if node == "pve4" && self.has(Trouble::TasksFailed) {
            failed += 3.0;
        }
        self.gauge(i, "tasks_failed_24h", failed);
        // Certificates: read hourly, the time left sent every run from the last reading.
        let read = self.run_ms(node, "proxmox");
        let acme_left = if node == "pve2" && self.has(Trouble::CertExpiring) {
            10.0 * 86_400.0
        } else {
            self.rng.range(31.0, 89.0) * 86_400.0
        };
        for (file, left) in [
            ("pve-root-ca.pem", self.rng.range(2500.0, 3300.0) * 86_400.0),
            ("pve-ssl.pem", self.rng.range(200.0, 700.0) * 86_400.0),
            ("pveproxy-ssl.pem", acme_left),
        ] {
            self.gauge_at(
                i,
                &format!("cert_expires_in_seconds{{file=\"{file}\"}}"),
                left,
                read,
            );
        }

        // Node-local storage.
        for (storage, plugin, content, total) in [
            ("local", "dir", "iso,vztmpl,snippets", 94.0 * GIB),
            ("local-lvm", "lvmthin", "images,rootdir", 3.5 * TIB),
        ] {
            let sid = format!("storage:{node}/{storage}");
            let j = self.add(
                node,
                "proxmox",
                &sid,
                storage,
                Some(&id),
                "available",
                json!({"plugin": plugin, "content": content, "shared": false}),
            );
            let level = self.rng.range(15.0, 58.0);
            let mut s = self.shape(0.0, 0.0, 0.0).flat(level, 0.3);
            // Slow, steady growth: years to full.
            s.per_day = self.rng.range(0.0, 0.2);
            if storage == "local-lvm" {
                if node == "pve2" && self.has(Trouble::StorageWarning) {
                    s = s.flat(84.0, 0.3);
                }
                if node == "pve3" && self.has(Trouble::StorageFilling) {
                    s = Shape {
                        per_day: FILL_PER_DAY,
                        ..s.flat(FILL_NOW, 0.2)
                    };
                    s.wobble = 0.1;
                }
            }
            let pct = self.pct(j, "storage_used_pct", s);
            self.gauge(j, "storage_total_bytes", total);
            self.gauge(j, "storage_used_bytes", total * pct / 100.0);
        }

        // Disks: two SATA SSDs (rpool), one NVMe (local-lvm), two hard disks (tank).
        let disks = [
            (
                "/dev/sda",
                "ssd",
                "SAMSUNG MZ7L3480HCHQ-00A07",
                "S6KMNE0W",
                "ZFS",
            ),
            (
                "/dev/sdb",
                "ssd",
                "SAMSUNG MZ7L3480HCHQ-00A07",
                "S6KMNE0X",
                "ZFS",
            ),
            (
                "/dev/nvme0n1",
                "nvme",
                "Samsung SSD 980 PRO 2TB",
                "S69ENF0R",
                "LVM",
            ),
            ("/dev/sdc", "hdd", "ST8000VN004-3CP101", "WWZ4", "ZFS"),
            ("/dev/sdd", "hdd", "ST8000VN004-3CP101", "WWZ5", "ZFS"),
        ];
        let smart_read = read - self.rng.below(5 * 60_000) as i64;
        for (k, (dev, kind, model, prefix, used)) in disks.into_iter().enumerate() {
            let serial = format!("{prefix}{:06}", hash(&format!("{node}{dev}")) % 1_000_000);
            let did = format!("disk:{node}/{serial}");
            let failing = node == "pve2" && dev == "/dev/sdd" && self.has(Trouble::SmartFailing);
            let health = if failing { "FAILED" } else { "PASSED" };
            let j = self.add(
                node,
                "proxmox",
                &did,
                dev,
                Some(&id),
                if failing { "failing" } else { "healthy" },
                json!({
                    "devpath": dev,
                    "model": model,
                    "serial": serial,
                    "type": kind,
                    "health": health,
                    "used_by": used,
                }),
            );
            let size = match kind {
                "ssd" => 480.0 * 1e9,
                "nvme" => 2000.0 * 1e9,
                _ => 8000.0 * 1e9,
            };
            self.gauge(j, "disk_size_bytes", size);
            if kind != "hdd" {
                let mut left = self.rng.range(70.0, 99.0).round();
                if node == "pve1" && k == 0 && self.has(Trouble::SsdWornOut) {
                    left = 12.0;
                }
                self.gauge(j, "disk_wearout_pct", left);
            }
            let mut temp = match kind {
                "nvme" => self.rng.range(38.0, 56.0),
                "ssd" => self.rng.range(27.0, 38.0),
                _ => self.rng.range(31.0, 43.0),
            }
            .round();
            if node == "pve3" && dev == "/dev/sdc" && self.has(Trouble::HddHot) {
                temp = 58.0;
            }
            if node == "pve4" && kind == "nvme" && self.has(Trouble::NvmeHot) {
                temp = 82.0;
            }
            self.gauge_at(j, "disk_temp_celsius", temp, smart_read);
        }

        // ZFS pools.
        for (pool, size) in [("rpool", 446.0 * GIB), ("tank", 14.5 * TIB)] {
            let pid = format!("storage:{node}/zfs:{pool}");
            let mut attrs = json!({"plugin": "zfs", "pool": pool, "health": "ONLINE"});
            let degraded = node == "pve1" && pool == "tank" && self.has(Trouble::ZfsDegraded);
            if degraded {
                // What the collector adds for a pool that is not ONLINE (`zpool status`).
                let disk = format!("WWZ5{:06}", hash(&format!("{node}/dev/sdd")) % 1_000_000);
                attrs = json!({
                    "plugin": "zfs",
                    "pool": pool,
                    "health": "DEGRADED",
                    "zpool_status": "One or more devices are faulted in response to persistent \
                                     errors. Sufficient replicas exist for the pool to continue \
                                     functioning in a degraded state.",
                    "zpool_action": "Replace the faulted device, or use 'zpool clear' to mark \
                                     the device repaired.",
                    "zpool_scan": "scrub repaired 0B in 09:41:07 with 0 errors on Sun Jan 10 \
                                   10:05:08 2027",
                    "zpool_errors": "No known data errors",
                    "zpool_bad_devices": format!(
                        "ata-ST8000VN004-3CP101_{disk} (FAULTED, too many errors)"
                    ),
                });
            }
            let j = self.add(
                node,
                "proxmox",
                &pid,
                pool,
                Some(&id),
                if degraded { "degraded" } else { "online" },
                attrs,
            );
            let level = self.rng.range(8.0, 55.0);
            let mut s = self.shape(0.0, 0.0, 0.0).flat(level, 0.2);
            s.per_day = self.rng.range(0.0, 0.1);
            if node == "pve3" && pool == "tank" && self.has(Trouble::ZfsPoolFull) {
                s = s.flat(93.0, 0.2);
            }
            let pct = self.pct(j, "storage_used_pct", s);
            self.gauge(j, "storage_total_bytes", size);
            self.gauge(j, "storage_used_bytes", size * pct / 100.0);
            self.gauge(j, "storage_free_bytes", size * (100.0 - pct) / 100.0);
            let v = self.rng.range(1.0, 25.0).round();
            self.gauge(j, "zfs_frag_pct", v);
            self.gauge(j, "zfs_dedup_ratio", 1.0);
            if pool == "tank" {
                // The PVE storage `tank` (type zfspool) holds the guests' disks on the pool: PVE
                // counts its datasets' used against used + available, a little above the pool.
                let k = self.add(
                    node,
                    "proxmox",
                    &format!("storage:{node}/tank"),
                    "tank",
                    Some(&id),
                    "available",
                    json!({"plugin": "zfspool", "content": "images,rootdir", "shared": false}),
                );
                let view = Shape {
                    level: s.level + 0.3,
                    ..s
                };
                let pct = self.pct(k, "storage_used_pct", view);
                self.gauge(k, "storage_total_bytes", size * 0.97);
                self.gauge(k, "storage_used_bytes", size * 0.97 * pct / 100.0);
            }
        }
    }

    /// Shared storage, reported by the reporter (pve1, the lowest online node).
    fn shared_storage(&mut self) {
        for (storage, plugin, content, total) in [
            ("pbs", "pbs", "backup", 16.0 * TIB),
            ("pbs-archive", "pbs", "backup", 24.0 * TIB),
            ("nfs-backup", "nfs", "backup,iso", 8.0 * TIB),
        ] {
            let sid = format!("storage:{CLUSTER}/{storage}");
            let j = self.add(
                "pve1",
                "proxmox",
                &sid,
                storage,
                None,
                "available",
                json!({"plugin": plugin, "content": content, "shared": true}),
            );
            let level = self.rng.range(25.0, 55.0);
            let mut s = self.shape(level, 0.5, 0.2);
            s.wobble = 0.3;
            if storage == "pbs-archive" && self.has(Trouble::BackupTargetFull) {
                s = s.flat(93.0, 0.2);
            }
            let pct = self.pct(j, "storage_used_pct", s);
            self.gauge(j, "storage_total_bytes", total);
            self.gauge(j, "storage_used_bytes", total * pct / 100.0);
        }
    }

    fn guest(&mut self, vmid: u32) {
        if vmid == NEW_GUEST {
            self.born_ms = self.now - 3 * HOUR - 7 * MIN;
        }
        self.guest_of(vmid);
        self.born_ms = i64::MIN;
    }

    fn guest_of(&mut self, vmid: u32) {
        let node = guest_node(vmid);
        let kind = guest_kind(vmid);
        let lxc = kind == "lxc";
        let id = guest_id(vmid);
        let template = TEMPLATES.contains(&vmid);
        let running = !template && !STOPPED.contains(&vmid);
        let cpus = [1, 2, 4, 8][self.rng.below(4) as usize];
        let mut attrs = json!({
            "vmid": vmid,
            "node": node,
            "template": template,
            "cpus": cpus,
            "lock": null,
        });
        if running && vmid.is_multiple_of(7) {
            attrs["ha_state"] = json!("started");
        }
        // Guests are the reporter's.
        let i = self.add(
            "pve1",
            "proxmox",
            &id,
            &guest_name(vmid),
            Some(&format!("node:{node}")),
            if running { "running" } else { "stopped" },
            attrs,
        );
        let mem_total = [1.0, 2.0, 4.0, 8.0, 16.0][self.rng.below(5) as usize] * GIB;
        let disk_total = if lxc { 8.0 * GIB } else { 64.0 * GIB };
        self.gauge(i, "mem_total_bytes", mem_total);
        self.gauge(i, "disk_total_bytes", disk_total);
        // Balloon statistics, guest filesystems and failed backups come from the agent of the
        // guest's node.
        let node_read = self.run_ms(node, "proxmox");
        if running {
            let level = self.rng.range(2.0, 25.0);
            let amplitude = self.rng.range(1.0, 8.0);
            let mut cpu = self.shape(level, amplitude, 2.0);
            if matches!(vmid % 12, 6 | 10) {
                // CI runners and build machines: busy in working hours, idle at night.
                cpu.level = 40.0;
                cpu.daily = 30.0;
                cpu.peak_hour = 14.0;
                cpu.noise = 4.0;
            }
            if vmid == 104 {
                cpu = Shape {
                    level: 8.0,
                    daily: 2.0,
                    noise: 1.5,
                    wobble: 1.0,
                    ..cpu
                };
                if self.has(Trouble::CpuAnomaly) {
                    cpu.step = Some((self.now - 40 * MIN, 72.0));
                }
            }
            self.pct(i, "cpu_pct", cpu);
            let level = self.rng.range(25.0, 70.0);
            let mut mem = self.shape(level, 2.0, 1.0);
            if vmid == 100 && self.has(Trouble::GuestMemory) {
                mem = Shape {
                    level: 83.0,
                    daily: 0.5,
                    noise: 0.5,
                    wobble: 0.3,
                    ..mem
                };
            }
            let mem_pct = self.pct(i, "mem_used_pct", mem);
            self.gauge(i, "mem_used_bytes", mem_total * mem_pct / 100.0);
            let v = self.rng.range(1.0, 60.0) * 86_400.0;
            self.gauge(
                i,
                "uptime_seconds",
                v.min(self.now.saturating_sub(self.born_ms) as f64 / 1000.0),
            );
            if lxc {
                let mut pct = self.rng.range(12.0, 68.0);
                if vmid == 101 && self.has(Trouble::ContainerDiskFull) {
                    pct = 93.5;
                }
                self.gauge(i, "disk_used_pct", pct);
                self.gauge(i, "disk_used_bytes", disk_total * pct / 100.0);
            } else {
                self.gauge_at(i, "guest_mem_total_bytes", mem_total - 0.2 * GIB, node_read);
                self.gauge_at(
                    i,
                    "guest_mem_used_bytes",
                    mem_total * mem_pct / 110.0,
                    node_read,
                );
                // Filesystems through the guest agent (most VMs have it), every 5 minutes.
                if !vmid.is_multiple_of(3) || vmid == 102 {
                    let fs_read = node_read - self.rng.below(5 * 60_000) as i64;
                    let root = self.rng.range(15.0, 65.0);
                    let mut mounts = vec![("/", root, 40.0), ("/boot/efi", 5.8, 0.5)];
                    if vmid % 4 == 2 {
                        let mut var = self.rng.range(10.0, 62.0);
                        if vmid == 102 && self.has(Trouble::VmFilesystemFull) {
                            var = 87.0;
                        }
                        mounts.push(("/var", var, 20.0));
                    }
                    for (mount, pct, total_gib) in mounts {
                        let total = total_gib * GIB;
                        let used = total * pct / 100.0;
                        let m = |name: &str| format!("{name}{{mountpoint=\"{mount}\"}}");
                        self.gauge_at(i, &m("guest_fs_used_bytes"), used, fs_read);
                        self.gauge_at(i, &m("guest_fs_total_bytes"), total, fs_read);
                        self.gauge_at(i, &m("guest_fs_used_pct"), used / total * 100.0, fs_read);
                    }
                }
            }
        }
        if vmid == NEW_GUEST {
            self.gauge_at(i, "backup_failed_24h", 0.0, node_read);
        } else if !template {
            self.backups(i, vmid, node_read);
        }
        if running && vmid.is_multiple_of(10) {
            self.replication(i, vmid, node);
        }
    }

    /// The backup metrics of a guest: age and count of its newest backup on its storage (read
    /// by the reporter), failed backups in 24 h (read by the agent of its node).
    fn backups(&mut self, i: usize, vmid: u32, node_read: i64) {
        let storage = backup_storage(vmid);
        let mut read = self.snap.resources[i].updated_at_ms;
        if vmid == 103 && self.has(Trouble::BackupFrozen) {
            // Its backup group was pruned three hours ago: the collector no longer sends its
            // age, whose last sample stays.
            read -= 3 * HOUR;
        }
        let minute = match storage {
            "pbs" => backup_minute(vmid),
            // The archive job runs at 03:30, the NFS one at 04:00.
            "pbs-archive" => 210,
            _ => 240,
        };
        // A backup takes a few minutes; its age counts from its start.
        let mut newest = last_daily(read - 15 * MIN, minute);
        let mut failed = 0.0;
        let storm = self.has(Trouble::BackupStorm) && STORM_GUESTS.contains(&vmid);
        if storm || (vmid == 108 && self.has(Trouble::BackupFailed)) {
            // The latest run (which failed fast) is last night's: the newest backup is the
            // night before, under 48 hours ago.
            newest = last_daily(read, minute) - DAY;
            failed = 1.0;
        }
        if ARCHIVE_GUESTS.contains(&vmid) && self.has(Trouble::BackupTargetFull) {
            // Failing every night since the target filled up.
            newest = read - 3 * DAY - 12 * HOUR;
            failed = 1.0;
        }
        let mut age = (read - newest) as f64 / 1000.0;
        if vmid == 105 && self.has(Trouble::BackupOld) {
            // Its backup job was deleted: nothing fails, nothing runs.
            age = 3.2 * 86_400.0;
        }
        self.gauge_at(
            i,
            &format!("backup_last_age_seconds{{storage=\"{storage}\"}}"),
            age,
            read,
        );
        let count = 7.0 + f64::from(vmid % 5);
        self.gauge_at(
            i,
            &format!("backup_count{{storage=\"{storage}\"}}"),
            count,
            read,
        );
        self.gauge_at(i, "backup_failed_24h", failed, node_read);
    }

    /// Replication job `<vmid>-0` of a running guest to the next node, every 15 minutes.
    fn replication(&mut self, i: usize, vmid: u32, node: &str) {
        let k = PVE_NODES.iter().position(|n| *n == node).unwrap_or(0);
        let target = PVE_NODES[(k + 1) % PVE_NODES.len()];
        let job = format!("{vmid}-0");
        let read = self.run_ms(node, "proxmox");
        let mut last_sync = read.div_euclid(15 * MIN) * 15 * MIN + 4 * SEC;
        if last_sync > read {
            last_sync -= 15 * MIN;
        }
        let failing = vmid == 120 && self.has(Trouble::ReplicationFailing);
        let fail_count: i64 = if failing {
            last_sync -= 90 * MIN;
            4
        } else {
            0
        };
        let duration = self.rng.range(1.5, 9.0);
        let label = |m: &str| format!("{m}{{job=\"{job}\"}}");
        self.gauge_at(i, &label("replication_fail_count"), fail_count as f64, read);
        self.gauge_at(
            i,
            &label("replication_last_sync_age_seconds"),
            ((read - last_sync) / 1000) as f64,
            read,
        );
        self.gauge_at(
            i,
            &label("replication_last_duration_seconds"),
            duration,
            read,
        );
        let mut attrs = json!({
            "guest": vmid,
            "source": node,
            "target": target,
            "schedule": "*/15",
            "fail_count": fail_count,
            "last_sync": last_sync / 1000,
            "next_sync": (last_sync + 15 * MIN) / 1000,
        });
        if failing {
            attrs["error"] = json!(format!(
                "command '/usr/bin/ssh -e none -o 'BatchMode=yes' -o 'HostKeyAlias={target}' \
                 root@10.10.0.{} -- pvesr prepare-local-job {job} local-lvm:vm-{vmid}-disk-0 \
                 --last_sync {}' failed: exit code 255",
                (k + 1) % PVE_NODES.len() + 11,
                last_sync / 1000
            ));
        }
        self.add(
            node,
            "proxmox",
            &format!("replication:{CLUSTER}/{job}"),
            &job,
            Some(&guest_id(vmid)),
            if failing { "failing" } else { "ok" },
            attrs,
        );
    }

    // ---- Proxmox Backup Server ----

    fn pbs(&mut self) {
        self.agent(PBS, &["host", "pbs"]);
        let host = self.host_node(PBS, 16.0, 8.0);
        let read = self.run_ms(PBS, "pbs");
        for (store, total) in [
            ("store1", 16.0 * TIB),
            ("archive", 24.0 * TIB),
            ("fast", 4.0 * TIB),
        ] {
            let id = format!("pbs-datastore:{PBS}/{store}");
            // Jobs: (label, minute of day it runs daily, or hourly when None).
            let mut jobs = vec![
                ("gc".to_owned(), Some(150)),
                (format!("prune/p-{store}"), Some(120)),
                (format!("verify/v-{store}"), Some(300)),
            ];
            if store == "store1" {
                jobs.push(("sync/s-offsite".to_owned(), None));
            }
            let mut attrs = json!({"backend": "filesystem", "maintenance": null});
            let mut ok = Vec::new();
            for (job, minute) in &jobs {
                let failed = match (store, job.as_str()) {
                    ("fast", "gc") => self.has(Trouble::PbsGcFailed),
                    ("fast", "verify/v-fast") => self.has(Trouble::PbsVerifyFailed),
                    ("store1", "sync/s-offsite") => self.has(Trouble::PbsSyncFailed),
                    _ => false,
                };
                let state = match (failed, job.split('/').next().unwrap_or_default()) {
                    (false, _) => "OK".to_owned(),
                    (true, "gc") => "TASK ERROR: unable to read chunk directory \
                                     \"/mnt/datastore/fast/.chunks/3a4f\" - EIO: I/O error"
                        .to_owned(),
                    (true, "verify") => "TASK ERROR: verification failed - please check the \
                                         log for details (2 snapshots with corrupt chunks)"
                        .to_owned(),
                    (true, _) => "TASK ERROR: error trying to connect to remote 'offsite': \
                                  connection refused"
                        .to_owned(),
                };
                attrs[format!("{job}_last_state")] = json!(state);
                let ended = match minute {
                    Some(m) => last_daily(read, *m) + 20 * MIN,
                    None => read.div_euclid(HOUR) * HOUR - HOUR + 7 * MIN,
                };
                let ended = if ended > read { ended - DAY } else { ended };
                ok.push((job.clone(), !failed, (read - ended) / 1000));
            }
            let j = self.add(PBS, "pbs", &id, store, None, "available", attrs);
            let level = self.rng.range(30.0, 58.0);
            let mut s = self.shape(level, 0.8, 0.2);
            s.peak_hour = 4.0;
            s.wobble = 0.3;
            if store == "archive" && self.has(Trouble::BackupTargetFull) {
                s = s.flat(93.0, 0.2);
            }
            let pct = self.pct(j, "datastore_used_pct", s);
            self.gauge(j, "datastore_total_bytes", total);
            self.gauge(j, "datastore_used_bytes", total * pct / 100.0);
            // The host collector sees the datastore's filesystem where PBS mounts it.
            let m = |name: &str| format!("{name}{{mount=\"/mnt/datastore/{store}\"}}");
            self.gauge(host, &m("fs_total_bytes"), total);
            self.gauge(host, &m("fs_used_bytes"), total * pct / 100.0);
            self.gauge(host, &m("fs_used_pct"), pct);
            let v = self.rng.range(6.0, 22.0);
            self.gauge(j, "datastore_dedup_factor", v);
            let v = self.rng.range(400.0, 2000.0);
            self.gauge(j, "datastore_days_to_full", v);
            let failed_tasks = ok.iter().filter(|(_, good, _)| !good).count();
            for (job, good, age_s) in ok {
                self.gauge(
                    j,
                    &format!("job_last_ok{{job=\"{job}\"}}"),
                    f64::from(u8::from(good)),
                );
                self.gauge(
                    j,
                    &format!("job_last_run_age_seconds{{job=\"{job}\"}}"),
                    age_s as f64,
                );
            }
            self.gauge(j, "tasks_failed_24h", failed_tasks as f64);
            let groups = self.backup_groups(store, &id, read);
            self.gauge(j, "snapshots_total", (groups * 9) as f64);
            self.gauge(j, "snapshots_verify_failed", 0.0);
            self.gauge(j, "snapshots_unverified", groups as f64);
        }
        self.snap.resources[host].attrs["filesystems"] = json!(5);
        if self.has(Trouble::PbsEstimateFull) {
            self.vault();
        }
    }

    /// The datastore `vault` of [`Trouble::PbsEstimateFull`]: reported for 4 hours, without
    /// jobs or backups of this fleet's guests yet. Draws nothing from the fleet's randomness.
    fn vault(&mut self) {
        self.born_ms = self.now - 4 * HOUR;
        let id = format!("pbs-datastore:{PBS}/vault");
        let j = self.add(
            PBS,
            "pbs",
            &id,
            "vault",
            None,
            "available",
            json!({"backend": "filesystem", "maintenance": null}),
        );
        let shape = Shape {
            level: 64.0,
            per_day: 0.0,
            daily: 0.0,
            peak_hour: 0.0,
            wobble: 0.1,
            noise: 0.2,
            step: None,
            bump: None,
            key: hash("vault"),
        };
        let total = 8.0 * TIB;
        let pct = self.pct(j, "datastore_used_pct", shape);
        self.gauge(j, "datastore_total_bytes", total);
        self.gauge(j, "datastore_used_bytes", total * pct / 100.0);
        self.gauge(j, "datastore_days_to_full", 5.5);
        self.gauge(j, "tasks_failed_24h", 0.0);
        self.born_ms = i64::MIN;
    }

    /// The backup groups of one datastore; returns how many.
    fn backup_groups(&mut self, store: &str, ds: &str, read: i64) -> usize {
        let mut groups: Vec<(String, String, f64)> = Vec::new();
        let guests =
            (FIRST_VMID..FIRST_VMID + GUESTS).filter(|v| !TEMPLATES.contains(v) && *v != NEW_GUEST);
        for vmid in guests {
            let target = match backup_storage(vmid) {
                "pbs" => "store1",
                "pbs-archive" => "archive",
                _ => continue,
            };
            if target != store || (vmid == 103 && self.has(Trouble::BackupFrozen)) {
                continue;
            }
            let dir = if guest_kind(vmid) == "lxc" {
                "ct"
            } else {
                "vm"
            };
            let minute = if target == "archive" {
                210
            } else {
                backup_minute(vmid)
            };
            let mut newest = last_daily(read - 15 * MIN, minute);
            if self.has(Trouble::BackupTargetFull) && target == "archive" {
                newest = read - 3 * DAY - 12 * HOUR;
            }
            groups.push((
                dir.into(),
                vmid.to_string(),
                (read - newest) as f64 / 1000.0,
            ));
        }
        if store == "fast" {
            for host in DOCKER_HOSTS {
                let newest = last_daily(read, 30);
                groups.push(("host".into(), host.into(), (read - newest) as f64 / 1000.0));
            }
        }
        for (dir, backup_id, age) in &groups {
            let j = self.add(
                PBS,
                "pbs",
                &format!("backup:{PBS}/{store}/{dir}/{backup_id}"),
                &format!("{dir}/{backup_id}"),
                Some(ds),
                "verified",
                json!({
                    "backup_type": dir,
                    "backup_id": backup_id,
                    "guest_kind": match dir.as_str() { "vm" => json!("vm"), "ct" => json!("lxc"), _ => Value::Null },
                    "comment": null,
                    "last_verification": "ok",
                }),
            );
            self.gauge(j, "backup_last_age_seconds", *age);
            self.gauge(j, "backup_count", 9.0);
            let v = self.rng.range(2.0, 60.0) * GIB;
            self.gauge(j, "backup_size_bytes", v);
        }
        groups.len()
    }

    /// A machine's own node as the host collector reports it.
    fn host_node(&mut self, host: &str, cpu_level: f64, mem_level: f64) -> usize {
        let id = format!("node:{host}");
        let cpus = [4, 8, 16][self.rng.below(3) as usize];
        let i = self.add(
            host,
            "host",
            &id,
            host,
            None,
            "online",
            json!({
                "os": "Debian GNU/Linux 12 (bookworm)",
                "kernel": "6.1.0-28-amd64",
                "cpu_count": cpus,
                "filesystems": 2,
            }),
        );
        let level = cpu_level + self.rng.range(0.0, 10.0);
        let amplitude = self.rng.range(3.0, 9.0);
        let mut cpu = self.shape(level, amplitude, 3.0);
        if host == PBS {
            // The verify job hashes every new chunk each night at 03:00 for about 25 minutes.
            // Baselines are hourly averages, which show only a share of such a job: the
            // control fleet is checked at 03:15, while it runs.
            cpu.bump = Some((180, 25, 45.0));
        }
        self.pct(i, "cpu_pct", cpu);
        let level = mem_level + self.rng.range(20.0, 40.0);
        let mut mem = self.shape(level, 3.0, 1.0);
        if host == "dock2" && self.has(Trouble::MemoryPressure) {
            mem = Shape {
                level: 94.0,
                daily: 0.8,
                noise: 0.6,
                wobble: 0.4,
                ..mem
            };
        }
        let mem_pct = self.pct(i, "mem_used_pct", mem);
        let total = 64.0 * GIB;
        self.gauge(i, "mem_total_bytes", total);
        self.gauge(i, "mem_used_bytes", total * mem_pct / 100.0);
        self.gauge(i, "swap_total_bytes", 4.0 * GIB);
        self.gauge(i, "swap_used_bytes", 0.1 * GIB);
        for m in ["load1", "load5", "load15"] {
            let load = f64::from(cpus) * self.rng.range(0.05, 0.4);
            self.gauge(i, m, load);
        }
        let v = self.rng.range(5.0, 200.0) * 86_400.0;
        self.gauge(i, "uptime_seconds", v);
        for (mount, total_gib) in [("/", 120.0), ("/boot/efi", 0.5)] {
            let mut pct = self.rng.range(6.0, 55.0);
            if host == PBS && mount == "/" && self.has(Trouble::HostFsFull) {
                // Years of task logs under /var/log/proxmox-backup.
                pct = 91.0;
            }
            let total = total_gib * GIB;
            let m = |name: &str| format!("{name}{{mount=\"{mount}\"}}");
            self.gauge(i, &m("fs_total_bytes"), total);
            self.gauge(i, &m("fs_used_bytes"), total * pct / 100.0);
            self.gauge(i, &m("fs_used_pct"), pct);
        }
        self.gauge(i, "disk_read_bytes_per_s{device=\"nvme0n1\"}", 2.0e6);
        self.gauge(i, "disk_write_bytes_per_s{device=\"nvme0n1\"}", 5.0e6);
        self.gauge(i, "net_rx_bytes_per_s{iface=\"eth0\"}", 3.0e5);
        self.gauge(i, "net_tx_bytes_per_s{iface=\"eth0\"}", 2.0e5);
        let temp = self.rng.range(38.0, 55.0).round();
        self.gauge(i, "temp_celsius{sensor=\"k10temp Tctl\"}", temp);
        i
    }

    // ---- Docker ----

    fn docker_host(&mut self, host: &str) {
        self.agent(host, &["host", "docker"]);
        self.host_node(host, 10.0, 25.0);
        let node = format!("node:{host}");
        let containers = [
            ("traefik", "traefik:v3.2"),
            ("web", "registry.example.com/shop/web:5.12.0"),
            ("api", "registry.example.com/shop/api:2.4.0"),
            ("worker", "registry.example.com/shop/worker:2.4.0"),
            ("cache", "redis:7.4-alpine"),
            ("postgres", "postgres:16.6"),
            ("grafana", "grafana/grafana:11.4.0"),
            ("prometheus", "prom/prometheus:v3.0.1"),
            ("node-exporter", "prom/node-exporter:v1.8.2"),
            ("watchtower", "containrrr/watchtower:1.7.1"),
            // A one-shot migration that exited successfully three days ago.
            ("db-migrate", "registry.example.com/shop/migrate:2.4.0"),
        ];
        let now = self.now;
        let (mut running, mut stopped) = (0, 0);
        for (name, image) in containers {
            let id = format!("docker:{host}/{name}");
            let restarts = self.rng.below(3) as f64;
            let restarting = match (host, name) {
                ("dock1", "api") if self.has(Trouble::ContainerRestarts) => 5,
                ("dock2", "cache") if self.has(Trouble::MemoryPressure) => 4,
                ("dock2", "worker") if self.has(Trouble::MemoryPressure) => 1,
                _ => 0,
            };
            let oom = host == "dock2" && name == "worker" && self.has(Trouble::MemoryPressure);
            let healthcheck = matches!(name, "web" | "api" | "postgres" | "traefik");
            let health =
                if host == "dock1" && name == "web" && self.has(Trouble::ContainerUnhealthy) {
                    json!("unhealthy")
                } else if healthcheck {
                    json!("healthy")
                } else {
                    Value::Null
                };
            let limit = [0.5, 1.0, 2.0, 4.0][self.rng.below(4) as usize] * GIB;
            let started = now - self.rng.range(2.0, 30.0) as i64 * DAY;
            // The restarts of the last hour, evenly spread and the last a few minutes ago.
            let times: Vec<i64> = (0..restarting)
                .map(|n| now - 3 * MIN - i64::from(n) * 11 * MIN)
                .collect();
            let total = restarts + f64::from(restarting);
            let exited = name == "db-migrate";
            let finished = exited.then(|| crate::rfc3339_ms(now - 3 * DAY)).flatten();
            let i = self.add(
                host,
                "docker",
                &id,
                name,
                Some(&node),
                if exited { "exited" } else { "running" },
                json!({
                    "container_id": format!("{:012x}", hash(&id) & 0xFFFF_FFFF_FFFF),
                    "image": image,
                    "image_id": format!("sha256:{:016x}", hash(image)),
                    "health": health,
                    "restart_count": total,
                    "exit_code": if restarting > 0 { json!(137) } else { json!(0) },
                    "oom_killed": oom,
                    "started_at": crate::rfc3339_ms(times.first().copied().unwrap_or(started)),
                    "finished_at": finished,
                    "mem_limit_bytes": limit,
                }),
            );
            self.counter(i, "restart_count", |t| {
                restarts + times.iter().filter(|&&r| r <= t).count() as f64
            });
            if exited {
                stopped += 1;
                continue;
            }
            running += 1;
            let level = self.rng.range(0.5, 18.0);
            let amplitude = self.rng.range(0.5, 6.0);
            let cpu = self.shape(level, amplitude, 1.5);
            self.pct(i, "cpu_pct", cpu);
            let level = self.rng.range(15.0, 65.0);
            let mem = self.shape(level, 1.5, 1.0);
            let pct = self.pct(i, "mem_used_pct", mem);
            self.gauge(i, "mem_limit_bytes", limit);
            self.gauge(i, "mem_used_bytes", limit * pct / 100.0);
        }
        let engine = self.add(
            host,
            "docker",
            &format!("docker-host:{host}"),
            host,
            Some(&node),
            "online",
            json!({
                "socket": "/var/run/docker.sock",
                "server_version": "27.4.1",
                "api_version": "1.47",
                "containers_total": running + stopped,
                "containers_running": running,
                "containers_paused": 0,
                "containers_stopped": stopped,
            }),
        );
        for (m, v) in [
            ("containers_total", running + stopped),
            ("containers_running", running),
            ("containers_paused", 0),
            ("containers_stopped", stopped),
        ] {
            self.gauge(engine, m, f64::from(v));
        }
    }

    // ---- Kubernetes ----

    fn kubernetes(&mut self) {
        self.agent(K8S_AGENT, &["kubernetes"]);
        let now = self.now;
        let cluster = format!("k8s-cluster:{K8S}");
        let mut pods = 0;
        let mut phases: BTreeMap<&str, u32> = BTreeMap::new();
        let mut ready_nodes = 0;

        let nodes: Vec<&str> = std::iter::once("cp-1").chain(K8S_WORKERS).collect();
        for &n in &nodes {
            let not_ready = n == "worker-4" && self.has(Trouble::K8sNodeNotReady);
            let disk_pressure = n == "worker-3" && self.has(Trouble::K8sNodePressure);
            ready_nodes += u32::from(!not_ready);
            let mut attrs = json!({
                "ready": !not_ready,
                "unschedulable": false,
                "kubelet_version": "v1.31.4",
                "memory_pressure": false,
                "disk_pressure": disk_pressure,
                "pid_pressure": false,
                "network_unavailable": false,
            });
            if disk_pressure {
                attrs["last_warning"] = json!(
                    "FreeDiskSpaceFailed: Failed to garbage collect required amount of images. \
                     Attempted to free 9663676416 bytes, but only found 0 bytes eligible to free."
                );
                attrs["last_warning_ms"] = json!(now - 3 * MIN);
            }
            if not_ready {
                attrs["last_warning"] =
                    json!("NodeNotReady: Node worker-4 status is now: NodeNotReady");
                attrs["last_warning_ms"] = json!(now - 4 * MIN);
            }
            let i = self.add(
                K8S_AGENT,
                "kubernetes",
                &format!("k8s-node:{K8S}/{n}"),
                n,
                Some(&cluster),
                if not_ready { "NotReady" } else { "Ready" },
                attrs,
            );
            self.gauge(i, "ready", f64::from(u8::from(!not_ready)));
            if disk_pressure {
                self.gauge(i, "warning_events_1h", 6.0);
            }
        }

        // (namespace, kind, name, replicas); daemonsets run one pod per node.
        let workloads: [(&str, &str, &str, usize); 12] = [
            ("kube-system", "deployment", "coredns", 2),
            ("kube-system", "daemonset", "kube-proxy", 5),
            ("monitoring", "daemonset", "node-exporter", 5),
            ("monitoring", "statefulset", "prometheus", 1),
            ("monitoring", "deployment", "grafana", 1),
            ("shop", "deployment", "web", 3),
            ("shop", "deployment", "checkout", 3),
            ("shop", "deployment", "api", 3),
            ("shop", "deployment", "cart", 2),
            ("shop", "deployment", "search", 2),
            ("shop", "statefulset", "db", 2),
            ("shop", "statefulset", "cache", 3),
        ];
        for (ns, kind, name, replicas) in workloads {
            let wid = format!("k8s-workload:{K8S}/{ns}/{kind}/{name}");
            let mut available = replicas;
            let mut updated = replicas;
            if name == "checkout" && self.has(Trouble::PodCrashLoop) {
                available -= 1;
            }
            if name == "search" && self.has(Trouble::PodOomKilled) {
                available -= 1;
            }
            if name == "db" && self.has(Trouble::ReplicasUnavailable) {
                available = 0;
            }
            if name == "api" && self.has(Trouble::PodImagePull) {
                // A rollout: the new pod cannot start, the old ones keep serving.
                updated = 1;
            }
            let unavailable = replicas - available;
            let mut attrs = json!({
                "namespace": ns,
                "kind": kind,
                "desired": replicas,
                "ready": available,
                "available": available,
                "updated": updated,
            });
            if name == "db" && self.has(Trouble::ReplicasUnavailable) {
                attrs["last_warning"] = json!(
                    "Unhealthy: Readiness probe failed: pg_isready: no response from 10.42.3.17:5432"
                );
            }
            let w = self.add(
                K8S_AGENT,
                "kubernetes",
                &wid,
                name,
                Some(&cluster),
                if unavailable == 0 {
                    "Available"
                } else {
                    "Degraded"
                },
                attrs,
            );
            self.gauge(w, "replicas_desired", replicas as f64);
            self.gauge(w, "replicas_ready", available as f64);
            self.gauge(w, "replicas_unavailable", unavailable as f64);
            for r in 0..replicas {
                let (pod, node) = match kind {
                    "statefulset" => (format!("{name}-{r}"), K8S_WORKERS[r % 4]),
                    "daemonset" => (
                        format!("{name}-{}", alnum(hash(&format!("{name}{r}")), 5)),
                        nodes[r % nodes.len()],
                    ),
                    _ => (pod_name(name, r), K8S_WORKERS[(r + name.len()) % 4]),
                };
                let mut p = PodSpec::running(ns, &pod, node, &wid, now - 9 * DAY);
                if name == "checkout" && r == 0 && self.has(Trouble::PodCrashLoop) {
                    p.status = "CrashLoopBackOff";
                    p.ready = false;
                    p.restarts = 14;
                    p.extra = json!({
                        "waiting_reason": "CrashLoopBackOff",
                        "last_termination_reason": "Error",
                        "last_exit_code": 1,
                        "last_warning": format!(
                            "BackOff: Back-off restarting failed container checkout in pod \
                             {pod}_shop"
                        ),
                        "last_warning_ms": now - MIN,
                    });
                }
                if name == "search" && r == 0 && self.has(Trouble::PodOomKilled) {
                    p.status = "CrashLoopBackOff";
                    p.ready = false;
                    p.restarts = 23;
                    p.extra = json!({
                        "waiting_reason": "CrashLoopBackOff",
                        "last_termination_reason": "OOMKilled",
                        "last_exit_code": 137,
                        "last_warning": format!(
                            "BackOff: Back-off restarting failed container search in pod \
                             {pod}_shop"
                        ),
                        "last_warning_ms": now - 2 * MIN,
                    });
                }
                if name == "db" && self.has(Trouble::ReplicasUnavailable) {
                    p.ready = false;
                }
                if node == "worker-1"
                    && self.has(Trouble::K8sWarningStorm)
                    && p.extra.get("last_warning").is_none()
                {
                    p.extra = json!({
                        "last_warning": "DNSConfigForming: Nameserver limits were exceeded, some \
                                         nameservers have been omitted, the applied nameserver \
                                         line is: 10.0.0.2 10.0.0.3 10.0.0.4",
                        "last_warning_ms": now - 20 * SEC,
                    });
                    p.warnings = 20.0;
                }
                pods += 1;
                *phases.entry(p.phase).or_default() += 1;
                self.pod(&p);
            }
            if name == "api" && self.has(Trouble::PodImagePull) {
                let mut p =
                    PodSpec::running(ns, &image_pull_pod(), "worker-2", &wid, now - 20 * MIN);
                p.phase = "Pending";
                p.status = "ImagePullBackOff";
                p.ready = false;
                p.extra = json!({
                    "waiting_reason": "ImagePullBackOff",
                    "last_warning": "Failed: Failed to pull image \
                                     \"registry.example.com/shop/api:2.4.1\": rpc error: code = \
                                     NotFound desc = manifest unknown",
                    "last_warning_ms": now - 2 * MIN,
                });
                pods += 1;
                *phases.entry(p.phase).or_default() += 1;
                self.pod(&p);
            }
        }
        // A pod evicted under disk pressure last week, left for its logs.
        let mut evicted = PodSpec::running(
            "shop",
            &format!("search-{}-evctd", alnum(hash("search"), 10)),
            "worker-3",
            "",
            now - 6 * DAY,
        );
        evicted.workload = "";
        evicted.phase = "Failed";
        evicted.status = "Evicted";
        evicted.ready = false;
        pods += 1;
        *phases.entry(evicted.phase).or_default() += 1;
        self.pod(&evicted);
        // Static control-plane pods.
        for c in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let p = PodSpec::running(
                "kube-system",
                &format!("{c}-cp-1"),
                "cp-1",
                "",
                now - 30 * DAY,
            );
            pods += 1;
            *phases.entry(p.phase).or_default() += 1;
            self.pod(&p);
        }
        // Jobs: last night's ETL (failed in trouble), the hourly report.
        let etl = etl_job();
        // The report job is named by its hour; the pending one started before this hour's.
        let report = if self.has(Trouble::PodPending) {
            report_job(pending_since(now))
        } else {
            report_job(now)
        };
        for (job, ns) in [(etl.as_str(), "batch"), (report.as_str(), "batch")] {
            let wid = format!("k8s-workload:{K8S}/{ns}/job/{job}");
            let etl_failed = job == etl && self.has(Trouble::JobFailed);
            let pending = job == report && self.has(Trouble::PodPending);
            let (status, active, succeeded, failed) = match (etl_failed, pending) {
                (true, _) => ("Failed", 0, 0, 4),
                (_, true) => ("Running", 1, 0, 0),
                _ => ("Complete", 0, 1, 0),
            };
            let mut attrs = json!({
                "namespace": ns,
                "kind": "job",
                "active": active,
                "succeeded": succeeded,
                "failed": failed,
            });
            if etl_failed {
                attrs["failure_reason"] = json!("BackoffLimitExceeded");
                attrs["failure_message"] = json!("Job has reached the specified backoff limit");
            }
            let w = self.add(
                K8S_AGENT,
                "kubernetes",
                &wid,
                job,
                Some(&cluster),
                status,
                attrs,
            );
            self.gauge(w, "job_failed", f64::from(u8::from(etl_failed)));
            let started = if job == etl {
                last_daily(now, 120)
            } else {
                now.div_euclid(HOUR) * HOUR
            };
            let attempts = if etl_failed { 4 } else { 1 };
            for a in 0..attempts {
                let mut p = PodSpec::running(ns, &pod_name(job, a), "worker-3", &wid, started);
                if etl_failed {
                    p.phase = "Failed";
                    p.status = "Error";
                    p.ready = false;
                    p.extra = json!({"last_termination_reason": "Error", "last_exit_code": 2});
                } else if pending {
                    p.phase = "Pending";
                    p.status = "Pending";
                    p.node = None;
                    p.ready = false;
                    p.created_ms = pending_since(now);
                    p.extra = json!({
                        "last_warning": "FailedScheduling: 0/5 nodes are available: 1 node(s) \
                                         had untolerated taint {node-role.kubernetes.io/\
                                         control-plane: }, 4 Insufficient memory. preemption: \
                                         0/5 nodes are available",
                        "last_warning_ms": now - MIN,
                    });
                } else {
                    p.phase = "Succeeded";
                    p.status = "Succeeded";
                    p.ready = false;
                }
                pods += 1;
                *phases.entry(p.phase).or_default() += 1;
                self.pod(&p);
            }
        }
        // Volume claims.
        let mut claims = vec![
            ("shop", "data-db-0".to_owned(), "Bound"),
            ("shop", "data-db-1".to_owned(), "Bound"),
            ("shop", "uploads".to_owned(), "Bound"),
            (
                "monitoring",
                "prometheus-data-prometheus-0".to_owned(),
                "Bound",
            ),
            ("monitoring", "grafana".to_owned(), "Bound"),
        ];
        if self.has(Trouble::PvcPending) {
            claims.push(("shop", "uploads-v2".to_owned(), "Pending"));
        }
        for (ns, claim, phase) in claims {
            let bound = phase == "Bound";
            let mut attrs = json!({
                "namespace": ns,
                "storage_class": if bound { "longhorn" } else { "fast-ssd" },
                "volume": if bound { json!(format!("pvc-{:08x}", hash(&claim) & 0xFFFF_FFFF)) } else { Value::Null },
                "requested_bytes": 20.0 * GIB,
            });
            if !bound {
                attrs["last_warning"] =
                    json!("ProvisioningFailed: storageclass.storage.k8s.io \"fast-ssd\" not found");
            }
            let i = self.add(
                K8S_AGENT,
                "kubernetes",
                &format!("pvc:{K8S}/{ns}/{claim}"),
                &claim,
                Some(&cluster),
                phase,
                attrs,
            );
            if bound {
                self.gauge(i, "capacity_bytes", 20.0 * GIB);
            }
        }
        let c = self.add(
            K8S_AGENT,
            "kubernetes",
            &cluster,
            K8S,
            None,
            "reachable",
            json!({"version": "v1.31.4"}),
        );
        self.gauge(c, "nodes", nodes.len() as f64);
        self.gauge(c, "nodes_ready", f64::from(ready_nodes));
        self.gauge(c, "pods", f64::from(pods));
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let n = phases.get(phase).copied().unwrap_or(0);
            self.gauge(
                c,
                &format!("pods_by_phase{{phase=\"{phase}\"}}"),
                f64::from(n),
            );
        }
        let storm = if self.has(Trouble::K8sWarningStorm) {
            412.0
        } else {
            0.0
        };
        self.gauge(c, "warning_events_1h", storm);
    }

    fn pod(&mut self, p: &PodSpec<'_>) {
        let id = format!("pod:{K8S}/{}/{}", p.ns, p.name);
        let parent = p.node.map_or_else(
            || format!("k8s-cluster:{K8S}"),
            |n| format!("k8s-node:{K8S}/{n}"),
        );
        let mut attrs = json!({
            "namespace": p.ns,
            "phase": p.phase,
            "ready": p.ready,
            "restarts": p.restarts,
            "node": p.node,
            "created_ms": p.created_ms,
        });
        if !p.workload.is_empty() {
            attrs["workload"] = json!(p.workload);
        }
        if let (Value::Object(a), Value::Object(extra)) = (&mut attrs, &p.extra) {
            a.extend(extra.clone());
        }
        let i = self.add(
            K8S_AGENT,
            "kubernetes",
            &id,
            &p.name,
            Some(&parent),
            p.status,
            attrs,
        );
        self.gauge(i, "restarts", p.restarts as f64);
        self.gauge(i, "ready", f64::from(u8::from(p.ready)));
        if p.extra.get("last_warning").is_some() {
            self.gauge(i, "warning_events_1h", p.warnings);
        }
    }
}

/// A pod as the Kubernetes collector describes it.
struct PodSpec<'a> {
    ns: &'a str,
    name: String,
    node: Option<&'a str>,
    workload: &'a str,
    phase: &'static str,
    status: &'static str,
    ready: bool,
    restarts: i64,
    created_ms: i64,
    extra: Value,
    /// Its Warning events in the last hour, when `extra` has a `last_warning`.
    warnings: f64,
}

impl<'a> PodSpec<'a> {
    fn running(ns: &'a str, name: &str, node: &'a str, workload: &'a str, created_ms: i64) -> Self {
        Self {
            ns,
            name: name.to_owned(),
            node: Some(node),
            workload,
            phase: "Running",
            status: "Running",
            ready: true,
            restarts: i64::try_from(hash(name) % 3).unwrap_or(0),
            created_ms,
            extra: json!({}),
            warnings: 3.0,
        }
    }
}

/// The pod of the `api` rollout that cannot pull its image.
fn image_pull_pod() -> String {
    format!("api-{}-q8w2e", alnum(hash("api-2.4.1"), 10))
}

/// The nightly ETL job (named by its CronJob's schedule time, fixed here).
fn etl_job() -> String {
    "nightly-etl-29450400".to_owned()
}

/// 5-minute or hourly averages of `shape` between `from` and `to`, stamped with the bucket
/// start, as the store returns them (the last bucket may cover part of its width).
fn buckets(shape: &Shape, now: i64, from: i64, to: i64, width: i64, step: i64) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut b = from.div_euclid(width) * width;
    while b <= to {
        let (lo, hi) = (b.max(from), (b + width - 1).min(to));
        if lo <= hi {
            out.push((b, shape.average(lo, hi, step, now)));
        }
        b += width;
    }
    out
}

/// A fleet for `seed` at `now` with `trouble` seeded.
fn fleet(seed: u64, now: i64, trouble: &[Trouble]) -> Snapshot {
    Gen::new(seed, now, trouble).build()
}

// ---- what each problem must raise ----

/// A check on a finding's evidence.
#[derive(Debug, Clone)]
enum Needle {
    /// Contains this text.
    Text(&'static str),
    /// The number right after this text lies in `lo..=hi`.
    Num(&'static str, f64, f64),
}

/// A finding a seeded problem must raise.
#[derive(Debug, Clone)]
struct Expect {
    resource_id: String,
    key: String,
    severity: Severity,
    evidence: Vec<Needle>,
    /// Linked under the root finding (resource id, key).
    under: Option<(String, String)>,
    /// For capacity forecasts: the true days to full (within ±10 %).
    days_to_full: Option<f64>,
    /// Why this expectation fails today, if it does (see the report of these tests).
    known: Option<&'static str>,
}

fn want(resource_id: &str, key: &str, severity: Severity) -> Expect {
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
    fn text(mut self, t: &'static str) -> Self {
        self.evidence.push(Needle::Text(t));
        self
    }

    fn num(mut self, after: &'static str, lo: f64, hi: f64) -> Self {
        self.evidence.push(Needle::Num(after, lo, hi));
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
fn expected(t: Trouble) -> Vec<Expect> {
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
            "guest_fs_used_pct{mountpoint=\"/var\"} = ",
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
                .text("job_last_ok{job=\"gc\"} = 0")
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
                .num("fs_used_pct{mount=\"/\"} = ", 90.9, 91.1)
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
fn report_job(t: i64) -> String {
    format!("report-{}", t.div_euclid(HOUR) * 60)
}

/// When the pending pod of [`Trouble::PodPending`] was created.
fn pending_since(now: i64) -> i64 {
    now - 12 * MIN - 10 * SEC
}

// ---- running Patrol and comparing ----

/// Every detector over `s` with the default settings, in the order `run::run` calls them.
fn patrol(s: &Snapshot) -> Vec<Detection> {
    let settings = RunSettings::default();
    let mut found = rules::detect(s, &settings.thresholds, &settings.overrides);
    found.extend(forecast::detect(s, &settings.forecast));
    found.extend(anomaly::detect(s, &settings.anomaly));
    found.extend(silence::detect(s, &settings.silence));
    correlate::correlate(s, &settings.thresholds, found)
}

fn show(d: &Detection) -> String {
    format!(
        "{:?} {} [{}] {:?} — {} — evidence: {}",
        d.severity, d.resource_id, d.key, d.source, d.title, d.evidence
    )
}

/// The number right after `after` in `text`.
fn number_after(text: &str, after: &str) -> Option<f64> {
    let rest = &text[text.find(after)? + after.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].trim_end_matches('.').parse().ok()
}

/// What is wrong with `found` against `want`: missing findings, wrong severities, unexpected
/// findings, evidence without its numbers, broken links; empty when it matches exactly.
fn compare(found: &[Detection], want: &[Expect]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_key: BTreeMap<(&str, &str), &Detection> = found
        .iter()
        .map(|d| ((d.resource_id.as_str(), d.key.as_str()), d))
        .collect();
    if by_key.len() != found.len() {
        problems.push("two findings with the same resource and key".to_owned());
    }
    let wanted: BTreeSet<(&str, &str)> = want
        .iter()
        .map(|e| (e.resource_id.as_str(), e.key.as_str()))
        .collect();
    for e in want {
        let known = e
            .known
            .map_or_else(String::new, |k| format!(" (KNOWN: {k})"));
        let Some(d) = by_key.get(&(e.resource_id.as_str(), e.key.as_str())) else {
            problems.push(format!(
                "missing: {:?} {} [{}]{known}",
                e.severity, e.resource_id, e.key
            ));
            continue;
        };
        if d.severity != e.severity {
            problems.push(format!(
                "wrong severity (want {:?}): {}",
                e.severity,
                show(d)
            ));
        }
        for n in &e.evidence {
            let ok = match n {
                Needle::Text(t) => d.evidence.contains(t),
                Needle::Num(after, lo, hi) => {
                    number_after(&d.evidence, after).is_some_and(|v| (*lo..=*hi).contains(&v))
                }
            };
            if !ok {
                problems.push(format!("evidence lacks {n:?}: {}{known}", show(d)));
            }
        }
        if let Some((root_res, root_key)) = &e.under {
            match by_key.get(&(root_res.as_str(), root_key.as_str())) {
                Some(root) => {
                    let linked = d.root_id.as_deref() == Some(root.finding_id().as_str())
                        && root.related.contains(&d.finding_id());
                    if !linked {
                        problems.push(format!(
                            "not linked under {root_res} [{root_key}]: {}",
                            show(d)
                        ));
                    }
                }
                None => problems.push(format!(
                    "its root {root_res} [{root_key}] is missing: {}",
                    show(d)
                )),
            }
        } else if d.root_id.is_some() {
            problems.push(format!("linked under an unexpected root: {}", show(d)));
        }
        if let Some(truth) = e.days_to_full {
            let days = d.capacity_forecast.as_ref().map(|f| f.days_to_full);
            if !days.is_some_and(|x| (x - truth).abs() <= truth * 0.1) {
                problems.push(format!(
                    "days to full {days:?}, truth {truth:.2} (±10 %): {}",
                    show(d)
                ));
            }
        }
    }
    for d in found {
        if !wanted.contains(&(d.resource_id.as_str(), d.key.as_str())) {
            problems.push(format!("unexpected: {}", show(d)));
        }
    }
    problems
}

/// Seeds and times the fleets are checked at: several seeds, and `now` at different hours of
/// different days (including just after a full hour and late at night).
const SEEDS: [u64; 4] = [1, 7, 42, 2027];

fn times() -> [i64; 7] {
    [
        // Fri 08:00, Fri 15:02, Fri 23:47.
        NOW0,
        NOW0 + 7 * HOUR + 2 * MIN,
        NOW0 + 15 * HOUR + 47 * MIN,
        // Sat 01:20, during the nightly backups; Sat 03:15, during the PBS verify job.
        NOW0 + 17 * HOUR + 20 * MIN,
        NOW0 + 19 * HOUR + 15 * MIN,
        // Mon 05:30, Wed 11:59.
        NOW0 + 2 * DAY + 21 * HOUR + 30 * MIN,
        NOW0 + 5 * DAY + 3 * HOUR + 59 * MIN,
    ]
}

fn at(now: i64) -> String {
    crate::rfc3339_ms(now).unwrap_or_default()
}

#[test]
fn the_fleet_looks_like_what_the_collectors_send() {
    let s = fleet(7, NOW0, &[]);
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &s.resources {
        *kinds.entry(r.kind.as_str()).or_default() += 1;
    }
    assert!(s.resources.len() >= 300, "{} resources", s.resources.len());
    for kind in [
        "node",
        "vm",
        "lxc",
        "storage",
        "disk",
        "replication",
        "pbs-datastore",
        "backup",
        "docker-host",
        "docker",
        "k8s-cluster",
        "k8s-node",
        "pod",
        "k8s-workload",
        "pvc",
    ] {
        assert!(
            kinds.get(kind).is_some_and(|n| *n > 0),
            "no {kind}: {kinds:?}"
        );
    }
    assert_eq!(s.agents.len(), 11);
    let ids: BTreeSet<&str> = s.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), s.resources.len(), "ids are unique");
    // Every resource's parent exists (or is a node of the cluster view).
    for r in &s.resources {
        if let Some(p) = &r.parent {
            assert!(ids.contains(p.as_str()), "{}: parent {p} missing", r.id);
        }
    }
    // The histories the snapshot reads: an hour per minute; a week of capacity hourly, its last
    // 5 hours per 5 minutes; a week of baselines hourly, whole hours only.
    let raw = &s.history[&("node:pve1".to_owned(), "cpu_pct".to_owned())];
    assert!(raw.len() >= 60 && raw.windows(2).all(|w| w[0].0 < w[1].0));
    let trend = &s.trend_history[&(
        "storage:pve1/local-lvm".to_owned(),
        "storage_used_pct".to_owned(),
    )];
    assert!((220..=226).contains(&trend.len()), "{}", trend.len());
    let base = &s.baseline_history[&(guest_id(104), "cpu_pct".to_owned())];
    assert_eq!(base.len(), 168);
    // Deterministic: the same seed gives the same fleet, another seed other numbers.
    let again = fleet(7, NOW0, &[]);
    assert_eq!(again.resources, s.resources);
    assert_eq!(again.history, s.history);
    assert_ne!(fleet(8, NOW0, &[]).resources, s.resources);
    eprintln!("{} resources: {kinds:?}", s.resources.len());
}

#[test]
fn a_healthy_control_fleet_raises_nothing() {
    let mut problems = Vec::new();
    for seed in SEEDS {
        for now in times() {
            let s = fleet(seed, now, &[]);
            for d in patrol(&s) {
                problems.push(format!("seed {seed} at {}: {}", at(now), show(&d)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} false positives on the control fleet:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_seeded_problem_is_found_and_nothing_else() {
    let mut problems = Vec::new();
    for seed in [7, 42] {
        for now in [times()[0], times()[2], times()[4]] {
            let s = fleet(seed, now, &ALL);
            let mut want: Vec<Expect> = ALL.iter().flat_map(|t| expected(*t)).collect();
            // The hourly report job is named by the hour.
            for e in &mut want {
                if e.key == "pod-pending" {
                    let job = report_job(pending_since(now));
                    e.resource_id = format!("pod:{K8S}/batch/{}", pod_name(&job, 0));
                }
            }
            let found = patrol(&s);
            for p in compare(&found, &want) {
                problems.push(format!("seed {seed} at {}: {p}", at(now)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the troubled fleet:\n{}",
        problems.join("\n")
    );
}

#[test]
fn each_seeded_problem_alone_raises_exactly_its_findings() {
    let mut problems = Vec::new();
    for t in ALL {
        let s = fleet(42, NOW0, &[t]);
        for p in compare(&patrol(&s), &expected(t)) {
            problems.push(format!("{t:?}: {p}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
