//! # tickwire-engine
//!
//! The engine layer of tickwire, one folder a room along the path of a tick (ARCHITECTURE.md
//! names them one for one):
//!
//! - [`source`]: WebSocket connections and their rotation, order books, REST and its weight
//!   budget, the REST-only series, raw capture and replay: where a tick enters and is decoded.
//! - [`pipeline`]: the bounded queue, ZMQ publishing, columnarizing into Arrow and flushing to
//!   the sinks (`tickwire-sinks`), the latency histograms.
//! - [`serve`]: HTTP (health, metrics, status page, query API, OpenAPI), the Arrow L2 cache,
//!   the Redis L1 and read-through to the stores.
//! - [`bus`]: NATS JetStream scale-out, the collector that publishes and the writer that
//!   stores.
//! - [`tier`]: hot -> cold ClickHouse and the Parquet archive.
//! - [`sim`]: the Binance-compatible simulator (WebSocket and REST, limits and bans).
//! - [`config`] (the TOML file), [`runner`] (builds the threads and tasks of a run from its
//!   settings and stops them in order) and [`cmd`] (the `tickwire` subcommands, logs and
//!   progress).
//!
//! Data runs one way: a source hands records to the pipeline's queue and publisher; the
//! pipeline hands batches to the sinks, the cache, the L1 and the bus; `serve` only reads.
//! What goes the other way is definitions and clocks. Only `runner` and `cmd` know every room.

pub mod bus;
pub mod cmd;
pub mod config;
pub mod pipeline;
pub mod runner;
pub mod serve;
pub mod sim;
pub mod source;
pub mod tier;
