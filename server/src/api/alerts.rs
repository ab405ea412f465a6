//! `/api/alerts*`: alerts (filtered, paginated), one alert with its timeline, acknowledge, and
//! the alert rule set (rules and per-resource overrides), validated field by field.

use super::body::OptionalJson;
use super::query::{ListQuery, envelope};
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::alerts::rules::RuleSet;
use crate::clock::{now_ms, rfc3339_ms};
use crate::model::alert::Severity;
use crate::model::alert::{AlertRecord, AlertStatus, TimelineEntry};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

/// Longest acknowledgement comment.
const MAX_COMMENT: usize = 1024;

fn render_entry(e: &TimelineEntry) -> Value {
    json!({
        "at": rfc3339_ms(e.at_ms),
        "event": e.event,
        "detail": e.detail,
        "finding_ids": e.finding_ids,
    })
}

/// An alert as the API shows it; with `timeline` for the one-alert routes.
fn render(a: &AlertRecord, timeline: bool) -> Value {
    let mut v = json!({
        "id": a.id,
        "rule_id": a.rule_id,
        "rule_name": a.rule_name,
        "resource_id": a.resource_id,
        "resource_name": a.resource_name,
        "resource_type": a.resource_type,
        "node": a.node,
        "metric": a.metric,
        "op": a.op,
        "severity": a.severity,
        "state": a.status,
        "acknowledged": a.acknowledged_at_ms.is_some(),
        "value": a.value,
        "value_at": rfc3339_ms(a.value_at_ms),
        "threshold": a.threshold,
        "for_s": a.for_s,
        "hysteresis": a.hysteresis,
        "fired_at": rfc3339_ms(a.fired_at_ms),
        "acknowledged_at": a.acknowledged_at_ms.and_then(rfc3339_ms),
        "resolved_at": a.resolved_at_ms.and_then(rfc3339_ms),
        "resolve_reason": a.resolve_reason,
        "finding_ids": a.finding_ids,
        "org_id": a.org_id,
    });
    if timeline {
        v["timeline"] = a.timeline.iter().map(render_entry).collect();
    }
    v
}

/// `state` filter values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StateFilter {
    /// Firing alerts (acknowledged or not).
    #[default]
    Firing,
    /// Resolved alerts.
    Resolved,
    /// Both.
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertFilter {
    #[serde(default)]
    state: StateFilter,
    severity: Option<Severity>,
    resource_id: Option<String>,
    rule_id: Option<String>,
    acknowledged: Option<bool>,
}

impl AlertFilter {
    fn matches(&self, a: &AlertRecord) -> bool {
        let state = match self.state {
            StateFilter::Firing => a.status == AlertStatus::Firing,
            StateFilter::Resolved => a.status == AlertStatus::Resolved,
            StateFilter::All => true,
        };
        state
            && self.severity.is_none_or(|s| a.severity == s)
            && self
                .resource_id
                .as_ref()
                .is_none_or(|r| &a.resource_id == r)
            && self.rule_id.as_ref().is_none_or(|r| &a.rule_id == r)
            && self
                .acknowledged
                .is_none_or(|ack| a.acknowledged_at_ms.is_some() == ack)
    }
}

/// `GET /api/alerts`: firing ones first, then most severe, then newest, then by id;
/// filtered, paged.
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { filter: f, page }: ListQuery<AlertFilter>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let mut all = blocking(move || store.alerts(&caller.org)).await?;
    all.retain(|a| f.matches(a));
    let (list, next) = page.slice(all, |a| {
        (
            a.status != AlertStatus::Firing,
            -(a.severity as i64),
            -a.fired_at_ms,
            a.id.clone(),
        )
    })?;
    Ok(envelope(
        list.iter().map(|a| render(a, false)).collect(),
        next,
    ))
}

async fn find(state: &ApiState, org: &str, id: String) -> Result<AlertRecord, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let org = org.to_owned();
    blocking(move || store.alert(&org, &key))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))
}

/// `GET /api/alerts/{id}`: the alert with its timeline.
pub(super) async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&find(&state, &caller.org, id).await?, true)))
}

/// `GET /api/alerts/{id}/timeline`: `{id, state, timeline}`.
pub(super) async fn timeline(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = find(&state, &caller.org, id).await?;
    Ok(Json(json!({
        "id": a.id,
        "state": a.status,
        "timeline": a.timeline.iter().map(render_entry).collect::<Vec<_>>(),
    })))
}

/// The optional body of an acknowledgement.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Acknowledge {
    comment: Option<String>,
}

/// `POST /api/alerts/{id}/acknowledge` (optional body `{"comment": "..."}`): marks it the
/// first time; again answers the alert unchanged.
pub(super) async fn acknowledge(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(ack): OptionalJson<Acknowledge>,
) -> Result<Json<Value>, ApiError> {
    let comment = ack.comment.map(|c| c.trim().to_owned());
    if comment
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > MAX_COMMENT || c.chars().any(char::is_control))
    {
        return Err(ApiError::BadRequest(format!(
            "comment must be 1 to {MAX_COMMENT} bytes of printable text"
        )));
    }
    let store = state.store.clone();
    let key = id.clone();
    let now = now_ms();
    let details = json!({ "comment": comment });
    let org = caller.org.clone();
    let a = blocking(move || store.acknowledge_alert(&org, &key, now, comment.as_deref()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    let mut details = details;
    details["resource_id"] = json!(a.resource_id);
    details["rule_id"] = json!(a.rule_id);
    state
        .audit
        .record(caller.event("alert.acknowledge", &id).details(details))
        .await;
    Ok(Json(render(&a, true)))
}

/// `GET /api/alerts/rules`: the rule set in force (the defaults until one is stored).
pub(super) async fn rules(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<RuleSet>, ApiError> {
    let store = state.store.clone();
    Ok(Json(
        blocking(move || crate::alerts::service::rules_in_force(&store, &caller.org)).await?,
    ))
}

/// `PUT /api/alerts/rules`: replaces the whole rule set after validating it; answers it.
/// The evaluator uses it from its next evaluation.
pub(super) async fn put_rules(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<RuleSet>, JsonRejection>,
) -> Result<Json<RuleSet>, ApiError> {
    let event = caller.event("alert.rules.update", "alert-rules");
    let checked = body.map_err(ApiError::from).and_then(|Json(set)| {
        set.validate()
            .map(|()| set)
            .map_err(|p| ApiError::BadRequest(p.join("; ")))
    });
    let set = match checked {
        Ok(set) => set,
        Err(e) => {
            state.audit.record(event.failed(e.to_string())).await;
            return Err(e);
        }
    };
    let store = state.store.clone();
    let stored = set.clone();
    let org = caller.org.clone();
    let before = blocking(move || {
        let before = crate::alerts::service::rules_in_force(&store, &org)?;
        store.set_alert_rules(&org, &stored)?;
        Ok(before)
    })
    .await?;
    state
        .audit
        .record(event.details(json!({ "before": before, "after": set })))
        .await;
    tracing::info!(
        rules = set.rules.len(),
        overrides = set.overrides.len(),
        "alert rules replaced"
    );
    Ok(Json(set))
}
