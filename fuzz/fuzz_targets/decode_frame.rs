//! Fuzz target: any bytes as a Binance frame of either market, raw or with a stream name.
//! The decoder must return Ok or Err and never panic, overflow or read out of bounds.
//!
//! bash scripts/fuzz.sh -max_total_time=60         (stable toolchain; see the script)
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickwire_codecs::fuzz_decode(data);
});
