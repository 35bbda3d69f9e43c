//! `/health` and `/metrics` (Prometheus text format) on a loopback address.
//!
//! A deliberately small HTTP/1.1 server on the tokio runtime: GET only, one response per
//! connection. Metric names are defined here, in one place.

use crate::metrics::Histogram;
use crate::query::{Api, Reply};
use crate::runner::Counters;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tickwire_codecs::record::{Kind, Market};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Health state.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once a stop has begun.
    pub stopping: AtomicBool,
}

/// Latency bucket bounds exported to Prometheus, µs.
const LE_US: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000,
];

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for le in LE_US {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {}",
            le as f64 / 1e6,
            h.count_le(le)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum {}", h.sum() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", h.count());
}

fn counter(out: &mut String, name: &str, help: &str, rows: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, rows: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// The Prometheus text of `c`.
pub fn metrics_text(c: &Counters, uptime_s: f64) -> String {
    let l = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let mut o = String::with_capacity(8192);
    let _ = writeln!(o, "# HELP tickwire_uptime_seconds Seconds since start.\n# TYPE tickwire_uptime_seconds gauge\ntickwire_uptime_seconds {uptime_s:.3}");
    counter(
        &mut o,
        "tickwire_frames_total",
        "WebSocket frames received.",
        &[(String::new(), l(&c.queue.frames))],
    );
    counter(
        &mut o,
        "tickwire_decode_errors_total",
        "Frames the decoder refused.",
        &[(String::new(), l(&c.queue.decode_errors))],
    );
    counter(
        &mut o,
        "tickwire_unknown_events_total",
        "Frames of unknown event types.",
        &[(String::new(), l(&c.queue.unknown))],
    );
    let recs: Vec<(String, u64)> = Kind::ALL
        .iter()
        .map(|k| {
            (
                format!("kind=\"{}\"", k.as_str()),
                l(&c.pipeline.records[k.index()]),
            )
        })
        .collect();
    counter(
        &mut o,
        "tickwire_records_total",
        "Records taken in by the pipeline, by kind (gap = detected gaps).",
        &recs,
    );
    counter(
        &mut o,
        "tickwire_dropped_total",
        "Records dropped, by where: every drop is counted.",
        &[
            ("where=\"queue\"".into(), l(&c.queue.dropped)),
            ("where=\"zmq\"".into(), l(&c.zmq.dropped)),
            ("where=\"sink_queue\"".into(), l(&c.pipeline.sink_drops)),
        ]
        .into_iter()
        .chain(
            c.nats
                .as_ref()
                .map(|n| ("where=\"nats\"".to_string(), l(&n.dropped))),
        )
        .collect::<Vec<_>>(),
    );
    let gaps: Vec<(String, u64)> = Kind::ALL
        .iter()
        .map(|k| {
            (
                format!("stream=\"{}\"", k.as_str()),
                l(&c.queue.gaps[k.index()]),
            )
        })
        .collect();
    counter(
        &mut o,
        "tickwire_gaps_total",
        "Sequence gaps detected, by the stream kind they are in.",
        &gaps,
    );
    counter(
        &mut o,
        "tickwire_reconnects_total",
        "Reconnects after a connection closed or failed.",
        &[(String::new(), l(&c.queue.reconnects))],
    );
    counter(
        &mut o,
        "tickwire_connect_errors_total",
        "Connection attempts that failed.",
        &[(String::new(), l(&c.queue.connect_errors))],
    );
    counter(
        &mut o,
        "tickwire_connect_waits_total",
        "Connection attempts that waited for their host's window of 240 attempts in 5 minutes.",
        &[(String::new(), l(&c.queue.connect_waits))],
    );
    // REST and books, by market (summed over a market's hosts).
    let by_market = |f: &dyn Fn(&crate::rest::RestStats) -> u64| -> Vec<(String, u64)> {
        [Market::Spot, Market::Usdm]
            .into_iter()
            .filter(|m| c.rest.iter().any(|h| h.market == *m))
            .map(|m| {
                let v = c
                    .rest
                    .iter()
                    .filter(|h| h.market == m)
                    .map(|h| f(&h.stats))
                    .sum();
                (format!("market=\"{}\"", m.as_str()), v)
            })
            .collect()
    };
    let mut rest = Vec::new();
    for (result, f) in [
        (
            "sent",
            (|s: &crate::rest::RestStats| &s.requests)
                as fn(&crate::rest::RestStats) -> &std::sync::atomic::AtomicU64,
        ),
        ("status_429", |s| &s.status_429),
        ("status_418", |s| &s.status_418),
        ("failed", |s| &s.errors),
    ] {
        for (m, v) in by_market(&|s| l(f(s))) {
            rest.push((format!("{m},result=\"{result}\""), v));
        }
    }
    counter(
        &mut o,
        "tickwire_rest_requests_total",
        "REST requests sent to the exchange, and their answers 429 (over the weight a minute), 418 (banned) and other failures.",
        &rest,
    );
    let mut listings = by_market(&|s| l(&s.listed))
        .into_iter()
        .map(|(m, v)| (format!("{m},change=\"listed\""), v))
        .collect::<Vec<_>>();
    listings.extend(
        by_market(&|s| l(&s.delisted))
            .into_iter()
            .map(|(m, v)| (format!("{m},change=\"delisted\""), v)),
    );
    counter(
        &mut o,
        "tickwire_listings_total",
        "Symbols a symbols = [\"*\"] source took up (newly TRADING) or let go while running.",
        &listings,
    );
    if let Some(t) = &c.tiering {
        let (runs, w, copied, cleaned) = t.totals();
        counter(
            &mut o,
            "tickwire_tier_runs_total",
            "Scheduled tiering passes done ([tiering]).",
            &[(String::new(), runs)],
        );
        counter(
            &mut o,
            "tickwire_tier_windows_total",
            "Tiering windows (table x market x UTC day) by outcome: copied to every target, verified (count and checksum equal), failed (left in the hot tier), cleaned from the hot tier.",
            &[
                ("state=\"copied\"".to_string(), w.copied),
                ("state=\"verified\"".to_string(), w.verified),
                ("state=\"failed\"".to_string(), w.failed),
                ("state=\"cleaned\"".to_string(), w.cleaned),
            ],
        );
        counter(
            &mut o,
            "tickwire_tier_rows_total",
            "Rows the tiering copied to the cold targets, and removed from the hot tier after verification.",
            &[
                ("op=\"copied\"".to_string(), copied),
                ("op=\"cleaned\"".to_string(), cleaned),
            ],
        );
    }
    if let Some(n) = &c.nats {
        counter(
            &mut o,
            "tickwire_nats_published_total",
            "What NATS JetStream acknowledged: messages, the records in them, and acks that were duplicates of a retried publish.",
            &[
                ("unit=\"messages\"".to_string(), l(&n.messages)),
                ("unit=\"records\"".to_string(), l(&n.records)),
                ("unit=\"duplicates\"".to_string(), l(&n.duplicates)),
            ],
        );
        counter(
            &mut o,
            "tickwire_nats_errors_total",
            "JetStream publishes that failed or timed out (each sent again after a backoff).",
            &[(String::new(), l(&n.errors))],
        );
        counter(
            &mut o,
            "tickwire_nats_spilled_records_total",
            "Records the NATS sink wrote to its spill file while NATS was slow or down.",
            &[(String::new(), l(&n.spilled))],
        );
        gauge(
            &mut o,
            "tickwire_nats_pending_records",
            "Records waiting for a JetStream ack (in memory, in flight or spilled).",
            &[(String::new(), l(&n.pending))],
        );
    }
    if let Some(r) = &c.redis {
        counter(
            &mut o,
            "tickwire_l1_reads_total",
            "Query API candle reads the Redis L1 answered (hit) or left to the next tier (miss: the range not held, Redis down).",
            &[
                ("result=\"hit\"".to_string(), l(&r.reads_hit)),
                ("result=\"miss\"".to_string(), l(&r.reads_miss)),
            ],
        );
        counter(
            &mut o,
            "tickwire_l1_commands_total",
            "Redis commands the L1 sent.",
            &[(String::new(), l(&r.commands))],
        );
    }
    counter(
        &mut o,
        "tickwire_rest_unreadable_total",
        "REST answers, or entries of them (an exchangeInfo symbol, a series point), that could not be read into a record; each is logged.",
        &by_market(&|s| l(&s.unreadable)),
    );
    counter(
        &mut o,
        "tickwire_rest_weight_total",
        "Request weight of the REST requests sent.",
        &by_market(&|s| l(&s.weight)),
    );
    gauge(
        &mut o,
        "tickwire_rest_weight_limit",
        "The per-minute request-weight limit in force (exchangeInfo's rateLimits).",
        &by_market(&|s| l(&s.weight_limit)),
    );
    counter(
        &mut o,
        "tickwire_books_synced_total",
        "Order books made live from a snapshot (first syncs and resyncs).",
        &by_market(&|s| l(&s.books_synced)),
    );
    counter(
        &mut o,
        "tickwire_book_resyncs_total",
        "Order books discarded because their diffs broke.",
        &by_market(&|s| l(&s.resyncs)),
    );
    gauge(
        &mut o,
        "tickwire_books_waiting",
        "Order books waiting for a snapshot that bridges their diffs.",
        &by_market(&|s| l(&s.books_waiting)),
    );
    counter(
        &mut o,
        "tickwire_published_total",
        "Messages published over ZMQ.",
        &[(String::new(), l(&c.zmq.sent))],
    );
    counter(
        &mut o,
        "tickwire_zmq_batches_total",
        "Flushed batches published as Arrow IPC on batch.* topics, by outcome.",
        &[
            ("result=\"sent\"".into(), l(&c.zmq.batches_sent)),
            ("result=\"dropped\"".into(), l(&c.zmq.batches_dropped)),
        ],
    );
    counter(
        &mut o,
        "tickwire_flushed_rows_total",
        "Rows flushed to the sinks in batches.",
        &[(String::new(), l(&c.pipeline.rows))],
    );
    counter(
        &mut o,
        "tickwire_flushed_batches_total",
        "Batches flushed to the sinks.",
        &[(String::new(), l(&c.pipeline.batches))],
    );
    let sink = |f: fn(&tickwire_sinks::SinkCounters) -> u64| -> Vec<(String, u64)> {
        c.sinks
            .iter()
            .map(|(n, s)| (format!("sink=\"{n}\""), f(s)))
            .collect()
    };
    counter(
        &mut o,
        "tickwire_sink_rows_total",
        "Rows a sink has durably written (acknowledged by the store; Parquet: in closed files).",
        &sink(|s| s.rows.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_rows_written_total",
        "Rows a sink has handed to its store (Parquet: written into open files, durable when they close).",
        &sink(|s| s.written_rows.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_bytes_total",
        "Bytes a sink has written.",
        &sink(|s| s.bytes.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_errors_total",
        "Sink write errors.",
        &sink(|s| s.errors.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_dropped_rows_total",
        "Rows of batches a sink refused with an error.",
        &sink(|s| s.dropped_rows.load(Ordering::Relaxed)),
    );
    counter(
        &mut o,
        "tickwire_sink_spilled_rows_total",
        "Rows a sink kept on disk to send later.",
        &sink(|s| s.spilled_rows.load(Ordering::Relaxed)),
    );
    if let Some(cc) = &c.cache {
        counter(
            &mut o,
            "tickwire_cache_queries_total",
            "Query API answers by the tiers that served them.",
            &[
                ("result=\"hit\"".into(), l(&cc.hits)),
                ("result=\"partial_hit\"".into(), l(&cc.partial_hits)),
                ("result=\"miss\"".into(), l(&cc.misses)),
                ("result=\"error\"".into(), l(&cc.errors)),
            ],
        );
        counter(
            &mut o,
            "tickwire_cache_evicted_total",
            "Batches and rows evicted from the cache (age or memory).",
            &[
                ("unit=\"batches\"".into(), l(&cc.evicted_batches)),
                ("unit=\"rows\"".into(), l(&cc.evicted_rows)),
            ],
        );
        let _ = writeln!(o, "# HELP tickwire_cache_bytes Arrow bytes held by the cache.\n# TYPE tickwire_cache_bytes gauge\ntickwire_cache_bytes {}", l(&cc.bytes));
        let _ = writeln!(o, "# HELP tickwire_cache_batches Flushed batches held by the cache.\n# TYPE tickwire_cache_batches gauge\ntickwire_cache_batches {}", l(&cc.batches));
    }
    histogram(
        &mut o,
        "tickwire_recv_to_publish_seconds",
        "Frame receive to ZMQ publish.",
        &c.pipeline.recv_to_publish.snapshot(),
    );
    histogram(
        &mut o,
        "tickwire_recv_to_flush_seconds",
        "Frame receive to batch flushed to the sinks.",
        &c.pipeline.recv_to_flush.snapshot(),
    );
    histogram(
        &mut o,
        "tickwire_exchange_lag_seconds",
        "Exchange event time to ZMQ publish.",
        &c.pipeline.exchange_lag.snapshot(),
    );
    o
}

fn hot_of(c: &Counters) -> Option<crate::tier::Endpoint> {
    c.tiering.as_ref().and_then(|t| t.hot())
}

/// `/v1/tiering`: the schedule's status, and the ledger's newest state of each window.
async fn tiering_reply(t: &crate::tier::Status, hot: Option<crate::tier::Endpoint>) -> Reply {
    let mut v = t.json();
    if let Some(hot) = hot {
        v["ledger"] = match crate::tier::ledger_windows(&hot, 1000).await {
            Ok(w) => w,
            Err(e) => {
                v["ledger_error"] = serde_json::Value::String(crate::cmd::error_line(&e));
                serde_json::Value::Array(vec![])
            }
        };
    }
    Reply {
        status: "200 OK",
        content_type: "application/json",
        headers: vec![],
        body: v.to_string().into_bytes(),
    }
}

/// Serves `/health` and `/metrics` on `addr` until the task is aborted.
pub async fn serve(
    addr: &str,
    c: Arc<Counters>,
    health: Arc<Health>,
    t0: Instant,
    api: Option<Arc<Api>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (c, health, api) = (c.clone(), health.clone(), api.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = match sock.read(&mut buf).await {
                    Ok(n) => n,
                    Err(_) => return,
                };
                let req = String::from_utf8_lossy(&buf[..n]);
                let target = req.split_whitespace().nth(1).unwrap_or("");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let reply = match path {
                    "/v1/tiering" => match &c.tiering {
                        Some(t) => tiering_reply(t, hot_of(&c)).await,
                        None => Reply::text("404 Not Found", "no [tiering] in this run\n"),
                    },
                    p if p.starts_with("/v1/") => match &api {
                        Some(api) => {
                            let accept = req
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("accept")
                                        .then(|| v.trim().to_string())
                                })
                                .unwrap_or_default();
                            api.handle(path, query, &accept).await
                        }
                        None => Reply::text("404 Not Found", "no query API: the cache is off\n"),
                    },
                    "/health" => {
                        let stopping = health.stopping.load(Ordering::Relaxed);
                        Reply {
                            status: if stopping {
                                "503 Service Unavailable"
                            } else {
                                "200 OK"
                            },
                            content_type: "application/json",
                            headers: vec![],
                            body: format!(
                                "{{\"status\":\"{}\",\"uptime_s\":{:.3}}}",
                                if stopping { "stopping" } else { "ok" },
                                t0.elapsed().as_secs_f64()
                            )
                            .into_bytes(),
                        }
                    }
                    "/metrics" => Reply {
                        status: "200 OK",
                        content_type: "text/plain; version=0.0.4",
                        headers: vec![],
                        body: metrics_text(&c, t0.elapsed().as_secs_f64()).into_bytes(),
                    },
                    _ => Reply::text(
                        "404 Not Found",
                        "not found: try /health, /metrics or /v1/<kind>\n",
                    ),
                };
                let mut head = format!(
                    "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.content_type,
                    reply.body.len()
                );
                for h in &reply.headers {
                    head.push_str(h);
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&reply.body).await;
                let _ = sock.shutdown().await;
            });
        }
    }))
}
