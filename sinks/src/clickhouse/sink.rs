//! The ClickHouse sink.

use super::ddl::{statements, table_name, ttl_statements, Dialect, BATCH_COLUMN};
use super::{native, ClickHouseConfig};
use crate::{Batch, Sink, SinkCounters, SinkError};
use parquet::arrow::ArrowWriter;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Writes batches into ClickHouse tables (see the module docs).
pub struct ClickHouseSink {
    cfg: ClickHouseConfig,
    rt: tokio::runtime::Runtime,
    client: ::clickhouse::Client,
    dialect: Dialect,
    version: String,
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
    /// While the server fails: no attempt before this instant.
    retry_at: Option<std::time::Instant>,
    /// Consecutive failed attempts (for the backoff).
    failures: u32,
    /// Spill files may exist (from this run or an earlier one): replay them before pending.
    spill_files: bool,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink")
            .field("cfg", &self.cfg)
            .field("version", &self.version)
            .finish()
    }
}

/// How a failed insert is handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The server may take it later: retry.
    Transient,
    /// The data itself is refused: dead letter, no retry.
    Data,
}

/// Server error codes that mean "try again later" (too many parts, overload, timeouts, ...).
const TRANSIENT_CODES: [u32; 10] = [3, 159, 164, 202, 203, 209, 210, 241, 252, 425];

fn classify(e: &::clickhouse::error::Error) -> Failure {
    match e {
        ::clickhouse::error::Error::BadResponse(msg) => {
            let code = msg
                .split("Code: ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|c| c.parse::<u32>().ok());
            match code {
                Some(c) if TRANSIENT_CODES.contains(&c) => Failure::Transient,
                Some(_) => Failure::Data,
                None => Failure::Transient, // a proxy or a restarting server answered
            }
        }
        _ => Failure::Transient,
    }
}

impl ClickHouseSink {
    /// Connects, picks the dialect by server version and applies the schema (idempotent).
    pub fn new(cfg: ClickHouseConfig) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Io {
                path: "tokio runtime".into(),
                source: e,
            })?;
        let mut client = ::clickhouse::Client::default()
            .with_url(&cfg.url)
            .with_validation(false);
        if let Some(u) = &cfg.user {
            client = client.with_user(u);
        }
        if let Some(p) = &cfg.password {
            client = client.with_password(p);
        }
        let version: String = rt.block_on(client.query("SELECT version()").fetch_one())?;
        let dialect = Dialect::for_version(&version);
        for st in statements(dialect, &cfg.database) {
            rt.block_on(client.query(&st).execute())?;
        }
        match (cfg.ttl_days, dialect) {
            (Some(days), Dialect::Modern) => {
                for st in ttl_statements(&cfg.database, days) {
                    rt.block_on(client.query(&st).execute())?;
                }
            }
            (Some(_), Dialect::Legacy) => {
                eprintln!(
                    "tickwire: sink clickhouse: server {version} has no TTL; ttl_days ignored"
                );
            }
            (None, _) => {}
        }
        let migrations = format!(
            "CREATE TABLE IF NOT EXISTS {}.schema_migrations (version UInt32, dialect String, applied_at DateTime) ENGINE = MergeTree ORDER BY version",
            cfg.database
        );
        rt.block_on(client.query(&migrations).execute())?;
        let applied: u64 = rt.block_on(
            client
                .query(&format!(
                    "SELECT count() FROM {}.schema_migrations WHERE version = 1",
                    cfg.database
                ))
                .fetch_one(),
        )?;
        if applied == 0 {
            rt.block_on(
                client
                    .query(&format!(
                        "INSERT INTO {}.schema_migrations VALUES (1, '{}', now())",
                        cfg.database,
                        if dialect == Dialect::Modern {
                            "modern"
                        } else {
                            "18.16"
                        }
                    ))
                    .execute(),
            )?;
        }
        std::fs::create_dir_all(&cfg.spill_dir).map_err(|source| SinkError::Io {
            path: cfg.spill_dir.display().to_string(),
            source,
        })?;
        let run_id = format!(
            "{:016x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let mut sink = ClickHouseSink {
            cfg,
            rt,
            client,
            dialect,
            version,
            counters: Arc::default(),
            rng: 0x2545_F491_4F6C_DD1D,
            run_ns: u64::from_str_radix(&run_id, 16).unwrap_or(0),
            run_id,
            pending: std::collections::VecDeque::new(),
            pending_bytes: 0,
            retry_at: None,
            failures: 0,
            spill_files: true,
        };
        // Earlier runs' spill files go first (if the server fails now, ticks retry later).
        sink.drain(false)?;
        Ok(sink)
    }

    /// The server's version string.
    pub fn version(&self) -> &str {
        &self.version
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

    /// Writes `batch` to a Parquet file under the spill directory, with `why`, its id and its
    /// table in the metadata.
    fn keep_on_disk(
        &self,
        batch: &Batch,
        id: &str,
        what: &str,
        why: &str,
    ) -> Result<(), SinkError> {
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
        let props = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                parquet::file::metadata::KeyValue::new("tickwire.error".into(), why.to_string()),
                parquet::file::metadata::KeyValue::new("tickwire.batch_id".into(), id.to_string()),
                parquet::file::metadata::KeyValue::new(
                    "tickwire.table".into(),
                    table_name(batch.key.kind).to_string(),
                ),
            ]))
            .build();
        let mut w = ArrowWriter::try_new(file, batch.data.schema(), Some(props))?;
        w.write(&batch.data)?;
        w.close()?;
        Ok(())
    }
}

/// The id of batch `seq` of the process started at `run_ns`: a 64-bit mix (splitmix64) of the
/// two, unique in practice, cheap to store and to look up.
fn batch_id(run_ns: u64, seq: u64) -> u64 {
    let mut z = run_ns ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A batch taken but not yet stored.
struct Pending {
    batch: Batch,
    id: String,
    /// An attempt failed: before sending again, check whether it landed.
    attempted: bool,
    bytes: usize,
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    /// Takes the batch into the pending queue and drains what it can. Never waits on an
    /// outage: while the server fails, one attempt is made per backoff period.
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let bytes = batch.data.get_array_memory_size();
        self.pending.push_back(Pending {
            batch: batch.clone(),
            id: batch_id(self.run_ns, batch.seq).to_string(),
            attempted: false,
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
            self.spill(&p, "memory budget exceeded while the server is failing")?;
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.drain(false)
    }

    /// Stores everything pending, retrying up to `max_attempts`; what still fails is spilled
    /// to disk for the next start. Nothing taken is lost.
    fn close(&mut self) -> Result<(), SinkError> {
        self.drain(true)?;
        while let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.bytes;
            self.spill(&p, "server unavailable at shutdown")?;
        }
        Ok(())
    }

    fn counters(&self) -> Arc<SinkCounters> {
        self.counters.clone()
    }
}

impl ClickHouseSink {
    /// Batches held in memory.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn spill(&mut self, p: &Pending, why: &str) -> Result<(), SinkError> {
        self.counters
            .spilled_rows
            .fetch_add(p.batch.data.num_rows() as u64, Ordering::Relaxed);
        self.spill_files = true;
        self.keep_on_disk(&p.batch, &p.id, "spill", why)
    }

    /// Sends spill files, then pending batches, in order, until done or the server fails.
    /// `final_`: retry a failing server up to `max_attempts` times instead of returning.
    fn drain(&mut self, final_: bool) -> Result<(), SinkError> {
        loop {
            if !final_ && self.retry_at.is_some_and(|t| std::time::Instant::now() < t) {
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
                let Some(p) = self.pending.front_mut() else {
                    return Ok(());
                };
                let rows = p.batch.data.num_rows() as u64;
                let (id, attempted, batch) = (p.id.clone(), p.attempted, p.batch.clone());
                match native::encode(&batch.data, self.dialect, id.parse().unwrap_or(0)) {
                    Err(e) => {
                        self.pop_front();
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .dead_letter_rows
                            .fetch_add(rows, Ordering::Relaxed);
                        self.keep_on_disk(&batch, &id, "dead-letter", &e.to_string())?;
                        continue;
                    }
                    Ok(body) => {
                        let table = format!("{}.{}", self.cfg.database, table_name(batch.key.kind));
                        match self.insert_once(
                            &table,
                            &id,
                            &bytes::Bytes::from(body),
                            rows,
                            attempted,
                        ) {
                            Ok(len) => {
                                self.pop_front();
                                self.counters.rows.fetch_add(rows, Ordering::Relaxed);
                                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                                self.counters.bytes.fetch_add(len, Ordering::Relaxed);
                                Ok(())
                            }
                            Err((Failure::Data, e)) => {
                                self.pop_front();
                                eprintln!("tickwire: sink clickhouse: batch {id} refused, dead-lettered: {e}");
                                self.counters
                                    .dead_letter_rows
                                    .fetch_add(rows, Ordering::Relaxed);
                                self.keep_on_disk(&batch, &id, "dead-letter", &e.to_string())?;
                                continue;
                            }
                            Err(e) => {
                                if let Some(p) = self.pending.front_mut() {
                                    p.attempted = true;
                                }
                                Err(e)
                            }
                        }
                    }
                }
            };
            match r {
                Ok(()) => {
                    self.failures = 0;
                    self.retry_at = None;
                }
                Err((_, e)) => {
                    self.failures += 1;
                    let wait = self.backoff(self.failures);
                    if self.failures == 1 || self.failures % 20 == 0 {
                        eprintln!("tickwire: sink clickhouse: {e}; {} batches pending, retrying in {wait:?}", self.pending.len());
                    }
                    if final_ {
                        if self.failures >= self.cfg.max_attempts {
                            return Ok(());
                        }
                        std::thread::sleep(wait);
                    } else {
                        self.retry_at = Some(std::time::Instant::now() + wait);
                        return Ok(());
                    }
                }
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.bytes;
        }
    }

    /// One attempt to store a Native block with batch id `id`. With `check_first`, a batch a
    /// failed attempt may have stored is looked up first and not sent twice. Returns the
    /// bytes sent.
    fn insert_once(
        &mut self,
        table: &str,
        id: &str,
        body: &bytes::Bytes,
        rows: u64,
        check_first: bool,
    ) -> Result<u64, (Failure, ::clickhouse::error::Error)> {
        let sql = format!("INSERT INTO {table} FORMAT Native");
        let probe = format!("SELECT count() FROM {table} WHERE {BATCH_COLUMN} = {id}");
        let r = self.rt.block_on(async {
            if check_first {
                // A batch is one day, so one partition and one part: all of it landed, or none.
                let present: u64 = self.client.query(&probe).fetch_one().await?;
                if present == rows {
                    self.counters
                        .retries_found_landed
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(0);
                }
            }
            let mut ins = self
                .client
                .insert_formatted_with(sql.as_str())
                .with_timeouts(Some(Duration::from_secs(10)), Some(Duration::from_secs(60)));
            ins.send(body.clone()).await?;
            ins.end().await.map(|()| body.len() as u64)
        });
        r.map_err(|e| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            (classify(&e), e)
        })
    }

    /// Replays the oldest spill file (`spill-*.parquet`): each batch under its original id, with
    /// the landed-check first. `Ok(false)` when there is none left.
    fn replay_one(&mut self) -> Result<bool, (Failure, ::clickhouse::error::Error)> {
        let other = |e: &dyn std::fmt::Display| {
            (
                Failure::Transient,
                ::clickhouse::error::Error::Custom(e.to_string()),
            )
        };
        let dir = self.cfg.spill_dir.clone();
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| other(&e))?
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
        let file = std::fs::File::open(&path).map_err(|e| other(&e))?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| other(&e))?;
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
        let (Some(id), Some(table)) = (
            meta("tickwire.batch_id").filter(|i| i.parse::<u64>().is_ok()),
            meta("tickwire.table"),
        ) else {
            // Not ours to replay: move it aside so it does not block the others.
            let aside = path.with_extension("parquet.unreplayable");
            std::fs::rename(&path, &aside).map_err(|e| other(&e))?;
            eprintln!(
                "tickwire: sink clickhouse: {} has no batch id; moved to {}",
                path.display(),
                aside.display()
            );
            return Ok(true);
        };
        let reader = builder
            .with_batch_size(1 << 24)
            .build()
            .map_err(|e| other(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| other(&e))?;
            let rows = batch.num_rows() as u64;
            let body = bytes::Bytes::from(
                native::encode(&batch, self.dialect, id.parse().unwrap_or(0))
                    .map_err(|e| other(&e))?,
            );
            let table = format!("{}.{table}", self.cfg.database);
            self.insert_once(&table, &id, &body, rows, true)?;
            self.counters
                .replayed_rows
                .fetch_add(rows, Ordering::Relaxed);
        }
        std::fs::remove_file(&path).map_err(|e| other(&e))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_code() {
        let bad = |m: &str| ::clickhouse::error::Error::BadResponse(m.into());
        assert_eq!(
            classify(&bad(
                "Code: 252, e.displayText() = DB::Exception: Too many parts"
            )),
            Failure::Transient
        );
        assert_eq!(
            classify(&bad(
                "Code: 53, e.displayText() = DB::Exception: Type mismatch"
            )),
            Failure::Data
        );
        assert_eq!(classify(&bad("502 Bad Gateway")), Failure::Transient);
        assert_eq!(
            classify(&::clickhouse::error::Error::TimedOut),
            Failure::Transient
        );
    }
}
