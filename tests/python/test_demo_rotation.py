"""Rotation against the live simulator: its connections share one market, so a replacement
connection gets the same frames as the one it replaces; while they overlap the duplicates are
dropped. Every trade id arrives exactly once, none is missing, and no gap is recorded."""

import json
import subprocess

import pyarrow.compute as pc
import pyarrow.dataset as ds

from conftest import BIN, free_port


def test_rotation_in_the_demo_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "data"
    r = subprocess.run([BIN, "demo", "--duration", "7", "--out", str(out), "--rate", "4000", "--rotate-after-secs", "2",
                        "--zmq", f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    # Three connections (spot, USD-M /public and /market), each replaced at least twice.
    assert s["rotations"] >= 6, s
    assert s["duplicates"] > 0, s
    assert s["records"]["gap"] == 0 and s["reconnects"] == 0 and s["dropped"] == 0, s
    trades = ds.dataset(out / "trade", format="parquet", partitioning="hive").to_table()
    assert trades.num_rows == s["records"]["trade"] > 0
    for market in ("spot", "usdm"):
        t = trades.filter(pc.equal(trades["market"], market))
        for sym in set(t["symbol"].to_pylist()):
            ids = t.filter(pc.equal(t["symbol"], sym))["trade_id"].to_pylist()
            assert len(ids) == len(set(ids)), f"{market} {sym}: a trade twice"
            assert max(ids) - min(ids) + 1 == len(ids), f"{market} {sym}: a trade missing"
