//! What an ELF binary needs from glibc, read from its version tables.
//!
//! The dynamic loader refuses to start a program when a version it names in `.gnu.version_r`
//! (its version needs) is missing from the system's libraries ("version `GLIBC_2.38' not
//! found"). So the needs are read from that table, and each is named by the dynamic symbols
//! bound to it (`.gnu.version`), which is what a build that linked against a newer glibc
//! pulled in: `__isoc23_sscanf@GLIBC_2.38`, for example.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context;
use object::read::elf::{FileHeader, Sym};
use object::{Endianness, FileKind, SymbolIndex, elf};

/// A glibc release, `major.minor` (`2.36` is Debian 12's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

impl GlibcVersion {
    pub const fn new(major: u32, minor: u32) -> GlibcVersion {
        GlibcVersion { major, minor }
    }

    /// `2.36` from `2.36`, `2.2.5` (as 2.2) from `2.2.5`; None for anything else.
    pub fn parse(text: &str) -> Option<GlibcVersion> {
        let mut parts = text.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        parts
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty())
            .then_some(GlibcVersion { major, minor })
    }

    /// The version of a `GLIBC_x.y[.z]` version name; None for `GLIBC_PRIVATE` and others.
    fn from_version_name(name: &str) -> Option<GlibcVersion> {
        name.strip_prefix("GLIBC_").and_then(GlibcVersion::parse)
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One glibc version an ELF file needs, with the symbols bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlibcNeed {
    pub version: GlibcVersion,
    /// The version name as the file spells it (`GLIBC_2.38`, `GLIBC_2.2.5`).
    pub name: String,
    /// The library it is needed from (`libc.so.6`, `libm.so.6`).
    pub library: String,
    /// Undefined dynamic symbols bound to this version, sorted.
    pub symbols: Vec<String>,
}

impl GlibcNeed {
    /// `__isoc23_sscanf@GLIBC_2.38`, or `GLIBC_2.38 (libc.so.6)` when no symbol names it.
    pub fn describe(&self) -> String {
        match self.symbols.first() {
            Some(first) => {
                let more = match self.symbols.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                };
                format!("{first}@{}{more}", self.name)
            }
            None => format!("{} ({})", self.name, self.library),
        }
    }
}

/// True when the bytes start like an ELF file.
pub fn is_elf(start: &[u8]) -> bool {
    start.starts_with(b"\x7fELF")
}

/// The glibc versions an ELF file needs, oldest first; empty for a static binary or a file
/// that needs nothing versioned from glibc. An error for a file that is not ELF or is damaged.
pub fn glibc_needs(data: &[u8]) -> anyhow::Result<Vec<GlibcNeed>> {
    match FileKind::parse(data).context("cannot tell what kind of file this is")? {
        FileKind::Elf64 => needs::<elf::FileHeader64<Endianness>>(data),
        FileKind::Elf32 => needs::<elf::FileHeader32<Endianness>>(data),
        other => anyhow::bail!("not an ELF file ({other:?})"),
    }
}

/// The needs that `have` does not meet: what would stop the binary from starting there.
pub fn newer_than(needs: &[GlibcNeed], have: GlibcVersion) -> Vec<GlibcNeed> {
    needs.iter().filter(|n| n.version > have).cloned().collect()
}

/// `needs` for a message: `__isoc23_sscanf@GLIBC_2.38, ...`.
pub fn describe_all(needs: &[GlibcNeed]) -> String {
    let each: Vec<String> = needs.iter().map(GlibcNeed::describe).collect();
    each.join(", ")
}

/// The newest glibc version among `needs`.
pub fn newest(needs: &[GlibcNeed]) -> Option<GlibcVersion> {
    needs.iter().map(|n| n.version).max()
}

fn needs<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> anyhow::Result<Vec<GlibcNeed>> {
    let header = Elf::parse(data).context("damaged ELF header")?;
    let endian = header.endian().context("damaged ELF header")?;
    let sections = header
        .sections(endian, data)
        .context("damaged ELF section table")?;

    // Version index -> (version name, library), from the version needs.
    let mut by_index: BTreeMap<u16, (String, String)> = BTreeMap::new();
    if let Some((mut verneeds, link)) = sections
        .gnu_verneed(endian, data)
        .context("damaged .gnu.version_r")?
    {
        let strings = sections
            .strings(endian, data, link)
            .context("damaged string table of .gnu.version_r")?;
        while let Some((verneed, mut vernauxs)) = verneeds.next()? {
            let library = String::from_utf8_lossy(verneed.file(endian, strings)?).into_owned();
            while let Some(vernaux) = vernauxs.next()? {
                let name = String::from_utf8_lossy(vernaux.name(endian, strings)?).into_owned();
                let index = vernaux.vna_other(endian).index().0;
                by_index.insert(index, (name, library.clone()));
            }
        }
    }

    // Which undefined dynamic symbols each version index names.
    let mut symbols: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    if let Some(versions) = sections
        .versions(endian, data)
        .context("damaged .gnu.version")?
    {
        let dynsyms = sections
            .symbols(endian, data, elf::SHT_DYNSYM)
            .context("damaged .dynsym")?;
        for (i, sym) in dynsyms.symbols().iter().enumerate() {
            if !sym.is_undefined(endian) {
                continue;
            }
            let index = versions.version_index(endian, SymbolIndex(i)).index().0;
            if by_index.contains_key(&index) {
                let name = sym.name(endian, dynsyms.strings())?;
                symbols
                    .entry(index)
                    .or_default()
                    .push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }

    let mut needs: Vec<GlibcNeed> = by_index
        .into_iter()
        .filter_map(|(index, (name, library))| {
            let version = GlibcVersion::from_version_name(&name)?;
            let mut symbols = symbols.remove(&index).unwrap_or_default();
            symbols.sort();
            Some(GlibcNeed {
                version,
                name,
                library,
                symbols,
            })
        })
        .collect();
    needs.sort_by(|a, b| (a.version, &a.name).cmp(&(b.version, &b.name)));
    Ok(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(GlibcVersion::parse("2.36"), Some(GlibcVersion::new(2, 36)));
        assert_eq!(GlibcVersion::parse("2.2.5"), Some(GlibcVersion::new(2, 2)));
        assert_eq!(GlibcVersion::from_version_name("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::parse("2"), None);
        assert_eq!(GlibcVersion::parse("2.x"), None);
        assert!(GlibcVersion::new(2, 38) > GlibcVersion::new(2, 36));
        assert!(GlibcVersion::new(2, 4) < GlibcVersion::new(2, 17));
        assert_eq!(GlibcVersion::new(2, 36).to_string(), "2.36");
    }

    /// The running test binary was linked against this machine's glibc: it needs some
    /// GLIBC_ versions from libc, each named by the symbols bound to it.
    #[test]
    fn reads_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let needs = glibc_needs(&std::fs::read(exe).unwrap()).unwrap();
        assert!(!needs.is_empty());
        assert!(needs.iter().any(|n| n.library == "libc.so.6"));
        assert!(
            needs
                .iter()
                .flat_map(|n| &n.symbols)
                .any(|s| s == "malloc" || s == "write" || s == "pthread_create"),
            "{needs:#?}"
        );
        let newest = newest(&needs).unwrap();
        assert!(newest >= GlibcVersion::new(2, 2), "{newest}");
    }

    #[test]
    fn refuses_what_is_not_elf() {
        assert!(glibc_needs(b"#!/bin/sh\necho hi\n").is_err());
        assert!(glibc_needs(b"\x7fELF\x02\x01\x01").is_err());
        assert!(!is_elf(b"#!/bin/sh"));
        assert!(is_elf(b"\x7fELF\x02"));
    }
}
