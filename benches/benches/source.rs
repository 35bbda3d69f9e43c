//! Frames per second one WebSocket connection sustains from the simulator over loopback, in
//! the same run as the simulator's own send rate:
//! - `sim_to_raw_reader`: the simulator at full speed (`rate` 0) to a bare tokio-tungstenite
//!   reader that drops every frame: what the simulator and the socket can do;
//! - `sim_to_source`: the same to tickwire's source (receive time, decode, sequence checks,
//!   queue push), with a thread draining the queue.
//!
//! Each iteration starts a simulator (spot, every stream of four symbols, combined stream) and
//! one connection, and times 200,000 frames.
//!
//! `cargo bench -p tickwire-benches --bench source`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::Market;
use tickwire_codecs::symbol::SymbolTable;
use tickwire_engine::pipeline::queue::QueueCounters;
use tickwire_engine::sim::market::default_symbols;
use tickwire_engine::sim::{Faults, SimConfig, SimServer};
use tickwire_engine::source::{self, SourceConfig};

const FRAMES: u64 = 200_000;

fn sim_config() -> SimConfig {
    SimConfig {
        market: Market::Spot,
        symbols: default_symbols(),
        rate: 0,
        seed: 3,
        faults: Faults::default(),
        replay: None,
        rest: Default::default(),
    }
}

async fn raw_reader() -> Duration {
    let sim = SimServer::start(sim_config(), "127.0.0.1:0")
        .await
        .expect("sim");
    let url = sim.combined_url(Market::Spot, &default_symbols());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let t0 = Instant::now();
    let mut n = 0;
    while n < FRAMES {
        match ws.next().await {
            Some(Ok(m)) if m.is_text() => n += 1,
            Some(Ok(_)) => {}
            _ => panic!("connection ended after {n} frames"),
        }
    }
    let took = t0.elapsed();
    drop(ws);
    sim.stop().await;
    took
}

async fn to_source() -> Duration {
    let sim = SimServer::start(sim_config(), "127.0.0.1:0")
        .await
        .expect("sim");
    let url = sim.combined_url(Market::Spot, &default_symbols());
    let (tx, rx) = crossbeam_channel::bounded::<tickwire_engine::pipeline::queue::Bundle>(4_096);
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let drain = std::thread::spawn(move || {
        let mut n = 0u64;
        while let Ok(b) = rx.recv() {
            let before = n;
            n += b.len() as u64;
            if before < FRAMES && n >= FRAMES {
                d.store(1, Ordering::Release);
            }
        }
    });
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = SourceConfig::new(url, Market::Spot);
    let t0 = Instant::now();
    let task = tokio::spawn(source::run(
        cfg,
        SymbolTable::new(),
        tx,
        counters.clone(),
        stop_rx,
    ));
    while done.load(Ordering::Acquire) == 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let took = t0.elapsed();
    let _ = stop_tx.send(true);
    let _ = task.await;
    let _ = drain.join();
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    sim.stop().await;
    took
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("one_connection");
    g.throughput(Throughput::Elements(FRAMES));
    g.bench_function("sim_to_raw_reader", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(raw_reader())).sum())
    });
    g.bench_function("sim_to_source", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(to_source())).sum())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8)).sample_size(10);
    targets = bench
}
criterion_main!(benches);
