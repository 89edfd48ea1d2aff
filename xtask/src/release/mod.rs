//! `cargo xtask package` and `cargo xtask release`: build what changed, package it, and
//! publish it to the artifact store in commit-protocol order.
//!
//! 1. Check the store (one clear error before any work when it cannot be used).
//! 2. Read the checkout; compute the release id and every component's input hash.
//! 3. Reuse: a component whose input hash the store already knows is neither built nor
//!    uploaded; its existing artifact goes into the manifest.
//! 4. Build and package the rest into `<target>/xtask/dist` (itself laid out as a store).
//! 5. Publish: artifacts (skipping those present), input records, the manifest, then the
//!    `commits/` and `channels/` pointers. A failure at any step leaves no manifest or
//!    pointer that refers to a missing artifact.
//!
//! Everything it reads back from the store (input records, manifests, pointers) is verified
//! with the repository's public keys before it is used or signed again (`signed.rs`).

pub mod build;
pub mod bundle;
mod signed;
pub mod web;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_host::commands::flags::StoreFlags;
use hitsave_host::kit::store::{self, Store};
use hitsave_schema::{
    self as manifest, Artifact, BundleRef, InputRecord, MANIFEST_SCHEMA, Manifest, Pointer,
    ReleaseId, Revision, SCHEMA, Sha256,
};
use serde::Serialize;
use xtask::binaries;
use xtask::components::{self, ARTIFACT_EPOCH, COMPONENTS, Component};
use xtask::git::Checkout;
use xtask::inputs::{self, Toolchain};
use xtask::package;
use xtask::signing::SigningKey;

use self::signed::{Publisher, Verdict};
use hitsave_host::release::trust::Keys;

use hitsave_host::kit::ui::{Ui, human_bytes};

#[derive(clap::Args)]
pub struct PackageArgs {
    /// Directory to write into, laid out like a store (artifacts/, releases/).
    /// [default: <target dir>/xtask/dist]
    #[arg(long, value_name = "DIR")]
    out: Option<Utf8PathBuf>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    store: StoreFlags,
    /// Point this channel (e.g. main, production) at the release once it is published.
    #[arg(long, value_name = "NAME")]
    channel: Vec<hitsave_schema::Channel>,
    /// Allow a release with uncommitted changes on a channel.
    #[arg(long)]
    allow_dirty: bool,
    /// The minisign secret key that signs the manifest and the pointers (`cargo xtask
    /// keygen`); a file, mode 0600.
    #[arg(long, env = "HITSAVE_SIGNING_KEY", value_name = "FILE")]
    signing_key: Option<Utf8PathBuf>,
    /// Publish without a signature (even when a signing key is set), to a local store only:
    /// marked `unsigned`, and hosts install it only with --allow-unsigned.
    #[arg(long)]
    unsigned: bool,
    /// The public keys whose signatures this release accepts on what it reads back from the
    /// store (input records, manifests, pointers); the signing key must be one of them.
    /// [default: deploy/keys in the checkout]
    #[arg(long, env = "HITSAVE_KEYS", value_name = "DIR")]
    keys: Option<Utf8PathBuf>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
}

/// What happened to one component.
#[derive(Debug, Serialize)]
struct Outcome {
    #[serde(flatten)]
    artifact: Artifact,
    /// `built` (packaged by this run) or `reused` (the store already had these inputs).
    action: &'static str,
    /// Bytes of this artifact sent to the store by this run.
    uploaded_bytes: u64,
}

impl Outcome {
    fn new(artifact: &Artifact, action: &'static str, uploaded_bytes: u64) -> Outcome {
        Outcome {
            artifact: artifact.clone(),
            action,
            uploaded_bytes,
        }
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    release: ReleaseId,
    /// The release's commit.
    commit: hitsave_schema::Commit,
    /// The commit this run released: another than `commit` when it ships exactly what that
    /// earlier release ships (only files no component is built from changed).
    checkout_commit: hitsave_schema::Commit,
    branch: Option<String>,
    dirty: bool,
    store: String,
    manifest: String,
    channels: Vec<hitsave_schema::Channel>,
    /// Every byte sent to the store: artifacts, records, the manifest and pointers.
    uploaded_bytes: u64,
    /// True when the store already had this exact release (or one that ships the same).
    already_published: bool,
    seconds: f64,
    /// The most memory this process held at once (VmHWM), children (cargo, npm) excluded.
    peak_rss_bytes: u64,
    artifacts: Vec<Outcome>,
    /// The CodeDeploy bundle the manifest names (none for `package`, or a release published
    /// before bundles existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<BundleRef>,
    /// The key that signed the manifest, the pointers and the input records; none for an
    /// unsigned release.
    signed_by: Option<String>,
}

pub fn run_package(root: &Utf8Path, args: PackageArgs) -> anyhow::Result<()> {
    let ui = Ui::new();
    let started = Instant::now();
    let out = args
        .out
        .unwrap_or_else(|| xtask::checkout::target_dir(root).join("xtask/dist"));
    let plan = Plan::read(root)?;
    xtask::migrations::check(root).context("refused before anything was built")?;
    let all: Vec<&'static Component> = COMPONENTS.iter().collect();
    let packed = build_and_pack(&ui, root, &plan, &all, &out)?;
    let mut manifest = plan.manifest(packed.iter().map(|(a, _)| a.clone()).collect());
    manifest.unsigned = true;
    let key = manifest::manifest_key(&manifest.release);
    let local = store::LocalStore::new(&out);
    local.put(&key, &manifest::to_bytes(&manifest))?;
    let summary = Summary {
        release: manifest.release.clone(),
        commit: manifest.commit.clone(),
        checkout_commit: plan.checkout.commit.clone(),
        branch: manifest.branch.clone(),
        dirty: manifest.dirty,
        store: local.describe(),
        manifest: out.join(&key).to_string(),
        channels: vec![],
        uploaded_bytes: 0,
        already_published: false,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
        artifacts: manifest
            .artifacts
            .iter()
            .map(|a| Outcome::new(a, "built", 0))
            .collect(),
        bundle: None,
        signed_by: None,
    };
    report(&ui, &summary, args.json, false)
}

pub fn run_release(root: &Utf8Path, args: ReleaseArgs) -> anyhow::Result<()> {
    let ui = Ui::new();
    let started = Instant::now();
    let store = store::open(&args.store.location(), &default_store(root))?;
    store.check()?;
    let signer = signer(&ui, &args, store.as_ref())?;
    let signer = signer.as_ref();
    let keys = trusted_keys(root, &args, signer)?;
    let plan = Plan::read(root)?;
    xtask::migrations::check(root).context("refused before anything was built")?;
    if plan.checkout.is_dirty() && !args.channel.is_empty() && !args.allow_dirty {
        let files: Vec<_> = plan.checkout.dirty.keys().take(5).cloned().collect();
        bail!(
            "the working tree has uncommitted changes ({}{}); a dirty release cannot go on a channel: commit them, or pass --allow-dirty",
            files.join(", "),
            if plan.checkout.dirty.len() > 5 {
                ", ..."
            } else {
                ""
            }
        );
    }
    // Where the bundle's branch deploys: a broken branch_config is refused before any build.
    let deployment_group = bundle::deployment_group(root, plan.checkout.branch.as_deref())?;
    ui.info(&format!("release {} to {}", plan.id, store.describe()));
    let uploaded = AtomicU64::new(0);
    let out = Publisher {
        store: store.as_ref(),
        signer,
        keys: keys.as_ref(),
        uploaded: &uploaded,
    };
    let key = manifest::manifest_key(&plan.id);

    let revision = bundle::revision(&plan.id, &args.store.location(), &default_store(root));
    let contents = inputs::contents_hash(
        &plan.checkout,
        &plan.input_hashes,
        &format!(
            "{} {:?} {}",
            revision.store, revision.endpoint_url, revision.path_style
        ),
    );

    let (manifest, outcomes, already) = match store.get(&key)? {
        Some(bytes) => {
            let existing = Manifest::parse(&bytes)
                .with_context(|| format!("{}: {key} is damaged", store.describe()))?;
            let verdict = out.verify(&key, &bytes, &signed::manifest_doc(&existing).comment)?;
            republish(&ui, &plan, &out, existing, verdict)?
        }
        None => match same_contents(&ui, &plan, &out, &contents)? {
            Some(found) => found,
            None => {
                let (manifest, outcomes) =
                    publish(&ui, root, &plan, &revision, deployment_group, &out)?;
                (manifest, outcomes, false)
            }
        },
    };

    // Pointers last: only now is everything they lead to in the store.
    let pointer = Pointer {
        schema: SCHEMA,
        release: manifest.release.clone(),
        commit: manifest.commit.clone(),
    };
    let put_pointer = |key: &str| out.put(key, &signed::pointer_doc(key, &pointer));
    if !plan.checkout.is_dirty() {
        // The first release of these contents keeps them: a later one ships the same bytes.
        let contents_key = manifest::contents_key(&contents);
        if store.get(&contents_key)?.is_none() {
            put_pointer(&contents_key)?;
        }
        put_pointer(&manifest::commit_key(&plan.checkout.commit))?;
    }
    for channel in &args.channel {
        put_pointer(&manifest::channel_key(channel))?;
        ui.info(&format!("channel {channel} -> {}", manifest.release));
    }

    let summary = Summary {
        release: manifest.release.clone(),
        commit: manifest.commit.clone(),
        checkout_commit: plan.checkout.commit.clone(),
        branch: manifest.branch.clone(),
        dirty: manifest.dirty,
        store: store.describe(),
        manifest: key,
        channels: args.channel.clone(),
        uploaded_bytes: uploaded.load(Ordering::Relaxed),
        already_published: already,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
        artifacts: outcomes,
        bundle: manifest.bundle.clone(),
        signed_by: signer.map(|s| s.id.to_string()),
    };
    report(&ui, &summary, args.json, true)
}

/// The key that signs this release, read before anything is built; `None` only for
/// `--unsigned` to a local store.
fn signer(ui: &Ui, args: &ReleaseArgs, store: &dyn Store) -> anyhow::Result<Option<SigningKey>> {
    match (&args.signing_key, args.unsigned) {
        (_, true) if store.is_local() => {
            ui.info("UNSIGNED (--unsigned): hosts install this release only with --allow-unsigned, from this local store");
            Ok(None)
        }
        (_, true) => bail!(
            "--unsigned is for a local store only: a release in {} must be signed (--signing-key FILE)",
            store.describe()
        ),
        (Some(path), false) => {
            let key = SigningKey::read(path)?;
            ui.info(&format!("signing with key {}", key.id));
            Ok(Some(key))
        }
        (None, false) => bail!(
            "no signing key: pass --signing-key FILE or set HITSAVE_SIGNING_KEY to the file's path (make a pair with `cargo xtask keygen`); to try a release out in a local store, --unsigned"
        ),
    }
}

/// The public keys this release trusts when it reads the store back (`--keys`, else the
/// repository's deploy/keys/). A signed release needs them, and its own key among them: what
/// it signs must verify where it is read back, by the next release and by the hosts.
fn trusted_keys(
    root: &Utf8Path,
    args: &ReleaseArgs,
    signer: Option<&SigningKey>,
) -> anyhow::Result<Option<Keys>> {
    let dir = args
        .keys
        .clone()
        .unwrap_or_else(|| root.join("deploy/keys"));
    let Some(signer) = signer else {
        return Ok(Keys::load(&dir).ok());
    };
    let keys = Keys::load(&dir).with_context(|| {
        format!("a signed release verifies what it reads back from the store with the keys in {dir}, and there are none: commit the .pub file of the signing key there (`cargo xtask keygen` writes it)")
    })?;
    if !keys.trusts(signer.id) {
        bail!(
            "the signing key {} is not among the keys this release trusts ({}): commit its .pub file to {dir}, as hosts trust it, or sign with a key that is there",
            signer.id,
            keys.describe()
        );
    }
    Ok(Some(keys))
}

/// The local store used when no `--store` is given.
pub fn default_store(root: &Utf8Path) -> Utf8PathBuf {
    xtask::checkout::target_dir(root).join("hitsave-store")
}

/// Each `.sql` file in `dir` (what `sqlx::migrate!` embeds), by name, with its SHA-256.
fn migration_refs(dir: &Utf8Path) -> anyhow::Result<Vec<hitsave_schema::MigrationRef>> {
    use sha2::Digest;
    let mut refs = Vec::new();
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("cannot read {dir}"))?
    {
        let entry = entry?;
        let file = entry.file_name().to_owned();
        if !file.ends_with(".sql") {
            continue;
        }
        let bytes =
            std::fs::read(entry.path()).with_context(|| format!("cannot read {}", entry.path()))?;
        refs.push(hitsave_schema::MigrationRef {
            file,
            sha256: Sha256::from_bytes(sha2::Sha256::digest(&bytes).into()),
        });
    }
    refs.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(refs)
}

/// What a release is made of, known before anything is built.
struct Plan {
    checkout: Checkout,
    toolchain: Toolchain,
    id: ReleaseId,
    /// Input hash per component, in table order.
    input_hashes: Vec<(&'static Component, Sha256)>,
    /// What the migrator embeds: `migrations/*.sql`, by name.
    migrations: Vec<hitsave_schema::MigrationRef>,
}

impl Plan {
    fn read(root: &Utf8Path) -> anyhow::Result<Plan> {
        let checkout = Checkout::read(root)?;
        let all: Vec<&Component> = COMPONENTS.iter().collect();
        let toolchain = Toolchain::detect(&all)?;
        let id = inputs::release_id(&checkout);
        let input_hashes = COMPONENTS
            .iter()
            .map(|c| (c, inputs::input_hash(&checkout, &toolchain, c)))
            .collect();
        Ok(Plan {
            migrations: migration_refs(&checkout.root.join("migrations"))?,
            checkout,
            toolchain,
            id,
            input_hashes,
        })
    }

    fn input_hash(&self, component: &Component) -> &Sha256 {
        &self
            .input_hashes
            .iter()
            .find(|(c, _)| c.name == component.name)
            .expect("every component has an input hash")
            .1
    }

    fn manifest(&self, mut artifacts: Vec<Artifact>) -> Manifest {
        artifacts.sort_by_key(|a| components::position(&a.component));
        let mut tools = self.toolchain.versions.clone();
        tools.insert("xtask".into(), env!("CARGO_PKG_VERSION").into());
        Manifest {
            schema: MANIFEST_SCHEMA,
            release: self.id.clone(),
            commit: self.checkout.commit.clone(),
            commit_time: self.checkout.commit_time,
            branch: self.checkout.branch.clone(),
            dirty: self.checkout.is_dirty(),
            tools,
            artifacts,
            bundle: None,
            unsigned: false,
            migrations: Some(self.migrations.clone()),
        }
    }
}

/// Builds and packages the components into `<out>/artifacts/`.
fn build_and_pack(
    ui: &Ui,
    root: &Utf8Path,
    plan: &Plan,
    components: &[&'static Component],
    out: &Utf8Path,
) -> anyhow::Result<Vec<(Artifact, Utf8PathBuf)>> {
    let staged = build::build(ui, root, components, ARTIFACT_EPOCH)?;
    check_binaries(ui, &staged)?;
    let mut packed = Vec::new();
    for (component, dir) in staged {
        let bar = ui.spinner(&format!("packaging {}", component.name));
        let p = package::pack_dir(&dir, &out.join("artifacts"), ARTIFACT_EPOCH)
            .with_context(|| format!("packaging {} failed", component.name))?;
        bar.finish_and_clear();
        ui.info(&format!(
            "{}: {} entries, {}, sha256 {}",
            component.name,
            p.entries,
            human_bytes(p.size),
            p.sha256
        ));
        let unpacked = p.unpacked();
        packed.push((
            Artifact {
                component: component.name.to_owned(),
                sha256: p.sha256,
                size: p.size,
                input_hash: plan.input_hash(component).to_owned(),
                target: plan.toolchain.target_of(component),
                unpacked,
            },
            p.path,
        ));
    }
    Ok(packed)
}

/// Refuses, before anything is packaged or uploaded, every staged binary that needs a newer
/// glibc than where it runs offers; names the binary, the symbols and the versions.
fn check_binaries(ui: &Ui, staged: &[(&'static Component, Utf8PathBuf)]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (component, dir) in staged {
        let found = binaries::check(component, dir)
            .with_context(|| format!("cannot check the binaries of {}", component.name))?;
        for b in found.iter().filter(|b| b.too_new.is_empty()) {
            if let Some(newest) = b.newest {
                ui.info(&format!(
                    "{}: {} needs glibc {newest} at most; {} has {}",
                    component.name,
                    b.path,
                    component.runs_on.describe(),
                    component.runs_on.glibc()
                ));
            }
        }
        problems.extend(binaries::problems(component, &found));
    }
    if !problems.is_empty() {
        bail!(
            "{}\nnothing was published: these binaries would not start where they run. Build in \
             the release environment, Debian 12 (the rust:1.95.0-bookworm image, as \
             .github/workflows/release.yml does)",
            problems.join("\n")
        );
    }
    Ok(())
}

/// A first publication of this release id.
fn publish(
    ui: &Ui,
    root: &Utf8Path,
    plan: &Plan,
    revision: &Revision,
    deployment_group: Option<String>,
    out: &Publisher,
) -> anyhow::Result<(Manifest, Vec<Outcome>)> {
    let store = out.store;
    let mut outcomes = Vec::new();
    let mut to_build = Vec::new();
    for (component, input_hash) in &plan.input_hashes {
        match find_reusable(ui, out, component.name, input_hash)? {
            Some(record) => {
                ui.info(&format!(
                    "{}: inputs already built; reusing {}",
                    component.name, record.sha256
                ));
                let artifact = Artifact {
                    component: component.name.to_owned(),
                    sha256: record.sha256,
                    size: record.size,
                    input_hash: input_hash.clone(),
                    target: record.target,
                    unpacked: record.unpacked,
                };
                outcomes.push(Outcome::new(&artifact, "reused", 0));
            }
            None => to_build.push(*component),
        }
    }

    if !to_build.is_empty() {
        let dist = xtask::checkout::target_dir(root).join("xtask/dist");
        let packed = build_and_pack(ui, root, plan, &to_build, &dist)?;
        let total: u64 = packed.iter().map(|(a, _)| a.size).sum();
        let bar = ui.bytes("uploading artifacts", total);
        let mut sent_per_artifact = Vec::new();
        for (artifact, path) in &packed {
            let sent = upload_unless_present(store, path, &artifact.sha256, artifact.size, &|n| {
                bar.inc(n)
            })?;
            out.uploaded.fetch_add(sent, Ordering::Relaxed);
            sent_per_artifact.push(sent);
        }
        bar.finish_and_clear();
        // The build-once index, only once the artifacts it names are in the store.
        for ((artifact, _), sent) in packed.iter().zip(sent_per_artifact) {
            let recorded = record_inputs(ui, out, artifact)?;
            if recorded.sha256 == artifact.sha256 {
                outcomes.push(Outcome::new(artifact, "built", sent));
            } else {
                // Another release recorded these inputs first, with other bytes (a build that
                // is not reproducible): use its artifact, so both releases name the same one.
                ui.info(&format!(
                    "{}: another release recorded these inputs first; using its {} instead of {}",
                    artifact.component, recorded.sha256, artifact.sha256
                ));
                let theirs = Artifact {
                    sha256: recorded.sha256,
                    size: recorded.size,
                    target: recorded.target,
                    unpacked: recorded.unpacked,
                    ..artifact.clone()
                };
                outcomes.push(Outcome::new(&theirs, "reused", sent));
            }
        }
    }

    outcomes.sort_by_key(|o| components::position(&o.artifact.component));
    let mut manifest = plan.manifest(outcomes.iter().map(|o| o.artifact.clone()).collect());

    // The CodeDeploy bundle, before the manifest that names it and lists its files.
    let bar = ui.spinner("making the CodeDeploy bundle");
    let dist = xtask::checkout::target_dir(root).join("xtask/dist");
    let bundle = bundle::make(root, revision, &dist)?;
    let sent = upload_unless_present(
        store,
        &bundle.packed.path,
        &bundle.packed.sha256,
        bundle.packed.size,
        &|_| {},
    )?;
    out.uploaded.fetch_add(sent, Ordering::Relaxed);
    bar.finish_and_clear();
    ui.info(&format!(
        "bundle: {} files, {}, sha256 {}{}",
        bundle.files.len(),
        human_bytes(bundle.packed.size),
        bundle.packed.sha256,
        deployment_group.as_deref().map_or_else(
            || "; its branch is not deployed".to_owned(),
            |g| format!("; deploys to {g}")
        )
    ));
    // The object's ETag (and version), so that CodeDeploy refuses a replaced one.
    let object = store
        .head(&manifest::artifact_key(&bundle.packed.sha256))?
        .context("the bundle just uploaded is not in the store")?;
    manifest.bundle = Some(BundleRef {
        sha256: bundle.packed.sha256,
        size: bundle.packed.size,
        etag: object.etag,
        version_id: object.version_id,
        files: bundle.files,
        deployment_group,
    });
    manifest.unsigned = !out.signs();
    out.put(
        &manifest::manifest_key(&manifest.release),
        &signed::manifest_doc(&manifest),
    )?;
    Ok((manifest, outcomes))
}

/// Uploads the packed file `path` as `artifacts/<sha256>.tar.gz` unless the store already has
/// that object with this size (and this sha256, when the store records one); the bytes sent.
/// An object already there counts as progress.
fn upload_unless_present(
    store: &dyn Store,
    path: &Utf8Path,
    sha256: &Sha256,
    size: u64,
    progress: store::Progress,
) -> anyhow::Result<u64> {
    let key = manifest::artifact_key(sha256);
    let present = store
        .head(&key)?
        .is_some_and(|info| info.size == size && info.sha256.as_ref().is_none_or(|s| sha256 == s));
    if present {
        progress(size);
        return Ok(0);
    }
    store.upload(&key, path, sha256, size, progress)?;
    Ok(size)
}

/// Records that `artifact` is what its inputs build, unless a trusted record is there already;
/// returns the record the store holds afterwards. Writes happen only where none was found, and
/// the record's bytes depend on the inputs alone, so two releases racing on the same inputs
/// (the store has no conditional writes) write identical bytes when their builds agree. When
/// they do not, the record read back wins, and both releases name its artifact.
fn record_inputs(ui: &Ui, out: &Publisher, artifact: &Artifact) -> anyhow::Result<InputRecord> {
    let ours = InputRecord {
        schema: MANIFEST_SCHEMA,
        component: artifact.component.clone(),
        input_hash: artifact.input_hash.clone(),
        sha256: artifact.sha256.clone(),
        size: artifact.size,
        target: artifact.target.clone(),
        unpacked: artifact.unpacked,
    };
    if let Some(theirs) = find_reusable(ui, out, &ours.component, &ours.input_hash)? {
        return Ok(theirs);
    }
    let key = manifest::input_key(&ours.component, &ours.input_hash);
    out.put(&key, &signed::input_doc(&key, &ours))?;
    Ok(find_reusable(ui, out, &ours.component, &ours.input_hash)?.unwrap_or(ours))
}

/// The store's record for these inputs, if it is one this release trusts and its artifact is
/// really there. A record whose signature fails refuses the release; a signed release does
/// not reuse an unsigned one (written before records were signed, or stripped): it builds the
/// component again and writes a signed record.
fn find_reusable(
    ui: &Ui,
    out: &Publisher,
    component: &str,
    input_hash: &Sha256,
) -> anyhow::Result<Option<InputRecord>> {
    let store = out.store;
    let key = manifest::input_key(component, input_hash);
    let Some(bytes) = store.get(&key)? else {
        return Ok(None);
    };
    let record = InputRecord::parse(&bytes)
        .with_context(|| format!("{}: {key} is damaged", store.describe()))?;
    let verdict = out.verify(&key, &bytes, &signed::input_doc(&key, &record).comment)?;
    if verdict == Verdict::Unsigned && out.signs() {
        ui.info(&format!(
            "{component}: {key} is not signed, so this signed release does not reuse it: building again"
        ));
        return Ok(None);
    }
    if record.component != component || record.input_hash != *input_hash {
        return Ok(None);
    }
    let present = store
        .head(&manifest::artifact_key(&record.sha256))?
        .is_some_and(|info| info.size == record.size);
    Ok(present.then_some(record))
}

/// A clean commit whose release would ship what an earlier release ships (the store's
/// `contents/` pointer for these contents) is that release: nothing is built or uploaded, and
/// only its commit pointer is new. `None` when there is none, or its manifest is gone. The
/// pointer and the manifest are verified before they are used or signed again.
fn same_contents(
    ui: &Ui,
    plan: &Plan,
    out: &Publisher,
    contents: &Sha256,
) -> anyhow::Result<Option<(Manifest, Vec<Outcome>, bool)>> {
    let store = out.store;
    if plan.checkout.is_dirty() {
        return Ok(None);
    }
    let key = manifest::contents_key(contents);
    let Some(bytes) = store.get(&key)? else {
        return Ok(None);
    };
    let pointer = Pointer::parse(&bytes)
        .with_context(|| format!("{}: {key} is damaged", store.describe()))?;
    if out.verify(&key, &bytes, &signed::pointer_doc(&key, &pointer).comment)? == Verdict::Unsigned
        && out.signs()
    {
        ui.info(&format!(
            "{key} is not signed (an unsigned release wrote it): not used by this signed release"
        ));
        return Ok(None);
    }
    let manifest_key = manifest::manifest_key(&pointer.release);
    let Some(bytes) = store.get(&manifest_key)? else {
        return Ok(None);
    };
    let existing = Manifest::parse(&bytes).with_context(|| {
        format!(
            "{}: the manifest of release {} is damaged",
            store.describe(),
            pointer.release
        )
    })?;
    let verdict = out.verify(
        &manifest_key,
        &bytes,
        &signed::manifest_doc(&existing).comment,
    )?;
    ui.info(&format!(
        "commit {} ships exactly what release {} ships (only files that no component is built from changed): it is that release",
        &plan.checkout.commit[..12],
        existing.release
    ));
    republish(ui, plan, out, existing, verdict).map(Some)
}

/// The store already has a manifest under this id (verified: `verdict`): it must be this very
/// release. Its signature is made again when another key made it (key rotation); its bytes
/// never change.
fn republish(
    ui: &Ui,
    plan: &Plan,
    out: &Publisher,
    existing: Manifest,
    verdict: Verdict,
) -> anyhow::Result<(Manifest, Vec<Outcome>, bool)> {
    let store = out.store;
    for (component, input_hash) in &plan.input_hashes {
        let same = existing
            .artifact(component.name)
            .is_some_and(|a| a.input_hash == *input_hash);
        if !same {
            bail!(
                "{}: release {} was already published from different inputs ({} differs; a new toolchain?). A release id is immutable: make a new commit to release again",
                store.describe(),
                existing.release,
                component.name
            );
        }
    }
    for a in &existing.artifacts {
        let key = manifest::artifact_key(&a.sha256);
        if store.head(&key)?.is_none_or(|info| info.size != a.size) {
            bail!(
                "{}: release {} is published but {key} ({}) is missing or has the wrong size; run `cargo xtask verify --release {}`",
                store.describe(),
                existing.release,
                a.component,
                existing.release
            );
        }
    }
    match (out.signs(), verdict) {
        (true, Verdict::Unsigned) if existing.unsigned => bail!(
            "{}: release {} was published with --unsigned, and a release id is immutable: make a new commit to release it signed",
            store.describe(),
            existing.release
        ),
        (true, Verdict::Unsigned) => bail!(
            "{}: the manifest of release {} has no signature, though it is not marked unsigned: refused, nothing was signed or uploaded. Its signature was removed: find out who (the bucket's access log), then make a new commit to release again",
            store.describe(),
            existing.release
        ),
        (true, Verdict::Signed(_)) => out.put(
            &manifest::manifest_key(&existing.release),
            &signed::manifest_doc(&existing),
        )?,
        (false, _) => {}
    }
    ui.info(&format!(
        "release {} is already in the store: nothing to build or upload",
        existing.release
    ));
    let outcomes = existing
        .artifacts
        .iter()
        .map(|a| Outcome::new(a, "reused", 0))
        .collect();
    Ok((existing, outcomes, true))
}

/// This process's peak resident set size, from /proc (0 where there is none).
fn peak_rss_bytes() -> u64 {
    peak_rss_of("self")
}

/// The peak resident set size (VmHWM) of `/proc/<process>` (`self` or a pid); 0 once it is gone.
pub(crate) fn peak_rss_of(process: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Prints the summary; `published` is false for `package`, which only writes locally.
fn report(ui: &Ui, summary: &Summary, json: bool, published: bool) -> anyhow::Result<()> {
    let table = markdown_table(summary);
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        eprintln!("{table}");
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(table.as_bytes()))
            .with_context(|| format!("cannot append to GITHUB_STEP_SUMMARY ({path:?})"))?;
    }
    let outcome = if !published {
        format!("packaged into {}", summary.store)
    } else if summary.already_published {
        format!(
            "was already published ({} uploaded)",
            human_bytes(summary.uploaded_bytes)
        )
    } else {
        format!(
            "published ({} uploaded)",
            human_bytes(summary.uploaded_bytes)
        )
    };
    ui.info(&format!(
        "release {} {outcome} in {:.1} s",
        summary.release, summary.seconds
    ));
    Ok(())
}

fn markdown_table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Release `{}`\n", s.release);
    let _ = writeln!(
        out,
        "Commit `{}`{}{} → {}\n",
        &s.commit[..12],
        s.branch
            .as_deref()
            .map(|b| format!(" on `{b}`"))
            .unwrap_or_default(),
        if s.dirty { " (dirty)" } else { "" },
        s.store
    );
    let _ = writeln!(out, "| component | action | size | sha256 | target |");
    let _ = writeln!(out, "|---|---|---:|---|---|");
    for o in &s.artifacts {
        let a = &o.artifact;
        let _ = writeln!(
            out,
            "| {} | {} | {} | `{}` | {} |",
            a.component,
            o.action,
            human_bytes(a.size),
            &a.sha256[..16],
            a.target
        );
    }
    let _ = writeln!(
        out,
        "\n{} uploaded{}.",
        human_bytes(s.uploaded_bytes),
        if s.channels.is_empty() {
            String::new()
        } else {
            format!(
                "; channels: {}",
                s.channels
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    out
}
