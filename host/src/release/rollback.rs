//! `cargo xtask rollback [--to ID]`: runs a release that is already on the host again (the
//! previous one by default). No download and no migration: the schema stays as the newer
//! release left it, which the expand-then-contract rule for migrations keeps compatible.
//! The release's manifest, kept on disk with its signature, is checked against today's keys
//! first: a release whose key was revoked since it was installed does not run again.

use anyhow::bail;
use hitsave_schema::ReleaseId;

use crate::release::install::{HostOptions, deploy, watch_or_roll_back};
use crate::release::trust::{Trust, TrustOptions};
use crate::release::unpack::SIGNATURE_FILE;
use crate::site::history::{Action, HistoryEntry, Outcome};
use crate::site::session::Session;
use crate::site::stack::Stack;

/// Which release to run again, and how.
pub struct RollbackOptions {
    /// The install root and its waits.
    pub host: HostOptions,
    /// The keys its manifest must still be signed by.
    pub trust: TrustOptions,
    /// The release to go back to [default: previous].
    pub to: Option<ReleaseId>,
    /// The watch after its cutover: a release that serves worse than the one it replaced
    /// goes back to it.
    pub watch: crate::site::settings::WatchSettings,
}

pub fn run(args: RollbackOptions) -> anyhow::Result<()> {
    let session = Session::begin(
        &args.host.root,
        "rollback",
        std::time::Duration::from_secs(args.host.lock_timeout),
    )?;
    let (ui, host) = (&session.ui, &session.host);
    let current = host.current();
    let target = match (&args.to, host.previous()) {
        (Some(id), _) => id.clone(),
        (None, Some(previous)) => previous,
        (None, None) => bail!("there is no previous release on this host; name one with --to"),
    };
    if !host.has_release(&target) {
        bail!(
            "release {target} is not on this host (on disk: {}); rollback never downloads: install it instead",
            ReleaseId::list(&host.releases()?)
        );
    }
    if current.as_deref() == Some(target.as_str()) {
        bail!("release {target} is already current");
    }
    // On the host's own disk, as local as a store can be.
    let trust = Trust::new(&args.trust, true)?;
    let dir = host.release_dir(&target);
    let verified = crate::release::verify::check_manifest(
        &format!("the manifest of release {target} in {dir}"),
        &target,
        std::fs::read(dir.join("manifest.json"))?,
        std::fs::read(dir.join(SIGNATURE_FILE)).ok(),
        &trust,
    )?;
    ui.info(&format!(
        "rolling back from {} to {target}",
        current.as_deref().unwrap_or("nothing")
    ));
    let stack = Stack::open(&host.release_dir(&target))?;
    let mut outcome = Outcome::Failed;
    let cutover = crate::release::watch::now_seconds();
    let result = deploy(ui, host, &stack, &args.host, None, &mut outcome).and_then(|()| {
        match watch_or_roll_back(ui, host, &stack, &args.host, cutover, &args.watch)? {
            Some(why) => Err(anyhow::anyhow!(why).context("rolled back again")),
            None => Ok(()),
        }
    });
    let mut entry = HistoryEntry::new(Action::Rollback, target.clone());
    entry.previous = current;
    entry.signed_by = Some(verified.signed_by());
    let outcome = match &result {
        Ok(()) => Outcome::Installed,
        Err(e) if format!("{e}") == "rolled back again" => Outcome::RolledBack,
        Err(_) => Outcome::Failed,
    };
    session.finish(entry, outcome, result)?;
    ui.info(&format!("release {target} serves again"));
    Ok(())
}
