"""`tickwire demo --zmq-batches`: every flushed batch is also published as an Arrow IPC stream
on `batch.<kind>.<market>`; a pyzmq subscriber (libzmq) reads them with pyarrow, and their rows
add up to what the engine took in, per kind, with the schema of the Parquet files."""

import collections
import json
import subprocess

import pyarrow as pa
import pyarrow.dataset as ds
import zmq

from conftest import BIN, free_port


def test_flushed_batches_arrive_as_arrow_ipc(tmp_path):
    addr = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.connect(addr)
    sub.setsockopt(zmq.SUBSCRIBE, b"batch.")
    out = tmp_path / "data"
    demo = subprocess.Popen([BIN, "demo", "--duration", "3", "--out", str(out), "--zmq", addr, "--rate", "20000",
                             "--stats-secs", "0", "--zmq-batches", "--wait-subscribers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = collections.Counter()
    schemas = {}
    try:
        while True:
            try:
                topic, payload = sub.recv_multipart()
            except zmq.Again:
                break
            _, kind, market = topic.decode().split(".")
            t = pa.ipc.open_stream(payload).read_all()
            rows[kind] += t.num_rows
            schemas[kind] = t.schema
            assert set(t.column("market").to_pylist()) == {market}
    finally:
        stdout, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 0, stderr
    s = json.loads(stdout.strip().splitlines()[-1])
    assert s["zmq_batches"] > 0 and s["zmq_batches_dropped"] == 0
    for kind, n in s["records"].items():
        assert rows[kind] == n, kind
    # The same columns as the Parquet files (which leave `market` to the path).
    trade = ds.dataset(out / "trade", format="parquet", partitioning="hive").schema
    assert [f for f in schemas["trade"].names if f != "market"] == [f for f in trade.names if f not in ("market", "date")]
    sub.close()
    ctx.term()
