//! The audit log's tables: per-org hash chains of events, their heads and signed
//! checkpoints; appends (group commit, one transaction per batch), range reads, filtered
//! queries, whole-range verification and retention pruning behind a bridge checkpoint.
//!
//! # Invariants
//! - An org's events have sequence numbers 1, 2, 3, ... without gaps (pruning removes a
//!   prefix only); each records the hash of the one before it (the bridge checkpoint's head
//!   hash for the first one left after pruning).
//! - `ts_ms` never decreases along a chain (a clock stepping back reuses the last time), so
//!   time filters and pruning can stop at the first event past their bound.
//! - The head (`audit_heads`) and any checkpoint due by count are written in the same
//!   transaction as the events they cover.

use super::keys::{SEP, decode, encode};
use super::{Store, StoreError};
use crate::chain::event::{Checkpoint, Event, Fields, Hash, Keys, NewEvent};
use crate::chain::verify::{self, Anchors, Link, Report, Sig};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Events by `org US seq (16 hex digits)` -> [`StoredEvent`] bytes.
pub(super) const AUDIT_EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_events");
/// Checkpoints by `org US tree_size (16 hex digits)` -> JSON [`Checkpoint`].
pub(super) const AUDIT_CHECKPOINTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("audit_checkpoints");
/// Chain heads by org -> JSON [`Head`].
pub(super) const AUDIT_HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_heads");

const CHECKPOINT: &str = "audit checkpoint";
const HEAD: &str = "audit head";

/// The end of an org's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Sequence number of the last event (0: none yet).
    pub seq: u64,
    /// Its hash, hex-encoded in JSON.
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// Its time.
    pub ts_ms: i64,
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub(super) fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        crate::chain::event::parse_hash(&s).ok_or_else(|| D::Error::custom("bad hash"))
    }
}

/// An event as stored: `prev_hash (32) | signature length (1: 0 or 32) | signature |
/// canonical fields JSON`. Verification hashes these bytes without re-encoding them.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Sequence number (from the key).
    pub seq: u64,
    /// Previous hash.
    pub prev: Hash,
    /// HMAC, if signed.
    pub signature: Option<[u8; 32]>,
    /// Canonical fields JSON.
    pub fields_json: Vec<u8>,
}

impl StoredEvent {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(65 + self.fields_json.len());
        v.extend_from_slice(&self.prev);
        match &self.signature {
            Some(s) => {
                v.push(32);
                v.extend_from_slice(s);
            }
            None => v.push(0),
        }
        v.extend_from_slice(&self.fields_json);
        v
    }

    fn decode(seq: u64, b: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("audit event {seq}: truncated record"));
        let prev: Hash = b
            .get(..32)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?;
        let (signature, rest) = match b.get(32) {
            Some(0) => (None, &b[33..]),
            Some(32) => {
                let s: [u8; 32] = b
                    .get(33..65)
                    .ok_or_else(corrupt)?
                    .try_into()
                    .map_err(|_| corrupt())?;
                (Some(s), &b[65..])
            }
            _ => return Err(corrupt()),
        };
        Ok(Self {
            seq,
            prev,
            signature,
            fields_json: rest.to_vec(),
        })
    }

    /// The event hash.
    pub fn hash(&self) -> Hash {
        Event::hash_parts(self.seq, &self.prev, &self.fields_json)
    }

    /// The decoded event.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the fields are not valid JSON of the right shape.
    pub fn event(&self) -> Result<Event, StoreError> {
        let fields: Fields = serde_json::from_slice(&self.fields_json)
            .map_err(|e| StoreError::Corrupt(format!("audit event {}: {e}", self.seq)))?;
        Ok(Event {
            seq: self.seq,
            prev_hash: hex::encode(self.prev),
            fields,
            signature: self.signature.map(hex::encode),
        })
    }

    /// The verification link. Fields are parsed only when the signature was not checked and
    /// found valid (to tell a moved event or a replaced key from an edit).
    pub fn link(&self, keys: Option<&Keys>) -> Link {
        let hash = self.hash();
        let sig_hex = self.signature.map(hex::encode);
        let mut sig = verify::sig_state(keys, &hash, sig_hex.as_deref(), None);
        let mut id_seq = Some(self.seq);
        if sig != Sig::Valid {
            let parsed: Option<Fields> = serde_json::from_slice(&self.fields_json).ok();
            id_seq = parsed.as_ref().and_then(|f| verify::id_seq(&f.id));
            sig = verify::sig_state(
                keys,
                &hash,
                sig_hex.as_deref(),
                parsed.as_ref().and_then(|f| f.key_id.as_deref()),
            );
        }
        Link {
            seq: self.seq,
            id_seq,
            prev: self.prev,
            hash,
            claimed: None,
            sig,
        }
    }
}

fn event_key(org: &str, seq: u64) -> String {
    format!("{org}{SEP}{seq:016x}")
}

fn seq_of(key: &str) -> u64 {
    key.rsplit_once(SEP)
        .and_then(|(_, s)| u64::from_str_radix(s, 16).ok())
        .unwrap_or(0)
}

/// Filters of [`Store::audit_query`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events at or after this time.
    pub since_ms: Option<i64>,
    /// Events before this time.
    pub until_ms: Option<i64>,
    /// `kind:id` or just `kind`.
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` or `*` (`token.`, `token.*`).
    pub action: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    /// Exact target.
    pub target: Option<String>,
}

impl AuditFilter {
    fn matches(&self, f: &Fields) -> bool {
        let actor = f.actor.label();
        self.since_ms.is_none_or(|t| f.ts_ms >= t)
            && self.until_ms.is_none_or(|t| f.ts_ms < t)
            && self.actor.as_deref().is_none_or(|a| {
                actor == a || actor.strip_prefix(a).is_some_and(|r| r.starts_with(':'))
            })
            && self.action.as_deref().is_none_or(|a| {
                let prefix = a.strip_suffix('*').unwrap_or(a);
                f.action == a || (prefix.ends_with('.') && f.action.starts_with(prefix))
            })
            && self
                .outcome
                .as_deref()
                .is_none_or(|o| f.outcome.label() == o)
            && self.target.as_deref().is_none_or(|t| f.target == t)
    }
}

/// One event of a query page with its verification: signature state, and whether it links
/// to the stored event before it (`None` when that one is pruned and no bridge covers it).
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// The event.
    pub event: Event,
    /// Its hash.
    pub hash: Hash,
    /// Signature state.
    pub sig: Sig,
    /// Whether `prev_hash` matches the previous event.
    pub linked: Option<bool>,
}

/// What [`Store::audit_prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events deleted.
    pub events: u64,
    /// The bridge checkpoint's tree size (the last deleted seq), if anything was deleted.
    pub bridge: Option<u64>,
}

impl Store {
    /// Appends events in one transaction: each gets its org's next seq, a time no earlier
    /// than its predecessor's, the previous hash, and (with `keys`) an HMAC. A checkpoint is
    /// written whenever a chain reaches a multiple of `checkpoint_every`. Returns the stored
    /// events in order.
    ///
    /// # Errors
    /// Storage failures; nothing is written then.
    pub fn audit_append(
        &self,
        events: Vec<NewEvent>,
        keys: Option<&Keys>,
        now_ms: i64,
        checkpoint_every: u64,
    ) -> Result<Vec<Event>, StoreError> {
        let txn = self.write_txn()?;
        let mut out = Vec::with_capacity(events.len());
        {
            let mut table = txn.open_table(AUDIT_EVENTS)?;
            let mut heads_t = txn.open_table(AUDIT_HEADS)?;
            let mut cps = txn.open_table(AUDIT_CHECKPOINTS)?;
            let mut heads: HashMap<String, Head> = HashMap::new();
            for e in events {
                let head = match heads.get(&e.org_id) {
                    Some(h) => *h,
                    None => match heads_t
                        .get(e.org_id.as_str())?
                        .map(|v| decode::<Head>(HEAD, &e.org_id, v.value()))
                        .transpose()?
                    {
                        Some(h) => h,
                        // No head row: a new chain, or a lost row; never reuse a stored seq.
                        None => last_stored(&table, &e.org_id)?.unwrap_or(Head {
                            seq: 0,
                            hash: [0; 32],
                            ts_ms: i64::MIN,
                        }),
                    },
                };
                let seq = head.seq + 1;
                let fields = Fields {
                    id: format!("{}-{seq}", e.org_id),
                    ts_ms: now_ms.max(head.ts_ms),
                    org_id: e.org_id,
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    outcome: e.outcome,
                    source_ip: e.source_ip,
                    key_id: keys.map(|k| k.key_id().to_owned()),
                    details: e.details,
                };
                let fields_json = Event::fields_json(&fields);
                let hash = Event::hash_parts(seq, &head.hash, &fields_json);
                let signature = keys.map(|k| {
                    let mut s = [0u8; 32];
                    hex::decode_to_slice(k.sign_event(&hash), &mut s).expect("hmac is 32 bytes");
                    s
                });
                let stored = StoredEvent {
                    seq,
                    prev: head.hash,
                    signature,
                    fields_json,
                };
                table.insert(
                    event_key(&fields.org_id, seq).as_str(),
                    stored.encode().as_slice(),
                )?;
                let new_head = Head {
                    seq,
                    hash,
                    ts_ms: fields.ts_ms,
                };
                if checkpoint_every > 0 && seq % checkpoint_every == 0 {
                    let cp = make_checkpoint(&fields.org_id, &new_head, keys, now_ms);
                    cps.insert(
                        event_key(&fields.org_id, seq).as_str(),
                        encode(CHECKPOINT, &cp)?.as_slice(),
                    )?;
                }
                heads.insert(fields.org_id.clone(), new_head);
                out.push(Event {
                    seq,
                    prev_hash: hex::encode(head.hash),
                    fields,
                    signature: signature.map(hex::encode),
                });
            }
            for (org, head) in &heads {
                heads_t.insert(org.as_str(), encode(HEAD, head)?.as_slice())?;
            }
        }
        self.commit(txn)?;
        Ok(out)
    }

    /// Orgs that have an audit chain, with their heads.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn audit_heads(&self) -> Result<Vec<(String, Head)>, StoreError> {
        let txn = self.read_txn()?;
        let t = txn.open_table(AUDIT_HEADS)?;
        t.iter()?
            .map(|e| {
                let (k, v) = e?;
                Ok((k.value().to_owned(), decode(HEAD, k.value(), v.value())?))
            })
            .collect()
    }

    /// The head of `org`'s chain (`None`: no events yet).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn audit_head(&self, org: &str) -> Result<Option<Head>, StoreError> {
        let txn = self.read_txn()?;
        let t = txn.open_table(AUDIT_HEADS)?;
        t.get(org)?
            .map(|v| decode(HEAD, org, v.value()))
            .transpose()
    }

    /// Moves `org`'s head forward to its newest checkpoint when that checkpoint covers more
    /// events than the head (the tail was cut off). New events then continue after the
    /// checkpoint, so the lost events stay a visible gap that verification names, instead of
    /// new events silently taking their sequence numbers. Returns `(old head, checkpoint)`
    /// when it moved the head.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn audit_guard_head(&self, org: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let txn = self.write_txn()?;
        let moved = {
            let mut heads = txn.open_table(AUDIT_HEADS)?;
            let head = heads
                .get(org)?
                .map(|v| decode::<Head>(HEAD, org, v.value()))
                .transpose()?;
            let cps = txn.open_table(AUDIT_CHECKPOINTS)?;
            let (lo, hi) = (event_key(org, 0), event_key(org, u64::MAX));
            let newest = cps
                .range(lo.as_str()..=hi.as_str())?
                .next_back()
                .transpose()?
                .map(|(k, v)| decode::<Checkpoint>(CHECKPOINT, k.value(), v.value()))
                .transpose()?;
            match (head, newest) {
                (head, Some(cp))
                    if cp.tree_size > head.map_or(0, |h| h.seq)
                        && let Some(hash) = crate::chain::event::parse_hash(&cp.head_hash) =>
                {
                    let old = head.map_or(0, |h| h.seq);
                    let moved = Head {
                        seq: cp.tree_size,
                        hash,
                        ts_ms: head.map_or(cp.ts_ms, |h| h.ts_ms.max(cp.ts_ms)),
                    };
                    heads.insert(org, encode(HEAD, &moved)?.as_slice())?;
                    Some((old, cp.tree_size))
                }
                _ => None,
            }
        };
        if moved.is_some() {
            self.commit(txn)?;
        }
        Ok(moved)
    }

    /// Up to `limit` stored events of `org` with `from <= seq <= to`, in seq order.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn audit_range(
        &self,
        org: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let txn = self.read_txn()?;
        let t = txn.open_table(AUDIT_EVENTS)?;
        let (lo, hi) = (event_key(org, from), event_key(org, to));
        t.range(lo.as_str()..=hi.as_str())?
            .take(limit)
            .map(|e| {
                let (k, v) = e?;
                StoredEvent::decode(seq_of(k.value()), v.value())
            })
            .collect()
    }

    /// `org`'s checkpoints with `from <= tree_size <= to`, in order.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn audit_checkpoints(
        &self,
        org: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let txn = self.read_txn()?;
        let t = txn.open_table(AUDIT_CHECKPOINTS)?;
        let (lo, hi) = (event_key(org, from), event_key(org, to));
        t.range(lo.as_str()..=hi.as_str())?
            .map(|e| {
                let (k, v) = e?;
                decode(CHECKPOINT, k.value(), v.value())
            })
            .collect()
    }

    /// Writes a checkpoint at `org`'s head unless one exists there already. Returns it (the
    /// existing one, or the new one; `None` if the chain is empty).
    ///
    /// # Errors
    /// Storage failures.
    pub fn audit_checkpoint(
        &self,
        org: &str,
        keys: Option<&Keys>,
        now_ms: i64,
    ) -> Result<Option<(Checkpoint, bool)>, StoreError> {
        let txn = self.write_txn()?;
        let made = {
            let heads = txn.open_table(AUDIT_HEADS)?;
            let Some(head) = heads
                .get(org)?
                .map(|v| decode::<Head>(HEAD, org, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            let mut cps = txn.open_table(AUDIT_CHECKPOINTS)?;
            let key = event_key(org, head.seq);
            let existing = cps
                .get(key.as_str())?
                .map(|v| decode::<Checkpoint>(CHECKPOINT, &key, v.value()))
                .transpose()?;
            match existing {
                Some(cp) => (cp, false),
                None => {
                    let cp = make_checkpoint(org, &head, keys, now_ms);
                    cps.insert(key.as_str(), encode(CHECKPOINT, &cp)?.as_slice())?;
                    (cp, true)
                }
            }
        };
        if made.1 {
            self.commit(txn)?;
        }
        Ok(Some(made))
    }

    /// A page of `org`'s events matching `filter`, newest first (or oldest first with
    /// `ascending`), starting after `cursor` (a seq, exclusive), each with its verification.
    /// Returns the rows and the cursor of the next page (`None`: no more).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn audit_query(
        &self,
        org: &str,
        filter: &AuditFilter,
        cursor: Option<u64>,
        ascending: bool,
        limit: usize,
        keys: Option<&Keys>,
    ) -> Result<(Vec<AuditRow>, Option<u64>), StoreError> {
        let txn = self.read_txn()?;
        let t = txn.open_table(AUDIT_EVENTS)?;
        let cps = txn.open_table(AUDIT_CHECKPOINTS)?;
        let (lo, hi) = if ascending {
            (
                event_key(org, cursor.map_or(0, |c| c + 1)),
                event_key(org, u64::MAX),
            )
        } else {
            (
                event_key(org, 0),
                event_key(org, cursor.map_or(u64::MAX, |c| c.saturating_sub(1))),
            )
        };
        let stored = |k: &str, v: &[u8]| StoredEvent::decode(seq_of(k), v);
        let hash_at = |seq: u64| -> Result<Option<Hash>, StoreError> {
            if seq == 0 {
                return Ok(Some([0; 32]));
            }
            if let Some(v) = t.get(event_key(org, seq).as_str())? {
                return Ok(Some(
                    stored("", v.value())
                        .map(|s| StoredEvent { seq, ..s })?
                        .hash(),
                ));
            }
            let key = event_key(org, seq);
            Ok(cps
                .get(key.as_str())?
                .map(|v| decode::<Checkpoint>(CHECKPOINT, &key, v.value()))
                .transpose()?
                .and_then(|cp| crate::chain::event::parse_hash(&cp.head_hash)))
        };
        let mut rows = Vec::new();
        let mut next = None;
        let range = t.range(lo.as_str()..=hi.as_str())?;
        let iter: Box<dyn Iterator<Item = _>> = if ascending {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        for e in iter {
            let (k, v) = e?;
            let s = stored(k.value(), v.value())?;
            let event = s.event()?;
            // Stop early outside the time window: times never decrease along the chain.
            if ascending && filter.until_ms.is_some_and(|u| event.fields.ts_ms >= u) {
                break;
            }
            if !ascending
                && filter
                    .since_ms
                    .is_some_and(|since| event.fields.ts_ms < since)
            {
                break;
            }
            if !filter.matches(&event.fields) {
                continue;
            }
            if rows.len() == limit {
                next = rows.last().map(|r: &AuditRow| r.event.seq);
                break;
            }
            let link = s.link(keys);
            let linked = hash_at(s.seq - 1)?.map(|h| h == s.prev);
            rows.push(AuditRow {
                event,
                hash: link.hash,
                sig: link.sig,
                linked,
            });
        }
        Ok((rows, next))
    }

    /// Verifies `org`'s events with `from <= seq <= to` (the whole chain by default):
    /// signatures, links, order, and the checkpoints that cover the range. Without `to`, the
    /// chain must reach its recorded head and every checkpoint.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`] of a checkpoint or head.
    pub fn audit_verify(
        &self,
        org: &str,
        from: Option<u64>,
        to: Option<u64>,
        keys: Option<&Keys>,
    ) -> Result<Report, StoreError> {
        let txn = self.read_txn()?;
        let t = txn.open_table(AUDIT_EVENTS)?;
        let from = from.unwrap_or(0);
        let (lo, hi) = (event_key(org, from), event_key(org, to.unwrap_or(u64::MAX)));
        // Two halves on two threads over the same snapshot: hashing and the HMAC check are
        // the cost, and they are independent per event.
        let first_key = t
            .range(lo.as_str()..=hi.as_str())?
            .next()
            .transpose()?
            .map(|(k, _)| seq_of(k.value()));
        let last_key = t
            .range(lo.as_str()..=hi.as_str())?
            .next_back()
            .transpose()?
            .map(|(k, _)| seq_of(k.value()));
        let read = |a: u64, b: u64| -> Result<Vec<Link>, StoreError> {
            let (lo, hi) = (event_key(org, a), event_key(org, b));
            let mut out = Vec::new();
            for e in t.range(lo.as_str()..=hi.as_str())? {
                let (k, v) = e?;
                out.push(StoredEvent::decode(seq_of(k.value()), v.value())?.link(keys));
            }
            Ok(out)
        };
        let mut links = match (first_key, last_key) {
            (Some(a), Some(b)) if b - a > 20_000 => {
                let mid = a + (b - a) / 2;
                let (low, high) = std::thread::scope(|s| {
                    let high = s.spawn(|| read(mid + 1, b));
                    (read(a, mid), high.join())
                });
                let mut links = low?;
                links.extend(high.map_err(|_| {
                    StoreError::Corrupt("audit verification thread panicked".into())
                })??);
                links
            }
            (Some(a), Some(b)) => read(a, b)?,
            _ => Vec::new(),
        };
        links.shrink_to_fit();
        let first = links.first().map_or(from.max(1), |l| l.seq);
        let prev = match first.checked_sub(1) {
            Some(0) | None => Some([0; 32]),
            Some(p) => t
                .get(event_key(org, p).as_str())?
                .map(|v| StoredEvent::decode(p, v.value()).map(|s| s.hash()))
                .transpose()?,
        };
        drop(t);
        let last = links.last().map_or(0, |l| l.seq);
        let cps_t = txn.open_table(AUDIT_CHECKPOINTS)?;
        let cp_lo = event_key(org, first.saturating_sub(1));
        let cp_hi = event_key(org, to.unwrap_or(u64::MAX));
        let mut checkpoints = Vec::new();
        for e in cps_t.range(cp_lo.as_str()..=cp_hi.as_str())? {
            let (k, v) = e?;
            checkpoints.push(decode::<Checkpoint>(CHECKPOINT, k.value(), v.value())?);
        }
        let public_key = keys.map(Keys::public_key);
        let mut report = verify::check(
            &links,
            &Anchors {
                prev,
                checkpoints: &checkpoints,
                public_key: public_key.as_deref(),
            },
        );
        // The head table records how far the chain went: a shorter table was truncated.
        if to.is_none() && report.problem.is_none() {
            let head = txn
                .open_table(AUDIT_HEADS)?
                .get(org)?
                .map(|v| decode::<Head>(HEAD, org, v.value()))
                .transpose()?;
            let last_hash = links.last().map(|l| l.hash);
            if let Some(h) = head.filter(|h| h.seq > last) {
                report.state = verify::State::Failed;
                report.problem = Some(verify::Problem {
                    seq: last + 1,
                    reason: verify::Reason::Truncated,
                    detail: format!("the log ends at {last} but its head is at {}", h.seq),
                });
            } else if head.is_some_and(|h| h.seq == last && Some(h.hash) != last_hash) {
                report.state = verify::State::Failed;
                report.problem = Some(verify::Problem {
                    seq: last,
                    reason: verify::Reason::Edited,
                    detail: format!("event {last} no longer matches the recorded head hash"),
                });
            }
        }
        Ok(report)
    }

    /// Deletes `org`'s events older than `before_ms`, first writing a checkpoint at the last
    /// deleted one (the bridge: the remaining chain starts from its head hash), and drops
    /// older checkpoints. At most `max` events per call, so a large backlog is pruned in
    /// bounded transactions.
    ///
    /// # Errors
    /// Storage failures; nothing is deleted then.
    pub fn audit_prune(
        &self,
        org: &str,
        before_ms: i64,
        max: usize,
        keys: Option<&Keys>,
        now_ms: i64,
    ) -> Result<Pruned, StoreError> {
        let txn = self.write_txn()?;
        let mut pruned = Pruned::default();
        {
            let mut t = txn.open_table(AUDIT_EVENTS)?;
            let (lo, hi) = (event_key(org, 0), event_key(org, u64::MAX));
            let mut last: Option<StoredEvent> = None;
            for e in t.range(lo.as_str()..=hi.as_str())?.take(max) {
                let (k, v) = e?;
                let s = StoredEvent::decode(seq_of(k.value()), v.value())?;
                if s.event()?.fields.ts_ms >= before_ms {
                    break;
                }
                last = Some(s);
            }
            let Some(last) = last else {
                return Ok(pruned);
            };
            let head = Head {
                seq: last.seq,
                hash: last.hash(),
                ts_ms: last.event()?.fields.ts_ms,
            };
            let mut cps = txn.open_table(AUDIT_CHECKPOINTS)?;
            let bridge_key = event_key(org, last.seq);
            if cps.get(bridge_key.as_str())?.is_none() {
                let cp = make_checkpoint(org, &head, keys, now_ms);
                cps.insert(bridge_key.as_str(), encode(CHECKPOINT, &cp)?.as_slice())?;
            }
            let end = event_key(org, last.seq);
            pruned.events = t
                .extract_from_if(lo.as_str()..=end.as_str(), |_, _| true)?
                .count() as u64;
            let before_bridge = event_key(org, last.seq.saturating_sub(1));
            if last.seq > 1 {
                cps.extract_from_if(lo.as_str()..=before_bridge.as_str(), |_, _| true)?
                    .for_each(drop);
            }
            pruned.bridge = Some(last.seq);
        }
        self.commit(txn)?;
        Ok(pruned)
    }
}

/// The head as the events table has it (its last event), for a chain without a head row.
fn last_stored(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    org: &str,
) -> Result<Option<Head>, StoreError> {
    let (lo, hi) = (event_key(org, 0), event_key(org, u64::MAX));
    let Some(entry) = table.range(lo.as_str()..=hi.as_str())?.next_back() else {
        return Ok(None);
    };
    let (k, v) = entry?;
    let s = StoredEvent::decode(seq_of(k.value()), v.value())?;
    Ok(Some(Head {
        seq: s.seq,
        hash: s.hash(),
        ts_ms: s.event()?.fields.ts_ms,
    }))
}

fn make_checkpoint(org: &str, head: &Head, keys: Option<&Keys>, now_ms: i64) -> Checkpoint {
    let mut cp = Checkpoint {
        org_id: org.to_owned(),
        tree_size: head.seq,
        head_hash: hex::encode(head.hash),
        ts_ms: now_ms,
        public_key: None,
        signature: None,
    };
    if let Some(k) = keys {
        k.sign_checkpoint(&mut cp);
    }
    cp
}
