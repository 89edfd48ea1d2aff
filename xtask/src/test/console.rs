//! Day-two commands on the running stack (part of the install suite, after blue/green swaps
//! renamed the app containers): `logs` and `exec` reach the current release's containers,
//! refuse a service it does not have, and `maintenance on|off` under load answers only 2xx or
//! the maintenance page (503 with Retry-After; JSON on the API's host) with no errors; a
//! site nginx refuses fails its reload, and the old one serves on.

use std::time::Duration;

use anyhow::{Context, ensure};

use crate::test::install::{DOMAIN, Harness};
use crate::test::load::Load;
use hitsave_host::site::app::App;
use hitsave_host::site::stack::{ReleaseEnv, Stack};

pub fn scenario(h: &Harness) -> anyhow::Result<()> {
    let current = h.current()?;
    let stack = Stack::open(&h.host_root.join("releases").join(&current))?;
    // The app whose container a blue/green swap renamed (not `-1` any more), if one did.
    let (app, name) = [App::Web, App::Api]
        .into_iter()
        .map(|a| {
            Ok((
                a,
                hitsave_host::site::stack::running_container(&stack, a.service())?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .min_by_key(|(_, name)| name.ends_with("-1"))
        .context("no app container")?;
    let service = app.service();
    let logs = h.ok(&h.host_args(&["logs", service, "--tail", "5"]))?;
    let logs = String::from_utf8_lossy(&logs);
    // Compose prefixes each line with the container's service and index (`web-6 | ...`), and
    // begins it with an erase-line code even with --ansi never (compose 2.x's log printer).
    let short = name
        .strip_prefix(&format!("{}-", h.project()))
        .unwrap_or(&name);
    ensure!(
        logs.lines().any(|l| l
            .trim_start_matches("\u{1b}[2K")
            .starts_with(&format!("{short} "))),
        "xtask logs {service} shows no line of {name}:\n{logs}"
    );
    let env = ReleaseEnv::read(&stack.release_dir.join("release.env"))?;
    let mut args = h.host_args(&["exec", service]);
    args.extend(["--", "sh", "-c", "echo $HITSAVE_RELEASE"]);
    let out = h.ok(&args)?;
    ensure!(
        String::from_utf8_lossy(&out).trim() == env.app_release(app)?.0,
        "xtask exec {service} ran elsewhere: {}",
        String::from_utf8_lossy(&out)
    );
    for (args, command) in [
        (vec!["logs", "nosuch"], vec![]),
        (vec!["exec", "nosuch"], vec!["--", "true"]),
    ] {
        // --root before the `--` that starts exec's command.
        let mut args = h.host_args(&args);
        args.extend(command);
        let err = h.t.fails(&args, &[])?;
        ensure!(
            err.contains("has no service \"nosuch\""),
            "{args:?}:\n{err}"
        );
    }
    eprintln!(
        "xtask: test: logs and exec reach {name}, the current release's {service} after the swaps"
    );

    // Maintenance under load: the page or JSON, then serving again; no errors.
    let load = Load::during_maintenance(h.port, DOMAIN, 100, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    h.ok(&h.host_args(&["maintenance", "on", "--message", "Back at <5>"]))?;
    std::thread::sleep(Duration::from_secs(3));
    let api_answer = get(h.port, &App::Api.host(DOMAIN), "/health")?;
    let web_answer = get(h.port, DOMAIN, "/")?;
    h.ok(&h.host_args(&["maintenance", "off"]))?;
    std::thread::sleep(Duration::from_secs(3));
    let report = load.stop();
    ensure!(
        api_answer.starts_with("HTTP/1.1 503")
            && api_answer.contains("Retry-After: 30")
            && api_answer.contains("application/json")
            && api_answer.contains("\"message\":\"Back at <5>\""),
        "the API during maintenance:\n{api_answer}"
    );
    ensure!(
        web_answer.starts_with("HTTP/1.1 503") && web_answer.contains("Back at &lt;5&gt;"),
        "the site during maintenance:\n{web_answer}"
    );
    ensure!(
        report.failed == 0 && report.maintenance > 0 && report.requests > report.maintenance,
        "maintenance under load: {} of {} failed ({:?}), {} maintenance answers",
        report.failed,
        report.requests,
        report.failures,
        report.maintenance
    );
    h.expect_serving(&current)?;
    eprintln!(
        "xtask: test: maintenance on and off under load: {} requests, {} the maintenance answer (page, or JSON for the API), 0 errors",
        report.requests, report.maintenance
    );
    refused_reload(h, &stack, &current)
}

/// A site nginx's master refuses (it keeps its old workers): the reload says so within
/// seconds instead of returning as if it took, and the old site serves on.
fn refused_reload(h: &Harness, stack: &Stack, current: &str) -> anyhow::Result<()> {
    let broken = h.host_root.join("nginx").join("zz-broken.conf");
    std::fs::write(&broken, "this_is_not_a_directive;\n")?;
    let started = std::time::Instant::now();
    let refused = hitsave_host::site::swap::reload_nginx(stack);
    let took = started.elapsed();
    std::fs::remove_file(&broken)?;
    let err = format!(
        "{:#}",
        refused
            .err()
            .context("nginx's reload of a site it cannot parse succeeded")?
    );
    ensure!(
        err.contains("its master refused it")
            && err.contains("this_is_not_a_directive")
            && took < Duration::from_secs(8),
        "a refused reload (after {took:?}): {err}"
    );
    h.expect_serving(current)?;
    hitsave_host::site::swap::reload_nginx(stack)?;
    h.expect_serving(current)?;
    eprintln!(
        "xtask: test: a site nginx refuses fails its reload in {:.1} s, naming the refusal; the old site serves on",
        took.as_secs_f64()
    );
    Ok(())
}

/// One GET through nginx; the whole answer.
fn get(port: u16, host: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).context("nginx")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}
