//! Reading rows back from a store, as Arrow batches of the kind's schema, for the query API's
//! read-through (see [`crate::serve::query`]).
//!
//! Both stores are asked for every column as text (times as integer µs, `recv_time` as ns
//! where the store keeps ns, decimals and level arrays as their exact text), and the text rows
//! are parsed into the kind's Arrow schema by one function ([`to_batch`]).
//! - PostgreSQL: `recv_time` comes back in µs (the table keeps µs) and is widened to ns.
//! - ClickHouse: `FORMAT TabSeparated` over HTTP through the `clickhouse` crate; the 18.16
//!   dialect's integer times and `Nested` levels, or the modern `DateTime64` and
//!   `Array(Tuple)`, picked by the server's version.

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
use tickwire_sinks::clickhouse::ddl::{recv_literal, Dialect, BATCH_COLUMN};
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
            .field("url", &tickwire_sinks::redact(&self.url))
            .field("schema", &self.schema)
            .finish()
    }
}

/// The PostgreSQL select expression of a column, as text.
fn pg_expr(f: &Field) -> String {
    let c = f.name();
    match f.data_type() {
        DataType::Timestamp(_, _) => format!("(extract(epoch from {c}) * 1000000)::bigint::text"),
        _ => format!("{c}::text"),
    }
}

/// The ClickHouse select expression of a column, as text.
pub(crate) fn ch_expr(f: &Field, d: Dialect) -> String {
    // Quoted: some column names are keywords of the server's SQL (`interval` on 18.16).
    let c = format!("`{}`", f.name());
    let name = f.name();
    let modern = d == Dialect::Modern;
    match f.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) if modern => {
            format!("toString(toUnixTimestamp64Micro({c}))")
        }
        DataType::Timestamp(_, _) if modern => format!("toString(toUnixTimestamp64Nano({c}))"),
        DataType::Boolean if modern => format!("toString(toUInt8({c}))"),
        DataType::List(_) if modern => format!(
            "toString(arrayMap(x -> concat(toString(x.1), ',', toString(x.2)), {c}))"
        ),
        DataType::List(_) => format!(
            "toString(arrayMap((p, q) -> concat(toString(p), ',', toString(q)), `{name}.price`, `{name}.qty`))"
        ),
        _ => format!("toString({c})"),
    }
}

fn dec(s: &str) -> Result<i128, String> {
    parse_i128(s.as_bytes())
        .map(|p| p.raw)
        .map_err(|e| format!("{s:?}: {e}"))
}

/// Parses levels from their text in either store: PostgreSQL's `{{p,q},{p,q}}` or `{}`,
/// ClickHouse's `['p,q','p,q']` or `[]`: the numbers in order, paired.
fn parse_levels(s: &str) -> Result<Vec<(i128, i128)>, String> {
    let nums: Vec<&str> = s
        .split(['{', '}', '[', ']', '\'', ',', ' '])
        .filter(|t| !t.is_empty())
        .collect();
    if nums.len() % 2 != 0 {
        return Err(format!("levels {s:?}: an odd count of numbers"));
    }
    nums.chunks(2)
        .map(|pq| Ok((dec(pq[0])?, dec(pq[1])?)))
        .collect()
}

/// A dictionary-encoded text column with keys `K`.
fn dictionary<K: arrow_array::types::ArrowDictionaryKeyType>(
    texts: impl Iterator<Item = Result<Option<String>, String>>,
) -> Result<ArrayRef, String> {
    let mut b = StringDictionaryBuilder::<K>::new();
    for t in texts {
        b.append_option(t?);
    }
    Ok(Arc::new(b.finish()))
}

/// One row: each column's text, `None` for NULL.
pub type TextRow = Vec<Option<String>>;

/// Builds a batch of `kind`'s schema from text rows (one text per column, in schema order).
/// `recv_us`: the store keeps `recv_time` in µs (widened to ns here).
pub fn to_batch(kind: Kind, rows: &[TextRow], recv_us: bool) -> Result<RecordBatch, String> {
    let sch = schema(kind);
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(sch.fields().len());
    for (i, f) in sch.fields().iter().enumerate() {
        let text = |r: &TextRow| -> Result<Option<String>, String> {
            r.get(i)
                .cloned()
                .ok_or_else(|| format!("a row without column {}", f.name()))
        };
        let int = |r: &TextRow| -> Result<Option<i64>, String> {
            text(r)?
                .map(|t| {
                    t.parse::<i64>()
                        .map_err(|e| format!("{}: {t:?}: {e}", f.name()))
                })
                .transpose()
        };
        let a: ArrayRef = match f.data_type() {
            DataType::Dictionary(k, _) => match **k {
                DataType::Int8 => dictionary::<Int8Type>(rows.iter().map(text))?,
                _ => dictionary::<Int32Type>(rows.iter().map(text))?,
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
                    b.append_option(int(r)?.map(|t| if recv_us { t * 1000 } else { t }));
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
                    b.append_option(text(r)?.map(|t| matches!(t.as_str(), "t" | "true" | "1")));
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
        let cols: Vec<String> = sch.fields().iter().map(|f| pg_expr(f)).collect();
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
        let text: Vec<TextRow> = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<_, Option<String>>(i).map_err(|e| e.to_string()))
                    .collect::<Result<TextRow, String>>()
            })
            .collect::<Result<_, _>>()?;
        Ok(vec![to_batch(kind, &text, true)?])
    }
}

/// Reads the tables of the ClickHouse sink.
pub struct ChReader {
    client: clickhouse::Client,
    database: String,
    dialect: Mutex<Option<Dialect>>,
    /// The cold tier (`[tiering]`) and the hot retention (ns): a range reaching further back
    /// than the retention is read from both tiers, each row once.
    cold: Option<(Box<ChReader>, i64)>,
}

impl std::fmt::Debug for ChReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChReader")
            .field("database", &self.database)
            .finish()
    }
}

/// Unescapes a TabSeparated field (`\N` is NULL).
fn tsv_field(s: &str) -> Option<String> {
    if s == "\\N" {
        return None;
    }
    if !s.contains('\\') {
        return Some(s.to_string());
    }
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match it.next() {
            Some('t') => o.push('\t'),
            Some('n') => o.push('\n'),
            Some('0') => o.push('\0'),
            Some(x) => o.push(x),
            None => {}
        }
    }
    Some(o)
}

/// The answer of `sql` as `FORMAT TabSeparated`, one text per column (`None` for NULL).
pub(crate) async fn tsv_rows(
    client: &clickhouse::Client,
    sql: &str,
) -> Result<Vec<TextRow>, clickhouse::error::Error> {
    let body = client
        .query(sql)
        .fetch_bytes("TabSeparated")?
        .collect()
        .await?;
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(tsv_field).collect())
        .collect())
}

/// The rows of a kind in `[from_ns, to_ns)`, of one market and symbol if given.
fn range_cond(
    dialect: Dialect,
    market: Option<Market>,
    symbol: Option<&str>,
    from_ns: i64,
    to_ns: i64,
) -> Result<String, String> {
    let mut c = format!(
        "recv_time >= {} AND recv_time < {}",
        recv_literal(dialect, from_ns),
        recv_literal(dialect, to_ns)
    );
    if let Some(m) = market {
        c.push_str(&format!(" AND market = '{}'", m.as_str()));
    }
    if let Some(s) = symbol {
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("symbol {s:?}: letters and digits only"));
        }
        c.push_str(&format!(" AND symbol = '{s}'"));
    }
    Ok(c)
}

impl ChReader {
    /// A reader of `database`'s tables at the HTTP `url` (user and password optional).
    pub fn new(url: &str, database: &str, user: Option<&str>, password: Option<&str>) -> Self {
        let client = tickwire_sinks::clickhouse::http_client(url, user, password);
        ChReader {
            client,
            database: database.to_string(),
            dialect: Mutex::new(None),
            cold: None,
        }
    }

    /// Reads ranges older than `retention_ns` (before now) from `cold` as well: rows of the
    /// batches the hot tier still holds come from the hot tier, the others from the cold one
    /// (tiering copies whole batches, so no row comes twice and none is missed).
    pub fn with_cold(mut self, cold: ChReader, retention_ns: i64) -> Self {
        self.cold = Some((Box::new(cold), retention_ns));
        self
    }

    /// Rows of `kind` received in `[from_ns, to_ns)`, newest first, at most `limit` from each
    /// tier.
    pub async fn fetch(
        &self,
        kind: Kind,
        market: Option<Market>,
        symbol: Option<&str>,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
    ) -> Result<Vec<RecordBatch>, String> {
        let mut out = self
            .select(kind, market, symbol, from_ns, to_ns, limit, "")
            .await?;
        if let Some((cold, retention)) = &self.cold {
            if from_ns < crate::source::clock::now_ns().saturating_sub(*retention) {
                let hot_ids = self
                    .select_ids(kind, market, symbol, from_ns, to_ns)
                    .await?;
                let not_hot = if hot_ids.is_empty() {
                    String::new()
                } else {
                    format!(
                        " AND {BATCH_COLUMN} NOT IN ({})",
                        hot_ids
                            .iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                out.extend(
                    cold.select(kind, market, symbol, from_ns, to_ns, limit, &not_hot)
                        .await
                        .map_err(|e| format!("cold tier: {e}"))?,
                );
            }
        }
        Ok(out)
    }

    /// The batch ids of the rows [`ChReader::select`] would read.
    async fn select_ids(
        &self,
        kind: Kind,
        market: Option<Market>,
        symbol: Option<&str>,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<u64>, String> {
        let dialect = self.dialect().await?;
        let sql = format!(
            "SELECT DISTINCT {BATCH_COLUMN} FROM {}.{} WHERE {}",
            self.database,
            table_name(kind),
            range_cond(dialect, market, symbol, from_ns, to_ns)?
        );
        self.client
            .query(&sql)
            .fetch_all::<u64>()
            .await
            .map_err(|e| e.to_string())
    }

    async fn dialect(&self) -> Result<Dialect, String> {
        let mut d = self.dialect.lock().await;
        match *d {
            Some(x) => Ok(x),
            None => {
                let v: String = self
                    .client
                    .query("SELECT version()")
                    .fetch_one()
                    .await
                    .map_err(|e| e.to_string())?;
                let x = Dialect::for_version(&v);
                *d = Some(x);
                Ok(x)
            }
        }
    }

    /// Rows of one tier in the range (and `extra`, an `AND ...` condition), newest first.
    #[allow(clippy::too_many_arguments)]
    async fn select(
        &self,
        kind: Kind,
        market: Option<Market>,
        symbol: Option<&str>,
        from_ns: i64,
        to_ns: i64,
        limit: usize,
        extra: &str,
    ) -> Result<Vec<RecordBatch>, String> {
        let dialect = self.dialect().await?;
        let sch = schema(kind);
        let cols: Vec<String> = sch.fields().iter().map(|f| ch_expr(f, dialect)).collect();
        let mut sql = format!(
            "SELECT {} FROM {}.{} WHERE {}",
            cols.join(", "),
            self.database,
            table_name(kind),
            range_cond(dialect, market, symbol, from_ns, to_ns)?
        );
        sql.push_str(extra);
        sql.push_str(&format!(
            " ORDER BY recv_time DESC LIMIT {}",
            limit.min(1 << 40)
        ));
        let rows = tsv_rows(&self.client, &sql)
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![to_batch(kind, &rows, false)?])
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
        assert_eq!(
            super::parse_levels("['1.50000000,2.00000000','1.4,0']"),
            Ok(vec![(150_000_000, 200_000_000), (140_000_000, 0)])
        );
        assert_eq!(super::parse_levels("[]"), Ok(vec![]));
    }
}
