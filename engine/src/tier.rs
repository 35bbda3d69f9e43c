//! Hot -> cold tiering of the ClickHouse tables (`tickwire tier`, `[tiering]` in `run`).
//!
//! Market data older than a cutoff moves from the hot ClickHouse database to one or more cold
//! targets (another ClickHouse server or database; a Parquet archive), window by window: one
//! window is one table x market x UTC day (one partition of the hot table holds one day).
//!
//! What moves is decided from the data on both sides on every run, never from memory of an
//! earlier run, so a run killed at any step and run again finishes the job with nothing lost
//! and nothing twice:
//! - The unit of copy is (batch, symbol): the rows of one sink batch (`_batch`) for one symbol.
//!   A batch is one kind and one UTC day, inserted as one part, so the hot tier holds all of a
//!   unit or none of it. A batch is eligible when all its rows are older than the cutoff (and,
//!   for a manual transfer, its first row is inside `--from`..`--to`): windows are cut on batch
//!   boundaries, never inside a batch.
//! - Each run first waits until no copy into the target table is still running (a killed
//!   run's last step goes on in the server), then counts the rows of every unit on both
//!   sides; units the target lacks are copied, in chunks of at most `chunk_rows` rows. A chunk
//!   goes into a staging table of the target's structure (`_tier_stage_<pid>`), is counted
//!   there, and joins the target by `ATTACH PARTITION ... FROM` (hard links, atomic a
//!   partition): so a chunk lands whole or not at all, also on 18.16, which takes a chunked
//!   body cut short by a kill as complete and inserts the part it got. A killed run's staging
//!   tables are dropped by the next. A unit the target holds partly is a contradiction: the
//!   window fails and is reported, and nothing of it is cleaned.
//! - ClickHouse to ClickHouse: the hot server's `SELECT ... FORMAT Native` is streamed as the
//!   body of the cold server's `INSERT ... FORMAT Native`, not decoded on the way.
//! - Parquet: one file per (kind, market, day), `<dir>/<kind>/market=<m>/date=<day>/archive.parquet`
//!   (the Parquet sink's layout, with large row groups and a `_batch` column), rewritten whole
//!   (old rows, then the new ones) as a dot-file and renamed into place.
//! - Verification, per window and target: row count and an order-independent checksum,
//!   `sum(cityHash64(every column as text))`, computed by the servers: by the hot and the cold
//!   ClickHouse over the window's eligible batches; for Parquet, the file is read back from
//!   disk, loaded chunk by chunk into a `Memory` table on the hot server and summed there by the
//!   same expression (the sum is additive, so chunks add up).
//! - Cleanup (`cleanup = true`), only for windows verified on every target: a day whose every
//!   hot row was verified loses its partition (`DROP PARTITION`); otherwise the verified rows
//!   are deleted by `ALTER TABLE ... DELETE` over exactly the verified batches (and the run
//!   waits for the mutation).
//! - The ledger `<hot db>.tier_windows` records each window's steps (copied, verified, failed,
//!   cleaned) with rows and checksum: the report of what happened, and `/v1/tiering`.

use crate::serve::readthrough::{ch_expr, to_batch, tsv_rows, TextRow};
use anyhow::{anyhow, bail, Context};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tickwire_codecs::arrow::schema;
use tickwire_codecs::record::{Kind, Market};
use tickwire_sinks::clickhouse::ddl::{
    create_table, recv_literal, recv_ns_expr, Dialect, BATCH_COLUMN,
};
use tickwire_sinks::clickhouse::native::{encode_ids, strings, BatchIds};
use tickwire_sinks::{date_string, table_name};

const DAY_NS: i64 = 86_400_000_000_000;

/// How long a window waits for a write into its cold table that is still running (see
/// `Server::wait_writes`).
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Name prefix of the per-run staging tables on a cold server (see `Tierer::to_clickhouse`).
const STAGE_PREFIX: &str = "_tier_stage_";
/// The ledger table in the hot database.
pub const LEDGER: &str = "tier_windows";
/// The archive file of a window in a Parquet target.
pub const ARCHIVE_FILE: &str = "archive.parquet";

/// A ClickHouse database over HTTP.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://host:port`.
    pub url: String,
    /// The database of the tables.
    pub database: String,
    /// User, if not the server's default.
    pub user: Option<String>,
    /// Password; never printed.
    pub password: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Endpoint {
    /// `clickhouse://[user[:password]@]host[:port][/database]` (HTTP port, 8123 if left out;
    /// database `tickwire` if left out); `http://` is taken as well.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let bad = || format!("{s:?}: a ClickHouse URL is clickhouse://host:port/database");
        let u = url::Url::parse(s).map_err(|_| bad())?;
        if !matches!(u.scheme(), "clickhouse" | "http") {
            return Err(bad());
        }
        let host = match u.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => return Err(format!("{s:?}: no host")),
        };
        let hostport = format!("{host}:{}", u.port().unwrap_or(8123));
        let db = u.path().trim_matches('/');
        let database = if db.is_empty() { "tickwire" } else { db };
        if !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "{s:?}: database {database:?}: letters, digits and _ only"
            ));
        }
        let decode = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = (!u.username().is_empty()).then(|| decode(u.username()));
        let password = u.password().map(decode);
        Ok(Endpoint {
            url: format!("http://{hostport}"),
            database: database.to_string(),
            user,
            password,
        })
    }

    /// The URL as given, without the password.
    pub fn label(&self) -> String {
        let host = self.url.trim_start_matches("http://");
        match &self.user {
            Some(u) => format!("clickhouse://{u}@{host}/{}", self.database),
            None => format!("clickhouse://{host}/{}", self.database),
        }
    }
}

/// Where tiered data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Another ClickHouse server or database.
    ClickHouse(Endpoint),
    /// A Parquet archive directory.
    Parquet(PathBuf),
}

impl Target {
    /// `clickhouse://...` or `parquet:DIR`.
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Some(dir) = s.strip_prefix("parquet:") {
            if dir.is_empty() {
                return Err("parquet: needs a directory (parquet:DIR)".into());
            }
            return Ok(Target::Parquet(PathBuf::from(dir)));
        }
        Endpoint::parse(s).map(Target::ClickHouse)
    }

    /// How the target is named in reports and the ledger.
    pub fn label(&self) -> String {
        match self {
            Target::ClickHouse(e) => e.label(),
            Target::Parquet(d) => format!("parquet:{}", d.display()),
        }
    }
}

/// What to move, from where to where.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The hot ClickHouse database.
    pub hot: Endpoint,
    /// The cold targets (at least one).
    pub targets: Vec<Target>,
    /// Batches whose rows are all older than `now - older_than_ns` are eligible.
    pub older_than_ns: i64,
    /// Remove verified windows from the hot tier.
    pub cleanup: bool,
    /// The kinds (tables) to move.
    pub kinds: Vec<Kind>,
    /// Only this market.
    pub market: Option<Market>,
    /// Only this symbol.
    pub symbol: Option<String>,
    /// Only batches whose first row was received at or after this time (ns).
    pub from_ns: Option<i64>,
    /// Only batches whose first row was received before this time (ns).
    pub to_ns: Option<i64>,
    /// Rows per INSERT (and per Parquet verification chunk).
    pub chunk_rows: u64,
    /// Rows per row group of the Parquet archive files.
    pub row_group_rows: usize,
    /// LZ4-compress what goes between tickwire and the servers (off: raw Native, less CPU on
    /// a loopback or a fast network).
    pub lz4: bool,
}

impl Plan {
    /// Every kind, no filters, chunks of 500 000 rows, row groups of 1 Mi rows.
    pub fn new(hot: Endpoint, targets: Vec<Target>, older_than_ns: i64) -> Plan {
        Plan {
            hot,
            targets,
            older_than_ns,
            cleanup: false,
            kinds: Kind::ALL.to_vec(),
            market: None,
            symbol: None,
            from_ns: None,
            to_ns: None,
            chunk_rows: 500_000,
            row_group_rows: 1 << 20,
            lz4: true,
        }
    }
}

/// How far a run is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    /// Windows done (verified, failed or nothing to do).
    pub windows_done: u64,
    /// Windows found.
    pub windows_total: u64,
    /// Hot rows of the windows done.
    pub rows_done: u64,
    /// Hot rows older than the cutoff.
    pub rows_total: u64,
}

/// Windows by outcome (a window is one table x market x UTC day).
#[derive(Debug, Default, Clone, Serialize)]
pub struct WindowCounts {
    /// Windows with eligible rows.
    pub total: u64,
    /// Windows whose rows are in every target (copied by this run or found there).
    pub copied: u64,
    /// Windows whose count and checksum agree on every target.
    pub verified: u64,
    /// Windows that could not be copied or whose check failed (left in the hot tier).
    pub failed: u64,
    /// Verified windows removed from the hot tier.
    pub cleaned: u64,
}

/// A window that failed, and why.
#[derive(Debug, Clone, Serialize)]
pub struct WindowFailure {
    /// The table.
    pub table: String,
    /// The market.
    pub market: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The target it failed on.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// What a run did: printed as the last stdout line of `tickwire tier`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// The hot database.
    pub hot: String,
    /// The targets.
    pub targets: Vec<String>,
    /// Batches older than this (ns since the epoch) were eligible.
    pub cutoff_ns: i64,
    /// Windows by outcome.
    pub windows: WindowCounts,
    /// Rows verified on every target, per table.
    pub rows: BTreeMap<String, u64>,
    /// Rows this run sent (summed over targets).
    pub rows_copied: u64,
    /// Rows removed from the hot tier.
    pub rows_cleaned: u64,
    /// The failed windows.
    pub failures: Vec<WindowFailure>,
    /// Ledger rows that could not be written (said on stderr; the data, not the ledger,
    /// decides what the next run does).
    pub ledger_errors: u64,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Of which: copying (reads from the hot tier, inserts, archive files written).
    pub copy_s: f64,
    /// Of which: counting and summing on both sides (units, checksums, archive read back).
    pub check_s: f64,
    /// Rows copied per second of wall time.
    pub rows_per_s: f64,
}

/// One ClickHouse server and database.
struct Server {
    client: clickhouse::Client,
    db: String,
    dialect: Dialect,
    label: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

fn e2a(e: clickhouse::error::Error) -> anyhow::Error {
    anyhow!("{e}")
}

impl Server {
    async fn connect(ep: &Endpoint, lz4: bool) -> anyhow::Result<Server> {
        let client = tickwire_sinks::clickhouse::http_client(
            &ep.url,
            ep.user.as_deref(),
            ep.password.as_deref(),
        )
        .with_compression(if lz4 {
            clickhouse::Compression::Lz4
        } else {
            clickhouse::Compression::None
        })
        // Batch lists go into the statements.
        .with_setting("max_query_size", "268435456");
        let version: String = client
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(e2a)
            .with_context(|| ep.label())?;
        Ok(Server {
            client,
            db: ep.database.clone(),
            dialect: Dialect::for_version(&version),
            label: format!("{} ({version})", ep.label()),
        })
    }

    async fn tsv(&self, sql: &str) -> anyhow::Result<Vec<TextRow>> {
        tsv_rows(&self.client, sql)
            .await
            .map_err(e2a)
            .with_context(|| format!("{}: {}", self.label, short(sql)))
    }

    async fn exec(&self, sql: &str) -> anyhow::Result<()> {
        self.client
            .query(sql)
            .execute()
            .await
            .map_err(e2a)
            .with_context(|| format!("{}: {}", self.label, short(sql)))
    }

    async fn count(&self, sql: &str) -> anyhow::Result<u64> {
        let rows = self.tsv(sql).await?;
        cell_u64(rows.first(), 0)
    }

    /// Waits until no copy into `table` runs on this server: a run killed after sending a
    /// chunk's `ATTACH PARTITION ... FROM` (or a plain INSERT of another writer) leaves it
    /// running on the server, its rows not yet counted; counting before it ends would copy
    /// them a second time.
    async fn wait_writes(&self, table: &str) -> anyhow::Result<()> {
        let sql = format!(
            "SELECT count() FROM system.processes WHERE startsWith(query, 'INSERT INTO {table} ') OR startsWith(query, 'ALTER TABLE {table} ATTACH ')"
        );
        let deadline = std::time::Instant::now() + WRITE_WAIT;
        while self.count(&sql).await? > 0 {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "{}: a write into {table} still runs after {} s (an earlier run's, or another writer's)",
                    self.label,
                    WRITE_WAIT.as_secs()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// `CREATE TABLE stage` of `table`'s structure, partition and sorting key, which `ATTACH
    /// PARTITION ... FROM` needs: the table's own engine, or for a `Replicated*` table the
    /// plain MergeTree one (a staging table is not replicated; the attach is).
    async fn stage_ddl(&self, stage: &str, table: &str) -> anyhow::Result<String> {
        let (db, name) = table.split_once('.').unwrap_or(("", table));
        let rows = self
            .tsv(&format!(
                "SELECT engine, partition_key, sorting_key, primary_key FROM system.tables WHERE database = '{db}' AND name = '{name}'"
            ))
            .await?;
        let cell = |i: usize| {
            rows.first()
                .and_then(|r| r.get(i).cloned().flatten())
                .unwrap_or_default()
        };
        let engine = cell(0);
        let Some(plain) = engine.strip_prefix("Replicated") else {
            return Ok(format!("CREATE TABLE {stage} AS {table}"));
        };
        if plain != "MergeTree" {
            bail!("{}: {table} is {engine}: tiering copies into MergeTree or ReplicatedMergeTree tables", self.label);
        }
        let (pk, sk, prk) = (cell(1), cell(2), cell(3));
        let mut ddl = format!("CREATE TABLE {stage} AS {table} ENGINE = MergeTree");
        if !pk.is_empty() {
            ddl.push_str(&format!(" PARTITION BY ({pk})"));
        }
        ddl.push_str(&format!(" ORDER BY ({sk})"));
        if !prk.is_empty() && prk != sk {
            ddl.push_str(&format!(" PRIMARY KEY ({prk})"));
        }
        Ok(ddl)
    }

    /// Drops the staging tables (`_tier_stage_*`) a killed run left in this server's database.
    async fn drop_stages(&self) -> anyhow::Result<()> {
        for row in self
            .tsv(&format!(
                "SELECT name FROM system.tables WHERE database = '{}' AND startsWith(name, '{STAGE_PREFIX}')",
                self.db
            ))
            .await?
        {
            if let Some(Some(name)) = row.first() {
                self.exec(&format!("DROP TABLE IF EXISTS {}.{name}", self.db))
                    .await?;
            }
        }
        Ok(())
    }

    /// `recv_time` as ns since the epoch.
    fn recv_ns(&self) -> &'static str {
        recv_ns_expr(self.dialect)
    }

    /// A literal comparable with `recv_time`.
    fn at(&self, ns: i64) -> String {
        recv_literal(self.dialect, ns)
    }

    fn table(&self, kind: Kind) -> String {
        format!("{}.{}", self.db, table_name(kind))
    }

    /// The rows of a window (one market, one day; one symbol if given).
    fn window_cond(&self, w: &WindowKey, symbol: Option<&str>) -> String {
        let mut c = format!(
            "market = '{}' AND recv_time >= {} AND recv_time < {}",
            w.market,
            self.at(w.day * DAY_NS),
            self.at((w.day + 1) * DAY_NS)
        );
        if let Some(s) = symbol {
            c.push_str(&format!(" AND symbol = '{s}'"));
        }
        c
    }

    /// Rows per (batch, symbol) of the window, with first and last receive times.
    async fn units(&self, table: &str, cond: &str) -> anyhow::Result<HashMap<Unit, UnitStat>> {
        let sql = format!(
            "SELECT {BATCH_COLUMN}, symbol, count(), min({r}), max({r}) FROM {table} WHERE {cond} GROUP BY {BATCH_COLUMN}, symbol",
            r = self.recv_ns()
        );
        let mut out = HashMap::new();
        for row in self.tsv(&sql).await? {
            let batch = cell_u64(Some(&row), 0)?;
            let symbol = row.get(1).cloned().flatten().unwrap_or_default();
            out.insert(
                (batch, symbol),
                UnitStat {
                    rows: cell_u64(Some(&row), 2)?,
                    min: cell_i64(&row, 3)?,
                    max: cell_i64(&row, 4)?,
                },
            );
        }
        Ok(out)
    }

    /// `count()` and the order-independent checksum of the rows of `table` under `cond`.
    async fn digest(&self, kind: Kind, table: &str, cond: &str) -> anyhow::Result<Digest> {
        let sql = format!(
            "SELECT count(), sum(cityHash64({})) FROM {table} WHERE {cond}",
            hash_args(kind, self.dialect)
        );
        let rows = self.tsv(&sql).await?;
        Ok(Digest {
            rows: cell_u64(rows.first(), 0)?,
            hash: cell_u64(rows.first(), 1)?,
        })
    }
}

/// The arguments of the row checksum: every column of the kind's schema, integers and texts
/// as they are, decimals and levels as their exact text (18.16's `cityHash64` takes no
/// decimals, and text is exact where a float is not), a NULL told apart from a value.
fn hash_args(kind: Kind, d: Dialect) -> String {
    let modern = d == Dialect::Modern;
    schema(kind)
        .fields()
        .iter()
        .map(|f| {
            let c = format!("`{}`", f.name());
            let e = match f.data_type() {
                DataType::Dictionary(_, _) | DataType::Utf8 if modern => format!("toString({c})"),
                DataType::Dictionary(_, _) | DataType::Utf8 | DataType::Int64 => c.clone(),
                DataType::Timestamp(TimeUnit::Microsecond, _) if modern => {
                    format!("toUnixTimestamp64Micro({c})")
                }
                DataType::Timestamp(_, _) if modern => format!("toUnixTimestamp64Nano({c})"),
                DataType::Timestamp(_, _) => c.clone(),
                DataType::Boolean if modern => format!("toUInt8({c})"),
                DataType::Boolean => c.clone(),
                _ => ch_expr(f, d),
            };
            if f.is_nullable() {
                format!("isNull({c}), assumeNotNull({e})")
            } else {
                e
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(sql: &str) -> String {
    let s: String = sql.chars().take(160).collect();
    if s.len() < sql.len() {
        format!("{s}...")
    } else {
        s
    }
}

fn cell_u64(row: Option<&TextRow>, i: usize) -> anyhow::Result<u64> {
    let t = row
        .and_then(|r| r.get(i).cloned().flatten())
        .ok_or_else(|| anyhow!("no value in column {i}"))?;
    t.parse().with_context(|| format!("{t:?} is not a count"))
}

fn cell_i64(row: &TextRow, i: usize) -> anyhow::Result<i64> {
    let t = row
        .get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| anyhow!("no value in column {i}"))?;
    t.parse().with_context(|| format!("{t:?} is not a number"))
}

/// The rows of one batch for one symbol.
type Unit = (u64, String);

#[derive(Debug, Clone, Copy)]
struct UnitStat {
    rows: u64,
    min: i64,
    max: i64,
}

/// A row count and the sum of the rows' hashes (wrapping): equal on both sides of a good copy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Digest {
    rows: u64,
    hash: u64,
}

impl Digest {
    fn add(&mut self, o: Digest) {
        self.rows += o.rows;
        self.hash = self.hash.wrapping_add(o.hash);
    }
}

/// One table x market x UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct WindowKey {
    day: i64,
    kind_index: usize,
    market: String,
}

/// SQL list of batch ids.
fn id_list(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "0".into(); // no batch has id 0 in a list that must not match anything
    }
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A condition selecting `units` (whole batches where all of a batch's units are wanted).
fn units_cond(units: &[Unit], all: &HashMap<u64, usize>) -> String {
    let mut per_batch: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (b, s) in units {
        per_batch.entry(*b).or_default().push(s);
    }
    let mut whole = Vec::new();
    let mut parts = Vec::new();
    for (b, syms) in per_batch {
        if all.get(&b) == Some(&syms.len()) {
            whole.push(b);
        } else {
            for s in syms {
                parts.push(format!("({b}, '{s}')"));
            }
        }
    }
    let mut c = Vec::new();
    if !whole.is_empty() {
        c.push(format!("{BATCH_COLUMN} IN ({})", id_list(&whole)));
    }
    if !parts.is_empty() {
        c.push(format!(
            "({BATCH_COLUMN}, symbol) IN ({})",
            parts.join(", ")
        ));
    }
    if c.is_empty() {
        "0".into()
    } else {
        format!("({})", c.join(" OR "))
    }
}

/// The hot side of one window: its eligible units and their checksum.
struct HotWindow {
    key: WindowKey,
    kind: Kind,
    /// Eligible batches.
    batches: Vec<u64>,
    /// Units of the eligible batches.
    units: HashMap<Unit, UnitStat>,
    /// Units per eligible batch.
    units_per_batch: HashMap<u64, usize>,
    digest: Digest,
}

/// A connected target.
#[derive(Debug)]
enum Conn {
    ClickHouse(Box<Server>),
    Parquet(PathBuf),
}

/// The outcome of one window on one target.
enum Outcome {
    Verified { copied: u64 },
    Failed { copied: bool, reason: String },
}

/// A run of the tiering.
#[derive(Debug)]
pub struct Tierer {
    plan: Plan,
    hot: Server,
    targets: Vec<(String, Conn)>,
    mirror: String,
    /// Time spent copying (ns), summed over targets.
    copy_ns: std::sync::atomic::AtomicU64,
    /// Ledger rows that could not be written.
    ledger_errors: std::sync::atomic::AtomicU64,
}

impl Tierer {
    /// Connects to the hot database and every target; creates the cold tables, the ledger,
    /// and the archive directories.
    pub async fn connect(plan: Plan) -> anyhow::Result<Tierer> {
        if plan.targets.is_empty() {
            bail!("no target: --to clickhouse://host:port/database or --to parquet:DIR");
        }
        if let Some(s) = &plan.symbol {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                bail!("symbol {s:?}: letters and digits only");
            }
        }
        let hot = Server::connect(&plan.hot, plan.lz4).await.context("hot")?;
        hot.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {}.{LEDGER} (at DateTime, seq UInt64, target String, kind String, market String, day Date, symbol String, state String, rows UInt64, checksum UInt64, message String) ENGINE = MergeTree ORDER BY (target, kind, market, day, seq)",
            hot.db
        ))
        .await?;
        let mirror = format!("{}._tier_mirror_{}", hot.db, std::process::id());
        // Mirrors a killed run left behind.
        for row in hot
            .tsv(&format!(
                "SELECT name FROM system.tables WHERE database = '{}' AND startsWith(name, '_tier_mirror_')",
                hot.db
            ))
            .await?
        {
            if let Some(Some(name)) = row.first() {
                hot.exec(&format!("DROP TABLE IF EXISTS {}.{name}", hot.db))
                    .await?;
            }
        }
        let mut targets = Vec::new();
        for t in &plan.targets {
            let conn = match t {
                Target::ClickHouse(ep) => {
                    if ep.url == plan.hot.url && ep.database == plan.hot.database {
                        bail!("target {} is the hot database", ep.label());
                    }
                    let s = Server::connect(ep, plan.lz4)
                        .await
                        .with_context(|| format!("target {}", ep.label()))?;
                    if s.dialect != hot.dialect {
                        bail!(
                            "target {}: hot {} and target differ in table dialect (18.16 vs modern); tiering copies between servers of one dialect",
                            s.label,
                            hot.label
                        );
                    }
                    s.exec(&format!("CREATE DATABASE IF NOT EXISTS {}", s.db))
                        .await?;
                    for k in &plan.kinds {
                        s.exec(&create_table(*k, s.dialect, &s.db)).await?;
                    }
                    s.drop_stages().await?;
                    Conn::ClickHouse(Box::new(s))
                }
                Target::Parquet(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("target {}", dir.display()))?;
                    Conn::Parquet(dir.clone())
                }
            };
            targets.push((t.label(), conn));
        }
        Ok(Tierer {
            plan,
            hot,
            targets,
            mirror,
            copy_ns: Default::default(),
            ledger_errors: Default::default(),
        })
    }

    /// The hot server's label (URL and version).
    pub fn hot_label(&self) -> &str {
        &self.hot.label
    }

    /// One pass over every window older than `now_ns - older_than`.
    pub async fn run(
        &self,
        now_ns: i64,
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> anyhow::Result<Report> {
        let started = std::time::Instant::now();
        let cutoff = now_ns.saturating_sub(self.plan.older_than_ns);
        let mut report = Report {
            hot: self.plan.hot.label(),
            targets: self.targets.iter().map(|(l, _)| l.clone()).collect(),
            cutoff_ns: cutoff,
            ..Report::default()
        };
        let windows = self.windows(cutoff).await?;
        let mut p = Progress {
            windows_total: windows.len() as u64,
            rows_total: windows.iter().map(|(_, n)| n).sum(),
            ..Progress::default()
        };
        progress(&p);
        // Windows grouped by (day, kind): a day's partition can go only when all its markets
        // are verified.
        let mut i = 0;
        while i < windows.len() {
            let (day, ki) = (windows[i].0.day, windows[i].0.kind_index);
            let mut group = Vec::new();
            while i < windows.len() && windows[i].0.day == day && windows[i].0.kind_index == ki {
                group.push(windows[i].clone());
                i += 1;
            }
            let mut verified: Vec<HotWindow> = Vec::new();
            let mut all_verified = true;
            for (key, rows) in group {
                let kind = Kind::ALL[key.kind_index];
                match self.window(key.clone(), kind, cutoff, &mut report).await {
                    Ok(Some(hw)) => verified.push(hw),
                    Ok(None) => all_verified = false,
                    Err(e) => {
                        all_verified = false;
                        report.windows.total += 1;
                        report.windows.failed += 1;
                        report.failures.push(WindowFailure {
                            table: table_name(kind).into(),
                            market: key.market.clone(),
                            day: date_string(key.day as i32),
                            target: "hot".into(),
                            reason: crate::cmd::error_line(&e),
                        });
                    }
                }
                p.windows_done += 1;
                p.rows_done += rows;
                progress(&p);
            }
            if self.plan.cleanup && !verified.is_empty() {
                let kind = Kind::ALL[ki];
                if let Err(e) = self
                    .clean(kind, day, &verified, all_verified, &mut report)
                    .await
                {
                    report.failures.push(WindowFailure {
                        table: table_name(kind).into(),
                        market: "*".into(),
                        day: date_string(day as i32),
                        target: "hot".into(),
                        reason: format!("cleanup: {}", crate::cmd::error_line(&e)),
                    });
                }
            }
        }
        report.ledger_errors = self
            .ledger_errors
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        report.elapsed_s = started.elapsed().as_secs_f64();
        report.rows_per_s = report.rows_copied as f64 / report.elapsed_s.max(1e-9);
        Ok(report)
    }

    /// Windows with rows older than the cutoff, by day, kind and market, with their row counts.
    async fn windows(&self, cutoff: i64) -> anyhow::Result<Vec<(WindowKey, u64)>> {
        let present: HashSet<String> = self
            .hot
            .tsv(&format!(
                "SELECT name FROM system.tables WHERE database = '{}'",
                self.hot.db
            ))
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect();
        let mut out = Vec::new();
        for &kind in &self.plan.kinds {
            if !present.contains(table_name(kind)) {
                continue;
            }
            let mut cond = format!("recv_time < {}", self.hot.at(cutoff));
            if let Some(f) = self.plan.from_ns {
                cond.push_str(&format!(" AND recv_time >= {}", self.hot.at(f)));
            }
            if let Some(m) = self.plan.market {
                cond.push_str(&format!(" AND market = '{}'", m.as_str()));
            }
            if let Some(s) = &self.plan.symbol {
                cond.push_str(&format!(" AND symbol = '{s}'"));
            }
            let sql = format!(
                "SELECT market, intDiv({}, {DAY_NS}) AS day, count() FROM {} WHERE {cond} GROUP BY market, day ORDER BY day, market",
                self.hot.recv_ns(),
                self.hot.table(kind)
            );
            for row in self.hot.tsv(&sql).await? {
                let market = row.first().cloned().flatten().unwrap_or_default();
                out.push((
                    WindowKey {
                        day: cell_i64(&row, 1)?,
                        kind_index: kind.index(),
                        market,
                    },
                    cell_u64(Some(&row), 2)?,
                ));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Copies and verifies one window on every target. `Some`: verified everywhere.
    async fn window(
        &self,
        key: WindowKey,
        kind: Kind,
        cutoff: i64,
        report: &mut Report,
    ) -> anyhow::Result<Option<HotWindow>> {
        let t_hot = std::time::Instant::now();
        let sym = self.plan.symbol.as_deref();
        let hot_table = self.hot.table(kind);
        let cond = self.hot.window_cond(&key, sym);
        let all = self.hot.units(&hot_table, &cond).await?;
        // A batch is eligible when all its rows are older than the cutoff and its first row
        // is in the requested range.
        let mut span: HashMap<u64, (i64, i64)> = HashMap::new();
        for ((b, _), st) in &all {
            let e = span.entry(*b).or_insert((st.min, st.max));
            e.0 = e.0.min(st.min);
            e.1 = e.1.max(st.max);
        }
        let mut batches: Vec<u64> = span
            .iter()
            .filter(|(_, (min, max))| {
                *max < cutoff
                    && self.plan.from_ns.is_none_or(|f| *min >= f)
                    && self.plan.to_ns.is_none_or(|t| *min < t)
            })
            .map(|(b, _)| *b)
            .collect();
        if batches.is_empty() {
            return Ok(None);
        }
        batches.sort_unstable();
        let eligible: HashSet<u64> = batches.iter().copied().collect();
        let units: HashMap<Unit, UnitStat> = all
            .into_iter()
            .filter(|((b, _), _)| eligible.contains(b))
            .collect();
        let mut units_per_batch = HashMap::new();
        for (b, _) in units.keys() {
            *units_per_batch.entry(*b).or_insert(0usize) += 1;
        }
        let digest = self
            .hot
            .digest(
                kind,
                &hot_table,
                &format!("{cond} AND {BATCH_COLUMN} IN ({})", id_list(&batches)),
            )
            .await?;
        report.check_s += t_hot.elapsed().as_secs_f64();
        let hw = HotWindow {
            key,
            kind,
            batches,
            units,
            units_per_batch,
            digest,
        };
        report.windows.total += 1;
        let (mut all_copied, mut all_verified) = (true, true);
        for (label, conn) in &self.targets {
            let t0 = std::time::Instant::now();
            let copy_before = self.copy_ns.load(std::sync::atomic::Ordering::Relaxed);
            let outcome = match conn {
                Conn::ClickHouse(cold) => self.to_clickhouse(&hw, cold).await,
                Conn::Parquet(dir) => self.to_parquet(&hw, dir).await,
            };
            let copy = (self.copy_ns.load(std::sync::atomic::Ordering::Relaxed) - copy_before)
                as f64
                / 1e9;
            report.copy_s += copy;
            report.check_s += t0.elapsed().as_secs_f64() - copy;
            let outcome = outcome.unwrap_or_else(|e| Outcome::Failed {
                copied: false,
                reason: crate::cmd::error_line(&e),
            });
            match outcome {
                Outcome::Verified { copied } => {
                    report.rows_copied += copied;
                    self.ledger(&hw, label, "copied", copied, "").await;
                    self.ledger(&hw, label, "verified", hw.digest.rows, "")
                        .await;
                }
                Outcome::Failed { copied, reason } => {
                    all_verified = false;
                    all_copied &= copied;
                    self.ledger(&hw, label, "failed", hw.digest.rows, &reason)
                        .await;
                    report.failures.push(WindowFailure {
                        table: table_name(kind).into(),
                        market: hw.key.market.clone(),
                        day: date_string(hw.key.day as i32),
                        target: label.clone(),
                        reason,
                    });
                }
            }
        }
        if all_copied {
            report.windows.copied += 1;
        }
        if !all_verified {
            report.windows.failed += 1;
            return Ok(None);
        }
        report.windows.verified += 1;
        *report.rows.entry(table_name(kind).into()).or_default() += hw.digest.rows;
        Ok(Some(hw))
    }

    /// Compares the target's units with the hot ones: the units to copy, or why not.
    fn missing(
        hw: &HotWindow,
        have: &HashMap<Unit, u64>,
    ) -> Result<(Vec<Unit>, Vec<Unit>), String> {
        let mut missing = Vec::new();
        for (u, st) in &hw.units {
            match have.get(u).copied().unwrap_or(0) {
                0 => missing.push(u.clone()),
                n if n == st.rows => {}
                n => {
                    return Err(format!(
                        "batch {} symbol {}: {} rows in the hot tier, {n} in the target",
                        u.0, u.1, st.rows
                    ))
                }
            }
        }
        // Units of these batches the target has and the hot tier no longer has (cleaned by an
        // earlier transfer of one symbol): left out of the checksum.
        let extra = have
            .keys()
            .filter(|u| !hw.units.contains_key(*u))
            .cloned()
            .collect();
        missing.sort();
        Ok((missing, extra))
    }

    /// Chunks of units of at most `chunk_rows` rows (a unit is never split).
    fn chunks(&self, hw: &HotWindow, units: &[Unit]) -> Vec<Vec<Unit>> {
        let mut out: Vec<Vec<Unit>> = Vec::new();
        let mut rows = 0;
        for u in units {
            let n = hw.units.get(u).map_or(0, |s| s.rows);
            if out.is_empty() || rows + n > self.plan.chunk_rows {
                out.push(Vec::new());
                rows = 0;
            }
            rows += n;
            if let Some(c) = out.last_mut() {
                c.push(u.clone());
            }
        }
        out
    }

    async fn to_clickhouse(&self, hw: &HotWindow, cold: &Server) -> anyhow::Result<Outcome> {
        let sym = self.plan.symbol.as_deref();
        let cold_table = cold.table(hw.kind);
        let hot_table = self.hot.table(hw.kind);
        let in_batches = format!("{BATCH_COLUMN} IN ({})", id_list(&hw.batches));
        let cold_cond = format!("{} AND {in_batches}", cold.window_cond(&hw.key, sym));
        cold.wait_writes(&cold_table).await?;
        let have: HashMap<Unit, u64> = cold
            .units(&cold_table, &cold_cond)
            .await?
            .into_iter()
            .map(|(u, s)| (u, s.rows))
            .collect();
        let (missing, extra) = match Self::missing(hw, &have) {
            Ok(x) => x,
            Err(reason) => {
                return Ok(Outcome::Failed {
                    copied: false,
                    reason,
                })
            }
        };
        let mut copied = 0;
        let hot_cond = self.hot.window_cond(&hw.key, sym);
        let t_copy = std::time::Instant::now();
        // Each chunk goes into a staging table of the same structure first, is counted there,
        // and only then joins the cold table by `ATTACH PARTITION ... FROM` (hard links, one
        // atomic step a partition). 18.16 takes a chunked body cut short by a kill as complete
        // and inserts the rows it got, so a chunk streamed straight into the cold table could
        // land in part; in the staging table such a prefix is counted and thrown away.
        let stage = format!("{}.{STAGE_PREFIX}{}", cold.db, std::process::id());
        if !missing.is_empty() {
            cold.exec(&format!("DROP TABLE IF EXISTS {stage}")).await?;
            cold.exec(&cold.stage_ddl(&stage, &cold_table).await?)
                .await?;
        }
        for chunk in self.chunks(hw, &missing) {
            let sql = format!(
                "SELECT * FROM {hot_table} WHERE {hot_cond} AND {}",
                units_cond(&chunk, &hw.units_per_batch)
            );
            let mut cursor = self
                .hot
                .client
                .query(&sql)
                .fetch_bytes("Native")
                .map_err(e2a)?;
            let mut ins = cold
                .client
                .insert_formatted_with(format!("INSERT INTO {stage} FORMAT Native"));
            while let Some(bytes) = cursor
                .next()
                .await
                .map_err(e2a)
                .with_context(|| format!("read {hot_table}"))?
            {
                ins.send(bytes)
                    .await
                    .map_err(e2a)
                    .with_context(|| format!("insert into {}", cold.label))?;
            }
            ins.end()
                .await
                .map_err(e2a)
                .with_context(|| format!("insert into {}", cold.label))?;
            let rows = chunk
                .iter()
                .map(|u| hw.units.get(u).map_or(0, |s| s.rows))
                .sum::<u64>();
            let staged = cold.count(&format!("SELECT count() FROM {stage}")).await?;
            if staged != rows {
                cold.exec(&format!("DROP TABLE IF EXISTS {stage}")).await?;
                bail!("{}: staged {staged} rows of a chunk of {rows}", cold.label);
            }
            let (db, name) = stage.split_once('.').unwrap_or_default();
            for row in cold
                .tsv(&format!(
                    "SELECT DISTINCT partition_id FROM system.parts WHERE database = '{db}' AND table = '{name}' AND active"
                ))
                .await?
            {
                if let Some(Some(id)) = row.first() {
                    cold.exec(&format!(
                        "ALTER TABLE {cold_table} ATTACH PARTITION ID '{id}' FROM {stage}"
                    ))
                    .await?;
                }
            }
            cold.exec(&format!("TRUNCATE TABLE {stage}")).await?;
            copied += rows;
        }
        if !missing.is_empty() {
            cold.exec(&format!("DROP TABLE IF EXISTS {stage}")).await?;
        }
        self.copy_ns.fetch_add(
            t_copy.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut cond = cold_cond;
        if !extra.is_empty() {
            cond.push_str(&format!(" AND NOT {}", units_cond(&extra, &HashMap::new())));
        }
        let got = cold.digest(hw.kind, &cold_table, &cond).await?;
        Ok(check(hw, got, copied))
    }

    async fn to_parquet(&self, hw: &HotWindow, dir: &Path) -> anyhow::Result<Outcome> {
        let part = dir
            .join(hw.kind.as_str())
            .join(format!("market={}", hw.key.market))
            .join(format!("date={}", date_string(hw.key.day as i32)));
        let path = part.join(ARCHIVE_FILE);
        let sym = self.plan.symbol.as_deref();
        let eligible: HashSet<u64> = hw.batches.iter().copied().collect();
        // What the archive holds now.
        let mut have: HashMap<Unit, u64> = HashMap::new();
        if path.exists() {
            for b in read_archive(&path)? {
                let b = b?;
                let (ids, syms) = archive_keys(&b)?;
                for (id, s) in ids.values().iter().zip(syms) {
                    let s = s.unwrap_or_default();
                    if eligible.contains(id) && sym.is_none_or(|x| x == s) {
                        *have.entry((*id, s.to_string())).or_default() += 1;
                    }
                }
            }
        }
        let (missing, extra) = match Self::missing(hw, &have) {
            Ok(x) => x,
            Err(reason) => {
                return Ok(Outcome::Failed {
                    copied: false,
                    reason,
                })
            }
        };
        let mut copied = 0;
        let t_copy = std::time::Instant::now();
        if !missing.is_empty() {
            std::fs::create_dir_all(&part).with_context(|| part.display().to_string())?;
            let tmp = part.join(format!(".{ARCHIVE_FILE}.tmp"));
            let file_schema = archive_schema(hw.kind);
            // Archives are written once and kept: zstd 3 and 1 MiB pages (the parquet crate's).
            let props = tickwire_sinks::parquet::writer_properties(
                &file_schema,
                3,
                self.plan.row_group_rows,
                1 << 20,
            )?;
            let file = std::fs::File::create(&tmp).with_context(|| tmp.display().to_string())?;
            let mut w = parquet::arrow::ArrowWriter::try_new(file, file_schema, Some(props))?;
            if path.exists() {
                for b in read_archive(&path)? {
                    w.write(&b?)?;
                }
            }
            let hot_cond = self.hot.window_cond(&hw.key, sym);
            let cols: Vec<String> = schema(hw.kind)
                .fields()
                .iter()
                .map(|f| ch_expr(f, self.hot.dialect))
                .collect();
            for chunk in self.chunks(hw, &missing) {
                let sql = format!(
                    "SELECT {}, toString({BATCH_COLUMN}) FROM {} WHERE {hot_cond} AND {} ORDER BY symbol, recv_time",
                    cols.join(", "),
                    self.hot.table(hw.kind),
                    units_cond(&chunk, &hw.units_per_batch)
                );
                let rows = self.hot.tsv(&sql).await?;
                let batch = to_batch(hw.kind, &rows, false).map_err(|e| anyhow!(e))?;
                let ncols = schema(hw.kind).fields().len();
                let ids: Vec<u64> = rows
                    .iter()
                    .map(|r| cell_u64(Some(r), ncols))
                    .collect::<anyhow::Result<_>>()?;
                w.write(&to_archive(&batch, ids)?)?;
                copied += rows.len() as u64;
            }
            let f = w.into_inner()?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &path).with_context(|| path.display().to_string())?;
            if let Ok(d) = std::fs::File::open(&part) {
                let _ = d.sync_all();
            }
        }
        self.copy_ns.fetch_add(
            t_copy.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        // Read the file back from disk and have the hot server sum it, chunk by chunk.
        let extra: HashSet<Unit> = extra.into_iter().collect();
        let got = self.archive_digest(hw, &path, &eligible, &extra).await?;
        Ok(check(hw, got, copied))
    }

    /// The checksum of the archive rows of the eligible batches (without `extra`), computed by
    /// the hot server over a `Memory` copy of them.
    async fn archive_digest(
        &self,
        hw: &HotWindow,
        path: &Path,
        eligible: &HashSet<u64>,
        extra: &HashSet<Unit>,
    ) -> anyhow::Result<Digest> {
        let sym = self.plan.symbol.as_deref();
        let mut total = Digest::default();
        if !path.exists() {
            return Ok(total);
        }
        self.hot
            .exec(&format!("DROP TABLE IF EXISTS {}", self.mirror))
            .await?;
        self.hot
            .exec(&format!(
                "CREATE TABLE {} AS {} ENGINE = Memory",
                self.mirror,
                self.hot.table(hw.kind)
            ))
            .await?;
        let mut loaded = 0u64;
        let r: anyhow::Result<()> = async {
            for b in read_archive(path)? {
                let b = b?;
                let (ids, syms) = archive_keys(&b)?;
                let keep: BooleanArray = (0..b.num_rows())
                    .map(|i| {
                        let s = syms[i].unwrap_or_default();
                        let id = ids.value(i);
                        Some(
                            eligible.contains(&id)
                                && sym.is_none_or(|x| x == s)
                                && !extra.contains(&(id, s.to_string())),
                        )
                    })
                    .collect();
                let b = arrow_select::filter::filter_record_batch(&b, &keep)?;
                if b.num_rows() == 0 {
                    continue;
                }
                let (full, ids) = from_archive(hw.kind, &b, &hw.key.market)?;
                let body = encode_ids(&full, self.hot.dialect, BatchIds::PerRow(&ids))?;
                let mut ins = self
                    .hot
                    .client
                    .insert_formatted_with(format!("INSERT INTO {} FORMAT Native", self.mirror));
                ins.send(bytes::Bytes::from(body)).await.map_err(e2a)?;
                ins.end().await.map_err(e2a)?;
                loaded += b.num_rows() as u64;
                if loaded >= self.plan.chunk_rows {
                    total.add(self.hot.digest(hw.kind, &self.mirror, "1").await?);
                    self.hot
                        .exec(&format!("TRUNCATE TABLE {}", self.mirror))
                        .await?;
                    loaded = 0;
                }
            }
            if loaded > 0 {
                total.add(self.hot.digest(hw.kind, &self.mirror, "1").await?);
            }
            Ok(())
        }
        .await;
        let dropped = self
            .hot
            .exec(&format!("DROP TABLE IF EXISTS {}", self.mirror))
            .await;
        r?;
        dropped?;
        Ok(total)
    }

    /// Removes the verified windows of one (kind, day) from the hot tier.
    async fn clean(
        &self,
        kind: Kind,
        day: i64,
        verified: &[HotWindow],
        all_verified: bool,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let table = self.hot.table(kind);
        let verified_rows: u64 = verified.iter().map(|w| w.digest.rows).sum();
        let whole_day = all_verified && self.plan.symbol.is_none() && {
            let n = self
                .hot
                .count(&format!(
                    "SELECT count() FROM {table} WHERE recv_time >= {} AND recv_time < {}",
                    self.hot.at(day * DAY_NS),
                    self.hot.at((day + 1) * DAY_NS)
                ))
                .await?;
            n == verified_rows
        };
        if whole_day {
            // Every row of the partition was verified on every target.
            let partition = date_string(day as i32).replace('-', "");
            self.hot
                .exec(&format!("ALTER TABLE {table} DROP PARTITION {partition}"))
                .await?;
        } else {
            for w in verified {
                let cond = self.hot.window_cond(&w.key, self.plan.symbol.as_deref());
                self.hot
                    .exec(&format!(
                        "ALTER TABLE {table} DELETE WHERE {cond} AND {BATCH_COLUMN} IN ({})",
                        id_list(&w.batches)
                    ))
                    .await?;
            }
            self.wait_mutations(kind).await?;
        }
        for w in verified {
            report.windows.cleaned += 1;
            report.rows_cleaned += w.digest.rows;
            self.ledger(
                w,
                "hot",
                "cleaned",
                w.digest.rows,
                if whole_day {
                    "partition dropped"
                } else {
                    "rows deleted"
                },
            )
            .await;
        }
        Ok(())
    }

    async fn wait_mutations(&self, kind: Kind) -> anyhow::Result<()> {
        let sql = format!(
            "SELECT count() FROM system.mutations WHERE database = '{}' AND table = '{}' AND is_done = 0",
            self.hot.db,
            table_name(kind)
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while self.hot.count(&sql).await? > 0 {
            if std::time::Instant::now() > deadline {
                bail!("the delete on {} is not done after 600 s", table_name(kind));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Records a step in the ledger (a failure to record is said, not fatal: the data decides).
    async fn ledger(&self, w: &HotWindow, target: &str, state: &str, rows: u64, message: &str) {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
        let sql = format!(
            "INSERT INTO {}.{LEDGER} VALUES (now(), {}, '{}', '{}', '{}', '{}', '{}', '{state}', {rows}, {}, '{}')",
            self.hot.db,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            esc(target),
            table_name(w.kind),
            w.key.market,
            date_string(w.key.day as i32),
            self.plan.symbol.as_deref().unwrap_or(""),
            w.digest.hash,
            esc(message)
        );
        if let Err(e) = self.hot.exec(&sql).await {
            self.ledger_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("tier: ledger: {}", crate::cmd::error_line(&e));
        }
    }
}

fn check(hw: &HotWindow, got: Digest, copied: u64) -> Outcome {
    if got == hw.digest {
        Outcome::Verified { copied }
    } else {
        Outcome::Failed {
            copied: true,
            reason: format!(
                "check failed: hot {} rows checksum {:016x}, target {} rows checksum {:016x}",
                hw.digest.rows, hw.digest.hash, got.rows, got.hash
            ),
        }
    }
}

/// The schema of an archive file: the kind's schema without `market` (in the path), then
/// `_batch`.
pub fn archive_schema(kind: Kind) -> Arc<Schema> {
    archive_schema_of(&schema(kind))
}

fn archive_schema_of(s: &Schema) -> Arc<Schema> {
    let mut fields: Vec<Arc<Field>> = s
        .fields()
        .iter()
        .filter(|f| f.name() != "market")
        .cloned()
        .collect();
    fields.push(Arc::new(Field::new(BATCH_COLUMN, DataType::UInt64, false)));
    Arc::new(Schema::new_with_metadata(fields, s.metadata().clone()))
}

fn to_archive(batch: &RecordBatch, ids: Vec<u64>) -> anyhow::Result<RecordBatch> {
    let s = batch.schema();
    let mut cols: Vec<ArrayRef> = s
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| f.name() != "market")
        .map(|(_, c)| c.clone())
        .collect();
    cols.push(Arc::new(UInt64Array::from(ids)));
    Ok(RecordBatch::try_new(archive_schema_of(&s), cols)?)
}

/// An archive batch back in the kind's schema (the window's `market` put back), and its ids.
fn from_archive(
    kind: Kind,
    b: &RecordBatch,
    market: &str,
) -> anyhow::Result<(RecordBatch, Vec<u64>)> {
    let full = schema(kind);
    let mut cols: Vec<ArrayRef> = Vec::new();
    for f in full.fields() {
        if f.name() == "market" {
            cols.push(constant_text(f.data_type(), market, b.num_rows())?);
        } else {
            let c = b
                .column_by_name(f.name())
                .ok_or_else(|| anyhow!("archive file without column {}", f.name()))?;
            cols.push(c.clone());
        }
    }
    let (ids, _) = archive_keys(b)?;
    Ok((RecordBatch::try_new(full, cols)?, ids.values().to_vec()))
}

fn constant_text(t: &DataType, v: &str, n: usize) -> anyhow::Result<ArrayRef> {
    Ok(match t {
        DataType::Dictionary(k, _) if **k == DataType::Int8 => {
            let keys = arrow_array::Int8Array::from(vec![0i8; n]);
            Arc::new(arrow_array::DictionaryArray::try_new(
                keys,
                Arc::new(StringArray::from(vec![v])),
            )?)
        }
        DataType::Dictionary(k, _) if **k == DataType::Int32 => {
            let keys = arrow_array::Int32Array::from(vec![0i32; n]);
            Arc::new(arrow_array::DictionaryArray::try_new(
                keys,
                Arc::new(StringArray::from(vec![v])),
            )?)
        }
        DataType::Utf8 => Arc::new(StringArray::from(vec![v; n])),
        t => bail!("market column of type {t}"),
    })
}

/// The `_batch` and `symbol` columns of an archive batch.
fn archive_keys(b: &RecordBatch) -> anyhow::Result<(UInt64Array, Vec<Option<&str>>)> {
    let ids = b
        .column_by_name(BATCH_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .ok_or_else(|| anyhow!("archive file without a {BATCH_COLUMN} UInt64 column"))?
        .clone();
    let sym = b
        .column_by_name("symbol")
        .ok_or_else(|| anyhow!("archive file without symbol"))?;
    Ok((ids, strings(sym)?))
}

fn read_archive(
    path: &Path,
) -> anyhow::Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    Ok(
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .with_context(|| path.display().to_string())?
            .with_batch_size(65_536)
            .build()?,
    )
}

/// A kind by its name (`trade`, `depth_update`, any case) or table name (`trades`).
pub fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::ALL
        .iter()
        .copied()
        .find(|k| k.as_str().eq_ignore_ascii_case(s) || table_name(*k) == s)
        .ok_or_else(|| {
            format!(
                "kind {s:?}: one of {}",
                Kind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// `tickwire tier` on a schedule (`[tiering]` in `tickwire run`).
#[derive(Debug, Clone)]
pub struct Schedule {
    /// What each pass does (its `older_than_ns` is the hot retention).
    pub plan: Plan,
    /// A pass this often.
    pub every: std::time::Duration,
    /// The first pass this long after the start.
    pub first_after: std::time::Duration,
}

/// What the scheduled tiering has done: `/v1/tiering`, the run summary, `/metrics`.
#[derive(Debug, Default)]
pub struct Status {
    inner: std::sync::Mutex<StatusInner>,
    hot: std::sync::OnceLock<Endpoint>,
}

#[derive(Debug, Default, Clone, Serialize)]
struct StatusInner {
    runs: u64,
    running: bool,
    last: Option<Report>,
    last_error: Option<String>,
    next_in_s: Option<f64>,
    windows: WindowCounts,
    rows_copied: u64,
    rows_cleaned: u64,
}

impl Status {
    fn with<R>(&self, f: impl FnOnce(&mut StatusInner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Totals over the passes so far: (passes, windows by outcome, rows copied, rows cleaned).
    pub fn totals(&self) -> (u64, WindowCounts, u64, u64) {
        self.with(|s| (s.runs, s.windows.clone(), s.rows_copied, s.rows_cleaned))
    }

    /// The hot database the schedule tiers.
    pub fn hot(&self) -> Option<Endpoint> {
        self.hot.get().cloned()
    }

    /// The status as JSON.
    pub fn json(&self) -> serde_json::Value {
        self.with(|s| serde_json::to_value(&*s).unwrap_or_default())
    }
}

/// Runs `schedule` until `stop` is set: a pass, then a wait of `every` (a failed connection is
/// reported and tried again at the next pass). Blocking: give it a thread.
pub fn run_schedule(
    schedule: Schedule,
    status: Arc<Status>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!("tiering: {e}");
            return;
        }
    };
    let _ = status.hot.set(schedule.plan.hot.clone());
    let mut wait = schedule.first_after;
    loop {
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            status.with(|s| s.next_in_s = Some((until - std::time::Instant::now()).as_secs_f64()));
            std::thread::sleep(std::time::Duration::from_millis(200).min(wait));
        }
        status.with(|s| {
            s.running = true;
            s.next_in_s = None;
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let r = rt.block_on(async {
            let t = Tierer::connect(schedule.plan.clone()).await?;
            t.run(now, &mut |_| {}).await
        });
        status.with(|s| {
            s.running = false;
            s.runs += 1;
            match r {
                Ok(rep) => {
                    for f in &rep.failures {
                        tracing::error!(
                            "tiering: {} {} {} -> {}: {}",
                            f.table,
                            f.market,
                            f.day,
                            f.target,
                            f.reason
                        );
                    }
                    s.windows.total += rep.windows.total;
                    s.windows.copied += rep.windows.copied;
                    s.windows.verified += rep.windows.verified;
                    s.windows.failed += rep.windows.failed;
                    s.windows.cleaned += rep.windows.cleaned;
                    s.rows_copied += rep.rows_copied;
                    s.rows_cleaned += rep.rows_cleaned;
                    s.last_error = None;
                    s.last = Some(rep);
                }
                Err(e) => {
                    let msg = crate::cmd::error_line(&e);
                    tracing::warn!("tiering: {msg}");
                    s.last_error = Some(msg);
                }
            }
        });
        wait = schedule.every;
    }
}

/// The newest state of each window in the ledger of `hot` (newest days first, at most
/// `limit` rows).
pub async fn ledger_windows(hot: &Endpoint, limit: usize) -> anyhow::Result<serde_json::Value> {
    let s = Server::connect(hot, true).await?;
    let sql = format!(
        "SELECT target, kind, market, toString(day), symbol, argMax(state, seq), argMax(rows, seq), argMax(checksum, seq), argMax(message, seq), toString(max(at)) FROM {}.{LEDGER} GROUP BY target, kind, market, day, symbol ORDER BY day DESC, kind, market, target LIMIT {limit}",
        s.db
    );
    let rows = s.tsv(&sql).await?;
    let cell = |r: &TextRow, i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    Ok(serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "target": cell(r, 0), "table": cell(r, 1), "market": cell(r, 2),
                    "day": cell(r, 3), "symbol": cell(r, 4), "state": cell(r, 5),
                    "rows": cell(r, 6).parse::<u64>().unwrap_or(0),
                    "checksum": cell(r, 7), "message": cell(r, 8), "at": cell(r, 9),
                })
            })
            .collect(),
    ))
}

/// `30s`, `15m`, `48h`, `3d`, `0s` (a bare number is seconds).
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("duration {s:?}: a number and s, m, h or d (48h, 3d)"))?;
    let unit_ns: i64 = match unit {
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => DAY_NS,
        _ => return Err(format!("duration {s:?}: unit s, m, h or d")),
    };
    n.checked_mul(unit_ns)
        .ok_or_else(|| format!("duration {s:?} out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let e = Endpoint::parse("clickhouse://127.0.0.1:8124/cold").expect("url");
        assert_eq!(e.url, "http://127.0.0.1:8124");
        assert_eq!(e.database, "cold");
        let e = Endpoint::parse("clickhouse://u:secret@h").expect("url");
        assert_eq!(e.url, "http://h:8123");
        assert_eq!(e.database, "tickwire");
        assert_eq!(e.user.as_deref(), Some("u"));
        assert_eq!(e.password.as_deref(), Some("secret"));
        assert!(!format!("{e:?}").contains("secret"));
        assert!(Endpoint::parse("postgres://h/db").is_err());
        assert!(Endpoint::parse("clickhouse://h/db;drop").is_err());
        assert!(Endpoint::parse("clickhouse:///db").is_err());
        let e = Endpoint::parse("clickhouse://u:p%40ss@[::1]:9000/").expect("url");
        assert_eq!(e.url, "http://[::1]:9000");
        assert_eq!(
            (e.database.as_str(), e.password.as_deref()),
            ("tickwire", Some("p@ss"))
        );
        assert_eq!(
            Target::parse("parquet:/a/b"),
            Ok(Target::Parquet("/a/b".into()))
        );
        assert!(Target::parse("parquet:").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ns("0s"), Ok(0));
        assert_eq!(parse_duration_ns("90"), Ok(90_000_000_000));
        assert_eq!(parse_duration_ns("48h"), Ok(2 * DAY_NS));
        assert_eq!(parse_duration_ns("3d"), Ok(3 * DAY_NS));
        assert!(parse_duration_ns("3w").is_err());
        assert!(parse_duration_ns("h").is_err());
    }

    #[test]
    fn units_select_whole_batches_where_they_can() {
        let all: HashMap<u64, usize> = [(1, 2), (2, 2)].into_iter().collect();
        let units = vec![
            (1, "A".to_string()),
            (1, "B".to_string()),
            (2, "A".to_string()),
        ];
        assert_eq!(
            units_cond(&units, &all),
            "(_batch IN (1) OR (_batch, symbol) IN ((2, 'A')))"
        );
        assert_eq!(units_cond(&[], &all), "0");
    }

    #[test]
    fn archive_rows_round_trip() {
        let kind = Kind::Trade;
        let rows: Vec<TextRow> = vec![[
            "binance",
            "spot",
            "BTCUSDT",
            "1",
            "2",
            "3",
            "1.50000000",
            "2.00000000",
            "1",
            "4",
        ]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect()];
        let b = to_batch(kind, &rows, false).expect("batch");
        let a = to_archive(&b, vec![42]).expect("archive");
        assert!(a.column_by_name("market").is_none());
        let (full, ids) = from_archive(kind, &a, "spot").expect("back");
        assert_eq!(ids, vec![42]);
        assert_eq!(full, b);
    }
}
