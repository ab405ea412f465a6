//! The audit webhooks' tables: endpoints (with their secrets), each endpoint's outbox
//! cursor over its org's audit chain, its dead letters, the dead letters re-queued for a
//! manual retry, and the per-attempt delivery log (the newest [`LOG_KEEP`] per endpoint).
//!
//! # Invariants
//! - An endpoint's state is written only when its endpoint record exists: a dispatcher that
//!   commits after the endpoint was deleted gets `false` and stops, so nothing resurrects it.
//! - The cursor, the delivery-seq counter, the delivery-log entry and any dead-letter move of
//!   one attempt are committed in one transaction, so after a crash the outbox resumes at the
//!   first message whose success was not committed, with the same delivery seq.
//! - A new endpoint's cursor starts at its org's audit head, read in the creating
//!   transaction: it receives exactly the events committed after it.

use super::audit::{AUDIT_HEADS, Head};
use super::keys::{SEP, decode, encode};
use super::{Store, StoreError};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Endpoints by `org US id` -> JSON [`WebhookEndpoint`].
pub(super) const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
/// Outbox state by `org US id` -> JSON [`WebhookState`].
pub(super) const WEBHOOK_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("webhook_state");
/// Dead letters by `org US id US delivery_seq (16 hex digits)` -> JSON [`DeadLetter`].
pub(super) const WEBHOOK_DEAD: TableDefinition<&str, &[u8]> =
    TableDefinition::new("webhook_dead_letters");
/// Re-queued dead letters, same key -> JSON [`Requeued`].
pub(super) const WEBHOOK_REQUEUED: TableDefinition<&str, &[u8]> =
    TableDefinition::new("webhook_requeued");
/// Delivery log by `org US id US log_seq (16 hex digits)` -> JSON [`DeliveryLog`].
pub(super) const WEBHOOK_LOG: TableDefinition<&str, &[u8]> =
    TableDefinition::new("webhook_deliveries");

/// Delivery-log entries kept per endpoint.
pub const LOG_KEEP: u64 = 1000;
/// Dead letters kept per endpoint; the oldest go first.
pub const DEAD_KEEP: usize = 10_000;

const ENDPOINT: &str = "webhook endpoint";
const STATE: &str = "webhook state";
const DEAD: &str = "webhook dead letter";
const REQUEUED: &str = "webhook requeued letter";
const LOG: &str = "webhook delivery log";

/// A configured webhook endpoint. `secret` never leaves the server except to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// 16 lowercase hex digits.
    pub id: String,
    /// Organisation whose audit chain it receives.
    pub org_id: String,
    /// Where to POST.
    pub url: String,
    /// HMAC-SHA256 key of the `X-Warden-Signature` header.
    pub secret: String,
    /// Action filters (exact or `prefix.*`); empty = every event.
    pub events: Vec<String>,
    /// Whether a dispatcher runs for it.
    pub enabled: bool,
    /// Free text.
    pub description: String,
    /// Created, ms since the epoch.
    pub created_at_ms: i64,
    /// Last changed, ms since the epoch.
    pub updated_at_ms: i64,
    /// Bumped on every change, so the dispatcher notices one.
    pub revision: u64,
}

/// Failed attempts of a message not yet delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub retry_at_ms: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// An endpoint's outbox: where it is in its org's audit chain, and its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookState {
    /// Last audit event seq passed (delivered, filtered out or dead-lettered).
    pub event_seq: u64,
    /// Last checkpoint tree size passed.
    pub checkpoint: u64,
    /// The delivery seq the next new message gets (from 1, contiguous).
    pub next_delivery_seq: u64,
    /// The next message's failed attempts.
    pub retry: Retry,
    /// The next delivery-log number (from 1).
    pub next_log: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Failed attempts.
    pub failed_attempts: u64,
    /// Messages moved to the dead-letter list.
    pub dead_lettered: u64,
    /// Last successful delivery, ms.
    pub last_success_ms: Option<i64>,
    /// Last failed attempt, ms.
    pub last_failure_ms: Option<i64>,
}

/// A message that failed `max_attempts` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its delivery seq (kept on retry).
    pub delivery_seq: u64,
    /// `audit.event` or `audit.checkpoint`.
    pub kind: String,
    /// The audit event's seq, for an event.
    pub audit_seq: Option<u64>,
    /// The checkpoint's tree size, for a checkpoint.
    pub tree_size: Option<u64>,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: String,
    /// When it was dead-lettered, ms.
    pub dead_at_ms: i64,
    /// The body that was sent (without the signature, which is made per attempt).
    pub message: serde_json::Value,
}

/// A dead letter re-queued by an operator, with the attempts of its retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requeued {
    /// The letter.
    pub letter: DeadLetter,
    /// When it was re-queued, ms.
    pub requeued_at_ms: i64,
    /// The retry's failed attempts.
    pub retry: Retry,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryLog {
    /// Log number (per endpoint, from 1).
    pub log_seq: u64,
    /// The message's delivery seq.
    pub delivery_seq: u64,
    /// `audit.event` or `audit.checkpoint`.
    pub kind: String,
    /// The audit event's seq, for an event.
    pub audit_seq: Option<u64>,
    /// The checkpoint's tree size, for a checkpoint.
    pub tree_size: Option<u64>,
    /// Attempt number of this message (from 1).
    pub attempt: u32,
    /// Whether this was a manual retry of a dead letter.
    pub retry: bool,
    /// Start of the attempt, ms.
    pub at_ms: i64,
    /// The receiver's status code, if it answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// `delivered`, `failed` (will be retried) or `dead_lettered`.
    pub outcome: String,
}

/// What happens to the re-queued letter of an attempt.
#[derive(Debug, Clone)]
pub enum RequeuedChange {
    /// Store its new retry state.
    Put(Requeued),
    /// Delivered or dead again: remove it.
    Remove(u64),
}

/// Everything one attempt commits.
#[derive(Debug, Clone)]
pub struct WebhookCommit {
    /// The new outbox state.
    pub state: WebhookState,
    /// The attempt's log entry.
    pub log: Option<DeliveryLog>,
    /// A message that just failed for the last time.
    pub dead: Option<DeadLetter>,
    /// The re-queued letter the attempt was for.
    pub requeued: Option<RequeuedChange>,
}

fn endpoint_key(org: &str, id: &str) -> String {
    format!("{org}{SEP}{id}")
}

fn sub_key(org: &str, id: &str, n: u64) -> String {
    format!("{org}{SEP}{id}{SEP}{n:016x}")
}

/// The keys under one endpoint: `[org US id US, org US id US+1)`.
fn sub_range(org: &str, id: &str) -> (String, String) {
    (
        format!("{org}{SEP}{id}{SEP}"),
        format!("{org}{SEP}{id}\u{20}"),
    )
}

impl Store {
    /// Stores a new endpoint with its outbox starting at its org's audit head. Returns the
    /// initial state.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] for a duplicate id; storage failures.
    pub fn webhook_create(&self, ep: &WebhookEndpoint) -> Result<WebhookState, StoreError> {
        let txn = self.write_txn()?;
        let key = endpoint_key(&ep.org_id, &ep.id);
        let state = {
            let mut eps = txn.open_table(WEBHOOKS)?;
            if eps.get(key.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists {
                    what: ENDPOINT,
                    id: ep.id.clone(),
                });
            }
            let head = txn
                .open_table(AUDIT_HEADS)?
                .get(ep.org_id.as_str())?
                .map(|v| decode::<Head>("audit head", &ep.org_id, v.value()))
                .transpose()?
                .map_or(0, |h| h.seq);
            let state = WebhookState {
                event_seq: head,
                checkpoint: head,
                next_delivery_seq: 1,
                next_log: 1,
                ..WebhookState::default()
            };
            eps.insert(key.as_str(), encode(ENDPOINT, ep)?.as_slice())?;
            txn.open_table(WEBHOOK_STATE)?
                .insert(key.as_str(), encode(STATE, &state)?.as_slice())?;
            state
        };
        self.commit(txn)?;
        Ok(state)
    }

    /// Every endpoint of every org (for the dispatcher supervisor).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_all(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let txn = self.read_txn()?;
        let t = txn.open_table(WEBHOOKS)?;
        t.iter()?
            .map(|e| {
                let (k, v) = e?;
                decode(ENDPOINT, k.value(), v.value())
            })
            .collect()
    }

    /// `org`'s endpoints with their outbox state and dead-letter counts, by id.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_list(
        &self,
        org: &str,
    ) -> Result<Vec<(WebhookEndpoint, WebhookState, usize)>, StoreError> {
        let txn = self.read_txn()?;
        let eps = txn.open_table(WEBHOOKS)?;
        let states = txn.open_table(WEBHOOK_STATE)?;
        let dead = txn.open_table(WEBHOOK_DEAD)?;
        let (lo, hi) = (format!("{org}{SEP}"), format!("{org}\u{20}"));
        let mut out = Vec::new();
        for e in eps.range(lo.as_str()..hi.as_str())? {
            let (k, v) = e?;
            let ep: WebhookEndpoint = decode(ENDPOINT, k.value(), v.value())?;
            let state = states
                .get(k.value())?
                .map(|s| decode(STATE, k.value(), s.value()))
                .transpose()?
                .unwrap_or_default();
            let (dlo, dhi) = sub_range(org, &ep.id);
            let n = dead.range(dlo.as_str()..dhi.as_str())?.count();
            out.push((ep, state, n));
        }
        Ok(out)
    }

    /// One endpoint with its state and dead-letter count.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_get(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<(WebhookEndpoint, WebhookState, usize)>, StoreError> {
        let txn = self.read_txn()?;
        let key = endpoint_key(org, id);
        let Some(ep) = txn
            .open_table(WEBHOOKS)?
            .get(key.as_str())?
            .map(|v| decode::<WebhookEndpoint>(ENDPOINT, &key, v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        let state = txn
            .open_table(WEBHOOK_STATE)?
            .get(key.as_str())?
            .map(|s| decode(STATE, &key, s.value()))
            .transpose()?
            .unwrap_or_default();
        let (lo, hi) = sub_range(org, id);
        let n = txn
            .open_table(WEBHOOK_DEAD)?
            .range(lo.as_str()..hi.as_str())?
            .count();
        Ok(Some((ep, state, n)))
    }

    /// Changes an endpoint with `f` (which may refuse with a message), bumping its revision.
    /// `Ok(None)`: no such endpoint.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_update<E>(
        &self,
        org: &str,
        id: &str,
        f: impl FnOnce(&mut WebhookEndpoint) -> Result<(), E>,
    ) -> Result<Option<Result<WebhookEndpoint, E>>, StoreError> {
        let txn = self.write_txn()?;
        let key = endpoint_key(org, id);
        let updated = {
            let mut eps = txn.open_table(WEBHOOKS)?;
            let Some(mut ep) = eps
                .get(key.as_str())?
                .map(|v| decode::<WebhookEndpoint>(ENDPOINT, &key, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            if let Err(e) = f(&mut ep) {
                return Ok(Some(Err(e)));
            }
            ep.revision += 1;
            eps.insert(key.as_str(), encode(ENDPOINT, &ep)?.as_slice())?;
            ep
        };
        self.commit(txn)?;
        Ok(Some(Ok(updated)))
    }

    /// Deletes an endpoint with its state, dead letters, re-queued letters and log. Returns
    /// the deleted endpoint.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_delete(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let txn = self.write_txn()?;
        let key = endpoint_key(org, id);
        let removed = {
            let Some(ep) = txn
                .open_table(WEBHOOKS)?
                .remove(key.as_str())?
                .map(|v| decode::<WebhookEndpoint>(ENDPOINT, &key, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            txn.open_table(WEBHOOK_STATE)?.remove(key.as_str())?;
            let (lo, hi) = sub_range(org, id);
            for def in [WEBHOOK_DEAD, WEBHOOK_REQUEUED, WEBHOOK_LOG] {
                txn.open_table(def)?
                    .extract_from_if(lo.as_str()..hi.as_str(), |_, _| true)?
                    .for_each(drop);
            }
            ep
        };
        self.commit(txn)?;
        Ok(Some(removed))
    }

    /// An endpoint's outbox state (`None`: deleted).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_state(&self, org: &str, id: &str) -> Result<Option<WebhookState>, StoreError> {
        let txn = self.read_txn()?;
        let key = endpoint_key(org, id);
        txn.open_table(WEBHOOK_STATE)?
            .get(key.as_str())?
            .map(|v| decode(STATE, &key, v.value()))
            .transpose()
    }

    /// Commits one attempt (see [`WebhookCommit`]). Returns `false`, writing nothing, when
    /// the endpoint no longer exists.
    ///
    /// # Errors
    /// Storage failures.
    pub fn webhook_commit(
        &self,
        org: &str,
        id: &str,
        c: &WebhookCommit,
    ) -> Result<bool, StoreError> {
        let txn = self.write_txn()?;
        let key = endpoint_key(org, id);
        {
            if txn.open_table(WEBHOOKS)?.get(key.as_str())?.is_none() {
                return Ok(false);
            }
            txn.open_table(WEBHOOK_STATE)?
                .insert(key.as_str(), encode(STATE, &c.state)?.as_slice())?;
            if let Some(log) = &c.log {
                let mut t = txn.open_table(WEBHOOK_LOG)?;
                t.insert(
                    sub_key(org, id, log.log_seq).as_str(),
                    encode(LOG, log)?.as_slice(),
                )?;
                if log.log_seq > LOG_KEEP {
                    t.remove(sub_key(org, id, log.log_seq - LOG_KEEP).as_str())?;
                }
            }
            let mut rq = txn.open_table(WEBHOOK_REQUEUED)?;
            match &c.requeued {
                Some(RequeuedChange::Put(r)) => {
                    rq.insert(
                        sub_key(org, id, r.letter.delivery_seq).as_str(),
                        encode(REQUEUED, r)?.as_slice(),
                    )?;
                }
                Some(RequeuedChange::Remove(seq)) => {
                    rq.remove(sub_key(org, id, *seq).as_str())?;
                }
                None => {}
            }
            if let Some(d) = &c.dead {
                let mut t = txn.open_table(WEBHOOK_DEAD)?;
                t.insert(
                    sub_key(org, id, d.delivery_seq).as_str(),
                    encode(DEAD, d)?.as_slice(),
                )?;
                let (lo, hi) = sub_range(org, id);
                let n = t.range(lo.as_str()..hi.as_str())?.count();
                if n > DEAD_KEEP {
                    t.extract_from_if(lo.as_str()..hi.as_str(), |_, _| true)?
                        .take(n - DEAD_KEEP)
                        .for_each(drop);
                }
            }
        }
        self.commit(txn)?;
        Ok(true)
    }

    /// The newest `limit` delivery-log entries of an endpoint, newest first.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_deliveries(
        &self,
        org: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryLog>, StoreError> {
        let txn = self.read_txn()?;
        let (lo, hi) = sub_range(org, id);
        txn.open_table(WEBHOOK_LOG)?
            .range(lo.as_str()..hi.as_str())?
            .rev()
            .take(limit)
            .map(|e| {
                let (k, v) = e?;
                decode(LOG, k.value(), v.value())
            })
            .collect()
    }

    /// An endpoint's dead letters (oldest first) and the re-queued ones awaiting a retry.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_dead_letters(
        &self,
        org: &str,
        id: &str,
    ) -> Result<(Vec<DeadLetter>, Vec<Requeued>), StoreError> {
        let txn = self.read_txn()?;
        let (lo, hi) = sub_range(org, id);
        let dead = txn
            .open_table(WEBHOOK_DEAD)?
            .range(lo.as_str()..hi.as_str())?
            .map(|e| {
                let (k, v) = e?;
                decode(DEAD, k.value(), v.value())
            })
            .collect::<Result<_, StoreError>>()?;
        let requeued = txn
            .open_table(WEBHOOK_REQUEUED)?
            .range(lo.as_str()..hi.as_str())?
            .map(|e| {
                let (k, v) = e?;
                decode(REQUEUED, k.value(), v.value())
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((dead, requeued))
    }

    /// The first re-queued letter of an endpoint (lowest delivery seq), if any.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_next_requeued(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<Requeued>, StoreError> {
        let txn = self.read_txn()?;
        let (lo, hi) = sub_range(org, id);
        let t = txn.open_table(WEBHOOK_REQUEUED)?;
        let mut range = t.range(lo.as_str()..hi.as_str())?;
        range
            .next()
            .map(|e| {
                let (k, v) = e?;
                decode(REQUEUED, k.value(), v.value())
            })
            .transpose()
    }

    /// Moves a dead letter to the retry queue. `Ok(None)`: no such dead letter.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn webhook_requeue(
        &self,
        org: &str,
        id: &str,
        delivery_seq: u64,
        now_ms: i64,
    ) -> Result<Option<DeadLetter>, StoreError> {
        let txn = self.write_txn()?;
        let key = sub_key(org, id, delivery_seq);
        let letter = {
            let Some(letter) = txn
                .open_table(WEBHOOK_DEAD)?
                .remove(key.as_str())?
                .map(|v| decode::<DeadLetter>(DEAD, &key, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            let r = Requeued {
                letter: letter.clone(),
                requeued_at_ms: now_ms,
                retry: Retry::default(),
            };
            txn.open_table(WEBHOOK_REQUEUED)?
                .insert(key.as_str(), encode(REQUEUED, &r)?.as_slice())?;
            letter
        };
        self.commit(txn)?;
        Ok(Some(letter))
    }
}
