"""The query API (`tickwire demo --http ADDR`) over real HTTP while the demo runs: rows from the
Arrow cache equal the Parquet rows for the same receive-time range, in JSON lines, CSV and Arrow
IPC (read by pyarrow); candles equal OHLCV computed here from the Parquet trades; the book and
precise 4xx errors; cache counters in /metrics. Then read-through: a second demo on the same
PostgreSQL schema serves a range that began before it started from PostgreSQL and the cache
together, without duplicates."""

import csv
import decimal
import io
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pytest
import pyarrow.dataset as ds

from conftest import BIN, free_port

PG = os.environ.get("TICKWIRE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
D = decimal.Decimal


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_for(pred, what, limit=30):
    t0 = time.time()
    while time.time() - t0 < limit:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_demo(out, http, secs, *extra):
    return subprocess.Popen([BIN, "demo", "--duration", str(secs), "--out", str(out), "--zmq",
                             f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0", "--http", http,
                             "--rate", "20000", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p):
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def key(r):
    return (r["market"], r["symbol"], int(r["trade_id"]))


def test_query_api_matches_parquet(tmp_path):
    http = f"127.0.0.1:{free_port()}"
    base = f"http://{http}"
    out = tmp_path / "data"
    demo = start_demo(out, http, 10)
    try:
        wait_for(lambda: get(f"{base}/health")[0] == 200 if _up(base) else False, "the API")
        wait_for(lambda: int(get(f"{base}/v1/trade?limit=1")[1].get("X-Tickwire-Rows", 0)) > 0, "trades")
        # Let a few flushes happen, so both flushed and open batches are in range, and wait for
        # three seconds of ETHUSDT candles (the last may be incomplete; two are compared).
        time.sleep(1)

        def three_seconds():
            to = int(time.time() * 1000) - 200
            body = get(f"{base}/v1/candles?market=spot&symbol=ETHUSDT&interval=1s&from=0&to={to}")[2]
            return len(body.decode().splitlines()) >= 3

        wait_for(three_seconds, "three seconds of candles")
        to_ms = int(time.time() * 1000) - 200
        q = f"from=0&to={to_ms}&limit=1000000"
        st, h, body = get(f"{base}/v1/trade?{q}")
        assert st == 200 and h["X-Tickwire-Tiers"] == "cache"
        js = [json.loads(l) for l in body.decode().splitlines()]
        assert len(js) == int(h["X-Tickwire-Rows"]) > 1000
        recv = [r["recv_time"] for r in js]
        assert recv == sorted(recv, reverse=True), "newest first"
        st, h, body = get(f"{base}/v1/trade?{q}", accept="application/vnd.apache.arrow.stream")
        assert st == 200 and h["Content-Type"] == "application/vnd.apache.arrow.stream"
        arrow = pa.ipc.open_stream(body).read_all().to_pylist()
        st, h, body = get(f"{base}/v1/trade?{q}&format=csv")
        rows_csv = list(csv.DictReader(io.StringIO(body.decode())))
        assert len(arrow) == len(rows_csv) == len(js)
        limited = get(f"{base}/v1/trade?{q}&limit=10&symbol=btcusdt&market=spot")[2].decode().splitlines()
        assert len(limited) == 10 and all('"symbol":"BTCUSDT"' in l and '"market":"spot"' in l for l in limited)
        candles = [json.loads(l) for l in get(f"{base}/v1/candles?market=spot&symbol=ETHUSDT&interval=1s&from=0&to={to_ms}")[2].decode().splitlines()]
        # The live order book (synced from the simulator's REST snapshots), deeper than the
        # partial-depth streams' 5 or 20 levels.
        st, h, book = get(f"{base}/v1/book?market=spot&symbol=BTCUSDT&depth=30")
        assert st == 200 and h["X-Tickwire-Book-Source"] == "live", h
        book = json.loads(book)
        # (spot partial depth has 5 levels; diffs remove levels, so a side may hold fewer than 30)
        assert 5 < len(book["bids"]) <= 30 and 5 < len(book["asks"]) <= 30, book
        assert D(book["bids"][0][0]) < D(book["asks"][0][0])
        assert [D(b[0]) for b in book["bids"]] == sorted((D(b[0]) for b in book["bids"]), reverse=True)
        assert [D(a[0]) for a in book["asks"]] == sorted(D(a[0]) for a in book["asks"])
        for url, code, words in [("/v1/nope", 404, "unknown kind"), ("/v1/trade?symbol=NOPEUSDT", 404, "unknown symbol"),
                                 ("/v1/trade?from=10&to=5", 400, "bad time range"), ("/v1/trade?from=yesterday", 400, "bad time"),
                                 ("/v1/trade?market=coinm", 400, "unknown market"), ("/v1/candles?interval=7m", 400, "unknown interval"),
                                 ("/v1/trade?limit=0", 400, "limit")]:
            st, _, b = get(base + url)
            assert st == code and words in json.loads(b)["error"], (url, st, b)
        metrics = get(f"{base}/metrics")[2].decode()
        hits = [l for l in metrics.splitlines() if l.startswith('tickwire_cache_queries_total{result="hit"}')]
        assert int(hits[0].split()[-1]) >= 6
    finally:
        s = finish(demo)
    assert s["dropped"] == 0
    # Equal to the Parquet rows of the same receive-time range, value for value.
    t = ds.dataset(out / "trade", format="parquet", partitioning="hive").to_table().to_pylist()
    want = {key(x): x for x in t if x["recv_time"].timestamp() * 1000 < to_ms}
    got = {key(r): r for r in js}
    assert got.keys() == want.keys()
    for k, r in got.items():
        w = want[k]
        assert (D(r["price"]), D(r["qty"]), r["is_buyer_maker"]) == (w["price"], w["qty"], w["is_buyer_maker"]), k
    assert {key(r): (r["price"], r["qty"]) for r in arrow} == {k: (w["price"], w["qty"]) for k, w in want.items()}
    assert {key(r): (D(r["price"]), D(r["qty"])) for r in rows_csv} == {k: (w["price"], w["qty"]) for k, w in want.items()}
    # Candles: OHLCV per second by trade time, from the Parquet trades.
    eth = sorted((x for x in want.values() if x["symbol"] == "ETHUSDT" and x["market"] == "spot"),
                 key=lambda x: (x["trade_time"], x["trade_id"]))
    by_sec = {}
    for x in eth:
        by_sec.setdefault(int(x["trade_time"].timestamp()), []).append(x)
    # Buckets at the range's end may hold trades received after `to`: compare the complete ones.
    full = {c["open_time"] // 1_000_000: c for c in candles}
    assert len(full) >= 3
    for sec in sorted(full)[:-1]:
        c, xs = full[sec], by_sec[sec]
        assert (D(c["open"]), D(c["close"])) == (xs[0]["price"], xs[-1]["price"]), sec
        assert (D(c["high"]), D(c["low"])) == (max(x["price"] for x in xs), min(x["price"] for x in xs))
        assert D(c["volume"]) == sum(x["qty"] for x in xs) and c["trades"] == len(xs)
        assert D(c["quote_volume"]) == sum(x["price"] * x["qty"] for x in xs)


def _up(base):
    try:
        return get(f"{base}/health")[0] == 200
    except OSError:
        return False


def psql(sql):
    r = subprocess.run(["psql", PG, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


CH = os.environ.get("TICKWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123")


def ch(sql):
    req = urllib.request.Request(CH, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode().strip()


@pytest.mark.parametrize("store", ["postgres", "clickhouse"])
def test_read_through_without_duplicates(tmp_path, store):
    name = f"tw_readthrough_{store}_{os.getpid()}"
    if store == "postgres":
        psql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        flags = ["--postgres", PG, "--postgres-schema", name]
        count = lambda where: int(psql(f"SELECT count(*) FROM {name}.trades {where}"))
        before_ms = lambda ms: f"WHERE recv_time < timestamptz 'epoch' + {ms} * interval '1 millisecond'"
        traded_by_ms = lambda ms: f"WHERE trade_time <= timestamptz 'epoch' + {ms} * interval '1 millisecond'"
        drop = lambda: psql(f"DROP SCHEMA {name} CASCADE")
    else:
        ch(f"DROP DATABASE IF EXISTS {name}")
        flags = ["--clickhouse", CH, "--clickhouse-database", name]
        count = lambda where: int(ch(f"SELECT count() FROM {name}.trades {where}"))
        before_ms = lambda ms: f"WHERE recv_time < {ms * 1_000_000}"  # 18.16: integer ns
        traded_by_ms = lambda ms: f"WHERE trade_time <= {ms * 1_000}"  # 18.16: integer us
        drop = lambda: ch(f"DROP DATABASE {name}")
    first = subprocess.run([BIN, "demo", "--duration", "2", "--out", str(tmp_path / "a"), "--zmq", f"tcp://127.0.0.1:{free_port()}",
                            "--stats-secs", "0", "--rate", "5000", *flags],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = count("")
    assert before > 0
    http = f"127.0.0.1:{free_port()}"
    base = f"http://{http}"
    demo = start_demo(tmp_path / "b", http, 5, *flags)
    try:
        wait_for(lambda: _up(base), "the API")
        wait_for(lambda: int(get(f"{base}/v1/trade?limit=1")[1].get("X-Tickwire-Rows", 0)) > 0, "new trades")
        time.sleep(1)
        to_ms = int(time.time() * 1000) - 200
        st, h, body = get(f"{base}/v1/trade?from=0&to={to_ms}&limit=1000000")
        assert st == 200 and h["X-Tickwire-Tiers"] == f"{store},cache", h
        rows = [json.loads(l) for l in body.decode().splitlines()]
        recv = [r["recv_time"] for r in rows]
        assert recv == sorted(recv, reverse=True), "newest first across the tiers"
        # Only the cache when the range starts after the second demo did.
        st, h, _ = get(f"{base}/v1/trade?from={to_ms - 100}&to={to_ms}")
        assert h["X-Tickwire-Tiers"] == "cache"
        # Candles over the whole range come from both tiers and count every trade once.
        st, h, body = get(f"{base}/v1/candles?interval=1h&from=0&to={to_ms}")
        assert st == 200 and h["X-Tickwire-Tiers"] == f"{store},cache", h
        candle_trades = sum(json.loads(l)["trades"] for l in body.decode().splitlines())
    finally:
        finish(demo)
    # The simulator starts its trade ids afresh in each run: a row is its id and receive time.
    keys = [(r["market"], r["symbol"], r["trade_id"], r["recv_time"] // 1000) for r in rows]
    assert len(keys) == len(set(keys)), "no row twice"
    # Every trade the store holds for the range (both runs, all written by now), once.
    want = count(before_ms(to_ms))
    assert len(rows) == want > before
    # Candles select by trade time, which precedes receive time: every trade received before
    # `to`, plus those traded by `to` and received after it (how many depends on how far the
    # engine is behind the simulator), never a trade traded after `to`.
    traded = count(traded_by_ms(to_ms))
    assert want <= candle_trades <= traded, (want, candle_trades, traded)
    drop()
