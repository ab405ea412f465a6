//! `ingest_bench`: how much telemetry a real `warden` durably stores from many agents.
//!
//! It starts the `warden` binary on loopback with a fresh data directory, enrolls N agents
//! through the real enrollment path (join token over the API, CSR over QUIC), holds N
//! mutual-TLS sessions multiplexed over a few QUIC client endpoints (one UDP socket per
//! 2,000 agents, so 10,000 agents fit in one process's file descriptors), streams
//! telemetry batches with a bounded window of unacknowledged batches per agent, optionally
//! paced (`--interval-ms`), and counts what the server acknowledges: an ack means the batch
//! is committed (fsynced) in the store.
//!
//! It is a benchmark, not a test: it prints figures. Every result line starts with
//! `ingest-bench:` and is a list of `key=value` pairs, so scripts can grep them. Runs longer
//! than five minutes print one `minute=` line a minute and compare the last minute's
//! throughput with the first's.
//!
//! ```text
//! cargo build --release -p warden-server -p warden-tests --bins
//! target/release/ingest_bench --agents 1000 --seconds 30
//! target/release/ingest_bench --agents 10000 --seconds 60 --window 1
//! target/release/ingest_bench --agents 10000 --seconds 3600 --interval-ms 20000
//! ```
//!
//! The client and the server share the machine: on a small box the client's CPU use
//! (reported) is taken from the server.

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use warden_agent::transport::{explain, framed, tls};
use warden_shared::ResourceId;
use warden_shared::proto::{
    AgentMessage, AgentResponse, Hello, ProtocolVersion, ServerMessage, ServerRequest,
};
use warden_shared::telemetry::{
    CollectorHealth, HealthStatus, Resource, Sample, TelemetryBatch, Value,
};
use warden_shared::{frame, metric};

/// Metrics every bench resource reports, in series order. The four counters are bench-only
/// names, kept byte for byte so that runs of different commits compare.
const METRICS: &[&str] = &[
    metric::CPU_PCT,
    metric::MEM_USED_BYTES,
    metric::MEM_TOTAL_BYTES,
    "net_rx_bytes",
    "net_tx_bytes",
    "disk_read_bytes",
    "disk_write_bytes",
    metric::LOAD1,
];
/// Most points the history API returns (`server/src/api/metrics.rs`), with margin.
const HISTORY_POINTS: u64 = 15_000;
/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ; 100 on every Linux we build for).
const CLK_TCK: f64 = 100.0;
/// Upper bound of the ack latency histogram, in milliseconds (the last bucket is "more").
const LATENCY_MAX_MS: usize = 60_000;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Parser)]
#[command(
    name = "ingest_bench",
    about = "Ingest benchmark: N enrolled agents stream telemetry to a real warden over mutual-TLS QUIC"
)]
struct Args {
    /// Agents to enroll and connect.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Metric samples in each telemetry batch.
    #[arg(long, default_value_t = 500)]
    samples_per_batch: usize,
    /// Unacknowledged batches each agent may have in flight.
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// The `warden` binary [default: `warden` next to this executable].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Run the server with RUST_LOG=error instead of warn.
    #[arg(long)]
    quiet_server: bool,
    /// Enrollments in progress at once.
    #[arg(long, default_value_t = 32)]
    enroll_concurrency: usize,
    /// Seconds between all sessions being up and the start of the measurement.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Spread connection starts over this many seconds [default: max(2, agents / 400)].
    #[arg(long)]
    ramp_seconds: Option<f64>,
    /// Guest resources (`vm:bench-<i>-<k>`) per agent, besides its node.
    #[arg(long, default_value_t = 10)]
    vms_per_agent: usize,
    /// Worker threads of the bench client's runtime [default: one per core].
    #[arg(long)]
    client_threads: Option<usize>,
    /// Keep the temporary directory (server data, log, agent identities) and print its path.
    #[arg(long)]
    keep_data: bool,
    /// Client QUIC endpoints (UDP sockets) the sessions share [default: one per 2,000 agents].
    #[arg(long)]
    endpoints: Option<usize>,
    /// Each agent sends at most one batch per this many milliseconds (0: as fast as the
    /// window allows, a closed loop that measures the server's ceiling).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Extra environment for the server, `KEY=VALUE` (repeatable), e.g. `MALLOC_ARENA_MAX=2`.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.client_threads {
        builder.worker_threads(n.max(1));
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ingest-bench: error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(args));
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.agents == 0 || args.seconds == 0 || args.window == 0 {
        bail!("--agents, --seconds and --window must be at least 1");
    }
    if !(1..=50_000).contains(&args.samples_per_batch) {
        bail!("--samples-per-batch must be between 1 and 50000");
    }
    // reqwest and quinn both use rustls; with one provider installed nothing can panic.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let server_bin = match &args.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .parent()
            .map(|d| d.join("warden"))
            .ok_or_else(|| anyhow!("this executable has no parent directory"))?,
    };
    if !server_bin.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p warden-server -p warden-tests --bins` \
             or pass --server-bin",
            server_bin.display()
        );
    }

    let tmp = tempfile::Builder::new()
        .prefix("ingest-bench-")
        .tempdir()
        .context("creating the temporary directory")?;
    let root = tmp.path().to_path_buf();
    let result = bench(&args, &server_bin, &root).await;
    if args.keep_data {
        let kept = tmp.keep();
        println!("ingest-bench: kept_data_dir={}", kept.display());
    } else if result.is_err() {
        // The log is about to be deleted with the directory: show its end first.
        print_log_tail(&root.join("server.log"));
    }
    result
}

// ---------------------------------------------------------------------------------------
// The whole run.

async fn bench(args: &Args, server_bin: &Path, root: &Path) -> anyhow::Result<()> {
    let n = args.agents;
    let data_dir = root.join("server");
    let mut server = ServerProc::start(
        server_bin,
        &data_dir,
        root,
        args.quiet_server,
        &args.server_env,
    )?;
    let http_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    server.wait_healthy(&http_client).await?;
    let token_path = data_dir.join("admin-token");
    let admin = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?
        .trim()
        .to_owned();
    let api = Api {
        client: http_client,
        base: format!("http://{}", server.http),
        token: admin,
    };
    println!(
        "ingest-bench: server_pid={} http={} quic={} data_dir={}",
        server.pid,
        server.http,
        server.quic,
        data_dir.display()
    );

    // Enrollment.
    let t = Instant::now();
    let agents = enroll_all(args, &api, &root.join("agents")).await?;
    let enroll_s = t.elapsed().as_secs_f64();
    println!(
        "ingest-bench: enrolled={} enroll_s={enroll_s:.1} enroll_per_s={:.1} server_rss_mib={:.1}",
        agents.len(),
        agents.len() as f64 / enroll_s,
        proc_status_kib(server.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
    );

    // Sessions.
    let n_endpoints = args.endpoints.unwrap_or(n.div_ceil(2000)).clamp(1, n);
    let mut endpoints = Vec::with_capacity(n_endpoints);
    let mut rcvbuf = 0;
    for _ in 0..n_endpoints {
        let (endpoint, buf) = client_endpoint()?;
        endpoints.push(endpoint);
        rcvbuf = buf;
    }
    let plan = Arc::new(Plan::new(args));
    let shared = Arc::new(Shared::new(n));
    let (stop_tx, stop_rx) = watch::channel(false);
    let ramp = args
        .ramp_seconds
        .unwrap_or((n as f64 / 400.0).max(2.0))
        .max(0.0);
    let connect_started = Instant::now();
    let mut sessions = JoinSet::new();
    for agent in agents {
        let delay = Duration::from_secs_f64(rand::random::<f64>() * ramp);
        let endpoint = endpoints[agent.idx % n_endpoints].clone();
        sessions.spawn(run_session(
            agent,
            endpoint,
            server.quic,
            delay,
            plan.clone(),
            shared.clone(),
            stop_rx.clone(),
        ));
    }
    let deadline = Duration::from_secs_f64(ramp) + Duration::from_secs(60);
    let mut last_print = Instant::now();
    loop {
        let up = shared.welcomed.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        if up + failed >= n {
            break;
        }
        if connect_started.elapsed() > deadline {
            println!(
                "ingest-bench: warning: {} sessions still not up after {deadline:?}",
                n - up - failed
            );
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            println!("ingest-bench: connecting sessions_up={up}/{n} failed={failed}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    let up = shared.welcomed.load(Ordering::Relaxed);
    println!(
        "ingest-bench: sessions_up={up}/{n} connect_s={connect_s:.1} ramp_s={ramp:.1} failed={} client_endpoints={n_endpoints} client_udp_rcvbuf={rcvbuf}",
        shared.failed.load(Ordering::Relaxed)
    );
    if args.interval_ms > 0 {
        // Paced agents are light between batches: this is mostly the sessions' own cost.
        println!(
            "ingest-bench: after_connect server_rss_mib={:.1} server_anon_mib={:.1}",
            proc_status_kib(server.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
            proc_status_kib(server.pid, "RssAnon:").unwrap_or(0) as f64 / 1024.0
        );
    }
    shared.print_errors();
    if up == 0 {
        bail!("no session came up (see the errors above)");
    }

    // Warm-up, then the measurement window.
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
    let connected_before = api.connected_agents().await?;
    let before = Snapshot::take(&shared, server.pid);
    let sampler = ThreadSampler::start(server.pid);
    shared.measuring.store(true, Ordering::Relaxed);
    let window = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut connected_mid = None;
    let mut prev = (Instant::now(), shared.acked_batches.load(Ordering::Relaxed));
    let mut minutes = Minutes::new(shared.acked_batches.load(Ordering::Relaxed));
    // Long runs print one line a minute (throughput over time), short ones every 5 s.
    let slices = args.seconds <= 300;
    let mut tick = 0u64;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(started.elapsed())))
            .await;
        tick += 1;
        if connected_mid.is_none() && started.elapsed() >= window / 2 {
            connected_mid = Some(api.connected_agents().await?);
        }
        minutes.tick(
            started.elapsed(),
            shared.acked_batches.load(Ordering::Relaxed),
            plan.samples,
            server.pid,
            &shared,
        );
        if slices && tick.is_multiple_of(5) {
            let acked = shared.acked_batches.load(Ordering::Relaxed);
            let dt = prev.0.elapsed().as_secs_f64();
            let rate = (acked - prev.1) as f64 * plan.samples as f64 / dt;
            println!(
                "ingest-bench: t={:.0}s samples_per_s={rate:.0} server_rss_mib={:.1} sessions_lost={}",
                started.elapsed().as_secs_f64(),
                proc_status_kib(server.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
                shared.lost.load(Ordering::Relaxed)
            );
            prev = (Instant::now(), acked);
        }
    }
    let after = Snapshot::take(&shared, server.pid);
    let states = sampler.finish();
    shared.measuring.store(false, Ordering::Relaxed);
    let connected_mid = match connected_mid {
        Some(c) => c,
        None => api.connected_agents().await?,
    };
    let server_rss = proc_status_kib(server.pid, "VmRSS:").unwrap_or(0);
    let server_hwm = proc_status_kib(server.pid, "VmHWM:").unwrap_or(0);
    let client_rss = proc_status_kib_self("VmRSS:").unwrap_or(0);
    let client_hwm = proc_status_kib_self("VmHWM:").unwrap_or(0);

    // Stop the agents.
    let _ = stop_tx.send(true);
    let closing = Instant::now();
    let drained = tokio::time::timeout(Duration::from_secs(15), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        println!("ingest-bench: warning: sessions did not end within 15s; aborting them");
        sessions.abort_all();
    }
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"bench done");
    }
    for endpoint in &endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
    }
    let close_s = closing.elapsed().as_secs_f64();

    // Cross-check: acknowledged samples are queryable.
    let history = history_check(&api, &plan, &shared).await;

    let store_bytes = dir_size(&data_dir, "redb");
    let (exit, stop_ms) = server.terminate(Duration::from_secs(15)).await?;

    // Figures.
    let secs = (after.at - before.at).as_secs_f64();
    let batches = after.acked_batches - before.acked_batches;
    let samples = batches * plan.samples as u64;
    let srv_cpu = (after.server_ticks - before.server_ticks) as f64 / CLK_TCK / secs * 100.0;
    let cli_cpu = (after.client_ticks - before.client_ticks) as f64 / CLK_TCK / secs * 100.0;
    let runq =
        after.server_runq_ns.saturating_sub(before.server_runq_ns) as f64 / 1e9 / secs * 100.0;
    let machine = after.machine.since(&before.machine);
    let disk = after
        .server_write_bytes
        .saturating_sub(before.server_write_bytes) as f64
        / MIB
        / secs;
    let lat = &shared.latency;
    let top_threads = top_threads(&before.threads, &after.threads, secs, 4);

    println!("ingest-bench: ---- summary ----");
    println!(
        "ingest-bench: agents={} connected={connected_mid} connected_before_window={connected_before} sessions_lost={} window_s={} samples_per_batch={} window={} interval_ms={} series_per_agent={}",
        shared.welcomed.load(Ordering::Relaxed),
        shared.lost.load(Ordering::Relaxed),
        args.seconds,
        plan.samples,
        args.window,
        args.interval_ms,
        plan.series()
    );
    println!(
        "ingest-bench: stored_samples_per_s={:.0} stored_batches_per_s={:.1} acked_samples={samples} measured_s={secs:.2}",
        samples as f64 / secs,
        batches as f64 / secs
    );
    if let Some(line) = minutes.summary() {
        println!("ingest-bench: {line}");
    }
    println!(
        "ingest-bench: ack_latency_ms_p50={} ack_latency_ms_p90={} ack_latency_ms_p99={} ack_latency_ms_max={}",
        lat.quantile(0.50),
        lat.quantile(0.90),
        lat.quantile(0.99),
        lat.quantile(1.0)
    );
    println!(
        "ingest-bench: server_rss_mib={:.1} server_peak_rss_mib={:.1} client_rss_mib={:.1} client_peak_rss_mib={:.1}",
        server_rss as f64 / 1024.0,
        server_hwm as f64 / 1024.0,
        client_rss as f64 / 1024.0,
        client_hwm as f64 / 1024.0
    );
    println!(
        "ingest-bench: server_cpu_pct={srv_cpu:.0} server_runqueue_wait_pct={runq:.0} client_cpu_pct={cli_cpu:.0} machine_busy_pct={:.0} machine_iowait_pct={:.0} cores={}",
        machine.busy_pct,
        machine.iowait_pct,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "ingest-bench: server_threads={} server_threads_running_avg={:.2} server_in_fsync_pct={:.0} server_in_disk_io_pct={:.0} server_top_threads_cpu_pct={top_threads}",
        after.threads.len(),
        states.running_avg(),
        states.pct(states.fsync),
        states.pct(states.disk_io)
    );
    println!(
        "ingest-bench: server_disk_write_mib_per_s={disk:.1} store_mib={:.1} store_bytes_per_sample={:.1}",
        store_bytes as f64 / MIB,
        store_bytes as f64
            / shared.acked_batches.load(Ordering::Relaxed).max(1) as f64
            / plan.samples as f64
    );
    println!(
        "ingest-bench: enroll_s={enroll_s:.1} connect_s={connect_s:.1} welcome_ms_p50={} welcome_ms_p99={} welcome_ms_max={} close_s={close_s:.1} history_check={history}",
        shared.welcome.quantile(0.50),
        shared.welcome.quantile(0.99),
        shared.welcome.quantile(1.0)
    );
    match exit {
        Some(status) => println!(
            "ingest-bench: server_exit={} server_stop_ms={stop_ms}",
            status
                .code()
                .map_or_else(|| format!("signal({status})"), |c| c.to_string())
        ),
        None => println!(
            "ingest-bench: server_exit=timeout server_stop_ms={stop_ms} (did not stop within 15s of SIGTERM; killed)"
        ),
    }
    shared.print_errors();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The server process and its API.

struct ServerProc {
    child: Option<Child>,
    pid: u32,
    http: SocketAddr,
    quic: SocketAddr,
    log: PathBuf,
}

impl ServerProc {
    fn start(
        bin: &Path,
        data_dir: &Path,
        root: &Path,
        quiet: bool,
        env: &[String],
    ) -> anyhow::Result<Self> {
        let http = free_tcp()?;
        let quic = free_udp()?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let log = root.join("server.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        for kv in env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--server-env {kv:?}: expected KEY=VALUE"))?;
            cmd.env(k, v);
        }
        let child = cmd
            .env("RUST_LOG", if quiet { "error" } else { "warn" })
            .arg("--data-dir")
            .arg(data_dir)
            .arg("run")
            .arg("--http")
            .arg(http.to_string())
            .arg("--quic")
            .arg(quic.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            pid: child.id(),
            child: Some(child),
            http,
            quic,
            log,
        })
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("http://{}/healthz", self.http);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "warden exited during startup with {status}; log {}",
                    self.log.display()
                );
            }
            if let Ok(r) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("warden did not answer {url} within 30s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits up to `timeout`; kills it if it does not stop.
    /// Returns the exit status (None: timed out) and how long it took.
    async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<(Option<ExitStatus>, u128)> {
        let Some(mut child) = self.child.take() else {
            bail!("the server is not running");
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).context("server pid")?);
        let t = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .context("sending SIGTERM to the server")?;
        while t.elapsed() < timeout {
            if let Some(status) = child.try_wait().context("waiting for the server")? {
                return Ok((Some(status), t.elapsed().as_millis()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok((None, t.elapsed().as_millis()))
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_tcp() -> anyhow::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free TCP port")
}

fn free_udp() -> anyhow::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .context("finding a free UDP port")
}

fn print_log_tail(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of {} ---", path.display());
    for l in &lines[lines.len().saturating_sub(40)..] {
        eprintln!("{l}");
    }
    eprintln!("---");
}

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> anyhow::Result<Json> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {url}: reading the body"))?;
        if !status.is_success() {
            bail!("{method} {url}: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {url}: body is not JSON"))
    }

    async fn create_token(&self) -> anyhow::Result<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/api/tokens",
                Some(serde_json::json!({ "ttl": "1h" })),
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("POST /api/tokens: no `token` in {v}"))
    }

    /// Agents the server lists with `connected == true`.
    async fn connected_agents(&self) -> anyhow::Result<usize> {
        let (mut n, mut cursor) = (0, String::new());
        loop {
            let path = format!("/api/agents?limit=1000{cursor}");
            let v = self.call(reqwest::Method::GET, &path, None).await?;
            let list = v["items"]
                .as_array()
                .ok_or_else(|| anyhow!("GET /api/agents: expected a list envelope"))?;
            n += list
                .iter()
                .filter(|a| a["connected"].as_bool() == Some(true))
                .count();
            match v["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return Ok(n),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Enrollment.

struct Enrolled {
    idx: usize,
    config: quinn::ClientConfig,
}

async fn enroll_all(args: &Args, api: &Api, dir: &Path) -> anyhow::Result<Vec<Enrolled>> {
    let n = args.agents;
    let api = Arc::new(api.clone());
    let permits = Arc::new(Semaphore::new(args.enroll_concurrency.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut out = Vec::with_capacity(n);
    for idx in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let (api, done, dir) = (
            api.clone(),
            done.clone(),
            dir.join(format!("agent-{idx:05}")),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let r = enroll_one(idx, &api, &dir)
                .await
                .with_context(|| format!("enrolling agent {idx}"));
            if r.is_ok() {
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 100 == 0 || d == n {
                    println!(
                        "ingest-bench: enrolled {d}/{n} ({:.1}/s)",
                        d as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
            r
        });
        // Fail fast: collect what has finished.
        while let Some(r) = tasks.try_join_next() {
            out.push(r.context("enrollment task failed")??);
        }
    }
    while let Some(r) = tasks.join_next().await {
        out.push(r.context("enrollment task failed")??);
    }
    out.sort_by_key(|e| e.idx);
    Ok(out)
}

async fn enroll_one(idx: usize, api: &Api, dir: &Path) -> anyhow::Result<Enrolled> {
    let token = api.create_token().await?;
    let identity = warden_agent::enroll::enroll(dir, None, &token, &format!("bench-{idx}")).await?;
    let config = tls::session_config(&identity.ca_pem, &identity.cert_pem, &identity.key_pem)?;
    Ok(Enrolled { idx, config })
}

// ---------------------------------------------------------------------------------------
// Sessions.

/// One client endpoint for every session, with large socket buffers: a thousand
/// handshakes and acks arrive on this one socket.
fn client_endpoint() -> anyhow::Result<(quinn::Endpoint, usize)> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .context("creating the client UDP socket")?;
    // Best effort; the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    let bind: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
    socket
        .bind(&bind.into())
        .context("binding the client UDP socket")?;
    let rcvbuf = socket.recv_buffer_size().unwrap_or(0);
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )
    .context("creating the QUIC client endpoint")?;
    Ok((endpoint, rcvbuf))
}

/// What every session sends, fixed for the run.
struct Plan {
    samples: usize,
    window: u64,
    vms: usize,
    /// Least time between two batches of one agent (zero: no pacing).
    interval: Duration,
    /// Timestamp of seq 0; a sample's time is `base_ms + seq * stride_ms + j` (j < samples),
    /// so (series, time) never repeats and every acked sample is a new stored point.
    base_ms: i64,
    stride_ms: i64,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let samples = args.samples_per_batch;
        Self {
            samples,
            window: args.window,
            vms: args.vms_per_agent,
            interval: Duration::from_millis(args.interval_ms),
            // Now, and a batch's times a second or the pacing interval after the last one's:
            // paced runs keep the times at real time, as agents' are (samples an hour old
            // land in sealed windows and take the store's late path); a closed loop at
            // under a batch a second per agent lags behind by its run time at most.
            base_ms: now_ms() / 1000 * 1000,
            stride_ms: i64::try_from((samples.max(999) + 1).max(args.interval_ms as usize))
                .unwrap_or(i64::MAX),
        }
    }

    fn series(&self) -> usize {
        (1 + self.vms) * METRICS.len()
    }

    /// Samples of series 0 (`node:bench-<i>` / `cpu_pct`) in one batch.
    fn series0_per_batch(&self) -> u64 {
        self.samples.div_ceil(self.series()) as u64
    }
}

/// Per-agent progress, for the history cross-check.
#[derive(Default)]
struct AgentProgress {
    first_seq: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    welcomed: AtomicBool,
}

struct Shared {
    welcomed: AtomicUsize,
    failed: AtomicUsize,
    lost: AtomicUsize,
    acked_batches: AtomicU64,
    measuring: AtomicBool,
    /// Batch sent to batch acknowledged (during the window).
    latency: Histogram,
    /// Connection start to Welcome.
    welcome: Histogram,
    errors: Mutex<BTreeMap<String, usize>>,
    agents: Vec<AgentProgress>,
}

impl Shared {
    fn new(n: usize) -> Self {
        Self {
            welcomed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            lost: AtomicUsize::new(0),
            acked_batches: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            latency: Histogram::new(),
            welcome: Histogram::new(),
            errors: Mutex::new(BTreeMap::new()),
            agents: (0..n).map(|_| AgentProgress::default()).collect(),
        }
    }

    fn note_error(&self, phase: &str, e: &anyhow::Error) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(format!("{phase}: {e:#}")).or_default() += 1;
        }
    }

    fn print_errors(&self) {
        if let Ok(m) = self.errors.lock() {
            for (what, count) in m.iter() {
                println!("ingest-bench: session_error count={count} error={what:?}");
            }
        }
    }
}

async fn run_session(
    agent: Enrolled,
    endpoint: quinn::Endpoint,
    server: SocketAddr,
    delay: Duration,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let idx = agent.idx;
    tokio::time::sleep(delay).await;
    if let Err(e) = session(agent, &endpoint, server, &plan, &shared, stop).await {
        let up = shared
            .agents
            .get(idx)
            .is_some_and(|a| a.welcomed.load(Ordering::Relaxed));
        if up {
            shared.lost.fetch_add(1, Ordering::Relaxed);
            shared.note_error("during the session", &e);
        } else {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.note_error("before welcome", &e);
        }
    }
}

fn write_error(e: quinn::WriteError) -> anyhow::Error {
    match e {
        quinn::WriteError::ConnectionLost(c) => anyhow!("connection lost: {}", explain(&c)),
        other => anyhow!("writing to the session stream: {other}"),
    }
}

fn read_error(e: framed::ReadError) -> anyhow::Error {
    match e {
        framed::ReadError::Stream(quinn::ReadError::ConnectionLost(c)) => {
            anyhow!("connection lost: {}", explain(&c))
        }
        other => anyhow!("reading from the session stream: {other}"),
    }
}

async fn session(
    agent: Enrolled,
    endpoint: &quinn::Endpoint,
    server: SocketAddr,
    plan: &Plan,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let idx = agent.idx;
    let progress = shared
        .agents
        .get(idx)
        .ok_or_else(|| anyhow!("agent index {idx} out of range"))?;
    let started = Instant::now();
    let connecting = endpoint
        .connect_with(agent.config, server, warden_shared::SERVER_NAME)
        .context("starting the QUIC connection")?;
    let conn = match tokio::time::timeout(Duration::from_secs(30), connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => bail!("connecting: {}", explain(&e)),
        Err(_) => bail!("connecting: no handshake within 30s"),
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| anyhow!("opening the session stream: {}", explain(&e)))?;
    let hello = AgentMessage::Hello(Hello {
        protocol: ProtocolVersion::CURRENT,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: format!("bench-{idx}"),
        os: "linux (ingest_bench)".to_owned(),
    });
    send.write_all(&frame::encode(&hello)?)
        .await
        .map_err(write_error)?;
    let welcome = match tokio::time::timeout(
        Duration::from_secs(30),
        framed::read::<ServerMessage>(&mut recv),
    )
    .await
    {
        Ok(Ok(Some(ServerMessage::Welcome(w)))) => w,
        Ok(Ok(Some(other))) => bail!("expected Welcome, got {other:?}"),
        Ok(Ok(None)) => bail!("the server ended the stream before Welcome"),
        Ok(Err(e)) => return Err(read_error(e)),
        Err(_) => bail!("no Welcome within 30s"),
    };
    let first_seq = welcome.last_stored_seq + 1;
    progress.first_seq.store(first_seq, Ordering::Relaxed);
    progress
        .acked
        .store(welcome.last_stored_seq, Ordering::Relaxed);
    progress.welcomed.store(true, Ordering::Relaxed);
    shared.welcomed.fetch_add(1, Ordering::Relaxed);
    shared.welcome.record(started.elapsed());

    // Reads are not cancel-safe: a dedicated task reads acks and control requests.
    let (ack_tx, mut acked) = watch::channel(welcome.last_stored_seq);
    let (req_tx, mut requests) = mpsc::channel::<(u64, u64)>(8);
    let (sent_tx, sent_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let reader = tokio::spawn(read_loop(
        recv,
        idx,
        welcome.last_stored_seq,
        shared.clone(),
        ack_tx,
        req_tx,
        sent_rx,
    ));

    let (mut batch, vms) = template(idx, plan)?;
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (idx as u64 + 1);
    let mut next = first_seq;
    // Paced agents start at a random point of their interval, so sends spread evenly.
    let mut due = tokio::time::Instant::now() + plan.interval.mul_f64(rand::random::<f64>());
    let result: anyhow::Result<()> = loop {
        let need = next.saturating_sub(plan.window);
        tokio::select! {
            biased;
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break Ok(()),
            Some((id, nonce)) = requests.recv() => {
                let pong = AgentMessage::Response { id, body: AgentResponse::Pong { nonce } };
                if let Err(e) = send.write_all(&frame::encode(&pong)?).await {
                    break Err(write_error(e));
                }
            }
            open = async {
                let open = acked.wait_for(|a| *a >= need).await.map(|_| ());
                if open.is_ok() && !plan.interval.is_zero() {
                    tokio::time::sleep_until(due).await;
                }
                open
            } => {
                if open.is_err() {
                    // The reader ended: its result says why.
                    break match reader.await {
                        Ok(Ok(())) => Err(anyhow!("the server ended the session stream")),
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(anyhow!("reader task failed: {e}")),
                    };
                }
                fill(&mut batch, next, plan, &vms, &mut rng);
                let msg = AgentMessage::Telemetry(std::mem::take(&mut batch));
                let bytes = frame::encode(&msg).context("encoding a batch")?;
                if let AgentMessage::Telemetry(b) = msg {
                    batch = b;
                }
                let _ = sent_tx.send((next, Instant::now()));
                if let Err(e) = send.write_all(&bytes).await {
                    break Err(write_error(e));
                }
                progress.sent.store(next, Ordering::Relaxed);
                next += 1;
                due = (due + plan.interval).max(tokio::time::Instant::now());
            }
        }
    };
    let _ = send.finish();
    conn.close(0u32.into(), b"bench done");
    result
}

async fn read_loop(
    mut recv: quinn::RecvStream,
    idx: usize,
    mut last: u64,
    shared: Arc<Shared>,
    acks: watch::Sender<u64>,
    requests: mpsc::Sender<(u64, u64)>,
    mut sent: mpsc::UnboundedReceiver<(u64, Instant)>,
) -> anyhow::Result<()> {
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    loop {
        match framed::read::<ServerMessage>(&mut recv).await {
            Ok(Some(ServerMessage::Ack { seq })) => {
                if seq <= last {
                    continue;
                }
                shared
                    .acked_batches
                    .fetch_add(seq - last, Ordering::Relaxed);
                last = seq;
                if let Some(p) = shared.agents.get(idx) {
                    p.acked.store(seq, Ordering::Relaxed);
                }
                let now = Instant::now();
                while let Ok(s) = sent.try_recv() {
                    pending.push_back(s);
                }
                let measuring = shared.measuring.load(Ordering::Relaxed);
                while let Some(&(s, at)) = pending.front() {
                    if s > seq {
                        break;
                    }
                    pending.pop_front();
                    if measuring {
                        shared.latency.record(now - at);
                    }
                }
                acks.send_replace(seq);
            }
            Ok(Some(ServerMessage::Request { id, body })) => match body {
                ServerRequest::Ping { nonce } => {
                    if requests.send((id, nonce)).await.is_err() {
                        return Ok(());
                    }
                }
            },
            Ok(Some(other)) => bail!("unexpected message from the server: {other:?}"),
            Ok(None) => return Ok(()),
            Err(e) => return Err(read_error(e)),
        }
    }
}

/// The batch every send of agent `idx` reuses (only seq, times and values change), and
/// the guest resources that take turns in it.
fn template(idx: usize, plan: &Plan) -> anyhow::Result<(TelemetryBatch, Vec<Resource>)> {
    let node = ResourceId::new(format!("node:bench-{idx}"))?;
    let mut ids = vec![node.clone()];
    for k in 0..plan.vms {
        ids.push(ResourceId::new(format!("vm:bench-{idx}-{k}"))?);
    }
    let vms: Vec<Resource> = ids[1..]
        .iter()
        .map(|id| Resource {
            id: id.clone(),
            name: id.name().to_owned(),
            parent: Some(node.clone()),
            status: "running".to_owned(),
            attrs: vec![
                ("os".to_owned(), Value::from("debian-13")),
                ("vcpus".to_owned(), Value::Int(2)),
            ],
        })
        .collect();
    let node_res = Resource {
        id: node.clone(),
        name: format!("bench-{idx}"),
        parent: None,
        status: "online".to_owned(),
        attrs: vec![
            ("kernel".to_owned(), Value::from("6.12.0")),
            ("cores".to_owned(), Value::Int(8)),
        ],
    };
    let samples = (0..plan.samples)
        .map(|j| {
            let series = j % plan.series();
            Sample {
                resource_id: ids[series / METRICS.len()].clone(),
                metric: METRICS[series % METRICS.len()].to_owned(),
                ts_ms: 0,
                value: 0.0,
            }
        })
        .collect();
    let batch = TelemetryBatch {
        seq: 0,
        collector: "bench".to_owned(),
        collected_at_ms: 0,
        resources: vec![node_res],
        samples,
        health: Some(CollectorHealth {
            collector: "bench".to_owned(),
            status: HealthStatus::Ok,
            message: None,
            last_success_ms: None,
            duration_ms: 1,
        }),
        dropped_samples: 0,
    };
    Ok((batch, vms))
}

/// Turns the template into batch `seq`.
fn fill(batch: &mut TelemetryBatch, seq: u64, plan: &Plan, vms: &[Resource], rng: &mut u64) {
    let now = now_ms();
    batch.seq = seq;
    batch.collected_at_ms = now;
    let t0 = plan.base_ms + i64::try_from(seq).unwrap_or(i64::MAX / 2) * plan.stride_ms;
    for (j, s) in batch.samples.iter_mut().enumerate() {
        // xorshift64: cheap, varied values so the store sees realistic floats.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        s.ts_ms = t0 + j as i64;
        s.value = (*rng >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
    }
    // The node every time, plus one guest in turn: resource upserts in every batch.
    batch.resources.truncate(1);
    if !vms.is_empty() {
        let k = (seq % vms.len() as u64) as usize;
        batch.resources.extend(vms.get(k).cloned());
    }
    if let Some(h) = batch.health.as_mut() {
        h.last_success_ms = Some(now);
    }
}

// ---------------------------------------------------------------------------------------
// Cross-check through the history API.

/// For a few agents, counts the stored points of `node:bench-<i>` / `cpu_pct` over their
/// last batches: at least what was acknowledged, at most what was sent, must be stored.
async fn history_check(api: &Api, plan: &Plan, shared: &Shared) -> String {
    let n = shared.agents.len();
    let mut picks = vec![0, n / 2, n.saturating_sub(1)];
    picks.dedup();
    let per = plan.series0_per_batch();
    let mut ok = 0;
    let mut checked = 0;
    let mut problems = Vec::new();
    for idx in picks {
        let Some(p) = shared.agents.get(idx) else {
            continue;
        };
        if !p.welcomed.load(Ordering::Relaxed) {
            continue;
        }
        let (first, sent, acked) = (
            p.first_seq.load(Ordering::Relaxed),
            p.sent.load(Ordering::Relaxed),
            p.acked.load(Ordering::Relaxed),
        );
        if sent < first {
            continue;
        }
        checked += 1;
        let lo = first.max((sent + 1).saturating_sub(HISTORY_POINTS / per.max(1)));
        let min = acked.saturating_sub(lo - 1) * per;
        let max = (sent - lo + 1) * per;
        let seq_ms = |s: u64| plan.base_ms + i64::try_from(s).unwrap_or(0) * plan.stride_ms;
        let (from, to) = (seq_ms(lo) - 1, seq_ms(sent) + plan.samples as i64);
        let path = format!(
            "/api/metrics/history?resource_id=node%3Abench-{idx}&metric=cpu_pct&from={from}&to={to}"
        );
        match api.call(reqwest::Method::GET, &path, None).await {
            Ok(v) => {
                let got = v["points"].as_array().map_or(0, Vec::len) as u64;
                if (min..=max).contains(&got) {
                    ok += 1;
                } else {
                    problems.push(format!("agent{idx}:got={got},want={min}..={max}"));
                }
            }
            Err(e) => problems.push(format!("agent{idx}:{e:#}")),
        }
    }
    if problems.is_empty() {
        format!("ok({ok}/{checked})")
    } else {
        format!("FAILED({ok}/{checked};{})", problems.join(";"))
    }
}

// ---------------------------------------------------------------------------------------
// Measurements.

/// A latency histogram with 1 ms buckets.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..=LATENCY_MAX_MS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, d: Duration) {
        let ms = usize::try_from(d.as_millis())
            .unwrap_or(usize::MAX)
            .min(LATENCY_MAX_MS);
        if let Some(b) = self.buckets.get(ms) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The `q` quantile in ms, as text (`n/a` with no data, `>60000` past the last bucket).
    fn quantile(&self, q: f64) -> String {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return "n/a".into();
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (ms, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return if ms == LATENCY_MAX_MS {
                    format!(">{LATENCY_MAX_MS}")
                } else {
                    ms.to_string()
                };
            }
        }
        "n/a".into()
    }
}

/// Throughput per minute of the window, for long runs: does ingest slow down as the store
/// fills? Prints one line a minute and keeps every minute's rate.
struct Minutes {
    start_batches: u64,
    rates: Vec<f64>,
}

impl Minutes {
    fn new(acked_batches: u64) -> Self {
        Self {
            start_batches: acked_batches,
            rates: Vec::new(),
        }
    }

    /// Called every second or so; closes a minute when `elapsed` passes its end.
    fn tick(
        &mut self,
        elapsed: Duration,
        acked_batches: u64,
        samples_per_batch: usize,
        pid: u32,
        shared: &Shared,
    ) {
        if elapsed.as_secs() < 60 * (self.rates.len() as u64 + 1) {
            return;
        }
        let rate = acked_batches.saturating_sub(self.start_batches) as f64
            * samples_per_batch as f64
            / 60.0;
        self.start_batches = acked_batches;
        self.rates.push(rate);
        println!(
            "ingest-bench: minute={} stored_samples_per_s={rate:.0} server_rss_mib={:.1} sessions_lost={}",
            self.rates.len(),
            proc_status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
            shared.lost.load(Ordering::Relaxed)
        );
    }

    /// First against last whole minute (the issue's "within 20 % after an hour").
    fn summary(&self) -> Option<String> {
        let (first, last) = (self.rates.first()?, self.rates.last()?);
        let min = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        Some(format!(
            "minutes={} first_minute_samples_per_s={first:.0} last_minute_samples_per_s={last:.0} slowest_minute_samples_per_s={min:.0} last_over_first={:.2}",
            self.rates.len(),
            last / first.max(1.0)
        ))
    }
}

struct Snapshot {
    at: Instant,
    acked_batches: u64,
    server_ticks: u64,
    client_ticks: u64,
    server_runq_ns: u64,
    server_write_bytes: u64,
    threads: HashMap<u32, (String, u64)>,
    machine: CpuTimes,
}

impl Snapshot {
    fn take(shared: &Shared, pid: u32) -> Self {
        let threads = proc_threads(pid);
        Self {
            at: Instant::now(),
            acked_batches: shared.acked_batches.load(Ordering::Relaxed),
            server_ticks: proc_cpu_ticks(&format!("/proc/{pid}/stat")).unwrap_or(0),
            client_ticks: proc_cpu_ticks("/proc/self/stat").unwrap_or(0),
            server_runq_ns: proc_runqueue_ns(pid),
            server_write_bytes: proc_io(pid, "write_bytes:").unwrap_or(0),
            threads,
            machine: CpuTimes::read(),
        }
    }
}

fn proc_status_kib_from(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    proc_status_kib_from(&format!("/proc/{pid}/status"), key)
}

fn proc_status_kib_self(key: &str) -> Option<u64> {
    proc_status_kib_from("/proc/self/status", key)
}

fn proc_io(pid: u32, key: &str) -> Option<u64> {
    proc_status_kib_from(&format!("/proc/{pid}/io"), key)
}

/// `(comm, utime + stime)` from a `stat` file.
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // After ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn proc_cpu_ticks(path: &str) -> Option<u64> {
    parse_stat(&std::fs::read_to_string(path).ok()?).map(|(_, t)| t)
}

fn proc_threads(pid: u32) -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(s) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            out.insert(tid, s);
        }
    }
    out
}

/// Total time the server's live threads spent runnable but waiting for a CPU.
fn proc_runqueue_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The busiest server threads over the window, as `tid:name:pct,...`.
fn top_threads(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    secs: f64,
    k: usize,
) -> String {
    let mut deltas: Vec<(u32, &str, u64)> = after
        .iter()
        .map(|(tid, (name, t))| {
            let b = before.get(tid).map_or(0, |(_, t0)| *t0);
            (*tid, name.as_str(), t.saturating_sub(b))
        })
        .collect();
    deltas.sort_by_key(|d| std::cmp::Reverse(d.2));
    deltas
        .iter()
        .take(k)
        .map(|(tid, name, t)| {
            format!(
                "{tid}:{}:{:.0}",
                name.replace([' ', ','], "_"),
                *t as f64 / CLK_TCK / secs * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Machine-wide CPU times from `/proc/stat`.
#[derive(Default)]
struct CpuTimes {
    total: u64,
    idle: u64,
    iowait: u64,
}

struct CpuShare {
    busy_pct: f64,
    iowait_pct: f64,
}

impl CpuTimes {
    fn read() -> Self {
        let Ok(text) = std::fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
            return Self::default();
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        Self {
            total: v.iter().take(8).sum(),
            idle: v.get(3).copied().unwrap_or(0),
            iowait: v.get(4).copied().unwrap_or(0),
        }
    }

    fn since(&self, before: &Self) -> CpuShare {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        let idle = self.idle.saturating_sub(before.idle) as f64;
        let iowait = self.iowait.saturating_sub(before.iowait) as f64;
        CpuShare {
            busy_pct: (total - idle - iowait) / total * 100.0,
            iowait_pct: iowait / total * 100.0,
        }
    }
}

/// Total size of the files ending in `.ext` directly in `dir`.
fn dir_size(dir: &Path, ext: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Samples the server's threads every 10 ms during the window: how many are running, and
/// how often one of them is inside fsync (a commit waiting for the disk) or other file IO.
struct ThreadSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<ThreadStates>>,
}

#[derive(Default)]
struct ThreadStates {
    samples: u64,
    running: u64,
    fsync: u64,
    disk_io: u64,
}

impl ThreadStates {
    fn running_avg(&self) -> f64 {
        self.running as f64 / self.samples.max(1) as f64
    }

    fn pct(&self, n: u64) -> f64 {
        n as f64 / self.samples.max(1) as f64 * 100.0
    }
}

/// Syscall numbers of fsync/fdatasync, and of other file IO (pread64, pwrite64, preadv,
/// pwritev, read, write), as `/proc/<tid>/syscall` shows them.
#[cfg(target_arch = "x86_64")]
const SYSCALLS: (&[u64], &[u64]) = (&[74, 75], &[17, 18, 295, 296]);
#[cfg(target_arch = "aarch64")]
const SYSCALLS: (&[u64], &[u64]) = (&[82, 83], &[67, 68, 69, 70]);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALLS: (&[u64], &[u64]) = (&[], &[]);

impl ThreadSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("thread-sampler".into())
            .spawn(move || {
                let mut st = ThreadStates::default();
                let task_dir = PathBuf::from(format!("/proc/{pid}/task"));
                while !flag.load(Ordering::Relaxed) {
                    let Ok(dir) = std::fs::read_dir(&task_dir) else {
                        break;
                    };
                    let (mut fsync, mut io) = (false, false);
                    for e in dir.flatten() {
                        let stat =
                            std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                        let state = stat
                            .rfind(')')
                            .and_then(|i| stat.get(i + 2..i + 3))
                            .unwrap_or("?");
                        if state == "R" {
                            st.running += 1;
                        }
                        let call =
                            std::fs::read_to_string(e.path().join("syscall")).unwrap_or_default();
                        if let Some(nr) = call
                            .split_whitespace()
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                        {
                            fsync |= SYSCALLS.0.contains(&nr);
                            io |= SYSCALLS.1.contains(&nr);
                        }
                    }
                    st.samples += 1;
                    st.fsync += u64::from(fsync);
                    st.disk_io += u64::from(io);
                    std::thread::sleep(Duration::from_millis(10));
                }
                st
            })
            .ok();
        Self { stop, handle }
    }

    fn finish(mut self) -> ThreadStates {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}
