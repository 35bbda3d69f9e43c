//! Parquet files: the embedded default store.
//!
//! Layout: `<dir>/<kind>/market=<m>/date=<YYYY-MM-DD>/part-<n>.parquet`, a hive partitioning
//! that pyarrow, DuckDB and polars read as one dataset (`market` and `date` come from the path
//! and are not stored in the files). zstd compression, dictionary-encoded symbols. A file is
//! written as `.part-<n>.parquet.tmp` (readers skip dot-files) and renamed when complete, so a
//! reader never sees half a file. Files roll when they reach `max_file_bytes` or
//! `max_file_age`; `close` finishes every open file.

mod config;
mod pages;
mod sink;

pub use config::{ParquetCodec, ParquetConfig};
pub use pages::SpilledPages;
pub use sink::{
    file_meta, write_in_slices, writer_properties, writer_properties_with, ParquetSink, BATCH_IDS,
};
