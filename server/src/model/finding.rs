//! Patrol's records as stored and served: what a detector reports ([`Detection`], in the
//! vocabulary of the fixed finding contract, DESIGN §1.1) and a finding with its lifecycle
//! state ([`Finding`]). Only data; detection, ids and the lifecycle live in `patrol`.

use serde::{Deserialize, Serialize};

/// How bad it is. Ordered: `Info < Watch < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Trending the wrong way.
    Watch,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// What area a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Saturation and slowness.
    Performance,
    /// Running out of space.
    Capacity,
    /// Things failing or about to.
    Reliability,
    /// Backups missing or failing.
    Backup,
    /// Certificates, exposure.
    Security,
    /// Anything else.
    General,
}

/// Which kind of reasoning produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A threshold rule.
    Heuristic,
    /// A capacity forecast.
    Forecast,
    /// An anomaly score against a baseline.
    Anomaly,
    /// Several findings sharing a root cause.
    Correlation,
    /// Enriched by an AI provider.
    AiAnalysis,
}

/// One problem a detector found on one resource, with its evidence and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Stable issue key within the resource and category, e.g. `storage-usage`.
    pub key: String,
    /// How bad.
    pub severity: Severity,
    /// Which area.
    pub category: Category,
    /// Which reasoning.
    pub source: Source,
    /// `<type>:<name>`.
    pub resource_id: String,
    /// Human name of the resource.
    pub resource_name: String,
    /// The id's type.
    pub resource_type: String,
    /// The node the resource lives on, when known.
    pub node: Option<String>,
    /// One line.
    pub title: String,
    /// What is going on.
    pub description: String,
    /// What to do about it.
    pub recommendation: String,
    /// The concrete numbers behind it.
    pub evidence: String,
    /// For capacity forecasts: the fit behind the finding.
    pub capacity_forecast: Option<CapacityForecast>,
    /// The alert whose firing raised it, if a run triggered by an alert found it.
    #[serde(default)]
    pub alert_id: Option<String>,
    /// The root-cause finding this one is linked under (its id), if correlation found one.
    #[serde(default)]
    pub root_id: Option<String>,
    /// For a root-cause finding: the ids of the findings linked under it.
    #[serde(default)]
    pub related: Vec<String>,
}

/// The contract's `capacity_forecast` object (DESIGN §1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityForecast {
    /// The metric forecast, e.g. `storage_used_pct`.
    pub metric: String,
    /// Fitted level now, percent.
    pub current_pct: f64,
    /// Growth, percentage points per day.
    pub daily_change_pct: f64,
    /// Days until 100 %.
    pub days_to_full: f64,
}

/// Where a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Detected and not resolved.
    Active,
    /// Its condition cleared for the confirmation period.
    Resolved,
    /// An operator said it is not a problem (see [`Dismissal`]).
    Dismissed,
}

/// Why an operator dismissed a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DismissReason {
    /// Not a problem at all.
    NotAnIssue,
    /// Expected here (a backup target that is meant to be full).
    ExpectedBehavior,
    /// Known; comes back as a reminder after seven days.
    WillFixLater,
}

/// A dismissal: why, when, and at which severity (it re-opens only above that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dismissal {
    /// Why.
    pub reason: DismissReason,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The severity when dismissed.
    pub severity: Severity,
}

/// A suppression rule: findings on this resource and/or of this category are kept but marked
/// `suppressed` (no notifications, hidden by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Only this resource, if set.
    pub resource_id: Option<String>,
    /// Only this category, if set.
    pub category: Option<Category>,
}

/// One finding and its lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id ([`Detection::finding_id`]).
    pub id: String,
    /// The latest detection.
    pub detection: Detection,
    /// Where it stands.
    pub status: Status,
    /// First detection, ms.
    pub detected_at_ms: i64,
    /// Latest detection, ms.
    pub last_seen_at_ms: i64,
    /// How many runs found it.
    pub times_raised: u32,
    /// Since when the condition has been absent (active findings only).
    pub cleared_since_ms: Option<i64>,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// When an operator acknowledged it.
    pub acknowledged_at_ms: Option<i64>,
    /// The current dismissal.
    pub dismissal: Option<Dismissal>,
    /// Hidden from notifications until then.
    pub snoozed_until_ms: Option<i64>,
    /// A suppression rule matches it.
    pub suppressed: bool,
    /// Operator notes, `(ms, text)`.
    pub notes: Vec<(i64, String)>,
    /// The last 20 lifecycle events, `(ms, what)`.
    pub history: Vec<(i64, String)>,
}
