//! The watch after a cutover (part of the install suite), on the install suite's host serving
//! v2 (previous: v1):
//!
//! - `bad`, whose API answers 500 to every fifth `/health`, installed under steady load with a
//!   30 s window: it fails its watch and v2 is brought back within the window (the window, the
//!   5xx seen and the time to roll back are printed);
//! - v1, healthy, installed under the same load: it passes the window, nothing rolled back;
//! - v2 again with no traffic: it passes, saying there was too little traffic to judge;
//! - a rollback to `bad` under load: watched like an install, it goes back to v2.

use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::Value;

use crate::test::install::{DOMAIN, Harness};
use crate::test::load::Load;

/// Requests per second during the watched installs.
const RATE: u32 = 40;

/// The API change that makes `bad`: every fifth `/health` answers 500 once it starts.
pub(crate) fn break_health(dir: &camino::Utf8Path) -> anyhow::Result<()> {
    let path = dir.join("api/src/routes/health.rs");
    let text = std::fs::read_to_string(&path)?;
    let broken = text
        .replace(
            "pub async fn health() -> Json<serde_json::Value> {\n    Json(json!({",
            "pub async fn health() -> Response {\n    static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);\n    if SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 5 == 4 {\n        return StatusCode::INTERNAL_SERVER_ERROR.into_response();\n    }\n    Json(json!({",
        )
        .replace(
            "        \"release\": BUILD.release,\n    }))\n}\n\n/// 200 only",
            "        \"release\": BUILD.release,\n    }))\n    .into_response()\n}\n\n/// 200 only",
        );
    ensure!(
        broken != text && broken.contains("into_response()\n}\n\n/// 200 only"),
        "api/src/routes/health.rs changed: the test's breakage no longer applies"
    );
    std::fs::write(&path, broken)?;
    Ok(())
}

/// `env` sends the installs' notifications to the test's webhook (test/notify.rs checks them).
pub(crate) fn scenario(
    h: &Harness,
    v1: &str,
    v2: &str,
    bad: &str,
    env: &[(&'static str, String)],
) -> anyhow::Result<()> {
    // The bad release, under load: rolled back by the watch.
    let load = Load::start(h.port, DOMAIN, RATE, Duration::from_secs(300));
    let started = Instant::now();
    let out = h.install_with(bad, &["--watch", "30"], env);
    let took = started.elapsed();
    let report = load.stop();
    let out = out?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("failed its watch")
            && err.contains(&format!("release {v2} was brought back")),
        "installing a release that answers 500 to a fifth of /health:\n{err}"
    );
    h.expect_serving(v2)?;
    ensure!(h.current()? == v2, "current is not v2 after the watch");
    ensure!(
        h.last_history()?["outcome"] == "rolled-back",
        "history: {}",
        h.last_history()?
    );
    let watch = last_watch(h)?;
    ensure!(
        watch["verdict"] == "failed" && watch["watched_seconds"].as_f64().unwrap_or(99.0) < 30.0,
        "watch.json: {watch}"
    );
    let rolled_back_in = err
        .split("was brought back in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("?");
    eprintln!(
        "xtask: test: watch: a release answering 500 to a fifth of /health was rolled back: window 30 s, verdict after {:.1} s with {} of {} of its requests 5xx, v2 back in {rolled_back_in} s (install {:.1} s; {} of {} load requests failed, the bad release's 500s)",
        watch["watched_seconds"].as_f64().unwrap_or_default(),
        watch["new"]["errors"],
        watch["new"]["requests"],
        took.as_secs_f64(),
        report.failed,
        report.requests
    );

    // A healthy release under the same load passes the window.
    let load = Load::start(h.port, DOMAIN, RATE, Duration::from_secs(300));
    let out = h.install_with(v1, &["--watch", "15"], env);
    let report = load.stop();
    let out = out?;
    let err = String::from_utf8_lossy(&out.stderr);
    let watch = last_watch(h)?;
    ensure!(
        out.status.success() && watch["verdict"] == "passed" && h.current()? == v1,
        "a healthy release under load:\n{err}\n{watch}"
    );
    ensure!(
        report.failed == 0,
        "{} of {} requests failed while a healthy release was watched: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    eprintln!(
        "xtask: test: watch: a healthy release under the same load passed its 15 s window ({} requests, 0 rolled back; {} of {} load requests failed)",
        watch["new"]["requests"], report.failed, report.requests
    );

    // No traffic: passed, and said so.
    let out = h.install_with(v2, &["--watch", "3"], env)?;
    let err = String::from_utf8_lossy(&out.stderr);
    let watch = last_watch(h)?;
    ensure!(
        out.status.success()
            && watch["verdict"] == "no-traffic"
            && err.contains("too little traffic to judge"),
        "a release with no traffic:\n{err}"
    );
    h.expect_serving(v2)?;
    let status = String::from_utf8_lossy(&h.ok(&h.host_args(&["status"]))?).into_owned();
    ensure!(
        status.contains("watch:     watch of") && status.contains(v2),
        "status shows no watch:\n{status}"
    );
    eprintln!(
        "xtask: test: watch: a release with no traffic passed (\"too little traffic to judge\"); status shows the last watch"
    );

    // A rollback is a cutover too: back to `bad` under load, it goes forward to v2 again.
    let load = Load::start(h.port, DOMAIN, RATE, Duration::from_secs(300));
    let err = h.t.fails(
        &h.host_args(&["rollback", "--to", bad, "--watch", "20"]),
        env,
    );
    load.stop();
    let err = err?;
    ensure!(
        err.contains("failed its watch") && err.contains(&format!("release {v2} was brought back")),
        "a rollback to a release that fails its watch:\n{err}"
    );
    h.expect_serving(v2)?;
    ensure!(
        h.current()? == v2 && h.last_history()?["outcome"] == "rolled-back",
        "after the watched rollback: current {}, history {}",
        h.current()?,
        h.last_history()?
    );
    eprintln!(
        "xtask: test: watch: a rollback to the bad release failed its watch and v2 serves again"
    );
    Ok(())
}

fn last_watch(h: &Harness) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(
        h.host_root.join("watch.json"),
    )?)?)
}
