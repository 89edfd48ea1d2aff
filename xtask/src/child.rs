//! The one child-process type. Every program xtask keeps running beside itself (the test
//! servers, dockerd, dev's API and web server, the dev session a test drives) is a `Child`:
//! stopped by its pid or its whole process group, with a signal first and SIGKILL after a
//! grace period, and also when xtask fails half-way (on drop).

use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use hitsave_host::kit::process::{Wait, wait_for};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How a child is stopped.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// The signal that asks it to stop.
    pub signal: Signal,
    /// Send it to the whole process group (the child runs in its own), not the pid alone.
    pub to_group: bool,
    /// How long it has to exit before SIGKILL (to its group when it has one).
    pub grace: Duration,
}

impl Stop {
    /// SIGTERM to the pid, SIGKILL after 10 s: a server.
    pub const SERVER: Stop = Stop {
        signal: Signal::SIGTERM,
        to_group: false,
        grace: Duration::from_secs(10),
    };
}

pub struct Child {
    name: String,
    child: std::process::Child,
    stop: Stop,
    /// Runs in a process group of its own (whose id is its pid).
    own_group: bool,
    /// Where its output goes, quoted when it dies at start-up.
    log: Option<std::path::PathBuf>,
}

impl Child {
    /// Starts a server stopped as `Stop::SERVER`.
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Child> {
        Child::start(name, cmd, Stop::SERVER, false)
    }

    /// Starts `cmd` in a process group of its own, so a signal for xtask (Ctrl-C) does not
    /// reach it and `stop` can reach its own children; it gets SIGTERM if xtask dies.
    pub fn spawn_group(name: &str, cmd: &mut Command, stop: Stop) -> anyhow::Result<Child> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Child::start(name, cmd, stop, true)
    }

    fn start(name: &str, cmd: &mut Command, stop: Stop, own_group: bool) -> anyhow::Result<Child> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Child {
            name: name.to_owned(),
            child,
            stop,
            own_group,
            log: None,
        })
    }

    /// Starts a server (as `spawn`) with no input and its output (stdout and stderr) in a new
    /// file at `log`, whose end a death at start-up quotes.
    pub fn spawn_logged(
        name: &str,
        cmd: &mut Command,
        log: impl AsRef<std::path::Path>,
    ) -> anyhow::Result<Child> {
        let path = log.as_ref();
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {name}'s log {}", path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let mut child = Child::spawn(name, cmd)?;
        child.log = Some(path.to_owned());
        Ok(child)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its piped stdout and stderr, to read elsewhere.
    pub fn take_output(&mut self) -> (Option<ChildStdout>, Option<ChildStderr>) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails if the process has already exited: a server that died at start-up.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        let Some(status) = self.child.try_wait()? else {
            return Ok(());
        };
        let said = match &self.log {
            Some(log) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail = hitsave_host::kit::compose::tail(&text, 20);
                format!("; the end of its log ({}):\n{tail}", log.display())
            }
            None => String::new(),
        };
        anyhow::bail!("{} exited at start-up ({status}){said}", self.name)
    }

    /// Waits for it to exit by itself.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        self.child
            .wait()
            .with_context(|| format!("cannot wait for {}", self.name))
    }

    fn pid_t(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Whether it, or anything left in its process group, still runs.
    fn running(&mut self) -> bool {
        self.exited().is_none() || (self.own_group && killpg(self.pid_t(), None).is_ok())
    }

    /// The stop signal, then SIGKILL after the grace period. Returns how it ended: `None`
    /// when it had to be killed, or when it had already exited before we asked.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if !self.running() {
            return None;
        }
        let pid = self.pid_t();
        // Once the child itself is reaped its pid may be reused: only its group is signalled.
        let _ = if self.stop.to_group || self.exited().is_some() {
            killpg(pid, self.stop.signal)
        } else {
            kill(pid, self.stop.signal)
        };
        let every = Duration::from_millis(50);
        let ended = wait_for(&self.name.clone(), self.stop.grace, every, || {
            Ok(match self.exited() {
                Some(status) if !(self.own_group && killpg(pid, None).is_ok()) => {
                    Wait::Done(status)
                }
                _ => Wait::NotYet("it still runs".into()),
            })
        });
        if let Ok(status) = ended {
            return Some(status);
        }
        eprintln!(
            "xtask: {} did not stop within {:?} of {}; killing it",
            self.name, self.stop.grace, self.stop.signal
        );
        if self.own_group {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Stops it and fails unless it exited by itself, successfully, after the stop signal:
    /// what a zero-downtime swap relies on.
    pub fn stop_gracefully(&mut self) -> anyhow::Result<()> {
        let signal = self.stop.signal;
        match self.stop() {
            Some(status) if status.success() => Ok(()),
            Some(status) => anyhow::bail!("{} exited with {status} after {signal}", self.name),
            None => anyhow::bail!("{} did not shut down cleanly on {signal}", self.name),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a server on ports chosen by `free_port`, again on new ones (three tries in all) when
/// it died because one was taken between the choice and its bind: anything on the machine may
/// take a free port in that gap, an outgoing connection's source port among them.
pub fn on_free_ports<T>(
    what: &str,
    mut start: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut tries = 1;
    loop {
        match start() {
            Err(e) if tries < 3 && port_taken(&e) => {
                eprintln!(
                    "xtask: {what}: a port chosen for it was taken before it bound it; \
                     starting it again on new ports"
                );
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Whether a start-up failure says a port was in use (EADDRINUSE: as an OS error, Go's
/// lower-case one, or a Rust panic's debug print of one).
fn port_taken(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}").to_lowercase();
    text.contains("address already in use") || text.contains("addrinuse")
}

/// A port nobody listens on right now, on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// How a command that ran to its end went, with its peak memory.
pub struct Measured {
    pub success: bool,
    pub stderr: String,
    /// The most memory it held at once (its rusage's maximum resident set size).
    pub peak_rss_bytes: u64,
}

/// Runs `cmd` to its end (stdout discarded, stderr kept) and reaps it with wait4(2), whose
/// rusage gives the child's own peak resident set size.
pub fn run_measured(cmd: &mut Command) -> anyhow::Result<Measured> {
    let stderr = tempfile::tempfile()?;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr.try_clone()?)
        .spawn()
        .context("cannot start the command")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers outlive the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(
        reaped == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    // Reaped already: `try_wait` would find nothing to wait for, so forget the handle.
    drop(child.stdin.take());
    std::mem::forget(child);
    let mut text = String::new();
    use std::io::{Read, Seek};
    let mut stderr = stderr;
    stderr.seek(std::io::SeekFrom::Start(0))?;
    stderr.read_to_string(&mut text)?;
    Ok(Measured {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stderr: text,
        // Linux reports it in KiB.
        peak_rss_bytes: usage.ru_maxrss.max(0) as u64 * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_death_at_start_up_quotes_the_end_of_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Child::spawn_logged(
            "server",
            Command::new("sh").args([
                "-c",
                "echo 'cannot bind 127.0.0.1:9: Address already in use' >&2; exit 3",
            ]),
            dir.path().join("server.log"),
        )
        .unwrap();
        child.wait().unwrap();
        let err = format!("{:#}", child.check_running().unwrap_err());
        assert!(err.contains("server exited at start-up"), "{err}");
        assert!(err.contains("Address already in use"), "{err}");
        assert!(port_taken(&anyhow::anyhow!(err)));
        // pebble's words (Go).
        assert!(port_taken(&anyhow::anyhow!(
            "listen tcp 127.0.0.1:14000: bind: address already in use"
        )));
    }

    #[test]
    fn a_taken_port_is_tried_again_and_other_failures_are_not() {
        let mut tries = 0;
        let started = on_free_ports("server", || {
            tries += 1;
            match tries {
                1 => anyhow::bail!("panicked: Os {{ code: 98, kind: AddrInUse }}"),
                _ => Ok(tries),
            }
        });
        assert_eq!(started.unwrap(), 2);

        let mut tries = 0;
        let refused = on_free_ports("server", || -> anyhow::Result<()> {
            tries += 1;
            anyhow::bail!("bad configuration")
        });
        assert!(refused.is_err());
        assert_eq!(tries, 1);

        let mut tries = 0;
        let always = on_free_ports("server", || -> anyhow::Result<()> {
            tries += 1;
            anyhow::bail!("Address already in use")
        });
        assert!(always.is_err());
        assert_eq!(tries, 3, "three tries in all");
    }
}
