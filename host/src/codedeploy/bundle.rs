//! A bundle's files against the list its signed manifest carries (`BundleRef::files`).
//!
//! `cargo xtask release` lists the files of the bundle it packs; on the host the resident
//! program walks the deployment archive CodeDeploy unpacked and refuses it, naming the file,
//! when one was added, removed or changed, or is anything but a regular file. Until that
//! check passes nothing in the archive is trusted (its revision.json only says where to look).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, bail};
use camino::Utf8Path;
use hitsave_schema::BundleFile;

use crate::kit::digest;

/// Every regular file under `dir`, sorted by path, with its SHA-256 and mode (0755 when any
/// execute bit is set, as the release's tarballs normalise it). Anything else than a regular
/// file or a directory is refused.
pub fn list(dir: &Utf8Path) -> anyhow::Result<Vec<BundleFile>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("cannot read {dir}"))?;
        let path = Utf8Path::from_path(entry.path()).context("a path that is not UTF-8")?;
        let relative = path
            .strip_prefix(dir)
            .expect("walkdir stays under its root")
            .as_str()
            .to_owned();
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            bail!("{relative}: not a regular file (a link or a device); refused");
        }
        let mode = entry
            .metadata()
            .with_context(|| format!("cannot stat {path}"))?
            .permissions()
            .mode();
        let (_, sha256) = digest::of_file(path).with_context(|| format!("cannot read {path}"))?;
        files.push(BundleFile {
            path: relative,
            sha256,
            mode: if mode & 0o111 != 0 { "0755" } else { "0644" }.into(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The archive at `dir` holds exactly `expected`: the same paths, bytes and modes. The error
/// names every file that differs.
pub fn check(dir: &Utf8Path, expected: &[BundleFile]) -> anyhow::Result<()> {
    let found: BTreeMap<String, BundleFile> = list(dir)?
        .into_iter()
        .map(|f| (f.path.clone(), f))
        .collect();
    let wanted: BTreeMap<&str, &BundleFile> =
        expected.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut problems = Vec::new();
    for (path, f) in &found {
        match wanted.get(path.as_str()) {
            None => problems.push(format!("{path}: not in the signed manifest (added)")),
            Some(w) if w.sha256 != f.sha256 => problems.push(format!(
                "{path}: changed (sha256 {}, the signed manifest says {})",
                f.sha256, w.sha256
            )),
            Some(w) if w.mode_bits() != f.mode_bits() => problems.push(format!(
                "{path}: mode {}, the signed manifest says {}",
                f.mode, w.mode
            )),
            Some(_) => {}
        }
    }
    for path in wanted.keys() {
        if !found.contains_key(*path) {
            problems.push(format!("{path}: missing (removed)"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the deployment archive {dir} is not the bundle its release's signed manifest describes:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_added_changed_removed_or_linked_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(dir.join("deploy/hooks")).unwrap();
        std::fs::write(dir.join("appspec.yml"), "version: 0.0\n").unwrap();
        std::fs::write(dir.join("deploy/hooks/a.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.join("deploy/hooks/a.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let listed = list(dir).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|f| (&*f.path, &*f.mode))
                .collect::<Vec<_>>(),
            [("appspec.yml", "0644"), ("deploy/hooks/a.sh", "0755")]
        );
        check(dir, &listed).unwrap();

        std::fs::write(dir.join("deploy/hooks/a.sh"), "#!/bin/sh\nrm -rf /\n").unwrap();
        let err = check(dir, &listed).unwrap_err().to_string();
        assert!(err.contains("deploy/hooks/a.sh: changed"), "{err}");
        std::fs::write(dir.join("deploy/hooks/a.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.join("deploy/hooks/a.sh"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = check(dir, &listed).unwrap_err().to_string();
        assert!(err.contains("a.sh: mode 0644"), "{err}");
        std::fs::set_permissions(
            dir.join("deploy/hooks/a.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();

        std::fs::create_dir(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/xtask"), "ELF").unwrap();
        let err = check(dir, &listed).unwrap_err().to_string();
        assert!(
            err.contains("bin/xtask: not in the signed manifest"),
            "{err}"
        );
        std::fs::remove_file(dir.join("bin/xtask")).unwrap();

        std::fs::remove_file(dir.join("appspec.yml")).unwrap();
        let err = check(dir, &listed).unwrap_err().to_string();
        assert!(err.contains("appspec.yml: missing"), "{err}");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("appspec.yml")).unwrap();
        let err = check(dir, &listed).unwrap_err().to_string();
        assert!(err.contains("appspec.yml: not a regular file"), "{err}");
    }
}
