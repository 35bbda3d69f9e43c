//! Binance WebSocket frame decoder (spot and USD-M futures).
//!
//! [`Decoder::decode`] takes the bytes of one text frame, raw (`/ws/<stream>`) or combined
//! (`{"stream":..,"data":..}`), and hands each record it holds to a [`RecordSink`]; the
//! caller owns the storage. Nothing is allocated per frame once the symbol cache and the level
//! arena have warmed up (a test counts allocations). No `serde_json::Value`, no float.
//!
//! ```
//! use tickwire_codecs::binance::{Decoder, Frame};
//! use tickwire_codecs::record::{Market, Record};
//! use tickwire_codecs::symbol::SymbolTable;
//!
//! let mut dec = Decoder::new(Market::Spot, SymbolTable::new());
//! let mut out = Vec::new();
//! let frame = br#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#;
//! let got = dec.decode(frame, 0, &mut |r: &Record, _: &[_]| out.push(*r)).unwrap();
//! assert!(matches!(got, Frame::Data { records: 1 }));
//! let Record::Trade(t) = out[0] else { panic!() };
//! assert_eq!(t.price, 100_000); // 0.001 at scale 1e-8
//! ```
//!
//! Which fields each kind needs, and what a missing one means, is listed beside each
//! `decode_*` function. Fields a decoder does not know are ignored; Binance adds fields over
//! time (`BINANCE.md`).

mod fast;
mod scan;

use crate::decimal::{self, DecimalError, DpSet, Wide, DP_NULL};
use crate::record::*;
use crate::symbol::{SymbolCache, SymbolError, SymbolTable};
use scan::{letter as L, Scanner, Slots, Span, Tag};
use std::sync::Arc;

/// Receives decoded records. `levels` is the frame's level arena that depth records index.
pub trait RecordSink {
    /// One record.
    fn record(&mut self, rec: &Record, levels: &[Level]);
}

impl<F: FnMut(&Record, &[Level])> RecordSink for F {
    #[inline]
    fn record(&mut self, rec: &Record, levels: &[Level]) {
        self(rec, levels)
    }
}

/// Unit of the integer times in frames (spot accepts `timeUnit=MICROSECOND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    /// Milliseconds (Binance's default).
    #[default]
    Millis,
    /// Microseconds.
    Micros,
}

/// What a frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Market data; this many records went to the sink.
    Data {
        /// Records delivered.
        records: u32,
    },
    /// A reply or notice from the server, not market data.
    Control(Control<'a>),
    /// An event type no decoder knows (counted, not an error).
    Unknown {
        /// The `e` value, or empty when the frame had none.
        event: &'a [u8],
    },
}

/// Control frames. Ids and results are the raw JSON text of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// `{"result":..,"id":..}`: a request succeeded.
    Result {
        /// Request id, raw JSON (`1`, `"abc"`, `null`).
        id: &'a [u8],
        /// Result, raw JSON.
        result: &'a [u8],
    },
    /// `{"code":..,"msg":..,"id":..}` or `{"error":{"code":..,"msg":..},"id":..}`.
    Error {
        /// Request id, raw JSON, empty when absent.
        id: &'a [u8],
        /// Binance error code.
        code: i64,
        /// Message, as sent (JSON string content, not unescaped).
        msg: &'a [u8],
    },
    /// `serverShutdown`: the server will close this connection soon.
    ServerShutdown {
        /// Event time, µs.
        event_time: i64,
    },
}

impl Control<'_> {
    /// The request id as an integer, if it is one.
    pub fn id(&self) -> Option<i64> {
        match self {
            Control::Result { id, .. } | Control::Error { id, .. } => parse_int(id).ok(),
            Control::ServerShutdown { .. } => None,
        }
    }
}

/// Error classes, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorClass {
    /// Not JSON, or not the shape of a Binance frame.
    Syntax = 0,
    /// A required field is absent.
    MissingField = 1,
    /// A decimal that is malformed, too precise or out of range.
    Decimal = 2,
    /// A field of the wrong type or value.
    Field = 3,
    /// A symbol that is not a symbol.
    Symbol = 4,
}

impl ErrorClass {
    /// Number of classes.
    pub const COUNT: usize = 5;
    /// Every class, by code.
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::Syntax,
        ErrorClass::MissingField,
        ErrorClass::Decimal,
        ErrorClass::Field,
        ErrorClass::Symbol,
    ];
    /// Metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Syntax => "syntax",
            ErrorClass::MissingField => "missing_field",
            ErrorClass::Decimal => "decimal",
            ErrorClass::Field => "field",
            ErrorClass::Symbol => "symbol",
        }
    }
}

/// Why a frame could not be decoded: what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Broken JSON or an unexpected shape.
    #[error("invalid frame at byte {pos}: {what}")]
    Syntax {
        /// Byte offset in the frame.
        pos: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A required field is absent.
    #[error("{event}: missing field \"{field}\"")]
    MissingField {
        /// Event type.
        event: &'static str,
        /// JSON key.
        field: &'static str,
    },
    /// A decimal field was refused.
    #[error("{event}: field \"{field}\" at byte {pos}: {source}")]
    Decimal {
        /// Event type.
        event: &'static str,
        /// JSON key.
        field: &'static str,
        /// Byte offset of the value.
        pos: usize,
        /// The reason.
        #[source]
        source: DecimalError,
    },
    /// A field of the wrong type or an unknown enumeration value.
    #[error("{event}: field \"{field}\" at byte {pos}: {what}")]
    Field {
        /// Event type.
        event: &'static str,
        /// JSON key.
        field: &'static str,
        /// Byte offset of the value.
        pos: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// The symbol was refused.
    #[error("{event}: symbol at byte {pos}: {source}")]
    Symbol {
        /// Event type.
        event: &'static str,
        /// Byte offset of the value.
        pos: usize,
        /// The reason.
        #[source]
        source: SymbolError,
    },
}

impl DecodeError {
    /// The counter class.
    pub fn class(&self) -> ErrorClass {
        match self {
            DecodeError::Syntax { .. } => ErrorClass::Syntax,
            DecodeError::MissingField { .. } => ErrorClass::MissingField,
            DecodeError::Decimal { .. } => ErrorClass::Decimal,
            DecodeError::Field { .. } => ErrorClass::Field,
            DecodeError::Symbol { .. } => ErrorClass::Symbol,
        }
    }
}

impl From<scan::SyntaxError> for DecodeError {
    fn from(e: scan::SyntaxError) -> Self {
        DecodeError::Syntax {
            pos: e.pos,
            what: e.what,
        }
    }
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// Counters of one decoder. Plain fields: the owner publishes them once per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames given to the decoder.
    pub frames: u64,
    /// Records produced, by [`Kind::index`].
    pub records: [u64; Kind::COUNT],
    /// Control frames.
    pub controls: u64,
    /// Frames of an unknown event type.
    pub unknown: u64,
    /// Frames refused, by [`ErrorClass`].
    pub errors: [u64; ErrorClass::COUNT],
}

impl DecodeStats {
    /// All errors.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }
    /// All records.
    pub fn total_records(&self) -> u64 {
        self.records.iter().sum()
    }
}

struct Ctx {
    market: Market,
    time_unit: TimeUnit,
    symbols: SymbolCache,
    levels: Vec<Level>,
    stats: DecodeStats,
}

/// Decodes Binance frames of one market into records.
pub struct Decoder {
    ctx: Ctx,
    fast: bool,
    /// The record the fast path fills in place.
    rec: Record,
    top: Slots,
    inner: Slots,
    nested: Slots,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("market", &self.ctx.market)
            .field("stats", &self.ctx.stats)
            .finish()
    }
}

impl Decoder {
    /// A decoder for `market`, interning symbols into `symbols`.
    pub fn new(market: Market, symbols: Arc<SymbolTable>) -> Self {
        Decoder {
            ctx: Ctx {
                market,
                time_unit: TimeUnit::Millis,
                symbols: SymbolCache::new(symbols),
                levels: Vec::with_capacity(1024),
                stats: DecodeStats::default(),
            },
            fast: true,
            rec: Record::Gap(Gap::default()),
            top: Slots::default(),
            inner: Slots::default(),
            nested: Slots::default(),
        }
    }

    /// Sets the unit of the frames' integer times.
    pub fn with_time_unit(mut self, unit: TimeUnit) -> Self {
        self.ctx.time_unit = unit;
        self
    }

    /// Turns the fused fast path for the high-volume kinds on (the default) or off. Results are
    /// the same either way (a test holds them equal); only speed differs.
    pub fn with_fast_path(mut self, on: bool) -> Self {
        self.fast = on;
        self
    }

    /// The market this decoder reads.
    pub fn market(&self) -> Market {
        self.ctx.market
    }

    /// The shared symbol table.
    pub fn symbols(&self) -> &Arc<SymbolTable> {
        self.ctx.symbols.table()
    }

    /// Counters so far.
    pub fn stats(&self) -> &DecodeStats {
        &self.ctx.stats
    }

    /// Decodes one frame. `recv_time` (ns) is stamped on every record.
    #[inline]
    pub fn decode<'f, S: RecordSink>(
        &mut self,
        frame: &'f [u8],
        recv_time: i64,
        sink: &mut S,
    ) -> Result<Frame<'f>> {
        self.decode_stream(frame, None, recv_time, sink)
    }

    /// Decodes one frame of a raw connection whose stream name is known (`btcusdt@depth5`):
    /// the name supplies what raw partial-depth frames lack. A combined frame's own `stream`
    /// takes precedence.
    pub fn decode_stream<'f, S: RecordSink>(
        &mut self,
        frame: &'f [u8],
        stream: Option<&'f [u8]>,
        recv_time: i64,
        sink: &mut S,
    ) -> Result<Frame<'f>> {
        self.ctx.stats.frames += 1;
        self.ctx.levels.clear();
        let r = self.frame(frame, stream, recv_time, sink);
        match &r {
            Ok(Frame::Data { .. }) => {}
            Ok(Frame::Control(_)) => self.ctx.stats.controls += 1,
            Ok(Frame::Unknown { .. }) => self.ctx.stats.unknown += 1,
            Err(e) => self.ctx.stats.errors[e.class() as usize] += 1,
        }
        r
    }

    fn frame<'f, S: RecordSink>(
        &mut self,
        b: &'f [u8],
        stream: Option<&'f [u8]>,
        recv: i64,
        sink: &mut S,
    ) -> Result<Frame<'f>> {
        // Where the event object starts: at 0, or inside the combined wrapper as Binance writes
        // it (`{"stream":"..","data":{..}}`), so that `data` is scanned once, in place.
        const HEAD: &[u8] = b"{\"stream\":\"";
        let mut obj = 0usize;
        let mut wrapped = false;
        let mut stream = stream;
        if b.starts_with(HEAD) {
            if let Some(q) = b[HEAD.len()..].iter().position(|&c| c == b'"') {
                let rest = HEAD.len() + q + 1;
                if b[rest..].starts_with(b",\"data\":{") {
                    obj = rest + 8;
                    wrapped = true;
                    stream = Some(&b[HEAD.len()..HEAD.len() + q]);
                }
            }
        }
        if self.fast {
            if let Some(mut which) = fast::pick(b, obj) {
                if which == fast::Fast::DepthUpdate && stream.is_some_and(is_partial_depth) {
                    which = fast::Fast::PartialDepth;
                }
                let mark = self.ctx.levels.len();
                let mut cur = fast::Cur { b, i: obj };
                let inp = fast::In {
                    market: self.ctx.market,
                    millis: self.ctx.time_unit == TimeUnit::Millis,
                    recv,
                    symbols: &mut self.ctx.symbols,
                    levels: &mut self.ctx.levels,
                    stream,
                };
                if fast::decode(which, &mut cur, inp, &mut self.rec).is_some() {
                    let mut sc = Scanner { b, i: cur.i };
                    if (!wrapped || sc.expect(b'}', "").is_ok()) && sc.end().is_ok() {
                        self.ctx.stats.records[self.rec.kind().index()] += 1;
                        sink.record(&self.rec, &self.ctx.levels);
                        return Ok(Frame::Data { records: 1 });
                    }
                }
                self.ctx.levels.truncate(mark);
            }
        }
        if wrapped {
            let mut sc = Scanner { b, i: obj };
            sc.object(&mut self.inner)?;
            sc.expect(b'}', "expected '}' after \"data\"")?;
            sc.end()?;
            return event(
                &mut self.ctx,
                &self.inner,
                &mut self.nested,
                b,
                stream,
                recv,
                sink,
            );
        }
        let mut sc = Scanner::new(b);
        if sc.peek() == Some(b'[') {
            let r = array(
                &mut self.ctx,
                &mut self.inner,
                &mut self.nested,
                &mut sc,
                stream,
                recv,
                sink,
            )?;
            sc.end()?;
            return Ok(r);
        }
        sc.object(&mut self.top)?;
        sc.end()?;
        let top = &self.top;
        if let Some(data) = top.get(scan::S_DATA) {
            let stream = match top.get(scan::S_STREAM) {
                Some(s) if s.tag == Tag::Str => Some(&b[s.start as usize..s.end as usize]),
                _ => stream,
            };
            let mut sc = Scanner {
                b,
                i: data.start as usize,
            };
            return match data.tag {
                Tag::Obj => {
                    sc.object(&mut self.inner)?;
                    event(
                        &mut self.ctx,
                        &self.inner,
                        &mut self.nested,
                        b,
                        stream,
                        recv,
                        sink,
                    )
                }
                Tag::Arr => array(
                    &mut self.ctx,
                    &mut self.inner,
                    &mut self.nested,
                    &mut sc,
                    stream,
                    recv,
                    sink,
                ),
                _ => Err(DecodeError::Syntax {
                    pos: data.start as usize,
                    what: "\"data\" is not an object",
                }),
            };
        }
        if !top.has(L(b'e')) {
            if let Some(c) = control(top, b)? {
                return Ok(Frame::Control(c));
            }
        }
        event(&mut self.ctx, top, &mut self.nested, b, stream, recv, sink)
    }
}

fn array<'f, S: RecordSink>(
    ctx: &mut Ctx,
    inner: &mut Slots,
    nested: &mut Slots,
    sc: &mut Scanner<'f>,
    stream: Option<&'f [u8]>,
    recv: i64,
    sink: &mut S,
) -> Result<Frame<'f>> {
    sc.expect(b'[', "expected '['")?;
    let mut records = 0;
    if sc.peek() == Some(b']') {
        sc.i += 1;
        return Ok(Frame::Data { records });
    }
    loop {
        sc.object(inner)?;
        match event(ctx, inner, nested, sc.b, stream, recv, sink)? {
            Frame::Data { records: n } => records += n,
            other => return Ok(other),
        }
        match sc.peek() {
            Some(b',') => sc.i += 1,
            Some(b']') => {
                sc.i += 1;
                return Ok(Frame::Data { records });
            }
            _ => {
                return Err(DecodeError::Syntax {
                    pos: sc.i,
                    what: "expected ',' or ']'",
                })
            }
        }
    }
}

fn control<'f>(top: &Slots, b: &'f [u8]) -> Result<Option<Control<'f>>> {
    let raw = |s: Span| -> &'f [u8] {
        match s.tag {
            // Strings: give back the quoted JSON text so ids stay raw JSON.
            Tag::Str | Tag::StrEscaped => &b[s.start as usize - 1..s.end as usize + 1],
            _ => &b[s.start as usize..s.end as usize],
        }
    };
    let id = top.get(scan::S_ID).map(raw).unwrap_or(b"");
    if let Some(r) = top.get(scan::S_RESULT) {
        return Ok(Some(Control::Result { id, result: raw(r) }));
    }
    let err_obj;
    let slots = if let Some(e) = top.get(scan::S_ERROR) {
        if e.tag != Tag::Obj {
            return Err(DecodeError::Field {
                event: "error",
                field: "error",
                pos: e.start as usize,
                what: "not an object",
            });
        }
        let mut s = Slots::default();
        Scanner {
            b,
            i: e.start as usize,
        }
        .object(&mut s)?;
        err_obj = s;
        &err_obj
    } else {
        top
    };
    if let Some(c) = slots.get(scan::S_CODE) {
        let o = Obj {
            b,
            s: slots,
            event: "error",
        };
        let code = o.int_span(c, "code")?;
        let msg = slots
            .get(scan::S_MSG)
            .map(|m| &b[m.start as usize..m.end as usize])
            .unwrap_or(b"");
        return Ok(Some(Control::Error { id, code, msg }));
    }
    Ok(None)
}

/// Decodes one event object.
fn event<'f, S: RecordSink>(
    ctx: &mut Ctx,
    s: &Slots,
    nested: &mut Slots,
    b: &'f [u8],
    stream: Option<&'f [u8]>,
    recv: i64,
    sink: &mut S,
) -> Result<Frame<'f>> {
    let o = Obj {
        b,
        s,
        event: "event",
    };
    let rec = match s.get(L(b'e')) {
        Some(e) if e.tag == Tag::Str => {
            let name = &b[e.start as usize..e.end as usize];
            match name {
                b"trade" => decode_trade(ctx, o.named("trade"), recv)?,
                b"aggTrade" => decode_agg_trade(ctx, o.named("aggTrade"), recv)?,
                b"bookTicker" => decode_book_ticker(ctx, o.named("bookTicker"), recv)?,
                b"depthUpdate" => {
                    if stream.is_some_and(is_partial_depth) {
                        decode_depth_snapshot(ctx, o.named("depthUpdate"), stream, recv)?
                    } else {
                        decode_depth_update(ctx, o.named("depthUpdate"), recv)?
                    }
                }
                b"kline" | b"continuous_kline" => {
                    decode_kline(ctx, o.named("kline"), nested, recv)?
                }
                b"markPriceUpdate" => decode_mark_price(ctx, o.named("markPriceUpdate"), recv)?,
                b"forceOrder" => decode_liquidation(ctx, o.named("forceOrder"), nested, recv)?,
                b"24hrTicker" => decode_ticker(ctx, o.named("24hrTicker"), recv)?,
                b"serverShutdown" => {
                    let o = o.named("serverShutdown");
                    let event_time = o.opt_time(ctx, L(b'E'), "E")?.unwrap_or(NULL_I64);
                    return Ok(Frame::Control(Control::ServerShutdown { event_time }));
                }
                _ => return Ok(Frame::Unknown { event: name }),
            }
        }
        Some(e) => {
            return Err(DecodeError::Field {
                event: "event",
                field: "e",
                pos: e.start as usize,
                what: "not a string",
            })
        }
        None if s.has(scan::S_LAST_UPDATE_ID) => {
            decode_depth_snapshot(ctx, o.named("depth"), stream, recv)?
        }
        None if s.has(L(b'u')) && s.has(L(b'b')) && s.has(L(b'a')) => {
            decode_book_ticker(ctx, o.named("bookTicker"), recv)?
        }
        None => return Ok(Frame::Unknown { event: b"" }),
    };
    ctx.stats.records[rec.kind().index()] += 1;
    sink.record(&rec, &ctx.levels);
    Ok(Frame::Data { records: 1 })
}

/// `btcusdt@depth5`, `btcusdt@depth20@100ms`: a partial (top-N) depth stream.
fn is_partial_depth(stream: &[u8]) -> bool {
    match memchr::memmem::find(stream, b"@depth") {
        Some(i) => stream.get(i + 6).is_some_and(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// Accessors over one scanned object. `event` names it in errors.
#[derive(Clone, Copy)]
struct Obj<'a> {
    b: &'a [u8],
    s: &'a Slots,
    event: &'static str,
}

fn parse_int(t: &[u8]) -> std::result::Result<i64, &'static str> {
    let (neg, d) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
        return Err("not an integer");
    }
    let mut v: u64 = 0;
    for &c in d {
        v = v * 10 + u64::from(c - b'0');
    }
    if neg {
        0i64.checked_sub_unsigned(v).ok_or("integer out of range")
    } else {
        i64::try_from(v).map_err(|_| "integer out of range")
    }
}

impl<'a> Obj<'a> {
    fn named(self, event: &'static str) -> Self {
        Obj { event, ..self }
    }

    #[inline(always)]
    fn text(&self, s: Span) -> &'a [u8] {
        &self.b[s.start as usize..s.end as usize]
    }

    #[inline(always)]
    fn req(&self, slot: usize, key: &'static str) -> Result<Span> {
        self.s.get(slot).ok_or(DecodeError::MissingField {
            event: self.event,
            field: key,
        })
    }

    fn field_err(&self, s: Span, key: &'static str, what: &'static str) -> DecodeError {
        DecodeError::Field {
            event: self.event,
            field: key,
            pos: s.start as usize,
            what,
        }
    }

    #[inline(always)]
    fn int_span(&self, s: Span, key: &'static str) -> Result<i64> {
        if s.tag != Tag::Num {
            return Err(self.field_err(s, key, "not an integer"));
        }
        parse_int(self.text(s)).map_err(|w| self.field_err(s, key, w))
    }

    #[inline(always)]
    fn int(&self, slot: usize, key: &'static str) -> Result<i64> {
        self.int_span(self.req(slot, key)?, key)
    }

    fn opt_int(&self, slot: usize, key: &'static str) -> Result<i64> {
        match self.s.get(slot) {
            None => Ok(NULL_I64),
            Some(s) if s.tag == Tag::Null => Ok(NULL_I64),
            Some(s) => self.int_span(s, key),
        }
    }

    #[inline(always)]
    fn micros(&self, ctx: &Ctx, s: Span, key: &'static str, v: i64) -> Result<i64> {
        match ctx.time_unit {
            TimeUnit::Micros => Ok(v),
            TimeUnit::Millis => v
                .checked_mul(1000)
                .ok_or_else(|| self.field_err(s, key, "time out of range")),
        }
    }

    #[inline(always)]
    fn time(&self, ctx: &Ctx, slot: usize, key: &'static str) -> Result<i64> {
        let s = self.req(slot, key)?;
        let v = self.int_span(s, key)?;
        self.micros(ctx, s, key, v)
    }

    fn opt_time(&self, ctx: &Ctx, slot: usize, key: &'static str) -> Result<Option<i64>> {
        match self.s.get(slot) {
            None => Ok(None),
            Some(s) if s.tag == Tag::Null => Ok(None),
            Some(s) => {
                let v = self.int_span(s, key)?;
                self.micros(ctx, s, key, v).map(Some)
            }
        }
    }

    #[inline(always)]
    fn dec_text(&self, s: Span, key: &'static str) -> Result<&'a [u8]> {
        match s.tag {
            Tag::Str | Tag::Num => Ok(self.text(s)),
            _ => Err(self.field_err(s, key, "not a decimal string")),
        }
    }

    fn dec_err(&self, s: Span, key: &'static str, e: DecimalError) -> DecodeError {
        DecodeError::Decimal {
            event: self.event,
            field: key,
            pos: s.start as usize,
            source: e,
        }
    }

    /// A required price into `dst`, its places into `dp[i]`.
    #[inline(always)]
    fn price(&self, slot: usize, key: &'static str, dp: &mut DpSet, i: usize) -> Result<i64> {
        let s = self.req(slot, key)?;
        let p = decimal::parse_i64(self.dec_text(s, key)?).map_err(|e| self.dec_err(s, key, e))?;
        dp.set(i, p.dp);
        Ok(p.raw)
    }

    /// A required quantity.
    #[inline(always)]
    fn qty(&self, slot: usize, key: &'static str, dp: &mut DpSet, i: usize) -> Result<Wide> {
        let s = self.req(slot, key)?;
        let p = decimal::parse_i128(self.dec_text(s, key)?).map_err(|e| self.dec_err(s, key, e))?;
        dp.set(i, p.dp);
        Ok(Wide::new(p.raw))
    }

    /// An optional price: absent, `null` or `""` is null.
    fn opt_price(&self, slot: usize, key: &'static str, dp: &mut DpSet, i: usize) -> Result<i64> {
        match self.s.get(slot) {
            Some(s) if !(s.tag == Tag::Null || (s.tag == Tag::Str && s.start == s.end)) => {
                self.price(slot, key, dp, i)
            }
            _ => {
                dp.set(i, DP_NULL);
                Ok(0)
            }
        }
    }

    /// An optional quantity: absent, `null` or `""` is null.
    fn opt_qty(&self, slot: usize, key: &'static str, dp: &mut DpSet, i: usize) -> Result<Wide> {
        match self.s.get(slot) {
            Some(s) if !(s.tag == Tag::Null || (s.tag == Tag::Str && s.start == s.end)) => {
                self.qty(slot, key, dp, i)
            }
            _ => {
                dp.set(i, DP_NULL);
                Ok(Wide::default())
            }
        }
    }

    #[inline(always)]
    fn boolean(&self, slot: usize, key: &'static str) -> Result<u8> {
        let s = self.req(slot, key)?;
        match s.tag {
            Tag::True => Ok(1),
            Tag::False => Ok(0),
            _ => Err(self.field_err(s, key, "not a boolean")),
        }
    }

    #[inline(always)]
    fn string(&self, slot: usize, key: &'static str) -> Result<(&'a [u8], Span)> {
        let s = self.req(slot, key)?;
        if s.tag != Tag::Str {
            return Err(self.field_err(s, key, "not a plain string"));
        }
        Ok((self.text(s), s))
    }

    fn code<T>(&self, slot: usize, key: &'static str, f: fn(&[u8]) -> Option<T>) -> Result<T> {
        let (t, s) = self.string(slot, key)?;
        f(t).ok_or_else(|| self.field_err(s, key, "unknown value"))
    }

    #[inline(always)]
    fn symbol(&self, ctx: &mut Ctx, slot: usize, key: &'static str) -> Result<SymbolId> {
        let (t, s) = self.string(slot, key)?;
        ctx.symbols.intern(t).map_err(|e| DecodeError::Symbol {
            event: self.event,
            pos: s.start as usize,
            source: e,
        })
    }

    fn header(&self, ctx: &mut Ctx, kind: Kind, symbol: SymbolId, recv: i64) -> Result<Header> {
        let et = self.opt_time(ctx, L(b'E'), "E")?.unwrap_or(NULL_I64);
        Ok(Header::new(kind, ctx.market, symbol, et, recv))
    }

    /// Parses `[["price","qty"],...]` into the arena; returns the count.
    fn levels(&self, ctx: &mut Ctx, slot: usize, key: &'static str) -> Result<u32> {
        let s = self.req(slot, key)?;
        if s.tag != Tag::Arr {
            return Err(self.field_err(s, key, "not an array"));
        }
        let mut sc = Scanner {
            b: &self.b[..s.end as usize],
            i: s.start as usize + 1,
        };
        let mut n = 0u32;
        if sc.peek() == Some(b']') {
            return Ok(0);
        }
        loop {
            sc.expect(b'[', "expected a [price, qty] level")?;
            let p = sc.value()?;
            sc.expect(b',', "expected ',' in a level")?;
            let q = sc.value()?;
            sc.expect(b']', "expected ']' after a level")?;
            let price =
                decimal::parse_i64(self.dec_text(p, key)?).map_err(|e| self.dec_err(p, key, e))?;
            let qty =
                decimal::parse_i128(self.dec_text(q, key)?).map_err(|e| self.dec_err(q, key, e))?;
            ctx.levels.push(Level {
                price: price.raw,
                qty: Wide::new(qty.raw),
                price_dp: price.dp,
                qty_dp: qty.dp,
                pad: [0; 6],
            });
            n += 1;
            match sc.peek() {
                Some(b',') => sc.i += 1,
                Some(b']') => return Ok(n),
                _ => {
                    return Err(DecodeError::Syntax {
                        pos: sc.i,
                        what: "expected ',' or ']' in levels",
                    })
                }
            }
        }
    }

    fn level_range(
        &self,
        ctx: &mut Ctx,
        bids: usize,
        bk: &'static str,
        asks: usize,
        ak: &'static str,
    ) -> Result<LevelRange> {
        let start = ctx.levels.len() as u32;
        let bids = self.levels(ctx, bids, bk)?;
        let asks = self.levels(ctx, asks, ak)?;
        Ok(LevelRange {
            start,
            bids,
            asks,
            pad: 0,
        })
    }

    fn nested(&self, slot: usize, key: &'static str, into: &'a mut Slots) -> Result<Obj<'a>> {
        let s = self.req(slot, key)?;
        if s.tag != Tag::Obj {
            return Err(self.field_err(s, key, "not an object"));
        }
        Scanner {
            b: self.b,
            i: s.start as usize,
        }
        .object(into)?;
        Ok(Obj {
            b: self.b,
            s: into,
            event: self.event,
        })
    }
}

/// trade: `s,t,p,q,T,m` required; `E` optional.
fn decode_trade(ctx: &mut Ctx, o: Obj<'_>, recv: i64) -> Result<Record> {
    let sym = o.symbol(ctx, L(b's'), "s")?;
    let mut dp = DpSet::ALL_NULL;
    Ok(Record::Trade(Trade {
        header: o.header(ctx, Kind::Trade, sym, recv)?,
        trade_id: o.int(L(b't'), "t")?,
        price: o.price(L(b'p'), "p", &mut dp, 0)?,
        qty: o.qty(L(b'q'), "q", &mut dp, 1)?,
        trade_time: o.time(ctx, L(b'T'), "T")?,
        is_buyer_maker: o.boolean(L(b'm'), "m")?,
        dp,
        pad: [0; 7],
    }))
}

/// aggTrade: `s,a,p,q,f,l,T,m` required.
fn decode_agg_trade(ctx: &mut Ctx, o: Obj<'_>, recv: i64) -> Result<Record> {
    let sym = o.symbol(ctx, L(b's'), "s")?;
    let mut dp = DpSet::ALL_NULL;
    Ok(Record::AggTrade(AggTrade {
        header: o.header(ctx, Kind::AggTrade, sym, recv)?,
        agg_trade_id: o.int(L(b'a'), "a")?,
        first_trade_id: o.int(L(b'f'), "f")?,
        last_trade_id: o.int(L(b'l'), "l")?,
        price: o.price(L(b'p'), "p", &mut dp, 0)?,
        qty: o.qty(L(b'q'), "q", &mut dp, 1)?,
        trade_time: o.time(ctx, L(b'T'), "T")?,
        is_buyer_maker: o.boolean(L(b'm'), "m")?,
        dp,
        pad: [0; 7],
    }))
}

/// bookTicker: `s,u,b,B,a,A` required; `E`,`T` on futures only.
fn decode_book_ticker(ctx: &mut Ctx, o: Obj<'_>, recv: i64) -> Result<Record> {
    let sym = o.symbol(ctx, L(b's'), "s")?;
    let mut dp = DpSet::ALL_NULL;
    Ok(Record::BookTicker(BookTicker {
        header: o.header(ctx, Kind::BookTicker, sym, recv)?,
        update_id: o.int(L(b'u'), "u")?,
        bid_price: o.price(L(b'b'), "b", &mut dp, 0)?,
        bid_qty: o.qty(L(b'B'), "B", &mut dp, 1)?,
        ask_price: o.price(L(b'a'), "a", &mut dp, 2)?,
        ask_qty: o.qty(L(b'A'), "A", &mut dp, 3)?,
        transaction_time: o.opt_time(ctx, L(b'T'), "T")?.unwrap_or(NULL_I64),
        dp,
    }))
}

/// depthUpdate: `s,U,u,b,a` required; `pu`,`T` on futures only.
fn decode_depth_update(ctx: &mut Ctx, o: Obj<'_>, recv: i64) -> Result<Record> {
    let sym = o.symbol(ctx, L(b's'), "s")?;
    Ok(Record::DepthUpdate(DepthUpdate {
        header: o.header(ctx, Kind::DepthUpdate, sym, recv)?,
        first_update_id: o.int(L(b'U'), "U")?,
        final_update_id: o.int(L(b'u'), "u")?,
        prev_final_update_id: o.opt_int(scan::S_PU, "pu")?,
        transaction_time: o.opt_time(ctx, L(b'T'), "T")?.unwrap_or(NULL_I64),
        levels: o.level_range(ctx, L(b'b'), "b", L(b'a'), "a")?,
    }))
}

/// Partial depth. Spot: `lastUpdateId,bids,asks`, symbol from the stream name. Futures: the
/// depthUpdate shape (`s`, `u` as the last update id, `b`, `a`).
fn decode_depth_snapshot(
    ctx: &mut Ctx,
    o: Obj<'_>,
    stream: Option<&[u8]>,
    recv: i64,
) -> Result<Record> {
    if o.s.has(scan::S_LAST_UPDATE_ID) {
        let name = stream.and_then(|s| s.split(|&c| c == b'@').next()).ok_or(
            DecodeError::MissingField {
                event: "depth",
                field: "stream",
            },
        )?;
        let sym = ctx
            .symbols
            .intern_lower(name)
            .map_err(|e| DecodeError::Symbol {
                event: "depth",
                pos: 0,
                source: e,
            })?;
        Ok(Record::DepthSnapshot(DepthSnapshot {
            header: o.header(ctx, Kind::DepthSnapshot, sym, recv)?,
            last_update_id: o.int(scan::S_LAST_UPDATE_ID, "lastUpdateId")?,
            levels: o.level_range(ctx, scan::S_BIDS, "bids", scan::S_ASKS, "asks")?,
        }))
    } else {
        let sym = o.symbol(ctx, L(b's'), "s")?;
        Ok(Record::DepthSnapshot(DepthSnapshot {
            header: o.header(ctx, Kind::DepthSnapshot, sym, recv)?,
            last_update_id: o.int(L(b'u'), "u")?,
            levels: o.level_range(ctx, L(b'b'), "b", L(b'a'), "a")?,
        }))
    }
}

/// kline: `s`, and in `k`: `t,T,i,f,L,o,c,h,l,v,n,x,q,V,Q`.
fn decode_kline(ctx: &mut Ctx, o: Obj<'_>, nested: &mut Slots, recv: i64) -> Result<Record> {
    let sym = match o.s.has(L(b's')) {
        true => o.symbol(ctx, L(b's'), "s")?,
        // continuous_kline carries the pair as `ps`, which we do not slot; require `s`.
        false => {
            return Err(DecodeError::MissingField {
                event: o.event,
                field: "s",
            })
        }
    };
    let header = o.header(ctx, Kind::Kline, sym, recv)?;
    let k = o.nested(L(b'k'), "k", nested)?;
    let mut dp = DpSet::ALL_NULL;
    Ok(Record::Kline(Kline {
        header,
        open_time: k.time(ctx, L(b't'), "t")?,
        close_time: k.time(ctx, L(b'T'), "T")?,
        first_trade_id: k.int(L(b'f'), "f")?,
        last_trade_id: k.int(L(b'L'), "L")?,
        trade_count: k.int(L(b'n'), "n")?,
        open: k.price(L(b'o'), "o", &mut dp, 0)?,
        high: k.price(L(b'h'), "h", &mut dp, 1)?,
        low: k.price(L(b'l'), "l", &mut dp, 2)?,
        close: k.price(L(b'c'), "c", &mut dp, 3)?,
        volume: k.qty(L(b'v'), "v", &mut dp, 4)?,
        quote_volume: k.qty(L(b'q'), "q", &mut dp, 5)?,
        taker_buy_base_volume: k.qty(L(b'V'), "V", &mut dp, 6)?,
        taker_buy_quote_volume: k.qty(L(b'Q'), "Q", &mut dp, 7)?,
        dp,
        interval: k.code(L(b'i'), "i", Interval::from_bytes)? as u8,
        is_closed: k.boolean(L(b'x'), "x")?,
        pad: [0; 6],
    }))
}

/// markPriceUpdate: `s,p` required; `i,P,r,T` optional (old frames, delivery contracts send
/// `r:""`).
fn decode_mark_price(ctx: &mut Ctx, o: Obj<'_>, recv: i64) -> Result<Record> {
    let sym = o.symbol(ctx, L(b's'), "s")?;
    let mut dp = DpSet::ALL_NULL;
    Ok(Record::MarkPrice(MarkPrice {
        header: o.header(ctx, Kind::MarkPrice, sym, recv)?,
        mark_price: o.price(L(b'p'), "p", &mut dp, 0)?,
        index_price: o.opt_price(L(b'i'), "i", &mut dp, 1)?,
        estimated_settle_price: o.opt_price(L(b'P'), "P", &mut dp, 2)?,
        funding_rate: o.opt_price(L(b'r'), "r", &mut dp, 3)?,
        next_funding_time: o.opt_time(ctx, L(b'T'), "T")?.unwrap_or(NULL_I64),
        dp,
    }))
}

/// forceOrder: in `o`: `s,S,o,f,q,p,ap,X,l,z,T`.
fn decode_liquidation(
    ctx: &mut Ctx,
    outer: Obj<'_>,
    nested: &mut Slots,
    recv: i64,
) -> Result<Record> {
    let et = outer.opt_time(ctx, L(b'E'), "E")?.unwrap_or(NULL_I64);
    let o = outer.nested(L(b'o'), "o", nested)?;
    let sym = o.symbol(ctx, L(b's'), "s")?;
    let mut dp = DpSet::ALL_NULL;
    Ok(Record::Liquidation(Liquidation {
        header: Header::new(Kind::Liquidation, ctx.market, sym, et, recv),
        orig_qty: o.qty(L(b'q'), "q", &mut dp, 0)?,
        price: o.price(L(b'p'), "p", &mut dp, 1)?,
        avg_price: o.opt_price(scan::S_AP, "ap", &mut dp, 2)?,
        last_filled_qty: o.opt_qty(L(b'l'), "l", &mut dp, 3)?,
        filled_qty: o.opt_qty(L(b'z'), "z", &mut dp, 4)?,
        trade_time: o.time(ctx, L(b'T'), "T")?,
        dp,
        side: o.code(L(b'S'), "S", Side::from_bytes)? as u8,
        order_type: o.code(L(b'o'), "o", OrderType::from_bytes)? as u8,
        time_in_force: o.code(L(b'f'), "f", TimeInForce::from_bytes)? as u8,
        order_status: o.code(L(b'X'), "X", OrderStatus::from_bytes)? as u8,
        pad: [0; 4],
    }))
}

/// 24hrTicker: `s,p,P,w,c,Q,o,h,l,v,q,O,C,F,L,n` required; `b,B,a,A` absent on futures.
fn decode_ticker(ctx: &mut Ctx, o: Obj<'_>, recv: i64) -> Result<Record> {
    let sym = o.symbol(ctx, L(b's'), "s")?;
    let mut dp = DpSet::ALL_NULL;
    Ok(Record::Ticker(Ticker {
        header: o.header(ctx, Kind::Ticker, sym, recv)?,
        price_change: o.price(L(b'p'), "p", &mut dp, 0)?,
        price_change_percent: o.price(L(b'P'), "P", &mut dp, 1)?,
        weighted_avg_price: o.price(L(b'w'), "w", &mut dp, 2)?,
        last_price: o.price(L(b'c'), "c", &mut dp, 3)?,
        last_qty: o.qty(L(b'Q'), "Q", &mut dp, 4)?,
        best_bid_price: o.opt_price(L(b'b'), "b", &mut dp, 5)?,
        best_bid_qty: o.opt_qty(L(b'B'), "B", &mut dp, 6)?,
        best_ask_price: o.opt_price(L(b'a'), "a", &mut dp, 7)?,
        best_ask_qty: o.opt_qty(L(b'A'), "A", &mut dp, 8)?,
        open_price: o.price(L(b'o'), "o", &mut dp, 9)?,
        high_price: o.price(L(b'h'), "h", &mut dp, 10)?,
        low_price: o.price(L(b'l'), "l", &mut dp, 11)?,
        volume: o.qty(L(b'v'), "v", &mut dp, 12)?,
        quote_volume: o.qty(L(b'q'), "q", &mut dp, 13)?,
        open_time: o.time(ctx, L(b'O'), "O")?,
        close_time: o.time(ctx, L(b'C'), "C")?,
        first_trade_id: o.int(L(b'F'), "F")?,
        last_trade_id: o.int(L(b'L'), "L")?,
        trade_count: o.int(L(b'n'), "n")?,
        dp,
    }))
}

#[cfg(test)]
mod tests;
