//! Every binary a component ships must start where it runs: its glibc needs are checked
//! against the glibc of its runtime base or of the host before anything is published.
//!
//! Every ELF file in the staged tree is read (the Rust binaries, and any native module a
//! dependency might bring), not only the ones the recipe names.

use std::io::Read;

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};

use crate::components::Component;
use hitsave_host::kit::elf::{self, GlibcNeed, GlibcVersion};

/// One ELF file of a staged component and what it needs.
#[derive(Debug)]
pub struct Binary {
    /// Path inside the artifact (`bin/hitsave`).
    pub path: Utf8PathBuf,
    /// The newest glibc it needs; None when it needs no versioned glibc symbol.
    pub newest: Option<GlibcVersion>,
    /// The needs newer than the component's platform offers: empty when it runs there.
    pub too_new: Vec<GlibcNeed>,
}

/// Reads every ELF file under `stage` (the staged tree of `component`).
pub fn check(component: &Component, stage: &Utf8Path) -> anyhow::Result<Vec<Binary>> {
    let have = component.runs_on.glibc();
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(stage)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry?;
        if !entry.file_type().is_file() || !starts_like_elf(entry.path())? {
            continue;
        }
        let path = Utf8Path::from_path(entry.path())
            .with_context(|| format!("{} is not UTF-8", entry.path().display()))?;
        let data = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        let needs = elf::glibc_needs(&data).with_context(|| format!("cannot read {path}"))?;
        found.push(Binary {
            path: path.strip_prefix(stage).unwrap_or(path).to_owned(),
            newest: elf::newest(&needs),
            too_new: elf::newer_than(&needs, have),
        });
    }
    Ok(found)
}

/// The refusal for the binaries of `component` that need too new a glibc, one line each:
/// `api: bin/hitsave needs glibc 2.38 (__isoc23_sscanf@GLIBC_2.38), but ...`.
pub fn problems(component: &Component, binaries: &[Binary]) -> Vec<String> {
    let platform = component.runs_on;
    binaries
        .iter()
        .filter_map(|b| {
            let newest = b.too_new.last()?;
            Some(format!(
                "{}: {} needs glibc {} ({}), but it runs on {}, which has glibc {}",
                component.name,
                b.path,
                newest.version,
                elf::describe_all(&b.too_new),
                platform.describe(),
                platform.glibc()
            ))
        })
        .collect()
}

fn starts_like_elf(path: &std::path::Path) -> anyhow::Result<bool> {
    let mut start = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut start))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(elf::is_elf(&start))
}
