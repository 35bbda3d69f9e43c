//! Symbol names by id, cached per thread so the shared table's lock is taken only for new ids.

use std::sync::Arc;
use tickwire_codecs::record::SymbolId;
use tickwire_codecs::symbol::SymbolTable;

/// A thread's cache of the symbol table's names.
#[derive(Debug)]
pub struct Names {
    table: Arc<SymbolTable>,
    cache: Vec<Arc<str>>,
}

impl Names {
    /// A cache over `table`.
    pub fn new(table: Arc<SymbolTable>) -> Self {
        Names {
            table,
            cache: Vec::new(),
        }
    }

    /// The name of `id` ("" for an id the table never handed out).
    pub fn get(&mut self, id: SymbolId) -> &str {
        let i = id.0 as usize;
        while self.cache.len() <= i {
            let next = SymbolId(self.cache.len() as u32);
            self.cache
                .push(self.table.name(next).unwrap_or_else(|| Arc::from("")));
        }
        &self.cache[i]
    }
}
