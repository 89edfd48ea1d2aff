//! Secret files written by xtask (test database passwords, test API secrets): mode 0600 from
//! the moment they exist, never passed through arguments or the environment.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use camino::Utf8Path;

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
