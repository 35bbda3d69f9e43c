-- tickwire ClickHouse cluster schema for ClickHouse 18.16: MergeTree per shard, run on every shard of cluster tickwire (no ZooKeeper needed), generated from the Arrow schemas by
-- tickwire_sinks::clickhouse::ddl::cluster_schema_sql (a test keeps this file equal to it)

CREATE DATABASE IF NOT EXISTS tickwire;

CREATE TABLE IF NOT EXISTS tickwire.trades_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    trade_id Int64,
    price Decimal(18, 8),
    qty Decimal(38, 8),
    is_buyer_maker UInt8,
    trade_time Int64,
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.trades AS tickwire.trades_local
ENGINE = Distributed(tickwire, tickwire, trades_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.agg_trades_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    agg_trade_id Int64,
    first_trade_id Int64,
    last_trade_id Int64,
    price Decimal(18, 8),
    qty Decimal(38, 8),
    is_buyer_maker UInt8,
    trade_time Int64,
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.agg_trades AS tickwire.agg_trades_local
ENGINE = Distributed(tickwire, tickwire, agg_trades_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.book_tickers_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    update_id Int64,
    bid_price Decimal(18, 8),
    bid_qty Decimal(38, 8),
    ask_price Decimal(18, 8),
    ask_qty Decimal(38, 8),
    transaction_time Nullable(Int64),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.book_tickers AS tickwire.book_tickers_local
ENGINE = Distributed(tickwire, tickwire, book_tickers_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.depth_updates_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    first_update_id Int64,
    final_update_id Int64,
    prev_final_update_id Nullable(Int64),
    transaction_time Nullable(Int64),
    bids Nested(price Decimal(18, 8), qty Decimal(38, 8)),
    asks Nested(price Decimal(18, 8), qty Decimal(38, 8)),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.depth_updates AS tickwire.depth_updates_local
ENGINE = Distributed(tickwire, tickwire, depth_updates_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.depth_snapshots_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    last_update_id Int64,
    bids Nested(price Decimal(18, 8), qty Decimal(38, 8)),
    asks Nested(price Decimal(18, 8), qty Decimal(38, 8)),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.depth_snapshots AS tickwire.depth_snapshots_local
ENGINE = Distributed(tickwire, tickwire, depth_snapshots_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.klines_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    interval String,
    open_time Int64,
    close_time Int64,
    first_trade_id Int64,
    last_trade_id Int64,
    open Decimal(18, 8),
    high Decimal(18, 8),
    low Decimal(18, 8),
    close Decimal(18, 8),
    volume Decimal(38, 8),
    quote_volume Decimal(38, 8),
    trade_count Int64,
    taker_buy_base_volume Decimal(38, 8),
    taker_buy_quote_volume Decimal(38, 8),
    is_closed UInt8,
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.klines AS tickwire.klines_local
ENGINE = Distributed(tickwire, tickwire, klines_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.mark_prices_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    mark_price Decimal(18, 8),
    index_price Nullable(Decimal(18, 8)),
    estimated_settle_price Nullable(Decimal(18, 8)),
    funding_rate Nullable(Decimal(18, 8)),
    next_funding_time Nullable(Int64),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.mark_prices AS tickwire.mark_prices_local
ENGINE = Distributed(tickwire, tickwire, mark_prices_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.liquidations_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    side String,
    order_type String,
    time_in_force String,
    orig_qty Decimal(38, 8),
    price Decimal(18, 8),
    avg_price Nullable(Decimal(18, 8)),
    order_status String,
    last_filled_qty Nullable(Decimal(38, 8)),
    filled_qty Nullable(Decimal(38, 8)),
    trade_time Int64,
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.liquidations AS tickwire.liquidations_local
ENGINE = Distributed(tickwire, tickwire, liquidations_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.tickers_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    price_change Decimal(18, 8),
    price_change_percent Decimal(18, 8),
    weighted_avg_price Decimal(18, 8),
    last_price Decimal(18, 8),
    last_qty Decimal(38, 8),
    best_bid_price Nullable(Decimal(18, 8)),
    best_bid_qty Nullable(Decimal(38, 8)),
    best_ask_price Nullable(Decimal(18, 8)),
    best_ask_qty Nullable(Decimal(38, 8)),
    open_price Decimal(18, 8),
    high_price Decimal(18, 8),
    low_price Decimal(18, 8),
    volume Decimal(38, 8),
    quote_volume Decimal(38, 8),
    open_time Int64,
    close_time Int64,
    first_trade_id Int64,
    last_trade_id Int64,
    trade_count Int64,
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.tickers AS tickwire.tickers_local
ENGINE = Distributed(tickwire, tickwire, tickers_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.gaps_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    stream String,
    reason String,
    expected Nullable(Int64),
    got Nullable(Int64),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.gaps AS tickwire.gaps_local
ENGINE = Distributed(tickwire, tickwire, gaps_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.instruments_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    status String,
    contract_type Nullable(String),
    base_asset String,
    quote_asset String,
    tick_size Decimal(18, 8),
    step_size Decimal(38, 8),
    min_qty Nullable(Decimal(38, 8)),
    price_precision Nullable(Int64),
    quantity_precision Nullable(Int64),
    base_asset_precision Nullable(Int64),
    quote_precision Nullable(Int64),
    onboard_date Nullable(Int64),
    delivery_date Nullable(Int64),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.instruments AS tickwire.instruments_local
ENGINE = Distributed(tickwire, tickwire, instruments_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.open_interest_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    period Nullable(String),
    open_interest Decimal(38, 8),
    open_interest_value Nullable(Decimal(38, 8)),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.open_interest AS tickwire.open_interest_local
ENGINE = Distributed(tickwire, tickwire, open_interest_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.long_short_ratios_local (
    exchange String,
    market String,
    symbol String,
    event_time Nullable(Int64),
    recv_time Int64,
    series String,
    period String,
    long_short_ratio Decimal(18, 8),
    long_share Nullable(Decimal(18, 8)),
    short_share Nullable(Decimal(18, 8)),
    _batch UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(recv_time, 1000000000)))
ORDER BY (market, symbol, recv_time);

CREATE TABLE IF NOT EXISTS tickwire.long_short_ratios AS tickwire.long_short_ratios_local
ENGINE = Distributed(tickwire, tickwire, long_short_ratios_local, murmurHash3_32(symbol));

CREATE TABLE IF NOT EXISTS tickwire.candles_1m_local (
    market String,
    symbol String,
    minute DateTime,
    open AggregateFunction(argMin, Decimal(18, 8), Tuple(Int64, Int64)),
    high AggregateFunction(max, Decimal(18, 8)),
    low AggregateFunction(min, Decimal(18, 8)),
    close AggregateFunction(argMax, Decimal(18, 8), Tuple(Int64, Int64)),
    volume AggregateFunction(sum, Decimal(38, 8)),
    quote_volume AggregateFunction(sum, Decimal(38, 16)),
    trade_count AggregateFunction(count)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (market, symbol, minute);

CREATE TABLE IF NOT EXISTS tickwire.candles_1m AS tickwire.candles_1m_local
ENGINE = Distributed(tickwire, tickwire, candles_1m_local, murmurHash3_32(symbol));

CREATE MATERIALIZED VIEW IF NOT EXISTS tickwire.candles_1m_mv TO tickwire.candles_1m_local AS
SELECT market, symbol, toStartOfMinute(toDateTime(intDiv(trade_time, 1000000))) AS minute, argMinState(price, (trade_time, trade_id)) AS open, maxState(price) AS high, minState(price) AS low, argMaxState(price, (trade_time, trade_id)) AS close, sumState(qty) AS volume, sumState(toDecimal128(price, 8) * qty) AS quote_volume, countState() AS trade_count
FROM tickwire.trades_local
GROUP BY market, symbol, minute;

CREATE TABLE IF NOT EXISTS tickwire.daily_stats_local (
    market String,
    symbol String,
    day Date,
    open AggregateFunction(argMin, Decimal(18, 8), Tuple(Int64, Int64)),
    high AggregateFunction(max, Decimal(18, 8)),
    low AggregateFunction(min, Decimal(18, 8)),
    close AggregateFunction(argMax, Decimal(18, 8), Tuple(Int64, Int64)),
    volume AggregateFunction(sum, Decimal(38, 8)),
    quote_volume AggregateFunction(sum, Decimal(38, 16)),
    trade_count AggregateFunction(count)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (market, symbol, day);

CREATE TABLE IF NOT EXISTS tickwire.daily_stats AS tickwire.daily_stats_local
ENGINE = Distributed(tickwire, tickwire, daily_stats_local, murmurHash3_32(symbol));

CREATE MATERIALIZED VIEW IF NOT EXISTS tickwire.daily_stats_mv TO tickwire.daily_stats_local AS
SELECT market, symbol, toDate(toDateTime(intDiv(trade_time, 1000000))) AS day, argMinState(price, (trade_time, trade_id)) AS open, maxState(price) AS high, minState(price) AS low, argMaxState(price, (trade_time, trade_id)) AS close, sumState(qty) AS volume, sumState(toDecimal128(price, 8) * qty) AS quote_volume, countState() AS trade_count
FROM tickwire.trades_local
GROUP BY market, symbol, day;
