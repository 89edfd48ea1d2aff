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

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{ReleaseId, Sha256};

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
    /// There when no database a restore replaced is left (`restore::prune_replaced`).
    pub fn none_replaced_file(&self) -> Utf8PathBuf {
        self.root.join("replaced-databases.none")
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

    /// The last watch after a cutover (`watch.json`, written by `release::watch`), as JSON.
    pub fn last_watch(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.root.join("watch.json")).ok()?).ok()
    }

    /// Whether a release is unpacked here (the rename into releases/ is the last step, so a
    /// directory there is complete).
    pub fn has_release(&self, id: &ReleaseId) -> bool {
        self.release_dir(id).join("manifest.json").is_file()
    }

    /// The manifest kept with an unpacked release (checked when it was installed); `None` when
    /// it is missing or unreadable.
    pub fn manifest(&self, id: &ReleaseId) -> Option<hitsave_schema::Manifest> {
        let bytes = std::fs::read(self.release_dir(id).join("manifest.json")).ok()?;
        hitsave_schema::Manifest::parse(&bytes).ok()
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
