//! The CodeDeploy lifecycle test (part of the install suite): the releases' bundles are
//! deployed the way the CodeDeploy agent deploys a revision on an EC2 host, against the real
//! Docker Engine, as root.
//!
//! `Agent` does what the agent does (aws-codedeploy-agent's hook_executor.rb): ApplicationStop
//! runs from the last successful deployment's archive; the bundle is unpacked into
//! `<deployment-root>/<group-id>/<deployment-id>/deployment-archive`; each hook's scripts run
//! in appspec order with the agent's working directory (not the archive), its environment plus
//! LIFECYCLE_EVENT, DEPLOYMENT_ID, APPLICATION_NAME, DEPLOYMENT_GROUP_NAME and
//! DEPLOYMENT_GROUP_ID, in their own process group, killed (SIGTERM to the group) at the
//! appspec timeout; output goes to `logs/scripts.log`; the first failure ends the deployment.
//! The Install step copies the `files` into their destination, re-rooted under the test's
//! directory (our appspec has none). Hooks also get the agent's BUNDLE_KEY (the revision's
//! key, here the bundle's path in the store). The one liberty: the agent's environment carries
//! HITSAVE_HOST_CONFIG, so that the host settings (another root and ports) come from the
//! test's file, not /etc/hitsave.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{self as manifest, Manifest};
use yaml_rust2::YamlLoader;

use crate::child::free_port;
use crate::test::install::{
    ProjectCleanup, current_release, expect_serving_at, write_host_secrets,
};
use crate::tools;

/// The order of an in-place deployment's events that run scripts, with the step between.
const BEFORE_COPY: &[&str] = &["BeforeInstall"];
const AFTER_COPY: &[&str] = &["AfterInstall", "ApplicationStart", "ValidateService"];

pub(crate) struct Agent {
    /// Where the agent keeps deployments (/opt/codedeploy-agent/deployment-root on a host).
    pub(crate) deployment_root: Utf8PathBuf,
    /// The agent's working directory, which the hooks inherit.
    pub(crate) home: Utf8PathBuf,
    /// `files` destinations are re-rooted here.
    pub(crate) files_root: Utf8PathBuf,
    pub(crate) group: String,
    pub(crate) group_id: String,
    pub(crate) host_config: Utf8PathBuf,
    /// The last deployment that succeeded: its archive runs the next ApplicationStop.
    pub(crate) last_successful: Option<Utf8PathBuf>,
    /// The revision's key (BUNDLE_KEY) of the deployment running now.
    pub(crate) bundle_key: String,
    /// The load balancer CodeDeploy takes this host out of and puts back in, and the host's
    /// name there; none for a deployment group without one.
    pub(crate) balancer: Option<(std::sync::Arc<dyn TargetGroup>, String)>,
}

/// What CodeDeploy does to a load balancer's target group around an instance's deployment.
pub(crate) trait TargetGroup: Send + Sync {
    /// BlockTraffic: no new requests; returns once those in flight are done.
    fn deregister(&self, target: &str) -> anyhow::Result<()>;
    /// AllowTraffic: requests again, once the target passes the health check.
    fn register(&self, target: &str) -> anyhow::Result<()>;
}

/// How a deployment ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Succeeded,
    /// The event that failed and why (the agent's message and the script log's tail).
    Failed {
        event: String,
        why: String,
    },
}

impl Agent {
    /// One deployment of `bundle` (a .tar.gz), as CodeDeploy runs it on this host.
    pub(crate) fn deploy(
        &mut self,
        id: &str,
        bundle: &Utf8Path,
        ignore_stop_failures: bool,
    ) -> anyhow::Result<Outcome> {
        eprintln!("xtask: test: codedeploy: deployment {id}");
        self.bundle_key = format!(
            "artifacts/{}",
            bundle.file_name().context("a bundle without a name")?
        );
        let dir = self.deployment_root.join(&self.group_id).join(id);
        if let Some((group, target)) = self.balancer.clone() {
            // BeforeBlockTraffic and AfterBlockTraffic run from the last successful revision,
            // around the deregistration, which CodeDeploy does even on a first deployment.
            let last = self.last_successful.clone();
            for event in ["BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic"] {
                let result = match (event, &last) {
                    ("BlockTraffic", _) => group.deregister(&target).map_err(|e| format!("{e:#}")),
                    (_, Some(last)) => self.run_event(event, last, id),
                    (_, None) => Ok(()),
                };
                if let Err(why) = result {
                    return Ok(Outcome::Failed {
                        event: event.into(),
                        why,
                    });
                }
            }
        }
        if let Some(last) = self.last_successful.clone()
            && let Err(why) = self.run_event("ApplicationStop", &last, id)
        {
            if !ignore_stop_failures {
                return Ok(Outcome::Failed {
                    event: "ApplicationStop".into(),
                    why,
                });
            }
            eprintln!("xtask: test: codedeploy: ApplicationStop failed, ignored: {why}");
        }
        // DownloadBundle.
        let archive = dir.join("deployment-archive");
        std::fs::create_dir_all(&archive)?;
        let file = std::fs::File::open(bundle)?;
        tar::Archive::new(flate2::read::MultiGzDecoder::new(file))
            .unpack(&archive)
            .with_context(|| format!("cannot unpack {bundle}"))?;
        for event in BEFORE_COPY {
            if let Err(why) = self.run_event(event, &dir, id) {
                return Ok(Outcome::Failed {
                    event: (*event).into(),
                    why,
                });
            }
        }
        // Install: the appspec's `files`, overwriting (file_exists_behavior: OVERWRITE).
        let spec = appspec(&archive)?;
        for f in spec["files"].as_vec().map_or(&[][..], Vec::as_slice) {
            let source = f["source"].as_str().context("a file without source")?;
            let dest = f["destination"]
                .as_str()
                .context("a file without destination")?;
            let dest = self.files_root.join(dest.trim_start_matches('/'));
            std::fs::create_dir_all(&dest)?;
            let status = Command::new("cp")
                .arg("-a")
                .arg(format!(
                    "{}/.",
                    archive.join(source.trim_start_matches('/'))
                ))
                .arg(&dest)
                .status()?;
            ensure!(status.success(), "copying the revision's files failed");
        }
        for event in AFTER_COPY {
            if let Err(why) = self.run_event(event, &dir, id) {
                return Ok(Outcome::Failed {
                    event: (*event).into(),
                    why,
                });
            }
        }
        // A host whose deployment failed stays out of the target group.
        if let Some((group, target)) = self.balancer.clone() {
            for event in ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"] {
                let result = match event {
                    "AllowTraffic" => group.register(&target).map_err(|e| format!("{e:#}")),
                    _ => self.run_event(event, &dir, id),
                };
                if let Err(why) = result {
                    return Ok(Outcome::Failed {
                        event: event.into(),
                        why,
                    });
                }
            }
        }
        self.last_successful = Some(dir);
        Ok(Outcome::Succeeded)
    }

    /// Runs `event`'s scripts from `deployment`'s archive; `Err` with the agent's message.
    fn run_event(&self, event: &str, deployment: &Utf8Path, id: &str) -> Result<(), String> {
        let archive = deployment.join("deployment-archive");
        let spec = appspec(&archive).map_err(|e| format!("{e:#}"))?;
        let Some(scripts) = spec["hooks"][event].as_vec() else {
            return Ok(());
        };
        let logs = deployment.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
        let log_path = logs.join("scripts.log");
        for script in scripts {
            let location = script["location"].as_str().unwrap_or_default();
            let timeout = Duration::from_secs(script["timeout"].as_i64().unwrap_or(3600) as u64);
            let path = archive.join(location);
            if !path.is_file() {
                return Err(format!(
                    "Script does not exist at specified location: {location}"
                ));
            }
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| e.to_string())?;
            let _ = writeln!(log, "LifecycleEvent - {event}\nScript - {location}");
            let mut child = Command::new(&path)
                .current_dir(&self.home)
                .env_clear()
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                .env("HOME", "/root")
                .env("HITSAVE_HOST_CONFIG", &self.host_config)
                .env("LIFECYCLE_EVENT", event)
                .env("DEPLOYMENT_ID", id)
                .env("APPLICATION_NAME", "hitsave")
                .env("DEPLOYMENT_GROUP_NAME", &self.group)
                .env("DEPLOYMENT_GROUP_ID", &self.group_id)
                .env("BUNDLE_KEY", &self.bundle_key)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot run {location}: {e}"))?;
            let started = Instant::now();
            let status = loop {
                if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                    break status;
                }
                if started.elapsed() > timeout {
                    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
                    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
                    let _ = child.wait();
                    return Err(format!(
                        "Script at specified location: {location} failed to complete in {} seconds",
                        timeout.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            if !status.success() {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                return Err(format!(
                    "Script at specified location: {location} failed with exit code {}:\n{}",
                    status.code().unwrap_or(-1),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        Ok(())
    }
}

fn appspec(archive: &Utf8Path) -> anyhow::Result<yaml_rust2::Yaml> {
    let text = std::fs::read_to_string(archive.join("appspec.yml"))
        .with_context(|| format!("no appspec.yml in {archive}"))?;
    YamlLoader::load_from_str(&text)?
        .into_iter()
        .next()
        .context("appspec.yml is empty")
}

/// The bundle of `release` in the local store at `store`.
pub(crate) fn bundle_of(store: &Utf8Path, release: &str) -> anyhow::Result<Utf8PathBuf> {
    let m = Manifest::parse(&std::fs::read(
        store.join(manifest::manifest_key(&release.parse()?)),
    )?)?;
    let b = m.bundle.context("the release has no bundle")?;
    Ok(store.join(manifest::artifact_key(&b.sha256)))
}

/// The domain of the environment the deployment group `production` picks.
const PRODUCTION: &str = "hitsave.io";

pub(crate) fn expect_failed(outcome: Outcome, event: &str, says: &str) -> anyhow::Result<()> {
    match outcome {
        Outcome::Failed { event: e, why } if e == event && why.contains(says) => Ok(()),
        other => bail!("expected a failure in {event} saying {says:?}, got {other:?}"),
    }
}

/// The user data's bootstrap (deploy/aws/user-data.sh, the `hitsave-bootstrap` script it
/// writes, run here as it is): the resident program of an empty host, from `channel` in
/// `store`, checked with Debian's minisign against the keys in `keys`.
pub(crate) fn user_data_bootstrap(
    host_root: &Utf8Path,
    store: &Utf8Path,
    channel: &str,
    keys: &str,
) -> anyhow::Result<std::process::Output> {
    tools::require("minisign", "minisign")?;
    tools::require("jq", "jq")?;
    let script = bootstrap_script()?;
    let path = host_root.with_file_name("hitsave-bootstrap");
    std::fs::write(&path, script)?;
    Ok(Command::new("sh")
        .arg(&path)
        .env("HITSAVE_STORE", store)
        .env("HITSAVE_CHANNEL", channel)
        .env("HITSAVE_KEYS", keys)
        .env("HITSAVE_ROOT", host_root)
        .output()?)
}

/// The script deploy/aws/user-data.sh writes to /usr/local/sbin/hitsave-bootstrap.
pub(crate) fn bootstrap_script() -> anyhow::Result<String> {
    let user_data = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/aws/user-data.sh"
    ))?;
    let (_, rest) = user_data
        .split_once("<<'BOOTSTRAP'\n")
        .context("user-data.sh writes no bootstrap script")?;
    let (script, _) = rest
        .split_once("\nBOOTSTRAP\n")
        .context("user-data.sh's bootstrap script has no end")?;
    Ok(format!("{script}\n"))
}

/// The channel pointer `channels/<channel>.json` -> `release`, signed by the run's key.
pub(crate) fn publish_channel(
    store: &Utf8Path,
    channel: &str,
    release: &str,
) -> anyhow::Result<()> {
    let m = Manifest::parse(&std::fs::read(
        store.join(manifest::manifest_key(&release.parse()?)),
    )?)?;
    let key = manifest::channel_key(&channel.parse()?);
    let pointer = manifest::Pointer {
        schema: manifest::SCHEMA,
        release: m.release.clone(),
        commit: m.commit.clone(),
    };
    let bytes = manifest::to_bytes(&pointer);
    let signature = crate::test::signing::run_key()?
        .sign(&bytes, &manifest::signed::pointer_comment(&key, &pointer))?;
    std::fs::create_dir_all(store.join("channels"))?;
    std::fs::write(store.join(manifest::signed::signature_key(&key)), signature)?;
    std::fs::write(store.join(&key), bytes)?;
    Ok(())
}

/// A release made from `base`'s under the id `id`, with `edit` applied to its manifest: its
/// bundle is `base`'s with revision.json naming `id`, packed into the store, and listed in
/// the manifest, which is signed by `key` (none: unsigned). Returns it and its bundle.
pub(crate) fn craft(
    store: &Utf8Path,
    work: &Utf8Path,
    base: &str,
    id: &str,
    key: Option<&xtask::signing::SigningKey>,
    edit: impl FnOnce(&mut Manifest) -> anyhow::Result<()>,
) -> anyhow::Result<(Manifest, Utf8PathBuf)> {
    let mut m = Manifest::parse(&std::fs::read(
        store.join(manifest::manifest_key(&base.parse()?)),
    )?)?;
    m.release = id.parse()?;
    edit(&mut m)?;
    let dir = work.join(format!("crafted-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    untar(&bundle_of(store, base)?, &dir)?;
    let revision = dir.join(manifest::REVISION_FILE);
    let text = std::fs::read_to_string(&revision)?.replace(base, id);
    std::fs::write(&revision, text)?;
    let files = hitsave_host::codedeploy::bundle::list(&dir)?;
    let packed = xtask::package::pack_dir(
        &dir,
        &store.join("artifacts"),
        xtask::components::ARTIFACT_EPOCH,
    )?;
    let bundle = m.bundle.as_mut().context("the base has no bundle")?;
    bundle.sha256 = packed.sha256;
    bundle.size = packed.size;
    bundle.files = files;
    crate::test::signing::publish(store, &m, key)?;
    Ok((m, packed.path))
}

fn untar(tarball: &Utf8Path, into: &Utf8Path) -> anyhow::Result<()> {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .status()?;
    ensure!(status.success(), "cannot unpack {tarball}");
    Ok(())
}

fn tar(dir: &Utf8Path, tarball: &Utf8Path) -> anyhow::Result<()> {
    let status = Command::new("tar")
        .arg("-czf")
        .arg(tarball)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()?;
    ensure!(status.success(), "cannot pack {dir}");
    Ok(())
}

/// The resident program's origin (`<sha256> <release>`), if there is one.
fn resident_origin(host_root: &Utf8Path) -> Option<String> {
    std::fs::read_to_string(host_root.join("bin/xtask.origin"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// v1 and v2 are healthy releases, v3's API never becomes ready, `bad`'s answers 500 to a
/// fifth of /health once it serves; all are in `store`. The host starts empty, with only what
/// the user data puts there.
pub(crate) fn lifecycle(
    work: &Utf8Path,
    store: &Utf8Path,
    v1: &str,
    v2: &str,
    v3: &str,
    bad: &str,
) -> anyhow::Result<()> {
    let work = work.join("codedeploy");
    let _ = std::fs::remove_dir_all(&work);
    let host_root = work.join("host");
    write_host_secrets(&host_root)?;
    self_signed_tls(&host_root, PRODUCTION)?;
    let project = format!("hitsave-codedeploy-{}", std::process::id());
    let _cleanup = ProjectCleanup(project.clone());
    let port = free_port()?;
    let keys = std::env::var("HITSAVE_KEYS").context("no test keys")?;
    let host_config = work.join("host.env");
    std::fs::write(
        &host_config,
        format!(
            "# The test host's settings (on a real host: /etc/hitsave/host.env).\nHITSAVE_ROOT={host_root}\nHITSAVE_PROJECT={project}\nHITSAVE_BIND=127.0.0.1\nHITSAVE_HTTP_PORT={port}\nHITSAVE_HTTPS_PORT={}\nHITSAVE_LOCAL_BASE_IMAGES=1\nHITSAVE_HEALTH_TIMEOUT=25\nHITSAVE_KEYS={keys}\nHITSAVE_WATCH_SECONDS=0\n",
            free_port()?,
        ),
    )?;

    // The user data's bootstrap: refused with keys that did not sign the channel, then the
    // resident program from the signed channel.
    publish_channel(store, "lifecycle", v1)?;
    let other_keys = work.join("other-keys");
    std::fs::create_dir_all(&other_keys)?;
    xtask::signing::keygen(&work.join("other.key"), &other_keys.join("other.pub"), true)?;
    let out = user_data_bootstrap(&host_root, store, "lifecycle", other_keys.as_str())?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && said.contains("is not signed by a key in")
            && !host_root.join("bin/xtask").exists(),
        "the bootstrap with keys that did not sign the channel:\n{said}"
    );
    let out = user_data_bootstrap(&host_root, store, "lifecycle", &keys)?;
    ensure!(
        out.status.success(),
        "the user data's bootstrap failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m1 = Manifest::parse(&std::fs::read(
        store.join(manifest::manifest_key(&v1.parse()?)),
    )?)?;
    let program_of = |m: &Manifest| -> anyhow::Result<String> {
        Ok(m.artifact("xtask").context("no xtask")?.sha256.to_string())
    };
    ensure!(
        resident_origin(&host_root) == Some(format!("{} {v1}", program_of(&m1)?)),
        "the bootstrap's resident program is not v1's host program: {:?}",
        resident_origin(&host_root)
    );
    eprintln!(
        "xtask: test: codedeploy: the user data's bootstrap installed v1's host program as the resident one (checked with minisign; refused with other keys)"
    );

    let home = work.join("agent");
    std::fs::create_dir_all(&home)?;
    let mut agent = Agent {
        deployment_root: home.join("deployment-root"),
        home,
        files_root: work.join("fs"),
        group: "production".into(),
        group_id: "2f1b9b4c-0000-4000-8000-000000000001".into(),
        host_config,
        last_successful: None,
        bundle_key: String::new(),
        balancer: None,
    };

    // A first deployment: the stack comes up serving v1.
    let outcome = agent.deploy("d-TEST00001", &bundle_of(store, v1)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, PRODUCTION, &host_root, v1)?;
    ensure!(current_release(&host_root)? == v1);
    ensure!(
        !work.join("fs").exists(),
        "the Install step copied files from the bundle onto the host"
    );
    eprintln!("xtask: test: codedeploy: the first deployment serves v1");

    // A host set up before resident programs: the hook scripts fall back to the host program
    // of the release it runs, and this deployment makes it the resident one (v2's).
    std::fs::remove_file(host_root.join("bin/xtask"))?;
    std::fs::remove_file(host_root.join("bin/xtask.origin"))?;
    let outcome = agent.deploy("d-TEST00002", &bundle_of(store, v2)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, PRODUCTION, &host_root, v2)?;
    let m2 = Manifest::parse(&std::fs::read(
        store.join(manifest::manifest_key(&v2.parse()?)),
    )?)?;
    ensure!(
        resident_origin(&host_root) == Some(format!("{} {v2}", program_of(&m2)?)),
        "a host without a resident program did not get v2's: {:?}",
        resident_origin(&host_root)
    );
    let history = std::fs::read_to_string(host_root.join("history.jsonl"))?;
    ensure!(
        history.contains("\"deployment\":\"d-TEST00002\""),
        "history.jsonl does not name the deployment:\n{history}"
    );
    let stop_log = std::fs::read_to_string(
        agent
            .deployment_root
            .join(&agent.group_id)
            .join("d-TEST00001/logs/scripts.log"),
    )?;
    ensure!(
        stop_log.contains("LifecycleEvent - ApplicationStop") && stop_log.contains("keeps serving"),
        "v1's ApplicationStop did not run from v1's archive:\n{stop_log}"
    );
    eprintln!(
        "xtask: test: codedeploy: a second deployment upgrades to v2; a host without a resident program gets one"
    );

    // v1's bundle again, after v2: a downgrade, refused before anything changes.
    let outcome = agent.deploy("d-TEST00003", &bundle_of(store, v1)?, true)?;
    expect_failed(outcome, "BeforeInstall", "a downgrade, refused")?;
    expect_serving_at(port, PRODUCTION, &host_root, v2)?;
    ensure!(current_release(&host_root)? == v2, "current moved off v2");
    eprintln!("xtask: test: codedeploy: v1's bundle after v2 is refused as a downgrade");

    // v3 never becomes ready: ApplicationStart fails, v2 is brought back and serves.
    let outcome = agent.deploy("d-TEST00004", &bundle_of(store, v3)?, true)?;
    expect_failed(outcome, "ApplicationStart", "failed with exit code 1")?;
    expect_serving_at(port, PRODUCTION, &host_root, v2)?;
    ensure!(current_release(&host_root)? == v2, "current moved off v2");
    eprintln!(
        "xtask: test: codedeploy: a failing ApplicationStart exits non-zero; v2 still serves"
    );

    // CodeDeploy's rollback redeploys the last good revision: exactly v2 again.
    let outcome = agent.deploy("d-TEST00005", &bundle_of(store, v2)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, PRODUCTION, &host_root, v2)?;
    eprintln!("xtask: test: codedeploy: CodeDeploy's redeploy of v2 after v3 failed installs");

    // An earlier revision whose scripts lost their helper: its ApplicationStop still exits 0,
    // so even a deployment that does not ignore ApplicationStop failures goes ahead.
    let last = agent
        .last_successful
        .clone()
        .context("no last deployment")?;
    let broken = agent
        .deployment_root
        .join(&agent.group_id)
        .join("d-BROKEN001");
    copy_dir(&last, &broken)?;
    std::fs::remove_file(broken.join("deployment-archive/deploy/hooks/resident.sh"))?;
    agent.last_successful = Some(broken.clone());
    let outcome = agent.deploy("d-TEST00006", &bundle_of(store, v2)?, false)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");

    // One whose ApplicationStop hangs: the agent kills it at its timeout, and the deployment
    // goes ahead because `cargo xtask deploy` asks to ignore ApplicationStop failures.
    let hung = agent
        .deployment_root
        .join(&agent.group_id)
        .join("d-BROKEN002");
    copy_dir(&broken, &hung)?;
    std::fs::write(
        hung.join("deployment-archive/deploy/hooks/application-stop.sh"),
        "#!/bin/sh\nsleep 600\n",
    )?;
    let spec = hung.join("deployment-archive/appspec.yml");
    let text = std::fs::read_to_string(&spec)?;
    let stop = "deploy/hooks/application-stop.sh\n      timeout: 60";
    ensure!(
        text.contains(stop),
        "appspec.yml's ApplicationStop has no 60 s timeout"
    );
    std::fs::write(
        &spec,
        text.replacen(
            stop,
            "deploy/hooks/application-stop.sh\n      timeout: 2",
            1,
        ),
    )?;
    agent.last_successful = Some(hung.clone());
    let outcome = agent.deploy("d-TEST00007", &bundle_of(store, v2)?, false)?;
    expect_failed(
        outcome,
        "ApplicationStop",
        "failed to complete in 2 seconds",
    )?;
    let outcome = agent.deploy("d-TEST00008", &bundle_of(store, v2)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, PRODUCTION, &host_root, v2)?;
    eprintln!(
        "xtask: test: codedeploy: ApplicationStop from a broken or hung earlier revision does not block"
    );
    let mut serving = Serving {
        agent: &mut agent,
        work: &work,
        store,
        v2,
        port,
        host_root: &host_root,
    };
    untrusted_bundles(&mut serving)?;
    changed_bundles(&mut serving)?;
    another_host_program(&mut serving)?;
    watched(&mut serving, bad)?;
    drop(_cleanup);
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// The lifecycle's host while it serves v2 (from `store`), for the cases that follow.
struct Serving<'a> {
    agent: &'a mut Agent,
    work: &'a Utf8Path,
    store: &'a Utf8Path,
    v2: &'a str,
    port: u16,
    host_root: &'a Utf8Path,
}

/// The first hook of the new revision refused it, `v2` serves as it did, and nothing of
/// `release` was unpacked.
fn expect_untouched(
    outcome: Outcome,
    says: &str,
    case: &str,
    release: &str,
    (port, host_root, v2): (u16, &Utf8Path, &str),
) -> anyhow::Result<()> {
    expect_failed(outcome, "BeforeInstall", says).with_context(|| case.to_owned())?;
    expect_serving_at(port, PRODUCTION, host_root, v2)?;
    ensure!(current_release(host_root)? == v2, "{case}: current moved");
    if release != v2 {
        ensure!(
            !host_root.join("releases").join(release).exists(),
            "{case}: unpacked"
        );
    }
    eprintln!("xtask: test: codedeploy: {case}: BeforeInstall refuses it; v2 serves");
    Ok(())
}

/// A bundle whose manifest is unsigned (the bundle object replaced by one that names it), one
/// signed by a key the host does not trust, and a release built from branch `staging` on this
/// production host: each fails in the first hook of the new revision (BeforeInstall).
fn untrusted_bundles(t: &mut Serving) -> anyhow::Result<()> {
    let (work, store, v2, port, host_root) = (t.work, t.store, t.v2, t.port, t.host_root);
    let other_dir = work.join("other-key");
    std::fs::create_dir_all(&other_dir)?;
    xtask::signing::keygen(&other_dir.join("k"), &other_dir.join("k.pub"), true)?;
    let other = xtask::signing::SigningKey::read(&other_dir.join("k"))?;
    let run_key = crate::test::signing::run_key()?;
    for (n, (case, key, branch, says)) in [
        (
            "a replaced bundle object naming an unsigned release",
            None,
            "main",
            "is not signed",
        ),
        (
            "a release signed by another key",
            Some(&other),
            "main",
            "does not trust",
        ),
        (
            "a release built from branch staging on a production host",
            Some(&run_key),
            "staging",
            "was built from branch staging, which deploys to deployment group staging",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("2099030100000{n}-abcdef01234{n}");
        let (_, bundle) = craft(store, work, v2, &id, key, |m| {
            m.branch = Some(branch.into());
            m.bundle.as_mut().context("no bundle")?.deployment_group = Some(branch.into());
            Ok(())
        })?;
        let outcome = t.agent.deploy(&format!("d-UNTRUST0{n}"), &bundle, true)?;
        expect_untouched(outcome, says, case, &id, (port, host_root, v2))?;
    }
    Ok(())
}

/// v2's bundle with one hook script changed, or with a program of its own added: the first
/// hook names the file, and v2 serves throughout.
fn changed_bundles(t: &mut Serving) -> anyhow::Result<()> {
    let (work, store, v2, port, host_root) = (t.work, t.store, t.v2, t.port, t.host_root);
    type Change = fn(&Utf8Path) -> anyhow::Result<()>;
    let cases: [(&str, &str, Change); 2] = [
        (
            "a bundle with one hook script changed",
            "deploy/hooks/before-install.sh: changed",
            |dir| {
                let script = dir.join("deploy/hooks/before-install.sh");
                let text = std::fs::read_to_string(&script)?;
                std::fs::write(&script, text.replace("set -eu", "set -eu\ntrue"))?;
                Ok(())
            },
        ),
        (
            "a bundle with a bin/xtask of its own",
            "bin/xtask: not in the signed manifest (added)",
            |dir| {
                std::fs::create_dir_all(dir.join("bin"))?;
                std::fs::write(dir.join("bin/xtask"), "#!/bin/sh\nexit 0\n")?;
                Ok(())
            },
        ),
    ];
    for (n, (case, says, change)) in cases.into_iter().enumerate() {
        let dir = work.join(format!("changed-{n}"));
        std::fs::create_dir_all(&dir)?;
        untar(&bundle_of(store, v2)?, &dir)?;
        change(&dir)?;
        let bundle = work.join(format!("changed-{n}.tar.gz"));
        tar(&dir, &bundle)?;
        let outcome = t.agent.deploy(&format!("d-CHANGED{n}"), &bundle, true)?;
        expect_untouched(outcome, says, case, v2, (port, host_root, v2))?;
    }
    Ok(())
}

/// A newer release whose host program differs (v2's, repacked with one more file): it
/// installs, and its verified program becomes the resident one.
fn another_host_program(t: &mut Serving) -> anyhow::Result<()> {
    let (work, store, v2, port, host_root) = (t.work, t.store, t.v2, t.port, t.host_root);
    let id = "20990401000000-abcdef012345";
    let run_key = crate::test::signing::run_key()?;
    let (m, bundle) = craft(store, work, v2, id, Some(&run_key), |m| {
        let xtask = m
            .artifacts
            .iter_mut()
            .find(|a| a.component == "xtask")
            .context("no xtask")?;
        let dir = work.join("repacked-xtask");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        untar(&store.join(manifest::artifact_key(&xtask.sha256)), &dir)?;
        std::fs::write(dir.join("NOTICE"), "repacked by the lifecycle test\n")?;
        let packed = xtask::package::pack_dir(
            &dir,
            &store.join("artifacts"),
            xtask::components::ARTIFACT_EPOCH,
        )?;
        xtask.sha256 = packed.sha256.clone();
        xtask.size = packed.size;
        xtask.unpacked = packed.unpacked();
        Ok(())
    })?;
    let before = resident_origin(host_root);
    let outcome = t.agent.deploy("d-TEST00009", &bundle, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, PRODUCTION, host_root, id)?;
    let sha = m.artifact("xtask").context("no xtask")?.sha256.to_string();
    ensure!(
        resident_origin(host_root) == Some(format!("{sha} {id}"))
            && before != resident_origin(host_root),
        "the resident program was not replaced by the new release's: {:?}",
        resident_origin(host_root)
    );
    ensure!(
        std::fs::read(host_root.join("bin/xtask"))?
            == std::fs::read(host_root.join(format!("programs/{sha}/bin/xtask")))?,
        "the resident program is not the release's verified host program"
    );
    eprintln!(
        "xtask: test: codedeploy: a release with another host program installs, and its verified program becomes the resident one"
    );
    Ok(())
}

/// With the watch on (host.env), `bad` under load passes ApplicationStart and fails
/// ValidateService: the watch rolled it back, and the release before it serves.
fn watched(t: &mut Serving, bad: &str) -> anyhow::Result<()> {
    let config = t.agent.host_config.clone();
    let text = std::fs::read_to_string(&config)?;
    // The release before (another_host_program's, committed in 2099) is newer than `bad`:
    // this deployment is a downgrade the host is told to take.
    std::fs::write(
        &config,
        text.replace(
            "HITSAVE_WATCH_SECONDS=0\n",
            "HITSAVE_WATCH_SECONDS=30\nHITSAVE_ALLOW_DOWNGRADE=1\n",
        ),
    )?;
    let before = current_release(t.host_root)?;
    let load = crate::test::load::Load::start(t.port, PRODUCTION, 40, Duration::from_secs(300));
    let outcome = t
        .agent
        .deploy("d-TESTWATCH", &bundle_of(t.store, bad)?, true);
    let report = load.stop();
    expect_failed(outcome?, "ValidateService", "failed its watch")?;
    expect_serving_at(t.port, PRODUCTION, t.host_root, &before)?;
    ensure!(
        current_release(t.host_root)? == before,
        "current moved off {before}"
    );
    let history = std::fs::read_to_string(t.host_root.join("history.jsonl"))?;
    let last = history.lines().last().unwrap_or_default();
    ensure!(
        last.contains("\"action\":\"rollback\"") && last.contains("failed its watch"),
        "the watch's rollback is not the last line of history:\n{last}"
    );
    std::fs::write(&config, text)?;
    eprintln!(
        "xtask: test: codedeploy: a release answering 500 to a fifth of /health failed ValidateService's watch and the release before it serves again ({} load requests, {} failed: the bad release's 500s)",
        report.requests, report.failed
    );
    Ok(())
}

/// `<host_root>/tls`: a self-signed certificate for `domain`, as a host with hand-managed
/// certificates has.
pub(crate) fn self_signed_tls(host_root: &Utf8Path, domain: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(host_root.join("tls"))?;
    std::fs::set_permissions(
        host_root.join("tls"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={domain}"), "-keyout"])
        .arg(host_root.join("tls/privkey.pem"))
        .arg("-out")
        .arg(host_root.join("tls/fullchain.pem"))
        .stderr(Stdio::null())
        .status()
        .context("openssl is needed to make a test certificate")?;
    ensure!(status.success(), "openssl could not make a certificate");
    for f in ["privkey.pem", "fullchain.pem"] {
        std::fs::set_permissions(
            host_root.join("tls").join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
    }
    Ok(())
}

fn copy_dir(from: &Utf8Path, to: &Utf8Path) -> anyhow::Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    ensure!(status.success(), "cp -a {from} {to} failed");
    Ok(())
}
