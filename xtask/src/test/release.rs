//! The `release` test suite: `cargo xtask package`, `release` and `verify` for real, against a
//! local store, a tmpfs that runs out of space, and a real Garage S3 server.
//!
//! Determinism is checked across two checkouts of the same commit in different directories
//! (kept under the target directory, so CI's cache keeps their builds warm).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail, ensure};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_host::kit::store::{S3Options, S3Store, Store};
use hitsave_schema::{self as manifest, Manifest, Pointer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use xtask::signing::KeyId;

use crate::child::free_port;
use crate::test::garage::Garage;

pub fn run(root: &Utf8Path) -> anyhow::Result<()> {
    let t = Tester::new(root)?;
    let head = git(root, &["rev-parse", "HEAD"])?;
    let root_clean = git(root, &["status", "--porcelain", "--untracked-files=all"])?.is_empty();

    // Two checkouts of HEAD in different directories; the project itself serves as the first
    // when it is clean (as in CI), which saves a build.
    let twins = xtask::checkout::target_dir(root).join("xtask/twins");
    let a = if root_clean {
        root.to_owned()
    } else {
        checkout(root, &twins.join("a"), &head)?
    };
    let b = checkout(root, &twins.join("b"), &head)?;
    let (manifest, dist) = determinism(&t, &a, &b, &head)?;
    own_binaries_run_where_they_go(&t.root, &a)?;

    let work = xtask::checkout::target_dir(root)
        .join(format!("xtask/release-tests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    glibc_too_new(&b, &work)?;
    missing_tools(&t, &work)?;
    let web_commit = web_only_commit(&b)?;
    local_store(&t, &work, &b, &head, &web_commit, root_clean)?;
    tooling_change_ships_nothing(&work, &b, &head)?;
    unsafe_migration_refused(&work, &b)?;
    out_of_space(&t, &work, root_clean)?;

    let garage = Garage::start()?;
    s3_store(&t, &garage, &dist, root_clean)?;
    s3_racing_releases(&t, &garage, &a, &b, &head, &web_commit)?;
    s3_errors(&t, &garage)?;
    s3_multipart(&garage, &work)?;
    s3_list_and_delete(&garage)?;
    s3_interrupted(&t, &garage, root_clean)?;
    drop(garage);
    crate::test::aws::scenario(&t, &work)?;

    std::fs::remove_dir_all(&work)?;
    eprintln!(
        "xtask: release suite: all checks passed (release {})",
        manifest.release
    );
    Ok(())
}

/// Runs this very xtask binary with a clean AWS environment.
pub(crate) struct Tester {
    exe: PathBuf,
    root: Utf8PathBuf,
}

impl Tester {
    /// The xtask binary under test.
    pub(crate) fn exe(&self) -> &std::path::Path {
        &self.exe
    }

    /// The checkout under test.
    pub(crate) fn root(&self) -> &Utf8Path {
        &self.root
    }

    /// The same checkout, run by another build of xtask (`bench deploy --against`).
    pub(crate) fn with_exe(&self, exe: PathBuf) -> Tester {
        Tester {
            exe,
            root: self.root.clone(),
        }
    }

    pub(crate) fn new(root: &Utf8Path) -> anyhow::Result<Tester> {
        Ok(Tester {
            exe: hitsave_host::kit::process::current_exe()
                .context("cannot find the xtask binary")?,
            root: root.to_owned(),
        })
    }

    pub(crate) fn command(&self, args: &[&str], env: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).current_dir(&self.root).env("CI", "true");
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "HITSAVE_STORE",
            "HITSAVE_S3_PATH_STYLE",
            "GITHUB_STEP_SUMMARY",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        // No watch after a cutover unless a test asks for one (`--watch SECS`).
        cmd.env("HITSAVE_WATCH_SECONDS", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs xtask and expects success; returns the JSON it printed. Its log goes to ours.
    fn ok(&self, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Value> {
        eprintln!("xtask: test: xtask {}", args.join(" "));
        let out = self
            .command(args, env)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run xtask")?;
        if !out.status.success() {
            bail!("`xtask {}` failed ({})", args.join(" "), out.status);
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("`xtask {}` printed no JSON", args.join(" ")))
    }

    /// Runs xtask and expects failure; returns what it printed on stderr.
    pub(crate) fn fails(&self, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<String> {
        let out = self.output(args, env)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            bail!(
                "`xtask {}` succeeded but should have failed:\n{stderr}",
                args.join(" ")
            );
        }
        Ok(stderr)
    }

    fn output(&self, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Output> {
        eprintln!("xtask: test: xtask {}", args.join(" "));
        self.command(args, env).output().context("cannot run xtask")
    }
}

pub(crate) fn git(dir: &Utf8Path, args: &[&str]) -> anyhow::Result<String> {
    Ok(xtask::git::run(dir, args, None)?.trim().to_owned())
}

/// Commits what is staged in a test checkout, as a fixed test author.
pub(crate) fn commit(dir: &Utf8Path, message: &str) -> anyhow::Result<()> {
    git(
        dir,
        &[
            "-c",
            "user.name=xtask",
            "-c",
            "user.email=xtask@localhost",
            "commit",
            "--quiet",
            "-m",
            message,
        ],
    )?;
    Ok(())
}

/// A clean checkout of `commit` at `dir`, reusing an earlier one (and its ignored build
/// outputs: target/, node_modules/) when there is one.
pub(crate) fn checkout(
    root: &Utf8Path,
    dir: &Utf8Path,
    commit: &str,
) -> anyhow::Result<Utf8PathBuf> {
    if !dir.join(".git").exists() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.parent().expect("twins have a parent"))?;
        git(
            root,
            &[
                "clone",
                "--quiet",
                "--no-checkout",
                root.as_str(),
                dir.as_str(),
            ],
        )?;
    }
    git(dir, &["fetch", "--quiet", root.as_str(), commit])?;
    git(dir, &["checkout", "--quiet", "--force", "--detach", commit])?;
    git(dir, &["clean", "--quiet", "-d", "--force"])?;
    Ok(dir.to_owned())
}

/// `cargo xtask package` in both checkouts: byte-identical tarballs and the same release id;
/// GNU tar and sha256sum agree with the manifest.
fn determinism(
    t: &Tester,
    a: &Utf8Path,
    b: &Utf8Path,
    head: &str,
) -> anyhow::Result<(Manifest, Utf8PathBuf)> {
    let package = |dir: &Utf8Path| -> anyhow::Result<(Manifest, Utf8PathBuf)> {
        let out = dir.join("target/xtask/determinism-dist");
        let _ = std::fs::remove_dir_all(&out);
        let mut cmd = if dir == t.root {
            t.command(&["package", "--out", out.as_str(), "--json"], &[])
        } else {
            xtask_in(dir, &["package", "--out", out.as_str(), "--json"])
        };
        eprintln!("xtask: test: packaging in {dir}");
        let output = cmd
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run xtask package")?;
        ensure!(output.status.success(), "xtask package in {dir} failed");
        let summary: Value = serde_json::from_slice(&output.stdout)?;
        let key =
            manifest::manifest_key(&summary["release"].as_str().context("no release")?.parse()?);
        let manifest = Manifest::parse(&std::fs::read(out.join(key))?)?;
        Ok((manifest, out))
    };
    let (ma, out_a) = package(a)?;
    let (mb, out_b) = package(b)?;

    ensure!(
        ma.release == mb.release,
        "release ids differ: {} vs {}",
        ma.release,
        mb.release
    );
    ensure!(
        ma.commit == head && !ma.dirty,
        "the manifest names {} (dirty: {})",
        ma.commit,
        ma.dirty
    );
    ensure!(
        ma.artifacts == mb.artifacts,
        "two checkouts of {head} gave different artifacts:\n{:#?}\n{:#?}",
        ma.artifacts,
        mb.artifacts
    );
    let stamp = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", xtask::components::ARTIFACT_EPOCH),
            "+%Y-%m-%d %H:%M",
        ])
        .output()?;
    let stamp = String::from_utf8(stamp.stdout)?.trim().to_owned();
    for artifact in &ma.artifacts {
        let name = format!("artifacts/{}.tar.gz", artifact.sha256);
        let (fa, fb) = (out_a.join(&name), out_b.join(&name));
        ensure!(
            std::fs::read(&fa)? == std::fs::read(&fb)?,
            "{} differs between the checkouts",
            artifact.component
        );
        let sum = Command::new("sha256sum").arg(&fa).output()?;
        let sum = String::from_utf8(sum.stdout)?;
        ensure!(
            sum.split_whitespace().next() == Some(artifact.sha256.as_str()),
            "sha256sum of {} says {sum}",
            artifact.component
        );
        ensure!(
            std::fs::metadata(&fa)?.len() == artifact.size,
            "{}: size differs",
            artifact.component
        );
        check_tar_listing(&fa, &stamp)
            .with_context(|| format!("artifact {}", artifact.component))?;
    }
    // The binaries do not mention where the checkout lived.
    for dir in [a, b] {
        let binary = dir.join("target/xtask/stage/api/bin/hitsave");
        let binary = if binary.exists() {
            binary
        } else {
            xtask::checkout::target_dir(&t.root).join("xtask/stage/api/bin/hitsave")
        };
        let bytes = std::fs::read(&binary)?;
        let needle = dir.as_str().as_bytes();
        ensure!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{binary} contains the checkout path {dir}"
        );
    }
    eprintln!(
        "xtask: test: {} artifacts are byte-identical across {a} and {b}; release {}",
        ma.artifacts.len(),
        ma.release
    );
    Ok((ma, out_a))
}

/// `tar --utc -tvzf`: entries sorted as `--sort=name` sorts them, owned by 0/0, dated at
/// ARTIFACT_EPOCH (not the commit's time), with normalised modes.
fn check_tar_listing(file: &Utf8Path, stamp: &str) -> anyhow::Result<()> {
    let out = Command::new("tar")
        .args(["--utc", "--numeric-owner", "-tvzf"])
        .arg(file)
        .output()?;
    ensure!(out.status.success(), "GNU tar cannot read {file}");
    let listing = String::from_utf8(out.stdout)?;
    let mut names = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        ensure!(fields.len() >= 6, "odd tar line {line:?}");
        ensure!(
            matches!(
                fields[0],
                "-rw-r--r--" | "-rwxr-xr-x" | "drwxr-xr-x" | "lrwxrwxrwx"
            ),
            "mode {} in {line:?}",
            fields[0]
        );
        ensure!(fields[1] == "0/0", "owner {} in {line:?}", fields[1]);
        let date = format!("{} {}", fields[3], fields[4]);
        ensure!(date == stamp, "date {date} (expected {stamp}) in {line:?}");
        names.push(fields[5].trim_end_matches('/').to_owned());
    }
    ensure!(!names.is_empty(), "{file} is empty");
    let mut sorted = names.clone();
    sorted.sort_by(|x, y| x.split('/').cmp(y.split('/')));
    ensure!(names == sorted, "entries are not in --sort=name order");
    Ok(())
}

/// Without npm (or git) on PATH, a release names the missing tool and how to install it,
/// before it builds or publishes anything.
fn missing_tools(t: &Tester, work: &Utf8Path) -> anyhow::Result<()> {
    let store = work.join("tools-store");
    for (missing, expected) in [
        ("node", "node is missing: install Node.js"),
        ("git", "error: git is missing: install it"),
    ] {
        let bin = work.join(format!("path-without-{missing}"));
        std::fs::create_dir_all(&bin)?;
        for tool in ["git", "cargo", "rustc", "node", "npm"] {
            if tool == missing || (missing == "node" && tool == "npm") {
                continue;
            }
            let found =
                crate::tools::which(tool).with_context(|| format!("{tool} is not on PATH"))?;
            std::os::unix::fs::symlink(&found, bin.join(tool))?;
        }
        let err = t.fails(
            &["release", "--store", store.as_str(), "--allow-dirty"],
            &[("PATH", bin.to_string())],
        )?;
        ensure!(
            err.contains(expected),
            "without {missing} on PATH, release said:\n{err}"
        );
        ensure!(
            !store.join("releases").exists() && !store.join("artifacts").exists(),
            "a release without {missing} wrote to the store"
        );
        eprintln!(
            "xtask: test: without {missing}: {}",
            err.lines().last().unwrap_or_default()
        );
    }
    Ok(())
}

/// No key, no release; `--unsigned` only to a local store, marked, and refused by hosts
/// unless they allow it.
fn signing_refusals(
    t: &Tester,
    work: &Utf8Path,
    signed_store: &Utf8Path,
    args: &[&str],
) -> anyhow::Result<()> {
    let before = list_files(signed_store)?;
    let out = t
        .command(args, &[])
        .env_remove("HITSAVE_SIGNING_KEY")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("no signing key")
            && err.contains("cargo xtask keygen"),
        "a release without a key:\n{err}"
    );
    ensure!(
        list_files(signed_store)? == before,
        "a refused release changed the store"
    );

    let store = work.join("unsigned-store");
    let unsigned = t.ok(
        &[
            "release",
            "--store",
            store.as_str(),
            "--unsigned",
            "--allow-dirty",
            "--json",
        ],
        &[],
    )?;
    let release = unsigned["release"].as_str().context("no release")?;
    let key = manifest::manifest_key(&release.parse()?);
    let m = Manifest::parse(&std::fs::read(store.join(&key))?)?;
    ensure!(
        m.unsigned
            && unsigned["signed_by"].is_null()
            && !store.join(manifest::signed::signature_key(&key)).exists(),
        "an --unsigned release is not marked so: {unsigned}"
    );
    let verify = ["verify", "--store", store.as_str(), "--release", release];
    let err = t.fails(&verify, &[])?;
    ensure!(
        err.contains("is not signed"),
        "verify of an unsigned release:\n{err}"
    );
    let mut allowed = verify.to_vec();
    allowed.push("--allow-unsigned");
    let out = t.output(&allowed, &[])?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).contains("signature: NONE"),
        "verify --allow-unsigned:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&store)?;
    eprintln!(
        "xtask: test: no key, no release; --unsigned is marked, and refused unless --allow-unsigned"
    );
    Ok(())
}

fn dirty_flag(root_clean: bool) -> Vec<&'static str> {
    if root_clean {
        vec![]
    } else {
        vec!["--allow-dirty"]
    }
}

fn local_store(
    t: &Tester,
    work: &Utf8Path,
    twin: &Utf8Path,
    head: &str,
    web_commit: &str,
    root_clean: bool,
) -> anyhow::Result<()> {
    let store = work.join("local-store");
    let mut args = vec![
        "release",
        "--store",
        store.as_str(),
        "--channel",
        "ci",
        "--json",
    ];
    args.extend(dirty_flag(root_clean));
    let step_summary = work.join("step-summary.md");
    std::fs::write(&step_summary, "earlier steps\n")?;
    let first = t.ok(&args, &[("GITHUB_STEP_SUMMARY", step_summary.to_string())])?;
    let release = first["release"].as_str().context("no release")?.to_owned();
    let table = std::fs::read_to_string(&step_summary)?;
    ensure!(
        table.starts_with("earlier steps\n")
            && table.contains(&format!("### Release `{release}`"))
            && [
                "| api | built",
                "| migrate | built",
                "| web | built",
                "| xtask | built"
            ]
            .iter()
            .all(|row| table.contains(row)),
        "GITHUB_STEP_SUMMARY did not get the release table:\n{table}"
    );
    ensure!(
        first["uploaded_bytes"].as_u64() > Some(0),
        "nothing was uploaded: {first}"
    );
    ensure!(
        store
            .join(manifest::manifest_key(&release.parse()?))
            .is_file()
    );
    ensure!(store.join(manifest::channel_key(&"ci".parse()?)).is_file());
    let run_key = crate::test::signing::run_key()?;
    for key in [
        manifest::manifest_key(&release.parse()?),
        manifest::channel_key(&"ci".parse()?),
    ] {
        ensure!(
            store.join(manifest::signed::signature_key(&key)).is_file(),
            "{key} has no signature beside it"
        );
    }
    ensure!(
        first["signed_by"].as_str().and_then(KeyId::parse) == Some(run_key.id),
        "{first}"
    );
    signing_refusals(t, work, &store, &args)?;

    let again = t.ok(&args, &[])?;
    ensure!(
        again["uploaded_bytes"] == 0,
        "a re-publish uploaded bytes: {again}"
    );
    ensure!(again["already_published"] == true, "{again}");
    t.ok(
        &[
            "verify",
            "--store",
            store.as_str(),
            "--channel",
            "ci",
            "--json",
        ],
        &[],
    )?;

    // A corrupted object is found by verify, which names the component.
    let manifest = Manifest::parse(&std::fs::read(
        store.join(manifest::manifest_key(&release.parse()?)),
    )?)?;
    let api = manifest.artifact("api").context("no api")?;
    let object = store.join(manifest::artifact_key(&api.sha256));
    let good = std::fs::read(&object)?;
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x55;
    std::fs::write(&object, &bad)?;
    let err = t.fails(
        &["verify", "--store", store.as_str(), "--release", &release],
        &[],
    )?;
    ensure!(
        err.contains("api: MISMATCH") && err.contains("damaged"),
        "verify said:\n{err}"
    );
    std::fs::write(&object, &good)?;
    oversized_objects(t, &store, &manifest)?;
    repointed_record_refused(&store, &manifest, twin, web_commit, head)?;

    // Build once, from the other checkout: its HEAD (already published when the project is
    // clean), then a commit that changes only the web app, which rebuilds and uploads web only.
    // The same commit released into an empty store builds everything again, and every
    // component but web comes out with the bytes HEAD's release has.
    let at_head = release_in(twin, &store)?;
    let (next, fresh) = at_commit(twin, web_commit, head, || {
        Ok((
            release_in(twin, &store)?,
            release_in(twin, &work.join("fresh-store"))?,
        ))
    })?;
    same_bytes_for_same_inputs(&at_head, &fresh)?;
    let actions: BTreeMap<String, String> = next["artifacts"]
        .as_array()
        .context("no artifacts")?
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (field("component"), field("action"))
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("api", "reused"),
        ("migrate", "reused"),
        ("web", "built"),
        ("deploy", "reused"),
        ("xtask", "reused"),
    ]
    .into_iter()
    .map(|(c, a)| (c.to_owned(), a.to_owned()))
    .collect();
    ensure!(actions == expected, "after a web-only commit: {actions:?}");
    let web_size = next["artifacts"][2]["size"].as_u64().unwrap_or_default();
    // The new release's CodeDeploy bundle names it, so it is new too.
    let bundle_size = next["bundle"]["size"].as_u64().context("no bundle")?;
    let uploaded = next["uploaded_bytes"].as_u64().unwrap_or_default();
    ensure!(
        uploaded >= web_size + bundle_size && uploaded < web_size + bundle_size + 16_384,
        "a web-only release uploaded {uploaded} bytes for a {web_size}-byte web artifact and a {bundle_size}-byte bundle"
    );

    // A dirty tree does not go on a channel without --allow-dirty, and nothing is published.
    std::fs::write(twin.join("web/public/dirty.txt"), "uncommitted\n")?;
    let before = list_files(&store)?;
    let out = xtask_in(
        twin,
        &["release", "--store", store.as_str(), "--channel", "ci"],
    )
    .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("--allow-dirty"),
        "dirty release:\n{err}"
    );
    ensure!(
        list_files(&store)? == before,
        "a refused release changed the store"
    );
    std::fs::remove_file(twin.join("web/public/dirty.txt"))?;
    eprintln!(
        "xtask: test: local store: publish, 0-byte re-publish, verify, corruption, build-once and dirty refusal all hold"
    );
    Ok(())
}

/// A 2 GiB object under the api artifact's key (a sparse file: no disk used): a download
/// stops at the declared size, having passed on no byte past it, and `verify` calls it a
/// mismatch; a 1 GiB `.minisig` beside the manifest is refused before it is read. Each
/// verify's peak memory is printed and stays under 100 MiB.
fn oversized_objects(t: &Tester, store: &Utf8Path, published: &Manifest) -> anyhow::Result<()> {
    const LIMIT: u64 = 100 << 20;
    let api = published.artifact("api").context("no api")?;
    let key = manifest::artifact_key(&api.sha256);
    let object = store.join(&key);
    let good = std::fs::read(&object)?;
    let grow = |path: &Utf8Path, size: u64| -> anyhow::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?
            .set_len(size)?;
        Ok(())
    };
    grow(&object, 2 << 30)?;
    let result = (|| -> anyhow::Result<()> {
        // In the store's own download: exactly the declared bytes reach the writer.
        let local = hitsave_host::kit::store::LocalStore::new(store);
        let mut sink = Counter(0);
        let err =
            hitsave_host::kit::store::Store::download(&local, &key, &mut sink, api.size, &|_| {})
                .err()
                .context("a 2 GiB object downloaded as if it were the artifact")?;
        ensure!(
            err.is::<hitsave_host::kit::store::TooLarge>() && sink.0 == api.size,
            "a 2 GiB object: {err:#}; {} bytes passed on",
            sink.0
        );
        let release = published.release.as_str();
        let run = crate::child::run_measured(&mut t.command(
            &["verify", "--store", store.as_str(), "--release", release],
            &[],
        ))?;
        ensure!(
            !run.success
                && run.stderr.contains("api: MISMATCH")
                && run
                    .stderr
                    .contains(&format!("larger than the {} bytes declared", api.size)),
            "verify with a 2 GiB object under {key}:\n{}",
            run.stderr
        );
        ensure!(
            run.peak_rss_bytes < LIMIT,
            "verify held {} with a 2 GiB object",
            hitsave_host::kit::ui::human_bytes(run.peak_rss_bytes)
        );
        eprintln!(
            "xtask: test: a 2 GiB object under {key}: the download stopped at the declared {} bytes; verify's peak RSS {}",
            api.size,
            hitsave_host::kit::ui::human_bytes(run.peak_rss_bytes)
        );
        Ok(())
    })();
    std::fs::write(&object, &good)?;
    result?;

    let signature = store.join(manifest::signed::signature_key(&manifest::manifest_key(
        &published.release,
    )));
    let good = std::fs::read(&signature)?;
    grow(&signature, 1 << 30)?;
    let run = crate::child::run_measured(&mut t.command(
        &[
            "verify",
            "--store",
            store.as_str(),
            "--release",
            published.release.as_str(),
        ],
        &[],
    ));
    std::fs::write(&signature, &good)?;
    let run = run?;
    ensure!(
        !run.success && run.stderr.contains("is larger than 4096 bytes: refused"),
        "verify with a 1 GiB signature:\n{}",
        run.stderr
    );
    ensure!(
        run.peak_rss_bytes < LIMIT,
        "verify held {} with a 1 GiB signature",
        hitsave_host::kit::ui::human_bytes(run.peak_rss_bytes)
    );
    eprintln!(
        "xtask: test: a 1 GiB .minisig is refused before it is read; verify's peak RSS {}",
        hitsave_host::kit::ui::human_bytes(run.peak_rss_bytes)
    );
    Ok(())
}

/// An io::Write that counts what it is given.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Someone who can write to the store points the host program's input record at another
/// tarball (the api's, here), keeping its signature: the next signed release, of a web-only
/// commit that would reuse the record, refuses, naming the record and the key, and neither
/// signs nor uploads anything.
fn repointed_record_refused(
    store: &Utf8Path,
    published: &Manifest,
    twin: &Utf8Path,
    web_commit: &str,
    head: &str,
) -> anyhow::Result<()> {
    let xtask = published.artifact("xtask").context("no xtask")?;
    let api = published.artifact("api").context("no api")?;
    let key = manifest::input_key("xtask", &xtask.input_hash);
    let path = store.join(&key);
    let good = std::fs::read(&path)?;
    let mut record = manifest::InputRecord::parse(&good)?;
    ensure!(
        store.join(manifest::signed::signature_key(&key)).is_file(),
        "{key} has no signature"
    );
    record.sha256 = api.sha256.clone();
    record.size = api.size;
    record.unpacked = api.unpacked;
    std::fs::write(&path, manifest::to_bytes(&record))?;
    let before = snapshot(store)?;
    let out = at_commit(twin, web_commit, head, || {
        Ok(xtask_in(twin, &["release", "--store", store.as_str()]).output()?)
    })?;
    std::fs::write(&path, &good)?;
    let err = String::from_utf8_lossy(&out.stderr);
    let run_key = crate::test::signing::run_key()?;
    ensure!(
        !out.status.success()
            && err.contains(&key)
            && err.contains(&format!("by key {}", run_key.id))
            && err.contains("does not verify")
            && err.contains("nothing was signed or uploaded"),
        "a release that found a repointed input record:\n{err}"
    );
    let after = snapshot(store)?;
    ensure!(
        after.len() == before.len()
            && after
                .iter()
                .zip(&before)
                .all(|(a, b)| a == b || a.0 == path.as_str()),
        "a refused release changed the store"
    );
    eprintln!(
        "xtask: test: a repointed input record ({key}) is refused by the next signed release; nothing signed or uploaded"
    );
    Ok(())
}

/// Every file of a local store with its bytes' hash, sorted by path.
fn snapshot(store: &Utf8Path) -> anyhow::Result<Vec<(String, manifest::Sha256)>> {
    list_files(store)?
        .into_iter()
        .map(|f| {
            let (_, sha) = hitsave_host::kit::digest::of_file(Utf8Path::new(&f))?;
            Ok((f, sha))
        })
        .collect()
}

/// This xtask binary run in checkout `dir` as `cargo xtask` there would run: its root and its
/// target directory are `dir`'s. (`cargo xtask` itself would first build the same xtask again,
/// minutes on a cold machine.)
fn xtask_in(dir: &Utf8Path, args: &[&str]) -> Command {
    let exe =
        hitsave_host::kit::process::current_exe().unwrap_or_else(|_| PathBuf::from("cargo-xtask"));
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MANIFEST_DIR")
        .env("CI", "true")
        // Released from main, as CI releases: the bundles deploy to production.
        .env("GITHUB_HEAD_REF", "")
        .env("GITHUB_REF_NAME", "main");
    cmd
}

/// A commit on top of `twin`'s HEAD that changes only the web app; `twin` is left at HEAD.
fn web_only_commit(twin: &Utf8Path) -> anyhow::Result<String> {
    std::fs::write(
        twin.join("web/public/robots.txt"),
        "User-agent: *\nAllow: /\n",
    )?;
    git(twin, &["add", "web/public/robots.txt"])?;
    commit(twin, "test: web only")?;
    let sha = git(twin, &["rev-parse", "HEAD"])?;
    git(twin, &["reset", "--quiet", "--hard", "HEAD~1"])?;
    Ok(sha)
}

/// A commit that edits only the tooling (a test suite, a benchmark and the dev mode) ships
/// nothing new: the host program keeps its input hash, so every artifact and the bundle are
/// the ones HEAD's release has, and the commit's release is HEAD's. Only its commit pointer is
/// written.
fn tooling_change_ships_nothing(
    work: &Utf8Path,
    twin: &Utf8Path,
    head: &str,
) -> anyhow::Result<()> {
    for file in [
        "xtask/src/test/release.rs",
        "xtask/src/bench/mod.rs",
        "xtask/src/dev/mod.rs",
    ] {
        let path = twin.join(file);
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str("// a tooling-only change\n");
        std::fs::write(&path, text)?;
        git(twin, &["add", file])?;
    }
    commit(twin, "test: tooling only")?;
    let tooling_commit = git(twin, &["rev-parse", "HEAD"])?;
    git(twin, &["reset", "--quiet", "--hard", "HEAD~1"])?;

    // HEAD is already in the local store (`local_store` published it).
    let store = work.join("local-store");
    let before = release_in(twin, &store)?;
    let objects = list_files(&store)?;
    // Two releases of the tooling commit, one checkout (its xtask is built once): a normal one,
    // then one that reaches HEAD's manifest, edited in place, through contents/.
    let (after, refused) = at_commit(twin, &tooling_commit, head, || {
        let after = release_in(twin, &store)?;
        let refused = edited_manifest_refused(twin, &store, &before, &tooling_commit)?;
        Ok((after, refused))
    })?;
    ensure!(
        after["release"] == before["release"]
            && after["bundle"] == before["bundle"]
            && artifacts_of(&after)? == artifacts_of(&before)?
            && after["checkout_commit"] == tooling_commit.as_str(),
        "a tooling-only commit shipped something new:\nHEAD: {before}\ntooling-only: {after}"
    );
    let uploaded = after["uploaded_bytes"].as_u64().unwrap_or(u64::MAX);
    ensure!(
        uploaded < 1024,
        "a tooling-only release uploaded {uploaded} bytes: {after}"
    );
    let pointer_key = manifest::commit_key(&tooling_commit.parse()?);
    let added: Vec<String> = list_files(&store)?
        .into_iter()
        .filter(|f| !objects.contains(f))
        .collect();
    ensure!(
        added
            == [
                store.join(&pointer_key).to_string(),
                store
                    .join(manifest::signed::signature_key(&pointer_key))
                    .to_string()
            ],
        "a tooling-only release added {added:?} to the store; only {pointer_key} and its signature were expected"
    );
    let pointer = Pointer::parse(&std::fs::read(store.join(&pointer_key))?)?;
    ensure!(
        pointer.release == before["release"].as_str().unwrap_or_default(),
        "{pointer_key} names {}, not HEAD's release",
        pointer.release
    );
    eprintln!(
        "xtask: test: a tooling-only commit is HEAD's release {}: nothing built, {uploaded} bytes uploaded (its commit pointer)",
        pointer.release
    );

    eprintln!("xtask: test: {refused}");
    Ok(())
}

/// HEAD's manifest edited in place (its signature left as it was) and reached through
/// contents/ by a release of the tooling commit (checked out in `twin`): refused, nothing
/// signed or written. Everything is put back.
fn edited_manifest_refused(
    twin: &Utf8Path,
    store: &Utf8Path,
    head_release: &Value,
    tooling_commit: &str,
) -> anyhow::Result<String> {
    let id: manifest::ReleaseId = head_release["release"]
        .as_str()
        .context("no release")?
        .parse()?;
    let manifest_path = store.join(manifest::manifest_key(&id));
    let pointer_key = manifest::commit_key(&tooling_commit.parse()?);
    let pointer = std::fs::read(store.join(&pointer_key))?;
    let pointer_sig = std::fs::read(store.join(manifest::signed::signature_key(&pointer_key)))?;
    let good = std::fs::read(&manifest_path)?;
    let mut edited = Manifest::parse(&good)?;
    edited.dirty = !edited.dirty;
    std::fs::write(&manifest_path, manifest::to_bytes(&edited))?;
    std::fs::remove_file(store.join(&pointer_key))?;
    std::fs::remove_file(store.join(manifest::signed::signature_key(&pointer_key)))?;
    let before = snapshot(store)?;
    let out = xtask_in(twin, &["release", "--store", store.as_str()]).output();
    let after = snapshot(store);
    std::fs::write(&manifest_path, &good)?;
    std::fs::write(store.join(&pointer_key), pointer)?;
    std::fs::write(
        store.join(manifest::signed::signature_key(&pointer_key)),
        pointer_sig,
    )?;
    let (out, after) = (out?, after?);
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains(&manifest::manifest_key(&id))
            && err.contains("does not verify")
            && err.contains("nothing was signed or uploaded"),
        "a release that reached an edited manifest through contents/:\n{err}"
    );
    ensure!(after == before, "a refused release changed the store");
    Ok("a manifest edited in place and reached through contents/ is refused; nothing signed or written".into())
}

/// A new migration that drops a column is refused before anything is built, naming the file,
/// the line, the rule and the safe way; the store is unchanged.
fn unsafe_migration_refused(work: &Utf8Path, twin: &Utf8Path) -> anyhow::Result<()> {
    let store = work.join("local-store");
    let before = list_files(&store)?;
    let file = "migrations/20991231000000_drop_login.sql";
    std::fs::write(
        twin.join(file),
        "-- Logins are kept elsewhere now.\nALTER TABLE users DROP COLUMN github_login;\n",
    )?;
    let out = xtask_in(twin, &["release", "--store", store.as_str()]).output();
    std::fs::remove_file(twin.join(file))?;
    let out = out?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains(&format!("{file}:2: ban-drop-column"))
            && err.contains("expand, then contract")
            && !err.contains("building "),
        "a release with a migration that drops a column:\n{err}"
    );
    ensure!(
        list_files(&store)? == before,
        "a refused release changed the store"
    );
    eprintln!("xtask: test: a migration that drops a column is refused: {file}:2: ban-drop-column");
    Ok(())
}

/// Runs `f` with `twin` at `commit`, then puts it back at `head`, also when `f` fails.
fn at_commit<T>(
    twin: &Utf8Path,
    commit: &str,
    head: &str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    git(
        twin,
        &["checkout", "--quiet", "--force", "--detach", commit],
    )?;
    let result = f();
    git(twin, &["checkout", "--quiet", "--force", "--detach", head])?;
    result
}

/// Two releases' `--json` summaries: (component -> (input hash, sha256)).
fn artifacts_of(summary: &Value) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    summary["artifacts"]
        .as_array()
        .context("no artifacts in the summary")?
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            Ok((field("component"), (field("input_hash"), field("sha256"))))
        })
        .collect()
}

/// HEAD's release and a web-only commit's release into an empty store (so built, not
/// reused): every component whose inputs did not change has the same sha256 in both.
fn same_bytes_for_same_inputs(at_head: &Value, fresh: &Value) -> anyhow::Result<()> {
    ensure!(
        fresh["artifacts"]
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["action"] == "built")),
        "a release into an empty store reused something: {fresh}"
    );
    let (before, after) = (artifacts_of(at_head)?, artifacts_of(fresh)?);
    eprintln!(
        "xtask: test: same inputs, same bytes ({} and {}, each built into its own store):",
        at_head["commit"].as_str().unwrap_or_default(),
        fresh["commit"].as_str().unwrap_or_default()
    );
    for (component, (input, sha)) in &before {
        let (input_after, sha_after) = after
            .get(component)
            .with_context(|| format!("the web-only release has no {component}"))?;
        let unchanged = input == input_after;
        eprintln!(
            "xtask: test:   {component:8} inputs {:9} {sha} {sha_after}",
            if unchanged { "unchanged" } else { "changed" }
        );
        ensure!(
            unchanged == (component != "web"),
            "{component}: a web-only change {} its inputs",
            if unchanged { "kept" } else { "changed" }
        );
        ensure!(
            !unchanged || sha == sha_after,
            "{component}: the same inputs built other bytes ({sha} vs {sha_after}) under another commit"
        );
    }
    Ok(())
}

/// The project's own binaries need no newer glibc than where they run (the check every
/// release makes before it publishes, run here on the staged trees).
fn own_binaries_run_where_they_go(root: &Utf8Path, packaged_in: &Utf8Path) -> anyhow::Result<()> {
    for component in xtask::components::COMPONENTS {
        let stage = if packaged_in == root {
            crate::release::build::stage_dir(root, component)
        } else {
            packaged_in.join("target/xtask/stage").join(component.name)
        };
        let found = xtask::binaries::check(component, &stage)?;
        let problems = xtask::binaries::problems(component, &found);
        ensure!(problems.is_empty(), "{}", problems.join("\n"));
        if let xtask::components::Recipe::Cargo { binary, .. } = component.recipe {
            let b = found
                .iter()
                .find(|b| b.path == format!("bin/{binary}"))
                .with_context(|| format!("{component:?}: no bin/{binary} in {stage}"))?;
            let newest = b
                .newest
                .context("a Rust binary that needs no glibc version")?;
            eprintln!(
                "xtask: test: {}: bin/{binary} needs glibc {newest} at most; {} has {}",
                component.name,
                component.runs_on.describe(),
                component.runs_on.glibc()
            );
        }
    }
    Ok(())
}

/// A binary that needs glibc 2.38 comes out of cargo where the API's goes: the release names
/// the binary, the symbol and the version, and publishes nothing.
fn glibc_too_new(twin: &Utf8Path, work: &Utf8Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let probe = std::fs::read(crate::test::glibc_probe::binary()?)?;
    // cargo links target/release/hitsave to the file in deps/ on every build, fresh or not:
    // the probe goes into that file (same inode), so the release's own build brings it.
    let release = twin.join("target/release");
    let inode = std::fs::metadata(release.join("hitsave"))?.ino();
    let built = std::fs::read_dir(release.join("deps"))?
        .filter_map(Result::ok)
        .find(|e| e.metadata().is_ok_and(|m| m.ino() == inode && m.is_file()))
        .map(|e| e.path())
        .context("cannot find the file cargo links target/release/hitsave to")?;
    let original = std::fs::read(&built)?;
    let restore = Restore {
        path: built.clone(),
        bytes: original,
    };
    write_in_place(&built, &probe)?;
    let store = work.join("glibc-store");
    eprintln!("xtask: test: release with a binary that needs glibc 2.38 as the API");
    let out = xtask_in(twin, &["release", "--store", store.as_str()]).output()?;
    drop(restore);
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the release was not refused:\n{err}");
    let line = err
        .lines()
        .find(|l| l.contains("error: api: bin/hitsave needs glibc"))
        .with_context(|| format!("the refusal does not name the binary:\n{err}"))?;
    ensure!(
        line.contains("api: bin/hitsave needs glibc 2.38")
            && line.contains("__isoc23_sscanf@GLIBC_2.38")
            && line.contains("debian:bookworm-slim")
            && line.contains("glibc 2.36")
            && err.contains("nothing was published"),
        "the refusal does not say which symbol and version, and where:\n{err}"
    );
    ensure!(
        list_files(&store).unwrap_or_default().is_empty(),
        "a refused release wrote to the store: {:?}",
        list_files(&store)?
    );
    eprintln!("xtask: test: refused: {line}");
    Ok(())
}

/// Puts a file's bytes back when dropped (the test's changes never outlive it).
struct Restore {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = write_in_place(&self.path, &self.bytes) {
            eprintln!("xtask: test: cannot restore {}: {e}", self.path.display());
        }
    }
}

/// Overwrites a file's content, keeping its inode (and so its hard links).
fn write_in_place(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `cargo xtask release --json` in another checkout.
pub(crate) fn release_in(dir: &Utf8Path, store: &Utf8Path) -> anyhow::Result<Value> {
    eprintln!("xtask: test: release in {dir}");
    let out = xtask_in(dir, &["release", "--store", store.as_str(), "--json"])
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "release in {dir} failed");
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn list_files(dir: &Utf8Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() {
            files.push(entry.path().display().to_string());
        }
    }
    Ok(files)
}

/// A store that runs out of space half-way through the artifacts: the release fails with a
/// clear error and leaves no manifest, no pointer and no partial file.
fn out_of_space(t: &Tester, work: &Utf8Path, root_clean: bool) -> anyhow::Result<()> {
    let mount = work.join("full-store");
    std::fs::create_dir_all(&mount)?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=5m", "tmpfs", mount.as_str()])
        .status()?;
    ensure!(
        status.success(),
        "cannot mount a tmpfs at {mount} (the tests run as root)"
    );
    let result = (|| {
        let mut args = vec!["release", "--store", mount.as_str(), "--channel", "ci"];
        args.extend(dirty_flag(root_clean));
        let err = t.fails(&args, &[])?;
        ensure!(
            err.contains("No space left on device"),
            "the error does not say why:\n{err}"
        );
        let files = list_files(&mount)?;
        ensure!(
            files
                .iter()
                .all(|f| f.contains("/artifacts/") && !f.contains(".incoming-")),
            "an interrupted release left more than whole artifacts: {files:#?}"
        );
        eprintln!(
            "xtask: test: a store that fills up keeps no manifest or pointer ({} whole artifacts stayed)",
            files.len()
        );
        Ok(())
    })();
    let _ = Command::new("umount").arg(mount.as_str()).status();
    result
}

fn s3_store(t: &Tester, garage: &Garage, dist: &Utf8Path, root_clean: bool) -> anyhow::Result<()> {
    garage.create_bucket("releases")?;
    let mut env: Vec<(&str, String)> = garage.client_env();
    // Released from main, as CI does: its bundle deploys to production (branch_config).
    env.push(("GITHUB_REF_NAME", "main".into()));
    let url = "s3://releases/hitsave";
    let mut args = vec!["release", "--store", url, "--channel", "ci", "--json"];
    args.extend(dirty_flag(root_clean));
    let err = t.fails(&["release", "--store", url, "--unsigned"], &env)?;
    ensure!(
        err.contains("--unsigned is for a local store only"),
        "an unsigned release to S3:\n{err}"
    );
    let first = t.ok(&args, &env)?;
    ensure!(first["uploaded_bytes"].as_u64() > Some(0), "{first}");
    let again = t.ok(&args, &env)?;
    ensure!(
        again["uploaded_bytes"] == 0 && again["already_published"] == true,
        "{again}"
    );
    let report = t.ok(
        &["verify", "--store", url, "--channel", "ci", "--json"],
        &env,
    )?;
    ensure!(report["ok"] == true, "{report}");
    ensure!(
        report["artifacts"].as_array().is_some_and(|a| a
            .iter()
            .any(|c| c["component"] == "bundle" && c["ok"] == true)),
        "verify did not check the CodeDeploy bundle: {report}"
    );

    // Overwrite an artifact with other bytes through the S3 API: verify finds it.
    let store = s3(garage, "releases", "hitsave")?;
    let release = first["release"].as_str().context("no release")?;
    let manifest = Manifest::parse(
        &store
            .get(&manifest::manifest_key(&release.parse()?))?
            .context("no manifest")?,
    )?;
    // The manifest records the bundle object's ETag, which deploy hands to CodeDeploy.
    let bundle = manifest.bundle.as_ref().context("no bundle")?;
    let object = store
        .head(&manifest::artifact_key(&bundle.sha256))?
        .context("no bundle object")?;
    ensure!(
        bundle.etag.is_some() && bundle.etag == object.etag,
        "the manifest's bundle ETag {:?} is not the object's {:?}",
        bundle.etag,
        object.etag
    );
    let err = t.fails(
        &[
            "verify",
            "--store",
            url,
            "--release",
            release,
            "--allow-unsigned",
        ],
        &env,
    )?;
    ensure!(
        err.contains("--allow-unsigned is for releases in a local store"),
        "verify --allow-unsigned on S3:\n{err}"
    );
    let web = manifest.artifact("web").context("no web")?;
    let key = manifest::artifact_key(&web.sha256);
    // An object larger than declared: the download asks for the declared size and one byte
    // more (a Range GET), and refuses it with nothing past the declared size passed on.
    store.put(&key, &vec![0u8; web.size as usize + (1 << 20)])?;
    let mut sink = Counter(0);
    let err = store
        .download(&key, &mut sink, web.size, &|_| {})
        .err()
        .context("a larger object downloaded as if it were the artifact")?;
    ensure!(
        err.is::<hitsave_host::kit::store::TooLarge>() && sink.0 <= web.size,
        "an object larger than declared in S3: {err:#}; {} bytes passed on",
        sink.0
    );
    store.put(&key, b"not the web app")?;
    let err = t.fails(&["verify", "--store", url, "--release", release], &env)?;
    ensure!(err.contains("web: MISMATCH"), "verify said:\n{err}");
    // Put the right bytes back (they are in the local dist directory).
    let file = dist.join(&key);
    if file.is_file() {
        store.upload(&key, &file, &web.sha256, web.size, &|_| {})?;
        t.ok(
            &["verify", "--store", url, "--release", release, "--json"],
            &env,
        )?;
    }
    eprintln!("xtask: test: garage: publish, 0-byte re-publish, verify and corruption hold");
    bootstrap_from_s3(&env, url)?;
    deploy_dry_run(t, &env, url, release, &manifest)?;
    groups_on_demand(t, &env, url, release)?;
    deploy_refuses_what_ci_did_not_sign(t, &store, &env, url, release, &manifest)
}

/// The user data's bootstrap against S3 (curl's SigV4 against Garage, as against AWS with the
/// instance role's credentials): the channel's release's host program becomes the resident
/// one, and runs.
fn bootstrap_from_s3(env: &[(&str, String)], url: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = Utf8Path::from_path(dir.path())
        .context("a non-UTF-8 temporary path")?
        .join("host");
    crate::tools::require("minisign", "minisign")?;
    crate::tools::require("jq", "jq")?;
    let script = root.with_file_name("hitsave-bootstrap");
    std::fs::write(&script, crate::test::codedeploy::bootstrap_script()?)?;
    let out = Command::new("sh")
        .arg(&script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HITSAVE_STORE", url)
        .env("HITSAVE_CHANNEL", "ci")
        .env("HITSAVE_ROOT", &root)
        .output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "the user data's bootstrap from S3 failed:\n{said}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let version = Command::new(root.join("bin/xtask"))
        .arg("--version")
        .output()?;
    ensure!(
        version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("xtask "),
        "the resident program from S3 does not run"
    );
    eprintln!(
        "xtask: test: garage: the user data's bootstrap installed the channel's host program from S3 (curl SigV4, minisign)"
    );
    Ok(())
}

/// `cargo xtask deploy --dry-run`: the deployment group branch_config picks, and the
/// CreateDeployment request, whose revision is the release's bundle in the S3 store.
fn deploy_dry_run(
    t: &Tester,
    env: &[(&str, String)],
    url: &str,
    release: &str,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let bundle = manifest
        .bundle
        .as_ref()
        .context("the release has no bundle")?;
    let deploy = |branch: &str, extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "--store",
            url,
            "--release",
            release,
            "--branch",
            branch,
            "--dry-run",
        ];
        args.extend(extra);
        t.output(&args, env)
    };
    let out = deploy("main", &[])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request: Value = serde_json::from_slice(&out.stdout)?;
    let s3 = &request["revision"]["s3Location"];
    ensure!(
        request["applicationName"] == "hitsave"
            && request["deploymentGroupName"] == "production"
            && request["revision"]["revisionType"] == "S3"
            && s3["bucket"] == "releases"
            && s3["key"] == format!("hitsave/artifacts/{}.tar.gz", bundle.sha256)
            && s3["bundleType"] == "tgz"
            && s3["eTag"].as_str() == bundle.etag.as_deref()
            && request["ignoreApplicationStopFailures"] == true
            && request["fileExistsBehavior"] == "OVERWRITE"
            && request["autoRollbackConfiguration"]["enabled"] == true
            && request["autoRollbackConfiguration"]["events"][0] == "DEPLOYMENT_FAILURE"
            && request["deploymentConfigName"] == "CodeDeployDefault.OneAtATime"
            && request["description"]
                .as_str()
                .is_some_and(|d| d.contains(release) && d.contains("branch main")),
        "deploy --dry-run for main: {request:#}"
    );
    // main's release deploys to production only: staging's hosts would refuse it, so deploy
    // does first; --group names the hosts whatever branch_config says, with a warning.
    let out = deploy("staging", &[])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && out.stdout.is_empty()
            && said.contains("deploys to production, not to the staging hosts"),
        "deploy --dry-run of main's release for staging:\n{said}"
    );
    let out = deploy("staging", &["--group", "staging"])?;
    let request: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        request["deploymentGroupName"] == "staging"
            && String::from_utf8_lossy(&out.stderr).contains("WARNING (--group staging)"),
        "{request:#}"
    );
    // --deployment-config wins over branch_config; a host count names a custom configuration.
    let out = deploy("main", &["--deployment-config", "min-healthy=2"])?;
    let request: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        request["deploymentConfigName"] == "hitsave-min-healthy-2",
        "{request:#}"
    );
    // `~` in the repository's appspec.yml: not deployed, no request, not an error.
    for branch in ["wip/experiment", "feature/x"] {
        let out = deploy(branch, &[])?;
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success() && out.stdout.is_empty() && said.contains("not deployed"),
            "deploy --dry-run for {branch}: {said}"
        );
    }
    // $BRANCH and $PR_NUMBER, and no match at all, with an appspec of the webfactory kind.
    let dir = tempfile::tempdir()?;
    let appspec = dir.path().join("appspec.yml");
    std::fs::write(
        &appspec,
        "branch_config:\n  pr-.*:\n    deploymentGroupName: pr-$PR_NUMBER\n  feature/.*:\n    deploymentGroupName: $BRANCH-staging\n",
    )?;
    let appspec = appspec.to_str().context("temp path")?;
    // (The groups they name are not production's, so main's release is refused for them.)
    let out = deploy("feature/Fast_UI", &["--appspec", appspec])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && said.contains("deployment group feature-Fast_UI-staging"),
        "{said}"
    );
    let out = deploy("pr-branch", &["--appspec", appspec, "--pr-number", "42"])?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && said.contains("\"pr-42\" names no environment"),
        "{said}"
    );
    let out = deploy("main", &["--appspec", appspec])?;
    ensure!(
        out.status.success()
            && out.stdout.is_empty()
            && String::from_utf8_lossy(&out.stderr).contains("no branch_config pattern"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // CodeDeploy reads revisions from S3 only.
    let err = t.fails(
        &[
            "deploy",
            "--store",
            "/tmp",
            "--release",
            release,
            "--branch",
            "main",
            "--dry-run",
        ],
        env,
    )?;
    ensure!(
        err.contains("CodeDeploy downloads revisions from S3"),
        "{err}"
    );
    eprintln!(
        "xtask: test: deploy --dry-run: production for main, staging, `~` skips, $BRANCH/$PR_NUMBER, the bundle as the S3 revision"
    );
    Ok(())
}

/// `cargo xtask deploy` against moto's CodeDeploy: a branch_config entry with a
/// `deploymentGroupConfig` makes its group on the first deploy (role and tag filters, with
/// $PR_NUMBER substituted) and reuses it on the next; `--remove-group` deletes only the groups
/// CI makes.
fn groups_on_demand(
    t: &Tester,
    env: &[(&str, String)],
    url: &str,
    release: &str,
) -> anyhow::Result<()> {
    let moto = crate::test::moto::Moto::start()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = runtime.block_on(moto.codedeploy());
    runtime
        .block_on(
            client
                .create_application()
                .application_name("hitsave")
                .send(),
        )
        .map_err(aws_error)?;
    let mut env = env.to_vec();
    env.extend(moto.codedeploy_env());
    let dir = tempfile::tempdir()?;
    let appspec = dir.path().join("appspec.yml");
    // main's release deploys to production: a production group per pull request stands in
    // for the previews, which hosts do not take yet.
    std::fs::write(
        &appspec,
        "branch_config:\n  main:\n    deploymentGroupName: production-$PR_NUMBER\n    deploymentGroupConfig:\n      serviceRoleArn: arn:aws:iam::123456789012:role/hitsave-codedeploy\n      ec2TagFilters:\n        - { Type: KEY_AND_VALUE, Key: hitsave-pr, Value: $PR_NUMBER }\n",
    )?;
    let appspec = appspec.to_str().context("temp path")?;
    let deploy = || {
        t.output(
            &[
                "deploy",
                "--store",
                url,
                "--release",
                release,
                "--branch",
                "main",
                "--pr-number",
                "42",
                "--appspec",
                appspec,
                "--no-wait",
            ],
            &env,
        )
    };
    let first = deploy()?;
    let said = String::from_utf8_lossy(&first.stderr);
    ensure!(
        first.status.success() && said.contains("created deployment group production-42"),
        "the first deploy did not create its group:\n{said}"
    );
    let group = runtime
        .block_on(
            client
                .get_deployment_group()
                .application_name("hitsave")
                .deployment_group_name("production-42")
                .send(),
        )
        .map_err(aws_error)?;
    let info = group.deployment_group_info().context("no group info")?;
    ensure!(
        info.service_role_arn() == Some("arn:aws:iam::123456789012:role/hitsave-codedeploy")
            && info
                .ec2_tag_filters()
                .iter()
                .any(|f| f.key() == Some("hitsave-pr") && f.value() == Some("42")),
        "the group was made otherwise: {info:?}"
    );
    let second = deploy()?;
    let said = String::from_utf8_lossy(&second.stderr);
    ensure!(
        second.status.success()
            && said.contains("deployment group production-42 exists as configured"),
        "the second deploy did not reuse its group:\n{said}"
    );
    let deployments = runtime
        .block_on(
            client
                .list_deployments()
                .application_name("hitsave")
                .deployment_group_name("production-42")
                .send(),
        )
        .map_err(aws_error)?;
    let ids: Vec<String> = [&first, &second]
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .collect();
    ensure!(
        deployments.deployments().len() == 2
            && ids.iter().all(|id| deployments.deployments().contains(id)),
        "moto holds deployments {:?}, the deploys printed {ids:?}",
        deployments.deployments()
    );
    let err = t.fails(&["deploy", "--remove-group", "production-42"], &env)?;
    ensure!(
        err.contains("deletes the groups CI makes for pull requests (preview-*)"),
        "{err}"
    );
    eprintln!(
        "xtask: test: deploy against moto's CodeDeploy: the first deploy of PR 42 created its group (role, tag filters), the second reused it; --remove-group refuses a group CI did not make"
    );
    Ok(())
}

/// An AWS SDK error with its whole chain (what the service said, not only "service error").
fn aws_error(e: impl std::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", aws_sdk_codedeploy::error::DisplayErrorContext(&e))
}

/// `deploy --dry-run` asks CodeDeploy for nothing when the pointer or the manifest is unsigned
/// or changed, or the bundle object is not the one the manifest describes; each is put back.
fn deploy_refuses_what_ci_did_not_sign(
    t: &Tester,
    garage: &S3Store,
    env: &[(&str, String)],
    url: &str,
    release: &str,
    published: &Manifest,
) -> anyhow::Result<()> {
    let manifest_key = manifest::manifest_key(&release.parse()?);
    let channel_key = manifest::channel_key(&"ci".parse()?);
    let bundle = published.bundle.as_ref().context("no bundle")?;
    let bundle_key = manifest::artifact_key(&bundle.sha256);
    let by_channel = [
        "deploy",
        "--store",
        url,
        "--channel",
        "ci",
        "--branch",
        "main",
        "--dry-run",
    ];
    let expect_refused = |case: &str, says: &str| -> anyhow::Result<()> {
        let out = t.output(&by_channel, env)?;
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && out.stdout.is_empty() && said.contains(says),
            "deploy --dry-run with {case}:\n{said}"
        );
        eprintln!("xtask: test: deploy --dry-run refuses {case}");
        Ok(())
    };
    t.ok(&by_channel, env)?;
    // (key, the bytes to put there for the case, what deploy says, what the case is)
    let keep = |key: &str| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        garage.download(key, &mut bytes, 64 << 20, &|_| {})?;
        Ok(bytes)
    };
    let good_manifest = keep(&manifest_key)?;
    let good_pointer = keep(&channel_key)?;
    let good_manifest_sig = keep(&manifest::signed::signature_key(&manifest_key))?;
    let good_bundle = keep(&bundle_key)?;

    let mut edited = published.clone();
    edited.dirty = !edited.dirty;
    garage.put(&manifest_key, &manifest::to_bytes(&edited))?;
    expect_refused("a manifest changed after it was signed", "does not verify")?;
    garage.put(&manifest_key, &good_manifest)?;

    garage.delete(&manifest::signed::signature_key(&manifest_key))?;
    expect_refused("a manifest without its signature", "is not signed")?;
    garage.put(
        &manifest::signed::signature_key(&manifest_key),
        &good_manifest_sig,
    )?;

    let mut pointer = Pointer::parse(&good_pointer)?;
    pointer.commit = manifest::Commit::new("0".repeat(40))?;
    garage.put(&channel_key, &manifest::to_bytes(&pointer))?;
    expect_refused(
        "a channel pointer changed after it was signed",
        "does not verify",
    )?;
    garage.put(&channel_key, &good_pointer)?;

    let mut other = good_bundle.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    garage.put(&bundle_key, &other)?;
    expect_refused(
        "a bundle object replaced in the bucket",
        "the signed manifest says",
    )?;
    garage.put(&bundle_key, &good_bundle)?;
    t.ok(&by_channel, env)?;
    Ok(())
}

/// Two releases of different commits (HEAD, and the web-only commit on top) started at the
/// same moment against one empty store: both succeed, each input hash ends with one record,
/// which names the artifact both manifests name, and both verify.
fn s3_racing_releases(
    t: &Tester,
    garage: &Garage,
    a: &Utf8Path,
    b: &Utf8Path,
    head: &str,
    web_commit: &str,
) -> anyhow::Result<()> {
    garage.create_bucket("race")?;
    let env = garage.client_env();
    let url = "s3://race/hitsave";
    let args = ["release", "--store", url, "--json"];
    let logs = tempfile::tempdir()?;
    let start = |dir: &Utf8Path, name: &str| -> anyhow::Result<(std::process::Child, PathBuf)> {
        let mut cmd = if dir == t.root {
            t.command(&args, &env)
        } else {
            let mut cmd = xtask_in(dir, &args);
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
            cmd
        };
        let log = logs.path().join(name);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start a release in {dir}"))?;
        Ok((child, log))
    };
    let summaries = at_commit(b, web_commit, head, || {
        eprintln!("xtask: test: two releases at once into {url}: {a} (HEAD) and {b} (web only)");
        let started = [start(a, "head.log")?, start(b, "web.log")?];
        let mut summaries = Vec::new();
        for (child, log) in started {
            let out = child.wait_with_output()?;
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            ensure!(
                out.status.success(),
                "one of two racing releases failed:\n{said}"
            );
            summaries.push(serde_json::from_slice::<Value>(&out.stdout)?);
        }
        Ok(summaries)
    })?;
    let store = s3(garage, "race", "hitsave")?;
    let (first, second) = (artifacts_of(&summaries[0])?, artifacts_of(&summaries[1])?);
    let mut records = 0;
    for (component, (input, sha)) in first.iter().chain(&second) {
        let key = manifest::input_key(component, &input.parse()?);
        let record = manifest::InputRecord::parse(
            &store
                .get(&key)?
                .with_context(|| format!("{key} is missing"))?,
        )?;
        ensure!(
            record.sha256 == *sha,
            "{key} names {} but a manifest names {sha}",
            record.sha256
        );
        records += 1;
    }
    for (component, (input, sha)) in &first {
        let (input_b, sha_b) = &second[component];
        ensure!(
            input != input_b || sha == sha_b,
            "{component}: the racing releases name different artifacts for the same inputs"
        );
    }
    for summary in &summaries {
        let release = summary["release"].as_str().context("no release")?;
        let report = t.ok(
            &["verify", "--store", url, "--release", release, "--json"],
            &env,
        )?;
        ensure!(report["ok"] == true, "{report}");
    }
    let distinct: std::collections::BTreeSet<_> = first.values().chain(second.values()).collect();
    eprintln!(
        "xtask: test: garage: two racing releases both published and verify; each of {} input hashes has one record, naming the artifact the manifests name ({records} references)",
        distinct.len()
    );
    Ok(())
}

/// What backup retention asks of a store: the objects directly under a directory of the
/// prefix, and deleting one (a missing one too).
fn s3_list_and_delete(garage: &Garage) -> anyhow::Result<()> {
    garage.create_bucket("lists")?;
    let store = s3(garage, "lists", "hitsave")?;
    for key in [
        "backups/b.json",
        "backups/a.json",
        "backups/a.dump",
        "backupsx/c",
        "backups/deeper/d",
    ] {
        store.put(key, b"{}")?;
    }
    let other = s3(garage, "lists", "other")?;
    other.put("backups/e.json", b"{}")?;
    ensure!(
        store.list("backups")? == ["backups/a.dump", "backups/a.json", "backups/b.json"],
        "list(backups): {:?}",
        store.list("backups")?
    );
    store.delete("backups/a.json")?;
    store.delete("backups/never-was.json")?;
    ensure!(
        store.list("backups")? == ["backups/a.dump", "backups/b.json"]
            && store.get("backups/a.json")?.is_none(),
        "after delete: {:?}",
        store.list("backups")?
    );
    ensure!(
        other.list("backups")? == ["backups/e.json"],
        "prefixes leak"
    );
    // The directories under a key: each environment's hosts.
    store.put("backups/deeper/more/e", b"{}")?;
    ensure!(
        store.list_dirs("backups")? == ["backups/deeper"]
            && store.list_dirs("backups/deeper")? == ["backups/deeper/more"]
            && other.list_dirs("backups")?.is_empty(),
        "list_dirs: {:?}",
        store.list_dirs("backups")?
    );
    eprintln!(
        "xtask: test: garage: list, list_dirs and delete under a prefix, for backup retention"
    );
    Ok(())
}

fn s3(garage: &Garage, bucket: &str, prefix: &str) -> anyhow::Result<S3Store> {
    for (k, v) in garage.client_env() {
        // SAFETY: the test suite is single-threaded at this point; nothing else reads the
        // environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
    S3Store::connect(S3Options {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint_url: Some(garage.endpoint.clone()),
        path_style: true,
    })
}

/// Wrong credentials, a missing bucket, an unreachable endpoint and no credentials at all:
/// each is one clear error naming the store, before anything is built.
fn s3_errors(t: &Tester, garage: &Garage) -> anyhow::Result<()> {
    let base = garage.client_env();
    let with = |changes: &[(&'static str, Option<String>)]| {
        let mut env: Vec<(&str, String)> = base.clone();
        for (k, v) in changes {
            env.retain(|(key, _)| key != k);
            if let Some(v) = v {
                env.push((k, v.clone()));
            }
        }
        env
    };
    // (what, environment, store, what the error must say)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            with(&[("AWS_SECRET_ACCESS_KEY", Some("0".repeat(64)))]),
            "s3://releases/x",
            "credentials were refused",
        ),
        (
            "missing bucket",
            base.clone(),
            "s3://no-such-bucket/x",
            "does not exist",
        ),
        (
            "unreachable endpoint",
            with(&[(
                "AWS_ENDPOINT_URL",
                Some(format!("http://127.0.0.1:{}", free_port()?)),
            )]),
            "s3://releases/x",
            "cannot reach",
        ),
        (
            "no credentials",
            with(&[("AWS_ACCESS_KEY_ID", None), ("AWS_SECRET_ACCESS_KEY", None)]),
            "s3://releases/x",
            "no AWS credentials",
        ),
    ];
    for (name, env, url, expected) in cases {
        let err = t.fails(&["release", "--store", url, "--allow-dirty"], &env)?;
        let last = err.lines().last().unwrap_or_default();
        ensure!(
            last.contains(expected) && last.contains(url.trim_end_matches("/x")),
            "{name}: expected one error saying {expected:?} and naming the store, got:\n{err}"
        );
        ensure!(
            !err.contains("building"),
            "{name}: xtask built before checking the store"
        );
        eprintln!("xtask: test: {name}: {last}");
    }
    Ok(())
}

/// An artifact above the multipart threshold goes up in parts with checksums and comes back
/// with the same SHA-256.
fn s3_multipart(garage: &Garage, work: &Utf8Path) -> anyhow::Result<()> {
    let store = s3(garage, "releases", "multipart")?;
    let file = work.join("big.bin");
    let mut hasher = Sha256::new();
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut block = Sha256::digest(b"seed").to_vec();
        // 40 MiB of incompressible bytes: five 8 MiB parts.
        for _ in 0..(40 << 20) / 32 {
            block = Sha256::digest(&block).to_vec();
            out.write_all(&block)?;
            hasher.update(&block);
        }
        out.flush()?;
    }
    let sha = manifest::Sha256::from_bytes(hasher.finalize().into());
    let size = std::fs::metadata(&file)?.len();
    let key = manifest::artifact_key(&sha);
    store.upload(&key, &file, &sha, size, &|_| {})?;
    let info = store
        .head(&key)?
        .context("the multipart object is missing")?;
    ensure!(
        info.size == size && info.sha256.as_deref() == Some(sha.as_str()),
        "{info:?}"
    );
    let mut back = Sha256::new();
    let got = store.download(&key, &mut back, size, &|_| {})?;
    ensure!(
        got == size && manifest::Sha256::from_bytes(back.finalize().into()) == sha,
        "the multipart object came back different"
    );
    std::fs::remove_file(&file)?;
    eprintln!(
        "xtask: test: garage: a 40 MiB artifact went up in 5 checksummed parts and came back intact"
    );
    Ok(())
}

/// A bucket whose quota runs out half-way: the release fails and nothing refers to the
/// artifacts that did not make it.
fn s3_interrupted(t: &Tester, garage: &Garage, root_clean: bool) -> anyhow::Result<()> {
    garage.create_bucket("small")?;
    garage.cli(&["bucket", "set-quotas", "--max-size", "5MiB", "small"])?;
    let env = garage.client_env();
    let mut args = vec![
        "release",
        "--store",
        "s3://small/hitsave",
        "--channel",
        "ci",
    ];
    args.extend(dirty_flag(root_clean));
    let err = t.fails(&args, &env)?;
    eprintln!(
        "xtask: test: quota: {}",
        err.lines().last().unwrap_or_default()
    );
    let store = s3(garage, "small", "hitsave")?;
    let checkout = xtask::git::Checkout::read(&t.root)?;
    let release = xtask::inputs::release_id(&checkout);
    for key in [
        manifest::manifest_key(&release),
        manifest::channel_key(&"ci".parse()?),
        manifest::commit_key(&checkout.commit),
    ] {
        ensure!(
            store.head(&key)?.is_none(),
            "{key} was published by a failed release"
        );
    }
    eprintln!("xtask: test: garage: an interrupted publish leaves no visible release");
    Ok(())
}
