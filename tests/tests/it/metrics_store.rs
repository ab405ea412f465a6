//! The chunk store under the real server: kill -9 while it seals a backlog into chunks and
//! while retention deletes expired history, then check that every acknowledged sample that
//! has not expired is stored exactly once and everything expired is gone.

use std::time::Duration;
use warden_server::model::IngestItem;
use warden_server::store::Store;
use warden_shared::ResourceId;
use warden_shared::telemetry::{Resource, Sample, TelemetryBatch};
use warden_tests::{ServerProc, now_ms};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const RESOURCES: usize = 10;
const METRICS: usize = 10;
const STEP_MS: i64 = 30_000;

fn metric(m: usize) -> String {
    format!("test.m{m}")
}

fn value(r: usize, m: usize, ts: i64) -> f64 {
    ((ts / STEP_MS) % 1000 + (r * METRICS + m) as i64) as f64 / 4.0
}

/// Stores `[from, to)` of every series at [`STEP_MS`] through the store library, an hour
/// per batch, as acknowledged batches.
fn fill(store: &Store, seq: &mut u64, from: i64, to: i64, now: i64) {
    let mut start = from;
    while start < to {
        let end = (start + HOUR).min(to);
        let mut samples = Vec::new();
        for r in 0..RESOURCES {
            for m in 0..METRICS {
                let mut ts = start;
                while ts < end {
                    samples.push(Sample {
                        resource_id: ResourceId::new(format!("node:k{r}")).unwrap(),
                        metric: metric(m),
                        ts_ms: ts,
                        value: value(r, m, ts),
                    });
                    ts += STEP_MS;
                }
            }
        }
        *seq += 1;
        let batch = TelemetryBatch {
            seq: *seq,
            collector: "host".into(),
            collected_at_ms: end,
            resources: (0..RESOURCES)
                .map(|r| Resource {
                    id: ResourceId::new(format!("node:k{r}")).unwrap(),
                    name: format!("k{r}"),
                    parent: None,
                    status: "online".into(),
                    attrs: Vec::new(),
                })
                .collect(),
            samples,
            ..Default::default()
        };
        let item = IngestItem {
            agent_id: "history".into(),
            org_id: "default".into(),
            batch,
            provenance: Vec::new(),
        };
        assert!(store.ingest(&[item], now).unwrap()[0].stored);
        start = end;
    }
}

/// Waits until the current run's log holds one of `any`; returns the log.
fn wait_for_log(server: &ServerProc, any: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
        if any.iter().any(|s| log.contains(s)) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no upkeep progress: {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill9_during_sealing_and_retention_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    std::fs::create_dir_all(&dir).unwrap();
    let now = now_ms();
    let started = std::time::Instant::now();
    // Two blocks: one that retention (7 days by default) deletes, one to seal. Neither is
    // within an hour of the retention horizon or of the seal grace, so the wall clock moving
    // during the test cannot change what is expected.
    let old = (now - 7 * DAY - 4 * HOUR, now - 7 * DAY - 2 * HOUR);
    let recent = (now - 6 * HOUR, now - 2 * HOUR);
    {
        let store = Store::open(&dir.join("warden.redb")).unwrap();
        let mut seq = 0;
        fill(&store, &mut seq, old.0, old.1, now);
        fill(&store, &mut seq, recent.0, recent.1, now);
        let usage = store.usage().unwrap();
        assert_eq!(usage.chunks.entries, 0);
        // Packed head rows: one per ingest commit, minute and group of 64 series.
        assert!(usage.head.entries > 500, "{usage:?}");
    }
    eprintln!("filled in {:?}", std::time::Instant::now() - started);

    // Kill the server as soon as each run has committed a seal or a retention step, until
    // a run finds nothing left to do.
    let mut server = ServerProc::start(&dir, &[]);
    let mut kills = 0;
    loop {
        let log = wait_for_log(
            &server,
            &[
                "chunks written",
                "expired history deleted",
                "store upkeep idle",
            ],
        );
        if log.contains("store upkeep idle") {
            break;
        }
        server.restart();
        kills += 1;
        assert!(kills < 50, "upkeep makes no progress");
    }
    server.terminate();
    eprintln!(
        "caught up after {:?} and {kills} kills",
        std::time::Instant::now() - started
    );
    assert!(
        kills >= 3,
        "the upkeep was interrupted while it had work: {kills} kills"
    );

    let store = Store::open(&dir.join("warden.redb")).unwrap();
    let usage = store.usage().unwrap();
    assert_eq!(
        usage.head.entries, 0,
        "everything old enough is sealed: {usage:?}"
    );
    assert!(
        usage.chunks.entries >= (RESOURCES * METRICS * 4) as u64,
        "{usage:?}"
    );
    for r in 0..RESOURCES {
        for m in 0..METRICS {
            let got = store
                .history(
                    "default",
                    &format!("node:k{r}"),
                    &metric(m),
                    i64::MIN,
                    i64::MAX,
                    None,
                    usize::MAX,
                )
                .unwrap();
            let want: Vec<(i64, f64)> = (0..)
                .map(|i| recent.0 + i * STEP_MS)
                .take_while(|ts| *ts < recent.1)
                .map(|ts| (ts, value(r, m, ts)))
                .collect();
            assert_eq!(got, want, "node:k{r} {}", metric(m));
        }
    }
}
