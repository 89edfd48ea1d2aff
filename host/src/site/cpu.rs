//! CPU weights on the host: requests being served come before deploy work.
//!
//! With Docker's cgroupfs driver on cgroup v1, every container sits under one cgroup
//! (`/docker`) whose CPU weight is that of a single host process. When a swap starts or stops a
//! container, runc, containerd, dockerd, compose and the kernel's workers all want the CPU at
//! once, and the whole serving stack (nginx, node, the API) gets one share among them: on a
//! 2-vCPU host that held web requests back 50 to 250 ms. So the install gives the containers'
//! parent cgroup ten times a host process's weight, and a new app container boots at the lowest
//! weight until it is warmed up, so it does not take CPU from the containers serving meanwhile.
//!
//! A weight only orders who waits: a Node app's boot and warm-up take both cores for tens of
//! milliseconds, and whatever is outside the containers' cgroup (the host's network stack, a
//! client on the host) waits behind them. So a booting container also gets at most half a CPU,
//! in 10 ms slices, until it is warmed up: on every host, whatever the cgroup version.
//!
//! Under cgroup v2, or with the systemd driver, each container is already a cgroup of its own
//! next to the host's services; weights are left as Docker sets them there.

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};

use crate::kit::ui::Ui;

/// Where cgroup v1 mounts the cpu controller (a link to `cpu,cpuacct` on most distributions).
pub const CPU_MOUNT: &str = "/sys/fs/cgroup/cpu";
/// The containers' parent cgroup: ten times the weight (1024) of a process on the host.
pub const PARENT_SHARES: u64 = 10 * 1024;
/// A container booting beside the live ones: the lowest weight cgroup v1 allows.
pub const BOOT_SHARES: u64 = 2;
/// A container once it serves: the default weight, the same as its neighbours.
pub const SERVING_SHARES: u64 = 1024;
/// A booting container's CPU time: `BOOT_QUOTA_US` in every `BOOT_PERIOD_US` (half a CPU; a
/// short period, so that it never holds both cores for long).
pub const BOOT_PERIOD_US: u64 = 10_000;
pub const BOOT_QUOTA_US: u64 = 5_000;
/// The kernel's default CFS period, given back with the quota lifted (-1: no limit).
pub const SERVING_PERIOD_US: u64 = 100_000;

/// Where a new container is in its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Started beside the live one, not yet warmed up: lowest weight, half a CPU.
    Boot,
    /// Warmed up, about to take traffic: the default weight, no CPU limit.
    Serving,
}

/// The CPU weights the install can set on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    /// cgroup v1: the containers' parent cgroup, as a directory under the cpu controller.
    V1 { parent: Utf8PathBuf },
    /// Left as Docker sets them.
    Default,
}

impl Weights {
    /// Finds where the running `container` sits and gives its parent cgroup the weight of
    /// `PARENT_SHARES`. Best effort: a host where that cannot be done keeps Docker's weights.
    /// `prioritise` on the cgroup of `stack`'s containers: its database's, else (an external
    /// database) any running one's; Docker's own weights when nothing runs yet.
    pub fn of_stack(ui: &Ui, stack: &crate::site::stack::Stack) -> anyhow::Result<Weights> {
        let containers = stack.containers()?;
        let running =
            |c: &&crate::site::stack::Container| c.state == crate::site::stack::State::Running;
        let pick = containers
            .iter()
            .filter(running)
            .find(|c| c.service == crate::site::app::Service::Db.name())
            .or_else(|| containers.iter().find(running));
        Ok(match pick {
            Some(c) => Self::prioritise(ui, &c.name),
            None => Weights::Default,
        })
    }

    pub fn prioritise(ui: &Ui, container: &str) -> Weights {
        match Self::find(container).and_then(|w| w.apply().map(|()| w)) {
            Ok(Weights::V1 { parent }) => {
                ui.info(&format!(
                    "CPU weight of the containers ({parent}): {PARENT_SHARES}, ten times a host process's, so requests come before deploy work"
                ));
                Weights::V1 { parent }
            }
            Ok(Weights::Default) => {
                ui.info("CPU weights left as Docker sets them: each container is a cgroup of its own beside the host's services here");
                Weights::Default
            }
            Err(e) => {
                ui.info(&format!("CPU weights left as Docker sets them: {e:#}"));
                Weights::Default
            }
        }
    }

    fn find(container: &str) -> anyhow::Result<Weights> {
        let pid = crate::kit::engine::container(container)
            .with_context(|| format!("cannot inspect {container}"))?
            .with_context(|| format!("there is no container {container}"))?
            .state
            .pid;
        let file = format!("/proc/{pid}/cgroup");
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
        Ok(match containers_parent(&text) {
            Some(parent) => Weights::V1 {
                parent: Utf8Path::new(CPU_MOUNT).join(parent.trim_start_matches('/')),
            },
            None => Weights::Default,
        })
    }

    fn apply(&self) -> anyhow::Result<()> {
        if let Weights::V1 { parent } = self {
            write_shares(parent, PARENT_SHARES)?;
        }
        Ok(())
    }

    /// Sets a container's CPU for `phase`: its weight where the install sets weights (cgroup
    /// v1), its CPU limit everywhere. One update through the engine's API.
    pub fn set_container(&self, container: &str, phase: Phase) -> anyhow::Result<()> {
        let (shares, period, quota) = match phase {
            Phase::Boot => (BOOT_SHARES, BOOT_PERIOD_US, BOOT_QUOTA_US as i64),
            Phase::Serving => (SERVING_SHARES, SERVING_PERIOD_US, -1),
        };
        let mut resources = serde_json::json!({ "CpuPeriod": period, "CpuQuota": quota });
        if *self != Weights::Default {
            resources["CpuShares"] = shares.into();
        }
        crate::kit::engine::update(container, resources)
            .with_context(|| format!("cannot set the CPU of {container} for {phase:?}"))?;
        Ok(())
    }
}

/// From a container's /proc/PID/cgroup, the cgroup v1 cpu controller's group that holds all
/// containers (`/docker` by default). None under cgroup v2, and under the systemd driver,
/// whose containers are scopes in a slice beside the host's services (raising the slice would
/// raise those services too).
fn containers_parent(proc_cgroup: &str) -> Option<&str> {
    let path = proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })?;
    let parent = Utf8Path::new(path).parent()?.as_str();
    (parent != "/" && !parent.is_empty() && !parent.ends_with(".slice")).then_some(parent)
}

/// A cgroup v1 group's cpu.shares.
pub fn shares(cgroup: &Utf8Path) -> anyhow::Result<u64> {
    let file = cgroup.join("cpu.shares");
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{file} holds no number: {text:?}"))
}

fn write_shares(cgroup: &Utf8Path, shares: u64) -> anyhow::Result<()> {
    if crate::site::cpu::shares(cgroup)? != shares {
        let file = cgroup.join("cpu.shares");
        std::fs::write(&file, shares.to_string()).with_context(|| {
            format!("cannot write {file} (the install runs as root on the host)")
        })?;
    }
    Ok(())
}

/// Lowers this process's CPU priority (and so that of the docker and compose processes it
/// starts): on a small host, deploy work must not slow the requests being served meanwhile.
pub fn yield_cpu() {
    // SAFETY: nice(2) only changes this process's scheduling priority.
    unsafe {
        libc::nice(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_containers_cgroup_under_cgroup_v1_and_cgroupfs_only() {
        let v1 = "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n";
        assert_eq!(containers_parent(v1), Some("/docker"));
        let custom = "5:cpuacct:/x/abc\n3:cpu:/hosting/docker/def\n";
        assert_eq!(containers_parent(custom), Some("/hosting/docker"));
        assert_eq!(containers_parent("6:cpuset:/docker/abc\n"), None);
        assert_eq!(containers_parent("4:cpu,cpuacct:/abc\n"), None);
        // The systemd driver (on v1), and cgroup v2.
        let systemd = "4:cpu,cpuacct:/system.slice/docker-abc.scope\n";
        assert_eq!(containers_parent(systemd), None);
        assert_eq!(
            containers_parent("0::/system.slice/docker-abc.scope\n"),
            None
        );
        assert_eq!(containers_parent("0::/docker/abc\n"), None);
    }
}
