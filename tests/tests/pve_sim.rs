//! Tests of the Proxmox VE API simulator: envelope, quirks and field shapes against the real
//! captures in `tests/fixtures/pve/`, authentication failures, fault modes and scenarios.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use warden_tests::sim::RawResponse;
use warden_tests::sim::pve::{Fault, PveSim, PveSimOptions};

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
    let err = warden_tests::sim::https_get(
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
