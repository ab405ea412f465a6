//! The server-wide context: the handles that the QUIC edge, enrollment and every HTTP handler
//! share (store, CA, ingest writer, connected agents, audit log, Patrol's schedule) and the
//! settings they read. Built once by `crate::start`.

use crate::audit::Auditor;
use crate::ingest::{live::LiveAgents, writer::WriterHandle};
use crate::model::alert::AlertTrigger;
use crate::patrol::run::Schedule;
use crate::pki::Pki;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use warden_shared::proto::ProtocolVersion;

/// What every connection handler, HTTP handler and service shares.
pub struct Context {
    /// The store.
    pub store: Arc<Store>,
    /// The CA.
    pub pki: Arc<Pki>,
    /// The ingest writer and its counters.
    pub writer: WriterHandle,
    /// Connected agents.
    pub live: Arc<LiveAgents>,
    /// The audit log's entry point.
    pub audit: Arc<Auditor>,
    /// Patrol's schedule.
    pub patrol: Arc<Schedule>,
    /// Asks the Patrol task for a run when an alert fires (bounded; a full queue drops the
    /// request, since a run is already due).
    pub patrol_alerts: mpsc::Sender<AlertTrigger>,
    /// SHA-256 of the admin token.
    pub admin_token_hash: [u8; 32],
    /// Addresses written into join tokens.
    pub advertise: Vec<String>,
    /// Default join token lifetime.
    pub token_ttl: Duration,
    /// Lifetime of agent certificates.
    pub cert_ttl: Duration,
    /// Highest protocol version offered to agents ([`ProtocolVersion::CURRENT`] except in
    /// compatibility tests, which pose as an older server).
    pub protocol: ProtocolVersion,
}
