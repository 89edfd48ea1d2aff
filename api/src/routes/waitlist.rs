//! `PUT /waitlist {"email": ...}`: join the waitlist. Idempotent: 201 the first time, 200 after.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct JoinRequest {
    email: String,
}

pub async fn join(
    State(state): State<AppState>,
    body: Result<Json<JoinRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body?;
    let email = valid_email(&req.email).map_err(|m| ApiError::BadRequest(m.to_owned()))?;
    let inserted = sqlx::query(
        "INSERT INTO waitlist (email) VALUES ($1) ON CONFLICT ((lower(email))) DO NOTHING",
    )
    .bind(email)
    .execute(&mut *state.db.acquire().await?)
    .await?
    .rows_affected()
        == 1;
    let status = if inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "email": email, "joined": true }))))
}

/// A deliberately plain check: one `@`, something before it, a dotted domain after it, no
/// spaces, at most 254 characters. Deliverability is the mail server's business.
pub fn valid_email(raw: &str) -> Result<&str, &'static str> {
    let email = raw.trim();
    if email.is_empty() {
        return Err("email is required");
    }
    if email.len() > 254 {
        return Err("email is longer than 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("email must not contain spaces");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("email must contain @");
    };
    if local.is_empty() || domain.contains('@') {
        return Err("email must have one @ with a name before it");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err("email's domain must look like example.com");
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn accepts_ordinary_addresses() {
        assert_eq!(valid_email("  ada@example.com "), Ok("ada@example.com"));
        assert!(valid_email("a.b+tag@mail.example.co.uk").is_ok());
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "ada@exa mple.com",
            "ada@.com",
            "ada@example.",
        ] {
            assert!(valid_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(valid_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
