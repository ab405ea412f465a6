//! Silence / dead-man detection: an agent, a collector, a backup job or a replication that
//! stopped reporting or running is a finding; data that merely stopped coming is never
//! "healthy". A pure detector over a [`Snapshot`]'s resources and agents.

use super::finding::Detection;
use super::heuristics::Snapshot;
use serde::{Deserialize, Serialize};

/// How long silence is tolerated.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SilenceConfig {}

/// Finds everything that went quiet.
pub fn detect(_s: &Snapshot, _cfg: &SilenceConfig) -> Vec<Detection> {
    Vec::new()
}
