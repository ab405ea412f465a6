//! `warden demo`: the whole system on one machine. Starts the server in-process, enrolls
//! N `warden-agent` processes through the real token + QUIC path (one collects this
//! machine, the others simulate Proxmox-like nodes), prints where to look, and stops
//! everything on Ctrl-C.

use crate::config::{Overrides, RawConfig};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;
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
    /// Number of agents (one real, the rest simulated).
    #[arg(long, default_value_t = 5)]
    pub agents: u32,
}

/// Runs the demo until Ctrl-C, keeping its data under `data_dir` (default
/// `<tmp>/warden-demo`; an existing demo directory is reused).
///
/// # Errors
/// Missing agent binary, ports in use, enrollment failures.
pub async fn run(args: DemoArgs, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let dir = data_dir.unwrap_or_else(|| std::env::temp_dir().join("warden-demo"));
    let agent_bin = agent_binary()?;
    let overrides = Overrides {
        data_dir: Some(dir.join("server")),
        http_listen: Some(args.http.clone()),
        quic_listen: Some(args.quic.clone()),
        ..Default::default()
    };
    let cfg = RawConfig::default().validate(&overrides, Path::new("<demo>"))?;
    let server = crate::start(cfg).await?;
    let result = run_agents(&args, &dir, &agent_bin, &server).await;
    server.shutdown().await;
    result
}

async fn run_agents(
    args: &DemoArgs,
    dir: &Path,
    bin: &Path,
    server: &crate::Server,
) -> anyhow::Result<()> {
    let docker = Path::new("/var/run/docker.sock").exists();
    // Registered before anything starts, so Ctrl-C during setup still stops cleanly.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut children: Vec<Child> = Vec::new();
    let result = async {
        for i in 0..args.agents {
            let agent_dir = dir.join("agents").join(format!("agent-{i}"));
            std::fs::create_dir_all(&agent_dir).with_context(|| format!("creating {}", agent_dir.display()))?;
            let config = agent_dir.join("agent.toml");
            std::fs::write(&config, agent_config(i, &agent_dir, docker))?;
            if !agent_dir.join("identity").exists() {
                let token = crate::enroll::create_token(
                    &server.shared.store,
                    server.shared.pki.fingerprint(),
                    vec![server.quic_addr.to_string()],
                    warden_shared::DEFAULT_ORG,
                    Duration::from_secs(600),
                    crate::now_ms(),
                )?;
                let out = demo_command(bin)
                    .arg("--config")
                    .arg(&config)
                    .args(["enroll", "--token"])
                    .arg(token.encode())
                    .output()
                    .await
                    .context("running warden-agent enroll")?;
                if !out.status.success() {
                    bail!("agent {i} failed to enroll: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
            }
            let log = std::fs::File::create(agent_dir.join("agent.log"))?;
            let child = demo_command(bin)
                .arg("--config")
                .arg(&config)
                .arg("run")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("starting warden-agent")?;
            children.push(child);
            eprintln!("  agent {i} enrolled and started ({})", if i == 0 { "this machine" } else { "simulated Proxmox node" });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while server.shared.live.len() < args.agents as usize && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let token_path = server.admin_token_path.display();
        eprintln!(
            "\nwarden demo is running: {}/{} agents connected\n\n  API:          http://{http}/api/resources\n  admin token:  {token_path}\n  try:          curl -s -H \"Authorization: Bearer $(cat {token_path})\" http://{http}/api/agents\n  agent logs:   {}/agents/*/agent.log\n\nPress Ctrl-C to stop.",
            server.shared.live.len(),
            args.agents,
            dir.display(),
            http = server.http_addr,
        );
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("stopping...");
        Ok(())
    }
    .await;
    for c in &mut children {
        if let Some(pid) = c.id() {
            // SIGTERM lets each agent close its connection cleanly.
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

fn agent_config(i: u32, dir: &Path, docker: bool) -> String {
    let data = dir.display();
    if i == 0 {
        format!(
            "data_dir = \"{data}\"\n\n[collectors.host]\ninterval = \"5s\"\n\n[collectors.docker]\nenabled = {docker}\ninterval = \"10s\"\n"
        )
    } else {
        format!(
            "data_dir = \"{data}\"\nhostname = \"pve-demo-{i}\"\n\n[collectors.host]\nenabled = false\n\n[collectors.docker]\nenabled = false\n\n[collectors.simulated]\nseed = {i}\nguests = {}\nfirst_vmid = {}\ninterval = \"5s\"\n",
            4 + i * 2,
            100 * (i + 1)
        )
    }
}

/// `warden-agent` next to this executable (how cargo and the packages install them).
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let candidate = exe.with_file_name("warden-agent");
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "warden-agent not found next to {} (build both with `cargo build --release`)",
        exe.display()
    )
}
