//! The decode JSON: one object per record, with the column names shared by the Arrow schemas
//! and the SQL tables. Times are integer µs since the epoch (`recv_time` ns), decimals exact
//! strings with the places the exchange wrote, nulls where the stream has no value.
//!
//! Written with `itoa` into a caller's buffer: no allocation once the buffer has grown.

use crate::decimal::{write_decimal, DpSet, Wide};
use crate::record::*;

struct W<'a> {
    out: &'a mut Vec<u8>,
}

impl W<'_> {
    #[inline]
    fn key(&mut self, k: &str) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
    #[inline]
    fn int(&mut self, k: &str, v: i64) {
        self.key(k);
        if v == NULL_I64 {
            self.out.extend_from_slice(b"null");
        } else {
            self.out
                .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
    }
    #[inline]
    fn dec(&mut self, k: &str, raw: i128, dp: DpSet, i: usize) {
        self.key(k);
        match dp.get(i) {
            None => self.out.extend_from_slice(b"null"),
            Some(d) => {
                self.out.push(b'"');
                write_decimal(self.out, raw, d);
                self.out.push(b'"');
            }
        }
    }
    #[inline]
    fn px(&mut self, k: &str, v: i64, dp: DpSet, i: usize) {
        self.dec(k, i128::from(v), dp, i)
    }
    #[inline]
    fn qty(&mut self, k: &str, v: Wide, dp: DpSet, i: usize) {
        self.dec(k, v.get(), dp, i)
    }
    #[inline]
    fn boolean(&mut self, k: &str, v: u8) {
        self.key(k);
        self.out
            .extend_from_slice(if v != 0 { b"true" } else { b"false" });
    }
    /// A string known to need no escaping (enum texts, symbols).
    #[inline]
    fn str(&mut self, k: &str, v: Option<&str>) {
        self.key(k);
        match v {
            Some(v) => {
                self.out.push(b'"');
                self.out.extend_from_slice(v.as_bytes());
                self.out.push(b'"');
            }
            None => self.out.extend_from_slice(b"null"),
        }
    }
    /// A string from the exchange (asset names, statuses): escaped.
    fn text(&mut self, k: &str, v: Option<&str>) {
        self.key(k);
        match v {
            Some(v) => write_json_str(self.out, v.as_bytes()),
            None => self.out.extend_from_slice(b"null"),
        }
    }
    fn levels(&mut self, k: &str, ls: &[Level]) {
        self.key(k);
        self.out.push(b'[');
        for (n, l) in ls.iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(b"[\"");
            write_decimal(self.out, i128::from(l.price), l.price_dp);
            self.out.extend_from_slice(b"\",\"");
            write_decimal(self.out, l.qty.get(), l.qty_dp);
            self.out.extend_from_slice(b"\"]");
        }
        self.out.push(b']');
    }
}

/// Appends the JSON object of `rec` (no newline). `symbol` is the name of `rec`'s symbol id and
/// `levels` the arena its depth levels index.
pub fn write_record(out: &mut Vec<u8>, rec: &Record, symbol: &str, levels: &[Level]) {
    let h = rec.header();
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(rec.kind().as_str().as_bytes());
    out.push(b'"');
    let mut w = W { out };
    w.str(
        "exchange",
        Exchange::from_code(h.exchange).map(Exchange::as_str),
    );
    w.str("market", Market::from_code(h.market).map(Market::as_str));
    w.str("symbol", Some(symbol));
    w.int("event_time", h.event_time);
    w.int("recv_time", h.recv_time);
    match rec {
        Record::Trade(r) => {
            w.int("trade_id", r.trade_id);
            w.px("price", r.price, r.dp, 0);
            w.qty("qty", r.qty, r.dp, 1);
            w.boolean("is_buyer_maker", r.is_buyer_maker);
            w.int("trade_time", r.trade_time);
        }
        Record::AggTrade(r) => {
            w.int("agg_trade_id", r.agg_trade_id);
            w.int("first_trade_id", r.first_trade_id);
            w.int("last_trade_id", r.last_trade_id);
            w.px("price", r.price, r.dp, 0);
            w.qty("qty", r.qty, r.dp, 1);
            w.boolean("is_buyer_maker", r.is_buyer_maker);
            w.int("trade_time", r.trade_time);
        }
        Record::BookTicker(r) => {
            w.int("update_id", r.update_id);
            w.px("bid_price", r.bid_price, r.dp, 0);
            w.qty("bid_qty", r.bid_qty, r.dp, 1);
            w.px("ask_price", r.ask_price, r.dp, 2);
            w.qty("ask_qty", r.ask_qty, r.dp, 3);
            w.int("transaction_time", r.transaction_time);
        }
        Record::DepthUpdate(r) => {
            w.int("first_update_id", r.first_update_id);
            w.int("final_update_id", r.final_update_id);
            w.int("prev_final_update_id", r.prev_final_update_id);
            w.int("transaction_time", r.transaction_time);
            w.levels("bids", r.levels.bids(levels));
            w.levels("asks", r.levels.asks(levels));
        }
        Record::DepthSnapshot(r) => {
            w.int("last_update_id", r.last_update_id);
            w.levels("bids", r.levels.bids(levels));
            w.levels("asks", r.levels.asks(levels));
        }
        Record::Kline(r) => {
            w.str(
                "interval",
                Interval::from_code(r.interval).map(Interval::as_str),
            );
            w.int("open_time", r.open_time);
            w.int("close_time", r.close_time);
            w.int("first_trade_id", r.first_trade_id);
            w.int("last_trade_id", r.last_trade_id);
            w.px("open", r.open, r.dp, 0);
            w.px("high", r.high, r.dp, 1);
            w.px("low", r.low, r.dp, 2);
            w.px("close", r.close, r.dp, 3);
            w.qty("volume", r.volume, r.dp, 4);
            w.qty("quote_volume", r.quote_volume, r.dp, 5);
            w.int("trade_count", r.trade_count);
            w.qty("taker_buy_base_volume", r.taker_buy_base_volume, r.dp, 6);
            w.qty("taker_buy_quote_volume", r.taker_buy_quote_volume, r.dp, 7);
            w.boolean("is_closed", r.is_closed);
        }
        Record::MarkPrice(r) => {
            w.px("mark_price", r.mark_price, r.dp, 0);
            w.px("index_price", r.index_price, r.dp, 1);
            w.px("estimated_settle_price", r.estimated_settle_price, r.dp, 2);
            w.px("funding_rate", r.funding_rate, r.dp, 3);
            w.int("next_funding_time", r.next_funding_time);
        }
        Record::Liquidation(r) => {
            w.str("side", Side::from_code(r.side).map(Side::as_str));
            w.str(
                "order_type",
                OrderType::from_code(r.order_type).map(OrderType::as_str),
            );
            w.str(
                "time_in_force",
                TimeInForce::from_code(r.time_in_force).map(TimeInForce::as_str),
            );
            w.qty("orig_qty", r.orig_qty, r.dp, 0);
            w.px("price", r.price, r.dp, 1);
            w.px("avg_price", r.avg_price, r.dp, 2);
            w.str(
                "order_status",
                OrderStatus::from_code(r.order_status).map(OrderStatus::as_str),
            );
            w.qty("last_filled_qty", r.last_filled_qty, r.dp, 3);
            w.qty("filled_qty", r.filled_qty, r.dp, 4);
            w.int("trade_time", r.trade_time);
        }
        Record::Ticker(r) => {
            w.px("price_change", r.price_change, r.dp, 0);
            w.px("price_change_percent", r.price_change_percent, r.dp, 1);
            w.px("weighted_avg_price", r.weighted_avg_price, r.dp, 2);
            w.px("last_price", r.last_price, r.dp, 3);
            w.qty("last_qty", r.last_qty, r.dp, 4);
            w.px("best_bid_price", r.best_bid_price, r.dp, 5);
            w.qty("best_bid_qty", r.best_bid_qty, r.dp, 6);
            w.px("best_ask_price", r.best_ask_price, r.dp, 7);
            w.qty("best_ask_qty", r.best_ask_qty, r.dp, 8);
            w.px("open_price", r.open_price, r.dp, 9);
            w.px("high_price", r.high_price, r.dp, 10);
            w.px("low_price", r.low_price, r.dp, 11);
            w.qty("volume", r.volume, r.dp, 12);
            w.qty("quote_volume", r.quote_volume, r.dp, 13);
            w.int("open_time", r.open_time);
            w.int("close_time", r.close_time);
            w.int("first_trade_id", r.first_trade_id);
            w.int("last_trade_id", r.last_trade_id);
            w.int("trade_count", r.trade_count);
        }
        Record::Gap(r) => {
            w.str("stream", Kind::from_code(r.stream).map(Kind::as_str));
            w.str(
                "reason",
                GapReason::from_code(r.reason).map(GapReason::as_str),
            );
            w.int("expected", r.expected);
            w.int("got", r.got);
        }
        Record::Instrument(r) => {
            w.text("status", r.status.get());
            w.text("contract_type", r.contract_type.get());
            w.text("base_asset", r.base_asset.get());
            w.text("quote_asset", r.quote_asset.get());
            w.px("tick_size", r.tick_size, r.dp, 0);
            w.qty("step_size", r.step_size, r.dp, 1);
            w.qty("min_qty", r.min_qty, r.dp, 2);
            w.int("price_precision", r.price_precision);
            w.int("quantity_precision", r.quantity_precision);
            w.int("base_asset_precision", r.base_asset_precision);
            w.int("quote_precision", r.quote_precision);
            w.int("onboard_date", r.onboard_date);
            w.int("delivery_date", r.delivery_date);
        }
        Record::OpenInterest(r) => {
            w.str(
                "period",
                Interval::from_code(r.period).map(Interval::as_str),
            );
            w.qty("open_interest", r.open_interest, r.dp, 0);
            w.qty("open_interest_value", r.open_interest_value, r.dp, 1);
        }
        Record::LongShortRatio(r) => {
            w.str(
                "series",
                RatioSeries::from_code(r.series).map(RatioSeries::as_str),
            );
            w.str(
                "period",
                Interval::from_code(r.period).map(Interval::as_str),
            );
            w.px("long_short_ratio", r.long_short_ratio, r.dp, 0);
            w.px("long_share", r.long_share, r.dp, 1);
            w.px("short_share", r.short_share, r.dp, 2);
        }
    }
    w.out.push(b'}');
}

/// Appends `s` as a JSON string, escaping what JSON requires.
pub fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[(c >> 4) as usize]);
                out.push(b"0123456789abcdef"[(c & 0xf) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}
