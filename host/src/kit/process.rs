//! Waiting for something outside the process (a container's health, a port, a file): the one
//! wait-until-deadline loop, so every wait fails the same way, naming what it waited for.

use std::time::{Duration, Instant};

/// What one look of `wait_for` found.
pub enum Wait<T> {
    /// Done: stop waiting.
    Done(T),
    /// Not yet, and why: the error says it if time runs out.
    NotYet(String),
}

/// The one wait-until-deadline loop: calls `look` every `every` until it is done, fails (an
/// error stops the wait at once: a process that exited, say) or `timeout` has passed, which
/// fails as `gave up waiting for <what> after <timeout>: <the last reason>`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut look: impl FnMut() -> anyhow::Result<Wait<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match look()? {
            Wait::Done(value) => return Ok(value),
            Wait::NotYet(reason) => reason,
        };
        if Instant::now() >= deadline {
            anyhow::bail!("gave up waiting for {what} after {timeout:?}: {last}");
        }
        std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Polls `ready` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    wait_for(what, timeout, Duration::from_millis(100), || {
        Ok(if ready()? {
            Wait::Done(())
        } else {
            Wait::NotYet("not ready".into())
        })
    })
}

/// This program's own file, to run its own commands. When cargo has re-linked it while we run
/// (`cargo test` does), /proc reports the old file as "<path> (deleted)"; the path itself then
/// holds the rebuilt binary of the same sources.
pub fn current_exe() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.exists() {
        return Ok(exe);
    }
    let text = exe.to_string_lossy();
    let rebuilt = std::path::PathBuf::from(text.trim_end_matches(" (deleted)"));
    anyhow::ensure!(rebuilt.exists(), "the program {text} is gone");
    Ok(rebuilt)
}
