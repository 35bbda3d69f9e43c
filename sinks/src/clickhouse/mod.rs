//! ClickHouse: the schema ([`ddl`]), the Native encoder ([`native`]) and the sink.
//!
//! Wire protocol: HTTP. DDL and queries go through the `clickhouse` crate (validation off:
//! 18.16 cannot answer its `DESCRIBE`-based checks); inserts are `INSERT INTO <db>.<table>
//! FORMAT Native` with a Native block encoded straight from the Arrow batch
//! ([`native::encode`]) and sent as the raw body of the crate's `insert_formatted_with`.
//! Transient failures (network, timeouts, overload codes such as 252 "too many parts") are
//! retried with exponential backoff and jitter; data errors go to a dead-letter Parquet file
//! with the error in its metadata; a batch that outlasts `max_attempts` is spilled to a Parquet
//! file. Both are counted, neither is lost. Not yet: replay of spilled files, retry
//! de-duplication (an insert whose acknowledgement was lost is sent again: at-least-once).
//!
//! One table per record kind (`trades`, `agg_trades`, ...), columns named and typed from the
//! kind's Arrow schema, so the DDL and the data cannot drift (a test holds the committed
//! `sql/clickhouse/` files equal to [`ddl::schema_sql`]). Two dialects, picked by server
//! version: modern servers get `DateTime64`, `LowCardinality`, `Bool` and column codecs;
//! 18.16 (Debian's package) gets integer times (µs, `recv_time` ns), `String` and `UInt8`.

mod config;
pub mod ddl;
pub mod native;
mod sink;

pub use config::ClickHouseConfig;
pub use sink::ClickHouseSink;
