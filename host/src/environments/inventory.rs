//! What each environment of a preview host is: its release, domain, when it was last
//! deployed, and what it takes (disk: its root and its database volume; memory: its
//! containers now). `xtask env list` prints it; `teardown` decides on its age.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use camino::Utf8Path;
use serde::Serialize;

use crate::site::history::{Action, Outcome};
use crate::site::host::Host;
use crate::site::placement;
use crate::site::release_env::ReleaseEnv;
use crate::site::settings::HostSettings;

/// One environment as `env list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    /// The release it serves, if any.
    pub release: Option<String>,
    pub domain: Option<String>,
    /// When a release was last installed (or found installed) there, RFC 3339.
    pub deployed: Option<String>,
    /// Days since then (since the root was made, before a first install).
    pub idle_days: f64,
    /// Bytes of its root and its database volume.
    pub disk_bytes: u64,
    /// Bytes its running containers use now.
    pub memory_bytes: u64,
    /// Its compose project.
    pub project: String,
}

/// Every environment of the host, by name.
pub fn list(settings: &HostSettings) -> anyhow::Result<Vec<Environment>> {
    placement::list(&settings.root)?
        .into_iter()
        .map(|name| describe(settings, &name))
        .collect()
}

/// One environment.
pub fn describe(settings: &HostSettings, name: &str) -> anyhow::Result<Environment> {
    let place = placement::locate(settings, name)?;
    let host = Host {
        root: place.root.clone(),
    };
    let current = host.current();
    let env = match &current {
        Some(id) => Some(ReleaseEnv::read(&host.release_dir(id).join("release.env"))?),
        None => None,
    };
    let deployed = last_deployed(&host)?;
    let since = match &deployed {
        Some(time) => humantime::parse_rfc3339(time).ok(),
        None => std::fs::metadata(&place.root)
            .and_then(|m| m.modified())
            .ok(),
    };
    let idle = since
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    Ok(Environment {
        name: name.to_owned(),
        release: current.map(String::from),
        domain: env
            .as_ref()
            .and_then(|e| e.domain().ok().map(str::to_owned)),
        deployed,
        idle_days: idle.as_secs_f64() / 86_400.0,
        disk_bytes: size_of(&place.root) + volume_bytes(&place.project),
        memory_bytes: memory_bytes(&place.project),
        project: place.project,
    })
}

/// The time of the last install that left a release serving, from the environment's history.
fn last_deployed(host: &Host) -> anyhow::Result<Option<String>> {
    if !host.history_file().exists() {
        return Ok(None);
    }
    Ok(host
        .history()?
        .into_iter()
        .filter(|e| {
            e.action == Action::Install
                && matches!(e.outcome, Outcome::Installed | Outcome::AlreadyInstalled)
        })
        .map(|e| e.time)
        .next_back())
}

/// Bytes of the files under `dir` (links not followed).
fn size_of(dir: &Utf8Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Bytes of the project's volumes (their directories on this host; root can read them).
fn volume_bytes(project: &str) -> u64 {
    let label = format!("label=com.docker.compose.project={project}");
    let Ok(names) = docker(&["volume", "ls", "--quiet", "--filter", &label]) else {
        return 0;
    };
    names
        .lines()
        .filter_map(|v| docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", v]).ok())
        .map(|dir| size_of(Utf8Path::new(dir.trim())))
        .sum()
}

/// Bytes the project's running containers use (`docker stats`).
fn memory_bytes(project: &str) -> u64 {
    let label = format!("label=com.docker.compose.project={project}");
    let Ok(ids) = docker(&["ps", "--quiet", "--filter", &label]) else {
        return 0;
    };
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return 0;
    }
    let args = [
        &["stats", "--no-stream", "--format", "{{.MemUsage}}"][..],
        &ids,
    ]
    .concat();
    docker(&args).map_or(0, |out| {
        out.lines()
            .filter_map(|l| l.split('/').next())
            .filter_map(parse_size)
            .sum()
    })
}

/// `12.5MiB`, `1.2GiB`, `512KiB`, `100B` as docker prints them.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "B" => 1.0,
        "KiB" | "kB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number.trim().parse::<f64>().ok()? * factor) as u64)
}

/// `docker ...`'s standard output.
pub(crate) fn docker(args: &[&str]) -> anyhow::Result<String> {
    duct::cmd("docker", args)
        .stdin_null()
        .stderr_capture()
        .read()
        .with_context(|| format!("docker {} failed", args.join(" ")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_sizes() {
        assert_eq!(super::parse_size("12.5MiB "), Some(13_107_200));
        assert_eq!(super::parse_size("1GiB"), Some(1 << 30));
        assert_eq!(super::parse_size("100B"), Some(100));
        assert_eq!(super::parse_size("lots"), None);
    }
}
