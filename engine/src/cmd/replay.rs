//! `tickwire replay`: a raw capture ([`crate::source::capture`]) run again through the engine's own
//! decode, sequence checks and order books (synced from the captured snapshot answers) and its
//! pipeline, into Parquet under `--out` or the sinks of a `--config` (and ZMQ if asked). The records are those the live run
//! queued, `recv_time` included. The last stdout line is the JSON summary, `records` per kind
//! like the demo's, and `replay` (entries read, frames, holes the capture had, torn files).
//!
//! Backfill: the replay's batches are cut by what they hold (replayed connection, minute of
//! `recv_time`, `max_rows`), never by the clock, and every store is asked whether it has each
//! one before it is written (the PostgreSQL ledger, ClickHouse's `_batch`, the Parquet
//! footers). A replay run twice into the same stores, or killed and run again, stores every row
//! once. `--from` and `--to` are taken to whole minutes for that (`--from` down, `--to` up).

use crate::pipeline::publish::{Encoding, PubConfig};
use crate::pipeline::queue::FullPolicy;
use crate::pipeline::FlushConfig;
use crate::runner::{self, Input, Settings};
use crate::serve::cache::CacheConfig;
use crate::source::ReplayConfig;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tickwire_sinks::parquet::{ParquetConfig, ParquetSink};
use tickwire_sinks::Sink;

/// `tickwire replay` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The capture directory (`tickwire demo --capture`, `[capture] dir`).
    #[arg(long)]
    pub capture: PathBuf,
    /// Parquet dataset directory.
    #[arg(long, default_value = "replayed")]
    pub out: PathBuf,
    /// Write into the sinks this `tickwire run` config names instead (ClickHouse,
    /// PostgreSQL, Parquet; its other sections are not used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only what was received at or after this time: RFC 3339 UTC
    /// (`2026-12-03T12:00:00Z`, fractions allowed) or ms since the epoch; taken down to its
    /// whole minute (a backfill's batches are whole minutes).
    #[arg(long, value_parser = crate::serve::query::parse_time)]
    pub from: Option<i64>,
    /// Only what was received before this time (as `--from`; taken up to a whole minute).
    #[arg(long, value_parser = crate::serve::query::parse_time)]
    pub to: Option<i64>,
    /// `max` (as fast as the pipeline takes it) or a multiple of the recorded pace (`1`).
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    pub speed: Speed,
    /// Levels a side of the `depth_snapshot` records (as the live run had them).
    #[arg(long, default_value_t = 20)]
    pub book_levels: usize,
    /// Also republish on ZMQ PUB at this address.
    #[arg(long)]
    pub zmq: Option<String>,
    /// Seconds between stats lines on stderr (0: none).
    #[arg(long, default_value_t = 0)]
    pub stats_secs: u64,
}

/// How fast a replay goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the pipeline takes it.
    Max,
    /// This multiple of the recorded pace.
    Times(f64),
}

fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(Speed::Times(x)),
        _ => Err(format!(
            "{s:?}: max, or a positive number (1 = the recorded pace)"
        )),
    }
}

/// A minute in ns: `--from` and `--to` are taken to whole ones.
const MINUTE: i64 = 60_000_000_000;

/// Runs the replay.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.capture.is_dir() {
        anyhow::bail!("capture {}: not a directory", args.capture.display());
    }
    let sinks: Vec<Box<dyn Sink>> = match &args.config {
        Some(path) => {
            crate::config::load(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .settings()?
                .sinks
        }
        None => vec![Box::new(
            ParquetSink::new(ParquetConfig::new(&args.out)).context("parquet sink")?,
        )],
    };
    let settings = Settings {
        input: Input::Replay {
            dir: args.capture.clone(),
            cfg: ReplayConfig {
                full: FullPolicy::default(),
                book_levels: args.book_levels.max(1),
                from: args.from.map(|t| t.div_euclid(MINUTE) * MINUTE),
                to: args
                    .to
                    .map(|t| (t.div_euclid(MINUTE) + i64::from(t % MINUTE != 0)) * MINUTE),
                speed: match args.speed {
                    Speed::Max => None,
                    Speed::Times(x) => Some(x),
                },
                ..Default::default()
            },
        },
        zmq: args.zmq.as_ref().map(|bind| PubConfig {
            bind: bind.clone(),
            encoding: Encoding::Binary,
            sndhwm: 100_000,
            batches: false,
            public: false,
        }),
        sinks,
        // A replay has no live reader waiting: batches fill up.
        flush: FlushConfig {
            max_rows: FlushConfig::default().max_rows,
            max_age: Duration::from_secs(5),
        },
        queue: 65_536,
        // Nothing is dropped: a replay waits for the pipeline as long as it takes.
        full: FullPolicy::Block {
            max_wait: Duration::from_secs(3600),
        },
        http: None,
        cache: CacheConfig::default(),
        read_through: None,
        stats_secs: args.stats_secs,
        subscribe: false,
        book_sync: false,
        rest: Default::default(),
        rotate_after: None,
        book_every: None,
        book_levels: args.book_levels.max(1),
        idle_timeout: Duration::from_secs(60),
        wait_subscribers: 0,
        duration: None,
        pollers: Vec::new(),
        capture: None,
        capture_level: crate::source::capture::LEVEL,
        redis: None,
        nats: None,
        exit_when_idle: None,
        tiering: None,
    };
    println!("{}", runner::run(settings)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::serve::query::parse_time;

    #[test]
    fn times_are_rfc3339_utc_or_ms() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1764763200000"), Ok(1_764_763_200_000_000_000));
        assert_eq!(
            parse_time("2025-12-03T12:00:00Z"),
            Ok(1_764_763_200_000_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1_500_000_000));
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z"),
            Ok(951_782_400_000_000_000)
        );
        for bad in [
            "2025-12-03",
            "2025-13-01T00:00:00Z",
            "2025-12-03T12:00:00",
            "x",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_speed("max"), Ok(Speed::Max));
        assert_eq!(parse_speed("2.5"), Ok(Speed::Times(2.5)));
        assert!(parse_speed("0").is_err());
    }
}
