//! Raw capture: every WebSocket frame as received, every REST snapshot answer the books took,
//! every connection open and book-snapshot tick, so that `tickwire replay` can run them
//! through the same decode, sequence checks and books again, bit for bit.
//!
//! ## Files
//!
//! `<dir>/<YYYY-MM-DD>/<HH>/<run>-<conn>.twcap.zst` (UTC hour of the entries; `run` the
//! process's start in ms, `conn` a connection's number in the process, 6 digits): one zstd
//! stream per connection and hour (a run of zstd frames of up to 256 KiB of entries each), its
//! entries in the order the connection's task handled them. An entry is a 16-byte little-endian head, `kind` u8, 3 zero bytes, `len` u32, `t`
//! i64 (ns since the epoch, the connection's own clock reading), then `len` bytes:
//!
//! | kind | entry | payload |
//! |---|---|---|
//! | 1 | connection opened (`t`: the time its reconnect gaps carry) | market u8, then the URL |
//! | 2 | frame (`t`: its `recv_time`) | the frame's bytes |
//! | 3 | REST depth snapshot answer | ok u8 (1: the body, 0: the error's text), symbol length u8, symbol, then body or error |
//! | 4 | book-snapshot tick (`t`: the `depth_snapshot` records' time) | none |
//! | 5 | hole: entries the capture could not keep | count u64 |
//! | 6 | a record made from a REST answer (instrument, open_interest, long_short_ratio; `t` its `recv_time`) | symbol length u8, symbol, then the record's ZMQ binary payload |
//! | 7 | what a rotation's duplicate filter did with the records of the frame just before (`t`: its `recv_time`); written only when it did something | one byte a record, in decode order: 0 went on, 1 held (a hand-over's new connection holds it), 2 dropped as a duplicate |
//! | 8 | the records held since the connection's first go on (the connection before it has handed over) | one byte a held record, in order: 0 went on, 2 dropped as a duplicate |
//! | 9 | connection closed (`t`: when it ended) | why, as text: `closed by the server`, `error`, `idle`, `stopped`, `handed over` (a rotation) |
//! | 10 | where a stream had ended before this process (a restarted collector's last id in JetStream), taken by the frame just before | kind u8, id i64, then the symbol |
//!
//! Kinds 7 and 8 make a rotation replay exactly: which connection delivered a record depends
//! on when each one read it, which only the live run knows, so the capture keeps the verdicts.
//!
//! ## Path
//!
//! The connection's task encodes its entries into a buffer of its own and hands it over in
//! chunks of [`CHUNK`] bytes (or sooner, whenever the task is about to wait for the socket)
//! to a bounded queue ([`QUEUE`] chunks) with `try_send`, never waiting; one "capture" thread
//! compresses (zstd [`LEVEL`] by default) and writes. What the queue could not take is
//! counted ([`CaptureCounters::dropped`], in entries) and the next chunk that goes in starts
//! with a hole entry with the count, so a replay knows where it is incomplete. Files roll at
//! the first chunk of a new hour. The
//! writer compresses what each file has pending and flushes it every [`FLUSH_EVERY`] (a
//! zstd frame), so a process killed
//! at any moment leaves files readable up to their last flush; the reader counts the torn
//! tail instead of failing.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickwire_codecs::record::Market;

/// Chunks (of up to [`CHUNK`] bytes) the capture queue holds: 64 MiB at most.
pub const QUEUE: usize = 1024;
/// How often the writer flushes each open file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The default zstd level: one of zstd's fast levels. Market-data JSON still compresses
/// about 6x at it, at a fraction of level 3's CPU (perf/RESULTS.md, "Raw capture").
pub const LEVEL: i32 = -3;

/// Entry kinds (see the module docs).
pub mod kind {
    pub const OPEN: u8 = 1;
    pub const FRAME: u8 = 2;
    pub const SNAPSHOT: u8 = 3;
    pub const TICK: u8 = 4;
    pub const HOLE: u8 = 5;
    pub const RECORD: u8 = 6;
    pub const VERDICT: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const CLOSE: u8 = 9;
    pub const RESUME: u8 = 10;
}

/// Verdicts of a rotation's duplicate filter (entry kinds 7 and 8).
pub mod verdict {
    /// The record went on.
    pub const ON: u8 = 0;
    /// Held until the connection before has handed over.
    pub const HELD: u8 = 1;
    /// Dropped as a duplicate of what the other connection delivered.
    pub const DROPPED: u8 = 2;
}

/// What the capture did.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Entries written (or taken by the writer and about to be: those of a file that then
    /// fails move to `dropped`).
    pub entries: AtomicU64,
    /// Bytes of entries written (before compression), the same way.
    pub bytes: AtomicU64,
    /// Entries the queue could not take (holes in the capture).
    pub dropped: AtomicU64,
    /// Files opened.
    pub files: AtomicU64,
    /// Write errors (each logged; the file is abandoned and its entries counted dropped).
    pub errors: AtomicU64,
}

/// A run of one connection's encoded entries, in order.
struct Chunk {
    file: u64,
    /// Time of its first entry (the file it goes to is that entry's hour).
    t: i64,
    entries: u64,
    bytes: Vec<u8>,
}

/// A running capture: the queue to its writer thread.
#[derive(Debug)]
pub struct Capture {
    tx: Sender<Chunk>,
    next: AtomicU64,
    pub counters: Arc<CaptureCounters>,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("entries", &self.entries)
            .finish()
    }
}

/// The writer thread's handle: join it after every [`Capture`] and [`ConnCapture`] is gone.
#[derive(Debug)]
pub struct Writer(std::thread::JoinHandle<()>);

impl Writer {
    /// Waits until every entry queued is written and every file closed.
    pub fn finish(self) {
        let _ = self.0.join();
    }
}

impl Capture {
    /// Starts a capture into `dir` (created if missing), at zstd `level` ([`LEVEL`] is the
    /// default; negative levels are zstd's fast ones).
    pub fn start(dir: &Path, level: i32) -> std::io::Result<(Arc<Capture>, Writer)> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let counters = Arc::new(CaptureCounters::default());
        let run = crate::source::clock::now_ns() as u64 / 1_000_000;
        let w = {
            let (dir, counters) = (dir.to_path_buf(), counters.clone());
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || write_loop(rx, dir, run, level, counters))?
        };
        Ok((
            Arc::new(Capture {
                tx,
                next: AtomicU64::new(1),
                counters,
            }),
            Writer(w),
        ))
    }

    /// A capture of one connection (a number of its own).
    pub fn connection(self: &Arc<Self>) -> ConnCapture {
        ConnCapture {
            cap: self.clone(),
            file: self.next.fetch_add(1, Ordering::Relaxed),
            lost: 0,
            buf: Vec::new(),
            entries: 0,
            t: 0,
        }
    }
}

/// One connection's side of the capture, owned by its task: entries are encoded into a
/// local buffer, which goes to the writer when it reaches [`CHUNK`] bytes or when the task is
/// about to wait ([`ConnCapture::flush`]), one queue operation for many frames.
#[derive(Debug)]
pub struct ConnCapture {
    cap: Arc<Capture>,
    file: u64,
    /// Entries lost since the last chunk that went in (the next chunk starts with a hole).
    lost: u64,
    buf: Vec<u8>,
    entries: u64,
    /// Time of the buffer's first entry.
    t: i64,
}

/// Bytes a connection buffers before handing them to the writer.
pub const CHUNK: usize = 64 * 1024;

impl Drop for ConnCapture {
    fn drop(&mut self) {
        self.flush();
    }
}

impl ConnCapture {
    fn put(&mut self, kind: u8, t: i64, payload: &[u8]) {
        if self.buf.is_empty() {
            self.t = t;
            self.buf.reserve(CHUNK + 256);
            if self.lost > 0 {
                encode(&mut self.buf, kind::HOLE, t, &self.lost.to_le_bytes());
                self.entries += 1;
            }
        }
        encode(&mut self.buf, kind, t, payload);
        self.entries += 1;
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    /// Hands what is buffered to the writer (never waits: a full queue loses it, counted).
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let c = Chunk {
            file: self.file,
            t: self.t,
            entries: self.entries,
            bytes: std::mem::take(&mut self.buf),
        };
        let n = c.entries - u64::from(self.lost > 0);
        self.entries = 0;
        match self.cap.tx.try_send(c) {
            Ok(()) => self.lost = 0,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.lost += n;
                self.cap.counters.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The connection opened; `t` is the time its reconnect gaps carry.
    pub fn open(&mut self, t: i64, market: Market, url: &str) {
        let mut p = Vec::with_capacity(1 + url.len());
        p.push(market as u8);
        p.extend_from_slice(url.as_bytes());
        self.put(kind::OPEN, t, &p);
    }

    /// A frame, with its `recv_time`.
    #[inline]
    pub fn frame(&mut self, recv: i64, bytes: &[u8]) {
        self.put(kind::FRAME, recv, bytes);
    }

    /// A REST depth snapshot answer as the books took it.
    pub fn snapshot(&mut self, t: i64, symbol: &str, answer: &Result<String, String>) {
        let (ok, text) = match answer {
            Ok(b) => (1u8, b.as_str()),
            Err(e) => (0u8, e.as_str()),
        };
        let sym = &symbol.as_bytes()[..symbol.len().min(255)];
        let mut p = Vec::with_capacity(2 + sym.len() + text.len());
        p.push(ok);
        p.push(sym.len() as u8);
        p.extend_from_slice(sym);
        p.extend_from_slice(text.as_bytes());
        self.put(kind::SNAPSHOT, t, &p);
    }

    /// What the rotation's filter did with the records of the frame just captured (kept only
    /// when it held or dropped one).
    pub fn verdict(&mut self, recv: i64, verdicts: &[u8]) {
        if verdicts.iter().any(|&v| v != verdict::ON) {
            self.put(kind::VERDICT, recv, verdicts);
        }
    }

    /// The held records went on (or were dropped, as `verdicts` says), at `t`.
    pub fn release(&mut self, t: i64, verdicts: &[u8]) {
        self.put(kind::RELEASE, t, verdicts);
    }

    /// The frame just captured was the first of a stream that had ended at `id` before this
    /// process (its sequence check took the resume point).
    pub fn resume(&mut self, t: i64, k: u8, symbol: &str, id: i64) {
        let mut p = Vec::with_capacity(9 + symbol.len());
        p.push(k);
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(symbol.as_bytes());
        self.put(kind::RESUME, t, &p);
    }

    /// The connection ended at `t`, for the reason given.
    pub fn close(&mut self, t: i64, why: &str) {
        self.put(kind::CLOSE, t, why.as_bytes());
    }

    /// A book-snapshot tick at `t`.
    pub fn tick(&mut self, t: i64) {
        self.put(kind::TICK, t, &[]);
    }

    /// A record made from a REST answer (its symbol by name: ids are the process's own).
    pub fn record(&mut self, rec: &tickwire_codecs::record::Record, symbol: &str) {
        let sym = &symbol.as_bytes()[..symbol.len().min(255)];
        let mut p = Vec::with_capacity(1 + sym.len() + 16 + rec.as_bytes().len());
        p.push(sym.len() as u8);
        p.extend_from_slice(sym);
        crate::pipeline::publish::encode_binary(&mut p, rec, &[], 0);
        self.put(kind::RECORD, rec.header().recv_time, &p);
    }
}

/// Appends one entry: its 16-byte head, then the payload.
#[inline]
fn encode(out: &mut Vec<u8>, kind: u8, t: i64, payload: &[u8]) {
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(payload);
}

/// `YYYY-MM-DD` and `HH` of a time in ns.
fn hour_of(t: i64) -> (String, u32) {
    let secs = t.div_euclid(1_000_000_000);
    let day = secs.div_euclid(86_400);
    let hour = (secs.rem_euclid(86_400) / 3600) as u32;
    (tickwire_sinks::date_string(day as i32), hour)
}

struct Open {
    hour: (String, u32),
    out: BufWriter<std::fs::File>,
    /// Entries taken and not yet compressed: they go out as one zstd frame at [`ZSTD_FRAME`]
    /// bytes or at the next flush.
    pending: Vec<u8>,
    pending_entries: u64,
}

/// Bytes of entries compressed as one zstd frame (fewer at a flush).
const ZSTD_FRAME: usize = 256 * 1024;

impl Open {
    /// Compresses what is pending as one frame and writes it.
    fn emit(
        &mut self,
        comp: &mut zstd::bulk::Compressor<'static>,
        z: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        z.clear();
        z.reserve(zstd::zstd_safe::compress_bound(self.pending.len()));
        comp.compress_to_buffer(&self.pending, z)?;
        self.out.write_all(z)?;
        // Only once written: a file that fails keeps them counted as its loss.
        self.pending.clear();
        self.pending_entries = 0;
        Ok(())
    }
}

fn open_file(
    dir: &Path,
    run: u64,
    file: u64,
    hour: &(String, u32),
) -> std::io::Result<BufWriter<std::fs::File>> {
    let d = dir.join(&hour.0).join(format!("{:02}", hour.1));
    std::fs::create_dir_all(&d)?;
    let path = d.join(format!("{run}-{file:06}.twcap.zst"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(BufWriter::with_capacity(1 << 16, f))
}

fn write_loop(rx: Receiver<Chunk>, dir: PathBuf, run: u64, level: i32, c: Arc<CaptureCounters>) {
    let mut open: HashMap<u64, Open> = HashMap::new();
    // Each chunk is compressed as a zstd frame of its own, by one context for every file: a
    // file is a run of frames (which zstd reads as one stream). A streaming encoder per file
    // compressed at under half the speed (its ring buffer's extDict path, and as many
    // contexts as connections evicting each other from the cache); perf/RESULTS.md.
    let mut comp = match zstd::bulk::Compressor::new(level) {
        Ok(z) => z,
        Err(err) => {
            tracing::error!("capture: zstd level {level}: {err}; nothing is captured");
            for e in rx.iter() {
                c.errors.fetch_add(1, Ordering::Relaxed);
                c.dropped.fetch_add(e.entries, Ordering::Relaxed);
            }
            return;
        }
    };
    let mut z: Vec<u8> = Vec::new();
    let mut last_flush = Instant::now();
    let mut dirty = false;
    loop {
        let e = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(e) => Some(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(e) = e {
            let hour = hour_of(e.t);
            let roll = open.get(&e.file).is_some_and(|o| o.hour != hour);
            if roll {
                if let Some(o) = open.remove(&e.file) {
                    finish(o, &mut comp, &mut z, &c);
                }
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(e.file) {
                match open_file(&dir, run, e.file, &hour) {
                    Ok(out) => {
                        c.files.fetch_add(1, Ordering::Relaxed);
                        slot.insert(Open {
                            hour,
                            out,
                            pending: Vec::with_capacity(ZSTD_FRAME + CHUNK),
                            pending_entries: 0,
                        });
                    }
                    Err(err) => {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        c.dropped.fetch_add(e.entries, Ordering::Relaxed);
                        tracing::warn!("capture {}: {err}", dir.display());
                        continue;
                    }
                }
            }
            if let Some(o) = open.get_mut(&e.file) {
                o.pending.extend_from_slice(&e.bytes);
                o.pending_entries += e.entries;
                c.entries.fetch_add(e.entries, Ordering::Relaxed);
                c.bytes.fetch_add(e.bytes.len() as u64, Ordering::Relaxed);
                dirty = true;
                if o.pending.len() >= ZSTD_FRAME {
                    if let Err(err) = o.emit(&mut comp, &mut z) {
                        abandon(&mut open, e.file, &err, &c);
                    }
                }
            }
        }
        if dirty && last_flush.elapsed() >= FLUSH_EVERY {
            let files: Vec<u64> = open.keys().copied().collect();
            for f in files {
                let done = match open.get_mut(&f) {
                    Some(o) => o.emit(&mut comp, &mut z).and_then(|()| o.out.flush()),
                    None => Ok(()),
                };
                if let Err(err) = done {
                    abandon(&mut open, f, &err, &c);
                }
            }
            last_flush = Instant::now();
            dirty = false;
        }
    }
    for (_, o) in open.drain() {
        finish(o, &mut comp, &mut z, &c);
    }
}

/// A file that could not be written: what it had pending is counted lost, and it is dropped
/// (the connection's next chunk opens it again).
fn abandon(open: &mut HashMap<u64, Open>, file: u64, err: &std::io::Error, c: &CaptureCounters) {
    c.errors.fetch_add(1, Ordering::Relaxed);
    if let Some(o) = open.remove(&file) {
        lose(&o, c);
    }
    tracing::warn!("capture: {err}; the file is abandoned");
}

fn finish(
    mut o: Open,
    comp: &mut zstd::bulk::Compressor<'static>,
    z: &mut Vec<u8>,
    c: &CaptureCounters,
) {
    if let Err(e) = o.emit(comp, z).and_then(|()| o.out.flush()) {
        c.errors.fetch_add(1, Ordering::Relaxed);
        lose(&o, c);
        tracing::warn!("capture: closing a file: {e}");
    }
}

/// What a failed file had pending: counted as written when it was taken, lost instead.
fn lose(o: &Open, c: &CaptureCounters) {
    c.entries.fetch_sub(o.pending_entries, Ordering::Relaxed);
    c.bytes.fetch_sub(o.pending.len() as u64, Ordering::Relaxed);
    c.dropped.fetch_add(o.pending_entries, Ordering::Relaxed);
}

/// One entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read1 {
    pub kind: u8,
    pub t: i64,
    pub payload: Vec<u8>,
}

/// One connection's captured stream: its files in time order.
#[derive(Debug, Clone)]
pub struct Stream {
    /// `<run>-<conn>`.
    pub id: String,
    pub files: Vec<PathBuf>,
}

/// The connection streams of a capture directory, in order of their first file.
pub fn streams(dir: &Path) -> std::io::Result<Vec<Stream>> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for day in std::fs::read_dir(dir)? {
        let day = day?.path();
        if !day.is_dir() {
            continue;
        }
        for hour in std::fs::read_dir(&day)? {
            let hour = hour?.path();
            if !hour.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&hour)? {
                let f = f?.path();
                if let Some(id) = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".twcap.zst"))
                {
                    files.push((id.to_string(), f));
                }
            }
        }
    }
    // Day and hour directories sort as text.
    files.sort_by(|a, b| a.1.cmp(&b.1));
    let mut out: Vec<Stream> = Vec::new();
    for (id, f) in files {
        match out.iter_mut().find(|s| s.id == id) {
            Some(s) => s.files.push(f),
            None => out.push(Stream { id, files: vec![f] }),
        }
    }
    Ok(out)
}

/// Reads the entries of one file; a torn tail (a process killed mid-write) ends the list
/// and is reported as `true`.
pub fn read_file(path: &Path) -> std::io::Result<(Vec<Read1>, bool)> {
    let f = std::fs::File::open(path)?;
    let mut dec = zstd::stream::read::Decoder::new(f)?;
    let mut out = Vec::new();
    let mut head = [0u8; 16];
    loop {
        match read_full(&mut dec, &mut head) {
            Ok(0) => return Ok((out, false)),
            Ok(16) => {}
            Ok(_) | Err(_) => return Ok((out, true)),
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let t = i64::from_le_bytes(head[8..16].try_into().unwrap_or([0; 8]));
        if len > 64 << 20 {
            return Ok((out, true));
        }
        let mut payload = vec![0u8; len];
        match read_full(&mut dec, &mut payload) {
            Ok(n) if n == len => {}
            _ => return Ok((out, true)),
        }
        out.push(Read1 {
            kind: head[0],
            t,
            payload,
        });
    }
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_in_order_and_a_torn_tail_is_reported() {
        let dir = std::env::temp_dir().join(format!("tickwire-capture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cap, w) = Capture::start(&dir, LEVEL).expect("start");
        let mut a = cap.connection();
        let t0 = 1_764_000_000_000_000_000;
        a.open(t0, Market::Usdm, "ws://x/stream?streams=a");
        for i in 0..1000 {
            a.frame(t0 + i, format!("{{\"n\":{i}}}").as_bytes());
        }
        a.snapshot(t0 + 2000, "BTCUSDT", &Ok("{\"lastUpdateId\":1}".into()));
        a.snapshot(t0 + 2001, "BTCUSDT", &Err("timeout".into()));
        a.tick(t0 + 2002);
        // The task waits (its buffer goes); an hour later: a second file of the same stream.
        a.flush();
        a.frame(t0 + 3_600_000_000_000, b"late");
        a.verdict(t0 + 3_600_000_000_000, &[verdict::ON, verdict::DROPPED]);
        a.verdict(t0 + 3_600_000_000_000, &[verdict::ON]); // nothing done: not kept
        a.release(t0 + 3_600_000_000_001, &[verdict::DROPPED, verdict::ON]);
        a.close(t0 + 3_600_000_000_002, "idle");
        drop(a);
        drop(cap);
        w.finish();
        let s = streams(&dir).expect("streams");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].files.len(), 2);
        let (first, torn) = read_file(&s[0].files[0]).expect("read");
        assert!(!torn);
        assert_eq!(first.len(), 1004);
        assert_eq!((first[0].kind, first[0].t), (kind::OPEN, t0));
        assert_eq!(first[0].payload[0], Market::Usdm as u8);
        assert_eq!(first[500].payload, b"{\"n\":499}");
        assert_eq!(first[1001].payload[..2], [1, 7]);
        assert_eq!(first[1002].payload[0], 0);
        assert_eq!(first[1003].kind, kind::TICK);
        let (second, _) = read_file(&s[0].files[1]).expect("read");
        assert_eq!(second[0].payload, b"late");
        let kinds: Vec<u8> = second.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [kind::FRAME, kind::VERDICT, kind::RELEASE, kind::CLOSE]
        );
        assert_eq!(second[1].payload, [verdict::ON, verdict::DROPPED]);
        assert_eq!(second[3].payload, b"idle");
        // Cut the first file in the middle: what is before the cut reads, the tail is torn.
        let bytes = std::fs::read(&s[0].files[0]).expect("bytes");
        std::fs::write(&s[0].files[0], &bytes[..bytes.len() / 2]).expect("cut");
        let (cut, torn) = read_file(&s[0].files[0]).expect("read");
        assert!(torn);
        assert!(cut.len() < first.len());
        assert_eq!(cut[..], first[..cut.len()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
