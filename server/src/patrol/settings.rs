//! Patrol's settings as operators see them (`GET/PUT /api/ai/patrol/settings`, stored per
//! organisation): the schedule, thresholds, per-resource threshold overrides and detector
//! tuning, their validation into the [`RunSettings`] a run uses, and the typed store access
//! to them (the store keeps the document opaque).

use super::anomaly::AnomalyConfig;
use super::forecast::ForecastConfig;
use super::rules::{Levels, Thresholds};
use super::run::RunSettings;
use super::silence::SilenceConfig;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use warden_shared::ids::ResourceId;

/// Shortest scheduled interval.
pub const INTERVAL_MIN: Duration = Duration::from_secs(600);
/// Longest scheduled interval.
pub const INTERVAL_MAX: Duration = Duration::from_secs(7 * 86_400);

/// Parses a Patrol interval: `"0"` turns scheduled runs off, otherwise a duration from 10
/// minutes to 7 days (`"6h"`, `"90m"`, `"2d"`).
///
/// # Errors
/// A message naming the accepted range.
pub fn parse_interval(v: &str) -> Result<Option<Duration>, String> {
    match v.trim() {
        "0" | "0s" => Ok(None),
        t => match humantime::parse_duration(t) {
            Ok(d) if (INTERVAL_MIN..=INTERVAL_MAX).contains(&d) => Ok(Some(d)),
            _ => Err(format!(
                "interval {v:?} must be from 10m to 7d, or 0 to disable scheduled runs"
            )),
        },
    }
}

/// Renders an interval the way [`parse_interval`] reads it.
pub fn format_interval(d: Option<Duration>) -> String {
    d.map_or_else(|| "0".into(), |d| humantime::format_duration(d).to_string())
}

/// Everything an operator can tune. Fields left out of a `PUT` take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolSettings {
    /// Time between scheduled runs, e.g. `"6h"`; `"0"` = only manual and alert runs.
    pub interval: String,
    /// Thresholds of the heuristics.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Per-resource thresholds by canonical resource id: each a partial `thresholds` object
    /// whose fields replace the organisation's for that resource only.
    #[serde(default)]
    pub overrides: BTreeMap<String, Value>,
    /// Capacity forecasts.
    #[serde(default)]
    pub forecast: ForecastConfig,
    /// Anomaly baselines.
    #[serde(default)]
    pub anomaly: AnomalyConfig,
    /// Silence / dead-man detection.
    #[serde(default)]
    pub silence: SilenceConfig,
    /// How long a condition must stay absent before its finding resolves, minutes.
    #[serde(default = "default_confirm_minutes")]
    pub confirm_minutes: u32,
}

fn default_confirm_minutes() -> u32 {
    15
}

impl PatrolSettings {
    /// The defaults, with the server config's interval.
    pub fn with_interval(interval: Option<Duration>) -> Self {
        Self {
            interval: format_interval(interval),
            thresholds: Thresholds::default(),
            overrides: BTreeMap::new(),
            forecast: ForecastConfig::default(),
            anomaly: AnomalyConfig::default(),
            silence: SilenceConfig::default(),
            confirm_minutes: default_confirm_minutes(),
        }
    }

    /// Checks everything and returns the schedule and what runs use, or every problem found.
    ///
    /// # Errors
    /// One message per problem, each naming the field.
    pub fn validate(&self) -> Result<(Option<Duration>, RunSettings), Vec<String>> {
        let mut problems = Vec::new();
        let interval = parse_interval(&self.interval).unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        check_thresholds("thresholds", &self.thresholds, &mut problems);
        let mut overrides = BTreeMap::new();
        for (id, patch) in &self.overrides {
            let field = format!("overrides.{id}");
            if let Err(e) = ResourceId::new(id) {
                problems.push(format!("{field}: not a resource id: {e}"));
                continue;
            }
            match merged(&self.thresholds, patch) {
                Ok(t) => {
                    check_thresholds(&field, &t, &mut problems);
                    overrides.insert(id.clone(), t);
                }
                Err(e) => problems.push(format!("{field}: {e}")),
            }
        }
        let f = &self.forecast;
        if !(1.0..=720.0).contains(&f.min_span_hours) {
            problems.push("forecast.min_span_hours must be from 1 to 720".into());
        }
        if !(4..=96).contains(&f.min_buckets) {
            problems.push("forecast.min_buckets must be from 4 to 96".into());
        }
        if !(1.0..=3650.0).contains(&f.horizon_days) {
            problems.push("forecast.horizon_days must be from 1 to 3650".into());
        }
        self.silence.check("silence", &mut problems);
        self.anomaly.check(&mut problems);
        if !(1..=7 * 24 * 60).contains(&self.confirm_minutes) {
            problems.push("confirm_minutes must be from 1 to 10080 (7 days)".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok((
            interval,
            RunSettings {
                thresholds: self.thresholds.clone(),
                overrides,
                forecast: self.forecast,
                anomaly: self.anomaly.clone(),
                silence: self.silence.clone(),
                confirm_ms: i64::from(self.confirm_minutes) * 60_000,
            },
        ))
    }
}

/// `base` with the fields of the partial `patch` replaced (nested objects merge field by
/// field, so `{"storage": {"critical": 95}}` keeps the storage warning level).
fn merged(base: &Thresholds, patch: &Value) -> Result<Thresholds, String> {
    fn merge(into: &mut Value, patch: &Value) {
        match (into, patch) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            a.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (slot, v) => *slot = v.clone(),
        }
    }
    if !patch.is_object() {
        return Err("must be an object of threshold fields".into());
    }
    let mut v = serde_json::to_value(base).map_err(|e| e.to_string())?;
    merge(&mut v, patch);
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Range and order checks on every field of `t` (a percentage lies in 0..=100, a warning level
/// comes before its critical level), reported under `field`.
fn check_thresholds(field: &str, t: &Thresholds, problems: &mut Vec<String>) {
    let v = serde_json::to_value(t).unwrap_or_default();
    let Value::Object(fields) = v else { return };
    for (name, value) in &fields {
        let at = format!("{field}.{name}");
        if let Ok(l) = serde_json::from_value::<Levels>(value.clone()) {
            if l.warning >= l.critical {
                problems.push(format!(
                    "{at}: warning ({}) must be below critical ({})",
                    l.warning, l.critical
                ));
            }
            // Every level is a percentage except temperatures.
            let max = if name.contains("temp") { 200.0 } else { 100.0 };
            for (which, x) in [("warning", l.warning), ("critical", l.critical)] {
                if !(0.0..=max).contains(&x) {
                    problems.push(format!("{at}.{which} must be a number from 0 to {max}"));
                }
            }
        } else if let Some(x) = value.as_f64() {
            let bad = !x.is_finite()
                || x < 0.0
                || (name.ends_with("_pct") || name.ends_with("_watch")) && x > 100.0;
            if bad {
                problems.push(format!("{at} = {x} is out of range"));
            }
        }
    }
    if !(60_000..=86_400_000).contains(&t.window_ms) {
        problems.push(format!(
            "{field}.window_ms must be from 60000 (1 minute) to 86400000 (1 day)"
        ));
    }
    for (watch, name, level) in [
        (t.storage_watch, "storage", t.storage.warning),
        (t.guest_disk_watch, "guest_disk", t.guest_disk.warning),
    ] {
        if watch >= level {
            problems.push(format!(
                "{field}.{name}_watch ({watch}) must be below {name}.warning ({level})"
            ));
        }
    }
    if t.cert_critical_days >= t.cert_warning_days {
        problems.push(format!(
            "{field}.cert_critical_days ({}) must be below cert_warning_days ({})",
            t.cert_critical_days, t.cert_warning_days
        ));
    }
}

impl Store {
    /// The Patrol settings an operator saved for `org`, if any.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn patrol_settings(&self, org: &str) -> Result<Option<PatrolSettings>, StoreError> {
        self.patrol_settings_document(org)
    }

    /// Saves the Patrol settings of `org`.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Encode`].
    pub fn set_patrol_settings(&self, org: &str, s: &PatrolSettings) -> Result<(), StoreError> {
        self.set_patrol_settings_document(org, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(v: Value) -> Result<(Option<Duration>, RunSettings), Vec<String>> {
        serde_json::from_value::<PatrolSettings>(v)
            .map_err(|e| vec![e.to_string()])?
            .validate()
    }

    #[test]
    fn defaults_validate_and_round_trip() {
        let s = PatrolSettings::with_interval(Some(Duration::from_secs(6 * 3600)));
        assert_eq!(s.interval, "6h");
        let (interval, run) = s.validate().unwrap();
        assert_eq!(interval, Some(Duration::from_secs(21_600)));
        assert_eq!(run, RunSettings::default());
        let back: PatrolSettings =
            serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        // Only the interval is required; everything else takes its default.
        let (interval, run) = put(json!({"interval": "0"})).unwrap();
        assert_eq!((interval, run), (None, RunSettings::default()));
    }

    #[test]
    fn overrides_replace_only_the_fields_they_name_for_their_resource() {
        let (_, run) = put(json!({
            "interval": "1h",
            "thresholds": {"storage": {"warning": 82.0, "critical": 91.0}},
            "overrides": {"storage:pve1/backup": {"storage": {"critical": 98.0}}},
        }))
        .unwrap();
        assert_eq!(run.thresholds.storage.warning, 82.0);
        let o = &run.overrides["storage:pve1/backup"];
        assert_eq!(o.storage.critical, 98.0);
        assert_eq!(
            o.storage.warning, 82.0,
            "the org's level, not the default's"
        );
        assert_eq!(o.node, run.thresholds.node);
    }

    #[test]
    fn every_problem_is_named() {
        let err = put(json!({
            "interval": "5m",
            "thresholds": {"node": {"warning": 90.0, "critical": 85.0}, "window_ms": 1000},
            "overrides": {
                "no colon": {"node": {"warning": 1.0}},
                "vm:demo/100": {"guest_memory": {"critical": 140.0}},
                "vm:demo/101": {"nonsense": 1},
            },
            "confirm_minutes": 0,
        }))
        .unwrap_err()
        .join("\n");
        for needle in [
            "interval \"5m\" must be from 10m to 7d",
            "thresholds.node: warning (90) must be below critical (85)",
            "thresholds.window_ms must be from 60000",
            "overrides.no colon: not a resource id",
            "overrides.vm:demo/100.guest_memory.critical must be a number from 0 to 100",
            "overrides.vm:demo/101: unknown field `nonsense`",
            "confirm_minutes must be from 1",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
        let err = put(json!({"interval": "6h", "bogus": true})).unwrap_err();
        assert!(err[0].contains("unknown field `bogus`"), "{err:?}");
    }
}
