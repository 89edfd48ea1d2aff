//! The web app's npm steps: installing dependencies from the committed lock file and building.

use anyhow::{Context, bail};
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::tools;

/// `npm ci`, skipped when node_modules was installed from the same package-lock.json.
pub fn install_dependencies(sh: &Shell, root: &Utf8Path) -> anyhow::Result<()> {
    check_node(sh)?;
    tools::require(sh, "npm", "npm")?;
    let lock = std::fs::read(root.join("web/package-lock.json"))
        .context("web/package-lock.json is missing")?;
    // npm writes this copy of the lock file after a successful install.
    let installed = std::fs::read(root.join("web/node_modules/.package-lock.json")).ok();
    let marker = root.join("web/node_modules/.hitsave-installed-lock");
    if installed.is_some() && std::fs::read(&marker).ok().as_deref() == Some(&lock[..]) {
        eprintln!("xtask: web dependencies are up to date");
        return Ok(());
    }
    cmd!(sh, "npm --prefix web ci --no-audit --no-fund")
        .run()
        .context("npm ci failed")?;
    std::fs::write(&marker, &lock)?;
    Ok(())
}

/// The oldest Node.js that Vite 7 and React Router 7 run on.
const MIN_NODE: (u32, u32) = (20, 19);

fn check_node(sh: &Shell) -> anyhow::Result<()> {
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
