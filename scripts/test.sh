#!/usr/bin/env bash
# tickwire's test command: on a fresh machine, installs and starts everything the tests need,
# then runs every test of the workspace. Idempotent: a second run skips what is already there.
#
#   bash scripts/test.sh            # everything
#   TICKWIRE_SKIP_SETUP=1 bash scripts/test.sh   # tests only (services already up)
#
# What it sets up (each only when missing or down):
#   - ClickHouse server and client from Debian's packages (18.16), started as its own user,
#     HTTP on 127.0.0.1:8123, and a second one (the cold tier, the second shard) on 8124
#     (native 19000); both as cluster `tickwire`, with Debian's ZooKeeper on 2181
#   - PostgreSQL 15 on 127.0.0.1:5432, Redis on 6379, NATS with JetStream on 4222
#   - Python test clients: pyzmq (libzmq), pyarrow, chdb (ClickHouse 26.x in-process), DuckDB, pytest,
#     hypothesis, jsonschema and openapi-spec-validator (the OpenAPI conformance test), Playwright
#     driving Debian's chromium (the status page); Debian's Prometheus and promtool (the dashboard)
# Then: cargo fmt --check, cargo clippy -D warnings, every test binary of the workspace, the
# doc-tests, the Python tests: each runs whatever failed before it; the end lists the failures.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive
# Builds are shared between clones on one machine; a fresh machine starts cold.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tickwire/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export TICKWIRE_CLICKHOUSE_URL="${TICKWIRE_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
export TICKWIRE_CLICKHOUSE_COLD_URL="${TICKWIRE_CLICKHOUSE_COLD_URL:-http://127.0.0.1:8124}"
export TICKWIRE_POSTGRES_URL="${TICKWIRE_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 "$((secs * 5))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out after ${secs}s waiting for $what" >&2
  return 1
}

apt_updated=0
apt_install() { # apt_install PACKAGE... (only those not installed)
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq "${missing[@]}"
}

# Our part of each ClickHouse server's config, in its config.d: both servers as the two
# shards of cluster `tickwire` (for the Distributed tables of the cluster tests), ZooKeeper
# (Replicated tables, ON CLUSTER), and the server's {shard}/{replica} macros. The servers read
# config.d next to their config file.
ch_config() { # ch_config DIR SHARD
  mkdir -p "$1"
  cat > "$1/tickwire-cluster.xml" <<XML
<yandex>
  <remote_servers>
    <tickwire>
      <shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard>
      <shard><replica><host>127.0.0.1</host><port>19000</port></replica></shard>
    </tickwire>
  </remote_servers>
  <zookeeper><node><host>127.0.0.1</host><port>2181</port></node></zookeeper>
  <macros><shard>$2</shard><replica>r1</replica></macros>
</yandex>
XML
}

# Starts a ClickHouse server as its own user, or restarts one that runs without ZooKeeper
# (18.16 connects to it only at startup).
ch_start() { # ch_start NAME URL CONFIG PIDFILE
  local name=$1 url=$2 cfg=$3 pid=$4
  if curl -sf "$url/ping" >/dev/null; then
    [ "$(curl -sf "$url/?query=EXISTS%20TABLE%20system.zookeeper")" = 1 ] && return 0
    echo "$name runs without ZooKeeper: restarting it"
    kill "$(cat "$pid" 2>/dev/null)" 2>/dev/null || pkill -f -- "--config-file=$cfg" || true
    wait_for 60 "$name to stop" bash -c "! curl -sf $url/ping"
  fi
  su -s /bin/sh clickhouse -c "clickhouse-server --config-file=$cfg --daemon --pid-file=$pid"
  wait_for 60 "$name" curl -sf "$url/ping"
}

# Debian's ZooKeeper 3.8 (Replicated tables and distributed DDL of the cluster tests).
setup_zookeeper() {
  log "ZooKeeper"
  apt_install zookeeper
  if ! (exec 3<>/dev/tcp/127.0.0.1/2181) 2>/dev/null; then
    ZOOCFGDIR=/etc/zookeeper/conf /usr/share/zookeeper/bin/zkServer.sh start
    wait_for 60 "ZooKeeper on 2181" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181'
  fi
  echo "ZooKeeper up on 2181"
}

setup_clickhouse() {
  log "ClickHouse"
  apt_install clickhouse-server clickhouse-client
  ch_config /etc/clickhouse-server/config.d 01
  mkdir -p /var/run/clickhouse-server /var/log/clickhouse-server /var/lib/clickhouse
  chown -R clickhouse:clickhouse /var/run/clickhouse-server /var/log/clickhouse-server /var/lib/clickhouse
  ch_start "ClickHouse on 8123" "$TICKWIRE_CLICKHOUSE_URL" /etc/clickhouse-server/config.xml \
    /var/run/clickhouse-server/clickhouse-server.pid
  echo "ClickHouse $(curl -sf "$TICKWIRE_CLICKHOUSE_URL/?query=SELECT%20version()") up"
}

# A second ClickHouse server on its own ports and data directory: the cold tier of the tiering
# tests and the second shard of the cluster tests (../shared/SERVICES.md). Its config is the
# stock one with the ports and paths changed.
setup_clickhouse_cold() {
  log "ClickHouse (cold tier and second shard, 8124)"
  local d=/var/lib/clickhouse-cold
  mkdir -p "$d/log"
  if [ ! -f "$d/config.xml" ]; then
    sed -e 's#<http_port>8123<#<http_port>8124<#' -e 's#<tcp_port>9000<#<tcp_port>19000<#' \
        -e 's#<interserver_http_port>9009<#<interserver_http_port>19009<#' \
        -e "s#/var/lib/clickhouse/#$d/#g" -e "s#/var/log/clickhouse-server/#$d/log/#g" \
        -e "s#<users_config>users.xml<#<users_config>/etc/clickhouse-server/users.xml<#" \
        /etc/clickhouse-server/config.xml > "$d/config.xml"
  fi
  ch_config "$d/config.d" 02
  chown -R clickhouse:clickhouse "$d"
  ch_start "ClickHouse on 8124" "$TICKWIRE_CLICKHOUSE_COLD_URL" "$d/config.xml" "$d/clickhouse-server.pid"
  echo "ClickHouse (cold) $(curl -sf "$TICKWIRE_CLICKHOUSE_COLD_URL/?query=SELECT%20version()") up"
}

setup_postgres() {
  log "PostgreSQL"
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    apt_install postgresql
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    wait_for 60 "PostgreSQL on 5432" pg_isready -q -h 127.0.0.1 -p 5432
  fi
  psql -h 127.0.0.1 -U postgres -Atc 'select version()' | cut -c1-40
}

setup_redis() {
  log "Redis"
  if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    apt_install redis-server
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for 30 "Redis on 6379" redis-cli -h 127.0.0.1 ping
  fi
  echo "Redis up"
}

setup_nats() {
  log "NATS"
  if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    apt_install nats-server
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_for 30 "NATS on 4222" bash -c 'exec 3<>/dev/tcp/127.0.0.1/4222'
  fi
  echo "NATS up"
}

setup_python() {
  log "Python test clients"
  if ! python3 -c 'import zmq, pyarrow, chdb, pytest, redis, nats, duckdb, hypothesis, jsonschema, openapi_spec_validator, playwright' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check pyzmq pyarrow chdb pytest redis nats-py duckdb \
      hypothesis jsonschema openapi-spec-validator playwright
  fi
  # The status page's test drives Debian's Chromium through Playwright (no browser download).
  if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
  fi
  # The dashboard's test scrapes a demo with Debian's Prometheus (and lints /metrics with promtool).
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    apt-get install -y -qq --no-install-recommends prometheus
  fi
  python3 -c 'import zmq, pyarrow, chdb, redis, nats, duckdb; print("pyzmq", zmq.__version__, "libzmq", zmq.zmq_version(), "pyarrow", pyarrow.__version__, "chdb", chdb.__version__, "redis-py", redis.__version__, "duckdb", duckdb.__version__)'
}

if [ "${TICKWIRE_SKIP_SETUP:-0}" != 1 ]; then
  command -v curl >/dev/null || apt_install curl
  setup_zookeeper
  setup_clickhouse
  setup_clickhouse_cold
  setup_postgres
  setup_redis
  setup_nats
  setup_python
fi

# Every suite runs even when an earlier one fails; the end lists which failed.
failed=()
suite() { # suite NAME COMMAND...
  log "$1"
  local name=$1; shift
  if ! "$@"; then failed+=("$name"); fi
}

suite "cargo fmt --check" cargo fmt --all -- --check
suite "cargo clippy --all-targets -D warnings" cargo clippy --workspace --all-targets --quiet -- -D warnings

# Every test binary and the doc-tests, even after one fails (cargo lists the failed ones).
suite "cargo test --workspace" bash -c 'set -o pipefail; cargo test --workspace --no-fail-fast --quiet 2>&1 | tee "${TMPDIR:-/tmp}/tickwire-cargo-test.log"'

# The frame decoder under libFuzzer for a minute on the stable toolchain, seeded with every
# real frame of the fixtures (scripts/fuzz.sh; a crash fails the suite and keeps its input).
suite "fuzz the decoder (60 s)" bash -c 'log=${TMPDIR:-/tmp}/tickwire-fuzz.log; bash scripts/fuzz.sh -max_total_time=60 >"$log" 2>&1; rc=$?; grep -E "^fuzz:|^Done|^stat::|crash|panicked|ERROR" "$log" | tail -12; exit $rc'

if compgen -G "tests/python/test_*.py" >/dev/null; then
  if cargo build --quiet -p tickwire-engine --bin tickwire; then
    TICKWIRE_BIN="$CARGO_TARGET_DIR/debug/tickwire" suite "Python tests" python3 -m pytest -q tests/python
  else
    failed+=("Python tests (tickwire did not build)")
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${#failed[@]} suite(s)"
  printf '  - %s\n' "${failed[@]}"
  # cargo's own list of the test targets that failed, if any.
  sed -n '/target[s]* failed:/,/^[^ ]/p' "${TMPDIR:-/tmp}/tickwire-cargo-test.log" 2>/dev/null | grep '^ ' || true
  exit 1
fi
log "all tests passed"
