//! Alert records as stored and served: the rule severities and threshold sides, one alert
//! episode with its timeline, and the trigger a firing alert sends to Patrol. Only data; the
//! rules, the evaluator and the updates to a record live in `alerts`.

use serde::{Deserialize, Serialize};

/// How bad an alert is; `critical` is above `warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Past the warning level.
    Warning,
    /// Past the critical level.
    Critical,
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Bad at or above the threshold (usage, load).
    #[default]
    Above,
    /// Bad at or below the threshold (free space, remaining life).
    Below,
}

/// Whether an alert is still firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The condition holds (acknowledged or not).
    Firing,
    /// It ended; see [`ResolveReason`].
    Resolved,
}

/// Why an alert resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// The value went back past the lowest level minus the hysteresis.
    Recovered,
    /// The latest sample is older than `stale_after_s`: no data to judge.
    Stale,
    /// The resource still exists but no longer reports the metric.
    NoData,
    /// The resource is no longer known.
    ResourceGone,
    /// The rule was removed, disabled (for this resource or at all) or changed its kind.
    RuleChanged,
}

impl ResolveReason {
    /// The word the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recovered => "recovered",
            Self::Stale => "stale",
            Self::NoData => "no_data",
            Self::ResourceGone => "resource_gone",
            Self::RuleChanged => "rule_changed",
        }
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineEvent {
    /// It fired.
    Fired,
    /// Its severity rose.
    Escalated,
    /// Its severity fell (the higher level cleared, the lower one still holds).
    Deescalated,
    /// An operator acknowledged it.
    Acknowledged,
    /// A Patrol run it triggered finished; the entry lists the findings it raised on the
    /// alert's resource.
    AnalysisAttached,
    /// It ended.
    Resolved,
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// What.
    pub event: TimelineEvent,
    /// A sentence with the numbers.
    pub detail: String,
    /// Findings, for `analysis_attached`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finding_ids: Vec<String>,
}

/// One alert: a rule firing on one series of one resource, from firing to resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Unique per episode (`alerts::record::alert_id`).
    pub id: String,
    /// Its organisation.
    pub org_id: String,
    /// The rule.
    pub rule_id: String,
    /// The rule's name when it fired.
    pub rule_name: String,
    /// Canonical resource id.
    pub resource_id: String,
    /// The resource's name.
    pub resource_name: String,
    /// The resource's kind (id prefix).
    pub resource_type: String,
    /// The node it lives on, if known.
    pub node: Option<String>,
    /// The series, e.g. `storage_used_pct` or `fs_used_pct{mount="/"}`.
    pub metric: String,
    /// Which side of the threshold is bad.
    pub op: Op,
    /// Current severity (the highest while firing; the last when resolved).
    pub severity: Severity,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Latest value seen while firing.
    pub value: f64,
    /// Sample time of `value` (the latest sample judged while firing), ms.
    pub value_at_ms: i64,
    /// The level of `severity`.
    pub threshold: f64,
    /// The rule's duration when it fired, seconds.
    pub for_s: u64,
    /// The rule's hysteresis when it fired.
    pub hysteresis: f64,
    /// When it fired, ms.
    pub fired_at_ms: i64,
    /// When it was first acknowledged.
    pub acknowledged_at_ms: Option<i64>,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// Why it resolved.
    pub resolve_reason: Option<ResolveReason>,
    /// Findings Patrol attached as its analysis.
    #[serde(default)]
    pub finding_ids: Vec<String>,
    /// What happened, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// An alert that fired and asks for a Patrol run of its organisation; the findings on its
/// resource then carry its id, and the alert's timeline gets them as its analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTrigger {
    /// The alert's organisation.
    pub org: String,
    /// The alert.
    pub alert_id: String,
    /// Its resource's canonical id.
    pub resource_id: String,
}
