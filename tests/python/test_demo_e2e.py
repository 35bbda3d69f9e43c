"""End to end on real sockets: simulator -> WebSocket -> engine -> Parquet + ZMQ PUB.

Runs `tickwire demo` with two real ZMQ subscribers attached before data flows (a pyzmq SUB,
i.e. libzmq, decoding the binary layout with examples/zmq_subscriber.py, and
`tickwire subscribe`), then reconciles: the simulator's counts, the engine's summary, the
Parquet rows (read with pyarrow, hive partitioning) and both subscribers' messages are equal per
kind; every topic's sequence runs 1..n without a hole; and the values in Parquet equal the
values published for the same records.
"""

import collections
import decimal
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import zmq_subscriber  # noqa: E402


KINDS = ["trade", "agg_trade", "book_ticker", "depth_update", "depth_snapshot", "kline", "mark_price",
         "liquidation", "ticker"]


def test_counts_reconcile(run):
    s = run["summary"]
    total = sum(s["sent"].values())
    assert total > 50_000, s
    for k in KINDS:
        assert s["sent"][k] > 0, k
        assert s["records"][k] == s["sent"][k], k
    assert s["records"]["gap"] == 0
    assert s["rows"]["parquet"] == total
    assert s["published"] == total
    assert s["dropped"] == 0 and s["errors"] == 0
    # The demo ran 4 s (conftest): the inputs ran that long, the whole run to the last flush
    # no less.
    assert 4.0 <= s["input_s"] <= s["duration_s"], s
    assert "rec/s" in run["stats"] and "lag p50" in run["stats"], "stats line on stderr"


def test_parquet_rows_per_kind_with_hive_partitions(run):
    s = run["summary"]
    for k in KINDS:
        t = ds.dataset(run["out"] / k, format="parquet", partitioning="hive").to_table()
        assert t.num_rows == s["records"][k], k
        assert set(t.column("market").to_pylist()) <= {"spot", "usdm"}
        assert pa.types.is_dictionary(t.schema.field("symbol").type)
        # In the files: symbols dictionary-encoded, the numeric columns not (see
        # sinks/src/parquet/sink.rs writer_properties), all of them zstd.
        f = pq.ParquetFile(next((run["out"] / k).rglob("*.parquet")))
        cols = {f.metadata.row_group(0).column(i).path_in_schema: f.metadata.row_group(0).column(i)
                for i in range(f.metadata.num_columns)}
        assert "RLE_DICTIONARY" in cols["symbol"].encodings, k
        assert "RLE_DICTIONARY" not in cols["recv_time"].encodings, k
        assert {c.compression for c in cols.values()} == {"ZSTD"}, k
    usdm_only = ds.dataset(run["out"] / "mark_price", format="parquet", partitioning="hive").to_table()
    assert set(usdm_only.column("market").to_pylist()) == {"usdm"}
    # No half-written files are visible.
    assert not [p for p in run["out"].rglob("*") if p.name.endswith(".tmp")]


def test_pyzmq_subscriber_gets_every_record_in_sequence(run):
    msgs = run["pysub"]
    assert len(msgs) == run["summary"]["published"]
    seqs = collections.defaultdict(list)
    per_kind = collections.Counter()
    for topic, payload in msgs:
        rec = zmq_subscriber.decode(topic, payload)
        kind, market, symbol = topic.decode().split(".")
        assert (rec["kind"], rec["market"], rec["symbol"]) == (kind, market, symbol)
        seqs[topic].append(rec["seq"])
        per_kind[kind] += 1
    for topic, s in seqs.items():
        assert s == list(range(1, len(s) + 1)), topic
    for k in KINDS:
        assert per_kind[k] == run["summary"]["records"][k], k


def test_tickwire_subscribe_sees_the_same(run):
    assert run["sub_summary"]["messages"] == run["summary"]["published"]
    assert run["sub_summary"]["gaps"] == 0 and run["sub_summary"]["bad"] == 0
    first = json.loads(run["sub_lines"][0])
    assert first["kind"] in KINDS and "recv_time" in first


def _published(run, kind):
    recs = []
    for topic, payload in run["pysub"]:
        if topic.startswith(kind.encode() + b"."):
            recs.append(zmq_subscriber.decode(topic, payload))
    return recs


def test_parquet_values_equal_published_values(run):
    # Trades: every (market, symbol, trade_id) with its exact price and quantity.
    pub = {(r["market"], r["symbol"], r["trade_id"]): (decimal.Decimal(r["price"]), decimal.Decimal(r["qty"]),
                                                        r["is_buyer_maker"], r["trade_time"])
           for r in _published(run, "trade")}
    t = ds.dataset(run["out"] / "trade", format="parquet", partitioning="hive").to_table()
    got = {}
    for row in t.to_pylist():
        tt = row["trade_time"]
        us = int(tt.timestamp()) * 1_000_000 + tt.microsecond
        got[(row["market"], row["symbol"], row["trade_id"])] = (row["price"], row["qty"], row["is_buyer_maker"], us)
    assert got == pub

    # Depth diffs: levels, exactly.
    pub = {(r["market"], r["symbol"], r["final_update_id"]): (
        [[decimal.Decimal(p), decimal.Decimal(q)] for p, q in r["bids"]],
        [[decimal.Decimal(p), decimal.Decimal(q)] for p, q in r["asks"]]) for r in _published(run, "depth_update")}
    t = ds.dataset(run["out"] / "depth_update", format="parquet", partitioning="hive").to_table()
    got = {(r["market"], r["symbol"], r["final_update_id"]): (
        [[l["price"], l["qty"]] for l in r["bids"]], [[l["price"], l["qty"]] for l in r["asks"]]) for r in t.to_pylist()}
    assert got == pub

    # Tickers: the wide volumes, and the nulls futures do not carry.
    t = ds.dataset(run["out"] / "ticker", format="parquet", partitioning="hive").to_table()
    rows = t.to_pylist()
    assert all(r["best_bid_price"] is None for r in rows if r["market"] == "usdm")
    assert all(r["best_bid_price"] is not None for r in rows if r["market"] == "spot")
    pepe = [r["volume"] for r in rows if r["symbol"] == "PEPEUSDT"]
    assert pepe and max(pepe) > 0
