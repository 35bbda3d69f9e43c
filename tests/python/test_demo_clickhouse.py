"""`tickwire demo --clickhouse URL`: every kind lands in ClickHouse (the 18.16 server the test
command starts), the summary's `rows` has a `clickhouse` entry equal to what was sent, every
table's count equals the engine's count for its kind, and values equal the Parquet copy."""

import decimal
import json
import os
import subprocess
import urllib.request

import pyarrow.dataset as ds

from conftest import BIN, free_port

CH = os.environ.get("TICKWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123")
TABLES = {"trade": "trades", "agg_trade": "agg_trades", "book_ticker": "book_tickers",
          "depth_update": "depth_updates", "depth_snapshot": "depth_snapshots", "kline": "klines",
          "mark_price": "mark_prices", "liquidation": "liquidations", "ticker": "tickers"}


def ch(sql):
    req = urllib.request.Request(CH, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def test_demo_writes_every_kind_into_clickhouse(tmp_path):
    db = f"tickwire_demo_test_{os.getpid()}"
    ch(f"DROP DATABASE IF EXISTS {db}")
    out = tmp_path / "data"
    r = subprocess.run([BIN, "demo", "--duration", "3", "--out", str(out), "--zmq", f"tcp://127.0.0.1:{free_port()}",
                        "--stats-secs", "0", "--clickhouse", CH, "--clickhouse-database", db],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    total = sum(s["sent"].values())
    assert s["rows"]["clickhouse"] == s["rows"]["parquet"] == total > 0
    for kind, table in TABLES.items():
        assert int(ch(f"SELECT count() FROM {db}.{table}")) == s["records"][kind], table
    # Trades: exact values by natural key, ClickHouse vs Parquet.
    rows = ch(f"SELECT market, symbol, trade_id, toString(price), toString(qty) FROM {db}.trades FORMAT TSV").splitlines()
    got = {(m, sym, int(t)): (decimal.Decimal(p), decimal.Decimal(q)) for m, sym, t, p, q in (l.split("\t") for l in rows)}
    t = ds.dataset(out / "trade", format="parquet", partitioning="hive").to_table().to_pylist()
    want = {(x["market"], x["symbol"], x["trade_id"]): (x["price"], x["qty"]) for x in t}
    assert got == want
    ch(f"DROP DATABASE {db}")
