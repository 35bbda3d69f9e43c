//! ClickHouse Native format, encoded straight from an Arrow `RecordBatch`.
//!
//! One block as the HTTP interface takes it (`INSERT ... FORMAT Native`, no block info):
//! varuint column count, varuint row count, then per column its name, its type (strings:
//! varuint length + bytes) and its data, column after column:
//!
//! | type | data |
//! |---|---|
//! | `Int64`, `DateTime64`, `Decimal(18, s)` | 8 bytes little-endian per row |
//! | `Decimal(38, s)` | 16 bytes little-endian per row |
//! | `UInt8`, `Bool` | 1 byte per row |
//! | `String` | varuint length + bytes per row |
//! | `Nullable(T)` | one byte per row (1 = null), then `T`'s data for every row |
//! | `Array(T)` | `UInt64` cumulative end offsets per row, then `T`'s data for every element |
//! | `Tuple(A, B)` | `A`'s data for every element, then `B`'s |
//!
//! Names and types come from [`super::ddl`], so the block always matches the table; the last
//! column is the batch id ([`BATCH_COLUMN`]). On modern
//! servers `LowCardinality(X)` columns are sent as `X` (the server converts on insert); on
//! 18.16 the levels go to the `Nested` subcolumns `bids.price` and `bids.qty`.

use super::ddl::{column_type, Dialect, BATCH_COLUMN};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampNanosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field};

fn varuint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    varuint(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn unsupported(f: &Field) -> ArrowError {
    ArrowError::NotYetImplemented(format!(
        "Native encoding of {} ({})",
        f.name(),
        f.data_type()
    ))
}

/// The text of row `i` of a string-like column (`Utf8` or a dictionary of `Utf8`).
fn strings(a: &ArrayRef) -> Result<Vec<Option<&str>>, ArrowError> {
    match a.data_type() {
        DataType::Utf8 => Ok(a.as_string::<i32>().iter().collect()),
        DataType::Dictionary(k, _) => {
            let (keys, values): (Vec<Option<usize>>, &ArrayRef) = match k.as_ref() {
                DataType::Int8 => {
                    let d = a.as_dictionary::<Int8Type>();
                    (
                        d.keys().iter().map(|k| k.map(|k| k as usize)).collect(),
                        d.values(),
                    )
                }
                DataType::Int32 => {
                    let d = a.as_dictionary::<Int32Type>();
                    (
                        d.keys().iter().map(|k| k.map(|k| k as usize)).collect(),
                        d.values(),
                    )
                }
                other => {
                    return Err(ArrowError::NotYetImplemented(format!(
                        "dictionary keys {other}"
                    )))
                }
            };
            let vals = values.as_string::<i32>();
            Ok(keys.into_iter().map(|k| k.map(|k| vals.value(k))).collect())
        }
        other => Err(ArrowError::NotYetImplemented(format!(
            "strings from {other}"
        ))),
    }
}

/// Writes a non-list column's data (after the null map, if any).
fn values(out: &mut Vec<u8>, f: &Field, a: &ArrayRef) -> Result<(), ArrowError> {
    match f.data_type() {
        DataType::Int64 => a
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => a
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, _) => a
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DataType::Decimal128(p, _) if *p <= 18 => a
            .as_primitive::<Decimal128Type>()
            .values()
            .iter()
            .for_each(|v| out.extend_from_slice(&(*v as i64).to_le_bytes())),
        DataType::Decimal128(_, _) => a
            .as_primitive::<Decimal128Type>()
            .values()
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DataType::Boolean => a
            .as_boolean()
            .iter()
            .for_each(|v| out.push(u8::from(v.unwrap_or(false)))),
        DataType::Utf8 | DataType::Dictionary(_, _) => {
            for s in strings(a)? {
                string(out, s.unwrap_or("").as_bytes());
            }
        }
        _ => return Err(unsupported(f)),
    }
    Ok(())
}

fn null_map(out: &mut Vec<u8>, a: &ArrayRef) {
    for i in 0..a.len() {
        out.push(u8::from(a.is_null(i)));
    }
}

/// The Native type of a column as sent (the table's type without codecs; `LowCardinality`
/// sent as its inner type).
fn wire_type(f: &Field, d: Dialect) -> String {
    let t = column_type(f, d);
    let t = t.split(" CODEC(").next().unwrap_or(&t).to_string();
    if let Some(inner) = t
        .strip_prefix("LowCardinality(")
        .and_then(|x| x.strip_suffix(')'))
    {
        return inner.to_string();
    }
    t
}

/// Encodes `batch` as one Native block for a table of dialect `d`, with `batch_id` in every
/// row's [`BATCH_COLUMN`] (`UInt64`).
pub fn encode(batch: &RecordBatch, d: Dialect, batch_id: u64) -> Result<Vec<u8>, ArrowError> {
    let schema = batch.schema();
    let mut cols: Vec<(String, String, Vec<u8>)> = Vec::with_capacity(schema.fields().len() + 2);
    for (f, a) in schema.fields().iter().zip(batch.columns()) {
        if let DataType::List(_) = f.data_type() {
            let list = a.as_list::<i32>();
            let items = list.values().as_struct();
            let (price, qty) = (items.column(0), items.column(1));
            let mut offsets = Vec::with_capacity(list.len() * 8);
            let base = list.value_offsets()[0];
            for o in &list.value_offsets()[1..] {
                offsets.extend_from_slice(&((o - base) as u64).to_le_bytes());
            }
            let start = base as usize;
            let end = list.value_offsets()[list.len()] as usize;
            let (price, qty) = (
                price.slice(start, end - start),
                qty.slice(start, end - start),
            );
            let pf = Field::new("price", price.data_type().clone(), false);
            let qf = Field::new("qty", qty.data_type().clone(), false);
            match d {
                Dialect::Modern => {
                    let mut data = offsets;
                    values(&mut data, &pf, &price)?;
                    values(&mut data, &qf, &qty)?;
                    cols.push((f.name().clone(), wire_type(f, d), data));
                }
                Dialect::Legacy => {
                    for (sub, sf, arr) in [("price", &pf, &price), ("qty", &qf, &qty)] {
                        let mut data = offsets.clone();
                        values(&mut data, sf, arr)?;
                        let ty = match sf.data_type() {
                            DataType::Decimal128(p, s) => format!("Array(Decimal({p}, {s}))"),
                            _ => return Err(unsupported(f)),
                        };
                        cols.push((format!("{}.{sub}", f.name()), ty, data));
                    }
                }
            }
            continue;
        }
        let mut data = Vec::with_capacity(a.len() * 9);
        if f.is_nullable() {
            null_map(&mut data, a);
        }
        values(&mut data, f, a)?;
        cols.push((f.name().clone(), wire_type(f, d), data));
    }
    let ids: Vec<u8> = batch_id.to_le_bytes().repeat(batch.num_rows());
    cols.push((BATCH_COLUMN.to_string(), "UInt64".to_string(), ids));
    let mut out = Vec::with_capacity(cols.iter().map(|c| c.2.len() + 64).sum());
    varuint(&mut out, cols.len() as u64);
    varuint(&mut out, batch.num_rows() as u64);
    for (name, ty, data) in cols {
        string(&mut out, name.as_bytes());
        string(&mut out, ty.as_bytes());
        out.extend_from_slice(&data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varuints() {
        for (v, want) in [
            (0u64, vec![0u8]),
            (127, vec![127]),
            (128, vec![0x80, 1]),
            (300, vec![0xac, 2]),
        ] {
            let mut o = Vec::new();
            varuint(&mut o, v);
            assert_eq!(o, want, "{v}");
        }
    }
}
