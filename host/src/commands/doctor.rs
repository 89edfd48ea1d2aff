//! `cargo xtask doctor`: the host preflight on its own, with the fix for each problem:
//! Docker and Compose, the install root, the secrets, TLS files, disk space, the trusted
//! release keys.

use camino::Utf8PathBuf;

use crate::release::preflight;

#[derive(clap::Args)]
pub struct Args {
    /// The install root.
    #[arg(long, env = "HITSAVE_ROOT", default_value = crate::site::host::DEFAULT_ROOT)]
    root: Utf8PathBuf,
    /// Check the TLS files too (production and staging hosts).
    #[arg(long)]
    tls: bool,
    /// The trusted release keys (see `install --keys`).
    #[arg(long, env = "HITSAVE_KEYS", value_name = "DIR", default_value = crate::site::settings::DEFAULT_KEYS)]
    keys: Utf8PathBuf,
}

/// The key directory holds at least one trusted key, and only root can change what it trusts.
fn keys(dir: &camino::Utf8Path) -> Result<String, String> {
    crate::release::trust::Keys::load_owned(dir)
        .map(|keys| keys.describe())
        .map_err(|e| format!("{e:#}"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    match preflight::docker_and_compose() {
        Ok(versions) => println!("ok: {versions}"),
        Err(e) => problems.push(format!("{e:#}")),
    }
    match keys(&args.keys) {
        Ok(described) => println!("ok: release keys in {}: {described}", args.keys),
        Err(p) => problems.push(p),
    }
    let resident = crate::codedeploy::resident::path(&args.root);
    match crate::codedeploy::resident::origin(&args.root) {
        Some(origin) if resident.is_file() => {
            println!("ok: resident program {resident}: {origin}")
        }
        _ => println!(
            "note: no resident program at {resident}: CodeDeploy's hooks use the current release's host program until a deployment installs one (or run the user data's hitsave-bootstrap)"
        ),
    }
    check_secrets_and_tls(&args, &mut problems);
    let probe = if args.root.exists() {
        args.root.clone()
    } else {
        Utf8PathBuf::from("/")
    };
    let free = preflight::free_bytes(&probe)?;
    if free < 2 * 1024 * 1024 * 1024 {
        problems.push(format!(
            "only {} free under {probe}: free at least 2 GiB (`docker system prune`, old releases)",
            crate::kit::ui::human_bytes(free)
        ));
    } else {
        println!(
            "ok: {} free under {probe}",
            crate::kit::ui::human_bytes(free)
        );
    }
    check_backups_and_maintenance(&args.root, &mut problems);
    database_place(&args.root);
    if problems.is_empty() {
        println!(
            "the host is ready for `{}`",
            crate::site::host::command("install", &args.root)
        );
        return Ok(());
    }
    for p in &problems {
        println!("PROBLEM: {p}");
    }
    anyhow::bail!("{} problem(s) to fix before installing", problems.len())
}

/// Where the database's files are; a warning when a production host keeps them on its root
/// disk (lost with the instance, backups aside).
fn database_place(root: &camino::Utf8Path) {
    let host = crate::site::host::Host {
        root: root.to_owned(),
    };
    let Some(current) = host.current() else {
        println!(
            "note: no release installed yet: the first install puts the database on the data volume when host.env names one (HITSAVE_DATA_DIR)"
        );
        return;
    };
    let place = crate::site::stack::Stack::open(&host.release_dir(&current)).and_then(|stack| {
        if stack.external_db() {
            return Ok(None);
        }
        let dir = match (stack.env.db_dir(), stack.db_volume_place()?) {
            (Some(dir), _) => dir.to_owned(),
            (None, Some((mountpoint, device))) => device.unwrap_or(mountpoint),
            (None, None) => {
                anyhow::bail!("the database's volume {} is not there", stack.db_volume())
            }
        };
        Ok(Some((dir, stack.env.env()?)))
    });
    match place {
        Ok(None) => println!("ok: the database is an external server"),
        Ok(Some((dir, env))) => match crate::kit::files::on_root_disk(&dir) {
            Ok(false) => println!("ok: the database's files are in {dir}, off the root disk"),
            Ok(true) if env == crate::site::settings::Env::Production => println!(
                "WARNING: the database's files are in {dir}, on the root disk: terminating the instance loses them (backups aside). Put them on a data volume (docs/aws-setup.md, `cargo xtask aws apply`)"
            ),
            Ok(true) => println!("note: the database's files are in {dir}, on the root disk"),
            Err(e) => println!("note: cannot tell which disk {dir} is on: {e:#}"),
        },
        Err(e) => println!("note: cannot tell where the database's files are: {e:#}"),
    }
}

/// Every secret file, unfinished rotations, and (with --tls) the certificate.
fn check_secrets_and_tls(args: &Args, problems: &mut Vec<String>) {
    let secrets = args.root.join("secrets");
    for name in crate::site::secret_files::NAMES {
        match preflight::secret_file(&secrets.join(name)) {
            Ok(()) => println!("ok: secret {name}"),
            Err(p) => problems.push(format!("secret {name}: {p}")),
        }
    }
    match crate::site::secret_files::unfinished_rotations(&secrets) {
        Ok(names) => problems.extend(names.into_iter().map(|name| {
            format!(
                "the rotation of {name} did not finish: `{}` finishes it",
                crate::site::host::command(&format!("secrets rotate {name}"), &args.root)
            )
        })),
        Err(e) => problems.push(format!("{e:#}")),
    }
    if args.tls {
        for file in ["fullchain.pem", "privkey.pem"] {
            match preflight::secret_file(&args.root.join("tls").join(file)) {
                Ok(()) => println!("ok: TLS {file}"),
                Err(p) => problems.push(format!("TLS: {p}")),
            }
        }
        let host = crate::site::host::Host {
            root: args.root.clone(),
        };
        match crate::tls::report(&host) {
            Ok(line) => println!("ok: certificate {line}"),
            Err(p) => problems.push(format!("TLS: {p}")),
        }
    }
}

/// The last backup that restores, and a maintenance left on.
fn check_backups_and_maintenance(root: &camino::Utf8Path, problems: &mut Vec<String>) {
    let host = crate::site::host::Host {
        root: root.to_owned(),
    };
    match crate::database::archive::last_verified(&host) {
        Some((id, age)) if age < std::time::Duration::from_secs(26 * 3600) => {
            println!("ok: backup {id} restores ({} h ago)", age.as_secs() / 3600)
        }
        Some((id, age)) => println!(
            "WARNING: the last backup that passed its restore drill, {id}, is {} h old: is the daily timer running? (`systemctl status hitsave-backup.timer`, `{}`)",
            age.as_secs() / 3600,
            crate::site::host::command("backup verify", root)
        ),
        None => println!(
            "WARNING: no backup has passed its restore drill: `{}` then `{}`",
            crate::site::host::command("backup", root),
            crate::site::host::command("backup verify", root)
        ),
    }
    if crate::site::nginx::in_maintenance(&host.nginx_dir()) {
        problems.push(format!(
            "the site is in maintenance ({}/maintenance.html): unless a restore is running, one was stopped half-way; run that restore again, or install the current release again (`{}`), to end it",
            host.nginx_dir(),
            crate::site::host::command("install --channel ...", root)
        ));
    }
}
