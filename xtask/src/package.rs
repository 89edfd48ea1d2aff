//! Deterministic, content-addressed tarballs: the same tree always gives the same bytes.
//!
//! Entries are in GNU `tar --sort=name` order (depth first, names sorted bytewise within each
//! directory). Every mtime is the given SOURCE_DATE_EPOCH, uid and gid are 0 with no user or
//! group names, and modes are 0755 for directories and executables, 0644 for other files. The
//! gzip header has no file name and no time (the file is a series of gzip members, one per
//! 1 MiB of tar stream, compressed in parallel). Hard-linked files are stored as regular files:
//! which files happen to be hard links in a checkout must not change the bytes. The SHA-256 is computed in the same streaming pass
//! that writes the file, which is renamed to `<sha256>.tar.gz` only once complete. Nothing is
//! held whole in memory, whatever the size of the tree.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, mpsc};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

/// gzip level 6: GNU gzip's default, a good balance of size and speed.
const GZIP_LEVEL: u32 = 6;

/// A finished artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// SHA-256 of the `.tar.gz` bytes.
    pub sha256: hitsave_schema::Sha256,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
    /// `<out_dir>/<sha256>.tar.gz`.
    pub path: Utf8PathBuf,
    /// Number of entries (directories, files, links) in the archive.
    pub entries: u64,
    /// Bytes of its regular files together: with `entries`, what the manifest declares it
    /// unpacks to.
    pub file_bytes: u64,
}

impl Packed {
    /// What the manifest declares this tarball unpacks to.
    pub fn unpacked(&self) -> hitsave_schema::Unpacked {
        hitsave_schema::Unpacked {
            unpacked_bytes: self.file_bytes,
            entries: self.entries,
        }
    }
}

/// The tar stream is cut into chunks of this size, each compressed on its own (as one gzip
/// member) so that every core can compress. The size is fixed, so the bytes do not depend on
/// how many cores there are; 1 MiB chunks cost well under 1% of compression.
const CHUNK: usize = 1 << 20;

/// Packs the contents of `src` (not `src` itself) into `<out_dir>/<sha256>.tar.gz`.
///
/// Three stages run at once: this thread walks the tree and writes the tar stream in chunks;
/// one worker per core compresses chunks into gzip members; a writer thread puts the members
/// back in order, writes them to a temporary file and hashes them in the same pass. The
/// result is a multi-member gzip file (RFC 1952), which gzip, GNU tar and every gzip
/// library read as one stream. Memory stays bounded: at most a few chunks per core exist.
pub fn pack_dir(src: &Utf8Path, out_dir: &Utf8Path, mtime: u64) -> anyhow::Result<Packed> {
    if !src.is_dir() {
        bail!("{src} is not a directory: nothing to package");
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {out_dir}"))?;
    let tmp = tempfile::Builder::new()
        .prefix(".packing-")
        .suffix(".tar.gz")
        .tempfile_in(out_dir)
        .with_context(|| format!("cannot create a temporary file in {out_dir}"))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());

    let (raw_tx, raw_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(workers);
    let raw_rx = Mutex::new(raw_rx);
    let ((entries, file_bytes), sha256, size) = std::thread::scope(|scope| -> anyhow::Result<_> {
        let (gz_tx, gz_rx) = mpsc::sync_channel::<(u64, io::Result<Vec<u8>>)>(workers);
        for _ in 0..workers {
            let (raw_rx, gz_tx) = (&raw_rx, gz_tx.clone());
            scope.spawn(move || {
                let mut writer_alive = true;
                loop {
                    let next = raw_rx.lock().expect("a worker panicked").recv();
                    let Ok((index, chunk)) = next else { break };
                    // When the writer has failed, keep draining so the tar side never blocks.
                    if writer_alive {
                        writer_alive = gz_tx.send((index, compress(&chunk))).is_ok();
                    }
                }
            });
        }
        drop(gz_tx);
        let file = tmp.as_file();
        let writer = scope.spawn(move || write_in_order(gz_rx, file));

        let mut archive = tar::Builder::new(Chunker {
            buf: Vec::with_capacity(CHUNK),
            next: 0,
            tx: raw_tx,
        });
        archive.follow_symlinks(false);
        // The archive (and with it the sender) is dropped when this closure ends, on success
        // and on error alike, which lets the workers and then the writer finish.
        let packed = move || -> anyhow::Result<(u64, u64)> {
            let entries = append_tree(&mut archive, src, mtime)?;
            let mut chunker = archive
                .into_inner()
                .context("cannot finish the tar stream")?;
            chunker.send_full(true)?;
            Ok(entries)
        };
        let packed = packed();
        let written = writer.join().expect("the writer thread panicked");
        let entries = packed?;
        let (sha256, size) = written?;
        Ok((entries, sha256, size))
    })?;

    tmp.as_file()
        .sync_all()
        .context("cannot write the tarball")?;
    let path = out_dir.join(format!("{sha256}.tar.gz"));
    tmp.persist(&path)
        .with_context(|| format!("cannot move the finished tarball to {path}"))?;
    Ok(Packed {
        sha256,
        size,
        path,
        entries,
        file_bytes,
    })
}

/// Collects the tar stream into numbered chunks for the compressors.
struct Chunker {
    buf: Vec<u8>,
    next: u64,
    tx: mpsc::SyncSender<(u64, Vec<u8>)>,
}

impl Chunker {
    fn send_full(&mut self, last: bool) -> io::Result<()> {
        while self.buf.len() >= CHUNK || (last && !self.buf.is_empty()) {
            let rest = if self.buf.len() > CHUNK {
                self.buf.split_off(CHUNK)
            } else {
                Vec::with_capacity(CHUNK)
            };
            let chunk = std::mem::replace(&mut self.buf, rest);
            self.tx
                .send((self.next, chunk))
                .map_err(|_| io::Error::other("the compressor stopped"))?;
            self.next += 1;
        }
        Ok(())
    }
}

impl Write for Chunker {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.send_full(false)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One chunk as one gzip member: no name, no time, OS "unknown", level 6.
fn compress(chunk: &[u8]) -> io::Result<Vec<u8>> {
    let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(
        Vec::with_capacity(chunk.len() / 2),
        Compression::new(GZIP_LEVEL),
    );
    gz.write_all(chunk)?;
    gz.finish()
}

/// Writes the compressed chunks in their original order, hashing as it goes.
fn write_in_order(
    rx: mpsc::Receiver<(u64, io::Result<Vec<u8>>)>,
    file: &std::fs::File,
) -> anyhow::Result<(hitsave_schema::Sha256, u64)> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut size = 0;
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (index, member) in rx {
        waiting.insert(index, member.context("compression failed")?);
        while let Some(member) = waiting.remove(&next) {
            out.write_all(&member).context("cannot write the tarball")?;
            hasher.update(&member);
            size += member.len() as u64;
            next += 1;
        }
    }
    if !waiting.is_empty() {
        bail!("the tar stream ended with chunks missing");
    }
    out.flush().context("cannot write the tarball")?;
    Ok((
        hitsave_schema::Sha256::from_bytes(hasher.finalize().into()),
        size,
    ))
}

fn append_tree<W: Write>(
    archive: &mut tar::Builder<W>,
    src: &Utf8Path,
    mtime: u64,
) -> anyhow::Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
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
            bytes += meta.len();
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
    Ok((count, bytes))
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
