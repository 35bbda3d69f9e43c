//! WebSocket source: one connection, decoded on the task that reads it.
//!
//! The receive time is taken when a frame arrives, before decoding. Records go to the pipeline
//! through a bounded queue whose full policy is explicit ([`FullPolicy`]): wait up to a bound,
//! then drop the newest record and count it. Trade, aggregate-trade and depth-diff sequences
//! are checked per symbol; a break becomes a `gap` record in the same queue, so the stores
//! show where data is missing.
//!
//! Reconnects use exponential backoff with jitter; a reconnect is recorded as `gap` records.
//! An idle watchdog reconnects a connection that has been silent (no frame, no ping) for
//! `idle_timeout`. Frames over [`MAX_FRAME`] bytes are refused unread and counted.
//!
//! Subscribe mode (`subscribe`): the source connects to the bare `/stream` and sends the
//! streams as `SUBSCRIBE` requests of at most 200 streams, at most 4 control messages a
//! second (Binance allows 5 incoming messages a second, pongs included), then
//! `LIST_SUBSCRIPTIONS`; each answer is matched to its request by id, and an error answer or
//! a list that differs from what was asked is reported and counted (`control_errors`).
//!
//! Order books (`rest` set): every depth diff also feeds the symbol's [`crate::source::book::BookSync`];
//! a book that needs a snapshot (first sync, a break, a snapshot too old) is queued for a REST
//! request on its market's [`crate::source::rest::RestHost`], which all connections of the market share
//! and which keeps every request within Binance's request-weight budget (books never synced
//! first, then resyncs oldest first; 429 and 418 pause it). A book whose snapshot does
//! not bridge its diffs is asked again with a backoff of its own (250 ms doubling to 30 s),
//! logged after its third attempt with the ids that did not meet, and counted in
//! `books_unsynced` while it waits. The break itself is the sequence `gap` record; `resyncs`
//! and `books_synced` count the rest. With `book_every`, each
//! live book's top levels are written as `depth_snapshot` records.
//!
//! Rotation ([`rotating`]): Binance closes every connection after 24 h. Before that (after
//! `rotate_after`) a second connection to the same streams is opened and the old one hands
//! over to it. The new connection holds what it receives until the old one has read a record
//! the new one also received: both get the same frames in the same order, so by then every
//! frame sent before the new connection subscribed has been read and delivered by the old
//! one, which then leaves by itself (a connection that left as soon as the new one delivered
//! lost what was still unread in its socket). An old connection that reads nothing for
//! [`QUIET`] meanwhile has nothing left to deliver and is stopped. The new connection then
//! releases what it held.
//! From the hand-over until the new one has passed every position the old one reached, an
//! [`Overlap`] filter drops the duplicates: a record whose position (trade, aggregate-trade or
//! update id; event time for kinds without an id) is not beyond the last one seen for its
//! (kind, symbol, interval) is counted in `duplicates` and dropped. An old connection that has
//! done neither after [`HANDOVER_LIMIT`] is stopped (counted in `handover_timeouts`). Outside
//! rotations nothing is filtered.
//!
//! ## The room
//!
//! `source/` is where a tick enters: the connection and its rotation (this module), the order
//! books (`book`), REST with its weight budget (`rest`), the REST-only series pollers
//! (`series`), raw capture and its replay (`capture`) and the receive clock (`clock`). It may
//! call `pipeline::queue` (to hand records on), `pipeline::publish` (to publish a frame's
//! records right after decoding) and `pipeline::names`; never a sink, the cache or HTTP.

pub mod book;
pub mod capture;
pub mod clock;
pub mod rest;
pub mod series;

use crate::pipeline::queue::{Bundle, FullPolicy, Msg, QueueCounters, MAX_BUNDLE};
use crate::source::capture::verdict;
use crossbeam_channel::{SendTimeoutError, Sender};
use futures_util::{SinkExt, StreamExt};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Connect to the bare `/stream` and SUBSCRIBE to the URL's `streams=` list.
    pub subscribe: bool,
    /// Reconnect when nothing (not even a ping) has arrived for this long.
    pub idle_timeout: Duration,
    /// The market's REST host for depth snapshots: with it, every symbol's depth diffs keep a
    /// live order book ([`crate::source::book::BookSync`]), synced and resynced from `/api/v3/depth`
    /// (spot) or `/fapi/v1/depth` (USD-M), through the host's weight budget.
    pub rest: Option<Arc<crate::source::rest::RestHost>>,
    /// Levels of those snapshots (`limit`; its weight is Binance's for it).
    pub depth_limit: usize,
    /// With `rest`: emit a `depth_snapshot` record of each live book's top `book_levels`
    /// levels this often (and once more at the end); `None`: no such records.
    pub book_every: Option<Duration>,
    /// Levels a side in those records.
    pub book_levels: usize,
    /// Publish the live books here every 100 ms (for the query API's `/v1/book`).
    pub live: Option<Arc<crate::source::book::LiveBooks>>,
    /// Set by [`rotating`]: this connection's seat in a rotation (the duplicate filter and
    /// hand-over it shares with the connection before or after it).
    pub rotation: Option<Seat>,
    /// Publish each frame's records here right after decoding it (before they are queued).
    pub publish: Option<Arc<crate::pipeline::publish::SharedPublisher>>,
    /// Connection attempts to this host, shared with every connection to it.
    pub attempts: Option<Arc<AttemptGate>>,
    /// Streams added to or removed from this connection while it runs (listings).
    pub changes: Option<Arc<StreamChanges>>,
    /// Keep every frame, snapshot answer and connection event here ([`crate::source::capture`]).
    pub capture: Option<Arc<crate::source::capture::Capture>>,
    /// Where each sequenced stream ended before this process started ([`Resume`]).
    pub resume: Option<Arc<Resume>>,
}

/// Where each sequenced stream (trade, aggregate trade, depth diff; per market and symbol)
/// ended before this process started: the last id a collector stored in JetStream, read at
/// start. A stream's first record is checked against it like any next record, so what a
/// restarted (or killed) collector missed is a `gap` record (reason `reconnect`) with the
/// exact ids; a first record at or before it (another collector went on meanwhile) is no gap.
#[derive(Debug, Default)]
pub struct Resume(std::sync::Mutex<FxHashMap<(u8, u8, SymbolId), i64>>);

impl Resume {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<(u8, u8, SymbolId), i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream ended at `id` (the highest one given counts).
    pub fn insert(&self, kind: Kind, market: Market, symbol: SymbolId, id: i64) {
        let mut g = self.lock();
        let e = g.entry((kind as u8, market as u8, symbol)).or_insert(id);
        *e = (*e).max(id);
    }

    /// Streams known.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no stream is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the stream ended, once (the first connection to see it takes it).
    fn take(&self, kind: u8, market: Market, symbol: SymbolId) -> Option<i64> {
        self.lock().remove(&(kind, market as u8, symbol))
    }
}

/// Records that reach the store before anything this process receives (a killed collector's
/// spill file, sent first), fed in their order: each stream's are checked against where it
/// ended ([`Resume`]), like a connection's, and at [`AheadCheck::finish`] the stream ends at
/// their last id. The `gap` records (reason `reconnect`) are the holes before and between
/// them: what the killed process held in memory and lost. So a hole is reported where it is,
/// not as one hole over ids the spill holds.
pub struct AheadCheck {
    resume: Arc<Resume>,
    seqs: [Seq; 2],
    gaps: Vec<Gap>,
}

impl AheadCheck {
    pub fn new(resume: Arc<Resume>) -> AheadCheck {
        let mut seqs: [Seq; 2] = Default::default();
        for s in &mut seqs {
            s.resume = Some(resume.clone());
        }
        AheadCheck {
            resume,
            seqs,
            gaps: Vec::new(),
        }
    }

    /// The next record sent ahead.
    pub fn check(&mut self, r: &Record) {
        let Some(market) = Market::from_code(r.header().market) else {
            return;
        };
        let seq = &mut self.seqs[usize::from(market == Market::Usdm)];
        if let Record::Gap(g) = r {
            // A break the killed process saw and reported: what follows it is not checked.
            let key = (g.stream, g.header.symbol);
            seq.last.remove(&key);
            self.resume.take(key.0, market, key.1);
            return;
        }
        if let Some(mut g) = seq.check(r, market) {
            g.reason = GapReason::Reconnect as u8;
            self.gaps.push(g);
        }
    }

    /// The gap records found; the streams now end where the records sent ahead do.
    pub fn finish(self) -> Vec<Gap> {
        for (s, market) in self.seqs.iter().zip([Market::Spot, Market::Usdm]) {
            for (&(kind, sym), &last) in &s.last {
                if let Some(k) = Kind::from_code(kind) {
                    self.resume.insert(k, market, sym, last);
                }
            }
        }
        self.gaps
    }
}

impl std::fmt::Debug for AheadCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AheadCheck")
            .field("gaps", &self.gaps.len())
            .finish()
    }
}

/// Streams added to a running connection (new listings) or removed from it (delistings):
/// sent as `SUBSCRIBE` / `UNSUBSCRIBE` on the connection, paced with its other control
/// messages and matched to their answers, and sent again after every reconnect (the URL
/// names only the streams the connection started with).
#[derive(Debug)]
pub struct StreamChanges {
    state: std::sync::Mutex<(Vec<String>, Vec<String>)>,
    version: watch::Sender<u64>,
}

impl Default for StreamChanges {
    fn default() -> Self {
        StreamChanges {
            state: Default::default(),
            version: watch::channel(0).0,
        }
    }
}

impl StreamChanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<String>, Vec<String>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `streams` to the connection.
    pub fn subscribe(&self, streams: &[String]) {
        let mut g = self.lock();
        for st in streams {
            g.1.retain(|x| x != st);
            if !g.0.contains(st) {
                g.0.push(st.clone());
            }
        }
        drop(g);
        self.version.send_modify(|v| *v += 1);
    }

    /// Removes `streams` from the connection.
    pub fn unsubscribe(&self, streams: &[String]) {
        let mut g = self.lock();
        for st in streams {
            g.0.retain(|x| x != st);
            if !g.1.contains(st) {
                g.1.push(st.clone());
            }
        }
        drop(g);
        self.version.send_modify(|v| *v += 1);
    }

    /// (added, removed) since the connection started.
    pub fn current(&self) -> (Vec<String>, Vec<String>) {
        self.lock().clone()
    }
}

/// Queues on `ctl` what `changes` asks beyond what this connection has applied.
fn apply_changes(
    changes: &StreamChanges,
    applied: &mut (rustc_hash::FxHashSet<String>, rustc_hash::FxHashSet<String>),
    ctl: &mut Control,
    next_id: &mut u64,
) {
    let (added, removed) = changes.current();
    let sub: Vec<String> = added
        .iter()
        .filter(|s| !applied.0.contains(*s))
        .cloned()
        .collect();
    // Streams added before and now gone again, and streams the URL had that are removed.
    let mut unsub: Vec<String> = applied
        .0
        .iter()
        .filter(|s| !added.contains(s))
        .cloned()
        .collect();
    unsub.extend(removed.iter().filter(|s| !applied.1.contains(*s)).cloned());
    for (method, list) in [("SUBSCRIBE", &sub), ("UNSUBSCRIBE", &unsub)] {
        for chunk in list.chunks(SUBSCRIBE_CHUNK) {
            let params: Vec<String> = chunk.iter().map(|s| format!("\"{s}\"")).collect();
            ctl.queue.push_back((
                *next_id,
                format!(
                    "{{\"method\":\"{method}\",\"params\":[{}],\"id\":{}}}",
                    params.join(","),
                    *next_id
                ),
            ));
            *next_id += 1;
        }
    }
    for st in &unsub {
        applied.0.remove(st);
        if removed.contains(st) {
            applied.1.insert(st.clone());
        }
    }
    applied.0.extend(sub);
}

/// Connection attempts to one WebSocket host, shared by every connection to it: at most
/// `limit` in any `window`, so that a reconnect storm stays within Binance's 300 attempts per
/// 5 minutes per IP ([`AttemptGate::binance`] keeps 80% of it). An attempt that does not fit
/// waits for the oldest one to leave the window.
#[derive(Debug)]
pub struct AttemptGate {
    limit: usize,
    window: Duration,
    times: std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
    /// Attempts that had to wait.
    pub waited: std::sync::atomic::AtomicU64,
}

impl AttemptGate {
    /// At most `limit` attempts in any `window`.
    pub fn new(limit: usize, window: Duration) -> Arc<AttemptGate> {
        Arc::new(AttemptGate {
            limit: limit.max(1),
            window,
            times: Default::default(),
            waited: Default::default(),
        })
    }

    /// 240 attempts in 5 minutes: 80% of Binance's limit per IP.
    pub fn binance() -> Arc<AttemptGate> {
        AttemptGate::new(240, Duration::from_secs(300))
    }

    /// Waits until an attempt fits in the window, and counts it; true if it had to wait.
    pub async fn acquire(&self) -> bool {
        let mut counted = false;
        loop {
            let wait = {
                let now = tokio::time::Instant::now();
                let mut q = self.times.lock().unwrap_or_else(|p| p.into_inner());
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                if q.len() < self.limit {
                    q.push_back(now);
                    return counted;
                }
                q.front()
                    .map_or(Duration::ZERO, |t| self.window - now.duration_since(*t))
            };
            if !counted {
                counted = true;
                self.waited.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{} connection attempts in {:?}: the next waits {:.1} s",
                    self.limit,
                    self.window,
                    wait.as_secs_f64()
                );
            }
            tokio::time::sleep(wait + Duration::from_millis(1)).await;
        }
    }
}

/// A record's place in its stream, for the duplicate filter: (kind, symbol, interval) and a
/// position that grows along the stream.
fn position(r: &Record) -> Option<((u8, SymbolId, u8), i64)> {
    let h = r.header();
    let (sub, pos) = match r {
        Record::Trade(t) => (0, t.trade_id),
        Record::AggTrade(a) => (0, a.agg_trade_id),
        Record::DepthUpdate(d) => (0, d.final_update_id),
        Record::DepthSnapshot(d) => (0, d.last_update_id),
        Record::BookTicker(b) if b.update_id != NULL_I64 => (0, b.update_id),
        Record::Kline(k) => (k.interval, h.event_time),
        Record::Gap(_) => return None,
        _ => (0, h.event_time),
    };
    (pos != NULL_I64).then_some(((r.kind() as u8, h.symbol, sub), pos))
}

/// Whether a record's position is unique along its stream: no two frames carry the same
/// trade, aggregate-trade or depth-diff id. Two bookTickers with no book change between them
/// carry the same update id, and two frames can share an event time.
fn unique_position(r: &Record) -> bool {
    matches!(
        r,
        Record::Trade(_) | Record::AggTrade(_) | Record::DepthUpdate(_)
    )
}

/// A connection's seat in a rotation: the filter it shares and its generation (the epoch of
/// the rotation that opened it; 0 for the first connection).
#[derive(Debug, Clone)]
pub struct Seat {
    /// The duplicate filter and hand-over of the rotation.
    pub overlap: Arc<Overlap>,
    /// This connection's generation.
    pub gen: u64,
    /// Raised at this connection's first record (held or delivered).
    pub receiving: Arc<std::sync::atomic::AtomicBool>,
}

/// The duplicate filter and hand-over of a rotation (see the module docs).
#[derive(Debug, Default)]
pub struct Overlap {
    active: std::sync::atomic::AtomicBool,
    /// Incremented at each rotation; a connection merges its positions once per epoch.
    epoch: std::sync::atomic::AtomicU64,
    /// The last epoch some connection merged its positions in.
    merged: std::sync::atomic::AtomicU64,
    /// The generation of the connection that holds its records until the old one has handed
    /// over (0: none).
    holding: std::sync::atomic::AtomicU64,
    /// The old connection has read a record the new one received.
    passed: std::sync::atomic::AtomicBool,
    /// When the old connection of a hand-over last read a frame (ns), or the hand-over began.
    old_read_ns: std::sync::atomic::AtomicI64,
    /// Told at each rotation's start: the running connection merges its positions at once
    /// (a permit is kept if it is busy; it merges at its next record anyway).
    begun: tokio::sync::Notify,
    state: std::sync::Mutex<OverlapState>,
}

/// A stream key of the filter: (kind, symbol, interval).
type StreamKey = (u8, SymbolId, u8);

#[derive(Debug, Default)]
struct OverlapState {
    /// Last position seen per key while active.
    last: FxHashMap<StreamKey, i64>,
    /// After the old connection left: the positions the new one has yet to pass.
    pending: Option<FxHashMap<StreamKey, i64>>,
    /// The new connection's first position per stream (and whether it is unique along the
    /// stream): the old one may leave at any of them.
    join: FxHashMap<StreamKey, (i64, bool)>,
}

impl Overlap {
    fn lock(&self) -> std::sync::MutexGuard<'_, OverlapState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts filtering (a rotation begins); the running connection merges its positions at
    /// its next record. Returns the generation of the connection to open next, which holds
    /// its records until [`Overlap::old_left`].
    pub fn begin(&self) -> u64 {
        let mut g = self.lock();
        // `last` is kept: the running connection's own positions leave out what it saw only
        // as duplicates of the connection before it, so they alone could be behind what was
        // delivered; merged into `last` (by max) they bring it up to date.
        g.pending = None;
        g.join.clear();
        self.passed.store(false, Ordering::Release);
        self.old_read_ns
            .store(crate::source::clock::now_ns(), Ordering::Release);
        let gen = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.holding.store(gen, Ordering::Release);
        self.active.store(true, Ordering::Release);
        drop(g);
        self.begun.notify_one();
        gen
    }

    /// Whether the connection of generation `gen` holds its records now.
    fn holds(&self, gen: u64) -> bool {
        gen != 0 && self.holding.load(Ordering::Acquire) == gen
    }

    /// The holding connection's record: its first position in each stream marks a place
    /// where the old connection may leave (a `depth_snapshot` is made from the connection's
    /// own book, not received).
    fn hold(&self, r: &Record) {
        if matches!(r, Record::DepthSnapshot(_)) {
            return;
        }
        if let Some((k, p)) = position(r) {
            self.lock().join.entry(k).or_insert((p, unique_position(r)));
        }
    }

    /// The old connection of a hand-over read a frame at `ns`.
    fn old_read(&self, gen: u64, ns: i64) {
        let h = self.holding.load(Ordering::Relaxed);
        if h != 0 && h != gen {
            self.old_read_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// How long the old connection of a hand-over has read nothing (since the later of its
    /// last frame and the hand-over's start).
    fn old_quiet_for(&self) -> Duration {
        let since = crate::source::clock::now_ns() - self.old_read_ns.load(Ordering::Relaxed);
        Duration::from_nanos(since.max(0) as u64)
    }

    /// Whether the connection of generation `gen` is the old one of a hand-over and has read
    /// the new one's first record (so it may leave).
    fn may_leave(&self, gen: u64) -> bool {
        let h = self.holding.load(Ordering::Acquire);
        h != 0 && h != gen && self.passed.load(Ordering::Acquire)
    }

    /// Whether a connection has merged its positions since the last [`Overlap::begin`].
    pub fn merged(&self) -> bool {
        self.merged.load(Ordering::Acquire) == self.epoch.load(Ordering::Acquire)
    }

    /// Merges a connection's last positions (once per epoch; `seen` is its epoch).
    fn merge(&self, positions: &FxHashMap<(u8, SymbolId, u8), i64>, seen: &mut u64) {
        let epoch = self.epoch.load(Ordering::Acquire);
        if *seen == epoch {
            return;
        }
        *seen = epoch;
        let mut g = self.lock();
        for (k, &p) in positions {
            let e = g.last.entry(*k).or_insert(p);
            *e = (*e).max(p);
        }
        self.merged.store(epoch, Ordering::Release);
    }

    /// The old connection has left: the new one releases what it held, and filtering goes on
    /// until it has passed where the old one was.
    pub fn old_left(&self) {
        let mut g = self.lock();
        g.pending = Some(g.last.clone());
        if g.last.is_empty() {
            self.active.store(false, Ordering::Release);
        }
        self.holding.store(0, Ordering::Release);
    }

    /// Stops filtering.
    pub fn end(&self) {
        self.active.store(false, Ordering::Release);
    }

    /// Whether the filter is on.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// True when `r` repeats a position already seen (drop it).
    fn duplicate(&self, r: &Record) -> bool {
        let Some((key, pos)) = position(r) else {
            return false;
        };
        let mut g = self.lock();
        // The old connection has reached a record the new one received: a unique position at
        // it, any other only past it (an equal one may be an earlier frame).
        if g.join
            .get(&key)
            .is_some_and(|&(p, unique)| pos > p || (unique && pos == p))
        {
            self.passed.store(true, Ordering::Release);
        }
        let dup = g.last.get(&key).is_some_and(|&l| pos <= l);
        if !dup {
            g.last.insert(key, pos);
            let mut done = false;
            if let Some(p) = g.pending.as_mut() {
                if p.get(&key).is_some_and(|&l| pos > l) {
                    p.remove(&key);
                }
                done = p.is_empty();
            }
            if done {
                self.active.store(false, Ordering::Release);
            }
        }
        dup
    }
}

/// A book whose snapshot did not bridge (or failed) `n` times waits `RETRY_FIRST * 2^(n-1)`,
/// at most `RETRY_MAX`, before its next one.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A book still not synced after this many snapshots is logged (then at every doubling).
const RETRY_LOG_AT: u32 = 3;

/// A book asked for this many snapshots within [`CHURN_WINDOW`] waits before the next
/// ([`churn_delay`]): a book that breaks again and again does not spend the host's budget.
const CHURN_FREE: usize = 3;
const CHURN_WINDOW: Duration = Duration::from_secs(60);

/// The wait before the next snapshot of a book that was asked for `recent` times in the last
/// [`CHURN_WINDOW`]: none up to [`CHURN_FREE`], then 1 s doubling to 60 s.
fn churn_delay(recent: usize) -> Duration {
    if recent < CHURN_FREE {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (recent - CHURN_FREE).min(6)).min(CHURN_WINDOW)
}

/// The wait before the next snapshot of a book that failed `attempts` times in a row.
fn retry_delay(attempts: u32) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    RETRY_FIRST
        .saturating_mul(1u32 << (attempts - 1).min(16))
        .min(RETRY_MAX)
}

/// Parses a REST depth snapshot body: (lastUpdateId, bids, asks) with exact levels.
pub fn parse_snapshot(body: &str) -> Result<(i64, Vec<Level>, Vec<Level>), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let last = v
        .get("lastUpdateId")
        .and_then(serde_json::Value::as_i64)
        .ok_or("no lastUpdateId")?;
    let side = |k: &str| -> Result<Vec<Level>, String> {
        let Some(a) = v.get(k).and_then(|x| x.as_array()) else {
            return Err(format!("no {k}"));
        };
        a.iter()
            .map(|l| {
                let p = l.get(0).and_then(|x| x.as_str()).ok_or("bad level")?;
                let q = l.get(1).and_then(|x| x.as_str()).ok_or("bad level")?;
                let p =
                    tickwire_codecs::decimal::parse_i64(p.as_bytes()).map_err(|e| e.to_string())?;
                let q = tickwire_codecs::decimal::parse_i128(q.as_bytes())
                    .map_err(|e| e.to_string())?;
                Ok(Level {
                    price: p.raw,
                    qty: q.raw.into(),
                    price_dp: p.dp,
                    qty_dp: q.dp,
                    pad: [0; 6],
                })
            })
            .collect()
    };
    Ok((last, side("bids")?, side("asks")?))
}

/// The live books of one connection and their REST snapshot requests.
struct Books {
    market: Market,
    host: Arc<crate::source::rest::RestHost>,
    /// Books that have been live on this connection (a resync of one goes after the books
    /// never synced).
    ever_live: rustc_hash::FxHashSet<SymbolId>,
    books: FxHashMap<SymbolId, crate::source::book::BookSync>,
    /// Symbols waiting for a snapshot request, each with the instant before which it must
    /// not be asked (its backoff).
    want: std::collections::VecDeque<(SymbolId, tokio::time::Instant)>,
    /// Requested, answer not yet taken.
    asked: rustc_hash::FxHashSet<SymbolId>,
    /// Snapshots taken for a book since it was last live that did not make it live.
    attempts: FxHashMap<SymbolId, u32>,
    /// When each book's recent snapshot requests went (within [`CHURN_WINDOW`]).
    recent: FxHashMap<SymbolId, std::collections::VecDeque<tokio::time::Instant>>,
    /// Books of this connection that are not live (added to the shared `books_unsynced`).
    unsynced: u64,
    /// The shared counters (`books_unsynced` is kept equal to the sum over connections).
    counters: Arc<QueueCounters>,
}

impl Drop for Books {
    fn drop(&mut self) {
        self.counters
            .books_unsynced
            .fetch_sub(self.unsynced, Ordering::Relaxed);
        self.host
            .stats
            .books_waiting
            .fetch_sub(self.unsynced, Ordering::Relaxed);
    }
}

impl Books {
    fn new(
        market: Market,
        host: Arc<crate::source::rest::RestHost>,
        counters: Arc<QueueCounters>,
    ) -> Books {
        Books {
            market,
            host,
            ever_live: Default::default(),
            books: FxHashMap::default(),
            want: Default::default(),
            asked: Default::default(),
            attempts: FxHashMap::default(),
            recent: FxHashMap::default(),
            unsynced: 0,
            counters,
        }
    }

    /// Forgets every book (after a reconnect, each starts over).
    fn reset(&mut self) {
        self.books.clear();
        self.want.clear();
        self.attempts.clear();
        self.counters
            .books_unsynced
            .fetch_sub(self.unsynced, Ordering::Relaxed);
        self.host
            .stats
            .books_waiting
            .fetch_sub(self.unsynced, Ordering::Relaxed);
        self.unsynced = 0;
    }

    /// Queues a snapshot request for `sym`, after its backoff.
    fn need(&mut self, sym: SymbolId) {
        if !self.asked.contains(&sym) && !self.want.iter().any(|(s, _)| *s == sym) {
            let n = self.attempts.get(&sym).copied().unwrap_or(0);
            let now = tokio::time::Instant::now();
            let recent = self.recent.get_mut(&sym).map_or(0, |q| {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= CHURN_WINDOW)
                {
                    q.pop_front();
                }
                q.len()
            });
            let wait = retry_delay(n).max(churn_delay(recent));
            self.want.push_back((sym, now + wait));
        }
    }

    /// When the next book's backoff ends (it is then handed to the host's queue).
    fn due(&self) -> Option<tokio::time::Instant> {
        self.want.iter().map(|(_, at)| *at).min()
    }

    /// Takes the waiting symbol whose backoff ends first.
    fn take(&mut self) -> Option<SymbolId> {
        let i = (0..self.want.len()).min_by_key(|&i| self.want[i].1)?;
        self.want.remove(i).map(|(s, _)| s)
    }

    /// Moves the shared `books_unsynced` by a book's change of state.
    fn track(&mut self, was_live: bool, live: bool) {
        let waiting = &self.host.stats.books_waiting;
        if was_live && !live {
            self.unsynced += 1;
            self.counters.books_unsynced.fetch_add(1, Ordering::Relaxed);
            waiting.fetch_add(1, Ordering::Relaxed);
        } else if !was_live && live {
            self.unsynced -= 1;
            self.counters.books_unsynced.fetch_sub(1, Ordering::Relaxed);
            waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn on_diff(&mut self, d: &DepthUpdate, lv: &[Level], c: &QueueCounters) {
        use crate::source::book::{BookSync, SyncEvent};
        let market = self.market;
        let sym = d.header.symbol;
        let (was_live, ev, live) = match self.books.get_mut(&sym) {
            Some(book) => {
                let was = book.is_live();
                let ev = book.on_diff(d, lv);
                (was, ev, book.is_live())
            }
            None => {
                let mut book = BookSync::new(market);
                let ev = book.on_diff(d, lv);
                let live = book.is_live();
                self.books.insert(sym, book);
                (true, ev, live) // a new book counts as one that just stopped being live
            }
        };
        self.track(was_live, live);
        match ev {
            SyncEvent::Buffered | SyncEvent::NeedSnapshot => self.need(sym),
            SyncEvent::Gap { .. } => {
                // The break itself is already a `gap` record (sequence); this rebuilds the book.
                c.resyncs.fetch_add(1, Ordering::Relaxed);
                self.host.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                self.need(sym);
            }
            SyncEvent::Applied if !self.attempts.is_empty() => {
                self.attempts.remove(&sym);
            }
            _ => {}
        }
    }

    fn on_snapshot(
        &mut self,
        sym: SymbolId,
        r: Result<String, String>,
        c: &QueueCounters,
        url: &str,
        names: &SymbolTable,
    ) {
        use crate::source::book::SyncEvent;
        self.asked.remove(&sym);
        let parsed = r.and_then(|b| parse_snapshot(&b));
        let Some(book) = self.books.get_mut(&sym) else {
            return;
        };
        let was_live = book.is_live();
        let why = match parsed {
            Ok((last, bids, asks)) => {
                let first = book.first_buffered();
                let ev = book.on_snapshot(last, &bids, &asks);
                let live = book.is_live();
                self.track(was_live, live);
                match ev {
                        SyncEvent::Live => {
                        // Its attempts are forgotten once a diff applies on top (a snapshot
                        // from another book may look newer and break at the next diff).
                        c.books_synced.fetch_add(1, Ordering::Relaxed);
                        self.host.stats.books_synced.fetch_add(1, Ordering::Relaxed);
                        self.ever_live.insert(sym);
                        return;
                    }
                    _ => match first {
                        Some(u) => format!(
                            "snapshot lastUpdateId {last} does not reach the first buffered diff {u}"
                        ),
                        None => format!("snapshot lastUpdateId {last} did not bridge"),
                    },
                }
            }
            Err(e) => {
                c.rest_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("source {url}: depth snapshot: {e}");
                e
            }
        };
        let n = self.attempts.entry(sym).or_insert(0);
        *n += 1;
        let n = *n;
        if n >= RETRY_LOG_AT && n.is_power_of_two() || n == RETRY_LOG_AT {
            tracing::warn!(
                "source {url}: book {} not synced after {n} snapshots ({why}); next in {:.2} s",
                names.name(sym).unwrap_or_default(),
                retry_delay(n).as_secs_f64()
            );
        }
        self.need(sym);
    }

    /// Publishes the top levels of the books the query API has asked for (withdraws the ones
    /// not live).
    fn publish(&self, live: &crate::source::book::LiveBooks, names: &SymbolTable) {
        let wanted = live.wanted(self.market);
        if wanted.is_empty() {
            return;
        }
        let now = crate::source::clock::now_ns();
        for name in wanted {
            let Some(b) = names.get(&name).and_then(|sym| self.books.get(&sym)) else {
                continue;
            };
            if !b.is_live() {
                live.withdraw(self.market, &name);
                continue;
            }
            let (bids, asks) = b.top(crate::source::book::LiveBooks::LEVELS);
            live.publish(
                self.market,
                &name,
                crate::source::book::BookView {
                    last_update_id: b.last_update_id(),
                    at_ns: now,
                    bids,
                    asks,
                },
            );
        }
    }

    /// `depth_snapshot` records of the live books' top `n` levels, at `now`.
    fn snapshots(&self, n: usize, market: Market, out: &mut Vec<Msg>, now: i64) {
        for (sym, b) in &self.books {
            if !b.is_live() {
                continue;
            }
            let (bids, asks) = b.top(n);
            let levels = LevelRange {
                start: 0,
                bids: bids.len() as u32,
                asks: asks.len() as u32,
                pad: 0,
            };
            let mut arena = bids;
            arena.extend(asks);
            let rec = Record::DepthSnapshot(DepthSnapshot {
                header: Header::new(Kind::DepthSnapshot, market, *sym, NULL_I64, now),
                last_update_id: b.last_update_id(),
                levels,
            });
            out.push(Msg::new(rec, &arena));
        }
    }
}

impl SourceConfig {
    /// `url` of `market` with the defaults: the default full policy, no drain on stop, URL
    /// streams (no SUBSCRIBE), a 60 s idle watchdog.
    pub fn new(url: impl Into<String>, market: Market) -> Self {
        SourceConfig {
            url: url.into(),
            market,
            full: FullPolicy::default(),
            drain_on_stop: false,
            subscribe: false,
            idle_timeout: Duration::from_secs(60),
            rest: None,
            depth_limit: 1000,
            book_every: None,
            book_levels: 20,
            live: None,
            rotation: None,
            publish: None,
            attempts: None,
            changes: None,
            capture: None,
            resume: None,
        }
    }
}

/// How a connection is named in the log: its URL without the stream list, with the number
/// of streams (`ws://host/stream (28 streams)`).
pub fn label(url: &str) -> String {
    match url.split_once("?streams=") {
        Some((base, list)) => format!("{base} ({} streams)", list.split('/').count()),
        None => url.to_string(),
    }
}

/// The largest frame read (1 MiB; Binance's largest, a 5000-level depth snapshot over REST,
/// is not a WebSocket frame). Larger frames are counted and skipped unread.
pub const MAX_FRAME: usize = 1 << 20;

/// Streams per SUBSCRIBE request.
const SUBSCRIBE_CHUNK: usize = 200;
/// Time between two control messages (4 a second: under Binance's 5, leaving room for pongs).
const CONTROL_GAP: Duration = Duration::from_millis(250);

/// The control requests of one connection and their answers.
struct Control {
    /// Requests not yet sent: (id, JSON).
    queue: std::collections::VecDeque<(u64, String)>,
    /// Sent, not answered: id -> method.
    pending: FxHashMap<u64, &'static str>,
    /// The streams asked for, sorted (for the LIST_SUBSCRIPTIONS check).
    want: Vec<String>,
}

impl Control {
    /// No request yet (a URL connection that is sent listings later).
    fn empty() -> Control {
        Control {
            queue: Default::default(),
            pending: FxHashMap::default(),
            want: Vec::new(),
        }
    }

    fn new(streams: &[String], first_id: u64) -> Control {
        let mut queue = std::collections::VecDeque::new();
        let mut id = first_id;
        for chunk in streams.chunks(SUBSCRIBE_CHUNK) {
            let params: Vec<String> = chunk.iter().map(|s| format!("\"{s}\"")).collect();
            queue.push_back((
                id,
                format!(
                    "{{\"method\":\"SUBSCRIBE\",\"params\":[{}],\"id\":{id}}}",
                    params.join(",")
                ),
            ));
            id += 1;
        }
        queue.push_back((
            id,
            format!("{{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":{id}}}"),
        ));
        let mut want = streams.to_vec();
        want.sort();
        Control {
            queue,
            pending: FxHashMap::default(),
            want,
        }
    }

    /// Whether `b` is a control answer rather than market data.
    fn is_answer(b: &[u8]) -> bool {
        [&b"{\"result\""[..], b"{\"error\"", b"{\"code\"", b"{\"id\""]
            .iter()
            .any(|p| b.starts_with(p))
    }

    /// Matches an answer to its request; returns an error text for a failure.
    fn answer(&mut self, b: &[u8]) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_slice(b).map_err(|e| format!("unreadable control answer: {e}"))?;
        let id = v.get("id").and_then(serde_json::Value::as_u64);
        let method = id.and_then(|i| self.pending.remove(&i));
        let Some(method) = method else {
            return Err(format!("answer to no request of ours: {v}"));
        };
        // Errors come as {"error":{"code":..,"msg":..},"id":..} or {"code":..,"msg":..,"id":..}.
        let err = v.get("error").or_else(|| v.get("code").map(|_| &v));
        if let Some(e) = err {
            return Err(format!("{method} (id {}) refused: {e}", id.unwrap_or(0)));
        }
        if method == "LIST_SUBSCRIPTIONS" {
            let mut have: Vec<String> = v
                .get("result")
                .and_then(|r| r.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            have.sort();
            if have != self.want {
                return Err(format!(
                    "subscribed to {} streams, the server lists {}",
                    self.want.len(),
                    have.len()
                ));
            }
        }
        Ok(())
    }
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
    /// A replay could not start.
    #[error("replay: {0}")]
    Replay(String),
}

/// Per-symbol sequence state.
#[derive(Default)]
struct Seq {
    last: FxHashMap<(u8, SymbolId), i64>,
    /// Where the streams ended before this process (a restarted collector's).
    resume: Option<Arc<Resume>>,
    /// The resume points taken since the capture last kept them: (kind, symbol, id).
    resumed: Vec<(u8, SymbolId, i64)>,
}

impl Seq {
    /// Moves past `rec` without checking it (a duplicate the other connection of a rotation
    /// delivered: proof that its id came).
    fn observe(&mut self, rec: &Record) {
        let (kind, last) = match rec {
            Record::Trade(t) => (Kind::Trade, t.trade_id),
            Record::AggTrade(a) => (Kind::AggTrade, a.agg_trade_id),
            Record::DepthUpdate(d) => (Kind::DepthUpdate, d.final_update_id),
            _ => return,
        };
        let e = self
            .last
            .entry((kind as u8, rec.header().symbol))
            .or_insert(last);
        *e = (*e).max(last);
    }

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
        let mut reason = GapReason::Sequence;
        let expected = match before {
            Some(b) => b,
            None => {
                let b = self.resume.as_ref()?.take(key.0, market, h.symbol)?;
                self.resumed.push((key.0, h.symbol, b));
                // Another collector may have stored more meanwhile: nothing is missing.
                if first <= b || (prev != NULL_I64 && prev <= b && last > b) {
                    return None;
                }
                reason = GapReason::Reconnect;
                b
            }
        };
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
            reason: reason as u8,
            pad: [0; 6],
        };
        if kind == Kind::DepthUpdate && market == Market::Usdm && prev != NULL_I64 {
            g.expected = expected;
            g.got = prev;
        }
        Some(g)
    }
}

/// Room for a full bundle and the records of the frame that filled it, so a bundle is not
/// reallocated as it fills.
const BUNDLE_CAPACITY: usize = MAX_BUNDLE + 8;

/// Publishes the records of a bundle as they join it.
struct Publish<'a> {
    to: Option<&'a crate::pipeline::publish::SharedPublisher>,
    /// Records at the front of the bundle published already.
    done: usize,
}

impl Publish<'_> {
    /// Publishes the bundle's records not yet published.
    fn catch_up(&mut self, bundle: &Bundle) {
        if let Some(p) = self.to {
            p.publish(&bundle[self.done.min(bundle.len())..]);
        }
        self.done = bundle.len();
    }
}

/// Adds the frames a source has counted locally to the shared counter.
fn add_frames(c: &QueueCounters, frames: &mut u64) {
    if *frames > 0 {
        c.frames
            .fetch_add(std::mem::take(frames), Ordering::Relaxed);
    }
}

/// Publishes what is left of `bundle`, then sends it (left empty) under the full policy;
/// records dropped are counted (they were published, not stored).
fn push(
    tx: &Sender<Bundle>,
    full: FullPolicy,
    c: &QueueCounters,
    bundle: &mut Bundle,
    publish: &mut Publish<'_>,
) -> Result<(), SourceError> {
    publish.catch_up(bundle);
    publish.done = 0;
    if bundle.is_empty() {
        return Ok(());
    }
    let n = bundle.len() as u64;
    let msg = std::mem::replace(bundle, Vec::with_capacity(BUNDLE_CAPACITY));
    let r = match full {
        FullPolicy::Block { max_wait } => tx.send_timeout(msg, max_wait),
        FullPolicy::DropNewest => tx.try_send(msg).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(m) => SendTimeoutError::Timeout(m),
            crossbeam_channel::TrySendError::Disconnected(m) => SendTimeoutError::Disconnected(m),
        }),
    };
    match r {
        Ok(()) => {
            c.pushed.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }
        Err(SendTimeoutError::Timeout(_)) => {
            c.dropped.fetch_add(n, Ordering::Relaxed);
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

/// A connection (re)opened at `now`: after a reconnect, a `gap` record (reason reconnect) for
/// every sequenced stream; every book starts over. The same live and in replay.
fn on_open(
    now: i64,
    again: bool,
    market: Market,
    seq: &mut Seq,
    books: Option<&mut Books>,
    bundle: &mut Bundle,
) {
    if again {
        for ((kind, sym), last) in seq.last.drain() {
            let g = Gap {
                header: Header::new(Kind::Gap, market, sym, NULL_I64, now),
                expected: last + 1,
                got: NULL_I64,
                stream: kind,
                reason: GapReason::Reconnect as u8,
                pad: [0; 6],
            };
            bundle.push(Msg::new(Record::Gap(g), &[]));
        }
    }
    if let Some(b) = books {
        // Whatever was missed while disconnected: every book starts over.
        b.reset();
    }
}

/// One decoded record, after any rotation filter: its sequence check (a `gap` record before
/// it on a break), its book, then the record itself into the bundle. The same live and in
/// replay.
#[inline]
fn on_record(
    r: &Record,
    lv: &[Level],
    market: Market,
    seq: &mut Seq,
    books: Option<&mut Books>,
    counters: &QueueCounters,
    bundle: &mut Bundle,
) {
    if let Some(g) = seq.check(r, market) {
        if let Some(k) = Kind::from_code(g.stream) {
            counters.gaps[k.index()].fetch_add(1, Ordering::Relaxed);
        }
        bundle.push(Msg::new(Record::Gap(g), &[]));
    }
    if let (Record::DepthUpdate(d), Some(b)) = (r, books) {
        b.on_diff(d, lv, counters);
    }
    bundle.push(Msg::new(*r, lv));
}

/// A connection's part in a rotation: its seat, where it is per stream (merged into the
/// filter when the next rotation begins), and the records it holds until the connection
/// before it has handed over.
struct Rotated {
    seat: Seat,
    positions: FxHashMap<StreamKey, i64>,
    merged_epoch: u64,
    held: Vec<Msg>,
}

impl Rotated {
    fn new(seat: Seat) -> Self {
        Rotated {
            seat,
            positions: FxHashMap::default(),
            merged_epoch: 0,
            held: Vec::new(),
        }
    }

    /// Takes `r` out of the normal path when this connection holds its records (a hand-over
    /// is under way: [`verdict::HELD`]) or `r` is a duplicate ([`verdict::DROPPED`]);
    /// [`verdict::ON`]: `r` goes on.
    fn take(
        &mut self,
        r: &Record,
        lv: &[Level],
        seq: &mut Seq,
        books: Option<&mut Books>,
        counters: &QueueCounters,
    ) -> u8 {
        if !self.seat.receiving.load(Ordering::Relaxed) {
            self.seat.receiving.store(true, Ordering::Release);
        }
        // Once holding, records join the held ones until those are released, in order after
        // the frame (the hand-over may complete in the middle of one).
        if !self.held.is_empty() || self.seat.overlap.holds(self.seat.gen) {
            self.seat.overlap.hold(r);
            self.held.push(Msg::new(*r, lv));
            return verdict::HELD;
        }
        if self.duplicate(r, lv, seq, books, counters) {
            verdict::DROPPED
        } else {
            verdict::ON
        }
    }

    /// Whether `r` repeats what the other connection delivered: then it is counted and moves
    /// only this connection's own sequence and book (their continuity is per connection).
    fn duplicate(
        &mut self,
        r: &Record,
        lv: &[Level],
        seq: &mut Seq,
        books: Option<&mut Books>,
        counters: &QueueCounters,
    ) -> bool {
        let o = &self.seat.overlap;
        if o.is_active() {
            o.merge(&self.positions, &mut self.merged_epoch);
            if o.duplicate(r) {
                drop_duplicate(r, lv, seq, books, counters);
                return true;
            }
        }
        if let Some((k, p)) = position(r) {
            self.positions.insert(k, p);
        }
        false
    }

    /// Whether held records may go now (the connection before this one has left).
    fn may_release(&self) -> bool {
        !self.held.is_empty() && !self.seat.overlap.holds(self.seat.gen)
    }
}

/// A duplicate is counted and dropped; it moves only its connection's own sequence and book
/// (their continuity is per connection).
fn drop_duplicate(
    r: &Record,
    lv: &[Level],
    seq: &mut Seq,
    books: Option<&mut Books>,
    counters: &QueueCounters,
) {
    counters.duplicates.fetch_add(1, Ordering::Relaxed);
    seq.observe(r);
    if let (Record::DepthUpdate(d), Some(b)) = (r, books) {
        b.on_diff(d, lv, counters);
    }
}

/// Releases what a rotation's new connection held, in order, through the duplicate filter;
/// full bundles go on as they fill. The capture, if any, keeps what became of each.
#[allow(clippy::too_many_arguments)]
fn release_held(
    rot: &mut Rotated,
    market: Market,
    seq: &mut Seq,
    mut books: Option<&mut Books>,
    counters: &QueueCounters,
    tx: &Sender<Bundle>,
    full: FullPolicy,
    bundle: &mut Bundle,
    publish: &mut Publish<'_>,
    cap: Option<&mut crate::source::capture::ConnCapture>,
) -> Result<(), SourceError> {
    let mut verdicts = Vec::with_capacity(if cap.is_some() { rot.held.len() } else { 0 });
    for m in std::mem::take(&mut rot.held) {
        let (r, lv) = (&m.rec, m.levels());
        if rot.duplicate(r, lv, seq, books.as_deref_mut(), counters) {
            verdicts.push(verdict::DROPPED);
        } else {
            verdicts.push(verdict::ON);
            on_record(r, lv, market, seq, books.as_deref_mut(), counters, bundle);
        }
        if bundle.len() >= MAX_BUNDLE {
            push(tx, full, counters, bundle, publish)?;
        }
    }
    if let Some(c) = cap {
        c.release(crate::source::clock::now_ns(), &verdicts);
    }
    Ok(())
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
    tx: Sender<Bundle>,
    counters: Arc<QueueCounters>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let dec_symbols = symbols.clone();
    let name = label(&cfg.url);
    let mut rotated = cfg.rotation.clone().map(Rotated::new);
    let mut dec = Decoder::new(cfg.market, symbols);
    let mut seq = Seq {
        resume: cfg.resume.clone(),
        ..Seq::default()
    };
    // Records waiting to go as one bundle: sent before the task waits for a frame. Decoded
    // records go straight into it (a record is up to 240 bytes: no copy through a scratch list).
    let mut bundle: Bundle = Vec::with_capacity(BUNDLE_CAPACITY);
    // Frames read and not yet added to `counters.frames` (one shared atomic add per wait
    // instead of one per frame from each source thread).
    let mut frames = 0u64;
    let mut publish = Publish {
        to: cfg.publish.as_deref(),
        done: 0,
    };
    let mut published = dec.stats().clone();
    let mut backoff = Backoff {
        attempt: 0,
        rng: 0x9E37_79B9_7F4A_7C15 ^ cfg.url.len() as u64,
    };
    let mut connected_before = false;
    let market = cfg.market;
    // Subscribe mode: connect to the bare `/stream`, ask for the listed streams by SUBSCRIBE.
    let (connect_url, streams): (String, Vec<String>) = match cfg.url.split_once("?streams=") {
        Some((base, list)) if cfg.subscribe => (
            base.to_string(),
            list.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        _ => (cfg.url.clone(), Vec::new()),
    };
    let mut next_id = 1u64;
    let (snap_tx, mut snap_rx) = tokio::sync::mpsc::channel::<(
        SymbolId,
        Result<String, crate::source::rest::RestError>,
    )>(256);
    let mut books = cfg
        .rest
        .as_ref()
        .map(|h| Books::new(market, h.clone(), counters.clone()));
    let mut book_tick = tokio::time::interval(cfg.book_every.unwrap_or(Duration::from_secs(3600)));
    let mut cap = cfg.capture.as_ref().map(|c| c.connection());
    let mut verdicts: Vec<u8> = Vec::new();
    let mut live_tick = tokio::time::interval(Duration::from_millis(100));
    // After a pause (no book asked for), ticking resumes from now, not with a burst.
    live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    book_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(gate) = &cfg.attempts {
            tokio::select! {
                waited = gate.acquire() => if waited {
                    counters.connect_waits.fetch_add(1, Ordering::Relaxed);
                },
                _ = stop.changed() => break,
            }
        }
        let conn = tokio::select! {
            c = tokio_tungstenite::connect_async(connect_url.as_str()) => c,
            _ = stop.changed() => break,
        };
        let ws = match conn {
            Ok((ws, _)) => ws,
            Err(e) => {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next();
                tracing::warn!("source {name}: connect failed: {e}; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.changed() => break,
                }
            }
        };
        backoff.attempt = 0;
        if connected_before {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let opened = crate::source::clock::now_ns();
        if let Some(c) = cap.as_mut() {
            c.open(opened, market, &connect_url);
        }
        on_open(
            opened,
            connected_before,
            market,
            &mut seq,
            books.as_mut(),
            &mut bundle,
        );
        connected_before = true;
        let (mut wtx, mut wrx) = ws.split();
        let mut ctl = cfg.subscribe.then(|| Control::new(&streams, next_id));
        if let Some(c) = &ctl {
            next_id += c.queue.len() as u64;
        }
        // Listings and delistings: what this connection has sent of them (none after a
        // reconnect: its URL or SUBSCRIBE list has only the streams it started with).
        let mut applied = Default::default();
        let mut changed = cfg.changes.as_ref().map(|c| c.version.subscribe());
        if let Some(ch) = &cfg.changes {
            let c = ctl.get_or_insert_with(Control::empty);
            apply_changes(ch, &mut applied, c, &mut next_id);
        }
        let mut pace = tokio::time::interval(CONTROL_GAP);
        let mut stopping = *stop.borrow();
        // Why the connection ended, for the capture.
        let mut closed = "closed by the server";
        loop {
            let has_ctl = !stopping && ctl.as_ref().is_some_and(|c| !c.queue.is_empty());
            // A frame already received joins the bundle; otherwise the bundle goes first.
            let ready = if bundle.len() < MAX_BUNDLE {
                futures_util::FutureExt::now_or_never(wrx.next())
            } else {
                None
            };
            if ready.is_none() {
                // Counted before the push, which may end the task with an error.
                add_frames(&counters, &mut frames);
                push(&tx, cfg.full, &counters, &mut bundle, &mut publish)?;
                if let Some(c) = cap.as_mut() {
                    c.flush();
                }
            }
            let m = if let Some(m) = ready {
                m
            } else {
                tokio::select! {
                    m = tokio::time::timeout(cfg.idle_timeout, wrx.next()) => match m {
                        Ok(m) => m,
                        Err(_) => {
                            counters.idle_reconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "source {name}: nothing for {:?}; reconnecting",
                                cfg.idle_timeout
                            );
                            closed = "idle";
                            break;
                        }
                    },
                    r = async { changed.as_mut()?.changed().await.ok() }, if changed.is_some() && !stopping => {
                        match (r, &cfg.changes) {
                            (Some(()), Some(ch)) => {
                                let c = ctl.get_or_insert_with(Control::empty);
                                apply_changes(ch, &mut applied, c, &mut next_id);
                            }
                            _ => changed = None,
                        }
                        continue;
                    }
                    _ = pace.tick(), if has_ctl => {
                        let next = ctl.as_mut().and_then(|c| {
                            let (id, req) = c.queue.pop_front()?;
                            let method = if req.contains("LIST_SUBSCRIPTIONS") {
                                "LIST_SUBSCRIPTIONS"
                            } else if req.contains("UNSUBSCRIBE") {
                                "UNSUBSCRIBE"
                            } else {
                                "SUBSCRIBE"
                            };
                            c.pending.insert(id, method);
                            Some(req)
                        });
                        if let Some(req) = next {
                            counters.control_requests.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = wtx.send(Message::text(req)).await {
                                tracing::warn!("source {name}: {e}");
                                closed = "error";
                                break;
                            }
                        }
                        continue;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        closed = "stopped";
                        if cfg.drain_on_stop { continue } else { break }
                    }
                    _ = tokio::time::sleep_until(books.as_ref().and_then(Books::due).unwrap_or_else(tokio::time::Instant::now)),
                        if books.as_ref().is_some_and(|b| !b.want.is_empty()) => {
                        if let Some(b) = books.as_mut() {
                            // Every book whose backoff has ended goes to the host's queue.
                            let now = tokio::time::Instant::now();
                            while b.due().is_some_and(|at| at <= now) {
                                let Some(sym) = b.take() else { break };
                                b.asked.insert(sym);
                                b.recent.entry(sym).or_default().push_back(now);
                                let name = dec_symbols.name(sym).unwrap_or_default();
                                let class = if b.ever_live.contains(&sym) {
                                    crate::source::rest::Class::Resync
                                } else {
                                    crate::source::rest::Class::First
                                };
                                counters.rest_requests.fetch_add(1, Ordering::Relaxed);
                                b.host.submit(
                                    class,
                                    crate::source::rest::depth_path(market, &name, cfg.depth_limit),
                                    crate::source::rest::depth_weight(market, cfg.depth_limit),
                                    crate::source::rest::Reply::Book(sym, snap_tx.clone()),
                                );
                            }
                        }
                        continue;
                    }
                    r = snap_rx.recv(), if books.is_some() => {
                        if let (Some(b), Some((sym, body))) = (books.as_mut(), r) {
                            let body = body.map_err(|e| e.to_string());
                            if let Some(c) = cap.as_mut() {
                                let n = dec_symbols.name(sym).unwrap_or_default();
                                c.snapshot(crate::source::clock::now_ns(), &n, &body);
                            }
                            b.on_snapshot(sym, body, &counters, &name, &dec_symbols);
                        }
                        continue;
                    }
                    // The live books are published every 100 ms while some book is asked for;
                    // otherwise the task sleeps until the first query wakes it.
                    _ = live_tick.tick(), if books.is_some() && cfg.live.as_ref().is_some_and(|l| l.active()) => {
                        if let (Some(b), Some(l)) = (&books, &cfg.live) {
                            b.publish(l, &dec_symbols);
                        }
                        continue;
                    }
                    _ = async {
                        match &cfg.live {
                            Some(l) => l.wake.notified().await,
                            None => std::future::pending().await,
                        }
                    }, if books.is_some() && cfg.live.as_ref().is_some_and(|l| !l.active()) => {
                        continue;
                    }
                    // A rotation begins: hand over where this connection is now, whether or
                    // not a record comes.
                    _ = async {
                        match &cfg.rotation {
                            Some(s) => s.overlap.begun.notified().await,
                            None => std::future::pending().await,
                        }
                    }, if cfg.rotation.is_some() => {
                        if let Some(rot) = rotated.as_mut() {
                            rot.seat.overlap.merge(&rot.positions, &mut rot.merged_epoch);
                        }
                        continue;
                    }
                    _ = book_tick.tick(), if cfg.book_every.is_some() && books.is_some() => {
                        if let Some(b) = &books {
                            let now = crate::source::clock::now_ns();
                            if let Some(c) = cap.as_mut() {
                                c.tick(now);
                            }
                            b.snapshots(cfg.book_levels, market, &mut bundle, now);
                        }
                        continue;
                    }
                }
            };
            let m = match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!("source {name}: {e}");
                    closed = "error";
                    break;
                }
                None => break,
            };
            let recv = crate::source::clock::now_ns();
            let bytes: &[u8] = match &m {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue, // tungstenite answers pings itself
            };
            frames += 1;
            if let Some(rot) = &rotated {
                rot.seat.overlap.old_read(rot.seat.gen, recv);
            }
            if let Some(c) = cap.as_mut() {
                c.frame(recv, bytes);
            }
            if bytes.len() > MAX_FRAME {
                counters.oversized.fetch_add(1, Ordering::Relaxed);
                counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(c) = ctl.as_mut().filter(|_| Control::is_answer(bytes)) {
                if let Err(e) = c.answer(bytes) {
                    counters.control_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("source {name}: {e}");
                }
                continue;
            }
            // What the rotation's filter does with each record, for the capture.
            let keep = cap.is_some() && rotated.is_some();
            verdicts.clear();
            let r = dec.decode(bytes, recv, &mut |r: &Record, lv: &[Level]| {
                if let Some(rot) = rotated.as_mut() {
                    let v = rot.take(r, lv, &mut seq, books.as_mut(), &counters);
                    if keep {
                        verdicts.push(v);
                    }
                    if v != verdict::ON {
                        return;
                    }
                }
                on_record(
                    r,
                    lv,
                    market,
                    &mut seq,
                    books.as_mut(),
                    &counters,
                    &mut bundle,
                );
            });
            if r.is_err() {
                counters.decode_errors.fetch_add(1, Ordering::Relaxed);
            }
            if !seq.resumed.is_empty() {
                for (k, sym, id) in seq.resumed.drain(..) {
                    if let Some(c) = cap.as_mut() {
                        c.resume(recv, k, &dec_symbols.name(sym).unwrap_or_default(), id);
                    }
                }
            }
            if let (true, Some(c)) = (keep, cap.as_mut()) {
                c.verdict(recv, &verdicts);
            }
            let mut handed_over = false;
            if let Some(rot) = rotated.as_mut() {
                if rot.may_release() {
                    release_held(
                        rot,
                        market,
                        &mut seq,
                        books.as_mut(),
                        &counters,
                        &tx,
                        cfg.full,
                        &mut bundle,
                        &mut publish,
                        cap.as_mut(),
                    )?;
                }
                // The old connection of a hand-over has read the new one's first record:
                // everything it alone received is delivered, so it leaves.
                handed_over = rot.seat.overlap.may_leave(rot.seat.gen);
                // A new connection far ahead of the old one stops reading (its socket and the
                // server's buffers hold the rest) rather than hold without bound.
                while rot.held.len() >= HOLD_MAX && rot.seat.overlap.holds(rot.seat.gen) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            // Published now, one frame at a time; queued for the columnarizer with the bundle.
            publish.catch_up(&bundle);
            // Decoder counters are published every 1024 frames (hot loops count locally).
            if dec.stats().frames - published.frames >= 1024 {
                counters.publish_decode(&published, dec.stats());
                published = dec.stats().clone();
            }
            if handed_over {
                stopping = true;
                closed = "handed over";
                break;
            }
        }
        if let Some(c) = cap.as_mut() {
            c.close(crate::source::clock::now_ns(), closed);
        }
        add_frames(&counters, &mut frames);
        push(&tx, cfg.full, &counters, &mut bundle, &mut publish)?;
        counters.publish_decode(&published, dec.stats());
        published = dec.stats().clone();
        if stopping {
            break;
        }
    }
    // Stopped while holding: the connection before this one has been stopped first.
    if let Some(rot) = rotated.as_mut().filter(|r| !r.held.is_empty()) {
        release_held(
            rot,
            market,
            &mut seq,
            books.as_mut(),
            &counters,
            &tx,
            cfg.full,
            &mut bundle,
            &mut publish,
            cap.as_mut(),
        )?;
    }
    // One last look at every live book.
    if let (Some(b), Some(_)) = (&books, cfg.book_every) {
        let now = crate::source::clock::now_ns();
        if let Some(c) = cap.as_mut() {
            c.tick(now);
        }
        b.snapshots(cfg.book_levels, market, &mut bundle, now);
    }
    push(&tx, cfg.full, &counters, &mut bundle, &mut publish)?;
    Ok(())
}

/// What the replay of a capture did, over all its connections.
#[derive(Debug, Default)]
pub struct ReplayCounters {
    /// Bytes of the capture's files (what the progress display counts against).
    pub bytes_total: AtomicU64,
    /// Bytes of the files read so far.
    pub bytes_done: AtomicU64,
    /// Capture files, and how many are read.
    pub files_total: AtomicU64,
    /// Capture files read so far.
    pub files_done: AtomicU64,
    /// Entries read back.
    pub entries: AtomicU64,
    /// Frames among them, run through the decoder.
    pub frames: AtomicU64,
    /// Entries the capture had lost (its hole entries' counts).
    pub holes: AtomicU64,
    /// Files whose tail was torn (a process killed mid-write): read up to the tear.
    pub torn: AtomicU64,
    /// Entries outside `--from` / `--to`.
    pub skipped: AtomicU64,
    /// Files that could not be opened or read at all.
    pub unreadable: AtomicU64,
    /// Entries that could not be read (an unknown kind, a payload cut short, a frame before
    /// its connection's open); each skipped.
    pub malformed: AtomicU64,
}

/// How a capture is replayed.
#[derive(Debug, Clone, Default)]
pub struct ReplayConfig {
    /// Full policy of the queue.
    pub full: FullPolicy,
    /// Levels a side in `depth_snapshot` records (as the live run had them).
    pub book_levels: usize,
    /// Only entries at or after this time (ns).
    pub from: Option<i64>,
    /// Only entries before this time (ns).
    pub to: Option<i64>,
    /// Replay at this multiple of the recorded pace (`None`: as fast as the queue takes it).
    pub speed: Option<f64>,
    /// Publish each frame's records here, as the live run did.
    pub publish: Option<Arc<crate::pipeline::publish::SharedPublisher>>,
    /// Raised to end the replay early (a signal).
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Replays one captured connection through the live path's decode, sequence checks and
/// books ([`on_open`], [`on_record`], the books' snapshot answers and ticks as captured):
/// the records are those the live connection queued, `recv_time` included. A rotation's
/// duplicate filter spans two connections and depends on when each read what: the capture
/// keeps its verdicts (records held, released, dropped), and the replay follows them.
pub fn replay(
    stream: &crate::source::capture::Stream,
    cfg: &ReplayConfig,
    symbols: Arc<SymbolTable>,
    tx: &Sender<Bundle>,
    counters: &Arc<QueueCounters>,
    rc: &ReplayCounters,
) -> Result<(), SourceError> {
    use crate::source::capture::kind;
    let mut dec: Option<Decoder> = None;
    let mut market = Market::Spot;
    let mut seq = Seq::default();
    let mut books: Option<Books> = None;
    let mut bundle: Bundle = Vec::with_capacity(BUNDLE_CAPACITY);
    let mut publish = Publish {
        to: cfg.publish.as_deref(),
        done: 0,
    };
    let mut opened_before = false;
    let mut published = tickwire_codecs::binance::DecodeStats::default();
    let mut pace: Option<(i64, std::time::Instant)> = None;
    // Records a rotation's new connection held, until the capture says they went on.
    let mut held: Vec<Msg> = Vec::new();
    let name = format!("replay {}", stream.id);
    let sid = stream_id(&stream.id);
    for file in &stream.files {
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        let (entries, torn) = match crate::source::capture::read_file(file) {
            Ok(x) => x,
            Err(e) => {
                rc.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("replay {}: {e}", file.display());
                rc.bytes_done.fetch_add(size, Ordering::Relaxed);
                rc.files_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if torn {
            rc.torn.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "replay {}: torn tail (the capture was cut there); read up to it",
                file.display()
            );
        }
        let (base, n) = (
            rc.bytes_done.load(Ordering::Relaxed),
            entries.len().max(1) as u64,
        );
        let mut entries = entries.into_iter().enumerate().peekable();
        while let Some((i, e)) = entries.next() {
            if i % 4096 == 0 {
                rc.bytes_done
                    .store(base + size * i as u64 / n, Ordering::Relaxed);
            }
            if cfg.stop.load(Ordering::Relaxed) {
                break;
            }
            rc.entries.fetch_add(1, Ordering::Relaxed);
            if cfg.from.is_some_and(|f| e.t < f) || cfg.to.is_some_and(|t| e.t >= t) {
                rc.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(speed) = cfg.speed.filter(|s| *s > 0.0) {
                let (t0, w0) = *pace.get_or_insert((e.t, std::time::Instant::now()));
                let due = w0 + Duration::from_nanos(((e.t - t0).max(0) as f64 / speed) as u64);
                let now = std::time::Instant::now();
                if due > now {
                    // Queued records go before the wait, as the live task pushes before it
                    // waits for a frame.
                    push_from(sid, tx, cfg.full, counters, &mut bundle, &mut publish)?;
                    std::thread::sleep(due - now);
                }
            }
            match e.kind {
                kind::OPEN => {
                    let m = e
                        .payload
                        .first()
                        .and_then(|c| Market::from_code(*c))
                        .unwrap_or(Market::Spot);
                    if dec.is_none() {
                        market = m;
                        dec = Some(Decoder::new(m, symbols.clone()));
                        let host = crate::source::rest::RestHost::new(
                            m,
                            "http://replay.invalid",
                            &[],
                            Default::default(),
                        )
                        .map_err(|e| SourceError::Replay(e.to_string()))?;
                        books = Some(Books::new(m, host, counters.clone()));
                    }
                    if opened_before {
                        counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    on_open(
                        e.t,
                        opened_before,
                        market,
                        &mut seq,
                        books.as_mut(),
                        &mut bundle,
                    );
                    opened_before = true;
                }
                kind::FRAME => {
                    let Some(d) = dec.as_mut() else {
                        // A frame before its connection's open: not readable as a stream.
                        rc.malformed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    rc.frames.fetch_add(1, Ordering::Relaxed);
                    counters.frames.fetch_add(1, Ordering::Relaxed);
                    // Where a restarted collector's streams had ended, as the live run took it.
                    while let Some((_, v)) = entries.peek().filter(|(_, v)| v.kind == kind::RESUME)
                    {
                        let p = &v.payload;
                        let parsed = (p.len() > 9).then(|| {
                            let id = i64::from_le_bytes(p[1..9].try_into().unwrap_or([0; 8]));
                            (p[0], id, &p[9..])
                        });
                        match parsed.and_then(|(k, id, name)| {
                            Some((Kind::from_code(k)?, id, symbols.intern(name).ok()?))
                        }) {
                            Some((k, id, sym)) => seq
                                .resume
                                .get_or_insert_with(Default::default)
                                .insert(k, market, sym, id),
                            None => {
                                rc.malformed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        rc.entries.fetch_add(1, Ordering::Relaxed);
                        entries.next();
                    }
                    // What a rotation's filter did with its records, if anything.
                    let verdicts = match entries.peek() {
                        Some((_, v)) if v.kind == kind::VERDICT => {
                            rc.entries.fetch_add(1, Ordering::Relaxed);
                            entries.next().map(|(_, v)| v.payload)
                        }
                        _ => None,
                    };
                    if e.payload.len() > MAX_FRAME {
                        counters.oversized.fetch_add(1, Ordering::Relaxed);
                        counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let mut k = 0;
                    let r = d.decode(&e.payload, e.t, &mut |r: &Record, lv: &[Level]| {
                        let v = verdicts.as_ref().and_then(|v| v.get(k).copied());
                        k += 1;
                        match v {
                            Some(verdict::HELD) => held.push(Msg::new(*r, lv)),
                            Some(verdict::DROPPED) => {
                                drop_duplicate(r, lv, &mut seq, books.as_mut(), counters);
                            }
                            _ => on_record(
                                r,
                                lv,
                                market,
                                &mut seq,
                                books.as_mut(),
                                counters,
                                &mut bundle,
                            ),
                        }
                    });
                    if r.is_err() {
                        counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    publish.catch_up(&bundle);
                    if d.stats().frames - published.frames >= 1024 {
                        counters.publish_decode(&published, d.stats());
                        published = d.stats().clone();
                    }
                }
                kind::SNAPSHOT => {
                    let p = &e.payload;
                    let (Some(&ok), Some(&n)) = (p.first(), p.get(1)) else {
                        rc.malformed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let n = n as usize;
                    let (Some(sym), Some(body)) = (p.get(2..2 + n), p.get(2 + n..)) else {
                        rc.malformed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let body = String::from_utf8_lossy(body).into_owned();
                    let answer = if ok == 1 { Ok(body) } else { Err(body) };
                    if let (Some(b), Ok(id)) = (books.as_mut(), symbols.intern(sym)) {
                        b.on_snapshot(id, answer, counters, &name, &symbols);
                    }
                }
                kind::TICK => {
                    if let Some(b) = &books {
                        b.snapshots(cfg.book_levels, market, &mut bundle, e.t);
                    }
                }
                kind::RECORD => {
                    // A record made from a REST answer: as it was, its symbol by name.
                    let p = &e.payload;
                    let decoded = p.first().map(|&n| n as usize).and_then(|n| {
                        let (name, body) = (p.get(1..1 + n)?, p.get(1 + n..)?);
                        let (rec, lv, _) = crate::pipeline::publish::decode_binary(body).ok()?;
                        Some((rec, lv, symbols.intern(name).ok()?))
                    });
                    let Some((mut rec, lv, id)) = decoded else {
                        rc.malformed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    rec.header_mut().symbol = id;
                    bundle.push(Msg::new(rec, &lv));
                    publish.catch_up(&bundle);
                }
                kind::RELEASE => {
                    if e.payload.len() != held.len() {
                        rc.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    for (j, m) in std::mem::take(&mut held).into_iter().enumerate() {
                        let (r, lv) = (&m.rec, m.levels());
                        if e.payload.get(j) == Some(&verdict::DROPPED) {
                            drop_duplicate(r, lv, &mut seq, books.as_mut(), counters);
                        } else {
                            on_record(
                                r,
                                lv,
                                market,
                                &mut seq,
                                books.as_mut(),
                                counters,
                                &mut bundle,
                            );
                        }
                        if bundle.len() >= MAX_BUNDLE {
                            push_from(sid, tx, cfg.full, counters, &mut bundle, &mut publish)?;
                        }
                    }
                    publish.catch_up(&bundle);
                }
                kind::RESUME => {
                    // Only right after its frame (read there).
                    rc.malformed.fetch_add(1, Ordering::Relaxed);
                }
                kind::CLOSE => {
                    // A connection event only: the next open (a reconnect) writes the gaps.
                }
                kind::HOLE => {
                    let n = e
                        .payload
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes);
                    rc.holes.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!("{name}: {n} entries the capture could not keep (a hole)");
                }
                _ => {
                    rc.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            if bundle.len() >= MAX_BUNDLE {
                push_from(sid, tx, cfg.full, counters, &mut bundle, &mut publish)?;
            }
        }
        rc.bytes_done.store(base + size, Ordering::Relaxed);
        rc.files_done.fetch_add(1, Ordering::Relaxed);
    }
    // Held and never released: the capture was cut during a hand-over (the live run, stopped
    // while holding, released them).
    for m in std::mem::take(&mut held) {
        on_record(
            &m.rec,
            m.levels(),
            market,
            &mut seq,
            books.as_mut(),
            counters,
            &mut bundle,
        );
        if bundle.len() >= MAX_BUNDLE {
            push_from(sid, tx, cfg.full, counters, &mut bundle, &mut publish)?;
        }
    }
    push_from(sid, tx, cfg.full, counters, &mut bundle, &mut publish)?;
    if let Some(d) = &dec {
        counters.publish_decode(&published, d.stats());
    }
    Ok(())
}

/// A replayed connection's number in [`Msg::pos`]: a hash of its capture name (`<run>-<conn>`),
/// never 0. With the records' minute it is the identity of the replay's batches, so that every
/// replay of a capture cuts the same batches under the same ids and a store recognises what
/// an earlier replay stored (`pipeline`'s replay cutting).
pub fn stream_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// [`push`], the records marked with the replayed connection's [`stream_id`].
fn push_from(
    sid: u64,
    tx: &Sender<Bundle>,
    full: FullPolicy,
    counters: &QueueCounters,
    bundle: &mut Bundle,
    publish: &mut Publish<'_>,
) -> Result<(), SourceError> {
    for m in bundle.iter_mut() {
        m.pos = sid;
    }
    push(tx, full, counters, bundle, publish)
}

/// How long the old connection of a rotation may take to read a record the new one received
/// before it is stopped anyway (what it had not read by then is lost and counted in
/// `handover_timeouts`).
pub const HANDOVER_LIMIT: Duration = Duration::from_secs(10);

/// An old connection that has read nothing for this long while the new one receives has
/// nothing left to deliver: it is stopped without waiting for it to reach the new one's records.
pub const QUIET: Duration = Duration::from_secs(1);

/// The most records a new connection holds during a hand-over before it waits (stops
/// reading) for the old one.
const HOLD_MAX: usize = 1 << 16;

/// Runs one connection's streams with rotation: every `rotate_after` a new connection is
/// opened, the old one hands over to it and leaves, and the overlap's duplicates are dropped
/// (see the module docs). Without `rotate_after` this is [`run`].
pub async fn rotating(
    cfg: SourceConfig,
    rotate_after: Option<Duration>,
    symbols: Arc<SymbolTable>,
    tx: Sender<Bundle>,
    counters: Arc<QueueCounters>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let Some(every) = rotate_after else {
        return run(cfg, symbols, tx, counters, stop).await;
    };
    let overlap = Arc::new(Overlap::default());
    let start = |gen: u64, stop: watch::Receiver<bool>| {
        let mut c = cfg.clone();
        let receiving = Arc::new(std::sync::atomic::AtomicBool::new(false));
        c.rotation = Some(Seat {
            overlap: overlap.clone(),
            gen,
            receiving: receiving.clone(),
        });
        let task = tokio::spawn(run(c, symbols.clone(), tx.clone(), counters.clone(), stop));
        (task, receiving)
    };
    let (mut stop_cur, rx) = watch::channel(false);
    let (mut cur, _) = start(0, rx);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {
                // The run's own stop: the current connection stops as `run` does.
                let _ = stop_cur.send(true);
                overlap.end();
                return cur.await.unwrap_or(Ok(()));
            }
        }
        let gen = overlap.begin();
        // The running connection hands over where it is before the new one starts.
        let t0 = tokio::time::Instant::now();
        while !overlap.merged() && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (stop_next, rx) = watch::channel(false);
        let (next, receiving) = start(gen, rx);
        let t0 = tokio::time::Instant::now();
        while !receiving.load(Ordering::Acquire) && t0.elapsed() < Duration::from_secs(30) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = stop.changed() => break,
            }
        }
        // The old connection reads on until it reaches a record the new one received, then
        // leaves by itself. One that has read nothing for QUIET while the new one receives
        // has nothing left to deliver and is stopped; one that does neither within
        // HANDOVER_LIMIT (stalled) is stopped and counted; the run's stop stops it at once.
        let t0 = tokio::time::Instant::now();
        let (mut left, mut timed_out) = (false, false);
        while !*stop.borrow() {
            tokio::select! {
                _ = &mut cur => {
                    left = true;
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stop.changed() => break,
            }
            if overlap.old_quiet_for() >= QUIET {
                break;
            }
            if t0.elapsed() >= HANDOVER_LIMIT {
                timed_out = true;
                break;
            }
        }
        if !left {
            if timed_out {
                counters.handover_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "source {}: the old connection did not reach a record the new one received \
                     within {HANDOVER_LIMIT:?}; stopping it",
                    label(&cfg.url)
                );
            }
            let _ = stop_cur.send(true);
            if tokio::time::timeout(Duration::from_secs(2), &mut cur)
                .await
                .is_err()
            {
                cur.abort();
                let _ = (&mut cur).await;
            }
        }
        // The new connection releases what it held.
        overlap.old_left();
        counters.rotations.fetch_add(1, Ordering::Relaxed);
        let overlap2 = overlap.clone();
        tokio::spawn(async move {
            // A key the new connection never reaches again must not filter for ever.
            tokio::time::sleep(Duration::from_secs(60)).await;
            overlap2.end();
        });
        if *stop.borrow() {
            // Filtering stays on: the new connection releases what it held as it stops.
            let _ = stop_next.send(true);
            return next.await.unwrap_or(Ok(()));
        }
        cur = next;
        stop_cur = stop_next;
    }
}

#[cfg(test)]
mod attempt_tests {
    use super::*;

    #[test]
    fn a_book_that_keeps_breaking_waits_longer_for_each_snapshot() {
        let d: Vec<u64> = (0..12).map(|k| churn_delay(k).as_secs()).collect();
        assert_eq!(d, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[tokio::test]
    async fn attempts_over_the_window_wait_for_the_oldest_to_leave_it() {
        let gate = AttemptGate::new(3, Duration::from_millis(300));
        let t0 = tokio::time::Instant::now();
        for _ in 0..3 {
            gate.acquire().await;
        }
        assert_eq!(gate.waited.load(Ordering::Relaxed), 0);
        gate.acquire().await;
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "the fourth attempt waited for the window: {:?}",
            t0.elapsed()
        );
        assert_eq!(gate.waited.load(Ordering::Relaxed), 1);
    }
}

#[cfg(test)]
mod ahead_tests {
    use super::*;

    fn trade(sym: u32, id: i64) -> Record {
        Record::Trade(Trade {
            header: Header::new(Kind::Trade, Market::Spot, SymbolId(sym), 1, 1),
            trade_id: id,
            ..Trade::default()
        })
    }

    #[test]
    fn a_spill_is_checked_against_the_stored_end_and_moves_it() {
        let resume = Arc::new(Resume::default());
        resume.insert(Kind::Trade, Market::Spot, SymbolId(1), 100);
        resume.insert(Kind::Trade, Market::Spot, SymbolId(2), 200);
        resume.insert(Kind::Trade, Market::Spot, SymbolId(3), 300);
        let mut check = AheadCheck::new(resume.clone());
        // Symbol 1: 101..=104 lost with the killed run's memory, then 105..=107 spilled, then
        // 110 (a hole between spilled records).
        for id in [105, 106, 107, 110] {
            check.check(&trade(1, id));
        }
        // Symbol 2: the spill goes on from the stored end: no hole.
        check.check(&trade(2, 201));
        // Symbol 3: a break the killed run reported itself: what follows is not checked again.
        check.check(&Record::Gap(Gap {
            header: Header::new(Kind::Gap, Market::Spot, SymbolId(3), 1, 1),
            expected: 301,
            got: 350,
            stream: Kind::Trade as u8,
            reason: GapReason::Sequence as u8,
            pad: [0; 6],
        }));
        check.check(&trade(3, 350));
        let gaps = check.finish();
        let got: Vec<(u32, i64, i64)> = gaps
            .iter()
            .map(|g| (g.header.symbol.0, g.expected, g.got))
            .collect();
        assert_eq!(got, [(1, 101, 105), (1, 108, 110)]);
        assert!(gaps
            .iter()
            .all(|g| g.reason == GapReason::Reconnect as u8 && g.stream == Kind::Trade as u8));
        // The streams now end where the spill does.
        assert_eq!(
            resume.take(Kind::Trade as u8, Market::Spot, SymbolId(1)),
            Some(110)
        );
        assert_eq!(
            resume.take(Kind::Trade as u8, Market::Spot, SymbolId(2)),
            Some(201)
        );
        assert_eq!(
            resume.take(Kind::Trade as u8, Market::Spot, SymbolId(3)),
            Some(350)
        );
    }
}
