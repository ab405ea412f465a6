//! `/api/resources`: current state of everything the agents report, paged by id and
//! filtered in the store's seek.

use super::query::{ListQuery, envelope};
use super::{ApiState, Caller, blocking, error::ApiError};
use crate::clock::rfc3339_ms;
use crate::model::ResourceRecord;
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_shared::metric;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    /// Only this resource type (`node`, `docker`, ...).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only resources reported by this agent (its id).
    agent: Option<String>,
    /// Only children of this resource id.
    parent: Option<String>,
    /// Only resources in this status (`online`, `running`, ...).
    status: Option<String>,
    /// Only resources whose id or name contains this text, ignoring case.
    q: Option<String>,
}

impl Filter {
    fn matches(&self, r: &ResourceRecord, text: Option<&str>) -> bool {
        self.kind.as_ref().is_none_or(|k| &r.kind == k)
            && self.agent.as_ref().is_none_or(|a| &r.agent_id == a)
            && self
                .parent
                .as_ref()
                .is_none_or(|p| r.parent.as_ref() == Some(p))
            && self.status.as_ref().is_none_or(|s| &r.status == s)
            && text.is_none_or(|t| {
                r.id.to_lowercase().contains(t) || r.name.to_lowercase().contains(t)
            })
    }
}

fn render(r: ResourceRecord) -> Value {
    let latest: serde_json::Map<String, Value> = r
        .latest
        .iter()
        .map(|(k, s)| {
            // Unknown provenance (an agent before protocol 1.2) is null, like any unknown.
            let p = r.provenance.get(metric::base(k));
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

/// `GET /api/resources`: by id.
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { filter, page }: ListQuery<Filter>,
) -> Result<Json<Value>, ApiError> {
    let after: Option<String> = page.after()?;
    let store = state.store.clone();
    let limit = page.limit;
    let (found, more) = blocking(move || {
        let text = filter.q.as_deref().map(str::to_lowercase);
        store.resources_page(&caller.org, after.as_deref(), limit, |r| {
            filter.matches(r, text.as_deref())
        })
    })
    .await?;
    let next = more
        .then(|| found.last().map(|r| page.cursor(&r.id)))
        .flatten();
    Ok(envelope(found.into_iter().map(render).collect(), next))
}

pub(super) async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let key = id.clone();
    let found = blocking(move || store.get_resource(&caller.org, &key)).await?;
    found
        .map(|r| Json(render(r)))
        .ok_or_else(|| ApiError::NotFound(format!("no resource {id}")))
}
