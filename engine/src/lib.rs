//! # tickwire-engine
//!
//! The engine layer of tickwire: the commands of the `tickwire` binary, and (as the pipeline
//! lands) sources, rings, the columnarizer, the publisher and the cache. It builds on
//! `tickwire-codecs`; see ARCHITECTURE.md for how a tick travels through it.

pub mod book;
pub mod bus;
pub mod cache;
pub mod capture;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod http;
pub mod l1;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod openapi;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod query;
pub mod queue;
pub mod readthrough;
pub mod rest;
pub mod runner;
pub mod series;
pub mod sim;
pub mod source;
pub mod tier;
