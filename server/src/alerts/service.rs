//! The alert evaluator task: every `alert_interval` it reads the default organisation's rules
//! and resources, runs the engine on a blocking thread, stores what changed in one
//! transaction, and asks Patrol for a run when an alert fires. Hourly it prunes old resolved
//! alerts. Also the store operations that carry alert types or logic (the rule set, applying the
//! engine's events, acknowledging, attaching Patrol's analysis): the store only offers the transactional
//! primitives ([`Store::write_alerts`], [`Store::update_alert`]) they pass that logic into.

use super::engine::{self, AlertEvent, AlertState};
use super::rules::RuleSet;
use crate::model::alert::AlertRecord;
use crate::model::alert::AlertTrigger;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Resolved alerts are kept this long.
pub const RESOLVED_RETENTION_MS: i64 = 30 * 86_400_000;
/// At most this many resolved alerts are kept per organisation (the newest).
pub const RESOLVED_MAX: usize = 10_000;
/// How often old resolved alerts are pruned.
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// One evaluation of `org` at `now_ms`: the engine's memory (rebuilt from the stored firing
/// alerts when `state` is `None`), the rules (the defaults if none are stored), the resources;
/// the events are stored in one transaction before the new memory is returned.
///
/// # Errors
/// Storage failures; the memory is then dropped by the caller and rebuilt from the store, so
/// memory and store never disagree about what fires.
pub fn evaluate_once(
    store: &Store,
    org: &str,
    state: Option<AlertState>,
    now_ms: i64,
) -> Result<(AlertState, Vec<AlertEvent>), StoreError> {
    let mut state = match state {
        Some(s) => s,
        None => {
            let alerts = store.alerts(org)?;
            AlertState::restore(alerts.iter())
        }
    };
    let rules = store.alert_rules(org)?.unwrap_or_default();
    let resources = store.list_resources(org)?;
    let events = engine::evaluate(&mut state, &rules, &resources, now_ms);
    if !events.is_empty() {
        store.apply_alert_events(org, &events)?;
    }
    Ok((state, events))
}

/// The rules of `org` in force: the stored set or the defaults.
///
/// # Errors
/// Storage failures.
pub fn rules_in_force(store: &Store, org: &str) -> Result<RuleSet, StoreError> {
    Ok(store.alert_rules(org)?.unwrap_or_default())
}

impl Store {
    /// The alert rule set of `org`, `None` if it never stored one (the defaults apply).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn alert_rules(&self, org: &str) -> Result<Option<RuleSet>, StoreError> {
        self.alert_rules_document(org)
    }

    /// Replaces the alert rule set of `org` (validate it first).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Encode`].
    pub fn set_alert_rules(&self, org: &str, rules: &RuleSet) -> Result<(), StoreError> {
        self.set_alert_rules_document(org, rules)
    }

    /// Stores one evaluation's events of `org` in one write transaction: `Fired` inserts the
    /// new record, the others update the named alert (an event for an alert that is not
    /// stored, or no longer firing, changes nothing).
    ///
    /// # Errors
    /// Storage failures, [`StoreError::Encode`] and [`StoreError::Corrupt`]; nothing is
    /// written then.
    pub fn apply_alert_events(&self, org: &str, events: &[AlertEvent]) -> Result<(), StoreError> {
        self.write_alerts(org, events, |event, current| {
            Ok(match event {
                AlertEvent::Fired(record) => Some(record.as_ref().clone()),
                _ => current(event.alert_id())?.map(|mut a: AlertRecord| {
                    a.apply(event);
                    a
                }),
            })
        })
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
}

/// Evaluates the default organisation every `every` until shutdown.
pub async fn run(
    store: Arc<Store>,
    patrol: mpsc::Sender<AlertTrigger>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let org = warden_shared::DEFAULT_ORG;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut state: Option<AlertState> = None;
    let mut last_prune_ms = 0_i64;
    info!(interval = %humantime::format_duration(every), "alert evaluator started");
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|v| *v) => return,
            _ = ticker.tick() => {}
        }
        let now = crate::clock::now_ms();
        let s = store.clone();
        let taken = state.take();
        let outcome = tokio::task::spawn_blocking(move || evaluate_once(&s, org, taken, now)).await;
        let events = match outcome {
            Ok(Ok((next, events))) => {
                tracing::trace!(
                    org,
                    tracked = next.tracked(),
                    pending = next.pending(),
                    events = events.len(),
                    "alerts evaluated"
                );
                state = Some(next);
                events
            }
            Ok(Err(e)) => {
                warn!(org, error = %e, "alert evaluation failed; will rebuild from the store");
                continue;
            }
            Err(e) => {
                warn!(org, error = %e, "alert evaluation panicked; will rebuild from the store");
                continue;
            }
        };
        for event in &events {
            report(org, event, &patrol);
        }
        if now - last_prune_ms >= PRUNE_EVERY_MS {
            last_prune_ms = now;
            let s = store.clone();
            let pruned = tokio::task::spawn_blocking(move || {
                s.prune_alerts(org, now - RESOLVED_RETENTION_MS, RESOLVED_MAX)
            })
            .await;
            match pruned {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => info!(org, pruned = n, "old resolved alerts pruned"),
                Ok(Err(e)) => warn!(org, error = %e, "pruning resolved alerts failed"),
                Err(e) => warn!(org, error = %e, "pruning resolved alerts panicked"),
            }
        }
    }
}

/// Logs one event; a new alert also asks Patrol for a run of its organisation.
fn report(org: &str, event: &AlertEvent, patrol: &mpsc::Sender<AlertTrigger>) {
    match event {
        AlertEvent::Fired(a) => {
            info!(
                org,
                alert_id = %a.id,
                rule = %a.rule_id,
                resource = %a.resource_id,
                metric = %a.metric,
                severity = %a.severity,
                value = a.value,
                threshold = a.threshold,
                "alert fired"
            );
            let trigger = AlertTrigger {
                org: org.to_owned(),
                alert_id: a.id.clone(),
                resource_id: a.resource_id.clone(),
            };
            if let Err(e) = patrol.try_send(trigger) {
                // Full: runs are already queued and will look at this resource too. Closed:
                // the Patrol task has stopped (shutdown).
                debug!(alert_id = %a.id, error = %e, "patrol run request dropped");
            }
        }
        AlertEvent::SeverityChanged {
            id,
            from,
            to,
            value,
            ..
        } => info!(
            org,
            alert_id = %id,
            from = %from,
            to = %to,
            value = *value,
            "alert severity changed"
        ),
        AlertEvent::Resolved { id, reason, .. } => info!(
            org,
            alert_id = %id,
            reason = reason.as_str(),
            "alert resolved"
        ),
        AlertEvent::Value { .. } => {}
    }
}
