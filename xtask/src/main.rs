//! `cargo xtask`: HitSave's build, test, release and deploy pipeline.
//!
//! The mechanics (components, input hashes, packaging, manifests, stores) live in the library, `lib.rs`; this binary holds the commands.
//! `main` parses flags, finds the project root and dispatches to one module per command, each
//! a plain `run` function.

mod bench;
mod bench_deploy;
mod build;
mod bundle;
mod compose;
mod deploy;
mod dev;
mod dev_setup;
mod docker_setup;
mod doctor;
mod garage;
mod glibc_probe;
mod hook;
mod http;
mod install;
mod load;
mod postgres;
mod process;
mod release;
mod rollback;
mod secrets;
mod status;
mod test;
mod test_codedeploy;
mod test_dev;
mod test_install;
mod test_release;
mod tools;
mod ui;
mod verify;
mod web;

use std::process::ExitCode;

use camino::{Utf8Path, Utf8PathBuf};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, test, release and deploy HitSave",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build components and stage what ships (api, migrate, web, xtask).
    Build(build::Args),
    /// Build and package every component into deterministic tarballs and a manifest, locally.
    Package(release::PackageArgs),
    /// Build what changed, package it and publish it to the artifact store.
    Release(release::ReleaseArgs),
    /// Download a release from the store and check every artifact against its manifest.
    Verify(verify::Args),
    /// On the host: fetch, verify and unpack a release, migrate, swap the compose stack and
    /// gate on health, rolling back when the new version is not healthy.
    Install(install::Args),
    /// Create the CodeDeploy deployment of a published release for this branch (appspec.yml's
    /// branch_config picks the deployment group) and follow it.
    Deploy(deploy::Args),
    /// On the host, from CodeDeploy's lifecycle hooks (deploy/hooks/): one step of an install.
    Hook(hook::Args),
    /// The whole stack on this machine at hitsave-local.io: db and nginx in Docker, the API
    /// (rebuilt and restarted when its sources change) and the web dev server natively.
    Dev(dev::Args),
    /// On the host: run a release that is already on disk again (the previous one by default).
    Rollback(rollback::Args),
    /// On the host: current and previous release, container health, last installs, disk use.
    Status(status::Args),
    /// On the host: check Docker, Compose, secrets, TLS files and disk, with the fix for each.
    Doctor(doctor::Args),
    /// Build the base images (hitsave-base/*) from Debian's packages, for hosts that reach no
    /// registry.
    Images(docker_setup::Args),
    /// Measure the pipeline against peers in the same run (`bench release`).
    Bench(bench::Args),
    /// Run every test against real services, starting what they need (PostgreSQL, Chromium).
    Test(test::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = project_root();
    let result = match cli.command {
        Command::Build(args) => build::run(&root, args),
        Command::Package(args) => release::run_package(&root, args),
        Command::Release(args) => release::run_release(&root, args),
        Command::Verify(args) => verify::run(&root, args),
        Command::Install(args) => install::run(args),
        Command::Deploy(args) => deploy::run(&root, args),
        Command::Hook(args) => hook::run(args),
        Command::Dev(args) => dev::run(&root, args),
        Command::Rollback(args) => rollback::run(args),
        Command::Status(args) => status::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Images(args) => docker_setup::run(&root, args),
        Command::Bench(args) => bench::run(&root, args),
        Command::Test(args) => test::run(&root, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root, found at run time (never compiled in, so the xtask binary is the same
/// whatever directory it was built in): `cargo run` tells us where xtask's manifest is;
/// otherwise the nearest directory upwards from here that holds `xtask/Cargo.toml`.
fn project_root() -> Utf8PathBuf {
    if let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR")
        && let Some(root) = Utf8Path::new(&dir).parent()
        && root.join("xtask/Cargo.toml").is_file()
    {
        return root.to_owned();
    }
    let here = std::env::current_dir()
        .ok()
        .and_then(|d| Utf8PathBuf::from_path_buf(d).ok())
        .unwrap_or_else(|| Utf8PathBuf::from("."));
    here.ancestors()
        .find(|d| d.join("xtask/Cargo.toml").is_file() && d.join("Cargo.toml").is_file())
        .unwrap_or(&here)
        .to_owned()
}

/// This xtask binary, to run its own commands from tests and benchmarks. When cargo has
/// re-linked it while we run (`cargo test` does), /proc reports the old file as
/// "<path> (deleted)"; the path itself then holds the rebuilt binary of the same sources.
fn xtask_exe() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.exists() {
        return Ok(exe);
    }
    let text = exe.to_string_lossy();
    let rebuilt = std::path::PathBuf::from(text.trim_end_matches(" (deleted)"));
    anyhow::ensure!(rebuilt.exists(), "the xtask binary {text} is gone");
    Ok(rebuilt)
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` (CI points it at a cache that outlives
/// the checkout) or `target/` in the workspace.
fn target_dir(root: &Utf8Path) -> Utf8PathBuf {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}
