//! The Binance-compatible local simulator (`tickwire sim`, and in-process for `tickwire demo`).
//!
//! Serves Binance's WebSocket market streams on a local address: combined
//! `/stream?streams=a/b/c` (frames wrapped as `{"stream":..,"data":..}`) and raw `/ws/<stream>`,
//! fed by a synthetic market per symbol ([`market`]) at a configured rate. It counts what it
//! sends per record kind: the ground truth end-to-end tests reconcile against.
//!
//! Faults ([`Faults`]): skipped ids, malformed frames, forced closes; each counted.
//!
//! Not built yet (issue #3): SUBSCRIBE/UNSUBSCRIBE control messages, the REST depth snapshot,
//! replay of a frames file, ping deadlines.

pub mod market;

use futures_util::{SinkExt, StreamExt};
use market::{Rng, StreamKind, SymbolMarket, SymbolSpec};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tickwire_codecs::record::{Kind, Market};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Simulator settings for one market's server.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The market whose payload variants it sends.
    pub market: Market,
    /// Symbols it knows.
    pub symbols: Vec<SymbolSpec>,
    /// Messages per second on each connection.
    pub rate: u64,
    /// Seed of the random market.
    pub seed: u64,
    /// Faults to inject.
    pub faults: Faults,
}

/// Faults the simulator injects; each is off at zero / `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// About every this many frames, skip 1-3 ids of a sequenced stream (trade, aggTrade,
    /// depth diff): a gap the client must detect.
    pub gap_every: u64,
    /// Every this many frames, send a malformed frame as well.
    pub malformed_every: u64,
    /// Close each connection after it has been open this long (the client must reconnect).
    pub close_after: Option<Duration>,
}

impl Faults {
    /// Every fault at a moderate rate (`tickwire demo --faults`).
    pub fn moderate() -> Self {
        Faults {
            gap_every: 2_000,
            malformed_every: 5_000,
            close_after: Some(Duration::from_millis(2_500)),
        }
    }
}

/// What the simulator sent.
#[derive(Debug, Default)]
pub struct SimCounters {
    /// Frames sent, by [`Kind::index`] of the record they decode to.
    pub sent: [AtomicU64; Kind::COUNT],
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections whose streams were refused.
    pub refused: AtomicU64,
    /// Gaps injected (ids skipped and the next frame of that stream sent), by record kind.
    pub gaps: [AtomicU64; Kind::COUNT],
    /// Malformed frames sent (not counted in `sent`).
    pub malformed: AtomicU64,
    /// Connections closed by the `close_after` fault.
    pub closes: AtomicU64,
}

impl SimCounters {
    /// All frames sent.
    pub fn total(&self) -> u64 {
        self.sent.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A running simulator server.
#[derive(Debug)]
pub struct SimServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it sent.
    pub counters: Arc<SimCounters>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// Binds `addr` and starts serving.
    pub async fn start(cfg: SimConfig, addr: &str) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(SimCounters::default());
        let (stop, stop_rx) = watch::channel(false);
        let c = counters.clone();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut stop_rx2 = stop_rx.clone();
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((sock, _)) => {
                            c.connections.fetch_add(1, Ordering::Relaxed);
                            let seed = cfg.seed.wrapping_add(c.connections.load(Ordering::Relaxed));
                            conns.push(tokio::spawn(serve(sock, cfg.clone(), seed, c.clone(), stop_rx.clone())));
                        }
                        Err(e) => tracing_warn(&format!("sim accept failed: {e}")),
                    },
                    _ = stop_rx2.changed() => break,
                }
            }
            // No new connections once stopping: a client reconnecting now is refused.
            drop(listener);
            for t in conns {
                let _ = t.await;
            }
        });
        Ok(SimServer {
            addr,
            counters,
            stop,
            task,
        })
    }

    /// The combined-stream URL of every stream kind of `market` for `symbols`.
    pub fn combined_url(&self, market: Market, symbols: &[SymbolSpec]) -> String {
        let mut streams = Vec::new();
        for s in symbols {
            for (k, _) in StreamKind::mix(market) {
                streams.push(format!("{}@{}", s.name.to_lowercase(), k.suffix(market)));
            }
        }
        format!("ws://{}/stream?streams={}", self.addr, streams.join("/"))
    }

    /// Stops sending, closes every connection cleanly (after all sent frames) and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn tracing_warn(msg: &str) {
    eprintln!("tickwire sim: {msg}");
}

/// Parses `/stream?streams=a/b` or `/ws/a` into (symbol, kind) pairs.
fn parse_path(path: &str, symbols: &[SymbolSpec]) -> Result<Vec<(usize, StreamKind)>, String> {
    // USD-M serves `/public/...` and `/market/...` since 2026-04; accept both prefixes.
    let path = path
        .strip_prefix("/public")
        .or_else(|| path.strip_prefix("/market"))
        .unwrap_or(path);
    let names: Vec<&str> = if let Some(q) = path.strip_prefix("/stream?streams=") {
        q.split('/').filter(|s| !s.is_empty()).collect()
    } else if let Some(s) = path.strip_prefix("/ws/") {
        vec![s]
    } else {
        return Err(format!("unknown path {path}"));
    };
    let mut out = Vec::new();
    for n in names {
        let (sym, kind) = n
            .split_once('@')
            .ok_or_else(|| format!("invalid stream {n}"))?;
        let i = symbols
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(sym))
            .ok_or_else(|| format!("unknown symbol {sym}"))?;
        let k = StreamKind::from_suffix(kind).ok_or_else(|| format!("unknown stream {kind}"))?;
        out.push((i, k));
    }
    Ok(out)
}

async fn serve(
    sock: TcpStream,
    cfg: SimConfig,
    seed: u64,
    counters: Arc<SimCounters>,
    mut stop: watch::Receiver<bool>,
) {
    if *stop.borrow() {
        return; // accepted in the same instant the stop came: refuse it, no handshake
    }
    let _ = sock.set_nodelay(true);
    let mut path = String::new();
    // The signature is tungstenite's `Callback`; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().to_string();
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(sock, cb).await else {
        return;
    };
    let combined = path.contains("/stream?");
    let streams = match parse_path(&path, &cfg.symbols) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) | Err(_) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = ws.close(None).await;
            return;
        }
    };
    let mut markets: Vec<SymbolMarket> = cfg
        .symbols
        .iter()
        .map(|s| SymbolMarket::new(s.clone(), cfg.market))
        .collect();
    // Weighted pick over the subscribed streams.
    let weights: Vec<u32> = streams
        .iter()
        .map(|(_, k)| {
            StreamKind::mix(cfg.market)
                .iter()
                .find(|(m, _)| m == k)
                .map_or(1, |(_, w)| *w)
        })
        .collect();
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let names: Vec<String> = streams
        .iter()
        .map(|(i, k)| markets[*i].stream(*k))
        .collect();
    let mut rng = Rng::new(seed);
    let mut frame = String::with_capacity(4096);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_ms = cfg.rate as f64 / 1000.0;
    let mut budget = 0.0f64;
    let t0 = std::time::Instant::now();
    let mut sent_total = 0u64;
    let faults = cfg.faults;
    let mut frame_no = 0u64;
    // Per stream: has it sent a frame (a skip is visible only after one).
    let mut seen = vec![false; streams.len()];
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if faults.close_after.is_some_and(|d| t0.elapsed() >= d) {
            counters.closes.fetch_add(1, Ordering::Relaxed);
            break;
        }
        // Catch up to the schedule (rate * elapsed), in bursts of at most 10 ms of traffic.
        let due = (t0.elapsed().as_secs_f64() * cfg.rate as f64) as u64;
        budget = budget.max(0.0) + (due.saturating_sub(sent_total)) as f64;
        let n = (budget as u64).min((per_ms * 10.0).max(1.0) as u64);
        if n == 0 {
            continue;
        }
        let now_ms = crate::clock::now_ns() / 1_000_000;
        let mut kinds = [0u64; Kind::COUNT];
        let mut gaps = [0u64; Kind::COUNT];
        let mut malformed = 0u64;
        for _ in 0..n {
            frame_no += 1;
            if faults.malformed_every > 0 && frame_no % faults.malformed_every == 0 {
                let bad = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":17000000"#;
                if ws.feed(Message::text(bad)).await.is_err() {
                    return;
                }
                malformed += 1;
            }
            let mut r = rng.below(total);
            let mut pick = 0;
            for (i, &w) in weights.iter().enumerate() {
                if r < u64::from(w) {
                    pick = i;
                    break;
                }
                r -= u64::from(w);
            }
            let (si, kind) = streams[pick];
            let sequenced = matches!(
                kind,
                StreamKind::Trade | StreamKind::AggTrade | StreamKind::Depth
            );
            if sequenced && seen[pick] && faults.gap_every > 0 && rng.below(faults.gap_every) == 0 {
                // Skipped right before this stream's next frame, which shows the jump.
                markets[si].skip_ids(kind, 1 + rng.below(3) as i64);
                gaps[kind.record_kind().index()] += 1;
            }
            seen[pick] = true;
            markets[si].frame(kind, now_ms, &mut rng, &mut frame);
            let text = if combined {
                format!(r#"{{"stream":"{}","data":{}}}"#, names[pick], frame)
            } else {
                frame.clone()
            };
            if ws.feed(Message::text(text)).await.is_err() {
                return;
            }
            kinds[kind.record_kind().index()] += 1;
        }
        if ws.flush().await.is_err() {
            return;
        }
        for (i, k) in kinds.iter().enumerate() {
            counters.sent[i].fetch_add(*k, Ordering::Relaxed);
            counters.gaps[i].fetch_add(gaps[i], Ordering::Relaxed);
        }
        counters.malformed.fetch_add(malformed, Ordering::Relaxed);
        sent_total += n;
        budget -= n as f64;
    }
    // Clean close: everything fed was flushed; the close frame follows the data.
    let _ = ws.close(None).await;
    // Drain the client's close reply.
    while let Some(Ok(m)) = ws.next().await {
        if m.is_close() {
            break;
        }
    }
}
