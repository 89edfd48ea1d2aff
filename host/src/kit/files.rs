//! Files only their owner may read: written whole or not at all.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use camino::Utf8Path;

/// Writes `contents` to a new file readable by its owner only; fails if the file exists.
pub fn write_private(path: &Utf8Path, contents: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("cannot write the secret file {path}"))
}

/// Replaces `path` with `contents`: a new 0600 file beside it, flushed to disk, renamed over
/// it, and the directory flushed, so a crash leaves the old value or the new one, never half.
/// A container that mounts the old file keeps reading the old value until it is replaced.
pub fn replace_private(path: &Utf8Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a private file has a directory")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".new-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {dir}"))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write a new {path} (is the disk full?)"))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot rename the new value over {path}"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush {dir}"))?;
    Ok(())
}

/// Makes `dir` (and its parents) and gives it to its owner alone (0700).
pub fn create_private_dir(dir: &Utf8Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {dir} private"))?;
    Ok(())
}

/// Whether `path` is on the filesystem `/` is on (the root disk).
pub fn on_root_disk(path: &Utf8Path) -> anyhow::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path)
        .with_context(|| format!("cannot read {path}"))?
        .dev();
    Ok(dev == std::fs::metadata("/").context("cannot read /")?.dev())
}
