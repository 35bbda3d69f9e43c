//! Exact fixed-point decimals at scale 1e-8.
//!
//! Binance sends every price and quantity as a JSON string with at most eight fractional digits.
//! We store the value as an integer count of 1e-8 units (`raw`), plus the number of fractional
//! digits the exchange actually wrote (`dp`, 0..=8), so both the numeric value and the exact text
//! (`"0.0010"` stays `"0.0010"`, not `"0.001"`) can be recovered. No floating point is involved
//! anywhere on the path from text to integer and back.
//!
//! Prices fit an `i64` (up to 92,233,720,368.54775807). Quantities and volumes use `i128`: a
//! 24 h volume of 3e12 units (PEPE) is 3e20 at scale 1e-8, far past `i64`.
//!
//! The `dp` of several fields is packed as 4-bit nibbles in one `u64` per record
//! ([`DpSet`]); nibble value [`DP_NULL`] marks a field the stream did not carry.

use core::fmt;

/// Number of fractional digits every fixed-point value is scaled by.
pub const SCALE: u32 = 8;
/// `10^SCALE`.
pub const SCALE_FACTOR: i64 = 100_000_000;
/// The `dp` nibble that marks a null (absent) decimal field.
pub const DP_NULL: u8 = 0xF;

/// Powers of ten that fit a `u64`.
pub(crate) const POW10: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

/// Why a decimal string was refused. Never rounded, never truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The string was empty where a value is required.
    #[error("empty decimal")]
    Empty,
    /// A character other than digits, one `.` and a leading `-`.
    #[error("malformed decimal")]
    Malformed,
    /// More than eight fractional digits: storing it would round.
    #[error("more than 8 decimal places")]
    TooPrecise,
    /// The value does not fit the field's integer type at scale 1e-8.
    #[error("decimal out of range")]
    OutOfRange,
}

/// A parsed decimal: the value in 1e-8 units and the fractional digits written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<T> {
    /// Value times 1e8.
    pub raw: T,
    /// Fractional digits in the source text, 0..=8.
    pub dp: u8,
}

/// One pass over the text: the mantissa as u64 while it has at most 19 significant digits,
/// the fractional digit count, and the sign. `Ok(None)` means valid but too long for u64.
#[inline(always)]
fn scan(s: &[u8]) -> Result<(bool, Option<u64>, usize), DecimalError> {
    if s.is_empty() {
        return Err(DecimalError::Empty);
    }
    let neg = s[0] == b'-';
    let body = if neg { &s[1..] } else { s };
    let mut m: u64 = 0;
    let mut sig = 0usize; // significant digits (after leading zeros)
    let mut int_digits = 0usize;
    let mut frac_digits = 0usize;
    let mut point = false;
    for &c in body {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            if point {
                frac_digits += 1;
            } else {
                int_digits += 1;
            }
            if sig > 0 || d != 0 {
                sig += 1;
            }
            if sig <= 19 {
                m = m * 10 + u64::from(d);
            }
        } else if c == b'.' && !point && int_digits > 0 {
            point = true;
        } else {
            return Err(DecimalError::Malformed);
        }
    }
    if int_digits == 0 || (point && frac_digits == 0) {
        return Err(DecimalError::Malformed);
    }
    if frac_digits > SCALE as usize {
        return Err(DecimalError::TooPrecise);
    }
    Ok((neg, (sig <= 19).then_some(m), frac_digits))
}

/// Parses decimal text into an `i64` at scale 1e-8 (prices, rates).
#[inline]
pub fn parse_i64(s: &[u8]) -> Result<Parsed<i64>, DecimalError> {
    let (neg, m, dp) = scan(s)?;
    let raw = m
        .and_then(|m| m.checked_mul(POW10[SCALE as usize - dp]))
        .ok_or(DecimalError::OutOfRange)?;
    let raw = if neg {
        0i64.checked_sub_unsigned(raw)
            .ok_or(DecimalError::OutOfRange)?
    } else {
        i64::try_from(raw).map_err(|_| DecimalError::OutOfRange)?
    };
    Ok(Parsed { raw, dp: dp as u8 })
}

/// Parses decimal text into an `i128` at scale 1e-8 (quantities, volumes).
#[inline]
pub fn parse_i128(s: &[u8]) -> Result<Parsed<i128>, DecimalError> {
    let (neg, m, dp) = scan(s)?;
    let raw: u128 = match m {
        Some(m) => u128::from(m) * u128::from(POW10[SCALE as usize - dp]),
        None => {
            // More than 19 significant digits: accumulate in u128 (38 digits fit).
            let body = if neg { &s[1..] } else { s };
            let int = trim_leading_zeros(body.split(|&c| c == b'.').next().unwrap_or(b""));
            if int.len() + SCALE as usize > 38 {
                return Err(DecimalError::OutOfRange);
            }
            let mut acc: u128 = 0;
            for &c in body.iter().filter(|c| c.is_ascii_digit()) {
                acc = acc * 10 + u128::from(c - b'0');
            }
            acc * u128::from(POW10[SCALE as usize - dp])
        }
    };
    let raw = if neg {
        0i128
            .checked_sub_unsigned(raw)
            .ok_or(DecimalError::OutOfRange)?
    } else {
        i128::try_from(raw).map_err(|_| DecimalError::OutOfRange)?
    };
    Ok(Parsed { raw, dp: dp as u8 })
}

#[inline(always)]
fn trim_leading_zeros(int: &[u8]) -> &[u8] {
    let n = int.iter().take_while(|&&c| c == b'0').count();
    &int[n..]
}

/// Writes `raw` (scale 1e-8) with exactly `dp` fractional digits into `out`.
///
/// The digits dropped beyond `dp` are zero for any value produced by [`parse_i64`] or
/// [`parse_i128`] with that `dp`; if they are not (a value computed, not parsed), the text
/// shows all eight digits instead, so formatting never loses information.
pub fn write_decimal(out: &mut Vec<u8>, raw: i128, dp: u8) {
    let neg = raw < 0;
    let abs = raw.unsigned_abs();
    let int = abs / SCALE_FACTOR as u128;
    let frac = (abs % SCALE_FACTOR as u128) as u64;
    let mut dp = dp.min(SCALE as u8);
    if frac % POW10[(SCALE as u8 - dp) as usize] != 0 {
        dp = SCALE as u8;
    }
    if neg {
        out.push(b'-');
    }
    let mut ib = itoa::Buffer::new();
    out.extend_from_slice(ib.format(int).as_bytes());
    if dp > 0 {
        out.push(b'.');
        let shown = frac / POW10[(SCALE as u8 - dp) as usize];
        let digits = ib.format(shown).as_bytes();
        for _ in digits.len()..dp as usize {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    }
}

/// The decimal as a `String` (for tests and messages; the hot path uses [`write_decimal`]).
pub fn to_string(raw: i128, dp: u8) -> String {
    let mut v = Vec::with_capacity(48);
    write_decimal(&mut v, raw, dp);
    String::from_utf8(v).unwrap_or_default()
}

/// Packed per-field decimal places of one record: field `i` uses bits `4i..4i+4`.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DpSet(pub u64);

impl DpSet {
    /// Every field null.
    pub const ALL_NULL: DpSet = DpSet(u64::MAX);

    /// The decimal places of field `i`, or `None` when the field is null.
    #[inline]
    pub fn get(self, i: usize) -> Option<u8> {
        let v = ((self.0 >> (4 * i)) & 0xF) as u8;
        (v != DP_NULL).then_some(v)
    }

    /// Sets field `i` to `dp` decimal places (or null with [`DP_NULL`]).
    #[inline]
    pub fn set(&mut self, i: usize, dp: u8) {
        let shift = 4 * i;
        self.0 = (self.0 & !(0xF << shift)) | (u64::from(dp & 0xF) << shift);
    }
}

impl fmt::Debug for DpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DpSet({:#018x})", self.0)
    }
}

/// A 128-bit fixed-point value stored as two little-endian `u64` words, so that records keep an
/// 8-byte alignment and a padding-free `repr(C)` layout.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Wide {
    lo: u64,
    hi: u64,
}

impl Wide {
    /// Wraps an `i128`.
    #[inline]
    pub const fn new(v: i128) -> Self {
        Wide {
            lo: v as u64,
            hi: (v >> 64) as u64,
        }
    }
    /// The value.
    #[inline]
    pub const fn get(self) -> i128 {
        ((self.hi as i128) << 64) | self.lo as i128
    }
}

impl fmt::Debug for Wide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl From<i128> for Wide {
    fn from(v: i128) -> Self {
        Wide::new(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_values_and_places() {
        let cases: &[(&str, i64, u8)] = &[
            ("0.001", 100_000, 3),
            ("0.0010", 100_000, 4),
            ("100", 10_000_000_000, 0),
            ("25.35190000", 2_535_190_000, 8),
            ("-0.00038167", -38_167, 8),
            ("0.00000001", 1, 8),
            ("0", 0, 0),
            ("-0.0", 0, 1),
            ("92233720368.54775807", i64::MAX, 8),
            ("-92233720368.54775808", i64::MIN, 8),
            ("000123.5", 12_350_000_000, 1),
        ];
        for &(s, raw, dp) in cases {
            assert_eq!(parse_i64(s.as_bytes()), Ok(Parsed { raw, dp }), "{s}");
        }
    }

    #[test]
    fn refuses_what_would_round_or_overflow() {
        use DecimalError::*;
        let cases: &[(&str, DecimalError)] = &[
            ("", Empty),
            ("0.000000001", TooPrecise),
            ("92233720368.54775808", OutOfRange),
            ("1e5", Malformed),
            ("1.2.3", Malformed),
            (".5", Malformed),
            ("5.", Malformed),
            ("-", Malformed),
            ("+1", Malformed),
            (" 1", Malformed),
            ("99999999999999999999", OutOfRange),
        ];
        for &(s, e) in cases {
            assert_eq!(parse_i64(s.as_bytes()), Err(e), "{s}");
        }
    }

    #[test]
    fn wide_holds_pepe_volumes() {
        // 3,012,345,678,901 units: 3.0e20 at scale 1e-8, beyond i64.
        let p = parse_i128(b"3012345678901.00").expect("fits");
        assert_eq!(p.raw, 301_234_567_890_100_000_000);
        assert_eq!(p.dp, 2);
        assert_eq!(Wide::new(p.raw).get(), p.raw);
        assert_eq!(to_string(p.raw, p.dp), "3012345678901.00");
        let big = parse_i128(b"-1234567890123456789012345.12345678").expect("fits");
        assert_eq!(
            to_string(big.raw, big.dp),
            "-1234567890123456789012345.12345678"
        );
        assert_eq!(
            parse_i128(b"12345678901234567890123456789012.1"),
            Err(DecimalError::OutOfRange)
        );
    }

    #[test]
    fn negative_zero_is_zero() {
        // The one text that does not come back as written: "-0.0" is the value 0 ("0.0").
        let p = parse_i64(b"-0.0").expect("valid");
        assert_eq!(to_string(p.raw.into(), p.dp), "0.0");
    }

    #[test]
    fn formats_back_to_the_same_text() {
        for s in [
            "0.001",
            "0.0010",
            "100",
            "-0.0015",
            "250.00",
            "37000.12000000",
            "0",
        ] {
            let p = parse_i64(s.as_bytes()).expect("valid");
            assert_eq!(to_string(p.raw.into(), p.dp), s);
        }
        // A computed value with more digits than `dp` shows them all instead of truncating.
        assert_eq!(to_string(123_456, 2), "0.00123456");
    }

    #[test]
    fn dpset_packs_nibbles() {
        let mut d = DpSet::ALL_NULL;
        assert_eq!(d.get(3), None);
        d.set(0, 8);
        d.set(13, 0);
        assert_eq!(d.get(0), Some(8));
        assert_eq!(d.get(13), Some(0));
        assert_eq!(d.get(1), None);
    }
}
