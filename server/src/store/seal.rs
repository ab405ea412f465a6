//! Sealing: moving closed windows of raw samples from the head (`head.rs`) into compressed
//! per-series chunks (`chunks`), a bounded step at a time.
//!
//! # Invariants
//!
//! - **Marks** ([`SealMarks`], in `meta`): every (window, series) before `(until, cursor)` in
//!   (window, series id) order is sealed: its samples are in its chunk and nowhere else.
//!   Everything after it is in the head. A window is sealed in slices of series ids (whole
//!   head groups: the cursor moves to a multiple of 64 past the slice), each slice in one
//!   transaction that writes the chunks, deletes the head rows and moves the
//!   marks, so a crash leaves every sample in exactly one place.
//! - **Late samples** for a sealed (window, series) are merged into its chunk by the ingest
//!   transaction that stores them (`ingest.rs`), so nothing is written behind the marks into
//!   the head. Samples older than raw retention are refused there (`retention.rs`).
//! - **When.** A window is sealed once it ended [`SEAL_GRACE_MS`] ago (batches in flight and
//!   short agent outages still land in the head) and the minute tier has rolled it up (the
//!   roll-up reads closed minutes from the head).
//! - **Legacy.** A file from before chunks holds all its history in the head, with no marks:
//!   the first seal starts at its oldest sample and converts it window by window, a bounded
//!   step per call, resumable after any interruption because each step commits its marks.

use super::chunk;
use super::head::{self, HEAD, group_ceil, group_of, group_start};
use super::history::read_chunk;
use super::keys::{
    BUCKET_MS, CHUNKS, META, NEXT_SERIES_KEY, SEAL_CURSOR_KEY, SEALED_KEY, WINDOW_MS,
    bucket_from_meta, bucket_to_meta, chunk_key, window_of,
};
use super::{Store, StoreError, rollup};
use redb::{ReadableTable, Table};
use std::sync::atomic::Ordering;

/// How long after its end a window is sealed.
pub(super) const SEAL_GRACE_MS: i64 = 10 * 60_000;
/// Series ids sealed per slice.
const SLICE: u64 = 512;
/// Head samples one transaction moves at most before it commits (it finishes its slice, and
/// it commits at the end of a window in any case).
const TXN_ROWS: usize = 200_000;

/// Where sealing stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SealMarks {
    /// The first window not wholly sealed; `None` before the first seal (nothing is sealed).
    pub(super) until: Option<i64>,
    /// The first series id of window `until` not sealed yet.
    pub(super) cursor: u64,
}

impl SealMarks {
    /// Reads the marks from `meta`.
    pub(super) fn read(meta: &impl ReadableTable<&'static str, u64>) -> Result<Self, StoreError> {
        Ok(Self {
            until: meta.get(SEALED_KEY)?.map(|v| bucket_from_meta(v.value())),
            cursor: meta.get(SEAL_CURSOR_KEY)?.map_or(0, |v| v.value()),
        })
    }

    fn write(&self, meta: &mut Table<'_, &'static str, u64>) -> Result<(), StoreError> {
        if let Some(until) = self.until {
            meta.insert(SEALED_KEY, bucket_to_meta(until))?;
            meta.insert(SEAL_CURSOR_KEY, self.cursor)?;
        }
        Ok(())
    }

    /// Whether the samples of `series` in `window` belong in its chunk.
    pub(super) fn sealed(&self, window: i64, series: u64) -> bool {
        self.until
            .is_some_and(|u| window < u || (window == u && series < self.cursor))
    }
}

/// What one [`Store::seal`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sealed {
    /// Head samples moved into chunks.
    pub samples: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Whether more windows are ready to seal (the call stopped at its budget).
    pub more: bool,
    /// The first window not wholly sealed, in ms since the epoch.
    pub until_ms: Option<i64>,
}

impl Store {
    /// Seals windows that ended [`SEAL_GRACE_MS`] before `now_ms` and are rolled up, in
    /// transactions of about [`TXN_ROWS`] head rows, until about `budget_rows` rows are moved.
    ///
    /// # Errors
    /// Storage failures; what committed before stays sealed.
    pub fn seal(&self, now_ms: i64, budget_rows: usize) -> Result<Sealed, StoreError> {
        let mut done = Sealed::default();
        loop {
            let txn = self.write_txn()?;
            let step = {
                let mut meta = txn.open_table(META)?;
                let mut samples = txn.open_table(HEAD)?;
                let mut chunks = txn.open_table(CHUNKS)?;
                let step = seal_step(&mut meta, &mut samples, &mut chunks, now_ms)?;
                done.until_ms = step.marks.until.map(|w| w.saturating_mul(WINDOW_MS));
                step
            };
            if step.changed {
                self.commit(txn)?;
                tracing::debug!(
                    samples = step.samples,
                    chunks = step.chunks,
                    bytes = step.bytes,
                    "head sealed: chunks written"
                );
            } else {
                txn.abort()?;
            }
            self.counters
                .sealed_samples
                .fetch_add(step.samples, Ordering::Relaxed);
            done.samples += step.samples;
            done.chunks += step.chunks;
            done.bytes += step.bytes;
            done.more = step.more;
            if !step.more || done.samples >= budget_rows as u64 {
                return Ok(done);
            }
        }
    }
}

/// One transaction's work.
struct Step {
    marks: SealMarks,
    samples: u64,
    chunks: u64,
    bytes: u64,
    /// Whether the marks moved (the transaction must commit).
    changed: bool,
    /// Whether a ready window is left.
    more: bool,
}

fn seal_step(
    meta: &mut Table<'_, &'static str, u64>,
    samples: &mut Table<'_, &'static [u8; 24], &'static [u8]>,
    chunks: &mut Table<'_, &'static [u8; 16], &'static [u8]>,
    now_ms: i64,
) -> Result<Step, StoreError> {
    let before = SealMarks::read(meta)?;
    let mut marks = before;
    let mut step = Step {
        marks,
        samples: 0,
        chunks: 0,
        bytes: 0,
        changed: false,
        more: false,
    };
    // The first window not ready: still open or within its grace, or not rolled up yet.
    let Some(rolled) = rollup::marks(meta)? else {
        return Ok(step);
    };
    let ready_until =
        window_of(now_ms - SEAL_GRACE_MS).min(rolled.minutes.div_euclid(MINUTES_PER_WINDOW));
    let next_series = meta.get(NEXT_SERIES_KEY)?.map_or(1, |v| v.value());
    let mut rows = 0;
    loop {
        // The window to seal: the marked one, or the oldest head sample's for a first seal.
        let window = match marks.until {
            Some(w) => w,
            None => match head::oldest_minute(samples)? {
                Some(minute) => minute.div_euclid(MINUTES_PER_WINDOW),
                None => break,
            },
        };
        if window >= ready_until {
            break;
        }
        if marks.until.is_none() {
            marks = SealMarks {
                until: Some(window),
                cursor: 0,
            };
        }
        if marks.cursor >= next_series || (marks.cursor == 0 && !has_head_rows(samples, window)?) {
            // Window done: jump to the next window with head samples (or the first not ready).
            let next = head::next_minute(samples, first_minute(window + 1))?
                .map_or(ready_until, |m| m.div_euclid(MINUTES_PER_WINDOW));
            marks = SealMarks {
                until: Some(next.min(ready_until).max(window + 1)),
                cursor: 0,
            };
            if rows > 0 {
                // One window a transaction: progress survives an interruption.
                step.more = next < ready_until;
                break;
            }
            continue;
        }
        if rows >= TXN_ROWS {
            step.more = true;
            break;
        }
        let lo = marks.cursor;
        let hi = group_start(group_ceil(lo.saturating_add(SLICE).min(next_series)));
        let (n, c, b) = seal_slice(samples, chunks, window, lo, hi)?;
        rows += n as usize;
        step.samples += n;
        step.chunks += c;
        step.bytes += b;
        marks.cursor = hi;
    }
    step.changed = marks != before;
    if step.changed {
        marks.write(meta)?;
    }
    step.marks = marks;
    Ok(step)
}

/// Whether the head holds any sample of `window`.
fn has_head_rows(
    samples: &Table<'_, &'static [u8; 24], &'static [u8]>,
    window: i64,
) -> Result<bool, StoreError> {
    Ok(head::next_minute(samples, first_minute(window))?
        .is_some_and(|m| m < first_minute(window + 1)))
}

/// Minute buckets in a window.
const MINUTES_PER_WINDOW: i64 = WINDOW_MS / BUCKET_MS;

/// The first minute bucket of `window`.
fn first_minute(window: i64) -> i64 {
    window.saturating_mul(MINUTES_PER_WINDOW)
}

/// Moves the head samples of series `lo..hi` in `window` into their chunks (merging any
/// chunk already there); returns (samples, chunks, chunk bytes). `hi` is a group boundary
/// and the head holds no sample of a series below `lo` in `window` (it is sealed), so taking
/// the slice's whole groups takes exactly its samples.
fn seal_slice(
    samples: &mut Table<'_, &'static [u8; 24], &'static [u8]>,
    chunks: &mut Table<'_, &'static [u8; 16], &'static [u8]>,
    window: i64,
    lo: u64,
    hi: u64,
) -> Result<(u64, u64, u64), StoreError> {
    let points = head::take(
        samples,
        first_minute(window)..first_minute(window + 1),
        group_of(lo)..group_of(hi),
    )?;
    let (mut count, mut bytes) = (0, 0);
    for run in points.chunk_by(|a, b| a.0 == b.0) {
        let series = run[0].0;
        let sealed: Vec<(i64, f64)> = run.iter().map(|&(_, ts, v)| (ts, v)).collect();
        let merged = merge(read_chunk(chunks, window, series)?, sealed);
        let encoded = chunk::encode(&merged);
        chunks.insert(&chunk_key(window, series), encoded.as_slice())?;
        count += 1;
        bytes += encoded.len() as u64;
    }
    Ok((points.len() as u64, count, bytes))
}

/// Merges two time-ascending sample lists; `newer` wins a tie.
pub(super) fn merge(older: Vec<(i64, f64)>, newer: Vec<(i64, f64)>) -> Vec<(i64, f64)> {
    if older.is_empty() {
        return newer;
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let mut a = older.into_iter().peekable();
    let mut b = newer.into_iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (Some(&x), Some(&y)) => {
                if x.0 < y.0 {
                    out.push(x);
                    a.next();
                } else {
                    if x.0 == y.0 {
                        a.next();
                    }
                    out.push(y);
                    b.next();
                }
            }
            (Some(_), None) => out.extend(a.by_ref()),
            (None, Some(_)) => out.extend(b.by_ref()),
            (None, None) => return out,
        }
    }
}
