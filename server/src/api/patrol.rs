//! `/api/ai/patrol/*`: Patrol's findings in the fixed JSON shape (DESIGN §1.1), operator
//! actions on them, suppression rules, and runs.

use super::body::OptionalJson;
use super::query::{ListQuery, NoFilter, envelope};
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::{now_ms, rfc3339_ms};
use crate::model::finding::{Category, Severity};
use crate::model::finding::{DismissReason, Finding, Status, Suppression};
use crate::patrol::run::{Trigger, run, run_settings, saved_settings};
use crate::patrol::settings::PatrolSettings;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

/// A finding of `org` as the contract shapes it, plus lifecycle extras.
fn render(f: &Finding, org: &str) -> Value {
    let d = &f.detection;
    json!({
        "id": f.id,
        "key": d.key,
        "severity": d.severity,
        "category": d.category,
        "resource_id": d.resource_id,
        "resource_name": d.resource_name,
        "resource_type": d.resource_type,
        "node": d.node,
        "title": d.title,
        "description": d.description,
        "recommendation": d.recommendation,
        "evidence": d.evidence,
        "source": d.source,
        "detected_at": rfc3339_ms(f.detected_at_ms),
        "last_seen_at": rfc3339_ms(f.last_seen_at_ms),
        "alert_id": d.alert_id,
        "times_raised": f.times_raised,
        "suppressed": f.suppressed,
        "status": f.status,
        "acknowledged_at": f.acknowledged_at_ms.and_then(rfc3339_ms),
        "resolved_at": f.resolved_at_ms.and_then(rfc3339_ms),
        "dismissed_reason": f.dismissal.map(|d| d.reason),
        "snoozed_until": f.snoozed_until_ms.and_then(rfc3339_ms),
        "capacity_forecast": d.capacity_forecast,
        "root_id": d.root_id,
        "related": d.related,
        "notes": f.notes.iter().map(|(at, text)| json!({"at": rfc3339_ms(*at), "text": text})).collect::<Vec<_>>(),
        "lifecycle": f.history.iter().map(|(at, what)| json!({"at": rfc3339_ms(*at), "event": what})).collect::<Vec<_>>(),
        "org_id": org,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FindingFilter {
    severity: Option<Severity>,
    category: Option<Category>,
    resource_id: Option<String>,
    status: Option<Status>,
    /// Also list findings linked under a root finding (always, with `resource_id`).
    #[serde(default)]
    include_linked: bool,
}

/// `GET /api/ai/patrol/findings`: most severe first, then most recently detected, then by
/// id; filtered, paged.
pub(super) async fn findings(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { filter: f, page }: ListQuery<FindingFilter>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let org = caller.org.clone();
    let all = blocking(move || store.findings(&org)).await?;
    let list: Vec<Finding> = all
        .into_values()
        .filter(|x| f.severity.is_none_or(|s| x.detection.severity == s))
        .filter(|x| f.category.is_none_or(|c| x.detection.category == c))
        .filter(|x| {
            f.resource_id
                .as_ref()
                .is_none_or(|r| &x.detection.resource_id == r)
        })
        .filter(|x| f.status.is_none_or(|s| x.status == s))
        // Storm control: what a root finding explains is listed under it, not beside it.
        .filter(|x| f.include_linked || f.resource_id.is_some() || x.detection.root_id.is_none())
        .collect();
    let (list, next) = page.slice(list, |x| {
        (
            -(x.detection.severity as i64),
            -x.detected_at_ms,
            x.id.clone(),
        )
    })?;
    Ok(envelope(
        list.iter().map(|x| render(x, &caller.org)).collect(),
        next,
    ))
}

/// `POST /api/ai/patrol/run`: runs Patrol now.
pub(super) async fn run_now(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (store, schedule) = (state.store.clone(), state.patrol.clone());
    let org = caller.org.clone();
    let rec = blocking(move || {
        let settings = run_settings(&store, &org, &schedule)?;
        run(&store, &org, &Trigger::Manual, now_ms(), &settings)
    })
    .await?;
    let e = caller.event("patrol.run", format!("patrol-run:{}", rec.id));
    state
        .audit
        .record(e.details(json!({ "new": rec.new, "resolved": rec.resolved })))
        .await;
    Ok(Json(render_run(&rec)))
}

fn render_run(r: &crate::store::PatrolRunRecord) -> Value {
    json!({
        "id": r.id,
        "trigger": r.trigger,
        "started_at": rfc3339_ms(r.started_at_ms),
        "duration_ms": r.duration_ms,
        "resources_checked": r.resources_checked,
        "new": r.new,
        "existing": r.existing,
        "resolved": r.resolved,
        "errors": r.errors,
        "alert_id": r.alert_id,
        "alert_findings": r.alert_findings,
    })
}

/// `GET /api/ai/patrol/runs`: newest first (by run id), paged in the store.
pub(super) async fn runs(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { page, .. }: ListQuery<NoFilter>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let before: Option<u64> = page.after()?;
    let limit = page.limit;
    let (list, more) = blocking(move || store.runs_page(&caller.org, before, limit)).await?;
    let next = more
        .then(|| list.last().map(|r| page.cursor(&r.id)))
        .flatten();
    Ok(envelope(list.iter().map(render_run).collect(), next))
}

/// `GET /api/ai/patrol/status`: the schedule, the last run and when the next is due.
pub(super) async fn status(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let last = blocking(move || store.runs(&caller.org, 1)).await?;
    let schedule = &state.patrol;
    Ok(Json(json!({
        "scheduled": schedule.interval().is_some(),
        "interval_seconds": schedule.interval().map(|d| d.as_secs()),
        "last_run": last.first().map(render_run),
        "next_run_at": schedule.next().and_then(rfc3339_ms),
    })))
}

/// `GET /api/ai/patrol/settings`: the settings in force (the defaults until saved).
pub(super) async fn settings(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (store, schedule) = (state.store.clone(), state.patrol.clone());
    let s = blocking(move || saved_settings(&store, &caller.org, &schedule)).await?;
    Ok(Json(serde_json::to_value(s).unwrap_or_default()))
}

/// `PUT /api/ai/patrol/settings`: replaces the settings (fields left out take their defaults)
/// after checking every field; a bad body changes nothing and names each problem.
pub(super) async fn put_settings(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<PatrolSettings>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let event = caller.event("patrol.settings.update", "patrol-settings");
    let checked = body.map_err(ApiError::from).and_then(|Json(new)| {
        new.validate()
            .map(|(i, _)| (new, i))
            .map_err(|p| ApiError::BadRequest(p.join("; ")))
    });
    let (new, interval) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            state.audit.record(event.failed(e.to_string())).await;
            return Err(e);
        }
    };
    let (store, schedule) = (state.store.clone(), state.patrol.clone());
    let saved = new.clone();
    let org = caller.org.clone();
    let before = blocking(move || {
        let before = saved_settings(&store, &org, &schedule)?;
        store.set_patrol_settings(&org, &saved)?;
        Ok(before)
    })
    .await?;
    state.patrol.set_interval(interval);
    tracing::info!(interval = %new.interval, overrides = new.overrides.len(), "patrol settings changed");
    state
        .audit
        .record(event.details(json!({ "before": before, "after": new })))
        .await;
    Ok(Json(serde_json::to_value(new).unwrap_or_default()))
}

/// The body of an operator action; which fields apply depends on the action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Action {
    reason: Option<DismissReason>,
    until: Option<String>,
    text: Option<String>,
}

/// `POST /api/ai/patrol/findings/{id}/{action}`: `acknowledge`, `dismiss` (`reason`),
/// `snooze` (`until`, RFC 3339), `note` (`text`), `resolve`.
pub(super) async fn act(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    // Actions without parameters (acknowledge, resolve) may have no body at all.
    OptionalJson(a): OptionalJson<Action>,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let mut a_reason = None;
    // Validate before touching the store, so a bad request changes nothing.
    let op: Box<dyn FnOnce(&mut Finding) + Send> = match action.as_str() {
        "acknowledge" => Box::new(move |f| f.acknowledge(now)),
        "dismiss" => {
            let reason = a.reason.ok_or_else(|| {
                ApiError::BadRequest(
                    "dismiss needs a reason: not_an_issue, expected_behavior or will_fix_later"
                        .into(),
                )
            })?;
            a_reason = Some(reason);
            Box::new(move |f| f.dismiss(reason, now))
        }
        "snooze" => {
            let until = a
                .until
                .as_deref()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .filter(|&t| t > now)
                .ok_or_else(|| {
                    ApiError::BadRequest("snooze needs `until`: a future RFC 3339 time".into())
                })?;
            Box::new(move |f| f.snooze(until, now))
        }
        "note" => {
            let text = a
                .text
                .filter(|t| !t.trim().is_empty() && t.len() <= 4096)
                .ok_or_else(|| {
                    ApiError::BadRequest("note needs `text` (1 to 4096 bytes)".into())
                })?;
            Box::new(move |f| f.note(&text, now))
        }
        "resolve" => Box::new(move |f| f.resolve(now)),
        // A rule for this finding's resource and category; the finding is marked now, and
        // later runs keep it marked through the rule.
        "suppress" => Box::new(move |f| f.suppressed = true),
        other => {
            return Err(ApiError::NotFound(format!(
                "no finding action {other:?} (acknowledge, dismiss, suppress, snooze, note, resolve)"
            )));
        }
    };
    let store = state.store.clone();
    let key = id.clone();
    let suppress = action == "suppress";
    let org = caller.org.clone();
    let updated = blocking(move || {
        let Some(f) = store.update_finding(&org, &key, op)? else {
            return Ok(None);
        };
        let rule = suppress
            .then(|| {
                store.add_suppression(
                    &org,
                    &Suppression {
                        resource_id: Some(f.detection.resource_id.clone()),
                        category: Some(f.detection.category),
                    },
                )
            })
            .transpose()?;
        Ok(Some((f, rule)))
    })
    .await?;
    let (f, rule) = updated.ok_or_else(|| ApiError::NotFound(format!("no finding {id}")))?;
    let mut details = json!({
        "resource_id": f.detection.resource_id,
        "key": f.detection.key,
        "status": f.status,
    });
    match action.as_str() {
        "dismiss" => details["reason"] = json!(a_reason),
        "snooze" => details["until"] = json!(f.snoozed_until_ms.and_then(rfc3339_ms)),
        "suppress" => details["suppression_id"] = json!(rule),
        _ => {}
    }
    state
        .audit
        .record(
            caller
                .event(&format!("finding.{action}"), &id)
                .details(details),
        )
        .await;
    let mut v = render(&f, &caller.org);
    if let Some(rule) = rule {
        v["suppression_id"] = json!(rule);
    }
    Ok(Json(v))
}

/// `GET /api/ai/patrol/suppressions`: by id.
pub(super) async fn suppressions(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { page, .. }: ListQuery<NoFilter>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let list = blocking(move || store.suppressions(&caller.org)).await?;
    let (list, next) = page.slice(list, |(id, _)| id.clone())?;
    Ok(envelope(
        list.into_iter()
            .map(|(id, r)| json!({"id": id, "resource_id": r.resource_id, "category": r.category}))
            .collect(),
        next,
    ))
}

/// `POST /api/ai/patrol/suppressions` with `resource_id` and/or `category`.
pub(super) async fn add_suppression(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<Suppression>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(rule) = body?;
    if rule.resource_id.is_none() && rule.category.is_none() {
        return Err(ApiError::BadRequest(
            "a suppression needs resource_id, category or both".into(),
        ));
    }
    let store = state.store.clone();
    let shown = rule.clone();
    let org = caller.org.clone();
    let id = blocking(move || store.add_suppression(&org, &rule)).await?;
    let details = json!({ "resource_id": shown.resource_id, "category": shown.category });
    state
        .audit
        .record(caller.event("suppression.create", &id).details(details))
        .await;
    Ok(Json(
        json!({"id": id, "resource_id": shown.resource_id, "category": shown.category}),
    ))
}

/// `DELETE /api/ai/patrol/suppressions/{id}`.
pub(super) async fn remove_suppression(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let org = caller.org.clone();
    if blocking(move || store.remove_suppression(&org, &key)).await? {
        state
            .audit
            .record(caller.event("suppression.delete", &id))
            .await;
        Ok(Json(json!({"removed": id})))
    } else {
        Err(ApiError::NotFound(format!("no suppression {id}")))
    }
}
