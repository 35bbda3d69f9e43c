//! Inserting into ClickHouse: tickwire's sink (a Native block encoded from the Arrow batch,
//! one `INSERT ... FORMAT Native`) against the `clickhouse` crate's own `Inserter` (RowBinary,
//! typed rows) on the same 50,000 trades, into the same table, in the same run. Both use the
//! crate's default LZ4 wire compression. Needs the ClickHouse server the test command starts
//! (`TICKWIRE_CLICKHOUSE_URL`, default http://127.0.0.1:8123); skipped without one.
//!
//! `cargo bench -p tickwire-benches --bench clickhouse`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use tickwire_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};

/// One `trades` row as the crate's `Inserter` takes it (RowBinary, column order of the table;
/// decimals as their raw integers, times as integers).
#[derive(clickhouse::Row, serde::Serialize)]
struct TradeRow {
    exchange: String,
    market: String,
    symbol: String,
    event_time: Option<i64>,
    recv_time: i64,
    trade_id: i64,
    price: i64,
    qty: i128,
    is_buyer_maker: u8,
    trade_time: i64,
    _batch: u64,
}

const N: usize = 50_000;

fn bench(c: &mut Criterion) {
    let url =
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let db = "tickwire_bench";
    let mut cfg = ClickHouseConfig::new(&url);
    cfg.database = db.into();
    cfg.durability.spill_dir = std::env::temp_dir().join("tickwire-bench-spill");
    let mut sink = match ClickHouseSink::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no ClickHouse at {url} ({e}); run scripts/test.sh first");
            return;
        }
    };
    let (batch, trades) = tickwire_benches::store_trades(N);
    let rows: Vec<TradeRow> = trades
        .iter()
        .map(|(sym, t)| TradeRow {
            exchange: "binance".into(),
            market: "spot".into(),
            symbol: (*sym).into(),
            event_time: Some(t.header.event_time),
            recv_time: t.header.recv_time,
            trade_id: t.trade_id,
            price: t.price,
            qty: t.qty.get(),
            is_buyer_maker: t.is_buyer_maker,
            trade_time: t.trade_time,
            _batch: 1,
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = clickhouse::Client::default()
        .with_url(&url)
        .with_database(db)
        .with_validation(false);

    let mut g = c.benchmark_group("clickhouse_insert");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("tickwire_native_from_arrow", |bch| {
        bch.iter(|| sink.write(&batch).expect("stored"))
    });
    g.bench_function("clickhouse_crate_inserter_rowbinary", |bch| {
        bch.iter(|| {
            rt.block_on(async {
                let mut ins = client
                    .inserter::<TradeRow>("trades")
                    .with_max_rows(N as u64);
                for r in &rows {
                    ins.write(r).await.expect("write");
                }
                ins.end().await.expect("end");
            })
        })
    });
    g.finish();
    let _ = rt.block_on(client.query(&format!("DROP DATABASE {db}")).execute());
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6)).sample_size(10);
    targets = bench
}
criterion_main!(benches);
