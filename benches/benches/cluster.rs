//! Writing a ClickHouse cluster of two shards: tickwire's sharded sink (each batch split by
//! `murmurHash3_32(symbol)` and each part inserted straight into its shard's `trades_local`)
//! against an insert of the same Native block into the `Distributed` table on shard 1, the
//! server forwarding each shard's part: synchronously (`insert_distributed_sync = 1`: acked
//! once every shard has its part, the guarantee the sink needs for exactly-once) and the
//! default asynchronous way (acked once queued on shard 1's disk, sent in the background).
//! 50,000 trades of 4 symbols (both shards get rows), the same batch each time. Needs the two
//! servers the test command starts as cluster `tickwire` (`TICKWIRE_CLICKHOUSE_URL`,
//! `TICKWIRE_CLICKHOUSE_COLD_URL`); skipped without them.
//!
//! `cargo bench -p tickwire-benches --bench cluster`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use tickwire_sinks::clickhouse::ddl::{ClusterLayout, Dialect};
use tickwire_sinks::clickhouse::{native, ClickHouseConfig, ShardedSink};
use tickwire_sinks::Sink;

const N: usize = 50_000;

fn bench(c: &mut Criterion) {
    let urls = [
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
        std::env::var("TICKWIRE_CLICKHOUSE_COLD_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8124".into()),
    ];
    let db = "tickwire_bench_cluster";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clients: Vec<clickhouse::Client> = urls
        .iter()
        .map(|u| {
            clickhouse::Client::default()
                .with_url(u)
                .with_validation(false)
        })
        .collect();
    for cl in &clients {
        if let Err(e) = rt.block_on(cl.query(&format!("DROP DATABASE IF EXISTS {db}")).execute()) {
            eprintln!("SKIPPED: no ClickHouse cluster ({e}); run scripts/test.sh first");
            return;
        }
    }
    let mut cfg = ClickHouseConfig::new(&urls[0]);
    cfg.database = db.into();
    cfg.durability.spill_dir = std::env::temp_dir().join("tickwire-bench-cluster-spill");
    let layout = ClusterLayout {
        cluster: "tickwire".into(),
        replicated: false,
        on_cluster: false,
    };
    let mut sink = match ShardedSink::new(cfg, &urls, layout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no ClickHouse cluster ({e}); run scripts/test.sh first");
            return;
        }
    };
    let (batch, _) = tickwire_benches::store_trades(N);
    let rt_ref = &rt;
    // Each iteration encodes the batch, as a sink does.
    let into_distributed = |sync: &str| {
        let rt = rt_ref;
        let cl = clients[0].clone();
        let sync = sync.to_string();
        let data = batch.data.clone();
        move || {
            let body =
                bytes::Bytes::from(native::encode(&data, Dialect::Legacy, 7).expect("encode"));
            rt.block_on(async {
                let mut ins = cl
                    .insert_formatted_with(format!("INSERT INTO {db}.trades FORMAT Native"))
                    .with_setting("insert_distributed_sync", sync.as_str());
                ins.send(body).await.expect("send");
                ins.end().await.expect("insert");
            })
        }
    };
    // Every case starts from empty shard tables (their size and merges would favour the first).
    let truncate = || {
        std::thread::sleep(Duration::from_secs(2)); // async inserts of the case before land
        for cl in &clients {
            rt.block_on(
                cl.query(&format!("TRUNCATE TABLE {db}.trades_local"))
                    .execute(),
            )
            .expect("truncate");
        }
    };
    let mut g = c.benchmark_group("clickhouse_cluster_insert");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("tickwire_sharded_sink_direct_to_shards", |b| {
        b.iter(|| sink.write(&batch).expect("stored"))
    });
    truncate();
    let sync = into_distributed("1");
    g.bench_function("native_into_distributed_sync", |b| b.iter(&sync));
    truncate();
    let not_sync = into_distributed("0");
    g.bench_function("native_into_distributed_async_ack_when_queued", |b| {
        b.iter(&not_sync)
    });
    g.finish();
    let _ = sink.close();
    // The clients' pooled connections belong to `rt`: every query runs on it.
    let per: Vec<u64> = clients
        .iter()
        .map(|cl| {
            rt.block_on(
                cl.query(&format!("SELECT count() FROM {db}.trades_local"))
                    .fetch_one::<u64>(),
            )
            .unwrap_or(0)
        })
        .collect();
    eprintln!("rows per shard at the end: {per:?} (the async inserts may still be on their way)");
    for cl in &clients {
        let _ = rt.block_on(cl.query(&format!("DROP DATABASE {db}")).execute());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6)).sample_size(10);
    targets = bench
}
criterion_main!(benches);
