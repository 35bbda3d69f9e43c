#!/usr/bin/env bash
# Memory of the engine alone: `tickwire run` (Parquet + ZMQ, no HTTP, so no query cache)
# against a separate `tickwire sim` process at RATE msg/s a market (4 + 4 symbols, every
# stream kind), and after SECONDS prints the engine's peak RSS (VmHWM), its RSS, the records it
# took, its CPU time and the Parquet bytes a record.
#   bash perf/run_memory.sh RATE SECONDS
# BIN=PATH: that tickwire binary instead of building this tree's. PARQUET="..": more lines for
# the Parquet sink's table (e.g. $'zstd_level = 3\npage_kib = 1024'). LABEL: the line's name.
set -euo pipefail
rate=${1:-100000} secs=${2:-15}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
out=$(mktemp -d)
spot=127.0.0.1:19721 usdm=127.0.0.1:19722
sim="" run=""
trap 'kill $sim $run 2>/dev/null; rm -rf "$out"' EXIT
"$bin" sim --spot $spot --usdm $usdm --rate "$rate" >"$out/sim.log" 2>&1 &
sim=$!
sleep 1
cat >"$out/tw.toml" <<T
stats_secs = 0
[zmq]
bind = "tcp://127.0.0.1:19724"
[http]
bind = ""
[[sources]]
market = "spot"
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"]
streams = ["trade", "aggTrade", "bookTicker", "depth@100ms", "depth20@100ms", "kline_1m", "ticker"]
endpoint = "ws://$spot"
[[sources]]
market = "usdm"
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"]
streams = ["trade", "aggTrade", "bookTicker", "depth@100ms", "markPrice@1s", "forceOrder", "ticker"]
endpoint = "ws://$usdm"
[[sinks]]
type = "parquet"
dir = "$out/data"
${PARQUET:-}
T
"$bin" run --config "$out/tw.toml" >"$out/run.out" 2>"$out/run.log" &
run=$!
sleep "$secs"
hwm=$(awk '/^VmHWM/ {print $2}' /proc/$run/status)
rss=$(awk '/^VmRSS/ {print $2}' /proc/$run/status)
read -r -a st </proc/$run/stat
kill -TERM $run; wait $run || true
kill -TERM $sim; wait $sim 2>/dev/null || true
python3 - "$out/run.out" "$hwm" "$rss" "${LABEL:-$(basename "$bin")}" "${st[13]}" "${st[14]}" \
  "$(du -sb "$out/data" | cut -f1)" "$(getconf CLK_TCK)" <<'PY'
import json, sys
f, hwm, rss, label, ut, st, b, hz = sys.argv[1:]
j = json.loads(open(f).read().strip().splitlines()[-1])
rec = sum(j["records"].values())
print(f"{label}: peak RSS {int(hwm) / 1024:.0f} MiB, RSS {int(rss) / 1024:.0f} MiB, {rec} records "
      f"(dropped {j['dropped']}), CPU {(int(ut) + int(st)) / int(hz):.1f} s, "
      f"Parquet {int(b) / rec:.1f} bytes a record")
PY
