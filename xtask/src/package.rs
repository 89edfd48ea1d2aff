//! Deterministic, content-addressed tarballs: the same tree always gives the same bytes.
//!
//! Entries are in GNU `tar --sort=name` order (depth first, names sorted bytewise within each
//! directory). Every mtime is the given SOURCE_DATE_EPOCH, uid and gid are 0 with no user or
//! group names, and modes are 0755 for directories and executables, 0644 for other files. The
//! gzip header has no file name and no time. The SHA-256 is computed in the same streaming pass
//! that writes the file, which is renamed to `<sha256>.tar.gz` only once complete. Nothing is
//! held whole in memory, whatever the size of the tree.

use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

/// gzip level 6: GNU gzip's default, a good balance of size and speed.
const GZIP_LEVEL: u32 = 6;

/// A finished artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Lowercase hex SHA-256 of the `.tar.gz` bytes.
    pub sha256: String,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
    /// `<out_dir>/<sha256>.tar.gz`.
    pub path: Utf8PathBuf,
    /// Number of entries (directories, files, links) in the archive.
    pub entries: u64,
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs the contents of `src` (not `src` itself) into `<out_dir>/<sha256>.tar.gz`.
pub fn pack_dir(src: &Utf8Path, out_dir: &Utf8Path, mtime: u64) -> anyhow::Result<Packed> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {out_dir}"))?;
    let tmp = tempfile::Builder::new()
        .prefix(".packing-")
        .suffix(".tar.gz")
        .tempfile_in(out_dir)
        .with_context(|| format!("cannot create a temporary file in {out_dir}"))?;
    let hashing = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, tmp.as_file()),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(hashing, Compression::new(GZIP_LEVEL));
    let mut archive = tar::Builder::new(gz);
    archive.follow_symlinks(false);
    let entries = append_tree(&mut archive, src, mtime)?;
    let HashingWriter {
        inner,
        hasher,
        bytes: size,
    } = archive
        .into_inner()
        .context("cannot finish the tar stream")?
        .finish()
        .context("cannot finish the gzip stream")?;
    inner
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all())
        .context("cannot write the tarball")?;
    let sha256 = hex(&hasher.finalize());
    let path = out_dir.join(format!("{sha256}.tar.gz"));
    tmp.persist(&path)
        .with_context(|| format!("cannot move the finished tarball to {path}"))?;
    Ok(Packed {
        sha256,
        size,
        path,
        entries,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn append_tree<W: Write>(
    archive: &mut tar::Builder<W>,
    src: &Utf8Path,
    mtime: u64,
) -> anyhow::Result<u64> {
    let mut count = 0;
    let walk = walkdir::WalkDir::new(src)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| {
            a.file_name()
                .as_encoded_bytes()
                .cmp(b.file_name().as_encoded_bytes())
        });
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot read the tree under {src}"))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .expect("walkdir yields paths under its root");
        let Some(name) = rel.to_str() else {
            bail!("{} has a name that is not UTF-8", entry.path().display());
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?;
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            archive.append_data(&mut header, format!("{name}/"), io::empty())?;
        } else if kind.is_file() {
            let executable = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let file = std::fs::File::open(entry.path())
                .with_context(|| format!("cannot open {}", entry.path().display()))?;
            archive
                .append_data(&mut header, name, file)
                .with_context(|| format!("cannot add {name}"))?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            check_link_stays_inside(rel, &target)
                .with_context(|| format!("cannot package the link {name}"))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            archive.append_link(&mut header, name, &target)?;
        } else {
            bail!("cannot package {name}: only directories, files and symbolic links can ship");
        }
        count += 1;
    }
    Ok(count)
}

/// A release must be self-contained: a link may only point at something inside the tree.
fn check_link_stays_inside(link: &Path, target: &Path) -> anyhow::Result<()> {
    if target.is_absolute() {
        bail!("it points at the absolute path {}", target.display());
    }
    let mut resolved = PathBuf::new();
    let base = link.parent().unwrap_or(Path::new(""));
    for component in base.components().chain(target.components()) {
        match component {
            Component::Normal(c) => resolved.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !resolved.pop() {
                    bail!("its target {} leaves the tree", target.display());
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                bail!("its target {} is not relative", target.display())
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_link_stays_inside;
    use std::path::Path;

    #[test]
    fn links_must_stay_inside_the_tree() {
        let ok = |l: &str, t: &str| check_link_stays_inside(Path::new(l), Path::new(t)).is_ok();
        assert!(ok("node_modules/.bin/vite", "../vite/bin/vite.js"));
        assert!(ok("a/b/c", "./d"));
        assert!(!ok("a/b", "../../etc/passwd"));
        assert!(!ok("top", "../outside"));
        assert!(!ok("a/b", "/etc/passwd"));
    }
}
