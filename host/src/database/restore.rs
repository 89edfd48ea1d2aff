//! `xtask restore BACKUP|--latest|--before RELEASE|--undo`: the live database back to a
//! backup, with the site answering a maintenance page (never a connection error) for the
//! seconds the apps are down.
//!
//! Everything that can refuse happens while the site still serves: the dump is checked (and
//! downloaded from the store when the host lacks it), restored into a new database on the
//! live server, its rows counted against the record, and a release whose migrator finds that
//! schema exactly its own is chosen (the current one first). Only then: maintenance on, apps
//! stopped, the new database renamed into place in one transaction (the live one is kept as
//! `<db>_replaced_<time>` until the next install prunes it, so `--undo` can go back), the
//! release started and gated on its own containers, maintenance off, gated through nginx.
//! When the release does not come up, the replaced database and the release that ran go back.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{self as schema, BackupId, BackupRecord, ReleaseId};

use crate::database::server::Server;
use crate::kit::store::{self, Store, StoreLocation};
use crate::kit::ui::{Ui, human_bytes};
use crate::site::history::{Action, HistoryEntry, Outcome};
use crate::site::host::{self, Host};
use crate::site::nginx;
use crate::site::session::Session;
use crate::site::stack::Stack;
use crate::site::swap;

/// Which backup to restore, and how long to wait.
pub struct RestoreOptions {
    /// The backup to restore, by id.
    pub backup: Option<BackupId>,
    /// The newest backup of this environment, or of the one `from` names.
    pub latest: bool,
    /// Another environment, host (`production/i-0abc...`) or database to restore from.
    pub from: Option<String>,
    /// The backup taken before this release was first installed here.
    pub before: Option<ReleaseId>,
    /// Undo the last restore.
    pub undo: bool,
    /// Where backups the host does not have are downloaded from.
    pub store: StoreLocation,
    /// The install root.
    pub root: Utf8PathBuf,
    /// How long to wait for another change to finish.
    pub lock_timeout: u64,
    /// How long the release has to become healthy on the restored database.
    pub health_timeout: u64,
}

/// Databases of restores that never finished, dropped by the next restore.
const RESTORING: &str = "_restoring_";
/// Databases a restore replaced, kept until the next install prunes them.
const REPLACED: &str = "_replaced_";
/// How long an app has to finish its requests when it is stopped (as in a swap).
const DRAIN_SECS: &str = "25";

pub fn run(args: RestoreOptions) -> anyhow::Result<()> {
    let session = Session::begin(
        &args.root,
        "restore",
        Duration::from_secs(args.lock_timeout),
    )?;
    let (ui, host) = (&session.ui, &session.host);
    let current = host.current().with_context(|| {
        format!(
            "nothing is installed under {}: install a release first, then restore into it",
            args.root
        )
    })?;
    let store = store::open_if_named(&args.store)?;
    let mut done = Done::default();
    let result = restore(ui, host, &args, &current, store.as_deref(), &mut done);
    let mut entry = HistoryEntry::new(
        Action::Restore,
        done.release.clone().unwrap_or_else(|| current.clone()),
    );
    entry.previous = Some(current);
    entry.backup = done.backup.clone();
    entry.deployment = None;
    let outcome = match (&result, done.put_back) {
        (Ok(()), _) => Outcome::Installed,
        (Err(_), true) => Outcome::RolledBack,
        (Err(_), false) => Outcome::Failed,
    };
    session.finish(entry, outcome, result)?;
    ui.info(&format!(
        "restored in {:.1} s; the database it replaced is kept until the next install (undo: {})",
        session.elapsed().as_secs_f64(),
        host::command("restore --undo", &args.root)
    ));
    Ok(())
}

/// What a restore got to, for its line of history.
#[derive(Default)]
struct Done {
    /// The backup restored.
    backup: Option<hitsave_schema::BackupId>,
    /// The release started on it.
    release: Option<ReleaseId>,
    /// The release did not serve on it, and the old database and release were put back.
    put_back: bool,
}

fn restore(
    ui: &Ui,
    host: &Host,
    args: &RestoreOptions,
    current: &ReleaseId,
    store: Option<&dyn Store>,
    done: &mut Done,
) -> anyhow::Result<()> {
    let live = Stack::open(&host.release_dir(current))?;
    let server = Server::of(&live).context("restore needs the database server running")?;
    let mut plan = prepare(ui, host, args, current, store, &server, done)?;
    switch(ui, host, args, current, &live, &server, &mut plan, done)
}

/// What a restore has made ready while the site still serves.
struct Plan<'a> {
    incoming: Incoming<'a>,
    record: Option<BackupRecord>,
    /// The release to run on it.
    target: ReleaseId,
    /// The UTC time in the names of the databases this restore makes.
    stamp: String,
}

/// Everything that can refuse, with the site serving: the backup found, checked and restored
/// into a new database, and the release to run on it chosen (and, when only the current
/// release's migrations are missing, applied to the new database).
fn prepare<'a>(
    ui: &Ui,
    host: &Host,
    args: &RestoreOptions,
    current: &ReleaseId,
    store: Option<&dyn Store>,
    server: &'a Server,
    done: &mut Done,
) -> anyhow::Result<Plan<'a>> {
    if !nginx::supports_maintenance(&host.nginx_dir()) {
        bail!(
            "the site nginx serves (rendered by release {current}) has no maintenance mode, so the apps cannot be stopped without errors: install a newer release first; nothing was changed"
        );
    }
    expect_replaced(host)?;
    for leftover in server.databases(&format!("{}{RESTORING}", server.live))? {
        ui.info(&format!(
            "dropping {leftover}, left by a restore that did not finish"
        ));
        server.drop_database(&leftover)?;
    }
    // Database names are lower case.
    let stamp = crate::kit::time::utc_stamp().to_lowercase();
    let (incoming, record) = if args.undo {
        let name = server
            .databases(&format!("{}{REPLACED}", server.live))?
            .pop()
            .context("there is no replaced database to go back to (no restore since the last install pruned them)")?;
        ui.info(&format!(
            "undoing the last restore: {name} becomes live again"
        ));
        (Incoming::existing(server, name), None)
    } else {
        let env =
            crate::database::backup::environment_of(&Stack::open(&host.release_dir(current))?);
        let (record, store_dir) = pick(host, store, args, &env)?;
        admit(
            ui,
            &record,
            &env,
            &server.database_id()?,
            args.from.as_deref(),
        )?;
        done.backup = Some(record.id.clone());
        let dump = local_dump(ui, host, store, &record, store_dir.as_deref())?;
        let incoming = Incoming::ours(server, format!("{}{RESTORING}{stamp}", server.live));
        restore_into(ui, server, &incoming.name, &dump, &record)?;
        (incoming, Some(record))
    };
    let (target, migrate) = choose_release(ui, host, current, &incoming.name, record.as_ref())?;
    if migrate {
        ui.info(&format!(
            "the backup predates release {target}'s migrations: applying them to the restored database"
        ));
        Stack::open(&host.release_dir(&target))?
            .run(
                "migrating the restored database",
                &[
                    "run",
                    "--rm",
                    "--no-deps",
                    "-e",
                    &format!("POSTGRES_DB={}", incoming.name),
                    crate::site::app::Service::Migrate.name(),
                ],
            )
            .context("nothing was stopped")?;
    }
    Ok(Plan {
        incoming,
        record,
        target,
        stamp,
    })
}

/// The seconds the site is down, in maintenance: the apps stop, the databases are swapped,
/// the target release starts on the new one; when it does not, everything is put back.
#[allow(clippy::too_many_arguments)]
fn switch(
    ui: &Ui,
    host: &Host,
    args: &RestoreOptions,
    current: &ReleaseId,
    live: &Stack,
    server: &Server,
    plan: &mut Plan,
    done: &mut Done,
) -> anyhow::Result<()> {
    let target = plan.target.clone();
    let target_stack = Stack::open(&host.release_dir(&target))?;
    let nginx_dir = host.nginx_dir();
    let mut maintenance = Maintenance::on(&nginx_dir)?;
    let down = Instant::now();
    ui.info("maintenance on: every host answers 503 with Retry-After; stopping the apps");
    // Requests nginx let through just before go on to the apps, which finish them.
    std::thread::sleep(Duration::from_secs(1));
    let timeout = Duration::from_secs(args.health_timeout);
    let replaced = format!("{}{REPLACED}{}", server.live, plan.stamp);
    let stopped = stop_apps(live).and_then(|()| server.swap(&plan.incoming.name, &replaced));
    if let Err(e) = stopped {
        start(ui, host, live, timeout)
            .inspect_err(|_| maintenance.keep())
            .context(
                "and the running release did not start again: the site stays in maintenance",
            )?;
        return Err(e.context(format!(
            "nothing was restored; release {current} serves the database it had"
        )));
    }
    plan.incoming.live = true;
    ui.info(&format!(
        "the restored database is live; starting release {target} on it"
    ));
    if let Err(e) = start(ui, host, &target_stack, timeout) {
        ui.info(&format!(
            "release {target} does not serve on the restored database ({e:#}); bringing back {replaced} and release {current}"
        ));
        let back = stop_apps(&target_stack)
            .and_then(|()| server.swap(&replaced, &plan.incoming.name))
            .and_then(|()| start(ui, host, live, timeout));
        if let Err(back) = back {
            maintenance.keep();
            done.release = Some(target.clone());
            bail!(
                "release {target} does not serve on the restored database ({e:#}), and going back failed too ({back:#}): the site stays in maintenance; see {} and `docker ps`",
                host.history_file()
            );
        }
        done.put_back = true;
        plan.incoming.live = false; // Dropped with the plan when this restore made it.
        maintenance.off()?;
        bail!(
            "release {target} did not serve on the restored database: {e:#}; put back: the database and release {current} serve as before"
        );
    }
    done.release = Some(target.clone());
    host.flip(&target)?;
    maintenance.off()?;
    ui.info(&format!(
        "maintenance off after {:.1} s",
        down.elapsed().as_secs_f64()
    ));
    target_stack.wait_serving(timeout)?;
    ui.info(&format!(
        "release {target} serves the restored database{}",
        plan.record
            .as_ref()
            .map(|r| format!(" (backup {}, {} tables)", r.id, r.tables.len()))
            .unwrap_or_default()
    ));
    Ok(())
}

/// Where in the store a restore looks: `--from ENV[/HOST]`, else this environment's hosts
/// and the flat `backups/` of hosts set up before each environment had its own.
fn scope(
    store: &dyn Store,
    env: &str,
    from: Option<&str>,
) -> anyhow::Result<Vec<crate::database::archive::Stored>> {
    match from {
        Some(from) => {
            let (env, host) = match from.split_once('/') {
                Some((env, host)) => (env, Some(host)),
                None => (from, None),
            };
            for name in [Some(env), host].into_iter().flatten() {
                schema::check_release_id(name)
                    .map_err(|_| anyhow::anyhow!("--from {from:?}: use ENV or ENV/HOST"))?;
            }
            match host {
                Some(host) => crate::database::archive::stored_in(
                    store,
                    &schema::backups_dir(env, Some(host)),
                ),
                None => crate::database::archive::stored_in_env(store, env),
            }
        }
        None => {
            let mut found = crate::database::archive::stored_in_env(store, env)?;
            // Older hosts' flat backups/, when this role may list it (the new ones may not).
            found.extend(
                crate::database::archive::stored_in(store, schema::BACKUPS).unwrap_or_default(),
            );
            Ok(found)
        }
    }
}

/// Every other environment's backups, or none when this role may not list them.
fn in_other_envs(store: &dyn Store, env: &str) -> Vec<crate::database::archive::Stored> {
    let mut found = Vec::new();
    for dir in store.list_dirs(schema::BACKUPS).unwrap_or_default() {
        let other = dir.rsplit('/').next().unwrap_or_default();
        if other != env {
            found.extend(crate::database::archive::stored_in_env(store, other).unwrap_or_default());
        }
    }
    found
}

/// The backup that `args` names, with its record (from the host, else from the store, with
/// the store directory it was found in).
fn pick(
    host: &Host,
    store: Option<&dyn Store>,
    args: &RestoreOptions,
    env: &str,
) -> anyhow::Result<(BackupRecord, Option<String>)> {
    let dir = host.backups_dir();
    let stored = match store {
        Some(store) => scope(store, env, args.from.as_deref())?,
        None => Vec::new(),
    };
    let id = if let Some(id) = &args.backup {
        id.clone()
    } else if args.latest {
        // The host's own first (a backup it took is also in the store), then the store's.
        let mut ids: Vec<BackupId> = if args.from.is_some() {
            Vec::new()
        } else {
            crate::database::archive::ids(&dir)?
        };
        ids.extend(
            stored
                .iter()
                .filter(|s| s.dir != schema::BACKUPS || args.from.is_some())
                .map(|s| s.id.clone()),
        );
        // Ids begin with their UTC time.
        ids.sort();
        ids.pop().with_context(|| match args.from.as_deref() {
            Some(from) => format!("there is no backup of {from} in the store"),
            None => format!("there is no backup of environment {env} in {dir} or the store"),
        })?
    } else if let Some(release) = &args.before {
        before(host, release)?
    } else {
        bail!("name a backup, or pass --latest, --before RELEASE or --undo");
    };
    let local = dir.join(format!("{id}.json"));
    let mut found_in = None;
    let bytes = match std::fs::read(&local) {
        Ok(bytes) if args.from.is_none() => bytes,
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot read {local}"));
        }
        _ => {
            let store = store.with_context(|| {
                format!("there is no backup {id} in {dir}; name the store it is in with --store")
            })?;
            // Another environment's backup is found (where this role may list it) so that
            // `admit` can say whose it is and how to restore it on purpose.
            let elsewhere;
            let found = match stored.iter().find(|s| s.id == id) {
                Some(found) => Some(found),
                None if args.from.is_none() => {
                    elsewhere = in_other_envs(store, env);
                    elsewhere.iter().find(|s| s.id == id)
                }
                None => None,
            };
            let found = found.with_context(|| {
                format!(
                    "there is no backup {id} {} in {}",
                    args.from.as_deref().map_or_else(
                        || format!("of environment {env} (or in the flat backups/)"),
                        |from| format!("of {from}")
                    ),
                    store.describe()
                )
            })?;
            found_in = Some(found.dir.clone());
            store.get(&found.record_key())?.with_context(|| {
                format!("{} is gone from {}", found.record_key(), store.describe())
            })?
        }
    };
    Ok((BackupRecord::parse(&bytes)?, found_in))
}

/// A backup of this environment and this database is restored as it is; one of another
/// environment or database only when `--from` names where it comes from, and then the command
/// says what it restores from and into.
fn admit(
    ui: &Ui,
    record: &BackupRecord,
    env: &str,
    live: &schema::DatabaseId,
    from: Option<&str>,
) -> anyhow::Result<()> {
    let source = format!(
        "{}/{}",
        record.environment.as_deref().unwrap_or("(an older host)"),
        record.host.as_deref().unwrap_or("?")
    );
    let database = record
        .database
        .as_ref()
        .map_or_else(|| "an unrecorded database".to_owned(), ToString::to_string);
    let other_env = record.environment.as_deref().is_some_and(|e| e != env);
    let other_db = record.database.as_ref().is_some_and(|d| d != live);
    match from {
        None if other_env => bail!(
            "backup {} is environment {}'s (host {}), not this {env} host's: refused, nothing was changed. To restore it here on purpose: --from {}",
            record.id,
            record.environment.as_deref().unwrap_or("?"),
            record.host.as_deref().unwrap_or("?"),
            source
        ),
        None if other_db => bail!(
            "backup {} came from {database}, not from this host's database ({live}): refused, nothing was changed. To restore it into this one on purpose: --from {source}",
            record.id
        ),
        None => Ok(()),
        Some(_) => {
            ui.info(&format!(
                "restoring backup {} from {source} ({database}, taken {}) into this {env} host's database ({live})",
                record.id, record.time
            ));
            Ok(())
        }
    }
}

/// The backup taken before `release` first touched the database: the one its first install
/// took, else the newest backup on the host from before that install.
fn before(host: &Host, release: &ReleaseId) -> anyhow::Result<BackupId> {
    let history = host.history()?;
    let first = history
        .iter()
        .find(|e| {
            e.action == Action::Install
                && e.release == *release
                && matches!(
                    e.outcome,
                    Outcome::Installed | Outcome::RolledBack | Outcome::Failed
                )
        })
        .with_context(|| format!("{} has no install of {release}", host.history_file()))?;
    if let Some(id) = &first.backup {
        return Ok(id.clone());
    }
    let installed = humantime::parse_rfc3339(&first.time)?;
    let dir = host.backups_dir();
    crate::database::archive::ids(&dir)?
        .into_iter()
        .rev()
        .find(|id| {
            std::fs::read(dir.join(format!("{id}.json")))
                .ok()
                .and_then(|b| BackupRecord::parse(&b).ok())
                .and_then(|r| humantime::parse_rfc3339(&r.time).ok())
                .is_some_and(|t| t <= installed)
        })
        .with_context(|| {
            format!(
                "no backup in {dir} was taken before release {release} was installed ({})",
                first.time
            )
        })
}

/// The dump on the host; downloaded from the store (from `store_dir`, where its record was
/// found, else where the record says) and checked on the way when the host does not have it.
fn local_dump(
    ui: &Ui,
    host: &Host,
    store: Option<&dyn Store>,
    record: &BackupRecord,
    store_dir: Option<&str>,
) -> anyhow::Result<Utf8PathBuf> {
    let dir = host.backups_dir();
    let dump = dir.join(format!("{}.dump", record.id));
    if !dump.exists() {
        let store = store.with_context(|| {
            format!("{dump} is not on the host; name the store it is in with --store")
        })?;
        crate::database::archive::prepare_dir(&dir)?;
        let bar = ui.bytes(
            &format!("downloading backup {} from {}", record.id, store.describe()),
            record.size,
        );
        let key = store_dir.map_or_else(
            || record.dump_key(),
            |dir| format!("{dir}/{}.dump", record.id),
        );
        let got = crate::database::archive::download(store, record, &key, &dump, &|n| bar.inc(n));
        bar.finish_and_clear();
        got?;
        crate::kit::files::replace_private(
            &dir.join(format!("{}.json", record.id)),
            &schema::to_bytes(record),
        )?;
    }
    Ok(dump)
}

/// What a restore does before anything stops (and `cargo xtask bench backup` times): checks
/// `dump` against its record, restores it into a new database `name` on `server`, and counts
/// every table's rows against the record. The caller drops `name` when this fails.
pub fn restore_into(
    ui: &Ui,
    server: &Server,
    name: &str,
    dump: &Utf8Path,
    record: &BackupRecord,
) -> anyhow::Result<()> {
    crate::database::drill::check_hash(dump, record)?;
    server.create(name)?;
    ui.info(&format!(
        "restoring backup {} ({}) into a new database, {name}; the site keeps serving meanwhile",
        record.id,
        human_bytes(record.size)
    ));
    server.restore(name, dump).context("nothing was stopped")?;
    let counted = server.row_counts(name)?;
    let differ = crate::database::drill::differences(&record.tables, &counted);
    if !differ.is_empty() {
        bail!(
            "backup {} does not restore what it recorded ({}); nothing was stopped",
            record.id,
            differ.join("; ")
        );
    }
    Ok(())
}

/// The release to run on the restored database `database`: one whose migrator finds its
/// schema exactly its own (the current release first, then the release the backup was taken
/// under, then the others that served here, newest first). Else the current one, migrating
/// the restored database forward, when that is all it lacks (`true`). Refuses a backup newer
/// than every release on disk.
fn choose_release(
    ui: &Ui,
    host: &Host,
    current: &ReleaseId,
    database: &str,
    record: Option<&BackupRecord>,
) -> anyhow::Result<(ReleaseId, bool)> {
    let served: Vec<ReleaseId> = host
        .history()?
        .into_iter()
        .rev()
        .filter(|e| e.outcome == Outcome::Installed)
        .map(|e| e.release)
        .collect();
    let mut candidates = vec![current.clone()];
    candidates.extend(record.and_then(|r| r.release.clone()));
    candidates.extend(served);
    let mut seen = Vec::new();
    let mut current_behind = false;
    let mut said = Vec::new();
    for id in candidates {
        if seen.contains(&id) || !host.has_release(&id) {
            continue;
        }
        seen.push(id.clone());
        let stack = Stack::open(&host.release_dir(&id))?;
        stack.build_images()?;
        match stack.schema_on(database)? {
            crate::site::stack::Schema::Same => {
                ui.info(&format!(
                    "release {id}'s migrator finds the restored schema exactly its own"
                ));
                return Ok((id, false));
            }
            crate::site::stack::Schema::Behind if id == *current => current_behind = true,
            schema => said.push(format!("{id}: {schema}")),
        }
    }
    if current_behind {
        return Ok((current.clone(), true));
    }
    bail!(
        "no release on this host runs on this backup's schema (is it newer than every release on disk?): {}; install the release it was taken under, then restore again. Nothing was stopped",
        said.join("; ")
    )
}

/// `docker compose stop` of the apps: each finishes its requests within its grace period.
fn stop_apps(stack: &Stack) -> anyhow::Result<()> {
    stack
        .run(
            "stopping the apps",
            &[
                "stop",
                "--timeout",
                DRAIN_SECS,
                crate::site::app::Service::Api.name(),
                crate::site::app::Service::Web.name(),
            ],
        )
        .map(drop)
}

/// Starts `stack`'s apps (db and nginx are not touched: a plain `up` would recreate nginx
/// with them) and waits until each container is healthy and answers as its release on its own
/// address, while nginx still answers the maintenance page; then nginx routes to them.
fn start(ui: &Ui, host: &Host, stack: &Stack, timeout: Duration) -> anyhow::Result<()> {
    stack.build_images()?;
    let tls = crate::site::nginx::serves_https(stack)?;
    nginx::install(
        &stack.release_dir,
        &host.nginx_dir(),
        stack.domain()?,
        tls,
        &nginx::Upstreams::services(),
    )?;
    ui.info("starting the apps");
    stack.run(
        "starting the apps",
        &[
            "up",
            "--detach",
            "--no-deps",
            crate::site::app::Service::Api.name(),
            crate::site::app::Service::Web.name(),
        ],
    )?;
    swap::wait_apps_ready(stack, timeout)?;
    // Fresh workers take the site at the new containers' addresses.
    nginx::install(
        &stack.release_dir,
        &host.nginx_dir(),
        stack.domain()?,
        tls,
        &swap::services_at_addresses(stack)?,
    )?;
    swap::reload_nginx(stack)
}

/// The database a restore brings in: one it created (dropped unless it became live), or the
/// replaced one `--undo` brings back (never dropped).
struct Incoming<'a> {
    server: &'a Server,
    name: String,
    ours: bool,
    live: bool,
}

impl<'a> Incoming<'a> {
    /// A database this restore makes (it may not exist yet).
    fn ours(server: &'a Server, name: String) -> Incoming<'a> {
        Incoming {
            server,
            name,
            ours: true,
            live: false,
        }
    }
    fn existing(server: &'a Server, name: String) -> Incoming<'a> {
        Incoming {
            server,
            name,
            ours: false,
            live: false,
        }
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if self.ours && !self.live {
            let _ = self.server.drop_database(&self.name);
        }
    }
}

/// Maintenance mode, ended when dropped unless `keep` was called.
struct Maintenance<'a> {
    dir: &'a Utf8Path,
    keep: bool,
}

impl<'a> Maintenance<'a> {
    fn on(dir: &'a Utf8Path) -> anyhow::Result<Maintenance<'a>> {
        nginx::maintenance_on(dir, nginx::RESTORE_MESSAGE, "restore")?;
        Ok(Maintenance { dir, keep: false })
    }
    fn keep(&mut self) {
        self.keep = true;
    }
    fn off(&mut self) -> anyhow::Result<()> {
        self.keep = true;
        nginx::maintenance_off(self.dir)
    }
}

impl Drop for Maintenance<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = nginx::maintenance_off(self.dir);
        }
    }
}

/// Drops the databases restores replaced: an install that serves has accepted the restore.
/// PostgreSQL is asked only when a restore ran since the last prune (it removes the host's
/// `none_replaced_file` first): the ask is a `docker exec` of psql, some 100 ms of CPU just as
/// the new containers take their first requests.
pub fn prune_replaced(ui: &Ui, host: &Host, stack: &Stack) -> anyhow::Result<()> {
    let none = host.none_replaced_file();
    if none.exists() {
        return Ok(());
    }
    let server = Server::of(stack)?;
    for name in server.databases(&format!("{}{REPLACED}", server.live))? {
        server.drop_database(&name)?;
        ui.info(&format!("dropped {name}, the database a restore replaced"));
    }
    std::fs::write(&none, "").with_context(|| format!("cannot write {none}"))
}

/// Before a restore replaces the live database: the next install asks PostgreSQL again.
fn expect_replaced(host: &Host) -> anyhow::Result<()> {
    let none = host.none_replaced_file();
    match std::fs::remove_file(&none) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {none}; nothing was restored"))
        }
        _ => Ok(()),
    }
}
