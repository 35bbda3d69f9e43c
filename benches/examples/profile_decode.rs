//! A tight decode loop for profilers (`perf record -e cpu-clock`, valgrind --tool=callgrind):
//! `cargo run --release -p tickwire-benches --example profile_decode -- <spot|usdm> <kind> [raw|combined] [N]`

use std::hint::black_box;
use tickwire_benches::cases;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::{Level, Record};
use tickwire_codecs::symbol::SymbolTable;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let market = a.get(1).map_or("spot", String::as_str);
    let kind = a.get(2).map_or("trade", String::as_str);
    let form = a.get(3).map_or("raw", String::as_str);
    let n: u64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let Some(c) = cases()
        .into_iter()
        .find(|c| c.market.as_str() == market && c.kind.as_str() == kind)
    else {
        eprintln!("no case {market}/{kind}");
        std::process::exit(2);
    };
    let frame = if form == "combined" {
        c.combined.clone()
    } else {
        c.raw.clone()
    };
    let mut dec = Decoder::new(c.market, SymbolTable::new());
    let mut slot: Option<Record> = None;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let r = dec.decode_stream(
            black_box(frame.as_bytes()),
            Some(c.stream.as_bytes()),
            1,
            &mut |r: &Record, _: &[Level]| slot = Some(*r),
        );
        black_box((r.is_ok(), &slot));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{market}/{kind}/{form}: {ns:.1} ns/frame over {n} frames");
}
