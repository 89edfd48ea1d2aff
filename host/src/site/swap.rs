//! Swapping the app containers (`api`, `web`) to a new release.
//!
//! Blue/green (the default): for each app service whose configuration changed, one new
//! container starts beside the old one (`up --no-start --scale S=2 --no-recreate`, then
//! `docker start` at the lowest CPU weight: see cpu.rs), must become healthy, is warmed up
//! with requests on its own address (so no user waits on a cold process), goes back to the
//! default CPU weight, then nginx is pointed at it by container name and reloaded gracefully
//! (old workers finish their requests), and only then does the old container get SIGTERM: it
//! stops accepting, finishes what is in flight within its grace period, and is removed. A new
//! container that does not become healthy is removed and the old one never stopped serving.
//! `db` and `nginx` are never taken down by an app deploy.
//!
//! In place (`--strategy in-place`): a plain `up -d`, which stops each old container before
//! starting its replacement; kept as the baseline `bench deploy` compares against.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::Utf8Path;

use crate::kit::docker;
use crate::kit::process::{Wait, wait_for};
use crate::kit::ui::Ui;
use crate::site::app::{App, Service};
use crate::site::cpu::{BOOT_SHARES, SERVING_SHARES, Weights};
use crate::site::nginx::{self, Upstreams};
use crate::site::stack::{Container, Health, Stack, State};

/// How app containers are replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// New containers beside the old ones; nginx moves over once they are healthy.
    #[default]
    BlueGreen,
    /// `docker compose up -d`: old containers stop before new ones start.
    InPlace,
}

crate::choice!(Strategy {
    BlueGreen => "blue-green", "new containers beside the old ones; nginx moves over once they are healthy";
    InPlace => "in-place", "`docker compose up -d`: old containers stop before new ones start";
});

/// How long an old container has to finish its requests after SIGTERM (the apps' own grace is
/// 20 s).
const DRAIN_SECS: &str = "25";

/// Swaps `stack`'s app containers with `strategy`, then makes sure nginx runs. A new
/// container boots and warms up at the lowest CPU weight `weights` allows.
pub fn swap(
    ui: &Ui,
    stack: &Stack,
    nginx_dir: &Utf8Path,
    strategy: Strategy,
    weights: &Weights,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (site, running) = Site::of(stack, nginx_dir)?;
    let apps_running = App::ALL
        .iter()
        .all(|a| running.iter().any(|c| c.service == a.service()));
    let nginx_running = running.iter().any(|c| c.service == Service::Nginx.name());
    if strategy == Strategy::InPlace || !apps_running || !nginx_running {
        let changed = site.install(stack, &Upstreams::services())?;
        stack.run("swapping", &["up", "--detach", "--remove-orphans"])?;
        if changed {
            reload_nginx(stack)?;
        }
        return Ok(());
    }

    blue_green(ui, stack, &site, &[], weights, timeout)
}

/// Replaces the running containers of `apps` blue/green even though their configuration did
/// not change (a secret file they mount did: `xtask secrets rotate`), and swaps any other app
/// whose configuration changed. Needs nginx running and a container of each app (one that
/// died is replaced too: a rotation turned back because its new container died).
pub fn replace(
    ui: &Ui,
    stack: &Stack,
    nginx_dir: &Utf8Path,
    apps: &[App],
    weights: &Weights,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (site, running) = Site::of(stack, nginx_dir)?;
    let all = stack.containers()?;
    for (service, present) in App::ALL
        .iter()
        .map(|a| (a.service(), &all))
        .chain([(Service::Nginx.name(), &running)])
    {
        if !present.iter().any(|c| c.service == service) {
            bail!(
                "{service} has no container (nginx: none running), so nothing can be replaced without downtime: see `xtask status`, or install the release again"
            );
        }
    }
    blue_green(ui, stack, &site, apps, weights, timeout)
}

/// For each app whose configuration changed, or that is in `force`: a new container beside
/// the old, nginx moved to it, the old one drained.
fn blue_green(
    ui: &Ui,
    stack: &Stack,
    site: &Site,
    force: &[App],
    weights: &Weights,
    timeout: Duration,
) -> anyhow::Result<()> {
    let wanted = config_hashes(stack)?;
    let mut upstreams = current_upstreams(stack)?;
    for app in App::ALL {
        let service = app.service();
        let old: Vec<String> = stack
            .containers()?
            .into_iter()
            .filter(|c| c.service == service)
            .map(|c| c.name)
            .collect();
        let hashes: Vec<String> = old
            .iter()
            .map(|n| config_hash_of(n))
            .collect::<Result<_, _>>()?;
        if !old.is_empty()
            && !force.contains(&app)
            && hashes
                .iter()
                .all(|h| wanted.get(service).is_some_and(|w| w.contains(h)))
        {
            continue;
        }
        let new = start_beside(ui, stack, app, &old, &site.domain, weights, timeout)?;
        upstreams.set(app, format!("{new}:{}", app.port()));
        site.install(stack, &upstreams)?;
        reload_nginx(stack)?;
        // Old nginx workers finish routing what they accepted before the reload.
        std::thread::sleep(Duration::from_secs(1));
        for name in &old {
            ui.info(&format!("{service}: draining and removing {name}"));
            duct::cmd!("docker", "stop", "--time", DRAIN_SECS, name)
                .stdout_null()
                .run()
                .with_context(|| format!("cannot stop {name}"))?;
            docker::remove(name)?;
        }
    }
    // db was started by the install and nginx was running: neither is touched.
    Ok(())
}

/// What nginx is rendered for.
struct Site<'a> {
    nginx_dir: &'a Utf8Path,
    domain: String,
    tls: bool,
}

impl<'a> Site<'a> {
    /// The site `stack` serves from `nginx_dir`, and its running containers.
    fn of(stack: &Stack, nginx_dir: &'a Utf8Path) -> anyhow::Result<(Site<'a>, Vec<Container>)> {
        let site = Site {
            nginx_dir,
            domain: stack.domain()?.to_owned(),
            tls: crate::site::nginx::serves_https(stack)?,
        };
        let running = stack
            .containers()?
            .into_iter()
            .filter(|c| c.state == State::Running)
            .collect();
        Ok((site, running))
    }

    /// Renders the site for `upstreams`; true when the file changed.
    fn install(&self, stack: &Stack, upstreams: &Upstreams) -> anyhow::Result<bool> {
        nginx::install(
            &stack.release_dir,
            self.nginx_dir,
            &self.domain,
            self.tls,
            upstreams,
        )
    }
}

/// One new container of `app` beside the `old` ones: created, started at the boot weight,
/// healthy, warmed up and back at the serving weight. Its name, or an error that carries its
/// last health output and log lines, after it is removed (the old ones never stopped).
fn start_beside(
    ui: &Ui,
    stack: &Stack,
    app: App,
    old: &[String],
    domain: &str,
    weights: &Weights,
    timeout: Duration,
) -> anyhow::Result<String> {
    let service = app.service();
    ui.info(&format!(
        "{service}: starting the new container beside the old one"
    ));
    let scale = format!("{service}={}", old.len() + 1);
    // Created first, so that it starts at the boot weight.
    stack.run(
        &format!("creating a new {service} container"),
        &[
            "up",
            "--no-start",
            "--no-deps",
            "--no-recreate",
            "--scale",
            &scale,
            service,
        ],
    )?;
    let new = stack
        .containers()?
        .into_iter()
        .find(|c| c.service == service && !old.contains(&c.name))
        .map(|c| c.name)
        .with_context(|| format!("compose created no new {service} container"))?;
    let ready = weights
        .set_container(&new, BOOT_SHARES)
        .and_then(|()| docker::start(&new))
        .and_then(|()| wait_ready(&new, app, domain, timeout))
        .map(|()| warm_up(ui, &new, app.port(), &app.host(domain), app.warm_up_path()))
        .and_then(|()| weights.set_container(&new, SERVING_SHARES));
    if let Err(e) = ready {
        ui.info(&format!(
            "{service}: {new} is not ready to serve; removing it, the old one keeps serving"
        ));
        // The evidence goes with the container: keep it in the error (and so in history).
        let evidence = docker::last_words(&new);
        docker::remove(&new)?;
        return Err(e.context(format!(
            "the new {service} container never became ready{evidence}"
        )));
    }
    Ok(new)
}

/// Waits until each app has a healthy container that answers as this release on its own
/// address (for a restore, while nginx still answers the maintenance page).
pub fn wait_apps_ready(stack: &Stack, timeout: Duration) -> anyhow::Result<()> {
    let domain = stack.domain()?.to_owned();
    for app in App::ALL {
        let container = stack
            .containers()?
            .into_iter()
            .find(|c| c.service == app.service() && c.state == State::Running)
            .map(|c| c.name)
            .with_context(|| format!("{app} has no running container"))?;
        // Docker's own verdict here: the restore restarted these containers, and nginx's
        // connections to them must have been renewed before the maintenance ends.
        wait_healthy(&container, timeout).map_err(|e| {
            let evidence = docker::last_words(&container);
            e.context(format!("{container} never became healthy{evidence}"))
        })?;
        let (release, _) = stack.env.app_release(app)?;
        let marker = format!("\"release\":\"{release}\"");
        let addr = std::net::SocketAddr::new(docker::container_ip(&container)?, app.port());
        match crate::kit::http::request_to(addr, &app.host(&domain), "GET", app.ready_path(), None)
        {
            Some((200, body)) if body.contains(&marker) => {}
            answer => bail!(
                "{container} does not answer {} as release {release}: {answer:?}",
                app.ready_path()
            ),
        }
    }
    Ok(())
}

/// Requests a new container answers before nginx sends it traffic. A fresh Node.js process
/// answers its first requests 30 to 80 ms late while V8 compiles the hot paths, and the first
/// users after a swap would queue behind them; 50 requests in a row take it past that (measured
/// on the web image: 24 of the first 500 requests over 30 ms cold, none after the warm-up).
pub const WARM_UP_REQUESTS: usize = 50;

/// Sends `container` its warm-up requests on its own address (the host reaches the compose
/// network's bridge). Best effort: the swap goes on without it, since the container is
/// already healthy and the health gate still checks the release through nginx.
fn warm_up(ui: &Ui, container: &str, port: u16, host: &str, path: &str) {
    let addr = match docker::container_ip(container) {
        Ok(ip) => std::net::SocketAddr::new(ip, port),
        Err(e) => {
            ui.info(&format!("{container}: not warmed up: {e:#}"));
            return;
        }
    };
    let started = Instant::now();
    let answered = (0..WARM_UP_REQUESTS)
        .take_while(|_| crate::kit::http::request_to(addr, host, "GET", path, None).is_some())
        .count();
    ui.info(&format!(
        "{container}: warmed up with {answered} requests to {path} in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

/// A graceful reload: new workers take the new site, old ones finish their requests.
pub fn reload_nginx(stack: &Stack) -> anyhow::Result<()> {
    stack.run(
        "reloading nginx",
        &["exec", "-T", Service::Nginx.name(), "nginx", "-s", "reload"],
    )?;
    Ok(())
}

/// The config-hash labels a container of each service would carry if compose created it now:
/// by `up` (the whole configuration) or by the blue/green `up --no-deps`, which leaves
/// depends_on out of the hash.
fn config_hashes(stack: &Stack) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    const NO_DEPS: &str =
        "services:\n  api:\n    depends_on: !reset []\n  web:\n    depends_on: !reset []\n";
    let full = stack.run("hashing the configuration", &["config", "--hash", "*"])?;
    let no_deps = stack.run_with_overlay(
        "hashing the configuration",
        NO_DEPS,
        &["config", "--hash", "*"],
    )?;
    let mut hashes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (service, hash) in full
        .lines()
        .chain(no_deps.lines())
        .filter_map(|l| l.split_once(' '))
    {
        hashes
            .entry(service.to_owned())
            .or_default()
            .push(hash.trim().to_owned());
    }
    Ok(hashes)
}

fn config_hash_of(container: &str) -> anyhow::Result<String> {
    docker::inspect(
        container,
        "{{index .Config.Labels \"com.docker.compose.config-hash\"}}",
    )
}

/// Where nginx sends each app now: the container names in its rendered site, or the service
/// names when the site predates blue/green.
fn current_upstreams(stack: &Stack) -> anyhow::Result<Upstreams> {
    let mut upstreams = Upstreams::services();
    for c in stack.containers()? {
        if c.state == State::Running
            && let Some(app) = App::of_service(&c.service)
        {
            upstreams.set(app, format!("{}:{}", c.name, app.port()));
        }
    }
    Ok(upstreams)
}

fn wait_healthy(container: &str, timeout: Duration) -> anyhow::Result<()> {
    let what = format!("{container} to turn healthy");
    wait_for(&what, timeout, Duration::from_millis(500), || {
        let seen = docker::inspect(
            container,
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
        )
        .unwrap_or_default();
        let (status, health) = seen.split_once(' ').unwrap_or((&seen, ""));
        match (State::from(status.to_owned()), Health::parse(health)) {
            (State::Running, Some(Health::Healthy)) => Ok(Wait::Done(())),
            (state, _) if state.is_over() => bail!("{container} exited ({seen})"),
            _ => Ok(Wait::NotYet(format!("it is still {seen:?}"))),
        }
    })
}

/// Waits until `container` answers its readiness page with 200, asked on its own address every
/// 50 ms: ready as soon as it is, not at Docker's next health check (every 2 s; it stays for
/// `restart` and `status`). Its state is looked at every half second, so one that exits fails
/// at once.
fn wait_ready(container: &str, app: App, domain: &str, timeout: Duration) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::new(docker::container_ip(container)?, app.port());
    let host = app.host(domain);
    let mut looks = 0u32;
    wait_for(
        &format!("{container} to answer {} with 200", app.ready_path()),
        timeout,
        Duration::from_millis(50),
        || {
            looks += 1;
            if let Some((200, _)) =
                crate::kit::http::request_to(addr, &host, "GET", app.ready_path(), None)
            {
                return Ok(Wait::Done(()));
            }
            if looks.is_multiple_of(10) {
                let status = docker::inspect(container, "{{.State.Status}}").unwrap_or_default();
                if State::from(status.clone()).is_over() {
                    bail!("{container} exited ({status})");
                }
            }
            Ok(Wait::NotYet("it does not answer 200 yet".into()))
        },
    )
}
