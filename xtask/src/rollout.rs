//! How CodeDeploy rolls a revision over a deployment group's instances: the deployment
//! configuration (`CodeDeployDefault.OneAtATime`, `HalfAtATime`, `AllAtOnce`, or a minimum
//! number of healthy hosts) and the batches of hosts it deploys to at once. `cargo xtask deploy`
//! names the configuration; the fleet test and `bench fleet` roll hosts out in these batches.

use anyhow::bail;

/// A deployment configuration, by its rule for how many hosts must stay healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentConfig {
    /// One host at a time; the deployment stops at the first that fails.
    OneAtATime,
    /// Up to half the hosts at a time (rounded down, at least one): at least half (rounded
    /// up) stay healthy.
    HalfAtATime,
    /// Every host at once: fastest, and with a load balancer every host is out of it at once.
    AllAtOnce,
    /// At least this many hosts stay healthy (a custom configuration, HOST_COUNT).
    MinimumHealthy(u32),
}

impl DeploymentConfig {
    /// `OneAtATime`, `HalfAtATime`, `AllAtOnce` (with or without `CodeDeployDefault.`), or
    /// `min-healthy=N`.
    pub fn parse(text: &str) -> anyhow::Result<DeploymentConfig> {
        let name = text.trim();
        let name = name.strip_prefix("CodeDeployDefault.").unwrap_or(name);
        Ok(match name {
            "OneAtATime" => DeploymentConfig::OneAtATime,
            "HalfAtATime" => DeploymentConfig::HalfAtATime,
            "AllAtOnce" => DeploymentConfig::AllAtOnce,
            other => match other.strip_prefix("min-healthy=").map(str::parse) {
                Some(Ok(n)) => DeploymentConfig::MinimumHealthy(n),
                _ => bail!(
                    "{text:?} is not a deployment configuration: use OneAtATime, HalfAtATime, AllAtOnce or min-healthy=N"
                ),
            },
        })
    }

    /// The name CodeDeploy knows it by: a predefined one, or the custom configuration
    /// `cargo xtask deploy` creates for a host count.
    pub fn codedeploy_name(self) -> String {
        match self {
            DeploymentConfig::OneAtATime => "CodeDeployDefault.OneAtATime".into(),
            DeploymentConfig::HalfAtATime => "CodeDeployDefault.HalfAtATime".into(),
            DeploymentConfig::AllAtOnce => "CodeDeployDefault.AllAtOnce".into(),
            DeploymentConfig::MinimumHealthy(n) => format!("hitsave-min-healthy-{n}"),
        }
    }

    /// How many of `hosts` are deployed to at once (never fewer than one).
    pub fn at_once(self, hosts: usize) -> usize {
        let n = match self {
            DeploymentConfig::OneAtATime => 1,
            DeploymentConfig::HalfAtATime => hosts / 2,
            DeploymentConfig::AllAtOnce => hosts,
            DeploymentConfig::MinimumHealthy(min) => hosts.saturating_sub(min as usize),
        };
        n.clamp(1, hosts.max(1))
    }

    /// The hosts `0..hosts` in the batches they are deployed in, in order.
    pub fn batches(self, hosts: usize) -> Vec<std::ops::Range<usize>> {
        let size = self.at_once(hosts);
        (0..hosts)
            .step_by(size)
            .map(|start| start..(start + size).min(hosts))
            .collect()
    }
}

impl std::fmt::Display for DeploymentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeploymentConfig::MinimumHealthy(n) => write!(f, "min-healthy={n}"),
            other => f.write_str(
                other
                    .codedeploy_name()
                    .trim_start_matches("CodeDeployDefault."),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeploymentConfig::{self, *};

    #[test]
    fn batches_follow_codedeploy() {
        assert_eq!(OneAtATime.batches(3), vec![0..1, 1..2, 2..3]);
        // Half, rounded down: 3 hosts go one at a time (two stay healthy), 4 two at a time,
        // 9 four at a time.
        assert_eq!(HalfAtATime.batches(3), vec![0..1, 1..2, 2..3]);
        assert_eq!(HalfAtATime.batches(4), vec![0..2, 2..4]);
        assert_eq!(HalfAtATime.at_once(9), 4);
        assert_eq!(HalfAtATime.batches(1), vec![0..1]);
        assert_eq!(AllAtOnce.batches(3), vec![0..3]);
        assert_eq!(MinimumHealthy(1).batches(3), vec![0..2, 2..3]);
        assert_eq!(MinimumHealthy(5).batches(3), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn names() {
        for (text, config) in [
            ("OneAtATime", OneAtATime),
            ("CodeDeployDefault.HalfAtATime", HalfAtATime),
            ("AllAtOnce", AllAtOnce),
            ("min-healthy=2", MinimumHealthy(2)),
        ] {
            assert_eq!(DeploymentConfig::parse(text).unwrap(), config);
            assert_eq!(
                DeploymentConfig::parse(&config.to_string()).unwrap(),
                config
            );
        }
        assert_eq!(
            HalfAtATime.codedeploy_name(),
            "CodeDeployDefault.HalfAtATime"
        );
        let err = DeploymentConfig::parse("TwoAtATime")
            .unwrap_err()
            .to_string();
        assert!(err.contains("OneAtATime, HalfAtATime, AllAtOnce"), "{err}");
    }
}
