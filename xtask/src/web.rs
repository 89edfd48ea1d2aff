//! The web app's npm steps: installing dependencies from the committed lock file and building.

use anyhow::Context;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::tools;

/// `npm ci`, skipped when node_modules was installed from the same package-lock.json.
pub fn install_dependencies(sh: &Shell, root: &Utf8Path) -> anyhow::Result<()> {
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

pub fn build(sh: &Shell) -> anyhow::Result<()> {
    cmd!(sh, "npm --prefix web run build")
        .run()
        .context("building the web app failed")?;
    Ok(())
}
