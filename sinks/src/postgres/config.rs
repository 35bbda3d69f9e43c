//! PostgreSQL sink configuration.

use std::path::PathBuf;
use std::time::Duration;

/// Whether to use TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timescale {
    /// Use it when the extension is installed or can be created; plain tables otherwise.
    Auto,
    /// Plain PostgreSQL tables even where TimescaleDB exists.
    Off,
}

/// PostgreSQL sink settings.
#[derive(Clone)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:5432/tickwire`. Its password is never
    /// logged.
    pub url: String,
    /// Schema of the tables (created if missing).
    pub schema: String,
    /// TimescaleDB policy.
    pub timescale: Timescale,
    /// TimescaleDB: compress chunks older than this many days.
    pub compress_after_days: u32,
    /// TimescaleDB: drop market data older than this many days (gaps are kept).
    pub retention_days: u32,
    /// Connections, each with one COPY in flight (a batch larger than
    /// [`super::sink::PART_ROWS`] rows goes in parts over several at once).
    pub connections: usize,
    /// At shutdown: attempts before what is still pending is spilled to disk.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to 5 s, ±20% jitter.
    pub retry_base: Duration,
    /// Where spilled batches and dead letters are written (Parquet files).
    pub spill_dir: PathBuf,
    /// Arrow memory of the batches held while the server fails; beyond it the oldest are
    /// spilled to disk.
    pub memory_budget_bytes: usize,
}

/// `url` with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((cred, host)) if cred.contains(':') => {
            let user = cred.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("timescale", &self.timescale)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl PostgresConfig {
    /// Defaults for `url`: schema `public`, TimescaleDB when available (compression after 7
    /// days, retention 30 days), 2 connections, retries from 100 ms, 20 attempts at shutdown, 256 MiB held in
    /// memory, spill under `postgres-spill/`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            schema: "public".into(),
            timescale: Timescale::Auto,
            compress_after_days: 7,
            retention_days: 30,
            connections: 2,
            max_attempts: 20,
            retry_base: Duration::from_millis(100),
            spill_dir: PathBuf::from("postgres-spill"),
            memory_budget_bytes: 256 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
