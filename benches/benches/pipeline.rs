//! The pipeline's stages, each against its baseline, in one run:
//!
//! - `handoff`: records from a producer thread to a consumer thread: the crossbeam bounded
//!   channel tickwire uses (one `Msg` per send), the same channel carrying batches of 256, and
//!   the `rtrb` SPSC ring (per record and in chunks).
//! - `columnarize`: `BatchBuilder` append + finish of trades.
//! - `parquet`: encoding those batches with zstd (tickwire's writer settings).
//! - `zmq_publish`: tickwire's `Publisher` (topic lookup, sequence, binary encoding, XPUB
//!   non-blocking send) against raw libzmq PUB sends of pre-encoded payloads of the same size,
//!   and the pure-Rust `zeromq` crate sending those payloads.
//!
//! `cargo bench -p tickwire-benches --bench pipeline`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::arrow::BatchBuilder;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::{Kind, Level, Market, Record};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_engine::pipeline::publish::{
    encode_binary, Encoding, PubConfig, PubCounters, Publisher,
};
use tickwire_engine::pipeline::queue::Msg;
use zeromq::Socket as _;

fn trades(n: usize) -> (Vec<Record>, Arc<SymbolTable>) {
    let t = SymbolTable::new();
    let mut d = Decoder::new(Market::Spot, t.clone());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let f = format!(
            r#"{{"e":"trade","E":1700000000123,"s":"{}","t":{},"p":"3700{}.12000000","q":"0.00{}000","T":1700000000120,"m":{},"M":true}}"#,
            ["BTCUSDT", "ETHUSDT", "SOLUSDT", "PEPEUSDT"][i % 4],
            3_000_000_000u64 + i as u64,
            i % 10,
            100 + i % 900,
            i % 2 == 0
        );
        d.decode(
            f.as_bytes(),
            1_700_000_000_125_000_000,
            &mut |r: &Record, _: &[Level]| out.push(*r),
        )
        .expect("decodes");
    }
    (out, t)
}

/// The binary ZMQ payloads of `recs` (sequence 1), encoded ahead of the timed loops.
fn binary_payloads(recs: &[Record]) -> Vec<Vec<u8>> {
    recs.iter()
        .map(|r| {
            let mut v = Vec::new();
            encode_binary(&mut v, r, &[], 1);
            v
        })
        .collect()
}

fn handoff(c: &mut Criterion) {
    let (recs, _) = trades(1024);
    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Elements(1));
    g.bench_function("crossbeam_channel/per_record", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<Msg>(65_536);
            let recs = recs.clone();
            let t0 = Instant::now();
            let p = std::thread::spawn(move || {
                for i in 0..iters {
                    let _ = tx.send(Msg::new(recs[i as usize % recs.len()], &[]));
                }
            });
            for _ in 0..iters {
                black_box(rx.recv().ok());
            }
            let _ = p.join();
            t0.elapsed()
        })
    });
    g.bench_function("crossbeam_channel/batches_of_256", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<Vec<Record>>(256);
            let recs = recs.clone();
            let t0 = Instant::now();
            let p = std::thread::spawn(move || {
                let mut sent = 0u64;
                while sent < iters {
                    let n = (iters - sent).min(256) as usize;
                    let batch: Vec<Record> = (0..n)
                        .map(|j| recs[(sent as usize + j) % recs.len()])
                        .collect();
                    sent += n as u64;
                    let _ = tx.send(batch);
                }
            });
            let mut got = 0u64;
            while got < iters {
                match rx.recv() {
                    Ok(v) => {
                        got += v.len() as u64;
                        black_box(&v);
                    }
                    Err(_) => break,
                }
            }
            let _ = p.join();
            t0.elapsed()
        })
    });
    for chunk in [1usize, 256] {
        g.bench_function(
            BenchmarkId::new("rtrb", format!("chunks_of_{chunk}")),
            |b| {
                b.iter_custom(|iters| {
                    let (mut tx, mut rx) = rtrb::RingBuffer::<Record>::new(65_536);
                    let recs = recs.clone();
                    let t0 = Instant::now();
                    let p = std::thread::spawn(move || {
                        let mut i = 0u64;
                        while i < iters {
                            if chunk == 1 {
                                if tx.push(recs[i as usize % recs.len()]).is_ok() {
                                    i += 1;
                                } else {
                                    std::hint::spin_loop();
                                }
                            } else {
                                let n = (iters - i).min(chunk as u64) as usize;
                                match tx.write_chunk_uninit(n) {
                                    Ok(w) => {
                                        let base = i as usize;
                                        w.fill_from_iter(
                                            (0..n).map(|j| recs[(base + j) % recs.len()]),
                                        );
                                        i += n as u64;
                                    }
                                    Err(_) => std::hint::spin_loop(),
                                }
                            }
                        }
                    });
                    let mut got = 0u64;
                    while got < iters {
                        let n = rx.slots();
                        if n == 0 {
                            std::hint::spin_loop();
                            continue;
                        }
                        if let Ok(r) = rx.read_chunk(n.min(chunk.max(1) * 64)) {
                            got += r.len() as u64;
                            for x in r.into_iter() {
                                black_box(x);
                            }
                        }
                    }
                    let _ = p.join();
                    t0.elapsed()
                })
            },
        );
    }
    g.finish();
}

/// Baseline for the columnarizer: the same trade batch built the way a batch is usually built
/// from records held in a `Vec`, a column at a time with arrow-rs's iterator constructors
/// (every record kept until the batch is made, one pass over them per column).
fn column_at_a_time(recs: &[Record], names: &[Arc<str>]) -> arrow_array::RecordBatch {
    use arrow_array::types::{Int32Type, Int8Type};
    use arrow_array::{
        ArrayRef, BooleanArray, Decimal128Array, DictionaryArray, Int64Array,
        TimestampMicrosecondArray, TimestampNanosecondArray,
    };
    let t: Vec<&tickwire_codecs::record::Trade> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Trade(t) => Some(t),
            _ => None,
        })
        .collect();
    let null = tickwire_codecs::record::NULL_I64;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            t.iter()
                .map(|_| "binance")
                .collect::<DictionaryArray<Int8Type>>(),
        ),
        Arc::new(
            t.iter()
                .map(|_| "spot")
                .collect::<DictionaryArray<Int8Type>>(),
        ),
        Arc::new(
            t.iter()
                .map(|t| &*names[t.header.symbol.0 as usize])
                .collect::<DictionaryArray<Int32Type>>(),
        ),
        Arc::new(
            t.iter()
                .map(|t| (t.header.event_time != null).then_some(t.header.event_time))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampNanosecondArray::from_iter_values(t.iter().map(|t| t.header.recv_time))
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from_iter_values(t.iter().map(|t| t.trade_id))),
        Arc::new(
            Decimal128Array::from_iter_values(t.iter().map(|t| i128::from(t.price)))
                .with_precision_and_scale(18, 8)
                .expect("price type"),
        ),
        Arc::new(
            Decimal128Array::from_iter_values(t.iter().map(|t| t.qty.get()))
                .with_precision_and_scale(38, 8)
                .expect("qty type"),
        ),
        Arc::new(
            t.iter()
                .map(|t| Some(t.is_buyer_maker != 0))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(t.iter().map(|t| t.trade_time))
                .with_timezone("UTC"),
        ),
    ];
    arrow_array::RecordBatch::try_new(tickwire_codecs::arrow::schema(Kind::Trade), cols)
        .expect("batch")
}

fn columnarize_and_parquet(c: &mut Criterion) {
    let (recs, table) = trades(16_384);
    let names: Vec<Arc<str>> = (0..table.len() as u32)
        .map(|i| {
            table
                .name(tickwire_codecs::record::SymbolId(i))
                .unwrap_or_else(|| Arc::from(""))
        })
        .collect();
    let mut g = c.benchmark_group("columnarize");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("trade/16384_rows", |b| {
        let mut bb = BatchBuilder::new(Kind::Trade, recs.len());
        b.iter(|| {
            for r in &recs {
                let _ = bb.append(r, &[], &names[r.header().symbol.0 as usize]);
            }
            black_box(bb.finish().ok())
        })
    });
    // The baseline must build the very same batch.
    {
        let mut bb = BatchBuilder::new(Kind::Trade, recs.len());
        for r in &recs {
            let _ = bb.append(r, &[], &names[r.header().symbol.0 as usize]);
        }
        assert_eq!(
            bb.finish().expect("batch"),
            column_at_a_time(&recs, &names),
            "the baseline builds the same batch"
        );
    }
    g.bench_function("trade/arrow_rs_column_at_a_time_baseline/16384_rows", |b| {
        b.iter(|| black_box(column_at_a_time(&recs, &names)))
    });
    g.finish();
    let mut bb = BatchBuilder::new(Kind::Trade, recs.len());
    for r in &recs {
        let _ = bb.append(r, &[], &names[r.header().symbol.0 as usize]);
    }
    let batch = bb.finish().expect("batch");
    let mut g = c.benchmark_group("parquet");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    // `sliced`: the batch handed over in the sink's slices (`write_in_slices`), else whole.
    let encode = |props: &parquet::file::properties::WriterProperties, sliced: bool| {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.clone()))
                .expect("writer");
        if sliced {
            tickwire_sinks::parquet::write_in_slices(&mut w, &batch).expect("write");
        } else {
            w.write(&batch).expect("write");
        }
        w.close().expect("close");
        buf.len()
    };
    let zstd3 =
        parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(3).expect("level"));
    let variants = [
        // Baseline: the parquet crate's defaults (dictionary everywhere, no compression).
        (
            "parquet_defaults",
            parquet::file::properties::WriterProperties::builder().build(),
        ),
        // Dictionary everywhere, zstd 3.
        (
            "zstd3_dictionary_all",
            parquet::file::properties::WriterProperties::builder()
                .set_compression(zstd3)
                .set_dictionary_enabled(true)
                .build(),
        ),
        // The sink's properties at zstd 3 with 1 MiB pages (its defaults before 2026-12-07).
        (
            "tickwire_sink_zstd3",
            tickwire_sinks::parquet::writer_properties(&batch.schema(), 3, 128 * 1024, 1 << 20)
                .expect("props"),
        ),
        // What the sink writes by default (tickwire_sinks::parquet::writer_properties with
        // ParquetConfig's defaults: zstd 1, 32 KiB pages).
        ("tickwire_sink", {
            let d = tickwire_sinks::parquet::ParquetConfig::new("");
            tickwire_sinks::parquet::writer_properties(
                &batch.schema(),
                d.zstd_level,
                d.row_group_rows,
                d.page_bytes,
            )
            .expect("props")
        }),
    ];
    for (name, props) in &variants {
        // The sink's own properties are also measured as the sink writes: in slices.
        let modes: &[bool] = if name.starts_with("tickwire_sink") {
            &[false, true]
        } else {
            &[false]
        };
        for &sliced in modes {
            let name = if sliced {
                format!("{name}/in_slices")
            } else {
                name.to_string()
            };
            eprintln!(
                "parquet {name}: {} bytes for {} trades",
                encode(props, sliced),
                batch.num_rows()
            );
            g.bench_function(format!("trade/{name}/16384_rows"), |b| {
                b.iter(|| black_box(encode(props, sliced)))
            });
        }
    }
    g.finish();
}

fn zmq_publish(c: &mut Criterion) {
    let (recs, _) = trades(1024);
    let mut g = c.benchmark_group("zmq_publish");
    g.throughput(Throughput::Elements(1));
    // No subscriber: measures the publisher's own cost per message, both sides equal.
    let counters = Arc::new(PubCounters::default());
    let mut p = Publisher::bind(
        &PubConfig {
            bind: "tcp://127.0.0.1:*".into(),
            encoding: Encoding::Binary,
            sndhwm: 100_000,
            batches: false,
            public: false,
        },
        counters,
    )
    .expect("bind");
    let mut i = 0usize;
    g.bench_function("tickwire_publisher/binary", |b| {
        b.iter(|| {
            p.publish(&recs[i % recs.len()], &[], "BTCUSDT");
            i += 1;
        })
    });
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::PUB).expect("socket");
    raw.bind("tcp://127.0.0.1:*").expect("bind");
    let payloads = binary_payloads(&recs);
    let topic = b"trade.spot.BTCUSDT";
    let mut j = 0usize;
    g.bench_function("raw_libzmq_pub/pre_encoded", |b| {
        b.iter(|| {
            let _ = raw.send(&topic[..], zmq::DONTWAIT | zmq::SNDMORE);
            let _ = raw.send(&payloads[j % payloads.len()][..], zmq::DONTWAIT);
            j += 1;
        })
    });
    g.finish();
}

/// Delivered throughput: a libzmq SUB on its own thread must receive every message. Each
/// sample: a fresh subscriber attaches (probe messages until it sees one), then `iters`
/// messages are sent and timed until the subscriber has them all (or 2 s pass without one;
/// the shortfall is printed as undelivered).
fn delivered(iters: u64, endpoint: &str, mut send: impl FnMut(u64, bool)) -> Duration {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let ready = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (r, g, ep) = (ready.clone(), got.clone(), endpoint.to_string());
    let sub = std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::SUB).expect("sub");
        s.set_rcvhwm(0).expect("hwm"); // unlimited: measure the publisher, not the receiver
        s.set_rcvtimeo(2000).expect("timeout");
        s.connect(&ep).expect("connect");
        s.set_subscribe(b"").expect("subscribe");
        loop {
            match s.recv_multipart(0) {
                Ok(p) if p.first().map(|t| t.as_slice()) == Some(b"probe") => {
                    r.store(true, Ordering::Release)
                }
                Ok(_) => {
                    if g.fetch_add(1, Ordering::AcqRel) + 1 == iters {
                        return;
                    }
                }
                Err(_) => {
                    if r.load(Ordering::Acquire) {
                        return; // idle after data: done (with a shortfall)
                    }
                }
            }
        }
    });
    while !ready.load(Ordering::Acquire) {
        send(0, true);
        std::thread::sleep(Duration::from_millis(2));
    }
    let t0 = Instant::now();
    for i in 0..iters {
        send(i, false);
    }
    let _ = sub.join();
    let el = t0.elapsed();
    let n = got.load(Ordering::Acquire);
    if n < iters {
        eprintln!(
            "{endpoint}: {} of {iters} messages not delivered",
            iters - n
        );
        return el.max(Duration::from_secs(2)); // count the wait, never flatter a lossy run
    }
    el
}

fn zmq_delivered(c: &mut Criterion) {
    let (recs, _) = trades(1024);
    let payloads = binary_payloads(&recs);
    let topic = b"trade.spot.BTCUSDT";
    let mut g = c.benchmark_group("zmq_delivered");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);

    let counters = Arc::new(PubCounters::default());
    let mut cfg = PubConfig::new("tcp://127.0.0.1:*");
    cfg.sndhwm = 0; // unlimited here: compare rates, not drop policies
    let mut p = Publisher::bind(&cfg, counters).expect("bind");
    let ep = p.endpoint().expect("endpoint");
    g.bench_function("tickwire_publisher", |b| {
        b.iter_custom(|iters| {
            delivered(iters, &ep, |i, probe| {
                if probe {
                    p.poll_subscriptions();
                    p.publish_raw(b"probe", b"");
                } else {
                    p.publish(&recs[i as usize % recs.len()], &[], "BTCUSDT");
                }
            })
        })
    });

    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::PUB).expect("socket");
    raw.set_sndhwm(0).expect("hwm");
    raw.bind("tcp://127.0.0.1:*").expect("bind");
    let raw_ep = raw.get_last_endpoint().expect("ep").expect("utf8");
    g.bench_function("raw_libzmq_pub", |b| {
        b.iter_custom(|iters| {
            delivered(iters, &raw_ep, |i, probe| {
                let (t, pl): (&[u8], &[u8]) = if probe {
                    (b"probe", b"")
                } else {
                    (topic, &payloads[i as usize % payloads.len()])
                };
                let _ = raw.send(t, zmq::SNDMORE);
                let _ = raw.send(pl, 0);
            })
        })
    });

    // A worker thread runs the crate's fan-out task beside the sending thread, as in a program.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut zsock, zep) = rt.block_on(async {
        // The socket spawns its fan-out task on creation: create it inside the runtime.
        let mut s = zeromq::PubSocket::new();
        let ep = s.bind("tcp://127.0.0.1:0").await.expect("bind");
        (s, ep.to_string())
    });
    let payloads_bytes: Vec<bytes::Bytes> = payloads
        .iter()
        .map(|p| bytes::Bytes::from(p.clone()))
        .collect();
    g.bench_function("zeromq_crate_pub", |b| {
        b.iter_custom(|iters| {
            delivered(iters, &zep, |i, probe| {
                rt.block_on(async {
                    use zeromq::SocketSend;
                    let (t, pl) = if probe {
                        (b"probe".to_vec(), bytes::Bytes::new())
                    } else {
                        (
                            topic.to_vec(),
                            payloads_bytes[i as usize % payloads_bytes.len()].clone(),
                        )
                    };
                    let mut m = zeromq::ZmqMessage::from(t);
                    m.push_back(pl);
                    let _ = zsock.send(m).await;
                })
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = handoff, columnarize_and_parquet, zmq_publish, zmq_delivered
}
criterion_main!(benches);
