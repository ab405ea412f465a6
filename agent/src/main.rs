//! `warden-agent` command line: parse arguments, load and validate the config, set up
//! logging, then enroll or run.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use warden_agent::config::{self, RawConfig};
use warden_shared::proto::ProtocolVersion;

#[derive(Parser)]
#[command(name = "warden-agent", version, about = "Warden host agent")]
struct Cli {
    /// Config file (default /etc/warden/agent.toml; a missing default means built-in defaults).
    #[arg(long, global = true, env = "WARDEN_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Protocol minor version to offer (compatibility testing).
        #[arg(long, hide = true)]
        protocol_minor: Option<u16>,
    },
    /// Enroll with a server using a join token from `warden token create`.
    Enroll {
        /// Server QUIC address (default: the addresses inside the token).
        #[arg(long)]
        server: Option<String>,
        /// The join token.
        #[arg(long, env = "WARDEN_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Succeed without doing anything when this agent is already enrolled (for init
        /// containers and provisioning scripts that run on every start).
        #[arg(long)]
        if_needed: bool,
    },
    /// Check the config file and print the effective settings.
    Validate,
}

/// How long exiting waits for blocking work left running (a sysinfo read stuck on a hung
/// filesystem, a DNS lookup): the spool is durable, so none of it needs to finish.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    warden_io::process::init_tracing();
    // A current-thread runtime keeps the agent small; its work is IO-bound.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(real_main(cli));
    // Dropping the runtime would wait for every blocking task, however long it hangs.
    rt.shutdown_timeout(EXIT_GRACE);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<config::Config> {
    let (mut raw, path) = RawConfig::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        raw.data_dir.clone_from(d);
    }
    Ok(raw.validate(&path)?)
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = load(&cli)?;
    match cli.command {
        Command::Validate => {
            println!("config ok");
            println!("  data_dir = {}", cfg.data_dir.display());
            println!("  hostname = {}", cfg.hostname);
            println!("  spool    = {} KiB", cfg.spool_max_bytes >> 10);
            for (name, interval, timeout) in cfg.collectors.timings() {
                println!(
                    "  {name:<8} = every {}, timeout {}",
                    humantime::format_duration(interval),
                    humantime::format_duration(timeout)
                );
            }
            println!(
                "  enrolled = {}",
                warden_agent::identity::Identity::exists(&cfg.data_dir)
            );
            Ok(())
        }
        Command::Enroll {
            server,
            token,
            if_needed,
        } => {
            if if_needed && warden_agent::identity::Identity::exists(&cfg.data_dir) {
                println!("already enrolled; nothing to do");
                return Ok(());
            }
            let id = warden_agent::enroll::enroll(
                &cfg.data_dir,
                server.as_deref(),
                &token,
                &cfg.hostname,
            )
            .await?;
            println!(
                "enrolled as {} (organisation {}); start the agent with `warden-agent run`",
                id.meta.agent_id, id.meta.org_id
            );
            Ok(())
        }
        Command::Run { protocol_minor } => {
            let mut opts = warden_agent::RunOptions::default();
            if let Some(minor) = protocol_minor {
                opts.protocol = ProtocolVersion {
                    major: ProtocolVersion::CURRENT.major,
                    minor,
                };
            }
            let (tx, rx) = tokio::sync::watch::channel(false);
            let signals = tokio::spawn(async move {
                warden_io::process::wait_for_signal().await;
                let _ = tx.send(true);
            });
            let r = warden_agent::run(cfg, opts, rx).await;
            signals.abort();
            r
        }
    }
}
