//! The stack's secrets on a host: one 0600 file each in `<root>/secrets/` (a root-only 0700
//! directory), owned by the uid the apps run as (`APP_UID`), mounted by compose at
//! /run/secrets and never passed through arguments, the environment, images or logs.
//! `xtask secrets` (the `secrets` feature) changes them; a rotation keeps the value it
//! replaces as `<name>.previous` for a grace period (`rotations.rs`).

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};

use crate::kit::files::write_private;
use crate::site::rotations::Rotations;

/// The secrets the stack mounts (`secrets:` in deploy/docker-compose.yml), one file each in the
/// secrets directory. doctor, dev and the tests use this list; the install's preflight asks
/// compose, and a unit test keeps the two the same.
pub const NAMES: &[&str] = &["postgres_password", "jwt_secret", "gh_client_secret"];

/// The secrets whose previous value the apps are given during a rotation's grace period
/// (compose's `<name>_previous`, the file `<name>.previous`, empty when no rotation runs): the
/// API accepts session tokens signed with the previous JWT secret, and logs in with the
/// previous database password until the role's password changes.
pub const WITH_PREVIOUS: &[&str] = &["postgres_password", "jwt_secret"];

/// The uid (and gid) api, migrate and web run as, and that owns the secret files they mount:
/// unprivileged, and the uid of PostgreSQL's own user in the official image, whose entrypoint
/// reads the database password again after it drops root. Compose bind-mounts a secret file
/// as it is on the host (it cannot change its owner), so the file's owner is what decides who
/// in a container may read it; no other uid can.
pub const APP_UID: u32 = 999;

/// Gives every secret file the containers mount (the values and the previous values) to
/// `APP_UID`, mode unchanged (0600 or 0400). Only root can; elsewhere (a laptop, whose own
/// uid runs the containers' files) it does nothing.
pub fn hand_over(dir: &Utf8Path) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let files = NAMES
        .iter()
        .map(|name| dir.join(name))
        .chain(WITH_PREVIOUS.iter().map(|name| previous_file(dir, name)));
    for path in files {
        match std::os::unix::fs::chown(&path, Some(APP_UID), Some(APP_UID)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot give {path} to uid {APP_UID}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The file that keeps `name`'s value from before its last rotation, until its grace ends.
pub fn previous_file(dir: &Utf8Path, name: &str) -> Utf8PathBuf {
    dir.join(format!("{name}.previous"))
}

/// Removes what a killed command left in the secrets directory: half-written values
/// (`.new-*`) and psql passfiles (`.pgpass-*`). Run under the install lock.
pub fn remove_leftovers(dir: &Utf8Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {dir}"))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".new-") || name.starts_with(".pgpass-") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {dir}/{name}"))?;
        }
    }
    Ok(())
}

/// Makes the empty `<name>.previous` files compose mounts, where missing (hosts set up before
/// rotations existed, and fresh ones): an empty file means no rotation is running.
pub fn ensure_previous_files(dir: &Utf8Path) -> anyhow::Result<()> {
    for name in WITH_PREVIOUS {
        let path = previous_file(dir, name);
        if !path.exists() {
            write_private(&path, "")?;
        }
    }
    Ok(())
}

/// Rotations that were interrupted before their new value was applied (doctor names them).
pub fn unfinished_rotations(dir: &Utf8Path) -> anyhow::Result<Vec<String>> {
    Ok(Rotations::read(dir)?
        .0
        .into_iter()
        .filter(|(_, r)| !r.applied)
        .map(|(name, _)| name)
        .collect())
}

/// What compose interpolates from the rotations: the end of the JWT secret's grace period,
/// which the API enforces itself (JWT_SECRET_PREVIOUS_UNTIL). Kept after it passes, so that
/// the API's configuration changes only when a rotation does.
pub fn compose_env(secrets_dir: &Utf8Path) -> Vec<(String, String)> {
    let until = Rotations::read(secrets_dir)
        .ok()
        .and_then(|r| r.0.get("jwt_secret").map(|r| r.grace_until))
        .unwrap_or(0);
    vec![(
        "HITSAVE_JWT_SECRET_PREVIOUS_UNTIL".into(),
        until.to_string(),
    )]
}

#[cfg(test)]
mod tests {
    use yaml_rust2::{Yaml, YamlLoader};

    /// The lists are the compose file's: a secret added there must be added here.
    #[test]
    fn names_are_the_ones_compose_mounts() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/docker-compose.yml");
        let docs = YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let Yaml::Hash(secrets) = &docs[0]["secrets"] else {
            panic!("{path} declares no secrets");
        };
        let mut declared: Vec<String> = secrets
            .iter()
            .map(|(k, v)| {
                let name = k.as_str().unwrap();
                let file = v["file"].as_str().unwrap();
                let expected = match name.strip_suffix("_previous") {
                    Some(base) => format!("/{base}.previous"),
                    None => format!("/{name}"),
                };
                assert!(file.ends_with(&expected), "{name}: {file}");
                name.to_owned()
            })
            .collect();
        declared.sort_unstable();
        let mut ours: Vec<String> = super::NAMES.iter().map(|n| n.to_string()).collect();
        ours.extend(super::WITH_PREVIOUS.iter().map(|n| format!("{n}_previous")));
        ours.sort_unstable();
        assert_eq!(declared, ours);
    }

    #[test]
    fn a_replaced_file_is_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dir = camino::Utf8Path::from_path(dir.path()).unwrap();
        let path = dir.join("jwt_secret");
        crate::kit::files::write_private(&path, "old").unwrap();
        crate::kit::files::replace_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        super::ensure_previous_files(dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("jwt_secret.previous")).unwrap(),
            ""
        );
        // What a killed command leaves goes; the secrets stay.
        for leftover in [".new-abc", ".pgpass-def"] {
            crate::kit::files::write_private(&dir.join(leftover), "value").unwrap();
        }
        super::remove_leftovers(dir).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "jwt_secret",
                "jwt_secret.previous",
                "postgres_password.previous"
            ]
        );
    }
}
