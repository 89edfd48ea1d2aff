//! `xtask hook <event>`: what each CodeDeploy lifecycle hook does. The short scripts in
//! deploy/hooks/ run the host's resident program (`resident.rs`), never a program from the
//! bundle. The bundle's revision.json names the release and its store; CodeDeploy's
//! DEPLOYMENT_GROUP_NAME names the environment.
//!
//! Every hook of the new revision goes through two programs:
//! 1. The resident program checks, before anything from the bundle is trusted: the manifest
//!    revision.json names is signed by a key this host trusts (`trust.rs`); the deployment
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

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Parser;

use crate::codedeploy::admission::{environment_of, is_true};
use crate::site::host::Host;
use crate::site::settings::Env;
use crate::site::stack::Stack;
use hitsave_schema::Revision;

#[derive(clap::Args)]
pub struct Args {
    /// The lifecycle event to run.
    #[arg(value_enum)]
    event: Event,
    /// The unpacked bundle (CodeDeploy's deployment archive) [default: the directory above
    /// this xtask's bin/].
    #[arg(long, value_name = "DIR")]
    bundle: Option<Utf8PathBuf>,
    /// Set by the resident program when it runs the release's own program, after it checked
    /// the bundle, the signature, the branch and the age.
    #[arg(long, hide = true)]
    checked: bool,
    /// Host settings: KEY=VALUE lines (HITSAVE_ROOT, HITSAVE_PROJECT, HITSAVE_BIND,
    /// HITSAVE_HTTP_PORT, HITSAVE_HTTPS_PORT, HITSAVE_LOCAL_BASE_IMAGES,
    /// HITSAVE_HEALTH_TIMEOUT, HITSAVE_KEYS, HITSAVE_TLS, HITSAVE_ACME_DIRECTORY,
    /// HITSAVE_ACME_EMAIL, HITSAVE_ACME_CA_ROOT, HITSAVE_TLS_RENEW_WITHIN, HITSAVE_HSTS_MAX_AGE,
    /// HITSAVE_DB_HOST, HITSAVE_DB_PORT, HITSAVE_DB_NAME, HITSAVE_DB_USER, HITSAVE_DB_CA_FILE,
    /// HITSAVE_DB_NETWORK, HITSAVE_LB_HEALTH_WAIT, HITSAVE_BRANCHES, HITSAVE_ALLOW_DOWNGRADE);
    /// optional.
    #[arg(
        long,
        env = "HITSAVE_HOST_CONFIG",
        value_name = "FILE",
        default_value = "/etc/hitsave/host.env"
    )]
    config: Utf8PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
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

/// The host settings a file may set, and the install flag each becomes.
const SETTINGS: &[(&str, &str)] = &[
    ("HITSAVE_ROOT", "--root"),
    ("HITSAVE_PROJECT", "--project"),
    ("HITSAVE_BIND", "--bind"),
    ("HITSAVE_HTTP_PORT", "--http-port"),
    ("HITSAVE_HTTPS_PORT", "--https-port"),
    ("HITSAVE_LOCAL_BASE_IMAGES", "--local-base-images"),
    ("HITSAVE_HEALTH_TIMEOUT", "--health-timeout"),
    ("HITSAVE_KEYS", "--keys"),
    ("HITSAVE_TLS", "--tls"),
    ("HITSAVE_ACME_DIRECTORY", "--acme-directory"),
    ("HITSAVE_ACME_EMAIL", "--acme-email"),
    ("HITSAVE_ACME_CA_ROOT", "--acme-ca-root"),
    ("HITSAVE_TLS_RENEW_WITHIN", "--tls-renew-within"),
    ("HITSAVE_HSTS_MAX_AGE", "--hsts-max-age"),
    // An external database (RDS): the stack starts no db container.
    ("HITSAVE_DB_HOST", "--db-host"),
    ("HITSAVE_DB_PORT", "--db-port"),
    ("HITSAVE_DB_NAME", "--db-name"),
    ("HITSAVE_DB_USER", "--db-user"),
    ("HITSAVE_DB_CA_FILE", "--db-ca-file"),
    ("HITSAVE_DB_NETWORK", "--db-network"),
    // The hooks' own (no install flag): how long the load balancer takes to see a failing
    // health check (interval x unhealthy threshold), waited in before-block-traffic.
    ("HITSAVE_LB_HEALTH_WAIT", ""),
    // The branches this host takes (`main,release/*`), instead of the release's branch_config.
    (crate::codedeploy::admission::BRANCHES, ""),
    // 1: an older release than the newest installed is taken (a deliberate downgrade).
    (crate::codedeploy::admission::ALLOW_DOWNGRADE, ""),
];

/// Parses install's flags as a command line would.
#[derive(Parser)]
struct InstallCommand {
    #[command(flatten)]
    args: crate::release::install::Args,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = match &args.bundle {
        Some(dir) => dir.clone(),
        None => bundle_dir()?,
    };
    if args.event.runs_from_previous_revision() {
        // Whatever goes wrong here must not stop the deployment that follows.
        let result = match args.event {
            Event::BeforeBlockTraffic => before_block_traffic(&args.config),
            Event::AfterBlockTraffic => after_block_traffic(&args.config),
            _ => application_stop(&bundle, &args.config),
        };
        if let Err(e) = result {
            eprintln!(
                "xtask: hook {}: {e:#} (ignored: the stack keeps serving)",
                args.event.name()
            );
        }
        return Ok(());
    }
    let revision = Revision::read(bundle.as_std_path())?;
    let settings = read_settings(&args.config)?;
    let group = std::env::var("DEPLOYMENT_GROUP_NAME").map_err(|_| {
        anyhow::anyhow!(
            "DEPLOYMENT_GROUP_NAME is not set: `xtask hook` runs from CodeDeploy's lifecycle hooks; to install by hand, run `xtask install`"
        )
    })?;
    let env = environment_of(&group)?;
    if !args.checked {
        return check_and_hand_over(&args, &bundle, &revision, &settings, &group, env);
    }
    eprintln!(
        "xtask: hook {}: release {} for deployment group {group} ({}), deployment {}",
        args.event.name(),
        revision.release,
        env.name(),
        std::env::var("DEPLOYMENT_ID").unwrap_or_else(|_| "unknown".into())
    );
    match args.event {
        Event::ValidateService => return validate_service(&revision, &settings),
        Event::BeforeAllowTraffic => return before_allow_traffic(&revision, &settings),
        Event::AfterAllowTraffic => return after_allow_traffic(&revision, &settings),
        _ => {}
    }
    let mut argv: Vec<String> = vec![
        "install".into(),
        "--release".into(),
        revision.release.to_string(),
        "--store".into(),
        revision.store.clone(),
        "--env".into(),
        env.name().into(),
    ];
    if let Some(url) = &revision.endpoint_url {
        argv.extend(["--endpoint-url".into(), url.clone()]);
    }
    if revision.path_style {
        argv.push("--path-style".into());
    }
    for (key, flag) in SETTINGS {
        match (settings.get(*key), *key) {
            (None, _) => {}
            (Some(_), _) if flag.is_empty() => {}
            (Some(v), "HITSAVE_LOCAL_BASE_IMAGES") => {
                if is_true(v) {
                    argv.push((*flag).into());
                }
            }
            (Some(v), _) => argv.extend([(*flag).into(), v.clone()]),
        }
    }
    match args.event {
        Event::BeforeInstall => argv.extend(["--until".into(), "fetched".into()]),
        Event::AfterInstall => argv.extend(["--until".into(), "prepared".into()]),
        _ => {}
    }
    let install = InstallCommand::try_parse_from(&argv)
        .map_err(|e| anyhow::anyhow!("the host settings in {} are not valid: {e}", args.config))?;
    crate::release::install::run(install.args)
}

/// The resident program's part of a hook: everything that decides whether this bundle may
/// touch the host, then the release's own program for the work. A refusal changes nothing.
fn check_and_hand_over(
    args: &Args,
    bundle: &Utf8Path,
    revision: &Revision,
    settings: &BTreeMap<String, String>,
    group: &str,
    env: Env,
) -> anyhow::Result<()> {
    let ui = crate::kit::ui::Ui::new();
    let id = &revision.release;
    eprintln!(
        "xtask: hook {}: checking the bundle of release {id} for deployment group {group} ({}), deployment {}",
        args.event.name(),
        env.name(),
        std::env::var("DEPLOYMENT_ID").unwrap_or_else(|_| "unknown".into())
    );
    let store = crate::kit::store::open(
        &crate::kit::store::StoreArgs {
            store: Some(revision.store.clone()),
            endpoint_url: revision.endpoint_url.clone(),
            path_style: revision.path_style,
        },
        Utf8Path::new("."),
    )?;
    store.check()?;
    let trust = crate::release::trust::Trust::new(
        &crate::release::trust::TrustArgs {
            keys: settings
                .get("HITSAVE_KEYS")
                .map_or(crate::release::trust::DEFAULT_KEYS, String::as_str)
                .into(),
            allow_unsigned: false,
        },
        store.is_local(),
    )?;
    let verified = crate::release::verify::read_manifest(store.as_ref(), id, &trust).with_context(|| {
        format!(
            "the bundle names release {id}, whose manifest this host does not trust; the running release is untouched"
        )
    })?;
    let manifest = &verified.manifest;
    let refused = |e: anyhow::Error| {
        e.context(format!(
            "hook {}: the bundle of release {id} is refused; nothing was changed and the running release keeps serving",
            args.event.name()
        ))
    };
    let listed = manifest
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
    let root = root_of(settings);
    let host = Host::open(&root)?;
    if matches!(
        args.event,
        Event::BeforeInstall | Event::AfterInstall | Event::ApplicationStart
    ) {
        crate::codedeploy::admission::check_branch(manifest, group, env, settings)
            .map_err(refused)?;
        crate::codedeploy::admission::check_downgrade(&host, manifest, env, settings)
            .map_err(refused)?;
    }
    let program =
        crate::codedeploy::resident::release_program(&ui, &host, store.as_ref(), manifest)?;
    let status = std::process::Command::new(&program)
        .args(["hook", &args.event.name(), "--checked", "--bundle"])
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
    if matches!(args.event, Event::ApplicationStart | Event::ValidateService)
        && host.current().as_ref() == Some(id)
        && crate::codedeploy::resident::adopt(&root, &program, manifest)?
    {
        eprintln!(
            "xtask: hook: the resident program {} is now release {id}'s host program",
            crate::codedeploy::resident::path(&root)
        );
    }
    Ok(())
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
    fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }
}

/// The settings file, if there is one: `KEY=VALUE` lines, `#` comments, blank lines.
pub fn read_settings(path: &Utf8Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
    };
    let mut settings = BTreeMap::new();
    for line in crate::kit::env_file::parse(path, &text)? {
        if !SETTINGS.iter().any(|(k, _)| *k == line.key) {
            bail!(
                "{path}:{}: unknown setting {}; the settings are {}",
                line.number,
                line.key,
                SETTINGS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        settings.insert(line.key, line.value);
    }
    Ok(settings)
}

fn root_of(settings: &BTreeMap<String, String>) -> Utf8PathBuf {
    settings
        .get("HITSAVE_ROOT")
        .cloned()
        .or_else(|| std::env::var("HITSAVE_ROOT").ok())
        .unwrap_or_else(|| crate::site::host::DEFAULT_ROOT.into())
        .into()
}

/// Reports what runs. The stack is not stopped: the next release replaces it container by
/// container, so requests are served throughout.
fn application_stop(bundle: &Utf8Path, config: &Utf8Path) -> anyhow::Result<()> {
    let settings = read_settings(config)?;
    let root = root_of(&settings);
    let leaving = Revision::read(bundle.as_std_path())
        .map(|r| r.release.to_string())
        .unwrap_or_else(|_| "unknown".into());
    if !root.join("releases").is_dir() {
        eprintln!("xtask: hook application-stop: nothing is installed under {root} yet");
        return Ok(());
    }
    let host = Host::open(&root)?;
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
fn current_stack(settings: &BTreeMap<String, String>) -> anyhow::Result<(Host, Option<Stack>)> {
    let root = root_of(settings);
    let host = Host::open(&root)?;
    let stack = match host.current() {
        Some(id) => Some(Stack::open(&host.release_dir(&id))?),
        None => None,
    };
    Ok((host, stack))
}

/// The balancer's health check fails from now on; then the wait for the balancer to see it.
fn before_block_traffic(config: &Utf8Path) -> anyhow::Result<()> {
    let settings = read_settings(config)?;
    let wait: u64 = match settings.get("HITSAVE_LB_HEALTH_WAIT") {
        Some(v) => v.parse().with_context(|| {
            format!("HITSAVE_LB_HEALTH_WAIT={v:?} in {config} is not a number of seconds")
        })?,
        None => 0,
    };
    let (host, stack) = current_stack(&settings)?;
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

fn after_block_traffic(config: &Utf8Path) -> anyhow::Result<()> {
    let settings = read_settings(config)?;
    let (host, _) = current_stack(&settings)?;
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
fn before_allow_traffic(
    revision: &Revision,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    validate_service(revision, settings)?;
    let (host, stack) = current_stack(settings)?;
    let stack = stack.context("nothing is current")?;
    crate::site::nginx::draining_off(&host.nginx_dir())?;
    let timeout = std::time::Duration::from_secs(
        settings
            .get("HITSAVE_HEALTH_TIMEOUT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(120),
    );
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
fn after_allow_traffic(
    revision: &Revision,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
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
fn validate_service(
    revision: &Revision,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let root = root_of(settings);
    let host = Host::open(&root)?;
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_groups_name_environments() {
        assert_eq!(environment_of("production").unwrap(), Env::Production);
        assert_eq!(environment_of("Production-eu").unwrap(), Env::Production);
        assert_eq!(environment_of("staging").unwrap(), Env::Staging);
        assert_eq!(environment_of("pr-42-staging").unwrap(), Env::Staging);
        for env in [Env::Production, Env::Staging, Env::Local] {
            assert_eq!(Env::parse(env.name()).unwrap(), env);
        }
        assert!(Env::parse("prod").is_err());
        let err = environment_of("qa").unwrap_err().to_string();
        assert!(err.contains("production or staging"), "{err}");
        assert!(environment_of("productionish").is_err());
    }

    #[test]
    fn settings_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("host.env")).unwrap();
        assert!(
            read_settings(&path).unwrap().is_empty(),
            "no file, no settings"
        );
        std::fs::write(
            &path,
            "# a host\nHITSAVE_ROOT=/srv/hitsave\n\nHITSAVE_HTTP_PORT = \"8080\"\n",
        )
        .unwrap();
        let s = read_settings(&path).unwrap();
        assert_eq!(s["HITSAVE_ROOT"], "/srv/hitsave");
        assert_eq!(s["HITSAVE_HTTP_PORT"], "8080");
        std::fs::write(&path, "HITSAVE_PASSWORD=x\n").unwrap();
        let err = read_settings(&path).unwrap_err().to_string();
        assert!(err.contains("unknown setting HITSAVE_PASSWORD"), "{err}");
        std::fs::write(&path, "just words\n").unwrap();
        let err = read_settings(&path).unwrap_err().to_string();
        assert!(err.contains(":1: expected KEY=VALUE"), "{err}");
    }
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
