//! `cargo xtask test`: every test, against real services that it starts on 127.0.0.1 and
//! stops by pid when it ends.
//!
//! Suites: `rust` (unit and integration tests of the workspace, on a real PostgreSQL), `web`
//! (the web app's unit tests) and `browser` (headless Chromium against the built web server,
//! the real API and the database) and `release` (the release pipeline against a local store
//! and a real Garage S3 server), `install` (the host side on a real Docker Engine) and `dev`
//! (`cargo xtask dev` as a developer runs it).

pub mod acme;
mod aws;
mod awslogs;
pub mod certs;
pub mod codedeploy;
pub mod console;
mod data_volume;
pub mod dev;
pub mod fleet;
pub mod garage;
pub mod glibc_probe;
pub mod install;
pub mod load;
pub mod moto;
mod notify;
pub mod pebble;
pub mod postgres;
mod previews;
pub mod release;
pub mod restore;
pub mod secrets;
pub mod signing;
mod watch;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use camino::{Utf8Path, Utf8PathBuf};

use crate::child::{Child, free_port};
use crate::release::web;
use crate::test::postgres::TestPostgres;
use crate::tools;
use hitsave_host::kit::files::write_private;
use hitsave_host::kit::process::wait_until;
use hitsave_host::kit::ui::Ui;

#[derive(clap::Args)]
pub struct Args {
    /// Suites to run; all of them when none is named.
    #[arg(value_enum)]
    suites: Vec<Suite>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum Suite {
    /// cargo fmt --check and clippy with warnings denied.
    Lint,
    /// cargo test for the whole workspace.
    Rust,
    /// The web app's unit tests (vitest).
    Web,
    /// Headless Chromium against the built web app, the API and PostgreSQL.
    Browser,
    /// package, release and verify: determinism across two checkouts, a local store, a store
    /// that fills up, and a real Garage S3 server.
    Release,
    /// install, rollback, status and doctor on a real Docker Engine: swaps, failed health,
    /// failed migrations, refusals, the lock and secrets that must not leak.
    Install,
    /// `cargo xtask dev` on a real Docker Engine: the three names through nginx, an API
    /// change served without a restart of dev, Ctrl-C leaving nothing behind, --down.
    Dev,
}

pub fn run(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    let suites = if args.suites.is_empty() {
        vec![
            Suite::Lint,
            Suite::Rust,
            Suite::Web,
            Suite::Browser,
            Suite::Release,
            Suite::Install,
            Suite::Dev,
        ]
    } else {
        args.suites
    };
    let ui = Ui::new();
    let started = Instant::now();
    // First, while this is the only thread: every release the tests make is signed.
    let keys = signing::setup(root)?;

    let needs_db = suites
        .iter()
        .any(|s| matches!(s, Suite::Rust | Suite::Browser));
    let pg = needs_db.then(TestPostgres::start).transpose()?;
    if suites
        .iter()
        .any(|s| matches!(s, Suite::Web | Suite::Browser))
    {
        web::install_dependencies(&ui, root)?;
    }

    let mut passed = 0;
    // What each suite costs, printed at the end (CI's time budget is shared by all of them).
    let mut took = Vec::new();
    for suite in &suites {
        eprintln!("xtask: ── suite {suite:?} ──");
        let suite_started = Instant::now();
        let result = match suite {
            Suite::Lint => lint(root),
            Suite::Rust => rust(root, pg.as_ref().expect("started above")),
            Suite::Web => duct::cmd!("npm", "--prefix", "web", "run", "test")
                .dir(root)
                .run()
                .map(drop)
                .context("web unit tests failed"),
            Suite::Browser => browser(root, pg.as_ref().expect("started above")),
            Suite::Release => crate::test::release::run(root),
            Suite::Install => crate::test::install::run(root),
            Suite::Dev => crate::test::dev::run(root),
        };
        if let Err(e) = result {
            println!("suites: {passed} passed, 1 failed");
            return Err(e.context(format!("suite {suite:?}")));
        }
        passed += 1;
        took.push(format!("{suite:?} {:.0?}", suite_started.elapsed()));
    }
    eprintln!(
        "xtask: all suites passed in {:.0?} ({})",
        started.elapsed(),
        took.join(", ")
    );
    println!("suites: {passed} passed, 0 failed");
    std::fs::remove_dir_all(&keys.dir)?;
    Ok(())
}

fn lint(root: &Utf8Path) -> anyhow::Result<()> {
    duct::cmd!("cargo", "fmt", "--all", "--check")
        .dir(root)
        .run()
        .context("code is not formatted: run `cargo fmt --all`")?;
    duct::cmd!(
        "cargo",
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings"
    )
    .dir(root)
    .run()
    .context("clippy found problems")?;
    // The GitHub Actions workflows: no actionlint error and no zizmor finding, even the
    // informational ones of its strictest persona.
    let linted = xtask::migrations::check(root)?;
    eprintln!("xtask: {linted} migrations are safe on a live database");
    let (zizmor, actionlint) = tools::workflow_linters()?;
    let dir = root.join(".github/workflows");
    let workflows: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {dir}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".yml"))
        .collect();
    duct::cmd(actionlint.as_std_path(), &workflows)
        .run()
        .context("actionlint found problems in .github/workflows")?;
    duct::cmd!(zizmor.as_std_path(), "--offline", "--persona=auditor", &dir)
        .run()
        .context("zizmor found problems in .github/workflows")?;
    iam_policies(root)?;
    cloudformation(root)?;
    tidy(root)
}

/// The rendered stack template passes cfn-lint (AWS's resource specifications) and checkov
/// (each skip named with its reason in the template); and checkov does fail it with a public
/// release bucket, so a pass means something.
fn cloudformation(root: &Utf8Path) -> anyhow::Result<()> {
    let (cfn_lint, checkov) = tools::template_linters()?;
    let rendered = crate::aws::template::render(root, Utf8Path::new(crate::aws::template::SOURCE))?;
    let dir = tempfile::tempdir()?;
    let dir = Utf8Path::from_path(dir.path()).context("a non-UTF-8 temporary path")?;
    let file = dir.join("hitsave.cfn.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&rendered.template)?)?;
    duct::cmd!(cfn_lint.as_std_path(), &file)
        .run()
        .context("cfn-lint found problems in deploy/aws/hitsave.cfn.yml (rendered)")?;
    let check = |file: &Utf8Path| {
        duct::cmd!(
            checkov.as_std_path(),
            "--quiet",
            "--compact",
            "--framework",
            "cloudformation",
            "-f",
            file
        )
        .env("BC_SKIP_MAPPING", "TRUE")
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
    };
    let out = check(&file)?;
    ensure!(
        out.status.success(),
        "checkov found problems in deploy/aws/hitsave.cfn.yml (rendered):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut public = rendered.template.clone();
    let bucket = &mut public["Resources"]["ReleaseBucket"]["Properties"];
    bucket["PublicAccessBlockConfiguration"] = serde_json::json!({
        "BlockPublicAcls": false, "IgnorePublicAcls": false,
        "BlockPublicPolicy": false, "RestrictPublicBuckets": false
    });
    bucket["AccessControl"] = "PublicRead".into();
    let public_file = dir.join("public.cfn.json");
    std::fs::write(&public_file, serde_json::to_vec_pretty(&public)?)?;
    let out = check(&public_file)?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        !out.status.success() && said.contains("CKV_AWS_53"),
        "checkov passed the template with a public release bucket:\n{said}"
    );
    let skips = rendered.template.to_string().matches("CKV_").count();
    eprintln!(
        "xtask: the stack template passes cfn-lint and checkov ({skips} checkov checks skipped, each with its reason in the template); with a public bucket checkov fails it"
    );
    Ok(())
}

/// The host program's structure (`xtask::tidy`).
pub fn tidy(root: &Utf8Path) -> anyhow::Result<()> {
    let summary = xtask::tidy::check(root)?;
    eprintln!(
        "xtask: tidy: {} host modules in their layers with {} uses between them and no cycle; {} paths in ARCHITECTURE.md exist",
        summary.modules, summary.edges, summary.paths
    );
    Ok(())
}

/// What parliament finds and is accepted on purpose: (issue, policy file, actions, why).
/// (parliament's own `ignore_locations` setting never matches a value from its config file.)
const PARLIAMENT_ACCEPTS: &[(&str, &str, &[&str], &str)] = &[(
    "PERMISSIONS_MANAGEMENT_ACTIONS",
    "deploy-preview-role-policy.json",
    &["iam:passrole"],
    "the preview deploy role hands CodeDeploy its service role to create preview-* groups: that one role, to codedeploy.amazonaws.com only",
)];

/// Every IAM permissions policy in deploy/aws passes parliament (with its community auditors),
/// its placeholders filled in as docs/aws-setup.md says; and parliament does fail a policy that
/// grants `s3:*` on the bucket, so a pass means something. (The trust policies have no
/// resources, which parliament reads as malformed; a unit test in deploy.rs checks them.)
fn iam_policies(root: &Utf8Path) -> anyhow::Result<()> {
    let parliament = tools::policy_linter()?;
    let dir = tempfile::tempdir()?;
    let rendered = Utf8Path::from_path(dir.path()).context("a non-UTF-8 temporary path")?;
    let source = root.join("deploy/aws");
    let mut count = 0;
    for entry in source.read_dir_utf8()? {
        let entry = entry?;
        // Permissions policies; the trust policies have no resources (see above).
        if entry.file_name().ends_with("policy.json") && !entry.file_name().contains("trust") {
            let text = std::fs::read_to_string(entry.path())?
                .replace("REGION", "us-east-1")
                .replace("ACCOUNT_ID", "123456789012");
            std::fs::write(rendered.join(entry.file_name()), text)?;
            count += 1;
        }
    }
    let lint = |dir: &Utf8Path| {
        duct::cmd!(
            parliament.as_std_path(),
            "--directory",
            dir,
            "--json",
            "--include-community-auditors"
        )
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
    };
    let out = lint(rendered)?;
    let said = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = said
        .lines()
        .filter(|line| {
            let finding: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let file = finding["location"]["filepath"].as_str().unwrap_or_default();
            !PARLIAMENT_ACCEPTS
                .iter()
                .any(|(issue, policy, actions, _why)| {
                    finding["issue"] == *issue
                        && file.ends_with(&format!("/{policy}"))
                        && finding["location"]["actions"] == serde_json::json!(actions)
                })
        })
        .collect();
    ensure!(
        problems.is_empty() && (out.status.success() || !said.trim().is_empty()),
        "parliament found problems in the policies of deploy/aws:\n{}",
        problems.join("\n")
    );
    let wide = tempfile::tempdir()?;
    let wide = Utf8Path::from_path(wide.path()).context("a non-UTF-8 temporary path")?;
    std::fs::write(
        wide.join("wide-role-policy.json"),
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::hitsave-releases"}]}"#,
    )?;
    let out = lint(wide)?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("RESOURCE_MISMATCH"),
        "parliament passed a policy with s3:* on the bucket:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "xtask: {count} IAM policies pass parliament (and a policy with s3:* on the bucket does not)"
    );
    Ok(())
}

fn rust(root: &Utf8Path, pg: &TestPostgres) -> anyhow::Result<()> {
    let mut test = duct::cmd!("cargo", "test", "--workspace", "--locked").dir(root);
    for (k, v) in pg.test_env() {
        test = test.env(k, v);
    }
    test.run().context("cargo test failed")?;
    Ok(())
}

fn wait_healthy(name: &str, service: &mut Child, port: u16, path: &str) -> anyhow::Result<()> {
    wait_until(name, Duration::from_secs(30), || {
        service.check_running()?;
        Ok(matches!(
            hitsave_host::kit::http::get(port, "127.0.0.1", path),
            Some((200, _))
        ))
    })
}

fn write_secret(dir: &Utf8Path, name: &str, value: &str) -> anyhow::Result<Utf8PathBuf> {
    let path = dir.join(name);
    write_private(&path, value)?;
    Ok(path)
}

fn browser(root: &Utf8Path, pg: &TestPostgres) -> anyhow::Result<()> {
    let chromium = tools::require("chromium", "chromium")?;
    duct::cmd!(
        "cargo", "build", "--locked", "-p", "hitsave", "-p", "migrate"
    )
    .dir(root)
    .run()
    .context("building the API and the migrator failed")?;
    web::build(&Ui::new(), root, None)?;
    let bin = xtask::checkout::target_dir(root).join("debug");

    let database = format!("e2e_{}", std::process::id());
    pg.psql("postgres", &format!("CREATE DATABASE {database}"))?;
    let app_env = pg.app_env(&database);
    let status = Command::new(bin.join("migrate"))
        .arg("run")
        .envs(app_env.iter().cloned())
        .status()
        .context("cannot run migrate")?;
    if !status.success() {
        bail!("migrate run failed ({status})");
    }

    let secrets = tempdir(root, "e2e-secrets")?;
    let api_port = free_port()?;
    let mut api = Child::spawn(
        "hitsave",
        Command::new(bin.join("hitsave"))
            .envs(app_env.iter().cloned())
            .env("HOST", "127.0.0.1")
            .env("PORT", api_port.to_string())
            .env(
                "JWT_SECRET_FILE",
                write_secret(&secrets, "jwt_secret", "e2e-jwt")?,
            )
            .env(
                "GH_CLIENT_SECRET_FILE",
                write_secret(&secrets, "gh_client_secret", "e2e-gh")?,
            )
            .stdin(Stdio::null()),
    )?;
    wait_healthy("the API", &mut api, api_port, "/ready")?;

    let web_port = free_port()?;
    let mut web = Child::spawn(
        "the web server",
        Command::new("node")
            .arg("server.js")
            .current_dir(root.join("web"))
            .env("NODE_ENV", "production")
            .env("HOST", "127.0.0.1")
            .env("PORT", web_port.to_string())
            .env("API_URL", format!("http://127.0.0.1:{api_port}"))
            .stdin(Stdio::null()),
    )?;
    wait_healthy("the web server", &mut web, web_port, "/healthz")?;

    let email = format!("e2e-{}@example.com", std::process::id());
    duct::cmd!("node", "--test", "--test-reporter=spec", "web/e2e/")
        .dir(root)
        .env("WEB_URL", format!("http://127.0.0.1:{web_port}"))
        .env("CHROMIUM_PATH", chromium.as_str())
        .env("E2E_EMAIL", &email)
        .run()
        .context("browser tests failed")?;

    // The form's submission went through the web server and the API into the database.
    let rows = pg.psql(
        &database,
        &format!("SELECT count(*) FROM waitlist WHERE email = '{email}'"),
    )?;
    if rows != "1" {
        bail!("expected 1 waitlist row for {email} in the database, found {rows}");
    }
    eprintln!("xtask: the database holds the waitlist row the browser submitted");
    web.stop_gracefully()?;
    api.stop_gracefully()?;
    eprintln!("xtask: the web server and the API shut down cleanly on SIGTERM");
    std::fs::remove_dir_all(&secrets)?;
    Ok(())
}

fn tempdir(root: &Utf8Path, name: &str) -> anyhow::Result<Utf8PathBuf> {
    let dir = root
        .join("target/xtask")
        .join(format!("{name}-{}", std::process::id()));
    // A run that crashed with the same pid may have left it behind.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
