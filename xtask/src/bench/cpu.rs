//! The machine's CPU over the bench's windows, from `/proc/stat`: how many CPUs were busy, and
//! the time the hypervisor took the vCPUs away while they had work (steal). A steal burst holds
//! every process on that vCPU at once, server and client alike, so the requests in flight on
//! it come back late together; when the swaps' windows see more steal than steady state, part
//! of their tail is the VM's, and the trace shows where it fell. Beside it, from
//! `/proc/pressure/io`, the time tasks were stalled on the disk: a process that writes (nginx's
//! access log through Docker's log pipe, dockerd's state files) waits for the disk in the
//! middle of serving when a virtual disk is slow or throttled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::served::{Window, wall};

/// How often `/proc/stat` is read (its counters move in ticks of 10 ms on Linux).
const EVERY: Duration = Duration::from_millis(10);

/// One reading of `/proc/stat`'s first line, in ticks since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticks {
    /// user + nice + system + irq + softirq (guest time is inside user).
    pub busy: u64,
    /// Time a vCPU wanted to run and the hypervisor ran something else.
    pub steal: u64,
    /// Microseconds some task was stalled on IO (`/proc/pressure/io`'s `some total`; 0 on a
    /// kernel without PSI).
    pub io_some_us: u64,
}

/// Parses the `cpu` line of `/proc/stat`.
pub fn parse(stat: &str) -> Option<Ticks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| n.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal ...
    Some(Ticks {
        busy: field(0) + field(1) + field(2) + field(5) + field(6),
        steal: field(7),
        io_some_us: 0,
    })
}

/// The `some` line's `total=` (microseconds) of a `/proc/pressure/*` file.
pub fn parse_pressure(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// Readings taken every `EVERY` on a thread of their own, until dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
}

impl Sampler {
    pub fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let (flag, into) = (stop.clone(), samples.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                let read = std::fs::read_to_string("/proc/stat").ok();
                if let Some(mut t) = read.as_deref().and_then(parse) {
                    let io = std::fs::read_to_string("/proc/pressure/io").ok();
                    t.io_some_us = io.as_deref().and_then(parse_pressure).unwrap_or(0);
                    into.lock().unwrap().taken.push((now, wall(now), t));
                }
                std::thread::sleep(EVERY.saturating_sub(now.elapsed()));
            }
        });
        Sampler { stop, samples }
    }

    /// The readings so far.
    pub fn samples(&self) -> Samples {
        self.samples.lock().unwrap().clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the sampler read, in order: when (both clocks) and the counters.
#[derive(Clone, Default)]
pub struct Samples {
    taken: Vec<(Instant, f64, Ticks)>,
}

/// The CPU over some windows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Use {
    /// Busy CPUs on average (0 to the machine's count).
    pub busy: f64,
    /// Milliseconds stolen per second of the windows (summed over the vCPUs).
    pub steal_ms_per_s: f64,
    /// Milliseconds per second of the windows during which some task waited for the disk.
    pub io_ms_per_s: f64,
}

impl Samples {
    /// The counters' growth over `windows` (each from the last reading at or before its start
    /// to the first at or after its end), as averages over their time; None without readings
    /// around any of them.
    pub fn over(&self, windows: &[Window]) -> Option<Use> {
        let tick = ticks_per_second();
        let (mut busy, mut steal, mut io, mut seconds) = (0u64, 0u64, 0u64, 0f64);
        for &(from, to) in windows {
            let first = self.taken.iter().rev().find(|(_, w, _)| *w <= from);
            let last = self.taken.iter().find(|(_, w, _)| *w >= to);
            let (Some((_, w0, t0)), Some((_, w1, t1))) = (first, last) else {
                continue;
            };
            busy += t1.busy.saturating_sub(t0.busy);
            steal += t1.steal.saturating_sub(t0.steal);
            io += t1.io_some_us.saturating_sub(t0.io_some_us);
            seconds += w1 - w0;
        }
        (seconds > 0.0).then(|| Use {
            busy: busy as f64 / tick / seconds,
            steal_ms_per_s: steal as f64 / tick * 1000.0 / seconds,
            io_ms_per_s: io as f64 / 1000.0 / seconds,
        })
    }

    /// Each stretch of readings in a row where tasks waited for the disk, 20 ms or more in
    /// all: when it ended, and how many ms.
    pub fn io_stalls(&self, from: Instant, to: Instant) -> Vec<(Instant, f64)> {
        let mut stalls = Vec::new();
        let mut run: Option<(Instant, u64)> = None;
        for p in self.taken.windows(2) {
            let grew = p[1].2.io_some_us.saturating_sub(p[0].2.io_some_us);
            if p[1].0 < from || p[1].0 > to || grew == 0 {
                stalls.extend(run.take());
                continue;
            }
            let sum = run.map_or(0, |(_, us)| us) + grew;
            run = Some((p[1].0, sum));
        }
        stalls.extend(run);
        stalls
            .into_iter()
            .filter(|(_, us)| *us >= 20_000)
            .map(|(at, us)| (at, us as f64 / 1000.0))
            .collect()
    }

    /// Each reading where steal grew since the one before: when, and by how many ms.
    pub fn steal_bursts(&self, from: Instant, to: Instant) -> Vec<(Instant, f64)> {
        let ms_per_tick = 1000.0 / ticks_per_second();
        self.taken
            .windows(2)
            .filter(|p| p[1].0 >= from && p[1].0 <= to && p[1].2.steal > p[0].2.steal)
            .map(|p| (p[1].0, (p[1].2.steal - p[0].2.steal) as f64 * ms_per_tick))
            .collect()
    }
}

/// Every process's CPU time so far, by pid: its name, its own ticks (user + system) and those
/// of its children it has reaped (short-lived ones, such as runc or a health check's exec,
/// show only there once they exit).
pub type Processes = std::collections::HashMap<u32, (String, u64, u64)>;

/// Reads `/proc/<pid>/stat` of every process (a few milliseconds).
pub fn processes() -> Processes {
    let mut all = Processes::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(p) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_process)
        {
            all.insert(pid, p);
        }
    }
    all
}

/// `(comm, utime + stime, cutime + cstime)` from one `/proc/<pid>/stat`.
fn parse_process(stat: &str) -> Option<(String, u64, u64)> {
    // The name is in parentheses and may hold spaces: the fields start after the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((comm, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// The CPU the processes used between two readings, by name, in ms, the most first. Children
/// reaped in between are counted under `<parent>'s children` with their whole life's CPU (an
/// nginx worker retired by a reload, an install that ran before the window): read those rows
/// as an upper bound.
pub fn by_process(before: &Processes, after: &Processes) -> Vec<(String, f64)> {
    let ms_per_tick = 1000.0 / ticks_per_second();
    let mut sum: std::collections::HashMap<String, u64> = Default::default();
    for (pid, (comm, own, children)) in after {
        let (was_own, was_children) = before.get(pid).map_or((0, 0), |(_, o, c)| (*o, *c));
        *sum.entry(comm.clone()).or_default() += own.saturating_sub(was_own);
        let reaped = children.saturating_sub(was_children);
        if reaped > 0 {
            *sum.entry(format!("{comm}'s children")).or_default() += reaped;
        }
    }
    let mut all: Vec<(String, f64)> = sum
        .into_iter()
        .filter(|(_, t)| *t > 0)
        .map(|(c, t)| (c, t as f64 * ms_per_tick))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

/// The kernel's tick for `/proc/stat` (USER_HZ: 100 on Linux).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the C library.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_busy_and_steal() {
        // A line as Linux 5.10 prints it: user nice system idle iowait irq softirq steal guest guest_nice.
        let stat = "cpu  64795 3 12882 11651 439 7 71 142 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n";
        assert_eq!(
            parse(stat),
            Some(Ticks {
                busy: 64795 + 3 + 12882 + 7 + 71,
                steal: 142,
                io_some_us: 0,
            })
        );
        assert_eq!(parse("intr 1\n"), None);
        let io = "some avg10=0.00 avg60=2.08 avg300=3.90 total=3341877512\nfull avg10=0.00 avg60=1.39 avg300=2.90 total=2819140418\n";
        assert_eq!(parse_pressure(io), Some(3341877512));
        assert_eq!(parse_pressure("full total=1\n"), None);
    }

    #[test]
    fn reads_a_process() {
        let stat = "4242 (containerd-shim) S 1 4242 1 0 -1 4194560 900 0 0 0 17 5 3 2 20 0 12 0";
        assert_eq!(
            parse_process(stat),
            Some(("containerd-shim".to_owned(), 22, 5))
        );
        // A name with a space and a parenthesis in it.
        let stat = "7 (a b) c) R 1 7 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0";
        assert_eq!(parse_process(stat), Some(("a b) c".to_owned(), 2, 0)));
        let before = Processes::from([(7, ("node".to_owned(), 10, 0))]);
        let after = Processes::from([
            (7, ("node".to_owned(), 13, 4)),
            (8, ("runc".to_owned(), 1, 0)),
        ]);
        let tick = 1000.0 / ticks_per_second();
        assert_eq!(
            by_process(&before, &after),
            vec![
                ("node's children".to_owned(), 4.0 * tick),
                ("node".to_owned(), 3.0 * tick),
                ("runc".to_owned(), tick),
            ]
        );
    }

    #[test]
    fn use_over_windows() {
        let t = Instant::now();
        let samples = Samples {
            taken: vec![
                (
                    t,
                    100.0,
                    Ticks {
                        busy: 0,
                        steal: 0,
                        io_some_us: 0,
                    },
                ),
                (
                    t,
                    101.0,
                    Ticks {
                        busy: 100,
                        steal: 2,
                        io_some_us: 30_000,
                    },
                ),
                (
                    t,
                    102.0,
                    Ticks {
                        busy: 150,
                        steal: 2,
                        io_some_us: 30_000,
                    },
                ),
            ],
        };
        let tick = ticks_per_second();
        let u = samples.over(&[(100.0, 101.0)]).unwrap();
        assert!((u.busy - 100.0 / tick).abs() < 1e-9);
        assert!((u.steal_ms_per_s - 2.0 / tick * 1000.0).abs() < 1e-9);
        assert!((u.io_ms_per_s - 30.0).abs() < 1e-9);
        // The stall ends with the second reading; the third saw none.
        assert_eq!(samples.io_stalls(t, t), vec![(t, 30.0)]);
        // A window between readings takes the readings around it.
        let u = samples.over(&[(100.5, 101.5)]).unwrap();
        assert!((u.busy - 150.0 / tick / 2.0).abs() < 1e-9);
        assert_eq!(samples.over(&[(99.0, 100.5)]), None);
    }
}
