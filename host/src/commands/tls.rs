//! `xtask tls renew|status`: the HTTPS certificate from an ACME CA (`tls`).

use std::time::Duration;

use camino::Utf8PathBuf;

use crate::commands::flags::{RootFlag, TlsFlags};
use crate::site::host::DEFAULT_ROOT;

/// `tls`'s subcommands.
#[derive(clap::Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Renew the certificate when it is due (a third of its lifetime left), or issue one when
    /// there is none; nginx reloads gracefully. Run by hitsave-tls-renew.timer.
    Renew(RenewArgs),
    /// The certificate's names, issuer and expiry.
    Status(RootFlag),
}

#[derive(clap::Args)]
struct RenewArgs {
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = DEFAULT_ROOT)]
    root: Utf8PathBuf,
    #[command(flatten)]
    tls: TlsFlags,
    /// Renew now, whatever the expiry and the backoff after a failure.
    #[arg(long)]
    force: bool,
    /// How long to wait for an install to finish (renewals take the install lock).
    #[arg(long, value_name = "SECS", default_value = "600")]
    lock_timeout: u64,
}

impl TlsArgs {
    /// Renews or reports.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Renew(args) => crate::tls::renew(
                &args.root,
                &args.tls.settings(),
                args.force,
                Duration::from_secs(args.lock_timeout),
            ),
            Command::Status(args) => crate::tls::status(&args.root),
        }
    }
}
