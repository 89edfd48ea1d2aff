//! `xtask env list|remove|prune`: the environments of a preview host (`environments`).

use camino::Utf8PathBuf;

use crate::site::settings::{HOST_SETTINGS, HostSettings};

/// `env`'s flags.
#[derive(clap::Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    action: EnvAction,
    /// Host settings: KEY=VALUE lines (docs/operating.md lists the keys).
    #[arg(
        long,
        global = true,
        env = "HITSAVE_HOST_CONFIG",
        value_name = "FILE",
        default_value = HOST_SETTINGS
    )]
    config: Utf8PathBuf,
}

#[derive(clap::Subcommand)]
enum EnvAction {
    /// Every environment: its release, domain, last deploy, disk and memory.
    List {
        /// One JSON object per environment, one per line.
        #[arg(long)]
        json: bool,
    },
    /// One environment and everything of it (route, containers, volumes, network, secrets,
    /// certificate, releases); the others keep serving.
    Remove {
        /// The environment (`preview-42`, `staging`).
        name: String,
        /// Why, for the record in <root>/envs/history.jsonl.
        #[arg(long, default_value = "removed by hand")]
        reason: String,
    },
    /// Remove the previews whose CodeDeploy group is gone or that were not deployed for
    /// HITSAVE_PREVIEW_IDLE_DAYS (the hitsave-env-prune timer runs this).
    Prune {
        /// Do not ask CodeDeploy whether the groups exist (only idle previews go).
        #[arg(long)]
        no_group_check: bool,
    },
}

impl EnvArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        let settings = HostSettings::read(&self.config)?;
        match self.action {
            EnvAction::List { json } => list(&settings, json),
            EnvAction::Remove { name, reason } => {
                crate::environments::teardown::remove(&settings, &name, &reason)
            }
            EnvAction::Prune { no_group_check } => {
                let check: &crate::environments::teardown::GroupCheck<'_> = if no_group_check {
                    &|_, _| Ok(true)
                } else {
                    &crate::environments::teardown::codedeploy_group_exists
                };
                crate::environments::teardown::prune(&settings, check).map(|_| ())
            }
        }
    }
}

fn list(settings: &HostSettings, json: bool) -> anyhow::Result<()> {
    let envs = crate::environments::inventory::list(settings)?;
    if json {
        for env in &envs {
            println!("{}", serde_json::to_string(env)?);
        }
        return Ok(());
    }
    if envs.is_empty() {
        println!("no environments under {}/envs", settings.root);
        return Ok(());
    }
    println!(
        "{:<14} {:<34} {:<36} {:>8} {:>9} {:>9}",
        "ENVIRONMENT", "RELEASE", "DOMAIN", "IDLE", "DISK", "MEMORY"
    );
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / 1048576.0);
    for env in envs {
        println!(
            "{:<14} {:<34} {:<36} {:>7.1}d {:>9} {:>9}",
            env.name,
            env.release.as_deref().unwrap_or("-"),
            env.domain.as_deref().unwrap_or("-"),
            env.idle_days,
            mib(env.disk_bytes),
            mib(env.memory_bytes)
        );
    }
    Ok(())
}
