//! How much disk each tier of metric history takes: entries and bytes per table, from redb's
//! own accounting, for `GET /api/store` and `/metrics`.

use super::head::HEAD;
use super::keys::{CHUNKS, HOURS, META, MINUTES, MINUTES_PACKED, SEP, SERIES, WINDOW_MS};
use super::seal::SealMarks;
use super::{Store, StoreError};
use redb::{ReadableTable, ReadableTableMetadata, TableStats};

/// One tier's share of the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierUsage {
    /// Entries: head rows (one ingest commit's samples of a minute and 64 series), chunks (one series and hour each), minute rows (one series
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
    /// Per organisation, by org id.
    pub orgs: Vec<OrgUsage>,
}

/// One organisation's share of metric history.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrgUsage {
    /// The org id.
    pub org: String,
    /// Its series (exact).
    pub series: u64,
    /// Its share of the four tiers' bytes, estimated as the tiers' bytes times its share of
    /// the series: the tables are not kept per org, and walking every entry to attribute its
    /// bytes would cost minutes on a large store.
    pub bytes_estimated: u64,
}

/// Series per org from the `series` table (keys start with the org id and a separator).
fn series_per_org(
    series: &impl ReadableTable<&'static str, u64>,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for entry in series.iter()? {
        let (k, _) = entry?;
        let name = k.value();
        let org = name.split(SEP).next().unwrap_or(name);
        match out.last_mut() {
            Some((o, n)) if o == org => *n += 1,
            _ => out.push((org.to_owned(), 1)),
        }
    }
    Ok(out)
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
        let per_org = series_per_org(&txn.open_table(SERIES)?)?;
        let total: u64 = per_org.iter().map(|(_, n)| n).sum();
        let mut usage = Usage {
            head: tier(head.stats()?, head.len()?),
            chunks: tier(chunks.stats()?, chunks.len()?),
            minute: TierUsage {
                entries: minute.entries + packed.entries,
                bytes: minute.bytes + packed.bytes,
            },
            hour: tier(hour.stats()?, hour.len()?),
            series: total,
            file_bytes: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            sealed_until_ms: SealMarks::read(&txn.open_table(META)?)?
                .until
                .map(|w| w.saturating_mul(WINDOW_MS)),
            orgs: Vec::new(),
        };
        let bytes = usage.head.bytes + usage.chunks.bytes + usage.minute.bytes + usage.hour.bytes;
        usage.orgs = per_org
            .into_iter()
            .map(|(org, series)| OrgUsage {
                bytes_estimated: u64::try_from(
                    u128::from(bytes) * u128::from(series) / u128::from(total.max(1)),
                )
                .unwrap_or(u64::MAX),
                org,
                series,
            })
            .collect();
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
