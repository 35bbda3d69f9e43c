#!/usr/bin/env bash
# The engine's cost at N symbols a market: `tickwire sim --symbols N` and `tickwire run` with
# `symbols = ["*"]` (trade, aggTrade and depth@100ms on every TRADING symbol of both markets,
# every book synced), at RATE events a second a market. Samples the engine process's CPU time
# and its frame counter twice in the steady part (after every book is live), and prints CPU-us
# per message, the messages a second, the books, and the engine's peak RSS (VmHWM).
#   bash perf/market_cost.sh N [RATE] [SECONDS]
# Run it for N=4 and N=400 in the same session: the 4-symbol figure is the baseline.
# BIN=PATH: that tickwire binary instead of building this tree's.
set -euo pipefail
n=${1:?N symbols a market} rate=${2:-20000} secs=${3:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
out=$(mktemp -d); sim="" run=""; trap 'kill $sim $run 2>/dev/null || true; rm -rf "$out"' EXIT
spot=127.0.0.1:9621 usdm=127.0.0.1:9622 http=127.0.0.1:9623
"$bin" sim --spot $spot --usdm $usdm --symbols "$n" --rate "$rate" >"$out/sim.json" 2>"$out/sim.err" &
sim=$!
until (exec 3<>/dev/tcp/127.0.0.1/9621) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/9622) 2>/dev/null; do sleep 0.05; done
cat >"$out/tw.toml" <<EOF
stats_secs = 0
[zmq]
bind = "tcp://127.0.0.1:9624"
[[sources]]
market = "spot"
symbols = ["*"]
streams = ["trade", "aggTrade", "depth@100ms"]
endpoint = "ws://$spot"
depth_limit = 100
[[sources]]
market = "usdm"
symbols = ["*"]
streams = ["trade", "aggTrade", "depth@100ms"]
endpoint = "ws://$usdm"
depth_limit = 50
[[sinks]]
type = "parquet"
dir = "$out/data"
[http]
bind = "$http"
EOF
"$bin" run --config "$out/tw.toml" >"$out/run.json" 2>"$out/run.err" &
run=$!
hz=$(getconf CLK_TCK)
books=$(( n > 14 ? n - 1 : n ))
m() { curl -s "http://$http/metrics" | awk -v k="$1" 'index($1, k) == 1 {s += $2} END {print s + 0}'; }
until [ "$(m tickwire_books_synced_total 2>/dev/null || echo 0)" -ge $(( 2 * books )) ] 2>/dev/null; do sleep 0.2; done
sleep 2
sample() { echo "$(m tickwire_frames_total) $(m 'tickwire_records_total{') $(awk '{print $14 + $15}' /proc/$run/stat) $(date +%s.%N)"; }
a=$(sample)
sleep "$secs"
b=$(sample)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$run/status)
kill -TERM $sim; wait $sim || true
kill -TERM $run; wait $run || true
python3 - "$a" "$b" "$hz" "$hwm" "$n" "$books" "$out/run.json" <<'PY'
import json, sys
a, b = [list(map(float, x.split())) for x in sys.argv[1:3]]
hz, hwm, n, books = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
s = json.loads(open(sys.argv[7]).read().strip().splitlines()[-1])
recs = b[1] - a[1]
cpu = (b[2] - a[2]) / hz
secs = b[3] - a[3]
print(f"| {n} | {2 * books} | {recs / secs:,.0f} | {cpu * 1e6 / recs:.2f} | {hwm / 1024:.0f} | {s['dropped']} | {sum(v['synced'] for v in s['books'].values())} |")
PY
