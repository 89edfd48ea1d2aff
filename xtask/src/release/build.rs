//! `cargo xtask build [COMPONENT...]`: builds components and stages exactly what ships.
//!
//! Each component is staged in `<target>/xtask/stage/<component>/`, the tree its tarball is
//! made of:
//!
//! - Rust components: `bin/<binary>`, built by one `cargo build --release --locked` for all
//!   of them, with every path that could leak into the binary (the checkout, CARGO_HOME, the
//!   target directory) remapped, so the bytes do not depend on where the checkout lives.
//! - web: `build/`, `server.js`, `package.json`, `package-lock.json` and a `node_modules`
//!   with the production dependencies only, installed from the lock file without scripts.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use xtask::components::{self, Component, Recipe};

use crate::release::web;
use hitsave_host::kit::ui::Ui;

#[derive(clap::Args)]
pub struct Args {
    /// Components to build; all of them when none is named.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(components::names()))]
    components: Vec<String>,
}

pub fn run(root: &Utf8Path, args: Args) -> anyhow::Result<()> {
    let ui = Ui::new();
    let selected = components::select(&args.components)?;
    let staged = build(&ui, root, &selected, components::ARTIFACT_EPOCH)?;
    for (component, dir) in staged {
        ui.info(&format!("{}: staged in {dir}", component.name));
    }
    Ok(())
}

/// Where a component's shipped tree is staged.
pub fn stage_dir(root: &Utf8Path, component: &Component) -> Utf8PathBuf {
    xtask::checkout::target_dir(root)
        .join("xtask/stage")
        .join(component.name)
}

/// Builds the components and stages them; returns each with its staging directory.
pub fn build(
    ui: &Ui,
    root: &Utf8Path,
    selected: &[&'static Component],
    source_date_epoch: u64,
) -> anyhow::Result<Vec<(&'static Component, Utf8PathBuf)>> {
    let cargo: Vec<_> = selected
        .iter()
        .filter_map(|c| match c.recipe {
            Recipe::Cargo { package, binary } => Some((*c, package, binary)),
            Recipe::Web | Recipe::Files { .. } => None,
        })
        .collect();
    if !cargo.is_empty() {
        build_rust(ui, root, &cargo, source_date_epoch)?;
    }
    if let Some(web) = selected.iter().find(|c| c.recipe == Recipe::Web) {
        build_web(ui, root, web, source_date_epoch)?;
    }
    for component in selected {
        if let Recipe::Files { dir } = component.recipe {
            let stage = fresh_dir(&stage_dir(root, component))?;
            copy_tree(&root.join(dir), &stage)?;
        }
    }
    Ok(selected.iter().map(|c| (*c, stage_dir(root, c))).collect())
}

fn build_rust(
    ui: &Ui,
    root: &Utf8Path,
    cargo: &[(&'static Component, &str, &str)],
    source_date_epoch: u64,
) -> anyhow::Result<()> {
    let target = xtask::checkout::target_dir(root);
    let cargo_home = std::env::var("CARGO_HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .map(Utf8PathBuf::from)
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| Utf8PathBuf::from(h).join(".cargo"))
        })
        .context("neither CARGO_HOME nor HOME is set")?;
    // rustc lets the last matching prefix win: the target directory may lie inside the
    // checkout, so it comes after it. See CARGO_FLAGS in inputs.rs.
    let rustflags = [
        format!("--remap-path-prefix={root}=/hitsave"),
        format!("--remap-path-prefix={cargo_home}=/cargo"),
        format!("--remap-path-prefix={target}=/target"),
    ]
    .join("\x1f");
    let mut args = vec!["build", "--release", "--locked"];
    for (_, package, _) in cargo {
        args.extend(["-p", package]);
    }
    let names: Vec<_> = cargo.iter().map(|(c, _, _)| c.name).collect();
    let command = duct::cmd("cargo", &args)
        .dir(root)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string());
    ui.run_step(
        &format!("building {} (cargo build --release)", names.join(", ")),
        command,
        &target.join("xtask/logs/cargo-build.log"),
    )?;
    for (component, _, binary) in cargo {
        let built = target.join("release").join(binary);
        let stage = fresh_dir(&stage_dir(root, component))?;
        let dest = stage.join("bin").join(binary);
        std::fs::create_dir_all(stage.join("bin"))?;
        std::fs::copy(&built, &dest).with_context(|| format!("cannot copy {built} to {dest}"))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn build_web(
    ui: &Ui,
    root: &Utf8Path,
    component: &Component,
    source_date_epoch: u64,
) -> anyhow::Result<()> {
    web::install_dependencies(ui, root)?;
    web::build(ui, root, Some(source_date_epoch))?;
    let web = root.join("web");
    let target = xtask::checkout::target_dir(root);

    let stage = stage_dir(root, component);
    std::fs::create_dir_all(&stage)?;
    // Keep the production node_modules between builds; everything else is staged afresh.
    for entry in stage.read_dir_utf8()? {
        let entry = entry?;
        if entry.file_name() != "node_modules" {
            remove_if_present(entry.path())?;
        }
    }
    copy_tree(&web.join("build"), &stage.join("build"))?;
    for file in ["server.js", "package.json", "package-lock.json"] {
        std::fs::copy(web.join(file), stage.join(file))
            .with_context(|| format!("cannot stage web/{file}"))?;
    }

    let lock = std::fs::read(web.join("package-lock.json"))?;
    let marker = stage.with_file_name(".web-production-lock");
    let installed = stage.join("node_modules/.package-lock.json").is_file()
        && std::fs::read(&marker).ok().as_deref() == Some(&lock[..]);
    if installed {
        ui.info("web: production dependencies are up to date");
    } else {
        remove_if_present(&stage.join("node_modules"))?;
        ui.run_step(
            "installing web production dependencies (npm ci --omit=dev)",
            duct::cmd!(
                "npm",
                "ci",
                "--omit=dev",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefer-offline"
            )
            .dir(&stage),
            &target.join("xtask/logs/web-production-deps.log"),
        )?;
        std::fs::write(&marker, &lock)?;
    }
    Ok(())
}

fn fresh_dir(dir: &Utf8Path) -> anyhow::Result<Utf8PathBuf> {
    remove_if_present(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    Ok(dir.to_owned())
}

pub fn remove_if_present(path: &Utf8Path) -> anyhow::Result<()> {
    let result = match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.with_context(|| format!("cannot remove {path}"))
}

/// Copies a tree of directories, files and relative links.
fn copy_tree(src: &Utf8Path, dest: &Utf8Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(src).follow_links(false) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(src)?;
        let to = dest.as_std_path().join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&to)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)?;
        } else {
            bail!(
                "{} is neither a file, a directory nor a link",
                entry.path().display()
            );
        }
    }
    Ok(())
}
