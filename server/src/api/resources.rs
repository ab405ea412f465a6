//! `/api/resources`: current state of everything the agents report.

use super::{ApiState, blocking, error::ApiError};
use crate::rfc3339_ms;
use crate::store::ResourceRecord;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_shared::telemetry::metric_base;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    /// Only this resource type (`node`, `docker`, ...).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only resources reported by this agent.
    agent_id: Option<String>,
}

fn render(r: ResourceRecord) -> Value {
    let latest: serde_json::Map<String, Value> = r
        .latest
        .iter()
        .map(|(k, s)| {
            // Unknown provenance (an agent before protocol 1.2) is null, like any unknown.
            let p = r.provenance.get(metric_base(k));
            (
                k.clone(),
                json!({
                    "value": s.value,
                    "at": rfc3339_ms(s.ts_ms),
                    "source": p.map(|p| &p.source),
                    "method": p.map(|p| &p.method),
                }),
            )
        })
        .collect();
    json!({
        "id": r.id,
        "org_id": r.org_id,
        "type": r.kind,
        "name": r.name,
        "parent": r.parent,
        "status": r.status,
        "attrs": r.attrs,
        "agent_id": r.agent_id,
        "collector": r.collector,
        "updated_at": rfc3339_ms(r.updated_at_ms),
        "metrics": latest,
    })
}

pub(super) async fn list(
    State(state): State<ApiState>,
    q: Result<Query<Filter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(f) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let store = state.store.clone();
    let all = blocking(move || store.list_resources(warden_shared::DEFAULT_ORG)).await?;
    let out: Vec<Value> = all
        .into_iter()
        .filter(|r| f.kind.as_ref().is_none_or(|k| &r.kind == k))
        .filter(|r| f.agent_id.as_ref().is_none_or(|a| &r.agent_id == a))
        .map(render)
        .collect();
    Ok(Json(Value::Array(out)))
}

pub(super) async fn get_one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let found = blocking(move || store.get_resource(warden_shared::DEFAULT_ORG, &key)).await?;
    found
        .map(|r| Json(render(r)))
        .ok_or_else(|| ApiError::NotFound(format!("no resource {id}")))
}
