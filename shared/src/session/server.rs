//! The server's side of a session: refusals before the hello, the hello and version
//! negotiation, the welcome, telemetry handed to the store with acks sent in arrival order
//! after each durable commit, and control requests both ways.
//!
//! The store stays with the driver: [`Effect::Commit`] asks it to store a batch, and the
//! driver reports each commit, in the order of the effects, with
//! [`ServerSession::committed`] (or [`ServerSession::commit_failed`]).
//! Replays are deduplicated by the store, which answers a batch it already has with the
//! sequence it holds.

use super::{Close, HANDSHAKE_TIMEOUT_MS};
use crate::close;
use crate::frame::{self, FrameError};
use crate::proto::{
    AgentMessage, AgentRequest, AgentResponse, Hello, ProtocolVersion, ServerMessage,
    ServerRequest, ServerResponse, Welcome,
};
use crate::telemetry::{Provenance, TelemetryBatch};
use std::collections::{BTreeSet, VecDeque};

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write this message on the session stream.
    Send(ServerMessage),
    /// The agent's hello, with the version the session will run at. The driver records it,
    /// then calls [`ServerSession::welcome`] (or [`ServerSession::refuse`]).
    Hello {
        /// What the agent said.
        hello: Hello,
        /// The negotiated version.
        protocol: ProtocolVersion,
    },
    /// Store this batch durably, then report with [`ServerSession::committed`].
    Commit {
        /// The batch.
        batch: TelemetryBatch,
        /// Its metrics' provenance (empty below 1.2).
        provenance: Vec<Provenance>,
    },
    /// Answer the agent's request with [`ServerSession::respond`].
    Request {
        /// The request's id.
        id: u64,
        /// The request.
        body: AgentRequest,
    },
    /// The agent answered one of our requests.
    Response {
        /// The id [`ServerSession::request`] returned.
        id: u64,
        /// The answer.
        body: AgentResponse,
    },
    /// Close the connection with this code; the session is over.
    Close(Close),
}

/// Why the server turns an agent away before its session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The store cannot take telemetry now (full disk); the reason names the disk.
    StorageUnavailable(String),
    /// The agent is revoked or unknown.
    Revoked(String),
    /// Another live process holds a session with this agent's identity.
    IdentityInUse(String),
}

impl Refusal {
    /// The close this refusal is sent as.
    pub fn close(self) -> Close {
        match self {
            Self::StorageUnavailable(r) => Close::new(close::STORAGE_UNAVAILABLE, r),
            Self::Revoked(r) => Close::new(close::AGENT_REVOKED, r),
            Self::IdentityInUse(r) => Close::new(close::IDENTITY_IN_USE, r),
        }
    }
}

#[derive(Debug)]
enum State {
    AwaitingStream { deadline: i64 },
    AwaitingHello { deadline: i64 },
    Negotiated { protocol: ProtocolVersion },
    Running { protocol: ProtocolVersion },
    Closed,
}

/// One session, server side.
#[derive(Debug)]
pub struct ServerSession {
    local: ProtocolVersion,
    state: State,
    /// Sequences handed to the store and not yet acknowledged, oldest first.
    committing: VecDeque<u64>,
    next_request: u64,
    /// Ids of our requests waiting for an answer.
    waiting: BTreeSet<u64>,
    effects: VecDeque<Effect>,
}

impl ServerSession {
    /// A connection arrived at `now`; `local` is the highest version this server offers.
    pub fn new(now: i64, local: ProtocolVersion) -> Self {
        Self {
            local,
            state: State::AwaitingStream {
                deadline: now.saturating_add(HANDSHAKE_TIMEOUT_MS),
            },
            committing: VecDeque::new(),
            next_request: 1,
            waiting: BTreeSet::new(),
            effects: VecDeque::new(),
        }
    }

    /// The negotiated version, once the hello was accepted.
    pub fn protocol(&self) -> Option<ProtocolVersion> {
        match self.state {
            State::Negotiated { protocol } | State::Running { protocol } => Some(protocol),
            _ => None,
        }
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Batches handed to the store and not yet acknowledged.
    pub fn committing(&self) -> usize {
        self.committing.len()
    }

    /// The next effect to perform.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`ServerSession::handle_timeout`] must be called next (Unix ms).
    pub fn poll_timeout(&self) -> Option<i64> {
        match self.state {
            State::AwaitingStream { deadline } | State::AwaitingHello { deadline } => {
                Some(deadline)
            }
            _ => None,
        }
    }

    /// The agent opened its session stream at `now`; the hello is due within the timeout.
    pub fn stream_opened(&mut self, now: i64) {
        if let State::AwaitingStream { .. } = self.state {
            self.state = State::AwaitingHello {
                deadline: now.saturating_add(HANDSHAKE_TIMEOUT_MS),
            };
        }
    }

    /// Turns the agent away.
    pub fn refuse(&mut self, refusal: Refusal) {
        self.close(refusal.close());
    }

    /// Accepts the negotiated session: sends the welcome with the highest sequence the
    /// store holds for this agent.
    pub fn welcome(&mut self, last_stored_seq: u64, server_version: String) {
        if let State::Negotiated { protocol } = self.state {
            self.state = State::Running { protocol };
            self.effects
                .push_back(Effect::Send(ServerMessage::Welcome(Welcome {
                    protocol,
                    server_version,
                    last_stored_seq,
                })));
        }
    }

    /// The oldest outstanding [`Effect::Commit`] is durable; the agent may drop everything up
    /// to `ack_seq` (the store's answer: the batch's sequence, or the one it already held).
    pub fn committed(&mut self, ack_seq: u64) {
        if self.is_closed() {
            return;
        }
        if self.committing.pop_front().is_none() {
            debug_assert!(false, "a commit reported that was never asked for");
            return;
        }
        self.effects
            .push_back(Effect::Send(ServerMessage::Ack { seq: ack_seq }));
    }

    /// The store refused the oldest outstanding commit. Nothing more is acknowledged; the
    /// agent keeps its spool and replays after reconnecting.
    pub fn commit_failed(&mut self, reason: String) {
        self.close(Close::new(close::STORAGE_UNAVAILABLE, reason));
    }

    /// The store's writer is gone (the server is stopping).
    pub fn store_gone(&mut self) {
        self.close(Close::new(
            close::SHUTDOWN,
            "server could not store telemetry; retry later",
        ));
    }

    /// Sends a request to the agent; returns its id, which [`Effect::Response`] carries back.
    /// `None` unless the session is running.
    pub fn request(&mut self, body: ServerRequest) -> Option<u64> {
        if !matches!(self.state, State::Running { .. }) {
            return None;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.waiting.insert(id);
        self.effects
            .push_back(Effect::Send(ServerMessage::Request { id, body }));
        Some(id)
    }

    /// Answers the agent's request `id` (from [`Effect::Request`]).
    pub fn respond(&mut self, id: u64, body: ServerResponse) {
        if matches!(self.state, State::Running { .. }) {
            self.effects
                .push_back(Effect::Send(ServerMessage::Response { id, body }));
        }
    }

    /// Feeds one complete frame as read from the stream.
    pub fn handle_frame(&mut self, now: i64, bytes: &[u8]) {
        match frame::decode::<AgentMessage>(bytes) {
            Ok((msg, used)) if used == bytes.len() => self.handle_message(now, msg),
            Ok(_) => self.close(Close::protocol("trailing bytes after a frame")),
            Err(e) => self.handle_frame_error(&e),
        }
    }

    /// A frame could not be read: close with the code the spec asks for.
    pub fn handle_frame_error(&mut self, err: &FrameError) {
        self.close(Close::for_frame(err));
    }

    /// The session stream failed (not a frame error and not the connection going away).
    pub fn handle_stream_error(&mut self, reason: String) {
        self.close(Close::protocol(reason));
    }

    /// Feeds one message from the agent.
    pub fn handle_message(&mut self, now: i64, msg: AgentMessage) {
        match (&self.state, msg) {
            (State::Closed, _) => {}
            (State::AwaitingStream { .. }, msg) => {
                // A message implies the stream is open.
                self.stream_opened(now);
                self.handle_message(now, msg);
            }
            (State::AwaitingHello { .. }, AgentMessage::Hello(hello)) => {
                match self.local.negotiate(hello.protocol) {
                    Some(protocol) => {
                        self.state = State::Negotiated { protocol };
                        self.effects.push_back(Effect::Hello { hello, protocol });
                    }
                    None => self.close(Close::new(
                        close::VERSION_MISMATCH,
                        format!(
                            "protocol {} is not supported; this server speaks {}",
                            hello.protocol, self.local
                        ),
                    )),
                }
            }
            (State::AwaitingHello { .. }, _) => self.close(Close::protocol("expected hello")),
            (State::Negotiated { .. }, _) => {
                self.close(Close::protocol("message before the welcome"));
            }
            (State::Running { .. }, AgentMessage::Hello(_)) => {
                self.close(Close::protocol("unexpected second hello"));
            }
            (State::Running { .. }, AgentMessage::Telemetry(batch)) => {
                self.commit(batch, Vec::new());
            }
            // A server of the negotiated version could not even decode it.
            (State::Running { protocol }, AgentMessage::ProvenancedTelemetry(_))
                if !protocol.supports_provenance() =>
            {
                let reason =
                    format!("telemetry with provenance needs protocol 1.2, session is {protocol}");
                self.close(Close::protocol(reason));
            }
            (State::Running { .. }, AgentMessage::ProvenancedTelemetry(b)) => {
                self.commit(b.batch, b.provenance);
            }
            (State::Running { protocol }, AgentMessage::Request { id, body }) => match body {
                AgentRequest::RenewCertificate { .. } if !protocol.supports_renewal() => {
                    let message = format!("renewal needs protocol 1.1, session is {protocol}");
                    self.respond(id, ServerResponse::Error { message });
                }
                body => self.effects.push_back(Effect::Request { id, body }),
            },
            (State::Running { .. }, AgentMessage::Response { id, body }) => {
                // An answer to nothing we asked (or asked twice) is dropped.
                if self.waiting.remove(&id) {
                    self.effects.push_back(Effect::Response { id, body });
                }
            }
        }
    }

    /// The deadline from [`ServerSession::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: i64) {
        match self.state {
            State::AwaitingStream { deadline } if now >= deadline => {
                self.close(Close::protocol("no session stream opened"));
            }
            State::AwaitingHello { deadline } if now >= deadline => {
                self.close(Close::protocol(format!(
                    "no hello within {}s",
                    HANDSHAKE_TIMEOUT_MS / 1000
                )));
            }
            _ => {}
        }
    }

    fn commit(&mut self, batch: TelemetryBatch, provenance: Vec<Provenance>) {
        self.committing.push_back(batch.seq);
        self.effects.push_back(Effect::Commit { batch, provenance });
    }

    fn close(&mut self, close: Close) {
        if !self.is_closed() {
            self.state = State::Closed;
            self.effects.push_back(Effect::Close(close));
        }
    }
}
