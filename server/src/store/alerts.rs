//! Alerts per organisation: alert records (firing and resolved, with their timelines),
//! written in one transaction per evaluation ([`Store::write_alerts`]) and read-modify-write
//! ([`Store::update_alert`]) with the caller's logic; the alert rule set as an opaque
//! document; pruning of old resolved alerts.

use super::keys::{decode, encode, org_resource_range, resource_key};
use super::{Store, StoreError};
use crate::model::alert::AlertRecord;
use redb::{ReadableTable, TableDefinition};

/// Reads one stored alert by id inside [`Store::write_alerts`]'s transaction.
pub type AlertReader<'a> = &'a mut dyn FnMut(&str) -> Result<Option<AlertRecord>, StoreError>;

/// Alerts by `org US alert_id` -> JSON [`AlertRecord`].
pub(super) const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// Alert rule sets by org -> JSON rule set document (absent: the defaults).
pub(super) const ALERT_RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_rules");

const ALERT: &str = "alert";
const RULES: &str = "alert rule set";

impl Store {
    /// Every alert of `org`, firing and resolved, in id order.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn alerts(&self, org: &str) -> Result<Vec<AlertRecord>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ALERTS)?;
        let (lo, hi) = org_resource_range(org);
        table
            .range(lo.as_str()..hi.as_str())?
            .map(|entry| {
                let (k, v) = entry?;
                decode(ALERT, k.value(), v.value())
            })
            .collect()
    }

    /// One alert of `org`.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn alert(&self, org: &str, id: &str) -> Result<Option<AlertRecord>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ALERTS)?;
        table
            .get(resource_key(org, id).as_str())?
            .map(|v| decode(ALERT, id, v.value()))
            .transpose()
    }

    /// Writes a batch of alert changes of `org` in one write transaction: for each item, `f`
    /// gets a reader of the stored alerts (inside this transaction) and returns the record to
    /// store under its id, or `None` to leave the table as it is. The logic of what changes
    /// is the caller's (`alerts` applies the evaluator's events with it).
    ///
    /// # Errors
    /// Storage failures, [`StoreError::Encode`], [`StoreError::Corrupt`] and the errors of
    /// `f`; nothing is written then.
    pub fn write_alerts<E>(
        &self,
        org: &str,
        items: &[E],
        mut f: impl FnMut(&E, AlertReader<'_>) -> Result<Option<AlertRecord>, StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.write_txn()?;
        {
            let mut table = txn.open_table(ALERTS)?;
            for item in items {
                let record = f(item, &mut |id: &str| {
                    table
                        .get(resource_key(org, id).as_str())?
                        .map(|v| decode(ALERT, id, v.value()))
                        .transpose()
                })?;
                if let Some(record) = record {
                    let key = resource_key(org, &record.id);
                    table.insert(key.as_str(), encode(ALERT, &record)?.as_slice())?;
                }
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Applies `f` to an alert of `org` and stores it if `f` returns `true`, in one write
    /// transaction. Returns the alert as it now is, or `None` if there is no such alert.
    ///
    /// # Errors
    /// Storage failures, [`StoreError::Encode`] and [`StoreError::Corrupt`].
    pub fn update_alert(
        &self,
        org: &str,
        id: &str,
        f: impl FnOnce(&mut AlertRecord) -> bool,
    ) -> Result<Option<AlertRecord>, StoreError> {
        let key = resource_key(org, id);
        let txn = self.write_txn()?;
        let (alert, changed) = {
            let mut table = txn.open_table(ALERTS)?;
            let current: Option<AlertRecord> = table
                .get(key.as_str())?
                .map(|v| decode(ALERT, id, v.value()))
                .transpose()?;
            match current {
                None => (None, false),
                Some(mut a) => {
                    let changed = f(&mut a);
                    debug_assert_eq!(a.id, id, "update_alert must not change the id");
                    if changed {
                        table.insert(key.as_str(), encode(ALERT, &a)?.as_slice())?;
                    }
                    (Some(a), changed)
                }
            }
        };
        if changed {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(alert)
    }

    /// The alert rule set document of `org` decoded as `T`, `None` if it never stored one (the
    /// defaults apply). The store keeps it opaque; its schema belongs to `alerts::rules`,
    /// whose typed `Store::alert_rules` callers use.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`] (also when it does not decode as `T`).
    pub fn alert_rules_document<T: serde::de::DeserializeOwned>(
        &self,
        org: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ALERT_RULES)?;
        table
            .get(org)?
            .map(|v| decode(RULES, org, v.value()))
            .transpose()
    }

    /// Replaces the alert rule set of `org` (validate it first).
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Encode`].
    pub fn set_alert_rules_document<T: serde::Serialize>(
        &self,
        org: &str,
        rules: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(RULES, rules)?;
        let txn = self.write_txn()?;
        txn.open_table(ALERT_RULES)?.insert(org, bytes.as_slice())?;
        self.commit(txn)?;
        Ok(())
    }

    /// Removes resolved alerts of `org` that resolved before `resolved_before_ms`, and the
    /// oldest resolved ones beyond the newest `keep_max`. Firing alerts are never removed.
    /// Returns how many were removed.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn prune_alerts(
        &self,
        org: &str,
        resolved_before_ms: i64,
        keep_max: usize,
    ) -> Result<usize, StoreError> {
        let txn = self.write_txn()?;
        let removed = {
            let mut table = txn.open_table(ALERTS)?;
            let (lo, hi) = org_resource_range(org);
            // (resolved at, key) of every resolved alert.
            let mut resolved = Vec::new();
            for entry in table.range(lo.as_str()..hi.as_str())? {
                let (k, v) = entry?;
                let a: AlertRecord = decode(ALERT, k.value(), v.value())?;
                if let Some(at) = a.resolved_at_ms {
                    resolved.push((at, k.value().to_owned()));
                }
            }
            resolved.sort_unstable_by(|a, b| b.cmp(a));
            let doomed: Vec<String> = resolved
                .into_iter()
                .enumerate()
                .filter(|(i, (at, _))| *i >= keep_max || *at < resolved_before_ms)
                .map(|(_, (_, k))| k)
                .collect();
            for k in &doomed {
                table.remove(k.as_str())?;
            }
            doomed.len()
        };
        if removed > 0 {
            self.commit(txn)?;
        } else {
            txn.abort()?;
        }
        Ok(removed)
    }
}
