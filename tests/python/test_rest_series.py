"""The records that only REST has, end to end over real sockets: `tickwire sim` and `tickwire
run` with a USD-M `symbols = ["*"]` source and `[[pollers]]` for all five series, into Parquet,
PostgreSQL and ClickHouse, and out on ZMQ to a pyzmq SUB.

- `instrument`: one row per recorded symbol, with the tick and step size exchangeInfo gave
  (the decimal text recovered exactly from the ZMQ payload), on both markets.
- `open_interest` / `long_short_ratio`: the first poll asks for 30 points of each series; each
  point is written once (later polls in the same period bring nothing new) and equals the
  simulator's answer for that timestamp, asked for again after the run. The live
  `openInterest` is a row per poll with a new `time`.
- The simulator's counts: no 429, no 418; every store has the same rows.
"""

import decimal
import importlib.util
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import pyarrow.dataset as ds
import zmq

from conftest import BIN, ROOT, free_port, listening, metrics, wait

N = 12
RATIOS = ["topLongShortPositionRatio", "topLongShortAccountRatio", "globalLongShortAccountRatio"]
PG = os.environ.get("TICKWIRE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
CH = os.environ.get("TICKWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123")

spec = importlib.util.spec_from_file_location("zmq_subscriber", ROOT / "examples" / "zmq_subscriber.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


def psql(sql):
    r = subprocess.run(["psql", PG, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def ch(sql):
    req = urllib.request.Request(CH, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def rows(data, kind):
    return ds.dataset(data / kind, format="parquet", partitioning="hive").to_table().to_pylist()


def records(http):
    return {l.split('"')[1]: int(float(l.split()[-1])) for l in metrics(http).splitlines()
            if l.startswith("tickwire_records_total{")}


def test_instruments_and_the_polled_series_reach_every_sink_once_and_exactly(tmp_path):
    spot, usdm, http, pub = free_port(), free_port(), free_port(), free_port()
    name = f"tw_series_{os.getpid()}"
    psql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    ch(f"DROP DATABASE IF EXISTS {name}")
    sim = subprocess.Popen([BIN, "sim", "--spot", f"127.0.0.1:{spot}", "--usdm", f"127.0.0.1:{usdm}",
                            "--symbols", str(N), "--rate", "1000", "--data-requests-per-5min", "100000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait(lambda: listening(spot, usdm), 30, "the simulator to listen")
    # A SUB for the REST kinds, connected before the engine binds (ZMQ reconnects).
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 500)
    sub.connect(f"tcp://127.0.0.1:{pub}")
    for t in (b"instrument.", b"open_interest.", b"long_short_ratio."):
        sub.setsockopt(zmq.SUBSCRIBE, t)
    got_zmq, done = [], threading.Event()

    def collect():
        while not done.is_set():
            try:
                got_zmq.append(sub.recv_multipart())
            except zmq.Again:
                pass

    th = threading.Thread(target=collect, daemon=True)
    th.start()
    data = tmp_path / "data"
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
stats_secs = 0
[zmq]
bind = "tcp://127.0.0.1:{pub}"
wait_subscribers = 1
[rest]
data_requests_per_5min = 100000
[[sources]]
market = "usdm"
symbols = ["*"]
streams = ["aggTrade"]
endpoint = "ws://127.0.0.1:{usdm}"
[[sources]]
market = "spot"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["trade"]
endpoint = "ws://127.0.0.1:{spot}"
[[pollers]]
series = ["openInterest", "openInterestHist", {", ".join(f'"{r}"' for r in RATIOS)}]
period = "5m"
every_secs = 1
history = 30
[[sinks]]
type = "parquet"
dir = "{data}"
[[sinks]]
type = "postgres"
url = "{PG}"
schema = "{name}"
[[sinks]]
type = "clickhouse"
url = "{CH}"
database = "{name}"
[http]
bind = "127.0.0.1:{http}"
""")
    run = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # 30 points of each of three ratios and of openInterestHist for every symbol, and a
        # few live openInterest polls.
        wait(lambda: records(http).get("long_short_ratio", 0) >= 3 * 30 * N
             and records(http).get("open_interest", 0) >= 30 * N + 3 * N, 120, "the first polls")
        time.sleep(1.5)  # more polls of the same period: nothing new from the /futures/data/ ones
        # The query API serves them from the cache like the other kinds.
        def lines(path):
            with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=10) as r:
                return [json.loads(l) for l in r.read().decode().splitlines()]
        api_inst = lines("/v1/instrument?market=usdm&symbol=BTCUSDT")
        api_ratio = lines("/v1/long_short_ratio?market=usdm&symbol=ETHUSDT&limit=100000")
    finally:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=90)
        done.set()
        th.join(timeout=5)
        ctx.destroy(linger=0)
    assert run.returncode == 0, err.decode()
    s = json.loads(out.decode().strip().splitlines()[-1])
    try:
        # The simulator's answers, asked for again: a point's values depend only on its
        # timestamp, so these are what the engine was answered.
        truth = {}
        for sym in [f["symbol"] for f in get(usdm, "/fapi/v1/exchangeInfo")["symbols"]]:
            for series in ["openInterestHist", *RATIOS]:
                for p in get(usdm, f"/futures/data/{series}?symbol={sym}&period=5m&limit=500"):
                    truth[(sym, series, int(p["timestamp"]))] = p
        info = {m: {x["symbol"]: x for x in get(port, path)["symbols"]}
                for m, port, path in (("usdm", usdm, "/fapi/v1/exchangeInfo"), ("spot", spot, "/api/v3/exchangeInfo"))}
    finally:
        sim.send_signal(signal.SIGTERM)
        sim_out, _ = sim.communicate(timeout=60)
    sim_s = json.loads(sim_out.decode().strip().splitlines()[-1])
    assert sim_s["usdm"]["rest"]["status_429"] == 0 and sim_s["usdm"]["rest"]["status_418"] == 0, sim_s["usdm"]["rest"]
    assert s["dropped"] == 0 and s["errors"] == 0, (s, err.decode()[-3000:])
    assert s["rest"]["usdm"]["unreadable"] == 0, s["rest"]

    # Instruments: every recorded symbol once, as exchangeInfo says.
    inst = rows(data, "instrument")
    assert sorted((r["market"], r["symbol"]) for r in inst) == sorted(
        [("usdm", x) for x in info["usdm"]] + [("spot", "BTCUSDT"), ("spot", "ETHUSDT")])
    for r in inst:
        x = info[r["market"]][r["symbol"]]
        assert r["tick_size"] == decimal.Decimal(x["filters"][0]["tickSize"])
        assert r["step_size"] == decimal.Decimal(x["filters"][1]["stepSize"])
        assert r["status"] == x["status"] and r["quote_asset"] == x["quoteAsset"]
        assert r["contract_type"] == x.get("contractType")
        assert r["price_precision"] == x.get("pricePrecision")

    assert len(api_inst) == 1 and api_inst[0]["tick_size"] == info["usdm"]["BTCUSDT"]["filters"][0]["tickSize"], api_inst
    assert len(api_ratio) >= 3 * 30 and {r["series"] for r in api_ratio} == set(RATIOS), api_ratio[:3]

    # The /futures/data/ points: once each, equal to the simulator's.
    ratios = rows(data, "long_short_ratio")
    keys = [(r["symbol"], r["series"], r["event_time"].timestamp() * 1000) for r in ratios]
    assert len(keys) == len(set(keys)), "a point written twice"
    assert len(ratios) >= 3 * 30 * N
    assert len(api_ratio) <= sum(r["symbol"] == "ETHUSDT" for r in ratios)
    for r in ratios:
        t = truth[(r["symbol"], r["series"], int(r["event_time"].timestamp() * 1000))]
        assert r["period"] == "5m"
        assert r["long_short_ratio"] == decimal.Decimal(t["longShortRatio"])
        assert r["long_share"] == decimal.Decimal(t.get("longAccount") or t["longPosition"])
        assert r["short_share"] == decimal.Decimal(t.get("shortAccount") or t["shortPosition"])
    oi = rows(data, "open_interest")
    hist = [r for r in oi if r["period"] == "5m"]
    live = [r for r in oi if r["period"] is None]
    hist_keys = [(r["symbol"], int(r["event_time"].timestamp() * 1000)) for r in hist]
    assert len(hist_keys) == len(set(hist_keys)) and len(hist) >= 30 * N
    for r in hist:
        t = truth[(r["symbol"], "openInterestHist", int(r["event_time"].timestamp() * 1000))]
        assert r["open_interest"] == decimal.Decimal(t["sumOpenInterest"])
        assert r["open_interest_value"] == decimal.Decimal(t["sumOpenInterestValue"])
    live_keys = [(r["symbol"], r["event_time"]) for r in live]
    assert len(live_keys) == len(set(live_keys)) and len(live) >= 3 * N
    assert all(r["open_interest_value"] is None for r in live)

    # ZMQ: the same records, decoded by the example subscriber; decimals as the exchange wrote.
    decoded = [example.decode(t, p) for t, p in got_zmq]
    by_kind = {}
    for d in decoded:
        by_kind.setdefault(d["kind"], []).append(d)
    assert len(by_kind["instrument"]) == len(inst)
    assert len(by_kind["long_short_ratio"]) == len(ratios)
    assert len(by_kind["open_interest"]) == len(oi)
    for d in by_kind["instrument"]:
        x = info[d["market"]][d["symbol"]]
        assert d["tick_size"] == x["filters"][0]["tickSize"], (d, x["filters"])
        assert d["status"] == x["status"] and d["base_asset"] == x["baseAsset"]
    for d in by_kind["long_short_ratio"]:
        t = truth[(d["symbol"], d["series"], d["event_time"] // 1000)]
        assert d["long_short_ratio"] == t["longShortRatio"]

    # Every store has the same rows.
    for kind, table, n in (("instrument", "instruments", len(inst)), ("open_interest", "open_interest", len(oi)),
                           ("long_short_ratio", "long_short_ratios", len(ratios))):
        assert s["records"][kind] == n, kind
        assert int(psql(f"SELECT count(*) FROM {name}.{table}")) == n, table
        assert int(ch(f"SELECT count() FROM {name}.{table}")) == n, table
    assert int(psql(f"SELECT count(DISTINCT (symbol, series, event_time)) FROM {name}.long_short_ratios")) == len(ratios)
    psql(f"DROP SCHEMA {name} CASCADE")
    ch(f"DROP DATABASE {name}")
