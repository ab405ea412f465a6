//! `warden demo`: the whole system on one machine. Starts the server in-process and the
//! simulated fleet (`warden-sim fleet`: a 3-node Proxmox VE cluster, a Proxmox Backup Server
//! and a small Kubernetes cluster, with seeded trouble), enrolls one `warden-agent` process
//! per system through the real token + QUIC path (plus one for this machine and its Docker
//! containers), prints where to look, and stops everything on Ctrl-C. See `docs/demo.md`.
//! `warden-agent` and `warden-sim` are taken from the directory of the running `warden`
//! executable, whether built from source (`target/release/`) or installed (`/usr/bin/`).

use crate::chain::event::{Actor, NewEvent};
use crate::config::{Overrides, RawConfig};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

/// Demo options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
    /// QUIC address for agents.
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub quic: String,
    /// When the simulated PVE node `pve3` goes down (the "node that stops reporting").
    #[arg(long, default_value = "3m")]
    pub node_down_after: humantime::Duration,
}

/// Runs the demo until Ctrl-C, keeping its data under `data_dir` (default
/// `<tmp>/warden-demo`; an existing demo directory is reused).
///
/// # Errors
/// Missing agent binary, ports in use, enrollment failures.
pub async fn run(args: DemoArgs, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = data_dir.unwrap_or_else(|| std::env::temp_dir().join("warden-demo"));
    let agent_bin = sibling_binary("warden-agent")?;
    let sim_bin = sibling_binary("warden-sim")?;
    let overrides = Overrides {
        data_dir: Some(dir.join("server")),
        http_listen: Some(args.http.clone()),
        quic_listen: Some(args.quic.clone()),
        ..Default::default()
    };
    // The demo keeps its own audit key-encryption key, so its audit log is signed.
    std::fs::create_dir_all(&dir)?;
    let kek_file = dir.join("audit-kek");
    if !kek_file.exists() {
        warden_io::fs::write_private(
            &kek_file,
            hex::encode(rand::random::<[u8; 32]>()).as_bytes(),
        )?;
    }
    let raw = RawConfig {
        audit_kek_file: kek_file,
        ..RawConfig::default()
    };
    let cfg = raw.validate(&overrides, Path::new("<demo>"))?;
    let server = crate::start(cfg).await?;
    let result = run_fleet(&args, &dir, &agent_bin, &sim_bin, &server).await;
    server.shutdown().await;
    result
}

/// One agent of the demo: its name and the collector sections of its `agent.toml`.
struct DemoAgent {
    name: String,
    what: String,
    collectors: String,
}

/// The simulated PVE node that goes down during the demo.
const DOWN_NODE: &str = "pve3";

/// Where the simulators listen and how to authenticate: `warden-sim fleet`'s first line.
#[derive(serde::Deserialize)]
struct Fleet {
    pve: Api,
    pbs: Api,
    kubernetes: Kube,
    #[serde(default)]
    history: Vec<Trend>,
}

/// A seeded level and how it got there: `per_hour` percentage points per hour.
#[derive(serde::Deserialize)]
struct Trend {
    resource_id: String,
    metric: String,
    per_hour: f64,
}

/// Hours of history the demo fills in, and its step.
const BACKFILL_HOURS: i64 = 12;
const BACKFILL_STEP_MS: i64 = 300_000;
/// How often the demo runs Patrol (its accelerated schedule).
const DEMO_PATROL_EVERY: Duration = Duration::from_secs(20);

#[derive(serde::Deserialize)]
struct Api {
    url: String,
    fingerprint: String,
    token_id: String,
    token_secret: String,
    #[serde(default)]
    nodes: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Kube {
    kubeconfig: PathBuf,
}

/// The agents of the fleet, in start order.
fn agents(fleet: &Fleet, dir: &Path, docker: bool) -> anyhow::Result<Vec<DemoAgent>> {
    let secret = |name: &str, value: &str| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        warden_io::fs::write_private(&path, format!("{value}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let off = "[collectors.host]\nenabled = false\n\n[collectors.docker]\nenabled = false\n";
    let mut list = vec![DemoAgent {
        name: "this-machine".into(),
        what: "this machine and its Docker containers".into(),
        collectors: format!(
            "[collectors.host]\ninterval = \"5s\"\n\n[collectors.docker]\nenabled = {docker}\ninterval = \"10s\"\n"
        ),
    }];
    let pve_secret = secret("pve-token", &fleet.pve.token_secret)?;
    for node in &fleet.pve.nodes {
        list.push(DemoAgent {
            name: node.clone(),
            what: format!("Proxmox VE node {node}"),
            collectors: format!(
                "{off}\n[collectors.proxmox]\nenabled = true\nurl = \"{}\"\ntoken_id = \"{}\"\ntoken_secret_file = \"{}\"\nfingerprint = \"{}\"\nnode = \"{node}\"\ninterval = \"10s\"\ntimeout = \"5s\"\n",
                fleet.pve.url,
                fleet.pve.token_id,
                pve_secret.display(),
                fleet.pve.fingerprint
            ),
        });
    }
    let pbs_secret = secret("pbs-token", &fleet.pbs.token_secret)?;
    list.push(DemoAgent {
        name: "pbs1".into(),
        what: "Proxmox Backup Server pbs1".into(),
        collectors: format!(
            "{off}\n[collectors.pbs]\nenabled = true\nurl = \"{}\"\ntoken_id = \"{}\"\ntoken_secret_file = \"{}\"\nfingerprint = \"{}\"\ninterval = \"15s\"\ntimeout = \"5s\"\n",
            fleet.pbs.url,
            fleet.pbs.token_id,
            pbs_secret.display(),
            fleet.pbs.fingerprint
        ),
    });
    list.push(DemoAgent {
        name: "k8s-demo".into(),
        what: "Kubernetes cluster demo-k8s".into(),
        collectors: format!(
            "{off}\n[collectors.kubernetes]\nenabled = true\ncluster = \"demo-k8s\"\nkubeconfig = \"{}\"\ninterval = \"10s\"\ntimeout = \"5s\"\n",
            fleet.kubernetes.kubeconfig.display()
        ),
    });
    Ok(list)
}

/// Starts `warden-sim fleet` and reads where its simulators listen.
async fn start_fleet(bin: &Path, dir: &Path, args: &DemoArgs) -> anyhow::Result<(Child, Fleet)> {
    let mut child = demo_command(bin)
        .arg("fleet")
        .arg("--dir")
        .arg(dir)
        .arg("--node-down-after")
        .arg(args.node_down_after.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("warden-sim.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting warden-sim")?;
    let stdout = child.stdout.take().context("warden-sim stdout")?;
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    let read = reader.read_line(&mut line);
    match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => bail!(
            "warden-sim did not start; see {}",
            dir.join("warden-sim.log").display()
        ),
    }
    let fleet = serde_json::from_str(&line).context("reading warden-sim's endpoints")?;
    Ok((child, fleet))
}

async fn run_fleet(
    args: &DemoArgs,
    dir: &Path,
    agent_bin: &Path,
    sim_bin: &Path,
    server: &crate::Server,
) -> anyhow::Result<()> {
    let docker = Path::new("/var/run/docker.sock").exists();
    // Registered before anything starts, so Ctrl-C during setup still stops cleanly.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let sim_dir = dir.join("sim");
    std::fs::create_dir_all(&sim_dir).with_context(|| format!("creating {}", sim_dir.display()))?;
    eprintln!("  starting the simulated fleet (Proxmox VE, Proxmox Backup Server, Kubernetes)");
    let (sim, fleet) = start_fleet(sim_bin, &sim_dir, args).await?;
    let started = tokio::time::Instant::now();
    let mut children: Vec<Child> = vec![sim];
    let list = agents(&fleet, &sim_dir, docker)?;
    let result = async {
        for agent in &list {
            let agent_dir = dir.join("agents").join(&agent.name);
            std::fs::create_dir_all(&agent_dir)
                .with_context(|| format!("creating {}", agent_dir.display()))?;
            let config = agent_dir.join("agent.toml");
            std::fs::write(
                &config,
                format!(
                    "data_dir = \"{}\"\nhostname = \"{}\"\n\n{}",
                    agent_dir.display(),
                    agent.name,
                    agent.collectors
                ),
            )?;
            if !agent_dir.join("identity").exists() {
                let token = crate::enroll::create_token(
                    &server.ctx.store,
                    server.ctx.pki.fingerprint(),
                    vec![server.quic_addr.to_string()],
                    warden_shared::DEFAULT_ORG,
                    Duration::from_secs(600),
                    crate::clock::now_ms(),
                )?;
                let created = NewEvent::new(Actor::system("demo"), "token.create", &token.id)
                    .details(serde_json::json!({ "kind": "join", "ttl_s": 600, "for": agent.name }));
                server.ctx.audit.record(created).await;
                let out = demo_command(agent_bin)
                    .arg("--config")
                    .arg(&config)
                    .args(["enroll", "--token"])
                    .arg(token.encode())
                    .output()
                    .await
                    .context("running warden-agent enroll")?;
                if !out.status.success() {
                    bail!(
                        "agent {} failed to enroll: {}",
                        agent.name,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
            let log = std::fs::File::create(agent_dir.join("agent.log"))?;
            let child = demo_command(agent_bin)
                .arg("--config")
                .arg(&config)
                .arg("run")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("starting warden-agent")?;
            children.push(child);
            eprintln!("  agent {:<13} enrolled and started ({})", agent.name, agent.what);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while server.ctx.live.len() < list.len() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let token_path = server.admin_token_path.display();
        eprintln!(
            "\nwarden demo is running: {}/{} agents connected\n\n  API:          http://{http}/api/resources\n  admin token:  {token_path}\n  try:          curl -s -H \"Authorization: Bearer $(cat {token_path})\" http://{http}/api/agents\n  agent logs:   {}/agents/*/agent.log\n  what to look for: docs/demo.md (pve3 goes down after {})\n\nPress Ctrl-C to stop.",
            server.ctx.live.len(),
            list.len(),
            dir.display(),
            args.node_down_after,
            http = server.http_addr,
        );
        match backfill(server, &fleet.history).await {
            Ok(n) => eprintln!("  filled in {BACKFILL_HOURS} h of history for {n} seeded trends"),
            Err(e) => eprintln!("  could not fill in history ({e:#}); forecasts need a while"),
        }
        // The node that stops reporting: when the simulator powers pve3 off, its agent goes
        // silent too, as it would on real hardware.
        let down = tokio::time::sleep_until(started + *args.node_down_after);
        tokio::pin!(down);
        let mut down_done = false;
        let mut patrol = tokio::time::interval(DEMO_PATROL_EVERY);
        let mut first_patrol = true;
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                _ = patrol.tick() => match patrol_once(server).await {
                    Ok(rec) if first_patrol => {
                        first_patrol = false;
                        eprintln!(
                            "  patrol: {} findings so far (runs every {}s here; see `warden findings`)",
                            rec.new + rec.existing,
                            DEMO_PATROL_EVERY.as_secs()
                        );
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("  patrol run failed: {e:#}"),
                },
                () = &mut down, if !down_done => {
                    down_done = true;
                    let pve3 = list.iter().position(|a| a.name == DOWN_NODE);
                    if let Some(pid) = pve3.and_then(|i| children[i + 1].id()) {
                        send_term(pid);
                        eprintln!("  {DOWN_NODE} went down (simulated): the cluster shows it offline and its agent is silent");
                    }
                }
            }
        }
        eprintln!("stopping...");
        Ok(())
    }
    .await;
    // Agents first (SIGTERM lets each close its connection cleanly), the simulators last.
    for c in children.iter_mut().rev() {
        if let Some(pid) = c.id() {
            send_term(pid);
        }
    }
    for c in &mut children {
        if tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
    result
}

/// Fills in the past of each seeded trend: 12 h of 5-minute points ending where its first
/// report stands, stored as if an agent had sent them, so sustained levels and forecasts show
/// at once instead of after hours. Waits up to a minute for the first reports.
async fn backfill(server: &crate::Server, trends: &[Trend]) -> anyhow::Result<usize> {
    use warden_shared::ids::ResourceId;
    use warden_shared::telemetry::{Sample, TelemetryBatch};
    let store = server.ctx.store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut samples = Vec::new();
    for t in trends {
        let id = ResourceId::new(&t.resource_id)?;
        let first = loop {
            let (store, rid, metric) = (store.clone(), t.resource_id.clone(), t.metric.clone());
            let latest = tokio::task::spawn_blocking(move || {
                store
                    .get_resource(warden_shared::DEFAULT_ORG, &rid)
                    .map(|r| r.and_then(|r| r.latest.get(&metric).cloned()))
            })
            .await??;
            if let Some(l) = latest {
                break l;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} has not reported {} yet", t.resource_id, t.metric);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // A point a minute for the last half hour (so 10-minute windows are covered), then
        // one every 5 minutes.
        let fine = (1..=30).map(|m| m * 60_000);
        let coarse =
            (7..=BACKFILL_HOURS * 3_600_000 / BACKFILL_STEP_MS).map(|i| i * BACKFILL_STEP_MS);
        for (i, back_ms) in fine.chain(coarse).enumerate() {
            let i = i64::try_from(i).unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            let hours = back_ms as f64 / 3_600_000.0;
            // A little deterministic wobble, as real usage has.
            #[allow(clippy::cast_precision_loss)]
            let wobble = ((i * 7919) % 11) as f64 / 25.0 - 0.2;
            samples.push(Sample {
                resource_id: id.clone(),
                metric: t.metric.clone(),
                ts_ms: first.ts_ms - back_ms,
                value: (first.value - t.per_hour * hours + wobble).clamp(0.0, 100.0),
            });
        }
    }
    let now = crate::clock::now_ms();
    let item = crate::model::IngestItem {
        agent_id: "demo-history".into(),
        org_id: warden_shared::DEFAULT_ORG.into(),
        batch: TelemetryBatch {
            // Above any earlier demo run's in the same data directory.
            seq: u64::try_from(now).unwrap_or(1),
            collector: "demo-history".into(),
            collected_at_ms: now,
            samples,
            ..TelemetryBatch::default()
        },
        provenance: Vec::new(),
    };
    tokio::task::spawn_blocking(move || store.ingest(&[item], now)).await??;
    Ok(trends.len())
}

/// One Patrol run with the saved settings, as the demo's accelerated schedule.
async fn patrol_once(server: &crate::Server) -> anyhow::Result<crate::store::PatrolRunRecord> {
    let (store, schedule) = (server.ctx.store.clone(), server.ctx.patrol.clone());
    let org = warden_shared::DEFAULT_ORG;
    Ok(tokio::task::spawn_blocking(move || {
        let settings = crate::patrol::run::run_settings(&store, org, &schedule)?;
        crate::patrol::run::run(
            &store,
            org,
            &crate::patrol::run::Trigger::Manual,
            crate::clock::now_ms(),
            &settings,
        )
    })
    .await??)
}

/// The demo is the one server path that starts processes: the agents it runs.
fn demo_command(bin: &Path) -> Command {
    Command::new(bin)
}

fn send_term(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// `name` in the directory of this executable: the one rule for the demo's binaries, as
/// `cargo build --bins` puts them in `target/<profile>/` and an installation in `/usr/bin/`.
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let candidate = exe.with_file_name(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "{} not found: `warden demo` needs {name} in the same directory as warden (from source: `cargo build --release --bins`)",
        candidate.display()
    )
}
