//! Signed releases on the real stack (part of the install suite), and the test run's keys.
//!
//! `setup` makes the run's release key pair once and hands it to every xtask the tests start
//! (HITSAVE_SIGNING_KEY names the secret key file, HITSAVE_KEYS the trusted key directory), as
//! CI's secret and a host's /etc/hitsave/keys would. `scenario` checks, with a release
//! serving: each refusal (unsigned, tampered, unknown key, revoked key, another manifest's
//! signature, a trusted comment that disagrees, a moved pointer, a channel going back in time,
//! a tarball that expands past its declaration) leaves current, releases/, the containers and
//! the rows as they were and downloads nothing; key rotation and revocation; and that Debian's
//! `minisign` and our code accept each other's signatures.

use std::process::Command;

use anyhow::{Context, ensure};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{self as manifest, Manifest, Pointer, SCHEMA, Sha256, signed};
use xtask::signing::{KeyId, SigningKey, keygen};

use crate::test::install::Harness;
use crate::tools;

/// The run's key pair: `<dir>/release.key`, trusted through `<dir>/keys/release.pub`.
pub struct TestKeys {
    pub dir: Utf8PathBuf,
}

impl TestKeys {
    pub fn secret(&self) -> Utf8PathBuf {
        self.dir.join("release.key")
    }
    pub fn trusted(&self) -> Utf8PathBuf {
        self.dir.join("keys")
    }
}

/// Makes the run's keys and puts them in the environment every xtask started later inherits.
/// Called before any thread is started.
pub fn setup(root: &Utf8Path) -> anyhow::Result<TestKeys> {
    let dir =
        xtask::checkout::target_dir(root).join(format!("xtask/test-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("keys"))?;
    let keys = TestKeys { dir };
    keygen(&keys.secret(), &keys.trusted().join("release.pub"), false)?;
    // SAFETY: the test run is still single-threaded here (see `test::run`).
    unsafe {
        std::env::set_var("HITSAVE_SIGNING_KEY", keys.secret());
        std::env::set_var("HITSAVE_KEYS", keys.trusted());
    }
    Ok(keys)
}

/// The run's signing key (`setup` made it).
pub fn run_key() -> anyhow::Result<SigningKey> {
    let path = std::env::var("HITSAVE_SIGNING_KEY").context("no test signing key: setup first")?;
    SigningKey::read(Utf8Path::new(&path))
}

/// Writes `m` into the local store at `store` with a signature by `key` (none when `None`).
pub fn publish(store: &Utf8Path, m: &Manifest, key: Option<&SigningKey>) -> anyhow::Result<()> {
    let key_path = manifest::manifest_key(&m.release);
    let path = store.join(&key_path);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let bytes = manifest::to_bytes(m);
    std::fs::write(&path, &bytes)?;
    let sig = store.join(signed::signature_key(&key_path));
    match key {
        Some(key) => std::fs::write(&sig, key.sign(&bytes, &signed::manifest_comment(m))?)?,
        None => {
            let _ = std::fs::remove_file(&sig);
        }
    }
    Ok(())
}

/// A copy of `base` under a new release id (same artifacts) that no one has published yet.
fn variant(base: &Manifest, n: u32) -> anyhow::Result<Manifest> {
    let mut m = base.clone();
    m.release = format!("2099020100{n:04}-abcdef0123{n:02}").parse()?;
    Ok(m)
}

/// A variant of `base` whose api artifact is `tarball`, put into the store.
fn with_api(h: &Harness, base: &Manifest, n: u32, tarball: &[u8]) -> anyhow::Result<Manifest> {
    put_api(h, variant(base, n)?, tarball)
}

/// `m` with `tarball` as its api artifact, which goes into the store (the manifest does not).
pub(crate) fn put_api(h: &Harness, mut m: Manifest, tarball: &[u8]) -> anyhow::Result<Manifest> {
    let sha = Sha256::from_bytes(<sha2::Sha256 as sha2::Digest>::digest(tarball).into());
    std::fs::write(h.store.join(manifest::artifact_key(&sha)), tarball)?;
    let api = m
        .artifacts
        .iter_mut()
        .find(|a| a.component == "api")
        .context("no api")?;
    api.sha256 = sha;
    api.size = tarball.len() as u64;
    Ok(m)
}

/// `current` serves; `older` is an earlier release on disk (both signed by the run's key).
pub fn scenario(h: &Harness, current: &str, older: &str) -> anyhow::Result<()> {
    let run_key = run_key()?;
    let other_dir = h.work.join("other-keys");
    std::fs::create_dir_all(&other_dir)?;
    keygen(
        &other_dir.join("other.key"),
        &other_dir.join("other.pub"),
        true,
    )?;
    let other = SigningKey::read(&other_dir.join("other.key"))?;
    let base = h.manifest(current)?;
    let before = h.snapshot()?;
    let rows = h.waitlist_rows()?;
    let cache = list(&h.host_root.join("cache"))?;

    // A new api artifact, not in the host's cache: a refusal must not download it.
    let fresh = crate::test::install::crafted_tarball("plain")?;
    let with_fresh = |n| with_api(h, &base, n, &fresh);
    let refused = |id: &str, says: &str, case: &str| -> anyhow::Result<()> {
        let out = h.install(id, &[])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains(says) && err.contains("refused"),
            "{case}: expected a refusal saying {says:?}:\n{err}"
        );
        ensure!(h.snapshot()? == before, "{case}: the host changed");
        ensure!(
            list(&h.host_root.join("cache"))? == cache,
            "{case}: something was downloaded"
        );
        eprintln!("xtask: test: signing: {case}: refused ({says})");
        Ok(())
    };

    // Unsigned.
    let m = with_fresh(1)?;
    publish(&h.store, &m, None)?;
    refused(m.release.as_str(), "is not signed", "an unsigned manifest")?;
    // Changed after it was signed.
    let mut m = with_fresh(2)?;
    publish(&h.store, &m, Some(&run_key))?;
    m.tools.insert("rustc".into(), "rustc 0.0.0 (evil)".into());
    let path = h.store.join(manifest::manifest_key(&m.release));
    std::fs::write(&path, manifest::to_bytes(&m))?;
    refused(m.release.as_str(), "does not verify", "a tampered manifest")?;
    // Signed by a key this host does not know.
    let m = with_fresh(3)?;
    publish(&h.store, &m, Some(&other))?;
    refused(m.release.as_str(), "does not trust", "an unknown key")?;
    // Another manifest's signature beside it.
    let m = with_fresh(4)?;
    publish(&h.store, &m, None)?;
    let theirs = h.store.join(signed::signature_key(&manifest::manifest_key(
        &current.parse()?,
    )));
    std::fs::copy(
        &theirs,
        h.store
            .join(signed::signature_key(&manifest::manifest_key(&m.release))),
    )?;
    refused(
        m.release.as_str(),
        "does not verify",
        "another manifest's signature",
    )?;
    // A good signature whose trusted comment names another release.
    let m = with_fresh(5)?;
    let bytes = manifest::to_bytes(&m);
    publish(&h.store, &m, None)?;
    std::fs::write(
        h.store
            .join(signed::signature_key(&manifest::manifest_key(&m.release))),
        run_key.sign(&bytes, &signed::manifest_comment(&base))?,
    )?;
    refused(
        m.release.as_str(),
        "but the document says",
        "a trusted comment that disagrees",
    )?;

    // A manifest from before signing (schema 1, no unpacked sizes), even with a good signature.
    let m = with_fresh(8)?;
    let mut json = serde_json::to_value(&m)?;
    json["schema"] = 1.into();
    for a in json["artifacts"].as_array_mut().context("no artifacts")? {
        let a = a.as_object_mut().context("an artifact")?;
        a.remove("unpacked_bytes");
        a.remove("entries");
    }
    let bytes = manifest::to_bytes(&json);
    let key_path = manifest::manifest_key(&m.release);
    std::fs::create_dir_all(h.store.join(&key_path).parent().expect("a parent"))?;
    std::fs::write(h.store.join(&key_path), &bytes)?;
    std::fs::write(
        h.store.join(signed::signature_key(&key_path)),
        run_key.sign(&bytes, &signed::manifest_comment(&m))?,
    )?;
    let out = h.install(m.release.as_str(), &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("schema 1") && err.contains("nothing was downloaded"),
        "a schema 1 manifest:\n{err}"
    );
    ensure!(
        h.snapshot()? == before,
        "a schema 1 manifest changed the host"
    );
    // More declared than the disk holds: refused before anything is downloaded.
    let mut m = with_fresh(9)?;
    m.artifacts[0].unpacked.unpacked_bytes = 1 << 50;
    publish(&h.store, &m, Some(&run_key))?;
    let out = h.install(m.release.as_str(), &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("unpacked") && err.contains("nothing was downloaded"),
        "a release declared larger than the disk:\n{err}"
    );
    ensure!(
        h.snapshot()? == before && list(&h.host_root.join("cache"))? == cache,
        "a release too large for the disk changed the host or downloaded"
    );
    eprintln!(
        "xtask: test: signing: a signed schema 1 manifest and a release declared at 1 PiB unpacked were refused before any download"
    );

    // A tarball that expands past what its (signed) manifest declares.
    let bomb = crate::test::install::crafted_tarball("bomb")?;
    let mut m = with_api(h, &base, 6, &bomb)?;
    let api = m
        .artifacts
        .iter_mut()
        .find(|a| a.component == "api")
        .context("no api")?;
    api.unpacked.unpacked_bytes = 3;
    api.unpacked.entries = 2;
    let bomb_sha = api.sha256.clone();
    publish(&h.store, &m, Some(&run_key))?;
    let out = h.install(m.release.as_str(), &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("more than its manifest declares")
            && err.contains("nothing was installed"),
        "a tarball that expands past its declaration:\n{err}"
    );
    ensure!(
        h.snapshot()? == before,
        "the expanding tarball changed the host"
    );
    let _ = std::fs::remove_file(h.host_root.join(format!("cache/{bomb_sha}.tar.gz")));
    eprintln!(
        "xtask: test: signing: a {} tarball declared as 3 bytes was refused before its 256 MiB entry was written",
        hitsave_host::kit::ui::human_bytes(bomb.len() as u64)
    );

    channels(h, current, older, &run_key, &before)?;
    rotation(h, current, older, &run_key)?;
    interop(h, &base)?;
    ensure!(
        h.snapshot()? == before,
        "the signing tests changed the host"
    );
    ensure!(h.waitlist_rows()? == rows, "rows changed");
    h.expect_serving(current)?;
    Ok(())
}

/// A pointer changed by hand, and a channel that goes back in time.
fn channels(
    h: &Harness,
    current: &str,
    older: &str,
    key: &SigningKey,
    before: &(String, Vec<String>, String),
) -> anyhow::Result<()> {
    let point = |channel: &str, release: &str| -> anyhow::Result<()> {
        let m = h.manifest(release)?;
        let p = Pointer {
            schema: SCHEMA,
            release: m.release.clone(),
            commit: m.commit.clone(),
        };
        let key_path = manifest::channel_key(&channel.parse()?);
        let bytes = manifest::to_bytes(&p);
        std::fs::create_dir_all(h.store.join("channels"))?;
        std::fs::write(h.store.join(&key_path), &bytes)?;
        std::fs::write(
            h.store.join(signed::signature_key(&key_path)),
            key.sign(&bytes, &signed::pointer_comment(&key_path, &p))?,
        )?;
        Ok(())
    };
    let install_channel = |channel: &str, extra: &[&str]| {
        let mut args = vec!["--channel", channel];
        args.extend(extra);
        // install_args names --release; a channel install replaces it.
        let mut all = h.install_args("-", &args);
        let at = all
            .iter()
            .position(|a| a == "--release")
            .expect("--release");
        all.drain(at..at + 2);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        h.t.command(&all, &[]).output()
    };
    point("signed-test", current)?;
    let out = install_channel("signed-test", &[])?;
    ensure!(
        out.status.success(),
        "installing through a signed channel:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pointer moved to another release without a new signature.
    let pointer_path = h.store.join(manifest::channel_key(&"signed-test".parse()?));
    let moved = std::fs::read_to_string(&pointer_path)?.replace(current, older);
    std::fs::write(&pointer_path, moved)?;
    let out = install_channel("signed-test", &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("channels/signed-test.json")
            && err.contains("does not verify"),
        "a pointer moved without its signature:\n{err}"
    );
    // Signed, but back in time from what this host installed from the channel.
    point("signed-test", older)?;
    let out = install_channel("signed-test", &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("older than") && err.contains("--allow-downgrade"),
        "a channel that went back in time:\n{err}"
    );
    ensure!(
        h.snapshot()? == *before,
        "a refused downgrade changed the host"
    );
    let out = install_channel("signed-test", &["--allow-downgrade", "--until", "fetched"])?;
    ensure!(
        out.status.success(),
        "--allow-downgrade:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        h.snapshot()? == *before,
        "--until fetched of a release on disk changed the host"
    );
    eprintln!(
        "xtask: test: signing: a pointer moved by hand and a channel moved back were refused; --allow-downgrade goes ahead"
    );
    Ok(())
}

/// Releases signed by the old and the new key install while both are trusted; once the old
/// key is revoked, its releases are refused, by install and by rollback.
fn rotation(h: &Harness, current: &str, older: &str, old: &SigningKey) -> anyhow::Result<()> {
    let trusted = Utf8PathBuf::from(std::env::var("HITSAVE_KEYS")?);
    let new_secret = h.work.join("new-release.key");
    keygen(&new_secret, &trusted.join("new.pub"), true)?;
    let new = SigningKey::read(&new_secret)?;
    // The current release, signed again by the new key (what `release` does for a release
    // already published when the key changed).
    let m = h.manifest(current)?;
    let sig_path = h
        .store
        .join(signed::signature_key(&manifest::manifest_key(&m.release)));
    let old_sig = std::fs::read(&sig_path)?;
    std::fs::write(
        &sig_path,
        new.sign(&manifest::to_bytes(&m), &signed::manifest_comment(&m))?,
    )?;
    let last_signer = || -> anyhow::Result<Option<KeyId>> {
        Ok(KeyId::parse(
            h.last_history()?["signed_by"].as_str().unwrap_or_default(),
        ))
    };
    h.install_ok(current)?;
    ensure!(
        last_signer()? == Some(new.id),
        "not recorded as signed by the new key"
    );
    let out = h.install(older, &["--until", "fetched"])?;
    ensure!(
        out.status.success(),
        "the old key's release while both are trusted"
    );
    ensure!(
        last_signer()? == Some(old.id),
        "not recorded as signed by the old key"
    );

    // Revoke the old key.
    std::fs::create_dir_all(trusted.join("revoked"))?;
    std::fs::rename(
        trusted.join("release.pub"),
        trusted.join("revoked/release.pub"),
    )?;
    let result = (|| -> anyhow::Result<()> {
        h.install_ok(current)?;
        let out = h.install(older, &[])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains("revoked"),
            "a release by a revoked key:\n{err}"
        );
        let err = h.t.fails(&h.host_args(&["rollback", "--to", older]), &[])?;
        ensure!(
            err.contains("revoked"),
            "rollback to a revoked key's release:\n{err}"
        );
        h.expect_serving(current)?;
        let doctor =
            h.t.command(&["doctor", "--root", h.host_root.as_str()], &[])
                .output()?;
        let said = String::from_utf8_lossy(&doctor.stdout);
        ensure!(
            said.contains(&format!("ok: release keys in {trusted}"))
                && said.contains(&new.id.to_string())
                && said.contains("revoked"),
            "doctor on the key directory:\n{said}"
        );
        Ok(())
    })();
    // The old key back, the current release signed by it again: the suite goes on as before.
    std::fs::rename(
        trusted.join("revoked/release.pub"),
        trusted.join("release.pub"),
    )?;
    std::fs::remove_file(trusted.join("new.pub"))?;
    std::fs::write(&sig_path, old_sig)?;
    result?;
    eprintln!(
        "xtask: test: signing: key rotation: both keys install while trusted; the revoked key's release is refused by install and rollback"
    );
    Ok(())
}

/// Debian's minisign verifies our signatures, and a manifest it signs verifies in our code.
fn interop(h: &Harness, base: &Manifest) -> anyhow::Result<()> {
    let minisign = tools::require("minisign", "minisign")?;
    let trusted = Utf8PathBuf::from(std::env::var("HITSAVE_KEYS")?);
    let ours = h.store.join(manifest::manifest_key(&base.release));
    let out = Command::new(&minisign)
        .args(["-V", "-p"])
        .arg(trusted.join("release.pub"))
        .arg("-m")
        .arg(&ours)
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && said.contains(&signed::manifest_comment(base)),
        "minisign -V on our manifest: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A key pair and a signature made by the minisign tool (-W: no password).
    let dir = h.work.join("minisign-tool");
    std::fs::create_dir_all(&dir)?;
    let status = Command::new(&minisign)
        .args(["-G", "-W", "-f", "-p"])
        .arg(dir.join("tool.pub"))
        .arg("-s")
        .arg(dir.join("tool.key"))
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "minisign -G failed");
    std::fs::copy(dir.join("tool.pub"), trusted.join("tool.pub"))?;
    let m = variant(base, 7)?;
    publish(&h.store, &m, None)?;
    let path = h.store.join(manifest::manifest_key(&m.release));
    let status = Command::new(&minisign)
        .args(["-S", "-s"])
        .arg(dir.join("tool.key"))
        .arg("-m")
        .arg(&path)
        .arg("-t")
        .arg(signed::manifest_comment(&m))
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "minisign -S failed");
    let out =
        h.t.command(
            &[
                "verify",
                "--store",
                h.store.as_str(),
                "--release",
                m.release.as_str(),
                "--json",
            ],
            &[],
        )
        .output()?;
    std::fs::remove_file(trusted.join("tool.pub"))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    // The tool names its key in the public key file's comment, without leading zeros; ids are
    // compared as the numbers they are.
    let tool_pub = std::fs::read_to_string(dir.join("tool.pub"))?;
    let tool_id = tool_pub
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .and_then(KeyId::parse)
        .with_context(|| format!("no key id in the tool's public key:\n{tool_pub}"))?;
    ensure!(
        out.status.success()
            && report["signed_by"].as_str().and_then(KeyId::parse) == Some(tool_id),
        "a manifest signed by the minisign tool: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "xtask: test: signing: minisign -V verifies our manifest; a manifest minisign -S signed verifies in ours"
    );
    Ok(())
}

fn list(dir: &Utf8Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = dir
        .read_dir_utf8()?
        .map(|e| Ok(e?.file_name().to_owned()))
        .collect::<anyhow::Result<_>>()?;
    names.sort();
    Ok(names)
}
