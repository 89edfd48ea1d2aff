//! The preview host test (part of the install suite): one host (host.env
//! `HITSAVE_ENVIRONMENTS=many`) runs staging and pull requests' previews side by side, each
//! deployed through the CodeDeploy lifecycle test's agent with its own deployment group, all
//! behind the host's one front on its two ports.
//!
//! - staging, preview-1 and preview-2 each serve their own release at their own domain
//!   through the front (HTTP by Host; HTTPS passed through by server name to the
//!   environment's own certificate), each with its own database; the previews' seeded from
//!   deploy/seed.sql.
//! - preview-1 is upgraded under load on the other two: 0 of their requests fail.
//! - a third preview is over the host's cap (2): refused, nothing made.
//! - `env remove preview-1` under load on the others: nothing of it is left (containers,
//!   volumes, network, root, route), nothing of theirs fails.
//! - `env prune`: a preview whose group exists stays; one idle past the setting goes; one whose
//!   group is gone goes (moto on 127.0.0.1 answers GetDeploymentGroup; moto has no
//!   DeleteDeploymentGroup, so a new moto server, which knows no group, stands for the group
//!   deleted); while CodeDeploy cannot be asked, nothing goes.
//!
//! The one liberty: the releases are main's (the install suite's v1 and v2), so host.env lets
//! main's releases into this host (`HITSAVE_BRANCHES=main`); which branch a preview takes is
//! `codedeploy::admission`'s unit tests'.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use camino::{Utf8Path, Utf8PathBuf};

use crate::child::free_port;
use crate::test::codedeploy::{
    Agent, Outcome, bundle_of, expect_failed, publish_channel, self_signed_tls, user_data_bootstrap,
};
use crate::test::install::{ProjectCleanup, docker, expect_serving_at, write_host_secrets};
use crate::test::load::Load;
use crate::test::moto::Moto;
use crate::test::pebble::Pebble;

const PREVIEW_DOMAIN: &str = "preview.hitsave.test";
const STAGING: &str = "staging.hitsave.io";
/// Requests per second on each neighbour while another environment changes.
const RATE: u32 = 30;

/// The preview host and its agents.
struct PreviewHost {
    root: Utf8PathBuf,
    config: Utf8PathBuf,
    project: String,
    /// The front's ports (the host's 80 and 443).
    http: u16,
    https: u16,
    home: Utf8PathBuf,
    agents: Vec<Agent>,
    /// The ACME server every environment without a hand-placed certificate gets one from.
    pebble: Pebble,
    _cleanup: Vec<ProjectCleanup>,
}

impl PreviewHost {
    fn env_root(&self, name: &str) -> Utf8PathBuf {
        self.root.join("envs").join(name)
    }

    /// The agent of deployment group `group` (made on first use).
    fn agent(&mut self, group: &str) -> &mut Agent {
        if let Some(i) = self.agents.iter().position(|a| a.group == group) {
            return &mut self.agents[i];
        }
        self.agents.push(Agent {
            deployment_root: self.home.join("deployment-root"),
            home: self.home.clone(),
            files_root: self.home.join("fs"),
            group: group.into(),
            group_id: format!("2f1b9b4c-0000-4000-8000-{:012}", self.agents.len() + 100),
            host_config: self.config.clone(),
            last_successful: None,
            bundle_key: String::new(),
            balancer: None,
        });
        self.agents.last_mut().expect("just pushed")
    }

    /// One deployment of `release` to `group`; its duration.
    fn deploy(
        &mut self,
        store: &Utf8Path,
        id: &str,
        group: &str,
        release: &str,
    ) -> anyhow::Result<(Outcome, f64)> {
        let started = Instant::now();
        let bundle = bundle_of(store, release)?;
        let outcome = self.agent(group).deploy(id, &bundle, true)?;
        Ok((outcome, started.elapsed().as_secs_f64()))
    }

    /// The host program (the resident one, as on a host) with this host's settings.
    fn xtask(&self, args: &[&str], extra_env: &[(&str, &str)]) -> anyhow::Result<String> {
        let out = Command::new(self.root.join("bin/xtask"))
            .args(args)
            .env("HITSAVE_HOST_CONFIG", &self.config)
            .envs(extra_env.iter().copied())
            .output()?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(out.status.success(), "xtask {}:\n{said}", args.join(" "));
        Ok(said)
    }

    /// `name` serves `release` at `domain` through the front, over HTTP and over HTTPS with
    /// its own certificate.
    fn expect_serving(&self, name: &str, domain: &str, release: &str) -> anyhow::Result<()> {
        expect_serving_at(self.http, domain, &self.env_root(name), release)?;
        let out = Command::new("curl")
            .args(["-sS", "-v", "-k", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg("--resolve")
            .arg(format!("{domain}:{}:127.0.0.1", self.https))
            .arg(format!("https://{domain}:{}/healthz", self.https))
            .output()
            .context("curl is needed for the HTTPS check")?;
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(
            String::from_utf8_lossy(&out.stdout) == "200" && said.contains(&format!("CN={domain}")),
            "https://{domain} through the front should be {name}'s, with its certificate:\n{said}"
        );
        Ok(())
    }

    /// `https://<domain>` through the front answers with a certificate the ACME CA issued for
    /// it (checked against the CA's root: no `-k`).
    fn expect_issued(&self, domain: &str) -> anyhow::Result<()> {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&self.pebble.issuer_root)
            .arg("--resolve")
            .arg(format!("api.{domain}:{}:127.0.0.1", self.https))
            .arg(format!("https://api.{domain}:{}/health", self.https))
            .output()?;
        ensure!(
            String::from_utf8_lossy(&out.stdout) == "200",
            "https://api.{domain} through the front with the CA's certificate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Rows of the waitlist in `project`'s database.
    fn waitlist(&self, name: &str) -> anyhow::Result<String> {
        let db = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}-{name}", self.project),
            "--filter",
            "label=com.docker.compose.service=db",
        ])?;
        docker(&[
            "exec",
            db.trim(),
            "psql",
            "-U",
            "hitsave",
            "-d",
            "hitsave",
            "-tAc",
            "SELECT string_agg(email, ',' ORDER BY email) FROM waitlist",
        ])
    }

    /// Nothing of `name` is left: no container, volume or network of its project, no root,
    /// no name of it in the front's configuration.
    fn expect_gone(&self, name: &str, domain: &str) -> anyhow::Result<()> {
        let label = format!("label=com.docker.compose.project={}-{name}", self.project);
        for kind in [&["ps", "-a"][..], &["volume", "ls"], &["network", "ls"]] {
            let left = docker(&[kind, &["-q", "--filter", &label]].concat())?;
            ensure!(
                left.trim().is_empty(),
                "{name}: docker {} still lists {left}",
                kind.join(" ")
            );
        }
        ensure!(
            !self.env_root(name).exists(),
            "{name}'s root is still there"
        );
        let conf = std::fs::read_to_string(self.root.join("front/conf/nginx.conf"))?;
        ensure!(!conf.contains(domain), "the front still routes {domain}");
        let reply = hitsave_host::kit::http::get(self.http, domain, "/healthz");
        ensure!(
            matches!(reply, Some((404, _))),
            "{domain} through the front after its removal: {reply:?}"
        );
        Ok(())
    }
}

/// `pr-<n>.<preview domain>`.
fn preview(n: u32) -> String {
    format!("pr-{n}.{PREVIEW_DOMAIN}")
}

/// Load on staging and preview-2 while `change` runs; both must answer every request.
fn under_load<T>(
    front: u16,
    what: &str,
    change: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let loads = [STAGING.to_owned(), preview(2)]
        .map(|domain| Load::start(front, &domain, RATE, Duration::from_secs(600)));
    let result = change();
    let reports = loads.map(Load::stop);
    for (domain, report) in [STAGING.to_owned(), preview(2)].iter().zip(&reports) {
        ensure!(
            report.failed == 0 && report.requests > 0,
            "{} of {} requests to {domain} failed while {what}: {:?}",
            report.failed,
            report.requests,
            report.failures
        );
        eprintln!(
            "xtask: test: previews: {what}: {} requests to {domain}, {} dropped",
            report.requests, report.failed
        );
    }
    result
}

pub(crate) fn scenario(
    work: &Utf8Path,
    store: &Utf8Path,
    v1: &str,
    v2: &str,
) -> anyhow::Result<()> {
    let mut host = start(work, store, v1)?;

    // Staging and two previews, each its own deployment group, the same release.
    let mut seconds = Vec::new();
    for (i, group) in ["staging", "preview-1", "preview-2"].iter().enumerate() {
        let (outcome, took) = host.deploy(store, &format!("d-PREVIEW{i:03}"), group, v1)?;
        ensure!(
            matches!(outcome, Outcome::Succeeded),
            "{group}: {outcome:?}"
        );
        seconds.push(took);
    }
    host.expect_serving("staging", STAGING, v1)?;
    for n in [1, 2] {
        host.expect_serving(&format!("preview-{n}"), &preview(n), v1)?;
    }
    eprintln!(
        "xtask: test: previews: staging, preview-1 and preview-2 serve at their domains through one front (first deploys: {:.1} s, {:.1} s, {:.1} s)",
        seconds[0], seconds[1], seconds[2]
    );

    // Each its own database: a row written in preview-1 is in no other.
    let reply = hitsave_host::kit::http::request(
        host.http,
        &format!("api.{}", preview(1)),
        "PUT",
        "/waitlist",
        Some(r#"{"email":"only-in-preview-1@example.com"}"#),
    );
    ensure!(
        matches!(reply, Some((201, _))),
        "the waitlist of preview-1: {reply:?}"
    );
    ensure!(host.waitlist("preview-1")?.contains("only-in-preview-1"));
    for other in ["preview-2", "staging"] {
        let rows = host.waitlist(other)?;
        ensure!(
            !rows.contains("only-in-preview-1"),
            "{other}'s database has preview-1's row: {rows}"
        );
    }
    // The previews' databases were seeded from deploy/seed.sql; staging's was not.
    for (name, seeded) in [("preview-1", true), ("preview-2", true), ("staging", false)] {
        let rows = host.waitlist(name)?;
        ensure!(
            rows.contains("reviewer-1@example.com") == seeded,
            "{name}'s waitlist after its first deploy: {rows}"
        );
    }
    eprintln!(
        "xtask: test: previews: a row written in preview-1 is in neither preview-2 nor staging; only the previews were seeded from deploy/seed.sql"
    );

    // preview-1 upgraded while staging and preview-2 serve load.
    let front = host.http;
    let (outcome, took) = under_load(front, "preview-1 went to v2", || {
        host.deploy(store, "d-PREVIEW010", "preview-1", v2)
    })?;
    ensure!(
        matches!(outcome, Outcome::Succeeded),
        "preview-1 to v2: {outcome:?}"
    );
    host.expect_serving("preview-1", &preview(1), v2)?;
    eprintln!("xtask: test: previews: preview-1 upgraded to v2 in {took:.1} s");

    figures(&host)?;
    over_the_cap(&mut host, store, v1)?;

    under_load(front, "preview-1 was removed", || {
        host.xtask(&["env", "remove", "preview-1"], &[])
    })?;
    host.expect_gone("preview-1", &preview(1))?;
    host.expect_serving("staging", STAGING, v1)?;
    host.expect_serving("preview-2", &preview(2), v1)?;
    eprintln!(
        "xtask: test: previews: env remove preview-1 left nothing of it; the others served every request"
    );

    prune(&mut host, store, v1)?;
    host.xtask(&["env", "remove", "staging"], &[])?;
    host.expect_gone("staging", STAGING)?;
    Ok(())
}

/// The host: its settings, the resident program from the user data, staging's secrets and
/// certificates for the test's domains (ACME would issue them on a real preview host).
fn start(work: &Utf8Path, store: &Utf8Path, v1: &str) -> anyhow::Result<PreviewHost> {
    let work = work.join("previews");
    let _ = std::fs::remove_dir_all(&work);
    let root = work.join("host");
    std::fs::create_dir_all(&root)?;
    let project = format!("hitsave-previews-{}", std::process::id());
    let cleanup = ["front", "staging", "preview-1", "preview-2", "preview-3"]
        .map(|name| ProjectCleanup(format!("{project}-{name}")))
        .into_iter()
        .collect();
    let (http, https) = (free_port()?, free_port()?);
    let keys = std::env::var("HITSAVE_KEYS").context("no test keys")?;
    // The CA validates HTTP-01 on the front's port, as Let's Encrypt does on port 80.
    let pebble = Pebble::start(&work, http)?;
    let config = work.join("host.env");
    let first_port = 24000 + (std::process::id() % 8000) as u16 * 4;
    std::fs::write(
        &config,
        format!(
            "# A preview host's settings (on EC2: /etc/hitsave/host.env).\n\
             HITSAVE_ROOT={root}\nHITSAVE_PROJECT={project}\nHITSAVE_BIND=127.0.0.1\n\
             HITSAVE_HTTP_PORT={http}\nHITSAVE_HTTPS_PORT={https}\nHITSAVE_LOCAL_BASE_IMAGES=1\n\
             HITSAVE_HEALTH_TIMEOUT=25\nHITSAVE_KEYS={keys}\nHITSAVE_WATCH_SECONDS=0\n\
             HITSAVE_ACME_DIRECTORY={}\nHITSAVE_ACME_CA_ROOT={}\nHITSAVE_ACME_EMAIL=ops@hitsave.io\n\
             HITSAVE_BRANCHES=main\nHITSAVE_ENVIRONMENTS=many\n\
             HITSAVE_PREVIEW_DOMAIN={PREVIEW_DOMAIN}\nHITSAVE_PREVIEW_MAX=2\n\
             HITSAVE_PREVIEW_MEMORY=640m\nHITSAVE_ENV_PORTS={first_port}\n",
            pebble.directory, pebble.api_root
        ),
    )?;
    publish_channel(store, "previews", v1)?;
    let out = user_data_bootstrap(&root, store, "previews", &keys)?;
    ensure!(
        out.status.success(),
        "the user data's bootstrap failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envs = root.join("envs");
    write_host_secrets(&envs.join("staging"))?;
    self_signed_tls(&envs.join("staging"), STAGING)?;
    for n in 1..=2 {
        self_signed_tls(&envs.join(format!("preview-{n}")), &preview(n))?;
    }
    let home = work.join("agent");
    std::fs::create_dir_all(&home)?;
    Ok(PreviewHost {
        root,
        config,
        project,
        http,
        https,
        home,
        agents: Vec::new(),
        pebble,
        _cleanup: cleanup,
    })
}

/// `env list`: every environment with its release and domain; the memory of an idle preview.
fn figures(host: &PreviewHost) -> anyhow::Result<()> {
    let listed = host.xtask(&["env", "list", "--json"], &[])?;
    let envs: Vec<serde_json::Value> = listed
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let names: Vec<&str> = envs.iter().filter_map(|e| e["name"].as_str()).collect();
    ensure!(
        names == ["preview-1", "preview-2", "staging"],
        "env list: {listed}"
    );
    let idle = &envs[1];
    ensure!(
        idle["domain"] == preview(2).as_str()
            && idle["release"].as_str().is_some()
            && idle["memory_bytes"].as_u64().unwrap_or(0) > 0
            && idle["disk_bytes"].as_u64().unwrap_or(0) > 0,
        "env list's preview-2: {idle}"
    );
    let mib = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as f64 / 1048576.0;
    eprintln!(
        "xtask: test: previews: an idle preview uses {:.0} MiB of memory (cap 640 MiB) and {:.0} MiB of disk",
        mib(&idle["memory_bytes"]),
        mib(&idle["disk_bytes"])
    );
    eprintln!("{}", host.xtask(&["env", "list"], &[])?);
    Ok(())
}

/// A third preview over the cap of two: refused before anything of it is made.
fn over_the_cap(host: &mut PreviewHost, store: &Utf8Path, v1: &str) -> anyhow::Result<()> {
    let (outcome, _) = host.deploy(store, "d-PREVIEW020", "preview-3", v1)?;
    expect_failed(outcome, "BeforeInstall", "over its cap of 2")?;
    ensure!(
        !host.env_root("preview-3").exists(),
        "the refused preview-3 left its root"
    );
    let label = format!(
        "label=com.docker.compose.project={}-preview-3",
        host.project
    );
    ensure!(
        docker(&["ps", "-aq", "--filter", &label])?
            .trim()
            .is_empty()
    );
    eprintln!(
        "xtask: test: previews: a third preview over the cap of 2 is refused; nothing of it was made"
    );
    Ok(())
}

/// `env prune`: a preview whose group exists stays; one idle too long goes; one whose group
/// is gone goes; nothing goes while CodeDeploy cannot be asked.
fn prune(host: &mut PreviewHost, store: &Utf8Path, v1: &str) -> anyhow::Result<()> {
    // preview-3 has no certificate placed: its first deploy gets one from the CA, whose
    // challenge reaches it through the front.
    let (outcome, took) = host.deploy(store, "d-PREVIEW030", "preview-3", v1)?;
    ensure!(
        matches!(outcome, Outcome::Succeeded),
        "preview-3: {outcome:?}"
    );
    host.expect_issued(&preview(3))?;
    eprintln!(
        "xtask: test: previews: preview-3's first deploy got its certificate from the ACME CA through the front ({took:.1} s with the issuance)"
    );
    let moto = Moto::start()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = moto.codedeploy().await;
        client
            .create_application()
            .application_name("hitsave")
            .send()
            .await?;
        for group in ["preview-2", "preview-3"] {
            client
                .create_deployment_group()
                .application_name("hitsave")
                .deployment_group_name(group)
                .service_role_arn("arn:aws:iam::123456789012:role/hitsave-codedeploy")
                .send()
                .await?;
        }
        anyhow::Ok(())
    })?;
    let aws = |endpoint: &str| -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_CODEDEPLOY", endpoint.to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    };
    let prune = |endpoint: &str| {
        let env = aws(endpoint);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        host.xtask(&["env", "prune"], &env)
    };
    let said = prune(&moto.endpoint)?;
    ensure!(
        said.contains("nothing removed") && host.env_root("preview-2").exists(),
        "env prune with both groups there:\n{said}"
    );
    // Ten days pass for preview-2: its history says it was last deployed then.
    let history = host.env_root("preview-2").join("history.jsonl");
    let old = hitsave_host::kit::time::rfc3339(
        std::time::SystemTime::now() - Duration::from_secs(10 * 86_400),
    );
    let text = std::fs::read_to_string(&history)?;
    let aged: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("history is JSON");
            v["time"] = old.clone().into();
            v.to_string()
        })
        .collect();
    std::fs::write(&history, aged.join("\n") + "\n")?;
    let said = prune(&moto.endpoint)?;
    ensure!(
        said.contains("preview-2 removed (not deployed for 10.0 days")
            && host.env_root("preview-3").exists(),
        "env prune with preview-2 idle for ten days:\n{said}"
    );
    host.expect_gone("preview-2", &preview(2))?;
    // CodeDeploy out of reach: nothing goes. A moto that knows no group: preview-3 goes.
    let closed = format!("http://127.0.0.1:{}", free_port()?);
    let said = prune(&closed)?;
    ensure!(
        said.contains("cannot tell whether deployment group preview-3 exists")
            && host.env_root("preview-3").exists(),
        "env prune without CodeDeploy:\n{said}"
    );
    drop(moto);
    let moto = Moto::start()?;
    let said = prune(&moto.endpoint)?;
    ensure!(
        said.contains("preview-3 removed (its CodeDeploy deployment group preview-3"),
        "env prune with preview-3's group gone:\n{said}"
    );
    host.expect_gone("preview-3", &preview(3))?;
    host.expect_serving("staging", STAGING, v1)?;
    eprintln!(
        "xtask: test: previews: env prune kept a preview whose group exists, removed an idle one and one whose group is gone, and nothing while CodeDeploy was out of reach"
    );
    Ok(())
}
