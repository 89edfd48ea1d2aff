//! `cargo xtask bench release`: the release pipeline's speed and memory, as ratios against a
//! peer measured in the same run on the same machine (`bench deploy` and `bench backup` are
//! in their own modules).
//!
//! - Packaging the web artifact's tree (and, as a larger case, the web app's full
//!   node_modules) vs GNU `tar --sort=name | gzip -6 | sha256sum`: speed and size.
//! - A release into an empty Garage bucket (cold: everything packaged and uploaded) vs the
//!   same release again (no-op): wall time and bytes uploaded.
//! - The peak RSS of the release process while it packages and uploads.
//!
//! Targets: packaging at least as fast as GNU (aim 1.5x) with a size within 5%; a no-op
//! release under 2 s with 0 bytes uploaded; peak RSS under 100 MiB. Exits non-zero when a
//! target is missed.

pub mod against;
pub mod backup;
pub mod cpu;
pub mod deploy;
pub mod fleet;
pub mod served;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use camino::Utf8Path;
use serde_json::Value;
use xtask::components;

use crate::test::garage::Garage;
use hitsave_host::kit::ui::{Ui, human_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    what: What,
    /// Timed runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// deploy: after each deploy, print the slowest requests on the install's timeline.
    #[arg(long)]
    trace: bool,
    /// deploy: swaps of each kind under load, pooled (more make each p99 steadier; each round
    /// builds and installs three releases).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// deploy: measure one strategy only.
    #[arg(long, value_enum)]
    strategy: Option<hitsave_host::site::swap::Strategy>,
    /// deploy: also install with xtask built from this commit (B), in alternate rounds (A B B
    /// A ...; `--rounds` each), and compare it with this build (A) in the same run. Both are
    /// debug builds of xtask; without it, the release's own host program installs.
    #[arg(long, value_name = "REV")]
    against: Option<String>,
    /// fleet: measure this fleet size only (1 to 3) [default: each of 1, 2 and 3].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    hosts: Option<u8>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum What {
    /// Packaging speed and size, no-op release time and bytes, peak memory.
    Release,
    /// Packaging speed and size only.
    Packaging,
    /// Requests dropped and latency while a release is installed under load, blue/green vs
    /// in-place, on the real stack.
    Deploy,
    /// Backup and restore of a 1 GiB database vs pg_dump | sha256sum and pg_restore; peak
    /// memory of the backup, with and without the upload to S3.
    Backup,
    /// Deploy time, failed requests and p99 for 1, 2 and 3 hosts behind a load balancer,
    /// per deployment configuration.
    Fleet,
}

pub fn run(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    // Releases are signed and hosts check signatures, as in production: a key for this run
    // (set before any thread starts).
    let keys = crate::test::signing::setup(root)?;
    let result = measure(root, args);
    let _ = std::fs::remove_dir_all(&keys.dir);
    result
}

fn measure(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    if matches!(args.what, What::Deploy) {
        return crate::bench::deploy::run(
            root,
            args.trace,
            args.strategy,
            args.rounds,
            args.against.as_deref(),
        );
    }
    if matches!(args.what, What::Backup) {
        return crate::bench::backup::run(root);
    }
    if matches!(args.what, What::Fleet) {
        return crate::bench::fleet::run(root, args.hosts.map(usize::from));
    }
    let ui = Ui::new();
    let web = components::find("web")?;
    crate::release::build::build(&ui, root, &[web], components::ARTIFACT_EPOCH)?;
    let mut missed = Vec::new();

    let trees = [
        (
            "web artifact tree",
            crate::release::build::stage_dir(root, web),
        ),
        (
            "web/node_modules (dev, larger)",
            root.join("web/node_modules"),
        ),
    ];
    println!(
        "packaging: xtask pack_dir vs tar --sort=name | gzip -6 | sha256sum, median of {} runs",
        args.runs
    );
    for (i, (name, tree)) in trees.iter().enumerate() {
        let r = packaging(root, tree, components::ARTIFACT_EPOCH, args.runs)?;
        let speed = r.gnu.as_secs_f64() / r.ours.as_secs_f64();
        let size = r.ours_size as f64 / r.gnu_size as f64;
        println!(
            "  {name}: {} in, xtask {:.3} s, GNU {:.3} s -> {speed:.2}x as fast; size {} vs {} -> {:.3} of GNU's",
            human_bytes(r.input_bytes),
            r.ours.as_secs_f64(),
            r.gnu.as_secs_f64(),
            human_bytes(r.ours_size),
            human_bytes(r.gnu_size),
            size
        );
        // The target is set on the shipped web artifact; the larger tree is for context.
        if i == 0 {
            if speed < 1.0 {
                missed.push(format!("packaging is slower than GNU ({speed:.2}x)"));
            }
            if !(0.95..=1.05).contains(&size) {
                missed.push(format!("compressed size is {size:.3} of GNU's"));
            }
        }
    }

    if matches!(args.what, What::Packaging) {
        return finish(missed);
    }

    let garage = Garage::start()?;
    garage.create_bucket("bench")?;
    let env = garage.client_env();
    let release = |label: &str, store: &str| -> anyhow::Result<(Duration, Value)> {
        let started = Instant::now();
        let mut release = duct::cmd!(
            hitsave_host::kit::process::current_exe()?,
            "release",
            "--store",
            store,
            "--allow-dirty",
            "--json"
        )
        .dir(root)
        .env("CI", "true")
        .env_remove("GITHUB_STEP_SUMMARY");
        for (k, v) in &env {
            release = release.env(k, v);
        }
        let out = release
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()?;
        let elapsed = started.elapsed();
        ensure!(
            out.status.success(),
            "{label} release failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((elapsed, serde_json::from_slice(&out.stdout)?))
    };
    // Warm cargo's and npm's caches first (into a throwaway local store), so that "cold"
    // measures what a release does when the store is empty: package and upload everything.
    let warm_store =
        xtask::checkout::target_dir(root).join(format!("xtask/bench-warm-{}", std::process::id()));
    let warm = release("warm-up", warm_store.as_str());
    std::fs::remove_dir_all(&warm_store).ok();
    warm?;
    let bucket = "s3://bench/hitsave";
    let (cold, cold_json) = release("cold", bucket)?;
    let mut noops = Vec::new();
    let mut noop_bytes = 0;
    for _ in 0..args.runs {
        let (t, json) = release("no-op", bucket)?;
        noops.push(t);
        noop_bytes += json["uploaded_bytes"]
            .as_u64()
            .context("no uploaded_bytes")?;
    }
    drop(garage);
    let noop = median(noops);
    let cold_bytes = cold_json["uploaded_bytes"].as_u64().unwrap_or_default();
    let peak = cold_json["peak_rss_bytes"].as_u64().unwrap_or_default();
    println!("release to Garage (S3 on 127.0.0.1):");
    println!(
        "  cold (empty bucket: everything packaged and uploaded; cargo/npm caches warm): {:.2} s, {} uploaded",
        cold.as_secs_f64(),
        human_bytes(cold_bytes)
    );
    println!(
        "  no-op (same commit again), median of {}: {:.2} s, {} uploaded -> {:.1}x faster than cold",
        args.runs,
        noop.as_secs_f64(),
        human_bytes(noop_bytes),
        cold.as_secs_f64() / noop.as_secs_f64()
    );
    println!(
        "  peak RSS of the release process (packaging and uploading): {} ({:.0}% of the 100 MiB budget)",
        human_bytes(peak),
        peak as f64 / (100u64 << 20) as f64 * 100.0
    );
    if noop >= Duration::from_secs(2) {
        missed.push(format!("a no-op release took {:.2} s", noop.as_secs_f64()));
    }
    if noop_bytes != 0 {
        missed.push(format!("no-op releases uploaded {noop_bytes} bytes"));
    }
    if peak == 0 || peak >= 100 << 20 {
        missed.push(format!("peak RSS {}", human_bytes(peak)));
    }
    finish(missed)
}

/// Every bench ends here: "all targets met", or each missed one said and a failure.
pub(crate) fn finish(missed: Vec<String>) -> anyhow::Result<()> {
    if missed.is_empty() {
        println!("all targets met");
        return Ok(());
    }
    for m in &missed {
        println!("MISSED: {m}");
    }
    anyhow::bail!("{} target(s) missed: {}", missed.len(), missed.join("; "))
}

struct Packaging {
    input_bytes: u64,
    ours: Duration,
    gnu: Duration,
    ours_size: u64,
    gnu_size: u64,
}

fn packaging(
    root: &Utf8Path,
    tree: &Utf8Path,
    mtime: u64,
    runs: usize,
) -> anyhow::Result<Packaging> {
    ensure!(tree.is_dir(), "{tree} does not exist");
    let out = xtask::checkout::target_dir(root).join(format!("xtask/bench-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let gnu_file = out.join("gnu.tar.gz");
    // --hard-dereference: like ours, GNU then stores every file's content (a tarball must be a
    // function of the content, not of which files happen to be hard links in this checkout).
    // tar | gzip -6 -n | tee <file> | sha256sum, without a shell: duct checks every stage.
    let gnu = duct::cmd!(
        "tar",
        "--sort=name",
        "--format=gnu",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--hard-dereference",
        format!("--mtime=@{mtime}"),
        "-C",
        tree,
        "-cf",
        "-",
        "."
    )
    .pipe(duct::cmd!("gzip", "-6", "-n"))
    .pipe(duct::cmd!("tee", &gnu_file))
    .pipe(duct::cmd!("sha256sum"))
    .stdout_null();
    let gnu_once = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        gnu.run().context("the GNU pipeline failed")?;
        Ok(started.elapsed())
    };
    let ours_once = || -> anyhow::Result<(Duration, u64)> {
        let started = Instant::now();
        let packed = xtask::package::pack_dir(tree, &out, mtime)?;
        let elapsed = started.elapsed();
        std::fs::remove_file(&packed.path)?;
        Ok((elapsed, packed.size))
    };
    // Warm the page cache for both, then alternate so neither gets a quieter machine.
    gnu_once()?;
    ours_once()?;
    let (mut ours, mut gnu, mut ours_size) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let (t, size) = ours_once()?;
        ours.push(t);
        ours_size = size;
        gnu.push(gnu_once()?);
    }
    let gnu_size = std::fs::metadata(&gnu_file)?.len();
    let input_bytes = walkdir::WalkDir::new(tree)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(&out)?;
    Ok(Packaging {
        input_bytes,
        ours: median(ours),
        gnu: median(gnu),
        ours_size,
        gnu_size,
    })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
