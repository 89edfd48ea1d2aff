//! `bench deploy --against REV`: this program built from another commit, to install with in
//! alternate rounds, so that two versions of the install meet the same drift of the machine
//! (a shared VM's speed moves several-fold within an hour: two runs an hour apart compare
//! the hour, not the code). It is built in a checkout and target directory of its own under
//! `<target>/xtask/against/` (the first build compiles every dependency once; later ones
//! only what changed), so the binary running the bench is never touched. Only the program
//! that installs differs: both install the same releases, built from this checkout (the apps,
//! the compose files and nginx's template are the release's, not the installer's), and both
//! are debug builds of xtask, since B's release build would be one more build of minutes.
//! Without `--against`, the measured installs are the release's own host program's, as on a
//! host.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};
use camino::Utf8Path;

use crate::test::release::{checkout, git};

/// A build of this program that installs releases in the bench.
pub struct Program {
    /// "A" (this build) or "B" (`--against`); empty when nothing is compared.
    pub label: &'static str,
    /// Which commit, for the table's legend.
    pub describe: String,
    pub exe: PathBuf,
}

/// This very build, as "A".
pub fn this(root: &Utf8Path) -> anyhow::Result<Program> {
    let head = git(root, &["rev-parse", "--short=12", "HEAD"])?;
    let dirty = !git(root, &["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Ok(Program {
        label: "A",
        describe: format!(
            "this build (HEAD {head}{})",
            if dirty { " with local changes" } else { "" }
        ),
        exe: hitsave_host::kit::process::current_exe()?,
    })
}

/// The host program of the release `id` installed under `h` (its `xtask` artifact, fetched
/// and checked as the CodeDeploy hooks fetch it: `codedeploy::resident::release_program`): the
/// release build that runs on hosts, not this debug build of xtask.
pub fn released(h: &crate::test::install::Harness, id: &str) -> anyhow::Result<Program> {
    let host = hitsave_host::site::host::Host::open(&h.host_root)?;
    let release = hitsave_schema::ReleaseId::new(id)?;
    let manifest = host
        .manifest(&release)
        .with_context(|| format!("release {id} is not installed under {}", h.host_root))?;
    let store = hitsave_host::kit::store::LocalStore::new(&h.store);
    let ui = hitsave_host::kit::ui::Ui::new();
    let exe = hitsave_host::codedeploy::resident::release_program(&ui, &host, &store, &manifest)?;
    let size = std::fs::metadata(&exe)?.len();
    Ok(Program {
        label: "",
        describe: format!(
            "the release's host program ({:.1} MiB, built with --release)",
            size as f64 / 1024.0 / 1024.0
        ),
        exe: exe.into(),
    })
}

/// `rev` built as "B".
pub fn build(root: &Utf8Path, rev: &str) -> anyhow::Result<Program> {
    let commit = git(
        root,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )
    .with_context(|| format!("--against {rev}: no such commit in {root}"))?;
    let short = &commit[..12];
    let dir = xtask::checkout::target_dir(root).join("xtask/against");
    let source = checkout(root, &dir.join("checkout"), &commit)?;
    let target = dir.join("target");
    eprintln!(
        "xtask: bench: building xtask at {rev} ({short}) in {source} (the first time compiles every dependency: minutes)"
    );
    let status = Command::new("cargo")
        .args(["build", "--package", "xtask"])
        .current_dir(&source)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_MANIFEST_DIR")
        .status()
        .context("cannot run cargo")?;
    ensure!(status.success(), "building xtask at {rev} ({short}) failed");
    let exe = target.join("debug/cargo-xtask");
    ensure!(exe.exists(), "cargo built no {exe}");
    Ok(Program {
        label: "B",
        describe: format!("{rev} ({short})"),
        exe: exe.into(),
    })
}

/// Which program installs in round `round` (from 0) of `count` programs: A B B A, A B B A, ...
/// so that a drift of the machine through the run weighs on both alike.
pub fn for_round(round: u32, count: usize) -> usize {
    if count < 2 {
        0
    } else {
        usize::from(matches!(round % 4, 1 | 2))
    }
}

#[cfg(test)]
mod tests {
    use super::for_round;

    #[test]
    fn rounds_alternate_a_b_b_a() {
        let order: Vec<usize> = (0..8).map(|r| for_round(r, 2)).collect();
        assert_eq!(order, [0, 1, 1, 0, 0, 1, 1, 0]);
        assert!((0..8).all(|r| for_round(r, 1) == 0));
    }
}
