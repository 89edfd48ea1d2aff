//! The artifact store: one interface, two implementations (a local directory and S3).
//!
//! The store only moves bytes under keys; the layout and the publish order live in
//! `hitsave_schema` and the release command. Nothing here depends on conditional writes: some
//! S3-compatible servers (Garage) do not honour `If-None-Match`.

mod local;
mod s3;

use std::io::Write;

use anyhow::bail;
use camino::Utf8Path;

pub use crate::kit::store::local::LocalStore;
pub use crate::kit::store::s3::{S3Options, S3Store};

/// What the store knows about an object without downloading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// The SHA-256 the uploader recorded (S3 object metadata), when there is one.
    pub sha256: Option<String>,
    /// The S3 ETag, without quotes (none in a local store).
    pub etag: Option<String>,
    /// The S3 version id, when the bucket is versioned.
    pub version_id: Option<String>,
}

/// Called with the number of bytes moved since the last call.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

pub trait Store: Send + Sync {
    /// How to name the store in messages: `local store /srv/x` or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// True for a directory: the only store an unsigned release may come from.
    fn is_local(&self) -> bool {
        false
    }

    /// Fails with one clear error when the store cannot be used at all (unreachable endpoint,
    /// refused credentials, missing bucket): called before any work is done.
    fn check(&self) -> anyhow::Result<()>;

    /// `None` when there is no object under `key`.
    fn head(&self, key: &str) -> anyhow::Result<Option<ObjectInfo>>;

    /// A small object, whole, or an error naming it when it has more than `max` bytes (no more
    /// than `max + 1` bytes are read); `None` when there is none.
    fn get_at_most(&self, key: &str, max: u64) -> anyhow::Result<Option<Vec<u8>>>;

    /// A document (a manifest, pointer or record), at most `MAX_DOCUMENT_BYTES`.
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.get_at_most(key, hitsave_schema::MAX_DOCUMENT_BYTES)
    }

    /// The `.minisig` beside `key`, at most `MAX_SIGNATURE_BYTES`; `None` when there is none.
    fn get_signature(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.get_at_most(
            &hitsave_schema::signed::signature_key(key),
            hitsave_schema::MAX_SIGNATURE_BYTES,
        )
    }

    /// Writes a small object, replacing any object under the same key.
    fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()>;

    /// Uploads a file whose SHA-256 and size are known; the server checks the checksum.
    fn upload(
        &self,
        key: &str,
        file: &Utf8Path,
        sha256: &str,
        size: u64,
        progress: Progress,
    ) -> anyhow::Result<()>;

    /// Streams an object into `out`; fails when there is none, and at the first byte past
    /// `limit` (the size the manifest or record declares): no more than `limit + 1` bytes are
    /// asked for, so a larger object under the key cannot fill the disk.
    fn download(
        &self,
        key: &str,
        out: &mut dyn Write,
        limit: u64,
        progress: Progress,
    ) -> anyhow::Result<u64>;

    /// The keys of the objects directly under `dir` (`backups`), sorted.
    fn list(&self, dir: &str) -> anyhow::Result<Vec<String>>;

    /// The directories directly under `dir` (`backups/production` -> its hosts'), as keys
    /// (`backups/production/i-0abc`), sorted.
    fn list_dirs(&self, dir: &str) -> anyhow::Result<Vec<String>>;

    /// Removes the object under `key`; nothing to do when there is none.
    fn delete(&self, key: &str) -> anyhow::Result<()>;
}

/// A download that went past its limit: what the store holds is not what was declared.
#[derive(Debug)]
pub struct TooLarge {
    store: String,
    key: String,
    limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is larger than the {} bytes declared for it: the download stopped there and was refused",
            self.store, self.key, self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

/// The error of a download that went past its limit.
pub fn too_large(store: &str, key: &str, limit: u64) -> anyhow::Error {
    TooLarge {
        store: store.to_owned(),
        key: key.to_owned(),
        limit,
    }
    .into()
}

/// Where a store is: a directory or `s3://BUCKET/PREFIX`, and how to reach an S3 server.
#[derive(Debug, Clone, Default)]
pub struct StoreLocation {
    /// A directory, or s3://BUCKET/PREFIX; none for the caller's default.
    pub store: Option<String>,
    /// The S3 endpoint of an S3-compatible server.
    pub endpoint_url: Option<String>,
    /// Address buckets as https://host/bucket rather than https://bucket.host.
    pub path_style: bool,
}

/// The store `args` names, checked (see `Store::check`); `None` when none is named.
pub fn open_if_named(args: &StoreLocation) -> anyhow::Result<Option<Box<dyn Store>>> {
    if args.store.is_none() {
        return Ok(None);
    }
    let store = open(args, Utf8Path::new("."))?;
    store.check()?;
    Ok(Some(store))
}

/// Opens the store named by `args`, or the local default.
pub fn open(args: &StoreLocation, default_dir: &Utf8Path) -> anyhow::Result<Box<dyn Store>> {
    match args.store.as_deref() {
        Some(url) if url.starts_with("s3://") => {
            let rest = &url["s3://".len()..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{url:?} names no bucket: use s3://BUCKET/PREFIX");
            }
            Ok(Box::new(S3Store::connect(S3Options {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint_url: args.endpoint_url.clone().filter(|u| !u.is_empty()),
                path_style: args.path_style,
            })?))
        }
        Some(url) if url.contains("://") => {
            bail!("{url:?}: the store is a directory or s3://BUCKET/PREFIX")
        }
        Some(dir) => Ok(Box::new(LocalStore::new(Utf8Path::new(dir)))),
        None => Ok(Box::new(LocalStore::new(default_dir))),
    }
}
