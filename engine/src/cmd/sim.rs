//! `tickwire sim`: the Binance-compatible local simulator on its own.
//!
//! Serves spot on `--spot` and USD-M on `--usdm` (combined `/stream?streams=`, raw `/ws/<s>`,
//! and USD-M's `/public` and `/market` prefixes), a synthetic market per symbol at `--rate`
//! messages per second per connection, with optional faults. On exit (`--duration`, SIGINT or
//! SIGTERM) it closes every connection after its last frame and prints one JSON line: what it
//! sent per record kind and the faults it injected, the ground truth to reconcile against.

use crate::sim::market::default_symbols;
use crate::sim::{Faults, SimConfig, SimServer};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tickwire_codecs::record::{Kind, Market};

/// `tickwire sim` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the spot server.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub spot: String,
    /// Address of the USD-M server.
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub usdm: String,
    /// Messages per second on each connection.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Seed of the synthetic markets.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Fault: about every N frames of a trade, aggTrade or depth-diff stream, skip 1-3 ids.
    #[arg(long, default_value_t = 0)]
    pub gap_every: u64,
    /// Fault: every N frames, also send a malformed frame.
    #[arg(long, default_value_t = 0)]
    pub malformed_every: u64,
    /// Fault: close each connection after it has been open this many ms.
    #[arg(long)]
    pub close_after_ms: Option<u64>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let faults = Faults {
        gap_every: args.gap_every,
        malformed_every: args.malformed_every,
        close_after: args.close_after_ms.map(Duration::from_millis),
    };
    let line = rt.block_on(async {
        let mut servers = Vec::new();
        for (market, addr, seed) in [(Market::Spot, &args.spot, args.seed), (Market::Usdm, &args.usdm, args.seed + 1)] {
            let cfg = SimConfig { market, symbols: default_symbols(), rate: args.rate, seed, faults };
            let s = SimServer::start(cfg, addr).await?;
            eprintln!("tickwire sim: {} on ws://{} (e.g. {})", market.as_str(), s.addr, s.combined_url(market, &default_symbols()[..1]));
            servers.push((market, s));
        }
        crate::runner::wait_for_stop(args.duration.map(Duration::from_secs)).await;
        let mut out = String::from("{");
        for (i, (market, s)) in servers.into_iter().enumerate() {
            let c = s.counters.clone();
            s.stop().await;
            if i > 0 {
                out.push(',');
            }
                        let kinds = |f: &dyn Fn(Kind) -> u64| {
                let mut o = String::new();
                crate::runner::kinds_json(&mut o, f);
                o
            };
            let _ = write!(
                out,
                "\"{}\":{{\"sent\":{},\"injected\":{{\"gaps\":{},\"malformed\":{},\"closes\":{}}},\"connections\":{},\"refused\":{}}}",
                market.as_str(),
                kinds(&|k| c.sent[k.index()].load(Ordering::Relaxed)),
                kinds(&|k| c.gaps[k.index()].load(Ordering::Relaxed)),
                c.malformed.load(Ordering::Relaxed),
                c.closes.load(Ordering::Relaxed),
                c.connections.load(Ordering::Relaxed),
                c.refused.load(Ordering::Relaxed),
            );
        }
        out.push('}');
        anyhow::Ok(out)
    })?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
