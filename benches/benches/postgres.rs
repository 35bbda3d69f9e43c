//! Inserting into PostgreSQL: tickwire's sink (binary COPY encoded from the Arrow batch, in
//! parts of 8,192 rows over two connections, each part and its ledger row one transaction)
//! against the two ways Rust services write rows, on the
//! same 50,000 trades into the same table with the same index, in the same run:
//! - multi-row `INSERT ... VALUES (..), (..)` of 100 rows per statement, prepared, with bound
//!   parameters (how the TTQuant design of ../shared/CONTEXT.md writes);
//! - tokio-postgres's row-wise `BinaryCopyInWriter` (one `&[&dyn ToSql]` per row).
//!
//! The table is truncated before each timed iteration. Needs the machine's PostgreSQL
//! (`TICKWIRE_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres); skipped
//! without one.
//!
//! `cargo bench -p tickwire-benches --bench postgres`

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::{Duration, Instant};
use tickwire_codecs::record::*;
use tickwire_sinks::postgres::{copy::put_numeric, PostgresConfig, PostgresSink, Timescale};
use tickwire_sinks::{Batch, BatchKey};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

const N: usize = 50_000;
const SCHEMA: &str = "tickwire_bench";
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A decimal as its raw integer at scale 8, bound as `numeric` (what `rust_decimal`'s
/// `ToSql` does, without the crate).
#[derive(Debug)]
struct Numeric(i128);
impl ToSql for Numeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mut v = Vec::with_capacity(24);
        put_numeric(&mut v, self.0, 8)?;
        out.extend_from_slice(&v);
        Ok(IsNull::No)
    }
    fn accepts(t: &Type) -> bool {
        *t == Type::NUMERIC
    }
    to_sql_checked!();
}

/// µs since 1970, bound as `timestamptz` (what chrono's `ToSql` does).
#[derive(Debug)]
struct Ts(i64);
impl ToSql for Ts {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&(self.0 - PG_EPOCH_US).to_be_bytes());
        Ok(IsNull::No)
    }
    fn accepts(t: &Type) -> bool {
        *t == Type::TIMESTAMPTZ
    }
    to_sql_checked!();
}

/// One trades row as a row-wise writer holds it.
struct Row {
    exchange: &'static str,
    market: &'static str,
    symbol: &'static str,
    time: Ts,
    recv: Ts,
    trade_id: i64,
    price: Numeric,
    qty: Numeric,
    maker: bool,
    trade_time: Ts,
}

impl Row {
    /// Its values in [`COLUMNS`] order, as a row-wise writer binds them.
    fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.exchange,
            &self.market,
            &self.symbol,
            &self.time,
            &self.recv,
            &self.trade_id,
            &self.price,
            &self.qty,
            &self.maker,
            &self.trade_time,
        ]
    }
}

const COLUMNS: &str =
    "exchange, market, symbol, event_time, recv_time, trade_id, price, qty, is_buyer_maker, trade_time";

fn bench(c: &mut Criterion) {
    let url = std::env::var("TICKWIRE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut cfg = PostgresConfig::new(&url);
    cfg.schema = SCHEMA.into();
    cfg.timescale = Timescale::Off;
    cfg.durability.spill_dir = std::env::temp_dir().join("tickwire-bench-pg-spill");
    let mut sink = match PostgresSink::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no PostgreSQL at {url} ({e}); run scripts/test.sh first");
            return;
        }
    };
    let (batch, trades) = tickwire_benches::store_trades(N);
    let rows: Vec<Row> = trades
        .iter()
        .map(|(sym, t)| Row {
            exchange: "binance",
            market: "spot",
            symbol: sym,
            time: Ts(t.header.event_time),
            recv: Ts(t.header.recv_time / 1000),
            trade_id: t.trade_id,
            price: Numeric(i128::from(t.price)),
            qty: Numeric(t.qty.get()),
            maker: t.is_buyer_maker == 1,
            trade_time: Ts(t.trade_time),
        })
        .collect();
    let data = batch.data.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    });
    let truncate = |client: &tokio_postgres::Client| {
        rt.block_on(client.batch_execute(&format!(
            "TRUNCATE {SCHEMA}.trades; TRUNCATE {SCHEMA}.tickwire_batches"
        )))
        .expect("truncate");
    };
    let values: Vec<String> = (0..100)
        .map(|r| {
            let p: Vec<String> = (1..=10).map(|c| format!("${}", r * 10 + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let insert100 = rt
        .block_on(client.prepare(&format!(
            "INSERT INTO {SCHEMA}.trades ({COLUMNS}) VALUES {}",
            values.join(", ")
        )))
        .expect("prepare");

    let mut g = c.benchmark_group("postgres_insert");
    g.throughput(Throughput::Elements(N as u64));
    let mut seq = 0;
    g.bench_function("tickwire_binary_copy_from_arrow", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&client);
                seq += 1;
                let batch = Batch {
                    key: BatchKey {
                        kind: Kind::Trade,
                        market: Market::Spot,
                        day: 19_675,
                    },
                    seq,
                    data: data.clone(),
                    origin: None,
                };
                let t = Instant::now();
                sink.write(&batch).expect("stored");
                total += t.elapsed();
                assert_eq!(sink.pending(), 0, "stored, not queued");
            }
            total
        })
    });
    g.bench_function("insert_100_rows_per_statement", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&client);
                let t = Instant::now();
                rt.block_on(async {
                    let tx = client.transaction().await.expect("tx");
                    for chunk in rows.chunks(100) {
                        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(1000);
                        for r in chunk {
                            params.extend_from_slice(&r.params());
                        }
                        tx.execute(&insert100, &params).await.expect("insert");
                    }
                    tx.commit().await.expect("commit");
                });
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("tokio_postgres_binary_copy_in_writer_rowwise", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&client);
                let t = Instant::now();
                rt.block_on(async {
                    let tx = client.transaction().await.expect("tx");
                    let sink = tx
                        .copy_in(&format!(
                            "COPY {SCHEMA}.trades ({COLUMNS}) FROM STDIN (FORMAT binary)"
                        ))
                        .await
                        .expect("copy");
                    let types = [
                        Type::TEXT,
                        Type::TEXT,
                        Type::TEXT,
                        Type::TIMESTAMPTZ,
                        Type::TIMESTAMPTZ,
                        Type::INT8,
                        Type::NUMERIC,
                        Type::NUMERIC,
                        Type::BOOL,
                        Type::TIMESTAMPTZ,
                    ];
                    let w = BinaryCopyInWriter::new(sink, &types);
                    futures_util::pin_mut!(w);
                    for r in &rows {
                        w.as_mut().write(&r.params()).await.expect("row");
                    }
                    w.finish().await.expect("finish");
                    tx.commit().await.expect("commit");
                });
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    let _ = rt.block_on(client.batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE")));
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8)).sample_size(10);
    targets = bench
}
criterion_main!(benches);
