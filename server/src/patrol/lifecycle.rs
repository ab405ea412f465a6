//! The findings lifecycle, as a pure function of the findings so far, one run's detections
//! and `now`: new findings open, re-detected ones bump `times_raised` and `last_seen_at`, a
//! finding whose condition has cleared for the confirmation period resolves, a dismissed one
//! re-opens only if its severity rises (or, for `will_fix_later`, after its reminder), and
//! suppression rules mark what they match. Operator actions are methods on [`Finding`].

use crate::model::finding::Detection;
use crate::model::finding::{DismissReason, Dismissal, Finding, Status, Suppression};
use serde::Serialize;
use std::collections::BTreeMap;

/// Lifecycle events kept per finding.
const HISTORY: usize = 20;
/// `will_fix_later` dismissals come back after this long.
pub const REMINDER_MS: i64 = 7 * 86_400_000;

impl Suppression {
    fn matches(&self, d: &Detection) -> bool {
        (self.resource_id.is_some() || self.category.is_some())
            && self
                .resource_id
                .as_ref()
                .is_none_or(|r| *r == d.resource_id)
            && self.category.is_none_or(|c| c == d.category)
    }
}

impl Finding {
    fn open(detection: Detection, now_ms: i64) -> Self {
        let mut f = Self {
            id: detection.finding_id(),
            detection,
            status: Status::Active,
            detected_at_ms: now_ms,
            last_seen_at_ms: now_ms,
            times_raised: 1,
            cleared_since_ms: None,
            resolved_at_ms: None,
            acknowledged_at_ms: None,
            dismissal: None,
            snoozed_until_ms: None,
            suppressed: false,
            notes: Vec::new(),
            history: Vec::new(),
        };
        f.event(now_ms, format!("detected ({:?})", f.detection.severity));
        f
    }

    fn event(&mut self, at_ms: i64, what: String) {
        self.history.push((at_ms, what));
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    fn reopen(&mut self, now_ms: i64, why: String) {
        self.status = Status::Active;
        self.dismissal = None;
        self.resolved_at_ms = None;
        self.acknowledged_at_ms = None;
        self.event(now_ms, why);
    }

    /// An operator acknowledged it.
    pub fn acknowledge(&mut self, now_ms: i64) {
        self.acknowledged_at_ms = Some(now_ms);
        self.event(now_ms, "acknowledged".into());
    }

    /// An operator dismissed it.
    pub fn dismiss(&mut self, reason: DismissReason, now_ms: i64) {
        self.status = Status::Dismissed;
        self.dismissal = Some(Dismissal {
            reason,
            at_ms: now_ms,
            severity: self.detection.severity,
        });
        self.event(now_ms, format!("dismissed ({reason:?})"));
    }

    /// An operator resolved it by hand; it opens again if a run finds it again.
    pub fn resolve(&mut self, now_ms: i64) {
        self.status = Status::Resolved;
        self.resolved_at_ms = Some(now_ms);
        self.cleared_since_ms = None;
        self.event(now_ms, "resolved by an operator".into());
    }

    /// An operator snoozed it until `until_ms`.
    pub fn snooze(&mut self, until_ms: i64, now_ms: i64) {
        self.snoozed_until_ms = Some(until_ms);
        self.event(now_ms, format!("snoozed until {until_ms}"));
    }

    /// An operator added a note.
    pub fn note(&mut self, text: &str, now_ms: i64) {
        self.notes.push((now_ms, text.to_owned()));
        self.event(now_ms, "note added".into());
    }

    /// Whether it is snoozed at `now_ms`.
    pub fn snoozed(&self, now_ms: i64) -> bool {
        self.snoozed_until_ms.is_some_and(|t| t > now_ms)
    }
}

/// What one run changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Findings opened (or re-opened).
    pub new: u32,
    /// Findings found again.
    pub existing: u32,
    /// Findings resolved.
    pub resolved: u32,
}

/// Merges one run's `detections` into `findings` (keyed by id) at `now_ms`; a condition must
/// stay absent for `confirm_ms` before its finding resolves.
pub fn apply(
    findings: &mut BTreeMap<String, Finding>,
    detections: Vec<Detection>,
    suppressions: &[Suppression],
    now_ms: i64,
    confirm_ms: i64,
) -> RunCounts {
    let mut counts = RunCounts::default();
    let mut seen = std::collections::BTreeSet::new();
    for d in detections {
        let id = d.finding_id();
        seen.insert(id.clone());
        let suppressed = suppressions.iter().any(|s| s.matches(&d));
        let Some(f) = findings.get_mut(&id) else {
            let mut f = Finding::open(d, now_ms);
            f.suppressed = suppressed;
            findings.insert(id, f);
            counts.new += 1;
            continue;
        };
        let before = f.detection.severity;
        let after = d.severity;
        // The alert that raised it stays linked while it lasts.
        let alert_id = d.alert_id.clone().or(f.detection.alert_id.take());
        f.detection = d;
        f.detection.alert_id = alert_id;
        f.suppressed = suppressed;
        f.last_seen_at_ms = now_ms;
        f.times_raised += 1;
        f.cleared_since_ms = None;
        match (f.status, f.dismissal) {
            (Status::Resolved, _) => {
                f.reopen(now_ms, "detected again".into());
                counts.new += 1;
            }
            (Status::Dismissed, Some(dis)) if after > dis.severity => {
                f.reopen(
                    now_ms,
                    format!(
                        "re-opened: severity rose from {:?} to {after:?}",
                        dis.severity
                    ),
                );
                counts.new += 1;
            }
            (Status::Dismissed, Some(dis))
                if dis.reason == DismissReason::WillFixLater
                    && now_ms - dis.at_ms >= REMINDER_MS =>
            {
                f.reopen(
                    now_ms,
                    "reminder: dismissed as will_fix_later 7 days ago".into(),
                );
                counts.new += 1;
            }
            _ => {
                if after != before {
                    f.event(now_ms, format!("severity {before:?} -> {after:?}"));
                }
                counts.existing += 1;
            }
        }
    }
    for (id, f) in findings.iter_mut() {
        if seen.contains(id) || f.status != Status::Active {
            continue;
        }
        let since = *f.cleared_since_ms.get_or_insert(now_ms);
        if now_ms - since >= confirm_ms {
            f.status = Status::Resolved;
            f.resolved_at_ms = Some(now_ms);
            f.cleared_since_ms = None;
            f.event(now_ms, "resolved: the condition cleared".into());
            counts.resolved += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::finding::{Category, Severity, Source};

    const MIN: i64 = 60_000;
    const CONFIRM: i64 = 15 * MIN;

    fn det(resource: &str, key: &str, severity: Severity) -> Detection {
        Detection {
            key: key.into(),
            severity,
            category: Category::Capacity,
            source: Source::Heuristic,
            resource_id: resource.into(),
            resource_name: resource.into(),
            resource_type: "storage".into(),
            node: None,
            title: "t".into(),
            description: "d".into(),
            recommendation: "r".into(),
            evidence: "e".into(),
            capacity_forecast: None,
            alert_id: None,
            root_id: None,
            related: Vec::new(),
        }
    }

    #[test]
    fn open_redetect_clear_and_resolve_after_confirmation() {
        let mut f = BTreeMap::new();
        let d = det("storage:a", "storage-usage", Severity::Warning);
        let id = d.finding_id();
        assert_eq!(apply(&mut f, vec![d.clone()], &[], 0, CONFIRM).new, 1);
        let c = apply(
            &mut f,
            vec![det("storage:a", "storage-usage", Severity::Critical)],
            &[],
            MIN,
            CONFIRM,
        );
        assert_eq!((c.new, c.existing), (0, 1));
        let x = &f[&id];
        assert_eq!(
            (x.times_raised, x.last_seen_at_ms, x.detected_at_ms),
            (2, MIN, 0)
        );
        assert_eq!(x.detection.severity, Severity::Critical);
        // Gone for 10 minutes: still active; back: the clearing starts over.
        apply(&mut f, vec![], &[], 2 * MIN, CONFIRM);
        assert_eq!(apply(&mut f, vec![], &[], 12 * MIN, CONFIRM).resolved, 0);
        apply(&mut f, vec![d.clone()], &[], 13 * MIN, CONFIRM);
        assert_eq!(f[&id].cleared_since_ms, None);
        apply(&mut f, vec![], &[], 14 * MIN, CONFIRM);
        assert_eq!(apply(&mut f, vec![], &[], 29 * MIN, CONFIRM).resolved, 1);
        assert_eq!(f[&id].status, Status::Resolved);
        // Found again after resolving: re-opened, same id, counted.
        assert_eq!(apply(&mut f, vec![d], &[], 40 * MIN, CONFIRM).new, 1);
        assert_eq!((f[&id].status, f[&id].times_raised), (Status::Active, 4));
        assert!(
            f[&id]
                .history
                .iter()
                .any(|(_, w)| w == "resolved: the condition cleared")
        );
    }

    #[test]
    fn a_dismissed_finding_comes_back_only_if_it_gets_worse_or_its_reminder_is_due() {
        let mut f = BTreeMap::new();
        let warn = det("storage:a", "storage-usage", Severity::Warning);
        let id = warn.finding_id();
        apply(&mut f, vec![warn.clone()], &[], 0, CONFIRM);
        f.get_mut(&id)
            .unwrap()
            .dismiss(DismissReason::ExpectedBehavior, MIN);
        let c = apply(&mut f, vec![warn.clone()], &[], 2 * MIN, CONFIRM);
        assert_eq!((c.new, f[&id].status), (0, Status::Dismissed));
        let crit = det("storage:a", "storage-usage", Severity::Critical);
        assert_eq!(apply(&mut f, vec![crit], &[], 3 * MIN, CONFIRM).new, 1);
        assert_eq!(f[&id].status, Status::Active);
        assert!(f[&id].history.last().unwrap().1.contains("severity rose"));

        // will_fix_later: quiet for a week, then a reminder.
        f.get_mut(&id)
            .unwrap()
            .dismiss(DismissReason::WillFixLater, 4 * MIN);
        let crit = det("storage:a", "storage-usage", Severity::Critical);
        apply(
            &mut f,
            vec![crit.clone()],
            &[],
            4 * MIN + REMINDER_MS - 1,
            CONFIRM,
        );
        assert_eq!(f[&id].status, Status::Dismissed);
        assert_eq!(
            apply(&mut f, vec![crit], &[], 4 * MIN + REMINDER_MS, CONFIRM).new,
            1
        );
        assert!(f[&id].history.last().unwrap().1.starts_with("reminder"));
    }

    #[test]
    fn suppression_snooze_acknowledge_and_notes() {
        let mut f = BTreeMap::new();
        let rules = [
            Suppression {
                resource_id: Some("storage:b".into()),
                category: None,
            },
            Suppression {
                resource_id: None,
                category: Some(Category::Backup),
            },
        ];
        let mut backup = det("vm:c/1", "backup-age", Severity::Warning);
        backup.category = Category::Backup;
        let ds = [
            det("storage:a", "storage-usage", Severity::Warning),
            det("storage:b", "storage-usage", Severity::Warning),
            backup,
        ];
        apply(&mut f, ds.to_vec(), &rules, 0, CONFIRM);
        let suppressed: Vec<bool> = ds.iter().map(|d| f[&d.finding_id()].suppressed).collect();
        assert_eq!(suppressed, [false, true, true]);
        // An empty rule matches nothing.
        let empty = Suppression {
            resource_id: None,
            category: None,
        };
        assert!(!empty.matches(&ds[0]));

        let a = f.get_mut(&ds[0].finding_id()).unwrap();
        a.acknowledge(MIN);
        a.snooze(60 * MIN, MIN);
        a.note("waiting for the new shelf", 2 * MIN);
        assert!(a.snoozed(30 * MIN) && !a.snoozed(60 * MIN));
        assert_eq!(a.acknowledged_at_ms, Some(MIN));
        assert_eq!(
            a.notes,
            vec![(2 * MIN, "waiting for the new shelf".to_owned())]
        );
        assert_eq!(a.history.len(), 4);
        // History is bounded.
        for i in 0..50 {
            a.note("n", i);
        }
        assert_eq!(a.history.len(), HISTORY);
    }
}
