//! Group-commit ingest of telemetry batches with the per-agent exactly-once seq check.
//!
//! One call is one write transaction. Samples go into the head (`head.rs`) as one packed row per
//! minute and group of series the call touches: the series name is built in a reused buffer and
//! mapped to its id through the in-memory cache. Agent seqs, agent records and resource records
//! touched by the call are read once, updated in memory and written back once, before the commit.
//! A sample in a minute that is already rolled up into the tiers updates them in the same
//! transaction; after the commit, closed minutes and hours are rolled up (`rollup.rs`).

use super::chunk;
use super::head::{HEAD, HeadWrites, group_of};
use super::history::{History, read_chunk};
use super::keys::{
    AGENT_SEQ, AGENTS, META, NEXT_SERIES_KEY, RESOURCES, SERIES, bucket_of, decode, encode,
    metric_key, metric_of_series, resource_key, series_name,
};
use super::keys::{CHUNKS, chunk_key, window_of};
use super::rollup::{self, Late};
use super::seal::{SealMarks, merge};
use super::{Store, StoreError};
use crate::model::{
    AgentRecord, CollectorHealthRecord, IngestItem, IngestOutcome, LatestSample, ProvenanceRecord,
    ResourceRecord,
};
use redb::{ReadableTable, Table};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use warden_shared::metric;
use warden_shared::telemetry::{Provenance, Resource, TelemetryBatch, Value};

const AGENT: &str = "agent";
const RESOURCE: &str = "resource";
/// Series ids kept in memory at most.
const SERIES_CACHE_MAX: usize = 1 << 20;
/// Status of a resource known only from samples.
const STATUS_UNKNOWN: &str = "unknown";

/// Resource records touched by one call: org -> resource id -> record.
type ResourceCache = HashMap<String, HashMap<String, ResourceRecord>>;

impl Store {
    /// Stores `items` in one write transaction (group commit) and returns one outcome per
    /// item, in order.
    ///
    /// Per agent, a batch whose `seq` is at or below the stored last seq is skipped
    /// (`stored = false`, `ack_seq` = the stored seq). Otherwise its samples go into history,
    /// its resources are upserted (with `latest` updated from its samples), and the agent's
    /// last seq, `last_seen_ms = now_ms`, `dropped_samples` and collector health are updated.
    /// Items for the same agent may appear several times, in seq order. An agent without a
    /// record still gets its batches and seq stored (logged at warn).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`]; then nothing of the call is stored and no
    /// item may be acknowledged.
    pub fn ingest(
        &self,
        items: &[IngestItem],
        now_ms: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        self.check_telemetry_space()?;
        let mut outcomes = Vec::with_capacity(items.len());
        let txn = self.write_txn()?;
        // Held until the commit: ingest calls are serialised by redb's writer lock anyway.
        let mut cache = self.series_cache();
        let mut series = SeriesAlloc::default();
        let mut outbox = self.outbox_pending();
        {
            let mut seq_table = txn.open_table(AGENT_SEQ)?;
            let mut meta_table = txn.open_table(META)?;
            let mut series_table = txn.open_table(SERIES)?;
            let mut head_table = txn.open_table(HEAD)?;
            let mut chunk_table = txn.open_table(CHUNKS)?;
            let mut resource_table = txn.open_table(RESOURCES)?;
            let mut agent_table = txn.open_table(AGENTS)?;

            // Samples before the minute watermark are late: they update the tiers below.
            let rolled = rollup::marks(&meta_table)?;
            let mut late = Late::default();
            let mut head = HeadWrites::default();
            // Samples of rolled-up minutes: (minute, metric key, series, ts, value).
            let mut late_points = Vec::new();
            // Samples of sealed windows are merged into their chunks below.
            let sealed = SealMarks::read(&meta_table)?;
            let mut to_chunks = ChunkMerges::default();
            let oldest = now_ms.saturating_sub(self.retention().raw_ms);
            let mut seqs: HashMap<&str, u64> = HashMap::new();
            let mut agents: HashMap<&str, Option<AgentRecord>> = HashMap::new();
            let mut resources = ResourceCache::new();
            let mut name = String::with_capacity(128);

            for item in items {
                let batch = &item.batch;
                let last = match seqs.entry(item.agent_id.as_str()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        let stored = seq_table.get(item.agent_id.as_str())?.map(|v| v.value());
                        e.insert(stored.unwrap_or(0))
                    }
                };
                if batch.seq <= *last {
                    outcomes.push(IngestOutcome {
                        stored: false,
                        ack_seq: *last,
                    });
                    continue;
                }
                *last = batch.seq;

                let mut too_old = 0;
                for s in &batch.samples {
                    if !s.value.is_finite() {
                        continue;
                    }
                    if s.ts_ms < oldest {
                        too_old += 1;
                        continue;
                    }
                    series_name(&mut name, &item.org_id, s.resource_id.as_str(), &s.metric);
                    let id = match cache.get(name.as_str()) {
                        Some(id) => *id,
                        None => series.resolve(&name, &mut series_table, &meta_table)?,
                    };
                    if let Some(o) = &mut outbox {
                        o.push(id, &name, s.ts_ms, s.value);
                    }
                    let window = window_of(s.ts_ms);
                    if sealed.sealed(window, id) {
                        to_chunks.add(window, id, &s.metric, s.ts_ms, s.value);
                        continue;
                    }
                    head.push(id, s.ts_ms, s.value);
                    let minute = bucket_of(s.ts_ms);
                    if rolled.is_some_and(|m| m.minute_rolled(minute, id)) {
                        late_points.push((minute, metric_key(&s.metric), id, s.ts_ms, s.value));
                    }
                }
                if too_old > 0 {
                    self.counters.too_old.fetch_add(too_old, Ordering::Relaxed);
                    tracing::warn!(
                        agent_id = %item.agent_id,
                        seq = batch.seq,
                        samples = too_old,
                        "refused samples older than raw retention"
                    );
                }

                let org_cache = resources.entry(item.org_id.clone()).or_default();
                apply_resources(&resource_table, org_cache, item)?;

                let agent = match agents.entry(item.agent_id.as_str()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        let rec: Option<AgentRecord> = agent_table
                            .get(item.agent_id.as_str())?
                            .map(|v| decode(AGENT, &item.agent_id, v.value()))
                            .transpose()?;
                        if rec.is_none() {
                            tracing::warn!(
                                agent_id = %item.agent_id,
                                "storing telemetry of an agent without a record"
                            );
                        }
                        e.insert(rec)
                    }
                };
                if let Some(agent) = agent {
                    apply_agent(agent, batch, now_ms);
                }

                outcomes.push(IngestOutcome {
                    stored: true,
                    ack_seq: batch.seq,
                });
            }

            note_late(&head_table, late_points, &mut late)?;
            head.write(&mut head_table, &mut meta_table)?;
            to_chunks.apply(&mut chunk_table, rolled, &mut late)?;
            if let Some(marks) = rolled {
                let history = History {
                    head: &head_table,
                    chunks: &chunk_table,
                };
                late.apply(&txn, &history, marks)?;
            }
            if let Some(next) = series.next {
                meta_table.insert(NEXT_SERIES_KEY, next)?;
            }
            for (agent_id, seq) in &seqs {
                seq_table.insert(*agent_id, *seq)?;
            }
            for (agent_id, rec) in &agents {
                if let Some(rec) = rec {
                    agent_table.insert(*agent_id, encode(AGENT, rec)?.as_slice())?;
                }
            }
            for (org, recs) in &resources {
                for (id, rec) in recs {
                    let k = resource_key(org, id);
                    resource_table.insert(k.as_str(), encode(RESOURCE, rec)?.as_slice())?;
                }
            }
        }
        if let Some(o) = outbox {
            o.append(&txn)?;
        }
        self.commit(txn)?;
        if cache.len() + series.resolved.len() > SERIES_CACHE_MAX {
            // Bounded memory under series churn; misses refill from the `series` table.
            cache.clear();
        }
        cache.extend(series.resolved);
        drop(cache);
        self.tiers.learn(&series.allocated);
        // The batches are stored whatever happens here: a failed roll-up is retried after the
        // next commit, and readers fall back to raw samples meanwhile.
        if let Err(e) = self.roll_up(now_ms) {
            tracing::warn!(error = %e, "rolling up metric tiers failed; retrying after the next ingest");
        }
        Ok(outcomes)
    }

    /// The highest stored batch seq of an agent, 0 if none.
    ///
    /// # Errors
    /// Storage failures.
    pub fn last_seq(&self, agent_id: &str) -> Result<u64, StoreError> {
        let txn = self.read_txn()?;
        let seqs = txn.open_table(AGENT_SEQ)?;
        Ok(seqs.get(agent_id)?.map_or(0, |v| v.value()))
    }
}

/// Late samples of sealed (window, series) pairs, merged into their chunks at the end of the
/// ingest transaction.
/// Notes samples of rolled-up minutes in `late`, each with whether it replaces a stored
/// sample (the head as it was before this transaction, or an earlier sample of it).
fn note_late(
    head: &Table<'_, &'static [u8; 24], &'static [u8]>,
    mut points: Vec<(i64, u64, u64, i64, f64)>,
    late: &mut Late,
) -> Result<(), StoreError> {
    // Grouped by (minute, group), arrival order kept within each.
    points.sort_by_key(|p| (p.0, group_of(p.2)));
    let mut seen: HashSet<(u64, i64)> = HashSet::new();
    for cell in points.chunk_by(|a, b| (a.0, group_of(a.2)) == (b.0, group_of(b.2))) {
        seen.clear();
        seen.extend(HeadWrites::stored(head, cell[0].0, group_of(cell[0].2))?);
        for &(minute, metric, series, ts, value) in cell {
            let replaced = !seen.insert((series, ts));
            late.add(minute, metric, series, value, replaced);
        }
    }
    Ok(())
}

#[derive(Default)]
struct ChunkMerges(HashMap<(i64, u64), Merge>);

/// Late samples of one sealed (window, series).
struct Merge {
    /// The series' metric key (for the tiers).
    metric: u64,
    /// In arrival order.
    samples: Vec<(i64, f64)>,
}

impl ChunkMerges {
    fn add(&mut self, window: i64, series: u64, metric: &str, ts_ms: i64, value: f64) {
        self.0
            .entry((window, series))
            .or_insert_with(|| Merge {
                metric: metric_key(metric),
                samples: Vec::new(),
            })
            .samples
            .push((ts_ms, value));
    }

    /// Merges the samples into their chunks (a later sample of the same time wins, as in the
    /// head) and notes them for the tiers.
    fn apply(
        self,
        chunks: &mut Table<'_, &'static [u8; 16], &'static [u8]>,
        rolled: Option<rollup::Marks>,
        late: &mut Late,
    ) -> Result<(), StoreError> {
        for ((window, series), Merge { metric, samples }) in self.0 {
            let mut added = samples;
            // Stable: of equal times, the last to arrive ends up last.
            added.sort_by_key(|s| s.0);
            let stored = read_chunk(chunks, window, series)?;
            let mut newest: Vec<(i64, f64)> = Vec::with_capacity(added.len());
            for (ts, v) in added {
                let replaced = newest.last().is_some_and(|l| l.0 == ts)
                    || stored.binary_search_by_key(&ts, |s| s.0).is_ok();
                let minute = bucket_of(ts);
                if rolled.is_some_and(|m| m.minute_rolled(minute, series)) {
                    late.add(minute, metric, series, v, replaced);
                }
                match newest.last_mut() {
                    Some(l) if l.0 == ts => *l = (ts, v),
                    _ => newest.push((ts, v)),
                }
            }
            let merged = merge(stored, newest);
            chunks.insert(
                &chunk_key(window, series),
                chunk::encode(&merged).as_slice(),
            )?;
        }
        Ok(())
    }
}

/// Series ids looked up or allocated in one ingest transaction, not yet in the cache.
#[derive(Default)]
struct SeriesAlloc {
    /// Ids found in or added to the `series` table by this transaction.
    resolved: HashMap<String, u64>,
    /// Next id to allocate, once read from `meta`.
    next: Option<u64>,
    /// Ids allocated by this transaction, with their metric keys.
    allocated: Vec<(u64, u64)>,
}

impl SeriesAlloc {
    /// The id of series `name`, from this transaction, the table, or newly allocated.
    fn resolve(
        &mut self,
        name: &str,
        table: &mut Table<'_, &str, u64>,
        meta: &Table<'_, &str, u64>,
    ) -> Result<u64, StoreError> {
        if let Some(id) = self.resolved.get(name) {
            return Ok(*id);
        }
        let stored = table.get(name)?.map(|v| v.value());
        let id = match stored {
            Some(id) => id,
            None => {
                let next = match self.next {
                    Some(next) => next,
                    None => meta.get(NEXT_SERIES_KEY)?.map_or(1, |v| v.value()),
                };
                table.insert(name, next)?;
                self.next = Some(next + 1);
                self.allocated
                    .push((next, metric_key(metric_of_series(name))));
                next
            }
        };
        self.resolved.insert(name.to_owned(), id);
        Ok(id)
    }
}

/// Upserts the batch's resources into `cache` and updates `latest` (and with it
/// `provenance`) from its samples.
fn apply_resources(
    table: &Table<'_, &str, &[u8]>,
    cache: &mut HashMap<String, ResourceRecord>,
    item: &IngestItem,
) -> Result<(), StoreError> {
    let batch = &item.batch;
    // (resource kind, metric without labels) -> provenance; a handful of entries per batch.
    let sources: HashMap<(&str, &str), &Provenance> = item
        .provenance
        .iter()
        .map(|p| ((&*p.kind, &*p.metric), p))
        .collect();
    for r in &batch.resources {
        let rec = cached_resource(table, cache, item, r.id.as_str())?;
        match rec {
            Some(rec) => {
                // Seq order is authoritative within one agent; between agents, the newer
                // collection wins so a replayed spool cannot roll back another agent's report.
                if rec.agent_id == item.agent_id || batch.collected_at_ms >= rec.updated_at_ms {
                    describe(rec, r, item);
                }
            }
            None => {
                let mut rec = stub(item, r.id.as_str(), r.id.kind(), r.id.name());
                describe(&mut rec, r, item);
                cache.insert(r.id.as_str().to_owned(), rec);
            }
        }
    }
    for s in &batch.samples {
        if !s.value.is_finite() {
            continue;
        }
        let id = s.resource_id.as_str();
        let rec = match cached_resource(table, cache, item, id)? {
            Some(rec) => rec,
            None => cache
                .entry(id.to_owned())
                .or_insert_with(|| stub(item, id, s.resource_id.kind(), s.resource_id.name())),
        };
        let newest = match rec.latest.get_mut(s.metric.as_str()) {
            Some(latest) if s.ts_ms < latest.ts_ms => false,
            Some(latest) => {
                *latest = LatestSample {
                    ts_ms: s.ts_ms,
                    value: s.value,
                };
                true
            }
            None => {
                rec.latest.insert(
                    s.metric.clone(),
                    LatestSample {
                        ts_ms: s.ts_ms,
                        value: s.value,
                    },
                );
                true
            }
        };
        if !newest || sources.is_empty() {
            continue;
        }
        let base = metric::base(&s.metric);
        if let Some(p) = sources.get(&(s.resource_id.kind(), base)) {
            set_provenance(rec, base, p);
        }
    }
    Ok(())
}

/// Records `p` as the provenance of `metric` (without labels) on `rec`; allocates only when
/// it changed, which after the first batch is rare.
fn set_provenance(rec: &mut ResourceRecord, metric: &str, p: &Provenance) {
    match rec.provenance.get_mut(metric) {
        Some(r) if r.source == *p.source && r.method == *p.method => {}
        Some(r) => {
            r.source = p.source.clone().into_owned();
            r.method = p.method.clone().into_owned();
        }
        None => {
            rec.provenance.insert(
                metric.to_owned(),
                ProvenanceRecord {
                    source: p.source.clone().into_owned(),
                    method: p.method.clone().into_owned(),
                },
            );
        }
    }
}

/// The cached record of resource `id`, loading it from `table` on first use.
fn cached_resource<'c>(
    table: &Table<'_, &str, &[u8]>,
    cache: &'c mut HashMap<String, ResourceRecord>,
    item: &IngestItem,
    id: &str,
) -> Result<Option<&'c mut ResourceRecord>, StoreError> {
    if !cache.contains_key(id) {
        let k = resource_key(&item.org_id, id);
        let stored: Option<ResourceRecord> = table
            .get(k.as_str())?
            .map(|v| decode(RESOURCE, &k, v.value()))
            .transpose()?;
        match stored {
            Some(rec) => {
                cache.insert(id.to_owned(), rec);
            }
            None => return Ok(None),
        }
    }
    Ok(cache.get_mut(id))
}

/// A record for a resource seen for the first time, with status `unknown`.
fn stub(item: &IngestItem, id: &str, kind: &str, name: &str) -> ResourceRecord {
    ResourceRecord {
        id: id.to_owned(),
        org_id: item.org_id.clone(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        parent: None,
        status: STATUS_UNKNOWN.to_owned(),
        attrs: serde_json::Map::new(),
        agent_id: item.agent_id.clone(),
        collector: item.batch.collector.clone(),
        updated_at_ms: item.batch.collected_at_ms,
        latest: Default::default(),
        provenance: Default::default(),
    }
}

/// Replaces the descriptive fields of `rec` with the reported state `r`; keeps `latest`.
fn describe(rec: &mut ResourceRecord, r: &Resource, item: &IngestItem) {
    rec.name.clone_from(&r.name);
    rec.parent = r.parent.as_ref().map(|p| p.as_str().to_owned());
    rec.status.clone_from(&r.status);
    rec.attrs = r
        .attrs
        .iter()
        .map(|(k, v)| (k.clone(), attr_to_json(v)))
        .collect();
    rec.agent_id.clone_from(&item.agent_id);
    rec.collector.clone_from(&item.batch.collector);
    rec.updated_at_ms = item.batch.collected_at_ms;
}

/// Updates an agent record from a stored batch.
fn apply_agent(agent: &mut AgentRecord, batch: &TelemetryBatch, now_ms: i64) {
    agent.last_seen_ms = Some(now_ms);
    agent.dropped_samples = batch.dropped_samples;
    if let Some(h) = &batch.health {
        agent.collectors.insert(
            h.collector.clone(),
            CollectorHealthRecord {
                status: h.status.as_str().to_owned(),
                message: h.message.clone(),
                last_success_ms: h.last_success_ms,
                last_run_ms: batch.collected_at_ms,
                duration_ms: h.duration_ms,
            },
        );
    }
}

/// Converts a telemetry attribute value to JSON; unknown and non-finite values become `null`.
fn attr_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Unknown => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(s) => serde_json::Value::String(s.clone()),
    }
}
