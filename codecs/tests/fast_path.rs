//! The fused fast path changes speed, never results: with it on and off, every frame gives the
//! same outcome (records, levels, errors, counters). Frames: the repository's bench data, the
//! shared fixtures and captures (when present), and systematic mutations of every kind with a
//! fused decoder (each byte deleted, replaced by a set of tricky bytes, the frame cut at each
//! length).

use std::path::Path;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::{Level, Market, Record};
use tickwire_codecs::symbol::SymbolTable;

type Outcome = (Result<String, String>, Vec<(Record, Vec<Level>)>);

fn run(dec: &mut Decoder, frame: &[u8], stream: Option<&[u8]>) -> Outcome {
    let mut out = Vec::new();
    let r = dec.decode_stream(frame, stream, 42, &mut |r: &Record, lv: &[Level]| {
        out.push((*r, lv.to_vec()))
    });
    (r.map(|f| format!("{f:?}")).map_err(|e| e.to_string()), out)
}

fn frames() -> Vec<(Market, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut v = Vec::new();
    let mut add = |m: Market, p: &Path| {
        if let Ok(t) = std::fs::read_to_string(p) {
            v.extend(t.lines().map(|l| (m, l.to_string())));
        }
    };
    add(Market::Spot, &root.join("benches/data/spot.jsonl"));
    add(Market::Usdm, &root.join("benches/data/usdm.jsonl"));
    let shared = root.join("../shared/fixtures/binance");
    add(Market::Spot, &shared.join("spot.jsonl"));
    add(Market::Usdm, &shared.join("usdm.jsonl"));
    add(Market::Spot, &shared.join("captures/spot_2021-10-11.jsonl"));
    add(Market::Usdm, &shared.join("captures/usdm_2021-07-22.jsonl"));
    v
}

fn mutations(f: &str) -> Vec<Vec<u8>> {
    let b = f.as_bytes();
    let mut v = Vec::new();
    for i in 0..b.len() {
        let mut d = b.to_vec();
        d.remove(i);
        v.push(d);
        for c in [
            b' ', b'"', b'\\', b',', b'}', b'-', b'.', b'0', b'9', b'e', b'x', 0xff,
        ] {
            let mut d = b.to_vec();
            d[i] = c;
            v.push(d);
        }
        v.push(b[..i].to_vec());
    }
    v
}

#[test]
fn fast_and_general_paths_agree() {
    let frames = frames();
    assert!(frames.len() >= 16, "bench data present");
    let table = SymbolTable::new();
    let mut checked = 0usize;
    let mut fast_accepts = 0usize;
    for market in [Market::Spot, Market::Usdm] {
        let mut fast = Decoder::new(market, table.clone());
        let mut general = Decoder::new(market, table.clone()).with_fast_path(false);
        for (m, f) in frames.iter().filter(|(m, _)| *m == market) {
            let hot = [
                "\"e\":\"trade\"",
                "\"e\":\"aggTrade\"",
                "\"e\":\"depthUpdate\"",
                "\"e\":\"bookTicker\"",
                "{\"u\":",
                "\"e\":\"markPriceUpdate\"",
                "\"e\":\"24hrTicker\"",
                "\"e\":\"kline\"",
                "\"e\":\"forceOrder\"",
                "{\"lastUpdateId\":",
            ]
            .iter()
            .any(|k| f.contains(k));
            let mut inputs = vec![f.as_bytes().to_vec()];
            if hot && checked < 400_000 {
                inputs.extend(mutations(f));
            }
            for input in &inputs {
                for stream in [None, Some(&b"btcusdt@depth20@100ms"[..])] {
                    let a = run(&mut fast, input, stream);
                    let b = run(&mut general, input, stream);
                    assert_eq!(a, b, "{m:?} {}", String::from_utf8_lossy(input));
                    fast_accepts += usize::from(a.0.is_ok() && !a.1.is_empty());
                    checked += 1;
                }
            }
        }
        assert_eq!(fast.stats(), general.stats());
    }
    assert!(checked > 50_000, "{checked} inputs");
    assert!(fast_accepts > 1_000, "{fast_accepts} decoded");
}
