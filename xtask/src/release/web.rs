//! The web app's npm steps, for the build command and the tests alike: installing dependencies
//! from the committed lock file and building.

use anyhow::{Context, bail};
use camino::Utf8Path;

use crate::tools;
use hitsave_host::kit::ui::Ui;

/// `npm ci`, skipped when node_modules was installed from the same package-lock.json.
pub fn install_dependencies(ui: &Ui, root: &Utf8Path) -> anyhow::Result<()> {
    check_node()?;
    tools::require("npm", "npm")?;
    let lock = std::fs::read(root.join("web/package-lock.json"))
        .context("web/package-lock.json is missing")?;
    // npm writes node_modules/.package-lock.json after a successful install; our marker
    // records which lock file that install came from.
    let marker = root.join("web/node_modules/.hitsave-installed-lock");
    let installed = root.join("web/node_modules/.package-lock.json").is_file();
    if installed && std::fs::read(&marker).ok().as_deref() == Some(&lock[..]) {
        ui.info("web dependencies are up to date");
        return Ok(());
    }
    ui.run_step(
        "installing web dependencies (npm ci)",
        duct::cmd!("npm", "ci", "--no-audit", "--no-fund", "--prefer-offline")
            .dir(root.join("web")),
        &xtask::checkout::target_dir(root).join("xtask/logs/web-deps.log"),
    )?;
    std::fs::write(&marker, &lock)?;
    Ok(())
}

/// The oldest Node.js that Vite 7 and React Router 7 run on.
const MIN_NODE: (u32, u32) = (20, 19);

fn check_node() -> anyhow::Result<()> {
    let how = "install Node.js 20.19 or newer (for example the nodejs package of Debian trixie or of NodeSource)";
    if tools::which("node").is_none() {
        bail!("node is missing: {how}");
    }
    let version = duct::cmd!("node", "--version").read()?;
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

/// `npm run build` into web/build, removed first so that no stale asset survives. A release
/// passes its SOURCE_DATE_EPOCH for any tool that honours it.
pub fn build(ui: &Ui, root: &Utf8Path, source_date_epoch: Option<u64>) -> anyhow::Result<()> {
    let web = root.join("web");
    crate::release::build::remove_if_present(&web.join("build"))?;
    let mut command = duct::cmd!("npm", "run", "build")
        .dir(&web)
        .env("NODE_ENV", "production");
    if let Some(epoch) = source_date_epoch {
        command = command.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    ui.run_step(
        "building web (npm run build)",
        command,
        &xtask::checkout::target_dir(root).join("xtask/logs/web-build.log"),
    )
}
