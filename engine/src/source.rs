//! WebSocket source: one connection, decoded on the task that reads it.
//!
//! The receive time is taken when a frame arrives, before decoding. Records go to the pipeline
//! through a bounded queue whose full policy is explicit ([`FullPolicy`]): wait up to a bound,
//! then drop the newest record and count it. Trade, aggregate-trade and depth-diff sequences
//! are checked per symbol; a break becomes a `gap` record in the same queue, so the stores
//! show where data is missing.
//!
//! Not built yet (issue #3): reconnects with backoff, 24 h rotation with overlap, the
//! order-book sync against REST snapshots, SUBSCRIBE control, idle watchdog.

use crate::queue::{FullPolicy, Msg, QueueCounters};
use crossbeam_channel::{SendTimeoutError, Sender};
use futures_util::StreamExt;
use rustc_hash::FxHashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::*;
use tickwire_codecs::symbol::SymbolTable;
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

/// Runs one connection until the server closes it (or it fails).
pub async fn run(
    cfg: SourceConfig,
    symbols: Arc<SymbolTable>,
    tx: Sender<Msg>,
    counters: Arc<QueueCounters>,
) -> Result<(), SourceError> {
    let ws_err = |e| SourceError::Ws {
        url: cfg.url.clone(),
        source: Box::new(e),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(cfg.url.as_str())
        .await
        .map_err(ws_err)?;
    let mut dec = Decoder::new(cfg.market, symbols);
    let mut seq = Seq::default();
    let mut out: Vec<Msg> = Vec::with_capacity(8);
    let mut published = dec.stats().clone();
    while let Some(m) = ws.next().await {
        let m = m.map_err(ws_err)?;
        let recv = crate::clock::now_ns();
        let bytes: &[u8] = match &m {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue, // tungstenite answers pings itself
        };
        counters.frames.fetch_add(1, Ordering::Relaxed);
        let market = cfg.market;
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
            push(&tx, cfg.full, &counters, msg)?;
        }
        // Decoder counters are published every 1024 frames (hot loops count locally).
        if dec.stats().frames - published.frames >= 1024 {
            counters.publish_decode(&published, dec.stats());
            published = dec.stats().clone();
        }
    }
    counters.publish_decode(&published, dec.stats());
    Ok(())
}
