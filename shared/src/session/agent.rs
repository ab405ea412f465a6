//! The agent's side of a session: hello and the welcome it waits for, sending spooled
//! batches in sequence order inside a window of unacknowledged ones, applying acks,
//! answering the server's requests and renewing the certificate when it is due.
//!
//! The spool stays with the driver: the machine says from which sequence it wants the next
//! batch ([`AgentSession::wants_batch`]), the driver hands it over ([`AgentSession::send_batch`])
//! and deletes what [`Effect::AckSpool`] covers. Key generation stays with the driver too:
//! [`Effect::StartRenewal`] asks for a CSR, [`AgentSession::renew`] sends it.

use super::{Close, HANDSHAKE_TIMEOUT_MS};
use crate::close;
use crate::frame::{self, FrameError};
use crate::proto::{
    AgentMessage, AgentRequest, AgentResponse, Hello, ProtocolVersion, ServerMessage,
    ServerRequest, ServerResponse,
};
use crate::telemetry::ProvenancedBatch;
use std::collections::VecDeque;

/// Most batches sent but not yet acknowledged.
pub const WINDOW: u64 = 64;
/// Delay before a renewal is tried again after one was sent (and failed or went unanswered).
pub const RENEW_RETRY_MS: i64 = 60_000;

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write this message on the session stream.
    Send(AgentMessage),
    /// The server accepted the session. The driver resyncs its spool with
    /// `last_stored_seq` (acknowledging what the server already has).
    Welcomed {
        /// The negotiated version.
        protocol: ProtocolVersion,
        /// The server's `warden` version.
        server_version: String,
        /// Highest sequence the server already stored.
        last_stored_seq: u64,
    },
    /// Every batch up to and including this sequence is durably stored: drop it from the spool.
    AckSpool(u64),
    /// The certificate is due for renewal: make a new key and CSR and call
    /// [`AgentSession::renew`].
    StartRenewal,
    /// The server signed the CSR sent by [`AgentSession::renew`]; install it with that key.
    Renewed {
        /// PEM certificate.
        cert_pem: String,
        /// Expiry, seconds since the epoch.
        not_after_unix: i64,
    },
    /// The server refused one of our requests.
    RequestFailed {
        /// Why.
        message: String,
    },
    /// Close the connection with this code; the session is over.
    Close(Close),
}

/// Why a batch was not taken by [`AgentSession::send_batch`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is not running (no welcome yet, or closed).
    #[error("the session is not running")]
    NotRunning,
    /// The window of unacknowledged batches is full.
    #[error("{WINDOW} batches already wait for an ack")]
    WindowFull,
    /// The batch's sequence is below one already sent; batches go out in order.
    #[error("batch {seq} is out of order: the next batch must be at least {next}")]
    OutOfOrder {
        /// The refused batch.
        seq: u64,
        /// The lowest sequence accepted.
        next: u64,
    },
}

#[derive(Debug)]
enum State {
    AwaitingWelcome { deadline: i64 },
    Running { protocol: ProtocolVersion },
    Closed,
}

/// One session, agent side.
#[derive(Debug)]
pub struct AgentSession {
    state: State,
    /// Highest sequence the server acknowledged (or the spool had acknowledged at start).
    acked: u64,
    /// The lowest sequence the next batch may carry.
    next_seq: u64,
    next_request: u64,
    /// The id of the renewal request waiting for an answer.
    renewing: Option<u64>,
    renew_at: i64,
    effects: VecDeque<Effect>,
}

impl AgentSession {
    /// Opens a session at `now`: queues `hello` and waits for the welcome.
    /// `spool_acked` is the highest sequence the spool knows acknowledged; `renew_at` (Unix ms)
    /// when the certificate is due for renewal.
    pub fn new(now: i64, hello: Hello, spool_acked: u64, renew_at: i64) -> Self {
        let mut effects = VecDeque::new();
        effects.push_back(Effect::Send(AgentMessage::Hello(hello)));
        Self {
            state: State::AwaitingWelcome {
                deadline: now.saturating_add(HANDSHAKE_TIMEOUT_MS),
            },
            acked: spool_acked,
            next_seq: spool_acked + 1,
            next_request: 1,
            renewing: None,
            renew_at,
            effects,
        }
    }

    /// The negotiated version, once welcomed.
    pub fn protocol(&self) -> Option<ProtocolVersion> {
        match self.state {
            State::Running { protocol } => Some(protocol),
            _ => None,
        }
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Highest acknowledged sequence.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The next effect to perform.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`AgentSession::handle_timeout`] must be called next (Unix ms).
    pub fn poll_timeout(&self) -> Option<i64> {
        match self.state {
            State::AwaitingWelcome { deadline } => Some(deadline),
            State::Running { protocol }
                if protocol.supports_renewal() && self.renewing.is_none() =>
            {
                Some(self.renew_at)
            }
            _ => None,
        }
    }

    /// The sequence from which the spool should supply the next batch (the first spooled
    /// sequence at or after it), or `None` while the window is full or the session not running.
    pub fn wants_batch(&self) -> Option<u64> {
        (matches!(self.state, State::Running { .. }) && self.next_seq <= self.acked + WINDOW)
            .then_some(self.next_seq)
    }

    /// Sends `batch`, at most [`WINDOW`] ahead of the last ack and in sequence order: with
    /// its provenance in a 1.2 session, bare before (an older server cannot decode it).
    ///
    /// # Errors
    /// [`SendError`] when the batch may not be sent now; nothing is queued then.
    pub fn send_batch(&mut self, batch: ProvenancedBatch) -> Result<(), SendError> {
        let State::Running { protocol } = self.state else {
            return Err(SendError::NotRunning);
        };
        let seq = batch.batch.seq;
        if seq < self.next_seq {
            return Err(SendError::OutOfOrder {
                seq,
                next: self.next_seq,
            });
        }
        if self.wants_batch().is_none() {
            return Err(SendError::WindowFull);
        }
        self.next_seq = seq + 1;
        let msg = if protocol.supports_provenance() {
            AgentMessage::ProvenancedTelemetry(batch)
        } else {
            AgentMessage::Telemetry(batch.batch)
        };
        self.effects.push_back(Effect::Send(msg));
        Ok(())
    }

    /// Sends the renewal request for `csr_pem` (after [`Effect::StartRenewal`]).
    /// Ignored unless the session runs at a version with renewal.
    pub fn renew(&mut self, csr_pem: String) {
        if !self
            .protocol()
            .is_some_and(ProtocolVersion::supports_renewal)
        {
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.renewing = Some(id);
        self.effects.push_back(Effect::Send(AgentMessage::Request {
            id,
            body: AgentRequest::RenewCertificate { csr_pem },
        }));
    }

    /// Sets when the certificate is next due for renewal (Unix ms), after installing one.
    pub fn set_renew_at(&mut self, renew_at: i64) {
        self.renew_at = renew_at;
    }

    /// Ends the session in order (the agent is stopping).
    pub fn shutdown(&mut self) {
        self.close(Close::new(close::NORMAL, "agent stopping"));
    }

    /// Feeds one complete frame as read from the stream.
    pub fn handle_frame(&mut self, now: i64, bytes: &[u8]) {
        match frame::decode::<ServerMessage>(bytes) {
            Ok((msg, used)) if used == bytes.len() => self.handle_message(now, msg),
            Ok(_) => self.close(Close::protocol("trailing bytes after a frame")),
            Err(e) => self.handle_frame_error(&e),
        }
    }

    /// A frame could not be read: close with the code the spec asks for.
    pub fn handle_frame_error(&mut self, err: &FrameError) {
        self.close(Close::for_frame(err));
    }

    /// Feeds one message from the server.
    pub fn handle_message(&mut self, _now: i64, msg: ServerMessage) {
        match (&self.state, msg) {
            (State::Closed, _) => {}
            (State::AwaitingWelcome { .. }, ServerMessage::Welcome(w)) => {
                self.state = State::Running {
                    protocol: w.protocol,
                };
                // The spool acknowledges what the server already has.
                self.acked = self.acked.max(w.last_stored_seq);
                self.next_seq = self.acked + 1;
                self.effects.push_back(Effect::Welcomed {
                    protocol: w.protocol,
                    server_version: w.server_version,
                    last_stored_seq: w.last_stored_seq,
                });
            }
            (State::AwaitingWelcome { .. }, _) => {
                self.close(Close::protocol("server sent something other than welcome"));
            }
            (State::Running { .. }, ServerMessage::Welcome(_)) => {
                self.close(Close::protocol("unexpected second welcome"));
            }
            (State::Running { .. }, ServerMessage::Ack { seq }) => {
                // Acks are cumulative: a late or repeated one says nothing new.
                if seq > self.acked {
                    self.acked = seq;
                    self.effects.push_back(Effect::AckSpool(seq));
                }
            }
            (State::Running { .. }, ServerMessage::Request { id, body }) => {
                let body = match body {
                    ServerRequest::Ping { nonce } => AgentResponse::Pong { nonce },
                };
                self.effects
                    .push_back(Effect::Send(AgentMessage::Response { id, body }));
            }
            (State::Running { .. }, ServerMessage::Response { id, body }) => {
                match (self.renewing.take(), body) {
                    (
                        Some(rid),
                        ServerResponse::Certificate {
                            cert_pem,
                            not_after_unix,
                        },
                    ) if rid == id => self.effects.push_back(Effect::Renewed {
                        cert_pem,
                        not_after_unix,
                    }),
                    (_, ServerResponse::Error { message }) => {
                        self.effects.push_back(Effect::RequestFailed { message });
                    }
                    (pending, _) => self.renewing = pending,
                }
            }
        }
    }

    /// The deadline from [`AgentSession::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: i64) {
        match self.state {
            State::AwaitingWelcome { deadline } if now >= deadline => {
                self.close(Close::protocol(format!(
                    "no welcome from server within {}s",
                    HANDSHAKE_TIMEOUT_MS / 1000
                )));
            }
            State::Running { protocol }
                if protocol.supports_renewal()
                    && self.renewing.is_none()
                    && now >= self.renew_at =>
            {
                self.renew_at = now.saturating_add(RENEW_RETRY_MS);
                self.effects.push_back(Effect::StartRenewal);
            }
            _ => {}
        }
    }

    fn close(&mut self, close: Close) {
        if !self.is_closed() {
            self.state = State::Closed;
            self.effects.push_back(Effect::Close(close));
        }
    }
}
