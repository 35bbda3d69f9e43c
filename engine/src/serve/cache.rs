//! The Arrow L2 cache: recent batches in memory, shared with the sinks, for the query API.
//!
//! The columnarize thread hands every flushed batch to [`Cache::insert`] (the same `Arc` the
//! sinks get: no copy) and, every [`SNAPSHOT_EVERY`], a copy of each still-open batch that
//! changed ([`Cache::set_open`]), so records are visible before they are flushed. Batches are
//! kept for `window` of receive time within `budget_bytes`; the oldest go first. What has
//! been evicted for a (kind, market), and everything before the cache started, is "before
//! the cache": [`Cache::scan`] reports where the cache's coverage begins so that the query
//! layer can read the older part from a store.
//!
//! Locking: one `RwLock`. Writers (the columnarize thread) hold it to push or pop an `Arc`;
//! readers hold it to clone the `Arc`s they need and filter outside the lock.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampNanosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tickwire_codecs::record::{Kind, Market};

/// How often the columnarize thread publishes its open batches to the cache.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Keep batches whose newest row was received within this window.
    pub window: Duration,
    /// Arrow memory the cache may hold; beyond it the oldest batches are evicted.
    pub budget_bytes: usize,
}

impl Default for CacheConfig {
    /// One hour within 512 MiB.
    fn default() -> Self {
        CacheConfig {
            window: Duration::from_secs(3600),
            budget_bytes: 512 << 20,
        }
    }
}

/// Cache counters (in /metrics).
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Queries answered from the cache alone.
    pub hits: AtomicU64,
    /// Queries answered from the store alone (or from nothing).
    pub misses: AtomicU64,
    /// Queries answered from the store and the cache together.
    pub partial_hits: AtomicU64,
    /// Queries that failed: the store behind the cache failed (502) or a scan did (500).
    pub errors: AtomicU64,
    /// Queries the store behind the cache (L3) answered alone.
    pub store_hits: AtomicU64,
    /// Queries the store answered with the cache (the older part of the range).
    pub store_partial_hits: AtomicU64,
    /// Batches evicted (age or memory).
    pub evicted_batches: AtomicU64,
    /// Rows evicted.
    pub evicted_rows: AtomicU64,
    /// Arrow bytes held now.
    pub bytes: AtomicU64,
    /// Batches held now (flushed ones).
    pub batches: AtomicU64,
}

struct Entry {
    kind: Kind,
    market: Market,
    batch: Arc<RecordBatch>,
    /// Newest receive time in the batch, ns.
    max_recv: i64,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    /// Flushed batches, oldest first.
    flushed: VecDeque<Entry>,
    /// The still-open batch per (kind, market, day), newest copy, with its newest receive time.
    open: HashMap<(Kind, Market, i32), (i64, Arc<RecordBatch>)>,
    /// Per (kind, market): receive time (ns) from which the cache holds everything.
    covered_from: HashMap<(Kind, Market), i64>,
    bytes: usize,
}

/// The cache (see the module docs). Shared as `Arc<Cache>`.
pub struct Cache {
    cfg: CacheConfig,
    /// Receive time (ns) at which the cache started: it holds nothing older.
    started_ns: i64,
    inner: RwLock<Inner>,
    counters: Arc<CacheCounters>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("cfg", &self.cfg).finish()
    }
}

/// What a scan found.
#[derive(Debug)]
pub struct Scan {
    /// Matching rows, in batches, oldest batch first (rows in arrival order).
    pub batches: Vec<RecordBatch>,
    /// The cache holds every row received at or after this time (ns) for the kind and
    /// market(s) asked; older rows must come from a store.
    pub covered_from: i64,
}

fn max_recv(b: &RecordBatch) -> i64 {
    b.column_by_name("recv_time")
        .and_then(|c| {
            c.as_primitive_opt::<TimestampNanosecondType>()
                .and_then(arrow_arith_max)
        })
        .unwrap_or(i64::MIN)
}

fn arrow_arith_max(a: &arrow_array::TimestampNanosecondArray) -> Option<i64> {
    a.values().iter().copied().max()
}

impl Cache {
    /// An empty cache; it covers receive times from `now_ns` on.
    pub fn new(cfg: CacheConfig, now_ns: i64) -> Self {
        Cache {
            cfg,
            started_ns: now_ns,
            inner: RwLock::new(Inner::default()),
            counters: Arc::default(),
        }
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<CacheCounters> {
        self.counters.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a flushed batch of (kind, market, day): it replaces that key's open copy. Then
    /// evicts what is older than the window (relative to `now_ns`) or over the budget.
    pub fn insert(
        &self,
        kind: Kind,
        market: Market,
        day: i32,
        batch: Arc<RecordBatch>,
        now_ns: i64,
    ) {
        let bytes = batch.get_array_memory_size();
        let mut g = self.write();
        g.open.remove(&(kind, market, day));
        g.flushed.push_back(Entry {
            kind,
            market,
            max_recv: max_recv(&batch),
            batch,
            bytes,
        });
        g.bytes += bytes;
        let horizon = now_ns.saturating_sub(self.cfg.window.as_nanos() as i64);
        while let Some(front) = g.flushed.front() {
            if front.max_recv >= horizon && g.bytes <= self.cfg.budget_bytes {
                break;
            }
            let Some(e) = g.flushed.pop_front() else {
                break;
            };
            g.bytes -= e.bytes;
            let c = g.covered_from.entry((e.kind, e.market)).or_insert(i64::MIN);
            *c = (*c).max(e.max_recv.saturating_add(1));
            self.counters
                .evicted_batches
                .fetch_add(1, Ordering::Relaxed);
            self.counters
                .evicted_rows
                .fetch_add(e.batch.num_rows() as u64, Ordering::Relaxed);
        }
        self.counters.bytes.store(g.bytes as u64, Ordering::Relaxed);
        self.counters
            .batches
            .store(g.flushed.len() as u64, Ordering::Relaxed);
    }

    /// Replaces the copy of the still-open batch of (kind, market, day).
    pub fn set_open(&self, kind: Kind, market: Market, day: i32, batch: RecordBatch) {
        let newest = max_recv(&batch);
        self.write()
            .open
            .insert((kind, market, day), (newest, Arc::new(batch)));
    }

    /// The receive time (ns) from which the cache holds every row of `kind` (and `market`).
    pub fn covered_from(&self, kind: Kind, market: Option<Market>) -> i64 {
        let g = self.read();
        Market::ALL
            .iter()
            .filter(|m| market.is_none_or(|x| x == **m))
            .map(|m| {
                g.covered_from
                    .get(&(kind, *m))
                    .copied()
                    .unwrap_or(i64::MIN)
                    .max(self.started_ns)
            })
            .max()
            .unwrap_or(self.started_ns)
    }

    /// The batches of `kind` (and `market`) that may hold rows received at or after
    /// `from_ns`, unfiltered (flushed ones oldest first, then the open ones).
    pub fn raw(&self, kind: Kind, market: Option<Market>, from_ns: i64) -> Vec<Arc<RecordBatch>> {
        self.candidates(kind, market, from_ns)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// The batches of `kind` (and `market`) with a row received at or after `from_ns`, each
    /// with its newest receive time: flushed ones oldest first, then the open ones.
    fn candidates(
        &self,
        kind: Kind,
        market: Option<Market>,
        from_ns: i64,
    ) -> Vec<(i64, Arc<RecordBatch>)> {
        let g = self.read();
        let mine = |k: Kind, m: Market| k == kind && market.is_none_or(|x| x == m);
        g.flushed
            .iter()
            .filter(|e| mine(e.kind, e.market) && e.max_recv >= from_ns)
            .map(|e| (e.max_recv, e.batch.clone()))
            .chain(
                g.open
                    .iter()
                    .filter(|((k, m, _), (newest, _))| mine(*k, *m) && *newest >= from_ns)
                    .map(|(_, (newest, b))| (*newest, b.clone())),
            )
            .collect()
    }

    /// Rows of `kind` (and `market`, `symbol` when given) received in `[from_ns, to_ns)`.
    pub fn scan(
        &self,
        kind: Kind,
        market: Option<Market>,
        symbol: Option<&str>,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Scan, String> {
        self.scan_newest(kind, market, symbol, from_ns, to_ns, usize::MAX)
    }

    /// As [`Cache::scan`], but only as many batches as it takes to hold the `limit` newest
    /// matching rows: batches are visited newest first and the visit stops at the first batch
    /// whose newest row is older than the `limit`-th newest row found so far.
    pub fn scan_newest(
        &self,
        kind: Kind,
        market: Option<Market>,
        symbol: Option<&str>,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
    ) -> Result<Scan, String> {
        let covered_from = self.covered_from(kind, market);
        let mut cands = self.candidates(kind, market, from_ns);
        cands.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut batches = Vec::new();
        let (mut rows, mut threshold) = (0usize, None::<i64>);
        for (newest, b) in &cands {
            if threshold.is_some_and(|t| *newest < t) {
                break;
            }
            if let Some(sel) = select(b, symbol, from_ns, to_ns)? {
                rows += sel.num_rows();
                batches.push(sel);
                if threshold.is_none() && rows >= limit {
                    let mut recv: Vec<i64> = batches
                        .iter()
                        .filter_map(|b| {
                            b.column_by_name("recv_time")?
                                .as_primitive_opt::<TimestampNanosecondType>()
                                .map(|a| a.values().to_vec())
                        })
                        .flatten()
                        .collect();
                    let k = limit - 1;
                    recv.select_nth_unstable_by(k, |a, b| b.cmp(a));
                    threshold = Some(recv[k]);
                }
            }
        }
        batches.reverse();
        Ok(Scan {
            batches,
            covered_from,
        })
    }
}

/// The rows of `b` of `symbol` received in `[from_ns, to_ns)`; `None` when there are none.
pub fn select(
    b: &RecordBatch,
    symbol: Option<&str>,
    from_ns: i64,
    to_ns: i64,
) -> Result<Option<RecordBatch>, String> {
    let recv = b
        .column_by_name("recv_time")
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or("a cached batch without recv_time")?;
    let sym_key: Option<Option<i32>> = symbol.map(|s| {
        b.column_by_name("symbol")
            .and_then(|c| c.as_dictionary_opt::<Int32Type>())
            .and_then(|d| {
                let vals = d.values().as_string::<i32>();
                (0..vals.len())
                    .find(|&i| vals.value(i) == s)
                    .map(|i| i as i32)
            })
    });
    if let Some(None) = sym_key {
        return Ok(None); // the symbol is not in this batch
    }
    let keys = b
        .column_by_name("symbol")
        .and_then(|c| c.as_dictionary_opt::<Int32Type>())
        .map(|d| d.keys().clone());
    let mask: BooleanArray = (0..b.num_rows())
        .map(|i| {
            let t = recv.value(i);
            let in_time = t >= from_ns && t < to_ns;
            let in_sym = match (sym_key, &keys) {
                (Some(Some(k)), Some(keys)) => keys.value(i) == k,
                _ => true,
            };
            Some(in_time && in_sym)
        })
        .collect();
    let n = mask.true_count();
    if n == 0 {
        Ok(None)
    } else if n == b.num_rows() {
        Ok(Some(b.clone()))
    } else {
        arrow_select::filter::filter_record_batch(b, &mask)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_codecs::arrow::BatchBuilder;
    use tickwire_codecs::decimal::DpSet;
    use tickwire_codecs::record::{Header, Record, SymbolId, Trade};

    fn trades(rows: &[(&str, i64)]) -> RecordBatch {
        let mut b = BatchBuilder::new(Kind::Trade, rows.len());
        for (i, &(sym, recv)) in rows.iter().enumerate() {
            let mut dp = DpSet::ALL_NULL;
            dp.set(0, 2);
            dp.set(1, 2);
            let t = Trade {
                header: Header::new(Kind::Trade, Market::Spot, SymbolId(0), 1, recv),
                trade_id: i as i64,
                price: 100,
                qty: 100i128.into(),
                trade_time: 1,
                dp,
                is_buyer_maker: 0,
                pad: [0; 7],
            };
            b.append(&Record::Trade(t), &[], sym).expect("append");
        }
        b.finish().expect("batch")
    }

    fn rows(s: &Scan) -> usize {
        s.batches.iter().map(|b| b.num_rows()).sum()
    }

    #[test]
    fn scans_filter_by_symbol_and_time_and_see_open_batches() {
        let c = Cache::new(CacheConfig::default(), 0);
        c.insert(
            Kind::Trade,
            Market::Spot,
            0,
            Arc::new(trades(&[("BTCUSDT", 10), ("ETHUSDT", 20), ("BTCUSDT", 30)])),
            40,
        );
        c.set_open(Kind::Trade, Market::Spot, 0, trades(&[("BTCUSDT", 50)]));
        let all = c
            .scan(Kind::Trade, None, None, i64::MIN, i64::MAX)
            .expect("scan");
        assert_eq!(rows(&all), 4);
        let btc = c
            .scan(Kind::Trade, Some(Market::Spot), Some("BTCUSDT"), 20, 60)
            .expect("scan");
        assert_eq!(rows(&btc), 2, "30 and the open 50");
        assert_eq!(
            rows(
                &c.scan(Kind::Trade, None, Some("XRPUSDT"), 0, 99)
                    .expect("scan")
            ),
            0
        );
        assert_eq!(
            rows(
                &c.scan(Kind::Trade, Some(Market::Usdm), None, 0, 99)
                    .expect("scan")
            ),
            0
        );
        assert_eq!(
            rows(&c.scan(Kind::AggTrade, None, None, 0, 99).expect("scan")),
            0
        );
        // A flush of the open batch replaces its copy: nothing twice.
        c.insert(
            Kind::Trade,
            Market::Spot,
            0,
            Arc::new(trades(&[("BTCUSDT", 50)])),
            60,
        );
        assert_eq!(
            rows(
                &c.scan(Kind::Trade, None, None, i64::MIN, i64::MAX)
                    .expect("scan")
            ),
            4
        );
    }

    #[test]
    fn the_newest_rows_are_found_without_visiting_every_batch() {
        let c = Cache::new(CacheConfig::default(), 0);
        // Two markets whose batches overlap in time.
        for (i, m) in [(0i64, Market::Spot), (1, Market::Usdm)] {
            for k in 0..5i64 {
                let base = k * 100 + i * 50;
                c.insert(
                    Kind::Trade,
                    m,
                    0,
                    Arc::new(trades(&[("A", base), ("B", base + 10), ("A", base + 60)])),
                    1000,
                );
            }
        }
        let s = c
            .scan_newest(Kind::Trade, None, Some("A"), i64::MIN, i64::MAX, 3)
            .expect("scan");
        let mut recv: Vec<i64> = s
            .batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("recv_time")
                    .expect("recv_time")
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .to_vec()
            })
            .collect();
        recv.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(&recv[..3], &[510, 460, 450], "the three newest A rows");
        assert!(s.batches.len() < 10, "stopped early: {}", s.batches.len());
    }

    #[test]
    fn the_oldest_are_evicted_by_age_and_budget_and_coverage_moves() {
        let c = Cache::new(
            CacheConfig {
                window: Duration::from_nanos(100),
                budget_bytes: usize::MAX,
            },
            5,
        );
        assert_eq!(
            c.scan(Kind::Trade, None, None, 0, 9)
                .expect("scan")
                .covered_from,
            5
        );
        c.insert(
            Kind::Trade,
            Market::Spot,
            0,
            Arc::new(trades(&[("A", 10)])),
            20,
        );
        c.insert(
            Kind::Trade,
            Market::Spot,
            0,
            Arc::new(trades(&[("A", 150)])),
            160,
        );
        let s = c.scan(Kind::Trade, None, None, 0, 999).expect("scan");
        assert_eq!(rows(&s), 1, "the row at 10 is older than 160 - 100");
        assert_eq!(s.covered_from, 11);
        let counters = c.counters();
        assert_eq!(counters.evicted_rows.load(Ordering::Relaxed), 1);
        let small = Cache::new(
            CacheConfig {
                window: Duration::from_secs(9),
                budget_bytes: 1,
            },
            0,
        );
        small.insert(
            Kind::Trade,
            Market::Spot,
            0,
            Arc::new(trades(&[("A", 10)])),
            20,
        );
        assert_eq!(
            rows(&small.scan(Kind::Trade, None, None, 0, 99).expect("scan")),
            0,
            "over budget"
        );
    }
}
