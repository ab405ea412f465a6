//! Read side: resources of an org and metric history of one series.

use super::keys::{
    RESOURCES, SAMPLES, SERIES, bucket_of, decode, key_at, org_resource_range, parse_sample_key,
    resource_key, series_name,
};
use super::{ProvenanceRecord, ResourceRecord, Store, StoreError};
use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase};
use std::ops::ControlFlow;
use warden_shared::telemetry::metric_base;

const RESOURCE: &str = "resource";

impl Store {
    /// All resources of `org`, sorted by id.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn list_resources(&self, org: &str) -> Result<Vec<ResourceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESOURCES)?;
        let (lo, hi) = org_resource_range(org);
        table
            .range(lo.as_str()..hi.as_str())?
            .map(|entry| {
                let (k, v) = entry?;
                decode(RESOURCE, k.value(), v.value())
            })
            .collect()
    }

    /// One resource of `org`.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn get_resource(&self, org: &str, id: &str) -> Result<Option<ResourceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESOURCES)?;
        let k = resource_key(org, id);
        table
            .get(k.as_str())?
            .map(|v| decode(RESOURCE, &k, v.value()))
            .transpose()
    }

    /// The provenance of `metric` (labels allowed) on resource `id` of `org`, if its agent
    /// reported one.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn provenance(
        &self,
        org: &str,
        id: &str,
        metric: &str,
    ) -> Result<Option<ProvenanceRecord>, StoreError> {
        Ok(self
            .get_resource(org, id)?
            .and_then(|mut r| r.provenance.remove(metric_base(metric))))
    }

    /// Points of one series with `from_ms <= ts <= to_ms`, ascending by time, at most `limit`.
    ///
    /// With `step_ms = Some(s)` each point is the average of the samples in the bucket
    /// `floor(ts / s) * s`, stamped with the bucket start. An empty range (`from_ms > to_ms`)
    /// or an unknown series gives no points.
    ///
    /// Overflow is not an error: the result is cut after the first `limit` points (every
    /// returned bucket is complete) and the scan stops there. To detect overflow, pass the
    /// maximum plus one and check whether the result is longer than the maximum.
    ///
    /// # Errors
    /// [`StoreError::InvalidStep`] if `s <= 0`; storage failures.
    #[expect(
        clippy::too_many_arguments,
        reason = "the series (org, resource, metric) and the window are all needed"
    )]
    pub fn history(
        &self,
        org: &str,
        resource_id: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        if let Some(step) = step_ms
            && step <= 0
        {
            return Err(StoreError::InvalidStep(step));
        }
        let mut points = Vec::new();
        if limit == 0 {
            return Ok(points);
        }
        let txn = self.db.begin_read()?;
        let Some(series) = series_id(&txn, org, resource_id, metric)? else {
            return Ok(points);
        };
        let table = txn.open_table(SAMPLES)?;
        // The current step bucket: start, sum, count.
        let mut bucket: Option<(i64, f64, u64)> = None;
        scan_series(&table, series, from_ms, to_ms, |ts, value| {
            let Some(step) = step_ms else {
                points.push((ts, value));
                return full(&points, limit);
            };
            let start = ts.div_euclid(step) * step;
            match &mut bucket {
                Some((b, sum, n)) if *b == start => {
                    *sum += value;
                    *n += 1;
                    ControlFlow::Continue(())
                }
                _ => {
                    let done = bucket.replace((start, value, 1));
                    if let Some((b, sum, n)) = done {
                        points.push((b, sum / n as f64));
                    }
                    full(&points, limit)
                }
            }
        })?;
        if let Some((b, sum, n)) = bucket
            && points.len() < limit
        {
            points.push((b, sum / n as f64));
        }
        Ok(points)
    }

    /// Number of stored samples of one series with `from_ms <= ts <= to_ms`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn count_samples(
        &self,
        org: &str,
        resource_id: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(series) = series_id(&txn, org, resource_id, metric)? else {
            return Ok(0);
        };
        let table = txn.open_table(SAMPLES)?;
        let mut n = 0;
        scan_series(&table, series, from_ms, to_ms, |_, _| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }
}

/// The id of a series, `None` if it never had a sample.
fn series_id(
    txn: &ReadTransaction,
    org: &str,
    resource_id: &str,
    metric: &str,
) -> Result<Option<u64>, StoreError> {
    let table = txn.open_table(SERIES)?;
    let mut name = String::new();
    series_name(&mut name, org, resource_id, metric);
    Ok(table.get(name.as_str())?.map(|v| v.value()))
}

/// `Break` once `points` holds `limit` points.
fn full(points: &[(i64, f64)], limit: usize) -> ControlFlow<()> {
    if points.len() >= limit {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

/// Calls `f(ts, value)` for each sample of `series` with `from_ms <= ts <= to_ms`, ascending,
/// until it returns `Break`.
///
/// One range read per bucket that holds any sample at all: a read that leaves the bucket
/// lands on the next populated one, so empty stretches of time cost nothing.
fn scan_series(
    table: &ReadOnlyTable<&[u8; 24], f64>,
    series: u64,
    from_ms: i64,
    to_ms: i64,
    mut f: impl FnMut(i64, f64) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let last = bucket_of(to_ms);
    let mut bucket = bucket_of(from_ms);
    'buckets: while bucket <= last {
        let lo = key_at(bucket, series, from_ms);
        let mut next = None;
        for entry in table.range::<&[u8; 24]>(&lo..)? {
            let (k, v) = entry?;
            let (b, s, ts) = parse_sample_key(k.value());
            if b != bucket {
                next = Some(b);
                break;
            }
            if s != series {
                next = bucket.checked_add(1);
                break;
            }
            if ts > to_ms {
                break 'buckets;
            }
            if f(ts, v.value()).is_break() {
                break 'buckets;
            }
        }
        match next {
            Some(n) => bucket = n,
            None => break,
        }
    }
    Ok(())
}
