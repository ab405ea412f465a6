//! Alerts per organisation: alert records (firing and resolved, with their timelines),
//! changed by the evaluator's events in one transaction per evaluation and read-modify-write
//! by operator actions and Patrol; the alert rule set; pruning of old resolved alerts.

use super::keys::{decode, encode, org_resource_range, resource_key};
use super::{Store, StoreError};
use crate::alerts::engine::AlertEvent;
use crate::alerts::record::AlertRecord;
use crate::alerts::rules::RuleSet;
use redb::{ReadableTable, TableDefinition};

/// Alerts by `org US alert_id` -> JSON [`AlertRecord`].
pub(super) const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// Alert rule sets by org -> JSON [`RuleSet`] (absent: the defaults).
pub(super) const ALERT_RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_rules");

const ALERT: &str = "alert";
const RULES: &str = "alert rule set";

impl Store {
    /// Every alert of `org`, firing and resolved, in id order.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn alerts(&self, org: &str) -> Result<Vec<AlertRecord>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ALERTS)?;
        let (lo, hi) = org_resource_range(org);
        table
            .range(lo.as_str()..hi.as_str())?
            .map(|entry| {
                let (k, v) = entry?;
                decode(ALERT, k.value(), v.value())
            })
            .collect()
    }

    /// One alert of `org`.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn alert(&self, org: &str, id: &str) -> Result<Option<AlertRecord>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ALERTS)?;
        table
            .get(resource_key(org, id).as_str())?
            .map(|v| decode(ALERT, id, v.value()))
            .transpose()
    }

    /// Stores one evaluation's events of `org` in one write transaction: `Fired` inserts the
    /// new record, the others update the named alert (an event for an alert that is not
    /// stored, or no longer firing, changes nothing).
    ///
    /// # Errors
    /// Storage failures, [`StoreError::Encode`] and [`StoreError::Corrupt`]; nothing is
    /// written then.
    pub fn apply_alert_events(&self, org: &str, events: &[AlertEvent]) -> Result<(), StoreError> {
        let txn = self.write_txn()?;
        {
            let mut table = txn.open_table(ALERTS)?;
            for event in events {
                let id = event.alert_id();
                let key = resource_key(org, id);
                let record = match event {
                    AlertEvent::Fired(record) => Some(record.as_ref().clone()),
                    _ => {
                        let current: Option<AlertRecord> = table
                            .get(key.as_str())?
                            .map(|v| decode(ALERT, id, v.value()))
                            .transpose()?;
                        current.map(|mut a| {
                            a.apply(event);
                            a
                        })
                    }
                };
                if let Some(record) = record {
                    table.insert(key.as_str(), encode(ALERT, &record)?.as_slice())?;
                }
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Applies `f` to an alert of `org` and stores it if `f` returns `true`, in one write
    /// transaction. Returns the alert as it now is, or `None` if there is no such alert.
    ///
    /// # Errors
    /// Storage failures, [`StoreError::Encode`] and [`StoreError::Corrupt`].
    pub fn update_alert(
        &self,
        org: &str,
        id: &str,
        f: impl FnOnce(&mut AlertRecord) -> bool,
    ) -> Result<Option<AlertRecord>, StoreError> {
        let key = resource_key(org, id);
        let txn = self.write_txn()?;
        let (alert, changed) = {
            let mut table = txn.open_table(ALERTS)?;
            let current: Option<AlertRecord> = table
                .get(key.as_str())?
                .map(|v| decode(ALERT, id, v.value()))
                .transpose()?;
            match current {
                None => (None, false),
                Some(mut a) => {
                    let changed = f(&mut a);
                    debug_assert_eq!(a.id, id, "update_alert must not change the id");
                    if changed {
                        table.insert(key.as_str(), encode(ALERT, &a)?.as_slice())?;
                    }
                    (Some(a), changed)
                }
            }
        };
        if changed {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(alert)
    }

    /// Acknowledges an alert of `org` (the first time only; again changes nothing). Returns
    /// the alert, or `None` if there is no such alert.
    ///
    /// # Errors
    /// As [`Store::update_alert`].
    pub fn acknowledge_alert(
        &self,
        org: &str,
        id: &str,
        now_ms: i64,
        comment: Option<&str>,
    ) -> Result<Option<AlertRecord>, StoreError> {
        self.update_alert(org, id, |a| a.acknowledge(now_ms, comment))
    }

    /// Attaches a Patrol run's findings on the alert's resource to alert `alert_id` of `org`
    /// as its analysis: an `analysis_attached` timeline entry listing them (or saying there
    /// were none). `Ok` and no change if the alert no longer exists.
    ///
    /// # Errors
    /// As [`Store::update_alert`].
    pub fn attach_alert_analysis(
        &self,
        org: &str,
        alert_id: &str,
        finding_ids: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.update_alert(org, alert_id, |a| {
            a.attach_analysis(finding_ids, now_ms);
            true
        })?;
        Ok(())
    }

    /// The alert rule set of `org`, `None` if it never stored one (the defaults apply).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn alert_rules(&self, org: &str) -> Result<Option<RuleSet>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ALERT_RULES)?;
        table
            .get(org)?
            .map(|v| decode(RULES, org, v.value()))
            .transpose()
    }

    /// Replaces the alert rule set of `org` (validate it first).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Encode`].
    pub fn set_alert_rules(&self, org: &str, rules: &RuleSet) -> Result<(), StoreError> {
        let bytes = encode(RULES, rules)?;
        let txn = self.write_txn()?;
        txn.open_table(ALERT_RULES)?.insert(org, bytes.as_slice())?;
        self.commit(txn)?;
        Ok(())
    }

    /// Removes resolved alerts of `org` that resolved before `resolved_before_ms`, and the
    /// oldest resolved ones beyond the newest `keep_max`. Firing alerts are never removed.
    /// Returns how many were removed.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn prune_alerts(
        &self,
        org: &str,
        resolved_before_ms: i64,
        keep_max: usize,
    ) -> Result<usize, StoreError> {
        let txn = self.write_txn()?;
        let removed = {
            let mut table = txn.open_table(ALERTS)?;
            let (lo, hi) = org_resource_range(org);
            // (resolved at, key) of every resolved alert.
            let mut resolved = Vec::new();
            for entry in table.range(lo.as_str()..hi.as_str())? {
                let (k, v) = entry?;
                let a: AlertRecord = decode(ALERT, k.value(), v.value())?;
                if let Some(at) = a.resolved_at_ms {
                    resolved.push((at, k.value().to_owned()));
                }
            }
            resolved.sort_unstable_by(|a, b| b.cmp(a));
            let doomed: Vec<String> = resolved
                .into_iter()
                .enumerate()
                .filter(|(i, (at, _))| *i >= keep_max || *at < resolved_before_ms)
                .map(|(_, (_, k))| k)
                .collect();
            for k in &doomed {
                table.remove(k.as_str())?;
            }
            doomed.len()
        };
        if removed > 0 {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::engine::{self, AlertState};
    use crate::alerts::record::{AlertStatus, ResolveReason, TimelineEvent};
    use crate::alerts::rules::Severity;
    use crate::store::{IngestItem, LatestSample, ResourceRecord};
    use std::collections::BTreeMap;
    use warden_shared::ids::ResourceId;
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
                "storage_used_pct".to_owned(),
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
                metric: "storage_used_pct".into(),
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
        let (_, events) =
            crate::alerts::service::evaluate_once(&store, ORG, None, NOW + 1000).unwrap();
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
}
