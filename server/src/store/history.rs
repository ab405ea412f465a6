//! Reading one series' raw history wherever it is stored: the head (the `head` table,
//! recent and not yet sealed, `head.rs`) or sealed chunks (`chunks`, one per series and window).
//!
//! A (series, window) is sealed in one transaction that writes its chunk and deletes its
//! head rows (`seal.rs`), and a late sample for a sealed window is merged into its chunk
//! (`ingest.rs`), so at every commit a sample is in exactly one place. Readers still merge
//! both places by time (the head wins a tie), so they stay exact whatever the seal marks say.

use super::StoreError;
use super::chunk;
use super::head::scan_series;
use super::keys::{chunk_key, parse_chunk_key, window_of};
use redb::ReadableTable;
use std::ops::ControlFlow;

/// The two tables that hold raw samples, open in one transaction.
pub(super) struct History<'t, S, C> {
    /// The head: `head`.
    pub(super) head: &'t S,
    /// Sealed chunks: `chunks`.
    pub(super) chunks: &'t C,
}

impl<S, C> History<'_, S, C>
where
    S: ReadableTable<&'static [u8; 24], &'static [u8]>,
    C: ReadableTable<&'static [u8; 16], &'static [u8]>,
{
    /// Calls `f(ts, value)` for each sample of `series` with `from_ms <= ts <= to_ms`,
    /// ascending, until it returns `Break`.
    ///
    /// Costs one head scan (one seek per populated minute; sealed minutes have no head rows)
    /// and one chunk lookup per window of the range.
    pub(super) fn scan(
        &self,
        series: u64,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(i64, f64) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        if from_ms > to_ms {
            return Ok(());
        }
        let mut head = Vec::new();
        scan_series(self.head, series, from_ms, to_ms, |ts, v| {
            head.push((ts, v));
            ControlFlow::Continue(())
        })?;
        let mut head = head.into_iter().peekable();
        // Windows outside the table's first and last chunk hold no chunk.
        let (Some(first), Some(last)) = (self.chunks.first()?, self.chunks.last()?) else {
            return drain(head, f);
        };
        let lo = window_of(from_ms).max(parse_chunk_key(first.0.value()).0);
        let hi = window_of(to_ms).min(parse_chunk_key(last.0.value()).0);
        for window in lo..=hi {
            let sealed = self.chunk(window, series)?;
            for (ts, v) in sealed
                .into_iter()
                .filter(|(ts, _)| (from_ms..=to_ms).contains(ts))
            {
                let mut tie = false;
                while let Some(&(hts, hv)) = head.peek() {
                    if hts > ts {
                        break;
                    }
                    head.next();
                    tie = hts == ts;
                    if f(hts, hv).is_break() {
                        return Ok(());
                    }
                }
                if !tie && f(ts, v).is_break() {
                    return Ok(());
                }
            }
        }
        drain(head, f)
    }

    /// The decoded chunk of `series` in `window`, empty if there is none.
    pub(super) fn chunk(&self, window: i64, series: u64) -> Result<Vec<(i64, f64)>, StoreError> {
        read_chunk(self.chunks, window, series)
    }
}

/// Calls `f` for the rest of `head` until it returns `Break`.
fn drain(
    head: impl Iterator<Item = (i64, f64)>,
    mut f: impl FnMut(i64, f64) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    for (ts, v) in head {
        if f(ts, v).is_break() {
            break;
        }
    }
    Ok(())
}

/// The decoded chunk of `series` in `window` from `chunks`, empty if there is none.
pub(super) fn read_chunk(
    chunks: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    window: i64,
    series: u64,
) -> Result<Vec<(i64, f64)>, StoreError> {
    match chunks.get(&chunk_key(window, series))? {
        None => Ok(Vec::new()),
        Some(bytes) => chunk::decode(bytes.value()).map_err(|e| {
            StoreError::Corrupt(format!("chunk of series {series} in window {window}: {e}"))
        }),
    }
}
