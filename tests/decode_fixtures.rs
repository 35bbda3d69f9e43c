//! `tickwire decode` prints exactly the values every shared fixture frame carries.
//!
//! The expected values come from the input frame itself, read with serde_json and mapped from
//! Binance's keys to the column names by the table below (written independently of the
//! decoder): decimals must come back as the very text sent, times as ms × 1000, ids, counts,
//! flags and enum texts unchanged, absent optional fields as null, and every output object
//! must have exactly the documented columns.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use tickwire_tests::{fixtures, tickwire};

/// How a Binance key maps to a column.
#[derive(Clone, Copy)]
enum T {
    /// Decimal string: the same text.
    Dec,
    /// Integer: the same number.
    Int,
    /// Milliseconds: µs in the output.
    Ms,
    /// Boolean or string: the same value.
    Same,
    /// `[[price, qty], ..]`: the same texts.
    Levels,
}

const COMMON: &[&str] = &[
    "kind",
    "exchange",
    "market",
    "symbol",
    "event_time",
    "recv_time",
];

fn columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "trade" => &["trade_id", "price", "qty", "is_buyer_maker", "trade_time"],
        "agg_trade" => &[
            "agg_trade_id",
            "first_trade_id",
            "last_trade_id",
            "price",
            "qty",
            "is_buyer_maker",
            "trade_time",
        ],
        "book_ticker" => &[
            "update_id",
            "bid_price",
            "bid_qty",
            "ask_price",
            "ask_qty",
            "transaction_time",
        ],
        "depth_update" => &[
            "first_update_id",
            "final_update_id",
            "prev_final_update_id",
            "transaction_time",
            "bids",
            "asks",
        ],
        "depth_snapshot" => &["last_update_id", "bids", "asks"],
        "kline" => &[
            "interval",
            "open_time",
            "close_time",
            "first_trade_id",
            "last_trade_id",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "quote_volume",
            "trade_count",
            "taker_buy_base_volume",
            "taker_buy_quote_volume",
            "is_closed",
        ],
        "mark_price" => &[
            "mark_price",
            "index_price",
            "estimated_settle_price",
            "funding_rate",
            "next_funding_time",
        ],
        "liquidation" => &[
            "side",
            "order_type",
            "time_in_force",
            "orig_qty",
            "price",
            "avg_price",
            "order_status",
            "last_filled_qty",
            "filled_qty",
            "trade_time",
        ],
        "ticker" => &[
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
            "open_time",
            "close_time",
            "first_trade_id",
            "last_trade_id",
            "trade_count",
        ],
        other => panic!("unexpected kind {other}"),
    }
}

/// (Binance key, column, how) per event; `None` key paths are inside `k` / `o`.
fn mapping(kind: &str) -> &'static [(&'static str, &'static str, T)] {
    use T::*;
    match kind {
        "trade" => &[
            ("t", "trade_id", Int),
            ("p", "price", Dec),
            ("q", "qty", Dec),
            ("m", "is_buyer_maker", Same),
            ("T", "trade_time", Ms),
        ],
        "agg_trade" => &[
            ("a", "agg_trade_id", Int),
            ("f", "first_trade_id", Int),
            ("l", "last_trade_id", Int),
            ("p", "price", Dec),
            ("q", "qty", Dec),
            ("m", "is_buyer_maker", Same),
            ("T", "trade_time", Ms),
        ],
        "book_ticker" => &[
            ("u", "update_id", Int),
            ("b", "bid_price", Dec),
            ("B", "bid_qty", Dec),
            ("a", "ask_price", Dec),
            ("A", "ask_qty", Dec),
            ("T", "transaction_time", Ms),
        ],
        "depth_update" => &[
            ("U", "first_update_id", Int),
            ("u", "final_update_id", Int),
            ("pu", "prev_final_update_id", Int),
            ("T", "transaction_time", Ms),
            ("b", "bids", Levels),
            ("a", "asks", Levels),
        ],
        "kline" => &[
            ("i", "interval", Same),
            ("t", "open_time", Ms),
            ("T", "close_time", Ms),
            ("f", "first_trade_id", Int),
            ("L", "last_trade_id", Int),
            ("o", "open", Dec),
            ("h", "high", Dec),
            ("l", "low", Dec),
            ("c", "close", Dec),
            ("v", "volume", Dec),
            ("q", "quote_volume", Dec),
            ("n", "trade_count", Int),
            ("V", "taker_buy_base_volume", Dec),
            ("Q", "taker_buy_quote_volume", Dec),
            ("x", "is_closed", Same),
        ],
        "mark_price" => &[
            ("p", "mark_price", Dec),
            ("i", "index_price", Dec),
            ("P", "estimated_settle_price", Dec),
            ("r", "funding_rate", Dec),
            ("T", "next_funding_time", Ms),
        ],
        "liquidation" => &[
            ("S", "side", Same),
            ("o", "order_type", Same),
            ("f", "time_in_force", Same),
            ("q", "orig_qty", Dec),
            ("p", "price", Dec),
            ("ap", "avg_price", Dec),
            ("X", "order_status", Same),
            ("l", "last_filled_qty", Dec),
            ("z", "filled_qty", Dec),
            ("T", "trade_time", Ms),
        ],
        "ticker" => &[
            ("p", "price_change", Dec),
            ("P", "price_change_percent", Dec),
            ("w", "weighted_avg_price", Dec),
            ("c", "last_price", Dec),
            ("Q", "last_qty", Dec),
            ("b", "best_bid_price", Dec),
            ("B", "best_bid_qty", Dec),
            ("a", "best_ask_price", Dec),
            ("A", "best_ask_qty", Dec),
            ("o", "open_price", Dec),
            ("h", "high_price", Dec),
            ("l", "low_price", Dec),
            ("v", "volume", Dec),
            ("q", "quote_volume", Dec),
            ("O", "open_time", Ms),
            ("C", "close_time", Ms),
            ("F", "first_trade_id", Int),
            ("L", "last_trade_id", Int),
            ("n", "trade_count", Int),
        ],
        _ => &[],
    }
}

fn expect(src: Option<&Value>, how: T) -> Value {
    match (src, how) {
        (None, _) => Value::Null,
        (Some(Value::String(s)), T::Dec) if s.is_empty() => Value::Null,
        (Some(v), T::Ms) => json!(v.as_i64().expect("integer time") * 1000),
        (Some(v), _) => v.clone(),
    }
}

/// Checks one input frame against one output object; returns how many fields were compared.
fn check(frame: &Value, out: &Value, market: &str, line: &str) -> usize {
    let out = out.as_object().expect("object");
    let kind = out["kind"].as_str().expect("kind");
    if kind == "control" {
        assert!(
            frame.get("result").is_some()
                || frame.get("code").is_some()
                || frame.get("error").is_some(),
            "{line}"
        );
        return 1;
    }
    assert!(
        kind != "error" && kind != "unknown",
        "fixture frame not decoded: {line} -> {out:?}"
    );
    // Exactly the documented columns.
    let mut want: Vec<&str> = COMMON.iter().chain(columns(kind)).copied().collect();
    let mut got: Vec<&str> = out.keys().map(String::as_str).collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "columns of {kind}");

    let (stream, data) = match frame.get("data") {
        Some(d) => (frame["stream"].as_str().unwrap_or(""), d),
        None => ("", frame),
    };
    let d = data.as_object().expect("data object");
    assert_eq!(out["exchange"], "binance");
    assert_eq!(out["market"], market);
    assert_eq!(out["event_time"], expect(d.get("E"), T::Ms), "{line}");
    assert!(
        out["recv_time"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000_000_000),
        "recv_time is ns now"
    );
    let mut n = 4;

    // Where the fields live, and the symbol.
    let inner: &Map<String, Value> = match kind {
        "kline" => d["k"].as_object().expect("k"),
        "liquidation" => d["o"].as_object().expect("o"),
        _ => d,
    };
    let symbol = match inner.get("s") {
        Some(s) => s.as_str().expect("s").to_string(),
        None => stream.split('@').next().expect("stream").to_uppercase(),
    };
    assert_eq!(out["symbol"], symbol.as_str(), "{line}");

    if kind == "depth_snapshot" {
        let (id, b, a) = match d.get("lastUpdateId") {
            Some(id) => (id, &d["bids"], &d["asks"]),
            None => (&d["u"], &d["b"], &d["a"]),
        };
        assert_eq!(&out["last_update_id"], id, "{line}");
        assert_eq!(&out["bids"], b, "{line}");
        assert_eq!(&out["asks"], a, "{line}");
        return n + 3;
    }
    for &(key, col, how) in mapping(kind) {
        assert_eq!(
            out[col],
            expect(inner.get(key), how),
            "{kind}.{col} from {key:?} in {line}"
        );
        n += 1;
    }
    n
}

fn decode(market: &str, input: &str) -> (Vec<Value>, Value) {
    let mut child = Command::new(tickwire())
        .args(["decode", "--market", market])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tickwire runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("tickwire exits");
    feeder.join().expect("feeder").expect("stdin written");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).expect("utf-8");
    let values = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let summary = serde_json::from_str(String::from_utf8_lossy(&out.stderr).trim())
        .expect("summary JSON on stderr");
    (values, summary)
}

fn run_file(market: &str, rel: &str) -> Option<(usize, usize)> {
    let Some(dir) = fixtures() else {
        eprintln!("SKIPPED: ../shared/fixtures/binance is absent; {rel} not checked");
        return None;
    };
    let text = std::fs::read_to_string(dir.join(rel)).expect("fixture readable");
    let frames: Vec<&str> = text.lines().collect();
    let (outs, summary) = decode(market, &text);
    assert_eq!(outs.len(), frames.len(), "one output line per input line");
    let mut fields = 0;
    for (line, out) in frames.iter().zip(&outs) {
        let frame: Value = serde_json::from_str(line).expect("fixture is JSON");
        fields += check(&frame, out, market, line);
    }
    assert_eq!(summary["error_total"], 0, "{summary}");
    assert_eq!(summary["frames"], frames.len());
    Some((frames.len(), fields))
}

#[test]
fn spot_samples_decode_to_their_values() {
    if let Some((n, f)) = run_file("spot", "spot.jsonl") {
        assert_eq!(n, 13);
        assert!(f > 100, "{f} fields compared");
    }
}

#[test]
fn usdm_samples_decode_to_their_values() {
    if let Some((n, f)) = run_file("usdm", "usdm.jsonl") {
        assert_eq!(n, 9);
        assert!(f > 50, "{f} fields compared");
    }
}

#[test]
fn spot_capture_decodes_to_its_values() {
    if let Some((n, _)) = run_file("spot", "captures/spot_2021-10-11.jsonl") {
        assert_eq!(n, 265);
    }
}

#[test]
fn usdm_capture_decodes_to_its_values() {
    if let Some((n, _)) = run_file("usdm", "captures/usdm_2021-07-22.jsonl") {
        assert_eq!(n, 1535);
    }
}

#[test]
fn bad_lines_get_an_error_line_each_and_a_count() {
    let input = "{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":1,\"p\":\"1.123456789\",\"q\":\"1\",\"T\":1,\"m\":true}\n\
                 not json\n\
                 \n\
                 {\"e\":\"24hrMiniTicker\",\"E\":1}\n\
                 {\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":2,\"p\":\"1.5\",\"q\":\"1\",\"T\":1,\"m\":true}\n";
    let (outs, summary) = decode("spot", input);
    let kinds: Vec<&str> = outs
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(kinds, ["error", "error", "error", "unknown", "trade"]);
    assert_eq!(
        outs[0]["error"],
        "trade: field \"p\" at byte 44: more than 8 decimal places"
    );
    assert_eq!(summary["errors"]["decimal"], 1);
    assert_eq!(summary["errors"]["syntax"], 2);
    assert_eq!(summary["unknown"], 1);
    assert_eq!(summary["records"]["trade"], 1);
}
