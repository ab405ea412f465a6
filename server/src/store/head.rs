//! The head of metric history: samples not sealed into chunks yet, packed many to a row in
//! the `head` table, and everything that reads or writes those rows: the ingest side's
//! [`HeadWrites`], one series' scan, whole cells for the roll-up and the seal, and the
//! conversion of the per-sample head that stores before schema 2 kept.
//!
//! A row holds the samples of one ingest transaction in one minute and one *group* of 64
//! consecutive series ids (series allocated together, such as one agent's, share a group),
//! keyed `minute | group | row number`; the row number grows with every row written, so a
//! later row wins a tie on (series, ts) exactly as a later insert of one sample did. One row
//! per group instead of one per sample is what makes a commit cheap (`docs/PERFORMANCE.md`).

use super::StoreError;
use super::keys::{LEGACY_SAMPLES, META, bucket_of, parse_sample_key, parse_tier_key, tier_key};
use super::rows::{decode_row, encode_row};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    TableHandle,
};
use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::time::Instant;

/// The head: `minute | group | row` ([`head_key`]) -> a packed row (`rows.rs`).
pub(super) const HEAD: TableDefinition<&[u8; 24], &[u8]> = TableDefinition::new("head");

/// Key in [`META`] of the next head row number (absent = 0).
const NEXT_ROW_KEY: &str = "head_next_row";

/// Series ids per group: `1 << GROUP_BITS`.
const GROUP_BITS: u32 = 6;

/// Samples moved per transaction when converting a schema-1 head.
const CONVERT_STEP: usize = 500_000;

/// One sample: (series id, ts in ms, value).
pub(super) type Point = (u64, i64, f64);

/// The group of a series id.
pub(super) const fn group_of(series: u64) -> u64 {
    series >> GROUP_BITS
}

/// The groups that cover series ids `0..series`: `series / 64` rounded up.
pub(super) const fn group_ceil(series: u64) -> u64 {
    group_of(series) + (series & ((1 << GROUP_BITS) - 1) != 0) as u64
}

/// The first series id of `group`.
pub(super) const fn group_start(group: u64) -> u64 {
    group.saturating_mul(1 << GROUP_BITS)
}

/// The key of a head row. The layout is a tier key's: byte order is (minute, group, row) order.
pub(super) fn head_key(minute: i64, group: u64, row: u64) -> [u8; 24] {
    tier_key(minute, group, row)
}

/// Splits a head key into (minute, group, row).
pub(super) fn parse_head_key(k: &[u8; 24]) -> (i64, u64, u64) {
    parse_tier_key(k)
}

/// Sorts the samples of one cell, read in row order, by (series, ts) and keeps the last of
/// each (series, ts): a later row wins.
pub(super) fn settle(points: &mut Vec<Point>) {
    points.sort_by_key(|&(s, ts, _)| (s, ts));
    let mut w = 0;
    for r in 0..points.len() {
        if w > 0 && (points[w - 1].0, points[w - 1].1) == (points[r].0, points[r].1) {
            points[w - 1] = points[r];
        } else {
            points[w] = points[r];
            w += 1;
        }
    }
    points.truncate(w);
}

fn decode(k: &[u8; 24], row: &[u8], out: &mut Vec<Point>) -> Result<(), StoreError> {
    decode_row(row, out).map_err(|e| {
        let (minute, group, n) = parse_head_key(k);
        StoreError::Corrupt(format!(
            "head row {n} of minute {minute}, group {group}: {e}"
        ))
    })
}

/// The head samples one ingest transaction writes, by (minute, group).
#[derive(Debug, Default)]
pub(super) struct HeadWrites {
    cells: BTreeMap<(i64, u64), Vec<Point>>,
}

impl HeadWrites {
    /// Adds a sample.
    pub(super) fn push(&mut self, series: u64, ts_ms: i64, value: f64) {
        self.cells
            .entry((bucket_of(ts_ms), group_of(series)))
            .or_default()
            .push((series, ts_ms, value));
    }

    /// Of `points` (each of `minute`), which are already stored in the head: the
    /// (series, ts) pairs a sample of this transaction will replace.
    pub(super) fn stored(
        head: &impl ReadableTable<&'static [u8; 24], &'static [u8]>,
        minute: i64,
        group: u64,
    ) -> Result<HashSet<(u64, i64)>, StoreError> {
        let mut points = Vec::new();
        read_cell(head, minute, group, &mut points)?;
        Ok(points.into_iter().map(|(s, ts, _)| (s, ts)).collect())
    }

    /// Writes one row per (minute, group) and advances the row number in `meta`.
    pub(super) fn write(
        self,
        head: &mut Table<'_, &'static [u8; 24], &'static [u8]>,
        meta: &mut Table<'_, &'static str, u64>,
    ) -> Result<(), StoreError> {
        if self.cells.is_empty() {
            return Ok(());
        }
        let mut next = meta.get(NEXT_ROW_KEY)?.map_or(0, |v| v.value());
        let mut buf = Vec::new();
        for ((minute, group), mut points) in self.cells {
            settle(&mut points);
            encode_row(&points, &mut buf);
            head.insert(&head_key(minute, group, next), buf.as_slice())?;
            next += 1;
        }
        meta.insert(NEXT_ROW_KEY, next)?;
        Ok(())
    }
}

/// Appends the rows of one (minute, group) to `out`, in row order (not settled).
fn read_cell(
    head: &impl ReadableTable<&'static [u8; 24], &'static [u8]>,
    minute: i64,
    group: u64,
    out: &mut Vec<Point>,
) -> Result<(), StoreError> {
    let lo = head_key(minute, group, 0);
    let hi = head_key(minute, group, u64::MAX);
    for entry in head.range::<&[u8; 24]>(&lo..=&hi)? {
        let (k, v) = entry?;
        decode(k.value(), v.value(), out)?;
    }
    Ok(())
}

/// Calls `f(ts, value)` for each head sample of `series` with `from_ms <= ts <= to_ms`,
/// ascending, until it returns `Break`.
///
/// One range read per minute that holds any row at all: a read that leaves the cell lands
/// on the next populated minute, so empty stretches of time cost nothing.
pub(super) fn scan_series(
    head: &impl ReadableTable<&'static [u8; 24], &'static [u8]>,
    series: u64,
    from_ms: i64,
    to_ms: i64,
    mut f: impl FnMut(i64, f64) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let group = group_of(series);
    let last = bucket_of(to_ms);
    let mut minute = bucket_of(from_ms);
    let mut points = Vec::new();
    while minute <= last {
        points.clear();
        let mut next = None;
        for entry in head.range::<&[u8; 24]>(&head_key(minute, group, 0)..)? {
            let (k, v) = entry?;
            let (m, g, _) = parse_head_key(k.value());
            if m != minute {
                next = Some(m);
                break;
            }
            if g != group {
                next = minute.checked_add(1);
                break;
            }
            decode(k.value(), v.value(), &mut points)?;
        }
        points.retain(|p| p.0 == series);
        settle(&mut points);
        for &(_, ts, v) in &points {
            if ts > to_ms {
                return Ok(());
            }
            if ts >= from_ms && f(ts, v).is_break() {
                return Ok(());
            }
        }
        match next {
            Some(n) => minute = n,
            None => break,
        }
    }
    Ok(())
}

/// Calls `f(minute, group, points)` for each (minute, group) cell with head rows from group
/// `from.1` of minute `from.0` up to minute `to` (exclusive), in (minute, group) order, with
/// the cell's samples settled (sorted by series, then time), until `f` returns `Break`. A cell
/// holds at most 64 series: memory stays small however many series a minute holds.
pub(super) fn for_each_cell(
    head: &impl ReadableTable<&'static [u8; 24], &'static [u8]>,
    from: (i64, u64),
    to: i64,
    mut f: impl FnMut(i64, u64, &[Point]) -> Result<ControlFlow<()>, StoreError>,
) -> Result<(), StoreError> {
    let mut points = Vec::new();
    let mut current = None;
    let lo = head_key(from.0, from.1, 0);
    let hi = head_key(to, 0, 0);
    for entry in head.range::<&[u8; 24]>(&lo..&hi)? {
        let (k, v) = entry?;
        let (minute, group, _) = parse_head_key(k.value());
        if let Some((m, g)) = current.filter(|&c| c != (minute, group)) {
            settle(&mut points);
            if f(m, g, &points)?.is_break() {
                return Ok(());
            }
            points.clear();
        }
        current = Some((minute, group));
        decode(k.value(), v.value(), &mut points)?;
    }
    if let Some((m, g)) = current {
        settle(&mut points);
        let _ = f(m, g, &points)?;
    }
    Ok(())
}

/// Removes the rows of groups `groups` in each minute of `minutes` and returns their
/// samples, settled.
pub(super) fn take(
    head: &mut Table<'_, &'static [u8; 24], &'static [u8]>,
    minutes: std::ops::Range<i64>,
    groups: std::ops::Range<u64>,
) -> Result<Vec<Point>, StoreError> {
    let mut points = Vec::new();
    for minute in minutes {
        let (lo, hi) = (
            head_key(minute, groups.start, 0),
            head_key(minute, groups.end, 0),
        );
        for entry in head.extract_from_if::<&[u8; 24], _>(&lo..&hi, |_, _| true)? {
            let (k, v) = entry?;
            decode(k.value(), v.value(), &mut points)?;
        }
    }
    settle(&mut points);
    Ok(points)
}

/// The minute of the oldest head row.
pub(super) fn oldest_minute(
    head: &impl ReadableTable<&'static [u8; 24], &'static [u8]>,
) -> Result<Option<i64>, StoreError> {
    Ok(head.first()?.map(|(k, _)| parse_head_key(k.value()).0))
}

/// The first minute at or after `minute` with head rows.
pub(super) fn next_minute(
    head: &impl ReadableTable<&'static [u8; 24], &'static [u8]>,
    minute: i64,
) -> Result<Option<i64>, StoreError> {
    match head.range::<&[u8; 24]>(&head_key(minute, 0, 0)..)?.next() {
        Some(e) => Ok(Some(parse_head_key(e?.0.value()).0)),
        None => Ok(None),
    }
}

/// Moves the per-sample head of a schema-1 store (`samples`, one row a sample) into packed
/// rows, a bounded step per transaction so an interruption resumes where it stopped, then
/// drops the old table. Each step moves its samples in one commit, so a sample is in exactly
/// one of the two tables at every commit. `Store::open` calls it before anything reads.
pub(super) fn convert_legacy(db: &Database) -> Result<(), StoreError> {
    let total = {
        let txn = db.begin_read()?;
        if !txn
            .list_tables()?
            .any(|t| t.name() == LEGACY_SAMPLES.name())
        {
            return Ok(());
        }
        txn.open_table(LEGACY_SAMPLES)?.len()?
    };
    let started = Instant::now();
    let mut logged = Instant::now();
    let mut moved = 0u64;
    if total > 0 {
        tracing::info!(
            samples = total,
            "store: converting the metric head to packed rows"
        );
    }
    loop {
        let n = convert_step(db, CONVERT_STEP)?;
        if n == 0 {
            let txn = db.begin_write()?;
            txn.delete_table(LEGACY_SAMPLES)?;
            txn.commit()?;
            if total > 0 {
                tracing::info!(
                    samples = moved,
                    seconds = started.elapsed().as_secs(),
                    "store: metric head converted"
                );
            }
            return Ok(());
        }
        moved += n;
        if logged.elapsed().as_secs() >= 5 {
            logged = Instant::now();
            tracing::info!(moved, total, "store: converting the metric head");
        }
    }
}

/// Moves up to `max` of the oldest schema-1 head samples into packed rows in one
/// transaction; returns how many it moved.
pub(super) fn convert_step(db: &Database, max: usize) -> Result<u64, StoreError> {
    let txn = db.begin_write()?;
    let n = {
        let mut old = txn.open_table(LEGACY_SAMPLES)?;
        let mut writes = HeadWrites::default();
        let mut bounds = None;
        let mut n = 0;
        for entry in old.iter()?.take(max) {
            let (k, v) = entry?;
            let key = *k.value();
            let (_, series, ts) = parse_sample_key(&key);
            writes.push(series, ts, v.value());
            bounds = Some((bounds.map_or(key, |(first, _)| first), key));
            n += 1;
        }
        if let Some((first, last)) = bounds {
            old.retain_in::<&[u8; 24], _>(&first..=&last, |_, _| false)?;
        }
        writes.write(&mut txn.open_table(HEAD)?, &mut txn.open_table(META)?)?;
        n
    };
    txn.commit()?;
    Ok(n)
}

/// Bounds of the head rows wholly before `minute`, for retention.
pub(super) fn before(minute: i64) -> ([u8; 24], [u8; 24]) {
    (head_key(i64::MIN, 0, 0), head_key(minute, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_keeps_the_last_of_a_tie_and_sorts() {
        let mut p = vec![
            (2, 10, 1.0),
            (1, 20, 2.0),
            (2, 10, 3.0),
            (1, 5, 4.0),
            (2, 10, 5.0),
        ];
        settle(&mut p);
        assert_eq!(p, vec![(1, 5, 4.0), (1, 20, 2.0), (2, 10, 5.0)]);
    }

    #[test]
    fn groups_cover_series_ids() {
        assert_eq!((group_of(0), group_of(63), group_of(64)), (0, 0, 1));
        assert_eq!(
            (group_ceil(0), group_ceil(1), group_ceil(64), group_ceil(65)),
            (0, 1, 1, 2)
        );
        assert_eq!(group_start(2), 128);
        assert!(head_key(-1, u64::MAX, u64::MAX) < head_key(0, 0, 0));
    }
}
