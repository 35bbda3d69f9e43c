#!/usr/bin/env bash
# End-to-end throughput and latency of `tickwire demo` (in-process simulator -> WebSocket ->
# engine -> ZMQ PUB + Parquet) at a series of offered rates, release build, on this machine.
#
#   bash perf/e2e.sh [SECONDS] [RATE...]
#
# For each rate: what the simulator actually sent per second (over the time it ran, the
# summary's `input_s`), whether everything arrived
# (records == sent, nothing dropped), and the receive->publish latency percentiles; then the
# highest rate sent among the runs that lost nothing.
# The simulator runs in the same process and shares the machine's cores with the engine.
# PRERENDER=1: it renders all its frames before the run and only sends them during it
# (`tickwire demo --prerender`), so that it costs its writes alone.
# PLOTS=DIR (default perf/plots): writes e2e-throughput.png and e2e-latency.png there (by
# perf/plot.py, matplotlib); PLOTS= (empty) writes none.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}; shift || true
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(50000 100000 200000 400000 800000 1600000)
cargo build --release -q -p tickwire-engine --bin tickwire
bin=${CARGO_TARGET_DIR:-target}/release/tickwire
out=$(mktemp -d)
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  duration: ${secs}s"
echo "| offered msg/s | sent msg/s | records == sent | dropped | recv->pub p50 us | p99 us | p99.9 us | recv->flush p50 ms |"
echo "|---:|---:|:---:|---:|---:|---:|---:|---:|"
port=5590
for r in "${rates[@]}"; do
  port=$((port + 1))
  line=$("$bin" demo --duration "$secs" --rate "$r" --out "$out/$r" --zmq "tcp://127.0.0.1:$port" --stats-secs 0 ${PRERENDER:+--prerender} | tail -1)
  python3 - "$r" "$line" "$out/best" "$out/e2e.tsv" <<'PY'
import json, sys
r, s, best, tsv = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
sent = sum(s["sent"].values()); rec = sum(v for k, v in s["records"].items() if k != "gap")
lat = s["latency_us"]
ok = "yes" if rec == sent and s["dropped"] == 0 and s["errors"] == 0 else "NO"
print(f"| {r:,} | {sent / s['input_s']:,.0f} | {ok} | {s['dropped']} | {lat['recv_to_publish']['p50']} | "
      f"{lat['recv_to_publish']['p99']} | {lat['recv_to_publish']['p999']} | {lat['recv_to_flush']['p50'] / 1000:.0f} |")
with open(tsv, "a") as f:
    f.write(f"{r}\t{sent / s['input_s']:.0f}\t{ok.lower()}\t{lat['recv_to_publish']['p50']}\t"
            f"{lat['recv_to_publish']['p99']}\t{lat['recv_to_publish']['p999']}\n")
if ok == "yes":
    with open(best, "a") as f:
        f.write(f"{sent / s['input_s']:.0f} {r}\n")
PY
  rm -rf "${out:?}/$r"
done
# The answer to "how fast with zero loss": the highest rate sent among the runs that lost nothing.
if [ -s "$out/best" ]; then
  sort -n "$out/best" | tail -1 | python3 -c 'import sys; a, b = map(int, sys.stdin.read().split()); print(f"highest rate taken with zero loss: {a:,} msg/s (offered {b:,})")'
else
  echo "highest rate taken with zero loss: none (every run lost records)"
fi
plots=${PLOTS-perf/plots}
if [ -n "$plots" ]; then
  mkdir -p "$plots"
  python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check matplotlib
  python3 perf/plot.py e2e "$out/e2e.tsv" "$plots/e2e" && echo "plots: $plots/e2e-throughput.png $plots/e2e-latency.png"
fi
rm -rf "$out"
