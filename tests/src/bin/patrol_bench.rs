//! `patrol_bench`: how long one Patrol run takes over a large fleet with a week of history.
//!
//! It builds a store with the `warden_server` library directly (no server process, no QUIC):
//! a synthetic fleet of 10,000 resources (at `--scale 1`) reported by 151 agents, with the
//! metric names and the per-kind metric sets the real collectors send (see the `PROVENANCE`
//! tables in `agent/src/collectors/`), ingested through [`Store::ingest`] in time order with
//! the server's clock (`now`) following the data, as a running server would see it. Then it
//! runs Patrol (`patrol::run::run`, `Trigger::Manual`, default settings) several times and
//! reports the median, split into the snapshot (the store reads), the pure detectors and the
//! rest (findings lifecycle, saving findings, the run record).
//!
//! | resources   | count | agent(s)                  | interval | metrics each |
//! |-------------|-------|---------------------------|----------|--------------|
//! | PVE nodes   | 100   | one `proxmox` agent each  | 30 s     | 14           |
//! | VMs         | 4,000 | their node's agent        | 30 s     | 8            |
//! | LXC guests  | 2,000 | their node's agent        | 30 s     | 10           |
//! | storages    | 600   | their node's agent        | 30 s     | 4            |
//! | containers  | 1,000 | 50 `docker` agents        | 10 s     | 5            |
//! | pods        | 2,300 | one `kubernetes` agent    | 30 s     | 3            |
//!
//! History: storing 7 days of every series at its real interval (1.4 billion samples) is too
//! slow to set up and too large for the disk here, so the bench stores `--days` of history at
//! a coarse interval (`--coarse-minutes`, one commit per simulated hour, like a spool replay)
//! and then the last `--fine-hours` at each collector's real interval (one commit per 10 s
//! tick with the agents due at it). Store reads that seek once per populated minute are
//! therefore cheaper here than on a real store, where every minute of the week is populated.
//!
//! The fleet has problems for the detectors to find: nodes with sustained high CPU, guests
//! with high memory or a CPU anomaly, storages filling up or full, restarting containers.
//!
//! It is a benchmark, not a test: it prints figures. Result lines start with `patrol-bench:`
//! and are `key=value` pairs, followed by a small table of the runs.
//!
//! ```text
//! cargo build --release -p warden-tests --bin patrol_bench
//! target/release/patrol_bench --runs 5
//! ```

use anyhow::{Context, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use warden_server::model::finding::Detection;
use warden_server::model::{AgentRecord, IngestItem};
use warden_server::patrol::run::{RunSettings, Trigger};
use warden_server::patrol::{self, anomaly, correlate, forecast, rules, silence};
use warden_server::store::Store;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::telemetry::{
    CollectorHealth, HealthStatus, Resource, Sample, TelemetryBatch, Value,
};

const ORG: &str = warden_shared::DEFAULT_ORG;
/// When the runs happen: 2026-11-30 12:00:20 UTC (the store is built up to here).
const NOW_MS: i64 = 1_796_040_020_000;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Fine history is generated on a 10 s tick; each agent reports on its own interval.
const TICK_MS: i64 = 10_000;
const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

#[derive(Debug, Parser)]
#[command(
    name = "patrol_bench",
    about = "Patrol benchmark: one run over a synthetic 10,000-resource fleet with 7 days of history"
)]
struct Args {
    /// Fleet size relative to the 10,000-resource fleet (0.1 = 1,000 resources).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Days of history.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Interval of the older history, minutes.
    #[arg(long, default_value_t = 15)]
    coarse_minutes: i64,
    /// Hours of history at the collectors' real intervals, ending now.
    #[arg(long, default_value_t = 2)]
    fine_hours: i64,
    /// Patrol runs to measure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Store file [default: a temporary file, deleted at the end].
    #[arg(long)]
    store: Option<PathBuf>,
    /// Use `--store` as it is when it exists (skip building it).
    #[arg(long)]
    reuse: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patrol-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> anyhow::Result<()> {
    if !(args.scale > 0.0 && args.scale <= 10.0) {
        bail!("--scale must be above 0 and at most 10");
    }
    if args.days < 1 || args.coarse_minutes < 1 || args.fine_hours < 1 || args.runs == 0 {
        bail!("--days, --coarse-minutes, --fine-hours and --runs must be at least 1");
    }
    if args.fine_hours * HOUR_MS >= args.days * DAY_MS {
        bail!("--fine-hours must be shorter than --days");
    }
    let tmp = tempfile::Builder::new()
        .prefix("patrol-bench-")
        .tempdir()
        .context("creating the temporary directory")?;
    let path = args
        .store
        .clone()
        .unwrap_or_else(|| tmp.path().join("warden.redb"));
    let fleet = Fleet::new(args.scale);
    println!(
        "patrol-bench: resources={} series={} agents={} days={} coarse_minutes={} fine_hours={} now_ms={NOW_MS}",
        fleet.resources(),
        fleet.series(),
        fleet.agents.len(),
        args.days,
        args.coarse_minutes,
        args.fine_hours
    );

    if args.reuse && path.is_file() {
        println!("patrol-bench: reused_store={}", path.display());
    } else {
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the old store {}", path.display()))?;
        }
        let store = Store::open(&path).context("opening the store")?;
        let built = build(&store, &fleet, args)?;
        drop(store);
        let bytes = std::fs::metadata(&path)?.len();
        println!(
            "patrol-bench: setup_s={:.1} samples={} ingest_calls={} samples_per_s={:.0} coarse_s={:.1} fine_s={:.1}",
            built.secs,
            built.samples,
            built.calls,
            built.samples as f64 / built.secs,
            built.coarse_secs,
            built.secs - built.coarse_secs
        );
        println!(
            "patrol-bench: store_mib={:.0} bytes_per_sample={:.1}",
            bytes as f64 / MIB,
            bytes as f64 / built.samples as f64
        );
    }

    // Reopened, as after a restart: the figures below start from redb's cold page cache.
    let t = Instant::now();
    let store = Store::open(&path).context("reopening the store")?;
    let open_ms = ms(t);
    // What ingest would still roll up (nothing for a store built here; all history for a
    // store from before the tiers, passed with --reuse).
    let t = Instant::now();
    let mut calls = 0;
    while store.roll_up(NOW_MS)?.pending {
        calls += 1;
    }
    println!(
        "patrol-bench: open_ms={open_ms:.0} catch_up_ms={:.0} catch_up_calls={calls} store_mib={:.0}",
        ms(t),
        std::fs::metadata(&path)?.len() as f64 / MIB
    );

    // Seal the raw history into chunks as the server's upkeep would (retention keeps
    // everything here), then report each tier's size.
    let t = Instant::now();
    let mut sealed = 0;
    loop {
        let pass = store.pass(NOW_MS)?;
        sealed += pass.sealed;
        if !pass.more {
            break;
        }
    }
    let seal_s = t.elapsed().as_secs_f64();
    let u = store.usage()?;
    println!(
        "patrol-bench: seal_s={seal_s:.1} sealed_samples={sealed} head_entries={} chunks={} chunk_mib={:.1} chunk_bytes_per_sample={:.2} head_mib={:.1} minute_rows={} minute_mib={:.1} hour_rows={} hour_mib={:.1}",
        u.head.entries,
        u.chunks.entries,
        u.chunks.bytes as f64 / MIB,
        u.chunks.bytes as f64 / sealed.max(1) as f64,
        u.head.bytes as f64 / MIB,
        u.minute.entries,
        u.minute.bytes as f64 / MIB,
        u.hour.entries,
        u.hour.bytes as f64 / MIB,
    );
    // 7 days of one series at one-minute steps, 20 different node CPU series.
    let mut reads = Vec::new();
    let mut points = 0;
    for i in 0..20 {
        let t = Instant::now();
        points += store
            .history(
                ORG,
                &format!("node:pve{:03}", i + 1),
                metric::CPU_PCT,
                NOW_MS - 7 * DAY_MS,
                NOW_MS,
                Some(MINUTE_MS),
                usize::MAX,
            )?
            .len();
        reads.push(ms(t));
    }
    reads.sort_by(f64::total_cmp);
    println!(
        "patrol-bench: read_7d_1m_ms_median={:.2} read_7d_1m_ms_max={:.2} points_per_read={}",
        reads[reads.len() / 2],
        reads[reads.len() - 1],
        points / reads.len()
    );

    let settings = RunSettings::default();
    let lookback = (settings.thresholds.window_ms * 2).max(HOUR_MS);
    let mut rows = Vec::new();
    for i in 0..args.runs {
        // The run as the server does it; the first one after the reopen starts cold.
        let (cpu0, wait0) = sched();
        let t = Instant::now();
        let rec = patrol::run::run(&store, ORG, &Trigger::Manual, NOW_MS, &settings)?;
        let run_ms = ms(t);
        let (cpu1, wait1) = sched();
        // Its parts, measured separately.
        let t = Instant::now();
        let snap = patrol::snapshot(&store, ORG, NOW_MS, lookback)?;
        let snapshot_ms = ms(t);
        let t = Instant::now();
        let found = detect(&snap, &settings);
        let detect_ms = ms(t);
        if i == 0 {
            report_snapshot(&snap, &found);
        }
        rows.push(Row {
            run_ms,
            cpu_ms: cpu1 - cpu0,
            wait_ms: wait1 - wait0,
            snapshot_ms,
            detect_ms,
            new: rec.new,
            existing: rec.existing,
        });
    }

    println!(
        "patrol-bench: run | run ms | cpu ms | runqueue ms | snapshot ms | detectors ms | new | existing"
    );
    for (i, r) in rows.iter().enumerate() {
        println!(
            "patrol-bench: {:>3} | {:>6.0} | {:>6.0} | {:>11.0} | {:>11.0} | {:>12.0} | {:>3} | {:>8}",
            i + 1,
            r.run_ms,
            r.cpu_ms,
            r.wait_ms,
            r.snapshot_ms,
            r.detect_ms,
            r.new,
            r.existing
        );
    }
    let median = |f: fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (run, cpu, snapshot, detectors) = (
        median(|r| r.run_ms),
        median(|r| r.cpu_ms),
        median(|r| r.snapshot_ms),
        median(|r| r.detect_ms),
    );
    println!(
        "patrol-bench: run_ms_median={run:.0} run_cpu_ms_median={cpu:.0} snapshot_ms_median={snapshot:.0} detectors_ms_median={detectors:.0} rest_ms_median={:.0} first_run_ms={:.0} runs={}",
        (run - snapshot - detectors).max(0.0),
        rows[0].run_ms,
        rows.len()
    );
    println!(
        "patrol-bench: target_run_ms=1000 verdict={}",
        if run <= 1000.0 { "met" } else { "missed" }
    );
    drop(store);
    if args.store.is_none() {
        tmp.close().context("removing the temporary store")?;
    }
    Ok(())
}

/// One measured run.
struct Row {
    run_ms: f64,
    cpu_ms: f64,
    wait_ms: f64,
    snapshot_ms: f64,
    detect_ms: f64,
    new: u32,
    existing: u32,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// This thread's time on a CPU and waiting for one so far, ms, from
/// `/proc/thread-self/schedstat` (zeros where it is unavailable): on a shared machine the
/// wait shows how much of a run's wall time other processes took.
fn sched() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<f64>().unwrap_or(0.0) / 1e6);
    (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0))
}

/// The detectors as `patrol::run::run` calls them.
fn detect(snap: &patrol::snapshot::Snapshot, settings: &RunSettings) -> Vec<Detection> {
    let mut found = rules::detect(snap, &settings.thresholds, &settings.overrides);
    found.extend(forecast::detect(snap, &settings.forecast));
    found.extend(anomaly::detect(snap, &settings.anomaly));
    found.extend(silence::detect(snap, &settings.silence));
    correlate::correlate(snap, &settings.thresholds, found)
}

/// What the first snapshot holds and what the detectors found in it, so runs of different
/// store versions can be compared.
fn report_snapshot(snap: &patrol::snapshot::Snapshot, found: &[Detection]) {
    let points = |m: &BTreeMap<(String, String), Vec<(i64, f64)>>| -> (usize, usize) {
        (m.len(), m.values().map(Vec::len).sum())
    };
    let (hs, hp) = points(&snap.history);
    let (ts, tp) = points(&snap.trend_history);
    let (bs, bp) = points(&snap.baseline_history);
    println!(
        "patrol-bench: snapshot_resources={} history_series={hs} history_points={hp} trend_series={ts} trend_points={tp} baseline_series={bs} baseline_points={bp}",
        snap.resources.len()
    );
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    for d in found {
        // Keys like `collector-silent:docker` are counted by their family.
        *keys
            .entry(d.key.split(':').next().unwrap_or(&d.key))
            .or_default() += 1;
    }
    let list: Vec<String> = keys.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    println!(
        "patrol-bench: detections={} by_key={}",
        found.len(),
        list.join(",")
    );
}

// ---------------------------------------------------------------------------------------
// The fleet.

/// Resource kinds of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Node,
    Vm,
    Lxc,
    Storage,
    Container,
    Pod,
}

/// What is wrong with a resource, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Quirk {
    None,
    /// CPU and memory high for the last 3 hours (node).
    Hot,
    /// Memory high for the last 3 hours (guest).
    MemHigh,
    /// CPU far above its usual level for the last 40 minutes.
    Anomaly,
    /// Storage growing by this many points a day.
    Filling(f64),
    /// Storage at 92 %.
    Full,
    /// Restarts every 5 minutes in the last 90 minutes.
    Restarting,
}

/// The metrics the collectors send, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum M {
    CpuPct,
    MemTotalBytes,
    MemUsedBytes,
    MemUsedPct,
    SwapTotalBytes,
    SwapUsedBytes,
    RootfsUsedPct,
    Load1,
    Load5,
    Load15,
    UptimeSeconds,
    UpdatesPending,
    TasksFailed24h,
    CertExpires,
    DiskTotalBytes,
    DiskUsedBytes,
    DiskUsedPct,
    BackupLastAge,
    BackupCount,
    StorageTotalBytes,
    StorageUsedBytes,
    StorageUsedPct,
    StorageFreeBytes,
    RestartCount,
    MemLimitBytes,
    Restarts,
    Ready,
    WarningEvents,
}

impl M {
    fn name(self) -> String {
        let name = match self {
            Self::CpuPct => metric::CPU_PCT,
            Self::MemTotalBytes => metric::MEM_TOTAL_BYTES,
            Self::MemUsedBytes => metric::MEM_USED_BYTES,
            Self::MemUsedPct => metric::MEM_USED_PCT,
            Self::SwapTotalBytes => metric::SWAP_TOTAL_BYTES,
            Self::SwapUsedBytes => metric::SWAP_USED_BYTES,
            Self::RootfsUsedPct => metric::ROOTFS_USED_PCT,
            Self::Load1 => metric::LOAD1,
            Self::Load5 => metric::LOAD5,
            Self::Load15 => metric::LOAD15,
            Self::UptimeSeconds => metric::UPTIME_SECONDS,
            Self::UpdatesPending => metric::UPDATES_PENDING,
            Self::TasksFailed24h => metric::TASKS_FAILED_24H,
            Self::CertExpires => {
                return format!("{}{{file=pve-ssl.pem}}", metric::CERT_EXPIRES_IN_SECONDS);
            }
            Self::DiskTotalBytes => metric::DISK_TOTAL_BYTES,
            Self::DiskUsedBytes => metric::DISK_USED_BYTES,
            Self::DiskUsedPct => metric::DISK_USED_PCT,
            Self::BackupLastAge => {
                return format!("{}{{storage=pbs}}", metric::BACKUP_LAST_AGE_SECONDS);
            }
            Self::BackupCount => {
                return format!("{}{{storage=pbs}}", metric::BACKUP_COUNT);
            }
            Self::StorageTotalBytes => metric::STORAGE_TOTAL_BYTES,
            Self::StorageUsedBytes => metric::STORAGE_USED_BYTES,
            Self::StorageUsedPct => metric::STORAGE_USED_PCT,
            Self::StorageFreeBytes => metric::STORAGE_FREE_BYTES,
            Self::RestartCount => metric::RESTART_COUNT,
            Self::MemLimitBytes => metric::MEM_LIMIT_BYTES,
            Self::Restarts => metric::RESTARTS,
            Self::Ready => metric::READY,
            Self::WarningEvents => metric::WARNING_EVENTS_1H,
        };
        name.to_owned()
    }
}

const NODE_METRICS: &[M] = &[
    M::CpuPct,
    M::MemTotalBytes,
    M::MemUsedBytes,
    M::MemUsedPct,
    M::SwapTotalBytes,
    M::SwapUsedBytes,
    M::RootfsUsedPct,
    M::Load1,
    M::Load5,
    M::Load15,
    M::UptimeSeconds,
    M::UpdatesPending,
    M::TasksFailed24h,
    M::CertExpires,
];
const VM_METRICS: &[M] = &[
    M::CpuPct,
    M::MemUsedBytes,
    M::MemUsedPct,
    M::UptimeSeconds,
    M::MemTotalBytes,
    M::DiskTotalBytes,
    M::BackupLastAge,
    M::BackupCount,
];
const LXC_METRICS: &[M] = &[
    M::CpuPct,
    M::MemUsedBytes,
    M::MemUsedPct,
    M::UptimeSeconds,
    M::MemTotalBytes,
    M::DiskTotalBytes,
    M::DiskUsedBytes,
    M::DiskUsedPct,
    M::BackupLastAge,
    M::BackupCount,
];
const STORAGE_METRICS: &[M] = &[
    M::StorageTotalBytes,
    M::StorageUsedBytes,
    M::StorageUsedPct,
    M::StorageFreeBytes,
];
const CONTAINER_METRICS: &[M] = &[
    M::RestartCount,
    M::CpuPct,
    M::MemUsedBytes,
    M::MemLimitBytes,
    M::MemUsedPct,
];
const POD_METRICS: &[M] = &[M::Restarts, M::Ready, M::WarningEvents];

/// One resource and how its values are made.
struct Res {
    desc: Resource,
    kind: Kind,
    seed: u64,
    quirk: Quirk,
}

impl Res {
    fn metrics(&self) -> &'static [M] {
        match self.kind {
            Kind::Node => NODE_METRICS,
            Kind::Vm => VM_METRICS,
            Kind::Lxc => LXC_METRICS,
            Kind::Storage => STORAGE_METRICS,
            Kind::Container => CONTAINER_METRICS,
            Kind::Pod => POD_METRICS,
        }
    }

    /// A uniform number in [0, 1) fixed for this resource and `salt`.
    fn u(&self, salt: u64) -> f64 {
        unit(mix(self.seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    }

    /// Noise in [-1, 1) for this resource, `salt` and time.
    fn noise(&self, salt: u64, t: i64) -> f64 {
        unit(mix(self.seed
            ^ salt.rotate_left(17)
            ^ (t as u64).wrapping_mul(0xff51_afd7_ed55_8ccd)))
            * 2.0
            - 1.0
    }

    fn cpu_pct(&self, t: i64) -> f64 {
        let base = 5.0 + 40.0 * self.u(1);
        let phase = (self.u(2) * DAY_MS as f64) as i64;
        let mut v = base + 10.0 * daily(t + phase) + 4.0 * self.noise(1, t);
        match self.quirk {
            Quirk::Hot if t > NOW_MS - 3 * HOUR_MS => v = 93.0 + 2.0 * self.noise(2, t),
            Quirk::Anomaly if t > NOW_MS - 40 * MINUTE_MS => {
                v = base + 50.0 + 2.0 * self.noise(2, t)
            }
            _ => {}
        }
        v.clamp(0.0, 100.0)
    }

    fn mem_pct(&self, t: i64) -> f64 {
        let v = match self.quirk {
            Quirk::Hot | Quirk::MemHigh if t > NOW_MS - 3 * HOUR_MS => {
                94.0 + 0.5 * self.noise(3, t)
            }
            _ => 30.0 + 40.0 * self.u(3) + 1.5 * self.noise(3, t),
        };
        v.clamp(0.0, 100.0)
    }

    fn mem_total(&self) -> f64 {
        let gib = match self.kind {
            Kind::Node => 256.0,
            _ => f64::from(1u32 << (mix(self.seed ^ 4) % 5)),
        };
        gib * GIB
    }

    fn storage_pct(&self, t: i64) -> f64 {
        let v = match self.quirk {
            Quirk::Filling(per_day) => {
                // Reaches 70-88 % now, from wherever that puts it a week ago.
                let now_level = 70.0 + 18.0 * self.u(5);
                now_level - per_day * (NOW_MS - t) as f64 / DAY_MS as f64 + 0.2 * self.noise(5, t)
            }
            Quirk::Full => 92.0 + 0.1 * self.noise(5, t),
            _ => 20.0 + 50.0 * self.u(5) + 0.3 * daily(t) + 0.2 * self.noise(5, t),
        };
        v.clamp(0.0, 100.0)
    }

    fn restarts(&self, t: i64) -> f64 {
        let base = (mix(self.seed ^ 6) % 3) as f64;
        let since = NOW_MS - 90 * MINUTE_MS;
        if self.quirk == Quirk::Restarting && t > since {
            base + ((t - since) / (5 * MINUTE_MS)) as f64
        } else {
            base
        }
    }

    fn value(&self, m: M, t: i64) -> f64 {
        let tb = 2.0 * 1024.0 * GIB;
        match m {
            M::CpuPct => self.cpu_pct(t),
            M::MemTotalBytes | M::MemLimitBytes => self.mem_total(),
            M::MemUsedBytes => self.mem_pct(t) / 100.0 * self.mem_total(),
            M::MemUsedPct => self.mem_pct(t),
            M::SwapTotalBytes => 8.0 * GIB,
            M::SwapUsedBytes => (0.1 + 0.05 * self.noise(7, t)) * GIB,
            M::RootfsUsedPct => 20.0 + 20.0 * self.u(8) + 0.05 * self.noise(8, t),
            M::Load1 | M::Load5 | M::Load15 => {
                self.cpu_pct(t) / 100.0 * 64.0 * (1.0 + 0.1 * self.noise(9, t))
            }
            M::UptimeSeconds => ((t - (NOW_MS - 40 * DAY_MS)) / 1000) as f64,
            M::UpdatesPending => (mix(self.seed ^ 10) % 20) as f64,
            M::TasksFailed24h => 0.0,
            M::CertExpires => ((NOW_MS + 300 * DAY_MS - t) / 1000) as f64,
            M::DiskTotalBytes => 32.0 * GIB,
            M::DiskUsedBytes => (30.0 + 30.0 * self.u(11)) / 100.0 * 32.0 * GIB,
            M::DiskUsedPct => 30.0 + 30.0 * self.u(11),
            // Nightly backups at 01:00 UTC.
            M::BackupLastAge => ((t - HOUR_MS).rem_euclid(DAY_MS) / 1000) as f64,
            M::BackupCount => 7.0,
            M::StorageTotalBytes => tb,
            M::StorageUsedBytes => self.storage_pct(t) / 100.0 * tb,
            M::StorageUsedPct => self.storage_pct(t),
            M::StorageFreeBytes => (1.0 - self.storage_pct(t) / 100.0) * tb,
            M::RestartCount | M::Restarts => self.restarts(t),
            M::Ready => 1.0,
            M::WarningEvents => 0.0,
        }
    }
}

/// One agent and what it reports.
struct Agent {
    id: String,
    collector: &'static str,
    interval_ms: i64,
    /// Offset of its collection runs from the interval grid, a multiple of the tick.
    phase_ms: i64,
    resources: Vec<Res>,
    metric_names: Vec<String>,
}

struct Fleet {
    agents: Vec<Agent>,
}

impl Fleet {
    fn new(scale: f64) -> Self {
        let n = |base: f64| ((base * scale).round() as usize).max(1);
        let (nodes, vms_per_node, lxcs_per_node, storages_per_node) = (n(100.0), 40, 20, 6);
        let (docker_hosts, containers_per_host, pods) = (n(50.0), 20, n(2300.0));
        let mut agents = Vec::new();
        let mut seed = 0u64;
        let mut next = |kind: Kind, desc: Resource, quirk: Quirk| {
            seed += 1;
            Res {
                desc,
                kind,
                seed: mix(seed),
                quirk,
            }
        };
        let id = |s: String| ResourceId::new(s).expect("bench resource ids are valid");
        let mut vmid = 100u32;
        let mut guest_index = 0usize;
        let mut storage_index = 0usize;
        for i in 0..nodes {
            let node = format!("pve{:03}", i + 1);
            let cluster = format!("c{:02}", i / 10 + 1);
            let node_id = id(format!("node:{node}"));
            let mut res = vec![next(
                Kind::Node,
                Resource {
                    id: node_id.clone(),
                    name: node.clone(),
                    parent: None,
                    status: "online".into(),
                    attrs: vec![
                        ("cluster".into(), Value::from(cluster.as_str())),
                        ("pve_version".into(), Value::from("pve-manager/8.3.2")),
                        ("kernel".into(), Value::from("6.8.12-5-pve")),
                    ],
                },
                if i % 50 == 7 { Quirk::Hot } else { Quirk::None },
            )];
            for g in 0..vms_per_node + lxcs_per_node {
                let (kind, prefix) = if g < vms_per_node {
                    (Kind::Vm, "vm")
                } else {
                    (Kind::Lxc, "lxc")
                };
                let quirk = match guest_index % 200 {
                    13 | 113 => Quirk::MemHigh,
                    57 => Quirk::Anomaly,
                    _ => Quirk::None,
                };
                guest_index += 1;
                res.push(next(
                    kind,
                    Resource {
                        id: id(format!("{prefix}:{cluster}/{vmid}")),
                        name: format!("{prefix}-{vmid}"),
                        parent: Some(node_id.clone()),
                        status: "running".into(),
                        attrs: vec![
                            ("vmid".into(), Value::Int(i64::from(vmid))),
                            ("node".into(), Value::from(node.as_str())),
                            ("template".into(), Value::Bool(false)),
                            ("cpus".into(), Value::Int(4)),
                        ],
                    },
                    quirk,
                ));
                vmid += 1;
            }
            for s in 0..storages_per_node {
                let quirk = match storage_index % 100 {
                    3 | 23 | 43 | 63 | 83 => Quirk::Filling(1.0 + (storage_index % 4) as f64),
                    50 => Quirk::Full,
                    _ => Quirk::None,
                };
                storage_index += 1;
                let pool = ["local", "local-lvm", "local-zfs", "tank", "backup", "iso"][s];
                res.push(next(
                    Kind::Storage,
                    Resource {
                        id: id(format!("storage:{node}/{pool}")),
                        name: pool.into(),
                        parent: Some(node_id.clone()),
                        status: "available".into(),
                        attrs: vec![
                            ("plugin".into(), Value::from("zfspool")),
                            ("content".into(), Value::from("images,rootdir")),
                            ("shared".into(), Value::Bool(false)),
                        ],
                    },
                    quirk,
                ));
            }
            agents.push(Agent::new(format!("pve-{node}"), "proxmox", 30_000, i, res));
        }
        let mut container_index = 0usize;
        for h in 0..docker_hosts {
            let host = format!("dock{:02}", h + 1);
            let mut res = Vec::new();
            for c in 0..containers_per_host {
                let quirk = if container_index % 100 == 42 {
                    Quirk::Restarting
                } else {
                    Quirk::None
                };
                container_index += 1;
                res.push(next(
                    Kind::Container,
                    Resource {
                        id: id(format!("docker:{host}/app-{c:02}")),
                        name: format!("app-{c:02}"),
                        parent: Some(id(format!("docker-host:{host}"))),
                        status: "running".into(),
                        attrs: vec![
                            ("image".into(), Value::from("registry.local/app:1.4")),
                            ("health".into(), Value::from("healthy")),
                            ("oom_killed".into(), Value::Bool(false)),
                        ],
                    },
                    quirk,
                ));
            }
            agents.push(Agent::new(
                format!("docker-{host}"),
                "docker",
                10_000,
                h,
                res,
            ));
        }
        let mut res = Vec::new();
        for p in 0..pods {
            let ns = format!("ns-{:02}", p % 40);
            let node = format!("k8s-node-{:02}", p % 30);
            res.push(next(
                Kind::Pod,
                Resource {
                    id: id(format!("pod:k1/{ns}/app-{p:05}")),
                    name: format!("app-{p:05}"),
                    parent: Some(id(format!("k8s-node:k1/{node}"))),
                    status: "Running".into(),
                    attrs: vec![
                        ("namespace".into(), Value::from(ns.as_str())),
                        ("phase".into(), Value::from("Running")),
                        (metric::READY.into(), Value::Bool(true)),
                        (metric::RESTARTS.into(), Value::Int(0)),
                        ("node".into(), Value::from(node.as_str())),
                        ("created_ms".into(), Value::Int(NOW_MS - 30 * DAY_MS)),
                    ],
                },
                Quirk::None,
            ));
        }
        agents.push(Agent::new("k8s-k1".into(), "kubernetes", 30_000, 0, res));
        Self { agents }
    }

    fn resources(&self) -> usize {
        self.agents.iter().map(|a| a.resources.len()).sum()
    }

    fn series(&self) -> usize {
        self.agents
            .iter()
            .flat_map(|a| &a.resources)
            .map(|r| r.metrics().len())
            .sum()
    }
}

impl Agent {
    fn new(
        id: String,
        collector: &'static str,
        interval_ms: i64,
        index: usize,
        resources: Vec<Res>,
    ) -> Self {
        let slots = interval_ms / TICK_MS;
        let metric_names = resources
            .iter()
            .flat_map(|r| r.metrics())
            .map(|m| m.name())
            .collect();
        Self {
            id,
            collector,
            interval_ms,
            phase_ms: (index as i64 % slots) * TICK_MS,
            resources,
            metric_names,
        }
    }

    /// A batch with this agent's resources and samples at each of `times`.
    fn batch(&self, seq: u64, times: &[i64]) -> TelemetryBatch {
        let last = times.last().copied().unwrap_or(NOW_MS);
        let mut samples = Vec::with_capacity(self.metric_names.len() * times.len());
        for &t in times {
            let mut names = self.metric_names.iter();
            for r in &self.resources {
                for &m in r.metrics() {
                    let Some(name) = names.next() else {
                        continue;
                    };
                    samples.push(Sample {
                        resource_id: r.desc.id.clone(),
                        metric: name.clone(),
                        ts_ms: t,
                        value: r.value(m, t),
                    });
                }
            }
        }
        TelemetryBatch {
            seq,
            collector: self.collector.into(),
            collected_at_ms: last,
            resources: self.resources.iter().map(|r| r.desc.clone()).collect(),
            samples,
            health: Some(CollectorHealth {
                collector: self.collector.into(),
                status: HealthStatus::Ok,
                message: None,
                last_success_ms: Some(last),
                duration_ms: 120,
            }),
            dropped_samples: 0,
        }
    }

    fn record(&self) -> AgentRecord {
        AgentRecord {
            id: self.id.clone(),
            org_id: ORG.into(),
            hostname: self.id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            enrolled_at_ms: NOW_MS - 60 * DAY_MS,
            revoked_at_ms: None,
            cert_serial: "00".into(),
            cert_not_after_unix: NOW_MS / 1000 + 365 * 86_400,
            last_seen_ms: None,
            protocol: Some("1.2".into()),
            dropped_samples: 0,
            collectors: BTreeMap::new(),
            identity_conflict: None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Building the store.

struct Built {
    secs: f64,
    coarse_secs: f64,
    samples: u64,
    calls: u64,
}

/// Ingests the fleet's history in time order: coarse steps one simulated hour per call, then
/// the fine part one 10 s tick per call; `now` follows the data by a second or two.
fn build(store: &Store, fleet: &Fleet, args: &Args) -> anyhow::Result<Built> {
    for a in &fleet.agents {
        store.insert_agent(&a.record())?;
    }
    let started = Instant::now();
    let start = NOW_MS - args.days * DAY_MS;
    let fine_start = NOW_MS - args.fine_hours * HOUR_MS;
    let coarse = args.coarse_minutes * MINUTE_MS;
    let mut seqs = vec![0u64; fleet.agents.len()];
    let (mut samples, mut calls) = (0u64, 0u64);
    let mut ingest = |items: Vec<IngestItem>, now: i64| -> anyhow::Result<()> {
        samples += items
            .iter()
            .map(|i| i.batch.samples.len() as u64)
            .sum::<u64>();
        calls += 1;
        let out = store.ingest(&items, now)?;
        if out.iter().any(|o| !o.stored) {
            bail!("a batch was not stored");
        }
        Ok(())
    };

    let mut t = start;
    while t < fine_start {
        let end = (t + HOUR_MS).min(fine_start);
        let times: Vec<i64> = (t..end).step_by(coarse as usize).collect();
        let items = fleet
            .agents
            .iter()
            .zip(&mut seqs)
            .map(|(a, seq)| {
                *seq += 1;
                item(a, a.batch(*seq, &times))
            })
            .collect();
        ingest(items, end + 1_000)?;
        t = end;
    }
    let coarse_secs = started.elapsed().as_secs_f64();
    let mut tick = fine_start;
    while tick <= NOW_MS - TICK_MS / 2 {
        let items: Vec<IngestItem> = fleet
            .agents
            .iter()
            .zip(&mut seqs)
            .filter(|(a, _)| (tick - a.phase_ms).rem_euclid(a.interval_ms) == 0)
            .map(|(a, seq)| {
                *seq += 1;
                item(a, a.batch(*seq, &[tick]))
            })
            .collect();
        if !items.is_empty() {
            ingest(items, tick + 1_500)?;
        }
        tick += TICK_MS;
    }
    Ok(Built {
        secs: started.elapsed().as_secs_f64(),
        coarse_secs,
        samples,
        calls,
    })
}

fn item(a: &Agent, batch: TelemetryBatch) -> IngestItem {
    IngestItem {
        agent_id: a.id.clone(),
        org_id: ORG.into(),
        batch,
        provenance: Vec::new(),
    }
}

/// A 24 h cycle in [-1, 1].
fn daily(t: i64) -> f64 {
    (t.rem_euclid(DAY_MS) as f64 / DAY_MS as f64 * std::f64::consts::TAU).sin()
}

/// splitmix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The top 53 bits of `z` as a number in [0, 1).
fn unit(z: u64) -> f64 {
    (z >> 11) as f64 / (1u64 << 53) as f64
}
