//! The PostgreSQL sink: the PostgreSQL [`Store`] inside the shared [`Durable`] core.

use super::config::redact;
use super::ddl::{self, LEDGER, MIGRATIONS};
use super::{copy, PostgresConfig, Timescale};
use crate::durable::{runtime, Durable, Failure, Inserted, Store, StoreError};
use crate::SinkError;
use arrow_array::RecordBatch;
use futures_util::SinkExt;
use tokio_postgres::{Client, NoTls};

/// Writes batches into PostgreSQL/TimescaleDB tables (see the module docs).
pub type PostgresSink = Durable<PostgresStore>;

/// One PostgreSQL database: binary COPY plus a ledger row per batch, in one transaction.
pub struct PostgresStore {
    rt: tokio::runtime::Runtime,
    /// Open connections (broken ones are dropped and reopened at the next attempt).
    clients: Vec<Client>,
    /// How many COPYs may be in flight at once.
    connections: usize,
    url: String,
    schema: String,
    flavor: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("flavor", &self.flavor)
            .finish()
    }
}

/// SQLSTATE classes that mean the data (or the schema it meets) is wrong: no retry.
/// 22 data exception, 23 integrity, 42 syntax or undefined object, 0A not supported.
const DATA_CLASSES: [&str; 4] = ["22", "23", "42", "0A"];

fn classify(e: &tokio_postgres::Error) -> Failure {
    match e.code() {
        Some(c) if DATA_CLASSES.iter().any(|k| c.code().starts_with(k)) => Failure::Data,
        // Connection (08), rollback (40), resources (53), operator (57, e.g. shutdown), ...
        _ => Failure::Transient,
    }
}

/// A SQL identifier we put into statements: letters, digits, `_`, not starting with a digit.
fn identifier(s: &str) -> Result<&str, SinkError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(s)
    } else {
        Err(SinkError::Io {
            path: format!("postgres schema {s:?}"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)",
            ),
        })
    }
}

/// A server error as the server said it: `SEVERITY: message (DETAIL: ..; HINT: ..)`; other
/// errors as they print.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut s = format!("{}: {}", d.severity(), d.message());
            let extra: Vec<String> = [("DETAIL", d.detail()), ("HINT", d.hint())]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
                .collect();
            if !extra.is_empty() {
                s.push_str(&format!(" ({})", extra.join("; ")));
            }
            s
        }
        None => crate::error_chain(e),
    }
}

async fn timescale_present(c: &Client) -> Result<bool, tokio_postgres::Error> {
    c.query_opt(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
        &[],
    )
    .await
    .map(|r| r.is_some())
}

/// Whether TimescaleDB can be used, and if not why: the extension is looked for and, where
/// it is packaged but not created, created over a connection of its own (a server that has
/// not preloaded it answers FATAL and closes that connection, never the sink's).
async fn timescale_ready(
    client: &Client,
    url: &str,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    if timescale_present(client).await? {
        return Ok(Ok(()));
    }
    let available: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'",
            &[],
        )
        .await?
        .get(0);
    if available == 0 {
        return Ok(Err(
            "the timescaledb extension is not installed on this server".into(),
        ));
    }
    let probe = connect_quiet(url).await?;
    if let Err(e) = probe
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        return Ok(Err(format!(
            "the timescaledb extension is installed but cannot be created: {}",
            describe(&e)
        )));
    }
    drop(probe);
    if timescale_present(client).await? {
        Ok(Ok(()))
    } else {
        Ok(Err("timescaledb was created but is not visible".into()))
    }
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!("sink postgres: connection: {}", describe(&e));
        }
    });
    Ok(client)
}

/// A connection whose end is not logged (what it was for reports its errors).
async fn connect_quiet(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Applies the migrations that are missing (see the module docs); returns the flavour of
/// migration 2 (`timescale` or `plain`).
async fn migrate(
    client: &Client,
    cfg: &PostgresConfig,
    timescale: bool,
) -> Result<String, tokio_postgres::Error> {
    let s = &cfg.schema;
    // One tickwire at a time migrates a database (the key is arbitrary but fixed).
    client
        .batch_execute("SELECT pg_advisory_lock(7243615112)")
        .await?;
    let r = async {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.{MIGRATIONS} (version integer PRIMARY KEY, flavor text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ))
            .await?;
        let applied = |v: i32| async move {
            client
                .query_opt(
                    &format!("SELECT flavor FROM {s}.{MIGRATIONS} WHERE version = $1"),
                    &[&v],
                )
                .await
                .map(|r| r.map(|r| r.get::<_, String>(0)))
        };
        let record = |v: i32, flavor: &'static str| async move {
            client
                .execute(
                    &format!("INSERT INTO {s}.{MIGRATIONS} (version, flavor) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
                    &[&v, &flavor],
                )
                .await
        };
        if applied(1).await?.is_none() {
            for st in ddl::tables(s) {
                client.batch_execute(&st).await?;
            }
            record(1, "tables").await?;
        }
        let flavor = match applied(2).await? {
            Some(f) => f,
            None => {
        let (statements, flavor) = if timescale {
            (
                ddl::timescale(s, cfg.compress_after_days, cfg.retention_days),
                "timescale",
            )
        } else {
            (ddl::plain(s), "plain")
        };
        for st in statements {
            client.batch_execute(&st).await?;
        }
        record(2, flavor).await?;
        flavor.to_string()
            }
        };
        if applied(3).await?.is_none() {
            let mut statements = ddl::rest_tables(s);
            if flavor == "timescale" {
                statements.extend(ddl::rest_timescale(
                    s,
                    cfg.compress_after_days,
                    cfg.retention_days,
                ));
            }
            for st in statements {
                client.batch_execute(&st).await?;
            }
            record(3, if flavor == "timescale" { "timescale" } else { "tables" }).await?;
        }
        Ok(flavor)
    }
    .await;
    let unlock = client
        .batch_execute("SELECT pg_advisory_unlock(7243615112)")
        .await;
    let flavor = r?;
    unlock?;
    Ok(flavor)
}

impl PostgresStore {
    /// Asks the server its version, changing nothing (`tickwire run --check`).
    pub fn probe(cfg: &PostgresConfig) -> Result<String, SinkError> {
        let rt = runtime()?;
        rt.block_on(async {
            let client = connect_quiet(&cfg.url).await?;
            let v: String = client.query_one("SHOW server_version", &[]).await?.get(0);
            Ok(format!("PostgreSQL {v}"))
        })
        .map_err(|e: tokio_postgres::Error| SinkError::Setup(describe(&e)))
    }

    /// Connects and applies the migrations.
    pub fn connect(cfg: &PostgresConfig) -> Result<Self, SinkError> {
        identifier(&cfg.schema)?;
        let rt = runtime()?;
        let (client, flavor) = rt.block_on(async {
            let client = connect(&cfg.url).await?;
            let timescale = match cfg.timescale {
                Timescale::Off => false,
                Timescale::Auto | Timescale::Require => match timescale_ready(&client, &cfg.url).await? {
                    Ok(()) => true,
                    Err(why) if cfg.timescale == Timescale::Require => {
                        return Err(SinkError::Setup(format!(
                            "postgres {}: timescale = \"require\", but {why}",
                            redact(&cfg.url)
                        )));
                    }
                    Err(why) => {
                        tracing::warn!(
                            "sink postgres {}: {why}; plain tables (timescale = \"off\" silences this, \"require\" refuses to start)",
                            redact(&cfg.url)
                        );
                        false
                    }
                },
            };
            let flavor = migrate(&client, cfg, timescale).await?;
            if cfg.timescale == Timescale::Require && flavor != "timescale" {
                return Err(SinkError::Setup(format!(
                    "postgres {} schema {}: timescale = \"require\", but the schema was set up {flavor} by an earlier run",
                    redact(&cfg.url),
                    cfg.schema
                )));
            }
            Ok::<_, SinkError>((client, flavor))
        })?;
        tracing::info!(
            "sink postgres: {} schema {} ({flavor})",
            redact(&cfg.url),
            cfg.schema
        );
        Ok(PostgresStore {
            rt,
            clients: vec![client],
            connections: cfg.connections,
            url: cfg.url.clone(),
            schema: cfg.schema.clone(),
            flavor,
        })
    }
}

impl Durable<PostgresStore> {
    /// Connects (see [`PostgresStore::connect`]) and sends earlier runs' spill files.
    pub fn new(cfg: PostgresConfig) -> Result<Self, SinkError> {
        let store = PostgresStore::connect(&cfg)?;
        Durable::with_store(store, cfg.durability)
    }

    /// `timescale` (hypertables, policies, continuous aggregate) or `plain`.
    pub fn flavor(&self) -> &str {
        &self.store.flavor
    }
}

impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// Stores the batch as [`part_count`] equal parts, up to one per connection in flight at
    /// once. Each part is one transaction: its COPY and its ledger row `(batch_id, part,
    /// parts)`. After a failed attempt only the parts the ledger does not have are sent, cut
    /// as the ledger's `parts` says (so a retry cuts the same parts even if the number of
    /// connections changed in between).
    fn insert(
        &mut self,
        table: &str,
        id: u64,
        data: &RecordBatch,
        check_first: bool,
    ) -> Result<Inserted, StoreError> {
        let rows = data.num_rows();
        let columns: Vec<&str> = data
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let s = &self.schema;
        let copy_sql = format!(
            "COPY {s}.{table} ({}) FROM STDIN (FORMAT binary)",
            columns.join(", ")
        );
        let ledger = format!(
            "INSERT INTO {s}.{LEDGER} (batch_id, part, parts, table_name, rows) VALUES ($1, $2, $3, $4, $5)"
        );
        let probe = format!("SELECT part, parts, rows FROM {s}.{LEDGER} WHERE batch_id = $1");
        let id = id as i64;
        let (url, pool, want) = (&self.url, &mut self.clients, self.connections.max(1));
        let r = self.rt.block_on(async {
            let mut parts = part_count(rows, want);
            let mut size = rows.div_ceil(parts).max(1);
            let mut have: Vec<i32> = Vec::new();
            if check_first {
                ensure(pool, url, 1).await?;
                for r in pool[0].query(&probe, &[&id]).await? {
                    let (p, n): (i32, i32) = (r.get(0), r.get(2));
                    have.push(p);
                    (parts, size) = landed_cut(rows, p, r.get(1), n);
                }
            }
            let todo: Vec<usize> = (0..parts)
                .filter(|p| !have.contains(&(*p as i32)))
                .collect();
            if todo.is_empty() {
                return Ok(Inserted::AlreadyThere);
            }
            let mut sent = 0u64;
            for wave in todo.chunks(want) {
                ensure(pool, url, wave.len()).await?;
                let mut bodies = Vec::with_capacity(wave.len());
                for &p in wave {
                    let off = (p * size).min(rows);
                    let part = data.slice(off, size.min(rows - off));
                    let mut body = Vec::new();
                    copy::encode(&part, &mut body).map_err(PartError::Data)?;
                    sent += body.len() as u64;
                    bodies.push((p as i32, part.num_rows() as i32, bytes::Bytes::from(body)));
                }
                let runs = pool
                    .iter_mut()
                    .zip(bodies)
                    .map(|(client, (part, n, body))| {
                        let (copy_sql, ledger) = (&copy_sql, &ledger);
                        async move {
                            let tx = client.transaction().await?;
                            let sink = tx.copy_in(copy_sql).await?;
                            futures_util::pin_mut!(sink);
                            sink.send(body).await?;
                            sink.finish().await?;
                            tx.execute(ledger, &[&id, &part, &(parts as i32), &table, &n])
                                .await?;
                            tx.commit().await
                        }
                    });
                for r in futures_util::future::join_all(runs).await {
                    r?;
                }
            }
            Ok::<_, PartError>(Inserted::Stored(sent))
        });
        self.clients.retain(|c| !c.is_closed());
        r.map_err(|e| match e {
            PartError::Data(e) => StoreError {
                failure: Failure::Data,
                message: e.to_string(),
            },
            PartError::Pg(e) => StoreError {
                failure: classify(&e),
                message: e.to_string(),
            },
        })
    }

    fn known_ids(&mut self, from: u64) -> Result<Vec<u64>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT batch_id FROM {}.{LEDGER} WHERE batch_id >= $1",
            self.schema
        );
        let (url, pool) = (&self.url, &mut self.clients);
        let from = from.min(i64::MAX as u64) as i64;
        let r = self.rt.block_on(async {
            ensure(pool, url, 1).await?;
            let rows = pool[0].query(&sql, &[&from]).await?;
            Ok::<_, tokio_postgres::Error>(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        });
        self.clients.retain(|c| !c.is_closed());
        r.map_err(|e| StoreError {
            failure: classify(&e),
            message: e.to_string(),
        })
    }
}

/// How an earlier attempt cut a batch of `rows`, from one part it landed (`part` of `parts`,
/// `n` rows): every part but the last has the same size, so the cut is exact whatever rule
/// cut it (this one, or an older build's fixed 8,192-row parts).
fn landed_cut(rows: usize, part: i32, parts: i32, n: i32) -> (usize, usize) {
    let (parts, n) = (parts.max(1) as usize, n.max(0) as usize);
    let size = if (part as usize) + 1 < parts {
        n
    } else if parts > 1 {
        rows.saturating_sub(n) / (parts - 1)
    } else {
        rows
    };
    (parts, size.max(1))
}

/// Fewest rows worth a COPY of their own: a smaller batch goes whole.
pub const MIN_PART_ROWS: usize = 4_096;
/// Most rows in one COPY (bounds the body held in memory per connection).
pub const MAX_PART_ROWS: usize = 65_536;

/// Parts a batch of `rows` is cut into with `connections` connections: one per connection
/// (each COPY is a transaction with a commit, so fewer, larger parts cost fewer WAL flushes;
/// measured in perf/RESULTS.md), more where a part would exceed [`MAX_PART_ROWS`], fewer
/// where one would be under [`MIN_PART_ROWS`]; at least one.
pub fn part_count(rows: usize, connections: usize) -> usize {
    connections
        .max(rows.div_ceil(MAX_PART_ROWS))
        .min(rows.div_ceil(MIN_PART_ROWS))
        .max(1)
}

enum PartError {
    Data(arrow_schema::ArrowError),
    Pg(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for PartError {
    fn from(e: tokio_postgres::Error) -> Self {
        PartError::Pg(e)
    }
}

/// Drops broken connections and opens new ones until the pool has `n`.
async fn ensure(pool: &mut Vec<Client>, url: &str, n: usize) -> Result<(), tokio_postgres::Error> {
    pool.retain(|c| !c.is_closed());
    while pool.len() < n {
        pool.push(connect(url).await?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(super::identifier("public").is_ok());
        assert!(super::identifier("tw_2").is_ok());
        for bad in ["", "2x", "a;drop", "a b", "\"q\""] {
            assert!(super::identifier(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod part_tests {
    use super::*;

    #[test]
    fn parts_are_one_per_connection_within_the_bounds() {
        assert_eq!(part_count(0, 2), 1);
        assert_eq!(part_count(100, 2), 1);
        assert_eq!(part_count(MIN_PART_ROWS, 2), 1);
        assert_eq!(part_count(MIN_PART_ROWS + 1, 2), 2);
        assert_eq!(part_count(16_384, 2), 2);
        assert_eq!(part_count(50_000, 2), 2);
        assert_eq!(part_count(50_000, 4), 4);
        assert_eq!(part_count(50_000, 1), 1);
        assert_eq!(part_count(200_000, 2), 4);
        // An earlier cut is recovered from any one part it landed, for this rule and for the
        // fixed 8,192-row parts of older builds.
        assert_eq!(landed_cut(50_000, 0, 2, 25_000), (2, 25_000));
        assert_eq!(landed_cut(50_000, 1, 2, 25_000), (2, 25_000));
        assert_eq!(landed_cut(50_000, 3, 7, 8_192), (7, 8_192));
        assert_eq!(landed_cut(50_000, 6, 7, 50_000 - 6 * 8_192), (7, 8_192));
        assert_eq!(landed_cut(300, 0, 1, 300), (1, 300));
        // Every row is in exactly one part, and no part is over the maximum.
        for (rows, conns) in [(1, 2), (4_097, 2), (50_001, 3), (300_000, 2), (7, 9)] {
            let parts = part_count(rows, conns);
            let size = rows.div_ceil(parts);
            assert!(size <= MAX_PART_ROWS);
            let covered: usize = (0..parts)
                .map(|p| size.min(rows - (p * size).min(rows)))
                .sum();
            assert_eq!(covered, rows, "{rows} rows, {conns} connections");
        }
    }
}
