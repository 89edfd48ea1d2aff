//! Who is calling. Two kinds of credential, both sent as `Authorization: Bearer ...`:
//! - a session token (JWT, HS256, signed with JWT_SECRET) for a signed-in person, which may
//!   issue API keys. While `xtask secrets rotate jwt_secret` has a grace period running, tokens
//!   signed with the previous secret (JWT_SECRET_PREVIOUS_FILE) are accepted until
//!   JWT_SECRET_PREVIOUS_UNTIL, and `POST /session/refresh` trades one for a token signed with
//!   the current secret;
//! - an API key (`hs_` + 64 hex digits) for the HitSave client library, which reads and writes
//!   evals. Keys are looked up by their SHA-256; the key itself is never stored.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
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

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// The keys session tokens are signed and checked with.
pub struct Sessions {
    signing: EncodingKey,
    current: DecodingKey,
    /// The secret before a rotation and the end of its grace period.
    previous: Option<(DecodingKey, SystemTime)>,
    /// How long a token from `refresh` lives.
    lifetime: Duration,
}

impl Sessions {
    pub fn new(
        current: &str,
        previous: Option<(&str, SystemTime)>,
        lifetime: Duration,
    ) -> Sessions {
        Sessions {
            signing: EncodingKey::from_secret(current.as_bytes()),
            current: DecodingKey::from_secret(current.as_bytes()),
            previous: previous.map(|(s, until)| (DecodingKey::from_secret(s.as_bytes()), until)),
            lifetime,
        }
    }

    /// The login in a valid token: signed with the current secret or, until its grace period
    /// ends, the previous one.
    fn check(&self, token: &str) -> Option<String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let mut keys = vec![&self.current];
        if let Some((key, until)) = &self.previous
            && SystemTime::now() < *until
        {
            keys.push(key);
        }
        keys.into_iter().find_map(|key| {
            jsonwebtoken::decode::<Claims>(token, key, &validation)
                .ok()
                .map(|data| data.claims.sub)
        })
    }

    /// A new token for `login`, signed with the current secret; and when it expires.
    pub fn issue(&self, login: &str) -> (String, SystemTime) {
        let expires = SystemTime::now() + self.lifetime;
        let claims = Claims {
            sub: login.to_owned(),
            exp: expires
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing)
            .expect("HS256 signing cannot fail");
        (token, expires)
    }
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
        let github_login = state
            .sessions
            .check(token)
            .ok_or(ApiError::Unauthorized("invalid or expired session token"))?;
        Ok(SessionUser { github_login })
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
        .fetch_optional(&mut *state.db.acquire().await?)
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
    fn the_previous_secret_counts_only_until_its_grace_ends() {
        let hour = Duration::from_secs(3600);
        let old = Sessions::new("old-secret", None, hour);
        let (token, _) = old.issue("ada");
        let now = SystemTime::now();
        let in_grace = Sessions::new("new-secret", Some(("old-secret", now + hour)), hour);
        assert_eq!(in_grace.check(&token).as_deref(), Some("ada"));
        let (fresh, _) = in_grace.issue("ada");
        assert_eq!(
            Sessions::new("new-secret", None, hour)
                .check(&fresh)
                .as_deref(),
            Some("ada"),
            "refreshed tokens are signed with the current secret"
        );
        assert_eq!(old.check(&fresh), None);
        let over = Sessions::new("new-secret", Some(("old-secret", now - hour)), hour);
        assert_eq!(over.check(&token), None);
        assert_eq!(Sessions::new("new-secret", None, hour).check(&token), None);
    }

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
