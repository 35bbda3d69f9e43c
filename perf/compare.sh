#!/usr/bin/env bash
# Same-run comparison of tickwire builds: `tickwire demo` at each rate, each binary in turn,
# for a number of rounds; prints sent msg/s, whether everything arrived, and receive -> ZMQ
# publish latency percentiles. PRERENDER=1: every run pre-renders its frames (`--prerender`).
#   bash perf/compare.sh SECONDS ROUNDS "RATE..." NAME=BINARY...
# e.g. build the commit before into /tmp/tw_base, this one into /tmp/tw_new, then
#   bash perf/compare.sh 5 2 "100000 400000 800000" base=/tmp/tw_base new=/tmp/tw_new
set -euo pipefail
secs=$1 rounds=$2 rates=$3; shift 3
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
port=5700
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "| round | offered msg/s | build | sent msg/s | records == sent | p50 us | p99 us | p99.9 us |"
echo "|---:|---:|---|---:|:---:|---:|---:|---:|"
for round in $(seq "$rounds"); do
  for r in $rates; do
    for nb in "$@"; do
      name=${nb%%=*} bin=${nb#*=}
      port=$((port + 1))
      line=$("$bin" demo --duration "$secs" --rate "$r" --out "$out/$name$r$round" --zmq "tcp://127.0.0.1:$port" --stats-secs 0 ${PRERENDER:+--prerender} | tail -1)
      python3 - "$round" "$r" "$name" "$line" <<'PY'
import json, sys
rd, r, name, s = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
sent = sum(s["sent"].values()); rec = sum(v for k, v in s["records"].items() if k != "gap")
lat = s["latency_us"]["recv_to_publish"]
ok = "yes" if rec == sent and s["dropped"] == 0 and s["errors"] == 0 else "NO"
print(f"| {rd} | {r:,} | {name} | {sent / s['input_s']:,.0f} | {ok} | {lat['p50']} | {lat['p99']} | {lat['p999']} |")
PY
    done
  done
done
