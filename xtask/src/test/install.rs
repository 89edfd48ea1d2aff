//! The `install` test suite: `cargo xtask install`, `rollback`, `status` and `doctor` for real,
//! on a real Docker Engine with real images, PostgreSQL inside the stack and nginx in front.
//!
//! Releases come from a second checkout of HEAD with commits on top: v1 (HEAD), v2 (a web and
//! docs change, built again with no input records: the API container must stay), v3 (an API
//! that never becomes ready), v4 (a migration that fails), v5 (a destructive migration, undone
//! by `xtask restore`: test/restore.rs). Each is released, signed by the run's key
//! (test/signing.rs), to a local store and installed into a temporary install root as its own
//! compose project; test/signing.rs checks the signature refusals on that running stack.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use camino::{Utf8Path, Utf8PathBuf};
use hitsave_schema::{self as manifest, Manifest};
use serde_json::Value;

use crate::child::free_port;
use crate::images;
use crate::test::load::Load;
use crate::test::release::{Tester, checkout, commit, git, release_in};
use hitsave_host::kit::files::write_private;
use hitsave_host::kit::random::random_hex;
use hitsave_host::site::app::App;
use hitsave_host::site::lock::InstallLock;
use hitsave_host::site::stack::ReleaseEnv;
use hitsave_host::site::swap::WARM_UP_REQUESTS;

pub(crate) const DOMAIN: &str = "hitsave-local.io";

pub fn run(root: &Utf8Path) -> anyhow::Result<()> {
    let _dockerd = images::ready_for_stacks(root)?;
    production_overlay(root)?;
    let (h, _cleanup) = Harness::fresh(root, "install-tests")?;

    let head = git(root, &["rev-parse", "HEAD"])?;
    let twin = checkout(
        root,
        &xtask::checkout::target_dir(root).join("xtask/twins/b"),
        &head,
    )?;
    let result = scenario(&h, &twin)
        .and_then(|()| crate::test::acme::scenario(root, &h.store, &h.current()?, &h))
        .and_then(|()| crate::test::awslogs::scenario(root, &h.store, &h.current()?))
        .and_then(|()| crate::test::data_volume::scenario(root, &h, &h.current()?));
    git(&twin, &["reset", "--quiet", "--hard", &head])?;
    result?;
    drop(_cleanup);
    std::fs::remove_dir_all(&h.work)?;
    eprintln!("xtask: install suite: all checks passed");
    Ok(())
}

fn scenario(h: &Harness, twin: &Utf8Path) -> anyhow::Result<()> {
    // v1: HEAD as it is.
    let v1 = release(h, twin)?;
    h.install_ok(&v1)?;
    h.expect_serving(&v1)?;
    h.join_waitlist("install", 3)?;
    let db_id = h.container_id("db")?;
    eprintln!("xtask: test: v1 serves through nginx; 3 waitlist rows written");

    // v2: a web-only change (and a docs change): only the web container may be replaced,
    // also when the store has lost its build-once records, so v2 builds every component again
    // rather than reusing v1's artifacts: the same inputs give the same bytes, and so the same
    // image tags.
    let api_id = h.container_id("api")?;
    std::fs::remove_dir_all(h.store.join("inputs"))?;
    let v2 = commit_and_release(h, twin, "v2: web and docs", |dir| {
        append(&dir.join("README.md"), "\nInstall test v2.\n")?;
        replace(
            &dir.join("web/app/routes/healthz.js"),
            "status: \"ok\", ",
            "status: \"ok\", v2: true, ",
        )
    })?;
    let (m1, m2) = (h.manifest(&v1)?, h.manifest(&v2)?);
    for component in ["api", "migrate", "xtask"] {
        let sha = |m: &Manifest| m.artifact(component).map(|a| a.sha256.clone());
        ensure!(
            sha(&m1) == sha(&m2),
            "{component} was built again from the same inputs into other bytes"
        );
    }
    // What a crash half-way through an earlier install leaves behind.
    let leftover_dir = h.host_root.join("releases/.tmp-crashed-1");
    std::fs::create_dir_all(leftover_dir.join("api/bin"))?;
    let leftover_part = h
        .host_root
        .join(format!("cache/{}.partial", "0".repeat(64)));
    std::fs::write(&leftover_part, "half a download")?;
    // Blue/green under steady load: not one request may fail.
    let load = Load::start(h.port, DOMAIN, 200, Duration::from_secs(600));
    let installed = h.install(&v2, &[]);
    let report = load.stop();
    let installed = installed?;
    let log = String::from_utf8_lossy(&installed.stderr);
    ensure!(installed.status.success(), "installing {v2} failed:\n{log}");
    h.expect_serving(&v2)?;
    // The new web container answered every warm-up request on its own address before nginx
    // sent it traffic; the unchanged API got none.
    ensure!(
        log.lines().any(|l| l.contains("-web-")
            && l.contains(&format!("warmed up with {WARM_UP_REQUESTS} requests to /"))),
        "the new web container was not warmed up:\n{log}"
    );
    ensure!(
        !log.lines()
            .any(|l| l.contains("-api-") && l.contains("warmed up")),
        "the unchanged API was warmed up:\n{log}"
    );
    expect_cpu_weights(h, &log)?;
    // The API's image did not change: its container kept running, and it still answers as
    // the release that brought it.
    expect_apps_at(h.port, DOMAIN, &v1, &v2)?;
    ensure!(
        h.container_id("api")? == api_id,
        "a web-only change replaced the API container"
    );
    ensure!(
        report.failed == 0 && report.requests >= 200,
        "{} of {} requests failed during a blue/green swap: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    eprintln!(
        "xtask: test: v1 -> v2 blue/green under load: {} requests, 0 failed, p99 {:?}",
        report.requests,
        report.percentile(0.99)
    );
    ensure!(
        !leftover_dir.exists() && !leftover_part.exists(),
        "an install did not clean up after a crashed one"
    );
    ensure!(
        h.waitlist_rows()? == 3,
        "the waitlist rows did not survive the swap"
    );
    ensure!(
        h.container_id("db")? == db_id,
        "the db container was recreated by the swap"
    );
    let again = h.install(&v2, &[])?;
    ensure!(again.status.success(), "re-installing v2 failed");
    ensure!(
        h.last_history()?["outcome"] == "already-installed",
        "re-installing v2 was not a no-op: {}",
        h.last_history()?
    );
    eprintln!("xtask: test: v2 serves, rows and the db container kept; re-install is a no-op");
    least_privilege(h)?;
    stale_address(h, &v1, &v2)?;

    // v3: an API that never becomes ready: the old release comes back. An API-only change
    // uploads the API artifact and a few KiB (the bundle, manifest, records and pointers).
    let summary = commit_and_release_summary(h, twin, "v3: never ready", |dir| {
        replace(
            &dir.join("api/src/routes/health.rs"),
            "let verdict = match",
            "let verdict: Result<(), String> = Err(\"broken on purpose\".into());\n    let _ = match",
        )
    })?;
    let v3 = summary["release"]
        .as_str()
        .context("no release id")?
        .to_owned();
    api_only_upload(&summary)?;
    git(twin, &["reset", "--quiet", "--hard", "HEAD~1"])?;
    let load = Load::start(h.port, DOMAIN, 200, Duration::from_secs(600));
    let out = h.install(&v3, &["--health-timeout", "25"]);
    let report = load.stop();
    let out = out?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        report.failed == 0 && report.requests >= 200,
        "{} of {} requests failed while an unhealthy v3 was tried: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    ensure!(
        !out.status.success() && err.contains("rolled back") && err.contains(&v2),
        "installing an API that never becomes ready:\n{err}"
    );
    h.expect_serving(&v2)?;
    ensure!(h.current()? == v2, "current moved to a release that failed");
    ensure!(
        h.last_history()?["outcome"] == "rolled-back",
        "history: {}",
        h.last_history()?
    );
    // The removed container's last words outlive it: what its readiness page last answered
    // the install (Docker's own check, every 30 s, has not run within the 25 s) and its log.
    let recorded = h.last_history()?["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for said in [
        "it answers 503",
        "broken on purpose",
        "hitsave listening",
        &v3,
    ] {
        ensure!(
            recorded.contains(said) && err.contains(said),
            "the failed container's evidence ({said:?}) is not in the error and history:\n{recorded}"
        );
    }
    eprintln!("xtask: test: v3 never became ready; v2 was brought back and serves");

    // `bad`: an API that answers 500 to every fifth /health once it serves (the watch's).
    let bad = commit_and_release(h, twin, "bad: a fifth of /health answers 500", |dir| {
        crate::test::watch::break_health(dir)
    })?;
    git(twin, &["reset", "--quiet", "--hard", "HEAD~1"])?;

    // The same releases, deployed through their CodeDeploy bundles on a second host root
    // (before `refusals` tampers with v3's artifacts in the store).
    crate::test::codedeploy::lifecycle(&h.work, &h.store, &v1, &v2, &v3, &bad)?;
    // Three such hosts behind a load balancer, on one PostgreSQL over TLS.
    crate::test::fleet::scenario(&h.work, &h.store, &v1, &v2)?;
    // Staging and pull requests' previews side by side on one preview host.
    crate::test::previews::scenario(&h.work, &h.store, &v1, &v2)?;

    // v4: a migration that fails: no swap at all.
    let v4 = commit_and_release(h, twin, "v4: broken migration", |dir| {
        std::fs::write(
            dir.join("migrations/20991231000000_broken_on_purpose.sql"),
            "ALTER TABLE no_such_table ADD COLUMN x int;\n",
        )?;
        Ok(())
    })?;
    git(twin, &["reset", "--quiet", "--hard", "HEAD~1"])?;
    let api_id = h.container_id("api")?;
    let containers = h.snapshot()?.2;
    let out = h.install(&v4, &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("20991231000000") && err.contains("untouched"),
        "installing a release whose migration fails:\n{err}"
    );
    ensure!(
        h.container_id("api")? == api_id,
        "a failed migration still swapped the API"
    );
    // The API's new container was created ahead of the swap, and removed with the failure.
    ensure!(
        err.contains("api: creating new containers beside the old ones"),
        "v4's install created no container ahead of its swap:\n{err}"
    );
    h.expect_containers(&containers, "a failed migration")?;
    h.expect_serving(&v2)?;
    ensure!(h.current()? == v2, "current moved after a failed migration");
    eprintln!("xtask: test: v4's migration failed, named; nothing was swapped");
    pre_migrate_backup(h, &v2)?;
    backup_failures(h, &v2, &v4)?;
    backup_retention(h)?;

    // Rollback: from disk, to previous (v1), refusing what is not on disk; then forward again.
    let err = h.t.fails(
        &h.host_args(&["rollback", "--to", "20990101000000-0123456789ab"]),
        &[],
    )?;
    ensure!(
        err.contains("not on this host"),
        "rollback to an unknown id:\n{err}"
    );
    h.ok(&h.host_args(&["rollback"]))?;
    h.expect_serving(&v1)?;
    ensure!(h.current()? == v1, "rollback did not make v1 current");
    h.ok(&h.host_args(&["rollback"]))?;
    h.expect_serving(&v2)?;
    ensure!(h.waitlist_rows()? == 3, "rows lost across rollbacks");
    eprintln!("xtask: test: rollback to v1 and back to v2, from disk");
    // The team's webhook: the watch's deploys are told there, and more below.
    let receiver = crate::test::notify::Receiver::start()?;
    crate::test::watch::scenario(h, &v1, &v2, &bad, &receiver.env())?;

    refusals(h, &v1, &v3)?;
    crate::test::signing::scenario(h, &v2, &v1)?;
    concurrent(h, &v1, &v2)?;
    crate::test::restore::scenario(h, twin, &v1, &v2)?;
    crate::test::console::scenario(h)?;
    crate::test::secrets::scenario(h)?;
    no_secret_leaks(h)?;
    crate::test::notify::scenario(h, &receiver, &v1, &bad, &v4)?;

    let status: Value = serde_json::from_slice(&h.ok(&h.host_args(&["status", "--json"]))?)?;
    ensure!(
        status["current"] == v2.as_str()
            && status["serving"].get("Ok").is_some()
            && status["containers"]
                .as_array()
                .is_some_and(|c| c.len() == 4),
        "status --json: {status}"
    );
    h.ok(&["doctor", "--root", h.host_root.as_str()])?;
    eprintln!("xtask: test: status --json and doctor agree");

    // On a host (no cargo around), messages name the command that works there.
    let empty = h.work.join("no-host-yet");
    std::fs::create_dir_all(&empty)?;
    let out =
        h.t.command(&["status", "--root", empty.as_str()], &[])
            .env_remove("CARGO")
            .output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && said.contains(&format!(
                "run `xtask install --store ... --channel ... --root {empty}` first"
            ))
            && !said.contains("cargo xtask"),
        "status on an empty root, as a host runs it:\n{said}"
    );
    Ok(())
}

/// nginx reaches each app at its container's address, with no DNS lookup on the request path,
/// and by name when that address is stale (a container restarted on another one): here the
/// API's address is made the web container's, which refuses port 8080, under load.
fn stale_address(h: &Harness, v1: &str, v2: &str) -> anyhow::Result<()> {
    let site_file = h.host_root.join("nginx/default.conf");
    let site = std::fs::read_to_string(&site_file)?;
    let api = expect_api_at_its_address(h)?;
    let web = container_ip(h, "web")?;
    let direct = |at: &str| format!("upstream hitsave_api {{\n    server {at}:8080 max_fails=1");
    let nginx = h.container_id("nginx")?;
    let reload = || -> anyhow::Result<()> {
        docker(&["exec", &nginx, "nginx", "-s", "reload"])?;
        // The old workers stop taking requests about 100 ms after the signal.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    };
    std::fs::write(&site_file, site.replace(&direct(&api), &direct(&web)))?;
    reload()?;
    let load = Load::start(h.port, DOMAIN, 100, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let served = expect_apps_at(h.port, DOMAIN, v1, v2);
    let report = load.stop();
    // What hitsave-routes.timer runs at boot and every minute: the API's address again, once.
    let routes = || -> anyhow::Result<String> {
        let out = h.t.command(&h.host_args(&["routes"]), &[]).output()?;
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(out.status.success(), "`xtask routes` failed:\n{said}");
        Ok(said)
    };
    let (first, second) = (routes(), routes());
    let fixed = std::fs::read_to_string(&site_file)?;
    if fixed != site {
        std::fs::write(&site_file, &site)?;
        reload()?;
    }
    served?;
    ensure!(
        report.failed == 0 && report.requests >= 100,
        "{} of {} requests failed with the API's address stale: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    let (first, second) = (first?, second?);
    ensure!(
        fixed == site
            && first.contains(&format!("api at {api}:8080"))
            && first.contains("rendered again and reloaded")
            && second.contains("as it did already"),
        "`xtask routes` did not point nginx at the API's address {api} again, once:\n{first}\n{second}"
    );
    expect_api_at_its_address(h)?;
    eprintln!(
        "xtask: test: nginx routes to the apps' addresses; with the API's stale, its name served {} requests, 0 failed, p99 {:?}; `xtask routes` pointed nginx at its address again (and changed nothing the second time)",
        report.requests,
        report.percentile(0.99)
    );
    Ok(())
}

/// The ids of compose project `project`'s running containers of `service`, one per line.
pub(crate) fn running_ids(project: &str, service: &str) -> anyhow::Result<String> {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
}

/// The running container of `service`'s address (the stack's one network).
fn container_ip(h: &Harness, service: &str) -> anyhow::Result<String> {
    docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &h.container_id(service)?,
    ])
}

/// nginx routes the API to its running container's address (no DNS lookup on the request
/// path); that address.
pub(crate) fn expect_api_at_its_address(h: &Harness) -> anyhow::Result<String> {
    let site = std::fs::read_to_string(h.host_root.join("nginx/default.conf"))?;
    let api = container_ip(h, "api")?;
    ensure!(
        site.contains(&format!(
            "upstream hitsave_api {{\n    server {api}:8080 max_fails=1"
        )),
        "nginx does not route to the API's address {api}:8080:\n{site}"
    );
    Ok(api)
}

/// What each running container may do, from `docker inspect`: the apps run as the
/// unprivileged APP_UID with no capability; db and nginx with only the capabilities their
/// entrypoints need; every one without privilege escalation, with a memory and a process
/// limit and a bounded /tmp. The secret files are the apps' uid's alone, and a fork bomb
/// started in the API's container is stopped by its process limit while the site answers.
fn least_privilege(h: &Harness) -> anyhow::Result<()> {
    let uid = hitsave_host::site::secret_files::APP_UID;
    let expected: [(&str, &[&str]); 4] = [
        ("api", &[]),
        ("web", &[]),
        (
            "db",
            &[
                "CAP_CHOWN",
                "CAP_DAC_READ_SEARCH",
                "CAP_FOWNER",
                "CAP_SETGID",
                "CAP_SETUID",
            ],
        ),
        (
            "nginx",
            &[
                "CAP_CHOWN",
                "CAP_NET_BIND_SERVICE",
                "CAP_SETGID",
                "CAP_SETUID",
            ],
        ),
    ];
    for (service, caps) in expected {
        let id = h.container_id(service)?;
        let inspect: Value = serde_json::from_str(&docker(&["inspect", &id])?)?;
        let c = &inspect[0];
        let host = &c["HostConfig"];
        let mut cap_add: Vec<String> = host["CapAdd"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|c| format!("CAP_{}", c.trim_start_matches("CAP_")))
                    .collect()
            })
            .unwrap_or_default();
        cap_add.sort();
        ensure!(
            cap_add == caps,
            "{service} adds capabilities {cap_add:?}, not {caps:?}"
        );
        ensure!(
            host["CapDrop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|c| c == "ALL" || c == "CAP_ALL")),
            "{service} keeps Docker's default capabilities: {}",
            host["CapDrop"]
        );
        ensure!(
            host["SecurityOpt"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o
                    .as_str()
                    .is_some_and(|o| o.starts_with("no-new-privileges")))),
            "{service} may gain privileges: {}",
            host["SecurityOpt"]
        );
        ensure!(
            host["Memory"].as_u64().is_some_and(|m| m > 0)
                && host["PidsLimit"].as_i64().is_some_and(|p| p > 0),
            "{service} has no memory or process limit: {} bytes, {} processes",
            host["Memory"],
            host["PidsLimit"]
        );
        ensure!(
            host["Tmpfs"]["/tmp"]
                .as_str()
                .is_some_and(|o| o.contains("size=")),
            "{service}'s /tmp is not bounded: {}",
            host["Tmpfs"]
        );
        if matches!(service, "api" | "web") {
            ensure!(
                c["Config"]["User"] == format!("{uid}:{uid}"),
                "{service} runs as {:?}, not {uid}",
                c["Config"]["User"]
            );
        }
        if service == "nginx" {
            // The reload's SIGHUP must never count as a stop, whatever the image sets.
            ensure!(
                c["Config"]["StopSignal"] == "SIGQUIT",
                "nginx stops on {}, not SIGQUIT",
                c["Config"]["StopSignal"]
            );
        }
        if service == "web" {
            ensure!(
                !c["Mounts"].to_string().contains("/run/secrets"),
                "web mounts a secret: {}",
                c["Mounts"]
            );
        }
    }
    // The secret files: the apps' uid's, 0600, and no other uid in the container reads them.
    for name in hitsave_host::site::secret_files::NAMES {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(h.host_root.join("secrets").join(name))?;
        ensure!(
            meta.uid() == uid && meta.permissions().mode() & 0o777 == 0o600,
            "secrets/{name} is uid {} mode {:o}",
            meta.uid(),
            meta.permissions().mode() & 0o777
        );
    }
    let api = h.container_id("api")?;
    ensure!(
        docker(&[
            "exec",
            "--user",
            "1000",
            &api,
            "cat",
            "/run/secrets/jwt_secret"
        ])
        .is_err(),
        "another uid in the API's container reads its secret"
    );

    // A fork bomb, as an operator's `xtask exec` would start it, under load. The shell that
    // starts it becomes `sleep` (no fork needed), so timeout's SIGKILL to its process group
    // ends the bomb after 10 s.
    let load = Load::start(h.port, DOMAIN, 50, Duration::from_secs(600));
    let mut args = h.host_args(&["exec", "api"]);
    args.extend([
        "--",
        "timeout",
        "-s",
        "KILL",
        "10",
        "sh",
        "-c",
        "b() { b | b & }; b; exec sleep 60",
    ]);
    let bomb =
        h.t.command(&args, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
    std::thread::sleep(Duration::from_secs(2));
    let report = load.stop();
    let events = pids_events(&api)?;
    ensure!(
        events > 0,
        "the fork bomb never reached the API's process limit (exit {bomb})"
    );
    ensure!(
        report.failed == 0 && report.requests > 100,
        "{} of {} requests failed while a fork bomb ran in the API's container: {:?}",
        report.failed,
        report.requests,
        report.failures
    );
    ensure!(
        h.container_id("api")? == api,
        "the API's container was replaced after the fork bomb"
    );
    hitsave_host::kit::process::wait_until(
        "the API to be healthy again",
        Duration::from_secs(60),
        || Ok(docker(&["inspect", "--format", "{{.State.Health.Status}}", &api])? == "healthy"),
    )?;
    eprintln!(
        "xtask: test: every container least-privileged (apps as uid {uid}, listed capabilities, limits, bounded /tmp); a fork bomb in the API hit its process limit {events} times while {} requests all succeeded",
        report.requests
    );
    Ok(())
}

/// How many times a container's processes were refused for its process limit (the pids
/// controller's `max` events, cgroup v1 or v2).
fn pids_events(container: &str) -> anyhow::Result<u64> {
    let pid = docker(&["inspect", "--format", "{{.State.Pid}}", container])?;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers == "pids" || controllers.is_empty()).then(|| {
                if controllers.is_empty() {
                    format!("/sys/fs/cgroup{path}/pids.events")
                } else {
                    format!("/sys/fs/cgroup/pids{path}/pids.events")
                }
            })
        })
        .context("no pids cgroup for the container")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0))
}

/// An API-only release uploads the API artifact and less than 100 KiB besides.
fn api_only_upload(summary: &Value) -> anyhow::Result<()> {
    let artifacts = summary["artifacts"].as_array().context("no artifacts")?;
    let built: Vec<&str> = artifacts
        .iter()
        .filter(|a| a["action"] == "built")
        .filter_map(|a| a["component"].as_str())
        .collect();
    ensure!(built == ["api"], "an API-only change built {built:?}");
    let api = artifacts
        .iter()
        .find(|a| a["component"] == "api")
        .and_then(|a| a["size"].as_u64())
        .context("no api size")?;
    let uploaded = summary["uploaded_bytes"]
        .as_u64()
        .context("no uploaded_bytes")?;
    let besides = uploaded.saturating_sub(api);
    ensure!(
        uploaded >= api && besides < 100 << 10,
        "an API-only release uploaded {uploaded} bytes for a {api}-byte API artifact"
    );
    eprintln!(
        "xtask: test: an API-only release uploaded {} ({} API artifact + {} bundle, manifest, records, pointers)",
        hitsave_host::kit::ui::human_bytes(uploaded),
        hitsave_host::kit::ui::human_bytes(api),
        hitsave_host::kit::ui::human_bytes(besides)
    );
    Ok(())
}

/// The install of v4 had a migration pending, so it backed the database up first: on the
/// host and in the store, its record naming v2 (whose schema it has) and counting the rows the
/// database has; pg_restore reads it. A manual `xtask backup` works too.
fn pre_migrate_backup(h: &Harness, v2: &str) -> anyhow::Result<()> {
    let last = h.last_history()?;
    let id = last["backup"]
        .as_str()
        .with_context(|| format!("the install of v4 took no backup: {last}"))?;
    let dir = h.host_root.join("backups");
    let record =
        hitsave_schema::BackupRecord::parse(&std::fs::read(dir.join(format!("{id}.json")))?)?;
    let dump = std::fs::read(dir.join(format!("{id}.dump")))?;
    let sha = manifest::Sha256::from_bytes(<sha2::Sha256 as sha2::Digest>::digest(&dump).into());
    ensure!(
        record.reason == hitsave_schema::BackupReason::PreMigrate
            && record.release.as_ref().is_some_and(|r| r == v2)
            && record.sha256 == sha
            && record.size == dump.len() as u64
            && record.last_migration == Some(20261101000004),
        "the pre-migrate backup's record: {record:?}"
    );
    let rows = h.db_count("SELECT count(*) FROM waitlist")?;
    ensure!(
        record.tables.get("waitlist") == Some(&rows) && record.tables.contains_key("users"),
        "the backup counted {:?}, the database has {rows} waitlist rows",
        record.tables
    );
    ensure!(
        record.environment.as_deref() == Some("local")
            && record.host.as_deref() == Some(h.host_id()?.as_str())
            && record
                .database
                .as_ref()
                .is_some_and(|d| d.name == "hitsave")
            && record.id.contains(&h.host_id()?),
        "the record does not name the environment, the host and the database: {record:?}"
    );
    ensure!(
        std::fs::read(h.store.join(record.dump_key()))? == dump
            && h.store.join(record.record_key()).is_file()
            && record
                .dump_key()
                .starts_with(&format!("backups/local/{}/", h.host_id()?)),
        "backup {id} is not in the store under backups/local/<host>/"
    );
    let db = h.container_id("db")?;
    let listed = duct::cmd!("docker", "exec", "-i", &db, "pg_restore", "--list")
        .stdin_bytes(dump)
        .read()
        .context("pg_restore cannot read the backup")?;
    ensure!(
        listed.contains("TABLE DATA public waitlist"),
        "pg_restore --list:\n{listed}"
    );

    let manual: Value = serde_json::from_slice(&h.ok(&h.host_args(&["backup", "--json"]))?)?;
    ensure!(
        manual["reason"] == "manual" && manual["release"] == v2,
        "xtask backup: {manual}"
    );
    let files = std::fs::read_dir(&dir)?.count();
    ensure!(
        files == 4,
        "{dir} has {files} files, not two backups and their records"
    );

    // The restore drill: the backup restores with every row, into a throwaway database.
    let verified: Value =
        serde_json::from_slice(&h.ok(&h.host_args(&["backup", "verify", id, "--json"]))?)?;
    ensure!(verified["id"] == id, "backup verify: {verified}");
    ensure!(
        dir.join(format!("{id}.verified")).is_file(),
        "the drill left no mark"
    );
    // A flipped byte is refused before anything is restored.
    let manual_id = manual["id"].as_str().context("no id")?;
    let manual_dump = dir.join(format!("{manual_id}.dump"));
    let good = std::fs::read(&manual_dump)?;
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&manual_dump, &bad)?;
    let err =
        h.t.fails(&h.host_args(&["backup", "verify", manual_id]), &[])?;
    ensure!(
        err.contains("is damaged") && err.contains("nothing was restored"),
        "verify of a flipped byte:\n{err}"
    );
    // A truncated dump whose record was rewritten to match: pg_restore finds it out.
    let cut = &good[..good.len() / 2];
    std::fs::write(&manual_dump, cut)?;
    let record_path = dir.join(format!("{manual_id}.json"));
    let mut record: hitsave_schema::BackupRecord =
        hitsave_schema::BackupRecord::parse(&std::fs::read(&record_path)?)?;
    let honest = record.clone();
    record.size = cut.len() as u64;
    record.sha256 =
        manifest::Sha256::from_bytes(<sha2::Sha256 as sha2::Digest>::digest(cut).into());
    std::fs::write(&record_path, hitsave_schema::to_bytes(&record))?;
    let err =
        h.t.fails(&h.host_args(&["backup", "verify", manual_id]), &[])?;
    ensure!(
        err.contains("does not restore"),
        "verify of a truncated dump:\n{err}"
    );
    std::fs::write(&manual_dump, &good)?;
    std::fs::write(&record_path, hitsave_schema::to_bytes(&honest))?;
    let drills = docker(&["ps", "-aq", "--filter", "name=hitsave-drill-"])?;
    ensure!(drills.is_empty(), "drill containers left behind: {drills}");
    eprintln!(
        "xtask: test: v4's install backed up first ({id}: {} bytes, {} waitlist rows, in the store too); a manual backup works",
        record.size, rows
    );
    Ok(())
}

/// A pre-migrate backup that cannot be taken stops the install before it migrates, and a
/// backup killed half-way leaves nothing that is listed or uploaded.
fn backup_failures(h: &Harness, v2: &str, v4: &str) -> anyhow::Result<()> {
    let dir = h.host_root.join("backups");
    let before = std::fs::read_dir(&dir)?.count();
    let listed = |suffix: &str| -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .count())
    };
    let records = listed(".json")?;
    let api_id = h.container_id("api")?;
    let migrations = h.db_count("SELECT count(*) FROM _sqlx_migrations")?;
    let containers = h.snapshot()?.2;
    let refused = |why: &str| -> anyhow::Result<()> {
        let out = h.install(v4, &[])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success()
                && err.contains("the backup before migrating failed")
                && err.contains("nothing was migrated")
                && !err.contains("20991231000000"),
            "an install whose backup fails ({why}):\n{err}"
        );
        ensure!(
            h.container_id("api")? == api_id
                && h.db_count("SELECT count(*) FROM _sqlx_migrations")? == migrations
                && h.waitlist_rows()? == 3,
            "{why}: the stack, schema or rows changed"
        );
        h.expect_containers(&containers, why)?;
        h.expect_serving(v2)
    };

    // The backups directory on a tiny tmpfs.
    duct::cmd!(
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=16k,mode=0700",
        "tmpfs",
        &dir
    )
    .run()
    .context("cannot mount a tmpfs (the tests run as root)")?;
    let full = refused("a full disk");
    let _ = duct::cmd!("umount", &dir).unchecked().run();
    full?;
    // The store refusing the upload: its backups/ is a file.
    let store_backups = h.store.join("backups");
    let aside = h.store.join("backups.aside");
    std::fs::rename(&store_backups, &aside)?;
    std::fs::write(&store_backups, "not a directory\n")?;
    let upload = refused("the store refusing the upload");
    std::fs::remove_file(&store_backups)?;
    std::fs::rename(&aside, &store_backups)?;
    upload?;
    ensure!(
        std::fs::read_dir(&dir)?.count() == before,
        "a refused backup left files in {dir}"
    );

    // kill -9 half-way: enough rows that the dump takes a moment.
    let db = h.container_id("db")?;
    docker(&[
        "exec",
        &db,
        "psql",
        "-U",
        "hitsave",
        "-d",
        "hitsave",
        "-qc",
        "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS filler FROM generate_series(1, 400000) g",
    ])?;
    let mut backup = std::process::Command::new(h.t.exe());
    backup
        .args(h.host_args(&["backup"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = crate::child::Child::spawn("xtask backup", &mut backup)?;
    let partial = hitsave_host::kit::process::wait_for(
        "the backup to start writing",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || {
            let found = std::fs::read_dir(&dir)?
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
            Ok(if found {
                hitsave_host::kit::process::Wait::Done(())
            } else if child.exited().is_some() {
                anyhow::bail!("the backup finished before it could be killed")
            } else {
                hitsave_host::kit::process::Wait::NotYet("no partial file yet".into())
            })
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let _ = child.wait();
    partial?;
    ensure!(listed(".json")? == records, "a killed backup left a record");
    let in_store = std::fs::read_dir(&store_backups)?.count();
    h.ok(&h.host_args(&["backup"]))?;
    ensure!(
        listed(".partial")? == 0 && listed(".json")? == records + 1,
        "the next backup did not clean up after the killed one"
    );
    ensure!(
        std::fs::read_dir(&store_backups)?.count() == in_store,
        "a backup without --store wrote to the store"
    );
    docker(&[
        "exec",
        &db,
        "psql",
        "-U",
        "hitsave",
        "-d",
        "hitsave",
        "-qc",
        "DROP TABLE bulk",
    ])?;
    eprintln!(
        "xtask: test: a full backups disk or a refusing store stops the install before it migrates; a backup killed half-way leaves nothing listed"
    );
    Ok(())
}

/// `--keep 1 --days 0` leaves the newest backup and the pinned one (the pre-migrate backup the
/// last install took, which is also the last to pass its drill), on the host and in the store.
fn backup_retention(h: &Harness) -> anyhow::Result<()> {
    let pinned = h
        .history()?
        .iter()
        .rev()
        .filter(|e| e["action"] == "install")
        .find_map(|e| e["backup"].as_str().map(str::to_owned))
        .context("no install in history names a backup")?;
    let store = h.store.as_str();
    let first: Value =
        serde_json::from_slice(&h.ok(&h.host_args(&["backup", "--store", store, "--json"]))?)?;
    let args = [
        "backup", "--store", store, "--keep", "1", "--days", "0", "--json",
    ];
    let newest: Value = serde_json::from_slice(&h.ok(&h.host_args(&args))?)?;
    let newest = newest["id"].as_str().context("no id")?.to_owned();
    let mut expected = vec![pinned.clone(), newest.clone()];
    expected.sort();
    let records = |dir: &Utf8Path| -> anyhow::Result<Vec<String>> {
        let mut ids: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(name.strip_suffix(".json")?.to_owned())
            })
            .collect();
        ids.sort();
        Ok(ids)
    };
    let own = h
        .store
        .join(hitsave_schema::backups_dir("local", Some(&h.host_id()?)));
    let on_host = records(&h.host_root.join("backups"))?;
    let in_store = records(&own)?;
    ensure!(
        on_host == expected && in_store == expected,
        "after --keep 1 --days 0: host {on_host:?}, store {in_store:?}; expected {expected:?} ({} was pruned)",
        first["id"]
    );
    let dumps = std::fs::read_dir(&own)?.count();
    ensure!(
        dumps == 4,
        "the store keeps {dumps} files, not 2 backups and their records"
    );
    eprintln!(
        "xtask: test: retention keeps the newest backup and the pinned {pinned}, on the host and in the store"
    );
    Ok(())
}

/// A tampered artifact, a missing or readable secret, and crafted tarballs: each refused with
/// a clear error, and nothing changes.
fn refusals(h: &Harness, v1: &str, v3: &str) -> anyhow::Result<()> {
    let before = h.snapshot()?;

    // A tampered artifact in the store (and not in the host's cache).
    let m3 = h.manifest(v3)?;
    let api = m3.artifact("api").context("v3 has no api")?;
    let key = h.store.join(manifest::artifact_key(&api.sha256));
    let mut bytes = std::fs::read(&key)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&key, &bytes)?;
    std::fs::remove_file(
        h.host_root
            .join("cache")
            .join(format!("{}.tar.gz", api.sha256)),
    )?;
    let out = h.install(v3, &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("expected")
            && err.contains("actual")
            && err.contains(api.sha256.as_str()),
        "a tampered artifact:\n{err}"
    );
    ensure!(
        !h.host_root
            .join("cache")
            .join(format!("{}.tar.gz", api.sha256))
            .exists()
            && !h
                .host_root
                .join("cache")
                .join(format!("{}.partial", api.sha256))
                .exists(),
        "the tampered download was kept"
    );
    ensure!(
        h.snapshot()? == before,
        "a tampered artifact changed the host"
    );

    // A missing secret, then one that others can read.
    let secret = h.host_root.join("secrets/jwt_secret");
    let aside = h.host_root.join("jwt_secret.aside");
    std::fs::rename(&secret, &aside)?;
    let out = h.install(v1, &[])?;
    std::fs::rename(&aside, &secret)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("jwt_secret") && err.contains("missing"),
        "a missing secret:\n{err}"
    );
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let out = h.install(v1, &[])?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("readable by others"),
        "a world-readable secret:\n{err}"
    );
    ensure!(h.snapshot()? == before, "a secret problem changed the host");
    h.expect_serving(&h.current()?)?;

    // Crafted tarballs, each published (and signed) as the api artifact of a release of its own.
    let m1 = h.manifest(v1)?;
    let run_key = crate::test::signing::run_key()?;
    for (n, (kind, expect)) in [
        ("dotdot", "`..`"),
        ("absolute", "absolute"),
        ("link-out", "outside the tree"),
        ("fifo", "refused"),
        ("hardlink", "hard links"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = m1.clone();
        m.release = format!("2099010100000{n}-abcdef012345").parse()?;
        let m = crate::test::signing::put_api(h, m, &crafted_tarball(kind)?)?;
        crate::test::signing::publish(&h.store, &m, Some(&run_key))?;
        let out = h.install(&m.release, &[])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains(expect) && err.contains("nothing was installed"),
            "a crafted tarball ({kind}):\n{err}"
        );
        ensure!(
            !h.host_root
                .join("releases")
                .join(m.release.as_str())
                .exists(),
            "{kind}: unpacked anyway"
        );
        ensure!(
            !h.host_root.join("escaped").exists() && !h.work.join("escaped").exists(),
            "{kind}: wrote outside"
        );
    }
    ensure!(
        h.snapshot()? == before,
        "a crafted tarball changed the host"
    );
    eprintln!(
        "xtask: test: a tampered artifact, a missing and a readable secret and 5 crafted tarballs were refused; nothing changed"
    );
    Ok(())
}

/// A tarball (gzip'd tar) with one malicious entry besides a normal file; `plain` has only
/// the normal file, `bomb` adds 256 MiB of zeros (about 256 KiB compressed).
pub(crate) fn crafted_tarball(kind: &str) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut file = tar::Header::new_gnu();
    file.set_size(3);
    file.set_mode(0o644);
    file.set_entry_type(tar::EntryType::Regular);
    file.set_path("bin/ok")?;
    file.set_cksum();
    builder.append(&file, &b"ok\n"[..])?;
    let mut evil = tar::Header::new_gnu();
    evil.set_mode(0o644);
    evil.set_size(0);
    // Raw names: the tar crate's setters refuse these, as they should.
    let set_name = |h: &mut tar::Header, name: &str| {
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
    };
    let set_link = |h: &mut tar::Header, name: &str| {
        let raw = &mut h.as_old_mut().linkname;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
    };
    match kind {
        "plain" => return gzip(builder.into_inner()?),
        "bomb" => {
            evil.set_entry_type(tar::EntryType::Regular);
            evil.set_size(256 << 20);
            set_name(&mut evil, "bin/big");
            evil.set_cksum();
            builder.append(&evil, std::io::Read::take(std::io::repeat(0), 256 << 20))?;
            return gzip(builder.into_inner()?);
        }
        "dotdot" => {
            evil.set_entry_type(tar::EntryType::Regular);
            set_name(&mut evil, "../../escaped");
        }
        "absolute" => {
            evil.set_entry_type(tar::EntryType::Regular);
            set_name(&mut evil, "/tmp/escaped");
        }
        "link-out" => {
            evil.set_entry_type(tar::EntryType::Symlink);
            set_name(&mut evil, "bin/escaped");
            set_link(&mut evil, "../../../../../../etc");
        }
        "fifo" => {
            evil.set_entry_type(tar::EntryType::Fifo);
            set_name(&mut evil, "bin/fifo");
        }
        "hardlink" => {
            evil.set_entry_type(tar::EntryType::Link);
            set_name(&mut evil, "bin/passwd");
            set_link(&mut evil, "/etc/passwd");
        }
        _ => bail!("no crafted tarball called {kind}"),
    }
    evil.set_cksum();
    builder.append(&evil, std::io::empty())?;
    gzip(builder.into_inner()?)
}

fn gzip(tar: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar)?;
    Ok(gz.finish()?)
}

/// The lock: a held lock makes an install wait, then fail after --lock-timeout, naming the
/// holder; two installs started together run one after the other.
fn concurrent(h: &Harness, v1: &str, v2: &str) -> anyhow::Result<()> {
    {
        let _held = InstallLock::acquire(
            &h.host_root.join("install.lock"),
            Duration::from_secs(5),
            "the install test",
        )?;
        let out = h.install(v2, &["--lock-timeout", "2"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success()
                && err.contains(&format!("pid {}", std::process::id()))
                && err.contains("the install test"),
            "an install while the lock is held:\n{err}"
        );
    }
    let start = |id: &str| {
        let args = h.install_args(id, &["--lock-timeout", "300"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        h.t.command(&args, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    };
    let first = start(v1)?;
    let second = start(v1)?;
    let (a, b) = (first.wait_with_output()?, second.wait_with_output()?);
    let errs = format!(
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    ensure!(
        a.status.success() && b.status.success(),
        "two installs at once:\n{errs}"
    );
    ensure!(
        errs.contains("waiting for the install lock"),
        "neither install waited:\n{errs}"
    );
    let history = h.history()?;
    let outcomes: Vec<_> = history[history.len() - 2..]
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or("").to_owned())
        .collect();
    ensure!(
        outcomes == ["installed", "already-installed"],
        "two installs at once recorded {outcomes:?}"
    );
    h.expect_serving(v1)?;
    // Leave v2 current for what follows.
    h.install_ok(v2)?;
    eprintln!("xtask: test: the lock names its holder, times out, and serialises two installs");
    Ok(())
}

/// No secret value in docker inspect, image history, container logs, release.env,
/// history.jsonl, or any process's environment or command line.
fn no_secret_leaks(h: &Harness) -> anyhow::Result<()> {
    let values: Vec<(String, String)> = hitsave_host::site::secret_files::NAMES
        .iter()
        .map(|s| {
            let value = std::fs::read_to_string(h.host_root.join("secrets").join(s))?;
            Ok((s.to_string(), value.trim().to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    let searched = expect_no_leak(h, &values, "")?;
    eprintln!(
        "xtask: test: no secret value in docker inspect, image history, logs, release.env, history.jsonl or process environments and command lines ({} KiB searched)",
        searched / 1024
    );
    Ok(())
}

/// Fails if any of `values` (name, value) is in what the host shows: every container's
/// inspect and logs, every image's history and inspect, history.jsonl, each release.env,
/// every process's environment and command line, and `extra` (what commands printed). The
/// bytes searched.
pub(crate) fn expect_no_leak(
    h: &Harness,
    values: &[(String, String)],
    extra: &str,
) -> anyhow::Result<usize> {
    let containers = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", h.project),
    ])?;
    let mut haystack = String::from(extra);
    for id in containers.split_whitespace() {
        haystack += &docker(&["inspect", id])?;
        let logs = duct::cmd!("docker", "logs", id)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()?;
        haystack += &String::from_utf8_lossy(&logs.stdout);
        haystack += &String::from_utf8_lossy(&logs.stderr);
    }
    let images = docker(&[
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "hitsave/*",
    ])?;
    for image in images.split_whitespace() {
        haystack += &docker(&["image", "history", "--no-trunc", image])?;
        haystack += &docker(&["image", "inspect", image])?;
    }
    haystack += &std::fs::read_to_string(h.host_root.join("history.jsonl"))?;
    for id in h.releases()? {
        haystack +=
            &std::fs::read_to_string(h.host_root.join("releases").join(id).join("release.env"))?;
    }
    // Every process on the machine, the containers' included (one PID namespace from here).
    for entry in std::fs::read_dir("/proc")?.flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        for file in ["environ", "cmdline"] {
            if let Ok(bytes) = std::fs::read(entry.path().join(file)) {
                haystack += &String::from_utf8_lossy(&bytes).replace('\0', " ");
            }
        }
    }
    ensure!(
        haystack.len() > 10_000,
        "too little was searched for secrets ({} bytes)",
        haystack.len()
    );
    for (name, value) in values {
        ensure!(!value.is_empty(), "no value of {name} to look for");
        ensure!(
            !haystack.contains(value.as_str()),
            "a value of secret {name} leaked"
        );
    }
    Ok(haystack.len())
}

/// `docker compose config` of the base file with the production overlay: what production
/// really gets, against what the base alone gives a developer.
fn production_overlay(root: &Utf8Path) -> anyhow::Result<()> {
    let config = |files: &[&str]| -> anyhow::Result<Value> {
        // The profile shows the one-off migrate service too.
        let mut args = vec!["compose".to_owned(), "--profile".into(), "migrate".into()];
        for f in files {
            args.extend(["-f".into(), root.join("deploy").join(f).to_string()]);
        }
        args.extend(["config".into(), "--format".into(), "json".into()]);
        let out = duct::cmd("docker", &args)
            .env("HITSAVE_NGINX_DIR", "/opt/hitsave/nginx")
            .env("HITSAVE_SECRETS_DIR", "/opt/hitsave/secrets")
            .read()
            .context("docker compose config failed")?;
        Ok(serde_json::from_str(&out)?)
    };
    let base = config(&["docker-compose.yml"])?;
    let prod = config(&["docker-compose.yml", "production.yml"])?;
    let s = |c: &Value, svc: &str| c["services"][svc].clone();

    ensure!(
        s(&base, "db")["ports"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "the base publishes the db port for developers"
    );
    ensure!(
        s(&prod, "db")["ports"]
            .as_array()
            .is_none_or(|p| p.is_empty()),
        "production publishes the db port: {}",
        s(&prod, "db")["ports"]
    );
    for svc in ["api", "web"] {
        ensure!(
            s(&base, svc)["volumes"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "the base mounts {svc}'s code"
        );
        ensure!(
            s(&prod, svc)["volumes"]
                .as_array()
                .is_none_or(|v| v.is_empty()),
            "production mounts code into {svc}: {}",
            s(&prod, svc)["volumes"]
        );
    }
    for svc in ["db", "api", "web", "nginx"] {
        let service = s(&prod, svc);
        ensure!(
            service["restart"] == "always",
            "{svc} restart: {}",
            service["restart"]
        );
        ensure!(
            service["logging"]["options"]["max-size"] == "10m",
            "{svc} logs are not rotated"
        );
        ensure!(
            service["healthcheck"]["test"].is_array(),
            "{svc} has no health check"
        );
    }
    let ports: Vec<(String, String)> = s(&prod, "nginx")["ports"]
        .as_array()
        .context("nginx publishes nothing")?
        .iter()
        .map(|p| {
            (
                p["target"].to_string(),
                p["published"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ensure!(
        ports
            == [
                ("80".to_owned(), "80".to_owned()),
                ("443".to_owned(), "443".to_owned())
            ],
        "production nginx ports: {ports:?}"
    );
    ensure!(
        s(&prod, "migrate")["profiles"][0] == "migrate",
        "migrate would start with `up`: {}",
        s(&prod, "migrate")
    );
    ensure!(
        s(&prod, "api")["depends_on"]["db"]["condition"] == "service_started"
            && s(&prod, "db")["healthcheck"]["interval"] == "30s",
        "the api should start once the db has started (Docker checks the db every 30 s, and the install asks it itself): api {}, db {}",
        s(&prod, "api")["depends_on"],
        s(&prod, "db")["healthcheck"]
    );
    ensure!(
        prod["secrets"]["postgres_password"]["file"] == "/opt/hitsave/secrets/postgres_password",
        "secrets: {}",
        prod["secrets"]
    );
    let env = s(&prod, "api")["environment"].to_string();
    ensure!(
        env.contains("JWT_SECRET_FILE") && !env.contains("\"JWT_SECRET\""),
        "api environment: {env}"
    );
    eprintln!(
        "xtask: test: the production overlay drops code mounts and the db port, adds restarts, log rotation, 80 and 443"
    );
    Ok(())
}

/// Everything the tests need to run xtask against one install root and one compose project.
pub(crate) struct Harness {
    pub(crate) t: Tester,
    pub(crate) work: Utf8PathBuf,
    pub(crate) store: Utf8PathBuf,
    pub(crate) host_root: Utf8PathBuf,
    project: String,
    pub(crate) port: u16,
    pub(crate) https_port: u16,
}

impl Harness {
    /// A harness in a fresh `<target>/xtask/<name>-<pid>` with a compose project of its own,
    /// which the returned guard removes.
    pub(crate) fn fresh(root: &Utf8Path, name: &str) -> anyhow::Result<(Harness, ProjectCleanup)> {
        remove_stale(&xtask::checkout::target_dir(root).join("xtask"), name);
        let project = format!("hitsave-{name}-{}", std::process::id());
        Harness::fresh_as(root, name, &project)
    }

    /// `fresh`, with the compose project named: a second "instance" of a host.
    pub(crate) fn fresh_as(
        root: &Utf8Path,
        name: &str,
        project: &str,
    ) -> anyhow::Result<(Harness, ProjectCleanup)> {
        let parent = xtask::checkout::target_dir(root).join("xtask");
        let work = parent.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let cleanup = ProjectCleanup(project.to_owned());
        Ok((Harness::new(root, &work, project)?, cleanup))
    }

    fn new(root: &Utf8Path, work: &Utf8Path, project: &str) -> anyhow::Result<Harness> {
        let host_root = work.join("host");
        write_host_secrets(&host_root)?;
        Ok(Harness {
            t: Tester::new(root)?,
            work: work.to_owned(),
            store: work.join("store"),
            host_root,
            project: project.to_owned(),
            port: free_port()?,
            https_port: free_port()?,
        })
    }

    /// The compose project its stack runs as.
    pub(crate) fn project(&self) -> &str {
        &self.project
    }

    pub(crate) fn host_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--root", self.host_root.as_str()]);
        all
    }

    pub(crate) fn install_args(&self, id: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "install",
            "--store",
            self.store.as_str(),
            "--release",
            id,
            "--root",
            self.host_root.as_str(),
            "--env",
            "local",
            "--local-base-images",
            "--project",
            &self.project,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--http-port".to_owned(), self.port.to_string()]);
        args.extend(["--https-port".to_owned(), self.https_port.to_string()]);
        // The watch after a cutover only where a test asks for it (`--watch SECS`).
        if !extra.contains(&"--watch") {
            args.extend(["--watch".to_owned(), "0".to_owned()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub(crate) fn install(&self, id: &str, extra: &[&str]) -> anyhow::Result<std::process::Output> {
        self.install_with(id, extra, &[])
    }

    /// `install` with more variables in its environment.
    pub(crate) fn install_with(
        &self,
        id: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<std::process::Output> {
        let args = self.install_args(id, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        eprintln!(
            "xtask: test: xtask install --release {id} {}",
            extra.join(" ")
        );
        let out = self
            .t
            .command(&args, env)
            .output()
            .context("cannot run xtask install")?;
        // The signature check's cost, for the figures.
        for line in String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains(": signed by key"))
        {
            eprintln!("{line}");
        }
        Ok(out)
    }

    pub(crate) fn install_ok(&self, id: &str) -> anyhow::Result<()> {
        let out = self.install(id, &[])?;
        ensure!(
            out.status.success(),
            "installing {id} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub(crate) fn ok(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        eprintln!("xtask: test: xtask {}", args.join(" "));
        let out = self
            .t
            .command(args, &[])
            .stderr(Stdio::inherit())
            .output()?;
        ensure!(out.status.success(), "`xtask {}` failed", args.join(" "));
        Ok(out.stdout)
    }

    /// `<prefix>-0@example.com` ... `<prefix>-<n-1>@...` join the waitlist through nginx.
    pub(crate) fn join_waitlist(&self, prefix: &str, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let body = format!(r#"{{"email":"{prefix}-{i}@example.com"}}"#);
            let reply = hitsave_host::kit::http::request(
                self.port,
                &format!("api.{DOMAIN}"),
                "PUT",
                "/waitlist",
                Some(&body),
            );
            ensure!(
                matches!(reply, Some((201, _))),
                "joining the waitlist through nginx: {reply:?}"
            );
        }
        Ok(())
    }

    /// `release` serves: each app answers through nginx as the release that brought its image.
    pub(crate) fn expect_serving(&self, release: &str) -> anyhow::Result<()> {
        expect_serving_at(self.port, DOMAIN, &self.host_root, release)
    }

    /// The test host's name (its host-id file).
    pub(crate) fn host_id(&self) -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(self.host_root.join(hitsave_host::site::host::HOST_ID_FILE))?
                .trim()
                .to_owned(),
        )
    }

    pub(crate) fn current(&self) -> anyhow::Result<String> {
        current_release(&self.host_root)
    }

    /// Waits until the old app containers a swap drains in the background are gone (one
    /// container per app at most), so that what a test reads of the stack is its settled state.
    pub(crate) fn settled(&self) -> anyhow::Result<()> {
        let count = |service: &str| -> anyhow::Result<usize> {
            Ok(docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ])?
            .split_whitespace()
            .count())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let (api, web) = (count("api")?, count("web")?);
            if api <= 1 && web <= 1 {
                return Ok(());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "{} still has {api} api and {web} web containers 40 s after the last swap: the old ones were never drained",
                self.project
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn container_id(&self, service: &str) -> anyhow::Result<String> {
        self.settled()?;
        running_ids(&self.project, service)
    }

    /// One number from the stack's database.
    pub(crate) fn db_count(&self, sql: &str) -> anyhow::Result<u64> {
        let db = self.container_id("db")?;
        Ok(docker(&[
            "exec", &db, "psql", "-U", "hitsave", "-d", "hitsave", "-tAc", sql,
        ])?
        .trim()
        .parse()?)
    }

    pub(crate) fn waitlist_rows(&self) -> anyhow::Result<u64> {
        let db = self.container_id("db")?;
        let n = docker(&[
            "exec",
            &db,
            "psql",
            "-U",
            "hitsave",
            "-d",
            "hitsave",
            "-tAc",
            "SELECT count(*) FROM waitlist WHERE email LIKE 'install-%'",
        ])?;
        n.parse().with_context(|| format!("psql printed {n:?}"))
    }

    pub(crate) fn history(&self) -> anyhow::Result<Vec<Value>> {
        std::fs::read_to_string(self.host_root.join("history.jsonl"))?
            .lines()
            .map(|l| Ok(serde_json::from_str(l)?))
            .collect()
    }

    pub(crate) fn last_history(&self) -> anyhow::Result<Value> {
        self.history()?.pop().context("history.jsonl is empty")
    }

    pub(crate) fn manifest(&self, id: &str) -> anyhow::Result<Manifest> {
        Manifest::parse(&std::fs::read(
            self.store.join(manifest::manifest_key(&id.parse()?)),
        )?)
    }

    pub(crate) fn releases(&self) -> anyhow::Result<Vec<String>> {
        let mut ids: Vec<String> = std::fs::read_dir(self.host_root.join("releases"))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// What a refused install must leave as it was: links, releases on disk, containers.
    pub(crate) fn snapshot(&self) -> anyhow::Result<(String, Vec<String>, String)> {
        self.settled()?;
        Ok((self.current()?, self.releases()?, self.containers()?))
    }

    /// The stack's containers in any state (a created one too), one line each.
    fn containers(&self) -> anyhow::Result<String> {
        docker(&[
            "ps",
            "-a",
            "--format",
            "{{.ID}} {{.Image}} {{.State}}",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ])
    }

    /// The stack's containers are still `before` (`containers`) after an install that stopped
    /// before its swap (`why`): none it created ahead of the swap is left.
    pub(crate) fn expect_containers(&self, before: &str, why: &str) -> anyhow::Result<()> {
        let now = self.containers()?;
        ensure!(
            now == before,
            "{why}: the stack's containers were\n{before}and are\n{now}"
        );
        Ok(())
    }
}

/// Makes `<host_root>/secrets/` (0700) with a random value for every secret (0600).
/// Removes `<parent>/<name>-<pid>` left by runs that failed (their files are kept for a look
/// until the next run) whose process is gone: a host's worth of releases each.
fn remove_stale(parent: &Utf8Path, name: &str) {
    let Ok(entries) = parent.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let gone = entry
            .file_name()
            .strip_prefix(&format!("{name}-"))
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| {
                pid != std::process::id() && !Utf8Path::new(&format!("/proc/{pid}")).exists()
            });
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub(crate) fn write_host_secrets(host_root: &Utf8Path) -> anyhow::Result<()> {
    // The host's name (the user data writes the EC2 instance id there): each test host its own.
    let name: String = host_root
        .parent()
        .and_then(Utf8Path::file_name)
        .unwrap_or("host")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::fs::create_dir_all(host_root)?;
    std::fs::write(
        host_root.join(hitsave_host::site::host::HOST_ID_FILE),
        format!("test-{name}\n"),
    )?;
    let secrets = host_root.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    for name in hitsave_host::site::secret_files::NAMES {
        write_private(&secrets.join(name), &random_hex(24)?)?;
    }
    Ok(())
}

/// `release` serves through nginx on 127.0.0.1:`port` for `domain`: each app answers as the
/// release that brought its image (its own id, or an earlier release's when its image did not
/// change), as `release`'s release.env under `host_root` records.
pub(crate) fn expect_serving_at(
    port: u16,
    domain: &str,
    host_root: &Utf8Path,
    release: &str,
) -> anyhow::Result<()> {
    let env = ReleaseEnv::read(&host_root.join("releases").join(release).join("release.env"))?;
    expect_apps_at(
        port,
        domain,
        env.app_release(App::Api)?.0,
        env.app_release(App::Web)?.0,
    )
}

/// The new web container, which booted at the lowest weight and half a CPU, serves with its
/// CPU limit lifted (in Docker's settings, and in its cgroup on cgroup v1), and on cgroup v1
/// the install gave the containers' parent cgroup ten times a host process's CPU weight and the
/// web container the default one back.
fn expect_cpu_weights(h: &Harness, log: &str) -> anyhow::Result<()> {
    use hitsave_host::site::cpu::{CPU_MOUNT, PARENT_SHARES, SERVING_SHARES, shares};
    let web = h.container_id("web")?;
    let full = docker(&[
        "inspect",
        "--format",
        "{{.Id}} {{.HostConfig.CpuShares}} {{.HostConfig.CpuQuota}}",
        &web,
    ])?;
    let [id, configured, quota] = full.split(' ').collect::<Vec<_>>()[..] else {
        bail!("docker inspect printed {full:?}");
    };
    ensure!(
        quota == "-1",
        "the new web container serves with CPU quota {quota} (its boot limit was not lifted)"
    );
    if !Utf8Path::new(CPU_MOUNT).join("cpu.shares").exists() {
        eprintln!("xtask: test: no cgroup v1 cpu controller here: CPU weights not checked");
        return Ok(());
    }
    let line = log
        .lines()
        .find(|l| l.contains("CPU weight of the containers ("))
        .with_context(|| format!("the install set no CPU weight:\n{log}"))?;
    let parent = line
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(dir, _)| Utf8PathBuf::from(dir))
        .context("the CPU weight line names no cgroup")?;
    ensure!(
        shares(&parent)? == PARENT_SHARES,
        "{parent} does not have the CPU weight the install logged"
    );
    let cgroup_quota = std::fs::read_to_string(parent.join(id).join("cpu.cfs_quota_us"))?;
    ensure!(
        configured == SERVING_SHARES.to_string()
            && shares(&parent.join(id))? == SERVING_SHARES
            && cgroup_quota.trim() == "-1",
        "the new web container serves at CPU weight {configured}, quota {} (its boot CPU was not lifted)",
        cgroup_quota.trim()
    );
    Ok(())
}

/// The API answers through nginx as release `api` and the web app as release `web`.
pub(crate) fn expect_apps_at(port: u16, domain: &str, api: &str, web: &str) -> anyhow::Result<()> {
    for (host, path, release) in [
        (format!("api.{domain}"), "/health", api),
        (domain.to_owned(), "/healthz", web),
    ] {
        let marker = format!("\"release\":\"{release}\"");
        let reply = hitsave_host::kit::http::get(port, &host, path);
        ensure!(
            matches!(&reply, Some((200, body)) if body.contains(&marker)),
            "{host}{path} should serve {release}: {reply:?}"
        );
    }
    Ok(())
}

/// The release `<host_root>/current` points at.
pub(crate) fn current_release(host_root: &Utf8Path) -> anyhow::Result<String> {
    let link = std::fs::read_link(host_root.join("current"))?;
    Ok(link
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned())
}

pub(crate) fn release(h: &Harness, twin: &Utf8Path) -> anyhow::Result<String> {
    let summary = release_in(twin, &h.store)?;
    Ok(summary["release"]
        .as_str()
        .context("no release id")?
        .to_owned())
}

/// Commits `change` in the twin checkout and releases it.
pub(crate) fn commit_and_release(
    h: &Harness,
    twin: &Utf8Path,
    message: &str,
    change: impl FnOnce(&Utf8Path) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let summary = commit_and_release_summary(h, twin, message, change)?;
    Ok(summary["release"]
        .as_str()
        .context("no release id")?
        .to_owned())
}

/// `commit_and_release`, returning the release's `--json` summary.
pub(crate) fn commit_and_release_summary(
    h: &Harness,
    twin: &Utf8Path,
    message: &str,
    change: impl FnOnce(&Utf8Path) -> anyhow::Result<()>,
) -> anyhow::Result<Value> {
    change(twin)?;
    git(twin, &["add", "-A"])?;
    commit(twin, message)?;
    release_in(twin, &h.store)
}

fn append(path: &Utf8Path, text: &str) -> anyhow::Result<()> {
    let mut s = std::fs::read_to_string(path)?;
    s.push_str(text);
    std::fs::write(path, s)?;
    Ok(())
}

pub(crate) fn replace(path: &Utf8Path, from: &str, to: &str) -> anyhow::Result<()> {
    let s = std::fs::read_to_string(path)?;
    ensure!(s.contains(from), "{path} no longer contains {from:?}");
    std::fs::write(path, s.replacen(from, to, 1))?;
    Ok(())
}

/// What `docker ARGS` printed, trimmed; its stderr in the error when it fails.
pub(crate) fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = duct::cmd("docker", args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Removes the test's compose project (containers, network, the database volume) however the
/// test ends.
pub(crate) struct ProjectCleanup(pub(crate) String);

impl Drop for ProjectCleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = duct::cmd("docker", args)
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run();
        };
        quiet(&[
            "compose",
            "--project-name",
            &self.0,
            "down",
            "--volumes",
            "--remove-orphans",
            "--timeout",
            "5",
        ]);
        quiet(&["volume", "rm", "--force", &format!("{}_db-data", self.0)]);
    }
}
