//! The store's disk: free space on the filesystem that holds the database, the reserve kept
//! for the audit log, and the "cannot write" state an IO failure leaves until the database
//! is reopened.
//!
//! Telemetry stops being stored when free space falls below the reserve, so that audit
//! events, settings and findings (small, and the proof of what happened) still have room.
//! A failed write (a full disk, a dying device) poisons redb's handle; [`Health`] records why,
//! every write answers [`StoreError::Unavailable`] at once, and `Store::recover` reopens the
//! file once space is back.

use super::StoreError;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// Smallest and largest automatic reserve.
const RESERVE_MIN: u64 = 8 << 20;
const RESERVE_MAX: u64 = 512 << 20;

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Size of the filesystem.
    pub total: u64,
    /// Space an unprivileged writer may still use.
    pub free: u64,
}

impl DiskSpace {
    /// Reads the filesystem that holds `path`.
    ///
    /// # Errors
    /// When `statvfs` fails (the path vanished).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
        let block = st.fragment_size();
        Ok(Self {
            total: st.blocks().saturating_mul(block),
            free: st.blocks_available().saturating_mul(block),
        })
    }

    /// Fraction of the filesystem in use, 0 to 100.
    pub fn used_pct(self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let pct = 100.0 * (self.total - self.free.min(self.total)) as f64 / self.total as f64;
        pct
    }
}

/// The automatic reserve: 2 % of the filesystem, at least 8 MiB and at most 512 MiB, but
/// never more than a quarter of a small filesystem.
pub fn auto_reserve(total: u64) -> u64 {
    (total / 50).clamp(RESERVE_MIN, RESERVE_MAX).min(total / 4)
}

/// Human-readable byte count (`12.0 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Why the store cannot write, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed, naming the file and the OS error.
    pub reason: String,
    /// When it was first seen (ms since the epoch).
    pub since_ms: i64,
}

/// The store's write health.
#[derive(Debug, Default)]
pub struct Health(Mutex<Option<Failure>>);

impl Health {
    /// The current failure, if writes are refused.
    pub fn failure(&self) -> Option<Failure> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a failure; keeps the first reason and time of an ongoing one.
    pub fn fail(&self, reason: String, now_ms: i64) -> bool {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if state.is_some() {
            return false;
        }
        *state = Some(Failure {
            reason,
            since_ms: now_ms,
        });
        true
    }

    /// Clears the failure after a successful reopen.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The IO error inside a store error, if the failure came from the file rather than from a
/// record or a caller's mistake.
pub fn io_failure(err: &StoreError) -> Option<IoFailure<'_>> {
    use redb::{CommitError, StorageError, TransactionError};
    let storage = match err {
        StoreError::Storage(s)
        | StoreError::Commit(CommitError::Storage(s))
        | StoreError::Transaction(TransactionError::Storage(s))
        | StoreError::Table(redb::TableError::Storage(s)) => s,
        _ => return None,
    };
    match storage {
        StorageError::Io(e) => Some(IoFailure::Os(e)),
        StorageError::PreviousIo => Some(IoFailure::Previous),
        _ => None,
    }
}

/// An IO failure of the database file.
#[derive(Debug)]
pub enum IoFailure<'a> {
    /// The OS refused a read, write or sync.
    Os(&'a std::io::Error),
    /// An earlier write failed and the handle must be reopened.
    Previous,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_bounded() {
        // A small filesystem: the 8 MiB floor, but at most a quarter of it.
        assert_eq!(auto_reserve(64 << 20), 8 << 20);
        assert_eq!(auto_reserve(16 << 20), 4 << 20);
        // 2 % in between, 512 MiB at most.
        assert_eq!(auto_reserve(1 << 30), (1 << 30) / 50);
        assert_eq!(auto_reserve(100 << 30), RESERVE_MAX);
    }

    #[test]
    fn health_keeps_the_first_failure() {
        let h = Health::default();
        assert!(h.fail("disk full".into(), 5));
        assert!(!h.fail("again".into(), 9));
        assert_eq!(
            h.failure().map(|f| (f.reason, f.since_ms)),
            Some(("disk full".into(), 5))
        );
        h.clear();
        assert_eq!(h.failure(), None);
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
    }

    #[test]
    fn used_pct_of_a_full_and_empty_disk() {
        assert!(
            (DiskSpace {
                total: 100,
                free: 0
            }
            .used_pct()
                - 100.0)
                .abs()
                < 1e-9
        );
        assert!(
            (DiskSpace {
                total: 100,
                free: 100
            }
            .used_pct())
            .abs()
                < 1e-9
        );
        assert!((DiskSpace { total: 0, free: 0 }.used_pct()).abs() < 1e-9);
    }
}
