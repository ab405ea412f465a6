//! The stored alert: one firing episode of one rule on one resource series, with its
//! timeline (fired, escalated, de-escalated, acknowledged, analysis attached, resolved), and
//! the pure updates the engine's [`AlertEvent`]s and operator actions make to it.

use super::engine::AlertEvent;
use crate::model::alert::{AlertRecord, AlertStatus, ResolveReason, TimelineEntry, TimelineEvent};

/// Most timeline entries kept per alert; past it the oldest after `fired` are dropped.
pub const TIMELINE_MAX: usize = 200;

/// The id of the episode of `rule_id` on `series` of `resource_id` that fired at
/// `fired_at_ms`: 16 hex digits of a SHA-256. A rule firing again on the same series later is
/// a new alert with a new id.
pub fn alert_id(rule_id: &str, resource_id: &str, series: &str, fired_at_ms: i64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{rule_id}\n{resource_id}\n{series}\n{fired_at_ms}"));
    hex::encode(&digest[..8])
}

impl AlertRecord {
    /// Whether it is still firing.
    pub fn firing(&self) -> bool {
        self.status == AlertStatus::Firing
    }

    /// Appends a timeline entry, keeping the first (`fired`) and the newest ones.
    pub fn push(&mut self, entry: TimelineEntry) {
        if self.timeline.len() >= TIMELINE_MAX {
            self.timeline.remove(1);
        }
        self.timeline.push(entry);
    }

    /// Applies an engine event about this alert (not [`AlertEvent::Fired`], which creates
    /// one). Events about a resolved alert change nothing.
    pub fn apply(&mut self, event: &AlertEvent) {
        if !self.firing() {
            return;
        }
        match event {
            AlertEvent::Fired(_) => {}
            AlertEvent::SeverityChanged {
                from,
                to,
                value,
                value_at_ms,
                threshold,
                at_ms,
                ..
            } => {
                self.severity = *to;
                self.threshold = *threshold;
                self.value = *value;
                self.value_at_ms = *value_at_ms;
                let (event, verb) = if to > from {
                    (TimelineEvent::Escalated, "escalated")
                } else {
                    (TimelineEvent::Deescalated, "de-escalated")
                };
                self.push(TimelineEntry {
                    at_ms: *at_ms,
                    event,
                    detail: format!(
                        "{verb} from {from} to {to}: {} = {} ({} {} {})",
                        self.metric,
                        num(*value),
                        self.severity,
                        self.op.symbol(),
                        num(*threshold)
                    ),
                    finding_ids: Vec::new(),
                });
            }
            AlertEvent::Value {
                value, value_at_ms, ..
            } => {
                self.value = *value;
                self.value_at_ms = *value_at_ms;
            }
            AlertEvent::Resolved {
                reason,
                value,
                at_ms,
                ..
            } => {
                self.status = AlertStatus::Resolved;
                self.resolved_at_ms = Some(*at_ms);
                self.resolve_reason = Some(*reason);
                let detail = match (reason, value) {
                    (ResolveReason::Recovered, Some((v, ts))) => {
                        self.value = *v;
                        self.value_at_ms = *ts;
                        format!(
                            "recovered: {} = {}, clear of every level by the hysteresis ({})",
                            self.metric,
                            num(*v),
                            num(self.hysteresis)
                        )
                    }
                    (ResolveReason::Stale, _) => format!(
                        "no data: the latest {} sample is from {}",
                        self.metric,
                        crate::clock::rfc3339_ms(self.value_at_ms).unwrap_or_default()
                    ),
                    (ResolveReason::NoData, _) => {
                        format!("the resource no longer reports {}", self.metric)
                    }
                    (ResolveReason::ResourceGone, _) => "the resource is gone".to_owned(),
                    (ResolveReason::RuleChanged, _) => format!(
                        "rule {} no longer applies to this resource (removed, disabled or changed)",
                        self.rule_id
                    ),
                    (ResolveReason::Recovered, None) => "recovered".to_owned(),
                };
                self.push(TimelineEntry {
                    at_ms: *at_ms,
                    event: TimelineEvent::Resolved,
                    detail,
                    finding_ids: Vec::new(),
                });
            }
        }
    }

    /// Marks it acknowledged at `now_ms`; `false` (and no change) if it already was.
    pub fn acknowledge(&mut self, now_ms: i64, comment: Option<&str>) -> bool {
        if self.acknowledged_at_ms.is_some() {
            return false;
        }
        self.acknowledged_at_ms = Some(now_ms);
        self.push(TimelineEntry {
            at_ms: now_ms,
            event: TimelineEvent::Acknowledged,
            detail: match comment {
                Some(c) => format!("acknowledged: {c}"),
                None => "acknowledged".to_owned(),
            },
            finding_ids: Vec::new(),
        });
        true
    }

    /// Records a Patrol run's findings on the alert's resource as its analysis.
    pub fn attach_analysis(&mut self, finding_ids: &[String], now_ms: i64) {
        for f in finding_ids {
            if !self.finding_ids.contains(f) {
                self.finding_ids.push(f.clone());
            }
        }
        let detail = if finding_ids.is_empty() {
            "patrol analysed the resource and raised no findings on it".to_owned()
        } else {
            format!(
                "patrol raised {} finding(s) on the resource: {}",
                finding_ids.len(),
                finding_ids.join(", ")
            )
        };
        self.push(TimelineEntry {
            at_ms: now_ms,
            event: TimelineEvent::AnalysisAttached,
            detail,
            finding_ids: finding_ids.to_vec(),
        });
    }
}

/// A value for messages: at most two decimals, no trailing zeros.
pub(super) fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}
