//! [`Caller`]: who makes a request (the authenticated principal) and in which organisation,
//! as the auth middleware (`auth.rs`) established it. Handlers take it as an extractor and
//! read the org and the audit actor from it, never from a constant; access control will
//! change only how [`Caller::authenticated`] builds it.

use super::error::ApiError;
use crate::chain::event::{Actor, NewEvent};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::net::IpAddr;

/// Who is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin token (`<data-dir>/admin-token`): every right in every route.
    Admin,
}

/// Who made a request, in which organisation, from where.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated principal.
    pub principal: Principal,
    /// The organisation the request acts in.
    pub org: String,
    /// Client address (routers driven in-process have none).
    pub ip: Option<IpAddr>,
}

impl Caller {
    /// The caller of a request that presented `principal`'s credentials. Only the default
    /// org exists until organisations do.
    pub(super) fn authenticated(principal: Principal, ip: Option<IpAddr>) -> Self {
        Self {
            principal,
            org: warden_shared::DEFAULT_ORG.to_owned(),
            ip,
        }
    }

    /// The audit log's name for the principal.
    pub fn actor(&self) -> Actor {
        match self.principal {
            Principal::Admin => Actor::admin(),
        }
    }

    /// A successful act by this caller in its org.
    pub fn event(&self, action: &str, target: impl Into<String>) -> NewEvent {
        let mut e = NewEvent::new(self.actor(), action, target).from_ip(self.ip);
        e.org_id.clone_from(&self.org);
        e
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// The caller the auth middleware stored; a route outside it has none (401).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}
