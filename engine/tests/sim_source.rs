//! The simulator's control messages, limits and faults, and the source's subscribe mode, idle
//! watchdog and replay, over real WebSocket connections on loopback. Conditions are waited on
//! with a deadline, never with fixed sleeps.

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::{Kind, Market};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_engine::pipeline::queue::QueueCounters;
use tickwire_engine::sim::market::default_symbols;
use tickwire_engine::sim::{Faults, Replay, SimConfig, SimServer};
use tickwire_engine::source::{self, SourceConfig};
use tokio_tungstenite::tungstenite::Message;

fn sim_config(market: Market, rate: u64, faults: Faults) -> SimConfig {
    SimConfig {
        market,
        symbols: default_symbols(),
        rate,
        seed: 1,
        faults,
        replay: None,
        rest: Default::default(),
    }
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads until a text frame that is a control answer (not market data) arrives.
async fn answer(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
            if v.get("id").is_some() || v.get("error").is_some() {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_messages_are_answered_like_binance() {
    let sim = SimServer::start(
        sim_config(Market::Spot, 2_000, Faults::default()),
        "127.0.0.1:0",
    )
    .await
    .expect("sim");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", sim.addr))
        .await
        .expect("connect");
    let send = |v: &str| Message::text(v.to_string());
    ws.send(send(
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@aggTrade"],"id":1}"#,
    ))
    .await
    .expect("send");
    assert_eq!(
        answer(&mut ws).await,
        serde_json::json!({"result": null, "id": 1})
    );
    // Market data flows: raw frames on /ws.
    let mut trades = 0;
    while trades < 5 {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            if t.as_str().contains(r#""e":"trade""#) {
                trades += 1;
            }
        }
    }
    ws.send(send(r#"{"method":"LIST_SUBSCRIPTIONS","id":2}"#))
        .await
        .expect("send");
    assert_eq!(
        answer(&mut ws).await,
        serde_json::json!({"result": ["btcusdt@trade", "btcusdt@aggTrade"], "id": 2})
    );
    ws.send(send(
        r#"{"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":3}"#,
    ))
    .await
    .expect("send");
    assert_eq!(
        answer(&mut ws).await,
        serde_json::json!({"result": null, "id": 3})
    );
    ws.send(send(
        r#"{"method":"SUBSCRIBE","params":["nope@trade"],"id":4}"#,
    ))
    .await
    .expect("send");
    let e = answer(&mut ws).await;
    assert_eq!(e["error"]["code"], 2, "{e}");
    assert_eq!(e["id"], 4);
    // Pace: the next message would be the 5th in a second, still allowed; then wait a second.
    ws.send(send("{not json")).await.expect("send");
    assert_eq!(answer(&mut ws).await["error"]["code"], 3);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the limit's own window
    ws.send(send(r#"{"method":"LIST_SUBSCRIPTIONS","id":"x"}"#))
        .await
        .expect("send");
    assert_eq!(
        answer(&mut ws).await,
        serde_json::json!({"result": ["btcusdt@trade"], "id": "x"})
    );
    let c = sim.counters.clone();
    assert_eq!(c.controls.load(Ordering::Relaxed), 6);
    assert_eq!(c.control_errors.load(Ordering::Relaxed), 2);
    drop(ws);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_five_messages_a_second_close_the_connection() {
    let sim = SimServer::start(
        sim_config(Market::Spot, 100, Faults::default()),
        "127.0.0.1:0",
    )
    .await
    .expect("sim");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", sim.addr))
        .await
        .expect("connect");
    for i in 0..7 {
        let _ = ws
            .send(Message::text(format!(
                r#"{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}"#
            )))
            .await;
    }
    let mut code = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        match m {
            Ok(Message::Close(Some(f))) => {
                code = Some(u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(1008), "closed with policy violation");
    assert_eq!(sim.counters.rate_limited.load(Ordering::Relaxed), 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_must_be_answered_in_time() {
    let faults = Faults {
        ping_every: Some(Duration::from_millis(100)),
        pong_deadline: Duration::from_millis(300),
        ..Faults::default()
    };
    let sim = SimServer::start(sim_config(Market::Spot, 1_000, faults), "127.0.0.1:0")
        .await
        .expect("sim");
    let url = format!("ws://{}/stream?streams=btcusdt@trade", sim.addr);
    // A client that reads (tungstenite answers pings as it reads) stays connected.
    let (mut good, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let c = sim.counters.clone();
    let reader = tokio::spawn(async move {
        let mut frames = 0u64;
        while let Some(Ok(m)) = good.next().await {
            if m.is_text() {
                frames += 1;
            }
            if m.is_close() {
                break;
            }
        }
        frames
    });
    wait_until("3 pongs", Duration::from_secs(10), || {
        c.pongs.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert_eq!(c.pong_timeouts.load(Ordering::Relaxed), 0);
    // A client that does not read never answers: closed after the deadline.
    let (_silent, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    wait_until("a pong timeout", Duration::from_secs(10), || {
        c.pong_timeouts.load(Ordering::Relaxed) == 1
    })
    .await;
    sim.stop().await;
    assert!(reader.await.expect("reader") > 0);
}

/// The REST host of `sim`'s address (its books' snapshots go through its weight budget).
fn rest_host(market: Market, sim: &SimServer) -> Arc<tickwire_engine::source::rest::RestHost> {
    tickwire_engine::source::rest::RestHost::new(
        market,
        &format!("http://{}", sim.addr),
        &[],
        Default::default(),
    )
    .expect("REST host")
}

fn source_config(url: String, market: Market, subscribe: bool, idle: Duration) -> SourceConfig {
    SourceConfig {
        drain_on_stop: true,
        subscribe,
        idle_timeout: idle,
        ..SourceConfig::new(url, market)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_reconnected_by_the_watchdog() {
    // A bare /ws with no subscription: the simulator sends nothing.
    let sim = SimServer::start(
        sim_config(Market::Spot, 1_000, Faults::default()),
        "127.0.0.1:0",
    )
    .await
    .expect("sim");
    let (tx, _rx) = crossbeam_channel::bounded(1024);
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = source_config(
        format!("ws://{}/ws", sim.addr),
        Market::Spot,
        false,
        Duration::from_millis(200),
    );
    let task = tokio::spawn(source::run(
        cfg,
        SymbolTable::new(),
        tx,
        counters.clone(),
        stop_rx,
    ));
    wait_until("two idle reconnects", Duration::from_secs(15), || {
        counters.idle_reconnects.load(Ordering::Relaxed) >= 2
    })
    .await;
    // Counted by the server once its side of the handshake is done.
    wait_until("three connections", Duration::from_secs(5), || {
        sim.counters.connections.load(Ordering::Relaxed) >= 3
    })
    .await;
    let _ = stop_tx.send(true);
    sim.stop().await;
    task.await.expect("task").expect("source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_subscribes_and_checks_the_list() {
    let sim = SimServer::start(
        sim_config(Market::Usdm, 5_000, Faults::default()),
        "127.0.0.1:0",
    )
    .await
    .expect("sim");
    let streams: Vec<String> = (0..450)
        .map(|i| {
            ["btcusdt", "ethusdt", "solusdt"][i % 3].to_string()
                + ["@trade", "@aggTrade", "@bookTicker"][(i / 3) % 3]
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let url = format!("ws://{}/stream?streams={}", sim.addr, streams.join("/"));
    let (tx, rx) = crossbeam_channel::bounded(1 << 20);
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = source_config(url, Market::Usdm, true, Duration::from_secs(30));
    let task = tokio::spawn(source::run(
        cfg,
        SymbolTable::new(),
        tx,
        counters.clone(),
        stop_rx,
    ));
    wait_until("records after subscribing", Duration::from_secs(15), || {
        counters.pushed.load(Ordering::Relaxed) > 1000
    })
    .await;
    // One SUBSCRIBE (9 streams fit one request) and the LIST check, both answered.
    wait_until("the list answer", Duration::from_secs(15), || {
        sim.counters.controls.load(Ordering::Relaxed) == 2
    })
    .await;
    let _ = stop_tx.send(true);
    let simc = sim.counters.clone();
    sim.stop().await;
    task.await.expect("task").expect("source");
    assert_eq!(counters.control_requests.load(Ordering::Relaxed), 2);
    assert_eq!(counters.control_errors.load(Ordering::Relaxed), 0);
    let sent: u64 = simc.total();
    let arrived: usize = rx.try_iter().map(|b| b.len()).sum();
    assert_eq!(arrived as u64, sent, "every frame sent arrived as a record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_is_replayed_frame_for_frame() {
    let Some((replay, want)) = usdm_capture() else {
        return;
    };
    assert!(want.iter().sum::<u64>() > 1000);
    let mut cfg = sim_config(Market::Usdm, 0, Faults::default());
    cfg.replay = Some(replay.clone());
    let sim = SimServer::start(cfg, "127.0.0.1:0").await.expect("sim");
    let (tx, rx) = crossbeam_channel::bounded(1 << 20);
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let src = source_config(
        format!("ws://{}/stream", sim.addr),
        Market::Usdm,
        false,
        Duration::from_secs(30),
    );
    let task = tokio::spawn(source::run(
        src,
        SymbolTable::new(),
        tx,
        counters.clone(),
        stop_rx,
    ));
    let total: u64 = want.iter().sum();
    wait_until("every replayed frame", Duration::from_secs(30), || {
        counters.frames.load(Ordering::Relaxed) >= replay.lines.len() as u64
    })
    .await;
    let _ = stop_tx.send(true);
    let simc = sim.counters.clone();
    sim.stop().await;
    task.await.expect("task").expect("source");
    let mut got = [0u64; Kind::COUNT];
    for m in rx.try_iter().flatten() {
        got[m.rec.kind().index()] += 1;
    }
    for k in Kind::ALL.iter().filter(|k| **k != Kind::Gap) {
        assert_eq!(got[k.index()], want[k.index()], "{k:?}");
        assert_eq!(
            simc.sent[k.index()].load(Ordering::Relaxed),
            want[k.index()],
            "{k:?}"
        );
    }
    assert_eq!(got.iter().sum::<u64>() - got[Kind::Gap.index()], total);
}

/// The real USD-M capture of ../shared as a replay, with the records per kind it decodes to;
/// `None` (the test is skipped, and says so) without ../shared.
fn usdm_capture() -> Option<(Arc<Replay>, [u64; Kind::COUNT])> {
    let Some(path) = std::env::var_os("TICKWIRE_SHARED")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")))
        .map(|p| p.join("fixtures/binance/captures/usdm_2021-07-22.jsonl"))
        .filter(|p| p.exists())
    else {
        eprintln!("SKIPPED: no ../shared/fixtures");
        return None;
    };
    let replay = Arc::new(Replay::load(&path, Market::Usdm).expect("replay"));
    let mut want = [0u64; Kind::COUNT];
    for k in replay.kinds.iter().flatten() {
        want[k.index()] += 1;
    }
    Some((replay, want))
}

/// Last update id, bids, asks as (price, quantity) raw.
type Book = (i64, Vec<(i64, i128)>, Vec<(i64, i128)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_resynced_after_gaps_equal_the_simulators_books() {
    for market in [Market::Spot, Market::Usdm] {
        // A gap every 800 frames: each book breaks every few seconds, seldom enough that
        // the churn backoff (after 3 snapshots of a book within a minute) leaves moments when
        // every book is live (every 400 left that to chance: 1 run in 3 timed out).
        let faults = Faults {
            gap_every: 800,
            ..Faults::default()
        };
        let sim = SimServer::start(sim_config(market, 4_000, faults), "127.0.0.1:0")
            .await
            .expect("sim");
        let sim_books = sim.books();
        let url = sim.combined_url(market, &default_symbols());
        let (tx, rx) = crossbeam_channel::bounded(1 << 22);
        let counters = Arc::new(QueueCounters::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut cfg = source_config(url, market, false, Duration::from_secs(30));
        cfg.rest = Some(rest_host(market, &sim));
        cfg.book_every = Some(Duration::from_millis(200));
        cfg.book_levels = 1000;
        let symbols = SymbolTable::new();
        let task = tokio::spawn(source::run(
            cfg,
            symbols.clone(),
            tx,
            counters.clone(),
            stop_rx,
        ));
        wait_until(
            "books resynced after injected gaps",
            Duration::from_secs(60),
            || {
                // ... and every book live at this moment (a book that broke three times
                // within a minute waits a while for its next snapshot).
                counters.resyncs.load(Ordering::Relaxed) >= 3
                    && counters.books_synced.load(Ordering::Relaxed) >= 4 + 3
                    && counters.books_unsynced.load(Ordering::Relaxed) == 0
            },
        )
        .await;
        // Stop: the simulator sends its last frames and closes; the source reads them all and
        // writes one last snapshot of every live book.
        let _ = stop_tx.send(true);
        sim.stop().await;
        task.await.expect("task").expect("source");
        let mut last: std::collections::HashMap<String, Book> = Default::default();
        for m in rx.try_iter().flatten() {
            if let tickwire_codecs::record::Record::DepthSnapshot(d) = m.rec {
                let lv = m.levels.as_deref().unwrap_or(&[]);
                let name = symbols.name(d.header.symbol).expect("symbol").to_string();
                let pq = |l: &tickwire_codecs::record::Level| (l.price, l.qty.get());
                last.insert(
                    name,
                    (
                        d.last_update_id,
                        d.levels.bids(lv).iter().map(pq).collect(),
                        d.levels.asks(lv).iter().map(pq).collect(),
                    ),
                );
            }
        }
        let mut compared = 0;
        for (name, (id, bids, asks)) in &last {
            let (sim_id, sim_bids, sim_asks) = sim_books.book(name).expect("the simulator's book");
            if *id != sim_id {
                // A resync was still under way when the connection closed: that book's last
                // snapshot is from before; nothing to compare at the same update id.
                continue;
            }
            let widen = |v: Vec<(i64, i64)>| -> Vec<(i64, i128)> {
                v.into_iter().map(|(p, q)| (p, i128::from(q))).collect()
            };
            assert_eq!(*bids, widen(sim_bids), "{market:?} {name} bids at {id}");
            assert_eq!(*asks, widen(sim_asks), "{market:?} {name} asks at {id}");
            compared += 1;
        }
        assert!(compared >= 3, "{market:?}: compared {compared} books");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_overlap_loses_and_duplicates_nothing() {
    let Some((replay, want)) = usdm_capture() else {
        return;
    };
    let total: u64 = want.iter().sum();
    // The file takes about 1 s per connection and the connection is replaced after 1.5 s: the
    // new one replays from the first frame, so everything the old one delivered comes again
    // and is dropped as a duplicate. (A replay restarts on each connection, unlike an
    // exchange: a replacement opened before the old one finished would start behind it, and
    // each rotation would cut the stream back. The live simulator's tests cover a replacement
    // that receives the same frames as the old one from the moment it subscribes.)
    let mut cfg = sim_config(Market::Usdm, replay.lines.len() as u64, Faults::default());
    cfg.replay = Some(replay.clone());
    let sim = SimServer::start(cfg, "127.0.0.1:0").await.expect("sim");
    let (tx, rx) = crossbeam_channel::bounded(1 << 20);
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let src = source_config(
        format!("ws://{}/stream", sim.addr),
        Market::Usdm,
        false,
        Duration::from_secs(30),
    );
    let task = tokio::spawn(source::rotating(
        src,
        Some(Duration::from_millis(1500)),
        SymbolTable::new(),
        tx,
        counters.clone(),
        stop_rx,
    ));
    let mut got = [0u64; Kind::COUNT];
    let t0 = Instant::now();
    while got.iter().sum::<u64>() - got[Kind::Gap.index()] < total {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out: {got:?} of {want:?}"
        );
        for m in rx.try_iter().flatten() {
            got[m.rec.kind().index()] += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The overlap's duplicates are dropped: wait for the new connection to finish its replay.
    wait_until("the replacement's replay", Duration::from_secs(30), || {
        counters.frames.load(Ordering::Relaxed) >= 2 * replay.lines.len() as u64 - 50
            || counters.rotations.load(Ordering::Relaxed) >= 2
    })
    .await;
    let _ = stop_tx.send(true);
    sim.stop().await;
    task.await.expect("task").expect("source");
    for m in rx.try_iter().flatten() {
        got[m.rec.kind().index()] += 1;
    }
    assert!(counters.rotations.load(Ordering::Relaxed) >= 1);
    assert!(
        counters.duplicates.load(Ordering::Relaxed) > 0,
        "the overlap repeated frames"
    );
    for k in Kind::ALL.iter().filter(|k| **k != Kind::Gap) {
        assert_eq!(
            got[k.index()],
            want[k.index()],
            "{k:?}: nothing lost, nothing twice"
        );
    }
}

/// Each frame's records are published on ZMQ by the source that decoded them, before they are
/// queued: a subscriber gets every record the simulator sent, in sequence, even when the queue
/// behind the source is full and refuses them (those are counted as queue drops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_published_as_decoded_even_when_the_queue_is_full() {
    use tickwire_engine::pipeline::publish::{
        decode_binary, PubConfig, PubCounters, Publisher, SharedPublisher,
    };
    let symbols = SymbolTable::new();
    let zc = Arc::new(PubCounters::default());
    let mut publisher =
        Publisher::bind(&PubConfig::new("tcp://127.0.0.1:*"), zc.clone()).expect("bind");
    let endpoint = publisher.endpoint().expect("endpoint");
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).expect("sub");
    sub.set_rcvhwm(0).expect("rcvhwm");
    sub.connect(&endpoint).expect("connect");
    sub.set_subscribe(b"").expect("subscribe");
    assert_eq!(
        publisher.wait_subscribers(1, Duration::from_secs(10)),
        1,
        "the subscriber arrived"
    );
    let publisher = Arc::new(SharedPublisher::new(publisher, symbols.clone()));

    let sim = SimServer::start(
        sim_config(Market::Spot, 20_000, Faults::default()),
        "127.0.0.1:0",
    )
    .await
    .expect("sim");
    // Room for one bundle, never read: nearly everything is refused by the queue.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut cfg = source_config(
        sim.combined_url(Market::Spot, &default_symbols()),
        Market::Spot,
        false,
        Duration::from_secs(30),
    );
    cfg.full = tickwire_engine::pipeline::queue::FullPolicy::DropNewest;
    cfg.publish = Some(publisher.clone());
    let task = tokio::spawn(source::run(cfg, symbols, tx, counters.clone(), stop_rx));
    wait_until(
        "records refused by the full queue",
        Duration::from_secs(15),
        || counters.dropped.load(Ordering::Relaxed) > 5_000,
    )
    .await;
    let _ = stop_tx.send(true);
    let simc = sim.counters.clone();
    sim.stop().await;
    task.await.expect("task").expect("source");
    let sent = simc.total();
    let (pushed, dropped) = (
        counters.pushed.load(Ordering::Relaxed),
        counters.dropped.load(Ordering::Relaxed),
    );
    assert_eq!(
        pushed + dropped,
        sent,
        "every record queued or counted as dropped"
    );
    assert_eq!(pushed, rx.try_iter().map(|b| b.len() as u64).sum::<u64>());

    // The subscriber: every record sent, each topic's sequence 1, 2, 3, ... without a hole.
    let mut seqs = std::collections::HashMap::<Vec<u8>, u64>::new();
    let mut got = 0u64;
    let t0 = Instant::now();
    while got < sent {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "only {got} of {sent} published"
        );
        if sub.poll(zmq::POLLIN, 100).expect("poll") == 0 {
            continue;
        }
        let parts = sub.recv_multipart(0).expect("recv");
        let (rec, _, seq) = decode_binary(&parts[1]).expect("binary payload");
        assert_eq!(rec.header().market, Market::Spot as u8);
        let last = seqs.entry(parts[0].clone()).or_insert(0);
        assert_eq!(
            seq,
            *last + 1,
            "topic {}",
            String::from_utf8_lossy(&parts[0])
        );
        *last = seq;
        got += 1;
    }
    assert_eq!(zc.sent.load(Ordering::Relaxed), sent);
    assert_eq!(zc.dropped.load(Ordering::Relaxed), 0);
}

/// A book whose snapshots never bridge its diffs (they come from another simulator, whose
/// market has not moved) is counted in `books_unsynced` and asked again with a backoff, not
/// ten times a second for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_that_cannot_bridge_is_counted_and_retried_with_backoff() {
    let market = Market::Spot;
    let ws_sim = SimServer::start(sim_config(market, 4_000, Faults::default()), "127.0.0.1:0")
        .await
        .expect("sim");
    // No connection ever subscribes to this one: its books stay at their first update id.
    let rest_sim = SimServer::start(sim_config(market, 4_000, Faults::default()), "127.0.0.1:0")
        .await
        .expect("sim");
    let url = ws_sim.combined_url(market, &default_symbols());
    // Move the first simulator's market past its first update ids before the source joins.
    let (mut early, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let mut depth = 0;
    while depth < 200 {
        if let Some(Ok(Message::Text(t))) = early.next().await {
            depth += usize::from(t.as_str().contains("depthUpdate"));
        }
    }
    let (tx, _rx) = crossbeam_channel::bounded(1 << 22);
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut cfg = source_config(url, market, false, Duration::from_secs(30));
    cfg.rest = Some(rest_host(market, &rest_sim));
    let books = default_symbols().len() as u64;
    let t0 = Instant::now();
    let task = tokio::spawn(source::run(
        cfg,
        SymbolTable::new(),
        tx,
        counters.clone(),
        stop_rx,
    ));
    wait_until("every book unsynced", Duration::from_secs(10), || {
        counters.books_unsynced.load(Ordering::Relaxed) == books
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let asked = counters.rest_requests.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(counters.books_synced.load(Ordering::Relaxed), 0);
    assert_eq!(counters.books_unsynced.load(Ordering::Relaxed), books);
    // Without a backoff: as many as the weight budget allows (96 a minute at limit 1000). With it (250 ms doubling), at
    // most 1 + log2(secs / 0.25) + 1 per book.
    let ceiling = books * (2 + (secs / 0.25).log2().ceil() as u64);
    eprintln!("{asked} snapshot requests for {books} unsynced books in {secs:.1} s");
    assert!(asked >= 3 * books, "{asked} requests in {secs:.1} s");
    assert!(
        asked <= ceiling,
        "{asked} requests in {secs:.1} s for {books} books (ceiling {ceiling}, no backoff ~{})",
        (secs * 10.0) as u64
    );
    let _ = stop_tx.send(true);
    ws_sim.stop().await;
    rest_sim.stop().await;
    task.await.expect("task").expect("source");
    // The connection is gone: its books no longer count.
    assert_eq!(counters.books_unsynced.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_attempts_over_the_limit_are_refused_with_429() {
    let mut cfg = sim_config(Market::Spot, 1_000, Faults::default());
    cfg.rest.attempts_per_5min = 2;
    let sim = SimServer::start(cfg, "127.0.0.1:0").await.expect("sim");
    let url = sim.combined_url(Market::Spot, &default_symbols());
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("within the limit"),
        );
    }
    let e = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect_err("over the limit");
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 429)
        }
        e => panic!("not an HTTP refusal: {e}"),
    }
    let c = &sim.counters;
    assert_eq!(c.attempts.load(Ordering::Relaxed), 3);
    wait_until("two connections", Duration::from_secs(5), || {
        c.connections.load(Ordering::Relaxed) == 2
    })
    .await;
    assert_eq!(c.attempts_refused.load(Ordering::Relaxed), 1);
    drop(open);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_that_keeps_breaking_backs_off() {
    // A gap about every 30 frames of each stream: every book breaks several times a second.
    // Without a backoff each break is a snapshot; with it, after 3 snapshots in a minute a
    // book waits 1 s, then 2, 4, ...
    let faults = Faults {
        gap_every: 30,
        ..Faults::default()
    };
    let market = Market::Spot;
    let sim = SimServer::start(sim_config(market, 4_000, faults), "127.0.0.1:0")
        .await
        .expect("sim");
    let url = sim.combined_url(market, &default_symbols());
    let (tx, _rx) = crossbeam_channel::bounded(1 << 22);
    let counters = Arc::new(QueueCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut cfg = source_config(url, market, false, Duration::from_secs(30));
    cfg.rest = Some(rest_host(market, &sim));
    let task = tokio::spawn(source::run(
        cfg,
        SymbolTable::new(),
        tx,
        counters.clone(),
        stop_rx,
    ));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let asked = counters.rest_requests.load(Ordering::Relaxed);
    // Breaks in the depth-diff sequences, while live or not.
    let breaks = counters.gaps[Kind::DepthUpdate.index()].load(Ordering::Relaxed);
    let books = default_symbols().len() as u64;
    eprintln!(
        "{asked} snapshots for {books} books and {breaks} breaks in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        breaks > 4 * asked,
        "the books broke far more often ({breaks}) than they were asked for ({asked})"
    );
    // 3 free, then 1 + 2 s of waiting within 5 s: at most 5 a book (6 with timing slack).
    assert!(
        asked <= 6 * books,
        "{asked} snapshots for {books} books in 5 s"
    );
    let _ = stop_tx.send(true);
    sim.stop().await;
    task.await.expect("task").expect("source");
}
