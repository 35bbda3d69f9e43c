//! Log lines: every message the engine writes about itself goes through `tracing`, to stderr,
//! as text (for a terminal or journald) or as one JSON object a line (for Vector, Loki,
//! Elasticsearch). The filter is `TICKWIRE_LOG`, else `RUST_LOG`, in `EnvFilter` syntax
//! (`info`, `warn,tickwire_engine::source=debug`); `info` when neither is set.
//!
//! What a command prints as its result (the stats line, JSON summaries, `decode`'s and
//! `subscribe`'s output, progress bars) is not a log line and does not come through here.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-06T21:40:00.123456Z  WARN tickwire_engine::source: message`.
    #[default]
    Text,
    /// `{"timestamp":"...","level":"WARN","target":"...","message":"..."}`, one a line.
    Json,
}

/// The filter the environment asks for, or why it cannot be read.
fn filter() -> Result<EnvFilter, String> {
    for var in ["TICKWIRE_LOG", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var) {
            return EnvFilter::builder()
                .parse(&v)
                .map_err(|e| format!("{var}={v}: {e}"));
        }
    }
    Ok(EnvFilter::new("info"))
}

/// Installs the process's subscriber; the first call wins (tests may call it again).
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_an_error_that_names_the_variable() {
        // Only this test touches the variable, and it restores it.
        let before = std::env::var("TICKWIRE_LOG").ok();
        std::env::set_var("TICKWIRE_LOG", "tickwire=loud");
        let e = filter().expect_err("a bad filter");
        match before {
            Some(v) => std::env::set_var("TICKWIRE_LOG", v),
            None => std::env::remove_var("TICKWIRE_LOG"),
        }
        assert!(e.starts_with("TICKWIRE_LOG=tickwire=loud: "), "{e}");
    }
}
