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
    /// Each line said and when: a step of work starts with its line and lasts until the next
    /// (`timings`).
    said: std::sync::Mutex<Vec<(Instant, String)>>,
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
            said: std::sync::Mutex::new(vec![(Instant::now(), "(start)".into())]),
        }
    }

    /// How long each step took: every line said, with the time until the next one (the last
    /// until now), as a table.
    pub fn timings(&self) -> String {
        let said = self.said.lock().map(|s| s.clone()).unwrap_or_default();
        let now = Instant::now();
        let mut table = String::from("  seconds  step\n");
        for (i, (at, line)) in said.iter().enumerate() {
            let until = said.get(i + 1).map_or(now, |next| next.0);
            let line: String = line.chars().take(100).collect();
            table += &format!("  {:>7.3}  {line}\n", (until - *at).as_secs_f64());
        }
        table
            + &format!(
                "  {:>7.3}  total\n",
                said.first().map_or(0.0, |s| (now - s.0).as_secs_f64())
            )
    }

    pub fn info(&self, message: &str) {
        if let Ok(mut said) = self.said.lock() {
            said.push((Instant::now(), message.to_owned()));
        }
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

/// `s` cut to `max` characters, with an ellipsis when it was longer.
pub fn truncate(s: &str, max: usize) -> String {
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

#[cfg(test)]
mod tests {
    #[test]
    fn timings_are_the_time_between_lines() {
        let ui = super::Ui::new();
        ui.info("building images");
        std::thread::sleep(std::time::Duration::from_millis(30));
        ui.info("starting the database");
        let table = ui.timings();
        let building = table
            .lines()
            .find(|l| l.ends_with("building images"))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap();
        assert!((0.03..1.0).contains(&building), "{table}");
        assert!(table.contains("starting the database") && table.contains("total"));
    }
}
