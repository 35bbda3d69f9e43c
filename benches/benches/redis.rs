//! Keeping the Redis L1: tickwire's L1 (records folded into its state, the keys that changed
//! written once per 50 ms in one pipeline, every trade to its ticks set and channel) against
//! the naive writer of the design documents' TTQuant-style code (each record written as it
//! comes: a trade's ZADD, ZREMRANGEBYRANK and PUBLISH, a book ticker's HSET, one round trip a
//! record), on the same 40,000 trades and 40,000 book tickers of four symbols, in the same
//! run. Each iteration uses a key prefix of its own, in a database only the bench uses. Needs
//! the machine's Redis (`TICKWIRE_REDIS_BENCH_URL`, default redis://127.0.0.1:6379/15);
//! skipped without one.
//!
//! `cargo bench -p tickwire-benches --bench redis`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tickwire_codecs::decimal::{DpSet, Wide};
use tickwire_codecs::record::*;
use tickwire_codecs::symbol::SymbolTable;
use tickwire_engine::pipeline::queue::Msg;
use tickwire_engine::serve::l1::{L1Config, L1};

const N: usize = 40_000;
const SYMBOLS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"];

fn url() -> String {
    // Database 15 of the machine's Redis: emptied after each iteration, nothing else uses it.
    std::env::var("TICKWIRE_REDIS_BENCH_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/15".into())
}

/// `N` trades and `N` book tickers, alternating, one µs apart, round robin over the symbols.
fn records(table: &SymbolTable) -> Vec<Msg> {
    let ids: Vec<SymbolId> = SYMBOLS
        .iter()
        .map(|s| table.intern(s.as_bytes()).expect("symbol"))
        .collect();
    let t0 = 1_764_000_000_000_000i64;
    let mut out = Vec::with_capacity(2 * N);
    let mut dp = DpSet::ALL_NULL;
    dp.set(0, 2);
    dp.set(1, 5);
    let mut bdp = DpSet::ALL_NULL;
    for i in 0..4 {
        bdp.set(i, if i % 2 == 0 { 2 } else { 5 });
    }
    for i in 0..N {
        let sym = ids[i % 4];
        let t = t0 + i as i64;
        out.push(Msg::new(
            Record::Trade(Trade {
                header: Header::new(Kind::Trade, Market::Spot, sym, t, t * 1000),
                trade_id: i as i64,
                price: 3_700_000_000_000 + (i as i64 % 100) * 1_000_000,
                qty: Wide::new(150_000 + i as i128),
                trade_time: t,
                dp,
                is_buyer_maker: (i % 2) as u8,
                pad: [0; 7],
            }),
            &[],
        ));
        out.push(Msg::new(
            Record::BookTicker(BookTicker {
                header: Header::new(Kind::BookTicker, Market::Spot, sym, t, t * 1000),
                update_id: i as i64,
                bid_price: 3_700_000_000_000,
                bid_qty: Wide::new(100_000),
                ask_price: 3_700_001_000_000,
                ask_qty: Wide::new(200_000),
                transaction_time: NULL_I64,
                dp: bdp,
            }),
            &[],
        ));
    }
    out
}

fn bench(c: &mut Criterion) {
    let probe = redis::Client::open(url().as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)));
    let Ok(mut admin) = probe else {
        eprintln!("redis bench skipped: no Redis at {}", url());
        return;
    };
    let table = SymbolTable::new();
    let recs = records(&table);
    let mut g = c.benchmark_group("redis_l1");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(recs.len() as u64));
    let mut round = 0u64;
    let mut commands = (0u64, Duration::ZERO);
    g.bench_function("tickwire_l1", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let mut cfg = L1Config::new(url());
                cfg.prefix = format!("twbench{round}:");
                let l1 = L1::start(cfg, table.clone()).expect("l1");
                let counters = l1.counters.clone();
                let t = Instant::now();
                for chunk in recs.chunks(32) {
                    l1.offer(&chunk.to_vec());
                }
                l1.finish();
                let dt = t.elapsed();
                total += dt;
                commands.0 += counters.commands.load(Ordering::Relaxed);
                commands.1 += dt;
                assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
                let _: () = redis::cmd("FLUSHDB").query(&mut admin).expect("flush");
            }
            total
        })
    });
    eprintln!(
        "tickwire_l1: {:.0} Redis commands/s while keeping up",
        commands.0 as f64 / commands.1.as_secs_f64()
    );
    let mut naive_commands = (0u64, Duration::ZERO);
    g.bench_function("naive_one_command_per_record", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let p = format!("twbench{round}:");
                let mut conn = redis::Client::open(url().as_str())
                    .and_then(|c| c.get_connection())
                    .expect("connection");
                let t = Instant::now();
                let mut n = 0u64;
                for m in &recs {
                    let name = SYMBOLS[m.rec.header().symbol.0 as usize % 4];
                    match &m.rec {
                        Record::Trade(tr) => {
                            let member = format!(
                                r#"{{"trade_id":{},"price":"{}","qty":"{}"}}"#,
                                tr.trade_id,
                                tickwire_codecs::decimal::to_string(i128::from(tr.price), 2),
                                tickwire_codecs::decimal::to_string(tr.qty.get(), 5)
                            );
                            let key = format!("{p}ticks:spot:{name}");
                            let _: () = redis::pipe()
                                .zadd(&key, &member, tr.trade_time / 1000)
                                .ignore()
                                .zremrangebyrank(&key, 0, -1001)
                                .ignore()
                                .publish(format!("{p}pubsub:ticks:spot:{name}"), &member)
                                .ignore()
                                .query(&mut conn)
                                .expect("trade");
                            n += 3;
                        }
                        Record::BookTicker(bt) => {
                            let _: () = redis::cmd("HSET")
                                .arg(format!("{p}book_ticker:spot:{name}"))
                                .arg("bid_price")
                                .arg(bt.bid_price)
                                .arg("ask_price")
                                .arg(bt.ask_price)
                                .query(&mut conn)
                                .expect("book ticker");
                            n += 1;
                        }
                        _ => {}
                    }
                }
                let dt = t.elapsed();
                total += dt;
                naive_commands.0 += n;
                naive_commands.1 += dt;
                let _: () = redis::cmd("FLUSHDB").query(&mut admin).expect("flush");
            }
            total
        })
    });
    eprintln!(
        "naive: {:.0} Redis commands/s",
        naive_commands.0 as f64 / naive_commands.1.as_secs_f64()
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
