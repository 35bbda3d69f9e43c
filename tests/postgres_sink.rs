//! The PostgreSQL sink against the machine's real PostgreSQL (plain, no TimescaleDB here):
//! every kind written and read back exactly, candles, migrations applied once, and the
//! TimescaleDB path where the extension exists (skipped, and saying so, where it does not).
//!
//! Each test works in a schema of its own, dropped at the end.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Int64Type, TimestampMicrosecondType, TimestampNanosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tickwire_codecs::record::Kind;
use tickwire_sinks::postgres::ddl::table_name;
use tickwire_sinks::postgres::{PostgresConfig, PostgresSink, Timescale};
use tickwire_tests::{
    bench_batches, candle_trades, dec, expected_candle_lines, postgres, postgres_url,
    trade_rows_batch, CANDLE_T0,
};

fn config(schema: &str) -> PostgresConfig {
    let mut cfg = PostgresConfig::new(postgres_url());
    cfg.schema = schema.to_string();
    cfg.durability.spill_dir = std::env::temp_dir().join(format!("tickwire-pg-{schema}"));
    cfg.timescale = Timescale::Off;
    cfg
}

fn fresh(schema: &str) -> String {
    postgres("SELECT 1").expect("PostgreSQL is up (the test command starts it)");
    postgres(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).expect("drop");
    schema.to_string()
}

/// For each column, an SQL expression over the table and the same value computed here from
/// the Arrow batches: exact sums of decimals, ids and times (µs), counts of non-nulls and of
/// `true`, the sorted distinct texts, and the sums and counts of the level prices and
/// quantities. Any value encoded wrong shows in one of them.
fn fingerprints(batches: &[&RecordBatch]) -> Vec<(String, String)> {
    let schema = batches[0].schema();
    let mut out = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let c = f.name();
        let cols: Vec<&Arc<dyn Array>> = batches.iter().map(|b| b.column(i)).collect();
        let non_null: usize = cols.iter().map(|a| a.len() - a.null_count()).sum();
        out.push((format!("count({c})"), non_null.to_string()));
        match f.data_type() {
            DataType::Decimal128(_, s) => {
                let sum: i128 = cols
                    .iter()
                    .flat_map(|a| a.as_primitive::<Decimal128Type>().iter().flatten())
                    .sum();
                out.push((
                    format!("coalesce(sum({c}), 0)::text"),
                    tickwire_codecs::decimal::to_string(sum, *s as u8),
                ));
            }
            DataType::Int64 => {
                let sum: i128 = cols
                    .iter()
                    .flat_map(|a| a.as_primitive::<Int64Type>().iter().flatten())
                    .map(i128::from)
                    .sum();
                out.push((format!("coalesce(sum({c}), 0)::text"), sum.to_string()));
            }
            DataType::Timestamp(unit, _) => {
                let sum: i128 = cols
                    .iter()
                    .flat_map(|a| -> Vec<i64> {
                        match unit {
                            TimeUnit::Microsecond => a
                                .as_primitive::<TimestampMicrosecondType>()
                                .iter()
                                .flatten()
                                .collect(),
                            _ => a
                                .as_primitive::<TimestampNanosecondType>()
                                .iter()
                                .flatten()
                                .map(|ns| ns.div_euclid(1000))
                                .collect(),
                        }
                    })
                    .map(i128::from)
                    .sum();
                out.push((
                    format!("coalesce(sum(extract(epoch from {c}) * 1000000), 0)::bigint::text"),
                    sum.to_string(),
                ));
            }
            DataType::Boolean => {
                let n: usize = cols.iter().map(|a| a.as_boolean().true_count()).sum();
                out.push((format!("count(*) FILTER (WHERE {c})"), n.to_string()));
            }
            DataType::Utf8 | DataType::Dictionary(_, _) => {
                let mut set = BTreeSet::new();
                for a in &cols {
                    let s = arrow_cast_to_strings(a);
                    set.extend(s);
                }
                let want: Vec<String> = set.into_iter().collect();
                out.push((
                    format!("coalesce(string_agg(DISTINCT {c} COLLATE \"C\", ',' ORDER BY {c} COLLATE \"C\"), '')"),
                    want.join(","),
                ));
            }
            DataType::List(_) => {
                let (mut n, mut p, mut q) = (0usize, 0i128, 0i128);
                for a in &cols {
                    let st = a.as_list::<i32>().values().as_struct();
                    // Only the values the offsets reach.
                    let offs = a.as_list::<i32>().value_offsets();
                    let (lo, hi) = (offs[0] as usize, offs[offs.len() - 1] as usize);
                    let price = st.column(0).as_primitive::<Decimal128Type>();
                    let qty = st.column(1).as_primitive::<Decimal128Type>();
                    for j in lo..hi {
                        n += 1;
                        p += price.value(j);
                        q += qty.value(j);
                    }
                }
                out.push((
                    format!("coalesce(sum(coalesce(array_length({c}, 1), 0)), 0)::text"),
                    n.to_string(),
                ));
                for (k, v) in [(1, p), (2, q)] {
                    out.push((
                        format!("coalesce(sum((SELECT sum({c}[i][{k}]) FROM generate_subscripts({c}, 1) i)), 0)::text"),
                        tickwire_codecs::decimal::to_string(v, 8),
                    ));
                }
            }
            t => panic!("no fingerprint for {t:?}"),
        }
    }
    out
}

fn arrow_cast_to_strings(a: &Arc<dyn Array>) -> Vec<String> {
    match a.data_type() {
        DataType::Utf8 => a
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(String::from)
            .collect(),
        DataType::Dictionary(k, _) => {
            let d: Vec<String> = match **k {
                DataType::Int8 => {
                    let d = a.as_dictionary::<arrow_array::types::Int8Type>();
                    let v = d.values().as_string::<i32>();
                    d.keys()
                        .iter()
                        .flatten()
                        .map(|k| v.value(k as usize).to_string())
                        .collect()
                }
                _ => {
                    let d = a.as_dictionary::<arrow_array::types::Int32Type>();
                    let v = d.values().as_string::<i32>();
                    d.keys()
                        .iter()
                        .flatten()
                        .map(|k| v.value(k as usize).to_string())
                        .collect()
                }
            };
            d
        }
        t => panic!("{t:?}"),
    }
}

#[test]
fn the_sink_writes_every_kind_into_postgres_exactly() {
    let schema = fresh("tw_test_kinds");
    let mut sink = PostgresSink::new(config(&schema)).expect("sink starts and migrates");
    assert_eq!(sink.flavor(), "plain");
    let batches = bench_batches(2);
    let mut by_kind: HashMap<Kind, Vec<&RecordBatch>> = HashMap::new();
    for b in &batches {
        sink.write(b).expect("written");
        by_kind.entry(b.key.kind).or_default().push(&b.data);
    }
    sink.close().expect("closed");
    let c = sink.counters();
    let total: u64 = batches.iter().map(|b| b.data.num_rows() as u64).sum();
    assert_eq!(c.rows(), total);
    assert_eq!(c.spilled_rows.load(Ordering::Relaxed), 0);
    assert_eq!(c.dead_letter_rows.load(Ordering::Relaxed), 0);
    assert!(
        by_kind.len() >= 8,
        "the frames have most kinds: {:?}",
        by_kind.keys()
    );
    for (kind, data) in &by_kind {
        let t = table_name(*kind);
        let fp = fingerprints(data);
        let sql = format!(
            "SELECT concat_ws('|', {}) FROM {schema}.{t}",
            fp.iter()
                .map(|f| f.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let have = postgres(&sql).expect("fingerprint query");
        let want: Vec<&str> = fp.iter().map(|f| f.1.as_str()).collect();
        let have: Vec<&str> = have.split('|').collect();
        for (f, h) in fp.iter().zip(&have) {
            assert_eq!(*h, f.1, "{t}: {}", f.0);
        }
        assert_eq!(have.len(), want.len(), "{t}");
    }
    // Exact decimals read back as the text Binance sent (scale 8): the trades' quantities.
    assert_eq!(
        dec(&postgres(&format!("SELECT sum(qty) FROM {schema}.trades")).expect("sum")),
        dec("0.03246")
    );
    // The ledger has every batch once; a second start migrates nothing new.
    assert_eq!(
        postgres(&format!(
            "SELECT count(DISTINCT batch_id), sum(rows) FROM {schema}.tickwire_batches"
        ))
        .expect("ledger"),
        format!("{}|{total}", batches.len())
    );
    PostgresSink::new(config(&schema)).expect("restart");
    assert_eq!(
        postgres(&format!("SELECT string_agg(version || ':' || flavor, ',' ORDER BY version) FROM {schema}.tickwire_migrations")).expect("migrations"),
        "1:tables,2:plain,3:tables"
    );
    postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
}

/// 1-minute candles from the view equal OHLCV computed here from the same trades, although
/// the later trades are written first (open and close follow trade time, not insert order).
#[test]
fn candles_follow_trade_time_across_inserts() {
    let schema = fresh("tw_test_candles");
    let mut sink = PostgresSink::new(config(&schema)).expect("sink");
    let trades = candle_trades();
    let (early, late): (Vec<_>, Vec<_>) = trades.iter().partition(|t| t.1 < CANDLE_T0 + 90_000_000);
    sink.write(&trade_rows_batch(&late, 1)).expect("late first");
    sink.write(&trade_rows_batch(&early, 2))
        .expect("then early");
    sink.close().expect("close");
    let want = expected_candle_lines(&trades, "|", true);
    let have = postgres(&format!(
        "SELECT symbol, extract(epoch from minute)::bigint, open, high, low, close, volume, trades FROM {schema}.candles_1m ORDER BY symbol, minute"
    ))
    .expect("candles");
    let have: Vec<String> = have
        .lines()
        .map(|l| {
            // volume is numeric(38,8) summed: scale 8 already.
            l.to_string()
        })
        .collect();
    assert_eq!(have, want);
    postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
}

/// With TimescaleDB: hypertables, compression and retention policies and the continuous
/// aggregate exist. Whether it is used is decided by whether the extension can really be
/// created here (installed and preloaded), not by whether it is packaged. Where it cannot,
/// `auto` falls back to plain tables and `require` refuses to start with the server's reason.
#[test]
fn timescale_path_where_the_extension_exists() {
    postgres("SELECT 1").expect("PostgreSQL is up");
    let created = postgres("CREATE EXTENSION IF NOT EXISTS timescaledb");
    let schema = fresh("tw_test_timescale");
    let mut cfg = config(&schema);
    if let Err(why) = created {
        eprintln!("SKIPPED (the TimescaleDB DDL is sql/timescale/002_timescale.sql): timescaledb cannot be created here: {why}");
        cfg.timescale = Timescale::Require;
        let e = PostgresSink::new(cfg.clone()).expect_err("require without the extension");
        let msg = e.to_string();
        assert!(
            msg.contains("timescale = \"require\"") && msg.contains("timescaledb"),
            "{msg}"
        );
        cfg.timescale = Timescale::Auto;
        let sink = PostgresSink::new(cfg).expect("auto falls back to plain tables");
        assert_eq!(sink.flavor(), "plain");
        postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
        return;
    }
    cfg.timescale = Timescale::Require;
    let mut sink = PostgresSink::new(cfg).expect("sink on timescale");
    assert_eq!(sink.flavor(), "timescale");
    for b in bench_batches(1) {
        sink.write(&b).expect("write");
    }
    sink.close().expect("close");
    let hypertables = postgres(&format!(
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = '{schema}'"
    ))
    .expect("hypertables");
    assert_eq!(hypertables, Kind::ALL.len().to_string());
    let jobs = postgres(&format!(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_schema = '{schema}'"
    ))
    .expect("jobs");
    // compression for every table, retention for all but gaps and instruments, the
    // aggregate's refresh.
    let kept = Kind::ALL.iter().filter(|k| k.kept_forever()).count();
    assert_eq!(jobs, (Kind::ALL.len() * 2 - kept + 1).to_string());
    postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
}

/// A retry after a part committed sends only the parts the ledger lacks, cut exactly as the
/// first attempt cut them, even when the number of connections (and so the cut a fresh
/// attempt would choose) changed in between; a batch fully there is not sent again.
#[test]
fn a_retry_sends_only_the_missing_parts_cut_as_before() {
    use tickwire_sinks::durable::{Inserted, Store};
    use tickwire_sinks::postgres::PostgresStore;
    let schema = fresh("tw_test_parts");
    let batch = tickwire_tests::trade_batch(1, 20_000);
    let (id, table) = (77_u64, "trades");
    let count = || {
        postgres(&format!(
            "SELECT count(*), count(DISTINCT trade_id), min(trade_id), max(trade_id) FROM {schema}.trades"
        ))
        .expect("count")
    };

    let mut two = PostgresStore::connect(&config(&schema)).expect("connect");
    assert!(matches!(
        two.insert(table, id, &batch.data, false).expect("insert"),
        Inserted::Stored(_)
    ));
    assert_eq!(count(), "20000|20000|1|20000");
    assert_eq!(
        postgres(&format!(
            "SELECT string_agg(part || ':' || parts || ':' || rows, ',' ORDER BY part) FROM {schema}.tickwire_batches WHERE batch_id = {id}"
        ))
        .expect("ledger"),
        "0:2:10000,1:2:10000",
        "one part per connection"
    );

    // Part 1's transaction never committed: its rows and its ledger row are not there.
    postgres(&format!(
        "DELETE FROM {schema}.trades WHERE trade_id > 10000; DELETE FROM {schema}.tickwire_batches WHERE batch_id = {id} AND part = 1"
    ))
    .expect("delete");
    assert_eq!(count(), "10000|10000|1|10000");

    // The retry comes from a sink that now has 4 connections (a fresh attempt would cut 4
    // parts): it still sends part 1 of 2, rows 10001..=20000, and nothing else.
    let mut cfg = config(&schema);
    cfg.connections = 4;
    let mut four = PostgresStore::connect(&cfg).expect("connect");
    assert!(matches!(
        four.insert(table, id, &batch.data, true).expect("retry"),
        Inserted::Stored(_)
    ));
    assert_eq!(count(), "20000|20000|1|20000");
    assert!(matches!(
        four.insert(table, id, &batch.data, true).expect("again"),
        Inserted::AlreadyThere
    ));
    assert_eq!(count(), "20000|20000|1|20000");
    postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
}

/// A database migrated before the REST kinds existed (migrations 1 and 2, ten tables) gets
/// their tables from migration 3 at the next start, and nothing else changes.
#[test]
fn an_older_database_gets_the_rest_kinds_tables() {
    let schema = fresh("tw_migrate3");
    let mut setup = vec![format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.tickwire_migrations (version integer PRIMARY KEY, flavor text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )];
    setup.extend(tickwire_sinks::postgres::ddl::tables(&schema));
    setup.extend(tickwire_sinks::postgres::ddl::plain(&schema));
    setup.push(format!(
        "INSERT INTO {schema}.tickwire_migrations (version, flavor) VALUES (1, 'tables'), (2, 'plain')"
    ));
    postgres(&setup.join(";\n")).expect("an older schema");
    let tables = || {
        postgres(&format!(
            "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name IN ('instruments', 'open_interest', 'long_short_ratios')"
        ))
        .expect("tables")
    };
    assert_eq!(tables(), "", "not there before");
    PostgresSink::new(config(&schema)).expect("start");
    assert_eq!(tables(), "instruments,long_short_ratios,open_interest");
    assert_eq!(
        postgres(&format!("SELECT string_agg(version || ':' || flavor, ',' ORDER BY version) FROM {schema}.tickwire_migrations")).expect("migrations"),
        "1:tables,2:plain,3:tables"
    );
    postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
}
