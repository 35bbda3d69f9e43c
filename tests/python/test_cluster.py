"""ClickHouse as a cluster of two shards: the two 18.16 servers the test command starts (8123
and 8124, cluster `tickwire` in both servers' remote_servers, ZooKeeper on 2181 and each
server's {shard}/{replica} macros), once with MergeTree shard tables applied on each shard,
once with ReplicatedMergeTree (one replica a shard) applied ON CLUSTER.

`tickwire run` with `[[sinks]] type = "clickhouse"` and `shards = [...]` writes every batch
split by `murmurHash3_32(symbol)` straight into each shard's `<table>_local`; shard 2 is
killed (SIGKILL) mid-run and started again. Afterwards: every row once across the cluster (by
the `Distributed` tables and by the shards' own), each symbol on exactly the shard ClickHouse's
own sharding key picks, and the candles made on each shard add up through `Distributed`."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, free_port, wait

SHARDS = [os.environ.get("TICKWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123"),
          os.environ.get("TICKWIRE_CLICKHOUSE_COLD_URL", "http://127.0.0.1:8124")]
COLD_DIR = "/var/lib/clickhouse-cold"
TABLES = {"trade": "trades", "agg_trade": "agg_trades", "book_ticker": "book_tickers",
          "depth_update": "depth_updates", "mark_price": "mark_prices", "ticker": "tickers"}


def ch(url, sql, timeout=60):
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        # Still an OSError (what `wait` takes for "not yet"), with the server's message.
        raise OSError(f"{url}: {sql[:200]}: {e.read().decode()[:400]}") from None


def chn(url, sql):
    return int(ch(url, sql).strip() or 0)


def up(url):
    try:
        with urllib.request.urlopen(url + "/ping", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start_shard2():
    subprocess.run(["su", "-s", "/bin/sh", "clickhouse", "-c",
                    f"clickhouse-server --config-file={COLD_DIR}/config.xml --daemon "
                    f"--pid-file={COLD_DIR}/clickhouse-server.pid"], check=True)
    wait(lambda: up(SHARDS[1]), 60, "shard 2 to answer again")


@pytest.fixture
def db():
    if not all(up(u) for u in SHARDS) or "tickwire" not in ch(SHARDS[0], "SELECT DISTINCT cluster FROM system.clusters"):
        pytest.fail("both ClickHouse servers with cluster `tickwire` are needed: run scripts/test.sh")
    name = f"tickwire_cluster_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    for u in SHARDS:
        ch(u, f"DROP DATABASE IF EXISTS {name}")
    yield name
    if not up(SHARDS[1]):
        start_shard2()
    for u in SHARDS:
        ch(u, f"DROP DATABASE IF EXISTS {name}")
    # Replicated tables leave their metadata in ZooKeeper after a DROP on 18.16 only until it
    # is cleaned; a fresh database name per run keeps runs apart.


@pytest.mark.parametrize("replicated", [False, True], ids=["mergetree", "replicated_on_cluster"])
def test_two_shards_one_killed_mid_run_every_row_once_each_symbol_on_its_shard(db, tmp_path, replicated):
    if replicated:
        # Debian's ZooKeeper, which the test command installs and starts, with each server's
        # {shard}/{replica} macros.
        for u in SHARDS:
            assert "clickhouse" in ch(u, "SELECT name FROM system.zookeeper WHERE path = '/'"), u
    http, zmq = free_port(), free_port()
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
duration_secs = 9
stats_secs = 0
[simulator]
enabled = true
rate = 20000
[zmq]
bind = "tcp://127.0.0.1:{zmq}"
[[sinks]]
type = "clickhouse"
url = "{SHARDS[0]}"
database = "{db}"
shards = {json.dumps(SHARDS)}
replicated = {"true" if replicated else "false"}
on_cluster = {"true" if replicated else "false"}
spill_dir = "{tmp_path / 'spill'}"
[http]
bind = "127.0.0.1:{http}"
""")
    p = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait(lambda: chn(SHARDS[1], f"SELECT count() FROM {db}.trades_local") > 0, 30, "rows on shard 2")
        pid = int(open(f"{COLD_DIR}/clickhouse-server.pid").read())
        os.kill(pid, 9)
        wait(lambda: not up(SHARDS[1]), 10, "shard 2 to be down")
        time.sleep(2.5)
        start_shard2()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err.decode()
    s = json.loads(out.decode().strip().splitlines()[-1])
    engine = ch(SHARDS[1], f"SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'trades_local'").strip()
    assert engine == ("ReplicatedMergeTree" if replicated else "MergeTree")
    assert s["rows"]["clickhouse"] == sum(s["records"].values())
    assert s["dropped"] == 0
    assert s["errors"] > 0, "the outage of shard 2 was not felt: kill it while it is written"
    for kind, t in TABLES.items():
        n = s["records"][kind]
        assert n > 0, kind
        per = [chn(u, f"SELECT count() FROM {db}.{t}_local") for u in SHARDS]
        assert sum(per) == n and all(x > 0 for x in per), (t, per, n)
        # The Distributed table, read on either shard, sees each row once.
        for u in SHARDS:
            assert chn(u, f"SELECT count() FROM {db}.{t}") == n, t
        # Each shard holds only the symbols ClickHouse's own sharding key gives it.
        for i, u in enumerate(SHARDS):
            assert chn(u, f"SELECT count() FROM {db}.{t}_local WHERE murmurHash3_32(symbol) % 2 != {i}") == 0, (t, i)
    # Exactly once, by natural key across the cluster.
    assert chn(SHARDS[0], f"SELECT uniqExact(market, symbol, trade_id) FROM {db}.trades") == s["records"]["trade"]
    # Candles per shard (materialized views on the shard tables), summed through Distributed:
    # never a trade twice. Not always every trade: the view's part is written after the trades'
    # part, not with it, so a kill between the two keeps the trades (the retry finds them and
    # does not send them again) without their candle states (README, ClickHouse sink).
    got = chn(SHARDS[0], f"SELECT sum(c) FROM (SELECT countMerge(trade_count) AS c FROM {db}.candles_1m GROUP BY market, symbol, minute)")
    assert 0 < got <= s["records"]["trade"]
    # Rebuilt from the trades on each shard, the candles count every trade once.
    for u in SHARDS:
        # (18.16 cannot TRUNCATE a Replicated table: its partitions are dropped.)
        for part in ch(u, f"SELECT DISTINCT partition FROM system.parts WHERE database = '{db}' "
                          "AND table = 'candles_1m_local' AND active").split():
            # A replica just restarted may still be electing its leader: tried until it takes.
            wait(lambda: ch(u, f"ALTER TABLE {db}.candles_1m_local DROP PARTITION {part}") is not None, 60,
                 "the partition drop")
        create = ch(u, f"SELECT create_table_query FROM system.tables WHERE database = '{db}' AND name = 'candles_1m_mv' "
                       "FORMAT TSVRaw").strip()
        select = create[create.index(" AS SELECT ") + 4:]
        ch(u, f"INSERT INTO {db}.candles_1m_local {select}")
    got = chn(SHARDS[0], f"SELECT sum(c) FROM (SELECT countMerge(trade_count) AS c FROM {db}.candles_1m GROUP BY market, symbol, minute)")
    assert got == s["records"]["trade"]
