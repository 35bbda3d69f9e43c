//! Where an open row group's finished pages wait until the row group is written: a file on
//! the dataset's disk instead of the heap.
//!
//! The parquet crate's `ArrowWriter` keeps every compressed page of a row group until the row
//! group ends (up to `row_group_rows` rows), for every open file: at 200k msg/s that was tens
//! of MB of the engine's heap. With [`SpilledPages`], a page goes to a file as soon as it is
//! cut, and comes back one page at a time when its row group is spliced into the Parquet
//! file. The file is unlinked as soon as it is made (nothing is left behind, not even after a
//! kill -9), and it is cut back to nothing whenever every page in it has been taken back, so
//! it holds at most the open row group's pages (a few MB on disk, mostly in the page cache).

use bytes::Bytes;
use parquet::arrow::arrow_writer::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// The spill file of one open Parquet file, shared by its column chunks' stores.
#[derive(Debug)]
struct PageFile {
    file: File,
    /// Where the next page goes.
    end: u64,
    /// Pages put and not yet taken back.
    held: u64,
}

/// A [`PageStoreFactory`] whose stores keep their pages in one unlinked file.
#[derive(Debug, Clone)]
pub struct SpilledPages {
    file: Arc<Mutex<PageFile>>,
}

impl SpilledPages {
    /// A spill file made (and unlinked at once) at `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        std::fs::remove_file(path)?;
        Ok(SpilledPages {
            file: Arc::new(Mutex::new(PageFile {
                file,
                end: 0,
                held: 0,
            })),
        })
    }

    /// Bytes in the spill file now (pages put and not yet taken back, since it was last cut).
    pub fn len(&self) -> u64 {
        lock(&self.file).end
    }

    /// True when the spill file holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock(f: &Mutex<PageFile>) -> MutexGuard<'_, PageFile> {
    f.lock().unwrap_or_else(|p| p.into_inner())
}

fn io(what: &str, e: std::io::Error) -> ParquetError {
    ParquetError::External(format!("parquet page spill file: {what}: {e}").into())
}

impl PageStoreFactory for SpilledPages {
    fn create(&self, _args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        Ok(Box::new(SpilledColumn {
            file: self.file.clone(),
            at: Vec::new(),
        }))
    }
}

/// One column chunk's pages: where each lies in the spill file.
struct SpilledColumn {
    file: Arc<Mutex<PageFile>>,
    at: Vec<(u64, usize)>,
}

impl PageStore for SpilledColumn {
    fn put(&mut self, value: Bytes) -> Result<PageKey> {
        let mut f = lock(&self.file);
        let off = f.end;
        f.file
            .write_all_at(&value, off)
            .map_err(|e| io("write", e))?;
        f.end += value.len() as u64;
        f.held += 1;
        self.at.push((off, value.len()));
        Ok(PageKey::new(self.at.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let &(off, len) = usize::try_from(key.get())
            .ok()
            .and_then(|k| self.at.get(k))
            .ok_or_else(|| ParquetError::General(format!("no spilled page {}", key.get())))?;
        let mut f = lock(&self.file);
        let mut buf = vec![0u8; len];
        f.file
            .read_exact_at(&mut buf, off)
            .map_err(|e| io("read", e))?;
        f.held = f.held.saturating_sub(1);
        if f.held == 0 {
            // Every page put has been taken back (the row group is written): start over.
            f.file.set_len(0).map_err(|e| io("truncate", e))?;
            f.end = 0;
        }
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages come back as they went in, whatever the order they are taken in; the file is
    /// unlinked from the start and cut back to nothing once every page is taken back.
    #[test]
    fn pages_come_back_and_the_file_is_cut_when_all_are_taken() {
        let path = std::env::temp_dir().join(format!("tw-pages-{}", std::process::id()));
        let spill = SpilledPages::create(&path).expect("spill file");
        assert!(!path.exists(), "unlinked at once");
        let mut cols: Vec<SpilledColumn> = (0..2)
            .map(|_| SpilledColumn {
                file: spill.file.clone(),
                at: Vec::new(),
            })
            .collect();
        let pages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let mut keys = Vec::new();
        for (i, p) in pages.iter().enumerate() {
            keys.push(cols[i % 2].put(Bytes::from(p.clone())).expect("put"));
        }
        assert_eq!(
            spill.len(),
            pages.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        // Column 1's pages first, then column 0's: a row group is spliced column by column.
        for c in [1, 0] {
            for (i, p) in pages.iter().enumerate().filter(|(i, _)| i % 2 == c) {
                assert_eq!(cols[c].take(keys[i]).expect("take"), p.as_slice());
            }
        }
        assert!(spill.is_empty(), "cut back once all is taken");
        assert_eq!(lock(&spill.file).file.metadata().expect("meta").len(), 0);
        // And it starts over from the beginning.
        let k = cols[0].put(Bytes::from_static(b"again")).expect("put");
        assert_eq!(cols[0].take(k).expect("take"), &b"again"[..]);
        assert!(cols[1].take(PageKey::new(99)).is_err());
    }
}
