//! The alert tables through the store's primitives with the alert logic passed in: events
//! applied per evaluation, operator acknowledgements, Patrol's analysis, rule sets, pruning.

use crate::alerts::engine::{self, AlertEvent, AlertState};
use crate::alerts::rules::RuleSet;
use crate::model::alert::Severity;
use crate::model::alert::{AlertRecord, AlertStatus, ResolveReason, TimelineEvent};
use crate::model::{IngestItem, LatestSample, ResourceRecord};
use crate::store::Store;
use std::collections::BTreeMap;
use warden_shared::ids::ResourceId;
use warden_shared::metric;
use warden_shared::telemetry::{Resource, Sample, TelemetryBatch};

const ORG: &str = "default";
const NOW: i64 = 1_800_000_000_000;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("warden.redb")).unwrap();
    (dir, store)
}

fn storage(pct: f64, ts: i64) -> ResourceRecord {
    ResourceRecord {
        id: "storage:pve2/local-zfs".into(),
        org_id: ORG.into(),
        kind: "storage".into(),
        name: "local-zfs".into(),
        parent: Some("node:pve2".into()),
        status: "available".into(),
        latest: BTreeMap::from([(
            metric::STORAGE_USED_PCT.to_owned(),
            LatestSample {
                ts_ms: ts,
                value: pct,
            },
        )]),
        ..ResourceRecord::default()
    }
}

/// Fires the default storage rule on one resource: 95 % for five minutes.
fn fire(store: &Store, state: &mut AlertState) -> AlertRecord {
    let rules = RuleSet::default();
    for m in 0..=5 {
        let t = NOW + m * 60_000;
        let events = engine::evaluate(state, &rules, &[storage(95.0, t)], t);
        store.apply_alert_events(ORG, &events).unwrap();
    }
    let all = store.alerts(ORG).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

#[test]
fn alerts_round_trip_with_their_timeline() {
    let (_dir, store) = open();
    let mut state = AlertState::default();
    let a = fire(&store, &mut state);
    assert_eq!(
        (a.status, a.severity, a.fired_at_ms),
        (AlertStatus::Firing, Severity::Critical, NOW + 300_000)
    );
    assert_eq!(store.alert(ORG, &a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(store.alert("other", &a.id).unwrap(), None, "orgs are apart");
    assert!(store.alerts("other").unwrap().is_empty());

    let acked = store
        .acknowledge_alert(ORG, &a.id, NOW + 400_000, Some("on it"))
        .unwrap()
        .unwrap();
    assert_eq!(acked.acknowledged_at_ms, Some(NOW + 400_000));
    let again = store
        .acknowledge_alert(ORG, &a.id, NOW + 500_000, None)
        .unwrap()
        .unwrap();
    assert_eq!(again, acked, "acknowledging twice changes nothing");
    assert_eq!(
        store.acknowledge_alert(ORG, "0000", NOW, None).unwrap(),
        None
    );

    store
        .attach_alert_analysis(ORG, &a.id, &["f1".to_owned()], NOW + 450_000)
        .unwrap();
    store
        .attach_alert_analysis(ORG, "gone", &["f1".to_owned()], NOW)
        .unwrap();

    // Back under 80 - 5: resolved.
    let t = NOW + 600_000;
    let events = engine::evaluate(&mut state, &RuleSet::default(), &[storage(70.0, t)], t);
    store.apply_alert_events(ORG, &events).unwrap();
    let a = store.alert(ORG, &a.id).unwrap().unwrap();
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.resolve_reason, Some(ResolveReason::Recovered));
    assert_eq!(a.finding_ids, vec!["f1".to_owned()]);
    let kinds: Vec<TimelineEvent> = a.timeline.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            TimelineEvent::Fired,
            TimelineEvent::Acknowledged,
            TimelineEvent::AnalysisAttached,
            TimelineEvent::Resolved
        ]
    );
    assert_eq!(a.timeline[2].finding_ids, vec!["f1".to_owned()]);
}

#[test]
fn rules_round_trip_and_default_to_none() {
    let (_dir, store) = open();
    assert_eq!(store.alert_rules(ORG).unwrap(), None);
    let mut set = RuleSet::default();
    set.rules[0].for_s = 60;
    store.set_alert_rules(ORG, &set).unwrap();
    assert_eq!(store.alert_rules(ORG).unwrap(), Some(set));
    assert_eq!(store.alert_rules("other").unwrap(), None);
}

#[test]
fn reopen_keeps_alerts_and_restore_keeps_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    let a = {
        let store = Store::open(&path).unwrap();
        let set = RuleSet {
            stale_after_s: 600,
            ..RuleSet::default()
        };
        store.set_alert_rules(ORG, &set).unwrap();
        fire(&store, &mut AlertState::default())
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.alerts(ORG).unwrap(), vec![a.clone()]);
    assert_eq!(store.alert_rules(ORG).unwrap().unwrap().stale_after_s, 600);
    // A restarted evaluator rebuilds its memory from the stored alerts: still bad, so no
    // new alert; then recovered, so the same alert resolves.
    let mut state = AlertState::restore(store.alerts(ORG).unwrap().iter());
    let rules = RuleSet::default();
    for (m, pct) in [(6, 96.0), (7, 95.5)] {
        let t = NOW + m * 60_000;
        let events = engine::evaluate(&mut state, &rules, &[storage(pct, t)], t);
        assert!(events.iter().all(|e| e.alert_id() == a.id), "{events:?}");
        store.apply_alert_events(ORG, &events).unwrap();
    }
    let t = NOW + 8 * 60_000;
    let events = engine::evaluate(&mut state, &rules, &[storage(10.0, t)], t);
    store.apply_alert_events(ORG, &events).unwrap();
    let all = store.alerts(ORG).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].id.as_str(), all[0].status, all[0].value),
        (a.id.as_str(), AlertStatus::Resolved, 10.0)
    );
}

#[test]
fn prune_drops_old_and_excess_resolved_alerts_only() {
    let (_dir, store) = open();
    let firing = fire(&store, &mut AlertState::default());
    let mut events = Vec::new();
    for i in 0..5_i64 {
        let mut a = firing.clone();
        a.id = format!("r{i}");
        a.status = AlertStatus::Resolved;
        a.resolved_at_ms = Some(NOW + i);
        events.push(AlertEvent::Fired(Box::new(a)));
    }
    store.apply_alert_events(ORG, &events).unwrap();
    // r0 is older than the cut; of the rest only the newest 3 are kept.
    assert_eq!(store.prune_alerts(ORG, NOW + 1, 3).unwrap(), 2);
    let ids: Vec<String> = store
        .alerts(ORG)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert!(ids.contains(&firing.id), "firing alerts stay: {ids:?}");
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(!ids.contains(&"r0".to_owned()) && !ids.contains(&"r1".to_owned()));
    assert_eq!(store.prune_alerts(ORG, NOW + 1, 3).unwrap(), 0);
}

#[test]
fn alerts_fire_from_ingested_samples() {
    let (_dir, store) = open();
    let id = ResourceId::new("storage:pve2/local-zfs").unwrap();
    let batch = TelemetryBatch {
        seq: 1,
        collector: "proxmox".into(),
        collected_at_ms: NOW,
        resources: vec![Resource {
            id: id.clone(),
            name: "local-zfs".into(),
            parent: Some(ResourceId::new("node:pve2").unwrap()),
            status: "available".into(),
            attrs: Vec::new(),
        }],
        samples: vec![Sample {
            resource_id: id,
            metric: metric::STORAGE_USED_PCT.into(),
            ts_ms: NOW,
            value: 93.0,
        }],
        ..TelemetryBatch::default()
    };
    let item = IngestItem {
        agent_id: "pve2-1".into(),
        org_id: ORG.into(),
        batch,
        provenance: Vec::new(),
    };
    store.ingest(&[item], NOW).unwrap();
    let mut set = RuleSet::default();
    set.rules.iter_mut().for_each(|r| r.for_s = 0);
    store.set_alert_rules(ORG, &set).unwrap();
    let (_, events) = crate::alerts::service::evaluate_once(&store, ORG, None, NOW + 1000).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let a = store.alerts(ORG).unwrap().remove(0);
    assert_eq!(
        (
            a.resource_id.as_str(),
            a.node.as_deref(),
            a.severity,
            a.value
        ),
        (
            "storage:pve2/local-zfs",
            Some("pve2"),
            Severity::Critical,
            93.0
        )
    );
}
