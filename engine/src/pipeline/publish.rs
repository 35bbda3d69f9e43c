//! ZMQ PUB republish of every record, as it is decoded.
//!
//! Multipart messages `[topic, payload]`, topic `<kind>.<market>.<SYMBOL>` (prefix subscriptions:
//! `trade.` gets every trade). Payload encodings:
//!
//! - `binary` (default), little-endian, version 1:
//!
//!   | offset | size | field |
//!   |---|---|---|
//!   | 0 | 1 | version = 1 |
//!   | 1 | 1 | kind code (1 trade .. 10 gap, 11 instrument, 12 open_interest, 13 long_short_ratio) |
//!   | 2 | 1 | market code (0 spot, 1 usdm) |
//!   | 3 | 1 | reserved, 0 |
//!   | 4 | 4 | record size in bytes (u32) |
//!   | 8 | 8 | sequence number of this topic (u64, from 1) |
//!   | 16 | size | the record's `repr(C)` bytes (layout in the README) |
//!   | 16+size | 32 × n | depth kinds: the n = bids + asks levels, bids first |
//!
//! - `json`: the decode JSON object of the record.
//!
//! Slow subscribers never slow the engine: the socket is an XPUB with `ZMQ_XPUB_NODROP` and a
//! send high-water mark, and every send is non-blocking. When a subscriber's queue is full,
//! libzmq refuses the message (`EAGAIN`) instead of dropping it silently, and the publisher
//! counts it in [`PubCounters::dropped`]. Subscribers see such a drop as a hole in the topic's
//! sequence numbers.

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tickwire_codecs::json::write_record;
use tickwire_codecs::record::{Header, Kind, Level, LevelRange, Market, Record, SymbolId};

/// Payload encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Fixed little-endian layout (see the module docs).
    Binary,
    /// The decode JSON.
    Json,
}

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct PubConfig {
    /// Bind address, e.g. `tcp://127.0.0.1:5556`.
    pub bind: String,
    /// Payload encoding.
    pub encoding: Encoding,
    /// Messages a subscriber may have queued before further ones are refused and counted.
    pub sndhwm: i32,
    /// Also publish every flushed batch as an Arrow IPC stream on `batch.<kind>.<market>`.
    pub batches: bool,
    /// The bind may reach other machines (PUB has no authentication: an explicit choice).
    pub public: bool,
}

impl PubConfig {
    /// Defaults: `tcp://127.0.0.1:5556`, binary, HWM 100,000.
    pub fn new(bind: impl Into<String>) -> Self {
        PubConfig {
            bind: bind.into(),
            encoding: Encoding::Binary,
            sndhwm: 100_000,
            batches: false,
            public: false,
        }
    }
}

/// Publisher counters.
#[derive(Debug, Default)]
pub struct PubCounters {
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages refused by a full subscriber queue (counted, never silent).
    pub dropped: AtomicU64,
    /// Send errors other than a full queue.
    pub errors: AtomicU64,
    /// Arrow IPC batch messages sent (`batch.*` topics; not in `sent`).
    pub batches_sent: AtomicU64,
    /// Arrow IPC batch messages not sent: refused by a full subscriber queue, or not handed
    /// over because the pipeline thread was a whole queue of batches behind.
    pub batches_dropped: AtomicU64,
}

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
#[error("zmq {what} {addr}: {source}")]
pub struct PubError {
    what: &'static str,
    addr: String,
    #[source]
    source: zmq::Error,
}

/// The version byte of the binary layout.
pub const BINARY_VERSION: u8 = 1;

/// Owns the PUB socket. The engine shares it between the source tasks and the pipeline thread
/// through a [`SharedPublisher`]; tests and benches drive it directly.
pub struct Publisher {
    sock: zmq::Socket,
    _ctx: zmq::Context,
    encoding: Encoding,
    /// Per market (spot, USD-M): each market's connection writes only its own lane, so the
    /// two source threads do not pass the topic table's and the buffer's cache lines back and
    /// forth with every record.
    lanes: [Lane; 2],
    counters: std::sync::Arc<PubCounters>,
    batches: bool,
}

/// The topics and scratch buffer of one market, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Lane {
    /// (kind, market, symbol) -> topic and its last sequence number (the market stays in the
    /// key: a lane is a cache-line choice, not the topic's identity).
    topics: FxHashMap<(u8, u8, SymbolId), (Vec<u8>, u64)>,
    buf: Vec<u8>,
}

/// The lane of a record's market (0 spot, 1 USD-M).
#[inline]
fn lane(market: u8) -> usize {
    usize::from(market == Market::Usdm as u8)
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("encoding", &self.encoding)
            .field(
                "topics",
                &self.lanes.iter().map(|l| l.topics.len()).sum::<usize>(),
            )
            .finish()
    }
}

/// Sets `ZMQ_XPUB_NODROP`, which the `zmq` crate has no setter for.
#[allow(unsafe_code)]
fn set_xpub_nodrop(sock: &mut zmq::Socket) -> Result<(), zmq::Error> {
    let on: std::os::raw::c_int = 1;
    // SAFETY: `sock.as_mut_ptr()` is the live libzmq socket owned by `sock` (borrowed mutably
    // for the call, so no other thread uses it); the option value points to a c_int on our
    // stack that outlives the call, and the length passed is exactly its size, as
    // zmq_setsockopt(3) requires for the integer option ZMQ_XPUB_NODROP.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            sock.as_mut_ptr(),
            zmq_sys::ZMQ_XPUB_NODROP as std::os::raw::c_int,
            (&on as *const std::os::raw::c_int).cast(),
            std::mem::size_of::<std::os::raw::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(zmq::Error::from_raw(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    }
}

impl Publisher {
    /// Binds the socket.
    pub fn bind(
        cfg: &PubConfig,
        counters: std::sync::Arc<PubCounters>,
    ) -> Result<Publisher, PubError> {
        let err = |what, source| PubError {
            what,
            addr: cfg.bind.clone(),
            source,
        };
        let ctx = zmq::Context::new();
        let mut sock = ctx.socket(zmq::XPUB).map_err(|e| err("socket", e))?;
        sock.set_sndhwm(cfg.sndhwm).map_err(|e| err("sndhwm", e))?;
        sock.set_linger(1000).map_err(|e| err("linger", e))?;
        set_xpub_nodrop(&mut sock).map_err(|e| err("xpub_nodrop", e))?;
        // Every subscription reaches the application, also a second one to the same prefix,
        // so `wait_subscribers` can count subscribers.
        sock.set_xpub_verbose(true)
            .map_err(|e| err("xpub_verbose", e))?;
        sock.bind(&cfg.bind).map_err(|e| err("bind", e))?;
        Ok(Publisher {
            sock,
            _ctx: ctx,
            encoding: cfg.encoding,
            lanes: Default::default(),
            counters,
            batches: cfg.batches,
        })
    }

    /// Reads pending subscription messages (an XPUB delivers them to the application);
    /// returns how many subscribe messages there were.
    pub fn poll_subscriptions(&mut self) -> usize {
        let mut n = 0;
        while let Ok(m) = self.sock.recv_bytes(zmq::DONTWAIT) {
            n += usize::from(m.first() == Some(&1));
        }
        n
    }

    /// Waits until `n` subscriptions have arrived or `timeout` passed; returns how many came.
    /// Lets a test or a recorder attach before the first record is published.
    pub fn wait_subscribers(&mut self, n: usize, timeout: std::time::Duration) -> usize {
        let start = std::time::Instant::now();
        let mut seen = 0;
        while seen < n && start.elapsed() < timeout {
            seen += self.poll_subscriptions();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        seen
    }

    /// The bound endpoint (with the port chosen, when bound to `:*`).
    pub fn endpoint(&self) -> Option<String> {
        self.sock.get_last_endpoint().ok().and_then(Result::ok)
    }

    /// Sends one flushed batch, already encoded by [`encode_batch`], on its topic; never
    /// blocks (a full subscriber: counted in `batches_dropped`).
    pub fn send_batch(&mut self, topic: &str, payload: &[u8]) {
        let r = self
            .sock
            .send(topic.as_bytes(), zmq::DONTWAIT | zmq::SNDMORE)
            .and_then(|()| self.sock.send(payload, zmq::DONTWAIT));
        match r {
            Ok(()) => {
                self.counters.batches_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(zmq::Error::EAGAIN) => {
                self.counters
                    .batches_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Its counters.
    pub fn counters(&self) -> std::sync::Arc<PubCounters> {
        self.counters.clone()
    }

    /// Whether batches are published too.
    pub fn batches(&self) -> bool {
        self.batches
    }

    /// Publishes a ready-made message (control and probe messages); never blocks.
    pub fn publish_raw(&mut self, topic: &[u8], payload: &[u8]) {
        let r = self
            .sock
            .send(topic, zmq::DONTWAIT | zmq::SNDMORE)
            .and_then(|()| self.sock.send(payload, zmq::DONTWAIT));
        self.count(r);
    }

    fn count(&self, r: Result<(), zmq::Error>) {
        match r {
            Ok(()) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(zmq::Error::EAGAIN) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Publishes one record; never blocks.
    pub fn publish(&mut self, rec: &Record, levels: &[Level], symbol: &str) {
        let h = rec.header();
        let Lane { topics, buf } = &mut self.lanes[lane(h.market)];
        let (topic, seq) = topics
            .entry((h.kind, h.market, h.symbol))
            .or_insert_with(|| {
                let kind = Kind::from_code(h.kind).map_or("unknown", Kind::as_str);
                let market = Market::from_code(h.market).map_or("unknown", Market::as_str);
                (format!("{kind}.{market}.{symbol}").into_bytes(), 0)
            });
        *seq += 1;
        buf.clear();
        match self.encoding {
            Encoding::Binary => encode_binary(buf, rec, levels, *seq),
            Encoding::Json => write_record(buf, rec, symbol, levels),
        }
        let r = self
            .sock
            .send(&topic[..], zmq::DONTWAIT | zmq::SNDMORE)
            .and_then(|()| self.sock.send(&buf[..], zmq::DONTWAIT));
        self.count(r);
    }
}

/// Encodes one flushed batch as an Arrow IPC stream into `out` (cleared first); returns its
/// topic, `batch.<kind>.<market>`.
pub fn encode_batch(
    b: &tickwire_sinks::Batch,
    out: &mut Vec<u8>,
) -> Result<String, arrow_schema::ArrowError> {
    out.clear();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut *out, &b.data.schema())?;
    w.write(&b.data)?;
    w.finish()?;
    Ok(format!(
        "batch.{}.{}",
        b.key.kind.as_str(),
        b.key.market.as_str()
    ))
}

/// The publisher as the engine runs it, shared by the source tasks and the pipeline thread.
///
/// A source task publishes the records of each frame right after decoding it, on its own
/// thread: no queue and no thread wake-up lie between a frame's arrival and its records'
/// `zmq_send` (which only hands the message to libzmq's I/O thread). The pipeline thread
/// sends the Arrow IPC batches (encoded before the lock is taken), reads subscription messages
/// and publishes the latency histograms. One `Mutex`, held while one frame's records are
/// sent (about 100 ns a record); contended only when two connections publish at once. What a
/// record's publishing writes besides the socket (topic table, encode buffer, histograms) is
/// kept per market lane, so the spot and USD-M connections do not write the same cache lines.
pub struct SharedPublisher {
    inner: std::sync::Mutex<Inline>,
    counters: std::sync::Arc<PubCounters>,
    batches: bool,
}

struct Inline {
    publisher: Publisher,
    names: crate::pipeline::names::Names,
    /// Latencies by market lane (see [`Lane`]), merged when published.
    lat: [Latency; 2],
}

/// One market's latency histograms, on cache lines of their own.
#[repr(align(128))]
#[derive(Default)]
struct Latency {
    /// Receive to publish, µs, per record.
    publish: crate::pipeline::metrics::Histogram,
    /// Exchange event time to publish, µs, per record with an event time.
    exchange: crate::pipeline::metrics::Histogram,
}

impl std::fmt::Debug for SharedPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPublisher")
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

impl SharedPublisher {
    /// Shares `publisher`; symbol names come from `symbols`.
    pub fn new(
        publisher: Publisher,
        symbols: std::sync::Arc<tickwire_codecs::symbol::SymbolTable>,
    ) -> Self {
        SharedPublisher {
            counters: publisher.counters(),
            batches: publisher.batches(),
            inner: std::sync::Mutex::new(Inline {
                publisher,
                names: crate::pipeline::names::Names::new(symbols),
                lat: Default::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inline> {
        // A panic elsewhere while publishing leaves nothing half-done that matters here.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `msgs` now, recording receive -> publish and exchange -> publish latency;
    /// never blocks on a subscriber.
    pub fn publish(&self, msgs: &[crate::pipeline::queue::Msg]) {
        if msgs.is_empty() {
            return;
        }
        let mut g = self.lock();
        let Inline {
            publisher,
            names,
            lat,
        } = &mut *g;
        for msg in msgs {
            let h = *msg.rec.header();
            publisher.publish(&msg.rec, msg.levels(), names.get(h.symbol));
            let now = crate::source::clock::now_ns();
            let l = &mut lat[lane(h.market)];
            l.publish.record(((now - h.recv_time) / 1000).max(0) as u64);
            if h.event_time != tickwire_codecs::record::NULL_I64 {
                l.exchange.record((now / 1000 - h.event_time).max(0) as u64);
            }
        }
    }

    /// Publishes one flushed batch as Arrow IPC on `batch.<kind>.<market>`; `buf` is scratch
    /// space. Encoding happens before the lock is taken.
    pub fn publish_batch(&self, b: &tickwire_sinks::Batch, buf: &mut Vec<u8>) {
        match encode_batch(b, buf) {
            Ok(topic) => self.lock().publisher.send_batch(&topic, buf),
            Err(e) => {
                tracing::warn!(
                    "zmq batch {}.{}: {e}",
                    b.key.kind.as_str(),
                    b.key.market.as_str()
                );
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reads pending subscription messages and publishes the latency histograms into
    /// `publish` and `exchange`.
    pub fn housekeeping(
        &self,
        publish: &crate::pipeline::metrics::Shared,
        exchange: &crate::pipeline::metrics::Shared,
    ) {
        let mut g = self.lock();
        g.publisher.poll_subscriptions();
        let [a, b] = &g.lat;
        publish.publish(&a.publish.merged(&b.publish));
        exchange.publish(&a.exchange.merged(&b.exchange));
    }

    /// Its counters.
    pub fn counters(&self) -> std::sync::Arc<PubCounters> {
        self.counters.clone()
    }

    /// Whether batches are published too.
    pub fn batches(&self) -> bool {
        self.batches
    }
}

/// Appends the binary payload of `rec` (see the module docs).
///
/// One reserve, then each kind's header and body copied at its fixed size (so the copies are
/// inlined moves, not calls): the NATS sink encodes every record it sends with this.
#[inline]
pub fn encode_binary(out: &mut Vec<u8>, rec: &Record, levels: &[Level], seq: u64) {
    #[inline(always)]
    fn put<T: bytemuck::Pod>(out: &mut Vec<u8>, r: &T, h: &Header, seq: u64, extra: usize) {
        let size = std::mem::size_of::<T>();
        let mut head = [0u8; 16];
        head[0] = BINARY_VERSION;
        head[1] = h.kind;
        head[2] = h.market;
        head[4..8].copy_from_slice(&(size as u32).to_le_bytes());
        head[8..16].copy_from_slice(&seq.to_le_bytes());
        out.reserve(16 + size + extra);
        out.extend_from_slice(&head);
        out.extend_from_slice(bytemuck::bytes_of(r));
    }
    #[inline(always)]
    fn depth(out: &mut Vec<u8>, r: LevelRange, levels: &[Level]) {
        out.extend_from_slice(bytemuck::cast_slice(r.bids(levels)));
        out.extend_from_slice(bytemuck::cast_slice(r.asks(levels)));
    }
    let level_bytes = |r: LevelRange| (r.bids as usize + r.asks as usize) * size_of::<Level>();
    match rec {
        Record::Trade(r) => put(out, r, &r.header, seq, 0),
        Record::AggTrade(r) => put(out, r, &r.header, seq, 0),
        Record::BookTicker(r) => put(out, r, &r.header, seq, 0),
        Record::DepthUpdate(r) => {
            put(out, r, &r.header, seq, level_bytes(r.levels));
            depth(out, r.levels, levels);
        }
        Record::DepthSnapshot(r) => {
            put(out, r, &r.header, seq, level_bytes(r.levels));
            depth(out, r.levels, levels);
        }
        Record::Kline(r) => put(out, r, &r.header, seq, 0),
        Record::MarkPrice(r) => put(out, r, &r.header, seq, 0),
        Record::Liquidation(r) => put(out, r, &r.header, seq, 0),
        Record::Ticker(r) => put(out, r, &r.header, seq, 0),
        Record::Gap(r) => put(out, r, &r.header, seq, 0),
        Record::Instrument(r) => put(out, r, &r.header, seq, 0),
        Record::OpenInterest(r) => put(out, r, &r.header, seq, 0),
        Record::LongShortRatio(r) => put(out, r, &r.header, seq, 0),
    }
}

/// Why a binary payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Shorter than its header says.
    #[error("payload truncated")]
    Truncated,
    /// A layout version this build does not know.
    #[error("unknown payload version {0}")]
    Version(u8),
    /// An unknown kind code, or a size that is not the kind's.
    #[error("unknown kind {0} or wrong record size")]
    Kind(u8),
}

fn read<T: bytemuck::AnyBitPattern>(b: &[u8]) -> T {
    bytemuck::pod_read_unaligned(b)
}

/// Reads a binary payload back: the record, its levels (depth kinds) and the sequence number.
pub fn decode_binary(p: &[u8]) -> Result<(Record, Vec<Level>, u64), PayloadError> {
    use tickwire_codecs::record::*;
    if p.len() < 16 {
        return Err(PayloadError::Truncated);
    }
    if p[0] != BINARY_VERSION {
        return Err(PayloadError::Version(p[0]));
    }
    let kind = Kind::from_code(p[1]).ok_or(PayloadError::Kind(p[1]))?;
    let size = u32::from_le_bytes([p[4], p[5], p[6], p[7]]) as usize;
    let seq = u64::from_le_bytes(p[8..16].try_into().map_err(|_| PayloadError::Truncated)?);
    if size != RECORD_SIZES[kind.index()] {
        return Err(PayloadError::Kind(p[1]));
    }
    let body = p.get(16..16 + size).ok_or(PayloadError::Truncated)?;
    let rec = match kind {
        Kind::Trade => Record::Trade(read(body)),
        Kind::AggTrade => Record::AggTrade(read(body)),
        Kind::BookTicker => Record::BookTicker(read(body)),
        Kind::DepthUpdate => Record::DepthUpdate(read(body)),
        Kind::DepthSnapshot => Record::DepthSnapshot(read(body)),
        Kind::Kline => Record::Kline(read(body)),
        Kind::MarkPrice => Record::MarkPrice(read(body)),
        Kind::Liquidation => Record::Liquidation(read(body)),
        Kind::Ticker => Record::Ticker(read(body)),
        Kind::Gap => Record::Gap(read(body)),
        Kind::Instrument => Record::Instrument(read(body)),
        Kind::OpenInterest => Record::OpenInterest(read(body)),
        Kind::LongShortRatio => Record::LongShortRatio(read(body)),
    };
    let mut levels = Vec::new();
    if let Some(r) = rec.levels() {
        let n = (r.bids + r.asks) as usize;
        let lv = p
            .get(16 + size..16 + size + n * 32)
            .ok_or(PayloadError::Truncated)?;
        levels.extend(lv.chunks_exact(32).map(read::<Level>));
    }
    Ok((rec, levels, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tickwire_codecs::record::{Header, Trade};

    fn trade(i: i64) -> Record {
        Record::Trade(Trade {
            header: Header::new(Kind::Trade, Market::Spot, SymbolId(0), 1, 2),
            trade_id: i,
            ..Trade::default()
        })
    }

    #[test]
    fn binary_layout() {
        let mut v = Vec::new();
        encode_binary(&mut v, &trade(7), &[], 3);
        assert_eq!(v.len(), 16 + 80);
        assert_eq!(&v[..4], &[1, 1, 0, 0]);
        assert_eq!(u32::from_le_bytes(v[4..8].try_into().expect("4")), 80);
        assert_eq!(u64::from_le_bytes(v[8..16].try_into().expect("8")), 3);
        // trade_id at record offset 24
        assert_eq!(
            i64::from_le_bytes(v[16 + 24..16 + 32].try_into().expect("8")),
            7
        );
    }

    #[test]
    fn binary_round_trips_with_levels() {
        use tickwire_codecs::binance::Decoder;
        use tickwire_codecs::symbol::SymbolTable;
        let mut d = Decoder::new(Market::Usdm, SymbolTable::new());
        let mut v = Vec::new();
        let mut got = None;
        d.decode(
            br#"{"e":"depthUpdate","E":1,"T":2,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1.5","2"],["1.4","0"]],"a":[["1.6","3"]]}"#,
            9,
            &mut |r: &Record, lv: &[Level]| {
                encode_binary(&mut v, r, lv, 5);
                got = Some((*r, lv.to_vec()));
            },
        )
        .expect("decodes");
        let (rec, levels, seq) = decode_binary(&v).expect("reads back");
        let (want, wl) = got.expect("record");
        assert_eq!((rec, seq), (want, 5));
        assert_eq!(levels, wl);
        assert_eq!(
            decode_binary(&v[..v.len() - 1]),
            Err(PayloadError::Truncated)
        );
        let mut bad = v.clone();
        bad[0] = 9;
        assert_eq!(decode_binary(&bad), Err(PayloadError::Version(9)));
    }

    /// Every kind's record and levels come back from its binary payload as they went in: every
    /// sample frame of both markets (the shared fixtures), encoded one after another into one
    /// buffer, as the NATS sink packs them into a message.
    #[test]
    fn binary_round_trips_every_sample_frame() {
        use tickwire_codecs::binance::Decoder;
        use tickwire_codecs::symbol::SymbolTable;
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/binance");
        let mut kinds = std::collections::BTreeSet::new();
        for (file, market) in [("spot.jsonl", Market::Spot), ("usdm.jsonl", Market::Usdm)] {
            let text = std::fs::read_to_string(dir.join(file)).expect("fixture");
            let mut d = Decoder::new(market, SymbolTable::new());
            let mut buf = Vec::new();
            let mut want = Vec::new();
            for line in text.lines().filter(|l| !l.is_empty()) {
                let _ = d.decode(line.as_bytes(), 9, &mut |r: &Record, lv: &[Level]| {
                    let seq = want.len() as u64 + 1;
                    encode_binary(&mut buf, r, lv, seq);
                    let mine = r.levels().map(|x| {
                        let mut v = x.bids(lv).to_vec();
                        v.extend_from_slice(x.asks(lv));
                        v
                    });
                    want.push((*r, mine.unwrap_or_default(), seq));
                });
            }
            let mut at = 0;
            for (rec, levels, seq) in &want {
                let (got, got_levels, got_seq) = decode_binary(&buf[at..]).expect("reads back");
                assert_eq!(&got, rec);
                assert_eq!((&got_levels, got_seq), (levels, *seq));
                at += 16 + rec.as_bytes().len() + levels.len() * size_of::<Level>();
                kinds.insert(rec.kind().index());
            }
            assert_eq!(at, buf.len());
        }
        assert!(kinds.len() >= 8, "kinds seen: {kinds:?}");
    }

    /// A subscriber that never reads: the publisher keeps going and counts every refused message.
    #[test]
    fn a_stalled_subscriber_is_counted_not_blocking() {
        let counters = Arc::new(PubCounters::default());
        let mut cfg = PubConfig::new("tcp://127.0.0.1:*");
        cfg.sndhwm = 10;
        let mut p = Publisher::bind(&cfg, counters.clone()).expect("bind");
        let ep = p.sock.get_last_endpoint().expect("endpoint").expect("utf8");
        let ctx = zmq::Context::new();
        let sub = ctx.socket(zmq::SUB).expect("sub");
        sub.set_rcvhwm(10).expect("rcvhwm");
        sub.connect(&ep).expect("connect");
        sub.set_subscribe(b"trade.").expect("subscribe");
        // Wait (bounded) until the subscription has reached the publisher.
        let mut subscribed = false;
        for _ in 0..500 {
            if p.sock.recv_bytes(zmq::DONTWAIT).is_ok() {
                subscribed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(subscribed, "subscription never arrived");
        let n = 200_000u64;
        for i in 0..n {
            p.publish(&trade(i as i64), &[], "BTCUSDT");
        }
        let sent = counters.sent.load(Ordering::Relaxed);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        assert_eq!(sent + dropped, n, "every message is sent or counted");
        assert!(dropped > 0, "a stalled subscriber must cause counted drops");
        // The subscriber gets an unbroken prefix of the sequence.
        let topic = sub.recv_bytes(0).expect("topic");
        assert_eq!(topic, b"trade.spot.BTCUSDT");
        let payload = sub.recv_bytes(0).expect("payload");
        assert_eq!(u64::from_le_bytes(payload[8..16].try_into().expect("8")), 1);
    }
}
