//! Tests of the Proxmox VE API simulator: envelope, quirks and field shapes against the real
//! captures in `tests/fixtures/pve/`, authentication failures, fault modes and scenarios.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use warden_sim::RawResponse;
use warden_sim::pve::{Fault, PveSim, PveSimOptions, SmartKind};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/pve/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn entries(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_object).collect(),
        Value::Object(o) => vec![o],
        _ => Vec::new(),
    }
}

/// Every key the simulator sends must exist in the fixture (or in `extra`, from the schema
/// notes) with the same JSON kind; keys present in every fixture entry must be sent too
/// (unless listed in `optional`).
fn assert_shape(what: &str, sim: &Value, fix: &Value, extra: &[&str], optional: &[&str]) {
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
    let always: BTreeSet<&str> = kinds
        .keys()
        .copied()
        .filter(|k| fix_entries.iter().all(|e| e.contains_key(*k)))
        .collect();
    for e in &sim_entries {
        for (k, v) in *e {
            match kinds.get(k.as_str()) {
                Some(ks) => assert!(
                    ks.contains(kind(v)) || ks.contains("null"),
                    "{what}: key {k} is {} but the fixture has {ks:?}",
                    kind(v)
                ),
                None => assert!(
                    extra.contains(&k.as_str()),
                    "{what}: key {k} is not in the fixture"
                ),
            }
        }
        for k in &always {
            assert!(
                e.contains_key(*k) || optional.contains(k),
                "{what}: key {k} is missing (fixture always has it): {e:?}"
            );
        }
    }
}

fn ok(r: &RawResponse, what: &str) -> Value {
    assert_eq!(
        r.status,
        200,
        "{what}: {} {}",
        r.reason,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("server"), Some("pve-api-daemon/3.0"), "{what}");
    assert_eq!(r.header("cache-control"), Some("max-age=0"), "{what}");
    assert_eq!(r.header("pragma"), Some("no-cache"), "{what}");
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8"),
        "{what}"
    );
    let body = r.json().expect("json body");
    assert!(body.get("data").is_some(), "{what}: no data envelope");
    body
}

fn data(sim: &PveSim, path: &str) -> Value {
    ok(&sim.get(path), path)["data"].take()
}

fn by_type(v: &Value, ty: &str) -> Value {
    Value::Array(
        v.as_array()
            .expect("array")
            .iter()
            .filter(|e| e["type"] == ty)
            .cloned()
            .collect(),
    )
}

#[test]
fn endpoints_match_fixture_shapes() {
    let sim = PveSim::start(PveSimOptions::fast());
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    assert!(sim.base_url().ends_with("/api2/json"));

    let v = data(&sim, "/version");
    assert_shape(
        "version",
        &v,
        &fixture("version.pve7.2.json")["data"],
        &[],
        &[],
    );

    let v = data(&sim, "/cluster/status");
    assert_shape(
        "cluster/status",
        &v,
        &fixture("cluster_status.pve7.json")["data"],
        &[],
        &[
            "version", "quorate", "nodes", "nodeid", "online", "ip", "local", "level",
        ],
    );
    assert_shape(
        "cluster/status (pve9)",
        &v,
        &fixture("cluster_status.pve9.json")["data"],
        &[],
        &[],
    );
    assert_eq!(v[0]["quorate"], json!(1), "0/1 booleans");

    let all = data(&sim, "/cluster/resources");
    let fix = fixture("cluster_resources.mixed.json")["data"].take();
    for ty in ["node", "storage"] {
        assert_shape(
            &format!("cluster/resources {ty}"),
            &by_type(&all, ty),
            &by_type(&fix, ty),
            &[],
            &[],
        );
    }
    assert_shape(
        "cluster/resources qemu",
        &by_type(&all, "qemu"),
        &by_type(&fix, "qemu"),
        &["hastate", "lock"],
        &[],
    );
    // No lxc in the capture: same keys as qemu per the schema.
    assert_shape(
        "cluster/resources lxc",
        &by_type(&all, "lxc"),
        &by_type(&fix, "qemu"),
        &["hastate", "lock"],
        &[],
    );
    for (ty, want) in [("vm", ["qemu", "lxc"]), ("node", ["node", "node"])] {
        let v = data(&sim, &format!("/cluster/resources?type={ty}"));
        let arr = v.as_array().expect("array");
        assert!(!arr.is_empty());
        assert!(
            arr.iter()
                .all(|e| want.contains(&e["type"].as_str().unwrap_or(""))),
            "type={ty}"
        );
    }
    let bad = sim.get("/cluster/resources?type=bogus");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.reason, "Parameter verification failed.");
    assert!(bad.json().expect("json")["errors"]["type"].is_string());

    let v = data(&sim, "/nodes");
    assert_shape("nodes", &v, &fixture("nodes.json")["data"], &[], &[]);

    let v = data(&sim, "/nodes/node1/status");
    assert_shape(
        "node status",
        &v,
        &fixture("nodes_node_status.pve7.4.json")["data"],
        &["boot-info", "current-kernel"],
        &[],
    );
    assert!(
        v["loadavg"]
            .as_array()
            .expect("loadavg")
            .iter()
            .all(Value::is_string),
        "loadavg strings"
    );

    let v = data(&sim, "/nodes/node2/qemu");
    assert_shape(
        "qemu list",
        &v,
        &fixture("nodes_node_qemu.json")["data"],
        &["template", "tags", "lock"],
        &["pid"],
    );
    let v = data(&sim, "/nodes/node1/qemu");
    assert_shape(
        "qemu list (templates)",
        &v,
        &fixture("nodes_node_qemu.json")["data"],
        &["template", "tags", "lock"],
        &["pid"],
    );
    assert!(
        v.as_array()
            .expect("array")
            .iter()
            .any(|g| g["template"] == 1)
    );

    let v = data(&sim, "/nodes/node3/lxc");
    assert_shape(
        "lxc list",
        &v,
        &fixture("nodes_node_lxc.strings.json")["data"],
        &["tags", "lock"],
        &["pid"],
    );
    assert_shape(
        "lxc list (pve8)",
        &v,
        &fixture("nodes_node_lxc.pve8.json")["data"],
        &["template", "tags", "lock"],
        &["pid"],
    );
    assert!(v[0]["vmid"].is_string(), "lxc list vmid is a string");

    let v = data(&sim, "/nodes/node2/qemu/100/status/current");
    assert_shape(
        "qemu status",
        &v,
        &fixture("qemu_status_current.running.pve8.json")["data"],
        &["template", "tags", "lock"],
        &[
            "shares",
            "spice",
            "blockstat",
            "balloon",
            "freemem",
            "ballooninfo",
            "balloon_min",
            "proxmox-support",
            "nics",
        ],
    );
    assert_eq!(v["vmid"], json!(100));
    // The two captures disagree on `cpus` (string "1" vs number): accept either.
    let lxc_fix = json!([
        fixture("lxc_status_current.running_ha.json")["data"],
        fixture("lxc_status_current.stopped_template.json")["data"]
    ]);
    let v = data(&sim, "/nodes/node3/lxc/105/status/current");
    assert_shape("lxc status", &v, &lxc_fix, &["lock"], &[]);
    let v = data(&sim, "/nodes/node4/lxc/103/status/current");
    assert_shape(
        "lxc status template",
        &v,
        &fixture("lxc_status_current.stopped_template.json")["data"],
        &["lock"],
        &[],
    );
    assert_eq!(v["template"], json!(1));

    let v = data(&sim, "/nodes/node1/storage");
    assert_shape(
        "storage",
        &v,
        &fixture("nodes_node_storage.pve9.json")["data"],
        &[],
        &[],
    );
    let v = data(&sim, "/nodes/node1/storage/pbs/content?content=backup");
    assert_shape(
        "backup content",
        &v,
        &fixture("storage_content.backup_pbs.json")["data"],
        &[],
        &[],
    );

    let r = ok(&sim.get("/nodes/node2/tasks"), "tasks");
    assert!(r["total"].is_u64(), "tasks carry total");
    assert_shape(
        "tasks",
        &r["data"],
        &fixture("nodes_node_tasks.vzdump_ok.pve9.json")["data"],
        &[],
        &[],
    );

    let v = data(&sim, "/nodes/node1/disks/list");
    assert_eq!(v, fixture("disks_list.qemu_lab_ceph.json")["data"]);
    let v = data(&sim, "/nodes/node1/apt/update");
    assert_eq!(v, fixture("apt_update.pve9.json")["data"]);

    let v = data(&sim, "/cluster/ha/status/current");
    assert_shape(
        "ha status",
        &v,
        &fixture("ha_status_current.pve9.2_maintenance.json")["data"],
        &[],
        &[
            "quorate",
            "timestamp",
            "armed-state",
            "auto-rebalance",
            "comment",
            "crm_state",
            "failback",
            "max_relocate",
            "max_restart",
            "request_state",
            "sid",
            "state",
        ],
    );

    let v = data(&sim, "/cluster/ceph/status");
    assert_eq!(v["health"]["status"], "HEALTH_OK");

    let r = sim.get("/nodes/node1/nonexistent");
    assert_eq!(r.status, 501);
    let r = sim.get("/nodes/node1/qemu/999/status/current");
    assert_eq!(r.status, 500);
    assert!(
        r.reason.contains("999.conf' does not exist"),
        "{}",
        r.reason
    );
}

#[test]
fn unauthorized_answers_are_empty_and_delayed() {
    let sim = PveSim::start(PveSimOptions {
        auth_delay: Duration::from_millis(300),
        ..PveSimOptions::default()
    });
    let t = Instant::now();
    let r = sim.get_with_auth("/version", None);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!((r.status, r.reason.as_str()), (401, "No ticket"));
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("server"), Some("pve-api-daemon/3.0"));

    let r = sim.get_with_auth("/version", Some("PVEAPIToken=warden@pve!monitor=wrong"));
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "permission denied - invalid PVE ticket")
    );
    assert!(r.body.is_empty());

    sim.set_auth_delay(Duration::ZERO);
    assert_eq!(sim.get("/version").status, 200);
    sim.set_fault(Fault::BadToken);
    let r = sim.get("/version");
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), None);
    sim.clear_faults();
    assert_eq!(sim.get("/version").status, 200);
}

#[test]
fn fault_modes() {
    let sim = PveSim::start(PveSimOptions::fast());

    // 403 with the reason in the status line; list endpoints silently leave the VM out.
    sim.set_fault(Fault::MissingPrivilege {
        path: "/vms/100".into(),
    });
    let r = sim.get("/nodes/node2/qemu/100/status/current");
    assert_eq!(r.status, 403);
    assert_eq!(r.reason, "Permission check failed (/vms/100, VM.Audit)");
    assert_eq!(
        r.json().expect("json"),
        json!({"data": null, "message": "Permission check failed (/vms/100, VM.Audit)\n"})
    );
    sim.set_error_messages(false);
    let r = sim.get("/nodes/node2/qemu/100/status/current");
    assert_eq!(
        r.json().expect("json"),
        fixture("errors/403_permission_check_failed.pve8_early.json")
    );
    sim.set_error_messages(true);
    let vms = data(&sim, "/cluster/resources?type=vm");
    assert!(
        !vms.as_array()
            .expect("array")
            .iter()
            .any(|g| g["vmid"] == 100)
    );
    assert_eq!(sim.get("/nodes/node1/qemu/101/status/current").status, 200);

    // 500 with a message (key set as in the PVE >= 8.3 capture).
    sim.set_fault(Fault::ServerError(
        "cfs-lock 'file-replication_cfg' error".into(),
    ));
    let r = sim.get("/cluster/resources");
    assert_eq!(r.status, 500);
    assert_eq!(r.reason, "cfs-lock 'file-replication_cfg' error");
    let body = r.json().expect("json");
    assert_shape(
        "500",
        &body,
        &fixture("errors/500_with_message.json"),
        &[],
        &[],
    );
    assert_eq!(body["data"], Value::Null);

    // Slow.
    sim.set_fault(Fault::Slow(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(sim.get("/version").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Truncated JSON with 200.
    sim.set_fault(Fault::MalformedJson);
    let r = sim.get("/cluster/resources");
    assert_eq!(r.status, 200);
    assert!(!r.body.is_empty());
    assert!(r.json().is_err());

    // An unreachable node.
    sim.set_fault(Fault::NodeGone("node3".into()));
    let r = sim.get("/nodes/node3/lxc");
    assert_eq!((r.status, r.reason.as_str()), (595, "No route to host"));
    let st = data(&sim, "/cluster/status");
    let n3 = st
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["name"] == "node3")
        .expect("node3")
        .clone();
    assert_eq!(n3["online"], json!(0));
    assert_eq!(st[0]["quorate"], json!(1), "3 of 4 still quorate");
    let res = data(&sim, "/cluster/resources");
    let res = res.as_array().expect("array");
    let node3 = res.iter().find(|e| e["id"] == "node/node3").expect("node3");
    assert_eq!(node3["status"], "offline");
    for vmid in [105, 106] {
        let g = res.iter().find(|e| e["vmid"] == vmid).expect("guest");
        assert_eq!(g["status"], "unknown");
    }
    let nodes = data(&sim, "/nodes");
    assert!(
        nodes
            .as_array()
            .expect("array")
            .iter()
            .any(|n| n["node"] == "node3" && n["status"] == "offline")
    );
    assert_eq!(sim.get("/nodes/node2/qemu").status, 200);

    sim.clear_faults();
    assert_eq!(sim.get("/nodes/node3/lxc").status, 200);
    assert!(sim.request_count() > 10);
}

#[test]
fn migration_and_scenarios() {
    let sim = PveSim::start(PveSimOptions::fast());
    let find = |vmid: u64| {
        data(&sim, "/cluster/resources?type=vm")
            .as_array()
            .expect("array")
            .iter()
            .find(|g| g["vmid"] == vmid)
            .cloned()
            .expect("guest")
    };
    assert_eq!(find(100)["node"], "node2");
    assert!(sim.migrate(100, "node3"));
    let g = find(100);
    assert_eq!(
        (g["node"].as_str(), g["id"].as_str()),
        (Some("node3"), Some("qemu/100"))
    );
    assert!(
        data(&sim, "/nodes/node3/qemu")
            .as_array()
            .expect("array")
            .iter()
            .any(|g| g["vmid"] == 100)
    );
    assert!(
        !data(&sim, "/nodes/node2/qemu")
            .as_array()
            .expect("array")
            .iter()
            .any(|g| g["vmid"] == 100)
    );
    assert_eq!(
        sim.get("/nodes/node2/qemu/100/status/current").status,
        500,
        "gone from the source node"
    );
    let tasks = data(&sim, "/nodes/node2/tasks?typefilter=qmigrate");
    assert_eq!(tasks[0]["id"], "100");
    assert!(!sim.migrate(100, "nope"));

    // Storage usage.
    assert!(sim.set_storage_usage("node1", "local", 900_000_000_000));
    let st = data(&sim, "/nodes/node1/storage");
    let local = st
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["storage"] == "local")
        .expect("local")
        .clone();
    assert_eq!(local["used"], json!(900_000_000_000u64));
    assert_eq!(
        local["avail"].as_u64(),
        Some(local["total"].as_u64().expect("total") - 900_000_000_000)
    );
    assert!(local["used_fraction"].as_f64().expect("fraction") > 0.9);

    // A failed vzdump.
    let upid = sim.add_failed_vzdump("node1", 102, "job errors");
    let parts: Vec<&str> = upid.split(':').collect();
    assert_eq!(parts.len(), 9, "{upid}");
    assert_eq!(parts[0], "UPID");
    assert_eq!(parts[1], "node1");
    assert!(
        parts[2..5]
            .iter()
            .all(|p| p.len() == 8 && u64::from_str_radix(p, 16).is_ok())
    );
    assert_eq!(&parts[5..], &["vzdump", "102", "root@pam", ""]);
    let r = ok(&sim.get("/nodes/node1/tasks?errors=1"), "tasks");
    assert_eq!(r["total"], json!(1));
    assert_eq!(r["data"][0]["upid"], json!(upid));
    assert_eq!(r["data"][0]["status"], "job errors");
    assert_shape(
        "failed task",
        &r["data"],
        &fixture("nodes_node_tasks.with_failed.pve7.json")["data"],
        &[],
        &[],
    );

    // A successful backup shows up in the storage content.
    sim.add_vzdump_ok("node1", 102, "pbs");
    let c = data(
        &sim,
        "/nodes/node4/storage/pbs/content?content=backup&vmid=102",
    );
    assert_eq!(c.as_array().expect("array").len(), 1);
    assert_eq!(c[0]["format"], "pbs-vm");
    assert!(
        c[0]["volid"]
            .as_str()
            .expect("volid")
            .starts_with("pbs:backup/vm/102/")
    );

    // A stopped node.
    sim.stop_node("node4");
    assert_eq!(sim.get("/nodes/node4/status").status, 595);
    sim.start_node("node4");
    assert_eq!(sim.get("/nodes/node4/status").status, 200);
}

#[test]
fn certificate_fingerprint_and_ca() {
    let sim = PveSim::start(PveSimOptions::fast());
    let fp = sim.cert_der_sha256();
    assert_eq!(fp.len(), 64);
    assert_eq!(
        fp,
        hex::encode(Sha256::digest(sim.identity().cert_der().as_ref()))
    );
    assert_eq!(sim.cert_fingerprint().replace(':', "").to_lowercase(), fp);
    assert!(sim.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    // A client trusting another CA is refused.
    let other = PveSim::start(PveSimOptions::fast());
    let err = warden_sim::https_get(
        sim.addr(),
        other.identity().ca_der(),
        "/api2/json/version",
        &[],
    );
    assert!(err.is_err());
}

#[test]
fn reqwest_with_rustls_talks_to_the_simulator() {
    let sim = PveSim::start(PveSimOptions::fast());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(sim.identity().ca_der().clone()).expect("add CA");
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Several requests over a kept-alive connection.
        for path in ["/version", "/cluster/resources?type=vm", "/nodes/node3/lxc"] {
            let r = client
                .get(format!("{}{path}", sim.base_url()))
                .header("Authorization", sim.auth_header())
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(
                r.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/json;charset=UTF-8")
            );
            let v: Value = r.json().await.expect("json");
            assert!(v["data"].is_object() || v["data"].is_array(), "{path}");
        }
        let r = client
            .get(format!("{}/version", sim.base_url()))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401);
        assert!(r.bytes().await.expect("body").is_empty());
    });
}

/// Replication (field set of pve-manager `PVE/API2/Replication.pm` and pve-guest-common
/// `PVE/ReplicationState.pm`; no public capture exists): each node lists the jobs of its own
/// guests with their state, `/cluster/replication` the configuration of all.
#[test]
fn replication_endpoints() {
    let sim = PveSim::start(PveSimOptions::fast());
    let t = sim.now();

    let v = data(&sim, "/nodes/node2/replication");
    assert_eq!(v.as_array().expect("array").len(), 1);
    let j = &v[0];
    assert_eq!(
        (j["id"].as_str(), j["guest"].as_u64(), j["jobnum"].as_u64()),
        (Some("100-0"), Some(100), Some(0))
    );
    assert_eq!(
        (j["type"].as_str(), j["target"].as_str()),
        (Some("local"), Some("node1"))
    );
    assert_eq!(
        (j["source"].as_str(), j["vmtype"].as_str()),
        (Some("node2"), Some("qemu"))
    );
    assert_eq!(j["fail_count"], json!(0));
    let last_sync = j["last_sync"].as_i64().expect("last_sync");
    assert!((t - 310..=t - 290).contains(&last_sync), "{j}");
    assert_eq!(j["last_try"], j["last_sync"]);
    assert!(j["duration"].is_f64());
    assert!(j.get("error").is_none() && j.get("pid").is_none() && j.get("disable").is_none());
    let next = j["next_sync"].as_i64().expect("next_sync");
    assert!(
        next > last_sync && next % 900 == 0,
        "next */15 slot: {next}"
    );

    // The failing job: error text, 3 failures, next retry 30 min after the last try.
    let v = data(&sim, "/nodes/node3/replication");
    let j = &v[0];
    assert_eq!(
        (j["id"].as_str(), j["vmtype"].as_str()),
        (Some("105-0"), Some("lxc"))
    );
    assert_eq!(j["fail_count"], json!(3));
    assert!(
        j["error"]
            .as_str()
            .expect("error")
            .ends_with("failed: exit code 255")
    );
    assert_eq!(
        j["next_sync"].as_i64(),
        Some(j["last_try"].as_i64().expect("last_try") + 1800)
    );
    assert_eq!(
        (j["schedule"].as_str(), j["comment"].as_str()),
        (Some("*/30"), Some("CT 105 standby copy"))
    );

    // Never run: PVE sends 0 for last_sync/last_try.
    let v = data(&sim, "/nodes/node1/replication");
    let j = &v[0];
    assert_eq!(j["id"], "102-0");
    assert_eq!(
        (j["last_sync"].as_i64(), j["last_try"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(j["next_sync"].as_i64().expect("next_sync") > t);
    assert_eq!(data(&sim, "/nodes/node4/replication"), json!([]));
    assert_eq!(
        data(&sim, "/nodes/node3/replication?guest=106"),
        json!([]),
        "guest filter"
    );

    // One job's status is the same object.
    let one = data(&sim, "/nodes/node3/replication/105-0/status");
    assert_eq!(one, v_of(&sim, "/nodes/node3/replication", "105-0"));
    let r = sim.get("/nodes/node2/replication/105-0/status");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "no such replication job '105-0'")
    );

    // Configuration of all jobs, no state.
    let v = data(&sim, "/cluster/replication");
    let ids: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, ["100-0", "105-0", "102-0"]);
    for j in v.as_array().expect("array") {
        assert!(
            j.get("fail_count").is_none() && j.get("last_sync").is_none(),
            "{j}"
        );
        for k in j.as_object().expect("object").keys() {
            assert!(
                [
                    "comment",
                    "disable",
                    "guest",
                    "id",
                    "jobnum",
                    "rate",
                    "remove_job",
                    "schedule",
                    "source",
                    "target",
                    "type"
                ]
                .contains(&k.as_str()),
                "{k} is not in the /cluster/replication schema"
            );
        }
    }

    // The job follows its guest; without VM.Audit it is left out, as PVE does.
    assert!(sim.migrate(100, "node3"));
    assert_eq!(data(&sim, "/nodes/node2/replication"), json!([]));
    assert_eq!(
        data(&sim, "/nodes/node3/replication")
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    sim.set_fault(Fault::MissingPrivilege {
        path: "/vms/105".into(),
    });
    let v = data(&sim, "/nodes/node3/replication");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let r = sim.get("/nodes/node3/replication/105-0/status");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/vms/105, VM.Audit)")
    );
    sim.clear_faults();

    // A success clears the failures; a new failure counts up.
    assert!(sim.set_replication_result("105-0", None));
    let j = v_of(&sim, "/nodes/node3/replication", "105-0");
    assert_eq!(j["fail_count"], json!(0));
    assert!(j.get("error").is_none());
    assert!(sim.set_replication_result("105-0", Some("timeout")));
    let j = v_of(&sim, "/nodes/node3/replication", "105-0");
    assert_eq!(
        (j["fail_count"].as_u64(), j["error"].as_str()),
        (Some(1), Some("timeout"))
    );
    assert!(!sim.set_replication_result("999-0", None));
}

fn v_of(sim: &PveSim, path: &str, id: &str) -> Value {
    data(sim, path)
        .as_array()
        .expect("array")
        .iter()
        .find(|j| j["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} in {path}"))
}

/// ZFS pools (field set of pve-storage `PVE/API2/Disks/ZFS.pm`; no public capture exists).
#[test]
fn zfs_endpoints() {
    let sim = PveSim::start(PveSimOptions::fast());
    let v = data(&sim, "/nodes/node1/disks/zfs");
    let pools = v.as_array().expect("array");
    let names: Vec<&str> = pools.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["rpool", "tank"]);
    for p in pools {
        let keys: BTreeSet<&str> = p
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["alloc", "dedup", "frag", "free", "health", "name", "size"])
        );
        assert_eq!(
            p["free"].as_u64(),
            Some(p["size"].as_u64().expect("size") - p["alloc"].as_u64().expect("alloc"))
        );
    }
    assert_eq!(pools[0]["health"], "ONLINE");
    assert_eq!(pools[1]["health"], "DEGRADED");
    assert_eq!(
        data(&sim, "/nodes/node2/disks/zfs")
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let d = data(&sim, "/nodes/node1/disks/zfs/tank");
    assert_eq!(
        (d["name"].as_str(), d["state"].as_str()),
        (Some("tank"), Some("DEGRADED"))
    );
    assert!(d["status"].is_string() && d["action"].is_string() && d["scan"].is_string());
    assert_eq!(d["errors"], "No known data errors");
    let raidz = &d["children"][0]["children"][0];
    assert_eq!(raidz["name"], "raidz1-0");
    let missing = &raidz["children"][2];
    assert_eq!(missing["state"], "UNAVAIL");
    assert!(
        missing["msg"]
            .as_str()
            .expect("msg")
            .starts_with("was /dev/disk/by-id/")
    );
    assert_eq!(missing["leaf"], json!(1));
    let d = data(&sim, "/nodes/node1/disks/zfs/rpool");
    assert!(d.get("status").is_none() && d.get("action").is_none());
    assert_eq!(sim.get("/nodes/node1/disks/zfs/nope").status, 500);

    // Sys.Audit on / is what PVE checks.
    sim.set_fault(Fault::MissingPrivilege { path: "/".into() });
    let r = sim.get("/nodes/node1/disks/zfs");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/, Sys.Audit)")
    );
    // A fault on one endpoint only.
    sim.set_fault(Fault::PathError {
        prefix: "/nodes/node1/disks/zfs".into(),
        status: 500,
        reason: "zfsutils-linux not installed".into(),
    });
    assert_eq!(sim.get("/nodes/node1/disks/zfs").status, 500);
    assert_eq!(sim.get("/nodes/node2/disks/zfs").status, 200);
    assert_eq!(sim.get("/nodes/node1/disks/list").status, 200);
    sim.clear_faults();
    assert!(sim.set_zfs_health("node1", "rpool", "FAULTED"));
    assert_eq!(data(&sim, "/nodes/node1/disks/zfs")[0]["health"], "FAULTED");
    assert!(!sim.set_zfs_health("node1", "nope", "ONLINE"));
}

/// Time evolution for demos, checked on a frozen clock: storage fills at a steady rate up to
/// its total, a disk's wear-out declines to 0, and a guest's backups can stop.
#[test]
fn time_evolution_on_a_frozen_clock() {
    let sim = PveSim::start(PveSimOptions::fast());
    let t0 = 1_800_000_000;
    sim.freeze_clock(t0);
    assert_eq!(sim.now(), t0);
    let local = |sim: &PveSim, node: &str| v_of_storage(sim, node, "local");
    let before = local(&sim, "node1");
    let used0 = before["used"].as_u64().expect("used");
    let total = before["total"].as_u64().expect("total");
    assert!(sim.set_storage_fill_rate("node1", "local", 3_600_000_000.0));
    assert_eq!(
        local(&sim, "node1")["used"].as_u64(),
        Some(used0),
        "no time, no growth"
    );
    sim.advance_clock(Duration::from_secs(1800));
    let half = local(&sim, "node1");
    assert_eq!(half["used"].as_u64(), Some(used0 + 1_800_000_000));
    assert_eq!(half["avail"].as_u64(), Some(total - used0 - 1_800_000_000));
    let res = data(&sim, "/cluster/resources?type=storage");
    let entry = res
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == "storage/node1/local")
        .expect("node1 local")
        .clone();
    assert_eq!(entry["disk"].as_u64(), Some(used0 + 1_800_000_000));
    assert_eq!(
        local(&sim, "node2")["used"],
        json!(
            sim.world()
                .storages
                .iter()
                .find(|s| s.node == "node2" && s.storage == "local")
                .map(|s| s.used)
        ),
        "node-local: other nodes unaffected"
    );
    // Changing the rate keeps what has accumulated; setting usage restarts from there.
    assert!(sim.set_storage_fill_rate("node1", "local", 7_200_000_000.0));
    sim.advance_clock(Duration::from_secs(1800));
    assert_eq!(
        local(&sim, "node1")["used"].as_u64(),
        Some(used0 + 5_400_000_000)
    );
    sim.advance_clock(Duration::from_secs(10_000 * 3600));
    assert_eq!(
        local(&sim, "node1")["used"].as_u64(),
        Some(total),
        "capped at the total"
    );
    assert!(sim.set_storage_usage("node1", "local", 1000));
    sim.advance_clock(Duration::from_secs(3600));
    assert_eq!(
        local(&sim, "node1")["used"].as_u64(),
        Some(1000 + 7_200_000_000)
    );
    // Shared storage fills everywhere.
    assert!(sim.set_storage_fill_rate("node3", "synology", 1e9));
    let syn0 = v_of_storage(&sim, "node1", "synology")["used"]
        .as_u64()
        .expect("used");
    sim.advance_clock(Duration::from_secs(3600));
    for n in ["node1", "node4"] {
        assert_eq!(
            v_of_storage(&sim, n, "synology")["used"].as_u64(),
            Some(syn0 + 1_000_000_000)
        );
    }
    assert!(!sim.set_storage_fill_rate("node1", "nope", 1.0));

    // Wear-out: "N/A" has nothing to decline from until it gets a number.
    assert!(!sim.set_disk_wear_rate("/dev/sda", 2.0));
    assert!(sim.set_disk_wearout("/dev/sda", 90.0));
    assert!(sim.set_disk_wear_rate("/dev/sda", 2.0));
    let wear = |sim: &PveSim| {
        data(sim, "/nodes/node2/disks/list")
            .as_array()
            .expect("array")
            .iter()
            .find(|d| d["devpath"] == "/dev/sda")
            .expect("sda")["wearout"]
            .clone()
    };
    assert_eq!(wear(&sim), json!(90));
    let mut seen = Vec::new();
    for _ in 0..5 {
        sim.advance_clock(Duration::from_secs(3600));
        seen.push(wear(&sim).as_i64().expect("number"));
    }
    assert_eq!(seen, [88, 86, 84, 82, 80]);
    sim.advance_clock(Duration::from_secs(100 * 3600));
    assert_eq!(wear(&sim), json!(0), "floored at 0");
    assert_eq!(
        data(&sim, "/nodes/node2/disks/list")[1]["wearout"],
        "N/A",
        "other disks untouched"
    );
    assert!(!sim.set_disk_wearout("/dev/nope", 50.0));

    // Backups that stopped three days ago: newest is that old, spacing and count kept.
    let now = sim.now();
    let content = |sim: &PveSim| {
        data(
            sim,
            "/nodes/node1/storage/pbs/content?content=backup&vmid=105",
        )
    };
    let before = content(&sim);
    assert!(sim.stop_backups(105, Duration::from_secs(3 * 86_400)));
    let after = content(&sim);
    let ctimes = |v: &Value| -> Vec<i64> {
        let mut c: Vec<i64> = v
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|b| b["ctime"].as_i64())
            .collect();
        c.sort_unstable();
        c
    };
    let (b, a) = (ctimes(&before), ctimes(&after));
    assert_eq!(a.len(), b.len());
    assert_eq!(a.last().copied(), Some(now - 3 * 86_400));
    assert_eq!(a[1] - a[0], b[1] - b[0]);
    for e in after.as_array().expect("array") {
        let volid = e["volid"].as_str().expect("volid");
        assert!(volid.starts_with("pbs:backup/ct/105/"), "{volid}");
        assert!(
            !before
                .as_array()
                .expect("array")
                .iter()
                .any(|o| o["volid"] == volid),
            "renamed"
        );
    }
    sim.advance_clock(Duration::from_secs(86_400));
    assert_eq!(
        ctimes(&content(&sim)),
        a,
        "no new backups appear by themselves"
    );
    assert!(!sim.stop_backups(4242, Duration::from_secs(1)));
}

fn v_of_storage(sim: &PveSim, node: &str, storage: &str) -> Value {
    data(sim, &format!("/nodes/{node}/storage"))
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["storage"] == storage)
        .cloned()
        .unwrap_or_else(|| panic!("{storage} on {node}"))
}

fn smart(sim: &PveSim, node: &str, disk: &str) -> Value {
    data(sim, &format!("/nodes/{node}/disks/smart?disk={disk}"))
}

fn attribute(v: &Value, id: &str) -> Value {
    v["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// SMART per disk in PVE's three shapes (ATA attributes, NVMe and SAS text), its parameter
/// checks and privilege, and temperatures that tests can set.
#[test]
fn smart_answers_per_drive_type() {
    let sim = PveSim::start(PveSimOptions::fast());
    // The fixture's disks: a SAS drive and two SATA drives, all cool.
    let sas = smart(&sim, "node1", "/dev/sda");
    assert_eq!(
        (&sas["health"], &sas["type"]),
        (&json!("OK"), &json!("text"))
    );
    let text = sas["text"].as_str().expect("text");
    assert!(
        text.starts_with("Current Drive Temperature:     31 C\n"),
        "{text}"
    );
    let sata = smart(&sim, "node3", "/dev/sdb");
    assert_eq!(
        (&sata["health"], &sata["type"]),
        (&json!("PASSED"), &json!("ata"))
    );
    let temp = attribute(&sata, "194");
    assert_eq!(temp["name"], "Temperature_Celsius");
    assert_eq!(temp["raw"], "38 (Min/Max 20/45)");
    assert_eq!(
        attribute(&sata, "  9")["raw"],
        "14123",
        "ids padded as PVE captures them"
    );
    for a in sata["attributes"].as_array().expect("attributes") {
        for key in [
            "id",
            "name",
            "flags",
            "value",
            "normalized",
            "worst",
            "threshold",
            "fail",
            "raw",
        ] {
            assert!(a.get(key).is_some(), "{key} missing: {a}");
        }
    }
    let health = data(&sim, "/nodes/node1/disks/smart?disk=/dev/sdb&healthonly=1");
    assert_eq!(health, json!({"health": "PASSED"}));

    // Set temperatures show on every node's disk with that path.
    assert!(sim.set_disk_temperature("/dev/sdb", 61));
    let hot = smart(&sim, "node2", "/dev/sdb");
    assert_eq!(attribute(&hot, "194")["raw"], "61 (Min/Max 20/61)");
    assert!(!sim.set_disk_temperature("/dev/sdz", 40));
    sim.with_world(|w| {
        let d = w
            .smart
            .iter_mut()
            .find(|d| d.devpath == "/dev/sdc")
            .expect("sdc");
        d.kind = SmartKind::Nvme;
        d.temperature = Some(47);
    });
    let nvme = smart(&sim, "node1", "/dev/sdc");
    assert_eq!(
        (&nvme["type"], &nvme["wearout"]),
        (&json!("text"), &json!(97))
    );
    assert!(
        nvme["text"]
            .as_str()
            .expect("text")
            .contains("\nTemperature:                        47 Celsius\n"),
        "{nvme}"
    );
    // A drive reporting no temperature; a disk smartctl cannot read.
    sim.with_world(|w| {
        w.smart[0].temperature = None;
        w.smart.retain(|d| d.devpath != "/dev/sdc");
    });
    assert!(
        smart(&sim, "node1", "/dev/sda")["text"]
            .as_str()
            .expect("text")
            .contains("<not available>")
    );
    assert_eq!(
        smart(&sim, "node1", "/dev/sdc"),
        json!({"health": "UNKNOWN"})
    );

    // Parameter checks and errors as PVE words them.
    let r = sim.get("/nodes/node1/disks/smart");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (400, "Parameter verification failed.")
    );
    assert!(r.json().expect("json")["errors"]["disk"].is_string());
    assert_eq!(sim.get("/nodes/node1/disks/smart?disk=sda").status, 400);
    let r = sim.get("/nodes/node1/disks/smart?disk=/dev/sdq");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "not a valid block device")
    );
    // Sys.Audit on `/`, not on the node.
    sim.set_fault(Fault::MissingPrivilege {
        path: "/nodes/node1".into(),
    });
    assert_eq!(
        sim.get("/nodes/node1/disks/smart?disk=/dev/sda").status,
        200
    );
    sim.set_fault(Fault::MissingPrivilege { path: "/".into() });
    let r = sim.get("/nodes/node1/disks/smart?disk=/dev/sda");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (403, "Permission check failed (/, Sys.Audit)")
    );
}

/// `/nodes/{node}/certificates/info`: the cluster CA and the node's certificates in PVE's
/// order and field set, and expiries tests can set.
#[test]
fn certificates_per_node() {
    let sim = PveSim::start(PveSimOptions::fast());
    let now = sim.now();
    let certs = |node: &str| data(&sim, &format!("/nodes/{node}/certificates/info"));
    let v = certs("node2");
    let files: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["filename"].as_str())
        .collect();
    assert_eq!(files, ["pve-root-ca.pem", "pve-ssl.pem"]);
    for c in v.as_array().expect("array") {
        for key in [
            "filename",
            "fingerprint",
            "issuer",
            "notafter",
            "notbefore",
            "pem",
            "public-key-bits",
            "public-key-type",
            "san",
            "subject",
        ] {
            assert!(c.get(key).is_some(), "{key} missing: {c}");
        }
        // Healthy by default: more than 14 days to go.
        assert!(c["notafter"].as_i64().expect("notafter") > now + 14 * 86_400);
    }
    assert_eq!(v[1]["issuer"], v[0]["subject"], "signed by the cluster CA");
    assert!(
        v[1]["subject"]
            .as_str()
            .expect("subject")
            .ends_with("CN=node2.example.lan")
    );
    let nodes = data(&sim, "/nodes");
    let fp = nodes
        .as_array()
        .expect("array")
        .iter()
        .find(|n| n["node"] == "node2")
        .expect("node2")["ssl_fingerprint"]
        .clone();
    assert_eq!(v[1]["fingerprint"], fp);

    // A custom (ACME) certificate appears, expiring when set.
    assert!(sim.set_cert_expiry("node2", "pveproxy-ssl.pem", now + 5 * 86_400));
    let v = certs("node2");
    assert_eq!(v[2]["filename"], "pveproxy-ssl.pem");
    assert_eq!(v[2]["notafter"], json!(now + 5 * 86_400));
    assert_eq!(v[2]["notbefore"], json!(now - 85 * 86_400));
    assert_eq!(v[2]["issuer"], "/C=US/O=Let's Encrypt/CN=R11");
    assert_eq!(
        certs("node1").as_array().expect("array").len(),
        2,
        "node2's only"
    );
    // The CA is every node's.
    assert!(sim.set_cert_expiry("node3", "pve-root-ca.pem", now + 86_400));
    assert_eq!(certs("node1")[0]["notafter"], json!(now + 86_400));
    assert!(sim.set_cert_expiry("node1", "pve-ssl.pem", now - 60));
    assert_eq!(certs("node1")[1]["notafter"], json!(now - 60));
    assert!(!sim.set_cert_expiry("node9", "pve-ssl.pem", now));
    assert!(!sim.set_cert_expiry("node1", "other.pem", now));
    // A node that is down answers nothing.
    sim.stop_node("node3");
    assert_eq!(sim.get("/nodes/node3/certificates/info").status, 595);
}

/// The guest agent's filesystems of a VM, the errors of a VM without a running agent, and
/// guest disks tests can fill (containers through `/cluster/resources`).
#[test]
fn guest_agent_filesystems_and_guest_disks() {
    let sim = PveSim::start(PveSimOptions::fast());
    let fsinfo =
        |node: &str, vmid: u32| sim.get(&format!("/nodes/{node}/qemu/{vmid}/agent/get-fsinfo"));
    let r = fsinfo("node2", 100);
    assert_eq!(r.status, 200, "{}", r.reason);
    let result = r.json().expect("json")["data"]["result"].clone();
    let fs = result.as_array().expect("result");
    let mounts: Vec<&str> = fs.iter().filter_map(|f| f["mountpoint"].as_str()).collect();
    assert_eq!(mounts, ["/", "/boot/efi", "/snap/core22/1380"]);
    for f in fs {
        for key in [
            "name",
            "mountpoint",
            "type",
            "total-bytes",
            "used-bytes",
            "disk",
        ] {
            assert!(f.get(key).is_some(), "{key} missing: {f}");
        }
    }
    assert_eq!(fs[0]["disk"][0]["serial"], "drive-scsi0");
    let (used, total) = (
        fs[0]["used-bytes"].as_u64().expect("used"),
        fs[0]["total-bytes"].as_u64().expect("total"),
    );
    // Healthy by default: well under 75 %.
    assert!(used * 100 / total < 30, "{used} of {total}");
    // Only VMs with the agent enabled say so in their status.
    assert_eq!(
        data(&sim, "/nodes/node2/qemu/100/status/current")["agent"],
        1
    );
    assert!(
        data(&sim, "/nodes/node1/qemu/102/status/current")
            .get("agent")
            .is_none()
    );

    assert!(sim.set_guest_disk(100, "/", 30_000_000_000));
    let r = fsinfo("node2", 100).json().expect("json");
    assert_eq!(
        r["data"]["result"][0]["used-bytes"],
        json!(30_000_000_000u64)
    );
    assert!(sim.set_guest_disk(100, "/", u64::MAX));
    let r = fsinfo("node2", 100).json().expect("json");
    assert_eq!(r["data"]["result"][0]["used-bytes"], json!(total), "capped");
    assert!(!sim.set_guest_disk(100, "/home", 1));
    assert!(!sim.set_guest_disk(102, "/", 1), "no agent");

    let reason = |r: RawResponse| (r.status, r.reason);
    assert!(sim.set_guest_agent_running(100, false));
    assert_eq!(
        reason(fsinfo("node2", 100)),
        (500, "QEMU guest agent is not running".into())
    );
    assert!(!sim.set_guest_agent_running(102, true));
    assert_eq!(
        reason(fsinfo("node1", 101)),
        (500, "VM 101 is not running".into())
    );
    sim.set_guest_running(102, true);
    assert_eq!(
        reason(fsinfo("node1", 102)),
        (500, "No QEMU guest agent configured".into())
    );
    assert_eq!(fsinfo("node1", 100).status, 500, "not on that node");
    sim.set_fault(Fault::MissingPrivilege {
        path: "/vms/100".into(),
    });
    assert_eq!(
        reason(fsinfo("node2", 100)),
        (
            403,
            "Permission check failed (/vms/100, VM.GuestAgent.Audit)".into()
        )
    );
    sim.clear_faults();

    // A container's root disk is `disk` of /cluster/resources, capped at its size.
    let disk_of = |vmid: u64| {
        data(&sim, "/cluster/resources?type=vm")
            .as_array()
            .expect("array")
            .iter()
            .find(|g| g["vmid"] == vmid)
            .expect("guest")["disk"]
            .clone()
    };
    assert!(sim.set_guest_disk(106, "/", 7_900_000_000));
    assert_eq!(disk_of(106), json!(7_900_000_000u64));
    assert!(sim.set_guest_disk(106, "/", u64::MAX));
    assert_eq!(disk_of(106), json!(8_350_298_112u64));
    assert!(!sim.set_guest_disk(106, "/var", 1));
    assert!(!sim.set_guest_disk(4242, "/", 1));

    // A hanging agent: only its answers are slow.
    sim.set_fault(Fault::SlowPath {
        prefix: "/nodes/node2/qemu/100/agent".into(),
        delay: Duration::from_millis(300),
    });
    assert!(sim.set_guest_agent_running(100, true));
    let t = Instant::now();
    assert_eq!(sim.get("/nodes/node2/qemu/100/status/current").status, 200);
    assert!(t.elapsed() < Duration::from_millis(300));
    assert_eq!(fsinfo("node2", 100).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn backup_jobs_run_as_one_task_with_a_log() {
    let sim = PveSim::start(PveSimOptions::fast());
    let upid = sim.add_vzdump_job(
        "node1",
        &[
            (102, None),
            (
                200,
                Some("unable to open file '/etc/pve/nodes/node1/qemu-server/200.conf.tmp.4242' - Permission denied"),
            ),
        ],
    );
    let whole = sim.add_failed_vzdump_job("node1", "could not activate storage 'pbs'");
    // One task per job, without a VMID: in the task list and in its UPID.
    assert!(upid.contains(":vzdump::root@pam:"), "{upid}");
    let since = sim.now() - 86_400;
    let tasks = data(&sim, &format!("/nodes/node1/tasks?errors=1&since={since}"));
    let job = tasks
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["upid"] == upid.as_str())
        .expect("the job's task")
        .clone();
    assert_eq!(
        (
            job["type"].as_str(),
            job["id"].as_str(),
            job["status"].as_str()
        ),
        (Some("vzdump"), Some(""), Some("job errors"))
    );
    assert_shape(
        "tasks",
        &json!([job]),
        &fixture("nodes_node_tasks.vzdump_ok.pve9.json")["data"],
        &[],
        &[],
    );

    // Its log: numbered lines, PVE's default page of 50, `start`/`limit`, `total`.
    let r = sim.get(&format!("/nodes/node1/tasks/{upid}/log?start=0&limit=500"));
    let body = ok(&r, "task log");
    let lines = body["data"].as_array().expect("array");
    assert_eq!(body["total"].as_u64(), Some(lines.len() as u64));
    assert_eq!(lines[0]["n"], json!(1));
    let text: Vec<&str> = lines.iter().map(|l| l["t"].as_str().expect("t")).collect();
    assert!(
        text[0].starts_with("INFO: starting new backup job: vzdump 102 200 --mode snapshot"),
        "{text:?}"
    );
    assert!(text.contains(&"INFO: Finished Backup of VM 102 (00:00:12)"));
    assert!(text.iter().any(|t| t.starts_with(
        "ERROR: Backup of VM 200 failed - unable to open file '/etc/pve/nodes/node1/qemu-server/200.conf.tmp.4242'"
    )));
    assert_eq!(text.last(), Some(&"TASK ERROR: job errors"));
    let page = data(
        &sim,
        &format!("/nodes/node1/tasks/{upid}/log?start=1&limit=2"),
    );
    assert_eq!(page, json!([lines[1], lines[2]]));
    let whole_log = data(&sim, &format!("/nodes/node1/tasks/{whole}/log"));
    assert_eq!(
        whole_log,
        json!([
            {"n": 1, "t": "INFO: starting new backup job: vzdump --all 1 --mode snapshot --storage pbs"},
            {"n": 2, "t": "TASK ERROR: could not activate storage 'pbs'"}
        ])
    );
    // Not there, malformed, or without the privilege.
    assert_eq!(
        sim.get(&format!("/nodes/node2/tasks/{upid}/log")).status,
        500
    );
    assert_eq!(sim.get("/nodes/node1/tasks/nope/log").status, 400);
    sim.set_fault(Fault::MissingPrivilege {
        path: "/nodes/node1".into(),
    });
    assert_eq!(
        sim.get(&format!("/nodes/node1/tasks/{upid}/log")).status,
        403
    );
}

#[test]
fn a_failing_disk_says_failed_like_smartctl() {
    let sim = PveSim::start(PveSimOptions::fast());
    assert!(sim.set_disk_health("/dev/sdb", "FAILED!"));
    assert!(!sim.set_disk_health("/dev/nope", "FAILED!"));
    let disks = data(&sim, "/nodes/node1/disks/list");
    let sdb = disks
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["devpath"] == "/dev/sdb")
        .expect("sdb")
        .clone();
    assert_eq!(sdb["health"], "FAILED!");
    assert_eq!(smart(&sim, "node1", "/dev/sdb")["health"], "FAILED!");
    assert_eq!(
        data(&sim, "/nodes/node1/disks/smart?disk=/dev/sdb&healthonly=1"),
        json!({"health": "FAILED!"})
    );
}

#[test]
fn a_flaky_node_fails_or_delays_a_seeded_share_of_requests() {
    let sim = PveSim::start(PveSimOptions::fast());
    let fault = Fault::Flaky {
        seed: 7,
        percent: 20,
        delay: Duration::from_millis(400),
    };
    sim.set_fault(fault.clone());
    let outcomes = |sim: &PveSim| -> Vec<char> {
        (0..100)
            .map(|_| {
                let t = Instant::now();
                let r = sim.get("/version");
                match r.status {
                    500 => {
                        assert_eq!(r.reason, "Internal Server Error");
                        'e'
                    }
                    200 if t.elapsed() >= Duration::from_millis(400) => 's',
                    200 => '.',
                    other => panic!("status {other}"),
                }
            })
            .collect()
    };
    let first = outcomes(&sim);
    let errors = first.iter().filter(|c| **c == 'e').count();
    let slow = first.iter().filter(|c| **c == 's').count();
    assert!((3..=20).contains(&errors), "{errors} errors");
    assert!((3..=20).contains(&slow), "{slow} slow");
    assert!((12..=30).contains(&(errors + slow)), "{first:?}");
    // The same seed from the same request number misbehaves alike.
    let again = PveSim::start(PveSimOptions::fast());
    again.set_fault(fault);
    assert_eq!(outcomes(&again), first);
    sim.clear_faults();
    assert_eq!(sim.get("/version").status, 200);
}
