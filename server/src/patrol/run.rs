//! One Patrol run against the store: snapshot, detectors, lifecycle, and the run record. The
//! IO edge around the pure cores; callers run it on a blocking thread. Also the Patrol task
//! ([`serve`]): runs on the schedule and when a firing alert asks.

use super::anomaly::{self, AnomalyConfig};
use super::correlate;
use super::forecast::{self, ForecastConfig};
use super::lifecycle;
use super::rules::{self, Thresholds};
use super::settings::PatrolSettings;
use super::silence::{self, SilenceConfig};
use crate::model::ResourceRecord;
use crate::model::alert::AlertTrigger;
use crate::model::alert::{AlertRecord, Op as AlertOp, Severity as AlertSeverity};
use crate::model::finding::{Category, Detection, Severity};
use crate::store::{PatrolRunRecord, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// The schedule: the interval in force (the saved settings', else the server config's), when
/// the next run is due, and a wake-up for the Patrol task when the interval changes.
#[derive(Debug, Default)]
pub struct Schedule {
    /// The server config's interval, used until settings are saved.
    pub config_interval: Option<Duration>,
    /// The interval in force, ms; 0 = runs only on demand.
    interval_ms: AtomicI64,
    /// When the next scheduled run is due, ms since the epoch; 0 = none.
    next_run_ms: AtomicI64,
    /// Signalled when the interval changes.
    pub changed: tokio::sync::Notify,
}

impl Schedule {
    /// A schedule running every `interval` (or never) until settings say otherwise.
    pub fn new(interval: Option<Duration>) -> Self {
        let s = Self {
            config_interval: interval,
            ..Self::default()
        };
        s.set_interval(interval);
        s
    }

    /// The interval in force.
    pub fn interval(&self) -> Option<Duration> {
        u64::try_from(self.interval_ms.load(Ordering::Relaxed))
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    }

    /// Changes the interval and wakes the Patrol task to reschedule.
    pub fn set_interval(&self, interval: Option<Duration>) {
        let ms = interval.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.interval_ms.store(ms, Ordering::Relaxed);
        if interval.is_none() {
            self.next_run_ms.store(0, Ordering::Relaxed);
        }
        self.changed.notify_one();
    }

    /// Records when the next run is due.
    pub fn set_next(&self, at_ms: i64) {
        self.next_run_ms.store(at_ms, Ordering::Relaxed);
    }

    /// When the next run is due, if one is scheduled.
    pub fn next(&self) -> Option<i64> {
        Some(self.next_run_ms.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }
}

/// The settings of `org`: the saved ones, else the defaults with `schedule`'s config interval.
///
/// # Errors
/// Storage failures.
pub fn saved_settings(
    store: &Store,
    org: &str,
    schedule: &Schedule,
) -> Result<PatrolSettings, StoreError> {
    Ok(store
        .patrol_settings(org)?
        .unwrap_or_else(|| PatrolSettings::with_interval(schedule.config_interval)))
}

/// What runs of `org` use now. Saved settings were validated when saved; should they no
/// longer validate (a newer version with stricter checks), runs fall back to the defaults and
/// say so in the log rather than stop.
///
/// # Errors
/// Storage failures.
pub fn run_settings(
    store: &Store,
    org: &str,
    schedule: &Schedule,
) -> Result<RunSettings, StoreError> {
    match saved_settings(store, org, schedule)?.validate() {
        Ok((_, settings)) => Ok(settings),
        Err(problems) => {
            tracing::error!(org, problems = ?problems, "saved patrol settings are invalid; using the defaults");
            Ok(RunSettings::default())
        }
    }
}

/// What a run uses.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Threshold heuristics.
    pub thresholds: Thresholds,
    /// Per-resource thresholds, by canonical resource id, in place of `thresholds`.
    pub overrides: BTreeMap<String, Thresholds>,
    /// Capacity forecasts.
    pub forecast: ForecastConfig,
    /// Anomaly baselines.
    pub anomaly: AnomalyConfig,
    /// Silence / dead-man detection.
    pub silence: SilenceConfig,
    /// How long a condition must stay absent before its finding resolves, ms.
    pub confirm_ms: i64,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            overrides: BTreeMap::new(),
            forecast: ForecastConfig::default(),
            anomaly: AnomalyConfig::default(),
            silence: SilenceConfig::default(),
            confirm_ms: 15 * 60_000,
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The interval elapsed.
    Schedule,
    /// `POST /api/ai/patrol/run`.
    Manual,
    /// An alert fired; what the run finds on its resource carries its id.
    Alert(AlertTrigger),
}

impl Trigger {
    /// The word runs are recorded with: `schedule`, `manual`, `alert`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
            Self::Alert(_) => "alert",
        }
    }
}

/// Runs Patrol once for `org` at `now_ms` and records the run.
///
/// # Errors
/// Storage failures; nothing is half-written (findings are saved in one transaction).
pub fn run(
    store: &Store,
    org: &str,
    trigger: &Trigger,
    now_ms: i64,
    settings: &RunSettings,
) -> Result<PatrolRunRecord, StoreError> {
    let started = Instant::now();
    // The heuristics' window with room to spare, and the hour container restarts are counted in.
    let lookback = (settings.thresholds.window_ms * 2).max(3_600_000);
    let snap = super::snapshot(store, org, now_ms, lookback)?;
    let mut resources_checked: BTreeMap<String, u32> = BTreeMap::new();
    for r in &snap.resources {
        *resources_checked.entry(r.kind.clone()).or_default() += 1;
    }
    let mut detections = rules::detect(&snap, &settings.thresholds, &settings.overrides);
    detections.extend(forecast::detect(&snap, &settings.forecast));
    detections.extend(anomaly::detect(&snap, &settings.anomaly));
    detections.extend(silence::detect(&snap, &settings.silence));
    detections.extend(super::selfwatch::detect(&snap));
    let mut detections = correlate::correlate(&snap, &settings.thresholds, detections);
    let mut alert_findings = Vec::new();
    if let Trigger::Alert(a) = trigger {
        // The detectors judge over their own windows; when they see nothing (yet) on the
        // alert's resource, the alert's own evidence is the finding.
        if !detections.iter().any(|d| d.resource_id == a.resource_id)
            && let Some(alert) = store.alert(org, &a.alert_id)?.filter(|x| x.firing())
            && let Some(r) = snap.resources.iter().find(|r| r.id == a.resource_id)
        {
            detections.push(from_alert(&alert, r));
        }
        for d in detections
            .iter_mut()
            .filter(|d| d.resource_id == a.resource_id)
        {
            d.alert_id = Some(a.alert_id.clone());
            alert_findings.push(d.finding_id());
        }
    }
    let mut findings = store.findings(org)?;
    let rules: Vec<_> = store
        .suppressions(org)?
        .into_iter()
        .map(|(_, rule)| rule)
        .collect();
    let counts = lifecycle::apply(
        &mut findings,
        detections,
        &rules,
        now_ms,
        settings.confirm_ms,
    );
    store.save_findings(org, &findings)?;
    let mut record = PatrolRunRecord {
        id: 0,
        trigger: trigger.name().to_owned(),
        started_at_ms: now_ms,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        resources_checked,
        new: counts.new,
        existing: counts.existing,
        resolved: counts.resolved,
        errors: Vec::new(),
        alert_id: match trigger {
            Trigger::Alert(a) => Some(a.alert_id.clone()),
            _ => None,
        },
        alert_findings,
    };
    record.id = store.record_run(org, record.clone())?;
    Ok(record)
}

/// The finding of a firing alert on `r`: its rule, value and threshold as the evidence.
fn from_alert(a: &AlertRecord, r: &ResourceRecord) -> Detection {
    let severity = match a.severity {
        AlertSeverity::Warning => Severity::Warning,
        AlertSeverity::Critical => Severity::Critical,
    };
    let category = if rules::capacity_metric(&r.kind).is_some() {
        Category::Capacity
    } else {
        Category::Performance
    };
    let mut d = Detection::on(r, &format!("alert-{}", a.rule_id), severity, category);
    let side = match a.op {
        AlertOp::Above => "above",
        AlertOp::Below => "below",
    };
    d.title = format!("{}: {} at {:.1}", a.rule_name, a.metric, a.value);
    d.description = format!(
        "Alert {} fired: {} of {} stayed {side} {:.1} for {} s.",
        a.rule_name, a.metric, r.name, a.threshold, a.for_s
    );
    d.recommendation = format!(
        "Look at what drives {} on {} now (the alert's timeline has the history); \
         acknowledge the alert once someone is on it.",
        a.metric, r.name
    );
    d.evidence = format!(
        "{} = {:.1} ({side} {:.1} for >= {} s, alert {})",
        a.metric, a.value, a.threshold, a.for_s, a.id
    );
    d
}

/// Runs Patrol on the schedule (the first run one interval after start; a changed interval
/// counts from the last scheduled run) and whenever a firing alert asks for a run, until
/// shutdown. Each run uses the organisation's saved settings.
pub async fn serve(
    store: Arc<Store>,
    schedule: Arc<Schedule>,
    mut alerts: tokio::sync::mpsc::Receiver<AlertTrigger>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::time::Instant;
    let mut since = Instant::now();
    loop {
        let deadline = schedule.interval().map(|every| since + every);
        if let Some(at) = deadline {
            let wait = i64::try_from(at.saturating_duration_since(Instant::now()).as_millis())
                .unwrap_or(i64::MAX);
            schedule.set_next(crate::clock::now_ms().saturating_add(wait));
        }
        let sleep = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let (org, trigger) = tokio::select! {
            _ = shutdown.wait_for(|v| *v) => return,
            () = schedule.changed.notified() => continue,
            () = sleep => {
                since = Instant::now();
                (warden_shared::DEFAULT_ORG.to_owned(), Trigger::Schedule)
            }
            Some(alert) = alerts.recv() => {
                if !super::alert_runs_enabled() {
                    continue;
                }
                (alert.org.clone(), Trigger::Alert(alert))
            }
        };
        let (store, schedule) = (store.clone(), schedule.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let settings = run_settings(&store, &org, &schedule)?;
            let r = run(&store, &org, &trigger, crate::clock::now_ms(), &settings)?;
            // What the run found on the alert's resource is the alert's analysis.
            if let Trigger::Alert(a) = &trigger {
                store.attach_alert_analysis(
                    &a.org,
                    &a.alert_id,
                    &r.alert_findings,
                    crate::clock::now_ms(),
                )?;
            }
            Ok::<_, StoreError>(r)
        })
        .await;
        match outcome {
            Ok(Ok(r)) => tracing::info!(
                run = r.id,
                trigger = %r.trigger,
                new = r.new,
                existing = r.existing,
                resolved = r.resolved,
                duration_ms = r.duration_ms,
                "patrol run finished"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "patrol run failed"),
            Err(e) => tracing::error!(error = %e, "patrol run panicked"),
        }
    }
}
