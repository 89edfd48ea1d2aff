//! What a release reads back from the store, it verifies before it uses it or signs it again;
//! what it writes, it signs. The keys it trusts are the repository's (`deploy/keys/*.pub`,
//! the public halves hosts get too), so whoever can write to the bucket cannot get CI to sign
//! a record, manifest or pointer of theirs.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use hitsave_host::kit::store::Store;
use hitsave_host::release::trust::{KeyId, Keys, Signed};
use hitsave_schema as manifest;
use xtask::signing::SigningKey;

/// A document with what its signature's trusted comment must say.
pub struct Doc {
    pub bytes: Vec<u8>,
    pub comment: String,
}

/// What a document read back from the store turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by this key, which the release trusts.
    Signed(KeyId),
    /// No signature beside it (or, for an unsigned release that trusts no key, one that
    /// nothing can check).
    Unsigned,
}

/// The store a release writes to, the key it signs with and the keys it trusts.
pub struct Publisher<'a> {
    pub store: &'a dyn Store,
    /// `None` for `--unsigned` (a local store only).
    pub signer: Option<&'a SigningKey>,
    /// The trusted public keys; `None` only for an unsigned release without any.
    pub keys: Option<&'a Keys>,
    /// Every byte this release sent to the store.
    pub uploaded: &'a AtomicU64,
}

impl Publisher<'_> {
    /// True when this release signs what it writes.
    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// Checks the signature beside `key` over `bytes`. A signature that does not verify with
    /// the trusted keys (another key, a revoked one, changed bytes, a comment that disagrees)
    /// refuses the release, naming the document and the key.
    pub fn verify(&self, key: &str, bytes: &[u8], comment: &str) -> anyhow::Result<Verdict> {
        let signature = self.store.get_signature(key)?;
        let (Some(signature), Some(keys)) = (signature, self.keys) else {
            return Ok(Verdict::Unsigned);
        };
        keys.verify(&Signed {
            what: &format!("{key} in {}", self.store.describe()),
            bytes,
            signature: Some(&signature),
            comment,
        })
        .map(Verdict::Signed)
        .with_context(|| {
            format!(
                "refused: a release uses and signs only what the keys in {} signed, so nothing was signed or uploaded. Someone or something changed {key} in the store: find out who (the bucket's access log), delete it (and its .minisig), and release again",
                keys.dir()
            )
        })
    }

    /// Writes `doc` under `key` with its signature beside it, the signature first (a reader that
    /// sees the document sees its signature). Nothing is written when the store has these
    /// bytes with a signature by this key that verifies; an unsigned document loses a stale
    /// signature.
    pub fn put(&self, key: &str, doc: &Doc) -> anyhow::Result<()> {
        let sig_key = manifest::signed::signature_key(key);
        let same_bytes = self.store.get(key)?.as_deref() == Some(&doc.bytes[..]);
        let existing = self.store.get_signature(key)?;
        match self.signer {
            Some(signer) => {
                let valid = same_bytes
                    && existing.as_deref().is_some_and(|signature| {
                        self.keys.is_some_and(|keys| {
                            keys.verify(&Signed {
                                what: key,
                                bytes: &doc.bytes,
                                signature: Some(signature),
                                comment: &doc.comment,
                            })
                            .is_ok_and(|id| id == signer.id)
                        })
                    });
                if !valid {
                    let signature = signer.sign(&doc.bytes, &doc.comment)?;
                    self.store.put(&sig_key, &signature)?;
                    self.count(signature.len());
                }
            }
            None if existing.is_some() => self.store.delete(&sig_key)?,
            None => {}
        }
        if !same_bytes {
            self.store.put(key, &doc.bytes)?;
            self.count(doc.bytes.len());
        }
        Ok(())
    }

    pub fn count(&self, bytes: usize) {
        self.uploaded.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// A manifest as it is signed.
pub fn manifest_doc(m: &manifest::Manifest) -> Doc {
    Doc {
        bytes: manifest::to_bytes(m),
        comment: manifest::signed::manifest_comment(m),
    }
}

/// A pointer under `key`, as it is signed.
pub fn pointer_doc(key: &str, pointer: &manifest::Pointer) -> Doc {
    Doc {
        bytes: manifest::to_bytes(pointer),
        comment: manifest::signed::pointer_comment(key, pointer),
    }
}

/// An input record under `key`, as it is signed.
pub fn input_doc(key: &str, record: &manifest::InputRecord) -> Doc {
    Doc {
        bytes: manifest::to_bytes(record),
        comment: manifest::signed::input_comment(key, record),
    }
}
