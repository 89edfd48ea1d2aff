//! The checkout a command runs in, when there is one: where a laptop's local store lives by
//! default (`<target dir>/hitsave-store`), and this program's own path.

use camino::{Utf8Path, Utf8PathBuf};

/// The workspace root, found at run time (never compiled in, so the binary is the same
/// whatever directory it was built in): `cargo run` tells us where the package's manifest is;
/// otherwise the nearest directory upwards from here that holds `xtask/Cargo.toml`.
pub fn project_root() -> Utf8PathBuf {
    if let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR")
        && let Some(root) = Utf8Path::new(&dir).parent()
        && root.join("xtask/Cargo.toml").is_file()
    {
        return root.to_owned();
    }
    let here = std::env::current_dir()
        .ok()
        .and_then(|d| Utf8PathBuf::from_path_buf(d).ok())
        .unwrap_or_else(|| Utf8PathBuf::from("."));
    here.ancestors()
        .find(|d| d.join("xtask/Cargo.toml").is_file() && d.join("Cargo.toml").is_file())
        .unwrap_or(&here)
        .to_owned()
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` (CI points it at a cache that outlives
/// the checkout) or `target/` in the workspace.
pub fn target_dir(root: &Utf8Path) -> Utf8PathBuf {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// The local store used when no `--store` is given.
pub fn default_store(root: &Utf8Path) -> Utf8PathBuf {
    target_dir(root).join("hitsave-store")
}
