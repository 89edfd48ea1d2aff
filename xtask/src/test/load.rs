//! A steady-rate HTTP load generator for 127.0.0.1 (for `bench deploy` and the zero-downtime
//! tests): requests start on a fixed schedule whatever the server does, each on its own
//! connection, alternating `GET /health` on the API and the web app's landing page through
//! nginx, saying `X-Forwarded-Proto: https` as a TLS-terminating balancer does (a site with a
//! certificate serves that from 127.0.0.1 on its plain port). Every non-2xx answer and every
//! connection error counts as a failure, except, for load started with `during_maintenance`,
//! the maintenance page (503 with Retry-After), which is counted apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use camino::{Utf8Path, Utf8PathBuf};
use hitsave_host::site::app::App;
use hitsave_host::site::cpu;

/// The load's nice value (Linux's is per thread: the test's other threads and children keep
/// theirs). It orders the load only among this process's own threads and children: with the
/// kernel's autogroups, each session is one group as heavy as one process.
const CLIENT_NICE: libc::c_int = -10;

/// Numbers each load's cgroup apart (several loads may run at once).
static LOADS: AtomicU64 = AtomicU64::new(0);

/// What one run of load saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub requests: u64,
    pub failed: u64,
    /// Answers that were the maintenance page (only counted for `during_maintenance`).
    pub maintenance: u64,
    /// The first few failures, for the error message.
    pub failures: Vec<String>,
    /// Latency of every request, sorted, in microseconds.
    latencies_us: Vec<u64>,
    /// When each request started, how long it took and what it asked for, in start order.
    samples: Vec<(Instant, Duration, &'static str)>,
    pub seconds: f64,
}

/// The `p` quantile of `sorted` (ascending), the one rule every latency table here uses; None
/// when it is empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

impl Report {
    pub fn percentile(&self, p: f64) -> Duration {
        nearest_rank(&self.latencies_us, p).map_or(Duration::ZERO, Duration::from_micros)
    }
    /// The same numbers for the requests that started between `from` and `to` only.
    pub fn window(&self, from: Instant, to: Instant) -> Report {
        let mut latencies_us: Vec<u64> = self
            .samples
            .iter()
            .filter(|(start, _, _)| *start >= from && *start <= to)
            .map(|(_, latency, _)| latency.as_micros() as u64)
            .collect();
        latencies_us.sort_unstable();
        Report {
            requests: latencies_us.len() as u64,
            latencies_us,
            seconds: to.saturating_duration_since(from).as_secs_f64(),
            ..Report::default()
        }
    }

    /// The `n` slowest requests: when each started, how long it took, and which app it asked.
    pub fn slowest(&self, n: usize) -> Vec<(Instant, Duration, &'static str)> {
        self.slowest_between(n, None)
    }

    /// `slowest`, among the requests that started between `window`'s two instants only.
    pub fn slowest_between(
        &self,
        n: usize,
        window: Option<(Instant, Instant)>,
    ) -> Vec<(Instant, Duration, &'static str)> {
        let mut samples: Vec<_> = self
            .samples
            .iter()
            .filter(|(start, _, _)| window.is_none_or(|(from, to)| *start >= from && *start <= to))
            .copied()
            .collect();
        samples.sort_unstable_by_key(|(_, latency, _)| std::cmp::Reverse(*latency));
        samples.truncate(n);
        samples.sort_unstable_by_key(|(start, _, _)| *start);
        samples
    }

    /// One report of several runs' requests (several swaps of one kind, pooled).
    pub fn merge(parts: impl IntoIterator<Item = Report>) -> Report {
        let mut all = Report::default();
        for part in parts {
            all.requests += part.requests;
            all.failed += part.failed;
            all.maintenance += part.maintenance;
            all.failures.extend(part.failures);
            all.latencies_us.extend(part.latencies_us);
            all.samples.extend(part.samples);
            all.seconds += part.seconds;
        }
        all.failures.truncate(5);
        all.latencies_us.sort_unstable();
        all.samples.sort_unstable_by_key(|(start, _, _)| *start);
        all
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latencies_us.last().copied().unwrap_or(0))
    }
}

/// Load that runs on its own threads until `stop()` (or `limit` passes).
pub struct Load {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Report>,
    cgroup: Option<ClientCgroup>,
}

impl Load {
    /// Starts `rate` requests per second against nginx on 127.0.0.1:`port` for `domain`.
    pub fn start(port: u16, domain: &str, rate: u32, limit: Duration) -> Load {
        Load::spawn(port, domain, rate, limit, false, None)
    }

    /// Like `start`, with the maintenance page counted apart instead of as a failure.
    pub fn during_maintenance(port: u16, domain: &str, rate: u32, limit: Duration) -> Load {
        Load::spawn(port, domain, rate, limit, true, None)
    }

    /// Like `start`, with the API's requests sent to `path` with `Authorization: Bearer
    /// <token>` (a session token, so each one checks the token and reads the database).
    pub fn signed_in(
        port: u16,
        domain: &str,
        rate: u32,
        limit: Duration,
        path: &'static str,
        token: &str,
    ) -> Load {
        Load::spawn(
            port,
            domain,
            rate,
            limit,
            false,
            Some((path, token.to_owned())),
        )
    }

    fn spawn(
        port: u16,
        domain: &str,
        rate: u32,
        limit: Duration,
        maintenance: bool,
        api: Option<(&'static str, String)>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let domain = domain.to_owned();
        let cgroup = ClientCgroup::create();
        let tasks = cgroup.as_ref().map(|c| c.dir.join("tasks"));
        let handle = std::thread::spawn(move || {
            // Ahead of the host's daemons and the install's tools: this stands for clients on
            // other machines, so its own wait for a CPU is not the server's latency. Best
            // effort (needs root); the runtime's threads inherit both from this one.
            // SAFETY: setpriority(2) on the calling thread only changes its scheduling.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, CLIENT_NICE);
            }
            if let Some(tasks) = tasks {
                // SAFETY: gettid(2) has no preconditions.
                let tid = unsafe { libc::gettid() };
                let _ = std::fs::write(tasks, tid.to_string());
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("start the load generator's runtime");
            runtime.block_on(run(port, domain, rate, limit, maintenance, api, flag))
        });
        Load {
            stop,
            handle,
            cgroup,
        }
    }

    /// Stops starting requests, waits for those in flight, and reports.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let report = self.handle.join().unwrap_or_default();
        drop(self.cgroup);
        report
    }
}

/// A cgroup v1 CPU group for one load's threads, as heavy as all the containers together
/// (`PARENT_SHARES`): the host's daemons and the install's tools each weigh as one process, so
/// a swap's work never makes the client wait for a CPU, as it would not on another machine.
/// Without it (cgroup v2, not root) the client waits behind them as any process on the host.
struct ClientCgroup {
    dir: Utf8PathBuf,
}

impl ClientCgroup {
    fn create() -> Option<ClientCgroup> {
        let n = LOADS.fetch_add(1, Ordering::Relaxed);
        let dir =
            Utf8Path::new(cpu::CPU_MOUNT).join(format!("hitsave-load-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cgroup = ClientCgroup { dir };
        std::fs::write(
            cgroup.dir.join("cpu.shares"),
            cpu::PARENT_SHARES.to_string(),
        )
        .ok()?;
        Some(cgroup)
    }
}

impl Drop for ClientCgroup {
    /// Its threads have ended: the group is empty, and goes.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

async fn run(
    port: u16,
    domain: String,
    rate: u32,
    limit: Duration,
    maintenance: bool,
    api: Option<(&'static str, String)>,
    stop: Arc<AtomicBool>,
) -> Report {
    let api = Arc::new(api);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut report = Report::default();
    let record = |report: &mut Report,
                  (start, latency, app, result): (
        Instant,
        Duration,
        &'static str,
        Result<(), Answer>,
    )| {
        report.requests += 1;
        report.samples.push((start, latency, app));
        report.latencies_us.push(latency.as_micros() as u64);
        if result == Err(Answer::Maintenance) {
            report.maintenance += 1;
        } else if let Err(Answer::Failed(e)) = result {
            report.failed += 1;
            if report.failures.len() < 5 {
                report.failures.push(e);
            }
        }
    };
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < limit {
        tick.tick().await;
        let app = if n.is_multiple_of(2) {
            App::Api
        } else {
            App::Web
        };
        let (path, auth) = match (app, &*api) {
            (App::Api, Some((path, token))) => {
                (*path, format!("Authorization: Bearer {token}\r\n"))
            }
            _ => (app.warm_up_path(), String::new()),
        };
        let host = app.host(&domain);
        n += 1;
        tasks.spawn(async move {
            let t = Instant::now();
            let outcome =
                tokio::time::timeout(Duration::from_secs(30), one(port, &host, path, &auth)).await;
            let result = match outcome {
                Ok(Ok((status, _))) if (200..300).contains(&status) => Ok(()),
                Ok(Ok((503, true))) if maintenance => Err(Answer::Maintenance),
                Ok(Ok((status, _))) => Err(Answer::Failed(format!("{host}{path}: HTTP {status}"))),
                Ok(Err(e)) => Err(Answer::Failed(format!("{host}{path}: {e}"))),
                Err(_) => Err(Answer::Failed(format!(
                    "{host}{path}: no answer within 30 s"
                ))),
            };
            (t, t.elapsed(), app.service(), result)
        });
        while let Some(Ok(done)) = tasks.try_join_next() {
            record(&mut report, done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(done) = done {
            record(&mut report, done);
        }
    }
    report.latencies_us.sort_unstable();
    report.samples.sort_unstable_by_key(|(start, _, _)| *start);
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// What a request that was not a 2xx got.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Maintenance,
    Failed(String),
}

/// One GET on a fresh connection; the status code, and whether the answer is the maintenance
/// page (with its Retry-After).
async fn one(port: u16, host: &str, path: &str, auth: &str) -> std::io::Result<(u16, bool)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = Vec::with_capacity(4096);
    stream.read_to_end(&mut response).await?;
    let status = response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let text = String::from_utf8_lossy(&response);
    let maintenance = text.contains("\r\nRetry-After: ") && text.contains("hitsave-maintenance");
    Ok((status, maintenance))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where this machine lets a root process make cgroup v1 CPU groups, the load's runtime
    /// (its first thread and the two workers it starts) runs in one, which goes with the load.
    #[test]
    fn the_load_runs_in_a_cgroup_of_its_own_where_it_can() {
        let probe =
            Utf8Path::new(cpu::CPU_MOUNT).join(format!("hitsave-probe-{}", std::process::id()));
        if std::fs::create_dir(&probe).is_err() {
            eprintln!("no cgroup v1 CPU groups to make here: the load waits as any process");
            return;
        }
        std::fs::remove_dir(&probe).unwrap();
        // Nothing listens on port 9 of 127.0.0.1: every request fails fast, which is enough.
        let load = Load::start(9, "example.test", 50, Duration::from_secs(5));
        let dir = load
            .cgroup
            .as_ref()
            .expect("a cgroup for the load")
            .dir
            .clone();
        std::thread::sleep(Duration::from_millis(300));
        let tasks = std::fs::read_to_string(dir.join("tasks")).unwrap();
        assert!(tasks.lines().count() >= 3, "threads in {dir}: {tasks:?}");
        assert_eq!(cpu::shares(&dir).unwrap(), cpu::PARENT_SHARES);
        let report = load.stop();
        assert!(report.requests > 0 && report.failed == report.requests);
        assert!(!dir.exists(), "{dir} is left behind");
    }
}
