//! `xtask psql [-- PSQL-ARGS...]`: psql on the current release's database, logged in with the
//! password from the secret file, which no argument or environment variable holds
//! (`database::psql`).

use anyhow::Context;

use crate::commands::flags::RootFlag;

/// The flags.
#[derive(clap::Args)]
pub struct PsqlArgs {
    #[command(flatten)]
    root: RootFlag,
    /// psql's own arguments (`-- -c 'select 1'`) [default: an interactive session].
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn psql(args: PsqlArgs) -> anyhow::Result<()> {
    let (host, stack) = args.root.current()?;
    let db = crate::database::psql::Database::of(&stack)?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let (mut cmd, _passfile) = db.psql(
        &host.secrets_dir().join("postgres_password"),
        interactive,
        &args.args,
    )?;
    // On a terminal docker's raw mode hands Ctrl-C to psql; killed otherwise, the passfile
    // is removed by the next `secrets rotate` or `prune` (remove_leftovers).
    let status = cmd.status().context("cannot run docker")?;
    if !status.success() {
        // The passfile goes before we exit.
        drop(_passfile);
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
