//! `xtask secrets` and `xtask psql` on the running stack (part of the install suite): refusals
//! that write nothing, a value typed on a terminal that is never echoed, `list` without values,
//! then each secret rotated under steady signed-in load with no failed request. A session
//! token from before the JWT rotation works within the grace period and not after it; the API
//! and the migrator log in with the new database password; `prune` removes the previous values
//! and the containers that held them; no old or new value is anywhere it could leak. The JWT
//! rotation is watched and passes; a rotation whose new API container dies during its watch
//! is turned back: the value before it serves again and the one it tried stays accepted.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use camino::Utf8PathBuf;
use serde_json::{Value, json};

use crate::test::install::{DOMAIN, Harness, docker, expect_no_leak};
use crate::test::load::Load;
use hitsave_host::kit::process::{Wait, wait_for};
use hitsave_host::site::app::App;
use hitsave_host::site::stack::Stack;

/// The grace period the JWT rotation gets here (a day by default).
const JWT_GRACE: Duration = Duration::from_secs(45);

pub fn scenario(h: &Harness) -> anyhow::Result<()> {
    let dir = h.host_root.join("secrets");
    let mut printed = String::new();
    refusals(h, &dir)?;
    let typed = typed_on_a_terminal(h, &dir, &mut printed)?;
    let list = String::from_utf8(h.ok(&h.host_args(&["secrets", "list"]))?)?;
    ensure!(
        [
            "postgres_password",
            "jwt_secret",
            "gh_client_secret",
            "0600"
        ]
        .iter()
        .all(|w| list.contains(w)),
        "secrets list:\n{list}"
    );
    printed += &list;

    let mut values: Vec<(String, String)> = vec![("gh_client_secret".into(), typed)];
    let session = sign("ada", &read(&dir.join("jwt_secret"))?);
    let started = Instant::now();
    let mut rotated_jwt_at = None;
    let mut refreshed = None;
    // The database password last: its API container is the one whose logins are checked.
    for name in ["gh_client_secret", "jwt_secret", "postgres_password"] {
        let old = read(&dir.join(name))?;
        let before = running_api(h)?;
        // Signed with the secret of the moment: the first token's grace is checked below.
        let load = Load::signed_in(
            h.port,
            DOMAIN,
            100,
            Duration::from_secs(300),
            "/api_keys",
            &sign("ada", &read(&dir.join("jwt_secret"))?),
        );
        std::thread::sleep(Duration::from_secs(2));
        let mut args = h.host_args(&["secrets", "rotate", name]);
        let grace = format!("{}s", JWT_GRACE.as_secs());
        if name == "jwt_secret" {
            args.extend(["--grace", &grace, "--watch", "5"]);
            rotated_jwt_at = Some(Instant::now());
        }
        let out = match name {
            "gh_client_secret" => {
                args.push("--from-stdin");
                with_stdin(h, &args, "gh-rotated-0123456789abcdef\n")?
            }
            "postgres_password" => killed_then_finished(h, &args)?,
            _ => run(h, &args)?,
        };
        printed += &out;
        std::thread::sleep(Duration::from_secs(2));
        let report = load.stop();
        ensure!(
            report.failed == 0 && report.requests > 100,
            "rotating {name} under load: {} of {} requests failed: {:?}",
            report.failed,
            report.requests,
            report.failures
        );
        let new = read(&dir.join(name))?;
        ensure!(new != old, "rotating {name} left its value");
        ensure!(
            read(&dir.join(format!("{name}.previous")))? == old,
            "{name}.previous is not the value before the rotation"
        );
        for file in [name.to_owned(), format!("{name}.previous")] {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(dir.join(&file))?.permissions(),
            );
            ensure!(mode & 0o777 == 0o600, "{file} has mode {mode:o}");
        }
        ensure!(
            running_api(h)? != before,
            "rotating {name} did not replace the API container"
        );
        eprintln!(
            "xtask: test: {name} rotated under load: {} signed-in requests and pages, 0 failed",
            report.requests
        );
        if name == "jwt_secret" {
            refreshed = Some(within_grace(h, &session, &new)?);
            let watch = last_watch(h)?;
            ensure!(
                watch["verdict"] == "passed"
                    && watch["new"]["requests"].as_u64() >= Some(20)
                    && watch["previous"]
                        .as_str()
                        .is_some_and(|p| p.contains("before jwt_secret was rotated")),
                "the JWT rotation's watch: {watch}"
            );
            eprintln!(
                "xtask: test: the JWT rotation's new containers were watched and passed ({} of their requests, {} 5xx)",
                watch["new"]["requests"], watch["new"]["errors"]
            );
        }
        values.push((format!("{name} (old)"), old));
        values.push((format!("{name} (new)"), new));
    }
    let history = std::fs::read_to_string(h.host_root.join("history.jsonl"))?;
    for name in ["jwt_secret", "postgres_password", "gh_client_secret"] {
        ensure!(
            history.lines().any(|l| l.contains("\"rotate-secret\"")
                && l.contains(&format!("\"secret\":\"{name}\""))
                && l.contains("\"done\"")),
            "history.jsonl has no rotation of {name}"
        );
    }

    // The database password: the migrator and psql log in with the new one, and so does the
    // API once its connections are cut (the role no longer takes the old one).
    let stack = Stack::open(&h.host_root.join("releases").join(h.current()?))?;
    let status = stack.run(
        "migrator status",
        &["run", "--rm", "--no-deps", "migrate", "status"],
    )?;
    ensure!(
        !status.contains("refused"),
        "the migrator needed the previous password:\n{status}"
    );
    let mut args = h.host_args(&["psql"]);
    args.extend(["--", "-tAc", "select current_user"]);
    let who = run(h, &args)?;
    ensure!(who.trim() == "hitsave", "psql: {who}");
    printed += &who;
    let cut = h.db_count(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'hitsave-db'",
    )?;
    ensure!(cut > 0, "the API had no database connection to cut");
    let ready =
        hitsave_host::kit::http::request(h.port, &App::Api.host(DOMAIN), "GET", "/ready", None);
    ensure!(
        matches!(ready, Some((200, _))),
        "the API after its connections were cut: {ready:?}"
    );
    // The API container started during the rotation logged in with the previous password
    // first; cut off, it moved to the current one.
    let api_logs = duct::cmd!("docker", "logs", running_api(h)?)
        .stderr_to_stdout()
        .read()?;
    ensure!(
        api_logs.contains("\"now_using\":\"current\""),
        "the API never moved to the new database password:\n{api_logs}"
    );
    eprintln!(
        "xtask: test: the migrator, psql and the API ({cut} connections cut) log in with the new database password"
    );

    let rotated_jwt_at = rotated_jwt_at.context("jwt_secret was not rotated")?;
    let refreshed: String = refreshed.context("jwt_secret was not rotated")?;
    let over = rotated_jwt_at + JWT_GRACE + Duration::from_secs(3);
    if let Some(wait) = over.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    ensure!(
        api_get(h, &session)?.0 == 401,
        "a token from before the rotation still works after the grace period"
    );
    ensure!(
        api_get(h, &refreshed)?.0 == 200,
        "the refreshed token is refused"
    );
    eprintln!(
        "xtask: test: the old session token worked for the grace period ({} s) and not after it; the refreshed one is signed with the new secret",
        JWT_GRACE.as_secs()
    );

    // prune: the JWT secret's grace is over; the others' (an hour) not yet.
    let before = running_api(h)?;
    let load = Load::signed_in(
        h.port,
        DOMAIN,
        100,
        Duration::from_secs(300),
        "/api_keys",
        &refreshed,
    );
    std::thread::sleep(Duration::from_secs(1));
    printed += &run(h, &h.host_args(&["secrets", "prune"]))?;
    let report = load.stop();
    ensure!(
        report.failed == 0,
        "prune under load: {} failed: {:?}",
        report.failed,
        report.failures
    );
    ensure!(
        read(&dir.join("jwt_secret.previous"))?.is_empty(),
        "prune left the previous JWT secret"
    );
    ensure!(
        !read(&dir.join("postgres_password.previous"))?.is_empty(),
        "prune removed a previous value whose grace period runs"
    );
    let after = running_api(h)?;
    ensure!(
        after != before,
        "prune left the API container that held the old secret"
    );
    let held = docker(&["exec", &after, "cat", "/run/secrets/jwt_secret_previous"])?;
    ensure!(
        held.trim().is_empty(),
        "the new API container holds the previous JWT secret"
    );
    printed += &run(h, &h.host_args(&["secrets", "prune"]))?;
    eprintln!(
        "xtask: test: prune removed the expired previous JWT secret and replaced the API that held it ({} requests, 0 failed); a second prune did nothing",
        report.requests
    );

    turned_back(h, &dir, &mut values)?;
    let searched = expect_no_leak(h, &values, &printed)?;
    eprintln!(
        "xtask: test: no old or new secret value in inspect, image history, logs, history.jsonl, release.env, process environments or command lines, or any command's output ({} KiB searched); the rotations took {:.0} s",
        searched / 1024,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A JWT rotation whose new API container dies during its watch (stopped by the test once the
/// watch begins): the watch fails on the 502s, the rotation is turned back, the value before
/// it signs again, the one it tried is still accepted, and the API serves.
fn turned_back(
    h: &Harness,
    dir: &Utf8PathBuf,
    values: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let value = read(&dir.join("jwt_secret"))?;
    let before = running_api(h)?;
    let token = sign("ada", &value);
    let load = Load::signed_in(
        h.port,
        DOMAIN,
        100,
        Duration::from_secs(300),
        "/api_keys",
        &token,
    );
    std::thread::sleep(Duration::from_secs(1));
    let args = h.host_args(&[
        "secrets",
        "rotate",
        "jwt_secret",
        "--force",
        "--grace",
        "10m",
        "--watch",
        "30",
    ]);
    eprintln!("xtask: test: xtask {}", args.join(" "));
    let mut child =
        h.t.command(&args, &[])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (watching, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("watching release") {
                let _ = watching.send(());
            }
            eprintln!("{line}");
            all += &line;
            all.push('\n');
        }
        all
    });
    let began = seen.recv_timeout(Duration::from_secs(180));
    let dying = running_api(h)?;
    if began.is_ok() && dying != before {
        docker(&["stop", "--time", "0", &dying])?;
    }
    let stopped = Instant::now();
    let status = child.wait()?;
    let took = stopped.elapsed();
    let err = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))?;
    let report = load.stop();
    began.context("the rotation never began its watch")?;
    ensure!(
        dying != before,
        "the rotation did not replace the API container"
    );
    ensure!(
        !status.success()
            && err.contains("failed their watch")
            && err.contains("the old value is current again"),
        "a rotation whose new API died in its watch:\n{err}"
    );
    let tried = read(&dir.join("jwt_secret.previous"))?;
    ensure!(
        read(&dir.join("jwt_secret"))? == value && !tried.is_empty() && tried != value,
        "turned back, jwt_secret is not the value before the rotation with the tried one as previous"
    );
    values.push(("jwt_secret (tried)".into(), tried.clone()));
    let api = running_api(h)?;
    ensure!(
        api != dying,
        "the dead API container is still the one named"
    );
    ensure!(
        api_get(h, &token)?.0 == 200 && api_get(h, &sign("ada", &tried))?.0 == 200,
        "turned back, the API refuses a token signed with the value before or the tried one"
    );
    let history = std::fs::read_to_string(h.host_root.join("history.jsonl"))?;
    let last = history.lines().last().unwrap_or_default();
    ensure!(
        last.contains("\"rotate-secret\"") && last.contains("\"rolled-back\""),
        "history's last line after the turned-back rotation: {last}"
    );
    let watch = last_watch(h)?;
    ensure!(
        watch["verdict"] == "failed" && watch["new"]["errors"].as_u64() > Some(0),
        "the failed rotation's watch: {watch}"
    );
    let after = Load::signed_in(
        h.port,
        DOMAIN,
        100,
        Duration::from_secs(300),
        "/api_keys",
        &token,
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = after.stop();
    ensure!(
        after.failed == 0 && after.requests > 50,
        "after the turn-back, {} of {} requests failed: {:?}",
        after.failed,
        after.requests,
        after.failures
    );
    eprintln!(
        "xtask: test: a JWT rotation whose new API died in its watch was turned back: verdict after {:.1} s of the 30 s window with {} of {} of its requests 5xx; the old value serves again {:.1} s after the container died; {} of {} load requests failed (the dead container's), then 0 of {}",
        watch["watched_seconds"].as_f64().unwrap_or_default(),
        watch["new"]["errors"],
        watch["new"]["requests"],
        took.as_secs_f64(),
        report.failed,
        report.requests,
        after.requests
    );
    Ok(())
}

/// The host's last watch (`<root>/watch.json`).
fn last_watch(h: &Harness) -> anyhow::Result<Value> {
    let path = h.host_root.join("watch.json");
    Ok(serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("cannot read {path}"))?,
    )?)
}

/// The session token from before the JWT rotation: accepted within the grace period, and
/// traded for one signed with the new secret (returned).
fn within_grace(h: &Harness, session: &str, new_jwt: &str) -> anyhow::Result<String> {
    ensure!(
        api_get(h, session)?.0 == 200,
        "a token from before the rotation is refused within the grace period"
    );
    let (status, body) = api_post(h, "/session/refresh", session)?;
    ensure!(status == 200, "POST /session/refresh: {status} {body}");
    let refreshed = serde_json::from_str::<Value>(&body)?["token"]
        .as_str()
        .context("no token")?
        .to_owned();
    verify(&refreshed, new_jwt).context("the refreshed token is not signed with the new secret")?;
    Ok(refreshed)
}

/// A rotation killed (SIGKILL) once its new value is written, while it replaces the
/// containers; `secrets list` calls it unfinished, and running it again finishes it.
fn killed_then_finished(h: &Harness, args: &[&str]) -> anyhow::Result<String> {
    let record = h.host_root.join("secrets/rotations.json");
    let apis = || -> anyhow::Result<usize> {
        Ok(crate::test::install::docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", h.project()),
            "--filter",
            "label=com.docker.compose.service=api",
        ])?
        .split_whitespace()
        .count())
    };
    // The API container an earlier rotation drains is gone first.
    h.settled()?;
    let before = apis()?;
    let mut child = h.t.command(args, &[]).stdin(Stdio::null()).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Polled while the rotation runs: one that ended cannot be killed half-way.
    let mut look = |done: bool, reason: &str| -> anyhow::Result<Wait<()>> {
        ensure!(
            child.try_wait()?.is_none(),
            "the rotation ended before it could be killed"
        );
        Ok(if done {
            Wait::Done(())
        } else {
            Wait::NotYet(reason.to_owned())
        })
    };
    let left = || deadline.saturating_duration_since(Instant::now());
    wait_for(
        "the rotation to record its start",
        left(),
        Duration::from_millis(20),
        || {
            let started = std::fs::read_to_string(&record).is_ok_and(|t| {
                t.split("\"postgres_password\"")
                    .nth(1)
                    .is_some_and(|r| r.contains("\"applied\": false"))
            });
            look(started, "no rotation in progress in the record")
        },
    )?;
    // Killed once the new API container exists: before it serves, so before the role's
    // password changes (a fixed wait could land after that, now that a swap is quick).
    wait_for(
        "the rotation to create its new API container",
        left(),
        Duration::from_millis(10),
        || look(apis()? > before, "no new API container yet"),
    )?;
    child.kill()?;
    child.wait()?;
    // What it had started (compose creating a container) ends on its own.
    std::thread::sleep(Duration::from_secs(3));
    let list = run(h, &h.host_args(&["secrets", "list"]))?;
    ensure!(
        list.lines()
            .any(|l| l.starts_with("postgres_password") && l.contains("unfinished")),
        "secrets list after a killed rotation:\n{list}"
    );
    let finished = run(h, args)?;
    ensure!(
        finished.contains("finishing the rotation of postgres_password"),
        "the second run did not finish the first:\n{finished}"
    );
    eprintln!(
        "xtask: test: a rotation killed half-way is named unfinished and finished by running it again"
    );
    Ok(list + &finished)
}

/// `set` of an undeclared name, of a previous-value file, of an empty value, and of the
/// database password once it is in use: refused, and the directory is unchanged.
fn refusals(h: &Harness, dir: &Utf8PathBuf) -> anyhow::Result<()> {
    let before = snapshot(dir)?;
    for (args, input, expect) in [
        (
            vec!["secrets", "set", "nosuch"],
            "x\n",
            "declares no secret \"nosuch\"",
        ),
        (
            vec!["secrets", "set", "jwt_secret_previous"],
            "x\n",
            "kept by `secrets rotate`",
        ),
        (
            vec!["secrets", "set", "jwt_secret"],
            "",
            "no value for jwt_secret",
        ),
        (
            vec!["secrets", "set", "jwt_secret"],
            "\n",
            "no value for jwt_secret",
        ),
        (
            vec!["secrets", "set", "postgres_password"],
            "x\n",
            "`set` would not change",
        ),
        (
            vec!["secrets", "rotate", "nosuch"],
            "",
            "declares no secret",
        ),
        (
            vec!["secrets", "rotate", "gh_client_secret"],
            "",
            "pipe the new value in",
        ),
    ] {
        let args = h.host_args(&args);
        let out = stdin_output(h, &args, input)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains(expect),
            "xtask {}:\n{err}",
            args.join(" ")
        );
    }
    ensure!(
        snapshot(dir)? == before,
        "a refused secrets command changed the secrets directory"
    );
    eprintln!(
        "xtask: test: secrets set of an undeclared name, a kept file, an empty value and the live database password: refused, nothing written"
    );
    Ok(())
}

/// `secrets set gh_client_secret` on a terminal (a pty from `script`): a prompt, no echo.
fn typed_on_a_terminal(
    h: &Harness,
    dir: &Utf8PathBuf,
    printed: &mut String,
) -> anyhow::Result<String> {
    let value = format!("typed-{}", hitsave_host::kit::random::random_hex(12)?);
    let program = h.t.command(&[], &[]).get_program().to_owned();
    let line = format!(
        "{} {}",
        program.to_string_lossy(),
        h.host_args(&["secrets", "set", "gh_client_secret"])
            .join(" ")
    );
    let mut child =
        h.t.command(&[], &[])
            .get_envs()
            .fold(std::process::Command::new("script"), |mut c, (k, v)| {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
                c
            })
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run script(1)")?;
    // After the prompt has turned the echo off.
    std::thread::sleep(Duration::from_secs(2));
    let mut stdin = child.stdin.take().context("stdin")?;
    writeln!(stdin, "{value}")?;
    let out = child.wait_with_output()?;
    drop(stdin);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && text.contains("(not shown)"),
        "secrets set on a terminal:\n{text}"
    );
    ensure!(!text.contains(&value), "the terminal echoed the secret");
    ensure!(
        read(&dir.join("gh_client_secret"))? == value,
        "secrets set on a terminal did not write the value"
    );
    *printed += &text;
    eprintln!("xtask: test: secrets set on a terminal: prompted, not echoed, written 0600");
    Ok(value)
}

fn snapshot(dir: &Utf8PathBuf) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Utf8PathBuf) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {path}"))?
        .trim_end()
        .to_owned())
}

/// Runs a host command; what it printed on stdout and stderr.
fn run(h: &Harness, args: &[&str]) -> anyhow::Result<String> {
    with_stdin(h, args, "")
}

/// Runs a host command with `input` on its stdin; what it printed on stdout and stderr.
fn with_stdin(h: &Harness, args: &[&str], input: &str) -> anyhow::Result<String> {
    let out = stdin_output(h, args, input)?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "xtask {}:\n{text}", args.join(" "));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

fn stdin_output(h: &Harness, args: &[&str], input: &str) -> anyhow::Result<std::process::Output> {
    eprintln!("xtask: test: xtask {}", args.join(" "));
    let mut child =
        h.t.command(args, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input.as_bytes())?;
    drop(stdin);
    Ok(child.wait_with_output()?)
}

/// The running API container's name (a blue/green replacement changes it).
fn running_api(h: &Harness) -> anyhow::Result<String> {
    let stack = Stack::open(&h.host_root.join("releases").join(h.current()?))?;
    hitsave_host::site::stack::running_container(&stack, "api")
}

/// A session token for `login`, signed as the GitHub sign-in will sign it.
fn sign(login: &str, secret: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": login, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

fn verify(token: &str, secret: &str) -> anyhow::Result<()> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )?;
    Ok(())
}

fn api_get(h: &Harness, token: &str) -> anyhow::Result<(u16, String)> {
    api(h, "GET", "/api_keys", token)
}

fn api_post(h: &Harness, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    api(h, "POST", path, token)
}

/// One request to the API through nginx with a bearer token.
fn api(h: &Harness, method: &str, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", h.port)).context("nginx")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        App::Api.host(DOMAIN)
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
