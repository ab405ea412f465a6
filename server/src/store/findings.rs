//! Patrol's state per organisation: findings (upserted in one transaction per run, updated
//! read-modify-write by operator actions), suppression rules with generated ids, and run
//! records with per-org increasing ids, listed newest first.

use super::keys::{decode, encode, org_resource_range, resource_key};
use super::{Store, StoreError};
use crate::model::finding::{Finding, Suppression};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Findings by `org US finding_id` -> JSON [`Finding`].
pub(super) const FINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("findings");
/// Suppression rules by `org US rule_id` -> JSON [`Suppression`].
pub(super) const SUPPRESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("suppressions");
/// Patrol runs by `org US run_id` (16 lowercase hex digits) -> JSON [`PatrolRunRecord`].
pub(super) const PATROL_RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("patrol_runs");
/// Patrol settings by org -> JSON settings document (absent: the defaults).
pub(super) const PATROL_SETTINGS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("patrol_settings");

const FINDING: &str = "finding";
const SUPPRESSION: &str = "suppression";
const RUN: &str = "patrol run";
const SETTINGS: &str = "patrol settings";

/// One Patrol run of one organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatrolRunRecord {
    /// Per-org run id, assigned by [`Store::record_run`]: 1, 2, ... in the order recorded.
    pub id: u64,
    /// What started it: `schedule`, `manual`, `alert`.
    pub trigger: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// How long it took.
    pub duration_ms: u64,
    /// Resources looked at, by resource kind.
    pub resources_checked: BTreeMap<String, u32>,
    /// Findings opened or re-opened.
    pub new: u32,
    /// Findings found again.
    pub existing: u32,
    /// Findings resolved.
    pub resolved: u32,
    /// What went wrong, if anything (a detector that could not run).
    pub errors: Vec<String>,
    /// The alert that triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// The findings it raised on the alert's resource (their ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_findings: Vec<String>,
}

/// `org US id` with the id as 16 hex digits, so key order is numeric order.
fn run_key(org: &str, id: u64) -> String {
    resource_key(org, &format!("{id:016x}"))
}

/// The id part of an `org US id` key.
fn key_id(key: &str) -> &str {
    key.rsplit_once(super::keys::SEP).map_or(key, |(_, id)| id)
}

impl Store {
    /// Every `(id, value)` of `org` in `table`, in key order (`what` names the value in errors).
    fn org_entries<T, C>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        what: &'static str,
        org: &str,
    ) -> Result<C, StoreError>
    where
        T: serde::de::DeserializeOwned,
        C: FromIterator<(String, T)>,
    {
        let txn = self.read_txn()?;
        let table = txn.open_table(table)?;
        let (lo, hi) = org_resource_range(org);
        table
            .range(lo.as_str()..hi.as_str())?
            .map(|entry| {
                let (k, v) = entry?;
                let id = key_id(k.value()).to_owned();
                let value = decode(what, &id, v.value())?;
                Ok((id, value))
            })
            .collect()
    }

    /// All findings of `org`, by finding id.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn findings(&self, org: &str) -> Result<BTreeMap<String, Finding>, StoreError> {
        self.org_entries(FINDINGS, FINDING, org)
    }

    /// Stores `findings` of `org` (keyed by finding id) in one write transaction: each one is
    /// inserted or replaced; stored findings not in the map are kept.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Encode`] (nothing is written).
    pub fn save_findings(
        &self,
        org: &str,
        findings: &BTreeMap<String, Finding>,
    ) -> Result<(), StoreError> {
        let encoded = findings
            .iter()
            .map(|(id, f)| Ok((resource_key(org, id), encode(FINDING, f)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let txn = self.write_txn()?;
        {
            let mut table = txn.open_table(FINDINGS)?;
            for (k, v) in &encoded {
                table.insert(k.as_str(), v.as_slice())?;
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Applies `f` to a finding of `org` and stores the result, in one write transaction.
    /// Returns the updated finding, or `None` (and writes nothing) if there is no such
    /// finding. It stays stored under `id` even if `f` changes its `id` field; don't.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn update_finding(
        &self,
        org: &str,
        id: &str,
        f: impl FnOnce(&mut Finding),
    ) -> Result<Option<Finding>, StoreError> {
        let key = resource_key(org, id);
        let txn = self.write_txn()?;
        let updated = {
            let mut table = txn.open_table(FINDINGS)?;
            let current: Option<Finding> = table
                .get(key.as_str())?
                .map(|v| decode(FINDING, id, v.value()))
                .transpose()?;
            match current {
                None => None,
                Some(mut finding) => {
                    f(&mut finding);
                    debug_assert_eq!(finding.id, id, "update_finding must not change the id");
                    table.insert(key.as_str(), encode(FINDING, &finding)?.as_slice())?;
                    Some(finding)
                }
            }
        };
        if updated.is_some() {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(updated)
    }

    /// Adds a suppression rule to `org` and returns its new id (16 hex digits).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Encode`].
    pub fn add_suppression(&self, org: &str, rule: &Suppression) -> Result<String, StoreError> {
        let bytes = encode(SUPPRESSION, rule)?;
        let txn = self.write_txn()?;
        let id = {
            let mut table = txn.open_table(SUPPRESSIONS)?;
            // 64 random bits: a collision is practically impossible, but cheap to rule out.
            let (id, key) = loop {
                let id = hex::encode(rand::random::<[u8; 8]>());
                let key = resource_key(org, &id);
                if table.get(key.as_str())?.is_none() {
                    break (id, key);
                }
            };
            table.insert(key.as_str(), bytes.as_slice())?;
            id
        };
        self.commit(txn)?;
        Ok(id)
    }

    /// The suppression rules of `org` with their ids, sorted by id.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn suppressions(&self, org: &str) -> Result<Vec<(String, Suppression)>, StoreError> {
        self.org_entries(SUPPRESSIONS, SUPPRESSION, org)
    }

    /// Removes a suppression rule of `org`; `false` if it had no rule with that id.
    ///
    /// # Errors
    /// Storage failures.
    pub fn remove_suppression(&self, org: &str, id: &str) -> Result<bool, StoreError> {
        let key = resource_key(org, id);
        let txn = self.write_txn()?;
        let removed = txn
            .open_table(SUPPRESSIONS)?
            .remove(key.as_str())?
            .is_some();
        if removed {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(removed)
    }

    /// Stores a run record of `org` under the next run id (one above the org's newest, 1 for
    /// the first) and returns that id; `rec.id` is ignored.
    ///
    /// # Errors
    /// Storage failures, [`StoreError::Encode`] and [`StoreError::Corrupt`] (a malformed key).
    pub fn record_run(&self, org: &str, mut rec: PatrolRunRecord) -> Result<u64, StoreError> {
        let txn = self.write_txn()?;
        {
            let mut table = txn.open_table(PATROL_RUNS)?;
            let (lo, hi) = org_resource_range(org);
            let last = match table.range(lo.as_str()..hi.as_str())?.next_back() {
                None => 0,
                Some(entry) => {
                    let (k, _) = entry?;
                    let id = key_id(k.value());
                    u64::from_str_radix(id, 16)
                        .map_err(|e| StoreError::Corrupt(format!("{RUN} key {id:?}: {e}")))?
                }
            };
            rec.id = last + 1;
            table.insert(run_key(org, rec.id).as_str(), encode(RUN, &rec)?.as_slice())?;
        }
        self.commit(txn)?;
        Ok(rec.id)
    }

    /// The newest `limit` run records of `org`, newest first.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn runs(&self, org: &str, limit: usize) -> Result<Vec<PatrolRunRecord>, StoreError> {
        Ok(self.runs_page(org, None, limit)?.0)
    }

    /// Up to `limit` Patrol runs of `org`, newest first, starting below the run id
    /// `before` (exclusive; from the newest without it): a seek, so a page costs its own
    /// rows. The flag says whether older runs follow the page.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn runs_page(
        &self,
        org: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<PatrolRunRecord>, bool), StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(PATROL_RUNS)?;
        let (lo, hi) = org_resource_range(org);
        let hi = before.map_or(hi, |id| run_key(org, id));
        let mut page = Vec::new();
        for entry in table.range(lo.as_str()..hi.as_str())?.rev() {
            let (k, v) = entry?;
            if page.len() == limit {
                return Ok((page, true));
            }
            page.push(decode(RUN, key_id(k.value()), v.value())?);
        }
        Ok((page, false))
    }

    /// The Patrol settings document saved for `org`, if any, decoded as `T`. The store keeps
    /// it opaque; its schema and validation belong to `patrol::settings`, whose typed
    /// `Store::patrol_settings` callers use.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`] (also when the document does not decode
    /// as `T`).
    pub fn patrol_settings_document<T: serde::de::DeserializeOwned>(
        &self,
        org: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(PATROL_SETTINGS)?;
        table
            .get(org)?
            .map(|v| decode(SETTINGS, org, v.value()))
            .transpose()
    }

    /// Saves the Patrol settings document of `org` (see [`Store::patrol_settings_document`]).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Encode`].
    pub fn set_patrol_settings_document<T: Serialize>(
        &self,
        org: &str,
        s: &T,
    ) -> Result<(), StoreError> {
        let txn = self.write_txn()?;
        txn.open_table(PATROL_SETTINGS)?
            .insert(org, encode(SETTINGS, s)?.as_slice())?;
        self.commit(txn)?;
        Ok(())
    }
}
