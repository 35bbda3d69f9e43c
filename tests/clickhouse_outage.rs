//! The ClickHouse sink across a real server outage: the server the test command runs is
//! killed (SIGKILL) while batches are being written and started again a few seconds later. Every batch
//! must be stored exactly once: the table counts equal what was written, and no natural key
//! appears twice. (It restarts the shared server, so it lives in a test binary of its own.)

use std::process::Command;
use std::time::{Duration, Instant};
use tickwire_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use tickwire_tests::{clickhouse, trade_batch as trades};

const PID: &str = "/var/run/clickhouse-server/clickhouse-server.pid";

/// The tests here restart the one server: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts the server and waits until it answers, trying again while a start fails (a just
/// killed server's files may still be locked for a moment).
fn start_server() {
    for _ in 0..10 {
        let _ = Command::new("su")
            .args(["-s", "/bin/sh", "clickhouse", "-c"])
            .arg(format!("clickhouse-server --config-file=/etc/clickhouse-server/config.xml --daemon --pid-file={PID}"))
            .status();
        if wait_up(Duration::from_secs(15)) {
            return;
        }
    }
}

/// Restarts the server when dropped, so a failing test never leaves it down.
struct Restart;
impl Drop for Restart {
    fn drop(&mut self) {
        if clickhouse("SELECT 1").is_err() {
            start_server();
            wait_up(Duration::from_secs(60));
        }
    }
}

fn wait_up(limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if clickhouse("SELECT 1").is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The server to itself (one test at a time), restarted whatever happens; `None` (skip) when
/// the running server was not started by the test command.
fn exclusive_server() -> Option<(std::sync::MutexGuard<'static, ()>, Restart)> {
    assert!(
        wait_up(Duration::from_secs(30)),
        "ClickHouse is up (the test command starts it)"
    );
    if !std::path::Path::new(PID).exists() {
        eprintln!(
            "SKIPPED: no {PID}: this server was not started by scripts/test.sh, not restarting it"
        );
        return None;
    }
    Some((SERIAL.lock().unwrap_or_else(|p| p.into_inner()), Restart))
}

#[test]
fn every_batch_lands_exactly_once_across_a_server_outage() {
    let Some((_lock, _guard)) = exclusive_server() else {
        return;
    };
    let db = format!("tickwire_outage_test_{}", std::process::id());
    let mut cfg = ClickHouseConfig::new(
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
    );
    cfg.database.clone_from(&db);
    cfg.durability.max_attempts = 400; // at shutdown: up to ~30 min of retries
    cfg.durability.spill_dir =
        std::env::temp_dir().join(format!("tickwire-outage-{}", std::process::id()));
    let mut sink = ClickHouseSink::new(cfg).expect("sink");
    let (batches, rows) = (60usize, 2_000usize);
    let writer = std::thread::spawn(move || {
        let mut done = Vec::with_capacity(batches);
        for i in 0..batches {
            sink.write(&trades((i * rows) as i64, rows)).expect("taken");
            done.push(Instant::now());
            std::thread::sleep(Duration::from_millis(100));
        }
        // Shutdown stores everything still pending.
        sink.close().expect("closed");
        (sink, done)
    });
    // Crash the server (SIGKILL) while the writer is mid-way, keep it down for 3 s, start it.
    std::thread::sleep(Duration::from_millis(1500));
    kill_server();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    start_server();
    assert!(wait_up(Duration::from_secs(60)), "server back");
    let up = Instant::now();
    let (sink, done) = writer.join().expect("writer");
    // The pipeline is never held for the outage: writes completed while the server was down
    // (a sink that waited for the server could complete none).
    let during = done.iter().filter(|&&t| t > down && t < up).count();
    assert!(during > 0, "no write completed during the outage");
    assert_eq!(sink.pending(), 0);
    let c = sink.counters();
    let total = (batches * rows) as u64;
    assert_eq!(c.rows(), total, "acknowledged rows");
    assert!(
        c.errors.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the outage was felt (failed attempts)"
    );
    assert_eq!(c.spilled_rows.load(std::sync::atomic::Ordering::Relaxed), 0);
    let count = clickhouse(&format!(
        "SELECT count(), uniqExact(trade_id), uniqExact(_batch) FROM {db}.trades"
    ))
    .expect("count");
    assert_eq!(
        count.trim(),
        format!("{total}\t{total}\t{batches}"),
        "every row once, every batch once"
    );
    clickhouse(&format!("DROP DATABASE {db}")).expect("drop");
}

/// Kills the server (SIGKILL) and waits until its process is gone.
fn kill_server() {
    let pid = std::fs::read_to_string(PID)
        .expect("pid")
        .trim()
        .to_string();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill")
        .success());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30)
        && Command::new("kill")
            .args(["-0", &pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sink with no memory to spare spills batches to disk while the server is down; the next
/// sink to start replays them, exactly once, and removes the files.
#[test]
fn spilled_batches_are_replayed_at_the_next_start() {
    let Some((_lock, _guard)) = exclusive_server() else {
        return;
    };
    let db = format!("tickwire_spill_test_{}", std::process::id());
    let spill = std::env::temp_dir().join(format!("tickwire-spill-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spill);
    let mut cfg = ClickHouseConfig::new(
        std::env::var("TICKWIRE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
    );
    cfg.database.clone_from(&db);
    cfg.durability.max_attempts = 2;
    cfg.durability.retry_base = Duration::from_millis(10);
    cfg.durability.spill_dir = spill.clone();
    cfg.durability.memory_budget_bytes = 1; // nothing may wait in memory: straight to disk
    let mut sink = ClickHouseSink::new(cfg.clone()).expect("sink");
    kill_server();
    for i in 0..3 {
        sink.write(&trades(1_000_000 + i * 500, 500))
            .expect("taken (spilled)");
    }
    sink.close()
        .expect("closed with the server down: nothing pending");
    let spilled = sink
        .counters()
        .spilled_rows
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(spilled, 1_500);
    let files = || {
        std::fs::read_dir(&spill)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("spill-"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(files(), 3);
    start_server();
    assert!(wait_up(Duration::from_secs(60)), "server back");
    let again = ClickHouseSink::new(cfg).expect("restart replays");
    assert_eq!(
        again
            .counters()
            .replayed_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        1_500
    );
    assert_eq!(files(), 0, "replayed files are removed");
    let count = clickhouse(&format!(
        "SELECT count(), uniqExact(trade_id), uniqExact(_batch) FROM {db}.trades"
    ))
    .expect("count");
    assert_eq!(count.trim(), "1500\t1500\t3");
    clickhouse(&format!("DROP DATABASE {db}")).expect("drop");
}
