//! The ClickHouse sink.

use super::ddl::{statements, table_name, Dialect, BATCH_COLUMN};
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
    /// This process's batch-id prefix: start time in ns, hex.
    run_id: String,
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
            "{:x}",
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
            run_id,
        };
        sink.replay_spill()?;
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
    fn keep_on_disk(&self, batch: &Batch, what: &str, why: &str) -> Result<(), SinkError> {
        let path = self.cfg.spill_dir.join(format!(
            "{what}-{}-{}-{}-{}.parquet",
            self.run_id,
            batch.key.kind.as_str(),
            batch.key.market.as_str(),
            batch.seq
        ));
        let file = std::fs::File::create(&path).map_err(|source| SinkError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                parquet::file::metadata::KeyValue::new("tickwire.error".into(), why.to_string()),
                parquet::file::metadata::KeyValue::new(
                    "tickwire.batch_id".into(),
                    format!("{}-{}", self.run_id, batch.seq),
                ),
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

impl Sink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let rows = batch.data.num_rows() as u64;
        let id = format!("{}-{}", self.run_id, batch.seq);
        let body = match native::encode(&batch.data, self.dialect, &id) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .dead_letter_rows
                    .fetch_add(rows, Ordering::Relaxed);
                return self.keep_on_disk(batch, "dead-letter", &e.to_string());
            }
        };
        let table = format!("{}.{}", self.cfg.database, table_name(batch.key.kind));
        match self.insert(&table, &id, &body, rows, self.cfg.max_attempts) {
            Ok(()) => {
                self.counters.rows.fetch_add(rows, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err((Failure::Data, e)) => {
                eprintln!(
                    "tickwire: sink clickhouse: {} batch {} refused, dead-lettered: {e}",
                    batch.key.kind.as_str(),
                    batch.seq
                );
                self.counters
                    .dead_letter_rows
                    .fetch_add(rows, Ordering::Relaxed);
                self.keep_on_disk(batch, "dead-letter", &e.to_string())
            }
            Err((Failure::Transient, e)) => {
                eprintln!(
                    "tickwire: sink clickhouse: {} batch {} spilled after {} attempts: {e}",
                    batch.key.kind.as_str(),
                    batch.seq,
                    self.cfg.max_attempts
                );
                self.counters
                    .spilled_rows
                    .fetch_add(rows, Ordering::Relaxed);
                self.keep_on_disk(batch, "spill", &e.to_string())
            }
        }
    }

    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn counters(&self) -> Arc<SinkCounters> {
        self.counters.clone()
    }
}

impl ClickHouseSink {
    /// Inserts one Native block with batch id `id`, retrying transient failures up to
    /// `max_attempts` times; after a failed attempt it first checks whether the batch landed.
    fn insert(
        &mut self,
        table: &str,
        id: &str,
        body: &bytes::Bytes,
        rows: u64,
        max_attempts: u32,
    ) -> Result<(), (Failure, ::clickhouse::error::Error)> {
        let sql = format!("INSERT INTO {table} FORMAT Native");
        let probe = format!("SELECT count() FROM {table} WHERE {BATCH_COLUMN} = '{id}'");
        let mut attempt = 0;
        loop {
            let r = self.rt.block_on(async {
                if attempt > 0 {
                    // After a failed attempt: did it land anyway (the answer was lost)? A batch
                    // is one day, so one partition and one part: all of it landed, or none.
                    let present: u64 = self.client.query(&probe).fetch_one().await?;
                    if present == rows {
                        self.counters
                            .retries_found_landed
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
                let mut ins = self.client.insert_formatted_with(sql.as_str());
                ins.send(body.clone()).await?;
                ins.end().await
            });
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    let class = classify(&e);
                    attempt += 1;
                    if class == Failure::Data || attempt >= max_attempts {
                        return Err((class, e));
                    }
                    let wait = self.backoff(attempt);
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Inserts the batches spilled by earlier runs (`spill-*.parquet` in the spill directory),
    /// each under its original id (so one that landed after all is not stored twice), and
    /// deletes each file once stored. A file that still fails stays for the next start.
    fn replay_spill(&mut self) -> Result<(), SinkError> {
        let dir = self.cfg.spill_dir.clone();
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| SinkError::Io {
                path: dir.display().to_string(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("spill-") && n.ends_with(".parquet"))
            })
            .collect();
        files.sort();
        for path in files {
            let io = |source| SinkError::Io {
                path: path.display().to_string(),
                source,
            };
            let file = std::fs::File::open(&path).map_err(io)?;
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
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
            let (Some(id), Some(table)) = (meta("tickwire.batch_id"), meta("tickwire.table"))
            else {
                eprintln!(
                    "tickwire: sink clickhouse: {} has no batch id; left in place",
                    path.display()
                );
                continue;
            };
            let reader = builder.with_batch_size(1 << 20).build()?;
            let mut ok = true;
            for batch in reader {
                let batch = batch?;
                let rows = batch.num_rows() as u64;
                let body = bytes::Bytes::from(native::encode(&batch, self.dialect, &id)?);
                let table = format!("{}.{table}", self.cfg.database);
                match self.insert(&table, &id, &body, rows, 3) {
                    Ok(()) => {
                        self.counters
                            .replayed_rows
                            .fetch_add(rows, Ordering::Relaxed);
                    }
                    Err((_, e)) => {
                        eprintln!(
                            "tickwire: sink clickhouse: replay of {} failed, kept: {e}",
                            path.display()
                        );
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                std::fs::remove_file(&path).map_err(io)?;
            }
        }
        Ok(())
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
