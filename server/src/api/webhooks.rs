//! `/api/webhooks*`: audit webhook endpoints (placeholder until delivery lands).

use super::ApiState;
use axum::Router;

/// The webhook routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
