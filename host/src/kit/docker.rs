//! One container, by name: its address, starting and removing it, its log and its last words.

use anyhow::Context;

use crate::kit::engine;

/// The container's address on its (first) network.
pub fn container_ip(container: &str) -> anyhow::Result<std::net::IpAddr> {
    ip_where(container, |_| true)?.with_context(|| format!("{container} has no address"))
}

/// The networks `container` is on, by name.
pub fn networks(container: &str) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let inspected = engine::container(container)?
        .with_context(|| format!("there is no container {container}"))?;
    Ok(inspected.network_settings.networks.into_keys().collect())
}

/// The container's address on one of `networks`: a container on several networks (an app
/// beside a shared database's) has an address on each, reachable only from that network.
pub fn ip_on(
    container: &str,
    networks: &std::collections::BTreeSet<String>,
) -> anyhow::Result<std::net::IpAddr> {
    ip_where(container, |network| networks.contains(network))?
        .with_context(|| format!("{container} has no address on {networks:?}"))
}

/// The container's first address on a network `on` accepts; None when it has none there.
fn ip_where(
    container: &str,
    on: impl Fn(&str) -> bool,
) -> anyhow::Result<Option<std::net::IpAddr>> {
    let inspected = engine::container(container)?
        .with_context(|| format!("there is no container {container}"))?;
    let ip = inspected
        .network_settings
        .networks
        .iter()
        .filter(|(network, _)| on(network))
        .map(|(_, n)| n.ip_address.as_str())
        .find(|ip| !ip.is_empty());
    ip.map(|ip| {
        ip.parse()
            .with_context(|| format!("{container} has an address that is not one: {ip:?}"))
    })
    .transpose()
}

/// How many lines of a failed container's log its error keeps.
const LOG_LINES: &str = "20";

/// What a container that failed said: its last health check's output and the last lines of
/// its log, as text to append to an error ("" when Docker has neither).
pub fn last_words(container: &str) -> String {
    let probe = engine::container(container)
        .ok()
        .flatten()
        .and_then(|c| c.state.health)
        .and_then(|h| h.log.last().map(|p| p.output.clone()))
        .unwrap_or_default();
    let probe = probe.trim().lines().last().unwrap_or_default().to_owned();
    let log = logs(container, &["--tail", LOG_LINES]);
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

/// The container's log (stdout and stderr together) as `docker logs` with `args` prints it
/// (`--tail N`, `--since T`); "" when it cannot be read.
pub fn logs(container: &str, args: &[&str]) -> String {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    all.push(container);
    duct::cmd("docker", all)
        .stderr_to_stdout()
        .unchecked()
        .read()
        .unwrap_or_default()
}

pub fn start(container: &str) -> anyhow::Result<()> {
    engine::start(container).with_context(|| format!("cannot start {container}"))
}
