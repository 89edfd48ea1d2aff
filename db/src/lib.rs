//! What the API (`hitsave`) and the migrator (`migrate`) share: how they read their settings and
//! secrets, how they connect to PostgreSQL, and what the schema they were built with looks like.

pub mod env;
pub mod login;
pub mod schema;
pub mod secret;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

pub use env::EnvError;
pub use login::Db;
pub use secret::{Secret, SecretError};

/// Where the database is and how to log in. Plain settings come from the environment; the
/// password only ever from the file named by `POSTGRES_PASSWORD_FILE`.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret,
    /// The password before a rotation, while one is under way (`POSTGRES_PASSWORD_PREVIOUS_FILE`,
    /// empty otherwise): the database may still want it (see `login`).
    pub previous_password: Option<Secret>,
    pub max_connections: u32,
    /// TLS to the server (`POSTGRES_SSLMODE`, libpq's names; `prefer` by default). An external
    /// server (RDS) is `verify-full`: TLS, a certificate from the CA bundle, for this host name.
    pub ssl_mode: PgSslMode,
    /// The CA bundle the server's certificate is checked against (`POSTGRES_SSL_ROOT_CERT_FILE`;
    /// the bundled public roots are trusted too). Required by verify-ca and verify-full.
    pub ssl_root_cert: Option<std::path::PathBuf>,
}

impl DbConfig {
    /// Reads `POSTGRES_HOST` (localhost), `POSTGRES_PORT` (5432), `POSTGRES_DB` (hitsave),
    /// `POSTGRES_USER` (hitsave), `POSTGRES_MAX_CONNECTIONS` (10), `POSTGRES_PASSWORD_FILE` and
    /// the optional `POSTGRES_PASSWORD_PREVIOUS_FILE`, `POSTGRES_SSLMODE` (prefer) and
    /// `POSTGRES_SSL_ROOT_CERT_FILE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let ssl_mode: PgSslMode = env::parse("POSTGRES_SSLMODE", PgSslMode::Prefer)?;
        let ssl_root_cert = match std::env::var("POSTGRES_SSL_ROOT_CERT_FILE") {
            Ok(path) if !path.is_empty() => Some(std::path::PathBuf::from(path)),
            _ => None,
        };
        let verifies = matches!(ssl_mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull);
        match &ssl_root_cert {
            None if verifies => {
                return Err(ConfigError::Tls(format!(
                    "POSTGRES_SSLMODE={} needs POSTGRES_SSL_ROOT_CERT_FILE, the CA bundle the server's certificate is checked against",
                    env::string("POSTGRES_SSLMODE", "")
                )));
            }
            // Read now: a missing bundle is a start-up error, not a refused connection later.
            Some(path) => match std::fs::read_to_string(path) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => {
                    return Err(ConfigError::Tls(format!(
                        "POSTGRES_SSL_ROOT_CERT_FILE={} holds no PEM certificate",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(ConfigError::Tls(format!(
                        "cannot read POSTGRES_SSL_ROOT_CERT_FILE={}: {e}",
                        path.display()
                    )));
                }
            },
            None => {}
        }
        Ok(Self {
            ssl_mode,
            ssl_root_cert,
            host: env::string("POSTGRES_HOST", "localhost"),
            port: env::parse("POSTGRES_PORT", 5432)?,
            database: env::string("POSTGRES_DB", "hitsave"),
            user: env::string("POSTGRES_USER", "hitsave"),
            password: Secret::from_file_env("POSTGRES_PASSWORD_FILE")?,
            previous_password: Secret::previous_from_file_env("POSTGRES_PASSWORD_PREVIOUS_FILE")?,
            max_connections: env::parse("POSTGRES_MAX_CONNECTIONS", 10)?,
        })
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        let options = PgConnectOptions::new();
        let options = match &self.ssl_root_cert {
            Some(path) => options.ssl_root_cert(path),
            None => options,
        };
        options
            .ssl_mode(self.ssl_mode)
            .host(&self.host)
            .port(self.port)
            .database(&self.database)
            .username(&self.user)
            .password(self.password.expose())
            .application_name(env!("CARGO_PKG_NAME"))
    }

    /// A pool that connects on first use, so a process can start (and say it is not ready)
    /// while the database is still coming up.
    pub fn lazy_pool(&self) -> Db {
        self.lazy_pool_with(self.connect_options())
    }

    /// The same pool on `options` (these settings with more, such as session parameters),
    /// which logs in with the previous password too while a rotation is under way.
    pub fn lazy_pool_with(&self, options: PgConnectOptions) -> Db {
        let mut logins = vec![options.clone()];
        if let Some(previous) = &self.previous_password {
            logins.push(options.password(previous.expose()));
        }
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(logins[0].clone());
        Db::new(pool, logins)
    }

    /// Where this config points, for messages: never includes the password.
    pub fn describe(&self) -> String {
        let tls = match self.ssl_mode {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        };
        format!(
            "postgres://{}@{}:{}/{}?sslmode={tls}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// A setting or secret that stops a program from starting. Messages name the variable and,
/// for secrets, the file, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Tls(String),
}
