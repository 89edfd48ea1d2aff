//! The resident program: `<root>/bin/xtask`, the host program that every hook script runs and
//! that checks a bundle before anything from it is trusted. A bundle carries no program of
//! its own, so a changed bundle cannot check itself.
//!
//! The user data puts the first one there (downloaded from the store and checked with
//! Debian's `minisign` against the host's keys); afterwards it is replaced only by a release's
//! verified host artifact, once that release serves. Each hook's work is done by the
//! release's own host program (`release_program`), downloaded and verified like any artifact
//! and kept under `programs/<sha256>/` so an unchanged one is not fetched again.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::Manifest;

use crate::kit::store::Store;
use crate::kit::ui::Ui;
use crate::release::fetch;
use crate::release::unpack;
use crate::site::host::Host;

/// Where the resident program is under an install root.
pub fn path(root: &Utf8Path) -> Utf8PathBuf {
    root.join("bin/xtask")
}

/// Beside it: the artifact it came from and the release that brought it (`<sha256> <id>`).
fn origin_file(root: &Utf8Path) -> Utf8PathBuf {
    root.join("bin/xtask.origin")
}

/// The release's host program, verified: its `xtask` artifact from the cache (downloaded and
/// checked against the signed manifest when it is not there), unpacked within its declared
/// size into `programs/<sha256>/`, which is renamed into place only when complete.
pub fn release_program(
    ui: &Ui,
    host: &Host,
    store: &dyn Store,
    manifest: &Manifest,
) -> anyhow::Result<Utf8PathBuf> {
    let artifact = manifest.artifact("xtask").with_context(|| {
        format!(
            "release {} has no host program (xtask artifact)",
            manifest.release
        )
    })?;
    let programs = host.root.join("programs");
    let dir = programs.join(artifact.sha256.as_str());
    let program = dir.join("bin/xtask");
    if program.is_file() {
        return Ok(program);
    }
    fetch::fetch_artifacts(ui, host, store, &[artifact])?;
    let tmp = programs.join(format!(".tmp-{}-{}", artifact.sha256, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {tmp}"))?;
    let unpacked =
        unpack::unpack_tarball(&host.cache_file(&artifact.sha256), &tmp, artifact.unpacked)
            .and_then(|()| {
                anyhow::ensure!(
                    tmp.join("bin/xtask").is_file(),
                    "the host program's artifact {} has no bin/xtask",
                    artifact.sha256
                );
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                std::fs::rename(&tmp, &dir)
                    .with_context(|| format!("cannot rename {tmp} to {dir}"))?;
                Ok(())
            });
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "cannot unpack the host program of release {}; nothing was changed",
            manifest.release
        )));
    }
    Ok(program)
}

/// Makes `program` (a release's verified host program) the resident one, unless it already
/// is; true when it changed. Written beside it, synced and renamed over it, so a crash
/// leaves the old one or the new one.
pub fn adopt(root: &Utf8Path, program: &Utf8Path, manifest: &Manifest) -> anyhow::Result<bool> {
    let sha = manifest
        .artifact("xtask")
        .context("the release has no host program")?
        .sha256
        .clone();
    let origin = format!("{sha} {}\n", manifest.release);
    let resident = path(root);
    let same_origin = std::fs::read_to_string(origin_file(root))
        .is_ok_and(|o| o.split_whitespace().next() == Some(sha.as_str()));
    if same_origin && resident.is_file() {
        return Ok(false);
    }
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {bin}"))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".xtask-")
        .tempfile_in(&bin)
        .with_context(|| format!("cannot write in {bin}"))?;
    std::io::copy(
        &mut std::fs::File::open(program).with_context(|| format!("cannot read {program}"))?,
        tmp.as_file_mut(),
    )?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o755))?;
    tmp.as_file().sync_all()?;
    tmp.persist(&resident)
        .with_context(|| format!("cannot replace {resident}"))?;
    let mut note = tempfile::Builder::new()
        .prefix(".origin-")
        .tempfile_in(&bin)?;
    note.write_all(origin.as_bytes())?;
    note.as_file().sync_all()?;
    note.persist(origin_file(root))?;
    std::fs::File::open(&bin).and_then(|d| d.sync_all()).ok();
    compatibility_link(root);
    Ok(true)
}

/// The release id and artifact the resident program came from, for status and doctor.
pub fn origin(root: &Utf8Path) -> Option<String> {
    let text = std::fs::read_to_string(origin_file(root)).ok()?;
    let mut words = text.split_whitespace();
    let (sha, release) = (words.next()?, words.next()?);
    Some(format!(
        "release {release}'s host program ({})",
        &sha[..12.min(sha.len())]
    ))
}

/// Hosts set up before resident programs run their timers from `<root>/revision/bin/xtask`
/// (the bundle copy CodeDeploy kept there): that path now leads to the resident program.
fn compatibility_link(root: &Utf8Path) {
    let revision = root.join("revision");
    if !revision.is_dir() {
        return;
    }
    let link = revision.join("bin/xtask");
    if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
        return;
    }
    let _ = std::fs::create_dir_all(revision.join("bin"));
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink("../../bin/xtask", &link) {
        eprintln!("xtask: cannot link {link} to the resident program: {e}");
    }
}
