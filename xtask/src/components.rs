//! The components a release is made of, and what each is built from: declared once, here.
//!
//! Every other part of the pipeline (the input hash, the build, the staging layout, the
//! manifest) reads this table, so adding a component or an input is a one-line change.

use hitsave_host::kit::elf::GlibcVersion;

/// Bump when the build recipe or the staging layout changes in a way that changes artifacts
/// built from the same inputs: every input hash changes, so everything is built again.
/// 2: every entry dated ARTIFACT_EPOCH instead of the release's commit time.
/// 3: input records (schema 2) carry what an artifact unpacks to; new input hashes, so no
///    release reads a schema 1 record.
pub const RECIPE_VERSION: u32 = 3;

/// The one time every artifact's entries carry (and SOURCE_DATE_EPOCH of every build):
/// 2000-01-01T00:00:00Z. An artifact is then a function of its inputs alone. The committer time
/// of the newest commit that touched a component's inputs would not be: a revert, a
/// cherry-pick or the same change on two branches gives the same inputs under other commits,
/// and a shallow clone (CI's default) cannot even tell which commit that was. After 1980, so
/// formats and tools that cannot date earlier (zip, FAT) take it as it is.
pub const ARTIFACT_EPOCH: u64 = 946_684_800;

/// glibc 2.36: Debian 12 (bookworm), which the hosts run and the runtime bases are built on.
pub const DEBIAN_12_GLIBC: GlibcVersion = GlibcVersion::new(2, 36);

/// Where a component's files run, and so what its binaries may ask of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOn {
    /// In a runtime image built from `dockerfile` on `base` (its `ARG BASE` default; a
    /// registry-less host uses a Debian-built stand-in of the same release).
    Image {
        dockerfile: &'static str,
        base: &'static str,
    },
    /// On the host itself, outside any container: Debian 12.
    Host,
}

impl RunsOn {
    /// The newest glibc found there.
    pub fn glibc(self) -> GlibcVersion {
        // Every base and the hosts are Debian 12; a base of another release gets its own arm.
        DEBIAN_12_GLIBC
    }

    /// For messages: `debian:bookworm-slim (deploy/images/api.Dockerfile)`, `the host (Debian 12)`.
    pub fn describe(self) -> String {
        match self {
            RunsOn::Image { dockerfile, base } => format!("{base} ({dockerfile})"),
            RunsOn::Host => "the host (Debian 12)".into(),
        }
    }
}

/// How a component is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// `cargo build --release --locked -p <package>`; ships `bin/<binary>`.
    Cargo {
        package: &'static str,
        binary: &'static str,
    },
    /// `npm ci` + `npm run build` in `web/`; ships the build, `server.js` and the production
    /// dependencies only.
    Web,
    /// Files shipped as they are in git: `deploy/` (compose files, runtime Dockerfiles, the
    /// nginx template), which the host installs beside the artifacts they run.
    Files { dir: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// The name in the manifest and on the command line.
    pub name: &'static str,
    pub recipe: Recipe,
    /// git pathspecs (relative to the repository root) of everything the build reads.
    pub inputs: &'static [&'static str],
    /// Where what it ships runs: no binary in it may need a newer glibc than that.
    pub runs_on: RunsOn,
}

/// What every Rust component reads besides its own crates: the workspace manifest, the lock
/// file and cargo's configuration.
macro_rules! rust_inputs {
    ($($path:literal),* $(,)?) => {
        &["Cargo.toml", "Cargo.lock", ".cargo", $($path),*]
    };
}

pub const COMPONENTS: &[Component] = &[
    Component {
        name: "api",
        recipe: Recipe::Cargo {
            package: "hitsave",
            binary: "hitsave",
        },
        inputs: rust_inputs!("api", "db", "migrations"),
        runs_on: RunsOn::Image {
            dockerfile: "deploy/images/api.Dockerfile",
            base: "debian:bookworm-slim",
        },
    },
    Component {
        name: "migrate",
        recipe: Recipe::Cargo {
            package: "migrate",
            binary: "migrate",
        },
        inputs: rust_inputs!("migrate", "db", "migrations"),
        runs_on: RunsOn::Image {
            dockerfile: "deploy/images/migrate.Dockerfile",
            base: "debian:bookworm-slim",
        },
    },
    Component {
        name: "web",
        recipe: Recipe::Web,
        inputs: &["web"],
        runs_on: RunsOn::Image {
            dockerfile: "deploy/images/web.Dockerfile",
            base: "node:22-bookworm-slim",
        },
    },
    Component {
        name: "deploy",
        recipe: Recipe::Files { dir: "deploy" },
        inputs: &["deploy"],
        // The hooks and compose files run on the host; what runs in images comes from those.
        runs_on: RunsOn::Host,
    },
    // The host program: the host runs `xtask install` from the release it installs. Built from
    // host/ and schema/ only, so a change to the tooling (tests, benchmarks, dev) ships nothing.
    Component {
        name: "xtask",
        recipe: Recipe::Cargo {
            package: "hitsave-host",
            binary: "xtask",
        },
        inputs: rust_inputs!("host", "schema"),
        runs_on: RunsOn::Host,
    },
];

/// The component called `name`, or an error that lists the valid names.
pub fn find(name: &str) -> anyhow::Result<&'static Component> {
    COMPONENTS.iter().find(|c| c.name == name).ok_or_else(|| {
        anyhow::anyhow!(
            "there is no component called {name:?}; the components are {}",
            names().join(", ")
        )
    })
}

/// Where a component stands in the table: manifests and reports list components in this order.
pub fn position(name: &str) -> Option<usize> {
    COMPONENTS.iter().position(|c| c.name == name)
}

pub fn names() -> Vec<&'static str> {
    COMPONENTS.iter().map(|c| c.name).collect()
}

/// The named components in table order, or all of them when `names` is empty.
pub fn select(names: &[String]) -> anyhow::Result<Vec<&'static Component>> {
    if names.is_empty() {
        return Ok(COMPONENTS.iter().collect());
    }
    for name in names {
        find(name)?;
    }
    Ok(COMPONENTS
        .iter()
        .filter(|c| names.iter().any(|n| n == c.name))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The base each image component names is the one its Dockerfile builds on by default.
    #[test]
    fn image_bases_match_the_dockerfiles() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for c in COMPONENTS {
            if let RunsOn::Image { dockerfile, base } = c.runs_on {
                let text = std::fs::read_to_string(root.join(dockerfile)).unwrap();
                assert!(
                    text.lines().any(|l| l.trim() == format!("ARG BASE={base}")),
                    "{dockerfile} does not build on {base} by default"
                );
            }
        }
    }
}
