//! Records of the fleet as the store keeps them (JSON-encoded values): agents, join tokens,
//! resources with their latest samples and provenance, and the ingest input/output types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warden_shared::resource::ResourceKind;
use warden_shared::telemetry::{Provenance, TelemetryBatch};

/// An enrolled agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentRecord {
    /// Agent id, named in its certificate.
    pub id: String,
    /// Organisation the agent belongs to.
    pub org_id: String,
    /// Hostname reported at enrollment.
    pub hostname: String,
    /// Agent version reported at enrollment or on connect.
    pub version: String,
    /// When the agent enrolled, ms since the epoch.
    pub enrolled_at_ms: i64,
    /// When the agent was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
    /// Serial number of the current client certificate (hex).
    pub cert_serial: String,
    /// Expiry of the current client certificate, seconds since the epoch.
    pub cert_not_after_unix: i64,
    /// When a batch from this agent was last stored.
    pub last_seen_ms: Option<i64>,
    /// Protocol version negotiated on the last connection.
    pub protocol: Option<String>,
    /// Samples the agent's spool dropped so far (cumulative, as the agent reports it).
    pub dropped_samples: u64,
    /// Last reported health, by collector name.
    pub collectors: BTreeMap<String, CollectorHealthRecord>,
    /// The last time a second process presented this agent's identity while it was
    /// connected (a copied key and certificate), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_conflict: Option<IdentityConflict>,
}

/// A second live process with one agent's identity, refused (see `ingest/session.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityConflict {
    /// When the last one was refused, ms since the epoch.
    pub last_ms: i64,
    /// When the first one was refused.
    pub first_ms: i64,
    /// How many connections were refused.
    pub refused: u64,
    /// Address of the connected process.
    pub connected_from: String,
    /// Address of the last refused process.
    pub refused_from: String,
}

/// The last reported health of one collector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectorHealthRecord {
    /// `ok`, `degraded` or `failed`.
    pub status: String,
    /// What went wrong, if anything.
    pub message: Option<String>,
    /// When the collector last succeeded.
    pub last_success_ms: Option<i64>,
    /// When the collector last ran (the batch's collection time).
    pub last_run_ms: i64,
    /// How long the last run took.
    pub duration_ms: u64,
}

/// A one-time join token. Only the SHA-256 of its secret is stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    /// Public token id.
    pub id: String,
    /// Organisation an agent enrolled with this token joins.
    pub org_id: String,
    /// SHA-256 of the token secret.
    pub secret_hash: [u8; 32],
    /// When the token was created.
    pub created_at_ms: i64,
    /// Expiry, seconds since the epoch.
    pub expires_unix: i64,
    /// When the token was redeemed.
    pub used_at_ms: Option<i64>,
    /// The agent id it was redeemed for.
    pub used_by: Option<String>,
    /// When it was revoked (an unused token can be revoked; it is refused afterwards).
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
}

/// Why a join token was refused. Nothing is written when a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token with that id.
    Unknown,
    /// The id exists but the secret's hash differs.
    Forged,
    /// The token was already redeemed.
    AlreadyUsed {
        /// When.
        at_ms: i64,
    },
    /// The token was revoked.
    Revoked {
        /// When.
        at_ms: i64,
    },
    /// The token expired.
    Expired {
        /// Its expiry, seconds since the epoch.
        at_unix: i64,
    },
}

/// Current state of one resource, keyed by (org, resource id).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResourceRecord {
    /// Canonical resource id, `<type>:<name>`.
    pub id: String,
    /// Owning organisation.
    pub org_id: String,
    /// Resource type, the part of the id before `:`.
    pub kind: String,
    /// Human name.
    pub name: String,
    /// Parent resource id.
    pub parent: Option<String>,
    /// Status word; `unknown` for a resource known only from samples.
    pub status: String,
    /// Attributes; a value the source could not read is `null`.
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// The agent that last reported it.
    pub agent_id: String,
    /// The collector that last reported it.
    pub collector: String,
    /// Collection time of the state last stored.
    pub updated_at_ms: i64,
    /// Latest sample per metric name.
    pub latest: BTreeMap<String, LatestSample>,
    /// Where the latest values came from, by metric name without labels. Absent for metrics
    /// whose agent never said (protocol before 1.2, or a collector without a table). Records
    /// written before provenance existed decode with an empty map.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, ProvenanceRecord>,
}

impl ResourceRecord {
    /// The node it lives on: a node's own name, a `node` attribute (pods, guests), or a
    /// `node:` parent.
    pub fn node(&self) -> Option<String> {
        if matches!(
            ResourceKind::from_prefix(&self.kind),
            Some(ResourceKind::Node | ResourceKind::K8sNode)
        ) {
            return Some(self.name.clone());
        }
        if let Some(serde_json::Value::String(n)) = self.attrs.get("node") {
            return Some(n.clone());
        }
        self.parent
            .as_deref()
            .and_then(|p| p.split_once(':'))
            .filter(|(kind, _)| *kind == ResourceKind::Node.prefix())
            .map(|(_, name)| name.to_owned())
    }
}

/// The source and method of one metric of one resource, as its agent reported them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvenanceRecord {
    /// The system that produced the value (`host`, `docker`, ...).
    pub source: String,
    /// How it was read: endpoint, file or call, and field.
    pub method: String,
}

/// The newest sample of one metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatestSample {
    /// Sample time, ms since the epoch.
    pub ts_ms: i64,
    /// Value (always finite).
    pub value: f64,
}

/// One batch to store, with the identity of the agent that sent it (from its certificate).
#[derive(Debug, Clone)]
pub struct IngestItem {
    /// Sending agent.
    pub agent_id: String,
    /// The agent's organisation; everything in the batch is stored under it.
    pub org_id: String,
    /// The batch.
    pub batch: TelemetryBatch,
    /// Provenance of the batch's metrics; empty for agents before protocol 1.2.
    pub provenance: Vec<Provenance>,
}

/// What happened to one [`IngestItem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    /// `false` if the batch was a duplicate (seq not above the stored last seq) and skipped.
    pub stored: bool,
    /// The sequence number to acknowledge: everything up to it is durably stored.
    pub ack_seq: u64,
}
