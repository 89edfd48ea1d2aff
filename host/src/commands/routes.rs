//! `xtask routes`: nginx pointed again at the app containers' current addresses. After a
//! reboot, or a restart by Docker's restart policy, a container can come back on another
//! address; nginx still reaches it by name (the fallback of its upstream group), after a
//! refused or timed-out connect once per worker per 30 s. Run at boot and every minute by
//! hitsave-routes.timer (deploy/aws/user-data.sh); an install renders the addresses itself.

use crate::commands::flags::RootFlag;
use crate::site::app::App;

/// The flags.
#[derive(clap::Args)]
pub struct RoutesArgs {
    #[command(flatten)]
    root: RootFlag,
}

/// How long it waits for an install, a restore or a rotation (which render the addresses
/// themselves) to finish.
const ROUTES_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub fn routes(args: RoutesArgs) -> anyhow::Result<()> {
    let (host, stack) = args.root.current()?;
    let _lock = crate::site::session::Session::begin(&host.root, "routes", ROUTES_LOCK_WAIT)?;
    let (upstreams, changed) = crate::site::swap::readdress(&stack, &host.nginx_dir())?;
    let each: Vec<String> = App::ALL
        .iter()
        .map(|&app| match upstreams.address(app) {
            Some(at) => format!("{} at {at} ({})", app.service(), upstreams.get(app)),
            None => format!("{} by name only ({})", app.service(), upstreams.get(app)),
        })
        .collect();
    eprintln!(
        "xtask: routes: nginx reaches {}{}",
        each.join(", "),
        if changed {
            ": rendered again and reloaded"
        } else {
            ": as it did already"
        }
    );
    Ok(())
}
