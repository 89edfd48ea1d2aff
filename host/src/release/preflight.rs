//! Checks before anything on the host changes: secrets, Docker and Compose, disk space, TLS
//! files, and whether each binary can run on the base image it will run on. Every problem is
//! reported at once, each with what to do.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::kit::elf::{self, GlibcVersion};
use anyhow::{Context, bail};
use camino::Utf8Path;
use hitsave_schema::Manifest;

use crate::site::host::Host;
use crate::site::stack::Stack;

/// The oldest Compose that understands the overlay's `!reset` and `!override`.
pub const MIN_COMPOSE: (u32, u32) = (2, 24);

/// Every problem found, each with its fix; empty when all is well. What the host answers
/// (Docker, Compose, its architecture, the configuration) is asked all at once; the base
/// image's glibc is remembered in `host` by image id, so it is asked once per base image.
pub fn check(
    host: &Host,
    stack: &Stack,
    manifest: &Manifest,
    tls_dir: Option<&Utf8Path>,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let (engine, compose, config) = std::thread::scope(|s| {
        let config = s.spawn(|| stack.config());
        let compose = s.spawn(compose_version);
        let panicked = || anyhow::anyhow!("a check's thread panicked");
        (
            engine(),
            compose.join().unwrap_or_else(|_| Err(panicked())),
            config.join().unwrap_or_else(|_| Err(panicked())),
        )
    });
    let engine = match engine.and_then(|e| compose.map(|_| e)) {
        Ok(engine) => engine,
        Err(e) => {
            problems.push(format!("{e:#}"));
            // Nothing below can be checked without Docker.
            return Ok(problems);
        }
    };
    problems.extend(secrets(&config?));
    if let Some(dir) = tls_dir {
        for file in ["fullchain.pem", "privkey.pem"] {
            let path = dir.join(file);
            if let Err(p) = secret_file(&path) {
                problems.push(format!("TLS: {p}"));
            }
        }
    }
    problems.extend(disk(&stack.release_dir, manifest));
    problems.extend(platform(host, stack, manifest, engine.machine())?);
    Ok(problems)
}

/// The database's directory on the data volume, made (0700) when the release puts the
/// database there. Refused when the database is in a Docker volume elsewhere already: compose
/// would ask to recreate that volume, which loses the database.
pub fn database_dir(env: &crate::site::release_env::ReleaseEnv) -> anyhow::Result<()> {
    let Some(dir) = env.db_dir().filter(|_| env.external_db().is_none()) else {
        return Ok(());
    };
    let volume = crate::site::stack::db_volume(env.project()?);
    if let Some((mountpoint, device)) = crate::site::stack::volume_place(&volume)?
        && device.as_deref() != Some(dir)
    {
        bail!(
            "the database is in the Docker volume {volume} ({}), and the host settings put it on the data volume, in {dir}: an install does not move a database. Back it up (`xtask backup`), then restore it on a host set up with the data volume; or take HITSAVE_DATA_DIR out of host.env. Nothing was changed",
            device.unwrap_or(mountpoint)
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {dir}"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {dir} private"))?;
    Ok(())
}

/// Docker answers and Compose is new enough.
pub fn docker_and_compose() -> anyhow::Result<String> {
    let server = engine()?;
    let compose = compose_version()?;
    Ok(format!(
        "Docker Engine {}, Compose {compose}",
        server.version
    ))
}

/// The engine's version and machine, or what to do when it does not answer.
fn engine() -> anyhow::Result<crate::kit::engine::Version> {
    crate::kit::engine::version().map_err(|e| {
        anyhow::anyhow!(
            "Docker Engine does not answer ({e:#}): start it (`systemctl start docker`) or install it (`apt-get install docker.io`)"
        )
    })
}

/// Compose's version, when it is new enough.
fn compose_version() -> anyhow::Result<String> {
    let compose = duct::cmd!("docker", "compose", "version", "--short")
        .stderr_null()
        .stdout_capture()
        .unchecked()
        .run()
        .context("docker is not installed: `apt-get install docker.io`")?;
    let version = String::from_utf8_lossy(&compose.stdout)
        .trim()
        .trim_start_matches('v')
        .to_owned();
    let parsed = parse_version(&version);
    if !compose.status.success() || parsed.is_none_or(|v| v < MIN_COMPOSE) {
        bail!(
            "Docker Compose v2 >= {}.{} is needed (found {}): install the docker-compose-plugin package, or Debian trixie's docker-compose into /usr/local/lib/docker/cli-plugins",
            MIN_COMPOSE.0,
            MIN_COMPOSE.1,
            if version.is_empty() { "none" } else { &version }
        );
    }
    Ok(version)
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Every secret the resolved compose configuration mounts.
fn secrets(config: &serde_json::Value) -> Vec<String> {
    let Some(secrets) = config.get("secrets").and_then(|s| s.as_object()) else {
        return Vec::new();
    };
    secrets
        .iter()
        .filter_map(|(name, spec)| {
            let file = spec.get("file").and_then(|f| f.as_str())?;
            // A rotation's previous value: empty unless a grace period runs; an external
            // database's CA bundle is public (mounted as a secret only to reach the apps).
            let check: fn(&Utf8Path) -> Result<(), String> = if name == "db_ca" {
                ca_bundle
            } else if name.ends_with("_previous") {
                |path| private_file(path, Some(crate::site::secret_files::APP_UID))
            } else {
                secret_file
            };
            check(Utf8Path::new(file))
                .err()
                .map(|p| format!("secret {name}: {p}"))
        })
        .collect()
}

/// A CA bundle file: readable, with at least one PEM certificate.
fn ca_bundle(path: &Utf8Path) -> Result<(), String> {
    match std::fs::read_to_string(path) {
        Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Ok(()),
        Ok(_) => Err(format!("{path} holds no PEM certificate")),
        Err(e) => Err(format!("cannot read the CA bundle {path}: {e}")),
    }
}

/// A secret file exists, is a non-empty regular file, owned by us and private.
pub fn secret_file(path: &Utf8Path) -> Result<(), String> {
    private_file(path, Some(crate::site::secret_files::APP_UID))?;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(format!("{path} is empty: write the secret's value into it"));
    }
    Ok(())
}

/// A file exists, is a regular file, owned by us (or by `also`) and private (it may be empty).
pub fn private_file(path: &Utf8Path, also: Option<u32>) -> Result<(), String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{path} is missing: create it with the value, owned by root, mode 0600 (`install -m 0600 /dev/stdin {path}`)"
            ));
        }
        Err(e) => return Err(format!("cannot read {path}: {e}")),
    };
    if !meta.is_file() {
        return Err(format!("{path} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{path} is readable by others (mode {mode:04o}): `chmod 600 {path}`"
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && Some(meta.uid()) != also {
        return Err(format!(
            "{path} is owned by uid {}, not by the installing user (uid {me}): `chown {me} {path}`",
            meta.uid()
        ));
    }
    Ok(())
}

/// Bytes an unprivileged writer can still use on the filesystem holding `path`.
pub fn free_bytes(path: &Utf8Path) -> nix::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path.as_std_path())?;
    Ok(stat.blocks_available() * stat.fragment_size())
}

/// What stays free on the host's disk, where the database lives, whatever an install writes.
const MARGIN: u64 = 1024 * 1024 * 1024;

/// Before anything is downloaded: room for the tarballs not yet cached and for what the
/// manifest declares they unpack to (the unpack refuses to write more), plus the margin.
pub fn room_to_unpack(host: &Host, manifest: &Manifest) -> anyhow::Result<()> {
    let download: u64 = manifest
        .artifacts
        .iter()
        .filter(|a| !host.cache_file(&a.sha256).is_file())
        .map(|a| a.size)
        .sum();
    let unpacked = if host.has_release(&manifest.release) {
        0
    } else {
        manifest.unpacked_bytes()
    };
    let needed = download + unpacked + MARGIN;
    let free = free_bytes(&host.root)
        .with_context(|| format!("cannot tell the free space under {}", host.root))?;
    if free < needed {
        bail!(
            "only {} free under {}; release {} needs {} ({} to download, {} unpacked, {} kept free for the database): nothing was downloaded or changed. `{}` shows disk use; old releases go with the next successful install",
            crate::kit::ui::human_bytes(free),
            host.root,
            manifest.release,
            crate::kit::ui::human_bytes(needed),
            crate::kit::ui::human_bytes(download),
            crate::kit::ui::human_bytes(unpacked),
            crate::kit::ui::human_bytes(MARGIN),
            crate::site::host::command("status", &host.root)
        );
    }
    Ok(())
}

/// Room for the release's images, which copy its unpacked trees once more, with the margin.
fn disk(dir: &Utf8Path, manifest: &Manifest) -> Vec<String> {
    let Ok(free) = free_bytes(dir) else {
        return vec![format!("cannot tell the free space under {dir}")];
    };
    let needed = manifest.unpacked_bytes() + MARGIN;
    if free < needed {
        return vec![format!(
            "only {} free under {dir}; an install needs about {}: `{}` shows disk use; old releases go with the next successful install (keeps 5)",
            crate::kit::ui::human_bytes(free),
            crate::kit::ui::human_bytes(needed),
            crate::site::host::command("status", dir.ancestors().nth(2).unwrap_or(dir))
        )];
    }
    Vec::new()
}

/// Each Rust binary's target triple matches the engine's architecture `arch` and the glibc it
/// needs is not newer than the one in its base image.
fn platform(
    host: &Host,
    stack: &Stack,
    manifest: &Manifest,
    arch: &str,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let base = stack.env.runtime_base()?;
    let mut base_glibc: Option<GlibcVersion> = None;
    for (component, binary) in [("api", "hitsave"), ("migrate", "migrate")] {
        let Some(a) = manifest.artifact(component) else {
            problems.push(format!(
                "release {} has no {component} artifact",
                manifest.release
            ));
            continue;
        };
        let triple_arch = a.target.split('-').next().unwrap_or("");
        if !a.target.contains("-linux-gnu") || triple_arch != arch {
            problems.push(format!(
                "{component} is built for {}, but this Docker Engine runs {arch}-linux: release it for this host's platform",
                a.target
            ));
            continue;
        }
        let path = stack.release_dir.join(component).join("bin").join(binary);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
        let needs = elf::glibc_needs(&bytes).with_context(|| format!("cannot read {path}"))?;
        let Some(needed) = elf::newest(&needs) else {
            continue;
        };
        let have = match base_glibc {
            Some(v) => v,
            None => {
                let v = known_glibc(host, base)?;
                base_glibc = Some(v);
                v
            }
        };
        if needed > have {
            problems.push(format!(
                "{component} needs glibc {needed} ({}), but the runtime base {base} has {have}: use a newer base (HITSAVE_RUNTIME_BASE) or release from the release environment (Debian 12)",
                elf::describe_all(&elf::newer_than(&needs, have))
            ));
        }
    }
    Ok(problems)
}

/// Where the glibc of each base image seen is remembered, by image id (an image's content
/// never changes under its id).
const GLIBC_FILE: &str = "base-glibc.json";

/// The glibc in `image`: remembered by its id, else asked of a container and remembered.
fn known_glibc(host: &Host, image: &str) -> anyhow::Result<GlibcVersion> {
    let id = crate::kit::engine::image_id(image)
        .ok()
        .flatten()
        .unwrap_or_default();
    let file = host.root.join(GLIBC_FILE);
    let mut known: std::collections::BTreeMap<String, String> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(v) = known.get(&id).and_then(|v| GlibcVersion::parse(v)) {
        return Ok(v);
    }
    let version = image_glibc(image)?;
    if !id.is_empty() {
        known.insert(id, version.to_string());
        // Only a cache: the next install asks the image again when it cannot be written.
        let _ = crate::kit::files::replace_private(&file, &serde_json::to_vec(&known)?);
    }
    Ok(version)
}

/// The glibc version inside an image (`getconf GNU_LIBC_VERSION`, from libc-bin).
fn image_glibc(image: &str) -> anyhow::Result<GlibcVersion> {
    let out = duct::cmd!(
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "getconf",
        image,
        "GNU_LIBC_VERSION"
    )
    .stderr_capture()
    .stdout_capture()
    .unchecked()
    .run()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("glibc ")
        .and_then(GlibcVersion::parse)
        .with_context(|| {
            format!(
                "cannot tell the glibc version of {image}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_versions() {
        assert_eq!(parse_version("2.26.1-4"), Some((2, 26)));
    }
}
