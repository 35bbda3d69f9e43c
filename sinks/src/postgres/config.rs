//! PostgreSQL sink configuration.

use crate::durable::Durability;

/// Whether to use TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timescale {
    /// Use it when the extension is installed or can be created; plain tables otherwise
    /// (the server's reason logged).
    Auto,
    /// Plain PostgreSQL tables even where TimescaleDB exists.
    Off,
    /// TimescaleDB or nothing: the sink refuses to start without it, with the server's reason.
    Require,
}

impl Timescale {
    /// `off`, `auto` or `require`.
    pub fn as_str(self) -> &'static str {
        match self {
            Timescale::Auto => "auto",
            Timescale::Off => "off",
            Timescale::Require => "require",
        }
    }
}

impl std::str::FromStr for Timescale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Timescale::Auto),
            "off" | "false" => Ok(Timescale::Off),
            "require" => Ok(Timescale::Require),
            _ => Err(format!(
                "timescale {s:?}: expected \"off\", \"auto\" or \"require\""
            )),
        }
    }
}

impl std::fmt::Display for Timescale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Connections, each with one COPY in flight (a batch goes in one part per connection,
    /// see [`super::sink::part_count`]).
    pub connections: usize,
    /// Retries, memory budget and spill directory.
    pub durability: Durability,
}

pub use crate::redact;

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("timescale", &self.timescale)
            .field("durability", &self.durability)
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
            durability: Durability::new("postgres-spill"),
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
