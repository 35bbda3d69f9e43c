//! Normalized, fixed-size market-data records.
//!
//! Every record kind is one `#[repr(C)]` struct with no padding and no heap pointers
//! (`bytemuck::Pod`, checked at compile time), so a record can be copied into a ring slot or
//! published as its raw little-endian bytes. All start with a [`Header`]. Prices are `i64` and
//! quantities [`Wide`] (`i128`) at scale 1e-8; the decimal places Binance wrote sit in a
//! [`DpSet`] per record (nibble [`crate::decimal::DP_NULL`] = null). Times are integer
//! microseconds since the Unix epoch, except `recv_time`, which is nanoseconds; a missing
//! time or id is [`NULL_I64`]. Order-book levels live out of line in a [`Level`] arena and a
//! record holds a [`LevelRange`] into it.
//!
//! Field names are the column names of `tickwire decode`, the Arrow schemas and the SQL tables.

use crate::decimal::{DpSet, Wide};
use bytemuck::{Pod, Zeroable};

/// The null value of an integer time or id field.
pub const NULL_I64: i64 = i64::MIN;

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $code:literal => $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $var = $code,)+ }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [$name] = &[$($name::$var,)+];
            /// The wire text (Binance's spelling).
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$var => $text,)+ }
            }
            /// Parses the wire text.
            #[inline]
            pub fn from_bytes(b: &[u8]) -> Option<Self> {
                match b { $(x if x == $text.as_bytes() => Some($name::$var),)+ _ => None }
            }
            /// Parses the stored code.
            #[inline]
            pub const fn from_code(c: u8) -> Option<Self> {
                match c { $($code => Some($name::$var),)+ _ => None }
            }
        }
    };
}

code_enum! {
    /// The record kinds. The code is the `kind` byte of [`Header`] and of the ZMQ layout.
    Kind {
        /// Spot or futures trade (`@trade`).
        Trade = 1 => "trade",
        /// Aggregate trade (`@aggTrade`).
        AggTrade = 2 => "agg_trade",
        /// Best bid/ask (`@bookTicker`).
        BookTicker = 3 => "book_ticker",
        /// Order-book diff (`@depth`).
        DepthUpdate = 4 => "depth_update",
        /// Top-N book levels (`@depth5/10/20`, or the engine's own book snapshots).
        DepthSnapshot = 5 => "depth_snapshot",
        /// Candle (`@kline_<interval>`).
        Kline = 6 => "kline",
        /// Mark price and funding (`@markPrice`).
        MarkPrice = 7 => "mark_price",
        /// Liquidation order (`@forceOrder`).
        Liquidation = 8 => "liquidation",
        /// 24 h rolling ticker (`@ticker`).
        Ticker = 9 => "ticker",
        /// A detected sequence break or reconnect.
        Gap = 10 => "gap",
        /// A symbol's exchangeInfo entry (tick and step size, precisions, status, contract
        /// type): one record per symbol at start and per change.
        Instrument = 11 => "instrument",
        /// Open interest (USD-M REST `openInterest`, `openInterestHist`).
        OpenInterest = 12 => "open_interest",
        /// A long/short ratio series (USD-M REST `/futures/data/*LongShort*Ratio`).
        LongShortRatio = 13 => "long_short_ratio",
    }
}

impl Kind {
    /// Number of kinds; codes run from 1 to `COUNT`.
    pub const COUNT: usize = 13;
    /// Zero-based index, for per-kind arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize - 1
    }
    /// Kinds no retention policy deletes: gaps say where data is missing, instruments how to
    /// read the prices.
    pub const fn kept_forever(self) -> bool {
        matches!(self, Kind::Gap | Kind::Instrument)
    }
    /// Kinds that come from REST answers, not stream frames.
    pub const fn from_rest(self) -> bool {
        matches!(
            self,
            Kind::Instrument | Kind::OpenInterest | Kind::LongShortRatio
        )
    }
}

code_enum! {
    /// Market of a record.
    Market {
        /// Binance spot.
        Spot = 0 => "spot",
        /// Binance USD-M futures.
        Usdm = 1 => "usdm",
    }
}

code_enum! {
    /// Exchange of a record.
    Exchange {
        /// Binance.
        Binance = 0 => "binance",
    }
}

code_enum! {
    /// Order side (liquidations).
    Side {
        /// Buy.
        Buy = 1 => "BUY",
        /// Sell.
        Sell = 2 => "SELL",
    }
}

code_enum! {
    /// Order type (liquidations).
    OrderType {
        /// Limit.
        Limit = 1 => "LIMIT",
        /// Market.
        Market = 2 => "MARKET",
        /// Stop.
        Stop = 3 => "STOP",
        /// Take profit.
        TakeProfit = 4 => "TAKE_PROFIT",
        /// Stop market.
        StopMarket = 5 => "STOP_MARKET",
        /// Take profit market.
        TakeProfitMarket = 6 => "TAKE_PROFIT_MARKET",
        /// Trailing stop market.
        TrailingStopMarket = 7 => "TRAILING_STOP_MARKET",
        /// Liquidation.
        Liquidation = 8 => "LIQUIDATION",
    }
}

code_enum! {
    /// Time in force (liquidations).
    TimeInForce {
        /// Good till cancel.
        Gtc = 1 => "GTC",
        /// Immediate or cancel.
        Ioc = 2 => "IOC",
        /// Fill or kill.
        Fok = 3 => "FOK",
        /// Good till crossing (post only).
        Gtx = 4 => "GTX",
        /// Good till date.
        Gtd = 5 => "GTD",
        /// Retail price improvement.
        Rpi = 6 => "RPI",
    }
}

code_enum! {
    /// Order status (liquidations).
    OrderStatus {
        /// New.
        New = 1 => "NEW",
        /// Partially filled.
        PartiallyFilled = 2 => "PARTIALLY_FILLED",
        /// Filled.
        Filled = 3 => "FILLED",
        /// Canceled.
        Canceled = 4 => "CANCELED",
        /// Rejected.
        Rejected = 5 => "REJECTED",
        /// Expired.
        Expired = 6 => "EXPIRED",
        /// Expired in match.
        ExpiredInMatch = 7 => "EXPIRED_IN_MATCH",
    }
}

code_enum! {
    /// Kline interval.
    Interval {
        /// 1 second.
        S1 = 1 => "1s",
        /// 1 minute.
        M1 = 2 => "1m",
        /// 3 minutes.
        M3 = 3 => "3m",
        /// 5 minutes.
        M5 = 4 => "5m",
        /// 15 minutes.
        M15 = 5 => "15m",
        /// 30 minutes.
        M30 = 6 => "30m",
        /// 1 hour.
        H1 = 7 => "1h",
        /// 2 hours.
        H2 = 8 => "2h",
        /// 4 hours.
        H4 = 9 => "4h",
        /// 6 hours.
        H6 = 10 => "6h",
        /// 8 hours.
        H8 = 11 => "8h",
        /// 12 hours.
        H12 = 12 => "12h",
        /// 1 day.
        D1 = 13 => "1d",
        /// 3 days.
        D3 = 14 => "3d",
        /// 1 week.
        W1 = 15 => "1w",
        /// 1 month.
        Mo1 = 16 => "1M",
    }
}

code_enum! {
    /// Why a [`Gap`] record was written.
    GapReason {
        /// An id or update sequence skipped values.
        Sequence = 1 => "sequence",
        /// The connection dropped; anything sent meanwhile is missing.
        Reconnect = 2 => "reconnect",
        /// The order book was discarded and rebuilt from a REST snapshot.
        Resync = 3 => "resync",
    }
}

code_enum! {
    /// A long/short ratio series: Binance's endpoint name under `/futures/data/`.
    RatioSeries {
        /// Top traders' long/short ratio by positions.
        TopPosition = 1 => "topLongShortPositionRatio",
        /// Top traders' long/short ratio by accounts.
        TopAccount = 2 => "topLongShortAccountRatio",
        /// All accounts' long/short ratio.
        GlobalAccount = 3 => "globalLongShortAccountRatio",
    }
}

macro_rules! fixed_text {
    ($(#[$m:meta])* $name:ident, $n:literal) => {
        $(#[$m])*
        #[repr(transparent)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// `s` as a fixed field; `None` when it is longer than the field or holds a NUL.
            pub fn new(s: &str) -> Option<Self> {
                let b = s.as_bytes();
                if b.len() > $n || b.contains(&0) {
                    return None;
                }
                let mut t = [0; $n];
                t[..b.len()].copy_from_slice(b);
                Some($name(t))
            }
            /// The text (empty: none). Bytes that are not UTF-8 (never written by `new`)
            /// read as empty.
            pub fn as_str(&self) -> &str {
                let n = self.0.iter().position(|&c| c == 0).unwrap_or($n);
                std::str::from_utf8(&self.0[..n]).unwrap_or("")
            }
            /// The text, or `None` when empty.
            pub fn get(&self) -> Option<&str> {
                Some(self.as_str()).filter(|s| !s.is_empty())
            }
        }
    };
}

fixed_text!(
    /// A short ASCII text in a 16-byte field (asset names), NUL-padded.
    Text16,
    16
);
fixed_text!(
    /// A short ASCII text in a 24-byte field (statuses, contract types), NUL-padded. Binance's
    /// longest today is 20 bytes (`PERPETUAL_DELIVERING`).
    Text24,
    24
);

/// Interned symbol id (see [`crate::symbol::SymbolTable`]).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Pod, Zeroable)]
pub struct SymbolId(pub u32);

/// Fields every record starts with. 24 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Header {
    /// Local receive time of the frame, ns since the epoch (taken before decoding).
    pub recv_time: i64,
    /// Exchange event time (`E`), µs since the epoch; [`NULL_I64`] where the stream has none.
    pub event_time: i64,
    /// Interned symbol.
    pub symbol: SymbolId,
    /// [`Kind`] code.
    pub kind: u8,
    /// [`Exchange`] code.
    pub exchange: u8,
    /// [`Market`] code.
    pub market: u8,
    /// Reserved, zero.
    pub reserved: u8,
}

impl Header {
    /// A header for `kind`.
    pub fn new(
        kind: Kind,
        market: Market,
        symbol: SymbolId,
        event_time: i64,
        recv_time: i64,
    ) -> Self {
        Header {
            recv_time,
            event_time,
            symbol,
            kind: kind as u8,
            exchange: Exchange::Binance as u8,
            market: market as u8,
            reserved: 0,
        }
    }
    /// The record kind.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_code(self.kind)
    }
    /// The market.
    pub fn market(&self) -> Option<Market> {
        Market::from_code(self.market)
    }
}

/// One order-book level. `qty` zero removes the level (in a diff). 32 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Level {
    /// Price, 1e-8 units.
    pub price: i64,
    /// Quantity, 1e-8 units.
    pub qty: Wide,
    /// Decimal places of the price text.
    pub price_dp: u8,
    /// Decimal places of the quantity text.
    pub qty_dp: u8,
    /// Zero.
    pub pad: [u8; 6],
}

/// Where a record's levels sit in the level arena: `bids` levels from `start`, then `asks`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct LevelRange {
    /// Index of the first bid in the arena.
    pub start: u32,
    /// Number of bids.
    pub bids: u32,
    /// Number of asks (after the bids).
    pub asks: u32,
    /// Zero.
    pub pad: u32,
}

impl LevelRange {
    /// The bid levels in `arena`.
    pub fn bids<'a>(&self, arena: &'a [Level]) -> &'a [Level] {
        let s = self.start as usize;
        arena.get(s..s + self.bids as usize).unwrap_or(&[])
    }
    /// The ask levels in `arena`.
    pub fn asks<'a>(&self, arena: &'a [Level]) -> &'a [Level] {
        let s = self.start as usize + self.bids as usize;
        arena.get(s..s + self.asks as usize).unwrap_or(&[])
    }
}

/// `trade`. Decimal fields in `dp`: 0 price, 1 qty.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Trade {
    pub header: Header,
    pub trade_id: i64,
    pub price: i64,
    pub qty: Wide,
    pub trade_time: i64,
    pub dp: DpSet,
    pub is_buyer_maker: u8,
    pub pad: [u8; 7],
}

/// `agg_trade`. `dp`: 0 price, 1 qty.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct AggTrade {
    pub header: Header,
    pub agg_trade_id: i64,
    pub first_trade_id: i64,
    pub last_trade_id: i64,
    pub price: i64,
    pub qty: Wide,
    pub trade_time: i64,
    pub dp: DpSet,
    pub is_buyer_maker: u8,
    pub pad: [u8; 7],
}

/// `book_ticker`. `dp`: 0 bid_price, 1 bid_qty, 2 ask_price, 3 ask_qty.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct BookTicker {
    pub header: Header,
    pub update_id: i64,
    pub bid_price: i64,
    pub bid_qty: Wide,
    pub ask_price: i64,
    pub ask_qty: Wide,
    /// Futures `T`; [`NULL_I64`] on spot.
    pub transaction_time: i64,
    pub dp: DpSet,
}

/// `depth_update`: one diff of the order book.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct DepthUpdate {
    pub header: Header,
    pub first_update_id: i64,
    pub final_update_id: i64,
    /// Futures `pu`; [`NULL_I64`] on spot.
    pub prev_final_update_id: i64,
    /// Futures `T`; [`NULL_I64`] on spot.
    pub transaction_time: i64,
    pub levels: LevelRange,
}

/// `depth_snapshot`: the top levels of a book (partial depth streams, engine book snapshots).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct DepthSnapshot {
    pub header: Header,
    pub last_update_id: i64,
    pub levels: LevelRange,
}

/// `kline`. `dp`: 0 open, 1 high, 2 low, 3 close, 4 volume, 5 quote_volume,
/// 6 taker_buy_base_volume, 7 taker_buy_quote_volume.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Kline {
    pub header: Header,
    pub open_time: i64,
    pub close_time: i64,
    pub first_trade_id: i64,
    pub last_trade_id: i64,
    pub trade_count: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: Wide,
    pub quote_volume: Wide,
    pub taker_buy_base_volume: Wide,
    pub taker_buy_quote_volume: Wide,
    pub dp: DpSet,
    /// [`Interval`] code.
    pub interval: u8,
    pub is_closed: u8,
    pub pad: [u8; 6],
}

/// `mark_price`. `dp`: 0 mark_price, 1 index_price, 2 estimated_settle_price, 3 funding_rate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct MarkPrice {
    pub header: Header,
    pub mark_price: i64,
    pub index_price: i64,
    pub estimated_settle_price: i64,
    pub funding_rate: i64,
    pub next_funding_time: i64,
    pub dp: DpSet,
}

/// `liquidation`. `dp`: 0 orig_qty, 1 price, 2 avg_price, 3 last_filled_qty, 4 filled_qty.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Liquidation {
    pub header: Header,
    pub orig_qty: Wide,
    pub last_filled_qty: Wide,
    pub filled_qty: Wide,
    pub price: i64,
    pub avg_price: i64,
    pub trade_time: i64,
    pub dp: DpSet,
    /// [`Side`] code.
    pub side: u8,
    /// [`OrderType`] code.
    pub order_type: u8,
    /// [`TimeInForce`] code.
    pub time_in_force: u8,
    /// [`OrderStatus`] code.
    pub order_status: u8,
    pub pad: [u8; 4],
}

/// `ticker` (24 h rolling window). `dp`: see [`Ticker::DP_FIELDS`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Ticker {
    pub header: Header,
    pub price_change: i64,
    pub price_change_percent: i64,
    pub weighted_avg_price: i64,
    pub last_price: i64,
    pub best_bid_price: i64,
    pub best_ask_price: i64,
    pub open_price: i64,
    pub high_price: i64,
    pub low_price: i64,
    pub last_qty: Wide,
    pub best_bid_qty: Wide,
    pub best_ask_qty: Wide,
    pub volume: Wide,
    pub quote_volume: Wide,
    pub open_time: i64,
    pub close_time: i64,
    pub first_trade_id: i64,
    pub last_trade_id: i64,
    pub trade_count: i64,
    pub dp: DpSet,
}

impl Ticker {
    /// The `dp` index of each decimal field, by column name.
    pub const DP_FIELDS: [&'static str; 14] = [
        "price_change",
        "price_change_percent",
        "weighted_avg_price",
        "last_price",
        "last_qty",
        "best_bid_price",
        "best_bid_qty",
        "best_ask_price",
        "best_ask_qty",
        "open_price",
        "high_price",
        "low_price",
        "volume",
        "quote_volume",
    ];
}

/// `gap`: a detected break in a stream's sequence, a reconnect, or a book resync.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Gap {
    pub header: Header,
    /// The id or update id that should have come next ([`NULL_I64`] if unknown).
    pub expected: i64,
    /// The id that came ([`NULL_I64`] if unknown).
    pub got: i64,
    /// [`Kind`] code of the stream the gap is in.
    pub stream: u8,
    /// [`GapReason`] code.
    pub reason: u8,
    pub pad: [u8; 6],
}

/// `instrument`: one symbol's exchangeInfo entry, written at start and whenever it changes.
/// `event_time` is exchangeInfo's `serverTime`. `dp`: 0 tick_size, 1 step_size, 2 min_qty.
/// Texts are Binance's own (`status` TRADING, BREAK, ...; `contract_type` PERPETUAL, ...,
/// empty on spot).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Instrument {
    pub header: Header,
    /// `PRICE_FILTER.tickSize`.
    pub tick_size: i64,
    /// `LOT_SIZE.stepSize`.
    pub step_size: Wide,
    /// `LOT_SIZE.minQty`.
    pub min_qty: Wide,
    /// USD-M `pricePrecision`; [`NULL_I64`] on spot.
    pub price_precision: i64,
    /// USD-M `quantityPrecision`; [`NULL_I64`] on spot.
    pub quantity_precision: i64,
    pub base_asset_precision: i64,
    /// `quotePrecision`.
    pub quote_precision: i64,
    /// USD-M `onboardDate`, µs.
    pub onboard_date: i64,
    /// USD-M `deliveryDate`, µs.
    pub delivery_date: i64,
    pub dp: DpSet,
    pub status: Text24,
    pub contract_type: Text24,
    pub base_asset: Text16,
    pub quote_asset: Text16,
}

/// `open_interest`: USD-M `GET /fapi/v1/openInterest` (`period` none, `event_time` its
/// `time`) or `/futures/data/openInterestHist` (`event_time` the period's `timestamp`).
/// `dp`: 0 open_interest, 1 open_interest_value.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct OpenInterest {
    pub header: Header,
    /// `openInterest` / `sumOpenInterest`, in contracts (base asset).
    pub open_interest: Wide,
    /// `sumOpenInterestValue` (quote asset); null for the live value.
    pub open_interest_value: Wide,
    pub dp: DpSet,
    /// [`Interval`] code of the period; 0 for the live value.
    pub period: u8,
    pub pad: [u8; 7],
}

/// `long_short_ratio`: one point of a [`RatioSeries`] (`event_time` its `timestamp`).
/// `dp`: 0 long_short_ratio, 1 long_share (`longAccount` / `longPosition`), 2 short_share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct LongShortRatio {
    pub header: Header,
    pub long_short_ratio: i64,
    pub long_share: i64,
    pub short_share: i64,
    pub dp: DpSet,
    /// [`RatioSeries`] code.
    pub series: u8,
    /// [`Interval`] code of the period.
    pub period: u8,
    pub pad: [u8; 6],
}

/// Any record, by value. The size of the largest kind; the engine's rings use per-kind slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Trade(Trade),
    AggTrade(AggTrade),
    BookTicker(BookTicker),
    DepthUpdate(DepthUpdate),
    DepthSnapshot(DepthSnapshot),
    Kline(Kline),
    MarkPrice(MarkPrice),
    Liquidation(Liquidation),
    Ticker(Ticker),
    Gap(Gap),
    Instrument(Instrument),
    OpenInterest(OpenInterest),
    LongShortRatio(LongShortRatio),
}

macro_rules! each_record {
    ($self:expr, $r:ident => $e:expr) => {
        match $self {
            Record::Trade($r) => $e,
            Record::AggTrade($r) => $e,
            Record::BookTicker($r) => $e,
            Record::DepthUpdate($r) => $e,
            Record::DepthSnapshot($r) => $e,
            Record::Kline($r) => $e,
            Record::MarkPrice($r) => $e,
            Record::Liquidation($r) => $e,
            Record::Ticker($r) => $e,
            Record::Gap($r) => $e,
            Record::Instrument($r) => $e,
            Record::OpenInterest($r) => $e,
            Record::LongShortRatio($r) => $e,
        }
    };
}

impl Record {
    /// The common header.
    #[inline]
    pub fn header(&self) -> &Header {
        each_record!(self, r => &r.header)
    }
    /// The common header, mutably.
    #[inline]
    pub fn header_mut(&mut self) -> &mut Header {
        each_record!(self, r => &mut r.header)
    }
    /// The record kind.
    #[inline]
    pub fn kind(&self) -> Kind {
        match self {
            Record::Trade(_) => Kind::Trade,
            Record::AggTrade(_) => Kind::AggTrade,
            Record::BookTicker(_) => Kind::BookTicker,
            Record::DepthUpdate(_) => Kind::DepthUpdate,
            Record::DepthSnapshot(_) => Kind::DepthSnapshot,
            Record::Kline(_) => Kind::Kline,
            Record::MarkPrice(_) => Kind::MarkPrice,
            Record::Liquidation(_) => Kind::Liquidation,
            Record::Ticker(_) => Kind::Ticker,
            Record::Gap(_) => Kind::Gap,
            Record::Instrument(_) => Kind::Instrument,
            Record::OpenInterest(_) => Kind::OpenInterest,
            Record::LongShortRatio(_) => Kind::LongShortRatio,
        }
    }
    /// The record's fixed-size bytes (its little-endian wire layout).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        each_record!(self, r => bytemuck::bytes_of(r))
    }
    /// The level range of a depth record.
    #[inline]
    pub fn levels(&self) -> Option<LevelRange> {
        match self {
            Record::DepthUpdate(d) => Some(d.levels),
            Record::DepthSnapshot(d) => Some(d.levels),
            _ => None,
        }
    }
}

/// Byte size of each kind's struct, by [`Kind::index`].
pub const RECORD_SIZES: [usize; Kind::COUNT] = [
    core::mem::size_of::<Trade>(),
    core::mem::size_of::<AggTrade>(),
    core::mem::size_of::<BookTicker>(),
    core::mem::size_of::<DepthUpdate>(),
    core::mem::size_of::<DepthSnapshot>(),
    core::mem::size_of::<Kline>(),
    core::mem::size_of::<MarkPrice>(),
    core::mem::size_of::<Liquidation>(),
    core::mem::size_of::<Ticker>(),
    core::mem::size_of::<Gap>(),
    core::mem::size_of::<Instrument>(),
    core::mem::size_of::<OpenInterest>(),
    core::mem::size_of::<LongShortRatio>(),
];

#[cfg(test)]
mod layout_tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn sizes_are_fixed() {
        // These sizes are the ZMQ binary layout (README): changing one is a wire break.
        let cases: &[(&str, usize, usize)] = &[
            ("header", size_of::<Header>(), 24),
            ("level", size_of::<Level>(), 32),
            ("trade", size_of::<Trade>(), 80),
            ("agg_trade", size_of::<AggTrade>(), 96),
            ("book_ticker", size_of::<BookTicker>(), 96),
            ("depth_update", size_of::<DepthUpdate>(), 72),
            ("depth_snapshot", size_of::<DepthSnapshot>(), 48),
            ("kline", size_of::<Kline>(), 176),
            ("mark_price", size_of::<MarkPrice>(), 72),
            ("liquidation", size_of::<Liquidation>(), 112),
            ("ticker", size_of::<Ticker>(), 224),
            ("gap", size_of::<Gap>(), 48),
            ("instrument", size_of::<Instrument>(), 200),
            ("open_interest", size_of::<OpenInterest>(), 72),
            ("long_short_ratio", size_of::<LongShortRatio>(), 64),
        ];
        for &(name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn alignment_is_eight_and_header_first() {
        assert_eq!(align_of::<Trade>(), 8);
        assert_eq!(align_of::<Ticker>(), 8);
        assert_eq!(align_of::<Level>(), 8);
        assert_eq!(offset_of!(Trade, header), 0);
        assert_eq!(offset_of!(Header, symbol), 16);
        assert_eq!(offset_of!(Header, kind), 20);
        assert_eq!(offset_of!(Trade, price), 32);
        assert_eq!(offset_of!(Trade, qty), 40);
    }

    #[test]
    fn kind_codes_round_trip() {
        for &k in Kind::ALL {
            assert_eq!(Kind::from_code(k as u8), Some(k));
            assert_eq!(Kind::from_bytes(k.as_str().as_bytes()), Some(k));
            assert_eq!(Kind::ALL[k.index()], k);
        }
        assert_eq!(Kind::ALL.len(), Kind::COUNT);
        assert_eq!(Kind::from_code(0), None);
    }

    #[test]
    fn fixed_texts_hold_what_fits_and_refuse_the_rest() {
        let t = Text16::new("USDT").expect("fits");
        assert_eq!(t.as_str(), "USDT");
        assert_eq!(t.get(), Some("USDT"));
        assert_eq!(Text16::default().get(), None);
        assert_eq!(
            Text24::new("PERPETUAL_DELIVERING").expect("fits").as_str(),
            "PERPETUAL_DELIVERING"
        );
        assert_eq!(
            Text16::new("SIXTEEN_BYTES_OK").expect("fits").as_str(),
            "SIXTEEN_BYTES_OK"
        );
        assert!(Text16::new("SEVENTEEN_BYTES_X").is_none());
        assert!(Text16::new("A\0B").is_none());
    }
}
