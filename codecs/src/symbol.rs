//! Symbol interning: records carry a 4-byte [`SymbolId`], never a string.
//!
//! A [`SymbolTable`] is shared (`Arc`) by every decoder of a process, so an id means the same
//! symbol on every connection and in every sink. Ids are handed out once, on the first sight
//! of a symbol, and never change or get reused. Decoders keep a small local cache so the
//! shared lock is taken only for a symbol they have not seen before; after warm-up, interning
//! costs one hash lookup and allocates nothing.

use crate::record::SymbolId;
use rustc_hash::FxHashMap;
use std::sync::{Arc, RwLock};

/// Longest symbol accepted (Binance's longest are ~20 bytes, e.g. `BTCUSDT_250328`).
pub const MAX_SYMBOL_LEN: usize = 32;

/// Why a symbol was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// Empty, longer than [`MAX_SYMBOL_LEN`], or not made of ASCII letters, digits, `_`, `-`.
    #[error("invalid symbol")]
    Invalid,
    /// More than `u32::MAX` distinct symbols.
    #[error("symbol table full")]
    Full,
}

#[derive(Debug, Default)]
struct Inner {
    ids: FxHashMap<Box<str>, SymbolId>,
    names: Vec<Arc<str>>,
}

/// The process-wide, append-only symbol table.
#[derive(Debug, Default)]
pub struct SymbolTable {
    inner: RwLock<Inner>,
}

impl SymbolTable {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(SymbolTable::default())
    }

    /// The id of `name` (upper-case ASCII), interning it on first sight.
    pub fn intern(&self, name: &[u8]) -> Result<SymbolId, SymbolError> {
        let name = validate(name)?;
        if let Some(&id) = self.read().ids.get(name) {
            return Ok(id);
        }
        let mut w = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = w.ids.get(name) {
            return Ok(id);
        }
        let id = SymbolId(u32::try_from(w.names.len()).map_err(|_| SymbolError::Full)?);
        w.names.push(Arc::from(name));
        w.ids.insert(Box::from(name), id);
        Ok(id)
    }

    /// The name of `id`, if it was handed out by this table.
    pub fn name(&self, id: SymbolId) -> Option<Arc<str>> {
        self.read().names.get(id.0 as usize).cloned()
    }

    /// The id of `name` if it is known.
    pub fn get(&self, name: &str) -> Option<SymbolId> {
        self.read().ids.get(name).copied()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.read().names.len()
    }

    /// True when no symbol has been interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn validate(name: &[u8]) -> Result<&str, SymbolError> {
    if name.is_empty()
        || name.len() > MAX_SYMBOL_LEN
        || !name
            .iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
    {
        return Err(SymbolError::Invalid);
    }
    // All bytes are ASCII, so this cannot fail.
    std::str::from_utf8(name).map_err(|_| SymbolError::Invalid)
}

/// A decoder's private cache in front of the shared [`SymbolTable`]. Keys are stored inline
/// (no allocation per lookup); the shared table is consulted only on a miss.
#[derive(Debug)]
pub struct SymbolCache {
    table: Arc<SymbolTable>,
    local: FxHashMap<([u8; MAX_SYMBOL_LEN], u8), SymbolId>,
    last: Option<([u8; MAX_SYMBOL_LEN], u8, SymbolId)>,
}

impl SymbolCache {
    /// A cache over `table`.
    pub fn new(table: Arc<SymbolTable>) -> Self {
        SymbolCache {
            table,
            local: FxHashMap::default(),
            last: None,
        }
    }

    /// The shared table.
    pub fn table(&self) -> &Arc<SymbolTable> {
        &self.table
    }

    /// The id of an upper-case symbol.
    #[inline]
    pub fn intern(&mut self, name: &[u8]) -> Result<SymbolId, SymbolError> {
        if name.is_empty() || name.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError::Invalid);
        }
        // Streams repeat one symbol for long runs: check the last one before hashing.
        if let Some((k, l, id)) = &self.last {
            if usize::from(*l) == name.len() && k.get(..name.len()) == Some(name) {
                return Ok(*id);
            }
        }
        let mut key = [0u8; MAX_SYMBOL_LEN];
        key[..name.len()].copy_from_slice(name);
        let len = name.len() as u8;
        let id = match self.local.get(&(key, len)) {
            Some(&id) => id,
            None => {
                let id = self.table.intern(name)?;
                self.local.insert((key, len), id);
                id
            }
        };
        self.last = Some((key, len, id));
        Ok(id)
    }

    /// The id of a symbol written in lower case (stream names), upper-casing on the stack.
    pub fn intern_lower(&mut self, name: &[u8]) -> Result<SymbolId, SymbolError> {
        if name.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError::Invalid);
        }
        let mut up = [0u8; MAX_SYMBOL_LEN];
        for (d, s) in up.iter_mut().zip(name) {
            *d = s.to_ascii_uppercase();
        }
        self.intern(&up[..name.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_shared() {
        let t = SymbolTable::new();
        let mut a = SymbolCache::new(t.clone());
        let mut b = SymbolCache::new(t.clone());
        let btc = a.intern(b"BTCUSDT").expect("valid");
        let eth = a.intern(b"ETHUSDT").expect("valid");
        assert_ne!(btc, eth);
        assert_eq!(b.intern_lower(b"btcusdt"), Ok(btc));
        assert_eq!(a.intern(b"BTCUSDT"), Ok(btc));
        assert_eq!(t.name(eth).as_deref(), Some("ETHUSDT"));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn refuses_bad_symbols() {
        let t = SymbolTable::new();
        let mut c = SymbolCache::new(t);
        for bad in [&b""[..], b"btcusdt", b"BTC USDT", b"BTC\"", &[b'A'; 33][..]] {
            assert_eq!(c.intern(bad), Err(SymbolError::Invalid), "{bad:?}");
        }
        assert_eq!(c.intern(b"BTCUSDT_250328").map(|s| s.0), Ok(0));
    }
}
