//! Read side: resources of an org, metric history of one series, and [`StoreView`], one read
//! transaction for bulk reads of many series from the downsampled tiers (Patrol's snapshot).

use super::head::HEAD;
use super::history::History;
use super::keys::{
    BUCKET_MS, CHUNKS, HOURS, HOURS_PER_DAY, META, MINUTES, MINUTES_PACKED, MINUTES_PER_HOUR,
    RESOURCES, SEP, SERIES, decode, metric_key, org_resource_range, parse_tier_key, resource_key,
    series_name, tier_key,
};
use super::pack::PackedHour;
use super::rollup::{Aggregate, Day, Marks, Slice, marks, whole_minutes};
use super::{Store, StoreError};
use crate::model::{ProvenanceRecord, ResourceRecord};
use redb::{ReadOnlyTable, ReadTransaction};
use std::collections::HashMap;
use std::ops::{Bound, ControlFlow};
use warden_shared::metric;

const RESOURCE: &str = "resource";
const HOUR_MS: i64 = BUCKET_MS * MINUTES_PER_HOUR;
/// Up to this many series of a query, tier rows are read with one point lookup per series and
/// bucket; above it, with one range read per bucket over the metric's rows of all series.
const POINT_READS_MAX: usize = 8;

impl Store {
    /// All resources of `org`, sorted by id.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn list_resources(&self, org: &str) -> Result<Vec<ResourceRecord>, StoreError> {
        self.view()?.resources(org)
    }

    /// Up to `limit` resources of `org` that `keep` accepts, by id, starting after the id
    /// `after` (exclusive; from the first without it): a seek, so a page costs its own rows
    /// plus those `keep` skips. The flag says whether more accepted resources follow the page.
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
        let start = from
            .as_deref()
            .map_or(Bound::Included(lo.as_str()), Bound::Excluded);
        let mut page = Vec::new();
        for entry in table.range::<&str>((start, Bound::Excluded(hi.as_str())))? {
            let (k, v) = entry?;
            let r: ResourceRecord = decode(RESOURCE, k.value(), v.value())?;
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

    /// A consistent view of the store for many reads: one read transaction. Writers are not
    /// blocked by it, and it does not see their later commits.
    ///
    /// # Errors
    /// Storage failures.
    pub fn view(&self) -> Result<StoreView, StoreError> {
        Ok(StoreView {
            txn: self.read_txn()?,
        })
    }

    /// One resource of `org`.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn get_resource(&self, org: &str, id: &str) -> Result<Option<ResourceRecord>, StoreError> {
        let txn = self.read_txn()?;
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
            .and_then(|mut r| r.provenance.remove(metric::base(metric))))
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
        let txn = self.read_txn()?;
        let Some(series) = series_id(&txn, org, resource_id, metric)? else {
            return Ok(points);
        };
        let (samples, chunks) = (txn.open_table(HEAD)?, txn.open_table(CHUNKS)?);
        let history = History {
            head: &samples,
            chunks: &chunks,
        };
        // The current step bucket: start, sum, count.
        let mut bucket: Option<(i64, f64, u64)> = None;
        history.scan(series, from_ms, to_ms, |ts, value| {
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
        let txn = self.read_txn()?;
        let Some(series) = series_id(&txn, org, resource_id, metric)? else {
            return Ok(0);
        };
        let (samples, chunks) = (txn.open_table(HEAD)?, txn.open_table(CHUNKS)?);
        let history = History {
            head: &samples,
            chunks: &chunks,
        };
        let mut n = 0;
        history.scan(series, from_ms, to_ms, |_, _| {
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

/// One read transaction over the store; see [`Store::view`].
pub struct StoreView {
    txn: ReadTransaction,
}

impl std::fmt::Debug for StoreView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreView").finish_non_exhaustive()
    }
}

/// Aggregates of one metric of several resources over a time range, in buckets of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateQuery<'a> {
    /// The metric (labels included).
    pub metric: &'a str,
    /// Canonical ids of the resources.
    pub resources: Vec<&'a str>,
    /// Samples with `from_ms <= ts <= to_ms` count.
    pub from_ms: i64,
    /// See `from_ms`.
    pub to_ms: i64,
    /// Bucket width, ms; buckets start at multiples of it since the epoch. A multiple of an
    /// hour reads the hour tier, a multiple of a minute the minute tier; any other step reads
    /// raw samples only.
    pub step_ms: i64,
}

/// What [`StoreView::aggregates`] returns: per query, per resource, `(bucket start, aggregate)`.
pub type Aggregates = Vec<Vec<Vec<(i64, Aggregate)>>>;

/// Per-slot bucket lists being filled by a read.
struct Buckets {
    step: i64,
    out: Vec<Vec<(i64, Aggregate)>>,
}

impl Buckets {
    /// Adds `a`, whose samples lie in the bucket of `at_ms`. Callers add each slot's data in
    /// time order.
    fn add(&mut self, slot: usize, at_ms: i64, a: &Aggregate) {
        self.add_to(slot, self.bucket(at_ms), a);
    }

    /// The start of the bucket of `at_ms`.
    fn bucket(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.step) * self.step
    }

    /// Adds `a` to the bucket that starts at `bucket`.
    fn add_to(&mut self, slot: usize, bucket: i64, a: &Aggregate) {
        let points = &mut self.out[slot];
        match points.last_mut() {
            Some((b, acc)) if *b == bucket => acc.merge(a),
            _ => points.push((bucket, *a)),
        }
    }
}

impl StoreView {
    /// All resources of `org`, sorted by id.
    ///
    /// # Errors
    /// Storage failures and [`StoreError::Corrupt`].
    pub fn resources(&self, org: &str) -> Result<Vec<ResourceRecord>, StoreError> {
        let table = self.txn.open_table(RESOURCES)?;
        let (lo, hi) = org_resource_range(org);
        table
            .range(lo.as_str()..hi.as_str())?
            .map(|entry| {
                let (k, v) = entry?;
                decode(RESOURCE, k.value(), v.value())
            })
            .collect()
    }

    /// For each query, for each of its resources (in order), the non-empty buckets of the
    /// metric's samples with `from_ms <= ts <= to_ms`, ascending: `(bucket start, aggregate)`.
    /// A resource without the metric gets no buckets.
    ///
    /// The result is the same whichever tiers hold the data (up to rounding of sums): whole
    /// hours come from the hour tier where the step allows and they are rolled up, whole
    /// minutes from the minute tier where rolled up and still kept (50 hours), and the rest
    /// (partial minutes at the ends of the range, minutes not rolled up yet or no longer kept)
    /// from raw samples. Series ids are found with
    /// one scan of the org's series. A query costs one range read (or, for eight resources
    /// or fewer, one lookup per resource) per minute of the minute tier not packed yet, per
    /// packed hour of it and per day of the hour tier it covers, whether or not it holds
    /// data, so keep ranges bounded.
    ///
    /// # Errors
    /// [`StoreError::InvalidStep`] if a step is not positive; storage failures.
    pub fn aggregates(
        &self,
        org: &str,
        queries: &[AggregateQuery<'_>],
    ) -> Result<Aggregates, StoreError> {
        if let Some(q) = queries.iter().find(|q| q.step_ms <= 0) {
            return Err(StoreError::InvalidStep(q.step_ms));
        }
        let ids = self.series_ids(org, queries)?;
        let rolled = marks(&self.txn.open_table(META)?)?;
        let tables = self.tables()?;
        queries
            .iter()
            .zip(ids)
            .map(|(q, ids)| tables.read(q, &ids, rolled))
            .collect()
    }

    /// For each `(resource id, metric)` series, its non-empty buckets of width `step_ms` with
    /// `from_ms <= ts <= to_ms`, read as [`StoreView::aggregates`] reads them (same tiers,
    /// same result) but with one lookup per series id instead of a scan of the org's series:
    /// for a few series of a large fleet (`/api/metrics/history`). A series without samples
    /// gets no buckets.
    ///
    /// # Errors
    /// [`StoreError::InvalidStep`] if the step is not positive; storage failures.
    pub fn series_aggregates(
        &self,
        org: &str,
        series: &[(&str, &str)],
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Vec<(i64, Aggregate)>>, StoreError> {
        if step_ms <= 0 {
            return Err(StoreError::InvalidStep(step_ms));
        }
        let rolled = marks(&self.txn.open_table(META)?)?;
        let tables = self.tables()?;
        series
            .iter()
            .map(|&(resource, metric)| {
                let id = series_id(&self.txn, org, resource, metric)?;
                let q = AggregateQuery {
                    metric,
                    resources: vec![resource],
                    from_ms,
                    to_ms,
                    step_ms,
                };
                Ok(tables.read(&q, &[id], rolled)?.pop().unwrap_or_default())
            })
            .collect()
    }

    /// The history tables of the view.
    fn tables(&self) -> Result<Tables, StoreError> {
        Ok(Tables {
            samples: self.txn.open_table(HEAD)?,
            chunks: self.txn.open_table(CHUNKS)?,
            minutes: self.txn.open_table(MINUTES)?,
            packed: self.txn.open_table(MINUTES_PACKED)?,
            hours: self.txn.open_table(HOURS)?,
        })
    }

    /// The series id of each (query, resource), `None` for a series without samples.
    fn series_ids(
        &self,
        org: &str,
        queries: &[AggregateQuery<'_>],
    ) -> Result<Vec<Vec<Option<u64>>>, StoreError> {
        let mut ids: Vec<Vec<Option<u64>>> = queries
            .iter()
            .map(|q| vec![None; q.resources.len()])
            .collect();
        // metric -> [(query, resource -> slot)]
        type Slots<'q> = Vec<(usize, HashMap<&'q str, usize>)>;
        let mut wanted: HashMap<&str, Slots<'_>> = HashMap::new();
        for (i, q) in queries.iter().enumerate() {
            let slots = q
                .resources
                .iter()
                .enumerate()
                .map(|(s, r)| (*r, s))
                .collect();
            wanted.entry(q.metric).or_default().push((i, slots));
        }
        if wanted.is_empty() {
            return Ok(ids);
        }
        let table = self.txn.open_table(SERIES)?;
        let (lo, hi) = org_resource_range(org);
        for entry in table.range(lo.as_str()..hi.as_str())? {
            let (name, id) = entry?;
            let name = name.value();
            // `org US resource US metric`; neither the org nor a resource id contains US.
            let Some((resource, metric)) =
                name.get(lo.len()..).and_then(|rest| rest.split_once(SEP))
            else {
                continue;
            };
            let Some(queries) = wanted.get(metric) else {
                continue;
            };
            for (q, slots) in queries {
                if let Some(&slot) = slots.get(resource) {
                    ids[*q][slot] = Some(id.value());
                }
            }
        }
        Ok(ids)
    }
}

/// The history tables of one read transaction.
struct Tables {
    samples: ReadOnlyTable<&'static [u8; 24], &'static [u8]>,
    chunks: ReadOnlyTable<&'static [u8; 16], &'static [u8]>,
    minutes: ReadOnlyTable<&'static [u8; 24], &'static [u8; 32]>,
    packed: ReadOnlyTable<&'static [u8; 24], &'static [u8]>,
    hours: ReadOnlyTable<&'static [u8; 24], &'static [u8]>,
}

impl Tables {
    /// One query; `rolled` are the tiers' watermarks.
    fn read(
        &self,
        q: &AggregateQuery<'_>,
        ids: &[Option<u64>],
        rolled: Option<Marks>,
    ) -> Result<Vec<Vec<(i64, Aggregate)>>, StoreError> {
        // Room for every bucket of the range (bounded), so the lists are not reallocated.
        let room = usize::try_from(q.to_ms.saturating_sub(q.from_ms) / q.step_ms + 2)
            .unwrap_or(0)
            .min(4096);
        let mut buckets = Buckets {
            step: q.step_ms,
            out: ids
                .iter()
                .map(|id| Vec::with_capacity(if id.is_some() { room } else { 0 }))
                .collect(),
        };
        // Sorted by series id, the order of tier rows within a bucket.
        let mut wanted: Vec<(u64, usize)> = ids
            .iter()
            .enumerate()
            .filter_map(|(slot, id)| id.map(|id| (id, slot)))
            .collect();
        wanted.sort_unstable();
        if wanted.is_empty() || q.from_ms > q.to_ms {
            return Ok(buckets.out);
        }
        let (first, end) = whole_minutes(q.from_ms, q.to_ms);
        let Some(marks) = rolled.filter(|_| q.step_ms % BUCKET_MS == 0 && first < end) else {
            self.raw(&wanted, q.from_ms, q.to_ms, &mut buckets)?;
            return Ok(buckets.out);
        };
        let metric = metric_key(q.metric);
        // Each slot's data is added in time order: a partial first minute from raw samples,
        // the rolled-up minutes (whole hours from the hour tier where the step allows, other
        // minutes from the minute tier while it keeps them, else raw), then the minutes not
        // rolled up yet and a partial last minute from raw samples.
        if q.from_ms < first * BUCKET_MS {
            self.raw(&wanted, q.from_ms, first * BUCKET_MS - 1, &mut buckets)?;
        }
        let tier_end = end.min(marks.minutes).max(first);
        let (hours_from, hours_to) = if q.step_ms % HOUR_MS == 0 {
            let lo = first.div_euclid(MINUTES_PER_HOUR)
                + i64::from(first.rem_euclid(MINUTES_PER_HOUR) != 0);
            let hi = tier_end.div_euclid(MINUTES_PER_HOUR).min(marks.hours);
            (lo, hi.max(lo))
        } else {
            (0, 0)
        };
        if hours_from < hours_to {
            let (m0, m1) = (hours_from * MINUTES_PER_HOUR, hours_to * MINUTES_PER_HOUR);
            self.minutes(metric, &wanted, first, m0, &marks, &mut buckets)?;
            let span = (hours_from, hours_to, HOURS_PER_DAY, HOUR_MS);
            grouped_tier(&self.hours, metric, &wanted, span, &mut buckets, |row| {
                Ok(Day::decode(row)?.0)
            })?;
            self.minutes(metric, &wanted, m1, tier_end, &marks, &mut buckets)?;
        } else {
            self.minutes(metric, &wanted, first, tier_end, &marks, &mut buckets)?;
        }
        if tier_end * BUCKET_MS <= q.to_ms {
            self.raw(&wanted, tier_end * BUCKET_MS, q.to_ms, &mut buckets)?;
        }
        Ok(buckets.out)
    }

    /// Rolled-up minutes `from..to`: from raw samples before `kept`, then from the minute
    /// tier: packed rows for the hours `marks` says are packed, minute rows after them.
    fn minutes(
        &self,
        metric: u64,
        wanted: &[(u64, usize)],
        from: i64,
        to: i64,
        marks: &Marks,
        buckets: &mut Buckets,
    ) -> Result<(), StoreError> {
        let to = to.max(from);
        let split = marks.kept.clamp(from, to);
        if from < split {
            self.raw(wanted, from * BUCKET_MS, split * BUCKET_MS - 1, buckets)?;
        }
        // Hour `packed` is packed up to a (metric, series) position: for this metric it may
        // be in packed rows, minute rows or both (each aggregate in one place), so both are read.
        let cursor = marks.pack_cursor;
        let packed_to = marks.packed + i64::from(cursor > Slice { metric, series: 0 });
        let rows_from = marks.packed + i64::from(cursor.metric > metric);
        let packed_to = (packed_to * MINUTES_PER_HOUR).clamp(split, to);
        let rows_from = (rows_from * MINUTES_PER_HOUR).clamp(split, to);
        // Packed minute rows: one per series and hour.
        let span = (split, packed_to, MINUTES_PER_HOUR, BUCKET_MS);
        grouped_tier(&self.packed, metric, wanted, span, buckets, |row| {
            Ok(PackedHour::decode(row)?.0)
        })?;
        tier(
            &self.minutes,
            metric,
            wanted,
            rows_from,
            to,
            BUCKET_MS,
            buckets,
        )
    }

    /// Raw samples of the wanted series with `from <= ts <= to`.
    fn raw(
        &self,
        wanted: &[(u64, usize)],
        from_ms: i64,
        to_ms: i64,
        buckets: &mut Buckets,
    ) -> Result<(), StoreError> {
        for &(series, slot) in wanted {
            let history = History {
                head: &self.samples,
                chunks: &self.chunks,
            };
            history.scan(series, from_ms, to_ms, |ts, v| {
                buckets.add(slot, ts, &Aggregate::of(v));
                ControlFlow::Continue(())
            })?;
        }
        Ok(())
    }
}

/// Calls `f(slot, period, row)` for every stored tier row of the wanted series of `metric` in
/// `periods` (tier keys are period, metric, series); `wanted` is sorted by series id. A few
/// series are read with point lookups; more with one range read per period, merged with
/// `wanted`.
fn tier_rows<V: redb::Value + 'static>(
    table: &ReadOnlyTable<&'static [u8; 24], V>,
    metric: u64,
    wanted: &[(u64, usize)],
    periods: std::ops::RangeInclusive<i64>,
    mut f: impl FnMut(usize, i64, V::SelfType<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if wanted.len() <= POINT_READS_MAX {
        for &(series, slot) in wanted {
            for p in periods.clone() {
                if let Some(v) = table.get(&tier_key(p, metric, series))? {
                    f(slot, p, v.value())?;
                }
            }
        }
        return Ok(());
    }
    let (first, last) = (wanted[0].0, wanted[wanted.len() - 1].0);
    for p in periods {
        let lo = tier_key(p, metric, first);
        let hi = tier_key(p, metric, last);
        // Rows and wanted series are both sorted by series id: merge them.
        let mut next = wanted.iter().peekable();
        for entry in table.range::<&[u8; 24]>(&lo..=&hi)? {
            let (k, v) = entry?;
            let (_, _, series) = parse_tier_key(k.value());
            while next.next_if(|w| w.0 < series).is_some() {}
            let Some(&&(id, slot)) = next.peek() else {
                break;
            };
            if id == series {
                f(slot, p, v.value())?;
            }
        }
    }
    Ok(())
}

/// Tier rows of buckets `from..to` (each `width` ms) of the wanted series of `metric`;
/// `wanted` is sorted by series id.
fn tier(
    table: &ReadOnlyTable<&'static [u8; 24], &'static [u8; 32]>,
    metric: u64,
    wanted: &[(u64, usize)],
    from: i64,
    to: i64,
    width: i64,
    buckets: &mut Buckets,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    tier_rows(table, metric, wanted, from..=to - 1, |slot, b, row| {
        buckets.add(slot, b * width, &Aggregate::decode(row));
        Ok(())
    })
}

/// Buckets `from..to` of the wanted series of `metric` from a tier whose rows each hold
/// `per_row` consecutive buckets of `width_ms` (`span` = (from, to, per_row, width_ms));
/// `decode` gives a row's optional aggregate per bucket: packed minute rows (an hour of
/// minutes) and hour-tier rows (a day of hours); `wanted` is sorted by series id.
fn grouped_tier<R: IntoIterator<Item = Option<Aggregate>>>(
    table: &ReadOnlyTable<&'static [u8; 24], &'static [u8]>,
    metric: u64,
    wanted: &[(u64, usize)],
    (from, to, per_row, width_ms): (i64, i64, i64, i64),
    buckets: &mut Buckets,
    decode: impl Fn(&[u8]) -> Result<R, StoreError>,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let rows = from.div_euclid(per_row)..=(to - 1).div_euclid(per_row);
    tier_rows(table, metric, wanted, rows, |slot, r, row| {
        for (b, a) in (r * per_row..).zip(decode(row)?) {
            if let Some(a) = a
                && (from..to).contains(&b)
            {
                buckets.add(slot, b * width_ms, &a);
            }
        }
        Ok(())
    })
}
