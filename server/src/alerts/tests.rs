//! Unit tests of the alert rules, engine and records: no runtime, no store; time is a
//! parameter and samples are stamped by the test.

use super::engine::{AlertEvent, AlertState, evaluate};
use super::rules::{AlertRule, RuleOverride, RuleSet};
use crate::model::alert::{AlertRecord, AlertStatus, ResolveReason, TimelineEvent};
use crate::model::alert::{Op, Severity};
use crate::model::{LatestSample, ResourceRecord};
use std::collections::BTreeMap;
use warden_shared::metric;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn resource(id: &str, metrics: &[(&str, f64)], ts: i64) -> ResourceRecord {
    let (kind, name) = id.split_once(':').unwrap();
    ResourceRecord {
        id: id.to_owned(),
        org_id: "default".to_owned(),
        kind: kind.to_owned(),
        name: name.rsplit('/').next().unwrap().to_owned(),
        parent: Some("node:pve1".to_owned()),
        status: "running".to_owned(),
        latest: metrics
            .iter()
            .map(|(m, v)| {
                (
                    (*m).to_owned(),
                    LatestSample {
                        ts_ms: ts,
                        value: *v,
                    },
                )
            })
            .collect(),
        ..ResourceRecord::default()
    }
}

fn storage(pct: f64, ts: i64) -> ResourceRecord {
    resource("storage:pve1/local", &[(metric::STORAGE_USED_PCT, pct)], ts)
}

/// A test driver: the engine's memory, the records its events build (as the store would),
/// and every event so far.
#[derive(Default)]
struct Harness {
    state: AlertState,
    records: BTreeMap<String, AlertRecord>,
    events: Vec<AlertEvent>,
}

impl Harness {
    /// One evaluation at `now`; returns its events.
    fn step(&mut self, rules: &RuleSet, resources: &[ResourceRecord], now: i64) -> Vec<AlertEvent> {
        let events = evaluate(&mut self.state, rules, resources, now);
        for e in &events {
            match e {
                AlertEvent::Fired(r) => {
                    assert!(
                        self.records.insert(r.id.clone(), (**r).clone()).is_none(),
                        "alert ids are unique"
                    );
                }
                other => self.records.get_mut(other.alert_id()).unwrap().apply(other),
            }
        }
        self.events.extend(events.iter().cloned());
        events
    }

    /// Feeds `values` of the default storage, one a minute from `start`, evaluating after each.
    fn storage_series(&mut self, rules: &RuleSet, start: i64, values: &[f64]) {
        for (i, v) in values.iter().enumerate() {
            let t = start + i as i64 * MIN;
            self.step(rules, &[storage(*v, t)], t);
        }
    }

    fn fired(&self) -> Vec<&AlertRecord> {
        self.records.values().collect()
    }

    fn only(&self) -> &AlertRecord {
        let all = self.fired();
        assert_eq!(all.len(), 1, "{all:#?}");
        all[0]
    }

    fn timeline(&self) -> Vec<TimelineEvent> {
        self.only().timeline.iter().map(|e| e.event).collect()
    }
}

fn with_for(mut set: RuleSet, for_s: u64) -> RuleSet {
    set.rules.iter_mut().for_each(|r| r.for_s = for_s);
    set
}

#[test]
fn fires_only_after_the_condition_held_for_the_duration() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    // 82 % (warning, 80) for four minutes: pending, nothing fires.
    h.storage_series(&rules, T0, &[82.0, 82.0, 83.0, 82.0, 82.5]);
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert_eq!(h.state.pending(), 1);
    // The fifth minute completes the duration.
    let events = h.step(&rules, &[storage(82.0, T0 + 5 * MIN)], T0 + 5 * MIN);
    assert!(matches!(&events[..], [AlertEvent::Fired(_)]), "{events:?}");
    let a = h.only();
    assert_eq!(
        (a.severity, a.status, a.threshold, a.value),
        (Severity::Warning, AlertStatus::Firing, 80.0, 82.0)
    );
    assert_eq!(a.fired_at_ms, T0 + 5 * MIN);
    assert_eq!(a.node.as_deref(), Some("pve1"));
    assert!(
        a.timeline[0].detail.contains("for 5 min"),
        "{:?}",
        a.timeline
    );
}

#[test]
fn a_dip_restarts_the_duration() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    h.storage_series(
        &rules,
        T0,
        &[85.0, 85.0, 85.0, 79.0, 85.0, 85.0, 85.0, 85.0, 85.0],
    );
    assert!(h.events.is_empty(), "the dip at minute 3 reset it");
    h.step(&rules, &[storage(85.0, T0 + 9 * MIN)], T0 + 9 * MIN);
    assert_eq!(h.only().fired_at_ms, T0 + 9 * MIN);
}

#[test]
fn the_duration_is_witnessed_by_samples_not_the_clock() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    h.step(&rules, &[storage(95.0, T0)], T0);
    // Ten minutes later, still the same (only) sample, and within the stale window: nothing
    // new to judge, so nothing fires.
    for m in 1..5 {
        h.step(&rules, &[storage(95.0, T0)], T0 + m * MIN);
    }
    assert!(h.events.is_empty());
    h.step(&rules, &[storage(95.0, T0 + 5 * MIN)], T0 + 5 * MIN);
    assert_eq!(h.only().severity, Severity::Critical);
}

#[test]
fn hysteresis_stops_flapping_around_the_threshold() {
    let rules = with_for(RuleSet::default(), 0);
    let mut h = Harness::default();
    // Fires at 81; then wobbles 79..81 around the warning level (80) but stays above 75.
    h.storage_series(
        &rules,
        T0,
        &[81.0, 79.0, 80.5, 78.0, 81.0, 76.0, 80.0, 75.0],
    );
    assert_eq!(h.fired().len(), 1, "one alert, never resolved and re-fired");
    assert_eq!(h.timeline(), [TimelineEvent::Fired]);
    assert!(h.only().firing());
    // 74.9 is past 80 - 5: resolved.
    h.step(&rules, &[storage(74.9, T0 + 8 * MIN)], T0 + 8 * MIN);
    let a = h.only();
    assert_eq!(
        (a.status, a.resolve_reason, a.value),
        (AlertStatus::Resolved, Some(ResolveReason::Recovered), 74.9)
    );
    assert_eq!(
        h.timeline(),
        [TimelineEvent::Fired, TimelineEvent::Resolved]
    );
    // Without hysteresis the same wobble fires four times.
    let mut plain = with_for(RuleSet::default(), 0);
    plain.rules.iter_mut().for_each(|r| r.hysteresis = 0.0);
    let mut h = Harness::default();
    h.storage_series(
        &plain,
        T0,
        &[81.0, 79.0, 80.5, 78.0, 81.0, 76.0, 80.0, 75.0],
    );
    assert_eq!(h.fired().len(), 4);
}

#[test]
fn severity_escalates_after_the_duration_and_falls_with_hysteresis() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    // Warning for 5 minutes, then critical (>= 90) for 5 more.
    h.storage_series(&rules, T0, &[85.0; 6]);
    assert_eq!(h.only().severity, Severity::Warning);
    h.storage_series(&rules, T0 + 6 * MIN, &[92.0, 93.0, 94.0, 95.0, 95.0]);
    assert_eq!(
        h.only().severity,
        Severity::Warning,
        "critical not yet held 5 min"
    );
    h.step(&rules, &[storage(95.0, T0 + 11 * MIN)], T0 + 11 * MIN);
    let a = h.only();
    assert_eq!((a.severity, a.threshold), (Severity::Critical, 90.0));
    // 86 is above 90 - 5: still critical; 84 is not: back to warning; 74 resolves.
    h.storage_series(&rules, T0 + 12 * MIN, &[86.0, 84.0, 74.0]);
    let a = h.only();
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(
        h.timeline(),
        [
            TimelineEvent::Fired,
            TimelineEvent::Escalated,
            TimelineEvent::Deescalated,
            TimelineEvent::Resolved
        ]
    );
    assert!(
        a.timeline[1].detail.contains("from warning to critical"),
        "{:?}",
        a.timeline
    );
}

#[test]
fn fires_at_critical_directly_when_critical_held_for_the_duration() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    h.storage_series(&rules, T0, &[95.0; 6]);
    assert_eq!(h.only().severity, Severity::Critical);
    assert_eq!(h.timeline(), [TimelineEvent::Fired]);
}

#[test]
fn an_override_replaces_the_rule_for_its_resource_only() {
    let mut rules = RuleSet::default();
    rules.overrides.push(RuleOverride {
        resource_id: "storage:pve1/backup".to_owned(),
        rule_id: "storage-usage".to_owned(),
        enabled: None,
        warning: Some(95.0),
        critical: Some(98.0),
        for_s: Some(60),
        hysteresis: None,
    });
    rules.validate().unwrap();
    let mut h = Harness::default();
    for m in 0..=5 {
        let t = T0 + m * MIN;
        h.step(
            &rules,
            &[
                storage(91.0, t),
                resource(
                    "storage:pve1/backup",
                    &[(metric::STORAGE_USED_PCT, 91.0)],
                    t,
                ),
            ],
            t,
        );
    }
    // The default rule fires on `local`; the backup store's override says 91 % is fine.
    let all = h.fired();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].resource_id, "storage:pve1/local");
    // At 96 % for a minute (its own duration) the backup store fires, as a warning.
    for m in 6..=7 {
        let t = T0 + m * MIN;
        h.step(
            &rules,
            &[resource(
                "storage:pve1/backup",
                &[(metric::STORAGE_USED_PCT, 96.0)],
                t,
            )],
            t,
        );
    }
    let backup: Vec<_> = h
        .fired()
        .into_iter()
        .filter(|a| a.resource_id == "storage:pve1/backup")
        .collect();
    assert_eq!(backup.len(), 1);
    assert_eq!(
        (backup[0].severity, backup[0].threshold),
        (Severity::Warning, 95.0)
    );
    assert_eq!(backup[0].for_s, 60);
}

#[test]
fn an_override_follows_a_migrating_guest() {
    let mut rules = with_for(RuleSet::default(), 0);
    rules.overrides.push(RuleOverride {
        resource_id: "vm:prod/100".to_owned(),
        rule_id: "vm-memory".to_owned(),
        enabled: Some(false),
        warning: None,
        critical: None,
        for_s: None,
        hysteresis: None,
    });
    let mut h = Harness::default();
    let mut vm = resource("vm:prod/100", &[(metric::MEM_USED_PCT, 97.0)], T0);
    h.step(&rules, &[vm.clone()], T0);
    // Migrated: another node, same canonical id, still silenced.
    vm.parent = Some("node:pve2".to_owned());
    vm.attrs.insert("node".into(), "pve2".into());
    vm.latest.get_mut(metric::MEM_USED_PCT).unwrap().ts_ms = T0 + MIN;
    h.step(&rules, &[vm.clone()], T0 + MIN);
    assert!(h.events.is_empty(), "{:?}", h.events);
    // Another guest on the same rule is not silenced.
    h.step(
        &rules,
        &[resource(
            "vm:prod/101",
            &[(metric::MEM_USED_PCT, 97.0)],
            T0 + MIN,
        )],
        T0 + MIN,
    );
    assert_eq!(h.only().resource_id, "vm:prod/101");
}

#[test]
fn disabling_a_rule_resolves_its_alerts_and_fires_nothing_new() {
    let mut rules = with_for(RuleSet::default(), 0);
    let mut h = Harness::default();
    h.step(&rules, &[storage(95.0, T0)], T0);
    assert!(h.only().firing());
    rules.rules.iter_mut().for_each(|r| r.enabled = false);
    h.step(&rules, &[storage(96.0, T0 + MIN)], T0 + MIN);
    let a = h.only();
    assert_eq!(
        (a.status, a.resolve_reason),
        (AlertStatus::Resolved, Some(ResolveReason::RuleChanged))
    );
    h.step(&rules, &[storage(97.0, T0 + 2 * MIN)], T0 + 2 * MIN);
    assert_eq!(h.fired().len(), 1);
    assert_eq!(h.state.tracked(), 0);
}

#[test]
fn stale_data_keeps_nothing_pending_or_firing() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    // Pending for four minutes, then the agent goes quiet: the last sample ages.
    h.storage_series(&rules, T0, &[95.0; 5]);
    h.step(&rules, &[storage(95.0, T0 + 4 * MIN)], T0 + 10 * MIN);
    assert_eq!(h.state.tracked(), 0, "pending dropped");
    // Back after the gap: the duration starts over.
    h.storage_series(&rules, T0 + 11 * MIN, &[95.0; 5]);
    assert!(h.events.is_empty());
    h.step(&rules, &[storage(95.0, T0 + 16 * MIN)], T0 + 16 * MIN);
    assert!(h.only().firing());
    // Firing, then no data for longer than stale_after_s: resolved as stale.
    h.step(&rules, &[storage(95.0, T0 + 16 * MIN)], T0 + 21 * MIN + 1);
    let a = h.only();
    assert_eq!(
        (a.status, a.resolve_reason),
        (AlertStatus::Resolved, Some(ResolveReason::Stale))
    );
    assert!(
        a.timeline[1].detail.starts_with("no data"),
        "{:?}",
        a.timeline
    );
}

#[test]
fn after_a_restart_stale_data_waits_for_the_agents() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    h.storage_series(&rules, T0, &[95.0; 6]);
    let id = h.only().id.clone();
    // The server was down for an hour; its first evaluations see the old samples.
    let mut restarted = Harness {
        state: AlertState::restore(h.records.values()),
        records: h.records.clone(),
        events: Vec::new(),
    };
    let back = T0 + 65 * MIN;
    for s in [0, 60_000, 5 * MIN] {
        restarted.step(&rules, &[storage(95.0, T0 + 5 * MIN)], back + s);
    }
    assert!(restarted.events.is_empty(), "{:?}", restarted.events);
    // The agent replays and reports again: the same alert carries on.
    restarted.step(&rules, &[storage(96.0, back + 5 * MIN)], back + 5 * MIN);
    assert!(restarted.only().firing());
    assert_eq!(restarted.only().id, id);
    assert_eq!(restarted.only().value, 96.0);
    // An agent that does not come back: resolved once the warm-up is over.
    restarted.step(&rules, &[storage(96.0, back + 5 * MIN)], back + 11 * MIN);
    assert_eq!(restarted.only().resolve_reason, Some(ResolveReason::Stale));
}

#[test]
fn a_gap_between_samples_breaks_continuity() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    h.step(&rules, &[storage(95.0, T0)], T0);
    // The next sample comes 6 minutes later (> stale_after_s): "held for 6 minutes" was not
    // witnessed, so the duration restarts from it.
    h.step(&rules, &[storage(95.0, T0 + 6 * MIN)], T0 + 6 * MIN);
    assert!(h.events.is_empty(), "{:?}", h.events);
}

#[test]
fn vanished_resources_and_series_resolve() {
    let rules = with_for(RuleSet::default(), 0);
    let mut h = Harness::default();
    let vm = resource("vm:c/100", &[(metric::MEM_USED_PCT, 95.0)], T0);
    h.step(&rules, &[storage(95.0, T0), vm.clone()], T0);
    assert_eq!(h.fired().len(), 2);
    // The VM no longer reports memory; the storage is gone altogether.
    let mut quiet = vm.clone();
    quiet.latest.clear();
    h.step(&rules, &[quiet], T0 + MIN);
    let reasons: BTreeMap<String, Option<ResolveReason>> = h
        .fired()
        .iter()
        .map(|a| (a.resource_id.clone(), a.resolve_reason))
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            (
                "storage:pve1/local".to_owned(),
                Some(ResolveReason::ResourceGone)
            ),
            ("vm:c/100".to_owned(), Some(ResolveReason::NoData)),
        ])
    );
}

#[test]
fn a_new_episode_gets_a_new_id() {
    let rules = with_for(RuleSet::default(), 0);
    let mut h = Harness::default();
    h.storage_series(&rules, T0, &[95.0, 50.0, 95.0]);
    let ids: Vec<&str> = h.fired().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|id| id.len() == 16));
}

#[test]
fn restore_keeps_firing_alerts_and_their_ids() {
    let rules = RuleSet::default();
    let mut h = Harness::default();
    h.storage_series(&rules, T0, &[85.0; 6]);
    let id = h.only().id.clone();
    // A restart: the memory is rebuilt from the stored records alone.
    let mut restarted = Harness {
        state: AlertState::restore(h.records.values()),
        records: h.records.clone(),
        events: Vec::new(),
    };
    restarted.storage_series(&rules, T0 + 6 * MIN, &[86.0, 84.0]);
    assert_eq!(restarted.fired().len(), 1, "no re-fire with a new id");
    assert!(
        restarted
            .events
            .iter()
            .all(|e| matches!(e, AlertEvent::Value { .. }) && e.alert_id() == id),
        "{:?}",
        restarted.events
    );
    restarted.step(&rules, &[storage(70.0, T0 + 8 * MIN)], T0 + 8 * MIN);
    assert_eq!(restarted.only().status, AlertStatus::Resolved);
}

#[test]
fn below_rules_and_labelled_series() {
    let set = RuleSet {
        rules: vec![AlertRule {
            id: "fs-free".to_owned(),
            name: "Filesystem free".to_owned(),
            resource_kind: "node".to_owned(),
            metric: "fs_free_pct".to_owned(),
            op: Op::Below,
            warning: Some(20.0),
            critical: Some(10.0),
            for_s: 0,
            hysteresis: 2.0,
            enabled: true,
        }],
        overrides: Vec::new(),
        stale_after_s: 300,
    };
    set.validate().unwrap();
    let mut h = Harness::default();
    let node = |root: f64, data: f64, ts: i64| {
        resource(
            "node:pve1",
            &[
                (r#"fs_free_pct{mount="/"}"#, root),
                (r#"fs_free_pct{mount="/data"}"#, data),
                (metric::CPU_PCT, 99.0),
            ],
            ts,
        )
    };
    h.step(&set, &[node(50.0, 9.0, T0)], T0);
    let a = h.only();
    assert_eq!(
        (a.metric.as_str(), a.severity, a.op),
        (
            r#"fs_free_pct{mount="/data"}"#,
            Severity::Critical,
            Op::Below
        )
    );
    // 11 is within 10 + 2: still critical; 21 is within 20 + 2: still firing; 23 resolves.
    for (m, v) in [(1, 11.0), (2, 21.0)] {
        h.step(&set, &[node(50.0, v, T0 + m * MIN)], T0 + m * MIN);
    }
    assert_eq!(
        (h.only().severity, h.only().firing()),
        (Severity::Warning, true)
    );
    h.step(&set, &[node(50.0, 23.0, T0 + 3 * MIN)], T0 + 3 * MIN);
    assert!(!h.only().firing());
}

#[test]
fn acknowledge_and_analysis_go_on_the_timeline() {
    let rules = with_for(RuleSet::default(), 0);
    let mut h = Harness::default();
    h.step(&rules, &[storage(95.0, T0)], T0);
    let mut a = h.only().clone();
    assert!(a.acknowledge(T0 + 1000, Some("looking")));
    assert!(!a.acknowledge(T0 + 2000, None), "once");
    a.attach_analysis(&["f1".to_owned(), "f2".to_owned()], T0 + 3000);
    a.attach_analysis(&["f2".to_owned()], T0 + 4000);
    a.attach_analysis(&[], T0 + 5000);
    assert_eq!(a.acknowledged_at_ms, Some(T0 + 1000));
    assert_eq!(a.finding_ids, ["f1", "f2"]);
    let kinds: Vec<TimelineEvent> = a.timeline.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            TimelineEvent::Fired,
            TimelineEvent::Acknowledged,
            TimelineEvent::AnalysisAttached,
            TimelineEvent::AnalysisAttached,
            TimelineEvent::AnalysisAttached
        ]
    );
    assert!(a.timeline[4].detail.contains("no findings"));
    // The timeline is bounded and keeps `fired`.
    for i in 0..500 {
        a.attach_analysis(&[], T0 + 10_000 + i);
    }
    assert_eq!(a.timeline.len(), super::record::TIMELINE_MAX);
    assert_eq!(a.timeline[0].event, TimelineEvent::Fired);
}

#[test]
fn the_defaults_match_patrol_and_validate() {
    let d = RuleSet::default();
    d.validate().unwrap();
    type Row<'a> = (&'a str, &'a str, Option<f64>, Option<f64>, u64, f64);
    let levels: Vec<Row<'_>> = d
        .rules
        .iter()
        .map(|r| {
            (
                r.resource_kind.as_str(),
                r.metric.as_str(),
                r.warning,
                r.critical,
                r.for_s,
                r.hysteresis,
            )
        })
        .collect();
    assert_eq!(
        levels,
        [
            ("node", metric::CPU_PCT, Some(75.0), Some(85.0), 300, 5.0),
            (
                "node",
                metric::MEM_USED_PCT,
                Some(75.0),
                Some(85.0),
                300,
                5.0
            ),
            (
                "storage",
                metric::STORAGE_USED_PCT,
                Some(80.0),
                Some(90.0),
                300,
                5.0
            ),
            (
                "pbs-datastore",
                metric::DATASTORE_USED_PCT,
                Some(80.0),
                Some(90.0),
                300,
                5.0
            ),
            ("vm", metric::MEM_USED_PCT, Some(80.0), Some(88.0), 300, 5.0),
            (
                "lxc",
                metric::MEM_USED_PCT,
                Some(80.0),
                Some(88.0),
                300,
                5.0
            ),
        ]
    );
    // What the API reads back is what it was given.
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<RuleSet>(&json).unwrap(), d);
}

#[test]
fn validation_reports_every_problem_with_its_place() {
    let mut set = RuleSet::default();
    set.rules[0].warning = Some(90.0); // above critical (85) with op above
    set.rules[1].id = "node-cpu".to_owned(); // duplicate
    set.rules[2].name = " ".to_owned();
    set.rules[3].metric = String::new();
    set.rules[4].resource_kind = "vms".to_owned();
    set.rules[5].warning = None;
    set.rules[5].critical = None;
    set.stale_after_s = 5;
    set.overrides = vec![
        RuleOverride {
            resource_id: "local-zfs".to_owned(),
            rule_id: "storage-usage".to_owned(),
            enabled: None,
            warning: None,
            critical: None,
            for_s: None,
            hysteresis: None,
        },
        RuleOverride {
            resource_id: "storage:pve1/local".to_owned(),
            rule_id: "nope".to_owned(),
            enabled: None,
            warning: None,
            critical: None,
            for_s: None,
            hysteresis: None,
        },
        RuleOverride {
            resource_id: "storage:pve1/local".to_owned(),
            rule_id: "storage-usage".to_owned(),
            enabled: None,
            warning: Some(95.0),
            critical: None,
            for_s: None,
            hysteresis: None,
        },
        RuleOverride {
            resource_id: "storage:pve1/backup".to_owned(),
            rule_id: "storage-usage".to_owned(),
            enabled: None,
            warning: None,
            critical: None,
            for_s: Some(100_000),
            hysteresis: Some(-1.0),
        },
        RuleOverride {
            resource_id: "node:pve1".to_owned(),
            rule_id: "storage-usage".to_owned(),
            enabled: Some(false),
            warning: None,
            critical: None,
            for_s: None,
            hysteresis: None,
        },
    ];
    let problems = set.validate().unwrap_err();
    let text = problems.join("\n");
    for needle in [
        "rules[0] (node-cpu): with op \"above\" the warning level (90) must be below the critical level (85)",
        "rules[1] (node-cpu): duplicate rule id",
        "rules[2] (storage-usage): name must be 1 to 200 bytes",
        "rules[3] (pbs-datastore-usage): metric must be a metric name",
        "overrides[3] (storage:pve1/backup storage-usage): for_s must be 0 to 86400",
        "overrides[3] (storage:pve1/backup storage-usage): hysteresis must be a number >= 0",
        "overrides[4] (node:pve1 storage-usage): rule \"storage-usage\" watches \"storage\" resources, not \"node\"",
        "rules[4] (vm-memory): unknown resource_kind \"vms\"",
        "rules[5] (lxc-memory): needs a warning level, a critical level or both",
        "stale_after_s must be 30 to 86400",
        "overrides[0]: resource_id \"local-zfs\": resource id must look like <type>:<name>",
        "overrides[1]: rule_id \"nope\" names no rule",
        "overrides[2] (storage:pve1/local storage-usage): with op \"above\" the warning level (95)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(problems.len(), 13, "{text}");
    // Unknown fields are refused by the parser.
    let err = serde_json::from_str::<RuleSet>(r#"{"rules": [], "bogus": 1}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
}
