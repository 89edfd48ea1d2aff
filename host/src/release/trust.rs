//! Which releases this host runs: those whose manifest (and the pointer that led to it) carry
//! a minisign signature by a key in the key directory (`/etc/hitsave/keys/*.pub`), not by one
//! in its `revoked/` folder. Checked before any artifact is downloaded; see
//! `hitsave_schema::signed` for what is signed.
//!
//! Several keys may be trusted at once (rotation: add the new key, release with it, revoke the
//! old one). A revoked key stays known, so its releases are refused as revoked rather than as
//! unknown.

use anyhow::{Context, bail};
use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use minisign_verify::{PublicKey, Signature};

/// Where the trusted keys are, and whether unsigned releases are accepted.
#[derive(Debug, Clone)]
pub struct TrustOptions {
    /// The trusted public keys: minisign .pub files; revoked ones in its revoked/ folder.
    pub keys: Utf8PathBuf,
    /// Accept a release published with `cargo xtask release --unsigned` (from a local store
    /// only; history.jsonl says so).
    pub allow_unsigned: bool,
}

/// A minisign key id: eight bytes that minisign reads as a little-endian integer. Compared
/// as that number and printed as minisign prints it, in upper-case hex without leading zeros
/// (`21957CFB387B5C6`, never `021957CFB387B5C6`), so ids from the tool and from us agree.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct KeyId(u64);

impl KeyId {
    /// The id of minisign's 8-byte key number.
    pub fn from_keynum(keynum: &[u8]) -> Option<KeyId> {
        Some(KeyId(u64::from_le_bytes(keynum.try_into().ok()?)))
    }

    /// An id as minisign or we print it, with or without leading zeros.
    pub fn parse(hex: &str) -> Option<KeyId> {
        let hex = hex.trim();
        (!hex.is_empty() && hex.len() <= 16)
            .then(|| u64::from_str_radix(hex, 16).ok().map(KeyId))
            .flatten()
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}", self.0)
    }
}

struct Key {
    id: KeyId,
    key: PublicKey,
    file: Utf8PathBuf,
}

/// The keys of one key directory.
pub struct Keys {
    dir: Utf8PathBuf,
    trusted: Vec<Key>,
    revoked: Vec<Key>,
}

/// What a command accepts: documents signed by a trusted key, and with `--allow-unsigned`
/// (local stores only) documents without a signature.
pub struct Trust {
    /// `None` only with `--allow-unsigned` and no key directory.
    keys: Option<Keys>,
    allow_unsigned: bool,
}

impl Trust {
    /// The policy `args` asks for; `local_store` says whether the documents come from a
    /// directory (the only place unsigned releases may come from).
    pub fn new(args: &TrustOptions, local_store: bool) -> anyhow::Result<Trust> {
        if args.allow_unsigned && !local_store {
            bail!(
                "--allow-unsigned is for releases in a local store (a directory); a release in S3 must be signed"
            );
        }
        let keys = match Keys::load_owned(&args.keys) {
            Ok(keys) => Some(keys),
            Err(_) if args.allow_unsigned => None,
            Err(e) => return Err(e),
        };
        Ok(Trust {
            keys,
            allow_unsigned: args.allow_unsigned,
        })
    }

    /// Documents signed by one of `keys`, no others: for the tooling, which reads the
    /// repository's keys (the ownership checks of `Keys::load_owned` are for hosts).
    pub fn with_keys(keys: Keys) -> Trust {
        Trust {
            keys: Some(keys),
            allow_unsigned: false,
        }
    }

    /// Checks `doc`; `Ok(None)` when it is unsigned and that is allowed.
    pub fn check(&self, doc: &Signed) -> anyhow::Result<Option<KeyId>> {
        match (&self.keys, doc.signature) {
            (_, None) if self.allow_unsigned => Ok(None),
            (Some(keys), _) => keys.verify(doc).map(Some),
            (None, _) => Ok(None),
        }
    }
}

/// The bytes of a document and of its signature, as read from the store or the disk.
pub struct Signed<'a> {
    /// What to call it in messages: `the manifest of release X`, `channels/main.json`.
    pub what: &'a str,
    pub bytes: &'a [u8],
    /// The `.minisig` file; `None` when there is none.
    pub signature: Option<&'a [u8]>,
    /// What its trusted comment must say.
    pub comment: &'a str,
}

impl Keys {
    /// Reads every `*.pub` in `dir` and in `dir/revoked`; fails when none is trusted.
    pub fn load(dir: &Utf8Path) -> anyhow::Result<Keys> {
        let trusted = read_keys(dir)?;
        let revoked = read_keys(&dir.join("revoked"))?;
        let trusted: Vec<Key> = trusted
            .into_iter()
            .filter(|k| !revoked.iter().any(|r| r.id == k.id))
            .collect();
        if trusted.is_empty() {
            bail!(
                "no trusted release key in {dir}{}: write the release public key there (`install -m 0644 hitsave-release.pub {dir}/`; docs/aws-setup.md, \"Signing keys\")",
                if revoked.is_empty() {
                    String::new()
                } else {
                    format!(" (every key there is revoked: {})", list(&revoked))
                }
            );
        }
        Ok(Keys {
            dir: dir.to_owned(),
            trusted,
            revoked,
        })
    }

    /// `load`, on a host: the directory, its revoked/ and every file in them belong to root
    /// (to this user, when not root) and no one else may write them, since whoever can decides
    /// which releases run as root. Checked by every command that installs (and by doctor).
    pub fn load_owned(dir: &Utf8Path) -> anyhow::Result<Keys> {
        check_owned(dir)?;
        Keys::load(dir)
    }

    /// Whether `id` is one of the trusted keys.
    pub fn trusts(&self, id: KeyId) -> bool {
        self.trusted.iter().any(|k| k.id == id)
    }

    /// Where the keys were read from.
    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// `trusted: ID (file), ...; revoked: ...`, for doctor.
    pub fn describe(&self) -> String {
        format!(
            "trusted {}{}",
            list(&self.trusted),
            if self.revoked.is_empty() {
                String::new()
            } else {
                format!("; revoked {}", list(&self.revoked))
            }
        )
    }

    /// Checks `doc`'s signature; returns the id of the key that made it.
    pub fn verify(&self, doc: &Signed) -> anyhow::Result<KeyId> {
        let what = doc.what;
        let Some(signature) = doc.signature else {
            bail!(
                "{what} is not signed (no .minisig beside it): refused. Publish it with `cargo xtask release --signing-key FILE`"
            );
        };
        let text = std::str::from_utf8(signature)
            .ok()
            .and_then(|t| Signature::decode(t).ok().map(|s| (t, s)));
        let Some((text, sig)) = text else {
            bail!("the signature of {what} is not a minisign signature: refused");
        };
        let id = signature_key_id(text)
            .with_context(|| format!("the signature of {what} names no key"))?;
        if let Some(k) = self.revoked.iter().find(|k| k.id == id) {
            bail!(
                "{what} is signed by key {id}, which this host revoked ({}): refused. Install a release signed by a trusted key ({})",
                k.file,
                list(&self.trusted)
            );
        }
        let Some(key) = self.trusted.iter().find(|k| k.id == id) else {
            bail!(
                "{what} is signed by key {id}, which {} does not trust (it trusts {}): refused. If that key is yours, add its .pub file there",
                self.dir,
                list(&self.trusted)
            );
        };
        key.key.verify(doc.bytes, &sig, false).map_err(|e| {
            anyhow::anyhow!(
                "the signature of {what} by key {id} does not verify ({e}): the document was changed after it was signed, or the signature is another document's; refused"
            )
        })?;
        if sig.trusted_comment() != doc.comment {
            bail!(
                "the signature of {what} says {:?}, but the document says {:?}: refused",
                sig.trusted_comment(),
                doc.comment
            );
        }
        Ok(id)
    }
}

/// The key directory, its revoked/ folder and the files in them are owned by this user (root
/// on a host) and writable by no one else.
fn check_owned(dir: &Utf8Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let me = nix::unistd::geteuid().as_raw();
    let mut paths = vec![dir.to_owned()];
    for sub in [dir.to_owned(), dir.join("revoked")] {
        if let Ok(entries) = sub.read_dir_utf8() {
            paths.extend(entries.flatten().map(|e| e.path().to_owned()));
        }
    }
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 || meta.uid() != me {
            bail!(
                "{path} can be changed by others than uid {me} (owner {}, mode {mode:04o}): whoever can write there decides which releases run as root, so no release is trusted until `chown {me} {path} && chmod go-w {path}`; nothing was changed",
                meta.uid()
            );
        }
    }
    Ok(())
}

fn list(keys: &[Key]) -> String {
    if keys.is_empty() {
        return "none".into();
    }
    keys.iter()
        .map(|k| format!("{} ({})", k.id, k.file))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `*.pub` files directly in `dir` (none when it does not exist).
fn read_keys(dir: &Utf8Path) -> anyhow::Result<Vec<Key>> {
    let entries = match dir.read_dir_utf8() {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {dir}")),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry?.path().to_owned();
        if path.extension() != Some("pub") || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let key = PublicKey::decode(&text)
            .or_else(|_| PublicKey::from_base64(text.trim()))
            .map_err(|e| {
                anyhow::anyhow!("{path} is not a minisign public key ({e}): replace it")
            })?;
        let id = public_key_id(&text).with_context(|| format!("{path} has no key id"))?;
        keys.push(Key {
            id,
            key,
            file: path,
        });
    }
    keys.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(keys)
}

/// The key id in a public key file (its last line: base64 of "Ed", the id, the key).
fn public_key_id(text: &str) -> Option<KeyId> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    key_id_of(line.trim(), 42)
}

/// The key id in a signature file (its second line: base64 of the algorithm, the id, the
/// signature), without checking anything else.
pub fn signature_key_id(text: &str) -> Option<KeyId> {
    key_id_of(text.lines().nth(1)?.trim(), 74)
}

fn key_id_of(b64: &str, len: usize) -> Option<KeyId> {
    let bin = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    if bin.len() != len {
        return None;
    }
    KeyId::from_keynum(&bin[2..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair made the way `cargo xtask keygen` makes one: (public key file, secret key).
    fn pair() -> (String, minisign::SecretKey) {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        (kp.pk.to_box().unwrap().into_string(), kp.sk)
    }

    fn sign(sk: &minisign::SecretKey, bytes: &[u8], comment: &str) -> Vec<u8> {
        minisign::sign(None, sk, bytes, Some(comment), None)
            .unwrap()
            .into_string()
            .into_bytes()
    }

    #[test]
    fn key_ids_are_numbers_printed_as_minisign_prints_them() {
        // Debian's minisign drops leading zeros; older tools and ours once kept them.
        let id = KeyId::from_keynum(&[0xc6, 0xb5, 0x87, 0xb3, 0xcf, 0x57, 0x19, 0x02]).unwrap();
        assert_eq!(id.to_string(), "21957CFB387B5C6");
        assert_eq!(KeyId::parse("021957CFB387B5C6"), Some(id));
        assert_eq!(KeyId::parse("21957cfb387b5c6"), Some(id));
        assert_eq!(KeyId::parse(""), None);
        assert_eq!(KeyId::parse("0123456789ABCDEF0"), None);
        assert_eq!(KeyId::parse("xyz"), None);
    }

    #[test]
    fn a_key_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let (public, _) = pair();
        std::fs::write(dir.join("release.pub"), public).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            dir.join("release.pub"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        Keys::load_owned(dir).unwrap();
        std::fs::set_permissions(
            dir.join("release.pub"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let err = Keys::load_owned(dir).err().unwrap().to_string();
        assert!(
            err.contains("release.pub can be changed by others"),
            "{err}"
        );
        std::fs::set_permissions(
            dir.join("release.pub"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Keys::load_owned(dir).is_err());
    }

    #[test]
    fn trusted_unknown_revoked_tampered_and_moved_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let err = Keys::load(dir).err().unwrap().to_string();
        assert!(err.contains("no trusted release key"), "{err}");
        let (old_pub, old) = pair();
        let (new_pub, new) = pair();
        std::fs::write(dir.join("old.pub"), &old_pub).unwrap();
        let doc = b"{\"release\": \"a\"}\n";
        let by_old = sign(&old, doc, "hitsave release=a");
        let check = |keys: &Keys, bytes: &[u8], sig: Option<&[u8]>, comment: &str| {
            keys.verify(&Signed {
                what: "the manifest of release a",
                bytes,
                signature: sig,
                comment,
            })
            .map_err(|e| e.to_string())
        };
        let keys = Keys::load(dir).unwrap();
        let id = check(&keys, doc, Some(&by_old), "hitsave release=a").unwrap();
        assert!(
            old_pub.contains(&id.to_string()),
            "{id} is not minisign's id"
        );
        let err = check(
            &keys,
            b"{\"release\": \"b\"}\n",
            Some(&by_old),
            "hitsave release=a",
        );
        assert!(err.unwrap_err().contains("does not verify"));
        let err = check(&keys, doc, Some(&by_old), "hitsave release=b").unwrap_err();
        assert!(err.contains("but the document says"), "{err}");
        let err = check(&keys, doc, None, "hitsave release=a").unwrap_err();
        assert!(err.contains("is not signed"), "{err}");
        let err = check(&keys, doc, Some(b"garbage"), "hitsave release=a").unwrap_err();
        assert!(err.contains("not a minisign signature"), "{err}");
        let by_new = sign(&new, doc, "hitsave release=a");
        let err = check(&keys, doc, Some(&by_new), "hitsave release=a").unwrap_err();
        assert!(err.contains("does not trust"), "{err}");

        // Rotation: both trusted, then the old one revoked.
        std::fs::write(dir.join("new.pub"), &new_pub).unwrap();
        let keys = Keys::load(dir).unwrap();
        check(&keys, doc, Some(&by_old), "hitsave release=a").unwrap();
        check(&keys, doc, Some(&by_new), "hitsave release=a").unwrap();
        std::fs::create_dir(dir.join("revoked")).unwrap();
        std::fs::rename(dir.join("old.pub"), dir.join("revoked/old.pub")).unwrap();
        let keys = Keys::load(dir).unwrap();
        let err = check(&keys, doc, Some(&by_old), "hitsave release=a").unwrap_err();
        assert!(err.contains("revoked"), "{err}");
        check(&keys, doc, Some(&by_new), "hitsave release=a").unwrap();
        // A revoked key left among the trusted ones is still revoked.
        std::fs::write(dir.join("old.pub"), &old_pub).unwrap();
        let keys = Keys::load(dir).unwrap();
        assert!(check(&keys, doc, Some(&by_old), "hitsave release=a").is_err());
        std::fs::write(dir.join("bad.pub"), "not a key\n").unwrap();
        let err = Keys::load(dir).err().unwrap().to_string();
        assert!(
            err.contains("bad.pub is not a minisign public key"),
            "{err}"
        );
    }
}
