//! The components a release is made of, and what each is built from: declared once, here.
//!
//! Every other part of the pipeline (the input hash, the build, the staging layout, the
//! manifest) reads this table, so adding a component or an input is a one-line change.

/// Bump when the build recipe or the staging layout changes in a way that changes artifacts
/// built from the same inputs: every input hash changes, so everything is built again.
pub const RECIPE_VERSION: u32 = 1;

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
    },
    Component {
        name: "migrate",
        recipe: Recipe::Cargo {
            package: "migrate",
            binary: "migrate",
        },
        inputs: rust_inputs!("migrate", "db", "migrations"),
    },
    Component {
        name: "web",
        recipe: Recipe::Web,
        inputs: &["web"],
    },
    Component {
        name: "deploy",
        recipe: Recipe::Files { dir: "deploy" },
        inputs: &["deploy"],
    },
    // The pipeline itself: the host runs `xtask install` from the release it installs.
    Component {
        name: "xtask",
        recipe: Recipe::Cargo {
            package: "xtask",
            binary: "xtask",
        },
        inputs: rust_inputs!("xtask"),
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
