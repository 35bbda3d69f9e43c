//! The writer's side: a durable JetStream pull consumer into the pipeline (`[[sources]] type =
//! "nats"`), acknowledged only once every store sink keeps the rows, stored exactly once
//! across a kill -9.
//!
//! How exactly once holds:
//!
//! - Every record gets a position, `stream sequence << 16 | index in its message`, and the
//!   writer reads the stream strictly in order (the consumer is created at start to deliver
//!   from the first unacknowledged message; redeliveries within a run are skipped, the
//!   records being in the pipeline already).
//! - The columnarize stage cuts batches only between messages, and all open batches at once
//!   (a "generation"); a batch's id is `2^62 | the position of its last row`. Positions are
//!   unique, so the id is the batch's identity in every store (ClickHouse's `_batch` column,
//!   PostgreSQL's ledger, the Parquet footer, the spill files).
//! - The consumer is acknowledged (AckPolicy::All) up to the end of the newest generation
//!   that every store sink keeps ([`Tracker`]): no batch straddles that point, so a restart
//!   reads from a clean cut.
//! - At start, every sink says which ids at or above the restart point it holds (in full or
//!   in part); the columnarize stage cuts each key's batch again exactly at those positions,
//!   which gives the same rows under the same id, and the sinks skip (or complete, for
//!   PostgreSQL's parts) what they have. Past the last such position, generations resume.

use crate::pipeline::queue::{Bundle, Msg};
use async_nats::jetstream;
use futures_util::StreamExt;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tickwire_codecs::symbol::SymbolTable;

/// Batch ids of positions carry this bit (the engine's own ids are hashes below 2^63 and
/// collide with one of these with negligible odds).
pub const ID_FLAG: u64 = 1 << 62;

/// The position of record `index` of message `seq`.
pub fn position(seq: u64, index: usize) -> u64 {
    (seq << 16) | index as u64
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub struct NatsSourceConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The stream.
    pub stream: String,
    /// The durable consumer's name.
    pub durable: String,
    /// Subject filter (e.g. `tickwire.trade.>`; empty: every subject).
    pub filter: String,
    /// Subject prefix the collectors use.
    pub prefix: String,
    /// Messages delivered and not acknowledged at most (the consumer's max_ack_pending).
    pub max_ack_pending: i64,
    /// Redelivery after this long without an ack (longer than a Parquet file stays open).
    pub ack_wait: Duration,
}

/// What the writer has done.
#[derive(Debug, Default)]
pub struct WriterCounters {
    /// Messages read.
    pub messages: AtomicU64,
    /// Records in them sent down the pipeline.
    pub records: AtomicU64,
    /// Messages delivered again within the run (already taken): skipped.
    pub redelivered: AtomicU64,
    /// Messages that could not be read (subject or payload): counted, acknowledged, logged.
    pub malformed: AtomicU64,
    /// The stream sequence acknowledged (everything up to it is kept by every sink).
    pub acked: AtomicU64,
    /// Where this run started reading (the consumer's ack floor + 1).
    pub start: AtomicU64,
    /// Consumer errors (each retried).
    pub errors: AtomicU64,
}

/// Which generations every sink keeps: the ack floor.
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<TrackerState>,
    /// Sinks that tell (store sinks and Parquet).
    sinks: u64,
}

#[derive(Debug, Default)]
struct TrackerState {
    /// Generation being filled (its end is set at the next cut).
    current: u64,
    /// Closed and open generations, oldest first: (number, end sequence or 0, outstanding
    /// sink acknowledgements).
    gens: VecDeque<(u64, u64, u64)>,
    /// Batch id -> its generation.
    batches: FxHashMap<u64, u64>,
    /// The newest sequence every sink keeps.
    floor: u64,
}

impl Tracker {
    /// A tracker for `sinks` sinks, starting after sequence `start - 1`.
    pub fn new(sinks: usize, start: u64) -> Self {
        Tracker {
            inner: Mutex::new(TrackerState {
                floor: start.saturating_sub(1),
                ..Default::default()
            }),
            sinks: sinks as u64,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A batch of the current generation was flushed to every sink.
    pub fn flushed(&self, id: u64) {
        let mut s = self.state();
        let g = s.current;
        match s.gens.back_mut() {
            Some(last) if last.0 == g => last.2 += self.sinks,
            _ => s.gens.push_back((g, 0, self.sinks)),
        }
        s.batches.insert(id, g);
    }

    /// Every open batch was cut after message `end_seq`: the current generation closes.
    pub fn cut(&self, end_seq: u64) {
        let mut s = self.state();
        let g = s.current;
        match s.gens.back_mut() {
            Some(last) if last.0 == g => last.1 = end_seq,
            _ => s.gens.push_back((g, end_seq, 0)),
        }
        s.current += 1;
        s.advance();
    }

    /// The newest sequence every sink keeps.
    pub fn floor(&self) -> u64 {
        self.state().floor
    }
}

impl TrackerState {
    fn advance(&mut self) {
        while let Some(&(_, end, outstanding)) = self.gens.front() {
            if end == 0 || outstanding > 0 {
                break;
            }
            self.floor = self.floor.max(end);
            self.gens.pop_front();
        }
    }
}

impl tickwire_sinks::Committed for Tracker {
    fn committed(&self, id: u64) {
        let mut s = self.state();
        let Some(&g) = s.batches.get(&id) else {
            return;
        };
        if let Some(e) = s.gens.iter_mut().find(|e| e.0 == g) {
            e.2 = e.2.saturating_sub(1);
            if e.2 == 0 {
                s.batches.retain(|_, v| *v != g);
            }
        }
        s.advance();
    }
}

/// What a writer run starts from: the stream's consumer, reset to read from its ack floor.
pub struct Prepared {
    /// The consumer.
    pub consumer: jetstream::consumer::PullConsumer,
    /// The client (acks go out on it).
    pub client: async_nats::Client,
    /// The first stream sequence this run reads.
    pub start: u64,
    /// The stream's last sequence when the run started (what a backfill drains to).
    pub end: u64,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Connects and (re)creates the durable consumer so that it delivers, in order, from the
/// first message it has not acknowledged.
pub async fn prepare(cfg: &NatsSourceConfig) -> anyhow::Result<Prepared> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("tickwire writer {}", cfg.durable))
        .max_reconnects(None)
        .connect(cfg.url.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("nats {}: {e}", tickwire_sinks::redact(&cfg.url)))?;
    let js = jetstream::new(client.clone());
    let mut stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| anyhow::anyhow!("nats stream {}: {e}", cfg.stream))?;
    let end = stream
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("nats stream {}: {e}", cfg.stream))?
        .state
        .last_sequence;
    let floor = match stream.consumer_info(&cfg.durable).await {
        Ok(info) => {
            // A consumer this code created and nothing acknowledged since still starts where
            // it was told to: its ack floor reads 0 then.
            let created_at = match info.config.deliver_policy {
                jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence } => {
                    start_sequence.saturating_sub(1)
                }
                _ => 0,
            };
            let floor = info.ack_floor.stream_sequence.max(created_at);
            stream
                .delete_consumer(&cfg.durable)
                .await
                .map_err(|e| anyhow::anyhow!("nats consumer {}: {e}", cfg.durable))?;
            floor
        }
        Err(_) => 0,
    };
    let start = floor + 1;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(cfg.durable.clone()),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: jetstream::consumer::AckPolicy::All,
            ack_wait: cfg.ack_wait,
            max_ack_pending: cfg.max_ack_pending,
            filter_subject: cfg.filter.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("nats consumer {}: {e}", cfg.durable))?;
    Ok(Prepared {
        consumer,
        client,
        start,
        end,
    })
}

/// Acknowledges the consumer up to the tracker's floor.
#[derive(Debug)]
pub struct Acker {
    client: async_nats::Client,
    /// (stream sequence, reply subject) of each message read and not acknowledged, in order.
    delivered: Mutex<VecDeque<(u64, async_nats::Subject)>>,
    /// The ack floor.
    pub tracker: Arc<Tracker>,
    counters: Arc<WriterCounters>,
}

impl Acker {
    /// An acker on `client`.
    pub fn new(
        client: async_nats::Client,
        tracker: Arc<Tracker>,
        counters: Arc<WriterCounters>,
    ) -> Self {
        Acker {
            client,
            delivered: Mutex::new(VecDeque::new()),
            tracker,
            counters,
        }
    }

    fn delivered(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, async_nats::Subject)>> {
        self.delivered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one ack (AckPolicy::All: every message up to it) for the newest message at or
    /// below the floor.
    pub async fn ack(&self) {
        let floor = self.tracker.floor();
        let last = {
            let mut d = self.delivered();
            let mut last = None;
            while d.front().is_some_and(|(s, _)| *s <= floor) {
                last = d.pop_front();
            }
            last
        };
        if let Some((seq, reply)) = last {
            match self.client.publish(reply, "+ACK".into()).await {
                Ok(()) => {
                    let _ = self.client.flush().await;
                    self.counters.acked.fetch_max(seq, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("nats writer: ack {seq}: {e}");
                }
            }
        }
    }
}

/// Reads the consumer until `stop`, one bundle per message, into the pipeline's queue;
/// acknowledges every 100 ms what every sink keeps.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: NatsSourceConfig,
    consumer: jetstream::consumer::PullConsumer,
    acker: Arc<Acker>,
    symbols: Arc<SymbolTable>,
    tx: crossbeam_channel::Sender<Bundle>,
    counters: Arc<WriterCounters>,
    queue: Arc<crate::pipeline::queue::QueueCounters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_seq = counters.start.load(Ordering::Relaxed).saturating_sub(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut backoff = Duration::from_millis(100);
    'outer: loop {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("nats writer: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(Ok(msg)) => {
                        backoff = Duration::from_millis(100);
                        let Ok(info) = msg.info() else {
                            counters.malformed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let seq = info.stream_sequence;
                        if seq <= last_seq {
                            counters.redelivered.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        last_seq = seq;
                        counters.messages.fetch_add(1, Ordering::Relaxed);
                        let bundle = decode(&cfg.prefix, &msg.subject, &msg.payload, seq, &symbols);
                        match bundle {
                            Ok(b) => {
                                let n = b.len() as u64;
                                counters.records.fetch_add(n, Ordering::Relaxed);
                                queue.frames.fetch_add(1, Ordering::Relaxed);
                                queue.pushed.fetch_add(n, Ordering::Relaxed);
                                if let Some(reply) = msg.reply.clone() {
                                    acker.delivered().push_back((seq, reply));
                                }
                                // Blocks while the pipeline is behind: the stream holds the rest.
                                let tx = tx.clone();
                                let sent = tokio::task::block_in_place(move || tx.send(b));
                                if sent.is_err() {
                                    break 'outer;
                                }
                            }
                            Err(why) => {
                                counters.malformed.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!("nats writer: message {seq} on {}: {why}; skipped", msg.subject);
                                // An empty bundle still moves the columnarize stage past it.
                                if let Some(reply) = msg.reply.clone() {
                                    acker.delivered().push_back((seq, reply));
                                }
                                let tx = tx.clone();
                                let _ = tokio::task::block_in_place(move || tx.send(Vec::new()));
                            }
                        }
                    }
                    Some(Err(e)) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("nats writer: {e}");
                    }
                    None => continue 'outer,
                },
                _ = tick.tick() => acker.ack().await,
                _ = stop.changed() => break 'outer,
            }
        }
    }
    acker.ack().await;
}

/// A message's records, with their positions, symbols interned from the subject.
pub fn decode(
    prefix: &str,
    subject: &str,
    payload: &[u8],
    seq: u64,
    symbols: &SymbolTable,
) -> Result<Bundle, String> {
    let (_kind, market, symbol) = super::parse_subject(prefix, subject)
        .ok_or_else(|| format!("not a {prefix}.<kind>.<market>.<SYMBOL> subject"))?;
    let id = symbols
        .intern(symbol.as_bytes())
        .map_err(|e| format!("symbol {symbol}: {e}"))?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let (mut rec, levels, _seq) =
            crate::pipeline::publish::decode_binary(&payload[at..]).map_err(|e| e.to_string())?;
        let size = rec.as_bytes().len();
        at += 16 + size + levels.len() * 32;
        let h = rec.header_mut();
        if h.market != market as u8 {
            return Err("a record of another market than its subject's".into());
        }
        h.symbol = id;
        let mut m = Msg::new(rec, &levels);
        m.pos = position(seq, out.len());
        out.push(m);
        if out.len() > u16::MAX as usize {
            return Err("more than 65,535 records in one message".into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_sinks::Committed;

    #[test]
    fn the_floor_moves_only_past_generations_every_sink_keeps() {
        let t = Tracker::new(2, 1);
        assert_eq!(t.floor(), 0);
        let (a, b) = (ID_FLAG | position(3, 0), ID_FLAG | position(5, 1));
        t.flushed(a);
        t.flushed(b);
        t.cut(5);
        // Generation 2, still open.
        let c = ID_FLAG | position(9, 0);
        t.flushed(c);
        assert_eq!(t.floor(), 0);
        for (id, sink) in [(a, 0), (b, 0), (a, 1)] {
            t.committed(id);
            assert_eq!(t.floor(), 0, "after {id:x} in sink {sink}");
        }
        t.committed(b);
        assert_eq!(t.floor(), 5);
        // Kept by both sinks, but not closed: no further.
        t.committed(c);
        t.committed(c);
        assert_eq!(t.floor(), 5);
        t.cut(9);
        assert_eq!(t.floor(), 9);
        // An empty generation (nothing open at a tick) moves it to the last message.
        t.cut(12);
        assert_eq!(t.floor(), 12);
    }

    #[test]
    fn messages_decode_back_with_positions_and_the_subjects_symbol() {
        use tickwire_codecs::record::{Header, Kind, Market, Record, SymbolId, Trade};
        let mut payload = Vec::new();
        for i in 0..3u64 {
            let mut t: Trade = bytemuck::Zeroable::zeroed();
            t.header = Header::new(Kind::Trade, Market::Usdm, SymbolId(77), 1, 2);
            t.trade_id = 100 + i as i64;
            crate::pipeline::publish::encode_binary(&mut payload, &Record::Trade(t), &[], i + 1);
        }
        let symbols = SymbolTable::new();
        let b = decode(
            "tickwire",
            "tickwire.trade.usdm.BTCUSDT",
            &payload,
            42,
            &symbols,
        )
        .expect("decodes");
        assert_eq!(b.len(), 3);
        let id = symbols.get("BTCUSDT").expect("interned");
        for (i, m) in b.iter().enumerate() {
            assert_eq!(m.pos, position(42, i));
            assert_eq!(m.rec.header().symbol, id);
        }
        assert!(decode(
            "tickwire",
            "tickwire.trade.spot.BTCUSDT",
            &payload,
            1,
            &symbols
        )
        .is_err());
        assert!(decode("tickwire", "other.trade.usdm.X", &payload, 1, &symbols).is_err());
        assert!(decode(
            "tickwire",
            "tickwire.trade.usdm.X",
            &payload[..20],
            1,
            &symbols
        )
        .is_err());
    }
}
