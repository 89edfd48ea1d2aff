//! One way into every command that changes the host (install, rollback, backup, restore, a
//! certificate renewal, a secret, maintenance): the process yields the CPU to the site, opens
//! the install root and takes its one lock, naming the command for whoever waits; the change
//! ends with one line of history, written before the lock is let go.

use std::time::{Duration, Instant};

use camino::Utf8Path;

use crate::kit::ui::Ui;
use crate::site::history::{HistoryEntry, Outcome};
use crate::site::host::{self, Host};
use crate::site::lock::InstallLock;

/// A change to the host in progress: the lock is held until it is dropped.
pub struct Session {
    /// Where progress goes.
    pub ui: Ui,
    /// The install root.
    pub host: Host,
    started: Instant,
    _lock: InstallLock,
}

impl Session {
    /// Lowers this process's CPU weight, opens `root` and takes the lock, waiting up to
    /// `lock_timeout` for the change that holds it; `verb` (`restore`, `secrets set NAME`)
    /// names this one in the lock file and in the message of whoever waits.
    pub fn begin(root: &Utf8Path, verb: &str, lock_timeout: Duration) -> anyhow::Result<Session> {
        crate::site::cpu::yield_cpu();
        let ui = Ui::new();
        let host = Host::open(root)?;
        let lock =
            InstallLock::acquire(&host.lock_file(), lock_timeout, &host::command(verb, root))?;
        Ok(Session {
            ui,
            host,
            started: Instant::now(),
            _lock: lock,
        })
    }

    /// How long the change has taken so far.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Writes `entry`, ended with `outcome` and `result`'s error, to history; returns `result`.
    /// A failed change is recorded as failed before its error goes up.
    pub fn finish<T>(
        &self,
        mut entry: HistoryEntry,
        outcome: Outcome,
        result: anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        entry.time = crate::kit::time::now_rfc3339();
        entry.outcome = outcome;
        entry.seconds = self.elapsed().as_secs_f64();
        entry.error = result.as_ref().err().map(|e| format!("{e:#}"));
        entry.notified = crate::site::notify::after_change(&self.host, &entry);
        let recorded = self.host.record(&entry);
        let value = result?;
        recorded?;
        Ok(value)
    }
}
