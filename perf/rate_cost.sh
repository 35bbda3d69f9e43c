#!/usr/bin/env bash
# Cost by rate: `tickwire run` against a separate `tickwire sim` process (spot, four symbols,
# aggTrade + bookTicker + depth@100ms with a synced book: the streams of issue 21's cryptofeed
# comparison), Parquet + ZMQ + the HTTP API (its /metrics counts the messages), at each RATE in
# turn. After a warm-up, reads every engine thread's time on a CPU (schedstat, exact ns), its
# user and system time (stat, 10 ms ticks), and its voluntary context switches (each one a
# sleep, so a wake-up) over SECONDS, and the frames the engine took between the two samples.
# Prints per rate the engine's CPU-us per message, % of a core, user/system split and
# wake-ups per burst (the simulator sends every 1 ms: 1,000 bursts a second), then per thread.
#   bash perf/rate_cost.sh [SECONDS] [RATE...]          (default: 20 s at 1000 5000 20000 100000)
# RATE 1 is the idle case: one message a second.
# SINKS=all: also PostgreSQL, ClickHouse and the Redis L1 where they answer (the idle set-up).
# SINKS=redis: also the Redis L1 (127.0.0.1:6379, prefix twrate:), to measure what it costs.
# BIN=PATH: measure that tickwire binary instead of building this tree's (same-run A/B).
# FLOOR=0: skip the baseline. Otherwise each rate is also measured, against the same simulator
# right after the engine, for the plainest tokio-tungstenite client of the same streams
# (benches/examples/ws_floor.rs: read each frame and drop it): the floor any client pays here.
# TSV=FILE: also append `rate<TAB>who: thread<TAB>cpu_us_per_msg<TAB>wakeups_per_s` lines there,
# and `rate<TAB>who: rss_mib<TAB>MiB<TAB>0` (the process's resident memory at the second sample);
# perf/plot.py rate TSV PNG draws them. LABEL=NAME: `who` for the engine (default tickwire), to
# put two builds' runs in one TSV.
set -euo pipefail
secs=${1:-20}; shift || true
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(1000 5000 20000 100000)
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
floor=""
if [ "${FLOOR:-1}" != 0 ]; then
  cargo build --release -q -p tickwire-benches --example ws_floor --manifest-path "$root/Cargo.toml"
  floor=${CARGO_TARGET_DIR:-$root/target}/release/examples/ws_floor
fi
out=$(mktemp -d)
spot=127.0.0.1:19711 usdm=127.0.0.1:19712 http=127.0.0.1:19713
sim="" run=""
trap 'kill $sim $run 2>/dev/null; rm -rf "$out"' EXIT
hz=$(getconf CLK_TCK)

sinks="[[sinks]]
type = \"parquet\"
dir = \"$out/data\""
if [ "${SINKS:-}" = all ]; then
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
fi
if [ "${SINKS:-}" = redis ]; then sinks="$sinks
[[sinks]]
type = \"redis\"
url = \"redis://127.0.0.1:6379\"
prefix = \"twrate:\""; fi
markets=(spot)
[ "${SINKS:-}" = all ] && markets=(spot usdm)
sources=""
for m in "${markets[@]}"; do
  ep=$spot; [ "$m" = usdm ] && ep=$usdm
  sources="$sources
[[sources]]
market = \"$m\"
symbols = [\"BTCUSDT\", \"ETHUSDT\", \"SOLUSDT\", \"PEPEUSDT\"]
streams = [\"aggTrade\", \"bookTicker\", \"depth@100ms\"]
endpoint = \"ws://$ep\""
done
cat >"$out/tw.toml" <<TOML
stats_secs = 0
[zmq]
bind = "tcp://127.0.0.1:19714"
$sources
$sinks
[http]
bind = "$http"
TOML

frames() { curl -s "http://$http/metrics" | awk '$1 == "tickwire_frames_total" {print $2}'; }
floor_frames() { echo "$(cat "$out/floor.count" 2>/dev/null || echo 0)"; }
sample() { # sample FILE PID COUNTER: "<frames>", then "<thread> <ns on cpu> <user ticks> <sys ticks> <sleeps>"
  awk '/^VmRSS/ {print $2}' "/proc/$2/status" >"$1.rss"
  { "$3"
    for t in /proc/$2/task/*; do
      echo "$(tr ' ' '_' <"$t/comm") $(awk '{print $1}' "$t/schedstat") $(awk '{print $14, $15}' "$t/stat") $(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")"
    done; } >"$1"
}
report() { # report RATE WHO: the table between the two samples
  python3 - "$out/a" "$out/b" "$secs" "$1" "$hz" "${TSV:-}" "$2" <<'PY'
import collections, sys
a, b, secs, rate, hz, tsv, who = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
rss = int(open(b + ".rss").read().strip() or 0) / 1024
def read(p):
    lines = open(p).read().split("\n")
    d = collections.defaultdict(lambda: [0, 0, 0, 0])
    for line in lines[1:]:
        if line.strip():
            name, ns, ut, st, sw = line.split()
            for i, v in enumerate((int(ns) / 1e9, int(ut) / hz, int(st) / hz, int(sw))):
                d[name][i] += v
    return float(lines[0] or 0), d
(fa, da), (fb, db) = read(a), read(b)
msgs = max(fb - fa, 1)
diff = {n: [db[n][i] - da[n][i] for i in range(4)] for n in db}
cpu = sum(v[0] for v in diff.values())
user = sum(v[1] for v in diff.values())
sys_ = sum(v[2] for v in diff.values())
wake = sum(v[3] for v in diff.values())
bursts = 1000 * secs
print(f"\nrate {rate}/s, {who}: {msgs / secs:,.0f} msg/s taken, {cpu * 1e6 / msgs:.2f} CPU-us a message, "
      f"{100 * cpu / secs:.2f}% of a core (user {100 * user / max(user + sys_, 1e-9):.0f}%, "
      f"system {100 * sys_ / max(user + sys_, 1e-9):.0f}%), {wake / secs:,.0f} wake-ups/s = "
      f"{wake / bursts:.2f} a 1 ms burst, RSS {rss:.0f} MiB")
print("| thread | CPU-us a message | % of a core | system % | wake-ups/s |")
print("|---|---:|---:|---:|---:|")
for n in sorted(diff, key=lambda n: -diff[n][0]):
    c, u, s, w = diff[n]
    if c == 0 and w == 0:
        continue
    print(f"| {n} | {c * 1e6 / msgs:.2f} | {100 * c / secs:.2f} | "
          f"{100 * s / max(u + s, 1e-9):.0f} | {w / secs:,.1f} |")
if tsv:
    with open(tsv, "a") as f:
        for n, (c, u, s, w) in diff.items():
            f.write(f"{rate}\t{who}: {n}\t{c * 1e6 / msgs:.3f}\t{w / secs:.1f}\n")
        f.write(f"{rate}\t{who}: rss_mib\t{rss:.1f}\t0\n")
PY
}

for rate in "${rates[@]}"; do
  "$bin" sim --spot "$spot" --usdm "$usdm" --rate "$rate" >"$out/sim.json" 2>/dev/null &
  sim=$!
  sleep 1
  rm -rf "$out/data"
  "$bin" run --config "$out/tw.toml" >"$out/summary" 2>"$out/log" &
  run=$!
  sleep 6 # connected, books synced, batches flowing
  sample "$out/a" "$run" frames; sleep "$secs"; sample "$out/b" "$run" frames
  report "$rate" "${LABEL:-tickwire}"
  kill -INT "$run"; wait "$run" 2>/dev/null || true
  run=""
  if [ -n "$floor" ]; then
    streams=""
    for s in btcusdt ethusdt solusdt pepeusdt; do
      streams="$streams/$s@aggTrade/$s@bookTicker/$s@depth@100ms"
    done
    rm -f "$out/floor.count"
    "$floor" "ws://$spot/stream?streams=${streams#/}" "$out/floor.count" 2>"$out/floor.log" &
    run=$!
    sleep 6
    sample "$out/a" "$run" floor_frames; sleep "$secs"; sample "$out/b" "$run" floor_frames
    report "$rate" "floor (plain tokio-tungstenite client)"
    kill "$run"; wait "$run" 2>/dev/null || true
    run=""
  fi
  kill "$sim"; wait "$sim" 2>/dev/null || true
  sim=""
done
