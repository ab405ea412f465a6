//! `/api/agents`: the fleet (paged by id), with live connection state; revocation.

use super::query::{ListQuery, NoFilter, envelope};
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::rfc3339_ms;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tracing::info;

/// `GET /api/agents`: the caller's org's agents, by id.
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { page, .. }: ListQuery<NoFilter>,
) -> Result<Json<Value>, ApiError> {
    // Sessions first: a session registers after its hello is stored, so every agent seen
    // connected here shows that hello in the store read that follows.
    let live = state.live.connected();
    let store = state.store.clone();
    let mut agents = blocking(move || store.list_agents()).await?;
    agents.retain(|a| a.org_id == caller.org);
    let (agents, next) = page.slice(agents, |a| a.id.clone())?;
    let out: Vec<Value> = agents
        .into_iter()
        .map(|a| {
            let since = live.get(&a.id).copied();
            let collectors: serde_json::Map<String, Value> = a
                .collectors
                .iter()
                .map(|(name, h)| {
                    (
                        name.clone(),
                        json!({
                            "status": h.status,
                            "message": h.message,
                            "last_success": h.last_success_ms.and_then(rfc3339_ms),
                            "last_run": rfc3339_ms(h.last_run_ms),
                            "duration_ms": h.duration_ms,
                        }),
                    )
                })
                .collect();
            json!({
                "id": a.id,
                "org_id": a.org_id,
                "hostname": a.hostname,
                "version": a.version,
                "protocol": a.protocol,
                "connected": since.is_some(),
                "connected_since": since.and_then(rfc3339_ms),
                "last_seen": a.last_seen_ms.and_then(rfc3339_ms),
                "enrolled_at": rfc3339_ms(a.enrolled_at_ms),
                "certificate_expires_at": rfc3339_ms(a.cert_not_after_unix * 1000),
                "revoked": a.revoked_at_ms.is_some(),
                "revoked_at": a.revoked_at_ms.and_then(rfc3339_ms),
                "dropped_samples": a.dropped_samples,
                "collectors": collectors,
                "identity_conflict": a.identity_conflict.as_ref().map(|c| json!({
                    "first_refused": rfc3339_ms(c.first_ms),
                    "last_refused": rfc3339_ms(c.last_ms),
                    "refused": c.refused,
                    "connected_from": c.connected_from,
                    "refused_from": c.refused_from,
                })),
            })
        })
        .collect();
    Ok(envelope(out, next))
}

pub(super) async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let now = crate::clock::now_ms();
    let agent = id.clone();
    let updated = blocking(move || {
        store.update_agent(&agent, |a| {
            if a.revoked_at_ms.is_none() {
                a.revoked_at_ms = Some(now);
            }
        })
    })
    .await?;
    let event = caller.event("agent.revoke", &id);
    let Some(updated) = updated else {
        state.audit.record(event.failed("no such agent")).await;
        return Err(ApiError::NotFound(format!("no agent {id}")));
    };
    let mut event = event.details(
        json!({ "hostname": updated.hostname, "certificate_serial": updated.cert_serial }),
    );
    event.org_id.clone_from(&updated.org_id);
    state.audit.record(event).await;
    state.live.disconnect(
        &id,
        warden_shared::close::AGENT_REVOKED,
        "agent was revoked",
    );
    info!(agent_id = %id, "agent revoked");
    Ok(Json(
        json!({ "id": updated.id, "revoked": true, "revoked_at": updated.revoked_at_ms.and_then(rfc3339_ms) }),
    ))
}

/// Round-trips a ping over the agent's session: proves the control channel works end to end.
pub(super) async fn ping(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    use crate::ingest::live::ControlError;
    use warden_shared::proto::{AgentResponse, ServerRequest};
    let nonce: u64 = rand::random();
    let started = std::time::Instant::now();
    match state
        .live
        .request(
            &id,
            ServerRequest::Ping { nonce },
            std::time::Duration::from_secs(10),
        )
        .await
    {
        Ok(AgentResponse::Pong { nonce: echoed }) if echoed == nonce => Ok(Json(
            json!({ "id": id, "rtt_ms": started.elapsed().as_secs_f64() * 1000.0 }),
        )),
        Ok(other) => Err(ApiError::Internal(anyhow::anyhow!(
            "agent {id} answered a ping with {other:?}"
        ))),
        Err(ControlError::NotConnected) => {
            Err(ApiError::NotFound(format!("agent {id} is not connected")))
        }
        Err(e) => Err(ApiError::Unavailable(format!("agent {id}: {e}"))),
    }
}
