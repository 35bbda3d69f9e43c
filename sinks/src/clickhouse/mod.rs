//! ClickHouse: schema (this module's [`ddl`]) and, with issue #5, the sink.
//!
//! One table per record kind (`trades`, `agg_trades`, ...), columns named and typed from the
//! kind's Arrow schema, so the DDL and the data cannot drift (a test holds the committed
//! `sql/clickhouse/` files equal to [`ddl::schema_sql`]). Two dialects, picked by server
//! version: modern servers get `DateTime64`, `LowCardinality`, `Bool` and column codecs;
//! 18.16 (Debian's package) gets integer times (µs, `recv_time` ns), `String` and `UInt8`.

pub mod ddl;
