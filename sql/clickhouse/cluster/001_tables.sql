-- tickwire ClickHouse cluster schema for ClickHouse 21 and later: ReplicatedMergeTree per shard, ON CLUSTER tickwire (needs ZooKeeper or ClickHouse Keeper and the {shard}/{replica} macros), generated from the Arrow schemas by
-- tickwire_sinks::clickhouse::ddl::cluster_schema_sql (a test keeps this file equal to it)

CREATE DATABASE IF NOT EXISTS tickwire ON CLUSTER tickwire;

CREATE TABLE IF NOT EXISTS tickwire.trades_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    qty Decimal(38, 8) CODEC(ZSTD(1)),
    is_buyer_maker Bool,
    trade_time DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/trades_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.trades ON CLUSTER tickwire AS tickwire.trades_local
ENGINE = Distributed(tickwire, tickwire, trades_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.agg_trades_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    agg_trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    first_trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    last_trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    qty Decimal(38, 8) CODEC(ZSTD(1)),
    is_buyer_maker Bool,
    trade_time DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/agg_trades_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.agg_trades ON CLUSTER tickwire AS tickwire.agg_trades_local
ENGINE = Distributed(tickwire, tickwire, agg_trades_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.book_tickers_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    update_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    bid_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    bid_qty Decimal(38, 8) CODEC(ZSTD(1)),
    ask_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    ask_qty Decimal(38, 8) CODEC(ZSTD(1)),
    transaction_time Nullable(DateTime64(6, 'UTC')),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/book_tickers_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.book_tickers ON CLUSTER tickwire AS tickwire.book_tickers_local
ENGINE = Distributed(tickwire, tickwire, book_tickers_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.depth_updates_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    first_update_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    final_update_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    prev_final_update_id Nullable(Int64),
    transaction_time Nullable(DateTime64(6, 'UTC')),
    bids Array(Tuple(price Decimal(18, 8), qty Decimal(38, 8))),
    asks Array(Tuple(price Decimal(18, 8), qty Decimal(38, 8))),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/depth_updates_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.depth_updates ON CLUSTER tickwire AS tickwire.depth_updates_local
ENGINE = Distributed(tickwire, tickwire, depth_updates_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.depth_snapshots_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    last_update_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    bids Array(Tuple(price Decimal(18, 8), qty Decimal(38, 8))),
    asks Array(Tuple(price Decimal(18, 8), qty Decimal(38, 8))),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/depth_snapshots_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.depth_snapshots ON CLUSTER tickwire AS tickwire.depth_snapshots_local
ENGINE = Distributed(tickwire, tickwire, depth_snapshots_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.klines_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    interval LowCardinality(String),
    open_time DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    close_time DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    first_trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    last_trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    open Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    high Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    low Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    close Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    volume Decimal(38, 8) CODEC(ZSTD(1)),
    quote_volume Decimal(38, 8) CODEC(ZSTD(1)),
    trade_count Int64 CODEC(DoubleDelta, ZSTD(1)),
    taker_buy_base_volume Decimal(38, 8) CODEC(ZSTD(1)),
    taker_buy_quote_volume Decimal(38, 8) CODEC(ZSTD(1)),
    is_closed Bool,
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/klines_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.klines ON CLUSTER tickwire AS tickwire.klines_local
ENGINE = Distributed(tickwire, tickwire, klines_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.mark_prices_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    mark_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    index_price Nullable(Decimal(18, 8)),
    estimated_settle_price Nullable(Decimal(18, 8)),
    funding_rate Nullable(Decimal(18, 8)),
    next_funding_time Nullable(DateTime64(6, 'UTC')),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/mark_prices_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.mark_prices ON CLUSTER tickwire AS tickwire.mark_prices_local
ENGINE = Distributed(tickwire, tickwire, mark_prices_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.liquidations_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    side LowCardinality(String),
    order_type LowCardinality(String),
    time_in_force LowCardinality(String),
    orig_qty Decimal(38, 8) CODEC(ZSTD(1)),
    price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    avg_price Nullable(Decimal(18, 8)),
    order_status LowCardinality(String),
    last_filled_qty Nullable(Decimal(38, 8)),
    filled_qty Nullable(Decimal(38, 8)),
    trade_time DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/liquidations_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.liquidations ON CLUSTER tickwire AS tickwire.liquidations_local
ENGINE = Distributed(tickwire, tickwire, liquidations_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.tickers_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    price_change Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    price_change_percent Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    weighted_avg_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    last_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    last_qty Decimal(38, 8) CODEC(ZSTD(1)),
    best_bid_price Nullable(Decimal(18, 8)),
    best_bid_qty Nullable(Decimal(38, 8)),
    best_ask_price Nullable(Decimal(18, 8)),
    best_ask_qty Nullable(Decimal(38, 8)),
    open_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    high_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    low_price Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    volume Decimal(38, 8) CODEC(ZSTD(1)),
    quote_volume Decimal(38, 8) CODEC(ZSTD(1)),
    open_time DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    close_time DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    first_trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    last_trade_id Int64 CODEC(DoubleDelta, ZSTD(1)),
    trade_count Int64 CODEC(DoubleDelta, ZSTD(1)),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/tickers_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.tickers ON CLUSTER tickwire AS tickwire.tickers_local
ENGINE = Distributed(tickwire, tickwire, tickers_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.gaps_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    stream LowCardinality(String),
    reason LowCardinality(String),
    expected Nullable(Int64),
    got Nullable(Int64),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/gaps_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.gaps ON CLUSTER tickwire AS tickwire.gaps_local
ENGINE = Distributed(tickwire, tickwire, gaps_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.instruments_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    status LowCardinality(String),
    contract_type LowCardinality(Nullable(String)),
    base_asset LowCardinality(String),
    quote_asset LowCardinality(String),
    tick_size Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    step_size Decimal(38, 8) CODEC(ZSTD(1)),
    min_qty Nullable(Decimal(38, 8)),
    price_precision Nullable(Int64),
    quantity_precision Nullable(Int64),
    base_asset_precision Nullable(Int64),
    quote_precision Nullable(Int64),
    onboard_date Nullable(DateTime64(6, 'UTC')),
    delivery_date Nullable(DateTime64(6, 'UTC')),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/instruments_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.instruments ON CLUSTER tickwire AS tickwire.instruments_local
ENGINE = Distributed(tickwire, tickwire, instruments_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.open_interest_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    period LowCardinality(Nullable(String)),
    open_interest Decimal(38, 8) CODEC(ZSTD(1)),
    open_interest_value Nullable(Decimal(38, 8)),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/open_interest_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.open_interest ON CLUSTER tickwire AS tickwire.open_interest_local
ENGINE = Distributed(tickwire, tickwire, open_interest_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.long_short_ratios_local ON CLUSTER tickwire (
    exchange LowCardinality(String),
    market LowCardinality(String),
    symbol LowCardinality(String),
    event_time Nullable(DateTime64(6, 'UTC')),
    recv_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    series LowCardinality(String),
    period LowCardinality(String),
    long_short_ratio Decimal(18, 8) CODEC(Delta, ZSTD(1)),
    long_share Nullable(Decimal(18, 8)),
    short_share Nullable(Decimal(18, 8)),
    _batch UInt64
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/tickwire/long_short_ratios_local', '{replica}')
PARTITION BY toYYYYMMDD(recv_time)
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.long_short_ratios ON CLUSTER tickwire AS tickwire.long_short_ratios_local
ENGINE = Distributed(tickwire, tickwire, long_short_ratios_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.candles_1m_local ON CLUSTER tickwire (
    market LowCardinality(String),
    symbol LowCardinality(String),
    minute DateTime,
    open AggregateFunction(argMin, Decimal(18, 8), Tuple(DateTime64(6, 'UTC'), Int64)),
    high AggregateFunction(max, Decimal(18, 8)),
    low AggregateFunction(min, Decimal(18, 8)),
    close AggregateFunction(argMax, Decimal(18, 8), Tuple(DateTime64(6, 'UTC'), Int64)),
    volume AggregateFunction(sum, Decimal(38, 8)),
    quote_volume AggregateFunction(sum, Decimal(38, 16)),
    trade_count AggregateFunction(count)
) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/tickwire/candles_1m_local', '{replica}')
PARTITION BY toYYYYMMDD(minute)
ORDER BY (market, symbol, minute);

CREATE TABLE IF NOT EXISTS tickwire.candles_1m ON CLUSTER tickwire AS tickwire.candles_1m_local
ENGINE = Distributed(tickwire, tickwire, candles_1m_local, murmurHash3_32(symbol));

CREATE MATERIALIZED VIEW IF NOT EXISTS tickwire.candles_1m_mv ON CLUSTER tickwire TO tickwire.candles_1m_local AS
SELECT market, symbol, toStartOfMinute(trade_time) AS minute, argMinState(price, (trade_time, trade_id)) AS open, maxState(price) AS high, minState(price) AS low, argMaxState(price, (trade_time, trade_id)) AS close, sumState(qty) AS volume, sumState(toDecimal128(price, 8) * qty) AS quote_volume, countState() AS trade_count
FROM tickwire.trades_local
GROUP BY market, symbol, minute;

CREATE TABLE IF NOT EXISTS tickwire.daily_stats_local ON CLUSTER tickwire (
    market LowCardinality(String),
    symbol LowCardinality(String),
    day Date,
    open AggregateFunction(argMin, Decimal(18, 8), Tuple(DateTime64(6, 'UTC'), Int64)),
    high AggregateFunction(max, Decimal(18, 8)),
    low AggregateFunction(min, Decimal(18, 8)),
    close AggregateFunction(argMax, Decimal(18, 8), Tuple(DateTime64(6, 'UTC'), Int64)),
    volume AggregateFunction(sum, Decimal(38, 8)),
    quote_volume AggregateFunction(sum, Decimal(38, 16)),
    trade_count AggregateFunction(count)
) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/tickwire/daily_stats_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (market, symbol, day);

CREATE TABLE IF NOT EXISTS tickwire.daily_stats ON CLUSTER tickwire AS tickwire.daily_stats_local
ENGINE = Distributed(tickwire, tickwire, daily_stats_local, murmurHash3_32(symbol));

CREATE MATERIALIZED VIEW IF NOT EXISTS tickwire.daily_stats_mv ON CLUSTER tickwire TO tickwire.daily_stats_local AS
SELECT market, symbol, toDate(trade_time) AS day, argMinState(price, (trade_time, trade_id)) AS open, maxState(price) AS high, minState(price) AS low, argMaxState(price, (trade_time, trade_id)) AS close, sumState(qty) AS volume, sumState(toDecimal128(price, 8) * qty) AS quote_volume, countState() AS trade_count
FROM tickwire.trades_local
GROUP BY market, symbol, day;
