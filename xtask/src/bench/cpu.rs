//! The machine's CPU over the bench's windows, from `/proc/stat`: how many CPUs were busy, and
//! the time the hypervisor took the vCPUs away while they had work (steal). A steal burst holds
//! every process on that vCPU at once, server and client alike, so the requests in flight on
//! it come back late together; when the swaps' windows see more steal than steady state, part
//! of their tail is the VM's, and the trace shows where it fell.

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
    })
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
                if let Some(t) = read.as_deref().and_then(parse) {
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
}

impl Samples {
    /// The counters' growth over `windows` (each from the last reading at or before its start
    /// to the first at or after its end), as averages over their time; None without readings
    /// around any of them.
    pub fn over(&self, windows: &[Window]) -> Option<Use> {
        let tick = ticks_per_second();
        let (mut busy, mut steal, mut seconds) = (0u64, 0u64, 0f64);
        for &(from, to) in windows {
            let first = self.taken.iter().rev().find(|(_, w, _)| *w <= from);
            let last = self.taken.iter().find(|(_, w, _)| *w >= to);
            let (Some((_, w0, t0)), Some((_, w1, t1))) = (first, last) else {
                continue;
            };
            busy += t1.busy.saturating_sub(t0.busy);
            steal += t1.steal.saturating_sub(t0.steal);
            seconds += w1 - w0;
        }
        (seconds > 0.0).then(|| Use {
            busy: busy as f64 / tick / seconds,
            steal_ms_per_s: steal as f64 / tick * 1000.0 / seconds,
        })
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
                steal: 142
            })
        );
        assert_eq!(parse("intr 1\n"), None);
    }

    #[test]
    fn use_over_windows() {
        let t = Instant::now();
        let samples = Samples {
            taken: vec![
                (t, 100.0, Ticks { busy: 0, steal: 0 }),
                (
                    t,
                    101.0,
                    Ticks {
                        busy: 100,
                        steal: 2,
                    },
                ),
                (
                    t,
                    102.0,
                    Ticks {
                        busy: 150,
                        steal: 2,
                    },
                ),
            ],
        };
        let tick = ticks_per_second();
        let u = samples.over(&[(100.0, 101.0)]).unwrap();
        assert!((u.busy - 100.0 / tick).abs() < 1e-9);
        assert!((u.steal_ms_per_s - 2.0 / tick * 1000.0).abs() < 1e-9);
        // A window between readings takes the readings around it.
        let u = samples.over(&[(100.5, 101.5)]).unwrap();
        assert!((u.busy - 150.0 / tick / 2.0).abs() < 1e-9);
        assert_eq!(samples.over(&[(99.0, 100.5)]), None);
    }
}
