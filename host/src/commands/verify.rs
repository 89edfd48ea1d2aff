//! `xtask verify`: a release's signatures, then every artifact's SHA-256 and size
//! (`release::verify`).

use camino::Utf8Path;

use crate::commands::flags::{StoreFlags, TrustFlags, WhichFlags};
use crate::release::verify::VerifyOptions;

/// `verify`'s flags.
#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    which: WhichFlags,
    #[command(flatten)]
    trust: TrustFlags,
    /// Print a machine-readable report on stdout.
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    /// Checks the release; `default_store` is read when no store is named.
    pub fn run(self, default_store: Option<&Utf8Path>) -> anyhow::Result<()> {
        crate::release::verify::run(
            VerifyOptions {
                store: self.store.location(),
                which: self.which.which()?,
                trust: self.trust.options(),
                json: self.json,
            },
            default_store,
        )
    }
}
