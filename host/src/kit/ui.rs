//! What the operator sees: progress bars on a terminal, plain log lines in CI and pipes.
//! Everything human goes to stderr; stdout is kept for `--json`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use camino::Utf8Path;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Ui {
    interactive: bool,
    multi: MultiProgress,
}

impl Default for Ui {
    fn default() -> Ui {
        Ui::new()
    }
}

impl Ui {
    /// Bars only on a terminal, and never in CI (where they would fill the log).
    pub fn new() -> Ui {
        let interactive = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let target = if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Ui {
            interactive,
            multi: MultiProgress::with_draw_target(target),
        }
    }

    pub fn info(&self, message: &str) {
        if self.interactive {
            // Printed above the bars, so they do not tear.
            let _ = self.multi.println(format!("xtask: {message}"));
        } else {
            eprintln!("xtask: {message}");
        }
    }

    /// A spinner on a terminal, a log line otherwise.
    pub fn spinner(&self, message: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}").expect("valid template"),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        if !self.interactive {
            eprintln!("xtask: {message}");
        }
        bar
    }

    /// A byte counter: a bar on a terminal, a line at the start and one at the end otherwise.
    pub fn bytes(&self, message: &str, total: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        if !self.interactive {
            eprintln!("xtask: {message} ({})", human_bytes(total));
        }
        bar
    }

    /// Runs a build step. On a terminal its output goes to a log file and a spinner shows the
    /// latest line; elsewhere the output streams through. On failure the end of the log is
    /// printed and the error says where the whole log is.
    pub fn run_step(
        &self,
        message: &str,
        command: duct::Expression,
        log: &Utf8Path,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        if self.interactive {
            self.run_quietly(message, command, log)?;
        } else {
            self.info(message);
            // Child output goes to stderr: stdout is for --json.
            command
                .stdin_null()
                .stdout_to_stderr()
                .run()
                .with_context(|| format!("{message} failed"))?;
        }
        self.info(&format!("{message}: done in {:.1?}", started.elapsed()));
        Ok(())
    }

    /// Output to the log file as it comes, the latest line beside a spinner, and only the last
    /// lines kept in memory for the error.
    fn run_quietly(
        &self,
        message: &str,
        command: duct::Expression,
        log: &Utf8Path,
    ) -> anyhow::Result<()> {
        const TAIL: usize = 40;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut log_file =
            std::fs::File::create(log).with_context(|| format!("cannot write {log}"))?;
        let bar = self.spinner(message);
        let reader = command
            .stdin_null()
            .stderr_to_stdout()
            .unchecked()
            .reader()
            .with_context(|| format!("cannot start: {message}"))?;
        let mut tail = VecDeque::with_capacity(TAIL);
        let mut buffered = BufReader::new(&reader);
        let mut line = String::new();
        while buffered.read_line(&mut line)? > 0 {
            log_file.write_all(line.as_bytes())?;
            let trimmed = line.trim_end();
            if !trimmed.is_empty() {
                bar.set_message(format!("{message}: {}", truncate(trimmed, 60)));
            }
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(std::mem::take(&mut line));
        }
        let output = reader
            .try_wait()?
            .context("the step's output ended early")?;
        bar.finish_and_clear();
        if !output.status.success() {
            eprint!("{}", tail.iter().map(String::as_str).collect::<String>());
            bail!(
                "{message} failed ({}); the whole log is in {log}",
                output.status
            );
        }
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// 1536 -> "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
