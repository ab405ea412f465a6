//! The remote-write outbox: every sample an ingest commit stores, appended in the same write
//! transaction while the Prometheus remote-write sink is on, read in order by the sender
//! (`crate::remote_write`) and deleted once shipped. The rows that are left are the cursor.
//!
//! # Invariants
//! - **Exactly as durable as the samples.** [`Pending::append`] runs inside the ingest
//!   transaction, so a stored sample is in the outbox iff its batch committed; a replayed batch
//!   skipped by the seq check adds nothing.
//! - **Order.** Row keys count up from 1 (`next_key` in `remote_write_state`); a commit's
//!   samples take one or more rows of at most `row_samples`, so rows are in commit order and
//!   [`Store::outbox_next`] returns the oldest first.
//! - **Bounded.** `backlog_samples` in `remote_write_state` counts the samples in the rows.
//!   When an append takes it above `max_backlog_samples`, the oldest rows are deleted in the
//!   same transaction and their samples added to `dropped_samples` (persistent, exported as
//!   `warden_remote_write_dropped_samples_total{reason="backlog_full"}`).
//! - **Acks.** [`Store::outbox_ack`] deletes every row up to a key; samples of a batch the
//!   receiver refused (4xx) go to `rejected_samples` (persistent). A row dropped for space
//!   while its request was in flight is counted as dropped and still arrives.
//! - **Series names.** The outbox stores series ids; `remote_write_series` maps an id to its
//!   series name (`org US resource_id US metric`), written by the append the first time this
//!   process sees the id. A missing entry (a failed commit after the id was noted, or ids from
//!   before the sink was on) is found by one scan of the `series` table.
//!
//! # Layout
//!
//! | table                 | key               | value                                      |
//! |-----------------------|-------------------|--------------------------------------------|
//! | `remote_write_outbox` | `u64` row key     | row: varint count, then per sample varint series id, zigzag varint ts delta (ms), `f64` LE |
//! | `remote_write_series` | `u64` series id   | series name                                |
//! | `remote_write_state`  | `next_key`, `backlog_samples`, `dropped_samples`, `rejected_samples` | `u64` |

use super::keys::{RESOURCES, SEP, SERIES, decode, resource_key};
use super::rows::{decode_row, encode_row, row_len};
use super::{Store, StoreError};
use crate::model::records::ResourceRecord;
use redb::{ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// Outbox rows by key.
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("remote_write_outbox");
/// Series id -> series name, for the ids the outbox holds.
pub(super) const OUTBOX_SERIES: TableDefinition<u64, &str> =
    TableDefinition::new("remote_write_series");
/// Counters of the outbox.
pub(super) const OUTBOX_STATE: TableDefinition<&str, u64> =
    TableDefinition::new("remote_write_state");

const NEXT_KEY: &str = "next_key";
const BACKLOG: &str = "backlog_samples";
const DROPPED: &str = "dropped_samples";
const REJECTED: &str = "rejected_samples";

/// Series ids remembered as named in `remote_write_series` at most; past it the set restarts
/// (names are then rewritten once more, which is harmless).
const KNOWN_MAX: usize = 1 << 22;
/// Resolved series names cached for the reader at most.
const NAMES_MAX: usize = 1 << 20;
/// How long a resource's type and agent are reused before its record is read again.
const LABELS_TTL_MS: i64 = 60_000;
/// Least time between two warnings about dropped rows.
const DROP_WARN_MS: i64 = 60_000;

/// How the outbox is bounded and cut into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Samples kept at most; past it the oldest rows are dropped.
    pub max_backlog_samples: u64,
    /// Samples per row at most (the sender's batch size, so a request never needs to split
    /// a row).
    pub row_samples: usize,
}

/// A series of an outbox batch with its resource's labels and its samples, ascending by time
/// (one sample per timestamp, the last stored).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxSeries {
    /// Organisation.
    pub org: String,
    /// Resource id (`<type>:<name>`).
    pub resource_id: String,
    /// Resource type from its record (the id's prefix when it has none).
    pub resource_kind: String,
    /// The agent that last reported the resource (empty when unknown).
    pub agent_id: String,
    /// The metric name as stored, labels included (`fs_used_pct{mount="/"}`).
    pub metric: String,
    /// `(ts ms, value)`, ascending.
    pub samples: Vec<(i64, f64)>,
}

/// The oldest rows of the outbox, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBatch {
    /// Key of the last row read: pass it to [`Store::outbox_ack`].
    pub last_key: u64,
    /// Samples in the rows (before merging equal timestamps).
    pub samples: u64,
    /// The rows' samples by series.
    pub series: Vec<OutboxSeries>,
}

/// What became of a batch's samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxAck {
    /// The receiver took these.
    pub sent: u64,
    /// The receiver refused these for good (4xx); they are dropped.
    pub rejected: u64,
}

/// The outbox's counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Whether the sink is on.
    pub enabled: bool,
    /// Samples waiting.
    pub backlog_samples: u64,
    /// Rows waiting.
    pub backlog_rows: u64,
    /// Samples dropped because the backlog was full (persistent).
    pub dropped_samples: u64,
    /// Samples the receiver refused (persistent).
    pub rejected_samples: u64,
    /// Samples shipped since the server started.
    pub sent_samples: u64,
    /// Requests that failed and will be retried, since the server started.
    pub failed_requests: u64,
    /// Time of the last shipped batch, ms since the epoch (0: none since the start).
    pub last_success_ms: i64,
}

/// In-memory state of the outbox, one per [`Store`].
#[derive(Default)]
pub(super) struct Outbox {
    limits: RwLock<Option<OutboxLimits>>,
    /// Series ids whose name this process has written to `remote_write_series`.
    known: Mutex<HashSet<u64>>,
    /// Reader's cache: series id -> series name.
    names: Mutex<HashMap<u64, Arc<str>>>,
    /// Reader's cache: resource key -> (type, agent, when read in ms).
    labels: Mutex<HashMap<String, (String, String, i64)>>,
    sent_samples: AtomicU64,
    failed_requests: AtomicU64,
    last_success_ms: AtomicI64,
    last_drop_warn_ms: AtomicI64,
}

/// Samples of one ingest transaction on their way into the outbox.
pub(super) struct Pending<'a> {
    outbox: &'a Outbox,
    limits: OutboxLimits,
    known: MutexGuard<'a, HashSet<u64>>,
    samples: Vec<(u64, i64, f64)>,
    names: Vec<(u64, String)>,
}

impl Pending<'_> {
    /// Notes a stored sample of series `id` named `series` (`org US resource_id US metric`).
    pub(super) fn push(&mut self, id: u64, series: &str, ts_ms: i64, value: f64) {
        if self.known.insert(id) {
            self.names.push((id, series.to_owned()));
        }
        self.samples.push((id, ts_ms, value));
    }

    /// Appends the noted samples to the outbox in `txn` (the ingest transaction), dropping the
    /// oldest rows past the bound.
    ///
    /// # Errors
    /// Storage failures and a corrupt row; the caller's transaction then fails whole.
    pub(super) fn append(mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        if self.known.len() > KNOWN_MAX {
            self.known.clear();
        }
        if self.samples.is_empty() {
            return Ok(());
        }
        let mut rows = txn.open_table(OUTBOX)?;
        let mut state = txn.open_table(OUTBOX_STATE)?;
        let mut names = txn.open_table(OUTBOX_SERIES)?;
        for (id, name) in &self.names {
            names.insert(*id, name.as_str())?;
        }
        let mut next = counter(&state, NEXT_KEY)?.max(1);
        let mut backlog = counter(&state, BACKLOG)?;
        let mut buf = Vec::new();
        for chunk in self.samples.chunks(self.limits.row_samples.max(1)) {
            encode_row(chunk, &mut buf);
            rows.insert(next, buf.as_slice())?;
            next += 1;
            backlog += chunk.len() as u64;
        }
        let mut dropped = 0;
        while backlog > self.limits.max_backlog_samples {
            let Some((_, row)) = rows.pop_first()? else {
                backlog = 0;
                break;
            };
            let n = row_len(row.value())?;
            backlog = backlog.saturating_sub(n);
            dropped += n;
        }
        state.insert(NEXT_KEY, next)?;
        state.insert(BACKLOG, backlog)?;
        if dropped > 0 {
            let total = counter(&state, DROPPED)? + dropped;
            state.insert(DROPPED, total)?;
            let now = crate::clock::now_ms();
            let last = self.outbox.last_drop_warn_ms.load(Ordering::Relaxed);
            if now - last >= DROP_WARN_MS {
                self.outbox.last_drop_warn_ms.store(now, Ordering::Relaxed);
                tracing::warn!(
                    dropped,
                    dropped_total = total,
                    max_backlog_samples = self.limits.max_backlog_samples,
                    "remote-write backlog full; dropped its oldest samples"
                );
            }
        }
        Ok(())
    }
}

/// Creates the outbox's tables (from `Store::open`).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(OUTBOX)?;
    txn.open_table(OUTBOX_SERIES)?;
    txn.open_table(OUTBOX_STATE)?;
    Ok(())
}

impl Store {
    /// Turns the remote-write outbox on (with its bounds) or off. Off, ingest appends nothing
    /// and rows already there stay until the sink is on again.
    pub fn set_outbox(&self, limits: Option<OutboxLimits>) {
        *self
            .outbox
            .limits
            .write()
            .unwrap_or_else(PoisonError::into_inner) = limits;
    }

    /// A collector for one ingest transaction's samples, `None` while the sink is off.
    pub(super) fn outbox_pending(&self) -> Option<Pending<'_>> {
        let limits = (*self
            .outbox
            .limits
            .read()
            .unwrap_or_else(PoisonError::into_inner))?;
        Some(Pending {
            outbox: &self.outbox,
            limits,
            known: self
                .outbox
                .known
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            samples: Vec::new(),
            names: Vec::new(),
        })
    }

    /// The oldest outbox rows holding at most `max_samples` samples (at least one row), with
    /// series names and resource labels resolved; `None` when the outbox is empty.
    ///
    /// # Errors
    /// Storage failures and corrupt rows.
    pub fn outbox_next(&self, max_samples: u64) -> Result<Option<OutboxBatch>, StoreError> {
        let txn = self.read_txn()?;
        let rows = txn.open_table(OUTBOX)?;
        let mut last_key = None;
        let mut samples = Vec::new();
        for row in rows.range(1..)? {
            let (k, v) = row?;
            let n = row_len(v.value())?;
            if last_key.is_some() && samples.len() as u64 + n > max_samples {
                break;
            }
            decode_row(v.value(), &mut samples)?;
            last_key = Some(k.value());
        }
        let Some(last_key) = last_key else {
            return Ok(None);
        };

        // Series names: the cache, then `remote_write_series`, then one scan of `series`.
        let mut by_id: BTreeMap<u64, Vec<(i64, f64)>> = BTreeMap::new();
        for &(id, ts, v) in &samples {
            by_id.entry(id).or_default().push((ts, v));
        }
        let mut resolved: HashMap<u64, Arc<str>> = HashMap::with_capacity(by_id.len());
        {
            let mut cache = self
                .outbox
                .names
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let names = txn.open_table(OUTBOX_SERIES)?;
            let mut missing = HashSet::new();
            for id in by_id.keys() {
                if let Some(n) = cache.get(id) {
                    resolved.insert(*id, n.clone());
                } else if let Some(n) = names.get(id)? {
                    resolved.insert(*id, Arc::from(n.value()));
                } else {
                    missing.insert(*id);
                }
            }
            if !missing.is_empty() {
                for entry in txn.open_table(SERIES)?.iter()? {
                    let (name, id) = entry?;
                    if missing.remove(&id.value()) {
                        resolved.insert(id.value(), Arc::from(name.value()));
                        if missing.is_empty() {
                            break;
                        }
                    }
                }
            }
            if !missing.is_empty() {
                tracing::error!(
                    series = missing.len(),
                    "remote-write outbox names series the store does not have; skipping their samples"
                );
            }
            if cache.len() + resolved.len() > NAMES_MAX {
                cache.clear();
            }
            cache.extend(resolved.iter().map(|(k, v)| (*k, v.clone())));
        }

        let resources = txn.open_table(RESOURCES)?;
        let now = crate::clock::now_ms();
        let mut labels = self
            .outbox
            .labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if labels.len() > NAMES_MAX {
            labels.clear();
        }
        let mut series = Vec::with_capacity(by_id.len());
        for (id, mut points) in by_id {
            let Some(name) = resolved.get(&id) else {
                continue;
            };
            let mut parts = name.splitn(3, SEP);
            let (Some(org), Some(resource_id), Some(metric)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(StoreError::Corrupt(format!("series name {name:?}")));
            };
            let k = resource_key(org, resource_id);
            let (resource_kind, agent_id) = match labels.get(&k) {
                Some(l) if now - l.2 < LABELS_TTL_MS => (l.0.clone(), l.1.clone()),
                _ => {
                    let rec: Option<ResourceRecord> = resources
                        .get(k.as_str())?
                        .map(|v| decode("resource", &k, v.value()))
                        .transpose()?;
                    let (kind, agent) = match rec {
                        Some(r) => (r.kind, r.agent_id),
                        None => (
                            resource_id
                                .split_once(':')
                                .map_or("", |(kind, _)| kind)
                                .to_owned(),
                            String::new(),
                        ),
                    };
                    labels.insert(k, (kind.clone(), agent.clone(), now));
                    (kind, agent)
                }
            };
            // Stable sort: of equal timestamps the later stored wins, as in the store.
            points.sort_by_key(|p| p.0);
            let mut merged: Vec<(i64, f64)> = Vec::with_capacity(points.len());
            for p in points {
                match merged.last_mut() {
                    Some(last) if last.0 == p.0 => *last = p,
                    _ => merged.push(p),
                }
            }
            series.push(OutboxSeries {
                org: org.to_owned(),
                resource_id: resource_id.to_owned(),
                resource_kind,
                agent_id,
                metric: metric.to_owned(),
                samples: merged,
            });
        }
        Ok(Some(OutboxBatch {
            last_key,
            samples: samples.len() as u64,
            series,
        }))
    }

    /// Deletes every outbox row up to `last_key` (one the sender read) and counts what became
    /// of them. Returns the samples removed.
    ///
    /// # Errors
    /// Storage failures and corrupt rows.
    pub fn outbox_ack(&self, last_key: u64, ack: OutboxAck) -> Result<u64, StoreError> {
        let txn = self.write_txn()?;
        let mut removed = 0;
        {
            let mut rows = txn.open_table(OUTBOX)?;
            let mut state = txn.open_table(OUTBOX_STATE)?;
            for row in rows.extract_from_if(1..=last_key, |_, _| true)? {
                let (_, v) = row?;
                removed += row_len(v.value())?;
            }
            let backlog = counter(&state, BACKLOG)?.saturating_sub(removed);
            state.insert(BACKLOG, backlog)?;
            if ack.rejected > 0 {
                let total = counter(&state, REJECTED)? + ack.rejected;
                state.insert(REJECTED, total)?;
            }
        }
        self.commit(txn)?;
        if ack.sent > 0 {
            self.outbox
                .sent_samples
                .fetch_add(ack.sent, Ordering::Relaxed);
            self.outbox
                .last_success_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Counts a failed request that will be retried.
    pub fn outbox_failed(&self) {
        self.outbox.failed_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The outbox's counters.
    ///
    /// # Errors
    /// Storage failures.
    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let txn = self.read_txn()?;
        let state = txn.open_table(OUTBOX_STATE)?;
        let get =
            |k: &str| -> Result<u64, StoreError> { Ok(state.get(k)?.map_or(0, |v| v.value())) };
        Ok(OutboxStats {
            enabled: self
                .outbox
                .limits
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some(),
            backlog_samples: get(BACKLOG)?,
            backlog_rows: txn.open_table(OUTBOX)?.len()?,
            dropped_samples: get(DROPPED)?,
            rejected_samples: get(REJECTED)?,
            sent_samples: self.outbox.sent_samples.load(Ordering::Relaxed),
            failed_requests: self.outbox.failed_requests.load(Ordering::Relaxed),
            last_success_ms: self.outbox.last_success_ms.load(Ordering::Relaxed),
        })
    }
}

fn counter(state: &Table<'_, &str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(state.get(key)?.map_or(0, |v| v.value()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IngestItem;
    use warden_shared::ids::ResourceId;
    use warden_shared::metric;
    use warden_shared::telemetry::{Resource, Sample, TelemetryBatch};

    const T0: i64 = 1_800_000_000_000;

    /// Batch `seq` of agent `agt`: `n` samples of `node:pve1`, alternating CPU and a labelled
    /// file-system metric, at `T0 + seq * 1000 + i`.
    fn item(seq: u64, n: i64) -> IngestItem {
        let id = ResourceId::new("node:pve1").unwrap();
        let fs = metric::labelled(metric::FS_USED_PCT, "mount", "/");
        IngestItem {
            agent_id: "agt".into(),
            org_id: "acme".into(),
            provenance: Vec::new(),
            batch: TelemetryBatch {
                seq,
                collector: "host".into(),
                collected_at_ms: T0 + seq as i64 * 1000,
                resources: vec![Resource {
                    id: id.clone(),
                    name: "pve1".into(),
                    parent: None,
                    status: "online".into(),
                    attrs: Vec::new(),
                }],
                samples: (0..n)
                    .map(|i| Sample {
                        resource_id: id.clone(),
                        metric: if i % 2 == 0 {
                            metric::CPU_PCT.into()
                        } else {
                            fs.clone()
                        },
                        ts_ms: T0 + seq as i64 * 1000 + i,
                        value: i as f64,
                    })
                    .collect(),
                health: None,
                dropped_samples: 0,
            },
        }
    }

    fn stats(s: &Store) -> (u64, u64, u64, u64) {
        let st = s.outbox_stats().unwrap();
        (
            st.backlog_samples,
            st.backlog_rows,
            st.dropped_samples,
            st.rejected_samples,
        )
    }

    #[test]
    fn ingest_appends_exactly_once_reads_in_order_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.redb");
        let store = Store::open(&path).unwrap();
        // Off: nothing is kept.
        store.ingest(&[item(1, 4)], T0).unwrap();
        assert_eq!(store.outbox_next(100).unwrap(), None);
        assert!(!store.outbox_stats().unwrap().enabled);

        store.set_outbox(Some(OutboxLimits {
            max_backlog_samples: 25,
            row_samples: 4,
        }));
        store.ingest(&[item(2, 10)], T0).unwrap();
        // A replay adds nothing.
        store.ingest(&[item(2, 10)], T0).unwrap();
        assert_eq!(stats(&store), (10, 3, 0, 0));

        // Whole rows, at least one, oldest first, by series with labels resolved.
        let b = store.outbox_next(9).unwrap().unwrap();
        assert_eq!((b.last_key, b.samples), (2, 8));
        assert_eq!(b.series.len(), 2);
        let cpu = b
            .series
            .iter()
            .find(|s| s.metric == metric::CPU_PCT)
            .unwrap();
        assert_eq!(
            (
                &*cpu.org,
                &*cpu.resource_id,
                &*cpu.resource_kind,
                &*cpu.agent_id
            ),
            ("acme", "node:pve1", "node", "agt")
        );
        let ts: Vec<i64> = cpu.samples.iter().map(|p| p.0 - T0 - 2000).collect();
        assert_eq!(ts, vec![0, 2, 4, 6]);
        assert_eq!(store.outbox_next(1).unwrap().unwrap().samples, 4);
        assert_eq!(
            store
                .outbox_ack(
                    b.last_key,
                    OutboxAck {
                        sent: 8,
                        rejected: 0
                    }
                )
                .unwrap(),
            8
        );
        assert_eq!(stats(&store), (2, 1, 0, 0));
        assert_eq!(store.outbox_stats().unwrap().sent_samples, 8);

        // Past the bound the oldest rows go: 2 + 3 x 10 = 32 > 25 drops rows of 2, 4 and 4.
        store.ingest(&[item(3, 10), item(4, 10)], T0).unwrap();
        assert_eq!(stats(&store), (22, 6, 0, 0));
        store.ingest(&[item(5, 10)], T0).unwrap();
        assert_eq!(stats(&store), (22, 6, 10, 0));

        // The cursor and counters survive a reopen; names resolve without the caches.
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(stats(&store), (22, 6, 10, 0));
        let b = store.outbox_next(100).unwrap().unwrap();
        assert_eq!(b.samples, 22);
        let first = b.series.iter().map(|s| s.samples[0].0).min().unwrap();
        assert_eq!(
            first,
            T0 + 3000 + 8,
            "the oldest kept sample: the last row of batch 3"
        );
        assert_eq!(
            store
                .outbox_ack(
                    b.last_key,
                    OutboxAck {
                        sent: 0,
                        rejected: 22
                    }
                )
                .unwrap(),
            22
        );
        assert_eq!(stats(&store), (0, 0, 10, 22));
        assert_eq!(store.outbox_next(100).unwrap(), None);
    }
}
