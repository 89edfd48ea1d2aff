//! `cargo xtask deploy`: asks AWS CodeDeploy to install a published release on the hosts of
//! the deployment group that appspec.yml's `branch_config` picks for this branch, then follows
//! the deployment until it ends.
//!
//! The revision is the release's bundle (see `bundle.rs`), already in the S3 store beside its
//! artifacts, so deploying builds and uploads nothing. Deployments ignore ApplicationStop
//! failures (an earlier revision's stop script must never block a fix) and roll back to the
//! last good revision on failure.

mod groups;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_host::commands::flags::StoreFlags;
use hitsave_host::kit::store;
use hitsave_schema::{self as manifest, ReleaseId};
use serde::Serialize;
use xtask::branch_config::{self, Decision};
use xtask::rollout::DeploymentConfig;

use hitsave_host::release::trust::{Keys, Trust};
use hitsave_host::release::verify::Which;

use hitsave_host::kit::ui::Ui;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreFlags,
    /// The release to deploy [default: the one published for HEAD's commit].
    #[arg(long, value_name = "ID", conflicts_with = "channel")]
    release: Option<ReleaseId>,
    /// Deploy the release a channel points at.
    #[arg(long, value_name = "NAME")]
    channel: Option<hitsave_schema::Channel>,
    /// The branch whose branch_config entry picks the deployment group [default: the branch
    /// GitHub Actions names, else the checked-out one].
    #[arg(long)]
    branch: Option<String>,
    /// The pull request number for $PR_NUMBER [default: from GITHUB_REF refs/pull/N/merge].
    #[arg(long, value_name = "N")]
    pr_number: Option<u64>,
    /// Deploy to this deployment group, whatever branch_config says.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// The CodeDeploy application.
    #[arg(
        long,
        env = "HITSAVE_CODEDEPLOY_APPLICATION",
        default_value = "hitsave"
    )]
    application: String,
    /// The appspec.yml whose branch_config is read [default: <repository>/appspec.yml].
    #[arg(long, value_name = "FILE")]
    appspec: Option<Utf8PathBuf>,
    /// Print the deployment group and the request, and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long to follow the deployment before giving up (it goes on in AWS).
    #[arg(long, value_name = "SECS", default_value = "1800")]
    wait_timeout: u64,
    /// The public keys the pointer and the manifest must be signed by.
    /// [default: deploy/keys in the checkout]
    #[arg(long, env = "HITSAVE_KEYS", value_name = "DIR")]
    keys: Option<Utf8PathBuf>,
    /// How the hosts are rolled out, whatever branch_config says: OneAtATime, HalfAtATime,
    /// AllAtOnce or min-healthy=N.
    #[arg(long, value_name = "CONFIG", value_parser = DeploymentConfig::parse)]
    deployment_config: Option<DeploymentConfig>,
    /// Create the deployment and return without following it.
    #[arg(long)]
    no_wait: bool,
    /// Delete the deployment group NAME (a pull request's `preview-*` group, when the pull
    /// request is closed) and deploy nothing.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["release", "channel", "group", "dry_run"])]
    remove_group: Option<String>,
}

/// CreateDeployment's request, in the API's JSON form (what `aws deploy create-deployment
/// --cli-input-json` takes): printed by --dry-run, sent through the SDK otherwise.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub application_name: String,
    pub deployment_group_name: String,
    pub revision: RevisionLocation,
    pub description: String,
    pub ignore_application_stop_failures: bool,
    pub file_exists_behavior: &'static str,
    pub auto_rollback_configuration: AutoRollback,
    /// How the group's hosts are rolled out (branch_config's `deploymentConfigName`); none:
    /// the deployment group's own configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_config_name: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionLocation {
    pub revision_type: &'static str,
    pub s3_location: S3Location,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
    pub bundle_type: &'static str,
    /// The bundle object's ETag from the manifest: CodeDeploy refuses an object that was
    /// replaced since the release was published.
    #[serde(rename = "eTag", skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// Its version id, for a versioned bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AutoRollback {
    pub enabled: bool,
    pub events: Vec<&'static str>,
}

pub fn run(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    let ui = Ui::new();
    if let Some(group) = &args.remove_group {
        return groups::remove(&ui, &args.application, group);
    }
    let appspec_path = args
        .appspec
        .clone()
        .unwrap_or_else(|| root.join("appspec.yml"));
    let checkout = xtask::git::Checkout::read(root)?;
    let branch = match (&args.branch, &checkout.branch) {
        (Some(b), _) | (None, Some(b)) => b.clone(),
        (None, None) => bail!("HEAD is detached: name the branch with --branch"),
    };
    let pr_number = args.pr_number.or_else(branch_config::pr_from_github_ref);
    let mut config = args.deployment_config;
    let mut group_config = None;
    let group = match &args.group {
        Some(g) => g.clone(),
        None => {
            let appspec = std::fs::read_to_string(&appspec_path)
                .with_context(|| format!("cannot read {appspec_path}"))?;
            match branch_config::decide(&appspec, &branch, pr_number)
                .with_context(|| format!("{appspec_path}: branch_config"))?
            {
                Decision::Deploy {
                    pattern,
                    deployment_group,
                    deployment_config,
                    group_config: made_with,
                } => {
                    config = config.or(deployment_config);
                    group_config = made_with;
                    ui.info(&format!(
                        "branch {branch} matches {pattern:?}: deployment group {deployment_group}{}",
                        config.map_or_else(String::new, |c| format!(", {c}"))
                    ));
                    deployment_group
                }
                Decision::Skip { pattern } => {
                    ui.info(&format!(
                        "branch {branch} matches {pattern:?}, which is `~`: not deployed"
                    ));
                    return Ok(());
                }
                Decision::PullRequestsOnly { pattern } => {
                    ui.info(&format!(
                        "branch {branch} matches {pattern:?}, whose group is a pull request's ($PR_NUMBER), and this is no pull request: not deployed"
                    ));
                    return Ok(());
                }
                Decision::NoMatch => {
                    ui.info(&format!(
                        "no branch_config pattern in {appspec_path} matches branch {branch}: not deployed"
                    ));
                    return Ok(());
                }
            }
        }
    };

    let Some(url) = args
        .store
        .store
        .as_deref()
        .filter(|s| s.starts_with("s3://"))
    else {
        bail!(
            "CodeDeploy downloads revisions from S3: name the S3 store the release was published to (--store s3://BUCKET/PREFIX or HITSAVE_STORE)"
        );
    };
    let (bucket, prefix) = split_s3_url(url)?;
    let store = store::open(&args.store.location(), Utf8Path::new("."))?;
    store.check()?;
    let which = match (&args.release, &args.channel) {
        (Some(id), _) => Which::Release(id.clone()),
        (None, Some(channel)) => Which::Channel(channel.clone()),
        (None, None) => Which::Commit(checkout.commit.clone()),
    };
    // Only what CI signed is deployed: the pointer, the manifest and the bundle object are
    // checked before CodeDeploy is asked for anything (the hosts check them all again).
    let keys_dir = args
        .keys
        .clone()
        .unwrap_or_else(|| root.join("deploy/keys"));
    let trust = Trust::with_keys(Keys::load(&keys_dir)?);
    let id = hitsave_host::release::verify::resolve(store.as_ref(), &which, &trust)?;
    let verified = hitsave_host::release::verify::read_manifest(store.as_ref(), &id, &trust)?;
    let manifest = verified.manifest;
    let bundle = manifest.bundle.as_ref().with_context(|| {
        format!("release {id} has no CodeDeploy bundle (it predates bundles): release it again with this xtask")
    })?;
    if bundle.files.is_empty() {
        bail!(
            "release {id} was published before manifests listed their bundle's files, and hosts refuse such a bundle: release its commit again with this xtask (a new commit if the id exists); nothing was deployed"
        );
    }
    check_bundle_object(store.as_ref(), &id, bundle)?;
    if let Err(e) = check_environment(&id, bundle, &group) {
        if args.group.is_none() {
            return Err(e);
        }
        // --group: the operator names the hosts; they decide with their own settings.
        ui.info(&format!("WARNING (--group {group}): {e:#}"));
    }
    ui.info(&format!(
        "release {id}: signed by key {}; its bundle object matches the manifest (size, ETag, sha256)",
        verified.key.map_or_else(|| "none".into(), |k| k.to_string())
    ));
    let key = manifest::artifact_key(&bundle.sha256);
    let request = Request {
        application_name: args.application.clone(),
        deployment_group_name: group.clone(),
        revision: RevisionLocation {
            revision_type: "S3",
            s3_location: S3Location {
                bucket,
                key: if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}/{key}")
                },
                bundle_type: "tgz",
                e_tag: bundle.etag.clone(),
                version: bundle.version_id.clone(),
            },
        },
        description: format!(
            "release {id} (commit {}) from branch {branch}",
            &manifest.commit[..12]
        ),
        ignore_application_stop_failures: true,
        file_exists_behavior: "OVERWRITE",
        auto_rollback_configuration: AutoRollback {
            enabled: true,
            events: vec!["DEPLOYMENT_FAILURE"],
        },
        deployment_config_name: config.map(DeploymentConfig::codedeploy_name),
    };
    if args.dry_run {
        ui.info(&format!(
            "dry run: would deploy release {id} to deployment group {group} of application {}; the request:",
            args.application
        ));
        if let Some(made) = &group_config {
            ui.info(&format!(
                "dry run: the group would be created (or updated) if it is not made with role {} and {} tag filter(s)",
                made.service_role_arn,
                made.ec2_tag_filters.len()
            ));
        }
        println!("{}", serde_json::to_string_pretty(&request)?);
        return Ok(());
    }
    create_and_follow(
        &ui,
        &request,
        config,
        group_config.as_ref(),
        (!args.no_wait).then(|| Duration::from_secs(args.wait_timeout)),
    )
}

/// The bundle object in the store is the one the signed manifest describes: its size, its
/// ETag and version (what CodeDeploy will be told to insist on) and its SHA-256.
fn check_bundle_object(
    store: &dyn hitsave_host::kit::store::Store,
    id: &ReleaseId,
    bundle: &hitsave_schema::BundleRef,
) -> anyhow::Result<()> {
    let key = manifest::artifact_key(&bundle.sha256);
    let fail = |what: String| {
        anyhow::anyhow!(
            "{}: the bundle of release {id} ({key}) {what}; nothing was deployed. Run `cargo xtask verify --release {id}`, and find out who changed it",
            store.describe()
        )
    };
    let info = store.head(&key)?.ok_or_else(|| fail("is missing".into()))?;
    if info.size != bundle.size {
        return Err(fail(format!(
            "has {} bytes, the signed manifest says {}",
            info.size, bundle.size
        )));
    }
    if let Some(etag) = &bundle.etag
        && info.etag.as_ref() != Some(etag)
    {
        return Err(fail(format!(
            "has ETag {}, the signed manifest says {etag}",
            info.etag.as_deref().unwrap_or("none")
        )));
    }
    if let Some(version) = &bundle.version_id
        && info.version_id.as_ref() != Some(version)
    {
        return Err(fail(format!(
            "is version {}, the signed manifest says {version}",
            info.version_id.as_deref().unwrap_or("none")
        )));
    }
    match hitsave_host::release::verify::check_artifact(
        store,
        &bundle.sha256,
        bundle.size,
        &|_| {},
    )? {
        None => Ok(()),
        Some(problem) => Err(fail(problem)),
    }
}

/// The hosts of `group` take releases whose branch deploys to their environment: refused here
/// already, with the same rule, rather than by every host.
fn check_environment(
    id: &ReleaseId,
    bundle: &hitsave_schema::BundleRef,
    group: &str,
) -> anyhow::Result<()> {
    let (env, _) = hitsave_host::site::placement::environment_of(group)?;
    let its = bundle
        .deployment_group
        .as_deref()
        .and_then(|g| hitsave_host::site::placement::environment_of(g).ok())
        .map(|(env, _)| env);
    if its != Some(env) {
        bail!(
            "release {id} {}, not to the {} hosts of deployment group {group}: they would refuse it (unless their host.env lists its branch in HITSAVE_BRANCHES); nothing was deployed",
            bundle.deployment_group.as_deref().map_or_else(
                || "was built from a branch that deploys nowhere".to_owned(),
                |g| format!("was built from a branch that deploys to {g}")
            ),
            env.name()
        );
    }
    Ok(())
}

/// The custom configuration `min-healthy=N` names, created the first time it is used.
async fn ensure_min_healthy_config(
    ui: &Ui,
    client: &aws_sdk_codedeploy::Client,
    n: u32,
) -> anyhow::Result<()> {
    use aws_sdk_codedeploy::types::{MinimumHealthyHosts, MinimumHealthyHostsType};
    let name = DeploymentConfig::MinimumHealthy(n).codedeploy_name();
    match client
        .get_deployment_config()
        .deployment_config_name(&name)
        .send()
        .await
    {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_deployment_config_does_not_exist_exception()) => {}
        Err(e) => bail!(
            "cannot read deployment configuration {name}: {}",
            aws_sdk_codedeploy::error::DisplayErrorContext(&e)
        ),
    }
    client
        .create_deployment_config()
        .deployment_config_name(&name)
        .minimum_healthy_hosts(
            MinimumHealthyHosts::builder()
                .r#type(MinimumHealthyHostsType::HostCount)
                .value(i32::try_from(n).context("too many hosts")?)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create deployment configuration {name}: {}",
                aws_sdk_codedeploy::error::DisplayErrorContext(&e)
            )
        })?;
    ui.info(&format!(
        "created deployment configuration {name}: at least {n} hosts stay healthy"
    ));
    Ok(())
}

/// Each host's state in a deployment, as last reported: a line per change.
#[derive(Default)]
struct HostProgress {
    seen: std::collections::BTreeMap<String, String>,
}

impl HostProgress {
    async fn update(
        &mut self,
        ui: &Ui,
        client: &aws_sdk_codedeploy::Client,
        id: &str,
    ) -> anyhow::Result<()> {
        let listed = client
            .list_deployment_targets()
            .deployment_id(id)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("{}", aws_sdk_codedeploy::error::DisplayErrorContext(&e))
            })?;
        let ids = listed.target_ids().to_vec();
        // BatchGetDeploymentTargets takes at most 25 at a time.
        for chunk in ids.chunks(25) {
            let got = client
                .batch_get_deployment_targets()
                .deployment_id(id)
                .set_target_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("{}", aws_sdk_codedeploy::error::DisplayErrorContext(&e))
                })?;
            for target in got.deployment_targets() {
                let Some(t) = target.instance_target() else {
                    continue;
                };
                let host = t.target_id().unwrap_or("?").to_owned();
                let status = t.status().map_or("unknown", |s| s.as_str());
                // The event running now, or the last one that ran.
                let event = t
                    .lifecycle_events()
                    .iter()
                    .rev()
                    .find(|e| e.status().is_some_and(|s| s.as_str() != "Pending"))
                    .map(|e| {
                        format!(
                            "{} {}",
                            e.lifecycle_event_name().unwrap_or("?"),
                            e.status().map_or("", |s| s.as_str())
                        )
                    })
                    .unwrap_or_default();
                let line = format!(
                    "{status}{}",
                    if event.is_empty() {
                        String::new()
                    } else {
                        format!(" ({event})")
                    }
                );
                if self.seen.get(&host) != Some(&line) {
                    ui.info(&format!("host {host}: {line}"));
                    self.seen.insert(host, line);
                }
            }
        }
        Ok(())
    }
}

/// `s3://BUCKET/PREFIX` -> (bucket, prefix without slashes at either end).
fn split_s3_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.trim_start_matches("s3://");
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("{url:?} names no bucket");
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

/// Runs `work` with a CodeDeploy client from the standard AWS configuration (environment,
/// profile, role; AWS_ENDPOINT_URL_CODEDEPLOY for an emulator).
fn with_codedeploy<T>(
    work: impl AsyncFnOnce(aws_sdk_codedeploy::Client) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        work(aws_sdk_codedeploy::Client::new(&sdk_config)).await
    })
}

fn create_and_follow(
    ui: &Ui,
    request: &Request,
    config: Option<DeploymentConfig>,
    group_config: Option<&branch_config::GroupConfig>,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    use aws_sdk_codedeploy::types::{
        AutoRollbackConfiguration, AutoRollbackEvent, BundleType, DeploymentStatus,
        FileExistsBehavior, RevisionLocationType,
    };
    with_codedeploy(async |client| {
        if let Some(DeploymentConfig::MinimumHealthy(n)) = config {
            ensure_min_healthy_config(ui, &client, n).await?;
        }
        if let Some(made) = group_config {
            groups::ensure(
                ui,
                &client,
                &request.application_name,
                &request.deployment_group_name,
                made,
            )
            .await?;
        }
        // Every field comes from `request`: what --dry-run prints is what is sent.
        let s3 = &request.revision.s3_location;
        let rollback = &request.auto_rollback_configuration;
        let created = client
            .create_deployment()
            .application_name(&request.application_name)
            .deployment_group_name(&request.deployment_group_name)
            .revision(
                aws_sdk_codedeploy::types::RevisionLocation::builder()
                    .revision_type(RevisionLocationType::from(request.revision.revision_type))
                    .s3_location(
                        aws_sdk_codedeploy::types::S3Location::builder()
                            .bucket(&s3.bucket)
                            .key(&s3.key)
                            .bundle_type(BundleType::from(s3.bundle_type))
                            .set_e_tag(s3.e_tag.clone())
                            .set_version(s3.version.clone())
                            .build(),
                    )
                    .build(),
            )
            .description(&request.description)
            .ignore_application_stop_failures(request.ignore_application_stop_failures)
            .file_exists_behavior(FileExistsBehavior::from(request.file_exists_behavior))
            .set_deployment_config_name(request.deployment_config_name.clone())
            .auto_rollback_configuration(
                AutoRollbackConfiguration::builder()
                    .enabled(rollback.enabled)
                    .set_events(Some(
                        rollback
                            .events
                            .iter()
                            .map(|e| AutoRollbackEvent::from(*e))
                            .collect(),
                    ))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "CodeDeploy refused the deployment: {}",
                    aws_sdk_codedeploy::error::DisplayErrorContext(&e)
                )
            })?;
        let id = created
            .deployment_id()
            .context("CodeDeploy returned no deployment id")?
            .to_owned();
        ui.info(&format!(
            "deployment {id} created for group {}",
            request.deployment_group_name
        ));
        let Some(timeout) = timeout else {
            println!("{id}");
            return Ok(());
        };
        let bar = ui.spinner(&format!("deployment {id}"));
        let started = Instant::now();
        let mut hosts = HostProgress::default();
        loop {
            if let Err(e) = hosts.update(ui, &client, &id).await {
                bar.set_message(format!(
                    "deployment {id}: cannot list its hosts yet ({e:#})"
                ));
            }
            let info = client
                .get_deployment()
                .deployment_id(&id)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read deployment {id}: {}",
                        aws_sdk_codedeploy::error::DisplayErrorContext(&e)
                    )
                })?;
            let info = info.deployment_info().context("no deployment info")?;
            let status = info.status().cloned();
            if let Some(o) = info.deployment_overview() {
                bar.set_message(format!(
                    "deployment {id}: {} (hosts: {} pending, {} in progress, {} succeeded, {} failed, {} skipped)",
                    status.as_ref().map_or("unknown", |s| s.as_str()),
                    o.pending(),
                    o.in_progress(),
                    o.succeeded(),
                    o.failed(),
                    o.skipped()
                ));
            }
            match status {
                Some(DeploymentStatus::Succeeded) => {
                    bar.finish_and_clear();
                    ui.info(&format!(
                        "deployment {id} succeeded in {:.0} s",
                        started.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
                Some(s @ (DeploymentStatus::Failed | DeploymentStatus::Stopped)) => {
                    bar.finish_and_clear();
                    let why = info
                        .error_information()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e.code().map_or("unknown", |c| c.as_str()),
                                e.message().unwrap_or("")
                            )
                        })
                        .unwrap_or_default();
                    bail!(
                        "deployment {id} {}: {why}; the hosts' hook logs are in /opt/codedeploy-agent/deployment-root/*/{id}/logs/scripts.log",
                        s.as_str().to_lowercase()
                    );
                }
                _ => {}
            }
            if started.elapsed() > timeout {
                bail!(
                    "deployment {id} is still running after {} s; follow it in the CodeDeploy console",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn policy(name: &str) -> Vec<Value> {
        let path = format!("{}/../deploy/aws/{name}", env!("CARGO_MANIFEST_DIR"));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(doc["Version"], "2012-10-17", "{path}");
        doc["Statement"].as_array().unwrap().clone()
    }

    fn actions(statements: &[Value]) -> Vec<String> {
        statements
            .iter()
            .flat_map(|s| match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                other => panic!("Action {other}"),
            })
            .collect()
    }

    fn resources(s: &Value) -> Vec<String> {
        match &s["Resource"] {
            Value::String(r) => vec![r.clone()],
            Value::Array(r) => r.iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
            other => panic!("Resource {other}"),
        }
    }

    const PREFIX: &str = "arn:aws:s3:::hitsave-releases/hitsave/";
    /// What decides which release runs: only the release role writes there.
    const RELEASE_KEYS: &[&str] = &[
        "artifacts/*",
        "inputs/*",
        "releases/*",
        "contents/*",
        "commits/*",
        "channels/*",
    ];

    /// The trust model, checked (parliament checks the policies' form in the lint suite): no
    /// wildcard action; only the release role writes what decides which release runs, and it
    /// deletes nothing; hosts and deploy roles only read there; hosts write their backups only;
    /// each deploy role deploys to its own environment's groups.
    #[test]
    fn iam_policies_follow_the_trust_model() {
        let roles = [
            "release-role-policy.json",
            "deploy-production-role-policy.json",
            "deploy-staging-role-policy.json",
            "deploy-preview-role-policy.json",
            "instance-role-production-policy.json",
            "instance-role-staging-policy.json",
        ];
        for name in roles {
            for s in &policy(name) {
                assert_eq!(s["Effect"], "Allow", "{name}: only Allow statements");
                for a in actions(std::slice::from_ref(s)) {
                    assert!(!a.contains('*'), "{name}: wildcard action {a}");
                    let writes = matches!(
                        a.as_str(),
                        "s3:PutObject" | "s3:DeleteObject" | "s3:AbortMultipartUpload"
                    );
                    for r in resources(s) {
                        let under = r.strip_prefix(PREFIX);
                        if a == "s3:ListBucket" {
                            assert_eq!(r, "arn:aws:s3:::hitsave-releases", "{name}");
                            let prefixes = s["Condition"]["StringLike"]["s3:prefix"]
                                .as_array()
                                .unwrap_or_else(|| panic!("{name}: listing without a prefix"));
                            for p in prefixes {
                                let p = p.as_str().unwrap();
                                assert!(p.starts_with("hitsave/"), "{name}: lists {p}");
                                if let Some(env) = name
                                    .strip_prefix("instance-role-")
                                    .and_then(|n| n.strip_suffix("-policy.json"))
                                    && p.starts_with("hitsave/backups/")
                                {
                                    assert!(
                                        p == "hitsave/backups/"
                                            || p == format!("hitsave/backups/{env}/*"),
                                        "{name}: lists {p}, another environment's backups"
                                    );
                                }
                            }
                        } else if a.starts_with("s3:") {
                            let under = under.unwrap_or_else(|| {
                                panic!("{name}: {a} on {r}, outside the prefix")
                            });
                            if writes && RELEASE_KEYS.contains(&under) {
                                assert_eq!(
                                    name, "release-role-policy.json",
                                    "{name} may write {under}, which decides what runs"
                                );
                            }
                            if writes && name != "release-role-policy.json" {
                                assert!(name.starts_with("instance-role-"), "{name}: {a}");
                            }
                            // A host reaches its own environment's backups, no other's.
                            if let Some(env) = name
                                .strip_prefix("instance-role-")
                                .and_then(|n| n.strip_suffix("-policy.json"))
                                && under.starts_with("backups")
                            {
                                assert_eq!(under, format!("backups/{env}/*"), "{name}: {a}");
                            }
                        }
                    }
                }
            }
        }
        let release = actions(&policy("release-role-policy.json"));
        assert!(release.contains(&"s3:PutObject".to_owned()));
        assert!(!release.contains(&"s3:DeleteObject".to_owned()));
        assert!(!release.iter().any(|a| a.starts_with("codedeploy:")));
        for (env, groups) in [
            ("production", "production*"),
            ("staging", "staging*"),
            ("preview", "preview-*"),
        ] {
            let statements = policy(&format!("deploy-{env}-role-policy.json"));
            let deploy = actions(&statements);
            assert!(deploy.contains(&"codedeploy:CreateDeployment".to_owned()));
            assert!(!deploy.contains(&"s3:PutObject".to_owned()));
            for s in &statements {
                let acts = actions(std::slice::from_ref(s));
                if acts
                    .iter()
                    .any(|a| a == "codedeploy:CreateDeployment" || a.ends_with("DeploymentGroup"))
                {
                    assert_eq!(
                        resources(s),
                        [format!(
                            "arn:aws:codedeploy:REGION:ACCOUNT_ID:deploymentgroup:hitsave/{groups}"
                        )],
                        "the {env} deploy role deploys elsewhere, or makes other groups"
                    );
                }
                // Only previews' groups are made and removed by CI.
                if env != "preview" {
                    assert!(
                        !acts.iter().any(|a| a.ends_with("DeploymentGroup")),
                        "{env}"
                    );
                }
            }
        }
        // Each CI role is trusted by one GitHub environment on one branch.
        for (file, subject) in [
            (
                "github-oidc-trust-release.json",
                "environment:release:ref:refs/heads/main",
            ),
            (
                "github-oidc-trust-release-staging.json",
                "environment:release-staging:ref:refs/heads/staging",
            ),
            (
                "github-oidc-trust-deploy-production.json",
                "environment:production:ref:refs/heads/main",
            ),
            (
                "github-oidc-trust-deploy-staging.json",
                "environment:staging:ref:refs/heads/staging",
            ),
            (
                "github-oidc-trust-deploy-preview.json",
                "environment:preview",
            ),
            (
                "github-oidc-trust-release-preview.json",
                "environment:release-preview",
            ),
        ] {
            let statements = policy(file);
            assert_eq!(statements.len(), 1, "{file}");
            let condition = &statements[0]["Condition"]["StringEquals"];
            assert_eq!(
                condition["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com",
                "{file}"
            );
            assert_eq!(
                condition["token.actions.githubusercontent.com:sub"],
                format!("repo:hitsave-io/hitsave:{subject}"),
                "{file}"
            );
            assert!(
                statements[0]["Condition"]["StringLike"].is_null(),
                "{file}: a pattern"
            );
        }
    }

    /// The previews' roles stay in their lane: their release role writes under `previews/`
    /// only (never what decides a main or staging release, nor another prefix's records); the
    /// preview host reads releases and previews, writes staging's and the previews' backups
    /// only, and may only ask whether a preview group exists.
    #[test]
    fn preview_policies_stay_in_their_lane() {
        const BUCKET: &str = "arn:aws:s3:::hitsave-releases";
        for s in &policy("release-preview-role-policy.json") {
            for r in resources(s) {
                assert!(
                    r == BUCKET || r.starts_with(&format!("{BUCKET}/previews/")),
                    "the preview release role reaches {r}"
                );
            }
            for p in s["Condition"]["StringLike"]["s3:prefix"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert!(p.as_str().unwrap().starts_with("previews/"), "lists {p}");
            }
            assert!(
                !actions(std::slice::from_ref(s))
                    .iter()
                    .any(|a| a == "s3:DeleteObject")
            );
        }
        for s in &policy("instance-role-preview-policy.json") {
            for a in actions(std::slice::from_ref(s)) {
                assert!(!a.contains('*'), "wildcard action {a}");
                let writes = matches!(a.as_str(), "s3:PutObject" | "s3:DeleteObject");
                for r in resources(s) {
                    if writes {
                        assert!(
                            r == format!("{PREFIX}backups/staging/*")
                                || r == format!("{PREFIX}backups/preview-*"),
                            "the preview host writes {r}"
                        );
                    }
                    if a.starts_with("codedeploy:") {
                        assert_eq!(a, "codedeploy:GetDeploymentGroup");
                        assert_eq!(
                            r,
                            "arn:aws:codedeploy:REGION:ACCOUNT_ID:deploymentgroup:hitsave/preview-*"
                        );
                    }
                }
            }
        }
    }

    /// The request's values are ones the SDK knows: none would go out as an unknown variant.
    #[test]
    fn request_values_are_sdk_variants() {
        use aws_sdk_codedeploy::types::{
            AutoRollbackEvent, BundleType, FileExistsBehavior, RevisionLocationType,
        };
        assert_eq!(BundleType::from("tgz"), BundleType::TarGZip);
        assert_eq!(RevisionLocationType::from("S3"), RevisionLocationType::S3);
        assert_eq!(
            FileExistsBehavior::from("OVERWRITE"),
            FileExistsBehavior::Overwrite
        );
        assert_eq!(
            AutoRollbackEvent::from("DEPLOYMENT_FAILURE"),
            AutoRollbackEvent::DeploymentFailure
        );
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            super::split_s3_url("s3://b/p/q/").unwrap(),
            ("b".to_owned(), "p/q".to_owned())
        );
        assert_eq!(
            super::split_s3_url("s3://b").unwrap(),
            ("b".to_owned(), String::new())
        );
        assert!(super::split_s3_url("s3:///p").is_err());
    }
}
