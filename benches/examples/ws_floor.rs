//! The floor of a WebSocket market-data client on this machine: the plainest tokio-tungstenite
//! loop (`#[tokio::main]`, one task reading a combined stream and dropping each frame) against
//! the same simulator and streams as `tickwire run`, for `perf/rate_cost.sh` to measure beside
//! the engine in the same run. Whatever a frame costs here (the wake-up, the socket read, the
//! WebSocket framing) any client pays; what tickwire costs above it is its own.
//!
//! `cargo run --release -p tickwire-benches --example ws_floor -- URL COUNT_FILE`
//! (writes the number of frames read so far to COUNT_FILE every 100 ms).

use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (Some(url), Some(count_file)) = (a.get(1), a.get(2)) else {
        eprintln!("usage: ws_floor URL COUNT_FILE");
        std::process::exit(2);
    };
    let frames = Arc::new(AtomicU64::new(0));
    let (ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ws_floor: cannot connect to {url}: {e}");
            std::process::exit(1);
        }
    };
    let (count_file, seen) = (count_file.clone(), frames.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let tmp = format!("{count_file}.tmp");
            if std::fs::write(&tmp, seen.load(Ordering::Relaxed).to_string()).is_ok() {
                let _ = std::fs::rename(&tmp, &count_file);
            }
        }
    });
    let (_, mut rx) = ws.split();
    while let Some(m) = rx.next().await {
        match m {
            Ok(m) if m.is_text() || m.is_binary() => {
                std::hint::black_box(m.into_data());
                frames.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("ws_floor: {e}");
                break;
            }
        }
    }
}
