#!/usr/bin/env bash
# Time to sync every order book of the whole market from a cold start, against the floor the
# request-weight limit allows: `tickwire sim --symbols N` (Binance's limits: 6,000 weight a
# minute spot, 2,400 USD-M) and `tickwire run` with `symbols = ["*"]`, depth@100ms on every
# TRADING symbol of both markets, snapshots at DEPTH_LIMIT levels (default 1000: weight 50 spot,
# 20 USD-M). Floor = books x weight / limit a minute (what the exchange allows at best, with
# the whole limit and no minute boundaries); the engine spends max_weight_share (0.8) of each
# UTC minute. Prints per market: books, seconds to sync them all, the floor, the ratio, and the
# simulator's count of answers 429 and 418.
#   bash perf/book_sync.sh N [DEPTH_LIMIT]
# BIN=PATH: that tickwire binary instead of building this tree's.
set -euo pipefail
n=${1:?N symbols a market} depth=${2:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
out=$(mktemp -d); sim="" run=""; trap 'kill $sim $run 2>/dev/null || true; rm -rf "$out"' EXIT
spot=127.0.0.1:9611 usdm=127.0.0.1:9612 http=127.0.0.1:9613
rate=$(( n * 10 < 20000 ? n * 10 : 20000 ))
"$bin" sim --spot $spot --usdm $usdm --symbols "$n" --rate "$rate" >"$out/sim.json" 2>"$out/sim.err" &
sim=$!
sleep 0.5
usdm_depth=$depth
cat >"$out/tw.toml" <<EOF
stats_secs = 0
[zmq]
enabled = false
[[sources]]
market = "spot"
symbols = ["*"]
streams = ["depth@100ms"]
endpoint = "ws://$spot"
depth_limit = $depth
[[sources]]
market = "usdm"
symbols = ["*"]
streams = ["depth@100ms"]
endpoint = "ws://$usdm"
depth_limit = $usdm_depth
[[sinks]]
type = "parquet"
dir = "$out/data"
[http]
bind = "$http"
EOF
t0=$(date +%s.%N)
"$bin" run --config "$out/tw.toml" >"$out/run.json" 2>"$out/run.err" &
run=$!
metric() { curl -s "http://$http/metrics" | awk -v m="$1" -v k="$2" '$1 == m "{market=\"" k "\"}" {print $2}'; }
declare -A done_at=()
books=$(( n > 14 ? n - 1 : n )) # one synthetic symbol (the 15th) is not TRADING
while [ -z "${done_at[spot]:-}" ] || [ -z "${done_at[usdm]:-}" ]; do
  for m in spot usdm; do
    [ -n "${done_at[$m]:-}" ] && continue
    s=$(metric tickwire_books_synced_total $m 2>/dev/null || true)
    if [ -n "$s" ] && [ "$s" -ge "$books" ]; then done_at[$m]=$(date +%s.%N); fi
  done
  sleep 0.2
done
kill -TERM $sim; wait $sim || true
kill -TERM $run; wait $run || true
python3 - "$out/sim.json" "$out/run.json" "$t0" "${done_at[spot]}" "${done_at[usdm]}" "$books" "$depth" <<'PY'
import json, sys, datetime
sim = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
run = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
t0, spot, usdm, books, depth = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
def weight(m, l):
    if m == "spot":
        return 5 if l <= 100 else 25 if l <= 500 else 50 if l <= 1000 else 250
    return 2 if l < 100 else 5 if l < 500 else 10 if l < 1000 else 20
limit = {"spot": 6000, "usdm": 2400}
start = datetime.datetime.fromtimestamp(t0, datetime.timezone.utc)
print(f"started {start:%Y-%m-%d %H:%M:%S} UTC (second {start.second} of its minute); depth limit {depth}")
print("| market | books | weight each | seconds to sync all | floor (s) | ratio | 429 | 418 | REST weight spent |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for m, at in (("spot", spot), ("usdm", usdm)):
    w = weight(m, depth)
    floor = books * w / limit[m] * 60
    took = at - t0
    r = sim[m]["rest"]
    print(f"| {m} | {books} | {w} | {took:.1f} | {floor:.1f} | {took / floor:.2f} | {r['status_429']} | {r['status_418']} | {r['weight']} |")
PY
