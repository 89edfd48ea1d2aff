//! `cargo xtask bench backup`: backup and restore of a database of at least 1 GiB, side by
//! side with plain PostgreSQL tools on the same server, in one run:
//!
//! - `xtask backup` (snapshot, exact row counts, dump through SHA-256 to a file, record) vs
//!   `pg_dump -Fc | sha256sum`;
//! - the restore's database work (hash check, pg_restore into a new database in one
//!   transaction, row counts against the record) vs `createdb` + `pg_restore`, both with
//!   serial index builds (the container has Docker's 64 MiB /dev/shm, as the stack's db has);
//! - the peak RSS of the backup process, to a local directory and with the upload to S3
//!   (Garage);
//! - a backup of an empty database: the fixed cost a pre-migrate backup adds.
//!
//! Targets: each ratio at most 1.1, peak RSS under 100 MiB. Exits non-zero when one is missed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use camino::Utf8Path;
use hitsave_host::database::drill::Drill;
use hitsave_host::database::server::Server;
use hitsave_host::kit::ui::{Ui, human_bytes};
use hitsave_schema::BackupRecord;

use crate::child::Child;
use crate::test::garage::Garage;

/// The database is filled to at least this size.
const SIZE: u64 = 1 << 30;

pub fn run(root: &Utf8Path) -> anyhow::Result<()> {
    let _dockerd = crate::images::ready_for_stacks(root)?;
    let ui = Ui::new();
    let work = xtask::checkout::target_dir(root)
        .join(format!("xtask/bench-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let image = hitsave_host::site::settings::base_images(true)
        .into_iter()
        .find(|(k, _)| *k == "HITSAVE_POSTGRES_IMAGE")
        .map(|(_, image)| image)
        .context("no PostgreSQL image")?;
    let db = Drill::start(image, "bench")?;
    let server = Server::in_container(db.name.clone())?;
    let result = measure(&ui, root, &work, &server);
    drop(db);
    let _ = std::fs::remove_dir_all(&work);
    let missed = result?;
    super::finish(missed)
}

fn measure(
    ui: &Ui,
    root: &Utf8Path,
    work: &Utf8Path,
    server: &Server,
) -> anyhow::Result<Vec<String>> {
    let mut missed = Vec::new();
    eprintln!("xtask: filling the database to {} ...", human_bytes(SIZE));
    let size = fill(server)?;
    println!(
        "backup and restore of a {} database ({} rows in its largest table), one run each",
        human_bytes(size),
        server.psql(&server.live, "SELECT count(*) FROM bench_rows")?
    );

    // Backup: plain pg_dump through sha256sum, then ours to a local directory.
    let started = Instant::now();
    duct::cmd!(
        "docker",
        "exec",
        &server.container,
        "pg_dump",
        "--format=custom",
        "--username",
        &server.user,
        "--dbname",
        &server.live
    )
    .pipe(duct::cmd!("sha256sum"))
    .stdout_null()
    .run()
    .context("pg_dump -Fc | sha256sum")?;
    let plain = started.elapsed();
    let host_root = work.join("host");
    let (ours, record, peak) = backup(root, &host_root, server, None)?;
    let ratio = ours.as_secs_f64() / plain.as_secs_f64();
    println!(
        "  backup: xtask {:.1} s, pg_dump -Fc | sha256sum {:.1} s -> ratio {ratio:.2} (goal <= 1.1); dump {}",
        ours.as_secs_f64(),
        plain.as_secs_f64(),
        human_bytes(record.size)
    );
    if ratio > 1.1 {
        missed.push(format!("backup ratio {ratio:.2}"));
    }
    println!(
        "  peak RSS of xtask backup (local directory): {}",
        human_bytes(peak)
    );
    if peak >= 100 << 20 {
        missed.push(format!("backup peak RSS {}", human_bytes(peak)));
    }

    // The same with the upload to S3 (Garage on 127.0.0.1).
    let garage = Garage::start()?;
    garage.create_bucket("bench")?;
    let (uploaded, _, peak) = backup(
        root,
        &work.join("host-s3"),
        server,
        Some(("s3://bench/backups", garage.client_env())),
    )?;
    drop(garage);
    println!(
        "  backup with the upload to S3 (Garage): {:.1} s, peak RSS {}",
        uploaded.as_secs_f64(),
        human_bytes(peak)
    );
    if peak >= 100 << 20 {
        missed.push(format!("backup + upload peak RSS {}", human_bytes(peak)));
    }

    // Restore: plain createdb + pg_restore, then ours (hash, one transaction, row counts).
    let dump = host_root.join(format!("backups/{}.dump", record.id));
    let started = Instant::now();
    server.create("bench_plain")?;
    duct::cmd!(
        "docker",
        "exec",
        "-i",
        "--env",
        hitsave_host::database::server::SERIAL_INDEX_BUILDS,
        &server.container,
        "pg_restore",
        "--username",
        &server.user,
        "--dbname",
        "bench_plain"
    )
    .stdin_path(&dump)
    .stdout_null()
    .run()
    .context("pg_restore")?;
    let plain = started.elapsed();
    server.drop_database("bench_plain")?;
    let started = Instant::now();
    let restored =
        hitsave_host::database::restore::restore_into(ui, server, "bench_ours", &dump, &record);
    let ours = started.elapsed();
    let _ = server.drop_database("bench_ours");
    restored?;
    let ratio = ours.as_secs_f64() / plain.as_secs_f64();
    println!(
        "  restore: xtask {:.1} s, createdb + pg_restore {:.1} s -> ratio {ratio:.2} (goal <= 1.1)",
        ours.as_secs_f64(),
        plain.as_secs_f64()
    );
    if ratio > 1.1 {
        missed.push(format!("restore ratio {ratio:.2}"));
    }

    // An empty database: the fixed cost of a backup (the install suite prints what a
    // pre-migrate backup adds to an install of the test database).
    server.psql(&server.live, "DROP TABLE bench_rows")?;
    let (small, record, _) = backup(root, &work.join("host-small"), server, None)?;
    println!(
        "  a backup of an empty database (the fixed cost; {}): {:.2} s",
        human_bytes(record.size),
        small.as_secs_f64()
    );
    Ok(missed)
}

/// `xtask backup` of `server` into `host_root` (and `store`): its wall time, record and peak
/// RSS (VmHWM, polled until it exits).
fn backup(
    root: &Utf8Path,
    host_root: &Utf8Path,
    server: &Server,
    store: Option<(&str, Vec<(&'static str, String)>)>,
) -> anyhow::Result<(Duration, BackupRecord, u64)> {
    let mut cmd = std::process::Command::new(hitsave_host::kit::process::current_exe()?);
    cmd.args(["backup", "--root", host_root.as_str(), "--json"])
        .args(["--db-container", &server.container])
        .current_dir(root)
        .env("CI", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some((url, env)) = &store {
        cmd.args(["--store", url]);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    }
    let started = Instant::now();
    let mut child = Child::spawn("xtask backup", &mut cmd)?;
    let pid = child.pid();
    let mut stdout = child.take_output().0.context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).map(|_| bytes)
    });
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.exited() {
            break status;
        }
        peak = peak.max(crate::release::peak_rss_of(&pid.to_string()));
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stdout = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading xtask backup's output failed"))??;
    ensure!(status.success(), "xtask backup failed");
    Ok((elapsed, BackupRecord::parse(&stdout)?, peak))
}

/// Rows of mixed width (ids, a foreign key, hex text that compresses about as well as real
/// text, a JSON document), then an index, until the database holds `SIZE`; its size.
fn fill(server: &Server) -> anyhow::Result<u64> {
    server.psql(
        &server.live,
        "CREATE TABLE bench_rows (id bigint PRIMARY KEY, owner bigint NOT NULL, \
         body text NOT NULL, doc jsonb NOT NULL, created timestamptz NOT NULL DEFAULT now())",
    )?;
    let mut next = 1u64;
    loop {
        let size: u64 = server
            .psql(&server.live, "SELECT pg_database_size(current_database())")?
            .parse()?;
        if size >= SIZE {
            server.psql(
                &server.live,
                "SET max_parallel_maintenance_workers = 0; CREATE INDEX ON bench_rows (owner)",
            )?;
            server.psql(&server.live, "VACUUM (ANALYZE, PARALLEL 0) bench_rows")?;
            return Ok(server
                .psql(&server.live, "SELECT pg_database_size(current_database())")?
                .parse()?);
        }
        let rows = 1_000_000;
        server.psql(
            &server.live,
            &format!(
                "INSERT INTO bench_rows (id, owner, body, doc) SELECT i, i % 1000, \
                 repeat(md5(i::text), 3), jsonb_build_object('n', i, 'tag', md5((i * 7)::text)) \
                 FROM generate_series({next}, {}) i",
                next + rows - 1
            ),
        )?;
        next += rows;
    }
}
