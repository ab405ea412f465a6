//! `warden-agent` library: collectors, the on-disk spool, enrollment and the QUIC session.
//! `main.rs` is a thin CLI over [`run`] and [`enroll::enroll`]; tests drive the same code.

pub mod collectors;
pub mod config;
pub mod enroll;
pub mod identity;
pub mod spool;
pub mod transport;

use anyhow::Context;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info, warn};
use warden_shared::proto::ProtocolVersion;
use warden_shared::telemetry::ProvenancedBatch;

/// How the process runs (not what it monitors).
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Protocol version offered to the server (tests use an older minor).
    pub protocol: ProtocolVersion,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            protocol: ProtocolVersion::CURRENT,
        }
    }
}

/// Runs the agent until `shutdown` becomes true.
///
/// # Errors
/// Startup failures: not enrolled, unusable identity, spool directory unusable.
pub async fn run(
    cfg: config::Config,
    opts: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let identity = identity::Identity::load(&cfg.data_dir)?;
    // Tighten what an older agent or a hand-made directory left world-readable.
    spool::private_dir(&cfg.data_dir)?;
    spool::private_dir(&identity::dir(&cfg.data_dir))?;
    let servers = if cfg.servers.is_empty() {
        identity.meta.servers.clone()
    } else {
        cfg.servers.clone()
    };
    let spool_dir = cfg.data_dir.join("spool");
    let spool = spool::Spool::open(&spool_dir, cfg.spool_max_bytes)
        .with_context(|| format!("opening spool {}", spool_dir.display()))?;
    info!(
        agent_id = %identity.meta.agent_id,
        pending = spool.pending(),
        spool_bytes = spool.bytes(),
        "warden-agent starting"
    );
    let spool = Arc::new(Mutex::new(spool));
    let spooled = Arc::new(Notify::new());
    let identity = Arc::new(Mutex::new(identity));

    let (tx, mut rx) = mpsc::channel::<ProvenancedBatch>(64);
    let mut collectors =
        collectors::spawn_all(&cfg.collectors, &cfg.hostname, tx, shutdown.clone());
    let writer = {
        let (spool, spooled) = (spool.clone(), spooled.clone());
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                let pushed = spool.lock().map_err(|_| ()).and_then(|mut s| {
                    s.push(batch).map_err(|e| {
                        error!(error = %e, "cannot write to spool; batch lost");
                    })
                });
                if pushed.is_ok() {
                    spooled.notify_one();
                }
            }
        })
    };

    let mut attempt = 0u32;
    while !*shutdown.borrow() {
        let ctx = transport::session::Context {
            spool: &spool,
            spooled: &spooled,
            identity: &identity,
            data_dir: &cfg.data_dir,
            hostname: &cfg.hostname,
            protocol: opts.protocol,
        };
        let started = tokio::time::Instant::now();
        match connect_once(&servers, &ctx, &mut shutdown).await {
            Ok(()) => break,
            Err(e) => {
                if started.elapsed() > std::time::Duration::from_secs(30) {
                    attempt = 0;
                }
                let jitter = rand::random_range(0.5..=1.0);
                let delay = match e.downcast_ref::<transport::Refused>() {
                    Some(r) => r.retry.mul_f64(jitter),
                    None => {
                        attempt = attempt.saturating_add(1);
                        transport::backoff(attempt - 1, jitter)
                    }
                };
                warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "server connection failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop_requested(&mut shutdown) => {}
                }
            }
        }
    }
    // Every collector stops at its next await; one stuck in a non-async call is left behind.
    let stopping = futures_util::future::join_all(collectors.iter_mut());
    if tokio::time::timeout(COLLECTORS_GRACE, stopping)
        .await
        .is_err()
    {
        warn!("a collector did not stop in time; abandoning it");
        collectors.iter().for_each(tokio::task::JoinHandle::abort);
    }
    writer.abort();
    info!("warden-agent stopped");
    Ok(())
}

async fn connect_once(
    servers: &[String],
    ctx: &transport::session::Context<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = {
        let id = ctx
            .identity
            .lock()
            .map_err(|_| anyhow::anyhow!("identity lock poisoned"))?;
        transport::tls::session_config(&id.ca_pem, &id.cert_pem, &id.key_pem)?
    };
    // Resolving and the handshake can each take up to the idle timeout (30 s) against a
    // server that is down; a stop request must not wait for them (the spool is durable).
    let connecting = async {
        let addrs = transport::resolve(servers).await?;
        let endpoint = transport::endpoint_for(addrs[0])?;
        let conn = transport::connect(&endpoint, &addrs, &config).await?;
        anyhow::Ok((endpoint, conn))
    };
    let (endpoint, conn) = tokio::select! {
        connected = connecting => connected?,
        () = stop_requested(shutdown) => return Ok(()),
    };
    // The session closes itself on a stop request, but a write blocked on a server that stopped
    // reading (or the wait for its welcome) would not notice: bound that too.
    let mut stop = shutdown.clone();
    let result = tokio::select! {
        result = transport::session::run(&conn, ctx, shutdown) => result,
        () = async {
            stop_requested(&mut stop).await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => Ok(()),
    };
    let result = match (&result, conn.close_reason()) {
        (Err(_), Some(reason)) if transport::is_auth_failure(&reason) => {
            Err(anyhow::anyhow!(transport::explain(&reason)))
        }
        (Err(_), Some(reason)) => match transport::retry_hint(&reason) {
            Some(retry) => Err(transport::Refused {
                message: transport::explain(&reason),
                retry,
            }
            .into()),
            None => result,
        },
        _ => result,
    };
    conn.close(0u32.into(), b"");
    // Give the close frame a moment to leave, so the server sees the agent go at once.
    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
    result
}

/// Longest wait for the collector tasks to end after a stop request.
const COLLECTORS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest wait for the close frame to leave when a session ends.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Resolves once a stop is requested (or the sender is gone, which only happens at exit).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
