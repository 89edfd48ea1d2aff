//! `cargo xtask dev`: the whole stack on a laptop at hitsave-local.io, with live reload.
//!
//! `db` and `nginx` come from deploy/docker-compose.yml (plus deploy/dev.yml, which puts
//! nginx on the host's network, listening on 127.0.0.1 only); the API runs natively and is
//! rebuilt and restarted when api/, db/ or migrations/ change; the web app runs under
//! `react-router dev` (Vite, hot reload). nginx routes the three names to them on one port.
//! Each child runs in its own process group, so Ctrl-C reaches xtask alone and xtask stops
//! every group it started, then the containers.

pub mod setup;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::signal::Signal;

use crate::child::{Child, Stop};
use hitsave_host::kit::compose::Compose;
use hitsave_host::kit::process::{Wait, wait_for, wait_until};
use hitsave_host::kit::ui::Ui;
use setup::HOSTS;

#[derive(clap::Args)]
pub struct Args {
    /// The port nginx serves the three names on (127.0.0.1 only).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The port the API listens on (127.0.0.1 only).
    #[arg(long, default_value_t = 8080)]
    api_port: u16,
    /// The port of the web app's dev server (127.0.0.1 only).
    #[arg(long, default_value_t = 5173)]
    web_port: u16,
    /// The port PostgreSQL is published on (127.0.0.1 only), for psql and the migrator.
    #[arg(long, default_value_t = 5432)]
    db_port: u16,
    /// The Compose project: its containers and its database volume.
    #[arg(long, default_value = "hitsave-dev")]
    project: String,
    /// Use the base images built by `cargo xtask images` (hitsave-base/*) instead of the
    /// official postgres and nginx images, for a machine that reaches no registry.
    #[arg(long)]
    local_base_images: bool,
    /// Add the missing hitsave-local.io lines to the hosts file, then exit (needs root).
    #[arg(long, conflicts_with = "down")]
    fix_hosts: bool,
    /// Stop and remove the dev containers, then exit. The database volume is kept.
    #[arg(long)]
    down: bool,
    /// With --down: also delete the database volume (its data is lost).
    #[arg(long, requires = "down")]
    reset_db: bool,
    /// The hosts file to check or fix.
    #[arg(long, default_value = "/etc/hosts", hide = true)]
    hosts_file: Utf8PathBuf,
}

/// How long the sources must stay unchanged before the API is rebuilt.
const QUIET: Duration = Duration::from_millis(300);

/// How long a stopped child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn run(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    let ui = Ui::new();
    if args.fix_hosts {
        return fix_hosts(&ui, &args.hosts_file);
    }
    let stack = Stack::new(root, &args)?;
    if args.down {
        return stack.down(&ui, args.reset_db);
    }

    // Ctrl-C, SIGTERM and SIGHUP: every step below checks this, and the watch loop wakes up.
    let (tx, rx) = mpsc::channel::<Msg>();
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let stopping = stopping.clone();
        let tx = tx.clone();
        ctrlc::set_handler(move || {
            stopping.store(true, Ordering::SeqCst);
            let _ = tx.send(Msg::Stop);
        })
        .context("cannot handle Ctrl-C")?;
    }
    let interrupted = || -> anyhow::Result<()> {
        if stopping.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    };

    check_hosts(&ui, &args.hosts_file);
    // The API's and the web's ports first: they are held only while a dev session runs.
    for (port, flag) in [(args.api_port, "--api-port"), (args.web_port, "--web-port")] {
        ensure_free(port, flag)?;
    }
    ui.info(&hitsave_host::release::preflight::docker_and_compose()?);
    // nginx of an earlier session that was killed before it could stop it.
    stack.run("stopping a leftover nginx", &["stop", "nginx"])?;
    ensure_free(args.port, "--port")?;
    stack.check_images()?;
    crate::release::web::install_dependencies(&ui, root)?;
    let made = setup::ensure_secrets(root)?;
    if !made.is_empty() {
        ui.info(&format!(
            "generated local secrets in .secrets/ (mode 0600): {}",
            made.join(", ")
        ));
    }
    stack.write_site(&args)?;
    interrupted()?;

    // From here on, whatever was started is stopped again, also when a step fails.
    let mut session = Session {
        stack: &stack,
        ui: &ui,
        api: None,
        web: None,
        out: Arc::new(Mutex::new(())),
        stopping: stopping.clone(),
    };
    let result = session.start(root, &args, &interrupted).and_then(|()| {
        session.print_urls(&args);
        session.watch(root, &args, tx, rx)
    });
    session.stop();
    match result {
        Err(e) if stopping.load(Ordering::SeqCst) => {
            ui.info(&format!("stopped ({e:#})"));
            Ok(())
        }
        other => other,
    }
}

fn ensure_free(port: u16, flag: &str) -> anyhow::Result<()> {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        bail!(
            "127.0.0.1:{port} is in use (another `cargo xtask dev`?): stop what holds it, or pick another port with {flag}"
        );
    }
    Ok(())
}

enum Msg {
    Stop,
    Changed(Vec<Utf8PathBuf>),
    WatchFailed(String),
}

/// The compose project for dev: the base file plus deploy/dev.yml.
struct Stack {
    root: Utf8PathBuf,
    project: String,
    state: Utf8PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Stack {
    fn new(root: &Utf8Path, args: &Args) -> anyhow::Result<Stack> {
        let state = xtask::checkout::target_dir(root).join("xtask/dev");
        let images = hitsave_host::site::settings::base_images(args.local_base_images);
        let image = |key: &str| -> String {
            images
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        Ok(Stack {
            root: root.to_owned(),
            project: args.project.clone(),
            env: vec![
                ("HITSAVE_SECRETS_DIR", root.join(".secrets").to_string()),
                ("HITSAVE_NGINX_DIR", state.join("nginx").to_string()),
                ("HITSAVE_HTTP_PORT", args.port.to_string()),
                ("HITSAVE_DB_PORT", args.db_port.to_string()),
                ("HITSAVE_POSTGRES_IMAGE", image("HITSAVE_POSTGRES_IMAGE")),
                ("HITSAVE_NGINX_IMAGE", image("HITSAVE_NGINX_IMAGE")),
            ],
            state,
        })
    }

    /// The checkout's compose files with dev.yml, and dev's variables.
    fn compose(&self) -> Compose {
        let deploy = self.root.join("deploy");
        Compose {
            project: self.project.clone(),
            directory: deploy.clone(),
            files: vec![deploy.join("docker-compose.yml"), deploy.join("dev.yml")],
            env_file: None,
            env: self
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            isolated: false,
        }
    }

    /// A compose command whose output is shown only when it fails.
    fn run(&self, what: &str, args: &[&str]) -> anyhow::Result<()> {
        self.compose().run(what, args).map(drop)
    }

    fn check_images(&self) -> anyhow::Result<()> {
        for (key, image) in &self.env {
            if key.ends_with("_IMAGE")
                && image.starts_with("hitsave-base/")
                && !hitsave_host::site::stack::image_exists(image)
            {
                bail!("image {image} is missing: build the base images with `cargo xtask images`");
            }
        }
        Ok(())
    }

    fn write_site(&self, args: &Args) -> anyhow::Result<()> {
        let template = self.root.join("deploy/nginx/hitsave.conf.template");
        let template = std::fs::read_to_string(&template)
            .with_context(|| format!("cannot read {template}"))?;
        let dir = self.state.join("nginx");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
        let site = setup::dev_site(&template, args.port, args.api_port, args.web_port);
        std::fs::write(dir.join("hitsave.conf"), site)?;
        Ok(())
    }

    fn down(&self, ui: &Ui, reset_db: bool) -> anyhow::Result<()> {
        // The site file must exist for compose to interpolate the nginx service.
        std::fs::create_dir_all(self.state.join("nginx"))?;
        let mut args = vec!["down", "--remove-orphans"];
        if reset_db {
            args.push("--volumes");
        }
        self.run("removing the dev containers", &args)?;
        ui.info(&if reset_db {
            format!(
                "removed the {} containers and the database volume",
                self.project
            )
        } else {
            format!(
                "removed the {} containers; the database volume is kept (--reset-db deletes it)",
                self.project
            )
        });
        Ok(())
    }
}

/// What `dev` started: stopped again in `stop`, whatever happened.
struct Session<'a> {
    stack: &'a Stack,
    ui: &'a Ui,
    api: Option<Child>,
    web: Option<Child>,
    /// One line at a time on stdout, whichever child printed it.
    out: Arc<Mutex<()>>,
    /// Set by Ctrl-C.
    stopping: Arc<AtomicBool>,
}

impl Session<'_> {
    fn start(
        &mut self,
        root: &Utf8Path,
        args: &Args,
        interrupted: &dyn Fn() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.ui.info(&format!(
            "starting the database ({}, 127.0.0.1:{})",
            self.stack.project, args.db_port
        ));
        self.stack
            .run("starting the database", &["up", "--detach", "--wait", "db"])?;
        interrupted()?;
        build(self.ui, root)?;
        interrupted()?;
        self.migrate(root, args)?;
        interrupted()?;
        self.api = Some(self.spawn_api(root, args)?);
        self.web = Some(self.spawn_web(root, args)?);
        self.ui.info("starting nginx");
        self.stack.run(
            "starting nginx",
            &["up", "--detach", "--no-deps", "--wait", "nginx"],
        )?;
        let (api, web) = (&mut self.api, &mut self.web);
        let every = Duration::from_millis(200);
        let what = "the API and the web dev server to answer";
        wait_for(what, Duration::from_secs(120), every, || {
            if answers(args.api_port, "/health") && answers(args.web_port, "/") {
                return Ok(Wait::Done(()));
            }
            interrupted()?;
            for p in [&mut *api, &mut *web].into_iter().flatten() {
                if let Some(status) = p.exited() {
                    bail!(
                        "{} exited at start-up ({status}); its output is above",
                        p.name()
                    );
                }
            }
            Ok(Wait::NotYet("one of them does not answer yet".into()))
        })
    }

    fn print_urls(&self, args: &Args) {
        let port = if args.port == 80 {
            String::new()
        } else {
            format!(":{}", args.port)
        };
        let _guard = self.out.lock();
        println!();
        println!("HitSave is running (Ctrl-C stops it):");
        println!(
            "  web  http://hitsave-local.io{port}/  (also http://www.hitsave-local.io{port}/)"
        );
        println!("  api  http://api.hitsave-local.io{port}/health");
        println!(
            "  db   postgres://hitsave@127.0.0.1:{}/hitsave (password in .secrets/postgres_password)",
            args.db_port
        );
        println!();
        let _ = std::io::stdout().flush();
    }

    /// Until Ctrl-C: rebuilds and restarts the API when its sources change; stops everything
    /// if the web dev server dies.
    fn watch(
        &mut self,
        root: &Utf8Path,
        args: &Args,
        tx: Sender<Msg>,
        rx: Receiver<Msg>,
    ) -> anyhow::Result<()> {
        use notify::{EventKind, RecursiveMode, Watcher};
        let watch_tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let msg = match res {
                // Reads (cargo opening the sources) change nothing.
                Ok(e) if matches!(e.kind, EventKind::Access(_)) => return,
                Ok(e) => Msg::Changed(
                    e.paths
                        .into_iter()
                        .filter_map(|p| Utf8PathBuf::from_path_buf(p).ok())
                        .collect(),
                ),
                Err(e) => Msg::WatchFailed(e.to_string()),
            };
            let _ = watch_tx.send(msg);
        })
        .context("cannot watch the API's sources")?;
        for dir in WATCHED {
            watcher
                .watch(root.join(dir).as_std_path(), RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {dir}/"))?;
        }
        drop(tx);
        let mut api_exit_reported = false;
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            match rx.recv_timeout(Duration::from_millis(300)) {
                Ok(Msg::Stop) => return Ok(()),
                Ok(Msg::Changed(paths)) => {
                    // One save is a burst of events (write, rename, chmod): wait until the
                    // files are quiet, then rebuild once for all of them.
                    let mut paths: Vec<_> =
                        paths.into_iter().filter(|p| is_source(root, p)).collect();
                    while let Ok(Msg::Changed(more)) = rx.recv_timeout(QUIET) {
                        paths.extend(more.into_iter().filter(|p| is_source(root, p)));
                    }
                    paths.sort();
                    paths.dedup();
                    if !paths.is_empty() && !self.stopping.load(Ordering::SeqCst) {
                        self.reload(root, args, &paths);
                        api_exit_reported = false;
                    }
                }
                Ok(Msg::WatchFailed(e)) => self.ui.info(&format!("watching sources: {e}")),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("the source watcher stopped"),
            }
            if let Some(web) = &mut self.web
                && let Some(status) = web.exited()
            {
                bail!("the web dev server exited ({status}); stopping everything");
            }
            if let Some(api) = &mut self.api
                && let Some(status) = api.exited()
                && !api_exit_reported
            {
                self.ui.info(&format!(
                    "api exited ({status}); it starts again at the next change under api/, db/ or migrations/"
                ));
                api_exit_reported = true;
            }
        }
    }

    /// A change under api/, db/ or migrations/: build, migrate when the schema may have
    /// changed, then swap the API process. A failed build or migration keeps the running API.
    fn reload(&mut self, root: &Utf8Path, args: &Args, paths: &[Utf8PathBuf]) {
        let shown: Vec<String> = paths
            .iter()
            .take(3)
            .map(|p| p.strip_prefix(root).unwrap_or(p).to_string())
            .collect();
        self.ui.info(&format!(
            "changed: {}; rebuilding the API",
            shown.join(", ")
        ));
        let started = Instant::now();
        if let Err(e) = build(self.ui, root) {
            self.ui.info(&format!(
                "{e:#}; the running API is unchanged: fix the error and save again"
            ));
            return;
        }
        let schema = paths.iter().any(|p| {
            let rel = p.strip_prefix(root).unwrap_or(p);
            rel.starts_with("migrations") || rel.starts_with("db")
        });
        if schema && let Err(e) = self.migrate(root, args) {
            self.ui.info(&format!(
                "{e:#}; the running API is unchanged: fix the migration and save again"
            ));
            return;
        }
        if let Some(mut old) = self.api.take() {
            old.stop();
        }
        match self.spawn_api(root, args) {
            Ok(api) => self.api = Some(api),
            Err(e) => {
                self.ui.info(&format!("{e:#}"));
                return;
            }
        }
        // Reported either way: the API's own output says why it does not answer.
        let _ = wait_until("the API", Duration::from_secs(30), || {
            Ok(answers(args.api_port, "/health"))
        });
        self.ui.info(&format!(
            "api restarted in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }

    fn migrate(&self, root: &Utf8Path, args: &Args) -> anyhow::Result<()> {
        let bin = xtask::checkout::target_dir(root).join("debug/migrate");
        let mut cmd = Command::new(bin.as_std_path());
        cmd.args(["run", "--wait", "60"]);
        db_env(&mut cmd, root, args);
        let mut p = spawn("migrate", &mut cmd, &self.out)?;
        let status = p.wait()?;
        if !status.success() {
            bail!(
                "migrations failed ({status}); their output is above (a password error after .secrets/ was made again: `cargo xtask dev --down --reset-db` starts the database afresh)"
            );
        }
        Ok(())
    }

    fn spawn_api(&self, root: &Utf8Path, args: &Args) -> anyhow::Result<Child> {
        let bin = xtask::checkout::target_dir(root).join("debug/hitsave");
        let secrets = root.join(".secrets");
        let mut cmd = Command::new(bin.as_std_path());
        db_env(&mut cmd, root, args);
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", args.api_port.to_string())
            .env("JWT_SECRET_FILE", secrets.join("jwt_secret"))
            .env("GH_CLIENT_SECRET_FILE", secrets.join("gh_client_secret"))
            .env("HITSAVE_RELEASE", "dev")
            // A restart after a change should not wait for idle connections.
            .env("SHUTDOWN_GRACE_SECS", "1");
        spawn("api", &mut cmd, &self.out)
    }

    fn spawn_web(&self, root: &Utf8Path, args: &Args) -> anyhow::Result<Child> {
        let web = root.join("web");
        let cli = web.join("node_modules/.bin/react-router");
        let mut cmd = Command::new("node");
        cmd.arg(cli.as_std_path())
            .args(["dev", "--host", "127.0.0.1", "--strictPort", "--port"])
            .arg(args.web_port.to_string())
            .current_dir(&web)
            .env("API_URL", format!("http://127.0.0.1:{}", args.api_port))
            .env("HITSAVE_RELEASE", "dev");
        spawn("web", &mut cmd, &self.out)
    }

    /// Stops the children (their whole process groups), then the containers.
    fn stop(&mut self) {
        let started: Vec<String> = [&self.web, &self.api]
            .into_iter()
            .flatten()
            .map(|p| p.name().to_owned())
            .collect();
        self.ui.info(&format!(
            "stopping {}the database and nginx",
            started.iter().map(|n| format!("{n}, ")).collect::<String>()
        ));
        for p in [self.web.take(), self.api.take()].into_iter().flatten() {
            let mut p = p;
            p.stop();
        }
        if let Err(e) = self.stack.run("stopping the containers", &["stop"]) {
            self.ui.info(&format!("{e:#}"));
        } else {
            self.ui.info(&format!(
                "stopped; `cargo xtask dev --down --project {}` removes the containers",
                self.stack.project
            ));
        }
    }
}

/// Where the API's sources are: a change there rebuilds and restarts it.
const WATCHED: &[&str] = &["api", "db", "migrations"];

/// Editor droppings (swap files, backups) change nothing that cargo builds.
fn is_source(root: &Utf8Path, path: &Utf8Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let name = rel.file_name().unwrap_or("");
    WATCHED.iter().any(|d| rel.starts_with(d))
        && !rel.components().any(|c| c.as_str() == "target")
        && !name.starts_with(".#")
        && !name.ends_with('~')
        && !name.ends_with(".swp")
        && !name.ends_with(".swx")
}

fn db_env(cmd: &mut Command, root: &Utf8Path, args: &Args) {
    cmd.env("POSTGRES_HOST", "127.0.0.1")
        .env("POSTGRES_PORT", args.db_port.to_string())
        .env(
            "POSTGRES_PASSWORD_FILE",
            root.join(".secrets/postgres_password"),
        );
}

/// The API and the migrator, in the dev profile (one cargo invocation for both).
fn build(ui: &Ui, root: &Utf8Path) -> anyhow::Result<()> {
    ui.info("building the API and the migrator (cargo build)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--package", "hitsave", "--package", "migrate"])
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("the build failed ({status})");
    }
    Ok(())
}

/// Anything (even an error page) from 127.0.0.1:port: the process is listening.
fn answers(port: u16, path: &str) -> bool {
    hitsave_host::kit::http::get(port, "127.0.0.1", path).is_some()
}

/// A child in its own process group whose output lines are printed with its name in front;
/// stopped with SIGTERM to the whole group (node's children too).
fn spawn(name: &str, cmd: &mut Command, out: &Arc<Mutex<()>>) -> anyhow::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stop = Stop {
        signal: Signal::SIGTERM,
        to_group: true,
        grace: STOP_GRACE,
    };
    let mut child = Child::spawn_group(name, cmd, stop)?;
    {
        let _guard = out.lock();
        println!("{name:>7} | started (pid {})", child.pid());
    }
    let (stdout, stderr) = child.take_output();
    prefix_lines(name, stdout.expect("piped"), out.clone());
    prefix_lines(name, stderr.expect("piped"), out.clone());
    Ok(child)
}

fn prefix_lines(name: &str, stream: impl Read + Send + 'static, out: Arc<Mutex<()>>) {
    let name = name.to_owned();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line);
            let _guard = out.lock();
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{name:>7} | {}", text.trim_end());
            let _ = stdout.flush();
            line.clear();
        }
    });
}

/// Prints the lines to add when the hosts file lacks them; the test uses `Host` headers, a
/// browser needs the names.
fn check_hosts(ui: &Ui, hosts_file: &Utf8Path) {
    let text = std::fs::read_to_string(hosts_file).unwrap_or_default();
    let missing = setup::missing_host_lines(&text);
    if missing.is_empty() {
        return;
    }
    ui.info(&format!(
        "{hosts_file} does not send {} to this machine; add these lines (or run `sudo cargo xtask dev --fix-hosts`):\n{}",
        HOSTS.join(", "),
        missing.join("\n")
    ));
}

fn fix_hosts(ui: &Ui, hosts_file: &Utf8Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(hosts_file).with_context(|| format!("cannot read {hosts_file}"))?;
    let missing = setup::missing_host_lines(&text);
    if missing.is_empty() {
        ui.info(&format!(
            "{hosts_file} already has the hitsave-local.io lines"
        ));
        return Ok(());
    }
    let mut addition = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        addition.push('\n');
    }
    addition.push_str("# cargo xtask dev\n");
    for line in &missing {
        addition.push_str(line);
        addition.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(hosts_file)
        .with_context(|| {
            format!("cannot write {hosts_file}: run `sudo cargo xtask dev --fix-hosts`")
        })?;
    file.write_all(addition.as_bytes())
        .with_context(|| format!("cannot write {hosts_file}"))?;
    ui.info(&format!("added to {hosts_file}:\n{}", missing.join("\n")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_trigger_a_rebuild() {
        let root = Utf8Path::new("/src/hitsave");
        for path in [
            "api/src/routes/health.rs",
            "db/src/lib.rs",
            "migrations/20261101000005_add.sql",
            "api/Cargo.toml",
        ] {
            assert!(is_source(root, &root.join(path)), "{path}");
        }
        for path in [
            "web/app/root.jsx",
            "api/src/.main.rs.swp",
            "api/src/main.rs~",
            "api/src/.#main.rs",
            "api/target/debug/x",
            "xtask/src/dev.rs",
        ] {
            assert!(!is_source(root, &root.join(path)), "{path}");
        }
    }

    #[test]
    fn fix_hosts_appends_once() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = Utf8Path::from_path(dir.path()).unwrap().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost hitsave-local.io").unwrap();
        let ui = Ui::new();
        fix_hosts(&ui, &hosts).unwrap();
        let once = std::fs::read_to_string(&hosts).unwrap();
        assert_eq!(
            once,
            "127.0.0.1 localhost hitsave-local.io\n# cargo xtask dev\n127.0.0.1 www.hitsave-local.io\n127.0.0.1 api.hitsave-local.io\n"
        );
        fix_hosts(&ui, &hosts).unwrap();
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), once);
        assert!(setup::missing_host_lines(&once).is_empty());
    }
}
