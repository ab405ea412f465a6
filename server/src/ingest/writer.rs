//! The single ingest writer: takes decoded batches from every agent session and stores
//! them with group commit (one redb transaction, one fsync, for everything queued),
//! then answers each session with the sequence it may acknowledge.

use crate::store::{IngestItem, IngestOutcome, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

/// Most samples committed in one transaction.
const MAX_SAMPLES_PER_COMMIT: usize = 200_000;
/// Batches the writer queue holds before sessions wait (backpressure to QUIC).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<IngestOutcome, String>>;

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
}

/// Cloneable handle used by sessions.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<(IngestItem, Reply)>,
    /// Shared counters.
    pub stats: Arc<IngestStats>,
}

impl WriterHandle {
    /// Queues `item`; the receiver resolves once it is durably stored (or failed).
    /// Waits while the queue is full.
    pub async fn enqueue(
        &self,
        item: IngestItem,
    ) -> oneshot::Receiver<Result<IngestOutcome, String>> {
        let (tx, rx) = oneshot::channel();
        // If the writer is gone the receiver resolves with an error, which the session reports.
        let _ = self.tx.send((item, tx)).await;
        rx
    }
}

/// Starts the writer task.
pub fn spawn(store: Arc<Store>) -> WriterHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    let stats = Arc::new(IngestStats::default());
    crate::spawn_named("ingest-writer", run(store, rx, stats.clone()));
    WriterHandle { tx, stats }
}

async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<(IngestItem, Reply)>,
    stats: Arc<IngestStats>,
) {
    while let Some(first) = rx.recv().await {
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
        let (items, replies): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
        let store = store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let r = store.ingest(&items, crate::now_ms());
            (r, items)
        })
        .await;
        match result {
            Ok((Ok(outcomes), items)) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                for ((outcome, reply), item) in outcomes.into_iter().zip(replies).zip(items) {
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
            Ok((Err(err), _)) => {
                error!(error = %err, batches = replies.len(), "ingest commit failed; agents will replay");
                for reply in replies {
                    let _ = reply.send(Err("storage error".into()));
                }
            }
            Err(err) => {
                error!(error = %err, "ingest commit task panicked; agents will replay");
                for reply in replies {
                    let _ = reply.send(Err("storage error".into()));
                }
            }
        }
    }
}
