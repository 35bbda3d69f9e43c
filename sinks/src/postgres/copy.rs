//! `COPY ... FROM STDIN (FORMAT binary)` encoded straight from Arrow columns.
//!
//! The body is PostgreSQL's binary copy format: a signature and two zero words, then per row
//! a 16-bit field count and per field a 32-bit length (-1 for NULL) and the value in the
//! type's binary `recv` form, then a -1 trailer. Values are written from the Arrow buffers
//! into one reused byte buffer; nothing is allocated per row or per value.
//!
//! - `numeric`: `ndigits, weight, sign, dscale` (16 bit each), then base-10000 digits. Built
//!   from the Decimal128's integer: the value Binance sent, exactly, with display scale 8.
//! - `timestamptz`: µs since 2000-01-01 UTC (`recv_time`'s ns are floored to µs).
//! - levels: a 2-dimensional `numeric` array, `[n][2]` of `[price, qty]`; an empty list is
//!   an empty array.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampNanosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, TimeUnit};

/// `PGCOPY\n\377\r\n\0`, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// µs from 1970-01-01 to 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// `numeric`'s type oid (array element type).
const NUMERIC_OID: u32 = 1700;
const NUMERIC_NEG: u16 = 0x4000;

/// One column, typed once per batch.
enum Col<'a> {
    Dict8(arrow_array::DictionaryArray<Int8Type>),
    Dict32(arrow_array::DictionaryArray<Int32Type>),
    Text(&'a arrow_array::StringArray),
    Int(&'a arrow_array::Int64Array),
    Micros(&'a arrow_array::TimestampMicrosecondArray),
    Nanos(&'a arrow_array::TimestampNanosecondArray),
    Bool(&'a arrow_array::BooleanArray),
    Dec(&'a arrow_array::Decimal128Array, u8),
    Levels {
        list: &'a arrow_array::ListArray,
        price: &'a arrow_array::Decimal128Array,
        qty: &'a arrow_array::Decimal128Array,
        scale: u8,
    },
}

fn unsupported(t: &DataType) -> ArrowError {
    ArrowError::NotYetImplemented(format!("binary COPY of {t}"))
}

fn col(a: &ArrayRef) -> Result<Col<'_>, ArrowError> {
    Ok(match a.data_type() {
        DataType::Dictionary(k, v) if **v == DataType::Utf8 => match **k {
            DataType::Int8 => Col::Dict8(a.as_dictionary::<Int8Type>().clone()),
            DataType::Int32 => Col::Dict32(a.as_dictionary::<Int32Type>().clone()),
            _ => return Err(unsupported(a.data_type())),
        },
        DataType::Utf8 => Col::Text(a.as_string::<i32>()),
        DataType::Int64 => Col::Int(a.as_primitive::<Int64Type>()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Col::Micros(a.as_primitive::<TimestampMicrosecondType>())
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Col::Nanos(a.as_primitive::<TimestampNanosecondType>())
        }
        DataType::Boolean => Col::Bool(a.as_boolean()),
        DataType::Decimal128(_, s) if *s >= 0 => {
            Col::Dec(a.as_primitive::<Decimal128Type>(), *s as u8)
        }
        DataType::List(_) => {
            let list = a.as_list::<i32>();
            let st = list.values().as_struct();
            if st.num_columns() != 2 {
                return Err(unsupported(a.data_type()));
            }
            let (price, qty) = (st.column(0), st.column(1));
            let scale = match (price.data_type(), qty.data_type()) {
                (DataType::Decimal128(_, s), DataType::Decimal128(_, t)) if s == t && *s >= 0 => {
                    *s as u8
                }
                _ => return Err(unsupported(a.data_type())),
            };
            Col::Levels {
                list,
                price: price.as_primitive::<Decimal128Type>(),
                qty: qty.as_primitive::<Decimal128Type>(),
                scale,
            }
        }
        t => return Err(unsupported(t)),
    })
}

/// Appends `v × 10^-scale` in `numeric`'s binary form (without the length word).
pub fn put_numeric(out: &mut Vec<u8>, v: i128, scale: u8) -> Result<(), ArrowError> {
    // Scale up to a multiple of 4 so that base-10000 digits split at the decimal point.
    let pad = (4 - u32::from(scale) % 4) % 4;
    let mag = v
        .unsigned_abs()
        .checked_mul(10u128.pow(pad))
        .ok_or_else(|| ArrowError::ComputeError(format!("numeric {v}e-{scale} too wide")))?;
    let frac_groups = (u32::from(scale) + pad) / 4;
    let mut digits = [0u16; 12];
    let mut n = 0;
    let mut m = mag;
    while m > 0 {
        digits[n] = (m % 10_000) as u16;
        m /= 10_000;
        n += 1;
    }
    // digits[0..n] least significant first. Drop trailing (low) zero groups.
    let mut low = 0;
    while low < n && digits[low] == 0 {
        low += 1;
    }
    let ndigits = n - low;
    let weight = if ndigits == 0 {
        0
    } else {
        n as i32 - 1 - frac_groups as i32
    };
    out.extend_from_slice(&(ndigits as u16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    let sign: u16 = if v < 0 { NUMERIC_NEG } else { 0 };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&u16::from(scale).to_be_bytes());
    for d in digits[low..n].iter().rev() {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(())
}

/// Writes a length word, then what `f` appends, then patches the length.
fn field(
    out: &mut Vec<u8>,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), ArrowError>,
) -> Result<(), ArrowError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    f(out)?;
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn fixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

const NULL: [u8; 4] = (-1i32).to_be_bytes();

/// Encodes `batch` as a complete binary COPY body into `out` (cleared first).
pub fn encode(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    out.clear();
    out.extend_from_slice(HEADER);
    let cols: Vec<Col<'_>> = batch.columns().iter().map(col).collect::<Result<_, _>>()?;
    let nfields = (cols.len() as i16).to_be_bytes();
    for row in 0..batch.num_rows() {
        out.extend_from_slice(&nfields);
        for (c, a) in cols.iter().zip(batch.columns()) {
            if a.is_null(row) {
                out.extend_from_slice(&NULL);
                continue;
            }
            match c {
                Col::Dict8(d) => {
                    let k = d.keys().value(row) as usize;
                    fixed(out, d.values().as_string::<i32>().value(k).as_bytes());
                }
                Col::Dict32(d) => {
                    let k = d.keys().value(row) as usize;
                    fixed(out, d.values().as_string::<i32>().value(k).as_bytes());
                }
                Col::Text(s) => fixed(out, s.value(row).as_bytes()),
                Col::Int(v) => fixed(out, &v.value(row).to_be_bytes()),
                Col::Micros(v) => fixed(out, &(v.value(row) - PG_EPOCH_US).to_be_bytes()),
                Col::Nanos(v) => fixed(
                    out,
                    &(v.value(row).div_euclid(1000) - PG_EPOCH_US).to_be_bytes(),
                ),
                Col::Bool(v) => fixed(out, &[u8::from(v.value(row))]),
                Col::Dec(v, s) => field(out, |o| put_numeric(o, v.value(row), *s))?,
                Col::Levels {
                    list,
                    price,
                    qty,
                    scale,
                } => field(out, |o| {
                    let offs = list.value_offsets();
                    let (a, b) = (offs[row] as usize, offs[row + 1] as usize);
                    if a == b {
                        // An empty array: no dimensions.
                        o.extend_from_slice(&0i32.to_be_bytes());
                        o.extend_from_slice(&0i32.to_be_bytes());
                        o.extend_from_slice(&NUMERIC_OID.to_be_bytes());
                        return Ok(());
                    }
                    o.extend_from_slice(&2i32.to_be_bytes());
                    o.extend_from_slice(&0i32.to_be_bytes());
                    o.extend_from_slice(&NUMERIC_OID.to_be_bytes());
                    for dim in [(b - a) as i32, 2] {
                        o.extend_from_slice(&dim.to_be_bytes());
                        o.extend_from_slice(&1i32.to_be_bytes());
                    }
                    for i in a..b {
                        field(o, |o| put_numeric(o, price.value(i), *scale))?;
                        field(o, |o| put_numeric(o, qty.value(i), *scale))?;
                    }
                    Ok(())
                })?,
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(v: i128, scale: u8) -> Vec<u16> {
        let mut o = Vec::new();
        put_numeric(&mut o, v, scale).expect("test");
        o.chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numerics_in_base_10000() {
        // ndigits, weight, sign, dscale, digits...
        assert_eq!(numeric(0, 8), [0, 0, 0, 8]);
        // 1.5 at scale 8 = 150_000_000
        assert_eq!(numeric(150_000_000, 8), [2, 0, 0, 8, 1, 5000]);
        // 12345.00000001
        assert_eq!(numeric(1_234_500_000_001, 8), [4, 1, 0, 8, 1, 2345, 0, 1]);
        // -0.0001 -> weight -1, one digit 1
        assert_eq!(numeric(-10_000, 8), [1, 0xFFFF, NUMERIC_NEG, 8, 1]);
        // 0.00000001
        assert_eq!(numeric(1, 8), [1, 0xFFFE, 0, 8, 1]);
        // scale 2: 1.23 -> padded to scale 4: 1.2300
        assert_eq!(numeric(123, 2), [2, 0, 0, 2, 1, 2300]);
        // the widest Decimal(38, 8)
        let max = 10i128.pow(38) - 1;
        assert_eq!(numeric(max, 8).len(), 4 + 10);
    }
}
