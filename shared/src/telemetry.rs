//! Telemetry carried from agents to the server: resource state, metric samples and
//! collector health, grouped into sequence-numbered batches.
//!
//! A value a collector could not read is *absent* (no sample) or [`Value::Unknown`],
//! never zero. A failing collector says so in [`CollectorHealth`].
//!
//! Each metric can carry its [`Provenance`]: the source and the method that produced it.
//! Provenance is static per (resource kind, metric name without labels), so it travels as a
//! small table next to the batch ([`ProvenancedBatch`], protocol 1.2), not on every sample.

use crate::ids::ResourceId;
use crate::resource::ResourceKind;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

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

/// Largest encoded batch an agent produces: a quarter of a frame, leaving room for the
/// provenance table and keeping each stream write short.
pub const MAX_BATCH_BYTES: usize = crate::frame::MAX_FRAME_LEN / 4;

impl TelemetryBatch {
    /// Splits the batch into batches that each encode to at most `max_bytes`, halving its
    /// resources and samples until they fit; every part keeps the collector, time and health.
    /// A single resource or sample larger than `max_bytes` stays alone in its part.
    pub fn split_to_fit(self, max_bytes: usize) -> Vec<Self> {
        // Measured without allocating: 10,000 pods encode to megabytes.
        let size = postcard::serialize_with_flavor(&self, postcard::ser_flavors::Size::default())
            .unwrap_or(usize::MAX);
        if size <= max_bytes || self.resources.len() + self.samples.len() <= 1 {
            return vec![self];
        }
        let mut first = self;
        let second = Self {
            resources: first.resources.split_off(first.resources.len() / 2),
            samples: first.samples.split_off(first.samples.len() / 2),
            collector: first.collector.clone(),
            health: first.health.clone(),
            ..first
        };
        let mut parts = first.split_to_fit(max_bytes);
        parts.extend(second.split_to_fit(max_bytes));
        parts
    }
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

/// Where the values of one metric of one resource kind come from.
///
/// Collectors keep a table of these, one entry per (resource kind, metric name without
/// labels); the agent sends the entries of the metrics present in each batch. The text fields
/// are [`Cow`] so that such tables can be `const` (entries built with [`Provenance::new`]
/// borrow static strings; decoded entries own theirs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provenance {
    /// The kind of resource the metric describes: the id prefix (`node`, `vm`, `docker`, ...).
    pub kind: Cow<'static, str>,
    /// The metric name without labels: `fs_used_pct`, not `fs_used_pct{mount="/"}`.
    pub metric: Cow<'static, str>,
    /// The system that produced the value: the collector's name (`host`, `docker`) or a more
    /// specific source.
    pub source: Cow<'static, str>,
    /// How the value was read, for a human: the endpoint, file or call, and the field or
    /// formula, e.g. `sysinfo: /proc/stat, busy share of all CPUs between two reads`.
    pub method: Cow<'static, str>,
}

impl Provenance {
    /// A table entry from static text.
    pub const fn new(
        kind: ResourceKind,
        metric: &'static str,
        source: &'static str,
        method: &'static str,
    ) -> Self {
        Self {
            kind: Cow::Borrowed(kind.prefix()),
            metric: Cow::Borrowed(metric),
            source: Cow::Borrowed(source),
            method: Cow::Borrowed(method),
        }
    }

    /// The entries of `table` that describe at least one of `samples`, in table order: what
    /// a batch carries, so that batches stay small.
    pub fn for_samples(table: &[Self], samples: &[Sample]) -> Vec<Self> {
        if table.is_empty() || samples.is_empty() {
            return Vec::new();
        }
        let present: HashSet<(&str, &str)> = samples
            .iter()
            .map(|s| (s.resource_id.kind(), crate::metric::base(&s.metric)))
            .collect();
        table
            .iter()
            .filter(|p| present.contains(&(&*p.kind, &*p.metric)))
            .cloned()
            .collect()
    }

    /// The (resource kind, metric without labels) pairs of `samples` that `table` has no
    /// entry for, sorted. Empty when every metric has its provenance.
    pub fn missing<'a>(table: &[Self], samples: &'a [Sample]) -> BTreeSet<(&'a str, &'a str)> {
        let known: HashSet<(&str, &str)> = table.iter().map(|p| (&*p.kind, &*p.metric)).collect();
        samples
            .iter()
            .map(|s| (s.resource_id.kind(), crate::metric::base(&s.metric)))
            .filter(|key| !known.contains(key))
            .collect()
    }
}

/// A batch with the provenance of its metrics: what a collector run yields, what the agent
/// spools, and what it sends from protocol 1.2 on
/// ([`crate::proto::AgentMessage::ProvenancedTelemetry`]).
///
/// postcard encodes a struct as its fields in order, so the encoding of this type is the
/// encoding of the bare [`TelemetryBatch`] followed by the table. Readers of stored batches
/// rely on that: a bare batch (written before provenance existed) is a prefix with no table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProvenancedBatch {
    /// The batch.
    pub batch: TelemetryBatch,
    /// One entry per (resource kind, metric) present in the batch; may be empty.
    pub provenance: Vec<Provenance>,
}

impl ProvenancedBatch {
    /// The (resource kind, metric) pairs of the batch's samples without a provenance entry.
    pub fn unsourced(&self) -> BTreeSet<(&str, &str)> {
        Provenance::missing(&self.provenance, &self.batch.samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{CPU_PCT, FS_USED_PCT, LOAD1, labelled};

    #[test]
    fn an_oversized_batch_is_split_without_losing_anything() {
        let id = ResourceId::new("pod:c/ns/p").unwrap();
        let batch = TelemetryBatch {
            collector: "kubernetes".into(),
            collected_at_ms: 7,
            resources: (0..1000)
                .map(|i| Resource {
                    id: ResourceId::new(format!("pod:c/ns/p{i}")).unwrap(),
                    name: format!("p{i}"),
                    parent: None,
                    status: "Running".into(),
                    attrs: vec![("image".into(), Value::Text("x".repeat(200)))],
                })
                .collect(),
            samples: (0..3000)
                .map(|i| Sample {
                    resource_id: id.clone(),
                    metric: "restarts".into(),
                    ts_ms: i,
                    value: 1.0,
                })
                .collect(),
            ..TelemetryBatch::default()
        };
        let whole = postcard::to_allocvec(&batch).unwrap().len();
        let parts = batch.clone().split_to_fit(whole / 5);
        assert!(parts.len() >= 5, "{}", parts.len());
        for p in &parts {
            assert!(postcard::to_allocvec(p).unwrap().len() <= whole / 5);
            assert_eq!((p.collector.as_str(), p.collected_at_ms), ("kubernetes", 7));
        }
        let resources: Vec<_> = parts.iter().flat_map(|p| p.resources.clone()).collect();
        let samples: Vec<_> = parts.iter().flat_map(|p| p.samples.clone()).collect();
        assert_eq!(
            (resources, samples),
            (batch.resources.clone(), batch.samples.clone())
        );
        assert_eq!(batch.clone().split_to_fit(whole), vec![batch]);
    }

    fn sample(id: &str, metric: &str) -> Sample {
        Sample {
            resource_id: ResourceId::new(id).unwrap(),
            metric: metric.into(),
            ts_ms: 1,
            value: 1.0,
        }
    }

    const TABLE: &[Provenance] = &[
        Provenance::new(ResourceKind::Node, CPU_PCT, "host", "sysinfo: /proc/stat"),
        Provenance::new(ResourceKind::Node, FS_USED_PCT, "host", "statvfs"),
        Provenance::new(
            ResourceKind::Vm,
            CPU_PCT,
            "proxmox",
            "GET /cluster/resources",
        ),
        Provenance::new(ResourceKind::Node, LOAD1, "host", "/proc/loadavg"),
    ];

    #[test]
    fn a_batch_carries_only_the_entries_of_its_metrics() {
        let samples = [
            sample("node:h", CPU_PCT),
            sample("node:h", &labelled(FS_USED_PCT, "mount", "/")),
            sample("node:h", &labelled(FS_USED_PCT, "mount", "/data")),
            sample("docker:h/web", CPU_PCT),
        ];
        let picked = Provenance::for_samples(TABLE, &samples);
        assert_eq!(
            picked,
            TABLE[..2].to_vec(),
            "vm and load1 are not in the batch"
        );
        assert!(picked.iter().all(|p| matches!(p.method, Cow::Borrowed(_))));
        assert_eq!(
            Provenance::missing(TABLE, &samples),
            BTreeSet::from([("docker", CPU_PCT)]),
            "the kind is part of the key"
        );
        let batch = ProvenancedBatch {
            batch: TelemetryBatch {
                samples: samples.to_vec(),
                ..TelemetryBatch::default()
            },
            provenance: picked,
        };
        assert_eq!(batch.unsourced(), BTreeSet::from([("docker", CPU_PCT)]));
        assert!(Provenance::for_samples(&[], &samples).is_empty());
    }

    #[test]
    fn a_provenanced_batch_encodes_as_the_bare_batch_followed_by_the_table() {
        let batch = TelemetryBatch {
            seq: 7,
            collector: "host".into(),
            samples: vec![sample("node:h", CPU_PCT)],
            ..TelemetryBatch::default()
        };
        let full = ProvenancedBatch {
            batch: batch.clone(),
            provenance: TABLE[..1].to_vec(),
        };
        let bare = postcard::to_stdvec(&batch).unwrap();
        let bytes = postcard::to_stdvec(&full).unwrap();
        assert!(bytes.starts_with(&bare));
        let table: Vec<Provenance> = postcard::from_bytes(&bytes[bare.len()..]).unwrap();
        assert_eq!(table, full.provenance);
        let back: ProvenancedBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, full);
        assert!(matches!(back.provenance[0].source, Cow::Owned(_)));
        // An older reader of the same bytes gets the batch and ignores the table.
        let old: TelemetryBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(old, batch);
    }
}
