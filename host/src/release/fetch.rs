//! Downloads a release's artifacts into cache/, all at once, each checked against the
//! manifest (SHA-256 and size) while it streams. Only a verified file gets its final name; a
//! mismatch deletes what arrived and names both hashes.

use std::io::Write;

use crate::kit::store::Store;
use anyhow::{Context, bail};
use hitsave_schema::{self as manifest, Artifact, Manifest};

use crate::kit::digest::{self, Hashing};

use crate::kit::ui::Ui;
use crate::site::host::Host;

/// Makes sure every artifact of `manifest` is in the cache, verified. Returns the bytes
/// downloaded.
pub fn fetch(ui: &Ui, host: &Host, store: &dyn Store, manifest: &Manifest) -> anyhow::Result<u64> {
    let all: Vec<&Artifact> = manifest.artifacts.iter().collect();
    fetch_artifacts(ui, host, store, &all)
}

/// `fetch` for some of a verified manifest's artifacts.
pub fn fetch_artifacts(
    ui: &Ui,
    host: &Host,
    store: &dyn Store,
    artifacts: &[&Artifact],
) -> anyhow::Result<u64> {
    let missing: Vec<&Artifact> = artifacts
        .iter()
        .copied()
        .filter(|a| !cached_and_intact(host, a))
        .collect();
    if missing.is_empty() {
        ui.info("every artifact is already in the cache, verified");
        return Ok(0);
    }
    let total: u64 = missing.iter().map(|a| a.size).sum();
    ui.info(&format!(
        "downloading {} artifacts ({}) from {}",
        missing.len(),
        crate::kit::ui::human_bytes(total),
        store.describe()
    ));
    let bar = ui.bytes("downloading", total);
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = missing
            .iter()
            .map(|a| {
                let bar = &bar;
                scope.spawn(move || download_one(host, store, a, &|n| bar.inc(n)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a download thread panicked"))
            })
            .collect()
    });
    bar.finish_and_clear();
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err())
        .map(|e| format!("{e:#}"))
        .collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(total)
}

/// A cached file is trusted only if it still hashes to its name and size.
fn cached_and_intact(host: &Host, a: &Artifact) -> bool {
    let path = host.cache_file(&a.sha256);
    if !path.is_file() {
        return false;
    }
    let ok = digest::of_file(&path).is_ok_and(|(size, sha)| size == a.size && sha == a.sha256);
    if !ok {
        eprintln!("xtask: {path} is damaged; downloading it again");
        let _ = std::fs::remove_file(&path);
    }
    ok
}

fn download_one(
    host: &Host,
    store: &dyn Store,
    a: &Artifact,
    progress: crate::kit::store::Progress,
) -> anyhow::Result<()> {
    let dest = host.cache_file(&a.sha256);
    let partial = dest.with_extension("partial");
    let key = manifest::artifact_key(&a.sha256);
    let file =
        std::fs::File::create(&partial).with_context(|| format!("cannot create {partial}"))?;
    let mut out = Hashing::new(std::io::BufWriter::new(file));
    let result = store
        .download(&key, &mut out, a.size, progress)
        .and_then(|_| out.flush().map_err(Into::into))
        .with_context(|| format!("{}: downloading {key} failed", a.component));
    let actual = out.digest();
    let problem = match result {
        Err(e) => Some(format!("{e:#}")),
        Ok(()) if out.bytes() != a.size => Some(format!(
            "{}: {key} is {} bytes, the manifest says {} (sha256 expected {}, actual {actual})",
            a.component,
            out.bytes(),
            a.size,
            a.sha256
        )),
        Ok(()) if actual != a.sha256 => Some(format!(
            "{}: {key} does not match the manifest: sha256 expected {}, actual {actual}",
            a.component, a.sha256
        )),
        Ok(()) => None,
    };
    drop(out);
    if let Some(problem) = problem {
        let _ = std::fs::remove_file(&partial);
        bail!("{problem}; the download was deleted and nothing was installed");
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &dest).with_context(|| format!("cannot rename {partial}"))?;
    Ok(())
}
