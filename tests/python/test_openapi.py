"""/v1/openapi.json against what the running server answers: the document is a valid OpenAPI
3.1 document, and for requests built from its own parameters (valid values and, drawn by
hypothesis, arbitrary ones) every answer has a documented status, content type and headers,
and its body (each line of a JSON-lines answer) validates against the documented schema."""

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource

from conftest import http_demo, wait


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with http_demo(tmp_path_factory.mktemp("openapi")) as port:
        base = f"http://127.0.0.1:{port}"
        # Some of every kind the demo sends, and a live book.
        wait(lambda: int(fetch(base, "/v1/trade?limit=1")[1].get("X-Tickwire-Rows", 0)) > 0, 30, "trades")
        wait(lambda: fetch(base, "/v1/book?symbol=BTCUSDT")[0] == 200, 30, "a book")
        doc = json.loads(fetch(base, "/v1/openapi.json")[2])
        yield base, doc


def fetch(base, path, accept=None):
    req = urllib.request.Request(base + path, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def validator(doc, schema):
    registry = Registry().with_resource("tickwire", Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}))
    resolver_schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": None}
    if "$ref" in schema:
        resolver_schema["$ref"] = "tickwire" + schema["$ref"]
    else:
        resolver_schema = schema
    return Draft202012Validator(resolver_schema, registry=registry)


def conforms(doc, path, query, answer):
    """The answer to GET path?query conforms to the document; returns its status."""
    status, headers, body = answer
    op = doc["paths"][path]["get"]
    responses = op["responses"]
    assert str(status) in responses, f"{path}?{query}: undocumented status {status}: {body[:200]}"
    resp = responses[str(status)]
    ctype = headers.get("Content-Type", "").split(";")[0]
    assert ctype in resp.get("content", {}), f"{path}?{query}: {status} {ctype} undocumented"
    for h in resp.get("headers", {}):
        if status == 200 and ctype == "application/x-ndjson" or path == "/v1/book":
            assert h in headers, f"{path}: header {h} documented, not sent"
    media = resp["content"][ctype]
    if ctype in ("application/json", "application/x-ndjson"):
        v = validator(doc, media["schema"])
        docs = [json.loads(l) for l in body.decode().splitlines() if l] if media.get("x-tickwire-lines") \
            else [json.loads(body)]
        for d in docs:
            errors = list(v.iter_errors(d))
            assert not errors, f"{path}?{query}: {errors[0].message} in {d}"
    return status


def test_the_document_is_valid_openapi_31(api):
    _, doc = api
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_every_kind_the_server_knows_is_documented(api):
    base, doc = api
    status, _, body = fetch(base, "/v1/no_such_kind")
    assert status == 404
    listed = [w.strip(", ") for w in json.loads(body)["error"].split("one of ")[1].replace(" or ", ", ").split(", ")]
    for name in listed:
        assert f"/v1/{name}" in doc["paths"], name


def test_valid_requests_conform(api):
    base, doc = api
    seen = {}
    for path, item in doc["paths"].items():
        if path == "/v1/book":
            query = "symbol=BTCUSDT&depth=5"
        elif path.startswith("/v1/") and path not in ("/v1/tiering", "/v1/openapi.json"):
            query = "market=spot&limit=50" if path != "/v1/candles" else "symbol=BTCUSDT&interval=1s"
        else:
            query = ""
        seen[path] = conforms(doc, path, query, fetch(base, path + ("?" + query if query else "")))
    # Not only errors: the data paths answered with data.
    for path in ("/v1/trade", "/v1/agg_trade", "/v1/book_ticker", "/v1/depth_update", "/v1/candles", "/v1/book",
                 "/health", "/metrics"):
        assert seen[path] == 200, (path, seen[path])
    # The row schemas are not empty shells: a trade line has the documented columns, nothing else.
    line = json.loads(fetch(base, "/v1/trade?limit=1")[2].decode().splitlines()[0])
    assert set(line) == set(doc["components"]["schemas"]["Row_trade"]["properties"])


def values(param):
    s = param["schema"]
    good = st.sampled_from(s["enum"]) if "enum" in s else \
        st.integers(s.get("minimum", -5), s.get("maximum", 10_000)).map(str) if s.get("type") == "integer" else \
        st.sampled_from(["BTCUSDT", "ethusdt", "1796000000000", "2026-11-30T12:00:00Z"])
    return st.one_of(good, st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
                     st.integers(-10**12, 10**15).map(str))


@st.composite
def requests(draw, doc):
    path = draw(st.sampled_from([p for p in doc["paths"] if p.startswith("/v1/") and p != "/v1/tiering"]))
    q = {}
    for param in doc["paths"][path]["get"].get("parameters", []):
        if param.get("required") or draw(st.booleans()):
            q[param["name"]] = draw(values(param))
    return path, urllib.parse.urlencode(q)


def test_arbitrary_requests_conform(api):
    base, doc = api
    codes = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests(doc))
    def check(req):
        path, query = req
        codes.add(conforms(doc, path, query, fetch(base, f"{path}?{query}")))

    check()
    # Both the answers and the refusals were exercised.
    assert 200 in codes and 400 in codes, codes
