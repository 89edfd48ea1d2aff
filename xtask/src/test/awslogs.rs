//! Logs off the host (part of the install suite): a host whose settings name a CloudWatch
//! Logs group installs a release; Docker's real awslogs driver (in the engine the tests
//! start, which has the tests' AWS credentials) sends every container's lines to moto's
//! CloudWatch Logs on 127.0.0.1 (the driver's `awslogs-endpoint`), one stream per container
//! named by the release; `xtask logs --remote --since 5m` prints them from there, and Docker's
//! own copy still serves `xtask logs` (dual logging).

use std::time::Duration;

use anyhow::{Context, ensure};
use camino::Utf8Path;

use crate::test::install::Harness;
use crate::test::moto::Moto;

const GROUP: &str = "hitsave-test-logs";

pub(crate) fn scenario(root: &Utf8Path, store: &Utf8Path, release: &str) -> anyhow::Result<()> {
    let moto = Moto::start()?;
    hitsave_host::kit::cloudwatch_logs::create_group(GROUP, "us-east-1", Some(&moto.endpoint))?;
    let (mut h, _cleanup) = Harness::fresh(root, "awslogs")?;
    h.store = store.to_owned();
    let out = h.install(
        release,
        &[
            "--logs-group",
            GROUP,
            "--logs-region",
            "us-east-1",
            "--logs-endpoint",
            &moto.endpoint,
        ],
    )?;
    ensure!(
        out.status.success(),
        "an install whose logs go to CloudWatch:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.expect_serving(release)?;
    let services = ["api", "web", "nginx", "db", "migrate"];
    let events = hitsave_host::kit::process::wait_for(
        "every container's lines in CloudWatch Logs",
        Duration::from_secs(60),
        Duration::from_secs(2),
        || {
            let events = hitsave_host::kit::cloudwatch_logs::events(
                GROUP,
                "us-east-1",
                Some(&moto.endpoint),
                0,
                10_000,
            )?;
            let missing: Vec<&str> = services
                .iter()
                .copied()
                .filter(|s| {
                    !events.iter().any(|e| {
                        e.stream.starts_with(&format!("{release}/"))
                            && e.stream.contains(&format!("-{s}-"))
                    })
                })
                .collect();
            Ok(if missing.is_empty() {
                hitsave_host::kit::process::Wait::Done(events)
            } else {
                hitsave_host::kit::process::Wait::NotYet(format!(
                    "no stream of {} yet ({} events so far)",
                    missing.join(", "),
                    events.len()
                ))
            })
        },
    )?;
    let streams: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.stream.as_str()).collect();
    let remote =
        h.t.command(
            &h.host_args(&["logs", "--remote", "--since", "5m"]),
            &[
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ],
        )
        .output()?;
    let printed = String::from_utf8_lossy(&remote.stdout);
    ensure!(
        remote.status.success()
            && ["api", "web", "nginx", "db"]
                .iter()
                .all(|s| printed.lines().any(|l| l.contains(&format!("-{s}-")))),
        "xtask logs --remote --since 5m:\n{printed}{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    let local = String::from_utf8(h.ok(&h.host_args(&["logs", "nginx", "--tail", "5"]))?)
        .context("xtask logs printed no text")?;
    ensure!(
        !local.trim().is_empty(),
        "Docker's own copy of the logs is gone (dual logging): xtask logs printed nothing"
    );
    eprintln!(
        "xtask: test: awslogs: {} lines in {} streams of group {GROUP} ({}), `logs --remote` printed {} of them; `logs` still reads Docker's copy",
        events.len(),
        streams.len(),
        streams
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", "),
        printed.lines().count()
    );
    Ok(())
}
