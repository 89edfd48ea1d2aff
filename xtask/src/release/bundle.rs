//! The CodeDeploy revision of a release: a deterministic tarball that `cargo xtask release`
//! stores beside the release's artifacts (`artifacts/<sha256>.tar.gz`, named in the manifest's
//! `bundle`), and that `cargo xtask deploy` points CodeDeploy at.
//!
//! ```text
//! appspec.yml            the repository's, at the release's commit
//! deploy/hooks/*.sh      one short script per lifecycle event; each runs bin/xtask hook
//! bin/xtask              the release's own xtask artifact (the same bytes, not rebuilt)
//! revision.json          Revision: the release id and the store to fetch it from
//! ```
//!
//! The host needs no toolchain and no configuration to install it, and redeploying an earlier
//! bundle (CodeDeploy's rollback) brings back exactly the release it names.

use std::io::Read;

use anyhow::{Context, bail};
use camino::Utf8Path;
use hitsave_host::store::{Store, StoreArgs};
use hitsave_schema::{self as manifest, Manifest, REVISION_FILE, ReleaseId, Revision, SCHEMA};
use sha2::{Digest, Sha256};
use xtask::components::ARTIFACT_EPOCH;
use xtask::package::{self, Packed};

/// The revision for `release` in the store `args` name (`default_dir` when none).
pub fn revision(release: &ReleaseId, args: &StoreArgs, default_dir: &Utf8Path) -> Revision {
    Revision {
        schema: SCHEMA,
        release: release.clone(),
        store: args
            .store
            .clone()
            .unwrap_or_else(|| default_dir.to_string()),
        endpoint_url: args.endpoint_url.clone().filter(|u| !u.is_empty()),
        path_style: args.path_style,
    }
}

/// Makes the bundle of `manifest` in `<out>/artifacts/`. The xtask binary comes from the
/// release's `xtask` artifact in `store`, checked against the manifest first.
pub fn make(
    root: &Utf8Path,
    store: &dyn Store,
    manifest: &Manifest,
    revision: &Revision,
    out: &Utf8Path,
) -> anyhow::Result<Packed> {
    let xtask = manifest
        .artifact("xtask")
        .context("the release has no xtask artifact to put in its bundle")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {out}"))?;
    let stage = tempfile::Builder::new()
        .prefix(".bundle-")
        .tempdir_in(out)
        .with_context(|| format!("cannot create a staging directory in {out}"))?;
    let stage_dir = Utf8Path::from_path(stage.path()).context("a non-UTF-8 temporary path")?;

    std::fs::copy(root.join("appspec.yml"), stage_dir.join("appspec.yml"))
        .with_context(|| format!("cannot read {root}/appspec.yml"))?;
    let hooks = stage_dir.join("deploy/hooks");
    std::fs::create_dir_all(&hooks)?;
    for entry in std::fs::read_dir(root.join("deploy/hooks"))? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && name.to_string_lossy().ends_with(".sh") {
            std::fs::copy(entry.path(), hooks.join(name.to_string_lossy().as_ref()))?;
        }
    }

    // The release's own xtask, verified: the host runs exactly what the release was built with.
    let mut tarball = Vec::with_capacity(xtask.size as usize);
    store.download(
        &manifest::artifact_key(&xtask.sha256),
        &mut tarball,
        &|_| {},
    )?;
    let actual = manifest::Sha256::from_bytes(Sha256::digest(&tarball).into());
    if actual != xtask.sha256 {
        bail!(
            "{}: the xtask artifact has sha256 {actual}, the manifest says {}",
            store.describe(),
            xtask.sha256
        );
    }
    std::fs::create_dir_all(stage_dir.join("bin"))?;
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&tarball[..]));
    let mut found = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy().trim_start_matches("./") == "bin/xtask" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            let dest = stage_dir.join("bin/xtask");
            std::fs::write(&dest, bytes)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
            found = true;
        }
    }
    if !found {
        bail!("the xtask artifact {} has no bin/xtask", xtask.sha256);
    }

    std::fs::write(stage_dir.join(REVISION_FILE), manifest::to_bytes(revision))?;
    package::pack_dir(stage_dir, &out.join("artifacts"), ARTIFACT_EPOCH)
        .context("packaging the CodeDeploy bundle failed")
}
