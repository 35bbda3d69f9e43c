#!/usr/bin/env bash
# Where the CPU goes: runs `tickwire demo` at a rate (0: as fast as the simulator can write)
# and, half a second before it stops, reads every thread's CPU time from /proc; prints
# CPU-microseconds per message for each thread group (engine vs in-process simulator).
#   bash perf/cpu_cost.sh [SECONDS] [RATE]
set -euo pipefail
secs=${1:-8} rate=${2:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
hz=$(getconf CLK_TCK)
"$bin" demo --duration "$secs" --rate "$rate" --out "$out/data" --zmq tcp://127.0.0.1:5599 \
  --stats-secs 1 >"$out/summary" 2>"$out/stats" &
pid=$!
sleep "$(awk -v s="$secs" 'BEGIN {print s - 0.5}')"
for t in /proc/$pid/task/*; do
  echo "$(tr ' ' '_' <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
done >"$out/threads"
# Messages taken in by then: the last stats line's flushed rows is a lower bound; use the
# records counter of the summary scaled to the sampling time instead.
wait "$pid"
python3 - "$out/threads" "$out/summary" "$hz" "$secs" "$rate" <<'PY'
import json, sys, collections
threads, summary, hz, secs, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
s = json.loads(open(summary).read().strip().splitlines()[-1])
msgs = sum(v for k, v in s["records"].items() if k != "gap")
# Sampled at secs - 0.5 of duration_s: scale the message count to the sampling moment.
msgs_at = msgs * (secs - 0.5) / s["duration_s"]
cpu = collections.Counter()
for line in open(threads):
    name, ticks = line.rsplit(" ", 1)
    cpu[name] += int(ticks) / hz
print(f"rate {rate}: {msgs / s['duration_s']:,.0f} msg/s taken in, records == sent: {msgs == sum(s['sent'].values())}, dropped {s['dropped']}")
print("| thread | CPU s | CPU us per message |")
print("|---|---:|---:|")
engine = 0.0
for name, c in sorted(cpu.items(), key=lambda x: -x[1]):
    print(f"| {name} | {c:.2f} | {c * 1e6 / msgs_at:.2f} |")
    if name != "sim":
        engine += c
print(f"| engine (all but sim) | {engine:.2f} | {engine * 1e6 / msgs_at:.2f} |")
print(f"engine ceiling on 2 dedicated cores at this cost: {2e6 / (engine * 1e6 / msgs_at):,.0f} msg/s")
PY
