//! `xtask` on a host: each release's `xtask` artifact (`bin/xtask`), and the resident copy the
//! hooks run (`/opt/hitsave/bin/xtask`). Parses flags and runs one host command.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Install, check and roll back HitSave releases, back up and restore their database, and keep their HTTPS certificate, on this host",
    after_help = "This is the host program every release ships (its xtask artifact; the \
                  CodeDeploy hooks run the host's resident copy, /opt/hitsave/bin/xtask, as \
                  root). It installs (signed releases only), checks, rolls back, \
                  backs up and restores, and renews the certificate: \
                  building, releasing, deploying, dev and the tests are `cargo xtask` in a \
                  checkout, and are not in this program.",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: hitsave_host::commands::Command,
}

fn main() -> std::process::ExitCode {
    hitsave_host::exit(Cli::parse().command.run(None))
}
