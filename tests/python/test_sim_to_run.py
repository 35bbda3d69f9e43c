"""`tickwire sim` and `tickwire run` as separate processes over real WebSockets.

The engine's config points its sources at the simulator (`endpoint`), USD-M streams split over
`/public` and `/market` as on Binance. The simulator is stopped first (it closes every
connection after its last frame); once the engine has taken in everything the simulator says it
sent, the engine is stopped and its counts must equal the simulator's, per record kind.
"""

import json
import signal
import subprocess

from conftest import BIN, free_port, listening, metrics, series, wait

SYMS = '["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"]'
KINDS = ["trade", "agg_trade", "book_ticker", "depth_update", "depth_snapshot", "kline", "mark_price",
         "liquidation", "ticker"]


def records(http):
    return {l.split('"')[1]: int(float(l.split()[-1])) for l in metrics(http).splitlines() if l.startswith("tickwire_records_total{")}


def gauge(http, name):
    """The sum of a metric's series (over its labels, e.g. market)."""
    rows = series(http, name)
    assert rows, name
    return sum(rows.values())


def test_sim_process_to_run_process(tmp_path):
    spot, usdm, http, zmq = free_port(), free_port(), free_port(), free_port()
    sim = subprocess.Popen([BIN, "sim", "--spot", f"127.0.0.1:{spot}", "--usdm", f"127.0.0.1:{usdm}", "--rate", "4000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
stats_secs = 0
[[sources]]
market = "spot"
symbols = {SYMS}
streams = ["trade", "aggTrade", "bookTicker", "depth@100ms", "depth5@100ms", "kline_1m", "ticker"]
endpoint = "ws://127.0.0.1:{spot}"
[[sources]]
market = "usdm"
symbols = {SYMS}
streams = ["trade", "aggTrade", "bookTicker", "depth@100ms", "depth20@100ms", "kline_1m", "markPrice@1s", "forceOrder", "ticker"]
endpoint = "ws://127.0.0.1:{usdm}"
[zmq]
bind = "tcp://127.0.0.1:{zmq}"
[[sinks]]
type = "parquet"
dir = "{tmp_path / 'data'}"
compression = "lz4"
row_group_rows = 4096
[http]
bind = "127.0.0.1:{http}"
""")
    # The simulator first: the engine reads its exchangeInfo once, at start.
    wait(lambda: listening(spot, usdm), 30, "the simulator to listen")
    run = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Three connections (spot, usdm /public, usdm /market) deliver data.
        wait(lambda: sum(records(http).values()) > 20_000, 60, "records to flow")
        # Every order book, spot's and USD-M's (its depth diffs on /public, the REST snapshot
        # from the same simulated market), syncs from a snapshot.
        wait(lambda: gauge(http, "tickwire_books_synced_total") >= 8 and gauge(http, "tickwire_books_waiting") == 0,
             30, "all 8 books to sync")
        sim.send_signal(signal.SIGTERM)
        sim_out, sim_err = sim.communicate(timeout=30)
        truth = json.loads(sim_out.decode().strip().splitlines()[-1])
        assert truth["spot"]["connections"]["accepted"] >= 1 and truth["usdm"]["connections"]["accepted"] >= 2, truth
        assert truth["spot"]["streams_refused"] == 0 and truth["usdm"]["streams_refused"] == 0, sim_err.decode()
        sent = {k: truth["spot"]["sent"][k] + truth["usdm"]["sent"][k] for k in KINDS}
        wait(lambda: all(records(http).get(k, 0) >= sent[k] for k in KINDS), 30, "the engine to take in everything sent")
    finally:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
        if sim.poll() is None:
            sim.kill()
    assert run.returncode == 0, err.decode()
    s = json.loads(out.decode().strip().splitlines()[-1])
    for k in KINDS:
        assert s["records"][k] == sent[k], k
    assert s["dropped"] == 0 and s["errors"] == 0 and s["records"]["gap"] == 0
    # And one instrument record a symbol, from the exchangeInfo each market was read for.
    assert s["records"]["instrument"] == 8, s["records"]
    assert s["rows"]["parquet"] == sum(sent.values()) + 8
    for m in ("spot", "usdm"):
        assert s["books"][m]["synced"] >= 4 and s["books"][m]["waiting"] == 0, s
        rest = s["rest"][m]
        assert rest["errors"] == 0 and rest["status_429"] == 0 and rest["status_418"] == 0, s
        # exchangeInfo (the weight limit) and one snapshot a book at least, each weighed.
        assert rest["requests"] >= 5 and rest["weight"] > 0, s
    # The simulator's own count of what it served agrees.
    for m in ("spot", "usdm"):
        assert truth[m]["rest"]["status_429"] == 0 and truth[m]["rest"]["status_418"] == 0, truth
        assert truth[m]["rest"]["exchange_info"] == 1, truth
    # The files, written with `compression = "lz4"` and 4k-row groups, read back in pyarrow with
    # every record the simulator sent, and say so in their metadata.
    import pyarrow.parquet as pq
    codecs, groups = set(), 0
    for k in KINDS:
        files = sorted((tmp_path / "data" / k).rglob("part-*.parquet"))
        assert files, k
        rows = 0
        for f in files:
            meta = pq.ParquetFile(f).metadata
            rows += pq.read_table(f).num_rows
            groups += meta.num_row_groups
            codecs |= {meta.row_group(g).column(c).compression
                       for g in range(meta.num_row_groups) for c in range(meta.num_columns)}
        assert rows == sent[k], (k, rows, sent[k])
    # Parquet's LZ4_RAW is Arrow's "LZ4" (the raw block format; Hadoop's framing is "LZ4_HADOOP").
    assert codecs == {"LZ4"}, codecs
    assert groups > len(KINDS), groups
    # The simulator's ground truth belongs to `demo` (and `run` with its in-process simulator).
    assert "sent" not in s and "injected" not in s and "sim" not in s
