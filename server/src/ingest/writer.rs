//! The single ingest writer thread: takes decoded batches from every agent session and
//! stores them with group commit (one redb transaction, one fsync, for everything queued),
//! then answers each session with the sequence it may acknowledge.

use crate::model::{IngestItem, IngestOutcome};
use crate::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::error;

/// Most samples committed in one transaction.
const MAX_SAMPLES_PER_COMMIT: usize = 200_000;
/// Samples queued or being committed before sessions wait (backpressure to QUIC). Bounding
/// samples, not batches, bounds memory whatever the batch size.
const QUEUED_SAMPLES: usize = 1_000_000;

type Reply = oneshot::Sender<Result<IngestOutcome, String>>;
type Queued = (IngestItem, Reply, OwnedSemaphorePermit);

/// Counters, read by benchmarks and `/metrics`.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Samples durably stored.
    pub samples_stored: AtomicU64,
    /// Batches durably stored.
    pub batches_stored: AtomicU64,
    /// Batches skipped as already stored (replays).
    pub batches_duplicate: AtomicU64,
    /// Commits.
    pub commits: AtomicU64,
    /// Connections refused because another live process held the agent's identity.
    pub identity_conflicts: AtomicU64,
}

/// Cloneable handle used by sessions.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Queued>,
    budget: Arc<Semaphore>,
    /// Shared counters.
    pub stats: Arc<IngestStats>,
}

impl WriterHandle {
    /// Queues `item`; the receiver resolves once it is durably stored (or failed).
    /// Waits while the queue holds its budget of samples.
    pub async fn enqueue(
        &self,
        item: IngestItem,
    ) -> oneshot::Receiver<Result<IngestOutcome, String>> {
        let (tx, rx) = oneshot::channel();
        let weight = u32::try_from(item.batch.samples.len().clamp(1, QUEUED_SAMPLES)).unwrap_or(1);
        // The semaphore is never closed; if the writer is gone, the dropped reply makes the
        // receiver resolve with an error, which the session reports.
        if let Ok(permit) = self.budget.clone().acquire_many_owned(weight).await {
            let _ = self.tx.send((item, tx, permit));
        }
        rx
    }
}

/// Starts the writer on a thread of its own: commits block on fsync, and one long-lived
/// thread keeps the allocator from spreading over many blocking-pool threads.
///
/// # Errors
/// If the thread cannot be spawned.
pub fn spawn(store: Arc<Store>) -> std::io::Result<WriterHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(IngestStats::default());
    let thread_stats = stats.clone();
    std::thread::Builder::new()
        .name("ingest-writer".into())
        .spawn(move || run(&store, rx, &thread_stats))?;
    Ok(WriterHandle {
        tx,
        budget: Arc::new(Semaphore::new(QUEUED_SAMPLES)),
        stats,
    })
}

fn run(store: &Store, mut rx: mpsc::UnboundedReceiver<Queued>, stats: &IngestStats) {
    while let Some(first) = rx.blocking_recv() {
        let mut samples = first.0.batch.samples.len();
        let mut queued = vec![first];
        while samples < MAX_SAMPLES_PER_COMMIT {
            match rx.try_recv() {
                Ok(next) => {
                    samples += next.0.batch.samples.len();
                    queued.push(next);
                }
                Err(_) => break,
            }
        }
        let mut items = Vec::with_capacity(queued.len());
        let mut replies = Vec::with_capacity(queued.len());
        // The budget is given back after this commit, when `permits` drops.
        let mut permits = Vec::with_capacity(queued.len());
        for (item, reply, permit) in queued {
            items.push(item);
            replies.push(reply);
            permits.push(permit);
        }
        match store.ingest(&items, crate::clock::now_ms()) {
            Ok(outcomes) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                for ((outcome, reply), item) in outcomes.into_iter().zip(replies).zip(&items) {
                    if outcome.stored {
                        stats.batches_stored.fetch_add(1, Ordering::Relaxed);
                        stats
                            .samples_stored
                            .fetch_add(item.batch.samples.len() as u64, Ordering::Relaxed);
                    } else {
                        stats.batches_duplicate.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                // An unavailable store (full disk) is logged once by the store itself.
                let reason = match &err {
                    crate::store::StoreError::Unavailable { reason } => reason.clone(),
                    _ => {
                        error!(error = %err, batches = replies.len(), "ingest commit failed; agents will replay");
                        "storage error".to_owned()
                    }
                };
                for reply in replies {
                    let _ = reply.send(Err(reason.clone()));
                }
            }
        }
        drop(permits);
    }
}
