//! `migrate`: applies HitSave's database migrations, embedded from `migrations/` at build time.
//!
//! It runs before any new API version receives traffic. Settings and secrets follow the API's
//! rules: `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_DB`, `POSTGRES_USER` from the
//! environment and the password from the file named by `POSTGRES_PASSWORD_FILE`.
//!
//! Exit codes: 0 done / up to date; 1 failed (database unreachable, a migration failed);
//! 2 bad usage or configuration; 3 `status`: migrations pending, `check`: the database's
//! history disagrees with this binary.

use std::borrow::Cow;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hitsave_db::DbConfig;
use hitsave_db::schema::{self, MIGRATOR, SchemaReport};
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_NOT_CURRENT: u8 = 3;

#[derive(Parser)]
#[command(version, about = "Apply and check HitSave's database migrations")]
struct Cli {
    /// How long to keep retrying while the database does not accept connections yet.
    #[arg(long, global = true, default_value = "30", value_name = "SECS")]
    wait: u64,
    /// How long a statement may wait for a lock before it gives up (PostgreSQL's
    /// lock_timeout): a migration must not queue the serving release's queries behind it.
    #[arg(long, global = true, default_value = "5", value_name = "SECS")]
    lock_timeout: u64,
    /// How long one statement may run (PostgreSQL's statement_timeout).
    #[arg(long, global = true, default_value = "300", value_name = "SECS")]
    statement_timeout: u64,
    /// How many times `run` tries a migration again after a lock timeout (1 s, 2 s, 4 s ...
    /// apart) before it gives up and names the session holding the lock.
    #[arg(long, global = true, default_value = "3", value_name = "N")]
    lock_retries: u32,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply every pending migration (the default). Safe to run concurrently: runs take turns.
    Run,
    /// List applied and pending migrations; exit 3 when any is pending.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 3 if an applied migration was edited after it ran, or the database has migrations
    /// this binary does not know.
    Check {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match DbConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("migrate: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    let outcome = runtime.block_on(async {
        let pool = connect(&config, &cli).await?;
        let code = match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(&pool, cli.lock_retries).await?,
            Command::Status { json } => status(&pool, json).await?,
            Command::Check { json } => check(&pool, json).await?,
        };
        pool.close().await;
        anyhow::Ok(code)
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("migrate: error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Connects, retrying until `--wait` has passed: in a fresh stack the database may still start.
/// Every session gets the lock and statement timeouts.
async fn connect(config: &DbConfig, cli: &Cli) -> anyhow::Result<PgPool> {
    let deadline = Instant::now() + Duration::from_secs(cli.wait);
    let options = config.connect_options().options([
        ("lock_timeout", format!("{}s", cli.lock_timeout)),
        ("statement_timeout", format!("{}s", cli.statement_timeout)),
    ]);
    // The first connection settles which password works (one may be mid-rotation).
    let db = config.lazy_pool_with(options);
    let mut announced = false;
    loop {
        match db.acquire().await {
            Ok(_) => return Ok(db.pool().clone()),
            Err(e) if Instant::now() < deadline && is_transient(&e) => {
                if !announced {
                    tracing::info!(database = %config.describe(), error = %e, "waiting for the database");
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot connect to {}", config.describe()));
            }
        }
    }
}

/// 55P03 lock_not_available: a statement waited longer than lock_timeout.
fn is_lock_timeout(e: &MigrateError) -> bool {
    let source = match e {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => e,
        _ => return false,
    };
    matches!(source, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

/// The other sessions of this database that hold table locks in an open transaction: who a
/// migration waited for, for the message.
async fn lock_holders(pool: &PgPool) -> String {
    let rows: Result<Vec<(i32, String, i64, String)>, _> = sqlx::query_as(
        "SELECT a.pid, coalesce(a.state, ''), \
                coalesce(extract(epoch FROM now() - a.xact_start), 0)::bigint, \
                left(coalesce(a.query, ''), 200) \
         FROM pg_stat_activity a \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
           AND a.xact_start IS NOT NULL \
           AND EXISTS (SELECT 1 FROM pg_locks l \
                       WHERE l.pid = a.pid AND l.granted AND l.locktype = 'relation') \
         ORDER BY a.xact_start",
    )
    .fetch_all(pool)
    .await;
    match rows {
        Ok(rows) if !rows.is_empty() => rows
            .iter()
            .map(|(pid, state, secs, query)| {
                format!("pid {pid} ({state}, in a transaction for {secs} s): {query}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        Ok(_) => "a session that has finished since".into(),
        Err(e) => format!("a session this migrator cannot see ({e})"),
    }
}

/// Errors that go away once a starting database is up; a wrong password does not.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // 57P03: the database system is starting up.
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

async fn report(pool: &PgPool) -> anyhow::Result<SchemaReport> {
    let mut conn = pool
        .acquire()
        .await
        .context("cannot connect to the database")?;
    let applied = schema::applied(&mut conn)
        .await
        .context("cannot read the database's migration history")?;
    Ok(SchemaReport::compare(&MIGRATOR, &applied))
}

fn describe(version: i64) -> String {
    MIGRATOR
        .iter()
        .find(|m| m.version == version)
        .map(|m| format!("{version}_{}", m.description.replace(' ', "_")))
        .unwrap_or_else(|| version.to_string())
}

async fn run(pool: &PgPool, lock_retries: u32) -> anyhow::Result<u8> {
    let before = report(pool).await?;
    if let Some((v, d)) = before.modified.first() {
        bail!(
            "migration {v} ({d}) was edited after it was applied; released migrations are \
             forward-only: restore the original file and add a new migration instead"
        );
    }
    if !before.unknown.is_empty() {
        // A newer release has migrated this database; an older migrator applies only what it
        // knows, so re-installing or rolling back to an older release works.
        tracing::info!(
            count = before.unknown.len(),
            "the database has migrations from a newer release; leaving them as they are"
        );
    }
    let migrator = Migrator {
        migrations: Cow::Borrowed(&MIGRATOR.migrations),
        ignore_missing: true,
        ..Migrator::DEFAULT
    };
    let mut attempt = 0;
    while let Err(e) = migrator.run(pool).await {
        if is_lock_timeout(&e) {
            let holders = lock_holders(pool).await;
            if attempt < lock_retries {
                let pause = Duration::from_secs(1 << attempt);
                attempt += 1;
                tracing::warn!(
                    error = %e,
                    held_by = %holders,
                    "a migration timed out waiting for a lock; trying again in {pause:?}"
                );
                tokio::time::sleep(pause).await;
                continue;
            }
            bail!(
                "gave up after {} attempts: {e}; nothing of that migration was applied. The lock is held by {holders}. Let it finish (or end it), then run the migrator again",
                attempt + 1
            );
        }
        return Err(match e {
            MigrateError::ExecuteMigration(source, version) => anyhow::anyhow!(
                "migration {} failed and was rolled back: {source}",
                describe(version)
            ),
            MigrateError::Dirty(version) => anyhow::anyhow!(
                "migration {} is partially applied: repair the database by hand, then delete \
                 its row from _sqlx_migrations",
                describe(version)
            ),
            other => anyhow::Error::new(other).context("migrations failed"),
        });
    }
    let after = report(pool).await?;
    let applied_now: Vec<_> = before
        .pending
        .iter()
        .filter(|p| !after.pending.contains(p))
        .collect();
    if applied_now.is_empty() {
        println!(
            "database is up to date ({} migrations)",
            after.applied.len()
        );
    } else {
        for (v, d) in &applied_now {
            println!("applied {v} {d}");
        }
        println!("applied {} migration(s)", applied_now.len());
    }
    Ok(0)
}

fn json_list(items: &[(i64, String)]) -> serde_json::Value {
    items
        .iter()
        .map(|(v, d)| serde_json::json!({ "version": v, "description": d }))
        .collect()
}

async fn status(pool: &PgPool, json: bool) -> anyhow::Result<u8> {
    let r = report(pool).await?;
    if json {
        let doc = serde_json::json!({
            "up_to_date": r.up_to_date(),
            "applied": json_list(&r.applied),
            "pending": json_list(&r.pending),
            "modified": json_list(&r.modified),
            "unknown": json_list(&r.unknown),
            "failed": json_list(&r.failed),
        });
        println!("{doc:#}");
    } else {
        let groups = [
            ("applied", &r.applied),
            ("pending", &r.pending),
            ("modified", &r.modified),
            ("unknown", &r.unknown),
            ("failed", &r.failed),
        ];
        let mut rows: Vec<(i64, &str, &str)> = groups
            .iter()
            .flat_map(|(state, list)| list.iter().map(|(v, d)| (*v, *state, d.as_str())))
            .collect();
        rows.sort_by_key(|(v, _, _)| *v);
        for (v, state, d) in rows {
            println!("{v:>16}  {state:<8}  {d}");
        }
        println!(
            "{} applied, {} pending",
            r.applied.len() + r.modified.len(),
            r.pending.len()
        );
    }
    Ok(if r.up_to_date() { 0 } else { EXIT_NOT_CURRENT })
}

async fn check(pool: &PgPool, json: bool) -> anyhow::Result<u8> {
    let r = report(pool).await?;
    if json {
        let doc = serde_json::json!({
            "consistent": !r.drifted(),
            "modified": json_list(&r.modified),
            "unknown": json_list(&r.unknown),
            "failed": json_list(&r.failed),
        });
        println!("{doc:#}");
    } else {
        for (v, d) in &r.modified {
            println!("modified: migration {v} ({d}) differs from the one that was applied");
        }
        for (v, d) in &r.unknown {
            println!("unknown: migration {v} ({d}) is applied but not known to this binary");
        }
        for (v, d) in &r.failed {
            println!("failed: migration {v} ({d}) started and did not finish");
        }
        if !r.drifted() {
            println!(
                "ok: {} applied migrations match this binary",
                r.applied.len()
            );
        }
    }
    Ok(if r.drifted() { EXIT_NOT_CURRENT } else { 0 })
}
