//! Where a request's time went, from nginx's own access log: from nginx reading it to the
//! response's last byte (`request_time`), and the app's part of that (`upstream_time`). Set
//! beside the load generator's latency over the same windows, its p99s say whether the tail is
//! in the app, in nginx, or before nginx reads a request (the client's and the kernel's side,
//! which on this machine share the CPUs with the stack and the deploy).

use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

/// One instant read on both clocks, to turn the load's `Instant`s into the log's wall time.
static ANCHOR: LazyLock<(Instant, SystemTime)> =
    LazyLock::new(|| (Instant::now(), SystemTime::now()));

/// `t` as seconds since the epoch, as nginx's `$msec`.
pub fn wall(t: Instant) -> f64 {
    let (instant, system) = *ANCHOR;
    let since = system
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    if t >= instant {
        since + (t - instant).as_secs_f64()
    } else {
        since - (instant - t).as_secs_f64()
    }
}

/// A window of wall time, `[from, to)`, seconds since the epoch.
pub type Window = (f64, f64);

/// The window between two instants.
pub fn window(from: Instant, to: Instant) -> Window {
    (wall(from), wall(to))
}

/// A request as nginx logged it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served {
    /// When nginx read its first byte, seconds since the epoch.
    pub started: f64,
    /// Until its response's last byte.
    pub in_nginx: Duration,
    /// The app's part (every upstream tried, summed); none for nginx's own answers.
    pub in_app: Option<Duration>,
}

#[derive(Deserialize)]
struct Line {
    msec: f64,
    request_time: f64,
    #[serde(default)]
    upstream_time: String,
    #[serde(default)]
    check: String,
}

/// The requests in nginx's log `text` (one JSON object per line; other lines skipped), but the
/// host's own checks, which are not the load's.
pub fn parse(text: &str) -> Vec<Served> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter(|l| l.check.is_empty())
        .map(|l| {
            let parts: Vec<f64> = l
                .upstream_time
                .split([',', ':'])
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            Served {
                started: l.msec - l.request_time,
                in_nginx: seconds(l.request_time),
                in_app: (!parts.is_empty()).then(|| seconds(parts.iter().sum())),
            }
        })
        .collect()
}

/// nginx logs milliseconds: to the microsecond, so that 0.048 is 48 ms.
fn seconds(s: f64) -> Duration {
    Duration::from_micros((s.max(0.0) * 1e6).round() as u64)
}

/// p99 in nginx and p99 in the app of the requests that started in any of `windows`.
pub fn p99s(served: &[Served], windows: &[Window]) -> Option<(Duration, Duration)> {
    let inside: Vec<&Served> = served
        .iter()
        .filter(|s| {
            windows
                .iter()
                .any(|(a, b)| s.started >= *a && s.started < *b)
        })
        .collect();
    // The load's own rule, so that the columns side by side mean the same rank.
    let p99 = |mut v: Vec<Duration>| {
        v.sort_unstable();
        crate::test::load::nearest_rank(&v, 0.99)
    };
    let nginx = p99(inside.iter().map(|s| s.in_nginx).collect())?;
    let app = p99(inside.iter().filter_map(|s| s.in_app).collect())?;
    Some((nginx, app))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_give_each_request_its_start_and_parts() {
        let log = concat!(
            "2026/12/06 09:00:00 [notice] 1#1: start worker process 29\n",
            r#"{"msec":100.050,"host":"api.x","status":200,"request_time":0.050,"upstream_time":"0.048","upstream":"a","release":"r","check":""}"#,
            "\n",
            r#"{"msec":101.0,"host":"x","status":200,"request_time":0.010,"upstream_time":"0.002, 0.007","upstream":"a, b","release":"r","check":""}"#,
            "\n",
            r#"{"msec":102.0,"host":"x","status":503,"request_time":0.001,"upstream_time":"","upstream":"","release":"r","check":""}"#,
            "\n",
            r#"{"msec":103.0,"host":"x","status":200,"request_time":0.900,"upstream_time":"0.9","upstream":"a","release":"r","check":"gate"}"#,
        );
        let served = parse(log);
        assert_eq!(served.len(), 3, "{served:?}");
        assert!((served[0].started - 100.0).abs() < 1e-9);
        assert_eq!(served[0].in_app, Some(Duration::from_millis(48)));
        assert_eq!(served[1].in_app, Some(Duration::from_millis(9)));
        assert_eq!(served[2].in_app, None);
        // Only the first starts in the window.
        let (nginx, app) = p99s(&served, &[(99.9, 100.5)]).unwrap();
        assert_eq!(
            (nginx, app),
            (Duration::from_millis(50), Duration::from_millis(48))
        );
        assert_eq!(p99s(&served, &[(200.0, 201.0)]), None);
    }
}
