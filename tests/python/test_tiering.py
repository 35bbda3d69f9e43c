"""`tickwire tier` between two real ClickHouse 18.16 servers (hot on 8123, cold on 8124, both
started by the test command) and a Parquet archive read by pyarrow and DuckDB.

- A demo writes every kind into the hot server; one pass moves it all (`--older-than 0s`) to the
  cold server and the archive: every window verified, every table's rows equal on all three
  (by exact values for trades), a second pass copies nothing, `--cleanup` then empties the hot
  tables and leaves the cold ones as they were.
- kill -9 of `tickwire tier --cleanup` at several moments, then a run to the end: at every
  kill no day is both gone from the hot tier and incomplete in a target, no row is anywhere
  twice, and at the end every row is in both targets once and the hot tier is empty.
- A manual transfer of one symbol moves that symbol only; a later full pass moves the rest."""

import json
import os
import random
import signal
import subprocess
import time
import urllib.request

import duckdb
import pyarrow.dataset as ds
import pytest

from conftest import BIN, free_port, series, wait

HOT = os.environ.get("TICKWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123")
COLD = os.environ.get("TICKWIRE_CLICKHOUSE_COLD_URL", "http://127.0.0.1:8124")
TABLES = {"trade": "trades", "agg_trade": "agg_trades", "book_ticker": "book_tickers",
          "depth_update": "depth_updates", "depth_snapshot": "depth_snapshots", "kline": "klines",
          "mark_price": "mark_prices", "liquidation": "liquidations", "ticker": "tickers"}
DAY_NS = 86_400 * 10**9


def ch(url, sql):
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def chn(url, sql):
    return int(ch(url, sql).strip() or 0)


def url(base, db):
    return base.replace("http://", "clickhouse://") + "/" + db


@pytest.fixture
def dbs():
    pid = os.getpid()
    hot, cold = f"tier_hot_{pid}", f"tier_cold_{pid}"
    for u, d in ((HOT, hot), (COLD, cold)):
        ch(u, f"DROP DATABASE IF EXISTS {d}")
    yield hot, cold
    for u, d in ((HOT, hot), (COLD, cold)):
        ch(u, f"DROP DATABASE IF EXISTS {d}")


def tier(*args, timeout=300):
    r = subprocess.run([BIN, "tier", *args], capture_output=True, text=True, timeout=timeout)
    return r, json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None


def demo_into(hot, tmp_path, secs):
    """`tickwire demo` into the hot database `hot` for `secs` seconds; its summary."""
    r = subprocess.run([BIN, "demo", "--duration", str(secs), "--out", str(tmp_path / "data"),
                        "--zmq", f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0",
                        "--http", f"127.0.0.1:{free_port()}", "--clickhouse", HOT, "--clickhouse-database", hot],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_demo_data_moves_to_cold_clickhouse_and_parquet_verified(dbs, tmp_path):
    hot, cold = dbs
    arch = tmp_path / "archive"
    demo = demo_into(hot, tmp_path, 3)
    args = ["--from", url(HOT, hot), "--to", url(COLD, cold), "--to", f"parquet:{arch}", "--older-than", "0s"]
    r, s = tier(*args)
    assert r.returncode == 0, r.stderr
    w = s["windows"]
    # Every kind the demo made, both markets where it has them.
    assert w["total"] >= len(TABLES) and w["failed"] == 0 and s["failures"] == []
    assert w["copied"] == w["verified"] == w["total"] and w["cleaned"] == 0
    for kind, table in TABLES.items():
        n = demo["records"][kind]
        assert s["rows"].get(table, 0) == n, table
        assert chn(HOT, f"SELECT count() FROM {hot}.{table}") == n
        assert chn(COLD, f"SELECT count() FROM {cold}.{table}") == n, table
        assert ds.dataset(arch / kind, format="parquet", partitioning="hive").count_rows() == n, kind
    # Exact values, three ways: the hot server, the cold server, the archive.
    q = "SELECT market, symbol, trade_id, toString(price), toString(qty), _batch FROM {}.trades FORMAT TSV"
    want = sorted(ch(HOT, q.format(hot)).splitlines())
    assert sorted(ch(COLD, q.format(cold)).splitlines()) == want
    t = ds.dataset(arch / "trade", format="parquet", partitioning="hive").to_table().to_pylist()
    got = sorted("\t".join([x["market"], x["symbol"], str(x["trade_id"]), f'{x["price"]:.8f}', f'{x["qty"]:.8f}',
                            str(x["_batch"])]) for x in t)
    assert got == want
    # One file per (kind, market, day); DuckDB reads the archive as one dataset.
    files = list(arch.glob("trade/market=*/date=*/*.parquet"))
    assert {f.name for f in files} == {"archive.parquet"} and len(files) == len({f.parent for f in files})
    con = duckdb.connect()
    dn = con.sql(f"SELECT count(*), count(DISTINCT market) FROM read_parquet('{arch}/trade/*/*/*.parquet', "
                 "hive_partitioning=true)").fetchall()[0]
    assert dn[0] == demo["records"]["trade"] and dn[1] == 2
    # The ledger says each window was verified on both targets.
    ledger = ch(HOT, f"SELECT target, state, count() FROM {hot}.tier_windows GROUP BY target, state FORMAT TSV")
    states = {(a, b): int(c) for a, b, c in (l.split("\t") for l in ledger.splitlines())}
    assert states[(url(COLD, cold), "verified")] == w["total"]
    assert states[(f"parquet:{arch}", "verified")] == w["total"]

    # Again: nothing to copy, everything verified again.
    r, s2 = tier(*args)
    assert r.returncode == 0, r.stderr
    assert s2["rows_copied"] == 0 and s2["windows"]["verified"] == w["total"]

    # Cleanup: the hot tables empty (whole days verified: partitions dropped), targets unchanged.
    r, s3 = tier(*args, "--cleanup")
    assert r.returncode == 0, r.stderr
    assert s3["windows"]["cleaned"] == w["total"] and s3["rows_cleaned"] == sum(demo["records"][k] for k in TABLES)
    for kind, table in TABLES.items():
        assert chn(HOT, f"SELECT count() FROM {hot}.{table}") == 0, table
        assert chn(COLD, f"SELECT count() FROM {cold}.{table}") == demo["records"][kind], table
    msgs = ch(HOT, f"SELECT DISTINCT message FROM {hot}.tier_windows WHERE state = 'cleaned' FORMAT TSV").split()
    assert msgs == ["partition", "dropped"]
    # Nothing left to do.
    r, s4 = tier(*args, "--cleanup")
    assert r.returncode == 0 and s4["windows"]["total"] == 0


COLS = ("exchange, market, symbol, event_time, recv_time, trade_id, price, qty, is_buyer_maker, "
        "trade_time, _batch")


def fill(hot, days, per_day, day0):
    """Synthetic trades: `days` UTC days x 2 markets x `per_day` rows, batches of 5000 rows
    (each within one day and market), trade ids unique."""
    ch(HOT, f"CREATE DATABASE IF NOT EXISTS {hot}")
    ddl = open(os.path.join(os.path.dirname(__file__), "..", "..", "sql", "clickhouse", "legacy-18.16",
                            "001_tables.sql")).read()
    stmt = next(s for s in ddl.split(";") if "tickwire.trades (" in s)
    ch(HOT, stmt.replace("tickwire.", f"{hot}."))
    for d in range(days):
        for mi, m in enumerate(("spot", "usdm")):
            base = (d * 2 + mi) * per_day
            ch(HOT, f"INSERT INTO {hot}.trades ({COLS}) SELECT 'binance', '{m}', "
                    f"concat('SYM', toString(number % 7)), NULL, "
                    f"{(day0 + d) * DAY_NS} + number * 1000000, {base} + number, "
                    f"toDecimal64(number % 1000, 8) / 7, toDecimal128(number % 13, 8), number % 2, 0, "
                    f"1000000 + intDiv({base} + number, 5000) FROM numbers({per_day})")
    return days * 2 * per_day


def invariant(hot, cold, arch, days, per_day, day0):
    """No day is gone from the hot tier before both targets hold all of it; nothing twice."""
    for d in range(days):
        lo, hi = (day0 + d) * DAY_NS, (day0 + d + 1) * DAY_NS
        h = chn(HOT, f"SELECT count() FROM {hot}.trades WHERE recv_time >= {lo} AND recv_time < {hi}")
        c = chn(COLD, f"SELECT count() FROM {cold}.trades WHERE recv_time >= {lo} AND recv_time < {hi}")
        cu = chn(COLD, f"SELECT uniqExact(trade_id) FROM {cold}.trades WHERE recv_time >= {lo} AND recv_time < {hi}")
        assert c == cu, f"day {d}: a row twice in the cold tier"
        assert c <= 2 * per_day
        date = time.strftime("%Y-%m-%d", time.gmtime((day0 + d) * 86_400))
        files = list(arch.glob(f"trade/market=*/date={date}/archive.parquet"))
        p = sum(ds.dataset(f, format="parquet").count_rows() for f in files)
        pu = len({x for f in files for x in ds.dataset(f, format="parquet").to_table(columns=["trade_id"])
                 .column("trade_id").to_pylist()})
        assert p == pu, f"day {d}: a row twice in the archive"
        if h < 2 * per_day:
            assert c == 2 * per_day and p == 2 * per_day, f"day {d}: cleaned before both targets held it"


def test_kill_minus_9_at_any_step_then_rerun_loses_nothing_and_copies_nothing_twice(dbs, tmp_path):
    hot, cold = dbs
    arch = tmp_path / "archive"
    days, per_day, day0 = 4, 60_000, 20_000  # 2024-10-04..07
    total = fill(hot, days, per_day, day0)
    args = ["--from", url(HOT, hot), "--to", url(COLD, cold), "--to", f"parquet:{arch}",
            "--older-than", "0s", "--cleanup", "--chunk-rows", "15000"]
    rng = random.Random(7)
    kills = 0
    for _ in range(8):
        p = subprocess.Popen([BIN, "tier", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 2.5))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.communicate(timeout=60)
        invariant(hot, cold, arch, days, per_day, day0)
    assert kills >= 1, "every run finished before its kill: make the data bigger"
    r, s = tier(*args)
    assert r.returncode == 0, r.stderr
    invariant(hot, cold, arch, days, per_day, day0)
    assert chn(HOT, f"SELECT count() FROM {hot}.trades") == 0
    assert chn(COLD, f"SELECT count() FROM {cold}.trades") == total
    assert chn(COLD, f"SELECT uniqExact(trade_id) FROM {cold}.trades") == total
    t = ds.dataset(arch / "trade", format="parquet", partitioning="hive").to_table(columns=["trade_id"])
    assert t.num_rows == total and len(set(t.column("trade_id").to_pylist())) == total
    # A kill leaves no Memory mirror behind once a run has finished.
    assert ch(HOT, f"SELECT name FROM system.tables WHERE database = '{hot}' AND startsWith(name, '_tier')") == ""


def test_one_symbol_by_hand_then_the_rest(dbs, tmp_path):
    hot, cold = dbs
    arch = tmp_path / "archive"
    days, per_day, day0 = 2, 7_000, 20_100
    total = fill(hot, days, per_day, day0)
    sym_rows = chn(HOT, f"SELECT count() FROM {hot}.trades WHERE symbol = 'SYM3' AND market = 'spot'")
    t1 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day0 * 86_400))
    t2 = time.strftime("%Y-%m-%d", time.gmtime((day0 + days) * 86_400))
    r, s = tier("--from", url(HOT, hot), "--to", url(COLD, cold), "--to", f"parquet:{arch}", "--kind", "trade",
                "--market", "spot", "--symbol", "SYM3", "--from", t1, "--to", t2, "--cleanup")
    assert r.returncode == 0, r.stderr
    assert s["rows"] == {"trades": sym_rows} and s["windows"]["cleaned"] == days
    assert chn(COLD, f"SELECT count() FROM {cold}.trades") == sym_rows
    assert chn(COLD, f"SELECT count() FROM {cold}.trades WHERE symbol != 'SYM3' OR market != 'spot'") == 0
    assert chn(HOT, f"SELECT count() FROM {hot}.trades") == total - sym_rows
    # The rest, in one pass: batches the hand transfer split are completed, not copied twice.
    r, s = tier("--from", url(HOT, hot), "--to", url(COLD, cold), "--to", f"parquet:{arch}",
                "--older-than", "0s", "--cleanup")
    assert r.returncode == 0, r.stderr
    assert s["windows"]["failed"] == 0 and sum(s["rows"].values()) == total - sym_rows
    assert chn(COLD, f"SELECT count() FROM {cold}.trades") == total
    assert chn(COLD, f"SELECT uniqExact(trade_id) FROM {cold}.trades") == total
    assert chn(HOT, f"SELECT count() FROM {hot}.trades") == 0
    t = ds.dataset(arch / "trade", format="parquet", partitioning="hive").to_table(columns=["trade_id"])
    assert t.num_rows == total and len(set(t.column("trade_id").to_pylist())) == total


def test_run_tiers_on_a_schedule_and_serves_its_state(dbs, tmp_path):
    hot, cold = dbs
    http, zmq = free_port(), free_port()
    arch = tmp_path / "archive"
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
duration_secs = 9
stats_secs = 0
[simulator]
enabled = true
rate = 4000
[zmq]
bind = "tcp://127.0.0.1:{zmq}"
[[sinks]]
type = "clickhouse"
url = "{HOT}"
database = "{hot}"
[http]
bind = "127.0.0.1:{http}"
[tiering]
to = ["{url(COLD, cold)}", "parquet:{arch}"]
hot_retention = "0s"
every = "2s"
start_after_secs = 2
kinds = ["trade", "book_ticker"]
""")
    p = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = {}

    def verified():
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/tiering", timeout=5) as r:
            seen.update(json.loads(r.read()))
        return seen["runs"] >= 1 and any(w["state"] == "verified" for w in seen.get("ledger", []))
    wait(verified, 30, "/v1/tiering to show a pass done and a verified window")
    assert seen["runs"] >= 1 and seen["last_error"] is None
    targets = {w["target"] for w in seen["ledger"]}
    assert targets == {url(COLD, cold), f"parquet:{arch}"}
    assert {w["table"] for w in seen["ledger"]} <= {"trades", "book_tickers"}
    m = series(http, "tickwire_tier_windows_total")
    assert m['{state="verified"}'] >= 1 and m['{state="failed"}'] == 0
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    s = json.loads(out.decode().strip().splitlines()[-1])
    t = s["tiering"]
    assert t["runs"] >= 2 and t["windows"]["failed"] == 0 and t["windows"]["verified"] >= 2
    # What the passes moved is a part of what the hot tier holds, never more; a last pass by
    # hand takes the rest, and then the tiers agree exactly.
    n_hot = chn(HOT, f"SELECT count() FROM {hot}.trades")
    assert 0 < chn(COLD, f"SELECT count() FROM {cold}.trades") <= n_hot
    r, s2 = tier("--from", url(HOT, hot), "--to", url(COLD, cold), "--to", f"parquet:{arch}", "--older-than", "0s",
                 "--kind", "trade,book_ticker")
    assert r.returncode == 0, r.stderr
    assert chn(COLD, f"SELECT count() FROM {cold}.trades") == n_hot == s["records"]["trade"]
    assert chn(COLD, f"SELECT count() FROM {cold}.book_tickers") == s["records"]["book_ticker"]
    assert ds.dataset(arch / "trade", format="parquet", partitioning="hive").count_rows() == n_hot


def test_query_api_reads_across_hot_and_cold_each_row_once(dbs, tmp_path):
    hot, cold = dbs
    trades = demo_into(hot, tmp_path, 2)["records"]["trade"]
    before_run_ms = int(time.time() * 1000)
    time.sleep(0.05)
    move = ["--from", url(HOT, hot), "--to", url(COLD, cold), "--to", str(before_run_ms), "--kind", "trade"]
    r, _ = tier(*move)  # in both tiers now
    assert r.returncode == 0, r.stderr
    http, zmq = free_port(), free_port()
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
duration_secs = 60
stats_secs = 0
[simulator]
enabled = true
rate = 2000
[zmq]
bind = "tcp://127.0.0.1:{zmq}"
[[sinks]]
type = "clickhouse"
url = "{HOT}"
database = "{hot}"
[http]
bind = "127.0.0.1:{http}"
[tiering]
to = ["{url(COLD, cold)}"]
hot_retention = "0s"
start_after_secs = 3600
""")
    p = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def rows():
            q = f"http://127.0.0.1:{http}/v1/trade?from=0&to={before_run_ms}&limit=1000000"
            with urllib.request.urlopen(q, timeout=30) as resp:
                lines = resp.read().decode().splitlines()
            return [json.loads(l) for l in lines]

        def key(x):
            return (x["market"], x["symbol"], x["trade_id"])
        wait(lambda: len(rows()) > 0, 30, "the query API")
        got = rows()  # rows in both tiers: from the hot one, once
        assert len(got) == trades and len({key(x) for x in got}) == trades
        r, s = tier(*move, "--cleanup")  # now only in the cold tier
        assert r.returncode == 0 and s["rows_cleaned"] == trades, r.stderr
        assert chn(HOT, f"SELECT count() FROM {hot}.trades WHERE recv_time < {before_run_ms * 10**6}") == 0
        got2 = rows()
        assert sorted(map(key, got2)) == sorted(map(key, got))
        assert [x["price"] for x in sorted(got2, key=key)] == [x["price"] for x in sorted(got, key=key)]
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)


def test_a_window_whose_check_fails_is_reported_counted_and_left_in_the_hot_tier(dbs, tmp_path):
    hot, cold = dbs
    days, per_day, day0 = 1, 5_000, 20_200
    total = fill(hot, days, per_day, day0)
    args = ["--from", url(HOT, hot), "--to", url(COLD, cold), "--older-than", "0s", "--kind", "trade"]
    r, s = tier(*args)
    assert r.returncode == 0 and s["windows"]["verified"] == 2, r.stderr
    # One price changed in the cold copy of the spot window (the count still agrees).
    ch(COLD, f"ALTER TABLE {cold}.trades UPDATE price = price + 1 WHERE market = 'spot' AND trade_id = 17")
    wait(lambda: chn(COLD, f"SELECT count() FROM system.mutations WHERE database = '{cold}' AND is_done = 0") == 0,
         30, "the update")
    r, s = tier(*args, "--cleanup")
    assert r.returncode == 1
    assert s["windows"] == {"total": 2, "copied": 2, "verified": 1, "failed": 1, "cleaned": 1}
    [f] = s["failures"]
    assert (f["table"], f["market"], f["target"]) == ("trades", "spot", url(COLD, cold))
    assert "check failed" in f["reason"] and "checksum" in f["reason"]
    assert "trades spot" in r.stderr
    # The failed window stays in the hot tier, whole; the verified one is gone from it.
    assert chn(HOT, f"SELECT count() FROM {hot}.trades WHERE market = 'spot'") == total // 2
    assert chn(HOT, f"SELECT count() FROM {hot}.trades WHERE market = 'usdm'") == 0
    assert chn(HOT, f"SELECT count() FROM {hot}.tier_windows WHERE state = 'failed' AND market = 'spot'") == 1


def test_a_replicated_cold_table_gets_each_chunk_whole_through_its_staging_table(dbs, tmp_path):
    """The cold trades table is a ReplicatedMergeTree (ZooKeeper): each chunk is staged in a
    plain MergeTree of its structure and attached; the copy is exact and no staging table stays."""
    hot, cold = dbs
    days, per_day, day0 = 1, 20_000, 20_200
    total = fill(hot, days, per_day, day0)
    ddl = ch(HOT, f"SHOW CREATE TABLE {hot}.trades").strip().replace("\\n", " ").replace("\\'", "'")
    zk = f"/clickhouse/tables/tier_test_{os.getpid()}_{free_port()}/trades"
    ddl = ddl.replace(f"{hot}.trades", f"{cold}.trades").replace(
        "ENGINE = MergeTree", f"ENGINE = ReplicatedMergeTree('{zk}', 'r1')")
    ch(COLD, f"CREATE DATABASE IF NOT EXISTS {cold}")
    ch(COLD, ddl)
    r, s = tier("--from", url(HOT, hot), "--to", url(COLD, cold), "--kind", "trade", "--older-than", "0s",
                "--chunk-rows", "15000")
    assert r.returncode == 0, r.stderr
    assert s["windows"]["verified"] == 2 and s["windows"]["failed"] == 0, s
    assert ch(COLD, f"SELECT engine FROM system.tables WHERE database = '{cold}' AND name = 'trades'").strip() \
        == "ReplicatedMergeTree"
    assert chn(COLD, f"SELECT count() FROM {cold}.trades") == total
    assert chn(COLD, f"SELECT uniqExact(trade_id) FROM {cold}.trades") == total
    assert ch(COLD, f"SELECT name FROM system.tables WHERE database = '{cold}' AND startsWith(name, '_tier')") == ""
    ch(COLD, f"DROP TABLE {cold}.trades")
