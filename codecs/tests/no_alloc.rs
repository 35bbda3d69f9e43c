//! Decoding allocates nothing per frame once the symbol cache and level arena are warm.
//!
//! A counting global allocator wraps the system one; the test decodes every kind of frame once
//! to warm up, then decodes them all again many times and requires zero allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tickwire_codecs::binance::Decoder;
use tickwire_codecs::record::{Level, Market, Record};
use tickwire_codecs::symbol::SymbolTable;

struct Counting;

thread_local! {
    /// Whether this thread counts, and its count. Both per thread: the harness and the other
    /// test allocate on their own threads meanwhile, and must not show up here.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

fn allocs() -> u64 {
    ALLOCS.with(|a| a.get())
}

// SAFETY: forwards every call unchanged to `System`, which upholds the `GlobalAlloc` contract;
// the counter has no effect on the memory handed out.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SPOT: &[&str] = &[
    r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#,
    r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":3000000001,"p":"37000.12000000","q":"0.00123000","T":1700000000120,"m":false,"M":true}}"#,
    r#"{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100","f":100,"l":105,"T":1672515782136,"m":true,"M":true}"#,
    r#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
    r#"{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"],["0.0023","5"]],"a":[["0.0026","100"]]}"#,
    r#"{"stream":"bnbbtc@depth5@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}"#,
    r#"{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}"#,
    r#"{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00","w":"0.0018","x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}"#,
    r#"{"result":null,"id":1}"#,
    r#"{"code":2,"msg":"Invalid request: unknown variable","id":1}"#,
    r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"0.000000001","q":"1","T":1,"m":true}"#,
    r#"{"e":"somethingNew","E":1}"#,
];

const USDM: &[&str] = &[
    r#"{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}"#,
    r#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
    r#"{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}"#,
    r#"{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#,
    r#"{"stream":"btcusdt@depth20@100ms","data":{"e":"depthUpdate","E":1571889248277,"T":1571889248276,"s":"BTCUSDT","U":390497796,"u":390497878,"pu":390497794,"b":[["7403.89","0.002"],["7403.90","3.906"]],"a":[["7405.96","3.340"],["7406.63","4.525"]]}}"#,
    r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1.0"},{"e":"markPriceUpdate","E":1,"s":"ETHUSDT","p":"2.0"}]}"#,
];

#[test]
fn decoding_allocates_nothing_after_warm_up() {
    let symbols = SymbolTable::new();
    let mut spot = Decoder::new(Market::Spot, symbols.clone());
    let mut usdm = Decoder::new(Market::Usdm, symbols);
    // Caller-provided storage: a fixed array the sink copies records into.
    let mut slots = [None::<Record>; 4];
    let mut n = 0usize;
    let mut run = |spot: &mut Decoder, usdm: &mut Decoder, n: &mut usize| {
        let mut sink = |r: &Record, _: &[Level]| {
            slots[*n % 4] = Some(*r);
            *n += 1;
        };
        for f in SPOT {
            let _ = spot.decode(f.as_bytes(), 1, &mut sink);
        }
        for f in USDM {
            let _ = usdm.decode(f.as_bytes(), 1, &mut sink);
        }
    };
    run(&mut spot, &mut usdm, &mut n);
    COUNTING.with(|c| c.set(true));
    let before = allocs();
    for _ in 0..1000 {
        run(&mut spot, &mut usdm, &mut n);
    }
    let after = allocs();
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        after - before,
        0,
        "allocations while decoding {} frames",
        1000 * (SPOT.len() + USDM.len())
    );
    // The loop really decoded: 8 spot + 7 usdm records per round (the array frame holds two).
    assert_eq!(n, 1001 * 15);
    assert_eq!(spot.stats().total_errors(), 1001);
}

/// The counter sees allocations on the counting thread (so a zero above means something).
#[test]
fn the_counter_counts() {
    COUNTING.with(|c| c.set(true));
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 64]);
    let after = allocs();
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert!(after > before);
}
