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
            println!(
                "  patrol_interval = {} (until settings are saved through the API)",
                warden_server::patrol::settings::format_interval(cfg.patrol_interval)
            );
            println!(
                "  alert_interval  = {}",
                humantime::format_duration(cfg.alert_interval)
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
        Command::Findings { json, all } => {
            let cfg = load(&cli, Overrides::default())?;
            let filter = if *all {
                "include_linked=true"
            } else {
                "status=active"
            };
            // Every page, so the table and the JSON hold all of them.
            let mut found = Vec::new();
            loop {
                let path = format!(
                    "/api/ai/patrol/findings?{filter}&limit=500&offset={}",
                    found.len()
                );
                let page = call(&cfg, reqwest::Method::GET, &path, None).await?;
                let items = page["findings"].as_array().cloned().unwrap_or_default();
                let total = page["total"].as_u64().unwrap_or(0);
                let done = items.is_empty() || found.len() + items.len() >= total as usize;
                found.extend(items);
                if done {
                    break;
                }
            }
            let v = serde_json::json!({ "total": found.len(), "findings": found });
            if *json {
                println!("{}", serde_json::to_string_pretty(&v["findings"])?);
            } else {
                print!("{}", findings_table(&v));
            }
            Ok(())
        }
        Command::Demo(args) => warden_server::demo::run(args.clone(), cli.data_dir.clone()).await,
    }
}

/// The findings list as a table: severity, resource, title and how often it was seen, most
/// severe first (the API's order), with the recommendation under each.
fn findings_table(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let list = v["findings"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no findings\n".into();
    }
    let s = |f: &serde_json::Value, k: &str| f[k].as_str().unwrap_or("").to_owned();
    let width = list
        .iter()
        .map(|f| s(f, "resource_id").chars().count())
        .max()
        .unwrap_or(8)
        .clamp(8, 48);
    let mut out = format!(
        "{:<9} {:<width$} {:>5}  {}\n",
        "SEVERITY", "RESOURCE", "SEEN", "TITLE"
    );
    for f in &list {
        let mut title = s(f, "title");
        let related = f["related"].as_array().map_or(0, Vec::len);
        if related > 0 {
            let _ = write!(title, " [{related} linked]");
        }
        if f["status"] != "active" {
            let _ = write!(title, " ({})", s(f, "status"));
        }
        let _ = writeln!(
            out,
            "{:<9} {:<width$} {:>4}x  {title}",
            s(f, "severity").to_uppercase(),
            s(f, "resource_id"),
            f["times_raised"].as_u64().unwrap_or(0),
        );
        let _ = writeln!(
            out,
            "{:<9} {:<width$}        -> {}",
            "",
            "",
            s(f, "recommendation")
        );
    }
    let total = v["total"].as_u64().unwrap_or(list.len() as u64);
    if total > list.len() as u64 {
        let _ = writeln!(
            out,
            "({} of {total} shown; use --json for all fields)",
            list.len()
        );
    }
    out
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
