//! A synthetic market per symbol, written as Binance frames.
//!
//! Prices walk randomly on the symbol's tick size; trades, aggregate trades, the best bid/ask,
//! depth diffs and partial depth all come from one order book the generator keeps, so diffs
//! and snapshots agree; klines and tickers are derived from the generator's own trades. Ids
//! (trade, aggregate trade, book update) are consecutive per symbol, as on Binance.

use std::collections::BTreeMap;
use std::fmt::Write;
use tickwire_codecs::decimal::write_decimal;

/// Appends `raw` (1e-8 units) as decimal text with `dp` places, as Binance writes it.
fn push_decimal(out: &mut String, raw: i128, dp: u8) {
    let mut v = Vec::with_capacity(48);
    write_decimal(&mut v, raw, dp);
    out.push_str(std::str::from_utf8(&v).unwrap_or("0"));
}
use tickwire_codecs::record::{Kind, Market};

/// xorshift64*: small, fast, deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Close to a standard normal (Irwin-Hall: twelve uniforms in `[0, 1)`, less 6).
    pub fn normal(&mut self) -> f64 {
        (0..12)
            .map(|_| (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
            .sum::<f64>()
            - 6.0
    }
}

/// Standard deviation of a synthetic mid over one second, as a fraction of its price: 0.01%,
/// about 56% a year, BTC's order of magnitude. The mid is a random walk in event time, kept
/// on the tick size (a coarse tick, as PEPEUSDT's ~0.1%, just moves less often).
pub const VOL_PER_S: f64 = 1e-4;

/// A symbol's static description.
#[derive(Debug, Clone)]
pub struct SymbolSpec {
    /// Upper-case symbol, e.g. `BTCUSDT`.
    pub name: String,
    /// Starting price, raw 1e-8 units.
    pub price: i64,
    /// Tick size, raw.
    pub tick: i64,
    /// Decimal places prices are written with.
    pub price_dp: u8,
    /// Decimal places quantities are written with.
    pub qty_dp: u8,
    /// Typical trade quantity, raw.
    pub lot: i64,
}

/// The default symbols of the demo: a spread of price scales, PEPE among them.
pub fn default_symbols() -> Vec<SymbolSpec> {
    vec![
        SymbolSpec {
            name: "BTCUSDT".into(),
            price: 3_700_012_000_000,
            tick: 1_000_000,
            price_dp: 2,
            qty_dp: 5,
            lot: 150_000,
        },
        SymbolSpec {
            name: "ETHUSDT".into(),
            price: 205_011_000_000,
            tick: 1_000_000,
            price_dp: 2,
            qty_dp: 4,
            lot: 5_000_000,
        },
        SymbolSpec {
            name: "SOLUSDT".into(),
            price: 14_512_000_000,
            tick: 1_000_000,
            price_dp: 2,
            qty_dp: 3,
            lot: 200_000_000,
        },
        SymbolSpec {
            name: "PEPEUSDT".into(),
            price: 1_091,
            tick: 1,
            price_dp: 8,
            qty_dp: 0,
            lot: 50_000_000_000_000_000,
        },
    ]
}

/// `n` symbols: the four of [`default_symbols`] first, then synthetic ones with real-looking
/// names, prices from 0.0001 to 50,000 and tick and step sizes that go with them (a tick about
/// 0.01% of the price, as most of Binance's). Every seventh synthetic symbol is quoted in
/// USDC, the rest in USDT. The same `n` always gives the same symbols.
pub fn synthetic_symbols(n: usize) -> Vec<SymbolSpec> {
    let mut out = default_symbols();
    out.truncate(n);
    let mut rng = Rng::new(0x005E_ED0F_5A1B);
    let mut i = 0u32;
    while out.len() < n {
        // Base names AAA, AAB, ... (letters only, never one of the four real ones).
        let base: String = (0..3)
            .rev()
            .map(|p| char::from(b'A' + ((i / 26u32.pow(p)) % 26) as u8))
            .collect();
        let quote = if i % 7 == 6 { "USDC" } else { "USDT" };
        i += 1;
        // Price: 10^e with e uniform in [-4, 4.7): raw 1e-8 units.
        let e = -4.0 + (rng.below(8_700) as f64) / 1_000.0;
        let price = (10f64.powf(e) * 1e8) as i64;
        let price_exp = e.floor() as i32; // the price's order of magnitude
        let tick_exp = (price_exp - 4).max(-8); // a tick ~1e-4 of the price
        let tick = 10i64.pow((tick_exp + 8) as u32);
        let price_dp = (-tick_exp).max(0) as u8;
        let qty_exp = (-price_exp).clamp(-8, 3); // cheap coins trade in larger lots
        let qty_dp = (-qty_exp + 2).clamp(0, 8) as u8;
        let lot = 10i64.pow((8 - qty_dp as i32 + 2).clamp(0, 18) as u32);
        out.push(SymbolSpec {
            name: format!("{base}{quote}"),
            price: (price / tick).max(LEVELS + 3) * tick,
            tick,
            price_dp,
            qty_dp,
            lot,
        });
    }
    out
}

/// Frames of one stream kind a connection can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `@trade`.
    Trade,
    /// `@aggTrade`.
    AggTrade,
    /// `@bookTicker`.
    BookTicker,
    /// `@depth@100ms`.
    Depth,
    /// `@depth5@100ms` (spot) / `@depth20@100ms` (USD-M).
    PartialDepth,
    /// `@kline_1m`.
    Kline,
    /// `@markPrice@1s` (USD-M).
    MarkPrice,
    /// `@forceOrder` (USD-M).
    ForceOrder,
    /// `@ticker`.
    Ticker,
}

impl StreamKind {
    /// Every stream kind of `market`, with its share of the message rate (per mille).
    pub fn mix(market: Market) -> &'static [(StreamKind, u32)] {
        match market {
            Market::Spot => &[
                (StreamKind::Trade, 350),
                (StreamKind::AggTrade, 150),
                (StreamKind::BookTicker, 250),
                (StreamKind::Depth, 170),
                (StreamKind::PartialDepth, 30),
                (StreamKind::Kline, 25),
                (StreamKind::Ticker, 25),
            ],
            Market::Usdm => &[
                (StreamKind::Trade, 250),
                (StreamKind::AggTrade, 200),
                (StreamKind::BookTicker, 250),
                (StreamKind::Depth, 170),
                (StreamKind::PartialDepth, 30),
                (StreamKind::Kline, 30),
                (StreamKind::MarkPrice, 30),
                (StreamKind::ForceOrder, 10),
                (StreamKind::Ticker, 30),
            ],
        }
    }

    /// The record kind its frames decode to.
    pub fn record_kind(self) -> Kind {
        match self {
            StreamKind::Trade => Kind::Trade,
            StreamKind::AggTrade => Kind::AggTrade,
            StreamKind::BookTicker => Kind::BookTicker,
            StreamKind::Depth => Kind::DepthUpdate,
            StreamKind::PartialDepth => Kind::DepthSnapshot,
            StreamKind::Kline => Kind::Kline,
            StreamKind::MarkPrice => Kind::MarkPrice,
            StreamKind::ForceOrder => Kind::Liquidation,
            StreamKind::Ticker => Kind::Ticker,
        }
    }

    /// The stream name suffix (after `<symbol>@`).
    pub fn suffix(self, market: Market) -> &'static str {
        match (self, market) {
            (StreamKind::Trade, _) => "trade",
            (StreamKind::AggTrade, _) => "aggTrade",
            (StreamKind::BookTicker, _) => "bookTicker",
            (StreamKind::Depth, _) => "depth@100ms",
            (StreamKind::PartialDepth, Market::Spot) => "depth5@100ms",
            (StreamKind::PartialDepth, Market::Usdm) => "depth20@100ms",
            (StreamKind::Kline, _) => "kline_1m",
            (StreamKind::MarkPrice, _) => "markPrice@1s",
            (StreamKind::ForceOrder, _) => "forceOrder",
            (StreamKind::Ticker, _) => "ticker",
        }
    }

    /// Parses a stream name suffix.
    pub fn from_suffix(s: &str) -> Option<StreamKind> {
        Some(match s {
            "trade" => StreamKind::Trade,
            "aggTrade" => StreamKind::AggTrade,
            "bookTicker" => StreamKind::BookTicker,
            "depth" | "depth@100ms" => StreamKind::Depth,
            "depth5@100ms" | "depth10@100ms" | "depth20@100ms" | "depth5" | "depth10"
            | "depth20" => StreamKind::PartialDepth,
            "kline_1m" => StreamKind::Kline,
            "markPrice" | "markPrice@1s" => StreamKind::MarkPrice,
            "forceOrder" => StreamKind::ForceOrder,
            "ticker" => StreamKind::Ticker,
            _ => return None,
        })
    }
}

/// One symbol's evolving market.
#[derive(Debug, Clone)]
pub struct SymbolMarket {
    spec: SymbolSpec,
    lower: String,
    market: Market,
    mid: i64,
    trade_id: i64,
    agg_id: i64,
    update_id: i64,
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    // Rolling candle / 24 h state from our own trades.
    k_open: i64,
    k_high: i64,
    k_low: i64,
    k_vol: i128,
    k_qvol: i128,
    k_first: i64,
    k_count: i64,
    day_open: i64,
    day_vol: i128,
    day_qvol: i128,
    last_qty: i64,
    /// Event time of the last price step (0: none yet).
    last_ms: i64,
    /// The walk's position between ticks, raw units, |drift| < tick.
    drift: f64,
}

const LEVELS: i64 = 40;
/// A side of a book never has fewer levels than this after a diff.
const MIN_SIDE: usize = 12;

/// A book as the simulator holds it: last update id, bids and asks best first, as raw
/// (price, quantity) in 1e-8 units.
pub type BookView = (i64, Vec<(i64, i64)>, Vec<(i64, i64)>);

impl SymbolMarket {
    /// A market for `spec`.
    pub fn new(spec: SymbolSpec, market: Market) -> Self {
        let mid = spec.price;
        let mut m = SymbolMarket {
            lower: spec.name.to_lowercase(),
            market,
            mid,
            trade_id: 1_000_000,
            agg_id: 500_000,
            update_id: 10_000_000,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            k_open: mid,
            k_high: mid,
            k_low: mid,
            k_vol: 0,
            k_qvol: 0,
            k_first: 1_000_001,
            k_count: 0,
            day_open: mid,
            day_vol: 0,
            day_qvol: 0,
            last_qty: spec.lot,
            last_ms: 0,
            drift: 0.0,
            spec,
        };
        for i in 1..=LEVELS {
            m.bids
                .insert(mid - i * m.spec.tick, m.spec.lot * (1 + i % 7));
            m.asks
                .insert(mid + i * m.spec.tick, m.spec.lot * (1 + i % 5));
        }
        m
    }

    /// The REST depth snapshot (`/api/v3/depth`, `/fapi/v1/depth`) of the book as it stands:
    /// the `limit` best levels a side and the last update id sent (or skipped).
    pub fn depth_json(&self, limit: usize, now_ms: i64) -> String {
        let bids: Vec<(i64, i64)> = self
            .bids
            .iter()
            .rev()
            .take(limit)
            .map(|(p, q)| (*p, *q))
            .collect();
        let asks: Vec<(i64, i64)> = self
            .asks
            .iter()
            .take(limit)
            .map(|(p, q)| (*p, *q))
            .collect();
        let mut out = format!("{{\"lastUpdateId\":{}", self.update_id);
        if self.market == Market::Usdm {
            let _ = write!(out, ",\"E\":{now_ms},\"T\":{}", now_ms - 1);
        }
        out.push_str(",\"bids\":");
        self.levels(&mut out, &bids);
        out.push_str(",\"asks\":");
        self.levels(&mut out, &asks);
        out.push('}');
        out
    }

    /// The book: last update id, bids best first, asks best first (raw 1e-8 units).
    pub fn book(&self) -> BookView {
        (
            self.update_id,
            self.bids.iter().rev().map(|(p, q)| (*p, *q)).collect(),
            self.asks.iter().map(|(p, q)| (*p, *q)).collect(),
        )
    }

    /// The symbol, upper case.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The stream name of `kind` for this symbol.
    pub fn stream(&self, kind: StreamKind) -> String {
        format!("{}@{}", self.lower, kind.suffix(self.market))
    }

    /// Lower-case symbol.
    pub fn lower(&self) -> &str {
        &self.lower
    }

    fn px(&self, out: &mut String, raw: i64) {
        push_decimal(out, i128::from(raw), self.spec.price_dp);
    }

    fn qty(&self, out: &mut String, raw: i128) {
        push_decimal(out, raw, self.spec.qty_dp);
    }

    fn round_qty(&self, raw: i64) -> i64 {
        let unit = 10i64.pow(8 - u32::from(self.spec.qty_dp.min(8)));
        (raw / unit).max(1) * unit
    }

    /// Moves the mid by a random walk over the event time since the last step:
    /// N(0, (mid * VOL_PER_S)^2 * dt_s), accumulated below the tick and taken in whole ticks.
    fn step_price(&mut self, rng: &mut Rng, now_ms: i64) {
        let dt = now_ms - self.last_ms;
        if self.last_ms == 0 || dt <= 0 {
            self.last_ms = self.last_ms.max(now_ms);
            return;
        }
        self.last_ms = now_ms;
        let sigma = self.mid as f64 * VOL_PER_S * (dt as f64 / 1000.0).sqrt();
        self.drift += rng.normal() * sigma;
        let tick = self.spec.tick as f64;
        let ticks = (self.drift / tick).trunc();
        self.drift -= ticks * tick;
        self.mid = (self.mid + ticks as i64 * self.spec.tick).max(self.spec.tick * (LEVELS + 2));
    }

    fn best_bid(&self) -> (i64, i64) {
        self.bids
            .iter()
            .next_back()
            .map(|(p, q)| (*p, *q))
            .unwrap_or((self.mid - self.spec.tick, self.spec.lot))
    }

    fn best_ask(&self) -> (i64, i64) {
        self.asks
            .iter()
            .next()
            .map(|(p, q)| (*p, *q))
            .unwrap_or((self.mid + self.spec.tick, self.spec.lot))
    }

    /// Writes the next frame of `kind` (the data object, not wrapped) into `out`.
    /// `now_ms` is the event time. Returns the number of ids it consumed (for gap faults).
    pub fn frame(&mut self, kind: StreamKind, now_ms: i64, rng: &mut Rng, out: &mut String) {
        out.clear();
        let s = self.spec.name.clone();
        let e = now_ms;
        match kind {
            StreamKind::Trade => {
                self.step_price(rng, now_ms);
                self.trade_id += 1;
                let q =
                    self.round_qty(self.spec.lot / 4 + rng.below(self.spec.lot as u64 * 2) as i64);
                self.on_trade(self.mid, q);
                let m = rng.below(2) == 0;
                match self.market {
                    Market::Spot => {
                        let _ = write!(
                            out,
                            r#"{{"e":"trade","E":{e},"s":"{s}","t":{},"p":""#,
                            self.trade_id
                        );
                        self.px(out, self.mid);
                        out.push_str(r#"","q":""#);
                        self.qty(out, i128::from(q));
                        let _ = write!(out, r#"","T":{},"m":{m},"M":true}}"#, e - 1);
                    }
                    Market::Usdm => {
                        let _ = write!(
                            out,
                            r#"{{"e":"trade","E":{e},"T":{},"s":"{s}","t":{},"p":""#,
                            e - 1,
                            self.trade_id
                        );
                        self.px(out, self.mid);
                        out.push_str(r#"","q":""#);
                        self.qty(out, i128::from(q));
                        let _ = write!(out, r#"","X":"MARKET","m":{m}}}"#);
                    }
                }
            }
            StreamKind::AggTrade => {
                self.agg_id += 1;
                let q = self.round_qty(self.spec.lot + rng.below(self.spec.lot as u64 * 3) as i64);
                let f = self.trade_id;
                let _ = write!(
                    out,
                    r#"{{"e":"aggTrade","E":{e},"s":"{s}","a":{},"p":""#,
                    self.agg_id
                );
                self.px(out, self.mid);
                out.push_str(r#"","q":""#);
                self.qty(out, i128::from(q));
                let _ = write!(
                    out,
                    r#"","f":{f},"l":{f},"T":{},"m":{}"#,
                    e - 1,
                    rng.below(2) == 0
                );
                out.push_str(if self.market == Market::Spot {
                    r#","M":true}"#
                } else {
                    "}"
                });
            }
            StreamKind::BookTicker => {
                let (bp, bq) = self.best_bid();
                let (ap, aq) = self.best_ask();
                match self.market {
                    Market::Spot => {
                        let _ = write!(out, r#"{{"u":{},"s":"{s}","b":""#, self.update_id);
                    }
                    Market::Usdm => {
                        let _ = write!(
                            out,
                            r#"{{"e":"bookTicker","u":{},"s":"{s}","b":""#,
                            self.update_id
                        );
                    }
                }
                self.px(out, bp);
                out.push_str(r#"","B":""#);
                self.qty(out, i128::from(bq));
                out.push_str(r#"","a":""#);
                self.px(out, ap);
                out.push_str(r#"","A":""#);
                self.qty(out, i128::from(aq));
                out.push('"');
                if self.market == Market::Usdm {
                    let _ = write!(out, r#","T":{},"E":{e}"#, e - 1);
                }
                out.push('}');
            }
            StreamKind::Depth => {
                self.step_price(rng, now_ms);
                let prev = self.update_id;
                let n = 1 + rng.below(4) as i64;
                let first = self.update_id + 1;
                self.update_id += n;
                let mut bids = Vec::new();
                let mut asks = Vec::new();
                for _ in 0..n {
                    let off = 1 + rng.below(LEVELS as u64) as i64;
                    let remove = rng.below(6) == 0;
                    let q = if remove {
                        0
                    } else {
                        self.round_qty(self.spec.lot * (1 + rng.below(9) as i64))
                    };
                    if rng.below(2) == 0 {
                        let p = self.mid - off * self.spec.tick;
                        bids.push((p, q));
                        if q == 0 {
                            self.bids.remove(&p);
                        } else {
                            self.bids.insert(p, q);
                        }
                    } else {
                        let p = self.mid + off * self.spec.tick;
                        asks.push((p, q));
                        if q == 0 {
                            self.asks.remove(&p);
                        } else {
                            self.asks.insert(p, q);
                        }
                    }
                }
                // Keep the book from crossing: levels through the new mid are removed, and sent.
                let crossed_b: Vec<i64> = self.bids.range(self.mid..).map(|(p, _)| *p).collect();
                for p in crossed_b {
                    self.bids.remove(&p);
                    bids.push((p, 0));
                }
                let crossed_a: Vec<i64> = self.asks.range(..=self.mid).map(|(p, _)| *p).collect();
                for p in crossed_a {
                    self.asks.remove(&p);
                    asks.push((p, 0));
                }
                // The walk can sweep a side faster than diffs refill it (0.01% a second is 370
                // ticks of BTCUSDT): levels next to the mid are added, in the same diff, until
                // each side has MIN_SIDE again.
                let (tick, lot) = (self.spec.tick, self.spec.lot);
                for i in 1..=LEVELS {
                    if self.bids.len() >= MIN_SIDE {
                        break;
                    }
                    let p = self.mid - i * tick;
                    if !self.bids.contains_key(&p) && !bids.iter().any(|(x, _)| *x == p) {
                        let q = self.round_qty(lot * (1 + i % 7));
                        self.bids.insert(p, q);
                        bids.push((p, q));
                    }
                }
                for i in 1..=LEVELS {
                    if self.asks.len() >= MIN_SIDE {
                        break;
                    }
                    let p = self.mid + i * tick;
                    if !self.asks.contains_key(&p) && !asks.iter().any(|(x, _)| *x == p) {
                        let q = self.round_qty(lot * (1 + i % 5));
                        self.asks.insert(p, q);
                        asks.push((p, q));
                    }
                }
                let _ = write!(out, r#"{{"e":"depthUpdate","E":{e},"#);
                if self.market == Market::Usdm {
                    let _ = write!(out, r#""T":{},"#, e - 1);
                }
                let _ = write!(out, r#""s":"{s}","U":{first},"u":{}"#, self.update_id);
                if self.market == Market::Usdm {
                    let _ = write!(out, r#","pu":{prev}"#);
                }
                out.push_str(r#","b":"#);
                self.levels(out, &bids);
                out.push_str(r#","a":"#);
                self.levels(out, &asks);
                out.push('}');
            }
            StreamKind::PartialDepth => {
                let n = if self.market == Market::Spot { 5 } else { 20 };
                let bids: Vec<(i64, i64)> = self
                    .bids
                    .iter()
                    .rev()
                    .take(n)
                    .map(|(p, q)| (*p, *q))
                    .collect();
                let asks: Vec<(i64, i64)> =
                    self.asks.iter().take(n).map(|(p, q)| (*p, *q)).collect();
                match self.market {
                    Market::Spot => {
                        let _ = write!(out, r#"{{"lastUpdateId":{},"bids":"#, self.update_id);
                        self.levels(out, &bids);
                        out.push_str(r#","asks":"#);
                        self.levels(out, &asks);
                        out.push('}');
                    }
                    Market::Usdm => {
                        let _ = write!(
                            out,
                            r#"{{"e":"depthUpdate","E":{e},"T":{},"s":"{s}","U":{},"u":{},"pu":{},"b":"#,
                            e - 1,
                            self.update_id,
                            self.update_id,
                            self.update_id - 1
                        );
                        self.levels(out, &bids);
                        out.push_str(r#","a":"#);
                        self.levels(out, &asks);
                        out.push('}');
                    }
                }
            }
            StreamKind::Kline => {
                let start = now_ms - now_ms % 60_000;
                let _ = write!(
                    out,
                    r#"{{"e":"kline","E":{e},"s":"{s}","k":{{"t":{start},"T":{},"s":"{s}","i":"1m","f":{},"L":{},"o":""#,
                    start + 59_999,
                    self.k_first,
                    self.trade_id
                );
                self.px(out, self.k_open);
                out.push_str(r#"","c":""#);
                self.px(out, self.mid);
                out.push_str(r#"","h":""#);
                self.px(out, self.k_high);
                out.push_str(r#"","l":""#);
                self.px(out, self.k_low);
                out.push_str(r#"","v":""#);
                self.qty(out, self.k_vol);
                let _ = write!(out, r#"","n":{},"x":false,"q":""#, self.k_count);
                push_decimal(out, self.k_qvol, 8);
                out.push_str(r#"","V":""#);
                self.qty(out, self.k_vol / 2);
                out.push_str(r#"","Q":""#);
                push_decimal(out, self.k_qvol / 2, 8);
                out.push_str(r#"","B":"0"}}"#);
            }
            StreamKind::MarkPrice => {
                let rate = rng.below(200) as i64 - 100;
                let _ = write!(out, r#"{{"e":"markPriceUpdate","E":{e},"s":"{s}","p":""#);
                self.px(out, self.mid);
                out.push_str(r#"","ap":""#);
                self.px(out, self.mid);
                out.push_str(r#"","P":""#);
                self.px(out, self.mid + self.spec.tick);
                out.push_str(r#"","i":""#);
                self.px(out, self.mid - self.spec.tick);
                out.push_str(r#"","r":""#);
                push_decimal(out, i128::from(rate * 1000), 8);
                let next = now_ms - now_ms % 28_800_000 + 28_800_000;
                let _ = write!(out, r#"","T":{next}}}"#);
            }
            StreamKind::ForceOrder => {
                let side = if rng.below(2) == 0 { "SELL" } else { "BUY" };
                let q = self.round_qty(self.spec.lot * (1 + rng.below(20) as i64));
                let _ = write!(
                    out,
                    r#"{{"e":"forceOrder","E":{e},"o":{{"s":"{s}","S":"{side}","o":"LIMIT","f":"IOC","q":""#
                );
                self.qty(out, i128::from(q));
                out.push_str(r#"","p":""#);
                self.px(out, self.mid);
                out.push_str(r#"","ap":""#);
                self.px(out, self.mid);
                out.push_str(r#"","X":"FILLED","l":""#);
                self.qty(out, i128::from(q));
                out.push_str(r#"","z":""#);
                self.qty(out, i128::from(q));
                let _ = write!(out, r#"","T":{}}}}}"#, e - 1);
            }
            StreamKind::Ticker => {
                let (bp, bq) = self.best_bid();
                let (ap, aq) = self.best_ask();
                let _ = write!(out, r#"{{"e":"24hrTicker","E":{e},"s":"{s}","p":""#);
                self.px(out, self.mid - self.day_open);
                out.push_str(r#"","P":""#);
                let pct = (i128::from(self.mid - self.day_open) * 100_000
                    / i128::from(self.day_open.max(1))) as i64;
                push_decimal(out, i128::from(pct) * 100_000, 3);
                out.push_str(r#"","w":""#);
                self.px(out, self.mid);
                if self.market == Market::Spot {
                    out.push_str(r#"","x":""#);
                    self.px(out, self.day_open);
                }
                out.push_str(r#"","c":""#);
                self.px(out, self.mid);
                out.push_str(r#"","Q":""#);
                self.qty(out, i128::from(self.last_qty));
                if self.market == Market::Spot {
                    out.push_str(r#"","b":""#);
                    self.px(out, bp);
                    out.push_str(r#"","B":""#);
                    self.qty(out, i128::from(bq));
                    out.push_str(r#"","a":""#);
                    self.px(out, ap);
                    out.push_str(r#"","A":""#);
                    self.qty(out, i128::from(aq));
                }
                out.push_str(r#"","o":""#);
                self.px(out, self.day_open);
                out.push_str(r#"","h":""#);
                self.px(out, self.k_high.max(self.mid));
                out.push_str(r#"","l":""#);
                self.px(out, self.k_low.min(self.mid));
                out.push_str(r#"","v":""#);
                self.qty(out, self.day_vol);
                out.push_str(r#"","q":""#);
                push_decimal(out, self.day_qvol, 8);
                let _ = write!(
                    out,
                    r#"","O":{},"C":{e},"F":1000001,"L":{},"n":{}}}"#,
                    e - 86_400_000,
                    self.trade_id,
                    self.trade_id - 1_000_000
                );
            }
        }
    }

    fn levels(&self, out: &mut String, ls: &[(i64, i64)]) {
        out.push('[');
        for (i, (p, q)) in ls.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("[\"");
            self.px(out, *p);
            out.push_str("\",\"");
            self.qty(out, i128::from(*q));
            out.push_str("\"]");
        }
        out.push(']');
    }

    fn on_trade(&mut self, p: i64, q: i64) {
        self.k_high = self.k_high.max(p);
        self.k_low = self.k_low.min(p);
        self.k_vol += i128::from(q);
        // quote volume = p * q at scale 1e-8 (exact: p*q/1e8 keeps 8 places)
        let qv = i128::from(p) * i128::from(q) / 100_000_000;
        self.k_qvol += qv;
        self.k_count += 1;
        self.day_vol += i128::from(q);
        self.day_qvol += qv;
        self.last_qty = q;
    }

    /// Skips `n` ids of the stream (a gap fault): the next frame jumps over them.
    pub fn skip_ids(&mut self, kind: StreamKind, n: i64) {
        match kind {
            StreamKind::Trade => self.trade_id += n,
            StreamKind::AggTrade => self.agg_id += n,
            StreamKind::Depth => self.update_id += n,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mid of every default symbol, after 20 s of event time at 1,000 trades a second.
    fn walk(spec: SymbolSpec, seed: u64) -> (i64, i64, i64) {
        let mut m = SymbolMarket::new(spec, Market::Spot);
        let mut rng = Rng::new(seed);
        let mut out = String::new();
        let (start, mut lo, mut hi) = (m.mid, m.mid, m.mid);
        for i in 0..20_000 {
            m.frame(StreamKind::Trade, 1_700_000_000_000 + i, &mut rng, &mut out);
            lo = lo.min(m.mid);
            hi = hi.max(m.mid);
        }
        (start, lo, hi)
    }

    #[test]
    fn a_fast_walk_never_thins_a_side_of_the_book() {
        // 20 s of depth diffs, 10 a second; BTCUSDT's walk is ~370 ticks a second, ten times
        // the window new levels are placed in.
        for spec in default_symbols() {
            let mut m = SymbolMarket::new(spec.clone(), Market::Spot);
            let mut rng = Rng::new(3);
            let mut out = String::new();
            for i in 0..200 {
                out.clear();
                m.frame(
                    StreamKind::Depth,
                    1_700_000_000_000 + i * 100,
                    &mut rng,
                    &mut out,
                );
                assert!(
                    m.bids.len() >= MIN_SIDE && m.asks.len() >= MIN_SIDE,
                    "{}: {} bids, {} asks after diff {i}",
                    spec.name,
                    m.bids.len(),
                    m.asks.len()
                );
            }
        }
    }

    #[test]
    fn synthetic_prices_move_as_much_per_second_whatever_their_tick() {
        // 20 s at 0.01% a second: sigma ~0.045%; 10 sigma bounds every path of every seed.
        let bound = 10.0 * VOL_PER_S * 20f64.sqrt();
        for spec in default_symbols() {
            let tick_share = spec.tick as f64 / spec.price as f64;
            let mut moved = 0;
            for seed in 1..=20 {
                let (start, lo, hi) = walk(spec.clone(), seed);
                let range = (hi - lo) as f64 / start as f64;
                assert!(
                    range <= bound + 2.0 * tick_share,
                    "{}: range {:.4}% in 20 s (bound {:.4}%)",
                    spec.name,
                    range * 100.0,
                    bound * 100.0
                );
                moved += usize::from(hi > lo);
            }
            // A fine tick moves in every path; a coarse one (a tick is 0.1% of the price) in
            // some.
            if tick_share < VOL_PER_S {
                assert_eq!(moved, 20, "{}", spec.name);
            }
        }
    }
}
