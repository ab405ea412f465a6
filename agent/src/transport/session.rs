//! One session with the server: hello and version negotiation, then streaming spooled
//! batches in sequence order with a bounded in-flight window, applying acks, answering
//! control requests and renewing the certificate at two thirds of its life.
//!
//! Batches carry their metrics' provenance when the session runs at 1.2 or later; with an
//! older server the same spooled batch is sent bare (`Telemetry`), without provenance.

use crate::identity::Identity;
use crate::spool::Spool;
use anyhow::{Context as _, anyhow, bail};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};
use warden_io::framed::{self, ReadError};
use warden_shared::proto::{
    AgentMessage, AgentRequest, AgentResponse, Hello, ProtocolVersion, ServerMessage,
    ServerRequest, ServerResponse,
};
use warden_shared::telemetry::ProvenancedBatch;

/// Most batches sent but not yet acknowledged.
pub const WINDOW: u64 = 64;
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// What a session needs from the agent.
pub struct Context<'a> {
    /// The spool shared with the collectors' writer.
    pub spool: &'a Mutex<Spool>,
    /// Signalled when a batch is spooled.
    pub spooled: &'a Notify,
    /// The identity (replaced on renewal).
    pub identity: &'a Mutex<Identity>,
    /// Where the identity lives.
    pub data_dir: &'a Path,
    /// Hello contents.
    pub hostname: &'a str,
    /// Version offered in the hello.
    pub protocol: ProtocolVersion,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning means a panic elsewhere mid-update; the data is plain and still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Turns a read failure into an operator-readable error.
fn read_failed(conn: &quinn::Connection, e: ReadError) -> anyhow::Error {
    match conn.close_reason() {
        Some(reason) => anyhow!(super::explain(&reason)),
        None => anyhow!(e),
    }
}

/// The message carrying `batch` in a session at `protocol`: with its provenance from 1.2 on,
/// the bare batch before (an older server cannot decode the newer variant).
fn telemetry_message(batch: ProvenancedBatch, protocol: ProtocolVersion) -> AgentMessage {
    if protocol.supports_provenance() {
        AgentMessage::ProvenancedTelemetry(batch)
    } else {
        AgentMessage::Telemetry(batch.batch)
    }
}

/// Runs until the connection fails (error) or `shutdown` fires (Ok).
///
/// # Errors
/// Connection loss or refusal, explained.
pub async fn run(
    conn: &quinn::Connection,
    ctx: &Context<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| anyhow!(super::explain(&e)))?;
    let hello = AgentMessage::Hello(Hello {
        protocol: ctx.protocol,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: ctx.hostname.to_owned(),
        os: sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.to_owned()),
    });
    framed::write(&mut send, &hello)
        .await
        .map_err(|e| match conn.close_reason() {
            Some(r) => anyhow!(super::explain(&r)),
            None => e,
        })?;
    let welcome =
        match tokio::time::timeout(WELCOME_TIMEOUT, framed::read::<ServerMessage>(&mut recv)).await
        {
            Ok(Ok(Some(ServerMessage::Welcome(w)))) => w,
            Ok(Ok(Some(_))) => bail!("server sent something other than welcome"),
            Ok(Ok(None)) => bail!("server closed the session stream"),
            Ok(Err(e)) => return Err(read_failed(conn, e)),
            Err(_) => bail!("no welcome from server within {WELCOME_TIMEOUT:?}"),
        };
    let protocol = welcome.protocol;
    lock(ctx.spool).resync(welcome.last_stored_seq)?;
    info!(%protocol, server_version = %welcome.server_version, last_stored_seq = welcome.last_stored_seq, "connected to server");
    if !protocol.supports_provenance() {
        info!(%protocol, "the server predates protocol 1.2: metric provenance is not sent");
    }

    let (mut frames, reader) = framed::spawn_reader::<ServerMessage>(recv);

    let mut next_seq = lock(ctx.spool).acked() + 1;
    let mut next_req = 1u64;
    let mut renewing: Option<(u64, String)> = None;
    let renew_in = |at: i64| Duration::from_secs(u64::try_from(at - unix_now()).unwrap_or(0));
    let renew = tokio::time::sleep(renew_in(lock(ctx.identity).meta.renew_at_unix()));
    tokio::pin!(renew);
    let result = loop {
        // Send what the window allows, oldest first.
        loop {
            let batch = {
                let mut spool = lock(ctx.spool);
                if next_seq > spool.acked() + WINDOW {
                    None
                } else {
                    let batch = spool.next_from(next_seq).and_then(|s| spool.get(s));
                    if let Some(b) = &batch {
                        spool.will_send(b.batch.seq, WINDOW)?;
                    }
                    batch
                }
            };
            let Some(batch) = batch else { break };
            next_seq = batch.batch.seq + 1;
            framed::write(&mut send, &telemetry_message(batch, protocol)).await?;
        }
        tokio::select! {
            _ = shutdown.changed() => {
                conn.close(warden_shared::close::NORMAL.into(), b"agent stopping");
                break Ok(());
            }
            () = ctx.spooled.notified() => {}
            () = &mut renew, if protocol.supports_renewal() && renewing.is_none() => {
                let (key_pem, csr_pem) = crate::identity::new_key_and_csr(ctx.hostname)?;
                let id = next_req;
                next_req += 1;
                renewing = Some((id, key_pem));
                framed::write(&mut send, &AgentMessage::Request { id, body: AgentRequest::RenewCertificate { csr_pem } }).await?;
                renew.as_mut().reset(tokio::time::Instant::now() + RENEW_RETRY);
            }
            frame = frames.recv() => match frame {
                None => break Err(conn.close_reason().map_or_else(|| anyhow!("server closed the session"), |r| anyhow!(super::explain(&r)))),
                Some(Err(e)) => break Err(read_failed(conn, e)),
                Some(Ok(ServerMessage::Ack { seq })) => {
                    debug!(seq, "ack");
                    lock(ctx.spool).ack(seq)?;
                }
                Some(Ok(ServerMessage::Request { id, body })) => {
                    let body = match body {
                        ServerRequest::Ping { nonce } => AgentResponse::Pong { nonce },
                    };
                    framed::write(&mut send, &AgentMessage::Response { id, body }).await?;
                }
                Some(Ok(ServerMessage::Response { id, body })) => {
                    match (renewing.take(), body) {
                        (Some((rid, key_pem)), ServerResponse::Certificate { cert_pem, not_after_unix }) if rid == id => {
                            let mut identity = lock(ctx.identity).clone();
                            identity.key_pem = key_pem;
                            identity.cert_pem = cert_pem;
                            identity.meta.cert_received_unix = unix_now();
                            identity.meta.cert_not_after_unix = not_after_unix;
                            identity.save(ctx.data_dir).context("saving renewed certificate")?;
                            renew.as_mut().reset(tokio::time::Instant::now() + renew_in(identity.meta.renew_at_unix()));
                            *lock(ctx.identity) = identity;
                            info!(not_after_unix, "certificate renewed");
                        }
                        (_, ServerResponse::Error { message }) => warn!(error = %message, "server refused a request"),
                        (pending, _) => renewing = pending,
                    }
                }
                Some(Ok(ServerMessage::Welcome(_))) => break Err(anyhow!("unexpected second welcome")),
            },
        }
    };
    reader.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_shared::resource::ResourceKind;
    use warden_shared::telemetry::{Provenance, TelemetryBatch};

    #[test]
    fn provenance_is_sent_only_to_servers_that_speak_1_2() {
        let batch = ProvenancedBatch {
            batch: TelemetryBatch {
                seq: 4,
                ..TelemetryBatch::default()
            },
            provenance: vec![Provenance::new(ResourceKind::Node, "m", "host", "test")],
        };
        let v11 = ProtocolVersion { major: 1, minor: 1 };
        assert_eq!(
            telemetry_message(batch.clone(), v11),
            AgentMessage::Telemetry(batch.batch.clone())
        );
        assert_eq!(
            telemetry_message(batch.clone(), ProtocolVersion::CURRENT),
            AgentMessage::ProvenancedTelemetry(batch)
        );
    }
}
