#!/usr/bin/env bash
# Idle cost: `tickwire run` connected and subscribed to a simulator that sends 1 message a
# second per market (`tickwire sim --rate 1`), with every sink configured (Parquet, and
# PostgreSQL, ClickHouse and the Redis L1 where they answer) and the HTTP API on. After a
# warm-up, reads every engine thread's time on a CPU (schedstat, ns) and voluntary context
# switches (wake-ups) from /proc over SECONDS and prints the engine's share of a core and, per thread, CPU and
# wake-ups a second.
#   bash perf/idle_cost.sh [SECONDS]
# BIN=PATH: measure that tickwire binary instead of building this tree's.
set -euo pipefail
secs=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
out=$(mktemp -d)
spot=127.0.0.1:19711 usdm=127.0.0.1:19712 http=127.0.0.1:19713
"$bin" sim --spot "$spot" --usdm "$usdm" --rate 1 >"$out/sim.json" 2>/dev/null &
sim=$!
trap 'kill $sim $run 2>/dev/null; rm -rf "$out"' EXIT
sleep 1
sinks="[[sinks]]
type = \"parquet\"
dir = \"$out/data\""
if pg_isready -q -h 127.0.0.1 2>/dev/null; then sinks="$sinks
[[sinks]]
type = \"postgres\"
url = \"postgres://postgres@127.0.0.1:5432/postgres\"
schema = \"tw_idle\"
timescale = \"off\"
spill_dir = \"$out/pg-spill\""; fi
if curl -s http://127.0.0.1:8123/ping >/dev/null 2>&1; then sinks="$sinks
[[sinks]]
type = \"clickhouse\"
url = \"http://127.0.0.1:8123\"
database = \"tw_idle\"
spill_dir = \"$out/ch-spill\""; fi
if redis-cli ping >/dev/null 2>&1; then sinks="$sinks
[[sinks]]
type = \"redis\"
url = \"redis://127.0.0.1:6379\"
prefix = \"twidle:\""; fi
cat >"$out/tw.toml" <<TOML
stats_secs = 0
[zmq]
bind = "tcp://127.0.0.1:19714"
[[sources]]
market = "spot"
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"]
streams = ["aggTrade", "bookTicker", "depth@100ms"]
endpoint = "ws://$spot"
[[sources]]
market = "usdm"
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"]
streams = ["aggTrade", "bookTicker", "depth@100ms"]
endpoint = "ws://$usdm"
$sinks
[http]
bind = "$http"
TOML
"$bin" run --config "$out/tw.toml" >"$out/summary" 2>"$out/log" &
run=$!
sleep 8
sample() {
  for t in /proc/$run/task/*; do
    # schedstat: ns on a CPU (exact; /proc/.../stat's 10 ms ticks are too coarse for idle).
    echo "$(tr ' ' '_' <"$t/comm") $(awk '{print $1}' "$t/schedstat") $(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")"
  done >"$1"
}
sample "$out/a"; sleep "$secs"; sample "$out/b"
python3 - "$out/a" "$out/b" "$secs" "$(grep -c '^type' "$out/tw.toml")" <<'PY'
import collections, sys
a, b, secs, nsinks = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def read(p):
    cpu, wake = collections.Counter(), collections.Counter()
    for line in open(p):
        name, ticks, sw = line.split()
        cpu[name] += int(ticks) / 1e9
        wake[name] += int(sw)
    return cpu, wake
(ca, wa), (cb, wb) = read(a), read(b)
total = sum(cb.values()) - sum(ca.values())
print(f"idle over {secs:.0f} s with {nsinks} sinks: {100 * total / secs:.2f}% of a core, "
      f"{(sum(wb.values()) - sum(wa.values())) / secs:,.0f} wake-ups/s")
print("| thread | CPU % of a core | wake-ups/s |")
print("|---|---:|---:|")
for n in sorted(cb, key=lambda n: -(wb[n] - wa[n])):
    print(f"| {n} | {100 * (cb[n] - ca[n]) / secs:.2f} | {(wb[n] - wa[n]) / secs:,.1f} |")
PY
kill -INT $run; wait $run 2>/dev/null || true
