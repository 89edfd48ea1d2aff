//! The HTTP surface of the API.

mod api_keys;
mod evals;
mod health;
mod session;
mod waitlist;

use axum::Router;
use axum::routing::{get, post, put};

use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/waitlist", put(waitlist::join))
        .route("/api_keys", get(api_keys::list).post(api_keys::issue))
        .route("/evals", get(evals::list).put(evals::store))
        .route("/session/refresh", post(session::refresh))
        .with_state(state)
}
