//! The `docker` collector: containers (state, health, restarts, exit code, OOM kills, image,
//! CPU and memory) and the daemon itself, read over the Docker API socket with bollard; plus
//! [`watch_events`], which follows the daemon's event stream and triggers an extra run when a
//! container changes state.
//!
//! CPU % is the delta of the container's `total_usage` against the host's `system_cpu_usage`
//! between two of *our* one-shot samples, times the online CPUs (100 % = one core, as in
//! `docker stats`). The first sample of a container therefore has no `cpu_pct`.
//! Memory used excludes reclaimable page cache: cgroup v1 `total_inactive_file` (older daemons:
//! `cache`), cgroup v2 `inactive_file`.

use super::{Collected, Collector, CollectorError, DockerConfig, resource_id, shutdown_requested};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCpuStats, ContainerInspectResponse, ContainerMemoryStats, ContainerStatsResponse,
    EventMessage, EventMessageTypeEnum, HealthStatusEnum,
};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, StatsOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Provenance, Resource, Value};

/// Containers read concurrently in one run. dockerd answers a one-shot stats request at the
/// next tick of its 1 s stats loop, for all waiting requests at once; reading the containers
/// concurrently makes a run cost about one tick instead of one tick per container.
const CONCURRENCY: usize = 64;
/// Memory limits at or above this are "no limit" (cgroup v1 reports `i64::MAX` rounded to pages).
const UNLIMITED_MEMORY: u64 = 1 << 62;
/// Container actions that change what the collector reports, so they trigger a run.
const TRIGGER_ACTIONS: &[&str] = &[
    "create",
    "start",
    "restart",
    "die",
    "oom",
    "health_status",
    "pause",
    "unpause",
    "rename",
    "destroy",
];
/// Reconnect delays of the event stream.
const EVENTS_BACKOFF_MIN: Duration = Duration::from_secs(1);
const EVENTS_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A stream that stayed up this long counts as healthy: the next failure starts from the
/// shortest delay again.
const EVENTS_STABLE_AFTER: Duration = Duration::from_secs(30);

/// A metric of one container.
const fn container(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::AppContainer, metric, "docker", method)
}

/// A metric of the engine.
const fn engine(metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(ResourceKind::DockerHost, metric, "docker", method)
}

/// Where each metric comes from: the Docker Engine API on the configured socket.
const PROVENANCE: &[Provenance] = &[
    container(
        metric::RESTART_COUNT,
        "GET /containers/{id}/json RestartCount",
    ),
    container(
        metric::CPU_PCT,
        "GET /containers/{id}/stats (one-shot): cpu_stats.cpu_usage.total_usage delta / \
         system_cpu_usage delta x online_cpus, between runs",
    ),
    container(
        metric::MEM_USED_BYTES,
        "GET /containers/{id}/stats (one-shot): memory_stats usage - inactive_file \
         (cgroup v1 total_inactive_file, old daemons cache)",
    ),
    container(
        metric::MEM_LIMIT_BYTES,
        "GET /containers/{id}/stats (one-shot): memory_stats.limit, absent when unlimited",
    ),
    container(
        metric::MEM_USED_PCT,
        "GET /containers/{id}/stats (one-shot): memory_stats (usage - inactive_file) / limit",
    ),
    engine(
        metric::CONTAINERS_TOTAL,
        "GET /containers/json?all=true, containers that GET /containers/{id}/json found",
    ),
    engine(
        metric::CONTAINERS_RUNNING,
        "GET /containers/{id}/json State.Status running or restarting, counted",
    ),
    engine(
        metric::CONTAINERS_PAUSED,
        "GET /containers/{id}/json State.Status paused, counted",
    ),
    engine(
        metric::CONTAINERS_STOPPED,
        "GET /containers/{id}/json State.Status neither running, restarting nor paused, counted",
    ),
];

/// Reads the Docker daemon behind one socket.
pub(crate) struct DockerCollector {
    hostname: String,
    socket: String,
    timeout: Duration,
    client: Option<Client>,
    /// Previous CPU counters per container id, for the CPU % delta.
    prev_cpu: HashMap<String, CpuSample>,
}

/// A connected, version-negotiated client (cheap to clone).
#[derive(Clone)]
struct Client {
    docker: Docker,
    server_version: Option<String>,
    api_version: Option<String>,
}

impl DockerCollector {
    pub(crate) fn new(hostname: &str, cfg: &DockerConfig) -> Self {
        Self {
            hostname: hostname.to_owned(),
            socket: cfg.socket.clone(),
            timeout: cfg.timeout,
            client: None,
            prev_cpu: HashMap::new(),
        }
    }

    fn error(&self, source: DockerError) -> CollectorError {
        CollectorError::Docker {
            socket: self.socket.clone(),
            reason: describe(&source),
            source,
        }
    }

    /// The connected client, connecting and negotiating the API version first if needed.
    async fn client(&mut self) -> Result<Client, CollectorError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let docker = connect(&self.socket, self.timeout)
            .await
            .map_err(|e| self.error(e))?;
        let version = docker.version().await.map_err(|e| self.error(e))?;
        debug!(
            collector = "docker",
            socket = %self.socket,
            server_version = version.version.as_deref().unwrap_or("?"),
            "connected to docker daemon"
        );
        let client = Client {
            docker,
            server_version: version.version,
            api_version: version.api_version,
        };
        self.client = Some(client.clone());
        Ok(client)
    }
}

impl Collector for DockerCollector {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn provenance(&self) -> &[Provenance] {
        PROVENANCE
    }

    async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let node = resource_id(&self.hostname, canonical::node(&self.hostname))?;
        let host_id = resource_id(&self.hostname, canonical::docker_host(&self.hostname))?;
        let client = self.client().await?;
        let docker = client.docker;
        let list = docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
            .await;
        let summaries = match list {
            Ok(s) => s,
            Err(e) => {
                // Reconnect (and renegotiate) next time: the daemon may have restarted.
                self.client = None;
                return Err(self.error(e));
            }
        };
        let (server_version, api_version) = (client.server_version, client.api_version);

        let ids = summaries.into_iter().filter_map(|s| s.id);
        let reads: Vec<ContainerRead> = futures_util::stream::iter(ids)
            .map(|id| read_container(docker.clone(), id))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;

        let mut out = Collected::default();
        let mut counts = Counts::default();
        let mut seen = HashMap::new();
        for read in reads {
            let ContainerRead { id, inspect, stats } = read;
            let inspect = match inspect {
                Ok(Some(i)) => i,
                // Removed between list and inspect: it no longer exists.
                Ok(None) => continue,
                Err(e) => {
                    out.problems
                        .push(format!("container {}: {}", short_id(&id), describe(&e)));
                    continue;
                }
            };
            let name = container_name(&inspect, &id);
            let rid = match resource_id(&name, canonical::app_container(&self.hostname, &name)) {
                Ok(rid) => rid,
                Err(e) => {
                    out.problems.push(e.to_string());
                    continue;
                }
            };
            let state = inspect.state.as_ref();
            let status = state
                .and_then(|s| s.status)
                .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
            counts.add(&status);
            if let Some(n) = inspect.restart_count {
                out.sample(&rid, metric::RESTART_COUNT, now_ms, n as f64);
            }
            match stats {
                None => {}
                Some(Err(e)) => out
                    .problems
                    .push(format!("stats of {name}: {}", describe(&e))),
                Some(Ok(stats)) => {
                    let cpu = stats.cpu_stats.as_ref().and_then(cpu_sample);
                    if let Some(cur) = cpu {
                        if let Some(pct) = self.prev_cpu.get(&id).and_then(|p| cpu_pct(p, &cur)) {
                            out.sample(&rid, metric::CPU_PCT, now_ms, pct);
                        }
                        seen.insert(id.clone(), cur);
                    }
                    if let Some(m) = &stats.memory_stats {
                        memory_samples(&mut out, &rid, now_ms, m);
                    }
                }
            }
            out.resources.push(Resource {
                id: rid,
                name,
                parent: Some(node.clone()),
                status,
                attrs: container_attrs(&id, &inspect),
            });
        }
        // Containers gone or stopped lose their CPU baseline; a restart starts a fresh one.
        self.prev_cpu = seen;

        counts.samples(&mut out, &host_id, now_ms);
        out.resources.push(Resource {
            id: host_id,
            name: self.hostname.clone(),
            parent: Some(node),
            status: "online".to_owned(),
            attrs: vec![
                ("socket".to_owned(), Value::from(self.socket.as_str())),
                ("server_version".to_owned(), Value::from(server_version)),
                ("api_version".to_owned(), Value::from(api_version)),
                (
                    metric::CONTAINERS_TOTAL.to_owned(),
                    Value::Int(counts.total),
                ),
                (
                    metric::CONTAINERS_RUNNING.to_owned(),
                    Value::Int(counts.running),
                ),
                (
                    metric::CONTAINERS_PAUSED.to_owned(),
                    Value::Int(counts.paused),
                ),
                (
                    metric::CONTAINERS_STOPPED.to_owned(),
                    Value::Int(counts.stopped),
                ),
            ],
        });
        Ok(out)
    }
}

/// Container counts the way `docker info` reports them.
#[derive(Debug, Default)]
struct Counts {
    total: i64,
    running: i64,
    paused: i64,
    stopped: i64,
}

impl Counts {
    fn add(&mut self, status: &str) {
        self.total += 1;
        match status {
            "running" | "restarting" => self.running += 1,
            "paused" => self.paused += 1,
            _ => self.stopped += 1,
        }
    }

    fn samples(&self, out: &mut Collected, host: &ResourceId, now_ms: i64) {
        out.sample(host, metric::CONTAINERS_TOTAL, now_ms, self.total as f64);
        out.sample(
            host,
            metric::CONTAINERS_RUNNING,
            now_ms,
            self.running as f64,
        );
        out.sample(host, metric::CONTAINERS_PAUSED, now_ms, self.paused as f64);
        out.sample(
            host,
            metric::CONTAINERS_STOPPED,
            now_ms,
            self.stopped as f64,
        );
    }
}

/// What was read about one container.
struct ContainerRead {
    id: String,
    /// `Ok(None)`: the container disappeared before it could be inspected.
    inspect: Result<Option<ContainerInspectResponse>, DockerError>,
    /// Present only for running containers.
    stats: Option<Result<ContainerStatsResponse, DockerError>>,
}

async fn read_container(docker: Docker, id: String) -> ContainerRead {
    let inspect = match docker.inspect_container(&id, None).await {
        Ok(i) => Ok(Some(i)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    };
    let running =
        matches!(&inspect, Ok(Some(i)) if i.state.as_ref().and_then(|s| s.running) == Some(true));
    let stats = if running {
        // One-shot: the daemon answers at once instead of waiting a second for its own
        // previous sample; we keep the previous sample ourselves.
        let opts = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        match docker.stats(&id, Some(opts)).next().await {
            Some(Ok(s)) => Some(Ok(s)),
            // Stopped or removed since inspect: report the state without stats.
            Some(Err(e)) if is_not_found(&e) || is_conflict(&e) => None,
            Some(Err(e)) => Some(Err(e)),
            None => None,
        }
    } else {
        None
    };
    ContainerRead { id, inspect, stats }
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_conflict(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The container's name without Docker's leading slash (its short id if it has none).
fn container_name(inspect: &ContainerInspectResponse, id: &str) -> String {
    inspect
        .name
        .as_deref()
        .map(|n| n.trim_start_matches('/'))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| short_id(id))
        .to_owned()
}

fn container_attrs(id: &str, inspect: &ContainerInspectResponse) -> Vec<(String, Value)> {
    let state = inspect.state.as_ref();
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .and_then(|h| match h {
            HealthStatusEnum::HEALTHY
            | HealthStatusEnum::UNHEALTHY
            | HealthStatusEnum::STARTING => Some(h.to_string()),
            // No healthcheck configured: the health is unknown, not "healthy".
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
        });
    // Docker's zero time means "never".
    let time = |t: Option<&String>| {
        Value::from(
            t.filter(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
                .cloned(),
        )
    };
    let image = inspect
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .or_else(|| inspect.image.clone());
    let mem_limit = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.memory)
        .filter(|m| *m > 0);
    vec![
        ("container_id".to_owned(), Value::from(short_id(id))),
        ("image".to_owned(), Value::from(image)),
        ("image_id".to_owned(), Value::from(inspect.image.clone())),
        ("health".to_owned(), Value::from(health)),
        (
            metric::RESTART_COUNT.to_owned(),
            Value::from(inspect.restart_count),
        ),
        (
            "exit_code".to_owned(),
            Value::from(state.and_then(|s| s.exit_code)),
        ),
        (
            "oom_killed".to_owned(),
            Value::from(state.and_then(|s| s.oom_killed)),
        ),
        (
            "started_at".to_owned(),
            time(state.and_then(|s| s.started_at.as_ref())),
        ),
        (
            "finished_at".to_owned(),
            time(state.and_then(|s| s.finished_at.as_ref())),
        ),
        (metric::MEM_LIMIT_BYTES.to_owned(), Value::from(mem_limit)),
    ]
}

/// One reading of a container's cumulative CPU counters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuSample {
    /// Container CPU time, ns.
    total_usage: u64,
    /// Host CPU time over all CPUs, ns.
    system_usage: u64,
    online_cpus: u32,
}

fn cpu_sample(s: &ContainerCpuStats) -> Option<CpuSample> {
    let usage = s.cpu_usage.as_ref()?;
    let online_cpus = s.online_cpus.filter(|n| *n > 0).or_else(|| {
        // Old daemons (cgroup v1) give only the per-CPU list.
        let n = usage.percpu_usage.as_ref()?.len();
        u32::try_from(n).ok().filter(|n| *n > 0)
    })?;
    Some(CpuSample {
        total_usage: usage.total_usage?,
        system_usage: s.system_cpu_usage?,
        online_cpus,
    })
}

/// CPU % between two readings (100 = one core busy), or `None` when the counters went
/// backwards (a restarted container) or no host time passed.
fn cpu_pct(prev: &CpuSample, cur: &CpuSample) -> Option<f64> {
    let used = cur.total_usage.checked_sub(prev.total_usage)?;
    let elapsed = cur.system_usage.checked_sub(prev.system_usage)?;
    if elapsed == 0 {
        return None;
    }
    Some(used as f64 / elapsed as f64 * f64::from(cur.online_cpus) * 100.0)
}

/// Memory in use excluding reclaimable page cache, for cgroup v1 and v2 stat shapes.
fn mem_used_bytes(m: &ContainerMemoryStats) -> Option<u64> {
    let usage = m.usage?;
    let stat = |key: &str| m.stats.as_ref().and_then(|s| s.get(key)).copied();
    // v1 has `total_inactive_file` (hierarchical) and `inactive_file`; v2 only `inactive_file`;
    // very old daemons only `cache`.
    let cache = stat("total_inactive_file")
        .or_else(|| stat("inactive_file"))
        .or_else(|| stat("cache"));
    Some(match cache {
        Some(c) if c <= usage => usage - c,
        _ => usage,
    })
}

fn memory_samples(out: &mut Collected, rid: &ResourceId, now_ms: i64, m: &ContainerMemoryStats) {
    let used = mem_used_bytes(m);
    let limit = m.limit.filter(|l| *l > 0 && *l < UNLIMITED_MEMORY);
    if let Some(used) = used {
        out.sample(rid, metric::MEM_USED_BYTES, now_ms, used as f64);
    }
    if let Some(limit) = limit {
        out.sample(rid, metric::MEM_LIMIT_BYTES, now_ms, limit as f64);
    }
    if let (Some(used), Some(limit)) = (used, limit) {
        out.sample(
            rid,
            metric::MEM_USED_PCT,
            now_ms,
            used as f64 * 100.0 / limit as f64,
        );
    }
}

/// Connects to the socket and negotiates the API version down to what the daemon speaks.
async fn connect(socket: &str, timeout: Duration) -> Result<Docker, DockerError> {
    let secs = timeout.as_secs().max(1);
    Docker::connect_with_unix(socket, secs, bollard::API_DEFAULT_VERSION)?
        .negotiate_version()
        .await
}

/// A short reason for an operator, classified by walking the error's source chain.
fn describe(err: &DockerError) -> String {
    match err {
        DockerError::SocketNotFoundError(_) => {
            return "no such socket (is dockerd running?)".into();
        }
        DockerError::RequestTimeoutError => return "request timed out".into(),
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => {
            return format!("daemon answered {status_code}: {message}");
        }
        _ => {}
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is dockerd running?)".into()
                }
                std::io::ErrorKind::NotFound => "no such socket (is dockerd running?)".into(),
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (the agent needs access to the socket)".into()
                }
                _ => io.to_string(),
            };
        }
        cause = e.source();
    }
    err.to_string()
}

/// Whether a Docker event should trigger a collection run.
fn is_trigger(ev: &EventMessage) -> bool {
    if ev.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return false;
    }
    // Some actions carry a detail after a colon: `health_status: healthy`, `exec_start: sh`.
    let action = ev.action.as_deref().unwrap_or("");
    let verb = action.split(':').next().unwrap_or("").trim();
    TRIGGER_ACTIONS.contains(&verb)
}

/// Why one event-stream session ended.
enum SessionEnd {
    /// The collector is gone; stop watching.
    ReceiverGone,
    /// The connection failed or broke.
    Failed(String),
}

/// Follows the daemon's container events and sends a trigger for each state change, until
/// shutdown. Reconnects with exponential backoff (1 s to 30 s, jittered); after a reconnect it
/// triggers one run, because events may have been missed while the stream was down.
pub(crate) async fn watch_events(
    socket: String,
    trigger: mpsc::Sender<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = EVENTS_BACKOFF_MIN;
    let mut sessions = 0u64;
    let mut last_error: Option<String> = None;
    loop {
        let started = Instant::now();
        let end = tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => return,
            () = trigger.closed() => return,
            end = follow_events(&socket, &trigger, sessions) => end,
        };
        let error = match end {
            SessionEnd::ReceiverGone => return,
            SessionEnd::Failed(e) => e,
        };
        if started.elapsed() >= EVENTS_STABLE_AFTER {
            delay = EVENTS_BACKOFF_MIN;
        }
        if last_error.as_deref() == Some(error.as_str()) {
            debug!(collector = "docker", socket = %socket, error = %error, "docker event stream still down");
        } else {
            warn!(collector = "docker", socket = %socket, error = %error, retry_in = ?delay, "docker event stream lost");
        }
        last_error = Some(error);
        sessions += 1;
        let jittered = delay.mul_f64(0.8 + 0.4 * rand::random::<f64>());
        tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => return,
            () = tokio::time::sleep(jittered) => {}
        }
        delay = (delay * 2).min(EVENTS_BACKOFF_MAX);
    }
}

/// One connection to the event stream; returns when it ends.
async fn follow_events(socket: &str, trigger: &mpsc::Sender<()>, attempt: u64) -> SessionEnd {
    let docker = match connect(socket, Duration::from_secs(10)).await {
        Ok(d) => d,
        Err(e) => return SessionEnd::Failed(describe(&e)),
    };
    let filters = HashMap::from([("type", vec!["container"])]);
    let mut events = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
    if attempt > 0 {
        info!(collector = "docker", socket = %socket, "docker event stream reconnected");
        if send_trigger(trigger).is_err() {
            return SessionEnd::ReceiverGone;
        }
    }
    while let Some(item) = events.next().await {
        match item {
            Ok(ev) if is_trigger(&ev) => {
                debug!(
                    collector = "docker",
                    action = ev.action.as_deref().unwrap_or(""),
                    "docker event"
                );
                if send_trigger(trigger).is_err() {
                    return SessionEnd::ReceiverGone;
                }
            }
            Ok(_) => {}
            Err(e) => return SessionEnd::Failed(describe(&e)),
        }
    }
    SessionEnd::Failed("daemon closed the event stream".to_owned())
}

/// Queues a trigger; a full queue already holds one, which is just as good.
fn send_trigger(trigger: &mpsc::Sender<()>) -> Result<(), ()> {
    match trigger.try_send(()) {
        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(())) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::assert_provenance_complete;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn stats(json: &str) -> ContainerStatsResponse {
        serde_json::from_str(json).unwrap()
    }

    /// Trimmed one-shot stats from dockerd 20.10 on a cgroup v1 host.
    const V1: &str = r#"{
        "read": "2026-11-27T20:47:02.931174049Z",
        "preread": "0001-01-01T00:00:00Z",
        "cpu_stats": {
            "cpu_usage": {"total_usage": 33988789, "percpu_usage": [8633138, 25355651],
                          "usage_in_kernelmode": 10000000, "usage_in_usermode": 20000000},
            "system_cpu_usage": 3039890000000,
            "online_cpus": 2
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 0}},
        "memory_stats": {
            "usage": 10485760, "max_usage": 12000000, "limit": 25276502016,
            "stats": {"cache": 3000000, "inactive_file": 1000000, "total_cache": 3000000,
                      "total_inactive_file": 2097152, "rss": 49152,
                      "hierarchical_memory_limit": 9223372036854771712}
        }
    }"#;

    /// Trimmed one-shot stats from a cgroup v2 host (no percpu list, no `total_*` keys).
    const V2: &str = r#"{
        "cpu_stats": {
            "cpu_usage": {"total_usage": 500000000, "usage_in_kernelmode": 1, "usage_in_usermode": 2},
            "system_cpu_usage": 100000000000,
            "online_cpus": 4
        },
        "memory_stats": {
            "usage": 8388608, "limit": 9223372036854771712,
            "stats": {"anon": 4194304, "file": 4194304, "active_file": 1048576,
                      "inactive_file": 3145728}
        }
    }"#;

    #[test]
    fn memory_excludes_cache_for_v1_and_v2() {
        let v1 = stats(V1);
        let m = v1.memory_stats.as_ref().unwrap();
        assert_eq!(mem_used_bytes(m), Some(10_485_760 - 2_097_152));

        let v2 = stats(V2);
        let m = v2.memory_stats.as_ref().unwrap();
        assert_eq!(mem_used_bytes(m), Some(8_388_608 - 3_145_728));

        // Only `cache` (very old daemons); and a cache figure larger than usage is ignored.
        let old: ContainerMemoryStats =
            serde_json::from_str(r#"{"usage": 100, "stats": {"cache": 30}}"#).unwrap();
        assert_eq!(mem_used_bytes(&old), Some(70));
        let odd: ContainerMemoryStats =
            serde_json::from_str(r#"{"usage": 100, "stats": {"inactive_file": 300}}"#).unwrap();
        assert_eq!(mem_used_bytes(&odd), Some(100));
        // A stopped container's stats are empty: unknown, not zero.
        let empty: ContainerMemoryStats = serde_json::from_str("{}").unwrap();
        assert_eq!(mem_used_bytes(&empty), None);
    }

    #[test]
    fn memory_samples_skip_unlimited_limits() {
        let rid = ResourceId::new("docker:h/c").unwrap();
        let mut out = Collected::default();
        memory_samples(&mut out, &rid, 5, stats(V2).memory_stats.as_ref().unwrap());
        let names: Vec<&str> = out.samples.iter().map(|s| s.metric.as_str()).collect();
        assert_eq!(
            names,
            [metric::MEM_USED_BYTES],
            "v2 reports i64::MAX when there is no limit"
        );

        let mut out = Collected::default();
        memory_samples(&mut out, &rid, 5, stats(V1).memory_stats.as_ref().unwrap());
        let pct = out
            .samples
            .iter()
            .find(|s| s.metric == metric::MEM_USED_PCT)
            .unwrap();
        // 8 MiB of 23.5 GiB is 0.0332 %, sent to 0.01 points (docs/metrics-precision.md).
        assert_eq!(pct.value, 0.03);
    }

    #[test]
    fn cpu_samples_from_both_shapes() {
        let v1 = cpu_sample(stats(V1).cpu_stats.as_ref().unwrap()).unwrap();
        assert_eq!(
            v1,
            CpuSample {
                total_usage: 33_988_789,
                system_usage: 3_039_890_000_000,
                online_cpus: 2
            }
        );
        let v2 = cpu_sample(stats(V2).cpu_stats.as_ref().unwrap()).unwrap();
        assert_eq!(v2.online_cpus, 4);
        // No online_cpus: fall back to the per-CPU list; neither: no sample.
        let s: ContainerCpuStats = serde_json::from_str(
            r#"{"cpu_usage": {"total_usage": 5, "percpu_usage": [1, 2, 2]}, "system_cpu_usage": 9}"#,
        )
        .unwrap();
        assert_eq!(cpu_sample(&s).unwrap().online_cpus, 3);
        let s: ContainerCpuStats =
            serde_json::from_str(r#"{"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 9}"#)
                .unwrap();
        assert_eq!(cpu_sample(&s), None);
    }

    #[test]
    fn cpu_percent_from_deltas() {
        let prev = CpuSample {
            total_usage: 1_000_000_000,
            system_usage: 100_000_000_000,
            online_cpus: 4,
        };
        // 4 CPUs for 2.5 s = 10 s of host CPU time; the container used 1.25 s of it:
        // half a core = 50 %.
        let cur = CpuSample {
            total_usage: 2_250_000_000,
            system_usage: 110_000_000_000,
            online_cpus: 4,
        };
        let pct = cpu_pct(&prev, &cur).unwrap();
        assert!((pct - 50.0).abs() < 1e-9, "{pct}");
        // Restarted container: counters went backwards.
        assert_eq!(cpu_pct(&cur, &prev), None);
        // No host time passed.
        assert_eq!(cpu_pct(&prev, &prev), None);
    }

    #[test]
    fn container_attrs_from_inspect() {
        let inspect: ContainerInspectResponse = serde_json::from_str(
            r#"{
                "Id": "6722a385ecdb54b437de3938dfe8c8c28335da9eb161ba6f15723bb4b76ec6a3",
                "Name": "/web",
                "Image": "sha256:1c8a44fe84da",
                "RestartCount": 2,
                "State": {"Status": "exited", "Running": false, "OOMKilled": true,
                          "ExitCode": 137, "StartedAt": "2026-11-27T20:47:00Z",
                          "FinishedAt": "0001-01-01T00:00:00Z"},
                "Config": {"Image": "warden-test/busybox:latest"},
                "HostConfig": {"Memory": 8388608}
            }"#,
        )
        .unwrap();
        let id = inspect.id.clone().unwrap();
        assert_eq!(container_name(&inspect, &id), "web");
        let attrs: HashMap<String, Value> = container_attrs(&id, &inspect).into_iter().collect();
        assert_eq!(attrs["container_id"], Value::from("6722a385ecdb"));
        assert_eq!(attrs["image"], Value::from("warden-test/busybox:latest"));
        assert_eq!(attrs["health"], Value::Unknown, "no healthcheck: unknown");
        assert_eq!(attrs[metric::RESTART_COUNT], Value::Int(2));
        assert_eq!(attrs["exit_code"], Value::Int(137));
        assert_eq!(attrs["oom_killed"], Value::Bool(true));
        assert_eq!(attrs["started_at"], Value::from("2026-11-27T20:47:00Z"));
        assert_eq!(attrs["finished_at"], Value::Unknown);
        assert_eq!(attrs[metric::MEM_LIMIT_BYTES], Value::Int(8_388_608));

        let healthy: ContainerInspectResponse =
            serde_json::from_str(r#"{"State": {"Health": {"Status": "unhealthy"}}}"#).unwrap();
        let attrs: HashMap<String, Value> = container_attrs("abc", &healthy).into_iter().collect();
        assert_eq!(attrs["health"], Value::from("unhealthy"));
        assert_eq!(attrs["exit_code"], Value::Unknown);
        assert_eq!(container_name(&healthy, "abc"), "abc");
    }

    #[test]
    fn trigger_actions() {
        let ev = |typ, action: &str| EventMessage {
            typ: Some(typ),
            action: Some(action.to_owned()),
            ..EventMessage::default()
        };
        assert!(is_trigger(&ev(EventMessageTypeEnum::CONTAINER, "die")));
        assert!(is_trigger(&ev(
            EventMessageTypeEnum::CONTAINER,
            "health_status: unhealthy"
        )));
        assert!(is_trigger(&ev(EventMessageTypeEnum::CONTAINER, "oom")));
        assert!(!is_trigger(&ev(
            EventMessageTypeEnum::CONTAINER,
            "exec_start: sh -c true"
        )));
        assert!(!is_trigger(&ev(EventMessageTypeEnum::CONTAINER, "attach")));
        assert!(!is_trigger(&ev(EventMessageTypeEnum::IMAGE, "delete")));
    }

    #[test]
    fn counts_like_docker_info() {
        let mut c = Counts::default();
        for s in [
            "running",
            "exited",
            "created",
            "paused",
            "restarting",
            "dead",
        ] {
            c.add(s);
        }
        assert_eq!((c.total, c.running, c.paused, c.stopped), (6, 2, 1, 3));
    }

    #[tokio::test]
    async fn missing_socket_fails_with_a_clear_message() {
        let cfg = DockerConfig {
            socket: "/nonexistent/docker.sock".into(),
            ..DockerConfig::default()
        };
        let mut c = DockerCollector::new("h", &cfg);
        let err = c.collect(0).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "docker socket /nonexistent/docker.sock: no such socket (is dockerd running?)"
        );
    }

    /// A fake dockerd: answers `/version`, and answers `/events` with one `die` event before
    /// closing the stream. Returns how many `/events` requests it served.
    async fn fake_daemon(listener: tokio::net::UnixListener, events_served: Arc<AtomicU32>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let served = Arc::clone(&events_served);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let body = if head.contains("/version") {
                    r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#
                        .to_owned()
                } else if head.contains("/events") {
                    served.fetch_add(1, Ordering::SeqCst);
                    r#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{}},"time":1,"timeNano":1}"#.to_owned() + "\n"
                } else {
                    String::new()
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(reply.as_bytes()).await.ok();
                conn.shutdown().await.ok();
            });
        }
    }

    #[tokio::test]
    async fn events_trigger_runs_and_reconnect_with_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let served = Arc::new(AtomicU32::new(0));
        let daemon = tokio::spawn(fake_daemon(listener, Arc::clone(&served)));

        let (tx, mut rx) = mpsc::channel(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        let watcher = tokio::spawn(watch_events(
            path.to_string_lossy().into_owned(),
            tx,
            stop_rx,
        ));

        // The `die` event of the first session.
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("an event triggers a run")
            .unwrap();
        // The stream closed; after the backoff (~1 s) the watcher reconnects and triggers a
        // catch-up run (and the new session's event coalesces into it or follows it).
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("reconnect triggers a run")
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(700),
            "{:?}",
            started.elapsed()
        );

        // Backoff grows (1 s, 2 s, ...): no spinning on a stream that keeps closing.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let sessions = served.load(Ordering::SeqCst);
        assert!(
            (2..=3).contains(&sessions),
            "{sessions} event sessions in ~2.5 s"
        );

        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), watcher)
            .await
            .expect("watcher stops on shutdown")
            .unwrap();
        daemon.abort();
    }

    /// A fake dockerd with one running container `web` whose CPU counters advance by one
    /// second of a 2-CPU host per stats request, so the second run has a CPU %.
    async fn fake_engine(listener: tokio::net::UnixListener) {
        let stats_served = Arc::new(AtomicU32::new(0));
        while let Ok((conn, _)) = listener.accept().await {
            let stats_served = Arc::clone(&stats_served);
            tokio::spawn(crate::collectors::answer_http(conn, move |path| {
                let body = if path.ends_with("/version") {
                    r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#
                        .to_owned()
                } else if path.contains("/containers/json") {
                    r#"[{"Id":"6722a385ecdb54b4"}]"#.to_owned()
                } else if path.contains("/stats") {
                    let n = u64::from(stats_served.fetch_add(1, Ordering::SeqCst)) + 1;
                    format!(
                        r#"{{"cpu_stats":{{"cpu_usage":{{"total_usage":{}}},"system_cpu_usage":{},"online_cpus":2}},
                        "memory_stats":{{"usage":10485760,"limit":104857600,"stats":{{"inactive_file":1048576}}}}}}"#,
                        n * 500_000_000,
                        n * 2_000_000_000
                    )
                } else if path.contains("/containers/") {
                    r#"{"Id":"6722a385ecdb54b4","Name":"/web","RestartCount":1,
                    "State":{"Status":"running","Running":true},
                    "Config":{"Image":"busybox"},"HostConfig":{"Memory":104857600}}"#
                        .to_owned()
                } else {
                    String::new()
                };
                (200, body)
            }));
        }
    }

    #[tokio::test]
    async fn every_metric_has_its_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let engine = tokio::spawn(fake_engine(tokio::net::UnixListener::bind(&path).unwrap()));
        let cfg = DockerConfig {
            socket: path.to_string_lossy().into_owned(),
            ..DockerConfig::default()
        };
        let mut c = DockerCollector::new("h", &cfg);
        let first = c.collect(1).await.unwrap();
        let second = c.collect(2).await.unwrap();
        assert!(first.problems.is_empty() && second.problems.is_empty());
        let cpu = second
            .samples
            .iter()
            .find(|s| s.resource_id.as_str() == "docker:h/web" && s.metric == metric::CPU_PCT)
            .expect("the second run has a CPU %");
        // Half a second of container CPU time in one second of a 2-CPU host: half a core.
        assert!((cpu.value - 50.0).abs() < 1e-9, "{cpu:?}");
        let mut metrics: Vec<&str> = second.samples.iter().map(|s| s.metric.as_str()).collect();
        metrics.sort_unstable();
        assert_eq!(metrics.len(), PROVENANCE.len(), "{metrics:?}");
        assert_provenance_complete(&c, &second);
        engine.abort();
    }

    #[tokio::test]
    async fn refused_connection_fails_with_a_clear_message() {
        // A unix socket file nobody listens on.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let cfg = DockerConfig {
            socket: path.to_string_lossy().into_owned(),
            ..DockerConfig::default()
        };
        let mut c = DockerCollector::new("h", &cfg);
        let err = c.collect(0).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "docker socket {}: connection refused (is dockerd running?)",
                path.display()
            )
        );
    }
}
