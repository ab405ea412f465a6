//! Drives one session with the server over quinn: opens the session stream and feeds the
//! sans-IO [`AgentSession`] machine from `warden_shared::session` with the server's frames,
//! the spool's batches, timers and stop requests, then performs its effects (write a frame,
//! resync or ack the spool, make a renewal key, install a renewed certificate, close).
//! Protocol decisions (negotiation, window, acks, renewal timing, close codes) live in the
//! machine.

use crate::identity::Identity;
use crate::spool::Spool;
use anyhow::{Context as _, anyhow};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};
use warden_io::framed::{self, ReadError};
use warden_shared::close;
use warden_shared::proto::{Hello, ProtocolVersion, ServerMessage};
use warden_shared::session::agent::{AgentSession, Effect, WINDOW};

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
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch: the session machine's clock.
fn now_ms() -> i64 {
    crate::collectors::unix_ms(std::time::SystemTime::now())
}

/// Turns a read failure into an operator-readable error.
fn read_failed(conn: &quinn::Connection, e: ReadError) -> anyhow::Error {
    match conn.close_reason() {
        Some(reason) => anyhow!(super::explain(&reason)),
        None => anyhow!(e),
    }
}

/// What performing the machine's effects needs.
struct Io<'a, 'c> {
    conn: &'a quinn::Connection,
    ctx: &'a Context<'c>,
    send: quinn::SendStream,
    /// The key made for the renewal in flight.
    renewal_key: Option<String>,
}

impl Io<'_, '_> {
    /// Performs every queued effect, then sends what the window allows, oldest first.
    /// `Break` when the session ended in order (stop requested).
    async fn perform(&mut self, machine: &mut AgentSession) -> anyhow::Result<ControlFlow<()>> {
        loop {
            while let Some(effect) = machine.poll_effect() {
                if let ControlFlow::Break(()) = self.apply(machine, effect).await? {
                    return Ok(ControlFlow::Break(()));
                }
            }
            let Some(from) = machine.wants_batch() else {
                break;
            };
            let batch = {
                let mut spool = lock(self.ctx.spool);
                let batch = spool.next_from(from).and_then(|s| spool.get(s));
                if let Some(b) = &batch {
                    spool.will_send(b.batch.seq, WINDOW)?;
                }
                batch
            };
            let Some(batch) = batch else { break };
            machine.send_batch(batch)?;
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn apply(
        &mut self,
        machine: &mut AgentSession,
        effect: Effect,
    ) -> anyhow::Result<ControlFlow<()>> {
        let ctx = self.ctx;
        match effect {
            Effect::Send(msg) => {
                framed::write(&mut self.send, &msg).await.map_err(|e| {
                    match self.conn.close_reason() {
                        Some(r) => anyhow!(super::explain(&r)),
                        None => e,
                    }
                })?;
            }
            Effect::Welcomed {
                protocol,
                server_version,
                last_stored_seq,
            } => {
                lock(ctx.spool).resync(last_stored_seq)?;
                info!(%protocol, %server_version, last_stored_seq, "connected to server");
                if !protocol.supports_provenance() {
                    info!(%protocol, "the server predates protocol 1.2: metric provenance is not sent");
                }
            }
            Effect::AckSpool(seq) => {
                debug!(seq, "ack");
                lock(ctx.spool).ack(seq)?;
            }
            Effect::StartRenewal => {
                let (key_pem, csr_pem) = crate::identity::new_key_and_csr(ctx.hostname)?;
                self.renewal_key = Some(key_pem);
                machine.renew(csr_pem);
            }
            Effect::Renewed {
                cert_pem,
                not_after_unix,
            } => {
                let Some(key_pem) = self.renewal_key.take() else {
                    warn!("a renewed certificate arrived without a key waiting for it");
                    return Ok(ControlFlow::Continue(()));
                };
                let mut identity = lock(ctx.identity).clone();
                identity.key_pem = key_pem;
                identity.cert_pem = cert_pem;
                identity.meta.cert_received_unix = unix_now();
                identity.meta.cert_not_after_unix = not_after_unix;
                identity
                    .save(ctx.data_dir)
                    .context("saving renewed certificate")?;
                machine.set_renew_at(identity.meta.renew_at_unix().saturating_mul(1000));
                *lock(ctx.identity) = identity;
                info!(not_after_unix, "certificate renewed");
            }
            Effect::RequestFailed { message } => {
                warn!(error = %message, "server refused a request");
            }
            Effect::Close(c) => {
                self.conn.close(c.code.into(), c.reason.as_bytes());
                if c.code == close::NORMAL {
                    return Ok(ControlFlow::Break(()));
                }
                return Err(anyhow!(c.reason));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Time left until the machine's deadline (Unix ms).
fn until(deadline: i64) -> Duration {
    Duration::from_millis(u64::try_from(deadline - now_ms()).unwrap_or(0))
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
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| anyhow!(super::explain(&e)))?;
    let hello = Hello {
        protocol: ctx.protocol,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: ctx.hostname.to_owned(),
        os: sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.to_owned()),
    };
    let renew_at = lock(ctx.identity).meta.renew_at_unix().saturating_mul(1000);
    let acked = lock(ctx.spool).acked();
    let mut machine = AgentSession::new(now_ms(), hello, acked, renew_at);
    let mut io = Io {
        conn,
        ctx,
        send,
        renewal_key: None,
    };
    let (mut frames, reader) = framed::spawn_reader::<ServerMessage>(recv);
    let result = loop {
        match io.perform(&mut machine).await {
            Ok(ControlFlow::Continue(())) => {}
            Ok(ControlFlow::Break(())) => break Ok(()),
            Err(e) => break Err(e),
        }
        let deadline = machine.poll_timeout();
        tokio::select! {
            _ = shutdown.changed() => machine.shutdown(),
            () = ctx.spooled.notified() => {}
            () = tokio::time::sleep(until(deadline.unwrap_or(i64::MAX))), if deadline.is_some() => {
                machine.handle_timeout(deadline.unwrap_or_default().max(now_ms()));
            }
            frame = frames.recv() => match frame {
                None => {
                    let what = if machine.protocol().is_some() { "server closed the session" } else { "server closed the session stream" };
                    break Err(conn.close_reason().map_or_else(|| anyhow!(what), |r| anyhow!(super::explain(&r))));
                }
                Some(Err(ReadError::Frame(e))) if conn.close_reason().is_none() => machine.handle_frame_error(&e),
                Some(Err(e)) => break Err(read_failed(conn, e)),
                Some(Ok(msg)) => machine.handle_message(now_ms(), msg),
            },
        }
    };
    reader.abort();
    result
}
