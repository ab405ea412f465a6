//! Bearer-token authentication of every `/api` route; it hands handlers the
//! [`Caller`] (`caller.rs`). Sign-ins are audited
//! (`auth.login`): the first success per client address since start, and failures as the
//! audit limiter allows (`audit/limit.rs`), so a flood of bad tokens cannot flood the log.

use super::ApiState;
use super::caller::{Caller, Principal};
use super::error::ApiError;
use crate::chain::event::{Actor, NewEvent};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// The middleware: checks the bearer token, audits sign-ins, and hands handlers a
/// [`Caller`].
pub(super) async fn check(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|p| {
        let hash: [u8; 32] = Sha256::digest(p.as_bytes()).into();
        // Comparing fixed-length hashes leaks nothing useful about the token through timing.
        hash == state.admin_token_hash
    });
    if !ok {
        if let Some(attempts) = state
            .audit
            .limiter()
            .failure("api", ip, crate::clock::now_ms())
        {
            let reason = if presented.is_some() {
                "invalid bearer token"
            } else {
                "missing bearer token"
            };
            let e = NewEvent::new(Actor::anonymous(), "auth.login", req.uri().path())
                .from_ip(ip)
                .failed(reason)
                .details(serde_json::json!({ "attempts": attempts }));
            spawn_record(&state, e);
        }
        return Err(ApiError::Unauthorized);
    }
    let caller = Caller::authenticated(Principal::Admin, ip);
    if state.audit.limiter().first_success("api", ip) {
        state
            .audit
            .record(caller.event("auth.login", "token:admin"))
            .await;
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Records without making the (refused) request wait.
fn spawn_record(state: &ApiState, e: NewEvent) {
    let audit = state.audit.clone();
    tokio::spawn(async move {
        audit.record(e).await;
    });
}
