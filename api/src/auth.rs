//! Who is calling. Two kinds of credential, both sent as `Authorization: Bearer ...`:
//! - a session token (JWT, HS256, signed with JWT_SECRET) for a signed-in person, which may
//!   issue API keys;
//! - an API key (`hs_` + 64 hex digits) for the HitSave client library, which reads and writes
//!   evals. Keys are looked up by their SHA-256; the key itself is never stored.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

pub const API_KEY_PREFIX: &str = "hs_";

/// A signed-in person, identified by their GitHub login.
#[derive(Debug)]
pub struct SessionUser {
    pub github_login: String,
}

/// The owner of a valid API key.
#[derive(Debug)]
pub struct ApiKeyUser {
    pub user_id: i64,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
}

pub fn session_key(secret: &str) -> DecodingKey {
    DecodingKey::from_secret(secret.as_bytes())
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing Authorization header"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(
            "Authorization must be `Bearer <token>`",
        ))
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &state.session_key, &validation)
            .map_err(|_| ApiError::Unauthorized("invalid or expired session token"))?;
        Ok(SessionUser {
            github_login: data.claims.sub,
        })
    }
}

/// The digest under which a key is stored.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random API key.
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("{API_KEY_PREFIX}{}", hex::encode(bytes))
}

impl FromRequestParts<AppState> for ApiKeyUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts)?;
        if !key.starts_with(API_KEY_PREFIX) {
            return Err(ApiError::Unauthorized("expected an API key (hs_...)"));
        }
        let user_id: Option<i64> = sqlx::query_scalar(
            "UPDATE api_keys SET last_used_at = now() WHERE key_hash = $1 RETURNING user_id",
        )
        .bind(&key_digest(key)[..])
        .fetch_optional(&state.pool)
        .await?;
        user_id
            .map(|user_id| ApiKeyUser { user_id })
            .ok_or(ApiError::Unauthorized("unknown API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_well_formed() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), API_KEY_PREFIX.len() + 64);
        assert!(
            a[API_KEY_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
    }
}
