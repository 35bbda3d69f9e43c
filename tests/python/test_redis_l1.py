"""The Redis L1 on a real Redis server: `tickwire demo --redis` fills candles, ticks, books and
latest states from the records, and every trade goes out on pub/sub. Checked against the
Parquet copy of the same run: every closed 1 s candle equals the one computed from the
trades (exact decimals), the ticks set holds the newest trades, every trade of a symbol
reached a subscriber. A Redis server of the test's own, shut down without saving and started
again mid-run, is complete again afterwards (the engine wrote every key again), and the
engine took in everything the simulator sent."""

import decimal
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict

import pyarrow.dataset as ds
import pytest
import redis

from conftest import BIN, free_port, series

D = decimal.Decimal


def trades(out):
    rows = ds.dataset(out / "trade", format="parquet", partitioning="hive").to_table().to_pylist()
    by = defaultdict(list)
    for r in rows:
        us = int(r["trade_time"].timestamp() * 1_000_000) if hasattr(r["trade_time"], "timestamp") else r["trade_time"]
        by[(r["market"], r["symbol"])].append((us, r["trade_id"], r["price"], r["qty"]))
    for v in by.values():
        v.sort()
    return by


def candles_1s(ts):
    out = {}
    for us, tid, p, q in ts:
        start = us // 1_000_000 * 1_000_000
        c = out.get(start)
        if c is None:
            out[start] = c = {"open": p, "high": p, "low": p, "close": p, "volume": D(0), "quote": D(0), "trades": 0}
        c["high"], c["low"], c["close"] = max(c["high"], p), min(c["low"], p), p
        c["volume"] += q
        c["quote"] += p * q
        c["trades"] += 1
    return out


def check_l1(r, prefix, out, s):
    by = trades(out)
    assert by, "trades in Parquet"
    for (m, sym), ts in by.items():
        want = candles_1s(ts)
        got = [json.loads(x) for x in r.lrange(f"{prefix}candles:{m}:{sym}:1s", 0, -1)]
        assert got, (m, sym)
        # Newest first, and every closed one equal to the Parquet-derived candle.
        assert [c["open_time"] for c in got] == sorted((c["open_time"] for c in got), reverse=True)
        for c in got:
            w = want[c["open_time"]]
            assert (D(c["open"]), D(c["high"]), D(c["low"]), D(c["close"]), D(c["volume"]), c["trades"]) == \
                (w["open"], w["high"], w["low"], w["close"], w["volume"], w["trades"]), (m, sym, c, w)
        # The open candle is the newest second's.
        open_ = r.hgetall(f"{prefix}candle:{m}:{sym}:1s")
        assert int(open_[b"open_time"]) == max(want), (m, sym)
        # The ticks set: the newest trades (up to 1000) by (trade time, id).
        ticks = r.zrange(f"{prefix}ticks:{m}:{sym}", 0, -1)
        newest = ts[-1000:]
        assert sorted(json.loads(t)["trade_id"] for t in ticks) == sorted(t[1] for t in newest), (m, sym)
        one = json.loads(ticks[-1])
        assert D(one["price"]) == newest[-1][2] and D(one["qty"]) == newest[-1][3]
        # The book and the latest states are there.
        book = r.hgetall(f"{prefix}orderbook:{m}:{sym}")
        assert book and json.loads(book[b"bids"]) and json.loads(book[b"asks"]), (m, sym)
        assert r.hget(f"{prefix}book_ticker:{m}:{sym}", "bid_price"), (m, sym)
    return by


def test_demo_fills_l1_and_publishes_every_trade(tmp_path):
    url = os.environ.get("TICKWIRE_REDIS_URL", "redis://127.0.0.1:6379")
    prefix = f"twtest{os.getpid()}:"
    r = redis.Redis.from_url(url)
    ps = r.pubsub()
    ps.subscribe(f"{prefix}pubsub:ticks:spot:BTCUSDT")
    got, done = [], threading.Event()

    def listen():
        while not done.is_set():
            m = ps.get_message(timeout=0.2)
            if m and m["type"] == "message":
                got.append(json.loads(m["data"]))

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    time.sleep(0.3)
    out = tmp_path / "data"
    http = free_port()
    demo = subprocess.Popen([BIN, "demo", "--duration", "5", "--out", str(out), "--zmq", f"tcp://127.0.0.1:{free_port()}",
                             "--stats-secs", "0", "--redis", url, "--redis-prefix", prefix, "--http", f"127.0.0.1:{http}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The query API reads candles from L1 when it holds the range (aligned to the interval).
    time.sleep(3.5)
    oldest = json.loads(r.lrange(f"{prefix}candles:spot:BTCUSDT:1s", -1, -1)[0])["open_time"]
    q = f"http://127.0.0.1:{http}/v1/candles?market=spot&symbol=BTCUSDT&interval=1s&from={oldest // 1000}"
    with urllib.request.urlopen(q, timeout=10) as resp:
        api_tiers = resp.headers["X-Tickwire-Tiers"]
        api = [json.loads(l) for l in resp.read().decode().splitlines()]
    # Not held by L1 (from before its first candle): the cache answers.
    with urllib.request.urlopen(q.replace(f"from={oldest // 1000}", f"from={(oldest - 60_000_000) // 1000}"),
                                timeout=10) as resp:
        older_tiers = resp.headers["X-Tickwire-Tiers"]
        l2 = {c["open_time"]: c for c in (json.loads(l) for l in resp.read().decode().splitlines())}
    l1_reads = {k: v for k, v in series(http, "tickwire_l1_reads_total").items()}
    stdout, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 0, stderr
    p = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, stderr)
    time.sleep(0.5)
    done.set()
    th.join(timeout=5)
    s = json.loads(p.stdout.strip().splitlines()[-1])
    assert s["redis"]["errors"] == 0 and s["redis"]["dropped"] == 0, s["redis"]
    assert s["rows"]["redis"] > 0 and s["redis"]["commands"] > 0
    by = check_l1(r, prefix, out, s)
    assert api_tiers == "redis" and older_tiers == "cache", (api_tiers, older_tiers)
    assert l1_reads == {'{result="hit"}': 1.0, '{result="miss"}': 1.0}, l1_reads
    # The closed ones equal the Parquet trades' (the newest may have been still open then),
    # and the L2 cache's answer for the same seconds, field for field.
    want = candles_1s(by[("spot", "BTCUSDT")])
    assert len(api) >= 2
    assert len(api) >= 3 and all(l2[c["open_time"]] == c for c in api[:-2]), [(c, l2.get(c["open_time"])) for c in api[:-2]]
    for c in api[:-1]:
        w = want[c["open_time"]]
        assert (D(c["open"]), D(c["high"]), D(c["low"]), D(c["close"]), D(c["volume"]), c["trades"]) == \
            (w["open"], w["high"], w["low"], w["close"], w["volume"], w["trades"]), (c, w)
        assert D(c["quote_volume"]) == w["quote"], (c, w)
    # Pub/sub: every BTCUSDT spot trade, in order, none folded.
    assert [t["trade_id"] for t in got] == [t[1] for t in sorted(by[("spot", "BTCUSDT")], key=lambda t: t[1])]
    # TTLs are set.
    assert 0 < r.ttl(f"{prefix}candles:spot:BTCUSDT:1s") <= 86_400
    assert 0 < r.ttl(f"{prefix}orderbook:spot:BTCUSDT") <= 300
    for k in r.scan_iter(f"{prefix}*"):
        r.delete(k)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is installed by scripts/test.sh")
def test_a_redis_restart_mid_run_leaves_l1_complete(tmp_path):
    port = free_port()
    server = lambda: subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(tmp_path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = server()
    url = f"redis://127.0.0.1:{port}"
    r = redis.Redis.from_url(url)
    for _ in range(50):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    out = tmp_path / "data"
    demo = subprocess.Popen([BIN, "demo", "--duration", "6", "--out", str(out), "--zmq", f"tcp://127.0.0.1:{free_port()}",
                             "--stats-secs", "0", "--redis", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert r.exists("tickwire:candles:spot:BTCUSDT:1s")
        try:
            r.execute_command("SHUTDOWN", "NOSAVE")
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        srv.wait(timeout=10)
        time.sleep(1)
        srv = server()  # empty: it kept nothing
        stdout, stderr = demo.communicate(timeout=120)
        assert demo.returncode == 0, stderr
        s = json.loads(stdout.strip().splitlines()[-1])
        assert s["records"] == s["sent"] and s["dropped"] == 0, s
        assert s["redis"]["reconnects"] >= 1 and s["redis"]["rebuilds"] >= 2, s["redis"]
        assert "back after" in stderr
        r = redis.Redis.from_url(url)
        check_l1(r, "tickwire:", out, s)
    finally:
        if demo.poll() is None:
            demo.kill()
        srv.kill()


def candles(ts, width_us):
    out = {}
    for us, tid, p, q in sorted(ts):
        start = us // width_us * width_us
        c = out.get(start)
        if c is None:
            out[start] = c = {"open": p, "high": p, "low": p, "close": p, "volume": D(0), "trades": 0}
        c["high"], c["low"], c["close"] = max(c["high"], p), min(c["low"], p), p
        c["volume"] += q
        c["trades"] += 1
    return out


def test_an_engine_restart_goes_on_from_what_l1_holds(tmp_path):
    """Two `tickwire demo` runs one after the other on one Redis and prefix (an engine
    restarted; Redis kept its keys): the second takes each symbol's lists, open candles and
    ticks into its state and goes on from them. Afterwards every candle list holds both runs'
    closed candles, equal to those computed from both runs' Parquet trades together (the first
    run's last open candle closed by the second's first trade, a candle spanning both runs
    holds the trades of both), and the ticks set holds the newest trades of the two."""
    url = os.environ.get("TICKWIRE_REDIS_URL", "redis://127.0.0.1:6379")
    prefix = f"twresume{os.getpid()}:"
    r = redis.Redis.from_url(url)
    summaries, by = [], defaultdict(list)
    try:
        for run in ("a", "b"):
            out = tmp_path / run
            p = subprocess.run([BIN, "demo", "--duration", "3", "--out", str(out), "--zmq", f"tcp://127.0.0.1:{free_port()}",
                                "--stats-secs", "0", "--redis", url, "--redis-prefix", prefix],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            summaries.append(json.loads(p.stdout.strip().splitlines()[-1]))
            for k, v in trades(out).items():
                by[k].extend(v)
            time.sleep(1.5)
        a, b = summaries
        assert a["redis"]["resumed"] == 0 and b["redis"]["resumed"] >= len(by), (a["redis"], b["redis"])
        assert b["redis"]["repeats"] == 0 and b["redis"]["errors"] == 0 and b["redis"]["dropped"] == 0, b["redis"]
        for (m, sym), ts in by.items():
            for tf, width in (("1s", 1_000_000), ("1m", 60_000_000)):
                want = candles(ts, width)
                got = [json.loads(x) for x in r.lrange(f"{prefix}candles:{m}:{sym}:{tf}", 0, -1)]
                # Every closed candle of both runs, newest first; the newest is still open.
                assert [c["open_time"] for c in got] == sorted(want, reverse=True)[1:], (m, sym, tf)
                for c in got:
                    w = want[c["open_time"]]
                    assert (D(c["open"]), D(c["high"]), D(c["low"]), D(c["close"]), D(c["volume"]), c["trades"]) == \
                        (w["open"], w["high"], w["low"], w["close"], w["volume"], w["trades"]), (m, sym, tf, c, w)
                o = {k.decode(): v.decode() for k, v in r.hgetall(f"{prefix}candle:{m}:{sym}:{tf}").items()}
                w = want[max(want)]
                assert int(o["open_time"]) == max(want) and int(o["trades"]) == w["trades"] and \
                    D(o["volume"]) == w["volume"] and D(o["close"]) == w["close"], (m, sym, tf, o, w)
            ticks = [json.loads(t) for t in r.zrange(f"{prefix}ticks:{m}:{sym}", 0, -1)]
            assert sorted((t["trade_time"], t["trade_id"]) for t in ticks) == \
                [(us, tid) for us, tid, _, _ in sorted(ts)[-1000:]], (m, sym)
        # Both runs are there: the first's seconds are in the lists the second left.
        first_a = min(t[0] for v in trades(tmp_path / "a").values() for t in v)
        assert any(json.loads(x)["open_time"] <= first_a for x in r.lrange(f"{prefix}candles:spot:BTCUSDT:1s", 0, -1))
    finally:
        for k in r.scan_iter(f"{prefix}*"):
            r.delete(k)


def quiet_read(r, key, get):
    """`get()` between two equal reads of the hash `key` (it changes every 50-100 ms): (hash,
    answer)."""
    for _ in range(100):
        before = r.hgetall(key)
        got = get()
        if r.hgetall(key) == before:
            return before, got
    raise AssertionError(f"no quiet moment between two writes of {key}")


def get_rows(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.headers["X-Tickwire-Tiers"], [json.loads(l) for l in resp.read().decode().splitlines()]


def test_a_book_not_held_live_is_read_from_l1(tmp_path):
    """`tickwire run` with its books not synced (`book_sync = false`: no live book in the
    process, the book from the partial depth stream): `/v1/book` answers from the Redis L1's book hash (L1 before the L2 cache, as the
    design documents' read pattern says), equal to the hash at the same update id, and
    `tickwire_tier_reads_total` counts the L1 hit and the miss of a book L1 does not hold.
    The latest states (`/v1/book_ticker`, `ticker`, `mark_price` with `limit=1`, one market and
    symbol) come from L1 too: the hash's record, as the very row the cache holds for it."""
    from conftest import listening, wait
    url = os.environ.get("TICKWIRE_REDIS_URL", "redis://127.0.0.1:6379")
    prefix = f"twbook{os.getpid()}:"
    r = redis.Redis.from_url(url, decode_responses=True)
    spot, usdm, http = free_port(), free_port(), free_port()
    sim = subprocess.Popen([BIN, "sim", "--spot", f"127.0.0.1:{spot}", "--usdm", f"127.0.0.1:{usdm}",
                            "--rate", "2000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
stats_secs = 0
[zmq]
enabled = false
[connection]
book_sync = false
[[sources]]
market = "spot"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["trade", "depth@100ms", "depth20@100ms", "bookTicker", "ticker"]
endpoint = "ws://127.0.0.1:{spot}"
[[sources]]
market = "usdm"
symbols = ["BTCUSDT"]
streams = ["markPrice@1s"]
endpoint = "ws://127.0.0.1:{usdm}"
[[sinks]]
type = "parquet"
dir = "{tmp_path / 'data'}"
[[sinks]]
type = "redis"
url = "{url}"
prefix = "{prefix}"
[http]
bind = "127.0.0.1:{http}"
""")
    wait(lambda: listening(spot), 30, "the simulator to listen")
    run = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    key = f"{prefix}orderbook:spot:BTCUSDT"
    try:
        wait(lambda: r.exists(key), 30, "the L1 book hash")
        api = None
        for _ in range(50):  # the hash changes every 100 ms: a read between two equal ones
            before = r.hgetall(key)
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/book?market=spot&symbol=BTCUSDT&depth=20",
                                        timeout=10) as resp:
                src, tiers, body = resp.headers["X-Tickwire-Book-Source"], resp.headers["X-Tickwire-Tiers"], \
                    json.loads(resp.read())
            after = r.hgetall(key)
            if before["update_id"] == after["update_id"]:
                api = body
                break
        assert api is not None, "a quiet moment between two book updates"
        assert (src, tiers) == ("redis", "redis"), (src, tiers)
        assert api["last_update_id"] == int(before["update_id"]) and api["recv_time"] == int(before["time"]), (api, before)
        for side in ("bids", "asks"):
            want = [(D(p), D(q)) for p, q in json.loads(before[side])]
            assert want and [(D(p), D(q)) for p, q in api[side]] == want, side
        # A book L1 does not hold: a miss, and the next tier answers (nothing: 404).
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/book?market=usdm&symbol=BTCUSDT", timeout=10)
            assert False, "no USD-M book anywhere"
        except urllib.error.HTTPError as e:
            assert e.code == 404, e
        # Latest states: the row L1's hash holds, the same row (every column, exact) as the
        # cache's for that record, which the time range sends to the cache.
        base = f"http://127.0.0.1:{http}/v1"
        for kind, market in (("book_ticker", "spot"), ("ticker", "spot"), ("mark_price", "usdm")):
            hkey = f"{prefix}{kind}:{market}:BTCUSDT"
            wait(lambda: r.exists(hkey), 30, hkey)
            h, (tiers, rows) = quiet_read(r, hkey, lambda: get_rows(f"{base}/{kind}?market={market}&symbol=BTCUSDT&limit=1"))
            assert tiers == "redis" and len(rows) == 1, (kind, tiers, rows)
            row = rows[0]
            assert row["recv_time"] == int(h["recv_time"]), (kind, row, h)
            for k, v in h.items():
                if v == "null":
                    assert row[k] is None, (kind, k)
                elif isinstance(row[k], str) and k not in ("kind", "exchange", "market", "symbol"):
                    assert D(row[k]) == D(v), (kind, k, row[k], v)
                else:
                    assert str(row[k]).lower() == v.lower(), (kind, k, row[k], v)
            # L1 has it first (from the pipeline thread); the cache once its batch is flushed.
            for _ in range(50):
                ctiers, cached = get_rows(f"{base}/{kind}?market={market}&symbol=BTCUSDT&limit=100000&to=4102444800000")
                assert ctiers == "cache", ctiers
                same = [c for c in cached if c["recv_time"] == row["recv_time"]]
                if same:
                    break
                time.sleep(0.1)
            assert same == [row], (kind, row, same[:2])
        # Not held by L1 (no bookTicker on USD-M): a miss, and the cache answers (nothing).
        tiers, rows = get_rows(f"{base}/book_ticker?market=usdm&symbol=BTCUSDT&limit=1")
        assert (tiers, rows) == ("cache", []), (tiers, rows)
        reads = series(http, "tickwire_tier_reads_total")
        assert reads['{tier="l1",result="hit"}'] >= 4 and reads['{tier="l1",result="miss"}'] >= 2, reads
        assert '{tier="l2",result="hit"}' in reads and '{tier="l3",result="hit"}' in reads, reads
    finally:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
        sim.kill()
        sim.wait()
        for k in r.scan_iter(f"{prefix}*"):
            r.delete(k)
    assert run.returncode == 0, err.decode()
