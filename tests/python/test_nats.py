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
    assert summary["nats"]["errors"] > 0, "the outage was not seen"
    _info, msgs = stream_messages(stream)
    check_complete(summary, msgs)
