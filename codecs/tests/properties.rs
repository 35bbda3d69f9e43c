//! Property tests: decimal text round-trips exactly; no input makes the decoder panic.

use proptest::prelude::*;
use tickwire_codecs::decimal::{parse_i128, parse_i64, to_string};

/// Decimal text as Binance writes it: optional sign, integer digits, 0..=8 fractional digits.
fn decimal_text(max_int_digits: usize) -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        proptest::string::string_regex(&format!("(0|[1-9][0-9]{{0,{}}})", max_int_digits - 1))
            .expect("regex"),
        0usize..=8,
        any::<u64>(),
    )
        .prop_map(|(neg, int, dp, frac)| {
            let mut s = String::new();
            if neg && int != "0" {
                s.push('-');
            }
            s.push_str(&int);
            if dp > 0 {
                let f = format!("{:08}", frac % 100_000_000);
                s.push('.');
                s.push_str(&f[..dp]);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn i64_text_round_trips(s in decimal_text(10)) {
        let p = parse_i64(s.as_bytes()).expect("in range");
        prop_assert_eq!(to_string(p.raw.into(), p.dp), s);
    }

    #[test]
    fn i128_text_round_trips(s in decimal_text(29)) {
        let p = parse_i128(s.as_bytes()).expect("in range");
        prop_assert_eq!(to_string(p.raw, p.dp), s);
    }

    #[test]
    fn i64_and_i128_agree(s in decimal_text(10)) {
        let a = parse_i64(s.as_bytes()).expect("in range");
        let b = parse_i128(s.as_bytes()).expect("in range");
        prop_assert_eq!(i128::from(a.raw), b.raw);
        prop_assert_eq!(a.dp, b.dp);
    }

    #[test]
    fn any_text_is_ok_or_err(s in "\\PC{0,40}") {
        let _ = parse_i64(s.as_bytes());
        let _ = parse_i128(s.as_bytes());
    }

    #[test]
    fn any_bytes_decode_without_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        tickwire_codecs::fuzz_decode(&b);
    }

    /// Real frames with one byte changed or cut short: still Ok or Err, never a panic.
    #[test]
    fn mutated_frames_decode_without_panic(i in 0usize..2000, c in any::<u8>(), cut in any::<bool>()) {
        const F: &str = r#"{"stream":"btcusdt@depth20@100ms","data":{"e":"depthUpdate","E":1571889248277,"T":1571889248276,"s":"BTCUSDT","U":390497796,"u":390497878,"pu":390497794,"b":[["7403.89","0.002"],["7403.90","3.906"]],"a":[["7405.96","3.340"]]}}"#;
        let mut b = F.as_bytes().to_vec();
        let i = i % b.len();
        if cut { b.truncate(i) } else { b[i] = c }
        tickwire_codecs::fuzz_decode(&b);
    }
}
