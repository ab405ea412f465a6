//! Paged reads for the API's lists that can grow large (resources, Patrol runs): each is a
//! seek in its table from the cursor's key, so a page costs its own rows (plus those a
//! filter skips), not the whole table.

use super::findings::PATROL_RUNS;
use super::keys::{RESOURCES, decode, org_resource_range, resource_key};
use super::{PatrolRunRecord, Store, StoreError};
use crate::model::ResourceRecord;
use std::ops::Bound;

impl Store {
    /// Up to `limit` resources of `org` that `keep` accepts, by id, starting after the id
    /// `after` (exclusive; from the first without it). The flag says whether more accepted
    /// resources follow the page.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn resources_page(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&ResourceRecord) -> bool,
    ) -> Result<(Vec<ResourceRecord>, bool), StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(RESOURCES)?;
        let (lo, hi) = org_resource_range(org);
        let from = after.map(|id| resource_key(org, id));
        let start = match &from {
            Some(k) => Bound::Excluded(k.as_str()),
            None => Bound::Included(lo.as_str()),
        };
        let mut page = Vec::new();
        for entry in table.range::<&str>((start, Bound::Excluded(hi.as_str())))? {
            let (k, v) = entry?;
            let r: ResourceRecord = decode("resource", k.value(), v.value())?;
            if !keep(&r) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, true));
            }
            page.push(r);
        }
        Ok((page, false))
    }

    /// Up to `limit` Patrol runs of `org`, newest first, starting below the run id
    /// `before` (exclusive; from the newest without it). The flag says whether older runs
    /// follow the page.
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
        let to = before.map(|id| resource_key(org, &format!("{id:016x}")));
        let end = match &to {
            Some(k) => Bound::Excluded(k.as_str()),
            None => Bound::Excluded(hi.as_str()),
        };
        let mut page = Vec::new();
        for entry in table
            .range::<&str>((Bound::Included(lo.as_str()), end))?
            .rev()
        {
            let (k, v) = entry?;
            if page.len() == limit {
                return Ok((page, true));
            }
            page.push(decode("patrol run", k.value(), v.value())?);
        }
        Ok((page, false))
    }
}
