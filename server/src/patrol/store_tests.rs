//! Patrol's tables through the store: findings saved per run and updated by operator
//! actions, suppression rules, run records, all surviving a restart.

use crate::model::finding::{Category, Detection, Severity, Source};
use crate::model::finding::{DismissReason, Finding, Status, Suppression};
use crate::patrol::lifecycle::apply;
use crate::store::{PatrolRunRecord, Store};
use std::collections::BTreeMap;
use warden_shared::metric;

const ORG: &str = "default";
const NOW: i64 = 1_800_000_000_000;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("warden.redb")).unwrap();
    (dir, store)
}

const MIN: i64 = 60_000;

fn det(resource: &str, key: &str, severity: Severity) -> Detection {
    Detection {
        key: key.into(),
        severity,
        category: Category::Capacity,
        source: Source::Forecast,
        resource_id: resource.into(),
        resource_name: resource.into(),
        resource_type: "storage".into(),
        node: Some("pve1".into()),
        title: "t".into(),
        description: "d".into(),
        recommendation: "r".into(),
        evidence: "e".into(),
        capacity_forecast: Some(crate::model::finding::CapacityForecast {
            metric: metric::STORAGE_USED_PCT.into(),
            current_pct: 91.5,
            daily_change_pct: 0.25,
            days_to_full: 34.0,
        }),
        alert_id: None,
        root_id: None,
        related: Vec::new(),
    }
}

/// Findings after a few runs: one active with notes, one resolved, one dismissed.
fn some_findings() -> BTreeMap<String, Finding> {
    let mut f = BTreeMap::new();
    let a = det("storage:a", "storage-usage", Severity::Warning);
    let b = det("storage:b", "storage-usage", Severity::Critical);
    let c = det("storage:c", "storage-forecast", Severity::Watch);
    let rules = [Suppression {
        resource_id: Some("storage:c".into()),
        category: None,
    }];
    apply(&mut f, vec![a.clone(), b, c.clone()], &rules, NOW, 15 * MIN);
    apply(
        &mut f,
        vec![a.clone(), c.clone()],
        &rules,
        NOW + MIN,
        15 * MIN,
    );
    apply(
        &mut f,
        vec![a.clone(), c.clone()],
        &rules,
        NOW + 20 * MIN,
        15 * MIN,
    );
    let fa = f.get_mut(&a.finding_id()).unwrap();
    fa.acknowledge(NOW + 21 * MIN);
    fa.note("new shelf ordered", NOW + 22 * MIN);
    fa.snooze(NOW + 60 * MIN, NOW + 22 * MIN);
    f.get_mut(&c.finding_id())
        .unwrap()
        .dismiss(DismissReason::WillFixLater, NOW + 23 * MIN);
    f
}

fn run(trigger: &str, started_at_ms: i64) -> PatrolRunRecord {
    PatrolRunRecord {
        id: 0,
        trigger: trigger.into(),
        started_at_ms,
        duration_ms: 12,
        resources_checked: BTreeMap::from([("storage".to_owned(), 3), ("vm".to_owned(), 7)]),
        new: 2,
        existing: 1,
        resolved: 1,
        errors: vec!["forecast: no history".into()],
        alert_id: None,
        alert_findings: Vec::new(),
    }
}

#[test]
fn findings_round_trip_and_upsert() {
    let (_dir, store) = open();
    assert!(store.findings(ORG).unwrap().is_empty());
    let mut f = some_findings();
    let statuses: Vec<Status> = f.values().map(|x| x.status).collect();
    assert!(statuses.contains(&Status::Resolved) && statuses.contains(&Status::Dismissed));
    store.save_findings(ORG, &f).unwrap();
    assert_eq!(store.findings(ORG).unwrap(), f);

    // Saving a subset replaces those and keeps the others.
    let a = det("storage:a", "storage-usage", Severity::Warning).finding_id();
    let mut only_a = BTreeMap::new();
    let mut fa = f[&a].clone();
    fa.times_raised = 99;
    only_a.insert(a.clone(), fa.clone());
    store.save_findings(ORG, &only_a).unwrap();
    f.insert(a, fa);
    assert_eq!(store.findings(ORG).unwrap(), f);
    store.save_findings(ORG, &BTreeMap::new()).unwrap();
    assert_eq!(store.findings(ORG).unwrap().len(), 3);
}

#[test]
fn update_finding_read_modify_write() {
    let (_dir, store) = open();
    let f = some_findings();
    store.save_findings(ORG, &f).unwrap();
    let id = det("storage:b", "storage-usage", Severity::Critical).finding_id();
    let updated = store
        .update_finding(ORG, &id, |x| x.note("looked at it", NOW + 30 * MIN))
        .unwrap()
        .unwrap();
    assert_eq!(
        updated.notes,
        vec![(NOW + 30 * MIN, "looked at it".to_owned())]
    );
    assert_eq!(store.findings(ORG).unwrap()[&id], updated);
    assert_eq!(
        store
            .update_finding(ORG, "0000000000000000", |x| x.times_raised = 7)
            .unwrap(),
        None
    );
    assert_eq!(store.update_finding("other", &id, |_| ()).unwrap(), None);
    assert_eq!(store.findings(ORG).unwrap().len(), f.len());
    assert!(store.findings("other").unwrap().is_empty());
}

#[test]
fn patrol_state_is_kept_per_org() {
    let (_dir, store) = open();
    let f = some_findings();
    store.save_findings("acme", &f).unwrap();
    // A prefix of another org's id must not reach into it.
    assert!(store.findings("acm").unwrap().is_empty());
    assert!(store.findings(ORG).unwrap().is_empty());
    let rule = Suppression {
        resource_id: None,
        category: Some(Category::Backup),
    };
    let id = store.add_suppression("acme", &rule).unwrap();
    assert!(store.suppressions(ORG).unwrap().is_empty());
    assert!(!store.remove_suppression(ORG, &id).unwrap());
    assert_eq!(store.suppressions("acme").unwrap(), vec![(id, rule)]);
    assert_eq!(store.record_run("acme", run("manual", NOW)).unwrap(), 1);
    assert_eq!(store.record_run("acme", run("manual", NOW)).unwrap(), 2);
    assert!(store.runs(ORG, 10).unwrap().is_empty());
    assert_eq!(store.record_run(ORG, run("schedule", NOW)).unwrap(), 1);
    assert_eq!(store.runs("acme", 10).unwrap().len(), 2);
}

#[test]
fn suppressions_add_list_remove() {
    let (_dir, store) = open();
    let r1 = Suppression {
        resource_id: Some("storage:b".into()),
        category: None,
    };
    let r2 = Suppression {
        resource_id: Some("vm:101".into()),
        category: Some(Category::Backup),
    };
    let id1 = store.add_suppression(ORG, &r1).unwrap();
    let id2 = store.add_suppression(ORG, &r2).unwrap();
    assert_ne!(id1, id2);
    assert!(id1.len() == 16 && id1.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut want = vec![(id1.clone(), r1), (id2.clone(), r2.clone())];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(store.suppressions(ORG).unwrap(), want);
    assert!(store.remove_suppression(ORG, &id1).unwrap());
    assert!(!store.remove_suppression(ORG, &id1).unwrap());
    assert_eq!(store.suppressions(ORG).unwrap(), vec![(id2, r2)]);
}

#[test]
fn runs_get_increasing_ids_and_list_newest_first() {
    let (_dir, store) = open();
    assert!(store.runs(ORG, 10).unwrap().is_empty());
    // Enough runs that ids pass a hex digit boundary (15 -> 16 -> 17).
    for i in 1..=17u64 {
        let mut rec = run("schedule", NOW + i as i64 * MIN);
        rec.id = 1234; // ignored
        assert_eq!(store.record_run(ORG, rec).unwrap(), i);
    }
    let runs = store.runs(ORG, 5).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        [17, 16, 15, 14, 13]
    );
    let mut want = run("schedule", NOW + 17 * MIN);
    want.id = 17;
    assert_eq!(runs[0], want);
    assert_eq!(store.runs(ORG, 100).unwrap().len(), 17);
    assert!(store.runs(ORG, 0).unwrap().is_empty());
}

#[test]
fn reopen_keeps_patrol_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    let f = some_findings();
    let rule = Suppression {
        resource_id: Some("storage:b".into()),
        category: Some(Category::Capacity),
    };
    let rule_id;
    {
        let store = Store::open(&path).unwrap();
        store.save_findings(ORG, &f).unwrap();
        rule_id = store.add_suppression(ORG, &rule).unwrap();
        store.record_run(ORG, run("schedule", NOW)).unwrap();
        store.record_run(ORG, run("manual", NOW + MIN)).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.findings(ORG).unwrap(), f);
    assert_eq!(store.suppressions(ORG).unwrap(), vec![(rule_id, rule)]);
    let runs = store.runs(ORG, 10).unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.id, r.trigger.as_str()))
            .collect::<Vec<_>>(),
        [(2, "manual"), (1, "schedule")]
    );
    // Ids continue after the restart.
    assert_eq!(
        store.record_run(ORG, run("alert", NOW + 2 * MIN)).unwrap(),
        3
    );
}
