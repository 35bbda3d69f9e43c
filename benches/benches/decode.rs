//! Frame decoding: tickwire's scanner against serde_json and sonic-rs into borrowed typed
//! structs (same fixed-point conversion, same symbol interning), for every stream kind, raw
//! and combined, spot and USD-M, in one run.
//!
//! `cargo bench -p tickwire-benches --bench decode`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tickwire_benches::{cases, decode, Reader, SerdeJson, SonicRs};
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::{Level, Record};
use tickwire_codecs::symbol::{SymbolCache, SymbolTable};

fn baseline<J: Reader>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    c: &tickwire_benches::Case,
    form: &str,
    frame: &[u8],
) {
    let table = SymbolTable::new();
    let mut syms = SymbolCache::new(table);
    let mut lv = Vec::with_capacity(64);
    g.bench_function(BenchmarkId::new(J::NAME, form), |b| {
        b.iter(|| {
            let r = decode::<J>(
                c,
                black_box(frame),
                form == "combined",
                &mut syms,
                1,
                &mut lv,
            );
            black_box(r.ok());
        })
    });
}

fn bench(cr: &mut Criterion) {
    for c in cases() {
        let mut g = cr.benchmark_group(format!("decode/{}/{}", c.market.as_str(), c.kind.as_str()));
        g.throughput(Throughput::Elements(1));
        for (form, frame) in [
            ("raw", c.raw.as_bytes()),
            ("combined", c.combined.as_bytes()),
        ] {
            let mut dec = Decoder::new(c.market, SymbolTable::new());
            let mut slot: Option<Record> = None;
            g.bench_function(BenchmarkId::new("tickwire", form), |b| {
                b.iter(|| {
                    let r = dec.decode_stream(
                        black_box(frame),
                        Some(c.stream.as_bytes()),
                        1,
                        &mut |r: &Record, _: &[Level]| slot = Some(*r),
                    );
                    black_box((r.is_ok(), &slot));
                })
            });
            baseline::<SerdeJson>(&mut g, &c, form, frame);
            baseline::<SonicRs>(&mut g, &c, form, frame);
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
