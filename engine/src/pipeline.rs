//! The pipeline thread: publish, columnarize, flush to the sinks.
//!
//! One OS thread owns the ZMQ socket and the Arrow builders. For each record it takes from the
//! queue it (1) publishes it over ZMQ at once, then (2) appends it to the builder of its
//! (kind, market, UTC day of `recv_time`). A builder is flushed when it holds `max_rows` rows
//! or its oldest row is `max_age` old; the flushed `RecordBatch` goes, as one `Arc`, to every
//! sink's queue. Each sink runs on its own thread ([`SinkRunner`]) behind a bounded queue; a
//! full sink queue blocks this thread (back-pressure reaches the sources, whose full policy
//! then applies and counts).

use crate::metrics::{Histogram, Shared};
use crate::publish::Publisher;
use crate::queue::Msg;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tickwire_codecs::arrow::BatchBuilder;
use tickwire_codecs::record::{Kind, Market, SymbolId};
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
    /// Batches a sink's queue refused because the sink is gone.
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
                                sink.counters().errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("tickwire: sink {name}: {e}");
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if let Err(e) = sink.tick() {
                                eprintln!("tickwire: sink {name}: {e}");
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
}

#[derive(Default)]
struct Hists {
    publish: Histogram,
    flush: Histogram,
    exchange: Histogram,
}

/// The pipeline thread's state.
pub struct Pipeline {
    rx: Receiver<Msg>,
    symbols: Arc<SymbolTable>,
    names: Vec<Arc<str>>,
    publisher: Option<Publisher>,
    flush: FlushConfig,
    sinks: Vec<Sender<Batch>>,
    open: FxHashMap<BatchKey, Open>,
    seq: u64,
    counters: Arc<PipelineCounters>,
    hists: Hists,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("open", &self.open.len())
            .field("seq", &self.seq)
            .finish()
    }
}

impl Pipeline {
    /// A pipeline reading `rx`, publishing with `publisher`, flushing to `sinks`.
    pub fn new(
        rx: Receiver<Msg>,
        symbols: Arc<SymbolTable>,
        publisher: Option<Publisher>,
        flush: FlushConfig,
        sinks: &[SinkRunner],
        counters: Arc<PipelineCounters>,
    ) -> Self {
        Pipeline {
            rx,
            symbols,
            names: Vec::new(),
            publisher,
            flush,
            sinks: sinks.iter().map(|s| s.tx.clone()).collect(),
            open: FxHashMap::default(),
            seq: 0,
            counters,
            hists: Hists::default(),
        }
    }

    fn name(&mut self, id: SymbolId) -> Arc<str> {
        let i = id.0 as usize;
        while self.names.len() <= i {
            let next = SymbolId(self.names.len() as u32);
            self.names
                .push(self.symbols.name(next).unwrap_or_else(|| Arc::from("")));
        }
        self.names[i].clone()
    }

    fn take(&mut self, msg: Msg) {
        let h = *msg.rec.header();
        let kind = msg.rec.kind();
        self.counters.records[kind.index()].fetch_add(1, Ordering::Relaxed);
        let name = self.name(h.symbol);
        if let Some(p) = &mut self.publisher {
            p.publish(&msg.rec, msg.levels(), &name);
            let now = crate::clock::now_ns();
            self.hists
                .publish
                .record(((now - h.recv_time) / 1000).max(0) as u64);
            if h.event_time != tickwire_codecs::record::NULL_I64 {
                self.hists
                    .exchange
                    .record((now / 1000 - h.event_time).max(0) as u64);
            }
        }
        let key = BatchKey {
            kind,
            market: Market::from_code(h.market).unwrap_or(Market::Spot),
            day: h.recv_time.div_euclid(86_400_000_000_000) as i32,
        };
        let open = self.open.entry(key).or_insert_with(|| Open {
            builder: BatchBuilder::new(kind, 1024),
            since: Instant::now(),
            recv: Vec::new(),
        });
        if open.builder.is_empty() {
            open.since = Instant::now();
        }
        if open.builder.append(&msg.rec, msg.levels(), &name).is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        } else {
            open.recv.push(h.recv_time);
        }
        if open.builder.len() >= self.flush.max_rows {
            self.flush_key(key);
        }
    }

    fn flush_key(&mut self, key: BatchKey) {
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
                let b = Batch {
                    key,
                    seq: self.seq,
                    data: Arc::new(batch),
                };
                for tx in &self.sinks {
                    // Blocks while the sink's queue is full: back-pressure, not loss.
                    if tx.send(b.clone()).is_err() {
                        self.counters.sink_drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.rows.fetch_add(rows, Ordering::Relaxed);
                self.counters
                    .flush_wait_us_sum
                    .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
                let now = crate::clock::now_ns();
                for r in open.recv.drain(..) {
                    self.hists.flush.record(((now - r) / 1000).max(0) as u64);
                }
            }
            Err(e) => {
                eprintln!("tickwire: columnarize {:?}: {e}", key.kind);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn flush_aged(&mut self, all: bool) {
        let due: Vec<BatchKey> = self
            .open
            .iter()
            .filter(|(_, o)| {
                !o.builder.is_empty() && (all || o.since.elapsed() >= self.flush.max_age)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.flush_key(k);
        }
    }

    /// Runs until every producer has gone and the queue is empty, then flushes everything.
    pub fn run(mut self) {
        let tick = (self.flush.max_age / 4).max(Duration::from_millis(1));
        let mut last_check = Instant::now();
        loop {
            match self.rx.recv_timeout(tick) {
                Ok(m) => {
                    self.take(m);
                    // Drain what is there without waiting, in one go.
                    for _ in 0..4096 {
                        match self.rx.try_recv() {
                            Ok(m) => self.take(m),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_check.elapsed() >= tick {
                self.flush_aged(false);
                self.publish_hists();
                if let Some(p) = &mut self.publisher {
                    p.poll_subscriptions();
                }
                last_check = Instant::now();
            }
        }
        self.flush_aged(true);
        self.publish_hists();
    }

    fn publish_hists(&self) {
        self.counters.recv_to_publish.publish(&self.hists.publish);
        self.counters.recv_to_flush.publish(&self.hists.flush);
        self.counters.exchange_lag.publish(&self.hists.exchange);
    }
}
