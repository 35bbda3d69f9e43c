#!/usr/bin/env bash
# The server's own floor for storing the postgres bench's rows: 50,000 spot trades loaded by a
# server-side `COPY ... FROM 'file' (FORMAT binary)` (no client, no network, no encoding) into
# tickwire's `trades` table as sql/timescale/001_tables.sql creates it, and into the same table
# without its (symbol, trade_time DESC) index; then the same rows in two halves loaded by two
# backends at once (what tickwire's two connections do), timed as the slower of the two.
# No client can store the rows faster than this.
#   bash perf/postgres_floor.sh [RUNS] [postgres URL]
set -euo pipefail
runs=${1:-7}
url=${2:-postgres://postgres@127.0.0.1:5432/postgres}
root=$(cd "$(dirname "$0")/.." && pwd)
file=/tmp/tickwire_floor_trades.bin
psql "$url" -XAtq -v ON_ERROR_STOP=1 <<SQL >/dev/null
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS tw_floor CASCADE;
CREATE SCHEMA tw_floor;
$(grep -v "^CREATE SCHEMA" "$root/sql/timescale/001_tables.sql" | sed "s/public\./tw_floor./g")
CREATE TABLE tw_floor.trades_noindex (LIKE tw_floor.trades);
CREATE TABLE tw_floor.src AS
  SELECT 'binance'::text AS exchange, 'spot'::text AS market,
         (ARRAY['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'PEPEUSDT'])[1 + i % 4] AS symbol,
         t AS event_time, t AS recv_time, i::bigint AS trade_id,
         (60000 + (i % 1000) * 0.01)::numeric(18, 8) AS price,
         (0.001 * (i % 97))::numeric(38, 8) AS qty, i % 2 = 0 AS is_buyer_maker, t AS trade_time
    FROM generate_series(1, 50000) AS i, LATERAL (SELECT now() + i * interval '1 ms' AS t) AS x;
COPY tw_floor.src TO '$file' (FORMAT binary);
COPY (SELECT * FROM tw_floor.src WHERE trade_id <= 25000) TO '$file.1' (FORMAT binary);
COPY (SELECT * FROM tw_floor.src WHERE trade_id > 25000) TO '$file.2' (FORMAT binary);
SQL
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  server: $(psql "$url" -XAtc 'SHOW server_version')"
for table in trades trades_noindex; do
  times=$(for _ in $(seq "$runs"); do
    psql "$url" -Xq -c "TRUNCATE tw_floor.$table" -c '\timing on' \
      -c "COPY tw_floor.$table FROM '$file' (FORMAT binary)" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
  done | sort -n)
  median=$(echo "$times" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$table: 50000 rows, median of $runs server-side COPY: ${median} ms = $(awk -v m="$median" 'BEGIN {printf "%.0f", 50000 / m * 1000}') rows/s (all: $(echo $times))"
done
copy_ms() { # table file: the server's time for one COPY
  psql "$url" -Xq -c '\timing on' -c "COPY tw_floor.$1 FROM '$2' (FORMAT binary)" |
    sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
times=$(for _ in $(seq "$runs"); do
  psql "$url" -Xq -c "TRUNCATE tw_floor.trades"
  copy_ms trades "$file.1" >"$file.t1" &
  copy_ms trades "$file.2" >"$file.t2"
  wait
  sort -n "$file.t1" "$file.t2" | tail -1
done | sort -n)
median=$(echo "$times" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "trades, two backends at once (25000 rows each): median of $runs: ${median} ms = $(awk -v m="$median" 'BEGIN {printf "%.0f", 50000 / m * 1000}') rows/s (all: $(echo $times))"
PGOPTIONS=--client-min-messages=warning psql "$url" -XAtq -c "DROP SCHEMA tw_floor CASCADE"
rm -f "$file" "$file".*
