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
    /// zstd level.
    pub zstd_level: i32,
    /// Data pages are cut at this many bytes (before compression).
    pub page_bytes: usize,
}

impl ParquetConfig {
    /// Defaults for `dir`: 128 MiB files, rolled at the latest every 5 minutes, row groups of
    /// 128k rows, zstd level 1, pages of 128 KiB. Every column of every open file holds a
    /// page being filled and a zstd context sized for it: level 1 and 128 KiB pages keep the
    /// engine's RSS at 200k msg/s at ~200 MiB instead of ~285 (level 3, 1 MiB pages), for
    /// files of the same size (perf/RESULTS.md, "What the Parquet writers hold").
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ParquetConfig {
            dir: dir.into(),
            max_file_bytes: 128 << 20,
            max_file_age: Duration::from_secs(300),
            row_group_rows: 128 * 1024,
            zstd_level: 1,
            page_bytes: 128 << 10,
        }
    }
}
