//! Long-running child processes (servers the tests need) that are always stopped by pid:
//! SIGTERM first, SIGKILL if they do not exit in time, also when xtask fails half-way.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub struct Service {
    name: String,
    child: Child,
}

impl Service {
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Service> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Service {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited: a server that died at start-up.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited at start-up ({status})", self.name);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 10 s. Returns how it ended: `None` when it had to be
    /// killed, or when it had already exited before we asked.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return None;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("xtask: {} ignored SIGTERM for 10 s; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Stops it and fails unless it exited by itself, successfully, after SIGTERM: what a
    /// zero-downtime swap relies on.
    pub fn stop_gracefully(&mut self) -> anyhow::Result<()> {
        match self.stop() {
            Some(status) if status.success() => Ok(()),
            Some(status) => anyhow::bail!("{} exited with {status} after SIGTERM", self.name),
            None => anyhow::bail!("{} did not shut down cleanly on SIGTERM", self.name),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now, on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
