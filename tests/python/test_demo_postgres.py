"""`tickwire demo --postgres URL`: every kind lands in the machine's PostgreSQL (plain, through
binary COPY), the summary's `rows` has a `postgres` entry equal to what was sent, every table's
count equals the engine's count for its kind, values equal the Parquet copy exactly, the ledger
holds every batch once, and the candles view agrees with the trades."""

import decimal
import json
import os
import subprocess

import pyarrow.dataset as ds

from conftest import BIN, free_port

PG = os.environ.get("TICKWIRE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TABLES = {"trade": "trades", "agg_trade": "agg_trades", "book_ticker": "book_tickers",
          "depth_update": "depth_updates", "depth_snapshot": "depth_snapshots", "kline": "klines",
          "mark_price": "mark_prices", "liquidation": "liquidations", "ticker": "tickers"}


def psql(sql):
    r = subprocess.run(["psql", PG, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_demo_writes_every_kind_into_postgres(tmp_path):
    schema = f"tw_demo_test_{os.getpid()}"
    psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    out = tmp_path / "data"
    r = subprocess.run([BIN, "demo", "--duration", "3", "--out", str(out), "--zmq", f"tcp://127.0.0.1:{free_port()}",
                        "--stats-secs", "0", "--postgres", PG, "--postgres-schema", schema],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    total = sum(s["sent"].values())
    assert s["rows"]["postgres"] == s["rows"]["parquet"] == total > 0
    assert s["dropped"] == 0 and s["errors"] == 0
    for kind, table in TABLES.items():
        assert int(psql(f"SELECT count(*) FROM {schema}.{table}")) == s["records"][kind], table
    batches, rows = psql(f"SELECT count(*), sum(rows) FROM {schema}.tickwire_batches").split()
    assert int(rows) == total and int(batches) > 0
    # Trades: exact values by natural key, PostgreSQL vs Parquet.
    got = {}
    for line in psql(f"SELECT market, symbol, trade_id, price, qty FROM {schema}.trades").splitlines():
        m, sym, t, p, q = line.split("\t")
        got[(m, sym, int(t))] = (decimal.Decimal(p), decimal.Decimal(q))
    t = ds.dataset(out / "trade", format="parquet", partitioning="hive").to_table().to_pylist()
    want = {(x["market"], x["symbol"], x["trade_id"]): (x["price"], x["qty"]) for x in t}
    assert got == want
    # Depth levels: the level arrays hold the Parquet levels exactly.
    d = ds.dataset(out / "depth_update", format="parquet", partitioning="hive").to_table().to_pylist()
    want_levels = sum(len(x["bids"]) + len(x["asks"]) for x in d)
    want_qty = sum((l["qty"] for x in d for l in x["bids"] + x["asks"]), decimal.Decimal(0))
    n, q = psql(f"SELECT sum(coalesce(array_length(bids, 1), 0) + coalesce(array_length(asks, 1), 0)), "
                f"sum((SELECT coalesce(sum(bids[i][2]), 0) FROM generate_subscripts(bids, 1) i) + "
                f"(SELECT coalesce(sum(asks[i][2]), 0) FROM generate_subscripts(asks, 1) i)) "
                f"FROM {schema}.depth_updates").split()
    assert int(n) == want_levels and decimal.Decimal(q) == want_qty
    # Candles: volumes and trade counts add up to the trades'.
    vol, cnt = psql(f"SELECT sum(volume), sum(trades) FROM {schema}.candles_1m").split()
    assert decimal.Decimal(vol) == sum(v[1] for v in want.values())
    assert int(cnt) == len(want)
    psql(f"DROP SCHEMA {schema} CASCADE")
