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
    Decimal128Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
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

/// The values of a text column (plain or dictionary-encoded with `Int8`/`Int32` keys).
pub fn strings(a: &ArrayRef) -> Result<Vec<Option<&str>>, ArrowError> {
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

fn null_map(out: &mut Vec<u8>, a: &ArrayRef, rows: &[u32]) {
    if a.null_count() == 0 {
        out.resize(out.len() + rows.len(), 0);
        return;
    }
    out.extend(rows.iter().map(|&i| u8::from(a.is_null(i as usize))));
}

/// The rank of each distinct text of a dictionary column's values, in byte order (equal texts
/// share a rank), and the number of ranks. `None` for other columns or a column with nulls.
fn dictionary_ranks(a: &ArrayRef) -> Option<(Vec<u32>, u32)> {
    fn ranks(vals: &arrow_array::StringArray) -> (Vec<u32>, u32) {
        let mut by_text: Vec<u32> = (0..vals.len() as u32).collect();
        by_text.sort_unstable_by(|&x, &y| vals.value(x as usize).cmp(vals.value(y as usize)));
        let mut rank = vec![0u32; vals.len()];
        let mut r = 0u32;
        for (n, w) in by_text.iter().enumerate() {
            if n > 0 && vals.value(*w as usize) != vals.value(by_text[n - 1] as usize) {
                r += 1;
            }
            rank[*w as usize] = r;
        }
        (rank, r + 1)
    }
    if a.null_count() > 0 {
        return None;
    }
    let DataType::Dictionary(k, v) = a.data_type() else {
        return None;
    };
    if **v != DataType::Utf8 {
        return None;
    }
    macro_rules! keyed {
        ($t:ty) => {{
            let d = a.as_dictionary::<$t>();
            let (rank, n) = ranks(d.values().as_string::<i32>());
            let keys = d
                .keys()
                .values()
                .iter()
                .map(|&k| rank.get(k as usize).copied())
                .collect::<Option<Vec<u32>>>()?;
            Some((keys, n))
        }};
    }
    match k.as_ref() {
        DataType::Int8 => keyed!(Int8Type),
        DataType::Int16 => keyed!(Int16Type),
        DataType::Int32 => keyed!(Int32Type),
        _ => None,
    }
}

/// The order in which the rows of `batch` are sent: the tables' sorting key
/// `(market, symbol, recv_time)`.
///
/// ClickHouse sorts each inserted block by the table's key unless the block already is in that
/// order, which it checks first; sending it sorted saves the server the sort and the
/// permutation of every column (perf/RESULTS.md, issue #5). A batch arrives in receive order
/// with its symbols interleaved, and each symbol's rows come from one connection in receive
/// order, so a stable counting sort by (market, symbol) puts it in key order in one pass; if
/// receive times still go back somewhere (a clock step), a stable sort by the whole key does.
/// `None` when the rows already are in key order, or when the batch has no such key columns
/// (the server sorts then, as for any block).
pub fn key_order(batch: &RecordBatch) -> Option<Vec<u32>> {
    let (market, markets) = dictionary_ranks(batch.column_by_name("market")?)?;
    let (symbol, symbols) = dictionary_ranks(batch.column_by_name("symbol")?)?;
    let recv = batch.column_by_name("recv_time")?;
    let recv = recv.as_primitive_opt::<TimestampNanosecondType>()?.values();
    let groups = markets.checked_mul(symbols)? as usize;
    let group = |i: usize| (market[i] * symbols + symbol[i]) as usize;
    let n = batch.num_rows();
    let mut sorted = true;
    for i in 1..n {
        let (g0, g1) = (group(i - 1), group(i));
        if g1 < g0 || (g1 == g0 && recv[i] < recv[i - 1]) {
            sorted = false;
            break;
        }
    }
    if sorted {
        return None;
    }
    let mut start = vec![0u32; groups + 1];
    for i in 0..n {
        start[group(i) + 1] += 1;
    }
    for g in 0..groups {
        start[g + 1] += start[g];
    }
    let mut order = vec![0u32; n];
    for i in 0..n {
        let g = group(i);
        order[start[g] as usize] = i as u32;
        start[g] += 1;
    }
    if order.windows(2).any(|w| {
        group(w[0] as usize) == group(w[1] as usize) && recv[w[1] as usize] < recv[w[0] as usize]
    }) {
        order.sort_by_key(|&i| (group(i as usize), recv[i as usize]));
    }
    Some(order)
}

/// Writes a non-list column's data (after the null map, if any) for the rows (or list
/// elements) `rows`, in that order.
fn values(out: &mut Vec<u8>, f: &Field, a: &ArrayRef, rows: &[u32]) -> Result<(), ArrowError> {
    fn fixed<const W: usize, T: Copy>(
        out: &mut Vec<u8>,
        v: &[T],
        rows: &[u32],
        le: impl Fn(T) -> [u8; W],
    ) {
        out.reserve(rows.len() * W);
        for &i in rows {
            out.extend_from_slice(&le(v[i as usize]));
        }
    }
    match f.data_type() {
        DataType::Int64 => fixed(
            out,
            a.as_primitive::<Int64Type>().values(),
            rows,
            i64::to_le_bytes,
        ),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => fixed(
            out,
            a.as_primitive::<TimestampMicrosecondType>().values(),
            rows,
            i64::to_le_bytes,
        ),
        DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, _) => fixed(
            out,
            a.as_primitive::<TimestampNanosecondType>().values(),
            rows,
            i64::to_le_bytes,
        ),
        DataType::Decimal128(p, _) if *p <= 18 => fixed(
            out,
            a.as_primitive::<Decimal128Type>().values(),
            rows,
            |v| (v as i64).to_le_bytes(),
        ),
        DataType::Decimal128(_, _) => fixed(
            out,
            a.as_primitive::<Decimal128Type>().values(),
            rows,
            i128::to_le_bytes,
        ),
        DataType::Boolean => {
            let b = a.as_boolean();
            out.extend(
                rows.iter()
                    .map(|&i| u8::from(b.is_valid(i as usize) && b.value(i as usize))),
            );
        }
        DataType::Utf8 | DataType::Dictionary(_, _) => {
            let s = strings(a)?;
            for &i in rows {
                string(out, s[i as usize].unwrap_or("").as_bytes());
            }
        }
        _ => return Err(unsupported(f)),
    }
    Ok(())
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
/// row's [`BATCH_COLUMN`] (`UInt64`). Rows go in the tables' key order ([`key_order`]), each
/// column gathered straight into the block.
pub fn encode(batch: &RecordBatch, d: Dialect, batch_id: u64) -> Result<Vec<u8>, ArrowError> {
    encode_ids(batch, d, BatchIds::One(batch_id))
}

/// The [`BATCH_COLUMN`] of an encoded block: one id for every row (a sink's batch), or each
/// row's own (rows of many batches read back from a store, as tiering does).
#[derive(Debug, Clone, Copy)]
pub enum BatchIds<'a> {
    /// Every row has this id.
    One(u64),
    /// Row `i` has id `ids[i]` (as many ids as rows).
    PerRow(&'a [u64]),
}

/// [`encode`] with the batch ids given by `ids`.
pub fn encode_ids(batch: &RecordBatch, d: Dialect, ids: BatchIds) -> Result<Vec<u8>, ArrowError> {
    let schema = batch.schema();
    if let BatchIds::PerRow(v) = ids {
        if v.len() != batch.num_rows() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "{} batch ids for {} rows",
                v.len(),
                batch.num_rows()
            )));
        }
    }
    let n = batch.num_rows();
    let rows = key_order(batch).unwrap_or_else(|| (0..n as u32).collect());
    let lists = |f: &Field| matches!(f.data_type(), DataType::List(_));
    let columns = schema
        .fields()
        .iter()
        .map(|f| match d {
            Dialect::Legacy if lists(f) => 2,
            _ => 1,
        })
        .sum::<u64>()
        + 1;
    let mut out = Vec::with_capacity(n * 96 + 1024);
    varuint(&mut out, columns);
    varuint(&mut out, n as u64);
    let header = |out: &mut Vec<u8>, name: &str, ty: &str| {
        string(out, name.as_bytes());
        string(out, ty.as_bytes());
    };
    for (f, a) in schema.fields().iter().zip(batch.columns()) {
        if !lists(f) {
            header(&mut out, f.name(), &wire_type(f, d));
            if f.is_nullable() {
                null_map(&mut out, a, &rows);
            }
            values(&mut out, f, a, &rows)?;
            continue;
        }
        // Levels: `UInt64` end offsets of each row's elements, then the elements of the rows
        // in order, price and quantity (one tuple array, or two Nested arrays on 18.16).
        let list = a.as_list::<i32>();
        let ends = list.value_offsets();
        let mut offsets = Vec::with_capacity(n * 8);
        let mut elements = Vec::with_capacity(list.values().len());
        for &r in &rows {
            let (s, e) = (ends[r as usize] as u32, ends[r as usize + 1] as u32);
            elements.extend(s..e);
            offsets.extend_from_slice(&(elements.len() as u64).to_le_bytes());
        }
        let items = list.values().as_struct();
        let (price, qty) = (items.column(0), items.column(1));
        let pf = Field::new("price", price.data_type().clone(), false);
        let qf = Field::new("qty", qty.data_type().clone(), false);
        match d {
            Dialect::Modern => {
                header(&mut out, f.name(), &wire_type(f, d));
                out.extend_from_slice(&offsets);
                values(&mut out, &pf, price, &elements)?;
                values(&mut out, &qf, qty, &elements)?;
            }
            Dialect::Legacy => {
                for (sf, arr) in [(&pf, price), (&qf, qty)] {
                    let DataType::Decimal128(p, s) = sf.data_type() else {
                        return Err(unsupported(f));
                    };
                    let name = format!("{}.{}", f.name(), sf.name());
                    header(&mut out, &name, &format!("Array(Decimal({p}, {s}))"));
                    out.extend_from_slice(&offsets);
                    values(&mut out, sf, arr, &elements)?;
                }
            }
        }
    }
    header(&mut out, BATCH_COLUMN, "UInt64");
    out.reserve(n * 8);
    match ids {
        BatchIds::One(id) => {
            for _ in 0..n {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        BatchIds::PerRow(v) => {
            for &r in &rows {
                out.extend_from_slice(&v[r as usize].to_le_bytes());
            }
        }
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
