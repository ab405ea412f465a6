//! Collectors: the [`Collector`] trait, the common runner that owns interval, timeout and health,
//! and [`spawn_all`], which starts one task per enabled collector.
//!
//! Invariants:
//! - every run yields exactly one [`TelemetryBatch`] with `collector`, `collected_at_ms` and
//!   `health` set and `seq = 0` (the spool numbers batches), wrapped in a [`ProvenancedBatch`]
//!   with the collector's [`Collector::provenance`] entries for the metrics in it;
//! - a failed or timed-out run sends a batch with no resources and no samples and health
//!   `Failed` plus a message saying why; it never reports zeros in place of unknowns;
//! - a run that produced data but hit some problems is `Degraded`, its message lists them;
//! - a value that cannot be read is absent or [`warden_shared::telemetry::Value::Unknown`].
//!
//! Each source lives in its own file: `host.rs` (sysinfo), `docker.rs` (bollard)
//! and `simulated.rs` (a deterministic Proxmox-like node for demos). Each file also holds its
//! provenance table: where every metric it emits comes from (`source`) and how it is read
//! (`method`); tests check it is complete with [`assert_provenance_complete`].

mod config;
mod docker;
mod host;
mod kubernetes;
mod pbs;
pub(crate) mod proxmox;
mod simulated;

pub use config::{
    CollectorsConfig, DEFAULT_DOCKER_SOCKET, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DockerConfig,
    HostConfig, KubernetesConfig, PbsConfig, ProxmoxConfig, SimulatedConfig,
};

use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};
use warden_shared::ResourceId;
use warden_shared::ids::IdError;
use warden_shared::telemetry::{
    CollectorHealth, HealthStatus, MAX_BATCH_BYTES, Provenance, ProvenancedBatch, Resource, Sample,
    TelemetryBatch,
};

/// How long the runner waits after an external trigger (a Docker event) before it runs, so a
/// burst of events (`die`, `restart`, `start`) costs one run, not three.
const TRIGGER_DEBOUNCE: Duration = Duration::from_millis(200);
/// Problems listed in a `Degraded` message; the rest are counted, so one broken daemon with
/// hundreds of containers does not produce a kilobyte-long health message.
const MAX_PROBLEMS_SHOWN: usize = 5;
/// Per-run limit of the simulated collector, which never waits on anything.
const SIMULATED_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a collector run failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The Docker daemon could not be reached or refused a request.
    #[error("docker socket {socket}: {reason}")]
    Docker {
        /// The socket path from the configuration.
        socket: String,
        /// A short, human description of what went wrong.
        reason: String,
        /// The client error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The Proxmox VE API could not be read; the message says what to check.
    #[error("proxmox api: {0}")]
    Proxmox(String),
    /// The Kubernetes API server could not be reached or read; the message says what to check.
    #[error("kubernetes: {0}")]
    Kubernetes(String),
    /// sysinfo could not initialise or read a subsystem.
    #[error("cannot read {what}: {source}")]
    Sysinfo {
        /// What was being read.
        what: &'static str,
        /// The sysinfo error.
        #[source]
        source: sysinfo::Error,
    },
    /// A file under the collector's root could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A resource id built from source data was refused.
    #[error("invalid resource id for {what}: {source}")]
    ResourceId {
        /// What the id was for.
        what: String,
        /// Why it was refused.
        #[source]
        source: IdError,
    },
    /// The previous run is still stuck (e.g. on a hung network filesystem), so this one was
    /// skipped rather than piling up threads.
    #[error("previous run is still in progress (stuck on a hung filesystem or device?)")]
    Busy,
    /// The background task that did the work panicked or was cancelled.
    #[error("collection task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The collector panicked; the message is the panic's.
    #[error("collector panicked: {0}")]
    Panicked(String),
    /// The run did not finish within the configured timeout.
    #[error("collection timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// What one successful (possibly partial) run produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Collected {
    /// Current state of every resource seen.
    pub resources: Vec<Resource>,
    /// Metric samples.
    pub samples: Vec<Sample>,
    /// Partial failures; a non-empty list makes the run `Degraded`.
    pub problems: Vec<String>,
}

impl Collected {
    /// Adds a sample, skipping values that are not finite (a NaN is an unknown, not a value)
    /// and rounding the value to the precision of its unit ([`warden_shared::metric::round`]: no sensor tells
    /// a percentage to 15 digits, and the server stores short decimals in a few bits).
    pub fn sample(&mut self, resource: &ResourceId, metric: impl Into<String>, ts_ms: i64, v: f64) {
        if v.is_finite() {
            let metric = metric.into();
            let value = warden_shared::metric::round(&metric, v);
            self.samples.push(Sample {
                resource_id: resource.clone(),
                metric,
                ts_ms,
                value,
            });
        }
    }
}

/// One source of telemetry. The runner calls [`Collector::collect`] once per interval (and on
/// triggers), wraps it in a timeout and turns the outcome into a batch with health.
pub trait Collector: Send + 'static {
    /// The collector's name: the observed system, e.g. `docker`.
    fn name(&self) -> &'static str;

    /// Reads the source once. `now_ms` is the wall clock at the start of the run, in ms since
    /// the Unix epoch; use it as the timestamp of every sample.
    ///
    /// # Errors
    /// [`CollectorError`] when nothing useful could be read; partial failures go into
    /// [`Collected::problems`] instead.
    fn collect(
        &mut self,
        now_ms: i64,
    ) -> impl Future<Output = Result<Collected, CollectorError>> + Send;

    /// Where each metric this collector emits comes from: one entry per (resource kind,
    /// metric name without labels), usually a `const` table built with [`Provenance::new`].
    /// The runner attaches the entries of the metrics present in each batch.
    ///
    /// The default is an empty table: the server then shows those metrics' source and method
    /// as unknown. Check a table with [`assert_provenance_complete`] in the collector's tests.
    fn provenance(&self) -> &[Provenance] {
        &[]
    }
}

/// Starts one task per enabled collector. Each run produces one [`TelemetryBatch`] (seq = 0; the
/// spool assigns sequence numbers) with the provenance of its metrics, sent on `out`. Tasks
/// stop when `shutdown` changes to true (or its sender is dropped) and when `out` is closed.
///
/// # Panics
/// If called outside a Tokio runtime.
pub fn spawn_all(
    cfg: &CollectorsConfig,
    hostname: &str,
    out: mpsc::Sender<ProvenancedBatch>,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    if cfg.host.enabled {
        let collector = host::HostCollector::new(hostname, cfg.host.root.clone());
        let timing = Timing::new(cfg.host.interval, cfg.host.timeout);
        handles.push(spawn_named(
            "host",
            run(collector, timing, out.clone(), shutdown.clone(), None),
        ));
    }
    if cfg.docker.enabled {
        let (trigger_tx, trigger_rx) = mpsc::channel(1);
        handles.push(spawn_named(
            "docker_events",
            docker::watch_events(cfg.docker.socket.clone(), trigger_tx, shutdown.clone()),
        ));
        let collector = docker::DockerCollector::new(hostname, &cfg.docker);
        let timing = Timing::new(cfg.docker.interval, cfg.docker.timeout);
        handles.push(spawn_named(
            "docker",
            run(
                collector,
                timing,
                out.clone(),
                shutdown.clone(),
                Some(trigger_rx),
            ),
        ));
    }
    if cfg.proxmox.enabled {
        let collector = proxmox::ProxmoxCollector::new(hostname, &cfg.proxmox);
        let timing = Timing::new(cfg.proxmox.interval, cfg.proxmox.timeout);
        handles.push(spawn_named(
            "proxmox",
            run(collector, timing, out.clone(), shutdown.clone(), None),
        ));
    }
    if cfg.pbs.enabled {
        let collector = pbs::PbsCollector::new(hostname, &cfg.pbs);
        let timing = Timing::new(cfg.pbs.interval, cfg.pbs.timeout);
        handles.push(spawn_named(
            "pbs",
            run(collector, timing, out.clone(), shutdown.clone(), None),
        ));
    }
    if cfg.kubernetes.enabled {
        let collector = kubernetes::KubernetesCollector::new(&cfg.kubernetes);
        let timing = Timing::new(cfg.kubernetes.interval, cfg.kubernetes.timeout);
        handles.push(spawn_named(
            "kubernetes",
            run(collector, timing, out.clone(), shutdown.clone(), None),
        ));
    }
    if let Some(sim) = &cfg.simulated {
        let collector = simulated::SimulatedCollector::new(hostname, sim);
        let timing = Timing::new(sim.interval, SIMULATED_TIMEOUT.min(sim.interval));
        handles.push(spawn_named(
            "simulated",
            run(collector, timing, out, shutdown, None),
        ));
    }
    handles
}

/// Spawns a collector task inside a span naming it, so its logs say which collector spoke.
fn spawn_named<F>(name: &'static str, fut: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut.instrument(info_span!("collector", collector = name)))
}

/// Interval and per-run timeout of one collector task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    interval: Duration,
    timeout: Duration,
    debounce: Duration,
}

impl Timing {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        // A zero interval would make tokio's `interval` panic; validation refuses it, this
        // keeps an unvalidated config from crashing the agent.
        Self {
            interval: interval.max(Duration::from_millis(100)),
            timeout,
            debounce: TRIGGER_DEBOUNCE,
        }
    }
}

/// What woke the runner up.
enum Wake {
    Tick,
    Trigger,
    TriggerClosed,
    Shutdown,
}

/// Runs `collector` until shutdown: once at start, then every interval, plus once (debounced)
/// whenever `trigger` receives a message.
pub(crate) async fn run<C: Collector>(
    mut collector: C,
    timing: Timing,
    out: mpsc::Sender<ProvenancedBatch>,
    mut shutdown: watch::Receiver<bool>,
    mut trigger: Option<mpsc::Receiver<()>>,
) {
    let name = collector.name();
    let mut health = HealthTracker::default();
    let mut ticker = tokio::time::interval(timing.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(collector = name, interval = ?timing.interval, "collector started");
    'runs: loop {
        let wake = tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => Wake::Shutdown,
            _ = ticker.tick() => Wake::Tick,
            msg = recv_trigger(&mut trigger) => match msg {
                Some(()) => Wake::Trigger,
                None => Wake::TriggerClosed,
            },
        };
        match wake {
            Wake::Shutdown => break,
            Wake::Tick => {}
            Wake::TriggerClosed => {
                trigger = None;
                continue;
            }
            Wake::Trigger => {
                tokio::select! {
                    biased;
                    () = shutdown_requested(&mut shutdown) => break,
                    () = tokio::time::sleep(timing.debounce) => {}
                }
                if let Some(rx) = trigger.as_mut() {
                    while rx.try_recv().is_ok() {}
                }
                // The triggered run counts as this interval's run.
                ticker.reset();
            }
        }
        let batches = tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => break,
            batches = run_once(&mut collector, timing.timeout, &mut health) => batches,
        };
        for batch in batches {
            let sent = tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => break 'runs,
                sent = out.send(batch) => sent,
            };
            if sent.is_err() {
                debug!(collector = name, "telemetry receiver closed");
                break 'runs;
            }
        }
    }
    info!(collector = name, "collector stopped");
}

/// Resolves when shutdown is requested or the shutdown sender is gone.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped, which only happens at shutdown: same outcome.
    let _stopped = rx.wait_for(|stop| *stop).await.is_ok();
}

/// The next trigger, or never when there is no trigger channel.
async fn recv_trigger(trigger: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match trigger {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs the collector once under `timeout` and wraps the outcome in a batch with the
/// provenance of its metrics; a run too big for one frame (10,000 pods) becomes several
/// batches of at most [`MAX_BATCH_BYTES`].
async fn run_once<C: Collector>(
    collector: &mut C,
    timeout: Duration,
    health: &mut HealthTracker,
) -> Vec<ProvenancedBatch> {
    let now_ms = unix_ms(SystemTime::now());
    let started = Instant::now();
    // A panicking collector is reported like a failing one instead of silently ending its task.
    let run = AssertUnwindSafe(collector.collect(now_ms)).catch_unwind();
    let outcome = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(CollectorError::Panicked(panic_message(panic.as_ref()))),
        Err(_) => Err(CollectorError::Timeout(timeout)),
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let batch = health.batch(collector.name(), now_ms, duration_ms, outcome);
    batch
        .split_to_fit(MAX_BATCH_BYTES)
        .into_iter()
        .map(|batch| {
            let provenance = Provenance::for_samples(collector.provenance(), &batch.samples);
            ProvenancedBatch { batch, provenance }
        })
        .collect()
}

/// Checks a collector's provenance table against what one of its runs produced: every metric
/// in `collected` has an entry for its resource kind, and the table itself is well-formed
/// (no duplicate keys, no labels in metric names, no empty text).
///
/// Answers one HTTP/1.1 request on `conn` with `answer(path) -> (status, JSON body)` and closes
/// it: the plain-HTTP stand-in for third-party APIs in collector unit tests (the TLS side of
/// each is tested against the simulators in `tests/`).
#[cfg(test)]
pub(crate) async fn answer_http<S>(mut conn: S, answer: impl FnOnce(&str) -> (u16, String))
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let (status, body) = answer(line.split_whitespace().nth(1).unwrap_or(""));
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await.ok();
    conn.shutdown().await.ok();
}

/// # Panics
/// Listing every problem, so one run of the test shows all missing entries.
#[cfg(test)]
pub(crate) fn assert_provenance_complete<C: Collector>(collector: &C, collected: &Collected) {
    let table = collector.provenance();
    let mut problems: Vec<String> = Provenance::missing(table, &collected.samples)
        .into_iter()
        .map(|(kind, metric)| format!("no entry for {kind} {metric}"))
        .collect();
    let mut keys = std::collections::HashSet::new();
    for p in table {
        if !keys.insert((&p.kind, &p.metric)) {
            problems.push(format!("duplicate entry for {} {}", p.kind, p.metric));
        }
        if p.metric.contains('{') || p.metric.is_empty() {
            problems.push(format!("entry metric {:?} must be a bare name", p.metric));
        }
        if p.source.trim().is_empty() || p.method.trim().is_empty() {
            problems.push(format!(
                "entry for {} {} lacks source or method",
                p.kind, p.metric
            ));
        }
    }
    assert!(
        !collected.samples.is_empty(),
        "the {} run produced no samples to check",
        collector.name()
    );
    assert!(
        problems.is_empty(),
        "provenance table of the {} collector: {}",
        collector.name(),
        problems.join("; ")
    );
}

/// Joins problems with `; `, listing at most [`MAX_PROBLEMS_SHOWN`] of them.
fn summarize(problems: &[String]) -> String {
    let mut message = problems
        .iter()
        .take(MAX_PROBLEMS_SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_PROBLEMS_SHOWN {
        message.push_str(&format!(
            "; and {} more",
            problems.len() - MAX_PROBLEMS_SHOWN
        ));
    }
    message
}

/// The text of a panic payload, if it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Remembers the last success and the last reported status, so repeated failures log once.
#[derive(Debug, Default)]
struct HealthTracker {
    last_success_ms: Option<i64>,
    last: Option<(HealthStatus, Option<String>)>,
}

impl HealthTracker {
    /// Builds the batch for one run's outcome and logs status changes.
    fn batch(
        &mut self,
        name: &'static str,
        now_ms: i64,
        duration_ms: u64,
        outcome: Result<Collected, CollectorError>,
    ) -> TelemetryBatch {
        let (status, message, collected) = match outcome {
            Ok(c) if c.problems.is_empty() => (HealthStatus::Ok, None, c),
            Ok(mut c) => {
                let message = summarize(&std::mem::take(&mut c.problems));
                (HealthStatus::Degraded, Some(message), c)
            }
            Err(err) => (
                HealthStatus::Failed,
                Some(err.to_string()),
                Collected::default(),
            ),
        };
        if status != HealthStatus::Failed {
            self.last_success_ms = Some(now_ms);
        }
        self.log_change(name, status, message.as_deref(), duration_ms);
        TelemetryBatch {
            seq: 0,
            collector: name.to_owned(),
            collected_at_ms: now_ms,
            resources: collected.resources,
            samples: collected.samples,
            health: Some(CollectorHealth {
                collector: name.to_owned(),
                status,
                message,
                last_success_ms: self.last_success_ms,
                duration_ms,
            }),
            dropped_samples: 0,
        }
    }

    fn log_change(
        &mut self,
        name: &'static str,
        status: HealthStatus,
        message: Option<&str>,
        duration_ms: u64,
    ) {
        let current = (status, message.map(str::to_owned));
        let changed = self.last.as_ref() != Some(&current);
        let was_bad = self
            .last
            .as_ref()
            .is_some_and(|(s, _)| *s != HealthStatus::Ok);
        let msg = message.unwrap_or("");
        match (status, changed) {
            (HealthStatus::Failed, true) => {
                warn!(
                    collector = name,
                    error = %msg,
                    duration_ms,
                    "collection failed"
                );
            }
            (HealthStatus::Degraded, true) => {
                warn!(
                    collector = name,
                    problems = %msg,
                    duration_ms,
                    "collection degraded"
                );
            }
            (HealthStatus::Ok, true) if was_bad => {
                info!(collector = name, duration_ms, "collection recovered");
            }
            _ => debug!(
                collector = name,
                status = status.as_str(),
                duration_ms,
                "collection done"
            ),
        }
        self.last = Some(current);
    }
}

/// Milliseconds since the Unix epoch (negative before 1970, which only a broken clock gives).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Maps a refused canonical id (see `warden_shared::resource::canonical`) to
/// [`CollectorError::ResourceId`], naming what it was for.
pub(crate) fn resource_id(
    what: &str,
    id: Result<ResourceId, IdError>,
) -> Result<ResourceId, CollectorError> {
    id.map_err(|source| CollectorError::ResourceId {
        what: what.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use warden_shared::resource::ResourceKind;

    /// A collector whose behaviour per call is scripted.
    struct Fake {
        calls: Arc<AtomicU32>,
        script: fn(u32) -> Option<Result<Collected, CollectorError>>,
    }

    /// `x` is what [`Fake`] emits; `y` never appears in a batch.
    const FAKE_PROVENANCE: &[Provenance] = &[
        Provenance::new(ResourceKind::Node, "x", "fake", "a constant"),
        Provenance::new(ResourceKind::Node, "y", "fake", "never sampled"),
    ];

    impl Collector for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn provenance(&self) -> &[Provenance] {
            FAKE_PROVENANCE
        }
        async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            match (self.script)(n) {
                Some(result) => result.map(|mut c| {
                    let id = ResourceId::new("node:fake").unwrap();
                    c.sample(&id, "x", now_ms, 1.0);
                    c
                }),
                // Hang well past any timeout used below.
                None => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Collected::default())
                }
            }
        }
    }

    fn spawn_fake(
        script: fn(u32) -> Option<Result<Collected, CollectorError>>,
        timing: Timing,
    ) -> (
        mpsc::Receiver<ProvenancedBatch>,
        watch::Sender<bool>,
        mpsc::Sender<()>,
        JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(8);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (trig_tx, trig_rx) = mpsc::channel(1);
        let fake = Fake {
            calls: Arc::new(AtomicU32::new(0)),
            script,
        };
        let handle = tokio::spawn(run(fake, timing, tx, stop_rx, Some(trig_rx)));
        (rx, stop_tx, trig_tx, handle)
    }

    fn health(b: &TelemetryBatch) -> &CollectorHealth {
        b.health.as_ref().unwrap()
    }

    #[test]
    fn long_problem_lists_are_summarized() {
        let problems: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        assert_eq!(summarize(&problems), "p0; p1; p2; p3; p4; and 3 more");
        assert_eq!(summarize(&problems[..2]), "p0; p1");
    }

    #[test]
    fn non_finite_samples_are_dropped() {
        let id = ResourceId::new("node:a").unwrap();
        let mut c = Collected::default();
        c.sample(&id, "a", 0, f64::NAN);
        c.sample(&id, "b", 0, f64::INFINITY);
        c.sample(&id, "c", 0, 0.5);
        assert_eq!(c.samples.len(), 1);
    }

    #[test]
    fn health_tracker_statuses() {
        let mut h = HealthTracker::default();
        let ok = h.batch("fake", 1_000, 3, Ok(Collected::default()));
        assert_eq!(health(&ok).status, HealthStatus::Ok);
        assert_eq!(health(&ok).last_success_ms, Some(1_000));
        assert_eq!(ok.collected_at_ms, 1_000);
        assert_eq!(ok.seq, 0);

        let partial = Collected {
            problems: vec!["load average: unsupported".into(), "b".into()],
            ..Collected::default()
        };
        let degraded = h.batch("fake", 2_000, 3, Ok(partial));
        assert_eq!(health(&degraded).status, HealthStatus::Degraded);
        assert_eq!(
            health(&degraded).message.as_deref(),
            Some("load average: unsupported; b")
        );
        assert_eq!(health(&degraded).last_success_ms, Some(2_000));

        let failed = h.batch("fake", 3_000, 5_000, Err(CollectorError::Busy));
        let fh = health(&failed);
        assert_eq!(fh.status, HealthStatus::Failed);
        assert_eq!(fh.last_success_ms, Some(2_000));
        assert_eq!(fh.duration_ms, 5_000);
        assert!(failed.samples.is_empty() && failed.resources.is_empty());
    }

    #[tokio::test]
    async fn timeout_yields_failed_batch_without_samples() {
        // Call 0 succeeds, call 1 hangs past the timeout, call 2 succeeds again.
        let timing = Timing {
            interval: Duration::from_millis(300),
            timeout: Duration::from_millis(100),
            debounce: Duration::from_millis(10),
        };
        let (mut rx, stop, _trig, handle) =
            spawn_fake(|n| (n != 1).then(|| Ok(Collected::default())), timing);
        let first = rx.recv().await.unwrap();
        // Only the entries of metrics in the batch travel with it.
        assert_eq!(first.provenance, FAKE_PROVENANCE[..1].to_vec());
        let first = first.batch;
        assert_eq!(health(&first).status, HealthStatus::Ok);
        assert_eq!(first.samples.len(), 1);
        assert_eq!(first.collector, "fake");

        let second = rx.recv().await.unwrap();
        assert!(second.provenance.is_empty(), "a failed run has no metrics");
        let second = second.batch;
        let h = health(&second);
        assert_eq!(h.status, HealthStatus::Failed);
        assert_eq!(
            h.message.as_deref(),
            Some("collection timed out after 100ms")
        );
        assert_eq!(h.last_success_ms, Some(first.collected_at_ms));
        assert!(h.duration_ms >= 100, "{h:?}");
        assert!(second.samples.is_empty() && second.resources.is_empty());

        let third = rx.recv().await.unwrap().batch;
        assert_eq!(health(&third).status, HealthStatus::Ok);
        stop.send(true).unwrap();
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn errors_become_failed_batches_and_triggers_run_early() {
        let timing = Timing {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            debounce: Duration::from_millis(20),
        };
        let (mut rx, stop, trig, handle) = spawn_fake(
            |n| match n {
                0 => Some(Err(CollectorError::Busy)),
                2 => panic!("sensor table corrupt"),
                _ => Some(Ok(Collected::default())),
            },
            timing,
        );
        let first = rx.recv().await.unwrap().batch;
        let h = health(&first);
        assert_eq!(h.status, HealthStatus::Failed);
        assert!(h.message.as_deref().unwrap().contains("still in progress"));
        assert_eq!(h.last_success_ms, None);
        assert!(first.samples.is_empty());

        // Three triggers in a burst: debounced into one run, long before the 1h interval.
        for _ in 0..3 {
            // A full queue (Err) is the point: the burst coalesces.
            trig.try_send(()).ok();
        }
        let second = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("triggered run")
            .unwrap()
            .batch;
        assert_eq!(health(&second).status, HealthStatus::Ok);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), rx.recv())
                .await
                .is_err(),
            "a burst of triggers must cause one run"
        );
        // The third run panics: reported as Failed, and the task keeps running.
        trig.try_send(()).unwrap();
        let third = rx.recv().await.unwrap().batch;
        assert_eq!(health(&third).status, HealthStatus::Failed);
        assert_eq!(
            health(&third).message.as_deref(),
            Some("collector panicked: sensor table corrupt")
        );
        trig.try_send(()).unwrap();
        assert_eq!(
            health(&rx.recv().await.unwrap().batch).status,
            HealthStatus::Ok
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), handle)
            .await
            .expect("runner stops on shutdown")
            .unwrap();
    }
}
