//! The install suite's restore scenario: v5 (v2 plus a marked destructive migration) loses
//! rows and a column; `xtask restore --before v5` brings every row back under load through
//! nginx, with only 2xx answers and the maintenance page; `--undo` goes back and forth; a
//! damaged download and a backup newer than every release on disk are refused with nothing
//! stopped; the next install drops the databases the restores replaced.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use camino::Utf8Path;
use serde_json::Value;

use crate::test::install::{DOMAIN, Harness, commit_and_release};
use crate::test::load::Load;
use hitsave_host::database::server::Server;
use hitsave_host::site::host::Host;
use hitsave_schema as schema;

/// Who the test says runs the restores (as sudo would).
const OPERATOR: &str = "restore-tester";

pub(crate) fn scenario(h: &Harness, twin: &Utf8Path, v1: &str, v2: &str) -> anyhow::Result<()> {
    h.join_waitlist("restore", 20)?;
    let before = counts(h)?;
    let v5 = commit_and_release(h, twin, "v5: a destructive migration", |dir| {
        std::fs::write(
            dir.join("migrations/20991231000001_lose_data_on_purpose.sql"),
            "-- The install test's destructive release.\n\
             -- hitsave: allow ban-drop-column: the install test loses this column on purpose\n\
             ALTER TABLE waitlist DROP COLUMN created_at;\n\
             DELETE FROM waitlist WHERE email LIKE 'restore-%';\n",
        )?;
        Ok(())
    })?;
    crate::test::release::git(twin, &["reset", "--quiet", "--hard", "HEAD~1"])?;
    let installed = h.install(&v5, &[])?;
    let log = String::from_utf8_lossy(&installed.stderr);
    ensure!(installed.status.success(), "installing v5 failed:\n{log}");
    h.expect_serving(&v5)?;
    let added = said(&log, "the pre-migrate backup added")?;
    let last = h.last_history()?;
    let backup = last["backup"]
        .as_str()
        .with_context(|| format!("v5's install took no backup: {last}"))?
        .to_owned();
    let record = schema::BackupRecord::parse(&std::fs::read(
        h.host_root.join(format!("backups/{backup}.json")),
    )?)?;
    ensure!(
        h.host_root.join(format!("backups/{backup}.dump")).is_file()
            && h.store.join(record.dump_key()).is_file(),
        "the pre-migrate backup {backup} is not on the host and in the store"
    );
    let lost = counts(h)?;
    ensure!(
        lost["waitlist"] + 20 == before["waitlist"] && !has_created_at(h)?,
        "v5 did not lose what it should: {lost:?}"
    );
    eprintln!(
        "xtask: test: v5's migration dropped a column and 20 rows; {backup} was taken first ({added})"
    );

    // Back to before v5, under load.
    let load = Load::during_maintenance(h.port, DOMAIN, 100, Duration::from_secs(600));
    let out = restore(h, &["--before", &v5]);
    let report = load.stop();
    let out = out?;
    ensure!(
        out.status.success(),
        "restore --before v5:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        report.failed == 0 && report.maintenance > 0,
        "during the restore, {} of {} requests failed (not 2xx, not the maintenance page): {:?}; {} maintenance answers; the restore said:\n{}",
        report.failed,
        report.requests,
        report.failures,
        report.maintenance,
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = counts(h)?;
    ensure!(
        restored == before && has_created_at(h)?,
        "restore --before v5 did not give back every row: before v5 {before:?}, restored {restored:?}"
    );
    h.expect_serving(v2)?;
    // Once the restarted apps are ready, nginx reaches them at their new addresses.
    crate::test::install::expect_api_at_its_address(h)?;
    ensure!(h.current()? == v2, "current is not v2 after the restore");
    let entry = h.last_history()?;
    ensure!(
        entry["action"] == "restore"
            && entry["outcome"] == "installed"
            && entry["backup"] == backup.as_str()
            && entry["release"] == v2
            && entry["by"] == OPERATOR,
        "history of the restore: {entry}"
    );
    ensure!(replaced(h)?.len() == 1, "the replaced database is not kept");
    eprintln!(
        "xtask: test: restore --before v5 under load: {} requests, {} answered 2xx, {} the maintenance page (503, Retry-After), 0 errors; every table's rows back ({:?}); v2 serves; {}",
        report.requests,
        report.requests - report.maintenance,
        report.maintenance,
        restored,
        said(
            &String::from_utf8_lossy(&out.stderr),
            "maintenance off after"
        )?
    );

    // --undo goes back to v5's database (and v5), and undoing that comes back here.
    undo(h)?;
    h.expect_serving(&v5)?;
    ensure!(
        counts(h)? == lost && !has_created_at(h)?,
        "restore --undo did not bring v5's database back"
    );
    // A backup of v5's schema, for the refusal below.
    let v5_backup: Value = serde_json::from_slice(&h.ok(&h.host_args(&[
        "backup",
        "--store",
        h.store.as_str(),
        "--json",
    ]))?)?;
    let v5_backup = v5_backup["id"]
        .as_str()
        .context("backup --json")?
        .to_owned();
    undo(h)?;
    h.expect_serving(v2)?;
    ensure!(counts(h)? == before, "undoing the undo lost rows");
    let backed_up = h
        .history()?
        .into_iter()
        .rev()
        .find(|e| e["action"] == "backup");
    ensure!(
        backed_up.is_some_and(|e| e["backup"] == v5_backup.as_str() && e["outcome"] == "done"),
        "history does not record the manual backup"
    );
    eprintln!("xtask: test: restore --undo brings v5's database back, and undoing it this one");

    refusals(h, &v5, &v5_backup)?;
    pruned_by_the_next_install(h, v1, v2)
}

/// The next install that serves drops the databases restores replaced and marks the host, so
/// that the installs after it do not ask PostgreSQL (a `docker exec`) until another restore.
fn pruned_by_the_next_install(h: &Harness, v1: &str, v2: &str) -> anyhow::Result<()> {
    let none = Host {
        root: h.host_root.clone(),
    }
    .none_replaced_file();
    let left = replaced(h)?;
    ensure!(
        !left.is_empty() && !none.exists(),
        "after the restores: replaced databases {left:?}, the host's mark of none: {}",
        none.exists()
    );
    h.install_ok(v1)?;
    let left = replaced(h)?;
    ensure!(
        left.is_empty() && none.exists(),
        "an install that serves left the replaced databases {left:?} (the host's mark of none: {})",
        none.exists()
    );
    let marked = std::fs::metadata(&none)?.modified()?;
    h.install_ok(v2)?;
    h.expect_serving(v2)?;
    ensure!(
        std::fs::metadata(&none)?.modified()? == marked,
        "an install asked PostgreSQL for replaced databases with none left"
    );
    eprintln!(
        "xtask: test: the next install drops the databases the restores replaced; the one after it does not ask again"
    );
    Ok(())
}

/// A damaged download and a backup no release on disk knows: refused, nothing stopped.
fn refusals(h: &Harness, v5: &str, v5_backup: &str) -> anyhow::Result<()> {
    let api = h.container_id("api")?;
    let rows = counts(h)?;
    // Only in the store, with one byte flipped.
    let dir = h.host_root.join("backups");
    let aside = h.work.join("backup-aside");
    std::fs::create_dir_all(&aside)?;
    for suffix in ["dump", "json"] {
        std::fs::rename(
            dir.join(format!("{v5_backup}.{suffix}")),
            aside.join(format!("{v5_backup}.{suffix}")),
        )?;
    }
    let record =
        schema::BackupRecord::parse(&std::fs::read(aside.join(format!("{v5_backup}.json")))?)?;
    let stored = h.store.join(record.dump_key());
    let good = std::fs::read(&stored)?;
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&stored, &bad)?;
    let out = restore(h, &[v5_backup, "--store", h.store.as_str()])?;
    std::fs::write(&stored, &good)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("is damaged") && err.contains("nothing was restored"),
        "restoring a damaged download:\n{err}"
    );
    ensure!(
        !dir.join(format!("{v5_backup}.dump")).exists(),
        "a damaged download was kept as a backup"
    );
    ensure!(
        h.container_id("api")? == api && counts(h)? == rows,
        "a refused restore changed the stack or the database"
    );

    // Newer than every release on disk: v5 gone from the host.
    for suffix in ["dump", "json"] {
        std::fs::rename(
            aside.join(format!("{v5_backup}.{suffix}")),
            dir.join(format!("{v5_backup}.{suffix}")),
        )?;
    }
    let v5_dir = h.host_root.join("releases").join(v5);
    let v5_aside = h.work.join("v5-aside");
    std::fs::rename(&v5_dir, &v5_aside)?;
    let out = restore(h, &[v5_backup]);
    std::fs::rename(&v5_aside, &v5_dir)?;
    let out = out?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("no release on this host runs on this backup's schema")
            && err.contains("Nothing was stopped"),
        "restoring a backup newer than every release on disk:\n{err}"
    );
    ensure!(
        h.container_id("api")? == api && counts(h)? == rows,
        "a refused restore changed the stack or the database"
    );
    ensure!(
        server(h)?.databases("hitsave_restoring_")?.is_empty()
            && !h.host_root.join("nginx/maintenance.html").exists(),
        "a refused restore left its database or maintenance behind"
    );
    h.expect_serving(&h.current()?)?;
    eprintln!(
        "xtask: test: restore refuses a damaged download and a backup newer than every release on disk; nothing stopped"
    );
    Ok(())
}

/// The line of `log` that contains `what`, from `what` on.
fn said<'a>(log: &'a str, what: &str) -> anyhow::Result<&'a str> {
    log.lines()
        .find_map(|l| l.find(what).map(|i| &l[i..]))
        .with_context(|| format!("no {what:?} in:\n{log}"))
}

fn restore(h: &Harness, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut all = vec!["restore"];
    all.extend_from_slice(args);
    let all = h.host_args(&all);
    eprintln!("xtask: test: xtask {}", all.join(" "));
    Ok(h.t.command(&all, &[]).env("SUDO_USER", OPERATOR).output()?)
}

fn undo(h: &Harness) -> anyhow::Result<()> {
    let out = restore(h, &["--undo"])?;
    ensure!(
        out.status.success(),
        "restore --undo:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn server(h: &Harness) -> anyhow::Result<Server> {
    Server::in_container(h.container_id("db")?)
}

/// Every table's rows in the live database.
fn counts(h: &Harness) -> anyhow::Result<BTreeMap<String, u64>> {
    server(h)?.row_counts("hitsave")
}

fn has_created_at(h: &Harness) -> anyhow::Result<bool> {
    Ok(h.db_count(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'waitlist' AND column_name = 'created_at'",
    )? == 1)
}

fn replaced(h: &Harness) -> anyhow::Result<Vec<String>> {
    server(h)?.databases("hitsave_replaced_")
}

/// Two hosts of different environments (`main`, the install suite's, is `local`; `staging`,
/// the ACME test's) share one store, a real Garage: each backs up several times with a
/// retention of two; each host's retention leaves the other's backups alone; `restore
/// --latest` picks the host's own; a backup of the other environment, or one of another
/// database, is refused unless named with `--from`, which then says what it restores from.
/// Two backups started at once on the two hosts are both kept.
pub(crate) fn across_environments(main: &Harness, staging: &Harness) -> anyhow::Result<()> {
    let garage = crate::test::garage::Garage::start()?;
    garage.create_bucket("backups")?;
    let env = garage.client_env();
    let url = "s3://backups/hitsave";
    let run = |h: &Harness, args: &[&str]| -> anyhow::Result<std::process::Output> {
        let all = h.host_args(args);
        eprintln!("xtask: test: xtask {}", all.join(" "));
        Ok(h.t
            .command(&all, &env)
            .env("SUDO_USER", OPERATOR)
            .output()?)
    };
    let backup = |h: &Harness| -> anyhow::Result<schema::BackupRecord> {
        let out = run(
            h,
            &[
                "backup", "--store", url, "--keep", "2", "--days", "0", "--json",
            ],
        )?;
        ensure!(
            out.status.success(),
            "backup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        schema::BackupRecord::parse(&out.stdout)
    };
    let store = s3_store(&garage)?;
    let listed = |h: &Harness, env: &str| -> anyhow::Result<Vec<schema::BackupId>> {
        Ok(hitsave_host::database::archive::stored_in(
            &store,
            &schema::backups_dir(env, Some(&h.host_id()?)),
        )?
        .into_iter()
        .map(|s| s.id)
        .collect())
    };

    // Two at once, one on each host: both kept (the ids, and the keys, name their host).
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| backup(main));
        let b = s.spawn(|| backup(staging));
        (a.join(), b.join())
    });
    let (a, b) = (a.expect("a backup thread")?, b.expect("a backup thread")?);
    ensure!(
        a.id != b.id
            && listed(main, "local")?.contains(&a.id)
            && listed(staging, "staging")?.contains(&b.id),
        "two backups at once: {} and {} are not both in the store",
        a.id,
        b.id
    );
    eprintln!(
        "xtask: test: backups taken at once on two hosts are both kept: {} and {}{}",
        a.id,
        b.id,
        if a.time == b.time {
            " (the same second)"
        } else {
            ""
        }
    );

    // Three more each, alternating: each host's retention (2) prunes its own only.
    let mut last = (a, b);
    for _ in 0..3 {
        let before = listed(staging, "staging")?;
        last.0 = backup(main)?;
        ensure!(
            listed(staging, "staging")? == before,
            "the local host's retention touched staging's backups"
        );
        let before = listed(main, "local")?;
        last.1 = backup(staging)?;
        ensure!(
            listed(main, "local")? == before,
            "the staging host's retention touched local's backups"
        );
    }
    for (h, env, newest) in [(main, "local", &last.0), (staging, "staging", &last.1)] {
        let ids = listed(h, env)?;
        ensure!(
            ids.len() <= 3 && ids.contains(&newest.id),
            "{env}: retention 2 kept {ids:?} (pinned backups aside)"
        );
        ensure!(
            newest.environment.as_deref() == Some(env)
                && newest.host.as_deref() == Some(h.host_id()?.as_str())
                && newest.database.is_some(),
            "{env}: the record does not name its environment, host and database: {newest:?}"
        );
    }

    // --latest picks each host's own. During the first, `maintenance off` waits for the
    // restore's lock instead of ending its maintenance page early.
    for (n, (h, newest)) in [(main, &last.0), (staging, &last.1)]
        .into_iter()
        .enumerate()
    {
        let out = if n == 0 {
            restore_while_maintenance_off(h, &env, url)?
        } else {
            run(h, &["restore", "--latest", "--store", url])?
        };
        ensure!(
            out.status.success(),
            "restore --latest: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = h.last_history()?;
        ensure!(
            entry["backup"] == newest.id.as_str(),
            "restore --latest chose {} rather than {}",
            entry["backup"],
            newest.id
        );
    }
    eprintln!("xtask: test: restore --latest on each host picked its own newest backup");

    // Another environment's backup: refused by id, then restored with --from, saying so.
    let out = run(main, &["restore", &last.1.id, "--store", url])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && said.contains("environment staging's")
            && said.contains("--from staging/"),
        "restoring staging's backup on the local host without --from:\n{said}"
    );
    let out = run(
        main,
        &["restore", "--latest", "--from", "staging", "--store", url],
    )?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success()
            && said.contains(&format!(
                "restoring backup {} from staging/{}",
                last.1.id,
                staging.host_id()?
            )),
        "restore --latest --from staging:\n{said}"
    );
    eprintln!(
        "xtask: test: staging's backup on the local host: refused without --from; with --from staging it restores, naming the source"
    );

    // A backup of this environment but another database (a record whose cluster differs).
    let mut other = last.1.clone();
    other.id = other
        .id
        .replace(&staging.host_id()?, "test-elsewhere")
        .parse()?;
    other.host = Some("test-elsewhere".into());
    if let Some(db) = &mut other.database {
        db.system_identifier = "1".into();
    }
    let dir = schema::backups_dir("staging", Some("test-elsewhere"));
    let mut dump = Vec::new();
    hitsave_host::kit::store::Store::download(
        &store,
        &last.1.dump_key(),
        &mut dump,
        last.1.size,
        &|_| {},
    )?;
    hitsave_host::kit::store::Store::put(&store, &format!("{dir}/{}.dump", other.id), &dump)?;
    hitsave_host::kit::store::Store::put(&store, &other.record_key(), &schema::to_bytes(&other))?;
    let out = run(staging, &["restore", &other.id, "--store", url])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && said.contains("not from this host's database")
            && said.contains("--from staging/test-elsewhere"),
        "restoring another database's backup without --from:\n{said}"
    );
    eprintln!("xtask: test: a backup of another database is refused without --from");
    drop(garage);
    Ok(())
}

/// `restore --latest` from `url`, and `maintenance off` once the restore holds the install
/// lock: maintenance off waits for it, saying who holds it, and ends after the restore.
fn restore_while_maintenance_off(
    h: &Harness,
    env: &[(&str, String)],
    url: &str,
) -> anyhow::Result<std::process::Output> {
    let restore =
        h.t.command(&h.host_args(&["restore", "--latest", "--store", url]), env)
            .env("SUDO_USER", OPERATOR)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
    let lock = h.host_root.join("install.lock");
    hitsave_host::kit::process::wait_until(
        "the restore to hold the install lock",
        Duration::from_secs(60),
        || Ok(std::fs::read_to_string(&lock).is_ok_and(|l| l.contains("xtask restore"))),
    )?;
    let off =
        h.t.command(&h.host_args(&["maintenance", "off"]), &[])
            .output()?;
    let out = restore.wait_with_output()?;
    let said = String::from_utf8_lossy(&off.stderr);
    ensure!(
        off.status.success() && said.contains("held by") && said.contains("xtask restore"),
        "maintenance off during a restore did not wait for it:\n{said}"
    );
    eprintln!("xtask: test: maintenance off during a restore waited for the restore's lock");
    Ok(out)
}

/// The test's Garage bucket `backups`, prefix `hitsave`, as a store.
fn s3_store(
    garage: &crate::test::garage::Garage,
) -> anyhow::Result<hitsave_host::kit::store::S3Store> {
    for (k, v) in garage.client_env() {
        // SAFETY: nothing else reads the environment while the install suite runs this.
        unsafe { std::env::set_var(k, v) };
    }
    hitsave_host::kit::store::S3Store::connect(hitsave_host::kit::store::S3Options {
        bucket: "backups".into(),
        prefix: "hitsave".into(),
        endpoint_url: Some(garage.endpoint.clone()),
        path_style: true,
    })
}
