//! `xtask backup [verify [ID]]`: the database into `<root>/backups` and the store
//! (`database::backup`), or the restore drill of a backup (`database::drill`).

use camino::Utf8PathBuf;
use hitsave_schema::BackupId;

use crate::commands::flags::{RetentionFlags, StoreFlags};
use crate::database::backup::{BackupOptions, Reason};
use crate::site::host::DEFAULT_ROOT;

/// `backup`'s flags.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<Command>,
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = DEFAULT_ROOT, global = true)]
    root: Utf8PathBuf,
    /// Also copy the backup to this artifact store, under backups/ (S3 in production: off the
    /// instance).
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    retention: RetentionFlags,
    /// Why it is taken: `scheduled` from the daily timer.
    #[arg(long, value_enum, default_value = "manual")]
    reason: Reason,
    /// Print the record as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Back up the database of this container instead of the installed stack's (for `cargo
    /// xtask bench backup`).
    #[arg(long, hide = true)]
    db_container: Option<String>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The restore drill: check a backup's SHA-256, restore it into a throwaway PostgreSQL
    /// container (never the live database), compare every table's rows with its record and
    /// check the schema with the migrator. Exits non-zero saying what differs.
    Verify {
        /// The backup [default: the newest].
        id: Option<BackupId>,
    },
}

impl BackupArgs {
    /// Takes a backup, or drills one.
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(Command::Verify { id }) = &self.command {
            return crate::database::backup::verify(&self.root, id.as_ref(), self.json);
        }
        crate::database::backup::run(BackupOptions {
            root: self.root,
            store: self.store.location(),
            retention: self.retention.retention(),
            reason: self.reason,
            json: self.json,
            db_container: self.db_container,
        })
    }
}
