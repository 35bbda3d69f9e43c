//! PostgreSQL and TimescaleDB: the schema ([`ddl`]), the binary COPY encoder ([`copy`]) and the
//! sink.
//!
//! Inserts are `COPY <schema>.<table> (<columns>) FROM STDIN (FORMAT binary)` with a body
//! encoded straight from the Arrow batch, followed, in the same transaction, by one row in
//! the batch ledger (`tickwire_batches`: batch id, table, rows). The transaction makes the
//! two atomic, so after a failed attempt (connection lost, server restarted, commit
//! acknowledgement lost) the sink looks the batch id up in the ledger and sends the batch
//! again only if it is not there: retries never duplicate, without a unique key on the data
//! (which hypertables could only have with the time column in it).
//!
//! Retries, the memory budget, spill files, replay and dead letters are the shared
//! [`crate::durable`] core, the same as the ClickHouse sink's.
//!
//! At start the sink applies the migrations (`tickwire_migrations`), under an advisory lock:
//! the tables always, then either TimescaleDB's hypertables, compression, retention and
//! continuous aggregate, when the extension is installed or can be created, or a plain
//! `candles_1m` view. Which one ran is in the migrations table and [`PostgresSink::flavor`].

mod config;
pub mod copy;
pub mod ddl;
mod sink;

pub use config::{PostgresConfig, Timescale};
pub use sink::{PostgresSink, PostgresStore};
