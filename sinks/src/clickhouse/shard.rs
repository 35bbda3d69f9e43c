//! A ClickHouse cluster written shard by shard: each batch is split by the cluster's sharding
//! key ([`super::ddl::SHARDING_KEY`], `murmurHash3_32(symbol)`) and each part goes to its
//! shard's `<table>_local` tables through a [`ClickHouseSink`] of its own (its own retries,
//! memory budget, spill directory and exactly-once check), so one shard down holds up only
//! its own part. The same function picks the shard a `Distributed` insert would, so rows
//! written directly and rows inserted through the `Distributed` table land alike, and a query
//! of the `Distributed` table sees every row once.

use super::ddl::ClusterLayout;
use super::{ClickHouseConfig, ClickHouseSink};
use crate::{Batch, Committed, Origin, Sink, SinkCounters, SinkError};
use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowDictionaryKeyType, Int32Type, Int8Type};
use arrow_array::ArrayRef;
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_buffer::ArrowNativeType;
use arrow_schema::DataType;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// MurmurHash3 x86 32-bit of `data` with `seed`: ClickHouse's `murmurHash3_32(s)` (seed 0).
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    let mut k = 0u32;
    for (i, b) in tail.iter().enumerate() {
        k |= u32::from(*b) << (8 * i);
    }
    if !tail.is_empty() {
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The shard (0-based, in the cluster's order, each of weight 1) of a symbol's rows.
pub fn shard_of(symbol: &str, shards: usize) -> usize {
    (murmur3_32(symbol.as_bytes(), 0) as usize) % shards.max(1)
}

/// Each row's shard, for a batch with a `symbol` column (dictionary or plain text).
fn row_shards(batch: &RecordBatch, shards: usize) -> Result<Vec<u32>, SinkError> {
    let col = batch
        .column_by_name("symbol")
        .ok_or_else(|| SinkError::Setup("a batch without a symbol column".into()))?;
    let of = |s: &str| shard_of(s, shards) as u32;
    Ok(match col.data_type() {
        DataType::Dictionary(k, _) if **k == DataType::Int8 => per_value::<Int8Type>(col, of),
        DataType::Dictionary(k, _) if **k == DataType::Int32 => per_value::<Int32Type>(col, of),
        DataType::Utf8 => col
            .as_string::<i32>()
            .iter()
            .map(|s| s.map_or(0, of))
            .collect(),
        t => return Err(SinkError::Setup(format!("symbol column of type {t}"))),
    })
}

/// Each row's shard in a dictionary-encoded column: one hash per dictionary value.
fn per_value<K: ArrowDictionaryKeyType>(col: &ArrayRef, of: impl Fn(&str) -> u32) -> Vec<u32> {
    let d = col.as_dictionary::<K>();
    let vals = d.values().as_string::<i32>();
    let per: Vec<u32> = (0..vals.len()).map(|i| of(vals.value(i))).collect();
    d.keys()
        .iter()
        .map(|k| k.and_then(|k| k.to_usize()).map_or(0, |k| per[k]))
        .collect()
}

/// Tells a batch's source it is kept once every shard with a part of it has kept its part.
#[derive(Debug)]
struct Joined {
    left: AtomicUsize,
    hook: Arc<dyn Committed>,
}

impl Committed for Joined {
    fn committed(&self, id: u64) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.hook.committed(id);
        }
    }
}

/// Writes a cluster's shards directly (see the module docs).
#[derive(Debug)]
pub struct ShardedSink {
    shards: Vec<ClickHouseSink>,
    counters: Arc<SinkCounters>,
}

impl ShardedSink {
    /// Connects to every shard (`urls`, in the cluster's order), applies the cluster schema
    /// on each and sends each shard's earlier spill files (under `<spill_dir>/shard-<i>`).
    pub fn new(
        cfg: ClickHouseConfig,
        urls: &[String],
        layout: ClusterLayout,
    ) -> Result<Self, SinkError> {
        if urls.is_empty() {
            return Err(SinkError::Setup("a cluster of no shards".into()));
        }
        let counters = Arc::new(SinkCounters::default());
        let mut shards = Vec::with_capacity(urls.len());
        for (i, u) in urls.iter().enumerate() {
            let mut c = cfg.clone();
            c.url = u.clone();
            c.cluster = Some(layout.clone());
            c.durability.spill_dir = cfg.durability.spill_dir.join(format!("shard-{i}"));
            let store = super::ClickHouseStore::connect(&c)
                .map_err(|e| SinkError::Setup(format!("shard {i} ({u}): {e}")))?;
            shards.push(crate::durable::Durable::with_store_counters(
                store,
                c.durability,
                counters.clone(),
            )?);
        }
        Ok(ShardedSink { shards, counters })
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}

impl Sink for ShardedSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let n = self.shards.len();
        let of = row_shards(&batch.data, n)?;
        let mut parts: Vec<(usize, RecordBatch)> = Vec::new();
        if of.iter().all(|&s| s == of[0]) {
            parts.push((
                of.first().copied().unwrap_or(0) as usize,
                (*batch.data).clone(),
            ));
        } else {
            for shard in 0..n {
                let rows: Vec<u32> = (0..of.len() as u32)
                    .filter(|&r| of[r as usize] == shard as u32)
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let idx = UInt32Array::from(rows);
                let cols = batch
                    .data
                    .columns()
                    .iter()
                    .map(|c| arrow_select::take::take(c.as_ref(), &idx, None))
                    .collect::<Result<Vec<_>, _>>()?;
                parts.push((shard, RecordBatch::try_new(batch.data.schema(), cols)?));
            }
        }
        let origin = batch.origin.as_ref().map(|o| Origin {
            id: o.id,
            replayed: o.replayed,
            hook: Arc::new(Joined {
                left: AtomicUsize::new(parts.len()),
                hook: o.hook.clone(),
            }) as Arc<dyn Committed>,
        });
        let mut by_shard: Vec<Option<Batch>> = vec![None; n];
        for (shard, data) in parts {
            by_shard[shard] = Some(Batch {
                key: batch.key,
                seq: batch.seq,
                data: Arc::new(data),
                origin: origin.clone(),
            });
        }
        // The shards are written at once (each store waits on its own server), as a
        // Distributed insert sends its parts; one part alone needs no thread.
        if by_shard.iter().filter(|p| p.is_some()).count() == 1 {
            for (s, p) in self.shards.iter_mut().zip(&by_shard) {
                if let Some(p) = p {
                    s.write(p)?;
                }
            }
            return Ok(());
        }
        std::thread::scope(|sc| {
            let writes: Vec<_> = self
                .shards
                .iter_mut()
                .zip(&by_shard)
                .filter_map(|(s, p)| p.as_ref().map(|p| sc.spawn(move || s.write(p))))
                .collect();
            let mut first = Ok(());
            for w in writes {
                let r = w
                    .join()
                    .unwrap_or_else(|_| Err(SinkError::Setup("a shard's write panicked".into())));
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        for s in &mut self.shards {
            s.tick()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let mut first = None;
        for s in &mut self.shards {
            if let Err(e) = s.close() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn counters(&self) -> Arc<SinkCounters> {
        self.counters.clone()
    }

    fn known_batches(&mut self, from: u64) -> Result<Vec<u64>, SinkError> {
        let mut ids = Vec::new();
        for s in &mut self.shards {
            ids.extend(s.known_batches(from)?);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from ClickHouse 18.16's `murmurHash3_32` (and the reference implementation).
    #[test]
    fn murmur3_is_clickhouses() {
        assert_eq!(murmur3_32(b"BTCUSDT", 0), 2_164_919_037);
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        // The shards 18.16 puts the simulator's symbols on (`murmurHash3_32(symbol) % 2`).
        for (sym, shard) in [
            ("BTCUSDT", 1),
            ("ETHUSDT", 0),
            ("SOLUSDT", 1),
            ("PEPEUSDT", 0),
        ] {
            assert_eq!(shard_of(sym, 2), shard, "{sym}");
        }
    }
}
