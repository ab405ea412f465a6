//! Telemetry carried from agents to the server: resource state, metric samples and
//! collector health, grouped into sequence-numbered batches.
//!
//! A value a collector could not read is *absent* (no sample) or [`Value::Unknown`],
//! never zero. A failing collector says so in [`CollectorHealth`].

use crate::ids::ResourceId;
use serde::{Deserialize, Serialize};

/// One unit of telemetry. The server acknowledges `seq` only after the whole batch is
/// durably stored; the agent replays unacknowledged batches in `seq` order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TelemetryBatch {
    /// Per-agent sequence number, strictly increasing.
    pub seq: u64,
    /// The collector that produced this batch (`host`, `docker`, ...).
    pub collector: String,
    /// When the collection ran, milliseconds since the Unix epoch.
    pub collected_at_ms: i64,
    /// Current state of the resources this collector saw.
    pub resources: Vec<Resource>,
    /// Metric samples.
    pub samples: Vec<Sample>,
    /// Health of the collector that produced the batch.
    pub health: Option<CollectorHealth>,
    /// Metric samples the agent's spool has dropped so far to stay in budget (cumulative).
    pub dropped_samples: u64,
}

/// The current state of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Canonical id, e.g. `docker:pve1/nginx`.
    pub id: ResourceId,
    /// Human name.
    pub name: String,
    /// Parent resource (a container's node, a guest's node).
    pub parent: Option<ResourceId>,
    /// Short status word: `running`, `exited`, `online`, ...
    pub status: String,
    /// Typed attributes (image, restart count, OS, ...).
    pub attrs: Vec<(String, Value)>,
}

/// A typed attribute value. `Unknown` means the source could not read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Could not be read.
    Unknown,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Text(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl<T: Into<Self>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Unknown, Into::into)
    }
}

/// One metric sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The resource the sample describes.
    pub resource_id: ResourceId,
    /// Metric name; per-instance metrics carry a label, e.g. `fs_used_pct{mount="/"}`.
    pub metric: String,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
}

/// Health of a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthStatus {
    /// The last run succeeded fully.
    Ok,
    /// The last run succeeded partly; some values are missing.
    Degraded,
    /// The last run failed or timed out; nothing in this batch is fresh.
    Failed,
}

impl HealthStatus {
    /// Lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failed => "failed",
        }
    }
}

/// What a collector reports about itself after each run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorHealth {
    /// Collector name.
    pub collector: String,
    /// Outcome of the last run.
    pub status: HealthStatus,
    /// What went wrong, if anything.
    pub message: Option<String>,
    /// When the collector last succeeded, ms since the epoch.
    pub last_success_ms: Option<i64>,
    /// How long the last run took, in milliseconds.
    pub duration_ms: u64,
}
