//! Local order books kept in sync with Binance's documented procedure.
//!
//! A [`BookSync`] per (market, symbol) takes depth diffs as they arrive and REST snapshots when
//! it asks for one:
//!
//! - Until a snapshot is applied, diffs are buffered ([`SyncEvent::Buffered`]).
//! - A snapshot older than the first buffered diff cannot be bridged: fetch another
//!   ([`SyncEvent::NeedSnapshot`]).
//! - Buffered diffs the snapshot already contains are dropped (spot: `u <= lastUpdateId`;
//!   USD-M: `u < lastUpdateId`). The first diff kept must bridge the snapshot (spot:
//!   `U <= lastUpdateId + 1 <= u`; USD-M: `U <= lastUpdateId <= u`).
//! - From then on every diff must continue the last one (spot: `U == u_prev + 1`, an older
//!   `u` is ignored; USD-M: `pu == u_prev`). A break is a [`SyncEvent::Gap`]: the book is
//!   discarded and the sync starts over (buffering, then a new snapshot).
//!
//! Levels keep the exact decimal (price, quantity and the places Binance wrote), so top-N
//! snapshots of the book come out exactly as `depth_snapshot` records. A quantity of zero
//! removes a level; removing a level the book does not hold is normal (it lay outside the
//! snapshot).

use std::collections::BTreeMap;
use tickwire_codecs::record::{DepthUpdate, Level, Market};

/// One side's levels by price.
pub type Side = BTreeMap<i64, Level>;

/// What a diff or a snapshot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEvent {
    /// Held until a snapshot arrives.
    Buffered,
    /// Applied to the live book.
    Applied,
    /// Older than the book; ignored.
    Stale,
    /// The book is live (after a snapshot).
    Live,
    /// A snapshot is needed (none yet, or the one given was too old to bridge the diffs).
    NeedSnapshot,
    /// Continuity broke: the book was discarded; a new snapshot is needed.
    Gap {
        /// The update id (spot: `U`) or previous id (USD-M: `pu`) that should have come.
        expected: i64,
        /// What came.
        got: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Buffering,
    /// A snapshot newer than every buffered diff is applied; the next diff must bridge it.
    Bridging,
    Live,
}

/// Where a diff stands against a snapshot's last update id.
enum Against {
    /// The snapshot already contains it.
    Contained,
    /// It is the first diff to apply on the snapshot.
    Bridges,
    /// It starts after the snapshot: updates in between are missing.
    Hole,
}

/// Order book and sync state of one symbol.
#[derive(Debug)]
pub struct BookSync {
    market: Market,
    state: State,
    bids: Side,
    asks: Side,
    last_update_id: i64,
    buffer: std::collections::VecDeque<(DepthUpdate, Vec<Level>)>,
    /// Diffs the buffer may hold before the oldest are dropped (a resync then needs a newer
    /// snapshot anyway).
    max_buffer: usize,
}

fn apply_side(side: &mut Side, levels: &[Level]) {
    for l in levels {
        if l.qty.get() == 0 {
            side.remove(&l.price);
        } else {
            side.insert(l.price, *l);
        }
    }
}

impl BookSync {
    /// An empty, buffering book for `market`.
    pub fn new(market: Market) -> Self {
        BookSync {
            market,
            state: State::Buffering,
            bids: Side::new(),
            asks: Side::new(),
            last_update_id: 0,
            buffer: std::collections::VecDeque::new(),
            max_buffer: 10_000,
        }
    }

    /// True once a snapshot has been applied and continuity holds (the book is the snapshot
    /// while its bridging diff is awaited).
    pub fn is_live(&self) -> bool {
        self.state != State::Buffering
    }

    /// The first update id (`U`) of the oldest buffered diff, while one waits for a snapshot.
    pub fn first_buffered(&self) -> Option<i64> {
        self.buffer.front().map(|(d, _)| d.first_update_id)
    }

    /// The last update id applied.
    pub fn last_update_id(&self) -> i64 {
        self.last_update_id
    }

    /// The bids, best (highest) last.
    pub fn bids(&self) -> &Side {
        &self.bids
    }

    /// The asks, best (lowest) first.
    pub fn asks(&self) -> &Side {
        &self.asks
    }

    /// The top `n` levels of each side: bids best first, asks best first.
    pub fn top(&self, n: usize) -> (Vec<Level>, Vec<Level>) {
        (
            self.bids.values().rev().take(n).copied().collect(),
            self.asks.values().take(n).copied().collect(),
        )
    }

    fn apply(&mut self, d: &DepthUpdate, levels: &[Level]) {
        apply_side(&mut self.bids, d.levels.bids(levels));
        apply_side(&mut self.asks, d.levels.asks(levels));
        self.last_update_id = d.final_update_id;
    }

    /// Binance's rules for the first diff after a snapshot with `last` (spot: drop `u <= last`,
    /// bridge `U <= last + 1 <= u`; USD-M: drop `u < last`, bridge `U <= last <= u`).
    fn against(&self, d: &DepthUpdate, last: i64) -> Against {
        let (contained, bridges) = match self.market {
            Market::Spot => (
                d.final_update_id <= last,
                d.first_update_id <= last + 1 && last < d.final_update_id,
            ),
            Market::Usdm => (
                d.final_update_id < last,
                d.first_update_id <= last && last <= d.final_update_id,
            ),
        };
        match (contained, bridges) {
            (true, _) => Against::Contained,
            (false, true) => Against::Bridges,
            (false, false) => Against::Hole,
        }
    }

    fn reset(&mut self) {
        self.state = State::Buffering;
        self.bids.clear();
        self.asks.clear();
        self.buffer.clear();
    }

    /// Whether `d` continues the live book; `Err((expected, got))` when it does not.
    fn continues(&self, d: &DepthUpdate) -> Result<bool, (i64, i64)> {
        match self.market {
            Market::Spot => {
                if d.final_update_id <= self.last_update_id {
                    Ok(false) // already contained: stale
                } else if d.first_update_id == self.last_update_id + 1 {
                    Ok(true)
                } else {
                    Err((self.last_update_id + 1, d.first_update_id))
                }
            }
            Market::Usdm => {
                if d.prev_final_update_id == self.last_update_id {
                    Ok(true)
                } else if d.final_update_id <= self.last_update_id {
                    Ok(false)
                } else {
                    Err((self.last_update_id, d.prev_final_update_id))
                }
            }
        }
    }

    /// Takes one diff (`levels` is the arena its range indexes).
    pub fn on_diff(&mut self, d: &DepthUpdate, levels: &[Level]) -> SyncEvent {
        match self.state {
            State::Buffering => {
                if self.buffer.len() == self.max_buffer {
                    // A ring: dropping the oldest is O(1) (a `Vec::remove(0)` here moved the
                    // whole buffer, ~1 MB, for every diff of a book that could not sync).
                    self.buffer.pop_front();
                }
                let mut own = Vec::with_capacity((d.levels.bids + d.levels.asks) as usize);
                own.extend_from_slice(d.levels.bids(levels));
                own.extend_from_slice(d.levels.asks(levels));
                let mut d = *d;
                d.levels.start = 0;
                self.buffer.push_back((d, own));
                SyncEvent::Buffered
            }
            State::Bridging => match self.against(d, self.last_update_id) {
                Against::Contained => SyncEvent::Stale,
                Against::Bridges => {
                    self.apply(d, levels);
                    self.state = State::Live;
                    SyncEvent::Applied
                }
                Against::Hole => {
                    let expected = self.last_update_id + 1;
                    self.reset();
                    SyncEvent::Gap {
                        expected,
                        got: d.first_update_id,
                    }
                }
            },
            State::Live => match self.continues(d) {
                Ok(true) => {
                    self.apply(d, levels);
                    SyncEvent::Applied
                }
                Ok(false) => SyncEvent::Stale,
                Err((expected, got)) => {
                    self.reset();
                    SyncEvent::Gap { expected, got }
                }
            },
        }
    }

    /// Applies a REST snapshot (`/api/v3/depth`, `/fapi/v1/depth`) and the buffered diffs
    /// after it. Returns [`SyncEvent::Live`], [`SyncEvent::NeedSnapshot`] (too old: fetch
    /// again) or [`SyncEvent::Gap`] (the buffered diffs do not bridge it).
    pub fn on_snapshot(
        &mut self,
        last_update_id: i64,
        bids: &[Level],
        asks: &[Level],
    ) -> SyncEvent {
        if let Some((first, _)) = self.buffer.front() {
            // A snapshot from before the first buffered diff leaves a hole between them.
            let too_old = match self.market {
                Market::Spot => last_update_id + 1 < first.first_update_id,
                Market::Usdm => last_update_id < first.first_update_id,
            };
            if too_old {
                return SyncEvent::NeedSnapshot;
            }
        }
        self.bids.clear();
        self.asks.clear();
        apply_side(&mut self.bids, bids);
        apply_side(&mut self.asks, asks);
        self.last_update_id = last_update_id;
        let buffered = std::mem::take(&mut self.buffer);
        let mut bridged = false;
        for (d, levels) in &buffered {
            if !bridged {
                match self.against(d, last_update_id) {
                    Against::Contained => continue,
                    Against::Bridges => {
                        bridged = true;
                        self.apply(d, levels);
                        continue;
                    }
                    Against::Hole => {
                        self.reset();
                        return SyncEvent::Gap {
                            expected: last_update_id + 1,
                            got: d.first_update_id,
                        };
                    }
                }
            }
            match self.continues(d) {
                Ok(true) => self.apply(d, levels),
                Ok(false) => {}
                Err((expected, got)) => {
                    self.reset();
                    return SyncEvent::Gap { expected, got };
                }
            }
        }
        // A snapshot newer than every buffered diff (the diffs it needs are still on their
        // way): the first one to come must bridge it, as a buffered one would have.
        self.state = if bridged {
            State::Live
        } else {
            State::Bridging
        };
        SyncEvent::Live
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_books_asked_for_are_published() {
        let l = super::LiveBooks::default();
        assert!(
            l.wanted(Market::Spot).is_empty(),
            "nothing asked: nothing to publish"
        );
        assert!(
            l.want(Some(Market::Spot), "BTCUSDT"),
            "a first query waits for a view"
        );
        assert!(
            !l.want(Some(Market::Spot), "BTCUSDT"),
            "then it is being published"
        );
        assert!(l.want(None, "ETHUSDT"));
        assert_eq!(l.wanted(Market::Spot).len(), 2);
        assert_eq!(l.wanted(Market::Usdm), ["ETHUSDT"]);
        l.publish(Market::Spot, "BTCUSDT", super::BookView::default());
        assert!(l.get(Some(Market::Spot), "BTCUSDT").is_some());
    }

    use super::*;
    use tickwire_codecs::binance::Decoder;
    use tickwire_codecs::record::Record;
    use tickwire_codecs::symbol::SymbolTable;

    fn diffs(market: Market, frames: &[&str]) -> Vec<(DepthUpdate, Vec<Level>)> {
        let mut d = Decoder::new(market, SymbolTable::new());
        let mut out = Vec::new();
        for f in frames {
            d.decode(f.as_bytes(), 0, &mut |r: &Record, lv: &[Level]| {
                if let Record::DepthUpdate(u) = r {
                    out.push((*u, lv.to_vec()));
                }
            })
            .expect("decodes");
        }
        out
    }

    fn level(p: i64, q: i128) -> Level {
        Level {
            price: p,
            qty: q.into(),
            price_dp: 0,
            qty_dp: 0,
            pad: [0; 6],
        }
    }

    /// A book that cannot sync keeps only the newest `max_buffer` diffs, oldest dropped first.
    #[test]
    fn a_full_buffer_drops_its_oldest_diffs() {
        let frames: Vec<String> = (1..=5)
            .map(|i| format!(r#"{{"e":"depthUpdate","E":1,"s":"X","U":{i},"u":{i},"b":[["{i}","1"]],"a":[]}}"#))
            .collect();
        let ds = diffs(
            Market::Spot,
            &frames.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut b = BookSync::new(Market::Spot);
        b.max_buffer = 3;
        for (d, l) in &ds {
            assert_eq!(b.on_diff(d, l), SyncEvent::Buffered);
        }
        assert_eq!(b.buffer.len(), 3);
        assert_eq!(
            b.on_snapshot(1, &[], &[]),
            SyncEvent::NeedSnapshot,
            "diffs 1 and 2 were dropped: 1 + 1 < 3"
        );
        assert_eq!(b.on_snapshot(2, &[], &[]), SyncEvent::Live);
        assert_eq!(b.last_update_id(), 5);
        assert_eq!(
            b.bids().keys().copied().collect::<Vec<_>>(),
            vec![300_000_000, 400_000_000, 500_000_000],
            "diffs 3, 4 and 5 applied in order"
        );
    }

    /// A snapshot newer than every buffered diff: the next diff bridges it by the snapshot
    /// rules (not the continuity rule, which would call it a gap), on both markets.
    #[test]
    fn a_snapshot_ahead_of_the_buffer_is_bridged_by_the_next_diff() {
        for (market, frames) in [
            (
                Market::Spot,
                [
                    r#"{"e":"depthUpdate","E":1,"s":"X","U":1,"u":5,"b":[["1","1"]],"a":[]}"#,
                    r#"{"e":"depthUpdate","E":1,"s":"X","U":6,"u":9,"b":[["2","1"]],"a":[]}"#,
                    r#"{"e":"depthUpdate","E":1,"s":"X","U":10,"u":11,"b":[["3","1"]],"a":[]}"#,
                ],
            ),
            (
                Market::Usdm,
                [
                    r#"{"e":"depthUpdate","E":1,"T":1,"s":"X","U":1,"u":5,"pu":0,"b":[["1","1"]],"a":[]}"#,
                    r#"{"e":"depthUpdate","E":1,"T":1,"s":"X","U":6,"u":9,"pu":5,"b":[["2","1"]],"a":[]}"#,
                    r#"{"e":"depthUpdate","E":1,"T":1,"s":"X","U":10,"u":11,"pu":9,"b":[["3","1"]],"a":[]}"#,
                ],
            ),
        ] {
            let ds = diffs(market, &frames);
            let mut b = BookSync::new(market);
            assert_eq!(b.on_diff(&ds[0].0, &ds[0].1), SyncEvent::Buffered);
            assert_eq!(b.on_snapshot(7, &[], &[]), SyncEvent::Live, "{market:?}");
            assert_eq!(b.last_update_id(), 7);
            assert_eq!(b.on_diff(&ds[0].0, &ds[0].1), SyncEvent::Stale);
            assert_eq!(
                b.on_diff(&ds[1].0, &ds[1].1),
                SyncEvent::Applied,
                "{market:?}"
            );
            assert_eq!(
                b.on_diff(&ds[2].0, &ds[2].1),
                SyncEvent::Applied,
                "{market:?}"
            );
            assert_eq!(b.last_update_id(), 11);
            assert_eq!(b.bids().len(), 2, "{market:?}: levels 2 and 3, not 1");
            // A diff that starts past the snapshot leaves a hole (spot: the snapshot is
            // awaiting its bridge; USD-M: diff 1 bridged it, and 10-11 does not continue).
            let mut b = BookSync::new(market);
            assert_eq!(b.on_diff(&ds[0].0, &ds[0].1), SyncEvent::Buffered);
            assert_eq!(b.on_snapshot(5, &[], &[]), SyncEvent::Live);
            let hole = match market {
                Market::Spot => SyncEvent::Gap {
                    expected: 6,
                    got: 10,
                },
                Market::Usdm => SyncEvent::Gap {
                    expected: 5,
                    got: 9,
                },
            };
            assert_eq!(b.on_diff(&ds[2].0, &ds[2].1), hole, "{market:?}");
            assert!(!b.is_live());
        }
    }

    #[test]
    fn spot_bridges_then_detects_a_gap() {
        let ds = diffs(
            Market::Spot,
            &[
                r#"{"e":"depthUpdate","E":1,"s":"X","U":5,"u":7,"b":[["1","1"]],"a":[]}"#,
                r#"{"e":"depthUpdate","E":1,"s":"X","U":8,"u":9,"b":[["2","1"]],"a":[["3","1"]]}"#,
                r#"{"e":"depthUpdate","E":1,"s":"X","U":10,"u":10,"b":[["1","0"]],"a":[]}"#,
                r#"{"e":"depthUpdate","E":1,"s":"X","U":12,"u":13,"b":[],"a":[]}"#,
            ],
        );
        let mut b = BookSync::new(Market::Spot);
        for (d, l) in &ds[..2] {
            assert_eq!(b.on_diff(d, l), SyncEvent::Buffered);
        }
        assert_eq!(
            b.on_snapshot(3, &[], &[]),
            SyncEvent::NeedSnapshot,
            "3 + 1 < first U 5"
        );
        assert_eq!(
            b.on_snapshot(6, &[level(100_000_000, 5)], &[]),
            SyncEvent::Live
        );
        assert_eq!(b.last_update_id(), 9);
        assert_eq!(b.on_diff(&ds[2].0, &ds[2].1), SyncEvent::Applied);
        assert!(
            !b.bids().contains_key(&100_000_000),
            "qty 0 removed the level"
        );
        assert_eq!(b.on_diff(&ds[1].0, &ds[1].1), SyncEvent::Stale);
        assert_eq!(
            b.on_diff(&ds[3].0, &ds[3].1),
            SyncEvent::Gap {
                expected: 11,
                got: 12
            }
        );
        assert!(!b.is_live());
    }

    #[test]
    fn usdm_uses_pu() {
        let ds = diffs(
            Market::Usdm,
            &[
                r#"{"e":"depthUpdate","E":1,"T":1,"s":"X","U":5,"u":7,"pu":4,"b":[],"a":[]}"#,
                r#"{"e":"depthUpdate","E":1,"T":1,"s":"X","U":8,"u":9,"pu":7,"b":[],"a":[]}"#,
                r#"{"e":"depthUpdate","E":1,"T":1,"s":"X","U":10,"u":12,"pu":9,"b":[],"a":[]}"#,
                r#"{"e":"depthUpdate","E":1,"T":1,"s":"X","U":14,"u":15,"pu":13,"b":[],"a":[]}"#,
            ],
        );
        let mut b = BookSync::new(Market::Usdm);
        for (d, l) in &ds[..2] {
            b.on_diff(d, l);
        }
        assert_eq!(
            b.on_snapshot(6, &[], &[]),
            SyncEvent::Live,
            "U 5 <= 6 <= u 7 bridges"
        );
        assert_eq!(b.on_diff(&ds[2].0, &ds[2].1), SyncEvent::Applied);
        assert_eq!(
            b.on_diff(&ds[3].0, &ds[3].1),
            SyncEvent::Gap {
                expected: 12,
                got: 13
            }
        );
    }
}

/// A book as the query API serves it: last update id, receive time (ns) of the diff that made
/// it, bids and asks best first.
#[derive(Debug, Clone, Default)]
pub struct BookView {
    /// Last update id applied.
    pub last_update_id: i64,
    /// When it was published, ns since the epoch.
    pub at_ns: i64,
    /// Bids, best first.
    pub bids: Vec<Level>,
    /// Asks, best first.
    pub asks: Vec<Level>,
}

/// The sources' live books, published for the query API (`/v1/book`): per (market, symbol).
///
/// Only the books asked for within [`LiveBooks::INTEREST`] are published (every 100 ms, by the
/// source that keeps each): copying 1,000 levels a side of every book ten times a second cost
/// the whole market more than its records did (perf/RESULTS.md). The first query of a book
/// waits for its first publication.
#[derive(Debug, Default)]
pub struct LiveBooks {
    books: std::sync::Mutex<std::collections::HashMap<(Market, String), BookView>>,
    /// When each book was last asked for.
    wanted: std::sync::Mutex<std::collections::HashMap<(Market, String), std::time::Instant>>,
    /// Some book is asked for (the sources' 100 ms publishing runs only then).
    active: std::sync::atomic::AtomicBool,
    /// Wakes the sources when a book is first asked for.
    pub wake: tokio::sync::Notify,
}

impl LiveBooks {
    /// Levels a side published per book.
    pub const LEVELS: usize = 1000;
    /// A book asked for is published for this long after the last query.
    pub const INTEREST: std::time::Duration = std::time::Duration::from_secs(60);

    /// Registers a query of `symbol` (in `market`, or both): true if it was not being
    /// published (its view may not be there yet).
    pub fn want(&self, market: Option<Market>, symbol: &str) -> bool {
        let now = std::time::Instant::now();
        let mut g = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = false;
        for m in [Market::Spot, Market::Usdm] {
            if market.is_none_or(|x| x == m) {
                let prev = g.insert((m, symbol.to_string()), now);
                fresh |= prev.is_none_or(|t| now.duration_since(t) >= Self::INTEREST);
            }
        }
        drop(g);
        if !self.active.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.wake.notify_waiters();
        }
        fresh
    }

    /// Whether some book is asked for (until [`Self::wanted`] finds every interest expired).
    pub fn active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The books of `market` asked for within [`Self::INTEREST`]; the views of books no
    /// longer asked for are dropped (a stale view is never served).
    pub fn wanted(&self, market: Market) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut g = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        let mut expired = Vec::new();
        g.retain(|k, t| {
            let keep = now.duration_since(*t) < Self::INTEREST;
            if !keep {
                expired.push(k.clone());
            }
            keep
        });
        let out = g
            .keys()
            .filter(|(m, _)| *m == market)
            .map(|(_, s)| s.clone())
            .collect();
        if g.is_empty() {
            self.active
                .store(false, std::sync::atomic::Ordering::Release);
        }
        drop(g);
        if !expired.is_empty() {
            let mut b = self.books.lock().unwrap_or_else(|p| p.into_inner());
            for k in expired {
                b.remove(&k);
            }
        }
        out
    }

    /// Replaces the published view of (market, symbol).
    pub fn publish(&self, market: Market, symbol: &str, view: BookView) {
        self.books
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((market, symbol.to_string()), view);
    }

    /// Removes (market, symbol): its book is no longer live.
    pub fn withdraw(&self, market: Market, symbol: &str) {
        self.books
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(market, symbol.to_string()));
    }

    /// The view of `symbol` in `market` (any market when `None`, spot first).
    pub fn get(&self, market: Option<Market>, symbol: &str) -> Option<(Market, BookView)> {
        let g = self.books.lock().unwrap_or_else(|p| p.into_inner());
        [Market::Spot, Market::Usdm]
            .into_iter()
            .filter(|m| market.is_none_or(|x| x == *m))
            .find_map(|m| g.get(&(m, symbol.to_string())).map(|v| (m, v.clone())))
    }
}
