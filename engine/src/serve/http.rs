//! The engine's HTTP server: `/health`, `/metrics` (Prometheus text format), the query API
//! (`/v1/...`), its OpenAPI document (`/v1/openapi.json`) and the status page (`/`).
//!
//! hyper's HTTP/1.1 server on the engine's `http` runtime thread: keep-alive, HEAD, limits on
//! the request head (size and read time), on the body a request may announce and on the time
//! a request may take, JSON errors for every 4xx/5xx, and a graceful stop (no new connections,
//! requests in flight answered within the grace period). With a bearer token every path but
//! `/health` and the page itself requires `Authorization: Bearer <token>`; a bind address
//! that is not loopback is refused without one ([`check_bind`]). Metric names are defined
//! here, in one place.

use crate::pipeline::metrics::Histogram;
use crate::runner::Counters;
use crate::serve::query::{Api, Reply};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::{Kind, Market};
use tokio::net::TcpListener;

/// Health state.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once a stop has begun.
    pub stopping: AtomicBool,
}

/// Latency bucket bounds exported to Prometheus, µs.
const LE_US: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000,
];

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for le in LE_US {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {}",
            le as f64 / 1e6,
            h.count_le(le)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum {}", h.sum() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", h.count());
}

fn counter(out: &mut String, name: &str, help: &str, rows: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, rows: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// The Prometheus text of `c`.
pub fn metrics_text(c: &Counters, uptime_s: f64) -> String {
    let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let mut o = String::with_capacity(8192);
    let _ = writeln!(o, "# HELP tickwire_uptime_seconds Seconds since start.\n# TYPE tickwire_uptime_seconds gauge\ntickwire_uptime_seconds {uptime_s:.3}");
    counter(
        &mut o,
        "tickwire_frames_total",
        "WebSocket frames received.",
        &[(String::new(), l(&c.queue.frames))],
    );
    counter(
        &mut o,
        "tickwire_decode_errors_total",
        "Frames the decoder refused.",
        &[(String::new(), l(&c.queue.decode_errors))],
    );
    counter(
        &mut o,
        "tickwire_unknown_events_total",
        "Frames of unknown event types.",
        &[(String::new(), l(&c.queue.unknown))],
    );
    let recs: Vec<(String, u64)> = Kind::ALL
        .iter()
        .map(|k| {
            (
                format!("kind=\"{}\"", k.as_str()),
                l(&c.pipeline.records[k.index()]),
            )
        })
        .collect();
    counter(
        &mut o,
        "tickwire_records_total",
        "Records taken in by the pipeline, by kind (gap = detected gaps).",
        &recs,
    );
    counter(
        &mut o,
        "tickwire_dropped_total",
        "Records dropped, by where: every drop is counted.",
        &[
            ("where=\"queue\"".into(), l(&c.queue.dropped)),
            ("where=\"zmq\"".into(), l(&c.zmq.dropped)),
            ("where=\"sink_queue\"".into(), l(&c.pipeline.sink_drops)),
        ]
        .into_iter()
        .chain(
            c.nats
                .as_ref()
                .map(|n| ("where=\"nats\"".to_string(), l(&n.dropped))),
        )
        .collect::<Vec<_>>(),
    );
    let gaps: Vec<(String, u64)> = Kind::ALL
        .iter()
        .map(|k| {
            (
                format!("stream=\"{}\"", k.as_str()),
                l(&c.queue.gaps[k.index()]),
            )
        })
        .collect();
    counter(
        &mut o,
        "tickwire_gaps_total",
        "Sequence gaps detected, by the stream kind they are in.",
        &gaps,
    );
    counter(
        &mut o,
        "tickwire_reconnects_total",
        "Reconnects after a connection closed or failed.",
        &[(String::new(), l(&c.queue.reconnects))],
    );
    counter(
        &mut o,
        "tickwire_rotations_total",
        "Connections replaced ahead of the exchange's 24 h close.",
        &[(String::new(), l(&c.queue.rotations))],
    );
    counter(
        &mut o,
        "tickwire_rotation_handover_timeouts_total",
        "Rotations whose old connection was stopped before it had read up to the new one's first record (what it had not read is lost).",
        &[(String::new(), l(&c.queue.handover_timeouts))],
    );
    counter(
        &mut o,
        "tickwire_connect_errors_total",
        "Connection attempts that failed.",
        &[(String::new(), l(&c.queue.connect_errors))],
    );
    counter(
        &mut o,
        "tickwire_connect_waits_total",
        "Connection attempts that waited for their host's window of 240 attempts in 5 minutes.",
        &[(String::new(), l(&c.queue.connect_waits))],
    );
    // REST and books, by market (summed over a market's hosts).
    let by_market = |f: &dyn Fn(&crate::source::rest::RestStats) -> u64| -> Vec<(String, u64)> {
        [Market::Spot, Market::Usdm]
            .into_iter()
            .filter(|m| c.rest.iter().any(|h| h.market == *m))
            .map(|m| {
                let v = c
                    .rest
                    .iter()
                    .filter(|h| h.market == m)
                    .map(|h| f(&h.stats))
                    .sum();
                (format!("market=\"{}\"", m.as_str()), v)
            })
            .collect()
    };
    let mut rest = Vec::new();
    for (result, f) in [
        (
            "sent",
            (|s: &crate::source::rest::RestStats| &s.requests)
                as fn(&crate::source::rest::RestStats) -> &std::sync::atomic::AtomicU64,
        ),
        ("status_429", |s| &s.status_429),
        ("status_418", |s| &s.status_418),
        ("failed", |s| &s.errors),
    ] {
        for (m, v) in by_market(&|s| l(f(s))) {
            rest.push((format!("{m},result=\"{result}\""), v));
        }
    }
    counter(
        &mut o,
        "tickwire_rest_requests_total",
        "REST requests sent to the exchange, and their answers 429 (over the weight a minute), 418 (banned) and other failures.",
        &rest,
    );
    let mut listings = by_market(&|s| l(&s.listed))
        .into_iter()
        .map(|(m, v)| (format!("{m},change=\"listed\""), v))
        .collect::<Vec<_>>();
    listings.extend(
        by_market(&|s| l(&s.delisted))
            .into_iter()
            .map(|(m, v)| (format!("{m},change=\"delisted\""), v)),
    );
    counter(
        &mut o,
        "tickwire_listings_total",
        "Symbols a symbols = [\"*\"] source took up (newly TRADING) or let go while running.",
        &listings,
    );
    if let Some(t) = &c.tiering {
        let (runs, w, copied, cleaned) = t.totals();
        counter(
            &mut o,
            "tickwire_tier_runs_total",
            "Scheduled tiering passes done ([tiering]).",
            &[(String::new(), runs)],
        );
        counter(
            &mut o,
            "tickwire_tier_windows_total",
            "Tiering windows (table x market x UTC day) by outcome: copied to every target, verified (count and checksum equal), failed (left in the hot tier), cleaned from the hot tier.",
            &[
                ("state=\"copied\"".to_string(), w.copied),
                ("state=\"verified\"".to_string(), w.verified),
                ("state=\"failed\"".to_string(), w.failed),
                ("state=\"cleaned\"".to_string(), w.cleaned),
            ],
        );
        counter(
            &mut o,
            "tickwire_tier_rows_total",
            "Rows the tiering copied to the cold targets, and removed from the hot tier after verification.",
            &[
                ("op=\"copied\"".to_string(), copied),
                ("op=\"cleaned\"".to_string(), cleaned),
            ],
        );
    }
    if let Some(n) = &c.nats {
        counter(
            &mut o,
            "tickwire_nats_published_total",
            "What NATS JetStream acknowledged: messages, the records in them, and acks that were duplicates of a retried publish.",
            &[
                ("unit=\"messages\"".to_string(), l(&n.messages)),
                ("unit=\"records\"".to_string(), l(&n.records)),
                ("unit=\"duplicates\"".to_string(), l(&n.duplicates)),
            ],
        );
        counter(
            &mut o,
            "tickwire_nats_errors_total",
            "JetStream publishes that failed or timed out (each sent again after a backoff).",
            &[(String::new(), l(&n.errors))],
        );
        counter(
            &mut o,
            "tickwire_nats_spilled_records_total",
            "Records the NATS sink wrote to its spill file while NATS was slow or down.",
            &[(String::new(), l(&n.spilled))],
        );
        gauge(
            &mut o,
            "tickwire_nats_pending_records",
            "Records waiting for a JetStream ack (in memory, in flight or spilled).",
            &[(String::new(), l(&n.pending))],
        );
    }
    if let Some(r) = &c.redis {
        counter(
            &mut o,
            "tickwire_l1_reads_total",
            "Query API candle and book reads the Redis L1 answered (hit) or left to the next tier (miss: the range or book not held, Redis down).",
            &[
                ("result=\"hit\"".to_string(), l(&r.reads_hit)),
                ("result=\"miss\"".to_string(), l(&r.reads_miss)),
            ],
        );
        counter(
            &mut o,
            "tickwire_l1_commands_total",
            "Redis commands the L1 sent.",
            &[(String::new(), l(&r.commands))],
        );
    }
    counter(
        &mut o,
        "tickwire_rest_unreadable_total",
        "REST answers, or entries of them (an exchangeInfo symbol, a series point), that could not be read into a record; each is logged.",
        &by_market(&|s| l(&s.unreadable)),
    );
    counter(
        &mut o,
        "tickwire_rest_weight_total",
        "Request weight of the REST requests sent.",
        &by_market(&|s| l(&s.weight)),
    );
    gauge(
        &mut o,
        "tickwire_rest_weight_limit",
        "The per-minute request-weight limit in force (exchangeInfo's rateLimits).",
        &by_market(&|s| l(&s.weight_limit)),
    );
    counter(
        &mut o,
        "tickwire_books_synced_total",
        "Order books made live from a snapshot (first syncs and resyncs).",
        &by_market(&|s| l(&s.books_synced)),
    );
    counter(
        &mut o,
        "tickwire_book_resyncs_total",
        "Order books discarded because their diffs broke.",
        &by_market(&|s| l(&s.resyncs)),
    );
    gauge(
        &mut o,
        "tickwire_books_waiting",
        "Order books waiting for a snapshot that bridges their diffs.",
        &by_market(&|s| l(&s.books_waiting)),
    );
    counter(
        &mut o,
        "tickwire_published_total",
        "Messages published over ZMQ.",
        &[(String::new(), l(&c.zmq.sent))],
    );
    counter(
        &mut o,
        "tickwire_zmq_batches_total",
        "Flushed batches published as Arrow IPC on batch.* topics, by outcome.",
        &[
            ("result=\"sent\"".into(), l(&c.zmq.batches_sent)),
            ("result=\"dropped\"".into(), l(&c.zmq.batches_dropped)),
        ],
    );
    counter(
        &mut o,
        "tickwire_flushed_rows_total",
        "Rows flushed to the sinks in batches.",
        &[(String::new(), l(&c.pipeline.rows))],
    );
    counter(
        &mut o,
        "tickwire_flushed_batches_total",
        "Batches flushed to the sinks.",
        &[(String::new(), l(&c.pipeline.batches))],
    );
    let sink = |f: fn(&tickwire_sinks::SinkCounters) -> u64| -> Vec<(String, u64)> {
        c.sinks
            .iter()
            .map(|(n, s)| (format!("sink=\"{n}\""), f(s)))
            .collect()
    };
    counter(
        &mut o,
        "tickwire_sink_rows_total",
        "Rows a sink has durably written (acknowledged by the store; Parquet: in closed files).",
        &sink(|s| s.rows.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_rows_written_total",
        "Rows a sink has handed to its store (Parquet: written into open files, durable when they close).",
        &sink(|s| s.written_rows.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_bytes_total",
        "Bytes a sink has written.",
        &sink(|s| s.bytes.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_errors_total",
        "Sink write errors.",
        &sink(|s| s.errors.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_dropped_rows_total",
        "Rows of batches a sink refused with an error.",
        &sink(|s| s.dropped_rows.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_spilled_rows_total",
        "Rows a sink kept on disk to send later.",
        &sink(|s| s.spilled_rows.load(Ordering::Relaxed)),
    );
    // The read pattern of the design documents, tier by tier (L1 Redis -> L2 the Arrow cache
    // -> L3 the store behind it): hit (answered alone), partial_hit (with the tier behind it),
    // miss (left to the next tier). The hit rate of a tier is hit / (hit + partial_hit + miss).
    let mut tiers = Vec::new();
    if let Some(r) = &c.redis {
        tiers.push(("tier=\"l1\",result=\"hit\"".to_string(), l(&r.reads_hit)));
        tiers.push(("tier=\"l1\",result=\"miss\"".to_string(), l(&r.reads_miss)));
    }
    if let Some(cc) = &c.cache {
        for (t, r, v) in [
            ("l2", "hit", &cc.hits),
            ("l2", "partial_hit", &cc.partial_hits),
            ("l2", "miss", &cc.misses),
            ("l3", "hit", &cc.store_hits),
            ("l3", "partial_hit", &cc.store_partial_hits),
        ] {
            tiers.push((format!("tier=\"{t}\",result=\"{r}\""), l(v)));
        }
    }
    if !tiers.is_empty() {
        counter(
            &mut o,
            "tickwire_tier_reads_total",
            "Query API reads by tier (l1 Redis, l2 the Arrow cache, l3 the store behind it) and result: hit (the tier alone), partial_hit (with the tier behind it), miss (left to the next tier).",
            &tiers,
        );
    }
    if let Some(cc) = &c.cache {
        counter(
            &mut o,
            "tickwire_cache_queries_total",
            "Query API answers by the tiers that served them.",
            &[
                ("result=\"hit\"".into(), l(&cc.hits)),
                ("result=\"partial_hit\"".into(), l(&cc.partial_hits)),
                ("result=\"miss\"".into(), l(&cc.misses)),
                ("result=\"error\"".into(), l(&cc.errors)),
            ],
        );
        counter(
            &mut o,
            "tickwire_cache_evicted_total",
            "Batches and rows evicted from the cache (age or memory).",
            &[
                ("unit=\"batches\"".into(), l(&cc.evicted_batches)),
                ("unit=\"rows\"".into(), l(&cc.evicted_rows)),
            ],
        );
        let _ = writeln!(o, "# HELP tickwire_cache_bytes Arrow bytes held by the cache.\n# TYPE tickwire_cache_bytes gauge\ntickwire_cache_bytes {}", l(&cc.bytes));
        let _ = writeln!(o, "# HELP tickwire_cache_batches Flushed batches held by the cache.\n# TYPE tickwire_cache_batches gauge\ntickwire_cache_batches {}", l(&cc.batches));
    }
    counter(
        &mut o,
        "tickwire_http_responses_total",
        "HTTP answers by status code (401: a missing or wrong bearer token).",
        &c.http.rows(),
    );
    histogram(
        &mut o,
        "tickwire_recv_to_publish_seconds",
        "Frame receive to ZMQ publish.",
        &c.pipeline.recv_to_publish.snapshot(),
    );
    histogram(
        &mut o,
        "tickwire_recv_to_flush_seconds",
        "Frame receive to batch flushed to the sinks.",
        &c.pipeline.recv_to_flush.snapshot(),
    );
    histogram(
        &mut o,
        "tickwire_exchange_lag_seconds",
        "Exchange event time to ZMQ publish.",
        &c.pipeline.exchange_lag.snapshot(),
    );
    o
}

fn hot_of(c: &Counters) -> Option<crate::tier::Endpoint> {
    c.tiering.as_ref().and_then(|t| t.hot())
}

/// `/v1/tiering`: the schedule's status, and the ledger's newest state of each window.
async fn tiering_reply(t: &crate::tier::Status, hot: Option<crate::tier::Endpoint>) -> Reply {
    let mut v = t.json();
    if let Some(hot) = hot {
        v["ledger"] = match crate::tier::ledger_windows(&hot, 1000).await {
            Ok(w) => w,
            Err(e) => {
                v["ledger_error"] = serde_json::Value::String(crate::cmd::error_line(&e));
                serde_json::Value::Array(vec![])
            }
        };
    }
    Reply {
        status: "200 OK",
        content_type: "application/json",
        headers: vec![],
        body: v.to_string().into_bytes(),
    }
}

/// The status page: one static file, no build step.
const STATUS_PAGE: &str = include_str!("status.html");

/// The request head (request line and headers) may be at most this large (431 beyond).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A request may announce a body of at most this many bytes (413 beyond); none is read.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
/// The head must have arrived within this time, or the connection is closed.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request is answered within this time, or with 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// At a stop, requests in flight get this long to be answered.
pub const GRACE: Duration = Duration::from_secs(5);

/// A bearer token. Its `Debug` never shows it, so it cannot reach a log line by accident.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A token; `None` when empty.
    pub fn new(s: impl Into<String>) -> Option<Token> {
        let s = s.into();
        (!s.trim().is_empty()).then(|| Token(s.trim().to_string()))
    }

    /// This token, unless it is empty (not set).
    pub fn nonempty(&self) -> Option<Token> {
        Token::new(self.0.clone())
    }

    /// Whether an `Authorization` header value carries this token (compared in constant
    /// time).
    fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let want = self.0.as_bytes();
        let mut diff = given.len() ^ want.len();
        for (i, w) in want.iter().enumerate() {
            diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ w);
        }
        diff == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where the HTTP server listens, and the token it asks for.
#[derive(Clone, Debug)]
pub struct Listen {
    /// `host:port`.
    pub bind: String,
    /// Required on every path but `/health` and `/` when set.
    pub token: Option<Token>,
}

impl Listen {
    /// Loopback `bind`, no token.
    pub fn local(bind: impl Into<String>) -> Listen {
        Listen {
            bind: bind.into(),
            token: None,
        }
    }
}

/// Whether `host` (a name or an address, without port) only reaches this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        // A name: loopback only if every address it resolves to is.
        Err(_) => match std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)) {
            Ok(addrs) => {
                let addrs: Vec<_> = addrs.collect();
                !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
            }
            Err(_) => false,
        },
    }
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(bind: &str) -> &str {
    match bind.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => bind,
    }
}

/// Refuses a bind address that is not loopback unless a token guards it.
pub fn check_bind(l: &Listen) -> anyhow::Result<()> {
    if l.token.is_none() && !is_loopback_host(host_of(&l.bind)) {
        anyhow::bail!(
            "http bind {:?} is not a loopback address: set [http] token (or \
             TICKWIRE_HTTP__TOKEN; `--http-token` / TICKWIRE_HTTP_TOKEN for demo) so every \
             request must carry it as a bearer token, or bind 127.0.0.1",
            l.bind
        );
    }
    Ok(())
}

/// Whether a ZMQ endpoint only reaches this machine (`ipc://`, `inproc://`, or TCP on a
/// loopback address; `tcp://*:port` is every interface).
pub fn is_local_endpoint(endpoint: &str) -> bool {
    match endpoint.split_once("://") {
        Some(("ipc" | "inproc", _)) => true,
        Some(("tcp", rest)) => {
            let host = host_of(rest);
            // `tcp://eth0:5556` names an interface; only loopback names count as local.
            host != "*" && is_loopback_host(host)
        }
        _ => false,
    }
}

/// HTTP answers by status code, for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpCounters {
    answers: [AtomicU64; CODES.len()],
}

/// The codes the server answers with (anything else is counted as `other`).
const CODES: [&str; 13] = [
    "200", "400", "401", "404", "405", "406", "413", "431", "500", "502", "503", "504", "other",
];

impl HttpCounters {
    fn count(&self, code: u16) {
        let s = code.to_string();
        let i = CODES
            .iter()
            .position(|c| *c == s)
            .unwrap_or(CODES.len() - 1);
        self.answers[i].fetch_add(1, Ordering::Relaxed);
    }

    fn rows(&self) -> Vec<(String, u64)> {
        CODES
            .iter()
            .zip(&self.answers)
            .map(|(c, n)| (format!("code=\"{c}\""), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// What a request is answered from.
struct Ctx {
    c: Arc<Counters>,
    health: Arc<Health>,
    t0: Instant,
    api: Option<Arc<Api>>,
    token: Option<Token>,
}

/// A JSON error answer.
fn error(status: &'static str, msg: &str) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        headers: vec![],
        body: serde_json::json!({ "error": msg }).to_string().into_bytes(),
    }
}

/// The answer to one request (any method but GET and HEAD was refused before).
async fn route(ctx: &Ctx, path: &str, query: &str, accept: &str) -> Reply {
    let c = &ctx.c;
    match path {
        "/" | "/index.html" => Reply {
            status: "200 OK",
            content_type: "text/html; charset=utf-8",
            headers: vec!["Cache-Control: no-cache".into()],
            body: STATUS_PAGE.as_bytes().to_vec(),
        },
        "/v1/openapi.json" => Reply {
            status: "200 OK",
            content_type: "application/json",
            headers: vec![],
            body: crate::serve::openapi::document().as_bytes().to_vec(),
        },
        "/v1/tiering" => match &c.tiering {
            Some(t) => tiering_reply(t, hot_of(c)).await,
            None => error("404 Not Found", "no [tiering] in this run"),
        },
        p if p.starts_with("/v1/") => match &ctx.api {
            Some(api) => api.handle(path, query, accept).await,
            None => error("404 Not Found", "no query API: the cache is off"),
        },
        "/health" => {
            let stopping = ctx.health.stopping.load(Ordering::Relaxed);
            Reply {
                status: if stopping {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                },
                content_type: "application/json",
                headers: vec![],
                body: format!(
                    "{{\"status\":\"{}\",\"uptime_s\":{:.3}}}",
                    if stopping { "stopping" } else { "ok" },
                    ctx.t0.elapsed().as_secs_f64()
                )
                .into_bytes(),
            }
        }
        "/metrics" => Reply {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4",
            headers: vec![],
            body: metrics_text(c, ctx.t0.elapsed().as_secs_f64()).into_bytes(),
        },
        _ => error(
            "404 Not Found",
            "not found: try /, /health, /metrics, /v1/openapi.json or /v1/<kind>",
        ),
    }
}

/// One request: method, limits and token checked, then routed.
async fn answer(ctx: &Ctx, req: &hyper::Request<hyper::body::Incoming>) -> Reply {
    use hyper::Method;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            "405 Method Not Allowed",
            &format!("method {} not allowed: GET or HEAD", req.method()),
        );
        r.headers.push("Allow: GET, HEAD".into());
        return r;
    }
    let announced = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES) {
        return error(
            "413 Payload Too Large",
            &format!("a request body may be at most {MAX_BODY_BYTES} bytes"),
        );
    }
    let path = req.uri().path();
    if let Some(token) = &ctx.token {
        let open = matches!(path, "/health" | "/" | "/index.html");
        let auth = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !open && !token.admits(auth) {
            let mut r = error(
                "401 Unauthorized",
                "this server requires Authorization: Bearer <token>",
            );
            r.headers.push("WWW-Authenticate: Bearer".into());
            return r;
        }
    }
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let query = req.uri().query().unwrap_or("");
    match tokio::time::timeout(REQUEST_TIMEOUT, route(ctx, path, query, accept)).await {
        Ok(r) => r,
        Err(_) => error(
            "503 Service Unavailable",
            &format!(
                "the request took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// `reply` as a hyper response.
fn response(reply: Reply) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let code = reply
        .status
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| hyper::StatusCode::from_u16(c).ok())
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = hyper::Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, reply.content_type);
    for h in &reply.headers {
        if let Some((k, v)) = h.split_once(':') {
            b = b.header(k.trim(), v.trim());
        }
    }
    b.body(http_body_util::Full::new(bytes::Bytes::from(reply.body)))
        .unwrap_or_else(|_| {
            let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
                b"{\"error\":\"the answer could not be framed\"}",
            )));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

/// A running HTTP server.
#[derive(Debug)]
pub struct Server {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    /// The bound address.
    pub addr: std::net::SocketAddr,
}

impl Server {
    /// Stops accepting, answers the requests in flight (for at most [`GRACE`]) and closes
    /// every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves on `listen` until [`Server::shutdown`].
pub async fn serve(
    listen: &Listen,
    c: Arc<Counters>,
    health: Arc<Health>,
    t0: Instant,
    api: Option<Arc<Api>>,
) -> std::io::Result<Server> {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener = TcpListener::bind(&listen.bind).await?;
    let addr = listener.local_addr()?;
    let ctx = Arc::new(Ctx {
        c,
        health,
        t0,
        api,
        token: listen.token.clone(),
    });
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let sock = tokio::select! {
                r = listener.accept() => match r {
                    Ok((sock, _)) => sock,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => break,
            };
            let _ = sock.set_nodelay(true);
            let ctx = ctx.clone();
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move {
                    let reply = answer(&ctx, &req).await;
                    let r = response(reply);
                    ctx.c.http.count(r.status().as_u16());
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true)
                // `Content-Type`, `X-Tickwire-Rows`: the header names as they were before
                // hyper (which would send them lower-case).
                .title_case_headers(true)
                .serve_connection(TokioIo::new(sock), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        drop(listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(GRACE) => {}
        }
    });
    Ok(Server { task, stop, addr })
}
