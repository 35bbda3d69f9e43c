//! ClickHouse DDL generated from the Arrow schemas.
//!
//! Levels (`bids`, `asks`) are `Array(Tuple(price, qty))` on modern servers and
//! `Nested(price, qty)` on 18.16, where they appear as the array columns `bids.price` and
//! `bids.qty` (18.16 cannot address an `Array(Tuple)` column by name).

use arrow_schema::{DataType, Field, TimeUnit};
use tickwire_codecs::arrow::schema;
use tickwire_codecs::record::Kind;

/// Which server generation the DDL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// ClickHouse 21.x and later: `DateTime64`, `LowCardinality`, `Bool`, codecs, TTL.
    Modern,
    /// ClickHouse 18.16: none of those; times as integer µs (`recv_time` ns).
    Legacy,
}

impl Dialect {
    /// The dialect for a server version string such as `18.16.1` or `24.8.4.13`.
    pub fn for_version(v: &str) -> Dialect {
        let major: u32 = v
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major >= 21 {
            Dialect::Modern
        } else {
            Dialect::Legacy
        }
    }
}

/// `recv_time` as ns since the epoch, in dialect `d`.
pub fn recv_ns_expr(d: Dialect) -> &'static str {
    match d {
        Dialect::Legacy => "recv_time",
        Dialect::Modern => "toUnixTimestamp64Nano(recv_time)",
    }
}

/// A literal comparable with `recv_time` in dialect `d`, for `ns` since the epoch.
pub fn recv_literal(d: Dialect, ns: i64) -> String {
    match d {
        Dialect::Legacy => ns.to_string(),
        Dialect::Modern => format!("fromUnixTimestamp64Nano(toInt64({ns}), 'UTC')"),
    }
}

/// Column holding the id of the batch a row came in (after the Arrow schema's columns).
pub const BATCH_COLUMN: &str = "_batch";

pub use crate::table_name;

fn decimal(t: &DataType) -> Option<String> {
    match t {
        DataType::Decimal128(p, s) => Some(format!("Decimal({p}, {s})")),
        _ => None,
    }
}

/// The ClickHouse type of an Arrow field (with its codec on modern servers).
pub fn column_type(f: &Field, d: Dialect) -> String {
    let modern = d == Dialect::Modern;
    let base = match f.data_type() {
        DataType::Dictionary(_, _) | DataType::Utf8 if modern => {
            return if f.is_nullable() {
                "LowCardinality(Nullable(String))".into()
            } else {
                "LowCardinality(String)".into()
            };
        }
        DataType::Dictionary(_, _) | DataType::Utf8 => "String".to_string(),
        DataType::Timestamp(TimeUnit::Microsecond, _) if modern => "DateTime64(6, 'UTC')".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) if modern => "DateTime64(9, 'UTC')".into(),
        DataType::Timestamp(_, _) | DataType::Int64 => "Int64".into(),
        DataType::Boolean if modern => "Bool".into(),
        DataType::Boolean => "UInt8".into(),
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fs) if fs.len() == 2 => {
                let (p, q) = (
                    decimal(fs[0].data_type()).unwrap_or_default(),
                    decimal(fs[1].data_type()).unwrap_or_default(),
                );
                if modern {
                    format!("Array(Tuple(price {p}, qty {q}))")
                } else {
                    // 18.16 flattens Array(Tuple) into unaddressable `x.1`/`x.2` columns;
                    // Nested gives the same storage with names: `bids.price`, `bids.qty`.
                    return format!("Nested(price {p}, qty {q})");
                }
            }
            other => format!("/* unsupported {other} */"),
        },
        t => decimal(t).unwrap_or_else(|| format!("/* unsupported {t} */")),
    };
    let mut ty = if f.is_nullable() {
        format!("Nullable({base})")
    } else {
        base
    };
    if modern && !f.is_nullable() {
        // Chosen by measurement (perf/clickhouse_codecs.py, perf/RESULTS.md): times ZSTD alone
        // (receive times jitter, deltas do not help), ids DoubleDelta (they count up within a
        // symbol), prices Delta (they move in ticks), quantities ZSTD (16-byte decimals take no
        // delta codec).
        match f.data_type() {
            DataType::Timestamp(_, _) => ty.push_str(" CODEC(ZSTD(1))"),
            DataType::Int64 => ty.push_str(" CODEC(DoubleDelta, ZSTD(1))"),
            DataType::Decimal128(p, _) if *p <= 18 => ty.push_str(" CODEC(Delta, ZSTD(1))"),
            DataType::Decimal128(_, _) => ty.push_str(" CODEC(ZSTD(1))"),
            _ => {}
        }
    }
    ty
}

/// `CREATE TABLE IF NOT EXISTS <db>.<table>` for `kind`.
pub fn create_table(kind: Kind, d: Dialect, db: &str) -> String {
    let s = schema(kind);
    let mut cols: Vec<String> = s
        .fields()
        .iter()
        .map(|f| format!("    {} {}", f.name(), column_type(f, d)))
        .collect();
    // The sink's batch identity: lets a retry find out whether its batch already landed.
    cols.push(format!("    {BATCH_COLUMN} UInt64"));
    let partition = match d {
        Dialect::Modern => "toYYYYMMDD(recv_time)",
        Dialect::Legacy => "toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{} (\n{}\n) ENGINE = MergeTree\nPARTITION BY {partition}\nORDER BY (market, symbol, recv_time)",
        table_name(kind),
        cols.join(",\n")
    )
}

/// Candle and daily-statistics tables and the materialized views that fill them from
/// `trades`. Aggregate states (`argMin`/`argMax` keyed by `(trade_time, trade_id)` for open and
/// close) merge correctly whatever order inserts and parts arrive in; read them with the
/// `-Merge` combinators (README has the query).
pub fn views(d: Dialect, db: &str) -> Vec<String> {
    let (time, bucket_minute, bucket_day) = match d {
        Dialect::Modern => (
            "DateTime64(6, 'UTC')",
            "toStartOfMinute(trade_time)",
            "toDate(trade_time)",
        ),
        Dialect::Legacy => (
            "Int64",
            "toStartOfMinute(toDateTime(intDiv(trade_time, 1000000)))",
            "toDate(toDateTime(intDiv(trade_time, 1000000)))",
        ),
    };
    let sym = if d == Dialect::Modern {
        "LowCardinality(String)"
    } else {
        "String"
    };
    let state_cols = format!(
        "    open AggregateFunction(argMin, Decimal(18, 8), Tuple({time}, Int64)),\n    \
         high AggregateFunction(max, Decimal(18, 8)),\n    \
         low AggregateFunction(min, Decimal(18, 8)),\n    \
         close AggregateFunction(argMax, Decimal(18, 8), Tuple({time}, Int64)),\n    \
         volume AggregateFunction(sum, Decimal(38, 8)),\n    \
         quote_volume AggregateFunction(sum, Decimal(38, 16)),\n    \
         trade_count AggregateFunction(count)"
    );
    let select = "argMinState(price, (trade_time, trade_id)) AS open, maxState(price) AS high, minState(price) AS low, \
                  argMaxState(price, (trade_time, trade_id)) AS close, sumState(qty) AS volume, \
                  sumState(toDecimal128(price, 8) * qty) AS quote_volume, countState() AS trade_count";
    let mut v = Vec::new();
    for (table, bucket_col, bucket_type, bucket_expr, partition) in [
        (
            "candles_1m",
            "minute",
            "DateTime",
            bucket_minute,
            "toYYYYMMDD(minute)",
        ),
        ("daily_stats", "day", "Date", bucket_day, "toYYYYMM(day)"),
    ] {
        v.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} (\n    market {sym},\n    symbol {sym},\n    {bucket_col} {bucket_type},\n{state_cols}\n) ENGINE = AggregatingMergeTree\nPARTITION BY {partition}\nORDER BY (market, symbol, {bucket_col})"
        ));
        v.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_mv TO {db}.{table} AS\nSELECT market, symbol, {bucket_expr} AS {bucket_col}, {select}\nFROM {db}.trades\nGROUP BY market, symbol, {bucket_col}"
        ));
    }
    v
}

/// The schema's statements, in order: the database, one table per kind, then the candle and
/// daily-statistics tables and their materialized views.
pub fn statements(d: Dialect, db: &str) -> Vec<String> {
    let mut v = vec![format!("CREATE DATABASE IF NOT EXISTS {db}")];
    v.extend(Kind::ALL.iter().map(|&k| create_table(k, d, db)));
    v.extend(views(d, db));
    v
}

/// The suffix of a shard's own tables in a cluster layout (`trades_local`); the unsuffixed
/// name is the `Distributed` table over every shard.
pub const LOCAL_SUFFIX: &str = "_local";

/// The sharding key of the cluster layout: every row of a symbol on one shard. The sink
/// computes the same function ([`super::shard::murmur3_32`]) to write to shards directly.
pub const SHARDING_KEY: &str = "murmurHash3_32(symbol)";

/// How the tables are laid out on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLayout {
    /// The cluster's name in the servers' `remote_servers`.
    pub cluster: String,
    /// `Replicated*MergeTree` with `{shard}`/`{replica}` macros (needs ZooKeeper or Keeper).
    pub replicated: bool,
    /// `ON CLUSTER` on every statement (distributed DDL: needs ZooKeeper or Keeper); without
    /// it the statements are run on each shard.
    pub on_cluster: bool,
}

/// Replaces the first `from` in `s` by `to` (the generator's statements are known text).
fn swap(s: &str, from: &str, to: &str) -> String {
    s.replacen(from, to, 1)
}

/// The cluster schema: per shard, every kind's table as `<table>_local` (MergeTree, or
/// ReplicatedMergeTree), a `Distributed` table `<table>` over them sharded by
/// [`SHARDING_KEY`], and the candle and daily-statistics tables and views per shard (fed from
/// the shard's own trades) with `Distributed` tables over them.
pub fn cluster_statements(d: Dialect, db: &str, c: &ClusterLayout) -> Vec<String> {
    let on = if c.on_cluster {
        format!(" ON CLUSTER {}", c.cluster)
    } else {
        String::new()
    };
    let engine = |e: &str, t: &str| {
        if c.replicated {
            format!(
                "ENGINE = Replicated{e}('/clickhouse/tables/{{shard}}/{db}/{t}', '{{replica}}')"
            )
        } else {
            format!("ENGINE = {e}")
        }
    };
    let distributed = |t: &str| {
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{t}{on} AS {db}.{t}{LOCAL_SUFFIX}\nENGINE = Distributed({}, {db}, {t}{LOCAL_SUFFIX}, {SHARDING_KEY})",
            c.cluster
        )
    };
    let mut v = vec![format!("CREATE DATABASE IF NOT EXISTS {db}{on}")];
    for &k in Kind::ALL {
        let t = table_name(k);
        let local = format!("{t}{LOCAL_SUFFIX}");
        let st = create_table(k, d, db);
        let st = swap(&st, &format!("{db}.{t} ("), &format!("{db}.{local}{on} ("));
        v.push(swap(
            &st,
            "ENGINE = MergeTree",
            &engine("MergeTree", &local),
        ));
        v.push(distributed(t));
    }
    for st in views(d, db) {
        let st = if st.starts_with("CREATE TABLE") {
            let t = if st.contains(".candles_1m (") {
                "candles_1m"
            } else {
                "daily_stats"
            };
            let local = format!("{t}{LOCAL_SUFFIX}");
            let st = swap(&st, &format!("{db}.{t} ("), &format!("{db}.{local}{on} ("));
            let st = swap(
                &st,
                "ENGINE = AggregatingMergeTree",
                &engine("AggregatingMergeTree", &local),
            );
            v.push(st);
            distributed(t)
        } else {
            let t = if st.contains(".candles_1m_mv ") {
                "candles_1m"
            } else {
                "daily_stats"
            };
            let st = swap(
                &st,
                &format!("{db}.{t}_mv TO {db}.{t} AS"),
                &format!("{db}.{t}_mv{on} TO {db}.{t}{LOCAL_SUFFIX} AS"),
            );
            swap(
                &st,
                &format!("FROM {db}.trades\n"),
                &format!("FROM {db}.trades{LOCAL_SUFFIX}\n"),
            )
        };
        v.push(st);
    }
    v
}

/// The cluster schema as a SQL file ([`cluster_statements`], each ending in `;`).
pub fn cluster_schema_sql(d: Dialect, db: &str, c: &ClusterLayout) -> String {
    let mut out = format!(
        "-- tickwire ClickHouse cluster schema for {}: {}, generated from the Arrow schemas by\n-- tickwire_sinks::clickhouse::ddl::cluster_schema_sql (a test keeps this file equal to it)\n",
        match d {
            Dialect::Modern => "ClickHouse 21 and later",
            Dialect::Legacy => "ClickHouse 18.16",
        },
        match (c.replicated, c.on_cluster) {
            (true, true) => format!("ReplicatedMergeTree per shard, ON CLUSTER {} (needs ZooKeeper or ClickHouse Keeper and the {{shard}}/{{replica}} macros)", c.cluster),
            (false, true) => format!("MergeTree per shard, ON CLUSTER {} (distributed DDL needs ZooKeeper)", c.cluster),
            (_, false) => format!("MergeTree per shard, run on every shard of cluster {} (no ZooKeeper needed)", c.cluster),
        }
    );
    for st in cluster_statements(d, db, c) {
        out.push('\n');
        out.push_str(&st);
        out.push_str(";\n");
    }
    out
}

/// The hot-tier TTL: market data older than `days` (by `recv_time`) is deleted. Gap and
/// instrument records are kept ([`Kind::kept_forever`]). Modern servers only (18.16 has no TTL).
pub fn ttl_statements(db: &str, days: u32) -> Vec<String> {
    Kind::ALL
        .iter()
        .filter(|k| !k.kept_forever())
        .map(|&k| {
            format!(
                "ALTER TABLE {db}.{} MODIFY TTL toDateTime(recv_time) + INTERVAL {days} DAY",
                table_name(k)
            )
        })
        .collect()
}

/// The whole schema as a SQL file: [`statements`], each ending in `;`.
pub fn schema_sql(d: Dialect, db: &str) -> String {
    let mut out = format!(
        "-- tickwire ClickHouse schema for {}, generated from the Arrow schemas by\n-- tickwire_sinks::clickhouse::ddl::schema_sql (a test keeps this file equal to it)\n",
        match d {
            Dialect::Modern => "ClickHouse 21 and later",
            Dialect::Legacy => "ClickHouse 18.16",
        }
    );
    for st in statements(d, db) {
        out.push('\n');
        out.push_str(&st);
        out.push_str(";\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The committed files are the generator's output. `TICKWIRE_BLESS=1` rewrites them.
    #[test]
    fn committed_ddl_matches_the_arrow_schemas() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/clickhouse");
        let replicated = ClusterLayout {
            cluster: "tickwire".into(),
            replicated: true,
            on_cluster: true,
        };
        let per_shard = ClusterLayout {
            cluster: "tickwire".into(),
            replicated: false,
            on_cluster: false,
        };
        for (want, rel) in [
            (schema_sql(Dialect::Modern, "tickwire"), "001_tables.sql"),
            (
                schema_sql(Dialect::Legacy, "tickwire"),
                "legacy-18.16/001_tables.sql",
            ),
            (
                cluster_schema_sql(Dialect::Modern, "tickwire", &replicated),
                "cluster/001_tables.sql",
            ),
            (
                cluster_schema_sql(Dialect::Legacy, "tickwire", &per_shard),
                "cluster/legacy-18.16/001_tables.sql",
            ),
        ] {
            let path = root.join(rel);
            if std::env::var_os("TICKWIRE_BLESS").is_some() {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).expect("ddl dir");
                }
                std::fs::write(&path, &want).expect("write ddl");
            }
            let got = std::fs::read_to_string(&path).expect("ddl file");
            assert_eq!(
                got,
                want,
                "{} drifted from the Arrow schemas; run with TICKWIRE_BLESS=1",
                path.display()
            );
        }
    }

    #[test]
    fn every_column_has_a_type() {
        for d in [Dialect::Modern, Dialect::Legacy] {
            for &k in Kind::ALL {
                let sql = create_table(k, d, "db");
                assert!(!sql.contains("unsupported"), "{sql}");
                assert_eq!(
                    sql.matches('\n').count(),
                    schema(k).fields().len() + 4,
                    "{sql}"
                );
            }
        }
        assert_eq!(Dialect::for_version("18.16.1"), Dialect::Legacy);
        assert_eq!(Dialect::for_version("26.9.1.1"), Dialect::Modern);
    }
}
