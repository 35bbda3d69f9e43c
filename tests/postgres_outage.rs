//! The PostgreSQL sink across real server outages: PostgreSQL is restarted (`pg_ctlcluster
//! restart`) while batches are written, and stopped while a sink shuts down; afterwards every
//! row is in the table exactly once.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tickwire_sinks::postgres::{PostgresConfig, PostgresSink, Timescale};
use tickwire_tests::{postgres, postgres_url, trade_batch};

/// One test at a time restarts the server.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The local cluster's version directory (`/etc/postgresql/<v>`), if this machine runs one.
fn cluster() -> Option<String> {
    let v = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()?;
    std::path::Path::new(&format!("/etc/postgresql/{v}/main"))
        .exists()
        .then_some(v)
}

fn ctl(action: &str) -> bool {
    let Some(v) = cluster() else { return false };
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &v, "main", action])
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_up(limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if postgres("SELECT 1").is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Starts the server when dropped, so a failing test never leaves it down.
struct Restart;
impl Drop for Restart {
    fn drop(&mut self) {
        if postgres("SELECT 1").is_err() {
            ctl("start");
            wait_up(Duration::from_secs(60));
        }
    }
}

/// The server to itself, started again whatever happens; `None` (skip) when this machine's
/// PostgreSQL is not a local cluster the test may restart.
fn exclusive_server() -> Option<(std::sync::MutexGuard<'static, ()>, Restart)> {
    assert!(
        wait_up(Duration::from_secs(30)),
        "PostgreSQL is up (the test command starts it)"
    );
    if cluster().is_none() || !postgres_url().contains("127.0.0.1") {
        eprintln!("SKIPPED: no local cluster under /etc/postgresql to restart");
        return None;
    }
    Some((SERIAL.lock().unwrap_or_else(|p| p.into_inner()), Restart))
}

fn config(schema: &str) -> PostgresConfig {
    postgres(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).expect("drop");
    let mut cfg = PostgresConfig::new(postgres_url());
    cfg.schema = schema.to_string();
    cfg.timescale = Timescale::Off;
    cfg.durability.retry_base = Duration::from_millis(20);
    cfg.durability.spill_dir = std::env::temp_dir().join(format!("tickwire-pg-outage-{schema}"));
    let _ = std::fs::remove_dir_all(&cfg.durability.spill_dir);
    cfg
}

/// count, distinct trade ids, ledger batches.
fn stored(schema: &str) -> String {
    postgres(&format!(
        "SELECT count(*), count(DISTINCT trade_id), (SELECT count(DISTINCT batch_id) FROM {schema}.tickwire_batches) FROM {schema}.trades"
    ))
    .expect("count")
}

#[test]
fn every_batch_lands_exactly_once_across_a_server_restart() {
    let Some((_lock, _guard)) = exclusive_server() else {
        return;
    };
    let schema = "tw_test_pg_restart";
    let mut cfg = config(schema);
    cfg.durability.max_attempts = 400; // at close: up to ~30 s of retries
    let mut sink = PostgresSink::new(cfg).expect("sink");
    const ROWS: usize = 2_000;
    let mut n = 0u64;
    let mut write = |sink: &mut PostgresSink| {
        let b = trade_batch(n as i64 * ROWS as i64 + 1, ROWS);
        n += 1;
        sink.write(&b).expect("write never fails on an outage");
    };
    for _ in 0..10 {
        write(&mut sink);
    }
    let restart = std::thread::spawn(|| ctl("restart"));
    // Keep writing while the server goes down and comes back.
    while !restart.is_finished() {
        write(&mut sink);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        restart.join().expect("restart thread"),
        "pg_ctlcluster restart"
    );
    assert!(wait_up(Duration::from_secs(30)));
    for _ in 0..10 {
        write(&mut sink);
    }
    sink.close().expect("close");
    let c = sink.counters();
    assert!(
        c.errors.load(Ordering::Relaxed) > 0,
        "the restart broke the sink's connection at least once"
    );
    assert_eq!(c.spilled_rows.load(Ordering::Relaxed), 0);
    let total = n * ROWS as u64;
    assert_eq!(c.rows(), total);
    assert_eq!(stored(schema), format!("{total}|{total}|{n}"));
    postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
}

#[test]
fn batches_spilled_while_the_server_is_down_are_replayed_at_the_next_start() {
    let Some((_lock, _guard)) = exclusive_server() else {
        return;
    };
    let schema = "tw_test_pg_spill";
    let mut cfg = config(schema);
    cfg.durability.max_attempts = 3;
    let mut sink = PostgresSink::new(cfg.clone()).expect("sink");
    sink.write(&trade_batch(1, 1_000)).expect("write");
    assert!(ctl("stop"), "pg_ctlcluster stop");
    for k in 1..6 {
        sink.write(&trade_batch(k * 1_000 + 1, 1_000))
            .expect("write never fails on an outage");
    }
    sink.close().expect("close spills what it cannot store");
    let c = sink.counters();
    assert_eq!(c.rows(), 1_000);
    assert_eq!(c.spilled_rows.load(Ordering::Relaxed), 5_000);
    assert!(ctl("start"), "pg_ctlcluster start");
    assert!(wait_up(Duration::from_secs(30)));
    let again = PostgresSink::new(cfg.clone()).expect("restart replays");
    assert_eq!(
        again.counters().replayed_rows.load(Ordering::Relaxed),
        5_000
    );
    assert_eq!(stored(schema), "6000|6000|6");
    assert_eq!(
        std::fs::read_dir(&cfg.durability.spill_dir)
            .expect("spill dir")
            .count(),
        0,
        "replayed files are removed"
    );
    postgres(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop");
}
