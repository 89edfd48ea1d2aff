//! Release signing: minisign key pairs (`cargo xtask keygen`) and signatures over the exact
//! bytes of each manifest and pointer, which the host checks with its trusted public keys
//! (`hitsave_host::trust`) and the stock `minisign -V` verifies too.
//!
//! The secret key is read from a file (`--signing-key FILE`, or HITSAVE_SIGNING_KEY naming
//! the file), never from an environment variable's value; it is unencrypted, so CI can sign
//! without a prompt, and must be private to its owner. Nothing here prints it.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
pub use hitsave_host::release::trust::KeyId;

/// A secret key ready to sign, with the id of its public key.
pub struct SigningKey {
    secret: minisign::SecretKey,
    /// minisign's key id, the one `xtask doctor` and errors on hosts print.
    pub id: KeyId,
}

impl SigningKey {
    /// Reads an unencrypted minisign secret key; refuses one that others can read.
    pub fn read(path: &Utf8Path) -> anyhow::Result<SigningKey> {
        let meta = std::fs::metadata(path).with_context(|| {
            format!("cannot read the signing key {path}: make a pair with `cargo xtask keygen`")
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "the signing key {path} is readable by others (mode {mode:04o}): `chmod 600 {path}`"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the signing key {path}"))?;
        let secret = minisign::SecretKeyBox::from_string(&text)
            .and_then(|b| b.into_unencrypted_secret_key())
            .map_err(|_| {
                anyhow::anyhow!(
                    "{path} is not an unencrypted minisign secret key (a password-protected key cannot sign in CI): make one with `cargo xtask keygen`"
                )
            })?;
        let public = minisign::PublicKey::from_secret_key(&secret)
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        Ok(SigningKey {
            secret,
            id: key_id(public.keynum())?,
        })
    }

    /// The `.minisig` file for `bytes`, whose trusted comment is `comment`.
    pub fn sign(&self, bytes: &[u8], comment: &str) -> anyhow::Result<Vec<u8>> {
        let untrusted = format!("signature from hitsave release key {}", self.id);
        let signature = minisign::sign(None, &self.secret, bytes, Some(comment), Some(&untrusted))
            .map_err(|e| anyhow::anyhow!("signing failed: {e}"))?;
        Ok(signature.into_string().into_bytes())
    }
}

fn key_id(keynum: &[u8]) -> anyhow::Result<KeyId> {
    KeyId::from_keynum(keynum).context("a minisign key number is 8 bytes")
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where the secret key goes (mode 0600); the public key is written beside it as FILE.pub.
    #[arg(long, value_name = "FILE", default_value = "hitsave-release.key")]
    out: Utf8PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
}

/// `cargo xtask keygen`: a new key pair; prints where each half goes.
pub fn run_keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let public = Utf8PathBuf::from(format!("{}.pub", args.out));
    let id = keygen(&args.out, &public, args.force)?;
    eprintln!(
        "xtask: made release key {id}:\n  secret: {} (mode 0600; keep it in the GitHub secret HITSAVE_SIGNING_KEY, never in the repository)\n  public: {public} (commit it to deploy/keys/, which CI's release and `cargo xtask deploy` trust, and copy it to /etc/hitsave/keys/ on every host; docs/aws-setup.md, \"Signing keys\")",
        args.out
    );
    Ok(())
}

/// Writes a new unencrypted key pair; returns its id. The secret file is created 0600 and
/// never replaced unless `force`.
pub fn keygen(secret: &Utf8Path, public: &Utf8Path, force: bool) -> anyhow::Result<KeyId> {
    for path in [secret, public] {
        if path.exists() && !force {
            bail!("{path} exists: pass --force to replace it, or choose another --out");
        }
    }
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| anyhow::anyhow!("cannot make a key pair: {e}"))?;
    let id = key_id(pair.pk.keynum())?;
    let secret_text = pair
        .sk
        .to_box(Some(&format!("hitsave release secret key {id}")))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_string();
    let public_text = pair
        .pk
        .to_box()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_string();
    let _ = std::fs::remove_file(secret);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secret)
        .with_context(|| format!("cannot create {secret}"))?;
    file.write_all(secret_text.as_bytes())?;
    file.sync_all()?;
    std::fs::write(public, public_text).with_context(|| format!("cannot write {public}"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitsave_host::release::trust::{Keys, Signed};

    #[test]
    fn keygen_sign_and_the_host_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let keys = dir.join("keys");
        std::fs::create_dir(&keys).unwrap();
        let secret = dir.join("release.key");
        let id = keygen(&secret, &keys.join("release.pub"), false).unwrap();
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = keygen(&secret, &keys.join("release.pub"), false).unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        let key = SigningKey::read(&secret).unwrap();
        assert_eq!(key.id, id);
        let signature = key.sign(b"bytes\n", "hitsave release=x").unwrap();
        let verified = Keys::load(&keys)
            .unwrap()
            .verify(&Signed {
                what: "a test document",
                bytes: b"bytes\n",
                signature: Some(&signature),
                comment: "hitsave release=x",
            })
            .unwrap();
        assert_eq!(verified, id);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::read(&secret).err().unwrap().to_string();
        assert!(err.contains("readable by others"), "{err}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&secret, "not a key").unwrap();
        let err = SigningKey::read(&secret).err().unwrap().to_string();
        assert!(
            err.contains("not an unencrypted minisign secret key"),
            "{err}"
        );
        assert!(
            !err.contains("not a key"),
            "the error shows the file's contents"
        );
    }
}
