//! Secret files written by xtask (test database passwords, test API secrets): mode 0600 from
//! the moment they exist, never passed through arguments or the environment.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use camino::Utf8Path;

/// The secrets the stack mounts (`secrets:` in deploy/docker-compose.yml), one file each in the
/// secrets directory. doctor, dev and the tests use this list; the install's preflight asks
/// compose, and a unit test keeps the two the same.
pub const NAMES: &[&str] = &["postgres_password", "jwt_secret", "gh_client_secret"];

/// Writes `contents` to a new file readable by its owner only; fails if the file exists.
pub fn write_private(path: &Utf8Path, contents: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("cannot write the secret file {path}"))
}

/// `bytes` random bytes from the operating system, as lowercase hex.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use yaml_rust2::{Yaml, YamlLoader};

    /// The list is the compose file's: a secret added there must be added here.
    #[test]
    fn names_are_the_ones_compose_mounts() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/docker-compose.yml");
        let docs = YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let Yaml::Hash(secrets) = &docs[0]["secrets"] else {
            panic!("{path} declares no secrets");
        };
        let mut declared: Vec<&str> = secrets.keys().filter_map(Yaml::as_str).collect();
        declared.sort_unstable();
        let mut ours = super::NAMES.to_vec();
        ours.sort_unstable();
        assert_eq!(declared, ours);
    }
}
