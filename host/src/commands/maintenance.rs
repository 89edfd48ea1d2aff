//! `xtask maintenance on|off`: every host answers 503 with Retry-After (a page for the site,
//! JSON for the API); no container stops, nothing reloads. Under the install lock, so a
//! restore's maintenance is not ended under it.

use anyhow::bail;

use crate::commands::flags::RootFlag;
use crate::site::host::Host;
use crate::site::nginx;

/// The flags.
#[derive(clap::Args)]
pub struct MaintenanceArgs {
    #[command(subcommand)]
    switch: Switch,
}

#[derive(clap::Subcommand)]
enum Switch {
    /// Every host answers 503 with Retry-After (a page for the site, JSON for the API).
    On {
        #[command(flatten)]
        root: RootFlag,
        /// What the page and the JSON say.
        #[arg(
            long,
            default_value = "HitSave is down for maintenance; please try again in a few minutes."
        )]
        message: String,
    },
    /// Back to serving.
    Off {
        #[command(flatten)]
        root: RootFlag,
    },
}

/// How long `maintenance on|off` waits for an install, a restore or a rotation to finish.
const MAINTENANCE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// A session under the install lock: a restore's maintenance is not ended under it, nor an
/// operator's switched half-way through an install.
fn lock_for(host: &Host, what: &str) -> anyhow::Result<crate::site::session::Session> {
    crate::site::session::Session::begin(&host.root, what, MAINTENANCE_LOCK_WAIT)
}

pub fn maintenance(args: MaintenanceArgs) -> anyhow::Result<()> {
    match args.switch {
        Switch::On { root, message } => {
            let (host, _) = root.current()?;
            let _lock = lock_for(&host, "maintenance on")?;
            let dir = host.nginx_dir();
            if !nginx::supports_maintenance(&dir) {
                bail!(
                    "the current release's site has no maintenance mode (it predates it): install a newer release first"
                );
            }
            nginx::maintenance_on(&dir, &message, "operator")?;
            eprintln!(
                "xtask: maintenance is on: every host answers 503 with Retry-After {} s; `{}` ends it",
                nginx::RETRY_AFTER,
                crate::site::host::command("maintenance off", &root.root)
            );
        }
        Switch::Off { root } => {
            let (host, _) = root.current()?;
            let _lock = lock_for(&host, "maintenance off")?;
            nginx::maintenance_off(&host.nginx_dir())?;
            eprintln!("xtask: maintenance is off: the site serves");
        }
    }
    Ok(())
}
