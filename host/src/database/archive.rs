//! Where backups are kept: `<root>/backups/` on the host (`<id>.dump` and its record
//! `<id>.json`, 0600 in a 0700 directory) and `backups/<env>/<host>/` in a store; listing them,
//! and writing or downloading a dump so that only a whole, checked file gets its name.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use anyhow::{Context, bail};
use hitsave_schema::{self as schema, BackupId, BackupRecord, Sha256};

use crate::kit::digest::Hashing;
use crate::kit::store::{self, Store};
use crate::site::host::Host;

/// The backups in `dir` that have a record, oldest first (ids start with their UTC time).
pub fn ids(dir: &camino::Utf8Path) -> anyhow::Result<Vec<BackupId>> {
    let mut ids: Vec<BackupId> = match dir.read_dir_utf8() {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| BackupId::new(e.file_name().strip_suffix(".json")?).ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {dir}")),
    };
    ids.sort();
    Ok(ids)
}

/// A backup in a store: its id, and the directory its dump and record are in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stored {
    pub id: BackupId,
    pub dir: String,
}

impl Stored {
    pub fn record_key(&self) -> String {
        format!("{}/{}.json", self.dir, self.id)
    }
    pub fn dump_key(&self) -> String {
        format!("{}/{}.dump", self.dir, self.id)
    }
}

/// The backups with a record directly in the store's `dir` (`backups/<env>/<host>`, or the
/// flat `backups` of older hosts), oldest first.
pub fn stored_in(store: &dyn Store, dir: &str) -> anyhow::Result<Vec<Stored>> {
    let prefix = format!("{dir}/");
    let mut found: Vec<Stored> = store
        .list(dir)?
        .iter()
        .filter_map(|k| BackupId::new(k.strip_prefix(&prefix)?.strip_suffix(".json")?).ok())
        .map(|id| Stored {
            id,
            dir: dir.to_owned(),
        })
        .collect();
    // Keys sort `x-2.json` before `x.json`; ids sort by time.
    found.sort();
    Ok(found)
}

/// Every host's backups of environment `env` in the store, oldest first.
pub fn stored_in_env(store: &dyn Store, env: &str) -> anyhow::Result<Vec<Stored>> {
    let mut found = Vec::new();
    for dir in store.list_dirs(&schema::backups_dir(env, None))? {
        found.extend(stored_in(store, &dir)?);
    }
    found.sort();
    Ok(found)
}

/// The backup whose restore drill passed last, and how long ago, if any did.
pub fn last_verified(host: &Host) -> Option<(BackupId, std::time::Duration)> {
    let dir = host.backups_dir();
    dir.read_dir_utf8()
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = BackupId::new(e.file_name().strip_suffix(".verified")?).ok()?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            let when = humantime::parse_rfc3339(text.trim()).ok()?;
            Some((id, when))
        })
        .max_by_key(|(_, when)| *when)
        .map(|(id, when)| (id, when.elapsed().unwrap_or_default()))
}

/// The backups directory, private to root, without what a crash left in it.
pub fn prepare_dir(dir: &camino::Utf8Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    clean_partials(dir);
    Ok(())
}

/// Downloads backup `record` from the store to `dest` through a temporary file, checking its
/// size and SHA-256 on the way: a damaged copy never gets `dest`'s name.
pub fn download(
    store: &dyn Store,
    record: &BackupRecord,
    key: &str,
    dest: &camino::Utf8Path,
    progress: store::Progress,
) -> anyhow::Result<()> {
    write_hashed(
        dest,
        |out| store.download(key, out, record.size, progress).map(drop),
        |size, sha256| {
            if size != record.size || *sha256 != record.sha256 {
                bail!(
                    "backup {} in {} is damaged: {size} bytes with sha256 {sha256}, its record says {} bytes, sha256 {}; nothing was restored",
                    record.id,
                    store.describe(),
                    record.size,
                    record.sha256
                );
            }
            Ok(())
        },
    )
    .map(drop)
}

/// Writes `dest` (0600) through `.<name>.partial`: `fill` streams the bytes, which are hashed
/// on the way; `accept` may refuse them by their size and SHA-256. Only bytes that are whole,
/// accepted and on disk (fsync) get `dest`'s name; otherwise the temporary file is removed.
pub fn write_hashed(
    dest: &camino::Utf8Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
    accept: impl FnOnce(u64, &Sha256) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, Sha256)> {
    let partial = partial_of(dest);
    let result = (|| -> anyhow::Result<(u64, Sha256)> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("cannot create {partial}"))?;
        let mut out = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
        fill(&mut out)?;
        let done = (out.bytes(), out.digest());
        accept(done.0, &done.1)?;
        let file = out
            .inner
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {partial}"))?;
        file.sync_all()
            .with_context(|| format!("cannot write {partial}"))?;
        Ok(done)
    })();
    match result {
        Ok(done) => {
            std::fs::rename(&partial, dest).with_context(|| format!("cannot rename {partial}"))?;
            Ok(done)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// `.<name>.partial` beside `dest`: never listed as a backup.
fn partial_of(dest: &camino::Utf8Path) -> camino::Utf8PathBuf {
    dest.with_file_name(format!(".{}.partial", dest.file_name().unwrap_or_default()))
}

/// A dump cut short by a crash (`kill -9`) is never listed: only `<id>.dump` files with a
/// record count, and the next backup removes what is left.
fn clean_partials(dir: &camino::Utf8Path) {
    if let Ok(entries) = dir.read_dir_utf8() {
        for e in entries.flatten() {
            if e.file_name().starts_with('.') && e.file_name().ends_with(".partial") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
