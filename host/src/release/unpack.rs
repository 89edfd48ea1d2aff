//! Unpacks a release's verified artifacts into releases/<id>/: first into a temporary
//! directory beside it, renamed into place only when everything is there. Tarballs are
//! untrusted input even after their hash matched (the store may be compromised): absolute
//! paths, `..`, hard links, links that lead outside the tree, devices and fifos are refused,
//! and so is a tarball that unpacks to more bytes or entries than its manifest declares: it
//! stops before the entry that would go past, so what it writes stays within the declaration.

use std::path::{Component as PathPart, Path, PathBuf};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use flate2::read::MultiGzDecoder;
use hitsave_schema::Unpacked;
use tar::EntryType;

use crate::release::verify::Verified;
use crate::site::host::Host;

/// The manifest's signature, kept beside it in releases/<id>/ (a rollback checks it again).
pub const SIGNATURE_FILE: &str = "manifest.json.minisig";

/// Unpacks every artifact of a verified manifest (already in the cache) into releases/<id>/
/// unless it is there already; the manifest's exact bytes and its signature go with it.
/// Returns the release directory.
pub fn unpack_release(host: &Host, verified: &Verified) -> anyhow::Result<Utf8PathBuf> {
    let manifest = &verified.manifest;
    let dest = host.release_dir(&manifest.release);
    if host.has_release(&manifest.release) {
        return Ok(dest);
    }
    let releases = host.root.join("releases");
    let tmp = releases.join(format!(".tmp-{}-{}", manifest.release, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir_all(&tmp)?;
        let unpacked = unpacked_artifacts(host);
        for a in &manifest.artifacts {
            let into = tmp.join(&a.component);
            if let Some(from) = unpacked.get(&a.sha256)
                && link_tree(from, &into).is_ok()
            {
                continue;
            }
            let _ = std::fs::remove_dir_all(&into);
            std::fs::create_dir_all(&into)?;
            unpack_tarball(&host.cache_file(&a.sha256), &into, a.unpacked)
                .with_context(|| format!("{} ({}.tar.gz)", a.component, a.sha256))?;
        }
        std::fs::write(tmp.join("manifest.json"), &verified.bytes)?;
        if let Some(signature) = &verified.signature {
            std::fs::write(tmp.join(SIGNATURE_FILE), signature)?;
        }
        // A half-unpacked directory from a crash is replaced, never trusted.
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        std::fs::rename(&tmp, &dest).with_context(|| format!("cannot rename {tmp} to {dest}"))?;
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "cannot unpack release {}; nothing was installed",
            manifest.release
        )));
    }
    Ok(dest)
}

/// The artifacts the releases on this host have unpacked already: their directories by the
/// artifact's sha256. An API-only release carries the web app, the migrator and the host
/// program unchanged: linking their files costs a few milliseconds where unpacking them again
/// took some 0.3 s of CPU of every install (1,100 files for the web app alone). A release
/// directory is complete once it exists (renamed into place), and what it holds was checked as
/// an untrusted tarball when it was unpacked, as a rollback to it trusts it.
fn unpacked_artifacts(
    host: &Host,
) -> std::collections::HashMap<hitsave_schema::Sha256, Utf8PathBuf> {
    let mut found = std::collections::HashMap::new();
    for id in host.releases().unwrap_or_default().into_iter().rev() {
        let dir = host.release_dir(&id);
        let Some(manifest) = host.manifest(&id) else {
            continue;
        };
        for a in manifest.artifacts {
            let path = dir.join(&a.component);
            if path.is_dir() {
                found.entry(a.sha256).or_insert(path);
            }
        }
    }
    found
}

/// `to` made as a copy of the tree at `from` whose files are hard links to `from`'s (nothing
/// writes into a release's artifacts); directories and symbolic links made anew. On an error
/// (another filesystem, a link limit) the caller unpacks the tarball instead.
fn link_tree(from: &Utf8Path, to: &Utf8Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(from)?;
        let dest = to.as_std_path().join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&dest)?;
            let mode = entry.metadata()?.permissions().mode();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            std::fs::hard_link(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Removes temporary directories that a crashed install left in releases/.
pub fn clean_leftovers(host: &Host) -> anyhow::Result<()> {
    for entry in host.root.join("releases").read_dir_utf8()? {
        let entry = entry?;
        if entry.file_name().starts_with(".tmp-") {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path()))?;
        }
    }
    Ok(())
}

/// Unpacks one gzip'd tar (our tarballs are several gzip members back to back) into `into`,
/// which must be empty; refuses, before writing it, the first entry that goes past `declared`.
pub fn unpack_tarball(
    tarball: &Utf8Path,
    into: &Utf8Path,
    declared: Unpacked,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(tarball).with_context(|| format!("cannot open {tarball}"))?;
    let mut archive = tar::Archive::new(MultiGzDecoder::new(std::io::BufReader::new(file)));
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let (mut bytes, mut entries) = (0u64, 0u64);
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("the archive is damaged")?;
        let path = entry
            .path()
            .context("an entry has no usable path")?
            .into_owned();
        check_path(&path)?;
        entries += 1;
        bytes = bytes.saturating_add(entry.size());
        if entries > declared.entries || bytes > declared.unpacked_bytes {
            bail!(
                "{}: the tarball unpacks to more than its manifest declares ({} bytes in {} entries); refused before writing it",
                path.display(),
                declared.unpacked_bytes,
                declared.entries
            );
        }
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .with_context(|| format!("{}: a link without a target", path.display()))?;
                check_link(&path, &target)?;
            }
            EntryType::Link => bail!(
                "{}: hard links are refused (release tarballs store files, not links)",
                path.display()
            ),
            other => bail!(
                "{}: {other:?} entries (devices, fifos and the like) are refused",
                path.display()
            ),
        }
        if !entry
            .unpack_in(into)
            .with_context(|| format!("cannot unpack {}", path.display()))?
        {
            bail!(
                "{}: refused, it would land outside the tree",
                path.display()
            );
        }
    }
    // Lexical checks cannot see through links already unpacked: resolve every link for real.
    let root = into
        .canonicalize()
        .with_context(|| format!("cannot resolve {into}"))?;
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry?;
        if entry.path_is_symlink() {
            let resolved = std::fs::canonicalize(entry.path()).ok();
            if !resolved.is_some_and(|r| r.starts_with(&root)) {
                bail!(
                    "{}: a link that leads outside the tree (or nowhere) is refused",
                    entry
                        .path()
                        .strip_prefix(&root)
                        .unwrap_or(entry.path())
                        .display()
                );
            }
        }
    }
    Ok(())
}

/// Only plain relative names: no root, no prefix, no `..`.
fn check_path(path: &Path) -> anyhow::Result<()> {
    if path.as_os_str().is_empty() {
        bail!("an entry has an empty path");
    }
    for part in path.components() {
        match part {
            PathPart::Normal(_) | PathPart::CurDir => {}
            PathPart::RootDir | PathPart::Prefix(_) => {
                bail!("{}: absolute paths are refused", path.display())
            }
            PathPart::ParentDir => bail!("{}: paths with `..` are refused", path.display()),
        }
    }
    Ok(())
}

/// A link's target must be relative and, read from the link's directory, stay in the tree.
fn check_link(path: &Path, target: &Path) -> anyhow::Result<()> {
    if target.is_absolute() {
        bail!(
            "{} -> {}: links to absolute paths are refused",
            path.display(),
            target.display()
        );
    }
    let mut depth: Vec<PathBuf> = path
        .parent()
        .map(|p| {
            p.components()
                .filter(|c| matches!(c, PathPart::Normal(_)))
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect()
        })
        .unwrap_or_default();
    for part in target.components() {
        match part {
            PathPart::Normal(p) => depth.push(PathBuf::from(p)),
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                if depth.pop().is_none() {
                    bail!(
                        "{} -> {}: links that lead outside the tree are refused",
                        path.display(),
                        target.display()
                    );
                }
            }
            PathPart::RootDir | PathPart::Prefix(_) => bail!("{}: bad link", path.display()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// A tarball with `files` regular files of `size` zero bytes each (gzip makes them tiny).
    fn tarball(dir: &Utf8Path, files: u64, size: u64) -> Utf8PathBuf {
        let path = dir.join("t.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        let mut builder = tar::Builder::new(gz);
        for n in 0..files {
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_entry_type(EntryType::Regular);
            h.set_cksum();
            builder
                .append_data(&mut h, format!("f{n}"), std::io::repeat(0).take(size))
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    fn used_bytes(dir: &Utf8Path) -> u64 {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    /// A verified manifest of `artifacts` (component, tarball), the tarballs put in the cache.
    fn release(host: &Host, id: &str, artifacts: &[(&str, &Utf8Path)]) -> Verified {
        use hitsave_schema::{Artifact, Manifest, ReleaseId, Sha256};
        let artifacts = artifacts
            .iter()
            .map(|(component, tarball)| {
                let bytes = std::fs::read(tarball).unwrap();
                let hex = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
                let sha256 = Sha256::new(hex).unwrap();
                std::fs::write(host.cache_file(&sha256), &bytes).unwrap();
                Artifact {
                    component: component.to_string(),
                    sha256: sha256.clone(),
                    size: bytes.len() as u64,
                    input_hash: sha256,
                    target: "noarch".into(),
                    unpacked: Unpacked {
                        unpacked_bytes: 1 << 20,
                        entries: 100,
                    },
                }
            })
            .collect();
        let manifest = Manifest {
            schema: hitsave_schema::MANIFEST_SCHEMA,
            release: ReleaseId::new(id).unwrap(),
            commit: hitsave_schema::Commit::new("0".repeat(40)).unwrap(),
            commit_time: 0,
            branch: None,
            dirty: false,
            tools: Default::default(),
            artifacts,
            bundle: None,
            unsigned: true,
            migrations: None,
        };
        Verified {
            bytes: serde_json::to_vec(&manifest).unwrap(),
            manifest,
            signature: None,
            key: None,
            seconds: 0.0,
            read_seconds: 0.0,
        }
    }

    fn inode(path: &Utf8Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn an_artifact_another_release_unpacked_is_linked_not_unpacked_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let host = Host::open(&root.join("host")).unwrap();
        let (one, two) = (root.join("one"), root.join("two"));
        std::fs::create_dir_all(&one).unwrap();
        std::fs::create_dir_all(&two).unwrap();
        let web = tarball(&one, 3, 10);
        let api_one = tarball(&two, 1, 10);
        let api_two = tarball(root, 1, 20);

        let first = release(
            &host,
            "20261201120000-0123456789ab",
            &[("web", &web), ("api", &api_one)],
        );
        let first_dir = unpack_release(&host, &first).unwrap();
        let second = release(
            &host,
            "20261202120000-0123456789ab",
            &[("web", &web), ("api", &api_two)],
        );
        let second_dir = unpack_release(&host, &second).unwrap();

        // The web app's files are the first release's (hard links), the changed API's its own.
        for f in ["f0", "f1", "f2"] {
            let (a, b) = (
                first_dir.join("web").join(f),
                second_dir.join("web").join(f),
            );
            assert_eq!(inode(&a), inode(&b), "{b} is not a link to {a}");
        }
        let (a, b) = (first_dir.join("api/f0"), second_dir.join("api/f0"));
        assert_ne!(inode(&a), inode(&b));
        assert_eq!(std::fs::metadata(&b).unwrap().len(), 20);
        // Once the first release is pruned, the second keeps its files.
        std::fs::remove_dir_all(&first_dir).unwrap();
        assert_eq!(used_bytes(&second_dir.join("web")), 30);
    }

    #[test]
    fn stops_at_what_the_manifest_declares() {
        let work = tempfile::tempdir().unwrap();
        let work = Utf8Path::from_path(work.path()).unwrap();
        // 4 files of 64 MiB each: about 250 KiB compressed.
        let t = tarball(work, 4, 64 << 20);
        assert!(std::fs::metadata(&t).unwrap().len() < 1 << 20);
        let exact = Unpacked {
            unpacked_bytes: 4 * (64 << 20),
            entries: 4,
        };
        let into = work.join("ok");
        std::fs::create_dir(&into).unwrap();
        unpack_tarball(&t, &into, exact).unwrap();
        // Declared as one file of 64 MiB: refused at the second, with only the first written.
        for declared in [
            Unpacked {
                unpacked_bytes: 64 << 20,
                entries: 4,
            },
            Unpacked {
                unpacked_bytes: exact.unpacked_bytes,
                entries: 1,
            },
        ] {
            let into = work.join(format!("bomb-{}", declared.entries));
            std::fs::create_dir(&into).unwrap();
            let err = unpack_tarball(&t, &into, declared).unwrap_err().to_string();
            assert!(err.contains("more than its manifest declares"), "{err}");
            assert!(
                used_bytes(&into) <= declared.unpacked_bytes,
                "wrote past the bound"
            );
        }
    }

    #[test]
    fn paths_and_links() {
        assert!(check_path(Path::new("bin/hitsave")).is_ok());
        assert!(check_path(Path::new("/etc/passwd")).is_err());
        assert!(check_path(Path::new("a/../../x")).is_err());
        assert!(check_link(Path::new("node_modules/.bin/x"), Path::new("../pkg/x.js")).is_ok());
        assert!(check_link(Path::new("a/l"), Path::new("../../etc")).is_err());
        assert!(check_link(Path::new("l"), Path::new("/etc")).is_err());
    }
}
