//! `/v1/openapi.json`: the OpenAPI 3.1 document of the HTTP API, built from the same Arrow
//! schemas the answers are written from, so a column added to a kind is in the document with
//! it. `tests/python/test_openapi.py` checks the running server's answers against it.

use arrow_schema::{DataType, TimeUnit};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use tickwire_codecs::record::Kind;

/// An exact decimal as Binance sent it, at scale 8.
const DECIMAL8: &str = "^-?[0-9]+\\.[0-9]{8}$";
/// An exact decimal at any scale (products such as quote volume).
const DECIMAL: &str = "^-?[0-9]+(\\.[0-9]+)?$";

fn nullable(schema: Value, null: bool) -> Value {
    if !null {
        return schema;
    }
    let mut s = schema;
    if let Some(t) = s.get("type").cloned() {
        s["type"] = json!([t, "null"]);
    }
    s
}

/// The JSON schema of one column of a JSON-lines answer.
fn column(name: &str, dt: &DataType) -> Value {
    match dt {
        DataType::Int64 => json!({"type": "integer"}),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            json!({"type": "integer", "description": format!("{name}: nanoseconds since the epoch")})
        }
        DataType::Timestamp(_, _) => {
            json!({"type": "integer", "description": format!("{name}: microseconds since the epoch")})
        }
        DataType::Decimal128(_, _) => json!({"type": "string", "pattern": DECIMAL8}),
        DataType::Boolean => json!({"type": "boolean"}),
        DataType::List(_) => json!({
            "type": "array",
            "description": "levels as [price, qty], exact decimals",
            "items": {"$ref": "#/components/schemas/Level"}
        }),
        _ => json!({"type": "string"}),
    }
}

/// One row of `kind` in a JSON-lines answer.
fn row_schema(kind: Kind) -> Value {
    let schema = tickwire_codecs::arrow::schema(kind);
    let mut props = Map::new();
    props.insert(
        "kind".into(),
        json!({"type": "string", "const": kind.as_str()}),
    );
    let mut required = vec![json!("kind")];
    for f in schema.fields() {
        props.insert(
            f.name().clone(),
            nullable(column(f.name(), f.data_type()), f.is_nullable()),
        );
        required.push(json!(f.name()));
    }
    json!({
        "type": "object",
        "description": format!("One `{}` record: the decode JSON's columns.", kind.as_str()),
        "properties": props,
        "required": required,
        "additionalProperties": false
    })
}

fn error_response(what: &str) -> Value {
    json!({
        "description": what,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn param(name: &str, desc: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": desc, "schema": schema})
}

fn build() -> Value {
    let market = param(
        "market",
        "spot or usdm; leave out for both",
        json!({"type": "string", "enum": ["spot", "usdm"]}),
    );
    let symbol = param(
        "symbol",
        "exchange symbol, e.g. BTCUSDT (case-insensitive)",
        json!({"type": "string"}),
    );
    let time = json!({"type": "string", "description": "milliseconds since the epoch, or RFC 3339 UTC (2026-11-30T12:00:00Z)"});
    let from = param(
        "from",
        "start of the receive-time range, inclusive",
        time.clone(),
    );
    let to = param("to", "end of the receive-time range, exclusive", time);
    let errors = |extra: &[(&str, &str)]| {
        let mut m = Map::new();
        m.insert(
            "400".into(),
            error_response("a bad market, time, range, interval, limit or format"),
        );
        m.insert("401".into(), error_response("a bearer token is required"));
        m.insert(
            "404".into(),
            error_response("an unknown kind or symbol, or nothing yet"),
        );
        for (code, what) in extra {
            m.insert((*code).into(), error_response(what));
        }
        m
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"], "additionalProperties": false}),
    );
    schemas.insert(
        "Level".into(),
        json!({"type": "array", "prefixItems": [{"type": "string", "pattern": DECIMAL8}, {"type": "string", "pattern": DECIMAL8}], "minItems": 2, "maxItems": 2}),
    );
    for &kind in Kind::ALL {
        let name = format!("Row_{}", kind.as_str());
        schemas.insert(name.clone(), row_schema(kind));
        let mut responses = errors(&[
            ("502", "the read-through store failed"),
            ("500", "the cache could not be scanned"),
        ]);
        let rows = if matches!(kind, Kind::BookTicker | Kind::Ticker | Kind::MarkPrice) {
            "rows received in [from, to), newest first; the newest row of one market and symbol (limit=1, no from or to) comes from the Redis L1 when it holds it (X-Tickwire-Tiers: redis)"
        } else {
            "rows received in [from, to), newest first"
        };
        responses.insert(
            "200".into(),
            json!({
                "description": rows,
                "headers": {
                    "X-Tickwire-Tiers": {"description": "the tiers that served the answer (redis, cache, postgres, clickhouse)", "schema": {"type": "string"}},
                    "X-Tickwire-Rows": {"description": "rows in the answer", "schema": {"type": "integer"}}
                },
                "content": {
                    "application/x-ndjson": {"schema": {"$ref": format!("#/components/schemas/{name}")}, "x-tickwire-lines": true},
                    "text/csv": {"schema": {"type": "string"}},
                    "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}}
                }
            }),
        );
        paths.insert(
            format!("/v1/{}", kind.as_str()),
            json!({"get": {
                "operationId": format!("rows_{}", kind.as_str()),
                "summary": format!("`{}` records from the cache (and the store before it)", kind.as_str()),
                "parameters": [market, symbol, from, to,
                    param("limit", "at most this many rows (default 1000)", json!({"type": "integer", "minimum": 1, "maximum": 1_000_000})),
                    param("format", "json (lines), csv or arrow; else from Accept", json!({"type": "string", "enum": ["json", "csv", "arrow"]}))],
                "responses": responses
            }}),
        );
    }
    schemas.insert(
        "Candle".into(),
        json!({"type": "object", "additionalProperties": false,
            "required": ["market", "symbol", "interval", "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades", "vwap"],
            "properties": {
                "market": {"type": "string", "enum": ["spot", "usdm"]},
                "symbol": {"type": "string"},
                "interval": {"type": "string", "enum": ["1s", "1m", "5m", "1h"]},
                "open_time": {"type": "integer", "description": "microseconds since the epoch"},
                "open": {"type": "string", "pattern": DECIMAL8},
                "high": {"type": "string", "pattern": DECIMAL8},
                "low": {"type": "string", "pattern": DECIMAL8},
                "close": {"type": "string", "pattern": DECIMAL8},
                "volume": {"type": "string", "pattern": DECIMAL8},
                "quote_volume": {"type": "string", "pattern": DECIMAL},
                "trades": {"type": "integer", "minimum": 1},
                "vwap": {"type": "string", "pattern": DECIMAL8}
            }}),
    );
    let mut candle_responses = errors(&[("502", "the read-through store failed")]);
    candle_responses.insert(
        "200".into(),
        json!({"description": "OHLCV by trade time, oldest first", "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Candle"}, "x-tickwire-lines": true}}}),
    );
    paths.insert(
        "/v1/candles".into(),
        json!({"get": {"operationId": "candles", "summary": "candles from the trades",
            "parameters": [market, symbol, from, to,
                param("interval", "candle length (default 1m)", json!({"type": "string", "enum": ["1s", "1m", "5m", "1h"]}))],
            "responses": candle_responses}}),
    );
    schemas.insert(
        "Book".into(),
        json!({"type": "object", "additionalProperties": false,
        "required": ["market", "symbol", "last_update_id", "recv_time", "bids", "asks"],
        "properties": {
            "market": {"type": "string", "enum": ["spot", "usdm"]},
            "symbol": {"type": "string"},
            "last_update_id": {"type": "integer"},
            "recv_time": {"type": "integer", "description": "nanoseconds since the epoch"},
            "event_time": {"type": ["integer", "null"]},
            "bids": {"type": "array", "items": {"$ref": "#/components/schemas/Level"}},
            "asks": {"type": "array", "items": {"$ref": "#/components/schemas/Level"}}
        }}),
    );
    let mut book_responses = errors(&[("500", "the cache could not be scanned")]);
    book_responses.insert(
        "200".into(),
        json!({"description": "the top levels of the book",
            "headers": {"X-Tickwire-Book-Source": {"description": "live (kept from the diffs), redis (the L1 book hash) or depth_snapshot (the cache)", "schema": {"type": "string", "enum": ["live", "redis", "depth_snapshot"]}}, "X-Tickwire-Tiers": {"description": "the tier that answered: live (this process's book), redis (L1) or cache (L2)", "schema": {"type": "string", "enum": ["live", "redis", "cache"]}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Book"}}}}),
    );
    paths.insert(
        "/v1/book".into(),
        json!({"get": {"operationId": "book", "summary": "the order book of a symbol",
            "parameters": [market,
                {"name": "symbol", "in": "query", "required": true, "description": "exchange symbol", "schema": {"type": "string"}},
                param("depth", "levels a side (default 20)", json!({"type": "integer", "minimum": 1}))],
            "responses": book_responses}}),
    );
    paths.insert(
        "/v1/tiering".into(),
        json!({"get": {"operationId": "tiering", "summary": "the hot -> cold schedule and the ledger's windows",
            "responses": {"200": {"description": "status", "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": error_response("a bearer token is required"),
                "404": error_response("no [tiering] in this run")}}}),
    );
    paths.insert(
        "/health".into(),
        json!({"get": {"operationId": "health", "summary": "liveness; never asks for a token", "security": [],
            "responses": {
                "200": {"description": "running", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                "503": {"description": "stopping", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}}}),
    );
    schemas.insert(
        "Health".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["status", "uptime_s"],
            "properties": {"status": {"type": "string", "enum": ["ok", "stopping"]}, "uptime_s": {"type": "number", "minimum": 0}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"operationId": "metrics", "summary": "Prometheus text format 0.0.4",
            "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "401": error_response("a bearer token is required")}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tickwire",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The engine's query API over its Arrow cache (and the store behind it), health and metrics. Times are integers since the epoch; decimals are exact strings."
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "required when the server has [http] token"}}
        },
        "security": [{"bearer": []}, {}],
        "paths": paths
    })
}

/// The document's text (built once).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| build().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_path_and_every_column_a_property() {
        let doc: Value = serde_json::from_str(document()).expect("json");
        for &k in Kind::ALL {
            let props = &doc["components"]["schemas"][format!("Row_{}", k.as_str())]["properties"];
            for f in tickwire_codecs::arrow::schema(k).fields() {
                assert!(
                    props.get(f.name()).is_some(),
                    "{}: {}",
                    k.as_str(),
                    f.name()
                );
            }
            assert!(doc["paths"][format!("/v1/{}", k.as_str())]["get"].is_object());
        }
    }
}
