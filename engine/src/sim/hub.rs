//! One market per server, shared by every connection: the broadcast of the synthetic streams.
//!
//! Binance runs one market per symbol and every connection subscribed to a stream receives the
//! same events of it; so does the simulator. A server's [`run`] task owns the union of all its
//! connections' subscriptions, paces the whole market at the configured rate (the events of
//! the subscribed streams, each stream drawn by its share of the mix), writes each event once
//! from the symbol's one [`SymbolMarket`] (the same one the REST snapshots read) and hands it
//! to every connection subscribed to that stream through the connection's bounded queue
//! ([`OUTBOX`] frames). Two connections to the same stream (a rotation's overlap, a second
//! client) see the same ids; USD-M's `/public` and `/market` connections see one book.
//!
//! A connection whose queue stays full for [`super::WRITE_TIMEOUT`] is a reader that takes
//! nothing: it is disconnected (counted in `slow_closes`), as Binance drops slow readers; the
//! other connections are held up no longer than that. When the server stops, the hub ends
//! and drops every queue: each connection writes what it was handed, then closes.

use super::market::{Rng, StreamKind};
use super::{combined_frame, lock, pick, Pace, Shared, SimConfig, SimCounters, WRITE_TIMEOUT};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tickwire_codecs::record::Market;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Frames a connection may have been handed and not yet written.
pub const OUTBOX: usize = 4_096;

/// One frame for one connection.
#[derive(Debug, Clone)]
pub struct Out {
    /// The frame as this connection is sent it (raw or combined).
    pub text: Utf8Bytes,
    /// [`tickwire_codecs::record::Kind::index`] of the record it decodes to.
    pub kind: usize,
    /// Ids were skipped right before this frame (a gap fault this connection can see).
    pub gap: bool,
}

/// What a connection tells the hub.
#[derive(Debug)]
pub enum Ctl {
    /// A connection opened: its queue, and whether it is sent combined-stream frames.
    Join {
        /// Connection id.
        id: u64,
        /// Its queue.
        tx: mpsc::Sender<Out>,
        /// Combined (`{"stream":..,"data":..}`) or raw frames.
        combined: bool,
    },
    /// The connection's streams now (symbol index, stream kind), replacing the last list.
    Streams {
        /// Connection id.
        id: u64,
        /// Its streams.
        streams: Vec<(usize, StreamKind)>,
    },
    /// The connection closed.
    Leave {
        /// Connection id.
        id: u64,
    },
}

/// A stream at least one connection subscribes to.
struct Stream {
    symbol: usize,
    kind: StreamKind,
    name: String,
    weight: u32,
    /// Subscribed connections and whether each has been sent a frame of this stream yet (a
    /// skip of ids is visible only after one).
    subs: Vec<(u64, bool)>,
}

struct Conn {
    tx: mpsc::Sender<Out>,
    combined: bool,
    streams: Vec<(usize, StreamKind)>,
}

/// The hub's state: connections and the union of their streams.
#[derive(Default)]
struct Table {
    conns: rustc_hash::FxHashMap<u64, Conn>,
    streams: Vec<Stream>,
    weights: Vec<u32>,
    total: u64,
}

impl Table {
    fn apply(&mut self, m: Ctl, markets: &[Shared], market: Market) {
        match m {
            Ctl::Join { id, tx, combined } => {
                self.conns.insert(
                    id,
                    Conn {
                        tx,
                        combined,
                        streams: Vec::new(),
                    },
                );
            }
            Ctl::Streams { id, streams } => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.streams = streams;
                }
            }
            Ctl::Leave { id } => {
                self.conns.remove(&id);
            }
        }
        self.rebuild(markets, market);
    }

    /// Recomputes the union, keeping each stream's `seen` flags.
    fn rebuild(&mut self, markets: &[Shared], market: Market) {
        let mut old = std::mem::take(&mut self.streams);
        let mut ids: Vec<&u64> = self.conns.keys().collect();
        ids.sort_unstable(); // a stable order: the same picks for the same subscriptions
        for id in ids {
            for &(symbol, kind) in &self.conns[id].streams {
                let seen = old
                    .iter()
                    .find(|s| s.symbol == symbol && s.kind == kind)
                    .and_then(|s| s.subs.iter().find(|x| x.0 == *id))
                    .is_some_and(|x| x.1);
                match self
                    .streams
                    .iter_mut()
                    .find(|s| s.symbol == symbol && s.kind == kind)
                {
                    Some(s) => s.subs.push((*id, seen)),
                    None => self.streams.push(Stream {
                        symbol,
                        kind,
                        name: lock(&markets[symbol]).stream(kind),
                        weight: weight(market, kind),
                        subs: vec![(*id, seen)],
                    }),
                }
            }
        }
        old.clear();
        self.weights = self.streams.iter().map(|s| s.weight).collect();
        self.total = self.weights.iter().map(|&w| u64::from(w)).sum();
    }
}

/// A stream kind's share of the mix of `market` (1 for kinds outside it).
fn weight(market: Market, kind: StreamKind) -> u32 {
    StreamKind::mix(market)
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(1, |(_, w)| *w)
}

/// Runs a server's market until `stop`: paces `rate` events a second over the subscribed
/// streams (0: as fast as the connections take them) and hands each to its subscribers.
pub async fn run(
    markets: Arc<Vec<Shared>>,
    cfg: SimConfig,
    counters: Arc<SimCounters>,
    mut ctl: mpsc::Receiver<Ctl>,
    mut stop: watch::Receiver<bool>,
) {
    let (market, rate, seed, faults) = (cfg.market, cfg.rate, cfg.seed, cfg.faults);
    let mut table = Table::default();
    let mut rng = Rng::new(seed);
    let mut data = String::with_capacity(4096);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pace = Pace {
        per_s: rate,
        scheduled: 0,
    };
    let t0 = std::time::Instant::now();
    // Connections to drop: (id, whether it was too slow rather than gone).
    let mut dead: Vec<(u64, bool)> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = ctl.recv() => {
                let Some(m) = m else { break };
                let had = table.total > 0;
                table.apply(m, &markets, market);
                if !had && table.total > 0 {
                    // Start the schedule now: no burst for the time without streams.
                    pace.skip_to(t0.elapsed());
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        if table.total == 0 {
            continue;
        }
        let n = pace.next(t0.elapsed());
        let now_ms = crate::source::clock::now_ns() / 1_000_000;
        for _ in 0..n {
            let i = pick(&mut rng, &table.weights, table.total);
            let s = &mut table.streams[i];
            let sequenced = matches!(
                s.kind,
                StreamKind::Trade | StreamKind::AggTrade | StreamKind::Depth
            );
            let gap = sequenced
                && faults.gap_every > 0
                && s.subs.iter().any(|x| x.1)
                && rng.below(faults.gap_every) == 0;
            {
                let mut m = lock(&markets[s.symbol]);
                if gap {
                    // Skipped right before this stream's next frame, which shows the jump.
                    m.skip_ids(s.kind, 1 + rng.below(3) as i64);
                }
                m.frame(s.kind, now_ms, &mut rng, &mut data);
            }
            let kind = s.kind.record_kind().index();
            let (mut raw, mut wrapped): (Option<Utf8Bytes>, Option<Utf8Bytes>) = (None, None);
            for (id, seen) in &mut s.subs {
                let Some(c) = table.conns.get(id) else {
                    continue;
                };
                let text = if c.combined {
                    wrapped
                        .get_or_insert_with(|| combined_frame(&s.name, &data).into())
                        .clone()
                } else {
                    raw.get_or_insert_with(|| data.as_str().into()).clone()
                };
                let out = Out {
                    text,
                    kind,
                    gap: gap && *seen,
                };
                *seen = true;
                match c.tx.try_send(out) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(out)) => {
                        match tokio::time::timeout(WRITE_TIMEOUT, c.tx.send(out)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => dead.push((*id, false)),
                            Err(_) => dead.push((*id, true)),
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => dead.push((*id, false)),
                }
            }
        }
        if !dead.is_empty() {
            for (id, slow) in dead.drain(..) {
                if table.conns.remove(&id).is_some() && slow {
                    counters.slow_closes.fetch_add(1, Ordering::Relaxed);
                }
            }
            table.rebuild(&markets, market);
        }
    }
    // Dropping the table drops every queue: each connection writes what it holds and closes.
}
