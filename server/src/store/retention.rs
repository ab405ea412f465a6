//! Retention: how long each tier of metric history is kept, the licence bound on it, and the
//! pass that deletes whole expired chunks, head rows and hour-tier days.
//!
//! # Invariants
//!
//! - Only whole units go: a chunk (one series, one window) once its window ended before the
//!   raw horizon, an hour-tier row (one series, one UTC day) once its day did. Minute rows
//!   and packed minute rows (`pack.rs`) are pruned by the roll-up (`rollup.rs`) at the minute
//!   horizon, whole hours at a time.
//! - Aggregates outlive raw samples: `hour_ms >= raw_ms` and `hour_ms >= minute_ms`, so a
//!   reader that takes old hours from the hour tier never finds them gone while raw samples
//!   of the same hours are still there.
//! - An ingested sample older than the raw horizon is refused (counted, logged with the
//!   agent), so nothing is stored that the next pass would delete.

use super::head::{self, HEAD};
use super::keys::{CHUNKS, HOURS, MINUTES_PER_HOUR, chunk_key, tier_key, window_of};
use super::rollup::MINUTE_TIER_KEEP_MINUTES;
use super::{Store, StoreError};
use std::sync::atomic::Ordering;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// History every installation keeps without a licence.
pub const FREE_HISTORY_DAYS: i64 = 7;
/// The most history the `long_term_metrics` feature allows.
pub const LICENSED_HISTORY_DAYS: i64 = 90;
/// The licence feature that allows history beyond [`FREE_HISTORY_DAYS`].
pub const LONG_TERM_FEATURE: &str = "long_term_metrics";

/// How long each tier keeps metric history, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples (head and chunks).
    pub raw_ms: i64,
    /// Per-minute aggregates. Patrol reads a day of them; older minutes come from the hour
    /// tier or raw samples.
    pub minute_ms: i64,
    /// Per-hour aggregates.
    pub hour_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw_ms: FREE_HISTORY_DAYS * DAY_MS,
            minute_ms: MINUTE_TIER_KEEP_MINUTES * 60_000,
            hour_ms: FREE_HISTORY_DAYS * DAY_MS,
        }
    }
}

/// Why a retention setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// A tier would keep less than an hour.
    #[error("{tier} retention must be at least one hour")]
    TooShort {
        /// The tier.
        tier: &'static str,
    },
    /// The hour tier would keep less than another tier.
    #[error("hour retention must be at least as long as {tier} retention")]
    HourShorter {
        /// The longer tier.
        tier: &'static str,
    },
}

impl Retention {
    /// Keeps everything: what a store has until [`Store::set_retention`] (the server sets
    /// the configured, licence-bounded policy at start).
    pub const KEEP_ALL: Self = Self {
        raw_ms: i64::MAX,
        minute_ms: MINUTE_TIER_KEEP_MINUTES * 60_000,
        hour_ms: i64::MAX,
    };

    /// Checks the invariants of the module.
    ///
    /// # Errors
    /// A tier under an hour, or the hour tier shorter than another.
    pub fn validate(&self) -> Result<(), RetentionError> {
        for (tier, ms) in [
            ("raw", self.raw_ms),
            ("minute", self.minute_ms),
            ("hour", self.hour_ms),
        ] {
            if ms < HOUR_MS {
                return Err(RetentionError::TooShort { tier });
            }
        }
        if self.hour_ms < self.raw_ms {
            return Err(RetentionError::HourShorter { tier: "raw" });
        }
        if self.hour_ms < self.minute_ms {
            return Err(RetentionError::HourShorter { tier: "minute" });
        }
        Ok(())
    }

    /// The longest history any tier keeps.
    pub fn history_ms(&self) -> i64 {
        self.raw_ms.max(self.minute_ms).max(self.hour_ms)
    }

    /// `self` bounded by what the licence allows: [`FREE_HISTORY_DAYS`], or
    /// [`LICENSED_HISTORY_DAYS`] with [`LONG_TERM_FEATURE`]. Returns the bounded retention and,
    /// if it was cut, why.
    #[must_use]
    pub fn licensed(self, long_term_metrics: bool) -> (Self, Option<String>) {
        let days = if long_term_metrics {
            LICENSED_HISTORY_DAYS
        } else {
            FREE_HISTORY_DAYS
        };
        let max = days * DAY_MS;
        let bounded = Self {
            raw_ms: self.raw_ms.min(max),
            minute_ms: self.minute_ms.min(max),
            hour_ms: self.hour_ms.min(max),
        };
        let why = (bounded != self).then(|| {
            if long_term_metrics {
                format!("metric history is kept at most {LICENSED_HISTORY_DAYS} days")
            } else {
                format!(
                    "metric history beyond {FREE_HISTORY_DAYS} days needs the \
                     {LONG_TERM_FEATURE} licence feature; keeping {FREE_HISTORY_DAYS} days"
                )
            }
        });
        (bounded, why)
    }
}

/// What one [`Store::expire`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Chunks.
    pub chunks: u64,
    /// Head rows (samples not sealed yet, from a file being converted).
    pub head_rows: u64,
    /// Hour-tier rows (one series, one day each).
    pub hour_rows: u64,
    /// Whether the call stopped at its budget with more to delete.
    pub more: bool,
}

impl Store {
    /// Deletes what the retention policy no longer keeps at `now_ms`, at most about
    /// `budget` entries, in one transaction.
    ///
    /// # Errors
    /// Storage failures; then nothing is deleted.
    pub fn expire(&self, now_ms: i64, budget: usize) -> Result<Expired, StoreError> {
        let policy = self.retention();
        let mut out = Expired::default();
        let txn = self.write_txn()?;
        {
            let mut left = budget.max(1);
            // Raw: whole windows that ended before the horizon, chunks and head rows.
            let window = window_of(now_ms.saturating_sub(policy.raw_ms));
            out.chunks = delete_range(
                &mut txn.open_table(CHUNKS)?,
                &chunk_key(i64::MIN, 0),
                &chunk_key(window, 0),
                &mut left,
            )?;
            let minute = window.saturating_mul(MINUTES_PER_HOUR);
            let (lo, hi) = head::before(minute);
            out.head_rows = delete_range(&mut txn.open_table(HEAD)?, &lo, &hi, &mut left)?;
            // Hour tier: whole days that ended before the horizon.
            let day = now_ms.saturating_sub(policy.hour_ms).div_euclid(DAY_MS);
            out.hour_rows = delete_range(
                &mut txn.open_table(HOURS)?,
                &tier_key(i64::MIN, 0, 0),
                &tier_key(day, 0, 0),
                &mut left,
            )?;
            out.more = left == 0;
        }
        if out == Expired::default() {
            txn.abort()?;
        } else {
            self.commit(txn)?;
            tracing::debug!(
                chunks = out.chunks,
                head_rows = out.head_rows,
                hour_rows = out.hour_rows,
                "expired history deleted"
            );
            self.counters
                .expired_chunks
                .fetch_add(out.chunks, Ordering::Relaxed);
        }
        Ok(out)
    }
}

/// Deletes the entries of `table` in `lo..hi`, oldest first, at most `*left` (which it counts
/// down); returns how many.
fn delete_range<const N: usize, V: redb::Value + 'static>(
    table: &mut redb::Table<'_, &'static [u8; N], V>,
    lo: &[u8; N],
    hi: &[u8; N],
    left: &mut usize,
) -> Result<u64, StoreError> {
    let mut n = 0;
    if *left == 0 {
        return Ok(0);
    }
    for entry in table.extract_from_if::<&[u8; N], _>(lo..hi, |_, _| true)? {
        entry?;
        n += 1;
        *left -= 1;
        if *left == 0 {
            break;
        }
    }
    Ok(n)
}
