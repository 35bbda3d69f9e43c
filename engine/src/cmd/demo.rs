//! `tickwire demo`: the local simulator and the engine together, end to end, on real sockets.
//!
//! Starts a simulator server per market (spot, USD-M) on loopback, connects one combined-stream
//! source to each (every stream kind of every default symbol), and runs the pipeline: ZMQ PUB
//! on `--zmq` and Parquet under `--out`. A stats line goes to stderr every `--stats-secs`. After
//! `--duration` seconds, or on SIGINT/SIGTERM, it stops cleanly: the simulators stop sending and
//! close their connections after the last frame, the sources read to the close, the queue
//! drains, every builder flushes, every sink closes. The last stdout line is a JSON summary:
//! `sent` (per kind, by the simulator), `records` (per kind, taken in by the engine), `rows`
//! (per sink), `published`, `dropped`, `errors`, and the details behind them.

use crate::pipeline::{FlushConfig, Pipeline, PipelineCounters, SinkRunner};
use crate::publish::{Encoding, PubConfig, PubCounters, Publisher};
use crate::queue::{FullPolicy, QueueCounters};
use crate::sim::market::default_symbols;
use crate::sim::{SimConfig, SimServer};
use crate::source::{self, SourceConfig};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::{Kind, Market};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_sinks::parquet::{ParquetConfig, ParquetSink};

/// `tickwire demo` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to run before stopping cleanly.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Parquet dataset directory.
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// Simulated messages per second, in total over both markets.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// ZMQ PUB bind address.
    #[arg(long, default_value = "tcp://127.0.0.1:5556")]
    pub zmq: String,
    /// ZMQ payload encoding.
    #[arg(long, value_enum, default_value = "binary")]
    pub encoding: Encoding,
    /// Seconds between stats lines on stderr (0: none).
    #[arg(long, default_value_t = 2)]
    pub stats_secs: u64,
    /// Flush a batch at this many rows.
    #[arg(long, default_value_t = FlushConfig::default().max_rows)]
    pub max_rows: usize,
    /// Flush a batch when its oldest row is this many ms old.
    #[arg(long, default_value_t = FlushConfig::default().max_age.as_millis() as u64)]
    pub max_age_ms: u64,
    /// Before starting, wait (up to 30 s) for this many ZMQ subscriptions, so that subscribers
    /// see every record from the first.
    #[arg(long, default_value_t = 0)]
    pub wait_subscribers: usize,
    /// Capacity of the queue from the sources to the pipeline, in records.
    #[arg(long, default_value_t = 65_536)]
    pub queue: usize,
}

fn kinds_json(out: &mut String, f: impl Fn(Kind) -> u64) {
    out.push('{');
    for (i, k) in Kind::ALL.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\":{}", k.as_str(), f(*k));
    }
    out.push('}');
}

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let symbols = SymbolTable::new();
    let specs = default_symbols();

    let parquet = ParquetSink::new(ParquetConfig::new(&args.out)).context("parquet sink")?;
    let sinks = vec![SinkRunner::start(Box::new(parquet), 64)];
    let pub_counters = Arc::new(PubCounters::default());
    let mut publisher = Publisher::bind(
        &PubConfig {
            bind: args.zmq.clone(),
            encoding: args.encoding,
            sndhwm: 100_000,
        },
        pub_counters.clone(),
    )
    .context("zmq publisher")?;
    if args.wait_subscribers > 0 {
        let n = publisher.wait_subscribers(args.wait_subscribers, Duration::from_secs(30));
        if n < args.wait_subscribers {
            anyhow::bail!(
                "only {n} of {} ZMQ subscribers arrived within 30 s",
                args.wait_subscribers
            );
        }
    }
    let (tx, rx) = crossbeam_channel::bounded(args.queue);
    let qc = Arc::new(QueueCounters::default());
    let pc = Arc::new(PipelineCounters::default());
    let flush = FlushConfig {
        max_rows: args.max_rows,
        max_age: Duration::from_millis(args.max_age_ms),
    };
    let pipeline = Pipeline::new(
        rx.clone(),
        symbols.clone(),
        Some(publisher),
        flush,
        &sinks,
        pc.clone(),
    );
    let pipe = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || pipeline.run())?;

    let t0 = Instant::now();
    let sims = rt.block_on(async {
        let mut sims = Vec::new();
        let mut tasks = Vec::new();
        for (i, market) in [Market::Spot, Market::Usdm].into_iter().enumerate() {
            let cfg = SimConfig { market, symbols: specs.clone(), rate: args.rate / 2, seed: 7 + i as u64 };
            let sim = SimServer::start(cfg, "127.0.0.1:0").await.context("simulator")?;
            let scfg = SourceConfig { url: sim.combined_url(market, &specs), market, full: FullPolicy::default() };
            tasks.push(tokio::spawn(source::run(scfg, symbols.clone(), tx.clone(), qc.clone())));
            sims.push(sim);
        }
        drop(tx);
        let stats = (args.stats_secs > 0).then(|| {
            let (qc, pc, pubc, rx) = (qc.clone(), pc.clone(), pub_counters.clone(), rx.clone());
            let every = Duration::from_secs(args.stats_secs);
            tokio::spawn(async move {
                let mut last: [u64; Kind::COUNT] = [0; Kind::COUNT];
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let mut line = format!("[{:>5.1}s] rec/s", t0.elapsed().as_secs_f64());
                    for k in Kind::ALL {
                        let n = pc.records[k.index()].load(Ordering::Relaxed);
                        let _ = write!(line, " {}={:.0}", k.as_str(), (n - last[k.index()]) as f64 / every.as_secs_f64());
                        last[k.index()] = n;
                    }
                                        let batches = pc.batches.load(Ordering::Relaxed).max(1);
                    let (pub_lat, lag) = (pc.recv_to_publish.snapshot(), pc.exchange_lag.snapshot());
                    let _ = write!(
                        line,
                                                " | queue {}/{} | drops queue={} zmq={} | flushed rows={} avg_wait={:.0}ms | recv->pub p50={}us p99={}us | exch lag p50={}us p99={}us | decode_errors={}",
                        rx.len(),
                        rx.capacity().unwrap_or(0),
                        qc.dropped.load(Ordering::Relaxed),
                        pubc.dropped.load(Ordering::Relaxed),
                        pc.rows.load(Ordering::Relaxed),
                        pc.flush_wait_us_sum.load(Ordering::Relaxed) as f64 / batches as f64 / 1000.0,
                                                pub_lat.quantile(0.5),
                        pub_lat.quantile(0.99),
                        lag.quantile(0.5),
                        lag.quantile(0.99),
                        qc.decode_errors.load(Ordering::Relaxed),
                    );
                    eprintln!("{line}");
                }
            })
        });
        wait_for_stop(Duration::from_secs(args.duration)).await;
        let mut counters = Vec::new();
        for s in sims {
            counters.push(s.counters.clone());
            s.stop().await;
        }
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("tickwire: source: {e}"),
                Err(e) => eprintln!("tickwire: source task: {e}"),
            }
        }
        if let Some(s) = stats {
            s.abort();
        }
        anyhow::Ok(counters)
    })?;
    drop(rx);
    pipe.join()
        .map_err(|_| anyhow::anyhow!("pipeline thread panicked"))?;
    let mut rows = Vec::new();
    let mut sink_errors = 0;
    for s in sinks {
        let (name, c) = (s.name, s.counters.clone());
        if let Err(e) = s.finish() {
            eprintln!("tickwire: sink {name}: {e}");
            sink_errors += 1;
        }
        sink_errors += c.errors.load(Ordering::Relaxed);
        rows.push((name, c.rows()));
    }

    let sent = |k: Kind| {
        sims.iter()
            .map(|c| c.sent[k.index()].load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let dropped = qc.dropped.load(Ordering::Relaxed)
        + pub_counters.dropped.load(Ordering::Relaxed)
        + pc.sink_drops.load(Ordering::Relaxed);
    let errors = qc.decode_errors.load(Ordering::Relaxed)
        + pc.errors.load(Ordering::Relaxed)
        + sink_errors
        + pub_counters.errors.load(Ordering::Relaxed);
    let (pub_lat, flush_lat) = (pc.recv_to_publish.snapshot(), pc.recv_to_flush.snapshot());
    let mut s = String::from("{\"sent\":");
    kinds_json(&mut s, sent);
    s.push_str(",\"records\":");
    kinds_json(&mut s, |k| pc.records[k.index()].load(Ordering::Relaxed));
    s.push_str(",\"rows\":{");
    for (i, (name, n)) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{name}\":{n}");
    }
    let _ = write!(
        s,
        "}},\"published\":{},\"dropped\":{dropped},\"errors\":{errors},\"frames\":{},\"decode_errors\":{},\"queue_dropped\":{},\"zmq_dropped\":{},\"batches\":{},\"latency_us\":{{\"recv_to_publish\":{{\"p50\":{},\"p99\":{},\"p999\":{}}},\"recv_to_flush\":{{\"p50\":{},\"p99\":{}}}}},\"duration_s\":{:.3},\"out\":{:?},\"zmq\":{:?}}}",
        pub_counters.sent.load(Ordering::Relaxed),
        qc.frames.load(Ordering::Relaxed),
        qc.decode_errors.load(Ordering::Relaxed),
        qc.dropped.load(Ordering::Relaxed),
        pub_counters.dropped.load(Ordering::Relaxed),
                pc.batches.load(Ordering::Relaxed),
        pub_lat.quantile(0.5),
        pub_lat.quantile(0.99),
        pub_lat.quantile(0.999),
        flush_lat.quantile(0.5),
        flush_lat.quantile(0.99),
        t0.elapsed().as_secs_f64(),
        args.out.display().to_string(),
        args.zmq,
    );
    println!("{s}");
    Ok(ExitCode::SUCCESS)
}

/// Returns after `d`, or at SIGINT / SIGTERM.
async fn wait_for_stop(d: Duration) {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(t) => t,
            Err(_) => {
                tokio::select! { _ = tokio::time::sleep(d) => {}, _ = tokio::signal::ctrl_c() => {} }
                return;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! { _ = tokio::time::sleep(d) => {}, _ = tokio::signal::ctrl_c() => {} }
}
