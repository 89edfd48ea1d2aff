//! A store in a local directory: the default, so every command works with no cloud account.
//! Every write goes to a temporary file in the destination directory and is renamed into
//! place once complete and synced, so a reader sees a whole object or none.

use std::fs::File;
use std::io::{self, Read, Write};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::kit::store::{ObjectInfo, Progress, Store};

pub struct LocalStore {
    root: Utf8PathBuf,
}

impl LocalStore {
    pub fn new(root: &Utf8Path) -> LocalStore {
        let root = std::path::absolute(root)
            .ok()
            .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
            .unwrap_or_else(|| root.to_owned());
        LocalStore { root }
    }

    fn path(&self, key: &str) -> Utf8PathBuf {
        debug_assert!(!key.split('/').any(|c| c == ".." || c.is_empty()));
        self.root.join(key)
    }

    /// Writes whatever `fill` writes to a temporary file beside `key` and renames it into place.
    fn write_atomically(
        &self,
        key: &str,
        fill: impl FnOnce(&mut File) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let dest = self.path(key);
        let dir = dest.parent().expect("keys have a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write in {dir}"))?;
        fill(tmp.as_file_mut())?;
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("cannot write {dest}"))?;
        tmp.persist(&dest)
            .with_context(|| format!("cannot move a finished object to {dest}"))?;
        // The rename itself must survive a crash before anything that refers to it is written.
        File::open(dir).and_then(|d| d.sync_all()).ok();
        Ok(())
    }
}

impl Store for LocalStore {
    fn is_local(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("local store {}", self.root)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.root.exists() && !self.root.is_dir() {
            bail!("{} is not a directory", self.describe());
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create the {}", self.describe()))?;
        Ok(())
    }

    fn head(&self, key: &str) -> anyhow::Result<Option<ObjectInfo>> {
        match std::fs::metadata(self.path(key)) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectInfo {
                size: meta.len(),
                sha256: None,
                etag: None,
                version_id: None,
            })),
            Ok(_) => bail!("{} is not a file", self.path(key)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot stat {}", self.path(key))),
        }
    }

    fn list(&self, dir: &str) -> anyhow::Result<Vec<String>> {
        let path = self.path(dir);
        let mut keys: Vec<String> = match path.read_dir_utf8() {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_owned())
                // Half-written objects (write_atomically's temporary files) are not objects.
                .filter(|name| !name.starts_with('.'))
                .map(|name| format!("{dir}/{name}"))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot list {path}")),
        };
        keys.sort();
        Ok(keys)
    }

    fn list_dirs(&self, dir: &str) -> anyhow::Result<Vec<String>> {
        let path = self.path(dir);
        let mut dirs: Vec<String> = match path.read_dir_utf8() {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_owned())
                .filter(|name| !name.starts_with('.'))
                .map(|name| format!("{dir}/{name}"))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot list {path}")),
        };
        dirs.sort();
        Ok(dirs)
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", self.path(key)))
            }
            _ => Ok(()),
        }
    }

    fn get_at_most(&self, key: &str, max: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
        };
        let mut bytes = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {path}"))?;
        if bytes.len() as u64 > max {
            bail!(
                "{}: {key} is larger than {max} bytes: refused before it was read",
                self.describe()
            );
        }
        Ok(Some(bytes))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.write_atomically(key, |f| {
            f.write_all(bytes)?;
            Ok(())
        })
    }

    fn upload(
        &self,
        key: &str,
        file: &Utf8Path,
        _sha256: &str,
        size: u64,
        progress: Progress,
    ) -> anyhow::Result<()> {
        let mut src = File::open(file).with_context(|| format!("cannot open {file}"))?;
        self.write_atomically(key, |dest| {
            let copied = copy_with_progress(&mut src, dest, progress)?;
            if copied != size {
                bail!("{file} changed while it was copied ({copied} bytes, expected {size})");
            }
            Ok(())
        })
    }

    fn download(
        &self,
        key: &str,
        out: &mut dyn Write,
        limit: u64,
        progress: Progress,
    ) -> anyhow::Result<u64> {
        let path = self.path(key);
        let mut src = File::open(&path).with_context(|| format!("cannot open {path}"))?;
        let copied = copy_with_progress(&mut (&mut src).take(limit), out, progress)?;
        // One byte more than declared is one too many; nothing past `limit` was passed on.
        if copied == limit && src.read(&mut [0u8])? > 0 {
            return Err(crate::kit::store::too_large(&self.describe(), key, limit));
        }
        Ok(copied)
    }
}

fn copy_with_progress(
    src: &mut dyn Read,
    dest: &mut dyn Write,
    progress: Progress,
) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        dest.write_all(&buf[..n])?;
        total += n as u64;
        progress(n as u64);
    }
    Ok(total)
}
