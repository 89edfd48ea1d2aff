//! What this host is configured to be: its environment and the base images it builds on.

use anyhow::Context;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Env {
    /// hitsave.io on 0.0.0.0:80 and :443 with TLS files from <root>/tls.
    Production,
    /// staging.hitsave.io, like production.
    Staging,
    /// hitsave-local.io on 127.0.0.1 without TLS (tests, a laptop).
    Local,
}

impl Env {
    /// As `--env` and release.env's HITSAVE_ENV spell it.
    pub fn name(self) -> &'static str {
        match self {
            Env::Production => "production",
            Env::Staging => "staging",
            Env::Local => "local",
        }
    }

    /// The environment `name` spells, or an error listing them.
    pub fn parse(name: &str) -> anyhow::Result<Env> {
        [Env::Production, Env::Staging, Env::Local]
            .into_iter()
            .find(|e| e.name() == name)
            .with_context(|| {
                format!("{name:?} is not an environment: use production, staging or local")
            })
    }

    /// The domain the site serves.
    pub fn domain(self) -> &'static str {
        match self {
            Env::Production => "hitsave.io",
            Env::Staging => "staging.hitsave.io",
            Env::Local => "hitsave-local.io",
        }
    }
    pub fn tls(self) -> bool {
        self != Env::Local
    }
}

/// Base images: the official ones, or the local equivalents (deploy/base-images).
pub fn base_images(local: bool) -> [(&'static str, &'static str); 4] {
    if local {
        [
            ("HITSAVE_RUNTIME_BASE", "hitsave-base/debian:bookworm"),
            ("HITSAVE_NODE_BASE", "hitsave-base/node:20"),
            ("HITSAVE_POSTGRES_IMAGE", "hitsave-base/postgres:15"),
            ("HITSAVE_NGINX_IMAGE", "hitsave-base/nginx:bookworm"),
        ]
    } else {
        [
            ("HITSAVE_RUNTIME_BASE", "debian:bookworm-slim"),
            ("HITSAVE_NODE_BASE", "node:22-bookworm-slim"),
            ("HITSAVE_POSTGRES_IMAGE", "postgres:15-bookworm"),
            ("HITSAVE_NGINX_IMAGE", "nginx:1.27-bookworm"),
        ]
    }
}
