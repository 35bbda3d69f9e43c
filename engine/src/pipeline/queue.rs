//! The bounded queue from the connection tasks to the pipeline thread, and its counters.
//!
//! A `crossbeam-channel` bounded (array) channel of [`Msg`]. Every producer states what it does
//! when the queue is full ([`FullPolicy`]); every record not taken is counted in
//! [`QueueCounters::dropped`]. There is no unbounded queue on the data path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tickwire_codecs::binance::DecodeStats;
use tickwire_codecs::record::{Kind, Level, Record};

/// What a producer does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait up to `max_wait` for room, then drop the record and count it.
    Block {
        /// The bound on the wait.
        max_wait: Duration,
    },
    /// Drop the record at once and count it.
    DropNewest,
}

impl Default for FullPolicy {
    fn default() -> Self {
        FullPolicy::Block {
            max_wait: Duration::from_millis(250),
        }
    }
}

/// One record on its way to the pipeline. Depth records carry their levels, re-based to
/// start at 0.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The record.
    pub rec: Record,
    /// Its levels (depth kinds only).
    pub levels: Option<Box<[Level]>>,
    /// Its position in a replayable source (a JetStream writer: stream sequence << 16 |
    /// index in the message); 0 for a live source.
    pub pos: u64,
}

/// What goes through the queue: the records of one or more frames, in order. A source
/// sends the records of every frame already received as one bundle (at most [`MAX_BUNDLE`]),
/// so under load one channel operation carries hundreds of records, and at low rates a bundle
/// is one frame's records and waits for nothing.
pub type Bundle = Vec<Msg>;

/// A bundle past the pipeline thread, shared by the stages that only read it (columnarize,
/// the NATS sink): handing it on moves a pointer instead of copying its records (256 bytes
/// each).
pub type SharedBundle = std::sync::Arc<Bundle>;

/// The most records a source puts in one bundle.
pub const MAX_BUNDLE: usize = 32;

impl Msg {
    /// Copies `rec` and the levels it indexes in `arena`.
    pub fn new(rec: Record, arena: &[Level]) -> Msg {
        let mut rec = rec;
        let levels = rec.levels().map(|r| {
            let mut v = Vec::with_capacity((r.bids + r.asks) as usize);
            v.extend_from_slice(r.bids(arena));
            v.extend_from_slice(r.asks(arena));
            let rebased = tickwire_codecs::record::LevelRange { start: 0, ..r };
            match &mut rec {
                Record::DepthUpdate(d) => d.levels = rebased,
                Record::DepthSnapshot(d) => d.levels = rebased,
                _ => {}
            }
            v.into_boxed_slice()
        });
        Msg {
            rec,
            levels,
            pos: 0,
        }
    }

    /// The levels (empty for kinds without).
    pub fn levels(&self) -> &[Level] {
        self.levels.as_deref().unwrap_or(&[])
    }
}

/// Counters of the sources and the queue.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Frames received from the sockets.
    pub frames: AtomicU64,
    /// Frames the decoder refused.
    pub decode_errors: AtomicU64,
    /// Frames of unknown event types.
    pub unknown: AtomicU64,
    /// Control frames.
    pub controls: AtomicU64,
    /// Records decoded, by kind.
    pub decoded: [AtomicU64; Kind::COUNT],
    /// Records put on the queue.
    pub pushed: AtomicU64,
    /// Records dropped because the queue stayed full.
    pub dropped: AtomicU64,
    /// Sequence gaps detected, by [`Kind::index`] of the stream they are in.
    pub gaps: [AtomicU64; Kind::COUNT],
    /// Reconnects after a connection closed or failed.
    pub reconnects: AtomicU64,
    /// Connection attempts that failed.
    pub connect_errors: AtomicU64,
    /// Connection attempts that waited for their host's attempt window (240 in 5 minutes).
    pub connect_waits: AtomicU64,
    /// Frames refused unread for exceeding [`crate::source::MAX_FRAME`] (also in
    /// `decode_errors`).
    pub oversized: AtomicU64,
    /// Reconnects because a connection went silent (the idle watchdog).
    pub idle_reconnects: AtomicU64,
    /// Control requests sent (SUBSCRIBE, LIST_SUBSCRIPTIONS).
    pub control_requests: AtomicU64,
    /// Control requests the server answered with an error, or whose subscription list did
    /// not match.
    pub control_errors: AtomicU64,
    /// REST depth snapshots requested.
    pub rest_requests: AtomicU64,
    /// REST depth snapshots that failed (HTTP error, 429, unreadable), each retried.
    pub rest_errors: AtomicU64,
    /// Order books made live from a snapshot (the first sync and every resync).
    pub books_synced: AtomicU64,
    /// Order books discarded because their diffs broke (then resynced).
    pub resyncs: AtomicU64,
    /// Order books not live now (waiting for a snapshot that bridges their diffs): a gauge.
    pub books_unsynced: AtomicU64,
    /// Connections replaced ahead of Binance's 24 h close.
    pub rotations: AtomicU64,
    /// Records dropped as duplicates of a rotation's overlap (not losses).
    pub duplicates: AtomicU64,
    /// Rotations whose old connection was stopped before it had read as far as the new
    /// connection's first record (what it had not read is lost).
    pub handover_timeouts: AtomicU64,
}

impl QueueCounters {
    /// Adds what a decoder counted between `before` and `now`.
    pub fn publish_decode(&self, before: &DecodeStats, now: &DecodeStats) {
        for i in 0..Kind::COUNT {
            self.decoded[i].fetch_add(now.records[i] - before.records[i], Ordering::Relaxed);
        }
        self.unknown
            .fetch_add(now.unknown - before.unknown, Ordering::Relaxed);
        self.controls
            .fetch_add(now.controls - before.controls, Ordering::Relaxed);
    }
}
