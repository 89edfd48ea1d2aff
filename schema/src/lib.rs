#![deny(missing_docs)]
//! The documents the pipeline writes and reads, each field documented where it is defined:
//! the artifact store's JSON (manifests, input records, pointers), a bundle's revision.json,
//! and the two ids every key is built from, `ReleaseId` and `Sha256`, checked when parsed so a
//! crafted document cannot name a path outside the store. Both sides use it: the tooling that
//! publishes releases and the host program that installs them.
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
//! contents/<contents-hash>.json            Pointer: what a release ships -> release id
//! channels/<name>.json                     Pointer: channel -> release id
//! <any of the four above>.minisig          its minisign signature (see `signed`); input records
//!                                          are signed too, so a release reuses only what CI made
//! backups/<env>/<host>/<backup-id>.dump    a database backup (pg_dump's custom format), each
//!                                          environment's and host's apart
//! backups/<env>/<host>/<backup-id>.json    BackupRecord: what it holds; written after it
//! backups/<backup-id>.{dump,json}          backups from before that (still read and pruned)
//! ```
//!
//! A commit whose release would ship exactly what an earlier one ships (a change to docs or
//! to the tooling only) gets no release of its own: its commit pointer names that release.

mod ids;
pub mod signed;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub use ids::{BackupId, Channel, Commit, ReleaseId, Sha256, check_release_id, hex, is_name};

/// The schema of the pointers, revisions and backup records this version writes and reads.
pub const SCHEMA: u32 = 1;

/// The schema of manifests and input records: 2 added each artifact's unpacked size and entry
/// count (the host unpacks no more) and the bundle's ETag. A host refuses schema 1: a release
/// from before signing has neither the sizes nor a signature.
pub const MANIFEST_SCHEMA: u32 = 2;

/// `releases/<release-id>/manifest.json`: everything a host needs to install a release.
/// Deterministic: the same release built twice gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (`MANIFEST_SCHEMA`). Readers refuse a schema they do not know.
    pub schema: u32,
    /// `<commit time UTC YYYYMMDDHHMMSS>-<commit12>[-dirty-<8 hex>]`.
    pub release: ReleaseId,
    /// Full git commit the release was built from.
    pub commit: Commit,
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
    /// The CodeDeploy revision of this release (appspec.yml, deploy/hooks/ and a revision.json
    /// naming the release and this store), itself stored as `artifacts/<sha256>.tar.gz`.
    /// Absent from releases made before bundles existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// Published with `--unsigned` to a local store: no signature beside it. A host installs
    /// it only with `--allow-unsigned`, and only from a local store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsigned: bool,
    /// The migrations its migrator carries, in order: a host whose current release carries
    /// the same ones runs no migrator. Absent from releases made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Vec<MigrationRef>>,
}

/// One migration a release's migrator carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRef {
    /// Its file in `migrations/` (`<version>_<name>.sql`).
    pub file: String,
    /// SHA-256 of the file's bytes.
    pub sha256: Sha256,
}

/// Where a release's CodeDeploy bundle is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// SHA-256 of the `.tar.gz`; the object is `artifacts/<sha256>.tar.gz`.
    pub sha256: Sha256,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
    /// The S3 object's ETag (without quotes) once uploaded; none in a local store. `cargo
    /// xtask deploy` passes it to CodeDeploy, which then refuses an object that was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The object's version id, when the bucket is versioned; passed to CodeDeploy too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Every file the bundle unpacks to, sorted by path: the host's resident program checks the
    /// deployment archive CodeDeploy unpacked against this list (a file added, removed or
    /// changed is refused) before anything runs from it. Empty in releases made before the
    /// list existed, which hosts no longer install through CodeDeploy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<BundleFile>,
    /// The deployment group appspec.yml's `branch_config` gave this release's branch when it
    /// was released (`None`: the branch is not deployed). A host in another environment
    /// refuses the release (unless its host.env names the branches it takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_group: Option<String>,
}

/// One file of a bundle: where it is, what it holds and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// Relative to the bundle's root, `/`-separated: `deploy/hooks/before-install.sh`.
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: Sha256,
    /// `0644` or `0755`, as the bundle's tarball records it.
    pub mode: String,
}

impl BundleFile {
    /// The mode as a number (`0o644` or `0o755`).
    pub fn mode_bits(&self) -> u32 {
        if self.mode == "0755" { 0o755 } else { 0o644 }
    }

    fn check(&self) -> anyhow::Result<()> {
        let p = &self.path;
        if p.is_empty()
            || p.starts_with('/')
            || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            || p.bytes().any(|b| b.is_ascii_control())
        {
            bail!("bundle file {p:?} is not a relative path inside the bundle");
        }
        if self.mode != "0644" && self.mode != "0755" {
            bail!("bundle file {p} has mode {:?}, not 0644 or 0755", self.mode);
        }
        Ok(())
    }
}

/// One component's tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Component name: `api`, `migrate`, `web` or `xtask`.
    pub component: String,
    /// SHA-256 of the `.tar.gz`; the object is `artifacts/<sha256>.tar.gz`.
    pub sha256: Sha256,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
    /// Hash of everything the component was built from (see `inputs.rs`). An artifact built by
    /// an earlier release from the same inputs is reused, not rebuilt.
    pub input_hash: Sha256,
    /// Where it runs: a Rust target triple, or `noarch`.
    pub target: String,
    /// What it unpacks to: the host refuses to write more.
    #[serde(flatten)]
    pub unpacked: Unpacked,
}

/// What a tarball unpacks to, recorded when it is packed. A host stops unpacking, and
/// refuses, as soon as a tarball goes past either figure, and checks the disk for them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpacked {
    /// Bytes of all its regular files together.
    pub unpacked_bytes: u64,
    /// Its entries: directories, files and links.
    pub entries: u64,
}

/// `inputs/<component>/<input-hash>.json`: the build-once index. Written once, after its
/// artifact, and never changed; a release that finds one uses its artifact.
///
/// Its bytes depend on the inputs alone (no release, no time): two releases that race to
/// record the same inputs write the same bytes, whichever lands last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Format version (`MANIFEST_SCHEMA`).
    pub schema: u32,
    /// The component those inputs are of.
    pub component: String,
    /// The input hash (see `inputs.rs`); also the key's file name.
    pub input_hash: Sha256,
    /// The artifact those inputs built: `artifacts/<sha256>.tar.gz`.
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
    /// Where it runs, as in the manifest's `Artifact::target`.
    pub target: String,
    /// What it unpacks to, as in the manifest's `Artifact::unpacked`.
    #[serde(flatten)]
    pub unpacked: Unpacked,
}

/// `commits/<git-sha>.json`, `contents/<contents-hash>.json` and `channels/<name>.json`:
/// which release to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// Format version; always 1 here.
    pub schema: u32,
    /// The release id; its manifest is `releases/<release>/manifest.json`.
    pub release: ReleaseId,
    /// The commit of that release.
    pub commit: Commit,
}

/// `artifacts/<sha256>.tar.gz`.
pub fn artifact_key(sha256: &Sha256) -> String {
    format!("artifacts/{sha256}.tar.gz")
}

/// `releases/<release>/manifest.json`.
pub fn manifest_key(release: &ReleaseId) -> String {
    format!("releases/{release}/manifest.json")
}

/// `inputs/<component>/<input-hash>.json`.
pub fn input_key(component: &str, input_hash: &Sha256) -> String {
    format!("inputs/{component}/{input_hash}.json")
}

/// `commits/<git-sha>.json`.
pub fn commit_key(commit: &Commit) -> String {
    format!("commits/{commit}.json")
}

/// `contents/<contents-hash>.json`: the release that ships these contents (see the tooling's
/// `inputs::contents_hash`).
pub fn contents_key(contents_hash: &Sha256) -> String {
    format!("contents/{contents_hash}.json")
}

/// `channels/<name>.json`.
pub fn channel_key(channel: &Channel) -> String {
    format!("channels/{channel}.json")
}

/// The most bytes a manifest, pointer, input record or backup record may have: each is read
/// whole into memory, so a larger object in the store is refused before it is parsed.
pub const MAX_DOCUMENT_BYTES: u64 = 1 << 20;

/// The most bytes a `.minisig` may have (minisign's are about 300).
pub const MAX_SIGNATURE_BYTES: u64 = 4 << 10;

/// Pretty JSON with a final newline: stable bytes for the same value.
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("manifest types always serialise");
    bytes.push(b'\n');
    bytes
}

fn check_schema(schema: u32, what: &str) -> anyhow::Result<()> {
    check_schema_is(schema, SCHEMA, what)
}

fn check_schema_is(schema: u32, expected: u32, what: &str) -> anyhow::Result<()> {
    if schema != expected {
        bail!(
            "{what} has schema {schema}, but this xtask reads schema {expected}: use the xtask of a matching release{}",
            if schema < expected {
                ", or release its commit again with this one (schema 1 releases are unsigned and declare no unpacked sizes)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

impl Manifest {
    /// Parses and validates a manifest: every digest and name that later becomes a key or a
    /// path is checked here, so a crafted manifest cannot point outside the store.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Manifest> {
        // The schema first: an older manifest lacks fields, and should be named as older.
        #[derive(Deserialize)]
        struct Versioned {
            schema: u32,
        }
        let v: Versioned =
            serde_json::from_slice(bytes).context("the manifest is not valid JSON")?;
        check_schema_is(v.schema, MANIFEST_SCHEMA, "the manifest")?;
        let m: Manifest =
            serde_json::from_slice(bytes).context("the manifest is not valid JSON")?;
        if m.artifacts.is_empty() {
            bail!("the manifest lists no artifacts");
        }
        for a in &m.artifacts {
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
        if let Some(bundle) = &m.bundle {
            for (i, f) in bundle.files.iter().enumerate() {
                f.check()?;
                if i > 0 && bundle.files[i - 1].path >= f.path {
                    bail!(
                        "the bundle's files are not sorted by path, or list {} twice",
                        f.path
                    );
                }
            }
        }
        Ok(m)
    }

    /// The artifact of `component`, if the release has one.
    pub fn artifact(&self, component: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.component == component)
    }

    /// The bytes of all its artifacts' tarballs together.
    pub fn total_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.size).sum()
    }

    /// What all the artifacts unpack to together.
    pub fn unpacked_bytes(&self) -> u64 {
        self.artifacts
            .iter()
            .map(|a| a.unpacked.unpacked_bytes)
            .sum()
    }
}

impl InputRecord {
    /// Parses a record and checks its schema.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<InputRecord> {
        let r: InputRecord =
            serde_json::from_slice(bytes).context("the input record is not valid JSON")?;
        check_schema_is(r.schema, MANIFEST_SCHEMA, "the input record")?;
        Ok(r)
    }
}

impl Pointer {
    /// Parses a pointer and checks its schema (its ids are checked as they are parsed).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Pointer> {
        let p: Pointer = serde_json::from_slice(bytes).context("the pointer is not valid JSON")?;
        check_schema(p.schema, "the pointer")?;
        Ok(p)
    }
}

/// The bundle's file that names what it installs.
pub const REVISION_FILE: &str = "revision.json";

/// `revision.json`: which release a bundle installs, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Format version; always 1 here.
    pub schema: u32,
    /// The release id; its manifest is `releases/<release>/manifest.json` in `store`.
    pub release: ReleaseId,
    /// The store it was published to: `s3://BUCKET/PREFIX`, or a directory.
    pub store: String,
    /// An S3 endpoint override (S3-compatible servers); none for AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (S3-compatible servers).
    #[serde(default)]
    pub path_style: bool,
}

impl Revision {
    /// Reads and checks `<bundle>/revision.json`.
    pub fn read(bundle: &Path) -> anyhow::Result<Revision> {
        let path = bundle.join(REVISION_FILE);
        let bytes = read_at_most(&path, MAX_SIGNATURE_BYTES).with_context(|| {
            format!(
                "cannot read {}: is {} a bundle made by `cargo xtask release`?",
                path.display(),
                bundle.display()
            )
        })?;
        let r: Revision = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid", path.display()))?;
        check_schema(r.schema, &path.display().to_string())?;
        Ok(r)
    }
}

/// A small file read whole, refused past `max` bytes before more than `max + 1` are read.
pub fn read_at_most(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than {max} bytes: refused", path.display());
    }
    Ok(bytes)
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupReason {
    /// Someone ran `xtask backup`.
    Manual,
    /// An install was about to apply migrations.
    PreMigrate,
    /// The daily timer.
    Scheduled,
}

/// `backups/<env>/<host>/<id>.json` in the store, and `<root>/backups/<id>.json` on the host:
/// what one database backup holds. Written after the dump it describes, so a record always has
/// its dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Format version; always 1 here.
    pub schema: u32,
    /// `<UTC YYYYMMDDTHHMMSSZ>-<host>-<reason>` (before hosts were named in it,
    /// `<UTC ...>-<reason>`); the dump is `<id>.dump`. Unique across hosts.
    pub id: BackupId,
    /// When the snapshot was taken, RFC 3339 UTC.
    pub time: String,
    /// The release that was current, whose schema the dump has.
    pub release: Option<ReleaseId>,
    /// Why it was taken.
    pub reason: BackupReason,
    /// The newest migration applied in the database (its version), if any.
    pub last_migration: Option<i64>,
    /// Size of the dump in bytes.
    pub size: u64,
    /// SHA-256 of the dump, computed while it was written.
    pub sha256: Sha256,
    /// Rows per table of the public schema, counted in the snapshot the dump was made from.
    pub tables: BTreeMap<String, u64>,
    /// The environment of the host that took it (`production`, `staging`, `local`); none in
    /// records from before each environment had backups of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The host that took it: its EC2 instance id, else its machine id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The database it came from; a restore into another one must say so (`--from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseId>,
}

/// Which database a backup came from: PostgreSQL's system identifier (one per cluster,
/// made by initdb) and the database's name. The same on every host of a fleet that shares a
/// server; another for a new volume, or another environment's server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseId {
    /// `pg_control_system().system_identifier`, as decimal text.
    pub system_identifier: String,
    /// `current_database()`.
    pub name: String,
}

impl std::fmt::Display for DatabaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on cluster {}", self.name, self.system_identifier)
    }
}

impl BackupRecord {
    /// Parses a record and checks its schema, id, environment and host.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<BackupRecord> {
        let r: BackupRecord =
            serde_json::from_slice(bytes).context("the backup record is not valid JSON")?;
        check_schema(r.schema, "the backup record")?;
        for name in [&r.environment, &r.host].into_iter().flatten() {
            check_release_id(name).map_err(|_| {
                anyhow::anyhow!("the backup record's environment or host {name:?} is not a name")
            })?;
        }
        Ok(r)
    }

    /// The store directory its dump and record are in: `backups/<env>/<host>`, or `backups`
    /// for a record from before environments had their own.
    pub fn store_dir(&self) -> String {
        match (&self.environment, &self.host) {
            (Some(env), Some(host)) => backups_dir(env, Some(host)),
            _ => BACKUPS.to_owned(),
        }
    }

    /// Its dump's key in the store.
    pub fn dump_key(&self) -> String {
        format!("{}/{}.dump", self.store_dir(), self.id)
    }

    /// Its record's key in the store.
    pub fn record_key(&self) -> String {
        format!("{}/{}.json", self.store_dir(), self.id)
    }
}

/// Where backups are in the store.
pub const BACKUPS: &str = "backups";

/// `backups/<env>` (every host's of an environment) or `backups/<env>/<host>` (one host's).
pub fn backups_dir(env: &str, host: Option<&str>) -> String {
    match host {
        Some(host) => format!("{BACKUPS}/{env}/{host}"),
        None => format!("{BACKUPS}/{env}"),
    }
}

/// `backups/<id>.dump`: a backup from before environments had their own.
pub fn backup_key(id: &BackupId) -> String {
    format!("{BACKUPS}/{id}.dump")
}

/// `backups/<id>.json`: a record from before environments had their own.
pub fn backup_record_key(id: &BackupId) -> String {
    format!("{BACKUPS}/{id}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA,
            release: ReleaseId::new("20261101120000-0123456789ab").unwrap(),
            commit: Commit::new("0123456789abcdef0123456789abcdef01234567").unwrap(),
            commit_time: 1_793_534_400,
            branch: Some("main".into()),
            dirty: false,
            tools: BTreeMap::from([("rustc".into(), "rustc 1.95.0".into())]),
            artifacts: vec![Artifact {
                component: "api".into(),
                sha256: Sha256::new("a".repeat(64)).unwrap(),
                size: 10,
                input_hash: Sha256::new("b".repeat(64)).unwrap(),
                target: "x86_64-unknown-linux-gnu".into(),
                unpacked: Unpacked {
                    unpacked_bytes: 30,
                    entries: 2,
                },
            }],
            bundle: Some(BundleRef {
                sha256: Sha256::new("c".repeat(64)).unwrap(),
                size: 20,
                etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
                version_id: None,
                files: vec![
                    BundleFile {
                        path: "appspec.yml".into(),
                        sha256: Sha256::new("e".repeat(64)).unwrap(),
                        mode: "0644".into(),
                    },
                    BundleFile {
                        path: "deploy/hooks/before-install.sh".into(),
                        sha256: Sha256::new("f".repeat(64)).unwrap(),
                        mode: "0755".into(),
                    },
                ],
                deployment_group: Some("production".into()),
            }),
            unsigned: false,
            migrations: None,
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
        // What an attacker controls is the JSON: edit it there, one field at a time.
        let crafted = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json = serde_json::to_value(sample()).unwrap();
            edit(&mut json);
            Manifest::parse(&serde_json::to_vec(&json).unwrap())
        };
        assert!(crafted(&|_| {}).is_ok());
        assert!(crafted(&|j| j["artifacts"][0]["sha256"] = "../../etc/passwd".into()).is_err());
        assert!(crafted(&|j| j["artifacts"][0]["input_hash"] = "B".repeat(64).into()).is_err());
        assert!(crafted(&|j| j["release"] = "../x".into()).is_err());
        assert!(crafted(&|j| j["bundle"]["sha256"] = "../bundle".into()).is_err());
        assert!(crafted(&|j| j["commit"] = "main".into()).is_err());
        assert!(crafted(&|j| j["artifacts"][0]["component"] = "../api".into()).is_err());
        // The bundle's file list: relative paths inside it, two modes, sorted, no repeats.
        for path in ["/etc/passwd", "../x", "deploy//x", "deploy/./x", ""] {
            assert!(
                crafted(&|j| j["bundle"]["files"][0]["path"] = path.into()).is_err(),
                "{path:?}"
            );
        }
        assert!(crafted(&|j| j["bundle"]["files"][0]["mode"] = "4755".into()).is_err());
        assert!(crafted(&|j| j["bundle"]["files"][1]["path"] = "appspec.yml".into()).is_err());
        assert!(crafted(&|j| j["bundle"]["files"][0]["sha256"] = "x".into()).is_err());
        let err = crafted(&|j| j["schema"] = 3.into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema 3"), "{err}");
        // A manifest from before signing: no unpacked sizes, refused.
        let err = crafted(&|j| j["schema"] = 1.into())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schema 1") && err.contains("release its commit again"),
            "{err}"
        );
        assert!(
            crafted(&|j| {
                j["artifacts"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("unpacked_bytes");
            })
            .is_err()
        );
        assert!(Manifest::parse(b"{").is_err());
    }
}
