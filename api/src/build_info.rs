//! Which build this is, baked in at compile time by the release pipeline.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub release: &'static str,
}

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: match option_env!("HITSAVE_COMMIT") {
        Some(c) => c,
        None => "unknown",
    },
    release: match option_env!("HITSAVE_RELEASE") {
        Some(r) => r,
        None => "dev",
    },
};
