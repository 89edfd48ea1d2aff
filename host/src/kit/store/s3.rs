//! A store in an S3 bucket (AWS, or an S3-compatible server through the endpoint override).
//!
//! Credentials come from the standard chain (environment, profile, instance profile, web
//! identity for GitHub OIDC). Every upload sends a SHA-256 checksum that the server checks,
//! and records the artifact's SHA-256 as object metadata so a later release can tell that an
//! object is already there without downloading it. Large files go up in parts, a few at a
//! time; the SDK retries with exponential backoff.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use camino::Utf8Path;
use futures_util::{StreamExt, TryStreamExt, stream};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

use crate::kit::store::{ObjectInfo, Progress, Store};

/// Files above this size go up in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// 8 MiB parts; S3 allows 10,000, so artifacts up to 78 GiB.
const PART_SIZE: u64 = 8 << 20;
/// Parts in flight at once: enough to fill a CI runner's uplink, little memory.
const PART_CONCURRENCY: usize = 4;
/// The metadata key (`x-amz-meta-sha256`) that records an artifact's SHA-256.
const SHA256_METADATA: &str = "sha256";

#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix without leading or trailing slashes; may be empty.
    pub prefix: String,
    pub endpoint_url: Option<String>,
    pub path_style: bool,
}

pub struct S3Store {
    opts: S3Options,
    client: Client,
    runtime: Runtime,
}

impl S3Store {
    pub fn connect(opts: S3Options) -> anyhow::Result<S3Store> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime for S3")?;
        let client = runtime.block_on(async {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .retry_config(RetryConfig::standard().with_max_attempts(4))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(Duration::from_secs(300))
                        .build(),
                );
            if let Some(url) = &opts.endpoint_url {
                loader = loader.endpoint_url(url);
            }
            let shared = loader.load().await;
            let mut config = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(opts.path_style)
                // We send our own SHA-256 checksums; no extra CRC32 the server may not know.
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
            if shared.region().is_none() {
                // S3-compatible servers accept any region; AWS redirects to the right one.
                config = config.region(Region::new("us-east-1"));
            }
            Client::from_conf(config.build())
        });
        Ok(S3Store {
            opts,
            client,
            runtime,
        })
    }

    fn key(&self, key: &str) -> String {
        if self.opts.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.opts.prefix)
        }
    }

    /// One clear error for anything the SDK reports, naming the store.
    fn explain<E>(
        &self,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        what: &str,
    ) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let store = self.describe();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or_default().to_owned();
        let server_says = err.message().map(|m| format!(": {m}")).unwrap_or_default();
        let cause = error_chain(&err);
        let endpoint = self
            .opts
            .endpoint_url
            .clone()
            .unwrap_or_else(|| "the S3 endpoint".to_owned());
        if status.is_none() && cause.to_lowercase().contains("credentials") {
            anyhow::anyhow!(
                "{store}: no AWS credentials found ({what}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role (instance profile, GitHub OIDC)"
            )
        } else if matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
        ) {
            anyhow::anyhow!(
                "{store}: cannot reach {endpoint} ({what}): {cause}; check --endpoint-url/AWS_ENDPOINT_URL and the network"
            )
        } else if code == "NoSuchBucket" || (status == Some(404) && what == "checking the bucket") {
            anyhow::anyhow!(
                "{store}: the bucket {:?} does not exist: create it or fix --store",
                self.opts.bucket
            )
        } else if matches!(
            code.as_str(),
            "InvalidAccessKeyId" | "SignatureDoesNotMatch"
        ) || (status == Some(403) && code.is_empty())
        {
            anyhow::anyhow!(
                "{store}: the credentials were refused ({what}; {}{server_says}): check the access key and the secret",
                if code.is_empty() { "HTTP 403" } else { &code }
            )
        } else if matches!(code.as_str(), "AccessDenied" | "Forbidden") {
            anyhow::anyhow!(
                "{store}: the server refused {what} ({code}{server_says}): check the key's permissions on the bucket and the bucket's quota"
            )
        } else {
            anyhow::anyhow!("{store}: {what} failed: {cause}")
        }
    }

    async fn upload_in_parts(
        &self,
        key: &str,
        file: &Utf8Path,
        sha256: &str,
        size: u64,
        progress: Progress<'_>,
    ) -> anyhow::Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.opts.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata(SHA256_METADATA, sha256)
            .send()
            .await
            .map_err(|e| self.explain(e, "starting a multipart upload"))?;
        let upload_id = created
            .upload_id()
            .context("the server started a multipart upload without an id")?
            .to_owned();
        let result = self.send_parts(key, &upload_id, file, size, progress).await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                // Leave no half-finished upload behind to be billed for.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.opts.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        self.client
            .complete_multipart_upload()
            .bucket(&self.opts.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.explain(e, "completing a multipart upload"))?;
        Ok(())
    }

    async fn send_parts(
        &self,
        key: &str,
        upload_id: &str,
        file: &Utf8Path,
        size: u64,
        progress: Progress<'_>,
    ) -> anyhow::Result<Vec<CompletedPart>> {
        let count = size.div_ceil(PART_SIZE);
        stream::iter(0..count)
            .map(|index| async move {
                let offset = index * PART_SIZE;
                let length = PART_SIZE.min(size - offset);
                let part_number = i32::try_from(index + 1).context("too many parts")?;
                let checksum = part_checksum(file, offset, length)?;
                let body = ByteStream::read_from()
                    .path(file.as_std_path())
                    .offset(offset)
                    .length(Length::Exact(length))
                    .build()
                    .await
                    .with_context(|| format!("cannot read {file}"))?;
                let sent = self
                    .client
                    .upload_part()
                    .bucket(&self.opts.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .content_length(length as i64)
                    .checksum_sha256(&checksum)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.explain(e, &format!("uploading part {part_number}")))?;
                progress(length);
                anyhow::Ok(
                    CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(sent.e_tag().map(str::to_owned))
                        .checksum_sha256(checksum)
                        .build(),
                )
            })
            // At most PART_CONCURRENCY parts in flight, results kept in part order.
            .buffered(PART_CONCURRENCY)
            .try_collect()
            .await
    }
}

/// "dispatch failure: io error: tcp connect error: Connection refused (os error 111)": each
/// cause's own message, without the SDK's debug dump.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The base64 SHA-256 of one part, read from the file (the part is read again to send it; the
/// page cache makes the second read cheap and memory stays bounded).
fn part_checksum(file: &Utf8Path, offset: u64, length: u64) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut hasher = Sha256::new();
    let copied = std::io::copy(&mut f.take(length), &mut hasher)?;
    if copied != length {
        bail!("{file} is shorter than expected");
    }
    Ok(BASE64.encode(hasher.finalize()))
}

fn hex_to_base64(hex: &str) -> anyhow::Result<String> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{hex:?} is not hex"))?;
    Ok(BASE64.encode(bytes))
}

impl Store for S3Store {
    fn describe(&self) -> String {
        let url = if self.opts.prefix.is_empty() {
            format!("s3://{}", self.opts.bucket)
        } else {
            format!("s3://{}/{}", self.opts.bucket, self.opts.prefix)
        };
        match &self.opts.endpoint_url {
            Some(endpoint) => format!("{url} (at {endpoint})"),
            None => url,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        self.runtime
            .block_on(self.client.head_bucket().bucket(&self.opts.bucket).send())
            .map_err(|e| self.explain(e, "checking the bucket"))?;
        Ok(())
    }

    fn head(&self, key: &str) -> anyhow::Result<Option<ObjectInfo>> {
        let result = self.runtime.block_on(
            self.client
                .head_object()
                .bucket(&self.opts.bucket)
                .key(self.key(key))
                .checksum_mode(ChecksumMode::Enabled)
                .send(),
        );
        match result {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or_default().max(0) as u64,
                sha256: out.metadata().and_then(|m| m.get(SHA256_METADATA)).cloned(),
                etag: out.e_tag().map(|t| t.trim_matches('"').to_owned()),
                version_id: out.version_id().map(str::to_owned),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.explain(e, &format!("looking up {key}"))),
        }
    }

    fn get_at_most(&self, key: &str, max: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let mut bytes = Vec::new();
        match self.read_into(key, &mut bytes, max, &|_| {}) {
            Ok(_) => Ok(Some(bytes)),
            Err(Missing::NoSuchKey) => Ok(None),
            Err(Missing::Other(e)) => Err(e),
        }
    }

    fn list_dirs(&self, dir: &str) -> anyhow::Result<Vec<String>> {
        let prefix = self.key(&format!("{dir}/"));
        let strip = self.key("");
        self.runtime.block_on(async {
            let mut dirs = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.opts.bucket)
                .prefix(&prefix)
                .delimiter("/")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.explain(e, &format!("listing {dir}/")))?;
                dirs.extend(
                    page.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix())
                        .filter_map(|p| p.strip_prefix(strip.as_str()))
                        .map(|p| p.trim_end_matches('/').to_owned()),
                );
            }
            dirs.sort();
            Ok(dirs)
        })
    }

    fn list(&self, dir: &str) -> anyhow::Result<Vec<String>> {
        let prefix = self.key(&format!("{dir}/"));
        let strip = self.key("");
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.opts.bucket)
                .prefix(&prefix)
                .delimiter("/")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.explain(e, &format!("listing {dir}/")))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key())
                        .filter_map(|k| k.strip_prefix(strip.as_str()))
                        .map(str::to_owned),
                );
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.runtime
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.opts.bucket)
                    .key(self.key(key))
                    .send(),
            )
            .map_err(|e| self.explain(e, &format!("removing {key}")))?;
        Ok(())
    }

    fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let checksum = BASE64.encode(Sha256::digest(bytes));
        self.runtime
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.opts.bucket)
                    .key(self.key(key))
                    .content_type("application/json")
                    .checksum_sha256(checksum)
                    .body(ByteStream::from(bytes.to_vec()))
                    .send(),
            )
            .map_err(|e| self.explain(e, &format!("writing {key}")))?;
        Ok(())
    }

    fn upload(
        &self,
        key: &str,
        file: &Utf8Path,
        sha256: &str,
        size: u64,
        progress: Progress,
    ) -> anyhow::Result<()> {
        let full_key = self.key(key);
        if size > MULTIPART_THRESHOLD {
            return self
                .runtime
                .block_on(self.upload_in_parts(&full_key, file, sha256, size, progress));
        }
        let checksum = hex_to_base64(sha256)?;
        self.runtime.block_on(async {
            let body = ByteStream::from_path(file.as_std_path())
                .await
                .with_context(|| format!("cannot read {file}"))?;
            self.client
                .put_object()
                .bucket(&self.opts.bucket)
                .key(&full_key)
                .content_type("application/gzip")
                .content_length(size as i64)
                .checksum_sha256(checksum)
                .metadata(SHA256_METADATA, sha256)
                .body(body)
                .send()
                .await
                .map_err(|e| self.explain(e, &format!("uploading {key}")))?;
            progress(size);
            anyhow::Ok(())
        })
    }

    fn download(
        &self,
        key: &str,
        out: &mut dyn Write,
        limit: u64,
        progress: Progress,
    ) -> anyhow::Result<u64> {
        self.read_into(key, out, limit, progress)
            .map_err(|e| match e {
                Missing::NoSuchKey => anyhow::anyhow!("{}: there is no {key}", self.describe()),
                Missing::Other(e) => e,
            })
    }
}

/// Why `read_into` found nothing to read.
enum Missing {
    NoSuchKey,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Missing {
    fn from(e: anyhow::Error) -> Missing {
        Missing::Other(e)
    }
}

impl S3Store {
    /// Streams `key` into `out`, asking for its first `limit + 1` bytes only (a Range GET) and
    /// refusing the object once more than `limit` arrived.
    fn read_into(
        &self,
        key: &str,
        out: &mut dyn Write,
        limit: u64,
        progress: Progress,
    ) -> Result<u64, Missing> {
        self.runtime.block_on(async {
            let result = self
                .client
                .get_object()
                .bucket(&self.opts.bucket)
                .key(self.key(key))
                .range(format!("bytes=0-{limit}"))
                .send()
                .await;
            let mut object = match result {
                Ok(object) => object,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Err(Missing::NoSuchKey);
                }
                // A range past the end of an empty object.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                    return Ok(0);
                }
                Err(e) => return Err(self.explain(e, &format!("reading {key}")).into()),
            };
            let mut total = 0;
            while let Some(chunk) = object
                .body
                .try_next()
                .await
                .with_context(|| format!("{}: reading {key} failed", self.describe()))?
            {
                total += chunk.len() as u64;
                if total > limit {
                    return Err(crate::kit::store::too_large(&self.describe(), key, limit).into());
                }
                out.write_all(&chunk).map_err(anyhow::Error::from)?;
                progress(chunk.len() as u64);
            }
            Ok(total)
        })
    }
}
