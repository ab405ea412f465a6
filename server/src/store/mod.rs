//! The server's embedded store: agents, join tokens, resource state, metric history and
//! Patrol's findings, suppression rules and runs in one redb file, written with group commit.
//!
//! # Invariants
//!
//! - **Durability.** Every mutating method is one redb write transaction; redb fsyncs on commit,
//!   so when a method returns `Ok` its effect survives a crash, and when it fails nothing of it
//!   is stored. redb allows one writer at a time: concurrent writers queue, readers never block
//!   and see the last committed state.
//! - **Exactly-once ingest.** The store keeps the highest stored batch `seq` per agent
//!   (`agent_seq`). [`Store::ingest`] skips a batch whose `seq` is at or below it (outcome
//!   `stored = false`, `ack_seq` = the stored seq) and otherwise stores the whole batch and
//!   raises the seq, in the same transaction. Agent seqs start at 1; 0 means "nothing stored".
//!   A sample is keyed by (series, time), so even a replay that got past the seq check would
//!   overwrite (last write wins) rather than duplicate.
//! - **Orgs.** Every ingested record carries `org_id`; resources, series and Patrol's
//!   findings, suppression rules and runs are keyed by the org, so one org's queries cannot
//!   reach another's data. The store trusts the org its caller passes (for ingest, taken
//!   from the agent's certificate).
//! - **Unknown is not zero.** A non-finite sample value is not stored (neither in history nor
//!   in `latest`); an attribute the agent could not read is stored as JSON `null`.
//! - **Resources.** A batch's resources are upserted: name, parent, status, attrs, agent and
//!   collector are replaced, `latest` is kept and updated from the batch's samples (a sample
//!   replaces the latest value unless it is older). A resource known only from samples gets a
//!   stub record with status `unknown`. An older report (by collection time) from a different
//!   agent does not overwrite the state another agent reported.
//! - **Provenance follows `latest`.** When a sample becomes a metric's latest value and its
//!   batch names the provenance of that (resource kind, metric without labels), the record's
//!   `provenance` entry for the metric is set to it. A batch without provenance (an agent
//!   before protocol 1.2) leaves the entry as it was. It is stored in the resource record, in
//!   the same transaction as the samples, so it is exactly-once like everything else.
//! - **Series ids.** A series (`org US resource_id US metric`) gets a `u64` id on its first
//!   sample, allocated from `meta.next_series_id` in the ingest transaction; ids are never
//!   reused. The in-memory id cache only receives ids whose transaction committed.
//!
//! # Layout (schema version 2)
//!
//! | table          | key                                     | value                     |
//! |----------------|-----------------------------------------|---------------------------|
//! | `meta`         | `schema_version`, `next_series_id`, `head_next_row`, tier watermarks, seal and pack marks, `recovered_at_ms` | `u64` |
//! | `tokens`       | token id                                | JSON [`TokenRecord`]      |
//! | `agents`       | agent id                                | JSON [`AgentRecord`]      |
//! | `agent_seq`    | agent id                                | `u64` last stored seq     |
//! | `resources`    | `org US resource_id`                    | JSON [`ResourceRecord`]   |
//! | `series`       | `org US resource_id US metric`          | `u64` series id           |
//! | `head`         | `[u8; 24]`: `minute \| group \| row`   | packed samples (`head.rs`, `rows.rs`) |
//! | `chunks`       | `[u8; 16]`: `window \| series id`       | compressed samples (`chunk.rs`) |
//! | `samples_1m`   | `[u8; 24]`: `minute \| metric key \| series id` | `[u8; 32]` [`Aggregate`] |
//! | `samples_1m_packed` | `[u8; 24]`: `hour \| metric key \| series id` | a final hour's minute aggregates, compressed (`pack.rs`) |
//! | `samples_1h`   | `[u8; 24]`: `day \| metric key \| series id` | bitmap + [`Aggregate`]s |
//! | `findings`     | `org US finding_id`                     | JSON [`Finding`]          |
//! | `suppressions` | `org US rule_id` (16 random hex digits) | JSON [`Suppression`]      |
//! | `patrol_runs`  | `org US run_id` (16 hex digits)         | JSON [`PatrolRunRecord`]  |
//! | `alerts`       | `org US alert_id` (16 hex digits)       | JSON [`AlertRecord`]      |
//! | `alert_rules`  | org                                     | JSON rule set (`alerts::rules`) |
//! | `patrol_settings` | org                                  | JSON settings (`patrol::settings`) |
//! | `audit_events` | `org US seq` (16 hex digits)            | prev hash, HMAC, fields JSON (`audit.rs`) |
//! | `audit_checkpoints` | `org US tree_size` (16 hex digits) | JSON [`Checkpoint`]       |
//! | `audit_heads`  | org                                     | JSON [`AuditHead`]        |
//! | `webhooks`     | `org US endpoint_id` (16 hex digits)    | JSON [`WebhookEndpoint`]  |
//! | `webhook_state` | `org US endpoint_id`                   | JSON [`WebhookState`] (outbox cursor) |
//! | `webhook_dead_letters` | `org US endpoint_id US delivery_seq` (16 hex digits) | JSON [`DeadLetter`] |
//! | `webhook_requeued` | as `webhook_dead_letters`           | JSON [`Requeued`]         |
//! | `webhook_deliveries` | `org US endpoint_id US log_seq` (16 hex digits, newest 1000) | JSON [`DeliveryLog`] |
//! | `remote_write_outbox` | `u64` row key                         | varint count, then per sample: varint series id, zigzag varint ts delta, `f64` LE (`outbox.rs`) |
//! | `remote_write_series` | series id                            | series name               |
//! | `remote_write_state` | `next_key`, `backlog_samples`, `dropped_samples`, `rejected_samples` | `u64` |
//!
//! [`Finding`]: crate::model::finding::Finding
//! [`Checkpoint`]: crate::chain::event::Checkpoint
//! [`Suppression`]: crate::model::finding::Suppression
//! [`AlertRecord`]: crate::model::alert::AlertRecord
//! [`Detection::finding_id`]: crate::model::finding::Detection
//!
//! `US` is U+001F (org ids are slugs and resource ids have no control characters, so it cannot
//! occur inside them; the metric is last). In a head key each part is 8 bytes big-endian;
//! `minute = floor(ts / 60 s)` with the sign bit flipped so byte order is numeric order, `group`
//! is the series id / 64 and `row` a number that grows with every row written. A row holds one
//! ingest transaction's samples of one minute and group, so a commit writes one row per group
//! it touches instead of one per sample (schema 1 had one row a sample: redb's per-entry cost
//! was most of the ingest writer's time); it is converted when opened (`head::convert_legacy`).
//! Clustering by minute first keeps a commit's writes in the few pages of the current minute
//! (ordering by series first made every commit rewrite the tail page of every series). A range
//! read of one series does one B-tree seek per populated minute and skips empty stretches.
//!
//! **Downsampled tiers** (`rollup.rs`, invariants there): `samples_1m` holds per-series count,
//! sum, min and max of each minute, `samples_1h` those of each hour, one row per series and UTC
//! day (a bitmap and up to 24 aggregates). Their keys are time-first too, then a metric key
//! (64-bit FNV-1a of the metric name), then the series id, so:
//! - writes stay local: a closed minute is rolled up once, after the ingest commit, from one
//!   contiguous range of raw samples and appended as one block; an hour once all its minutes
//!   are, from the minute tier, into the current day's block; only late samples (before the
//!   minute watermark) update rows in place, in their ingest transaction;
//! - bulk reads are cheap: one range read returns a metric of every series for one minute or
//!   day, so Patrol reads a week of hourly CPU of the whole fleet with 8 range reads and 8 rows
//!   a series, not one seek per series and populated minute (10,080 per series for a week).
//!   With one row per hour (168 a series a week) redb's per-entry cost dominated the snapshot
//!   (680 ms, measured on a busier machine, against 290 ms now). A series-first hour tier
//!   would read one series with one seek, but its hourly roll-up would rewrite the tail page
//!   of every series instead of appending one block;
//! - a minute row costs about as much disk as a head sample (~56 bytes) and there is one per
//!   series and minute, so minute rows are kept for 50 hours by default (twice Patrol's
//!   longest window plus margin; older minutes are read from hour rows or raw samples).
//!
//! **Sealed chunks** (`seal.rs`, invariants there): the head holds only the last hour or two;
//! ten minutes after an hour window ends, each series' samples of it are encoded into one
//! chunk (`chunk.rs`) keyed `window | series id`, time first like the tiers, so a seal
//! appends and retention deletes from the start. `history.rs` is the one raw reader: it
//! merges the head and the chunks of the range. **Retention** (`retention.rs`) deletes
//! whole chunks and hour-tier days past each tier's horizon; samples older than the raw
//! horizon are refused at ingest.
//!
//! Readers combine tiers and raw samples by the watermarks and are exact whatever has been
//! rolled up; a file from before the tiers (no watermarks) reads from raw samples and is
//! rolled up over the next ingest commits, a bounded step each. A downgrade to a server without
//! tiers followed by an upgrade leaves the samples the older server stored in already rolled-up
//! minutes out of the tiers.
//! A Patrol run id is a per-org `u64` counting up from 1 (the org's newest stored id + 1, read
//! in the inserting transaction), written as 16 lowercase hex digits so key order is numeric
//! order; finding ids are [`Detection::finding_id`]s (16 hex digits).
//! Opening a file with another schema version fails with [`StoreError::UnsupportedSchema`].
//! The Patrol tables (`findings`, `suppressions`, `patrol_runs`), the alert tables (`alerts`,
//! `alert_rules`) and the tiers (`samples_1m`, `samples_1h`) were added without a version bump: [`Store::open`] creates missing tables,
//! so older files gain them empty, and older servers never open them.
//! Adding a JSON field with a default (as `provenance` in [`ResourceRecord`] was) keeps the
//! schema version: older records decode with the default, older servers ignore the field.
//!
//! # Throughput
//!
//! Measured in release mode on the 2-core dev VM (virtio disk, fsync on every commit):
//! - 50 batches x 2,000 samples per commit (100k series, 1,000 resources with 100 `latest`
//!   metrics each): ~480k samples/s, ~215 ms per commit, steady over 100 commits (10M samples).
//! - Spool-replay shape (60k samples of 1,000 series per commit): ~900k samples/s.
//! - History of one series over 24 h at 10 s (8,640 points): ~5 ms, raw or stepped.
//! - Disk: 65-90 bytes per sample including B-tree overhead and resource records.
//! - Tiers (docs/PERFORMANCE.md, "Patrol run"): a bulk read of the whole 10,000-resource
//!   fleet (a week of hourly CPU and memory, an hour of per-minute levels) takes ~290 ms
//!   instead of ~28 s from raw samples. Their write cost: ~10 % more ingest time for current
//!   samples; samples older than the minute watermark (the ingest benchmark sends hour-old
//!   samples) update the tiers in place, ~15-25 % less throughput there. Disk: a minute row
//!   (kept 50 h) costs ~56 bytes, a raw sample ~57; a store holding a week of samples at a
//!   30 s interval grows ~15 % (60 s: ~30 %; the Patrol benchmark's sparse synthetic history,
//!   one sample per minute row: +77 %).

/// The reserve setting that means "automatic".
const AUTO_RESERVE: u64 = u64::MAX;

/// Free space needed before a failed store is reopened (the repair itself writes).
const RECOVER_MIN_FREE: u64 = 1 << 20;

/// Page cache of the database. redb's default (1 GiB) made the server's RSS grow with the
/// store; 64 MiB kept up with 10,000 agents and saved 175–300 MiB of RSS against 256 MiB
/// (`docs/PERFORMANCE.md`, "10,000 agents"): writes append, and the reads that matter (the
/// roll-up of the last minute) touch recent pages.
const CACHE_BYTES: usize = 64 << 20;

mod agents;
mod alerts;
mod audit;
#[cfg(test)]
mod audit_tests;
pub mod chunk;
#[cfg(test)]
mod chunk_tests;
pub mod disk;
mod error;
mod findings;
mod head;
mod history;
mod ingest;
mod keys;
mod maintain;
mod outbox;
mod pack;
mod query;
mod retention;
mod rollup;
mod rows;
mod seal;
#[cfg(test)]
mod tests;
mod usage;
mod webhooks;

pub use alerts::AlertReader;
pub use audit::{AuditFilter, AuditRow, Head as AuditHead, Pruned, StoredEvent};
pub use error::StoreError;
pub use findings::PatrolRunRecord;
pub use maintain::{Pass, maintain_task};
pub use outbox::{OutboxAck, OutboxBatch, OutboxLimits, OutboxSeries, OutboxStats};
pub use pack::Packed;
pub use query::{AggregateQuery, Aggregates, StoreView};
pub use retention::{
    Expired, FREE_HISTORY_DAYS, LICENSED_HISTORY_DAYS, LONG_TERM_FEATURE, Retention, RetentionError,
};
pub use rollup::{Aggregate, RollUp};
pub use seal::Sealed;
pub use usage::{OrgUsage, TierUsage, Usage};
pub use webhooks::{
    DEAD_KEEP, DeadLetter, DeliveryLog, LOG_KEEP, Requeued, RequeuedChange, Retry, WebhookCommit,
    WebhookEndpoint, WebhookState,
};

use keys::{
    AGENT_SEQ, AGENTS, META, RESOURCES, SCHEMA_KEY, SCHEMA_PER_SAMPLE_HEAD, SCHEMA_VERSION, SERIES,
    TOKENS,
};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// The embedded database. Cheap to share in an `Arc`; all methods take `&self` and block, so
/// call them from `spawn_blocking` in async code.
///
/// After an IO failure (a full disk) every write answers [`StoreError::Unavailable`] until
/// [`Store::recover`] has reopened the file (`disk.rs`).
pub struct Store {
    path: PathBuf,
    /// The open database; `None` only while [`Store::recover`] swaps it.
    db: RwLock<Option<Arc<Database>>>,
    /// Why writes are refused, if they are.
    health: disk::Health,
    /// Free bytes below which telemetry is refused ([`AUTO_RESERVE`]: [`disk::auto_reserve`]).
    reserve: AtomicU64,
    /// Committed entries of the `series` table, filled on first use by [`Store::ingest`].
    /// Only entries whose transaction committed are added, so it never names an id the file
    /// does not have.
    series_ids: Mutex<HashMap<String, u64>>,
    /// In-memory state of the downsampled tiers (`rollup.rs`).
    tiers: rollup::Tiers,
    /// How long each tier keeps history (`retention.rs`).
    retention: RwLock<Retention>,
    /// Counters for `/metrics`.
    counters: Counters,
    /// The last [`Store::usage`] computed.
    usage: Mutex<Option<Usage>>,
    /// The remote-write outbox's switch, bounds and counters (`outbox.rs`).
    outbox: outbox::Outbox,
}

/// Counters of what the store refused, sealed and expired since it opened.
#[derive(Debug, Default)]
pub struct Counters {
    /// Samples refused for being older than raw retention.
    pub too_old: AtomicU64,
    /// Head samples sealed into chunks.
    pub sealed_samples: AtomicU64,
    /// Chunks deleted by retention.
    pub expired_chunks: AtomicU64,
}

/// What `/healthz` and Patrol know about the store's disk.
#[derive(Debug, Clone)]
pub struct StoreStatus {
    /// The database file.
    pub path: PathBuf,
    /// Its filesystem's size and free space, if readable.
    pub space: Option<disk::DiskSpace>,
    /// Free bytes kept for the audit log: telemetry is refused below it.
    pub reserve: u64,
    /// Why writes are refused, if they are.
    pub failure: Option<disk::Failure>,
}

impl StoreStatus {
    /// Why the store is degraded, if it is: a failed write, or telemetry refused for space.
    pub fn problem(&self) -> Option<String> {
        if let Some(f) = &self.failure {
            return Some(f.reason.clone());
        }
        let space = self.space?;
        (space.free < self.reserve).then(|| {
            format!(
                "only {} free on the disk holding {}, below the {} reserve; telemetry is refused",
                disk::bytes(space.free),
                self.path.display(),
                disk::bytes(self.reserve)
            )
        })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

// `Store` is shared between the ingest writer task and the API handlers.
const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Store>();
    send_sync::<StoreError>();
};

impl Store {
    /// Opens the database at `path`, creating the file and its tables if needed.
    ///
    /// # Errors
    /// [`StoreError::Open`] if the file cannot be opened (missing parent directory, held by
    /// another process, not a redb file); [`StoreError::UnsupportedSchema`] if it was written
    /// with another schema version; other variants for storage failures.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Self::open_db(path)?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Self {
            path: path.to_owned(),
            db: RwLock::new(Some(Arc::new(db))),
            health: disk::Health::default(),
            reserve: AtomicU64::new(AUTO_RESERVE),
            series_ids: Mutex::new(HashMap::new()),
            tiers: rollup::Tiers::default(),
            retention: RwLock::new(Retention::KEEP_ALL),
            counters: Counters::default(),
            usage: Mutex::new(None),
            outbox: outbox::Outbox::default(),
        })
    }

    fn open_db(path: &Path) -> Result<Database, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match found {
                None | Some(SCHEMA_PER_SAMPLE_HEAD) => {
                    // Schema 1's head is converted below; from now on an older release
                    // refuses the file instead of missing the converted samples.
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(StoreError::UnsupportedSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            txn.open_table(TOKENS)?;
            txn.open_table(AGENTS)?;
            txn.open_table(AGENT_SEQ)?;
            txn.open_table(RESOURCES)?;
            txn.open_table(SERIES)?;
            txn.open_table(head::HEAD)?;
            txn.open_table(keys::CHUNKS)?;
            txn.open_table(keys::MINUTES)?;
            txn.open_table(keys::MINUTES_PACKED)?;
            txn.open_table(keys::HOURS)?;
            txn.open_table(findings::FINDINGS)?;
            txn.open_table(findings::SUPPRESSIONS)?;
            txn.open_table(findings::PATROL_RUNS)?;
            txn.open_table(alerts::ALERTS)?;
            txn.open_table(alerts::ALERT_RULES)?;
            txn.open_table(findings::PATROL_SETTINGS)?;
            txn.open_table(audit::AUDIT_EVENTS)?;
            txn.open_table(audit::AUDIT_CHECKPOINTS)?;
            txn.open_table(audit::AUDIT_HEADS)?;
            txn.open_table(webhooks::WEBHOOKS)?;
            txn.open_table(webhooks::WEBHOOK_STATE)?;
            txn.open_table(webhooks::WEBHOOK_DEAD)?;
            txn.open_table(webhooks::WEBHOOK_REQUEUED)?;
            txn.open_table(webhooks::WEBHOOK_LOG)?;
            outbox::create_tables(&txn)?;
        }
        txn.commit()?;
        head::convert_legacy(&db)?;
        Ok(db)
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Unavailable {
                reason: format!("{} is being reopened", self.path.display()),
            })
    }

    /// Starts a read transaction.
    fn read_txn(&self) -> Result<ReadTransaction, StoreError> {
        let txn = self.database()?.begin_read();
        txn.map_err(|e| self.noted(e.into()))
    }

    /// Starts a write transaction, or refuses at once while the store cannot write.
    fn write_txn(&self) -> Result<WriteTransaction, StoreError> {
        if let Some(f) = self.health.failure() {
            return Err(StoreError::Unavailable { reason: f.reason });
        }
        let txn = self.database()?.begin_write();
        txn.map_err(|e| self.noted(e.into()))
    }

    /// Commits `txn`; an IO failure puts the store in the "cannot write" state.
    fn commit(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        txn.commit().map_err(|e| self.noted(e.into()))
    }

    /// Records an IO failure in [`Store::health`] and returns the error as
    /// [`StoreError::Unavailable`]; other errors pass through.
    fn noted(&self, err: StoreError) -> StoreError {
        let reason = match disk::io_failure(&err) {
            None => return err,
            Some(disk::IoFailure::Os(e)) => {
                format!("cannot write {}: {e}", self.path.display())
            }
            Some(disk::IoFailure::Previous) => match self.health.failure() {
                Some(f) => f.reason,
                None => format!("an earlier write to {} failed", self.path.display()),
            },
        };
        if self.health.fail(reason.clone(), crate::clock::now_ms()) {
            tracing::error!(reason = %reason, "store cannot write; refusing writes until it is reopened");
        }
        StoreError::Unavailable { reason }
    }

    /// Sets the free-space reserve for the audit log (`None`: automatic; 0: none).
    pub fn set_reserve(&self, bytes: Option<u64>) {
        self.reserve
            .store(bytes.unwrap_or(AUTO_RESERVE), Ordering::Relaxed);
    }

    /// The store's file, its filesystem's space, the reserve, and why writes are refused.
    pub fn status(&self) -> StoreStatus {
        let space = disk::DiskSpace::of(&self.path).ok();
        let reserve = match self.reserve.load(Ordering::Relaxed) {
            AUTO_RESERVE => space.map_or(0, |s| disk::auto_reserve(s.total)),
            n => n,
        };
        StoreStatus {
            path: self.path.clone(),
            space,
            reserve,
            failure: self.health.failure(),
        }
    }

    /// Refuses telemetry while the store is degraded ([`StoreStatus::problem`]): below the
    /// reserve, so the audit log keeps room, or after a failed write.
    fn check_telemetry_space(&self) -> Result<(), StoreError> {
        match self.status().problem() {
            Some(reason) => Err(StoreError::Unavailable { reason }),
            None => Ok(()),
        }
    }

    /// Reopens the database after an IO failure, once the disk has room again: closes the
    /// failed handle, opens the file (redb repairs it to its last commit) and checks that a
    /// write commits. Returns whether the store can write again.
    ///
    /// # Errors
    /// When the file still cannot be opened or written; the store stays unavailable and the
    /// caller tries again later.
    pub fn recover(&self) -> Result<bool, StoreError> {
        if self.health.failure().is_none() {
            return Ok(true);
        }
        if disk::DiskSpace::of(&self.path).is_ok_and(|s| s.free < RECOVER_MIN_FREE) {
            return Ok(false);
        }
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = slot.take() {
            // Other holders only clone the handle to begin a transaction; wait them out.
            for _ in 0..100 {
                if Arc::strong_count(&old) == 1 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    if let Err(e) = db.close() {
                        tracing::debug!(error = %e, "closing the failed store handle");
                    }
                }
                Err(still) => {
                    *slot = Some(still);
                    return Ok(false);
                }
            }
        }
        let db = Self::open_db(&self.path)?;
        // A probe write proves the disk takes commits again.
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(
                keys::PROBE_KEY,
                u64::try_from(crate::clock::now_ms()).unwrap_or(0),
            )?;
        }
        txn.commit()?;
        // Caches only ever hold committed state, but the failed handle may have committed
        // less than they learned; start them afresh as a restart would.
        self.series_cache().clear();
        self.tiers.reset();
        *slot = Some(Arc::new(db));
        self.health.clear();
        tracing::info!(path = %self.path.display(), "store reopened; writes resume");
        Ok(true)
    }

    /// Sets how long each tier keeps history (already bounded by the licence).
    ///
    /// # Errors
    /// A policy that breaks [`Retention::validate`]; the old one stays.
    pub fn set_retention(&self, policy: Retention) -> Result<(), RetentionError> {
        policy.validate()?;
        *self
            .retention
            .write()
            .unwrap_or_else(PoisonError::into_inner) = policy;
        Ok(())
    }

    /// How long each tier keeps history.
    pub fn retention(&self) -> Retention {
        *self
            .retention
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What the store refused, sealed and expired since it opened.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The series id cache. A panic while it was held cannot leave an uncommitted id in it
    /// (entries are added after the commit), so a poisoned lock is still safe to use.
    fn series_cache(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.series_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs `f` on the store on the blocking pool (store calls block on IO). A panic in `f`
/// comes back as [`StoreError::Corrupt`] naming `what`.
///
/// # Errors
/// What `f` returns.
pub async fn call<T: Send + 'static>(
    store: &Arc<Store>,
    what: &'static str,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Corrupt(format!(
            "{what} store call panicked: {e}"
        ))),
    }
}

/// Reopens the store after a write failure (a full disk) as soon as it can: checks every
/// second while writes are refused, so agents replay within seconds of space coming back.
pub async fn recover_task(store: Arc<Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|v| *v) => return,
            _ = tick.tick() => {}
        }
        if store.status().failure.is_none() {
            continue;
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.recover()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "store not reopened yet"),
            Err(e) => tracing::error!(error = %e, "store recovery panicked"),
        }
    }
}
