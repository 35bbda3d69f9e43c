//! Runs the engine: sources (and optionally the simulator) -> queue -> pipeline -> sinks, with
//! the stats line, the HTTP endpoints and a clean stop. `tickwire demo` and `tickwire run` are
//! two ways to fill in [`Settings`].

use crate::pipeline::publish::{PubConfig, PubCounters, Publisher};
use crate::pipeline::queue::{FullPolicy, QueueCounters};
use crate::pipeline::{FlushConfig, Pipeline, PipelineCounters, SinkRunner};
use crate::serve::cache::{Cache, CacheConfig};
use crate::serve::http::{self, Health};
use crate::serve::query::{Api, ReadStore};
use crate::serve::readthrough::{ChReader, PgReader};
use crate::sim::market::SymbolSpec;
use crate::sim::{Faults, Replay, SimConfig, SimCounters, SimServer};
use crate::source::rest::{Class, RestHost, RestOptions};
use crate::source::{self, SourceConfig};
use anyhow::Context;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::{Kind, Market};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_sinks::Sink;

/// Where the frames come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// The configured sources (real endpoints or a simulator elsewhere); a `symbols = ["*"]`
    /// source is resolved from its market's exchangeInfo when the run starts.
    Sources(Vec<crate::config::SourcePlan>),
    /// An in-process simulator per market, every stream kind of `symbols`, `rate` msg/s total.
    Simulator {
        /// Symbols.
        symbols: Vec<SymbolSpec>,
        /// Messages per second over both markets.
        rate: u64,
        /// Faults the simulator injects.
        faults: Faults,
        /// Render every frame of the run before it starts and only send them during it (a
        /// load generator that costs its writes alone; for finding the engine's ceiling).
        prerender: bool,
    },
    /// A capture directory ([`crate::source::capture`]), replayed through the same decode, sequence
    /// checks and books; the run ends when it has been read.
    Replay {
        /// The capture.
        dir: std::path::PathBuf,
        /// Entries from, to, pace.
        cfg: source::ReplayConfig,
    },
    /// A JetStream writer: the records collectors published, from a durable consumer
    /// ([`crate::bus::writer`]).
    Nats(crate::bus::writer::NatsSourceConfig),
}

/// The store the query API reads through to.
#[derive(Clone)]
pub enum ReadThrough {
    /// The postgres sink's tables.
    Postgres {
        /// Connection URL.
        url: String,
        /// Schema.
        schema: String,
    },
    /// The clickhouse sink's tables.
    ClickHouse {
        /// HTTP URL.
        url: String,
        /// Database.
        database: String,
        /// User.
        user: Option<String>,
        /// Password (never logged).
        password: Option<String>,
    },
}

impl std::fmt::Debug for ReadThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadThrough::Postgres { url, schema } => write!(
                f,
                "postgres {} schema {schema}",
                tickwire_sinks::redact(url)
            ),
            ReadThrough::ClickHouse { url, database, .. } => {
                write!(f, "clickhouse {url} database {database}")
            }
        }
    }
}

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Settings {
    /// Input.
    pub input: Input,
    /// ZMQ publisher (None: no republish).
    pub zmq: Option<PubConfig>,
    /// Sinks to start.
    pub sinks: Vec<Box<dyn Sink>>,
    /// Flush policy.
    pub flush: FlushConfig,
    /// Source queue capacity (records).
    pub queue: usize,
    /// Full policy of the source queue.
    pub full: FullPolicy,
    /// HTTP address (and token) for /health, /metrics, the query API (`/v1/...`) and the
    /// status page.
    pub http: Option<http::Listen>,
    /// The Arrow cache behind the query API (used when `http` is set).
    pub cache: CacheConfig,
    /// Where the query API reads what is older than the cache.
    pub read_through: Option<ReadThrough>,
    /// Sources connect to the bare `/stream` and SUBSCRIBE to their streams.
    pub subscribe: bool,
    /// A source reconnects when nothing has arrived for this long.
    pub idle_timeout: Duration,
    /// Keep live order books of the depth streams, synced from REST snapshots.
    pub book_sync: bool,
    /// Each REST host's weight budget.
    pub rest: crate::source::rest::RestOptions,
    /// Replace each connection after this long (before Binance's 24 h close).
    pub rotate_after: Option<Duration>,
    /// Emit `depth_snapshot` records of the live books this often.
    pub book_every: Option<Duration>,
    /// Levels a side in those records.
    pub book_levels: usize,
    /// Seconds between stats lines (0: none).
    pub stats_secs: u64,
    /// Wait for this many ZMQ subscribers before starting.
    pub wait_subscribers: usize,
    /// Stop after this long (None: until SIGINT/SIGTERM).
    pub duration: Option<Duration>,
    /// The USD-M series only REST serves, polled (`[[pollers]]`).
    pub pollers: Vec<crate::source::series::PollPlan>,
    /// Keep every frame, snapshot answer and connection event under this directory.
    pub capture: Option<std::path::PathBuf>,
    /// The capture's zstd level.
    pub capture_level: i32,
    /// The Redis L1 (`[[sinks]] type = "redis"`, `demo --redis`).
    pub redis: Option<crate::serve::l1::L1Config>,
    /// Every record into NATS JetStream (`[[sinks]] type = "nats"`, `demo --nats`).
    pub nats: Option<crate::bus::collector::NatsConfig>,
    /// Stop (flush, summary) after this long without a record taken in.
    pub exit_when_idle: Option<Duration>,
    /// Hot -> cold tiering on a schedule (`[tiering]`).
    pub tiering: Option<crate::tier::Schedule>,
}

/// The REST base URL of a WebSocket URL: `ws://host:port/...` (the simulator) serves REST at
/// `http://host:port`; Binance's stream hosts have their REST hosts.
pub fn rest_base(ws_url: &str, market: Market) -> Option<String> {
    if let Some(r) = ws_url.strip_prefix("ws://") {
        return r.split('/').next().map(|h| format!("http://{h}"));
    }
    let host = ws_url.strip_prefix("wss://")?.split('/').next()?;
    match (market, host.split(':').next()?) {
        (Market::Spot, h) if h.ends_with("binance.com") => Some("https://api.binance.com".into()),
        (Market::Usdm, h) if h.ends_with("binance.com") => Some("https://fapi.binance.com".into()),
        _ => None,
    }
}

/// One connection to open: its URL, market, and REST host for its books.
#[derive(Debug, Clone)]
pub struct Connection {
    pub market: Market,
    pub url: String,
    pub rest: Option<Arc<RestHost>>,
    pub depth_limit: usize,
    /// Streams added or removed while it runs (a `symbols = ["*"]` source's listings).
    pub changes: Option<Arc<source::StreamChanges>>,
}

/// A source with a REST host, followed: exchangeInfo is read again every `refresh`; changed
/// entries of its symbols are written as `instrument` records again, and for a
/// `symbols = ["*"]` source a new TRADING symbol's streams are subscribed on a connection with
/// room (or a new one), a delisted or halted one's unsubscribed.
#[derive(Debug)]
pub struct Listing {
    pub plan: crate::config::SourcePlan,
    pub host: Arc<RestHost>,
    /// The symbols recorded now.
    pub symbols: Vec<String>,
    /// The plan's connections: (path group, streams on it, its changes).
    pub slots: Vec<(String, Vec<String>, Arc<source::StreamChanges>)>,
    /// Its connections keep books (through `host`).
    pub books: bool,
    /// The `instrument` records written so far (a change is written again).
    pub instruments: crate::source::series::Instruments,
    /// Where its `instrument` records go (none: `run --check`).
    pub emit: Option<Arc<crate::source::series::Emitter>>,
    /// The symbols recorded, kept up to date for the pollers.
    pub recorded: Arc<crate::source::series::Recorded>,
}

/// The path group of a stream (`/public` or `/market` on USD-M, none on spot).
fn stream_group(market: Market, url_or_stream: &str) -> &'static str {
    match market {
        Market::Spot => "",
        Market::Usdm if url_or_stream.contains("/public/") => "/public",
        Market::Usdm if url_or_stream.contains("/market/") => "/market",
        Market::Usdm => {
            let base = url_or_stream.split('@').next().unwrap_or("");
            if base == "bookTicker" || base.starts_with("depth") {
                "/public"
            } else {
                "/market"
            }
        }
    }
}

impl Listing {
    /// Reads exchangeInfo once and applies what changed: new connections to open are
    /// returned.
    pub async fn refresh(&mut self) -> Result<Vec<Connection>, String> {
        let p = &self.plan;
        let body = self
            .host
            .get(
                Class::Poll,
                crate::source::rest::exchange_info_path(p.market).to_string(),
                crate::source::rest::exchange_info_weight(p.market),
            )
            .await
            .map_err(|e| e.to_string())?;
        let info = crate::source::rest::parse_exchange_info(&body).inspect_err(|_| {
            // Answered but unreadable: a failed request like the others.
            self.host.stats.errors.fetch_add(1, Ordering::Relaxed);
        })?;
        // A named list stays as it is; only its instruments are followed.
        let now = match &p.all {
            Some(filter) => filter.select(&info),
            None => self.symbols.clone(),
        };
        let gone: Vec<String> = self
            .symbols
            .iter()
            .filter(|x| !now.contains(x))
            .cloned()
            .collect();
        let new: Vec<String> = now
            .iter()
            .filter(|x| !self.symbols.contains(x))
            .cloned()
            .collect();
        let stats = &self.host.stats;
        let streams_of = |sym: &str| -> Vec<String> {
            p.streams
                .iter()
                .map(|st| format!("{}@{st}", sym.to_lowercase()))
                .collect()
        };
        self.recorded.remove(p.market, &gone);
        self.recorded.add(p.market, &new);
        if let Some(e) = &self.emit {
            let set: std::collections::HashSet<String> = now.iter().cloned().collect();
            e.emit(
                self.instruments
                    .changes(&info, &set, &e.symbols, &self.host),
            );
        }
        for sym in &gone {
            let streams = streams_of(sym);
            for (_, on, ch) in &mut self.slots {
                let here: Vec<String> =
                    streams.iter().filter(|x| on.contains(x)).cloned().collect();
                if !here.is_empty() {
                    ch.unsubscribe(&here);
                    on.retain(|x| !here.contains(x));
                }
            }
            stats.delisted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "{} {sym}: no longer TRADING (or filtered out); its {} streams unsubscribed",
                p.market.as_str(),
                streams.len()
            );
        }
        let mut open = Vec::new();
        for sym in &new {
            let streams = streams_of(sym);
            let mut groups: Vec<(&'static str, Vec<String>)> = Vec::new();
            for st in streams {
                let g = stream_group(p.market, &st);
                match groups.iter_mut().find(|(x, _)| *x == g) {
                    Some((_, v)) => v.push(st),
                    None => groups.push((g, vec![st])),
                }
            }
            for (g, list) in groups {
                let room = self.slots.iter_mut().find(|(sg, on, _)| {
                    sg == g && on.len() + list.len() <= crate::config::MAX_STREAMS_PER_CONNECTION
                });
                match room {
                    Some((_, on, ch)) => {
                        ch.subscribe(&list);
                        on.extend(list);
                    }
                    None => {
                        let changes = Arc::new(source::StreamChanges::default());
                        let url = format!("{}{g}/stream?streams={}", p.endpoint, list.join("/"));
                        self.slots.push((g.to_string(), list, changes.clone()));
                        open.push(Connection {
                            market: p.market,
                            url,
                            rest: self.books.then(|| self.host.clone()),
                            depth_limit: p.depth_limit,
                            changes: Some(changes),
                        });
                    }
                }
            }
            stats.listed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "{} {sym}: newly TRADING; its {} streams subscribed",
                p.market.as_str(),
                p.streams.len()
            );
        }
        self.symbols = now;
        Ok(open)
    }
}

/// The REST host of `market` at `base`, made once and shared by every connection to it.
fn host_for(
    hosts: &mut Vec<Arc<RestHost>>,
    market: Market,
    base: &str,
    opts: RestOptions,
) -> anyhow::Result<Arc<RestHost>> {
    if let Some(h) = hosts.iter().find(|h| h.market == market && h.base == base) {
        return Ok(h.clone());
    }
    let h = RestHost::new(market, base, &[], opts).with_context(|| format!("REST {base}"))?;
    hosts.push(h.clone());
    Ok(h)
}

/// The connections of the configured sources. Each REST host's exchangeInfo is read once
/// (through its budget): its `rateLimits` set the host's weight limit, and a
/// `symbols = ["*"]` source takes its TRADING symbols that pass the filter. An exchangeInfo
/// that cannot be read stops the run only where a source needs its symbols.
///
/// `attempts`: how often exchangeInfo is tried (0.5 s doubling between tries), so a run
/// started while the exchange is briefly unreachable waits for it.
///
/// Each recorded symbol's exchangeInfo entry goes to `emit` as an `instrument` record, and
/// the symbols to `recorded`.
pub async fn resolve_sources(
    plans: &[crate::config::SourcePlan],
    book_sync: bool,
    opts: RestOptions,
    hosts: &mut Vec<Arc<RestHost>>,
    attempts: u32,
    emit: Option<&Arc<crate::source::series::Emitter>>,
    recorded: &Arc<crate::source::series::Recorded>,
) -> anyhow::Result<(Vec<Connection>, Vec<Listing>)> {
    let mut listings = Vec::new();
    let mut trackers: Vec<(String, crate::source::series::Instruments)> = Vec::new();
    let mut infos: Vec<(String, Result<crate::source::rest::ExchangeInfo, String>)> = Vec::new();
    let mut out = Vec::new();
    for p in plans {
        let base = rest_base(&p.endpoint, p.market);
        let host = match &base {
            Some(b) if book_sync || p.all.is_some() => Some(host_for(hosts, p.market, b, opts)?),
            _ => None,
        };
        let info = match &host {
            Some(h) => {
                let key = format!("{}|{}", p.market.as_str(), h.base);
                if !infos.iter().any(|(k, _)| *k == key) {
                    let mut wait = Duration::from_millis(500);
                    let mut r;
                    let mut tried = 0;
                    loop {
                        r = h
                            .get(
                                Class::First,
                                crate::source::rest::exchange_info_path(p.market).to_string(),
                                crate::source::rest::exchange_info_weight(p.market),
                            )
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|b| crate::source::rest::parse_exchange_info(&b));
                        tried += 1;
                        match &r {
                            Err(e) if tried < attempts => {
                                tracing::warn!(
                                    "REST {}: exchangeInfo: {e}; trying again in {:.1} s",
                                    h.base,
                                    wait.as_secs_f64()
                                );
                                tokio::time::sleep(wait).await;
                                wait = (wait * 2).min(Duration::from_secs(10));
                            }
                            _ => break,
                        }
                    }
                    match &r {
                        Ok(i) => {
                            if let Some(l) = i.weight_per_minute {
                                h.set_weight_limit(l);
                            }
                        }
                        Err(e) => tracing::warn!(
                            "REST {}: exchangeInfo: {e}; weight limit {} a minute assumed",
                            h.base,
                            crate::source::rest::default_weight_limit(p.market)
                        ),
                    }
                    infos.push((key.clone(), r));
                }
                infos.iter().find(|(k, _)| *k == key).map(|(_, r)| r)
            }
            None => None,
        };
        let symbols = match &p.all {
            None => p.symbols.clone(),
            Some(filter) => {
                let info = match info {
                    Some(Ok(i)) => i,
                    Some(Err(e)) => anyhow::bail!(
                        "{} source at {}: symbols = [\"*\"] needs exchangeInfo: {e}",
                        p.market.as_str(),
                        p.endpoint
                    ),
                    None => anyhow::bail!(
                        "{} source at {}: symbols = [\"*\"] needs a REST host (no REST for this endpoint)",
                        p.market.as_str(),
                        p.endpoint
                    ),
                };
                let picked = filter.select(info);
                tracing::info!(
                    "{} at {}: {} of {} symbols of exchangeInfo selected",
                    p.market.as_str(),
                    p.endpoint,
                    picked.len(),
                    info.symbols.len()
                );
                if picked.is_empty() {
                    anyhow::bail!(
                        "{} source at {}: no TRADING symbol of exchangeInfo passes the filter",
                        p.market.as_str(),
                        p.endpoint
                    );
                }
                picked
            }
        };
        recorded.add(p.market, &symbols);
        let mut instruments = crate::source::series::Instruments::new(p.market);
        if let (Some(Ok(i)), Some(e), Some(h)) = (info, emit, &host) {
            let key = format!("{}|{}", p.market.as_str(), h.base);
            let at = match trackers.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    trackers.push((key, crate::source::series::Instruments::new(p.market)));
                    trackers.len() - 1
                }
            };
            let set: std::collections::HashSet<String> = symbols.iter().cloned().collect();
            let t = &mut trackers[at].1;
            e.emit(t.changes(i, &set, &e.symbols, h));
            instruments = t.clone();
        }
        let mut slots = Vec::new();
        for url in crate::config::connection_urls(p.market, &p.endpoint, &symbols, &p.streams) {
            let changes = (p.all.is_some() && p.refresh.is_some())
                .then(|| Arc::new(source::StreamChanges::default()));
            if let Some(ch) = &changes {
                let streams = url
                    .split_once("?streams=")
                    .map(|(_, l)| l.split('/').map(str::to_string).collect())
                    .unwrap_or_default();
                slots.push((
                    stream_group(p.market, &url).to_string(),
                    streams,
                    ch.clone(),
                ));
            }
            out.push(Connection {
                market: p.market,
                url,
                rest: if book_sync { host.clone() } else { None },
                depth_limit: p.depth_limit,
                changes,
            });
        }
        // Followed: a `["*"]` source's listings, and every source's instrument records.
        if let (Some(_), Some(h)) = (p.refresh, &host) {
            listings.push(Listing {
                plan: p.clone(),
                host: h.clone(),
                symbols,
                slots,
                books: book_sync,
                instruments,
                emit: emit.cloned(),
                recorded: recorded.clone(),
            });
        }
    }
    Ok((out, listings))
}

/// All the counters of a run, shared with the stats line and /metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// The raw capture's (with a capture).
    pub capture: Option<Arc<crate::source::capture::CaptureCounters>>,
    /// The replay's (replaying a capture).
    pub replay: Option<Arc<source::ReplayCounters>>,
    /// The Redis L1's.
    pub redis: Option<Arc<crate::serve::l1::L1Counters>>,
    /// The NATS sink's.
    pub nats: Option<Arc<crate::bus::collector::NatsCounters>>,
    /// The JetStream writer's (`[[sources]] type = "nats"`).
    pub nats_writer: Option<Arc<crate::bus::writer::WriterCounters>>,
    /// Sources and queue.
    pub queue: Arc<QueueCounters>,
    /// Pipeline.
    pub pipeline: Arc<PipelineCounters>,
    /// ZMQ publisher.
    pub zmq: Arc<PubCounters>,
    /// Sinks by name.
    pub sinks: Vec<(&'static str, Arc<tickwire_sinks::SinkCounters>)>,
    /// Simulators (when in-process).
    pub sims: Vec<Arc<SimCounters>>,
    /// The query cache (when the HTTP API runs).
    pub cache: Option<Arc<crate::serve::cache::CacheCounters>>,
    /// The REST hosts (one a market and host), with their budgets and book counters.
    pub rest: Vec<Arc<RestHost>>,
    /// The scheduled tiering's (`[tiering]`).
    pub tiering: Option<Arc<crate::tier::Status>>,
    /// The HTTP server's answers.
    pub http: Arc<http::HttpCounters>,
}

impl Counters {
    /// Records dropped anywhere.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
            + self.zmq.dropped.load(Ordering::Relaxed)
            + self.pipeline.sink_drops.load(Ordering::Relaxed)
            + self
                .nats
                .as_ref()
                .map_or(0, |n| n.dropped.load(Ordering::Relaxed))
            + self
                .sinks
                .iter()
                .map(|(_, s)| s.dropped_rows.load(Ordering::Relaxed))
                .sum::<u64>()
    }
}

/// Appends `{"trade":n,...}` with `f`'s count for every kind.
pub fn kinds_json(out: &mut String, f: impl Fn(Kind) -> u64) {
    out.push('{');
    for (i, k) in Kind::ALL.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\":{}", k.as_str(), f(*k));
    }
    out.push('}');
}

fn stats_line(
    c: &Counters,
    t0: Instant,
    last: &mut [u64; Kind::COUNT],
    every: Duration,
    queue_len: usize,
    queue_cap: usize,
) -> String {
    let pc = &c.pipeline;
    let mut line = format!("[{:>6.1}s] rec/s", t0.elapsed().as_secs_f64());
    for k in Kind::ALL {
        let n = pc.records[k.index()].load(Ordering::Relaxed);
        let _ = write!(
            line,
            " {}={:.0}",
            k.as_str(),
            (n - last[k.index()]) as f64 / every.as_secs_f64()
        );
        last[k.index()] = n;
    }
    let batches = pc.batches.load(Ordering::Relaxed).max(1);
    let (pub_lat, lag) = (pc.recv_to_publish.snapshot(), pc.exchange_lag.snapshot());
    let _ = write!(
        line,
        " | queue {queue_len}/{queue_cap} bundles | drops queue={} zmq={} | flushed rows={} avg_wait={:.0}ms | recv->pub p50={}us p99={}us | exch lag p50={}us p99={}us | decode_errors={}",
        c.queue.dropped.load(Ordering::Relaxed),
        c.zmq.dropped.load(Ordering::Relaxed),
        pc.rows.load(Ordering::Relaxed),
        pc.flush_wait_us_sum.load(Ordering::Relaxed) as f64 / batches as f64 / 1000.0,
        pub_lat.quantile(0.5),
        pub_lat.quantile(0.99),
        lag.quantile(0.5),
        lag.quantile(0.99),
        c.queue.decode_errors.load(Ordering::Relaxed),
    );
    line
}

/// The replay's progress (bytes of the capture read), on stderr, until every file is read.
async fn show_replay_progress(rc: Arc<source::ReplayCounters>) {
    let total = rc.bytes_total.load(Ordering::Relaxed);
    let mut shown =
        crate::cmd::progress::Progress::new("replay", crate::cmd::progress::Unit::Bytes, total);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let (files, of) = (
            rc.files_done.load(Ordering::Relaxed),
            rc.files_total.load(Ordering::Relaxed),
        );
        let note = format!("files {files}/{of}");
        shown.set(rc.bytes_done.load(Ordering::Relaxed), total, &note);
        if files >= of {
            shown.finish(&note);
            return;
        }
    }
}

/// A backfill's progress: stream sequences stored and acknowledged, from `start` to `end`
/// (the stream's last sequence when the run started), until `done`.
async fn show_backfill_progress(
    wc: Arc<crate::bus::writer::WriterCounters>,
    start: u64,
    end: u64,
    mut done: tokio::sync::oneshot::Receiver<()>,
) {
    let total = (end + 1).saturating_sub(start);
    let mut shown =
        crate::cmd::progress::Progress::new("backfill", crate::cmd::progress::Unit::Rows, total);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let note = || {
        format!(
            "messages {} read, stream sequence {}",
            wc.messages.load(Ordering::Relaxed),
            wc.acked.load(Ordering::Relaxed)
        )
    };
    let stored = || {
        (wc.acked.load(Ordering::Relaxed) + 1)
            .saturating_sub(start)
            .min(total)
    };
    loop {
        tokio::select! {
            _ = tick.tick() => shown.set(stored(), total, &note()),
            // Read after the final ack, not before the wait.
            _ = &mut done => {
                shown.set(stored(), total, &note());
                shown.finish(&note());
                return;
            }
        }
    }
}

/// A multi-thread tokio runtime of `workers` threads named `name`, with I/O and timers.
fn runtime(name: &str, workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
}

/// Runs until the duration passes or SIGINT/SIGTERM, stops cleanly, and returns the summary
/// JSON line.
pub fn run(s: Settings) -> anyhow::Result<String> {
    if let Some(l) = &s.http {
        http::check_bind(l)?;
    }
    let rt = runtime("tokio-rt-worker", 2)?;
    let symbols = SymbolTable::new();
    let mut s = s;
    // A JetStream writer: the consumer reset to its ack floor, and where the sinks' batches
    // from there on end (cut again the same way).
    let writer = match &s.input {
        Input::Nats(cfg) => {
            let prepared = rt.block_on(crate::bus::writer::prepare(cfg))?;
            let from =
                crate::bus::writer::ID_FLAG | crate::bus::writer::position(prepared.start, 0);
            let mut boundaries = std::collections::BTreeSet::new();
            for sink in &mut s.sinks {
                let name = sink.name();
                for id in sink
                    .known_batches(from)
                    .with_context(|| format!("sink {name}"))?
                {
                    boundaries.insert(id & !crate::bus::writer::ID_FLAG);
                }
            }
            let tracker = Arc::new(crate::bus::writer::Tracker::new(
                s.sinks.len(),
                prepared.start,
            ));
            if !boundaries.is_empty() {
                tracing::info!(
                    "nats writer: from stream sequence {}; {} batches of an earlier run are cut again where they ended",
                    prepared.start,
                    boundaries.len()
                );
            }
            Some((prepared, tracker, boundaries))
        }
        _ => None,
    };
    let sinks: Vec<SinkRunner> = std::mem::take(&mut s.sinks)
        .into_iter()
        .map(|k| SinkRunner::start(k, 64))
        .collect();
    let mut counters = Counters {
        sinks: sinks.iter().map(|r| (r.name, r.counters.clone())).collect(),
        ..Counters::default()
    };
    let publisher = match &s.zmq {
        Some(cfg) => {
            if !cfg.public && !http::is_local_endpoint(&cfg.bind) {
                anyhow::bail!(
                    "zmq bind {:?} reaches other machines and ZMQ PUB has no authentication: \
                     set [zmq] public = true (demo: --zmq-public) to publish there on purpose, \
                     or bind tcp://127.0.0.1",
                    cfg.bind
                );
            }
            let mut p = Publisher::bind(cfg, counters.zmq.clone()).context("zmq publisher")?;
            if s.wait_subscribers > 0 {
                let n = p.wait_subscribers(s.wait_subscribers, Duration::from_secs(30));
                if n < s.wait_subscribers {
                    anyhow::bail!(
                        "only {n} of {} ZMQ subscribers arrived within 30 s",
                        s.wait_subscribers
                    );
                }
            }
            Some(Arc::new(crate::pipeline::publish::SharedPublisher::new(
                p,
                symbols.clone(),
            )))
        }
        None => None,
    };
    let cache = s
        .http
        .is_some()
        .then(|| Arc::new(Cache::new(s.cache, crate::source::clock::now_ns())));
    counters.cache = cache.as_ref().map(|c| c.counters());
    // The scheduled tiering: a thread of its own (its passes are blocking work on the
    // ClickHouse servers); at the stop it is told to end and not waited for: a pass cut short
    // is finished by the next one (see `tier`).
    let tier_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(sch) = s.tiering.clone() {
        let status = Arc::new(crate::tier::Status::default());
        counters.tiering = Some(status.clone());
        let stop = tier_stop.clone();
        std::thread::Builder::new()
            .name("tiering".into())
            .spawn(move || crate::tier::run_schedule(sch, status, stop))
            .context("tiering thread")?;
    }
    let live_books = cache
        .as_ref()
        .map(|_| Arc::new(crate::source::book::LiveBooks::default()));
    let l1 = match s.redis.clone() {
        Some(cfg) => {
            let url = cfg.url.clone();
            let l = crate::serve::l1::L1::start(cfg, symbols.clone())
                .with_context(|| format!("redis {}", tickwire_sinks::redact(&url)))?;
            counters.sinks.push(("redis", l.sink.clone()));
            counters.redis = Some(l.counters.clone());
            Some(l)
        }
        None => None,
    };
    let nats = match s.nats.clone() {
        Some(cfg) => {
            let n = crate::bus::collector::NatsOut::start(cfg, symbols.clone())?;
            counters.sinks.push(("nats", n.sink.clone()));
            counters.nats = Some(n.counters.clone());
            Some(n)
        }
        None => None,
    };
    let resume = nats.as_ref().map(|n| n.resume.clone());
    let l1_reader = match (&s.redis, &l1) {
        (Some(cfg), Some(l)) => Some(Arc::new(crate::serve::l1::L1Reader {
            url: cfg.url.clone(),
            prefix: cfg.prefix.clone(),
            timeframes: cfg.timeframes.iter().map(|t| t.0.clone()).collect(),
            counters: l.counters.clone(),
        })),
        _ => None,
    };
    let api = cache.as_ref().map(|c| {
        Arc::new(Api {
            l1: l1_reader.clone(),
            cache: c.clone(),
            symbols: symbols.clone(),
            live: live_books.clone(),
            store: s.read_through.as_ref().map(|r| match r {
                ReadThrough::Postgres { url, schema } => {
                    ReadStore::Postgres(PgReader::new(url, schema))
                }
                ReadThrough::ClickHouse {
                    url,
                    database,
                    user,
                    password,
                } => {
                    let hot = ChReader::new(url, database, user.as_deref(), password.as_deref());
                    // With `[tiering]` into a cold ClickHouse: ranges older than the hot
                    // retention are read from both.
                    let cold = s.tiering.as_ref().and_then(|t| {
                        t.plan.targets.iter().find_map(|x| match x {
                            crate::tier::Target::ClickHouse(e) => Some((
                                ChReader::new(
                                    &e.url,
                                    &e.database,
                                    e.user.as_deref(),
                                    e.password.as_deref(),
                                ),
                                t.plan.older_than_ns,
                            )),
                            crate::tier::Target::Parquet(_) => None,
                        })
                    });
                    ReadStore::ClickHouse(match cold {
                        Some((c, retention)) => hot.with_cold(c, retention),
                        None => hot,
                    })
                }
            }),
        })
    });
    // The queue carries bundles (one or more frames' records, see `queue::Bundle`); `queue`
    // records of capacity become queue/16 bundles (at least 64).
    let (tx, rx) =
        crossbeam_channel::bounded::<crate::pipeline::queue::Bundle>((s.queue / 16).max(64));
    let pipeline = Pipeline::new(
        rx.clone(),
        symbols.clone(),
        publisher.clone(),
        s.flush,
        &sinks,
        counters.pipeline.clone(),
        cache,
    )
    .with_l1(l1)
    .with_nats(nats)
    .with_replay_ids(matches!(s.input, Input::Replay { .. }))
    .with_writer(writer.as_ref().map(|(_, t, b)| crate::pipeline::WriterCut {
        tracker: t.clone(),
        boundaries: b.clone(),
    }));
    // The writer's reading task takes the consumer; acks go out on the client, also after the
    // sinks have closed.
    let mut backfill = None;
    let (writer_input, acker) = match writer {
        Some((p, tracker, _)) => {
            let wc = Arc::new(crate::bus::writer::WriterCounters::default());
            wc.start.store(p.start, Ordering::Relaxed);
            // A backfill (--exit-when-idle: drain what the stream holds, then stop) shows how
            // far the stored (acknowledged) sequence is towards the stream's end at start.
            if s.exit_when_idle.is_some() {
                backfill = Some((wc.clone(), p.start, p.end));
            }
            counters.nats_writer = Some(wc.clone());
            let acker = Arc::new(crate::bus::writer::Acker::new(
                p.client.clone(),
                tracker,
                wc.clone(),
            ));
            (Some((p.consumer, wc)), Some(acker))
        }
        None => (None, None),
    };
    let pipe = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || pipeline.run())?;
    // The raw capture: its writer thread ends after every connection has let go of it.
    let (capture, capture_writer) = match &s.capture {
        Some(dir) => {
            let (c, w) = crate::source::capture::Capture::start(dir, s.capture_level)
                .with_context(|| format!("capture {}", dir.display()))?;
            counters.capture = Some(c.counters.clone());
            (Some(c), Some(w))
        }
        None => (None, None),
    };
    // Records made from REST answers (instruments, the polled series) join the sources' queue.
    let emitter = Arc::new(crate::source::series::Emitter {
        tx: tx.clone(),
        publish: publisher.clone(),
        queue: counters.queue.clone(),
        symbols: symbols.clone(),
        full: s.full,
        capture: capture
            .as_ref()
            .map(|c| std::sync::Mutex::new(c.connection())),
    });
    let recorded = Arc::new(crate::source::series::Recorded::default());
    let replay_counters = matches!(s.input, Input::Replay { .. })
        .then(|| Arc::new(source::ReplayCounters::default()));
    counters.replay = replay_counters.clone();

    // Pre-rendered simulator frames: rendered (a market on each core) before the clock starts.
    let rendered: [Option<Arc<Replay>>; 2] = match &s.input {
        Input::Simulator {
            symbols,
            rate,
            prerender: true,
            ..
        } => {
            let count = (rate / 2).saturating_mul(
                s.duration
                    .unwrap_or(Duration::from_secs(10))
                    .as_secs()
                    .max(1),
            ) as usize;
            std::thread::scope(|sc| {
                let [a, b] = [(Market::Spot, 7), (Market::Usdm, 8)].map(|(m, seed)| {
                    sc.spawn(move || Arc::new(Replay::render(m, symbols, count, seed)))
                });
                // A render that failed stops the run: it never falls back to the live market.
                let joined = |h: std::thread::ScopedJoinHandle<'_, Arc<Replay>>| {
                    h.join()
                        .map(Some)
                        .map_err(|_| anyhow::anyhow!("rendering the simulator's frames failed"))
                };
                anyhow::Ok([joined(a)?, joined(b)?])
            })?
        }
        _ => [None, None],
    };
    let t0 = Instant::now();
    let health = Arc::new(Health::default());
    let http_rt = match &s.http {
        Some(_) => Some(runtime("http", 1)?),
        None => None,
    };
    // The simulator stands in for an exchange on another machine: it gets runtime threads of
    // its own ("sim"), so its frame generation never holds up a source task on the engine's
    // two workers (tokio does not preempt a task; a 1 ms burst would sit in front of a read).
    let sim_rt = match &s.input {
        Input::Simulator { .. } => Some(runtime("sim", 2)?),
        Input::Sources(_) | Input::Replay { .. } | Input::Nats(_) => None,
    };
    // A backfill's progress task, told to draw its last state once the final ack is out.
    let (backfill_done, backfill_rx) = tokio::sync::oneshot::channel::<()>();
    let mut backfill_task = None;
    let (counters, input_s, unsynced) =
        rt.block_on(async {
            // Inputs.
            let mut sims = Vec::new();
            let mut urls: Vec<Connection> = Vec::new();
            let mut listings: Vec<Listing> = Vec::new();
            match &s.input {
                Input::Sources(plans) => {
                    let (conns, found) = resolve_sources(
                        plans,
                        s.book_sync,
                        s.rest,
                        &mut counters.rest,
                        6,
                        Some(&emitter),
                        &recorded,
                    )
                    .await?;
                    urls = conns;
                    listings = found;
                }
                Input::Replay { .. } | Input::Nats(_) => {}
                Input::Simulator {
                    symbols: specs,
                    rate,
                    faults,
                    ..
                } => {
                    for (i, market) in [Market::Spot, Market::Usdm].into_iter().enumerate() {
                        let cfg = SimConfig {
                            market,
                            symbols: specs.clone(),
                            rate: rate / 2,
                            seed: 7 + i as u64,
                            faults: *faults,
                            replay: rendered[i].clone(),
                            rest: Default::default(),
                        };
                        let sim_rt = sim_rt.as_ref().expect("simulator runtime");
                        let sim = sim_rt
                            .spawn(SimServer::start(cfg, "127.0.0.1:0"))
                            .await
                            .context("simulator thread")?
                            .context("simulator")?;
                        let url = sim.combined_url(market, specs);
                        let names: Vec<String> = specs.iter().map(|x| x.name.clone()).collect();
                        recorded.add(market, &names);
                        let rest = match rest_base(&url, market) {
                            Some(b) if s.book_sync => {
                                Some(host_for(&mut counters.rest, market, &b, s.rest)?)
                            }
                            _ => None,
                        };
                        urls.push(Connection {
                            market,
                            url,
                            rest,
                            depth_limit: 1000,
                            changes: None,
                        });
                        counters.sims.push(sim.counters.clone());
                        sims.push(sim);
                    }
                }
            }
            let counters = Arc::new(counters);
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let drain_on_stop = matches!(s.input, Input::Simulator { .. });
            let mut tasks = Vec::new();
            // One attempt gate per WebSocket host, shared by its connections.
            let mut gates: Vec<(String, Arc<source::AttemptGate>)> = Vec::new();
            let mut start = |c: Connection, tasks: &mut Vec<tokio::task::JoinHandle<_>>| {
                let Connection {
                    market,
                    url,
                    rest,
                    depth_limit,
                    changes,
                } = c;
                let host = url.split('/').take(3).collect::<Vec<_>>().join("/");
                let gate = match gates.iter().find(|(h, _)| *h == host) {
                    Some((_, g)) => g.clone(),
                    None => {
                        let g = source::AttemptGate::binance();
                        gates.push((host, g.clone()));
                        g
                    }
                };
                let cfg = SourceConfig {
                    market,
                    full: s.full,
                    drain_on_stop,
                    subscribe: s.subscribe,
                    idle_timeout: s.idle_timeout,
                    // REST snapshots: the simulator's own address over HTTP, Binance's REST hosts
                    // over HTTPS.
                    rest,
                    depth_limit,
                    book_every: s.book_every,
                    book_levels: s.book_levels,
                    live: live_books.clone(),
                    rotation: None,
                    publish: publisher.clone(),
                    attempts: Some(gate),
                    changes,
                    capture: capture.clone(),
                    resume: resume.clone(),
                    url,
                };
                tasks.push(tokio::spawn(source::rotating(
                    cfg,
                    s.rotate_after,
                    symbols.clone(),
                    tx.clone(),
                    counters.queue.clone(),
                    stop_rx.clone(),
                )));
            };
            // A new listing's connections (when no connection of its market has room) join in.
            let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<Connection>(64);
            let mut followers = Vec::new();
            for mut l in listings {
                let every = l.plan.refresh.unwrap_or(Duration::from_secs(300));
                let open_tx = open_tx.clone();
                let mut stop = stop_rx.clone();
                followers.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = stop.changed() => return,
                        }
                        match l.refresh().await {
                            Ok(open) => {
                                for c in open {
                                    let _ = open_tx.send(c).await;
                                }
                            }
                            Err(e) => tracing::warn!(
                            "{} listings: exchangeInfo: {e}; tried again in {every:?}",
                            l.plan.market.as_str()
                        ),
                        }
                    }
                }));
            }
            drop(open_tx);
            // The pollers of the series only REST has, on the USD-M REST host.
            let mut pollers = Vec::new();
            if !s.pollers.is_empty() {
                let Some(host) = counters.rest.iter().find(|h| h.market == Market::Usdm) else {
                    anyhow::bail!(
                        "[[pollers]] need a USD-M source with a REST host (the simulator, or fapi.binance.com)"
                    );
                };
                for plan in s.pollers.clone() {
                    pollers.push(tokio::spawn(crate::source::series::run_poller(
                        plan,
                        host.clone(),
                        recorded.clone(),
                        emitter.clone(),
                    )));
                }
            }
            drop(emitter);
            for c in urls {
                start(c, &mut tasks);
            }
            backfill_task = backfill
                .take()
                .map(|(wc, start, end)| tokio::spawn(show_backfill_progress(wc, start, end, backfill_rx)));
            let writer_task = match (&s.input, writer_input, &acker) {
                (Input::Nats(cfg), Some((consumer, wc)), Some(acker)) => {
                    Some(tokio::spawn(crate::bus::writer::run(
                        cfg.clone(),
                        consumer,
                        acker.clone(),
                        symbols.clone(),
                        tx.clone(),
                        wc,
                        counters.queue.clone(),
                        stop_rx.clone(),
                    )))
                }
                _ => None,
            };
            // A replay: every captured connection in turn, on a thread of its own (reading
            // and decompressing are blocking work); the run stops when it is done.
            let mut replay_done = None;
            let mut replay_progress = None;
            let mut replay_finished = false;
            if let (Input::Replay { dir, cfg }, Some(rc)) = (&s.input, &replay_counters) {
                let streams = crate::source::capture::streams(dir)
                    .with_context(|| format!("capture {}", dir.display()))?;
                if streams.is_empty() {
                    anyhow::bail!("capture {}: no capture files", dir.display());
                }
                let files = streams.iter().flat_map(|st| &st.files);
                rc.files_total
                    .store(files.clone().count() as u64, Ordering::Relaxed);
                rc.bytes_total.store(
                    files.map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum(),
                    Ordering::Relaxed,
                );
                replay_progress = Some(tokio::spawn(show_replay_progress(rc.clone())));
                let mut cfg = cfg.clone();
                cfg.publish = publisher.clone();
                cfg.full = s.full;
                let (symbols, tx, q, rc) =
                    (symbols.clone(), tx.clone(), counters.queue.clone(), rc.clone());
                replay_done = Some(tokio::task::spawn_blocking(move || {
                    for st in &streams {
                        if let Err(e) = source::replay(st, &cfg, symbols.clone(), &tx, &q, &rc) {
                            tracing::warn!("replay {}: {e}", st.id);
                        }
                    }
                }));
            }
            // The HTTP server runs on its own runtime thread: a heavy query never holds up the
            // source tasks on this one.
            let http_task =
                match (&s.http, &http_rt) {
                    (Some(addr), Some(hrt)) => {
                        let (done, bound) = tokio::sync::oneshot::channel();
                        let (addr, c, h, api) =
                            (addr.clone(), counters.clone(), health.clone(), api.clone());
                        hrt.spawn(async move {
                            let _ = done.send(http::serve(&addr, c, h, t0, api).await);
                        });
                        Some(bound.await.context("http thread")?.with_context(|| {
                            format!("http on {}", s.http.as_ref().map_or("", |l| &l.bind))
                        })?)
                    }
                    _ => None,
                };
            let stats = (s.stats_secs > 0).then(|| {
                let (c, rx) = (counters.clone(), rx.clone());
                let every = Duration::from_secs(s.stats_secs);
                tokio::spawn(async move {
                    let mut last = [0u64; Kind::COUNT];
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        eprintln!(
                            "{}",
                            stats_line(
                                &c,
                                t0,
                                &mut last,
                                every,
                                rx.len(),
                                rx.capacity().unwrap_or(0)
                            )
                        );
                    }
                })
            });
            {
                let stopped = wait_for_stop(s.duration);
                tokio::pin!(stopped);
                let replayed = async {
                    match replay_done.as_mut() {
                        Some(h) => {
                            let _ = h.await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::pin!(replayed);
                // --exit-when-idle: nothing taken in for that long.
                let idle = {
                    let c = counters.clone();
                    let limit = s.exit_when_idle;
                    async move {
                        let Some(limit) = limit else {
                            return std::future::pending::<()>().await;
                        };
                        let total = || -> u64 {
                            c.pipeline.records.iter().map(|r| r.load(Ordering::Relaxed)).sum()
                        };
                        let (mut last, mut since) = (total(), Instant::now());
                        loop {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let now = total();
                            if now != last {
                                (last, since) = (now, Instant::now());
                            } else if since.elapsed() >= limit {
                                return;
                            }
                        }
                    }
                };
                tokio::pin!(idle);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = &mut idle => break,
                        _ = &mut replayed => {
                            replay_finished = true;
                            break;
                        }
                        Some(c) = open_rx.recv() => start(c, &mut tasks),
                    }
                }
            }
            if let Input::Replay { cfg, .. } = &s.input {
                cfg.stop.store(true, Ordering::Relaxed);
            }
            if let Some(h) = replay_done.filter(|_| !replay_finished) {
                let _ = h.await;
            }
            // Its last line once every file is read (it sees that within 250 ms); cut off
            // when the replay was stopped early.
            if let Some(mut p) = replay_progress {
                if tokio::time::timeout(Duration::from_millis(600), &mut p).await.is_err() {
                    p.abort();
                }
            }
            // Only the sources hold the queue now: it ends when they do (`start`, which
            // borrows it, is not used again).
            drop(tx);
            // They hold the queue too (instrument records, polled points): gone before the
            // pipeline is waited for.
            for f in followers.into_iter().chain(pollers) {
                f.abort();
                let _ = f.await;
            }
            // How long the inputs ran (a simulator sends only until now): the time its rate is
            // measured over, unlike `duration_s`, which ends after the last flush.
            let input_s = t0.elapsed();
            // Books not live when the stop came (the gauge falls to 0 as the sources end).
            let unsynced: Vec<u64> = counters
                .rest
                .iter()
                .map(|h| h.stats.books_waiting.load(Ordering::Relaxed))
                .collect();
            health.stopping.store(true, Ordering::Relaxed);
            // Sources first: no reconnects from here on. Then the simulators stop and close after
            // their last frame, which draining sources read to the end.
            let _ = stop_tx.send(true);
            for sim in sims {
                sim.stop().await;
            }
            if let Some(t) = writer_task {
                let _ = t.await;
            }
            for t in tasks {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("source: {e}"),
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => tracing::error!("source task: {e}"),
                }
            }
            if let Some(t) = stats {
                t.abort();
            }
            if let Some(server) = http_task {
                // No new connections; the requests in flight are answered (up to the grace
                // period) on the http thread.
                server.shutdown().await;
            }
            anyhow::Ok((counters, input_s, unsynced))
        })?;
    // Every connection has let go of the capture: its last entries are written, its files
    // closed.
    drop(capture);
    if let Some(w) = capture_writer {
        w.finish();
    }
    if let Some(srt) = sim_rt {
        // Stopped above: every simulator task has ended.
        srt.shutdown_background();
    }
    if let Some(hrt) = http_rt {
        // A query still running is abandoned; its connection closes.
        hrt.shutdown_background();
    }
    tier_stop.store(true, Ordering::Relaxed);
    drop(rx);
    pipe.join()
        .map_err(|_| anyhow::anyhow!("pipeline thread panicked"))?;
    let mut sink_errors = 0;
    for r in sinks {
        let name = r.name;
        if let Err(e) = r.finish() {
            tracing::error!("sink {name}: {e}");
            sink_errors += 1;
        }
    }
    // Every sink has closed (its files renamed, its batches stored or spilled): what they
    // keep is acknowledged to JetStream.
    if let Some(a) = &acker {
        rt.block_on(a.ack());
    }
    if let Some(p) = backfill_task {
        let _ = backfill_done.send(());
        let _ = rt.block_on(async { tokio::time::timeout(Duration::from_millis(600), p).await });
    }
    Ok(summary(&counters, sink_errors, t0, input_s, unsynced))
}

/// The exit summary (one JSON line). Every command has the engine's own fields; the
/// simulator's ground truth (`sent`, `injected`, `sim`) only appears when an in-process
/// simulator ran (`demo`, or `run` with `[simulator] enabled`). `rows` are the rows each sink
/// has durably written (at exit every Parquet file is closed, so these are final);
/// `books.unsynced` the order books that were not live when the stop came.
fn summary(
    c: &Counters,
    sink_errors: u64,
    t0: Instant,
    input_s: Duration,
    waiting: Vec<u64>,
) -> String {
    let (qc, pc, zc) = (&c.queue, &c.pipeline, &c.zmq);
    let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let sink_errors = sink_errors + c.sinks.iter().map(|(_, s)| l(&s.errors)).sum::<u64>();
    let errors = l(&qc.decode_errors) + l(&pc.errors) + sink_errors + l(&zc.errors);
    let (pub_lat, flush_lat) = (pc.recv_to_publish.snapshot(), pc.recv_to_flush.snapshot());
    let mut s = String::from("{\"records\":");
    kinds_json(&mut s, |k| l(&pc.records[k.index()]));
    s.push_str(",\"rows\":{");
    for (i, (name, n)) in c.sinks.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{name}\":{}", n.rows());
    }
    // Batches a sink found stored already (a retry after a lost acknowledgement, a replay
    // or JetStream redelivery of what an earlier run stored): not written twice.
    s.push_str("},\"found_stored\":{");
    for (i, (name, n)) in c.sinks.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{name}\":{}", l(&n.retries_found_landed));
    }
    s.push_str("},\"gaps\":");
    kinds_json(&mut s, |k| l(&qc.gaps[k.index()]));
    let _ = write!(
        s,
        ",\"published\":{},\"dropped\":{},\"errors\":{errors},\"reconnects\":{},\"frames\":{},\"decode_errors\":{},\"oversized\":{},\"idle_reconnects\":{},\"control_requests\":{},\"control_errors\":{},\"rotations\":{},\"duplicates\":{},\"handover_timeouts\":{},\"zmq_batches\":{},\"zmq_batches_dropped\":{},\"books\":{},\"rest\":{},\"listings\":{},\"queue_dropped\":{},\"zmq_dropped\":{},\"batches\":{},\"latency_us\":{{\"recv_to_publish\":{{\"p50\":{},\"p99\":{},\"p999\":{}}},\"recv_to_flush\":{{\"p50\":{},\"p99\":{}}}}},\"input_s\":{:.3},\"duration_s\":{:.3}",
        l(&zc.sent),
        c.dropped(),
        l(&qc.reconnects),
        l(&qc.frames),
        l(&qc.decode_errors),
        l(&qc.oversized),
        l(&qc.idle_reconnects),
        l(&qc.control_requests),
        l(&qc.control_errors),
        l(&qc.rotations),
        l(&qc.duplicates),
        l(&qc.handover_timeouts),
        l(&zc.batches_sent),
        l(&zc.batches_dropped),
        rest_books_json(&c.rest, Some(&waiting)),
        rest_json(&c.rest),
        per_market_json(&c.rest, |_, h| {
            let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
            vec![
                ("listed", l(&h.stats.listed)),
                ("delisted", l(&h.stats.delisted)),
            ]
        }),
        l(&qc.dropped),
        l(&zc.dropped),
        l(&pc.batches),
        pub_lat.quantile(0.5),
        pub_lat.quantile(0.99),
        pub_lat.quantile(0.999),
        flush_lat.quantile(0.5),
        flush_lat.quantile(0.99),
        input_s.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
    );
    if let Some(t) = &c.tiering {
        let (runs, w, copied, cleaned) = t.totals();
        let _ = write!(
            s,
            ",\"tiering\":{{\"runs\":{runs},\"windows\":{{\"total\":{},\"copied\":{},\"verified\":{},\"failed\":{},\"cleaned\":{}}},\"rows_copied\":{copied},\"rows_cleaned\":{cleaned}}}",
            w.total, w.copied, w.verified, w.failed, w.cleaned
        );
    }
    if let Some(w) = &c.nats_writer {
        let _ = write!(
            s,
            ",\"nats_source\":{{\"start\":{},\"messages\":{},\"records\":{},\"acked\":{},\"redelivered\":{},\"malformed\":{},\"errors\":{}}}",
            l(&w.start),
            l(&w.messages),
            l(&w.records),
            l(&w.acked),
            l(&w.redelivered),
            l(&w.malformed),
            l(&w.errors)
        );
    }
    if let Some(n) = &c.nats {
        let _ = write!(
            s,
            ",\"nats\":{{\"messages\":{},\"records\":{},\"duplicates\":{},\"errors\":{},\"dropped\":{},\"spilled\":{},\"left_spilled\":{}}}",
            l(&n.messages),
            l(&n.records),
            l(&n.duplicates),
            l(&n.errors),
            l(&n.dropped),
            l(&n.spilled),
            l(&n.left_spilled)
        );
    }
    if let Some(r) = &c.redis {
        let _ = write!(
            s,
            ",\"redis\":{{\"commands\":{},\"conflated\":{},\"dropped\":{},\"reconnects\":{},\"rebuilds\":{},\"errors\":{},\"resumed\":{},\"repeats\":{}}}",
            l(&r.commands),
            l(&r.conflated),
            l(&r.dropped),
            l(&r.reconnects),
            l(&r.rebuilds),
            l(&r.errors),
            l(&r.resumed),
            l(&r.repeats)
        );
    }
    if let Some(k) = &c.capture {
        let _ = write!(
            s,
            ",\"capture\":{{\"entries\":{},\"bytes\":{},\"dropped\":{},\"files\":{},\"errors\":{}}}",
            l(&k.entries),
            l(&k.bytes),
            l(&k.dropped),
            l(&k.files),
            l(&k.errors)
        );
    }
    if let Some(r) = &c.replay {
        let _ = write!(
            s,
            ",\"replay\":{{\"files\":{},\"bytes\":{},\"entries\":{},\"frames\":{},\"holes\":{},\"torn\":{},\"skipped\":{},\"unreadable\":{},\"malformed\":{}}}",
            l(&r.files_done),
            l(&r.bytes_done),
            l(&r.entries),
            l(&r.frames),
            l(&r.holes),
            l(&r.torn),
            l(&r.skipped),
            l(&r.unreadable),
            l(&r.malformed)
        );
    }
    if !c.sims.is_empty() {
        sim_summary(&mut s, &c.sims);
    }
    s.push('}');
    s
}

/// `{"<market>":{"synced":..,"resyncs":..,"waiting":..}}` of every REST host (summed per
/// market); `waiting` from `at_stop` (the books not live when the stop came) if given.
pub fn rest_books_json(hosts: &[Arc<RestHost>], at_stop: Option<&[u64]>) -> String {
    per_market_json(hosts, |i, h| {
        let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        let waiting = at_stop
            .and_then(|w| w.get(i).copied())
            .unwrap_or_else(|| l(&h.stats.books_waiting));
        [
            ("synced", l(&h.stats.books_synced)),
            ("resyncs", l(&h.stats.resyncs)),
            ("waiting", waiting),
        ]
        .to_vec()
    })
}

/// `{"<market>":{"requests":..,"weight":..,"status_429":..,"status_418":..,"errors":..,
/// "unreadable":..}}`.
pub fn rest_json(hosts: &[Arc<RestHost>]) -> String {
    per_market_json(hosts, |_, h| {
        let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        let st = &h.stats;
        [
            ("requests", l(&st.requests)),
            ("weight", l(&st.weight)),
            ("status_429", l(&st.status_429)),
            ("status_418", l(&st.status_418)),
            ("errors", l(&st.errors)),
            ("unreadable", l(&st.unreadable)),
        ]
        .to_vec()
    })
}

/// One object a market, its fields summed over that market's hosts.
fn per_market_json(
    hosts: &[Arc<RestHost>],
    fields: impl Fn(usize, &RestHost) -> Vec<(&'static str, u64)>,
) -> String {
    let mut out = String::from("{");
    for m in [Market::Spot, Market::Usdm] {
        let mut sum: Vec<(&'static str, u64)> = Vec::new();
        for (i, h) in hosts.iter().enumerate().filter(|(_, h)| h.market == m) {
            for (k, v) in fields(i, h) {
                match sum.iter_mut().find(|(n, _)| *n == k) {
                    Some((_, t)) => *t += v,
                    None => sum.push((k, v)),
                }
            }
        }
        if sum.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\":{{", m.as_str());
        for (j, (k, v)) in sum.iter().enumerate() {
            let _ = write!(out, "{}\"{k}\":{v}", if j > 0 { "," } else { "" });
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// The in-process simulator's ground truth: what it sent and injected, and what it served.
fn sim_summary(s: &mut String, sims: &[Arc<SimCounters>]) {
    let sum = |f: fn(&SimCounters) -> &std::sync::atomic::AtomicU64| {
        sims.iter()
            .map(|x| f(x).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let per_kind = |f: fn(&SimCounters) -> &[std::sync::atomic::AtomicU64; Kind::COUNT]| {
        move |k: Kind| {
            sims.iter()
                .map(|x| f(x)[k.index()].load(Ordering::Relaxed))
                .sum::<u64>()
        }
    };
    s.push_str(",\"sent\":");
    kinds_json(s, per_kind(|x| &x.sent));
    s.push_str(",\"injected\":{\"gaps\":");
    kinds_json(s, per_kind(|x| &x.gaps));
    let _ = write!(
        s,
        ",\"malformed\":{},\"oversized\":{},\"closes\":{},\"pings\":{},\"pong_timeouts\":{}}},\"sim\":{{\"controls\":{},\"rest_snapshots\":{},\"rest_limited\":{},\"slow_closes\":{}}}",
        sum(|x| &x.malformed),
        sum(|x| &x.oversized),
        sum(|x| &x.closes),
        sum(|x| &x.pings),
        sum(|x| &x.pong_timeouts),
        sum(|x| &x.controls),
        sum(|x| &x.rest_snapshots),
        sum(|x| &x.rest_limited),
        sum(|x| &x.slow_closes),
    );
}

/// Returns after `d` (never, when None), or at SIGINT / SIGTERM.
pub async fn wait_for_stop(d: Option<Duration>) {
    let sleep = async {
        match d {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = sleep => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    tokio::select! { _ = sleep => {}, _ = tokio::signal::ctrl_c() => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_hosts_follow_the_stream_hosts() {
        assert_eq!(
            rest_base("ws://127.0.0.1:9001/stream?streams=a", Market::Spot).as_deref(),
            Some("http://127.0.0.1:9001")
        );
        assert_eq!(
            rest_base(
                "wss://stream.binance.com:9443/stream?streams=a",
                Market::Spot
            )
            .as_deref(),
            Some("https://api.binance.com")
        );
        assert_eq!(
            rest_base(
                "wss://fstream.binance.com/public/stream?streams=a",
                Market::Usdm
            )
            .as_deref(),
            Some("https://fapi.binance.com")
        );
        assert_eq!(rest_base("wss://example.org/ws", Market::Spot), None);
    }
}
