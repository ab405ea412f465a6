//! Drives one agent session over quinn: the pre-hello checks against the store, then the
//! sans-IO [`ServerSession`] machine from `warden_shared::session` fed with the frames read
//! from the session stream, whose effects (send, commit through the writer, answer a request)
//! are performed here. Protocol decisions and close codes live in the machine.

use crate::chain::event::{Actor, NewEvent};
use crate::context::Context;
use crate::ingest::live::ControlCall;
use crate::ingest::writer::{Room, WriterHandle};
use crate::model::IngestItem;
use crate::pki::PeerIdentity;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};
use warden_io::framed::{self, ReadError};
use warden_shared::close;
use warden_shared::proto::{
    AgentMessage, AgentRequest, AgentResponse, ServerRequest, ServerResponse,
};
use warden_shared::session::Close;
use warden_shared::session::server::{Effect, Refusal, ServerSession};

/// How long a connected session has to answer a ping before a new connection of the same
/// agent replaces it.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the session until the connection ends.
pub async fn run(conn: quinn::Connection, id: PeerIdentity, shared: Arc<Context>) {
    let span = info_span!("session", agent_id = %id.agent_id);
    async move {
        match drive(&conn, &id, &shared).await {
            Ok(()) => debug!("session ended"),
            Err(Close { code, reason }) => {
                // Closed before it is logged: the agent hears why even if the log cannot
                // be written (a full disk).
                conn.close(code.into(), reason.as_bytes());
                warn!(code, reason = %reason, "closed agent connection");
            }
        }
    }
    .instrument(span)
    .await;
}

/// The close for a failure of the server itself (a blocking task or the store), not of the
/// protocol.
fn internal(reason: &str) -> Close {
    Close::new(close::PROTOCOL_ERROR, reason)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Close> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| internal("server error"))
}

/// Time left until the machine's deadline (Unix ms).
fn until(deadline: Option<i64>) -> Duration {
    deadline.map_or(Duration::MAX, |d| {
        Duration::from_millis(u64::try_from(d - crate::clock::now_ms()).unwrap_or(0))
    })
}

/// The machine's deadline passed: tell it (at the deadline at least, whatever the clock says).
fn timed_out(machine: &mut ServerSession) {
    let now = crate::clock::now_ms();
    machine.handle_timeout(machine.poll_timeout().map_or(now, |d| d.max(now)));
}

/// The close the machine decided on (it has no other effect left to perform before it).
fn closed(machine: &mut ServerSession) -> Close {
    while let Some(effect) = machine.poll_effect() {
        if let Effect::Close(c) = effect {
            return c;
        }
    }
    internal("session ended without a reason")
}

/// Feeds one read result to the machine; `Break` when the agent is simply gone.
fn feed(machine: &mut ServerSession, frame: Result<AgentMessage, ReadError>) -> ControlFlow<()> {
    match frame {
        Ok(msg) => machine.handle_message(crate::clock::now_ms(), msg),
        // The agent went away (closed, reset or timed out): nothing to tell it.
        Err(ReadError::Stream(quinn::ReadError::ConnectionLost(e))) => {
            debug!(reason = %e, "connection lost");
            return ControlFlow::Break(());
        }
        Err(ReadError::Frame(e)) => machine.handle_frame_error(&e),
        Err(e) => machine.handle_stream_error(e.to_string()),
    }
    ControlFlow::Continue(())
}

async fn drive(
    conn: &quinn::Connection,
    id: &PeerIdentity,
    shared: &Arc<Context>,
) -> Result<(), Close> {
    let mut machine = ServerSession::new(crate::clock::now_ms(), shared.protocol);
    // A server that cannot store telemetry says so at once: the agent keeps its spool and
    // comes back within seconds instead of sending what would be refused.
    let store = shared.store.clone();
    if let Some(problem) = blocking(move || store.status().problem()).await? {
        machine.refuse(Refusal::StorageUnavailable(problem));
        return Err(closed(&mut machine));
    }
    let store = shared.store.clone();
    let agent_id = id.agent_id.clone();
    let record = blocking(move || store.get_agent(&agent_id))
        .await?
        .map_err(|_| internal("server storage error"))?;
    let refused = match record {
        Some(r) if r.revoked_at_ms.is_none() && r.org_id == id.org_id => Ok(r),
        Some(r) if r.revoked_at_ms.is_some() => Err(format!("agent {} is revoked", r.id)),
        _ => Err(format!("agent {} is unknown to this server", id.agent_id)),
    };
    let record = match refused {
        Ok(r) => r,
        Err(reason) => {
            // A refused certificate holder is security-relevant; audited at most once a
            // minute per address, since a revoked agent retries.
            let ip = conn.remote_address().ip();
            if let Some(attempts) =
                shared
                    .audit
                    .limiter()
                    .failure("connect", Some(ip), crate::clock::now_ms())
            {
                let mut e =
                    NewEvent::new(Actor::agent(&id.agent_id), "agent.connect", &id.agent_id)
                        .from_ip(Some(ip))
                        .failed(reason.clone())
                        .details(serde_json::json!({ "attempts": attempts }));
                e.org_id.clone_from(&id.org_id);
                Box::pin(shared.audit.record(e)).await;
            }
            machine.refuse(Refusal::Revoked(reason));
            return Err(closed(&mut machine));
        }
    };

    let (mut send, mut recv) =
        match tokio::time::timeout(until(machine.poll_timeout()), conn.accept_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Ok(()),
            Err(_) => {
                timed_out(&mut machine);
                return Err(closed(&mut machine));
            }
        };
    machine.stream_opened(crate::clock::now_ms());
    match tokio::time::timeout(
        until(machine.poll_timeout()),
        framed::read::<AgentMessage>(&mut recv),
    )
    .await
    {
        Ok(Ok(Some(msg))) => machine.handle_message(crate::clock::now_ms(), msg),
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            if feed(&mut machine, Err(e)).is_break() {
                return Ok(());
            }
        }
        Err(_) => timed_out(&mut machine),
    }
    let (hello, protocol) = match machine.poll_effect() {
        Some(Effect::Hello { hello, protocol }) => (hello, protocol),
        Some(Effect::Close(c)) => return Err(c),
        _ => return Err(closed(&mut machine)),
    };
    // Boxed, like the other rare paths (`answer`, the audit of a refusal): a future held
    // inline sizes the session's task for its whole life, 10,000 times over.
    if let Some(reason) = Box::pin(refuse_second_process(
        conn,
        &record,
        &hello.hostname,
        shared,
    ))
    .await?
    {
        machine.refuse(Refusal::IdentityInUse(reason));
        return Err(closed(&mut machine));
    }
    let store = shared.store.clone();
    let agent_id = record.id.clone();
    let now = crate::clock::now_ms();
    let last_stored_seq = blocking(move || store.last_seq(&agent_id))
        .await?
        .map_err(|_| internal("server storage error"))?;
    machine.welcome(last_stored_seq, env!("CARGO_PKG_VERSION").to_owned());
    while let Some(effect) = machine.poll_effect() {
        if let Effect::Send(msg) = effect {
            framed::write(&mut send, &msg)
                .await
                .map_err(|_| Close::new(close::NORMAL, "gone"))?;
        }
    }
    // Recorded after the welcome, so a reconnecting agent does not wait behind ingest
    // commits for it; before the session counts as connected, so the API never shows a
    // connected agent without its hello.
    // Through the record writer: a reconnect storm costs a few commits, not one each.
    let updated = shared
        .writer
        .records
        .update(&record.id, move |a| {
            a.hostname = hello.hostname;
            a.version = hello.agent_version;
            a.protocol = Some(protocol.to_string());
            a.last_seen_ms = Some(now);
        })
        .await;
    if let Err(err) = updated {
        warn!(error = %err, "could not record the agent's hello");
    }

    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlCall>(16);
    let session = shared.live.insert(&record.id, conn.clone(), ctl_tx, now);
    info!(%protocol, last_stored_seq, "agent connected");

    let (mut frames, reader) = spawn_reader(recv, shared.writer.clone());
    let mut io = Io {
        send,
        room: Room::default(),
        acks: FuturesOrdered::new(),
        waiting: HashMap::new(),
        record: &record,
        ip: conn.remote_address().ip(),
        shared,
    };
    let result = loop {
        if let ControlFlow::Break(end) = io.perform(&mut machine).await {
            break end;
        }
        tokio::select! {
            frame = frames.recv() => match frame {
                None => break Ok(()),
                Some(frame) => {
                    let (frame, room) = *frame;
                    io.room = room;
                    if feed(&mut machine, frame).is_break() {
                        break Ok(());
                    }
                }
            },
            Some(done) = io.acks.next(), if !io.acks.is_empty() => match done {
                Ok(Ok(outcome)) => machine.committed(outcome.ack_seq),
                // Nothing was acknowledged; the agent replays after reconnecting.
                Ok(Err(reason)) => machine.commit_failed(reason),
                Err(_) => machine.store_gone(),
            },
            Some((req, reply)) = ctl_rx.recv() => {
                if let Some(rid) = machine.request(req) {
                    io.waiting.insert(rid, reply);
                }
            }
        }
    };
    reader.abort();
    shared.live.remove(&record.id, session);
    let now = crate::clock::now_ms();
    let _ = shared
        .writer
        .records
        .update(&record.id, move |a| a.last_seen_ms = Some(now))
        .await;
    info!("agent disconnected");
    result
}

type Commit = oneshot::Receiver<Result<crate::model::IngestOutcome, String>>;

/// A frame from the agent with the writer room reserved for it, boxed: tokio's `mpsc`
/// allocates its slots in blocks of 32 whatever the capacity, so an unboxed frame (216
/// bytes) would cost every session ~7 KiB for a channel that holds one.
type Frame = Box<(Result<AgentMessage, ReadError>, Room)>;

/// Reads the agent's frames on a task of its own (reading is not cancel-safe, so it cannot
/// sit in a `select!`) and forwards them one at a time. Room in the writer's budget is
/// reserved from a frame's header *before* its payload is taken off the stream: while the
/// writer is behind, frames wait in QUIC flow control (a small window per connection, see
/// `quic::bind`) rather than decoded in this process, so memory does not grow with the
/// number of agents. The channel ends after a clean end of stream or the first error.
fn spawn_reader(
    mut recv: quinn::RecvStream,
    writer: WriterHandle,
) -> (mpsc::Receiver<Frame>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        loop {
            let frame = match framed::read_header(&mut recv).await {
                Ok(None) => break,
                Ok(Some(len)) => {
                    let room = writer.reserve(len).await;
                    (framed::read_payload(&mut recv, len).await, room)
                }
                Err(e) => (Err(e), Room::default()),
            };
            let failed = frame.0.is_err();
            if tx.send(Box::new(frame)).await.is_err() || failed {
                break;
            }
        }
    });
    (rx, task)
}

/// What performing the machine's effects needs.
struct Io<'a> {
    send: quinn::SendStream,
    /// The room reserved for the frame the machine handled last; a commit takes it along
    /// to the writer, any other message gives it back.
    room: Room,
    /// Commits in the order the machine asked for them, so acks go out in that order.
    acks: FuturesOrdered<Commit>,
    /// Our requests waiting for the agent's answer, by id.
    waiting: HashMap<u64, oneshot::Sender<AgentResponse>>,
    record: &'a crate::model::AgentRecord,
    ip: std::net::IpAddr,
    shared: &'a Arc<Context>,
}

impl Io<'_> {
    /// Performs every queued effect; `Break` with how the session ends.
    async fn perform(&mut self, machine: &mut ServerSession) -> ControlFlow<Result<(), Close>> {
        while let Some(effect) = machine.poll_effect() {
            match effect {
                Effect::Send(msg) => {
                    if framed::write(&mut self.send, &msg).await.is_err() {
                        return ControlFlow::Break(Ok(()));
                    }
                }
                Effect::Commit { batch, provenance } => {
                    let item = IngestItem {
                        agent_id: self.record.id.clone(),
                        org_id: self.record.org_id.clone(),
                        batch,
                        provenance,
                    };
                    let room = std::mem::take(&mut self.room);
                    self.acks.push_back(self.shared.writer.enqueue(item, room));
                }
                Effect::Request { id, body } => {
                    let body = Box::pin(answer(
                        body,
                        &self.record.id,
                        &self.record.org_id,
                        self.ip,
                        self.shared,
                    ))
                    .await;
                    machine.respond(id, body);
                }
                Effect::Response { id, body } => {
                    if let Some(tx) = self.waiting.remove(&id) {
                        let _ = tx.send(body);
                    }
                }
                Effect::Close(c) => return ControlFlow::Break(Err(c)),
                Effect::Hello { .. } => debug_assert!(false, "a second hello effect"),
            }
        }
        self.room = Room::default();
        ControlFlow::Continue(())
    }
}

/// A second live process with this agent's identity (a copied key and certificate) would
/// take turns with the first, each replacing the other, and their batches would collide on
/// sequence numbers. So when the agent already has a session, that session is pinged: a
/// reconnect after a lost connection finds it silent and replaces it; a pong means another
/// process holds the identity, and the newcomer is refused (close code `IDENTITY_IN_USE`),
/// audited, counted and recorded on the agent for Patrol's security finding.
async fn refuse_second_process(
    conn: &quinn::Connection,
    record: &crate::model::AgentRecord,
    hostname: &str,
    shared: &Arc<Context>,
) -> Result<Option<String>, Close> {
    let Some(connected_from) = shared.live.remote(&record.id) else {
        return Ok(None);
    };
    let ping = ServerRequest::Ping {
        nonce: rand::random(),
    };
    let alive = matches!(
        shared
            .live
            .request(&record.id, ping, LIVENESS_TIMEOUT)
            .await,
        Ok(AgentResponse::Pong { .. })
    );
    if !alive {
        return Ok(None);
    }
    let refused_from = conn.remote_address();
    let now = crate::clock::now_ms();
    shared
        .writer
        .stats
        .identity_conflicts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    warn!(%connected_from, %refused_from, hostname, "refused a second process with this agent's identity");
    let store = shared.store.clone();
    let agent_id = record.id.clone();
    let updated = blocking(move || {
        store.update_agent(&agent_id, |a| {
            let c = a
                .identity_conflict
                .get_or_insert_with(|| crate::model::IdentityConflict {
                    last_ms: now,
                    first_ms: now,
                    refused: 0,
                    connected_from: String::new(),
                    refused_from: String::new(),
                });
            c.last_ms = now;
            c.refused += 1;
            c.connected_from = connected_from.to_string();
            c.refused_from = refused_from.to_string();
        })
    })
    .await?;
    if let Err(err) = updated {
        warn!(error = %err, "could not record the identity conflict");
    }
    // The refused process retries; one audit event a minute per address says enough.
    if let Some(attempts) = shared
        .audit
        .limiter()
        .failure("identity", Some(refused_from.ip()), now)
    {
        let mut e = NewEvent::new(Actor::agent(&record.id), "agent.connect", &record.id)
            .from_ip(Some(refused_from.ip()))
            .failed("identity in use by another connected process")
            .details(serde_json::json!({
                "attempts": attempts,
                "connected_from": connected_from.to_string(),
                "hostname": hostname,
            }));
        e.org_id.clone_from(&record.org_id);
        shared.audit.record(e).await;
    }
    Ok(Some(format!(
        "agent {} is already connected from {connected_from}; each host needs its own enrollment",
        record.id
    )))
}

/// Answers an agent's request (the machine already refused what the session's version lacks).
async fn answer(
    req: AgentRequest,
    agent_id: &str,
    org_id: &str,
    ip: std::net::IpAddr,
    shared: &Context,
) -> ServerResponse {
    match req {
        AgentRequest::RenewCertificate { csr_pem } => {
            let now = time::OffsetDateTime::now_utc();
            match shared
                .pki
                .sign_agent(&csr_pem, agent_id, org_id, shared.cert_ttl, now)
            {
                Ok(cert) => {
                    let store = shared.store.clone();
                    let (id, serial, not_after) = (
                        agent_id.to_owned(),
                        cert.serial.clone(),
                        cert.not_after_unix,
                    );
                    let _ = blocking(move || {
                        store.update_agent(&id, |a| {
                            a.cert_serial = serial;
                            a.cert_not_after_unix = not_after;
                        })
                    })
                    .await;
                    info!(
                        not_after_unix = cert.not_after_unix,
                        "agent certificate renewed"
                    );
                    let mut e = NewEvent::new(Actor::agent(agent_id), "agent.renew", agent_id)
                        .from_ip(Some(ip))
                        .details(serde_json::json!({
                            "certificate_expires_at": crate::clock::rfc3339_ms(cert.not_after_unix * 1000),
                        }));
                    e.org_id = org_id.to_owned();
                    shared.audit.record(e).await;
                    ServerResponse::Certificate {
                        cert_pem: cert.pem,
                        not_after_unix: cert.not_after_unix,
                    }
                }
                Err(e) => {
                    let mut ev = NewEvent::new(Actor::agent(agent_id), "agent.renew", agent_id)
                        .from_ip(Some(ip))
                        .failed(e.to_string());
                    ev.org_id = org_id.to_owned();
                    shared.audit.record(ev).await;
                    ServerResponse::Error {
                        message: e.to_string(),
                    }
                }
            }
        }
    }
}
