//! `xtask logs [SERVICE...] --follow`: the current release's logs through compose, each line
//! prefixed by service and index; `--remote` reads them from the environment's CloudWatch Logs
//! group instead (when the instance's own copy is gone).

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
    /// Read the environment's CloudWatch Logs group (HITSAVE_LOGS_GROUP) instead of Docker's
    /// copy: every stream since --since [default: 1h], at most --tail lines per service.
    #[arg(long)]
    remote: bool,
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
    if args.remote {
        return remote(&stack, &args);
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

/// The lines of the stack's CloudWatch Logs group since `--since`, `<stream> | <line>`.
fn remote(stack: &crate::site::stack::Stack, args: &LogsArgs) -> anyhow::Result<()> {
    let group = stack.env.logs_group().context(
        "this environment's logs go to no CloudWatch Logs group (HITSAVE_LOGS_GROUP in the host settings; docs/aws-setup.md): read them with `xtask logs`",
    )?;
    let region = stack
        .env
        .logs_region()
        .context("release.env names no HITSAVE_LOGS_REGION")?;
    let since = args.since.as_deref().unwrap_or("1h");
    let since = match humantime::parse_duration(since) {
        Ok(ago) => std::time::SystemTime::now() - ago,
        Err(_) => humantime::parse_rfc3339_weak(since)
            .with_context(|| format!("--since {since}: not a duration (10m) or a time"))?,
    };
    let since_ms = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let limit = (args.tail as usize).max(1) * 8;
    let events = crate::kit::cloudwatch_logs::events(
        group,
        region,
        stack.env.logs_endpoint(),
        since_ms,
        limit,
    )?;
    let wanted = |stream: &str| {
        args.services.is_empty()
            || args
                .services
                .iter()
                .any(|s| stream.contains(&format!("-{s}-")))
    };
    let mut printed = 0;
    for e in events.iter().filter(|e| wanted(&e.stream)) {
        println!("{} | {}", e.stream, e.message);
        printed += 1;
    }
    eprintln!("xtask: logs: {printed} lines from CloudWatch Logs group {group} ({region})");
    Ok(())
}
