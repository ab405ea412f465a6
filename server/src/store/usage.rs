//! How much disk each tier of metric history takes: entries and bytes per table, from redb's
//! own accounting, for `GET /api/store` and `/metrics`.

use super::head::HEAD;
use super::keys::{CHUNKS, HOURS, META, MINUTES, MINUTES_PACKED, SERIES, WINDOW_MS};
use super::seal::SealMarks;
use super::{Store, StoreError};
use redb::{ReadableTableMetadata, TableStats};

/// One tier's share of the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierUsage {
    /// Entries: head samples, chunks (one series and hour each), minute rows (one series
    /// and minute, or once packed one series and hour), hour rows (one series and UTC day).
    pub entries: u64,
    /// Bytes of the entries, redb's page metadata and fragmentation.
    pub bytes: u64,
}

impl From<TableStats> for TierUsage {
    fn from(s: TableStats) -> Self {
        Self {
            entries: 0,
            bytes: s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes(),
        }
    }
}

/// Metric history on disk, by tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Raw samples not sealed yet.
    pub head: TierUsage,
    /// Raw samples sealed into compressed chunks.
    pub chunks: TierUsage,
    /// Per-minute aggregates: minute rows and packed hours of them.
    pub minute: TierUsage,
    /// Per-hour aggregates.
    pub hour: TierUsage,
    /// Series ever seen.
    pub series: u64,
    /// The whole database file, bytes (all tables, free pages included).
    pub file_bytes: u64,
    /// Raw samples before this time are sealed into chunks (ms; `None` before the first seal).
    pub sealed_until_ms: Option<i64>,
}

impl Store {
    /// Metric history on disk, by tier. Walks every table's pages: cheap for a small store,
    /// about a second for tens of gigabytes; `/metrics` reads [`Store::cached_usage`].
    ///
    /// # Errors
    /// Storage failures.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let txn = self.read_txn()?;
        let tier = |stats: TableStats, entries: u64| TierUsage {
            entries,
            ..TierUsage::from(stats)
        };
        let head = txn.open_table(HEAD)?;
        let chunks = txn.open_table(CHUNKS)?;
        let minute = txn.open_table(MINUTES)?;
        let packed = txn.open_table(MINUTES_PACKED)?;
        let (minute, packed) = (
            tier(minute.stats()?, minute.len()?),
            tier(packed.stats()?, packed.len()?),
        );
        let hour = txn.open_table(HOURS)?;
        let usage = Usage {
            head: tier(head.stats()?, head.len()?),
            chunks: tier(chunks.stats()?, chunks.len()?),
            minute: TierUsage {
                entries: minute.entries + packed.entries,
                bytes: minute.bytes + packed.bytes,
            },
            hour: tier(hour.stats()?, hour.len()?),
            series: txn.open_table(SERIES)?.len()?,
            file_bytes: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            sealed_until_ms: SealMarks::read(&txn.open_table(META)?)?
                .until
                .map(|w| w.saturating_mul(WINDOW_MS)),
        };
        *self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(usage.clone());
        Ok(usage)
    }

    /// The last [`Store::usage`] computed (by the upkeep task, once a minute), if any.
    pub fn cached_usage(&self) -> Option<Usage> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
