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
//! replaced by `-`) and `$PR_NUMBER` are substituted in `deploymentGroupName` (an entry with
//! `$PR_NUMBER` deploys pull requests only: outside one, its branches deploy nowhere). An entry may name
//! how the group's hosts are rolled out, `deploymentConfigName` (`rollout.rs`: OneAtATime,
//! HalfAtATime, AllAtOnce or min-healthy=N); without it, the group's own configuration.
//!
//! An entry may also say how to make its group when it does not exist (previews: a group per
//! pull request), `deploymentGroupConfig`, as webfactory's action reads it:
//!
//! ```yaml
//!   'pr-.*':
//!     deploymentGroupName: preview-$PR_NUMBER
//!     deploymentGroupConfig:
//!       serviceRoleArn: arn:aws:iam::123456789012:role/hitsave-codedeploy
//!       ec2TagFilters:
//!         - { Type: KEY_AND_VALUE, Key: hitsave-role, Value: preview }
//! ```
//!
//! A `serviceRoleArn` of `$NAME` is read from the environment variable NAME (the role's ARN
//! names the account; the workflow sets it from the repository's variables).
//! `cargo xtask deploy` creates the group when it is missing and updates it when its service
//! role or tag filters differ; `$BRANCH` and `$PR_NUMBER` are substituted in tag values too.

use anyhow::{Context, bail, ensure};
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
        /// `deploymentGroupConfig`: how to make the group when it is missing.
        group_config: Option<GroupConfig>,
    },
    /// A key matched with a `~` value.
    Skip { pattern: String },
    /// A key matched whose group is a pull request's (`$PR_NUMBER`), outside a pull request.
    PullRequestsOnly { pattern: String },
    /// No key matched.
    NoMatch,
}

/// How a deployment group is made: the role CodeDeploy acts as, and which instances it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `serviceRoleArn`.
    pub service_role_arn: String,
    /// `ec2TagFilters`: the instances of the group.
    pub ec2_tag_filters: Vec<TagFilter>,
}

impl GroupConfig {
    /// The configuration with a `$NAME` role read from the environment variable NAME: the
    /// role's ARN names the AWS account, so the repository may leave it to the workflow.
    pub fn resolved(&self) -> anyhow::Result<GroupConfig> {
        let Some(var) = self.service_role_arn.strip_prefix('$') else {
            return Ok(self.clone());
        };
        let arn = std::env::var(var).ok().filter(|v| !v.is_empty()).with_context(|| {
            format!("the group's serviceRoleArn is ${var}, which is not set (the workflow sets it from the repository's variables); nothing was deployed")
        })?;
        Ok(GroupConfig {
            service_role_arn: arn,
            ..self.clone()
        })
    }
}

/// One `ec2TagFilters` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TagFilter {
    /// `KEY_ONLY`, `VALUE_ONLY` or `KEY_AND_VALUE`.
    pub kind: String,
    /// The tag's key.
    pub key: String,
    /// The tag's value.
    pub value: String,
}

/// `deploymentGroupConfig` of entry `pattern`, with `subst` applied to tag values.
fn group_config(
    pattern: &str,
    value: &Yaml,
    subst: &dyn Fn(&str) -> String,
) -> anyhow::Result<Option<GroupConfig>> {
    let config = match value {
        Yaml::BadValue | Yaml::Null => return Ok(None),
        Yaml::Hash(h) => h,
        _ => bail!("branch_config {pattern:?}: deploymentGroupConfig must be a mapping"),
    };
    for key in config.keys() {
        let key = key.as_str().unwrap_or("?");
        if !matches!(key, "serviceRoleArn" | "ec2TagFilters") {
            bail!(
                "branch_config {pattern:?}: deploymentGroupConfig.{key} is not supported (serviceRoleArn and ec2TagFilters are)"
            );
        }
    }
    let role = value["serviceRoleArn"].as_str().with_context(|| {
        format!("branch_config {pattern:?}: deploymentGroupConfig needs serviceRoleArn")
    })?;
    let filters = value["ec2TagFilters"].as_vec().with_context(|| {
        format!("branch_config {pattern:?}: deploymentGroupConfig needs ec2TagFilters, a list")
    })?;
    let mut ec2_tag_filters = Vec::new();
    for f in filters {
        let field = |name: &str| {
            f[name].as_str().map(str::to_owned).with_context(|| {
                format!("branch_config {pattern:?}: an ec2TagFilters entry has no {name}")
            })
        };
        let kind = field("Type")?;
        if !matches!(kind.as_str(), "KEY_ONLY" | "VALUE_ONLY" | "KEY_AND_VALUE") {
            bail!(
                "branch_config {pattern:?}: ec2TagFilters Type {kind:?} is not KEY_ONLY, VALUE_ONLY or KEY_AND_VALUE"
            );
        }
        ec2_tag_filters.push(TagFilter {
            kind,
            key: field("Key")?,
            value: subst(&field("Value")?),
        });
    }
    ensure!(
        !ec2_tag_filters.is_empty(),
        "branch_config {pattern:?}: ec2TagFilters is empty, so the group would take no instance"
    );
    ec2_tag_filters.sort();
    Ok(Some(GroupConfig {
        service_role_arn: role.to_owned(),
        ec2_tag_filters,
    }))
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
            return Ok(Decision::PullRequestsOnly { pattern });
        }
        let subst = |text: &str| {
            text.replace("$BRANCH", &group_safe(branch))
                .replace("$PR_NUMBER", pr.as_deref().unwrap_or(""))
        };
        let deployment_group = subst(name);
        let group_config = group_config(&pattern, &value["deploymentGroupConfig"], &subst)?;
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
            group_config,
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
    fn group_configs() {
        let spec = "branch_config:\n  'pr-.*':\n    deploymentGroupName: preview-$PR_NUMBER\n    deploymentGroupConfig:\n      serviceRoleArn: arn:aws:iam::1:role/cd\n      ec2TagFilters:\n        - { Type: KEY_AND_VALUE, Key: pr, Value: $PR_NUMBER }\n        - { Type: KEY_ONLY, Key: hitsave-preview, Value: '' }\n  bad:\n    deploymentGroupName: x\n    deploymentGroupConfig:\n      serviceRoleArn: r\n      autoScalingGroups: [a]\n  main:\n    deploymentGroupName: production\n";
        match decide(spec, "pr-x", Some(42)).unwrap() {
            Decision::Deploy {
                deployment_group,
                group_config: Some(config),
                ..
            } => {
                assert_eq!(deployment_group, "preview-42");
                assert_eq!(config.service_role_arn, "arn:aws:iam::1:role/cd");
                assert_eq!(config.ec2_tag_filters.len(), 2);
                assert!(
                    config
                        .ec2_tag_filters
                        .iter()
                        .any(|f| f.key == "pr" && f.value == "42" && f.kind == "KEY_AND_VALUE")
                );
            }
            other => panic!("{other:?}"),
        }
        let err = format!("{:#}", decide(spec, "bad", None).unwrap_err());
        assert!(
            err.contains("deploymentGroupConfig.autoScalingGroups is not supported"),
            "{err}"
        );
        assert!(matches!(
            decide(spec, "main", None).unwrap(),
            Decision::Deploy {
                group_config: None,
                ..
            }
        ));
    }

    #[test]
    fn no_match_and_pull_requests() {
        let spec = "branch_config:\n  main:\n    deploymentGroupName: production\n  'pr-.*':\n    deploymentGroupName: pr-$PR_NUMBER\n";
        assert_eq!(decide(spec, "develop", None).unwrap(), Decision::NoMatch);
        assert_eq!(group(decide(spec, "pr-x", Some(42)).unwrap()), "pr-42");
        assert_eq!(
            decide(spec, "pr-x", None).unwrap(),
            Decision::PullRequestsOnly {
                pattern: "pr-.*".into()
            }
        );
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
