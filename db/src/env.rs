//! Plain (non-secret) settings from environment variables.

use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{var}={value:?} is not valid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// The variable's value, or `default` when it is unset or empty.
pub fn string(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => default.to_owned(),
    }
}

/// The variable parsed as `T`, or `default` when it is unset or empty.
pub fn parse<T>(var: &'static str, default: T) -> Result<T, EnvError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|e: T::Err| EnvError::Invalid {
            var,
            value: v,
            reason: e.to_string(),
        }),
        _ => Ok(default),
    }
}
