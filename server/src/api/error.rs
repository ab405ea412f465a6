//! The one JSON error shape every API failure uses:
//! `{"error": {"code": "not_found", "message": "..."}}`, including the rejections axum
//! writes itself (oversized or malformed bodies, bad paths and queries), which [`shape`]
//! rewrites in one place. Internal details are logged, never sent.

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

/// The largest request body any route reads, in bytes.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

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
    /// The request could not be read as asked: too large (413), a wrong content type (415),
    /// or a malformed body (400).
    #[error("{1}")]
    Rejected(StatusCode, String),
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
            Self::Rejected(status, _) => *status,
        }
    }
}

/// The error code of a status.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// axum answers well-formed JSON of the wrong shape with 422; the API says 400 for any
/// body it cannot use, and keeps 413 and 415.
fn rejection_status(status: StatusCode) -> StatusCode {
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::Rejected(rejection_status(r.status()), r.body_text())
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
        plain(self.status(), code(self.status()), &self.to_string())
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

/// A request body longer than [`BODY_LIMIT`] by its `Content-Length`.
fn declared_too_large(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > BODY_LIMIT as u64)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The middleware around every route: refuses a body declared larger than [`BODY_LIMIT`]
/// before reading it, and rewrites any error response that is not already the JSON shape
/// (axum's plain-text rejections) into it, keeping its status (422 becomes 400) and headers
/// such as `Allow`.
pub(super) async fn shape(req: Request, next: Next) -> Response {
    if declared_too_large(req.headers()) {
        return ApiError::Rejected(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {BODY_LIMIT} bytes"),
        )
        .into_response();
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let status = rejection_status(status);
    let message = if status.is_server_error() {
        error!(status = %status, error = %text, "api request failed");
        "internal error".to_owned()
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        text
    };
    let mut out = plain(status, code(status), &message);
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    out.headers_mut().extend(parts.headers);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn send(req: axum::http::Request<Body>) -> (StatusCode, serde_json::Value) {
        let app = Router::new()
            .route("/echo", post(|b: Bytes| async move { b.len().to_string() }))
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
            .layer(axum::middleware::from_fn(shape));
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn oversized_bodies_answer_413_in_the_json_shape_with_or_without_a_length() {
        // Streamed (chunked, no Content-Length): axum's limit trips while reading.
        let chunks = (0..=BODY_LIMIT / 65_536)
            .map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; 65_536])));
        let req = axum::http::Request::post("/echo")
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
        let (status, v) = send(req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
        // Declared too large: refused before reading.
        let req = axum::http::Request::post("/echo")
            .header(header::CONTENT_LENGTH, BODY_LIMIT + 1)
            .body(Body::from("x"))
            .unwrap();
        let (status, v) = send(req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
        // Within the limit: served.
        let req = axum::http::Request::post("/echo")
            .body(Body::from(vec![b'a'; BODY_LIMIT]))
            .unwrap();
        assert_eq!(send(req).await.0, StatusCode::OK);
    }
}
