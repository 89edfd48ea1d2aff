//! Which signed releases a host takes through CodeDeploy: one built from a branch that deploys
//! to the host's environment, and not older than what it already installed. Checked by the
//! resident program before the release's own program runs; a refusal changes nothing and says
//! the rule, the releases and the way past it.

use anyhow::bail;
use hitsave_schema::Manifest;

use crate::site::history::{Action, HistoryEntry, Outcome};
use crate::site::host::Host;
use crate::site::placement::environment_of;
use crate::site::settings::{Env, HostSettings};

/// host.env's list of the branches this host takes, instead of the release's branch_config.
pub const BRANCHES: &str = "HITSAVE_BRANCHES";
/// host.env's switch that lets an older release in (a deliberate downgrade).
pub const ALLOW_DOWNGRADE: &str = "HITSAVE_ALLOW_DOWNGRADE";

/// The release's branch deploys to `env`: by the host's own list (`HITSAVE_BRANCHES`, comma
/// separated, `*` matching any run of characters), else by the deployment group its signed
/// appspec.yml gave the branch when it was released.
pub fn check_branch(
    manifest: &Manifest,
    group: &str,
    env: Env,
    settings: &HostSettings,
) -> anyhow::Result<()> {
    let id = &manifest.release;
    let Some(branch) = manifest.branch.as_deref() else {
        bail!(
            "release {id} names no branch (it was released from a detached checkout), so it deploys to no environment: refused on this {} host; nothing was changed. Release it from a branch whose branch_config entry deploys here",
            env.name()
        );
    };
    if let Some(list) = &settings.branches {
        if list.iter().any(|pattern| glob_matches(pattern, branch)) {
            return Ok(());
        }
        let list = list.join(",");
        bail!(
            "release {id} was built from branch {branch}, which is not among the branches this host takes ({BRANCHES}={list} in the host settings): refused; nothing was changed. Deploy a release of one of them, or add the branch there"
        );
    }
    let deploys_to = manifest
        .bundle
        .as_ref()
        .and_then(|b| b.deployment_group.as_deref());
    let its_env = deploys_to.and_then(|g| environment_of(g).ok().map(|(env, _)| env));
    if its_env == Some(env) {
        return Ok(());
    }
    bail!(
        "release {id} was built from branch {branch}, which {} (appspec.yml's branch_config at its commit), not to this {} host (deployment group {group}): refused; nothing was changed. Deploy a release of a branch that deploys here, or name the branches this host takes in the host settings ({BRANCHES}=main,...)",
        deploys_to.map_or_else(
            || "deploys nowhere".to_owned(),
            |g| format!("deploys to deployment group {g}")
        ),
        env.name()
    )
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_matches(rest, &tail[i..]))
        }
    }
}

/// The release is not older than the newest one this host installed for its environment,
/// unless it is the one serving now (a redeploy of the last good revision, which is what
/// CodeDeploy's rollback of a failed deployment brings back to this host) or host.env says
/// `HITSAVE_ALLOW_DOWNGRADE=1`.
pub fn check_downgrade(
    host: &Host,
    manifest: &Manifest,
    env: Env,
    settings: &HostSettings,
) -> anyhow::Result<()> {
    let id = &manifest.release;
    let history = host.history()?;
    let Some(newest) = newest_installed(&history, env) else {
        return Ok(());
    };
    if id.commit_time() >= newest.release.commit_time() {
        return Ok(());
    }
    if host.current().as_ref() == Some(id) {
        eprintln!(
            "xtask: hook: release {id} is older than {}, but it is the release serving here: a redeploy of the last good revision",
            newest.release
        );
        return Ok(());
    }
    if settings.allow_downgrade {
        eprintln!(
            "xtask: hook: DOWNGRADE from {} to {id}, allowed by {ALLOW_DOWNGRADE} in the host settings (remove it once done)",
            newest.release
        );
        return Ok(());
    }
    bail!(
        "release {id} is older than {} (committed {} vs {}), which this {} host installed at {}{}: a downgrade, refused; nothing was changed. An older release is taken only while it is the one serving here (CodeDeploy's redeploy of the last good revision). To go back on purpose, set {ALLOW_DOWNGRADE}=1 in the host settings for that deployment, or run `xtask rollback --to {id}` on the host while it is still on disk",
        newest.release,
        id.commit_time(),
        newest.release.commit_time(),
        env.name(),
        newest.time,
        newest
            .deployment
            .as_deref()
            .map_or_else(String::new, |d| format!(" (deployment {d})"))
    )
}

/// The newest release (by commit time) this host installed and served for `env`; lines from
/// before history named the environment count for every one.
fn newest_installed(history: &[HistoryEntry], env: Env) -> Option<&HistoryEntry> {
    history
        .iter()
        .filter(|e| {
            e.action == Action::Install
                && matches!(e.outcome, Outcome::Installed | Outcome::AlreadyInstalled)
                && e.env.as_deref().is_none_or(|name| name == env.name())
        })
        .max_by(|a, b| a.release.commit_time().cmp(b.release.commit_time()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitsave_schema::{BundleRef, MANIFEST_SCHEMA, ReleaseId, Sha256};
    use std::collections::BTreeMap;

    fn manifest(id: &str, branch: Option<&str>, group: Option<&str>) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA,
            release: ReleaseId::new(id).unwrap(),
            commit: hitsave_schema::Commit::new("0".repeat(40)).unwrap(),
            commit_time: 0,
            branch: branch.map(Into::into),
            dirty: false,
            tools: BTreeMap::new(),
            artifacts: vec![],
            bundle: Some(BundleRef {
                sha256: Sha256::new("a".repeat(64)).unwrap(),
                size: 1,
                etag: None,
                version_id: None,
                files: vec![],
                deployment_group: group.map(Into::into),
            }),
            unsigned: false,
            migrations: None,
        }
    }

    #[test]
    fn branches_deploy_to_their_environment_only() {
        let none = HostSettings::defaults();
        let main = manifest(
            "20261101120000-0123456789ab",
            Some("main"),
            Some("production"),
        );
        check_branch(&main, "production", Env::Production, &none).unwrap();
        check_branch(&main, "production-eu", Env::Production, &none).unwrap();
        // A pull request's release (its branch_config entry names preview-$PR_NUMBER) goes to
        // any preview, and to nothing else; main's goes to no preview.
        let pr = manifest(
            "20261101120000-aaaaaaaaaaaa",
            Some("feature-x"),
            Some("preview-$PR_NUMBER"),
        );
        check_branch(&pr, "preview-42", Env::Preview, &none).unwrap();
        assert!(check_branch(&pr, "staging", Env::Staging, &none).is_err());
        assert!(check_branch(&pr, "production", Env::Production, &none).is_err());
        assert!(check_branch(&main, "preview-42", Env::Preview, &none).is_err());
        let err = check_branch(&main, "staging", Env::Staging, &none)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("branch main, which deploys to deployment group production")
                && err.contains("not to this staging host"),
            "{err}"
        );
        let staging = manifest(
            "20261101120000-0123456789ab",
            Some("staging"),
            Some("staging"),
        );
        assert!(check_branch(&staging, "production", Env::Production, &none).is_err());
        let wip = manifest("20261101120000-0123456789ab", Some("wip/x"), None);
        let err = check_branch(&wip, "production", Env::Production, &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("deploys nowhere"), "{err}");
        let detached = manifest("20261101120000-0123456789ab", None, Some("production"));
        assert!(check_branch(&detached, "production", Env::Production, &none).is_err());
        // The host's own list wins over the release's branch_config.
        let list = HostSettings {
            branches: Some(vec!["main".into(), "release/*".into()]),
            ..HostSettings::defaults()
        };
        check_branch(&main, "production", Env::Production, &list).unwrap();
        let release = manifest("20261101120000-0123456789ab", Some("release/1.2"), None);
        check_branch(&release, "production", Env::Production, &list).unwrap();
        let err = check_branch(&staging, "production", Env::Production, &list)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HITSAVE_BRANCHES=main,release/*"), "{err}");
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*c*e", "abcde"));
        assert!(!glob_matches("a*c", "abd"));
        assert!(!glob_matches("main", "mainline"));
    }
}
