//! `cargo xtask bench fleet`: a release rolled over 1, 2 and 3 hosts behind a load balancer
//! with each deployment configuration, under steady load through the balancer, on this machine
//! with the fleet test's parts (test/fleet.rs: HAProxy health-checking `/lb-health`, one
//! PostgreSQL over TLS, CodeDeploy's lifecycle replayed per host with BlockTraffic and
//! AllowTraffic).
//!
//! Per fleet size: v1 everywhere at once, steady-state latency through the balancer with no
//! deploy, then OneAtATime, HalfAtATime and AllAtOnce in turn, each deploying the other of v1
//! and v2 (an API change). One table: hosts, configuration, deploy time, requests, failed, p99
//! during the rollout against steady state.
//!
//! Targets: with two hosts or more, OneAtATime and HalfAtATime drop nothing. AllAtOnce and a
//! single host take every host out of the balancer at once; their failed requests are the
//! figure, not a target. Exits non-zero when a target is missed.

use std::time::Duration;

use anyhow::ensure;
use camino::Utf8Path;
use xtask::rollout::DeploymentConfig;

use crate::images;
use crate::test::fleet::{DOMAIN, Fleet};
use crate::test::install::{Harness, commit_and_release, release};
use crate::test::load::Load;
use crate::test::release::{checkout, git};

/// Requests per second through the balancer.
const RATE: u32 = 100;
const LIMIT: Duration = Duration::from_secs(900);
const STEADY: Duration = Duration::from_secs(15);

struct Row {
    hosts: usize,
    config: DeploymentConfig,
    seconds: f64,
    requests: u64,
    failed: u64,
    p99: Duration,
    steady_p99: Duration,
}

/// `only`: one fleet size instead of 1, 2 and 3.
pub fn run(root: &Utf8Path, only: Option<usize>) -> anyhow::Result<()> {
    let _dockerd = images::ready_for_stacks(root)?;
    let (h, cleanup) = Harness::fresh(root, "bench-fleet")?;
    let head = git(root, &["rev-parse", "HEAD"])?;
    let twin = checkout(
        root,
        &xtask::checkout::target_dir(root).join("xtask/twins/b"),
        &head,
    )?;
    let releases = (|| -> anyhow::Result<_> {
        let v1 = release(&h, &twin)?;
        let v2 = commit_and_release(&h, &twin, "bench: api change", |d| {
            crate::bench::deploy::api_change(d, 1)
        })?;
        Ok((v1, v2))
    })();
    git(&twin, &["reset", "--quiet", "--hard", &head])?;
    let (v1, v2) = releases?;

    let mut rows = Vec::new();
    let sizes = only.map_or(1..=3, |n| n..=n);
    for hosts in sizes {
        let mut fleet = Fleet::start(&h.work.join(format!("fleet-{hosts}")), hosts, &h.store, &v1)?;
        // The bench goes back and forth between v1 and v2: downgrades, on purpose.
        fleet.set_all("HITSAVE_ALLOW_DOWNGRADE", "1")?;
        let first = fleet.rollout(
            &h.store,
            &format!("d-BENCH{hosts}00"),
            &v1,
            DeploymentConfig::AllAtOnce,
        )?;
        ensure!(
            first.failed.is_none(),
            "the first deployment to {hosts} host(s) failed: {:?}",
            first.failed
        );
        let steady = Load::start(fleet.lb.port, DOMAIN, RATE, STEADY);
        std::thread::sleep(STEADY);
        let steady = steady.stop();
        ensure!(
            steady.failed == 0,
            "{} requests failed with no deploy: {:?}",
            steady.failed,
            steady.failures
        );
        let mut on = v1.as_str();
        for (n, config) in [
            DeploymentConfig::OneAtATime,
            DeploymentConfig::HalfAtATime,
            DeploymentConfig::AllAtOnce,
        ]
        .into_iter()
        .enumerate()
        {
            let next = if on == v1 { v2.as_str() } else { v1.as_str() };
            let load = Load::start(fleet.lb.port, DOMAIN, RATE, LIMIT);
            let done = fleet.rollout(&h.store, &format!("d-BENCH{hosts}0{}", n + 1), next, config);
            let report = load.stop();
            let done = done?;
            ensure!(
                done.failed.is_none(),
                "{config} to {hosts} host(s) failed: {:?}",
                done.failed
            );
            fleet.expect_on(next)?;
            eprintln!(
                "xtask: bench: fleet: {hosts} host(s), {config}: {:.1} s, {} of {} requests failed",
                done.seconds, report.failed, report.requests
            );
            rows.push(Row {
                hosts,
                config,
                seconds: done.seconds,
                requests: report.requests,
                failed: report.failed,
                p99: report.percentile(0.99),
                steady_p99: steady.percentile(0.99),
            });
            on = next;
        }
        fleet.remove()?;
    }
    drop(cleanup);
    std::fs::remove_dir_all(&h.work)?;

    println!(
        "fleet deploy under load: {RATE} requests/s through HAProxy (GET /health on the API and the web landing page), an API change each time"
    );
    println!(
        "{:>5} {:<12} {:>9} {:>8} {:>7} {:>10} {:>10} {:>6}",
        "hosts", "config", "deploy", "requests", "failed", "p99", "steady p99", "ratio"
    );
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut missed = Vec::new();
    for r in &rows {
        println!(
            "{:>5} {:<12} {:>9} {:>8} {:>7} {:>10} {:>10} {:>6}",
            r.hosts,
            r.config.to_string(),
            format!("{:.1} s", r.seconds),
            r.requests,
            r.failed,
            ms(r.p99),
            ms(r.steady_p99),
            format!(
                "{:.2}",
                r.p99.as_secs_f64() / r.steady_p99.as_secs_f64().max(1e-6)
            )
        );
        let rolling = matches!(
            r.config,
            DeploymentConfig::OneAtATime | DeploymentConfig::HalfAtATime
        );
        if rolling && r.hosts >= 2 && r.failed > 0 {
            missed.push(format!(
                "{} on {} hosts dropped {} requests",
                r.config, r.hosts, r.failed
            ));
        }
    }
    super::finish(missed)
}
