//! `tickwire run` configuration: a TOML file, every key overridable by the environment.
//!
//! Parse, override, validate, then build: [`load`] returns a [`Config`] or an error naming
//! the key; [`Config::settings`] cannot fail for config reasons. Unknown keys are refused with
//! their name (`deny_unknown_fields`), also when they come from the environment.
//!
//! Environment: `TICKWIRE_<SECTION>__<KEY>=value` overrides `[section] key` (two underscores
//! between path segments; array elements by index: `TICKWIRE_SINKS__0__DIR=/data`). Values are
//! read as TOML scalars (integers, floats, booleans), anything else as a string.
//! `TICKWIRE_STATS_SECS` and `TICKWIRE_DURATION_SECS` set the top-level keys. A variable with
//! `__` that names no key is refused; other `TICKWIRE_*` variables without `__` (such as
//! `TICKWIRE_BIN`) are left alone.

use crate::pipeline::publish::{Encoding, PubConfig};
use crate::pipeline::queue::FullPolicy;
use crate::pipeline::FlushConfig;
use crate::runner::{Input, ReadThrough, Settings};
use crate::serve::cache::CacheConfig;
use crate::sim::market::default_symbols;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tickwire_codecs::record::Market;
use tickwire_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use tickwire_sinks::parquet::{ParquetCodec, ParquetConfig, ParquetSink};
use tickwire_sinks::postgres::{PostgresConfig, PostgresSink, Timescale};
use tickwire_sinks::Sink;

/// Binance's streams per connection limit.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The in-process simulator (demo mode: no internet needed).
    #[serde(default)]
    pub simulator: SimulatorConfig,
    /// Exchange connections.
    #[serde(default)]
    pub sources: Vec<SourceEntry>,
    /// How connections behave.
    #[serde(default)]
    pub connection: ConnectionConfig,
    /// Queue and batching.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// ZMQ republish.
    #[serde(default)]
    pub zmq: ZmqConfig,
    /// Where batches go.
    #[serde(default = "default_sinks")]
    pub sinks: Vec<SinkConfig>,
    /// /health and /metrics.
    #[serde(default)]
    pub http: HttpConfig,
    /// REST to the exchange (snapshots, exchangeInfo).
    #[serde(default)]
    pub rest: RestConfig,
    /// The USD-M series only REST serves (open interest, long/short ratios), polled.
    #[serde(default)]
    pub pollers: Vec<PollerConfig>,
    /// Raw capture of every frame, for `tickwire replay`.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// Hot -> cold tiering of the ClickHouse tables on a schedule (absent: none).
    pub tiering: Option<TieringConfig>,
    /// Seconds between stats lines on stderr (0: none).
    #[serde(default = "default_stats_secs")]
    pub stats_secs: u64,
    /// Stop after this many seconds (absent: run until SIGINT/SIGTERM).
    pub duration_secs: Option<u64>,
}

fn default_stats_secs() -> u64 {
    5
}

fn default_sinks() -> Vec<SinkConfig> {
    vec![SinkConfig::Parquet(ParquetSinkConfig::default())]
}

/// `[connection]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Connect to the bare `/stream` and SUBSCRIBE to the streams (ids matched to answers,
    /// at most 4 control messages a second), instead of naming them in the URL.
    pub subscribe: bool,
    /// Reconnect a connection that has been silent (no frame, no ping) this many seconds.
    pub idle_timeout_secs: u64,
    /// Keep a live order book per depth stream, synced from REST snapshots (the simulator's
    /// own address over HTTP, Binance's REST hosts over HTTPS).
    pub book_sync: bool,
    /// Emit a `depth_snapshot` record of each live book every this many ms (0: never).
    pub book_snapshot_ms: u64,
    /// Levels a side in those records.
    pub book_levels: usize,
    /// Replace each connection after this many seconds, with overlap and duplicates dropped,
    /// ahead of Binance's 24 h close (0: never).
    pub rotate_after_secs: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            subscribe: false,
            idle_timeout_secs: 60,
            book_sync: true,
            book_snapshot_ms: 0,
            book_levels: 20,
            rotate_after_secs: 23 * 3600,
        }
    }
}

/// `[rest]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestConfig {
    /// Of each REST host's per-minute request-weight limit (exchangeInfo's `rateLimits`:
    /// 6,000 spot, 2,400 USD-M), the share this process spends at most (0 < share <= 1).
    pub max_weight_share: f64,
    /// Requests to USD-M `/futures/data/*` (the polled series) the exchange allows an IP in
    /// 5 minutes (Binance: 1,000); this process sends at most `max_weight_share` of it.
    pub data_requests_per_5min: u64,
}

impl Default for RestConfig {
    fn default() -> Self {
        let d = crate::source::rest::RestOptions::default();
        RestConfig {
            max_weight_share: d.max_weight_share,
            data_requests_per_5min: d.data_per_5min,
        }
    }
}

/// `[[pollers]]`: USD-M series only REST serves, polled through the weight budget.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollerConfig {
    /// Which: `openInterest` (the value now), `openInterestHist`,
    /// `topLongShortPositionRatio`, `topLongShortAccountRatio`, `globalLongShortAccountRatio`.
    pub series: Vec<String>,
    /// Period of the `/futures/data/` series: 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h or 1d.
    #[serde(default = "default_poll_period")]
    pub period: String,
    /// USD-M symbols, or `["*"]`: every USD-M symbol recorded (followed as listings change).
    #[serde(default = "default_poll_symbols")]
    pub symbols: Vec<String>,
    /// Seconds between polls of `openInterest` (the others are polled once a period).
    #[serde(default = "default_poll_every")]
    pub every_secs: u64,
    /// Points asked for on a series' first poll (1-500; Binance keeps 30 days).
    #[serde(default = "default_poll_history")]
    pub history: usize,
}

fn default_poll_period() -> String {
    "5m".into()
}
fn default_poll_symbols() -> Vec<String> {
    vec!["*".into()]
}
fn default_poll_every() -> u64 {
    60
}
fn default_poll_history() -> usize {
    30
}

/// `[simulator]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Start the local Binance simulator and read from it instead of `sources`.
    pub enabled: bool,
    /// Messages per second over both markets.
    pub rate: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            enabled: false,
            rate: 20_000,
        }
    }
}

/// What a `[[sources]]` entry reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// A Binance WebSocket market (or the simulator).
    #[default]
    Binance,
    /// A JetStream stream that collectors publish into.
    Nats,
}

/// Market names in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarketName {
    #[default]
    /// Binance spot.
    Spot,
    /// Binance USD-M futures.
    Usdm,
}

/// `[[sources]]`: streams of one market.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// `binance` (default: a Binance WebSocket market, or the simulator at `endpoint`) or
    /// `nats` (a JetStream writer: the records collectors published, see `url`, `stream`,
    /// `durable`, `filter`).
    #[serde(rename = "type", default)]
    pub source_type: SourceType,
    /// `spot` or `usdm`.
    #[serde(default)]
    pub market: MarketName,
    /// Symbols, e.g. `["BTCUSDT", "ETHUSDT"]`, or `["*"]`: every TRADING symbol of the
    /// market's exchangeInfo that passes `quote_assets`, `contract_types` and `exclude`.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// `type = "nats"`: the server, `nats://host:port`.
    #[serde(default)]
    pub url: String,
    /// `type = "nats"`: the stream the collectors publish into.
    #[serde(default)]
    pub stream: String,
    /// `type = "nats"`: the durable consumer's name (its ack floor is where a restart reads
    /// from).
    #[serde(default)]
    pub durable: String,
    /// `type = "nats"`: a subject filter, e.g. `tickwire.trade.>` (empty: every subject).
    #[serde(default)]
    pub filter: String,
    /// With `symbols = ["*"]`: only these quote assets, e.g. `["USDT"]` (empty: any).
    #[serde(default)]
    pub quote_assets: Vec<String>,
    /// With `symbols = ["*"]` on USD-M: only these contract types, e.g. `["PERPETUAL"]`
    /// (empty: any).
    #[serde(default)]
    pub contract_types: Vec<String>,
    /// With `symbols = ["*"]`: never these symbols.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Levels of the REST depth snapshots that sync the books (`limit`; spot up to 5000,
    /// USD-M 5, 10, 20, 50, 100, 500 or 1000). Its request weight is Binance's: spot 5 / 25 /
    /// 50 / 250 for <= 100 / 500 / 1000 / 5000, USD-M 2 / 5 / 10 / 20 for <= 50 / 100 / 500 /
    /// 1000.
    #[serde(default = "default_depth_limit")]
    pub depth_limit: usize,
    /// Read exchangeInfo again every this many seconds (0: never): a changed entry of a
    /// recorded symbol is written again as an `instrument` record, and with `symbols = ["*"]`
    /// a new TRADING symbol is subscribed (on a connection with room, or a new one), one no
    /// longer TRADING unsubscribed.
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// Stream kinds after `<symbol>@`, e.g. `["trade", "depth@100ms", "kline_1m"]`.
    #[serde(default)]
    pub streams: Vec<String>,
    /// `"i/n"`: keep only the symbols whose stable hash falls in shard i of n, so that n
    /// collectors split one market with no overlap and no gap (empty: every symbol).
    #[serde(default)]
    pub shard: String,
    /// WebSocket base URL; default `wss://stream.binance.com:9443` (spot),
    /// `wss://fstream.binance.com` (USD-M, `/public` and `/market` paths chosen per stream).
    pub endpoint: Option<String>,
}

fn default_depth_limit() -> usize {
    1000
}

fn default_refresh_secs() -> u64 {
    300
}

/// What a full queue does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait up to `max_wait_ms`, then drop and count.
    Block,
    /// Drop and count at once.
    DropNewest,
}

/// `[pipeline]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Flush a batch at this many rows.
    pub max_rows: usize,
    /// Flush a batch when its oldest row is this old.
    pub max_age_ms: u64,
    /// Size of the queue from the sources, in records: `queue / 16` bundles (at least 64) of
    /// up to 32 records each.
    pub queue: usize,
    /// What a full queue does.
    pub when_full: WhenFull,
    /// With `block`: the longest wait before a record is dropped and counted.
    pub max_wait_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let f = FlushConfig::default();
        PipelineConfig {
            max_rows: f.max_rows,
            max_age_ms: f.max_age.as_millis() as u64,
            queue: 65_536,
            when_full: WhenFull::Block,
            max_wait_ms: 250,
        }
    }
}

/// `[zmq]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZmqConfig {
    /// Republish every record.
    pub enabled: bool,
    /// Bind address.
    pub bind: String,
    /// `binary` or `json`.
    pub encoding: EncodingName,
    /// Messages a subscriber may have queued before further ones are refused and counted.
    pub sndhwm: i32,
    /// Also publish every flushed batch as an Arrow IPC stream on `batch.<kind>.<market>`.
    pub batches: bool,
    /// Before connecting to the exchange, wait (up to 30 s) until this many subscribers have
    /// subscribed, so they miss nothing of the start (the instrument records among it).
    pub wait_subscribers: usize,
    /// The bind may reach other machines (`tcp://*:5556`, a LAN address): ZMQ PUB has no
    /// authentication, so without this such a bind is refused at start.
    pub public: bool,
}

impl Default for ZmqConfig {
    fn default() -> Self {
        ZmqConfig {
            enabled: true,
            bind: "tcp://127.0.0.1:5556".into(),
            encoding: EncodingName::Binary,
            sndhwm: 100_000,
            batches: false,
            wait_subscribers: 0,
            public: false,
        }
    }
}

/// Payload encodings in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingName {
    /// Fixed little-endian layout.
    Binary,
    /// Decode JSON.
    Json,
}

/// `[[sinks]]`, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// Parquet files.
    Parquet(ParquetSinkConfig),
    /// ClickHouse tables.
    Clickhouse(ClickHouseSinkConfig),
    /// PostgreSQL / TimescaleDB tables.
    Postgres(PostgresSinkConfig),
    /// The Redis L1: candles, recent ticks, books and latest states, from the records.
    Redis(RedisSinkConfig),
    /// Every record into a NATS JetStream stream (the collector's side of a scale-out).
    Nats(NatsSinkConfig),
}

/// `[[sinks]] type = "nats"`: every record into a JetStream stream ([`crate::bus::collector`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// `nats://host:port` (comma-separated for a cluster).
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// The stream, created when missing (subjects `<prefix>.>`, file storage).
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// Subject prefix: `<prefix>.<kind>.<market>.<SYMBOL>`.
    #[serde(default = "default_nats_prefix")]
    pub prefix: String,
    /// This collector's identity in the message ids (default: the host name).
    #[serde(default)]
    pub id: String,
    /// Stream limit when tickwire creates it: oldest messages go after this many hours.
    #[serde(default = "default_nats_max_age")]
    pub max_age_hours: u64,
    /// Stream limit when tickwire creates it: MiB kept (0: no limit).
    #[serde(default = "default_nats_max_mb")]
    pub max_mb: u64,
    /// How long the stream remembers message ids (a retried publish is stored once).
    #[serde(default = "default_nats_dup")]
    pub duplicate_window_secs: u64,
    /// Stream replicas when tickwire creates it (3 on a 3-node cluster).
    #[serde(default = "default_nats_replicas")]
    pub replicas: usize,
    /// Publishes waiting for their acks at once.
    #[serde(default = "default_nats_in_flight")]
    pub max_in_flight: usize,
    /// MiB of messages kept in memory while NATS is slow or down; the rest spills to disk.
    #[serde(default = "default_nats_budget")]
    pub memory_budget_mb: usize,
    /// Where messages beyond the budget, or not acknowledged at shutdown, are kept.
    #[serde(default = "default_nats_spill")]
    pub spill_dir: PathBuf,
}

fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_nats_stream() -> String {
    "TICKWIRE".into()
}
fn default_nats_prefix() -> String {
    "tickwire".into()
}
fn default_nats_max_age() -> u64 {
    168
}
fn default_nats_max_mb() -> u64 {
    8192
}
fn default_nats_dup() -> u64 {
    120
}
fn default_nats_replicas() -> usize {
    1
}
fn default_nats_in_flight() -> usize {
    1024
}
fn default_nats_budget() -> usize {
    256
}
fn default_nats_spill() -> PathBuf {
    PathBuf::from("tickwire-spill/nats")
}

impl NatsSinkConfig {
    /// The collector's settings.
    pub fn collector(&self) -> crate::bus::collector::NatsConfig {
        let mut c = crate::bus::collector::NatsConfig::new(&self.url, &self.stream);
        c.prefix.clone_from(&self.prefix);
        if !self.id.is_empty() {
            c.id.clone_from(&self.id);
        }
        c.max_age = Duration::from_secs(self.max_age_hours * 3600);
        c.max_bytes = if self.max_mb == 0 {
            -1
        } else {
            (self.max_mb << 20) as i64
        };
        c.duplicate_window = Duration::from_secs(self.duplicate_window_secs);
        c.replicas = self.replicas.max(1);
        c.max_in_flight = self.max_in_flight.max(1);
        c.memory_budget_bytes = self.memory_budget_mb << 20;
        c.spill_dir.clone_from(&self.spill_dir);
        c
    }
}

/// `[[sinks]] type = "redis"`: the L1 hot tier ([`crate::serve::l1`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every key and channel.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    /// Candle timeframes.
    #[serde(default = "default_redis_timeframes")]
    pub timeframes: Vec<String>,
    /// Closed candles kept per (market, symbol, timeframe) list.
    #[serde(default = "default_redis_keep")]
    pub candles_keep: usize,
    /// Newest trades kept per (market, symbol) sorted set.
    #[serde(default = "default_redis_keep")]
    pub ticks_keep: usize,
    /// Each key is written at most once in this many ms (trades are never folded).
    #[serde(default = "default_redis_interval")]
    pub min_interval_ms: u64,
    /// PUBLISH every trade on `<prefix>pubsub:ticks:<market>:<SYMBOL>`.
    #[serde(default = "default_true")]
    pub publish_ticks: bool,
    /// TTL of the candle keys, seconds.
    #[serde(default = "default_redis_ttl_candles")]
    pub ttl_candles_secs: u64,
    /// TTL of the ticks sets, seconds.
    #[serde(default = "default_redis_ttl_ticks")]
    pub ttl_ticks_secs: u64,
    /// TTL of the order books, seconds.
    #[serde(default = "default_redis_ttl_state")]
    pub ttl_book_secs: u64,
    /// TTL of the latest-state hashes (book ticker, ticker, mark price), seconds.
    #[serde(default = "default_redis_ttl_state")]
    pub ttl_state_secs: u64,
}

fn default_redis_prefix() -> String {
    "tickwire:".into()
}
fn default_redis_timeframes() -> Vec<String> {
    ["1s", "1m", "5m", "15m", "1h", "4h", "1d"]
        .map(String::from)
        .to_vec()
}
fn default_redis_keep() -> usize {
    1000
}
fn default_redis_interval() -> u64 {
    50
}
fn default_true() -> bool {
    true
}
fn default_redis_ttl_candles() -> u64 {
    86_400
}
fn default_redis_ttl_ticks() -> u64 {
    3_600
}
fn default_redis_ttl_state() -> u64 {
    300
}

impl RedisSinkConfig {
    /// The L1's settings (validated: every timeframe is one).
    pub fn l1(&self) -> crate::serve::l1::L1Config {
        let mut c = crate::serve::l1::L1Config::new(&self.url);
        c.prefix.clone_from(&self.prefix);
        c.timeframes = self
            .timeframes
            .iter()
            .filter_map(|t| crate::serve::l1::timeframe(t).map(|w| (t.clone(), w)))
            .collect();
        c.candles_keep = self.candles_keep.max(1);
        c.ticks_keep = self.ticks_keep.max(1);
        c.min_interval = Duration::from_millis(self.min_interval_ms.max(1));
        c.publish_ticks = self.publish_ticks;
        c.ttl = [
            self.ttl_candles_secs,
            self.ttl_ticks_secs,
            self.ttl_book_secs,
            self.ttl_state_secs,
        ];
        c
    }
}

/// `[[sinks]] type = "postgres"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:5432/tickwire`; better with its
    /// password from `TICKWIRE_SINKS__<i>__URL`. Never logged with the password.
    pub url: String,
    /// Schema of the tables (created if missing).
    #[serde(default = "default_pg_schema")]
    pub schema: String,
    /// TimescaleDB (hypertables, compression, retention): `"auto"` where the extension exists
    /// or can be created (plain tables otherwise, the server's reason logged), `"off"`,
    /// `"require"` (refuse to start without it); `true`/`false` mean auto/off.
    #[serde(default = "default_timescale", deserialize_with = "timescale_mode")]
    pub timescale: Timescale,
    /// TimescaleDB: compress chunks older than this many days.
    #[serde(default = "default_pg_compress")]
    pub compress_after_days: u32,
    /// TimescaleDB: drop market data older than this many days (gaps kept).
    #[serde(default = "default_pg_retention")]
    pub retention_days: u32,
    /// At shutdown: attempts before what is still pending is spilled to disk.
    #[serde(default = "default_ch_attempts")]
    pub max_attempts: u32,
    /// MiB of batches held in memory while the server fails; beyond it, spilled to disk.
    #[serde(default = "default_ch_budget")]
    pub memory_budget_mb: usize,
    /// Directory of spilled batches and dead letters.
    #[serde(default = "default_pg_spill")]
    pub spill_dir: PathBuf,
}

fn default_pg_schema() -> String {
    "public".into()
}
fn default_timescale() -> Timescale {
    Timescale::Auto
}
/// `timescale = "off" | "auto" | "require"`, or a bool (true: auto, false: off).
fn timescale_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timescale, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(true) => Ok(Timescale::Auto),
        Raw::Bool(false) => Ok(Timescale::Off),
        Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}
fn default_pg_compress() -> u32 {
    7
}
fn default_pg_retention() -> u32 {
    30
}
fn default_pg_spill() -> PathBuf {
    PathBuf::from("postgres-spill")
}

/// `[[sinks]] type = "clickhouse"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSinkConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database (created if missing).
    #[serde(default = "default_ch_database")]
    pub database: String,
    /// User; or `TICKWIRE_SINKS__<i>__USER`.
    pub user: Option<String>,
    /// Password; better from `TICKWIRE_SINKS__<i>__PASSWORD`. Never logged.
    pub password: Option<String>,
    /// At shutdown: attempts before what is still pending is spilled to disk.
    #[serde(default = "default_ch_attempts")]
    pub max_attempts: u32,
    /// MiB of batches held in memory while the server fails; beyond it, spilled to disk.
    #[serde(default = "default_ch_budget")]
    pub memory_budget_mb: usize,
    /// Hot tier: delete market data older than this many days (modern servers; gaps kept).
    pub ttl_days: Option<u32>,
    /// Directory of spilled batches and dead letters.
    #[serde(default = "default_ch_spill")]
    pub spill_dir: PathBuf,
    /// A cluster written shard by shard: each shard's HTTP URL, in the cluster's order (`url`
    /// is then not used). Rows go to `<table>_local` on the shard `murmurHash3_32(symbol)`
    /// picks, as the `Distributed` tables do.
    #[serde(default)]
    pub shards: Vec<String>,
    /// The cluster's name in the servers' `remote_servers` (for the `Distributed` tables).
    #[serde(default = "default_ch_cluster")]
    pub cluster: String,
    /// `Replicated*MergeTree` shard tables (needs ZooKeeper or ClickHouse Keeper and the
    /// `{shard}`/`{replica}` macros).
    #[serde(default)]
    pub replicated: bool,
    /// Apply the schema once with `ON CLUSTER` (distributed DDL, needs ZooKeeper) instead of
    /// on each shard.
    #[serde(default)]
    pub on_cluster: bool,
}

fn default_ch_cluster() -> String {
    "tickwire".into()
}

fn default_ch_database() -> String {
    "tickwire".into()
}
fn default_ch_attempts() -> u32 {
    20
}
fn default_ch_budget() -> usize {
    256
}
fn default_ch_spill() -> PathBuf {
    PathBuf::from("clickhouse-spill")
}

/// `[[sinks]] type = "parquet"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetSinkConfig {
    /// Dataset root.
    pub dir: PathBuf,
    /// Roll files at this size.
    pub max_file_mb: u64,
    /// Roll files at this age.
    pub max_file_age_secs: u64,
    /// The pages' codec: `zstd` (smallest files), `lz4`, `snappy` (~50 MiB less memory at
    /// 200k msg/s, files 1.9x as large) or `none`.
    pub compression: String,
    /// zstd level.
    pub zstd_level: i32,
    /// KiB of a data page before compression (each open file's columns each hold one being
    /// filled, and a zstd context sized for it).
    pub page_kib: usize,
    /// Rows of a row group at most.
    pub row_group_rows: usize,
    /// The open row groups' finished pages wait in an unlinked file beside the dataset until
    /// their row group is written (`true`, the default), or on the heap (`false`).
    pub spill_pages: bool,
}

impl Default for ParquetSinkConfig {
    fn default() -> Self {
        let d = ParquetConfig::new("data");
        ParquetSinkConfig {
            dir: d.dir,
            max_file_mb: d.max_file_bytes >> 20,
            max_file_age_secs: d.max_file_age.as_secs(),
            compression: d.codec.name().into(),
            zstd_level: d.zstd_level,
            page_kib: d.page_bytes >> 10,
            row_group_rows: d.row_group_rows,
            spill_pages: d.spill_pages,
        }
    }
}

/// `[capture]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Keep every WebSocket frame (with its receive time), every REST snapshot answer the
    /// books took and every connection event under this directory, zstd-compressed, rolled
    /// hourly ("": no capture). `tickwire replay --capture DIR` runs it again.
    pub dir: String,
    /// zstd level of the capture files (-7 to 19; negative: zstd's fast levels).
    pub zstd_level: i32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            dir: String::new(),
            zstd_level: crate::source::capture::LEVEL,
        }
    }
}

/// `[tiering]`: `tickwire tier` on a schedule inside `tickwire run` (see [`crate::tier`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieringConfig {
    /// The hot database, `clickhouse://host:port/database` ("": the first ClickHouse sink's).
    #[serde(default)]
    pub hot: String,
    /// Targets: `clickhouse://host:port/database` and/or `parquet:DIR`.
    pub to: Vec<String>,
    /// Data older than this moves (`48h`, `3d`).
    #[serde(default = "default_hot_retention")]
    pub hot_retention: String,
    /// A pass this often (`6h`), the first one a minute after the start.
    #[serde(default = "default_tier_every")]
    pub every: String,
    /// Remove verified windows from the hot tier.
    #[serde(default)]
    pub cleanup: bool,
    /// Only these kinds (empty: all).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Rows per INSERT and per verification chunk.
    #[serde(default = "default_tier_chunk_rows")]
    pub chunk_rows: u64,
    /// The first pass this many seconds after the start.
    #[serde(default = "default_tier_start_after")]
    pub start_after_secs: u64,
    /// `lz4` or `none` between tickwire and the servers.
    #[serde(default = "default_tier_compression")]
    pub compression: String,
}

fn default_tier_compression() -> String {
    "lz4".into()
}

fn default_tier_start_after() -> u64 {
    60
}

fn default_hot_retention() -> String {
    "3d".into()
}

fn default_tier_every() -> String {
    "6h".into()
}

fn default_tier_chunk_rows() -> u64 {
    500_000
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of /health, /metrics and the query API; empty: off.
    pub bind: String,
    /// The query cache keeps this many seconds of received data.
    pub cache_window_secs: u64,
    /// The query cache holds at most this many MiB of Arrow data.
    pub cache_budget_mb: usize,
    /// Bearer token every request but /health and the status page must carry (best from the
    /// environment: TICKWIRE_HTTP__TOKEN); required when `bind` is not loopback. Never logged.
    pub token: crate::serve::http::Token,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: "127.0.0.1:9464".into(),
            cache_window_secs: 3600,
            cache_budget_mb: 512,
            token: crate::serve::http::Token::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a wrong type (the message names the key).
    #[error("{0}")]
    Parse(String),
    /// An environment override made the config invalid (the file alone is valid).
    #[error("environment {var}={value}: {why}")]
    Env {
        /// The variable.
        var: String,
        /// Its value (passwords hidden).
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A value that parses but makes no sense.
    #[error("{key}: {why}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

/// Top-level keys that `TICKWIRE_<KEY>` (no `__`) overrides.
const TOP_LEVEL_SCALARS: [&str; 2] = ["stats_secs", "duration_secs"];

/// Applies `TICKWIRE_A__B=v` overrides from `vars` to `doc`.
pub fn apply_env(
    doc: &mut toml::Value,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (k, v) in vars {
        let Some(path) = k.strip_prefix("TICKWIRE_") else {
            continue;
        };
        let segs: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        // `TICKWIRE_X` without `__` is config only when X is a top-level key: other tools'
        // variables (TICKWIRE_BIN, TICKWIRE_CLICKHOUSE_URL) are not ours to refuse.
        if segs.len() == 1 && !TOP_LEVEL_SCALARS.contains(&segs[0].as_str()) {
            continue;
        }
        if segs.iter().any(String::is_empty) {
            return Err(invalid(&k, "empty path segment"));
        }
        let value = v
            .parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| v.parse::<f64>().map(toml::Value::Float))
            .or_else(|_| v.parse::<bool>().map(toml::Value::Boolean))
            .unwrap_or_else(|_| toml::Value::String(v.clone()));
        set_path(doc, &segs, value, &k)?;
    }
    Ok(())
}

fn set_path(
    cur: &mut toml::Value,
    segs: &[String],
    value: toml::Value,
    key: &str,
) -> Result<(), ConfigError> {
    let Some((first, rest)) = segs.split_first() else {
        *cur = value;
        return Ok(());
    };
    match cur {
        toml::Value::Array(a) => {
            let idx: usize = first
                .parse()
                .map_err(|_| invalid(key, format!("{first} is not an index")))?;
            let el = a
                .get_mut(idx)
                .ok_or_else(|| invalid(key, format!("no element {idx}")))?;
            set_path(el, rest, value, key)
        }
        toml::Value::Table(t) => {
            let next = t
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            set_path(next, rest, value, key)
        }
        _ => Err(invalid(
            key,
            format!("{first}: the value above it is not a table"),
        )),
    }
}

/// Reads, overrides from the environment, parses and validates a config file.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, std::env::vars())
}

/// [`load`] on text, with the given environment.
pub fn parse(
    text: &str,
    env: impl Iterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let file = toml::Value::Table(doc);
    let vars: Vec<(String, String)> = env.collect();
    let mut doc = file.clone();
    apply_env(&mut doc, vars.iter().cloned())?;
    let checked = |doc: toml::Value| -> Result<Config, ConfigError> {
        let cfg: Config = doc
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    };
    match checked(doc) {
        Ok(cfg) => Ok(cfg),
        Err(e) => {
            // Name the variable when an override is what makes it fail: with that one
            // variable the file fails otherwise than (or where) it does alone.
            let alone = checked(file.clone()).err().map(|e| e.to_string());
            for (k, v) in &vars {
                let mut one = file.clone();
                if apply_env(&mut one, std::iter::once((k.clone(), v.clone()))).is_err() {
                    continue;
                }
                if let Err(why) = checked(one) {
                    let why = why.to_string();
                    if alone.as_ref() != Some(&why) {
                        return Err(ConfigError::Env {
                            var: k.clone(),
                            value: shown_value(k, v),
                            why,
                        });
                    }
                }
            }
            Err(e)
        }
    }
}

/// A variable's value as it may be logged: passwords hidden, URLs without their password.
fn shown_value(var: &str, value: &str) -> String {
    if var.contains("PASSWORD") {
        "***".into()
    } else if var.ends_with("URL") {
        tickwire_sinks::redact(value)
    } else {
        value.to_string()
    }
}

const STREAM_KINDS: [&str; 10] = [
    "trade",
    "aggTrade",
    "bookTicker",
    "depth",
    "kline_",
    "markPrice",
    "forceOrder",
    "ticker",
    "depth5",
    "depth10",
];

fn valid_stream(s: &str) -> bool {
    let base = s.split('@').next().unwrap_or("");
    STREAM_KINDS
        .iter()
        .any(|k| base == *k || (k.ends_with('_') && base.starts_with(k)))
        || matches!(base, "depth20" | "miniTicker")
}

/// One `[[sources]]` entry, resolved from the config.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub market: Market,
    /// WebSocket base URL (no trailing `/`).
    pub endpoint: String,
    /// The symbols listed (empty with `all`).
    pub symbols: Vec<String>,
    /// `symbols = ["*"]`: the filter on exchangeInfo's symbols.
    pub all: Option<crate::source::rest::SymbolFilter>,
    pub streams: Vec<String>,
    pub depth_limit: usize,
    /// With `all`: read exchangeInfo again this often and follow listings (None: never).
    pub refresh: Option<Duration>,
}

/// The connection URLs of `streams` of `symbols` at `endpoint`: combined streams packed at
/// most [`MAX_STREAMS_PER_CONNECTION`] to a connection, USD-M split over `/public` and
/// `/market`.
pub fn connection_urls(
    market: Market,
    endpoint: &str,
    symbols: &[String],
    streams: &[String],
) -> Vec<String> {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for sym in symbols {
        for st in streams {
            let path = match market {
                Market::Usdm if usdm_public(st) => "/public",
                Market::Usdm => "/market",
                Market::Spot => "",
            };
            let name = format!("{}@{st}", sym.to_lowercase());
            match groups.iter_mut().find(|(p, _)| *p == path) {
                Some((_, v)) => v.push(name),
                None => groups.push((path, vec![name])),
            }
        }
    }
    let mut out = Vec::new();
    for (path, names) in groups {
        for chunk in names.chunks(MAX_STREAMS_PER_CONNECTION) {
            out.push(format!(
                "{endpoint}{path}/stream?streams={}",
                chunk.join("/")
            ));
        }
    }
    out
}

/// USD-M streams served under `/public` since 2026-04-23 (the rest under `/market`).
fn usdm_public(stream: &str) -> bool {
    let base = stream.split('@').next().unwrap_or("");
    base == "bookTicker" || base.starts_with("depth")
}

/// A sink's store settings, as the sinks crate takes them.
enum Store {
    Parquet(ParquetConfig),
    Clickhouse(ClickHouseConfig),
    ClickhouseShards(
        ClickHouseConfig,
        Vec<String>,
        tickwire_sinks::clickhouse::ddl::ClusterLayout,
    ),
    Postgres(PostgresConfig),
    Redis(crate::serve::l1::L1Config),
    Nats(crate::bus::collector::NatsConfig),
}

impl SinkConfig {
    fn store(&self) -> Store {
        match self {
            SinkConfig::Parquet(p) => {
                let mut c = ParquetConfig::new(&p.dir);
                c.max_file_bytes = p.max_file_mb << 20;
                c.max_file_age = Duration::from_secs(p.max_file_age_secs);
                c.codec = ParquetCodec::parse(&p.compression).unwrap_or(c.codec);
                c.zstd_level = p.zstd_level;
                c.page_bytes = p.page_kib << 10;
                c.row_group_rows = p.row_group_rows;
                c.spill_pages = p.spill_pages;
                Store::Parquet(c)
            }
            SinkConfig::Clickhouse(ch) => {
                let mut c = ClickHouseConfig::new(&ch.url);
                c.database.clone_from(&ch.database);
                c.user.clone_from(&ch.user);
                c.password.clone_from(&ch.password);
                c.durability.max_attempts = ch.max_attempts;
                c.durability.memory_budget_bytes = ch.memory_budget_mb << 20;
                c.ttl_days = ch.ttl_days;
                c.durability.spill_dir.clone_from(&ch.spill_dir);
                if ch.shards.is_empty() {
                    Store::Clickhouse(c)
                } else {
                    let layout = tickwire_sinks::clickhouse::ddl::ClusterLayout {
                        cluster: ch.cluster.clone(),
                        replicated: ch.replicated,
                        on_cluster: ch.on_cluster,
                    };
                    Store::ClickhouseShards(c, ch.shards.clone(), layout)
                }
            }
            SinkConfig::Redis(r) => Store::Redis(r.l1()),
            SinkConfig::Nats(n) => Store::Nats(n.collector()),
            SinkConfig::Postgres(pg) => {
                let mut c = PostgresConfig::new(&pg.url);
                c.schema.clone_from(&pg.schema);
                c.timescale = pg.timescale;
                c.compress_after_days = pg.compress_after_days;
                c.retention_days = pg.retention_days;
                c.durability.max_attempts = pg.max_attempts;
                c.durability.memory_budget_bytes = pg.memory_budget_mb << 20;
                c.durability.spill_dir.clone_from(&pg.spill_dir);
                Store::Postgres(c)
            }
        }
    }

    /// `parquet DIR`, `clickhouse URL`, `postgres URL` (without a password).
    fn describe(&self) -> String {
        match self {
            SinkConfig::Parquet(p) => format!("parquet {}", p.dir.display()),
            SinkConfig::Clickhouse(c) => format!(
                "clickhouse {} database {}",
                tickwire_sinks::redact(&c.url),
                c.database
            ),
            SinkConfig::Postgres(p) => format!(
                "postgres {} schema {}",
                tickwire_sinks::redact(&p.url),
                p.schema
            ),
            SinkConfig::Redis(r) => format!(
                "redis {} prefix {}",
                tickwire_sinks::redact(&r.url),
                r.prefix
            ),
            SinkConfig::Nats(n) => format!(
                "nats {} stream {} subjects {}.>",
                tickwire_sinks::redact(&n.url),
                n.stream,
                n.prefix
            ),
        }
    }
}

/// Whether files can be written in `dir` (or in the directory it would be created in).
fn writable_dir(dir: &std::path::Path) -> Result<String, String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if !m.is_dir() => return Err(format!("{} is not a directory", at.display())),
            Ok(m) if m.permissions().readonly() => {
                return Err(format!("{} is read-only", at.display()))
            }
            Ok(_) if at == dir => return Ok(format!("{} is writable", dir.display())),
            Ok(_) => {
                return Ok(format!(
                    "{} will be created in {}",
                    dir.display(),
                    at.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Ok(format!("{} will be created", dir.display())),
            },
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

impl Config {
    /// The `[tiering]` section as a schedule (its hot database defaults to the first
    /// ClickHouse sink's).
    pub fn tiering_schedule(&self) -> anyhow::Result<Option<crate::tier::Schedule>> {
        use crate::tier::{parse_duration_ns, parse_kind, Endpoint, Plan, Schedule, Target};
        let Some(t) = &self.tiering else {
            return Ok(None);
        };
        let bad =
            |key: &str, why: String| anyhow::Error::new(invalid(format!("tiering.{key}"), why));
        let hot = if t.hot.is_empty() {
            self.sinks
                .iter()
                .find_map(|s| match s {
                    SinkConfig::Clickhouse(c) => Some(Endpoint {
                        url: c.url.clone(),
                        database: c.database.clone(),
                        user: c.user.clone(),
                        password: c.password.clone(),
                    }),
                    _ => None,
                })
                .ok_or_else(|| bad("hot", "no ClickHouse sink to take it from: set hot = \"clickhouse://host:port/database\"".into()))?
        } else {
            Endpoint::parse(&t.hot).map_err(|e| bad("hot", e))?
        };
        if t.to.is_empty() {
            return Err(bad(
                "to",
                "at least one target (clickhouse://... or parquet:DIR)".into(),
            ));
        }
        let targets =
            t.to.iter()
                .map(|x| Target::parse(x).map_err(|e| bad("to", e)))
                .collect::<anyhow::Result<Vec<_>>>()?;
        let older = parse_duration_ns(&t.hot_retention).map_err(|e| bad("hot_retention", e))?;
        let every = parse_duration_ns(&t.every).map_err(|e| bad("every", e))?;
        if every <= 0 {
            return Err(bad("every", "must be more than 0s".into()));
        }
        let mut plan = Plan::new(hot, targets, older);
        plan.cleanup = t.cleanup;
        plan.chunk_rows = t.chunk_rows.max(1);
        plan.lz4 = match t.compression.as_str() {
            "lz4" => true,
            "none" => false,
            c => return Err(bad("compression", format!("{c:?}: lz4 or none"))),
        };
        if !t.kinds.is_empty() {
            plan.kinds = t
                .kinds
                .iter()
                .map(|k| parse_kind(k).map_err(|e| bad("kinds", e)))
                .collect::<anyhow::Result<_>>()?;
        }
        Ok(Some(Schedule {
            plan,
            every: Duration::from_nanos(every as u64),
            first_after: Duration::from_secs(t.start_after_secs),
        }))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.simulator.enabled && self.sources.is_empty() {
            return Err(invalid(
                "sources",
                "no input: add [[sources]] or set simulator.enabled = true",
            ));
        }
        let nats = self
            .sources
            .iter()
            .filter(|s| s.source_type == SourceType::Nats)
            .count();
        if nats > 0 && (nats > 1 || self.sources.len() > 1 || self.simulator.enabled) {
            return Err(invalid(
                "sources",
                "a type = \"nats\" source (a writer) stands alone: one per process, no other source or simulator",
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            if s.source_type == SourceType::Nats {
                if s.durable.is_empty() || s.durable.contains(['.', '*', '>', ' ']) {
                    return Err(invalid(
                        format!("sources[{i}].durable"),
                        "the durable consumer's name (letters, digits, - and _), e.g. \"writer\"",
                    ));
                }
                if !(s.url.is_empty()
                    || s.url.starts_with("nats://")
                    || s.url.starts_with("tls://"))
                {
                    return Err(invalid(
                        format!("sources[{i}].url"),
                        "must be a nats:// URL",
                    ));
                }
                continue;
            }
            if !(s.url.is_empty()
                && s.stream.is_empty()
                && s.durable.is_empty()
                && s.filter.is_empty())
            {
                return Err(invalid(
                    format!("sources[{i}]"),
                    "url, stream, durable and filter belong to type = \"nats\" sources",
                ));
            }
            if s.symbols.is_empty() || s.streams.is_empty() {
                return Err(invalid(
                    format!("sources[{i}]"),
                    "needs symbols and streams",
                ));
            }
            if !s.shard.is_empty() {
                crate::bus::parse_shard(&s.shard)
                    .map_err(|why| invalid(format!("sources[{i}].shard"), why))?;
            }
            let all = s.symbols.iter().any(|x| x == "*");
            if all && s.symbols.len() > 1 {
                return Err(invalid(
                    format!("sources[{i}].symbols"),
                    "\"*\" stands alone (every TRADING symbol; narrow it with quote_assets, contract_types, exclude)",
                ));
            }
            let filtered =
                !(s.quote_assets.is_empty() && s.contract_types.is_empty() && s.exclude.is_empty());
            if !all && filtered {
                return Err(invalid(
                    format!("sources[{i}]"),
                    "quote_assets, contract_types and exclude filter symbols = [\"*\"] only",
                ));
            }
            if s.market == MarketName::Spot && !s.contract_types.is_empty() {
                return Err(invalid(
                    format!("sources[{i}].contract_types"),
                    "spot symbols have no contract type",
                ));
            }
            let depth_ok = match s.market {
                MarketName::Spot => (1..=5000).contains(&s.depth_limit),
                MarketName::Usdm => [5, 10, 20, 50, 100, 500, 1000].contains(&s.depth_limit),
            };
            if !depth_ok {
                return Err(invalid(
                    format!("sources[{i}].depth_limit"),
                    match s.market {
                        MarketName::Spot => "must be 1..=5000",
                        MarketName::Usdm => "must be 5, 10, 20, 50, 100, 500 or 1000",
                    },
                ));
            }
            for sym in s.symbols.iter().filter(|x| *x != "*") {
                if sym.is_empty() || !sym.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(invalid(
                        format!("sources[{i}].symbols"),
                        format!("invalid symbol {sym:?}"),
                    ));
                }
            }
            for st in &s.streams {
                if !valid_stream(st) {
                    return Err(invalid(
                        format!("sources[{i}].streams"),
                        format!("unknown stream kind {st:?}"),
                    ));
                }
            }
        }
        if !(self.rest.max_weight_share > 0.0 && self.rest.max_weight_share <= 1.0) {
            return Err(invalid("rest.max_weight_share", "must be > 0 and <= 1"));
        }
        if !(-7..=19).contains(&self.capture.zstd_level) {
            return Err(invalid("capture.zstd_level", "must be -7..=19"));
        }
        if self.rest.data_requests_per_5min == 0 {
            return Err(invalid("rest.data_requests_per_5min", "must be positive"));
        }
        for (i, p) in self.pollers.iter().enumerate() {
            self.poll_plan(p)
                .map_err(|(k, why)| invalid(format!("pollers[{i}].{k}"), why))?;
        }
        if !self.pollers.is_empty()
            && !self.simulator.enabled
            && !self.sources.iter().any(|s| s.market == MarketName::Usdm)
        {
            return Err(invalid(
                "pollers",
                "the series are USD-M's: add a [[sources]] with market = \"usdm\" (its REST host is polled)",
            ));
        }
        if self.pipeline.max_rows == 0 || self.pipeline.queue == 0 {
            return Err(invalid("pipeline", "max_rows and queue must be positive"));
        }
        for (i, s) in self.sinks.iter().enumerate() {
            match s {
                SinkConfig::Parquet(p) if ParquetCodec::parse(&p.compression).is_none() => {
                    return Err(invalid(
                        format!("sinks[{i}].compression"),
                        "must be zstd, lz4, snappy or none",
                    ));
                }
                SinkConfig::Parquet(p) if !(1..=22).contains(&p.zstd_level) => {
                    return Err(invalid(format!("sinks[{i}].zstd_level"), "must be 1..=22"));
                }
                SinkConfig::Parquet(p) if !(4..=65_536).contains(&p.page_kib) => {
                    return Err(invalid(format!("sinks[{i}].page_kib"), "must be 4..=65536"));
                }
                SinkConfig::Parquet(p) if !(1024..=1 << 24).contains(&p.row_group_rows) => {
                    return Err(invalid(
                        format!("sinks[{i}].row_group_rows"),
                        "must be 1024..=16777216",
                    ));
                }
                SinkConfig::Clickhouse(c)
                    if !(c.url.starts_with("http://") || c.url.starts_with("https://")) =>
                {
                    return Err(invalid(
                        format!("sinks[{i}].url"),
                        "must be an http:// or https:// URL",
                    ));
                }
                SinkConfig::Nats(n)
                    if !n.url.split(',').all(|u| {
                        u.trim().starts_with("nats://") || u.trim().starts_with("tls://")
                    }) =>
                {
                    return Err(invalid(
                        format!("sinks[{i}].url"),
                        "must be nats:// (or tls://) URLs, comma-separated",
                    ));
                }
                SinkConfig::Nats(n)
                    if n.prefix.is_empty()
                        || n.prefix.contains(['*', '>', ' '])
                        || n.prefix.ends_with('.') =>
                {
                    return Err(invalid(
                        format!("sinks[{i}].prefix"),
                        "a subject prefix such as tickwire (no *, >, spaces or trailing dot)",
                    ));
                }
                SinkConfig::Redis(r) if !r.url.starts_with("redis://") => {
                    return Err(invalid(format!("sinks[{i}].url"), "must be a redis:// URL"));
                }
                SinkConfig::Redis(r) => {
                    if let Some(bad) = r
                        .timeframes
                        .iter()
                        .find(|t| crate::serve::l1::timeframe(t).is_none())
                    {
                        return Err(invalid(
                            format!("sinks[{i}].timeframes"),
                            format!("{bad:?}: a number and s, m, h or d (1s, 5m, 4h, 1d)"),
                        ));
                    }
                }
                SinkConfig::Postgres(c)
                    if !(c.url.starts_with("postgres://")
                        || c.url.starts_with("postgresql://")) =>
                {
                    return Err(invalid(
                        format!("sinks[{i}].url"),
                        "must be a postgres:// or postgresql:// URL",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The plan of one `[[pollers]]` entry, or the key that is wrong and why.
    fn poll_plan(
        &self,
        p: &PollerConfig,
    ) -> Result<crate::source::series::PollPlan, (&'static str, String)> {
        use crate::source::series::{period_ms, Series};
        if p.series.is_empty() {
            return Err(("series", "name at least one series".into()));
        }
        let mut series = Vec::new();
        for name in &p.series {
            let s = Series::parse(name).ok_or_else(|| {
                (
                    "series",
                    format!(
                        "unknown series {name:?} (one of {})",
                        Series::ALL.map(|s| s.name()).join(", ")
                    ),
                )
            })?;
            if !series.contains(&s) {
                series.push(s);
            }
        }
        let period = tickwire_codecs::record::Interval::from_bytes(p.period.as_bytes())
            .filter(|i| period_ms(*i).is_some())
            .ok_or_else(|| {
                (
                    "period",
                    format!(
                        "{:?}: must be 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h or 1d",
                        p.period
                    ),
                )
            })?;
        let all = p.symbols.iter().any(|x| x == "*");
        if p.symbols.is_empty() || (all && p.symbols.len() > 1) {
            return Err(("symbols", "USD-M symbols, or [\"*\"] alone".into()));
        }
        if let Some(bad) = p.symbols.iter().find(|x| {
            *x != "*" && (x.is_empty() || !x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        }) {
            return Err(("symbols", format!("invalid symbol {bad:?}")));
        }
        if !(1..=500).contains(&p.history) {
            return Err(("history", "must be 1..=500".into()));
        }
        if p.every_secs == 0 {
            return Err(("every_secs", "must be positive".into()));
        }
        Ok(crate::source::series::PollPlan {
            series,
            period,
            symbols: (!all).then(|| p.symbols.iter().map(|s| s.to_ascii_uppercase()).collect()),
            every: Duration::from_secs(p.every_secs),
            history: p.history,
        })
    }

    /// The configured sources, each a market's endpoint, symbols (or the filter of
    /// `symbols = ["*"]`), streams and depth limit.
    pub fn plans(&self) -> Vec<SourcePlan> {
        self.sources
            .iter()
            .filter(|s| s.source_type == SourceType::Binance)
            .map(|s| {
                let (market, default) = match s.market {
                    MarketName::Spot => (Market::Spot, "wss://stream.binance.com:9443"),
                    MarketName::Usdm => (Market::Usdm, "wss://fstream.binance.com"),
                };
                let all = s.symbols.iter().any(|x| x == "*");
                // Validated in `parse`.
                let shard = crate::bus::parse_shard(&s.shard).ok();
                let mine = |x: &&String| shard.is_none_or(|(k, n)| crate::bus::shard_of(x, n) == k);
                SourcePlan {
                    market,
                    endpoint: s
                        .endpoint
                        .as_deref()
                        .unwrap_or(default)
                        .trim_end_matches('/')
                        .to_string(),
                    symbols: if all {
                        Vec::new()
                    } else {
                        s.symbols.iter().filter(mine).cloned().collect()
                    },
                    all: all.then(|| crate::source::rest::SymbolFilter {
                        quote_assets: s.quote_assets.clone(),
                        contract_types: s.contract_types.clone(),
                        exclude: s.exclude.clone(),
                        shard,
                    }),
                    streams: s.streams.clone(),
                    depth_limit: s.depth_limit,
                    refresh: (s.refresh_secs > 0).then(|| Duration::from_secs(s.refresh_secs)),
                }
            })
            .collect()
    }

    /// The connection URLs of the sources that list their symbols (see [`connection_urls`]);
    /// a `symbols = ["*"]` source has its URLs once exchangeInfo is read
    /// ([`crate::runner::resolve_sources`]).
    pub fn urls(&self) -> Vec<(Market, String)> {
        self.plans()
            .iter()
            .filter(|p| p.all.is_none())
            .flat_map(|p| {
                connection_urls(p.market, &p.endpoint, &p.symbols, &p.streams)
                    .into_iter()
                    .map(move |u| (p.market, u))
            })
            .collect()
    }

    /// Tries to reach every sink without changing anything: a Parquet directory that exists
    /// (or can be created) and is writable, a ClickHouse or PostgreSQL server that answers.
    /// One line per sink, `Err` where it could not.
    pub fn check_sinks(&self) -> Vec<(String, Result<String, String>)> {
        self.sinks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let r = match s.store() {
                    Store::Parquet(c) => writable_dir(&c.dir),
                    Store::Clickhouse(c) => tickwire_sinks::clickhouse::ClickHouseStore::probe(&c)
                        .map(|v| format!("ClickHouse {v}"))
                        .map_err(|e| tickwire_sinks::error_chain(&e)),
                    Store::ClickhouseShards(c, urls, _) => urls
                        .iter()
                        .map(|u| {
                            let mut c = c.clone();
                            c.url.clone_from(u);
                            tickwire_sinks::clickhouse::ClickHouseStore::probe(&c)
                                .map(|v| format!("{}: ClickHouse {v}", tickwire_sinks::redact(u)))
                                .map_err(|e| {
                                    format!(
                                        "{}: {}",
                                        tickwire_sinks::redact(u),
                                        tickwire_sinks::error_chain(&e)
                                    )
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|v| v.join(", ")),
                    Store::Postgres(c) => tickwire_sinks::postgres::PostgresStore::probe(&c)
                        .map_err(|e| tickwire_sinks::error_chain(&e)),
                    Store::Redis(c) => redis::Client::open(c.url.as_str())
                        .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(2)))
                        .and_then(|mut conn| {
                            redis::cmd("INFO").arg("server").query::<String>(&mut conn)
                        })
                        .map(|info| {
                            let v = info
                                .lines()
                                .find_map(|l| l.strip_prefix("redis_version:"))
                                .unwrap_or("?");
                            format!("Redis {}", v.trim())
                        })
                        .map_err(|e| e.to_string()),
                    Store::Nats(c) => crate::bus::collector::probe(&c),
                };
                (format!("sinks[{i}] ({})", s.describe()), r)
            })
            .collect()
    }

    /// Builds the run's settings. Fails only on resources (a sink directory, a server that
    /// cannot be reached), never on config; the error names the sink.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let input = if self.simulator.enabled {
            Input::Simulator {
                symbols: default_symbols(),
                rate: self.simulator.rate,
                faults: crate::sim::Faults::default(),
                prerender: false,
            }
        } else if let Some(n) = self
            .sources
            .iter()
            .find(|s| s.source_type == SourceType::Nats)
        {
            Input::Nats(crate::bus::writer::NatsSourceConfig {
                url: if n.url.is_empty() {
                    default_nats_url()
                } else {
                    n.url.clone()
                },
                stream: if n.stream.is_empty() {
                    default_nats_stream()
                } else {
                    n.stream.clone()
                },
                durable: n.durable.clone(),
                filter: n.filter.clone(),
                prefix: default_nats_prefix(),
                max_ack_pending: 1_000_000,
                ack_wait: Duration::from_secs(600),
            })
        } else {
            Input::Sources(self.plans())
        };
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let built: Result<Box<dyn Sink>, tickwire_sinks::SinkError> = match s.store() {
                Store::Parquet(c) => ParquetSink::new(c).map(|x| Box::new(x) as Box<dyn Sink>),
                Store::Clickhouse(c) => {
                    ClickHouseSink::new(c).map(|x| Box::new(x) as Box<dyn Sink>)
                }
                Store::ClickhouseShards(c, urls, layout) => {
                    tickwire_sinks::clickhouse::ShardedSink::new(c, &urls, layout)
                        .map(|x| Box::new(x) as Box<dyn Sink>)
                }
                Store::Postgres(c) => PostgresSink::new(c).map(|x| Box::new(x) as Box<dyn Sink>),
                // Not a batch sink: the L1 takes records from the pipeline thread.
                Store::Redis(_) | Store::Nats(_) => continue,
            };
            sinks.push(built.map_err(|e| {
                anyhow::Error::new(e).context(format!("sinks[{i}] ({})", s.describe()))
            })?);
        }
        let zmq = self.zmq.enabled.then(|| PubConfig {
            bind: self.zmq.bind.clone(),
            encoding: match self.zmq.encoding {
                EncodingName::Binary => Encoding::Binary,
                EncodingName::Json => Encoding::Json,
            },
            sndhwm: self.zmq.sndhwm,
            batches: self.zmq.batches,
            public: self.zmq.public,
        });
        Ok(Settings {
            input,
            zmq,
            sinks,
            flush: FlushConfig {
                max_rows: self.pipeline.max_rows,
                max_age: Duration::from_millis(self.pipeline.max_age_ms),
            },
            queue: self.pipeline.queue,
            full: match self.pipeline.when_full {
                WhenFull::Block => FullPolicy::Block {
                    max_wait: Duration::from_millis(self.pipeline.max_wait_ms),
                },
                WhenFull::DropNewest => FullPolicy::DropNewest,
            },
            http: (!self.http.bind.is_empty()).then(|| crate::serve::http::Listen {
                bind: self.http.bind.clone(),
                token: self.http.token.nonempty(),
            }),
            cache: CacheConfig {
                window: Duration::from_secs(self.http.cache_window_secs),
                budget_bytes: self.http.cache_budget_mb << 20,
            },
            // The query API reads what the cache no longer holds from the first store sink.
            read_through: self.sinks.iter().find_map(|s| match s {
                SinkConfig::Postgres(p) => Some(ReadThrough::Postgres {
                    url: p.url.clone(),
                    schema: p.schema.clone(),
                }),
                SinkConfig::Clickhouse(c) => Some(ReadThrough::ClickHouse {
                    url: c.url.clone(),
                    database: c.database.clone(),
                    user: c.user.clone(),
                    password: c.password.clone(),
                }),
                SinkConfig::Parquet(_) | SinkConfig::Redis(_) | SinkConfig::Nats(_) => None,
            }),
            tiering: self.tiering_schedule()?,
            stats_secs: self.stats_secs,
            subscribe: self.connection.subscribe,
            book_sync: self.connection.book_sync,
            rest: crate::source::rest::RestOptions {
                max_weight_share: self.rest.max_weight_share,
                data_per_5min: self.rest.data_requests_per_5min,
                ..Default::default()
            },
            capture: (!self.capture.dir.is_empty()).then(|| PathBuf::from(&self.capture.dir)),
            capture_level: self.capture.zstd_level,
            redis: self.sinks.iter().find_map(|s| match s {
                SinkConfig::Redis(r) => Some(r.l1()),
                _ => None,
            }),
            exit_when_idle: None,
            nats: self.sinks.iter().find_map(|s| match s {
                SinkConfig::Nats(n) => Some(n.collector()),
                _ => None,
            }),
            // Validated in `parse`.
            pollers: self
                .pollers
                .iter()
                .filter_map(|p| self.poll_plan(p).ok())
                .collect(),
            // The in-process simulator's connections are markets of their own: no rotation.
            rotate_after: (self.connection.rotate_after_secs > 0 && !self.simulator.enabled)
                .then(|| Duration::from_secs(self.connection.rotate_after_secs)),
            book_every: (self.connection.book_snapshot_ms > 0)
                .then(|| Duration::from_millis(self.connection.book_snapshot_ms)),
            book_levels: self.connection.book_levels.max(1),
            idle_timeout: Duration::from_secs(self.connection.idle_timeout_secs.max(1)),
            wait_subscribers: if self.zmq.enabled {
                self.zmq.wait_subscribers
            } else {
                0
            },
            duration: self.duration_secs.map(Duration::from_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../tickwire.example.toml");
        let cfg = parse(text, env(&[])).expect("example parses");
        let urls = cfg.urls();
        assert!(urls.iter().any(|(m, u)| *m == Market::Usdm
            && u.starts_with("wss://fstream.binance.com/public/stream?streams=")));
        assert!(urls.iter().any(|(m, u)| *m == Market::Usdm
            && u.contains("/market/stream?streams=")
            && u.contains("@aggTrade")));
        assert!(
            urls.iter()
                .all(|(_, u)| !u.contains("/public/") || !u.contains("markPrice")),
            "markPrice is a /market stream"
        );
    }

    #[test]
    fn postgres_sinks_take_their_url_from_the_environment() {
        let text = "[simulator]\nenabled = true\n[[sinks]]\ntype = \"postgres\"\nurl = \"postgres://u@h/db\"\n";
        let cfg = parse(
            text,
            env(&[("TICKWIRE_SINKS__0__URL", "postgres://u:secret@h/db")]),
        )
        .expect("valid");
        let SinkConfig::Postgres(p) = &cfg.sinks[0] else {
            panic!("a postgres sink: {:?}", cfg.sinks)
        };
        assert_eq!(p.url, "postgres://u:secret@h/db");
        assert_eq!(
            (p.schema.as_str(), p.timescale, p.retention_days),
            ("public", Timescale::Auto, 30)
        );
        let e = parse(
            "[simulator]\nenabled = true\n[[sinks]]\ntype = \"postgres\"\nurl = \"http://h\"\n",
            env(&[]),
        )
        .expect_err("refused");
        assert!(e.to_string().contains("sinks[0].url"), "{e}");
    }

    /// Every key of every section is in `tickwire.example.toml` (set or commented out), and
    /// the file with every commented key and section put back still parses.
    #[test]
    fn the_example_file_documents_every_key() {
        let src = include_str!("config.rs");
        let example = include_str!("../../tickwire.example.toml");
        let keys: Vec<(String, String)> = {
            let (mut out, mut current) = (Vec::new(), None::<String>);
            for line in src.lines() {
                if let Some(rest) = line.strip_prefix("pub struct ") {
                    current = rest
                        .strip_suffix(" {")
                        .filter(|n| n.ends_with("Config"))
                        .map(str::to_string);
                } else if line == "}" {
                    current = None;
                } else if let (Some(s), Some(f)) = (&current, line.strip_prefix("    pub ")) {
                    if let Some((name, _)) = f.split_once(':') {
                        out.push((s.clone(), name.to_string()));
                    }
                }
            }
            out
        };
        assert!(keys.len() > 40, "{} keys found in config.rs", keys.len());
        let uncommented: String = example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(r)
                    if r.starts_with('[')
                        || r.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    r
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let tables: Vec<String> = [
            "simulator",
            "sources",
            "connection",
            "pipeline",
            "zmq",
            "sinks",
            "http",
            "rest",
            "pollers",
            "capture",
            "tiering",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        for (section, key) in &keys {
            let set = uncommented
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{key} =")));
            let table = section == "Config"
                && tables.contains(key)
                && (uncommented.contains(&format!("[{key}]"))
                    || uncommented.contains(&format!("[[{key}]]")));
            assert!(
                set || table,
                "{section}.{key} is not in tickwire.example.toml"
            );
        }
        parse(&uncommented, env(&[])).expect("the example with every key uncommented");
    }

    #[test]
    fn parquet_pages_and_level_come_from_the_config() {
        let pq = |extra: &str| {
            let text = format!(
                "[simulator]\nenabled = true\n[[sinks]]\ntype = \"parquet\"\ndir = \"d\"\n{extra}"
            );
            parse(&text, env(&[])).map(|c| match c.sinks[0].store() {
                Store::Parquet(p) => (
                    p.codec,
                    p.zstd_level,
                    p.page_bytes,
                    p.row_group_rows,
                    p.spill_pages,
                ),
                _ => panic!("a parquet sink"),
            })
        };
        assert_eq!(
            pq("").expect("defaults"),
            (ParquetCodec::Zstd, 1, 32 << 10, 1 << 20, true)
        );
        assert_eq!(
            pq("zstd_level = 3\npage_kib = 1024\n").expect("set"),
            (ParquetCodec::Zstd, 3, 1 << 20, 1 << 20, true)
        );
        assert_eq!(
            pq("compression = \"lz4\"\nrow_group_rows = 32768\nspill_pages = false\n")
                .expect("lz4"),
            (ParquetCodec::Lz4, 1, 32 << 10, 32768, false)
        );
        let e = pq("row_group_rows = 10\n").expect_err("too small a group");
        assert!(e.to_string().contains("row_group_rows"), "{e}");
        let e = pq("page_kib = 0\n").expect_err("no empty pages");
        assert!(e.to_string().contains("page_kib"), "{e}");
        let e = pq("compression = \"gzip\"\n").expect_err("not a codec here");
        assert!(e.to_string().contains("compression"), "{e}");
    }

    #[test]
    fn timescale_is_off_auto_or_require() {
        let pg = |v: &str| {
            let text = format!("[simulator]\nenabled = true\n[[sinks]]\ntype = \"postgres\"\nurl = \"postgres://u@h/db\"\ntimescale = {v}\n");
            parse(&text, env(&[])).map(|c| match &c.sinks[0] {
                SinkConfig::Postgres(p) => p.timescale,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(pg("\"require\"").expect("require"), Timescale::Require);
        assert_eq!(pg("\"off\"").expect("off"), Timescale::Off);
        assert_eq!(pg("true").expect("true"), Timescale::Auto);
        assert_eq!(pg("false").expect("false"), Timescale::Off);
        let e = pg("\"sometimes\"").expect_err("refused");
        assert!(e.to_string().contains("\"require\""), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = parse(
            "[pipeline]\nmax_rowz = 5\n[simulator]\nenabled = true\n",
            env(&[]),
        )
        .expect_err("refused");
        assert!(e.to_string().contains("max_rowz"), "{e}");
        let e = parse(
            "[simulator]\nenabled = true\n",
            env(&[("TICKWIRE_ZMQ__BINDD", "x")]),
        )
        .expect_err("refused");
        assert!(e.to_string().contains("bindd"), "{e}");
        // The variable and its value are named, not only the key.
        let e = parse(
            "[simulator]\nenabled = true\n",
            env(&[("TICKWIRE_PIPELINE__MAX_ROWZ", "5")]),
        )
        .expect_err("refused");
        let msg = e.to_string();
        assert!(
            msg.starts_with("environment TICKWIRE_PIPELINE__MAX_ROWZ=5: ")
                && msg.contains("max_rowz"),
            "{msg}"
        );
        let e = parse(
            "[simulator]\nenabled = true\n[[sinks]]\ntype = \"clickhouse\"\n",
            env(&[
                ("TICKWIRE_SINKS__0__PASSWORD", "hunter2"),
                ("TICKWIRE_SINKS__0__TTL_DAYS", "soon"),
            ]),
        )
        .expect_err("refused");
        let msg = e.to_string();
        assert!(
            msg.contains("TICKWIRE_SINKS__0__TTL_DAYS=soon") && !msg.contains("hunter2"),
            "{msg}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let text = "[simulator]\nenabled = true\n[[sinks]]\ntype = \"parquet\"\ndir = \"a\"\n";
        let cfg = parse(
            text,
            env(&[
                ("TICKWIRE_PIPELINE__MAX_ROWS", "100"),
                ("TICKWIRE_ZMQ__BIND", "tcp://127.0.0.1:7000"),
                ("TICKWIRE_SINKS__0__DIR", "/tmp/b"),
                ("TICKWIRE_DURATION_SECS", "9"),
                ("TICKWIRE_BIN", "/usr/bin/tickwire"),
                ("OTHER", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.pipeline.max_rows, 100);
        assert_eq!(cfg.duration_secs, Some(9));
        assert_eq!(cfg.zmq.bind, "tcp://127.0.0.1:7000");
        let SinkConfig::Parquet(p) = &cfg.sinks[0] else {
            panic!("parquet sink")
        };
        assert_eq!(p.dir, PathBuf::from("/tmp/b"));
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (text, key) in [
            ("", "sources"),
            (
                "[[sources]]\nmarket = \"spot\"\nsymbols = [\"BTCUSDT\"]\nstreams = [\"trades\"]\n",
                "sources[0].streams",
            ),
            (
                "[[sources]]\nmarket = \"moon\"\nsymbols = [\"BTCUSDT\"]\nstreams = [\"trade\"]\n",
                "moon",
            ),
            (
                "[simulator]\nenabled = true\n[pipeline]\nmax_rows = 0\n",
                "pipeline",
            ),
            (
                "[[sources]]\nmarket = \"spot\"\nsymbols = [\"*\", \"BTCUSDT\"]\nstreams = [\"trade\"]\n",
                "sources[0].symbols",
            ),
            (
                "[[sources]]\nmarket = \"spot\"\nsymbols = [\"BTCUSDT\"]\nquote_assets = [\"USDT\"]\nstreams = [\"trade\"]\n",
                "only",
            ),
            (
                "[[sources]]\nmarket = \"spot\"\nsymbols = [\"*\"]\ncontract_types = [\"PERPETUAL\"]\nstreams = [\"trade\"]\n",
                "sources[0].contract_types",
            ),
            (
                "[[sources]]\nmarket = \"usdm\"\nsymbols = [\"*\"]\nstreams = [\"trade\"]\ndepth_limit = 200\n",
                "sources[0].depth_limit",
            ),
            (
                "[[sources]]\nmarket = \"spot\"\nsymbols = [\"BTCUSDT\"]\nstreams = [\"trade\"]\n[rest]\nmax_weight_share = 1.5\n",
                "rest.max_weight_share",
            ),
        ] {
            let e = parse(text, env(&[])).expect_err(text);
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_whole_market_is_a_plan_with_its_filter() {
        let text = "[[sources]]\nmarket = \"usdm\"\nsymbols = [\"*\"]\nquote_assets = [\"USDT\"]\ncontract_types = [\"PERPETUAL\"]\nexclude = [\"ETHUSDT\"]\nstreams = [\"aggTrade\", \"depth@100ms\"]\ndepth_limit = 50\n";
        let cfg = parse(text, env(&[])).expect("valid");
        assert!(cfg.urls().is_empty(), "its URLs come from exchangeInfo");
        let plans = cfg.plans();
        assert_eq!(plans.len(), 1);
        let f = plans[0].all.as_ref().expect("a filter");
        assert_eq!(f.quote_assets, ["USDT"]);
        assert_eq!(f.contract_types, ["PERPETUAL"]);
        assert_eq!(f.exclude, ["ETHUSDT"]);
        assert_eq!(plans[0].depth_limit, 50);
    }

    #[test]
    fn many_streams_split_over_connections() {
        let syms: Vec<String> = (0..600).map(|i| format!("\"S{i}USDT\"")).collect();
        let text = format!("[[sources]]\nmarket = \"spot\"\nsymbols = [{}]\nstreams = [\"trade\", \"bookTicker\"]\n", syms.join(","));
        let cfg = parse(&text, env(&[])).expect("valid");
        let urls = cfg.urls();
        assert_eq!(urls.len(), 2, "1200 streams -> 2 connections");
        assert_eq!(urls[0].1.matches('@').count(), 1024);
    }
}
