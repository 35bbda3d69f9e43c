//! `tickwire demo`: the local simulator and the engine together, end to end, on real sockets.
//!
//! Starts a simulator server per market (spot, USD-M) on loopback, connects one combined-stream
//! source to each (every stream kind of every default symbol), and runs the pipeline: ZMQ PUB
//! on `--zmq` and Parquet under `--out`. A stats line goes to stderr every `--stats-secs`. After
//! `--duration` seconds, or on SIGINT/SIGTERM, it stops cleanly: the simulators stop sending and
//! close their connections after the last frame, the sources read to the close, the queue
//! drains, every builder flushes, every sink closes. The last stdout line is a JSON summary:
//! `sent` (per kind, by the simulator), `records` (per kind, taken in by the engine), `rows`
//! (per sink), `published`, `dropped`, `errors`, and the details behind them.

use crate::pipeline::publish::{Encoding, PubConfig};
use crate::pipeline::queue::FullPolicy;
use crate::pipeline::FlushConfig;
use crate::runner::{self, Input, ReadThrough, Settings};
use crate::serve::cache::CacheConfig;
use crate::sim::market::default_symbols;
use crate::sim::Faults;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tickwire_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use tickwire_sinks::parquet::{ParquetConfig, ParquetSink};
use tickwire_sinks::postgres::{PostgresConfig, PostgresSink, Timescale};
use tickwire_sinks::Sink;

/// `tickwire demo` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to run before stopping cleanly.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Keep every frame, snapshot answer and connection event here (`tickwire replay` reads
    /// it).
    #[arg(long, value_name = "DIR")]
    pub capture: Option<PathBuf>,
    /// Parquet dataset directory.
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// Simulated messages per second, in total over both markets (half each); 0: as fast as
    /// the engine takes them.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// ZMQ PUB bind address.
    #[arg(long, default_value = "tcp://127.0.0.1:5556")]
    pub zmq: String,
    /// ZMQ payload encoding.
    #[arg(long, value_enum, default_value = "binary")]
    pub encoding: Encoding,
    /// Also publish every flushed batch as an Arrow IPC stream on `batch.<kind>.<market>`.
    #[arg(long)]
    pub zmq_batches: bool,
    /// Allow a `--zmq` bind that reaches other machines (e.g. `tcp://*:5556`): ZMQ PUB has no
    /// authentication, so this is an explicit choice.
    #[arg(long)]
    pub zmq_public: bool,
    /// Seconds between stats lines on stderr (0: none).
    #[arg(long, default_value_t = 2)]
    pub stats_secs: u64,
    /// Flush a batch at this many rows.
    #[arg(long, default_value_t = FlushConfig::default().max_rows)]
    pub max_rows: usize,
    /// Flush a batch when its oldest row is this many ms old.
    #[arg(long, default_value_t = FlushConfig::default().max_age.as_millis() as u64)]
    pub max_age_ms: u64,
    /// Before starting, wait (up to 30 s) for this many ZMQ subscriptions, so that subscribers
    /// see every record from the first.
    #[arg(long, default_value_t = 0)]
    pub wait_subscribers: usize,
    /// Turn on every simulator fault at a moderate rate: skipped ids (a gap every 2,000
    /// frames), a malformed frame every 5,000, a 2 MiB oversized frame every 20,000, each
    /// connection closed after 2.5 s, a ping every 500 ms whose pong must come within 1 s.
    /// The summary's `injected` says what was done, `gaps` what the engine detected.
    #[arg(long)]
    pub faults: bool,
    /// Also write every kind into ClickHouse at this HTTP URL (e.g. http://127.0.0.1:8123).
    #[arg(long)]
    pub clickhouse: Option<String>,
    /// ClickHouse database for `--clickhouse`.
    #[arg(long, default_value = "tickwire")]
    pub clickhouse_database: String,
    /// Also write every kind into PostgreSQL/TimescaleDB at this URL
    /// (e.g. postgres://postgres@127.0.0.1:5432/postgres).
    #[arg(long)]
    pub postgres: Option<String>,
    /// Also keep the Redis L1 at this URL (e.g. redis://127.0.0.1:6379): candles, recent
    /// ticks, books, latest states, trades on pub/sub.
    #[arg(long)]
    pub redis: Option<String>,
    /// Also publish every record into NATS JetStream at this URL (e.g. nats://127.0.0.1:4222),
    /// subjects `tickwire.<kind>.<market>.<SYMBOL>`, in the stream `--nats-stream`.
    #[arg(long)]
    pub nats: Option<String>,
    /// The JetStream stream for `--nats` (created when missing).
    #[arg(long, default_value = "TICKWIRE")]
    pub nats_stream: String,
    /// Key prefix for `--redis`.
    #[arg(long, default_value = "tickwire:")]
    pub redis_prefix: String,
    /// PostgreSQL schema for `--postgres`.
    #[arg(long, default_value = "public")]
    pub postgres_schema: String,
    /// TimescaleDB for `--postgres`: off, auto (where the extension exists or can be
    /// created; plain tables otherwise, the server's reason logged) or require.
    #[arg(long, default_value = "auto", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Timescale>()))]
    pub postgres_timescale: Timescale,
    /// Connect to the simulator's bare `/stream` and SUBSCRIBE to every stream (paced, ids
    /// matched to the answers) instead of naming them in the URL.
    #[arg(long)]
    pub subscribe: bool,
    /// Emit a `depth_snapshot` record of each live order book (synced from the simulator's REST
    /// snapshots) every this many ms; 0: never.
    #[arg(long, default_value_t = 0)]
    pub book_snapshot_ms: u64,
    /// Reconnect a connection that has been silent this many seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Seconds of received data the query cache keeps (with --http).
    #[arg(long, default_value_t = 3600)]
    pub cache_window_secs: u64,
    /// Replace each connection after this many seconds, overlapping it with its replacement
    /// and dropping the duplicates (Binance closes connections at 24 h; `run` rotates at
    /// 23 h). 0: never.
    #[arg(long, default_value_t = 0)]
    pub rotate_after_secs: u64,
    /// MiB of Arrow data the query cache may hold (with --http); `[http] cache_budget_mb`.
    #[arg(long, default_value_t = 512, alias = "cache-mb")]
    pub cache_budget_mb: usize,
    /// Serve the status page, /health, /metrics and the query API on this address (e.g.
    /// 127.0.0.1:9464).
    #[arg(long)]
    pub http: Option<String>,
    /// Bearer token every HTTP request but /health and the page must carry; required when
    /// `--http` is not a loopback address.
    #[arg(long, env = "TICKWIRE_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// Size of the queue from the sources to the pipeline, in records (`queue / 16` bundles of
    /// up to 32 records).
    #[arg(long, default_value_t = 65_536)]
    pub queue: usize,
    /// Render all the simulator's frames (`--rate` x `--duration`) before the run starts and
    /// only send them during it, so that the load generator costs its writes alone (perf:
    /// the engine's own ceiling). Frames are kept in memory, about 500 bytes each.
    #[arg(long)]
    pub prerender: bool,
}

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.prerender && args.rate == 0 {
        anyhow::bail!("--prerender renders --rate x --duration frames: it needs --rate > 0");
    }
    let parquet = ParquetSink::new(ParquetConfig::new(&args.out)).context("parquet sink")?;
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(parquet)];
    if let Some(url) = &args.clickhouse {
        let mut cfg = ClickHouseConfig::new(url);
        cfg.database.clone_from(&args.clickhouse_database);
        cfg.durability.spill_dir = args.out.join("_clickhouse-spill");
        cfg.password = std::env::var("TICKWIRE_CLICKHOUSE_PASSWORD").ok();
        cfg.user = std::env::var("TICKWIRE_CLICKHOUSE_USER").ok();
        sinks.push(Box::new(ClickHouseSink::new(cfg).with_context(|| {
            format!("clickhouse sink at {}", tickwire_sinks::redact(url))
        })?));
    }
    if let Some(url) = &args.postgres {
        let mut cfg = PostgresConfig::new(url);
        cfg.schema.clone_from(&args.postgres_schema);
        cfg.timescale = args.postgres_timescale;
        cfg.durability.spill_dir = args.out.join("_postgres-spill");
        sinks.push(Box::new(PostgresSink::new(cfg).with_context(|| {
            format!("postgres sink at {}", tickwire_sinks::redact(url))
        })?));
    }
    let settings = Settings {
        input: Input::Simulator {
            symbols: default_symbols(),
            rate: args.rate,
            faults: if args.faults {
                Faults::moderate()
            } else {
                Faults::default()
            },
            prerender: args.prerender,
        },
        zmq: Some(PubConfig {
            bind: args.zmq.clone(),
            encoding: args.encoding,
            sndhwm: 100_000,
            batches: args.zmq_batches,
            public: args.zmq_public,
        }),
        sinks,
        flush: FlushConfig {
            max_rows: args.max_rows,
            max_age: Duration::from_millis(args.max_age_ms),
        },
        queue: args.queue,
        full: FullPolicy::default(),
        http: args.http.as_ref().map(|bind| crate::serve::http::Listen {
            bind: bind.clone(),
            token: args
                .http_token
                .clone()
                .and_then(crate::serve::http::Token::new),
        }),
        cache: CacheConfig {
            window: Duration::from_secs(args.cache_window_secs),
            budget_bytes: args.cache_budget_mb << 20,
        },
        // The query API reads older ranges from PostgreSQL if given, else ClickHouse.
        read_through: match (&args.postgres, &args.clickhouse) {
            (Some(url), _) => Some(ReadThrough::Postgres {
                url: url.clone(),
                schema: args.postgres_schema.clone(),
            }),
            (None, Some(url)) => Some(ReadThrough::ClickHouse {
                url: url.clone(),
                database: args.clickhouse_database.clone(),
                user: std::env::var("TICKWIRE_CLICKHOUSE_USER").ok(),
                password: std::env::var("TICKWIRE_CLICKHOUSE_PASSWORD").ok(),
            }),
            (None, None) => None,
        },
        stats_secs: args.stats_secs,
        subscribe: args.subscribe,
        book_sync: true,
        rest: Default::default(),
        // The simulator's connections share its market, so a replacement connection sees the
        // same frames as the one it replaces, as on Binance.
        rotate_after: (args.rotate_after_secs > 0)
            .then(|| Duration::from_secs(args.rotate_after_secs)),
        book_every: (args.book_snapshot_ms > 0)
            .then(|| Duration::from_millis(args.book_snapshot_ms)),
        book_levels: 20,
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
        wait_subscribers: args.wait_subscribers,
        duration: Some(Duration::from_secs(args.duration)),
        pollers: Vec::new(),
        capture: args.capture.clone(),
        capture_level: crate::source::capture::LEVEL,
        redis: args.redis.as_ref().map(|url| {
            let mut c = crate::serve::l1::L1Config::new(url);
            c.prefix.clone_from(&args.redis_prefix);
            c
        }),
        exit_when_idle: None,
        tiering: None,
        nats: args
            .nats
            .as_ref()
            .map(|url| crate::bus::collector::NatsConfig::new(url, &args.nats_stream)),
    };
    let summary = runner::run(settings)?;
    // The summary names where the data went.
    let summary = format!(
        "{},\"out\":{:?},\"zmq\":{:?}}}",
        summary.strip_suffix('}').unwrap_or(&summary),
        args.out.display().to_string(),
        args.zmq
    );
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}
