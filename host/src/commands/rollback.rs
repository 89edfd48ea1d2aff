//! `xtask rollback [--to ID]`: run a release that is already on the host again
//! (`release::rollback`).

use hitsave_schema::ReleaseId;

use crate::commands::flags::{HostFlags, TrustFlags, WatchFlags};
use crate::release::rollback::RollbackOptions;

/// `rollback`'s flags.
#[derive(clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    host: HostFlags,
    #[command(flatten)]
    trust: TrustFlags,
    /// The release to go back to [default: previous].
    #[arg(long, value_name = "ID")]
    to: Option<ReleaseId>,
    #[command(flatten)]
    watch: WatchFlags,
}

impl RollbackArgs {
    /// Runs the release again.
    pub fn run(self) -> anyhow::Result<()> {
        crate::release::rollback::run(RollbackOptions {
            host: self.host.options(),
            trust: self.trust.options(),
            to: self.to,
            watch: self.watch.settings(),
        })
    }
}
