#!/usr/bin/env bash
# Tiering rate between the two local ClickHouse 18.16 servers (hot 8123, cold 8124 / native
# 19000; scripts/test.sh starts both), on one window set of synthetic trades (ROWS rows over
# DAYS UTC days x 2 markets, batches of 5000 rows, 7 symbols):
#  1. floor: the cold server copies the rows itself, `INSERT INTO cold SELECT * FROM
#     remote('127.0.0.1:9000', hot)`: no client, no check (the server's own floor);
#  2. `tickwire tier --to clickhouse://127.0.0.1:8124/...`: copy + count/checksum on both sides;
#  3. `tickwire tier --to parquet:DIR`: rows read as text, written as Parquet, read back and
#     summed by the hot server.
# Each prints rows, wall s, rows/s and the tier process's CPU s.
#   bash perf/tier.sh [ROWS] [DAYS]
# BIN=PATH: measure that tickwire binary instead of building this tree's.
set -euo pipefail
rows=${1:-4000000} days=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
hot=http://127.0.0.1:8123 cold=http://127.0.0.1:8124
q() { curl -sSf "$1" --data-binary "$2"; }
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
for db in tier_perf; do q $hot "DROP DATABASE IF EXISTS $db"; done
for db in tier_perf_floor tier_perf_cold; do q $cold "DROP DATABASE IF EXISTS $db"; done
ddl=$(python3 - "$root" <<'PY'
import sys
s = open(sys.argv[1] + "/sql/clickhouse/legacy-18.16/001_tables.sql").read()
print(next(x for x in s.split(";") if "tickwire.trades (" in x).strip())
PY
)
q $hot "CREATE DATABASE tier_perf"; q $hot "${ddl//tickwire./tier_perf.}"
q $cold "CREATE DATABASE tier_perf_floor"; q $cold "${ddl//tickwire./tier_perf_floor.}"
per=$((rows / days / 2)) day0=20000
for d in $(seq 0 $((days - 1))); do
  for mi in 0 1; do
    m=$([ $mi = 0 ] && echo spot || echo usdm); base=$(( (d * 2 + mi) * per ))
    q $hot "INSERT INTO tier_perf.trades SELECT 'binance', '$m', concat('SYM', toString(number % 7)), NULL,
      $(( (day0 + d) * 86400 ))000000000 + number * 1000, $base + number, toDecimal64(number % 1000, 8) / 7,
      toDecimal128(number % 13, 8), number % 2, 0, 1000000 + intDiv($base + number, 5000) FROM numbers($per)"
  done
done
n=$(q $hot "SELECT count() FROM tier_perf.trades")
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; ClickHouse $(q $hot 'SELECT version()'); $(date -u +%F)"
echo "rows: $n trades over $days days x 2 markets"

t0=$(date +%s.%N)
q $cold "INSERT INTO tier_perf_floor.trades SELECT * FROM remote('127.0.0.1:9000', tier_perf, trades)"
t1=$(date +%s.%N)
python3 -c "import sys; n,a,b=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print(f'floor  (cold server INSERT SELECT remote(hot)): {n} rows {b-a:.2f} s {n/(b-a):,.0f} rows/s')" "$n" "$t0" "$t1"

run() { # run LABEL TARGET [FLAGS...]
  local label=$1 target=$2; shift 2
  /usr/bin/time -f '%e %U %S' -o "$out/time" "$bin" tier --from clickhouse://127.0.0.1:8123/tier_perf \
    --to "$target" --older-than 0s "$@" >"$out/r.json" 2>"$out/r.err" || { cat "$out/r.err"; exit 1; }
  python3 - "$label" "$out/r.json" "$out/time" <<'PY'
import json, sys
r = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
wall, user, sys_ = map(float, open(sys.argv[3]).read().split()[-3:])
assert r["windows"]["failed"] == 0, r["failures"]
print(f"{sys.argv[1]}: {r['rows_copied']} rows {r['elapsed_s']:.2f} s {r['rows_per_s']:,.0f} rows/s "
      f"(copy {r['copy_s']:.2f} s + check {r['check_s']:.2f} s), tier CPU {user + sys_:.2f} s, windows verified {r['windows']['verified']}")
PY
}
run "tier   -> cold ClickHouse (lz4)" clickhouse://127.0.0.1:8124/tier_perf_cold
q $cold "DROP DATABASE tier_perf_cold"
run "tier   -> cold ClickHouse (--compression none)" clickhouse://127.0.0.1:8124/tier_perf_cold --compression none
run "tier   -> Parquet archive" "parquet:$out/archive"
echo "archive: $(du -sh "$out/archive" | cut -f1) for $n rows"
q $cold "SELECT 'cold rows', count(), uniqExact(trade_id) FROM tier_perf_cold.trades FORMAT TSV"
q $hot "DROP DATABASE tier_perf"
for db in tier_perf_floor tier_perf_cold; do q $cold "DROP DATABASE $db"; done
