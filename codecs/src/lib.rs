//! # tickwire-codecs
//!
//! The bottom layer of tickwire: the normalized record model ([`record`]), exact fixed-point
//! decimals ([`decimal`]), symbol interning ([`symbol`]), the zero-copy Binance frame decoder
//! ([`binance`]) and the decode JSON ([`json`]). It depends on no other tickwire crate; the
//! engine and the sinks both build on it.
//!
//! ```
//! use tickwire_codecs::{binance::Decoder, json, record::Market, symbol::SymbolTable};
//!
//! let symbols = SymbolTable::new();
//! let mut dec = Decoder::new(Market::Usdm, symbols.clone());
//! let frame = br#"{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"-0.00038167","T":1562306400000}"#;
//! let mut line = Vec::new();
//! dec.decode(frame, 0, &mut |r: &tickwire_codecs::record::Record, lv: &[_]| {
//!     let name = symbols.name(r.header().symbol).unwrap();
//!     json::write_record(&mut line, r, &name, lv);
//! }).unwrap();
//! let line = String::from_utf8(line).unwrap();
//! assert!(line.contains(r#""funding_rate":"-0.00038167""#));
//! assert!(line.contains(r#""event_time":1562305380000000"#));
//! ```

#[cfg(feature = "arrow")]
pub mod arrow;
pub mod binance;
pub mod decimal;
pub mod json;
pub mod record;
pub mod symbol;

/// Fuzzing entry: decodes arbitrary bytes as a frame of each market. Must never panic.
pub fn fuzz_decode(data: &[u8]) {
    use record::{Level, Market, Record};
    let symbols = symbol::SymbolTable::new();
    for market in [Market::Spot, Market::Usdm] {
        let mut dec = binance::Decoder::new(market, symbols.clone());
        let mut out = Vec::new();
        let mut sink = |r: &Record, lv: &[Level]| {
            out.clear();
            json::write_record(&mut out, r, "X", lv);
        };
        let _ = dec.decode(data, 0, &mut sink);
        let _ = dec.decode_stream(data, Some(b"btcusdt@depth5"), 0, &mut sink);
    }
}
