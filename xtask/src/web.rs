//! The web app's npm steps: installing dependencies from the committed lock file and building.

use anyhow::{Context, bail};
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::tools;

/// `npm ci`, skipped when node_modules was installed from the same package-lock.json.
pub fn install_dependencies(sh: &Shell, root: &Utf8Path) -> anyhow::Result<()> {
    check_node(sh)?;
    tools::require(sh, "npm", "npm")?;
    if dependencies_up_to_date(root)? {
        eprintln!("xtask: web dependencies are up to date");
        return Ok(());
    }
    cmd!(sh, "npm --prefix web ci --no-audit --no-fund")
        .run()
        .context("npm ci failed")?;
    mark_installed(root)
}

/// True when web/node_modules was installed by `npm ci` from the current lock file.
pub fn dependencies_up_to_date(root: &Utf8Path) -> anyhow::Result<bool> {
    let lock = std::fs::read(root.join("web/package-lock.json"))
        .context("web/package-lock.json is missing")?;
    // npm writes this copy of the lock file after a successful install.
    let installed = root.join("web/node_modules/.package-lock.json").is_file();
    Ok(installed && std::fs::read(marker(root)).ok().as_deref() == Some(&lock[..]))
}

/// Records that web/node_modules matches the current lock file.
pub fn mark_installed(root: &Utf8Path) -> anyhow::Result<()> {
    let lock = std::fs::read(root.join("web/package-lock.json"))?;
    std::fs::write(marker(root), lock)?;
    Ok(())
}

fn marker(root: &Utf8Path) -> camino::Utf8PathBuf {
    root.join("web/node_modules/.hitsave-installed-lock")
}

/// The oldest Node.js that Vite 7 and React Router 7 run on.
const MIN_NODE: (u32, u32) = (20, 19);

pub fn check_node(sh: &Shell) -> anyhow::Result<()> {
    let how = "install Node.js 20.19 or newer (for example the nodejs package of Debian trixie or of NodeSource)";
    if tools::which("node").is_none() {
        bail!("node is missing: {how}");
    }
    let version = cmd!(sh, "node --version").quiet().read()?;
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(str::parse::<u32>);
    let found = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => bail!("cannot read the Node.js version from `node --version`: {version:?}"),
    };
    if found < MIN_NODE {
        bail!("Node.js {version} is too old for the web app: {how}");
    }
    Ok(())
}

pub fn build(sh: &Shell) -> anyhow::Result<()> {
    cmd!(sh, "npm --prefix web run build")
        .run()
        .context("building the web app failed")?;
    Ok(())
}
