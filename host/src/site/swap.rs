//! Swapping the app containers (`api`, `web`) to a new release.
//!
//! Blue/green (the default): for each app service whose configuration changed, one new
//! container starts beside the old one (one `up --no-start --scale S=2 --no-recreate` for all
//! of them, made by an install beside its image builds: `create_ahead`), and one app after the
//! other (the API first) its container starts with a boot CPU cap (see cpu.rs), must answer
//! its readiness page (asked every 50 ms), is warmed up with requests on its own address (so
//! no user waits on a cold process), and gets its cap lifted. Then nginx is pointed at the
//! new containers' addresses (their names as the backup: nginx.rs) and reloaded gracefully
//! (old workers finish their requests), and only then do the old containers get SIGTERM, in
//! the background: each stops accepting, finishes what is in flight within its grace period,
//! and is removed. A new container that does not become ready is removed with the other new
//! ones and the old ones never stopped serving. `db` and `nginx` are never taken down by an
//! app deploy.
//!
//! In place (`--strategy in-place`): a plain `up -d`, which stops each old container before
//! starting its replacement; kept as the baseline `bench deploy` compares against.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::Utf8Path;

use crate::kit::process::{Wait, wait_for};
use crate::kit::ui::Ui;
use crate::kit::{docker, engine};
use crate::site::app::{App, Service};
use crate::site::cpu::{Phase, Weights};
use crate::site::nginx::{self, Upstreams};
use crate::site::stack::{Container, Stack, State};

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
/// `at_hand`: containers it uses instead of starting new ones of its own.
pub fn swap(
    ui: &Ui,
    stack: &Stack,
    nginx_dir: &Utf8Path,
    strategy: Strategy,
    weights: &Weights,
    timeout: Duration,
    at_hand: AtHand,
) -> anyhow::Result<Drain> {
    let (site, running) = Site::of(stack, nginx_dir)?;
    if strategy == Strategy::InPlace || !serves_blue_green(&running) {
        drop(at_hand);
        // One container per app for compose to replace: not one an earlier swap is draining.
        let (containers, routed) = (stack.containers()?, nginx::routed(nginx_dir));
        let wanted = stack.config_hashes()?;
        for app in App::ALL {
            let _ = survey(ui, &site, app, &containers, &routed, wanted, &[], &[])?;
        }
        // By name while compose replaces the containers, then at the new ones' addresses.
        let by_name = site.install(stack, &Upstreams::services())?;
        stack.run("swapping", &["up", "--detach", "--remove-orphans"])?;
        if site.install(stack, &services_at_addresses(stack)?)? || by_name {
            reload_nginx(stack)?;
        }
        return Ok(Drain::default());
    }

    blue_green(ui, stack, &site, &[], weights, timeout, at_hand)
}

/// Each app by its compose service's name, at the address of its running container (for a
/// site whose apps compose has just started: an in-place swap, a restore).
pub fn services_at_addresses(stack: &Stack) -> anyhow::Result<Upstreams> {
    Ok(at_addresses(&Upstreams::services(), &stack.containers()?))
}

/// `routed`'s routes, each at the address its container has now on a network nginx is on: the
/// running container it names, or, for a route by service name (`api`), that service's newest
/// running one; by name only when none runs.
fn at_addresses(routed: &Upstreams, containers: &[Container]) -> Upstreams {
    let reach = NginxNetworks::of(containers);
    let mut upstreams = routed.clone();
    for app in App::ALL {
        let upstream = routed.get(app).to_owned();
        let name = upstream
            .rsplit_once(':')
            .map_or(upstream.as_str(), |(n, _)| n);
        let at = containers
            .iter()
            .rfind(|c| {
                c.service == app.service()
                    && c.state == State::Running
                    && (c.name == name || c.service == name)
            })
            .and_then(|c| reach.address(app, &c.name));
        upstreams.set(app, upstream, at);
    }
    upstreams
}

/// Points nginx again at the address each app's routed container has now: after a reboot, or
/// a restart by Docker's policy, a container can come back on another address, which nginx
/// would try first (once per worker per 30 s, a refused or 250 ms connect) before the name.
/// The site is rendered again and nginx reloaded only when an address changed; what nginx
/// routes to now, and whether it changed. A routed container that is not running is reached
/// by its name only.
pub fn readdress(stack: &Stack, nginx_dir: &Utf8Path) -> anyhow::Result<(Upstreams, bool)> {
    let (site, running) = Site::of(stack, nginx_dir)?;
    if !running.iter().any(|c| c.service == Service::Nginx.name()) {
        bail!("nginx is not running, so there is nothing to point: see `xtask status`");
    }
    let fresh = at_addresses(&nginx::routed(nginx_dir), &running);
    let changed = site.install(stack, &fresh)?;
    if changed {
        reload_nginx(stack)?;
    }
    Ok((fresh, changed))
}

/// Containers a swap uses instead of new ones it would start itself.
#[derive(Debug, Default)]
pub struct AtHand {
    /// Old containers a failed swap left running (`bring_back`'s): nginx goes back to one that
    /// runs the wanted configuration and answers.
    pub spares: Drain,
    /// New containers created ahead of the swap (`create_ahead`), to be started.
    pub created: Created,
}

/// The old containers a blue/green swap left running beside the new ones: nginx sends them
/// nothing new, and they are drained once `start` is called (after the health gate, so that
/// bringing the old release back only points nginx at them again), or by the next swap.
#[derive(Debug, Default)]
#[must_use = "the old containers keep running until their drain starts"]
pub struct Drain {
    containers: Vec<Named>,
}

impl Drain {
    /// Starts the drain in the background (`drain_later`).
    pub fn start(self, ui: &Ui) -> anyhow::Result<()> {
        if self.containers.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.containers.iter().map(|c| c.name.as_str()).collect();
        ui.info(&format!("draining {} in the background", names.join(", ")));
        let ids: Vec<String> = self.containers.into_iter().map(|c| c.id).collect();
        drain_later(&ids)
    }
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
) -> anyhow::Result<Drain> {
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
    blue_green(ui, stack, &site, apps, weights, timeout, AtHand::default())
}

/// For each app whose configuration changed, or that is in `force`: a container of the wanted
/// configuration beside the live one (one still running from before, when it answers; else a
/// new one: `created`'s, or created now), nginx moved to them in one reload; the containers it
/// left are returned for draining.
fn blue_green(
    ui: &Ui,
    stack: &Stack,
    site: &Site,
    force: &[App],
    weights: &Weights,
    timeout: Duration,
    at_hand: AtHand,
) -> anyhow::Result<Drain> {
    let AtHand { spares, created } = at_hand;
    let spares: Vec<String> = spares.containers.into_iter().map(|c| c.id).collect();
    let Plan {
        nginx: reach,
        mut upstreams,
        swaps,
        mut drain,
        mut moved,
    } = plan(ui, stack, site, force, &spares, &created.ids())?;
    let mut started = Vec::new();
    if !swaps.is_empty() {
        started = start_beside(ui, stack, &swaps, &site.domain, weights, timeout, created)?;
        for ((app, live), name) in swaps.into_iter().zip(&started) {
            route_to(&mut upstreams, &reach, app, name);
            drain.containers.extend(live);
        }
        moved = true;
    }
    if !moved {
        return Ok(drain);
    }
    let before = nginx::routed(site.nginx_dir);
    site.install(stack, &upstreams)?;
    if let Err(e) = reload_nginx(stack) {
        if e.downcast_ref::<Refused>().is_some() {
            // nginx serves the site it had: its file says so again and the new containers go,
            // so that bringing the old release back finds the old ones live and keeps them.
            let _ = site.install(stack, &before);
            let _ = drain_now(&started);
        }
        return Err(e);
    }
    // db was started by the install and nginx was running: neither is touched.
    Ok(drain)
}

/// What a blue/green swap is to do, app by app.
struct Plan {
    /// Where nginx reaches containers from.
    nginx: NginxNetworks,
    /// nginx's upstreams so far: the live containers, or the spares it goes back to.
    upstreams: Upstreams,
    /// The apps that need a new container, each with its live one.
    swaps: Vec<(App, Option<Named>)>,
    /// The live containers nginx leaves for a spare.
    drain: Drain,
    /// nginx goes back to a spare.
    moved: bool,
}

/// Surveys each app (`survey`): which keep their live container, which go back to a spare
/// among `spares` (ids), and which need a new one. `keep`: containers created for this swap.
fn plan(
    ui: &Ui,
    stack: &Stack,
    site: &Site,
    force: &[App],
    spares: &[String],
    keep: &[String],
) -> anyhow::Result<Plan> {
    let wanted = stack.config_hashes()?;
    let containers = stack.containers()?;
    let routed = nginx::routed(site.nginx_dir);
    let mut plan = Plan {
        nginx: NginxNetworks::of(&containers),
        upstreams: Upstreams::services(),
        swaps: Vec::new(),
        drain: Drain::default(),
        moved: false,
    };
    for app in App::ALL {
        let service = app.service();
        let forced = force.contains(&app);
        let spares = if forced { &[][..] } else { spares };
        let seen = survey(ui, site, app, &containers, &routed, wanted, spares, keep)?;
        if let Some(name) = seen.spare {
            ui.info(&format!(
                "{service}: {name} runs this release's configuration and answers: nginx goes back to it"
            ));
            route_to(&mut plan.upstreams, &plan.nginx, app, &name);
            plan.drain.containers.extend(seen.live);
            plan.moved = true;
            continue;
        }
        if let Some(Named { name, .. }) = &seen.live {
            route_to(&mut plan.upstreams, &plan.nginx, app, name);
            if seen.live_wanted && !forced {
                continue;
            }
        }
        plan.swaps.push((app, seen.live));
    }
    Ok(plan)
}

/// New app containers created, not started, before an install's swap (beside its image builds
/// and database check), so that the swap's window holds their starts but not compose's
/// create: some half a second of CPU the live apps would wait behind. Those the swap does not
/// take are removed when this is dropped (an install that fails before its swap); one a killed
/// install leaves is the next swap's leftover (`survey`).
#[derive(Debug, Default)]
#[must_use = "created containers are removed when dropped"]
pub struct Created {
    containers: Vec<(App, Named)>,
}

impl Created {
    fn ids(&self) -> Vec<String> {
        self.containers.iter().map(|(_, c)| c.id.clone()).collect()
    }

    /// The names of the containers created for `swaps`, in their order; None (and every
    /// created one removed) when they were created for other apps.
    fn take_for(mut self, swaps: &[(App, Option<Named>)]) -> Option<Vec<String>> {
        let apps: Vec<App> = swaps.iter().map(|(app, _)| *app).collect();
        let mut created: Vec<(App, Named)> = std::mem::take(&mut self.containers);
        created.sort_by_key(|(app, _)| apps.iter().position(|a| a == app));
        if created.is_empty() || created.iter().map(|(app, _)| *app).ne(apps.iter().copied()) {
            self.containers = created;
            return None;
        }
        Some(created.into_iter().map(|(_, c)| c.name).collect())
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if !self.containers.is_empty() {
            let ids: Vec<String> = self.containers.drain(..).map(|(_, c)| c.id).collect();
            let _ = drain_now(&ids);
        }
    }
}

/// Creates the new containers `swap` with `strategy` would start, when it would swap
/// blue/green: the swap then only starts them.
pub fn create_ahead(
    ui: &Ui,
    stack: &Stack,
    nginx_dir: &Utf8Path,
    strategy: Strategy,
) -> anyhow::Result<Created> {
    let (site, running) = Site::of(stack, nginx_dir)?;
    if strategy == Strategy::InPlace || !serves_blue_green(&running) {
        return Ok(Created::default());
    }
    let swaps = plan(ui, stack, &site, &[], &[], &[])?.swaps;
    if swaps.is_empty() {
        return Ok(Created::default());
    }
    let new = create_beside(ui, stack, &swaps)?;
    Ok(Created {
        containers: swaps.iter().map(|(app, _)| *app).zip(new).collect(),
    })
}

/// A blue/green swap needs a running container of each app and nginx.
fn serves_blue_green(running: &[Container]) -> bool {
    App::ALL
        .iter()
        .map(|a| a.service())
        .chain([Service::Nginx.name()])
        .all(|s| running.iter().any(|c| c.service == s))
}

/// Routes `app` to the container `name`, at its address when the engine gives it (nginx then
/// connects there without asking Docker's DNS; the name stays its fallback).
fn route_to(upstreams: &mut Upstreams, nginx: &NginxNetworks, app: App, name: &str) {
    upstreams.set(
        app,
        format!("{name}:{}", app.port()),
        nginx.address(app, name),
    );
}

/// The networks nginx is on: an app's address is the one on a network nginx shares with it
/// (an app also on a shared database's network has an address there that nginx cannot reach).
struct NginxNetworks(std::collections::BTreeSet<String>);

impl NginxNetworks {
    /// From the stack's running nginx container (none: no address is known).
    fn of(containers: &[Container]) -> NginxNetworks {
        let nginx = containers
            .iter()
            .rfind(|c| c.service == Service::Nginx.name() && c.state == State::Running);
        NginxNetworks(
            nginx
                .and_then(|c| docker::networks(&c.name).ok())
                .unwrap_or_default(),
        )
    }

    /// Where the container `name` of `app` listens for nginx, when the engine says.
    fn address(&self, app: App, name: &str) -> Option<std::net::SocketAddr> {
        docker::ip_on(name, &self.0)
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, app.port()))
    }
}

/// A container by its name (for nginx and people) and its id (for the drain: compose gives a
/// container it recreates the name of the one it replaces).
#[derive(Debug, Clone)]
struct Named {
    name: String,
    id: String,
}

impl Named {
    fn of(c: &Container) -> Named {
        Named {
            name: c.name.clone(),
            id: c.id.clone(),
        }
    }
}

/// One app's containers as a swap finds them.
struct Seen {
    /// The one nginx routes to, else (a site that names the service) the newest running.
    live: Option<Named>,
    /// `live` runs the wanted configuration.
    live_wanted: bool,
    /// One left running with the wanted configuration that still answers (the release nginx
    /// has just left, when it comes back): nginx can go back to it.
    spare: Option<String>,
}

/// Finds `app`'s live container and a spare among `spares` (ids), and removes the others but
/// those in `keep` (left by a swap or a drain that did not finish; nginx sends them nothing).
#[allow(clippy::too_many_arguments)]
fn survey(
    ui: &Ui,
    site: &Site,
    app: App,
    containers: &[Container],
    routed: &Upstreams,
    wanted: &std::collections::BTreeMap<String, Vec<String>>,
    spares: &[String],
    keep: &[String],
) -> anyhow::Result<Seen> {
    let service = app.service();
    let wants = |c: &Container| {
        wanted
            .get(service)
            .is_some_and(|w| w.contains(&c.config_hash))
    };
    let running: Vec<&Container> = containers
        .iter()
        .filter(|c| c.service == service && c.state == State::Running)
        .collect();
    let live = running
        .iter()
        .find(|c| routed.get(app).split(':').next() == Some(c.name.as_str()))
        .or_else(|| running.last())
        .copied();
    let live_wanted = live.is_some_and(wants);
    // Only one the caller names: any other may be an earlier install's, draining right now.
    let spare = (!live_wanted)
        .then(|| {
            running.iter().rev().find(|c| {
                spares.contains(&c.id)
                    && Some(c.id.as_str()) != live.map(|l| l.id.as_str())
                    && wants(c)
                    && wait_ready(&c.name, app, &site.domain, Duration::from_millis(500)).is_ok()
            })
        })
        .flatten()
        .copied();
    let kept = [live, spare].map(|c| c.map(|c| c.id.as_str()));
    let leftovers: Vec<&Container> = containers
        .iter()
        .filter(|c| c.service == service && !kept.contains(&Some(c.id.as_str())))
        .filter(|c| !keep.contains(&c.id))
        .collect();
    if !leftovers.is_empty() {
        let names: Vec<&str> = leftovers.iter().map(|c| c.name.as_str()).collect();
        ui.info(&format!(
            "{service}: removing {} (no traffic: left by an earlier swap)",
            names.join(", ")
        ));
        let ids: Vec<String> = leftovers.iter().map(|c| c.id.clone()).collect();
        drain_now(&ids)?;
    }
    Ok(Seen {
        live: live.map(Named::of),
        live_wanted,
        spare: spare.map(|c| c.name.clone()),
    })
}

/// Stops `containers` (each finishes what it serves within its grace) and removes them.
fn drain_now(containers: &[String]) -> anyhow::Result<()> {
    for name in containers {
        // One being drained by an earlier swap may be gone by now.
        let _ = duct::cmd!("docker", "stop", "--time", DRAIN_SECS, name)
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
        let _ = duct::cmd!("docker", "rm", "--force", "--volumes", name)
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
    }
    let left: Vec<&String> = containers
        .iter()
        .filter(|c| !matches!(engine::container(c), Ok(None)))
        .collect();
    if !left.is_empty() {
        bail!("cannot remove {left:?}: see `docker ps -a`; `docker rm --force NAME` and run again");
    }
    Ok(())
}

/// After nginx's reload: a second for the old workers to pass on what they accepted, then
/// SIGTERM (the apps finish their requests within their grace) and removal, in a process of
/// its own that outlives this one and holds none of its pipes, so neither the install nor a
/// CodeDeploy hook waits for it. One killed half-way leaves a container no traffic reaches,
/// which the next swap removes (`blue_green`'s leftovers).
fn drain_later(containers: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "sleep 1; for c; do (docker stop --time {DRAIN_SECS} \"$c\"; docker rm --force --volumes \"$c\") >/dev/null 2>&1 & done; wait"
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("hitsave-drain")
        .args(containers)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start the drain of the old containers")?;
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

/// One new container of each app in `swaps` beside its live one: `created`'s, or created now
/// (one compose call), each in turn (the API first) started with the boot CPU, ready, warmed
/// up and given the serving CPU. Their names in `swaps`' order, or an error that carries what a
/// failed one's readiness page last answered, its last health output (when Docker ran a check)
/// and log lines, after every new one is removed (the old ones never stopped).
fn start_beside(
    ui: &Ui,
    stack: &Stack,
    swaps: &[(App, Option<Named>)],
    domain: &str,
    weights: &Weights,
    timeout: Duration,
    created: Created,
) -> anyhow::Result<Vec<String>> {
    let new = match created.take_for(swaps) {
        Some(new) => new,
        None => create_beside(ui, stack, swaps)?
            .into_iter()
            .map(|c| c.name)
            .collect(),
    };
    // One at a time, each ready and warmed up before the next starts, the quickest (the API)
    // first: a start is a burst of runc, containerd, network and dockerd work, and a Node.js
    // boot and warm-up take what CPU their cap allows; live requests wait behind each, so one
    // burst at a time.
    let mut order: Vec<usize> = (0..swaps.len()).collect();
    order.sort_by_key(|&i| swaps[i].0 == App::Web);
    // `timeout` is the swap's, not each app's.
    let deadline = Instant::now() + timeout;
    for i in order {
        let (app, name) = (swaps[i].0, &new[i]);
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = start_ready(ui, name, app, domain, weights, left) {
            let service = app.service();
            ui.info(&format!(
                "{service}: {name} is not ready to serve; removing the new containers, the old ones keep serving"
            ));
            // The evidence goes with the container: keep it in the error (and so in history).
            let evidence = docker::last_words(name);
            drain_now(&new)?;
            return Err(e.context(format!(
                "the new {service} container never became ready{evidence}"
            )));
        }
    }
    Ok(new)
}

/// Starts `name` (of `app`) with the boot CPU, waits until it is ready, warms it up and gives
/// it the serving CPU.
fn start_ready(
    ui: &Ui,
    name: &str,
    app: App,
    domain: &str,
    weights: &Weights,
    timeout: Duration,
) -> anyhow::Result<()> {
    ui.info(&format!("{name}: starting"));
    let capped = start_capped(ui, name, weights)?;
    wait_ready(name, app, domain, timeout)?;
    ui.info(&format!("{name}: ready ({} answers 200)", app.ready_path()));
    warm_up(ui, name, app.port(), &app.host(domain), app.warm_up_path());
    if capped {
        weights.set_container(name, Phase::Serving)?;
    }
    Ok(())
}

/// Starts `name` with the boot CPU; whether the cap was set (best effort: a kernel without CFS
/// bandwidth control refuses a quota, and a container that boots uncapped has nothing to lift).
fn start_capped(ui: &Ui, name: &str, weights: &Weights) -> anyhow::Result<bool> {
    let capped = weights
        .set_container(name, Phase::Boot)
        .inspect_err(|e| ui.info(&format!("{name}: boots without a CPU cap: {e:#}")))
        .is_ok();
    docker::start(name)?;
    Ok(capped)
}

/// Creates (without starting) one new container of each app in `swaps` beside its live one,
/// in one compose call; in `swaps`' order.
fn create_beside(
    ui: &Ui,
    stack: &Stack,
    swaps: &[(App, Option<Named>)],
) -> anyhow::Result<Vec<Named>> {
    let services: Vec<&str> = swaps.iter().map(|(a, _)| a.service()).collect();
    ui.info(&format!(
        "{}: creating new containers beside the old ones",
        services.join(", ")
    ));
    let mut args = vec!["up", "--no-start", "--no-deps", "--no-recreate"];
    let scales: Vec<String> = swaps
        .iter()
        .map(|(app, live)| format!("{}={}", app.service(), 1 + usize::from(live.is_some())))
        .collect();
    for scale in &scales {
        args.extend(["--scale", scale.as_str()]);
    }
    args.extend(&services);
    // Created first, so that each starts with the boot CPU (`cpu::Phase::Boot`).
    stack.run("creating the new containers", &args)?;
    let containers = stack.containers()?;
    let mut new = Vec::new();
    for (app, live) in swaps {
        let name = containers
            .iter()
            .find(|c| c.service == app.service() && Some(&c.id) != live.as_ref().map(|l| &l.id))
            .map(Named::of)
            .with_context(|| format!("compose created no new {} container", app.service()));
        match name {
            Ok(c) => new.push(c),
            Err(e) => {
                let ids: Vec<String> = new.into_iter().map(|c| c.id).collect();
                let _ = drain_now(&ids);
                return Err(e);
            }
        }
    }
    Ok(new)
}

/// Waits until each app has a running container that answers its readiness page, and as this
/// release, on its own address (for a restore, while nginx still answers the maintenance page).
pub fn wait_apps_ready(stack: &Stack, timeout: Duration) -> anyhow::Result<()> {
    let domain = stack.domain()?.to_owned();
    for app in App::ALL {
        let container = stack
            .containers()?
            .into_iter()
            .find(|c| c.service == app.service() && c.state == State::Running)
            .map(|c| c.name)
            .with_context(|| format!("{app} has no running container"))?;
        // Asked every 50 ms, as an install asks its new containers: Docker's check comes
        // every 30 s, and the maintenance page would stay up that much longer.
        wait_ready(&container, app, &domain, timeout).map_err(|e| {
            let evidence = docker::last_words(&container);
            e.context(format!("{container} never became ready{evidence}"))
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

/// A graceful reload: new workers take the new site, old ones finish their requests; it
/// returns once only new workers take requests. By SIGHUP to nginx's master, the container's
/// main process, through the engine's API: `nginx -s reload` sends the same signal, but from a
/// process exec'd into the container (runc's heaviest call, inside the swap's window).
pub fn reload_nginx(stack: &Stack) -> anyhow::Result<()> {
    let nginx = crate::site::stack::running_container(stack, Service::Nginx.name())?;
    let workers = Workers::of(&nginx)?;
    let old = workers.serving()?;
    let since = std::time::SystemTime::now();
    // The compose file gives nginx `stop_signal: SIGQUIT`: a signal other than a container's
    // stop signal leaves its restart policy alone (without one, Docker counts any as a stop).
    engine::signal(&nginx, "HUP")
        .with_context(|| format!("cannot ask nginx ({nginx}) to reload"))?;
    // nginx's master starts new workers and tells the old ones to stop 100 ms later (its own
    // pause). Until then an old worker takes new requests on the old configuration: with its
    // cached addresses of containers a restore has stopped, or without the maintenance page
    // just turned off. A master that refuses the configuration starts no worker at all.
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    wait_for(
        &format!("nginx ({nginx}) to serve its new configuration"),
        Duration::from_secs(10),
        // Reading /proc costs microseconds; the engine's `top` runs `ps` over the host.
        Duration::from_millis(if workers.master.is_some() { 10 } else { 50 }),
        || {
            let now = workers.serving()?;
            let stale = now.iter().filter(|pid| old.contains(pid)).count();
            if stale == now.len() && signalled.elapsed() > REFUSED_AFTER {
                return Err(anyhow::Error::new(Refused(format!(
                    "nginx ({nginx}) started no worker for its new configuration within {REFUSED_AFTER:?}: its master refused it, or stopped{}",
                    complaints(&nginx, since)
                ))));
            }
            Ok(match (now.len(), stale) {
                (_, 0) if !now.is_empty() => Wait::Done(()),
                (n, stale) => Wait::NotYet(format!(
                    "{stale} of its {n} workers still serve the old configuration"
                )),
            })
        },
    )
}

/// How long a reloaded nginx master may take to start its new workers (it takes milliseconds).
const REFUSED_AFTER: Duration = Duration::from_secs(3);

/// A reload nginx did not take: no new worker serves the new site, the old ones serve on.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// nginx's own complaints (its `[emerg]` and `[alert]` lines) since `since`, for an error;
/// else where to look.
fn complaints(nginx: &str, since: std::time::SystemTime) -> String {
    let secs = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(1));
    let log = docker::logs(nginx, &["--since", &secs.to_string()]);
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[emerg]") || l.contains("[alert]"))
        .take(5)
        .collect();
    if said.is_empty() {
        format!(" (docker logs {nginx} says which)")
    } else {
        format!("; it said: {}", said.join("; "))
    }
}

/// Where nginx's workers are seen: in /proc, as its master's children, when this host shows
/// the master there (the engine's `top` runs `ps` over every process on the host, and the
/// reload looks every 10 ms); else by asking the engine.
struct Workers<'a> {
    nginx: &'a str,
    master: Option<u32>,
}

impl<'a> Workers<'a> {
    fn of(nginx: &'a str) -> anyhow::Result<Workers<'a>> {
        let pid = engine::container(nginx)?.map_or(0, |c| c.state.pid);
        let master = u32::try_from(pid).ok().filter(|&pid| {
            crate::kit::procfs::title(pid).is_ok_and(|t| t.starts_with("nginx: master process"))
                && crate::kit::procfs::children(pid).is_ok()
        });
        Ok(Workers { nginx, master })
    }

    /// The pids of the workers that take new requests (not those shutting down).
    fn serving(&self) -> anyhow::Result<Vec<u32>> {
        let listed = match self.master {
            Some(pid) => crate::kit::procfs::children(pid)
                .with_context(|| format!("cannot list the workers of nginx ({})", self.nginx))?,
            None => engine::processes(self.nginx)?,
        };
        Ok(listed
            .into_iter()
            .filter(|(_, title)| title.trim() == "nginx: worker process")
            .map(|(pid, _)| pid)
            .collect())
    }
}

/// Waits until `container` answers its readiness page with 200, asked on its own address every
/// 50 ms: ready as soon as it is, not at Docker's next health check (every 30 s; it is for
/// `status`). Its state is looked at every half second, so one that exits fails at once.
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
            let said =
                match crate::kit::http::request_to(addr, &host, "GET", app.ready_path(), None) {
                    Some((200, _)) => return Ok(Wait::Done(())),
                    Some((status, body)) => {
                        format!(
                            "it answers {status}: {}",
                            crate::kit::ui::truncate(body.trim(), 200)
                        )
                    }
                    None => "it does not answer yet".to_owned(),
                };
            if looks.is_multiple_of(10) {
                let status = engine::container(container)
                    .ok()
                    .flatten()
                    .map(|c| c.state.status)
                    .unwrap_or_default();
                if State::from(status.clone()).is_over() {
                    bail!("{container} exited ({status})");
                }
            }
            Ok(Wait::NotYet(said))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Named {
        Named {
            name: name.into(),
            id: format!("{name}-id"),
        }
    }

    #[test]
    fn created_containers_are_taken_in_the_swaps_order() {
        let created = Created {
            containers: vec![(App::Api, named("api-2")), (App::Web, named("web-2"))],
        };
        let swaps = [(App::Web, None), (App::Api, Some(named("api-1")))];
        assert_eq!(
            created.take_for(&swaps),
            Some(vec!["web-2".to_owned(), "api-2".to_owned()])
        );
        // Nothing created ahead (a rotation, a rollback's swap): the swap creates its own.
        assert_eq!(Created::default().take_for(&swaps), None);
    }
}
