//! Where an environment lives on this host. A host of one environment (production, staging)
//! keeps it in the install root, its nginx on the host's ports. A preview host (host.env
//! `HITSAVE_ENVIRONMENTS=many`) keeps each environment (`staging`, `preview-42`) apart:
//!
//! ```text
//! <root>/envs/<name>/        its own install root: releases, secrets, tls, history, lock
//! <root>/envs/<name>/ports   the two 127.0.0.1 ports its nginx answers on (HTTP, HTTPS)
//! <root>/envs/<name>/group   the CodeDeploy application and group that deploy it
//! <root>/envs/.lock          one placement at a time (ports are given out under it)
//! <root>/front/              the front that routes each domain to its environment
//! ```
//!
//! with its own compose project (`<project>-<name>`, so its own database volume and network).
//! A preview's secrets are made on its first deploy, never copied from another environment.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::site::settings::{Env, HostSettings, Layout};

/// An environment's name and kind, from the CodeDeploy group that deploys it: `production`,
/// `staging` (or `production-*`, `*-staging`, ...), `preview-<N>`.
pub fn environment_of(group: &str) -> anyhow::Result<(Env, String)> {
    let g = group.to_ascii_lowercase();
    if let Some(n) = g.strip_prefix("preview-") {
        if !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()) {
            return Ok((Env::Preview, g));
        }
        // A release's signed branch_config names the group before the number is known.
        if n == "$pr_number" || n == "${pr_number}" {
            return Ok((Env::Preview, "preview-$PR_NUMBER".into()));
        }
    }
    for env in [Env::Production, Env::Staging] {
        let name = env.name();
        if g == name || g.starts_with(&format!("{name}-")) || g.ends_with(&format!("-{name}")) {
            return Ok((env, name.to_owned()));
        }
    }
    bail!(
        "deployment group {group:?} names no environment: call it production or staging (or production-*, staging-*), or preview-<pull request number>"
    )
}

/// Where one environment lives and how it is reached.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Its kind (picks TLS, limits, HSTS).
    pub env: Env,
    /// Its name: `production`, `staging`, `preview-42`.
    pub name: String,
    /// Its install root.
    pub root: Utf8PathBuf,
    /// Its compose project.
    pub project: String,
    /// Where its nginx's ports are published (none: the install's default).
    pub bind: Option<IpAddr>,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    /// Its domain, when not its kind's (a preview's).
    pub domain: Option<String>,
    /// MiB its containers may use together, when capped (a preview's).
    pub memory_mib: Option<u64>,
}

/// The directory of every environment of a preview host.
pub fn envs_dir(root: &Utf8Path) -> Utf8PathBuf {
    root.join("envs")
}

/// The environments a preview host has (a directory each), by name.
pub fn list(root: &Utf8Path) -> anyhow::Result<Vec<String>> {
    let dir = envs_dir(root);
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e).with_context(|| format!("cannot read {dir}")),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && environment_of(&name).is_ok_and(|(_, n)| n == name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The previews among `names`.
pub fn previews(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| matches!(environment_of(n), Ok((Env::Preview, _))))
        .collect()
}

/// Where `name` is, without making anything: for the checks before a deploy and the
/// commands that read. Ports are what its `ports` file says (none before its first deploy).
pub fn locate(settings: &HostSettings, name: &str) -> anyhow::Result<Placement> {
    let (env, name) = environment_of(name)?;
    if settings.environments.layout == Layout::One {
        return Ok(Placement {
            env,
            name,
            root: settings.root.clone(),
            project: settings.project.clone(),
            bind: settings.bind,
            http_port: settings.http_port,
            https_port: settings.https_port,
            domain: None,
            memory_mib: None,
        });
    }
    let root = envs_dir(&settings.root).join(&name);
    let ports = read_ports(&root)?;
    let domain = match env {
        Env::Preview => Some(preview_domain(settings, &name)?),
        _ => None,
    };
    Ok(Placement {
        env,
        project: format!("{}-{name}", settings.project),
        bind: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        http_port: ports.map(|p| p.0),
        https_port: ports.map(|p| p.1),
        memory_mib: (env == Env::Preview).then_some(settings.environments.preview_memory_mib),
        domain,
        name,
        root,
    })
}

/// `pr-<N>.<preview domain>` for `preview-<N>`.
fn preview_domain(settings: &HostSettings, name: &str) -> anyhow::Result<String> {
    let domain = settings.environments.preview_domain.as_deref().with_context(|| {
        format!("{name} is a preview, but the host settings name no preview domain: set HITSAVE_PREVIEW_DOMAIN=preview.example.com (a wildcard DNS record points *.preview.example.com at this host)")
    })?;
    let n = name.trim_start_matches("preview-");
    Ok(format!("pr-{n}.{domain}"))
}

/// A new environment may be made here: a preview host takes staging and previews, at most
/// HITSAVE_PREVIEW_MAX previews; one that exists is always taken. Nothing is made.
pub fn admit(settings: &HostSettings, name: &str) -> anyhow::Result<()> {
    let (env, name) = environment_of(name)?;
    let layout = settings.environments.layout;
    if layout == Layout::One {
        if env == Env::Preview {
            bail!(
                "{name} is a preview, but this host runs one environment: deploy previews to a preview host (HITSAVE_ENVIRONMENTS=many in its host settings)"
            );
        }
        return Ok(());
    }
    if env == Env::Production {
        bail!(
            "this is a preview host (HITSAVE_ENVIRONMENTS=many): production runs on its own hosts, never beside previews"
        );
    }
    let existing = list(&settings.root)?;
    if env != Env::Preview || existing.contains(&name) {
        return Ok(());
    }
    preview_domain(settings, &name)?;
    let previews = previews(&existing);
    let max = settings.environments.preview_max;
    if previews.len() >= max {
        let names: Vec<&str> = previews.iter().map(|s| s.as_str()).collect();
        bail!(
            "{name} would be preview {} on this host, over its cap of {max} (HITSAVE_PREVIEW_MAX): nothing was made. Remove one first: `{}` (these run: {}); closed pull requests' previews go with `xtask env prune`",
            previews.len() + 1,
            crate::site::host::command("env remove NAME", &settings.root),
            names.join(", ")
        );
    }
    Ok(())
}

/// Where `name` is, making its root, its ports and (for a preview) its secrets when they are
/// missing; `group` is recorded for the check that its CodeDeploy group still exists.
pub fn place(
    settings: &HostSettings,
    name: &str,
    group: Option<(&str, &str)>,
) -> anyhow::Result<Placement> {
    let placement = locate(settings, name)?;
    if settings.environments.layout == Layout::One {
        return Ok(placement);
    }
    admit(settings, name)?;
    let envs = envs_dir(&settings.root);
    std::fs::create_dir_all(&envs).with_context(|| format!("cannot create {envs}"))?;
    let _lock = crate::site::lock::InstallLock::acquire(
        &envs.join(".lock"),
        std::time::Duration::from_secs(60),
        &format!("placing {name}"),
    )?;
    std::fs::create_dir_all(&placement.root)
        .with_context(|| format!("cannot create {}", placement.root))?;
    if placement.http_port.is_none() {
        let (http, https) = free_ports(&settings.root, settings.environments.first_port)?;
        crate::kit::files::replace_private(
            &placement.root.join("ports"),
            format!("{http} {https}\n").as_bytes(),
        )?;
    }
    if let Some((application, group)) = group {
        crate::kit::files::replace_private(
            &placement.root.join("group"),
            format!("{application} {group}\n").as_bytes(),
        )?;
    }
    if placement.env == Env::Preview {
        make_secrets(&settings.root, &placement.root.join("secrets"))?;
    }
    locate(settings, name)
}

/// The ports `<env root>/ports` names.
fn read_ports(root: &Utf8Path) -> anyhow::Result<Option<(u16, u16)>> {
    let file = root.join("ports");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {file}")),
    };
    let mut ports = text.split_whitespace().map(str::parse::<u16>);
    match (ports.next(), ports.next()) {
        (Some(Ok(http)), Some(Ok(https))) => Ok(Some((http, https))),
        _ => bail!("{file} should hold two ports (HTTP HTTPS), not {text:?}"),
    }
}

/// The lowest pair from `first` that no environment has and nothing listens on.
fn free_ports(root: &Utf8Path, first: u16) -> anyhow::Result<(u16, u16)> {
    let mut taken = std::collections::BTreeSet::new();
    for name in list(root)? {
        if let Some((http, https)) = read_ports(&envs_dir(root).join(name))? {
            taken.extend([http, https]);
        }
    }
    let free = |port: u16| {
        !taken.contains(&port) && std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
    };
    (first..u16::MAX - 1)
        .step_by(2)
        .find(|&p| free(p) && free(p + 1))
        .map(|p| (p, p + 1))
        .with_context(|| format!("no two free ports on 127.0.0.1 from {first} (HITSAVE_ENV_PORTS)"))
}

/// The preview secrets file a preview's `gh_client_secret` is copied from, when the operator
/// put one there (a GitHub OAuth app for previews only); otherwise previews get a random one
/// and GitHub login does not work in them.
pub const PREVIEW_SECRETS: &str = "preview-secrets";

/// A preview's secrets: each missing file made random (or, for the GitHub client secret, the
/// previews' own from `<root>/preview-secrets/`), never read from another environment.
fn make_secrets(root: &Utf8Path, dir: &Utf8Path) -> anyhow::Result<()> {
    crate::kit::files::create_private_dir(dir)?;
    for name in crate::site::secret_files::NAMES {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        let shared = root.join(PREVIEW_SECRETS).join(name);
        let value = match std::fs::read_to_string(&shared) {
            Ok(value) if *name == "gh_client_secret" => value.trim().to_owned(),
            _ => crate::kit::random::random_hex(24)?,
        };
        crate::kit::files::write_private(&path, &value)?;
    }
    crate::site::secret_files::hand_over(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_name_environments() {
        let of = |g| environment_of(g).unwrap();
        assert_eq!(of("production"), (Env::Production, "production".into()));
        assert_eq!(of("Production-eu"), (Env::Production, "production".into()));
        assert_eq!(of("pr-42-staging"), (Env::Staging, "staging".into()));
        assert_eq!(of("preview-42"), (Env::Preview, "preview-42".into()));
        assert_eq!(of("preview-$PR_NUMBER").0, Env::Preview);
        for bad in [
            "qa",
            "productionish",
            "preview-",
            "preview-x",
            "preview-1/2",
        ] {
            let err = environment_of(bad).unwrap_err().to_string();
            assert!(
                err.contains("preview-<pull request number>"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn admission_caps_previews_and_keeps_production_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = HostSettings::defaults();
        settings.root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let err = admit(&settings, "preview-1").unwrap_err().to_string();
        assert!(err.contains("this host runs one environment"), "{err}");
        admit(&settings, "production").unwrap();
        settings.environments.layout = Layout::Many;
        settings.environments.preview_max = 1;
        let err = admit(&settings, "preview-1").unwrap_err().to_string();
        assert!(err.contains("HITSAVE_PREVIEW_DOMAIN"), "{err}");
        settings.environments.preview_domain = Some("preview.example.com".into());
        assert!(admit(&settings, "production").is_err());
        admit(&settings, "staging").unwrap();
        admit(&settings, "preview-1").unwrap();
        std::fs::create_dir_all(envs_dir(&settings.root).join("preview-1")).unwrap();
        std::fs::create_dir_all(envs_dir(&settings.root).join("staging")).unwrap();
        admit(&settings, "preview-1").unwrap();
        let err = admit(&settings, "preview-2").unwrap_err().to_string();
        assert!(
            err.contains("over its cap of 1")
                && err.contains("these run: preview-1")
                && err.contains("env remove NAME")
                && err.contains("nothing was made"),
            "{err}"
        );
        assert!(!envs_dir(&settings.root).join("preview-2").exists());
        let place = locate(&settings, "preview-7").unwrap();
        assert_eq!(place.domain.as_deref(), Some("pr-7.preview.example.com"));
        assert_eq!(place.project, "hitsave-preview-7");
    }
}
