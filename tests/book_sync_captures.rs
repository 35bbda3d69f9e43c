//! Order-book sync on real Binance data: the two shared captures and the REST snapshots taken
//! with them (cryptofeed's sample data, 2021). Every symbol's diffs, buffered as a live client
//! would while it fetches the snapshot, must bridge the snapshot and then continue without a
//! single gap (the captures have none), and the books must never cross.

use serde_json::Value;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::{DepthUpdate, Level, Market, Record};
use tickwire_codecs::symbol::SymbolTable;
use tickwire_engine::source::book::{BookSync, SyncEvent};
use tickwire_engine::source::parse_snapshot;
use tickwire_tests::fixtures;

fn check(market: Market, capture: &str, key: &str) -> usize {
    let Some(dir) = fixtures() else {
        eprintln!("SKIPPED: ../shared/fixtures/binance is absent");
        return 0;
    };
    let snaps: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("captures/rest_depth_snapshots.json"))
            .expect("snapshots"),
    )
    .expect("json");
    let text = std::fs::read_to_string(dir.join("captures").join(capture)).expect("capture");
    let table = SymbolTable::new();
    let mut dec = Decoder::new(market, table.clone());
    let mut diffs: Vec<(String, DepthUpdate, Vec<Level>)> = Vec::new();
    for line in text.lines() {
        dec.decode(line.as_bytes(), 0, &mut |r: &Record, lv: &[Level]| {
            if let Record::DepthUpdate(d) = r {
                let name = table
                    .name(d.header.symbol)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                diffs.push((name, *d, lv.to_vec()));
            }
        })
        .expect("capture decodes");
    }
    let mut synced = 0;
    for (symbol, snap) in snaps[key].as_object().expect("market") {
        let resp = &snap["response"];
        let mut book = BookSync::new(market);
        let mine: Vec<_> = diffs.iter().filter(|(s, _, _)| s == symbol).collect();
        assert!(!mine.is_empty(), "{symbol}: no diffs in the capture");
        // A client buffers the stream while the snapshot request is under way.
        for (_, d, lv) in &mine {
            assert_eq!(book.on_diff(d, lv), SyncEvent::Buffered);
        }
        // The snapshot goes through the source's own parser.
        let (last, bids, asks) = parse_snapshot(&resp.to_string()).expect("snapshot");
        let ev = book.on_snapshot(last, &bids, &asks);
        assert_eq!(
            ev,
            SyncEvent::Live,
            "{symbol}: snapshot {last} vs diffs {}..{}",
            mine[0].1.first_update_id,
            mine[mine.len() - 1].1.final_update_id
        );
        assert_eq!(
            book.last_update_id(),
            mine[mine.len() - 1].1.final_update_id.max(last),
            "{symbol}"
        );
        let (bids, asks) = book.top(1);
        assert!(bids[0].price < asks[0].price, "{symbol}: crossed book");
        synced += 1;
    }
    synced
}

#[test]
fn spot_capture_syncs_every_symbol() {
    let n = check(Market::Spot, "spot_2021-10-11.jsonl", "spot");
    assert!(n == 0 || n == 4, "{n}");
}

#[test]
fn usdm_capture_syncs_every_symbol() {
    let n = check(Market::Usdm, "usdm_2021-07-22.jsonl", "usdm");
    assert!(n == 0 || n == 4, "{n}");
}
