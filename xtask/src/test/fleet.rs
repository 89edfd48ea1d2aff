//! The fleet test (part of the install suite): three hosts behind a load balancer sharing one
//! PostgreSQL over TLS, rolled out host by host the way CodeDeploy does it with a target group.
//!
//! - Three hosts: install roots with their own compose projects and ports, each its own
//!   CodeDeploy agent (codedeploy.rs's lifecycle replay) with the load balancer events.
//! - One HAProxy from Debian's packages in front, health-checking each host's `/lb-health`
//!   every 500 ms as an ALB target group would; CodeDeploy's BlockTraffic is `set server ...
//!   state drain` on its runtime socket plus the wait for the host's requests in flight
//!   (the deregistration delay), AllowTraffic is `state ready` plus the wait for the health
//!   check to pass. It never retries a request on another host, like an ALB.
//! - One PostgreSQL in a container of the local base image, on a Docker network the apps
//!   join, with TLS from a CA and certificate made here; a second one without TLS; a second
//!   CA that signed nothing.
//!
//! External database refusals (wrong CA, plaintext server, wrong password) come first, then
//! a first deployment of v1 to all three at once (the migrators take turns on the advisory
//! lock; one applies, the others find nothing pending), then under steady load through the
//! balancer: v2 OneAtATime, v1 HalfAtATime (a downgrade the hosts' settings allow for it), and
//! v2 again with the second host too slow for its health gate: the rollout stops there, that
//! host is back on v1 and out of the balancer, the others serve. CodeDeploy's redeploy of v1 is
//! refused by the first host, which took v2 (a downgrade), and v2 again converges the fleet.
//! Every rollout under load: 0 failed requests. Each host starts with what the user data puts
//! there (the resident program, from a channel).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use camino::{Utf8Path, Utf8PathBuf};
use xtask::rollout::DeploymentConfig;

use crate::child::{Child, free_port};
use crate::test::codedeploy::{
    Agent, Outcome, TargetGroup, bundle_of, expect_failed, publish_channel, self_signed_tls,
    user_data_bootstrap,
};
use crate::test::install::{
    ProjectCleanup, current_release, expect_serving_at, write_host_secrets,
};
use crate::test::load::Load;

const HOSTS: usize = 3;
/// The group name picks production: hitsave.io, TLS from each host's tls/ files.
const GROUP: &str = "production-fleet";
pub(crate) const DOMAIN: &str = "hitsave.io";
/// The shared server's name on the fleet's network, as its certificate names it.
const DB_HOST: &str = "db.fleet.test";
const PLAIN_DB_HOST: &str = "plain.fleet.test";
/// Requests per second through the balancer during the rollouts.
const RATE: u32 = 40;

/// One host of the fleet.
struct FleetHost {
    name: String,
    root: Utf8PathBuf,
    project: String,
    port: u16,
    config: Utf8PathBuf,
    /// host.env's lines; rewritten for a refusal or a slow host.
    settings: Vec<(String, String)>,
    agent: Agent,
}

impl FleetHost {
    fn write_config(&self) -> anyhow::Result<()> {
        let mut text = String::from("# A fleet host's settings (on EC2: /etc/hitsave/host.env).\n");
        for (k, v) in &self.settings {
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    /// host.env with `key` set to `value` for the next deployment.
    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match self.settings.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_owned(),
            None => self.settings.push((key.to_owned(), value.to_owned())),
        }
        self.write_config()
    }

    /// The project has no container (of `service`, or at all) and no volume; `what` says
    /// what would have made them.
    fn expect_no_containers(&self, service: Option<&str>, what: &str) -> anyhow::Result<()> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let mut ps = vec!["ps", "-aq", "--filter", &project];
        let service = service.map(|s| format!("label=com.docker.compose.service={s}"));
        if let Some(service) = &service {
            ps.extend(["--filter", service]);
        }
        let containers = docker(&ps)?;
        let volumes = docker(&["volume", "ls", "-q", "--filter", &project])?;
        ensure!(
            containers.trim().is_empty() && volumes.trim().is_empty(),
            "{what}: {} has containers {containers:?} or volumes {volumes:?}",
            self.name
        );
        Ok(())
    }
}

impl FleetHost {
    /// nginx routes the API to the address of one of its running containers on a network nginx
    /// is on: the API is also on the shared database's network, and its address there cannot
    /// be reached from nginx. (An old API container may still be draining beside the new one.)
    fn expect_api_routed_beside_nginx(&self) -> anyhow::Result<()> {
        let networks = |id: &str| -> anyhow::Result<Vec<(String, String)>> {
            let format =
                "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}}\n{{end}}";
            Ok(docker(&["inspect", "--format", format, id])?
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(n, ip)| (n.to_owned(), ip.to_owned()))
                .collect())
        };
        let ids = |service: &str| -> anyhow::Result<Vec<String>> {
            let ids = crate::test::install::running_ids(&self.project, service)?;
            let ids: Vec<String> = ids.split_whitespace().map(str::to_owned).collect();
            ensure!(!ids.is_empty(), "{} runs no {service} container", self.name);
            Ok(ids)
        };
        let nginx = networks(&ids("nginx")?[0])?;
        let mut beside = Vec::new();
        for api in ids("api")? {
            let api = networks(&api)?;
            ensure!(
                api.len() > 1,
                "{}'s API is on one network: {api:?}",
                self.name
            );
            beside.extend(
                api.into_iter()
                    .filter(|(n, ip)| !ip.is_empty() && nginx.iter().any(|(m, _)| m == n))
                    .map(|(_, ip)| ip),
            );
        }
        let site = std::fs::read_to_string(self.root.join("nginx/default.conf"))?;
        ensure!(
            beside.iter().any(|ip| site.contains(&format!("upstream hitsave_api {{\n    server {ip}:8080 "))),
            "{}'s nginx does not route the API to its address on nginx's network ({beside:?}):\n{site}",
            self.name
        );
        Ok(())
    }
}

/// The test's fleet: hosts, balancer, databases; dropped in this order (the network last).
pub(crate) struct Fleet {
    pub(crate) lb: Arc<Haproxy>,
    hosts: Vec<FleetHost>,
    _projects: Vec<ProjectCleanup>,
    db: SharedDb,
    _network: NetworkCleanup,
    work: Utf8PathBuf,
}

impl Fleet {
    /// `count` fresh hosts under `work`, out of the balancer until their first deployment;
    /// each has what the user data puts there: its resident program is `release`'s host
    /// program, from a channel in `store`.
    pub(crate) fn start(
        work: &Utf8Path,
        count: usize,
        store: &Utf8Path,
        release: &str,
    ) -> anyhow::Result<Fleet> {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work)?;
        let id = std::process::id();
        let network = format!("hitsave-fleet-{id}");
        let network_cleanup = NetworkCleanup(network.clone());
        let db = SharedDb::start(work, &network)?;
        let keys = std::env::var("HITSAVE_KEYS").context("no test keys")?;
        publish_channel(store, "fleet", release)?;
        let mut hosts = Vec::new();
        let mut projects = Vec::new();
        for n in 1..=count {
            let name = format!("h{n}");
            let root = work.join(&name).join("host");
            write_host_secrets(&root)?;
            let out = user_data_bootstrap(&root, store, "fleet", &keys)?;
            ensure!(
                out.status.success(),
                "{name}: the user data's bootstrap failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(root.join("secrets/postgres_password"), &db.password)?;
            self_signed_tls(&root, DOMAIN)?;
            let project = format!("hitsave-fleet-{id}-{n}");
            projects.push(ProjectCleanup(project.clone()));
            let port = free_port()?;
            let settings = [
                ("HITSAVE_ROOT", root.to_string()),
                ("HITSAVE_PROJECT", project.clone()),
                ("HITSAVE_BIND", "127.0.0.1".into()),
                ("HITSAVE_HTTP_PORT", port.to_string()),
                ("HITSAVE_HTTPS_PORT", free_port()?.to_string()),
                ("HITSAVE_LOCAL_BASE_IMAGES", "1".into()),
                ("HITSAVE_HEALTH_TIMEOUT", "25".into()),
                ("HITSAVE_WATCH_SECONDS", "0".into()),
                ("HITSAVE_KEYS", keys.clone()),
                ("HITSAVE_DB_HOST", DB_HOST.into()),
                ("HITSAVE_DB_CA_FILE", db.ca.to_string()),
                ("HITSAVE_DB_NETWORK", network.clone()),
                // HAProxy sees a failing check within 2 x 500 ms.
                ("HITSAVE_LB_HEALTH_WAIT", "1".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v));
            let home = work.join(&name).join("agent");
            std::fs::create_dir_all(&home)?;
            let host = FleetHost {
                agent: Agent {
                    deployment_root: home.join("deployment-root"),
                    home,
                    files_root: work.join(&name).join("fs"),
                    group: GROUP.into(),
                    group_id: "5d0c4a1e-0000-4000-8000-00000000f1ee".into(),
                    host_config: work.join(&name).join("host.env"),
                    last_successful: None,
                    bundle_key: String::new(),
                    balancer: None,
                },
                config: work.join(&name).join("host.env"),
                settings: settings.to_vec(),
                name,
                root,
                project,
                port,
            };
            host.write_config()?;
            hosts.push(host);
        }
        let lb = Arc::new(Haproxy::start(work, &servers(&hosts))?);
        for h in &mut hosts {
            h.agent.balancer = Some((lb.clone() as Arc<dyn TargetGroup>, h.name.clone()));
        }
        Ok(Fleet {
            lb,
            hosts,
            _projects: projects,
            db,
            _network: network_cleanup,
            work: work.to_owned(),
        })
    }

    /// One deployment of `release` over the fleet (see `Rollout`).
    pub(crate) fn rollout(
        &mut self,
        store: &Utf8Path,
        deployment: &str,
        release: &str,
        config: DeploymentConfig,
    ) -> anyhow::Result<Done> {
        Rollout {
            hosts: &mut self.hosts,
            store,
        }
        .run(deployment, release, config)
    }

    /// `key=value` in every host's host.env, for the next deployments.
    pub(crate) fn set_all(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        for h in &mut self.hosts {
            h.set(key, value)?;
        }
        Ok(())
    }

    /// Every host is on `release`, serves it and is in the balancer.
    pub(crate) fn expect_on(&self, release: &str) -> anyhow::Result<()> {
        for h in &self.hosts {
            ensure!(
                current_release(&h.root)? == release,
                "{} is not on {release}",
                h.name
            );
            expect_serving_at(h.port, DOMAIN, &h.root, release)?;
            h.expect_api_routed_beside_nginx()?;
        }
        self.lb.expect_all_up(&servers(&self.hosts))
    }

    pub(crate) fn remove(self) -> anyhow::Result<()> {
        let work = self.work.clone();
        drop(self);
        std::fs::remove_dir_all(&work)?;
        Ok(())
    }
}

fn servers(hosts: &[FleetHost]) -> Vec<(String, u16)> {
    hosts.iter().map(|h| (h.name.clone(), h.port)).collect()
}

pub(crate) fn scenario(
    work: &Utf8Path,
    store: &Utf8Path,
    v1: &str,
    v2: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut fleet = Fleet::start(&work.join("fleet"), HOSTS, store, v1)?;
    let lb = fleet.lb.clone();
    refusals(&mut fleet.hosts[0], &fleet.db, store, v1)?;

    // The first deployment, to every host at once: three migrators on an empty database.
    let done = fleet.rollout(store, "d-FLEET0001", v1, DeploymentConfig::AllAtOnce)?;
    ensure!(
        done.failed.is_none(),
        "the first deployment failed: {:?}",
        done.failed
    );
    let applied = fleet.db.sql("SELECT count(*) FROM _sqlx_migrations")?;
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    ensure!(
        applied.trim() == files.to_string(),
        "{applied} migrations applied on the shared database, {files} in the release"
    );
    fleet.expect_on(v1)?;
    for h in &fleet.hosts {
        h.expect_no_containers(Some("db"), "an external database")?;
    }
    eprintln!(
        "xtask: test: fleet: v1 on {HOSTS} hosts at once in {:.1} s; {files} migrations applied once on the shared TLS database; no db container, no volume",
        done.seconds
    );

    day_two_over_tls(&fleet, v1)?;

    // Under steady load through the balancer: v2 one host at a time, then back to v1 half at
    // a time, on purpose (the hosts' settings allow that downgrade for that deployment).
    for (deployment, release, config) in [
        ("d-FLEET0002", v2, DeploymentConfig::OneAtATime),
        ("d-FLEET0003", v1, DeploymentConfig::HalfAtATime),
    ] {
        let downgrade = release == v1;
        fleet.set_all("HITSAVE_ALLOW_DOWNGRADE", if downgrade { "1" } else { "0" })?;
        let load = Load::start(lb.port, DOMAIN, RATE, Duration::from_secs(900));
        let done = fleet.rollout(store, deployment, release, config);
        let report = load.stop();
        let done = done?;
        ensure!(
            done.failed.is_none(),
            "{deployment} failed: {:?}",
            done.failed
        );
        ensure!(
            report.failed == 0 && report.requests > 0,
            "{} of {} requests through the balancer failed during the {config} rollout: {:?}",
            report.failed,
            report.requests,
            report.failures
        );
        fleet.expect_on(release)?;
        fleet.set_all("HITSAVE_ALLOW_DOWNGRADE", "0")?;
        eprintln!(
            "xtask: test: fleet: {config}: {release} on {HOSTS} hosts in {:.1} s, {} requests through the balancer, 0 failed, p99 {:?}",
            done.seconds,
            report.requests,
            report.percentile(0.99)
        );
    }

    // v2 again (a web change), with the second host's new web container crashing as it starts
    // (killed by the test each time Docker starts it): it fails its health gate.
    fleet.hosts[1].set("HITSAVE_HEALTH_TIMEOUT", "5")?;
    let crashing = CrashLoop::start(&fleet.hosts[1].project, "web")?;
    let load = Load::start(lb.port, DOMAIN, RATE, Duration::from_secs(900));
    let done = fleet.rollout(store, "d-FLEET0004", v2, DeploymentConfig::OneAtATime);
    let report = load.stop();
    let killed = crashing.stop();
    ensure!(
        killed > 0,
        "the second host's new web container never started"
    );
    match done?.failed {
        Some((1, outcome)) => expect_failed(outcome, "ApplicationStart", "rolled back")?,
        other => bail!("the rollout did not stop at the second host: {other:?}"),
    }
    ensure!(
        report.failed == 0,
        "{} of {} requests failed while the second host failed its health gate: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    for (h, release) in fleet.hosts.iter().zip([v2, v1, v1]) {
        ensure!(
            current_release(&h.root)? == release,
            "{} is not on {release} after the second host failed",
            h.name
        );
        expect_serving_at(h.port, DOMAIN, &h.root, release)?;
    }
    // Its health path still fails (it was draining when its install failed), though it serves.
    let h2 = &fleet.hosts[1];
    let check = hitsave_host::kit::http::get(h2.port, "lb-health.invalid", "/lb-health");
    ensure!(
        matches!(&check, Some((503, body)) if body.contains("draining")),
        "h2's /lb-health answers {check:?}"
    );
    let (status, _) = lb.status(&fleet.hosts[1].name)?;
    ensure!(
        !status.starts_with("UP"),
        "h2 is back in the balancer ({status}) after a failed deployment"
    );
    eprintln!(
        "xtask: test: fleet: h2 failed its health gate: the rollout stopped there, h2 rolled back to v1 and stays out of the balancer ({status}); {} requests, 0 failed",
        report.requests
    );

    // CodeDeploy's rollback of that deployment redeploys the last good revision (v1), host by
    // host. h1 took v2 and passed its health gate: it refuses the older release (a downgrade;
    // only the release serving is taken again) and keeps serving v2, out of the balancer, and
    // the rollout stops there. Nothing fails through the balancer.
    fleet.hosts[1].set("HITSAVE_HEALTH_TIMEOUT", "25")?;
    let load = Load::start(lb.port, DOMAIN, RATE, Duration::from_secs(900));
    let done = fleet.rollout(store, "d-FLEET0005", v1, DeploymentConfig::OneAtATime);
    let report = load.stop();
    match done?.failed {
        Some((0, outcome)) => expect_failed(outcome, "BeforeInstall", "a downgrade, refused")?,
        other => bail!("the redeploy of v1 was not refused by h1: {other:?}"),
    }
    ensure!(
        report.failed == 0,
        "{} of {} requests failed while h1 refused the redeploy of v1: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    for (h, release) in fleet.hosts.iter().zip([v2, v1, v1]) {
        expect_serving_at(h.port, DOMAIN, &h.root, release)?;
    }
    eprintln!(
        "xtask: test: fleet: CodeDeploy's redeploy of v1 is refused as a downgrade by h1, which keeps serving v2; {} requests, 0 failed",
        report.requests
    );

    // Fixed forward: v2 again, with h2 healthy, converges the fleet.
    let load = Load::start(lb.port, DOMAIN, RATE, Duration::from_secs(900));
    let done = fleet.rollout(store, "d-FLEET0006", v2, DeploymentConfig::OneAtATime);
    let report = load.stop();
    let done = done?;
    ensure!(
        done.failed.is_none(),
        "the redeploy of v2 failed: {:?}",
        done.failed
    );
    ensure!(
        report.failed == 0,
        "{} of {} requests failed during the redeploy: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    fleet.expect_on(v2)?;
    eprintln!(
        "xtask: test: fleet: v2 again converged the fleet in {:.1} s; 0 failed of {}",
        done.seconds, report.requests
    );
    drop(lb);
    fleet.remove()?;
    eprintln!(
        "xtask: test: fleet: all checks passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `xtask psql`, `backup` and `restore` on the first host, the shipped binary from its last
/// deployment, against the shared server over verified TLS: a row added after the backup is
/// gone after the restore, and every host serves again.
fn day_two_over_tls(fleet: &Fleet, release: &str) -> anyhow::Result<()> {
    let h = &fleet.hosts[0];
    let xtask = hitsave_host::codedeploy::resident::path(&h.root);
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(&xtask)
            .args(args)
            .args(["--root", h.root.as_str()])
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            out.status.success(),
            "xtask {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let psql = |sql: &str| -> anyhow::Result<String> {
        let out = Command::new(&xtask)
            .args([
                "psql",
                "--root",
                h.root.as_str(),
                "--",
                "-X",
                "-q",
                "-t",
                "-A",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()?;
        ensure!(
            out.status.success(),
            "xtask psql -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let tls = psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")?;
    ensure!(tls == "t", "xtask psql's session is not over TLS: {tls:?}");
    psql("INSERT INTO waitlist (email) VALUES ('fleet-before@example.com')")?;
    let backup: serde_json::Value = serde_json::from_str(&run(&["backup", "--json"])?)?;
    ensure!(
        backup["tables"]["waitlist"] == 1,
        "the backup over TLS counted {}",
        backup["tables"]
    );
    psql("INSERT INTO waitlist (email) VALUES ('fleet-after@example.com')")?;
    run(&["restore", "--latest"])?;
    let emails = psql("SELECT string_agg(email, ',' ORDER BY email) FROM waitlist")?;
    ensure!(
        emails == "fleet-before@example.com",
        "after the restore the waitlist holds {emails:?}"
    );
    // The other hosts' sessions were ended by the swap; their pools connect again.
    for other in &fleet.hosts {
        hitsave_host::kit::process::wait_until(
            &format!("{} to serve after the restore", other.name),
            Duration::from_secs(60),
            || Ok(expect_serving_at(other.port, DOMAIN, &other.root, release).is_ok()),
        )?;
    }
    eprintln!(
        "xtask: test: fleet: xtask psql (ssl: on), backup ({}) and restore on h1 over verified TLS; every host serves again",
        backup["id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Wrong CA, a server without TLS, a wrong password: each deployment fails in
/// ApplicationStart with what to fix, before anything starts.
fn refusals(h: &mut FleetHost, db: &SharedDb, store: &Utf8Path, v1: &str) -> anyhow::Result<()> {
    let bundle = bundle_of(store, v1)?;
    let password = h.root.join("secrets/postgres_password");
    for (n, (case, says)) in [
        (
            "a CA bundle that did not sign the server's certificate",
            "does not chain to a CA",
        ),
        ("a server without TLS", "does not offer TLS"),
        ("a wrong password", "refused the password"),
    ]
    .into_iter()
    .enumerate()
    {
        match n {
            0 => h.set("HITSAVE_DB_CA_FILE", db.other_ca.as_str())?,
            1 => h.set("HITSAVE_DB_HOST", PLAIN_DB_HOST)?,
            _ => std::fs::write(&password, "not-the-password")?,
        }
        let outcome = h.agent.deploy(&format!("d-REFUSE{n:03}"), &bundle, true)?;
        expect_failed(outcome, "ApplicationStart", says).with_context(|| case.to_owned())?;
        h.expect_no_containers(None, case)?;
        ensure!(!h.root.join("current").exists(), "{case}: current was set");
        h.set("HITSAVE_DB_CA_FILE", db.ca.as_str())?;
        h.set("HITSAVE_DB_HOST", DB_HOST)?;
        std::fs::write(&password, &db.password)?;
        eprintln!("xtask: test: fleet: {case}: refused before anything started ({says})");
    }
    Ok(())
}

/// One deployment over the fleet, batch by batch as the configuration says; the hosts of a
/// batch at once. Stops after the first batch with a failed host.
struct Rollout<'a> {
    hosts: &'a mut [FleetHost],
    store: &'a Utf8Path,
}

pub(crate) struct Done {
    pub(crate) seconds: f64,
    /// The first host that failed, and how.
    pub(crate) failed: Option<(usize, Outcome)>,
}

impl Rollout<'_> {
    fn run(
        self,
        deployment: &str,
        release: &str,
        config: DeploymentConfig,
    ) -> anyhow::Result<Done> {
        let started = Instant::now();
        let bundle = bundle_of(self.store, release)?;
        let batches = config.batches(self.hosts.len());
        eprintln!(
            "xtask: test: fleet: {deployment}: {release} {config} in {} batch(es)",
            batches.len()
        );
        for batch in batches {
            let outcomes: Vec<(usize, anyhow::Result<Outcome>)> = std::thread::scope(|s| {
                let handles: Vec<_> = self.hosts[batch.clone()]
                    .iter_mut()
                    .enumerate()
                    .map(|(i, h)| {
                        let bundle = &bundle;
                        let id = format!("{deployment}-{}", h.name);
                        (
                            batch.start + i,
                            s.spawn(move || h.agent.deploy(&id, bundle, true)),
                        )
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(i, t)| {
                        (
                            i,
                            t.join()
                                .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked"))),
                        )
                    })
                    .collect()
            });
            let mut failed = None;
            for (i, outcome) in outcomes {
                let outcome = outcome?;
                eprintln!(
                    "xtask: test: fleet: {deployment}: {} {} after {:.1} s",
                    self.hosts[i].name,
                    match &outcome {
                        Outcome::Succeeded => "succeeded".to_owned(),
                        Outcome::Failed { event, .. } => format!("FAILED in {event}"),
                    },
                    started.elapsed().as_secs_f64()
                );
                if matches!(outcome, Outcome::Failed { .. }) && failed.is_none() {
                    failed = Some((i, outcome));
                }
            }
            if failed.is_some() {
                return Ok(Done {
                    seconds: started.elapsed().as_secs_f64(),
                    failed,
                });
            }
        }
        Ok(Done {
            seconds: started.elapsed().as_secs_f64(),
            failed: None,
        })
    }
}

/// HAProxy in front of the fleet, driven through its runtime API socket.
pub(crate) struct Haproxy {
    _child: Child,
    socket: Utf8PathBuf,
    pub(crate) port: u16,
}

/// How long a deregistration waits for the host's requests in flight (an ALB's
/// deregistration delay), and a registration for the health check to pass.
const DEREGISTRATION_DELAY: Duration = Duration::from_secs(30);
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

impl Haproxy {
    fn start(work: &Utf8Path, servers: &[(String, u16)]) -> anyhow::Result<Haproxy> {
        let haproxy = crate::tools::require("haproxy", "haproxy")?;
        let dir = work.join("haproxy");
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("admin.sock");
        let port = free_port()?;
        let mut config = format!(
            "global\n    stats socket {socket} mode 600 level admin\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    \
             # An ALB sends a request once: no retry on another host hides a failure.\n    retries 0\n\
             frontend site\n    bind 127.0.0.1:{port}\n    \
             # As an ALB's HTTPS listener forwards: the hosts serve it on their port 80.\n    \
             http-request set-header X-Forwarded-Proto https\n    default_backend hosts\n\
             backend hosts\n    balance roundrobin\n    option httpchk GET /lb-health\n    \
             http-check expect status 200\n    default-server inter 500ms fall 2 rise 2\n"
        );
        // Out of the target group until CodeDeploy's first AllowTraffic.
        for (name, port) in servers {
            config.push_str(&format!(
                "    server {name} 127.0.0.1:{port} check disabled\n"
            ));
        }
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config)?;
        let check = Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()?;
        ensure!(
            check.status.success(),
            "haproxy refuses {file}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Child::spawn(
            "haproxy",
            Command::new(&haproxy)
                .arg("-db")
                .arg("-f")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let lb = Haproxy {
            _child: child,
            socket,
            port,
        };
        hitsave_host::kit::process::wait_until(
            "haproxy's runtime socket",
            Duration::from_secs(10),
            || Ok(lb.command("show info").is_ok()),
        )?;
        Ok(lb)
    }

    /// One runtime API command; its answer.
    fn command(&self, command: &str) -> anyhow::Result<String> {
        let mut stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("cannot reach haproxy at {}", self.socket))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// The server's status (UP, DOWN, DRAIN, MAINT, ...) and its current sessions.
    fn status(&self, server: &str) -> anyhow::Result<(String, u64)> {
        let csv = self.command("show stat")?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .context("haproxy's show stat is empty")?
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (sv, scur, status) = (
            col("svname").context("no svname")?,
            col("scur").context("no scur")?,
            col("status").context("no status")?,
        );
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            if f.first() == Some(&"hosts") && f.get(sv) == Some(&server) {
                return Ok((
                    f.get(status).unwrap_or(&"").to_string(),
                    f.get(scur).and_then(|s| s.parse().ok()).unwrap_or(0),
                ));
            }
        }
        bail!("haproxy has no server {server}")
    }

    fn expect_all_up(&self, servers: &[(String, u16)]) -> anyhow::Result<()> {
        for (name, _) in servers {
            let (status, _) = self.status(name)?;
            ensure!(
                status.starts_with("UP"),
                "{name} is {status} in the balancer"
            );
        }
        Ok(())
    }
}

impl TargetGroup for Haproxy {
    fn deregister(&self, target: &str) -> anyhow::Result<()> {
        self.command(&format!("set server hosts/{target} state drain"))?;
        hitsave_host::kit::process::wait_until(
            &format!("{target}'s requests in flight to finish"),
            DEREGISTRATION_DELAY,
            || Ok(self.status(target)?.1 == 0),
        )
    }

    fn register(&self, target: &str) -> anyhow::Result<()> {
        self.command(&format!("set server hosts/{target} state ready"))?;
        hitsave_host::kit::process::wait_until(
            &format!("{target} to pass the balancer's health check"),
            REGISTRATION_TIMEOUT,
            || Ok(self.status(target)?.0.starts_with("UP")),
        )
    }
}

/// The fleet's PostgreSQL (TLS) and a plaintext one, in containers on the fleet's network.
struct SharedDb {
    container: String,
    plain: String,
    password: String,
    /// The CA that signed the server's certificate, and one that signed nothing.
    ca: Utf8PathBuf,
    other_ca: Utf8PathBuf,
}

/// The local base image the install suite builds.
const POSTGRES_IMAGE: &str = "hitsave-base/postgres:15";

impl SharedDb {
    fn start(work: &Utf8Path, network: &str) -> anyhow::Result<SharedDb> {
        let dir = work.join("db");
        let tls = dir.join("tls");
        let ca = crate::test::certs::ca(&tls, "/CN=HitSave fleet test CA")?;
        let other_ca = crate::test::certs::ca(&dir.join("other-ca"), "/CN=Another CA")?;
        crate::test::certs::signed(
            &tls,
            "server",
            &format!("/CN={DB_HOST}"),
            &format!("DNS:{DB_HOST}"),
        )?;
        let password = hitsave_host::kit::random::random_hex(24)?;
        std::fs::write(dir.join("password"), &password)?;
        let _ = docker(&["network", "rm", network]);
        docker(&["network", "create", network])?;
        let id = std::process::id();
        let (container, plain) = (
            format!("hitsave-fleet-{id}-pg"),
            format!("hitsave-fleet-{id}-pg-plain"),
        );
        for (name, alias, ssl) in [(&container, DB_HOST, true), (&plain, PLAIN_DB_HOST, false)] {
            let _ = docker(&["rm", "-f", name]);
            // The key must belong to the server's user: copied in before the entrypoint.
            let command = if ssl {
                "install -o postgres -m 600 /tls/server.key /run/server.key && \
                 exec /usr/local/bin/docker-entrypoint.sh postgres -c ssl=on \
                 -c ssl_cert_file=/tls/server.crt -c ssl_key_file=/run/server.key"
            } else {
                "exec /usr/local/bin/docker-entrypoint.sh postgres"
            };
            docker(&[
                "run",
                "--detach",
                "--name",
                name,
                "--network",
                network,
                "--network-alias",
                alias,
                "--env",
                "POSTGRES_USER=hitsave",
                "--env",
                "POSTGRES_DB=hitsave",
                "--env",
                "POSTGRES_PASSWORD_FILE=/run/secrets/password",
                "--volume",
                &format!("{dir}/password:/run/secrets/password:ro"),
                "--volume",
                &format!("{tls}:/tls:ro"),
                "--label",
                "hitsave.role=fleet-test-db",
                "--entrypoint",
                "sh",
                POSTGRES_IMAGE,
                "-c",
                command,
            ])?;
        }
        let db = SharedDb {
            container,
            plain,
            password,
            ca,
            other_ca,
        };
        for name in [&db.container, &db.plain] {
            hitsave_host::kit::process::wait_until(
                &format!("{name} to accept connections"),
                Duration::from_secs(60),
                || {
                    Ok(duct::cmd!(
                        "docker",
                        "exec",
                        name,
                        "pg_isready",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "hitsave"
                    )
                    .stdout_null()
                    .stderr_null()
                    .unchecked()
                    .run()?
                    .status
                    .success())
                },
            )?;
        }
        ensure!(
            db.sql("SHOW ssl")?.trim() == "on",
            "the fleet's database does not serve TLS"
        );
        Ok(db)
    }

    /// SQL on the shared database, as its owner, inside its container.
    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        docker(&[
            "exec",
            &self.container,
            "psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-U",
            "hitsave",
            "-d",
            "hitsave",
            "-c",
            sql,
        ])
    }
}

impl Drop for SharedDb {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container, &self.plain]);
    }
}

/// Kills every container of `service` in `project` that Docker starts from now on (a
/// container that crashes as it starts, restarts included), until stopped.
struct CrashLoop {
    events: std::process::Child,
    killer: std::thread::JoinHandle<usize>,
}

impl CrashLoop {
    fn start(project: &str, service: &str) -> anyhow::Result<CrashLoop> {
        let mut events = std::process::Command::new("docker")
            .args(["events", "--filter", "event=start", "--format", "{{.ID}}"])
            .args([
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
            ])
            .args([
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("cannot run docker events")?;
        let out = events
            .stdout
            .take()
            .context("docker events has no stdout")?;
        let killer = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter(|id| {
                    duct::cmd!("docker", "kill", id.trim())
                        .stdout_null()
                        .stderr_null()
                        .unchecked()
                        .run()
                        .is_ok()
                })
                .count()
        });
        Ok(CrashLoop { events, killer })
    }

    /// Stops watching; how many containers it killed.
    fn stop(mut self) -> usize {
        let _ = self.events.kill();
        let _ = self.events.wait();
        self.killer.join().unwrap_or(0)
    }
}

/// The fleet's Docker network, removed last (after the projects and the databases on it).
struct NetworkCleanup(String);

impl Drop for NetworkCleanup {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    duct::cmd("docker", args)
        .stderr_capture()
        .read()
        .with_context(|| format!("docker {}", args.join(" ")))
}
