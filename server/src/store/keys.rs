//! Table definitions, key encodings and the JSON record codec. The layout is described in the
//! module header of `store/mod.rs`; change both together and bump `SCHEMA_VERSION`.

use super::StoreError;
use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Schema version written to [`META`] under [`SCHEMA_KEY`].
pub(super) const SCHEMA_VERSION: u64 = 2;
/// The schema before the packed head (`head.rs`); such a file is converted when opened.
pub(super) const SCHEMA_PER_SAMPLE_HEAD: u64 = 1;
/// Key of the schema version in [`META`].
pub(super) const SCHEMA_KEY: &str = "schema_version";
/// Key in [`META`] of the time of the last write probe after a reopen (`Store::recover`).
pub(super) const PROBE_KEY: &str = "recovered_at_ms";

/// Separator between the parts of composite string keys. Org ids are slugs and resource ids
/// have no control characters, so it cannot occur inside either.
pub(super) const SEP: char = '\u{1f}';

/// Store metadata: `schema_version`.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Join tokens by token id -> JSON [`super::TokenRecord`].
pub(super) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// Agents by agent id -> JSON [`super::AgentRecord`].
pub(super) const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
/// Highest stored batch seq by agent id.
pub(super) const AGENT_SEQ: TableDefinition<&str, u64> = TableDefinition::new("agent_seq");
/// Resources by `org US resource_id` -> JSON [`super::ResourceRecord`].
pub(super) const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
/// Series dictionary: [`series_name`] -> series id (allocated from [`NEXT_SERIES_KEY`]).
pub(super) const SERIES: TableDefinition<&str, u64> = TableDefinition::new("series");
/// The head of schema 1, one row a sample: `bucket | series id | ts` -> value. Only read to
/// convert it (`head::convert_legacy`).
pub(super) const LEGACY_SAMPLES: TableDefinition<&[u8; 24], f64> = TableDefinition::new("samples");

/// Sealed chunks: one series' samples of one [`WINDOW_MS`] window, compressed
/// (`chunk.rs`), by [`chunk_key`] -> chunk bytes.
pub(super) const CHUNKS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("chunks");

/// Minute tier: per-series aggregates of each minute, by [`tier_key`] -> [`super::Aggregate`]
/// bytes ([`super::Aggregate::encode`]).
pub(super) const MINUTES: TableDefinition<&[u8; 24], &[u8; 32]> =
    TableDefinition::new("samples_1m");
/// Packed minute tier: the minute aggregates of one series in one final hour, compressed
/// (`pack.rs`), by [`tier_key`] with the hour -> [`super::pack::PackedHour`] bytes. A minute
/// aggregate is in [`MINUTES`] or here, never both (which one: [`MINUTES_PACKED_KEY`]).
pub(super) const MINUTES_PACKED: TableDefinition<&[u8; 24], &[u8]> =
    TableDefinition::new("samples_1m_packed");
/// Hour tier: per-series aggregates of each hour, rolled up from [`MINUTES`], one row per
/// series and UTC day: [`tier_key`] with the day -> [`super::rollup::Day`] bytes.
pub(super) const HOURS: TableDefinition<&[u8; 24], &[u8]> = TableDefinition::new("samples_1h");

/// Key of the next unallocated series id in [`META`] (absent = 1).
pub(super) const NEXT_SERIES_KEY: &str = "next_series_id";
/// Key in [`META`] of the first minute (a [`bucket_of`] value, sign bit flipped) not yet rolled
/// into [`MINUTES`]; absent until the first roll-up.
pub(super) const MINUTES_ROLLED_KEY: &str = "minutes_rolled_until";
/// Key in [`META`] of the first head group (`head.rs`) of the minute at [`MINUTES_ROLLED_KEY`]
/// not rolled up yet (a minute is rolled up in slices of groups); absent = 0.
pub(super) const MINUTES_ROLL_GROUP_KEY: &str = "minutes_roll_group";
/// Key in [`META`] of the first hour (minute bucket / 60, sign bit flipped) not yet rolled into
/// [`HOURS`]; absent until the first roll-up.
pub(super) const HOURS_ROLLED_KEY: &str = "hours_rolled_until";
/// Keys in [`META`] of the first (metric key, series id) of the hour at [`HOURS_ROLLED_KEY`]
/// not rolled up yet (an hour is rolled up in slices); absent = 0.
pub(super) const HOURS_ROLL_METRIC_KEY: &str = "hours_roll_metric";
pub(super) const HOURS_ROLL_SERIES_KEY: &str = "hours_roll_series";
/// Key in [`META`] of the first minute (sign bit flipped) whose rows [`MINUTES`] still holds;
/// older minute rows are deleted. Absent until the first roll-up.
pub(super) const MINUTES_KEPT_KEY: &str = "minutes_kept_from";
/// Key in [`META`] of the first hour (minute bucket / 60, sign bit flipped) whose minute
/// aggregates are not all packed into [`MINUTES_PACKED`]; absent until the first pack.
pub(super) const MINUTES_PACKED_KEY: &str = "minutes_packed_until";
/// Keys in [`META`] of the first (metric key, series id) of the hour at [`MINUTES_PACKED_KEY`]
/// not packed yet (an hour is packed in slices); absent = 0.
pub(super) const PACK_CURSOR_KEY: &str = "minutes_pack_cursor";
pub(super) const PACK_SERIES_KEY: &str = "minutes_pack_series";

/// Key in [`META`] of the first window (a [`window_of`] value, sign bit flipped) not wholly
/// sealed into [`CHUNKS`]; absent until the first seal.
pub(super) const SEALED_KEY: &str = "sealed_until";
/// Key in [`META`] of the first series id of the window at [`SEALED_KEY`] not sealed yet
/// (a window is sealed in slices of series ids); absent = 0.
pub(super) const SEAL_CURSOR_KEY: &str = "seal_cursor";

/// Width of a chunk window: one chunk holds one series' samples of one aligned hour.
pub(super) const WINDOW_MS: i64 = 3_600_000;

/// Width of a sample time bucket. Samples are clustered by bucket first, so one commit's writes
/// land in the few pages of the current bucket instead of at the tail of every series.
pub(super) const BUCKET_MS: i64 = 60_000;
/// Minute buckets in an hour bucket.
pub(super) const MINUTES_PER_HOUR: i64 = 60;
/// Hours in a row of the hour tier (a UTC day).
pub(super) const HOURS_PER_DAY: i64 = 24;

/// `org US resource_id`: the key of a resource.
pub(super) fn resource_key(org: &str, id: &str) -> String {
    debug_assert!(!org.contains(SEP), "org ids are slugs");
    let mut k = String::with_capacity(org.len() + 1 + id.len());
    k.push_str(org);
    k.push(SEP);
    k.push_str(id);
    k
}

/// The range of [`RESOURCES`] keys of one organisation: `[org US, org US+1)`.
pub(super) fn org_resource_range(org: &str) -> (String, String) {
    let mut lo = String::with_capacity(org.len() + 1);
    lo.push_str(org);
    let mut hi = lo.clone();
    lo.push(SEP);
    hi.push('\u{20}');
    (lo, hi)
}

/// Writes `org US resource US metric`, the name of a series, into `buf` (cleared first).
pub(super) fn series_name(buf: &mut String, org: &str, resource: &str, metric: &str) {
    buf.clear();
    buf.push_str(org);
    buf.push(SEP);
    buf.push_str(resource);
    buf.push(SEP);
    buf.push_str(metric);
}

/// The bucket of a sample time.
pub(super) fn bucket_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(BUCKET_MS)
}

/// Splits a schema-1 sample key into (bucket, series id, ts).
pub(super) fn parse_sample_key(k: &[u8; 24]) -> (i64, u64, i64) {
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&k[i..i + 8]);
        u64::from_be_bytes(w)
    };
    (unflip(word(0)), word(8), unflip(word(16)))
}

/// The window of a sample time.
pub(super) fn window_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(WINDOW_MS)
}

/// The key of a chunk: `window | series id`, each 8 bytes big-endian, the window's sign bit
/// flipped. Time first, like the tiers: a seal appends one block at the end of the table and
/// retention deletes from its start; reading one series costs one lookup per window.
pub(super) fn chunk_key(window: i64, series: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&flip(window).to_be_bytes());
    k[8..].copy_from_slice(&series.to_be_bytes());
    k
}

/// Splits a chunk key into (window, series id).
pub(super) fn parse_chunk_key(k: &[u8; 16]) -> (i64, u64) {
    let mut w = [0; 8];
    let mut s = [0; 8];
    w.copy_from_slice(&k[..8]);
    s.copy_from_slice(&k[8..]);
    (unflip(u64::from_be_bytes(w)), u64::from_be_bytes(s))
}

/// The key of a tier row: `bucket | metric key | series id`, each 8 bytes big-endian, the
/// bucket's sign bit flipped. `bucket` is a minute ([`bucket_of`]) or a day (hour / 24).
/// Rows of one bucket and metric are contiguous, so one range read returns a metric of every
/// series of that bucket.
pub(super) fn tier_key(bucket: i64, metric: u64, series: u64) -> [u8; 24] {
    let mut k = [0; 24];
    k[..8].copy_from_slice(&flip(bucket).to_be_bytes());
    k[8..16].copy_from_slice(&metric.to_be_bytes());
    k[16..].copy_from_slice(&series.to_be_bytes());
    k
}

/// Splits a tier key into (bucket, metric key, series id).
pub(super) fn parse_tier_key(k: &[u8; 24]) -> (i64, u64, u64) {
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&k[i..i + 8]);
        u64::from_be_bytes(w)
    };
    (unflip(word(0)), word(8), word(16))
}

/// The metric key of a metric name (labels included): 64-bit FNV-1a of its bytes. It is
/// stored in tier keys, so it must never change. Two names with the same key only share key
/// ranges; readers always match series ids too.
pub(super) fn metric_key(metric: &str) -> u64 {
    metric.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The metric part of a [`series_name`].
pub(super) fn metric_of_series(name: &str) -> &str {
    name.rsplit(SEP).next().unwrap_or(name)
}

/// A bucket number as stored in [`META`] (sign bit flipped, like keys).
pub(super) fn bucket_to_meta(bucket: i64) -> u64 {
    flip(bucket)
}

/// The inverse of [`bucket_to_meta`].
pub(super) fn bucket_from_meta(v: u64) -> i64 {
    unflip(v)
}

fn flip(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

fn unflip(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

/// Encodes a record as JSON.
pub(super) fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Encode { what, source })
}

/// Decodes a JSON record; `what` and `id` go into the error.
pub(super) fn decode<T: DeserializeOwned>(
    what: &'static str,
    id: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what} {id:?}: {e}")))
}
