//! # tickwire-sinks
//!
//! Where flushed batches go. Every sink implements [`Sink`]: Arrow batches in (shared, never
//! copied), acknowledgements out (its [`SinkCounters`]), typed errors, and retries and
//! back-pressure owned by the sink itself. The engine runs each sink on a thread of its own
//! behind a bounded queue.
//!
//! - [`parquet`]: Parquet files, the embedded default that needs no server.
//! - [`clickhouse`]: ClickHouse tables, Native inserts from Arrow.
//! - [`postgres`]: PostgreSQL/TimescaleDB tables, binary COPY from Arrow.
//! - [`durable`]: what the store sinks share: retries, spill to disk, replay, dead letters.

pub mod clickhouse;
pub mod durable;
pub mod parquet;
pub mod postgres;

use arrow_array::RecordBatch;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tickwire_codecs::record::{Kind, Market};

/// `url` with every password replaced by `***`, for anything that shows or logs it; a
/// comma-separated list (NATS servers) is redacted URL by URL.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let Some((scheme, rest)) = one.split_once("://") else {
                return one.to_string();
            };
            match rest.rsplit_once('@') {
                Some((cred, host)) if cred.contains(':') => {
                    let user = cred.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:***@{host}")
                }
                _ => one.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Where a batch belongs: one kind, one market, one UTC day (of `recv_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// Record kind (one table per kind).
    pub kind: Kind,
    /// Market.
    pub market: Market,
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
}

/// A flushed batch, shared by every sink and the cache.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Its partition.
    pub key: BatchKey,
    /// Sequence number of the batch in this process, for ordering and identity.
    pub seq: u64,
    /// The rows.
    pub data: Arc<RecordBatch>,
    /// Where the rows came from, when a source needs to know they are stored (a JetStream
    /// writer acknowledges its messages then); `None` for the engine's own batches.
    pub origin: Option<Origin>,
}

/// Told when a batch is durably kept: acknowledged by the store, in a closed and renamed
/// file, or written to the sink's spill or dead-letter directory (replayed from there under
/// the same id).
pub trait Committed: Send + Sync + std::fmt::Debug {
    /// Batch `id` is kept by one more sink.
    fn committed(&self, id: u64);
}

/// The identity of a batch cut by a source that replays (a JetStream writer): its id is
/// derived from the source's positions, so the same rows always come back under the same id.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The batch id every store records (below 2^63).
    pub id: u64,
    /// The batch may be stored already (cut again after a restart): every sink checks
    /// before writing it.
    pub replayed: bool,
    /// Told when this sink has kept it.
    pub hook: Arc<dyn Committed>,
}

impl Batch {
    /// Tells the batch's source that this sink keeps it now.
    pub fn committed(&self, id: u64) {
        if let Some(o) = &self.origin {
            o.hook.committed(id);
        }
    }
}

/// What a sink has done; read by the engine for stats and the summary.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Rows durably written: acknowledged by the store, or in a closed (renamed) Parquet file.
    pub rows: AtomicU64,
    /// Rows handed to the store: a database sink counts them when acknowledged (as `rows`),
    /// the Parquet sink as soon as they are in an open file (durable when it closes).
    pub written_rows: AtomicU64,
    /// Batches durably written.
    pub batches: AtomicU64,
    /// Bytes written (files closed, or payload sent).
    pub bytes: AtomicU64,
    /// Write errors (each retried or dead-lettered, never silently lost).
    pub errors: AtomicU64,
    /// Rows kept on disk after the retries ran out (not in `rows`).
    pub spilled_rows: AtomicU64,
    /// Rows the store refused as data errors, kept on disk (not in `rows`).
    pub dead_letter_rows: AtomicU64,
    /// Retried batches found already stored (their acknowledgement had been lost): not sent
    /// twice.
    pub retries_found_landed: AtomicU64,
    /// Rows of earlier runs' spill files stored at start.
    pub replayed_rows: AtomicU64,
    /// Rows of batches the sink refused with an error (not kept anywhere): counted as dropped.
    pub dropped_rows: AtomicU64,
}

impl SinkCounters {
    /// Rows acknowledged so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

/// An error and its sources on one line, each once (a source whose text an outer message
/// already carries is not repeated).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet encoder refused the data.
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// Arrow refused the data.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// ClickHouse failed (connecting, DDL, a query).
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
    /// PostgreSQL failed (connecting, DDL, a query).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The sink cannot be set up as configured (the message says why and what to change).
    #[error("{0}")]
    Setup(String),
}

/// A destination for batches.
pub trait Sink: Send + std::fmt::Debug {
    /// Name in stats, metrics and the summary (`parquet`, `clickhouse`, `postgres`).
    fn name(&self) -> &'static str;
    /// Takes a batch. `Ok` means the sink owns it now: it is written or will be, retried as
    /// the sink's policy says; an error means this batch was not taken.
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// Called about once a second with nothing to write: time-based work (rolling files).
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Writes out everything taken and releases resources. Nothing taken is pending after `Ok`.
    fn close(&mut self) -> Result<(), SinkError>;
    /// The sink's counters.
    fn counters(&self) -> Arc<SinkCounters>;
    /// The ids at or above `from` of the batches this sink keeps or holds for replay (in the
    /// store, in closed files, in its spill directory): a replaying source cuts its batches
    /// again where these end.
    fn known_batches(&mut self, from: u64) -> Result<Vec<u64>, SinkError> {
        let _ = from;
        Ok(Vec::new())
    }
}

/// The table of a kind, the same in every store.
pub fn table_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Trade => "trades",
        Kind::AggTrade => "agg_trades",
        Kind::BookTicker => "book_tickers",
        Kind::DepthUpdate => "depth_updates",
        Kind::DepthSnapshot => "depth_snapshots",
        Kind::Kline => "klines",
        Kind::MarkPrice => "mark_prices",
        Kind::Liquidation => "liquidations",
        Kind::Ticker => "tickers",
        Kind::Gap => "gaps",
        Kind::Instrument => "instruments",
        Kind::OpenInterest => "open_interest",
        Kind::LongShortRatio => "long_short_ratios",
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), proleptic Gregorian.
pub fn date_string(day: i32) -> String {
    // 2440588 is the Julian day of 1970-01-01.
    match time::Date::from_julian_day(day.saturating_add(2_440_588)) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => format!("day{day}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_every_password_and_keeps_the_rest() {
        for (url, shown) in [
            (
                "postgres://u:s3cret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            (
                "http://default:p@ss@127.0.0.1:8123/",
                "http://default:***@127.0.0.1:8123/",
            ),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "nats://a:1@h1:4222,nats://b:2@h2:4222",
                "nats://a:***@h1:4222,nats://b:***@h2:4222",
            ),
            ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
            ("nats://token@h:4222", "nats://token@h:4222"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(super::redact(url), shown);
        }
    }

    #[test]
    fn dates() {
        for (day, s) in [
            (0, "1970-01-01"),
            (19_722, "2023-12-31"),
            (20_781, "2026-11-24"),
            (-1, "1969-12-31"),
            (11_016, "2000-02-29"),
        ] {
            assert_eq!(super::date_string(day), s);
        }
    }
}
