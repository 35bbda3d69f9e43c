#!/usr/bin/env bash
# Where the CPU goes: runs `tickwire demo` at a rate (0: as fast as the simulator can write),
# reads every thread's CPU time from /proc and the engine's frame counter from /metrics twice
# in the steady part of the run (1 s after the first frame, 1.5 s before the end), and prints
# CPU-microseconds per message between the two for each thread group (engine vs simulator).
#   bash perf/cpu_cost.sh [SECONDS] [RATE]      (SECONDS >= 5)
# PRERENDER=1: the simulator renders its frames before the run and only sends them during it
# (`tickwire demo --prerender`; RATE must then be > 0: it sets how many frames are rendered).
# BIN=PATH: measure that tickwire binary instead of building this tree's (same-run A/B runs).
# CAPTURE=1: with the raw capture on (`--capture`), to measure what it costs.
# CPU_TSV=FILE: also appends `rate<TAB>thread<TAB>CPU-us per message` lines there (for
# perf/cpu_plot.sh and perf/plot.py).
set -euo pipefail
secs=${1:-8} rate=${2:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
hz=$(getconf CLK_TCK)
http=127.0.0.1:9599
"$bin" demo --duration "$secs" --rate "$rate" --out "$out/data" --zmq tcp://127.0.0.1:5599 \
  --http "$http" --stats-secs 1 ${PRERENDER:+--prerender} ${CAPTURE:+--capture "$out/capture"} \
  >"$out/summary" 2>"$out/stats" &
pid=$!
frames() { curl -s "http://$http/metrics" | awk '$1 == "tickwire_frames_total" {print $2}'; }
sample() { # sample FILE: "<frames>" then "<thread> <ticks>" per thread
  { frames; for t in /proc/$pid/task/*; do
      echo "$(tr ' ' '_' <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
    done; } >"$1"
}
# The run's clock starts after any pre-rendering: wait for the first frames.
until [ "$(frames 2>/dev/null || echo 0)" -gt 0 ] 2>/dev/null; do sleep 0.05; done
sleep 1
sample "$out/a"
sleep "$(awk -v s="$secs" 'BEGIN {print s - 2.5}')"
sample "$out/b"
wait "$pid"
python3 - "$out/a" "$out/b" "$out/summary" "$hz" "$rate" <<'PY'
import json, sys, collections
a, b, summary, hz, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def read(p):
    lines = open(p).read().split("\n")
    cpu = collections.Counter()
    for line in lines[1:]:
        if line.strip():
            name, ticks = line.rsplit(" ", 1)
            cpu[name] += int(ticks) / hz
    return float(lines[0]), cpu
fa, ca = read(a)
fb, cb = read(b)
msgs = fb - fa
s = json.loads(open(summary).read().strip().splitlines()[-1])
total = sum(v for k, v in s["records"].items() if k != "gap")
print(f"rate {rate}: {total / s['input_s']:,.0f} msg/s over the run, {msgs:,.0f} messages between the samples, "
      f"records == sent: {total == sum(s['sent'].values())}, dropped {s['dropped']}"
      + (f", capture: {s['capture']['entries']:,} entries, {s['capture']['bytes'] / 1e6:,.0f} MB, "
         f"{s['capture']['dropped']} dropped" if "capture" in s else ""))
print("| thread | CPU s | CPU us per message |")
print("|---|---:|---:|")
engine = 0.0
for name in sorted(cb, key=lambda n: -(cb[n] - ca[n])):
    c = cb[name] - ca[name]
    print(f"| {name} | {c:.2f} | {c * 1e6 / msgs:.2f} |")
    if name != "sim":
        engine += c
print(f"| engine (all but sim) | {engine:.2f} | {engine * 1e6 / msgs:.2f} |")
import os
if os.environ.get("CPU_TSV"):
    with open(os.environ["CPU_TSV"], "a") as f:
        for name in cb:
            f.write(f"{rate}\t{name}\t{(cb[name] - ca[name]) * 1e6 / msgs:.3f}\n")
print(f"engine ceiling on 2 dedicated cores at this cost: {2e6 / (engine * 1e6 / msgs):,.0f} msg/s")
PY
