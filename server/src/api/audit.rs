//! `/api/audit*`: the audit log (filtered, cursor-paginated, each event with its
//! verification), one event, per-event and whole-range verification, checkpoints and the
//! signing status.

use super::query::{ApiQuery, ListQuery, envelope};
use super::{ApiState, Caller, blocking, error::ApiError, metrics::parse_time};
use crate::chain::verify::{Report, Sig, State as VState};
use crate::clock::rfc3339_ms;
use crate::store::{AuditFilter, AuditRow};
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

/// The org a request names (the caller's when it names none); the caller sees only its own.
fn org(caller: &Caller, o: Option<String>) -> Result<String, ApiError> {
    match o {
        None => Ok(caller.org.clone()),
        Some(o) if o == caller.org => Ok(o),
        Some(o) => Err(ApiError::NotFound(format!("no organisation {o:?}"))),
    }
}

/// An event as the API shows it: its fields, hash and verification badge.
pub(super) fn render(row: &AuditRow) -> Value {
    let mut v = serde_json::to_value(&row.event).unwrap_or(Value::Null);
    let state = match (row.sig, row.linked) {
        (Sig::Invalid | Sig::OtherKey, _) | (_, Some(false)) => "failed",
        (Sig::Unsigned, _) => "unsigned",
        (Sig::NotChecked, _) => "chain_only",
        (Sig::Valid, _) => "verified",
    };
    v["hash"] = hex::encode(row.hash).into();
    v["time"] = rfc3339_ms(row.event.fields.ts_ms).into();
    v["verification"] = json!({
        "state": state,
        "signature": row.sig,
        "chain": match row.linked { Some(true) => "ok", Some(false) => "broken", None => "unknown" },
    });
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventFilter {
    since: Option<String>,
    until: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    target: Option<String>,
    org: Option<String>,
    /// `desc` (newest first, default) or `asc`.
    order: Option<String>,
    /// A sequence number the first page starts after, in the list's order (a cursor, when
    /// given, takes over from the second page on).
    after: Option<u64>,
}

/// `GET /api/audit`: by seq, newest first or oldest first; paged in the store.
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ListQuery { filter: q, page }: ListQuery<EventFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit;
    let cursor = page.after::<u64>()?.or(q.after);
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::BadRequest(format!(
                "order = {o:?} must be asc or desc"
            )));
        }
    };
    if let Some(o) = q.outcome.as_deref()
        && o != "success"
        && o != "failure"
    {
        return Err(ApiError::BadRequest(format!(
            "outcome = {o:?} must be success or failure"
        )));
    }
    let filter = AuditFilter {
        since_ms: q
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        until_ms: q
            .until
            .as_deref()
            .map(|s| parse_time("until", s))
            .transpose()?,
        actor: q.actor,
        action: q.action,
        outcome: q.outcome,
        target: q.target,
    };
    let org = org(&caller, q.org)?;
    let audit = state.audit.clone();
    let (rows, next) = blocking(move || {
        audit
            .store()
            .audit_query(&org, &filter, cursor, ascending, limit, audit.keys())
    })
    .await?;
    Ok(envelope(
        rows.iter().map(render).collect(),
        next.map(|seq| page.cursor(&seq)),
    ))
}

/// Splits an event id `{org}-{seq}`.
fn parse_id(caller: &Caller, id: &str) -> Result<(String, u64), ApiError> {
    let bad = || ApiError::BadRequest(format!("{id:?} is not an audit event id (org-seq)"));
    let (o, seq) = id.rsplit_once('-').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    Ok((org(caller, Some(o.to_owned()))?, seq))
}

async fn row(state: &ApiState, caller: &Caller, id: &str) -> Result<AuditRow, ApiError> {
    let (org, seq) = parse_id(caller, id)?;
    let audit = state.audit.clone();
    let filter = AuditFilter::default();
    let (rows, _) = blocking(move || {
        audit
            .store()
            .audit_query(&org, &filter, Some(seq + 1), false, 1, audit.keys())
    })
    .await?;
    rows.into_iter()
        .find(|r| r.event.seq == seq)
        .ok_or_else(|| ApiError::NotFound(format!("no audit event {id}")))
}

/// `GET /api/audit/{id}`.
pub(super) async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&row(&state, &caller, &id).await?)))
}

/// `GET /api/audit/{id}/verify`: the event's signature and its link to the one before.
pub(super) async fn verify_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = row(&state, &caller, &id).await?;
    let v = render(&r);
    Ok(Json(json!({
        "id": r.event.fields.id,
        "seq": r.event.seq,
        "hash": v["hash"],
        "state": v["verification"]["state"],
        "signature": v["verification"]["signature"],
        "chain": v["verification"]["chain"],
        "key_id": r.event.fields.key_id,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RangeQuery {
    /// A sequence number, or an RFC 3339 time.
    from: Option<String>,
    /// A sequence number, or an RFC 3339 time.
    to: Option<String>,
    org: Option<String>,
}

/// A range bound: a sequence number, or the seq of the first event at or after a time
/// (`from`) / the last event before it (`to`).
fn bound(
    state: &ApiState,
    org: &str,
    v: Option<&str>,
    name: &str,
    upper: bool,
) -> Result<Option<u64>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(seq) = v.parse::<u64>() {
        return Ok(Some(seq));
    }
    let t = parse_time(name, v)?;
    let filter = if upper {
        AuditFilter {
            until_ms: Some(t),
            ..Default::default()
        }
    } else {
        AuditFilter {
            since_ms: Some(t),
            ..Default::default()
        }
    };
    let (rows, _) = state
        .audit
        .store()
        .audit_query(org, &filter, None, !upper, 1, None)?;
    Ok(Some(
        rows.first()
            .map_or(if upper { 0 } else { u64::MAX }, |r| r.event.seq),
    ))
}

/// A verification report as JSON.
pub(super) fn render_report(r: &Report, signing: Option<&str>) -> Value {
    json!({
        "state": r.state,
        "verified": r.state == VState::Verified,
        "checked": r.checked,
        "first_seq": r.first_seq,
        "last_seq": r.last_seq,
        "unsigned": r.unsigned,
        "checkpoint": r.checkpoint,
        "first_bad_seq": r.problem.as_ref().map(|p| p.seq),
        "problem": r.problem,
        "signing_unavailable": signing,
    })
}

/// `GET /api/audit/verify?from=&to=`: the whole range (default: the whole chain).
pub(super) async fn verify_range(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = org(&caller, q.org)?;
    let st = state.clone();
    let report = tokio::task::spawn_blocking(move || {
        let from = bound(&st, &org, q.from.as_deref(), "from", false)?;
        let to = bound(&st, &org, q.to.as_deref(), "to", true)?;
        let numeric = |v: &Option<String>| v.as_deref().is_some_and(|s| s.parse::<u64>().is_ok());
        if let (Some(f), Some(t)) = (from, to)
            && f > t
            && numeric(&q.from)
            && numeric(&q.to)
        {
            return Err(ApiError::BadRequest(format!("from {f} is after to {t}")));
        }
        let head = st.audit.store().audit_head(&org)?.map_or(0, |h| h.seq);
        if from.unwrap_or(1).max(1) > to.unwrap_or(head).min(head) {
            return Err(ApiError::NotFound(format!(
                "no audit events in that range (the log ends at {head})"
            )));
        }
        Ok::<_, ApiError>(
            st.audit
                .store()
                .audit_verify(&org, from, to, st.audit.keys())?,
        )
    })
    .await??;
    Ok(Json(render_report(&report, state.audit.unavailable())))
}

/// `GET /api/audit/checkpoints?from=&to=` (tree sizes).
pub(super) async fn checkpoints(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = org(&caller, q.org)?;
    let num = |v: Option<String>, name: &str, d: u64| {
        v.map_or(Ok(d), |s| {
            s.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{name} = {s:?} must be a tree size")))
        })
    };
    let (from, to) = (num(q.from, "from", 0)?, num(q.to, "to", u64::MAX)?);
    let audit = state.audit.clone();
    let list = blocking(move || audit.store().audit_checkpoints(&org, from, to)).await?;
    Ok(Json(json!({
        "public_key": state.audit.keys().map(crate::chain::event::Keys::public_key),
        "checkpoints": list,
    })))
}

/// `POST /api/audit/checkpoints`: a checkpoint at the head now (exports end with one).
pub(super) async fn checkpoint_now(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let audit = state.audit.clone();
    let made = blocking(move || {
        let made =
            audit
                .store()
                .audit_checkpoint(&caller.org, audit.keys(), crate::clock::now_ms())?;
        if made.as_ref().is_some_and(|m| m.1) {
            audit.notify();
        }
        Ok(made)
    })
    .await?;
    match made {
        Some((cp, created)) => Ok(Json(json!({ "checkpoint": cp, "created": created }))),
        None => Err(ApiError::NotFound("the audit log is empty".into())),
    }
}

/// `GET /api/audit/status`: signing state, chain heads, retention.
pub(super) async fn status(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let audit = state.audit.clone();
    let mut heads = blocking(move || audit.store().audit_heads()).await?;
    heads.retain(|(org, _)| *org == caller.org);
    let keys = state.audit.keys();
    let cfg = state.audit.config();
    Ok(Json(json!({
        "signing": {
            "enabled": keys.is_some(),
            "unavailable_reason": state.audit.unavailable(),
            "key_id": keys.map(crate::chain::event::Keys::key_id),
            "public_key": keys.map(crate::chain::event::Keys::public_key),
        },
        "chains": heads.iter().map(|(org, h)| json!({
            "org_id": org, "head_seq": h.seq, "head_hash": hex::encode(h.hash), "head_time": rfc3339_ms(h.ts_ms),
        })).collect::<Vec<_>>(),
        "retention_days": cfg.retention.as_secs() as f64 / 86_400.0,
        "checkpoint_every": cfg.checkpoint_every,
        "checkpoint_interval_s": cfg.checkpoint_interval.as_secs(),
    })))
}
