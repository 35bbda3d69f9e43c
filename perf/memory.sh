#!/usr/bin/env bash
# Memory: `tickwire demo` at RATE msg/s for SECONDS, with the query cache on (`--http`, default
# 512 MiB budget) or off, and prints the engine's peak RSS (VmHWM) and its RSS at the end of
# the run, beside the cache's own count of the bytes it holds. RATE 0: the simulator sends
# 1 msg/s (idle). PRERENDER=1 for rates the live simulator cannot make (1 M msg/s).
#   bash perf/memory.sh SECONDS RATE on|off
# BIN=PATH: measure that tickwire binary instead of building this tree's.
set -euo pipefail
secs=${1:-10} rate=${2:-100000} cache=${3:-on}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
http=127.0.0.1:9598
args=(demo --duration "$secs" --rate "$([ "$rate" = 0 ] && echo 2 || echo "$rate")" --out "$out/data"
      --zmq tcp://127.0.0.1:5597 --stats-secs 0)
[ "$cache" = on ] && args+=(--http "$http")
[ -n "${PRERENDER:-}" ] && args+=(--prerender)
"$bin" "${args[@]}" >"$out/summary" 2>"$out/log" &
pid=$!
peak=0 cached=0 last=0
while kill -0 $pid 2>/dev/null; do
  r=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
  h=$(awk '/^VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
  [ -n "$h" ] && [ "$h" -gt "$peak" ] && peak=$h
  [ -n "$r" ] && [ "$r" != 0 ] && last=$r
  if [ "$cache" = on ]; then
    c=$(curl -s "http://$http/metrics" 2>/dev/null | awk '$1 == "tickwire_cache_bytes" {print $2}' || true)
    [ -n "$c" ] && cached=$c
  fi
  sleep 0.5
done
wait $pid || true
[ -s "$out/summary" ] || { echo "demo failed:"; tail -5 "$out/log"; exit 1; }
python3 - "$out/summary" "$rate" "$cache" "$peak" "$last" "$cached" <<'PY'
import json, sys
summary, rate, cache, peak, last, cached = sys.argv[1:]
s = json.loads(open(summary).read().strip().splitlines()[-1])
total = sum(v for k, v in s["records"].items())
print(f"rate {rate} ({total / s['input_s']:,.0f} msg/s over the run), cache {cache}: peak RSS "
      f"{int(peak) / 1024:,.0f} MiB, RSS near the end {int(last) / 1024:,.0f} MiB, cache holding "
      f"{float(cached) / 2**20:,.0f} MiB; dropped {s['dropped']}")
PY
