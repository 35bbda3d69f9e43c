//! Benchmark inputs and the baselines tickwire's decoder is measured against.
//!
//! The baselines decode the same frames into the same records the way most Rust feed handlers
//! do: `#[derive(Deserialize)]` structs that borrow their strings from the frame, read with
//! serde_json or sonic-rs, then the same exact fixed-point conversion and symbol interning as
//! tickwire. They are told the event kind in advance (tickwire finds it in the frame), which
//! favours them. A test checks they produce records equal to tickwire's, so the benchmark
//! compares equal work.

use serde::Deserialize;
use tickwire_codecs::decimal::{parse_i128, parse_i64, DpSet, Wide, DP_NULL};
use tickwire_codecs::record::*;
use tickwire_codecs::symbol::SymbolCache;

/// One benchmark frame.
#[derive(Debug, Clone)]
pub struct Case {
    /// Record kind it decodes to.
    pub kind: Kind,
    /// Market.
    pub market: Market,
    /// Stream name (for the combined form and partial depth).
    pub stream: String,
    /// The raw frame.
    pub raw: String,
    /// The same frame in the combined wrapper.
    pub combined: String,
}

const STREAMS_SPOT: [(&str, Kind); 7] = [
    ("btcusdt@trade", Kind::Trade),
    ("btcusdt@aggTrade", Kind::AggTrade),
    ("btcusdt@bookTicker", Kind::BookTicker),
    ("btcusdt@depth@100ms", Kind::DepthUpdate),
    ("btcusdt@depth20@100ms", Kind::DepthSnapshot),
    ("btcusdt@kline_1m", Kind::Kline),
    ("btcusdt@ticker", Kind::Ticker),
];

const STREAMS_USDM: [(&str, Kind); 9] = [
    ("btcusdt@trade", Kind::Trade),
    ("btcusdt@aggTrade", Kind::AggTrade),
    ("btcusdt@bookTicker", Kind::BookTicker),
    ("btcusdt@depth@100ms", Kind::DepthUpdate),
    ("btcusdt@depth20@100ms", Kind::DepthSnapshot),
    ("btcusdt@kline_1m", Kind::Kline),
    ("btcusdt@markPrice@1s", Kind::MarkPrice),
    ("btcusdt@forceOrder", Kind::Liquidation),
    ("btcusdt@ticker", Kind::Ticker),
];

/// Every benchmark frame: `benches/data/{spot,usdm}.jsonl`, one line per stream kind.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (market, text, streams) in [
        (
            Market::Spot,
            include_str!("../data/spot.jsonl"),
            &STREAMS_SPOT[..],
        ),
        (
            Market::Usdm,
            include_str!("../data/usdm.jsonl"),
            &STREAMS_USDM[..],
        ),
    ] {
        for (line, &(stream, kind)) in text.lines().zip(streams) {
            v.push(Case {
                kind,
                market,
                stream: stream.to_string(),
                raw: line.to_string(),
                combined: format!(r#"{{"stream":"{stream}","data":{line}}}"#),
            });
        }
    }
    v
}

/// A serde-based JSON reader.
pub trait Reader {
    /// Name in benchmark ids.
    const NAME: &'static str;
    /// Deserializes borrowed data from `b`.
    fn read<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String>;
}

/// serde_json.
#[derive(Debug)]
pub struct SerdeJson;
impl Reader for SerdeJson {
    const NAME: &'static str = "serde_json";
    fn read<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
        serde_json::from_slice(b).map_err(|e| e.to_string())
    }
}

/// sonic-rs.
#[derive(Debug)]
pub struct SonicRs;
impl Reader for SonicRs {
    const NAME: &'static str = "sonic_rs";
    fn read<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
        sonic_rs::from_slice(b).map_err(|e| e.to_string())
    }
}

#[derive(Deserialize)]
struct Combined<'a, T> {
    #[serde(borrow)]
    #[allow(dead_code)]
    stream: &'a str,
    data: T,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct TradeMsg<'a> {
    E: Option<i64>,
    s: &'a str,
    t: i64,
    p: &'a str,
    q: &'a str,
    T: i64,
    m: bool,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct AggTradeMsg<'a> {
    E: Option<i64>,
    s: &'a str,
    a: i64,
    f: i64,
    l: i64,
    p: &'a str,
    q: &'a str,
    T: i64,
    m: bool,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct BookTickerMsg<'a> {
    E: Option<i64>,
    T: Option<i64>,
    s: &'a str,
    u: i64,
    b: &'a str,
    B: &'a str,
    a: &'a str,
    A: &'a str,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct DepthMsg<'a> {
    E: Option<i64>,
    T: Option<i64>,
    s: &'a str,
    U: i64,
    u: i64,
    pu: Option<i64>,
    #[serde(borrow)]
    b: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    a: Vec<(&'a str, &'a str)>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct PartialDepthMsg<'a> {
    lastUpdateId: i64,
    #[serde(borrow)]
    bids: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    asks: Vec<(&'a str, &'a str)>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct KlineInner<'a> {
    t: i64,
    T: i64,
    i: &'a str,
    f: i64,
    L: i64,
    o: &'a str,
    c: &'a str,
    h: &'a str,
    l: &'a str,
    v: &'a str,
    n: i64,
    x: bool,
    q: &'a str,
    V: &'a str,
    Q: &'a str,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct KlineMsg<'a> {
    E: Option<i64>,
    s: &'a str,
    #[serde(borrow)]
    k: KlineInner<'a>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct MarkPriceMsg<'a> {
    E: Option<i64>,
    s: &'a str,
    p: &'a str,
    i: Option<&'a str>,
    P: Option<&'a str>,
    r: Option<&'a str>,
    T: Option<i64>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct ForceInner<'a> {
    s: &'a str,
    S: &'a str,
    o: &'a str,
    f: &'a str,
    q: &'a str,
    p: &'a str,
    ap: Option<&'a str>,
    X: &'a str,
    l: Option<&'a str>,
    z: Option<&'a str>,
    T: i64,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct ForceMsg<'a> {
    E: Option<i64>,
    #[serde(borrow)]
    o: ForceInner<'a>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct TickerMsg<'a> {
    E: Option<i64>,
    s: &'a str,
    p: &'a str,
    P: &'a str,
    w: &'a str,
    c: &'a str,
    Q: &'a str,
    b: Option<&'a str>,
    B: Option<&'a str>,
    a: Option<&'a str>,
    A: Option<&'a str>,
    o: &'a str,
    h: &'a str,
    l: &'a str,
    v: &'a str,
    q: &'a str,
    O: i64,
    C: i64,
    F: i64,
    L: i64,
    n: i64,
}

type R<T> = Result<T, String>;

fn px(s: &str, dp: &mut DpSet, i: usize) -> R<i64> {
    let p = parse_i64(s.as_bytes()).map_err(|e| e.to_string())?;
    dp.set(i, p.dp);
    Ok(p.raw)
}
fn qty(s: &str, dp: &mut DpSet, i: usize) -> R<Wide> {
    let p = parse_i128(s.as_bytes()).map_err(|e| e.to_string())?;
    dp.set(i, p.dp);
    Ok(Wide::new(p.raw))
}
fn opx(s: Option<&str>, dp: &mut DpSet, i: usize) -> R<i64> {
    match s {
        Some(s) if !s.is_empty() => px(s, dp, i),
        _ => {
            dp.set(i, DP_NULL);
            Ok(0)
        }
    }
}
fn oqty(s: Option<&str>, dp: &mut DpSet, i: usize) -> R<Wide> {
    match s {
        Some(s) if !s.is_empty() => qty(s, dp, i),
        _ => {
            dp.set(i, DP_NULL);
            Ok(Wide::default())
        }
    }
}
fn ms(t: Option<i64>) -> i64 {
    t.map_or(NULL_I64, |t| t * 1000)
}
fn sym(c: &mut SymbolCache, s: &str) -> R<SymbolId> {
    c.intern(s.as_bytes()).map_err(|e| e.to_string())
}
fn levels(ls: &[(&str, &str)], out: &mut Vec<Level>) -> R<u32> {
    for (p, q) in ls {
        let p = parse_i64(p.as_bytes()).map_err(|e| e.to_string())?;
        let q = parse_i128(q.as_bytes()).map_err(|e| e.to_string())?;
        out.push(Level {
            price: p.raw,
            qty: Wide::new(q.raw),
            price_dp: p.dp,
            qty_dp: q.dp,
            pad: [0; 6],
        });
    }
    Ok(ls.len() as u32)
}
fn code<T>(v: Option<T>, what: &str) -> R<T> {
    v.ok_or_else(|| format!("unknown {what}"))
}

/// Reads `b` (raw, or combined when `combined`) as the message of `case.kind` with reader
/// `J`, then converts it exactly like tickwire. `lv` is cleared and filled for depth kinds.
pub fn decode<J: Reader>(
    case: &Case,
    b: &[u8],
    combined: bool,
    syms: &mut SymbolCache,
    recv: i64,
    lv: &mut Vec<Level>,
) -> R<Record> {
    let (kind, market, stream) = (case.kind, case.market, case.stream.as_str());
    fn msg<'a, J: Reader, T: Deserialize<'a>>(b: &'a [u8], combined: bool) -> R<T> {
        if combined {
            J::read::<Combined<'a, T>>(b).map(|c| c.data)
        } else {
            J::read::<T>(b)
        }
    }
    lv.clear();
    let mut dp = DpSet::ALL_NULL;
    let h = |k, s, e| Header::new(k, market, s, e, recv);
    Ok(match kind {
        Kind::Trade => {
            let m: TradeMsg = msg::<J, _>(b, combined)?;
            Record::Trade(Trade {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                trade_id: m.t,
                price: px(m.p, &mut dp, 0)?,
                qty: qty(m.q, &mut dp, 1)?,
                trade_time: m.T * 1000,
                dp,
                is_buyer_maker: m.m as u8,
                pad: [0; 7],
            })
        }
        Kind::AggTrade => {
            let m: AggTradeMsg = msg::<J, _>(b, combined)?;
            Record::AggTrade(AggTrade {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                agg_trade_id: m.a,
                first_trade_id: m.f,
                last_trade_id: m.l,
                price: px(m.p, &mut dp, 0)?,
                qty: qty(m.q, &mut dp, 1)?,
                trade_time: m.T * 1000,
                dp,
                is_buyer_maker: m.m as u8,
                pad: [0; 7],
            })
        }
        Kind::BookTicker => {
            let m: BookTickerMsg = msg::<J, _>(b, combined)?;
            Record::BookTicker(BookTicker {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                update_id: m.u,
                bid_price: px(m.b, &mut dp, 0)?,
                bid_qty: qty(m.B, &mut dp, 1)?,
                ask_price: px(m.a, &mut dp, 2)?,
                ask_qty: qty(m.A, &mut dp, 3)?,
                transaction_time: ms(m.T),
                dp,
            })
        }
        Kind::DepthUpdate => {
            let m: DepthMsg = msg::<J, _>(b, combined)?;
            let bids = levels(&m.b, lv)?;
            let asks = levels(&m.a, lv)?;
            Record::DepthUpdate(DepthUpdate {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                first_update_id: m.U,
                final_update_id: m.u,
                prev_final_update_id: m.pu.unwrap_or(NULL_I64),
                transaction_time: ms(m.T),
                levels: LevelRange {
                    start: 0,
                    bids,
                    asks,
                    pad: 0,
                },
            })
        }
        Kind::DepthSnapshot if market == Market::Spot => {
            let m: PartialDepthMsg = msg::<J, _>(b, combined)?;
            let name = stream.split('@').next().unwrap_or("");
            let s = syms
                .intern_lower(name.as_bytes())
                .map_err(|e| e.to_string())?;
            let bids = levels(&m.bids, lv)?;
            let asks = levels(&m.asks, lv)?;
            Record::DepthSnapshot(DepthSnapshot {
                header: h(kind, s, NULL_I64),
                last_update_id: m.lastUpdateId,
                levels: LevelRange {
                    start: 0,
                    bids,
                    asks,
                    pad: 0,
                },
            })
        }
        Kind::DepthSnapshot => {
            let m: DepthMsg = msg::<J, _>(b, combined)?;
            let bids = levels(&m.b, lv)?;
            let asks = levels(&m.a, lv)?;
            Record::DepthSnapshot(DepthSnapshot {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                last_update_id: m.u,
                levels: LevelRange {
                    start: 0,
                    bids,
                    asks,
                    pad: 0,
                },
            })
        }
        Kind::Kline => {
            let m: KlineMsg = msg::<J, _>(b, combined)?;
            let k = m.k;
            Record::Kline(Kline {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                open_time: k.t * 1000,
                close_time: k.T * 1000,
                first_trade_id: k.f,
                last_trade_id: k.L,
                trade_count: k.n,
                open: px(k.o, &mut dp, 0)?,
                high: px(k.h, &mut dp, 1)?,
                low: px(k.l, &mut dp, 2)?,
                close: px(k.c, &mut dp, 3)?,
                volume: qty(k.v, &mut dp, 4)?,
                quote_volume: qty(k.q, &mut dp, 5)?,
                taker_buy_base_volume: qty(k.V, &mut dp, 6)?,
                taker_buy_quote_volume: qty(k.Q, &mut dp, 7)?,
                dp,
                interval: code(Interval::from_bytes(k.i.as_bytes()), "interval")? as u8,
                is_closed: k.x as u8,
                pad: [0; 6],
            })
        }
        Kind::MarkPrice => {
            let m: MarkPriceMsg = msg::<J, _>(b, combined)?;
            Record::MarkPrice(MarkPrice {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                mark_price: px(m.p, &mut dp, 0)?,
                index_price: opx(m.i, &mut dp, 1)?,
                estimated_settle_price: opx(m.P, &mut dp, 2)?,
                funding_rate: opx(m.r, &mut dp, 3)?,
                next_funding_time: ms(m.T),
                dp,
            })
        }
        Kind::Liquidation => {
            let m: ForceMsg = msg::<J, _>(b, combined)?;
            let o = m.o;
            Record::Liquidation(Liquidation {
                header: h(kind, sym(syms, o.s)?, ms(m.E)),
                orig_qty: qty(o.q, &mut dp, 0)?,
                price: px(o.p, &mut dp, 1)?,
                avg_price: opx(o.ap, &mut dp, 2)?,
                last_filled_qty: oqty(o.l, &mut dp, 3)?,
                filled_qty: oqty(o.z, &mut dp, 4)?,
                trade_time: o.T * 1000,
                dp,
                side: code(Side::from_bytes(o.S.as_bytes()), "side")? as u8,
                order_type: code(OrderType::from_bytes(o.o.as_bytes()), "order type")? as u8,
                time_in_force: code(TimeInForce::from_bytes(o.f.as_bytes()), "time in force")?
                    as u8,
                order_status: code(OrderStatus::from_bytes(o.X.as_bytes()), "status")? as u8,
                pad: [0; 4],
            })
        }
        Kind::Ticker => {
            let m: TickerMsg = msg::<J, _>(b, combined)?;
            Record::Ticker(Ticker {
                header: h(kind, sym(syms, m.s)?, ms(m.E)),
                price_change: px(m.p, &mut dp, 0)?,
                price_change_percent: px(m.P, &mut dp, 1)?,
                weighted_avg_price: px(m.w, &mut dp, 2)?,
                last_price: px(m.c, &mut dp, 3)?,
                last_qty: qty(m.Q, &mut dp, 4)?,
                best_bid_price: opx(m.b, &mut dp, 5)?,
                best_bid_qty: oqty(m.B, &mut dp, 6)?,
                best_ask_price: opx(m.a, &mut dp, 7)?,
                best_ask_qty: oqty(m.A, &mut dp, 8)?,
                open_price: px(m.o, &mut dp, 9)?,
                high_price: px(m.h, &mut dp, 10)?,
                low_price: px(m.l, &mut dp, 11)?,
                volume: qty(m.v, &mut dp, 12)?,
                quote_volume: qty(m.q, &mut dp, 13)?,
                open_time: m.O * 1000,
                close_time: m.C * 1000,
                first_trade_id: m.F,
                last_trade_id: m.L,
                trade_count: m.n,
                dp,
            })
        }
        Kind::Gap | Kind::Instrument | Kind::OpenInterest | Kind::LongShortRatio => {
            return Err(format!(
                "{} records are not decoded from frames",
                kind.as_str()
            ))
        }
    })
}

/// The store benchmarks' input: `n` spot trades round robin over four symbols, one µs apart,
/// as one Arrow batch (what tickwire's sinks take) and as the records and symbols each row was
/// made from (what the row-wise baselines are built from).
pub fn store_trades(n: usize) -> (tickwire_sinks::Batch, Vec<(&'static str, Trade)>) {
    const SYMBOLS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"];
    let t0 = 1_700_000_000_000_000i64;
    let mut b = tickwire_codecs::arrow::BatchBuilder::new(Kind::Trade, n);
    let mut rows = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let mut dp = DpSet::ALL_NULL;
        dp.set(0, 2);
        dp.set(1, 5);
        let sym = SYMBOLS[i as usize % 4];
        let t = Trade {
            header: Header::new(
                Kind::Trade,
                Market::Spot,
                SymbolId(0),
                t0 + i,
                (t0 + i) * 1000,
            ),
            trade_id: i,
            price: 3_700_000_000_000 + (i % 1000) * 1_000_000,
            qty: (100_000 + i128::from(i % 777)).into(),
            trade_time: t0 + i,
            dp,
            is_buyer_maker: (i % 2) as u8,
            pad: [0; 7],
        };
        b.append(&Record::Trade(t), &[], sym).expect("append");
        rows.push((sym, t));
    }
    let batch = tickwire_sinks::Batch {
        key: tickwire_sinks::BatchKey {
            kind: Kind::Trade,
            market: Market::Spot,
            day: 19_675,
        },
        seq: 1,
        data: std::sync::Arc::new(b.finish().expect("batch")),
        origin: None,
    };
    (batch, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_codecs::binance::Decoder;
    use tickwire_codecs::symbol::SymbolTable;

    /// The baselines do the same work: equal records, equal levels, for every case and form.
    #[test]
    fn baselines_produce_tickwires_records() {
        let cases = cases();
        assert_eq!(cases.len(), 16);
        let table = SymbolTable::new();
        for c in &cases {
            let mut dec = Decoder::new(c.market, table.clone());
            let mut syms = SymbolCache::new(table.clone());
            for (frame, combined) in [(&c.raw, false), (&c.combined, true)] {
                let mut ours = Vec::new();
                dec.decode_stream(
                    frame.as_bytes(),
                    Some(c.stream.as_bytes()),
                    5,
                    &mut |r: &Record, l: &[Level]| ours.push((*r, l.to_vec())),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", c.stream));
                assert_eq!(ours.len(), 1);
                assert_eq!(ours[0].0.kind(), c.kind, "{}", c.stream);
                for which in 0..2 {
                    let mut lv = Vec::new();
                    let r = match which {
                        0 => decode::<SerdeJson>(
                            c,
                            frame.as_bytes(),
                            combined,
                            &mut syms,
                            5,
                            &mut lv,
                        ),
                        _ => {
                            decode::<SonicRs>(c, frame.as_bytes(), combined, &mut syms, 5, &mut lv)
                        }
                    }
                    .unwrap_or_else(|e| panic!("{} {which}: {e}", c.stream));
                    assert_eq!(r, ours[0].0, "{} {:?} reader {which}", c.stream, c.market);
                    assert_eq!(lv, ours[0].1, "{} levels", c.stream);
                }
            }
        }
    }
}
