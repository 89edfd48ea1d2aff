//! API keys for the HitSave client library, issued to a signed-in person.
//! `POST /api_keys {"label": ...}` returns the key once; `GET /api_keys` lists them without it.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::auth::{SessionUser, key_digest, new_api_key};
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct IssueRequest {
    #[serde(default)]
    label: String,
}

/// How many characters of a key are kept to tell keys apart: `hs_` and 8 hex digits.
const SHOWN_PREFIX: usize = 11;

async fn user_id(state: &AppState, user: &SessionUser) -> Result<i64, ApiError> {
    // The no-op update makes RETURNING give the id of an existing row too.
    Ok(sqlx::query_scalar(
        "INSERT INTO users (github_login) VALUES ($1)
         ON CONFLICT (github_login) DO UPDATE SET github_login = EXCLUDED.github_login
         RETURNING id",
    )
    .bind(&user.github_login)
    .fetch_one(&mut *state.db.acquire().await?)
    .await?)
}

pub async fn issue(
    State(state): State<AppState>,
    user: SessionUser,
    body: Result<Json<IssueRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body?;
    let label = req.label.trim();
    if label.len() > 100 {
        return Err(ApiError::BadRequest(
            "label is longer than 100 characters".into(),
        ));
    }
    let user_id = user_id(&state, &user).await?;
    let key = new_api_key();
    let prefix = &key[..SHOWN_PREFIX];
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO api_keys (user_id, key_hash, prefix, label) VALUES ($1, $2, $3, $4)
         RETURNING created_at",
    )
    .bind(user_id)
    .bind(&key_digest(&key)[..])
    .bind(prefix)
    .bind(label)
    .fetch_one(&mut *state.db.acquire().await?)
    .await?;
    tracing::info!(user = %user.github_login, %prefix, "issued an API key");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "key": key,
            "prefix": prefix,
            "label": label,
            "created_at": created_at,
        })),
    ))
}

#[derive(Serialize, sqlx::FromRow)]
pub struct KeySummary {
    prefix: String,
    label: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

pub async fn list(
    State(state): State<AppState>,
    user: SessionUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let keys: Vec<KeySummary> = sqlx::query_as(
        "SELECT k.prefix, k.label, k.created_at, k.last_used_at
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE u.github_login = $1 ORDER BY k.id",
    )
    .bind(&user.github_login)
    .fetch_all(&mut *state.db.acquire().await?)
    .await?;
    Ok(Json(json!({ "keys": keys })))
}
