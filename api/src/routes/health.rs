//! Liveness (`/health`: the process answers) and readiness (`/ready`: it can do its job).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hitsave_db::schema::{self, MIGRATOR, SchemaReport};
use serde_json::json;

use crate::AppState;
use crate::build_info::BUILD;

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "service": "hitsave",
        "version": BUILD.version,
        "commit": BUILD.commit,
        "release": BUILD.release,
    }))
}

/// 200 only when the database answers and has every migration this binary was built with.
pub async fn ready(State(state): State<AppState>) -> Response {
    let applied = match state.db.acquire().await {
        Ok(mut conn) => schema::applied(&mut conn).await,
        Err(e) => Err(e),
    };
    let verdict = match applied {
        Err(e) => Err(format!("database unavailable: {e}")),
        Ok(applied) => SchemaReport::compare(&MIGRATOR, &applied).ready_for_this_binary(),
    };
    match verdict {
        Ok(()) => Json(json!({ "ready": true, "release": BUILD.release })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}
