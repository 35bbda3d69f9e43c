//! The query API over the Arrow L2 cache, with read-through to a store.
//!
//! - `GET /v1/<kind>?market=&symbol=&from=&to=&limit=&format=`: rows of one record kind
//!   received in `[from, to)`, newest first, at most `limit` (default 1000). Arrow IPC stream
//!   when the client accepts `application/vnd.apache.arrow.stream` (or `format=arrow`), CSV
//!   for `text/csv` (or `format=csv`), JSON lines otherwise: the decode JSON's columns, with
//!   decimals as exact strings at scale 8 and times as integers (µs; `recv_time` ns). The
//!   newest `book_ticker`, `ticker` or `mark_price` of one market and symbol (`limit=1`, no
//!   time range) is read from the Redis L1 first, as the same row.
//! - `GET /v1/candles?market=&symbol=&interval=1s|1m|5m|1h&from=&to=`: OHLCV by trade time
//!   from the trades, exact decimals (VWAP truncated at scale 8), JSON lines.
//! - `GET /v1/book?market=&symbol=&depth=N`: the live order book of the symbol (top N levels
//!   a side, as the source keeps it from diffs and REST snapshots, published every 100 ms), or
//!   where none is live the newest partial-depth snapshot, JSON.
//!
//! Times (`from`, `to`) are milliseconds since the epoch or RFC 3339 UTC
//! (`2026-11-30T12:00:00Z`, fractions allowed). Rows are selected by receive time.
//!
//! Read-through: the cache holds every row received since its coverage point (engine start,
//! or the newest evicted row); when `from` lies before it and a store is configured, the
//! older part comes from the store (`recv_time < coverage`) and the newer from the cache
//! (`recv_time >= coverage`): disjoint, so nothing twice. The `X-Tickwire-Tiers` header says
//! which tiers served (`cache`, `postgres`).

use crate::serve::cache::{Cache, CacheCounters};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampNanosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tickwire_codecs::arrow::schema;
use tickwire_codecs::record::{Kind, Market};

/// Content type of Arrow IPC streams.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status line text, e.g. `200 OK`.
    pub status: &'static str,
    /// Content type.
    pub content_type: &'static str,
    /// Extra headers (`name: value`).
    pub headers: Vec<String>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A plain-text answer.
    pub fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn error(status: &'static str, msg: impl std::fmt::Display) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: vec![],
            body: format!("{{\"error\":{}}}\n", json_str(&msg.to_string())).into_bytes(),
        }
    }
    fn bad(msg: impl std::fmt::Display) -> Reply {
        Reply::error("400 Bad Request", msg)
    }
    fn not_found(msg: impl std::fmt::Display) -> Reply {
        Reply::error("404 Not Found", msg)
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The query string's parameters, decoded.
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Parses `a=1&b=x%20y`.
    pub fn parse(q: &str) -> Params {
        Params(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Milliseconds since the epoch, or an RFC 3339 time (`2026-11-30T12:00:00Z`, fractions to
/// the nanosecond, any offset); in ns since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return ms
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("time {s} out of range"));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            format!(
                "bad time {s:?}: milliseconds since the epoch or RFC 3339 UTC (2026-11-30T12:00:00Z)"
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("time {s} out of range"))
}

/// The output format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON lines.
    Json,
    /// CSV with a header row.
    Csv,
    /// Arrow IPC stream.
    Arrow,
}

fn format(p: &Params, accept: &str) -> Result<Format, Reply> {
    match p.get("format") {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some("arrow") => Ok(Format::Arrow),
        Some(f) => Err(Reply::bad(format!(
            "unknown format {f:?}: json, csv or arrow"
        ))),
        None if accept.contains(ARROW_STREAM) => Ok(Format::Arrow),
        None if accept.contains("text/csv") => Ok(Format::Csv),
        None => Ok(Format::Json),
    }
}

/// What every query names: market, symbol and the time range.
struct Filter {
    market: Option<Market>,
    symbol: Option<String>,
    from: i64,
    to: i64,
}

fn filter(
    p: &Params,
    symbols: &tickwire_codecs::symbol::SymbolTable,
    store: bool,
) -> Result<Filter, Reply> {
    let market = match p.get("market") {
        None => None,
        Some(m) => Some(
            Market::ALL
                .iter()
                .copied()
                .find(|x| x.as_str() == m)
                .ok_or_else(|| Reply::bad(format!("unknown market {m:?}: spot or usdm")))?,
        ),
    };
    let symbol = p.get("symbol").map(str::to_ascii_uppercase);
    if let Some(s) = &symbol {
        if symbols.get(s).is_none() && !store {
            return Err(Reply::not_found(format!(
                "unknown symbol {s:?}: not seen by this engine"
            )));
        }
    }
    let from = p
        .get("from")
        .map(parse_time)
        .transpose()
        .map_err(Reply::bad)?
        .unwrap_or(i64::MIN);
    let to = p
        .get("to")
        .map(parse_time)
        .transpose()
        .map_err(Reply::bad)?
        .unwrap_or(i64::MAX);
    if from >= to {
        return Err(Reply::bad(format!(
            "bad time range: from ({from} ns) is not before to ({to} ns)"
        )));
    }
    Ok(Filter {
        market,
        symbol,
        from,
        to,
    })
}

/// The read-through store.
pub enum ReadStore {
    /// PostgreSQL tables written by the postgres sink.
    Postgres(crate::serve::readthrough::PgReader),
    /// ClickHouse tables written by the clickhouse sink.
    ClickHouse(crate::serve::readthrough::ChReader),
}

impl std::fmt::Debug for ReadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ReadStore {
    fn name(&self) -> &'static str {
        match self {
            ReadStore::Postgres(_) => "postgres",
            ReadStore::ClickHouse(_) => "clickhouse",
        }
    }
    async fn fetch(
        &self,
        kind: Kind,
        f: &Filter,
        to: i64,
        limit: usize,
    ) -> Result<Vec<RecordBatch>, String> {
        match self {
            ReadStore::Postgres(r) => {
                r.fetch(kind, f.market, f.symbol.as_deref(), f.from, to, limit)
                    .await
            }
            ReadStore::ClickHouse(r) => {
                r.fetch(kind, f.market, f.symbol.as_deref(), f.from, to, limit)
                    .await
            }
        }
    }
}

/// Everything the API reads.
#[derive(Debug)]
pub struct Api {
    /// The cache.
    pub cache: Arc<Cache>,
    /// Symbols the engine has seen.
    pub symbols: Arc<tickwire_codecs::symbol::SymbolTable>,
    /// The store behind the cache, if any.
    pub store: Option<ReadStore>,
    /// The sources' live order books.
    pub live: Option<Arc<crate::source::book::LiveBooks>>,
    /// The Redis L1, read first for candles.
    pub l1: Option<Arc<crate::serve::l1::L1Reader>>,
}

/// Rows newest first by receive time (ties: later position first), at most `limit`, as one
/// batch of `kind`'s schema.
fn newest_first(kind: Kind, batches: &[RecordBatch], limit: usize) -> Result<RecordBatch, String> {
    let mut idx: Vec<(i64, usize, usize)> = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        let Some(recv) = b
            .column_by_name("recv_time")
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        else {
            return Err("a batch without recv_time".into());
        };
        idx.extend(recv.values().iter().enumerate().map(|(r, &t)| (t, bi, r)));
    }
    let take = limit.min(idx.len());
    if take == 0 {
        return Ok(RecordBatch::new_empty(schema(kind)));
    }
    let newest = |x: &(i64, usize, usize), y: &(i64, usize, usize)| y.cmp(x);
    if take < idx.len() {
        idx.select_nth_unstable_by(take - 1, newest);
        idx.truncate(take);
    }
    idx.sort_unstable_by(newest);
    let pick: Vec<(usize, usize)> = idx.iter().map(|&(_, b, r)| (b, r)).collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    arrow_select::interleave::interleave_record_batch(&refs, &pick).map_err(|e| e.to_string())
}

impl Api {
    /// Answers `GET path?query` with the request's `Accept` header.
    pub async fn handle(&self, path: &str, query: &str, accept: &str) -> Reply {
        let p = Params::parse(query);
        let what = path.trim_start_matches("/v1/");
        match what {
            "candles" => self.candles(&p).await,
            "book" => self.book(&p).await,
            k => match Kind::ALL.iter().copied().find(|x| x.as_str() == k) {
                Some(kind) => self.rows(kind, &p, accept).await,
                None => Reply::not_found(format!(
                    "unknown kind {k:?}: one of {}, or candles, book",
                    Kind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
        }
    }

    fn counters(&self) -> Arc<CacheCounters> {
        self.cache.counters()
    }

    /// A failed query (the store or a scan): counted, and answered with `status`.
    fn failed(&self, status: &'static str, msg: impl std::fmt::Display) -> Reply {
        self.counters().errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("query: {msg}");
        Reply::error(status, msg)
    }

    /// Counts a query as a hit (cache alone), partial hit (store and cache) or miss.
    fn tally(&self, tiers: &[&str]) {
        let c = self.counters();
        match (tiers.contains(&"cache"), tiers.len()) {
            (true, 1) => c.hits.fetch_add(1, Ordering::Relaxed),
            (true, _) => {
                c.store_partial_hits.fetch_add(1, Ordering::Relaxed);
                c.partial_hits.fetch_add(1, Ordering::Relaxed)
            }
            (false, 0) => c.misses.fetch_add(1, Ordering::Relaxed),
            (false, _) => {
                c.store_hits.fetch_add(1, Ordering::Relaxed);
                c.misses.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Cache rows in `[from, to)`, plus, when `from` is before the cache's coverage, store
    /// rows in `[from, coverage)`. Returns (batches: store part first, tiers).
    async fn gather(
        &self,
        kind: Kind,
        f: &Filter,
        limit: usize,
    ) -> Result<(Vec<RecordBatch>, Vec<&'static str>), Reply> {
        let covered = self.cache.covered_from(kind, f.market);
        let use_store = self.store.is_some() && f.from < covered;
        let cache_from = if use_store { covered } else { f.from };
        let scan = self
            .cache
            .scan_newest(kind, f.market, f.symbol.as_deref(), cache_from, f.to, limit)
            .map_err(|e| self.failed("500 Internal Server Error", e))?;
        let cached: usize = scan.batches.iter().map(|b| b.num_rows()).sum();
        let mut tiers = Vec::new();
        let mut batches = Vec::new();
        if use_store && cached < limit {
            let store = self.store.as_ref().map(|s| (s.name(), s));
            if let Some((name, s)) = store {
                let older = s
                    .fetch(kind, f, covered.min(f.to), limit - cached)
                    .await
                    .map_err(|e| self.failed("502 Bad Gateway", format!("{name}: {e}")))?;
                batches.extend(older);
                tiers.push(name);
            }
        }
        if cached > 0 || tiers.is_empty() {
            tiers.push("cache");
        }
        self.tally(&tiers);
        batches.extend(scan.batches);
        Ok((batches, tiers))
    }

    async fn rows(&self, kind: Kind, p: &Params, accept: &str) -> Reply {
        let fmt = match format(p, accept) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let f = match filter(p, &self.symbols, self.store.is_some()) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let limit = match p.get("limit").map(str::parse::<usize>) {
            None => 1000,
            Some(Ok(n)) if (1..=1_000_000).contains(&n) => n,
            Some(_) => return Reply::bad("limit must be 1..=1000000"),
        };
        let (out, tiers) = match self.latest_from_l1(kind, &f, limit).await {
            Some(b) => (b, vec!["redis"]),
            None => {
                let (batches, tiers) = match self.gather(kind, &f, limit).await {
                    Ok(x) => x,
                    Err(r) => return r,
                };
                match newest_first(kind, &batches, limit) {
                    Ok(b) => (b, tiers),
                    Err(e) => return self.failed("500 Internal Server Error", e),
                }
            }
        };
        let tiers = format!("X-Tickwire-Tiers: {}", tiers.join(","));
        let rows = format!("X-Tickwire-Rows: {}", out.num_rows());
        let (content_type, body) = match fmt {
            Format::Json => ("application/x-ndjson", json_lines(kind, &out)),
            Format::Csv => ("text/csv", csv(&out)),
            Format::Arrow => match arrow_ipc(&out) {
                Ok(b) => (ARROW_STREAM, b),
                Err(e) => return self.failed("500 Internal Server Error", e),
            },
        };
        Reply {
            status: "200 OK",
            content_type,
            headers: vec![tiers, rows],
            body,
        }
    }

    async fn candles(&self, p: &Params) -> Reply {
        let f = match filter(p, &self.symbols, self.store.is_some()) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let interval_us: i64 = match p.get("interval").unwrap_or("1m") {
            "1s" => 1_000_000,
            "1m" => 60_000_000,
            "5m" => 300_000_000,
            "1h" => 3_600_000_000,
            i => return Reply::bad(format!("unknown interval {i:?}: 1s, 1m, 5m or 1h")),
        };
        if let Some(r) = self.candles_from_l1(p, &f, interval_us).await {
            return r;
        }
        // Trades are selected by trade time; those received up to a minute after `to` or
        // before `from` may still fall inside it.
        let wide = Filter {
            from: f.from.saturating_sub(60_000_000_000),
            to: f.to.saturating_add(60_000_000_000),
            market: f.market,
            symbol: f.symbol.clone(),
        };
        // The store's part (already filtered), then the cache's batches as they are: the
        // aggregation filters inline, without copying rows.
        let covered = self.cache.covered_from(Kind::Trade, f.market);
        let mut tiers = Vec::new();
        let mut parts: Vec<(Arc<RecordBatch>, i64)> = Vec::new();
        let cache_from = match &self.store {
            Some(store) if wide.from < covered => {
                match store
                    .fetch(Kind::Trade, &wide, covered.min(wide.to), usize::MAX)
                    .await
                {
                    Ok(older) => parts.extend(older.into_iter().map(|b| (Arc::new(b), i64::MIN))),
                    Err(e) => {
                        return self.failed("502 Bad Gateway", format!("{}: {e}", store.name()))
                    }
                }
                tiers.push(store.name());
                covered
            }
            _ => wide.from,
        };
        let cached = self.cache.raw(Kind::Trade, f.market, cache_from);
        if !cached.is_empty() || tiers.is_empty() {
            tiers.push("cache");
        }
        self.tally(&tiers);
        parts.extend(cached.into_iter().map(|b| (b, cache_from)));
        let (from_us, to_us) = (f.from.div_euclid(1000), f.to.div_euclid(1000));
        let mut buckets: BTreeMap<(String, String, i64), Candle> = BTreeMap::new();
        let mut local: rustc_hash::FxHashMap<(i32, i32, i64), Candle> = Default::default();
        for (b, recv_from) in &parts {
            let col = |n: &str| b.column_by_name(n).cloned();
            let (Some(m), Some(s), Some(id), Some(pr), Some(q), Some(tt), Some(rt)) = (
                col("market"),
                col("symbol"),
                col("trade_id"),
                col("price"),
                col("qty"),
                col("trade_time"),
                col("recv_time"),
            ) else {
                continue;
            };
            let (Some(md), Some(sd)) = (
                m.as_dictionary_opt::<Int8Type>(),
                s.as_dictionary_opt::<Int32Type>(),
            ) else {
                continue;
            };
            let want_sym: Option<i32> = match &f.symbol {
                None => None,
                Some(sym) => {
                    let vals = sd.values().as_string::<i32>();
                    match (0..vals.len()).find(|&i| vals.value(i) == sym) {
                        Some(k) => Some(k as i32),
                        None => continue,
                    }
                }
            };
            let (id, pr, q) = (
                id.as_primitive::<Int64Type>(),
                pr.as_primitive::<Decimal128Type>(),
                q.as_primitive::<Decimal128Type>(),
            );
            let tt = tt.as_primitive::<TimestampMicrosecondType>().values();
            let rt = rt.as_primitive::<TimestampNanosecondType>().values();
            let (mk, sk) = (md.keys().values(), sd.keys().values());
            local.clear();
            for r in 0..b.num_rows() {
                let t = tt[r];
                if t < from_us || t >= to_us || rt[r] < *recv_from || rt[r] >= wide.to {
                    continue;
                }
                if want_sym.is_some_and(|k| sk[r] != k) {
                    continue;
                }
                let start = t.div_euclid(interval_us) * interval_us;
                local
                    .entry((i32::from(mk[r]), sk[r], start))
                    .or_default()
                    .add((t, id.value(r)), pr.value(r), q.value(r));
            }
            let (mv, sv) = (
                md.values().as_string::<i32>(),
                sd.values().as_string::<i32>(),
            );
            for ((mkey, skey, start), c) in local.drain() {
                let key = (
                    mv.value(mkey as usize).to_string(),
                    sv.value(skey as usize).to_string(),
                    start,
                );
                buckets.entry(key).or_default().merge(&c);
            }
        }
        let mut body = String::new();
        for ((m, s, start), c) in &buckets {
            let vwap = if c.volume == 0 { 0 } else { c.quote / c.volume };
            let _ = writeln!(
                body,
                "{{\"market\":\"{m}\",\"symbol\":{},\"interval\":\"{}\",\"open_time\":{start},\"open\":\"{}\",\"high\":\"{}\",\"low\":\"{}\",\"close\":\"{}\",\"volume\":\"{}\",\"quote_volume\":\"{}\",\"trades\":{},\"vwap\":\"{}\"}}",
                json_str(s),
                p.get("interval").unwrap_or("1m"),
                scaled(c.open.1, 8),
                scaled(c.high, 8),
                scaled(c.low, 8),
                scaled(c.close.1, 8),
                scaled(c.volume, 8),
                scaled(c.quote, 16),
                c.trades,
                scaled(vwap, 8),
            );
        }
        Reply {
            status: "200 OK",
            content_type: "application/x-ndjson",
            headers: vec![format!("X-Tickwire-Tiers: {}", tiers.join(","))],
            body: body.into_bytes(),
        }
    }

    /// Candles from the Redis L1, when it holds the whole range: one market and symbol, an
    /// interval L1 keeps, `from` (and `to`, unless open-ended) on the interval's boundaries,
    /// and the oldest candle L1 holds at or before `from`. `None`: the next tier answers (a
    /// miss counted).
    async fn candles_from_l1(&self, p: &Params, f: &Filter, interval_us: i64) -> Option<Reply> {
        let l1 = self.l1.clone()?;
        let (Some(m), Some(sym)) = (f.market, f.symbol.clone()) else {
            return None;
        };
        let tf = p.get("interval").unwrap_or("1m").to_string();
        if !l1.timeframes.contains(&tf) {
            return None;
        }
        let (from_us, to_us) = (f.from.div_euclid(1000), f.to.div_euclid(1000));
        let aligned = |t: i64| t.rem_euclid(interval_us) == 0;
        let miss = || {
            l1.counters.reads_miss.fetch_add(1, Ordering::Relaxed);
            None
        };
        if f.from == i64::MIN || !aligned(from_us) || (f.to != i64::MAX && !aligned(to_us)) {
            return miss();
        }
        let reader = l1.clone();
        let (mk, s2, tf2) = (m.as_str(), sym.clone(), tf.clone());
        let got = tokio::task::spawn_blocking(move || reader.candles(mk, &s2, &tf2)).await;
        let candles = match got {
            Ok(Ok(c)) => c,
            _ => return miss(),
        };
        if candles.first().is_none_or(|c| c.open_time > from_us) {
            return miss();
        }
        l1.counters.reads_hit.fetch_add(1, Ordering::Relaxed);
        let mut body = String::new();
        for c in candles
            .iter()
            .filter(|c| c.open_time >= from_us && c.open_time < to_us)
        {
            let vwap = if c.volume == 0 { 0 } else { c.quote / c.volume };
            let _ = writeln!(
                body,
                "{{\"market\":\"{}\",\"symbol\":{},\"interval\":\"{tf}\",\"open_time\":{},\"open\":\"{}\",\"high\":\"{}\",\"low\":\"{}\",\"close\":\"{}\",\"volume\":\"{}\",\"quote_volume\":\"{}\",\"trades\":{},\"vwap\":\"{}\"}}",
                m.as_str(),
                json_str(&sym),
                c.open_time,
                scaled(c.open, 8),
                scaled(c.high, 8),
                scaled(c.low, 8),
                scaled(c.close, 8),
                scaled(c.volume, 8),
                scaled(c.quote, 16),
                c.trades,
                scaled(vwap, 8),
            );
        }
        Some(Reply {
            status: "200 OK",
            content_type: "application/x-ndjson",
            headers: vec!["X-Tickwire-Tiers: redis".into()],
            body: body.into_bytes(),
        })
    }

    /// The newest `book_ticker`, `ticker` or `mark_price` row of one market and symbol
    /// (`limit=1`, no time range) from the Redis L1's hash, as the row the cache would give
    /// (the same columns and types; decimals as Binance wrote them, at the columns' scale).
    /// `None`: not such a read, or L1 does not hold it (a miss counted): the next tier
    /// answers.
    async fn latest_from_l1(&self, kind: Kind, f: &Filter, limit: usize) -> Option<RecordBatch> {
        if !matches!(kind, Kind::BookTicker | Kind::Ticker | Kind::MarkPrice)
            || limit != 1
            || f.from != i64::MIN
            || f.to != i64::MAX
        {
            return None;
        }
        let l1 = self.l1.clone()?;
        let (Some(m), Some(sym)) = (f.market, f.symbol.clone()) else {
            return None;
        };
        let reader = l1.clone();
        let got =
            tokio::task::spawn_blocking(move || reader.latest(kind.as_str(), m.as_str(), &sym))
                .await;
        let row = match got {
            Ok(Ok(h)) if !h.is_empty() => latest_row(kind, &h),
            Ok(Ok(_)) => Err("not held".to_string()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        };
        match row {
            Ok(b) => {
                l1.counters.reads_hit.fetch_add(1, Ordering::Relaxed);
                Some(b)
            }
            Err(e) => {
                tracing::debug!("query: L1 {} {m:?}: {e}", kind.as_str());
                l1.counters.reads_miss.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The order book from the Redis L1 (the market's, or spot's then USD-M's when none is
    /// named). `None`: L1 does not hold it or cannot be read (a miss counted).
    async fn book_from_l1(
        &self,
        market: Option<Market>,
        symbol: &str,
        depth: usize,
    ) -> Option<Reply> {
        let l1 = self.l1.clone()?;
        let markets: Vec<Market> = market.map_or(vec![Market::Spot, Market::Usdm], |m| vec![m]);
        let (reader, sym) = (l1.clone(), symbol.to_string());
        let got = tokio::task::spawn_blocking(move || {
            for m in markets {
                if let Some(b) = reader.book(m.as_str(), &sym)? {
                    return Ok(Some((m, b)));
                }
            }
            Ok::<_, String>(None)
        })
        .await;
        let Ok(Ok(Some((m, b)))) = got else {
            if let Ok(Err(e)) = &got {
                tracing::debug!("query: L1 book {symbol}: {e}");
            }
            l1.counters.reads_miss.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        l1.counters.reads_hit.fetch_add(1, Ordering::Relaxed);
        let (mut bids, mut asks) = (String::new(), String::new());
        level_pairs(&mut bids, b.bids.iter().take(depth).copied());
        level_pairs(&mut asks, b.asks.iter().take(depth).copied());
        let body = format!(
            "{{\"market\":\"{}\",\"symbol\":{},\"last_update_id\":{},\"recv_time\":{},\"bids\":{bids},\"asks\":{asks}}}\n",
            m.as_str(),
            json_str(symbol),
            b.update_id,
            b.time,
        );
        Some(Reply {
            status: "200 OK",
            content_type: "application/json",
            headers: vec![
                "X-Tickwire-Book-Source: redis".into(),
                "X-Tickwire-Tiers: redis".into(),
            ],
            body: body.into_bytes(),
        })
    }

    async fn book(&self, p: &Params) -> Reply {
        let Some(symbol) = p.get("symbol").map(str::to_ascii_uppercase) else {
            return Reply::bad("symbol is required");
        };
        let f = match filter(p, &self.symbols, false) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let depth = match p.get("depth").map(str::parse::<usize>) {
            None => 20,
            Some(Ok(n)) if n > 0 => n,
            Some(_) => return Reply::bad("depth must be a positive integer"),
        };
        let mut live = None;
        if let Some(l) = &self.live {
            // A book not asked for lately is not being published: wait for its first view
            // (the sources publish every 100 ms).
            let fresh = l.want(f.market, &symbol);
            live = l.get(f.market, &symbol);
            let mut tries = 0;
            while live.is_none() && fresh && tries < 15 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                live = l.get(f.market, &symbol);
                tries += 1;
            }
        }
        if let Some((m, v)) = live {
            self.counters().hits.fetch_add(1, Ordering::Relaxed);
            let side = |ls: &[tickwire_codecs::record::Level]| {
                let mut o = String::new();
                level_pairs(
                    &mut o,
                    ls.iter()
                        .take(depth)
                        .map(|l| (i128::from(l.price), l.qty.get())),
                );
                o
            };
            let body = format!(
                "{{\"market\":\"{}\",\"symbol\":{},\"last_update_id\":{},\"recv_time\":{},\"bids\":{},\"asks\":{}}}\n",
                m.as_str(),
                json_str(&symbol),
                v.last_update_id,
                v.at_ns,
                side(&v.bids),
                side(&v.asks)
            );
            return Reply {
                status: "200 OK",
                content_type: "application/json",
                headers: vec![
                    "X-Tickwire-Book-Source: live".into(),
                    "X-Tickwire-Tiers: live".into(),
                ],
                body: body.into_bytes(),
            };
        }
        // Not held live by this process (a JetStream writer, partial depth streams only): the
        // Redis L1's book, then the newest `depth_snapshot` in the cache.
        if let Some(r) = self.book_from_l1(f.market, &symbol, depth).await {
            return r;
        }
        let scan = self.cache.scan_newest(
            Kind::DepthSnapshot,
            f.market,
            Some(&symbol),
            i64::MIN,
            i64::MAX,
            1,
        );
        let scan = match scan {
            Ok(s) => s,
            Err(e) => return self.failed("500 Internal Server Error", e),
        };
        let b = match newest_first(Kind::DepthSnapshot, &scan.batches, 1) {
            Ok(b) if b.num_rows() == 1 => b,
            Ok(_) => {
                self.counters().misses.fetch_add(1, Ordering::Relaxed);
                return Reply::not_found(format!("no book for {symbol} yet"));
            }
            Err(e) => return self.failed("500 Internal Server Error", e),
        };
        self.counters().hits.fetch_add(1, Ordering::Relaxed);
        let r = 0;
        let mut o = String::from("{");
        for name in ["market", "symbol"] {
            if let Some(c) = b.column_by_name(name) {
                let _ = write!(o, "\"{name}\":{},", json_str(string_at(c, r)));
            }
        }
        for name in ["last_update_id", "recv_time", "event_time"] {
            if let Some(c) = b.column_by_name(name) {
                let _ = write!(o, "\"{name}\":");
                value(&mut o, c, r);
                o.push(',');
            }
        }
        for (i, name) in ["bids", "asks"].iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "\"{name}\":");
            match b.column_by_name(name) {
                Some(c) => levels(&mut o, c, r, depth),
                None => o.push_str("[]"),
            }
        }
        o.push_str("}\n");
        Reply {
            status: "200 OK",
            content_type: "application/json",
            headers: vec![
                "X-Tickwire-Book-Source: depth_snapshot".into(),
                "X-Tickwire-Tiers: cache".into(),
            ],
            body: o.into_bytes(),
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Candle {
    open: ((i64, i64), i128),
    close: ((i64, i64), i128),
    high: i128,
    low: i128,
    volume: i128,
    quote: i128,
    trades: u64,
}

impl Candle {
    fn merge(&mut self, o: &Candle) {
        if o.trades == 0 {
            return;
        }
        if self.trades == 0 {
            *self = *o;
            return;
        }
        if o.open.0 < self.open.0 {
            self.open = o.open;
        }
        if o.close.0 >= self.close.0 {
            self.close = o.close;
        }
        self.high = self.high.max(o.high);
        self.low = self.low.min(o.low);
        self.volume += o.volume;
        self.quote += o.quote;
        self.trades += o.trades;
    }

    fn add(&mut self, at: (i64, i64), price: i128, qty: i128) {
        if self.trades == 0 {
            self.open = (at, price);
            self.close = (at, price);
            self.high = price;
            self.low = price;
        } else {
            if at < self.open.0 {
                self.open = (at, price);
            }
            if at >= self.close.0 {
                self.close = (at, price);
            }
            self.high = self.high.max(price);
            self.low = self.low.min(price);
        }
        self.volume += qty;
        self.quote += price * qty;
        self.trades += 1;
    }
}

/// `raw × 10^-scale` as exact decimal text with `scale` places.
pub fn scaled(raw: i128, scale: u32) -> String {
    let p = 10u128.pow(scale);
    let a = raw.unsigned_abs();
    let sign = if raw < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{a}");
    }
    format!("{sign}{}.{:0w$}", a / p, a % p, w = scale as usize)
}

/// Row `i` of a text column (plain or dictionary); `""` for null or another type.
fn string_at(a: &ArrayRef, i: usize) -> &str {
    if a.is_null(i) {
        return "";
    }
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i),
        DataType::Dictionary(k, _) => match **k {
            DataType::Int8 => {
                let d = a.as_dictionary::<Int8Type>();
                d.values()
                    .as_string_opt::<i32>()
                    .map_or("", |v| v.value(d.keys().value(i) as usize))
            }
            DataType::Int32 => {
                let d = a.as_dictionary::<Int32Type>();
                d.values()
                    .as_string_opt::<i32>()
                    .map_or("", |v| v.value(d.keys().value(i) as usize))
            }
            _ => "",
        },
        _ => "",
    }
}

/// Appends the JSON value of row `r` of `a`.
fn value(o: &mut String, a: &ArrayRef, r: usize) {
    if a.is_null(r) {
        o.push_str("null");
        return;
    }
    match a.data_type() {
        DataType::Int64 => {
            let _ = write!(o, "{}", a.as_primitive::<Int64Type>().value(r));
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let _ = write!(
                o,
                "{}",
                a.as_primitive::<TimestampMicrosecondType>().value(r)
            );
        }
        DataType::Timestamp(_, _) => {
            let _ = write!(
                o,
                "{}",
                a.as_primitive::<TimestampNanosecondType>().value(r)
            );
        }
        DataType::Boolean => o.push_str(if a.as_boolean().value(r) {
            "true"
        } else {
            "false"
        }),
        DataType::Decimal128(_, s) => {
            let _ = write!(
                o,
                "\"{}\"",
                scaled(a.as_primitive::<Decimal128Type>().value(r), *s as u32)
            );
        }
        DataType::List(_) => levels(o, a, r, usize::MAX),
        _ => o.push_str(&json_str(string_at(a, r))),
    }
}

/// Appends `[["p","q"],...]` of (price, quantity) raw values at scale 8.
fn level_pairs(o: &mut String, pairs: impl Iterator<Item = (i128, i128)>) {
    o.push('[');
    for (k, (p, q)) in pairs.enumerate() {
        if k > 0 {
            o.push(',');
        }
        let _ = write!(o, "[\"{}\",\"{}\"]", scaled(p, 8), scaled(q, 8));
    }
    o.push(']');
}

/// Appends the levels of row `r` of a levels column, at most `n`.
fn levels(o: &mut String, a: &ArrayRef, r: usize, n: usize) {
    let list = a.as_list::<i32>();
    let offs = list.value_offsets();
    let st = list.values().as_struct();
    let (p, q) = (
        st.column(0).as_primitive::<Decimal128Type>(),
        st.column(1).as_primitive::<Decimal128Type>(),
    );
    let (lo, hi) = (offs[r] as usize, offs[r + 1] as usize);
    level_pairs(o, (lo..hi).take(n).map(|i| (p.value(i), q.value(i))));
}

/// JSON lines: `{"kind":..., <column>: <value>, ...}` per row.
pub fn json_lines(kind: Kind, b: &RecordBatch) -> Vec<u8> {
    let schema = b.schema();
    let mut o = String::with_capacity(b.num_rows() * 200);
    for r in 0..b.num_rows() {
        let _ = write!(o, "{{\"kind\":\"{}\"", kind.as_str());
        for (f, c) in schema.fields().iter().zip(b.columns()) {
            let _ = write!(o, ",\"{}\":", f.name());
            value(&mut o, c, r);
        }
        o.push_str("}\n");
    }
    o.into_bytes()
}

/// One row of `kind`'s schema from the decode JSON fields an L1 hash holds (`"null"` or a
/// missing field: null, where the column allows it).
fn latest_row(
    kind: Kind,
    h: &std::collections::HashMap<String, String>,
) -> Result<RecordBatch, String> {
    use arrow_array::{
        BooleanArray, Decimal128Array, DictionaryArray, Int64Array, StringArray,
        TimestampMicrosecondArray, TimestampNanosecondArray,
    };
    let sch = schema(kind);
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(sch.fields().len());
    for fd in sch.fields() {
        let name = fd.name();
        let v = h
            .get(name.as_str())
            .map(String::as_str)
            .filter(|v| *v != "null");
        if v.is_none() && !fd.is_nullable() {
            return Err(format!("no {name}"));
        }
        let bad = || format!("an unreadable {name}: {v:?}");
        let int = || v.map(str::parse::<i64>).transpose().map_err(|_| bad());
        let col: ArrayRef = match fd.data_type() {
            DataType::Dictionary(k, _) if **k == DataType::Int8 => {
                Arc::new(DictionaryArray::<Int8Type>::from_iter([v]))
            }
            DataType::Dictionary(..) => Arc::new(DictionaryArray::<Int32Type>::from_iter([v])),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
                TimestampMicrosecondArray::from(vec![int()?]).with_timezone_opt(tz.clone()),
            ),
            DataType::Timestamp(_, tz) => {
                Arc::new(TimestampNanosecondArray::from(vec![int()?]).with_timezone_opt(tz.clone()))
            }
            DataType::Int64 => Arc::new(Int64Array::from(vec![int()?])),
            DataType::Decimal128(p, sc) => {
                let raw = match v {
                    None => None,
                    Some(t) => Some(
                        tickwire_codecs::decimal::parse_i128(t.as_bytes())
                            .map_err(|_| bad())?
                            .raw,
                    ),
                };
                debug_assert_eq!(*sc, 8, "L1 decimals are read at 1e-8");
                Arc::new(
                    Decimal128Array::from(vec![raw])
                        .with_precision_and_scale(*p, *sc)
                        .map_err(|e| e.to_string())?,
                )
            }
            DataType::Boolean => {
                Arc::new(BooleanArray::from(vec![v.map(|t| t == "true" || t == "1")]))
            }
            DataType::Utf8 => Arc::new(StringArray::from(vec![v])),
            t => return Err(format!("{name}: a column of type {t} is not kept in L1")),
        };
        cols.push(col);
    }
    RecordBatch::try_new(sch, cols).map_err(|e| e.to_string())
}

/// CSV with a header row; levels as their JSON text, quoted.
pub fn csv(b: &RecordBatch) -> Vec<u8> {
    let schema = b.schema();
    let mut o = String::new();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    o.push_str(&names.join(","));
    o.push('\n');
    let mut cell = String::new();
    for r in 0..b.num_rows() {
        for (i, c) in b.columns().iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            if c.is_null(r) {
                continue;
            }
            cell.clear();
            value(&mut cell, c, r);
            let plain = cell.trim_matches('"');
            if plain.contains([',', '"', '\n']) {
                let _ = write!(o, "\"{}\"", cell.replace('"', "\"\""));
            } else {
                o.push_str(plain);
            }
        }
        o.push('\n');
    }
    o.into_bytes()
}

/// An Arrow IPC stream of `b`.
pub fn arrow_ipc(b: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &b.schema())
        .map_err(|e| e.to_string())?;
    w.write(b).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_ms_or_rfc3339() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00+00:00"), Ok(0));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.000000001+01:00"),
            Ok(1_700_000_000_000_000_001)
        );
        for bad in [
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_strings_decode_as_forms() {
        let p = Params::parse("symbol=BTC%55SDT&from=2023-11-14T22%3A13%3A20Z&x=a+b&empty=&y=%20");
        assert_eq!(p.get("symbol"), Some("BTCUSDT"));
        assert_eq!(p.get("from"), Some("2023-11-14T22:13:20Z"));
        assert_eq!(p.get("x"), Some("a b"));
        assert_eq!(p.get("y"), Some(" "), "an escape at the very end");
        assert_eq!(p.get("empty"), None);
        assert_eq!(Params::parse("a=%zz").get("a"), Some("%zz"));
    }

    #[test]
    fn decimals_print_exactly() {
        assert_eq!(scaled(150_000_000, 8), "1.50000000");
        assert_eq!(scaled(-1, 8), "-0.00000001");
        assert_eq!(scaled(12_345, 16), "0.0000000000012345");
    }

    #[test]
    fn query_strings_unescape() {
        let p = Params::parse("symbol=btc%55sdt&from=&x=a+b");
        assert_eq!(p.get("symbol"), Some("btcUsdt"));
        assert_eq!(p.get("from"), None);
        assert_eq!(p.get("x"), Some("a b"));
    }

    #[test]
    fn candles_open_and_close_follow_trade_time() {
        let mut c = Candle::default();
        c.add((20, 2), 300, 1);
        c.add((10, 1), 100, 2);
        c.add((30, 3), 200, 3);
        assert_eq!(
            (c.open.1, c.close.1, c.high, c.low, c.volume, c.trades),
            (100, 200, 300, 100, 6, 3)
        );
        assert_eq!(c.quote, 300 + 200 + 600);
        let (mut a, mut b) = (Candle::default(), Candle::default());
        a.add((20, 2), 300, 1);
        b.add((10, 1), 100, 2);
        b.add((30, 3), 200, 3);
        a.merge(&b);
        assert_eq!(
            (a.open.1, a.close.1, a.high, a.low, a.volume, a.trades),
            (100, 200, 300, 100, 6, 3)
        );
    }
}
