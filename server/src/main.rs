//! `warden` command line: parse arguments, load and validate the config, set up logging,
//! then run the server or one of its admin commands.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use warden_server::config::{self, Overrides, RawConfig};

#[derive(Parser)]
#[command(name = "warden", version, about = "Warden fleet watchdog server")]
struct Cli {
    /// Config file (default /etc/warden/server.toml; missing default means built-in defaults).
    #[arg(long, global = true, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
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
    Token(TokenCmd),
    /// Manage enrolled agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Run a whole demo fleet on this machine.
    Demo(warden_server::demo::DemoArgs),
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a one-time join token (the server must be running).
    Create {
        /// Token lifetime, e.g. 30m, 1h, 2d.
        #[arg(long)]
        ttl: Option<String>,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// List agents.
    List,
    /// Revoke an agent: it is disconnected and cannot connect again.
    Revoke {
        /// Agent id, as shown by `warden agent list`.
        id: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    warden_io::process::init_tracing();
    warden_io::process::run_main(true, real_main(cli))
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
            let server = warden_server::start(cfg).await?;
            warden_io::process::wait_for_signal().await;
            server.shutdown().await;
            Ok(())
        }
        Command::Validate => {
            let cfg = load(&cli, Overrides::default())?;
            println!("config ok");
            println!("  data_dir    = {}", cfg.data_dir.display());
            println!("  http_listen = {}", cfg.http_listen);
            println!("  quic_listen = {}", cfg.quic_listen);
            println!("  advertise   = {}", cfg.advertise.join(", "));
            println!(
                "  cert_ttl    = {}",
                humantime::format_duration(cfg.cert_ttl)
            );
            Ok(())
        }
        Command::Token(TokenCmd::Create { ttl }) => {
            let cfg = load(&cli, Overrides::default())?;
            let body = match ttl {
                Some(t) => serde_json::json!({ "ttl": t }),
                None => serde_json::json!({}),
            };
            let v = call(&cfg, reqwest::Method::POST, "/api/tokens", Some(body)).await?;
            let token = v["token"]
                .as_str()
                .context("server answered without a token")?;
            println!("{token}");
            eprintln!(
                "one-time join token, expires {}. On the new host run:\n  warden-agent enroll --token {token}",
                v["expires_at"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Command::Agent(AgentCmd::List) => {
            let cfg = load(&cli, Overrides::default())?;
            let v = call(&cfg, reqwest::Method::GET, "/api/agents", None).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Command::Agent(AgentCmd::Revoke { id }) => {
            let cfg = load(&cli, Overrides::default())?;
            call(
                &cfg,
                reqwest::Method::POST,
                &format!("/api/agents/{id}/revoke"),
                None,
            )
            .await?;
            println!("agent {id} revoked");
            Ok(())
        }
        Command::Demo(args) => warden_server::demo::run(args.clone(), cli.data_dir.clone()).await,
    }
}

/// Calls the running server's API with the admin token from the data directory.
async fn call(
    cfg: &config::Config,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let token = warden_server::read_admin_token(&cfg.data_dir)?;
    let mut addr = cfg.http_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}{path}");
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the warden server at {url}; is it running?"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let msg = v["error"]["message"].as_str().unwrap_or("no details");
        bail!("server answered {status}: {msg}");
    }
    Ok(v)
}
