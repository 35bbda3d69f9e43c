use super::*;
use crate::decimal::to_string;

type Decoded = Vec<(Record, Vec<Level>)>;

fn dec(market: Market, frame: &str) -> (Result<Decoded>, Decoder) {
    let mut d = Decoder::new(market, SymbolTable::new());
    let mut out = Vec::new();
    let r = d
        .decode(frame.as_bytes(), 7, &mut |r: &Record, lv: &[Level]| {
            out.push((*r, lv.to_vec()))
        })
        .map(|_| out);
    (r, d)
}

fn one(market: Market, frame: &str) -> (Record, Vec<Level>, Decoder) {
    let (r, d) = dec(market, frame);
    let mut v = r.unwrap_or_else(|e| panic!("{frame}: {e}"));
    assert_eq!(v.len(), 1, "{frame}");
    let (r, l) = v.remove(0);
    (r, l, d)
}

fn sym(d: &Decoder, r: &Record) -> String {
    d.symbols()
        .name(r.header().symbol)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

#[test]
fn spot_trade() {
    let (r, _, d) = one(
        Market::Spot,
        r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#,
    );
    let Record::Trade(t) = r else { panic!("{r:?}") };
    assert_eq!(sym(&d, &r), "BNBBTC");
    assert_eq!(t.header.event_time, 1_672_515_782_136_000);
    assert_eq!(t.header.recv_time, 7);
    assert_eq!(t.header.market, Market::Spot as u8);
    assert_eq!(t.trade_id, 12345);
    assert_eq!(
        to_string(t.price.into(), t.dp.get(0).unwrap_or(99)),
        "0.001"
    );
    assert_eq!(to_string(t.qty.get(), t.dp.get(1).unwrap_or(99)), "100");
    assert_eq!(t.is_buyer_maker, 1);
    assert_eq!(d.stats().records[Kind::Trade.index()], 1);
}

#[test]
fn book_tickers_of_both_markets() {
    let (r, _, _) = one(
        Market::Spot,
        r#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
    );
    let Record::BookTicker(b) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (b.update_id, b.bid_price, b.ask_qty.get()),
        (400_900_217, 2_535_190_000, 4_066_000_000)
    );
    assert_eq!(
        (b.header.event_time, b.transaction_time),
        (NULL_I64, NULL_I64)
    );
    let (r, _, _) = one(
        Market::Usdm,
        r#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
    );
    let Record::BookTicker(b) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (b.header.event_time, b.transaction_time),
        (1_568_014_460_893_000, 1_568_014_460_891_000)
    );
}

#[test]
fn depth_diffs_and_partial_depth() {
    let (r, lv, _) = one(
        Market::Usdm,
        r#"{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"],["0.0027","0"]]}"#,
    );
    let Record::DepthUpdate(u) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (u.first_update_id, u.final_update_id, u.prev_final_update_id),
        (157, 160, 149)
    );
    assert_eq!(u.levels.bids(&lv).len(), 1);
    let asks = u.levels.asks(&lv);
    assert_eq!(asks.len(), 2);
    assert_eq!((asks[1].price, asks[1].qty.get()), (270_000, 0));

    // Spot partial depth: no symbol in the payload, it comes from the stream name.
    let (r, lv, d) = one(
        Market::Spot,
        r#"{"stream":"bnbbtc@depth5@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}"#,
    );
    let Record::DepthSnapshot(s) = r else {
        panic!("{r:?}")
    };
    assert_eq!(sym(&d, &r), "BNBBTC");
    assert_eq!(
        (s.last_update_id, s.levels.bids(&lv)[0].price),
        (160, 240_000)
    );

    // USD-M partial depth has the diff shape; the stream name says it is a snapshot.
    let (r, lv, _) = one(
        Market::Usdm,
        r#"{"stream":"btcusdt@depth20@100ms","data":{"e":"depthUpdate","E":1571889248277,"T":1571889248276,"s":"BTCUSDT","U":390497796,"u":390497878,"pu":390497794,"b":[["7403.89","0.002"],["7403.90","3.906"]],"a":[["7405.96","3.340"],["7406.63","4.525"]]}}"#,
    );
    let Record::DepthSnapshot(s) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (
            s.last_update_id,
            s.levels.bids(&lv).len(),
            s.levels.asks(&lv).len()
        ),
        (390_497_878, 2, 2)
    );

    // Raw partial depth needs the stream name from the connection.
    let (r, _) = dec(Market::Spot, r#"{"lastUpdateId":160,"bids":[],"asks":[]}"#);
    assert_eq!(
        r.err(),
        Some(DecodeError::MissingField {
            event: "depth",
            field: "stream"
        })
    );
    let mut d = Decoder::new(Market::Spot, SymbolTable::new());
    let got = d.decode_stream(
        br#"{"lastUpdateId":160,"bids":[],"asks":[]}"#,
        Some(b"ethbtc@depth10"),
        0,
        &mut |_: &Record, _: &[Level]| {},
    );
    assert_eq!(got, Ok(Frame::Data { records: 1 }));
}

#[test]
fn kline_mark_price_liquidation() {
    let (r, _, _) = one(
        Market::Spot,
        r#"{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}"#,
    );
    let Record::Kline(k) = r else { panic!("{r:?}") };
    assert_eq!(
        (k.interval, k.is_closed, k.trade_count),
        (Interval::M1 as u8, 0, 100)
    );
    assert_eq!(
        to_string(k.open.into(), k.dp.get(0).unwrap_or(99)),
        "0.0010"
    );
    assert_eq!(k.close_time, 1_672_515_839_999_000);

    let (r, _, _) = one(
        Market::Usdm,
        r#"{"e":"markPriceUpdate","E":1,"s":"BTCUSDQ_0328","p":"100.5","r":"","T":0}"#,
    );
    let Record::MarkPrice(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (m.dp.get(1), m.dp.get(2), m.dp.get(3)),
        (None, None, None),
        "absent and empty are null"
    );
    assert_eq!(m.next_funding_time, 0);

    let (r, _, _) = one(
        Market::Usdm,
        r#"{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}"#,
    );
    let Record::Liquidation(l) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (l.side, l.order_type, l.time_in_force, l.order_status),
        (2, 1, 2, 3)
    );
    assert_eq!((l.price, l.orig_qty.get()), (991_000_000_000, 1_400_000));
}

#[test]
fn ticker_volume_beyond_i64() {
    let (r, _, _) = one(
        Market::Spot,
        r#"{"stream":"pepeusdt@24hrTicker","data":{"e":"24hrTicker","E":1700000000123,"s":"PEPEUSDT","p":"0.00000012","P":"1.112","w":"0.00001101","x":"0.00001079","c":"0.00001091","Q":"1500000000.00","b":"0.00001090","B":"250000000.00","a":"0.00001091","A":"180000000.00","o":"0.00001079","h":"0.00001130","l":"0.00001070","v":"3012345678901.00","q":"33165432.10987654","O":1699913600123,"C":1700000000123,"F":100000000,"L":101500000,"n":1500001}}"#,
    );
    let Record::Ticker(t) = r else {
        panic!("{r:?}")
    };
    assert_eq!(t.volume.get(), 301_234_567_890_100_000_000);
    assert!(t.volume.get() > i128::from(i64::MAX));
    assert_eq!(
        to_string(t.quote_volume.get(), t.dp.get(13).unwrap_or(99)),
        "33165432.10987654"
    );
}

#[test]
fn controls_in_every_shape() {
    let mut d = Decoder::new(Market::Spot, SymbolTable::new());
    let mut n = 0;
    let mut sink = |_: &Record, _: &[Level]| n += 1;
    let r = d.decode(br#"{"result":null,"id":1}"#, 0, &mut sink);
    assert_eq!(
        r,
        Ok(Frame::Control(Control::Result {
            id: b"1",
            result: b"null"
        }))
    );
    let r = d.decode(
        br#"{"result":["btcusdt@aggTrade"],"id":"ab"}"#,
        0,
        &mut sink,
    );
    assert_eq!(
        r,
        Ok(Frame::Control(Control::Result {
            id: b"\"ab\"",
            result: br#"["btcusdt@aggTrade"]"#
        }))
    );
    let r = d.decode(
        br#"{"code":2,"msg":"Invalid request: unknown variable","id":1}"#,
        0,
        &mut sink,
    );
    assert_eq!(
        r,
        Ok(Frame::Control(Control::Error {
            id: b"1",
            code: 2,
            msg: b"Invalid request: unknown variable"
        }))
    );
    let r = d.decode(
        br#"{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}"#,
        0,
        &mut sink,
    );
    assert!(
        matches!(r, Ok(Frame::Control(Control::Error { code: 2, .. }))),
        "{r:?}"
    );
    assert_eq!(
        r.ok().and_then(|f| if let Frame::Control(c) = f {
            c.id()
        } else {
            None
        }),
        Some(2)
    );
    let r = d.decode(br#"{"e":"serverShutdown","E":1000}"#, 0, &mut sink);
    assert_eq!(
        r,
        Ok(Frame::Control(Control::ServerShutdown {
            event_time: 1_000_000
        }))
    );
    assert_eq!(d.stats().controls, 5);
    assert_eq!(n, 0);
}

#[test]
fn unknown_events_are_counted_not_errors() {
    let mut d = Decoder::new(Market::Spot, SymbolTable::new());
    let r = d.decode(
        br#"{"e":"24hrMiniTicker","E":1,"s":"X"}"#,
        0,
        &mut |_: &Record, _: &[Level]| {},
    );
    assert_eq!(
        r,
        Ok(Frame::Unknown {
            event: b"24hrMiniTicker"
        })
    );
    let r = d.decode(br#"{"hello":1}"#, 0, &mut |_: &Record, _: &[Level]| {});
    assert_eq!(r, Ok(Frame::Unknown { event: b"" }));
    assert_eq!((d.stats().unknown, d.stats().total_errors()), (2, 0));
}

#[test]
fn all_market_arrays_yield_every_element() {
    let (r, _) = dec(
        Market::Usdm,
        r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1.0"},{"e":"markPriceUpdate","E":1,"s":"ETHUSDT","p":"2.0"}]}"#,
    );
    assert_eq!(r.map(|v| v.len()).ok(), Some(2));
    let (r, _) = dec(
        Market::Usdm,
        r#"[{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1.0"}]"#,
    );
    assert_eq!(r.map(|v| v.len()).ok(), Some(1));
}

#[test]
fn bad_input_is_a_precise_error() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"0.000000001","q":"1","T":1,"m":true}"#,
            r#"trade: field "p" at byte 44: more than 8 decimal places"#,
        ),
        (
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","T":1,"m":true}"#,
            r#"trade: missing field "q""#,
        ),
        (
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1e3","q":"1","T":1,"m":true}"#,
            r#"trade: field "p" at byte 44: malformed decimal"#,
        ),
        (
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":"1","p":"1","q":"1","T":1,"m":true}"#,
            r#"trade: field "t" at byte 38: not an integer"#,
        ),
        (
            r#"{"e":"trade","E":1,"s":"btc","t":1,"p":"1","q":"1","T":1,"m":true}"#,
            "trade: symbol at byte 24: invalid symbol",
        ),
        (
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"100000000000","q":"1","T":1,"m":true}"#,
            r#"trade: field "p" at byte 44: decimal out of range"#,
        ),
        (
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1,"m":1}"#,
            r#"trade: field "m" at byte 65: not a boolean"#,
        ),
        (
            r#"{"e":"trade","E":99999999999999999,"s":"B","t":1,"p":"1","q":"1","T":1,"m":true}"#,
            r#"trade: field "E" at byte 17: time out of range"#,
        ),
        (
            r#"{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"HOLD","o":"LIMIT","f":"IOC","q":"1","p":"1","X":"FILLED","T":1}}"#,
            r#"forceOrder: field "S" at byte 48: unknown value"#,
        ),
        (
            r#"{"e":"trade""#,
            "invalid frame at byte 12: expected ',' or '}'",
        ),
        ("", "invalid frame at byte 0: expected '{'"),
        (
            r#"{"e":"depthUpdate","E":1,"s":"B","U":1,"u":2,"b":[["1"]],"a":[]}"#,
            "invalid frame at byte 54: expected ',' in a level",
        ),
    ];
    for &(frame, want) in cases {
        let (r, d) = dec(Market::Spot, frame);
        match r {
            Ok(v) => panic!("{frame}: accepted {v:?}"),
            Err(e) => assert_eq!(e.to_string(), want, "{frame}"),
        }
        assert_eq!(d.stats().total_errors(), 1);
    }
}

#[test]
fn microsecond_time_unit() {
    let mut d = Decoder::new(Market::Spot, SymbolTable::new()).with_time_unit(TimeUnit::Micros);
    let mut got = None;
    d.decode(
        br#"{"e":"trade","E":1672515782136001,"s":"BNBBTC","t":1,"p":"1","q":"1","T":1672515782136000,"m":false}"#,
        0,
        &mut |r: &Record, _: &[Level]| got = Some(r.header().event_time),
    )
    .expect("decodes");
    assert_eq!(got, Some(1_672_515_782_136_001));
}
