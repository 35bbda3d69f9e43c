#!/usr/bin/env bash
# Replay rate: `tickwire demo --capture` at RATE msg/s for SECONDS, then `tickwire replay` of
# that capture into Parquet, timed; prints the capture's size and the replay's frames/s and
# CPU (user + system of the replay process) per frame, beside the live run's records.
#   bash perf/replay_rate.sh [SECONDS] [RATE]
# BIN=PATH: measure that tickwire binary instead of building this tree's.
set -euo pipefail
secs=${1:-8} rate=${2:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
"$bin" demo --duration "$secs" --rate "$rate" --out "$out/live" --capture "$out/capture" \
  --zmq tcp://127.0.0.1:5598 --stats-secs 0 >"$out/live.json" 2>/dev/null
/usr/bin/time -f '%e %U %S' -o "$out/time" "$bin" replay --capture "$out/capture" --out "$out/replayed" \
  >"$out/replay.json" 2>/dev/null
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
live = json.loads(open(f"{out}/live.json").read().strip().splitlines()[-1])
rep = json.loads(open(f"{out}/replay.json").read().strip().splitlines()[-1])
wall, user, sys_ = map(float, open(f"{out}/time").read().split())
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(f"{out}/capture") for f in fs)
frames = rep["replay"]["frames"]
print(f"live: {sum(live['records'].values()):,} records from {live['frames']:,} frames; capture "
      f"{live['capture']['bytes'] / 1e6:,.0f} MB of entries in {size / 1e6:,.1f} MB of files "
      f"({live['capture']['bytes'] / size:.1f}x), {live['capture']['dropped']} dropped")
print(f"replay: {frames:,} frames in {wall:.2f} s = {frames / wall:,.0f} frames/s, "
      f"{(user + sys_) * 1e6 / frames:.2f} CPU-us a frame; records equal the live run's: "
      f"{rep['records'] == live['records']}")
PY
