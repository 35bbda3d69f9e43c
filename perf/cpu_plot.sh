#!/usr/bin/env bash
# CPU per message by thread at several rates: perf/cpu_cost.sh once a rate, its tables on
# stdout, and perf/plots/cpu-per-message.png (perf/plot.py) drawn from them.
#   bash perf/cpu_plot.sh [SECONDS] [RATE...]     (default 8 s at 50k, 200k and 800k msg/s)
# PRERENDER=1, BIN=PATH and CAPTURE=1 are passed on to perf/cpu_cost.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}; shift || true
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(50000 200000 800000)
tsv=$(mktemp); trap 'rm -f "$tsv"' EXIT
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for r in "${rates[@]}"; do
  CPU_TSV=$tsv bash perf/cpu_cost.sh "$secs" "$r"
  echo
done
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check matplotlib
mkdir -p perf/plots
python3 perf/plot.py cpu "$tsv" perf/plots/cpu-per-message.png && echo "plot: perf/plots/cpu-per-message.png"
