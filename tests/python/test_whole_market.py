"""The whole market within Binance's request limits: `tickwire sim --symbols 400` and `tickwire
run` with `symbols = ["*"]`, as two processes over real sockets.

Each simulated market has 400 symbols (one of them not TRADING); the engine reads exchangeInfo,
takes the 399 TRADING ones, packs their trade, aggTrade and depth@100ms streams into connections
of at most 1024 streams, and syncs all 798 order books through its weight budget. The
simulator's own counts say no answer was 429 or 418, and the engine took in every record the
simulator sent.
"""

import glob
import json
import re
import signal
import subprocess
import time

import pyarrow.parquet as pq

from conftest import BIN, free_port, listening, metrics, series, wait

N = 400
TRADING = N - 1
KINDS = ["trade", "agg_trade", "depth_update"]


def synced(http):
    return series(http, "tickwire_books_synced_total")


def start(tmp_path, sim_args, sources, extra=""):
    """`tickwire sim SIM_ARGS` on both markets and, once it listens (every request the engine
    sends reaches it, so the weights must agree), `tickwire run` with the `[[sources]]` of
    SOURCES ({spot} and {usdm} are the simulator's ports) and EXTRA, Parquet under
    tmp_path/data, ZMQ off, the HTTP API on. Returns (sim, run, http port, data dir)."""
    spot, usdm, http = free_port(), free_port(), free_port()
    sim = subprocess.Popen([BIN, "sim", "--spot", f"127.0.0.1:{spot}", "--usdm", f"127.0.0.1:{usdm}", *sim_args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait(lambda: listening(spot, usdm), 30, "the simulator to listen")
    data = tmp_path / "data"
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
stats_secs = 0
[zmq]
enabled = false
{extra}
{sources.format(spot=spot, usdm=usdm)}
[[sinks]]
type = "parquet"
dir = "{data}"
[http]
bind = "127.0.0.1:{http}"
""")
    run = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return sim, run, http, data


def stop_sim(sim):
    """Stops the simulator; its exit JSON (what it sent and served)."""
    sim.send_signal(signal.SIGTERM)
    out, _ = sim.communicate(timeout=60)
    return json.loads(out.decode().strip().splitlines()[-1])


def stop_run(run, sim):
    """Stops the engine (and the simulator if still up); (summary, stderr)."""
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=90)
    if sim.poll() is None:
        sim.kill()
    assert run.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1]), err.decode()


def last_trades(data, market):
    """{symbol: newest event_time} of the trades in the Parquet files of `market`."""
    last = {}
    for f in glob.glob(str(data / "trade" / f"market={market}" / "*" / "*.parquet")):
        t = pq.read_table(f)
        for sym, ts in zip(t.column("symbol").to_pylist(), t.column("event_time").to_pylist()):
            last[sym] = max(last.get(sym, ts), ts)
    return last


def test_every_trading_symbol_of_both_markets_within_the_weight_limit(tmp_path):
    sim, run, http, _ = start(tmp_path, ["--symbols", str(N), "--rate", "6000"], """
[[sources]]
market = "spot"
symbols = ["*"]
streams = ["trade", "aggTrade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{spot}"
depth_limit = 100
[[sources]]
market = "usdm"
symbols = ["*"]
contract_types = ["PERPETUAL", "CURRENT_QUARTER"]
streams = ["trade", "aggTrade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{usdm}"
depth_limit = 50
""")
    try:
        # Every book of both markets syncs (399 a market: one symbol is not TRADING).
        wait(lambda: sum(synced(http).values()) >= 2 * TRADING and sum(series(http, "tickwire_books_waiting").values()) == 0,
             90, "all books to sync")
        truth = stop_sim(sim)
        sent = {k: truth["spot"]["sent"][k] + truth["usdm"]["sent"][k] for k in KINDS}
        records = lambda: {l.split('"')[1]: int(float(l.split()[-1])) for l in metrics(http).splitlines()
                           if l.startswith("tickwire_records_total{")}
        wait(lambda: all(records().get(k, 0) >= sent[k] for k in KINDS), 60, "the engine to take in everything sent")
    finally:
        s, log = stop_run(run, sim)
    assert f"{TRADING} of {N} symbols of exchangeInfo selected" in log, log[-2000:]
    for k in KINDS:
        assert s["records"][k] == sent[k], (k, s["records"][k], sent[k])
    assert s["dropped"] == 0 and s["errors"] == 0 and s["records"]["gap"] == 0, s
    for m in ("spot", "usdm"):
        # The simulator's ground truth: never over the minute's weight, never banned.
        assert truth[m]["rest"]["status_429"] == 0 and truth[m]["rest"]["status_418"] == 0, truth[m]["rest"]
        assert truth[m]["rest"]["snapshots"] >= TRADING, truth[m]["rest"]
        assert s["books"][m]["synced"] >= TRADING and s["books"][m]["waiting"] == 0, s["books"]
        assert s["rest"][m]["status_429"] == 0 and s["rest"][m]["status_418"] == 0, s["rest"]
        # What the engine says it spent is what the simulator counted.
        assert s["rest"][m]["weight"] == truth[m]["rest"]["weight"], (s["rest"], truth[m]["rest"])
    # At least 399 x 5 + 20 (exchangeInfo) on spot, 399 x 2 + 1 on USD-M.
    assert truth["spot"]["rest"]["weight"] >= TRADING * 5 + 20, truth["spot"]["rest"]
    assert truth["usdm"]["rest"]["weight"] >= TRADING * 2 + 1, truth["usdm"]["rest"]
    # 3 x 399 = 1197 streams: two spot connections; USD-M's depth on /public, trades on
    # /market (798 streams there): two connections.
    assert truth["spot"]["connections"]["accepted"] == 2 and truth["usdm"]["connections"]["accepted"] == 2, truth


def test_a_reconnect_storm_resyncs_every_book_within_the_budget(tmp_path):
    # The simulator closes every connection 6 s after it opened (a scaled "24 h" close): all of
    # them at once, and again after each reconnect. Every book must sync again each time,
    # through the same budget: never a 429 or a 418, whatever the storm asks for.
    sim, run, http, _ = start(tmp_path, ["--symbols", str(N), "--rate", "4000", "--close-after-ms", "6000"], """
[[sources]]
market = "spot"
symbols = ["*"]
streams = ["aggTrade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{spot}"
depth_limit = 100
[[sources]]
market = "usdm"
symbols = ["*"]
streams = ["aggTrade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{usdm}"
depth_limit = 50
""")
    try:
        # Synced, then every connection closed and every book synced again.
        wait(lambda: all(v >= 2 * TRADING for v in synced(http).values()) and len(synced(http)) == 2,
             120, "every book of both markets to sync twice")
        reconnects = series(http, "tickwire_reconnects_total")[""]
        assert reconnects >= 3, reconnects
        truth = stop_sim(sim)
    finally:
        s, _ = stop_run(run, sim)
    for m in ("spot", "usdm"):
        assert truth[m]["injected"]["closes"] >= 1, truth[m]["injected"]
        assert truth[m]["rest"]["status_429"] == 0 and truth[m]["rest"]["status_418"] == 0, truth[m]["rest"]
        assert s["rest"][m]["status_429"] == 0 and s["rest"][m]["status_418"] == 0, s["rest"]
        assert s["books"][m]["synced"] >= 2 * TRADING, s["books"]


def test_listings_and_delistings_are_followed(tmp_path):
    # Every 2 s the simulator lists a new symbol (PENDING_TRADING until then) and stops an old
    # one; the engine re-reads exchangeInfo every second, SUBSCRIBEs the new symbol's streams
    # on a running connection and UNSUBSCRIBEs the old one's.
    sim, run, http, data = start(tmp_path, ["--symbols", "30", "--rate", "3000", "--list-every", "2"], """
[[sources]]
market = "spot"
symbols = ["*"]
streams = ["trade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{spot}"
depth_limit = 100
refresh_secs = 1
[[sources]]
market = "usdm"
symbols = ["*"]
streams = ["trade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{usdm}"
depth_limit = 50
refresh_secs = 1
""")
    try:
        listed = lambda: series(http, "tickwire_listings_total")
        wait(lambda: all(listed().get(f'{{market="{m}",change="{c}"}}', 0) >= 3
                         for m in ("spot", "usdm") for c in ("listed", "delisted")),
             60, "three listings and delistings on both markets")
        truth = stop_sim(sim)
    finally:
        s, log = stop_run(run, sim)
    assert s["control_errors"] == 0, log
    for m in ("spot", "usdm"):
        assert s["listings"][m]["listed"] >= 3 and s["listings"][m]["delisted"] >= 3, s["listings"]
        assert truth[m]["control_errors"] == 0 and truth[m]["controls"] >= 6, truth[m]
        assert f"{m} ABAUSDT: newly TRADING" in log and f"{m} AAAUSDT: no longer TRADING" in log, log
        last = last_trades(data, m)
        # The first listing (not TRADING at the start) was recorded: it came by SUBSCRIBE.
        assert "ABAUSDT" in last, sorted(last)
        # The first delisting stopped at least 2 s before the listing that replaced it did.
        gap = (last["ABAUSDT"] - last["AAAUSDT"])
        gap = gap.total_seconds() if hasattr(gap, "total_seconds") else gap / 1e9
        assert gap >= 2, (last["AAAUSDT"], last["ABAUSDT"])
        # Instrument records follow: the delisted symbol's change of status, the listing's
        # entry once it trades, and no entry twice unchanged.
        inst = {}
        for f in sorted(glob.glob(str(data / "instrument" / f"market={m}" / "*" / "*.parquet"))):
            for r in pq.read_table(f).to_pylist():
                inst.setdefault(r["symbol"], []).append(r["status"])
        assert inst["AAAUSDT"][:1] == ["TRADING"] and inst["AAAUSDT"][-1] != "TRADING", inst["AAAUSDT"]
        assert inst["ABAUSDT"] == ["TRADING"], inst.get("ABAUSDT")
        assert inst["BTCUSDT"] == ["TRADING"], inst["BTCUSDT"]


def test_a_listing_that_does_not_fit_opens_a_new_connection(tmp_path):
    # 514 symbols: one halted, AAAUSDT excluded (so its delisting frees no room): 512 x 2 =
    # 1,024 spot streams, one full connection. The first listing cannot join it: the engine
    # opens a second connection for its streams, whose trades are recorded.
    sim, run, http, data = start(tmp_path, ["--symbols", "514", "--rate", "3000", "--list-every", "3"], """
[[sources]]
market = "spot"
symbols = ["*"]
exclude = ["AAAUSDT"]
streams = ["trade", "aggTrade"]
endpoint = "ws://127.0.0.1:{spot}"
refresh_secs = 1
""", extra="[connection]\nbook_sync = false")
    try:
        wait(lambda: series(http, "tickwire_listings_total").get('{market="spot",change="listed"}', 0) >= 1,
             60, "a listing")
        # Its connection delivers.
        time.sleep(2)
        truth = stop_sim(sim)
    finally:
        _, log = stop_run(run, sim)
    # 514 and the 16 waiting to be listed.
    assert "512 of 530 symbols of exchangeInfo selected" in log, log[-2000:]
    new = re.search(r"spot (\w+): newly TRADING", log).group(1)
    assert truth["spot"]["connections"]["accepted"] == 2, truth["spot"]["connections"]
    syms = last_trades(data, "spot")
    assert new in syms, (new, len(syms))
