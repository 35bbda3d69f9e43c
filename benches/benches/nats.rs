//! Publishing into NATS JetStream: tickwire's NATS sink (bundles offered from the pipeline
//! thread, one subject's records a message, 1,024 acks in flight on its own thread) against a
//! plain async-nats loop that publishes the same messages (grouped the same way, the same
//! `Nats-Msg-Id`s, 1,024 acks in flight), and against the two ways people start with: one
//! record a message pipelined, and one record a message awaiting each ack. All on the machine's
//! nats-server (`TICKWIRE_NATS_BENCH_URL`, default nats://127.0.0.1:4222), each into a stream
//! of its own purged after every iteration; skipped without a server. After the groups, the
//! sink and the plain loop of the same messages run in turns (`TICKWIRE_NATS_PAIRS`, default
//! 30) and the median of their per-pair ratio is printed: JetStream's file store makes one
//! group alone swing by tens of percent from minute to minute.
//!
//! `cargo bench -p tickwire-benches --bench nats`

use async_nats::jetstream;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tickwire_codecs::decimal::{DpSet, Wide};
use tickwire_codecs::record::*;
use tickwire_codecs::symbol::SymbolTable;
use tickwire_engine::bus::collector::{NatsConfig, NatsOut};
use tickwire_engine::pipeline::queue::Msg;

const N: usize = 100_000;
const SYMBOLS: usize = 64;
const PREFIX: &str = "twbench";
const STREAM: &str = "TWBENCH";

fn url() -> String {
    std::env::var("TICKWIRE_NATS_BENCH_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// `N` trades round robin over `SYMBOLS` symbols, in bundles of 32 (what a busy connection
/// hands the pipeline).
fn bundles(table: &SymbolTable) -> Vec<Vec<Msg>> {
    let ids: Vec<SymbolId> = (0..SYMBOLS)
        .map(|i| {
            table
                .intern(format!("SYM{i}USDT").as_bytes())
                .expect("symbol")
        })
        .collect();
    let t0 = 1_764_000_000_000_000i64;
    let mut dp = DpSet::ALL_NULL;
    dp.set(0, 2);
    dp.set(1, 5);
    let msgs: Vec<Msg> = (0..N)
        .map(|i| {
            let t = t0 + i as i64;
            Msg::new(
                Record::Trade(Trade {
                    header: Header::new(Kind::Trade, Market::Spot, ids[i % SYMBOLS], t, t * 1000),
                    trade_id: i as i64,
                    price: 3_700_000_000_000 + (i as i64 % 100) * 1_000_000,
                    qty: Wide::new(150_000 + i as i128),
                    trade_time: t,
                    dp,
                    is_buyer_maker: (i % 2) as u8,
                    pad: [0; 7],
                }),
                &[],
            )
        })
        .collect();
    msgs.chunks(32).map(<[Msg]>::to_vec).collect()
}

/// The messages the sink makes of `bundles` when it is offered them faster than it sends:
/// it takes up to 1,024 queued bundles at once and makes one message per subject of them (at
/// most 256 records), records in order, each with its per-subject sequence number. With
/// `per_record`, one message a record.
fn messages(bundles: &[Vec<Msg>], per_record: bool) -> Vec<(String, bytes::Bytes)> {
    let mut seqs: HashMap<SymbolId, u64> = HashMap::new();
    let mut out = Vec::new();
    for window in bundles.chunks(1024) {
        let mut by: Vec<(SymbolId, Vec<u8>, usize)> = Vec::new();
        for m in window.iter().flatten() {
            let sym = m.rec.header().symbol;
            let seq = seqs.entry(sym).or_default();
            *seq += 1;
            let at = match by
                .iter()
                .position(|(s, _, n)| *s == sym && !per_record && *n < 256)
            {
                Some(i) => i,
                None => {
                    by.push((sym, Vec::new(), 0));
                    by.len() - 1
                }
            };
            let (_, buf, n) = &mut by[at];
            tickwire_engine::pipeline::publish::encode_binary(buf, &m.rec, m.levels(), *seq);
            *n += 1;
        }
        for (sym, buf, _) in by {
            let subject = format!("{PREFIX}.trade.spot.SYM{}USDT", sym.0);
            out.push((subject, bytes::Bytes::from(buf)));
        }
    }
    out
}

async fn context() -> Option<jetstream::Context> {
    let client = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url()))
        .await
        .ok()?
        .ok()?;
    let js = jetstream::new(client);
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec![format!("{PREFIX}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .ok()?;
    Some(js)
}

async fn purge(js: &jetstream::Context) {
    js.get_stream(STREAM)
        .await
        .expect("stream")
        .purge()
        .await
        .expect("purge");
}

/// Publishes every message with up to 1,024 acks in flight; returns the acks' count.
async fn pipelined(js: &jetstream::Context, msgs: &[(String, bytes::Bytes)], run: u64) -> usize {
    let mut inflight = FuturesOrdered::new();
    let mut acked = 0;
    for (n, (subject, payload)) in msgs.iter().enumerate() {
        if inflight.len() >= 1024 {
            if let Some(r) = inflight.next().await {
                let _: jetstream::publish::PublishAck = r;
                acked += 1;
            }
        }
        let msg = jetstream::message::PublishMessage::build()
            .message_id(format!("bench.{run}.{n}"))
            .payload(payload.clone());
        let fut = js
            .send_publish(subject.clone(), msg)
            .await
            .expect("publish");
        inflight.push_back(async move { fut.await.expect("ack") });
    }
    while let Some(_ack) = inflight.next().await {
        acked += 1;
    }
    acked
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some(js) = rt.block_on(context()) else {
        eprintln!("nats bench skipped: no JetStream at {}", url());
        return;
    };
    let table = SymbolTable::new();
    let input = bundles(&table);
    // What the pipeline thread hands the sink: each bundle moved into a shared pointer (a
    // move, no copy of its records), made here outside the timing.
    let shared: Vec<tickwire_engine::pipeline::queue::SharedBundle> = input
        .iter()
        .map(|b| std::sync::Arc::new(b.clone()))
        .collect();
    let grouped = messages(&input, false);
    let single = messages(&input, true);
    eprintln!(
        "{N} trades over {SYMBOLS} symbols in bundles of 32: {} messages grouped by subject, {} one record each",
        grouped.len(),
        single.len()
    );
    let mut g = c.benchmark_group("nats_publish");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(N as u64));
    let mut run = 0u64;
    let spill = std::env::temp_dir().join("tickwire-nats-bench-spill");
    let mut sink_messages = 0;
    // One pass of the sink over every bundle, timed from the first offer to the last ack.
    let sink_once = |messages: &mut u64| {
        let mut cfg = NatsConfig::new(&url(), STREAM);
        cfg.prefix = PREFIX.into();
        cfg.spill_dir = spill.clone();
        let sink = NatsOut::start(cfg, table.clone()).expect("sink");
        let counters = sink.counters.clone();
        let t = Instant::now();
        for b in &shared {
            sink.offer(b);
        }
        sink.finish();
        let took = t.elapsed();
        assert_eq!(counters.records.load(Ordering::Relaxed), N as u64);
        *messages = counters.messages.load(Ordering::Relaxed);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
        rt.block_on(purge(&js));
        took
    };
    g.bench_function("tickwire_nats_sink", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| sink_once(&mut sink_messages)).sum())
    });
    eprintln!("the sink made {sink_messages} messages of them (last iteration)");
    g.bench_function("async_nats_pipelined_same_messages", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let t = Instant::now();
                let acked = rt.block_on(pipelined(&js, &grouped, run));
                total += t.elapsed();
                assert_eq!(acked, grouped.len());
                rt.block_on(purge(&js));
            }
            total
        })
    });
    // The same loop, encoding and grouping as it goes (the work the sink does besides
    // publishing): a window of 1,024 bundles at a time.
    g.bench_function("async_nats_pipelined_encoding_as_it_goes", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let t = Instant::now();
                let mut acked = 0;
                for (w, window) in input.chunks(1024).enumerate() {
                    let msgs = messages(window, false);
                    acked += rt.block_on(pipelined(&js, &msgs, run * 1000 + w as u64));
                }
                total += t.elapsed();
                assert!(acked > 0);
                rt.block_on(purge(&js));
            }
            total
        })
    });
    g.bench_function("async_nats_pipelined_one_record_a_message", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let t = Instant::now();
                let acked = rt.block_on(pipelined(&js, &single, run));
                total += t.elapsed();
                assert_eq!(acked, single.len());
                rt.block_on(purge(&js));
            }
            total
        })
    });
    g.finish();
    // One round trip a record: 5,000 of them (the rate is all that is compared).
    let mut g = c.benchmark_group("nats_publish_naive");
    g.sample_size(10);
    g.throughput(Throughput::Elements(5_000));
    g.bench_function("async_nats_await_each_ack", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let t = Instant::now();
                rt.block_on(async {
                    for (n, (subject, payload)) in single.iter().take(5_000).enumerate() {
                        let msg = jetstream::message::PublishMessage::build()
                            .message_id(format!("naive.{run}.{n}"))
                            .payload(payload.clone());
                        js.send_publish(subject.clone(), msg)
                            .await
                            .expect("publish")
                            .await
                            .expect("ack");
                    }
                });
                total += t.elapsed();
                rt.block_on(purge(&js));
            }
            total
        })
    });
    g.finish();
    // The sink and the floor in turns, so that both meet the same disk and the same
    // nats-server: the ratio of each pair, and its median.
    let pairs: usize = std::env::var("TICKWIRE_NATS_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let mut ratios = Vec::new();
    let (mut sink_t, mut floor_t) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        let s = sink_once(&mut sink_messages);
        run += 1;
        let t = Instant::now();
        let acked = rt.block_on(pipelined(&js, &grouped, run));
        let f = t.elapsed();
        assert_eq!(acked, grouped.len());
        rt.block_on(purge(&js));
        ratios.push(f.as_secs_f64() / s.as_secs_f64());
        sink_t.push(s);
        floor_t.push(f);
    }
    if pairs > 0 {
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let rate = |v: &[Duration]| {
            let mut r: Vec<f64> = v.iter().map(|d| N as f64 / d.as_secs_f64()).collect();
            median(&mut r)
        };
        let (sr, fr) = (rate(&sink_t), rate(&floor_t));
        let mut q = ratios.clone();
        q.sort_by(f64::total_cmp);
        eprintln!(
            "paired, {pairs} turns: sink {:.2} M records/s, plain loop {:.2} M records/s; \
             sink/loop per pair: median {:.2}, quartiles {:.2}-{:.2}",
            sr / 1e6,
            fr / 1e6,
            median(&mut ratios),
            q[q.len() / 4],
            q[q.len() * 3 / 4]
        );
    }
    let _ = rt.block_on(js.delete_stream(STREAM));
}

criterion_group!(benches, bench);
criterion_main!(benches);
