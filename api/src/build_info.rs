//! Which build this is. The version is compiled in; the release id and commit come from the
//! environment at start-up (`HITSAVE_RELEASE`, `HITSAVE_COMMIT`, set by `cargo xtask install`).
//! They are not baked into the binary so that an unchanged API is built once and the same
//! artifact serves every release that contains it.

use std::sync::LazyLock;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: String,
    pub release: String,
}

pub static BUILD: LazyLock<BuildInfo> = LazyLock::new(|| BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: from_env("HITSAVE_COMMIT", "unknown"),
    release: from_env("HITSAVE_RELEASE", "dev"),
});

fn from_env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}
