//! `/api/tokens`: creates one-time join tokens (the token is shown in the create response
//! only; the server keeps just its hash), lists them (metadata only) and revokes unused ones.
//! Creation and revocation are audited (`token.create`, `token.revoke`); the first use is
//! audited by enrollment (`token.use`).

use super::body::OptionalJson;
use super::query::{ListQuery, NoFilter, envelope};
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::rfc3339_ms;
use crate::model::TokenRecord;
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateToken {
    /// Lifetime like "1h"; the configured default when absent.
    ttl: Option<String>,
}

pub(super) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    OptionalJson(req): OptionalJson<CreateToken>,
) -> Result<Json<Value>, ApiError> {
    let ttl = match &req.ttl {
        None => state.token_ttl,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ApiError::BadRequest(format!("ttl {s:?}: {e} (use e.g. \"1h\")")))?,
    };
    if ttl.as_secs() < 1 || ttl.as_secs() > 30 * 86_400 {
        return Err(ApiError::BadRequest(
            "ttl must be between 1s and 30d".into(),
        ));
    }
    let store = state.store.clone();
    let (fp, addrs) = (state.pki.fingerprint(), state.advertise.clone());
    let now = crate::clock::now_ms();
    let org = caller.org.clone();
    let token = tokio::task::spawn_blocking(move || {
        crate::enroll::create_token(&store, fp, addrs, &org, ttl, now)
    })
    .await??;
    info!(token_id = %token.id, ttl_s = ttl.as_secs(), "join token created");
    let expires_at = rfc3339_ms(token.expires_unix * 1000);
    state
        .audit
        .record(caller.event("token.create", &token.id).details(json!({
            "kind": "join",
            "ttl_s": ttl.as_secs(),
            "expires_at": expires_at,
        })))
        .await;
    Ok(Json(json!({
        "id": token.id,
        "token": token.encode(),
        "expires_at": expires_at,
        "server_addresses": token.addrs,
        "ca_fingerprint": warden_shared::token::fingerprint_hex(&token.ca_fingerprint),
    })))
}

/// A token's metadata as the API shows it (never its secret or hash).
fn render(t: &TokenRecord) -> Value {
    let now = crate::clock::now_ms();
    let state = if t.used_at_ms.is_some() {
        "used"
    } else if t.revoked_at_ms.is_some() {
        "revoked"
    } else if now >= t.expires_unix.saturating_mul(1000) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": t.id,
        "org_id": t.org_id,
        "state": state,
        "created_at": rfc3339_ms(t.created_at_ms),
        "expires_at": rfc3339_ms(t.expires_unix * 1000),
        "used_at": t.used_at_ms.and_then(rfc3339_ms),
        "used_by": t.used_by,
        "revoked_at": t.revoked_at_ms.and_then(rfc3339_ms),
    })
}

/// `GET /api/tokens`: the caller's org's join tokens, newest first (then by id).
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { page, .. }: ListQuery<NoFilter>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let mut list = blocking(move || store.list_tokens()).await?;
    list.retain(|t| t.org_id == caller.org);
    let (list, next) = page.slice(list, |t| (-t.created_at_ms, t.id.clone()))?;
    Ok(envelope(list.iter().map(render).collect(), next))
}

/// `DELETE /api/tokens/{id}`: revokes an unused join token.
pub(super) async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let now = crate::clock::now_ms();
    let key = id.clone();
    let rec = blocking(move || store.revoke_token(&key, now)).await?;
    let event = caller.event("token.revoke", &id);
    let Some(rec) = rec else {
        state.audit.record(event.failed("no such token")).await;
        return Err(ApiError::NotFound(format!("no join token {id}")));
    };
    if let Some(agent) = &rec.used_by {
        state
            .audit
            .record(event.failed(format!("already used by agent {agent}")))
            .await;
        return Err(ApiError::BadRequest(format!(
            "join token {id} was already used by agent {agent}; revoke the agent instead"
        )));
    }
    state.audit.record(event).await;
    info!(token_id = %id, "join token revoked");
    Ok(Json(render(&rec)))
}
