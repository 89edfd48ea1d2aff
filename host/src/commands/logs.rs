//! `xtask logs [SERVICE...] --follow`: the current release's logs through compose, each line
//! prefixed by service and index.

use anyhow::{Context, bail};

use crate::commands::flags::RootFlag;

/// The flags.
#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    root: RootFlag,
    /// Services to show (api, web, db, nginx) [default: all].
    services: Vec<String>,
    /// Keep printing new lines until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Only lines newer than this (`10m`, `2h`, or an RFC 3339 time).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Lines from the end of each container's log.
    #[arg(long, value_name = "N", default_value = "100")]
    tail: u32,
}

pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let (_, stack) = args.root.current()?;
    let known = crate::site::stack::services(&stack)?;
    for s in &args.services {
        if !known.contains(s) {
            bail!(
                "the current release has no service {s:?}: its services are {}",
                known.join(", ")
            );
        }
    }
    let tail = args.tail.to_string();
    // Into a pipe or a file: no colours and no terminal control codes.
    let mut argv = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        vec!["logs"]
    } else {
        vec!["--ansi", "never", "logs", "--no-color"]
    };
    argv.extend(["--timestamps", "--tail", &tail]);
    if args.follow {
        argv.push("--follow");
    }
    if let Some(since) = &args.since {
        argv.extend(["--since", since]);
    }
    argv.extend(args.services.iter().map(String::as_str));
    // Streamed as compose prints it: `<service>-<index> | <time> <line>`.
    stack
        .command(&argv)
        .stdin_null()
        .unchecked()
        .run()
        .context("docker compose logs failed")?;
    Ok(())
}
