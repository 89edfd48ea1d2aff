//! Day two on the host, always on the current release: `xtask logs` (its containers through
//! compose, with its files and release.env, each line prefixed by service and index), `xtask exec`
//! (a command in the running container of a service, whatever a blue/green swap named it) and
//! `xtask maintenance on|off` (every host answers 503 with Retry-After: a page for the site,
//! JSON for the API; no container stops, nothing reloads) and `xtask psql` (psql.rs: logged in
//! with the password from the secret file, which no argument or environment variable holds).

use anyhow::{Context, bail};
use camino::Utf8PathBuf;

use crate::site::host::Host;
use crate::site::nginx;
use crate::site::stack::Stack;

/// The install root, for every command here.
#[derive(clap::Args)]
pub struct Root {
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = crate::site::host::DEFAULT_ROOT)]
    root: Utf8PathBuf,
}

impl Root {
    fn current(&self) -> anyhow::Result<(Host, Stack)> {
        let host = Host::open(&self.root)?;
        let current = host.current().with_context(|| {
            format!(
                "nothing is installed under {}: run `{}` first",
                self.root,
                crate::site::host::command("install --store ... --channel ...", &self.root)
            )
        })?;
        let stack = Stack::open(&host.release_dir(&current))?;
        Ok((host, stack))
    }
}

#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    root: Root,
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

#[derive(clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    root: Root,
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

#[derive(clap::Args)]
pub struct PsqlArgs {
    #[command(flatten)]
    root: Root,
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

#[derive(clap::Args)]
pub struct MaintenanceArgs {
    #[command(subcommand)]
    switch: Switch,
}

#[derive(clap::Subcommand)]
enum Switch {
    /// Every host answers 503 with Retry-After (a page for the site, JSON for the API).
    On {
        #[command(flatten)]
        root: Root,
        /// What the page and the JSON say.
        #[arg(
            long,
            default_value = "HitSave is down for maintenance; please try again in a few minutes."
        )]
        message: String,
    },
    /// Back to serving.
    Off {
        #[command(flatten)]
        root: Root,
    },
}

/// How long `maintenance on|off` waits for an install, a restore or a rotation to finish.
const MAINTENANCE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// A session under the install lock: a restore's maintenance is not ended under it, nor an
/// operator's switched half-way through an install.
fn lock_for(host: &Host, what: &str) -> anyhow::Result<crate::site::session::Session> {
    crate::site::session::Session::begin(&host.root, what, MAINTENANCE_LOCK_WAIT)
}

pub fn maintenance(args: MaintenanceArgs) -> anyhow::Result<()> {
    match args.switch {
        Switch::On { root, message } => {
            let (host, _) = root.current()?;
            let _lock = lock_for(&host, "maintenance on")?;
            let dir = host.nginx_dir();
            if !nginx::supports_maintenance(&dir) {
                bail!(
                    "the current release's site has no maintenance mode (it predates it): install a newer release first"
                );
            }
            nginx::maintenance_on(&dir, &message, "operator")?;
            eprintln!(
                "xtask: maintenance is on: every host answers 503 with Retry-After {} s; `{}` ends it",
                nginx::RETRY_AFTER,
                crate::site::host::command("maintenance off", &root.root)
            );
        }
        Switch::Off { root } => {
            let (host, _) = root.current()?;
            let _lock = lock_for(&host, "maintenance off")?;
            nginx::maintenance_off(&host.nginx_dir())?;
            eprintln!("xtask: maintenance is off: the site serves");
        }
    }
    Ok(())
}
