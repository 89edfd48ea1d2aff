//! The API's settings: plain values from the environment, secrets from files.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hitsave_db::{ConfigError, DbConfig, Secret, env};

#[derive(Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub db: DbConfig,
    /// Signs the session tokens that authorise issuing API keys.
    pub jwt_secret: Secret,
    /// The secret before the last rotation, accepted (never used to sign) until the end of its
    /// grace period: `JWT_SECRET_PREVIOUS_FILE` and `JWT_SECRET_PREVIOUS_UNTIL` (Unix seconds).
    pub jwt_previous: Option<(Secret, SystemTime)>,
    /// How long a session token from `POST /session/refresh` lives.
    pub session_lifetime: Duration,
    /// The GitHub OAuth app's secret. Read and checked at start-up so that a deploy without it
    /// fails before it gets traffic; the GitHub sign-in flow that uses it is not in this slice.
    #[expect(dead_code, reason = "GitHub sign-in is not implemented yet")]
    pub gh_client_secret: Secret,
    /// How long in-flight requests may run after SIGTERM before they are cut off.
    pub shutdown_grace: Duration,
    pub log_json: bool,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            host: env::parse("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: env::parse("PORT", 8080)?,
            db: DbConfig::from_env()?,
            jwt_secret: Secret::from_file_env("JWT_SECRET_FILE")?,
            jwt_previous: match Secret::previous_from_file_env("JWT_SECRET_PREVIOUS_FILE")? {
                Some(previous) => Some((
                    previous,
                    UNIX_EPOCH + Duration::from_secs(env::parse("JWT_SECRET_PREVIOUS_UNTIL", 0)?),
                )),
                None => None,
            },
            session_lifetime: Duration::from_secs(env::parse("SESSION_LIFETIME_SECS", 86_400)?),
            gh_client_secret: Secret::from_file_env("GH_CLIENT_SECRET_FILE")?,
            shutdown_grace: Duration::from_secs(env::parse("SHUTDOWN_GRACE_SECS", 20)?),
            log_json: env::string("LOG_FORMAT", "text") == "json",
        })
    }
}
