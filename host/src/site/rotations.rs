//! `<root>/secrets/rotations.json`: for each secret rotated, when, whether the new value is
//! applied yet, and when the grace period of the value it replaced ends. Times and names only,
//! never a value. compose reads the JWT secret's deadline from it (`compose_env`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

/// Every rotation's state, by secret name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Rotations(pub BTreeMap<String, Rotation>);

/// The last rotation of one secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    /// When it began (Unix seconds).
    pub started: u64,
    /// When the previous value stops being accepted and is removed (Unix seconds).
    pub grace_until: u64,
    /// The new value is in use: the containers that mount it were replaced (and, for the
    /// database password, the role's password changed). False after a rotation that was
    /// interrupted: running `rotate` again finishes it.
    pub applied: bool,
    /// The grace period ended: the previous value was removed and no container holds it.
    #[serde(default)]
    pub expired: bool,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A Unix time as RFC 3339, for messages.
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn file(secrets_dir: &Utf8Path) -> Utf8PathBuf {
    secrets_dir.join("rotations.json")
}

impl Rotations {
    pub fn read(secrets_dir: &Utf8Path) -> anyhow::Result<Rotations> {
        let path = file(secrets_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{path} is not a rotation record: fix or remove it")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Rotations::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {path}")),
        }
    }

    pub fn write(&self, secrets_dir: &Utf8Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        crate::kit::files::replace_private(&file(secrets_dir), &text)
    }

    /// Rotations whose new value is applied and whose grace period is over, not yet expired.
    pub fn due(&self, now: u64) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, r)| r.applied && !r.expired && r.grace_until <= now)
            .map(|(name, _)| name.clone())
            .collect()
    }
}
