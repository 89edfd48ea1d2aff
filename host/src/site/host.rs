//! The install root on the host (default /opt/hitsave) and everything kept in it:
//!
//! ```text
//! releases/<id>/        unpacked artifacts, manifest.json and release.env of one release
//! current, previous     links to releases/<id>, flipped by rename(2)
//! cache/<sha256>.tar.gz verified downloads
//! secrets/              one root-owned private file per secret
//! tls/                  fullchain.pem and privkey.pem (production, staging)
//! nginx/                the site config rendered for the domain, mounted into nginx
//! backups/              database backups (<id>.dump) and their records (<id>.json), 0700
//! install.lock          one install at a time
//! history.jsonl         one line per install, rollback, backup or restore (and who ran it)
//! ```

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{ReleaseId, Sha256};
use serde::{Deserialize, Serialize};

/// The install root when none is named (`--root`, HITSAVE_ROOT or host.env).
pub const DEFAULT_ROOT: &str = "/opt/hitsave";

/// How to run one of the host commands from where this one runs, for messages: `xtask status
/// --root /srv/h` on a host (the release's own binary; a host has no cargo), `cargo xtask
/// status` in a checkout (cargo sets CARGO for what it runs). `--root` only when not the
/// default.
pub fn command(args: &str, root: &Utf8Path) -> String {
    let program = if std::env::var_os("CARGO").is_some() {
        "cargo xtask"
    } else {
        "xtask"
    };
    let root = if root == DEFAULT_ROOT {
        String::new()
    } else {
        format!(" --root {root}")
    };
    format!("{program} {args}{root}")
}

pub struct Host {
    pub root: Utf8PathBuf,
}

/// The file under the install root that names this host (its EC2 instance id).
pub const HOST_ID_FILE: &str = "host-id";
const MACHINE_ID: &str = "/etc/machine-id";

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
    /// The key that signed the release's manifest (minisign's id); `unsigned` for a release
    /// installed with `--allow-unsigned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The channel the release was installed from (`--channel`): the downgrade check reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<hitsave_schema::Channel>,
    /// The secret a `secrets` command set, rotated or expired: its name, never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The environment an install was for (`--env`): the hooks' downgrade check reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// Who runs this command, for history: SUDO_USER when run through sudo, else USER.
pub fn who() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"]
        .into_iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

impl Host {
    /// Opens the install root, creating its layout on first use.
    pub fn open(root: &Utf8Path) -> anyhow::Result<Host> {
        let host = Host {
            root: root.to_owned(),
        };
        for dir in ["releases", "cache", "nginx"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("cannot create {}", root.join(dir)))?;
        }
        let secrets = host.secrets_dir();
        if !secrets.exists() {
            std::fs::create_dir_all(&secrets)?;
            std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(host)
    }

    pub fn release_dir(&self, id: &ReleaseId) -> Utf8PathBuf {
        self.root.join("releases").join(id.as_str())
    }
    pub fn cache_file(&self, sha256: &Sha256) -> Utf8PathBuf {
        self.root.join("cache").join(format!("{sha256}.tar.gz"))
    }
    pub fn secrets_dir(&self) -> Utf8PathBuf {
        self.root.join("secrets")
    }
    pub fn tls_dir(&self) -> Utf8PathBuf {
        self.root.join("tls")
    }
    pub fn nginx_dir(&self) -> Utf8PathBuf {
        self.root.join("nginx")
    }
    pub fn backups_dir(&self) -> Utf8PathBuf {
        self.root.join("backups")
    }
    pub fn lock_file(&self) -> Utf8PathBuf {
        self.root.join("install.lock")
    }
    pub fn history_file(&self) -> Utf8PathBuf {
        self.root.join("history.jsonl")
    }

    /// Which host this is, for the keys of its backups: `<root>/host-id` (the user data writes
    /// the EC2 instance id there), else the machine id systemd gives every installed system.
    pub fn id(&self) -> anyhow::Result<String> {
        let file = self.root.join(HOST_ID_FILE);
        let (id, from) = match std::fs::read_to_string(&file) {
            Ok(text) => (text, file.to_string()),
            Err(_) => (
                std::fs::read_to_string(MACHINE_ID).with_context(|| {
                    format!("this host has no {file} and no {MACHINE_ID}: write its name (the EC2 instance id) into {file}")
                })?,
                MACHINE_ID.to_owned(),
            ),
        };
        let id = id.trim().to_owned();
        hitsave_schema::check_release_id(&id).map_err(|_| {
            anyhow::anyhow!(
                "{from} says {id:?}, which is not a host name (letters, digits, '.', '_', '-'): fix {file}"
            )
        })?;
        Ok(id)
    }

    /// Whether a release is unpacked here (the rename into releases/ is the last step, so a
    /// directory there is complete).
    pub fn has_release(&self, id: &ReleaseId) -> bool {
        self.release_dir(id).join("manifest.json").is_file()
    }

    /// The release a link (`current`, `previous`) points at.
    pub fn link(&self, name: &str) -> Option<ReleaseId> {
        let target = std::fs::read_link(self.root.join(name)).ok()?;
        let id = ReleaseId::new(target.file_name()?.to_str()?).ok()?;
        self.has_release(&id).then_some(id)
    }

    pub fn current(&self) -> Option<ReleaseId> {
        self.link("current")
    }
    pub fn previous(&self) -> Option<ReleaseId> {
        self.link("previous")
    }

    /// Points `name` at releases/<id>, atomically: a new link beside it, renamed over it.
    pub fn set_link(&self, name: &str, id: &ReleaseId) -> anyhow::Result<()> {
        let tmp = self.root.join(format!(".{name}.new"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("releases/{id}"), &tmp)
            .with_context(|| format!("cannot create {tmp}"))?;
        std::fs::rename(&tmp, self.root.join(name))
            .with_context(|| format!("cannot flip {name} to {id}"))?;
        Ok(())
    }

    /// Makes `id` current and what was current previous.
    pub fn flip(&self, id: &ReleaseId) -> anyhow::Result<()> {
        match self.current() {
            Some(old) if old != *id => self.set_link("previous", &old)?,
            _ => {}
        }
        self.set_link("current", id)
    }

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

    /// Release ids unpacked here, oldest first (ids sort by commit time).
    pub fn releases(&self) -> anyhow::Result<Vec<ReleaseId>> {
        let mut ids: Vec<ReleaseId> = self
            .root
            .join("releases")
            .read_dir_utf8()?
            .filter_map(|e| ReleaseId::new(e.ok()?.file_name()).ok())
            .filter(|id| self.has_release(id))
            .collect();
        ids.sort();
        Ok(ids)
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
