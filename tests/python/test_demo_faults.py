"""`tickwire demo --faults`: every fault the simulator injects is accounted for.

Skipped ids (gaps) in trade, aggTrade and depth-diff streams, malformed and oversized frames,
forced connection closes and pings with a pong deadline, over real sockets: every injected gap is detected as a `gap` record of the
right stream kind, every malformed frame is a counted decode error, every close a reconnect
(with a `reconnect` gap per sequenced stream), and nothing well-formed is lost.
"""

import collections
import json
import subprocess

import pyarrow.dataset as ds

from conftest import BIN, free_port


def test_faults_are_injected_detected_and_reconciled(tmp_path):
    out = tmp_path / "data"
    r = subprocess.run([BIN, "demo", "--duration", "7", "--out", str(out), "--faults", "--zmq",
                        f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    inj = s["injected"]
    assert sum(inj["gaps"].values()) > 0 and inj["malformed"] > 0 and inj["closes"] > 0, inj
    assert inj["oversized"] > 0 and inj["pings"] > 0, inj
    # Every injected gap detected, per stream kind.
    assert s["gaps"] == inj["gaps"]
    # Malformed and oversized frames are counted errors (oversized ones refused unread);
    # closes are reconnects; every ping was answered in time; nothing else is lost.
    assert s["oversized"] == inj["oversized"]
    assert s["decode_errors"] == inj["malformed"] + inj["oversized"] == s["errors"]
    assert s["reconnects"] == inj["closes"]
    assert inj["pong_timeouts"] == 0 and s["idle_reconnects"] == 0
    assert s["dropped"] == 0
    for k, n in s["sent"].items():
        if k != "gap":
            assert s["records"][k] == n, k
    # The gap records reach the store: one per detected gap, one per sequenced stream per reconnect.
    gaps = ds.dataset(out / "gap", format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(gaps) == s["records"]["gap"]
    reasons = collections.Counter(g["reason"] for g in gaps)
    assert reasons["sequence"] == sum(s["gaps"].values())
    assert reasons["reconnect"] > 0 and reasons["reconnect"] % s["reconnects"] == 0
    seq_by_stream = collections.Counter(g["stream"] for g in gaps if g["reason"] == "sequence")
    assert {k: seq_by_stream.get(k, 0) for k in s["gaps"]} == s["gaps"]
    # A detected gap says what was expected and what came.
    assert all(g["got"] != g["expected"] for g in gaps if g["reason"] == "sequence")
