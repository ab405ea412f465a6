//! An agent machine and a server machine wired together in memory: frames pass as encoded
//! bytes through two queues the tests can reorder, drop or corrupt; a spool and a store of a
//! few lines stand in for the disk. No sockets, no runtime, no clock.

use super::Close;
use super::agent::{self, AgentSession, WINDOW};
use super::server::{self, Refusal, ServerSession};
use crate::close;
use crate::frame;
use crate::proto::{
    AgentMessage, AgentRequest, AgentResponse, Hello, ProtocolVersion, ServerMessage,
    ServerRequest, ServerResponse, Welcome,
};
use crate::telemetry::{Provenance, ProvenancedBatch, TelemetryBatch};
use std::collections::{BTreeMap, VecDeque};

const V10: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };
const V11: ProtocolVersion = ProtocolVersion { major: 1, minor: 1 };
const V20: ProtocolVersion = ProtocolVersion { major: 2, minor: 0 };
const START: i64 = 1_000_000;
const NEVER: i64 = i64::MAX;

fn hello(protocol: ProtocolVersion) -> Hello {
    Hello {
        protocol,
        agent_version: "test".into(),
        hostname: "h1".into(),
        os: "linux".into(),
    }
}

fn batch(seq: u64) -> ProvenancedBatch {
    ProvenancedBatch {
        batch: TelemetryBatch {
            seq,
            collector: "host".into(),
            ..TelemetryBatch::default()
        },
        provenance: vec![Provenance {
            kind: "node".into(),
            metric: "m".into(),
            source: "host".into(),
            method: "test".into(),
        }],
    }
}

/// The agent's spool: batches by sequence and the highest acknowledged one.
#[derive(Default)]
struct Spool {
    batches: BTreeMap<u64, ProvenancedBatch>,
    acked: u64,
}

impl Spool {
    fn with(seqs: std::ops::RangeInclusive<u64>) -> Self {
        Self {
            batches: seqs.map(|s| (s, batch(s))).collect(),
            acked: 0,
        }
    }
}

/// The server's store, deduplicating replays as the real one does: a batch at or below the
/// stored sequence is answered with that sequence and not stored again.
#[derive(Default)]
struct Store {
    last: u64,
    stored: Vec<(u64, usize)>,
}

impl Store {
    fn ingest(&mut self, batch: &TelemetryBatch, provenance: &[Provenance]) -> u64 {
        if batch.seq > self.last {
            self.last = batch.seq;
            self.stored.push((batch.seq, provenance.len()));
        }
        self.last
    }

    fn seqs(&self) -> Vec<u64> {
        self.stored.iter().map(|(s, _)| *s).collect()
    }
}

/// One connection between the two machines.
struct Pair {
    now: i64,
    agent: AgentSession,
    server: ServerSession,
    /// Frames on their way, as bytes.
    to_server: VecDeque<Vec<u8>>,
    to_agent: VecDeque<Vec<u8>>,
    /// Batches the server asked the store for, not yet committed.
    commits: VecDeque<(TelemetryBatch, Vec<Provenance>)>,
    agent_closed: Option<Close>,
    server_closed: Option<Close>,
    renewed: Vec<(String, i64)>,
    refused: Vec<String>,
    responses: Vec<(u64, AgentResponse)>,
}

impl Pair {
    fn connect(
        spool: &Spool,
        agent_version: ProtocolVersion,
        server_version: ProtocolVersion,
    ) -> Self {
        let mut server = ServerSession::new(START, server_version);
        server.stream_opened(START);
        Self {
            now: START,
            agent: AgentSession::new(START, hello(agent_version), spool.acked, NEVER),
            server,
            to_server: VecDeque::new(),
            to_agent: VecDeque::new(),
            commits: VecDeque::new(),
            agent_closed: None,
            server_closed: None,
            renewed: Vec::new(),
            refused: Vec::new(),
            responses: Vec::new(),
        }
    }

    /// Performs the agent's effects and sends what the window allows.
    fn agent_io(&mut self, spool: &mut Spool) {
        loop {
            while let Some(effect) = self.agent.poll_effect() {
                match effect {
                    agent::Effect::Send(m) => self.to_server.push_back(frame::encode(&m).unwrap()),
                    agent::Effect::Welcomed {
                        last_stored_seq, ..
                    } => {
                        spool.acked = spool.acked.max(last_stored_seq);
                        spool.batches.retain(|s, _| *s > spool.acked);
                    }
                    agent::Effect::AckSpool(seq) => {
                        assert!(seq > spool.acked, "acks only move forward");
                        spool.acked = seq;
                        spool.batches.retain(|s, _| *s > seq);
                    }
                    agent::Effect::StartRenewal => self.agent.renew("csr".into()),
                    agent::Effect::Renewed {
                        cert_pem,
                        not_after_unix,
                    } => self.renewed.push((cert_pem, not_after_unix)),
                    agent::Effect::RequestFailed { message } => self.refused.push(message),
                    agent::Effect::Close(c) => self.agent_closed = Some(c),
                }
            }
            let Some(from) = self.agent.wants_batch() else {
                return;
            };
            let Some(b) = spool.batches.range(from..).next().map(|(_, b)| b.clone()) else {
                return;
            };
            self.agent.send_batch(b).unwrap();
        }
    }

    /// Performs the server's effects; the store answers the hello with its last sequence.
    fn server_io(&mut self, store: &Store) {
        while let Some(effect) = self.server.poll_effect() {
            match effect {
                server::Effect::Send(m) => self.to_agent.push_back(frame::encode(&m).unwrap()),
                server::Effect::Hello { .. } => self.server.welcome(store.last, "test".into()),
                server::Effect::Commit { batch, provenance } => {
                    self.commits.push_back((batch, provenance));
                }
                server::Effect::Request { id, body } => {
                    let AgentRequest::RenewCertificate { csr_pem } = body;
                    assert_eq!(csr_pem, "csr");
                    self.server.respond(
                        id,
                        ServerResponse::Certificate {
                            cert_pem: "cert".into(),
                            not_after_unix: 42,
                        },
                    );
                }
                server::Effect::Response { id, body } => self.responses.push((id, body)),
                server::Effect::Close(c) => self.server_closed = Some(c),
            }
        }
    }

    /// Delivers every frame in flight, both ways, and performs effects until quiet.
    /// Commits are left pending.
    fn settle(&mut self, spool: &mut Spool, store: &Store) {
        loop {
            self.agent_io(spool);
            self.server_io(store);
            if self.to_server.is_empty() && self.to_agent.is_empty() {
                return;
            }
            while let Some(f) = self.to_server.pop_front() {
                self.server.handle_frame(self.now, &f);
            }
            self.server_io(store);
            while let Some(f) = self.to_agent.pop_front() {
                self.agent.handle_frame(self.now, &f);
            }
        }
    }

    /// Commits the oldest `n` pending batches.
    fn commit(&mut self, n: usize, store: &mut Store) {
        for _ in 0..n {
            let (b, p) = self.commits.pop_front().unwrap();
            let ack = store.ingest(&b, &p);
            self.server.committed(ack);
        }
    }

    /// Settles, committing everything, until nothing moves.
    fn run(&mut self, spool: &mut Spool, store: &mut Store) {
        loop {
            self.settle(spool, store);
            if self.commits.is_empty() {
                return;
            }
            self.commit(self.commits.len(), store);
        }
    }

    fn server_frames(&mut self) -> Vec<ServerMessage> {
        self.to_agent
            .drain(..)
            .map(|f| frame::decode::<ServerMessage>(&f).unwrap().0)
            .collect()
    }

    fn agent_frames(&mut self) -> Vec<AgentMessage> {
        self.to_server
            .drain(..)
            .map(|f| frame::decode::<AgentMessage>(&f).unwrap().0)
            .collect()
    }
}

fn telemetry_seqs(frames: &[AgentMessage]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|m| match m {
            AgentMessage::Telemetry(b) => Some(b.seq),
            AgentMessage::ProvenancedTelemetry(b) => Some(b.batch.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn a_session_stores_every_spooled_batch_once_in_order_and_empties_the_spool() {
    let (mut spool, mut store) = (Spool::with(1..=5), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.run(&mut spool, &mut store);
    assert_eq!(store.seqs(), vec![1, 2, 3, 4, 5]);
    assert!(
        store.stored.iter().all(|(_, prov)| *prov == 1),
        "1.2 carries provenance"
    );
    assert_eq!(spool.acked, 5);
    assert!(spool.batches.is_empty());
    assert_eq!(pair.agent.protocol(), Some(ProtocolVersion::CURRENT));
    assert_eq!(pair.agent_closed, None);
    assert_eq!(pair.server_closed, None);

    // A batch spooled later goes out on the same session.
    spool.batches.insert(6, batch(6));
    pair.run(&mut spool, &mut store);
    assert_eq!(store.seqs(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(spool.acked, 6);
}

#[test]
fn the_window_bounds_unacknowledged_batches_and_acks_reopen_it() {
    let total = WINDOW + 36;
    let (mut spool, mut store) = (Spool::with(1..=total), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    assert_eq!(
        pair.commits.len() as u64,
        WINDOW,
        "no more than the window in flight"
    );
    assert_eq!(pair.agent.wants_batch(), None);
    assert_eq!(
        pair.agent.send_batch(batch(WINDOW + 1)),
        Err(agent::SendError::WindowFull)
    );

    pair.commit(10, &mut store);
    pair.settle(&mut spool, &store);
    assert_eq!(spool.acked, 10);
    assert_eq!(
        pair.commits.len() as u64,
        WINDOW,
        "ten acks let ten more out"
    );
    assert_eq!(pair.commits.back().unwrap().0.seq, WINDOW + 10);

    pair.run(&mut spool, &mut store);
    assert_eq!(store.seqs(), (1..=total).collect::<Vec<_>>());
    assert!(spool.batches.is_empty());
}

#[test]
fn acks_are_cumulative_so_lost_reordered_and_repeated_acks_are_harmless() {
    let (mut spool, mut store) = (Spool::with(1..=4), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    pair.commit(4, &mut store);
    pair.server_io(&store);
    let acks = pair.server_frames();
    assert_eq!(
        acks,
        (1..=4)
            .map(|seq| ServerMessage::Ack { seq })
            .collect::<Vec<_>>(),
        "one ack per commit, in order"
    );
    // Ack 1 is lost, 3 arrives before 2, 3 arrives twice.
    for seq in [3, 2, 3] {
        let f = frame::encode(&ServerMessage::Ack { seq }).unwrap();
        pair.agent.handle_frame(pair.now, &f);
    }
    let mut spool_acks = Vec::new();
    while let Some(e) = pair.agent.poll_effect() {
        if let agent::Effect::AckSpool(seq) = e {
            spool_acks.push(seq);
        }
    }
    assert_eq!(spool_acks, vec![3], "only news moves the spool");
    assert_eq!(pair.agent.acked(), 3);
    pair.agent.handle_frame(
        pair.now,
        &frame::encode(&ServerMessage::Ack { seq: 4 }).unwrap(),
    );
    assert_eq!(pair.agent.poll_effect(), Some(agent::Effect::AckSpool(4)));
}

#[test]
fn the_server_acks_in_commit_order_with_the_stores_answer() {
    let mut store = Store {
        last: 2,
        ..Store::default()
    };
    let mut pair = Pair::connect(
        &Spool::default(),
        ProtocolVersion::CURRENT,
        ProtocolVersion::CURRENT,
    );
    // A replay of 1..=3 reaches a store that already holds 2.
    pair.server.handle_message(
        pair.now,
        AgentMessage::Hello(hello(ProtocolVersion::CURRENT)),
    );
    pair.server_io(&store);
    pair.to_agent.clear();
    for seq in 1..=3 {
        pair.server
            .handle_message(pair.now, AgentMessage::ProvenancedTelemetry(batch(seq)));
    }
    pair.server_io(&store);
    assert_eq!(pair.server.committing(), 3);
    pair.commit(3, &mut store);
    pair.server_io(&store);
    assert_eq!(
        pair.server_frames(),
        vec![
            ServerMessage::Ack { seq: 2 },
            ServerMessage::Ack { seq: 2 },
            ServerMessage::Ack { seq: 3 }
        ]
    );
    assert_eq!(store.seqs(), vec![3], "replays are not stored twice");
}

#[test]
fn a_reconnect_mid_replay_resends_from_the_last_ack_and_stores_nothing_twice() {
    let (mut spool, mut store) = (Spool::with(1..=10), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    assert_eq!(pair.commits.len(), 10);
    // Three commits are acknowledged, a fourth is committed but its ack is lost with the
    // connection; six more are still in the writer's queue.
    pair.commit(4, &mut store);
    pair.server_io(&store);
    for f in pair.to_agent.drain(..3).collect::<Vec<_>>() {
        pair.agent.handle_frame(pair.now, &f);
    }
    pair.agent_io(&mut spool);
    assert_eq!(spool.acked, 3);
    let old_commits = std::mem::take(&mut pair.commits);
    drop(pair);

    // The new session starts from the spool: the server says it stored 4.
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    assert_eq!(
        spool.acked, 4,
        "the welcome acknowledges what the server has"
    );
    let resent: Vec<u64> = pair.commits.iter().map(|(b, _)| b.seq).collect();
    assert_eq!(
        resent,
        (5..=10).collect::<Vec<_>>(),
        "replay starts after the stored one"
    );

    // The old connection's queued batches land first; the replays are duplicates.
    for (b, p) in old_commits {
        store.ingest(&b, &p);
    }
    pair.run(&mut spool, &mut store);
    assert_eq!(
        store.seqs(),
        (1..=10).collect::<Vec<_>>(),
        "each batch stored once"
    );
    assert_eq!(spool.acked, 10);
    assert!(spool.batches.is_empty());
}

#[test]
fn an_older_agent_gets_its_version_and_sends_bare_telemetry() {
    let (mut spool, mut store) = (Spool::with(1..=2), Store::default());
    let mut pair = Pair::connect(&spool, V11, ProtocolVersion::CURRENT);
    pair.agent_io(&mut spool);
    let hello_frame = pair.to_server.pop_front().unwrap();
    pair.server.handle_frame(pair.now, &hello_frame);
    pair.server_io(&store);
    let welcome = pair.server_frames();
    assert!(matches!(
        &welcome[..],
        [ServerMessage::Welcome(Welcome { protocol: V11, .. })]
    ));
    for f in &welcome {
        pair.agent
            .handle_frame(pair.now, &frame::encode(f).unwrap());
    }
    pair.agent_io(&mut spool);
    let sent = pair.agent_frames();
    assert!(sent.iter().all(|m| matches!(m, AgentMessage::Telemetry(_))));
    assert_eq!(telemetry_seqs(&sent), vec![1, 2]);
    for m in &sent {
        pair.server
            .handle_frame(pair.now, &frame::encode(m).unwrap());
    }
    pair.run(&mut spool, &mut store);
    assert_eq!(
        store.stored,
        vec![(1, 0), (2, 0)],
        "stored without provenance"
    );
}

#[test]
fn an_older_server_negotiates_down_and_gets_no_provenance() {
    let (mut spool, mut store) = (Spool::with(1..=3), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, V11);
    pair.settle(&mut spool, &store);
    assert_eq!(pair.agent.protocol(), Some(V11));
    assert_eq!(pair.server.protocol(), Some(V11));
    pair.run(&mut spool, &mut store);
    assert_eq!(store.stored, vec![(1, 0), (2, 0), (3, 0)]);
    assert_eq!(pair.server_closed, None);
}

#[test]
fn provenance_in_a_session_below_1_2_is_a_protocol_error() {
    let (mut spool, store) = (Spool::default(), Store::default());
    let mut pair = Pair::connect(&spool, V11, V11);
    pair.settle(&mut spool, &store);
    pair.server
        .handle_message(pair.now, AgentMessage::ProvenancedTelemetry(batch(1)));
    pair.server_io(&store);
    assert_eq!(
        pair.server_closed.map(|c| c.code),
        Some(close::PROTOCOL_ERROR)
    );
    assert!(pair.commits.is_empty());
}

#[test]
fn another_major_is_refused_with_version_mismatch_both_ways() {
    let store = Store::default();
    let mut spool = Spool::default();
    let mut pair = Pair::connect(&spool, V20, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    let c = pair.server_closed.clone().unwrap();
    assert_eq!(c.code, close::VERSION_MISMATCH);
    assert!(c.reason.contains("2.0"), "{}", c.reason);
    assert_eq!(pair.agent.protocol(), None, "no welcome was sent");

    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, V20);
    pair.settle(&mut spool, &store);
    assert_eq!(
        pair.server_closed.map(|c| c.code),
        Some(close::VERSION_MISMATCH)
    );
}

#[test]
fn the_agent_answers_pings_and_the_server_matches_answers_to_its_requests() {
    let (mut spool, store) = (Spool::default(), Store::default());
    let mut pair = Pair::connect(&spool, V10, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    let id = pair
        .server
        .request(ServerRequest::Ping { nonce: 77 })
        .unwrap();
    pair.settle(&mut spool, &store);
    assert_eq!(
        pair.responses,
        vec![(id, AgentResponse::Pong { nonce: 77 })]
    );
    // An answer nobody asked for, or a second one, is dropped.
    for rid in [id, id + 5] {
        pair.server.handle_message(
            pair.now,
            AgentMessage::Response {
                id: rid,
                body: AgentResponse::Pong { nonce: 1 },
            },
        );
    }
    pair.server_io(&store);
    assert_eq!(pair.responses.len(), 1);
    assert_eq!(pair.server_closed, None);
}

#[test]
fn renewal_fires_at_its_time_installs_the_certificate_and_retries_after_a_refusal() {
    let (mut spool, mut store) = (Spool::default(), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.agent.set_renew_at(START + 5_000);
    pair.settle(&mut spool, &store);
    assert_eq!(pair.agent.poll_timeout(), Some(START + 5_000));
    pair.now = START + 4_999;
    pair.agent.handle_timeout(pair.now);
    pair.settle(&mut spool, &store);
    assert!(pair.renewed.is_empty(), "not due yet");

    pair.now = START + 5_000;
    pair.agent.handle_timeout(pair.now);
    pair.settle(&mut spool, &store);
    assert_eq!(pair.renewed, vec![("cert".to_owned(), 42)]);

    // A refused renewal is retried a minute after it was sent.
    pair.agent.set_renew_at(START + 10_000);
    pair.now = START + 10_000;
    pair.agent.handle_timeout(pair.now);
    pair.agent_io(&mut spool);
    let [AgentMessage::Request { id, .. }] = pair.agent_frames()[..] else {
        panic!("one renewal request expected");
    };
    assert_eq!(
        pair.agent.poll_timeout(),
        None,
        "no second request while one waits"
    );
    // An answer to another id leaves the request waiting.
    let stray = ServerMessage::Response {
        id: id + 1,
        body: ServerResponse::Certificate {
            cert_pem: "x".into(),
            not_after_unix: 1,
        },
    };
    pair.agent.handle_message(pair.now, stray);
    assert_eq!(pair.agent.poll_effect(), None);
    let refusal = ServerMessage::Response {
        id,
        body: ServerResponse::Error {
            message: "no".into(),
        },
    };
    pair.agent.handle_message(pair.now, refusal);
    pair.agent_io(&mut spool);
    assert_eq!(pair.refused, vec!["no".to_owned()]);
    assert_eq!(
        pair.agent.poll_timeout(),
        Some(START + 10_000 + agent::RENEW_RETRY_MS)
    );
    pair.run(&mut spool, &mut store);
    assert_eq!(pair.renewed.len(), 1);
}

#[test]
fn renewal_needs_1_1() {
    let (mut spool, store) = (Spool::default(), Store::default());
    // A 1.0 agent never asks.
    let mut pair = Pair::connect(&spool, V10, ProtocolVersion::CURRENT);
    pair.agent.set_renew_at(START);
    pair.settle(&mut spool, &store);
    assert_eq!(pair.agent.poll_timeout(), None);
    pair.agent.handle_timeout(START + 1);
    assert_eq!(pair.agent.poll_effect(), None);
    // A 1.0 session's server refuses a renewal request with an error response.
    pair.server.handle_message(
        pair.now,
        AgentMessage::Request {
            id: 9,
            body: AgentRequest::RenewCertificate {
                csr_pem: "csr".into(),
            },
        },
    );
    pair.server_io(&store);
    assert!(matches!(
        &pair.server_frames()[..],
        [ServerMessage::Response { id: 9, body: ServerResponse::Error { message } }]
            if message.contains("1.1")
    ));
}

#[test]
fn bad_frames_close_with_the_right_code() {
    let oversized = [frame::FRAME_VERSION, 0xff, 0xff, 0xff, 0xff];
    let garbage = [frame::FRAME_VERSION, 0, 0, 0, 3, 0xff, 0xff, 0xff];
    let foreign_version = {
        let mut f = frame::encode(&ServerMessage::Ack { seq: 1 }).unwrap();
        f[0] = 9;
        f
    };
    for (bytes, code) in [
        (&oversized[..], close::FRAME_TOO_LARGE),
        (&garbage[..], close::PROTOCOL_ERROR),
        (&foreign_version[..], close::PROTOCOL_ERROR),
    ] {
        let mut a = AgentSession::new(START, hello(ProtocolVersion::CURRENT), 0, NEVER);
        a.handle_frame(START, bytes);
        let effects: Vec<_> = std::iter::from_fn(|| a.poll_effect()).collect();
        assert!(matches!(effects.last(), Some(agent::Effect::Close(c)) if c.code == code));
        assert!(a.is_closed());

        let mut s = ServerSession::new(START, ProtocolVersion::CURRENT);
        s.handle_frame(START, bytes);
        assert!(matches!(s.poll_effect(), Some(server::Effect::Close(c)) if c.code == code));
    }
}

#[test]
fn out_of_place_messages_close_with_protocol_error() {
    let welcome = ServerMessage::Welcome(Welcome {
        protocol: ProtocolVersion::CURRENT,
        server_version: "t".into(),
        last_stored_seq: 0,
    });
    // The agent: an ack before the welcome; a second welcome.
    let mut a = AgentSession::new(START, hello(ProtocolVersion::CURRENT), 0, NEVER);
    a.handle_message(START, ServerMessage::Ack { seq: 1 });
    let last = std::iter::from_fn(|| a.poll_effect()).last();
    assert!(matches!(last, Some(agent::Effect::Close(c)) if c.code == close::PROTOCOL_ERROR));
    let mut a = AgentSession::new(START, hello(ProtocolVersion::CURRENT), 0, NEVER);
    a.handle_message(START, welcome.clone());
    a.handle_message(START, welcome);
    let last = std::iter::from_fn(|| a.poll_effect()).last();
    assert!(matches!(last, Some(agent::Effect::Close(c)) if c.reason.contains("second welcome")));

    // The server: telemetry before the hello; a second hello.
    let mut s = ServerSession::new(START, ProtocolVersion::CURRENT);
    s.handle_message(START, AgentMessage::Telemetry(batch(1).batch));
    assert!(
        matches!(s.poll_effect(), Some(server::Effect::Close(c)) if c.reason == "expected hello")
    );
    let mut s = ServerSession::new(START, ProtocolVersion::CURRENT);
    s.handle_message(START, AgentMessage::Hello(hello(ProtocolVersion::CURRENT)));
    s.welcome(0, "t".into());
    s.handle_message(START, AgentMessage::Hello(hello(ProtocolVersion::CURRENT)));
    let last = std::iter::from_fn(|| s.poll_effect()).last();
    assert!(matches!(last, Some(server::Effect::Close(c)) if c.code == close::PROTOCOL_ERROR));
}

#[test]
fn handshakes_time_out_and_refusals_carry_their_codes() {
    let mut a = AgentSession::new(START, hello(ProtocolVersion::CURRENT), 0, NEVER);
    let _ = a.poll_effect();
    assert_eq!(a.poll_timeout(), Some(START + super::HANDSHAKE_TIMEOUT_MS));
    a.handle_timeout(START + super::HANDSHAKE_TIMEOUT_MS - 1);
    assert_eq!(a.poll_effect(), None);
    a.handle_timeout(START + super::HANDSHAKE_TIMEOUT_MS);
    assert!(
        matches!(a.poll_effect(), Some(agent::Effect::Close(c)) if c.reason.contains("no welcome"))
    );

    let mut s = ServerSession::new(START, ProtocolVersion::CURRENT);
    s.handle_timeout(START + super::HANDSHAKE_TIMEOUT_MS);
    assert!(
        matches!(s.poll_effect(), Some(server::Effect::Close(c)) if c.reason == "no session stream opened")
    );
    let mut s = ServerSession::new(START, ProtocolVersion::CURRENT);
    s.stream_opened(START + 5);
    assert_eq!(
        s.poll_timeout(),
        Some(START + 5 + super::HANDSHAKE_TIMEOUT_MS)
    );
    s.handle_timeout(START + 5 + super::HANDSHAKE_TIMEOUT_MS);
    assert!(
        matches!(s.poll_effect(), Some(server::Effect::Close(c)) if c.reason.contains("no hello"))
    );

    for (refusal, code) in [
        (
            Refusal::StorageUnavailable("disk".into()),
            close::STORAGE_UNAVAILABLE,
        ),
        (Refusal::Revoked("gone".into()), close::AGENT_REVOKED),
        (
            Refusal::IdentityInUse("twin".into()),
            close::IDENTITY_IN_USE,
        ),
    ] {
        let mut s = ServerSession::new(START, ProtocolVersion::CURRENT);
        s.refuse(refusal);
        assert!(matches!(s.poll_effect(), Some(server::Effect::Close(c)) if c.code == code));
        assert!(s.is_closed());
    }
}

#[test]
fn a_failed_commit_closes_with_storage_unavailable_and_acks_nothing() {
    let (mut spool, store) = (Spool::with(1..=2), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    pair.server.commit_failed("disk full".into());
    pair.server.committed(2);
    pair.settle(&mut spool, &store);
    assert_eq!(
        pair.server_closed,
        Some(Close::new(close::STORAGE_UNAVAILABLE, "disk full"))
    );
    assert_eq!(spool.acked, 0, "nothing acknowledged after the failure");
    assert_eq!(spool.batches.len(), 2);
}

#[test]
fn batches_go_out_in_order_and_stop_agent_closes_normally() {
    let (mut spool, store) = (Spool::with(3..=4), Store::default());
    let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
    pair.settle(&mut spool, &store);
    assert_eq!(
        pair.agent.send_batch(batch(2)),
        Err(agent::SendError::OutOfOrder { seq: 2, next: 5 })
    );
    pair.agent.shutdown();
    pair.agent_io(&mut spool);
    assert_eq!(
        pair.agent_closed,
        Some(Close::new(close::NORMAL, "agent stopping"))
    );
    assert_eq!(
        pair.agent.send_batch(batch(5)),
        Err(agent::SendError::NotRunning)
    );
}

/// One step of a random schedule for [`any_schedule_delivers_every_batch_exactly_once`].
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A collector spools the next batch.
    Spool,
    /// The oldest frame to the server arrives.
    ToServer,
    /// The oldest frame to the agent arrives.
    ToAgent,
    /// The writer commits the oldest queued batch.
    Commit,
    /// The connection drops; the old writer queue is committed (`true`) or lost (`false`).
    Reconnect(bool),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => Just(Step::Spool),
        4 => Just(Step::ToServer),
        4 => Just(Step::ToAgent),
        3 => Just(Step::Commit),
        1 => any::<bool>().prop_map(Step::Reconnect),
    ]
}

proptest::proptest! {
    /// Whatever the interleaving of spooling, delivery, commits and reconnects, once the
    /// connection settles every spooled batch is stored exactly once, in order, and the
    /// spool is empty; on the way, the spool never drops a batch the store lacks and the
    /// server never holds more than a window of uncommitted batches (the harness also asserts
    /// that the spool's acks only move forward).
    #[test]
    fn any_schedule_delivers_every_batch_exactly_once(
        steps in proptest::collection::vec(step(), 0..300),
    ) {
        let (mut spool, mut store) = (Spool::default(), Store::default());
        let mut spooled = 0u64;
        let mut pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
        for s in steps {
            match s {
                Step::Spool => {
                    spooled += 1;
                    spool.batches.insert(spooled, batch(spooled));
                }
                Step::ToServer => {
                    if let Some(f) = pair.to_server.pop_front() {
                        pair.server.handle_frame(pair.now, &f);
                    }
                }
                Step::ToAgent => {
                    if let Some(f) = pair.to_agent.pop_front() {
                        pair.agent.handle_frame(pair.now, &f);
                    }
                }
                Step::Commit => {
                    if !pair.commits.is_empty() {
                        pair.commit(1, &mut store);
                    }
                }
                Step::Reconnect(committed) => {
                    if committed {
                        for (b, p) in pair.commits.drain(..) {
                            store.ingest(&b, &p);
                        }
                    }
                    pair = Pair::connect(&spool, ProtocolVersion::CURRENT, ProtocolVersion::CURRENT);
                }
            }
            pair.agent_io(&mut spool);
            pair.server_io(&store);
            // Nothing leaves the spool before the store has it.
            proptest::prop_assert!(spool.acked <= store.last);
            proptest::prop_assert!(pair.commits.len() as u64 <= WINDOW);
        }
        pair.run(&mut spool, &mut store);
        proptest::prop_assert_eq!(store.seqs(), (1..=spooled).collect::<Vec<_>>());
        proptest::prop_assert_eq!(spool.acked, spooled);
        proptest::prop_assert!(spool.batches.is_empty());
        proptest::prop_assert_eq!(pair.agent_closed, None);
        proptest::prop_assert_eq!(pair.server_closed, None);
    }
}
