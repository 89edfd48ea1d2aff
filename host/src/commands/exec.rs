//! `xtask exec SERVICE -- CMD...`: a command in the running container of a service of the
//! current release, whatever a blue/green swap named it.

use anyhow::Context;

use crate::commands::flags::RootFlag;

/// The flags.
#[derive(clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    root: RootFlag,
    /// The service whose running container the command runs in (api, web, db, nginx).
    service: String,
    /// The command and its arguments [default: sh].
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn exec(args: ExecArgs) -> anyhow::Result<()> {
    let (_, stack) = args.root.current()?;
    let container = crate::site::stack::running_container(&stack, &args.service)?;
    let mut argv: Vec<String> = vec!["exec".into(), "-i".into()];
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        argv.push("-t".into());
    }
    argv.push(container);
    if args.command.is_empty() {
        argv.push("sh".into());
    } else {
        argv.extend(args.command);
    }
    let status = std::process::Command::new("docker")
        .args(&argv)
        .status()
        .context("cannot run docker exec")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
