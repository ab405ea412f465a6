//! Unit tests of the store against a real redb file in a temp directory.

use super::*;
use crate::model::{
    AgentRecord, IngestItem, IngestOutcome, LatestSample, TokenRecord, TokenRefusal,
};
use std::collections::BTreeMap;
use warden_shared::ids::ResourceId;
use warden_shared::metric;
use warden_shared::resource::ResourceKind;
use warden_shared::telemetry::{
    CollectorHealth, HealthStatus, Provenance, Resource, Sample, TelemetryBatch, Value,
};

const ORG: &str = "default";
const NOW: i64 = 1_800_000_000_000;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("warden.redb")).unwrap();
    (dir, store)
}

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        id: id.to_owned(),
        org_id: ORG.to_owned(),
        hostname: "pve1".to_owned(),
        version: "0.1.0".to_owned(),
        enrolled_at_ms: NOW,
        revoked_at_ms: None,
        cert_serial: "01ab".to_owned(),
        cert_not_after_unix: NOW / 1000 + 86_400,
        last_seen_ms: None,
        protocol: None,
        dropped_samples: 0,
        collectors: BTreeMap::new(),
        identity_conflict: None,
    }
}

fn token(id: &str, secret: u8) -> TokenRecord {
    TokenRecord {
        id: id.to_owned(),
        org_id: ORG.to_owned(),
        secret_hash: [secret; 32],
        created_at_ms: NOW,
        expires_unix: NOW / 1000 + 3600,
        used_at_ms: None,
        used_by: None,
        revoked_at_ms: None,
    }
}

fn rid(s: &str) -> ResourceId {
    ResourceId::new(s).unwrap()
}

fn sample(res: &str, metric: &str, ts_ms: i64, value: f64) -> Sample {
    Sample {
        resource_id: rid(res),
        metric: metric.to_owned(),
        ts_ms,
        value,
    }
}

/// A batch of `n` cpu samples of `node:pve1`, one per second starting at `seq * 1000 * n`.
fn batch(seq: u64, n: i64) -> TelemetryBatch {
    let base = seq as i64 * 1000 * n;
    TelemetryBatch {
        seq,
        collector: "host".to_owned(),
        collected_at_ms: base + n * 1000,
        resources: vec![Resource {
            id: rid("node:pve1"),
            name: "pve1".to_owned(),
            parent: None,
            status: "online".to_owned(),
            attrs: vec![("os".to_owned(), Value::from("debian"))],
        }],
        samples: (0..n)
            .map(|i| sample("node:pve1", metric::CPU_PCT, base + i * 1000, i as f64))
            .collect(),
        health: Some(CollectorHealth {
            collector: "host".to_owned(),
            status: HealthStatus::Ok,
            message: None,
            last_success_ms: Some(base),
            duration_ms: 12,
        }),
        dropped_samples: seq,
    }
}

fn item(agent_id: &str, batch: TelemetryBatch) -> IngestItem {
    IngestItem {
        agent_id: agent_id.to_owned(),
        org_id: ORG.to_owned(),
        batch,
        provenance: Vec::new(),
    }
}

/// `item` with provenance, as a protocol 1.2 agent sends it.
fn sourced(agent_id: &str, batch: TelemetryBatch, provenance: &[Provenance]) -> IngestItem {
    IngestItem {
        provenance: provenance.to_vec(),
        ..item(agent_id, batch)
    }
}

fn provenance_of(store: &Store, res: &str, metric: &str) -> Option<(String, String)> {
    store
        .provenance(ORG, res, metric)
        .unwrap()
        .map(|p| (p.source, p.method))
}

fn pair(source: &str, method: &str) -> Option<(String, String)> {
    Some((source.to_owned(), method.to_owned()))
}

#[test]
fn provenance_follows_the_latest_sample_exactly_once() {
    let (_dir, store) = open();
    const CPU: Provenance =
        Provenance::new(ResourceKind::Node, metric::CPU_PCT, "host", "/proc/stat");
    const FS: Provenance =
        Provenance::new(ResourceKind::Node, metric::FS_USED_PCT, "host", "statvfs");
    // Entries for a metric the batch lacks, or for another resource kind, describe nothing.
    const LOAD: Provenance = Provenance::new(ResourceKind::Node, metric::LOAD1, "host", "loadavg");
    const VM_CPU: Provenance = Provenance::new(ResourceKind::Vm, metric::CPU_PCT, "proxmox", "api");
    let mut b1 = batch(1, 2);
    b1.samples.push(sample(
        "node:pve1",
        &metric::labelled(metric::FS_USED_PCT, "mount", "/"),
        1_000,
        5.0,
    ));
    b1.samples
        .push(sample("vm:c/100", metric::MEM_USED_BYTES, 1_000, 5.0));
    store
        .ingest(&[sourced("a1", b1, &[CPU, FS, LOAD, VM_CPU])], NOW)
        .unwrap();
    assert_eq!(
        provenance_of(&store, "node:pve1", metric::CPU_PCT),
        pair("host", "/proc/stat")
    );
    assert_eq!(
        provenance_of(
            &store,
            "node:pve1",
            &metric::labelled(metric::FS_USED_PCT, "mount", "/")
        ),
        pair("host", "statvfs"),
        "labels do not matter"
    );
    let node = store.get_resource(ORG, "node:pve1").unwrap().unwrap();
    assert_eq!(
        node.provenance.keys().collect::<Vec<_>>(),
        [metric::CPU_PCT, metric::FS_USED_PCT]
    );
    assert_eq!(
        provenance_of(&store, "vm:c/100", metric::MEM_USED_BYTES),
        None
    );
    assert_eq!(provenance_of(&store, "vm:c/100", metric::CPU_PCT), None);
    assert_eq!(provenance_of(&store, "node:missing", metric::CPU_PCT), None);

    // An agent before protocol 1.2 says nothing: the entry stays.
    store.ingest(&[item("a1", batch(2, 2))], NOW).unwrap();
    assert_eq!(
        provenance_of(&store, "node:pve1", metric::CPU_PCT),
        pair("host", "/proc/stat")
    );

    // A replayed batch is not stored again, provenance included.
    let other = Provenance {
        method: "changed".into(),
        ..CPU
    };
    let out = store
        .ingest(
            &[sourced("a1", batch(2, 2), std::slice::from_ref(&other))],
            NOW,
        )
        .unwrap();
    assert!(!out[0].stored);
    assert_eq!(
        provenance_of(&store, "node:pve1", metric::CPU_PCT),
        pair("host", "/proc/stat")
    );

    // A late sample that does not become the latest value does not change it either.
    let mut late = batch(3, 1);
    late.samples = vec![sample("node:pve1", metric::CPU_PCT, 0, 1.0)];
    store
        .ingest(&[sourced("a1", late, std::slice::from_ref(&other))], NOW)
        .unwrap();
    assert_eq!(
        provenance_of(&store, "node:pve1", metric::CPU_PCT),
        pair("host", "/proc/stat")
    );

    // A newer one does, in the same group commit as the samples.
    store
        .ingest(&[sourced("a1", batch(6, 1), &[other])], NOW)
        .unwrap();
    assert_eq!(
        provenance_of(&store, "node:pve1", metric::CPU_PCT),
        pair("host", "changed")
    );
    assert_eq!(
        provenance_of(&store, "node:pve1", metric::FS_USED_PCT),
        pair("host", "statvfs")
    );
}

#[test]
fn resource_records_from_before_provenance_still_decode() {
    let (_dir, store) = open();
    // A record as the server wrote it before provenance existed.
    let old = serde_json::json!({
        "id": "node:pve1", "org_id": ORG, "kind": "node", "name": "pve1", "parent": null,
        "status": "online", "attrs": {}, "agent_id": "a1", "collector": "host",
        "updated_at_ms": 1, "latest": {(metric::CPU_PCT): {"ts_ms": 1, "value": 2.0}}
    });
    {
        let txn = store.write_txn().unwrap();
        txn.open_table(RESOURCES)
            .unwrap()
            .insert(
                keys::resource_key(ORG, "node:pve1").as_str(),
                serde_json::to_vec(&old).unwrap().as_slice(),
            )
            .unwrap();
        txn.commit().unwrap();
    }
    let rec = store.get_resource(ORG, "node:pve1").unwrap().unwrap();
    assert!(rec.provenance.is_empty());
    assert_eq!(rec.latest[metric::CPU_PCT].value, 2.0);
    // And a record without provenance is written without the field, as before.
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json, old);
}

#[test]
fn redeem_happy_path_marks_token_and_inserts_agent() {
    let (_dir, store) = open();
    store.insert_token(&token("t1", 7)).unwrap();
    let got = store
        .redeem_token("t1", &[7; 32], NOW, |t| {
            assert_eq!(t.org_id, ORG);
            agent("a1")
        })
        .unwrap()
        .unwrap();
    assert_eq!(got, agent("a1"));
    assert_eq!(store.get_agent("a1").unwrap(), Some(agent("a1")));
    let t = store.get_token("t1").unwrap().unwrap();
    assert_eq!(t.used_at_ms, Some(NOW));
    assert_eq!(t.used_by.as_deref(), Some("a1"));

    // A second redemption is refused and names the first.
    let again = store
        .redeem_token("t1", &[7; 32], NOW + 1, |_| agent("a2"))
        .unwrap();
    assert_eq!(again, Err(TokenRefusal::AlreadyUsed { at_ms: NOW }));
    assert_eq!(store.get_agent("a2").unwrap(), None);
}

#[test]
fn redeem_refusals_write_nothing() {
    let (_dir, store) = open();
    store.insert_token(&token("t1", 7)).unwrap();
    let expires = token("t1", 7).expires_unix;
    let cases = [
        ("nope", [7; 32], NOW, TokenRefusal::Unknown),
        ("t1", [8; 32], NOW, TokenRefusal::Forged),
        (
            "t1",
            [7; 32],
            expires * 1000,
            TokenRefusal::Expired { at_unix: expires },
        ),
    ];
    for (id, hash, now, want) in cases {
        let got = store
            .redeem_token(id, &hash, now, |_| panic!("must not build an agent"))
            .unwrap();
        assert_eq!(got, Err(want));
    }
    assert_eq!(store.get_token("t1").unwrap(), Some(token("t1", 7)));
    assert!(store.list_agents().unwrap().is_empty());

    // Forged takes precedence over used/expired: without the secret nothing is revealed.
    store
        .redeem_token("t1", &[7; 32], NOW, |_| agent("a1"))
        .unwrap()
        .unwrap();
    let got = store
        .redeem_token("t1", &[8; 32], expires * 1000, |_| agent("a2"))
        .unwrap();
    assert_eq!(got, Err(TokenRefusal::Forged));
}

#[test]
fn duplicate_ids_are_refused() {
    let (_dir, store) = open();
    store.insert_token(&token("t1", 1)).unwrap();
    assert!(matches!(
        store.insert_token(&token("t1", 2)),
        Err(StoreError::AlreadyExists { .. })
    ));
    store.insert_agent(&agent("a1")).unwrap();
    store.insert_token(&token("t2", 2)).unwrap();
    let err = store
        .redeem_token("t2", &[2; 32], NOW, |_| agent("a1"))
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    // The token stays unused.
    assert_eq!(store.get_token("t2").unwrap().unwrap().used_at_ms, None);
}

#[test]
fn update_agent_read_modify_write() {
    let (_dir, store) = open();
    assert_eq!(store.update_agent("a1", |_| {}).unwrap(), None);
    store.insert_agent(&agent("a1")).unwrap();
    store.insert_agent(&agent("a0")).unwrap();
    let updated = store
        .update_agent("a1", |a| a.revoked_at_ms = Some(NOW))
        .unwrap()
        .unwrap();
    assert_eq!(updated.revoked_at_ms, Some(NOW));
    assert_eq!(store.get_agent("a1").unwrap(), Some(updated));
    let ids: Vec<_> = store
        .list_agents()
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a0", "a1"]);
}

#[test]
fn ingest_is_exactly_once() {
    let (_dir, store) = open();
    store.insert_agent(&agent("a1")).unwrap();
    let items: Vec<_> = (1..=3).map(|s| item("a1", batch(s, 10))).collect();

    let first = store.ingest(&items, NOW).unwrap();
    assert!(first.iter().all(|o| o.stored));
    assert_eq!(
        first.iter().map(|o| o.ack_seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(store.last_seq("a1").unwrap(), 3);
    assert_eq!(store.last_seq("other").unwrap(), 0);

    // Replaying everything (plus one new batch in the same call) stores only the new one.
    let mut replay = items.clone();
    replay.push(item("a1", batch(4, 10)));
    let second = store.ingest(&replay, NOW + 1).unwrap();
    assert_eq!(
        second,
        [
            IngestOutcome {
                stored: false,
                ack_seq: 3
            },
            IngestOutcome {
                stored: false,
                ack_seq: 3
            },
            IngestOutcome {
                stored: false,
                ack_seq: 3
            },
            IngestOutcome {
                stored: true,
                ack_seq: 4
            },
        ]
    );
    assert_eq!(
        store
            .count_samples(ORG, "node:pve1", metric::CPU_PCT, i64::MIN, i64::MAX)
            .unwrap(),
        40
    );
    // Same seq twice in one call: the second is a duplicate.
    let dup = store
        .ingest(&[item("a1", batch(5, 1)), item("a1", batch(5, 1))], NOW)
        .unwrap();
    assert_eq!(
        dup.iter()
            .map(|o| (o.stored, o.ack_seq))
            .collect::<Vec<_>>(),
        [(true, 5), (false, 5)]
    );

    let a = store.get_agent("a1").unwrap().unwrap();
    assert_eq!(a.last_seen_ms, Some(NOW));
    assert_eq!(a.dropped_samples, 5);
    let h = &a.collectors["host"];
    assert_eq!((h.status.as_str(), h.duration_ms), ("ok", 12));
    assert_eq!(h.last_run_ms, batch(5, 1).collected_at_ms);
}

#[test]
fn ingest_keeps_agents_apart_and_stores_without_record() {
    let (_dir, store) = open();
    let out = store
        .ingest(&[item("a1", batch(2, 1)), item("a2", batch(1, 1))], NOW)
        .unwrap();
    assert!(out.iter().all(|o| o.stored));
    assert_eq!(store.last_seq("a1").unwrap(), 2);
    assert_eq!(store.last_seq("a2").unwrap(), 1);
    assert!(store.list_agents().unwrap().is_empty());
}

#[test]
fn resources_upsert_with_latest_and_unknown_attrs() {
    let (_dir, store) = open();
    let mut b1 = TelemetryBatch {
        seq: 1,
        collector: "docker".to_owned(),
        collected_at_ms: 2_000,
        resources: vec![Resource {
            id: rid("docker:pve1/nginx"),
            name: "nginx".to_owned(),
            parent: Some(rid("node:pve1")),
            status: "running".to_owned(),
            attrs: vec![
                ("image".to_owned(), Value::from("nginx:1")),
                ("restarts".to_owned(), Value::Int(3)),
                ("health".to_owned(), Value::Unknown),
                ("cpu".to_owned(), Value::Float(f64::NAN)),
            ],
        }],
        samples: vec![
            sample("docker:pve1/nginx", "mem_bytes", 1_000, 10.0),
            sample("docker:pve1/nginx", "mem_bytes", 2_000, 20.0),
            sample("docker:pve1/nginx", metric::CPU_PCT, 2_000, f64::NAN),
            sample("node:pve1", metric::LOAD1, 2_000, 0.5),
        ],
        ..TelemetryBatch::default()
    };
    store.ingest(&[item("a1", b1.clone())], NOW).unwrap();

    let r = store
        .get_resource(ORG, "docker:pve1/nginx")
        .unwrap()
        .unwrap();
    assert_eq!((r.kind.as_str(), r.name.as_str()), ("docker", "nginx"));
    assert_eq!(r.parent.as_deref(), Some("node:pve1"));
    assert_eq!(r.attrs["image"], serde_json::json!("nginx:1"));
    assert_eq!(r.attrs["restarts"], serde_json::json!(3));
    assert_eq!(r.attrs["health"], serde_json::Value::Null);
    assert_eq!(r.attrs["cpu"], serde_json::Value::Null);
    assert_eq!(
        r.latest["mem_bytes"],
        LatestSample {
            ts_ms: 2_000,
            value: 20.0
        }
    );
    assert!(
        !r.latest.contains_key(metric::CPU_PCT),
        "NaN is not a value"
    );
    assert_eq!(
        store
            .count_samples(ORG, "docker:pve1/nginx", metric::CPU_PCT, 0, 10_000)
            .unwrap(),
        0
    );

    // A stub for the resource known only from samples.
    let node = store.get_resource(ORG, "node:pve1").unwrap().unwrap();
    assert_eq!(node.status, "unknown");
    assert_eq!(node.latest[metric::LOAD1].value, 0.5);

    // Second batch: new state, an older sample (does not replace latest), a newer one.
    b1.seq = 2;
    b1.collected_at_ms = 3_000;
    b1.resources[0].status = "exited".to_owned();
    b1.resources[0].attrs.truncate(1);
    b1.samples = vec![
        sample("docker:pve1/nginx", "mem_bytes", 1_500, 15.0),
        sample("docker:pve1/nginx", "restarts", 3_000, 4.0),
    ];
    store.ingest(&[item("a1", b1)], NOW).unwrap();
    let r = store
        .get_resource(ORG, "docker:pve1/nginx")
        .unwrap()
        .unwrap();
    assert_eq!(r.status, "exited");
    assert_eq!(r.attrs.len(), 1);
    assert_eq!(r.updated_at_ms, 3_000);
    assert_eq!(r.latest["mem_bytes"].value, 20.0);
    assert_eq!(r.latest["restarts"].value, 4.0);

    let ids: Vec<_> = store
        .list_resources(ORG)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["docker:pve1/nginx", "node:pve1"]);
    assert!(store.list_resources("other").unwrap().is_empty());
    assert_eq!(store.get_resource("other", "node:pve1").unwrap(), None);
}

#[test]
fn older_report_from_another_agent_does_not_roll_back_state() {
    let (_dir, store) = open();
    let mut b = batch(1, 1);
    b.collected_at_ms = 5_000;
    store.ingest(&[item("a1", b.clone())], NOW).unwrap();
    b.collected_at_ms = 4_000;
    b.resources[0].status = "stale".to_owned();
    store.ingest(&[item("a2", b)], NOW).unwrap();
    let r = store.get_resource(ORG, "node:pve1").unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.agent_id.as_str()), ("online", "a1"));
}

#[test]
fn orgs_are_separate() {
    let (_dir, store) = open();
    let mut other = item("b1", batch(1, 3));
    other.org_id = "acme".to_owned();
    store
        .ingest(&[item("a1", batch(1, 5)), other], NOW)
        .unwrap();
    let count = |org| {
        store
            .count_samples(org, "node:pve1", metric::CPU_PCT, i64::MIN, i64::MAX)
            .unwrap()
    };
    assert_eq!((count(ORG), count("acme")), (5, 3));
    // "acme" must not be a prefix match of "acme2" or the like.
    assert!(store.list_resources("acm").unwrap().is_empty());
    assert_eq!(store.list_resources("acme").unwrap().len(), 1);
}

#[test]
fn history_raw_stepped_and_limited() {
    let (_dir, store) = open();
    let b = TelemetryBatch {
        seq: 1,
        samples: vec![
            sample("node:pve1", metric::CPU_PCT, -1_500, 1.0),
            sample("node:pve1", metric::CPU_PCT, 0, 2.0),
            sample("node:pve1", metric::CPU_PCT, 400, 4.0),
            sample("node:pve1", metric::CPU_PCT, 1_000, 6.0),
            sample("node:pve1", metric::CPU_PCT, 2_500, 8.0),
            // Same timestamp again: last write wins.
            sample("node:pve1", metric::CPU_PCT, 2_500, 9.0),
            // A metric whose name extends the first must not leak into its range.
            sample("node:pve1", "cpu_pct2", 500, 100.0),
            sample("node:pve1", "cpu", 500, 100.0),
        ],
        ..TelemetryBatch::default()
    };
    store.ingest(&[item("a1", b)], NOW).unwrap();
    let h = |from, to, step, limit| {
        store.history(ORG, "node:pve1", metric::CPU_PCT, from, to, step, limit)
    };

    assert_eq!(
        h(i64::MIN, i64::MAX, None, 10).unwrap(),
        [
            (-1_500, 1.0),
            (0, 2.0),
            (400, 4.0),
            (1_000, 6.0),
            (2_500, 9.0)
        ]
    );
    assert_eq!(
        h(0, 1_000, None, 10).unwrap(),
        [(0, 2.0), (400, 4.0), (1_000, 6.0)]
    );
    assert_eq!(
        h(i64::MIN, i64::MAX, Some(1_000), 10).unwrap(),
        [(-2_000, 1.0), (0, 3.0), (1_000, 6.0), (2_000, 9.0)]
    );
    // The limit cuts after complete points; callers pass max + 1 to detect overflow.
    assert_eq!(
        h(i64::MIN, i64::MAX, Some(1_000), 2).unwrap(),
        [(-2_000, 1.0), (0, 3.0)]
    );
    assert_eq!(h(i64::MIN, i64::MAX, Some(1_000), 4).unwrap().len(), 4);
    assert_eq!(
        h(i64::MIN, i64::MAX, None, 3).unwrap(),
        [(-1_500, 1.0), (0, 2.0), (400, 4.0)]
    );
    assert!(h(i64::MIN, i64::MAX, None, 0).unwrap().is_empty());
    assert!(matches!(
        h(0, 1, Some(0), 10),
        Err(StoreError::InvalidStep(0))
    ));
    assert!(h(10, 0, None, 10).unwrap().is_empty());
    assert_eq!(
        store
            .count_samples(ORG, "node:pve1", metric::CPU_PCT, -1_500, 2_500)
            .unwrap(),
        5
    );
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    {
        let store = Store::open(&path).unwrap();
        store.insert_token(&token("t1", 1)).unwrap();
        store
            .redeem_token("t1", &[1; 32], NOW, |_| agent("a1"))
            .unwrap()
            .unwrap();
        store.ingest(&[item("a1", batch(1, 4))], NOW).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.last_seq("a1").unwrap(), 1);
    assert_eq!(
        store.get_agent("a1").unwrap().unwrap().last_seen_ms,
        Some(NOW)
    );
    assert!(store.get_token("t1").unwrap().unwrap().used_at_ms.is_some());
    assert_eq!(store.list_resources(ORG).unwrap().len(), 1);
    assert_eq!(
        store
            .count_samples(ORG, "node:pve1", metric::CPU_PCT, i64::MIN, i64::MAX)
            .unwrap(),
        4
    );
    // Replays after the restart are still recognised.
    let out = store.ingest(&[item("a1", batch(1, 4))], NOW).unwrap();
    assert_eq!(
        out,
        [IngestOutcome {
            stored: false,
            ack_seq: 1
        }]
    );
}

#[test]
fn other_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.redb");
    drop(Store::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_KEY, 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedSchema {
                found: 99,
                supported: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn head_keys_order_by_time_including_negative() {
    for (x, y) in [
        (-5, -4),
        (-1, 0),
        (0, 1),
        (59_999, 60_000),
        (i64::MIN, i64::MAX),
    ] {
        let (mx, my) = (keys::bucket_of(x), keys::bucket_of(y));
        let (a, b) = (head::head_key(mx, 7, u64::MAX), head::head_key(my, 0, 0));
        assert!(mx == my || a < b, "{x} < {y}");
        assert_eq!(head::parse_head_key(&a), (mx, 7, u64::MAX));
    }
}

#[test]
fn history_spans_sparse_buckets_and_series() {
    let (_dir, store) = open();
    let day = 86_400_000;
    // Two series interleaved, with gaps of many empty buckets between samples.
    let samples = (0..50)
        .flat_map(|i| {
            [
                sample("node:pve1", "a", i * day + 5, i as f64),
                sample("node:pve1", "b", i * day + 5, -1.0),
            ]
        })
        .collect();
    let b = TelemetryBatch {
        seq: 1,
        samples,
        ..TelemetryBatch::default()
    };
    store.ingest(&[item("a1", b)], NOW).unwrap();
    let all = store
        .history(ORG, "node:pve1", "a", i64::MIN, i64::MAX, None, 1000)
        .unwrap();
    assert_eq!(all.len(), 50);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, p)| *p == (i as i64 * day + 5, i as f64))
    );
    let some = store
        .history(
            ORG,
            "node:pve1",
            "a",
            10 * day + 6,
            20 * day + 5,
            Some(day),
            1000,
        )
        .unwrap();
    assert_eq!(some.first(), Some(&(11 * day, 11.0)));
    assert_eq!(some.len(), 10);
    assert_eq!(
        store
            .history(ORG, "node:pve1", "missing", i64::MIN, i64::MAX, None, 10)
            .unwrap(),
        []
    );
}

#[test]
fn failed_ingest_leaves_no_trace_and_series_ids_stay_consistent() {
    let (_dir, store) = open();
    // A corrupt agent record makes the ingest fail after it allocated series ids.
    {
        let txn = store.write_txn().unwrap();
        txn.open_table(AGENTS)
            .unwrap()
            .insert("bad", b"not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let mut b = batch(1, 3);
    b.samples.push(sample("node:pve2", "fresh", 1, 1.0));
    let err = store
        .ingest(&[item("a1", batch(1, 2)), item("bad", b)], NOW)
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert_eq!(store.last_seq("a1").unwrap(), 0);
    assert!(store.list_resources(ORG).unwrap().is_empty());

    // The same series are allocated again, consistently, by the next ingest.
    store.ingest(&[item("a1", batch(1, 2))], NOW).unwrap();
    let mut other = batch(2, 2);
    other.samples.push(sample("node:pve2", "fresh", 1, 1.0));
    store.ingest(&[item("a1", other)], NOW).unwrap();
    assert_eq!(
        store
            .count_samples(ORG, "node:pve1", metric::CPU_PCT, i64::MIN, i64::MAX)
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .history(ORG, "node:pve2", "fresh", 0, 10, None, 10)
            .unwrap(),
        [(1, 1.0)]
    );
}
