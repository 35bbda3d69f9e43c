//! Progress of long one-shot commands (`tickwire replay`, `tickwire tier`): a bar on a
//! terminal (indicatif, on stderr), and on anything else (a pipe, a log file, journald) an
//! `info` log line at most every ten seconds and one at the end, so a long run still shows
//! that it moves without filling a log with carriage returns.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// One progress display: a count of `total` units (bytes, rows, windows).
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    unit: Unit,
    total: u64,
    done: u64,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    started: Instant,
    finished: bool,
}

/// What the count counts, for how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (shown as KiB, MiB, ...).
    Bytes,
    /// Rows or records (shown as 12.3k, 4.56M).
    Rows,
}

impl Progress {
    /// A display of `total` units; a bar when stderr is a terminal.
    pub fn new(label: &'static str, unit: Unit, total: u64) -> Progress {
        Progress::with_terminal(label, unit, total, std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], saying whether stderr is a terminal (for tests).
    pub fn with_terminal(label: &'static str, unit: Unit, total: u64, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let count = match unit {
                Unit::Bytes => "{binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
                Unit::Rows => "{human_pos}/{human_len} {per_sec}",
            };
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{prefix}} [{{bar:30}}] {count} {{msg}} eta {{eta}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("#>-");
            bar.set_style(style);
            bar.set_prefix(label);
            bar
        });
        let now = Instant::now();
        Progress {
            label,
            unit,
            total,
            done: 0,
            bar,
            last_line: now,
            started: now,
            finished: false,
        }
    }

    /// Moves the count to `done` (of `total`, which may be raised), with a short note (e.g.
    /// `windows 3/10`).
    pub fn set(&mut self, done: u64, total: u64, note: &str) {
        self.done = done;
        self.total = total;
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(note.to_string());
            }
            None => {
                if self.last_line.elapsed() >= PLAIN_EVERY {
                    self.last_line = Instant::now();
                    tracing::info!("{}", self.line(note));
                }
            }
        }
    }

    /// Ends the display: the bar stays drawn at its last state; a plain display writes its
    /// final line.
    pub fn finish(&mut self, note: &str) {
        if self.finished {
            return;
        }
        self.finished = true;
        match &self.bar {
            Some(bar) => {
                bar.set_message(note.to_string());
                bar.finish();
            }
            None => tracing::info!("{} (done)", self.line(note)),
        }
    }

    /// The plain progress line: `replay: 1.2 MiB of 3.4 MiB (35%), files 2/5, 12 s`.
    pub fn line(&self, note: &str) -> String {
        let pct = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let amount = |n: u64| match self.unit {
            Unit::Bytes => indicatif::BinaryBytes(n).to_string(),
            Unit::Rows => indicatif::HumanCount(n).to_string(),
        };
        let mut s = format!(
            "{}: {} of {} ({pct:.0}%)",
            self.label,
            amount(self.done),
            amount(self.total)
        );
        if !note.is_empty() {
            s.push_str(", ");
            s.push_str(note);
        }
        s.push_str(&format!(", {:.0} s", self.started.elapsed().as_secs_f64()));
        s
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !self.finished {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_line_says_how_far_in_what_unit() {
        let mut p = Progress::with_terminal("replay", Unit::Bytes, 4 << 20, false);
        p.set(1 << 20, 4 << 20, "files 1/4");
        let l = p.line("files 1/4");
        assert!(
            l.starts_with("replay: 1.00 MiB of 4.00 MiB (25%), files 1/4, "),
            "{l}"
        );
        let mut p = Progress::with_terminal("tier", Unit::Rows, 0, false);
        p.set(0, 0, "");
        assert!(
            p.line("").starts_with("tier: 0 of 0 (100%), "),
            "{}",
            p.line("")
        );
        p.set(1_234_567, 2_000_000, "windows 1/2");
        assert!(
            p.line("w")
                .starts_with("tier: 1,234,567 of 2,000,000 (62%), w, "),
            "{}",
            p.line("w")
        );
    }
}
