//! What every store sink shares: batches held until the store acknowledges them, retried with
//! backoff and jitter, spilled to disk beyond a memory budget or at shutdown, replayed in order,
//! and dead-lettered when the store refuses the data itself.
//!
//! A store ([`Store`]) only knows how to put one batch into one table under a batch id, and how
//! to tell whether a batch with that id is already there. [`Durable`] does the rest, the same
//! way for ClickHouse and PostgreSQL:
//!
//! - `write` queues the batch and sends what it can; it never waits on an outage: while the
//!   store fails, one attempt is made per backoff period (100 ms doubling to 5 s, ±20 %).
//! - Beyond `memory_budget_bytes` of Arrow memory the oldest pending batches are written to
//!   `spill-*.parquet` files (batch id and table in the file metadata). Spill files, from this
//!   run or an earlier one, are sent first, oldest first, when the store answers.
//! - After a failed attempt the store is asked whether the batch landed (its acknowledgement
//!   may have been lost) before it is sent again: retries never duplicate.
//! - A data error is not retried: the batch goes to a `dead-letter-*.parquet` file with the
//!   error in its metadata, and is counted.
//! - `close` retries up to `max_attempts`, then spills what is left: nothing taken is lost.

use crate::{Batch, SinkCounters, SinkError};
use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::Kind;

/// How a failed insert is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The store may take it later: retry.
    Transient,
    /// The data itself is refused: dead letter, no retry.
    Data,
}

/// A failed store operation.
#[derive(Debug)]
pub struct StoreError {
    /// Retry or dead-letter.
    pub failure: Failure,
    /// The store's message (never contains credentials).
    pub message: String,
}

impl StoreError {
    /// A transient failure (connection, timeout, overload, local I/O).
    pub fn transient(e: impl std::fmt::Display) -> Self {
        StoreError {
            failure: Failure::Transient,
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What an insert did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now; bytes sent.
    Stored(u64),
    /// The batch was already stored (an earlier attempt landed): not sent again.
    AlreadyThere,
}

/// One store: puts one batch into one table, atomically, under a batch id.
pub trait Store {
    /// Sink name (`clickhouse`, `postgres`).
    fn name(&self) -> &'static str;
    /// The table of a kind (the same in every store).
    fn table(&self, kind: Kind) -> &'static str {
        crate::table_name(kind)
    }
    /// Stores `data` into `table` as batch `id`, all rows or none. With `check_first`, a batch
    /// an earlier attempt may have stored is looked up first and not sent twice.
    fn insert(
        &mut self,
        table: &str,
        id: u64,
        data: &RecordBatch,
        check_first: bool,
    ) -> Result<Inserted, StoreError>;
    /// The batch ids at or above `from` the store holds (all of a batch or some parts).
    fn known_ids(&mut self, from: u64) -> Result<Vec<u64>, StoreError> {
        let _ = from;
        Ok(Vec::new())
    }
}

/// Retry and spill settings of a store sink.
#[derive(Debug, Clone)]
pub struct Durability {
    /// At shutdown: attempts before what is still pending is spilled to disk.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to 5 s, ±20% jitter.
    pub retry_base: Duration,
    /// Where spilled batches and dead letters are written (Parquet files).
    pub spill_dir: PathBuf,
    /// Arrow memory of the batches held while the store fails; beyond it the oldest are
    /// spilled to disk.
    pub memory_budget_bytes: usize,
}

impl Durability {
    /// Defaults with spill files under `spill_dir`: retries from 100 ms, 20 attempts at
    /// shutdown, 256 MiB held in memory.
    pub fn new(spill_dir: impl Into<PathBuf>) -> Self {
        Durability {
            max_attempts: 20,
            retry_base: Duration::from_millis(100),
            spill_dir: spill_dir.into(),
            memory_budget_bytes: 256 << 20,
        }
    }
}

/// A current-thread tokio runtime for a store's client on the sink's own thread.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, SinkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SinkError::Io {
            path: "tokio runtime".into(),
            source: e,
        })
}

/// The id of batch `seq` of the process started at `run_ns`: a 64-bit mix (splitmix64) of the
/// two, unique in practice, cheap to store and to look up. Kept below 2^63 so that every store
/// can hold it in a signed 64-bit column.
pub fn batch_id(run_ns: u64, seq: u64) -> u64 {
    let mut z = run_ns ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1
}

/// A batch taken but not yet stored.
struct Pending {
    batch: Batch,
    id: u64,
    /// An attempt failed: before sending again, check whether it landed.
    attempted: bool,
    bytes: usize,
}

/// A store sink: a [`Store`] with the pending queue, retries, spill and replay around it.
pub struct Durable<S> {
    pub(crate) store: S,
    cfg: Durability,
    counters: Arc<SinkCounters>,
    rng: u64,
    /// This process's start time in ns, hex (spill file names).
    run_id: String,
    /// The same, as the seed of batch ids.
    run_ns: u64,
    /// Batches taken, not yet stored, oldest first.
    pending: std::collections::VecDeque<Pending>,
    /// Their Arrow memory.
    pending_bytes: usize,
    /// While the store fails: no attempt before this instant.
    retry_at: Option<Instant>,
    /// Consecutive failed attempts (for the backoff).
    failures: u32,
    /// Spill files may exist (from this run or an earlier one): replay them before pending.
    spill_files: bool,
}

impl<S> std::fmt::Debug for Durable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("cfg", &self.cfg)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<S: Store> Durable<S> {
    /// Wraps `store`; sends earlier runs' spill files (if the store fails now, later ticks
    /// retry).
    pub fn with_store(store: S, cfg: Durability) -> Result<Self, SinkError> {
        Self::with_store_counters(store, cfg, Arc::default())
    }

    /// [`Durable::with_store`] counting into `counters` (shared by the shards of one sink).
    pub fn with_store_counters(
        store: S,
        cfg: Durability,
        counters: Arc<SinkCounters>,
    ) -> Result<Self, SinkError> {
        std::fs::create_dir_all(&cfg.spill_dir).map_err(|source| SinkError::Io {
            path: cfg.spill_dir.display().to_string(),
            source,
        })?;
        let run_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut d = Durable {
            store,
            cfg,
            counters,
            rng: 0x2545_F491_4F6C_DD1D ^ run_ns,
            run_id: format!("{run_ns:016x}"),
            run_ns,
            pending: std::collections::VecDeque::new(),
            pending_bytes: 0,
            retry_at: None,
            failures: 0,
            spill_files: true,
        };
        d.drain(false)?;
        Ok(d)
    }

    /// Batches held in memory.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The sink's counters.
    pub fn counters(&self) -> Arc<SinkCounters> {
        self.counters.clone()
    }

    /// Takes the batch into the pending queue and drains what it can. Never waits on an
    /// outage.
    pub fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let bytes = batch.data.get_array_memory_size();
        // A batch cut again by a replaying source may be stored already: checked first.
        let (id, attempted) = match &batch.origin {
            Some(o) => (o.id, o.replayed),
            None => (batch_id(self.run_ns, batch.seq), false),
        };
        self.pending.push_back(Pending {
            batch: batch.clone(),
            id,
            attempted,
            bytes,
        });
        self.pending_bytes += bytes;
        self.drain(false)?;
        // Over the memory budget: the oldest pending batches go to disk, in order.
        while self.pending_bytes > self.cfg.memory_budget_bytes {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= p.bytes;
            self.spill(&p, "memory budget exceeded while the store is failing")?;
        }
        Ok(())
    }

    /// Time-based work: a retry when its backoff has passed.
    pub fn tick(&mut self) -> Result<(), SinkError> {
        self.drain(false)
    }

    /// Stores everything pending, retrying up to `max_attempts`; what still fails is spilled
    /// to disk for the next start.
    pub fn close(&mut self) -> Result<(), SinkError> {
        self.drain(true)?;
        while let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.bytes;
            self.spill(&p, "store unavailable at shutdown")?;
        }
        Ok(())
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = (self.cfg.retry_base.as_millis() as u64)
            .saturating_mul(1 << attempt.min(6))
            .min(5_000);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = (self.rng % 41) as i64 - 20;
        Duration::from_millis((base as i64 + base as i64 * jitter / 100).max(1) as u64)
    }

    fn spill(&mut self, p: &Pending, why: &str) -> Result<(), SinkError> {
        self.counters
            .spilled_rows
            .fetch_add(p.batch.data.num_rows() as u64, Ordering::Relaxed);
        self.spill_files = true;
        self.keep_on_disk(&p.batch, p.id, "spill", why)?;
        // On disk, replayed under its id with the landed check first: kept.
        p.batch.committed(p.id);
        Ok(())
    }

    /// Writes `batch` to a Parquet file under the spill directory, with `why`, its id and its
    /// table in the metadata.
    fn keep_on_disk(&self, batch: &Batch, id: u64, what: &str, why: &str) -> Result<(), SinkError> {
        // Names sort in batch order: the run id (fixed-width hex time), then the sequence.
        let path = self.cfg.spill_dir.join(format!(
            "{what}-{}-{:012}-{}-{}.parquet",
            self.run_id,
            batch.seq,
            batch.key.kind.as_str(),
            batch.key.market.as_str()
        ));
        let file = std::fs::File::create(&path).map_err(|source| SinkError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let kv = |k: &str, v: String| parquet::file::metadata::KeyValue::new(k.into(), v);
        let props = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                kv("tickwire.error", why.to_string()),
                kv("tickwire.batch_id", id.to_string()),
                kv(
                    "tickwire.table",
                    self.store.table(batch.key.kind).to_string(),
                ),
            ]))
            .build();
        let mut w = ArrowWriter::try_new(file, batch.data.schema(), Some(props))?;
        w.write(&batch.data)?;
        w.close()?;
        Ok(())
    }

    fn dead_letter(&mut self, batch: &Batch, id: u64, e: &StoreError) -> Result<(), SinkError> {
        tracing::error!(
            "sink {}: batch {id} refused, dead-lettered: {e}",
            self.store.name()
        );
        self.counters
            .dead_letter_rows
            .fetch_add(batch.data.num_rows() as u64, Ordering::Relaxed);
        self.keep_on_disk(batch, id, "dead-letter", &e.message)?;
        batch.committed(id);
        Ok(())
    }

    /// Sends spill files, then pending batches, in order, until done or the store fails.
    /// `final_`: retry a failing store up to `max_attempts` times instead of returning.
    fn drain(&mut self, final_: bool) -> Result<(), SinkError> {
        loop {
            if !final_ && self.retry_at.is_some_and(|t| Instant::now() < t) {
                return Ok(());
            }
            let r = if self.spill_files {
                match self.replay_one() {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.spill_files = false;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            } else {
                let Some(p) = self.pending.front() else {
                    return Ok(());
                };
                let (id, attempted, batch) = (p.id, p.attempted, p.batch.clone());
                let table = self.store.table(batch.key.kind);
                match self.store.insert(table, id, &batch.data, attempted) {
                    Ok(done) => {
                        self.pop_front();
                        self.acknowledge(batch.data.num_rows() as u64, done);
                        batch.committed(id);
                        Ok(())
                    }
                    Err(e) if e.failure == Failure::Data => {
                        self.pop_front();
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        self.dead_letter(&batch, id, &e)?;
                        continue;
                    }
                    Err(e) => {
                        if let Some(p) = self.pending.front_mut() {
                            p.attempted = true;
                        }
                        Err(e)
                    }
                }
            };
            match r {
                Ok(()) => {
                    self.failures = 0;
                    self.retry_at = None;
                }
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.failures += 1;
                    let wait = self.backoff(self.failures);
                    if self.failures == 1 || self.failures % 20 == 0 {
                        tracing::warn!(
                            "sink {}: {e}; {} batches pending, retrying in {wait:?}",
                            self.store.name(),
                            self.pending.len()
                        );
                    }
                    if final_ {
                        if self.failures >= self.cfg.max_attempts {
                            return Ok(());
                        }
                        std::thread::sleep(wait);
                    } else {
                        self.retry_at = Some(Instant::now() + wait);
                        return Ok(());
                    }
                }
            }
        }
    }

    fn acknowledge(&self, rows: u64, done: Inserted) {
        self.counters.rows.fetch_add(rows, Ordering::Relaxed);
        self.counters
            .written_rows
            .fetch_add(rows, Ordering::Relaxed);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        match done {
            Inserted::Stored(bytes) => {
                self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Inserted::AlreadyThere => {
                self.counters
                    .retries_found_landed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.bytes;
        }
    }

    /// Replays the oldest spill file (`spill-*.parquet`): each batch under its original id, with
    /// the landed-check first. `Ok(false)` when there is none left.
    fn replay_one(&mut self) -> Result<bool, StoreError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.cfg.spill_dir)
            .map_err(StoreError::transient)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("spill-") && n.ends_with(".parquet"))
            })
            .collect();
        files.sort();
        let Some(path) = files.into_iter().next() else {
            return Ok(false);
        };
        let file = std::fs::File::open(&path).map_err(StoreError::transient)?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(StoreError::transient)?;
        let meta = |k: &str| -> Option<String> {
            builder
                .metadata()
                .file_metadata()
                .key_value_metadata()?
                .iter()
                .find(|kv| kv.key == k)?
                .value
                .clone()
        };
        let id = meta("tickwire.batch_id").and_then(|i| i.parse::<u64>().ok());
        let table = meta("tickwire.table").and_then(|t| {
            Kind::ALL
                .iter()
                .copied()
                .find(|&k| self.store.table(k) == t)
        });
        let (Some(id), Some(kind)) = (id, table) else {
            // Not ours to replay: move it aside so it does not block the others.
            let aside = path.with_extension("parquet.unreplayable");
            std::fs::rename(&path, &aside).map_err(StoreError::transient)?;
            tracing::warn!(
                "sink {}: {} has no batch id or table; moved to {}",
                self.store.name(),
                path.display(),
                aside.display()
            );
            return Ok(true);
        };
        let reader = builder
            .with_batch_size(1 << 24)
            .build()
            .map_err(StoreError::transient)?;
        let table = self.store.table(kind);
        for batch in reader {
            let batch = batch.map_err(StoreError::transient)?;
            let rows = batch.num_rows() as u64;
            match self.store.insert(table, id, &batch, true) {
                Ok(_) => {}
                Err(e) if e.failure == Failure::Data => {
                    // Refused as data: dead letter, as a live batch would be.
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .dead_letter_rows
                        .fetch_add(rows, Ordering::Relaxed);
                    let dead = path.with_extension("parquet.dead-letter");
                    std::fs::rename(&path, &dead).map_err(StoreError::transient)?;
                    tracing::warn!(
                        "sink {}: spilled batch {id} refused ({e}); kept as {}",
                        self.store.name(),
                        dead.display()
                    );
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
            self.counters
                .replayed_rows
                .fetch_add(rows, Ordering::Relaxed);
        }
        std::fs::remove_file(&path).map_err(StoreError::transient)?;
        Ok(true)
    }
}

impl<S: Store + Send> crate::Sink for Durable<S> {
    fn name(&self) -> &'static str {
        self.store.name()
    }
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        Durable::write(self, batch)
    }
    fn tick(&mut self) -> Result<(), SinkError> {
        Durable::tick(self)
    }
    fn close(&mut self) -> Result<(), SinkError> {
        Durable::close(self)
    }
    fn counters(&self) -> Arc<SinkCounters> {
        Durable::counters(self)
    }
    fn known_batches(&mut self, from: u64) -> Result<Vec<u64>, SinkError> {
        let mut ids = self
            .store
            .known_ids(from)
            .map_err(|e| SinkError::Setup(format!("{}: {e}", self.store.name())))?;
        ids.extend(self.spilled_ids().into_iter().filter(|&i| i >= from));
        Ok(ids)
    }
}

impl<S: Store> Durable<S> {
    /// The batch ids in the spill directory's files (replayed before anything new).
    fn spilled_ids(&self) -> Vec<u64> {
        let Ok(dir) = std::fs::read_dir(&self.cfg.spill_dir) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("spill-") && n.ends_with(".parquet"))
            })
            .filter_map(|p| crate::parquet::file_meta(&p, "tickwire.batch_id"))
            .filter_map(|v| v.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchKey;
    use tickwire_codecs::record::Market;

    /// A store that fails on demand: the durability logic alone, no server. (The real stores
    /// are tested against real servers in tests/.)
    struct Flaky {
        stored: Vec<(u64, usize)>,
        fail: bool,
        /// The next insert stores the batch but reports a failure (a lost acknowledgement).
        lose_ack: bool,
        refuse_data: bool,
    }

    impl Store for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn table(&self, kind: Kind) -> &'static str {
            kind.as_str()
        }
        fn insert(
            &mut self,
            _t: &str,
            id: u64,
            data: &RecordBatch,
            check_first: bool,
        ) -> Result<Inserted, StoreError> {
            if self.fail {
                return Err(StoreError::transient("down"));
            }
            if self.refuse_data {
                return Err(StoreError {
                    failure: Failure::Data,
                    message: "bad value".into(),
                });
            }
            if check_first && self.stored.iter().any(|s| s.0 == id) {
                return Ok(Inserted::AlreadyThere);
            }
            self.stored.push((id, data.num_rows()));
            if std::mem::take(&mut self.lose_ack) {
                return Err(StoreError::transient("connection reset"));
            }
            Ok(Inserted::Stored(1))
        }
    }

    fn batch(seq: u64, rows: usize) -> Batch {
        let col = arrow_array::Int64Array::from_iter_values(0..rows as i64);
        let data = RecordBatch::try_from_iter([("v", Arc::new(col) as arrow_array::ArrayRef)])
            .expect("test");
        Batch {
            key: BatchKey {
                kind: Kind::Gap,
                market: Market::Spot,
                day: 0,
            },
            seq,
            data: Arc::new(data),
            origin: None,
        }
    }

    fn sink(dir: &std::path::Path, budget: usize) -> Durable<Flaky> {
        Durable::with_store(
            Flaky {
                stored: vec![],
                fail: false,
                lose_ack: false,
                refuse_data: false,
            },
            Durability {
                max_attempts: 2,
                retry_base: Duration::from_millis(1),
                spill_dir: dir.to_path_buf(),
                memory_budget_bytes: budget,
            },
        )
        .expect("test")
    }

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tickwire-durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_lost_acknowledgement_does_not_duplicate() {
        let dir = tmp("ack");
        let mut s = sink(&dir, 1 << 30);
        s.store.lose_ack = true;
        s.write(&batch(1, 10)).expect("test");
        assert_eq!(s.pending(), 1, "the failed attempt keeps the batch");
        s.close().expect("test");
        assert_eq!(s.store.stored.len(), 1, "stored once");
        assert_eq!(s.counters.retries_found_landed.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.batches.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_outage_spills_at_close_and_the_next_start_replays_in_order() {
        let dir = tmp("spill");
        let mut s = sink(&dir, 1 << 30);
        s.store.fail = true;
        for seq in 1..=3 {
            s.write(&batch(seq, 10)).expect("test");
        }
        s.close().expect("test");
        assert!(s.store.stored.is_empty());
        let ids: Vec<u64> = (1..=3).map(|q| batch_id(s.run_ns, q)).collect();
        let s2 = sink(&dir, 1 << 30);
        assert_eq!(s2.store.stored.iter().map(|s| s.0).collect::<Vec<_>>(), ids);
        assert_eq!(
            std::fs::read_dir(&dir).expect("test").count(),
            0,
            "spill files removed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn over_budget_the_oldest_go_to_disk_and_come_back_first() {
        let dir = tmp("budget");
        let mut s = sink(&dir, 0);
        s.store.fail = true;
        s.write(&batch(1, 10)).expect("test");
        s.write(&batch(2, 10)).expect("test");
        assert_eq!(s.pending(), 0, "a zero budget keeps nothing in memory");
        s.store.fail = false;
        s.retry_at = None;
        s.tick().expect("test");
        let ids: Vec<u64> = (1..=2).map(|q| batch_id(s.run_ns, q)).collect();
        assert_eq!(s.store.stored.iter().map(|s| s.0).collect::<Vec<_>>(), ids);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn data_errors_are_dead_lettered_not_retried() {
        let dir = tmp("dead");
        let mut s = sink(&dir, 1 << 30);
        s.store.refuse_data = true;
        s.write(&batch(1, 10)).expect("test");
        assert_eq!(s.pending(), 0);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("test")
            .map(|e| e.expect("test").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("dead-letter-"), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
