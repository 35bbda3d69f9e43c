//! ClickHouse sink configuration.

use std::path::PathBuf;
use std::time::Duration;

/// ClickHouse sink settings.
#[derive(Clone)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database of the tables (created if missing).
    pub database: String,
    /// User (none: the server's default).
    pub user: Option<String>,
    /// Password; never logged.
    pub password: Option<String>,
    /// At shutdown: attempts before what is still pending is spilled to disk.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to 5 s, ±20% jitter.
    pub retry_base: Duration,
    /// Where spilled batches and dead letters are written (Parquet files).
    pub spill_dir: PathBuf,
    /// Arrow memory of the batches held while the server fails; beyond it the oldest are
    /// spilled to disk.
    pub memory_budget_bytes: usize,
    /// Hot tier: delete market data older than this many days (modern servers; gaps kept).
    pub ttl_days: Option<u32>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl ClickHouseConfig {
    /// Defaults for `url`: database `tickwire`, retries from 100 ms, 20 attempts at shutdown,
    /// 256 MiB held in memory, spill under `clickhouse-spill/`.
    pub fn new(url: impl Into<String>) -> Self {
        ClickHouseConfig {
            url: url.into(),
            database: "tickwire".into(),
            user: None,
            password: None,
            max_attempts: 20,
            retry_base: Duration::from_millis(100),
            spill_dir: PathBuf::from("clickhouse-spill"),
            memory_budget_bytes: 256 << 20,
            ttl_days: None,
        }
    }
}
