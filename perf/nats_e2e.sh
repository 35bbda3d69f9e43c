#!/usr/bin/env bash
# End to end over NATS JetStream on this machine, in two phases on the machine's nats-server:
#  1. collector: `tickwire demo --nats` (in-process simulator at RATE msg/s for SECONDS) ->
#     JetStream: records taken, records JetStream acknowledged, drops;
#  2. writer: `tickwire run` with a `type = "nats"` source -> Parquet, draining the stream:
#     records/s over the time it read (input_s minus the idle wait), CPU-us a record.
# Prints both with the records per kind compared (zero loss: collector == stream == writer ==
# Parquet rows).
#   bash perf/nats_e2e.sh [SECONDS] [RATE]
# BIN=PATH: measure that tickwire binary instead of building this tree's. FLOOR=0: skip the
# floor (benches/examples/nats_pull_floor.rs: the plainest async-nats reader of the same
# messages, the writer's consumer settings, measured right after the writer).
set -euo pipefail
secs=${1:-10} rate=${2:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p tickwire-engine --bin tickwire --manifest-path "$root/Cargo.toml"
  bin=${CARGO_TARGET_DIR:-$root/target}/release/tickwire
fi
floor=""
if [ "${FLOOR:-1}" != 0 ]; then
  cargo build --release -q -p tickwire-benches --example nats_pull_floor --manifest-path "$root/Cargo.toml"
  floor=${CARGO_TARGET_DIR:-$root/target}/release/examples/nats_pull_floor
fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
# A stream of its own: any stream that takes tickwire.> is deleted first (two cannot).
python3 - <<'PY'
import asyncio, nats
async def main():
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    for info in await js.streams_info():
        if "tickwire.>" in (info.config.subjects or []):
            await js.delete_stream(info.config.name)
    await nc.close()
asyncio.run(main())
PY
cd "$out"
/usr/bin/time -f '%e %U %S' -o "$out/c.time" "$bin" demo --duration "$secs" --rate "$rate" \
  --out "$out/live" --zmq tcp://127.0.0.1:5597 --nats nats://127.0.0.1:4222 --nats-stream PERF \
  --stats-secs 0 >"$out/c.json" 2>"$out/c.err"
cat >"$out/w.toml" <<TOML
[[sources]]
type = "nats"
stream = "PERF"
durable = "perf"
[zmq]
enabled = false
[[sinks]]
type = "parquet"
dir = "$out/written"
max_file_age_secs = 30
TOML
idle=2
/usr/bin/time -f '%e %U %S' -o "$out/w.time" "$bin" run --config "$out/w.toml" \
  --exit-when-idle "$idle" >"$out/w.json" 2>"$out/w.err"
# The floor, in the same run: the plainest async-nats pull loop reading the same messages.
echo "0 0 0" >"$out/f.out"; echo "0 0 0" >"$out/f.time"
if [ -n "$floor" ]; then
  /usr/bin/time -f '%e %U %S' -o "$out/f.time" "$floor" nats://127.0.0.1:4222 PERF "$idle" >"$out/f.out"
fi
python3 - "$out" "$idle" <<'PY'
import json, sys, asyncio, nats
out, idle = sys.argv[1], float(sys.argv[2])
c = json.loads(open(f"{out}/c.json").read().strip().splitlines()[-1])
w = json.loads(open(f"{out}/w.json").read().strip().splitlines()[-1])
cw, cu, cs = map(float, open(f"{out}/c.time").read().split())
ww, wu, wsy = map(float, open(f"{out}/w.time").read().split())
async def info():
    nc = await nats.connect("nats://127.0.0.1:4222")
    si = await nc.jetstream().stream_info("PERF")
    await nc.jetstream().delete_stream("PERF")
    await nc.close()
    return si.state
st = asyncio.run(info())
taken = sum(c["records"].values())
print(f"collector: {taken:,} records in {c['input_s']:.1f} s = {taken / c['input_s']:,.0f} records/s; "
      f"JetStream acknowledged {c['nats']['records']:,} records in {c['nats']['messages']:,} messages "
      f"({c['nats']['records'] / max(c['nats']['messages'], 1):.1f} a message, {st.bytes / 1e6:,.0f} MB stored); "
      f"dropped {c['nats']['dropped']} queue {c['queue_dropped']}; {(cu + cs) * 1e6 / taken:.2f} CPU-us a record "
      f"(simulator included)")
n = sum(w["records"].values())
read_s = w["input_s"] - idle
print(f"writer: {n:,} records from {w['nats_source']['messages']:,} messages in {read_s:.2f} s = "
      f"{n / read_s:,.0f} records/s into Parquet; {(wu + wsy) * 1e6 / n:.2f} CPU-us a record; "
      f"acked {w['nats_source']['acked']:,} of {st.messages:,}; Parquet rows {w['rows']['parquet']:,}")
fm, fb, fs = open(f"{out}/f.out").read().split()
fw, fu, fsy = map(float, open(f"{out}/f.time").read().split())
if int(fm):
    print(f"floor (plain async-nats pull loop, the same consumer settings, same run): {int(fm):,} messages in "
          f"{float(fs):.2f} s = {n / float(fs):,.0f} records/s; {(fu + fsy) * 1e6 / n:.2f} CPU-us a record")
print(f"zero loss: {c['records'] == w['records'] and w['rows']['parquet'] == taken == c['nats']['records']}")
PY
