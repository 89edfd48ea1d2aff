//! `xtask restore BACKUP|--latest|--before RELEASE|--undo`: the live database back to a
//! backup while the site answers a maintenance page (`database::restore`).

use camino::Utf8PathBuf;
use hitsave_schema::{BackupId, ReleaseId};

use crate::commands::flags::StoreFlags;
use crate::database::restore::RestoreOptions;
use crate::site::host::DEFAULT_ROOT;

/// `restore`'s flags.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(false))]
pub struct RestoreArgs {
    /// The backup to restore: its id (`ls <root>/backups`, or backups/<env>/<host>/ in the
    /// store).
    #[arg(group = "which")]
    backup: Option<BackupId>,
    /// The newest backup of this environment (on the host, or any of its hosts' in the
    /// store), or of the one --from names.
    #[arg(long, group = "which")]
    latest: bool,
    /// Restore a backup of another environment, another host (`production/i-0abc...`), or
    /// another database: refused unless named here. The command says what it restores from.
    #[arg(long, value_name = "ENV[/HOST]")]
    from: Option<String>,
    /// The backup taken before RELEASE was first installed here (its pre-migrate backup).
    #[arg(long, value_name = "RELEASE", group = "which")]
    before: Option<ReleaseId>,
    /// Undo the last restore: the database it replaced becomes the live one again.
    #[arg(long, group = "which")]
    undo: bool,
    /// Where backups the host does not have are downloaded from.
    #[command(flatten)]
    store: StoreFlags,
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = DEFAULT_ROOT)]
    root: Utf8PathBuf,
    /// How long to wait for an install, a rollback or a backup to finish.
    #[arg(long, value_name = "SECS", default_value = "600")]
    lock_timeout: u64,
    /// How long the release has to become healthy on the restored database before the
    /// replaced database and the release that ran are brought back.
    #[arg(long, value_name = "SECS", default_value = "120")]
    health_timeout: u64,
}

impl RestoreArgs {
    /// Restores the backup the flags name.
    pub fn run(self) -> anyhow::Result<()> {
        crate::database::restore::run(RestoreOptions {
            backup: self.backup,
            latest: self.latest,
            from: self.from,
            before: self.before,
            undo: self.undo,
            store: self.store.location(),
            root: self.root,
            lock_timeout: self.lock_timeout,
            health_timeout: self.health_timeout,
        })
    }
}
