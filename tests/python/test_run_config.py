"""`tickwire run --config`: a config file in demo mode (in-process simulator), /health and
/metrics read while it runs, environment overrides, refusal of unknown keys by name, `--check`
reaching every sink, and one-line errors that name their input."""

import json
import subprocess
import time
import urllib.error
import urllib.request

from conftest import BIN, free_port, wait


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    return {l.split(" ")[0]: float(l.split(" ")[1]) for l in text.splitlines() if l.startswith(name)}


def test_run_serves_health_and_metrics_and_reconciles(tmp_path):
    http, zmq = free_port(), free_port()
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
duration_secs = 4
stats_secs = 1
[simulator]
enabled = true
rate = 20000
[zmq]
bind = "tcp://127.0.0.1:{zmq}"
[[sinks]]
type = "parquet"
dir = "{tmp_path / 'data'}"
[http]
bind = "127.0.0.1:9"
""")
    # The environment overrides the file's (unusable) HTTP port.
    env = {"TICKWIRE_HTTP__BIND": f"127.0.0.1:{http}", "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen([BIN, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    wait(lambda: get(f"http://127.0.0.1:{http}/health")[0] == 200, 20, "/health to answer")
    status, body = get(f"http://127.0.0.1:{http}/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    trades = lambda m: metric(m, "tickwire_records_total")['tickwire_records_total{kind="trade"}']
    wait(lambda: trades(get(f"http://127.0.0.1:{http}/metrics")[1]) > 0, 20, "the first trades")
    _, m1 = get(f"http://127.0.0.1:{http}/metrics")
    time.sleep(1.0)
    _, m2 = get(f"http://127.0.0.1:{http}/metrics")
    assert trades(m2) > trades(m1) > 0
    assert "# TYPE tickwire_recv_to_publish_seconds histogram" in m2
    assert metric(m2, "tickwire_dropped_total") == {f'tickwire_dropped_total{{where="{w}"}}': 0.0 for w in ("queue", "zmq", "sink_queue")}
    assert get(f"http://127.0.0.1:{http}/nope")[0] == 404
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    s = json.loads(out.decode().strip().splitlines()[-1])
    total = sum(s["sent"].values())
    assert total > 0 and s["records"] == s["sent"] and s["rows"]["parquet"] == total and s["dropped"] == 0
    assert "rec/s" in err.decode()


def test_unknown_keys_are_refused_by_name(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[simulator]\nenabled = true\n[zmq]\nbindd = 'x'\n")
    r = subprocess.run([BIN, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "bindd" in r.stderr
    r = subprocess.run([BIN, "run", "--config", str(cfg), "--check"], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "bindd" in r.stderr
    # An environment override that is wrong is named with its value.
    good = tmp_path / "good.toml"
    good.write_text("[simulator]\nenabled = true\n")
    r = subprocess.run([BIN, "run", "--config", str(good), "--check"], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "TICKWIRE_PIPELINE__MAX_ROWZ": "5"})
    assert r.returncode == 2 and "environment TICKWIRE_PIPELINE__MAX_ROWZ=5: " in r.stderr, r.stderr


def test_check_tries_to_reach_every_sink(tmp_path):
    dead = free_port()  # nothing listens there
    cfg = tmp_path / "tw.toml"
    cfg.write_text(f"""
[simulator]
enabled = true
[[sinks]]
type = "parquet"
dir = "{tmp_path / 'data'}"
[[sinks]]
type = "clickhouse"
url = "http://127.0.0.1:{dead}"
[[sinks]]
type = "postgres"
url = "postgres://postgres@127.0.0.1:5432/postgres"
""")
    r = subprocess.run([BIN, "run", "--config", str(cfg), "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert [l for l in r.stdout.splitlines() if l.startswith("sinks[0]")][0].endswith("will be created in " + str(tmp_path))
    ch = [l for l in r.stdout.splitlines() if l.startswith("sinks[1]")][0]
    assert "cannot be reached" in ch and ch.count("Connection refused") == 1, ch
    pg = [l for l in r.stdout.splitlines() if l.startswith("sinks[2]")][0]
    assert ": ok, PostgreSQL " in pg, pg
    assert "1 sink(s) or exchange(s) cannot be reached" in r.stderr
    assert not (tmp_path / "data").exists(), "--check changes nothing"


def test_errors_say_each_cause_once_and_name_the_input(tmp_path):
    dead = free_port()
    r = subprocess.run([BIN, "demo", "--duration", "1", "--out", str(tmp_path / "d"), "--clickhouse",
                        f"http://127.0.0.1:{dead}", "--stats-secs", "0"], capture_output=True, text=True, timeout=60)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and f"127.0.0.1:{dead}" in last and last.count("Connection refused") == 1, last
    assert last.count("client error (Connect)") == 1, last
    r = subprocess.run([BIN, "decode", "--market", "spot", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and str(tmp_path) in r.stderr, r.stderr
    r = subprocess.run([BIN, "demo", "--duration", "1", "--out", str(tmp_path / "d"), "--http", "notanaddr",
                        "--stats-secs", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "notanaddr" in r.stderr, r.stderr
