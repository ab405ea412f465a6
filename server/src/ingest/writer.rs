//! The single ingest writer thread: takes decoded batches from every agent session and
//! stores them with group commit (one redb transaction, one fsync, for everything queued),
//! then answers each session with the sequence it may acknowledge.

use super::records::{self, RecordWriter};
use crate::model::{IngestItem, IngestOutcome};
use crate::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::error;

/// Most samples committed in one transaction.
const MAX_SAMPLES_PER_COMMIT: usize = 200_000;
/// Encoded bytes of agent frames taken off their streams and not yet committed: decoded,
/// waiting for the writer, or being committed (about 3 bytes of memory per encoded byte
/// once decoded). Sessions reserve room *before* reading a frame's payload
/// ([`WriterHandle::reserve`]), so while the writer is behind, telemetry waits in QUIC flow
/// control on the agents' side and memory stays bounded however many agents are connected.
/// 32 MiB is about 750,000 samples of typical batches: several commits' worth queued.
const QUEUED_BYTES: usize = 32 << 20;

type Reply = oneshot::Sender<Result<IngestOutcome, String>>;
type Queued = (IngestItem, Reply, Room);

/// Room reserved in the writer's budget for one frame; given back when dropped, which for
/// telemetry is after its commit.
#[derive(Default)]
pub struct Room {
    _permit: Option<OwnedSemaphorePermit>,
}

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
    /// The writer of agent records' session updates (hello, last seen).
    pub records: RecordWriter,
}

impl WriterHandle {
    /// Reserves room for a frame of `bytes` encoded bytes, waiting (first come, first
    /// served) while frames already taken off the agents' streams fill the budget.
    pub async fn reserve(&self, bytes: usize) -> Room {
        let weight = u32::try_from(bytes.clamp(1, QUEUED_BYTES)).unwrap_or(1);
        // The semaphore is never closed.
        Room {
            _permit: self.budget.clone().acquire_many_owned(weight).await.ok(),
        }
    }

    /// Queues `item` with the room reserved for its frame; the receiver resolves once it is
    /// durably stored (or failed). If the writer is gone, the dropped reply makes the
    /// receiver resolve with an error, which the session reports.
    pub fn enqueue(
        &self,
        item: IngestItem,
        room: Room,
    ) -> oneshot::Receiver<Result<IngestOutcome, String>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send((item, tx, room));
        rx
    }
}

/// Starts the writer on a thread of its own: commits block on fsync, and one long-lived
/// thread keeps the allocator from spreading over many blocking-pool threads. Starts the
/// agent-record writer too.
///
/// # Errors
/// If the thread cannot be spawned.
pub fn spawn(store: Arc<Store>) -> std::io::Result<WriterHandle> {
    let records = records::spawn(store.clone())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(IngestStats::default());
    let thread_stats = stats.clone();
    std::thread::Builder::new()
        .name("ingest-writer".into())
        .spawn(move || run(&store, rx, &thread_stats))?;
    Ok(WriterHandle {
        tx,
        budget: Arc::new(Semaphore::new(QUEUED_BYTES)),
        stats,
        records,
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
        // The room is given back after this commit, when `permits` drops.
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
