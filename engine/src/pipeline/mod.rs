//! The pipeline: publish, columnarize, flush to the sinks.
//!
//! Two OS threads. The records arrive published already (each source publishes a frame's
//! records right after decoding it, see [`SharedPublisher`]). The "pipeline" thread counts
//! them and passes each bundle on; it also sends flushed batches as Arrow IPC, reads ZMQ
//! subscriptions and publishes the latency histograms. The columnarize stage
//! ("columnarize") owns the Arrow builders and appends each record to the builder of its
//! (kind, market, UTC day of `recv_time`). A builder is flushed when it holds `max_rows` rows
//! or its oldest row is `max_age` old; the flushed `RecordBatch` goes, as one `Arc`, to every
//! sink's queue. Each sink runs on its own thread ([`SinkRunner`]) behind a bounded queue; a
//! full sink queue blocks this thread (back-pressure reaches the sources, whose full policy
//! then applies and counts).
//!
//! ## The room
//!
//! `pipeline/` owns what lies between the sources and the sinks: the bounded queue (`queue`),
//! ZMQ publishing (`publish`), columnarizing and flushing (this module), symbol names per
//! thread (`names`) and the latency histograms (`metrics`). It may call the sinks (through
//! `tickwire_sinks::Sink`), `serve::cache` (to hand it flushed batches), `serve::l1` and `bus`
//! (to hand them bundles) and `source::clock`; never a source.

pub mod metrics;
pub mod names;
pub mod publish;
pub mod queue;

use crate::pipeline::metrics::{Histogram, Shared};
use crate::pipeline::names::Names;
use crate::pipeline::publish::SharedPublisher;
use crate::pipeline::queue::{Bundle, Msg, SharedBundle};
use crate::serve::cache::{Cache, SNAPSHOT_EVERY};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tickwire_codecs::arrow::BatchBuilder;
use tickwire_codecs::record::{Kind, Market};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_sinks::{Batch, BatchKey, Sink, SinkCounters};

/// Flush settings.
#[derive(Debug, Clone, Copy)]
pub struct FlushConfig {
    /// Flush a builder at this many rows.
    pub max_rows: usize,
    /// Flush a builder when its oldest row is this old.
    pub max_age: Duration,
}

impl Default for FlushConfig {
    /// 16,384 rows or 500 ms: at 100 msg/s a row waits at most half a second; at 1 M msg/s
    /// batches are large enough for columnar writes to be cheap.
    fn default() -> Self {
        FlushConfig {
            max_rows: 16_384,
            max_age: Duration::from_millis(500),
        }
    }
}

/// Pipeline counters.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Records taken from the queue, by kind.
    pub records: [AtomicU64; Kind::COUNT],
    /// Batches flushed.
    pub batches: AtomicU64,
    /// Rows flushed.
    pub rows: AtomicU64,
    /// Records the columnarizer refused (counted; cannot happen for decoded records).
    pub errors: AtomicU64,
    /// Rows of batches a sink's queue refused because the sink is gone.
    pub sink_drops: AtomicU64,
    /// Sum and count of flush latencies (oldest row's wait), µs, for the stats line.
    pub flush_wait_us_sum: AtomicU64,
    /// Receive (frame arrival) to ZMQ publish, µs, per record.
    pub recv_to_publish: Shared,
    /// Receive to batch flushed to the sinks, µs, per row.
    pub recv_to_flush: Shared,
    /// Exchange event time to publish, µs, per record with an event time.
    pub exchange_lag: Shared,
}

/// A sink on its own thread behind a bounded queue.
#[derive(Debug)]
pub struct SinkRunner {
    /// Sink name.
    pub name: &'static str,
    tx: Sender<Batch>,
    join: JoinHandle<Result<(), tickwire_sinks::SinkError>>,
    /// Its counters.
    pub counters: Arc<SinkCounters>,
}

impl SinkRunner {
    /// Starts `sink` on a thread with a queue of `capacity` batches.
    pub fn start(mut sink: Box<dyn Sink>, capacity: usize) -> SinkRunner {
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(capacity);
        let name = sink.name();
        let counters = sink.counters();
        let join = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                loop {
                    match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(b) => {
                            if let Err(e) = sink.write(&b) {
                                // The sink did not take the batch: its rows are lost, so counted.
                                let c = sink.counters();
                                c.errors.fetch_add(1, Ordering::Relaxed);
                                c.dropped_rows
                                    .fetch_add(b.data.num_rows() as u64, Ordering::Relaxed);
                                tracing::warn!(
                                    "sink {name}: {} rows dropped: {e}",
                                    b.data.num_rows()
                                );
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if let Err(e) = sink.tick() {
                                tracing::warn!("sink {name}: {e}");
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                sink.close()
            })
            .unwrap_or_else(|e| panic!("cannot start a thread: {e}"));
        SinkRunner {
            name,
            tx,
            join,
            counters,
        }
    }

    /// Waits for the sink to write everything queued and close.
    pub fn finish(self) -> Result<(), tickwire_sinks::SinkError> {
        drop(self.tx);
        self.join.join().unwrap_or(Ok(()))
    }
}

struct Open {
    builder: BatchBuilder,
    since: Instant,
    /// `recv_time` of each pending row, for the receive-to-flush histogram.
    recv: Vec<i64>,
    /// Rows appended since the cache last got a copy.
    dirty: bool,
    /// Position of the last row (a replayable source's; 0 otherwise).
    hi: u64,
    /// A replay's segment of the rows: (replayed connection, minute of `recv_time`).
    seg: (u64, i64),
}

/// A capture replay's batch identity. Batches are cut by what they hold, never by the clock:
/// a key's batch ends where the next row comes from another replayed connection or another
/// minute of `recv_time`, or at `max_rows`; its id is a hash of (connection, minute, key, the
/// number of batches cut before it for the same three). Every replay of a capture, over any
/// whole minutes, so cuts the same batches under the same ids, and each is offered to the
/// stores as possibly stored already: a backfill run twice, or killed and run again, stores
/// every row once.
#[derive(Debug)]
struct ReplayIds {
    cuts: FxHashMap<(u64, i64, BatchKey), u32>,
    hook: Arc<dyn tickwire_sinks::Committed>,
}

/// Nothing waits for a replay's batches to be kept.
#[derive(Debug)]
struct NoHook;

impl tickwire_sinks::Committed for NoHook {
    fn committed(&self, _: u64) {}
}

/// The id of a replay's batch: (connection, minute, key, cut number), splitmix-mixed, below
/// 2^62 (clear of the JetStream writer's ids, which carry bit 62).
fn replay_batch_id(seg: (u64, i64), key: BatchKey, n: u32) -> u64 {
    let mut z = seg.0;
    for v in [
        seg.1 as u64,
        ((key.kind as u64) << 40) | ((key.market as u64) << 32) | u64::from(n),
    ] {
        z ^= v.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z >> 2
}

/// How a JetStream writer's batches are cut (see [`crate::bus::writer`]): between messages,
/// all open batches at once, and again exactly where the sinks' known batches end.
#[derive(Debug)]
pub struct WriterCut {
    /// Told of every batch and cut; the sinks tell it what they keep.
    pub tracker: Arc<crate::bus::writer::Tracker>,
    /// Positions where a batch the sinks know (in full or in part) ends.
    pub boundaries: std::collections::BTreeSet<u64>,
}

/// Capacity of the queue between the publish and the columnarize stage, in bundles.
const STAGE_QUEUE: usize = 4_096;

/// The pipeline: this thread and a columnarize stage (a thread it starts).
///
/// Finishing a batch (all kinds age out together) takes milliseconds, so it runs on its own
/// thread, fed by a bounded queue that blocks this one only when columnarizing falls a whole
/// queue behind (back-pressure reaches the sources, whose full policy applies; no loss).
pub struct Pipeline {
    rx: Receiver<Bundle>,
    l1: Option<crate::serve::l1::L1>,
    nats: Option<crate::bus::collector::NatsOut>,
    publisher: Option<Arc<SharedPublisher>>,
    counters: Arc<PipelineCounters>,
    columnarizer: Columnarizer,
    col_tx: Sender<SharedBundle>,
    batch_rx: Option<Receiver<Batch>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline reading `rx`, flushing to `sinks`; with a `publisher` (which the sources
    /// publish each record with), it sends the flushed batches as Arrow IPC where the
    /// publisher is configured to, reads subscriptions and publishes the latency histograms.
    pub fn new(
        rx: Receiver<Bundle>,
        symbols: Arc<SymbolTable>,
        publisher: Option<Arc<SharedPublisher>>,
        flush: FlushConfig,
        sinks: &[SinkRunner],
        counters: Arc<PipelineCounters>,
        cache: Option<Arc<Cache>>,
    ) -> Self {
        let (col_tx, col_rx) = crossbeam_channel::bounded(STAGE_QUEUE);
        // Flushed batches back to this stage for Arrow IPC publishing: bounded; a batch that
        // does not fit is counted (batches_dropped), never waited for.
        let (batch_tx, batch_rx) = match publisher.as_ref().filter(|p| p.batches()) {
            Some(_) => {
                let (t, r) = crossbeam_channel::bounded(256);
                (Some(t), Some(r))
            }
            None => (None, None),
        };
        let columnarizer = Columnarizer {
            rx: col_rx,
            names: Names::new(symbols),
            flush,
            sinks: sinks.iter().map(|s| s.tx.clone()).collect(),
            open: FxHashMap::default(),
            seq: 0,
            counters: counters.clone(),
            hist: Histogram::default(),
            cache,
            batch_tx,
            zmq_counters: publisher.as_ref().map(|p| p.counters()).unwrap_or_default(),
            writer: None,
            replay_ids: None,
            last_seq: 0,
            cut_due: false,
        };
        Pipeline {
            rx,
            l1: None,
            nats: None,
            publisher,
            counters,
            columnarizer,
            col_tx,
            batch_rx,
        }
    }

    /// Also keeps the Redis L1 from the records as they pass.
    pub fn with_l1(mut self, l1: Option<crate::serve::l1::L1>) -> Self {
        self.l1 = l1;
        self
    }

    /// Cuts batches the way a JetStream writer needs them.
    pub fn with_writer(mut self, cut: Option<WriterCut>) -> Self {
        self.columnarizer.writer = cut;
        self
    }

    /// Cuts batches the way a capture replay needs them (see [`ReplayIds`]).
    pub fn with_replay_ids(mut self, on: bool) -> Self {
        self.columnarizer.replay_ids = on.then(|| ReplayIds {
            cuts: FxHashMap::default(),
            hook: Arc::new(NoHook),
        });
        self
    }

    /// Also publishes every record into NATS JetStream.
    pub fn with_nats(mut self, nats: Option<crate::bus::collector::NatsOut>) -> Self {
        self.nats = nats;
        self
    }

    /// Runs until every producer has gone and the queue is empty; the columnarize stage then
    /// flushes everything and this returns when it has.
    pub fn run(self) {
        let col = self.columnarizer;
        let col_thread = std::thread::Builder::new()
            .name("columnarize".into())
            .spawn(move || col.run());
        // `self.columnarizer` has moved; the rest of `self` stays here.
        let Pipeline {
            rx,
            l1,
            nats,
            publisher,
            counters,
            col_tx,
            batch_rx,
            ..
        } = self;
        let mut stage = Publish {
            l1: l1.as_ref(),
            nats: nats.as_ref(),
            publisher: publisher.as_deref(),
            counters: &counters,
            col_tx: &col_tx,
            batch_rx: &batch_rx,
            buf: Vec::new(),
        };
        // Flushed batches come back to be published as Arrow IPC only between bundles or at a
        // tick: 50 ms when that is on; otherwise the tick only does housekeeping (the
        // subscriptions, the latency histograms) and need not wake the thread more often.
        let tick = if batch_rx.is_some() {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(250)
        };
        let mut last = Instant::now();
        let mut pace = Pace::default();
        loop {
            let taken = match gather(&rx, tick, |m| stage.take(m)) {
                Ok(emptied) => Some(emptied),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            stage.batches();
            if last.elapsed() >= tick {
                stage.housekeeping();
                last = Instant::now();
            }
            pace.after(taken);
        }
        stage.housekeeping();
        let mut buf = std::mem::take(&mut stage.buf);
        drop(stage);
        // The L1 writes what it has left while the columnarize stage flushes.
        let l1_done = l1.map(|l| std::thread::spawn(move || l.finish()));
        let nats_done = nats.map(|n| std::thread::spawn(move || n.finish()));
        drop(col_tx);
        match col_thread {
            Ok(t) => {
                if t.join().is_err() {
                    tracing::error!("the columnarize thread panicked");
                }
            }
            Err(e) => tracing::error!("cannot start the columnarize thread: {e}"),
        }
        for t in [l1_done, nats_done].into_iter().flatten() {
            let _ = t.join();
        }
        // The batches the columnarize stage flushed at its end.
        if let (Some(rx), Some(p)) = (&batch_rx, publisher.as_deref()) {
            for b in rx.try_iter() {
                p.publish_batch(&b, &mut buf);
            }
        }
    }
}

/// How long an idle columnarize stage sleeps between looks (data wakes it at once).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Waits up to `wait` for a first item of `rx`, then takes what else is queued, up to 4,096
/// more, with `take`. Ok(true): the queue was emptied (what comes next may be gathered on the
/// taker's own clock); Ok(false): more may be waiting.
fn gather<T>(
    rx: &Receiver<T>,
    wait: Duration,
    mut take: impl FnMut(T),
) -> Result<bool, RecvTimeoutError> {
    take(rx.recv_timeout(wait)?);
    for _ in 0..4096 {
        match rx.try_recv() {
            Ok(m) => take(m),
            Err(_) => return Ok(true),
        }
    }
    Ok(false)
}

/// How long the pipeline thread gathers bundles on its own clock after it has emptied its
/// queue. A bundle that finds the thread asleep on the queue wakes it (a futex wake paid by
/// the source, a context switch here, and the same again for the columnarize stage); one that
/// finds it in this sleep waits for it. So below the rate at which bundles queue up anyway,
/// the two threads wake at most 1/LINGER times a second instead of once per burst of frames,
/// and above it nothing changes. The first bundle after a quiet spell is taken at once; the
/// records have been published on ZMQ by their source already, so this delays only what
/// flushes on its own 500 ms schedule (batches, the cache's 100 ms copies), the Redis L1 (which
/// writes at most every 50 ms) and the NATS sink, by at most LINGER.
const LINGER: Duration = Duration::from_millis(5);

/// Hand-offs closer together than this make a thread gather for [`LINGER`]; a lone one after a
/// quiet spell (idle, a message a second) is followed by a plain wait on the queue, which
/// costs no extra wake-up.
const BUSY: Duration = Duration::from_millis(50);

/// Whether a thread that took from its queue sleeps [`LINGER`] before it looks again.
#[derive(Debug, Default)]
struct Pace {
    /// When it last took something.
    prev: Option<Instant>,
}

impl Pace {
    /// After a look at the queue: `taken` is None when nothing came, else whether the queue
    /// was emptied.
    fn after(&mut self, taken: Option<bool>) {
        let Some(emptied) = taken else { return };
        let now = Instant::now();
        let busy = self.prev.is_some_and(|p| now - p < BUSY);
        self.prev = Some(now);
        if emptied && busy {
            std::thread::sleep(LINGER);
        }
    }
}

/// The pipeline thread's borrowed state while it runs.
struct Publish<'a> {
    /// The Redis L1, offered each bundle's records it keeps.
    l1: Option<&'a crate::serve::l1::L1>,
    /// The NATS sink, offered every bundle.
    nats: Option<&'a crate::bus::collector::NatsOut>,
    publisher: Option<&'a SharedPublisher>,
    counters: &'a Arc<PipelineCounters>,
    col_tx: &'a Sender<SharedBundle>,
    /// Flushed batches to publish as Arrow IPC (when the publisher does).
    batch_rx: &'a Option<Receiver<Batch>>,
    /// Scratch space for encoding them.
    buf: Vec<u8>,
}

impl Publish<'_> {
    fn take(&mut self, bundle: Bundle) {
        // Published already, by the source that decoded them.
        for msg in &bundle {
            self.counters.records[msg.rec.kind().index()].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l) = self.l1 {
            l.offer(&bundle);
        }
        // The bundle moves on whole, shared with the NATS sink. Blocks only while the
        // columnarize stage is a whole queue behind.
        let bundle = SharedBundle::new(bundle);
        if let Some(n) = self.nats {
            n.offer(&bundle);
        }
        let n = bundle.len() as u64;
        if self.col_tx.send(bundle).is_err() {
            self.counters.errors.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Publishes the flushed batches handed back by the columnarize stage.
    fn batches(&mut self) {
        if let (Some(rx), Some(p)) = (self.batch_rx, self.publisher) {
            for b in rx.try_iter() {
                p.publish_batch(&b, &mut self.buf);
            }
        }
    }

    fn housekeeping(&mut self) {
        if let Some(p) = self.publisher {
            p.housekeeping(&self.counters.recv_to_publish, &self.counters.exchange_lag);
        }
    }
}

/// The columnarize stage: Arrow builders per (kind, market, day), flushed to the sinks.
struct Columnarizer {
    rx: Receiver<SharedBundle>,
    names: Names,
    flush: FlushConfig,
    sinks: Vec<Sender<Batch>>,
    open: FxHashMap<BatchKey, Open>,
    seq: u64,
    counters: Arc<PipelineCounters>,
    hist: Histogram,
    /// The query cache: every flushed batch, and copies of the open ones.
    cache: Option<Arc<Cache>>,
    /// Flushed batches for the pipeline thread to send as Arrow IPC.
    batch_tx: Option<Sender<Batch>>,
    zmq_counters: Arc<crate::pipeline::publish::PubCounters>,
    /// A JetStream writer's cutting (None: batches flush per key on size and age).
    writer: Option<WriterCut>,
    /// A capture replay's cutting (None: by size and age).
    replay_ids: Option<ReplayIds>,
    /// The stream sequence of the last message taken (writer only).
    last_seq: u64,
    /// A batch is full: cut them all after this message (writer only).
    cut_due: bool,
}

impl Columnarizer {
    fn take_bundle(&mut self, bundle: SharedBundle) {
        // By reference: a record is up to 240 bytes, and the builders copy its fields anyway.
        for msg in bundle.iter() {
            self.take(msg);
        }
        if self.writer.is_some() {
            if let Some(m) = bundle.last() {
                self.last_seq = m.pos >> 16;
            }
            if self.cut_due && !self.catching_up() {
                self.cut_all();
            }
        }
    }

    /// A writer reads again what the sinks may hold: no cut but at their batches' ends until
    /// it is past the last of them.
    fn catching_up(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| {
            w.boundaries
                .last()
                .is_some_and(|&b| b >> 16 > self.last_seq)
        })
    }

    /// Every open batch flushed, the generation closed at the last message taken.
    fn cut_all(&mut self) {
        self.cut_due = false;
        let keys: Vec<BatchKey> = self
            .open
            .iter()
            .filter(|(_, o)| !o.builder.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.flush_key(k, false);
        }
        if let Some(w) = &self.writer {
            w.tracker.cut(self.last_seq);
        }
    }

    fn take(&mut self, msg: &Msg) {
        let h = *msg.rec.header();
        let kind = msg.rec.kind();
        let key = BatchKey {
            kind,
            market: Market::from_code(h.market).unwrap_or(Market::Spot),
            day: h.recv_time.div_euclid(86_400_000_000_000) as i32,
        };
        let seg = (msg.pos, h.recv_time.div_euclid(60_000_000_000));
        if self.replay_ids.is_some()
            && self
                .open
                .get(&key)
                .is_some_and(|o| o.seg != seg && !o.builder.is_empty())
        {
            self.flush_key(key, true);
        }
        let name = self.names.get(h.symbol);
        let open = self.open.entry(key).or_insert_with(|| Open {
            builder: BatchBuilder::new(kind, 1024),
            since: Instant::now(),
            recv: Vec::new(),
            dirty: false,
            hi: 0,
            seg,
        });
        open.seg = seg;
        if open.builder.is_empty() {
            open.since = Instant::now();
        }
        if open.builder.append(&msg.rec, msg.levels(), name).is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        } else {
            open.recv.push(h.recv_time);
            open.dirty = true;
            open.hi = msg.pos;
        }
        let full = open.builder.len() >= self.flush.max_rows;
        match &mut self.writer {
            None if full => self.flush_key(key, self.replay_ids.is_some()),
            None => {}
            Some(w) => {
                // A batch a sink knows ends here: cut it again, the same rows under the same id.
                if w.boundaries.remove(&msg.pos) {
                    self.flush_key(key, true);
                } else if full {
                    self.cut_due = true;
                }
            }
        }
    }

    fn flush_key(&mut self, key: BatchKey, replayed: bool) {
        let Some(open) = self.open.get_mut(&key) else {
            return;
        };
        if open.builder.is_empty() {
            return;
        }
        let waited = open.since.elapsed();
        match open.builder.finish() {
            Ok(batch) => {
                self.seq += 1;
                let rows = batch.num_rows() as u64;
                let mut origin = self.writer.as_ref().map(|w| {
                    let id = crate::bus::writer::ID_FLAG | open.hi;
                    w.tracker.flushed(id);
                    tickwire_sinks::Origin {
                        id,
                        replayed,
                        hook: w.tracker.clone(),
                    }
                });
                if let Some(r) = self.replay_ids.as_mut() {
                    let n = r.cuts.entry((open.seg.0, open.seg.1, key)).or_insert(0);
                    origin = Some(tickwire_sinks::Origin {
                        id: replay_batch_id(open.seg, key, *n),
                        replayed: true,
                        hook: r.hook.clone(),
                    });
                    *n += 1;
                }
                let b = Batch {
                    key,
                    seq: self.seq,
                    data: Arc::new(batch),
                    origin,
                };
                open.dirty = false;
                if let Some(c) = &self.cache {
                    c.insert(
                        key.kind,
                        key.market,
                        key.day,
                        b.data.clone(),
                        crate::source::clock::now_ns(),
                    );
                }
                if let Some(tx) = &self.batch_tx {
                    if tx.try_send(b.clone()).is_err() {
                        self.zmq_counters
                            .batches_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                for tx in &self.sinks {
                    // Blocks while the sink's queue is full: back-pressure, not loss.
                    if tx.send(b.clone()).is_err() {
                        self.counters.sink_drops.fetch_add(rows, Ordering::Relaxed);
                    }
                }
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.rows.fetch_add(rows, Ordering::Relaxed);
                self.counters
                    .flush_wait_us_sum
                    .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
                let now = crate::source::clock::now_ns();
                for r in open.recv.drain(..) {
                    self.hist.record(((now - r) / 1000).max(0) as u64);
                }
            }
            Err(e) => {
                tracing::warn!("columnarize {:?}: {e}", key.kind);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn flush_aged(&mut self, all: bool) {
        // A replay's batches end by what they hold, never by age (the same cuts every time).
        if self.replay_ids.is_some() && !all {
            return;
        }
        if self.writer.is_some() {
            // Stopping while reading again what the sinks may hold: the open batches are
            // not cut (the stream delivers their records again next time).
            if self.catching_up() {
                return;
            }
            let any_due = self
                .open
                .values()
                .any(|o| !o.builder.is_empty() && (all || o.since.elapsed() >= self.flush.max_age));
            let idle = self.open.values().all(|o| o.builder.is_empty());
            if any_due || all || idle {
                self.cut_all();
            }
            return;
        }
        let due: Vec<BatchKey> = self
            .open
            .iter()
            .filter(|(_, o)| {
                !o.builder.is_empty() && (all || o.since.elapsed() >= self.flush.max_age)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.flush_key(k, false);
        }
    }

    /// Gives the cache a copy of every open batch with new rows.
    fn snapshot_open(&mut self) {
        let Some(cache) = &self.cache else { return };
        for (key, open) in self.open.iter_mut().filter(|(_, o)| o.dirty) {
            open.dirty = false;
            match open.builder.snapshot() {
                Ok(b) => cache.set_open(key.kind, key.market, key.day, b),
                Err(e) => {
                    tracing::warn!("cache snapshot {:?}: {e}", key.kind);
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn run(mut self) {
        let tick = (self.flush.max_age / 4)
            .min(SNAPSHOT_EVERY)
            .max(Duration::from_millis(1));
        let mut last = Instant::now();
        // A handle of its own, so that `take_bundle` may borrow `self` while it drains.
        let rx = self.rx.clone();
        let mut pace = Pace::default();
        loop {
            // Nothing open and nothing new for the cache: no flush age to watch, so the
            // thread sleeps until data comes (or a second passes), instead of every tick.
            let idle = self.open.values().all(|o| o.builder.is_empty() && !o.dirty);
            let wait = if idle { IDLE_WAIT } else { tick };
            let taken = match gather(&rx, wait, |m| self.take_bundle(m)) {
                Ok(emptied) => Some(emptied),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if last.elapsed() >= tick {
                self.flush_aged(false);
                self.snapshot_open();
                self.counters.recv_to_flush.publish(&self.hist);
                last = Instant::now();
            }
            // Fed by the pipeline thread every LINGER at low rates: sleeping that long finds
            // the next hand-off waiting instead of blocking on the channel for it (crossbeam
            // spins and yields the CPU a dozen times before it parks a receiver).
            pace.after(taken);
        }
        self.flush_aged(true);
        self.counters.recv_to_flush.publish(&self.hist);
    }
}
