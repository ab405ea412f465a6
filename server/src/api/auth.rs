//! Bearer-token authentication of every `/api` route, and who the caller is
//! ([`Caller`]: actor and client address, for the audit log). Sign-ins are audited: the
//! first success per client address since start (`auth.login`), and failures at most once
//! per address and minute, with a count of the attempts in between, so a flood of bad
//! tokens cannot flood the log.

use super::ApiState;
use super::error::ApiError;
use crate::audit::event::{Actor, NewEvent};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// Who made a request: the authenticated actor and the client address (when the server
/// runs with connection info; routers driven in-process have none).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated actor.
    pub actor: Actor,
    /// Client address.
    pub ip: Option<IpAddr>,
}

impl Caller {
    /// A successful act by this caller in the default org.
    pub fn event(&self, action: &str, target: impl Into<String>) -> NewEvent {
        NewEvent::new(self.actor.clone(), action, target).from_ip(self.ip)
    }
}

/// Interval between audited failures of one client address.
const FAILURE_EVERY_MS: i64 = 60_000;
/// Addresses remembered at most (oldest failures are forgotten first).
const MAX_TRACKED: usize = 4096;

/// Audited sign-ins per client address.
#[derive(Debug, Default)]
pub struct Logins {
    inner: Mutex<LoginsInner>,
}

#[derive(Debug, Default)]
struct LoginsInner {
    /// Addresses whose successful sign-in was audited.
    ok: HashMap<Option<IpAddr>, ()>,
    /// Per address: when the last failure was audited, attempts since.
    failed: HashMap<Option<IpAddr>, (i64, u64)>,
}

impl Logins {
    /// Whether this success is the address's first since start.
    fn first_success(&self, ip: Option<IpAddr>) -> bool {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.ok.len() >= MAX_TRACKED {
            g.ok.clear();
        }
        g.ok.insert(ip, ()).is_none()
    }

    /// Whether to audit this failure now; `Some(n)`: yes, with `n` attempts since the last.
    fn failure(&self, ip: Option<IpAddr>, now_ms: i64) -> Option<u64> {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.failed.len() >= MAX_TRACKED {
            g.failed
                .retain(|_, (at, _)| now_ms - *at < FAILURE_EVERY_MS);
        }
        match g.failed.get_mut(&ip) {
            Some((at, n)) if now_ms - *at < FAILURE_EVERY_MS => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let attempts = *n + 1;
                (*at, *n) = (now_ms, 0);
                Some(attempts)
            }
            None => {
                g.failed.insert(ip, (now_ms, 0));
                Some(1)
            }
        }
    }
}

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
        if let Some(attempts) = state.logins.failure(ip, crate::now_ms()) {
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
    let caller = Caller {
        actor: Actor::admin(),
        ip,
    };
    if state.logins.first_success(ip) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_audited_once_a_minute_per_address_with_a_count() {
        let l = Logins::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(l.failure(a, 0), Some(1));
        assert_eq!(l.failure(a, 1_000), None);
        assert_eq!(l.failure(a, 2_000), None);
        assert_eq!(l.failure(b, 2_000), Some(1));
        assert_eq!(l.failure(a, 60_000), Some(3));
        assert_eq!(l.failure(a, 60_001), None);
        assert!(l.first_success(a));
        assert!(!l.first_success(a));
        assert!(l.first_success(None));
    }
}
