//! `cargo xtask verify`: checks a release's signature (and that of the pointer that named it),
//! then downloads every artifact and checks its SHA-256 and size against the manifest. Exits
//! non-zero on any mismatch, naming each one.

use crate::kit::store::{self, Store, StoreLocation};
use crate::release::trust::{KeyId, Signed, Trust, TrustOptions};
use anyhow::{Context, bail};
use hitsave_schema::{self as manifest, Manifest, Pointer, ReleaseId, signed};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::kit::ui::Ui;

/// What `verify` checks and how it reports.
pub struct VerifyOptions {
    /// The store the release is in.
    pub store: StoreLocation,
    /// The release.
    pub which: Which,
    /// The keys its signatures must be by.
    pub trust: TrustOptions,
    /// Print a machine-readable report on stdout.
    pub json: bool,
}

#[derive(Serialize)]
struct Check {
    component: String,
    sha256: manifest::Sha256,
    size: u64,
    ok: bool,
    /// What is wrong, when something is.
    problem: Option<String>,
}

#[derive(Serialize)]
struct Report {
    release: ReleaseId,
    store: String,
    ok: bool,
    /// The key that signed the manifest (minisign's id); none for an unsigned release.
    signed_by: Option<String>,
    artifacts: Vec<Check>,
}

pub fn run(args: VerifyOptions, default_store: Option<&camino::Utf8Path>) -> anyhow::Result<()> {
    let ui = Ui::new();
    let Some(default_store) = default_store.or(args
        .store
        .store
        .is_some()
        .then_some(camino::Utf8Path::new(".")))
    else {
        anyhow::bail!(
            "name the store to verify: --store DIR|s3://BUCKET/PREFIX (or HITSAVE_STORE)"
        );
    };
    let store = store::open(&args.store, default_store)?;
    store.check()?;
    let trust = Trust::new(&args.trust, store.is_local())?;
    let release = resolve(store.as_ref(), &args.which, &trust)?;
    let verified = read_manifest(store.as_ref(), &release, &trust)?;
    match &verified.key {
        Some(key) => ui.info(&format!(
            "signature: ok, by key {key} (checked in {:.2} ms; read and checked in {:.1} ms)",
            verified.seconds * 1000.0,
            verified.read_seconds * 1000.0
        )),
        None => ui.info("signature: NONE (an unsigned release, --allow-unsigned)"),
    }
    let signed_by = verified.key.map(|k| k.to_string());
    let manifest = verified.manifest;
    ui.info(&format!(
        "verifying release {} ({} artifacts, {}) in {}",
        manifest.release,
        manifest.artifacts.len(),
        crate::kit::ui::human_bytes(manifest.total_size()),
        store.describe()
    ));
    let checks = check_artifacts(&ui, store.as_ref(), &manifest)?;
    let bad: Vec<_> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.component.clone())
        .collect();
    let report = Report {
        release: manifest.release.clone(),
        store: store.describe(),
        ok: bad.is_empty(),
        signed_by,
        artifacts: checks,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if !bad.is_empty() {
        bail!(
            "release {} in {} is damaged: {} do not match the manifest; publish it again from its commit (`cargo xtask release`) after removing the bad objects",
            manifest.release,
            store.describe(),
            bad.join(", ")
        );
    }
    ui.info(&format!(
        "release {}: every artifact matches its manifest",
        manifest.release
    ));
    Ok(())
}

/// Every artifact of `manifest` and its CodeDeploy bundle (listed as `bundle`), downloaded
/// and checked.
fn check_artifacts(ui: &Ui, store: &dyn Store, manifest: &Manifest) -> anyhow::Result<Vec<Check>> {
    let objects: Vec<(&str, &manifest::Sha256, u64)> = manifest
        .artifacts
        .iter()
        .map(|a| (a.component.as_str(), &a.sha256, a.size))
        .chain(
            manifest
                .bundle
                .iter()
                .map(|b| ("bundle", &b.sha256, b.size)),
        )
        .collect();
    let bar = ui.bytes("downloading", objects.iter().map(|o| o.2).sum());
    let mut checks = Vec::new();
    for (component, sha256, size) in objects {
        let problem = check_artifact(store, sha256, size, &|n| bar.inc(n))?;
        match &problem {
            None => ui.info(&format!("{component}: ok ({size} bytes, sha256 {sha256})")),
            Some(p) => ui.info(&format!("{component}: MISMATCH: {p}")),
        }
        checks.push(Check {
            component: component.to_owned(),
            sha256: sha256.clone(),
            size,
            ok: problem.is_none(),
            problem,
        });
    }
    bar.finish_and_clear();
    Ok(checks)
}

/// Which release a command works on: by id, or through a channel or commit pointer.
#[derive(Debug, Clone)]
pub enum Which {
    /// The release id.
    Release(ReleaseId),
    /// The release a channel points at.
    Channel(hitsave_schema::Channel),
    /// The release built from a commit.
    Commit(hitsave_schema::Commit),
}

impl Which {
    /// The channel, when the release is named through one.
    pub fn channel(&self) -> Option<&hitsave_schema::Channel> {
        match self {
            Which::Channel(channel) => Some(channel),
            _ => None,
        }
    }
}

/// The release id the flags name, following a pointer when needed; the pointer's signature
/// is checked first.
pub fn resolve(store: &dyn Store, args: &Which, trust: &Trust) -> anyhow::Result<ReleaseId> {
    let key = match args {
        Which::Release(id) => return Ok(id.clone()),
        Which::Channel(channel) => manifest::channel_key(channel),
        Which::Commit(commit) => manifest::commit_key(commit),
    };
    let bytes = store
        .get(&key)?
        .with_context(|| format!("{}: there is no {key}", store.describe()))?;
    let pointer = Pointer::parse(&bytes)
        .with_context(|| format!("{}: {key} is damaged", store.describe()))?;
    let signature = store.get_signature(&key)?;
    trust
        .check(&Signed {
            what: &format!("{key} in {}", store.describe()),
            bytes: &bytes,
            signature: signature.as_deref(),
            comment: &signed::pointer_comment(&key, &pointer),
        })
        .context("nothing was downloaded or changed (if a release is being published right now, try again in a minute)")?;
    Ok(pointer.release)
}

/// A manifest read from the store whose signature checked out, with the exact bytes that were
/// signed (kept on the host beside the unpacked release, so a rollback checks them again).
pub struct Verified {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub signature: Option<Vec<u8>>,
    /// The key that signed it; `None` for an unsigned release (`--allow-unsigned`).
    pub key: Option<KeyId>,
    /// How long checking the signature took (parsing the manifest included).
    pub seconds: f64,
    /// The same plus reading the manifest and its signature (two GETs from a store).
    pub read_seconds: f64,
}

impl Verified {
    /// Who signed it, as history records it.
    pub fn signed_by(&self) -> crate::site::history::SignedBy {
        self.key
            .map_or(crate::site::history::SignedBy::Unsigned, |k| {
                crate::site::history::SignedBy::Key(k.to_string())
            })
    }
}

/// Reads the manifest of `release` and checks its signature against `trust`, before anything
/// it names is downloaded.
pub fn read_manifest(
    store: &dyn Store,
    release: &ReleaseId,
    trust: &Trust,
) -> anyhow::Result<Verified> {
    let started = std::time::Instant::now();
    let key = manifest::manifest_key(release);
    let bytes = store.get(&key)?.with_context(|| {
        format!(
            "{}: there is no release {release} ({key} is missing)",
            store.describe()
        )
    })?;
    let signature = store.get_signature(&key)?;
    let mut verified = check_manifest(
        &format!("the manifest of release {release} in {}", store.describe()),
        release,
        bytes,
        signature,
        trust,
    )?;
    verified.read_seconds = started.elapsed().as_secs_f64();
    Ok(verified)
}

/// Checks a manifest's bytes and signature (from the store, or from releases/<id>/ on the
/// host): it parses, it is the release asked for, and it is signed by a trusted key.
pub fn check_manifest(
    what: &str,
    release: &ReleaseId,
    bytes: Vec<u8>,
    signature: Option<Vec<u8>>,
    trust: &Trust,
) -> anyhow::Result<Verified> {
    let started = std::time::Instant::now();
    let checked = (|| {
        let manifest = Manifest::parse(&bytes).with_context(|| format!("{what} is refused"))?;
        if manifest.release != *release {
            bail!(
                "{what} describes release {}, not {release}",
                manifest.release
            );
        }
        let key = trust.check(&Signed {
            what,
            bytes: &bytes,
            signature: signature.as_deref(),
            comment: &signed::manifest_comment(&manifest),
        })?;
        anyhow::Ok((manifest, key))
    })();
    let (manifest, key) = checked.context("nothing was downloaded or changed")?;
    Ok(Verified {
        manifest,
        bytes,
        signature,
        key,
        seconds: started.elapsed().as_secs_f64(),
        read_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Streams one artifact through SHA-256; `Some(problem)` when it does not match.
pub fn check_artifact(
    store: &dyn Store,
    sha256: &manifest::Sha256,
    size: u64,
    progress: store::Progress,
) -> anyhow::Result<Option<String>> {
    let key = manifest::artifact_key(sha256);
    if store.head(&key)?.is_none() {
        return Ok(Some(format!("{key} is missing")));
    }
    // Sha256 is an io::Write: the download streams straight into it.
    let mut hasher = Sha256::new();
    let got = match store.download(&key, &mut hasher, size, progress) {
        Ok(got) => got,
        Err(e) if e.is::<store::TooLarge>() => return Ok(Some(format!("{e:#}"))),
        Err(e) => return Err(e),
    };
    let actual = manifest::Sha256::from_bytes(hasher.finalize().into());
    Ok(if got != size {
        Some(format!("{key} has {got} bytes, the manifest says {size}"))
    } else if actual != *sha256 {
        Some(format!("{key} has sha256 {actual}"))
    } else {
        None
    })
}
