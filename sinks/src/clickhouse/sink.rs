//! The ClickHouse sink: the ClickHouse [`Store`] inside the shared [`Durable`] core.

use super::ddl::{
    cluster_statements, statements, ttl_statements, Dialect, BATCH_COLUMN, LOCAL_SUFFIX,
};
use super::{native, ClickHouseConfig};
use crate::durable::{runtime, Durable, Failure, Inserted, Store, StoreError};
use crate::SinkError;
use arrow_array::RecordBatch;
use std::time::Duration;
use tickwire_codecs::record::Kind;

/// Writes batches into ClickHouse tables (see the module docs).
pub type ClickHouseSink = Durable<ClickHouseStore>;

/// One ClickHouse server: Native inserts with a batch id in every row.
pub struct ClickHouseStore {
    rt: tokio::runtime::Runtime,
    client: ::clickhouse::Client,
    dialect: Dialect,
    version: String,
    database: String,
    /// `_local` on a cluster's shard, else empty.
    suffix: &'static str,
    /// The server takes `insert_deduplication_token` (22.2 and later).
    dedup_token: bool,
}

/// Whether a server of `version` takes `insert_deduplication_token` (added in 22.2): then each
/// insert carries its batch id as the token, and a Replicated table (or a MergeTree with
/// `non_replicated_deduplication_window`) stores a retried batch once by itself, besides the
/// sink's own count of the batch's rows.
pub fn takes_dedup_token(version: &str) -> bool {
    let mut it = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (22, 2)
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("version", &self.version)
            .field("database", &self.database)
            .finish()
    }
}

/// Server error codes that mean "try again later" (too many parts, overload, timeouts, ...).
const TRANSIENT_CODES: [u32; 10] = [3, 159, 164, 202, 203, 209, 210, 241, 252, 425];

fn classify(e: &::clickhouse::error::Error) -> Failure {
    match e {
        ::clickhouse::error::Error::BadResponse(msg) => {
            let code = msg
                .split("Code: ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|c| c.parse::<u32>().ok());
            match code {
                Some(c) if TRANSIENT_CODES.contains(&c) => Failure::Transient,
                Some(_) => Failure::Data,
                None => Failure::Transient, // a proxy or a restarting server answered
            }
        }
        _ => Failure::Transient,
    }
}

fn client(cfg: &ClickHouseConfig) -> ::clickhouse::Client {
    http_client(&cfg.url, cfg.user.as_deref(), cfg.password.as_deref())
}

/// A client of the HTTP interface at `url` (validation off: 18.16 cannot answer the crate's
/// `DESCRIBE`-based checks), with the user and password if given.
pub fn http_client(url: &str, user: Option<&str>, password: Option<&str>) -> ::clickhouse::Client {
    let mut client = ::clickhouse::Client::default()
        .with_url(url)
        .with_validation(false);
    if let Some(u) = user {
        client = client.with_user(u);
    }
    if let Some(p) = password {
        client = client.with_password(p);
    }
    client
}

impl ClickHouseStore {
    /// Asks the server its version, changing nothing (`tickwire run --check`).
    pub fn probe(cfg: &ClickHouseConfig) -> Result<String, SinkError> {
        let rt = runtime()?;
        Ok(rt.block_on(client(cfg).query("SELECT version()").fetch_one())?)
    }

    /// Connects, picks the dialect by server version and applies the schema (idempotent).
    pub fn connect(cfg: &ClickHouseConfig) -> Result<Self, SinkError> {
        let rt = runtime()?;
        let client = client(cfg);
        let version: String = rt.block_on(client.query("SELECT version()").fetch_one())?;
        let dialect = Dialect::for_version(&version);
        match &cfg.cluster {
            None => {
                for st in statements(dialect, &cfg.database) {
                    rt.block_on(client.query(&st).execute())?;
                }
            }
            Some(layout) => {
                // The Distributed tables need the cluster in the server's `remote_servers`;
                // without it the shard's own tables are still made (and written).
                let known: u64 = rt.block_on(
                    client
                        .query(&format!(
                            "SELECT count() FROM system.clusters WHERE cluster = '{}'",
                            layout.cluster
                        ))
                        .fetch_one(),
                )?;
                if known == 0 {
                    tracing::warn!(
                        "sink clickhouse {}: no cluster {:?} in the server's remote_servers: Distributed tables not made",
                        crate::redact(&cfg.url), layout.cluster
                    );
                }
                for st in cluster_statements(dialect, &cfg.database, layout) {
                    if known == 0 && st.contains("ENGINE = Distributed(") {
                        continue;
                    }
                    rt.block_on(client.query(&st).execute())?;
                }
            }
        }
        match (cfg.ttl_days, dialect) {
            (Some(days), Dialect::Modern) => {
                for st in ttl_statements(&cfg.database, days) {
                    let st = match cfg.cluster {
                        // The shard's own tables hold the rows.
                        Some(_) => {
                            st.replacen(" MODIFY TTL", &format!("{LOCAL_SUFFIX} MODIFY TTL"), 1)
                        }
                        None => st,
                    };
                    rt.block_on(client.query(&st).execute())?;
                }
            }
            (Some(_), Dialect::Legacy) => {
                tracing::warn!("sink clickhouse: server {version} has no TTL; ttl_days ignored");
            }
            (None, _) => {}
        }
        let migrations = format!(
            "CREATE TABLE IF NOT EXISTS {}.schema_migrations (version UInt32, dialect String, applied_at DateTime) ENGINE = MergeTree ORDER BY version",
            cfg.database
        );
        rt.block_on(client.query(&migrations).execute())?;
        let applied: u64 = rt.block_on(
            client
                .query(&format!(
                    "SELECT count() FROM {}.schema_migrations WHERE version = 1",
                    cfg.database
                ))
                .fetch_one(),
        )?;
        if applied == 0 {
            rt.block_on(
                client
                    .query(&format!(
                        "INSERT INTO {}.schema_migrations VALUES (1, '{}', now())",
                        cfg.database,
                        if dialect == Dialect::Modern {
                            "modern"
                        } else {
                            "18.16"
                        }
                    ))
                    .execute(),
            )?;
        }
        let dedup_token = takes_dedup_token(&version);
        Ok(ClickHouseStore {
            dedup_token,
            rt,
            client,
            dialect,
            version,
            database: cfg.database.clone(),
            suffix: if cfg.cluster.is_some() {
                LOCAL_SUFFIX
            } else {
                ""
            },
        })
    }
}

impl Durable<ClickHouseStore> {
    /// Connects (see [`ClickHouseStore::connect`]) and sends earlier runs' spill files.
    pub fn new(cfg: ClickHouseConfig) -> Result<Self, SinkError> {
        let store = ClickHouseStore::connect(&cfg)?;
        Durable::with_store(store, cfg.durability)
    }

    /// The server's version string.
    pub fn version(&self) -> &str {
        &self.store.version
    }
}

impl Store for ClickHouseStore {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    /// One attempt to store a Native block with batch id `id`. A batch is one UTC day of one
    /// kind, so one partition and one atomic part: after a failed attempt, all of it landed or
    /// none, and counting the rows with its id tells which.
    fn insert(
        &mut self,
        table: &str,
        id: u64,
        data: &RecordBatch,
        check_first: bool,
    ) -> Result<Inserted, StoreError> {
        let body =
            bytes::Bytes::from(
                native::encode(data, self.dialect, id).map_err(|e| StoreError {
                    failure: Failure::Data,
                    message: e.to_string(),
                })?,
            );
        let rows = data.num_rows() as u64;
        let table = format!("{}.{table}{}", self.database, self.suffix);
        let sql = format!("INSERT INTO {table} FORMAT Native");
        let probe = format!("SELECT count() FROM {table} WHERE {BATCH_COLUMN} = {id}");
        let client = &self.client;
        let dedup_token = self.dedup_token;
        let r = self.rt.block_on(async {
            if check_first {
                let present: u64 = client.query(&probe).fetch_one().await?;
                if present == rows {
                    return Ok(Inserted::AlreadyThere);
                }
            }
            let mut ins = client
                .insert_formatted_with(sql.as_str())
                .with_timeouts(Some(Duration::from_secs(10)), Some(Duration::from_secs(60)));
            if dedup_token {
                ins = ins.with_setting("insert_deduplication_token", id.to_string());
            }
            ins.send(body.clone()).await?;
            ins.end()
                .await
                .map(|()| Inserted::Stored(body.len() as u64))
        });
        r.map_err(|e| StoreError {
            failure: classify(&e),
            message: e.to_string(),
        })
    }

    fn known_ids(&mut self, from: u64) -> Result<Vec<u64>, StoreError> {
        let client = &self.client;
        let db = &self.database;
        let suffix = self.suffix;
        self.rt
            .block_on(async {
                let mut ids = Vec::new();
                for kind in Kind::ALL {
                    let sql = format!(
                        "SELECT DISTINCT {BATCH_COLUMN} FROM {db}.{}{} WHERE {BATCH_COLUMN} >= {from}",
                        crate::table_name(*kind),
                        suffix
                    );
                    ids.extend(client.query(&sql).fetch_all::<u64>().await?);
                }
                Ok::<_, ::clickhouse::error::Error>(ids)
            })
            .map_err(|e| StoreError {
                failure: classify(&e),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_token_goes_to_servers_that_take_it() {
        assert!(!takes_dedup_token("18.16.1"));
        assert!(!takes_dedup_token("21.8.15.7"));
        assert!(!takes_dedup_token("22.1.3.7"));
        assert!(takes_dedup_token("22.2.2.1"));
        assert!(takes_dedup_token("26.9.1.1"));
        assert!(!takes_dedup_token("garbage"));
    }

    #[test]
    fn failures_are_classified_by_code() {
        let bad = |m: &str| ::clickhouse::error::Error::BadResponse(m.into());
        assert_eq!(
            classify(&bad(
                "Code: 252, e.displayText() = DB::Exception: Too many parts"
            )),
            Failure::Transient
        );
        assert_eq!(
            classify(&bad(
                "Code: 53, e.displayText() = DB::Exception: Type mismatch"
            )),
            Failure::Data
        );
        assert_eq!(classify(&bad("502 Bad Gateway")), Failure::Transient);
        assert_eq!(
            classify(&::clickhouse::error::Error::TimedOut),
            Failure::Transient
        );
    }
}
