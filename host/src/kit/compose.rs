//! The one way xtask runs `docker compose`: a project, its files and how its variables are
//! set, for an installed release (`site::stack`) and for `cargo xtask dev` alike.

use anyhow::{Context, bail};
use camino::Utf8PathBuf;

/// One compose project and the files it is made of.
#[derive(Debug, Clone)]
pub struct Compose {
    /// `--project-name`: containers are `<project>-<service>-N`.
    pub project: String,
    /// `--project-directory`: relative paths in the files are relative to it.
    pub directory: Utf8PathBuf,
    /// `-f`, in order: the base, then its overlays.
    pub files: Vec<Utf8PathBuf>,
    /// `--env-file`, when the variables come from a file (release.env).
    pub env_file: Option<Utf8PathBuf>,
    /// Variables set for compose's interpolation.
    pub env: Vec<(String, String)>,
    /// Drop the caller's `HITSAVE_*` and `COMPOSE_*` variables, so that only `env_file` and
    /// `env` decide what runs (a stray variable must not change production).
    pub isolated: bool,
}

impl Compose {
    /// `docker compose ...` with this project's flags.
    pub fn command(&self, args: &[&str]) -> duct::Expression {
        let mut all: Vec<String> = vec![
            "compose".into(),
            "--project-name".into(),
            self.project.clone(),
            "--project-directory".into(),
            self.directory.to_string(),
        ];
        if let Some(file) = &self.env_file {
            all.extend(["--env-file".into(), file.to_string()]);
        }
        for file in &self.files {
            all.extend(["-f".into(), file.to_string()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let mut cmd = duct::cmd("docker", all).stdin_null();
        if self.isolated {
            for (key, _) in std::env::vars() {
                if key.starts_with("HITSAVE_") || key.starts_with("COMPOSE_") {
                    cmd = cmd.env_remove(key);
                }
            }
        }
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        cmd
    }

    /// Runs a compose command to its end: how it exited, and its output (stdout and stderr).
    pub fn output(
        &self,
        what: &str,
        args: &[&str],
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        let out = self
            .command(args)
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .with_context(|| format!("cannot run docker compose ({what})"))?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// Runs a compose command and returns its output; on failure the error names `what` and
    /// the command and carries the end of the output.
    pub fn run(&self, what: &str, args: &[&str]) -> anyhow::Result<String> {
        let (status, text) = self.output(what, args)?;
        if !status.success() {
            bail!(
                "{what} failed: docker compose {}:\n{}",
                args.join(" "),
                tail(&text, 30)
            );
        }
        Ok(text)
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
