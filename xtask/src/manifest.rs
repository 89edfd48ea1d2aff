//! The JSON documents in the artifact store, documented where they are defined.
//!
//! Store layout under the prefix (the commit protocol: artifacts first, then input records,
//! then the manifest, then the pointers, so a reader never sees a manifest whose artifacts are
//! missing):
//!
//! ```text
//! artifacts/<sha256>.tar.gz                immutable, content-addressed
//! inputs/<component>/<input-hash>.json     InputRecord: which artifact these inputs built
//! releases/<release-id>/manifest.json      Manifest
//! commits/<git-sha>.json                   Pointer: commit -> release id
//! channels/<name>.json                     Pointer: channel -> release id
//! ```

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::inputs::check_release_id;

/// The only schema this version of xtask writes and reads.
pub const SCHEMA: u32 = 1;

/// `releases/<release-id>/manifest.json`: everything a host needs to install a release.
/// Deterministic: the same release built twice gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version; always 1 here. Readers refuse a schema they do not know.
    pub schema: u32,
    /// `<commit time UTC YYYYMMDDHHMMSS>-<commit12>[-dirty-<8 hex>]`.
    pub release: String,
    /// Full git commit the release was built from.
    pub commit: String,
    /// Committer time of that commit (seconds since the epoch); the release id's time. The
    /// tarballs do not carry it: their entries are dated `components::ARTIFACT_EPOCH`.
    pub commit_time: u64,
    /// Branch it was built on, when known (CI's ref name, or the checked-out branch).
    pub branch: Option<String>,
    /// True when the working tree had uncommitted changes; such a release cannot be put on a
    /// channel without `--allow-dirty`.
    pub dirty: bool,
    /// Versions of the tools that built it: rustc, cargo, node, npm, xtask.
    pub tools: BTreeMap<String, String>,
    /// One artifact per component, in the order of the component table.
    pub artifacts: Vec<Artifact>,
    /// The CodeDeploy revision of this release (appspec.yml, deploy/hooks/, the release's
    /// bin/xtask and a revision.json naming the release and this store), itself stored as
    /// `artifacts/<sha256>.tar.gz`. Absent from releases made before bundles existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
}

/// Where a release's CodeDeploy bundle is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// Lowercase hex SHA-256 of the `.tar.gz`; the object is `artifacts/<sha256>.tar.gz`.
    pub sha256: String,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
}

/// One component's tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Component name: `api`, `migrate`, `web` or `xtask`.
    pub component: String,
    /// Lowercase hex SHA-256 of the `.tar.gz`; the object is `artifacts/<sha256>.tar.gz`.
    pub sha256: String,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
    /// Hash of everything the component was built from (see `inputs.rs`). An artifact built by
    /// an earlier release from the same inputs is reused, not rebuilt.
    pub input_hash: String,
    /// Where it runs: a Rust target triple, or `noarch`.
    pub target: String,
}

/// `inputs/<component>/<input-hash>.json`: the build-once index. Written once, after its
/// artifact, and never changed; a release that finds one uses its artifact.
///
/// Its bytes depend on the inputs alone (no release, no time): two releases that race to
/// record the same inputs write the same bytes, whichever lands last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Format version; always 1 here.
    pub schema: u32,
    /// The component those inputs are of.
    pub component: String,
    /// The input hash (see `inputs.rs`); also the key's file name.
    pub input_hash: String,
    /// The artifact those inputs built: `artifacts/<sha256>.tar.gz`.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where it runs, as in the manifest's `Artifact::target`.
    pub target: String,
}

/// `commits/<git-sha>.json` and `channels/<name>.json`: which release to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// Format version; always 1 here.
    pub schema: u32,
    /// The release id; its manifest is `releases/<release>/manifest.json`.
    pub release: String,
    /// The commit of that release.
    pub commit: String,
}

pub fn artifact_key(sha256: &str) -> String {
    format!("artifacts/{sha256}.tar.gz")
}

pub fn manifest_key(release: &str) -> String {
    format!("releases/{release}/manifest.json")
}

pub fn input_key(component: &str, input_hash: &str) -> String {
    format!("inputs/{component}/{input_hash}.json")
}

pub fn commit_key(commit: &str) -> String {
    format!("commits/{commit}.json")
}

pub fn channel_key(channel: &str) -> String {
    format!("channels/{channel}.json")
}

/// Pretty JSON with a final newline: stable bytes for the same value.
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("manifest types always serialise");
    bytes.push(b'\n');
    bytes
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_schema(schema: u32, what: &str) -> anyhow::Result<()> {
    if schema != SCHEMA {
        bail!(
            "{what} has schema {schema}, but this xtask reads schema {SCHEMA}: use the xtask of a matching release"
        );
    }
    Ok(())
}

/// Channel names share the release id alphabet: they become store keys.
pub fn check_channel(name: &str) -> anyhow::Result<()> {
    check_release_id(name).map_err(|_| {
        anyhow::anyhow!(
            "{name:?} is not a channel name: use letters, digits, '.', '_' and '-' (like main or production)"
        )
    })
}

impl Manifest {
    /// Parses and validates a manifest: every digest and name that later becomes a key or a
    /// path is checked here, so a crafted manifest cannot point outside the store.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Manifest> {
        let m: Manifest =
            serde_json::from_slice(bytes).context("the manifest is not valid JSON")?;
        check_schema(m.schema, "the manifest")?;
        check_release_id(&m.release)?;
        if !is_hex(&m.commit, 40) {
            bail!("the manifest's commit {:?} is not a git sha", m.commit);
        }
        if m.artifacts.is_empty() {
            bail!("the manifest lists no artifacts");
        }
        if let Some(b) = &m.bundle
            && !is_hex(&b.sha256, 64)
        {
            bail!("the manifest's bundle digest is not 64 lowercase hex");
        }
        for a in &m.artifacts {
            if !is_hex(&a.sha256, 64) || !is_hex(&a.input_hash, 64) {
                bail!(
                    "artifact {:?}: a digest is not 64 lowercase hex",
                    a.component
                );
            }
            if a.component.is_empty()
                || !a
                    .component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-')
            {
                bail!(
                    "artifact component {:?} is not a component name",
                    a.component
                );
            }
            if m.artifacts
                .iter()
                .filter(|b| b.component == a.component)
                .count()
                > 1
            {
                bail!("the manifest lists component {:?} twice", a.component);
            }
        }
        Ok(m)
    }

    pub fn artifact(&self, component: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.component == component)
    }

    pub fn total_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.size).sum()
    }
}

impl InputRecord {
    pub fn parse(bytes: &[u8]) -> anyhow::Result<InputRecord> {
        let r: InputRecord =
            serde_json::from_slice(bytes).context("the input record is not valid JSON")?;
        check_schema(r.schema, "the input record")?;
        if !is_hex(&r.sha256, 64) || !is_hex(&r.input_hash, 64) {
            bail!("the input record has a digest that is not 64 lowercase hex");
        }
        Ok(r)
    }
}

impl Pointer {
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Pointer> {
        let p: Pointer = serde_json::from_slice(bytes).context("the pointer is not valid JSON")?;
        check_schema(p.schema, "the pointer")?;
        check_release_id(&p.release)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            schema: 1,
            release: "20261101120000-0123456789ab".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            commit_time: 1_793_534_400,
            branch: Some("main".into()),
            dirty: false,
            tools: BTreeMap::from([("rustc".into(), "rustc 1.95.0".into())]),
            artifacts: vec![Artifact {
                component: "api".into(),
                sha256: "a".repeat(64),
                size: 10,
                input_hash: "b".repeat(64),
                target: "x86_64-unknown-linux-gnu".into(),
            }],
            bundle: Some(BundleRef {
                sha256: "c".repeat(64),
                size: 20,
            }),
        }
    }

    #[test]
    fn round_trips_with_stable_bytes() {
        let m = sample();
        let bytes = to_bytes(&m);
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert_eq!(to_bytes(&Manifest::parse(&bytes).unwrap()), bytes);
        // A manifest from before bundles existed still reads, and writes back the same.
        let mut old = sample();
        old.bundle = None;
        let bytes = to_bytes(&old);
        assert!(!String::from_utf8_lossy(&bytes).contains("bundle"));
        assert_eq!(Manifest::parse(&bytes).unwrap(), old);
    }

    #[test]
    fn refuses_crafted_digests_ids_and_schemas() {
        let mut m = sample();
        m.artifacts[0].sha256 = "../../etc/passwd".into();
        assert!(Manifest::parse(&to_bytes(&m)).is_err());
        let mut m = sample();
        m.release = "../x".into();
        assert!(Manifest::parse(&to_bytes(&m)).is_err());
        let mut m = sample();
        m.bundle.as_mut().unwrap().sha256 = "../bundle".into();
        assert!(Manifest::parse(&to_bytes(&m)).is_err());
        let mut m = sample();
        m.schema = 2;
        let err = Manifest::parse(&to_bytes(&m)).unwrap_err().to_string();
        assert!(err.contains("schema 2"), "{err}");
        assert!(Manifest::parse(b"{").is_err());
    }
}
