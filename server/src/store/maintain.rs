//! The store's background upkeep: roll-ups, retention and sealing, in bounded steps, with
//! progress in the log while a backlog (a converted older file) is worked off.

use super::Store;
use crate::clock::now_ms;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause between passes with nothing left to do.
const IDLE: Duration = Duration::from_secs(10);
/// Pause between passes while a backlog is worked off: ingest gets the writer in between.
const BUSY: Duration = Duration::from_millis(50);
/// Head rows one seal pass moves at most.
const SEAL_BUDGET: usize = 400_000;
/// Minute rows one packing pass packs at most.
const PACK_BUDGET: usize = 400_000;
/// Entries one retention pass deletes at most.
const EXPIRE_BUDGET: usize = 200_000;
/// How often the tiers' disk usage is measured for `/metrics`.
const USAGE_EVERY: Duration = Duration::from_secs(60);
/// How often progress on a backlog is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs [`Store::pass`] until shutdown.
pub async fn maintain_task(store: Arc<Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut progress = Progress::default();
    let mut measured: Option<Instant> = None;
    loop {
        if measured.is_none_or(|t| t.elapsed() >= USAGE_EVERY) {
            measured = Some(Instant::now());
            let s = store.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.usage()).await {
                tracing::debug!(error = %e, "measuring store usage failed");
            }
        }
        let s = store.clone();
        let busy = match tokio::task::spawn_blocking(move || s.pass(now_ms())).await {
            Ok(Ok(pass)) => {
                progress.note(&pass);
                pass.more
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "store upkeep failed; retrying");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "store upkeep panicked");
                false
            }
        };
        let pause = if busy { BUSY } else { IDLE };
        tokio::select! {
            _ = shutdown.wait_for(|v| *v) => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// What one upkeep pass did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass {
    /// Head samples sealed.
    pub sealed: u64,
    /// Minute rows packed.
    pub packed: u64,
    /// Minute aggregates before this time are packed, ms.
    pub packed_until_ms: Option<i64>,
    /// Chunks and rows deleted by retention.
    pub expired: u64,
    /// The first window not wholly sealed, ms.
    pub sealed_until_ms: Option<i64>,
    /// Whether work is left.
    pub more: bool,
}

impl Store {
    /// One bounded round of upkeep at `now_ms`: roll up closed minutes, pack final hours of
    /// the minute tier, delete what retention no longer keeps, seal closed windows.
    ///
    /// # Errors
    /// Storage failures; what committed before stays.
    pub fn pass(&self, now_ms: i64) -> Result<Pass, super::StoreError> {
        let rolled = self.roll_up(now_ms)?;
        let packed = self.pack(now_ms, PACK_BUDGET)?;
        let expired = self.expire(now_ms, EXPIRE_BUDGET)?;
        let sealed = self.seal(now_ms, SEAL_BUDGET)?;
        Ok(Pass {
            sealed: sealed.samples,
            packed: packed.minutes,
            packed_until_ms: packed.until_ms,
            expired: expired.chunks + expired.head_rows + expired.hour_rows,
            sealed_until_ms: sealed.until_ms,
            more: rolled.pending || packed.more || expired.more || sealed.more,
        })
    }
}

/// Progress of a backlog, for the log.
#[derive(Default)]
struct Progress {
    /// When the backlog began, and samples sealed and minute rows packed since.
    since: Option<(Instant, u64, u64)>,
    last_log: Option<Instant>,
    /// Whether the last pass found nothing left (logged once per change).
    idle: bool,
}

impl Progress {
    fn note(&mut self, pass: &Pass) {
        if !pass.more {
            if let Some((start, sealed, packed)) = self.since.take() {
                tracing::info!(
                    samples = sealed + pass.sealed,
                    minute_rows = packed + pass.packed,
                    secs = start.elapsed().as_secs(),
                    "store upkeep caught up: history is sealed into chunks, minutes packed"
                );
            }
            if !self.idle {
                self.idle = true;
                tracing::debug!(
                    sealed_until = %pass
                        .sealed_until_ms
                        .and_then(crate::clock::rfc3339_ms)
                        .unwrap_or_else(|| "-".to_owned()),
                    "store upkeep idle: nothing left to roll up, expire or seal"
                );
            }
            return;
        }
        self.idle = false;
        let (_, sealed, packed) = self.since.get_or_insert((Instant::now(), 0, 0));
        *sealed += pass.sealed;
        *packed += pass.packed;
        let due = self.last_log.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
        if due {
            self.last_log = Some(Instant::now());
            tracing::info!(
                sealed_samples = *sealed,
                sealed_until = %pass
                    .sealed_until_ms
                    .and_then(crate::clock::rfc3339_ms)
                    .unwrap_or_else(|| "-".to_owned()),
                packed_minute_rows = *packed,
                packed_until = %pass
                    .packed_until_ms
                    .and_then(crate::clock::rfc3339_ms)
                    .unwrap_or_else(|| "-".to_owned()),
                "store upkeep: sealing stored history into chunks, packing minutes"
            );
        }
    }
}
