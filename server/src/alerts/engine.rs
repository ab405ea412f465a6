//! The alert engine: a pure function of its memory ([`AlertState`]), the rules, the resources'
//! latest samples and `now`, returning what changed as [`AlertEvent`]s. It keeps one tracker
//! per (rule, resource, series) that is pending or firing; see the module header of
//! `alerts/mod.rs` for the state machine.

use super::record::{alert_id, num};
use super::rules::{AlertRule, Compiled, RuleSet, level_index};
use crate::model::alert::Severity;
use crate::model::alert::{AlertRecord, AlertStatus, ResolveReason, TimelineEntry, TimelineEvent};
use crate::model::{LatestSample, ResourceRecord};
use std::collections::{BTreeMap, BTreeSet};

/// What changed in one evaluation. Everything but `Fired` names an alert that was firing.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    /// A new alert (its record, with the `fired` timeline entry).
    Fired(Box<AlertRecord>),
    /// A firing alert's severity rose or fell.
    SeverityChanged {
        /// The alert.
        id: String,
        /// Old severity.
        from: Severity,
        /// New severity.
        to: Severity,
        /// The value that changed it.
        value: f64,
        /// Its sample time, ms.
        value_at_ms: i64,
        /// The level of the new severity.
        threshold: f64,
        /// When, ms.
        at_ms: i64,
    },
    /// A firing alert has a new sample (nothing else changed).
    Value {
        /// The alert.
        id: String,
        /// The value.
        value: f64,
        /// Its sample time, ms.
        value_at_ms: i64,
    },
    /// A firing alert ended.
    Resolved {
        /// The alert.
        id: String,
        /// Why.
        reason: ResolveReason,
        /// The value and its time, when a sample resolved it.
        value: Option<(f64, i64)>,
        /// When, ms.
        at_ms: i64,
    },
}

impl AlertEvent {
    /// The alert it is about.
    pub fn alert_id(&self) -> &str {
        match self {
            Self::Fired(r) => &r.id,
            Self::SeverityChanged { id, .. }
            | Self::Value { id, .. }
            | Self::Resolved { id, .. } => id,
        }
    }
}

/// (rule id, resource id, series).
type Key = (String, String, String);

/// A firing alert as the engine tracks it.
#[derive(Debug, Clone, PartialEq)]
struct Firing {
    id: String,
    severity: Severity,
}

/// One (rule, resource, series): since when each level has held, the last sample judged, and
/// the alert if it fires.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tracker {
    /// Per level (warning, critical): the sample time since which the value has been
    /// continuously past it (past its relaxed threshold for levels the alert has reached).
    since: [Option<i64>; 2],
    /// Time of the last sample judged.
    last_ts: Option<i64>,
    alert: Option<Firing>,
}

impl Tracker {
    fn idle(&self) -> bool {
        self.alert.is_none() && self.since.iter().all(Option::is_none)
    }
}

/// The engine's memory between evaluations: pending conditions and firing alerts. Pending
/// conditions live only here; firing alerts are also stored, and [`AlertState::restore`]
/// rebuilds the memory from them after a restart (pending durations start over).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertState {
    trackers: BTreeMap<Key, Tracker>,
    /// The first evaluation with this memory. Until `stale_after_s` after it, stale data does
    /// not resolve firing alerts: after a server restart the agents need time to reconnect and
    /// replay, and the server's own downtime is not the resources' silence.
    started_ms: Option<i64>,
}

impl AlertState {
    /// The memory of `alerts`' firing ones: each tracked as firing at its severity, its levels
    /// up to that severity held since its latest value, so it keeps its id and resolves or
    /// changes severity only on new samples.
    pub fn restore<'a>(alerts: impl IntoIterator<Item = &'a AlertRecord>) -> Self {
        let mut trackers = BTreeMap::new();
        for a in alerts
            .into_iter()
            .filter(|a| a.status == AlertStatus::Firing)
        {
            let mut since = [None; 2];
            for s in Severity::ALL.into_iter().filter(|s| *s <= a.severity) {
                since[level_index(s)] = Some(a.value_at_ms);
            }
            trackers.insert(
                (a.rule_id.clone(), a.resource_id.clone(), a.metric.clone()),
                Tracker {
                    since,
                    last_ts: Some(a.value_at_ms),
                    alert: Some(Firing {
                        id: a.id.clone(),
                        severity: a.severity,
                    }),
                },
            );
        }
        Self {
            trackers,
            started_ms: None,
        }
    }

    /// Number of (rule, resource, series) pending or firing.
    pub fn tracked(&self) -> usize {
        self.trackers.len()
    }

    /// Number of them pending (some level held, not firing yet).
    pub fn pending(&self) -> usize {
        self.trackers.values().filter(|t| t.alert.is_none()).count()
    }
}

/// One evaluation at `now_ms`: judges the latest sample of every series each enabled rule
/// watches on each resource (with the resource's override applied) and returns what changed.
/// Events come in resource, rule, series order, then resolutions of series no longer watched.
pub fn evaluate(
    state: &mut AlertState,
    rules: &RuleSet,
    resources: &[ResourceRecord],
    now_ms: i64,
) -> Vec<AlertEvent> {
    let rules = Compiled::new(rules);
    let stale_ms = rules.stale_ms();
    let started = *state.started_ms.get_or_insert(now_ms);
    let warming_up = now_ms.saturating_sub(started) <= stale_ms;
    let mut events = Vec::new();
    let mut seen: BTreeSet<Key> = BTreeSet::new();
    for r in resources {
        for rule in rules.rules() {
            let Some(eff) = rules.effective(rule, &r.id, &r.kind) else {
                continue;
            };
            for (series, sample) in r.latest.iter().filter(|(m, _)| eff.watches(m)) {
                let key = (rule.id.clone(), r.id.clone(), series.clone());
                let mut t = state.trackers.remove(&key).unwrap_or_default();
                let judge = Judge {
                    rule: &eff,
                    resource: r,
                    series,
                    now_ms,
                    stale_ms,
                    warming_up,
                };
                judge.sample(&mut t, sample, &mut events);
                if !t.idle() {
                    state.trackers.insert(key.clone(), t);
                }
                seen.insert(key);
            }
        }
    }
    // Trackers nothing watched this time: the rule, resource or series went away.
    let gone: Vec<Key> = state
        .trackers
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    for key in gone {
        let Some(t) = state.trackers.remove(&key) else {
            continue;
        };
        let Some(alert) = t.alert else { continue };
        let (rule_id, resource_id, _) = &key;
        let reason = match resources.iter().find(|r| &r.id == resource_id) {
            None => ResolveReason::ResourceGone,
            Some(r) if rules.effective_by_id(rule_id, &r.id, &r.kind).is_some() => {
                ResolveReason::NoData
            }
            Some(_) => ResolveReason::RuleChanged,
        };
        events.push(AlertEvent::Resolved {
            id: alert.id,
            reason,
            value: None,
            at_ms: now_ms,
        });
    }
    events
}

/// Judging one series' latest sample against one effective rule.
struct Judge<'a> {
    rule: &'a AlertRule,
    resource: &'a ResourceRecord,
    series: &'a str,
    now_ms: i64,
    stale_ms: i64,
    /// Within `stale_ms` of the first evaluation: stale data resolves nothing yet.
    warming_up: bool,
}

impl Judge<'_> {
    fn sample(&self, t: &mut Tracker, s: &LatestSample, events: &mut Vec<AlertEvent>) {
        let (ts, v) = (s.ts_ms, s.value);
        if self.now_ms.saturating_sub(ts) > self.stale_ms {
            // No fresh data: nothing can be pending, and a firing alert cannot be judged
            // (unless the evaluator itself just started: then it waits for the agents).
            t.since = [None; 2];
            t.last_ts = Some(ts);
            if self.warming_up {
                return;
            }
            if let Some(a) = t.alert.take() {
                events.push(AlertEvent::Resolved {
                    id: a.id,
                    reason: ResolveReason::Stale,
                    value: None,
                    at_ms: self.now_ms,
                });
            }
            return;
        }
        match t.last_ts {
            // Judged already (or older than what was judged): nothing new to learn.
            Some(last) if ts <= last => return,
            // A gap longer than the stale window breaks continuity.
            Some(last) if ts - last > self.stale_ms => t.since = [None; 2],
            _ => {}
        }
        t.last_ts = Some(ts);
        let rule = self.rule;
        let active = t.alert.as_ref().map(|a| a.severity);
        for (sev, threshold) in rule.levels() {
            // A level the alert has reached holds until the value clears the hysteresis.
            let at = if active.is_some_and(|a| sev <= a) {
                rule.op.relaxed(threshold, rule.hysteresis)
            } else {
                threshold
            };
            let i = level_index(sev);
            t.since[i] = if rule.op.past(v, at) {
                t.since[i].or(Some(ts))
            } else {
                None
            };
        }
        // A level counts once it has held for `for_s`, witnessed by a sample that late.
        let for_ms = rule.for_ms();
        let sustained = rule.levels().rfind(|(sev, _)| {
            t.since[level_index(*sev)].is_some_and(|since| ts.saturating_sub(since) >= for_ms)
        });
        let Some(a) = t.alert.as_mut() else {
            if let Some((sev, thr)) = sustained {
                let record = self.fire(t, sev, thr, v, ts);
                t.alert = Some(Firing {
                    id: record.id.clone(),
                    severity: sev,
                });
                events.push(AlertEvent::Fired(Box::new(record)));
            }
            return;
        };
        let held = rule
            .levels()
            .rfind(|(sev, _)| *sev <= a.severity && t.since[level_index(*sev)].is_some());
        let change = match (sustained.filter(|(s, _)| *s > a.severity), held) {
            (Some(up), _) => Some(up),
            (None, None) => {
                events.push(AlertEvent::Resolved {
                    id: t.alert.take().map(|a| a.id).unwrap_or_default(),
                    reason: ResolveReason::Recovered,
                    value: Some((v, ts)),
                    at_ms: self.now_ms,
                });
                return;
            }
            (None, Some(down)) if down.0 < a.severity => Some(down),
            (None, Some(_)) => None,
        };
        match change {
            Some((to, threshold)) => {
                events.push(AlertEvent::SeverityChanged {
                    id: a.id.clone(),
                    from: a.severity,
                    to,
                    value: v,
                    value_at_ms: ts,
                    threshold,
                    at_ms: self.now_ms,
                });
                a.severity = to;
            }
            None => events.push(AlertEvent::Value {
                id: a.id.clone(),
                value: v,
                value_at_ms: ts,
            }),
        }
    }

    /// The record of a new alert at `severity`.
    fn fire(
        &self,
        t: &Tracker,
        severity: Severity,
        threshold: f64,
        v: f64,
        ts: i64,
    ) -> AlertRecord {
        let rule = self.rule;
        let r = self.resource;
        let id = alert_id(&rule.id, &r.id, self.series, self.now_ms);
        let since = t.since[level_index(severity)].unwrap_or(ts);
        let held_s = ts.saturating_sub(since) / 1000;
        let detail = format!(
            "{} = {} ({severity} {} {}) for {}",
            self.series,
            num(v),
            rule.op.symbol(),
            num(threshold),
            duration(held_s),
        );
        AlertRecord {
            id,
            org_id: r.org_id.clone(),
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            resource_id: r.id.clone(),
            resource_name: r.name.clone(),
            resource_type: r.kind.clone(),
            node: r.node(),
            metric: self.series.to_owned(),
            op: rule.op,
            severity,
            status: AlertStatus::Firing,
            value: v,
            value_at_ms: ts,
            threshold,
            for_s: rule.for_s,
            hysteresis: rule.hysteresis,
            fired_at_ms: self.now_ms,
            acknowledged_at_ms: None,
            resolved_at_ms: None,
            resolve_reason: None,
            finding_ids: Vec::new(),
            timeline: vec![TimelineEntry {
                at_ms: self.now_ms,
                event: TimelineEvent::Fired,
                detail,
                finding_ids: Vec::new(),
            }],
        }
    }
}

/// `45 s`, `5 min`, `2 h 5 min`.
fn duration(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
