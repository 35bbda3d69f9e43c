//! PostgreSQL DDL generated from the Arrow schemas.
//!
//! | Arrow | PostgreSQL |
//! |---|---|
//! | `Decimal128(p, s)` | `numeric(p, s)` (exact) |
//! | `Timestamp` | `timestamptz` (µs; `recv_time`'s ns are truncated to µs) |
//! | `Int64` | `bigint` |
//! | `Boolean` | `boolean` |
//! | dictionary, `Utf8` | `text` |
//! | levels (`bids`, `asks`) | `numeric[][]`: one `[price, qty]` pair per level |
//!
//! Levels are two-dimensional `numeric` arrays rather than JSONB: typed and exact without a
//! text round trip, written by binary COPY without formatting decimals, 4% smaller and as fast
//! to aggregate (`bash perf/postgres_levels.sh` measures both; figures in perf/RESULTS.md).
//!
//! Files (`sql/timescale/`, held equal to this module by a test):
//! - `001_tables.sql`: tables, `(symbol, time DESC)` indexes, the batch ledger. Always.
//! - `002_plain.sql`: the `candles_1m` view, on PostgreSQL without TimescaleDB.
//! - `002_timescale.sql`: hypertables (1-day chunks), compression (segment by market and
//!   symbol, after `compress_after_days`), retention of market data (`retention_days`; gaps
//!   kept), and `candles_1m` as a continuous aggregate with a refresh policy.
//! - `003_rest_tables.sql`: the kinds that come from REST (`instruments`, `open_interest`,
//!   `long_short_ratios`), added after migration 1 shipped; `003_timescale.sql` makes them
//!   hypertables where migration 2 was TimescaleDB's (instruments kept, like gaps).

use arrow_schema::{DataType, Field};
use tickwire_codecs::arrow::schema;
use tickwire_codecs::record::Kind;

pub use crate::table_name;

/// The table recording every stored part of a batch, written in the same transaction as the
/// part's rows.
pub const LEDGER: &str = "tickwire_batches";
/// The table of applied migrations.
pub const MIGRATIONS: &str = "tickwire_migrations";

/// The PostgreSQL type of an Arrow field.
pub fn column_type(f: &Field) -> String {
    let base = match f.data_type() {
        DataType::Dictionary(_, _) | DataType::Utf8 => "text".to_string(),
        DataType::Timestamp(_, _) => "timestamptz".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Decimal128(p, s) => format!("numeric({p}, {s})"),
        DataType::List(_) => "numeric[]".into(),
        other => panic!("no PostgreSQL type for {other:?}"),
    };
    if f.is_nullable() {
        base
    } else {
        format!("{base} NOT NULL")
    }
}

/// The time column a kind's table is indexed, chunked and bucketed by: trade time for trades,
/// the receive time (never null) otherwise.
pub fn time_column(kind: Kind) -> &'static str {
    match kind {
        Kind::Trade | Kind::AggTrade => "trade_time",
        _ => "recv_time",
    }
}

/// `CREATE TABLE` and its index for one kind.
pub fn create_table(kind: Kind, schema_name: &str) -> Vec<String> {
    let t = table_name(kind);
    let cols: Vec<String> = schema(kind)
        .fields()
        .iter()
        .map(|f| format!("    {} {}", f.name(), column_type(f)))
        .collect();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {schema_name}.{t} (\n{}\n)",
            cols.join(",\n")
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {t}_symbol_time ON {schema_name}.{t} (symbol, {} DESC)",
            time_column(kind)
        ),
    ]
}

/// The kinds of migration 1 (the stream kinds); migration 3 adds the others.
pub fn migration_1_kinds() -> impl Iterator<Item = Kind> {
    Kind::ALL.iter().copied().filter(|k| !k.from_rest())
}

/// The kinds of migration 3: those that come from REST answers.
pub fn migration_3_kinds() -> impl Iterator<Item = Kind> {
    Kind::ALL.iter().copied().filter(|k| k.from_rest())
}

/// Migration 3: the tables of the REST kinds and their indexes.
pub fn rest_tables(schema_name: &str) -> Vec<String> {
    migration_3_kinds()
        .flat_map(|k| create_table(k, schema_name))
        .collect()
}

/// Migration 3 with TimescaleDB (after migration 2's TimescaleDB flavour): the REST kinds'
/// hypertables.
pub fn rest_timescale(
    schema_name: &str,
    compress_after_days: u32,
    retention_days: u32,
) -> Vec<String> {
    migration_3_kinds()
        .flat_map(|k| hypertable(k, schema_name, compress_after_days, retention_days))
        .collect()
}

/// A kind's table as a hypertable: 1-day chunks, compression, retention (except the kinds
/// [`Kind::kept_forever`]).
fn hypertable(
    k: Kind,
    schema_name: &str,
    compress_after_days: u32,
    retention_days: u32,
) -> Vec<String> {
    let t = format!("{schema_name}.{}", table_name(k));
    let time = time_column(k);
    let mut out = vec![
        format!(
            "SELECT create_hypertable('{t}', '{time}', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE, migrate_data => TRUE)"
        ),
        format!(
            "ALTER TABLE {t} SET (timescaledb.compress, timescaledb.compress_segmentby = 'market, symbol', timescaledb.compress_orderby = '{time} DESC')"
        ),
        format!(
            "SELECT add_compression_policy('{t}', INTERVAL '{compress_after_days} days', if_not_exists => TRUE)"
        ),
    ];
    if !k.kept_forever() {
        out.push(format!(
            "SELECT add_retention_policy('{t}', INTERVAL '{retention_days} days', if_not_exists => TRUE)"
        ));
    }
    out
}

/// Migration 1: the tables, indexes and the batch ledger.
pub fn tables(schema_name: &str) -> Vec<String> {
    let mut out = vec![format!("CREATE SCHEMA IF NOT EXISTS {schema_name}")];
    for k in migration_1_kinds() {
        out.extend(create_table(k, schema_name));
    }
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {schema_name}.{LEDGER} (\n    batch_id bigint NOT NULL,\n    part integer NOT NULL,\n    parts integer NOT NULL,\n    table_name text NOT NULL,\n    rows integer NOT NULL,\n    stored_at timestamptz NOT NULL DEFAULT now(),\n    PRIMARY KEY (batch_id, part)\n)"
    ));
    out
}

/// The columns of a 1-minute candle (both flavours give the same ones).
const CANDLE_COLUMNS: &str =
    "market, symbol, minute, open, high, low, close, volume, quote_volume, trades";

/// Migration 2 on plain PostgreSQL: the candles as a view (always current).
pub fn plain(schema_name: &str) -> Vec<String> {
    vec![format!(
        "CREATE OR REPLACE VIEW {schema_name}.candles_1m ({CANDLE_COLUMNS}) AS\nSELECT market, symbol, date_trunc('minute', trade_time),\n    (array_agg(price ORDER BY trade_time, trade_id))[1],\n    max(price), min(price),\n    (array_agg(price ORDER BY trade_time DESC, trade_id DESC))[1],\n    sum(qty), sum(price * qty), count(*)\nFROM {schema_name}.trades\nGROUP BY 1, 2, 3"
    )]
}

/// Migration 2 with TimescaleDB: hypertables, compression, retention, continuous aggregate.
pub fn timescale(schema_name: &str, compress_after_days: u32, retention_days: u32) -> Vec<String> {
    let mut out: Vec<String> = migration_1_kinds()
        .flat_map(|k| hypertable(k, schema_name, compress_after_days, retention_days))
        .collect();
    out.push(format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {schema_name}.candles_1m ({CANDLE_COLUMNS}) WITH (timescaledb.continuous) AS\nSELECT market, symbol, time_bucket(INTERVAL '1 minute', trade_time),\n    first(price, trade_time), max(price), min(price), last(price, trade_time),\n    sum(qty), sum(price * qty), count(*)\nFROM {schema_name}.trades\nGROUP BY 1, 2, 3\nWITH NO DATA"
    ));
    out.push(format!(
        "SELECT add_continuous_aggregate_policy('{schema_name}.candles_1m', start_offset => INTERVAL '1 day', end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE)"
    ));
    out
}

/// The statements as a file: each ends with `;` and a blank line.
pub fn file(statements: &[String], title: &str) -> String {
    let mut s = format!("-- {title}\n-- Generated by tickwire (sinks/src/postgres/ddl.rs); `TICKWIRE_BLESS=1 cargo test -p tickwire-sinks` rewrites it.\n\n");
    for st in statements {
        s.push_str(st);
        s.push_str(";\n\n");
    }
    s
}

/// The committed files: (path under `sql/timescale/`, contents), for schema `public` and the
/// default policies.
pub fn files() -> Vec<(&'static str, String)> {
    vec![
        (
            "001_tables.sql",
            file(
                &tables("public"),
                "Migration 1: tables, indexes and the batch ledger (PostgreSQL and TimescaleDB).",
            ),
        ),
        (
            "002_plain.sql",
            file(
                &plain("public"),
                "Migration 2 without TimescaleDB: 1-minute candles as a view.",
            ),
        ),
        (
            "002_timescale.sql",
            file(
                &timescale("public", 7, 30),
                "Migration 2 with TimescaleDB: hypertables, compression after 7 days, retention 30 days (gaps kept), continuous 1-minute candles.",
            ),
        ),
        (
            "003_rest_tables.sql",
            file(
                &rest_tables("public"),
                "Migration 3: the tables of the kinds that come from REST (instruments, open interest, long/short ratios).",
            ),
        ),
        (
            "003_timescale.sql",
            file(
                &rest_timescale("public", 7, 30),
                "Migration 3 after migration 2 with TimescaleDB: the REST kinds' hypertables (instruments kept).",
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_ddl_matches_the_arrow_schemas() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/timescale");
        for (name, want) in files() {
            let path = dir.join(name);
            if std::env::var_os("TICKWIRE_BLESS").is_some() {
                std::fs::create_dir_all(&dir).expect("sql/timescale");
                std::fs::write(&path, &want).expect("write");
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                have,
                want,
                "{} differs from the Arrow schemas; TICKWIRE_BLESS=1 cargo test -p tickwire-sinks rewrites it",
                path.display()
            );
        }
    }

    #[test]
    fn every_column_has_a_type_and_tables_have_a_time_column() {
        for &k in Kind::ALL.iter() {
            let s = schema(k);
            for f in s.fields() {
                assert!(!column_type(f).is_empty());
            }
            let time = s.field_with_name(time_column(k)).expect("time column");
            assert!(
                !time.is_nullable(),
                "{k:?}: hypertable time may not be null"
            );
        }
    }
}
