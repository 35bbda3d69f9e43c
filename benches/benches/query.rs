//! The query API against ClickHouse on the same data, in the same run: an hour of trades at
//! 1,000 trades/s (3.6 M rows, four symbols, both markets' worth of rows in one), held by
//! tickwire's Arrow cache and stored in the ClickHouse server the test command starts.
//! Two queries, each over real HTTP on loopback, JSON lines out:
//! - last 1000 trades of BTCUSDT, newest first;
//! - 1-minute OHLCV candles of BTCUSDT over the hour.
//!
//! Prints p50/p99 of 200 runs of each (the figures in perf/RESULTS.md), then criterion's
//! estimates. Skips ClickHouse when none answers.
//!
//! `cargo bench -p tickwire-benches --bench query`

use criterion::{criterion_group, criterion_main, Criterion};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::arrow::BatchBuilder;
use tickwire_codecs::decimal::DpSet;
use tickwire_codecs::record::*;
use tickwire_codecs::symbol::SymbolTable;
use tickwire_engine::runner::Counters;
use tickwire_engine::serve::cache::{Cache, CacheConfig};
use tickwire_engine::serve::query::Api;
use tickwire_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use tickwire_sinks::{Batch, BatchKey};

const N: i64 = 3_600_000;
const SYMBOLS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"];
const T0_MS: i64 = 1_764_460_800_000; // 2025-11-30T00:00:00Z

/// One HTTP/1.1 request; returns the body length (the whole answer is read).
fn http(addr: &str, method: &str, path: &str, body: &str) -> usize {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    let at = text.find("\r\n\r\n").map_or(0, |i| i + 4);
    out.len() - at
}

fn percentiles(mut f: impl FnMut() -> usize) -> (Duration, Duration, usize) {
    for _ in 0..5 {
        f();
    }
    let mut t: Vec<Duration> = Vec::with_capacity(200);
    let mut bytes = 0;
    for _ in 0..200 {
        let s = Instant::now();
        bytes = f();
        t.push(s.elapsed());
    }
    t.sort();
    (t[100], t[198], bytes)
}

fn bench(c: &mut Criterion) {
    let t0_ns = T0_MS * 1_000_000;
    let cache = Arc::new(Cache::new(
        CacheConfig {
            window: Duration::from_secs(7200),
            budget_bytes: 8 << 30,
        },
        t0_ns,
    ));
    let symbols = SymbolTable::new();
    for s in SYMBOLS {
        symbols.intern(s.as_bytes()).expect("symbol");
    }
    let mut batches = Vec::new();
    let mut b = BatchBuilder::new(Kind::Trade, 16_384);
    let mut price = 3_700_000_000_000i64;
    let mut x = 0x9E37_79B9u64;
    for i in 0..N {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        price += (x % 21) as i64 * 1_000_000 - 10_000_000;
        let recv = t0_ns + i * 1_000_000;
        let mut dp = DpSet::ALL_NULL;
        dp.set(0, 2);
        dp.set(1, 5);
        let t = Trade {
            header: Header::new(Kind::Trade, Market::Spot, SymbolId(0), recv / 1000, recv),
            trade_id: i,
            price,
            qty: (1_000 + (x % 100_000) as i128).into(),
            trade_time: recv / 1000,
            dp,
            is_buyer_maker: (x % 2) as u8,
            pad: [0; 7],
        };
        b.append(&Record::Trade(t), &[], SYMBOLS[i as usize % 4])
            .expect("append");
        if b.len() == 16_384 || i == N - 1 {
            let data = Arc::new(b.finish().expect("batch"));
            cache.insert(Kind::Trade, Market::Spot, 0, data.clone(), recv);
            batches.push(Batch {
                key: BatchKey {
                    kind: Kind::Trade,
                    market: Market::Spot,
                    day: (recv / 86_400_000_000_000) as i32,
                },
                seq: batches.len() as u64 + 1,
                data,
                origin: None,
            });
        }
    }
    let api = Arc::new(Api {
        cache,
        symbols,
        store: None,
        live: None,
        l1: None,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let tw = format!("127.0.0.1:{port}");
    let _server = rt
        .block_on(tickwire_engine::serve::http::serve(
            &tickwire_engine::serve::http::Listen::local(&tw),
            Arc::new(Counters::default()),
            Arc::default(),
            Instant::now(),
            Some(api),
        ))
        .expect("serve");
    let to_ms = T0_MS + N;
    let last = "/v1/trade?symbol=BTCUSDT&limit=1000".to_string();
    let candles = format!("/v1/candles?symbol=BTCUSDT&interval=1m&from={T0_MS}&to={to_ms}");

    let ch_url =
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let ch_addr = ch_url.trim_start_matches("http://").to_string();
    let db = "tickwire_bench_query";
    let mut cfg = ClickHouseConfig::new(&ch_url);
    cfg.database = db.into();
    cfg.durability.spill_dir = std::env::temp_dir().join("tickwire-bench-query-spill");
    let ch = match ClickHouseSink::new(cfg) {
        Ok(mut sink) => {
            let _ = http(
                &ch_addr,
                "POST",
                "/",
                &format!("TRUNCATE TABLE {db}.trades"),
            );
            for b in &batches {
                sink.write(b).expect("stored");
            }
            sink.close().expect("closed");
            let _ = http(
                &ch_addr,
                "POST",
                "/",
                &format!("OPTIMIZE TABLE {db}.trades FINAL"),
            );
            true
        }
        Err(e) => {
            eprintln!("SKIPPED ClickHouse: {e}; run scripts/test.sh first");
            false
        }
    };
    let ch_last = format!("SELECT * FROM {db}.trades WHERE symbol = 'BTCUSDT' ORDER BY recv_time DESC LIMIT 1000 FORMAT JSONEachRow");
    let ch_candles = format!(
        "SELECT intDiv(trade_time, 60000000) AS m, argMin(price, (trade_time, trade_id)) AS open, max(price) AS high, min(price) AS low, argMax(price, (trade_time, trade_id)) AS close, sum(qty) AS volume, count() AS trades FROM {db}.trades WHERE symbol = 'BTCUSDT' AND trade_time >= {} AND trade_time < {} GROUP BY m ORDER BY m FORMAT JSONEachRow",
        T0_MS * 1000,
        to_ms * 1000
    );

    println!("query latency over loopback HTTP, 200 runs each (p50 / p99, body bytes):");
    let show = |name: &str, (p50, p99, bytes): (Duration, Duration, usize)| {
        println!("  {name:<40} p50 {p50:>10.2?}  p99 {p99:>10.2?}  {bytes} B");
    };
    show(
        "tickwire last 1000 trades",
        percentiles(|| http(&tw, "GET", &last, "")),
    );
    show(
        "tickwire 1m candles over 1 h",
        percentiles(|| http(&tw, "GET", &candles, "")),
    );
    if ch {
        show(
            "clickhouse last 1000 trades",
            percentiles(|| http(&ch_addr, "POST", "/", &ch_last)),
        );
        show(
            "clickhouse 1m candles over 1 h",
            percentiles(|| http(&ch_addr, "POST", "/", &ch_candles)),
        );
    }

    let mut g = c.benchmark_group("query");
    g.bench_function("tickwire_last_1000_trades", |bch| {
        bch.iter(|| http(&tw, "GET", &last, ""))
    });
    g.bench_function("tickwire_candles_1m_over_1h", |bch| {
        bch.iter(|| http(&tw, "GET", &candles, ""))
    });
    if ch {
        g.bench_function("clickhouse_last_1000_trades", |bch| {
            bch.iter(|| http(&ch_addr, "POST", "/", &ch_last))
        });
        g.bench_function("clickhouse_candles_1m_over_1h", |bch| {
            bch.iter(|| http(&ch_addr, "POST", "/", &ch_candles))
        });
        let _ = http(&ch_addr, "POST", "/", &format!("DROP DATABASE {db}"));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5)).sample_size(20);
    targets = bench
}
criterion_main!(benches);
