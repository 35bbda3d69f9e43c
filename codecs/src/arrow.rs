//! Arrow schemas and columnar builders for every record kind, defined once.
//!
//! [`columns`] lists each kind's columns (names as in `tickwire decode`) with how to read them
//! from a [`Record`]; [`schema`] and [`BatchBuilder`] are both derived from that table, so the
//! schema and the data cannot disagree. Types:
//!
//! | values | Arrow type |
//! |---|---|
//! | prices, rates | `Decimal128(18, 8)` (the `i64` raw value, exact) |
//! | quantities, volumes | `Decimal128(38, 8)` (the `i128` raw value, exact) |
//! | exchange times | `Timestamp(Microsecond, "UTC")`, `recv_time` `Timestamp(Nanosecond, "UTC")` |
//! | ids, counts | `Int64` |
//! | symbol | `Dictionary(Int32, Utf8)`; exchange, market `Dictionary(Int8, Utf8)` |
//! | enum texts (interval, side, ...) | `Utf8` |
//! | bids, asks | `List<Struct<price: Decimal128(18,8), qty: Decimal128(38,8)>>` |
//!
//! Absent values (null time or id, null decimal) are Arrow nulls. The number of decimal places
//! Binance wrote is not stored: the value is exact, its text form canonical at scale 8.

use crate::record::*;
use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    TimestampNanosecondBuilder,
};
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{ArrayRef, Decimal128Array, ListArray, RecordBatch, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, OnceLock};

/// Type of price columns.
pub const PRICE_TYPE: DataType = DataType::Decimal128(18, 8);
/// Type of quantity columns.
pub const QTY_TYPE: DataType = DataType::Decimal128(38, 8);

/// How a column reads a record. Functions return the kind's value, or a null for any other
/// kind (never reached: a builder only takes its own kind).
#[derive(Clone, Copy)]
pub enum Col {
    /// `Int64`, [`NULL_I64`] is null.
    Int(fn(&Record) -> i64),
    /// Exchange time in µs, [`NULL_I64`] is null.
    Time(fn(&Record) -> i64),
    /// Price raw value and its decimal places (`None`: null).
    Price(fn(&Record) -> (i64, Option<u8>)),
    /// Quantity raw value and its decimal places (`None`: null).
    Qty(fn(&Record) -> (i128, Option<u8>)),
    /// Boolean.
    Bool(fn(&Record) -> bool),
    /// Enumeration text.
    Text(for<'a> fn(&'a Record) -> Option<&'a str>),
    /// The bid levels of a depth record.
    Bids,
    /// The ask levels of a depth record.
    Asks,
}

impl std::fmt::Debug for Col {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Col::Int(_) => "Int",
            Col::Time(_) => "Time",
            Col::Price(_) => "Price",
            Col::Qty(_) => "Qty",
            Col::Bool(_) => "Bool",
            Col::Text(_) => "Text",
            Col::Bids => "Bids",
            Col::Asks => "Asks",
        })
    }
}

/// One column of a kind.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    /// Column name.
    pub name: &'static str,
    /// How to read it.
    pub col: Col,
    /// Whether the stream may lack it (a null). Columns every frame of the kind carries are
    /// not nullable; a decoder refuses a frame without them.
    pub nullable: bool,
}

/// Marks a column nullable.
const fn null(mut c: ColumnDef) -> ColumnDef {
    c.nullable = true;
    c
}

/// The columns every table starts with.
pub const COMMON_COLUMNS: [&str; 5] = ["exchange", "market", "symbol", "event_time", "recv_time"];

macro_rules! c {
    ($name:literal, int, $v:ident . $f:ident) => {
        ColumnDef {
            nullable: false,
            name: $name,
            col: Col::Int(|r| {
                if let Record::$v(x) = r {
                    x.$f
                } else {
                    NULL_I64
                }
            }),
        }
    };
    ($name:literal, time, $v:ident . $f:ident) => {
        ColumnDef {
            nullable: false,
            name: $name,
            col: Col::Time(|r| {
                if let Record::$v(x) = r {
                    x.$f
                } else {
                    NULL_I64
                }
            }),
        }
    };
    ($name:literal, px, $v:ident . $f:ident, $i:literal) => {
        ColumnDef {
            nullable: false,
            name: $name,
            col: Col::Price(|r| {
                if let Record::$v(x) = r {
                    (x.$f, x.dp.get($i))
                } else {
                    (0, None)
                }
            }),
        }
    };
    ($name:literal, qty, $v:ident . $f:ident, $i:literal) => {
        ColumnDef {
            nullable: false,
            name: $name,
            col: Col::Qty(|r| {
                if let Record::$v(x) = r {
                    (x.$f.get(), x.dp.get($i))
                } else {
                    (0, None)
                }
            }),
        }
    };
    ($name:literal, bool, $v:ident . $f:ident) => {
        ColumnDef {
            nullable: false,
            name: $name,
            col: Col::Bool(|r| {
                if let Record::$v(x) = r {
                    x.$f != 0
                } else {
                    false
                }
            }),
        }
    };
    ($name:literal, str, $v:ident . $f:ident) => {
        ColumnDef {
            nullable: false,
            name: $name,
            col: Col::Text(|r| {
                if let Record::$v(x) = r {
                    x.$f.get()
                } else {
                    None
                }
            }),
        }
    };
    ($name:literal, text, $v:ident . $f:ident, $e:ident) => {
        ColumnDef {
            nullable: false,
            name: $name,
            col: Col::Text(|r| {
                if let Record::$v(x) = r {
                    $e::from_code(x.$f).map($e::as_str)
                } else {
                    None
                }
            }),
        }
    };
}

static TRADE: [ColumnDef; 5] = [
    c!("trade_id", int, Trade.trade_id),
    c!("price", px, Trade.price, 0),
    c!("qty", qty, Trade.qty, 1),
    c!("is_buyer_maker", bool, Trade.is_buyer_maker),
    c!("trade_time", time, Trade.trade_time),
];

static AGG_TRADE: [ColumnDef; 7] = [
    c!("agg_trade_id", int, AggTrade.agg_trade_id),
    c!("first_trade_id", int, AggTrade.first_trade_id),
    c!("last_trade_id", int, AggTrade.last_trade_id),
    c!("price", px, AggTrade.price, 0),
    c!("qty", qty, AggTrade.qty, 1),
    c!("is_buyer_maker", bool, AggTrade.is_buyer_maker),
    c!("trade_time", time, AggTrade.trade_time),
];

static BOOK_TICKER: [ColumnDef; 6] = [
    c!("update_id", int, BookTicker.update_id),
    c!("bid_price", px, BookTicker.bid_price, 0),
    c!("bid_qty", qty, BookTicker.bid_qty, 1),
    c!("ask_price", px, BookTicker.ask_price, 2),
    c!("ask_qty", qty, BookTicker.ask_qty, 3),
    null(c!("transaction_time", time, BookTicker.transaction_time)),
];

static DEPTH_UPDATE: [ColumnDef; 6] = [
    c!("first_update_id", int, DepthUpdate.first_update_id),
    c!("final_update_id", int, DepthUpdate.final_update_id),
    null(c!(
        "prev_final_update_id",
        int,
        DepthUpdate.prev_final_update_id
    )),
    null(c!("transaction_time", time, DepthUpdate.transaction_time)),
    ColumnDef {
        name: "bids",
        col: Col::Bids,
        nullable: false,
    },
    ColumnDef {
        name: "asks",
        col: Col::Asks,
        nullable: false,
    },
];

static DEPTH_SNAPSHOT: [ColumnDef; 3] = [
    c!("last_update_id", int, DepthSnapshot.last_update_id),
    ColumnDef {
        name: "bids",
        col: Col::Bids,
        nullable: false,
    },
    ColumnDef {
        name: "asks",
        col: Col::Asks,
        nullable: false,
    },
];

static KLINE: [ColumnDef; 15] = [
    c!("interval", text, Kline.interval, Interval),
    c!("open_time", time, Kline.open_time),
    c!("close_time", time, Kline.close_time),
    c!("first_trade_id", int, Kline.first_trade_id),
    c!("last_trade_id", int, Kline.last_trade_id),
    c!("open", px, Kline.open, 0),
    c!("high", px, Kline.high, 1),
    c!("low", px, Kline.low, 2),
    c!("close", px, Kline.close, 3),
    c!("volume", qty, Kline.volume, 4),
    c!("quote_volume", qty, Kline.quote_volume, 5),
    c!("trade_count", int, Kline.trade_count),
    c!("taker_buy_base_volume", qty, Kline.taker_buy_base_volume, 6),
    c!(
        "taker_buy_quote_volume",
        qty,
        Kline.taker_buy_quote_volume,
        7
    ),
    c!("is_closed", bool, Kline.is_closed),
];

static MARK_PRICE: [ColumnDef; 5] = [
    c!("mark_price", px, MarkPrice.mark_price, 0),
    null(c!("index_price", px, MarkPrice.index_price, 1)),
    null(c!(
        "estimated_settle_price",
        px,
        MarkPrice.estimated_settle_price,
        2
    )),
    null(c!("funding_rate", px, MarkPrice.funding_rate, 3)),
    null(c!("next_funding_time", time, MarkPrice.next_funding_time)),
];

static LIQUIDATION: [ColumnDef; 10] = [
    c!("side", text, Liquidation.side, Side),
    c!("order_type", text, Liquidation.order_type, OrderType),
    c!(
        "time_in_force",
        text,
        Liquidation.time_in_force,
        TimeInForce
    ),
    c!("orig_qty", qty, Liquidation.orig_qty, 0),
    c!("price", px, Liquidation.price, 1),
    null(c!("avg_price", px, Liquidation.avg_price, 2)),
    c!("order_status", text, Liquidation.order_status, OrderStatus),
    null(c!("last_filled_qty", qty, Liquidation.last_filled_qty, 3)),
    null(c!("filled_qty", qty, Liquidation.filled_qty, 4)),
    c!("trade_time", time, Liquidation.trade_time),
];

static TICKER: [ColumnDef; 19] = [
    c!("price_change", px, Ticker.price_change, 0),
    c!("price_change_percent", px, Ticker.price_change_percent, 1),
    c!("weighted_avg_price", px, Ticker.weighted_avg_price, 2),
    c!("last_price", px, Ticker.last_price, 3),
    c!("last_qty", qty, Ticker.last_qty, 4),
    null(c!("best_bid_price", px, Ticker.best_bid_price, 5)),
    null(c!("best_bid_qty", qty, Ticker.best_bid_qty, 6)),
    null(c!("best_ask_price", px, Ticker.best_ask_price, 7)),
    null(c!("best_ask_qty", qty, Ticker.best_ask_qty, 8)),
    c!("open_price", px, Ticker.open_price, 9),
    c!("high_price", px, Ticker.high_price, 10),
    c!("low_price", px, Ticker.low_price, 11),
    c!("volume", qty, Ticker.volume, 12),
    c!("quote_volume", qty, Ticker.quote_volume, 13),
    c!("open_time", time, Ticker.open_time),
    c!("close_time", time, Ticker.close_time),
    c!("first_trade_id", int, Ticker.first_trade_id),
    c!("last_trade_id", int, Ticker.last_trade_id),
    c!("trade_count", int, Ticker.trade_count),
];

static GAP: [ColumnDef; 4] = [
    c!("stream", text, Gap.stream, Kind),
    c!("reason", text, Gap.reason, GapReason),
    null(c!("expected", int, Gap.expected)),
    null(c!("got", int, Gap.got)),
];

static INSTRUMENT: [ColumnDef; 13] = [
    c!("status", str, Instrument.status),
    null(c!("contract_type", str, Instrument.contract_type)),
    c!("base_asset", str, Instrument.base_asset),
    c!("quote_asset", str, Instrument.quote_asset),
    c!("tick_size", px, Instrument.tick_size, 0),
    c!("step_size", qty, Instrument.step_size, 1),
    null(c!("min_qty", qty, Instrument.min_qty, 2)),
    null(c!("price_precision", int, Instrument.price_precision)),
    null(c!("quantity_precision", int, Instrument.quantity_precision)),
    null(c!(
        "base_asset_precision",
        int,
        Instrument.base_asset_precision
    )),
    null(c!("quote_precision", int, Instrument.quote_precision)),
    null(c!("onboard_date", time, Instrument.onboard_date)),
    null(c!("delivery_date", time, Instrument.delivery_date)),
];

static OPEN_INTEREST: [ColumnDef; 3] = [
    null(c!("period", text, OpenInterest.period, Interval)),
    c!("open_interest", qty, OpenInterest.open_interest, 0),
    null(c!(
        "open_interest_value",
        qty,
        OpenInterest.open_interest_value,
        1
    )),
];

static LONG_SHORT_RATIO: [ColumnDef; 5] = [
    c!("series", text, LongShortRatio.series, RatioSeries),
    c!("period", text, LongShortRatio.period, Interval),
    c!("long_short_ratio", px, LongShortRatio.long_short_ratio, 0),
    null(c!("long_share", px, LongShortRatio.long_share, 1)),
    null(c!("short_share", px, LongShortRatio.short_share, 2)),
];

/// The columns of `kind` after [`COMMON_COLUMNS`].
pub fn columns(kind: Kind) -> &'static [ColumnDef] {
    match kind {
        Kind::Trade => &TRADE,
        Kind::AggTrade => &AGG_TRADE,
        Kind::BookTicker => &BOOK_TICKER,
        Kind::DepthUpdate => &DEPTH_UPDATE,
        Kind::DepthSnapshot => &DEPTH_SNAPSHOT,
        Kind::Kline => &KLINE,
        Kind::MarkPrice => &MARK_PRICE,
        Kind::Liquidation => &LIQUIDATION,
        Kind::Ticker => &TICKER,
        Kind::Gap => &GAP,
        Kind::Instrument => &INSTRUMENT,
        Kind::OpenInterest => &OPEN_INTEREST,
        Kind::LongShortRatio => &LONG_SHORT_RATIO,
    }
}

fn level_fields() -> Fields {
    Fields::from(vec![
        Field::new("price", PRICE_TYPE, false),
        Field::new("qty", QTY_TYPE, false),
    ])
}

fn level_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(level_fields()), false))
}

fn utc(unit: TimeUnit) -> DataType {
    DataType::Timestamp(unit, Some("UTC".into()))
}

fn build_schema(kind: Kind) -> Schema {
    let dict8 = DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8));
    let mut fields = vec![
        Field::new("exchange", dict8.clone(), false),
        Field::new("market", dict8, false),
        Field::new(
            "symbol",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("event_time", utc(TimeUnit::Microsecond), true),
        Field::new("recv_time", utc(TimeUnit::Nanosecond), false),
    ];
    for c in columns(kind) {
        fields.push(match c.col {
            Col::Int(_) => Field::new(c.name, DataType::Int64, c.nullable),
            Col::Time(_) => Field::new(c.name, utc(TimeUnit::Microsecond), c.nullable),
            Col::Price(_) => Field::new(c.name, PRICE_TYPE, c.nullable),
            Col::Qty(_) => Field::new(c.name, QTY_TYPE, c.nullable),
            Col::Bool(_) => Field::new(c.name, DataType::Boolean, c.nullable),
            Col::Text(_) => Field::new(c.name, DataType::Utf8, c.nullable),
            Col::Bids | Col::Asks => Field::new(c.name, DataType::List(level_item()), c.nullable),
        });
    }
    Schema::new(fields).with_metadata(std::collections::HashMap::from([(
        "tickwire.kind".to_string(),
        kind.as_str().to_string(),
    )]))
}

/// The Arrow schema of `kind` (built once, shared).
pub fn schema(kind: Kind) -> SchemaRef {
    static SCHEMAS: OnceLock<Vec<SchemaRef>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|&k| Arc::new(build_schema(k)))
            .collect()
    })[kind.index()]
    .clone()
}

enum ColB {
    Int(Int64Builder),
    Time(TimestampMicrosecondBuilder),
    Dec(Decimal128Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Levels {
        price: Vec<i128>,
        qty: Vec<i128>,
        offsets: Vec<i32>,
    },
}

/// Appends records of one kind and finishes them into a [`RecordBatch`] of [`schema`].
pub struct BatchBuilder {
    kind: Kind,
    exchange: IdDict<Int8Type>,
    market: IdDict<Int8Type>,
    symbol: IdDict<Int32Type>,
    event_time: TimestampMicrosecondBuilder,
    recv_time: TimestampNanosecondBuilder,
    cols: Vec<ColB>,
    rows: usize,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("kind", &self.kind)
            .field("rows", &self.rows)
            .finish()
    }
}

impl BatchBuilder {
    /// An empty builder for `kind` with room for `capacity` rows.
    pub fn new(kind: Kind, capacity: usize) -> Self {
        let cols = columns(kind)
            .iter()
            .map(|c| match c.col {
                Col::Int(_) => ColB::Int(Int64Builder::with_capacity(capacity)),
                Col::Time(_) => ColB::Time(TimestampMicrosecondBuilder::with_capacity(capacity)),
                Col::Price(_) => ColB::Dec(Decimal128Builder::with_capacity(capacity)),
                Col::Qty(_) => ColB::Dec(Decimal128Builder::with_capacity(capacity)),
                Col::Bool(_) => ColB::Bool(BooleanBuilder::with_capacity(capacity)),
                Col::Text(_) => ColB::Text(StringBuilder::with_capacity(capacity, capacity * 4)),
                Col::Bids | Col::Asks => ColB::Levels {
                    price: Vec::new(),
                    qty: Vec::new(),
                    offsets: vec![0],
                },
            })
            .collect();
        BatchBuilder {
            kind,
            exchange: IdDict::new(capacity),
            market: IdDict::new(capacity),
            symbol: IdDict::new(capacity),
            event_time: TimestampMicrosecondBuilder::with_capacity(capacity),
            recv_time: TimestampNanosecondBuilder::with_capacity(capacity),
            cols,
            rows: 0,
        }
    }

    /// The kind this builder takes.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one record of this builder's kind; `levels` is the arena its level range
    /// indexes and `symbol` its symbol's name. A record of another kind is refused.
    pub fn append(
        &mut self,
        rec: &Record,
        levels: &[Level],
        symbol: &str,
    ) -> Result<(), ArrowError> {
        if rec.kind() != self.kind {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a {} record given to the {} builder",
                rec.kind().as_str(),
                self.kind.as_str()
            )));
        }
        let h = rec.header();
        self.exchange.append(
            usize::from(h.exchange),
            Exchange::from_code(h.exchange).map_or("", Exchange::as_str),
            false,
        )?;
        self.market.append(
            usize::from(h.market),
            Market::from_code(h.market).map_or("", Market::as_str),
            false,
        )?;
        self.symbol.append(h.symbol.0 as usize, symbol, true)?;
        opt_i64(&mut self.event_time, h.event_time, true);
        self.recv_time.append_value(h.recv_time);
        let range = rec.levels().unwrap_or_default();
        for (b, def) in self.cols.iter_mut().zip(columns(self.kind)) {
            match (b, def.col) {
                (ColB::Int(b), Col::Int(f)) => opt_i64(b, f(rec), def.nullable),
                (ColB::Time(b), Col::Time(f)) => opt_i64(b, f(rec), def.nullable),
                (ColB::Dec(b), Col::Price(f)) => match f(rec) {
                    // A null only where the column may hold one; elsewhere the raw value is
                    // kept (a decoder never leaves it out), so a batch is never refused.
                    (_, None) if def.nullable => b.append_null(),
                    (v, _) => b.append_value(i128::from(v)),
                },
                (ColB::Dec(b), Col::Qty(f)) => match f(rec) {
                    (_, None) if def.nullable => b.append_null(),
                    (v, _) => b.append_value(v),
                },
                (ColB::Bool(b), Col::Bool(f)) => b.append_value(f(rec)),
                (ColB::Text(b), Col::Text(f)) => match f(rec) {
                    None if def.nullable => b.append_null(),
                    v => b.append_value(v.unwrap_or("")),
                },
                (
                    ColB::Levels {
                        price,
                        qty,
                        offsets,
                    },
                    c @ (Col::Bids | Col::Asks),
                ) => {
                    let ls = if matches!(c, Col::Bids) {
                        range.bids(levels)
                    } else {
                        range.asks(levels)
                    };
                    for l in ls {
                        price.push(i128::from(l.price));
                        qty.push(l.qty.get());
                    }
                    offsets.push(
                        i32::try_from(price.len())
                            .map_err(|_| ArrowError::ComputeError("too many levels".into()))?,
                    );
                }
                _ => {
                    return Err(ArrowError::SchemaError(
                        "column builder out of step with its table".into(),
                    ))
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Finishes the pending rows into a batch and starts over empty.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.build(true)
    }

    /// The pending rows as a batch, copied; the builder keeps them (for readers that must see
    /// rows before they are flushed).
    pub fn snapshot(&mut self) -> Result<RecordBatch, ArrowError> {
        self.build(false)
    }

    fn build(&mut self, take: bool) -> Result<RecordBatch, ArrowError> {
        macro_rules! fin {
            ($b:expr) => {
                if take {
                    $b.finish()
                } else {
                    $b.finish_cloned()
                }
            };
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.exchange.finish(take)?),
            Arc::new(self.market.finish(take)?),
            Arc::new(self.symbol.finish(take)?),
            Arc::new(fin!(self.event_time).with_timezone("UTC")),
            Arc::new(fin!(self.recv_time).with_timezone("UTC")),
        ];
        for (b, def) in self.cols.iter_mut().zip(columns(self.kind)) {
            arrays.push(match b {
                ColB::Int(b) => Arc::new(fin!(b)),
                ColB::Time(b) => Arc::new(fin!(b).with_timezone("UTC")),
                ColB::Dec(b) => {
                    let (p, s) = match def.col {
                        Col::Price(_) => (18, 8),
                        _ => (38, 8),
                    };
                    Arc::new(fin!(b).with_precision_and_scale(p, s)?)
                }
                ColB::Bool(b) => Arc::new(fin!(b)),
                ColB::Text(b) => Arc::new(fin!(b)),
                ColB::Levels {
                    price,
                    qty,
                    offsets,
                } => {
                    let (price, qty, offsets) = if take {
                        (
                            std::mem::take(price),
                            std::mem::take(qty),
                            std::mem::replace(offsets, vec![0]),
                        )
                    } else {
                        (price.clone(), qty.clone(), offsets.clone())
                    };
                    let p = Decimal128Array::from(price).with_precision_and_scale(18, 8)?;
                    let q = Decimal128Array::from(qty).with_precision_and_scale(38, 8)?;
                    let items =
                        StructArray::try_new(level_fields(), vec![Arc::new(p), Arc::new(q)], None)?;
                    let offs = OffsetBuffer::new(offsets.into());
                    Arc::new(ListArray::try_new(
                        level_item(),
                        offs,
                        Arc::new(items),
                        None,
                    )?)
                }
            });
        }
        if take {
            self.rows = 0;
        }
        RecordBatch::try_new(schema(self.kind), arrays)
    }
}

/// A dictionary column whose values are known by a small id (a symbol id, an exchange or market
/// code): a row costs an array lookup for its key instead of hashing its string. Values are in
/// order of first appearance, as arrow-rs's `StringDictionaryBuilder` has them; each finished
/// batch starts a new dictionary.
struct IdDict<K: arrow_array::types::ArrowDictionaryKeyType> {
    keys: arrow_array::builder::PrimitiveBuilder<K>,
    values: StringBuilder,
    /// Key of each id seen in this batch.
    slot: Vec<Option<K::Native>>,
    len: usize,
}

impl<K: arrow_array::types::ArrowDictionaryKeyType> IdDict<K> {
    fn new(capacity: usize) -> Self {
        IdDict {
            keys: arrow_array::builder::PrimitiveBuilder::with_capacity(capacity),
            values: StringBuilder::new(),
            slot: Vec::new(),
            len: 0,
        }
    }

    /// Appends `name`, known by `id`. The key of the id's last value is taken when that value
    /// is `name` (a compare of a few bytes); otherwise the values are searched, and `name`
    /// added if missing, so a caller whose ids and names disagree still gets the names it
    /// gave, each once in the dictionary.
    ///
    /// `checked: false` skips the compare where the name is a function of the id (exchange
    /// and market codes).
    fn append(&mut self, id: usize, name: &str, checked: bool) -> Result<(), ArrowError> {
        if id >= self.slot.len() {
            self.slot.resize(id + 1, None);
        }
        let key = match self.slot[id].filter(|k| !checked || self.value(*k) == name.as_bytes()) {
            Some(k) => k,
            None => {
                // A new id, or one whose name changed: the value may be there already (values
                // stay unique, as readers of the dictionary expect).
                let found = (0..self.len)
                    .map(arrow_buffer::ArrowNativeType::from_usize)
                    .find_map(|k: Option<K::Native>| {
                        k.filter(|k| self.value(*k) == name.as_bytes())
                    });
                let k = match found {
                    Some(k) => k,
                    None => {
                        let k = arrow_buffer::ArrowNativeType::from_usize(self.len)
                            .ok_or(ArrowError::DictionaryKeyOverflowError)?;
                        self.values.append_value(name);
                        self.len += 1;
                        k
                    }
                };
                self.slot[id] = Some(k);
                k
            }
        };
        self.keys.append_value(key);
        Ok(())
    }

    /// The bytes of the value with key `k`.
    fn value(&self, k: K::Native) -> &[u8] {
        let (offsets, values) = (self.values.offsets_slice(), self.values.values_slice());
        let i = arrow_buffer::ArrowNativeType::as_usize(k);
        &values[offsets[i] as usize..offsets[i + 1] as usize]
    }

    /// The column; `take`: the builder starts empty (with a new dictionary), else it keeps
    /// its rows.
    fn finish(&mut self, take: bool) -> Result<arrow_array::DictionaryArray<K>, ArrowError> {
        let (keys, values) = if take {
            self.slot.iter_mut().for_each(|s| *s = None);
            self.len = 0;
            (self.keys.finish(), self.values.finish())
        } else {
            (self.keys.finish_cloned(), self.values.finish_cloned())
        };
        arrow_array::DictionaryArray::try_new(keys, Arc::new(values))
    }
}

fn opt_i64<T: arrow_array::types::ArrowPrimitiveType<Native = i64>>(
    b: &mut arrow_array::builder::PrimitiveBuilder<T>,
    v: i64,
    nullable: bool,
) {
    if nullable && v == NULL_I64 {
        b.append_null()
    } else {
        b.append_value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::Decoder;
    use crate::symbol::SymbolTable;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Decimal128Type;
    use arrow_array::Array;

    #[test]
    fn schemas_have_the_decode_columns() {
        for &k in Kind::ALL {
            let s = schema(k);
            let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(&names[..5], COMMON_COLUMNS);
            assert_eq!(names.len(), 5 + columns(k).len(), "{k:?}");
        }
    }

    #[test]
    fn only_columns_a_stream_may_lack_are_nullable() {
        let nullable = |k: Kind| -> Vec<String> {
            schema(k)
                .fields()
                .iter()
                .filter(|f| f.is_nullable())
                .map(|f| f.name().clone())
                .collect()
        };
        assert_eq!(nullable(Kind::Trade), ["event_time"]);
        assert_eq!(
            nullable(Kind::BookTicker),
            ["event_time", "transaction_time"]
        );
        assert_eq!(
            nullable(Kind::DepthUpdate),
            ["event_time", "prev_final_update_id", "transaction_time"]
        );
        assert_eq!(
            nullable(Kind::MarkPrice),
            [
                "event_time",
                "index_price",
                "estimated_settle_price",
                "funding_rate",
                "next_funding_time"
            ]
        );
        assert_eq!(
            nullable(Kind::Ticker),
            [
                "event_time",
                "best_bid_price",
                "best_bid_qty",
                "best_ask_price",
                "best_ask_qty"
            ]
        );
        assert_eq!(nullable(Kind::Gap), ["event_time", "expected", "got"]);
    }

    #[test]
    fn a_snapshot_shows_the_pending_rows_and_keeps_them() {
        let t = SymbolTable::new();
        let mut d = Decoder::new(Market::Spot, t.clone());
        let mut b = BatchBuilder::new(Kind::DepthUpdate, 4);
        let frames: [&[u8]; 2] = [
            br#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1.5","2"]],"a":[]}"#,
            br#"{"e":"depthUpdate","E":2,"s":"ETHUSDT","U":3,"u":4,"b":[],"a":[["1.6","3"]]}"#,
        ];
        for (i, f) in frames.iter().enumerate() {
            d.decode(f, 9, &mut |r: &Record, lv: &[Level]| {
                let name = t.name(r.header().symbol).unwrap_or_default();
                assert!(b.append(r, lv, &name).is_ok());
            })
            .expect("decodes");
            let snap = b.snapshot().expect("snapshot");
            assert_eq!(snap.num_rows(), i + 1);
            assert_eq!(b.len(), i + 1, "the builder keeps its rows");
        }
        let snap = b.snapshot().expect("snapshot");
        let done = b.finish().expect("finish");
        assert_eq!(snap, done);
        assert!(b.is_empty());
    }

    #[test]
    fn each_batch_has_its_own_symbol_dictionary_in_order_of_appearance() {
        let t = SymbolTable::new();
        let mut d = Decoder::new(Market::Spot, t.clone());
        let mut b = BatchBuilder::new(Kind::Trade, 4);
        let mut feed = |b: &mut BatchBuilder, sym: &str, id: u32| {
            let f = format!(
                r#"{{"e":"trade","E":1,"s":"{sym}","t":{id},"p":"1.5","q":"2","T":1,"m":true}}"#
            );
            d.decode(f.as_bytes(), 9, &mut |r: &Record, lv: &[Level]| {
                let name = t.name(r.header().symbol).unwrap_or_default();
                assert!(b.append(r, lv, &name).is_ok());
            })
            .expect("decodes");
        };
        let symbols = |batch: &RecordBatch| -> (Vec<String>, Vec<String>) {
            let col = batch.column_by_name("symbol").expect("symbol");
            let dict = col.as_dictionary::<Int32Type>();
            let values = dict.values().as_string::<i32>();
            let dictionary = values.iter().map(|v| v.unwrap_or("").to_string()).collect();
            let rows = dict
                .keys()
                .values()
                .iter()
                .map(|&k| values.value(k as usize).to_string())
                .collect();
            (dictionary, rows)
        };
        for (sym, id) in [("BTCUSDT", 1), ("ETHUSDT", 2), ("BTCUSDT", 3)] {
            feed(&mut b, sym, id);
        }
        let first = b.finish().expect("finish");
        assert_eq!(
            symbols(&first),
            (
                vec!["BTCUSDT".into(), "ETHUSDT".into()],
                vec!["BTCUSDT".into(), "ETHUSDT".into(), "BTCUSDT".into()]
            )
        );
        // The next batch starts a dictionary of its own: only its symbols, in its order.
        for (sym, id) in [("SOLUSDT", 4), ("ETHUSDT", 5)] {
            feed(&mut b, sym, id);
        }
        let second = b.finish().expect("finish");
        assert_eq!(
            symbols(&second),
            (
                vec!["SOLUSDT".into(), "ETHUSDT".into()],
                vec!["SOLUSDT".into(), "ETHUSDT".into()]
            )
        );
        let exchange = second.column_by_name("exchange").expect("exchange");
        let market = second.column_by_name("market").expect("market");
        assert_eq!(
            dict8_rows(exchange),
            ["binance", "binance"],
            "constant columns"
        );
        assert_eq!(dict8_rows(market), ["spot", "spot"]);
    }

    #[test]
    fn names_that_disagree_with_their_ids_are_kept_each_once() {
        let mut b = BatchBuilder::new(Kind::Trade, 4);
        for name in ["AAA", "BBB", "AAA", "CCC", "BBB"] {
            let t = Trade {
                header: Header::new(Kind::Trade, Market::Spot, SymbolId(0), 1, 2),
                ..Trade::default()
            };
            assert!(b.append(&Record::Trade(t), &[], name).is_ok());
        }
        let batch = b.finish().expect("finish");
        let d = batch
            .column_by_name("symbol")
            .expect("symbol")
            .as_dictionary::<Int32Type>();
        let values = d.values().as_string::<i32>();
        let dictionary: Vec<&str> = values.iter().map(|v| v.unwrap_or("")).collect();
        assert_eq!(dictionary, ["AAA", "BBB", "CCC"]);
        let rows: Vec<&str> = d
            .keys()
            .values()
            .iter()
            .map(|&k| values.value(k as usize))
            .collect();
        assert_eq!(rows, ["AAA", "BBB", "AAA", "CCC", "BBB"]);
    }

    fn dict8_rows(a: &ArrayRef) -> Vec<String> {
        let d = a.as_dictionary::<Int8Type>();
        let v = d.values().as_string::<i32>();
        d.keys()
            .values()
            .iter()
            .map(|&k| v.value(k as usize).to_string())
            .collect()
    }

    #[test]
    fn batches_carry_exact_values_and_nulls() {
        let t = SymbolTable::new();
        let mut d = Decoder::new(Market::Usdm, t.clone());
        let mut b = BatchBuilder::new(Kind::DepthUpdate, 4);
        let mut m = BatchBuilder::new(Kind::MarkPrice, 4);
        let frames: [&[u8]; 3] = [
            br#"{"e":"depthUpdate","E":1,"T":2,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1.5","2"],["1.4","0"]],"a":[]}"#,
            br#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":3,"u":4,"b":[],"a":[["1.6","3000000000000.12345678"]]}"#,
            br#"{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"-0.5","r":""}"#,
        ];
        for f in frames {
            d.decode(f, 9, &mut |r: &Record, lv: &[Level]| {
                let name = t.name(r.header().symbol).unwrap_or_default();
                let res = match r.kind() {
                    Kind::DepthUpdate => b.append(r, lv, &name),
                    _ => m.append(r, lv, &name),
                };
                assert!(res.is_ok());
            })
            .expect("decodes");
        }
        assert!(
            b.append(&Record::Gap(Gap::default()), &[], "X").is_err(),
            "wrong kind refused"
        );
        let batch = b.finish().expect("batch");
        assert_eq!(batch.num_rows(), 2);
        let asks = batch.column_by_name("asks").expect("asks").as_list::<i32>();
        let row1 = asks.value(1);
        let qty = row1.as_struct().column(1).as_primitive::<Decimal128Type>();
        assert_eq!(qty.value(0), 300_000_000_000_012_345_678);
        let pu = batch.column_by_name("prev_final_update_id").expect("pu");
        assert!(pu.is_valid(0) && pu.is_null(1));
        let mb = m.finish().expect("batch");
        let fr = mb.column_by_name("funding_rate").expect("r");
        assert!(fr.is_null(0));
        let mp = mb
            .column_by_name("mark_price")
            .expect("p")
            .as_primitive::<Decimal128Type>();
        assert_eq!(mp.value(0), -50_000_000);
        assert_eq!(b.len(), 0);
    }
}
