#!/usr/bin/env bash
# Depth levels in PostgreSQL: two-dimensional numeric[] (what tickwire writes) against JSONB
# ([[price, qty], ...], the other common choice), on the same depth updates from a demo run:
# bytes per row and the time to sum every level's quantity.
#   bash perf/postgres_levels.sh [SECONDS] [postgres URL]
set -euo pipefail
secs=${1:-10}
url=${2:-postgres://postgres@127.0.0.1:5432/postgres}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TICKWIRE_BIN:-$root/target/release/tickwire}
[ -x "$bin" ] || cargo build --release -q -p tickwire-engine --bin tickwire
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
psql "$url" -XAtq -c "DROP SCHEMA IF EXISTS tw_levels CASCADE"
"$bin" demo --duration "$secs" --out "$out" --stats-secs 0 --zmq tcp://127.0.0.1:0 \
    --postgres "$url" --postgres-schema tw_levels | tail -1 >/dev/null
psql "$url" -Xq -v ON_ERROR_STOP=1 <<'SQL'
SET search_path = tw_levels;
CREATE TABLE depth_jsonb AS
  SELECT first_update_id, to_jsonb(bids) AS bids, to_jsonb(asks) AS asks FROM depth_updates;
VACUUM ANALYZE depth_updates; VACUUM ANALYZE depth_jsonb;
SELECT count(*) AS rows,
       round(avg(pg_column_size(bids) + pg_column_size(asks)), 1) AS array_bytes_per_row
  FROM depth_updates;
SELECT round(avg(pg_column_size(bids) + pg_column_size(asks)), 1) AS jsonb_bytes_per_row
  FROM depth_jsonb;
\timing on
SELECT sum((SELECT coalesce(sum(bids[i][2]), 0) FROM generate_subscripts(bids, 1) i)) AS array_sum_subscripts FROM depth_updates;
SELECT sum((SELECT coalesce(sum(q), 0) FROM unnest(bids[:][2:2]) q)) AS array_sum_slice FROM depth_updates;
SELECT sum((SELECT coalesce(sum((l->>1)::numeric), 0) FROM jsonb_array_elements(bids) l)) AS jsonb_sum FROM depth_jsonb;
\timing off
DROP SCHEMA tw_levels CASCADE;
SQL
