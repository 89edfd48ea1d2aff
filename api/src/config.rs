//! The API's settings: plain values from the environment, secrets from files.

use std::net::IpAddr;
use std::time::Duration;

use hitsave_db::{ConfigError, DbConfig, Secret, env};

#[derive(Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub db: DbConfig,
    /// Signs the session tokens that authorise issuing API keys.
    pub jwt_secret: Secret,
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
            gh_client_secret: Secret::from_file_env("GH_CLIENT_SECRET_FILE")?,
            shutdown_grace: Duration::from_secs(env::parse("SHUTDOWN_GRACE_SECS", 20)?),
            log_json: env::string("LOG_FORMAT", "text") == "json",
        })
    }
}
