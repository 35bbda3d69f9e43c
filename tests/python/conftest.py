"""Shared fixtures: one `tickwire demo` run on real sockets, used by every Python test."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import zmq

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("TICKWIRE_BIN") or str(ROOT / "target" / "debug" / "tickwire")


_GIVEN = set()


def free_port():
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port the
    kernel hands out itself (the demo's simulator binds port 0) can then never be one a test
    chose for something else. Never the same port twice in one test run."""
    import random
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    while True:
        port = random.randrange(10_000, low)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port


class PySub(threading.Thread):
    """A pyzmq SUB collecting every message until the publisher has been quiet for a while."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 5_000_000)
        self.sock.setsockopt(zmq.RCVTIMEO, 4000)
        self.sock.connect(addr)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.msgs = []

    def run(self):
        while True:
            try:
                self.msgs.append(self.sock.recv_multipart())
            except zmq.Again:
                if self.msgs:
                    return


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    assert Path(BIN).exists(), f"build tickwire first: {BIN}"
    out = tmp_path_factory.mktemp("demo")
    addr = f"tcp://127.0.0.1:{free_port()}"
    pysub = PySub(addr)
    pysub.start()
    tw_sub = subprocess.Popen([BIN, "subscribe", "--connect", addr, "--idle-ms", "4000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    demo = subprocess.run(
        [BIN, "demo", "--duration", "4", "--out", str(out), "--zmq", addr, "--rate", "30000",
         "--wait-subscribers", "2", "--stats-secs", "1"],
        capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout.strip().splitlines()[-1])
    pysub.join(timeout=30)
    sub_out, sub_err = tw_sub.communicate(timeout=30)
    return {"summary": summary, "out": out, "pysub": pysub.msgs, "stats": demo.stderr,
            "sub_lines": sub_out.decode().splitlines(), "sub_summary": json.loads(sub_err.decode().strip().splitlines()[-1])}




def metrics(http):
    """The engine's /metrics text (HTTP port `http` on loopback)."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=2) as r:
        return r.read().decode()


def series(http, name):
    """{labels: value} of a metric ("" for one without labels)."""
    out = {}
    for l in metrics(http).splitlines():
        if l.startswith(name + "{") or l.startswith(name + " "):
            key, _, v = l.rpartition(" ")
            out[key[len(name):]] = float(v)
    return out


def listening(*ports):
    """True once something accepts TCP connections on every one of the loopback `ports`."""
    import socket
    for p in ports:
        with socket.create_connection(("127.0.0.1", p), timeout=1):
            pass
    return True


@contextlib.contextmanager
def http_demo(tmp, env=None):
    """A `tickwire demo` at 4,000 msg/s with its HTTP API on a free loopback port (extra
    environment `env`), stopped by SIGINT at the end (not by its own clock: the tests that share
    it may take longer than the demo's default 10 s on a loaded machine); yields the port once
    it listens."""
    port = free_port()
    p = subprocess.Popen([BIN, "demo", "--duration", "3600", "--out", str(tmp / "out"),
                          "--zmq", f"tcp://127.0.0.1:{free_port()}",
                          "--rate", "4000", "--stats-secs", "0", "--http", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        wait(lambda: listening(port), 30, "the HTTP server")
        yield port
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)


def wait(cond, secs, what):
    """Polls `cond` until it is true (an OSError counts as not yet), for at most `secs`."""
    import time
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
