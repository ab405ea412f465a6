//! `/api/webhooks*`: audit webhook endpoints (create, list, read, update, delete), their
//! per-attempt delivery log, and their dead letters with a manual retry. Every change is
//! audited (`webhook.create`, `webhook.update`, `webhook.delete`, `webhook.retry`) without the
//! secret; the secret is returned once, by the create call that generated it, and otherwise
//! shown only as `secret_set`. Delivery itself is `webhooks/`.

use super::body::OptionalJson;
use super::query::{ListQuery, NoFilter, envelope};
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::rfc3339_ms;
use crate::store::{DeadLetter, DeliveryLog, Requeued, WebhookEndpoint, WebhookState};
use crate::webhooks::validate;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

/// The webhook routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/webhooks", post(create).get(list))
        .route(
            "/api/webhooks/{id}",
            get(get_one).put(update).delete(remove),
        )
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
        .route("/api/webhooks/{id}/dead-letters", get(dead_letters))
        .route(
            "/api/webhooks/{id}/dead-letters/{delivery_seq}/retry",
            post(retry),
        )
}

/// Settings of `POST` (all but `url` optional) and `PUT` (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: Option<String>,
    secret: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
    description: Option<String>,
}

impl Settings {
    /// Every problem, in one list.
    fn problems(&self, creating: bool) -> Vec<String> {
        let mut p = Vec::new();
        match &self.url {
            Some(u) => validate::url(u, &mut p),
            None if creating => p.push("url is required".into()),
            None => {}
        }
        if let Some(s) = &self.secret {
            validate::secret(s, &mut p);
        }
        if let Some(e) = &self.events {
            validate::events(e, &mut p);
        }
        if let Some(d) = &self.description {
            validate::description(d, &mut p);
        }
        p
    }

    /// Names of the settings present (for the audit details).
    fn named(&self) -> Vec<&'static str> {
        [
            ("url", self.url.is_some()),
            ("secret", self.secret.is_some()),
            ("events", self.events.is_some()),
            ("enabled", self.enabled.is_some()),
            ("description", self.description.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect()
    }
}

fn bad(problems: &[String]) -> ApiError {
    ApiError::BadRequest(format!("invalid webhook settings: {}", problems.join("; ")))
}

/// The URL without query and fragment, for audit details (a query may carry a credential).
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

fn render(ep: &WebhookEndpoint, st: &WebhookState, dead: usize) -> Value {
    json!({
        "id": ep.id,
        "org_id": ep.org_id,
        "url": ep.url,
        "events": ep.events,
        "enabled": ep.enabled,
        "description": ep.description,
        "secret_set": !ep.secret.is_empty(),
        "created_at": rfc3339_ms(ep.created_at_ms),
        "updated_at": rfc3339_ms(ep.updated_at_ms),
        "status": {
            "next_delivery_seq": st.next_delivery_seq,
            "audit_seq": st.event_seq,
            "checkpoint_tree_size": st.checkpoint,
            "pending_attempts": st.retry.attempts,
            "next_retry_at": st.retry.retry_at_ms.and_then(rfc3339_ms),
            "last_error": st.retry.last_error,
            "delivered": st.delivered,
            "failed_attempts": st.failed_attempts,
            "dead_lettered": st.dead_lettered,
            "dead_letters": dead,
            "last_success_at": st.last_success_ms.and_then(rfc3339_ms),
            "last_failure_at": st.last_failure_ms.and_then(rfc3339_ms),
        },
    })
}

fn render_log(l: &DeliveryLog) -> Value {
    json!({
        "delivery_seq": l.delivery_seq,
        "type": l.kind,
        "audit_seq": l.audit_seq,
        "tree_size": l.tree_size,
        "attempt": l.attempt,
        "retry": l.retry,
        "at": rfc3339_ms(l.at_ms),
        "status": l.status,
        "error": l.error,
        "duration_ms": l.duration_ms,
        "outcome": l.outcome,
    })
}

fn render_dead(d: &DeadLetter) -> Value {
    json!({
        "delivery_seq": d.delivery_seq,
        "type": d.kind,
        "audit_seq": d.audit_seq,
        "tree_size": d.tree_size,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "dead_at": rfc3339_ms(d.dead_at_ms),
    })
}

fn render_requeued(r: &Requeued) -> Value {
    let mut v = render_dead(&r.letter);
    v["requeued_at"] = rfc3339_ms(r.requeued_at_ms).into();
    v["retry_attempts"] = r.retry.attempts.into();
    v["last_error"] = r
        .retry
        .last_error
        .clone()
        .unwrap_or_else(|| r.letter.last_error.clone())
        .into();
    v
}

/// `POST /api/webhooks`.
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    OptionalJson(s): OptionalJson<Settings>,
) -> Result<Json<Value>, ApiError> {
    let problems = s.problems(true);
    if !problems.is_empty() {
        state
            .audit
            .record(
                caller
                    .event("webhook.create", "-")
                    .failed(format!("invalid settings: {}", problems.join("; "))),
            )
            .await;
        return Err(bad(&problems));
    }
    let generated = s.secret.is_none();
    let plain = s.secret.clone().unwrap_or_else(validate::generate_secret);
    let secret = seal(&state, &plain);
    let now = crate::clock::now_ms();
    let ep = WebhookEndpoint {
        id: hex::encode(rand::random::<[u8; 8]>()),
        org_id: caller.org.clone(),
        url: s.url.clone().unwrap_or_default(),
        secret,
        events: s.events.clone().unwrap_or_default(),
        enabled: s.enabled.unwrap_or(true),
        description: s.description.clone().unwrap_or_default(),
        created_at_ms: now,
        updated_at_ms: now,
        revision: 1,
    };
    let store = state.store.clone();
    let rec = ep.clone();
    let st = blocking(move || store.webhook_create(&rec)).await?;
    info!(endpoint_id = %ep.id, enabled = ep.enabled, "webhook endpoint created");
    state
        .audit
        .record(caller.event("webhook.create", &ep.id).details(json!({
            "url": redacted(&ep.url),
            "events": ep.events,
            "enabled": ep.enabled,
            "secret": if generated { "generated" } else { "provided" },
            "starts_after_seq": st.event_seq,
        })))
        .await;
    let mut v = render(&ep, &st, 0);
    if generated {
        // The only time the server shows a secret: the one it just made.
        v["secret"] = plain.into();
    }
    Ok(Json(v))
}

/// `GET /api/webhooks`: by id.
async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { page, .. }: ListQuery<NoFilter>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let all = blocking(move || store.webhook_list(&caller.org)).await?;
    let (list, next) = page.slice(all, |(e, _, _)| e.id.clone())?;
    Ok(envelope(
        list.iter().map(|(e, s, d)| render(e, s, *d)).collect(),
        next,
    ))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook endpoint {id}"))
}

/// `GET /api/webhooks/{id}`.
async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let (e, s, d) = blocking(move || store.webhook_get(&caller.org, &key))
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(render(&e, &s, d)))
}

/// `PUT /api/webhooks/{id}`: changes the settings given, keeps the others.
async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(s): OptionalJson<Settings>,
) -> Result<Json<Value>, ApiError> {
    let problems = s.problems(false);
    let event = caller.event("webhook.update", &id);
    if !problems.is_empty() {
        state
            .audit
            .record(event.failed(format!("invalid settings: {}", problems.join("; "))))
            .await;
        return Err(bad(&problems));
    }
    let changed = s.named();
    let sealed = s.secret.as_deref().map(|x| seal(&state, x));
    let store = state.store.clone();
    let key = id.clone();
    let now = crate::clock::now_ms();
    let org = caller.org.clone();
    let updated = blocking(move || {
        store.webhook_update(&org, &key, |ep| {
            if let Some(u) = s.url {
                ep.url = u;
            }
            if let Some(x) = sealed {
                ep.secret = x;
            }
            if let Some(e) = s.events {
                ep.events = e;
            }
            if let Some(e) = s.enabled {
                ep.enabled = e;
            }
            if let Some(d) = s.description {
                ep.description = d;
            }
            ep.updated_at_ms = now;
            Ok::<(), std::convert::Infallible>(())
        })
    })
    .await?;
    let Some(Ok(ep)) = updated else {
        state.audit.record(event.failed("no such endpoint")).await;
        return Err(not_found(&id));
    };
    info!(endpoint_id = %id, changed = ?changed, "webhook endpoint updated");
    state
        .audit
        .record(event.details(json!({
            "changed": changed,
            "url": redacted(&ep.url),
            "events": ep.events,
            "enabled": ep.enabled,
        })))
        .await;
    let store = state.store.clone();
    let org = caller.org.clone();
    let (e, st, d) = blocking(move || store.webhook_get(&org, &id))
        .await?
        .unwrap_or((ep, WebhookState::default(), 0));
    Ok(Json(render(&e, &st, d)))
}

/// `DELETE /api/webhooks/{id}`: the endpoint with its outbox, dead letters and log.
async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let org = caller.org.clone();
    let removed = blocking(move || store.webhook_delete(&org, &key)).await?;
    let event = caller.event("webhook.delete", &id);
    let Some(ep) = removed else {
        state.audit.record(event.failed("no such endpoint")).await;
        return Err(not_found(&id));
    };
    info!(endpoint_id = %id, "webhook endpoint deleted");
    state
        .audit
        .record(event.details(json!({ "url": redacted(&ep.url) })))
        .await;
    Ok(Json(json!({ "id": id, "deleted": true })))
}

/// `GET /api/webhooks/{id}/deliveries`: the newest attempts first (the log keeps the
/// newest [`crate::store::LOG_KEEP`]).
async fn deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ListQuery { page, .. }: ListQuery<NoFilter>,
) -> Result<Json<Value>, ApiError> {
    let keep = usize::try_from(crate::store::LOG_KEEP).unwrap_or(usize::MAX);
    let store = state.store.clone();
    let key = id.clone();
    let found = blocking(move || {
        if store.webhook_state(&caller.org, &key)?.is_none() {
            return Ok(None);
        }
        store.webhook_deliveries(&caller.org, &key, keep).map(Some)
    })
    .await?
    .ok_or_else(|| not_found(&id))?;
    let (list, next) = page.slice(found, |l| u64::MAX - l.log_seq)?;
    Ok(envelope(list.iter().map(render_log).collect(), next))
}

/// `GET /api/webhooks/{id}/dead-letters`: oldest first (by delivery seq), and beside the
/// page every letter re-queued for a retry (`requeued`).
async fn dead_letters(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ListQuery { page, .. }: ListQuery<NoFilter>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let (dead, requeued) = blocking(move || {
        if store.webhook_state(&caller.org, &key)?.is_none() {
            return Ok(None);
        }
        store.webhook_dead_letters(&caller.org, &key).map(Some)
    })
    .await?
    .ok_or_else(|| not_found(&id))?;
    let (dead, next) = page.slice(dead, |d| d.delivery_seq)?;
    let Json(mut v) = envelope(dead.iter().map(render_dead).collect(), next);
    v["requeued"] = requeued.iter().map(render_requeued).collect();
    Ok(Json(v))
}

/// `POST /api/webhooks/{id}/dead-letters/{delivery_seq}/retry`: re-queues the letter; the
/// dispatcher sends it before its next new message, with its original delivery seq.
async fn retry(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, seq)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let delivery_seq: u64 = seq.parse().map_err(|_| {
        ApiError::BadRequest(format!("delivery_seq {seq:?} must be a positive integer"))
    })?;
    let store = state.store.clone();
    let key = id.clone();
    let now = crate::clock::now_ms();
    let org = caller.org.clone();
    let letter = blocking(move || store.webhook_requeue(&org, &key, delivery_seq, now)).await?;
    let event = caller
        .event("webhook.retry", &id)
        .details(json!({ "delivery_seq": delivery_seq }));
    let Some(letter) = letter else {
        state
            .audit
            .record(event.failed("no such dead letter"))
            .await;
        return Err(ApiError::NotFound(format!(
            "webhook endpoint {id} has no dead letter {delivery_seq}"
        )));
    };
    info!(endpoint_id = %id, delivery_seq, "webhook dead letter re-queued");
    // Recording the event also wakes the dispatcher (it listens to audit commits).
    state.audit.record(event).await;
    Ok(Json(json!({
        "id": id,
        "requeued": render_dead(&letter),
    })))
}

/// A secret as stored: sealed with the audit keys (so a copy of the data directory alone
/// does not reveal it), or as it is while signing is unavailable.
fn seal(state: &ApiState, secret: &str) -> String {
    state
        .audit
        .keys()
        .map_or_else(|| secret.to_owned(), |k| k.seal_secret(secret))
}
