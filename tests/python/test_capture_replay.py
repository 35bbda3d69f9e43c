"""Raw capture and exact replay, over real sockets: `tickwire demo --capture` keeps every frame,
snapshot answer and connection event while it writes Parquet A; `tickwire replay` of that
capture writes Parquet B. With every simulator fault on (skipped ids, malformed and oversized
frames, forced reconnects, pings) and books synced from REST snapshots, every kind's table in B
equals A row for row, every column, `recv_time` included: gaps, reconnect gaps and the
depth_snapshot records of the books too. A capture cut by kill -9 replays up to the cut, the
torn tail counted, no error."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.dataset as ds

from conftest import BIN, free_port

PG = os.environ.get("TICKWIRE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(sql):
    r = subprocess.run(["psql", PG, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def table(out, kind):
    path = out / kind
    if not path.exists():
        return []
    rows = ds.dataset(path, format="parquet", partitioning="hive").to_table().to_pylist()
    # Every column, as a sortable key (lists of levels as tuples).
    key = lambda r: tuple((k, json.dumps(v, sort_keys=True, default=str)) for k, v in sorted(r.items()))
    return sorted((key(r) for r in rows))


def summary(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_a_replay_on_a_terminal_draws_a_progress_bar(tmp_path):
    import pty
    cap = tmp_path / "capture"
    r = subprocess.run([BIN, "demo", "--duration", "1", "--out", str(tmp_path / "live"), "--capture", str(cap),
                        "--zmq", f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN, "replay", "--capture", str(cap), "--out", str(tmp_path / "again")],
                         stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    drawn = []

    def read():  # until the replay's end closes the terminal (EIO)
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out = p.communicate(timeout=120)[0]
    reader.join(10)
    os.close(master)
    text = b"".join(drawn).decode(errors="replace")
    assert p.returncode == 0, text
    assert "replay [" in text and "#" in text and "files " in text, text
    assert "(done)" not in text, "a terminal gets the bar, not the plain lines"
    assert summary(out)["replay"]["files"] > 0


def test_a_replayed_capture_equals_the_live_run_row_for_row(tmp_path):
    live, cap, again = tmp_path / "live", tmp_path / "capture", tmp_path / "replayed"
    r = subprocess.run([BIN, "demo", "--duration", "4", "--out", str(live), "--capture", str(cap),
                        "--zmq", f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0", "--rate", "20000",
                        "--faults", "--book-snapshot-ms", "250"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    a = summary(r.stdout)
    assert a["capture"]["dropped"] == 0 and a["capture"]["errors"] == 0, a["capture"]
    assert a["capture"]["entries"] > a["frames"] > 0, (a["capture"], a["frames"])
    r = subprocess.run([BIN, "replay", "--capture", str(cap), "--out", str(again)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    b = summary(r.stdout)
    assert b["replay"]["torn"] == 0 and b["replay"]["holes"] == 0 and b["replay"]["malformed"] == 0, b["replay"]
    assert b["records"] == a["records"], (a["records"], b["records"])
    # Progress, stderr not being a terminal: plain log lines, the last one at 100%.
    files = [f for f in cap.rglob("*") if f.is_file()]
    assert b["replay"]["files"] == len(files) and b["replay"]["bytes"] == sum(f.stat().st_size for f in files)
    done = [l for l in r.stderr.splitlines() if " INFO " in l and ": replay: " in l and l.endswith("(done)")]
    n = len(files)
    assert len(done) == 1 and "(100%)" in done[0] and f"files {n}/{n}" in done[0], r.stderr
    assert "\r" not in r.stderr and "#" not in r.stderr, "no bar drawn into a pipe"
    # The faults happened, and so did everything that depends on them.
    assert a["records"]["gap"] > 0 and a["records"]["depth_snapshot"] > 0 and a["reconnects"] > 0, a
    assert b["gaps"] == a["gaps"] and b["decode_errors"] == a["decode_errors"], (a["gaps"], b["gaps"])
    for kind in a["records"]:
        assert table(again, kind) == table(live, kind), kind
    # Backfill: the same replay into the same dataset again finds every batch there (the ids in
    # the Parquet footers) and writes nothing twice.
    r = subprocess.run([BIN, "replay", "--capture", str(cap), "--out", str(again)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    b2 = summary(r.stdout)
    assert b2["found_stored"]["parquet"] == b2["batches"] > 0, b2
    for kind in a["records"]:
        assert table(again, kind) == table(live, kind), kind
    # Into the sinks a run config names: here PostgreSQL, every kind's table as many rows.
    schema = f"tw_replay_{os.getpid()}"
    psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
[simulator]
enabled = true
[[sinks]]
type = "postgres"
url = "{PG}"
schema = "{schema}"
timescale = "off"
spill_dir = "{tmp_path / 'spill'}"
""")
    # Backfill, killed: a replay killed (kill -9) once the store has some of its batches, then
    # run again to the end, and once more: every row once.
    p = subprocess.Popen([BIN, "replay", "--capture", str(cap), "--config", str(cfg)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        if psql(f"SELECT to_regclass('{schema}.tickwire_batches') IS NOT NULL").strip() == "t" and \
                int(psql(f"SELECT count(*) FROM {schema}.tickwire_batches")) > 0:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    killed_at = int(psql(f"SELECT count(*) FROM {schema}.trades"))
    for attempt in (1, 2):
        r = subprocess.run([BIN, "replay", "--capture", str(cap), "--config", str(cfg)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        c = summary(r.stdout)
        assert c["records"] == a["records"] and c["rows"]["postgres"] == sum(a["records"].values()), c
        for kind, table_name in (("trade", "trades"), ("gap", "gaps"), ("depth_snapshot", "depth_snapshots")):
            assert int(psql(f"SELECT count(*) FROM {schema}.{table_name}")) == a["records"][kind], \
                (attempt, kind, killed_at)
        if attempt == 2:
            assert c["found_stored"]["postgres"] == c["batches"] > 0, c
    psql(f"DROP SCHEMA {schema} CASCADE")


def test_a_capture_with_rotations_replays_the_hand_overs_exactly(tmp_path):
    """Rotations: which connection delivered a record, and which repeat the filter dropped,
    depends on when each connection read what. The capture keeps those verdicts, so the replay
    of both connections' files drops the same duplicates and holds and releases the same
    records: B equals A row for row, and the duplicates count is the same."""
    live, cap, again = tmp_path / "live", tmp_path / "capture", tmp_path / "replayed"
    r = subprocess.run([BIN, "demo", "--duration", "5", "--out", str(live), "--capture", str(cap),
                        "--zmq", f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0", "--rate", "20000",
                        "--rotate-after-secs", "1", "--book-snapshot-ms", "250"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    a = summary(r.stdout)
    assert a["rotations"] >= 6 and a["duplicates"] > 0 and a["handover_timeouts"] == 0, a
    assert a["capture"]["dropped"] == 0, a["capture"]
    r = subprocess.run([BIN, "replay", "--capture", str(cap), "--out", str(again)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    b = summary(r.stdout)
    assert b["replay"]["malformed"] == 0 and b["replay"]["torn"] == 0, b["replay"]
    assert b["duplicates"] == a["duplicates"], (a["duplicates"], b["duplicates"])
    assert b["records"] == a["records"], (a["records"], b["records"])
    for kind in a["records"]:
        assert table(again, kind) == table(live, kind), kind


def test_a_capture_cut_by_kill_9_replays_up_to_the_cut(tmp_path):
    cap, again = tmp_path / "capture", tmp_path / "replayed"
    p = subprocess.Popen([BIN, "demo", "--duration", "30", "--out", str(tmp_path / "live"), "--capture", str(cap),
                          "--zmq", f"tcp://127.0.0.1:{free_port()}", "--stats-secs", "0", "--rate", "20000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    files = sorted(Path(d) / f for d, _, fs in os.walk(cap) for f in fs)
    assert files, "capture files exist"
    # Every flush (200 ms) ends a zstd frame, so the kill left whole frames, unless it came in
    # the middle of a write. A write cut in the middle, for sure: the biggest file loses its
    # last 100 bytes.
    cut = max(files, key=lambda f: f.stat().st_size)
    with open(cut, "r+b") as f:
        f.truncate(cut.stat().st_size - 100)
    r = subprocess.run([BIN, "replay", "--capture", str(cap), "--out", str(again)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    b = summary(r.stdout)
    # Read up to the cut, counted: no error.
    assert 1 <= b["replay"]["torn"] <= len(files), (b["replay"], files)
    assert b["replay"]["frames"] > 10_000 and b["records"]["trade"] > 0, b
    assert any("torn tail" in l and cut.name in l for l in r.stderr.splitlines()), r.stderr


def test_a_run_against_a_simulator_replays_its_rest_records_too(tmp_path):
    """`tickwire run` with `[capture]` against `tickwire sim` (whole market, books, pollers):
    the replay has every kind's rows, the instrument and polled-series records among them."""
    from conftest import listening, wait
    spot, usdm = free_port(), free_port()
    sim = subprocess.Popen([BIN, "sim", "--spot", f"127.0.0.1:{spot}", "--usdm", f"127.0.0.1:{usdm}",
                            "--symbols", "6", "--rate", "2000", "--data-requests-per-5min", "100000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait(lambda: listening(spot, usdm), 30, "the simulator to listen")
    live, cap, again = tmp_path / "live", tmp_path / "capture", tmp_path / "replayed"
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
stats_secs = 0
duration_secs = 5
[zmq]
enabled = false
[rest]
data_requests_per_5min = 100000
[capture]
dir = "{cap}"
[[sources]]
market = "usdm"
symbols = ["*"]
streams = ["aggTrade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{usdm}"
depth_limit = 50
[[sources]]
market = "spot"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["trade", "depth@100ms"]
endpoint = "ws://127.0.0.1:{spot}"
[connection]
book_snapshot_ms = 300
[[pollers]]
series = ["openInterest", "openInterestHist", "globalLongShortAccountRatio"]
every_secs = 1
history = 10
[[sinks]]
type = "parquet"
dir = "{live}"
""")
    try:
        r = subprocess.run([BIN, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    finally:
        sim.kill()
    assert r.returncode == 0, r.stderr
    a = summary(r.stdout)
    assert a["capture"]["dropped"] == 0, a["capture"]
    assert a["records"]["instrument"] == 6 + 2 and a["records"]["long_short_ratio"] >= 60, a["records"]
    r = subprocess.run([BIN, "replay", "--capture", str(cap), "--out", str(again)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    b = summary(r.stdout)
    assert b["records"] == a["records"], (a["records"], b["records"])
    for kind in a["records"]:
        assert table(again, kind) == table(live, kind), kind
