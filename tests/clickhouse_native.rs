//! The Native blocks tickwire sends are accepted and read back exactly:
//! - modern dialect: by ClickHouse 26.x (chdb, in-process, driven through python3), into the
//!   modern DDL, for every kind;
//! - legacy dialect: by the real 18.16 server the test command starts, through the sink.
//!
//! Records come from the repository's benchmark frames (every stream kind, both markets),
//! decoded and columnarized by tickwire.

use std::process::Command;
use tickwire_sinks::clickhouse::ddl::{table_name, Dialect};
use tickwire_sinks::clickhouse::native::{encode, key_order};
use tickwire_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use tickwire_sinks::{Batch, BatchKey};
use tickwire_tests::{
    bench_batches as batches, candle_trades, clickhouse, dec, expected_candle_lines,
    trade_rows_batch, workspace, CANDLE_T0,
};

/// The sink's config for database `db` on the test command's server, spilling into a
/// directory `<spill>-<pid>` under the temporary directory (or the temporary directory itself).
fn sink_config(db: &str, spill: Option<&str>) -> ClickHouseConfig {
    let mut cfg = ClickHouseConfig::new(
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
    );
    cfg.database = db.to_string();
    cfg.durability.spill_dir = match spill {
        Some(name) => std::env::temp_dir().join(format!("{name}-{}", std::process::id())),
        None => std::env::temp_dir(),
    };
    cfg
}

#[test]
fn modern_native_blocks_load_into_chdb() {
    let dir = std::env::temp_dir().join(format!("tickwire-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut expected = Vec::new();
    for b in batches(3) {
        let path = dir.join(format!(
            "{}-{}.native",
            table_name(b.key.kind),
            b.key.market.as_str()
        ));
        std::fs::write(
            &path,
            encode(&b.data, Dialect::Modern, b.seq).expect("encodes"),
        )
        .expect("write");
        expected.push((table_name(b.key.kind), path, b.data.num_rows()));
    }
    let ddl = workspace().join("sql/clickhouse/001_tables.sql");
    let script = r#"
import json, sys
from chdb.session import Session
ddl, files = sys.argv[1], json.loads(sys.argv[2])
s = Session()
body = "\n".join(l for l in open(ddl).read().splitlines() if not l.startswith("--"))
for st in filter(None, (x.strip() for x in body.split(";"))):
    s.query(st)
out = {}
for table, path, _ in files:
    s.query(f"INSERT INTO tickwire.{table} SELECT * FROM file('{path}', Native)")
for table, _, _ in files:
    out[table] = int(str(s.query(f"SELECT count() FROM tickwire.{table}", "TSV")).strip())
out["trade_qty"] = str(s.query("SELECT toString(sum(qty)) FROM tickwire.trades", "TSV")).strip()
out["ticker_volume"] = str(s.query("SELECT toString(max(volume)) FROM tickwire.tickers", "TSV")).strip()
out["levels"] = int(str(s.query("SELECT sum(length(bids)) + sum(length(asks)) FROM tickwire.depth_updates", "TSV")).strip())
out["null_bid"] = int(str(s.query("SELECT countIf(best_bid_price IS NULL) FROM tickwire.tickers WHERE market = 'usdm'", "TSV")).strip())
# The hot-tier TTL last: these rows are from 2023 and a 30-day TTL deletes them.
for st in json.loads(sys.argv[3]):
    s.query(st)
out["ttl_trades"] = "TTL" in str(s.query("SHOW CREATE TABLE tickwire.trades", "TSV"))
out["ttl_gaps"] = "TTL" in str(s.query("SHOW CREATE TABLE tickwire.gaps", "TSV"))
print(json.dumps(out))
"#;
    let files: Vec<(&str, String, usize)> = expected
        .iter()
        .map(|(t, p, n)| (*t, p.display().to_string(), *n))
        .collect();
    let files_json = serde_json::to_string(&files).expect("json");
    let ttl = serde_json::to_string(&tickwire_sinks::clickhouse::ddl::ttl_statements(
        "tickwire", 30,
    ))
    .expect("json");
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&ddl)
        .arg(&files_json)
        .arg(&ttl)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "chdb (installed by scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(
        out.stdout
            .split(|&c| c == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap_or(b"{}"),
    )
    .expect("json");
    let mut per_table = std::collections::HashMap::<&str, usize>::new();
    for (t, _, n) in &expected {
        *per_table.entry(t).or_default() += n;
    }
    for (t, n) in per_table {
        assert_eq!(got[t], n, "{t}");
    }
    // Exact values: one spot (qty 0.00123000) and one USD-M (0.015) trade frame, 3 copies.
    assert_eq!(dec(got["trade_qty"].as_str().unwrap_or("")), dec("0.04869"));
    assert_eq!(
        dec(got["ticker_volume"].as_str().unwrap_or("")),
        dec("250000.123")
    );
    assert_eq!(
        got["levels"],
        3 * 20,
        "5 + 5 levels per diff, one diff per market, 3 copies"
    );
    assert_eq!(got["null_bid"], 3, "USD-M tickers have no best bid");
    assert_eq!(
        (got["ttl_trades"].as_bool(), got["ttl_gaps"].as_bool()),
        (Some(true), Some(false)),
        "hot-tier TTL, gaps kept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_sink_writes_every_kind_into_clickhouse_exactly() {
    let version =
        clickhouse("SELECT version()").expect("ClickHouse is up (the test command starts it)");
    let db = format!("tickwire_sink_test_{}", std::process::id());
    let mut sink = ClickHouseSink::new(sink_config(&db, Some("tickwire-spill")))
        .expect("sink starts and migrates");
    assert_eq!(sink.version(), version.trim());
    let batches = batches(2);
    let mut rows = std::collections::HashMap::<&str, usize>::new();
    for b in &batches {
        sink.write(b).expect("written");
        *rows.entry(table_name(b.key.kind)).or_default() += b.data.num_rows();
    }
    sink.close().expect("closed");
    let c = sink.counters();
    assert_eq!(
        c.rows(),
        batches
            .iter()
            .map(|b| b.data.num_rows() as u64)
            .sum::<u64>()
    );
    assert_eq!(c.spilled_rows.load(std::sync::atomic::Ordering::Relaxed), 0);
    for (t, n) in rows {
        assert_eq!(
            clickhouse(&format!("SELECT count() FROM {db}.{t}"))
                .expect("count")
                .trim(),
            n.to_string(),
            "{t}"
        );
    }
    // Exact decimals: one spot (0.00123000) and one USD-M (0.015) trade frame, 2 copies; the
    // largest ticker quote volume. (18.16 prints all 8 places: compare values.)
    assert_eq!(
        dec(
            clickhouse(&format!("SELECT toString(sum(qty)) FROM {db}.trades"))
                .expect("sum")
                .trim()
        ),
        dec("0.03246")
    );
    assert_eq!(
        dec(clickhouse(&format!(
            "SELECT toString(max(quote_volume)) FROM {db}.tickers"
        ))
        .expect("max")
        .trim()),
        dec("9262500000.12")
    );
    let migrations =
        clickhouse(&format!("SELECT count() FROM {db}.schema_migrations")).expect("migrations");
    assert_eq!(migrations.trim(), "1");
    // A second start migrates nothing new.
    ClickHouseSink::new(sink_config(&db, None)).expect("restart");
    assert_eq!(
        clickhouse(&format!("SELECT count() FROM {db}.schema_migrations"))
            .expect("migrations")
            .trim(),
        "1"
    );
    clickhouse(&format!("DROP DATABASE {db}")).expect("drop");
}

/// 1-minute candles and daily statistics from the materialized views equal OHLCV computed
/// here from the same trades, although the later trades are inserted first (open and close
/// follow trade time, not insert order).
#[test]
fn candles_follow_trade_time_across_inserts() {
    clickhouse("SELECT 1").expect("ClickHouse is up (the test command starts it)");
    let db = format!("tickwire_candle_test_{}", std::process::id());
    let mut sink = ClickHouseSink::new(sink_config(&db, None)).expect("sink");
    let trades = candle_trades();
    let (early, late): (Vec<_>, Vec<_>) = trades.iter().partition(|t| t.1 < CANDLE_T0 + 90_000_000);
    sink.write(&trade_rows_batch(&late, 1)).expect("late first");
    sink.write(&trade_rows_batch(&early, 2))
        .expect("then early");
    let want = expected_candle_lines(&trades, "\t", false);
    let got = clickhouse(&format!(
        "SELECT symbol, toString(argMinMerge(open)), toString(maxMerge(high)), toString(minMerge(low)), \
         toString(argMaxMerge(close)), toString(sumMerge(volume)), countMerge(trade_count) \
         FROM {db}.candles_1m GROUP BY market, symbol, minute ORDER BY symbol, minute FORMAT TSV"
    ))
    .expect("candles");
    let norm = |l: &str| -> Vec<String> {
        l.split('\t')
            .map(|f| {
                if f.contains('.') {
                    dec(f).to_string()
                } else {
                    f.to_string()
                }
            })
            .collect()
    };
    let got: Vec<Vec<String>> = got.lines().map(norm).collect();
    let want: Vec<Vec<String>> = want.iter().map(|l| norm(l)).collect();
    assert_eq!(got, want);
    let daily = clickhouse(&format!("SELECT countMerge(trade_count), toString(sumMerge(volume)) FROM {db}.daily_stats FORMAT TSV")).expect("daily");
    let total: i128 = trades.iter().map(|t| t.4).sum();
    let (n, v) = daily.trim().split_once('\t').expect("two columns");
    assert_eq!((n, dec(v)), ("180", total));
    clickhouse(&format!("DROP DATABASE {db}")).expect("drop");
}

/// A spot depth-diff batch whose rows interleave three symbols, with 0-3 bids and 0-2 asks
/// each (distinct prices and quantities), and whose receive times go back once: the order a
/// clock step leaves. Rows: (symbol, first update id, recv time ns, bids, asks).
type DepthRow = (&'static str, i64, i64, Vec<(i64, i128)>, Vec<(i64, i128)>);

fn interleaved_depth() -> (Batch, Vec<DepthRow>) {
    use tickwire_codecs::record::*;
    let syms = ["SOLUSDT", "BTCUSDT", "ETHUSDT"];
    let mut rows: Vec<DepthRow> = Vec::new();
    for i in 0..60i64 {
        let level = |side: i64, k: i64| {
            (
                1_000_000_000 * (i + 1) + side * 1000 + k,
                i128::from(i * 100 + side * 10 + k + 1),
            )
        };
        let recv = CANDLE_T0 * 1000 + if i == 40 { 5 } else { i * 1_000 };
        rows.push((
            syms[i as usize % 3],
            1_000 + i,
            recv,
            (0..i % 4).map(|k| level(0, k)).collect(),
            (0..i % 3).map(|k| level(1, k)).collect(),
        ));
    }
    let mut b = tickwire_codecs::arrow::BatchBuilder::new(Kind::DepthUpdate, rows.len());
    for (sym, id, recv, bids, asks) in &rows {
        let levels: Vec<Level> = bids
            .iter()
            .chain(asks)
            .map(|&(price, qty)| Level {
                price,
                qty: qty.into(),
                price_dp: 8,
                qty_dp: 8,
                pad: [0; 6],
            })
            .collect();
        let d = DepthUpdate {
            header: Header::new(
                Kind::DepthUpdate,
                Market::Spot,
                SymbolId(0),
                recv / 1000,
                *recv,
            ),
            first_update_id: *id,
            final_update_id: *id,
            prev_final_update_id: NULL_I64,
            transaction_time: NULL_I64,
            levels: LevelRange {
                start: 0,
                bids: bids.len() as u32,
                asks: asks.len() as u32,
                pad: 0,
            },
        };
        b.append(&Record::DepthUpdate(d), &levels, sym)
            .expect("append");
    }
    let batch = Batch {
        key: BatchKey {
            kind: Kind::DepthUpdate,
            market: Market::Spot,
            day: 19_675,
        },
        seq: 7,
        data: std::sync::Arc::new(b.finish().expect("batch")),
        origin: None,
    };
    (batch, rows)
}

/// Rows are sent in the tables' key order (market, symbol, recv_time), each column gathered
/// straight into the block: the block equals the one encoded from the batch sorted by arrow
/// beforehand, for trades (symbols interleaved) and depth diffs (levels, a receive time that
/// goes back), in both dialects.
#[test]
fn blocks_are_sent_in_the_tables_key_order() {
    let mut trades = candle_trades();
    // BTC and ETH alternate, as they arrive.
    trades.sort_by_key(|t| (t.1, t.0));
    let trades = trade_rows_batch(&trades.iter().collect::<Vec<_>>(), 3);
    let (depth, _) = interleaved_depth();
    for b in [&trades, &depth] {
        let data = &b.data;
        let order = key_order(data).expect("interleaved rows need an order");
        let sorted = arrow_select::take::take_record_batch(
            data,
            &arrow_array::UInt32Array::from(order.clone()),
        )
        .expect("take");
        let key = |i: usize| {
            let s = arrow_array::cast::as_dictionary_array::<arrow_array::types::Int32Type>(
                sorted.column_by_name("symbol").expect("symbol"),
            );
            let name = s
                .values()
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("names")
                .value(s.keys().value(i) as usize)
                .to_string();
            let recv = sorted
                .column_by_name("recv_time")
                .expect("recv")
                .as_any()
                .downcast_ref::<arrow_array::TimestampNanosecondArray>()
                .expect("ns")
                .value(i);
            (name, recv)
        };
        for i in 1..sorted.num_rows() {
            assert!(
                key(i - 1) <= key(i),
                "row {i}: {:?} > {:?}",
                key(i - 1),
                key(i)
            );
        }
        assert_eq!(key_order(&sorted), None, "sorted rows are sent as they are");
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..data.num_rows() as u32).collect::<Vec<_>>());
        for d in [Dialect::Modern, Dialect::Legacy] {
            assert_eq!(
                encode(data, d, 9).expect("encodes"),
                encode(&sorted, d, 9).expect("encodes"),
                "{:?} {d:?}",
                b.key.kind
            );
        }
    }
}

/// The real 18.16 server reads back every depth diff of an interleaved batch row by row with
/// its own levels (the gathered offsets and elements of the Nested columns line up).
#[test]
fn gathered_depth_levels_read_back_row_by_row() {
    clickhouse("SELECT 1").expect("ClickHouse is up (the test command starts it)");
    let db = format!("tickwire_order_test_{}", std::process::id());
    let mut sink = ClickHouseSink::new(sink_config(&db, Some("tickwire-order-spill")))
        .expect("sink starts and migrates");
    let (batch, rows) = interleaved_depth();
    sink.write(&batch).expect("written");
    sink.close().expect("closed");
    let got = clickhouse(&format!(
        "SELECT symbol, first_update_id, recv_time, bids.price, bids.qty, asks.price, asks.qty \
         FROM {db}.depth_updates ORDER BY first_update_id FORMAT TSV"
    ))
    .expect("read back");
    let e8 = |v: i128| format!("{}.{:08}", v / 100_000_000, v % 100_000_000);
    let list = |side: &[(i64, i128)], price: bool| {
        let items: Vec<String> = side
            .iter()
            .map(|&(p, q)| e8(if price { i128::from(p) } else { q }))
            .collect();
        format!("[{}]", items.join(","))
    };
    let want: Vec<String> = rows
        .iter()
        .map(|(sym, id, recv, bids, asks)| {
            format!(
                "{sym}\t{id}\t{recv}\t{}\t{}\t{}\t{}",
                list(bids, true),
                list(bids, false),
                list(asks, true),
                list(asks, false)
            )
        })
        .collect();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got, want);
    clickhouse(&format!("DROP DATABASE {db}")).expect("drop");
}
