"""A subscriber that joins a running demo: the first message of each topic is its baseline, so
it reports no gaps where nothing was dropped (`tickwire subscribe` and
examples/zmq_subscriber.py's SeqCheck, both over real ZMQ SUB sockets)."""

import json
import subprocess
import sys

from conftest import BIN, ROOT, PySub, free_port, wait

sys.path.insert(0, str(ROOT / "examples"))
import zmq_subscriber  # noqa: E402


def test_a_late_subscriber_sees_no_gap_where_nothing_was_dropped(tmp_path):
    addr = f"tcp://127.0.0.1:{free_port()}"
    early = PySub(addr)
    early.start()
    demo = subprocess.Popen([BIN, "demo", "--duration", "8", "--out", str(tmp_path / "data"), "--zmq", addr,
                             "--rate", "2000", "--wait-subscribers", "1", "--stats-secs", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Join once the engine has published a good part of every topic's first numbers.
        wait(lambda: len(early.msgs) >= 3000, 30, "the early subscriber's first 3000 messages")
        late_py = PySub(addr)
        late_py.start()
        late_tw = subprocess.Popen([BIN, "subscribe", "--connect", addr, "--idle-ms", "3000", "--quiet"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, err.decode()
    s = json.loads(out.decode().strip().splitlines()[-1])
    assert s["zmq_dropped"] == 0 and s["dropped"] == 0, s
    _, tw_err = late_tw.communicate(timeout=30)
    lines = tw_err.decode().strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["messages"] > 0 and summary["joined"] > 0, summary
    assert summary["gaps"] == 0, lines[:5]
    late_py.join(timeout=30)
    check = zmq_subscriber.SeqCheck()
    gaps = [g for topic, payload in late_py.msgs if (g := check.check(topic, zmq_subscriber.decode(topic, payload)["seq"]))]
    assert late_py.msgs and check.joined > 0 and gaps == [], gaps[:5]
    # The early subscriber saw every topic from 1.
    first = zmq_subscriber.SeqCheck()
    for topic, payload in early.msgs:
        assert first.check(topic, zmq_subscriber.decode(topic, payload)["seq"]) is None
    assert first.joined == 0
