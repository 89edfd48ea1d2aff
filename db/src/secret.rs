//! Secrets come from files (Docker/Compose secrets under /run/secrets), named by `*_FILE`
//! variables. A value never comes from the environment itself, and never reaches a log or an
//! error message: `Secret` prints as `[redacted]`.

use std::path::PathBuf;

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Reads the secret whose file is named by `var` (for example `POSTGRES_PASSWORD_FILE`).
    /// Refuses the insecure twin without the suffix (`POSTGRES_PASSWORD`) if it is set, so a
    /// value placed in the environment by mistake is noticed instead of silently ignored.
    pub fn from_file_env(var: &'static str) -> Result<Self, SecretError> {
        let plain = var.strip_suffix("_FILE").unwrap_or(var);
        if std::env::var_os(plain).is_some() {
            return Err(SecretError::InEnvironment {
                var,
                plain: plain.to_owned(),
            });
        }
        let path = match std::env::var_os(var) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Err(SecretError::Unset { var }),
        };
        let raw = std::fs::read_to_string(&path).map_err(|source| SecretError::Unreadable {
            var,
            path: path.clone(),
            source,
        })?;
        // Files written by editors and `echo` end with a newline that is not part of the secret.
        let value = raw.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(SecretError::Empty { var, path });
        }
        Ok(Self(value.to_owned()))
    }

    /// The value before a rotation, from the file named by `var` (`*_PREVIOUS_FILE`): `None`
    /// when the variable is unset or the file is empty (no rotation under way).
    pub fn previous_from_file_env(var: &'static str) -> Result<Option<Self>, SecretError> {
        if std::env::var_os(var).is_none_or(|p| p.is_empty()) {
            return Ok(None);
        }
        match Self::from_file_env(var) {
            Ok(s) => Ok(Some(s)),
            Err(SecretError::Empty { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{var} is not set: point it at the file that holds the secret (for example /run/secrets/...)"
    )]
    Unset { var: &'static str },
    #[error("cannot read the secret file {path} named by {var}: {source}")]
    Unreadable {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secret file {path} named by {var} is empty")]
    Empty { var: &'static str, path: PathBuf },
    #[error(
        "{plain} is set in the environment; secrets are read only from files: unset {plain} and set {var} to the secret's file"
    )]
    InEnvironment { var: &'static str, plain: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
