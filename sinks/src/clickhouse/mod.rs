//! ClickHouse: the schema ([`ddl`]), the Native encoder ([`native`]) and the sink.
//!
//! Wire protocol: HTTP. DDL and queries go through the `clickhouse` crate (validation off:
//! 18.16 cannot answer its `DESCRIBE`-based checks); inserts are `INSERT INTO <db>.<table>
//! FORMAT Native` with a Native block encoded straight from the Arrow batch
//! ([`native::encode`]) and sent as the raw body of the crate's `insert_formatted_with`.
//! The sink never waits on an outage: batches queue in memory (up to a byte budget, then the
//! oldest are spilled to Parquet files), one attempt is made per backoff period, and spill
//! files are sent first, in order, when the server answers. Data errors go to a dead-letter
//! Parquet file with the error in its metadata. At shutdown what cannot be stored is spilled.
//!
//! Exactly once on retry, on every server version: each batch carries an id (a 64-bit mix of
//! process start and batch sequence) in the `_batch UInt64` column of every row. A batch is one UTC day of one kind, so
//! one partition and one atomic part: after a failed attempt the sink first asks how many rows
//! with that id are stored; if all of them are (the server took it, the answer was lost) it
//! does not send it again. Spill files keep the batch id and table in their metadata and are
//! replayed, with the same check, when the sink next starts.
//!
//! One table per record kind (`trades`, `agg_trades`, ...), columns named and typed from the
//! kind's Arrow schema, so the DDL and the data cannot drift (a test holds the committed
//! `sql/clickhouse/` files equal to [`ddl::schema_sql`]). Two dialects, picked by server
//! version: modern servers get `DateTime64`, `LowCardinality`, `Bool` and column codecs;
//! 18.16 (Debian's package) gets integer times (µs, `recv_time` ns), `String` and `UInt8`.

mod config;
pub mod ddl;
pub mod native;
pub mod shard;
mod sink;

pub use config::ClickHouseConfig;
pub use shard::ShardedSink;
pub use sink::{http_client, ClickHouseSink, ClickHouseStore};
