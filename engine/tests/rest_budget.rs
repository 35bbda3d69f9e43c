//! The REST host's weight budget against the simulator's Binance limits, over real sockets:
//! it never sends over the minute's share, takes `X-MBX-USED-WEIGHT-1M` from another client
//! of the same IP into account, and after a 429 sends nothing until `Retry-After` (so no 418).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tickwire_codecs::record::{Market, SymbolId};
use tickwire_engine::sim::market::default_symbols;
use tickwire_engine::sim::rest::RestLimits;
use tickwire_engine::sim::{Faults, SimConfig, SimServer};
use tickwire_engine::source::rest::{self, Class, HttpClient, RestError, RestHost, RestOptions};

async fn sim(weight_per_minute: u64) -> SimServer {
    SimServer::start(
        SimConfig {
            market: Market::Spot,
            symbols: default_symbols(),
            rate: 1_000,
            seed: 3,
            faults: Faults::default(),
            replay: None,
            rest: RestLimits {
                weight_per_minute,
                ban: Duration::from_secs(120),
                ..Default::default()
            },
        },
        "127.0.0.1:0",
    )
    .await
    .expect("sim")
}

/// Seconds left in the current UTC minute.
fn left_in_minute() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    60 - (ms % 60_000) / 1000
}

/// Waits for the next UTC minute if fewer than `need` seconds are left in this one, so that
/// what a test counts happens inside one minute of the budget.
async fn within_one_minute(need: u64) {
    let left = left_in_minute();
    if left < need {
        tokio::time::sleep(Duration::from_millis(left * 1000 + 300)).await;
    }
}

/// A host of the simulator's limit (as exchangeInfo's `rateLimits` would set it).
fn host(sim: &SimServer, limit: u64, share: f64) -> Arc<RestHost> {
    let h = RestHost::new(
        Market::Spot,
        &format!("http://{}", sim.addr),
        &[],
        RestOptions {
            max_weight_share: share,
            ..Default::default()
        },
    )
    .expect("host");
    h.set_weight_limit(limit);
    h
}

/// Submits `n` snapshot requests of weight 5 (limit 100) and returns their answer channel.
fn submit(
    h: &Arc<RestHost>,
    n: usize,
) -> tokio::sync::mpsc::Receiver<(SymbolId, Result<String, RestError>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    for i in 0..n {
        h.submit(
            Class::First,
            rest::depth_path(Market::Spot, "BTCUSDT", 100),
            rest::depth_weight(Market::Spot, 100),
            rest::Reply::Book(SymbolId(i as u32), tx.clone()),
        );
    }
    rx
}

/// The answers that come: until `expect` have (at most `secs`), then any more within a quiet
/// second; with `expect` 0, all that come within `secs`. The budget holds the rest until the
/// next minute, which [`within_one_minute`] keeps well away.
async fn answered(
    rx: &mut tokio::sync::mpsc::Receiver<(SymbolId, Result<String, RestError>)>,
    expect: usize,
    secs: f64,
) -> Vec<Result<String, RestError>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    while expect == 0 || out.len() < expect {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((_, r))) => out.push(r),
            _ => return out,
        }
    }
    while let Ok(Some((_, r))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
        out.push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_spends_its_share_of_the_minute_and_no_more() {
    // 200 a minute, a share of 0.8: 160, 32 snapshots of weight 5. 50 are asked for.
    let sim = sim(200).await;
    let h = host(&sim, 200, 0.8);
    within_one_minute(30).await;
    let mut rx = submit(&h, 50);
    let got = answered(&mut rx, 32, 20.0).await;
    assert_eq!(got.len(), 32, "answers within the minute's share");
    assert!(got.iter().all(|r| r.is_ok()), "{got:?}");
    assert_eq!(h.queued(), 50 - 32, "the rest wait for the next minute");
    let c = &sim.counters;
    assert_eq!(c.rest_limited.load(Ordering::Relaxed), 0, "no 429");
    assert_eq!(c.rest_banned.load(Ordering::Relaxed), 0, "no 418");
    assert_eq!(c.rest_weight.load(Ordering::Relaxed), 160);
    assert_eq!(h.stats.weight.load(Ordering::Relaxed), 160);
    assert_eq!(h.stats.requests.load(Ordering::Relaxed), 32);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_used_weight_header_counts_another_clients_spending() {
    // Another process on the same IP spends 100 of the 200 first; the host's first answer
    // says so (X-MBX-USED-WEIGHT-1M: 105), and it sends only what is left of its 160.
    let sim = sim(200).await;
    within_one_minute(30).await;
    let other = HttpClient::new(&format!("http://{}", sim.addr), &[]).expect("client");
    for _ in 0..20 {
        let a = other
            .get(&rest::depth_path(Market::Spot, "ETHUSDT", 100))
            .await
            .expect("answer");
        assert!(
            a.used_weight.is_some(),
            "X-MBX-USED-WEIGHT-1M on every answer"
        );
    }
    let h = host(&sim, 200, 0.8);
    // One first, to read the header, then the rest.
    let mut first = submit(&h, 1);
    assert_eq!(answered(&mut first, 1, 10.0).await.len(), 1);
    let mut rx = submit(&h, 30);
    let got = answered(&mut rx, 11, 10.0).await;
    // 160 - 105 = 55: 11 more of weight 5.
    assert_eq!(got.len(), 11, "what the header left of the share");
    assert_eq!(
        sim.counters.rest_limited.load(Ordering::Relaxed),
        0,
        "no 429"
    );
    assert_eq!(
        sim.counters.rest_weight.load(Ordering::Relaxed),
        100 + 5 + 55
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_429_nothing_is_sent_until_retry_after_so_no_418() {
    // Another client spends the whole minute; the host's request is answered 429, and the
    // host then waits for Retry-After (the next minute): a request before it would be a ban.
    let sim = sim(100).await;
    within_one_minute(10).await;
    let other = HttpClient::new(&format!("http://{}", sim.addr), &[]).expect("client");
    for _ in 0..20 {
        other
            .get(&rest::depth_path(Market::Spot, "ETHUSDT", 100))
            .await
            .expect("answer");
    }
    let h = host(&sim, 100, 0.8);
    let mut rx = submit(&h, 5);
    let got = answered(&mut rx, 0, 4.0).await;
    assert!(
        got.is_empty(),
        "nothing answered before the next minute: {got:?}"
    );
    assert_eq!(h.stats.status_429.load(Ordering::Relaxed), 1, "one 429");
    assert_eq!(
        h.stats.requests.load(Ordering::Relaxed),
        1,
        "one request, then the pause"
    );
    assert_eq!(
        h.queued(),
        5,
        "the refused request is queued again at its place"
    );
    assert_eq!(sim.counters.rest_limited.load(Ordering::Relaxed), 1);
    assert_eq!(
        sim.counters.rest_banned.load(Ordering::Relaxed),
        0,
        "no 418"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_info_gives_the_limit_and_the_trading_symbols() {
    let sim = SimServer::start(
        SimConfig {
            market: Market::Usdm,
            symbols: tickwire_engine::sim::market::synthetic_symbols(30),
            rate: 1_000,
            seed: 3,
            faults: Faults::default(),
            replay: None,
            rest: RestLimits {
                weight_per_minute: 1_234,
                ban: Duration::from_secs(120),
                ..Default::default()
            },
        },
        "127.0.0.1:0",
    )
    .await
    .expect("sim");
    let h = RestHost::new(
        Market::Usdm,
        &format!("http://{}", sim.addr),
        &[],
        RestOptions::default(),
    )
    .expect("host");
    let body = h
        .get(
            Class::First,
            rest::exchange_info_path(Market::Usdm).into(),
            rest::exchange_info_weight(Market::Usdm),
        )
        .await
        .expect("exchangeInfo (chunked)");
    let info = rest::parse_exchange_info(&body).expect("parses");
    assert_eq!(info.weight_per_minute, Some(1_234));
    assert_eq!(info.symbols.len(), 30);
    let all = rest::SymbolFilter::default().select(&info);
    assert_eq!(all.len(), 29, "one of the 30 is not TRADING");
    let perps = rest::SymbolFilter {
        quote_assets: vec!["USDT".into()],
        contract_types: vec!["PERPETUAL".into()],
        exclude: vec!["ETHUSDT".into()],
        shard: None,
    }
    .select(&info);
    // Two collectors with shard 1/2 and 2/2 split the market: every symbol once.
    let halves: Vec<Vec<String>> = (0..2)
        .map(|k| {
            rest::SymbolFilter {
                shard: Some((k, 2)),
                ..Default::default()
            }
            .select(&info)
        })
        .collect();
    assert!(halves.iter().all(|h| !h.is_empty()), "{halves:?}");
    let mut union: Vec<String> = halves.concat();
    union.sort();
    let mut every = all.clone();
    every.sort();
    assert_eq!(union, every, "shards overlap or leave a gap");
    assert!(perps.contains(&"BTCUSDT".to_string()) && !perps.contains(&"ETHUSDT".to_string()));
    for s in &perps {
        let i = info
            .symbols
            .iter()
            .find(|i| &i.symbol == s)
            .expect("listed");
        assert_eq!(i.quote_asset, "USDT");
        assert_eq!(i.contract_type.as_deref(), Some("PERPETUAL"));
        assert_eq!(i.status, "TRADING");
    }
    assert!(
        perps.len() < all.len(),
        "USDC and quarterly contracts are left out"
    );
    sim.stop().await;
}

/// A server that answers every request on one keep-alive connection with `status`, the
/// headers and a gzip, chunked body.
async fn gzip_server(status: &'static str, extra: &'static str, body: &'static str) -> String {
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(body.as_bytes()).expect("gzip");
        let gz = e.finish().expect("gzip");
        let (a, b) = gz.split_at(gz.len() / 2);
        let mut buf = vec![0u8; 4096];
        // Two requests on the same connection: keep-alive.
        for _ in 0..2 {
            if s.read(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
            let mut resp = format!(
                "HTTP/1.1 {status}\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n{extra}\r\n"
            )
            .into_bytes();
            for part in [a, b] {
                resp.extend(format!("{:x}\r\n", part.len()).as_bytes());
                resp.extend(part);
                resp.extend(b"\r\n");
            }
            resp.extend(b"0\r\n\r\n");
            if s.write_all(&resp).await.is_err() {
                return;
            }
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn chunked_gzip_answers_are_decoded_on_one_kept_alive_connection() {
    let body = r#"{"lastUpdateId":7,"bids":[["1.50","2"]],"asks":[["1.60","3"]]}"#;
    let base = gzip_server("200 OK", "X-MBX-USED-WEIGHT-1M: 42\r\n", body).await;
    let c = HttpClient::new(&base, &[]).expect("client");
    for _ in 0..2 {
        let a = c
            .get("/api/v3/depth?symbol=X&limit=5")
            .await
            .expect("answer");
        assert_eq!(a.body, body);
        assert_eq!(a.used_weight, Some(42));
    }
}

#[tokio::test]
async fn a_429_is_a_typed_error_with_its_retry_after_and_used_weight() {
    let base = gzip_server(
        "429 Too Many Requests",
        "Retry-After: 17\r\nX-MBX-USED-WEIGHT-1M: 6001\r\n",
        r#"{"code":-1003,"msg":"Too much request weight used"}"#,
    )
    .await;
    let e = HttpClient::new(&base, &[])
        .expect("client")
        .get("/api/v3/depth?symbol=X&limit=5")
        .await
        .expect_err("429");
    match e {
        RestError::Status {
            status,
            retry_after,
            used_weight,
            body,
        } => {
            assert_eq!(
                (status, retry_after, used_weight),
                (429, Some(17), Some(6001))
            );
            assert!(body.contains("-1003"), "{body}");
        }
        e => panic!("not a status error: {e}"),
    }
    // Nothing to connect to: a typed connect error, no panic.
    let e = HttpClient::new("http://127.0.0.1:1", &[])
        .expect("client")
        .get("/")
        .await
        .expect_err("refused");
    assert!(matches!(e, RestError::Connect { .. }), "{e}");
    assert!(matches!(
        HttpClient::new("ftp://x", &[]),
        Err(RestError::Url(_))
    ));
}

/// `/futures/data/` requests weigh nothing against the minute but have a window of their own
/// (Binance: 1,000 in 5 minutes per IP): the host sends its share of the window and holds
/// the rest, so the simulator never answers 429; a client without that window gets 429s and
/// then a ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_futures_data_window_is_kept_apart_from_the_weight() {
    let usdm = |data_per_5min| {
        SimServer::start(
            SimConfig {
                market: Market::Usdm,
                symbols: default_symbols(),
                rate: 1_000,
                seed: 3,
                faults: Faults::default(),
                replay: None,
                rest: RestLimits {
                    data_per_5min,
                    ban: Duration::from_secs(120),
                    ..Default::default()
                },
            },
            "127.0.0.1:0",
        )
    };
    let sim = usdm(20).await.expect("sim");
    // The simulator allows 20 in 5 minutes; a share of 0.8 is 16.
    let h = RestHost::new(
        Market::Usdm,
        &format!("http://{}", sim.addr),
        &[],
        RestOptions {
            data_per_5min: 20,
            ..Default::default()
        },
    )
    .expect("host");
    assert_eq!(h.data_cap(), 16);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let path = "/futures/data/globalLongShortAccountRatio?symbol=BTCUSDT&period=5m&limit=3";
    for i in 0..24 {
        h.submit(
            Class::Poll,
            path.to_string(),
            0,
            rest::Reply::Book(SymbolId(i), tx.clone()),
        );
    }
    let got = answered(&mut rx, 16, 20.0).await;
    assert_eq!(got.len(), 16, "the window's share");
    for r in &got {
        let body = r.as_ref().expect("answered");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v.as_array().map(Vec::len), Some(3), "{body}");
    }
    assert_eq!(h.queued(), 8, "the rest wait for the window");
    // Weight-0 requests left the minute's weight alone: a snapshot still goes at once.
    let snap = h
        .get(
            Class::First,
            rest::depth_path(Market::Usdm, "BTCUSDT", 50),
            2,
        )
        .await;
    assert!(snap.is_ok(), "{snap:?}");
    let c = &sim.counters;
    assert_eq!(c.rest_limited.load(Ordering::Relaxed), 0, "no 429");
    assert_eq!(c.rest_banned.load(Ordering::Relaxed), 0, "no 418");
    assert_eq!(c.rest_data.load(Ordering::Relaxed), 16);

    // The plain client loop, no window: request 21 is a 429, and the next one a ban.
    let sim2 = usdm(20).await.expect("sim");
    let client = HttpClient::new(&format!("http://{}", sim2.addr), &[]).expect("client");
    let mut statuses = Vec::new();
    for _ in 0..22 {
        statuses.push(match client.get(path).await {
            Ok(_) => 200,
            Err(RestError::Status { status, .. }) => status,
            Err(e) => panic!("{e}"),
        });
    }
    assert_eq!(&statuses[..20], &[200; 20]);
    assert_eq!(&statuses[20..], &[429, 418]);
}
