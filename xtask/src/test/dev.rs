//! The `dev` suite: `cargo xtask dev` for real, in a checkout of HEAD of its own (the test
//! edits the API's sources there, never in the working tree), on a real Docker Engine.
//!
//! It starts dev with cargo and npm told to stay offline, waits for the three names to answer
//! through nginx (with `Host` headers), edits an API source file and sees the new behaviour
//! served by the same dev session, breaks the build and sees the running API kept, adds a
//! migration and sees it applied, then sends SIGINT and checks that no process it started
//! survives and no container of its project runs. `--down` keeps the database volume and
//! `--down --reset-db` deletes it.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use camino::Utf8Path;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::child::{Child, Stop, free_port};
use crate::images;
use crate::test::install::{ProjectCleanup, replace};
use crate::test::release::{checkout, git};
use hitsave_host::kit::compose::tail;
use hitsave_host::kit::http;
use hitsave_host::kit::process::{Wait, wait_until};

struct Ports {
    nginx: u16,
    api: u16,
    web: u16,
    db: u16,
}

pub fn run(root: &Utf8Path) -> anyhow::Result<()> {
    let _dockerd = images::ready_for_stacks(root)?;
    let head = git(root, &["rev-parse", "HEAD"])?;
    let copy = checkout(
        root,
        &xtask::checkout::target_dir(root).join("xtask/dev-test/repo"),
        &head,
    )?;
    let project = format!("hitsave-devtest-{}", std::process::id());
    let _cleanup = ProjectCleanup(project.clone());
    let ports = Ports {
        nginx: free_port()?,
        api: free_port()?,
        web: free_port()?,
        db: free_port()?,
    };
    let log = xtask::checkout::target_dir(root).join("xtask/logs/dev-test.log");
    std::fs::create_dir_all(log.parent().expect("logs has a parent"))?;
    let result = scenario(&copy, &project, &ports, &log);
    git(&copy, &["reset", "--quiet", "--hard", &head])?;
    git(&copy, &["clean", "--quiet", "-d", "--force"])?;
    result.with_context(|| format!("dev's whole output is in {log}"))?;
    eprintln!("xtask: dev suite: all checks passed");
    Ok(())
}

/// `xtask dev ...` as a developer runs it in `copy`: the xtask binary running this test, with
/// the root found from the working directory.
fn dev(copy: &Utf8Path, project: &str, extra: &[&str]) -> anyhow::Result<Command> {
    let mut cmd = Command::new(hitsave_host::kit::process::current_exe()?);
    cmd.arg("dev")
        .args(["--project", project, "--local-base-images"])
        .args(extra)
        .current_dir(copy)
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_TARGET_DIR")
        // Works offline once built: cargo and npm may use only what is already on the machine.
        .env("CARGO_NET_OFFLINE", "true")
        .env("npm_config_offline", "true");
    Ok(cmd)
}

fn scenario(copy: &Utf8Path, project: &str, ports: &Ports, log: &Utf8Path) -> anyhow::Result<()> {
    let hosts = copy.join("target/test-hosts");
    std::fs::create_dir_all(copy.join("target"))?;
    std::fs::write(&hosts, "127.0.0.1 localhost\n")?;
    let out = std::fs::File::create(log)?;
    let port_args = [
        "--port".to_owned(),
        ports.nginx.to_string(),
        "--api-port".to_owned(),
        ports.api.to_string(),
        "--web-port".to_owned(),
        ports.web.to_string(),
        "--db-port".to_owned(),
        ports.db.to_string(),
        "--hosts-file".to_owned(),
        hosts.to_string(),
    ];
    let port_args: Vec<&str> = port_args.iter().map(String::as_str).collect();
    let mut cmd = dev(copy, project, &port_args)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // Its own group: SIGINT below reaches xtask alone, as Ctrl-C does in a terminal where
    // xtask's children sit in groups of their own. If the test fails half-way, SIGINT lets dev
    // stop its own children and containers; SIGKILL to the lot if it hangs.
    let stop = Stop {
        signal: Signal::SIGINT,
        to_group: false,
        grace: Duration::from_secs(30),
    };
    let mut session = Child::spawn_group("xtask dev", &mut cmd, stop)?;

    // Up: the first run builds the API and installs the web dependencies.
    wait_for(
        &mut session,
        log,
        Duration::from_secs(900),
        "dev to start",
        || Ok(read(log).contains("HitSave is running")),
    )?;
    let text = read(log);
    for line in [
        "127.0.0.1 hitsave-local.io",
        "127.0.0.1 www.hitsave-local.io",
        "127.0.0.1 api.hitsave-local.io",
    ] {
        ensure!(
            text.contains(line),
            "dev did not print the hosts line {line:?}"
        );
    }
    ensure!(
        text.contains(&format!("http://hitsave-local.io:{}/", ports.nginx)),
        "dev did not print the web URL"
    );
    check_secrets(copy)?;

    let api = "api.hitsave-local.io";
    let health = http::get(ports.nginx, api, "/health").context("nginx does not answer")?;
    ensure!(
        health.0 == 200 && health.1.contains("\"service\":\"hitsave\""),
        "GET /health at {api}: {health:?}"
    );
    for host in ["hitsave-local.io", "www.hitsave-local.io"] {
        let page = http::get(ports.nginx, host, "/").context("nginx does not answer")?;
        ensure!(
            page.0 == 200 && page.1.contains("<h1>HitSave</h1>"),
            "GET / at {host}: status {} and no HitSave heading",
            page.0
        );
    }
    let other = http::get(ports.nginx, "example.com", "/").context("nginx does not answer")?;
    ensure!(other.0 == 404, "an unknown host got {}", other.0);

    // An API change is built and served by the same dev session.
    let handler = copy.join("api/src/routes/health.rs");
    replace(
        &handler,
        "\"service\": \"hitsave\",",
        "\"service\": \"hitsave-reloaded\",",
    )?;
    wait_for(
        &mut session,
        log,
        Duration::from_secs(300),
        "the changed API to be served",
        || {
            Ok(http::get(ports.nginx, api, "/health")
                .is_some_and(|(s, b)| s == 200 && b.contains("hitsave-reloaded")))
        },
    )?;

    // A change that does not build: the running API keeps serving.
    let main = copy.join("api/src/main.rs");
    let good = std::fs::read_to_string(&main)?;
    std::fs::write(&main, format!("{good}\nfn broken(\n"))?;
    wait_for(
        &mut session,
        log,
        Duration::from_secs(300),
        "dev to report the failed build",
        || Ok(read(log).contains("the running API is unchanged")),
    )?;
    let still = http::get(ports.nginx, api, "/health");
    ensure!(
        still
            .as_ref()
            .is_some_and(|(s, b)| *s == 200 && b.contains("hitsave-reloaded")),
        "after a failed build the API no longer serves: {still:?}"
    );
    std::fs::write(&main, good)?;

    // A new migration is applied before the API restarts.
    std::fs::write(
        copy.join("migrations/29991231000000_dev_reload_check.sql"),
        "CREATE TABLE dev_reload_check (id integer PRIMARY KEY);\n",
    )?;
    let db = format!("{project}-db-1");
    wait_for(
        &mut session,
        log,
        Duration::from_secs(300),
        "the new migration to be applied",
        || {
            Ok(
                psql(&db, "SELECT to_regclass('dev_reload_check') IS NOT NULL")
                    .is_ok_and(|v| v == "t"),
            )
        },
    )?;
    wait_for(
        &mut session,
        log,
        Duration::from_secs(60),
        "the API to be ready with the new migration",
        || Ok(http::get(ports.nginx, api, "/ready").is_some_and(|(s, _)| s == 200)),
    )?;

    // Ctrl-C: everything dev started stops.
    let started = processes_under(copy);
    ensure!(
        started.len() >= 2,
        "expected the API and the web dev server among the processes under {copy}, found {started:?}"
    );
    kill(Pid::from_raw(session.pid() as i32), Signal::SIGINT)?;
    let status = hitsave_host::kit::process::wait_for(
        "dev to exit after SIGINT",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            Ok(match session.exited() {
                Some(status) => Wait::Done(status),
                None => Wait::NotYet("it still runs".into()),
            })
        },
    )?;
    ensure!(status.success(), "dev exited with {status} after SIGINT");
    std::thread::sleep(Duration::from_millis(500));
    let left: Vec<_> = started
        .iter()
        .filter(|(pid, _)| alive(*pid))
        .cloned()
        .collect();
    ensure!(left.is_empty(), "still running after SIGINT: {left:?}");
    let stray = processes_under(copy);
    ensure!(stray.is_empty(), "still running after SIGINT: {stray:?}");
    let running = containers(project, false)?;
    ensure!(
        running.is_empty(),
        "containers still running after SIGINT: {running:?}"
    );

    // --down removes the containers and keeps the data; --reset-db deletes it.
    let volume = format!("{project}_db-data");
    run_ok(dev(copy, project, &["--down"])?)?;
    let all = containers(project, true)?;
    ensure!(all.is_empty(), "containers left after --down: {all:?}");
    ensure!(
        volume_exists(&volume)?,
        "--down deleted the database volume"
    );
    run_ok(dev(copy, project, &["--down", "--reset-db"])?)?;
    ensure!(
        !volume_exists(&volume)?,
        "--down --reset-db kept the database volume"
    );
    Ok(())
}

/// Polls `done` until it holds; fails early when dev exits, with the end of its output.
fn wait_for(
    session: &mut Child,
    log: &Utf8Path,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    wait_until(what, timeout, || {
        if let Some(status) = session.exited() {
            bail!("dev exited ({status})");
        }
        done()
    })
    .with_context(|| {
        format!(
            "waiting for {what}; dev printed last:\n{}",
            tail(&read(log), 40)
        )
    })
}

fn read(log: &Utf8Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

fn check_secrets(copy: &Utf8Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = copy.join(".secrets");
    let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o777;
    ensure!(mode == 0o700, "{dir} has mode {mode:o}, not 700");
    for name in ["postgres_password", "jwt_secret", "gh_client_secret"] {
        let file = dir.join(name);
        let meta = std::fs::metadata(&file).with_context(|| format!("{file} is missing"))?;
        let mode = meta.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{file} has mode {mode:o}, not 600");
        ensure!(meta.len() > 0, "{file} is empty");
    }
    let ignored = git(copy, &["check-ignore", ".secrets/jwt_secret"]);
    ensure!(ignored.is_ok(), ".secrets/ is not git-ignored");
    Ok(())
}

/// Processes whose executable or working directory is under `dir` (the API from its target
/// directory, node in web/), except zombies.
fn processes_under(dir: &Utf8Path) -> Vec<(i32, String)> {
    let dir = dir.as_std_path();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let proc_dir = entry.path();
        let under = ["exe", "cwd"].iter().any(|link| {
            std::fs::read_link(proc_dir.join(link)).is_ok_and(|target| target.starts_with(dir))
        });
        if under && alive(pid) {
            let cmdline = std::fs::read(proc_dir.join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            found.push((pid, cmdline.trim().to_owned()));
        }
    }
    found
}

/// Exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

fn containers(project: &str, all: bool) -> anyhow::Result<Vec<String>> {
    let filter = format!("label=com.docker.compose.project={project}");
    let mut args = vec!["ps", "--quiet", "--filter", &filter];
    if all {
        args.push("--all");
    }
    let out = duct::cmd("docker", &args).read()?;
    Ok(out.lines().map(str::to_owned).collect())
}

fn volume_exists(name: &str) -> anyhow::Result<bool> {
    Ok(duct::cmd!("docker", "volume", "inspect", name)
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()?
        .status
        .success())
}

fn psql(container: &str, sql: &str) -> anyhow::Result<String> {
    Ok(duct::cmd!(
        "docker", "exec", container, "psql", "-U", "hitsave", "-d", "hitsave", "-tAc", sql
    )
    .stderr_null()
    .read()?
    .trim()
    .to_owned())
}

fn run_ok(mut cmd: Command) -> anyhow::Result<()> {
    let out = cmd.output().context("cannot run xtask dev")?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
