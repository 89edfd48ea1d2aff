//! history.jsonl: one line per change to the host (install, rollback, backup, restore, a
//! secret set, rotated or expired), who made it and how it ended. Appended and synced before
//! the change's lock is let go; read by status, rollback's and restore's `--before`, and the
//! hooks' downgrade check.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use anyhow::Context;
use hitsave_schema::ReleaseId;
use serde::{Deserialize, Serialize};

use crate::site::host::Host;

/// What a line of history.jsonl records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Install,
    Rollback,
    /// `xtask backup` (a pre-migrate backup is named by its install's line instead).
    Backup,
    /// `xtask restore`.
    Restore,
    /// `xtask secrets set` of the secret named in `secret`.
    SetSecret,
    /// `xtask secrets rotate`: the new value applied with no request dropped.
    RotateSecret,
    /// A rotation's grace period ended: the previous value was removed.
    ExpireSecret,
}

/// How an install or a rollback ended; history.jsonl spells it in kebab-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The release is current and serves.
    Installed,
    /// It was current and serving already: nothing was done.
    AlreadyInstalled,
    /// `--until fetched`: downloaded, verified and unpacked; the stack is unchanged.
    Fetched,
    /// `--until prepared`: also checked and its images built; the stack is unchanged.
    Prepared,
    /// The new version never served: the old one was brought back and serves again.
    RolledBack,
    /// Stopped with an error; see `error`.
    Failed,
    /// A backup was taken.
    Done,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Install => "install",
            Action::Rollback => "rollback",
            Action::Backup => "backup",
            Action::Restore => "restore",
            Action::SetSecret => "set-secret",
            Action::RotateSecret => "rotate-secret",
            Action::ExpireSecret => "expire-secret",
        })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Installed => "installed",
            Outcome::AlreadyInstalled => "already-installed",
            Outcome::Fetched => "fetched",
            Outcome::Prepared => "prepared",
            Outcome::RolledBack => "rolled-back",
            Outcome::Failed => "failed",
            Outcome::Done => "done",
        })
    }
}

/// One line of history.jsonl. Never holds a secret: ids, times, outcomes and error messages
/// (which name files and variables, never values).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339, UTC.
    pub time: String,
    pub action: Action,
    pub release: ReleaseId,
    /// What was current before.
    pub previous: Option<ReleaseId>,
    pub outcome: Outcome,
    /// The CodeDeploy deployment (DEPLOYMENT_ID) when the agent ran us.
    pub deployment: Option<String>,
    pub seconds: f64,
    pub error: Option<String>,
    /// The backup taken before this install's migrations (its id), if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<hitsave_schema::BackupId>,
    /// True when migrations ran without a backup (`--skip-backup`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup_skipped: bool,
    /// Who ran it: the user behind sudo, else the user (`root` for CodeDeploy's agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The key that signed the release's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<SignedBy>,
    /// The channel the release was installed from (`--channel`): the downgrade check reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<hitsave_schema::Channel>,
    /// The secret a `secrets` command set, rotated or expired: its name, never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The environment an install was for (`--env`): the hooks' downgrade check reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// What the team was told, and whether it reached them (`site::notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<String>,
}

/// Who runs this command, for history: SUDO_USER when run through sudo, else USER.
pub fn who() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"]
        .into_iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

impl HistoryEntry {
    /// A line for `action` on `release`, with the fields every line has filled: the time, who
    /// runs it and CodeDeploy's deployment. It ends as `Failed` until it is finished.
    pub fn new(action: Action, release: ReleaseId) -> HistoryEntry {
        HistoryEntry {
            time: crate::kit::time::now_rfc3339(),
            action,
            release,
            previous: None,
            outcome: Outcome::Failed,
            deployment: std::env::var("DEPLOYMENT_ID").ok(),
            seconds: 0.0,
            error: None,
            backup: None,
            backup_skipped: false,
            by: who(),
            signed_by: None,
            channel: None,
            secret: None,
            env: None,
            notified: None,
        }
    }
}

/// Who signed an installed release's manifest: a key (minisign's id), or nobody, when it was
/// installed with `--allow-unsigned`. history.jsonl spells it as the id or `unsigned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SignedBy {
    /// The key's id, as minisign prints it.
    Key(String),
    /// Installed with `--allow-unsigned`.
    Unsigned,
}

impl From<String> for SignedBy {
    fn from(word: String) -> SignedBy {
        if word == "unsigned" {
            SignedBy::Unsigned
        } else {
            SignedBy::Key(word)
        }
    }
}

impl From<SignedBy> for String {
    fn from(signed: SignedBy) -> String {
        match signed {
            SignedBy::Key(id) => id,
            SignedBy::Unsigned => "unsigned".to_owned(),
        }
    }
}

impl Host {
    /// Appends `entry` to history.jsonl and syncs it.
    pub fn record(&self, entry: &HistoryEntry) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(entry)?;
        line.push('\n');
        let path = self.history_file();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {path}"))?;
        // Older hosts made it 0644: who ran what, and the errors, are root's to read.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    /// Every line of history.jsonl, oldest first.
    pub fn history(&self) -> anyhow::Result<Vec<HistoryEntry>> {
        let text = match std::fs::read_to_string(self.history_file()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context("cannot read history.jsonl"),
        };
        // A line cut short by a crash is skipped, not fatal.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// The newest release (by commit time) installed here from `channel`, if any.
    pub fn newest_from_channel(&self, channel: &str) -> anyhow::Result<Option<ReleaseId>> {
        Ok(self
            .history()?
            .into_iter()
            .filter(|e| {
                e.action == Action::Install
                    && e.channel.as_deref() == Some(channel)
                    && matches!(e.outcome, Outcome::Installed | Outcome::AlreadyInstalled)
            })
            .map(|e| e.release)
            .max_by(|a, b| a.commit_time().cmp(b.commit_time())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// history.jsonl keeps its words: the enums serialise as the strings it always had.
    #[test]
    fn history_words() {
        for (outcome, word) in [
            (Outcome::Installed, "installed"),
            (Outcome::AlreadyInstalled, "already-installed"),
            (Outcome::Fetched, "fetched"),
            (Outcome::Prepared, "prepared"),
            (Outcome::RolledBack, "rolled-back"),
            (Outcome::Failed, "failed"),
            (Outcome::Done, "done"),
        ] {
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{word}\"")
            );
            assert_eq!(outcome.to_string(), word);
        }
        assert_eq!(
            serde_json::to_string(&Action::Rollback).unwrap(),
            "\"rollback\""
        );
        assert_eq!(Action::Install.to_string(), "install");
    }
}
