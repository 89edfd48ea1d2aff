//! The CodeDeploy revision of a release: a deterministic tarball that `cargo xtask release`
//! stores beside the release's artifacts (`artifacts/<sha256>.tar.gz`, named in the manifest's
//! `bundle` with the list of its files), and that `cargo xtask deploy` points CodeDeploy at.
//!
//! ```text
//! appspec.yml            the repository's, at the release's commit
//! deploy/hooks/*.sh      one short script per lifecycle event, and resident.sh, which they
//!                        share: each runs the host's resident program, never one of the bundle's
//! revision.json          Revision: the release id and the store to fetch it from
//! ```
//!
//! The bundle carries no program: the host's resident program checks it against the signed
//! list, then runs the release's own host program, downloaded and verified like any artifact.
//! Redeploying an earlier bundle (CodeDeploy's rollback) brings back exactly the release it
//! names.

use anyhow::Context;
use camino::Utf8Path;
use hitsave_host::kit::store::StoreLocation;
use hitsave_schema::{self as manifest, BundleFile, REVISION_FILE, ReleaseId, Revision, SCHEMA};
use xtask::branch_config::{self, Decision};
use xtask::components::ARTIFACT_EPOCH;
use xtask::package::{self, Packed};

/// A packed bundle and what it unpacks to.
pub struct Bundle {
    pub packed: Packed,
    /// Every file in it, as the manifest lists them.
    pub files: Vec<BundleFile>,
}

/// The revision for `release` in the store `args` name (`default_dir` when none).
pub fn revision(release: &ReleaseId, args: &StoreLocation, default_dir: &Utf8Path) -> Revision {
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

/// The deployment group appspec.yml's branch_config gives `branch` (`None`: not deployed, or
/// no branch); hosts of another environment refuse the release. A branch_config that cannot
/// be read refuses the release before anything is built.
pub fn deployment_group(root: &Utf8Path, branch: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(branch) = branch else {
        return Ok(None);
    };
    let path = root.join("appspec.yml");
    let appspec = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let decision = branch_config::decide(&appspec, branch, branch_config::pr_from_github_ref())
        .with_context(|| format!("{path}: branch_config; nothing was built"))?;
    Ok(match decision {
        Decision::Deploy {
            deployment_group, ..
        } => Some(deployment_group),
        Decision::Skip { .. } | Decision::PullRequestsOnly { .. } | Decision::NoMatch => None,
    })
}

/// Makes the bundle of `revision`'s release in `<out>/artifacts/`.
pub fn make(root: &Utf8Path, revision: &Revision, out: &Utf8Path) -> anyhow::Result<Bundle> {
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
    std::fs::write(stage_dir.join(REVISION_FILE), manifest::to_bytes(revision))?;
    let files = hitsave_host::codedeploy::bundle::list(stage_dir)?;
    let packed = package::pack_dir(stage_dir, &out.join("artifacts"), ARTIFACT_EPOCH)
        .context("packaging the CodeDeploy bundle failed")?;
    Ok(Bundle { packed, files })
}
