//! `cargo xtask rollback [--to ID]`: runs a release that is already on the host again (the
//! previous one by default). No download and no migration: the schema stays as the newer
//! release left it, which the expand-then-contract rule for migrations keeps compatible.
//! The release's manifest, kept on disk with its signature, is checked against today's keys
//! first: a release whose key was revoked since it was installed does not run again.

use std::time::Instant;

use anyhow::bail;
use hitsave_schema::ReleaseId;

use crate::kit::time::now_rfc3339;
use crate::kit::ui::Ui;
use crate::release::install::{HostArgs, deploy};
use crate::release::trust::{Trust, TrustArgs};
use crate::release::unpack::SIGNATURE_FILE;
use crate::site::host::{Action, HistoryEntry, Host, Outcome};
use crate::site::lock::InstallLock;
use crate::site::stack::Stack;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    trust: TrustArgs,
    /// The release to go back to [default: previous].
    #[arg(long, value_name = "ID")]
    to: Option<ReleaseId>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::site::cpu::yield_cpu();
    let ui = Ui::new();
    let started = Instant::now();
    let host = Host::open(&args.host.root)?;
    let _lock = InstallLock::acquire(
        &host.lock_file(),
        std::time::Duration::from_secs(args.host.lock_timeout),
        &crate::site::host::command("rollback", &args.host.root),
    )?;
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
    let result = deploy(&ui, &host, &stack, &args.host, None, &mut outcome);
    host.record(&HistoryEntry {
        time: now_rfc3339(),
        action: Action::Rollback,
        release: target.clone(),
        previous: current,
        outcome: if result.is_ok() {
            Outcome::Installed
        } else {
            Outcome::Failed
        },
        deployment: std::env::var("DEPLOYMENT_ID").ok(),
        seconds: started.elapsed().as_secs_f64(),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
        backup: None,
        backup_skipped: false,
        by: crate::site::host::who(),
        signed_by: Some(
            verified
                .key
                .map_or_else(|| "unsigned".to_owned(), |k| k.to_string()),
        ),
        channel: None,
        secret: None,
        env: None,
    })?;
    result?;
    ui.info(&format!("release {target} serves again"));
    Ok(())
}
