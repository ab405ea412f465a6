//! Warden's sans-IO protocol crate: wire framing, versioned messages, join tokens,
//! identifiers and the telemetry model shared by `warden-agent` and `warden`.
//!
//! Invariants:
//! - nothing here does IO, reads a clock or spawns tasks; time is always a parameter;
//! - every wire type is encoded with postcard through [`frame::encode`] / [`frame::decode`];
//! - enum variants on the wire are append-only: postcard encodes the variant index, so
//!   reordering or removing a variant breaks older peers (see `docs/specs/protocol.md`).
#![warn(missing_docs)]

pub mod frame;
pub mod ids;
pub mod metric;
pub mod proto;
pub mod resource;
pub mod telemetry;
pub mod token;

pub use ids::{AgentId, OrgId, ResourceId};

/// ALPN for authenticated agent sessions.
pub const ALPN_AGENT: &[u8] = b"warden/1";
/// ALPN for enrollment (no client certificate yet; the join token authenticates).
pub const ALPN_ENROLL: &[u8] = b"warden-enroll/1";
/// The DNS name every server certificate carries and every agent verifies.
pub const SERVER_NAME: &str = "warden-server";
/// The organisation every record belongs to until organisations are configured.
pub const DEFAULT_ORG: &str = "default";

/// Application close codes used on QUIC connections, so both sides can say why a
/// connection ended without parsing strings.
pub mod close {
    /// Normal shutdown.
    pub const NORMAL: u32 = 0;
    /// A frame could not be decoded (bad version, truncated, malformed).
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame was larger than [`crate::frame::MAX_FRAME_LEN`].
    pub const FRAME_TOO_LARGE: u32 = 2;
    /// The agent presented no client certificate on the agent ALPN.
    pub const CERT_REQUIRED: u32 = 3;
    /// The agent is revoked or unknown to this server.
    pub const AGENT_REVOKED: u32 = 4;
    /// The peer's protocol major version is not supported.
    pub const VERSION_MISMATCH: u32 = 5;
    /// Enrollment was refused; the reason string says why.
    pub const ENROLL_REFUSED: u32 = 6;
    /// The server is shutting down.
    pub const SHUTDOWN: u32 = 7;
    /// Another connection for the same agent replaced this one.
    pub const REPLACED: u32 = 8;
    /// The server cannot store telemetry now (its disk is full); the reason names the disk.
    /// Nothing was lost: the agent keeps its spool and retries soon.
    pub const STORAGE_UNAVAILABLE: u32 = 9;
    /// Another live process already holds a session with this agent's identity (a copied
    /// key and certificate); the server refuses the newcomer.
    pub const IDENTITY_IN_USE: u32 = 10;
}
