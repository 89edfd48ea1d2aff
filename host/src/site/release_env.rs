//! release.env: the settings compose interpolates for one release on this host (image tags,
//! ports, paths, the domain, an external database). Never secrets: those stay files. Written
//! by install (`release::install`), read through the typed accessors here, so the names of
//! its variables are spelled in this module and in the compose files only. A file written by
//! an older install keeps the variables it has, unknown ones included.

use std::collections::BTreeMap;

use anyhow::Context;
use camino::Utf8Path;
use hitsave_schema::ReleaseId;

use crate::site::app::App;
use crate::site::settings::Env;

/// One release's release.env.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseEnv {
    vars: BTreeMap<String, String>,
}

/// The external database a release.env names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalDbEnv {
    /// HITSAVE_DB_HOST.
    pub host: String,
    /// HITSAVE_DB_PORT.
    pub port: String,
    /// HITSAVE_DB_NAME.
    pub name: String,
    /// HITSAVE_DB_USER.
    pub user: String,
    /// HITSAVE_DB_CA_FILE.
    pub ca_file: String,
    /// HITSAVE_DB_NETWORK, when the server is in a Docker network.
    pub network: Option<String>,
}

impl ReleaseEnv {
    fn get(&self, key: &str) -> anyhow::Result<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("release.env has no {key}"))
    }

    /// Sets `key` (install writes the file this way).
    pub fn set(&mut self, key: &str, value: String) {
        self.vars.insert(key.to_owned(), value);
    }

    /// HITSAVE_RELEASE: the release the stack runs.
    pub fn release(&self) -> anyhow::Result<ReleaseId> {
        ReleaseId::new(self.get("HITSAVE_RELEASE")?)
            .map_err(|e| anyhow::anyhow!("HITSAVE_RELEASE in release.env: {e}"))
    }

    /// HITSAVE_PROJECT: the compose project.
    pub fn project(&self) -> anyhow::Result<&str> {
        self.get("HITSAVE_PROJECT")
    }

    /// HITSAVE_ENV: the environment the release was installed for.
    pub fn env(&self) -> anyhow::Result<Env> {
        Env::parse(self.get("HITSAVE_ENV")?)
    }

    /// The environment's name (`staging`, `preview-42`), `production` for a file from before
    /// hosts recorded it.
    pub fn env_name(&self) -> &str {
        self.vars
            .get("HITSAVE_ENV_NAME")
            .or_else(|| self.vars.get("HITSAVE_ENV"))
            .map_or("production", String::as_str)
    }

    /// HITSAVE_HSTS_MAX_AGE: Strict-Transport-Security's max-age, when the host set one.
    pub fn hsts_max_age(&self) -> Option<u64> {
        self.vars.get("HITSAVE_HSTS_MAX_AGE")?.parse().ok()
    }

    /// HITSAVE_DOMAIN: the domain the site serves.
    pub fn domain(&self) -> anyhow::Result<&str> {
        self.get("HITSAVE_DOMAIN")
    }

    /// HITSAVE_HTTP_PORT: the host port nginx answers HTTP on.
    pub fn http_port(&self) -> anyhow::Result<u16> {
        self.get("HITSAVE_HTTP_PORT")?
            .parse()
            .context("HITSAVE_HTTP_PORT in release.env is not a port")
    }

    /// HITSAVE_LOGS_GROUP: the CloudWatch Logs group the containers log to, if any.
    pub fn logs_group(&self) -> Option<&str> {
        self.vars.get("HITSAVE_LOGS_GROUP").map(String::as_str)
    }

    /// HITSAVE_LOGS_REGION: the group's region.
    /// HITSAVE_DB_DIR: the directory on the data volume the database's files are in, if any.
    pub fn db_dir(&self) -> Option<&Utf8Path> {
        self.vars
            .get("HITSAVE_DB_DIR")
            .map(|d| Utf8Path::new(d.as_str()))
    }

    pub fn logs_region(&self) -> Option<&str> {
        self.vars.get("HITSAVE_LOGS_REGION").map(String::as_str)
    }

    /// HITSAVE_LOGS_ENDPOINT: another CloudWatch Logs endpoint than the region's.
    pub fn logs_endpoint(&self) -> Option<&str> {
        self.vars.get("HITSAVE_LOGS_ENDPOINT").map(String::as_str)
    }

    /// HITSAVE_HTTPS_PORT: the host port nginx answers HTTPS on.
    pub fn https_port(&self) -> anyhow::Result<u16> {
        self.get("HITSAVE_HTTPS_PORT")?
            .parse()
            .context("HITSAVE_HTTPS_PORT in release.env is not a port")
    }

    /// HITSAVE_SECRETS_DIR: the secret files the stack mounts.
    pub fn secrets_dir(&self) -> anyhow::Result<&Utf8Path> {
        self.get("HITSAVE_SECRETS_DIR").map(Utf8Path::new)
    }

    /// HITSAVE_TLS_DIR: the certificate files nginx mounts.
    pub fn tls_dir(&self) -> anyhow::Result<&Utf8Path> {
        self.get("HITSAVE_TLS_DIR").map(Utf8Path::new)
    }

    /// HITSAVE_<COMPONENT>_TAG: the image tag of an image the release builds.
    pub fn image_tag(&self, component: &str) -> anyhow::Result<&str> {
        self.get(&format!("HITSAVE_{}_TAG", component.to_uppercase()))
    }

    /// A base image, by its variable (`stack::IMAGES` names them).
    pub fn base_image(&self, variable: &str) -> anyhow::Result<&str> {
        self.get(variable)
    }

    /// HITSAVE_POSTGRES_IMAGE: the image the database (and the restore drill) runs.
    pub fn postgres_image(&self) -> anyhow::Result<&str> {
        self.get("HITSAVE_POSTGRES_IMAGE")
    }

    /// HITSAVE_RUNTIME_BASE: the image the Rust programs run on.
    pub fn runtime_base(&self) -> anyhow::Result<&str> {
        self.get("HITSAVE_RUNTIME_BASE")
    }

    /// The external database, when the stack has no db of its own.
    pub fn external_db(&self) -> Option<ExternalDbEnv> {
        let get = |k: &str| self.vars.get(k).cloned().unwrap_or_default();
        self.vars.get("HITSAVE_DB_HOST").map(|host| ExternalDbEnv {
            host: host.clone(),
            port: get("HITSAVE_DB_PORT"),
            name: get("HITSAVE_DB_NAME"),
            user: get("HITSAVE_DB_USER"),
            ca_file: get("HITSAVE_DB_CA_FILE"),
            network: self.vars.get("HITSAVE_DB_NETWORK").cloned(),
        })
    }

    /// The release id (and commit) `app` reports: the release that brought its image. Releases
    /// installed before apps kept their own id have only HITSAVE_RELEASE.
    pub fn app_release(&self, app: App) -> anyhow::Result<(&str, &str)> {
        let upper = app.service().to_uppercase();
        let release = self
            .vars
            .get(&format!("HITSAVE_{upper}_RELEASE"))
            .map(String::as_str)
            .map_or_else(|| self.get("HITSAVE_RELEASE"), Ok)?;
        let commit = self
            .vars
            .get(&format!("HITSAVE_{upper}_COMMIT"))
            .map(String::as_str)
            .map_or_else(|| self.get("HITSAVE_COMMIT"), Ok)?;
        Ok((release, commit))
    }

    /// Records the release and commit `app` reports.
    pub fn set_app_release(&mut self, app: App, release: String, commit: String) {
        let upper = app.service().to_uppercase();
        self.vars
            .insert(format!("HITSAVE_{upper}_RELEASE"), release);
        self.vars.insert(format!("HITSAVE_{upper}_COMMIT"), commit);
    }

    /// Reads `path`.
    pub fn read(path: &Utf8Path) -> anyhow::Result<ReleaseEnv> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        Ok(ReleaseEnv {
            vars: crate::kit::env_file::parse(path, &text)?
                .into_iter()
                .map(|l| (l.key, l.value))
                .collect(),
        })
    }

    /// Written beside, then renamed: a crash never leaves half a file.
    pub fn write(&self, path: &Utf8Path) -> anyhow::Result<()> {
        let mut text = String::from("# Written by xtask install; read by docker compose.\n");
        for (k, v) in &self.vars {
            anyhow::ensure!(!v.contains('\n'), "{k} must be one line (release.env)");
            text.push_str(&format!("{k}={v}\n"));
        }
        let tmp = path.with_extension("env.new");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {tmp}"))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
