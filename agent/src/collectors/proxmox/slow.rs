//! Slow reads: the schedule of reads done at their own cadence (SMART data, guest
//! filesystems, certificates) and the time budget they share in a run.

use std::collections::BTreeMap;

/// A read done at its own cadence (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SlowRead {
    /// `/nodes/{node}/certificates/info`.
    Certificates,
    /// `/nodes/{node}/disks/smart` of one device path.
    Smart(String),
    /// `/nodes/{node}/qemu/{vmid}/agent/get-fsinfo` of one VM.
    GuestFs(u32),
}

/// When slow reads are due, and what is kept between them.
#[derive(Debug, Clone, Default)]
pub(super) struct SlowReads {
    /// When each read is due next, ms since the epoch; a read not listed is due now.
    pub(super) due: BTreeMap<SlowRead, i64>,
    /// Guest-agent reads pause until then (ms), after a 403.
    pub(super) agent_denied_until_ms: i64,
    /// The certificates of the last successful read: file name (label-safe), expiry (epoch s).
    pub(super) certs: Vec<(String, f64)>,
}

impl SlowReads {
    pub(super) fn is_due(&self, read: &SlowRead, now_ms: i64) -> bool {
        self.due.get(read).is_none_or(|t| *t <= now_ms)
    }
}

/// The time slow reads may take in one run.
pub(super) struct Budget {
    until: tokio::time::Instant,
}

impl Budget {
    /// `d` from now, but never past `deadline`.
    pub(super) fn new(d: std::time::Duration, deadline: tokio::time::Instant) -> Self {
        Self {
            until: (tokio::time::Instant::now() + d).min(deadline),
        }
    }

    /// `read`'s outcome, or `None` when the budget runs out first (or already has).
    pub(super) async fn run<T>(&self, read: impl Future<Output = T>) -> Option<T> {
        let left = self
            .until
            .checked_duration_since(tokio::time::Instant::now())
            .filter(|d| !d.is_zero())?;
        tokio::time::timeout(left, read).await.ok()
    }
}
