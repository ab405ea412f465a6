//! The HTTP API (axum): bearer-token authentication on every `/api` route, one error
//! shape, JSON bodies. `router(state)` is what the server serves and what tests call.

mod agents;
mod alerts;
mod audit;
mod auth;
mod body;
mod caller;
pub mod error;
mod metrics;
mod patrol;
mod prometheus;
mod query;
mod resources;
pub mod serve;
mod storage;
mod tokens;
mod webhooks;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
pub use caller::{Caller, Principal};
use error::ApiError;
pub use query::{DEFAULT_LIMIT, MAX_LIMIT};
use std::sync::Arc;

/// What handlers share: the server-wide context.
pub type ApiState = Arc<crate::context::Context>;

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/agents", get(agents::list))
        .route("/api/agents/{id}/revoke", post(agents::revoke))
        .route("/api/agents/{id}/ping", post(agents::ping))
        .route("/api/tokens", post(tokens::create).get(tokens::list))
        .route("/api/tokens/{id}", delete(tokens::revoke))
        .route("/api/resources", get(resources::list))
        .route("/api/resources/{*id}", get(resources::get_one))
        .route("/api/metrics/history", get(metrics::history))
        .route("/api/metrics/query", post(metrics::query))
        .route("/api/store", get(storage::store))
        .route("/api/ai/patrol/findings", get(patrol::findings))
        .route("/api/ai/patrol/findings/{id}/{action}", post(patrol::act))
        .route("/api/ai/patrol/run", post(patrol::run_now))
        .route("/api/ai/patrol/runs", get(patrol::runs))
        .route("/api/ai/patrol/status", get(patrol::status))
        .route(
            "/api/ai/patrol/settings",
            get(patrol::settings).put(patrol::put_settings),
        )
        .route(
            "/api/ai/patrol/suppressions",
            get(patrol::suppressions).post(patrol::add_suppression),
        )
        .route(
            "/api/ai/patrol/suppressions/{id}",
            delete(patrol::remove_suppression),
        )
        .route("/api/alerts", get(alerts::list))
        .route(
            "/api/alerts/rules",
            get(alerts::rules).put(alerts::put_rules),
        )
        .route("/api/alerts/{id}", get(alerts::get_one))
        .route("/api/alerts/{id}/timeline", get(alerts::timeline))
        .route("/api/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/status", get(audit::status))
        .route("/api/audit/verify", get(audit::verify_range))
        .route(
            "/api/audit/checkpoints",
            get(audit::checkpoints).post(audit::checkpoint_now),
        )
        .route("/api/audit/{id}/verify", get(audit::verify_one))
        .route("/api/audit/{id}", get(audit::get_one))
        .merge(webhooks::routes())
        .route("/metrics", get(prometheus::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::check));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(|| async { error::plain(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            error::plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(error::BODY_LIMIT))
        .layer(middleware::from_fn(error::shape))
}

/// `ok`, or 503 `degraded` with the problems (the store cannot write, or its disk is below
/// the audit reserve). Unauthenticated, and names no secret.
async fn healthz(State(state): State<ApiState>) -> Response {
    let store = state.store.clone();
    let status = tokio::task::spawn_blocking(move || store.status()).await;
    let problem = match status {
        Ok(s) => s.problem(),
        Err(_) => Some("the store status could not be read".to_owned()),
    };
    match problem {
        None => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "degraded", "problems": [p] })),
        )
            .into_response(),
    }
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}
