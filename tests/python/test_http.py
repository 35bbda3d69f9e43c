"""The HTTP server as its users meet it: keep-alive, HEAD, JSON errors, limits, bearer-token
auth, the refusal of a non-loopback bind without a token (HTTP) or without an explicit choice
(ZMQ), a token that never reaches a log line, and a graceful stop."""

import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, free_port, listening, wait

TOKEN = "tw-test-3f9c2a71d0e84b56"


def demo(tmp, http, *extra, env=None, duration=None):
    args = [BIN, "demo", "--out", str(tmp / "out"), "--zmq", f"tcp://127.0.0.1:{free_port()}",
            "--rate", "2000", "--stats-secs", "1", "--http", http, *extra]
    if duration:
        args += ["--duration", str(duration)]
    out, err = open(tmp / "stdout", "w+"), open(tmp / "stderr", "w+")
    p = subprocess.Popen(args, stdout=out, stderr=err, env={**os.environ, **(env or {})})
    return p, out, err


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    port = free_port()
    p, out, err = demo(tmp, f"127.0.0.1:{port}", env={"TICKWIRE_HTTP_TOKEN": TOKEN})
    wait(lambda: listening(port), 30, "the HTTP server")
    yield port, p, tmp
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)


def get(port, path, method="GET", headers=None, token=TOKEN):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    c.request(method, path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def test_two_requests_share_one_connection(server):
    port, _, _ = server
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    c.request("GET", "/health", headers=auth)
    r1 = c.getresponse()
    assert r1.status == 200 and json.loads(r1.read())["status"] == "ok"
    assert (r1.getheader("Connection") or "").lower() != "close"
    sock = c.sock
    assert sock is not None
    c.request("GET", "/metrics", headers=auth)
    r2 = c.getresponse()
    body = r2.read().decode()
    # http.client opens a new socket when the server closed the old one: the same object
    # means the second request went over the first connection.
    assert c.sock is sock
    assert r2.status == 200 and "tickwire_frames_total" in body
    c.close()


def test_head_has_the_get_headers_and_no_body(server):
    port, _, _ = server
    r, body = get(port, "/v1/openapi.json", method="HEAD")
    assert r.status == 200 and body == b""
    g, gbody = get(port, "/v1/openapi.json")
    assert int(r.getheader("Content-Length")) == len(gbody) > 1000
    assert r.getheader("Content-Type") == g.getheader("Content-Type") == "application/json"


@pytest.mark.parametrize("method,path,headers,code", [
    ("GET", "/nope", {}, 404),
    ("POST", "/metrics", {}, 405),
    ("DELETE", "/v1/trade", {}, 405),
    ("GET", "/v1/trade?limit=0", {}, 400),
    ("GET", "/v1/no_such_kind", {}, 404),
    ("GET", "/v1/trade", {"Content-Length": str(10 << 20)}, 413),
])
def test_errors_are_json_with_their_code(server, method, path, headers, code):
    port, _, _ = server
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall((head + "\r\n").encode())
    r = http.client.HTTPResponse(s, method=method)
    r.begin()
    assert r.status == code
    assert r.getheader("Content-Type") == "application/json"
    err = json.loads(r.read())
    assert set(err) == {"error"} and err["error"]
    if code == 405:
        assert r.getheader("Allow") == "GET, HEAD"
    s.close()


def test_an_oversized_head_is_refused(server):
    port, _, _ = server
    r, _ = get(port, "/health", headers={"X-Big": "a" * 40_000})
    assert r.status == 431


def test_the_token_is_required_except_for_health_and_the_page(server):
    port, _, _ = server
    r, body = get(port, "/metrics", token=None)
    assert r.status == 401 and r.getheader("WWW-Authenticate") == "Bearer"
    assert "Bearer" in json.loads(body)["error"]
    r, _ = get(port, "/v1/trade?limit=1", token="wrong" + TOKEN)
    assert r.status == 401
    r, _ = get(port, "/v1/trade?limit=1", token=TOKEN[:-1])
    assert r.status == 401
    assert get(port, "/health", token=None)[0].status == 200
    r, page = get(port, "/", token=None)
    assert r.status == 200 and b"<canvas" in page
    r, body = get(port, "/metrics")
    assert r.status == 200
    counted = [l for l in body.decode().splitlines()
               if l.startswith('tickwire_http_responses_total{code="401"}')]
    assert counted and float(counted[0].split()[-1]) >= 3


def test_the_token_never_reaches_a_log_line(server):
    port, p, tmp = server
    # A few stats lines first: there is something logged to look through.
    wait(lambda: (tmp / "stderr").read_text().count("\n") >= 2, 30, "stats lines")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0
    text = (tmp / "stdout").read_text() + (tmp / "stderr").read_text()
    assert TOKEN not in text
    # Nor does --help show the environment's value.
    h = subprocess.run([BIN, "demo", "--help"], capture_output=True, text=True,
                       env={**os.environ, "TICKWIRE_HTTP_TOKEN": TOKEN})
    assert h.returncode == 0 and "TICKWIRE_HTTP_TOKEN" in h.stdout and TOKEN not in h.stdout


def test_a_public_http_bind_needs_a_token(tmp_path):
    port = free_port()
    p, _, _ = demo(tmp_path, f"0.0.0.0:{port}", duration=30)
    assert p.wait(timeout=30) != 0
    err = (tmp_path / "stderr").read_text()
    assert "not a loopback address" in err and "token" in err
    assert "panicked" not in err
    p, _, _ = demo(tmp_path, f"0.0.0.0:{port}", "--http-token", TOKEN, duration=30)
    try:
        wait(lambda: listening(port), 30, "the HTTP server on 0.0.0.0")
        assert get(port, "/metrics")[0].status == 200
        assert get(port, "/metrics", token=None)[0].status == 401
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 0
    assert TOKEN not in (tmp_path / "stderr").read_text() + (tmp_path / "stdout").read_text()


def test_a_public_zmq_bind_is_an_explicit_choice(tmp_path):
    zport = free_port()
    r = subprocess.run([BIN, "demo", "--out", str(tmp_path / "o"), "--duration", "1",
                        "--zmq", f"tcp://*:{zport}"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "reaches other machines" in r.stderr and "public" in r.stderr
    r = subprocess.run([BIN, "demo", "--out", str(tmp_path / "o"), "--duration", "1",
                        "--zmq", f"tcp://*:{zport}", "--zmq-public", "--stats-secs", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # The config says the same: [http] bind on every interface without a token is refused.
    cfg = tmp_path / "public.toml"
    cfg.write_text(f'duration_secs = 1\n[simulator]\nenabled = true\n[http]\nbind = "0.0.0.0:{free_port()}"\n'
                   f'[zmq]\nbind = "tcp://127.0.0.1:{free_port()}"\n'
                   f'[[sinks]]\ntype = "parquet"\ndir = "{tmp_path / "p"}"\n')
    r = subprocess.run([BIN, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not a loopback address" in r.stderr
    r = subprocess.run([BIN, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TICKWIRE_HTTP__TOKEN": TOKEN})
    assert r.returncode == 0, r.stderr
    assert TOKEN not in r.stderr + r.stdout


def test_a_stop_does_not_wait_for_idle_connections(tmp_path):
    port = free_port()
    p, _, _ = demo(tmp_path, f"127.0.0.1:{port}")
    wait(lambda: listening(port), 30, "the HTTP server")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/health")
    assert c.getresponse().read()
    # The connection stays open (keep-alive) while the engine stops.
    t = time.time()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0
    assert time.time() - t < 15
    assert json.loads((tmp_path / "stdout").read_text().strip().splitlines()[-1])["records"]["trade"] > 0
    c.close()
