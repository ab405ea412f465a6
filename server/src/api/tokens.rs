//! `POST /api/tokens`: creates a one-time join token. The token is shown in this response
//! only; the server keeps just its hash.

use super::{ApiState, error::ApiError};
use crate::rfc3339_ms;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateToken {
    /// Lifetime like "1h"; the configured default when absent.
    ttl: Option<String>,
}

pub(super) async fn create(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateToken::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let ttl = match &req.ttl {
        None => state.token_ttl,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ApiError::BadRequest(format!("ttl {s:?}: {e} (use e.g. \"1h\")")))?,
    };
    if ttl.as_secs() < 1 || ttl.as_secs() > 30 * 86_400 {
        return Err(ApiError::BadRequest(
            "ttl must be between 1s and 30d".into(),
        ));
    }
    let store = state.store.clone();
    let (fp, addrs) = (state.ca_fingerprint, state.advertise.clone());
    let now = crate::now_ms();
    let token = tokio::task::spawn_blocking(move || {
        crate::enroll::create_token(&store, fp, addrs, warden_shared::DEFAULT_ORG, ttl, now)
    })
    .await??;
    info!(token_id = %token.id, ttl_s = ttl.as_secs(), "join token created");
    Ok(Json(json!({
        "id": token.id,
        "token": token.encode(),
        "expires_at": rfc3339_ms(token.expires_unix * 1000),
        "server_addresses": token.addrs,
        "ca_fingerprint": warden_shared::token::fingerprint_hex(&token.ca_fingerprint),
    })))
}
