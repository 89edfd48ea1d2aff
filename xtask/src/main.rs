//! `cargo xtask`: HitSave's tooling (build, release, deploy, dev, images, bench, test), which
//! never leaves a laptop or CI. A release's mechanics (components, input hashes, packaging)
//! are the library, `lib.rs`; the host commands are hitsave-host's, the program each release
//! ships. `main` parses flags, finds the project root and dispatches to one module per command,
//! each a plain `run` function.

mod aws;
mod bench;
mod child;
mod deploy;
mod dev;
mod images;
mod release;
mod test;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, test, release and deploy HitSave",
    after_help = "Runs on a laptop or in CI and is never shipped to a host. verify, install, \
                  hook, rollback, status, doctor, backup, restore, tls, logs, exec and maintenance are the host \
                  program's commands (host/, \
                  `xtask` on a host, from each release's bundle), the same code run from here.",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build components and stage what ships (api, migrate, web, xtask).
    Build(release::build::Args),
    /// Build and package every component into deterministic tarballs and a manifest, locally.
    Package(release::PackageArgs),
    /// Build what changed, package it and publish it to the artifact store.
    Release(release::ReleaseArgs),
    /// Make a release signing key pair (minisign format): the secret for CI, the public key
    /// for every host's /etc/hitsave/keys/.
    Keygen(xtask::signing::KeygenArgs),
    /// Create the CodeDeploy deployment of a published release for this branch (appspec.yml's
    /// branch_config picks the deployment group) and follow it.
    Deploy(deploy::Args),
    /// The AWS side as one CloudFormation stack (deploy/aws/hitsave.cfn.yml): template, plan,
    /// apply, outputs.
    Aws(aws::Args),
    /// The whole stack on this machine at hitsave-local.io: db and nginx in Docker, the API
    /// (rebuilt and restarted when its sources change) and the web dev server natively.
    Dev(dev::Args),
    /// Build the base images (hitsave-base/*) from Debian's packages, for hosts that reach no
    /// registry.
    Images(images::Args),
    /// Measure the pipeline against peers in the same run (`bench release`).
    Bench(bench::Args),
    /// Run every test against real services, starting what they need (PostgreSQL, Chromium).
    Test(test::Args),
    /// Check the host program's structure: layers, no import cycle, clap only in commands/,
    /// a doc comment on every module, short functions, ARCHITECTURE.md's paths (the lint
    /// suite runs it too).
    Tidy,
    #[command(flatten)]
    Host(hitsave_host::commands::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = xtask::checkout::project_root();
    let result = match cli.command {
        Command::Build(args) => release::build::run(&root, args),
        Command::Package(args) => release::run_package(&root, args),
        Command::Release(args) => release::run_release(&root, args),
        Command::Keygen(args) => xtask::signing::run_keygen(args),
        Command::Deploy(args) => deploy::run(&root, args),
        Command::Aws(args) => aws::run(&root, args),
        Command::Dev(args) => dev::run(&root, args),
        Command::Images(args) => images::run(&root, args),
        Command::Bench(args) => bench::run(&root, args),
        Command::Test(args) => test::run(&root, args),
        Command::Tidy => test::tidy(&root),
        Command::Host(command) => command.run(Some(&xtask::checkout::default_store(&root))),
    };
    hitsave_host::exit(result)
}
