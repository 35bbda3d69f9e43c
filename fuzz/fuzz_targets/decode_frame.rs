//! Fuzz target: any bytes as a Binance frame of either market, raw or with a stream name.
//! The decoder must return Ok or Err and never panic, overflow or read out of bounds.
//!
//! cargo +nightly fuzz run decode_frame            (from the repository root)
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickwire_codecs::fuzz_decode(data);
});
