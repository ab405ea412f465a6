//! Alert rules: a threshold per resource kind and metric with a duration and hysteresis,
//! per-resource overrides keyed by canonical resource id, the built-in defaults, and
//! validation that reports every problem at once. Pure: no IO, no clock.

use crate::model::alert::{Op, Severity};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use warden_shared::ids::ResourceId;
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

/// Longest `for_s`: one day.
pub const MAX_FOR_S: u64 = 86_400;
/// Bounds of `stale_after_s`: 30 s to one day.
pub const MIN_STALE_S: u64 = 30;
/// See [`MIN_STALE_S`].
pub const MAX_STALE_S: u64 = 86_400;
/// Default `stale_after_s`: five minutes.
pub const DEFAULT_STALE_S: u64 = 300;
/// Most rules in a set.
pub const MAX_RULES: usize = 200;
/// Most overrides in a set.
pub const MAX_OVERRIDES: usize = 10_000;
/// `resource_kind` of a rule that applies to every kind.
pub const ANY_KIND: &str = "*";

impl Severity {
    /// Both severities, lowest first.
    pub const ALL: [Self; 2] = [Self::Warning, Self::Critical];

    /// The word the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Warning => 0,
            Self::Critical => 1,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Op {
    /// Whether `value` is past `threshold` on the bad side (the threshold itself counts).
    pub fn past(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value >= threshold,
            Self::Below => value <= threshold,
        }
    }

    /// The threshold an already-reached level holds at: `hysteresis` back towards good.
    pub fn relaxed(self, threshold: f64, hysteresis: f64) -> f64 {
        match self {
            Self::Above => threshold - hysteresis,
            Self::Below => threshold + hysteresis,
        }
    }

    /// The word the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Above => "above",
            Self::Below => "below",
        }
    }

    /// `>=` or `<=`, for messages.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Above => ">=",
            Self::Below => "<=",
        }
    }
}

fn default_for_s() -> u64 {
    300
}

fn default_true() -> bool {
    true
}

fn default_stale() -> u64 {
    DEFAULT_STALE_S
}

/// One threshold rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Stable id (letters, digits, `-`, `_`, `.`; 1 to 64); overrides and alerts name it.
    pub id: String,
    /// Human name, shown with each alert.
    pub name: String,
    /// The resource kind it watches (the id prefix: `node`, `storage`, `vm`, ...), or `*`.
    pub resource_kind: String,
    /// The metric, e.g. `cpu_pct`. Without labels it also watches each labelled series of
    /// that metric (`fs_used_pct` covers `fs_used_pct{mount="/"}`); with labels, that series.
    pub metric: String,
    /// Which side is bad; default `above`.
    #[serde(default)]
    pub op: Op,
    /// Warning level, if any.
    #[serde(default)]
    pub warning: Option<f64>,
    /// Critical level, if any.
    #[serde(default)]
    pub critical: Option<f64>,
    /// How long a level must hold before the alert fires or escalates, seconds; default 300.
    #[serde(default = "default_for_s")]
    pub for_s: u64,
    /// How far back past a reached level the value must go before it clears; default 0.
    #[serde(default)]
    pub hysteresis: f64,
    /// Off = no alerts from it (its firing alerts resolve); default on.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl AlertRule {
    /// Whether the rule watches resources of `kind`.
    pub fn applies_to(&self, kind: &str) -> bool {
        self.resource_kind == ANY_KIND || self.resource_kind == kind
    }

    /// Whether it watches the series `series` (a metric name, maybe with labels).
    pub fn watches(&self, series: &str) -> bool {
        series == self.metric || (!self.metric.contains('{') && metric::base(series) == self.metric)
    }

    /// The levels it has, lowest severity first.
    pub fn levels(&self) -> impl DoubleEndedIterator<Item = (Severity, f64)> + '_ {
        [
            (Severity::Warning, self.warning),
            (Severity::Critical, self.critical),
        ]
        .into_iter()
        .filter_map(|(s, t)| Some((s, t?)))
    }

    /// The threshold of `severity`, if the rule has that level.
    pub fn threshold(&self, severity: Severity) -> Option<f64> {
        match severity {
            Severity::Warning => self.warning,
            Severity::Critical => self.critical,
        }
    }

    /// `for_s` in milliseconds.
    pub fn for_ms(&self) -> i64 {
        i64::try_from(self.for_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// A rule's settings for one resource, in place of the rule's own. Fields left out keep the
/// rule's value. It names the resource by canonical id, which stays the same when a guest
/// migrates, so the override follows the resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    /// Canonical resource id, e.g. `storage:pve2/local-zfs` or `vm:prod/100`.
    pub resource_id: String,
    /// The rule it changes.
    pub rule_id: String,
    /// `false` silences the rule for this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Warning level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
    /// Critical level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<f64>,
    /// Duration, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_s: Option<u64>,
    /// Hysteresis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<f64>,
}

impl RuleOverride {
    /// `rule` with this override's fields in place of its own.
    pub fn apply(&self, rule: &AlertRule) -> AlertRule {
        AlertRule {
            enabled: self.enabled.unwrap_or(rule.enabled),
            warning: self.warning.or(rule.warning),
            critical: self.critical.or(rule.critical),
            for_s: self.for_s.unwrap_or(rule.for_s),
            hysteresis: self.hysteresis.unwrap_or(rule.hysteresis),
            ..rule.clone()
        }
    }
}

/// An organisation's alert configuration: what `GET`/`PUT /api/alerts/rules` carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rules, in evaluation order.
    pub rules: Vec<AlertRule>,
    /// Per-resource overrides; at most one per (resource, rule).
    #[serde(default)]
    pub overrides: Vec<RuleOverride>,
    /// A latest sample older than this is no data: pending conditions drop and firing alerts
    /// resolve (reason `stale`). Seconds; default 300.
    #[serde(default = "default_stale")]
    pub stale_after_s: u64,
}

impl Default for RuleSet {
    /// The built-in rules, matching Patrol's heuristic levels (DESIGN §3): node CPU and
    /// memory 75 / 85 %, storage and PBS datastores 80 / 90 % used, guest memory 80 / 88 %;
    /// each for 5 minutes with 5 points of hysteresis.
    fn default() -> Self {
        let rule =
            |id: &str, name: &str, kind: ResourceKind, metric: &str, w: f64, c: f64| AlertRule {
                id: id.to_owned(),
                name: name.to_owned(),
                resource_kind: kind.prefix().to_owned(),
                metric: metric.to_owned(),
                op: Op::Above,
                warning: Some(w),
                critical: Some(c),
                for_s: 300,
                hysteresis: 5.0,
                enabled: true,
            };
        Self {
            rules: vec![
                rule(
                    "node-cpu",
                    "Node CPU",
                    ResourceKind::Node,
                    metric::CPU_PCT,
                    75.0,
                    85.0,
                ),
                rule(
                    "node-memory",
                    "Node memory",
                    ResourceKind::Node,
                    metric::MEM_USED_PCT,
                    75.0,
                    85.0,
                ),
                rule(
                    "storage-usage",
                    "Storage usage",
                    ResourceKind::Storage,
                    metric::STORAGE_USED_PCT,
                    80.0,
                    90.0,
                ),
                rule(
                    "pbs-datastore-usage",
                    "PBS datastore usage",
                    ResourceKind::PbsDatastore,
                    metric::DATASTORE_USED_PCT,
                    80.0,
                    90.0,
                ),
                rule(
                    "vm-memory",
                    "VM memory",
                    ResourceKind::Vm,
                    metric::MEM_USED_PCT,
                    80.0,
                    88.0,
                ),
                rule(
                    "lxc-memory",
                    "Container memory",
                    ResourceKind::SystemContainer,
                    metric::MEM_USED_PCT,
                    80.0,
                    88.0,
                ),
            ],
            overrides: Vec::new(),
            stale_after_s: DEFAULT_STALE_S,
        }
    }
}

/// A [`RuleSet`] indexed for evaluation: overrides by (resource, rule).
#[derive(Debug)]
pub struct Compiled<'a> {
    set: &'a RuleSet,
    overrides: BTreeMap<(&'a str, &'a str), &'a RuleOverride>,
}

impl<'a> Compiled<'a> {
    /// Indexes `set` (the last override for a pair wins; validation refuses duplicates).
    pub fn new(set: &'a RuleSet) -> Self {
        let overrides = set
            .overrides
            .iter()
            .map(|o| ((o.resource_id.as_str(), o.rule_id.as_str()), o))
            .collect();
        Self { set, overrides }
    }

    /// The rules.
    pub fn rules(&self) -> &'a [AlertRule] {
        &self.set.rules
    }

    /// `stale_after_s` in milliseconds.
    pub fn stale_ms(&self) -> i64 {
        i64::try_from(self.set.stale_after_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The rule as it applies to resource `resource_id` of `kind`: its override applied;
    /// `None` if it does not watch that kind or is disabled there.
    pub fn effective(
        &self,
        rule: &'a AlertRule,
        resource_id: &str,
        kind: &str,
    ) -> Option<Cow<'a, AlertRule>> {
        if !rule.applies_to(kind) {
            return None;
        }
        let r = match self.overrides.get(&(resource_id, rule.id.as_str())) {
            Some(o) => Cow::Owned(o.apply(rule)),
            None => Cow::Borrowed(rule),
        };
        r.enabled.then_some(r)
    }

    /// The rule with id `rule_id` as it applies to `resource_id` of `kind`, if any.
    pub fn effective_by_id(
        &self,
        rule_id: &str,
        resource_id: &str,
        kind: &str,
    ) -> Option<Cow<'a, AlertRule>> {
        let rule = self.set.rules.iter().find(|r| r.id == rule_id)?;
        self.effective(rule, resource_id, kind)
    }
}

fn slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn known_kind(kind: &str) -> bool {
    kind == ANY_KIND || ResourceKind::from_prefix(kind).is_some_and(watchable)
}

/// Whether alert rules may watch resources of `kind`: every kind collectors report, not the
/// subjects of Warden's findings about itself (agents, the server), which have no metrics.
fn watchable(kind: ResourceKind) -> bool {
    !matches!(kind, ResourceKind::Agent | ResourceKind::Server)
}

/// The problems of a rule's thresholds, duration and hysteresis; `at` names it in messages.
fn check_levels(at: &str, r: &AlertRule, problems: &mut Vec<String>) {
    for (name, v) in [("warning", r.warning), ("critical", r.critical)] {
        if v.is_some_and(|v| !v.is_finite()) {
            problems.push(format!("{at}: {name} must be a finite number"));
        }
    }
    match (r.warning, r.critical) {
        (None, None) => problems.push(format!(
            "{at}: needs a warning level, a critical level or both"
        )),
        (Some(w), Some(c)) if w.is_finite() && c.is_finite() => {
            let ordered = match r.op {
                Op::Above => w < c,
                Op::Below => w > c,
            };
            if !ordered {
                let side = match r.op {
                    Op::Above => "below",
                    Op::Below => "above",
                };
                problems.push(format!(
                    "{at}: with op {:?} the warning level ({w}) must be {side} the critical level ({c})",
                    r.op.as_str()
                ));
            }
        }
        _ => {}
    }
    if r.for_s > MAX_FOR_S {
        problems.push(format!(
            "{at}: for_s must be 0 to {MAX_FOR_S} seconds, got {}",
            r.for_s
        ));
    }
    if !(r.hysteresis.is_finite() && r.hysteresis >= 0.0) {
        problems.push(format!(
            "{at}: hysteresis must be a number >= 0, got {}",
            r.hysteresis
        ));
    }
}

impl RuleSet {
    /// Checks every rule and override and returns all problems, each naming where it is
    /// (`rules[2] (node-cpu): ...`, `overrides[0]: ...`).
    ///
    /// # Errors
    /// The list of problems, if there is any.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.rules.len() > MAX_RULES {
            problems.push(format!(
                "at most {MAX_RULES} rules, got {}",
                self.rules.len()
            ));
        }
        if self.overrides.len() > MAX_OVERRIDES {
            problems.push(format!(
                "at most {MAX_OVERRIDES} overrides, got {}",
                self.overrides.len()
            ));
        }
        if !(MIN_STALE_S..=MAX_STALE_S).contains(&self.stale_after_s) {
            problems.push(format!(
                "stale_after_s must be {MIN_STALE_S} to {MAX_STALE_S} seconds, got {}",
                self.stale_after_s
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}] ({})", r.id);
            if !slug(&r.id) {
                problems.push(format!(
                    "rules[{i}]: id {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                    r.id
                ));
            } else if !ids.insert(r.id.as_str()) {
                problems.push(format!("{at}: duplicate rule id {:?}", r.id));
            }
            if r.name.trim().is_empty() || r.name.len() > 200 {
                problems.push(format!("{at}: name must be 1 to 200 bytes"));
            }
            if !known_kind(&r.resource_kind) {
                problems.push(format!(
                    "{at}: unknown resource_kind {:?}; use a resource id prefix ({}) or \"*\"",
                    r.resource_kind,
                    ResourceKind::ALL
                        .into_iter()
                        .filter(|k| watchable(*k))
                        .map(ResourceKind::prefix)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if r.metric.is_empty()
                || r.metric.len() > 200
                || r.metric.chars().any(char::is_control)
                || metric::base(&r.metric).is_empty()
            {
                problems.push(format!(
                    "{at}: metric must be a metric name like \"cpu_pct\" (1 to 200 bytes)"
                ));
            }
            check_levels(&at, r, &mut problems);
        }
        let mut pairs = BTreeSet::new();
        for (i, o) in self.overrides.iter().enumerate() {
            let at = format!("overrides[{i}] ({} {})", o.resource_id, o.rule_id);
            let id_ok = match ResourceId::new(o.resource_id.as_str()) {
                Ok(_) => true,
                Err(e) => {
                    problems.push(format!(
                        "overrides[{i}]: resource_id {:?}: {e}",
                        o.resource_id
                    ));
                    false
                }
            };
            if !pairs.insert((o.resource_id.as_str(), o.rule_id.as_str())) {
                problems.push(format!(
                    "{at}: duplicate override for this resource and rule"
                ));
            }
            match self.rules.iter().find(|r| r.id == o.rule_id) {
                None => problems.push(format!(
                    "overrides[{i}]: rule_id {:?} names no rule of this set",
                    o.rule_id
                )),
                Some(rule) => {
                    let kind = o.resource_id.split_once(':').map_or("", |(k, _)| k);
                    if id_ok && !rule.applies_to(kind) {
                        problems.push(format!(
                            "{at}: rule {:?} watches {:?} resources, not {kind:?}",
                            rule.id, rule.resource_kind
                        ));
                    }
                    // Only what the override itself breaks: the rule's own problems are
                    // reported once, at the rule.
                    let mut own = Vec::new();
                    check_levels("", rule, &mut own);
                    if own.is_empty() {
                        check_levels(&at, &o.apply(rule), &mut problems);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Index of a severity in per-level arrays.
pub(super) fn level_index(s: Severity) -> usize {
    s.index()
}
