//! `xtask env remove NAME` and `xtask env prune`: an environment of a preview host goes
//! whole (its route, containers, volumes, network, secrets, certificate, releases and root),
//! and nothing of the others is touched. The order makes a killed removal safe to run again:
//!
//! 1. the root is renamed to `envs/.removing-<name>` (under the environment's lock, so no
//!    install runs in it): it is no longer an environment, so the front stops routing it;
//! 2. the front is reloaded without it (gracefully: the others keep every request);
//! 3. its compose project's containers, volumes and network go (by compose's labels);
//! 4. the renamed root goes.
//!
//! `prune` removes the previews whose CodeDeploy deployment group is gone (the pull request
//! was closed) or that were not deployed for HITSAVE_PREVIEW_IDLE_DAYS; a group that cannot
//! be asked about is never taken as gone.

use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::environments::inventory::docker;
use crate::site::placement::{self, envs_dir};
use crate::site::settings::{Env, HostSettings, Layout};

/// `<root>/envs/.removing-<name>`: an environment on its way out.
fn removing_dir(root: &Utf8Path, name: &str) -> Utf8PathBuf {
    envs_dir(root).join(format!(".removing-{name}"))
}

/// Removes environment `name` and everything of it; `reason` goes into the host's record.
/// Running it again after it was killed finishes the removal; an environment that is not
/// there (and left nothing) is reported, not an error.
pub fn remove(settings: &HostSettings, name: &str, reason: &str) -> anyhow::Result<()> {
    if settings.environments.layout != Layout::Many {
        bail!(
            "this host runs one environment (HITSAVE_ENVIRONMENTS is not many): there is no environment to remove; nothing was changed"
        );
    }
    let place = placement::locate(settings, name)?;
    let root = &settings.root;
    let leaving = removing_dir(root, &place.name);
    let started = std::time::Instant::now();
    let release = crate::site::host::Host {
        root: place.root.clone(),
    }
    .current();
    if place.root.is_dir() {
        // Waits for an install in it to finish; held until the rename, which takes it along.
        let _lock = crate::site::lock::InstallLock::acquire(
            &place.root.join("install.lock"),
            Duration::from_secs(600),
            &format!("removing environment {}", place.name),
        )?;
        std::fs::rename(&place.root, &leaving)
            .with_context(|| format!("cannot move {} out of the way", place.root))?;
    }
    let containers = labelled("ps", &["--all"], &place.project)?;
    if !leaving.exists() && containers.is_empty() {
        eprintln!(
            "xtask: env remove: there is no environment {} on this host; nothing to remove",
            place.name
        );
        return Ok(());
    }
    crate::environments::front::update(settings)?;
    remove_project(&place.project, &containers)?;
    if leaving.exists() {
        std::fs::remove_dir_all(&leaving).with_context(|| format!("cannot remove {leaving}"))?;
    }
    record(root, &place.name, release.as_deref(), reason)?;
    eprintln!(
        "xtask: env remove: {} removed ({reason}) in {:.1} s: its route, containers, volumes, network, secrets, certificate and releases",
        place.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The ids of `kind` (ps, volume ls, network ls) that compose labelled as `project`'s.
fn labelled(kind: &str, extra: &[&str], project: &str) -> anyhow::Result<Vec<String>> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut args: Vec<&str> = kind.split(' ').collect();
    args.extend_from_slice(extra);
    args.extend(["--quiet", "--filter", &label]);
    Ok(docker(&args)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Stops and removes the project's containers, then its volumes and networks.
fn remove_project(project: &str, containers: &[String]) -> anyhow::Result<()> {
    if !containers.is_empty() {
        let ids: Vec<&str> = containers.iter().map(String::as_str).collect();
        docker(&[&["stop", "--time", "10"][..], &ids].concat())?;
        docker(&[&["rm", "--force", "--volumes"][..], &ids].concat())?;
    }
    for (kind, rm) in [("volume ls", "volume"), ("network ls", "network")] {
        let ids = labelled(kind, &[], project)?;
        if !ids.is_empty() {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            docker(&[&[rm, "rm"][..], &ids].concat())?;
        }
    }
    Ok(())
}

/// One line in `<root>/envs/history.jsonl` per removal: when, what, why and who.
fn record(root: &Utf8Path, name: &str, release: Option<&str>, reason: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let line = serde_json::json!({
        "time": crate::kit::time::now_rfc3339(),
        "action": "env-remove",
        "environment": name,
        "release": release,
        "reason": reason,
        "by": crate::site::history::who(),
    });
    let path = envs_dir(root).join("history.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {path}"))?;
    writeln!(file, "{line}")?;
    file.sync_data()?;
    Ok(())
}

/// Whether a CodeDeploy deployment group still exists: `Some(false)` only when CodeDeploy
/// says it does not.
pub type GroupCheck<'a> = dyn Fn(&str, &str) -> anyhow::Result<bool> + 'a;

/// Removes the previews whose group is gone or that sat idle too long; finishes removals
/// that were killed. Returns the names removed.
pub fn prune(
    settings: &HostSettings,
    group_exists: &GroupCheck<'_>,
) -> anyhow::Result<Vec<String>> {
    if settings.environments.layout != Layout::Many {
        eprintln!(
            "xtask: env prune: this host runs one environment (HITSAVE_ENVIRONMENTS is not many); nothing to prune"
        );
        return Ok(Vec::new());
    }
    let root = &settings.root;
    let mut removed = Vec::new();
    for leftover in killed_removals(root)? {
        remove(settings, &leftover, "a removal that was stopped, finished")?;
        removed.push(leftover);
    }
    let max_idle = settings.environments.preview_idle_days;
    for env in crate::environments::inventory::list(settings)? {
        if !matches!(placement::environment_of(&env.name), Ok((Env::Preview, _))) {
            continue;
        }
        let reason = if env.idle_days > max_idle {
            Some(format!(
                "not deployed for {:.1} days (HITSAVE_PREVIEW_IDLE_DAYS={max_idle})",
                env.idle_days
            ))
        } else {
            group_gone(&envs_dir(root).join(&env.name), group_exists)
        };
        if let Some(reason) = reason {
            remove(settings, &env.name, &reason)?;
            removed.push(env.name);
        }
    }
    if removed.is_empty() {
        eprintln!("xtask: env prune: every environment is in use; nothing removed");
    }
    Ok(removed)
}

/// Why the environment in `dir` goes because of its group, if it does.
fn group_gone(dir: &Utf8Path, group_exists: &GroupCheck<'_>) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("group")).ok()?;
    let (application, group) = text.trim().split_once(' ')?;
    match group_exists(application, group) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "its CodeDeploy deployment group {group} (application {application}) is gone"
        )),
        Err(e) => {
            eprintln!(
                "xtask: env prune: cannot tell whether deployment group {group} exists, so it stays: {e:#}"
            );
            None
        }
    }
}

/// The environments whose removal was stopped after its first step.
fn killed_removals(root: &Utf8Path) -> anyhow::Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(envs_dir(root)) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(env) = name.strip_prefix(".removing-") {
            names.push(env.to_owned());
        }
    }
    Ok(names)
}

/// Asks CodeDeploy (the instance role's credentials; `AWS_ENDPOINT_URL_CODEDEPLOY` for
/// another endpoint) whether `group` of `application` exists.
pub fn codedeploy_group_exists(application: &str, group: &str) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let client = aws_sdk_codedeploy::Client::new(&config);
        match client
            .get_deployment_group()
            .application_name(application)
            .deployment_group_name(group)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| {
                    s.is_deployment_group_does_not_exist_exception()
                        || s.is_application_does_not_exist_exception()
                }) {
                    Ok(false)
                } else {
                    Err(anyhow::Error::new(e)
                        .context(format!("GetDeploymentGroup {application}/{group} failed")))
                }
            }
        }
    })
}
