//! SHA-256 computed while bytes pass, the one way the host program checks what it writes
//! (downloads, backups) and what it finds on disk (cached artifacts, backups to restore).

use std::io::Write;

use hitsave_schema::Sha256;
use sha2::Digest;

/// Writes through to `inner`, hashing and counting what passes.
pub struct Hashing<W> {
    pub inner: W,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> Sha256 {
        Sha256::from_bytes(self.hasher.clone().finalize().into())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The size and SHA-256 of a file, read once.
pub fn of_file(path: &camino::Utf8Path) -> std::io::Result<(u64, Sha256)> {
    let mut out = Hashing::new(std::io::sink());
    std::io::copy(&mut std::fs::File::open(path)?, &mut out)?;
    Ok((out.bytes(), out.digest()))
}
