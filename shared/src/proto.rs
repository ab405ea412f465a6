//! Versioned session messages between agent and server, plus enrollment.
//!
//! One bidirectional QUIC stream, opened by the agent, carries a session:
//!
//! ```text
//! agent                                   server
//!   | Hello{protocol, host, version}  ->      |
//!   |      <- Welcome{protocol, last_seq}     |   (or connection closed with a code)
//!   | Telemetry{seq=n}                ->      |   (1.2: ProvenancedTelemetry)
//!   |      <- Ack{seq=n}  (after a durable commit)
//!   |      <- Request{id, ServerRequest}      |   control, server -> agent
//!   | Response{id, AgentResponse}     ->      |
//!   | Request{id, AgentRequest}       ->      |   e.g. certificate renewal
//!   |      <- Response{id, ServerResponse}    |
//! ```
//!
//! Versioning: the major must match; the session runs at the lower minor of the two
//! peers, and neither side sends a variant the negotiated minor does not know.
//! Variants are append-only (postcard encodes the variant index).

use crate::telemetry::{ProvenancedBatch, TelemetryBatch};
use serde::{Deserialize, Serialize};

/// A protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProtocolVersion {
    /// Incompatible changes bump this.
    pub major: u16,
    /// Compatible additions bump this.
    pub minor: u16,
}

impl ProtocolVersion {
    /// The version this build speaks.
    ///
    /// - 1.0: hello, telemetry, acks, ping.
    /// - 1.1: certificate renewal over the session.
    /// - 1.2: telemetry with per-metric provenance ([`AgentMessage::ProvenancedTelemetry`]).
    pub const CURRENT: Self = Self { major: 1, minor: 2 };

    /// The version a session between `self` (local) and `peer` runs at, if any.
    pub fn negotiate(self, peer: Self) -> Option<Self> {
        (self.major == peer.major).then(|| Self {
            major: self.major,
            minor: self.minor.min(peer.minor),
        })
    }

    /// Whether certificate renewal over the session is available.
    pub fn supports_renewal(self) -> bool {
        self.minor >= 1
    }

    /// Whether telemetry may carry provenance ([`AgentMessage::ProvenancedTelemetry`]).
    pub fn supports_provenance(self) -> bool {
        self.minor >= 2
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// First message of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Highest version the agent speaks.
    pub protocol: ProtocolVersion,
    /// `warden-agent` version.
    pub agent_version: String,
    /// Host name.
    pub hostname: String,
    /// Operating system description.
    pub os: String,
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Negotiated version.
    pub protocol: ProtocolVersion,
    /// `warden` version.
    pub server_version: String,
    /// Highest batch sequence already stored for this agent (0 = none).
    pub last_stored_seq: u64,
}

/// Agent to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    /// Opens the session.
    Hello(Hello),
    /// A telemetry batch.
    Telemetry(TelemetryBatch),
    /// A request from the agent.
    Request {
        /// Correlation id, unique per session.
        id: u64,
        /// The request.
        body: AgentRequest,
    },
    /// The answer to a [`ServerMessage::Request`].
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: AgentResponse,
    },
    /// A telemetry batch with the provenance of its metrics (protocol 1.2); acknowledged
    /// like [`AgentMessage::Telemetry`]. In a 1.0 or 1.1 session the agent sends the bare
    /// batch as `Telemetry` instead.
    ProvenancedTelemetry(ProvenancedBatch),
}

/// Server to agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// Accepts the session.
    Welcome(Welcome),
    /// Every batch up to and including `seq` is durably stored.
    Ack {
        /// Highest stored sequence.
        seq: u64,
    },
    /// A control request to the agent.
    Request {
        /// Correlation id, unique per session.
        id: u64,
        /// The request.
        body: ServerRequest,
    },
    /// The answer to an [`AgentMessage::Request`].
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: ServerResponse,
    },
}

/// Requests the server sends to the agent (control plane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerRequest {
    /// Liveness check; the agent answers [`AgentResponse::Pong`].
    Ping {
        /// Echoed back.
        nonce: u64,
    },
}

/// Answers to [`ServerRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentResponse {
    /// Answer to ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Requests the agent sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentRequest {
    /// Sign a new client certificate for this agent's key (protocol 1.1).
    RenewCertificate {
        /// PEM CSR for the agent's new key.
        csr_pem: String,
    },
}

/// Answers to [`AgentRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerResponse {
    /// A renewed certificate.
    Certificate {
        /// PEM certificate.
        cert_pem: String,
        /// Expiry, seconds since the epoch.
        not_after_unix: i64,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Sent by the agent on an enrollment connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The join token as printed by `warden token create`.
    pub token: String,
    /// PEM CSR for the agent's key.
    pub csr_pem: String,
    /// Host name of the enrolling machine.
    pub hostname: String,
    /// `warden-agent` version.
    pub agent_version: String,
}

/// The server's answer to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollResponse {
    /// Enrolled.
    Accepted {
        /// The id assigned to this agent.
        agent_id: String,
        /// Its organisation.
        org_id: String,
        /// PEM client certificate.
        cert_pem: String,
        /// PEM CA certificate to trust from now on.
        ca_pem: String,
        /// Expiry of the certificate, seconds since the epoch.
        not_after_unix: i64,
    },
    /// Refused; the reason is safe to show to the operator.
    Refused {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::CPU_PCT;

    #[test]
    fn negotiation_takes_the_lower_minor_and_requires_the_same_major() {
        let v10 = ProtocolVersion { major: 1, minor: 0 };
        let v11 = ProtocolVersion { major: 1, minor: 1 };
        assert_eq!(ProtocolVersion::CURRENT.negotiate(v10), Some(v10));
        assert_eq!(ProtocolVersion::CURRENT.negotiate(v11), Some(v11));
        assert_eq!(v11.negotiate(ProtocolVersion::CURRENT), Some(v11));
        assert!(!v10.supports_renewal());
        assert!(ProtocolVersion::CURRENT.supports_renewal());
        assert!(!v11.supports_provenance());
        assert!(ProtocolVersion::CURRENT.supports_provenance());
        assert_eq!(
            ProtocolVersion::CURRENT.negotiate(ProtocolVersion { major: 2, minor: 0 }),
            None
        );
    }

    /// Pins the encoding older peers depend on: the variant indexes of `AgentMessage` and
    /// the layout of a 1.0 `Telemetry` frame. Appending variants must keep this passing.
    #[test]
    fn agent_message_variants_are_append_only() {
        use crate::ResourceId;
        use crate::resource::ResourceKind;
        use crate::telemetry::{Provenance, Sample};
        let batch = TelemetryBatch {
            seq: 3,
            collector: "host".into(),
            samples: vec![Sample {
                resource_id: ResourceId::new("node:h").unwrap(),
                metric: CPU_PCT.into(),
                ts_ms: 5,
                value: 0.5,
            }],
            ..TelemetryBatch::default()
        };
        let bare = postcard::to_stdvec(&batch).unwrap();
        let old = postcard::to_stdvec(&AgentMessage::Telemetry(batch.clone())).unwrap();
        assert_eq!(old[0], 1, "Telemetry stays variant 1");
        assert_eq!(&old[1..], &bare[..]);

        let with = ProvenancedBatch {
            batch,
            provenance: vec![Provenance::new(
                ResourceKind::Node,
                CPU_PCT,
                "host",
                "sysinfo: /proc/stat",
            )],
        };
        let msg = AgentMessage::ProvenancedTelemetry(with.clone());
        let bytes = crate::frame::encode(&msg).unwrap();
        assert_eq!(
            bytes[crate::frame::HEADER_LEN],
            4,
            "appended after Response"
        );
        let (back, _): (AgentMessage, usize) = crate::frame::decode(&bytes).unwrap();
        assert_eq!(back, msg);
        // A 1.1 peer's view of the same frame: an unknown variant, refused as malformed (so
        // the agent must not send it to such a peer; negotiation prevents that).
        #[derive(Debug, Deserialize)]
        #[expect(dead_code, reason = "only the variant index matters here")]
        enum AgentMessageV11 {
            Hello(Hello),
            Telemetry(TelemetryBatch),
            Request { id: u64, body: AgentRequest },
            Response { id: u64, body: AgentResponse },
        }
        assert!(crate::frame::decode::<AgentMessageV11>(&bytes).is_err());
    }
}
