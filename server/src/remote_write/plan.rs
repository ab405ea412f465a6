//! The pure parts of the remote-write sink: the four protobuf messages of remote-write 1.0,
//! the labels of a Warden series, the snappy-compressed request body, what an answer means,
//! the retry schedule and a receiver's `Retry-After` (`now` passed in).

use crate::store::{OutboxBatch, OutboxSeries};
use crate::webhooks::plan::backoff;
use std::time::Duration;
use warden_shared::metric;

/// `prometheus.WriteRequest` (remote-write 1.0; field 3, metadata, is not sent).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples ascending by time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The labels Warden adds to every series: organisation, resource id and type, agent.
pub const ORG: &str = "org";
/// Resource id label (`<type>:<name>`).
pub const RESOURCE_ID: &str = "resource_id";
/// Resource type label.
pub const RESOURCE_TYPE: &str = "resource_type";
/// Label of the agent that last reported the resource.
pub const AGENT: &str = "agent";
/// Prefix of a metric's own label whose name Warden's labels already use.
pub const EXPORTED: &str = "exported_";

/// The labels of `s`, sorted by name: `__name__` (the metric without its labels), the metric's
/// own labels (from `name{key="value",...}`; one that clashes with Warden's is renamed
/// `exported_<key>`), `org`, `resource_id`, `resource_type` and `agent`. Names are made valid
/// Prometheus names; labels with empty values are left out.
pub fn labels(s: &OutboxSeries) -> Vec<Label> {
    let ours = [
        ("__name__", prom_name(metric::base(&s.metric), true)),
        (ORG, s.org.clone()),
        (RESOURCE_ID, s.resource_id.clone()),
        (RESOURCE_TYPE, s.resource_kind.clone()),
        (AGENT, s.agent_id.clone()),
    ];
    let mut out: Vec<Label> = ours
        .iter()
        .map(|(name, value)| Label {
            name: (*name).to_owned(),
            value: value.clone(),
        })
        .collect();
    for (name, value) in metric_labels(&s.metric) {
        let mut name = prom_name(&name, false);
        if ours.iter().any(|(n, _)| *n == name) {
            name.insert_str(0, EXPORTED);
        }
        out.push(Label { name, value });
    }
    out.retain(|l| !l.value.is_empty());
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// The labels of a stored metric name `name{key="value",...}`, unescaped as
/// [`metric::labelled`] escapes them; none for a plain name. Parsing stops at the first
/// malformed part.
pub fn metric_labels(name: &str) -> Vec<(String, String)> {
    let Some((_, rest)) = name.split_once('{') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != '}') {
            key.push(c);
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return out,
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return out,
                },
                Some(c) => value.push(c),
            }
        }
        out.push((key.trim().to_owned(), value));
    }
}

/// `name` as a valid Prometheus metric (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or label name (no `:`):
/// other characters become `_`, a leading digit gets a `_` before it.
pub fn prom_name(name: &str, metric_name: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (metric_name && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The `WriteRequest` of a batch: one time series per stored series.
pub fn request(batch: &OutboxBatch) -> WriteRequest {
    WriteRequest {
        timeseries: batch
            .series
            .iter()
            .map(|s| TimeSeries {
                labels: labels(s),
                samples: s
                    .samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
            })
            .collect(),
    }
}

/// The request body: the protobuf-encoded request, snappy block-compressed.
///
/// # Errors
/// Snappy refuses inputs over ~4 GiB, far beyond any batch.
pub fn body(req: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&prost::Message::encode_to_vec(req))
}

/// What the receiver's answer means for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: stored; ack the rows.
    Stored,
    /// 429, 5xx (or a network error): try the same batch again later.
    Retry,
    /// Any other status: the receiver will never take this batch; drop it as rejected.
    Rejected,
}

/// The verdict of HTTP status `status`.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Stored,
        429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Rejected,
    }
}

/// The parts of one batch still to send. A receiver may refuse a whole request for one bad
/// sample (Prometheus answers 400 to an out-of-order or too old sample and stores none of the
/// request), so a part refused with 400 is sent again as two halves, down to single series:
/// only the series it refuses are dropped, at the cost of about two requests per bad series
/// and halving.
#[derive(Debug)]
pub struct Bisect {
    parts: Vec<Vec<TimeSeries>>,
    /// Samples the receiver stored.
    pub sent: u64,
    /// Samples the receiver refused for good.
    pub rejected: u64,
}

/// The status that splits a refused part.
pub const SPLIT_STATUS: u16 = 400;

impl Bisect {
    /// All of `req` as the first part.
    pub fn new(req: WriteRequest) -> Self {
        Self {
            parts: vec![req.timeseries],
            sent: 0,
            rejected: 0,
        }
    }

    /// The next part to send, `None` when every sample is stored or refused.
    pub fn next_part(&mut self) -> Option<WriteRequest> {
        self.parts
            .pop()
            .map(|timeseries| WriteRequest { timeseries })
    }

    /// Records the receiver's answer to `part` (the last [`Bisect::next_part`]): stored, or
    /// refused with `status`. Not for [`Verdict::Retry`]: the caller retries the whole batch.
    pub fn record(&mut self, part: WriteRequest, verdict: Verdict, status: u16) {
        let samples: u64 = part.timeseries.iter().map(|t| t.samples.len() as u64).sum();
        match verdict {
            Verdict::Stored => self.sent += samples,
            Verdict::Rejected if status == SPLIT_STATUS && part.timeseries.len() > 1 => {
                let mut first = part.timeseries;
                let second = first.split_off(first.len() / 2);
                // A stack: the first half goes out next.
                self.parts.push(second);
                self.parts.push(first);
            }
            Verdict::Rejected | Verdict::Retry => self.rejected += samples,
        }
    }
}

/// The longest wait a receiver's `Retry-After` can impose: a longer (or mistaken) one would
/// stall shipping for hours while the backlog grows.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long a `Retry-After` header value asks the sender to wait at `now_ms` (ms since the
/// epoch): delay-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`), capped at
/// [`MAX_RETRY_AFTER`]; a date in the past is no wait. `None` when the value is neither.
pub fn retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many for a u64 is simply very long.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
            .ok()?;
        let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
        Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// When to try a failing batch again: [`backoff`] (as webhooks: `base * 2^(n-1)` capped at
/// `max`, jittered into its upper half) after each consecutive failure, or later when the
/// receiver asked for a longer wait (`Retry-After`).
#[derive(Debug, Clone)]
pub struct Schedule {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Schedule {
    /// A schedule with no failures yet.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: 0,
        }
    }

    /// Records a failure at `now_ms`; returns when to try again (ms since the epoch): after
    /// the backoff, and not before `at_least` (the receiver's [`retry_after`]) has passed.
    /// `jitter` is in `[0, 1)`.
    pub fn failed(&mut self, now_ms: i64, jitter: f64, at_least: Option<Duration>) -> i64 {
        self.failures = self.failures.saturating_add(1);
        let d =
            backoff(self.base, self.max, self.failures, jitter).max(at_least.unwrap_or_default());
        now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Consecutive failures so far.
    pub const fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a success: the next failure starts again at `base`.
    pub const fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn series(metric: &str, samples: Vec<(i64, f64)>) -> OutboxSeries {
        OutboxSeries {
            org: "acme".into(),
            resource_id: "node:pve1".into(),
            resource_kind: "node".into(),
            agent_id: "agt_1".into(),
            metric: metric.into(),
            samples,
        }
    }

    #[test]
    fn request_round_trips_through_snappy_and_protobuf() {
        let fs = metric::labelled(metric::FS_USED_PCT, "mount", "/var \"x\"\\");
        let batch = OutboxBatch {
            last_key: 7,
            samples: 3,
            series: vec![
                series(metric::CPU_PCT, vec![(1_000, 1.5), (2_000, -0.0)]),
                series(&fs, vec![(1_500, 1e300)]),
            ],
        };
        let req = request(&batch);
        let bytes = body(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&bytes).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back, req);
        let names = |ts: &TimeSeries| -> Vec<(String, String)> {
            ts.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        };
        let l = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            names(&back.timeseries[0]),
            vec![
                l("__name__", metric::CPU_PCT),
                l(AGENT, "agt_1"),
                l(ORG, "acme"),
                l(RESOURCE_ID, "node:pve1"),
                l(RESOURCE_TYPE, "node"),
            ]
        );
        assert_eq!(
            names(&back.timeseries[1]),
            vec![
                l("__name__", metric::FS_USED_PCT),
                l(AGENT, "agt_1"),
                l("mount", "/var \"x\"\\"),
                l(ORG, "acme"),
                l(RESOURCE_ID, "node:pve1"),
                l(RESOURCE_TYPE, "node"),
            ]
        );
        let s = &back.timeseries[0].samples;
        assert_eq!((s[0].timestamp, s[0].value), (1_000, 1.5));
        // proto3 does not encode a zero double, so -0.0 arrives as 0.0 (as from Prometheus).
        assert_eq!(s[1].value, 0.0);
        assert_eq!(back.timeseries[1].samples[0].value, 1e300);
    }

    #[test]
    fn metric_labels_parse_what_labelled_builds() {
        let one = metric::labelled(metric::JOB_LAST_OK, "job", "a\"b\\c\nd,e}f");
        assert_eq!(
            metric_labels(&one),
            vec![("job".to_owned(), "a\"b\\c\nd,e}f".to_owned())]
        );
        assert_eq!(
            metric_labels("m{a=\"1\", b=\"2\"}"),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert!(metric_labels(metric::CPU_PCT).is_empty());
        assert_eq!(
            metric_labels("m{a=\"1\",b=oops}"),
            vec![("a".into(), "1".into())]
        );
    }

    #[test]
    fn clashing_and_invalid_names_are_fixed() {
        let s = OutboxSeries {
            agent_id: String::new(),
            ..series("disk.io-rate{org=\"x\",9lives=\"y\",empty=\"\"}", vec![])
        };
        let got: Vec<(String, String)> =
            labels(&s).into_iter().map(|l| (l.name, l.value)).collect();
        let l = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            got,
            vec![
                l("_9lives", "y"),
                l("__name__", "disk_io_rate"),
                l("exported_org", "x"),
                l(ORG, "acme"),
                l(RESOURCE_ID, "node:pve1"),
                l(RESOURCE_TYPE, "node"),
            ]
        );
    }

    #[test]
    fn a_refused_batch_is_halved_down_to_the_series_refused() {
        let ts = |i: i64, n: usize| TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: format!("m{i}"),
            }],
            samples: (0..n)
                .map(|k| Sample {
                    value: i as f64,
                    timestamp: k as i64,
                })
                .collect(),
        };
        // Ten series of 3 samples; the receiver refuses any request holding series 3 or 7.
        let req = WriteRequest {
            timeseries: (0..10).map(|i| ts(i, 3)).collect(),
        };
        let bad = |r: &WriteRequest| {
            r.timeseries
                .iter()
                .any(|t| t.labels[0].value == "m3" || t.labels[0].value == "m7")
        };
        let mut b = Bisect::new(req);
        let (mut requests, mut stored) = (0, Vec::new());
        while let Some(part) = b.next_part() {
            requests += 1;
            if bad(&part) {
                b.record(part, Verdict::Rejected, SPLIT_STATUS);
            } else {
                stored.extend(part.timeseries.iter().map(|t| t.labels[0].value.clone()));
                b.record(part, Verdict::Stored, 200);
            }
        }
        assert_eq!((b.sent, b.rejected), (24, 6));
        stored.sort();
        let want: Vec<String> = [0, 1, 2, 4, 5, 6, 8, 9]
            .iter()
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(
            stored, want,
            "each good series once, in its own order of halves"
        );
        assert!(requests <= 2 * 2 * 4 + 1, "{requests} requests");
        // Any other refusal drops the part whole.
        let mut b = Bisect::new(WriteRequest {
            timeseries: (0..4).map(|i| ts(i, 2)).collect(),
        });
        let part = b.next_part().unwrap();
        b.record(part, Verdict::Rejected, 413);
        assert!(b.next_part().is_none());
        assert_eq!((b.sent, b.rejected), (0, 8));
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(200), Verdict::Stored);
        assert_eq!(verdict(204), Verdict::Stored);
        assert_eq!(verdict(429), Verdict::Retry);
        assert_eq!(verdict(503), Verdict::Retry);
        assert_eq!(verdict(400), Verdict::Rejected);
        assert_eq!(verdict(404), Verdict::Rejected);
    }

    #[test]
    fn schedule_backs_off_caps_and_resets() {
        let mut s = Schedule::new(Duration::from_millis(100), Duration::from_secs(2));
        let now = 1_000_000;
        // Jitter 1.0 (clamped to the top): the full delay.
        let delays: Vec<i64> = (0..7).map(|_| s.failed(now, 1.0, None) - now).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(s.failures(), 7);
        // Jitter 0: half the delay, never less.
        s.succeeded();
        assert_eq!(s.failed(now, 0.0, None) - now, 50);
        assert_eq!(s.failed(now, 0.5, None) - now, 150);
        // A clock far in the future does not overflow.
        assert_eq!(s.failed(i64::MAX - 1, 0.0, None), i64::MAX);
        for _ in 0..10 {
            s.failed(now, 0.0, None);
        }
        // At the cap, jitter keeps every delay in its upper half.
        for _ in 0..100 {
            let d = s.failed(now, rand::random::<f64>(), None) - now;
            assert!((1000..=2000).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        // 2015-10-21T07:28:00Z.
        let now = 1_445_412_480_000;
        let s = Duration::from_secs;
        assert_eq!(retry_after("120", now), Some(s(120)));
        assert_eq!(retry_after(" 0 ", now), Some(s(0)));
        assert_eq!(retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(s(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now + 250),
            Some(Duration::ZERO),
            "a date in the past"
        );
        assert_eq!(
            retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        for bad in ["", "-5", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_sets_a_floor_under_the_backoff() {
        let mut s = Schedule::new(Duration::from_millis(100), Duration::from_secs(2));
        let now = 1_000_000;
        assert_eq!(
            s.failed(now, 1.0, Some(Duration::from_secs(3))) - now,
            3_000
        );
        // Shorter than the backoff: the backoff wins.
        assert_eq!(
            s.failed(now, 1.0, Some(Duration::from_millis(10))) - now,
            200
        );
        assert_eq!(s.failures(), 2);
    }
}
