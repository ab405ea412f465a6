//! One agent session: hello and version negotiation, telemetry to the writer with acks
//! in order after durable commit, control requests both ways.

use crate::audit::event::{Actor, NewEvent};
use crate::context::Context;
use crate::ingest::live::ControlCall;
use crate::pki::PeerIdentity;
use crate::store::IngestItem;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};
use warden_io::framed::{self, ReadError};
use warden_shared::close;
use warden_shared::proto::{
    AgentMessage, AgentRequest, AgentResponse, ProtocolVersion, ServerMessage, ServerRequest,
    ServerResponse, Welcome,
};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connected session has to answer a ping before a new connection of the same
/// agent replaces it.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the session until the connection ends.
pub async fn run(conn: quinn::Connection, id: PeerIdentity, shared: Arc<Context>) {
    let span = info_span!("session", agent_id = %id.agent_id);
    async move {
        match drive(&conn, &id, &shared).await {
            Ok(()) => debug!("session ended"),
            Err(End { code, reason }) => {
                warn!(code, reason = %reason, "closing agent connection");
                conn.close(code.into(), reason.as_bytes());
            }
        }
    }
    .instrument(span)
    .await;
}

/// Why the server closes a session.
struct End {
    code: u32,
    reason: String,
}

impl End {
    fn new(code: u32, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl From<ReadError> for End {
    fn from(e: ReadError) -> Self {
        Self::new(e.close_code(), e.to_string())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, End> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| End::new(close::PROTOCOL_ERROR, "server error"))
}

async fn drive(
    conn: &quinn::Connection,
    id: &PeerIdentity,
    shared: &Arc<Context>,
) -> Result<(), End> {
    // A server that cannot store telemetry says so at once: the agent keeps its spool and
    // comes back within seconds instead of sending what would be refused.
    let store = shared.store.clone();
    if let Some(problem) = blocking(move || store.status().problem()).await? {
        return Err(End::new(close::STORAGE_UNAVAILABLE, problem));
    }
    let store = shared.store.clone();
    let agent_id = id.agent_id.clone();
    let record = blocking(move || store.get_agent(&agent_id))
        .await?
        .map_err(|_| End::new(close::PROTOCOL_ERROR, "server storage error"))?;
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
                    .failure("connect", Some(ip), crate::now_ms())
            {
                let mut e =
                    NewEvent::new(Actor::agent(&id.agent_id), "agent.connect", &id.agent_id)
                        .from_ip(Some(ip))
                        .failed(reason.clone())
                        .details(serde_json::json!({ "attempts": attempts }));
                e.org_id.clone_from(&id.org_id);
                shared.audit.record(e).await;
            }
            return Err(End::new(close::AGENT_REVOKED, reason));
        }
    };

    let (mut send, mut recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Ok(()),
        Err(_) => return Err(End::new(close::PROTOCOL_ERROR, "no session stream opened")),
    };
    let hello =
        match tokio::time::timeout(HELLO_TIMEOUT, framed::read::<AgentMessage>(&mut recv)).await {
            Ok(Ok(Some(AgentMessage::Hello(h)))) => h,
            Ok(Ok(Some(_))) => return Err(End::new(close::PROTOCOL_ERROR, "expected hello")),
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(End::new(close::PROTOCOL_ERROR, "no hello within 10s")),
        };
    let Some(protocol) = shared.protocol.negotiate(hello.protocol) else {
        return Err(End::new(
            close::VERSION_MISMATCH,
            format!(
                "protocol {} is not supported; this server speaks {}",
                hello.protocol, shared.protocol
            ),
        ));
    };
    if let Some(end) = refuse_second_process(conn, &record, &hello.hostname, shared).await? {
        return Err(end);
    }
    let store = shared.store.clone();
    let agent_id = record.id.clone();
    let now = crate::now_ms();
    let last_stored_seq = blocking(move || store.last_seq(&agent_id))
        .await?
        .map_err(|_| End::new(close::PROTOCOL_ERROR, "server storage error"))?;
    let welcome = ServerMessage::Welcome(Welcome {
        protocol,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        last_stored_seq,
    });
    framed::write(&mut send, &welcome)
        .await
        .map_err(|_| End::new(close::NORMAL, "gone"))?;
    // Recorded after the welcome, so a reconnecting agent does not wait behind ingest
    // commits for it; before the session counts as connected, so the API never shows a
    // connected agent without its hello.
    let store = shared.store.clone();
    let agent_id = record.id.clone();
    let updated = blocking(move || {
        store.update_agent(&agent_id, |a| {
            a.hostname = hello.hostname;
            a.version = hello.agent_version;
            a.protocol = Some(protocol.to_string());
            a.last_seen_ms = Some(now);
        })
    })
    .await?;
    if let Err(err) = updated {
        warn!(error = %err, "could not record the agent's hello");
    }

    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlCall>(16);
    let session = shared.live.insert(&record.id, conn.clone(), ctl_tx, now);
    info!(%protocol, last_stored_seq, "agent connected");

    let (mut frames, reader) = framed::spawn_reader::<AgentMessage>(recv);

    let mut acks = FuturesOrdered::new();
    let mut waiting: HashMap<u64, oneshot::Sender<AgentResponse>> = HashMap::new();
    let mut next_id = 1u64;
    let result = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                None => break Ok(()),
                // The agent went away (closed, reset or timed out): nothing to tell it.
                Some(Err(ReadError::Stream(quinn::ReadError::ConnectionLost(e)))) => {
                    debug!(reason = %e, "connection lost");
                    break Ok(());
                }
                Some(Err(e)) => break Err(e.into()),
                Some(Ok(AgentMessage::Telemetry(batch))) => {
                    let item = IngestItem { agent_id: record.id.clone(), org_id: record.org_id.clone(), batch, provenance: Vec::new() };
                    acks.push_back(shared.writer.enqueue(item).await);
                }
                // A server of the negotiated version could not even decode it.
                Some(Ok(AgentMessage::ProvenancedTelemetry(_))) if !protocol.supports_provenance() => {
                    break Err(End::new(close::PROTOCOL_ERROR, format!("telemetry with provenance needs protocol 1.2, session is {protocol}")));
                }
                Some(Ok(AgentMessage::ProvenancedTelemetry(b))) => {
                    let item = IngestItem { agent_id: record.id.clone(), org_id: record.org_id.clone(), batch: b.batch, provenance: b.provenance };
                    acks.push_back(shared.writer.enqueue(item).await);
                }
                Some(Ok(AgentMessage::Request { id: rid, body })) => {
                    let body = answer(body, protocol, &record.id, &record.org_id, conn.remote_address().ip(), shared).await;
                    if framed::write(&mut send, &ServerMessage::Response { id: rid, body }).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Ok(AgentMessage::Response { id: rid, body })) => {
                    if let Some(tx) = waiting.remove(&rid) {
                        let _ = tx.send(body);
                    }
                }
                Some(Ok(AgentMessage::Hello(_))) => break Err(End::new(close::PROTOCOL_ERROR, "unexpected second hello")),
            },
            Some(done) = acks.next(), if !acks.is_empty() => match done {
                Ok(Ok(outcome)) => {
                    let outcome: crate::store::IngestOutcome = outcome;
                    if framed::write(&mut send, &ServerMessage::Ack { seq: outcome.ack_seq }).await.is_err() {
                        break Ok(());
                    }
                }
                // Nothing was acknowledged; the agent replays after reconnecting.
                Ok(Err(reason)) => break Err(End::new(close::STORAGE_UNAVAILABLE, reason)),
                _ => break Err(End::new(close::SHUTDOWN, "server could not store telemetry; retry later")),
            },
            Some((req, reply)) = ctl_rx.recv() => {
                let rid = next_id;
                next_id += 1;
                waiting.insert(rid, reply);
                if framed::write(&mut send, &ServerMessage::Request { id: rid, body: req }).await.is_err() {
                    break Ok(());
                }
            }
        }
    };
    reader.abort();
    shared.live.remove(&record.id, session);
    let store = shared.store.clone();
    let agent_id = record.id.clone();
    let now = crate::now_ms();
    let _ = blocking(move || store.update_agent(&agent_id, |a| a.last_seen_ms = Some(now))).await;
    info!("agent disconnected");
    result
}

/// A second live process with this agent's identity (a copied key and certificate) would
/// take turns with the first, each replacing the other, and their batches would collide on
/// sequence numbers. So when the agent already has a session, that session is pinged: a
/// reconnect after a lost connection finds it silent and replaces it; a pong means another
/// process holds the identity, and the newcomer is refused (close code `IDENTITY_IN_USE`),
/// audited, counted and recorded on the agent for Patrol's security finding.
async fn refuse_second_process(
    conn: &quinn::Connection,
    record: &crate::store::AgentRecord,
    hostname: &str,
    shared: &Arc<Context>,
) -> Result<Option<End>, End> {
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
    let now = crate::now_ms();
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
                .get_or_insert_with(|| crate::store::IdentityConflict {
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
    Ok(Some(End::new(
        close::IDENTITY_IN_USE,
        format!(
            "agent {} is already connected from {connected_from}; each host needs its own enrollment",
            record.id
        ),
    )))
}

async fn answer(
    req: AgentRequest,
    protocol: ProtocolVersion,
    agent_id: &str,
    org_id: &str,
    ip: std::net::IpAddr,
    shared: &Context,
) -> ServerResponse {
    match req {
        AgentRequest::RenewCertificate { csr_pem } => {
            if !protocol.supports_renewal() {
                return ServerResponse::Error {
                    message: format!("renewal needs protocol 1.1, session is {protocol}"),
                };
            }
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
                            "certificate_expires_at": crate::rfc3339_ms(cert.not_after_unix * 1000),
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
