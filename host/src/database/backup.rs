//! `xtask backup`: the database, off the host. `pg_dump --format=custom` runs inside the db
//! container (so the client is the server's own version) from a snapshot that a psql session
//! of the same container exports and holds, so the row counts in the record are the dump's.
//! The dump streams to `<root>/backups/.<id>.partial` through SHA-256 and is renamed to
//! `<id>.dump` only when complete; its record (`<id>.json`) is written after it. With a store,
//! both go to `backups/<environment>/<host>/` there too, dump first, record last, as releases
//! do: each environment's and each host's backups are apart, and the record names the
//! environment, the host and the database (cluster and name) they came from.

use std::io::{BufRead, BufReader, Write};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{self as schema, BackupId, BackupReason, BackupRecord, SCHEMA, Sha256};

use crate::database::archive::{prepare_dir, write_hashed};
use crate::database::retention::Retention;
use crate::database::server::{ROW_COUNTS, Server, parse_counts};
use crate::kit::store::{self, Store, StoreLocation};
use crate::kit::time::now_rfc3339;
use crate::kit::ui::{Ui, human_bytes};
use crate::site::history::{Action, HistoryEntry, Outcome};
use crate::site::host::Host;
use crate::site::session::Session;
use crate::site::stack::Stack;

/// What `backup` takes, and where it keeps it.
pub struct BackupOptions {
    /// The install root.
    pub root: Utf8PathBuf,
    /// Also copy the backup to this artifact store, under backups/<env>/<host>/.
    pub store: StoreLocation,
    /// How many backups are kept.
    pub retention: Retention,
    /// Why it is taken.
    pub reason: Reason,
    /// Print the record as JSON on stdout.
    pub json: bool,
    /// Back up the database of this container instead of the installed stack's (for `cargo
    /// xtask bench backup`).
    pub db_container: Option<String>,
}

/// The restore drill of backup `id` (the newest by default); prints its record with `json`.
pub fn verify(root: &Utf8Path, id: Option<&BackupId>, json: bool) -> anyhow::Result<()> {
    let ui = Ui::new();
    let host = Host::open(root)?;
    let record = match crate::database::drill::verify(&ui, &host, id) {
        Ok(record) => record,
        Err(e) => {
            let event = crate::site::notify::Event {
                kind: "drill-failed",
                text: format!("the restore drill of the last backup failed: {e:#}"),
                fields: serde_json::json!({ "backup": id, "reason": format!("{e:#}") }),
            };
            let settings = crate::site::notify::settings_of_host();
            crate::site::notify::send(&host, &settings, &event);
            return Err(e);
        }
    };
    if json {
        println!(
            "{}",
            String::from_utf8_lossy(&schema::to_bytes(&record)).trim_end()
        );
    }
    Ok(())
}

/// Why a backup is taken; the last part of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// By hand.
    Manual,
    /// By the daily timer.
    Scheduled,
}

crate::choice!(Reason {
    Manual => "manual", "by hand";
    Scheduled => "scheduled", "by the daily timer";
});

pub fn run(args: BackupOptions) -> anyhow::Result<()> {
    // Not beside an install, a rollback or another backup.
    let session = Session::begin(&args.root, "backup", std::time::Duration::from_secs(600))?;
    let (ui, host) = (&session.ui, &session.host);
    let (server, current, env) = match args.db_container {
        Some(container) => (
            Server::in_container(container)?,
            host.current(),
            "local".into(),
        ),
        None => {
            let current = host.current().with_context(|| {
                format!(
                    "nothing is installed under {}: there is no database to back up",
                    args.root
                )
            })?;
            let stack = Stack::open(&host.release_dir(&current))?;
            let server = Server::of(&stack).context("there is no database to back up")?;
            (server, Some(current), environment_of(&stack))
        }
    };
    let store = store::open_if_named(&args.store)?;
    let reason = match args.reason {
        Reason::Manual => BackupReason::Manual,
        Reason::Scheduled => BackupReason::Scheduled,
    };
    let taken = take(
        ui,
        host,
        &server,
        current.clone(),
        reason,
        store.as_deref(),
        &env,
    );
    let record = match current {
        Some(current) => {
            let mut entry = HistoryEntry::new(Action::Backup, current);
            entry.backup = taken.as_ref().ok().map(|r| r.id.clone());
            let outcome = if taken.is_ok() {
                Outcome::Done
            } else {
                Outcome::Failed
            };
            session.finish(entry, outcome, taken)?
        }
        None => taken?,
    };
    crate::database::retention::prune(ui, host, store.as_deref(), args.retention, &env)?;
    if args.json {
        println!(
            "{}",
            String::from_utf8_lossy(&schema::to_bytes(&record)).trim_end()
        );
    }
    Ok(())
}

/// The environment a stack was installed for (release.env's HITSAVE_ENV).
pub fn environment_of(stack: &Stack) -> String {
    stack.env.env_name().to_owned()
}

/// Takes a backup of `stack`'s database into `<root>/backups/` (and `store`, when given,
/// under `backups/<env>/<this host>/`). Nothing is left behind when it fails: no partial file
/// is listed, nothing half-uploaded is named by a record.
pub fn take(
    ui: &Ui,
    host: &Host,
    server: &Server,
    release: Option<hitsave_schema::ReleaseId>,
    reason: BackupReason,
    store: Option<&dyn Store>,
    env: &str,
) -> anyhow::Result<BackupRecord> {
    let started = std::time::Instant::now();
    let dir = host.backups_dir();
    prepare_dir(&dir)?;
    let host_id = host.id()?;
    let id = new_id(&dir, &host_id, reason)?;
    ui.info(&format!("backing up the database into {dir}/{id}.dump"));
    let database = server.database_id()?;

    let mut snapshot = Snapshot::open(server)?;
    let tables = snapshot.row_counts()?;
    let last_migration = snapshot.last_migration()?;
    let time = now_rfc3339();
    let dump = dir.join(format!("{id}.dump"));
    let (size, sha256) = dump_to(server, &snapshot.id, &dump)?;
    snapshot.close()?;

    let record = BackupRecord {
        schema: SCHEMA,
        id: id.clone(),
        time,
        release,
        reason,
        last_migration,
        size,
        sha256,
        tables,
        environment: Some(env.to_owned()),
        host: Some(host_id),
        database: Some(database),
    };
    let bytes = schema::to_bytes(&record);
    crate::kit::files::replace_private(&dir.join(format!("{id}.json")), &bytes)?;
    ui.info(&format!(
        "backup {id}: {}, sha256 {}, {} tables, in {:.1} s",
        human_bytes(size),
        record.sha256,
        record.tables.len(),
        started.elapsed().as_secs_f64()
    ));
    if let Some(store) = store {
        let bar = ui.bytes("uploading the backup", size);
        let copied = store
            .upload(&record.dump_key(), &dump, &record.sha256, size, &|n| {
                bar.inc(n)
            })
            .and_then(|()| store.put(&record.record_key(), &bytes));
        bar.finish_and_clear();
        if let Err(e) = copied {
            // A backup that is not off the host is not the one asked for: leave no trace.
            let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
            let _ = std::fs::remove_file(&dump);
            return Err(e.context(format!("cannot copy backup {id} to {}", store.describe())));
        }
        ui.info(&format!(
            "backup {id} is in {} under {}/",
            store.describe(),
            record.store_dir()
        ));
    }
    Ok(record)
}

/// `<UTC YYYYMMDDTHHMMSSZ>-<host>-<reason>`, with `-2`, `-3` ... when that second is taken:
/// unique across hosts, and sorted by time.
fn new_id(dir: &camino::Utf8Path, host: &str, reason: BackupReason) -> anyhow::Result<BackupId> {
    let stamp = crate::kit::time::utc_stamp();
    let reason = match reason {
        BackupReason::Manual => "manual",
        BackupReason::PreMigrate => "pre-migrate",
        BackupReason::Scheduled => "scheduled",
    };
    let base = format!("{stamp}-{host}-{reason}");
    let id = (1..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|id| !dir.join(format!("{id}.dump")).exists())
        .expect("some suffix is free");
    BackupId::new(id)
}

/// Streams `pg_dump` from the exported snapshot into `dest`, through a temporary file.
fn dump_to(
    server: &Server,
    snapshot: &str,
    dest: &camino::Utf8Path,
) -> anyhow::Result<(u64, Sha256)> {
    let fill = |out: &mut dyn Write| -> anyhow::Result<()> {
        let mut dump = duct::cmd!(
            "docker",
            "exec",
            &server.container,
            "pg_dump",
            "--format=custom",
            format!("--snapshot={snapshot}"),
            "--username",
            &server.user,
            "--dbname",
            &server.live
        )
        .stderr_capture()
        .reader()
        .context("cannot start pg_dump in the database container")?;
        std::io::copy(&mut dump, out).context("pg_dump failed")?;
        Ok(())
    };
    write_hashed(dest, fill, |_, _| Ok(()))
}

/// A psql session in the db container holding a repeatable-read transaction whose snapshot
/// it exported: the row counts and the dump see the same data.
struct Snapshot {
    id: String,
    input: Option<std::io::PipeWriter>,
    output: BufReader<duct::ReaderHandle>,
}

impl Snapshot {
    fn open(server: &Server) -> anyhow::Result<Snapshot> {
        let (read_end, input) = std::io::pipe()?;
        let session = server
            .psql_command(&server.live, &[])
            .stdin_file(read_end)
            .stderr_capture()
            .reader()
            .context("cannot start psql in the database container")?;
        let mut snapshot = Snapshot {
            id: String::new(),
            input: Some(input),
            output: BufReader::new(session),
        };
        snapshot.id = snapshot
            .ask("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();")?;
        Ok(snapshot)
    }

    /// Sends one statement and reads its one line of output.
    fn ask(&mut self, sql: &str) -> anyhow::Result<String> {
        let input = self.input.as_mut().context("the psql session is closed")?;
        writeln!(input, "{sql}").context("the psql session ended")?;
        input.flush()?;
        let mut line = String::new();
        if self.output.read_line(&mut line).context("psql failed")? == 0 {
            bail!("psql ended without answering {sql:?}");
        }
        Ok(line.trim().to_owned())
    }

    /// Exact row counts of every table in the public schema.
    fn row_counts(&mut self) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let line = self.ask(ROW_COUNTS)?;
        parse_counts(&line)
    }

    /// The newest migration the database has applied, if it has the migrator's table.
    fn last_migration(&mut self) -> anyhow::Result<Option<i64>> {
        let line = self.ask(
            "SELECT CASE WHEN to_regclass('public._sqlx_migrations') IS NULL THEN '' ELSE \
             coalesce((xpath('/row/v/text()', query_to_xml('SELECT max(version) AS v FROM \
             public._sqlx_migrations WHERE success', false, true, '')))[1]::text, '') END;",
        )?;
        Ok(if line.is_empty() {
            None
        } else {
            Some(line.parse()?)
        })
    }

    /// Ends the transaction (the snapshot is no longer needed) and the session.
    fn close(mut self) -> anyhow::Result<()> {
        if let Some(mut input) = self.input.take() {
            writeln!(input, "COMMIT;")?;
        }
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.output, &mut rest).context("psql failed")?;
        Ok(())
    }
}
