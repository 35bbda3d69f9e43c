//! The Parquet sink.

use super::pages::SpilledPages;
use super::{ParquetCodec, ParquetConfig};
use crate::{date_string, Batch, BatchKey, Sink, SinkCounters, SinkError};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

struct OpenFile {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    opened: Instant,
    rows: u64,
    /// The batches with an origin in this file: their ids go into the footer
    /// ([`BATCH_IDS`]) and their sources are told when the file is complete.
    origins: Vec<(u64, Arc<dyn crate::Committed>)>,
}

/// Rows handed to the Parquet writer at a time (see [`slice_ends`]).
const WRITE_SLICE: usize = 512;

/// List values (depth levels) a slice handed to the Parquet writer holds at most in any list
/// column (see [`slice_ends`]).
const WRITE_SLICE_VALUES: usize = 512;

/// Writes `batch` through `w` in the slices of [`slice_ends`] (zero-copy; the same row groups
/// and pages as one write).
pub fn write_in_slices<W: std::io::Write + Send>(
    w: &mut ArrowWriter<W>,
    batch: &RecordBatch,
) -> Result<(), parquet::errors::ParquetError> {
    let mut off = 0;
    for end in slice_ends(batch) {
        w.write(&batch.slice(off, end - off))?;
        off = end;
    }
    Ok(())
}

/// Where the slices of `batch` handed to the writer end: at most [`WRITE_SLICE`] rows, and at
/// most [`WRITE_SLICE_VALUES`] values in any list column (always at least one row).
///
/// Why slices, and small ones: the parquet crate converts a slice's `Decimal128(38, _)`
/// columns (quantities) into one shared allocation of 16 bytes a value before encoding them,
/// so a whole batch of 100k rows held tens of MB at once (heaptrack: 63 MB of a 200k msg/s
/// run's peak). And the column writer's running minimum and maximum, of the page and of the
/// column chunk, are clones of single values that keep their slice's whole allocation alive
/// until the page or the row group ends: up to four allocations a open quantity column, 20-24
/// MB of the peak with slices of 4,096 rows (depth levels made them a MB or more). 512 rows
/// or levels make them 8 KiB, and encode no slower (`cargo bench -p tickwire-benches --bench
/// pipeline -- parquet/trade/tickwire_sink/`).
pub(crate) fn slice_ends(batch: &RecordBatch) -> Vec<usize> {
    use arrow_array::Array;
    let lists: Vec<&[i32]> = batch
        .columns()
        .iter()
        .filter_map(|c| c.as_any().downcast_ref::<arrow_array::ListArray>())
        .map(|l| l.value_offsets())
        .collect();
    let n = batch.num_rows();
    let mut ends = Vec::with_capacity(n / WRITE_SLICE + 1);
    let mut off = 0;
    while off < n {
        let mut end = (off + WRITE_SLICE).min(n);
        for offsets in &lists {
            // offsets[i] is where row i's values start; the rows off..e hold
            // offsets[e] - offsets[off] values.
            let cap = i64::from(offsets[off]) + WRITE_SLICE_VALUES as i64;
            let fit = offsets[off + 1..=end].partition_point(|&o| i64::from(o) <= cap);
            end = end.min(off + fit.max(1));
        }
        ends.push(end);
        off = end;
    }
    ends
}

/// The footer key listing the ids of the batches a file holds that a replaying source cut
/// (comma-separated): such a batch cut again after a restart is not written twice.
pub const BATCH_IDS: &str = "tickwire.batch_ids";

/// A key of a Parquet file's footer metadata (`None`: no such key, or not a Parquet file).
pub fn file_meta(path: &Path, key: &str) -> Option<String> {
    let f = File::open(path).ok()?;
    let r = parquet::file::reader::SerializedFileReader::new(f).ok()?;
    use parquet::file::reader::FileReader;
    r.metadata()
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .clone()
}

/// Writes batches into a hive-partitioned Parquet dataset (see the module docs).
pub struct ParquetSink {
    cfg: ParquetConfig,
    open: HashMap<BatchKey, OpenFile>,
    counters: Arc<SinkCounters>,
    /// Ids of the batches with an origin in the closed files, read from their footers the
    /// first time a replayed batch comes (None: not read yet).
    known: Option<std::collections::HashSet<u64>>,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("dir", &self.cfg.dir)
            .field("open", &self.open.len())
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The writer properties of a file of `schema`: zstd at `zstd_level`, row groups of at most
/// `row_group_rows` rows, data pages of at most `page_bytes`, and dictionary encoding for the
/// text columns (symbol, and the few short texts of some kinds) only. Prices, quantities, ids
/// and times rarely repeat within a page: a dictionary for them is built, found too large and
/// dropped page after page, which costs encoding time and saves nothing that zstd does not
/// (`cargo bench -p tickwire-benches --bench pipeline -- parquet`, perf/RESULTS.md).
pub fn writer_properties(
    schema: &arrow_schema::Schema,
    zstd_level: i32,
    row_group_rows: usize,
    page_bytes: usize,
) -> Result<WriterProperties, SinkError> {
    writer_properties_with(
        schema,
        ParquetCodec::Zstd,
        zstd_level,
        row_group_rows,
        page_bytes,
    )
}

/// [`writer_properties`] with the pages compressed by `codec` (`zstd_level` applies to zstd).
pub fn writer_properties_with(
    schema: &arrow_schema::Schema,
    codec: ParquetCodec,
    zstd_level: i32,
    row_group_rows: usize,
    page_bytes: usize,
) -> Result<WriterProperties, SinkError> {
    let compression = match codec {
        ParquetCodec::Zstd => Compression::ZSTD(ZstdLevel::try_new(zstd_level)?),
        ParquetCodec::Lz4 => Compression::LZ4_RAW,
        ParquetCodec::Snappy => Compression::SNAPPY,
        ParquetCodec::None => Compression::UNCOMPRESSED,
    };
    let mut b = WriterProperties::builder()
        .set_compression(compression)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_data_page_size_limit(page_bytes.max(1))
        .set_created_by("tickwire".into());
    for f in schema.fields() {
        if matches!(
            f.data_type(),
            arrow_schema::DataType::Dictionary(_, _) | arrow_schema::DataType::Utf8
        ) {
            b = b.set_column_dictionary_enabled(f.name().as_str().into(), true);
        }
    }
    Ok(b.build())
}

/// The batch without the `market` column, which lives in the path.
fn project(batch: &RecordBatch) -> Result<RecordBatch, SinkError> {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != "market")
        .collect();
    Ok(batch.project(&keep)?)
}

impl ParquetSink {
    /// A sink writing under `cfg.dir` (created if missing).
    pub fn new(cfg: ParquetConfig) -> Result<Self, SinkError> {
        std::fs::create_dir_all(&cfg.dir).map_err(io(&cfg.dir))?;
        // Refuse a bad level now, not at the first file.
        ZstdLevel::try_new(cfg.zstd_level)?;
        Ok(ParquetSink {
            cfg,
            open: HashMap::new(),
            counters: Arc::default(),
            known: None,
        })
    }

    /// The directory of a partition.
    pub fn partition_dir(&self, key: &BatchKey) -> PathBuf {
        self.cfg
            .dir
            .join(key.kind.as_str())
            .join(format!("market={}", key.market.as_str()))
            .join(format!("date={}", date_string(key.day)))
    }

    /// The first free part number in `dir` (files of earlier runs are never overwritten).
    fn next_part(dir: &Path) -> Result<u64, SinkError> {
        let mut next = 0;
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            let name = e.map_err(io(dir))?.file_name();
            let name = name.to_string_lossy();
            let stem = name.trim_start_matches('.').trim_start_matches("part-");
            if let Some(n) = stem.split('.').next().and_then(|n| n.parse::<u64>().ok()) {
                next = next.max(n + 1);
            }
        }
        Ok(next)
    }

    fn open_file(&self, key: &BatchKey, schema: SchemaRef) -> Result<OpenFile, SinkError> {
        let dir = self.partition_dir(key);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let n = Self::next_part(&dir)?;
        let path = dir.join(format!("part-{n:05}.parquet"));
        let tmp = dir.join(format!(".part-{n:05}.parquet.tmp"));
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let props = writer_properties_with(
            &schema,
            self.cfg.codec,
            self.cfg.zstd_level,
            self.cfg.row_group_rows,
            self.cfg.page_bytes,
        )?;
        let mut options = ArrowWriterOptions::new().with_properties(props);
        if self.cfg.spill_pages {
            let spill = dir.join(format!(".part-{n:05}.pages"));
            let pages = SpilledPages::create(&spill).map_err(io(&spill))?;
            options = options.with_page_store_factory(Arc::new(pages));
        }
        let writer = ArrowWriter::try_new_with_options(file, schema, options)?;
        Ok(OpenFile {
            writer,
            tmp,
            path,
            opened: Instant::now(),
            rows: 0,
            origins: Vec::new(),
        })
    }

    fn finish(&self, f: OpenFile) -> Result<(), SinkError> {
        let OpenFile {
            mut writer,
            tmp,
            path,
            rows,
            origins,
            ..
        } = f;
        if !origins.is_empty() {
            let ids: Vec<String> = origins.iter().map(|(id, _)| id.to_string()).collect();
            writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                BATCH_IDS.into(),
                ids.join(","),
            ));
        }
        writer.close()?;
        let bytes = std::fs::metadata(&tmp).map_err(io(&tmp))?.len();
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.counters.rows.fetch_add(rows, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        for (id, hook) in origins {
            hook.committed(id);
        }
        Ok(())
    }

    fn roll_due(&mut self, all: bool) -> Result<(), SinkError> {
        let due: Vec<BatchKey> = self
            .open
            .iter()
            .filter(|(_, f)| {
                all || f.opened.elapsed() >= self.cfg.max_file_age
                    || f.writer.bytes_written() as u64 + f.writer.in_progress_size() as u64
                        >= self.cfg.max_file_bytes
            })
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            if let Some(f) = self.open.remove(&k) {
                self.finish(f)?;
            }
        }
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if let Some(o) = batch.origin.as_ref().filter(|o| o.replayed) {
            if self.known_ids().contains(&o.id) {
                // Cut again after a restart, and in a closed file already.
                self.counters
                    .retries_found_landed
                    .fetch_add(1, Ordering::Relaxed);
                o.hook.committed(o.id);
                return Ok(());
            }
        }
        let data = project(&batch.data)?;
        if !self.open.contains_key(&batch.key) {
            let f = self.open_file(&batch.key, data.schema())?;
            self.open.insert(batch.key, f);
        }
        if let Some(f) = self.open.get_mut(&batch.key) {
            // In slices: see `slice_ends`.
            write_in_slices(&mut f.writer, &data)?;
            f.rows += data.num_rows() as u64;
            if let Some(o) = &batch.origin {
                f.origins.push((o.id, o.hook.clone()));
            }
            self.counters
                .written_rows
                .fetch_add(data.num_rows() as u64, Ordering::Relaxed);
        }
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.roll_due(false)
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.roll_due(false)
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.roll_due(true)
    }

    fn counters(&self) -> Arc<SinkCounters> {
        self.counters.clone()
    }

    fn known_batches(&mut self, from: u64) -> Result<Vec<u64>, SinkError> {
        Ok(self
            .known_ids()
            .iter()
            .copied()
            .filter(|&i| i >= from)
            .collect())
    }
}

impl ParquetSink {
    /// The ids in the closed files' footers (read once; the sink adds what it closes later
    /// only to files, which a restart reads again).
    fn known_ids(&mut self) -> &std::collections::HashSet<u64> {
        self.known.get_or_insert_with(|| {
            let mut ids = std::collections::HashSet::new();
            let mut stack = vec![self.cfg.dir.clone()];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "parquet") {
                        if let Some(v) = file_meta(&p, BATCH_IDS) {
                            ids.extend(v.split(',').filter_map(|i| i.parse::<u64>().ok()));
                        }
                    }
                }
            }
            ids
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use tickwire_codecs::arrow::BatchBuilder;
    use tickwire_codecs::decimal::{DpSet, Wide};
    use tickwire_codecs::record::*;

    /// A batch of more rows than one slice handed to the writer comes back whole, in order,
    /// value for value (the slices of `WRITE_SLICE` rows and the one left over).
    #[test]
    fn a_batch_of_several_slices_is_written_whole() {
        let data = trades(WRITE_SLICE * 2 + 123);
        let (file, codecs) = write_and_read_back(&data, ParquetCodec::Zstd, "slices");
        assert!(file.starts_with(std::env::temp_dir()));
        assert!(codecs.iter().all(|c| matches!(c, Compression::ZSTD(_))));
    }

    /// Every codec of the config writes files that read back value for value, with that
    /// codec in their column chunks.
    #[test]
    fn every_codec_writes_what_it_says() {
        let data = trades(3000);
        for (codec, want) in [
            (ParquetCodec::Zstd, "ZSTD"),
            (ParquetCodec::Lz4, "LZ4_RAW"),
            (ParquetCodec::Snappy, "SNAPPY"),
            (ParquetCodec::None, "UNCOMPRESSED"),
        ] {
            let (_, codecs) = write_and_read_back(&data, codec, want);
            assert!(!codecs.is_empty());
            for c in codecs {
                assert!(c.to_string().starts_with(want), "{codec:?}: {c}");
            }
        }
    }

    fn trades(n: usize) -> RecordBatch {
        let mut b = BatchBuilder::new(Kind::Trade, n);
        let mut dp = DpSet::ALL_NULL;
        dp.set(0, 2);
        dp.set(1, 8);
        for i in 0..n as i64 {
            let rec = Record::Trade(Trade {
                header: Header::new(Kind::Trade, Market::Spot, SymbolId(0), i * 1000, i * 1000),
                trade_id: i,
                price: 3_700_000_000_000 + i,
                qty: Wide::new(i128::from(i) * 7),
                trade_time: i * 1000,
                dp,
                is_buyer_maker: (i % 2) as u8,
                pad: [0; 7],
            });
            b.append(&rec, &[], "BTCUSDT").expect("append");
        }
        b.finish().expect("batch")
    }

    /// Writes `data` through a sink with `codec`, reads the file back, checks it holds `data`
    /// (less `market`) value for value, and returns the file and its column chunks' codecs.
    fn write_and_read_back(
        data: &RecordBatch,
        codec: ParquetCodec,
        tag: &str,
    ) -> (PathBuf, Vec<Compression>) {
        let (file, codecs, _) = write_and_read_back_with(data, tag, |c| c.codec = codec);
        (file, codecs)
    }

    /// [`write_and_read_back`] with the config `set` makes; also returns the file's bytes.
    fn write_and_read_back_with(
        data: &RecordBatch,
        tag: &str,
        set: impl FnOnce(&mut ParquetConfig),
    ) -> (PathBuf, Vec<Compression>, Vec<u8>) {
        let dir = std::env::temp_dir().join(format!("tw-parquet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = ParquetConfig::new(&dir);
        set(&mut cfg);
        let codec = cfg.codec;
        let mut sink = ParquetSink::new(cfg).expect("sink");
        let key = BatchKey {
            kind: Kind::Trade,
            market: Market::Spot,
            day: 0,
        };
        sink.write(&Batch {
            key,
            seq: 1,
            data: Arc::new(data.clone()),
            origin: None,
        })
        .expect("write");
        sink.close().expect("close");
        let file = sink.partition_dir(&key).join("part-00000.parquet");
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).expect("file"))
            .expect("reader");
        let codecs: Vec<Compression> = builder
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns().iter().map(|c| c.compression()))
            .collect();
        let got: Vec<RecordBatch> = builder
            .build()
            .expect("reader")
            .map(|r| r.expect("batch"))
            .collect();
        let got = arrow_select::concat::concat_batches(&got[0].schema(), &got).expect("concat");
        let want = project(data).expect("project");
        assert_eq!(got.num_rows(), data.num_rows());
        for c in 0..want.num_columns() {
            let name = want.schema().field(c).name().clone();
            let g = got.column_by_name(&name).expect("column");
            assert!(
                g.as_ref() == want.column(c).as_ref(),
                "{codec:?}: column {name} differs"
            );
        }
        let bytes = std::fs::read(&file).expect("file");
        let left: Vec<_> = std::fs::read_dir(sink.partition_dir(&key))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the Parquet file is left: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
        (file, codecs, bytes)
    }

    /// With the pages spilled, a file of many pages and row groups is the very file the
    /// heap-held pages make, byte for byte, and reads back value for value; the spill file
    /// leaves nothing behind.
    #[test]
    fn spilled_pages_make_the_same_file() {
        let data = trades(20_000);
        let small = |c: &mut ParquetConfig| {
            c.row_group_rows = 4096;
            c.page_bytes = 4096;
        };
        let (_, _, spilled) = write_and_read_back_with(&data, "spill-on", |c| {
            small(c);
            c.spill_pages = true;
        });
        let (_, _, held) = write_and_read_back_with(&data, "spill-off", |c| {
            small(c);
            c.spill_pages = false;
        });
        assert_eq!(spilled, held);
        let meta = parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(held))
            .expect("footer");
        use parquet::file::reader::FileReader;
        assert_eq!(meta.metadata().num_row_groups(), 5);
    }

    /// Slices of a batch with a list column hold at most `WRITE_SLICE_VALUES` list values
    /// (a row with more is a slice of its own), at most `WRITE_SLICE` rows, and cover every
    /// row once, in order; the file written through them reads back value for value.
    #[test]
    fn slices_bound_the_list_values_and_the_file_reads_back_whole() {
        use arrow_array::builder::{Decimal128Builder, Int64Builder, ListBuilder};
        let lens: Vec<usize> = (0..9000)
            .map(|i| match i {
                100 => WRITE_SLICE_VALUES + 7,
                i if i % 97 == 0 => 0,
                i => i % 41,
            })
            .collect();
        let mut ids = Int64Builder::new();
        let mut qty = ListBuilder::new(
            Decimal128Builder::new().with_data_type(tickwire_codecs::arrow::QTY_TYPE),
        );
        for (i, &len) in lens.iter().enumerate() {
            ids.append_value(i as i64);
            for j in 0..len {
                qty.values()
                    .append_value(i128::from(i as i64) * 1_000_000_007 + j as i128);
            }
            qty.append(true);
        }
        let data = RecordBatch::try_from_iter([
            ("id", Arc::new(ids.finish()) as arrow_array::ArrayRef),
            ("qty", Arc::new(qty.finish()) as arrow_array::ArrayRef),
        ])
        .expect("batch");
        let ends = slice_ends(&data);
        let mut off = 0;
        for &end in &ends {
            assert!(end > off && end - off <= WRITE_SLICE, "slice {off}..{end}");
            let values: usize = lens[off..end].iter().sum();
            assert!(
                values <= WRITE_SLICE_VALUES || end - off == 1,
                "slice {off}..{end} holds {values} values"
            );
            off = end;
        }
        assert_eq!(off, data.num_rows());
        assert!(ends.contains(&100) && ends.contains(&101), "{ends:?}");
        let total: usize = lens.iter().sum();
        assert!(ends.len() >= total / WRITE_SLICE_VALUES, "{}", ends.len());

        write_and_read_back(&data, ParquetCodec::Zstd, "lists");
    }
}
