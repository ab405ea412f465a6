//! Tests of the Proxmox Backup Server API simulator: envelope and field shapes against the
//! trimmed captures in `tests/fixtures/pbs/` and the schema notes, token format, error bodies,
//! fault modes and scenario mutations.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use warden_sim::RawResponse;
use warden_sim::pbs::{ErrorBody, Fault, JobKind, PbsSim, PbsSimOptions};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/pbs/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn same_kind(a: &str, b: &str) -> bool {
    a == b || matches!((a, b), ("number", "integer") | ("integer", "number"))
}

fn entries(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_object).collect(),
        Value::Object(o) => vec![o],
        _ => Vec::new(),
    }
}

/// Every key the simulator sends must exist in the fixture (or in `extra`, from the schema
/// notes) with the same JSON kind; keys present in every fixture entry must be sent too.
fn assert_fixture_shape(what: &str, sim: &Value, fix: &Value, extra: &[&str]) {
    let fix_entries = entries(fix);
    let sim_entries = entries(sim);
    assert!(!sim_entries.is_empty(), "{what}: simulator sent no objects");
    assert!(!fix_entries.is_empty(), "{what}: fixture has no objects");
    let mut kinds: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in &fix_entries {
        for (k, v) in *e {
            kinds.entry(k).or_default().insert(kind(v));
        }
    }
    for e in &sim_entries {
        for (k, v) in *e {
            match kinds.get(k.as_str()) {
                Some(ks) => assert!(
                    ks.iter().any(|f| same_kind(f, kind(v))),
                    "{what}: key {k} is {} but the fixture has {ks:?}",
                    kind(v)
                ),
                None => assert!(
                    extra.contains(&k.as_str()),
                    "{what}: key {k} is not in the fixture"
                ),
            }
        }
        for k in kinds.keys() {
            if fix_entries.iter().all(|f| f.contains_key(*k)) {
                assert!(e.contains_key(*k), "{what}: key {k} missing: {e:?}");
            }
        }
    }
}

/// Schema from the notes: (key, kind, required). Kinds: integer, number, string, bool,
/// array, object. Every sent key must be listed with that kind; required keys must be sent.
fn assert_schema(what: &str, sim: &Value, schema: &[(&str, &str, bool)]) {
    let list = entries(sim);
    assert!(!list.is_empty(), "{what}: simulator sent no objects");
    for e in list {
        for (k, v) in e {
            let Some((_, want, _)) = schema.iter().find(|(n, _, _)| n == k) else {
                panic!("{what}: key {k} is not in the schema notes");
            };
            let got = kind(v);
            assert!(
                got == *want || (*want == "number" && got == "integer"),
                "{what}: key {k} is {got}, schema says {want}"
            );
        }
        for (k, _, req) in schema {
            if *req {
                assert!(
                    e.contains_key(*k),
                    "{what}: required key {k} missing: {e:?}"
                );
            }
        }
    }
}

const GC_COUNTERS: [&str; 10] = [
    "disk-bytes",
    "disk-chunks",
    "index-data-bytes",
    "index-file-count",
    "pending-bytes",
    "pending-chunks",
    "removed-bad",
    "removed-bytes",
    "removed-chunks",
    "still-bad",
];

fn gc_schema() -> Vec<(&'static str, &'static str, bool)> {
    let mut s: Vec<_> = GC_COUNTERS.iter().map(|k| (*k, "integer", true)).collect();
    s.extend([
        ("cache-stats", "object", false),
        ("upid", "string", false),
        ("duration", "integer", false),
        ("last-run-endtime", "integer", false),
        ("last-run-state", "string", false),
        ("next-run", "integer", false),
        ("schedule", "string", false),
        ("store", "string", true),
    ]);
    s
}

fn gc_status_schema() -> Vec<(&'static str, &'static str, bool)> {
    let mut s: Vec<_> = GC_COUNTERS.iter().map(|k| (*k, "integer", true)).collect();
    s.extend([("cache-stats", "object", false), ("upid", "string", false)]);
    s
}

const JOB_COMMON: [(&str, &str, bool); 9] = [
    ("comment", "string", false),
    ("id", "string", true),
    ("last-run-endtime", "integer", false),
    ("last-run-state", "string", false),
    ("last-run-upid", "string", false),
    ("max-depth", "integer", false),
    ("next-run", "integer", false),
    ("ns", "string", false),
    ("store", "string", true),
];

fn ok(r: &RawResponse, what: &str) -> Value {
    assert_eq!(
        r.status,
        200,
        "{what}: {} {}",
        r.reason,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8"),
        "{what}"
    );
    let body = r.json().expect("json body");
    assert!(body.get("data").is_some(), "{what}: no data envelope");
    body
}

fn data(sim: &PbsSim, path: &str) -> Value {
    ok(&sim.get(path), path)["data"].take()
}

fn body_text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn endpoints_match_fixture_shapes() {
    let sim = PbsSim::start(PbsSimOptions::fast());
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    assert!(sim.base_url().ends_with("/api2/json"));

    let v = data(&sim, "/version");
    assert_fixture_shape("version", &v, &fixture("version.pbs4.2.json")["data"], &[]);
    assert_eq!(v["repoid"].as_str().map(str::len), Some(40));

    let v = data(&sim, "/nodes/localhost/status");
    assert_fixture_shape(
        "node status",
        &v,
        &fixture("nodes_localhost_status.trimmed.json")["data"],
        &["boot-info", "cpuinfo", "current-kernel", "info", "kversion"],
    );
    assert!(
        v["loadavg"]
            .as_array()
            .expect("loadavg")
            .iter()
            .all(Value::is_number)
    );
    assert!(v.get("rootfs").is_none());
    assert_eq!(v["info"]["fingerprint"], sim.cert_fingerprint());
    assert!(v["boot-info"]["secureboot"].is_boolean());
    for (obj, keys) in [
        ("memory", ["free", "total", "used"]),
        ("swap", ["free", "total", "used"]),
        ("root", ["avail", "total", "used"]),
    ] {
        for k in keys {
            assert!(v[obj][k].is_u64(), "{obj}.{k}");
        }
    }

    let v = data(&sim, "/status/datastore-usage");
    assert_fixture_shape(
        "datastore-usage",
        &v,
        &fixture("status_datastore_usage.trimmed.json")["data"],
        &["mount-status", "gc-status"],
    );
    for e in v.as_array().expect("array") {
        assert_schema(
            "datastore-usage gc-status",
            &e["gc-status"],
            &gc_status_schema(),
        );
    }
    assert!(
        v.as_array()
            .expect("array")
            .iter()
            .any(|e| e["store"] == "slow-xfs")
    );

    let v = data(&sim, "/admin/datastore/slow-xfs/namespace");
    assert_fixture_shape(
        "namespace",
        &v,
        &fixture("datastore_namespace.json")["data"],
        &[],
    );
    assert_eq!(v[0]["ns"], "");

    let v = data(&sim, "/admin/datastore/slow-xfs/snapshots");
    let fix = fixture("datastore_snapshots.trimmed.json")["data"].take();
    assert_fixture_shape(
        "snapshots",
        &v,
        &fix,
        &["files", "owner", "protected", "size", "fingerprint"],
    );
    assert_schema(
        "snapshots",
        &v,
        &[
            ("backup-id", "string", true),
            ("backup-time", "integer", true),
            ("backup-type", "string", true),
            ("comment", "string", false),
            ("files", "array", true),
            ("fingerprint", "string", false),
            ("owner", "string", false),
            ("protected", "bool", true),
            ("size", "integer", false),
            ("verification", "object", false),
        ],
    );
    let list = v.as_array().expect("array");
    // The default world carries the fixture's snapshots (values included).
    for f in fix.as_array().expect("array") {
        let hit = list
            .iter()
            .find(|s| s["backup-time"] == f["backup-time"])
            .unwrap_or_else(|| panic!("fixture snapshot missing: {f}"));
        for k in ["backup-type", "backup-id", "comment"] {
            assert_eq!(hit[k], f[k], "{k}");
        }
        assert_eq!(hit["verification"]["state"], f["verification"]["state"]);
    }
    for s in list.iter().filter(|s| s.get("verification").is_some()) {
        assert_schema(
            "verification",
            &s["verification"],
            &[("state", "string", true), ("upid", "string", true)],
        );
    }
    assert!(list.iter().any(|s| s.get("verification").is_none()));
    let only_vm = data(&sim, "/admin/datastore/slow-xfs/snapshots?backup-type=vm");
    assert_eq!(only_vm.as_array().map(Vec::len), Some(1));

    let v = data(&sim, "/nodes/localhost/subscription");
    assert_eq!(
        v,
        fixture("nodes_localhost_subscription.notfound.json")["data"]
    );

    // Endpoints without a capture: field lists from the schema notes.
    let v = data(&sim, "/admin/datastore");
    assert_schema(
        "admin/datastore",
        &v,
        &[
            ("backend-type", "string", true),
            ("comment", "string", false),
            ("maintenance", "string", false),
            ("mount-status", "string", true),
            ("store", "string", true),
        ],
    );
    assert_eq!(v.as_array().map(Vec::len), Some(2));

    let v = data(&sim, "/admin/datastore/slow-xfs/status");
    assert_schema(
        "datastore status",
        &v,
        &[
            ("avail", "integer", true),
            ("backend-type", "string", true),
            ("counts", "object", false),
            ("gc-status", "object", false),
            ("s3-statistics", "object", false),
            ("total", "integer", true),
            ("used", "integer", true),
        ],
    );
    assert_schema(
        "datastore status gc-status",
        &v["gc-status"],
        &gc_status_schema(),
    );
    assert_eq!(v["counts"]["ct"], json!({"groups": 1, "snapshots": 3}));
    assert_eq!(v["counts"]["vm"], json!({"groups": 1, "snapshots": 1}));

    let v = data(&sim, "/admin/datastore/slow-xfs/groups");
    assert_schema(
        "groups",
        &v,
        &[
            ("backup-count", "integer", true),
            ("backup-id", "string", true),
            ("backup-type", "string", true),
            ("comment", "string", false),
            ("files", "array", true),
            ("last-backup", "integer", true),
            ("owner", "string", false),
        ],
    );
    let ct = v
        .as_array()
        .expect("array")
        .iter()
        .find(|g| g["backup-id"] == "503")
        .expect("ct/503");
    assert_eq!(ct["backup-count"], 3);
    assert_eq!(ct["last-backup"], 1_780_683_922);

    let v = data(&sim, "/admin/datastore/slow-xfs/gc");
    assert_schema("datastore gc", &v, &gc_schema());
    assert_eq!(v["last-run-state"], "OK");
    let all = data(&sim, "/admin/gc");
    assert_schema("admin/gc", &all, &gc_schema());
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    // Dedup factor is derivable.
    assert!(v["index-data-bytes"].as_u64() > v["disk-bytes"].as_u64());

    let v = data(&sim, "/admin/verify");
    let mut schema = JOB_COMMON.to_vec();
    schema.extend([
        ("ignore-verified", "bool", false),
        ("outdated-after", "integer", false),
        ("read-threads", "integer", false),
        ("schedule", "string", false),
        ("verify-threads", "integer", false),
    ]);
    assert_schema("admin/verify", &v, &schema);

    let v = data(&sim, "/admin/prune");
    let mut schema = JOB_COMMON.to_vec();
    schema.extend([
        ("disable", "bool", false),
        ("keep-daily", "integer", false),
        ("keep-hourly", "integer", false),
        ("keep-last", "integer", false),
        ("keep-monthly", "integer", false),
        ("keep-weekly", "integer", false),
        ("keep-yearly", "integer", false),
        ("schedule", "string", true),
    ]);
    assert_schema("admin/prune", &v, &schema);

    let v = data(&sim, "/admin/sync");
    let mut schema = JOB_COMMON.to_vec();
    schema.extend([
        ("owner", "string", false),
        ("remote", "string", false),
        ("remote-ns", "string", false),
        ("remote-store", "string", true),
        ("remove-vanished", "bool", false),
        ("schedule", "string", false),
        ("sync-direction", "string", false),
        ("transfer-last", "integer", false),
    ]);
    assert_schema("admin/sync", &v, &schema);
    for j in v.as_array().expect("array") {
        assert_eq!(j["last-run-state"], "OK");
    }
    assert_eq!(
        data(&sim, "/admin/sync?sync-direction=push")
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    let body = ok(&sim.get("/nodes/localhost/tasks"), "tasks");
    let list = body["data"].as_array().expect("array");
    assert_eq!(body["total"].as_u64(), Some(list.len() as u64));
    assert_schema(
        "tasks",
        &body["data"],
        &[
            ("endtime", "integer", false),
            ("node", "string", true),
            ("pid", "integer", true),
            ("pstart", "integer", true),
            ("starttime", "integer", true),
            ("status", "string", false),
            ("upid", "string", true),
            ("user", "string", true),
            ("worker_id", "string", false),
            ("worker_type", "string", true),
        ],
    );
    for t in list {
        assert_eq!(t["node"], "localhost");
        // UPID:node:pid:pstart:task_id:starttime:type:id:user:
        let upid = t["upid"].as_str().expect("upid");
        let parts: Vec<&str> = upid.split(':').collect();
        assert_eq!(parts.len(), 10, "{upid}");
        assert_eq!(parts[0], "UPID");
        assert_eq!(parts[1], "localhost");
        assert_eq!(
            i64::from_str_radix(parts[5], 16).ok(),
            t["starttime"].as_i64(),
            "{upid}"
        );
        assert_eq!(parts[6], t["worker_type"]);
    }
    let page = ok(
        &sim.get("/nodes/localhost/tasks?limit=2&start=1"),
        "tasks page",
    );
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["total"], body["total"]);

    // Unknown paths: 404 with the path in the text.
    let r = sim.get("/nodes/localhost/nope");
    assert_eq!(r.status, 404);
    assert!(body_text(&r).contains("not found"), "{}", body_text(&r));
}

#[test]
fn token_format_and_unauthorized_answers() {
    let sim = PbsSim::start(PbsSimOptions::fast());
    let token = "warden@pbs!monitor:6b1f0c3e-2a4d-4e8f-9b7c-5d3e2f1a0b9c";
    assert_eq!(sim.auth_header(), format!("PBSAPIToken={token}"));
    let r = sim.get_with_auth("/version", Some(&format!("PBSAPIToken={token}")));
    assert_eq!(r.status, 200);

    // PVE-style separator before the secret, PVE scheme, wrong secret, no header.
    for auth in [
        Some("PBSAPIToken=warden@pbs!monitor=6b1f0c3e-2a4d-4e8f-9b7c-5d3e2f1a0b9c".to_owned()),
        Some(format!("PVEAPIToken={token}")),
        Some("PBSAPIToken=warden@pbs!monitor:wrong".to_owned()),
        None,
    ] {
        let r = sim.get_with_auth("/version", auth.as_deref());
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.reason, "Unauthorized");
        let text = body_text(&r);
        assert!(text.starts_with("authentication failed - "), "{text}");
        assert!(r.json().is_err(), "401 body is plain text");
    }
    let r = sim.get_with_auth("/version", None);
    assert_eq!(
        body_text(&r),
        "authentication failed - no authentication credentials provided."
    );

    // PVE-like style: empty 401 body, reason in the status line.
    sim.set_error_body(ErrorBody::PveLike);
    let r = sim.get_with_auth("/version", None);
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty());
    assert!(r.reason.starts_with("authentication failed"));
    sim.set_error_body(ErrorBody::RestServer);

    // The 401 delay applies (3 s by default; shortened here).
    sim.set_auth_delay(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(sim.get_with_auth("/version", None).status, 401);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(sim.get("/version").status, 200);
    assert!(t.elapsed() < Duration::from_millis(300));

    // A changed token.
    sim.set_token("root@pam!other:s3cret");
    sim.set_auth_delay(Duration::ZERO);
    assert_eq!(
        sim.get_with_auth("/version", Some(&format!("PBSAPIToken={token}")))
            .status,
        401
    );
    assert_eq!(sim.get("/version").status, 200);
    assert!(PbsSimOptions::default().auth_delay >= Duration::from_secs(3));
}

#[test]
fn fault_modes() {
    let sim = PbsSim::start(PbsSimOptions::fast());

    sim.set_fault(Fault::BadToken);
    sim.set_auth_delay(Duration::from_millis(200));
    let t = Instant::now();
    let r = sim.get("/version");
    assert_eq!(r.status, 401);
    assert!(t.elapsed() >= Duration::from_millis(200));
    sim.set_auth_delay(Duration::ZERO);

    // Missing privilege on one datastore: 403 on its calls, hidden from lists.
    sim.set_fault(Fault::MissingPrivilege {
        path: "/datastore/store1".into(),
    });
    let r = sim.get("/admin/datastore/store1/status");
    assert_eq!(r.status, 403);
    assert_eq!(r.reason, "Forbidden");
    assert_eq!(body_text(&r), "permission check failed");
    assert_eq!(sim.get("/admin/datastore/slow-xfs/status").status, 200);
    let stores = data(&sim, "/admin/datastore");
    assert_eq!(stores.as_array().map(Vec::len), Some(1));
    assert_eq!(stores[0]["store"], "slow-xfs");
    assert_eq!(
        data(&sim, "/status/datastore-usage")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(data(&sim, "/admin/gc").as_array().map(Vec::len), Some(1));
    assert_eq!(data(&sim, "/admin/sync").as_array().map(Vec::len), Some(0));

    sim.set_fault(Fault::MissingPrivilege {
        path: "/system/status".into(),
    });
    assert_eq!(sim.get("/nodes/localhost/status").status, 403);
    assert_eq!(sim.get("/nodes/localhost/tasks").status, 200);

    // PVE-like bodies carry the reason as JSON.
    sim.set_error_body(ErrorBody::PveLike);
    let r = sim.get("/nodes/localhost/status");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json().expect("json"),
        json!({"data": null, "message": "permission check failed\n"})
    );
    sim.set_error_body(ErrorBody::RestServer);

    sim.set_fault(Fault::ServerError("internal error".into()));
    let r = sim.get("/admin/gc");
    assert_eq!(r.status, 500);
    assert_eq!(body_text(&r), "internal error");

    sim.set_fault(Fault::Slow(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(sim.get("/version").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    sim.set_fault(Fault::MalformedJson);
    let r = sim.get("/admin/datastore");
    assert_eq!(r.status, 200);
    assert!(r.json().is_err());

    sim.set_fault(Fault::DatastoreUnavailable("store1".into()));
    for ep in ["status", "snapshots", "groups", "gc", "namespace"] {
        let r = sim.get(&format!("/admin/datastore/store1/{ep}"));
        assert_eq!(r.status, 400, "{ep}");
        assert!(body_text(&r).contains("maintenance"), "{}", body_text(&r));
    }
    assert_eq!(sim.get("/admin/datastore/slow-xfs/snapshots").status, 200);
    let usage = data(&sim, "/status/datastore-usage");
    let s1 = usage
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["store"] == "store1")
        .expect("store1 listed");
    assert!(s1["error"].is_string());
    assert!(s1.get("total").is_none());

    sim.clear_faults();
    assert!(sim.faults().is_empty());
    assert_eq!(sim.get("/admin/datastore/store1/status").status, 200);
    assert_eq!(sim.get("/admin/datastore/nosuch/status").status, 400);
    assert!(sim.request_count() > 10);
}

#[test]
fn scenario_mutations() {
    let sim = PbsSim::start(PbsSimOptions::fast());
    let h = sim.handle();

    // Datastore usage.
    assert!(h.set_datastore_usage("store1", 1_900 << 30));
    let st = data(&sim, "/admin/datastore/store1/status");
    assert_eq!(st["used"].as_u64(), Some(1_900 << 30));
    assert_eq!(st["avail"].as_u64(), Some(100 << 30));
    let usage = data(&sim, "/status/datastore-usage");
    let s1 = usage
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["store"] == "store1")
        .expect("store1");
    assert_eq!(s1["used"].as_u64(), Some(1_900 << 30));
    assert!(!h.set_datastore_usage("nosuch", 1));

    // Failed GC: last state is the error, the task list has a failed task.
    let err = "unable to get exclusive lock - EAGAIN";
    let upid = h.fail_gc("store1", err).expect("store1 exists");
    let gc = data(&sim, "/admin/datastore/store1/gc");
    assert_eq!(gc["last-run-state"], err);
    assert_eq!(gc["upid"], upid);
    assert!(gc["last-run-endtime"].is_i64());
    let failed = ok(&sim.get("/nodes/localhost/tasks?errors=1"), "errors");
    let list = failed["data"].as_array().expect("array");
    assert_eq!(failed["total"].as_u64(), Some(1));
    assert_eq!(list[0]["upid"], upid);
    assert_eq!(list[0]["status"], err);
    assert_eq!(list[0]["worker_type"], "garbage_collection");
    assert_eq!(list[0]["worker_id"], "store1");
    let st = data(&sim, "/admin/datastore/store1/status");
    assert_eq!(st["gc-status"]["upid"], upid);
    assert!(h.fail_gc("nosuch", err).is_none());

    // New snapshot.
    let t = h.add_snapshot("store1", "ct", "200");
    let snaps = data(&sim, "/admin/datastore/store1/snapshots?backup-id=200");
    assert_eq!(snaps.as_array().map(Vec::len), Some(1));
    assert_eq!(snaps[0]["backup-time"], t);
    assert_eq!(snaps[0]["backup-type"], "ct");
    assert!(snaps[0].get("verification").is_none());
    let groups = data(&sim, "/admin/datastore/store1/groups");
    assert!(
        groups
            .as_array()
            .expect("array")
            .iter()
            .any(|g| g["backup-id"] == "200")
    );

    // Verification failed.
    assert!(h.fail_verification("store1", "ct", "200", t));
    let snaps = data(&sim, "/admin/datastore/store1/snapshots?backup-id=200");
    assert_eq!(snaps[0]["verification"]["state"], "failed");
    assert!(snaps[0]["verification"]["upid"].is_string());
    assert!(!h.fail_verification("store1", "ct", "200", t + 1));

    // Failed sync job.
    let err = "remote 'offsite' unreachable";
    let upid = h.fail_sync_job("s-offsite", err).expect("job exists");
    let jobs = data(&sim, "/admin/sync");
    assert_eq!(jobs[0]["last-run-state"], err);
    assert_eq!(jobs[0]["last-run-upid"], upid);
    let failed = ok(
        &sim.get("/nodes/localhost/tasks?errors=1&typefilter=syncjob"),
        "sync",
    );
    assert_eq!(failed["total"].as_u64(), Some(1));
    assert_eq!(failed["data"][0]["status"], err);
    assert!(h.fail_sync_job("nosuch", err).is_none());
    assert!(
        h.fail_job(JobKind::Verify, "v-slow-xfs", "verification failed")
            .is_some()
    );
    assert_eq!(
        data(&sim, "/admin/verify")[0]["last-run-state"],
        "verification failed"
    );

    // Direct world edits.
    h.with_world(|w| w.node.loadavg = [1.5, 1.0, 0.5]);
    let v = data(&sim, "/nodes/localhost/status");
    assert_eq!(v["loadavg"], json!([1.5, 1.0, 0.5]));
    assert_eq!(sim.world().tasks.iter().filter(|t| t.failed()).count(), 3);
}

#[test]
fn certificate_fingerprint_and_ca() {
    let sim = PbsSim::start(PbsSimOptions::fast());
    let fp = sim.cert_fingerprint();
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp.split(':').all(|b| {
        b.len() == 2
            && b.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    }));
    let der_hex = hex::encode(Sha256::digest(sim.identity().cert_der().as_ref()));
    assert_eq!(sim.cert_der_sha256(), der_hex);
    assert_eq!(fp.replace(':', "").to_ascii_lowercase(), der_hex);
    assert!(sim.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));

    // A fixed port (like PBS's 8007) can be requested.
    let port = warden_tests::free_tcp().port();
    let fixed = PbsSim::start(PbsSimOptions {
        port: Some(port),
        ..PbsSimOptions::fast()
    });
    assert_eq!(
        fixed.base_url(),
        format!("https://127.0.0.1:{port}/api2/json")
    );
    assert_eq!(fixed.get("/version").status, 200);
}
