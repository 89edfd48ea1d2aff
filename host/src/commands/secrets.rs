//! `xtask secrets list|set|rotate|prune`: the operator's view of the secrets directory. Values
//! go in through standard input only and never come out: not printed, not logged, not in
//! history.jsonl (which names the secret and the time).

use std::io::{IsTerminal, Read};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::commands::flags::WatchFlags;
use crate::kit::files::replace_private;
use crate::secrets::rotate::{self, Rotate};
use crate::site::history::{Action, HistoryEntry, Outcome};
use crate::site::host::{Host, command};
use crate::site::rotations::{Rotations, now, rfc3339};
use crate::site::secret_files::{NAMES, previous_file};
use crate::site::session::Session;
use crate::site::stack::Stack;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Secrets,
}

/// Where the stack lives and how long to wait for it.
#[derive(clap::Args)]
struct Place {
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = crate::site::host::DEFAULT_ROOT)]
    root: camino::Utf8PathBuf,
    /// How long to wait for an install (or another secrets command) to finish.
    #[arg(long, value_name = "SECS", default_value = "600")]
    lock_timeout: u64,
    /// How long a new container has to become healthy; the old one serves meanwhile.
    #[arg(long, value_name = "SECS", default_value = "120")]
    health_timeout: u64,
}

#[derive(clap::Subcommand)]
enum Secrets {
    /// Each secret's file: size, mode, owner, age, and a rotation's grace period. Never values.
    List {
        #[command(flatten)]
        place: Place,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write NAME's value, read from standard input (a terminal gets a prompt and no echo).
    /// Running containers keep the value they started with: `rotate` applies one live.
    Set {
        #[command(flatten)]
        place: Place,
        /// A secret the stack declares: postgres_password, jwt_secret, gh_client_secret.
        name: String,
    },
    /// Apply a new value with no request dropped: the apps that mount NAME are replaced
    /// blue/green and the old value keeps working until the grace period ends (database
    /// password: also changed in the database).
    Rotate {
        #[command(flatten)]
        place: Place,
        /// postgres_password, jwt_secret or gh_client_secret.
        name: String,
        /// The new value from standard input (gh_client_secret always; the others are
        /// generated unless given).
        #[arg(long)]
        from_stdin: bool,
        /// How long the old value keeps working (JWT: tokens signed with it) [default: 1d for
        /// jwt_secret, the sessions' lifetime; 1h for the others].
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
        /// Rotate even though the last rotation's grace period is still running (the value
        /// before it stops working at once).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        watch: WatchFlags,
    },
    /// End the grace periods that are over: remove each previous value and replace the
    /// containers that still hold it (a timer runs this on the hosts).
    Prune {
        #[command(flatten)]
        place: Place,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Secrets::List { place, json } => list(&place, json),
        Secrets::Set { place, name } => set(&place, &name),
        Secrets::Rotate {
            place,
            name,
            from_stdin,
            grace,
            force,
            watch,
        } => {
            check_name(&name)?;
            let value = from_stdin.then(|| read_value(&name)).transpose()?;
            let grace = grace.unwrap_or(if name == "jwt_secret" {
                Duration::from_secs(86_400)
            } else {
                Duration::from_secs(3_600)
            });
            with_stack(
                &place,
                &format!("secrets rotate {name}"),
                |session, stack| {
                    let (ui, host) = (&session.ui, &session.host);
                    let r = Rotate {
                        ui,
                        host,
                        stack,
                        name: &name,
                        value,
                        grace,
                        force,
                        timeout: Duration::from_secs(place.health_timeout),
                    };
                    let result = r.run_watched(&watch.settings()).with_context(|| {
                        format!(
                            "the rotation of {name} did not finish; the running containers keep working; run `{}` again to finish it",
                            command(&format!("secrets rotate {name}"), &place.root)
                        )
                    });
                    if let Ok(Some(why)) = result {
                        return record_as(
                            session,
                            Action::RotateSecret,
                            &name,
                            Outcome::RolledBack,
                            Err(anyhow::anyhow!(why)),
                        );
                    }
                    record(session, Action::RotateSecret, &name, result.map(|_| ()))?;
                    ui.info(&format!(
                        "{name} is rotated; no container was stopped before its replacement served"
                    ));
                    Ok(())
                },
            )
        }
        Secrets::Prune { place } => with_stack(&place, "secrets prune", |session, stack| {
            let timeout = Duration::from_secs(place.health_timeout);
            let result = rotate::expire(&session.ui, &session.host, stack, timeout);
            match result {
                Ok(names) => {
                    for name in &names {
                        record(session, Action::ExpireSecret, name, Ok(()))?;
                    }
                    if names.is_empty() {
                        session.ui.info("no grace period is over");
                    }
                    Ok(())
                }
                Err(e) => record(session, Action::ExpireSecret, "-", Err(e)),
            }
        }),
    }
}

/// Runs `f` on the current release in a session (under the install lock).
fn with_stack(
    place: &Place,
    what: &str,
    f: impl FnOnce(&Session, &Stack) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let session = Session::begin(&place.root, what, Duration::from_secs(place.lock_timeout))?;
    let current = session.host.current().with_context(|| {
        format!(
            "nothing is installed under {}: `secrets set` writes values before the first install",
            place.root
        )
    })?;
    let stack = Stack::open(&session.host.release_dir(&current))?;
    f(&session, &stack)
}

/// The history line of `action` on secret `name` (none before the first install).
fn record(
    session: &Session,
    action: Action,
    name: &str,
    result: anyhow::Result<()>,
) -> anyhow::Result<()> {
    let outcome = if result.is_ok() {
        Outcome::Done
    } else {
        Outcome::Failed
    };
    record_as(session, action, name, outcome, result)
}

/// The history line with the outcome given (a rotation turned back by its watch).
fn record_as(
    session: &Session,
    action: Action,
    name: &str,
    outcome: Outcome,
    result: anyhow::Result<()>,
) -> anyhow::Result<()> {
    let Some(current) = session.host.current() else {
        return result;
    };
    let mut entry = HistoryEntry::new(action, current);
    entry.secret = Some(name.to_owned());
    entry.deployment = None;
    session.finish(entry, outcome, result)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.ends_with("_previous") || name.ends_with(".previous") {
        bail!("{name} is kept by `secrets rotate` during a grace period, not set by hand");
    }
    ensure!(
        NAMES.contains(&name),
        "the stack declares no secret {name:?}: its secrets are {}",
        NAMES.join(", ")
    );
    Ok(())
}

/// A value from standard input: one line from a terminal, with no echo; all of a pipe or a
/// file, less its final newline. Never empty.
fn read_value(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let value = if stdin.is_terminal() {
        eprint!("{name} (not shown): ");
        let line = read_without_echo(&stdin)?;
        eprintln!();
        line
    } else {
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the value from standard input (it must be UTF-8 text)")?;
        text
    };
    let value = value.trim_end_matches(['\n', '\r']).to_owned();
    ensure!(
        !value.is_empty(),
        "no value for {name} on standard input: nothing was written"
    );
    ensure!(
        !value.contains(['\n', '\0']),
        "the value for {name} has more than one line (or a NUL byte): nothing was written"
    );
    Ok(value)
}

fn read_without_echo(stdin: &std::io::Stdin) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = tcgetattr(stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(stdin, SetArg::TCSANOW, &quiet).context("cannot turn the terminal's echo off")?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    tcsetattr(stdin, SetArg::TCSANOW, &saved).context("cannot turn the terminal's echo on")?;
    read.context("cannot read the value")?;
    Ok(line)
}

fn set(place: &Place, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let host = Host::open(&place.root)?;
    let dir = host.secrets_dir();
    if !dir.is_dir() {
        bail!(
            "{dir} does not exist: create it, owned by root, mode 0700 (`install -d -m 0700 {dir}`)"
        );
    }
    if name == "postgres_password" && host.current().is_some() {
        bail!(
            "the database already has a password, which `set` would not change: `{}` changes both with no downtime",
            command("secrets rotate postgres_password", &place.root)
        );
    }
    let value = read_value(name)?;
    let session = Session::begin(
        &place.root,
        &format!("secrets set {name}"),
        Duration::from_secs(place.lock_timeout),
    )?;
    let path = dir.join(name);
    replace_private(&path, value.as_bytes())?;
    crate::site::secret_files::ensure_previous_files(&dir)?;
    crate::site::secret_files::hand_over(&dir)?;
    record(&session, Action::SetSecret, name, Ok(()))?;
    let ui = &session.ui;
    ui.info(&format!("wrote {path} ({} bytes, mode 0600)", value.len()));
    if host.current().is_some() {
        ui.info(&format!(
            "the running containers keep the value they started with until they are replaced; `{}` applies a new value live",
            command(&format!("secrets rotate {name} --from-stdin"), &place.root)
        ));
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Listed {
    name: String,
    present: bool,
    bytes: u64,
    mode: String,
    owner: u32,
    age_seconds: u64,
    /// During a rotation's grace period: when the previous value stops working.
    previous_until: Option<String>,
    /// A rotation that was interrupted (run it again to finish).
    rotation_unfinished: bool,
}

fn list(place: &Place, json: bool) -> anyhow::Result<()> {
    let dir = place.root.join("secrets");
    let rotations = Rotations::read(&dir)?;
    let now_unix = now();
    let mut rows = Vec::new();
    for name in NAMES {
        let meta = std::fs::metadata(dir.join(name)).ok();
        let rotation = rotations.0.get(*name);
        let previous_kept = std::fs::metadata(previous_file(&dir, name)).is_ok_and(|m| m.len() > 0);
        rows.push(Listed {
            name: name.to_string(),
            present: meta.is_some(),
            bytes: meta.as_ref().map_or(0, |m| m.len()),
            mode: meta
                .as_ref()
                .map_or("-".into(), |m| format!("{:04o}", m.mode() & 0o7777)),
            owner: meta.as_ref().map_or(0, |m| m.uid()),
            age_seconds: meta
                .as_ref()
                .map_or(0, |m| now_unix.saturating_sub(m.mtime().max(0) as u64)),
            previous_until: rotation
                .filter(|r| previous_kept && !r.expired)
                .map(|r| rfc3339(r.grace_until)),
            rotation_unfinished: rotation.is_some_and(|r| !r.applied),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<18} {:>6} {:>5} {:>6} {:>10}  ROTATION",
        "NAME", "BYTES", "MODE", "OWNER", "AGE"
    );
    for r in &rows {
        if !r.present {
            println!(
                "{:<18} missing: `{}`",
                r.name,
                command(&format!("secrets set {}", r.name), &place.root)
            );
            continue;
        }
        let rotation = match (&r.previous_until, r.rotation_unfinished) {
            (_, true) => "unfinished: run `secrets rotate` again".to_owned(),
            (Some(until), _) => format!("previous value accepted until {until}"),
            (None, _) => "-".to_owned(),
        };
        println!(
            "{:<18} {:>6} {:>5} {:>6} {:>10}  {rotation}",
            r.name,
            r.bytes,
            r.mode,
            r.owner,
            age(r.age_seconds)
        );
    }
    Ok(())
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn undeclared_and_kept_names_are_refused() {
        assert!(super::check_name("jwt_secret").is_ok());
        for name in ["nosuch", "jwt_secret_previous", "jwt_secret.previous", ""] {
            assert!(super::check_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(super::age(5), "5s");
        assert_eq!(super::age(600), "10m");
        assert_eq!(super::age(36_000), "10h");
        assert_eq!(super::age(864_000), "10d");
    }
}
