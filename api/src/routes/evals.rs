//! Cached function results, per user.
//! `PUT /evals {"fn_key", "args_hash", "result"}` stores one (201 new, 200 replaced);
//! `GET /evals?fn_key=...[&args_hash=...]` reads them back.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::auth::ApiKeyUser;
use crate::error::ApiError;

/// Most rows one `GET /evals` returns.
const LIST_LIMIT: i64 = 1000;

#[derive(Deserialize)]
pub struct StoreRequest {
    fn_key: String,
    args_hash: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
pub struct ListQuery {
    fn_key: Option<String>,
    args_hash: Option<String>,
}

#[derive(Serialize, sqlx::FromRow)]
pub struct Eval {
    fn_key: String,
    args_hash: String,
    result: serde_json::Value,
    updated_at: DateTime<Utc>,
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    Ok(())
}

pub async fn store(
    State(state): State<AppState>,
    caller: ApiKeyUser,
    body: Result<Json<StoreRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body?;
    check_len("fn_key", &req.fn_key, 512)?;
    check_len("args_hash", &req.args_hash, 256)?;
    // xmax = 0 only on a freshly inserted row: tells insert from update in one statement.
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO evals (user_id, fn_key, args_hash, result) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, fn_key, args_hash)
         DO UPDATE SET result = EXCLUDED.result, updated_at = now()
         RETURNING (xmax = 0)",
    )
    .bind(caller.user_id)
    .bind(&req.fn_key)
    .bind(&req.args_hash)
    .bind(&req.result)
    .fetch_one(&mut *state.db.acquire().await?)
    .await?;
    let status = if inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "fn_key": req.fn_key, "args_hash": req.args_hash })),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    caller: ApiKeyUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    let fn_key = q
        .fn_key
        .ok_or_else(|| ApiError::BadRequest("the fn_key query parameter is required".into()))?;
    check_len("fn_key", &fn_key, 512)?;
    let evals: Vec<Eval> = sqlx::query_as(
        "SELECT fn_key, args_hash, result, updated_at FROM evals
         WHERE user_id = $1 AND fn_key = $2 AND ($3::text IS NULL OR args_hash = $3)
         ORDER BY args_hash LIMIT $4",
    )
    .bind(caller.user_id)
    .bind(&fn_key)
    .bind(q.args_hash.as_deref())
    .bind(LIST_LIMIT)
    .fetch_all(&mut *state.db.acquire().await?)
    .await?;
    Ok(Json(json!({ "evals": evals })))
}
