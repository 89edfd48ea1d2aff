//! Test certificates from the openssl command: a CA, and leaf certificates it signs for the
//! names a test server answers to (rustls takes no self-signed leaf as a root, so servers the
//! tests verify get a CA of their own). Two days of validity; keys without a passphrase.

use std::process::Command;

use anyhow::{Context, ensure};
use camino::{Utf8Path, Utf8PathBuf};

/// `dir/ca.key` and `dir/ca.crt`, a CA named `subject` (`/CN=...`); returns the certificate.
pub(crate) fn ca(dir: &Utf8Path, subject: &str) -> anyhow::Result<Utf8PathBuf> {
    std::fs::create_dir_all(dir)?;
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
            "-keyout", "ca.key", "-out", "ca.crt",
        ],
    )?;
    Ok(dir.join("ca.crt"))
}

/// `dir/<name>.key` and `dir/<name>.crt`, signed by the CA in `dir`, for the subject
/// alternative names `san` (`DNS:host,IP:127.0.0.1`).
pub(crate) fn signed(dir: &Utf8Path, name: &str, subject: &str, san: &str) -> anyhow::Result<()> {
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ],
    )?;
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    )
}

fn openssl(dir: &Utf8Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("openssl is needed for the test certificates")?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
