//! REST to the exchange: one HTTP client and one request-weight budget per host.
//!
//! Every REST call of the process (order-book snapshots, exchangeInfo, anything later) goes
//! through the [`RestHost`] of its market, which all the connections of that market share, as
//! Binance counts one budget per IP and host:
//! - each request's weight is known before it is sent ([`depth_weight`],
//!   [`exchange_info_weight`]) and reserved from the current UTC minute's budget, at most
//!   `max_weight_share` (default 0.8) of the per-minute limit (exchangeInfo's `rateLimits`, or
//!   Binance's 6,000 spot / 2,400 USD-M until it is known); a request that does not fit waits for
//!   the next minute, never sent into a minute known to be spent;
//! - `X-MBX-USED-WEIGHT-1M` on every answer raises the local estimate (another process on the
//!   same IP spends the same budget);
//! - 429: nothing goes to that host for `Retry-After` seconds (or to the next minute without
//!   it); 418 (a ban): nothing for its `Retry-After`, logged loudly; both counted, and the
//!   request is queued again at its place: the streams keep flowing, books wait;
//! - requests wait in one queue per host, by class then age: books never synced first, then
//!   resyncs oldest first, so a reconnect storm never starves a book that has never synced.
//!
//! The HTTP client is hyper's HTTP/1.1 over tokio (plain TCP for the simulator, rustls with the
//! webpki roots for Binance), with keep-alive connections reused, chunked and gzip bodies,
//! timeouts, and typed errors ([`RestError`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tickwire_codecs::record::{Market, SymbolId};
use tokio::time::Instant;

/// The weight of a depth snapshot of `limit` levels, as Binance counts it (spot 5 / 25 / 50 /
/// 250 for limit <= 100 / 500 / 1000 / 5000; USD-M 2 / 5 / 10 / 20 for 5-50 / 100 / 500 / 1000).
pub fn depth_weight(market: Market, limit: usize) -> u64 {
    match market {
        Market::Spot => match limit {
            0..=100 => 5,
            101..=500 => 25,
            501..=1000 => 50,
            _ => 250,
        },
        Market::Usdm => match limit {
            0..=99 => 2,
            100..=499 => 5,
            500..=999 => 10,
            _ => 20,
        },
    }
}

/// The weight of exchangeInfo (20 spot, 1 USD-M).
pub fn exchange_info_weight(market: Market) -> u64 {
    match market {
        Market::Spot => 20,
        Market::Usdm => 1,
    }
}

/// Binance's per-minute request-weight limit of `market` (6,000 spot, 2,400 USD-M), in force
/// until exchangeInfo's `rateLimits` says otherwise.
pub fn default_weight_limit(market: Market) -> u64 {
    match market {
        Market::Spot => 6_000,
        Market::Usdm => 2_400,
    }
}

/// The path of a depth snapshot of `symbol`.
pub fn depth_path(market: Market, symbol: &str, limit: usize) -> String {
    let base = match market {
        Market::Spot => "/api/v3/depth",
        Market::Usdm => "/fapi/v1/depth",
    };
    format!("{base}?symbol={symbol}&limit={limit}")
}

/// The path of exchangeInfo.
pub fn exchange_info_path(market: Market) -> &'static str {
    match market {
        Market::Spot => "/api/v3/exchangeInfo",
        Market::Usdm => "/fapi/v1/exchangeInfo",
    }
}

/// Why a REST call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    #[error("{0}: not an http:// or https:// URL")]
    Url(String),
    #[error("connect to {addr}: {why}")]
    Connect { addr: String, why: String },
    #[error("TLS with {host}: {why}")]
    Tls { host: String, why: String },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        retry_after: Option<u64>,
        used_weight: Option<u64>,
        body: String,
    },
    #[error("gzip body: {0}")]
    Gzip(String),
}

/// A 200 answer.
#[derive(Debug)]
pub struct Answer {
    pub body: String,
    /// `X-MBX-USED-WEIGHT-1M`: the weight the server has counted for this IP this minute.
    pub used_weight: Option<u64>,
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may take, from sending to the last byte of its body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections kept per host.
const IDLE_MAX: usize = 8;

/// An HTTP/1.1 client of one host (`http://host:port` or `https://host`), keeping its
/// connections alive between requests.
pub struct HttpClient {
    addr: String,
    host: String,
    tls: Option<tokio_rustls::TlsConnector>,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl HttpClient {
    /// A client of `base` (`http://host[:port]` or `https://host[:port]`, nothing after the
    /// host), trusting the webpki roots plus `extra_roots` for HTTPS.
    pub fn new(
        base: &str,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<HttpClient, RestError> {
        let bad = || RestError::Url(base.to_string());
        let u = url::Url::parse(base).map_err(|_| bad())?;
        let tls = match u.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad()),
        };
        // The TLS name is the bare host; the address keeps an IPv6 host in brackets.
        let (host, addr_host) = match u.host().ok_or_else(bad)? {
            url::Host::Ipv6(a) => (a.to_string(), format!("[{a}]")),
            h => (h.to_string(), h.to_string()),
        };
        let addr = format!("{addr_host}:{}", u.port_or_known_default().ok_or_else(bad)?);
        let tls = if tls {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for c in extra_roots {
                roots.add(c.clone()).map_err(|e| RestError::Tls {
                    host: host.clone(),
                    why: e.to_string(),
                })?;
            }
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(HttpClient {
            addr,
            host,
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, RestError> {
        let connect_err = |why: String| RestError::Connect {
            addr: self.addr.clone(),
            why,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&self.addr))
            .await
            .map_err(|_| RestError::Timeout("connect"))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let hs_err = |e: hyper::Error| RestError::Http(e.to_string());
        let sender = match &self.tls {
            Some(tls) => {
                let tls_err = |why: String| RestError::Tls {
                    host: self.host.clone(),
                    why,
                };
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| tls_err(e.to_string()))?;
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                    .await
                    .map_err(|_| RestError::Timeout("TLS handshake"))?
                    .map_err(|e| tls_err(e.to_string()))?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .map_err(hs_err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
            None => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .map_err(hs_err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        Ok(sender)
    }

    /// A connection ready to send on: an idle one if one is still open, else a new one.
    async fn sender(&self) -> Result<SendRequest<Empty<Bytes>>, RestError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut s) = idle else {
                return self.connect().await;
            };
            if s.is_closed() {
                continue;
            }
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
    }

    /// `GET path` (with its query): the body of a 200 answer, any other status as
    /// [`RestError::Status`].
    pub async fn get(&self, path: &str) -> Result<Answer, RestError> {
        let mut sender = self.sender().await?;
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::ACCEPT_ENCODING, "gzip")
            .header(hyper::header::USER_AGENT, "tickwire")
            .body(Empty::<Bytes>::new())
            .map_err(|e| RestError::Http(e.to_string()))?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| RestError::Http(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| RestError::Http(e.to_string()))?
                .to_bytes();
            Ok::<_, RestError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| RestError::Timeout("request"))??;
        // The answer was read whole: the connection can carry the next request.
        if !sender.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_MAX {
                idle.push(sender);
            }
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let gzip = header("content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let body = if gzip {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .map_err(|e| RestError::Gzip(e.to_string()))?;
            out
        } else {
            body.to_vec()
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        let used_weight = header("x-mbx-used-weight-1m").and_then(|v| v.trim().parse().ok());
        if parts.status != hyper::StatusCode::OK {
            return Err(RestError::Status {
                status: parts.status.as_u16(),
                retry_after: header("retry-after").and_then(|v| v.trim().parse().ok()),
                used_weight,
                body: body.chars().take(200).collect(),
            });
        }
        Ok(Answer { body, used_weight })
    }
}

/// The counters of one host (per market in the summary and /metrics).
#[derive(Debug, Default)]
pub struct RestStats {
    /// Requests sent (answered or not).
    pub requests: AtomicU64,
    /// Weight of the requests sent.
    pub weight: AtomicU64,
    /// Answers 429 (over the minute's budget).
    pub status_429: AtomicU64,
    /// Answers 418 (banned).
    pub status_418: AtomicU64,
    /// Requests that failed otherwise (connection, timeout, other statuses).
    pub errors: AtomicU64,
    /// Answers, or entries of them (an exchangeInfo symbol, a series point), that could not
    /// be read into a record; each is logged.
    pub unreadable: AtomicU64,
    /// Order books made live from a snapshot (first syncs and resyncs).
    pub books_synced: AtomicU64,
    /// Breaks found in a live book's diffs (each a resync).
    pub resyncs: AtomicU64,
    /// Order books waiting for a snapshot that bridges their diffs (a gauge).
    pub books_waiting: AtomicU64,
    /// The weight limit a minute in force (exchangeInfo's, or Binance's default).
    pub weight_limit: AtomicU64,
    /// Symbols newly TRADING that a `symbols = ["*"]` source took up while running.
    pub listed: AtomicU64,
    /// Symbols no longer TRADING (or filtered out) that it let go.
    pub delisted: AtomicU64,
}

/// Settings of a host's budget.
#[derive(Debug, Clone, Copy)]
pub struct RestOptions {
    /// Of the per-minute weight limit, the share this process spends at most.
    pub max_weight_share: f64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// `/futures/data/*` requests the host allows an IP in 5 minutes (Binance: 1,000; they
    /// weigh nothing against the minute). This process sends at most `max_weight_share` of it.
    pub data_per_5min: u64,
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions {
            max_weight_share: 0.8,
            concurrency: 4,
            data_per_5min: 1000,
        }
    }
}

/// The window of [`RestOptions::data_per_5min`].
pub const DATA_WINDOW: Duration = Duration::from_secs(300);

/// Whether `path` is one of the `/futures/data/` endpoints (their own request limit).
pub fn is_data_path(path: &str) -> bool {
    path.starts_with("/futures/data/")
}

/// Where an answer goes.
#[derive(Debug)]
pub enum Reply {
    /// A book's snapshot, to its connection.
    Book(
        SymbolId,
        tokio::sync::mpsc::Sender<(SymbolId, Result<String, RestError>)>,
    ),
    /// One caller awaiting it.
    Once(tokio::sync::oneshot::Sender<Result<String, RestError>>),
}

impl Reply {
    fn is_closed(&self) -> bool {
        match self {
            Reply::Book(_, tx) => tx.is_closed(),
            Reply::Once(tx) => tx.is_closed(),
        }
    }

    async fn send(self, r: Result<String, RestError>) {
        match self {
            Reply::Book(sym, tx) => {
                let _ = tx.send((sym, r)).await;
            }
            Reply::Once(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// Priority of a request: lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Metadata (exchangeInfo) and books that have never been live.
    First = 0,
    /// Resyncs of books that were live before.
    Resync = 1,
    /// Periodic polls.
    Poll = 2,
}

#[derive(Debug)]
struct Job {
    class: Class,
    seq: u64,
    path: String,
    weight: u64,
    reply: Reply,
}

impl PartialEq for Job {
    fn eq(&self, o: &Self) -> bool {
        (self.class, self.seq) == (o.class, o.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Job {
    /// The max-heap's top is the lowest class, then the oldest.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.class, o.seq).cmp(&(self.class, self.seq))
    }
}

#[derive(Debug)]
struct Budget {
    /// The per-minute weight limit.
    limit: u64,
    /// The UTC minute `used` counts (minutes since the epoch).
    minute: u64,
    /// Weight spent (sent, or reported by the server) in `minute`.
    used: u64,
    /// Nothing is sent before this (after a 429 or a 418).
    paused_until: Option<Instant>,
    /// The minute of the last `X-MBX-USED-WEIGHT-1M` read.
    seen_minute: u64,
    /// In `seen_minute`, the server counted more than this process sent: another client on
    /// the same IP is spending the budget.
    foreign: bool,
    /// When the `/futures/data/` requests of the last [`DATA_WINDOW`] were sent.
    data: std::collections::VecDeque<Instant>,
}

/// Milliseconds since the epoch, from the wall clock (Binance's minutes are UTC minutes).
fn wall_ms() -> u64 {
    crate::source::clock::now_ns() as u64 / 1_000_000
}

/// The REST host of one market: its client, budget, queue and counters.
pub struct RestHost {
    pub market: Market,
    /// `http://host:port` or `https://host`.
    pub base: String,
    client: HttpClient,
    opts: RestOptions,
    budget: Mutex<Budget>,
    jobs: Mutex<(BinaryHeap<Job>, u64)>,
    wake: tokio::sync::Notify,
    started: AtomicBool,
    pub stats: RestStats,
}

impl std::fmt::Debug for RestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestHost")
            .field("market", &self.market)
            .field("base", &self.base)
            .finish()
    }
}

impl RestHost {
    /// The host of `market` at `base` (`http://host:port`, `https://host`).
    pub fn new(
        market: Market,
        base: &str,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
        opts: RestOptions,
    ) -> Result<Arc<RestHost>, RestError> {
        let base = base.trim_end_matches('/').to_string();
        let client = HttpClient::new(&base, extra_roots)?;
        let limit = default_weight_limit(market);
        let stats = RestStats::default();
        stats.weight_limit.store(limit, Ordering::Relaxed);
        Ok(Arc::new(RestHost {
            market,
            base,
            client,
            opts,
            budget: Mutex::new(Budget {
                limit,
                minute: 0,
                used: 0,
                paused_until: None,
                seen_minute: 0,
                foreign: false,
                data: Default::default(),
            }),
            jobs: Mutex::new((BinaryHeap::new(), 0)),
            wake: tokio::sync::Notify::new(),
            started: AtomicBool::new(false),
            stats,
        }))
    }

    /// Sets the per-minute weight limit (from exchangeInfo's `rateLimits`).
    pub fn set_weight_limit(&self, limit: u64) {
        if limit > 0 {
            self.lock_budget().limit = limit;
            self.stats.weight_limit.store(limit, Ordering::Relaxed);
        }
    }

    /// The weight this process may spend a minute (the limit times the share).
    pub fn weight_cap(&self) -> u64 {
        (self.lock_budget().limit as f64 * self.opts.max_weight_share).floor() as u64
    }

    fn lock_budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `GET path` of `weight`; the answer goes to `reply`.
    pub fn submit(self: &Arc<Self>, class: Class, path: String, weight: u64, reply: Reply) {
        {
            let mut g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            g.1 += 1;
            let seq = g.1;
            g.0.push(Job {
                class,
                seq,
                path,
                weight,
                reply,
            });
        }
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().dispatch());
        }
        self.wake.notify_one();
    }

    /// `GET path` of `weight` through the budget, awaited.
    pub async fn get(
        self: &Arc<Self>,
        class: Class,
        path: String,
        weight: u64,
    ) -> Result<String, RestError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(class, path, weight, Reply::Once(tx));
        rx.await
            .unwrap_or_else(|_| Err(RestError::Http("the request was dropped".into())))
    }

    /// Requests waiting in the queue.
    pub fn queued(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether the next request must go alone: the first of each minute (until the server's
    /// count of this minute is known), while another client spends the same budget, and after
    /// a 429 or 418. A request in flight when a 429 comes back arrives during its wait, which
    /// Binance may answer with a ban.
    fn serial(&self) -> bool {
        let b = self.lock_budget();
        b.seen_minute != wall_ms() / 60_000 || b.foreign || b.paused_until.is_some()
    }

    /// The `/futures/data/` requests this process may send in [`DATA_WINDOW`].
    pub fn data_cap(&self) -> u64 {
        ((self.opts.data_per_5min as f64 * self.opts.max_weight_share).floor() as u64).max(1)
    }

    /// Reserves `weight` now (and, for a `/futures/data/` request, a place in its window), or
    /// says until when to wait.
    fn admit(&self, weight: u64, data: bool) -> Result<(), Instant> {
        let now = Instant::now();
        let wall = wall_ms();
        let mut b = self.lock_budget();
        if let Some(until) = b.paused_until {
            if until > now {
                return Err(until);
            }
            b.paused_until = None;
        }
        let minute = wall / 60_000;
        if b.minute != minute {
            b.minute = minute;
            b.used = 0;
        }
        let cap = (b.limit as f64 * self.opts.max_weight_share).floor() as u64;
        if b.used + weight > cap {
            // To the next minute, and 100 ms past it (the server's clock may be behind ours).
            let to_next = 60_000 - wall % 60_000 + 100;
            return Err(now + Duration::from_millis(to_next));
        }
        if data {
            while b
                .data
                .front()
                .is_some_and(|t| now.duration_since(*t) >= DATA_WINDOW)
            {
                b.data.pop_front();
            }
            if b.data.len() as u64 >= self.data_cap() {
                let free_at = b.data.front().map_or(now, |t| *t + DATA_WINDOW);
                return Err(free_at + Duration::from_millis(100));
            }
            b.data.push_back(now);
        }
        b.used += weight;
        Ok(())
    }

    /// Takes what an answer says of the budget.
    fn observe(&self, r: &Result<Answer, RestError>) {
        let now = Instant::now();
        let wall = wall_ms();
        let mut b = self.lock_budget();
        let used = match r {
            Ok(a) => a.used_weight,
            Err(RestError::Status { used_weight, .. }) => *used_weight,
            Err(_) => None,
        };
        if let Some(u) = used {
            let minute = wall / 60_000;
            if b.minute == minute {
                if b.seen_minute != minute {
                    b.seen_minute = minute;
                    b.foreign = false;
                }
                b.foreign |= u > b.used;
                b.used = b.used.max(u);
            }
        }
        if let Err(RestError::Status {
            status,
            retry_after,
            ..
        }) = r
        {
            let to_next = Duration::from_millis(60_000 - wall % 60_000 + 100);
            let wait = match (status, retry_after) {
                (429 | 418, Some(s)) => Duration::from_secs(*s),
                (429, None) => to_next,
                (418, None) => Duration::from_secs(120),
                _ => return,
            };
            let until = now + wait;
            b.paused_until = Some(b.paused_until.map_or(until, |p| p.max(until)));
            drop(b);
            if *status == 418 {
                self.stats.status_418.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "REST {}: BANNED (418): this IP may not call it for {} s; no REST to it until then, streams go on",
                    self.base,
                    wait.as_secs()
                );
            } else {
                self.stats.status_429.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "REST {}: 429 (over the request weight a minute); no REST to it for {:.1} s",
                    self.base,
                    wait.as_secs_f64()
                );
            }
        }
    }

    /// Sends the queued requests, one at a time through the budget, `concurrency` in flight.
    async fn dispatch(self: Arc<Self>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(self.opts.concurrency.max(1)));
        loop {
            let notified = self.wake.notified();
            let job = {
                let mut g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
                // Requests whose askers are gone (a closed connection) are not sent.
                while g.0.peek().is_some_and(|j| j.reply.is_closed()) {
                    g.0.pop();
                }
                g.0.pop()
            };
            let Some(job) = job else {
                notified.await;
                continue;
            };
            // Alone: every permit (the requests in flight come back first, and with them a
            // 429 that the budget check below then sees).
            let n = if self.serial() {
                self.opts.concurrency.max(1)
            } else {
                1
            };
            let Ok(permit) = permits.clone().acquire_many_owned(n as u32).await else {
                return;
            };
            if let Err(until) = self.admit(job.weight, is_data_path(&job.path)) {
                drop(permit);
                self.jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .push(job);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    // A new request may be lighter or go first: look again.
                    _ = notified => {}
                }
                continue;
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.stats.weight.fetch_add(job.weight, Ordering::Relaxed);
            let host = self.clone();
            tokio::spawn(async move {
                let r = host.client.get(&job.path).await;
                host.observe(&r);
                match r {
                    Err(RestError::Status {
                        status: 429 | 418, ..
                    }) => host.requeue(job),
                    r => {
                        if r.is_err() {
                            host.stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        job.reply.send(r.map(|a| a.body)).await;
                    }
                }
                drop(permit);
            });
        }
    }

    /// Puts a request back at its place in the queue.
    fn requeue(&self, job: Job) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(job);
        self.wake.notify_one();
    }
}

/// One symbol of exchangeInfo: what discovery filters on and what the `instrument` record
/// keeps (decimals as the text Binance wrote).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instrument {
    pub symbol: String,
    /// `TRADING`, `BREAK`, `HALT`, `SETTLING`, ...
    pub status: String,
    pub base_asset: String,
    pub quote_asset: String,
    /// USD-M: `PERPETUAL`, `CURRENT_QUARTER`, ...; spot: none.
    pub contract_type: Option<String>,
    /// `PRICE_FILTER.tickSize`.
    pub tick_size: Option<String>,
    /// `LOT_SIZE.stepSize`.
    pub step_size: Option<String>,
    /// `LOT_SIZE.minQty`.
    pub min_qty: Option<String>,
    pub price_precision: Option<i64>,
    pub quantity_precision: Option<i64>,
    pub base_asset_precision: Option<i64>,
    pub quote_precision: Option<i64>,
    /// ms since the epoch.
    pub onboard_date: Option<i64>,
    /// ms since the epoch.
    pub delivery_date: Option<i64>,
}

/// What exchangeInfo says: the per-minute request-weight limit (`rateLimits`, type
/// `REQUEST_WEIGHT`, per minute), the server's time and the symbols.
#[derive(Debug, Clone, Default)]
pub struct ExchangeInfo {
    pub weight_per_minute: Option<u64>,
    /// `serverTime`, ms.
    pub server_time: Option<i64>,
    pub symbols: Vec<Instrument>,
}

/// Parses an exchangeInfo body (spot or USD-M).
pub fn parse_exchange_info(body: &str) -> Result<ExchangeInfo, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("exchangeInfo: {e}"))?;
    let weight_per_minute = v
        .get("rateLimits")
        .and_then(|r| r.as_array())
        .and_then(|a| {
            a.iter().find_map(|l| {
                let is = |k: &str, want: &str| l.get(k).and_then(|x| x.as_str()) == Some(want);
                let per = l.get("intervalNum").and_then(|x| x.as_u64()).unwrap_or(1);
                (is("rateLimitType", "REQUEST_WEIGHT") && is("interval", "MINUTE") && per > 0)
                    .then(|| l.get("limit").and_then(|x| x.as_u64()).map(|n| n / per))
                    .flatten()
            })
        });
    let list = v
        .get("symbols")
        .and_then(|s| s.as_array())
        .ok_or("exchangeInfo: no symbols")?;
    let text =
        |s: &serde_json::Value, k: &str| s.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let int = |s: &serde_json::Value, k: &str| s.get(k).and_then(|x| x.as_i64());
    let filter = |s: &serde_json::Value, kind: &str, k: &str| {
        s.get("filters")?
            .as_array()?
            .iter()
            .find(|f| f.get("filterType").and_then(|t| t.as_str()) == Some(kind))
            .and_then(|f| text(f, k))
    };
    let symbols = list
        .iter()
        .filter_map(|s| {
            Some(Instrument {
                symbol: text(s, "symbol")?,
                status: text(s, "status").unwrap_or_default(),
                base_asset: text(s, "baseAsset").unwrap_or_default(),
                quote_asset: text(s, "quoteAsset").unwrap_or_default(),
                contract_type: text(s, "contractType").filter(|c| !c.is_empty()),
                tick_size: filter(s, "PRICE_FILTER", "tickSize"),
                step_size: filter(s, "LOT_SIZE", "stepSize"),
                min_qty: filter(s, "LOT_SIZE", "minQty"),
                price_precision: int(s, "pricePrecision"),
                quantity_precision: int(s, "quantityPrecision"),
                base_asset_precision: int(s, "baseAssetPrecision"),
                quote_precision: int(s, "quotePrecision"),
                onboard_date: int(s, "onboardDate"),
                delivery_date: int(s, "deliveryDate"),
            })
        })
        .collect();
    Ok(ExchangeInfo {
        weight_per_minute,
        server_time: v.get("serverTime").and_then(|x| x.as_i64()),
        symbols,
    })
}

/// Which symbols of exchangeInfo `symbols = ["*"]` takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolFilter {
    /// Only these quote assets (empty: any).
    pub quote_assets: Vec<String>,
    /// Only these contract types (USD-M; empty: any).
    pub contract_types: Vec<String>,
    /// Never these symbols.
    pub exclude: Vec<String>,
    /// Only the symbols of this shard: (i, n), 0 <= i < n ([`crate::bus::shard_of`]).
    pub shard: Option<(u32, u32)>,
}

impl SymbolFilter {
    /// The TRADING symbols of `info` that pass, in exchangeInfo's order.
    pub fn select(&self, info: &ExchangeInfo) -> Vec<String> {
        let any = |list: &[String], v: &str| {
            list.is_empty() || list.iter().any(|x| x.eq_ignore_ascii_case(v))
        };
        info.symbols
            .iter()
            .filter(|i| i.status == "TRADING")
            .filter(|i| any(&self.quote_assets, &i.quote_asset))
            .filter(|i| {
                self.contract_types.is_empty()
                    || i.contract_type
                        .as_deref()
                        .is_some_and(|c| any(&self.contract_types, c))
            })
            .filter(|i| {
                !self
                    .exclude
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(&i.symbol))
            })
            .filter(|i| {
                self.shard
                    .is_none_or(|(k, n)| crate::bus::shard_of(&i.symbol, n) == k)
            })
            .map(|i| i.symbol.clone())
            .collect()
    }
}
