//! PostgreSQL and TimescaleDB: the schema ([`ddl`]), the binary COPY encoder ([`copy`]) and the
//! sink.
//!
//! Inserts are `COPY <schema>.<table> (<columns>) FROM STDIN (FORMAT binary)` with a body
//! encoded straight from the Arrow batch ([`copy`]). A batch goes in
//! [`sink::part_count`] equal parts (one per connection, 2 by default, within 4,096-65,536
//! rows a part), all in flight at once. Each
//! part is one transaction holding its COPY and its row in the ledger (`tickwire_batches`:
//! batch id, part, parts, table, rows), so after a failed attempt (connection lost, server
//! restarted, commit acknowledgement lost) the sink asks the ledger which parts are stored and
//! sends only the others: retries never duplicate, without a unique key on the data (which
//! hypertables could only have with the time column in it).
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
pub mod sink;

pub use config::{redact, PostgresConfig, Timescale};
pub use sink::{PostgresSink, PostgresStore};
