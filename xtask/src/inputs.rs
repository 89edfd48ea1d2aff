//! Input hashes and release ids: what decides whether a component must be built again.
//!
//! A component's input hash covers everything its build reads: its files (git object ids for
//! clean files, content hashes for dirty ones), the lock files among them, the versions of the
//! tools that build it, the build flags and the recipe version. The checkout's location is not
//! part of it, so two checkouts of one commit agree.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use hitsave_schema::{ReleaseId, Sha256 as Digest};
use sha2::{Digest as _, Sha256};

use crate::components::{Component, RECIPE_VERSION, Recipe};
use crate::git::Checkout;

/// The flags every Rust component is built with; part of their input hash. The path
/// remapping itself is derived from these names at build time (see the build command).
pub const CARGO_FLAGS: &str =
    "build --release --locked; remap checkout=/hitsave cargo-home=/cargo target=/target";
/// The flags of the web build.
pub const WEB_FLAGS: &str =
    "npm ci; npm run build; ship: npm ci --omit=dev --ignore-scripts; NODE_ENV=production";

/// Versions of the tools a release is built with, read once.
#[derive(Debug, Clone, Default)]
pub struct Toolchain {
    /// `rustc -vV`, whole: version, commit, host triple and LLVM version.
    pub rustc_verbose: String,
    /// The host triple from `rustc -vV`: the target of the Rust artifacts.
    pub host: String,
    /// Short versions for the manifest: rustc, cargo, node, npm.
    pub versions: BTreeMap<String, String>,
}

impl Toolchain {
    /// Reads the versions of the tools the given components need; fails naming the missing
    /// tool and how to install it.
    pub fn detect(components: &[&Component]) -> anyhow::Result<Toolchain> {
        let mut tc = Toolchain::default();
        let rust = components
            .iter()
            .any(|c| matches!(c.recipe, Recipe::Cargo { .. }));
        let web = components.iter().any(|c| c.recipe == Recipe::Web);
        if rust {
            let how = "install Rust with rustup (https://rustup.rs)";
            tc.rustc_verbose = version_of("rustc", &["-vV"], how)?;
            tc.host = tc
                .rustc_verbose
                .lines()
                .find_map(|l| l.strip_prefix("host: "))
                .context("`rustc -vV` printed no host triple")?
                .to_owned();
            let first_line = |s: &str| s.lines().next().unwrap_or_default().to_owned();
            tc.versions
                .insert("rustc".into(), first_line(&tc.rustc_verbose));
            tc.versions.insert(
                "cargo".into(),
                first_line(&version_of("cargo", &["-V"], how)?),
            );
        }
        if web {
            let how = "install Node.js 20.19 or newer with npm (Debian trixie's nodejs and npm packages, or NodeSource)";
            tc.versions
                .insert("node".into(), version_of("node", &["--version"], how)?);
            tc.versions
                .insert("npm".into(), version_of("npm", &["--version"], how)?);
        }
        Ok(tc)
    }

    /// The target an artifact of this component runs on: the host triple for Rust binaries;
    /// `noarch` for the web app (JavaScript, installed without install scripts).
    pub fn target_of(&self, component: &Component) -> String {
        match component.recipe {
            Recipe::Cargo { .. } => self.host.clone(),
            Recipe::Web | Recipe::Files { .. } => "noarch".into(),
        }
    }
}

fn version_of(program: &str, args: &[&str], how: &str) -> anyhow::Result<String> {
    let out = match duct::cmd(program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{program} is missing: {how}")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot run {program}")),
    };
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The input hash of one component.
pub fn input_hash(checkout: &Checkout, toolchain: &Toolchain, component: &Component) -> Digest {
    let mut h = Sha256::new();
    let mut line = |s: String| {
        h.update(s.as_bytes());
        h.update(b"\n");
    };
    line(format!("hitsave input hash; recipe {RECIPE_VERSION}"));
    line(format!("component {}", component.name));
    match component.recipe {
        Recipe::Cargo { package, binary } => {
            line(format!("cargo package {package} binary {binary}"));
            line(format!("flags {CARGO_FLAGS}"));
            line(toolchain.rustc_verbose.clone());
            line(toolchain.versions["cargo"].clone());
        }
        Recipe::Web => {
            line(format!("flags {WEB_FLAGS}"));
            line(format!("node {}", toolchain.versions["node"]));
            line(format!("npm {}", toolchain.versions["npm"]));
        }
        Recipe::Files { dir } => line(format!("files {dir}")),
    }
    for (path, state) in checkout.files_under(component.inputs) {
        line(format!("file {path} {state}"));
    }
    Digest::from_bytes(h.finalize().into())
}

/// What a release ships, as one hash: every component's input hash and what its CodeDeploy
/// bundle adds to them (appspec.yml; the store its revision.json names). Two commits with the
/// same contents hash ship the same bytes, so the later one is the earlier one's release.
pub fn contents_hash(
    checkout: &Checkout,
    input_hashes: &[(&Component, Digest)],
    bundle_store: &str,
) -> Digest {
    let mut h = Sha256::new();
    let mut line = |s: String| {
        h.update(s.as_bytes());
        h.update(b"\n");
    };
    line(format!("hitsave release contents; recipe {RECIPE_VERSION}"));
    for (component, input_hash) in input_hashes {
        line(format!("component {} {input_hash}", component.name));
    }
    for (path, state) in checkout.files_under(&["appspec.yml"]) {
        line(format!("bundle file {path} {state}"));
    }
    line(format!("bundle store {bundle_store}"));
    Digest::from_bytes(h.finalize().into())
}

/// `<commit time UTC, YYYYMMDDHHMMSS>-<first 12 of the commit>`, with `-dirty-<8 hex>` when
/// the tree has uncommitted changes. Sorts by time; the same commit always gets the same id.
pub fn release_id(checkout: &Checkout) -> ReleaseId {
    let mut id = format!("{}-{}", checkout.commit_stamp, &checkout.commit[..12]);
    if checkout.is_dirty() {
        id.push_str("-dirty-");
        id.push_str(&checkout.dirty_digest()[..8]);
    }
    ReleaseId::new(id).expect("digits, '-' and hex make a release id")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::components::find;

    fn checkout(files: &[(&str, &str)], dirty: &[(&str, &str)]) -> Checkout {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
                .collect()
        };
        Checkout {
            root: "/anywhere".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
            commit_time: 0,
            commit_stamp: "20261101120000".into(),
            branch: None,
            tracked: map(files),
            dirty: map(dirty),
        }
    }

    fn toolchain() -> Toolchain {
        Toolchain {
            rustc_verbose: "rustc 1.95.0\nhost: x86_64-unknown-linux-gnu".into(),
            host: "x86_64-unknown-linux-gnu".into(),
            versions: BTreeMap::from([
                ("cargo".into(), "cargo 1.95.0".into()),
                ("node".into(), "v20.20.2".into()),
                ("npm".into(), "11.0.0".into()),
            ]),
        }
    }

    #[test]
    fn input_hashes_follow_only_their_own_inputs() {
        let files = [
            ("api/src/main.rs", "100644 aaaa"),
            ("web/app/root.jsx", "100644 bbbb"),
            ("Cargo.lock", "100644 cccc"),
        ];
        let base = checkout(&files, &[]);
        let (api, web) = (find("api").unwrap(), find("web").unwrap());
        let tc = toolchain();
        let h = |c: &Checkout, comp| input_hash(c, &tc, comp);

        // A web change leaves the API's hash alone, and the other way round.
        let web_changed = checkout(&files, &[("web/app/root.jsx", "100644 dddd")]);
        assert_eq!(h(&base, api), h(&web_changed, api));
        assert_ne!(h(&base, web), h(&web_changed, web));
        let lock_changed = checkout(&files, &[("Cargo.lock", "100644 eeee")]);
        assert_ne!(h(&base, api), h(&lock_changed, api));
        assert_eq!(h(&base, web), h(&lock_changed, web));

        // The toolchain is an input; where the checkout lives is not.
        let mut newer = toolchain();
        newer.rustc_verbose = "rustc 1.96.0\nhost: x86_64-unknown-linux-gnu".into();
        assert_ne!(h(&base, api), input_hash(&base, &newer, api));
        let mut elsewhere = checkout(&files, &[]);
        elsewhere.root = "/somewhere/else".into();
        assert_eq!(h(&base, api), h(&elsewhere, api));
    }

    #[test]
    fn release_ids_mark_dirty_trees() {
        let clean = checkout(&[("a", "100644 aaaa")], &[]);
        assert_eq!(release_id(&clean), "20261101120000-0123456789ab");
        let dirty = checkout(&[("a", "100644 aaaa")], &[("a", "100644 bbbb")]);
        let id = release_id(&dirty);
        assert!(id.starts_with("20261101120000-0123456789ab-dirty-"), "{id}");
        assert_eq!(id.len(), "20261101120000-0123456789ab-dirty-".len() + 8);
    }
}
