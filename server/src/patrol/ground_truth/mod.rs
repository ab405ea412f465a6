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
use super::forecast;
use super::rules;
use super::run::RunSettings;
use super::silence;
use super::snapshot::Snapshot;
use crate::model::finding::{Detection, Severity};
use crate::model::{AgentRecord, CollectorHealthRecord, LatestSample, ResourceRecord};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use warden_shared::metric;
use warden_shared::resource::canonical;

mod docker;
mod expected;
mod k8s;
mod pbs;
mod pve;

use expected::{Expect, Needle, expected, pending_since, report_job};
use k8s::{etl_job, image_pull_pod};

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
    crate::clock::rfc3339_ms(now).unwrap_or_default()
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
    let raw = &s.history[&("node:pve1".to_owned(), metric::CPU_PCT.to_owned())];
    assert!(raw.len() >= 60 && raw.windows(2).all(|w| w[0].0 < w[1].0));
    let trend = &s.trend_history[&(
        "storage:pve1/local-lvm".to_owned(),
        metric::STORAGE_USED_PCT.to_owned(),
    )];
    assert!((220..=226).contains(&trend.len()), "{}", trend.len());
    let base = &s.baseline_history[&(guest_id(104), metric::CPU_PCT.to_owned())];
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
