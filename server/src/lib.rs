//! `warden` library: the module declarations (their floors are in docs/ARCHITECTURE.md,
//! "Layering"), the data-directory file names, and [`start`], which wires the server
//! together. `main.rs` only calls [`cli::main`]; tests and `warden demo` drive the same code.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod chain;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod demo;
pub mod enroll;
pub mod ingest;
pub mod model;
pub mod patrol;
pub mod pki;
pub mod quic;
pub mod remote_write;
pub mod store;
pub mod task;
pub mod webhooks;

// Old paths of the clock and task helpers, kept until every user imports them from `clock`
// and `task` (the benches and files other helpers are editing still use them).

use anyhow::Context;
use config::Config;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use task::spawn_named;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;
use warden_io::fs as fsutil;

/// File in the data directory that holds the admin API token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// QUIC stateless-reset secret in the data directory.
pub const RESET_KEY_FILE: &str = "quic-reset.key";
/// Database file in the data directory.
pub const DB_FILE: &str = "warden.redb";
/// File in the data directory naming the bound HTTP address, for the CLI (not secret).
pub const HTTP_ADDR_FILE: &str = "http.addr";

/// A running server.
pub struct Server {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound QUIC address.
    pub quic_addr: SocketAddr,
    /// Path of the admin token file.
    pub admin_token_path: PathBuf,
    /// The server-wide context (store, CA, live agents, audit log, settings).
    pub ctx: Arc<context::Context>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens the data directory, CA, store and listeners, and starts serving.
///
/// # Errors
/// Anything that prevents serving: unreadable data dir, insecure key files, ports in use.
pub async fn start(cfg: Config) -> anyhow::Result<Server> {
    let nofile = api::serve::raise_nofile_limit();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    set_mode(&cfg.data_dir, 0o700)?;
    let pki = Arc::new(pki::Pki::load_or_create(
        &cfg.data_dir,
        time::OffsetDateTime::now_utc(),
    )?);
    let (admin_token_path, admin_token_hash) = admin_token(&cfg.data_dir)?;
    let db_path = cfg.data_dir.join(DB_FILE);
    let store = Arc::new(
        tokio::task::spawn_blocking(move || store::Store::open(&db_path))
            .await?
            .with_context(|| format!("opening database in {}", cfg.data_dir.display()))?,
    );
    store.set_reserve(cfg.store_reserve);
    // The licence issue wires `long_term_metrics`; until then history is the free 7 days.
    let (retention, cut) = cfg.metrics_retention.licensed(false);
    if let Some(why) = cut {
        tracing::warn!(reason = %why, "metric retention bounded by the licence");
    }
    store
        .set_retention(retention)
        .context("setting metric retention")?;
    remote_write::configure(&store, cfg.remote_write.as_ref());
    let writer = ingest::writer::spawn(store.clone()).context("starting the ingest writer")?;
    let signing = {
        let (dir, kek) = (cfg.data_dir.clone(), cfg.audit.kek_file.clone());
        tokio::task::spawn_blocking(move || audit::keys::load_strict(&dir, &kek, true)).await??
    };
    let auditor = audit::Auditor::start(store.clone(), signing, cfg.audit.clone())
        .context("starting the audit writer")?;
    let live = Arc::new(ingest::live::LiveAgents::default());
    let reset_secret = secret_file(&cfg.data_dir.join(RESET_KEY_FILE))?;
    let endpoint = quic::bind(cfg.quic_listen, &pki, &cfg.server_names, &reset_secret)?;
    let quic_addr = endpoint.local_addr()?;
    let listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("binding HTTP on tcp {}", cfg.http_listen))?;
    let http_addr = listener.local_addr()?;
    // Where the CLI finds this server without a config repeating the listen address.
    fsutil::write_atomic(
        &cfg.data_dir.join(HTTP_ADDR_FILE),
        format!("{http_addr}\n").as_bytes(),
    )?;
    // With an ephemeral QUIC port the advertised address must name the bound port.
    let advertise = if cfg.quic_listen.port() == 0 {
        vec![quic_addr.to_string()]
    } else {
        cfg.advertise.clone()
    };
    let (patrol_alerts, alert_rx) = tokio::sync::mpsc::channel(64);
    let schedule = Arc::new(patrol::run::Schedule::new(cfg.patrol_interval));
    let saved = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.patrol_settings(warden_shared::DEFAULT_ORG))
            .await??
    };
    if let Some(saved) = saved {
        match saved.validate() {
            Ok((interval, _)) => schedule.set_interval(interval),
            Err(problems) => tracing::error!(
                problems = ?problems,
                "saved patrol settings are invalid; using the config's interval"
            ),
        }
    }
    let ctx = Arc::new(context::Context {
        store,
        pki: pki.clone(),
        writer,
        live,
        audit: auditor.clone(),
        patrol: schedule,
        patrol_alerts,
        admin_token_hash,
        advertise,
        token_ttl: cfg.token_ttl,
        cert_ttl: cfg.cert_ttl,
        protocol: cfg.protocol,
    });
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = vec![
        spawn_named("quic", quic::serve(endpoint, ctx.clone(), rx.clone())),
        spawn_named(
            "patrol",
            patrol::run::serve(ctx.store.clone(), ctx.patrol.clone(), alert_rx, rx.clone()),
        ),
        spawn_named(
            "alerts",
            alerts::service::run(
                ctx.store.clone(),
                ctx.patrol_alerts.clone(),
                cfg.alert_interval,
                rx.clone(),
            ),
        ),
        spawn_named("audit", audit::maintain(auditor.clone(), rx.clone())),
        spawn_named(
            "store-upkeep",
            store::maintain_task(ctx.store.clone(), rx.clone()),
        ),
        spawn_named(
            "store-recovery",
            store::recover_task(ctx.store.clone(), rx.clone()),
        ),
        spawn_named(
            "webhooks",
            webhooks::run(cfg.webhooks.clone(), auditor.clone(), rx.clone()),
        ),
    ];
    if let Some(rw) = cfg.remote_write.clone() {
        let task = remote_write::run(rw, ctx.store.clone(), rx.clone());
        tasks.push(spawn_named("remote-write", task));
    }
    let limits = api::serve::Limits {
        header_timeout: cfg.http.header_timeout,
        body_timeout: cfg.http.body_timeout,
        max_connections: api::serve::connection_cap(nofile),
    };
    info!(
        max_connections = limits.max_connections,
        header_timeout = ?limits.header_timeout,
        body_timeout = ?limits.body_timeout,
        "http limits"
    );
    tasks.push(spawn_named(
        "http",
        api::serve::serve(listener, api::router(ctx.clone()), limits, rx.clone()),
    ));
    info!(
        http = %http_addr,
        quic = %quic_addr,
        ca_fingerprint = %warden_shared::token::fingerprint_hex(&pki.fingerprint()),
        admin_token = %admin_token_path.display(),
        "warden started"
    );
    Ok(Server {
        http_addr,
        quic_addr,
        admin_token_path,
        ctx,
        shutdown,
        tasks,
    })
}

impl Server {
    /// Stops listeners, closes agent connections and waits for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        info!("warden stopped");
    }
}

fn set_mode(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode on {}", path.display()))
}

/// Reads a private random secret, creating it on first use.
fn secret_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if !path.exists() {
        fsutil::write_private(path, &rand::random::<[u8; 32]>())?;
    }
    fsutil::check_private(path)?;
    let secret = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        secret.len() >= 16,
        "{} is too short; delete it to generate a new one",
        path.display()
    );
    Ok(secret)
}

/// Reads or creates the admin token; returns its path and SHA-256.
fn admin_token(dir: &std::path::Path) -> anyhow::Result<(PathBuf, [u8; 32])> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    if !path.exists() {
        let token = format!("wdn_admin_{}", hex::encode(rand::random::<[u8; 24]>()));
        fsutil::write_private(&path, format!("{token}\n").as_bytes())?;
        info!(path = %path.display(), "created admin API token");
    }
    fsutil::check_private(&path)?;
    let token =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let token = token.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "{} is empty; delete it to generate a new token",
        path.display()
    );
    Ok((path, Sha256::digest(token.as_bytes()).into()))
}
