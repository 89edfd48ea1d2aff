//! Docker commands on one container, by name: inspect, start, remove, its address and its last words.

use anyhow::Context;

/// `docker inspect --format format container`, trimmed.
pub fn inspect(container: &str, format: &str) -> anyhow::Result<String> {
    Ok(
        duct::cmd!("docker", "inspect", "--format", format, container)
            .read()?
            .trim()
            .to_owned(),
    )
}

pub fn container_ip(container: &str) -> anyhow::Result<std::net::IpAddr> {
    let ips = inspect(
        container,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
    )?;
    let ip = ips
        .split_whitespace()
        .next()
        .with_context(|| format!("{container} has no address"))?;
    ip.parse()
        .with_context(|| format!("{container} has an address that is not one: {ip:?}"))
}

/// How many lines of a failed container's log its error keeps.
const LOG_LINES: &str = "20";

/// What a container that failed said: its last health check's output and the last lines of
/// its log, as text to append to an error ("" when Docker has neither).
pub fn last_words(container: &str) -> String {
    let probe = inspect(
        container,
        "{{if .State.Health}}{{range .State.Health.Log}}{{.Output}}{{end}}{{end}}",
    )
    .unwrap_or_default();
    let probe = probe.trim().lines().last().unwrap_or_default().to_owned();
    let log = duct::cmd!("docker", "logs", "--tail", LOG_LINES, container)
        .stderr_to_stdout()
        .unchecked()
        .read()
        .unwrap_or_default();
    let mut out = String::new();
    if !probe.is_empty() {
        out.push_str(&format!("; its last health check said: {probe}"));
    }
    if !log.trim().is_empty() {
        let lines: Vec<String> = log.lines().map(|l| format!("  | {l}")).collect();
        out.push_str(&format!(
            "; the last lines of its log:\n{}",
            lines.join("\n")
        ));
    }
    out
}

pub fn start(container: &str) -> anyhow::Result<()> {
    duct::cmd!("docker", "start", container)
        .stdout_null()
        .run()
        .with_context(|| format!("cannot start {container}"))?;
    Ok(())
}

pub fn remove(container: &str) -> anyhow::Result<()> {
    duct::cmd!("docker", "rm", "--force", "--volumes", container)
        .stdout_null()
        .run()
        .with_context(|| format!("cannot remove {container}"))?;
    Ok(())
}
