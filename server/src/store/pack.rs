//! Packing the minute tier: once an hour is final, each series' minute aggregates of it (up
//! to 60 rows of `samples_1m`, ~80 bytes each on disk) become one compressed row of
//! `samples_1m_packed`, a bounded step at a time.
//!
//! # Invariants
//!
//! - **Marks** (`minutes_packed_until` = hour `packed`, `minutes_pack_cursor` and
//!   `minutes_pack_series` = the (metric key, series) position `cursor`, in `meta`, read into
//!   [`Marks`] with the tier watermarks): the minute aggregates of (hour, metric, series) are
//!   in packed rows if `hour < packed` or `hour == packed` and `(metric, series) < cursor`
//!   ([`Marks::is_packed`]), else in minute rows. Every writer of the minute tier decides by
//!   it; readers of hour `packed` read both. A step moves the rows of whole slices of an hour
//!   (`rollup::Slice`: a few thousand series ids of one metric) and the marks in one
//!   transaction, so at every commit each minute aggregate is in exactly one place and a
//!   transaction holds tens of thousands of rows, not a metric's whole fleet. `packed` is
//!   never below `kept / 60` (hours before `kept` have no minute aggregates at all) nor above
//!   `hours` (the hour roll-up reads minute rows).
//! - **When.** An hour is packed once the hour tier has rolled it up (all its minutes are
//!   rolled up) and it ended [`SEAL_GRACE_MS`] ago, like sealing, so batches in flight and
//!   short outages still land in minute rows. A later sample updates the packed row
//!   (decode, modify, encode) in the ingest transaction that stores it (`rollup.rs`).
//! - **Legacy.** A file from before packing has no marks: packing starts at `kept` and
//!   converts its minute rows over the next upkeep passes; readers are exact meanwhile.
//!
//! # Row format (version 1)
//!
//! ```text
//! byte    0x01                 format version
//! u64 LE  present minutes      bit m = minute m of the hour; nonzero, below 2^60
//! byte    flags                1: counts as u64 LE; 2: no sums (each equals its minimum);
//!                              4: no maxima (each equals its minimum)
//! counts                       a chunk value block (`chunk::encode_values`) of the counts
//!                              as f64, or with flag 1 each count as u64 LE
//! sums, minima, maxima         chunk value blocks, in minute order
//! ```
//!
//! Minima, maxima and counts are kept bit for bit. A sum is a float sum of the minute's
//! samples, exact only up to rounding (`rollup.rs`); sums are stored as the shortest decimals
//! (one scale for the row) within [`SUM_TOLERANCE`] of them, which for samples rounded at the
//! source is the exact sum, and takes the decimal path of the codec (a sum with float noise
//! costs ~50 bits, a decimal one a few). Rows where no such scale exists keep their sums bit
//! for bit.

use super::chunk;
use super::keys::{
    BUCKET_MS, META, MINUTES, MINUTES_PACKED, MINUTES_PACKED_KEY, MINUTES_PER_HOUR,
    PACK_CURSOR_KEY, PACK_SERIES_KEY, bucket_to_meta, parse_tier_key, tier_key,
};
use super::rollup::{self, Aggregate, Marks, Slice, next_hour_with_rows, next_slice};
use super::seal::SEAL_GRACE_MS;
use super::{Store, StoreError};
use redb::{ReadableTable, Table};
use std::collections::BTreeMap;

/// The format version in the first byte of a packed row.
const FORMAT_V1: u8 = 1;
const FLAG_RAW_COUNTS: u8 = 1;
const FLAG_NO_SUMS: u8 = 2;
const FLAG_NO_MAXIMA: u8 = 4;
/// Largest count stored as an f64 (integers up to here are exact).
const MAX_EXACT: u64 = 1 << 53;
/// Largest relative difference between a sum and the decimal it is stored as: 2^-44, about
/// 256 units in the last place, what adding a few hundred samples may already be off by.
pub(super) const SUM_TOLERANCE: f64 = 1.0 / (1u64 << 44) as f64;
/// Decimal scales tried for sums (the chunk codec's range).
const MAX_SCALE: i32 = 15;
const HOUR_MS: i64 = BUCKET_MS * MINUTES_PER_HOUR;
/// Minute rows one transaction moves at most before it commits (it finishes the metric it
/// is in).
const TXN_ROWS: usize = 200_000;
/// Minutes in a packed row.
const SLOTS: usize = MINUTES_PER_HOUR as usize;

/// The minute aggregates of one series in one hour: a row of the packed minute tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PackedHour(pub(super) [Option<Aggregate>; SLOTS]);

impl PackedHour {
    /// No minutes.
    pub(super) const EMPTY: Self = Self([None; SLOTS]);

    /// Whether no minute is present.
    pub(super) fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// The stored form (see the module docs).
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut mask = 0u64;
        let mut present = Vec::with_capacity(SLOTS);
        for (m, a) in self.0.iter().enumerate() {
            if let Some(a) = a {
                mask |= 1 << m;
                present.push(*a);
            }
        }
        let mut flags = 0;
        if present.iter().any(|a| a.count > MAX_EXACT) {
            flags |= FLAG_RAW_COUNTS;
        }
        if present.iter().all(|a| a.sum.to_bits() == a.min.to_bits()) {
            flags |= FLAG_NO_SUMS;
        }
        if present.iter().all(|a| a.max.to_bits() == a.min.to_bits()) {
            flags |= FLAG_NO_MAXIMA;
        }
        let mut out = Vec::with_capacity(64);
        out.push(FORMAT_V1);
        out.extend_from_slice(&mask.to_le_bytes());
        out.push(flags);
        if flags & FLAG_RAW_COUNTS == 0 {
            let counts: Vec<f64> = present.iter().map(|a| a.count as f64).collect();
            out.extend(chunk::encode_values(&counts));
        } else {
            for a in &present {
                out.extend_from_slice(&a.count.to_le_bytes());
            }
        }
        if flags & FLAG_NO_SUMS == 0 {
            let sums: Vec<f64> = present.iter().map(|a| a.sum).collect();
            out.extend(chunk::encode_values(&decimal_sums(&sums)));
        }
        let minima: Vec<f64> = present.iter().map(|a| a.min).collect();
        out.extend(chunk::encode_values(&minima));
        if flags & FLAG_NO_MAXIMA == 0 {
            let maxima: Vec<f64> = present.iter().map(|a| a.max).collect();
            out.extend(chunk::encode_values(&maxima));
        }
        out
    }

    /// The inverse of [`Self::encode`]; never panics.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for bytes that are not a packed row.
    pub(super) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Corrupt(format!("packed minute row: {why}"));
        let (&version, rest) = b.split_first().ok_or_else(|| bad("empty"))?;
        if version != FORMAT_V1 {
            return Err(bad("unknown format version"));
        }
        let mask: [u8; 8] = rest
            .get(..8)
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| bad("truncated"))?;
        let mask = u64::from_le_bytes(mask);
        if mask == 0 || mask >> SLOTS != 0 {
            return Err(bad("bad minute bitmap"));
        }
        let flags = *rest.get(8).ok_or_else(|| bad("truncated"))?;
        if flags & !(FLAG_RAW_COUNTS | FLAG_NO_SUMS | FLAG_NO_MAXIMA) != 0 {
            return Err(bad("unknown flags"));
        }
        let mut rest = &rest[9..];
        let n = mask.count_ones() as usize;
        let column = |rest: &mut &[u8]| -> Result<Vec<f64>, StoreError> {
            let (values, used) = chunk::decode_values(rest, n).map_err(|e| bad(&e.to_string()))?;
            *rest = &rest[used..];
            Ok(values)
        };
        let counts: Vec<u64> = if flags & FLAG_RAW_COUNTS == 0 {
            column(&mut rest)?
                .into_iter()
                .map(|c| {
                    // In range and whole, so the conversion is exact.
                    (c.fract() == 0.0 && (1.0..=MAX_EXACT as f64).contains(&c))
                        .then_some(c as u64)
                        .ok_or_else(|| bad("count out of range"))
                })
                .collect::<Result<_, _>>()?
        } else {
            let raw = rest.get(..n * 8).ok_or_else(|| bad("truncated counts"))?;
            rest = &rest[n * 8..];
            raw.chunks_exact(8)
                .map(|c| {
                    let mut w = [0; 8];
                    w.copy_from_slice(c);
                    match u64::from_le_bytes(w) {
                        0 => Err(bad("count out of range")),
                        c => Ok(c),
                    }
                })
                .collect::<Result<_, _>>()?
        };
        let sums = if flags & FLAG_NO_SUMS == 0 {
            Some(column(&mut rest)?)
        } else {
            None
        };
        let minima = column(&mut rest)?;
        let maxima = if flags & FLAG_NO_MAXIMA == 0 {
            column(&mut rest)?
        } else {
            minima.clone()
        };
        if !rest.is_empty() {
            return Err(bad("bytes after the row"));
        }
        let sums = sums.unwrap_or_else(|| minima.clone());
        let mut out = Self::EMPTY;
        let slots = (0..SLOTS).filter(|m| mask & (1 << m) != 0);
        for (i, m) in slots.enumerate() {
            out.0[m] = Some(Aggregate {
                count: counts[i],
                sum: sums[i],
                min: minima[i],
                max: maxima[i],
            });
        }
        Ok(out)
    }
}

/// `sums` as the shortest decimals of one scale within [`SUM_TOLERANCE`] of each (zeros
/// stay as they are), or unchanged if there are none.
fn decimal_sums(sums: &[f64]) -> Vec<f64> {
    (0..=MAX_SCALE)
        .find_map(|s| {
            let p = 10f64.powi(s);
            sums.iter()
                .map(|&v| {
                    if v == 0.0 {
                        return Some(v);
                    }
                    let m = (v * p).round();
                    if !m.is_finite() || m.abs() > MAX_EXACT as f64 {
                        return None;
                    }
                    let r = m / p;
                    ((r - v).abs() <= v.abs() * SUM_TOLERANCE).then_some(r)
                })
                .collect::<Option<Vec<f64>>>()
        })
        .unwrap_or_else(|| sums.to_vec())
}

type MinuteTable<'t> = Table<'t, &'static [u8; 24], &'static [u8; 32]>;
type PackedTable<'t> = Table<'t, &'static [u8; 24], &'static [u8]>;

/// What one [`Store::pack`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    /// Minute rows packed (and deleted).
    pub minutes: u64,
    /// Packed rows written.
    pub rows: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Whether more is ready to pack (the call stopped at its budget).
    pub more: bool,
    /// Minute aggregates before this time are packed (ms), once anything is rolled up.
    pub until_ms: Option<i64>,
}

impl Store {
    /// Packs the minute rows of hours that are rolled into the hour tier and ended
    /// [`SEAL_GRACE_MS`] before `now_ms`, in transactions of about [`TXN_ROWS`] minute rows,
    /// until about `budget_rows` rows are packed.
    ///
    /// # Errors
    /// Storage failures; what committed before stays packed.
    pub fn pack(&self, now_ms: i64, budget_rows: usize) -> Result<Packed, StoreError> {
        self.pack_bounded(now_ms, TXN_ROWS, budget_rows)
    }

    /// [`Store::pack`] with transactions of about `txn_rows` minute rows.
    pub(super) fn pack_bounded(
        &self,
        now_ms: i64,
        txn_rows: usize,
        budget_rows: usize,
    ) -> Result<Packed, StoreError> {
        let mut done = Packed::default();
        loop {
            let txn = self.write_txn()?;
            let step = {
                let mut meta = txn.open_table(META)?;
                let mut minutes = txn.open_table(MINUTES)?;
                let mut packed = txn.open_table(MINUTES_PACKED)?;
                pack_step(&mut meta, &mut minutes, &mut packed, now_ms, txn_rows)?
            };
            if step.changed {
                self.commit(txn)?;
                if step.done.minutes > 0 {
                    tracing::debug!(
                        minutes = step.done.minutes,
                        rows = step.done.rows,
                        bytes = step.done.bytes,
                        "minute tier packed"
                    );
                }
            } else {
                txn.abort()?;
            }
            done.minutes += step.done.minutes;
            done.rows += step.done.rows;
            done.bytes += step.done.bytes;
            done.more = step.done.more;
            done.until_ms = step.done.until_ms;
            if !done.more || done.minutes >= budget_rows as u64 {
                return Ok(done);
            }
        }
    }
}

/// One transaction's work.
struct Step {
    done: Packed,
    /// Whether the marks moved (the transaction must commit).
    changed: bool,
}

fn pack_step(
    meta: &mut Table<'_, &'static str, u64>,
    minutes: &mut MinuteTable<'_>,
    packed: &mut PackedTable<'_>,
    now_ms: i64,
    max_rows: usize,
) -> Result<Step, StoreError> {
    let mut step = Step {
        done: Packed::default(),
        changed: false,
    };
    let Some(marks) = rollup::marks(meta)? else {
        return Ok(step);
    };
    let ready = marks
        .hours
        .min(now_ms.saturating_sub(SEAL_GRACE_MS).div_euclid(HOUR_MS));
    let (mut hour, mut cursor) = (marks.packed, marks.pack_cursor);
    let mut rows = 0;
    while hour < ready {
        let Some(slice) = next_slice(minutes, hour, cursor)? else {
            // Hour done: on to the next hour with minute rows (or the first not ready).
            (hour, cursor) = (next_hour_with_rows(minutes, hour, ready)?, Slice::default());
            continue;
        };
        if rows >= max_rows {
            step.done.more = true;
            break;
        }
        let end = slice.end();
        let (n, written, bytes) = pack_slice(minutes, packed, hour, slice, end)?;
        rows += n;
        step.done.minutes += n as u64;
        step.done.rows += written;
        step.done.bytes += bytes;
        match end {
            Some(end) => cursor = end,
            None => (hour, cursor) = (hour + 1, Slice::default()),
        }
    }
    step.done.until_ms = Some(hour.saturating_mul(HOUR_MS));
    step.changed = (hour, cursor) != (marks.packed, marks.pack_cursor);
    if step.changed {
        meta.insert(MINUTES_PACKED_KEY, bucket_to_meta(hour))?;
        meta.insert(PACK_CURSOR_KEY, cursor.metric)?;
        meta.insert(PACK_SERIES_KEY, cursor.series)?;
    }
    Ok(step)
}

/// Moves the minute rows of `hour` from `slice` to `end` (the end of the hour if `None`) into
/// packed rows (merging rows already there); returns (minute rows, packed rows, their bytes).
fn pack_slice(
    minutes: &mut MinuteTable<'_>,
    packed: &mut PackedTable<'_>,
    hour: i64,
    slice: Slice,
    end: Option<Slice>,
) -> Result<(usize, u64, u64), StoreError> {
    let mut by_series: BTreeMap<(u64, u64), PackedHour> = BTreeMap::new();
    let mut n = 0;
    for (i, m) in (hour * MINUTES_PER_HOUR..(hour + 1) * MINUTES_PER_HOUR).enumerate() {
        let (lo, hi) = slice.keys(m, end);
        for entry in minutes.extract_from_if::<&[u8; 24], _>(&lo..&hi, |_, _| true)? {
            let (k, v) = entry?;
            let (_, metric, series) = parse_tier_key(k.value());
            by_series
                .entry((metric, series))
                .or_insert(PackedHour::EMPTY)
                .0[i] = Some(Aggregate::decode(v.value()));
            n += 1;
        }
    }
    let (mut rows, mut bytes) = (0, 0);
    for ((metric, series), mut row) in by_series {
        let key = tier_key(hour, metric, series);
        let old = packed
            .get(&key)?
            .map(|v| PackedHour::decode(v.value()))
            .transpose()?;
        if let Some(old) = old {
            // Not expected (the marks say the hour was not packed); keep what is there.
            for (slot, a) in row.0.iter_mut().zip(old.0) {
                if slot.is_none() {
                    *slot = a;
                }
            }
        }
        let encoded = row.encode();
        packed.insert(&key, encoded.as_slice())?;
        rows += 1;
        bytes += encoded.len() as u64;
    }
    Ok((n, rows, bytes))
}

/// Reads the packed row of (`hour`, `metric`, `series`), applies `f` to it (an absent row as
/// [`PackedHour::EMPTY`]) and stores the result (or deletes the row if it has no minute left).
pub(super) fn update_packed(
    packed: &mut PackedTable<'_>,
    hour: i64,
    metric: u64,
    series: u64,
    f: impl FnOnce(&mut PackedHour) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let key = tier_key(hour, metric, series);
    let mut row = packed
        .get(&key)?
        .map(|v| PackedHour::decode(v.value()))
        .transpose()?
        .unwrap_or(PackedHour::EMPTY);
    f(&mut row)?;
    if row.is_empty() {
        packed.remove(&key)?;
    } else {
        packed.insert(&key, row.encode().as_slice())?;
    }
    Ok(())
}

/// The packed row of (`hour`, `metric`, `series`), if any.
pub(super) fn read_packed(
    packed: &impl ReadableTable<&'static [u8; 24], &'static [u8]>,
    hour: i64,
    metric: u64,
    series: u64,
) -> Result<Option<PackedHour>, StoreError> {
    packed
        .get(&tier_key(hour, metric, series))?
        .map(|v| PackedHour::decode(v.value()))
        .transpose()
}

/// The index of `minute` in its hour's packed row.
pub(super) fn minute_index(minute: i64) -> usize {
    usize::try_from(minute.rem_euclid(MINUTES_PER_HOUR)).unwrap_or(0)
}

impl Marks {
    /// Whether the minute aggregates of (`metric`, `series`) in `hour` are in packed rows.
    pub(super) fn is_packed(&self, hour: i64, metric: u64, series: u64) -> bool {
        hour < self.packed || (hour == self.packed && Slice { metric, series } < self.pack_cursor)
    }
}

#[cfg(test)]
mod tests;
