//! `POST /session/refresh`: a signed-in person's token for a fresh one, signed with the current
//! secret. During a `jwt_secret` rotation's grace period it turns a token signed with the
//! previous secret into one that outlives the grace period.

use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::AppState;
use crate::auth::SessionUser;
use crate::error::ApiError;

pub async fn refresh(
    State(state): State<AppState>,
    user: SessionUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (token, expires) = state.sessions.issue(&user.github_login);
    let expires_at = chrono::DateTime::<chrono::Utc>::from(expires);
    Ok(Json(json!({
        "token": token,
        "expires_at": expires_at,
        "expires_unix": expires.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
    })))
}
