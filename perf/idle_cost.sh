#!/usr/bin/env bash
# Idle cost: `tickwire run` connected and subscribed to a simulator that sends 1 message a
# second per market, with every sink configured (Parquet, and PostgreSQL, ClickHouse and the
# Redis L1 where they answer) and the HTTP API on: perf/rate_cost.sh at rate 1 with SINKS=all.
# Prints the engine's share of a core and, per thread, CPU and wake-ups a second.
#   bash perf/idle_cost.sh [SECONDS]
# BIN=PATH: measure that tickwire binary instead of building this tree's.
set -euo pipefail
SINKS=all FLOOR=0 exec bash "$(dirname "$0")/rate_cost.sh" "${1:-30}" 1
