//! `xtask` on a host: the bundle's `bin/xtask`. Parses flags and runs one host command.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Install, check and roll back HitSave releases on this host",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: hitsave_host::Command,
}

fn main() -> std::process::ExitCode {
    hitsave_host::exit(Cli::parse().command.run())
}
