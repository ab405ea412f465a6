//! The one JSON error shape every API failure uses:
//! `{"error": {"code": "not_found", "message": "..."}}`.
//! Internal details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong credentials.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// A dependency (an agent, the store) could not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside; the detail goes to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// HTTP status for the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let unavailable = e.chain().find_map(|c| match c.downcast_ref() {
            Some(crate::store::StoreError::Unavailable { reason }) => Some(reason.clone()),
            _ => None,
        });
        match unavailable {
            Some(reason) => Self::store_unavailable(&reason),
            None => Self::Internal(e),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable { reason } => Self::store_unavailable(&reason),
            e => Self::Internal(e.into()),
        }
    }
}

impl ApiError {
    /// 503 for a store that cannot write (a full disk): the client may retry, and the
    /// message names the disk.
    fn store_unavailable(reason: &str) -> Self {
        Self::Unavailable(format!("the store cannot write: {reason}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = &self {
            error!(error = %format!("{e:#}"), "api request failed");
        }
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        (self.status(), Json(body)).into_response()
    }
}

/// A response with an explicit status and the error shape (for fallbacks).
pub fn plain(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}
