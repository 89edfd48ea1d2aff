//! The ids store keys and host paths are made of. Each is checked once, when it is made or
//! parsed, so every `ReleaseId`, `Sha256`, `Commit`, `Channel` and `BackupId` in the program
//! is safe to put in a path or a key.

use std::fmt;
use std::str::FromStr;

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// A release id, `<commit time UTC YYYYMMDDHHMMSS>-<commit12>[-dirty-<8 hex>]`: only
/// `[0-9A-Za-z._-]`, not starting with a dot, at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseId(String);

/// A SHA-256 digest as 64 lowercase hex digits: an artifact's content address or an input hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

/// A full git commit id: 40 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Commit(String);

/// A channel's name (`main`, `production`): the key `channels/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Channel(String);

/// A backup's id, `<UTC YYYYMMDDTHHMMSSZ>-<host>-<reason>`: a file name on the host and a key
/// in the store, so the release id alphabet only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

/// Whether `name` is safe as one component of a key or a path: only `[0-9A-Za-z._-]`, not
/// starting with a dot, at most 128 characters.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Release ids appear in store keys and host paths: only `[0-9A-Za-z._-]`, not starting with
/// a dot, at most 128 characters.
pub fn check_release_id(id: &str) -> anyhow::Result<()> {
    let ok = is_name(id);
    if !ok {
        bail!(
            "{id:?} is not a release id: use letters, digits, '.', '_' and '-' (like 20261101120000-0123456789ab)"
        );
    }
    Ok(())
}

/// Lowercase hex, the form every digest takes in file names, keys and manifests.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ReleaseId {
    /// A release id, checked.
    pub fn new(id: impl Into<String>) -> anyhow::Result<ReleaseId> {
        let id = id.into();
        check_release_id(&id)?;
        Ok(ReleaseId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The commit time the id begins with (`YYYYMMDDHHMMSS`, UTC): ids of the same project
    /// order by it. Empty for an id made by hand that does not start with one.
    pub fn commit_time(&self) -> &str {
        let digits = self.0.bytes().take_while(u8::is_ascii_digit).count();
        &self.0[..digits.min(14)]
    }

    /// For messages: `a, b, c`.
    pub fn list(ids: &[ReleaseId]) -> String {
        ids.iter()
            .map(ReleaseId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Commit {
    /// A commit id, checked (a short sha or a branch name is refused).
    pub fn new(sha: impl Into<String>) -> anyhow::Result<Commit> {
        let sha = sha.into();
        if !is_hex(&sha, 40) {
            bail!("{sha:?} is not a git commit (40 lowercase hex digits)");
        }
        Ok(Commit(sha))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its first 12 digits, as release ids and messages show it.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl Channel {
    /// A channel name, checked: it becomes a store key.
    pub fn new(name: impl Into<String>) -> anyhow::Result<Channel> {
        let name = name.into();
        if !is_name(&name) {
            bail!(
                "{name:?} is not a channel name: use letters, digits, '.', '_' and '-' (like main or production)"
            );
        }
        Ok(Channel(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl BackupId {
    /// A backup id, checked: it becomes a file name and a store key.
    pub fn new(id: impl Into<String>) -> anyhow::Result<BackupId> {
        let id = id.into();
        if !is_name(&id) {
            bail!("{id:?} is not a backup id");
        }
        Ok(BackupId(id))
    }

    /// For messages: `a, b, c`.
    pub fn list(ids: &[BackupId]) -> String {
        ids.iter()
            .map(BackupId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Sha256 {
    /// A digest from its hex form, checked.
    pub fn new(hex: impl Into<String>) -> anyhow::Result<Sha256> {
        let hex = hex.into();
        if !is_hex(&hex, 64) {
            bail!("{hex:?} is not a SHA-256 digest (64 lowercase hex digits)");
        }
        Ok(Sha256(hex))
    }

    /// The digest of 32 raw bytes (what a hasher's `finalize` returns).
    pub fn from_bytes(digest: [u8; 32]) -> Sha256 {
        Sha256(hex(&digest))
    }

    /// The digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id {
    ($ty:ident) => {
        impl TryFrom<String> for $ty {
            type Error = anyhow::Error;
            fn try_from(s: String) -> anyhow::Result<$ty> {
                $ty::new(s)
            }
        }
        impl FromStr for $ty {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> anyhow::Result<$ty> {
                $ty::new(s)
            }
        }
        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0
            }
        }
        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<std::path::Path> for $ty {
            fn as_ref(&self) -> &std::path::Path {
                self.0.as_ref()
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
        impl PartialEq<$ty> for &str {
            fn eq(&self, other: &$ty) -> bool {
                *self == other.0
            }
        }
        impl PartialEq<$ty> for String {
            fn eq(&self, other: &$ty) -> bool {
                *self == other.0
            }
        }
    };
}

string_id!(ReleaseId);
string_id!(Sha256);
string_id!(Commit);
string_id!(Channel);
string_id!(BackupId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_cannot_escape_a_path() {
        for bad in ["", "../x", ".hidden", "a/b", "a b", "x\0"] {
            assert!(ReleaseId::new(bad).is_err(), "{bad:?}");
        }
        assert!(ReleaseId::new("x".repeat(129)).is_err());
        assert_eq!(
            ReleaseId::new("20261101120000-0123456789ab").unwrap(),
            "20261101120000-0123456789ab"
        );
    }

    #[test]
    fn digests_are_64_lowercase_hex() {
        assert!(Sha256::new("a".repeat(64)).is_ok());
        for bad in ["A".repeat(64), "a".repeat(63), "../../etc/passwd".into()] {
            assert!(Sha256::new(bad).is_err());
        }
        assert_eq!(Sha256::from_bytes([0xab; 32]), "ab".repeat(32));
        // Parsing checks too: a crafted document cannot carry a digest that is a path.
        assert!(serde_json::from_str::<Sha256>(r#""../x""#).is_err());
    }
}
