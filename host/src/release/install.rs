//! `cargo xtask install`: what the CodeDeploy hooks run on the host. Takes the lock, fetches
//! and verifies a release, unpacks it, checks the host, builds the runtime images, migrates,
//! swaps the compose stack, gates on health (bringing the old release back if the new one does
//! not become healthy), flips `current`, records the outcome and prunes.
//!
//! Every step can be repeated: a crash anywhere leaves a state the next install completes
//! from, and installing what already runs healthy is a quick no-op.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::kit::store::{self, StoreLocation};
use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{Manifest, ReleaseId};

use crate::kit::ui::Ui;
use crate::release::trust::{Trust, TrustOptions};
use crate::release::verify::Verified;
use crate::site::app::App;
use crate::site::history::{Action, HistoryEntry, Outcome};
use crate::site::host::Host;
use crate::site::session::Session;
use crate::site::settings::{Env, base_images};
use crate::site::stack::{ReleaseEnv, Stack};

/// How many releases stay on disk (besides current and previous, which always stay).
pub const KEEP_RELEASES: usize = 5;

/// Where the stack lives on the host and how long to wait: shared by install and rollback.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The install root.
    pub root: Utf8PathBuf,
    /// How long to wait for another install to finish.
    pub lock_timeout: u64,
    /// How long the new version has to become healthy before the old one is brought back.
    pub health_timeout: u64,
    /// How app containers are replaced: blue/green (no request dropped) or in place.
    pub strategy: crate::site::swap::Strategy,
    /// Print how long each step took at the end.
    pub timings: bool,
}

/// What to install and how.
pub struct InstallOptions {
    /// The store the release is in.
    pub store: StoreLocation,
    /// The release.
    pub which: crate::release::verify::Which,
    /// The keys it must be signed by.
    pub trust: TrustOptions,
    /// Install what --channel names even when it is older than the newest release this host
    /// installed from that channel (a channel that goes back in time is refused otherwise: it
    /// may be an attacker replaying an old, vulnerable release).
    pub allow_downgrade: bool,
    /// The install root and its waits.
    pub host: HostOptions,
    /// How the host gets its certificate.
    pub tls: crate::site::settings::TlsSettings,
    /// Which deployment this host is: picks the domain, the ports and TLS.
    pub env: Env,
    /// The environment's name when it is not its kind's (`preview-42`): its backups,
    /// history and HSTS go by it.
    pub name: Option<String>,
    /// The domain the site serves, when not its kind's (a preview's `pr-42.<preview domain>`).
    pub domain: Option<String>,
    /// MiB the stack's containers may use together, split among the services (a preview's
    /// cap); otherwise each service's own limit for the kind of environment.
    pub memory_mib: Option<u64>,
    /// The compose project name (containers are <project>-<service>-N).
    pub project: String,
    /// The host address nginx's ports are published on [default: 0.0.0.0; local: 127.0.0.1].
    pub bind: Option<std::net::IpAddr>,
    /// The host port nginx serves HTTP on [default: 80; local: 8080].
    pub http_port: Option<u16>,
    /// The host port nginx serves HTTPS on [default: 443; local: 8443].
    pub https_port: Option<u16>,
    /// Build on the base images `cargo xtask images` makes from Debian's packages, for hosts
    /// that reach no registry; otherwise the official images.
    pub local_base_images: bool,
    /// An external database, if any.
    pub db: crate::site::settings::ExternalDb,
    /// A CloudWatch Logs group the containers log to besides the host, if any.
    pub logs: crate::site::settings::LogsSettings,
    /// The data volume's mount point: the database's files go under it.
    pub data_dir: Option<camino::Utf8PathBuf>,
    /// Strict-Transport-Security's max-age, in seconds, once the site serves HTTPS
    /// [default: a year in production, a day in staging].
    pub hsts_max_age: Option<u64>,
    /// Apply pending migrations without taking a backup first (history says so).
    pub skip_backup: bool,
    /// Stop after this step, leaving the running stack as it is (the CodeDeploy hooks split
    /// an install over BeforeInstall, AfterInstall and ApplicationStart this way).
    pub until: Option<Until>,
    /// The watch after the cutover (`watch.rs`): seconds 0 turns it off; the CodeDeploy hooks
    /// install with it off and watch in ValidateService.
    pub watch: crate::site::settings::WatchSettings,
    /// The host's settings when a front routes to this environment (a preview host): it is
    /// routed as soon as it serves, before its certificate is asked for, so the CA's
    /// challenge reaches it.
    pub front: Option<crate::site::settings::HostSettings>,
}

/// Where an install may stop, leaving the running stack as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Downloaded, verified and unpacked into releases/<id>.
    Fetched,
    /// Also: the host checked (secrets, Docker, disk, TLS, platform) and the runtime images
    /// built.
    Prepared,
}

crate::choice!(Until {
    Fetched => "fetched", "downloaded, verified and unpacked into releases/<id>";
    Prepared => "prepared", "also: the host checked (secrets, Docker, disk, TLS, platform) and the runtime images built";
});

pub fn run(args: InstallOptions) -> anyhow::Result<()> {
    let session = Session::begin(
        &args.host.root,
        "install",
        Duration::from_secs(args.host.lock_timeout),
    )?;
    let (ui, host) = (&session.ui, &session.host);
    crate::release::unpack::clean_leftovers(host)?;
    let Some(_) = args.store.store.as_deref() else {
        bail!("name the artifact store: --store DIR|s3://BUCKET/PREFIX (or HITSAVE_STORE)");
    };
    let store = store::open(&args.store, Utf8Path::new("."))?;
    store.check()?;
    let trust = Trust::new(&args.trust, store.is_local())?;
    let id = crate::release::verify::resolve(store.as_ref(), &args.which, &trust)?;
    // The signature, before anything else: nothing is downloaded, recorded or changed for a
    // release this host does not trust.
    let verified = crate::release::verify::read_manifest(store.as_ref(), &id, &trust)?;
    check_downgrade(host, &args, &id)?;
    match &verified.key {
        Some(key) => ui.info(&format!(
            "release {id}: signed by key {key} (checked in {:.2} ms; read and checked in {:.1} ms)",
            verified.seconds * 1000.0,
            verified.read_seconds * 1000.0
        )),
        None => ui.info(&format!(
            "release {id} is UNSIGNED: installed only because of --allow-unsigned"
        )),
    }
    let mut entry = HistoryEntry::new(Action::Install, id.clone());
    entry.previous = host.current();
    entry.signed_by = Some(verified.signed_by());
    entry.channel = args.which.channel().cloned();
    entry.env = Some(args.env.name().to_owned());
    let mut outcome = Outcome::Failed;
    let mut migrations = Migrations {
        store: Some(store.as_ref()),
        skip_backup: args.skip_backup,
        backup: None,
        skipped: false,
    };
    let result = install(ui, host, &verified, &args, &mut migrations, &mut outcome);
    if args.host.timings {
        eprint!("xtask: the install's steps:\n{}", ui.timings());
    }
    entry.backup = migrations.backup.clone();
    entry.backup_skipped = migrations.skipped;
    session.finish(entry, outcome, result)?;
    ui.info(&format!(
        "release {id} {} in {:.1} s",
        match outcome {
            Outcome::Installed => "installed and serving",
            Outcome::Fetched => "downloaded, verified and unpacked (the stack is unchanged)",
            Outcome::Prepared =>
                "ready to start: host checked, images built (the stack is unchanged)",
            _ => "already installed and serving",
        },
        session.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A channel pointer that goes back in time from what this host installed from that channel
/// is refused unless `--allow-downgrade` (a rollback to a release on disk stays possible).
fn check_downgrade(host: &Host, args: &InstallOptions, id: &ReleaseId) -> anyhow::Result<()> {
    let Some(channel) = args.which.channel() else {
        return Ok(());
    };
    let Some(newest) = host.newest_from_channel(channel)? else {
        return Ok(());
    };
    if id.commit_time() < newest.commit_time() && !args.allow_downgrade {
        bail!(
            "channel {channel} points at release {id}, older than {newest}, which this host already installed from it: refused (a channel moved back may be a replay of an old release). Nothing was changed. To go back on purpose, install with --allow-downgrade, or run a release still on disk again: `{}`",
            crate::site::host::command("rollback --to ID", &host.root)
        );
    }
    Ok(())
}

fn install(
    ui: &Ui,
    host: &Host,
    verified: &Verified,
    args: &InstallOptions,
    migrations: &mut Migrations,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let store = migrations.store.context("install needs a store")?;
    let manifest = &verified.manifest;
    let id = &manifest.release;
    let env = release_env(host, manifest, args)?;
    if host.current().as_ref() == Some(id) {
        let stack = Stack::open(&host.release_dir(id))?;
        if stack.env == env && stack.serving()?.is_ok() {
            *outcome = Outcome::AlreadyInstalled;
            return Ok(());
        }
        ui.info(&format!(
            "release {id} is current but not serving, or its settings changed; installing it again"
        ));
    }
    ui.info(&format!(
        "installing release {id} (commit {}) into {}",
        manifest.commit, host.root
    ));
    // Before release.env is written: a re-install of the current release writes the same file.
    crate::release::preflight::database_dir(&env)?;
    crate::release::preflight::room_to_unpack(host, manifest)?;
    crate::release::fetch::fetch(ui, host, store, manifest)?;
    let dir = crate::release::unpack::unpack_release(host, verified)?;
    env.write(&dir.join("release.env"))?;
    let stack = Stack::open(&dir)?;
    if args.until == Some(Until::Fetched) {
        *outcome = Outcome::Fetched;
        return Ok(());
    }

    check_host_and_prune(ui, host, &stack, manifest, args)?;
    if args.until == Some(Until::Prepared) {
        let built = stack.build_images()?;
        if !built.is_empty() {
            ui.info(&format!("built {}", built.join(", ")));
        }
        *outcome = Outcome::Prepared;
        return Ok(());
    }
    cut_over(ui, host, &stack, args, migrations, outcome)?;
    if let Some(settings) = &args.front
        && let Err(e) = crate::environments::front::update(settings)
    {
        ui.info(&format!(
            "WARNING: the front does not route this environment yet: {e:#}"
        ));
    }
    if args.env.tls() {
        // The release serves (over HTTP at least); a certificate problem must not undo that.
        match crate::tls::apply(ui, host, &stack, &args.tls, false) {
            Ok(crate::tls::Outcome::LeftAlone(why) | crate::tls::Outcome::Deferred(why)) => {
                ui.info(&why)
            }
            Ok(_) => {}
            Err(e) => ui.info(&format!("WARNING: {e:#}")),
        }
    }
    if let Err(e) = crate::database::restore::prune_replaced(ui, host, &stack) {
        ui.info(&format!(
            "dropping the databases restores replaced failed (the install goes on): {e:#}"
        ));
    }
    Ok(())
}

/// The swap to `stack` (`deploy`), recorded as the last cutover, then watched when the
/// install asks for it: a release that fails its watch is rolled back and this fails.
fn cut_over(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    args: &InstallOptions,
    migrations: &mut Migrations,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let cutover = crate::release::watch::Cutover {
        release: stack.env.release()?.to_string(),
        previous: host.current().map(String::from),
        at: crate::release::watch::now_seconds(),
    };
    deploy(ui, host, stack, &args.host, Some(migrations), outcome)?;
    *outcome = Outcome::Installed;
    crate::release::watch::Cutover::write(host, &cutover)?;
    if let Some(why) = watch_or_roll_back(ui, host, stack, &args.host, cutover.at, &args.watch)? {
        *outcome = Outcome::RolledBack;
        bail!(why);
    }
    Ok(())
}

/// Watches `stack`, serving since `cutover`, against the release `host` calls previous; when
/// it fails, brings that release back (on disk: no download, no migration). Ok(None) when it
/// passed (or there is nothing to compare with); Ok(Some(why)) when the previous release
/// serves again, `why` saying what the watch saw and how long the rollback took.
pub fn watch_or_roll_back(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    options: &HostOptions,
    cutover: f64,
    settings: &crate::site::settings::WatchSettings,
) -> anyhow::Result<Option<String>> {
    if settings.seconds == 0 {
        return Ok(None);
    }
    let Some(previous) = host.previous() else {
        ui.info("the first release on this host: nothing to compare it with, not watched");
        return Ok(None);
    };
    let old = Stack::open(&host.release_dir(&previous))?;
    let report = crate::release::watch::watch(ui, host, stack, &old, cutover, settings)?;
    ui.info(&report.summary());
    if report.verdict != crate::release::watch::Verdict::Failed {
        return Ok(None);
    }
    ui.info(&format!(
        "release {} failed its watch: rolling back to {previous}",
        report.release
    ));
    let started = std::time::Instant::now();
    let mut outcome = crate::site::history::Outcome::Failed;
    deploy(ui, host, &old, options, None, &mut outcome).with_context(|| {
        format!(
            "release {} failed its watch ({}), and bringing {previous} back failed too",
            report.release, report.reason
        )
    })?;
    Ok(Some(format!(
        "release {} failed its watch after {:.1} s: {}; release {previous} was brought back in {:.1} s and serves (no download, no migration). {}",
        report.release,
        report.watched_seconds,
        report.reason,
        started.elapsed().as_secs_f64(),
        report.summary()
    )))
}

/// The host checked and, beside it rather than at the end, old releases pruned: deleting a
/// release's files and images is disk and engine work that would otherwise overlap the swap
/// and the requests it moves. A failed prune is said; the next install tries again.
fn check_host_and_prune(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    manifest: &Manifest,
    args: &InstallOptions,
) -> anyhow::Result<()> {
    let (checked, pruned) = std::thread::scope(|s| {
        let pruned = s.spawn(|| prune(ui, host, &manifest.release));
        let checked = check_host(ui, host, stack, manifest, args);
        (
            checked,
            pruned
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the prune panicked"))),
        )
    });
    checked?;
    if let Err(e) = pruned {
        ui.info(&format!(
            "pruning old releases failed (the install goes on; the next one tries again): {e:#}"
        ));
    }
    Ok(())
}

/// The host can run the release: secrets, Docker, disk, platform, certificates.
fn check_host(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    manifest: &Manifest,
    args: &InstallOptions,
) -> anyhow::Result<()> {
    ui.info("checking the host (secrets, Docker, disk, platform)");
    // The empty files a rotation's previous values go in (hosts set up before rotations).
    if host.secrets_dir().is_dir() {
        crate::site::secret_files::ensure_previous_files(&host.secrets_dir())?;
        // The apps run as APP_UID and read the files as it (hosts set up before they did).
        crate::site::secret_files::hand_over(&host.secrets_dir())?;
    }
    // Hand-managed certificates must be there; ACME issues its own after the swap.
    let tls = (args.env.tls() && args.tls.mode == crate::site::settings::TlsMode::Manual)
        .then(|| host.tls_dir());
    let problems = crate::release::preflight::check(host, stack, manifest, tls.as_deref())?;
    if !problems.is_empty() {
        bail!(
            "the host is not ready; nothing was changed:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(())
}

/// The domain the site serves: the one named, else the environment's own.
fn domain(args: &InstallOptions) -> anyhow::Result<&str> {
    args.domain
        .as_deref()
        .or(args.env.domain())
        .with_context(|| {
            format!(
                "a {} environment has no domain of its own: name it with --domain",
                args.env.name()
            )
        })
}

/// release.env for this release on this host: image tags from the manifest, the host's
/// settings, paths on the host. Nothing secret.
fn release_env(
    host: &Host,
    manifest: &Manifest,
    args: &InstallOptions,
) -> anyhow::Result<ReleaseEnv> {
    let local = args.env == Env::Local;
    let mut env = ReleaseEnv::default();
    let mut set = |k: &str, v: String| env.set(k, v);
    set("HITSAVE_RELEASE", manifest.release.to_string());
    set("HITSAVE_COMMIT", manifest.commit.to_string());
    set("HITSAVE_PROJECT", args.project.clone());
    set("HITSAVE_ENV", args.env.name().to_owned());
    if let Some(name) = &args.name {
        set("HITSAVE_ENV_NAME", name.clone());
    }
    set("HITSAVE_DOMAIN", domain(args)?.to_owned());
    set(
        "HITSAVE_HTTP_BIND",
        args.bind.map_or_else(
            || if local { "127.0.0.1" } else { "0.0.0.0" }.into(),
            |ip| ip.to_string(),
        ),
    );
    set(
        "HITSAVE_HTTP_PORT",
        args.http_port
            .unwrap_or(if local { 8080 } else { 80 })
            .to_string(),
    );
    set(
        "HITSAVE_HTTPS_PORT",
        args.https_port
            .unwrap_or(if local { 8443 } else { 443 })
            .to_string(),
    );
    set("HITSAVE_SECRETS_DIR", host.secrets_dir().to_string());
    set("HITSAVE_TLS_DIR", host.tls_dir().to_string());
    set("HITSAVE_NGINX_DIR", host.nginx_dir().to_string());
    for (key, image) in base_images(args.local_base_images) {
        set(key, image.into());
    }
    for (key, value) in args.db.settings()?.into_iter().chain(args.logs.settings()?) {
        set(key, value);
    }
    if let Some(max_age) = args.hsts_max_age {
        set("HITSAVE_HSTS_MAX_AGE", max_age.to_string());
    }
    // The database's files on the data volume, a directory per project (environment).
    if let Some(dir) = args.data_dir.as_ref().filter(|_| args.db.db_host.is_none()) {
        set(
            "HITSAVE_DB_DIR",
            dir.join(&args.project).join("db").to_string(),
        );
    }
    for (key, value) in limits(args.env, args.memory_mib) {
        set(key, value);
    }
    for (component, _) in crate::site::stack::IMAGES {
        set(
            &format!("HITSAVE_{}_TAG", component.to_uppercase()),
            crate::site::stack::image_tag(manifest, component)?,
        );
    }
    // An app whose image is the one the current release runs keeps the release id it reports:
    // its container configuration is then unchanged, and the swap leaves it running.
    let current = host
        .current()
        .and_then(|id| ReleaseEnv::read(&host.release_dir(&id).join("release.env")).ok());
    for app in App::ALL {
        let (release, commit) = current
            .as_ref()
            .filter(|cur| cur.image_tag(app.service()).ok() == env.image_tag(app.service()).ok())
            .and_then(|cur| cur.app_release(app).ok())
            .unwrap_or((&manifest.release, &manifest.commit));
        let (release, commit) = (release.to_owned(), commit.to_owned());
        env.set_app_release(app, release, commit);
    }
    Ok(env)
}

/// Each service's memory and process limits (production.yml reads them): production's, half
/// the memory elsewhere (staging and local hosts are smaller), and for a capped environment
/// (a preview) its cap split among the services, so together they never pass it.
fn limits(env: Env, cap_mib: Option<u64>) -> Vec<(&'static str, String)> {
    let small = env != Env::Production;
    // (memory key, process key, production's MiB, share of a cap in tenths, process limit)
    let services = [
        ("HITSAVE_DB_MEMORY", "HITSAVE_DB_PIDS", 1024, 3, 512),
        ("HITSAVE_API_MEMORY", "HITSAVE_API_PIDS", 512, 2, 256),
        ("HITSAVE_WEB_MEMORY", "HITSAVE_WEB_PIDS", 512, 2, 256),
        (
            "HITSAVE_MIGRATE_MEMORY",
            "HITSAVE_MIGRATE_PIDS",
            512,
            2,
            128,
        ),
        ("HITSAVE_NGINX_MEMORY", "HITSAVE_NGINX_PIDS", 256, 1, 128),
    ];
    let mut limits = Vec::new();
    for (memory, processes, mib, tenths, pids) in services {
        let mib = match cap_mib {
            Some(cap) => cap * tenths / 10,
            None if small => mib / 2,
            None => mib,
        };
        let size = if mib % 1024 == 0 {
            format!("{}g", mib / 1024)
        } else {
            format!("{mib}m")
        };
        limits.push((memory, size));
        limits.push((processes, pids.to_string()));
    }
    limits
}

/// Images, migrations, the swap and the health gate for `stack`; flips `current` once it
/// serves. When it does not, the release `current` names is brought back, `outcome` says
/// `rolled-back`, and this fails.
/// What an install asks of `deploy` before the new migrator runs, and what it did.
pub struct Migrations<'a> {
    /// Where the pre-migrate backup is copied too (off the host).
    pub store: Option<&'a dyn store::Store>,
    /// `--skip-backup`: migrate without a backup.
    pub skip_backup: bool,
    /// The pre-migrate backup taken (its id).
    pub backup: Option<hitsave_schema::BackupId>,
    /// Migrations were pending and ran without a backup.
    pub skipped: bool,
}

/// Builds the images, starts the database, migrates (`migrations`: none for a rollback,
/// which never migrates), swaps and gates; brings the old release back when the new one
/// is not healthy.
pub fn deploy(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    args: &HostOptions,
    migrations: Option<&mut Migrations>,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let id = stack.env.release()?;
    let migrating = migrations.is_some() && !migrator_unchanged(host, stack);
    let (pending, created) = prepare(ui, host, stack, migrating, args)?;
    let weights = crate::site::cpu::Weights::of_stack(ui, stack)?;
    if let Some(migrations) = migrations {
        if !migrating {
            ui.info(
                "the new migrator carries the current release's migrations, all applied: nothing to run",
            );
        } else if pending == Some(false) {
            ui.info("the new migrator finds every migration it has applied: nothing to run");
        } else {
            back_up_before_migrating(ui, host, stack, migrations)?;
            run_migrations(ui, stack, &id)?;
        }
        if host.current().is_none() && stack.env.env()? == Env::Preview {
            seed_preview(ui, stack)?;
        }
    }

    ui.info(&format!(
        "swapping the stack to release {id} ({:?})",
        args.strategy
    ));
    let timeout = Duration::from_secs(args.health_timeout);
    let swapped = crate::site::swap::swap(
        ui,
        stack,
        &host.nginx_dir(),
        args.strategy,
        &weights,
        timeout,
        crate::site::swap::AtHand {
            created,
            ..Default::default()
        },
    );
    // What the swap left running of the old release goes with a failure, so that bringing it
    // back only points nginx at it again.
    let (gate, drain) = match swapped {
        Ok(drain) => (gate(ui, host, stack, &id, timeout), drain),
        Err(e) => (Err(e), crate::site::swap::Drain::default()),
    };
    if let Err(e) = gate {
        let old = bring_back(ui, host, &id, &e, args.strategy, &weights, timeout, drain)?;
        *outcome = Outcome::RolledBack;
        bail!(
            "release {id} did not become healthy: {e:#}; rolled back: release {old} serves again"
        );
    }
    host.flip(&id)?;
    start_drain(ui, drain);
    Ok(())
}

/// The health gate after a swap: `stack` serves through nginx within `timeout`.
fn gate(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    id: &ReleaseId,
    timeout: Duration,
) -> anyhow::Result<()> {
    // A restore killed half-way leaves maintenance on; nothing else runs (the lock).
    if crate::site::nginx::maintenance_by(&host.nginx_dir()).as_deref() == Some("restore") {
        ui.info("ending the maintenance a restore that did not finish left on");
        crate::site::nginx::maintenance_off(&host.nginx_dir())?;
    }
    ui.info(&format!(
        "waiting up to {timeout:?} for release {id} to serve"
    ));
    stack.wait_serving(timeout)
}

/// Swaps the release that was current back in after `id` failed with `e` (nginx going back
/// to the containers in `spares` that still answer); which one it is.
#[allow(clippy::too_many_arguments)]
fn bring_back(
    ui: &Ui,
    host: &Host,
    id: &ReleaseId,
    e: &anyhow::Error,
    strategy: crate::site::swap::Strategy,
    weights: &crate::site::cpu::Weights,
    timeout: Duration,
    spares: crate::site::swap::Drain,
) -> anyhow::Result<ReleaseId> {
    let Some(old) = host.current().filter(|old| old != id) else {
        bail!(
            "release {id} did not become healthy ({e:#}); there is no previous release to bring back"
        );
    };
    ui.info(&format!(
        "release {id} is not healthy ({e:#}); bringing {old} back"
    ));
    let old_stack = Stack::open(&host.release_dir(&old))?;
    crate::site::swap::swap(
        ui,
        &old_stack,
        &host.nginx_dir(),
        strategy,
        weights,
        timeout,
        crate::site::swap::AtHand {
            spares,
            ..Default::default()
        },
    )
    .and_then(|drain| old_stack.wait_serving(timeout).map(|()| drain))
    .with_context(|| format!("release {old} did not come back either"))
    .map(|drain| start_drain(ui, drain))?;
    Ok(old)
}

/// Drains the old containers after the gate; one that cannot be started is the next swap's
/// to remove (the release serves either way).
fn start_drain(ui: &Ui, drain: crate::site::swap::Drain) {
    if let Err(e) = drain.start(ui) {
        ui.info(&format!(
            "WARNING: the old containers stay until the next install: {e:#}"
        ));
    }
}

/// Side by side: the apps' images built and the swap's new containers created
/// (`swap::create_ahead`); the migrator's image built, the database started (or the external
/// one checked) and, when `migrating` and a release runs, the new migrator asked whether it
/// has anything to apply (the answer; `None` when not asked).
fn prepare(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    migrating: bool,
    args: &HostOptions,
) -> anyhow::Result<(Option<bool>, crate::site::swap::Created)> {
    let (apps, db) = std::thread::scope(|s| {
        let apps = s.spawn(|| {
            let built = stack.build_images_of(&["api", "web"])?;
            let created =
                crate::site::swap::create_ahead(ui, stack, &host.nginx_dir(), args.strategy)?;
            anyhow::Ok((built, created))
        });
        let db = (|| -> anyhow::Result<(Vec<String>, Option<bool>)> {
            let built = stack.build_images_of(&["migrate"])?;
            if stack.external_db() {
                check_external_db(ui, stack)?;
            } else {
                start_db(ui, stack, Duration::from_secs(args.health_timeout))?;
            }
            let pending = (migrating && host.current().is_some())
                .then(|| stack.pending_migrations())
                .transpose()?;
            Ok((built, pending))
        })();
        let apps = apps
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the image builds panicked")));
        (apps, db)
    });
    let (apps, created) = apps?;
    let (mut built, pending) = db?;
    built.extend(apps);
    if !built.is_empty() {
        ui.info(&format!("built {}", built.join(", ")));
    }
    Ok((pending, created))
}

/// Starts the database unless it runs with this release's configuration and accepts
/// connections already (then compose would leave it as it is, but takes most of a second to
/// say so), and waits until it accepts connections, asking it every 100 ms: Docker checks it
/// every 30 s (each check is an exec into the container: every 2 s, one landed in a swap in
/// front of live requests), so its verdict on a database just started comes 30 s late.
fn start_db(ui: &Ui, stack: &Stack, timeout: Duration) -> anyhow::Result<()> {
    use crate::database::server::Server;
    use crate::site::stack::{Health, State};
    let db = crate::site::app::Service::Db.name();
    let running = stack.containers()?.into_iter().find(|c| {
        c.service == db && c.state == State::Running && c.health != Some(Health::Unhealthy)
    });
    if let Some(c) = running
        && stack
            .config_hashes()?
            .get(db)
            .is_some_and(|h| h.contains(&c.config_hash))
        // One Docker has not checked since its start is asked directly.
        && (c.health == Some(Health::Healthy) || Server::in_container(c.name)?.accepts())
    {
        ui.info("the database runs healthy with this release's settings: left as it is");
        return Ok(());
    }
    ui.info("starting the database (kept as it is when it runs)");
    stack.run("starting the database", &["up", "--detach", db])?;
    Server::of(stack)?.wait_accepting(timeout)
}

/// The external server answers this release's migrator over verified TLS with the stack's
/// password: checked before the backup, the migrations and the swap, so a wrong CA bundle, a
/// server without TLS or a refused password stops the install with the running stack as it is.
fn check_external_db(ui: &Ui, stack: &Stack) -> anyhow::Result<()> {
    let db = stack
        .env
        .external_db()
        .context("release.env names no external database")?;
    let (server, ca) = (
        format!("{}@{}:{}/{}", db.user, db.host, db.port, db.name),
        db.ca_file.clone(),
    );
    ui.info(&format!(
        "checking the external database {server} (TLS verified against {ca})"
    ));
    let (status, text) = stack.output(
        "checking the external database",
        &[
            "run",
            "--rm",
            "--no-deps",
            crate::site::app::Service::Migrate.name(),
            "--wait",
            "20",
            "status",
        ],
    )?;
    if matches!(status.code(), Some(0 | 3)) {
        return Ok(());
    }
    let said = text.lines().find(|l| l.contains("migrate: ")).map_or_else(
        || crate::kit::compose::tail(&text, 5),
        |l| l.trim().to_owned(),
    );
    let lower = said.to_ascii_lowercase();
    // The password first: the server's message comes after the URL, which says sslmode.
    let hint = if lower.contains("password authentication failed") || lower.contains("28p01") {
        format!(
            "the server refused the password in the postgres_password secret for {}: set the role's password to the file's, or the file to the role's (`xtask secrets set postgres_password`)",
            db.user
        )
    } else if lower.contains("certificate") || lower.contains("unknownissuer") {
        format!(
            "the server's certificate does not chain to a CA in {ca} (HITSAVE_DB_CA_FILE) or does not name {}: use the server's CA bundle (RDS: the region's bundle from AWS)",
            db.host
        )
    } else if lower.contains("does not support tls") {
        "the server does not offer TLS, which an external database must (RDS: rds.force_ssl=1)"
            .to_owned()
    } else {
        "check HITSAVE_DB_HOST, HITSAVE_DB_PORT, HITSAVE_DB_NAME and HITSAVE_DB_USER in the host settings, and that this host reaches the server".to_owned()
    };
    bail!(
        "the external database {server} refused this host: {hint}; nothing was migrated and the running stack is untouched ({said})"
    )
}

/// A backup of the live database before the new migrator changes it (called when it has
/// something to apply, or could not be asked), when a release already runs; when it cannot be
/// taken, nothing is migrated.
fn back_up_before_migrating(
    ui: &Ui,
    host: &Host,
    stack: &Stack,
    migrations: &mut Migrations,
) -> anyhow::Result<()> {
    let Some(current) = host.current() else {
        return Ok(()); // A first install: the database is new.
    };
    let started = Instant::now();
    if migrations.skip_backup {
        ui.info("migrations are pending; --skip-backup: migrating without a backup");
        migrations.skipped = true;
        return Ok(());
    }
    let env = crate::database::backup::environment_of(stack);
    let record = crate::database::server::Server::of(stack)
        .and_then(|server| {
            crate::database::backup::take(
                ui,
                host,
                &server,
                Some(current),
                hitsave_schema::BackupReason::PreMigrate,
                migrations.store,
                &env,
            )
        })
    .context(
        "the backup before migrating failed, so nothing was migrated and the running stack is untouched (fix the cause, or pass --skip-backup to migrate without one)",
    )?;
    ui.info(&format!(
        "the pre-migrate backup added {:.1} s to the install",
        started.elapsed().as_secs_f64()
    ));
    migrations.backup = Some(record.id);
    if let Err(e) = crate::database::retention::prune(
        ui,
        host,
        migrations.store,
        crate::database::retention::Retention::default(),
        &env,
    ) {
        ui.info(&format!(
            "pruning old backups failed (the install goes on): {e:#}"
        ));
    }
    Ok(())
}

/// The new release's migrator, on the running database; its own error line when it fails.
/// Whether `stack`'s migrator carries the migrations the current release's did: the same
/// artifact, or (both manifests say) the same migration files. They were all applied when that
/// release became current (a restore applies what an older backup lacks), so neither
/// `migrate status` nor `migrate` need run.
fn migrator_unchanged(host: &Host, stack: &Stack) -> bool {
    let Some(current) = host.current() else {
        return false;
    };
    let dir = host.release_dir(&current);
    let Ok(env) = ReleaseEnv::read(&dir.join("release.env")) else {
        return false;
    };
    let tag = |env: &ReleaseEnv| env.image_tag("migrate").map(str::to_owned).ok();
    if tag(&env).is_some() && tag(&env) == tag(&stack.env) {
        return true;
    }
    let carried = |dir: &Utf8Path| {
        std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|bytes| Manifest::parse(&bytes).ok())
            .and_then(|m| m.migrations)
    };
    carried(&dir).is_some_and(|old| Some(old) == carried(&stack.release_dir))
}

fn run_migrations(ui: &Ui, stack: &Stack, id: &ReleaseId) -> anyhow::Result<()> {
    ui.info("running the new migrator");
    if let Err(e) = stack.run(
        "migrating",
        &[
            "run",
            "--rm",
            "--no-deps",
            crate::site::app::Service::Migrate.name(),
        ],
    ) {
        let text = format!("{e:#}");
        let reason = text
            .lines()
            .find(|l| l.contains("migrate: error:"))
            .map(|l| l.trim().to_owned())
            .unwrap_or(text);
        bail!("the migrations of release {id} failed; the running stack is untouched: {reason}");
    }
    Ok(())
}

/// The file a preview's fresh database is seeded from, when the repository has one: made-up
/// rows for reviewers, never production data.
pub const PREVIEW_SEED: &str = "deploy/seed.sql";

/// Seeds a preview's new database (after its first migrations) from the release's
/// `deploy/seed.sql`, in one transaction; a seed that fails fails the install.
fn seed_preview(ui: &Ui, stack: &Stack) -> anyhow::Result<()> {
    let file = stack.release_dir.join(PREVIEW_SEED);
    let Ok(sql) = std::fs::read_to_string(&file) else {
        ui.info(&format!(
            "no {PREVIEW_SEED} in the release: the preview's database starts empty"
        ));
        return Ok(());
    };
    let server = crate::database::server::Server::of(stack)?;
    let out = server
        .psql_command(&server.live, &[])
        .stdin_bytes(format!("BEGIN;\n{sql}\nCOMMIT;\n"))
        .stderr_capture()
        .stdout_null()
        .unchecked()
        .run()?;
    anyhow::ensure!(
        out.status.success(),
        "seeding the preview's database from {PREVIEW_SEED} failed (nothing of it was kept): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    ui.info(&format!(
        "seeded the preview's database from {PREVIEW_SEED}"
    ));
    Ok(())
}

/// What the `keep` releases use: image names, cached tarballs and host programs (by hash).
fn in_use(
    host: &Host,
    keep: &BTreeSet<ReleaseId>,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let mut images = BTreeSet::new();
    let mut tarballs = BTreeSet::new();
    let mut programs = BTreeSet::new();
    for id in keep {
        let dir = host.release_dir(id);
        if let Ok(env) = ReleaseEnv::read(&dir.join("release.env")) {
            for (component, _) in crate::site::stack::IMAGES {
                if let Ok(tag) = env.image_tag(component) {
                    images.insert(format!("hitsave/{component}:{tag}"));
                }
            }
        }
        if let Some(m) = host.manifest(id) {
            programs.extend(m.artifact("xtask").map(|a| a.sha256.to_string()));
            tarballs.extend(
                m.artifacts
                    .into_iter()
                    .map(|a| format!("{}.tar.gz", a.sha256)),
            );
        }
    }
    (images, tarballs, programs)
}

/// Keeps the newest releases, current and previous, and `installing` (it becomes current);
/// removes the rest with their images and cached tarballs.
pub fn prune(ui: &Ui, host: &Host, installing: &ReleaseId) -> anyhow::Result<()> {
    let mut keep: BTreeSet<ReleaseId> = host
        .releases()?
        .into_iter()
        .rev()
        .take(KEEP_RELEASES)
        .collect();
    keep.extend(host.current());
    keep.extend(host.previous());
    keep.insert(installing.clone());
    let mut removed = Vec::new();
    for id in host.releases()? {
        if !keep.contains(&id) {
            std::fs::remove_dir_all(host.release_dir(&id))
                .with_context(|| format!("cannot remove {}", host.release_dir(&id)))?;
            removed.push(id);
        }
    }
    let (images, tarballs, programs) = in_use(host, &keep);
    for entry in host.root.join("cache").read_dir_utf8()? {
        let entry = entry?;
        if !tarballs.contains(entry.file_name()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    // The hooks' copies of release host programs (programs/<sha256>/); a temporary one is
    // being unpacked by a hook right now.
    if let Ok(entries) = host.root.join("programs").read_dir_utf8() {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.starts_with('.') && !programs.contains(name) {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("cannot remove {}", entry.path()))?;
            }
        }
    }
    let listed = crate::kit::engine::image_names("hitsave/*").unwrap_or_default();
    for image in listed.iter().filter(|i| !images.contains(i.as_str())) {
        // An image still used by a container stays; the next prune gets it.
        let _ = crate::kit::engine::remove_image(image);
    }
    if !removed.is_empty() {
        ui.info(&format!("pruned releases {}", ReleaseId::list(&removed)));
    }
    Ok(())
}
