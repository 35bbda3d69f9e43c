//! `tickwire sim`: the Binance-compatible local simulator on its own.
//!
//! Serves spot on `--spot` and USD-M on `--usdm` (combined `/stream?streams=`, raw `/ws/<s>`,
//! and USD-M's `/public` and `/market` prefixes), one synthetic market per server at `--rate`
//! events per second over the streams its connections subscribe to (every connection to a
//! stream is sent the same frames), with optional faults. On exit (`--duration`, SIGINT or
//! SIGTERM) it closes every connection after its last frame and prints one JSON line: what it
//! sent per record kind and the faults it injected, the ground truth to reconcile against.

use crate::sim::market::synthetic_symbols;
use crate::sim::rest::RestLimits;
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
    /// Events per second of each server's market, over the streams its connections subscribe
    /// to (0: as fast as they are taken). A replay is sent to each connection at this rate.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Replay this frames file (one frame per line) or capture directory (`--capture`, each
    /// market's frames) to every connection, once, at `--rate`, instead of the synthetic
    /// market.
    #[arg(long)]
    pub replay: Option<std::path::PathBuf>,
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
    /// Fault: close each connection after it has been open this many ms (a scaled "24 h"
    /// disconnect).
    #[arg(long)]
    pub close_after_ms: Option<u64>,
    /// Fault: every N frames, also send an oversized frame (2 MiB).
    #[arg(long, default_value_t = 0)]
    pub oversized_every: u64,
    /// Fault: ping every N ms; a connection whose pong is late is closed.
    #[arg(long)]
    pub ping_every_ms: Option<u64>,
    /// How many ms a ping may wait for its pong.
    #[arg(long, default_value_t = 60_000)]
    pub pong_deadline_ms: u64,
    /// Serve this many symbols per market: BTCUSDT, ETHUSDT, SOLUSDT, PEPEUSDT, then
    /// synthetic ones (AAAUSDT, AABUSDT, ...; every seventh quoted in USDC).
    #[arg(long, default_value_t = 4)]
    pub symbols: usize,
    /// REST request weight a client IP may spend a minute (0: Binance's, 6,000 spot and
    /// 2,400 USD-M); over it 429, and 418 for a client that sends on.
    #[arg(long, default_value_t = 0)]
    pub weight_per_minute: u64,
    /// Seconds a client is banned (418) for sending after a 429.
    #[arg(long, default_value_t = 120)]
    pub ban_secs: u64,
    /// WebSocket connection attempts an IP may make in 5 minutes (Binance's 300); over it the
    /// handshake is answered 429 (0: no limit).
    #[arg(long = "attempts-per-5min", default_value_t = 300)]
    pub attempts_per_5min: u64,
    /// Every SECS, list a new symbol (one of 16 more, PENDING_TRADING until then) and stop
    /// trading an old synthetic one, as exchangeInfo then says.
    #[arg(long, value_name = "SECS")]
    pub list_every: Option<f64>,
    /// `/futures/data/*` requests an IP may make in 5 minutes (Binance's 1,000; 0: no limit).
    #[arg(long = "data-requests-per-5min", default_value_t = 1000)]
    pub data_requests_per_5min: u64,
}

/// Symbols waiting to be listed with `--list-every`.
const LISTINGS: usize = 16;

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
        oversized_every: args.oversized_every,
        ping_every: args.ping_every_ms.map(Duration::from_millis),
        pong_deadline: Duration::from_millis(args.pong_deadline_ms),
    };
    // With listings, 16 more symbols wait to be listed one by one.
    let listing = args.list_every.map(Duration::from_secs_f64);
    let extra = if listing.is_some() { LISTINGS } else { 0 };
    let symbols = synthetic_symbols(args.symbols.max(1) + extra);
    let line = rt.block_on(async {
        let mut servers = Vec::new();
        for (market, addr, seed) in [(Market::Spot, &args.spot, args.seed), (Market::Usdm, &args.usdm, args.seed + 1)] {
            let replay = match &args.replay {
                Some(p) => Some(std::sync::Arc::new(crate::sim::Replay::load(p, market).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?)),
                None => None,
            };
            let rest = RestLimits {
                weight_per_minute: args.weight_per_minute,
                ban: Duration::from_secs(args.ban_secs),
                attempts_per_5min: args.attempts_per_5min,
                list_every: listing,
                listed: if listing.is_some() { args.symbols.max(1) } else { 0 },
                data_per_5min: args.data_requests_per_5min,
            };
            let cfg = SimConfig { market, symbols: symbols.clone(), rate: args.rate, seed, faults, replay, rest };
            let s = SimServer::start(cfg, addr).await?;
            tracing::info!("{} on ws://{} ({} symbols, e.g. {})", market.as_str(), s.addr, symbols.len(), s.combined_url(market, &symbols[..1]));
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
                "\"{}\":{{\"sent\":{},\"injected\":{{\"gaps\":{},\"malformed\":{},\"oversized\":{},\"closes\":{},\"pings\":{}}},\"pongs\":{},\"pong_timeouts\":{},\"controls\":{},\"control_errors\":{},\"rate_limited\":{},\"connections\":{{\"attempts\":{},\"accepted\":{},\"refused\":{}}},\"streams_refused\":{},\"slow_closes\":{},\"rest\":{{\"requests\":{},\"weight\":{},\"snapshots\":{},\"exchange_info\":{},\"series\":{},\"status_429\":{},\"status_418\":{}}}}}",
                market.as_str(),
                kinds(&|k| c.sent[k.index()].load(Ordering::Relaxed)),
                kinds(&|k| c.gaps[k.index()].load(Ordering::Relaxed)),
                c.malformed.load(Ordering::Relaxed),
                c.oversized.load(Ordering::Relaxed),
                c.closes.load(Ordering::Relaxed),
                c.pings.load(Ordering::Relaxed),
                c.pongs.load(Ordering::Relaxed),
                c.pong_timeouts.load(Ordering::Relaxed),
                c.controls.load(Ordering::Relaxed),
                c.control_errors.load(Ordering::Relaxed),
                c.rate_limited.load(Ordering::Relaxed),
                c.attempts.load(Ordering::Relaxed),
                c.connections.load(Ordering::Relaxed),
                c.attempts_refused.load(Ordering::Relaxed),
                c.refused.load(Ordering::Relaxed),
                c.slow_closes.load(Ordering::Relaxed),
                c.rest_requests.load(Ordering::Relaxed),
                c.rest_weight.load(Ordering::Relaxed),
                c.rest_snapshots.load(Ordering::Relaxed),
                c.rest_exchange_info.load(Ordering::Relaxed),
                c.rest_data.load(Ordering::Relaxed),
                c.rest_limited.load(Ordering::Relaxed),
                c.rest_banned.load(Ordering::Relaxed),
            );
        }
        out.push('}');
        anyhow::Ok(out)
    })?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
