//! For the release suite: a binary that needs `GLIBC_2.38`, the kind a build on a newer system
//! than the hosts' gives. A small C program calling `sscanf`, compiled in a Debian trixie tree
//! (glibc 2.41, where `sscanf` binds to `__isoc23_sscanf@GLIBC_2.38`) made with debootstrap.
//! The binary is cached; the tree is removed once it is built.

use anyhow::{Context, bail, ensure};
use camino::Utf8PathBuf;
use hitsave_host::kit::elf::{self, GlibcVersion};

use crate::tools;

const SOURCE: &str = r#"#include <stdio.h>
int main(int argc, char **argv) {
    int n = 0;
    if (argc > 1 && sscanf(argv[1], "%d", &n) == 1) printf("%d\n", n * 2);
    return 0;
}
"#;

/// The probe binary, built on first use into the tools cache.
pub fn binary() -> anyhow::Result<Utf8PathBuf> {
    let cached = tools::cache_dir().join("glibc-2.38-probe");
    if cached.is_file() && needs_2_38(&std::fs::read(&cached)?) {
        return Ok(cached);
    }
    if !tools::is_root() {
        bail!("building the glibc 2.38 probe needs debootstrap and chroot: run the tests as root");
    }
    tools::require("debootstrap", "debootstrap")?;
    let tree = tools::cache_dir().join("rootfs-trixie-gcc");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tools::cache_dir())?;
    eprintln!(
        "xtask: debootstrap trixie with gcc, for a binary that needs glibc 2.38 (once, under a minute)"
    );
    let built = (|| -> anyhow::Result<Vec<u8>> {
        duct::cmd!(
            "debootstrap",
            "--variant=minbase",
            "--include=gcc,libc6-dev",
            "trixie",
            &tree,
            "http://deb.debian.org/debian"
        )
        .stdout_null()
        .run()
        .context("debootstrap trixie failed")?;
        std::fs::write(tree.join("tmp/probe.c"), SOURCE)?;
        // _GNU_SOURCE, as C++ and much C code has it: sscanf then binds to the C23 variant.
        duct::cmd!(
            "chroot",
            &tree,
            "gcc",
            "-O2",
            "-D_GNU_SOURCE",
            "-o",
            "/tmp/probe",
            "/tmp/probe.c"
        )
        .run()
        .context("gcc in the trixie tree failed")?;
        Ok(std::fs::read(tree.join("tmp/probe"))?)
    })();
    let _ = std::fs::remove_dir_all(&tree);
    let bytes = built?;
    ensure!(
        needs_2_38(&bytes),
        "the probe built in trixie does not need glibc 2.38: {:?}",
        elf::glibc_needs(&bytes)?
    );
    let tmp = cached.with_extension("tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &cached)?;
    Ok(cached)
}

fn needs_2_38(bytes: &[u8]) -> bool {
    elf::glibc_needs(bytes)
        .ok()
        .and_then(|needs| elf::newest(&needs))
        .is_some_and(|v| v >= GlibcVersion::new(2, 38))
}
