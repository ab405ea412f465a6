//! `warden` command line: parse arguments, load and validate the config, set up logging,
//! then run the server or one of its admin commands.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use warden_server::audit::{export as audit_export, keys as audit_keys};
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
    /// Export the audit log, or verify an export offline.
    #[command(subcommand)]
    Audit(AuditCmd),
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Write the audit log as JSONL: a header, the events in order, then the checkpoints
    /// covering them. Online (through the running server) unless --offline.
    Export {
        /// First event: a sequence number or an RFC 3339 time (default: the oldest kept).
        #[arg(long)]
        from: Option<String>,
        /// Last event: a sequence number or an RFC 3339 time (default: the head, after
        /// asking the server for a checkpoint there).
        #[arg(long)]
        to: Option<String>,
        /// Read the store of a stopped server in --data-dir directly.
        #[arg(long)]
        offline: bool,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify an export file offline. Exit 0: intact and complete up to its checkpoints;
    /// 1: tampered; 2: usage or IO error; 3: intact but unsigned events. HMAC signatures are
    /// checked only with an explicit --data-dir whose keys load (KEK available).
    Verify {
        /// The export (JSONL).
        file: PathBuf,
        /// A checkpoint received outside the file (e.g. by webhook); the file must reach it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The trusted checkpoint public key (hex); default: the --checkpoint's, else the
        /// file's own.
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a one-time join token (the server must be running).
    Create {
        /// Token lifetime, e.g. 30m, 1h, 2d.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List join tokens (ids and state; secrets are never stored).
    List,
    /// Revoke an unused join token.
    Revoke {
        /// Token id, as shown by `warden token list`.
        id: String,
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
    match &cli.command {
        // Audit commands have their own exit codes (see `AuditCmd::Verify`).
        Command::Audit(cmd) => audit_main(&cli, cmd),
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
            let api = Api::new(&cli)?;
            let body = match ttl {
                Some(t) => serde_json::json!({ "ttl": t }),
                None => serde_json::json!({}),
            };
            let v = api
                .call(reqwest::Method::POST, "/api/tokens", Some(body))
                .await?;
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
        Command::Token(TokenCmd::List) => {
            let api = Api::new(&cli)?;
            let tokens = api.list_all("/api/tokens").await?;
            let s = |t: &serde_json::Value, k: &str| t[k].as_str().unwrap_or("-").to_owned();
            println!("{:<18} {:<8} {:<26} USED BY", "ID", "STATE", "EXPIRES");
            for t in &tokens {
                println!(
                    "{:<18} {:<8} {:<26} {}",
                    s(t, "id"),
                    s(t, "state"),
                    s(t, "expires_at"),
                    s(t, "used_by")
                );
            }
            Ok(())
        }
        Command::Token(TokenCmd::Revoke { id }) => {
            let api = Api::new(&cli)?;
            api.call(reqwest::Method::DELETE, &format!("/api/tokens/{id}"), None)
                .await?;
            println!("join token {id} revoked");
            Ok(())
        }
        Command::Agent(AgentCmd::List) => {
            let api = Api::new(&cli)?;
            let agents = api.list_all("/api/agents").await?;
            println!("{}", serde_json::to_string_pretty(&agents)?);
            Ok(())
        }
        Command::Agent(AgentCmd::Revoke { id }) => {
            let api = Api::new(&cli)?;
            api.call(
                reqwest::Method::POST,
                &format!("/api/agents/{id}/revoke"),
                None,
            )
            .await?;
            println!("agent {id} revoked");
            Ok(())
        }
        Command::Findings { json, all } => {
            let api = Api::new(&cli)?;
            let filter = if *all {
                "include_linked=true"
            } else {
                "status=active"
            };
            // Every page, so the table and the JSON hold all of them.
            let found = api
                .list_all(&format!("/api/ai/patrol/findings?{filter}"))
                .await?;
            let v = serde_json::json!({ "total": found.len(), "findings": found });
            if *json {
                println!("{}", serde_json::to_string_pretty(&v["findings"])?);
            } else {
                print!("{}", findings_table(&v));
            }
            Ok(())
        }
        Command::Demo(args) => warden_server::demo::run(args.clone(), cli.data_dir.clone()).await,
        // Dispatched by `main` before the runtime starts.
        Command::Audit(_) => bail!("audit commands are dispatched by main"),
    }
}

/// Runs an audit command; errors are usage or IO errors (exit 2).
fn audit_main(cli: &Cli, cmd: &AuditCmd) -> std::process::ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(audit_cmd(cli, cmd)),
        Err(e) => Err(anyhow::Error::new(e).context("starting the runtime")),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(audit_export::EXIT_USAGE)
        }
    }
}

async fn audit_cmd(cli: &Cli, cmd: &AuditCmd) -> anyhow::Result<u8> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cmd {
        AuditCmd::Export {
            from,
            to,
            offline,
            output,
        } => {
            let cfg = load(cli, Overrides::default())?;
            let from = from
                .as_deref()
                .map(|s| audit_export::Bound::parse("--from", s))
                .transpose()?;
            let to = to
                .as_deref()
                .map(|s| audit_export::Bound::parse("--to", s))
                .transpose()?;
            let out: Box<dyn std::io::Write> = match output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut progress = |done: u64, total: u64| {
                eprintln!("exported {done} of {total} events");
            };
            let done = if *offline {
                export_offline(&cfg, from, to, out, &mut progress)?
            } else {
                export_online(&Api::new(cli)?, from, to, out, &mut progress).await?
            };
            eprintln!(
                "exported {} events (seq {} to {}) and {} checkpoints{}",
                done.events,
                done.from_seq,
                done.to_seq,
                done.checkpoints,
                output
                    .as_ref()
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(audit_export::EXIT_OK)
        }
        AuditCmd::Verify {
            file,
            checkpoint,
            public_key,
        } => {
            let checkpoint = checkpoint
                .as_ref()
                .map(|p| {
                    let bytes =
                        std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                    audit_export::parse_checkpoint(&bytes)
                        .with_context(|| format!("{}", p.display()))
                })
                .transpose()?;
            if let Some(pk) = public_key
                && (pk.len() != 64 || hex::decode(pk).is_err())
            {
                bail!("--public-key must be 64 hex digits (an Ed25519 public key)");
            }
            // HMAC keys only from a data directory named on the command line: the default
            // one belongs to whatever server runs here, not necessarily the file's.
            let mut signing_note = None;
            let signing = cli.data_dir.as_ref().map(|dir| {
                let kek_file = load(cli, Overrides::default()).map_or_else(
                    |_| audit_keys::DEFAULT_KEK_FILE.into(),
                    |c| c.audit.kek_file,
                );
                audit_keys::load(dir, &kek_file, false)
            });
            if let Some(audit_keys::Signing::Unavailable(why)) = &signing {
                signing_note = Some(format!("signatures not checked: {why}"));
            }
            let trust = audit_export::Trust {
                checkpoint: checkpoint.as_ref(),
                public_key: public_key.as_deref(),
                keys: signing.as_ref().and_then(audit_keys::Signing::keys),
            };
            let verdict = audit_export::verify_path(file, &trust)?;
            println!("file: {}", file.display());
            if let Some(n) = signing_note {
                println!("note: {n}");
            }
            print!("{}", verdict.summary());
            Ok(verdict.exit_code())
        }
    }
}

/// `warden audit export --offline`: straight from the stopped server's store.
fn export_offline(
    cfg: &config::Config,
    from: Option<audit_export::Bound>,
    to: Option<audit_export::Bound>,
    out: Box<dyn std::io::Write>,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<audit_export::Exported> {
    let store = audit_export::open_store(&cfg.data_dir)?;
    let public_key = match audit_keys::load(&cfg.data_dir, &cfg.audit.kek_file, false) {
        audit_keys::Signing::Ready { keys, .. } => Some(keys.public_key()),
        audit_keys::Signing::Unavailable(why) => {
            eprintln!("warning: no public key in the export header: {why}");
            None
        }
    };
    let spec = audit_export::ExportSpec {
        org: warden_shared::DEFAULT_ORG.to_owned(),
        from,
        to,
        public_key,
        exported_at: now_rfc3339(),
    };
    Ok(audit_export::export_store(&store, spec, out, progress)?)
}

fn now_rfc3339() -> String {
    warden_server::rfc3339_ms(warden_server::now_ms()).unwrap_or_default()
}

/// `warden audit export` through the running server's API.
async fn export_online(
    api: &Api,
    from: Option<audit_export::Bound>,
    to: Option<audit_export::Bound>,
    out: Box<dyn std::io::Write>,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<audit_export::Exported> {
    use audit_export::Bound;
    use reqwest::Method;
    let get = async |path: String| api.call(Method::GET, &path, None).await;
    // The first or last event at a time, as the API's time filters see it.
    let first_page_seq = |query: String| async move {
        let v = api
            .call(Method::GET, &format!("/api/audit?limit=1&{query}"), None)
            .await?;
        Ok::<_, anyhow::Error>(v["items"][0]["seq"].as_u64())
    };
    // Exporting to the head: a checkpoint there first, so the export ends on one.
    let head = if to.is_none() {
        let v = api
            .call(Method::POST, "/api/audit/checkpoints", None)
            .await
            .context("asking for a checkpoint at the head (is the audit log empty?)")?;
        v["checkpoint"]["tree_size"]
            .as_u64()
            .context("the server answered without a checkpoint")?
    } else {
        let v = get("/api/audit/status".into()).await?;
        v["chains"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["org_id"] == warden_shared::DEFAULT_ORG))
            .and_then(|c| c["head_seq"].as_u64())
            .context("the audit log is empty")?
    };
    let oldest = first_page_seq("order=asc".into()).await?.unwrap_or(1);
    let from_seq = match from {
        None => oldest,
        Some(Bound::Seq(s)) => s.max(oldest),
        Some(Bound::Time(t)) => first_page_seq(format!("order=asc&since={t}"))
            .await?
            .unwrap_or(u64::MAX),
    };
    let to_seq = match to {
        None => head,
        Some(Bound::Seq(s)) => s.min(head),
        Some(Bound::Time(t)) => first_page_seq(format!("order=desc&until={t}"))
            .await?
            .unwrap_or(0),
    };
    if from_seq > to_seq {
        bail!("nothing to export: no events in that range (the log holds {oldest} to {head})");
    }
    let cp_to = if to.is_none() {
        String::new()
    } else {
        format!("&to={to_seq}")
    };
    let cps = get(format!(
        "/api/audit/checkpoints?from={}{cp_to}",
        from_seq.saturating_sub(1)
    ))
    .await?;
    let checkpoints: Vec<warden_server::audit::event::Checkpoint> =
        serde_json::from_value(cps["checkpoints"].clone())
            .context("the server's checkpoints did not parse")?;
    let header = audit_export::Header {
        version: audit_export::FORMAT_VERSION,
        org_id: warden_shared::DEFAULT_ORG.to_owned(),
        public_key: cps["public_key"].as_str().map(str::to_owned),
        from_seq,
        to_seq,
        exported_at: now_rfc3339(),
    };
    let mut w = audit_export::ExportWriter::new(out, &header)?;
    let total = to_seq - from_seq + 1;
    let first = format!("/api/audit?order=asc&limit=1000&after={}", from_seq - 1);
    let mut path = first.clone();
    'pages: loop {
        let page = get(path).await?;
        let events = page["items"].as_array().cloned().unwrap_or_default();
        for v in events {
            let hash = v["hash"]
                .as_str()
                .and_then(warden_server::audit::event::parse_hash)
                .context("an event from the server has no hash")?;
            let e: warden_server::audit::event::Event =
                serde_json::from_value(v).context("an event from the server did not parse")?;
            if e.seq > to_seq {
                break 'pages;
            }
            w.event(&e, &hash)?;
            if w.events().is_multiple_of(audit_export::PROGRESS_EVERY) {
                progress(w.events(), total);
            }
        }
        match page["next"].as_str() {
            Some(next) => path = format!("{first}&cursor={next}"),
            None => break,
        }
    }
    for cp in &checkpoints {
        w.checkpoint(cp)?;
    }
    let (events, checkpoints) = w.finish()?;
    Ok(audit_export::Exported {
        from_seq,
        to_seq,
        events,
        checkpoints,
    })
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

/// The running server's HTTP API, called with the admin token from the data directory.
struct Api {
    /// Base URL, without a trailing slash.
    base: String,
    /// Where `base` came from, for the error when nothing answers there.
    origin: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    /// Finds the server: `--server`, else the address it wrote to its data directory, else
    /// the config's `http_listen`.
    fn new(cli: &Cli) -> anyhow::Result<Self> {
        let cfg = load(cli, Overrides::default())?;
        let token = warden_server::read_admin_token(&cfg.data_dir)?;
        let (base, origin) = match &cli.server {
            Some(url) => (server_url(url)?, "--server".to_owned()),
            None => {
                let file = cfg.data_dir.join(warden_server::HTTP_ADDR_FILE);
                match std::fs::read_to_string(&file) {
                    Ok(text) => {
                        let addr = text.trim().parse().with_context(|| {
                            format!(
                                "{} does not hold an address; pass --server URL",
                                file.display()
                            )
                        })?;
                        (loopback_url(addr), file.display().to_string())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                        loopback_url(cfg.http_listen),
                        "the config's http_listen".to_owned(),
                    ),
                    Err(e) => {
                        return Err(
                            anyhow::Error::new(e).context(format!("reading {}", file.display()))
                        );
                    }
                }
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            origin,
            token,
            client,
        })
    }

    /// Calls `path`; a non-2xx answer is an error with the server's message.
    /// Every item of a list route, walking its pages.
    async fn list_all(&self, path: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let first = format!("{path}{sep}limit=1000");
        let (mut items, mut url) = (Vec::new(), first.clone());
        loop {
            let page = self.call(reqwest::Method::GET, &url, None).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => url = format!("{first}&cursor={next}"),
                None => return Ok(items),
            }
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the server at {} (from {}); is it running? pass --server URL",
                self.base, self.origin
            )
        })?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("no details");
            bail!("server answered {status}: {msg}");
        }
        Ok(v)
    }
}

/// `http://addr`, with an unspecified listen address (`0.0.0.0`, `::`) taken as loopback.
fn loopback_url(mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// The `--server` value as a base URL: `http(s)://host:port[/prefix]`, or `host:port`.
fn server_url(s: &str) -> anyhow::Result<String> {
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    match reqwest::Url::parse(&with_scheme) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(with_scheme.trim_end_matches('/').to_owned())
        }
        _ => bail!("--server {s:?} is not a server URL (e.g. http://127.0.0.1:8080)"),
    }
}
