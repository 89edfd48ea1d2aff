//! `branch_config` in appspec.yml, in the format of webfactory/create-aws-codedeploy-deployment:
//! which CodeDeploy deployment group a branch deploys to.
//!
//! ```yaml
//! branch_config:
//!   wip\/.*: ~                         # never deploy these
//!   main:
//!     deploymentGroupName: production
//!   '.*':
//!     deploymentGroupName: $BRANCH-staging
//! ```
//!
//! Keys are regular expressions, anchored at both ends and matched case-insensitively, tried in
//! the order they are written; the first match wins. A `~` (null) value means: do not deploy.
//! `$BRANCH` (the branch name with every character CodeDeploy does not allow in a group name
//! replaced by `-`) and `$PR_NUMBER` are substituted in `deploymentGroupName`. An entry may name
//! how the group's hosts are rolled out, `deploymentConfigName` (`rollout.rs`: OneAtATime,
//! HalfAtATime, AllAtOnce or min-healthy=N); without it, the group's own configuration.

use anyhow::{Context, bail};
use yaml_rust2::{Yaml, YamlLoader};

/// What a branch deploys to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Deploy to this deployment group; `pattern` is the key that matched.
    Deploy {
        pattern: String,
        deployment_group: String,
        /// `deploymentConfigName`, when the entry names one.
        deployment_config: Option<crate::rollout::DeploymentConfig>,
    },
    /// A key matched with a `~` value.
    Skip { pattern: String },
    /// No key matched.
    NoMatch,
}

/// Reads `branch_config` from appspec.yml's text and decides for `branch`.
pub fn decide(appspec: &str, branch: &str, pr_number: Option<u64>) -> anyhow::Result<Decision> {
    let docs = YamlLoader::load_from_str(appspec).context("appspec.yml is not valid YAML")?;
    let doc = docs.first().context("appspec.yml is empty")?;
    let config = match &doc["branch_config"] {
        Yaml::Hash(h) => h,
        Yaml::BadValue => bail!("appspec.yml has no branch_config section"),
        _ => bail!("branch_config in appspec.yml must be a mapping of patterns"),
    };
    for (key, value) in config {
        let pattern = match key {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => bail!("branch_config key {other:?} is not a pattern"),
        };
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .case_insensitive(true)
            .build()
            .with_context(|| {
                format!("branch_config pattern {pattern:?} is not a regular expression")
            })?;
        if !regex.is_match(branch) {
            continue;
        }
        if value.is_null() {
            return Ok(Decision::Skip { pattern });
        }
        let name = value["deploymentGroupName"]
            .as_str()
            .with_context(|| format!("branch_config {pattern:?} has no deploymentGroupName"))?;
        let pr = pr_number.map(|n| n.to_string());
        if name.contains("$PR_NUMBER") && pr.is_none() {
            bail!("branch_config {pattern:?} uses $PR_NUMBER, but this is not a pull request");
        }
        let deployment_group = name
            .replace("$BRANCH", &group_safe(branch))
            .replace("$PR_NUMBER", pr.as_deref().unwrap_or(""));
        let deployment_config = match &value["deploymentConfigName"] {
            Yaml::BadValue | Yaml::Null => None,
            Yaml::String(name) => Some(
                crate::rollout::DeploymentConfig::parse(name)
                    .with_context(|| format!("branch_config {pattern:?}: deploymentConfigName"))?,
            ),
            other => {
                bail!("branch_config {pattern:?}: deploymentConfigName {other:?} is not a name")
            }
        };
        return Ok(Decision::Deploy {
            pattern,
            deployment_group,
            deployment_config,
        });
    }
    Ok(Decision::NoMatch)
}

/// N from GITHUB_REF=refs/pull/N/merge (GitHub Actions on a pull request).
pub fn pr_from_github_ref() -> Option<u64> {
    let r = std::env::var("GITHUB_REF").ok()?;
    r.strip_prefix("refs/pull/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// CodeDeploy group names allow letters, digits, `.`, `_` and `-`.
fn group_safe(branch: &str) -> String {
    branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBFACTORY: &str = r#"
version: 0.0
branch_config:
    wip\/.*: ~
    main:
        deploymentGroupName: production
    staging:
        deploymentGroupName: staging
    '.*':
        deploymentGroupName: $BRANCH.staging.acme.com
"#;

    fn group(d: Decision) -> String {
        match d {
            Decision::Deploy {
                deployment_group, ..
            } => deployment_group,
            other => panic!("expected a deployment, got {other:?}"),
        }
    }

    #[test]
    fn deployment_configurations() {
        use crate::rollout::DeploymentConfig;
        let spec = "branch_config:\n  main:\n    deploymentGroupName: production\n    deploymentConfigName: OneAtATime\n  big:\n    deploymentGroupName: big\n    deploymentConfigName: min-healthy=2\n  bad:\n    deploymentGroupName: bad\n    deploymentConfigName: SomeAtATime\n  '.*':\n    deploymentGroupName: staging\n";
        let config = |branch| match decide(spec, branch, None).unwrap() {
            Decision::Deploy {
                deployment_config, ..
            } => deployment_config,
            other => panic!("{other:?}"),
        };
        assert_eq!(config("main"), Some(DeploymentConfig::OneAtATime));
        assert_eq!(config("big"), Some(DeploymentConfig::MinimumHealthy(2)));
        assert_eq!(config("feature"), None);
        let err = format!("{:#}", decide(spec, "bad", None).unwrap_err());
        assert!(
            err.contains("\"bad\": deploymentConfigName") && err.contains("OneAtATime"),
            "{err}"
        );
    }

    #[test]
    fn webfactory_examples() {
        assert_eq!(
            group(decide(WEBFACTORY, "main", None).unwrap()),
            "production"
        );
        assert_eq!(
            group(decide(WEBFACTORY, "staging", None).unwrap()),
            "staging"
        );
        assert_eq!(
            group(decide(WEBFACTORY, "feature/login", None).unwrap()),
            "feature-login.staging.acme.com"
        );
        assert_eq!(
            decide(WEBFACTORY, "wip/experiment", None).unwrap(),
            Decision::Skip {
                pattern: "wip\\/.*".into()
            }
        );
    }

    #[test]
    fn first_match_wins_and_matches_are_anchored_and_case_insensitive() {
        // "mainline" is not "main": anchored; it falls through to '.*'.
        assert_eq!(
            group(decide(WEBFACTORY, "mainline", None).unwrap()),
            "mainline.staging.acme.com"
        );
        assert_eq!(
            group(decide(WEBFACTORY, "MAIN", None).unwrap()),
            "production"
        );
    }

    #[test]
    fn no_match_and_pull_requests() {
        let spec = "branch_config:\n  main:\n    deploymentGroupName: production\n  'pr-.*':\n    deploymentGroupName: pr-$PR_NUMBER\n";
        assert_eq!(decide(spec, "develop", None).unwrap(), Decision::NoMatch);
        assert_eq!(group(decide(spec, "pr-x", Some(42)).unwrap()), "pr-42");
        assert!(decide(spec, "pr-x", None).is_err());
        assert!(decide("version: 0.0\n", "main", None).is_err());
        assert!(
            decide(
                "branch_config:\n  '(':\n    deploymentGroupName: x\n",
                "main",
                None
            )
            .is_err()
        );
    }
}
