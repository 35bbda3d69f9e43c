//! Parquet sink configuration.

use std::path::PathBuf;
use std::time::Duration;

/// Parquet sink settings.
#[derive(Debug, Clone)]
pub struct ParquetConfig {
    /// Root directory of the dataset.
    pub dir: PathBuf,
    /// Roll a file once it holds this many bytes (encoded, before the footer).
    pub max_file_bytes: u64,
    /// Roll a file once it has been open this long.
    pub max_file_age: Duration,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// The codec of the data pages.
    pub codec: ParquetCodec,
    /// zstd level (with [`ParquetCodec::Zstd`]).
    pub zstd_level: i32,
    /// Data pages are cut at this many bytes (before compression).
    pub page_bytes: usize,
    /// The open row groups' finished pages wait in a file on the dataset's disk (see
    /// [`super::SpilledPages`]) instead of on the heap.
    pub spill_pages: bool,
}

impl ParquetConfig {
    /// Defaults for `dir`: 128 MiB files, rolled at the latest every 5 minutes, row groups of
    /// up to 1M rows (pyarrow's default), zstd level 1, pages of 32 KiB, the open row groups'
    /// pages spilled to a file. Every column of every open file holds a page being filled and
    /// a zstd context sized for it, and the parquet crate keeps a row group's finished pages
    /// until the group ends and makes its writer state (contexts, buffers) anew for every row
    /// group: at 200k msg/s, 32 KiB pages, spilled pages and 1M-row groups keep the engine's
    /// peak RSS at 148-159 MiB instead of 222-240 (128 KiB pages on the heap, 128k-row
    /// groups), for files 2% larger (perf/RESULTS.md, "Smaller pages, and the open row groups'
    /// pages on disk").
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ParquetConfig {
            dir: dir.into(),
            max_file_bytes: 128 << 20,
            max_file_age: Duration::from_secs(300),
            row_group_rows: 1 << 20,
            codec: ParquetCodec::Zstd,
            zstd_level: 1,
            page_bytes: 32 << 10,
            spill_pages: true,
        }
    }
}

/// The codec of a Parquet file's data pages (`compression` in the config).
///
/// zstd (the default) makes the smallest files; its price is memory: the parquet crate gives
/// every column of every open row group a zstd compression context (and a decompression one it
/// never uses). `lz4` (LZ4_RAW) and `snappy` keep no such state: at 200k msg/s the engine's
/// peak RSS after 45 s is 118 MiB instead of 148-149, for files 1.9x as large and no
/// clear difference in CPU (perf/RESULTS.md, "Smaller pages, and the open row groups' pages
/// on disk").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCodec {
    Zstd,
    Lz4,
    Snappy,
    None,
}

impl ParquetCodec {
    /// The codec named `name` (`zstd`, `lz4`, `snappy`, `none`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "zstd" => ParquetCodec::Zstd,
            "lz4" => ParquetCodec::Lz4,
            "snappy" => ParquetCodec::Snappy,
            "none" => ParquetCodec::None,
            _ => return None,
        })
    }

    /// The codec's name in the config (what [`ParquetCodec::parse`] takes).
    pub fn name(self) -> &'static str {
        match self {
            ParquetCodec::Zstd => "zstd",
            ParquetCodec::Lz4 => "lz4",
            ParquetCodec::Snappy => "snappy",
            ParquetCodec::None => "none",
        }
    }
}
