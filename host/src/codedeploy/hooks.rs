//! `xtask hook <event>`: what each CodeDeploy lifecycle hook does. The short scripts in
//! deploy/hooks/ run the host's resident program (`resident.rs`), never a program from the
//! bundle. The bundle's revision.json names the release and its store; CodeDeploy's
//! DEPLOYMENT_GROUP_NAME names the environment.
//!
//! Every hook of the new revision goes through two programs:
//! 1. The resident program checks, before anything from the bundle is trusted: the manifest
//!    revision.json names is signed by a key this host trusts (`release::trust`); the deployment
//!    archive holds exactly the files that manifest lists (`bundle.rs`); and, for the hooks
//!    that change the host, that the release's branch deploys to this environment and that
//!    it is not older than what the host installed (`admission.rs`).
//! 2. It then runs the release's own host program (downloaded and verified like any artifact,
//!    kept by hash) with `--checked`, which does the event's work below. Once the release
//!    serves, its host program becomes the resident one.
//!
//! - application-stop (from the previous revision): reports what runs; never fails.
//! - before-install: `install --until fetched` (download, verify, unpack).
//! - after-install: `install --until prepared` (check the host, build images).
//! - application-start: `install` (migrate, swap, gate, flip; the old release comes back on
//!   failure).
//! - validate-service: the release is current and serves through nginx.
//!
//! With a load balancer (a deployment group with an ALB target group) CodeDeploy also takes the
//! host out of the target group before the install and puts it back after:
//! - before-block-traffic (from the previous revision, like application-stop, and like it
//!   never failing): nginx's `/lb-health`, the target group's health check, answers 503 from
//!   now on, so the balancer stops sending before anything on the host changes; then waits
//!   HITSAVE_LB_HEALTH_WAIT seconds for the balancer to see it (0 by default: CodeDeploy's
//!   deregistration already stops new requests and waits for the ones in flight).
//! - after-block-traffic (from the previous revision, never failing): reports.
//! - before-allow-traffic: the release serves; `/lb-health` answers 200 again.
//! - after-allow-traffic: the release is current and `/lb-health` is 200.
//!
//! Host settings beyond the defaults (another install root, ports, local base images) come
//! from an optional file of KEY=VALUE lines, /etc/hitsave/host.env.

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::kit::store::StoreLocation;
use crate::release::install::{HostOptions, InstallOptions, Until};
use crate::release::trust::TrustOptions;
use crate::release::verify::Which;
use crate::site::host::Host;
use crate::site::placement::Placement;
use crate::site::settings::{Env, HostSettings, Layout};
use crate::site::stack::Stack;
use crate::site::swap::Strategy;
use hitsave_schema::Revision;

/// Which hook runs, on which bundle, with which settings.
pub struct HookOptions {
    /// The lifecycle event to run.
    pub event: Event,
    /// The unpacked bundle [default: the directory above this xtask's bin/].
    pub bundle: Option<Utf8PathBuf>,
    /// The resident program checked the bundle and hands over to the release's own program.
    pub checked: bool,
    /// The host settings file (host.env).
    pub config: Utf8PathBuf,
}

/// A CodeDeploy lifecycle event (appspec.yml's `hooks:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    BeforeBlockTraffic,
    AfterBlockTraffic,
    ApplicationStop,
    BeforeInstall,
    AfterInstall,
    ApplicationStart,
    ValidateService,
    BeforeAllowTraffic,
    AfterAllowTraffic,
}

crate::choice!(Event {
    BeforeBlockTraffic => "before-block-traffic", "fail the balancer's health check; wait for the balancer to see it";
    AfterBlockTraffic => "after-block-traffic", "report: the stack keeps running until the new release replaces it";
    ApplicationStop => "application-stop", "report what runs: nothing stops, the swap replaces containers";
    BeforeInstall => "before-install", "check the bundle, then fetch, verify and unpack the release";
    AfterInstall => "after-install", "check the host and build the runtime images";
    ApplicationStart => "application-start", "migrate, swap and gate on health";
    ValidateService => "validate-service", "the release is current, healthy and serves through nginx";
    BeforeAllowTraffic => "before-allow-traffic", "the balancer's health check passes again";
    AfterAllowTraffic => "after-allow-traffic", "the release is current and the balancer's health check passes";
});

impl Event {
    /// The events that run from the previous revision's bundle: they report or prepare, and
    /// never fail, so no earlier revision can block a later deployment.
    fn runs_from_previous_revision(self) -> bool {
        matches!(
            self,
            Event::BeforeBlockTraffic | Event::AfterBlockTraffic | Event::ApplicationStop
        )
    }
}

pub fn run(args: HookOptions) -> anyhow::Result<()> {
    let bundle = match &args.bundle {
        Some(dir) => dir.clone(),
        None => bundle_dir()?,
    };
    let group = std::env::var("DEPLOYMENT_GROUP_NAME");
    if args.event.runs_from_previous_revision() {
        // Whatever goes wrong here must not stop the deployment that follows.
        let result = HostSettings::read(&args.config)
            .and_then(|settings| match &group {
                Ok(group) => environment_settings(&settings, group),
                Err(_) => Ok(settings),
            })
            .and_then(|settings| match args.event {
                Event::BeforeBlockTraffic => before_block_traffic(&settings),
                Event::AfterBlockTraffic => after_block_traffic(&settings),
                _ => application_stop(&bundle, &settings),
            });
        if let Err(e) = result {
            eprintln!(
                "xtask: hook {}: {e:#} (ignored: the stack keeps serving)",
                args.event.name()
            );
        }
        return Ok(());
    }
    let revision = Revision::read(bundle.as_std_path())?;
    let settings = HostSettings::read(&args.config)?;
    let group = group.map_err(|_| {
        anyhow::anyhow!(
            "DEPLOYMENT_GROUP_NAME is not set: `xtask hook` runs from CodeDeploy's lifecycle hooks; to install by hand, run `xtask install`"
        )
    })?;
    let (env, name) = crate::site::placement::environment_of(&group)?;
    if !args.checked {
        return check_and_hand_over(&args, &bundle, &revision, &settings, &group);
    }
    eprintln!(
        "xtask: hook {}: release {} for deployment group {group} ({name}), deployment {}",
        args.event.name(),
        revision.release,
        std::env::var("DEPLOYMENT_ID").unwrap_or_else(|_| "unknown".into())
    );
    let application = std::env::var("APPLICATION_NAME").unwrap_or_default();
    let placement = crate::site::placement::place(&settings, &name, Some((&application, &group)))?;
    let placed = placed_settings(&settings, &placement);
    let until = match args.event {
        Event::ValidateService => return validate_service(&revision, &placed),
        Event::BeforeAllowTraffic => return before_allow_traffic(&revision, &placed),
        Event::AfterAllowTraffic => return after_allow_traffic(&revision, &placed),
        Event::BeforeInstall => Some(Until::Fetched),
        Event::AfterInstall => Some(Until::Prepared),
        _ => None,
    };
    let mut options = install_options(&revision, &placed, &placement, env, until);
    if settings.environments.layout == Layout::Many {
        options.front = Some(settings.clone());
    }
    let installed = crate::release::install::run(options);
    if until.is_none() && settings.environments.layout == Layout::Many {
        // The front routes to every environment that serves: this one now too (or still not).
        crate::environments::front::update(&settings)?;
    }
    installed
}

/// The settings of the environment `group` deploys, with its own root, project and ports on
/// a preview host (the host's own settings on a host of one environment).
fn environment_settings(settings: &HostSettings, group: &str) -> anyhow::Result<HostSettings> {
    let (_, name) = crate::site::placement::environment_of(group)?;
    let placement = crate::site::placement::locate(settings, &name)?;
    Ok(placed_settings(settings, &placement))
}

fn placed_settings(settings: &HostSettings, placement: &Placement) -> HostSettings {
    let mut placed = settings.clone();
    placed.root = placement.root.clone();
    placed.project = placement.project.clone();
    placed.bind = placement.bind;
    placed.http_port = placement.http_port;
    placed.https_port = placement.https_port;
    placed
}

/// The install that a hook runs: the bundle's release from its store, set up as host.env says.
fn install_options(
    revision: &Revision,
    settings: &HostSettings,
    placement: &Placement,
    env: Env,
    until: Option<Until>,
) -> InstallOptions {
    InstallOptions {
        store: store_of(revision),
        which: Which::Release(revision.release.clone()),
        trust: TrustOptions {
            keys: settings.keys.clone(),
            allow_unsigned: false,
        },
        allow_downgrade: false,
        host: HostOptions {
            root: settings.root.clone(),
            lock_timeout: 600,
            health_timeout: settings.health_timeout,
            strategy: Strategy::BlueGreen,
            timings: false,
        },
        tls: settings.tls.clone(),
        env,
        name: (placement.name != env.name()).then(|| placement.name.clone()),
        domain: placement.domain.clone(),
        memory_mib: placement.memory_mib,
        project: settings.project.clone(),
        bind: settings.bind,
        http_port: settings.http_port,
        https_port: settings.https_port,
        local_base_images: settings.local_base_images,
        db: settings.db.clone(),
        logs: settings.logs.clone(),
        data_dir: settings.data_dir.clone(),
        hsts_max_age: settings.hsts_max_age,
        skip_backup: false,
        until,
        // ValidateService watches, after ApplicationStart's install.
        watch: crate::site::settings::WatchSettings {
            seconds: 0,
            ..settings.watch
        },
        front: None,
    }
}

/// The resident program's part of a hook: everything that decides whether this bundle may
/// touch the host, then the release's own program for the work. A refusal changes nothing.
fn check_and_hand_over(
    args: &HookOptions,
    bundle: &Utf8Path,
    revision: &Revision,
    settings: &HostSettings,
    group: &str,
) -> anyhow::Result<()> {
    let ui = crate::kit::ui::Ui::new();
    let id = &revision.release;
    let (env, name) = crate::site::placement::environment_of(group)?;
    eprintln!(
        "xtask: hook {}: checking the bundle of release {id} for deployment group {group} ({name}), deployment {}",
        args.event.name(),
        std::env::var("DEPLOYMENT_ID").unwrap_or_else(|_| "unknown".into())
    );
    let store = crate::kit::store::open(&store_of(revision), Utf8Path::new("."))?;
    store.check()?;
    let refused = |e: anyhow::Error| {
        e.context(format!(
            "hook {}: the bundle of release {id} is refused; nothing was changed and the running release keeps serving",
            args.event.name()
        ))
    };
    let verified = check_bundle(store.as_ref(), bundle, revision, settings, &refused)?;
    let manifest = &verified.manifest;
    // The resident program and the release programs live in the install root; the
    // environment in its own root on a preview host.
    let root = &settings.root;
    let host = Host::open(root)?;
    let placement = crate::site::placement::locate(settings, &name)?;
    let installed = placement.root.join("releases").is_dir();
    if matches!(
        args.event,
        Event::BeforeInstall | Event::AfterInstall | Event::ApplicationStart
    ) {
        crate::site::placement::admit(settings, &name).map_err(refused)?;
        crate::codedeploy::admission::check_branch(manifest, group, env, settings)
            .map_err(refused)?;
        if installed {
            let env_host = Host::open(&placement.root)?;
            crate::codedeploy::admission::check_downgrade(&env_host, manifest, env, settings)
                .map_err(refused)?;
        }
    }
    let program =
        crate::codedeploy::resident::release_program(&ui, &host, store.as_ref(), manifest)?;
    let status = std::process::Command::new(&program)
        .args(["hook", args.event.name(), "--checked", "--bundle"])
        .arg(bundle)
        .arg("--config")
        .arg(&args.config)
        .status()
        .with_context(|| format!("cannot run release {id}'s host program {program}"))?;
    if !status.success() {
        bail!(
            "hook {}: release {id}'s host program failed ({status}); see above",
            args.event.name()
        );
    }
    // Once the release serves, its verified program checks the next bundles.
    let serving = placement.root.join("releases").is_dir()
        && Host::open(&placement.root)?.current().as_ref() == Some(id);
    if matches!(args.event, Event::ApplicationStart | Event::ValidateService)
        && serving
        && crate::codedeploy::resident::adopt(root, &program, manifest)?
    {
        eprintln!(
            "xtask: hook: the resident program {} is now release {id}'s host program",
            crate::codedeploy::resident::path(root)
        );
    }
    Ok(())
}

/// The bundle's release is signed by a key this host trusts, and the bundle holds exactly the
/// files its manifest lists, from the object the manifest names.
fn check_bundle(
    store: &dyn crate::kit::store::Store,
    bundle: &Utf8Path,
    revision: &Revision,
    settings: &HostSettings,
    refused: &dyn Fn(anyhow::Error) -> anyhow::Error,
) -> anyhow::Result<crate::release::verify::Verified> {
    let id = &revision.release;
    let trust = crate::release::trust::Trust::new(
        &TrustOptions {
            keys: settings.keys.clone(),
            allow_unsigned: false,
        },
        store.is_local(),
    )?;
    let verified = crate::release::verify::read_manifest(store, id, &trust).with_context(|| {
        format!(
            "the bundle names release {id}, whose manifest this host does not trust; the running release is untouched"
        )
    })?;
    let listed = verified
        .manifest
        .bundle
        .as_ref()
        .filter(|b| !b.files.is_empty())
        .with_context(|| {
            format!(
                "release {id}'s manifest lists no bundle files (it was released before hosts checked bundles): release its commit again with a newer `cargo xtask release`"
            )
        })
        .map_err(refused)?;
    crate::codedeploy::bundle::check(bundle, &listed.files).map_err(refused)?;
    check_bundle_object(listed).map_err(refused)?;
    if let Some(key) = verified.key {
        eprintln!(
            "xtask: hook: release {id} is signed by key {key}; its bundle's {} files match the signed list",
            listed.files.len()
        );
    }
    Ok(verified)
}

/// The store the bundle's revision.json names.
fn store_of(revision: &Revision) -> StoreLocation {
    StoreLocation {
        store: Some(revision.store.clone()),
        endpoint_url: revision.endpoint_url.clone(),
        path_style: revision.path_style,
    }
}

/// CodeDeploy tells the hooks which object it downloaded (BUNDLE_KEY, BUNDLE_ETAG): it must be
/// the release's bundle, with the ETag its manifest recorded.
fn check_bundle_object(bundle: &hitsave_schema::BundleRef) -> anyhow::Result<()> {
    let expected = hitsave_schema::artifact_key(&bundle.sha256);
    if let Ok(key) = std::env::var("BUNDLE_KEY")
        && !key.is_empty()
        && !key.ends_with(&expected)
    {
        bail!(
            "CodeDeploy downloaded {key}, but the release's bundle is {expected}: a deployment of another object"
        );
    }
    if let (Ok(etag), Some(signed)) = (std::env::var("BUNDLE_ETAG"), &bundle.etag)
        && !etag.is_empty()
        && etag.trim_matches('"') != signed
    {
        bail!(
            "CodeDeploy downloaded an object with ETag {etag}, but the release's bundle has ETag {signed}: the object was replaced"
        );
    }
    Ok(())
}

/// The bundle this xtask came in: `<bundle>/bin/xtask`.
fn bundle_dir() -> anyhow::Result<Utf8PathBuf> {
    let exe = crate::kit::process::current_exe()?;
    let exe = Utf8PathBuf::from_path_buf(exe).map_err(|p| anyhow::anyhow!("{p:?} is not UTF-8"))?;
    exe.parent()
        .and_then(Utf8Path::parent)
        .map(Utf8Path::to_owned)
        .context("cannot tell which bundle this xtask is in: pass --bundle")
}

impl Event {
    /// As the command line spells it.
    fn name(self) -> &'static str {
        crate::kit::choice::Choice::word(self)
    }
}

/// Reports what runs. The stack is not stopped: the next release replaces it container by
/// container, so requests are served throughout.
fn application_stop(bundle: &Utf8Path, settings: &HostSettings) -> anyhow::Result<()> {
    let root = &settings.root;
    let leaving = Revision::read(bundle.as_std_path())
        .map(|r| r.release.to_string())
        .unwrap_or_else(|_| "unknown".into());
    if !root.join("releases").is_dir() {
        eprintln!("xtask: hook application-stop: nothing is installed under {root} yet");
        return Ok(());
    }
    let host = Host::open(root)?;
    let current = host.current().map_or_else(|| "none".into(), String::from);
    eprintln!(
        "xtask: hook application-stop: revision of {leaving}; current is {current}; it keeps serving until the next release replaces it"
    );
    Ok(())
}

/// Any name nginx does not serve: the balancer's health check reaches the default server.
const LB_CHECK_HOST: &str = "lb-health.invalid";

/// `/lb-health` through this host's nginx: its status, or None while nothing answers.
fn lb_health(stack: &Stack) -> anyhow::Result<Option<u16>> {
    Ok(
        crate::kit::http::get(stack.http_port()?, LB_CHECK_HOST, "/lb-health")
            .map(|(status, _)| status),
    )
}

/// The install root's host, and the stack of its current release (None before the first).
fn current_stack(settings: &HostSettings) -> anyhow::Result<(Host, Option<Stack>)> {
    let host = Host::open(&settings.root)?;
    let stack = match host.current() {
        Some(id) => Some(Stack::open(&host.release_dir(&id))?),
        None => None,
    };
    Ok((host, stack))
}

/// The balancer's health check fails from now on; then the wait for the balancer to see it.
fn before_block_traffic(settings: &HostSettings) -> anyhow::Result<()> {
    let wait = settings.lb_health_wait;
    let (host, stack) = current_stack(settings)?;
    let dir = host.nginx_dir();
    if !crate::site::nginx::supports_lb_health(&dir) {
        eprintln!(
            "xtask: hook before-block-traffic: the running site has no /lb-health (installed before it); the balancer's deregistration alone takes this host out"
        );
        return Ok(());
    }
    let deployment = std::env::var("DEPLOYMENT_ID").unwrap_or_else(|_| "unknown".into());
    crate::site::nginx::draining_on(&dir, &format!("deployment {deployment}"))?;
    let status = match &stack {
        Some(stack) => lb_health(stack)?.map_or("no answer".into(), |s| s.to_string()),
        None => "nothing installed".into(),
    };
    eprintln!(
        "xtask: hook before-block-traffic: draining: /lb-health answers {status}; waiting {wait} s for the balancer to see it"
    );
    std::thread::sleep(std::time::Duration::from_secs(wait));
    Ok(())
}

fn after_block_traffic(settings: &HostSettings) -> anyhow::Result<()> {
    let (host, _) = current_stack(settings)?;
    eprintln!(
        "xtask: hook after-block-traffic: out of the load balancer ({}); the stack keeps running until the new release replaces it",
        crate::site::nginx::draining(&host.nginx_dir()).map_or_else(
            || "the health path was not failed: an older release runs".into(),
            |why| format!("draining since {why}")
        )
    );
    Ok(())
}

/// The release serves; then the balancer's health check passes again, checked here.
fn before_allow_traffic(revision: &Revision, settings: &HostSettings) -> anyhow::Result<()> {
    validate_service(revision, settings)?;
    let (host, stack) = current_stack(settings)?;
    let stack = stack.context("nothing is current")?;
    crate::site::nginx::draining_off(&host.nginx_dir())?;
    let timeout = std::time::Duration::from_secs(settings.health_timeout);
    crate::kit::process::wait_until("/lb-health to answer 200", timeout, || {
        Ok(lb_health(&stack)? == Some(200))
    })
    .with_context(|| {
        format!(
            "release {} serves, but the balancer's health check fails",
            revision.release
        )
    })?;
    eprintln!(
        "xtask: hook before-allow-traffic: /lb-health answers 200: ready for the load balancer"
    );
    Ok(())
}

/// The release is current and the balancer's health check passes.
fn after_allow_traffic(revision: &Revision, settings: &HostSettings) -> anyhow::Result<()> {
    validate_service(revision, settings)?;
    let (_, stack) = current_stack(settings)?;
    let stack = stack.context("nothing is current")?;
    match lb_health(&stack)? {
        Some(200) => {
            eprintln!(
                "xtask: hook after-allow-traffic: release {} is back in the load balancer",
                revision.release
            );
            Ok(())
        }
        other => bail!(
            "release {} serves, but /lb-health answers {}: the balancer will not send here",
            revision.release,
            other.map_or("nothing".into(), |s| s.to_string())
        ),
    }
}

/// The release is current, its containers are healthy and it serves through nginx.
fn validate_service(revision: &Revision, settings: &HostSettings) -> anyhow::Result<()> {
    let root = &settings.root;
    let host = Host::open(root)?;
    let current = host.current();
    if current.as_deref() != Some(revision.release.as_str()) {
        bail!(
            "release {} is not current on this host (current: {}); see `xtask status --root {root}` and {root}/history.jsonl",
            revision.release,
            current.as_deref().unwrap_or("none")
        );
    }
    let stack = Stack::open(&host.release_dir(&revision.release))?;
    if let Err(reason) = stack.serving()? {
        bail!(
            "release {} is current but does not serve: {reason}",
            revision.release
        );
    }
    eprintln!(
        "xtask: hook validate-service: release {} is current and serving",
        revision.release
    );
    watch_after_cutover(revision, settings)
}

/// The watch after ApplicationStart's cutover; a release that fails it is rolled back (one
/// line of history) and the hook fails, so CodeDeploy marks the deployment failed and stops
/// the rollout.
fn watch_after_cutover(revision: &Revision, settings: &HostSettings) -> anyhow::Result<()> {
    let session = crate::site::session::Session::begin(
        &settings.root,
        "hook validate-service (watch)",
        std::time::Duration::from_secs(600),
    )?;
    let (ui, host) = (&session.ui, &session.host);
    let id = &revision.release;
    let Some(cutover) = crate::release::watch::Cutover::read(host)
        .filter(|c| c.release == id.as_str() && host.current().as_ref() == Some(id))
    else {
        ui.info("no cutover of this release recorded here: not watched");
        return Ok(());
    };
    let stack = Stack::open(&host.release_dir(id))?;
    let options = HostOptions {
        root: settings.root.clone(),
        lock_timeout: 600,
        health_timeout: settings.health_timeout,
        strategy: Strategy::BlueGreen,
        timings: false,
    };
    let Some(why) = crate::release::install::watch_or_roll_back(
        ui,
        host,
        &stack,
        &options,
        cutover.at,
        &settings.watch,
    )?
    else {
        return Ok(());
    };
    let back = host
        .current()
        .context("no release is current after the rollback")?;
    let mut entry =
        crate::site::history::HistoryEntry::new(crate::site::history::Action::Rollback, back);
    entry.previous = Some(id.clone());
    session.finish(
        entry,
        crate::site::history::Outcome::Installed,
        Err::<(), _>(anyhow::anyhow!(why)),
    )
}

#[cfg(test)]
mod appspec_tests {
    use yaml_rust2::YamlLoader;

    /// appspec.yml names a script for every lifecycle event, with a timeout, run as root; each
    /// script exists, is executable and runs the host's resident program (never one from the
    /// bundle) for its own event, on its own bundle.
    #[test]
    fn appspec_hooks_run_the_resident_program() {
        let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(format!("{root}/appspec.yml")).unwrap();
        let spec = &YamlLoader::load_from_str(&text).unwrap()[0];
        assert_eq!(spec["version"].as_f64(), Some(0.0));
        assert_eq!(spec["os"].as_str(), Some("linux"));
        assert_eq!(spec["file_exists_behavior"].as_str(), Some("OVERWRITE"));
        assert!(
            spec["files"].is_badvalue(),
            "appspec.yml copies files from the bundle onto the host"
        );
        for (event, arg) in [
            ("BeforeBlockTraffic", "before-block-traffic"),
            ("AfterBlockTraffic", "after-block-traffic"),
            ("ApplicationStop", "application-stop"),
            ("BeforeInstall", "before-install"),
            ("AfterInstall", "after-install"),
            ("ApplicationStart", "application-start"),
            ("ValidateService", "validate-service"),
            ("BeforeAllowTraffic", "before-allow-traffic"),
            ("AfterAllowTraffic", "after-allow-traffic"),
        ] {
            let hooks = spec["hooks"][event]
                .as_vec()
                .unwrap_or_else(|| panic!("{event}"));
            assert_eq!(hooks.len(), 1, "{event}");
            let timeout = hooks[0]["timeout"].as_i64().unwrap();
            assert!((1..=3600).contains(&timeout), "{event}: timeout {timeout}");
            assert_eq!(hooks[0]["runas"].as_str(), Some("root"));
            let location = hooks[0]["location"].as_str().unwrap();
            let path = format!("{root}/{location}");
            let script = std::fs::read_to_string(&path).unwrap();
            assert!(script.starts_with("#!/bin/sh\n"), "{path}");
            assert!(
                script.contains(&format!("\"$resident\" hook {arg} --bundle \"$bundle\"")),
                "{path} does not run the resident `xtask hook {arg}`"
            );
            assert!(
                !script.contains("bin/xtask"),
                "{path} runs a program from the bundle"
            );
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert!(mode & 0o111 != 0, "{path} is not executable");
        }
        // The hooks that run from the previous revision never fail.
        for hook in [
            "application-stop",
            "before-block-traffic",
            "after-block-traffic",
        ] {
            let text = std::fs::read_to_string(format!("{root}/deploy/hooks/{hook}.sh")).unwrap();
            assert!(
                text.trim_end().ends_with("exit 0") && !text.contains("set -e"),
                "{hook} must never fail"
            );
        }
    }
}
