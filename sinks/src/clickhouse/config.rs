//! ClickHouse sink configuration.

use crate::durable::Durability;

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
    /// Retries, memory budget and spill directory.
    pub durability: Durability,
    /// Hot tier: delete market data older than this many days (modern servers; gaps kept).
    pub ttl_days: Option<u32>,
    /// One shard of a cluster: the cluster schema ([`super::ddl::cluster_statements`]) is
    /// applied and rows go into the shard's `<table>_local` tables.
    pub cluster: Option<super::ddl::ClusterLayout>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &crate::redact(&self.url))
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("durability", &self.durability)
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
            durability: Durability::new("clickhouse-spill"),
            ttl_days: None,
            cluster: None,
        }
    }
}
