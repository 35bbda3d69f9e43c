//! The Binance-compatible local simulator (`tickwire sim`, and in-process for `tickwire demo`).
//!
//! Serves Binance's WebSocket market streams on a local address: combined
//! `/stream?streams=a/b/c` (frames wrapped as `{"stream":..,"data":..}`) and raw `/ws/<stream>`,
//! fed by one synthetic market per server ([`market`], driven by the [`hub`] task) at a
//! configured rate: every connection subscribed to a stream is sent the same frames, as two
//! clients of Binance see the same trades and the same diffs. It counts what it sends per
//! record kind: the ground truth end-to-end tests reconcile against.
//!
//! Control messages as Binance answers them: `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`
//! (`{"result":null,"id":1}`, errors `{"error":{"code":2,"msg":..},"id":1}`), on any
//! connection including a bare `/ws` or `/stream`; more than 5 (spot) or 10 (USD-M) incoming
//! messages in a second closes the connection with code 1008.
//!
//! Faults ([`Faults`]): skipped ids, malformed and oversized frames, forced closes, pings
//! that must be answered within a deadline; each counted.
//!
//! Replay ([`Replay`]): instead of the synthetic market, every connection is sent the lines
//! of a frames file in order, at the configured rate or as fast as possible.
//!
//! REST ([`rest`]): depth snapshots (`GET /api/v3/depth?symbol=X&limit=N` on the spot server,
//! `/fapi/v1/depth` on USD-M) from the same books every connection's diffs come from (the
//! server's one market), and exchangeInfo, on the same address, with Binance's request weights,
//! per-minute limit, 429 and 418 bans.

pub mod hub;
pub mod market;
pub mod rest;

use futures_util::{SinkExt, StreamExt};
use market::{Rng, StreamKind, SymbolMarket, SymbolSpec};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tickwire_codecs::record::{Kind, Market};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Simulator settings for one market's server.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The market whose payload variants it sends.
    pub market: Market,
    /// Symbols it knows.
    pub symbols: Vec<SymbolSpec>,
    /// Events per second of the server's market, over the streams its connections subscribe
    /// to (each connection is sent those of its streams); 0: as fast as they are taken. A
    /// replaying server sends each connection the file at this rate.
    pub rate: u64,
    /// Seed of the random market.
    pub seed: u64,
    /// Faults to inject.
    pub faults: Faults,
    /// Replay these frames instead of the synthetic market.
    pub replay: Option<Arc<Replay>>,
    /// REST weight limits and bans.
    pub rest: rest::RestLimits,
}

/// A frames file to replay: one frame per line, with the record kind each decodes to (for
/// the `sent` counts).
#[derive(Debug)]
pub struct Replay {
    /// The frames (shared with every send: a frame is never copied to be sent).
    pub lines: Vec<tokio_tungstenite::tungstenite::Utf8Bytes>,
    /// The kind of the record each frame decodes to (`None`: a control, unknown or invalid
    /// frame, sent but not counted in `sent`).
    pub kinds: Vec<Option<Kind>>,
    /// Books the REST snapshots of a replaying server serve (rendered frames only): a
    /// symbol's book as it stood right after the depth diff on line `.0`, in line order, the
    /// first one right after the symbol's first diff (which its later diffs bridge on both
    /// markets). Once a connection has sent line `.0`, its REST snapshots of that symbol come
    /// from `.1`, so a snapshot is never older than what the client may have buffered. A
    /// symbol without one is served a fresh book.
    pub books: Vec<(usize, SymbolMarket)>,
}

impl Replay {
    /// Reads `path`, classifying each line with tickwire's own decoder: a file of frames, one
    /// a line, or a capture directory ([`crate::source::capture`]), whose frames of `market`'s
    /// connections are served in the order each connection received them (connection after
    /// connection).
    pub fn load(path: &std::path::Path, market: Market) -> std::io::Result<Replay> {
        let lines: Vec<tokio_tungstenite::tungstenite::Utf8Bytes> = if path.is_dir() {
            let mut out = Vec::new();
            for st in crate::source::capture::streams(path)? {
                let mut mine = false;
                for f in &st.files {
                    for e in crate::source::capture::read_file(f)?.0 {
                        match e.kind {
                            crate::source::capture::kind::OPEN => {
                                mine = e.payload.first() == Some(&(market as u8));
                            }
                            crate::source::capture::kind::FRAME if mine => {
                                if let Ok(t) = String::from_utf8(e.payload) {
                                    out.push(t.into());
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            out
        } else {
            std::fs::read_to_string(path)?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(Into::into)
                .collect()
        };
        let mut dec = tickwire_codecs::binance::Decoder::new(
            market,
            tickwire_codecs::symbol::SymbolTable::new(),
        );
        let kinds = lines
            .iter()
            .map(|l| {
                let mut k = None;
                let _ = dec.decode(
                    l.as_bytes(),
                    0,
                    &mut |r: &tickwire_codecs::record::Record,
                          _: &[tickwire_codecs::record::Level]| {
                        k = Some(r.kind());
                    },
                );
                k
            })
            .collect();
        Ok(Replay {
            lines,
            kinds,
            books: Vec::new(),
        })
    }

    /// `count` frames of the synthetic market rendered ahead of time: what one connection to
    /// every stream of `symbols` on `market` would be sent (combined-stream frames, the live
    /// mix of stream kinds, ids continuing from the books' initial state, which is what the
    /// REST snapshots of a replaying server serve). Sending them costs only the writes: a load
    /// generator for finding the engine's own ceiling (`tickwire demo --prerender`).
    pub fn render(market: Market, symbols: &[SymbolSpec], count: usize, seed: u64) -> Replay {
        let mut markets: Vec<SymbolMarket> = symbols
            .iter()
            .map(|s| SymbolMarket::new(s.clone(), market))
            .collect();
        let (streams, weights): (Vec<(usize, StreamKind, String)>, Vec<u32>) = markets
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                StreamKind::mix(market)
                    .iter()
                    .map(move |&(k, w)| ((i, k, m.stream(k)), w))
            })
            .unzip();
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let count = if total == 0 { 0 } else { count };
        let mut rng = Rng::new(seed);
        let (mut lines, mut kinds) = (Vec::with_capacity(count), Vec::with_capacity(count));
        let mut data = String::with_capacity(4096);
        let mut books = Vec::new();
        let mut diffs = vec![0u64; markets.len()];
        let mut now_ms = 0;
        for n in 0..count {
            if n % 1024 == 0 {
                now_ms = crate::source::clock::now_ns() / 1_000_000;
            }
            let (i, kind, name) = &streams[pick(&mut rng, &weights, total)];
            let (i, kind) = (*i, *kind);
            markets[i].frame(kind, now_ms, &mut rng, &mut data);
            if kind == StreamKind::Depth {
                if diffs[i] % BOOK_EVERY == 0 {
                    books.push((n, markets[i].clone()));
                }
                diffs[i] += 1;
            }
            lines.push(combined_frame(name, &data).into());
            kinds.push(Some(kind.record_kind()));
        }
        Replay {
            lines,
            kinds,
            books,
        }
    }
}

/// The index of the stream a random draw picks, each stream drawn in proportion to its
/// weight (`total`: the weights' sum, > 0).
fn pick(rng: &mut Rng, weights: &[u32], total: u64) -> usize {
    let mut r = rng.below(total);
    for (i, &w) in weights.iter().enumerate() {
        if r < u64::from(w) {
            return i;
        }
        r -= u64::from(w);
    }
    0
}

/// A combined-stream frame (`/stream?streams=`): `data` wrapped with its stream's name.
fn combined_frame(stream: &str, data: &str) -> String {
    format!(r#"{{"stream":"{stream}","data":{data}}}"#)
}

/// A rendered replay keeps a REST book of a symbol every this many of its depth diffs.
const BOOK_EVERY: u64 = 256;

/// Faults the simulator injects; each is off at zero / `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// About every this many frames, skip 1-3 ids of a sequenced stream (trade, aggTrade,
    /// depth diff): a gap the client must detect.
    pub gap_every: u64,
    /// Every this many frames, send a malformed frame as well.
    pub malformed_every: u64,
    /// Close each connection after it has been open this long (the client must reconnect).
    pub close_after: Option<Duration>,
    /// Every this many frames, also send an oversized frame (2 MiB of garbage).
    pub oversized_every: u64,
    /// Send a ping this often; a connection whose pong does not come within `pong_deadline`
    /// is closed.
    pub ping_every: Option<Duration>,
    /// How long a ping may wait for its pong.
    pub pong_deadline: Duration,
}

impl Faults {
    /// Every fault at a moderate rate (`tickwire demo --faults`).
    pub fn moderate() -> Self {
        Faults {
            gap_every: 2_000,
            malformed_every: 5_000,
            close_after: Some(Duration::from_millis(2_500)),
            oversized_every: 20_000,
            ping_every: Some(Duration::from_millis(500)),
            pong_deadline: Duration::from_millis(1_000),
        }
    }
}

/// The books REST snapshots are served from: per symbol (upper case), the server's market.
type Books = Arc<std::sync::Mutex<std::collections::HashMap<String, Shared>>>;
/// One symbol's market, shared by the hub, every connection and the REST handler.
type Shared = Arc<std::sync::Mutex<SymbolMarket>>;

fn lock(m: &Shared) -> std::sync::MutexGuard<'_, SymbolMarket> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the simulator sent.
#[derive(Debug, Default)]
pub struct SimCounters {
    /// Frames sent, by [`Kind::index`] of the record they decode to.
    pub sent: [AtomicU64; Kind::COUNT],
    /// WebSocket connections accepted (REST connections are not counted here).
    pub connections: AtomicU64,
    /// WebSocket connection attempts (handshakes begun).
    pub attempts: AtomicU64,
    /// Attempts refused (429) over the per-IP limit of 5 minutes.
    pub attempts_refused: AtomicU64,
    /// Connections whose streams were refused.
    pub refused: AtomicU64,
    /// Gaps injected (ids skipped and the next frame of that stream sent), by record kind.
    pub gaps: [AtomicU64; Kind::COUNT],
    /// Malformed frames sent (not counted in `sent`).
    pub malformed: AtomicU64,
    /// Connections closed by the `close_after` fault.
    pub closes: AtomicU64,
    /// Oversized frames sent (not counted in `sent`).
    pub oversized: AtomicU64,
    /// Control messages received (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, others).
    pub controls: AtomicU64,
    /// Control messages answered with an error.
    pub control_errors: AtomicU64,
    /// Connections closed for sending more than the incoming message limit.
    pub rate_limited: AtomicU64,
    /// Pings sent.
    pub pings: AtomicU64,
    /// Pongs received in time.
    pub pongs: AtomicU64,
    /// Connections closed because a pong did not come in time.
    pub pong_timeouts: AtomicU64,
    /// Connections closed because they took nothing for [`WRITE_TIMEOUT`] while frames were
    /// waiting for them.
    pub slow_closes: AtomicU64,
    /// REST depth snapshots served.
    pub rest_snapshots: AtomicU64,
    /// REST exchangeInfo answers served.
    pub rest_exchange_info: AtomicU64,
    /// Answers of the series only REST has (`openInterest`, `/futures/data/*`) served.
    pub rest_data: AtomicU64,
    /// REST requests received.
    pub rest_requests: AtomicU64,
    /// Request weight of the REST requests served.
    pub rest_weight: AtomicU64,
    /// REST requests answered 429 (over the minute's weight).
    pub rest_limited: AtomicU64,
    /// REST requests answered 418 (a client banned for sending after a 429).
    pub rest_banned: AtomicU64,
}

impl SimCounters {
    /// All frames sent.
    pub fn total(&self) -> u64 {
        self.sent.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A running simulator server.
#[derive(Debug)]
pub struct SimServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it sent.
    pub counters: Arc<SimCounters>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    books: Books,
}

impl SimServer {
    /// Binds `addr` and starts serving.
    pub async fn start(cfg: SimConfig, addr: &str) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(SimCounters::default());
        let (stop, stop_rx) = watch::channel(false);
        // One market per symbol for the whole server: every connection and REST snapshot.
        let markets: Arc<Vec<Shared>> = Arc::new(
            cfg.symbols
                .iter()
                .map(|s| {
                    let replayed = cfg
                        .replay
                        .as_ref()
                        .and_then(|r| r.books.iter().find(|b| b.1.name() == s.name))
                        .map(|b| b.1.clone());
                    Arc::new(std::sync::Mutex::new(
                        replayed.unwrap_or_else(|| SymbolMarket::new(s.clone(), cfg.market)),
                    ))
                })
                .collect(),
        );
        let books: Books = Arc::new(std::sync::Mutex::new(
            markets
                .iter()
                .map(|m| (lock(m).name().to_ascii_uppercase(), m.clone()))
                .collect(),
        ));
        let (ctl, hub) = if cfg.replay.is_none() {
            let (ctl, ctl_rx) = mpsc::channel(1_024);
            let hub = tokio::spawn(hub::run(
                markets.clone(),
                cfg.clone(),
                counters.clone(),
                ctl_rx,
                stop_rx.clone(),
            ));
            (Some(ctl), Some(hub))
        } else {
            (None, None)
        };
        let c = counters.clone();
        let b = books.clone();
        let rest: Arc<rest::RestState> = Arc::default();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut next_id = 0u64;
            let mut stop_rx2 = stop_rx.clone();
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((sock, _)) => {
                            next_id += 1;
                            let id = next_id;
                            conns.push(tokio::spawn(serve(sock, cfg.clone(), id, c.clone(), stop_rx.clone(), markets.clone(), b.clone(), ctl.clone(), rest.clone())));
                        }
                        Err(e) => tracing::warn!("sim accept failed: {e}"),
                    },
                    _ = stop_rx2.changed() => break,
                }
            }
            // No new connections once stopping: a client reconnecting now is refused.
            drop(listener);
            drop(ctl);
            if let Some(h) = hub {
                let _ = h.await;
            }
            for t in conns {
                let _ = t.await;
            }
        });
        Ok(SimServer {
            addr,
            counters,
            stop,
            task,
            books,
        })
    }

    /// The books REST snapshots are served from, readable after the server stops.
    pub fn books(&self) -> SimBooks {
        SimBooks(self.books.clone())
    }

    /// The combined-stream URL of every stream kind of `market` for `symbols`.
    pub fn combined_url(&self, market: Market, symbols: &[SymbolSpec]) -> String {
        let mut streams = Vec::new();
        for s in symbols {
            for (k, _) in StreamKind::mix(market) {
                streams.push(format!("{}@{}", s.name.to_lowercase(), k.suffix(market)));
            }
        }
        format!("ws://{}/stream?streams={}", self.addr, streams.join("/"))
    }

    /// Stops sending, closes every connection cleanly (after all sent frames) and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The simulator's books (see [`SimServer::books`]).
#[derive(Clone)]
pub struct SimBooks(Books);

impl std::fmt::Debug for SimBooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimBooks")
    }
}

impl SimBooks {
    /// The book of `symbol`: last update id, bids and asks best first (raw 1e-8 units).
    pub fn book(&self, symbol: &str) -> Option<market::BookView> {
        let books = self.0.lock().unwrap_or_else(|p| p.into_inner());
        books
            .get(&symbol.to_ascii_uppercase())
            .map(|m| lock(m).book())
    }
}

/// Parses one stream name (`btcusdt@trade`).
fn parse_stream(n: &str, symbols: &[SymbolSpec]) -> Result<(usize, StreamKind), String> {
    let (sym, kind) = n
        .split_once('@')
        .ok_or_else(|| format!("invalid stream {n}"))?;
    let i = symbols
        .iter()
        .position(|s| s.name.eq_ignore_ascii_case(sym))
        .ok_or_else(|| format!("unknown symbol {sym}"))?;
    let k = StreamKind::from_suffix(kind).ok_or_else(|| format!("unknown stream {kind}"))?;
    Ok((i, k))
}

/// Parses `/stream?streams=a/b`, `/ws/a`, or a bare `/ws` or `/stream` (streams to come by
/// SUBSCRIBE) into (symbol, kind) pairs.
fn parse_path(path: &str, symbols: &[SymbolSpec]) -> Result<Vec<(usize, StreamKind)>, String> {
    // USD-M serves `/public/...` and `/market/...` since 2026-04; accept both prefixes.
    let path = path
        .strip_prefix("/public")
        .or_else(|| path.strip_prefix("/market"))
        .unwrap_or(path);
    let names: Vec<&str> = if let Some(q) = path.strip_prefix("/stream?streams=") {
        q.split('/').filter(|s| !s.is_empty()).collect()
    } else if let Some(s) = path.strip_prefix("/ws/") {
        vec![s]
    } else if matches!(path, "/ws" | "/stream" | "/ws/" | "/stream/") {
        vec![]
    } else {
        return Err(format!("unknown path {path}"));
    };
    names
        .into_iter()
        .map(|n| parse_stream(n, symbols))
        .collect()
}

/// A connection's subscriptions (symbol index, stream kind) and their names, in order.
struct Subs {
    streams: Vec<(usize, StreamKind)>,
    names: Vec<String>,
}

impl Subs {
    fn new(streams: Vec<(usize, StreamKind)>, markets: &[Shared]) -> Subs {
        let mut s = Subs {
            streams,
            names: vec![],
        };
        s.rebuild(markets);
        s
    }
    fn rebuild(&mut self, markets: &[Shared]) {
        self.names = self
            .streams
            .iter()
            .map(|(i, k)| lock(&markets[*i]).stream(*k))
            .collect();
    }
}

/// The most streams one connection may have.
const MAX_STREAMS: usize = 1024;

/// Answers one control message: the reply, whether it succeeded, and whether the
/// connection's streams changed.
fn control(
    text: &str,
    subs: &mut Subs,
    markets: &[Shared],
    cfg: &SimConfig,
) -> (String, bool, bool) {
    let err = |code: u32, msg: &str, id: &serde_json::Value| {
        (
            format!(
                "{{\"error\":{{\"code\":{code},\"msg\":{}}},\"id\":{id}}}",
                serde_json::Value::String(msg.to_string())
            ),
            false,
            false,
        )
    };
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return err(3, &format!("Invalid JSON: {e}"), &serde_json::Value::Null),
    };
    let id = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
    let method = v.get("method").and_then(|m| m.as_str()).unwrap_or("");
    let params: Vec<&str> = v
        .get("params")
        .and_then(|p| p.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    match method {
        "SUBSCRIBE" | "UNSUBSCRIBE" => {
            let mut parsed = Vec::with_capacity(params.len());
            for p in &params {
                match parse_stream(p, &cfg.symbols) {
                    Ok(x) => parsed.push(x),
                    Err(_) => return err(2, "Invalid request: invalid stream", &id),
                }
            }
            if method == "SUBSCRIBE" {
                let new: Vec<_> = parsed
                    .into_iter()
                    .filter(|x| !subs.streams.contains(x))
                    .collect();
                if subs.streams.len() + new.len() > MAX_STREAMS {
                    return err(4, "Too many subscriptions", &id);
                }
                for x in new {
                    if !subs.streams.contains(&x) {
                        subs.streams.push(x);
                    }
                }
            } else {
                subs.streams.retain(|x| !parsed.contains(x));
            }
            subs.rebuild(markets);
            (format!("{{\"result\":null,\"id\":{id}}}"), true, true)
        }
        "LIST_SUBSCRIPTIONS" => {
            let list = serde_json::Value::from(subs.names.clone());
            (format!("{{\"result\":{list},\"id\":{id}}}"), true, false)
        }
        _ => err(2, "Invalid request: unknown method", &id),
    }
}

/// Incoming messages a connection may send per second before it is closed.
fn incoming_limit(market: Market) -> usize {
    match market {
        Market::Spot => 5,
        Market::Usdm => 10,
    }
}

/// Peeks at a new connection's request line: a REST request is served here until the client
/// closes (`None`); anything else is handed back for the WebSocket handshake.
async fn take_rest(
    sock: TcpStream,
    cfg: &SimConfig,
    counters: &SimCounters,
    books: &Books,
    state: &rest::RestState,
) -> Option<TcpStream> {
    // The request line's start tells them apart: REST paths are `/api/`, `/fapi/` (a
    // WebSocket's request line may be longer than any buffer: 1024 streams in its URL).
    let mut buf = [0u8; 16];
    let head = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = sock.peek(&mut buf).await.unwrap_or(0);
            if n == 0 || n == buf.len() || buf[..n].contains(&b'\n') {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or(0);
    let start = &buf[..head];
    let is_rest = [&b"GET /api/"[..], b"GET /fapi/", b"GET /futures/"]
        .iter()
        .any(|p| start.starts_with(p));
    if !is_rest {
        return Some(sock);
    }
    rest::serve(
        sock,
        rest::Ctx {
            market: cfg.market,
            symbols: &cfg.symbols,
            books,
            counters,
            state,
            limits: cfg.rest,
        },
    )
    .await;
    None
}

/// What a connection is fed from.
enum Feed {
    /// The server's shared market, through this connection's queue from the hub.
    Live {
        id: u64,
        ctl: mpsc::Sender<hub::Ctl>,
        out: mpsc::Receiver<hub::Out>,
    },
    /// The replay file's lines, paced per connection.
    Replay(Arc<Replay>),
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    sock: TcpStream,
    cfg: SimConfig,
    id: u64,
    counters: Arc<SimCounters>,
    mut stop: watch::Receiver<bool>,
    markets: Arc<Vec<Shared>>,
    books: Books,
    ctl: Option<mpsc::Sender<hub::Ctl>>,
    rest_state: Arc<rest::RestState>,
) {
    if *stop.borrow() {
        return; // accepted in the same instant the stop came: refuse it, no handshake
    }
    let _ = sock.set_nodelay(true);
    // A REST connection is kept alive until the client closes it or the server stops.
    let sock = tokio::select! {
        s = take_rest(sock, &cfg, &counters, &books, &rest_state) => s,
        _ = stop.changed() => None,
    };
    let Some(sock) = sock else {
        return;
    };
    let ip = sock
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let mut path = String::new();
    // The signature is tungstenite's `Callback`; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().to_string();
        // A handshake request is an attempt; over the limit of 5 minutes it is refused, as
        // Binance refuses them.
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        if !rest_state.attempt(ip, &cfg.rest) {
            // Counted before the answer goes out: whoever reads the 429 sees it counted.
            counters.attempts_refused.fetch_add(1, Ordering::Relaxed);
            let mut e = ErrorResponse::new(Some(
                "too many connection attempts (300 per 5 minutes per IP)".to_string(),
            ));
            *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::TOO_MANY_REQUESTS;
            return Err(e);
        }
        Ok(resp)
    };
    let accepted = tokio_tungstenite::accept_hdr_async(sock, cb).await;
    let Ok(ws) = accepted else {
        return;
    };
    counters.connections.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = ws.split();
    let combined = path.contains("/stream");
    let streams = match parse_path(&path, &cfg.symbols) {
        Ok(s) if s.len() <= MAX_STREAMS => s,
        _ => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = put(&mut tx, Message::Close(None), true).await;
            return;
        }
    };
    let mut subs = Subs::new(streams, &markets);
    let mut feed = match (&cfg.replay, ctl) {
        (Some(rep), _) => Feed::Replay(rep.clone()),
        (None, Some(ctl)) => {
            let (otx, out) = mpsc::channel(hub::OUTBOX);
            let join = hub::Ctl::Join {
                id,
                tx: otx,
                combined,
            };
            let streams = hub::Ctl::Streams {
                id,
                streams: subs.streams.clone(),
            };
            if ctl.send(join).await.is_err() || ctl.send(streams).await.is_err() {
                return; // the server is stopping
            }
            Feed::Live { id, ctl, out }
        }
        (None, None) => return,
    };
    // Replay paces itself (1 ms turns); a live connection only checks pings and closes.
    let turn = match feed {
        Feed::Replay(_) => Duration::from_millis(1),
        Feed::Live { .. } => Duration::from_millis(10),
    };
    let mut tick = tokio::time::interval(turn);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pace = Pace {
        per_s: cfg.rate,
        scheduled: 0,
    };
    let t0 = std::time::Instant::now();
    let faults = cfg.faults;
    let mut frame_no = 0u64;
    let mut replay_at = 0usize;
    let mut next_book = 0usize;
    let mut incoming: std::collections::VecDeque<std::time::Instant> = Default::default();
    let mut last_ping = t0;
    let mut awaiting: Option<(u64, std::time::Instant)> = None;
    let mut ping_no = 0u64;
    let mut batch: Vec<hub::Out> = Vec::with_capacity(WRITE_BATCH);
    let replaying = matches!(feed, Feed::Replay(_));
    'conn: loop {
        batch.clear();
        tokio::select! {
            _ = tick.tick() => {}
            m = rx.next() => {
                let now = std::time::Instant::now();
                let text = match m {
                    Some(Ok(Message::Text(t))) => Some(t),
                    Some(Ok(Message::Pong(p))) => {
                        if awaiting.is_some_and(|(n, _)| p.as_ref() == n.to_be_bytes()) {
                            awaiting = None;
                            counters.pongs.fetch_add(1, Ordering::Relaxed);
                        }
                        None
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'conn,
                    Some(Ok(_)) => None,
                };
                // Every incoming message counts against the limit, as on Binance.
                incoming.push_back(now);
                while incoming.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1)) {
                    incoming.pop_front();
                }
                if incoming.len() > incoming_limit(cfg.market) {
                    counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy,
                        reason: "too many messages".into(),
                    };
                    let _ = put(&mut tx, Message::Close(Some(close)), true).await;
                    break 'conn;
                }
                if let Some(t) = text {
                    counters.controls.fetch_add(1, Ordering::Relaxed);
                    let had = subs.streams.is_empty();
                    let (reply, ok, changed) = control(t.as_str(), &mut subs, &markets, &cfg);
                    if !ok {
                        counters.control_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if had && !subs.streams.is_empty() {
                        // Start the schedule now: no burst for the time without streams.
                        pace.skip_to(t0.elapsed());
                    }
                    if let (true, Feed::Live { id, ctl, .. }) = (changed, &feed) {
                        let m = hub::Ctl::Streams { id: *id, streams: subs.streams.clone() };
                        if ctl.send(m).await.is_err() {
                            break 'conn; // the server is stopping
                        }
                    }
                    if !put(&mut tx, Message::text(reply), true).await {
                        break 'conn;
                    }
                }
                continue;
            }
            o = async {
                match &mut feed {
                    Feed::Live { out, .. } => out.recv().await,
                    Feed::Replay(_) => std::future::pending().await,
                }
            } => match o {
                // Written below with whatever else is waiting.
                Some(o) => batch.push(o),
                // The hub ended (the server stops): everything handed over was written.
                None => break 'conn,
            },
            // A live connection ends when the hub drops its queue, after what it was handed.
            _ = stop.changed(), if replaying => break 'conn,
        }
        if faults.close_after.is_some_and(|d| t0.elapsed() >= d) {
            counters.closes.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if let Some(every) = faults.ping_every {
            if let Some((_, at)) = awaiting {
                if at.elapsed() > faults.pong_deadline {
                    counters.pong_timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            } else if last_ping.elapsed() >= every {
                ping_no += 1;
                last_ping = std::time::Instant::now();
                awaiting = Some((ping_no, last_ping));
                counters.pings.fetch_add(1, Ordering::Relaxed);
                if !put(
                    &mut tx,
                    Message::Ping(ping_no.to_be_bytes().to_vec().into()),
                    true,
                )
                .await
                {
                    break;
                }
            }
        }
        let mut kinds = [0u64; Kind::COUNT];
        let mut gaps = [0u64; Kind::COUNT];
        let (mut malformed, mut oversized) = (0u64, 0u64);
        let mut sent = 0u64;
        match &mut feed {
            Feed::Replay(rep) => {
                // Replay: the file's lines in order, once, then the connection stays open.
                for _ in 0..pace.next(t0.elapsed()) {
                    let Some(line) = rep.lines.get(replay_at) else {
                        break;
                    };
                    if !put(&mut tx, Message::Text(line.clone()), false).await {
                        break 'conn;
                    }
                    if let Some(k) = rep.kinds[replay_at] {
                        kinds[k.index()] += 1;
                    }
                    replay_at += 1;
                    sent += 1;
                }
                // REST snapshots follow what has been sent.
                while let Some((at, book)) = rep.books.get(next_book) {
                    if *at >= replay_at {
                        break;
                    }
                    if let Some(m) = markets.iter().find(|m| lock(m).name() == book.name()) {
                        *lock(m) = book.clone();
                    }
                    next_book += 1;
                }
            }
            Feed::Live { out, .. } => {
                while batch.len() < WRITE_BATCH {
                    match out.try_recv() {
                        Ok(o) => batch.push(o),
                        Err(_) => break,
                    }
                }
                for o in batch.drain(..) {
                    frame_no += 1;
                    if faults.malformed_every > 0 && frame_no % faults.malformed_every == 0 {
                        let bad = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":17000000"#;
                        if !put(&mut tx, Message::text(bad), false).await {
                            break 'conn;
                        }
                        malformed += 1;
                    }
                    if faults.oversized_every > 0 && frame_no % faults.oversized_every == 0 {
                        let mut big = String::with_capacity(OVERSIZED + 64);
                        big.push_str(r#"{"stream":"btcusdt@trade","data":""#);
                        big.extend(std::iter::repeat_n('x', OVERSIZED));
                        big.push_str(r#""}"#);
                        if !put(&mut tx, Message::text(big), false).await {
                            break 'conn;
                        }
                        oversized += 1;
                    }
                    if !put(&mut tx, Message::Text(o.text), false).await {
                        break 'conn;
                    }
                    kinds[o.kind] += 1;
                    if o.gap {
                        gaps[o.kind] += 1;
                    }
                    sent += 1;
                }
            }
        }
        if sent > 0
            && !matches!(
                tokio::time::timeout(WRITE_TIMEOUT, tx.flush()).await,
                Ok(Ok(()))
            )
        {
            break;
        }
        for (i, k) in kinds.iter().enumerate() {
            counters.sent[i].fetch_add(*k, Ordering::Relaxed);
            counters.gaps[i].fetch_add(gaps[i], Ordering::Relaxed);
        }
        counters.malformed.fetch_add(malformed, Ordering::Relaxed);
        counters.oversized.fetch_add(oversized, Ordering::Relaxed);
    }
    if let Feed::Live { id, ctl, out } = feed {
        drop(out);
        let _ = ctl.send(hub::Ctl::Leave { id }).await;
    }
    // Clean close: everything fed was flushed; the close frame follows the data.
    if put(&mut tx, Message::Close(None), true).await {
        // Drain the client's close reply (a client that never answers is left after a while).
        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
            while let Some(Ok(m)) = rx.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}

/// Frames a live connection writes before it flushes.
const WRITE_BATCH: usize = 256;

/// A client that takes nothing for this long is disconnected (as Binance drops slow readers).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

type WsTx = futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, Message>;

/// Queues (`flush`: and sends) a message; false when the client is gone or has not taken
/// anything for [`WRITE_TIMEOUT`].
async fn put(tx: &mut WsTx, m: Message, flush: bool) -> bool {
    let r = if flush {
        tokio::time::timeout(WRITE_TIMEOUT, tx.send(m)).await
    } else {
        tokio::time::timeout(WRITE_TIMEOUT, tx.feed(m)).await
    };
    matches!(r, Ok(Ok(())))
}

/// Bytes of an oversized frame's payload (2 MiB: beyond any real Binance frame).
pub const OVERSIZED: usize = 2 << 20;

/// A connection's send schedule: `per_s` frames a second from its start (0: as fast as the
/// client reads), caught up in bursts of at most 10 ms of traffic when it falls behind, and
/// never ahead of the schedule.
#[derive(Debug)]
struct Pace {
    per_s: u64,
    /// Frames scheduled so far (sent, or given up on when the connection ends).
    scheduled: u64,
}

impl Pace {
    /// Frames as fast as the client reads: this many a turn.
    const UNLIMITED_BURST: u64 = 2_000;

    /// The frames to send now, `elapsed` after the start; counts them as scheduled.
    fn next(&mut self, elapsed: Duration) -> u64 {
        let n = if self.per_s == 0 {
            Self::UNLIMITED_BURST
        } else {
            let burst = (self.per_s / 100).max(1);
            self.due(elapsed).saturating_sub(self.scheduled).min(burst)
        };
        self.scheduled += n;
        n
    }

    /// Skips the frames due by `elapsed` (the time before the first subscription).
    fn skip_to(&mut self, elapsed: Duration) {
        self.scheduled = self.scheduled.max(self.due(elapsed));
    }

    fn due(&self, elapsed: Duration) -> u64 {
        (elapsed.as_nanos() * u128::from(self.per_s) / 1_000_000_000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::book::{BookSync, SyncEvent};

    #[test]
    fn a_schedule_that_fell_behind_catches_up_in_bursts_and_never_gets_ahead() {
        let ms = Duration::from_millis;
        let mut p = Pace {
            per_s: 100_000,
            scheduled: 0,
        };
        assert_eq!(p.next(ms(1)), 100);
        // The client stalled the sender for half a second: 49,900 frames behind.
        let mut t = 500;
        let mut bursts = 0;
        loop {
            let n = p.next(ms(t));
            assert!(n <= 1_000, "a burst is at most 10 ms of traffic: {n}");
            assert!(
                p.scheduled <= p.due(ms(t)),
                "ahead of the schedule at {t} ms"
            );
            bursts += 1;
            if p.scheduled == p.due(ms(t)) || bursts > 1_000 {
                break;
            }
            t += 1;
        }
        // 1,000 frames a turn against 100 more due each turn: caught up in ~55 turns.
        assert!((50..=60).contains(&bursts), "{bursts}");
        // Back on the schedule: each 1 ms turn sends what came due in it, nothing more (the
        // old budget added the whole deficit again every turn and then ran ahead of it).
        for _ in 0..1_000 {
            t += 1;
            assert_eq!(p.next(ms(t)), 100, "at {t} ms");
            assert_eq!(p.scheduled, p.due(ms(t)));
        }
    }

    #[test]
    fn a_schedule_skips_the_time_before_the_first_subscription() {
        let mut p = Pace {
            per_s: 10_000,
            scheduled: 0,
        };
        p.skip_to(Duration::from_secs(3));
        assert_eq!(p.next(Duration::from_millis(3_001)), 10);
        let mut u = Pace {
            per_s: 0,
            scheduled: 0,
        };
        assert_eq!(u.next(Duration::from_secs(1)), Pace::UNLIMITED_BURST);
    }
    use tickwire_codecs::binance::Decoder;
    use tickwire_codecs::record::{Level, Record};
    use tickwire_codecs::symbol::SymbolTable;

    /// Rendered frames decode to the kinds they are counted as, and each symbol's depth diffs
    /// bridge the book its REST snapshot serves (by the engine's own sync rules, spot and
    /// USD-M) and then continue it without a break.
    #[test]
    fn rendered_frames_decode_and_bridge_their_snapshots() {
        for market in [Market::Spot, Market::Usdm] {
            let symbols = market::default_symbols();
            let r = Replay::render(market, &symbols, 20_000, 3);
            assert_eq!((r.lines.len(), r.kinds.len()), (20_000, 20_000));
            let table = SymbolTable::new();
            let mut dec = Decoder::new(market, table.clone());
            let mut books: std::collections::HashMap<String, (BookSync, usize)> =
                Default::default();
            let mut applied = 0;
            for (line, kind) in r.lines.iter().zip(&r.kinds) {
                let mut got: Vec<(Record, Vec<Level>)> = Vec::new();
                dec.decode(line.as_bytes(), 0, &mut |rec: &Record, lv: &[Level]| {
                    got.push((*rec, lv.to_vec()))
                })
                .expect("decodes");
                assert_eq!(got.len(), 1, "{line}");
                assert_eq!(Some(got[0].0.kind()), *kind, "{line}");
                let (Record::DepthUpdate(d), lv) = &got[0] else {
                    continue;
                };
                let name = table.name(d.header.symbol).unwrap_or_default();
                let (book, seen) = books
                    .entry(name.to_string())
                    .or_insert_with(|| (BookSync::new(market), 0));
                *seen += 1;
                let event = book.on_diff(d, lv);
                if *seen < 3 {
                    assert_eq!(event, SyncEvent::Buffered);
                    continue;
                }
                if *seen == 3 {
                    // The snapshot arrives after two diffs were buffered.
                    let (_, served) = r
                        .books
                        .iter()
                        .find(|b| b.1.name() == name.as_ref() as &str)
                        .expect("a book per symbol");
                    let (last, _, _) = served.book();
                    assert_eq!(event, SyncEvent::Buffered);
                    assert_eq!(
                        book.on_snapshot(last, &[], &[]),
                        SyncEvent::Live,
                        "{market:?} {name}"
                    );
                    continue;
                }
                assert_eq!(event, SyncEvent::Applied, "{market:?} {name}");
                applied += 1;
            }
            assert_eq!(books.len(), symbols.len(), "diffs for every symbol");
            // Every REST book is the symbol's book right after the diff on its line.
            assert!(r.books.len() > symbols.len(), "books along the way");
            for (at, book) in &r.books {
                let mut u = None;
                dec.decode(
                    r.lines[*at].as_bytes(),
                    0,
                    &mut |rec: &Record, _: &[Level]| {
                        if let Record::DepthUpdate(d) = rec {
                            u = Some((
                                table.name(d.header.symbol).unwrap_or_default(),
                                d.final_update_id,
                            ));
                        }
                    },
                )
                .expect("decodes");
                let (name, u) = u.expect("a depth diff on the book's line");
                assert_eq!((&*name, u), (book.name(), book.book().0));
            }
            assert!(applied > 100, "{applied} diffs applied after the snapshots");
        }
    }
}
