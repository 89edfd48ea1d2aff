//! install.lock: one change at a time on a host (an install, a rollback, a backup, a
//! restore, a renewal, a secret, maintenance). An flock(2) on the file, so a crashed holder
//! never leaves a stale lock; the file names the holder for whoever waits.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::Utf8Path;
use nix::fcntl::{Flock, FlockArg};

pub struct InstallLock {
    _lock: Flock<File>,
}

impl InstallLock {
    /// Takes the lock, waiting up to `timeout` for the holder; `what` says what we are doing
    /// (for whoever waits on us).
    pub fn acquire(path: &Utf8Path, timeout: Duration, what: &str) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut announced = false;
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .with_context(|| format!("cannot open the install lock {path}"))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    lock.set_len(0)?;
                    lock.rewind()?;
                    write!(
                        lock,
                        "pid {} ({what}) since {}",
                        std::process::id(),
                        crate::kit::time::now_rfc3339()
                    )?;
                    lock.sync_data()?;
                    return Ok(InstallLock { _lock: lock });
                }
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = if holder.trim().is_empty() {
                        "another process".to_owned()
                    } else {
                        holder.trim().to_owned()
                    };
                    if started.elapsed() >= timeout {
                        bail!(
                            "{path} is held by {holder}; waited {:.0?} (--lock-timeout). Let it finish, or check that process",
                            timeout
                        );
                    }
                    if !announced {
                        eprintln!(
                            "xtask: waiting for the install lock {path}, held by {holder} (up to {timeout:.0?})"
                        );
                        announced = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err((_, errno)) => {
                    bail!("cannot lock {path}: {errno}")
                }
            }
        }
    }
}
