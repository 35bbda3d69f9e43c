//! Helpers for tickwire's end-to-end tests: the built binary and the shared fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use tickwire_codecs::arrow::BatchBuilder;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::*;
use tickwire_codecs::symbol::SymbolTable;
use tickwire_sinks::{Batch, BatchKey};

/// The workspace root.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// `shared/fixtures/binance`, beside the checkout (or `$TICKWIRE_SHARED/fixtures/binance`).
pub fn fixtures() -> Option<PathBuf> {
    let shared = std::env::var_os("TICKWIRE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"));
    let p = shared.join("fixtures/binance");
    p.is_dir().then_some(p)
}

/// The `tickwire` binary of this profile, built once per test process (like `escargot`):
/// the tests exercise the real executable, not a library call.
pub fn tickwire() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = !cfg!(debug_assertions);
        let mut c = Command::new(cargo);
        c.current_dir(workspace()).args([
            "build",
            "--quiet",
            "-p",
            "tickwire-engine",
            "--bin",
            "tickwire",
        ]);
        if release {
            c.arg("--release");
        }
        let st = c.status().expect("cargo runs");
        assert!(st.success(), "building tickwire failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target
            .join(if release { "release" } else { "debug" })
            .join("tickwire")
    })
}

/// POSTs `sql` to the ClickHouse HTTP interface at `$TICKWIRE_CLICKHOUSE_URL`
/// (default `http://127.0.0.1:8123`) and returns the body, or the server's error text.
pub fn clickhouse(sql: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let url =
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = std::net::TcpStream::connect(&hostport)
        .map_err(|e| format!("ClickHouse at {url} unreachable: {e}"))?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
        sql.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(body)
    } else {
        Err(body)
    }
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = b.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        b = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The exact value of decimal text, for comparing what servers print.
pub fn dec(s: &str) -> i128 {
    tickwire_codecs::decimal::parse_i128(s.as_bytes())
        .map(|p| p.raw)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// One batch per (kind, market) present in the benchmark frames, each row repeated `copies`
/// times with distinct receive times.
pub fn bench_batches(copies: usize) -> Vec<Batch> {
    let table = SymbolTable::new();
    let mut out = Vec::new();
    for (market, file) in [(Market::Spot, "spot"), (Market::Usdm, "usdm")] {
        let text = std::fs::read_to_string(workspace().join(format!("benches/data/{file}.jsonl")))
            .expect("bench data");
        let streams = [
            "x@trade",
            "x@aggTrade",
            "x@bookTicker",
            "x@depth@100ms",
            "btcusdt@depth20@100ms",
            "x@kline_1m",
        ];
        let mut builders: Vec<BatchBuilder> = Kind::ALL
            .iter()
            .map(|&k| BatchBuilder::new(k, 16))
            .collect();
        let mut dec = Decoder::new(market, table.clone());
        for (i, line) in text.lines().enumerate() {
            for c in 0..copies {
                let stream = streams.get(i).copied().unwrap_or("x@other");
                dec.decode_stream(
                    line.as_bytes(),
                    Some(stream.as_bytes()),
                    1_700_000_000_000_000_000 + c as i64,
                    &mut |r: &Record, lv: &[Level]| {
                        let name = table.name(r.header().symbol).unwrap_or_default();
                        builders[r.kind().index()]
                            .append(r, lv, &name)
                            .expect("append");
                    },
                )
                .expect("decodes");
            }
        }
        for b in builders.iter_mut().filter(|b| !b.is_empty()) {
            let kind = b.kind();
            let data = b.finish().expect("batch");
            out.push(Batch {
                key: BatchKey {
                    kind,
                    market,
                    day: 19_675,
                },
                seq: out.len() as u64 + 1,
                data: Arc::new(data),
                origin: None,
            });
        }
    }
    out
}

/// A batch of `n` spot BTCUSDT trades with ids from `first_id` (its sequence number), prices
/// and quantities distinct per row.
pub fn trade_batch(first_id: i64, n: usize) -> Batch {
    let mut b = BatchBuilder::new(Kind::Trade, n);
    for i in 0..n as i64 {
        let mut dp = tickwire_codecs::decimal::DpSet::ALL_NULL;
        dp.set(0, 2);
        dp.set(1, 3);
        let t = Trade {
            header: Header::new(
                Kind::Trade,
                Market::Spot,
                SymbolId(0),
                1_700_000_000_000_000 + i,
                1_700_000_000_000_000_000 + i,
            ),
            trade_id: first_id + i,
            price: 3_700_000_000_000 + i,
            qty: (1_000_000i128 + i128::from(i)).into(),
            trade_time: 1_700_000_000_000_000 + i,
            dp,
            is_buyer_maker: (i % 2) as u8,
            pad: [0; 7],
        };
        b.append(&Record::Trade(t), &[], "BTCUSDT").expect("append");
    }
    Batch {
        key: BatchKey {
            kind: Kind::Trade,
            market: Market::Spot,
            day: 19_675,
        },
        seq: first_id as u64,
        data: Arc::new(b.finish().expect("batch")),
        origin: None,
    }
}

/// `$TICKWIRE_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres` (the
/// machine's server, trust auth).
pub fn postgres_url() -> String {
    std::env::var("TICKWIRE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs `sql` with `psql` (libpq, a real client) against [`postgres_url`]; returns its
/// unaligned, tuples-only output, or the error text.
pub fn postgres(sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(postgres_url())
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One trade of the candle tests: (symbol, trade time µs, trade id, price raw, qty raw).
pub type TradeRow = (&'static str, i64, i64, i64, i128);

/// A minute boundary (µs): the candle tests' trades start here.
pub const CANDLE_T0: i64 = 1_700_000_040_000_000;

/// 90 trades each of BTCUSDT and ETHUSDT, 2 s apart from [`CANDLE_T0`] (30 a minute, three
/// minutes), with pseudo-random prices and quantities.
pub fn candle_trades() -> Vec<TradeRow> {
    let mut trades = Vec::new();
    let mut x: u64 = 12345;
    for (s, sym) in ["BTCUSDT", "ETHUSDT"].iter().enumerate() {
        for i in 0..90i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            trades.push((
                *sym,
                CANDLE_T0 + i * 2_000_000 + s as i64,
                1_000 + i,
                3_000_000_000_000 + (x % 10_000) as i64 * 1_000_000,
                1_000_000 + (x % 1_000) as i128,
            ));
        }
    }
    trades
}

/// A spot trades batch of `rows` (receive time = trade time), sequence `seq`.
pub fn trade_rows_batch(rows: &[&TradeRow], seq: u64) -> Batch {
    let mut b = BatchBuilder::new(Kind::Trade, rows.len());
    for &&(sym, time, id, price, qty) in rows {
        let mut dp = tickwire_codecs::decimal::DpSet::ALL_NULL;
        dp.set(0, 8);
        dp.set(1, 8);
        let t = Trade {
            header: Header::new(Kind::Trade, Market::Spot, SymbolId(0), time, time * 1000),
            trade_id: id,
            price,
            qty: qty.into(),
            trade_time: time,
            dp,
            is_buyer_maker: 0,
            pad: [0; 7],
        };
        b.append(&Record::Trade(t), &[], sym).expect("append");
    }
    Batch {
        key: BatchKey {
            kind: Kind::Trade,
            market: Market::Spot,
            day: 19_675,
        },
        seq,
        data: Arc::new(b.finish().expect("batch")),
        origin: None,
    }
}

/// One expected 1-minute candle: symbol, minute start (s), open, high, low, close (raw), volume
/// (raw), trade count.
pub type Candle = (&'static str, i64, i64, i64, i64, i64, i128, usize);

/// [`expected_candles`] as text lines the way a store prints them: symbol, the minute start
/// in seconds when `with_minute`, open, high, low, close and volume as exact decimals, trade
/// count, joined by `sep`.
pub fn expected_candle_lines(trades: &[TradeRow], sep: &str, with_minute: bool) -> Vec<String> {
    let fmt = |raw: i128| tickwire_codecs::decimal::to_string(raw, 8);
    expected_candles(trades)
        .into_iter()
        .map(|(sym, minute, open, high, low, close, vol, n)| {
            let mut f = vec![sym.to_string()];
            if with_minute {
                f.push(minute.to_string());
            }
            f.extend([open, high, low, close].map(|p| fmt(p.into())));
            f.push(fmt(vol));
            f.push(n.to_string());
            f.join(sep)
        })
        .collect()
}

/// The 1-minute candles of [`candle_trades`], by symbol then minute, open and close by
/// (trade time, id).
pub fn expected_candles(trades: &[TradeRow]) -> Vec<Candle> {
    let mut want = Vec::new();
    for sym in ["BTCUSDT", "ETHUSDT"] {
        for m in 0..3i64 {
            let mut ts: Vec<_> = trades
                .iter()
                .filter(|t| t.0 == sym && (t.1 - CANDLE_T0) / 60_000_000 == m)
                .collect();
            ts.sort_by_key(|t| (t.1, t.2));
            let high = ts.iter().map(|t| t.3).max().expect("trades");
            let low = ts.iter().map(|t| t.3).min().expect("trades");
            let vol: i128 = ts.iter().map(|t| t.4).sum();
            want.push((
                sym,
                CANDLE_T0 / 1_000_000 + m * 60,
                ts[0].3,
                high,
                low,
                ts[ts.len() - 1].3,
                vol,
                ts.len(),
            ));
        }
    }
    want
}
