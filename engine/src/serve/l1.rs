//! Redis L1: the hot tier strategies read, kept from the records as they pass the pipeline
//! thread.
//!
//! Keys (prefix default `tickwire:`, the market in every key):
//!
//! | key | type | what |
//! |---|---|---|
//! | `candles:<market>:<SYMBOL>:<tf>` | List | the last `candles_keep` closed candles, newest first, each a JSON object `open_time` (µs), `open`, `high`, `low`, `close`, `volume` (exact decimal strings), `quote_volume` (16 places) and `trades` |
//! | `candle:<market>:<SYMBOL>:<tf>` | Hash | the candle still open, the same fields, and its first and last trade (`first_trade_time`, `first_trade_id`, `last_trade_time`, `last_trade_id`) |
//! | `ticks:<market>:<SYMBOL>` | Sorted Set | the newest `ticks_keep` trades, score the trade time in ms, member JSON `trade_id`, `price`, `qty`, `trade_time` (µs), `is_buyer_maker` |
//! | `orderbook:<market>:<SYMBOL>` | Hash | `update_id`, `time` (recv ns), `bids`, `asks` (JSON arrays of [price, qty] strings) of the newest `depth_snapshot` record (the live book's with `book_snapshot_ms`, else a partial depth stream's), replaced in one MULTI |
//! | `book_ticker:`, `ticker:`, `mark_price:<market>:<SYMBOL>` | Hash | the newest record's decode JSON fields |
//! | `pubsub:ticks:<market>:<SYMBOL>` | channel | every trade's member JSON, PUBLISHed |
//!
//! Candles are built from trades by trade time (open and close by (trade time, trade id)),
//! for the configured timeframes; decimals keep the places Binance wrote.
//!
//! The path: the pipeline thread hands each bundle's L1 records to a bounded queue with
//! `try_send` and never waits (a full queue is counted, `dropped`). The "redis" thread applies
//! them to its own state (what the keys must hold) and every `min_interval` writes the keys
//! that changed in one pipeline: a key written once per interval however many records moved
//! it (the records folded so are counted, `conflated`; trades are never folded: every one
//! goes to its ticks set and channel). When Redis is down or restarted (it keeps nothing on
//! disk), writes fail, the outage is counted and logged once, ingest goes on into the state,
//! and after the reconnect every key is written again from that state (`rebuilds`), so L1 is
//! complete again: no candle list with a hole. An engine restarted while Redis kept its keys
//! goes on from them: a symbol's first record makes the thread read its lists, open candles
//! and ticks into the state (`resumed`), so the earlier run's open candle is closed by the
//! first later trade instead of being overwritten, and the first write (every key) writes the
//! lists whole instead of starting them again; trades up to the newest one held are not
//! applied twice (`repeats`: a JetStream writer's redeliveries).

use crate::pipeline::queue::{Bundle, Msg};
use crossbeam_channel::{Receiver, Sender};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::decimal::to_string as dec;
use tickwire_codecs::record::{Kind, Record, SymbolId};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_sinks::SinkCounters;

/// Bundles of L1 records the queue holds.
pub const QUEUE: usize = 16_384;

/// The L1's settings.
#[derive(Debug, Clone)]
pub struct L1Config {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Candle timeframes: (name, width in µs).
    pub timeframes: Vec<(String, i64)>,
    /// Closed candles kept per list.
    pub candles_keep: usize,
    /// Trades kept per ticks set.
    pub ticks_keep: usize,
    /// A key is written at most once per this interval.
    pub min_interval: Duration,
    /// PUBLISH every trade.
    pub publish_ticks: bool,
    /// TTLs, seconds: candles, ticks, order books, latest states.
    pub ttl: [u64; 4],
}

impl L1Config {
    /// The defaults: the design documents' timeframes and TTLs (candles 24 h, ticks 1 h,
    /// books and latest states 5 minutes).
    pub fn new(url: impl Into<String>) -> Self {
        L1Config {
            url: url.into(),
            prefix: "tickwire:".into(),
            timeframes: ["1s", "1m", "5m", "15m", "1h", "4h", "1d"]
                .iter()
                .filter_map(|t| timeframe(t).map(|w| (t.to_string(), w)))
                .collect(),
            candles_keep: 1000,
            ticks_keep: 1000,
            min_interval: Duration::from_millis(50),
            publish_ticks: true,
            ttl: [86_400, 3_600, 300, 300],
        }
    }
}

/// The width in µs of a timeframe such as `1s`, `5m`, `4h`, `1d`.
pub fn timeframe(t: &str) -> Option<i64> {
    let (n, unit) = t.split_at(t.len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// What the L1 did.
#[derive(Debug, Default)]
pub struct L1Counters {
    /// Redis commands sent.
    pub commands: AtomicU64,
    /// Records folded into a later write of the same key (not lost: their key holds the
    /// newer state).
    pub conflated: AtomicU64,
    /// Records the queue could not take (the L1 misses them).
    pub dropped: AtomicU64,
    /// Reconnects after an outage.
    pub reconnects: AtomicU64,
    /// Every key written again from the state after a reconnect.
    pub rebuilds: AtomicU64,
    /// Failed writes (each an outage until the reconnect).
    pub errors: AtomicU64,
    /// Symbols whose keys held what an earlier process wrote (an engine restart): taken into
    /// the state, so L1 goes on from them.
    pub resumed: AtomicU64,
    /// Trades already in L1 when they came (at or before the newest trade the earlier
    /// process wrote: a JetStream redelivery): not applied twice.
    pub repeats: AtomicU64,
    /// Query API reads (candles, books, latest states) answered from L1.
    pub reads_hit: AtomicU64,
    /// Query API reads L1 could not answer (the range or book not held, Redis down): served
    /// by the next tier.
    pub reads_miss: AtomicU64,
}

/// The query API's side of the L1: candle lists read back.
#[derive(Debug)]
pub struct L1Reader {
    pub url: String,
    pub prefix: String,
    pub timeframes: Vec<String>,
    pub counters: Arc<L1Counters>,
}

/// One candle read from L1: open time (µs) and the raw values (prices and volume 1e-8,
/// quote volume 1e-16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L1Candle {
    pub open_time: i64,
    pub open: i128,
    pub high: i128,
    pub low: i128,
    pub close: i128,
    pub volume: i128,
    pub quote: i128,
    pub trades: u64,
}

fn raw8(s: &str) -> Option<i128> {
    tickwire_codecs::decimal::parse_i128(s.as_bytes())
        .ok()
        .map(|p| p.raw)
}

/// A decimal written with 16 places as its 1e-16 integer.
fn raw16(s: &str) -> Option<i128> {
    let (i, f) = s.split_once('.')?;
    if f.len() != 16 {
        return None;
    }
    format!("{i}{f}").parse().ok()
}

impl L1Candle {
    fn from_fields(get: impl Fn(&str) -> Option<String>) -> Option<L1Candle> {
        Some(L1Candle {
            open_time: get("open_time")?.parse().ok()?,
            open: raw8(&get("open")?)?,
            high: raw8(&get("high")?)?,
            low: raw8(&get("low")?)?,
            close: raw8(&get("close")?)?,
            volume: raw8(&get("volume")?)?,
            quote: raw16(&get("quote_volume")?)?,
            trades: get("trades")?.parse().ok()?,
        })
    }
}

/// An order book read from L1: its update id, `recv_time` (ns) and levels as (price, qty)
/// at 1e-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L1Book {
    pub update_id: i64,
    pub time: i64,
    pub bids: Vec<(i128, i128)>,
    pub asks: Vec<(i128, i128)>,
}

/// A side of the book hash (`[["price","qty"], ...]`) at 1e-8.
fn side8(j: &str) -> Option<Vec<(i128, i128)>> {
    let v: Vec<(String, String)> = serde_json::from_str(j).ok()?;
    v.iter().map(|(p, q)| Some((raw8(p)?, raw8(q)?))).collect()
}

impl L1Reader {
    fn connect(&self) -> Result<redis::Connection, String> {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .map_err(|e| e.to_string())
    }

    /// The order book L1 holds for (market, symbol), if any.
    pub fn book(&self, market: &str, symbol: &str) -> Result<Option<L1Book>, String> {
        let mut conn = self.connect()?;
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{}orderbook:{market}:{symbol}", self.prefix))
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        if h.is_empty() {
            return Ok(None);
        }
        let get = |k: &str| h.get(k).ok_or_else(|| format!("book hash without {k}"));
        let bad = |k: &str| format!("book hash: an unreadable {k}");
        Ok(Some(L1Book {
            update_id: get("update_id")?.parse().map_err(|_| bad("update_id"))?,
            time: get("time")?.parse().map_err(|_| bad("time"))?,
            bids: side8(get("bids")?).ok_or_else(|| bad("bids"))?,
            asks: side8(get("asks")?).ok_or_else(|| bad("asks"))?,
        }))
    }

    /// The newest record of a latest-state family (`book_ticker`, `ticker`, `mark_price`)
    /// L1 holds for (market, symbol): its decode JSON fields (empty: none held).
    pub fn latest(
        &self,
        family: &str,
        market: &str,
        symbol: &str,
    ) -> Result<HashMap<String, String>, String> {
        let mut conn = self.connect()?;
        redis::cmd("HGETALL")
            .arg(format!("{}{family}:{market}:{symbol}", self.prefix))
            .query(&mut conn)
            .map_err(|e| e.to_string())
    }

    /// The candles L1 holds for (market, symbol, timeframe), oldest first: the closed ones
    /// and the open one.
    pub fn candles(&self, market: &str, symbol: &str, tf: &str) -> Result<Vec<L1Candle>, String> {
        let mut conn = self.connect()?;
        let p = &self.prefix;
        let (list, open): (Vec<String>, HashMap<String, String>) = redis::pipe()
            .lrange(format!("{p}candles:{market}:{symbol}:{tf}"), 0, -1)
            .hgetall(format!("{p}candle:{market}:{symbol}:{tf}"))
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(list.len() + 1);
        for j in list.iter().rev() {
            let v: serde_json::Value = serde_json::from_str(j).map_err(|e| e.to_string())?;
            let c = L1Candle::from_fields(|k| match &v[k] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| format!("an unreadable candle {j}"))?;
            out.push(c);
        }
        if !open.is_empty() {
            let c = L1Candle::from_fields(|k| open.get(k).cloned())
                .ok_or("an unreadable open candle")?;
            if out.last().is_none_or(|l| l.open_time < c.open_time) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

/// A running L1: the queue to its thread.
#[derive(Debug)]
pub struct L1 {
    tx: Option<Sender<Bundle>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<L1Counters>,
    /// `rows` = records applied to the state.
    pub sink: Arc<SinkCounters>,
}

/// Whether the L1 keeps anything of `kind`.
#[inline]
pub fn wanted(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Trade | Kind::BookTicker | Kind::Ticker | Kind::MarkPrice | Kind::DepthSnapshot
    )
}

impl L1 {
    /// Starts the "redis" thread (it connects on its own; Redis may be down at start).
    pub fn start(cfg: L1Config, symbols: Arc<SymbolTable>) -> std::io::Result<L1> {
        redis::Client::open(cfg.url.as_str()).map_err(|e| {
            std::io::Error::other(format!("redis {}: {e}", tickwire_sinks::redact(&cfg.url)))
        })?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let counters = Arc::new(L1Counters::default());
        let sink = Arc::new(SinkCounters::default());
        let thread = {
            let (c, s) = (counters.clone(), sink.clone());
            std::thread::Builder::new()
                .name("redis".into())
                .spawn(move || State::new(cfg, symbols, c, s).run(rx))?
        };
        Ok(L1 {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            sink,
        })
    }

    /// Offers a bundle's L1 records (never waits).
    #[inline]
    pub fn offer(&self, bundle: &Bundle) {
        let Some(tx) = &self.tx else { return };
        let mine: Bundle = bundle
            .iter()
            .filter(|m| wanted(m.rec.kind()))
            .cloned()
            .collect();
        if mine.is_empty() {
            return;
        }
        let n = mine.len() as u64;
        if tx.try_send(mine).is_err() {
            self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Writes what is left and stops the thread.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One candle being built.
#[derive(Debug, Clone, Copy)]
struct Candle {
    open_time: i64,
    open: (i64, u8),
    high: (i64, u8),
    low: (i64, u8),
    close: (i64, u8),
    first: (i64, i64),
    last: (i64, i64),
    volume: i128,
    volume_dp: u8,
    /// Sum of price x qty, 1e-16 units.
    quote: i128,
    trades: u64,
}

impl Candle {
    /// The open candle's hash: the closed candle's fields, then the first and last trade
    /// (time µs, id) it holds, by which a restarted engine goes on with it.
    fn fields(&self) -> [(&'static str, String); 12] {
        [
            ("open_time", self.open_time.to_string()),
            ("open", dec(i128::from(self.open.0), self.open.1)),
            ("high", dec(i128::from(self.high.0), self.high.1)),
            ("low", dec(i128::from(self.low.0), self.low.1)),
            ("close", dec(i128::from(self.close.0), self.close.1)),
            ("volume", dec(self.volume, self.volume_dp)),
            ("quote_volume", crate::serve::query::scaled(self.quote, 16)),
            ("trades", self.trades.to_string()),
            ("first_trade_time", self.first.0.to_string()),
            ("first_trade_id", self.first.1.to_string()),
            ("last_trade_time", self.last.0.to_string()),
            ("last_trade_id", self.last.1.to_string()),
        ]
    }

    /// The open candle an earlier process left in its hash (None: not one this engine
    /// wrote, or unreadable).
    fn from_hash(h: &HashMap<String, String>) -> Option<Candle> {
        let get = |k: &str| h.get(k).map(String::as_str);
        let int = |k: &str| get(k)?.parse::<i64>().ok();
        let px = |k: &str| {
            tickwire_codecs::decimal::parse_i64(get(k)?.as_bytes())
                .ok()
                .map(|p| (p.raw, p.dp))
        };
        let vol = tickwire_codecs::decimal::parse_i128(get("volume")?.as_bytes()).ok()?;
        Some(Candle {
            open_time: int("open_time")?,
            open: px("open")?,
            high: px("high")?,
            low: px("low")?,
            close: px("close")?,
            first: (int("first_trade_time")?, int("first_trade_id")?),
            last: (int("last_trade_time")?, int("last_trade_id")?),
            volume: vol.raw,
            volume_dp: vol.dp,
            quote: raw16(get("quote_volume")?)?,
            trades: get("trades")?.parse().ok()?,
        })
    }
    fn json(&self) -> String {
        let f = self.fields();
        format!(
            r#"{{"open_time":{},"open":"{}","high":"{}","low":"{}","close":"{}","volume":"{}","quote_volume":"{}","trades":{}}}"#,
            f[0].1, f[1].1, f[2].1, f[3].1, f[4].1, f[5].1, f[6].1, f[7].1
        )
    }
}

#[derive(Debug, Default)]
struct Frame {
    open: Option<Candle>,
    open_dirty: bool,
    /// Closed candles' JSON, newest first (what the list holds).
    closed: VecDeque<String>,
    /// Closed since the last write, oldest first.
    new_closed: Vec<String>,
}

#[derive(Debug, Default)]
struct Sym {
    market: &'static str,
    name: String,
    frames: Vec<Frame>,
    /// (score ms, member) of the newest trades, oldest first.
    ticks: VecDeque<(i64, String)>,
    /// Trades since the last write (oldest first), and to publish.
    new_ticks: Vec<(i64, String)>,
    /// Latest-state hashes.
    tops: Vec<Top>,
    /// The newest trade (time µs, id) an earlier process wrote to the ticks set: trades up to
    /// it are in L1 already.
    resumed_to: Option<(i64, i64)>,
}

/// One latest-state hash of a symbol.
#[derive(Debug)]
struct Top {
    family: &'static str,
    fields: Vec<(String, String)>,
    dirty: bool,
}

struct State {
    cfg: L1Config,
    symbols: Arc<SymbolTable>,
    syms: HashMap<(u8, SymbolId), Sym>,
    c: Arc<L1Counters>,
    sink: Arc<SinkCounters>,
    conn: Option<redis::Connection>,
    /// Every key must be written again (after a reconnect).
    rebuild: bool,
    /// Records applied since the last write.
    dirty: bool,
    next_try: Instant,
    backoff: Duration,
    down_since: Option<Instant>,
}

impl State {
    fn new(
        cfg: L1Config,
        symbols: Arc<SymbolTable>,
        c: Arc<L1Counters>,
        sink: Arc<SinkCounters>,
    ) -> State {
        State {
            cfg,
            symbols,
            syms: HashMap::new(),
            c,
            sink,
            conn: None,
            rebuild: true,
            dirty: false,
            next_try: Instant::now(),
            backoff: Duration::from_millis(200),
            down_since: None,
        }
    }

    fn run(mut self, rx: Receiver<Bundle>) {
        let mut last = Instant::now();
        loop {
            // Nothing to write: sleep until records come (or a second passes).
            let wait = if self.pending() {
                self.cfg.min_interval.saturating_sub(last.elapsed())
            } else {
                Duration::from_secs(1)
            };
            match rx.recv_timeout(wait) {
                Ok(b) => {
                    self.apply(&b);
                    for b in rx.try_iter().take(1024) {
                        self.apply(&b);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            if last.elapsed() >= self.cfg.min_interval {
                self.write();
                last = Instant::now();
            }
        }
        // The end: a few tries to write what is left.
        for _ in 0..20 {
            self.next_try = Instant::now();
            if self.write() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether anything waits to be written (or every key, after a reconnect).
    fn pending(&self) -> bool {
        self.rebuild && !self.syms.is_empty() || self.dirty
    }

    fn apply(&mut self, b: &[Msg]) {
        self.dirty |= !b.is_empty();
        for m in b {
            self.apply_one(m);
        }
        self.sink.rows.fetch_add(b.len() as u64, Ordering::Relaxed);
    }

    fn apply_one(&mut self, m: &Msg) {
        let h = *m.rec.header();
        let Some(market) = h.market() else { return };
        let (keep_c, keep_t) = (self.cfg.candles_keep, self.cfg.ticks_keep);
        let key = (market as u8, h.symbol);
        if !self.syms.contains_key(&key) {
            let mut sym = Sym {
                market: market.as_str(),
                name: self
                    .symbols
                    .name(h.symbol)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                frames: self
                    .cfg
                    .timeframes
                    .iter()
                    .map(|_| Frame::default())
                    .collect(),
                ..Sym::default()
            };
            self.resume(&mut sym);
            self.syms.insert(key, sym);
        }
        // Borrowed apart from the state they update: nothing is copied per record.
        let (timeframes, c) = (&self.cfg.timeframes, &*self.c);
        let Some(sym) = self.syms.get_mut(&key) else {
            return;
        };
        match &m.rec {
            Record::Trade(t) => {
                if sym
                    .resumed_to
                    .is_some_and(|to| (t.trade_time, t.trade_id) <= to)
                {
                    c.repeats.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let (pdp, qdp) = (t.dp.get(0).unwrap_or(8), t.dp.get(1).unwrap_or(8));
                let member = format!(
                    r#"{{"trade_id":{},"price":"{}","qty":"{}","trade_time":{},"is_buyer_maker":{}}}"#,
                    t.trade_id,
                    dec(i128::from(t.price), pdp),
                    dec(t.qty.get(), qdp),
                    t.trade_time,
                    t.is_buyer_maker != 0
                );
                let score = t.trade_time.div_euclid(1000);
                sym.ticks.push_back((score, member.clone()));
                while sym.ticks.len() > keep_t {
                    sym.ticks.pop_front();
                }
                sym.new_ticks.push((score, member));
                for (f, (_, w)) in sym.frames.iter_mut().zip(timeframes) {
                    let start = t.trade_time.div_euclid(*w) * w;
                    let key = (t.trade_time, t.trade_id);
                    let p = (t.price, pdp);
                    match &mut f.open {
                        Some(o) if o.open_time == start => {
                            if key < o.first {
                                o.first = key;
                                o.open = p;
                            }
                            if key > o.last {
                                o.last = key;
                                o.close = p;
                            }
                            if t.price > o.high.0 {
                                o.high = p;
                            }
                            if t.price < o.low.0 {
                                o.low = p;
                            }
                            o.volume += t.qty.get();
                            o.volume_dp = o.volume_dp.max(qdp);
                            o.quote = o
                                .quote
                                .saturating_add(i128::from(t.price).saturating_mul(t.qty.get()));
                            o.trades += 1;
                            if f.open_dirty {
                                c.conflated.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(o) if o.open_time > start => {
                            // A trade of a candle already closed: its list stays as written.
                            c.conflated.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        open => {
                            if let Some(done) = open.take() {
                                let j = done.json();
                                f.closed.push_front(j.clone());
                                f.closed.truncate(keep_c);
                                f.new_closed.push(j);
                            }
                            *open = Some(Candle {
                                open_time: start,
                                open: p,
                                high: p,
                                low: p,
                                close: p,
                                first: key,
                                last: key,
                                volume: t.qty.get(),
                                volume_dp: qdp,
                                quote: i128::from(t.price).saturating_mul(t.qty.get()),
                                trades: 1,
                            });
                        }
                    }
                    f.open_dirty = true;
                }
            }
            Record::DepthSnapshot(_) => {
                let Some(r) = m.rec.levels() else { return };
                let lv = m.levels();
                let side = |ls: &[tickwire_codecs::record::Level]| {
                    let mut s = String::from("[");
                    for (i, l) in ls.iter().enumerate() {
                        let _ = write!(
                            s,
                            "{}[\"{}\",\"{}\"]",
                            if i > 0 { "," } else { "" },
                            dec(i128::from(l.price), l.price_dp),
                            dec(l.qty.get(), l.qty_dp)
                        );
                    }
                    s.push(']');
                    s
                };
                let id = match &m.rec {
                    Record::DepthSnapshot(d) => d.last_update_id,
                    _ => 0,
                };
                let fields = vec![
                    ("update_id".to_string(), id.to_string()),
                    ("time".to_string(), h.recv_time.to_string()),
                    ("bids".to_string(), side(r.bids(lv))),
                    ("asks".to_string(), side(r.asks(lv))),
                ];
                set_top(sym, "orderbook", fields, c);
            }
            Record::BookTicker(_) | Record::Ticker(_) | Record::MarkPrice(_) => {
                let family = match m.rec.kind() {
                    Kind::BookTicker => "book_ticker",
                    Kind::Ticker => "ticker",
                    _ => "mark_price",
                };
                let mut json = Vec::new();
                tickwire_codecs::json::write_record(&mut json, &m.rec, &sym.name, &[]);
                let fields = match serde_json::from_slice::<serde_json::Value>(&json) {
                    Ok(serde_json::Value::Object(o)) => o
                        .into_iter()
                        .map(|(k, v)| {
                            let v = match v {
                                serde_json::Value::String(s) => s,
                                v => v.to_string(),
                            };
                            (k, v)
                        })
                        .collect(),
                    _ => return,
                };
                set_top(sym, family, fields, c);
            }
            _ => {}
        }
    }

    /// A symbol's first record in this process: what its keys hold from an earlier one (an
    /// engine restart; Redis kept them) is taken into the state, so the lists go on from it
    /// and a rebuild writes them whole: the closed candles, the open candle (closed with the
    /// first later trade, so it is not lost), the ticks. Trades up to the newest one held are
    /// not applied again. Redis down: the symbol starts empty, as before.
    fn resume(&mut self, sym: &mut Sym) {
        if !self.connected() {
            return;
        }
        let (p, m, name) = (&self.cfg.prefix, sym.market, &sym.name);
        let mut pipe = redis::pipe();
        for (tf, _) in &self.cfg.timeframes {
            pipe.lrange(
                format!("{p}candles:{m}:{name}:{tf}"),
                0,
                self.cfg.candles_keep as isize - 1,
            );
            pipe.hgetall(format!("{p}candle:{m}:{name}:{tf}"));
        }
        pipe.cmd("ZRANGE")
            .arg(format!("{p}ticks:{m}:{name}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let got: redis::RedisResult<Vec<redis::Value>> = pipe.query(conn);
        let vals = match got {
            Ok(v) => v,
            Err(e) => {
                self.down(&e);
                return;
            }
        };
        let mut it = vals.into_iter();
        let mut held = false;
        for f in &mut sym.frames {
            let list: Vec<String> = it
                .next()
                .and_then(|v| redis::from_redis_value(&v).ok())
                .unwrap_or_default();
            let open: HashMap<String, String> = it
                .next()
                .and_then(|v| redis::from_redis_value(&v).ok())
                .unwrap_or_default();
            held |= !list.is_empty() || !open.is_empty();
            f.closed = list.into();
            f.open = Candle::from_hash(&open);
        }
        let ticks: Vec<(String, i64)> = it
            .next()
            .and_then(|v| redis::from_redis_value(&v).ok())
            .unwrap_or_default();
        for (member, score) in ticks {
            let v: serde_json::Value = serde_json::from_str(&member).unwrap_or_default();
            if let (Some(t), Some(id)) = (v["trade_time"].as_i64(), v["trade_id"].as_i64()) {
                sym.resumed_to = sym.resumed_to.max(Some((t, id)));
            }
            sym.ticks.push_back((score, member));
            held = true;
        }
        if held {
            self.c.resumed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connects if it is time to try; true when connected.
    fn connected(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if Instant::now() < self.next_try {
            return false;
        }
        let r = redis::Client::open(self.cfg.url.as_str()).and_then(|c| {
            c.get_connection_with_timeout(Duration::from_secs(2))
                .and_then(|conn| {
                    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
                    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
                    Ok(conn)
                })
        });
        match r {
            Ok(conn) => {
                if let Some(t) = self.down_since.take() {
                    self.c.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        "redis {}: back after {:.1} s; every key is written again",
                        tickwire_sinks::redact(&self.cfg.url),
                        t.elapsed().as_secs_f64()
                    );
                }
                self.conn = Some(conn);
                self.backoff = Duration::from_millis(200);
                true
            }
            Err(e) => {
                self.down(&e);
                false
            }
        }
    }

    fn down(&mut self, e: &redis::RedisError) {
        self.conn = None;
        self.rebuild = true;
        self.c.errors.fetch_add(1, Ordering::Relaxed);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                "redis {}: {e}; ingest goes on, L1 is written again when it is back",
                tickwire_sinks::redact(&self.cfg.url)
            );
        }
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
    }

    /// Writes the keys that changed (every key after a reconnect); true when done.
    fn write(&mut self) -> bool {
        if !self.connected() {
            // Down: what changed is in the state, written whole at the reconnect; nothing
            // piles up meanwhile.
            for s in self.syms.values_mut() {
                s.new_ticks.clear();
                for f in &mut s.frames {
                    f.new_closed.clear();
                }
            }
            return false;
        }
        let all = self.rebuild;
        let mut pipe = redis::pipe();
        let mut n = 0u64;
        let p = &self.cfg.prefix;
        let ttl = self.cfg.ttl;
        let keep_c = self.cfg.candles_keep as isize;
        let keep_t = self.cfg.ticks_keep as isize;
        for s in self.syms.values() {
            let (m, name) = (s.market, &s.name);
            for (f, (tf, _)) in s.frames.iter().zip(&self.cfg.timeframes) {
                let list = format!("{p}candles:{m}:{name}:{tf}");
                if all {
                    pipe.del(&list).ignore();
                    n += 1;
                    if !f.closed.is_empty() {
                        pipe.rpush(&list, f.closed.iter().collect::<Vec<_>>())
                            .ignore();
                        n += 1;
                    }
                } else if !f.new_closed.is_empty() {
                    pipe.lpush(&list, &f.new_closed).ignore();
                    n += 1;
                }
                if all || !f.new_closed.is_empty() {
                    pipe.ltrim(&list, 0, keep_c - 1).ignore();
                    pipe.expire(&list, ttl[0] as i64).ignore();
                    n += 2;
                }
                if let (Some(o), true) = (&f.open, all || f.open_dirty) {
                    let key = format!("{p}candle:{m}:{name}:{tf}");
                    pipe.hset_multiple(&key, &o.fields()).ignore();
                    pipe.expire(&key, ttl[0] as i64).ignore();
                    n += 2;
                }
            }
            let ticks = format!("{p}ticks:{m}:{name}");
            let write: Vec<&(i64, String)> = if all {
                pipe.del(&ticks).ignore();
                n += 1;
                s.ticks.iter().collect()
            } else {
                // Only the newest `ticks_keep` of them can be in the set.
                let skip = s.new_ticks.len().saturating_sub(keep_t as usize);
                s.new_ticks[skip..].iter().collect()
            };
            if !write.is_empty() {
                let items: Vec<(i64, &String)> = write.iter().map(|(sc, mb)| (*sc, mb)).collect();
                pipe.zadd_multiple(&ticks, &items).ignore();
                pipe.zremrangebyrank(&ticks, 0, -(keep_t + 1)).ignore();
                pipe.expire(&ticks, ttl[1] as i64).ignore();
                n += 3;
            }
            if self.cfg.publish_ticks {
                let chan = format!("{p}pubsub:ticks:{m}:{name}");
                for (_, member) in &s.new_ticks {
                    pipe.publish(&chan, member).ignore();
                    n += 1;
                }
            }
            for Top {
                family,
                fields,
                dirty,
            } in &s.tops
            {
                if !(all || *dirty) {
                    continue;
                }
                let key = format!("{p}{family}:{m}:{name}");
                let t = if *family == "orderbook" {
                    ttl[2]
                } else {
                    ttl[3]
                };
                // Replaced whole: a reader never sees half of one update.
                pipe.cmd("MULTI").ignore();
                pipe.del(&key).ignore();
                pipe.hset_multiple(&key, fields).ignore();
                pipe.expire(&key, t as i64).ignore();
                pipe.cmd("EXEC").ignore();
                n += 5;
            }
        }
        if n == 0 {
            self.rebuild = false;
            self.dirty = false;
            return true;
        }
        let r: redis::RedisResult<()> = match self.conn.as_mut() {
            Some(c) => pipe.query(c),
            None => return false,
        };
        match r {
            Ok(()) => {
                self.c.commands.fetch_add(n, Ordering::Relaxed);
                if all {
                    self.c.rebuilds.fetch_add(1, Ordering::Relaxed);
                }
                self.rebuild = false;
                self.dirty = false;
                for s in self.syms.values_mut() {
                    s.new_ticks.clear();
                    for f in &mut s.frames {
                        f.new_closed.clear();
                        f.open_dirty = false;
                    }
                    for t in &mut s.tops {
                        t.dirty = false;
                    }
                }
                true
            }
            Err(e) => {
                // Trades published meanwhile are not published again (a channel has no past);
                // the keys are all written again at the reconnect.
                for s in self.syms.values_mut() {
                    s.new_ticks.clear();
                }
                self.down(&e);
                false
            }
        }
    }
}

fn set_top(sym: &mut Sym, family: &'static str, fields: Vec<(String, String)>, c: &L1Counters) {
    match sym.tops.iter_mut().find(|t| t.family == family) {
        Some(t) => {
            if t.dirty {
                c.conflated.fetch_add(1, Ordering::Relaxed);
            }
            t.fields = fields;
            t.dirty = true;
        }
        None => sym.tops.push(Top {
            family,
            fields,
            dirty: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeframes_are_widths() {
        assert_eq!(timeframe("1s"), Some(1_000_000));
        assert_eq!(timeframe("15m"), Some(900_000_000));
        assert_eq!(timeframe("4h"), Some(14_400_000_000));
        assert_eq!(timeframe("1d"), Some(86_400_000_000));
        assert_eq!(timeframe("0m"), None);
        assert_eq!(timeframe("m"), None);
        assert_eq!(timeframe("3x"), None);
        assert_eq!(L1Config::new("redis://h").timeframes.len(), 7);
    }

    #[test]
    fn an_open_candle_is_read_back_from_its_hash_exactly() {
        let c = Candle {
            open_time: 1_796_652_240_000_000,
            open: (3_699_090_000_000, 2),
            high: (3_700_300_000_000, 2),
            low: (3_698_683_000_000, 3),
            close: (3_699_088_000_000, 2),
            first: (1_796_652_240_004_000, 1_000_001),
            last: (1_796_652_299_990_000, 1_000_462),
            volume: 88_154_000,
            volume_dp: 5,
            quote: 326_115_026_957_000_000_000_000,
            trades: 462,
        };
        let h: HashMap<String, String> = c
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(h["open"], "36990.90");
        let back = Candle::from_hash(&h).expect("read back");
        assert_eq!(back.fields(), c.fields());
        // A hash of another writer (no first/last trade) is not taken.
        let mut old = h.clone();
        old.remove("last_trade_id");
        assert!(Candle::from_hash(&old).is_none());
        // Unreadable values are not taken either (no panic).
        let mut bad = h;
        bad.insert("high".into(), "1e5".into());
        assert!(Candle::from_hash(&bad).is_none());
    }
}
