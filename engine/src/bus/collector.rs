//! The collector's side: every record into a JetStream stream (`[[sinks]] type = "nats"`,
//! `demo --nats`).
//!
//! The pipeline thread offers each bundle ([`NatsOut::offer`]: a copy, `try_send` on a bounded
//! channel; a full channel is counted in `dropped`, never waited for, so ZMQ and the store
//! sinks are not held up). The "nats" thread (its own current-thread tokio runtime) groups the
//! records by subject into messages while more input is queued (no linger timer: at low rates
//! a message is one record and leaves at once), and publishes them pipelined: up to
//! `max_in_flight` publishes wait for their acks at once, never one round trip per message.
//!
//! Every message carries `Nats-Msg-Id: <id>.<run>.<n>` (the collector's identity, the run's
//! start in ns, the message's number): a publish retried after a lost or late ack is stored
//! once by the stream's duplicate window. A failed publish is sent again (same id) after a
//! backoff (100 ms doubling to 5 s) before newer messages. Messages waiting for NATS are kept
//! in memory up to `memory_budget_bytes`; beyond it they go, in order, to a spill file in
//! `spill_dir` and come back from it when NATS answers again. At shutdown what NATS has not
//! acknowledged within `shutdown_timeout` stays in the spill file, which the next run sends
//! first (same ids).

use crate::pipeline::names::Names;
use crate::pipeline::queue::{Bundle, SharedBundle};
use async_nats::jetstream;
use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::{Kind, Market, SymbolId};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_sinks::SinkCounters;

/// The sink's settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port` (several, comma-separated, for a cluster).
    pub url: String,
    /// The stream (created when missing, checked when present).
    pub stream: String,
    /// Subject prefix: subjects are `<prefix>.<kind>.<market>.<SYMBOL>`.
    pub prefix: String,
    /// The collector's identity in message ids (default: the host name).
    pub id: String,
    /// The stream's limits when tickwire creates it.
    pub max_age: Duration,
    /// Bytes the stream keeps (-1: no limit).
    pub max_bytes: i64,
    /// How long the stream remembers message ids.
    pub duplicate_window: Duration,
    /// Replicas of the stream (1 on one server; 3 on a 3-node cluster).
    pub replicas: usize,
    /// Publishes waiting for their acks at once.
    pub max_in_flight: usize,
    /// Bytes of messages kept in memory while NATS is slow or down; the rest spills.
    pub memory_budget_bytes: usize,
    /// Where messages beyond the budget, or left at shutdown, are kept.
    pub spill_dir: PathBuf,
    /// How long shutdown waits for NATS to acknowledge what is left before spilling it.
    pub shutdown_timeout: Duration,
}

impl NatsConfig {
    /// Defaults for `url` and `stream`.
    pub fn new(url: &str, stream: &str) -> Self {
        NatsConfig {
            url: url.to_string(),
            stream: stream.to_string(),
            prefix: "tickwire".into(),
            id: default_id(),
            max_age: Duration::from_secs(7 * 86_400),
            max_bytes: 8 << 30,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            max_in_flight: 1024,
            memory_budget_bytes: 256 << 20,
            spill_dir: PathBuf::from("tickwire-spill/nats"),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The host name, or `collector` where it cannot be read.
pub fn default_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().replace(['.', ' '], "_"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "collector".into())
}

/// What the sink has done.
#[derive(Debug, Default)]
pub struct NatsCounters {
    /// Messages the stream acknowledged.
    pub messages: AtomicU64,
    /// Records in them.
    pub records: AtomicU64,
    /// Acks that said `duplicate` (a retry of a message already stored).
    pub duplicates: AtomicU64,
    /// Publishes that failed or timed out (each sent again).
    pub errors: AtomicU64,
    /// Records the sink could not take (its input channel full): counted, not sent.
    pub dropped: AtomicU64,
    /// Records waiting for an ack (in memory, in flight or spilled).
    pub pending: AtomicU64,
    /// Records written to the spill file, ever.
    pub spilled: AtomicU64,
    /// Records left in the spill file at the end (sent by the next run).
    pub left_spilled: AtomicU64,
}

/// One message on its way.
#[derive(Debug, Clone)]
struct Out {
    id: String,
    subject: String,
    payload: Bytes,
    records: u32,
}

/// The subject a message is being built for.
struct Building {
    subject: String,
    seq: u64,
    buf: Vec<u8>,
    records: u32,
}

/// The running sink: offer bundles, then [`NatsOut::finish`].
#[derive(Debug)]
pub struct NatsOut {
    tx: Option<tokio::sync::mpsc::Sender<SharedBundle>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Its counters.
    pub counters: Arc<NatsCounters>,
    /// Rows (records acknowledged by the stream) for the summary's `rows`.
    pub sink: Arc<SinkCounters>,
    /// Where each sequenced stream ended in JetStream when this process started.
    pub resume: Arc<crate::source::Resume>,
}

/// Bundles waiting for the nats thread.
const CHANNEL: usize = 4096;

impl NatsOut {
    /// Connects, creates or checks the stream, and starts the "nats" thread.
    pub fn start(cfg: NatsConfig, symbols: Arc<SymbolTable>) -> anyhow::Result<NatsOut> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The client's connection (socket writes, ack reads) is a task on this runtime, so it
        // runs on the "nats" thread beside the encoding: no wake-up crosses threads per
        // message, and the worker lets it write between the bundles it encodes (see `run`).
        // A connection on a thread of its own measured slower (perf/RESULTS.md).
        let js = rt.block_on(connect(&cfg))?;
        let t0 = Instant::now();
        let resume = match rt.block_on(last_ids(&js, &cfg, &symbols)) {
            Ok(r) => {
                tracing::info!(
                    "nats {}: where {} streams ended, read in {:?}",
                    cfg.stream,
                    r.len(),
                    t0.elapsed()
                );
                r
            }
            Err(e) => {
                tracing::warn!(
                    "nats {}: where the streams ended could not be read ({e}): a restart's \
                     hole shows as no gap",
                    cfg.stream
                );
                crate::source::Resume::default()
            }
        };
        std::fs::create_dir_all(&cfg.spill_dir)
            .map_err(|e| anyhow::anyhow!("nats spill_dir {}: {e}", cfg.spill_dir.display()))?;
        // An earlier run's spill goes to the stream before anything this run receives: its
        // records move where the streams end, and the holes before them (what that run held
        // in memory when it was killed) are gap records of their own.
        let resume = Arc::new(resume);
        let ahead = spill_ahead(&cfg, &symbols, resume.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
        let counters = Arc::new(NatsCounters::default());
        let sink = Arc::new(SinkCounters::default());
        let (c, s) = (counters.clone(), sink.clone());
        let thread = std::thread::Builder::new()
            .name("nats".into())
            .spawn(move || {
                let mut w = Worker::new(cfg, js, symbols, c, s);
                if !ahead.is_empty() {
                    let b: Bundle = ahead
                        .into_iter()
                        .map(|g| {
                            crate::pipeline::queue::Msg::new(
                                tickwire_codecs::record::Record::Gap(g),
                                &[],
                            )
                        })
                        .collect();
                    w.take(&b);
                    w.seal_all();
                }
                rt.block_on(w.run(rx));
                drop(w);
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(NatsOut {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            sink,
            resume,
        })
    }

    /// Takes the bundle (a reference to it); never waits.
    pub fn offer(&self, bundle: &SharedBundle) {
        let Some(tx) = &self.tx else { return };
        if bundle.is_empty() {
            return;
        }
        if tx.try_send(bundle.clone()).is_err() {
            self.counters
                .dropped
                .fetch_add(bundle.len() as u64, Ordering::Relaxed);
        }
    }

    /// Publishes what is left (or spills it) and stops the thread.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects and makes sure the stream exists and takes the prefix's subjects.
async fn connect(cfg: &NatsConfig) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("tickwire collector {}", cfg.id))
        .max_reconnects(None)
        .connect(cfg.url.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("nats {}: {e}", tickwire_sinks::redact(&cfg.url)))?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client);
    ensure_stream(&js, cfg).await?;
    Ok(js)
}

/// Reads an earlier run's spill files (sent first by this run), in order, through an
/// [`crate::source::AheadCheck`]: returns the gap records of the holes before and between
/// their records, and moves `resume` to where they end.
fn spill_ahead(
    cfg: &NatsConfig,
    symbols: &SymbolTable,
    resume: Arc<crate::source::Resume>,
) -> Vec<tickwire_codecs::record::Gap> {
    let files = spill_files(&cfg.spill_dir);
    if files.is_empty() {
        return Vec::new();
    }
    let mut check = crate::source::AheadCheck::new(resume);
    let mut records = 0u64;
    for path in &files {
        let Ok(f) = std::fs::File::open(path) else {
            continue;
        };
        let mut r = BufReader::new(f);
        while let Some((out, _)) = read_entry(&mut r) {
            let Ok(bundle) =
                crate::bus::writer::decode(&cfg.prefix, &out.subject, &out.payload, 0, symbols)
            else {
                continue;
            };
            for m in &bundle {
                check.check(&m.rec);
                records += 1;
            }
        }
    }
    let gaps = check.finish();
    tracing::info!(
        "nats: an earlier run's spill ({} files, {records} records) goes first; {} holes before          its records (what that run held in memory) are gap records",
        files.len(),
        gaps.len()
    );
    gaps
}

/// The last id of every sequenced stream (trade, aggregate trade, depth diff) the stream
/// holds: the last record of each subject's last message. One request a subject (a whole
/// market is a few thousand, read in about a second).
async fn last_ids(
    js: &jetstream::Context,
    cfg: &NatsConfig,
    symbols: &SymbolTable,
) -> anyhow::Result<crate::source::Resume> {
    use futures_util::TryStreamExt;
    let stream = js.get_stream(&cfg.stream).await?;
    let out = crate::source::Resume::default();
    for kind in [Kind::Trade, Kind::AggTrade, Kind::DepthUpdate] {
        let mut subjects = Vec::new();
        let mut list = stream
            .info_with_subjects(format!("{}.{}.>", cfg.prefix, kind.as_str()))
            .await?;
        while let Some((subject, _)) = list.try_next().await? {
            subjects.push(subject);
        }
        for subject in subjects {
            let m = stream.get_last_raw_message_by_subject(&subject).await?;
            let Ok(bundle) =
                crate::bus::writer::decode(&cfg.prefix, &subject, &m.payload, m.sequence, symbols)
            else {
                continue;
            };
            for msg in &bundle {
                let h = msg.rec.header();
                let id = match &msg.rec {
                    tickwire_codecs::record::Record::Trade(t) => t.trade_id,
                    tickwire_codecs::record::Record::AggTrade(a) => a.agg_trade_id,
                    tickwire_codecs::record::Record::DepthUpdate(d) => d.final_update_id,
                    _ => continue,
                };
                if let Some(market) = Market::from_code(h.market) {
                    out.insert(msg.rec.kind(), market, h.symbol, id);
                }
            }
        }
    }
    Ok(out)
}

/// Reaches the server without changing anything: its version and whether the stream exists.
pub fn probe(cfg: &NatsConfig) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = tokio::time::timeout(
            Duration::from_secs(3),
            async_nats::ConnectOptions::new().connect(cfg.url.as_str()),
        )
        .await
        .map_err(|_| format!("{}: no answer within 3 s", tickwire_sinks::redact(&cfg.url)))?
        .map_err(|e| format!("{}: {e}", tickwire_sinks::redact(&cfg.url)))?;
        let version = client.server_info().version;
        let js = jetstream::new(client);
        let stream = match js.get_stream(&cfg.stream).await {
            Ok(_) => format!("stream {} exists", cfg.stream),
            Err(_) => format!("stream {} will be created", cfg.stream),
        };
        Ok(format!("NATS {version}, {stream}"))
    })
}

/// Creates the stream, or checks that the one there takes `<prefix>.>`.
pub async fn ensure_stream(js: &jetstream::Context, cfg: &NatsConfig) -> anyhow::Result<()> {
    let want = format!("{}.>", cfg.prefix);
    let created = js
        .get_or_create_stream(jetstream::stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![want.clone()],
            storage: jetstream::stream::StorageType::File,
            max_age: cfg.max_age,
            max_bytes: cfg.max_bytes,
            duplicate_window: cfg.duplicate_window,
            num_replicas: cfg.replicas,
            ..Default::default()
        })
        .await;
    let mut stream = match created {
        Ok(s) => s,
        // Another collector starting at the same moment created it between this one's lookup
        // and its create (the server then answers "subjects overlap"): take the one there.
        Err(e) => js
            .get_stream(&cfg.stream)
            .await
            .map_err(|_| anyhow::anyhow!("nats stream {}: {e}", cfg.stream))?,
    };
    let info = stream
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("nats stream {}: {e}", cfg.stream))?;
    if !info.config.subjects.iter().any(|s| s == &want || s == ">") {
        anyhow::bail!(
            "nats stream {} takes subjects {:?}, not {want}: use another stream (--nats-stream) \
             or prefix, or add {want} to it",
            cfg.stream,
            info.config.subjects
        );
    }
    Ok(())
}

/// The nats thread's state.
struct Worker {
    cfg: NatsConfig,
    js: jetstream::Context,
    names: Names,
    counters: Arc<NatsCounters>,
    sink: Arc<SinkCounters>,
    run: u64,
    next: u64,
    building: FxHashMap<(u8, u8, SymbolId), Building>,
    /// Failed publishes, sent again before `queue`.
    retry: VecDeque<Out>,
    /// The messages in flight, in the order their acks come back.
    sent: VecDeque<Out>,
    queue: VecDeque<Out>,
    queue_bytes: usize,
    spill: Spill,
    backoff: Duration,
    resume_at: Option<tokio::time::Instant>,
}

type Acked = Result<jetstream::publish::PublishAck, String>;

impl Worker {
    fn new(
        cfg: NatsConfig,
        js: jetstream::Context,
        symbols: Arc<SymbolTable>,
        counters: Arc<NatsCounters>,
        sink: Arc<SinkCounters>,
    ) -> Self {
        let spill = Spill::open(&cfg.spill_dir, &counters);
        Worker {
            names: Names::new(symbols),
            run: crate::source::clock::now_ns().max(0) as u64,
            next: 0,
            building: FxHashMap::default(),
            retry: VecDeque::new(),
            sent: VecDeque::new(),
            queue: VecDeque::new(),
            queue_bytes: 0,
            spill,
            backoff: Duration::ZERO,
            resume_at: None,
            cfg,
            js,
            counters,
            sink,
        }
    }

    async fn run(&mut self, mut rx: tokio::sync::mpsc::Receiver<SharedBundle>) {
        let mut inflight: FuturesOrdered<
            std::pin::Pin<Box<dyn std::future::Future<Output = Acked>>>,
        > = FuturesOrdered::new();
        let mut open = true;
        let mut deadline: Option<Instant> = None;
        loop {
            self.refill();
            self.send(&mut inflight).await;
            let idle = inflight.is_empty() && self.waiting() == 0;
            if !open && idle {
                break;
            }
            if !open && deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let resume = self.resume_at;
            tokio::select! {
                biased;
                Some(res) = inflight.next(), if !inflight.is_empty() => {
                    if let Some(out) = self.sent.pop_front() {
                        self.acked(out, res);
                    }
                }
                m = rx.recv(), if open => match m {
                    Some(b) => {
                        self.take(&b);
                        // Everything already queued joins the messages being built. The
                        // messages filled meanwhile go out every 64 bundles, and the client's
                        // connection (on this thread) gets to write them: the server stores
                        // while the rest is encoded.
                        for n in 1..1024 {
                            match rx.try_recv() {
                                Ok(b) => self.take(&b),
                                Err(_) => break,
                            }
                            if n % 64 == 0 && !self.queue.is_empty() {
                                self.send(&mut inflight).await;
                                tokio::task::yield_now().await;
                            }
                        }
                        self.seal_all();
                    }
                    None => {
                        open = false;
                        self.seal_all();
                        deadline = Some(Instant::now() + self.cfg.shutdown_timeout);
                    }
                },
                _ = sleep_until(resume), if resume.is_some() => self.resume_at = None,
                _ = tokio::time::sleep(Duration::from_millis(200)), if !open => {}
            }
        }
        // Not acknowledged in time (failed, or still in flight): kept for the next run, in
        // order, under the same ids (a message that did land is stored once).
        let mut left: Vec<Out> = Vec::new();
        while let Ok(Some(res)) =
            tokio::time::timeout(Duration::from_millis(1), inflight.next()).await
        {
            let Some(out) = self.sent.pop_front() else {
                break;
            };
            match res {
                Ok(ack) => self.acked(out, Ok(ack)),
                Err(_) => left.push(out),
            }
        }
        left.extend(self.sent.drain(..));
        left.extend(self.retry.drain(..));
        left.extend(self.queue.drain(..));
        self.spill.keep_left(left, &self.counters);
    }

    /// Records waiting (not in flight).
    fn waiting(&self) -> usize {
        self.retry.len() + self.queue.len() + usize::from(self.spill.has_data())
    }

    fn take(&mut self, bundle: &Bundle) {
        for m in bundle {
            let h = *m.rec.header();
            let key = (h.kind, h.market, h.symbol);
            // One lookup a record; the subject is made once per subject.
            let b = match self.building.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let kind = Kind::from_code(h.kind).unwrap_or(Kind::Gap);
                    let market = Market::from_code(h.market).unwrap_or(Market::Spot);
                    e.insert(Building {
                        subject: super::subject(
                            &self.cfg.prefix,
                            kind,
                            market,
                            self.names.get(h.symbol),
                        ),
                        seq: 0,
                        buf: Vec::new(),
                        records: 0,
                    })
                }
            };
            b.seq += 1;
            crate::pipeline::publish::encode_binary(&mut b.buf, &m.rec, m.levels(), b.seq);
            b.records += 1;
            if b.records as usize >= super::MAX_RECORDS || b.buf.len() >= super::MAX_PAYLOAD {
                let out = self.seal(key);
                self.push(out);
            }
        }
    }

    fn seal(&mut self, key: (u8, u8, SymbolId)) -> Option<Out> {
        let b = self.building.get_mut(&key)?;
        if b.records == 0 {
            return None;
        }
        self.next += 1;
        let cap = b.buf.len();
        let out = Out {
            id: format!("{}.{}.{}", self.cfg.id, self.run, self.next),
            subject: b.subject.clone(),
            payload: Bytes::from(std::mem::replace(&mut b.buf, Vec::with_capacity(cap))),
            records: std::mem::take(&mut b.records),
        };
        self.counters
            .pending
            .fetch_add(u64::from(out.records), Ordering::Relaxed);
        Some(out)
    }

    fn seal_all(&mut self) {
        let keys: Vec<_> = self
            .building
            .iter()
            .filter(|(_, b)| b.records > 0)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let out = self.seal(k);
            self.push(out);
        }
    }

    /// Into memory, or, beyond the budget or behind spilled messages, into the spill file.
    fn push(&mut self, out: Option<Out>) {
        let Some(out) = out else { return };
        if self.spill.has_data()
            || self.queue_bytes + out.payload.len() > self.cfg.memory_budget_bytes
        {
            self.spill.write(&out, &self.counters);
        } else {
            self.queue_bytes += out.payload.len();
            self.queue.push_back(out);
        }
    }

    /// Spilled messages back into memory while there is room.
    fn refill(&mut self) {
        while self.spill.has_data() && self.queue_bytes < self.cfg.memory_budget_bytes / 2 {
            match self.spill.read() {
                Some(out) => {
                    self.queue_bytes += out.payload.len();
                    self.queue.push_back(out);
                }
                None => break,
            }
        }
    }

    async fn send(
        &mut self,
        inflight: &mut FuturesOrdered<std::pin::Pin<Box<dyn std::future::Future<Output = Acked>>>>,
    ) {
        if self.resume_at.is_some() {
            return;
        }
        while inflight.len() < self.cfg.max_in_flight {
            let out = match self.retry.pop_front() {
                Some(o) => o,
                None => match self.queue.pop_front() {
                    Some(o) => {
                        self.queue_bytes -= o.payload.len();
                        o
                    }
                    None => return,
                },
            };
            let msg = jetstream::message::PublishMessage::build()
                .message_id(&out.id)
                .payload(out.payload.clone());
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                self.js.send_publish(out.subject.clone(), msg),
            )
            .await;
            match sent {
                Ok(Ok(fut)) => {
                    self.sent.push_back(out);
                    inflight.push_back(Box::pin(
                        async move { fut.await.map_err(|e| e.to_string()) },
                    ));
                }
                Ok(Err(e)) => {
                    self.failed(out, &e.to_string());
                    return;
                }
                Err(_) => {
                    self.failed(out, "publish timed out");
                    return;
                }
            }
        }
    }

    fn acked(&mut self, out: Out, res: Result<jetstream::publish::PublishAck, String>) {
        match res {
            Ok(ack) => {
                self.backoff = Duration::ZERO;
                if ack.duplicate {
                    self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                let n = u64::from(out.records);
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
                self.counters.records.fetch_add(n, Ordering::Relaxed);
                self.counters.pending.fetch_sub(n, Ordering::Relaxed);
                self.sink.rows.fetch_add(n, Ordering::Relaxed);
                self.sink.written_rows.fetch_add(n, Ordering::Relaxed);
                self.sink
                    .bytes
                    .fetch_add(out.payload.len() as u64, Ordering::Relaxed);
                self.sink.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed(out, &e),
        }
    }

    fn failed(&mut self, out: Out, why: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.sink.errors.fetch_add(1, Ordering::Relaxed);
        if self.backoff.is_zero() {
            tracing::warn!("nats: publish failed ({why}); retrying with backoff");
        }
        // In order: failed acks arrive in publish order.
        self.retry.push_back(out);
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        self.resume_at = Some(tokio::time::Instant::now() + self.backoff);
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The spill file: messages in order, appended at the end and read from the front.
///
/// Entry: `u32 subject length, subject, u32 id length, id, u32 records, u32 payload length,
/// payload` (little-endian). Files of earlier runs (`nats-*.spill`) are read first, oldest
/// first; a file read to its end is removed.
struct Spill {
    dir: PathBuf,
    /// Files waiting to be read, oldest first; the last one may be the one being written.
    files: VecDeque<PathBuf>,
    reader: Option<(PathBuf, BufReader<std::fs::File>, u64)>,
    writer: Option<(PathBuf, BufWriter<std::fs::File>)>,
    /// Entries written and not read yet.
    entries: u64,
}

impl Spill {
    fn open(dir: &Path, counters: &NatsCounters) -> Spill {
        let files = spill_files(dir);
        // Entries of earlier runs: counted so that `has_data` holds until they are read.
        let mut entries = 0;
        for f in &files {
            let n = count_entries(f);
            entries += n.0;
            counters.pending.fetch_add(n.1, Ordering::Relaxed);
        }
        if entries > 0 {
            tracing::info!(
                "nats: {entries} messages of an earlier run in {} are sent first",
                dir.display()
            );
        }
        Spill {
            dir: dir.to_path_buf(),
            files: files.into(),
            reader: None,
            writer: None,
            entries,
        }
    }

    fn has_data(&self) -> bool {
        self.entries > 0
    }

    fn write(&mut self, out: &Out, counters: &NatsCounters) {
        if self.writer.is_none() {
            let path = self.dir.join(format!(
                "nats-{:020}.spill",
                crate::source::clock::now_ns().max(0)
            ));
            match std::fs::File::create(&path) {
                Ok(f) => {
                    self.files.push_back(path.clone());
                    self.writer = Some((path, BufWriter::new(f)));
                }
                Err(e) => return lost(&path, &e, out, counters),
            }
        }
        let Some((path, w)) = &mut self.writer else {
            return;
        };
        let mut r = Ok(());
        for part in [out.subject.as_bytes(), out.id.as_bytes()] {
            r = r
                .and_then(|()| w.write_all(&(part.len() as u32).to_le_bytes()))
                .and_then(|()| w.write_all(part));
        }
        r = r
            .and_then(|()| w.write_all(&out.records.to_le_bytes()))
            .and_then(|()| w.write_all(&(out.payload.len() as u32).to_le_bytes()))
            .and_then(|()| w.write_all(&out.payload));
        match r {
            Ok(()) => {
                self.entries += 1;
                counters
                    .spilled
                    .fetch_add(u64::from(out.records), Ordering::Relaxed);
            }
            Err(e) => lost(path, &e, out, counters),
        }
    }

    /// The oldest spilled message.
    fn read(&mut self) -> Option<Out> {
        loop {
            if self.reader.is_none() {
                let path = self.files.front()?.clone();
                if let Some((wp, w)) = &mut self.writer {
                    if *wp == path {
                        let _ = w.flush();
                    }
                }
                let f = std::fs::File::open(&path).ok()?;
                self.reader = Some((path, BufReader::new(f), 0));
            }
            let (path, r, pos) = self.reader.as_mut()?;
            if let Some((wp, w)) = &mut self.writer {
                if wp == path {
                    let _ = w.flush();
                    // The reader's buffer may have hit the old end: look again from `pos`.
                    let _ = r.seek(SeekFrom::Start(*pos));
                }
            }
            match read_entry(r) {
                Some((out, len)) => {
                    *pos += len;
                    self.entries = self.entries.saturating_sub(1);
                    if self.entries == 0 {
                        // Everything spilled is read (`has_data` turns false, so no read
                        // comes to see the end): the files go now, or the next run would
                        // send them again.
                        self.reader = None;
                        self.writer = None;
                        for f in self.files.drain(..) {
                            let _ = std::fs::remove_file(f);
                        }
                    }
                    return Some(out);
                }
                None => {
                    // At its end: done with it unless it is still being written.
                    let being_written = self.writer.as_ref().is_some_and(|(wp, _)| wp == path);
                    if being_written {
                        if self.entries == 0 {
                            let p = path.clone();
                            self.reader = None;
                            self.writer = None;
                            self.files.pop_front();
                            let _ = std::fs::remove_file(p);
                        }
                        return None;
                    }
                    let p = path.clone();
                    self.reader = None;
                    self.files.pop_front();
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }

    /// At shutdown: `left` (not acknowledged) is written after what the file holds, so the
    /// next run sends it all, in order.
    fn keep_left(&mut self, left: Vec<Out>, counters: &NatsCounters) {
        if left.is_empty() && !self.has_data() {
            return;
        }
        // What is still unread in the files stays there; `left` was read before it (older),
        // so it goes into a file of its own that sorts first.
        let mut unread: Vec<Out> = Vec::new();
        while let Some(o) = self.read() {
            unread.push(o);
        }
        self.writer = None;
        self.reader = None;
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        let mut n = 0;
        for o in left.iter().chain(&unread) {
            self.write(o, counters);
            n += u64::from(o.records);
        }
        if let Some((p, w)) = &mut self.writer {
            if let Err(e) = w.flush().and_then(|()| w.get_ref().sync_all()) {
                tracing::warn!("nats: spill {}: {e}", p.display());
            }
        }
        counters.left_spilled.store(n, Ordering::Relaxed);
        tracing::warn!(
            "nats: {n} records not acknowledged by NATS kept in {} for the next run",
            self.dir.display()
        );
    }
}

/// A message neither NATS nor the disk would take: logged and counted as dropped.
fn lost(path: &Path, e: &std::io::Error, out: &Out, counters: &NatsCounters) {
    tracing::error!(
        "nats: spill {}: {e}; {} records dropped",
        path.display(),
        out.records
    );
    counters
        .dropped
        .fetch_add(u64::from(out.records), Ordering::Relaxed);
    counters
        .pending
        .fetch_sub(u64::from(out.records), Ordering::Relaxed);
}

fn read_entry(r: &mut impl Read) -> Option<(Out, u64)> {
    let mut u = [0u8; 4];
    let mut take = |r: &mut dyn Read| -> Option<Vec<u8>> {
        r.read_exact(&mut u).ok()?;
        let n = u32::from_le_bytes(u) as usize;
        let mut v = vec![0; n];
        r.read_exact(&mut v).ok()?;
        Some(v)
    };
    let subject = String::from_utf8(take(r)?).ok()?;
    let id = String::from_utf8(take(r)?).ok()?;
    let mut rec = [0u8; 4];
    r.read_exact(&mut rec).ok()?;
    let payload = take(r)?;
    let len = 16 + subject.len() + id.len() + payload.len();
    Some((
        Out {
            id,
            subject,
            payload: Bytes::from(payload),
            records: u32::from_le_bytes(rec),
        },
        len as u64,
    ))
}

/// The spill files in `dir` (`nats-*.spill`), oldest first.
fn spill_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("nats-") && n.ends_with(".spill"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Entries and records in a spill file (a torn last entry is not counted and not read).
fn count_entries(path: &Path) -> (u64, u64) {
    let Ok(f) = std::fs::File::open(path) else {
        return (0, 0);
    };
    let mut r = BufReader::new(f);
    let (mut n, mut recs) = (0, 0);
    while let Some((o, _)) = read_entry(&mut r) {
        n += 1;
        recs += u64::from(o.records);
    }
    (n, recs)
}
