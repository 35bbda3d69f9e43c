"""Log lines: text and JSON formats, the TICKWIRE_LOG / RUST_LOG filter, and secrets never
written. The stats line and the JSON summary are the command's output, not log lines."""

import json
import os
import re
import subprocess

import pytest

from conftest import BIN, free_port

SECRET = "s3cret-pw-9f2c"
TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z +(TRACE|DEBUG|INFO|WARN|ERROR) [a-z0-9_:]+: \S.*$")


def demo(tmp, *extra, env=None, fmt=None):
    """A 2 s demo whose Redis L1 is down (a WARN line) and whose PostgreSQL sink is up (INFO)."""
    args = [BIN] + (["--log-format", fmt] if fmt else []) + [
        "demo", "--duration", "2", "--out", str(tmp / "out"), "--stats-secs", "1",
        "--zmq", f"tcp://127.0.0.1:{free_port()}",
        "--redis", f"redis://:{SECRET}@127.0.0.1:{free_port()}/",
        "--postgres", f"postgres://postgres:{SECRET}@127.0.0.1:5432/postgres", *extra]
    clean = {k: v for k, v in os.environ.items() if k not in ("TICKWIRE_LOG", "RUST_LOG")}
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stderr + r.stdout, "a password was written"
    json.loads(r.stdout.strip().splitlines()[-1])  # the summary is still the last stdout line
    stats = [l for l in r.stderr.splitlines() if l.startswith("[") and "rec/s" in l]
    logs = [l for l in r.stderr.splitlines() if l not in stats]
    assert len(stats) >= 1, r.stderr
    return logs


def test_text_lines_have_time_level_target_and_message(tmp_path):
    logs = demo(tmp_path)
    assert logs, "some log lines"
    bad = [l for l in logs if not TEXT.match(l)]
    assert not bad, bad
    redis = [l for l in logs if " WARN tickwire_engine::serve::l1: redis redis://:***@" in l]
    assert len(redis) == 1 and "ingest goes on" in redis[0], logs
    assert any(" INFO tickwire_sinks::postgres::sink: " in l for l in logs), logs
    assert not any("\x1b[" in l for l in logs), "no colours when stderr is not a terminal"


def test_json_lines_are_one_object_each(tmp_path):
    logs = demo(tmp_path, fmt="json")
    objs = [json.loads(l) for l in logs]
    assert objs and all(set(o) == {"timestamp", "level", "target", "message"} for o in objs), objs
    assert all(re.match(r"^\d{4}-\d\d-\d\dT.*Z$", o["timestamp"]) for o in objs), objs
    warn = [o for o in objs if o["level"] == "WARN" and o["target"] == "tickwire_engine::serve::l1"]
    assert len(warn) == 1 and warn[0]["message"].startswith("redis redis://:***@"), objs


@pytest.mark.parametrize("var", ["TICKWIRE_LOG", "RUST_LOG"])
def test_the_filter_keeps_only_what_it_names(tmp_path, var):
    logs = demo(tmp_path, env={var: "error"})
    assert logs == [], logs
    logs = demo(tmp_path, env={var: "error,tickwire_engine::serve::l1=warn"})
    assert len(logs) == 1 and "tickwire_engine::serve::l1" in logs[0], logs


def test_tickwire_log_wins_over_rust_log_and_a_bad_filter_is_refused(tmp_path):
    logs = demo(tmp_path, env={"TICKWIRE_LOG": "error", "RUST_LOG": "info"})
    assert logs == [], logs
    r = subprocess.run([BIN, "demo", "--duration", "1"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "TICKWIRE_LOG": "tickwire=loud"})
    assert r.returncode == 2 and "TICKWIRE_LOG=tickwire=loud" in r.stderr, r.stderr


def test_the_fatal_error_is_a_log_line_in_either_format(tmp_path):
    dead = free_port()
    for fmt in ["text", "json"]:
        r = subprocess.run([BIN, "--log-format", fmt, "demo", "--duration", "1", "--out", str(tmp_path / "d"),
                            "--clickhouse", f"http://default:{SECRET}@127.0.0.1:{dead}/", "--stats-secs", "0"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert SECRET not in r.stderr + r.stdout
        last = r.stderr.strip().splitlines()[-1]
        if fmt == "json":
            o = json.loads(last)
            assert o["level"] == "ERROR" and f"default:***@127.0.0.1:{dead}" in o["message"], o
        else:
            assert TEXT.match(last) and " ERROR " in last and f"127.0.0.1:{dead}" in last, last
