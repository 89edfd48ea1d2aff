//! Integration tests: the real `migrate` binary against a real PostgreSQL (started by
//! `cargo xtask test`).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hitsave_db::testing::{TestDb, free_port, write_secret};
use serde_json::Value;

const PENDING: i32 = 3;

fn migrate(db: &TestDb, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(db.env())
        .args(args);
    cmd
}

fn run(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = migrate(db, args).output().expect("run migrate");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

async fn scalar_i64(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

async fn tables(db: &TestDb) -> Vec<String> {
    let mut conn = db.connect().await;
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

const ALL_TABLES: [&str; 5] = ["_sqlx_migrations", "api_keys", "evals", "users", "waitlist"];

fn embedded_count() -> i64 {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("sql".as_ref()))
        .count() as i64
}

#[tokio::test]
async fn fresh_database_then_rerun_is_a_no_op() {
    let db = TestDb::create("fresh").await;
    let n = embedded_count();

    let (code, out, err) = run(&db, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("applied {n} migration(s)")), "{out}");
    assert_eq!(tables(&db).await, ALL_TABLES);
    let installed_at = scalar_i64(
        &db,
        "SELECT extract(epoch FROM max(installed_on))::bigint FROM _sqlx_migrations",
    )
    .await;

    let (code, out, _) = run(&db, &["run"]);
    assert_eq!(code, 0);
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM _sqlx_migrations").await,
        n
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT extract(epoch FROM max(installed_on))::bigint FROM _sqlx_migrations"
        )
        .await,
        installed_at
    );
}

#[tokio::test]
async fn status_exit_codes_follow_pending_migrations() {
    let db = TestDb::create("status").await;
    let n = embedded_count() as usize;

    let (code, out, _) = run(&db, &["status"]);
    assert_eq!(code, PENDING, "{out}");
    assert!(out.contains(&format!("0 applied, {n} pending")), "{out}");
    assert!(out.contains("pending   create users"), "{out}");

    let (code, out, _) = run(&db, &["status", "--json"]);
    assert_eq!(code, PENDING);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["up_to_date"], false);
    assert_eq!(doc["pending"].as_array().unwrap().len(), n);

    assert_eq!(run(&db, &["run"]).0, 0);
    let (code, out, _) = run(&db, &["status", "--json"]);
    assert_eq!(code, 0, "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["up_to_date"], true);
    assert_eq!(doc["applied"].as_array().unwrap().len(), n);
}

#[tokio::test]
async fn check_detects_an_edited_migration_and_run_refuses_it() {
    let db = TestDb::create("edited").await;
    assert_eq!(run(&db, &["run"]).0, 0);
    let (code, out, _) = run(&db, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok:"), "{out}");

    // What the database recorded no longer matches the file this binary embeds: the same
    // situation as editing a migration after it was released.
    let mut conn = db.connect().await;
    let version: i64 = sqlx::query_scalar(
        "UPDATE _sqlx_migrations SET checksum = sha384('edited'::bytea)
         WHERE description = 'create evals' RETURNING version",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();

    let (code, out, _) = run(&db, &["check"]);
    assert_eq!(code, PENDING, "{out}");
    assert!(
        out.contains(&format!("modified: migration {version} (create evals)")),
        "{out}"
    );
    let (code, out, _) = run(&db, &["check", "--json"]);
    assert_eq!(code, PENDING);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["consistent"], false);
    assert_eq!(doc["modified"][0]["version"], version);

    let (code, _, err) = run(&db, &["run"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("migration {version} (create evals) was edited")),
        "{err}"
    );
}

#[tokio::test]
async fn migrations_from_a_newer_release_are_reported_and_tolerated() {
    let db = TestDb::create("newer").await;
    assert_eq!(run(&db, &["run"]).0, 0);
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000000, 'from a newer release', true, sha384('x'::bytea), 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let (code, out, _) = run(&db, &["check"]);
    assert_eq!(code, PENDING, "{out}");
    assert!(
        out.contains("unknown: migration 29991231000000 (from a newer release)"),
        "{out}"
    );
    // An older migrator (a rollback, a re-install) still runs: nothing of its own is missing.
    let (code, out, err) = run(&db, &["run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(run(&db, &["status"]).0, 0);
}

#[tokio::test]
async fn a_failing_migration_is_named_and_rolled_back() {
    let db = TestDb::create("failing").await;
    // A table in the way makes the second migration (create api_keys) fail.
    let mut conn = db.connect().await;
    sqlx::raw_sql("CREATE TABLE api_keys (id int)")
        .execute(&mut conn)
        .await
        .unwrap();

    let (code, out, err) = run(&db, &["run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("migration 20261101000002_create_api_keys failed"),
        "{err}"
    );
    assert!(err.contains("already exists"), "{err}");
    // The first migration stays applied, the failed one left nothing behind.
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM _sqlx_migrations").await,
        1
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'api_keys'"
        )
        .await,
        1
    );
    let (code, out, _) = run(&db, &["status"]);
    assert_eq!(code, PENDING);
    assert!(out.contains("1 applied"), "{out}");
}

/// A session holding a lock the migration needs: the migrator waits no longer than its lock
/// timeout per try, gives up after its retries, names the holder's query, and applies nothing.
#[tokio::test]
async fn a_held_lock_is_waited_for_within_bounds_and_named() {
    let db = TestDb::create("locked").await;
    assert_eq!(run(&db, &["run"]).0, 0);
    // api_keys pending again: creating it takes a lock on users (its foreign key).
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "DROP TABLE api_keys; DELETE FROM _sqlx_migrations WHERE version = 20261101000002",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut holder = db.connect().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();

    let started = Instant::now();
    let (code, out, err) = run(&db, &["run", "--lock-timeout", "1", "--lock-retries", "1"]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("gave up after 2 attempts"), "{err}");
    assert!(
        err.contains("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"),
        "{err}"
    );
    // Two tries of 1 s and a pause of 1 s between them, plus the start-up.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'api_keys'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM _sqlx_migrations").await,
        embedded_count() - 1
    );

    // Once the lock is released the same run applies it.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    let (code, out, err) = run(&db, &["run", "--lock-timeout", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied 20261101000002"), "{out}");
}

#[tokio::test]
async fn concurrent_runs_leave_one_correct_schema() {
    for round in 0..3 {
        let db = TestDb::create("concurrent").await;
        let children: Vec<_> = (0..2)
            .map(|_| {
                migrate(&db, &["run"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(tables(&db).await, ALL_TABLES);
        assert_eq!(
            scalar_i64(&db, "SELECT count(*) FROM _sqlx_migrations WHERE success").await,
            embedded_count()
        );
        assert_eq!(run(&db, &["check"]).0, 0);
    }
}

#[tokio::test]
async fn configuration_and_connection_errors_are_clear() {
    let db = TestDb::create("config").await;
    let password = std::fs::read_to_string(&db.password_file).unwrap();

    let out = migrate(&db, &["run"])
        .env_remove("POSTGRES_PASSWORD_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POSTGRES_PASSWORD_FILE is not set"));

    let dir = tempfile::tempdir().unwrap();
    let wrong = write_secret(dir.path(), "wrong", "not-the-password");
    let out = migrate(&db, &["run"])
        .env("POSTGRES_PASSWORD_FILE", &wrong)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot connect to postgres://{}@", db.user)),
        "{err}"
    );
    assert!(!err.contains(password.trim()) && !err.contains("not-the-password"));

    // Nothing listens: it retries for --wait seconds, then names the database it waited for.
    let port = free_port().to_string();
    let started = Instant::now();
    let out = migrate(&db, &["--wait", "1", "status"])
        .env("POSTGRES_PORT", &port)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!(":{port}/{}", db.name)), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(15));
}
