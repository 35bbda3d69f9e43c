"""NATS JetStream on the real nats-server (127.0.0.1:4222, -js): collectors publish every record
into a stream, writers read it back into the stores; counts reconcile end to end."""

import asyncio
import json
import os
import signal
import struct
import subprocess
import time
import uuid
from collections import defaultdict

import pytest

from conftest import BIN

NATS = "nats://127.0.0.1:4222"
nats = pytest.importorskip("nats")

# Record sizes by kind code, for walking a message's records (README: ZMQ binary layout).
DEPTH_KINDS = {4, 5}


def records_of(payload):
    """(kind, per-subject seq, record bytes) of each record in a message payload."""
    out, i = [], 0
    while i < len(payload):
        ver, kind, market, _r, size, seq = struct.unpack_from("<BBBBIQ", payload, i)
        assert ver == 1, ver
        body = payload[i + 16:i + 16 + size]
        n = 0
        if kind in DEPTH_KINDS:
            # The depth records end with their LevelRange {start, bids, asks, pad: u32}.
            bids, asks = struct.unpack_from("<II", body, size - 12)
            n = bids + asks
        out.append((kind, seq, body))
        i += 16 + size + 32 * n
    assert i == len(payload), "payload ends inside a record"
    return out


def stream_messages(stream, filter_subject=None):
    """Every message of `stream`: [(subject, stream_seq, payload)]."""

    async def go():
        nc = await nats.connect(NATS)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        total = info.state.messages
        out = []
        sub = await js.pull_subscribe(filter_subject or ">", durable=None, stream=stream)
        while len(out) < total:
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except nats.errors.TimeoutError:
                break
            for m in msgs:
                out.append((m.subject, m.metadata.sequence.stream, m.data))
                await m.ack()
        await nc.close()
        return info, out

    return asyncio.run(go())


def delete_stream(stream):
    async def go():
        nc = await nats.connect(NATS)
        try:
            await nc.jetstream().delete_stream(stream)
        except Exception:
            pass
        await nc.close()

    asyncio.run(go())


def nats_up():
    try:
        asyncio.run(asyncio.wait_for(nats.connect(NATS), 2)).close
        return True
    except Exception:
        return False


def delete_streams_taking_tickwire():
    """Streams of earlier runs that take tickwire.> (two streams cannot share subjects)."""

    async def go():
        nc = await nats.connect(NATS)
        js = nc.jetstream()
        for info in await js.streams_info():
            if "tickwire.>" in (info.config.subjects or []):
                await js.delete_stream(info.config.name)
        await nc.close()

    asyncio.run(go())


@pytest.fixture
def stream():
    delete_streams_taking_tickwire()
    name = "T" + uuid.uuid4().hex[:10].upper()
    yield name
    delete_stream(name)


def check_complete(summary, msgs):
    """Every record the collector took is in the stream exactly once: per subject the record
    sequence numbers run 1..n without a hole or a repeat, and the totals match."""
    by_subject = {}
    for subject, _seq, payload in msgs:
        parts = subject.split(".")
        assert parts[0] == "tickwire" and len(parts) == 4, subject
        for kind, seq, _body in records_of(payload):
            by_subject.setdefault(subject, []).append(seq)
    total = 0
    for subject, seqs in by_subject.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"{subject}: hole or repeat"
        total += len(seqs)
    taken = sum(summary["records"].values())
    assert total == taken, (total, taken)
    assert summary["rows"]["nats"] == taken
    assert summary["nats"]["dropped"] == 0
    return by_subject


def test_demo_publishes_every_record_into_jetstream(tmp_path, stream):
    demo = subprocess.run(
        [BIN, "demo", "--duration", "3", "--out", str(tmp_path / "out"), "--rate", "20000",
         "--nats", NATS, "--nats-stream", stream, "--stats-secs", "0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout.strip().splitlines()[-1])
    info, msgs = stream_messages(stream)
    assert info.config.subjects == ["tickwire.>"]
    assert info.state.messages == summary["nats"]["messages"] == len(msgs)
    by_subject = check_complete(summary, msgs)
    # Subjects name kind, market and symbol: a writer can filter on any of them.
    assert "tickwire.trade.spot.BTCUSDT" in by_subject
    assert any(s.startswith("tickwire.depth_update.usdm.") for s in by_subject)
    # Micro-batches: fewer messages than records.
    assert len(msgs) < sum(summary["records"].values())
    assert summary["nats"]["duplicates"] == 0


def nats_pid():
    out = subprocess.run(["pgrep", "-x", "nats-server"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    return pids[0] if pids else None


def start_nats():
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                    "/usr/sbin/nats-server", "--", "-a", "127.0.0.1", "-p", "4222", "-js",
                    "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log"],
                   check=True)
    for _ in range(100):
        if nats_pid() and nats_up():
            return
        time.sleep(0.1)
    raise AssertionError("nats-server did not come back")


def test_collector_keeps_every_record_through_a_nats_restart(tmp_path, stream):
    demo = subprocess.Popen(
        [BIN, "demo", "--duration", "9", "--out", str(tmp_path / "out"), "--rate", "10000",
         "--nats", NATS, "--nats-stream", stream, "--stats-secs", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        time.sleep(2.5)
        pid = nats_pid()
        assert pid, "nats-server is not running"
        os.kill(pid, signal.SIGKILL)
        time.sleep(3)
    finally:
        start_nats()
    out, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    _info, msgs = stream_messages(stream)
    check_complete(summary, msgs)
    # The server was down for 3 s: publishes either failed and were sent again, or waited in
    # the client until it reconnected; either way a retried message is stored once.
    assert nats_pid() != pid


PG = os.environ.get("TICKWIRE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TABLES = {"trade": "trades", "agg_trade": "agg_trades", "book_ticker": "book_tickers",
          "depth_update": "depth_updates", "depth_snapshot": "depth_snapshots", "kline": "klines",
          "mark_price": "mark_prices", "liquidation": "liquidations", "ticker": "tickers",
          "gap": "gaps"}


def psql(sql):
    r = subprocess.run(["psql", PG, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def parquet_counts(out):
    import pyarrow.dataset as ds
    counts = {}
    for kind in TABLES:
        d = out / kind
        if d.exists():
            counts[kind] = ds.dataset(str(d), format="parquet", partitioning="hive").count_rows()
    return counts


CH = os.environ.get("TICKWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123")


def ch(sql):
    import urllib.request
    req = urllib.request.Request(CH, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode().strip()


def writer_config(tmp_path, schema):
    cfg = tmp_path / "writer.toml"
    cfg.write_text(f"""
[[sources]]
type = "nats"
url = "{NATS}"
stream = "TICKWIRE"
durable = "writer"

[pipeline]
max_rows = 4096
max_age_ms = 100

[zmq]
enabled = false

[[sinks]]
type = "parquet"
dir = "{tmp_path / 'pq'}"
max_file_age_secs = 1

[[sinks]]
type = "postgres"
url = "{PG}"
schema = "{schema}"
timescale = "off"
spill_dir = "{tmp_path / 'spill-pg'}"

[[sinks]]
type = "clickhouse"
url = "{CH}"
database = "{schema}"
spill_dir = "{tmp_path / 'spill-ch'}"
""")
    return cfg


def ack_floor(stream, durable):
    """The stream sequence a durable consumer has acknowledged up to (0: none yet)."""

    async def go():
        nc = await nats.connect(NATS)
        try:
            info = await nc.jetstream().consumer_info(stream, durable)
            return info.ack_floor.stream_seq if info.ack_floor else 0
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await nc.close()

    return asyncio.run(go())


def test_writer_stores_everything_once_through_kill9(tmp_path):
    """collector (demo) -> JetStream -> writer (run) -> Parquet, PostgreSQL and ClickHouse; the writer is
    killed with SIGKILL twice mid-run and started again: every record is in every store
    exactly once, and the counts reconcile with what the collector published."""
    delete_streams_taking_tickwire()
    schema = f"tw_nats_{os.getpid()}"
    psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    ch(f"DROP DATABASE IF EXISTS {schema}")
    demo = subprocess.run(
        [BIN, "demo", "--duration", "6", "--out", str(tmp_path / "demo"), "--rate", "30000",
         "--nats", NATS, "--stats-secs", "0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    published = json.loads(demo.stdout.strip().splitlines()[-1])
    sent = {k: v for k, v in published["records"].items() if v}
    assert published["rows"]["nats"] == sum(sent.values())
    cfg = writer_config(tmp_path, schema)
    cmd = [BIN, "run", "--config", str(cfg), "--exit-when-idle", "3"]
    total = published["nats"]["messages"]
    floor = 0
    for _ in range(2):
        # Killed once it has acknowledged more than before (sinks committed some batches),
        # with most of the stream still to go: at any moment but the end.
        w = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path)
        start, now = floor, floor
        deadline = time.time() + 60
        while now <= start and time.time() < deadline and w.poll() is None:
            time.sleep(0.02)
            now = ack_floor("TICKWIRE", "writer")
        assert w.poll() is None, "the writer finished before it could be killed"
        w.kill()
        w.wait()
        floor = ack_floor("TICKWIRE", "writer")
        assert start < floor < total, (start, floor, total)
    w = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert w.returncode == 0, w.stderr
    # The restarted run cut the batches the stores held in part again where they ended.
    assert "cut again where they ended" in w.stderr or "cut again" in w.stderr, w.stderr
    last = json.loads(w.stdout.strip().splitlines()[-1])
    assert last["nats_source"]["start"] > 1, "the killed runs acknowledged nothing"
    assert last["nats_source"]["acked"] == published["nats"]["messages"]
    # The backfill's progress, stderr not a terminal: its last line at 100% of what the stream
    # held from this run's start.
    left = published["nats"]["messages"] - last["nats_source"]["start"] + 1
    done = [l for l in w.stderr.splitlines() if ": backfill: " in l and l.endswith("(done)")]
    assert len(done) == 1 and f"{left:,} of {left:,} (100%)" in done[0], w.stderr
    pq = parquet_counts(tmp_path / "pq")
    for kind, n in sent.items():
        assert pq.get(kind) == n, (kind, pq.get(kind), n)
        assert int(psql(f"SELECT count(*) FROM {schema}.{TABLES[kind]}")) == n, kind
        assert int(ch(f"SELECT count() FROM {schema}.{TABLES[kind]}")) == n, kind
    # No row twice: every trade id once per symbol.
    dup = psql(f"SELECT count(*) FROM (SELECT market, symbol, trade_id FROM {schema}.trades "
               "GROUP BY 1, 2, 3 HAVING count(*) > 1) d")
    assert dup == "0"
    assert ch(f"SELECT count() FROM (SELECT market, symbol, trade_id FROM {schema}.trades "
              "GROUP BY market, symbol, trade_id HAVING count() > 1)") == "0"
    psql(f"DROP SCHEMA {schema} CASCADE")
    ch(f"DROP DATABASE {schema}")


def test_two_sharded_collectors_split_the_market(tmp_path):
    """Two `run` collectors with shard = "1/2" and "2/2" over one simulated market of 40
    symbols (symbols = ["*"] from its exchangeInfo) publish into one stream: each symbol's
    subjects come from one collector only, and together they cover every symbol."""
    from conftest import free_port, listening, wait
    delete_streams_taking_tickwire()
    spot, usdm = free_port(), free_port()
    sim = subprocess.Popen([BIN, "sim", "--spot", f"127.0.0.1:{spot}", "--usdm", f"127.0.0.1:{usdm}",
                            "--rate", "4000", "--symbols", "40"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait(lambda: listening(spot, usdm), 30, "the simulator to listen")
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{spot}/api/v3/exchangeInfo", timeout=5) as r:
        trading = {x["symbol"] for x in json.loads(r.read())["symbols"] if x["status"] == "TRADING"}
    runs = []
    try:
        for i in (1, 2):
            cfg = tmp_path / f"c{i}.toml"
            cfg.write_text(f"""
stats_secs = 0
[[sources]]
market = "spot"
symbols = ["*"]
streams = ["trade"]
endpoint = "ws://127.0.0.1:{spot}"
shard = "{i}/2"
[connection]
book_sync = false
[zmq]
enabled = false
[http]
bind = ""
[[sinks]]
type = "parquet"
dir = "{tmp_path / f'data{i}'}"
[[sinks]]
type = "nats"
url = "{NATS}"
id = "collector{i}"
spill_dir = "{tmp_path / f'spill{i}'}"
""")
            runs.append(subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
        time.sleep(6)
    finally:
        for r in runs:
            r.send_signal(signal.SIGTERM)
        outs = [r.communicate(timeout=60) for r in runs]
        sim.send_signal(signal.SIGTERM)
        sim_out, _ = sim.communicate(timeout=30)
    for r, (out, err) in zip(runs, outs):
        assert r.returncode == 0, err
    summaries = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]

    async def owners():
        nc = await nats.connect(NATS)
        js = nc.jetstream()
        sub = await js.pull_subscribe(">", durable=None, stream="TICKWIRE")
        seen = {}
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except nats.errors.TimeoutError:
                break
            for m in msgs:
                who = m.headers["Nats-Msg-Id"].split(".")[0]
                seen.setdefault(m.subject.split(".")[3], set()).add(who)
                await m.ack()
        await nc.close()
        return seen

    seen = asyncio.run(owners())
    assert all(len(w) == 1 for w in seen.values()), {s: w for s, w in seen.items() if len(w) > 1}
    truth = json.loads(sim_out.strip().splitlines()[-1])
    assert truth["spot"]["streams_refused"] == 0
    # Each collector took its shard of the TRADING symbols exchangeInfo lists, together all.
    import re
    selected = [int(re.search(r"(\d+) of 40 symbols of exchangeInfo selected", e).group(1))
                for _, e in outs]
    assert sum(selected) == len(trading) and all(selected), (selected, len(trading))
    # Every symbol that traded came from the collector of its shard (FNV-1a, as the engine).
    def shard_of(sym, n):
        h = 0xcbf29ce484222325
        for b in sym.upper().encode():
            h = ((h ^ b) * 0x100000001b3) % (1 << 64)
        return h % n
    for sym, who in seen.items():
        assert who == {f"collector{shard_of(sym, 2) + 1}"}, (sym, who)
    assert set(seen) <= trading and len(seen) >= len(trading) - 3, sorted(trading - set(seen))
    per = [sum(1 for w in seen.values() if f"collector{i}" in w) for i in (1, 2)]
    assert all(p > 0 for p in per), per
    for s in summaries:
        assert s["rows"]["nats"] == sum(s["records"].values())


def start_collector_and_witness(tmp_path, rate, nats_extra=""):
    """A `tickwire sim` at `rate`, a `run` collector's config (spot trades and aggregate trades
    of 3 symbols into JetStream, `nats_extra` added to its sink), and a witness engine already
    running on the same streams into Parquet (it keeps the simulator's market moving while the
    collector is down, as Binance's does). Returns (sim, collector command, witness)."""
    from conftest import free_port, listening, wait
    delete_streams_taking_tickwire()
    spot = free_port()
    sim = subprocess.Popen([BIN, "sim", "--spot", f"127.0.0.1:{spot}", "--usdm", f"127.0.0.1:{free_port()}",
                            "--rate", str(rate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait(lambda: listening(spot), 30, "the simulator to listen")
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f"""
stats_secs = 0
[[sources]]
market = "spot"
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
streams = ["trade", "aggTrade"]
endpoint = "ws://127.0.0.1:{spot}"
[connection]
book_sync = false
[zmq]
enabled = false
[http]
bind = ""
[[sinks]]
type = "nats"
url = "{NATS}"
id = "collector1"
spill_dir = "{tmp_path / 'spill'}"
{nats_extra}
""")
    witness_cfg = tmp_path / "witness.toml"
    witness_cfg.write_text(cfg.read_text().split("[[sinks]]")[0] + f"""
[[sinks]]
type = "parquet"
dir = "{tmp_path / 'witness'}"
""")
    witness = subprocess.Popen([BIN, "run", "--config", str(witness_cfg)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return sim, [BIN, "run", "--config", str(cfg)], witness


def stop_sim_and_witness(sim, witness):
    witness.send_signal(signal.SIGTERM)
    witness.communicate(timeout=60)
    sim.send_signal(signal.SIGTERM)
    sim.communicate(timeout=30)
    assert witness.returncode == 0


def stored_holes_are_the_gaps(tmp_path, durable):
    """A writer drains the stream into Parquet. For trades and aggregate trades of each symbol:
    no id twice, every hole in the ids is exactly a gap record's [expected, got) (all reason
    reconnect), and the witness has every id of every hole. Returns the holes a stream."""
    import pyarrow.dataset as ds
    wcfg = tmp_path / "writer.toml"
    wcfg.write_text(f"""
[[sources]]
type = "nats"
url = "{NATS}"
stream = "TICKWIRE"
durable = "{durable}"
[zmq]
enabled = false
[[sinks]]
type = "parquet"
dir = "{tmp_path / 'pq'}"
""")
    w = subprocess.run([BIN, "run", "--config", str(wcfg), "--exit-when-idle", "3"],
                       capture_output=True, text=True, timeout=300)
    assert w.returncode == 0, w.stderr
    pq = tmp_path / "pq"
    gaps = ds.dataset(pq / "gap", format="parquet", partitioning="hive").to_table().to_pylist()
    assert {g["reason"] for g in gaps} == {"reconnect"}, gaps

    def ids_of(root, kind, col):
        t = ds.dataset(root / kind, format="parquet", partitioning="hive").to_table(columns=["symbol", col])
        by = defaultdict(list)
        for sym, i in zip(t["symbol"].to_pylist(), t[col].to_pylist()):
            by[sym].append(i)
        return by

    out = {}
    for kind, col in (("trade", "trade_id"), ("agg_trade", "agg_trade_id")):
        by, seen = ids_of(pq, kind, col), ids_of(tmp_path / "witness", kind, col)
        assert sorted(by) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"], sorted(by)
        for sym, ids in by.items():
            ids.sort()
            assert len(ids) == len(set(ids)), (kind, sym, "an id twice")
            holes = [(a + 1, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
            mine = sorted((g["expected"], g["got"]) for g in gaps if g["symbol"] == sym and g["stream"] == kind)
            assert holes == mine and holes, (kind, sym, holes, mine)
            # They happened: the witness has every id of every hole.
            for a, b in holes:
                assert set(range(a, b)) <= set(seen[sym]), (kind, sym, a, b)
            out[(kind, sym)] = holes
    assert len(gaps) == sum(len(h) for h in out.values()), gaps
    return out


def test_a_collector_killed_and_restarted_shows_its_outage_as_gaps(tmp_path):
    """A `run` collector (against a separate `tickwire sim`, whose ids go on) is killed with
    SIGKILL and started again. At start it reads where each of its streams ended in JetStream,
    so the first trade and aggregate trade of each symbol after the restart meet the last stored
    one: what the outage (and the kill's unacknowledged publishes) missed is one `gap` record
    (reason reconnect) per stream, with the exact ids. A writer drains the stream into Parquet:
    every hole in the ids is exactly a gap record's [expected, got), and no id is there twice.
    A witness (a second engine on the same streams, into Parquet) keeps the market moving
    while the collector is down, as Binance's does, and shows that the holes' trades happened."""
    sim, cmd, witness = start_collector_and_witness(tmp_path, 4000)
    try:
        time.sleep(1)
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert first.poll() is None, first.communicate()[1]
        first.kill()
        first.wait()
        time.sleep(1.5)  # the outage
        again = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        again.send_signal(signal.SIGTERM)
        out, err = again.communicate(timeout=60)
    finally:
        stop_sim_and_witness(sim, witness)
    assert again.returncode == 0, err
    assert "where 6 streams ended" in err, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["records"]["gap"] == 6, (s["records"], err)
    holes = stored_holes_are_the_gaps(tmp_path, "gapcheck")
    assert all(len(h) == 1 for h in holes.values()), holes


def test_writer_stores_everything_once_through_a_nats_restart(tmp_path):
    """The writer reads the stream while nats-server is killed (SIGKILL) and started again: it
    waits, reconnects, resumes its durable consumer where the acknowledgements stood, and
    Parquet holds every record the collector published, once."""
    delete_streams_taking_tickwire()
    demo = subprocess.run(
        [BIN, "demo", "--duration", "6", "--out", str(tmp_path / "demo"), "--rate", "30000",
         "--nats", NATS, "--stats-secs", "0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    published = json.loads(demo.stdout.strip().splitlines()[-1])
    sent = {k: v for k, v in published["records"].items() if v}
    total = published["nats"]["messages"]
    cfg = tmp_path / "writer.toml"
    cfg.write_text(f"""
[[sources]]
type = "nats"
url = "{NATS}"
stream = "TICKWIRE"
durable = "restart"
[pipeline]
max_rows = 4096
max_age_ms = 100
[zmq]
enabled = false
[http]
bind = ""
[[sinks]]
type = "parquet"
dir = "{tmp_path / 'pq'}"
max_file_age_secs = 1
""")
    w = subprocess.Popen([BIN, "run", "--config", str(cfg), "--exit-when-idle", "10"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.time() + 60
        floor = 0
        while floor == 0 and time.time() < deadline and w.poll() is None:
            time.sleep(0.02)
            floor = ack_floor("TICKWIRE", "restart")
        assert w.poll() is None and 0 < floor < total, (floor, total)
        pid = nats_pid()
        os.kill(pid, signal.SIGKILL)
        time.sleep(2)
    finally:
        start_nats()
    out, err = w.communicate(timeout=300)
    assert w.returncode == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["nats_source"]["acked"] == total, last["nats_source"]
    pq = parquet_counts(tmp_path / "pq")
    for kind, n in sent.items():
        assert pq.get(kind) == n, (kind, pq.get(kind), n)
    import pyarrow.dataset as ds
    t = ds.dataset(str(tmp_path / "pq" / "trade"), format="parquet", partitioning="hive").to_table(
        columns=["market", "symbol", "trade_id"])
    keys = list(zip(t["market"].to_pylist(), t["symbol"].to_pylist(), t["trade_id"].to_pylist()))
    assert len(keys) == len(set(keys)), "a trade twice"


def test_a_collector_killed_while_nats_is_down_keeps_its_spill_and_reports_each_hole(tmp_path):
    """nats-server goes down (SIGKILL) under a `run` collector with a 1 MiB memory budget:
    what does not fit is spilled to disk, in order. The collector is killed (SIGKILL) while the
    server is still down, the server comes back, the collector starts again: it sends the
    killed run's spill first, and reports each hole where it is. The records the killed run
    held in memory (never acknowledged) are a hole before the spilled ones, the time it was
    down a hole after them; each is a `gap` record (reason reconnect) with the exact ids, none
    spans ids the spill delivered. A writer drains the stream into Parquet: the holes in the
    ids are exactly the gaps' [expected, got), no id is there twice, and a witness engine on
    the same streams has every id of every hole."""
    from conftest import wait
    spill = tmp_path / "spill"
    sim, cmd, witness = start_collector_and_witness(tmp_path, 20000, "memory_budget_mb = 1")
    try:
        time.sleep(1)
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        assert first.poll() is None, first.communicate()[1]
        pid = nats_pid()
        assert pid, "nats-server is not running"
        os.kill(pid, signal.SIGKILL)
        try:
            wait(lambda: sum(p.stat().st_size for p in spill.glob("nats-*.spill")) > 256 << 10, 30,
                 "the collector to spill beyond its memory budget")
            time.sleep(0.5)
            first.kill()
            first.wait()
        finally:
            start_nats()
        spilled = sum(p.stat().st_size for p in spill.glob("nats-*.spill"))
        again = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        again.send_signal(signal.SIGTERM)
        out, err = again.communicate(timeout=60)
    finally:
        stop_sim_and_witness(sim, witness)
    assert again.returncode == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["nats"]["left_spilled"] == 0 and s["nats"]["dropped"] == 0, s["nats"]
    assert not list(spill.glob("nats-*.spill")), "the spill was sent and removed"
    holes = stored_holes_are_the_gaps(tmp_path, "spillcheck")
    # The spill held a part of each run's outage: the memory lost at the kill is a hole of its
    # own before it, for the streams that had records in memory then.
    assert sum(len(h) for h in holes.values()) > 6, (holes, spilled)
    assert "an earlier run's spill" in err, err
