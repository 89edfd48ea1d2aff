//! `cargo xtask`: HitSave's build, test, release and deploy pipeline.
//!
//! The mechanics (packaging, ...) live in the library, `lib.rs`; this binary holds the commands.
//! `main` parses flags, finds the project root and dispatches to one module per command, each
//! a plain `run` function.

mod postgres;
mod process;
mod secrets;
mod test;
mod tools;
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
    /// Run every test against real services, starting what they need (PostgreSQL, Chromium).
    Test(test::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = project_root();
    let result = match cli.command {
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

/// The workspace root: xtask lives one level below it.
fn project_root() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_owned()
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` (CI points it at a cache that outlives
/// the checkout) or `target/` in the workspace.
fn target_dir(root: &Utf8Path) -> Utf8PathBuf {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}
