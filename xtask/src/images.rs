//! Docker on a machine that has none running (CI, a fresh Debian box): Docker Engine from
//! Debian's packages, Compose v2 from Debian trixie (bookworm has none new enough), and the
//! base images built from Debian's packages when no registry is reachable (`cargo xtask
//! images`). See "How this machine runs the real parts" in the design notes.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::child::Child;
use crate::tools;
use hitsave_host::kit::process::wait_until;
use hitsave_host::release::preflight;
use hitsave_host::site::stack::image_exists;

#[derive(clap::Args)]
pub struct Args {
    /// Build them again even if they exist.
    #[arg(long)]
    rebuild: bool,
}

/// `cargo xtask images`: the local base images (hitsave-base/*) that `install
/// --local-base-images` builds on.
pub fn run(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    preflight::docker_and_compose()?;
    base_images(root, args.rebuild)
}

fn engine_answers() -> bool {
    duct::cmd!("docker", "version", "--format", "{{.Server.Version}}")
        .stdout_null()
        .stderr_null()
        .run()
        .is_ok()
}

/// Starts Docker Engine if none answers; the returned daemon is stopped (by pid) when it is
/// dropped. `None` when one was already running.
pub fn ensure_engine() -> anyhow::Result<Option<Child>> {
    if engine_answers() {
        return Ok(None);
    }
    if tools::which("dockerd").is_none() {
        tools::apt_install(&["docker.io"], "Docker Engine")?;
        if engine_answers() {
            return Ok(None);
        }
    }
    if !tools::is_root() {
        bail!("Docker Engine is not running: start it (`sudo systemctl start docker`)");
    }
    let logs = tools::cache_dir().join("dockerd");
    std::fs::create_dir_all(&logs)?;
    eprintln!("xtask: starting dockerd (log in {logs}/dockerd.log)");
    let mut daemon = Child::spawn_logged(
        "dockerd",
        Command::new("dockerd")
            // Without docker-proxy, traffic to ports published on 127.0.0.1 takes the kernel's
            // NAT path, the one outside clients take on a host (deploy/aws/user-data.sh sets
            // the same), so the tests and `bench deploy` measure what production serves with.
            .args([
                "--host",
                "unix:///var/run/docker.sock",
                "--userland-proxy=false",
            ])
            // Credentials for the containers' awslogs driver, which runs in the engine: the
            // tests' CloudWatch Logs is an emulator on 127.0.0.1 that takes any.
            .env("AWS_ACCESS_KEY_ID", "hitsave-tests")
            .env("AWS_SECRET_ACCESS_KEY", "hitsave-tests"),
        logs.join("dockerd.log"),
    )?;
    wait_until("dockerd", Duration::from_secs(60), || {
        daemon.check_running()?;
        Ok(engine_answers())
    })?;
    Ok(Some(daemon))
}

/// Makes `docker compose` a Compose v2 >= 2.24.
pub fn ensure_compose() -> anyhow::Result<()> {
    if preflight::docker_and_compose().is_ok() {
        return Ok(());
    }
    let cached = tools::cache_dir().join("tools/docker-compose-trixie/docker-compose");
    if !cached.is_file() {
        download_compose(&cached)?;
    }
    let plugins = Utf8Path::new("/usr/local/lib/docker/cli-plugins");
    if !tools::is_root() {
        bail!("Compose v2 is missing: `sudo install -D {cached} {plugins}/docker-compose`");
    }
    std::fs::create_dir_all(plugins)?;
    std::fs::copy(&cached, plugins.join("docker-compose"))?;
    preflight::docker_and_compose().map(drop)
}

/// `apt-get download docker-compose` from trixie with a private apt state, so the machine's
/// own sources and package lists stay as they are.
fn download_compose(dest: &Utf8Path) -> anyhow::Result<()> {
    eprintln!("xtask: fetching Compose v2 from Debian trixie");
    let work = tools::cache_dir().join("tools/apt-trixie");
    let _ = std::fs::remove_dir_all(&work);
    for dir in ["lists/partial", "archives/partial", "sources.d"] {
        std::fs::create_dir_all(work.join(dir))?;
    }
    std::fs::write(
        work.join("sources.d/trixie.sources"),
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )?;
    let opts = &[
        "-o".to_owned(),
        "Dir::Etc::sourcelist=/dev/null".to_owned(),
        "-o".to_owned(),
        format!("Dir::Etc::sourceparts={work}/sources.d"),
        "-o".to_owned(),
        format!("Dir::State::Lists={work}/lists"),
        "-o".to_owned(),
        format!("Dir::Cache::Archives={work}/archives"),
        "-o".to_owned(),
        "APT::Sandbox::User=root".to_owned(),
    ];
    let apt = |args: &[&str]| {
        duct::cmd(
            "apt-get",
            opts.iter()
                .map(String::as_str)
                .chain(["-qq"])
                .chain(args.iter().copied()),
        )
        .dir(&work)
    };
    apt(&["update"])
        .run()
        .context("apt-get update (trixie) failed")?;
    apt(&["download", "docker-compose"])
        .run()
        .context("apt-get download docker-compose (trixie) failed")?;
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    duct::cmd!("dpkg-deb", "-x", deb, work.join("x")).run()?;
    std::fs::create_dir_all(dest.parent().expect("has a parent"))?;
    std::fs::copy(
        work.join("x/usr/libexec/docker/cli-plugins/docker-compose"),
        dest,
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The label a base image carries: the SHA-256 of the files it was built from.
const INPUTS_LABEL: &str = "io.hitsave.base-image-inputs";

/// SHA-256 over every file of deploy/base-images (names and bytes, sorted).
fn context_hash(context: &Utf8Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut files: Vec<Utf8PathBuf> = context
        .read_dir_utf8()
        .with_context(|| format!("cannot read {context}"))?
        .filter_map(Result::ok)
        .map(|e| e.path().to_owned())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut hash = sha2::Sha256::new();
    for file in files {
        hash.update(file.file_name().unwrap_or_default().as_bytes());
        hash.update(std::fs::read(&file)?);
    }
    Ok(hitsave_schema::hex(&hash.finalize()))
}

/// The inputs label of a local image, if it has one.
fn image_inputs(tag: &str) -> Option<String> {
    duct::cmd!(
        "docker",
        "image",
        "inspect",
        "--format",
        format!("{{{{index .Config.Labels \"{INPUTS_LABEL}\"}}}}"),
        tag
    )
    .stderr_null()
    .read()
    .ok()
    .map(|s| s.trim().to_owned())
}

/// What the tests and `bench deploy` need to run stacks: Docker Engine (started here when none
/// runs; stopped when the returned guard drops), Compose v2 and the base images.
pub fn ready_for_stacks(root: &Utf8Path) -> anyhow::Result<Option<Child>> {
    let dockerd = ensure_engine()?;
    ensure_compose()?;
    base_images(root, false)?;
    Ok(dockerd)
}

/// hitsave-base/debian:{bookworm,trixie} from debootstrap, then the images in
/// deploy/base-images on top. Each is skipped when its tag exists.
pub fn base_images(root: &Utf8Path, rebuild: bool) -> anyhow::Result<()> {
    for suite in ["bookworm", "trixie"] {
        let tag = format!("hitsave-base/debian:{suite}");
        if image_exists(&tag) && !rebuild {
            continue;
        }
        tools::require("debootstrap", "debootstrap")?;
        let dir: Utf8PathBuf = tools::cache_dir().join(format!("rootfs-{suite}"));
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("xtask: debootstrap --variant=minbase {suite} (about 30 s)");
        duct::cmd!(
            "debootstrap",
            "--variant=minbase",
            suite,
            &dir,
            "http://deb.debian.org/debian"
        )
        .stdout_null()
        .run()
        .with_context(|| format!("debootstrap {suite} failed"))?;
        let tar = duct::cmd!("tar", "-C", &dir, "-c", ".");
        tar.pipe(duct::cmd!("docker", "import", "-", &tag))
            .stdout_null()
            .run()
            .with_context(|| format!("docker import {tag} failed"))?;
        std::fs::remove_dir_all(&dir)?;
    }
    let context = root.join("deploy/base-images");
    // An image made from other files than these is made again: a changed entrypoint must not
    // hide behind an old tag.
    let inputs = context_hash(&context)?;
    for (file, tag) in [
        ("postgres.Dockerfile", "hitsave-base/postgres:15"),
        ("nginx.Dockerfile", "hitsave-base/nginx:bookworm"),
        ("node.Dockerfile", "hitsave-base/node:20"),
    ] {
        if image_exists(tag) && !rebuild && image_inputs(tag).as_deref() == Some(inputs.as_str()) {
            continue;
        }
        eprintln!("xtask: building {tag}");
        duct::cmd!(
            "docker",
            "build",
            "--quiet",
            "--label",
            format!("{INPUTS_LABEL}={inputs}"),
            "--file",
            context.join(file),
            "--tag",
            tag,
            &context
        )
        .env("DOCKER_BUILDKIT", "0")
        .stdout_null()
        .run()
        .with_context(|| format!("building {tag} failed"))?;
    }
    Ok(())
}
