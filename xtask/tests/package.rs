//! Deterministic packaging, checked with GNU tar and sha256sum rather than our own reader.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use xtask::package::pack_dir;

/// 2026-11-01T00:00:00Z, standing in for a commit's time.
const EPOCH: u64 = 1_793_491_200;

const LONG_DIR: &str =
    "node_modules/@scope/a-package-with-a-rather-long-name/dist/esm/internal/helpers/generated";

fn utf8(dir: &tempfile::TempDir) -> Utf8PathBuf {
    Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap()
}

fn write(root: &Utf8Path, rel: &str, contents: &str, mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The same content each time; modes, creation order and timestamps vary with `variant`.
fn make_tree(root: &Utf8Path, variant: u32) {
    let files: [(&str, &str, u32); 5] = [
        (
            "bin/hitsave",
            "#!/bin/sh\necho hi\n",
            0o700 | (variant * 0o055),
        ),
        ("README", "read me\n", 0o600 | (variant * 0o044)),
        ("a/b/c.txt", "nested\n", 0o644),
        (
            "a.txt",
            "sorts after the a/ directory in GNU order\n",
            0o664,
        ),
        ("données/é.txt", "utf-8 names\n", 0o644),
    ];
    let ordered: Vec<_> = if variant == 0 {
        files.iter().collect()
    } else {
        files.iter().rev().collect()
    };
    for (rel, contents, mode) in ordered {
        write(root, rel, contents, *mode);
    }
    write(
        root,
        &format!("{LONG_DIR}/index-of-everything.js"),
        "x",
        0o644,
    );
    std::os::unix::fs::symlink("../a/b/c.txt", root.join("bin/link")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    if variant != 0 {
        // Different timestamps must not change a byte.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("README"))
            .unwrap();
        f.set_modified(old).unwrap();
    }
}

fn gnu_tar(args: &[&str]) -> String {
    let out = Command::new("tar")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn same_content_in_two_checkouts_gives_identical_bytes() {
    let (a, b, out_a, out_b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    make_tree(&utf8(&a), 0);
    make_tree(&utf8(&b), 1);

    let first = pack_dir(&utf8(&a), &utf8(&out_a), EPOCH).unwrap();
    let second = pack_dir(&utf8(&b), &utf8(&out_b), EPOCH).unwrap();
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(first.size, second.size);
    assert_eq!(
        std::fs::read(&first.path).unwrap(),
        std::fs::read(&second.path).unwrap()
    );
    assert_eq!(
        first.path,
        utf8(&out_a).join(format!("{}.tar.gz", first.sha256))
    );

    // Packing again is stable, and a different epoch is a different artifact.
    assert_eq!(pack_dir(&utf8(&a), &utf8(&out_a), EPOCH).unwrap(), first);
    let later = pack_dir(&utf8(&a), &utf8(&out_a), EPOCH + 1).unwrap();
    assert_ne!(later.sha256, first.sha256);
}

#[test]
fn gnu_tar_sees_sorted_entries_root_ids_and_the_epoch() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_tree(&utf8(&src), 1);
    let packed = pack_dir(&utf8(&src), &utf8(&out), EPOCH).unwrap();

    let listing = gnu_tar(&["--utc", "-tvzf", packed.path.as_str()]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len() as u64, packed.entries);
    let mut names = Vec::new();
    for line in &lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, date, time) = (fields[0], fields[1], fields[3], fields[4]);
        assert_eq!(owner, "0/0", "{line}");
        assert_eq!((date, time), ("2026-11-01", "00:00"), "{line}");
        let name = fields[5];
        let expected_mode = match name {
            n if n.ends_with('/') => "drwxr-xr-x",
            "bin/hitsave" => "-rwxr-xr-x",
            "bin/link" => "lrwxrwxrwx",
            _ => "-rw-r--r--",
        };
        assert_eq!(mode, expected_mode, "{line}");
        names.push(name.to_owned());
    }
    // GNU --sort=name order: depth first, names sorted within each directory.
    let expected_start = ["README", "a/", "a/b/", "a/b/c.txt", "a.txt", "bin/"];
    assert_eq!(&names[..6], &expected_start);
    assert!(names.contains(&format!("{LONG_DIR}/index-of-everything.js")));
    assert!(lines.iter().any(|l| l.contains("bin/link -> ../a/b/c.txt")));

    // The gzip header carries no name (FLG = 0) and no time (MTIME = 0).
    let bytes = std::fs::read(&packed.path).unwrap();
    assert_eq!(&bytes[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);

    // sha256sum agrees with the name and the returned digest.
    let sum = Command::new("sha256sum")
        .arg(&packed.path)
        .output()
        .unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(sum.split_whitespace().next().unwrap(), packed.sha256);
    assert_eq!(packed.size, bytes.len() as u64);

    // And it unpacks to the same content.
    let unpacked = tempfile::tempdir().unwrap();
    gnu_tar(&["-xzf", packed.path.as_str(), "-C", utf8(&unpacked).as_str()]);
    let read = |root: &Utf8Path, rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    for rel in ["README", "a/b/c.txt", "données/é.txt", "bin/link"] {
        assert_eq!(read(&utf8(&unpacked), rel), read(&utf8(&src), rel), "{rel}");
    }
}

#[test]
fn links_that_leave_the_tree_and_special_files_are_refused_leaving_nothing() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(&utf8(&src), "ok.txt", "fine", 0o644);
    std::os::unix::fs::symlink("../../etc/passwd", utf8(&src).join("escape")).unwrap();
    let err = pack_dir(&utf8(&src), &utf8(&out), EPOCH).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot package the link escape"),
        "{err:#}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    let src = tempfile::tempdir().unwrap();
    let status = Command::new("mkfifo")
        .arg(src.path().join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let err = pack_dir(&utf8(&src), &utf8(&out), EPOCH).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot package pipe"),
        "{err:#}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
