//! Fused one-pass decoders for the high-volume kinds (trade, aggTrade, bookTicker, depth diffs)
//! and for the other kinds with a fixed shape (markPriceUpdate, 24hrTicker, kline, forceOrder,
//! partial depth in both its forms).
//!
//! The general decoder ([`super::scan`]) records where every known key's value lies and then
//! converts the fields it needs: robust to any key order, but it touches each value twice and
//! moves a large `Result<Record>` through several calls. Here each value is converted the
//! moment its key is read, into the record being built, with the very same conversion
//! functions (`parse_i64`, `parse_i128`, `parse_int`, the symbol cache).
//!
//! A fast decoder never reports an error: anything it does not expect (a missing required
//! field, an escaped string, an unknown value shape, broken syntax) makes it return `None`,
//! and the caller decodes the frame again with the general path, which produces the precise
//! error or the record. So the fast path changes speed, never results; a test holds the two
//! paths equal on every fixture and on mutated frames.

use super::scan::Scanner;
use crate::decimal::{DpSet, Wide};

use crate::decimal::POW10;
use crate::record::*;
use crate::symbol::SymbolCache;

/// The value of eight ASCII digits loaded little-endian (first digit in the low byte), or
/// `None` if any byte is not a digit. The SWAR method of simdjson's
/// `parse_eight_digits_unrolled`: three multiplies instead of eight dependent multiply-adds.
#[inline(always)]
fn eight_digits(x: u64) -> Option<u64> {
    // All digits: every byte's high nibble is 3, and adding 6 keeps it 3 (so the byte is <= '9').
    let all = (x & 0xF0F0_F0F0_F0F0_F0F0)
        | ((x.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4);
    if all != 0x3333_3333_3333_3333 {
        return None;
    }
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = x - 0x3030_3030_3030_3030;
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    Some(
        (((v & MASK).wrapping_mul(MUL1)).wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))) >> 32,
    )
}

/// A cursor that parses values in place. Every method returns `None` on anything unexpected.
pub(super) struct Cur<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Cur<'a> {
    /// Reads `"k":` and returns the key (one byte for the common case).
    #[inline(always)]
    fn key(&mut self) -> Option<&'a [u8]> {
        let b = self.b;
        let i = self.i;
        if i + 3 < b.len()
            && b[i] == b'"'
            && b[i + 2] == b'"'
            && b[i + 3] == b':'
            && !matches!(b[i + 1], b'"' | b'\\')
        {
            self.i = i + 4;
            return Some(&b[i + 1..i + 2]);
        }
        let s = self.string()?;
        if self.b.get(self.i) != Some(&b':') {
            return None;
        }
        self.i += 1;
        Some(s)
    }

    /// A string without escapes; `None` for anything else.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a [u8]> {
        let b = self.b;
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut j = start;
        while j < b.len() {
            match b[j] {
                b'"' => {
                    self.i = j + 1;
                    return Some(&b[start..j]);
                }
                b'\\' => return None,
                _ => j += 1,
            }
        }
        None
    }

    /// Digits at the cursor, accumulated in one pass; returns (value, count). Eight digits at
    /// a time where it can (see [`eight_digits`]): a byte loop's multiply-add chain waits ~4
    /// cycles per digit, and a trade frame has ~60 digits. Values past 18 digits wrap and are
    /// refused by the callers.
    #[inline(always)]
    fn digits(&mut self, mut v: u64) -> (u64, usize) {
        let b = self.b;
        let start = self.i;
        let mut j = start;
        while let Some(chunk) = b.get(j..j + 8) {
            let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            match eight_digits(x) {
                Some(d) => {
                    v = v.wrapping_mul(100_000_000).wrapping_add(d);
                    j += 8;
                }
                None => break,
            }
        }
        while j < b.len() {
            let d = b[j].wrapping_sub(b'0');
            if d >= 10 {
                break;
            }
            v = v.wrapping_mul(10).wrapping_add(u64::from(d));
            j += 1;
        }
        self.i = j;
        (v, j - start)
    }

    /// A plain JSON integer (`-?[0-9]{1,18}`), in one pass. Longer or other number shapes go
    /// to the general path, which parses and reports them exactly.
    #[inline(always)]
    fn int(&mut self) -> Option<i64> {
        let neg = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(neg);
        let (v, n) = self.digits(0);
        if n == 0 || n > 18 || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        let v = v as i64; // < 10^18: no overflow
        Some(if neg { -v } else { v })
    }

    #[inline(always)]
    fn time_us(&mut self) -> Option<i64> {
        self.int()?.checked_mul(1000)
    }

    /// A quoted plain decimal `"-?[0-9]+(.[0-9]{1,8})?"` with at most 18 digits, in one pass:
    /// (negative, mantissa, fractional digits). The same value `parse_i64`/`parse_i128` give.
    #[inline(always)]
    fn decimal(&mut self) -> Option<(bool, u64, usize)> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let neg = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(neg);
        let (m, ni) = self.digits(0);
        let (m, nf) = if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let (m, nf) = self.digits(m);
            if nf == 0 {
                return None;
            }
            (m, nf)
        } else {
            (m, 0)
        };
        if ni == 0 || nf > 8 || ni + nf > 18 || self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        Some((neg, m, nf))
    }

    #[inline(always)]
    fn price(&mut self, dp: &mut DpSet, k: usize) -> Option<i64> {
        let (neg, m, nf) = self.decimal()?;
        let raw = i64::try_from(m).ok()?.checked_mul(POW10[8 - nf] as i64)?;
        dp.set(k, nf as u8);
        Some(if neg { -raw } else { raw })
    }

    #[inline(always)]
    fn qty(&mut self, dp: &mut DpSet, k: usize) -> Option<Wide> {
        let (neg, m, nf) = self.decimal()?;
        let raw = i128::from(m) * i128::from(POW10[8 - nf]); // < 10^26: fits
        dp.set(k, nf as u8);
        Some(Wide::new(if neg { -raw } else { raw }))
    }

    #[inline(always)]
    fn boolean(&mut self) -> Option<u8> {
        let r = &self.b[self.i.min(self.b.len())..];
        if r.starts_with(b"true") {
            self.i += 4;
            Some(1)
        } else if r.starts_with(b"false") {
            self.i += 5;
            Some(0)
        } else {
            None
        }
    }

    /// Consumes the literal `l` if it comes next (a fixed-size compare, no call).
    #[inline(always)]
    fn lit<const N: usize>(&mut self, l: &[u8; N]) -> Option<()> {
        let s: &[u8; N] = self.b.get(self.i..self.i + N)?.try_into().ok()?;
        if s == l {
            self.i += N;
            Some(())
        } else {
            None
        }
    }

    /// Skips a value we do not read, with the general scanner's validation.
    #[inline]
    fn skip(&mut self) -> Option<()> {
        let mut sc = Scanner {
            b: self.b,
            i: self.i,
        };
        sc.value().ok()?;
        self.i = sc.i;
        Some(())
    }

    /// After a value: `Some(true)` at `,`, `Some(false)` at the closing `}`.
    #[inline(always)]
    fn next(&mut self) -> Option<bool> {
        match self.b.get(self.i) {
            Some(b',') => {
                self.i += 1;
                Some(true)
            }
            Some(b'}') => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// `[["p","q"],...]` into the arena.
    fn levels(&mut self, arena: &mut Vec<Level>) -> Option<u32> {
        let b = self.b;
        if b.get(self.i) != Some(&b'[') {
            return None;
        }
        self.i += 1;
        let mut n = 0u32;
        if b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(0);
        }
        loop {
            if b.get(self.i) != Some(&b'[') {
                return None;
            }
            self.i += 1;
            let mut dp = DpSet::ALL_NULL;
            let price = self.price(&mut dp, 0)?;
            if b.get(self.i) != Some(&b',') {
                return None;
            }
            self.i += 1;
            let qty = self.qty(&mut dp, 1)?;
            if b.get(self.i) != Some(&b']') {
                return None;
            }
            self.i += 1;
            let (price_dp, qty_dp) = (dp.get(0).unwrap_or(0), dp.get(1).unwrap_or(0));
            arena.push(Level {
                price,
                qty,
                price_dp,
                qty_dp,
                pad: [0; 6],
            });
            n += 1;
            match b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Some(n);
                }
                _ => return None,
            }
        }
    }
}

/// Skips a key no fast decoder reads. Keys that steer the general path (`data`, `result`,
/// `lastUpdateId`, ...) end the fast attempt, so both paths always agree on what a frame is.
#[inline(always)]
fn skip_unknown(c: &mut Cur<'_>, k: &[u8]) -> Option<()> {
    if k.len() > 1 && super::scan::slot_of(k).is_some() {
        return None;
    }
    c.skip()
}

/// Which fast decoder fits an object, judged from its first key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fast {
    Trade,
    AggTrade,
    BookTicker,
    DepthUpdate,
    MarkPrice,
    Ticker,
    Kline,
    Liquidation,
    /// Spot partial depth (`{"lastUpdateId":..,"bids":..,"asks":..}`, symbol from the stream).
    DepthSnapshot,
    /// USD-M partial depth: a `depthUpdate` event on a `@depthN` stream.
    PartialDepth,
}

/// Picks a fast decoder for the object at `i`, or `None` for the general path.
#[inline(always)]
pub(super) fn pick(b: &[u8], i: usize) -> Option<Fast> {
    let r = b.get(i..)?;
    if r.starts_with(b"{\"e\":\"trade\",") {
        Some(Fast::Trade)
    } else if r.starts_with(b"{\"e\":\"aggTrade\",") {
        Some(Fast::AggTrade)
    } else if r.starts_with(b"{\"e\":\"depthUpdate\",") {
        Some(Fast::DepthUpdate)
    } else if r.starts_with(b"{\"e\":\"bookTicker\",") || r.starts_with(b"{\"u\":") {
        Some(Fast::BookTicker)
    } else if r.starts_with(b"{\"e\":\"markPriceUpdate\",") {
        Some(Fast::MarkPrice)
    } else if r.starts_with(b"{\"e\":\"24hrTicker\",") {
        Some(Fast::Ticker)
    } else if r.starts_with(b"{\"e\":\"kline\",") {
        Some(Fast::Kline)
    } else if r.starts_with(b"{\"e\":\"forceOrder\",") {
        Some(Fast::Liquidation)
    } else if r.starts_with(b"{\"lastUpdateId\":") {
        Some(Fast::DepthSnapshot)
    } else {
        None
    }
}

/// Inputs shared by the fast decoders.
pub(super) struct In<'s> {
    pub market: Market,
    pub millis: bool,
    pub recv: i64,
    pub symbols: &'s mut SymbolCache,
    pub levels: &'s mut Vec<Level>,
    /// The stream name, when the frame came with one (the combined wrapper or the caller).
    pub stream: Option<&'s [u8]>,
}

/// Decodes the object at `cur.i` with `which` into `out`; on success `cur.i` is just past
/// its `}`. Filling the caller's record in place avoids moving it through return values.
#[inline]
pub(super) fn decode(
    which: Fast,
    cur: &mut Cur<'_>,
    mut inp: In<'_>,
    out: &mut Record,
) -> Option<()> {
    if !inp.millis {
        return None; // the general path handles µs frames
    }
    cur.i += 1; // '{'
    match which {
        Fast::Trade => {
            *out = Record::Trade(Trade::default());
            let Record::Trade(t) = out else { return None };
            let at = cur.i;
            if trade_straight(cur, &mut inp, t).is_some() {
                return Some(());
            }
            cur.i = at;
            trade(cur, inp, t)
        }
        Fast::AggTrade => {
            *out = Record::AggTrade(AggTrade::default());
            let Record::AggTrade(t) = out else {
                return None;
            };
            let at = cur.i;
            if agg_trade_straight(cur, &mut inp, t).is_some() {
                return Some(());
            }
            cur.i = at;
            agg_trade(cur, inp, t)
        }
        Fast::BookTicker => {
            *out = Record::BookTicker(BookTicker::default());
            let Record::BookTicker(t) = out else {
                return None;
            };
            let at = cur.i;
            if book_ticker_straight(cur, &mut inp, t).is_some() {
                return Some(());
            }
            cur.i = at;
            book_ticker(cur, inp, t)
        }
        Fast::DepthUpdate => {
            *out = Record::DepthUpdate(DepthUpdate::default());
            let Record::DepthUpdate(t) = out else {
                return None;
            };
            let (at, levels) = (cur.i, inp.levels.len());
            if depth_update_straight(cur, &mut inp, t).is_some() {
                return Some(());
            }
            // The levels read before the layout deviated are read again.
            inp.levels.truncate(levels);
            cur.i = at;
            depth_update(cur, inp, t)
        }
        Fast::MarkPrice => {
            *out = Record::MarkPrice(MarkPrice::default());
            let Record::MarkPrice(t) = out else {
                return None;
            };
            mark_price(cur, inp, t)
        }
        Fast::Ticker => {
            *out = Record::Ticker(Ticker::default());
            let Record::Ticker(t) = out else {
                return None;
            };
            ticker(cur, inp, t)
        }
        Fast::Kline => {
            *out = Record::Kline(Kline::default());
            let Record::Kline(t) = out else {
                return None;
            };
            kline(cur, inp, t)
        }
        Fast::Liquidation => {
            *out = Record::Liquidation(Liquidation::default());
            let Record::Liquidation(t) = out else {
                return None;
            };
            liquidation(cur, inp, t)
        }
        Fast::DepthSnapshot | Fast::PartialDepth => {
            *out = Record::DepthSnapshot(DepthSnapshot::default());
            let Record::DepthSnapshot(t) = out else {
                return None;
            };
            if which == Fast::DepthSnapshot {
                depth_snapshot(cur, inp, t)
            } else {
                partial_depth(cur, inp, t)
            }
        }
    }
}

/// The header a decoder starts from: no symbol or event time yet.
#[inline(always)]
fn fresh(kind: Kind, market: Market, recv: i64) -> Header {
    Header::new(kind, market, SymbolId(0), NULL_I64, recv)
}

/// Sets bit `n` of the seen-mask when a required field is read.
macro_rules! req {
    ($seen:ident, $n:expr, $e:expr) => {{
        $seen |= 1u32 << $n;
        $e
    }};
}

/// Trades in the key order Binance writes today, straight through with literal key checks:
/// spot `e,E,s,t,p,q,T,m[,M]`, USD-M `e,E,T,s,t,p,q,X,m`. The key loop below costs an
/// unpredictable indirect jump per key (measured: ~16% of a trade's decode time); on any
/// deviation from these layouts, the loop takes over. Same fields, same conversions.
fn trade_straight(c: &mut Cur<'_>, inp: &mut In<'_>, t: &mut Trade) -> Option<()> {
    t.header = fresh(Kind::Trade, inp.market, inp.recv);
    t.dp = DpSet::ALL_NULL;
    c.lit(b"\"e\":\"trade\",\"E\":")?;
    t.header.event_time = c.time_us()?;
    let usdm = c.lit(b",\"T\":").is_some();
    if usdm {
        t.trade_time = c.time_us()?;
    }
    c.lit(b",\"s\":")?;
    let sym = c.string()?;
    c.lit(b",\"t\":")?;
    t.trade_id = c.int()?;
    c.lit(b",\"p\":")?;
    t.price = c.price(&mut t.dp, 0)?;
    c.lit(b",\"q\":")?;
    t.qty = c.qty(&mut t.dp, 1)?;
    if usdm {
        c.lit(b",\"X\":")?;
        c.string()?;
    } else {
        c.lit(b",\"T\":")?;
        t.trade_time = c.time_us()?;
    }
    c.lit(b",\"m\":")?;
    t.is_buyer_maker = c.boolean()?;
    if !usdm && c.lit(b",\"M\":").is_some() {
        c.boolean()?;
    }
    c.lit(b"}")?;
    // Interned last, once the layout is known to match (interning is the one side effect).
    t.header.symbol = inp.symbols.intern(sym).ok()?;
    Some(())
}

fn trade(c: &mut Cur<'_>, inp: In<'_>, t: &mut Trade) -> Option<()> {
    const EVENT: &[u8] = b"trade";
    t.header = fresh(Kind::Trade, inp.market, inp.recv);
    t.dp = DpSet::ALL_NULL;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => {
                if c.string()? != EVENT {
                    return None;
                }
            }
            b"E" => t.header.event_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"t" => req!(seen, 1, t.trade_id = c.int()?),
            b"p" => req!(seen, 2, t.price = c.price(&mut t.dp, 0)?),
            b"q" => req!(seen, 3, t.qty = c.qty(&mut t.dp, 1)?),
            b"T" => req!(seen, 4, t.trade_time = c.time_us()?),
            b"m" => req!(seen, 5, t.is_buyer_maker = c.boolean()?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b11_1111).then_some(())
}

/// aggTrades in the layouts Binance writes: spot `e,E,s,a,p,q,f,l,T,m,M`, USD-M
/// `e,E,s,a,p,q,nq,f,l,T,m` (older USD-M frames: `a` before `s`, no `nq`). Like
/// [`trade_straight`]: any other layout goes to the key loop.
fn agg_trade_straight(c: &mut Cur<'_>, inp: &mut In<'_>, t: &mut AggTrade) -> Option<()> {
    t.header = fresh(Kind::AggTrade, inp.market, inp.recv);
    t.dp = DpSet::ALL_NULL;
    c.lit(b"\"e\":\"aggTrade\",\"E\":")?;
    t.header.event_time = c.time_us()?;
    let sym = if c.lit(b",\"s\":").is_some() {
        let sym = c.string()?;
        c.lit(b",\"a\":")?;
        t.agg_trade_id = c.int()?;
        sym
    } else {
        c.lit(b",\"a\":")?;
        t.agg_trade_id = c.int()?;
        c.lit(b",\"s\":")?;
        c.string()?
    };
    c.lit(b",\"p\":")?;
    t.price = c.price(&mut t.dp, 0)?;
    c.lit(b",\"q\":")?;
    t.qty = c.qty(&mut t.dp, 1)?;
    if c.lit(b",\"nq\":").is_some() {
        c.string()?;
    }
    c.lit(b",\"f\":")?;
    t.first_trade_id = c.int()?;
    c.lit(b",\"l\":")?;
    t.last_trade_id = c.int()?;
    c.lit(b",\"T\":")?;
    t.trade_time = c.time_us()?;
    c.lit(b",\"m\":")?;
    t.is_buyer_maker = c.boolean()?;
    if c.lit(b",\"M\":").is_some() {
        c.boolean()?;
    }
    c.lit(b"}")?;
    t.header.symbol = inp.symbols.intern(sym).ok()?;
    Some(())
}

fn agg_trade(c: &mut Cur<'_>, inp: In<'_>, t: &mut AggTrade) -> Option<()> {
    const EVENT: &[u8] = b"aggTrade";
    t.header = fresh(Kind::AggTrade, inp.market, inp.recv);
    t.dp = DpSet::ALL_NULL;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => {
                if c.string()? != EVENT {
                    return None;
                }
            }
            b"E" => t.header.event_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"a" => req!(seen, 1, t.agg_trade_id = c.int()?),
            b"f" => req!(seen, 2, t.first_trade_id = c.int()?),
            b"l" => req!(seen, 3, t.last_trade_id = c.int()?),
            b"p" => req!(seen, 4, t.price = c.price(&mut t.dp, 0)?),
            b"q" => req!(seen, 5, t.qty = c.qty(&mut t.dp, 1)?),
            b"T" => req!(seen, 6, t.trade_time = c.time_us()?),
            b"m" => req!(seen, 7, t.is_buyer_maker = c.boolean()?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b1111_1111).then_some(())
}

/// bookTickers in the layouts Binance writes: spot `u,s,b,B,a,A`, USD-M `e,u,s,b,B,a,A,T,E`
/// (its documentation's example: `e,u,E,T,s,b,B,a,A`). Like [`trade_straight`]: any other
/// layout goes to the key loop.
fn book_ticker_straight(c: &mut Cur<'_>, inp: &mut In<'_>, t: &mut BookTicker) -> Option<()> {
    t.header = fresh(Kind::BookTicker, inp.market, inp.recv);
    t.transaction_time = NULL_I64;
    t.dp = DpSet::ALL_NULL;
    // USD-M frames carry `e`, and the times `E` and `T` (after `u`, or at the end).
    let mut times_at_end = c.lit(b"\"e\":\"bookTicker\",").is_some();
    c.lit(b"\"u\":")?;
    t.update_id = c.int()?;
    if times_at_end && c.lit(b",\"E\":").is_some() {
        t.header.event_time = c.time_us()?;
        c.lit(b",\"T\":")?;
        t.transaction_time = c.time_us()?;
        times_at_end = false;
    }
    c.lit(b",\"s\":")?;
    let sym = c.string()?;
    c.lit(b",\"b\":")?;
    t.bid_price = c.price(&mut t.dp, 0)?;
    c.lit(b",\"B\":")?;
    t.bid_qty = c.qty(&mut t.dp, 1)?;
    c.lit(b",\"a\":")?;
    t.ask_price = c.price(&mut t.dp, 2)?;
    c.lit(b",\"A\":")?;
    t.ask_qty = c.qty(&mut t.dp, 3)?;
    if times_at_end {
        c.lit(b",\"T\":")?;
        t.transaction_time = c.time_us()?;
        c.lit(b",\"E\":")?;
        t.header.event_time = c.time_us()?;
    }
    c.lit(b"}")?;
    t.header.symbol = inp.symbols.intern(sym).ok()?;
    Some(())
}

fn book_ticker(c: &mut Cur<'_>, inp: In<'_>, t: &mut BookTicker) -> Option<()> {
    const EVENT: &[u8] = b"bookTicker";
    t.header = fresh(Kind::BookTicker, inp.market, inp.recv);
    t.transaction_time = NULL_I64;
    t.dp = DpSet::ALL_NULL;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => {
                if c.string()? != EVENT {
                    return None;
                }
            }
            b"E" => t.header.event_time = c.time_us()?,
            b"T" => t.transaction_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"u" => req!(seen, 1, t.update_id = c.int()?),
            b"b" => req!(seen, 2, t.bid_price = c.price(&mut t.dp, 0)?),
            b"B" => req!(seen, 3, t.bid_qty = c.qty(&mut t.dp, 1)?),
            b"a" => req!(seen, 4, t.ask_price = c.price(&mut t.dp, 2)?),
            b"A" => req!(seen, 5, t.ask_qty = c.qty(&mut t.dp, 3)?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b11_1111).then_some(())
}

/// Depth diffs in the layouts Binance writes: spot `e,E,s,U,u,b,a`, USD-M
/// `e,E,T,s,U,u,pu,b,a`. Like [`trade_straight`]: any other layout goes to the key loop (the
/// caller drops the levels read before it deviated).
fn depth_update_straight(c: &mut Cur<'_>, inp: &mut In<'_>, t: &mut DepthUpdate) -> Option<()> {
    t.header = fresh(Kind::DepthUpdate, inp.market, inp.recv);
    t.prev_final_update_id = NULL_I64;
    t.transaction_time = NULL_I64;
    c.lit(b"\"e\":\"depthUpdate\",\"E\":")?;
    t.header.event_time = c.time_us()?;
    if c.lit(b",\"T\":").is_some() {
        t.transaction_time = c.time_us()?;
    }
    c.lit(b",\"s\":")?;
    let sym = c.string()?;
    c.lit(b",\"U\":")?;
    t.first_update_id = c.int()?;
    c.lit(b",\"u\":")?;
    t.final_update_id = c.int()?;
    if c.lit(b",\"pu\":").is_some() {
        t.prev_final_update_id = c.int()?;
    }
    t.levels.start = inp.levels.len() as u32;
    c.lit(b",\"b\":")?;
    t.levels.bids = c.levels(inp.levels)?;
    c.lit(b",\"a\":")?;
    t.levels.asks = c.levels(inp.levels)?;
    c.lit(b"}")?;
    t.header.symbol = inp.symbols.intern(sym).ok()?;
    Some(())
}

fn depth_update(c: &mut Cur<'_>, inp: In<'_>, t: &mut DepthUpdate) -> Option<()> {
    const EVENT: &[u8] = b"depthUpdate";
    t.header = fresh(Kind::DepthUpdate, inp.market, inp.recv);
    t.prev_final_update_id = NULL_I64;
    t.transaction_time = NULL_I64;
    let mut seen = 0u32;
    // Levels are parsed as they come; bids and asks must each appear once, bids first, for
    // the arena layout (bids then asks). Anything else goes to the general path.
    let start = inp.levels.len() as u32;
    t.levels.start = start;
    loop {
        let k = c.key()?;
        match k {
            b"e" => {
                if c.string()? != EVENT {
                    return None;
                }
            }
            b"E" => t.header.event_time = c.time_us()?,
            b"T" => t.transaction_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"U" => req!(seen, 1, t.first_update_id = c.int()?),
            b"u" => req!(seen, 2, t.final_update_id = c.int()?),
            b"pu" => t.prev_final_update_id = c.int()?,
            b"b" if seen & (1 << 3 | 1 << 4) == 0 => {
                req!(seen, 3, t.levels.bids = c.levels(inp.levels)?)
            }
            b"a" if seen & (1 << 3) != 0 && seen & (1 << 4) == 0 => {
                req!(seen, 4, t.levels.asks = c.levels(inp.levels)?)
            }
            b"b" | b"a" => return None,
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b1_1111).then_some(())
}

/// Checks the event name's value (the key is read already).
#[inline(always)]
fn event_is(c: &mut Cur<'_>, name: &[u8]) -> Option<()> {
    (c.string()? == name).then_some(())
}

/// markPriceUpdate: `s,p` required; `i,P,r,T` optional (absent: null; `null` or `""` go to the
/// general path, which nulls them too); `ap` is not read.
fn mark_price(c: &mut Cur<'_>, inp: In<'_>, t: &mut MarkPrice) -> Option<()> {
    t.header = fresh(Kind::MarkPrice, inp.market, inp.recv);
    t.next_funding_time = NULL_I64;
    t.dp = DpSet::ALL_NULL;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => event_is(c, b"markPriceUpdate")?,
            b"E" => t.header.event_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"p" => req!(seen, 1, t.mark_price = c.price(&mut t.dp, 0)?),
            b"i" => t.index_price = c.price(&mut t.dp, 1)?,
            b"P" => t.estimated_settle_price = c.price(&mut t.dp, 2)?,
            b"r" => t.funding_rate = c.price(&mut t.dp, 3)?,
            b"T" => t.next_funding_time = c.time_us()?,
            b"ap" => c.skip()?,
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b11).then_some(())
}

/// 24hrTicker: `s,p,P,w,c,Q,o,h,l,v,q,O,C,F,L,n` required; `b,B,a,A` optional (absent on
/// futures).
fn ticker(c: &mut Cur<'_>, inp: In<'_>, t: &mut Ticker) -> Option<()> {
    t.header = fresh(Kind::Ticker, inp.market, inp.recv);
    t.dp = DpSet::ALL_NULL;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => event_is(c, b"24hrTicker")?,
            b"E" => t.header.event_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"p" => req!(seen, 1, t.price_change = c.price(&mut t.dp, 0)?),
            b"P" => req!(seen, 2, t.price_change_percent = c.price(&mut t.dp, 1)?),
            b"w" => req!(seen, 3, t.weighted_avg_price = c.price(&mut t.dp, 2)?),
            b"c" => req!(seen, 4, t.last_price = c.price(&mut t.dp, 3)?),
            b"Q" => req!(seen, 5, t.last_qty = c.qty(&mut t.dp, 4)?),
            b"b" => t.best_bid_price = c.price(&mut t.dp, 5)?,
            b"B" => t.best_bid_qty = c.qty(&mut t.dp, 6)?,
            b"a" => t.best_ask_price = c.price(&mut t.dp, 7)?,
            b"A" => t.best_ask_qty = c.qty(&mut t.dp, 8)?,
            b"o" => req!(seen, 6, t.open_price = c.price(&mut t.dp, 9)?),
            b"h" => req!(seen, 7, t.high_price = c.price(&mut t.dp, 10)?),
            b"l" => req!(seen, 8, t.low_price = c.price(&mut t.dp, 11)?),
            b"v" => req!(seen, 9, t.volume = c.qty(&mut t.dp, 12)?),
            b"q" => req!(seen, 10, t.quote_volume = c.qty(&mut t.dp, 13)?),
            b"O" => req!(seen, 11, t.open_time = c.time_us()?),
            b"C" => req!(seen, 12, t.close_time = c.time_us()?),
            b"F" => req!(seen, 13, t.first_trade_id = c.int()?),
            b"L" => req!(seen, 14, t.last_trade_id = c.int()?),
            b"n" => req!(seen, 15, t.trade_count = c.int()?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0xFFFF).then_some(())
}

/// kline: `s`, and in `k`: `t,T,i,f,L,o,c,h,l,v,n,x,q,V,Q` (its `s`, `B` and others not read).
fn kline(c: &mut Cur<'_>, inp: In<'_>, t: &mut Kline) -> Option<()> {
    t.header = fresh(Kind::Kline, inp.market, inp.recv);
    t.dp = DpSet::ALL_NULL;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => event_is(c, b"kline")?,
            b"E" => t.header.event_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"k" if seen & (1 << 1) == 0 => req!(seen, 1, kline_body(c, t)?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b11).then_some(())
}

/// The `k` object of a kline, every field required.
fn kline_body(c: &mut Cur<'_>, t: &mut Kline) -> Option<()> {
    c.lit(b"{")?;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"t" => req!(seen, 0, t.open_time = c.time_us()?),
            b"T" => req!(seen, 1, t.close_time = c.time_us()?),
            b"i" => req!(
                seen,
                2,
                t.interval = Interval::from_bytes(c.string()?)? as u8
            ),
            b"f" => req!(seen, 3, t.first_trade_id = c.int()?),
            b"L" => req!(seen, 4, t.last_trade_id = c.int()?),
            b"n" => req!(seen, 5, t.trade_count = c.int()?),
            b"o" => req!(seen, 6, t.open = c.price(&mut t.dp, 0)?),
            b"h" => req!(seen, 7, t.high = c.price(&mut t.dp, 1)?),
            b"l" => req!(seen, 8, t.low = c.price(&mut t.dp, 2)?),
            b"c" => req!(seen, 9, t.close = c.price(&mut t.dp, 3)?),
            b"v" => req!(seen, 10, t.volume = c.qty(&mut t.dp, 4)?),
            b"q" => req!(seen, 11, t.quote_volume = c.qty(&mut t.dp, 5)?),
            b"V" => req!(seen, 12, t.taker_buy_base_volume = c.qty(&mut t.dp, 6)?),
            b"Q" => req!(seen, 13, t.taker_buy_quote_volume = c.qty(&mut t.dp, 7)?),
            b"x" => req!(seen, 14, t.is_closed = c.boolean()?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0x7FFF).then_some(())
}

/// forceOrder: `E` optional; in `o`: `s,S,o,f,q,p,X,T` required, `ap,l,z` optional.
fn liquidation(c: &mut Cur<'_>, inp: In<'_>, t: &mut Liquidation) -> Option<()> {
    t.header = fresh(Kind::Liquidation, inp.market, inp.recv);
    t.dp = DpSet::ALL_NULL;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => event_is(c, b"forceOrder")?,
            b"E" => t.header.event_time = c.time_us()?,
            b"o" if seen == 0 => req!(seen, 0, liquidation_order(c, inp.symbols, t)?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 1).then_some(())
}

/// The `o` object of a forceOrder.
fn liquidation_order(
    c: &mut Cur<'_>,
    symbols: &mut SymbolCache,
    t: &mut Liquidation,
) -> Option<()> {
    c.lit(b"{")?;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"s" => req!(seen, 0, t.header.symbol = symbols.intern(c.string()?).ok()?),
            b"S" => req!(seen, 1, t.side = Side::from_bytes(c.string()?)? as u8),
            b"o" => req!(
                seen,
                2,
                t.order_type = OrderType::from_bytes(c.string()?)? as u8
            ),
            b"f" => req!(
                seen,
                3,
                t.time_in_force = TimeInForce::from_bytes(c.string()?)? as u8
            ),
            b"q" => req!(seen, 4, t.orig_qty = c.qty(&mut t.dp, 0)?),
            b"p" => req!(seen, 5, t.price = c.price(&mut t.dp, 1)?),
            b"ap" => t.avg_price = c.price(&mut t.dp, 2)?,
            b"l" => t.last_filled_qty = c.qty(&mut t.dp, 3)?,
            b"z" => t.filled_qty = c.qty(&mut t.dp, 4)?,
            b"X" => req!(
                seen,
                6,
                t.order_status = OrderStatus::from_bytes(c.string()?)? as u8
            ),
            b"T" => req!(seen, 7, t.trade_time = c.time_us()?),
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b1111_1111).then_some(())
}

/// Spot partial depth: `lastUpdateId,bids,asks` required, `E` optional, bids before asks; the
/// symbol is the stream name's first part (no stream: the general path reports it).
fn depth_snapshot(c: &mut Cur<'_>, inp: In<'_>, t: &mut DepthSnapshot) -> Option<()> {
    let name = inp.stream?.split(|&b| b == b'@').next()?;
    t.header = fresh(Kind::DepthSnapshot, inp.market, inp.recv);
    t.levels.start = inp.levels.len() as u32;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"lastUpdateId" => req!(seen, 0, t.last_update_id = c.int()?),
            b"E" => t.header.event_time = c.time_us()?,
            b"bids" if seen & (1 << 1 | 1 << 2) == 0 => {
                req!(seen, 1, t.levels.bids = c.levels(inp.levels)?)
            }
            b"asks" if seen & (1 << 1) != 0 && seen & (1 << 2) == 0 => {
                req!(seen, 2, t.levels.asks = c.levels(inp.levels)?)
            }
            // An event name would make it another kind on the general path.
            b"e" | b"bids" | b"asks" => return None,
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    if seen != 0b111 {
        return None;
    }
    t.header.symbol = inp.symbols.intern_lower(name).ok()?;
    Some(())
}

/// USD-M partial depth (`depthUpdate` on a `@depthN` stream): `s,u,b,a` required, `E`
/// optional, bids before asks; `U`, `pu`, `T` are not read.
fn partial_depth(c: &mut Cur<'_>, inp: In<'_>, t: &mut DepthSnapshot) -> Option<()> {
    t.header = fresh(Kind::DepthSnapshot, inp.market, inp.recv);
    t.levels.start = inp.levels.len() as u32;
    let mut seen = 0u32;
    loop {
        let k = c.key()?;
        match k {
            b"e" => event_is(c, b"depthUpdate")?,
            b"E" => t.header.event_time = c.time_us()?,
            b"s" => req!(
                seen,
                0,
                t.header.symbol = inp.symbols.intern(c.string()?).ok()?
            ),
            b"u" => req!(seen, 1, t.last_update_id = c.int()?),
            b"pu" => c.skip()?,
            b"b" if seen & (1 << 2 | 1 << 3) == 0 => {
                req!(seen, 2, t.levels.bids = c.levels(inp.levels)?)
            }
            b"a" if seen & (1 << 2) != 0 && seen & (1 << 3) == 0 => {
                req!(seen, 3, t.levels.asks = c.levels(inp.levels)?)
            }
            b"b" | b"a" => return None,
            _ => skip_unknown(c, k)?,
        }
        if !c.next()? {
            break;
        }
    }
    (seen == 0b1111).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_digits_matches_the_byte_loop() {
        for s in ["00000000", "12345678", "99999999", "10000001", "07654321"] {
            let x = u64::from_le_bytes(s.as_bytes().try_into().expect("8 bytes"));
            assert_eq!(eight_digits(x), s.parse::<u64>().ok(), "{s}");
        }
        for s in [
            "1234567a", "/2345678", ":2345678", "1234 678", "-1234567", "1234567.",
        ] {
            let x = u64::from_le_bytes(s.as_bytes().try_into().expect("8 bytes"));
            assert_eq!(eight_digits(x), None, "{s}");
        }
    }

    /// Every trade, aggTrade, bookTicker and depth diff of the sample frames and of the real
    /// captures (2021) takes its straight decoder, and gives what the key loop gives: the
    /// straight decoders are not dead code, and Binance's layouts, old and new, are theirs.
    #[test]
    fn straight_decoders_take_every_sample_frame_of_their_kind() {
        use crate::symbol::SymbolTable;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shared = root.join("../shared/fixtures/binance");
        let files = [
            (Market::Spot, root.join("benches/data/spot.jsonl")),
            (Market::Usdm, root.join("benches/data/usdm.jsonl")),
            (Market::Spot, shared.join("spot.jsonl")),
            (Market::Usdm, shared.join("usdm.jsonl")),
            (Market::Spot, shared.join("captures/spot_2021-10-11.jsonl")),
            (Market::Usdm, shared.join("captures/usdm_2021-07-22.jsonl")),
        ];
        let table = SymbolTable::new();
        let mut seen = std::collections::BTreeMap::new();
        for (market, path) in files {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // the shared fixtures are not in every checkout
            };
            for line in text.lines() {
                let b = line.as_bytes();
                let obj = match line.find(",\"data\":{") {
                    Some(i) if line.starts_with("{\"stream\":") => i + 8,
                    _ => 0,
                };
                let Some(which) = pick(b, obj) else { continue };
                let (mut syms, mut levels) = (SymbolCache::new(table.clone()), Vec::new());
                let (mut syms2, mut levels2) = (SymbolCache::new(table.clone()), Vec::new());
                let mut inp = In {
                    market,
                    millis: true,
                    recv: 7,
                    symbols: &mut syms,
                    levels: &mut levels,
                    stream: None,
                };
                let inp2 = In {
                    market,
                    millis: true,
                    recv: 7,
                    symbols: &mut syms2,
                    levels: &mut levels2,
                    stream: None,
                };
                let (mut c, mut c2) = (Cur { b, i: obj + 1 }, Cur { b, i: obj + 1 });
                // The straight decoder and the key loop of one kind, each on its own cursor.
                macro_rules! both {
                    ($ty:ident, $straight:ident, $looped:ident) => {{
                        let (mut a, mut b2) = ($ty::default(), $ty::default());
                        let ok = $straight(&mut c, &mut inp, &mut a);
                        let ok2 = $looped(&mut c2, inp2, &mut b2);
                        (ok.map(|_| Record::$ty(a)), ok2.map(|_| Record::$ty(b2)))
                    }};
                }
                let (straight, looped) = match which {
                    Fast::Trade => both!(Trade, trade_straight, trade),
                    Fast::AggTrade => both!(AggTrade, agg_trade_straight, agg_trade),
                    Fast::BookTicker => both!(BookTicker, book_ticker_straight, book_ticker),
                    Fast::DepthUpdate => both!(DepthUpdate, depth_update_straight, depth_update),
                    _ => continue,
                };
                assert!(straight.is_some(), "{}: {line}", path.display());
                assert_eq!(straight, looped, "{line}");
                assert_eq!((c.i, &levels), (c2.i, &levels2), "{line}");
                *seen.entry(format!("{which:?}/{market:?}")).or_insert(0) += 1;
            }
        }
        // Every kind of both markets is in the repository's own bench data.
        assert_eq!(seen.len(), 8, "{seen:?}");
    }

    #[test]
    fn digits_reads_long_and_short_runs() {
        for (s, v, n) in [
            ("1700000000123,", 1_700_000_000_123u64, 13),
            ("7,", 7, 1),
            ("123456789012345678}", 123_456_789_012_345_678, 18),
            (",", 0, 0),
        ] {
            let mut c = Cur {
                b: s.as_bytes(),
                i: 0,
            };
            assert_eq!(c.digits(0), (v, n), "{s}");
        }
    }
}
