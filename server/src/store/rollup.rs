//! Downsampled tiers of metric history: per-series aggregates (count, sum, min, max) of each
//! minute (`samples_1m`, kept for the minute retention, by default [`MINUTE_TIER_KEEP_MINUTES`]) and each hour (`samples_1h`,
//! kept like raw samples), so reads over days cost one row per series and hour instead of one
//! B-tree seek per populated minute.
//!
//! # Invariants
//!
//! - **Watermarks** ([`Marks`], in `meta`): `kept <= hours * 60 <= minutes`, `kept` a multiple
//!   of 60. For every minute in `kept..minutes` the minute tier holds, for every series with
//!   samples in it, exactly the aggregate of those samples, in a minute row or, once its hour
//!   is final, in the packed row of its hour (`pack.rs`; the pack marks say which); for every
//!   hour before `hours` the hour tier holds the aggregate of its samples. Outside those
//!   ranges the tiers have no rows: readers take minutes from `minutes` on from the raw
//!   samples, and minutes before `kept` from the hour tier (whole hours) or the raw samples.
//!   So readers are correct whatever the watermarks are, and a file written before the tiers
//!   existed (no watermarks) reads exactly as before.
//! - **Cursors.** Each watermark moves in bounded slices, so no transaction holds a whole
//!   minute or hour of a large fleet: minute `minutes` is rolled up in head groups
//!   (`roll_group`: groups before it have their minute rows), hour `hours` in [`Slice`]s of
//!   (metric, series) (`hour_cursor`: positions before it have their hour rows). Readers take
//!   the tier only for buckets before the watermark, so rows of a partly rolled bucket are
//!   invisible to them; writers of late samples ([`Marks::minute_rolled`],
//!   [`Marks::hour_rolled`]) update those rows for positions before the cursor, and leave
//!   the others to the roll-up, which has not read them yet.
//! - **Roll-up.** [`Store::roll_up`] moves `minutes` up to the minute before the current one
//!   (a minute stays open for [`GRACE_MINUTES`] after it ends, so batches in flight are not
//!   late) by reading the raw samples of the closed minutes in key order, one contiguous
//!   range; moves `hours` up to the last hour all of whose minutes are rolled up, from the
//!   minute tier; and moves `kept` up to the minute retention before now (never past
//!   `hours`), deleting older minute rows and packed rows. It runs in its own write
//!   transaction after each ingest commit and does at most about [`STEP_ROWS`] rows of work
//!   per call, so a backlog (a file from before the tiers, a server that was down) is caught
//!   up over several calls instead of stalling one commit.
//! - **Late samples.** A sample stored in a minute before `minutes` updates the tiers in the
//!   ingest transaction that stores it: the minute's row or its hour's packed row (if the
//!   minute is still kept) and, if the hour is before `hours`, the hour's row get the new
//!   samples added; if a sample replaced a stored value, both are recomputed instead (a
//!   replaced minimum cannot be taken out), the minute from its raw samples, the hour from its
//!   minutes (or raw samples).
//!   Replays that the per-agent seq check skips change nothing.
//! - **Exactness.** Counts, minima and maxima equal those of the raw samples; sums too up to
//!   floating-point rounding (they are added in a different order).
//!
//! A tier row is keyed `bucket | metric key | series id` ([`tier_key`]): rows of one bucket and
//! metric are contiguous, so Patrol reads a metric of the whole fleet for one bucket with one
//! range read, roll-ups append whole buckets at the end of the table, and pruning deletes from
//! its start.

use super::head::{self, HEAD, group_of};
use super::history::History;
use super::keys::{
    BUCKET_MS, HOURS, HOURS_PER_DAY, HOURS_ROLL_METRIC_KEY, HOURS_ROLL_SERIES_KEY,
    HOURS_ROLLED_KEY, META, MINUTES, MINUTES_KEPT_KEY, MINUTES_PACKED, MINUTES_PACKED_KEY,
    MINUTES_PER_HOUR, MINUTES_ROLL_GROUP_KEY, MINUTES_ROLLED_KEY, PACK_CURSOR_KEY, PACK_SERIES_KEY,
    SERIES, bucket_from_meta, bucket_of, bucket_to_meta, metric_key, metric_of_series,
    parse_tier_key, tier_key,
};
use super::pack::{minute_index, read_packed, update_packed};
use super::{Store, StoreError};
use redb::{ReadableTable, Table, WriteTransaction};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Whole minutes a minute stays open after it ends before it is rolled up.
pub(super) const GRACE_MINUTES: i64 = 1;
/// How long minute rows are kept by default: twice Patrol's longest window (one day) plus two
/// hours.
/// Older minutes are read from the hour tier or the raw samples.
pub(super) const MINUTE_TIER_KEEP_MINUTES: i64 = 50 * MINUTES_PER_HOUR;
/// Rows a roll-up call reads or deletes at most before it stops at the next bucket boundary
/// (it always finishes the bucket it is in): at most about half a second of work (0.54 s a
/// call when catching up a 64M-sample file from before the tiers, docs/PERFORMANCE.md).
const STEP_ROWS: usize = 500_000;

type Samples<'t> = Table<'t, &'static [u8; 24], &'static [u8]>;
/// Raw history (head and chunks) as the ingest transaction sees it.
pub(super) type Raw<'a, 't> = History<'a, Samples<'t>, Table<'t, &'static [u8; 16], &'static [u8]>>;
type TierTable<'t> = Table<'t, &'static [u8; 24], &'static [u8; 32]>;
type HourTable<'t> = Table<'t, &'static [u8; 24], &'static [u8]>;

/// Count, sum, minimum and maximum of the samples of one series in a time bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// Samples aggregated (at least 1).
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Aggregate {
    /// The aggregate of one sample.
    pub fn of(v: f64) -> Self {
        Self {
            count: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    /// Adds one sample.
    pub fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds the samples of `other`.
    pub fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The average.
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// Stored form: count, sum, min, max, 8 bytes little-endian each.
    pub(super) fn encode(&self) -> [u8; 32] {
        let mut b = [0; 32];
        b[..8].copy_from_slice(&self.count.to_le_bytes());
        b[8..16].copy_from_slice(&self.sum.to_le_bytes());
        b[16..24].copy_from_slice(&self.min.to_le_bytes());
        b[24..].copy_from_slice(&self.max.to_le_bytes());
        b
    }

    /// The inverse of [`Self::encode`].
    pub(super) fn decode(b: &[u8; 32]) -> Self {
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&b[i..i + 8]);
            w
        };
        Self {
            count: u64::from_le_bytes(word(0)),
            sum: f64::from_le_bytes(word(8)),
            min: f64::from_le_bytes(word(16)),
            max: f64::from_le_bytes(word(24)),
        }
    }
}

/// The hours of one series on one UTC day: a row of the hour tier. Stored as a `u32` bitmap
/// of the hours present (little-endian, bit `h` = hour `h` of the day), then their
/// [`Aggregate`]s in hour order. One row per day keeps reads of a week to eight rows a series.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Day(pub(super) [Option<Aggregate>; HOURS_PER_DAY as usize]);

impl Day {
    pub(super) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt(format!("hour tier row of {} bytes", b.len()));
        let mask: [u8; 4] = b.get(..4).and_then(|m| m.try_into().ok()).ok_or_else(bad)?;
        let mask = u32::from_le_bytes(mask);
        let mut day = Self::default();
        let mut at = 4;
        for (h, slot) in day.0.iter_mut().enumerate() {
            if mask & (1 << h) != 0 {
                let a: &[u8; 32] = b
                    .get(at..at + 32)
                    .and_then(|a| a.try_into().ok())
                    .ok_or_else(bad)?;
                *slot = Some(Aggregate::decode(a));
                at += 32;
            }
        }
        if at != b.len() || mask >> HOURS_PER_DAY != 0 {
            return Err(bad());
        }
        Ok(day)
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut mask = 0u32;
        let mut out = vec![0; 4];
        for (h, a) in self.0.iter().enumerate() {
            if let Some(a) = a {
                mask |= 1 << h;
                out.extend_from_slice(&a.encode());
            }
        }
        out[..4].copy_from_slice(&mask.to_le_bytes());
        out
    }
}

/// The key of the hour tier row holding `hour`, and the hour's index in it.
pub(super) fn hour_key(hour: i64, metric: u64, series: u64) -> ([u8; 24], usize) {
    let day = hour.div_euclid(HOURS_PER_DAY);
    let index = usize::try_from(hour.rem_euclid(HOURS_PER_DAY)).unwrap_or(0);
    (tier_key(day, metric, series), index)
}

/// Replaces one hour of one series in the hour tier by `f` of its current aggregate (`None`
/// removes it), with one lookup for an existing row.
fn update_hour(
    hours: &mut HourTable<'_>,
    hour: i64,
    metric: u64,
    series: u64,
    f: impl FnOnce(Option<Aggregate>) -> Option<Aggregate>,
) -> Result<(), StoreError> {
    let (key, i) = hour_key(hour, metric, series);
    let mut f = Some(f);
    let mut apply = |v: Option<Aggregate>| f.take().and_then(|f| f(v));
    if let Some(mut row) = hours.get_mut(&key)? {
        let mut day = Day::decode(row.value())?;
        day.0[i] = apply(day.0[i]);
        if day.0.iter().any(Option::is_some) {
            row.insert(day.encode().as_slice())?;
            return Ok(());
        }
    } else {
        let mut day = Day::default();
        day.0[i] = apply(None);
        if day.0[i].is_some() {
            hours.insert(&key, day.encode().as_slice())?;
        }
        return Ok(());
    }
    // The row's last hour went.
    hours.remove(&key)?;
    Ok(())
}

/// Folds `a` into `acc`.
fn fold(acc: &mut Option<Aggregate>, a: &Aggregate) {
    match acc {
        Some(x) => x.merge(a),
        None => *acc = Some(*a),
    }
}

/// What one [`Store::roll_up`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollUp {
    /// Minutes with samples rolled into the minute tier.
    pub minutes: u64,
    /// Hours with samples rolled into the hour tier.
    pub hours: u64,
    /// Rows read or deleted.
    pub rows: u64,
    /// Work is left for the next call.
    pub pending: bool,
}

/// The watermarks of the tiers, as bucket numbers (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marks {
    /// First minute not wholly rolled into the minute tier.
    pub(super) minutes: i64,
    /// First head group (`head.rs`) of minute `minutes` not rolled up.
    pub(super) roll_group: u64,
    /// First hour not wholly rolled into the hour tier.
    pub(super) hours: i64,
    /// First (metric key, series) of hour `hours` not rolled up.
    pub(super) hour_cursor: Slice,
    /// First minute whose rows the minute tier still holds.
    pub(super) kept: i64,
    /// First hour whose minute aggregates are not all packed (`pack.rs`); at least
    /// `kept / 60`.
    pub(super) packed: i64,
    /// First (metric key, series) of hour `packed` whose minute aggregates are not packed.
    pub(super) pack_cursor: Slice,
}

/// A position in the (metric key, series id) order of an hour's minute rows: hours are rolled
/// up and packed in slices of it, each slice in one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Slice {
    pub(super) metric: u64,
    pub(super) series: u64,
}

/// Series ids one slice of an hour covers: dense ids of a few metrics make slices of a few
/// thousand series (tens of thousands of minute rows), so a transaction holds little.
#[cfg(not(test))]
const SLICE_IDS: u64 = 8192;
/// Small in unit tests, so a few hundred series make many slices.
#[cfg(test)]
const SLICE_IDS: u64 = 16;

impl Slice {
    /// The first position after the slice that starts here.
    pub(super) fn end(self) -> Option<Self> {
        match self.series.checked_add(SLICE_IDS) {
            Some(series) => Some(Self {
                metric: self.metric,
                series,
            }),
            None => self
                .metric
                .checked_add(1)
                .map(|metric| Self { metric, series: 0 }),
        }
    }

    /// The key range of the minute rows of `minute` from this position up to `end` (the end of
    /// the minute if `None`).
    pub(super) fn keys(self, minute: i64, end: Option<Self>) -> ([u8; 24], [u8; 24]) {
        (
            tier_key(minute, self.metric, self.series),
            end.map_or(tier_key(minute + 1, 0, 0), |e| {
                tier_key(minute, e.metric, e.series)
            }),
        )
    }
}

/// The first hour after `hour` with a minute row, at most `limit` (above `hour`).
pub(super) fn next_hour_with_rows(
    minutes: &impl ReadableTable<&'static [u8; 24], &'static [u8; 32]>,
    hour: i64,
    limit: i64,
) -> Result<i64, StoreError> {
    let lo = tier_key((hour + 1) * MINUTES_PER_HOUR, 0, 0);
    let next = match minutes.range::<&[u8; 24]>(&lo..)?.next() {
        Some(e) => parse_tier_key(e?.0.value()).0.div_euclid(MINUTES_PER_HOUR),
        None => limit,
    };
    Ok(next.clamp(hour + 1, limit))
}

/// The first (metric key, series) at or after `from` with a minute row in `hour`.
pub(super) fn next_slice(
    minutes: &impl ReadableTable<&'static [u8; 24], &'static [u8; 32]>,
    hour: i64,
    from: Slice,
) -> Result<Option<Slice>, StoreError> {
    let mut best: Option<Slice> = None;
    for m in hour * MINUTES_PER_HOUR..(hour + 1) * MINUTES_PER_HOUR {
        let hi = best.map_or(tier_key(m + 1, 0, 0), |b| tier_key(m, b.metric, b.series));
        let lo = tier_key(m, from.metric, from.series);
        if let Some(e) = minutes.range::<&[u8; 24]>(&lo..&hi)?.next() {
            let (_, metric, series) = parse_tier_key(e?.0.value());
            best = Some(Slice { metric, series });
        }
    }
    Ok(best)
}

impl Marks {
    /// Whether the minute tier has the aggregate of `series` in `minute`.
    pub(super) fn minute_rolled(&self, minute: i64, series: u64) -> bool {
        minute < self.minutes || (minute == self.minutes && group_of(series) < self.roll_group)
    }

    /// Whether the hour tier has the aggregate of (`metric`, `series`) in `hour`.
    pub(super) fn hour_rolled(&self, hour: i64, metric: u64, series: u64) -> bool {
        hour < self.hours || (hour == self.hours && Slice { metric, series } < self.hour_cursor)
    }

    /// Whether a roll-up at minute `target` has nothing to do.
    fn done(&self, target: i64, keep: i64) -> bool {
        self.minutes >= target
            && self.hours >= self.minutes.div_euclid(MINUTES_PER_HOUR)
            && self.kept >= prune_target(target, self.hours, keep)
    }
}

/// The `kept` watermark a roll-up at minute `target` aims for, keeping `keep` minutes.
fn prune_target(target: i64, hours: i64, keep: i64) -> i64 {
    let keep_from = (target - keep).div_euclid(MINUTES_PER_HOUR);
    keep_from.min(hours) * MINUTES_PER_HOUR
}

/// In-memory state of the tiers, shared by ingest and roll-ups.
#[derive(Debug, Default)]
pub(super) struct Tiers(Mutex<TierState>);

#[derive(Debug, Default)]
struct TierState {
    /// Metric key by series id (0 = unknown), loaded from the `series` table on first use and
    /// extended by ingest with the ids it allocates (after they commit).
    metric_keys: Option<Vec<u64>>,
    /// The committed watermarks, once read: lets a call with nothing due return without a
    /// write transaction.
    marks: Option<Marks>,
}

impl Tiers {
    /// A panic while the lock was held cannot leave a wrong entry behind (entries are added
    /// after commits only), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, TierState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets everything, as on open (after the database was reopened).
    pub(super) fn reset(&self) {
        *self.lock() = TierState::default();
    }

    /// Records series ids allocated by a committed transaction, with their metric keys.
    pub(super) fn learn(&self, allocated: &[(u64, u64)]) {
        if allocated.is_empty() {
            return;
        }
        let mut state = self.lock();
        if let Some(keys) = &mut state.metric_keys {
            for &(id, key) in allocated {
                set_key(keys, id, key);
            }
        }
    }
}

fn set_key(keys: &mut Vec<u64>, id: u64, key: u64) {
    let Ok(i) = usize::try_from(id) else {
        return;
    };
    if keys.len() <= i {
        keys.resize(i + 1, 0);
    }
    keys[i] = key;
}

/// The metric keys of all series, from the `series` table.
fn load_metric_keys(series: &Table<'_, &str, u64>) -> Result<Vec<u64>, StoreError> {
    let mut keys = Vec::new();
    for entry in series.iter()? {
        let (name, id) = entry?;
        set_key(
            &mut keys,
            id.value(),
            metric_key(metric_of_series(name.value())),
        );
    }
    Ok(keys)
}

/// The watermarks as stored; `None` before the first roll-up.
pub(super) fn marks(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Option<Marks>, StoreError> {
    let get = |key: &str| -> Result<Option<i64>, StoreError> {
        Ok(meta.get(key)?.map(|v| bucket_from_meta(v.value())))
    };
    let raw =
        |key: &str| -> Result<u64, StoreError> { Ok(meta.get(key)?.map_or(0, |v| v.value())) };
    let slice = |metric: &str, series: &str| -> Result<Slice, StoreError> {
        Ok(Slice {
            metric: raw(metric)?,
            series: raw(series)?,
        })
    };
    let (Some(minutes), Some(hours), Some(kept)) = (
        get(MINUTES_ROLLED_KEY)?,
        get(HOURS_ROLLED_KEY)?,
        get(MINUTES_KEPT_KEY)?,
    ) else {
        return Ok(None);
    };
    // Hours before `kept` have no minute aggregates: nothing to pack there.
    let from = kept.div_euclid(MINUTES_PER_HOUR);
    let (packed, pack_cursor) = match get(MINUTES_PACKED_KEY)? {
        Some(p) if p >= from => (p, slice(PACK_CURSOR_KEY, PACK_SERIES_KEY)?),
        _ => (from, Slice::default()),
    };
    Ok(Some(Marks {
        minutes,
        roll_group: raw(MINUTES_ROLL_GROUP_KEY)?,
        hours,
        hour_cursor: slice(HOURS_ROLL_METRIC_KEY, HOURS_ROLL_SERIES_KEY)?,
        kept,
        packed,
        pack_cursor,
    }))
}

/// Stores the roll-up watermarks (the pack marks are `pack.rs`'s).
fn write_marks(meta: &mut Table<'_, &'static str, u64>, m: &Marks) -> Result<(), StoreError> {
    meta.insert(MINUTES_ROLLED_KEY, bucket_to_meta(m.minutes))?;
    meta.insert(MINUTES_ROLL_GROUP_KEY, m.roll_group)?;
    meta.insert(HOURS_ROLLED_KEY, bucket_to_meta(m.hours))?;
    meta.insert(HOURS_ROLL_METRIC_KEY, m.hour_cursor.metric)?;
    meta.insert(HOURS_ROLL_SERIES_KEY, m.hour_cursor.series)?;
    meta.insert(MINUTES_KEPT_KEY, bucket_to_meta(m.kept))?;
    Ok(())
}

impl Store {
    /// Rolls the closed minutes (those that ended a minute or more before the minute
    /// of `now_ms`) into the minute tier and the hours whose minutes are all rolled up into
    /// the hour tier, and deletes minute rows older than 50 hours, in one
    /// write transaction, stopping after about half a million rows of work; [`RollUp::pending`]
    /// says whether there is more. [`Store::ingest`] calls it after each commit, so a running
    /// server keeps the tiers current; reads never depend on it.
    ///
    /// # Errors
    /// Storage failures (nothing of the call is stored) and [`StoreError::Corrupt`] for a
    /// sample whose series is not in the `series` table.
    pub fn roll_up(&self, now_ms: i64) -> Result<RollUp, StoreError> {
        self.roll_up_bounded(now_ms, STEP_ROWS)
    }

    pub(super) fn roll_up_bounded(
        &self,
        now_ms: i64,
        max_rows: usize,
    ) -> Result<RollUp, StoreError> {
        let target = bucket_of(now_ms) - GRACE_MINUTES;
        let keep = self.retention().minute_ms / BUCKET_MS;
        let mut state = self.tiers.lock();
        if state.marks.is_some_and(|m| m.done(target, keep)) {
            return Ok(RollUp::default());
        }
        let mut out = RollUp::default();
        let txn = self.write_txn()?;
        let marks = {
            let mut meta = txn.open_table(META)?;
            let samples = txn.open_table(HEAD)?;
            let series = txn.open_table(SERIES)?;
            let mut minutes = txn.open_table(MINUTES)?;
            let mut hours = txn.open_table(HOURS)?;
            let mut packed = txn.open_table(MINUTES_PACKED)?;
            let mut marks = match marks(&meta)? {
                Some(m) => m,
                None => {
                    // Nothing rolled up yet (a new file, or one from before the tiers): start
                    // at the oldest sample, which rolls up all existing history.
                    let first = head::oldest_minute(&samples)?;
                    let hour = first
                        .unwrap_or(target)
                        .min(target)
                        .div_euclid(MINUTES_PER_HOUR);
                    let minute = hour * MINUTES_PER_HOUR;
                    Marks {
                        minutes: minute,
                        roll_group: 0,
                        hours: hour,
                        hour_cursor: Slice::default(),
                        kept: minute,
                        packed: hour,
                        pack_cursor: Slice::default(),
                    }
                }
            };
            if marks.minutes < target {
                if state.metric_keys.is_none() {
                    state.metric_keys = Some(load_metric_keys(&series)?);
                }
                let keys = state.metric_keys.get_or_insert_with(Vec::new);
                let mut rows = MinuteRows {
                    keys,
                    series: &series,
                    pending: Vec::new(),
                };
                (marks.minutes, marks.roll_group) = rows.roll(
                    &samples,
                    &mut minutes,
                    (marks.minutes, marks.roll_group),
                    target,
                    max_rows,
                    &mut out,
                )?;
            }
            let budget = |out: &RollUp| {
                max_rows
                    .saturating_sub(usize::try_from(out.rows).unwrap_or(usize::MAX))
                    .max(1)
            };
            let hour_target = marks.minutes.div_euclid(MINUTES_PER_HOUR);
            if marks.hours < hour_target {
                (marks.hours, marks.hour_cursor) = roll_hours(
                    &minutes,
                    &mut hours,
                    (marks.hours, marks.hour_cursor),
                    hour_target,
                    budget(&out),
                    &mut out,
                )?;
            }
            let prune_to = prune_target(target, marks.hours, keep);
            if marks.kept < prune_to {
                marks.kept = prune_minutes(
                    &mut minutes,
                    &mut packed,
                    marks.kept,
                    prune_to,
                    budget(&out),
                    &mut out,
                )?;
            }
            write_marks(&mut meta, &marks)?;
            marks
        };
        self.commit(txn)?;
        state.marks = Some(marks);
        out.pending = !marks.done(target, keep);
        if out.rows > 0 {
            tracing::debug!(
                minutes = out.minutes,
                hours = out.hours,
                rows = out.rows,
                pending = out.pending,
                "metric tiers rolled up"
            );
        }
        Ok(out)
    }
}

/// Minute-tier rows being built by a roll-up.
struct MinuteRows<'a, 't> {
    keys: &'a mut Vec<u64>,
    series: &'a Table<'t, &'static str, u64>,
    /// Rows of the minute being read, flushed (sorted) when it ends.
    pending: Vec<([u8; 24], [u8; 32])>,
}

impl MinuteRows<'_, '_> {
    /// Rolls minutes `from..to` of the raw samples into `minutes`, starting at head group
    /// `from.1` of minute `from.0` and stopping after the head group (`head.rs`) in which
    /// `max_rows` samples are read; returns the first (minute, group) not rolled up.
    fn roll(
        &mut self,
        samples: &Samples<'_>,
        minutes: &mut TierTable<'_>,
        from: (i64, u64),
        to: i64,
        max_rows: usize,
        out: &mut RollUp,
    ) -> Result<(i64, u64), StoreError> {
        let mut read = 0usize;
        let mut current = None;
        let mut stopped = None;
        head::for_each_cell(samples, from, to, |minute, group, points| {
            if current.is_some_and(|m| m != minute) {
                // A minute ended: write its rows.
                self.flush(minutes)?;
                out.minutes += 1;
            }
            current = Some(minute);
            for run in points.chunk_by(|a, b| a.0 == b.0) {
                let mut agg = Aggregate::of(run[0].2);
                for p in &run[1..] {
                    agg.add(p.2);
                }
                self.push(minute, run[0].0, &agg)?;
            }
            read += points.len();
            if read >= max_rows {
                // Every group before the next one is rolled up.
                stopped = Some((minute, group + 1));
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })?;
        if current.is_some() {
            self.flush(minutes)?;
            if stopped.is_none() {
                out.minutes += 1;
            }
        }
        out.rows += read as u64;
        Ok(stopped.unwrap_or((to, 0)))
    }

    fn push(&mut self, minute: i64, series: u64, agg: &Aggregate) -> Result<(), StoreError> {
        let key = self.metric_key(series)?;
        self.pending
            .push((tier_key(minute, key, series), agg.encode()));
        Ok(())
    }

    /// The metric key of `series`; reloads the keys once if it is unknown.
    fn metric_key(&mut self, series: u64) -> Result<u64, StoreError> {
        let get = |keys: &[u64]| {
            usize::try_from(series)
                .ok()
                .and_then(|i| keys.get(i))
                .copied()
                .filter(|&k| k != 0)
        };
        if let Some(k) = get(self.keys) {
            return Ok(k);
        }
        *self.keys = load_metric_keys(self.series)?;
        get(self.keys).ok_or_else(|| {
            StoreError::Corrupt(format!("samples of series {series} that has no name"))
        })
    }

    /// Writes the rows of one minute in key order.
    fn flush(&mut self, minutes: &mut TierTable<'_>) -> Result<(), StoreError> {
        self.pending.sort_unstable_by_key(|r| r.0);
        for (k, v) in self.pending.drain(..) {
            minutes.insert(&k, &v)?;
        }
        Ok(())
    }
}

/// Rolls hours `from..to` of the minute tier into `hours`, starting at slice `from.1` of hour
/// `from.0`, skipping hours without rows and stopping after the slice in which `max_rows`
/// rows are read; returns the first (hour, slice) not rolled up.
fn roll_hours(
    minutes: &TierTable<'_>,
    hours: &mut HourTable<'_>,
    from: (i64, Slice),
    to: i64,
    max_rows: usize,
    out: &mut RollUp,
) -> Result<(i64, Slice), StoreError> {
    let (mut hour, mut cursor) = from;
    let mut read = 0usize;
    while hour < to && read < max_rows {
        let Some(slice) = next_slice(minutes, hour, cursor)? else {
            // Hour done: on to the next hour with any minute row.
            out.hours += 1;
            (hour, cursor) = (next_hour_with_rows(minutes, hour, to)?, Slice::default());
            continue;
        };
        let end = slice.end();
        let mut acc: BTreeMap<(u64, u64), Aggregate> = BTreeMap::new();
        // Minutes in order, so each series' minutes are added in time order.
        for m in hour * MINUTES_PER_HOUR..(hour + 1) * MINUTES_PER_HOUR {
            let (lo, hi) = slice.keys(m, end);
            for entry in minutes.range::<&[u8; 24]>(&lo..&hi)? {
                let (k, v) = entry?;
                let (_, metric, series) = parse_tier_key(k.value());
                let a = Aggregate::decode(v.value());
                acc.entry((metric, series))
                    .and_modify(|x| x.merge(&a))
                    .or_insert(a);
                read += 1;
            }
        }
        for ((metric, series), a) in acc {
            update_hour(hours, hour, metric, series, |_| Some(a))?;
        }
        match end {
            Some(end) => cursor = end,
            None => (hour, cursor) = (hour + 1, Slice::default()),
        }
    }
    out.rows += read as u64;
    Ok((hour, cursor))
}

/// Deletes the minute rows and packed rows of hours `from..to` (minute numbers, whole
/// hours), an hour at a time until `max_rows` rows are deleted; returns the first minute
/// still kept.
fn prune_minutes(
    minutes: &mut TierTable<'_>,
    packed: &mut HourTable<'_>,
    from: i64,
    to: i64,
    max_rows: usize,
    out: &mut RollUp,
) -> Result<i64, StoreError> {
    let mut minute = from;
    let mut deleted = 0usize;
    while minute < to && deleted < max_rows {
        // Skip to the hour of the oldest row left (the tables may start long after `from`).
        let lo = tier_key(minute, 0, 0);
        let oldest_minute = match minutes.range::<&[u8; 24]>(&lo..)?.next() {
            Some(entry) => parse_tier_key(entry?.0.value()).0,
            None => to,
        };
        let lo = tier_key(minute.div_euclid(MINUTES_PER_HOUR), 0, 0);
        let oldest_packed = match packed.range::<&[u8; 24]>(&lo..)?.next() {
            Some(entry) => parse_tier_key(entry?.0.value()).0 * MINUTES_PER_HOUR,
            None => to,
        };
        let oldest = oldest_minute.min(oldest_packed);
        if oldest >= to {
            minute = to;
            break;
        }
        minute = minute.max(oldest.div_euclid(MINUTES_PER_HOUR) * MINUTES_PER_HOUR);
        let end = (minute + MINUTES_PER_HOUR).min(to);
        let lo = tier_key(minute, 0, 0);
        let hi = tier_key(end, 0, 0);
        minutes.retain_in::<&[u8; 24], _>(&lo..&hi, |_, _| {
            deleted += 1;
            false
        })?;
        // Whole hours: `from` and `to` are multiples of 60.
        let hour = minute.div_euclid(MINUTES_PER_HOUR);
        let (lo, hi) = (tier_key(hour, 0, 0), tier_key(hour + 1, 0, 0));
        packed.retain_in::<&[u8; 24], _>(&lo..&hi, |_, _| {
            deleted += 1;
            false
        })?;
        minute = end;
    }
    out.rows += deleted as u64;
    Ok(minute)
}

/// Samples of one ingest transaction stored in minutes that are already rolled up.
#[derive(Debug, Default)]
pub(super) struct Late {
    /// (minute, metric key, series) -> (a sample replaced a stored value, the new samples).
    cells: HashMap<(i64, u64, u64), (bool, Aggregate)>,
}

impl Late {
    /// Notes a sample of `series` (metric key `metric`) stored in `minute`.
    pub(super) fn add(
        &mut self,
        minute: i64,
        metric: u64,
        series: u64,
        value: f64,
        replaced: bool,
    ) {
        self.cells
            .entry((minute, metric, series))
            .and_modify(|(r, a)| {
                *r |= replaced;
                a.add(value);
            })
            .or_insert((replaced, Aggregate::of(value)));
    }

    /// Brings the tiers up to date with the noted samples, in the transaction that stored
    /// them.
    pub(super) fn apply(
        self,
        txn: &WriteTransaction,
        history: &Raw<'_, '_>,
        marks: Marks,
    ) -> Result<(), StoreError> {
        if self.cells.is_empty() {
            return Ok(());
        }
        let mut minutes = txn.open_table(MINUTES)?;
        let mut hours = txn.open_table(HOURS)?;
        let mut packed = txn.open_table(MINUTES_PACKED)?;
        let mut cells: Vec<_> = self.cells.into_iter().collect();
        cells.sort_unstable_by_key(|c| c.0);
        // (hour, metric, series) -> (a sample was replaced, the new samples).
        let mut changes: HashMap<(i64, u64, u64), (bool, Aggregate)> = HashMap::new();
        // Cells of packed hours, by (hour, metric, series): (minute, replaced, added).
        type Cell = (i64, bool, Aggregate);
        let mut in_packed: BTreeMap<(i64, u64, u64), Vec<Cell>> = BTreeMap::new();
        for ((minute, metric, series), (replaced, added)) in cells {
            let hour = minute.div_euclid(MINUTES_PER_HOUR);
            if minute >= marks.kept && marks.is_packed(hour, metric, series) {
                in_packed
                    .entry((hour, metric, series))
                    .or_default()
                    .push((minute, replaced, added));
            } else if minute >= marks.kept {
                let key = tier_key(minute, metric, series);
                if replaced {
                    // A replaced value cannot be taken out of the minimum: recompute.
                    match raw_aggregate(history, minute, series)? {
                        Some(a) => minutes.insert(&key, &a.encode())?,
                        None => minutes.remove(&key)?,
                    };
                } else if let Some(mut row) = minutes.get_mut(&key)? {
                    let mut a = Aggregate::decode(row.value());
                    a.merge(&added);
                    row.insert(&a.encode())?;
                } else {
                    minutes.insert(&key, &added.encode())?;
                }
            }
            if marks.hour_rolled(hour, metric, series) {
                changes
                    .entry((hour, metric, series))
                    .and_modify(|(r, a)| {
                        *r |= replaced;
                        a.merge(&added);
                    })
                    .or_insert((replaced, added));
            }
        }
        for ((hour, metric, series), cells) in in_packed {
            update_packed(&mut packed, hour, metric, series, |row| {
                for (minute, replaced, added) in cells {
                    let slot = &mut row.0[minute_index(minute)];
                    if replaced {
                        // A replaced value cannot be taken out of the minimum: recompute.
                        *slot = raw_aggregate(history, minute, series)?;
                    } else {
                        fold(slot, &added);
                    }
                }
                Ok(())
            })?;
        }
        let mut changes: Vec<_> = changes.into_iter().collect();
        changes.sort_unstable_by_key(|c| c.0);
        for ((hour, metric, series), (replaced, added)) in changes {
            if replaced {
                let agg = recompute_hour(history, &minutes, &packed, marks, hour, metric, series)?;
                update_hour(&mut hours, hour, metric, series, |_| agg)?;
            } else {
                // Only samples were added: the hour gets them.
                update_hour(&mut hours, hour, metric, series, |mut agg| {
                    fold(&mut agg, &added);
                    agg
                })?;
            }
        }
        Ok(())
    }
}

/// The aggregate of one series in `hour`: from its minute aggregates (rows or packed) while
/// they are kept, else from its raw samples.
fn recompute_hour(
    history: &Raw<'_, '_>,
    minutes: &TierTable<'_>,
    packed: &HourTable<'_>,
    marks: Marks,
    hour: i64,
    metric: u64,
    series: u64,
) -> Result<Option<Aggregate>, StoreError> {
    let first = hour * MINUTES_PER_HOUR;
    let mut acc = None;
    if first >= marks.kept && marks.is_packed(hour, metric, series) {
        if let Some(row) = read_packed(packed, hour, metric, series)? {
            for a in row.0.iter().flatten() {
                fold(&mut acc, a);
            }
        }
    } else if first >= marks.kept {
        for m in first..first + MINUTES_PER_HOUR {
            if let Some(v) = minutes.get(&tier_key(m, metric, series))? {
                fold(&mut acc, &Aggregate::decode(v.value()));
            }
        }
    } else {
        let to = (first + MINUTES_PER_HOUR) * BUCKET_MS - 1;
        history.scan(series, first * BUCKET_MS, to, |_, v| {
            fold(&mut acc, &Aggregate::of(v));
            ControlFlow::Continue(())
        })?;
    }
    Ok(acc)
}

/// The aggregate of the raw samples of `series` in `minute`.
fn raw_aggregate(
    history: &Raw<'_, '_>,
    minute: i64,
    series: u64,
) -> Result<Option<Aggregate>, StoreError> {
    let mut acc: Option<Aggregate> = None;
    let from = minute * BUCKET_MS;
    history.scan(series, from, from + BUCKET_MS - 1, |_, v| {
        fold(&mut acc, &Aggregate::of(v));
        ControlFlow::Continue(())
    })?;
    Ok(acc)
}

/// Minutes of the ms range `[from, to]` (inclusive) that lie wholly inside it: `(first, end)`
/// with `end` exclusive; empty when `first >= end`.
pub(super) fn whole_minutes(from_ms: i64, to_ms: i64) -> (i64, i64) {
    let first = from_ms.div_euclid(BUCKET_MS) + i64::from(from_ms.rem_euclid(BUCKET_MS) != 0);
    let end = to_ms.saturating_add(1).div_euclid(BUCKET_MS);
    (first, end)
}

#[cfg(test)]
mod tests;
