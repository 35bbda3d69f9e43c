//! The floor of a JetStream reader on this machine: the plainest async-nats loop that reads a
//! stream the way tickwire's writer does (a durable pull consumer, `AckPolicy::All`, up to a
//! million unacknowledged, the client's `messages()` stream, an ack for the newest message
//! every 100 ms) and does nothing
//! with a message but look at its length, for `perf/nats_e2e.sh` to measure beside the writer
//! in the same run. Whatever a message costs here (the pull, the delivery, the ack) any reader
//! pays; what the writer costs above it is decoding, the pipeline and Parquet.
//!
//! `cargo run --release -p tickwire-benches --example nats_pull_floor -- URL STREAM IDLE_SECS`
//! prints `messages bytes seconds` (seconds from the first message to the last) once nothing
//! has come for IDLE_SECS.

use async_nats::jetstream;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (Some(url), Some(stream), Some(idle)) = (a.get(1), a.get(2), a.get(3)) else {
        eprintln!("usage: nats_pull_floor URL STREAM IDLE_SECS");
        std::process::exit(2);
    };
    let idle = Duration::from_secs_f64(idle.parse().unwrap_or(2.0));
    if let Err(e) = run(url, stream, idle).await {
        eprintln!("nats_pull_floor: {e}");
        std::process::exit(1);
    }
}

async fn run(
    url: &str,
    stream: &str,
    idle: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("floor".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            // The writer's settings (config.rs): acks come every 100 ms, so the default 1,000
            // pending would stall delivery between them.
            max_ack_pending: 1_000_000,
            ack_wait: Duration::from_secs(600),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let mut newest = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            m = messages.next() => match m {
                Some(Ok(msg)) => {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    n += 1;
                    bytes += msg.payload.len() as u64;
                    newest = Some(msg);
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            _ = tick.tick() => {
                if let Some(m) = newest.take() {
                    m.ack().await?;
                }
                if last.elapsed() >= idle {
                    break;
                }
            }
        }
    }
    if let Some(m) = newest.take() {
        m.ack().await?;
    }
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    println!("{n} {bytes} {secs:.3}");
    Ok(())
}
