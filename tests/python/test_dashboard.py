"""The Grafana dashboard and the Prometheus scrape config in deploy/: a real Prometheus
(Debian's) scrapes a running demo with every sink, and every query the dashboard draws is valid
PromQL that returns series; every metric it names is in /metrics; promtool finds /metrics well
formed and lint-clean."""

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request

from conftest import BIN, ROOT, free_port, listening, metrics, wait
from test_nats import NATS, delete_stream, delete_streams_taking_tickwire

DASHBOARD = ROOT / "deploy" / "grafana" / "tickwire.json"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus") or "prometheus"  # scripts/test.sh installs Debian's


def exprs():
    d = json.loads(DASHBOARD.read_text())
    out = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    out += [v["query"]["query"] for v in d["templating"]["list"] if v["type"] == "query"]
    return out


def families(text):
    """Metric family names of an exposition (histograms by their base name)."""
    return {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}


def named(expr):
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\btickwire_[a-z0-9_]+", expr)}


def test_the_dashboard_is_well_formed():
    d = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    titles = " ".join(p["title"] for p in d["panels"]).lower()
    for what in ["by kind", "drops", "sink lag", "spilled", "p99", "order books", "rest weight"]:
        assert what in titles, what
    for p in d["panels"]:
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]


def test_prometheus_scrapes_the_demo_and_every_dashboard_query_answers(tmp_path):
    http, prom = free_port(), free_port()
    r = subprocess.run(["promtool", "check", "config", str(SCRAPE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # The committed config, pointed at this demo and scraping every second.
    cfg = SCRAPE.read_text().replace("127.0.0.1:9464", f"127.0.0.1:{http}").replace("scrape_interval: 5s", "scrape_interval: 1s")
    assert f"127.0.0.1:{http}" in cfg and "scrape_interval: 1s" in cfg
    (tmp_path / "prometheus.yml").write_text(cfg)
    delete_streams_taking_tickwire()
    stream = "DASH" + str(http)
    demo = subprocess.Popen(
        [BIN, "demo", "--duration", "14", "--out", str(tmp_path / "out"), "--rate", "5000", "--http", f"127.0.0.1:{http}",
         "--zmq", f"tcp://127.0.0.1:{free_port()}", "--redis", "redis://127.0.0.1:6379/",
         "--redis-prefix", f"dash{http}", "--nats", NATS, "--nats-stream", stream,
         "--postgres", "postgres://postgres@127.0.0.1:5432/postgres", "--postgres-schema", f"dash{http}",
         "--stats-secs", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom}"], stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "w"))
    try:
        wait(lambda: listening(http), 30, "the demo's HTTP")
        wait(lambda: server.poll() is not None or listening(prom), 30, "prometheus")
        assert server.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]

        def query(q):
            url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())

        def ready():
            v = query('sum(rate(tickwire_records_total{kind="trade"}[4s]))')["data"]["result"]
            return v and float(v[0]["value"][1]) > 0

        wait(ready, 30, "a trade rate in prometheus")
        text = metrics(http)
        have = families(text)
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0 and lint.stdout.strip() == "" and lint.stderr.strip() == "", lint.stdout + lint.stderr
        qs = exprs()
        assert len(qs) >= 30
        empty = []
        for e in qs:
            missing = named(e) - have
            assert not missing, f"{e}: {missing} not in /metrics"
            q = e.replace("$__rate_interval", "4s").replace("$instance", ".*")
            if q.startswith("label_values("):
                q = re.match(r"label_values\((\w+), *\w+\)", q).group(1)
            a = query(q)
            assert a["status"] == "success", (e, a)
            if not a["data"]["result"]:
                empty.append(e)
        assert not empty, f"queries without series: {empty}"
        by_kind = {s["metric"]["kind"] for s in query("sum by (kind) (rate(tickwire_records_total[4s])) > 0")["data"]["result"]}
        assert {"trade", "agg_trade", "book_ticker", "depth_update"} <= by_kind, by_kind
    finally:
        server.terminate()
        server.wait(timeout=30)
        out, err = demo.communicate(timeout=120)
        delete_stream(stream)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP SCHEMA IF EXISTS dash{http} CASCADE"],
                       capture_output=True)
    assert demo.returncode == 0, err
