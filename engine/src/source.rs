//! WebSocket source: one connection, decoded on the task that reads it.
//!
//! The receive time is taken when a frame arrives, before decoding. Records go to the pipeline
//! through a bounded queue whose full policy is explicit ([`FullPolicy`]): wait up to a bound,
//! then drop the newest record and count it. Trade, aggregate-trade and depth-diff sequences
//! are checked per symbol; a break becomes a `gap` record in the same queue, so the stores
//! show where data is missing.
//!
//! Reconnects use exponential backoff with jitter; a reconnect is recorded as `gap` records.
//!
//! Not built yet (issue #3): 24 h rotation with overlap, the order-book sync against REST
//! snapshots, SUBSCRIBE control, the idle watchdog.

use crate::queue::{FullPolicy, Msg, QueueCounters};
use crossbeam_channel::{SendTimeoutError, Sender};
use futures_util::StreamExt;
use rustc_hash::FxHashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::*;
use tickwire_codecs::symbol::SymbolTable;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// One connection's settings.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `ws://` or `wss://` URL (combined or raw stream).
    pub url: String,
    /// Market of its frames.
    pub market: Market,
    /// What to do when the queue is full.
    pub full: FullPolicy,
    /// On stop, read on until the server closes (true: a simulator that closes after its
    /// last frame), or return at once (false: a live exchange).
    pub drain_on_stop: bool,
}

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Connecting or reading failed.
    #[error("websocket {url}: {source}")]
    Ws {
        /// The URL.
        url: String,
        /// The error.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The pipeline is gone.
    #[error("pipeline queue closed")]
    QueueClosed,
}

/// Per-symbol sequence state.
#[derive(Default)]
struct Seq {
    last: FxHashMap<(u8, SymbolId), i64>,
}

impl Seq {
    /// Checks `rec`'s id continuity; returns a gap record on a break.
    fn check(&mut self, rec: &Record, market: Market) -> Option<Gap> {
        let h = rec.header();
        let (kind, first, last, prev) = match rec {
            Record::Trade(t) => (Kind::Trade, t.trade_id, t.trade_id, NULL_I64),
            Record::AggTrade(a) => (Kind::AggTrade, a.agg_trade_id, a.agg_trade_id, NULL_I64),
            Record::DepthUpdate(d) => (
                Kind::DepthUpdate,
                d.first_update_id,
                d.final_update_id,
                d.prev_final_update_id,
            ),
            _ => return None,
        };
        let key = (kind as u8, h.symbol);
        let before = self.last.insert(key, last);
        let expected = before?;
        // USD-M depth: pu must equal the previous u. Spot depth and ids: first = previous + 1.
        let ok = if kind == Kind::DepthUpdate && market == Market::Usdm && prev != NULL_I64 {
            prev == expected
        } else {
            first == expected + 1
        };
        if ok {
            return None;
        }
        let mut g = Gap {
            header: Header::new(Kind::Gap, market, h.symbol, h.event_time, h.recv_time),
            expected: expected + 1,
            got: first,
            stream: kind as u8,
            reason: GapReason::Sequence as u8,
            pad: [0; 6],
        };
        if kind == Kind::DepthUpdate && market == Market::Usdm && prev != NULL_I64 {
            g.expected = expected;
            g.got = prev;
        }
        Some(g)
    }
}

fn push(
    tx: &Sender<Msg>,
    full: FullPolicy,
    c: &QueueCounters,
    msg: Msg,
) -> Result<(), SourceError> {
    let r = match full {
        FullPolicy::Block { max_wait } => tx.send_timeout(msg, max_wait),
        FullPolicy::DropNewest => tx.try_send(msg).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(m) => SendTimeoutError::Timeout(m),
            crossbeam_channel::TrySendError::Disconnected(m) => SendTimeoutError::Disconnected(m),
        }),
    };
    match r {
        Ok(()) => {
            c.pushed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(SendTimeoutError::Timeout(_)) => {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(SendTimeoutError::Disconnected(_)) => Err(SourceError::QueueClosed),
    }
}

/// Reconnect delays: exponential from 100 ms to 5 s, with ±20% jitter.
#[derive(Debug)]
struct Backoff {
    attempt: u32,
    rng: u64,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = (100u64 << self.attempt.min(6)).min(5_000);
        self.attempt += 1;
        // xorshift for jitter: no shared RNG, no allocation.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = (self.rng % 41) as i64 - 20; // -20..=20 %
        Duration::from_millis((base as i64 + base as i64 * jitter / 100).max(1) as u64)
    }
}

/// Runs one connection: connects, reads and decodes until told to stop, reconnecting (with
/// backoff) whenever the server closes the connection or it fails. Each reconnect writes a
/// `gap` record (reason `reconnect`) for every sequenced stream of the connection, since
/// whatever was sent meanwhile is missing.
///
/// `stop`: once true, the source does not reconnect. With `cfg.drain_on_stop` it keeps
/// reading until the server closes (the simulator closes after its last frame, so nothing it
/// sent is lost); otherwise it returns at once.
pub async fn run(
    cfg: SourceConfig,
    symbols: Arc<SymbolTable>,
    tx: Sender<Msg>,
    counters: Arc<QueueCounters>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let mut dec = Decoder::new(cfg.market, symbols);
    let mut seq = Seq::default();
    let mut out: Vec<Msg> = Vec::with_capacity(8);
    let mut published = dec.stats().clone();
    let mut backoff = Backoff {
        attempt: 0,
        rng: 0x9E37_79B9_7F4A_7C15 ^ cfg.url.len() as u64,
    };
    let mut connected_before = false;
    let market = cfg.market;
    loop {
        if *stop.borrow() {
            break;
        }
        let conn = tokio::select! {
            c = tokio_tungstenite::connect_async(cfg.url.as_str()) => c,
            _ = stop.changed() => break,
        };
        let mut ws = match conn {
            Ok((ws, _)) => ws,
            Err(e) => {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next();
                eprintln!(
                    "tickwire: source {}: connect failed: {e}; retrying in {wait:?}",
                    cfg.url
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.changed() => break,
                }
            }
        };
        backoff.attempt = 0;
        if connected_before {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            let now = crate::clock::now_ns();
            for ((kind, sym), last) in seq.last.drain() {
                let g = Gap {
                    header: Header::new(Kind::Gap, market, sym, NULL_I64, now),
                    expected: last + 1,
                    got: NULL_I64,
                    stream: kind,
                    reason: GapReason::Reconnect as u8,
                    pad: [0; 6],
                };
                push(&tx, cfg.full, &counters, Msg::new(Record::Gap(g), &[]))?;
            }
        }
        connected_before = true;
        let mut stopping = *stop.borrow();
        loop {
            let m = if stopping {
                ws.next().await
            } else {
                tokio::select! {
                    m = ws.next() => m,
                    _ = stop.changed() => {
                        stopping = true;
                        if cfg.drain_on_stop { continue } else { break }
                    }
                }
            };
            let m = match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    eprintln!("tickwire: source {}: {e}", cfg.url);
                    break;
                }
                None => break,
            };
            let recv = crate::clock::now_ns();
            let bytes: &[u8] = match &m {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue, // tungstenite answers pings itself
            };
            counters.frames.fetch_add(1, Ordering::Relaxed);
            let r = dec.decode(bytes, recv, &mut |r: &Record, lv: &[Level]| {
                if let Some(g) = seq.check(r, market) {
                    out.push(Msg::new(Record::Gap(g), &[]));
                }
                out.push(Msg::new(*r, lv));
            });
            if r.is_err() {
                counters.decode_errors.fetch_add(1, Ordering::Relaxed);
            }
            for msg in out.drain(..) {
                if let Record::Gap(g) = &msg.rec {
                    if let Some(k) = Kind::from_code(g.stream) {
                        counters.gaps[k.index()].fetch_add(1, Ordering::Relaxed);
                    }
                }
                push(&tx, cfg.full, &counters, msg)?;
            }
            // Decoder counters are published every 1024 frames (hot loops count locally).
            if dec.stats().frames - published.frames >= 1024 {
                counters.publish_decode(&published, dec.stats());
                published = dec.stats().clone();
            }
        }
        counters.publish_decode(&published, dec.stats());
        published = dec.stats().clone();
        if stopping {
            break;
        }
    }
    Ok(())
}
