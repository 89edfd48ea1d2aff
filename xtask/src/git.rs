//! What git says about the checkout: the commit, its time, the branch, the tracked files with
//! their object ids, and the files that differ from the commit (the dirty ones).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

/// The state of a checkout, read once per command.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub root: Utf8PathBuf,
    /// Full SHA-1 of HEAD.
    pub commit: hitsave_schema::Commit,
    /// Committer time of HEAD, seconds since the epoch: SOURCE_DATE_EPOCH for the tarballs.
    pub commit_time: u64,
    /// HEAD's committer time as UTC `YYYYMMDDHHMMSS`, the start of the release id.
    pub commit_stamp: String,
    /// The branch, from GitHub Actions' variables or git; `None` on a detached HEAD.
    pub branch: Option<String>,
    /// Every tracked file: path -> "<mode> <object id>".
    pub tracked: BTreeMap<String, String>,
    /// Files that differ from HEAD (modified, staged, deleted or untracked but not ignored):
    /// path -> "<mode> <object id>" as `git add` would record it, or "deleted".
    pub dirty: BTreeMap<String, String>,
}

impl Checkout {
    pub fn read(root: &Utf8Path) -> anyhow::Result<Checkout> {
        let git = |args: &[&str]| run(root, args, None);
        // A missing git must not read as "not a checkout".
        duct::cmd!("git", "--version")
            .stdout_null()
            .run()
            .map_err(missing_git)?;
        git(&["rev-parse", "--git-dir"]).with_context(|| {
            format!("{root} is not a git checkout: releases are made from a git commit")
        })?;
        // One call for the commit, its time, and that time as UTC YYYYMMDDHHMMSS (`run`
        // sets TZ=UTC, so format-local is UTC).
        let head = git(&[
            "show",
            "-s",
            "--date=format-local:%Y%m%d%H%M%S",
            "--format=%H %ct %cd",
            "HEAD",
        ])?;
        let mut fields = head.split_whitespace();
        let (Some(commit), Some(commit_time), Some(commit_stamp)) =
            (fields.next(), fields.next(), fields.next())
        else {
            bail!("cannot read HEAD from `git show`: {head:?}");
        };
        let commit = hitsave_schema::Commit::new(commit)?;
        let commit_time = commit_time.parse().context("cannot read the commit time")?;
        let commit_stamp = commit_stamp.to_owned();
        let branch = std::env::var("GITHUB_HEAD_REF")
            .ok()
            .filter(|b| !b.is_empty())
            .or_else(|| std::env::var("GITHUB_REF_NAME").ok())
            .filter(|b| !b.is_empty())
            .or_else(|| {
                git(&["symbolic-ref", "--quiet", "--short", "HEAD"])
                    .ok()
                    .map(|b| b.trim().to_owned())
            });

        let mut tracked = BTreeMap::new();
        for entry in git(&["ls-files", "--stage", "-z"])?.split('\0') {
            // "<mode> <object> <stage>\t<path>"
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let mut fields = meta.split(' ');
            let (Some(mode), Some(object)) = (fields.next(), fields.next()) else {
                bail!("cannot read `git ls-files --stage` output: {entry:?}");
            };
            tracked.insert(path.to_owned(), format!("{mode} {object}"));
        }

        let status = git(&[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
        ])?;
        let dirty_paths: Vec<&str> = status
            .split('\0')
            .filter(|e| e.len() > 3)
            .map(|e| &e[3..])
            .collect();
        let dirty = worktree_states(root, &dirty_paths)?;
        Ok(Checkout {
            root: root.to_owned(),
            commit,
            commit_time,
            commit_stamp,
            branch,
            tracked,
            dirty,
        })
    }

    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The state of every file under the pathspecs, as it is in the working tree: the object
    /// id for files that match the commit, the content hash for dirty ones.
    pub fn files_under<'a>(
        &'a self,
        pathspecs: &'a [&'a str],
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut merged: BTreeMap<&str, &str> = BTreeMap::new();
        for (path, state) in self.tracked.iter().chain(self.dirty.iter()) {
            if pathspecs.iter().any(|spec| under(path, spec)) {
                merged.insert(path, state);
            }
        }
        merged.into_iter()
    }

    /// A short digest of the uncommitted changes: two dirty trees with the same changes get
    /// the same release id, different changes a different one.
    pub fn dirty_digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, state) in &self.dirty {
            h.update(format!("{path}\0{state}\n"));
        }
        hitsave_schema::hex(&h.finalize())
    }
}

/// `path` is `spec` or lies below it.
fn under(path: &str, spec: &str) -> bool {
    path == spec
        || path
            .strip_prefix(spec)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The working-tree state of each dirty path, in the same "<mode> <object id>" form as
/// tracked files (so a change that is later committed as it is keeps its input hash), or
/// "deleted".
fn worktree_states(root: &Utf8Path, paths: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut states = BTreeMap::new();
    let mut files = Vec::new();
    for &path in paths {
        let full = root.join(path);
        let meta = match full.symlink_metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                states.insert(path.to_owned(), "deleted".to_owned());
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot stat {full}")),
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full)?;
            let digest =
                hitsave_schema::hex(&Sha256::digest(target.as_os_str().as_encoded_bytes()));
            states.insert(path.to_owned(), format!("120000 link-sha256:{digest}"));
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                "100755"
            } else {
                "100644"
            };
            files.push((path, mode));
        } else {
            // An untracked nested repository: its contents are not ours to hash.
            states.insert(path.to_owned(), "directory".to_owned());
        }
    }
    if !files.is_empty() {
        // One git process hashes them all, as the blobs `git add` would make.
        let list: String = files.iter().map(|(p, _)| format!("{p}\n")).collect();
        let objects = run(root, &["hash-object", "--stdin-paths"], Some(&list))?;
        let objects: Vec<&str> = objects.lines().collect();
        if objects.len() != files.len() {
            bail!(
                "`git hash-object` hashed {} of {} files",
                objects.len(),
                files.len()
            );
        }
        for ((path, mode), object) in files.iter().zip(objects) {
            states.insert((*path).to_owned(), format!("{mode} {object}"));
        }
    }
    Ok(states)
}

/// Runs git in `root` and returns what it printed; `input`, when given, goes to its stdin.
/// TZ is UTC, so dates that git formats as local time are UTC.
pub fn run(root: &Utf8Path, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let git = duct::cmd("git", args).dir(root).env("TZ", "UTC");
    // duct writes stdin from a thread of its own, so a full stdout pipe cannot deadlock us.
    let git = match input {
        Some(input) => git.stdin_bytes(input.as_bytes().to_vec()),
        None => git.stdin_null(),
    };
    let out = git
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(missing_git)?;
    if !out.status.success() {
        bail!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("git printed something that is not UTF-8")
}

fn missing_git(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("git is missing: install it with `sudo apt-get install git`")
    } else {
        anyhow::Error::new(e).context("cannot run git")
    }
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn pathspecs_match_whole_path_components() {
        assert!(under("api/src/main.rs", "api"));
        assert!(under("Cargo.toml", "Cargo.toml"));
        assert!(!under("api2/x", "api"));
        assert!(!under("Cargo.toml.bak", "Cargo.toml"));
    }
}
