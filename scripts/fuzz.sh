#!/usr/bin/env bash
# Fuzzes the Binance frame decoder (fuzz/fuzz_targets/decode_frame.rs) on the stable toolchain:
# libFuzzer through libfuzzer-sys, with the SanitizerCoverage instrumentation cargo-fuzz uses
# (stable -C flags), debug assertions and overflow checks on. No AddressSanitizer: it needs a
# nightly compiler, and the decoder has no unsafe code (the workspace denies it), so a bad
# read is a panic that libFuzzer catches as a crash.
#
#   bash scripts/fuzz.sh [LIBFUZZER ARGS...]     e.g. -max_total_time=60, -runs=10000000
#
# Seeds: every frame of ../shared/fixtures/binance (the sample frames and both real captures,
# read from there, never copied into the repository), plus the corpus this machine has grown
# (fuzz/corpus, not committed). A crash leaves its input in fuzz/artifacts and exits non-zero;
# each one becomes a test in codecs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${TICKWIRE_FIXTURES:-$root/../shared/fixtures/binance}
host=$(rustc -vV | sed -n 's/^host: //p')
target=${CARGO_TARGET_DIR:-$root/target}/fuzz
# The instrumentation applies to the target only (--target keeps it off build scripts).
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  CARGO_TARGET_DIR=$target cargo build --release -q --manifest-path "$root/fuzz/Cargo.toml" \
  --target "$host" --bin decode_frame
bin=$target/$host/release/decode_frame
seeds=$(mktemp -d); trap 'rm -rf "$seeds"' EXIT
n=0
for f in "$fixtures"/*.jsonl "$fixtures"/captures/*.jsonl; do
  [ -f "$f" ] || continue
  while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" >"$seeds/$n"
  done <"$f"
done
echo "fuzz: $n seed frames from $fixtures"
mkdir -p "$root/fuzz/corpus" "$root/fuzz/artifacts"
"$bin" "$root/fuzz/corpus" "$seeds" -artifact_prefix="$root/fuzz/artifacts/" -print_final_stats=1 "$@"
