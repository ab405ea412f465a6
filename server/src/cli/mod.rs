//! The `warden` command line: parse arguments, load and validate the config, set up logging,
//! then run the server or one of its admin commands. One file per command family: `audit`
//! (export and verify), `token`, `agent`, `findings`; `client` is the HTTP client of the
//! commands that call the running server.

mod agent;
mod audit;
mod client;
mod findings;
mod token;

use crate::config::{self, Overrides, RawConfig};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "warden", version, about = "Warden fleet watchdog server")]
struct Cli {
    /// Config file (default /etc/warden/server.toml; missing default means built-in defaults).
    #[arg(long, global = true, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// URL of the running server's HTTP API, for the commands that call it (default: the
    /// address the server wrote to `<data_dir>/http.addr`, else the config's `http_listen`).
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Run {
        /// HTTP API listen address (overrides the config file).
        #[arg(long)]
        http: Option<String>,
        /// QUIC listen address for agents (overrides the config file).
        #[arg(long)]
        quic: Option<String>,
        /// Agent certificate lifetime (for testing renewal).
        #[arg(long, hide = true)]
        cert_ttl: Option<String>,
        /// Protocol minor version to offer (compatibility testing: pose as an older server).
        #[arg(long, hide = true)]
        protocol_minor: Option<u16>,
    },
    /// Check the config file and print the effective settings.
    Validate,
    /// Join tokens for enrolling agents.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Manage enrolled agents.
    #[command(subcommand)]
    Agent(agent::AgentCmd),
    /// Print Patrol's current findings, most severe first (the server must be running).
    Findings {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Include resolved and dismissed findings, and those linked under a root finding.
        #[arg(long)]
        all: bool,
    },
    /// Run a whole demo fleet on this machine.
    Demo(crate::demo::DemoArgs),
    /// Export the audit log, or verify an export offline.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
}

/// Parses the command line and runs the command; the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    warden_io::process::init_tracing();
    match &cli.command {
        // Audit commands have their own exit codes (see `AuditCmd::Verify`).
        Command::Audit(cmd) => audit::main(&cli, cmd),
        _ => warden_io::process::run_main(true, real_main(cli)),
    }
}

fn load(cli: &Cli, overrides: Overrides) -> anyhow::Result<config::Config> {
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        ..overrides
    };
    let (raw, path) = RawConfig::load(cli.config.as_deref())?;
    Ok(raw.validate(&overrides, &path)?)
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    // Exactly one crypto provider; see PITFALLS.md.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match &cli.command {
        Command::Run {
            http,
            quic,
            cert_ttl,
            protocol_minor,
        } => {
            let cfg = load(
                &cli,
                Overrides {
                    http_listen: http.clone(),
                    quic_listen: quic.clone(),
                    cert_ttl: cert_ttl.clone(),
                    protocol_minor: *protocol_minor,
                    ..Default::default()
                },
            )?;
            let server = crate::start(cfg).await?;
            warden_io::process::wait_for_signal().await;
            server.shutdown().await;
            Ok(())
        }
        Command::Validate => validate(&cli),
        Command::Token(cmd) => token::run(&cli, cmd).await,
        Command::Agent(cmd) => agent::run(&cli, cmd).await,
        Command::Findings { json, all } => findings::run(&cli, *json, *all).await,
        Command::Demo(args) => crate::demo::run(args.clone(), cli.data_dir.clone()).await,
        // Dispatched by `main` before the runtime starts.
        Command::Audit(_) => anyhow::bail!("audit commands are dispatched by main"),
    }
}

/// `warden validate`: the effective settings.
fn validate(cli: &Cli) -> anyhow::Result<()> {
    let cfg = load(cli, Overrides::default())?;
    println!("config ok");
    println!("  data_dir    = {}", cfg.data_dir.display());
    println!("  http_listen = {}", cfg.http_listen);
    println!("  quic_listen = {}", cfg.quic_listen);
    println!("  advertise   = {}", cfg.advertise.join(", "));
    println!(
        "  cert_ttl    = {}",
        humantime::format_duration(cfg.cert_ttl)
    );
    println!(
        "  patrol_interval = {} (until settings are saved through the API)",
        crate::patrol::settings::format_interval(cfg.patrol_interval)
    );
    println!(
        "  alert_interval  = {}",
        humantime::format_duration(cfg.alert_interval)
    );
    Ok(())
}
