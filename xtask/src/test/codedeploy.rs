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
//! directory. The one liberty: the agent's environment carries HITSAVE_HOST_CONFIG, so that the
//! host settings (another root and ports) come from the test's file, not /etc/hitsave.

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
        for f in spec["files"].as_vec().context("appspec.yml has no files")? {
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

/// The domain of the environment the deployment group `staging` picks.
const STAGING: &str = "staging.hitsave.io";

pub(crate) fn expect_failed(outcome: Outcome, event: &str, says: &str) -> anyhow::Result<()> {
    match outcome {
        Outcome::Failed { event: e, why } if e == event && why.contains(says) => Ok(()),
        other => bail!("expected a failure in {event} saying {says:?}, got {other:?}"),
    }
}

/// v1 and v2 are healthy releases, v3's API never becomes ready; all three are in `store`.
pub(crate) fn lifecycle(
    work: &Utf8Path,
    store: &Utf8Path,
    v1: &str,
    v2: &str,
    v3: &str,
) -> anyhow::Result<()> {
    let work = work.join("codedeploy");
    let _ = std::fs::remove_dir_all(&work);
    let host_root = work.join("host");
    write_host_secrets(&host_root)?;
    // staging serves TLS: a self-signed certificate for it.
    self_signed_tls(&host_root, STAGING)?;
    let project = format!("hitsave-codedeploy-{}", std::process::id());
    let _cleanup = ProjectCleanup(project.clone());
    let port = free_port()?;
    let host_config = work.join("host.env");
    std::fs::write(
        &host_config,
        format!(
            "# The test host's settings (on a real host: /etc/hitsave/host.env).\nHITSAVE_ROOT={host_root}\nHITSAVE_PROJECT={project}\nHITSAVE_BIND=127.0.0.1\nHITSAVE_HTTP_PORT={port}\nHITSAVE_HTTPS_PORT={}\nHITSAVE_LOCAL_BASE_IMAGES=1\nHITSAVE_HEALTH_TIMEOUT=25\nHITSAVE_KEYS={}\n",
            free_port()?,
            std::env::var("HITSAVE_KEYS").context("no test keys")?
        ),
    )?;
    let home = work.join("agent");
    std::fs::create_dir_all(&home)?;
    let mut agent = Agent {
        deployment_root: home.join("deployment-root"),
        home,
        files_root: work.join("fs"),
        group: "staging".into(),
        group_id: "2f1b9b4c-0000-4000-8000-000000000001".into(),
        host_config,
        last_successful: None,
        balancer: None,
    };

    // A first deployment: the stack comes up serving v1.
    let outcome = agent.deploy("d-TEST00001", &bundle_of(store, v1)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, STAGING, &host_root, v1)?;
    ensure!(current_release(&host_root)? == v1);
    ensure!(
        work.join("fs/opt/hitsave/revision/bin/xtask").is_file(),
        "the Install step copied no files"
    );
    eprintln!("xtask: test: codedeploy: the first deployment serves v1");

    // A second one upgrades to v2 (ApplicationStop runs from v1's revision).
    let outcome = agent.deploy("d-TEST00002", &bundle_of(store, v2)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, STAGING, &host_root, v2)?;
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
    eprintln!("xtask: test: codedeploy: a second deployment upgrades to v2");

    // v3 never becomes ready: ApplicationStart fails, v2 is brought back and serves.
    let outcome = agent.deploy("d-TEST00003", &bundle_of(store, v3)?, true)?;
    expect_failed(outcome, "ApplicationStart", "failed with exit code 1")?;
    expect_serving_at(port, STAGING, &host_root, v2)?;
    ensure!(current_release(&host_root)? == v2, "current moved off v2");
    eprintln!(
        "xtask: test: codedeploy: a failing ApplicationStart exits non-zero; v2 still serves"
    );

    // CodeDeploy's rollback redeploys the last good revision: exactly v2 again.
    let outcome = agent.deploy("d-TEST00004", &bundle_of(store, v2)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, STAGING, &host_root, v2)?;

    // An earlier revision whose xtask is gone: its ApplicationStop still exits 0, so even a
    // deployment that does not ignore ApplicationStop failures goes ahead.
    let last = agent
        .last_successful
        .clone()
        .context("no last deployment")?;
    let broken = agent
        .deployment_root
        .join(&agent.group_id)
        .join("d-BROKEN001");
    copy_dir(&last, &broken)?;
    std::fs::remove_file(broken.join("deployment-archive/bin/xtask"))?;
    agent.last_successful = Some(broken.clone());
    let outcome = agent.deploy("d-TEST00005", &bundle_of(store, v2)?, false)?;
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
    let outcome = agent.deploy("d-TEST00006", &bundle_of(store, v2)?, false)?;
    expect_failed(
        outcome,
        "ApplicationStop",
        "failed to complete in 2 seconds",
    )?;
    let outcome = agent.deploy("d-TEST00007", &bundle_of(store, v2)?, true)?;
    ensure!(matches!(outcome, Outcome::Succeeded), "{outcome:?}");
    expect_serving_at(port, STAGING, &host_root, v2)?;
    eprintln!(
        "xtask: test: codedeploy: ApplicationStop from a broken or hung earlier revision does not block"
    );
    untrusted_bundles(&mut agent, &work, store, v2, port, &host_root)?;
    drop(_cleanup);
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// v2's bundle object replaced by one that names an unsigned release, and a bundle whose
/// release is signed by a key the host does not trust: each fails in the first hook of the
/// new revision (BeforeInstall), and v2 keeps serving.
fn untrusted_bundles(
    agent: &mut Agent,
    work: &Utf8Path,
    store: &Utf8Path,
    v2: &str,
    port: u16,
    host_root: &Utf8Path,
) -> anyhow::Result<()> {
    let other_dir = work.join("other-key");
    std::fs::create_dir_all(&other_dir)?;
    xtask::signing::keygen(&other_dir.join("k"), &other_dir.join("k.pub"), true)?;
    let other = xtask::signing::SigningKey::read(&other_dir.join("k"))?;
    let m2 = Manifest::parse(&std::fs::read(
        store.join(manifest::manifest_key(&v2.parse()?)),
    )?)?;
    for (n, (case, key, says)) in [
        (
            "a replaced bundle object naming an unsigned release",
            None,
            "is not signed",
        ),
        (
            "a release signed by another key",
            Some(&other),
            "does not trust",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = m2.clone();
        m.release = format!("2099030100000{n}-abcdef01234{n}").parse()?;
        crate::test::signing::publish(store, &m, key)?;
        // The bundle: v2's, with revision.json naming the other release.
        let dir = work.join(format!("bundle-{n}"));
        std::fs::create_dir_all(&dir)?;
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(bundle_of(store, v2)?)
            .arg("-C")
            .arg(&dir)
            .status()?;
        ensure!(status.success(), "cannot unpack v2's bundle");
        let revision = dir.join(manifest::REVISION_FILE);
        let text = std::fs::read_to_string(&revision)?.replace(v2, m.release.as_str());
        std::fs::write(&revision, text)?;
        let bundle = work.join(format!("bundle-{n}.tar.gz"));
        let status = Command::new("tar")
            .arg("-czf")
            .arg(&bundle)
            .arg("-C")
            .arg(&dir)
            .arg(".")
            .status()?;
        ensure!(status.success(), "cannot pack the bundle");
        let outcome = agent.deploy(&format!("d-UNTRUST0{n}"), &bundle, true)?;
        expect_failed(outcome, "BeforeInstall", says)?;
        expect_serving_at(port, STAGING, host_root, v2)?;
        ensure!(current_release(host_root)? == v2, "{case}: current moved");
        ensure!(
            !host_root.join("releases").join(m.release.as_str()).exists(),
            "{case}: unpacked"
        );
        eprintln!("xtask: test: codedeploy: {case}: BeforeInstall refuses it; v2 serves");
    }
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
