//! `cargo xtask bench deploy`: requests dropped while a new release is installed, blue/green
//! against in-place, on this machine with the real stack.
//!
//! Releases are built on top of HEAD, `--rounds` times (3) an API change, a web change and a change
//! to both, and one more API change, and installed one after the other over v1 (after four API
//! changes installed and not measured, so that every measured install prunes a release, as installs
//! on a long-lived host do), once per strategy: the rounds while a steady load (250 requests per
//! second, half `GET /health` on the API, half the web app's landing page) runs against nginx on
//! 127.0.0.1, the last with nothing else running. The measured installs are the release's own host
//! program's (its `xtask` artifact, fetched as the CodeDeploy hooks fetch it), as on a host.
//! Steady-state latency is measured without a deploy: 20 s first, then the 1.5 s before each
//! install under load (the load starts 2 s before it, once the last swap's old containers are
//! gone), pooled, so that it drifts with the machine as the swaps do on a shared VM. For each
//! install, its steps (`install --timings`); then one table: strategy, change, requests, failed,
//! p50/p99/max latency, install wall time (median and slowest), and the p99 of the requests that
//! started during the swaps of that kind, pooled (one swap is some 300 requests, whose p99 would be
//! its third slowest), with its ratio to steady state, and the p99 of those that started in the 2 s
//! after each install returned (the old containers are stopped then, in the background: no target,
//! but users wait behind it too); and, from nginx's access log, the p99 of the same requests in
//! nginx and in the app (`served`); and, from `/proc/stat`, how many CPUs were busy in those
//! windows and how much time the hypervisor stole from the vCPUs, and from `/proc/pressure/io`
//! how long tasks waited on the disk (`cpu`; `--trace` puts each steal burst and disk wait on the
//! install's timeline).
//!
//! With `--against REV`, xtask built from REV (B) installs every other round beside this build of
//! xtask (A; both debug builds), in the order A B B A (`--rounds` each, and a quiet API change
//! each), and a last table gives B's install time and p99s over A's: two versions of the install
//! compared under the same drift of the machine (bench/against.rs).
//!
//! Targets (blue/green; in-place is the peer, measured in the same run): nothing dropped in any
//! deploy, p99 during each kind of swap within 1.3x of steady state, an API-only install within 3 s
//! with nothing else running and within 4 s under the load (each). Exits non-zero when one is
//! missed.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use camino::Utf8Path;

use crate::bench::against;
use crate::bench::cpu::{self, Sampler, Samples};
use crate::bench::served::{self, Served, Window};
use crate::images;
use crate::test::install::{DOMAIN, Harness, commit_and_release, docker, release, replace};
use crate::test::load::{Load, Report};
use crate::test::release::{Tester, checkout, git};
use hitsave_host::site::swap::Strategy;

const RATE: u32 = 250;
/// Targets: an API-only install's wall time, quiet and under load; p99 during a swap over
/// steady state's.
const API_QUIET: Duration = Duration::from_secs(3);
const API_LOADED: Duration = Duration::from_secs(4);
const P99_RATIO: f64 = 1.3;
/// No deploy here takes this long; the load stops by itself if one does.
const LIMIT: Duration = Duration::from_secs(300);

struct Row {
    strategy: &'static str,
    change: &'static str,
    /// The build that installed (`--against`): "A", "B", or "" when there is one.
    program: &'static str,
    /// The load's requests, when the installs ran under load (all rounds').
    report: Option<Report>,
    /// The requests that started while containers were being swapped: from "swapping the
    /// stack" until the install ended (all rounds').
    swap: Option<Report>,
    /// When those requests started (the steady row: when its requests did), for nginx's log.
    windows: Vec<Window>,
    /// The requests that started in the `AFTER` after the install returned, while the old
    /// containers are stopped in the background (all rounds').
    after: Option<Report>,
    installs: Vec<Duration>,
}

impl Row {
    fn new(strategy: &'static str, change: &'static str, program: &'static str) -> Row {
        Row {
            strategy,
            change,
            program,
            report: None,
            swap: None,
            windows: Vec::new(),
            after: None,
            installs: Vec::new(),
        }
    }

    /// The strategy, and the build when two are compared.
    fn name(&self) -> String {
        if self.program.is_empty() {
            self.strategy.to_owned()
        } else {
            format!("{} {}", self.strategy, self.program)
        }
    }

    /// Adds one more install of this row's kind.
    fn add(&mut self, m: Measured) {
        self.report = pool(self.report.take(), m.report);
        self.swap = pool(self.swap.take(), m.swap);
        self.windows.extend(m.swap_window);
        self.after = pool(self.after.take(), m.after);
        self.installs.push(m.took);
    }

    /// Steady state measured once more, just before an install.
    fn add_steady(&mut self, lead: Report, window: Window) {
        self.report = pool(self.report.take(), Some(lead));
        self.windows.push(window);
    }

    /// The median install and the slowest.
    fn install(&self) -> Option<(Duration, Duration)> {
        let mut sorted = self.installs.clone();
        sorted.sort();
        Some((*sorted.get(sorted.len() / 2)?, *sorted.last()?))
    }
}

/// Both reports' requests as one, or the one there is.
fn pool(a: Option<Report>, b: Option<Report>) -> Option<Report> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Report::merge([a, b])),
        (a, b) => a.or(b),
    }
}

/// When an install's steps happened: each line of its log with the time it was read.
struct Timed {
    swap_started: Instant,
    ended: Instant,
    log: Vec<(Instant, String)>,
    /// With `--trace`, every process's CPU time when the swap began and when the install ended
    /// (reading them costs a few ms of CPU: not in the measured runs).
    cpu: Option<(cpu::Processes, cpu::Processes)>,
}

/// Runs an install, keeping its log with the time of each line, and notes when the swap began
/// and when it ended.
fn install_timed(
    h: &Harness,
    program: &Tester,
    id: &str,
    strategy: &str,
    trace: bool,
) -> anyhow::Result<Timed> {
    use std::io::BufRead;
    let args = h.install_args(id, &["--strategy", strategy, "--timings"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = program
        .command(&args, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run xtask install")?;
    let mut swap_started = None;
    let mut at_swap = None;
    let mut log = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().context("no stderr")?).lines() {
        let line = line?;
        // The log line, not the timings table at the end, which names the step again.
        if swap_started.is_none() && line.starts_with("xtask: swapping the stack") {
            swap_started = Some(Instant::now());
            at_swap = trace.then(cpu::processes);
        }
        log.push((Instant::now(), line));
    }
    let status = child.wait()?;
    let ended = Instant::now();
    let at_end = trace.then(cpu::processes);
    ensure!(
        status.success(),
        "installing {id} ({strategy}) failed:\n{}",
        {
            let lines: Vec<&str> = log.iter().map(|(_, l)| l.as_str()).collect();
            lines.join("\n")
        }
    );
    Ok(Timed {
        swap_started: swap_started.context("the install never reached the swap")?,
        ended,
        log,
        cpu: at_swap.zip(at_end),
    })
}

/// The install's log, the slowest requests and the slowest of the swap on one timeline, in ms
/// since `zero`.
fn print_trace(zero: Instant, timed: &Timed, report: &Report, cpu: &Samples) {
    let at = |t: Instant| t.saturating_duration_since(zero).as_secs_f64() * 1000.0;
    let mut lines: Vec<(f64, String)> = timed
        .log
        .iter()
        .map(|(t, l)| (at(*t), format!("install: {l}")))
        .collect();
    let mut slowest = report.slowest(20);
    slowest.extend(report.slowest_between(20, Some((timed.swap_started, timed.ended))));
    slowest.sort_by_key(|(start, _, _)| *start);
    slowest.dedup();
    for (start, latency, app) in slowest {
        lines.push((
            at(start),
            format!("request: {app} {:.1} ms", latency.as_secs_f64() * 1000.0),
        ));
    }
    for (at_, ms) in cpu.steal_bursts(zero, timed.ended) {
        lines.push((at(at_), format!("steal: {ms:.0} ms taken from the vCPUs")));
    }
    for (at_, ms) in cpu.io_stalls(zero, timed.ended) {
        lines.push((
            at(at_),
            format!("io: tasks waited {ms:.0} ms for the disk, until here"),
        ));
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (ms, line) in lines {
        println!("  {ms:>9.0} ms  {line}");
    }
}

/// The changes the bench installs, in order: (kind, release, under load, which program
/// installs it).
type Changes = Vec<(&'static str, String, bool, usize)>;

/// v1 and the warm-up's API changes, then `rounds` rounds of an API, a web and a both change
/// for each of `programs` (alternating: `against::for_round`), then a quiet API change for
/// each, each released from the twin checkout on top of the one before.
fn releases(
    h: &Harness,
    twin: &Utf8Path,
    rounds: u32,
    programs: usize,
) -> anyhow::Result<(String, Vec<String>, Changes)> {
    let v1 = release(h, twin)?;
    let mut warm = Vec::new();
    for n in 0..WARM_UP {
        // Markers no round uses (they count up from 11), so that no measured release is
        // one the host already built.
        warm.push(commit_and_release(h, twin, "bench: warm-up", |d| {
            api_change(d, 1000 + n)
        })?);
    }
    let mut changes = Vec::new();
    let all = rounds * u32::try_from(programs)?;
    for round in 1..=all {
        let n = 10 * round;
        let api = commit_and_release(h, twin, "bench: api change", |d| api_change(d, n + 1))?;
        let web = commit_and_release(h, twin, "bench: web change", |d| web_change(d, n + 1))?;
        let both = commit_and_release(h, twin, "bench: api and web change", |d| {
            api_change(d, n + 2)?;
            web_change(d, n + 2)
        })?;
        let p = against::for_round(round - 1, programs);
        changes.extend([
            ("api", api, true, p),
            ("web", web, true, p),
            ("both", both, true, p),
        ]);
    }
    for p in 0..programs {
        let n = 3 + u32::try_from(p)?;
        let quiet = commit_and_release(h, twin, "bench: api change, quiet", |d| api_change(d, n))?;
        changes.push(("api quiet", quiet, false, p));
    }
    Ok((v1, warm, changes))
}

/// Installs before the measured ones, so that each measured install finds the host as it is
/// after many (a release to prune, as every install on a long-lived host has) and no round
/// is spared that work: the host keeps `KEEP_RELEASES`.
const WARM_UP: u32 = hitsave_host::release::install::KEEP_RELEASES as u32 - 1;

pub fn run(
    root: &Utf8Path,
    trace: bool,
    only: Option<Strategy>,
    rounds: u32,
    against: Option<&str>,
) -> anyhow::Result<()> {
    // B first: minutes of building, before any stack runs.
    let b = against.map(|rev| against::build(root, rev)).transpose()?;
    let count = 1 + usize::from(b.is_some());
    let _dockerd = images::ready_for_stacks(root)?;
    let (h, cleanup) = Harness::fresh(root, "bench-deploy")?;

    let head = git(root, &["rev-parse", "HEAD"])?;
    let twin = checkout(
        root,
        &xtask::checkout::target_dir(root).join("xtask/twins/b"),
        &head,
    )?;
    let built = releases(&h, &twin, rounds, count);
    git(&twin, &["reset", "--quiet", "--hard", &head])?;
    let (v1, warm, changes) = built?;

    let base = |h: &Harness| -> anyhow::Result<()> {
        let out = h.install(&v1, &["--strategy", "in-place"])?;
        ensure!(
            out.status.success(),
            "installing v1 failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        h.expect_serving(&v1)
    };
    base(&h)?;
    // What a host runs (and the CodeDeploy hooks run): the release's own program; or the two
    // builds of xtask compared.
    let programs = match b {
        Some(b) => vec![against::this(root)?, b],
        None => vec![against::released(&h, &v1)?],
    };
    let testers: Vec<Tester> = programs
        .iter()
        .map(|p| h.t.with_exe(p.exe.clone()))
        .collect();
    eprintln!("xtask: bench: installing with {}", programs[0].describe);
    eprintln!(
        "xtask: bench: {} installs not measured, so that each measured one prunes a release",
        warm.len()
    );
    for id in &warm {
        // Blue/green: the install's default.
        h.install_ok(id)?;
        h.settled()?;
    }
    base(&h)?;
    let sampler = Sampler::start();
    // As long as a deploy's load runs, so that both p99s rest on as many requests.
    let steady = Duration::from_secs(20);
    eprintln!(
        "xtask: bench: steady state, {} s at {RATE} requests/s",
        steady.as_secs()
    );
    let load = Load::start(h.port, DOMAIN, RATE, steady);
    let from = Instant::now();
    let at_start = trace.then(cpu::processes);
    std::thread::sleep(steady);
    if let Some(before) = at_start {
        let took = from.elapsed();
        print_cpu_by_process("steady state", took, &before, &cpu::processes());
    }
    let mut rows = vec![Row {
        report: Some(load.stop()),
        windows: vec![served::window(from, Instant::now())],
        ..Row::new("steady", "none", "")
    }];

    for (strategy, flag, which) in [
        ("blue/green", "blue-green", Strategy::BlueGreen),
        ("in-place", "in-place", Strategy::InPlace),
    ] {
        if only.is_some_and(|o| o != which) {
            continue;
        }
        if h.current()? != v1 {
            base(&h)?;
        }
        for (change, id, loaded, p) in &changes {
            let traced = trace.then_some(&sampler);
            let mut measured = install_under_load(&h, &testers[*p], id, flag, *loaded, traced)?;
            if let Some((lead, window)) = measured.lead.take() {
                rows[0].add_steady(lead, window);
            }
            let program = programs[*p].label;
            let at = rows
                .iter()
                .position(|r| r.strategy == strategy && r.change == *change && r.program == program)
                .unwrap_or_else(|| {
                    rows.push(Row::new(strategy, change, program));
                    rows.len() - 1
                });
            rows[at].add(measured);
        }
    }
    // A build's row beside the other's of the same kind.
    rows[1..].sort_by_key(|r| {
        (
            r.strategy != "blue/green",
            ["api", "web", "both", "api quiet"]
                .iter()
                .position(|c| *c == r.change),
            r.program,
        )
    });
    let cpu = sampler.samples();
    drop(sampler);
    let served = nginx_log(&h);
    drop(cleanup);
    std::fs::remove_dir_all(&h.work)?;

    if programs.len() > 1 {
        for p in &programs {
            println!("{}: {}", p.label, p.describe);
        }
    } else {
        println!("installed by {}", programs[0].describe);
    }
    print_table(&rows);
    print_against(&rows);
    print_where(&rows, &served);
    print_cpu(&rows, &cpu);
    super::finish(missed(&rows))
}

/// One install, measured.
struct Measured {
    /// The load's requests, when it ran under load.
    report: Option<Report>,
    /// Those that started during the swap, and when that was.
    swap: Option<Report>,
    swap_window: Option<Window>,
    /// Those that started in the steady second and a half before the install, and when.
    lead: Option<(Report, Window)>,
    /// Those that started in the `AFTER` after it.
    after: Option<Report>,
    took: Duration,
}

/// How long the load runs before the install starts; the last `LEAD` of it is steady state
/// measured beside the install (the first half second opens the load's connections).
const BEFORE: Duration = Duration::from_secs(2);
const LEAD: Duration = Duration::from_millis(1500);
/// How long the load runs after the install returns: the old containers are stopped a second
/// after the swap, in the background, and live requests wait behind that work too.
const AFTER: Duration = Duration::from_secs(2);

/// Installs release `id` with strategy `flag`, under the load when `loaded`, once the last
/// swap's old containers are gone. Prints its steps (and with `trace`, its log beside the
/// slowest requests and the CPU's steal bursts).
fn install_under_load(
    h: &Harness,
    program: &Tester,
    id: &str,
    flag: &str,
    loaded: bool,
    trace: Option<&Sampler>,
) -> anyhow::Result<Measured> {
    let under = if loaded {
        "under load"
    } else {
        "with nothing else running"
    };
    h.settled()?;
    eprintln!("xtask: bench: {flag}: installing {id} {under}");
    let load = loaded.then(|| Load::start(h.port, DOMAIN, RATE, LIMIT));
    let zero = Instant::now();
    let zero_clock = monotonic_seconds();
    if loaded {
        std::thread::sleep(BEFORE);
    }
    let started = Instant::now();
    let timed = install_timed(h, program, id, flag, trace.is_some());
    let took = started.elapsed();
    let report = load.map(|load| {
        std::thread::sleep(AFTER);
        load.stop()
    });
    let timed = timed?;
    h.expect_serving(id)?;
    println!("{flag} {id}: the install's steps (`install --timings`)");
    let steps = timed
        .log
        .iter()
        .skip_while(|(_, l)| !l.contains("the install's steps"))
        .skip(1)
        .take_while(|(_, l)| l.starts_with("  "));
    for (_, line) in steps {
        println!("{line}");
    }
    if let (Some(sampler), Some(report)) = (trace, &report) {
        println!(
            "{flag} {id}: the install, the 20 slowest requests and the 20 slowest of the swap (0 ms is {zero_clock:.6} s on CLOCK_MONOTONIC, the clock of `perf sched record -k CLOCK_MONOTONIC`)"
        );
        print_trace(zero, &timed, report, &sampler.samples());
        let swap = timed.ended.saturating_duration_since(timed.swap_started);
        if let Some((before, after)) = &timed.cpu {
            print_cpu_by_process("the swap", swap, before, after);
        }
    }
    let swap = report
        .as_ref()
        .map(|r| r.window(timed.swap_started, timed.ended));
    let before = started.checked_sub(LEAD).unwrap_or(zero);
    let lead = report
        .as_ref()
        .map(|r| (r.window(before, started), served::window(before, started)));
    let after = report
        .as_ref()
        .map(|r| r.window(timed.ended, timed.ended + AFTER));
    Ok(Measured {
        swap_window: loaded.then(|| served::window(timed.swap_started, timed.ended)),
        after,
        report,
        swap,
        lead,
        took,
    })
}

/// CLOCK_MONOTONIC now, in seconds: the clock `Instant` reads, and one perf can record by, so
/// a trace's timeline can be laid beside a scheduler trace's.
fn monotonic_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// p99 of `requests` (a row's swaps', or the time after its installs), and its ratio to
/// `steady`'s p99.
fn p99_over(requests: Option<&Report>, steady: Duration) -> Option<(Duration, f64)> {
    let p99 = requests?.percentile(0.99);
    Some((p99, p99.as_secs_f64() / steady.as_secs_f64().max(1e-6)))
}

fn print_table(rows: &[Row]) {
    println!(
        "deploys: {RATE} requests/s to nginx on 127.0.0.1 (GET /health on the API and the web landing page), or none (quiet)"
    );
    println!(
        "{:<12} {:<10} {:>8} {:>7} {:>9} {:>9} {:>9} {:>16} {:>24} {:>22}",
        "strategy",
        "change",
        "requests",
        "failed",
        "p50",
        "p99",
        "max",
        "install (median/max)",
        "p99 in swaps (x steady)",
        "p99 2 s after (x)"
    );
    let steady = rows[0]
        .report
        .as_ref()
        .map_or(Duration::ZERO, |r| r.percentile(0.99));
    let dash = || "-".to_owned();
    for r in rows {
        let load = |f: &dyn Fn(&Report) -> String| r.report.as_ref().map_or_else(dash, f);
        println!(
            "{:<12} {:<10} {:>8} {:>7} {:>9} {:>9} {:>9} {:>16} {:>24} {:>22}",
            r.name(),
            r.change,
            load(&|l| l.requests.to_string()),
            load(&|l| l.failed.to_string()),
            load(&|l| ms(l.percentile(0.5))),
            load(&|l| ms(l.percentile(0.99))),
            load(&|l| ms(l.max())),
            r.install()
                .map_or_else(dash, |(median, slowest)| if r.installs.len() > 1 {
                    format!("{:.2}/{:.2} s", median.as_secs_f64(), slowest.as_secs_f64())
                } else {
                    format!("{:.2} s", median.as_secs_f64())
                }),
            p99_over(r.swap.as_ref(), steady).map_or_else(dash, |(p99, ratio)| format!(
                "{} ({ratio:.2}x, {} req)",
                ms(p99),
                r.swap.as_ref().map_or(0, |w| w.requests)
            )),
            p99_over(r.after.as_ref(), steady)
                .map_or_else(dash, |(p99, ratio)| format!("{} ({ratio:.2}x)", ms(p99)))
        );
    }
    // This build's (A's) against in-place.
    let took = |strategy: &str, change: &str| {
        rows.iter()
            .find(|r| r.strategy == strategy && r.change == change && r.program != "B")
            .and_then(|r| r.install())
            .map(|(median, _)| median)
    };
    for change in ["api", "web", "both", "api quiet"] {
        if let (Some(b), Some(i)) = (took("blue/green", change), took("in-place", change)) {
            println!(
                "{change}: blue/green installs in {:.2} s, {:.2}x in-place's {:.2} s (medians)",
                b.as_secs_f64(),
                b.as_secs_f64() / i.as_secs_f64(),
                i.as_secs_f64()
            );
        }
    }
    for r in rows.iter().filter(|r| r.strategy == "in-place") {
        if let Some(report) = &r.report {
            println!(
                "{} {} dropped {} of {} requests",
                r.name(),
                r.change,
                report.failed,
                report.requests
            );
        }
    }
}

/// nginx's access log (the requests it served), read before the stack goes; empty, with a
/// line saying so, when it cannot be read.
fn nginx_log(h: &Harness) -> Vec<Served> {
    let read = h.container_id("nginx").and_then(|nginx| {
        ensure!(!nginx.is_empty(), "no nginx container runs");
        Ok(served::parse(&docker(&["logs", &nginx])?))
    });
    match read {
        Ok(served) if !served.is_empty() => served,
        Ok(_) => {
            eprintln!("xtask: bench: nginx's access log has no request in it");
            Vec::new()
        }
        Err(e) => {
            eprintln!("xtask: bench: cannot read nginx's access log: {e:#}");
            Vec::new()
        }
    }
}

/// For each row, the p99 the load measured beside the p99s, by nginx's log, of the requests
/// nginx read in the same windows: from reading to answering, and the app's part. Each is
/// the p99 of its own distribution (not one request's parts): when the app's is as high as
/// the client's, the tail is in the app; when the client's stands above nginx's, it is before
/// nginx (the client and the kernel, here on the same CPUs).
fn print_where(rows: &[Row], served: &[Served]) {
    println!(
        "where the time goes (p99s in nginx's log of the requests read in the same windows: read to answered, and the app's part)"
    );
    println!(
        "{:<12} {:<10} {:>12} {:>12} {:>12}",
        "strategy", "change", "p99 client", "p99 nginx", "p99 app"
    );
    for r in rows {
        let client = if r.strategy == "steady" {
            r.report.as_ref()
        } else {
            r.swap.as_ref()
        };
        let (Some(client), Some((nginx, app))) = (client, served::p99s(served, &r.windows)) else {
            continue;
        };
        println!(
            "{:<12} {:<10} {:>12} {:>12} {:>12}",
            r.name(),
            r.change,
            ms(client.percentile(0.99)),
            ms(nginx),
            ms(app)
        );
    }
}

/// The processes that used the most CPU over `took`, in ms per second of it.
fn print_cpu_by_process(
    what: &str,
    took: Duration,
    before: &cpu::Processes,
    after: &cpu::Processes,
) {
    let seconds = took.as_secs_f64().max(1e-3);
    let top: Vec<String> = cpu::by_process(before, after)
        .into_iter()
        .take(12)
        .map(|(name, ms)| format!("{name} {:.0}", ms / seconds))
        .collect();
    println!(
        "  CPU in {what} ({:.2} s), ms per s: {}",
        took.as_secs_f64(),
        top.join(", ")
    );
}

/// For each row, the CPUs busy and the time stolen by the hypervisor over the same windows
/// (steady state's: the load's own). Steal holds everything on a vCPU at once, so the
/// swaps' tail carries the VM's share when their windows see more of it than steady state.
fn print_cpu(rows: &[Row], cpu: &Samples) {
    println!("the machine in the same windows (/proc/stat, /proc/pressure/io)");
    println!(
        "{:<12} {:<10} {:>10} {:>16} {:>22}",
        "strategy", "change", "CPUs busy", "stolen (ms/s)", "waiting on disk (ms/s)"
    );
    for r in rows {
        let Some(u) = cpu.over(&r.windows) else {
            continue;
        };
        println!(
            "{:<12} {:<10} {:>10.2} {:>16.1} {:>22.1}",
            r.name(),
            r.change,
            u.busy,
            u.steal_ms_per_s,
            u.io_ms_per_s
        );
    }
}

/// With `--against`: B's figures over A's, for each kind of install (below 1: B is quicker).
fn print_against(rows: &[Row]) {
    let pairs: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|a| a.program == "A")
        .filter_map(|a| {
            let b = rows
                .iter()
                .find(|b| b.program == "B" && b.strategy == a.strategy && b.change == a.change)?;
            Some((a, b))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    println!("B against A (B's over A's; below 1 is better for B)");
    println!(
        "{:<11} {:<10} {:>22} {:>18} {:>18}",
        "strategy", "change", "install (median)", "p99 in swaps", "p99 2 s after"
    );
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) if !a.is_zero() => format!("{:.2}x", b.as_secs_f64() / a.as_secs_f64()),
        _ => "-".to_owned(),
    };
    let p99 = |r: Option<&Report>| r.map(|r| r.percentile(0.99));
    for (a, b) in pairs {
        println!(
            "{:<11} {:<10} {:>22} {:>18} {:>18}",
            a.strategy,
            a.change,
            ratio(a.install().map(|i| i.0), b.install().map(|i| i.0)),
            ratio(p99(a.swap.as_ref()), p99(b.swap.as_ref())),
            ratio(p99(a.after.as_ref()), p99(b.after.as_ref())),
        );
    }
}

/// The blue/green targets this build missed (B's are only compared), each said.
fn missed(rows: &[Row]) -> Vec<String> {
    let steady = rows[0]
        .report
        .as_ref()
        .map_or(Duration::ZERO, |r| r.percentile(0.99));
    let mut missed = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.strategy == "blue/green" && r.program != "B")
    {
        if let Some(report) = r.report.as_ref().filter(|l| l.failed > 0) {
            missed.push(format!(
                "blue/green {} dropped {} requests: {:?}",
                r.change, report.failed, report.failures
            ));
        }
        if let Some((p99, ratio)) =
            p99_over(r.swap.as_ref(), steady).filter(|(_, x)| *x > P99_RATIO)
        {
            missed.push(format!(
                "blue/green {}: p99 during the swap {} is {ratio:.2}x steady state's {} (target {P99_RATIO}x)",
                r.change,
                ms(p99),
                ms(steady)
            ));
        }
        let target = match r.change {
            "api" => API_LOADED,
            "api quiet" => API_QUIET,
            _ => continue,
        };
        if let Some((_, took)) = r.install().filter(|(_, slowest)| *slowest > target) {
            missed.push(format!(
                "blue/green {}: an install took {:.2} s (target {} s)",
                r.change,
                took.as_secs_f64(),
                target.as_secs()
            ));
        }
    }
    missed
}

/// A visible change to the API: /health gains a field, `"bench": n` (one before it is
/// replaced).
pub(crate) fn api_change(dir: &Utf8Path, n: u32) -> anyhow::Result<()> {
    let path = dir.join("api/src/routes/health.rs");
    std::fs::write(
        &path,
        without_marker(&std::fs::read_to_string(&path)?, "\"bench\": "),
    )?;
    replace(
        &path,
        "\"service\": \"hitsave\",",
        &format!("\"service\": \"hitsave\", \"bench\": {n}, "),
    )
    .context("the API change for the benchmark")
}

/// A visible change to the web app: /healthz gains a field, `bench: n` (one before it is
/// replaced).
fn web_change(dir: &Utf8Path, n: u32) -> anyhow::Result<()> {
    let path = dir.join("web/app/routes/healthz.js");
    std::fs::write(
        &path,
        without_marker(&std::fs::read_to_string(&path)?, "bench: "),
    )?;
    replace(
        &path,
        "status: \"ok\", ",
        &format!("status: \"ok\", bench: {n}, "),
    )
    .context("the web change for the benchmark")
}

/// `text` without the `KEY N, ` an earlier change left.
fn without_marker(text: &str, key: &str) -> String {
    match text.find(key) {
        Some(at) => match text[at..].find(", ") {
            Some(len) => format!("{}{}", &text[..at], &text[at + len + 2..]),
            None => text.to_owned(),
        },
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_marker;

    #[test]
    fn an_earlier_marker_is_taken_out() {
        let api = "json!({\"service\": \"hitsave\", \"bench\": 21, \"release\": r})";
        assert_eq!(
            without_marker(api, "\"bench\": "),
            "json!({\"service\": \"hitsave\", \"release\": r})"
        );
        assert_eq!(
            without_marker("{status: \"ok\", }", "bench: "),
            "{status: \"ok\", }"
        );
    }
}
