//! Serving what was taken in: the HTTP server (`http`) with `/health`, `/metrics`, the status
//! page and the query API (`query`, documented by `openapi`), the in-memory Arrow L2 cache
//! (`cache`), the Redis L1 in front of it (`l1`: written from the pipeline thread's bundles,
//! read by the query API) and read-through to the stores for older ranges (`readthrough`).
//!
//! ## The room
//!
//! `serve/` reads what the pipeline hands it (the cache's batches, the L1's bundles, the
//! shared counters) and the stores; it never writes into the data path and never waits on
//! it: a slow query holds up only its own connection.

pub mod cache;
pub mod http;
pub mod l1;
pub mod openapi;
pub mod query;
pub mod readthrough;
