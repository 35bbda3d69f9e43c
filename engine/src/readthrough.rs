//! Reading rows back from a store, as Arrow batches of the kind's schema, for the query API's
//! read-through (see [`crate::query`]).
//!
//! PostgreSQL: one `SELECT` with every column as text or a 64-bit integer (times as µs,
//! decimals and level arrays as their exact text), parsed into the kind's Arrow schema.
//! `recv_time` comes back in µs (the table keeps µs) and is widened to ns.

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{ArrayRef, Decimal128Array, ListArray, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, TimeUnit};
use std::sync::Arc;
use tickwire_codecs::arrow::schema;
use tickwire_codecs::decimal::parse_i128;
use tickwire_codecs::record::{Kind, Market};
use tickwire_sinks::table_name;
use tokio::sync::Mutex;
use tokio_postgres::Client;

/// Reads the tables of the postgres sink.
pub struct PgReader {
    url: String,
    schema: String,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader")
            .field("url", &tickwire_sinks::postgres::redact(&self.url))
            .field("schema", &self.schema)
            .finish()
    }
}

fn select_expr(f: &Field) -> String {
    let c = f.name();
    match f.data_type() {
        DataType::Timestamp(_, _) => format!("(extract(epoch from {c}) * 1000000)::bigint"),
        DataType::Decimal128(_, _) | DataType::List(_) => format!("{c}::text"),
        _ => c.to_string(),
    }
}

fn dec(s: &str) -> Result<i128, String> {
    parse_i128(s.as_bytes())
        .map(|p| p.raw)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// Parses PostgreSQL's text of a `numeric[][]`: `{}` or `{{p,q},{p,q}}`.
fn parse_levels(s: &str) -> Result<Vec<(i128, i128)>, String> {
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.is_empty() {
        return Ok(vec![]);
    }
    inner
        .split("},{")
        .map(|pair| {
            let (p, q) = pair
                .split_once(',')
                .ok_or_else(|| format!("bad level {pair:?}"))?;
            Ok((dec(p)?, dec(q)?))
        })
        .collect()
}

/// Builds a batch of `kind`'s schema from rows whose columns are `select_expr`s.
fn to_batch(kind: Kind, rows: &[tokio_postgres::Row]) -> Result<RecordBatch, String> {
    let sch = schema(kind);
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(sch.fields().len());
    for (i, f) in sch.fields().iter().enumerate() {
        let text = |r: &tokio_postgres::Row| -> Result<Option<String>, String> {
            r.try_get::<_, Option<String>>(i).map_err(|e| e.to_string())
        };
        let int = |r: &tokio_postgres::Row| -> Result<Option<i64>, String> {
            r.try_get::<_, Option<i64>>(i).map_err(|e| e.to_string())
        };
        let a: ArrayRef = match f.data_type() {
            DataType::Dictionary(k, _) => match **k {
                DataType::Int8 => {
                    let mut b = StringDictionaryBuilder::<Int8Type>::new();
                    for r in rows {
                        b.append_option(text(r)?);
                    }
                    Arc::new(b.finish())
                }
                _ => {
                    let mut b = StringDictionaryBuilder::<Int32Type>::new();
                    for r in rows {
                        b.append_option(text(r)?);
                    }
                    Arc::new(b.finish())
                }
            },
            DataType::Utf8 => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(text(r)?);
                }
                Arc::new(b.finish())
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let mut b = TimestampMicrosecondBuilder::new();
                for r in rows {
                    b.append_option(int(r)?);
                }
                Arc::new(b.finish().with_timezone("UTC"))
            }
            DataType::Timestamp(_, _) => {
                let mut b = TimestampNanosecondBuilder::new();
                for r in rows {
                    b.append_option(int(r)?.map(|us| us * 1000));
                }
                Arc::new(b.finish().with_timezone("UTC"))
            }
            DataType::Int64 => {
                let mut b = Int64Builder::new();
                for r in rows {
                    b.append_option(int(r)?);
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                for r in rows {
                    b.append_option(r.try_get::<_, Option<bool>>(i).map_err(|e| e.to_string())?);
                }
                Arc::new(b.finish())
            }
            DataType::Decimal128(p, s) => {
                let mut b = Decimal128Builder::new();
                for r in rows {
                    b.append_option(text(r)?.map(|t| dec(&t)).transpose()?);
                }
                Arc::new(
                    b.finish()
                        .with_precision_and_scale(*p, *s)
                        .map_err(|e| e.to_string())?,
                )
            }
            DataType::List(item) => {
                let DataType::Struct(fields) = item.data_type() else {
                    return Err(format!("{}: levels are a list of structs", f.name()));
                };
                let (mut ps, mut qs, mut offs) = (Vec::new(), Vec::new(), vec![0i32]);
                for r in rows {
                    for (p, q) in parse_levels(&text(r)?.unwrap_or_default())? {
                        ps.push(p);
                        qs.push(q);
                    }
                    offs.push(ps.len() as i32);
                }
                let p = Decimal128Array::from(ps)
                    .with_precision_and_scale(18, 8)
                    .map_err(|e| e.to_string())?;
                let q = Decimal128Array::from(qs)
                    .with_precision_and_scale(38, 8)
                    .map_err(|e| e.to_string())?;
                let st = StructArray::try_new(fields.clone(), vec![Arc::new(p), Arc::new(q)], None)
                    .map_err(|e| e.to_string())?;
                Arc::new(
                    ListArray::try_new(
                        item.clone(),
                        arrow_buffer::OffsetBuffer::new(offs.into()),
                        Arc::new(st),
                        None,
                    )
                    .map_err(|e| e.to_string())?,
                )
            }
            t => return Err(format!("{}: no reader for {t}", f.name())),
        };
        cols.push(a);
    }
    RecordBatch::try_new(sch, cols).map_err(|e| e.to_string())
}

impl PgReader {
    /// A reader of `schema`'s tables at `url` (connected at the first query).
    pub fn new(url: &str, schema: &str) -> Self {
        PgReader {
            url: url.to_string(),
            schema: schema.to_string(),
            client: Mutex::new(None),
        }
    }

    /// Rows of `kind` received in `[from_ns, to_ns)`, newest first, at most `limit`.
    pub async fn fetch(
        &self,
        kind: Kind,
        market: Option<Market>,
        symbol: Option<&str>,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
    ) -> Result<Vec<RecordBatch>, String> {
        let sch = schema(kind);
        let cols: Vec<String> = sch.fields().iter().map(|f| select_expr(f)).collect();
        let from_us = from_ns.div_euclid(1000).max(-210_866_803_200_000_000);
        let to_us = to_ns.div_euclid(1000).min(9_214_646_400_000_000);
        let mut sql = format!(
            "SELECT {} FROM {}.{} WHERE recv_time >= timestamptz 'epoch' + $1::bigint * interval '1 microsecond' AND recv_time < timestamptz 'epoch' + $2::bigint * interval '1 microsecond'",
            cols.join(", "),
            self.schema,
            table_name(kind)
        );
        let market = market.map(|m| m.as_str().to_string());
        let symbol = symbol.map(str::to_string);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&from_us, &to_us];
        if let Some(m) = &market {
            params.push(m);
            let _ = std::fmt::Write::write_fmt(
                &mut sql,
                format_args!(" AND market = ${}", params.len()),
            );
        }
        if let Some(s) = &symbol {
            params.push(s);
            let _ = std::fmt::Write::write_fmt(
                &mut sql,
                format_args!(" AND symbol = ${}", params.len()),
            );
        }
        let limit = limit.min(i64::MAX as usize) as i64;
        params.push(&limit);
        let _ = std::fmt::Write::write_fmt(
            &mut sql,
            format_args!(" ORDER BY recv_time DESC LIMIT ${}", params.len()),
        );
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *guard = Some(client);
        }
        let Some(client) = guard.as_ref() else {
            return Err("not connected".into());
        };
        let rows = client
            .query(&sql, &params)
            .await
            .map_err(|e| e.to_string())?;
        drop(guard);
        if rows.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![to_batch(kind, &rows)?])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn level_arrays_parse() {
        assert_eq!(super::parse_levels("{}"), Ok(vec![]));
        assert_eq!(
            super::parse_levels("{{1.50000000,2.00000000},{1.4,0}}"),
            Ok(vec![(150_000_000, 200_000_000), (140_000_000, 0)])
        );
        assert!(super::parse_levels("{{1.5}}").is_err());
    }
}
