//! The watch after a cutover: for a while after a new release starts serving, its requests
//! are compared with what the release before it served in the minutes before the cutover,
//! from nginx's JSON access log (one line per request: time, status, time taken, the release
//! that served it; read with `docker logs`). A new release whose 5xx rate is past the old one's
//! by more than the allowed points, or whose p99 is past the allowed factor of the old one's,
//! has failed: the caller brings the previous release back (it is on disk: no download, no
//! migration). The 5xx rate is judged as soon as there are enough requests, so a bad release
//! is rolled back within seconds; the p99 at the end of the window. Too little traffic to
//! judge passes, and says so. `<root>/watch.json` keeps the last watch's figures for `status`.
//! A secret rotation keeps the release: its new containers' requests are told from the old
//! ones' by the upstream address nginx logged.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use crate::kit::ui::Ui;
use crate::site::app::{App, Service};
use crate::site::host::Host;
use crate::site::settings::WatchSettings;
use crate::site::stack::{ReleaseEnv, Stack};

/// Fewer requests than this in the window are too few to judge.
pub const MIN_REQUESTS: u64 = 20;
/// How far before the cutover the old release's figures are taken from.
pub const BASELINE: Duration = Duration::from_secs(300);
/// A p99 under this many milliseconds never fails a release (noise on an idle site).
pub const P99_FLOOR_MS: f64 = 250.0;

/// Which requests are the new ones'.
pub enum New {
    /// Served under these release ids (an install, a rollback).
    Releases(BTreeSet<String>),
    /// Served by the containers at these addresses, `ip:port` (a secret rotation).
    Upstreams(BTreeSet<String>),
}

impl New {
    fn has(&self, line: &Line) -> bool {
        match self {
            New::Releases(ids) => ids.contains(&line.release),
            // nginx logs every address it tried, comma-separated, when it retried.
            New::Upstreams(addresses) => line
                .upstream
                .split(", ")
                .any(|a| addresses.contains(a.trim())),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            New::Releases(set) | New::Upstreams(set) => set.is_empty(),
        }
    }
}

/// Requests, their 5xx and their p99.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    pub p99_ms: f64,
}

impl Figures {
    fn of(mut times: Vec<f64>, errors: u64) -> Figures {
        times.sort_by(f64::total_cmp);
        let p99 = match times.len() {
            0 => 0.0,
            n => times[((n as f64 - 1.0) * 0.99).round() as usize],
        };
        Figures {
            requests: times.len() as u64,
            errors,
            p99_ms: p99 * 1000.0,
        }
    }

    /// The 5xx rate in percent.
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.requests as f64
        }
    }
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Passed,
    /// Too few requests to judge: passed.
    NoTraffic,
    Failed,
}

/// One watch: what was compared and how it ended (`<root>/watch.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub release: String,
    pub previous: String,
    pub started: String,
    /// The window asked for, and how long the watch ran (less when it failed early).
    pub window_seconds: u64,
    pub watched_seconds: f64,
    pub new: Figures,
    pub old: Figures,
    pub verdict: Verdict,
    pub reason: String,
}

impl Report {
    /// One line for messages and `status`.
    pub fn summary(&self) -> String {
        format!(
            "watch of {} ({:.0} s of {} s): {}; new {} requests, {:.1} % 5xx, p99 {:.0} ms; before the cutover {} requests, {:.1} % 5xx, p99 {:.0} ms",
            self.release,
            self.watched_seconds,
            self.window_seconds,
            self.reason,
            self.new.requests,
            self.new.error_percent(),
            self.new.p99_ms,
            self.old.requests,
            self.old.error_percent(),
            self.old.p99_ms
        )
    }

    /// The last watch on this host, if any.
    pub fn last(host: &Host) -> Option<Report> {
        serde_json::from_value(host.last_watch()?).ok()
    }
}

fn file(host: &Host) -> Utf8PathBuf {
    host.root.join("watch.json")
}

/// Now, in seconds since the epoch (nginx's `$msec`).
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Watches `stack` (serving since `cutover`, seconds since the epoch) against `previous`'s
/// stack for `settings.seconds`, and records the report.
pub fn watch(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    previous: &Stack,
    cutover: f64,
    settings: &WatchSettings,
) -> anyhow::Result<Report> {
    let new = New::Releases(changed_releases(&stack.env, &previous.env));
    let previous = previous.env.release()?.to_string();
    watch_new(ui, host, stack, previous, &new, cutover, settings)
}

/// Watches the containers at `upstreams` that a rotation of `secret` started (serving since
/// `cutover`) against the ones before them, and records the report.
pub fn watch_rotation(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    secret: &str,
    upstreams: BTreeSet<String>,
    cutover: f64,
    settings: &WatchSettings,
) -> anyhow::Result<Report> {
    let previous = format!("{} before {secret} was rotated", stack.env.release()?);
    let new = New::Upstreams(upstreams);
    watch_new(ui, host, stack, previous, &new, cutover, settings)
}

fn watch_new(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    previous: String,
    new: &New,
    cutover: f64,
    settings: &WatchSettings,
) -> anyhow::Result<Report> {
    let mut report = Report {
        release: stack.env.release()?.to_string(),
        previous,
        started: crate::kit::time::now_rfc3339(),
        window_seconds: settings.seconds,
        watched_seconds: 0.0,
        new: Figures::default(),
        old: Figures::default(),
        verdict: Verdict::Passed,
        reason: String::new(),
    };
    if new.is_empty() {
        report.reason = "no app changed, so nothing new serves: passed".into();
        return record(host, report);
    }
    ui.info(&format!(
        "watching release {} for {} s: 5xx at most {} points over the old rate, p99 at most {}x the old one",
        report.release, settings.seconds, settings.max_5xx_points, settings.p99_factor
    ));
    let nginx = crate::site::stack::running_container(stack, Service::Nginx.name())?;
    report.old = figures(
        &nginx,
        cutover - BASELINE.as_secs_f64(),
        Some(cutover),
        None,
    )?;
    let started = Instant::now();
    let window = Duration::from_secs(settings.seconds);
    loop {
        report.new = figures(&nginx, cutover, None, Some(new))?;
        report.watched_seconds = started.elapsed().as_secs_f64();
        if let Some(reason) = judge(&report, settings, started.elapsed() >= window) {
            report.verdict = reason.0;
            report.reason = reason.1;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    record(host, report)
}

/// The verdict once there is one: the 5xx rate as soon as there are enough requests; the
/// p99 and too little traffic at the end of the window.
fn judge(report: &Report, settings: &WatchSettings, over: bool) -> Option<(Verdict, String)> {
    let (new, old) = (&report.new, &report.old);
    let points = new.error_percent() - old.error_percent();
    if new.requests >= MIN_REQUESTS && points > settings.max_5xx_points {
        return Some((
            Verdict::Failed,
            format!(
                "{:.1} % of its requests were 5xx, {points:.1} points over the release before it (allowed: {})",
                new.error_percent(),
                settings.max_5xx_points
            ),
        ));
    }
    if !over {
        return None;
    }
    if new.requests < MIN_REQUESTS {
        return Some((
            Verdict::NoTraffic,
            format!(
                "{} requests in the window, fewer than {MIN_REQUESTS}: too little traffic to judge, passed",
                new.requests
            ),
        ));
    }
    let limit = (old.p99_ms * settings.p99_factor).max(P99_FLOOR_MS);
    if new.p99_ms > limit {
        return Some((
            Verdict::Failed,
            format!(
                "its p99 was {:.0} ms, over {limit:.0} ms ({}x the release before it, at least {P99_FLOOR_MS} ms)",
                new.p99_ms, settings.p99_factor
            ),
        ));
    }
    Some((Verdict::Passed, "passed".into()))
}

fn record(host: &Host, report: Report) -> anyhow::Result<Report> {
    crate::kit::files::replace_private(&file(host), &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// The release ids the new stack's apps report that the previous stack's did not: requests
/// served under them are the new release's.
fn changed_releases(new: &ReleaseEnv, old: &ReleaseEnv) -> BTreeSet<String> {
    App::ALL
        .iter()
        .filter_map(|app| {
            let id = new.app_release(*app).ok()?.0.to_owned();
            (old.app_release(*app).ok().map(|r| r.0) != Some(id.as_str())).then_some(id)
        })
        .collect()
}

/// One request as nginx logs it (deploy/nginx's `hitsave` format).
#[derive(Deserialize)]
struct Line {
    msec: f64,
    status: u16,
    request_time: f64,
    release: String,
    #[serde(default)]
    upstream: String,
    /// Set on the host's own checks, which are not traffic.
    #[serde(default)]
    check: String,
}

/// The figures of the requests logged from `since` (until `until`), of the `new` ones only
/// when given.
fn figures(
    nginx: &str,
    since: f64,
    until: Option<f64>,
    new: Option<&New>,
) -> anyhow::Result<Figures> {
    let out = duct::cmd!("docker", "logs", "--since", format!("{since:.3}"), nginx)
        .stdin_null()
        .stderr_null()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot read nginx's access log")?;
    let mut times = Vec::new();
    let mut errors = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(line) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        if line.msec < since
            || !line.check.is_empty()
            || until.is_some_and(|until| line.msec >= until)
            || new.is_some_and(|new| !new.has(&line))
        {
            continue;
        }
        times.push(line.request_time);
        if line.status >= 500 {
            errors += 1;
        }
    }
    Ok(Figures::of(times, errors))
}

/// When and from what the last cutover went (`<root>/cutover.json`), for a watch that runs
/// in a later step (CodeDeploy's ValidateService after ApplicationStart's install).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cutover {
    pub release: String,
    pub previous: Option<String>,
    /// Seconds since the epoch, just before the swap began.
    pub at: f64,
}

impl Cutover {
    pub fn write(host: &Host, cutover: &Cutover) -> anyhow::Result<()> {
        crate::kit::files::replace_private(
            &host.root.join("cutover.json"),
            &serde_json::to_vec(cutover)?,
        )
    }

    pub fn read(host: &Host) -> Option<Cutover> {
        serde_json::from_slice(&std::fs::read(host.root.join("cutover.json")).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(new: (u64, u64, f64), old: (u64, u64, f64)) -> Report {
        let f = |(requests, errors, p99_ms)| Figures {
            requests,
            errors,
            p99_ms,
        };
        Report {
            release: "r".into(),
            previous: "p".into(),
            started: String::new(),
            window_seconds: 60,
            watched_seconds: 0.0,
            new: f(new),
            old: f(old),
            verdict: Verdict::Passed,
            reason: String::new(),
        }
    }

    #[test]
    fn verdicts() {
        let s = WatchSettings::default();
        // A fifth of the requests failing fails at once, before the window is over.
        let (v, why) = judge(&report((40, 8, 10.0), (500, 0, 10.0)), &s, false).unwrap();
        assert_eq!(v, Verdict::Failed);
        assert!(why.contains("20.0 % of its requests were 5xx"), "{why}");
        // As many errors as before is no regression.
        assert!(judge(&report((100, 3, 10.0), (100, 3, 10.0)), &s, false).is_none());
        assert_eq!(
            judge(&report((100, 3, 10.0), (100, 3, 10.0)), &s, true)
                .unwrap()
                .0,
            Verdict::Passed
        );
        // Too few requests: passed at the end, never failed on 5xx.
        let (v, why) = judge(&report((5, 5, 10.0), (0, 0, 0.0)), &s, true).unwrap();
        assert_eq!(v, Verdict::NoTraffic);
        assert!(why.contains("too little traffic"), "{why}");
        // Slow: judged at the end, with a floor under tiny p99s.
        assert!(judge(&report((100, 0, 900.0), (100, 0, 100.0)), &s, false).is_none());
        assert_eq!(
            judge(&report((100, 0, 900.0), (100, 0, 100.0)), &s, true)
                .unwrap()
                .0,
            Verdict::Failed
        );
        assert_eq!(
            judge(&report((100, 0, 200.0), (100, 0, 5.0)), &s, true)
                .unwrap()
                .0,
            Verdict::Passed
        );
    }

    #[test]
    fn p99_of_requests() {
        let f = Figures::of((1..=100).map(|i| i as f64 / 1000.0).collect(), 1);
        assert_eq!(f.requests, 100);
        assert!((f.p99_ms - 99.0).abs() < 1e-6, "{}", f.p99_ms);
        assert_eq!(f.error_percent(), 1.0);
    }
}
