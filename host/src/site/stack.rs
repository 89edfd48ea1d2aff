//! The compose stack of one release: `docker compose` with the release's own compose files,
//! the production overlay and its release.env; runtime images; the migrator; health.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::Manifest;
use serde::Deserialize;

use crate::kit::compose::{Compose, tail};
use crate::kit::process::{Wait, wait_for};
use crate::site::app::{App, Service};
pub use crate::site::release_env::ReleaseEnv;

/// Components that run as containers built from their artifact, with their Dockerfile and
/// the release.env key that names the base image.
pub const IMAGES: &[(&str, &str)] = &[
    ("api", "HITSAVE_RUNTIME_BASE"),
    ("migrate", "HITSAVE_RUNTIME_BASE"),
    ("web", "HITSAVE_NODE_BASE"),
];

/// What a release's migrator finds in a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Every migration it has is applied, and nothing else.
    Same,
    /// Some of its migrations are not applied yet.
    Behind,
    /// Applied migrations it does not know, or that differ from its own.
    Foreign,
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Schema::Same => "its own schema",
            Schema::Behind => "its migrations are not all applied",
            Schema::Foreign => "applied migrations it does not know",
        })
    }
}

/// The stack as one release runs it.
pub struct Stack {
    pub project: String,
    pub release_dir: Utf8PathBuf,
    pub env: ReleaseEnv,
    /// `config_hashes`, asked of compose once.
    hashes: std::sync::OnceLock<BTreeMap<String, Vec<String>>>,
}

/// The Docker volume of project's database (compose's name for `db-data`).
pub fn db_volume(project: &str) -> String {
    format!("{project}_db-data")
}

/// What `docker volume inspect` says of `volume`: its mount point and, when it is bound to a
/// directory (the data volume overlay), that directory; `None` when there is no such volume.
pub fn volume_place(volume: &str) -> anyhow::Result<Option<(Utf8PathBuf, Option<Utf8PathBuf>)>> {
    let out = duct::cmd!(
        "docker",
        "volume",
        "inspect",
        "--format",
        "{{json .Mountpoint}} {{json .Options}}",
        volume
    )
    .stdin_null()
    .stderr_null()
    .stdout_capture()
    .unchecked()
    .run()?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (mountpoint, options) = text
        .trim()
        .split_once(' ')
        .context("docker volume inspect said something else")?;
    let mountpoint: String = serde_json::from_str(mountpoint)?;
    let options: serde_json::Value = serde_json::from_str(options)?;
    Ok(Some((
        mountpoint.into(),
        options["device"].as_str().map(Utf8PathBuf::from),
    )))
}

/// The image tag of a component: the first 16 hex digits of its artifact's sha256.
pub fn image_tag(manifest: &Manifest, component: &str) -> anyhow::Result<String> {
    let a = manifest
        .artifact(component)
        .with_context(|| format!("release {} has no {component} artifact", manifest.release))?;
    Ok(a.sha256[..16].to_owned())
}

/// One container of the stack, as the engine lists it.
#[derive(Debug)]
pub struct Container {
    pub name: String,
    pub service: String,
    pub state: State,
    /// `None` when the container has no health check.
    pub health: Option<Health>,
    pub image: String,
    /// Docker's id: a drain goes by it, since compose gives a recreated container the name of
    /// the one it replaces.
    pub id: String,
    /// The configuration compose made it with (`com.docker.compose.config-hash`).
    pub config_hash: String,
}

impl Container {
    /// A container as the engine lists it, with its compose number; the health is in the
    /// status's parentheses ("Up 3 seconds (health: starting)").
    fn from_listed(listed: crate::kit::engine::Listed) -> (u32, Container) {
        let label = |key: &str| listed.labels.get(key).cloned().unwrap_or_default();
        let status = &listed.status;
        let health = if status.contains("(healthy)") {
            Some(Health::Healthy)
        } else if status.contains("(unhealthy)") {
            Some(Health::Unhealthy)
        } else if status.contains("(health: starting)") {
            Some(Health::Starting)
        } else {
            None
        };
        let number = label("com.docker.compose.container-number")
            .parse()
            .unwrap_or(0);
        let container = Container {
            name: listed.name().to_owned(),
            service: label("com.docker.compose.service"),
            state: State::from(listed.state.clone()),
            health,
            image: listed.image.clone(),
            id: listed.id.clone(),
            config_hash: label("com.docker.compose.config-hash"),
        };
        (number, container)
    }
}

/// A container's state, as Docker names it (`.State.Status`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum State {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Removing,
    Dead,
    /// A state this program does not know: treated as not running.
    Other(String),
}

/// A health check's verdict (`.State.Health.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl From<String> for State {
    fn from(s: String) -> State {
        match s.as_str() {
            "created" => State::Created,
            "running" => State::Running,
            "restarting" => State::Restarting,
            "paused" => State::Paused,
            "exited" => State::Exited,
            "removing" => State::Removing,
            "dead" => State::Dead,
            _ => State::Other(s),
        }
    }
}

impl State {
    /// Whether it has stopped for good: waiting longer will not make it healthy.
    pub fn is_over(&self) -> bool {
        matches!(self, State::Exited | State::Dead)
    }

    pub fn as_str(&self) -> &str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Paused => "paused",
            State::Exited => "exited",
            State::Removing => "removing",
            State::Dead => "dead",
            State::Other(s) => s,
        }
    }
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }

    /// Docker's word for it; `None` for "" (no health check) or one this program does not know.
    pub fn parse(s: &str) -> Option<Health> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

impl Stack {
    /// The stack as release.env in `release_dir` describes it.
    pub fn open(release_dir: &Utf8Path) -> anyhow::Result<Stack> {
        let env = ReleaseEnv::read(&release_dir.join("release.env"))?;
        Ok(Stack {
            project: env.project()?.to_owned(),
            release_dir: release_dir.to_owned(),
            env,
            hashes: std::sync::OnceLock::new(),
        })
    }

    /// The Docker volume of the stack's database.
    pub fn db_volume(&self) -> String {
        db_volume(&self.project)
    }

    /// Where the stack's database volume is (`volume_place`).
    pub fn db_volume_place(&self) -> anyhow::Result<Option<(Utf8PathBuf, Option<Utf8PathBuf>)>> {
        volume_place(&self.db_volume())
    }

    /// Whether the stack uses a database server of its own (no db container, no volume).
    pub fn external_db(&self) -> bool {
        self.env.external_db().is_some()
    }

    /// The base file, the production overlay and, for an external database, a database on the
    /// data volume and logs sent to CloudWatch, their overlays.
    fn compose_files(&self) -> Vec<Utf8PathBuf> {
        let deploy = self.release_dir.join("deploy");
        let mut files = vec![
            deploy.join("docker-compose.yml"),
            deploy.join("production.yml"),
        ];
        if self.external_db() {
            files.push(deploy.join("external-db.yml"));
            if self
                .env
                .external_db()
                .is_some_and(|db| db.network.is_some())
            {
                files.push(deploy.join("external-db-network.yml"));
            }
        }
        if self.env.db_dir().is_some() && !self.external_db() {
            files.push(deploy.join("data-volume.yml"));
        }
        if self.env.logs_group().is_some() {
            files.push(deploy.join("awslogs.yml"));
            if self.env.logs_endpoint().is_some() {
                files.push(deploy.join("awslogs-endpoint.yml"));
            }
        }
        files
    }

    /// The release's own compose files with its release.env, and nothing from the caller's
    /// environment: a stray HITSAVE_* must not change what production runs.
    fn compose(&self) -> Compose {
        let deploy = self.release_dir.join("deploy");
        Compose {
            project: self.project.clone(),
            directory: deploy.clone(),
            files: self.compose_files(),
            env_file: Some(self.release_dir.join("release.env")),
            // A secret rotation's grace period, which the API enforces (never a value).
            env: self
                .env
                .secrets_dir()
                .map(crate::site::secret_files::compose_env)
                .unwrap_or_default(),
            isolated: true,
        }
    }

    /// A compose command on this stack, to stream or run as the caller likes.
    pub fn command(&self, args: &[&str]) -> duct::Expression {
        self.compose().command(args)
    }

    /// Runs a compose command to its end: its exit status and output, whatever they are.
    pub fn output(
        &self,
        what: &str,
        args: &[&str],
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        self.compose().output(what, args)
    }

    /// Runs a compose command; on failure the error carries its output.
    pub fn run(&self, what: &str, args: &[&str]) -> anyhow::Result<String> {
        self.compose().run(what, args)
    }

    /// Like `run`, with `overlay` (a compose file's text) added after the release's files.
    pub fn run_with_overlay(
        &self,
        what: &str,
        overlay: &str,
        args: &[&str],
    ) -> anyhow::Result<String> {
        let file = tempfile::Builder::new()
            .prefix("hitsave-overlay-")
            .suffix(".yml")
            .tempfile()?;
        std::fs::write(file.path(), overlay)?;
        let path = file.path().to_string_lossy().into_owned();
        let mut all = vec!["-f", path.as_str()];
        all.extend_from_slice(args);
        self.run(what, &all)
    }

    /// The configuration compose resolves from the two files and release.env.
    pub fn config(&self) -> anyhow::Result<serde_json::Value> {
        let text = self.run(
            "reading the compose configuration",
            &["config", "--format", "json"],
        )?;
        serde_json::from_str(&text)
            .context("docker compose config printed something that is not JSON")
    }

    /// Builds the runtime images this release needs, unless present (tagged by artifact hash):
    /// looked for and built side by side (a build mostly copies the unpacked tree).
    pub fn build_images(&self) -> anyhow::Result<Vec<String>> {
        let all: Vec<&str> = IMAGES.iter().map(|(c, _)| *c).collect();
        self.build_images_of(&all)
    }

    /// `build_images` for `components` only.
    pub fn build_images_of(&self, components: &[&str]) -> anyhow::Result<Vec<String>> {
        let results: Vec<anyhow::Result<Option<String>>> = std::thread::scope(|s| {
            let builds: Vec<_> = IMAGES
                .iter()
                .filter(|(component, _)| components.contains(component))
                .map(|&(component, base_key)| {
                    s.spawn(move || self.build_image(component, base_key))
                })
                .collect();
            builds
                .into_iter()
                .map(|b| {
                    b.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a build thread panicked")))
                })
                .collect()
        });
        let mut built = Vec::new();
        for result in results {
            built.extend(result?);
        }
        Ok(built)
    }

    /// Builds `component`'s image on the base `base_key` names; `None` when it exists. No
    /// release label: the tag is the artifact's hash, and an image serves every release that
    /// carries that artifact (a label would be one more commit for the builder to make).
    fn build_image(&self, component: &str, base_key: &str) -> anyhow::Result<Option<String>> {
        let image = format!("hitsave/{component}:{}", self.env.image_tag(component)?);
        if image_exists(&image) {
            return Ok(None);
        }
        let base = self.env.base_image(base_key)?;
        let dockerfile = self
            .release_dir
            .join(format!("deploy/images/{component}.Dockerfile"));
        let context = self.release_dir.join(component);
        let out = duct::cmd!(
            "docker",
            "build",
            "--quiet",
            "--file",
            &dockerfile,
            "--build-arg",
            format!("BASE={base}"),
            "--tag",
            &image,
            &context
        )
        .env("DOCKER_BUILDKIT", "0")
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()?;
        if !out.status.success() {
            bail!(
                "building {image} on {base} failed:\n{}",
                tail(&String::from_utf8_lossy(&out.stdout), 20)
            );
        }
        Ok(Some(image))
    }

    /// The config-hash labels a container of each service would carry if compose created it
    /// now: by `up` (the whole configuration) or by the blue/green `up --no-deps`, which leaves
    /// depends_on out of the hash. Both asked at once, and once per `Stack`.
    pub fn config_hashes(&self) -> anyhow::Result<&BTreeMap<String, Vec<String>>> {
        if let Some(hashes) = self.hashes.get() {
            return Ok(hashes);
        }
        const NO_DEPS: &str =
            "services:\n  api:\n    depends_on: !reset []\n  web:\n    depends_on: !reset []\n";
        let what = "hashing the configuration";
        let (full, no_deps) = std::thread::scope(|s| {
            let full = s.spawn(|| self.run(what, &["config", "--hash", "*"]));
            let no_deps = self.run_with_overlay(what, NO_DEPS, &["config", "--hash", "*"]);
            (
                full.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("{what}: a thread panicked"))),
                no_deps,
            )
        });
        let (full, no_deps) = (full?, no_deps?);
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
        Ok(self.hashes.get_or_init(|| hashes))
    }

    /// The stack's containers (not `compose run`'s one-offs), ordered by service and number.
    /// Asked of the engine by compose's labels: `compose ps` takes ten times as long to load
    /// the project, and an install asks several times.
    pub fn containers(&self) -> anyhow::Result<Vec<Container>> {
        let project = format!("com.docker.compose.project={}", self.project);
        let listed = crate::kit::engine::containers(&[&project, "com.docker.compose.oneoff=False"])
            .context("cannot list the stack's containers")?;
        let mut containers: Vec<(u32, Container)> =
            listed.into_iter().map(Container::from_listed).collect();
        containers.sort_by(|(a, x), (b, y)| (&x.service, a).cmp(&(&y.service, b)));
        Ok(containers.into_iter().map(|(_, c)| c).collect())
    }

    /// Whether this release's migrator has migrations the database has not applied
    /// (`migrate status` exits 3 then).
    pub fn pending_migrations(&self) -> anyhow::Result<bool> {
        self.migrator_says(None, "status")
    }

    /// How this release's schema compares with `database` (another database on the live
    /// server, such as a restore's): `migrate check`, then `migrate status`.
    pub fn schema_on(&self, database: &str) -> anyhow::Result<Schema> {
        Ok(if self.migrator_says(Some(database), "check")? {
            Schema::Foreign
        } else if self.migrator_says(Some(database), "status")? {
            Schema::Behind
        } else {
            Schema::Same
        })
    }

    /// Runs the migrator's `command` (on `database`, or the live one); true when it exits 3
    /// (`status`: migrations pending; `check`: the history disagrees with this binary).
    fn migrator_says(&self, database: Option<&str>, command: &str) -> anyhow::Result<bool> {
        let what = format!("migrate {command}");
        let on = database.map(|db| format!("POSTGRES_DB={db}"));
        let mut args = vec!["run", "--rm", "--no-deps"];
        if let Some(on) = &on {
            args.extend(["-e", on.as_str()]);
        }
        args.extend([Service::Migrate.name(), command]);
        let (status, text) = self.compose().output(&what, &args)?;
        match status.code() {
            Some(0) => Ok(false),
            Some(3) => Ok(true),
            _ => bail!("{what} failed: {}", tail(&text, 20)),
        }
    }

    /// The host port nginx answers HTTP on, and the domain it serves.
    pub fn http_port(&self) -> anyhow::Result<u16> {
        self.env.http_port()
    }

    pub fn domain(&self) -> anyhow::Result<&str> {
        self.env.domain()
    }

    /// Whether this release serves: the database, api, web and nginx running and not
    /// unhealthy, and both apps answering for this release through nginx. `Err(reason)` says
    /// what is still missing.
    pub fn serving(&self) -> anyhow::Result<Result<(), String>> {
        let containers = self.containers()?;
        let services: &[&str] = if self.external_db() {
            &[
                Service::Api.name(),
                Service::Web.name(),
                Service::Nginx.name(),
            ]
        } else {
            &[
                Service::Db.name(),
                Service::Api.name(),
                Service::Web.name(),
                Service::Nginx.name(),
            ]
        };
        for &service in services {
            // The newest running one: an old one may still be draining after a swap.
            let running = containers
                .iter()
                .rev()
                .find(|c| c.service == service && c.state == State::Running);
            match running.or_else(|| containers.iter().find(|c| c.service == service)) {
                None => return Ok(Err(format!("{service} has no container"))),
                Some(c) if c.state != State::Running => {
                    return Ok(Err(format!("{service} is {}", c.state.as_str())));
                }
                // A container Docker has not checked yet (it checks each every 30 s) is judged
                // below, by the apps' answers through nginx as this release (the API's
                // readiness asks the database).
                Some(c)
                    if c.health != Some(Health::Healthy) && c.health != Some(Health::Starting) =>
                {
                    return Ok(Err(format!(
                        "{service} is {}",
                        c.health
                            .map_or("running without a health check", Health::as_str)
                    )));
                }
                Some(_) => {}
            }
        }
        let port = self.http_port()?;
        let domain = self.domain()?;
        for app in App::ALL {
            let (path, what) = (app.ready_path(), app.describe());
            let host = app.host(domain);
            let (release, _) = self.env.app_release(app)?;
            let marker = format!("\"release\":\"{release}\"");
            match crate::kit::http::get(port, &host, path) {
                Some((200, body)) if body.contains(&marker) => {}
                Some((200, body)) => {
                    return Ok(Err(format!(
                        "{what} answers through nginx but not as release {release}: {}",
                        tail(&body, 1)
                    )));
                }
                Some((status, _)) => {
                    return Ok(Err(format!(
                        "{what} answers {status} on {host}{path} through nginx"
                    )));
                }
                None => return Ok(Err(format!("nginx does not answer on 127.0.0.1:{port}"))),
            }
        }
        Ok(Ok(()))
    }

    /// Waits until `serving` holds, or fails with the last reason after `timeout`.
    /// Asked every 100 ms: right after nginx's reload, its old workers may still answer for
    /// the release before.
    pub fn wait_serving(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_for("it to serve", timeout, Duration::from_millis(100), || {
            Ok(match self.serving()? {
                Ok(()) => Wait::Done(()),
                Err(reason) => Wait::NotYet(reason),
            })
        })
    }
}

pub fn image_exists(image: &str) -> bool {
    crate::kit::engine::image_id(image).is_ok_and(|id| id.is_some())
}

/// The name of `service`'s running container in the current release (after a blue/green swap
/// it is not `<project>-<service>-1`): the newest (compose numbers them upwards), since the one
/// it replaced may still be draining.
pub fn running_container(stack: &Stack, service: &str) -> anyhow::Result<String> {
    let containers = stack.containers()?;
    let running: Vec<_> = containers
        .iter()
        .filter(|c| c.service == service && c.state == State::Running)
        .collect();
    match running.last() {
        Some(c) => Ok(c.name.clone()),
        None if containers.iter().any(|c| c.service == service) => {
            bail!("no container of {service} is running: see `xtask status`")
        }
        None => bail!(
            "the current release has no service {service:?}: its services are {}",
            services(stack)?.join(", ")
        ),
    }
}

/// The services of the stack's compose files.
pub fn services(stack: &Stack) -> anyhow::Result<Vec<String>> {
    let config = stack.config()?;
    Ok(config["services"]
        .as_object()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_reports_its_own_release_or_the_release_of_older_installs() {
        let env = |pairs: &[(&str, &str)]| {
            let mut env = ReleaseEnv::default();
            for (k, v) in pairs {
                env.set(k, (*v).to_owned());
            }
            env
        };
        let carried = env(&[
            ("HITSAVE_RELEASE", "r2"),
            ("HITSAVE_COMMIT", "c2"),
            ("HITSAVE_API_RELEASE", "r1"),
            ("HITSAVE_API_COMMIT", "c1"),
            ("HITSAVE_WEB_RELEASE", "r2"),
            ("HITSAVE_WEB_COMMIT", "c2"),
        ]);
        assert_eq!(carried.app_release(App::Api).unwrap(), ("r1", "c1"));
        assert_eq!(carried.app_release(App::Web).unwrap(), ("r2", "c2"));
        // release.env written before apps kept their own id.
        let older = env(&[("HITSAVE_RELEASE", "r0"), ("HITSAVE_COMMIT", "c0")]);
        assert_eq!(older.app_release(App::Api).unwrap(), ("r0", "c0"));
        assert!(env(&[]).app_release(App::Web).is_err());
    }

    /// What the engine lists (`GET /containers/json`) becomes types; a state Docker may add
    /// later is kept as text and counts as not running.
    #[test]
    fn container_states_are_types() {
        let line = |state: &str, status: &str| -> Container {
            let listed: crate::kit::engine::Listed = serde_json::from_value(serde_json::json!({
                "Id": "abc", "Names": ["/p-api-2"], "Image": "hitsave/api:x",
                "State": state, "Status": status,
                "Labels": {
                    "com.docker.compose.service": "api",
                    "com.docker.compose.container-number": "2",
                    "com.docker.compose.config-hash": "h1"
                }
            }))
            .unwrap();
            let (number, c) = Container::from_listed(listed);
            assert_eq!(
                (
                    number,
                    c.name.as_str(),
                    c.image.as_str(),
                    c.service.as_str()
                ),
                (2, "p-api-2", "hitsave/api:x", "api")
            );
            assert_eq!((c.id.as_str(), c.config_hash.as_str()), ("abc", "h1"));
            c
        };
        let c = line("running", "Up 4 minutes (healthy)");
        assert_eq!((c.state, c.health), (State::Running, Some(Health::Healthy)));
        assert_eq!(line("running", "Up 2 seconds").health, None);
        let starting = line("running", "Up 1 second (health: starting)");
        assert_eq!(starting.health, Some(Health::Starting));
        let exited = line("exited", "Exited (1) 3 seconds ago (unhealthy)");
        assert_eq!(exited.health, Some(Health::Unhealthy));
        assert!(line("dead", "Dead").state.is_over());
        let odd = line("hibernating", "dozing");
        assert_eq!(odd.state, State::Other("hibernating".into()));
        assert_eq!((odd.state.as_str(), odd.health), ("hibernating", None));
    }
}
