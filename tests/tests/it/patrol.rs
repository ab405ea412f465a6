//! Patrol end to end: a real agent reads the Proxmox VE simulator (a container whose backups
//! stopped four days ago), a real server stores it, `POST /api/ai/patrol/run` finds it, and
//! the findings API shows it in the fixed contract shape and takes operator actions. A real
//! agent reading the Kubernetes simulator shows the signals Patrol reads from the cluster: an
//! OOM crash loop's cause, node pressure, a Warning event storm. A new Warden reading the PBS
//! simulator forecasts a datastore from PBS's own estimate.

use serde_json::{Value, json};
use std::time::Duration;
use warden_sim::k8s::{K8sSim, K8sSimOptions, Kind, Pressure};
use warden_sim::pbs::{PbsSim, PbsSimOptions};
use warden_sim::pve::{PveSim, PveSimOptions};
use warden_tests::{AgentProc, ServerProc, eventually};

const CT: &str = "lxc:clustername/105";

fn finding(server: &ServerProc, query: &str) -> Option<Value> {
    let (s, v) = server.get(&format!("/api/ai/patrol/findings{query}"));
    assert_eq!(s, 200, "{v}");
    v["findings"]
        .as_array()?
        .iter()
        .find(|f| f["resource_id"] == CT && f["key"] == "backup-age")
        .cloned()
}

/// The PVE simulator with CT 105's backups stopped four days ago, a server, and an agent
/// reading the simulator, once CT 105's backup age is stored.
fn fleet(dir: &std::path::Path) -> (PveSim, ServerProc, AgentProc) {
    let sim = PveSim::start(PveSimOptions::fast());
    // Four days and an hour: past twice the 48-hour limit even when Patrol runs within the
    // second the agent first reports (the age is in whole seconds).
    assert!(sim.stop_backups(105, Duration::from_secs(4 * 86_400 + 3_600)));
    let server = ServerProc::start(&dir.join("server"), &[]);
    let mut agent = AgentProc::proxmox(&dir.join("agent"), &sim);
    agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    eventually(
        Duration::from_secs(30),
        "CT 105's backup age stored",
        || {
            let (s, v) = server.get(&format!("/api/resources/{CT}"));
            let (_, node) = server.get("/api/resources/node:node1");
            (s == 200
                && v["metrics"]["backup_last_age_seconds{storage=\"pbs\"}"]["value"].is_number()
                && node["metrics"]["updates_pending"]["value"].is_number())
            .then_some(())
        },
    );
    (sim, server, agent)
}

#[test]
fn patrol_finds_stopped_backups_and_operators_act_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (_sim, server, _agent) = fleet(tmp.path());

    let (s, run) = server.post("/api/ai/patrol/run", None);
    assert_eq!(s, 200, "{run}");
    assert!(run["new"].as_u64().unwrap() >= 1, "{run}");
    assert!(
        run["resources_checked"]["lxc"].as_u64().unwrap() >= 1,
        "{run}"
    );
    assert_eq!(run["trigger"], "manual");

    // The fixed contract (DESIGN §1.1), field by field.
    let f = finding(&server, "?category=backup").expect("a backup-age finding for CT 105");
    for field in [
        "id",
        "key",
        "severity",
        "category",
        "resource_id",
        "resource_name",
        "resource_type",
        "node",
        "title",
        "description",
        "recommendation",
        "evidence",
        "source",
        "detected_at",
        "last_seen_at",
        "alert_id",
        "times_raised",
        "suppressed",
    ] {
        assert!(f.get(field).is_some(), "missing {field}: {f}");
    }
    // Four days is twice the 48-hour limit: several nightly backups missed, critical.
    assert_eq!(
        (
            &f["severity"],
            &f["category"],
            &f["source"],
            &f["resource_type"]
        ),
        (
            &json!("critical"),
            &json!("backup"),
            &json!("heuristic"),
            &json!("lxc")
        )
    );
    assert_eq!(
        (&f["times_raised"], &f["suppressed"]),
        (&json!(1), &json!(false))
    );
    assert!(f["alert_id"].is_null() && f["node"] == "node3", "{f}");
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .contains("backup_last_age_seconds")
    );
    assert!(f["detected_at"].as_str().unwrap().ends_with('Z'));
    let id = f["id"].as_str().unwrap().to_owned();

    // The simulator's nodes list five pending package updates: one info finding on the node.
    let (_, all) = server.get("/api/ai/patrol/findings?resource_id=node:node1");
    let updates = all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "updates-pending")
        .cloned()
        .unwrap_or_else(|| panic!("no updates-pending finding: {all}"));
    assert_eq!(
        (&updates["severity"], &updates["evidence"]),
        (&json!("info"), &json!("updates_pending = 5")),
        "{updates}"
    );

    // Found again: same id, raised twice.
    assert_eq!(server.post("/api/ai/patrol/run", None).0, 200);
    let f = finding(&server, "").unwrap();
    assert_eq!(
        (f["id"].as_str(), &f["times_raised"]),
        (Some(id.as_str()), &json!(2))
    );

    // Operator actions, with clear errors for bad ones.
    let act = |action: &str, body: Option<Value>| {
        server.post(&format!("/api/ai/patrol/findings/{id}/{action}"), body)
    };
    let (s, v) = act("dismiss", Some(json!({})));
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("will_fix_later"), "{v}");
    assert_eq!(act("explode", None).0, 404);
    assert_eq!(
        server
            .post("/api/ai/patrol/findings/0000/acknowledge", None)
            .0,
        404
    );
    let (s, v) = act("acknowledge", None);
    assert!(s == 200 && v["acknowledged_at"].is_string(), "{v}");
    let (s, v) = act("note", Some(json!({"text": "new disks ordered"})));
    assert!(
        s == 200 && v["notes"][0]["text"] == "new disks ordered",
        "{v}"
    );
    let (s, v) = act("dismiss", Some(json!({"reason": "will_fix_later"})));
    assert!(
        s == 200 && v["status"] == "dismissed" && v["dismissed_reason"] == "will_fix_later",
        "{v}"
    );
    // The same severity found again does not re-open it.
    assert_eq!(server.post("/api/ai/patrol/run", None).0, 200);
    let f = finding(&server, "?status=dismissed").expect("still dismissed");
    assert_eq!(f["times_raised"], 3);
    assert!(finding(&server, "?status=active").is_none());

    // Suppression by category marks it; removing the rule works once.
    let (s, rule) = server.post(
        "/api/ai/patrol/suppressions",
        Some(json!({"category": "backup"})),
    );
    assert_eq!(s, 200, "{rule}");
    assert_eq!(
        server
            .post("/api/ai/patrol/suppressions", Some(json!({})))
            .0,
        400
    );
    assert_eq!(server.post("/api/ai/patrol/run", None).0, 200);
    assert_eq!(finding(&server, "").unwrap()["suppressed"], true);
    let (_, rules) = server.get("/api/ai/patrol/suppressions");
    assert_eq!(rules.as_array().unwrap().len(), 1);
    let rule_id = rule["id"].as_str().unwrap();
    let url = format!(
        "http://{}/api/ai/patrol/suppressions/{rule_id}",
        server.http
    );
    let token = server.admin_token();
    assert_eq!(
        warden_tests::http(&url, "DELETE", Some(&token), None).0,
        200
    );
    assert_eq!(
        warden_tests::http(&url, "DELETE", Some(&token), None).0,
        404
    );

    // Bad filters are 400s; runs are listed newest first.
    assert_eq!(server.get("/api/ai/patrol/findings?severity=loud").0, 400);
    assert_eq!(server.get("/api/ai/patrol/findings?limit=0").0, 400);
    let (_, runs) = server.get("/api/ai/patrol/runs");
    let ids: Vec<u64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{runs}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    // The default schedule: every 6 hours, the next run due, the last one the newest.
    let (s, st) = server.get("/api/ai/patrol/status");
    assert_eq!(s, 200, "{st}");
    assert_eq!(
        (&st["scheduled"], &st["interval_seconds"]),
        (&json!(true), &json!(21_600))
    );
    assert_eq!(st["last_run"]["id"].as_u64(), Some(ids[0]));
    assert!(
        st["next_run_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{st}"
    );
}

/// `PUT /api/ai/patrol/settings`: every problem named and nothing changed on a bad body; a
/// per-resource override applies to its resource only; the interval reschedules; settings
/// survive a restart. Then `warden findings` and the `suppress` action.
#[test]
fn settings_overrides_cli_and_suppress() {
    const OTHER: &str = "lxc:clustername/106";
    let tmp = tempfile::tempdir().unwrap();
    let (_sim, mut server, _agent) = fleet(tmp.path());
    let put = |server: &ServerProc, body: Value| {
        let url = format!("http://{}/api/ai/patrol/settings", server.http);
        warden_tests::http(&url, "PUT", Some(&server.admin_token()), Some(body))
    };

    let (s, defaults) = server.get("/api/ai/patrol/settings");
    assert_eq!(s, 200, "{defaults}");
    assert_eq!(defaults["interval"], "6h");
    assert_eq!(defaults["thresholds"]["storage"]["warning"], 80.0);
    assert_eq!(defaults["thresholds"]["backup_max_age_s"], 172_800.0);
    assert!(defaults["overrides"].as_object().unwrap().is_empty());

    let (s, v) = put(
        &server,
        json!({
            "interval": "1m",
            "thresholds": {"node": {"warning": 90.0, "critical": 80.0}},
            "overrides": {"lxc:clustername/106": {"backup_max_age_s": -1.0}, "oops": {}},
        }),
    );
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    for needle in [
        "interval \"1m\"",
        "thresholds.node: warning (90) must be below critical (80)",
        "overrides.lxc:clustername/106.backup_max_age_s",
        "overrides.oops: not a resource id",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    let (s, v) = put(&server, json!({"interval": "1h", "surprise": 1}));
    assert!(s == 400 && v.to_string().contains("surprise"), "{v}");
    assert_eq!(server.get("/api/ai/patrol/settings").1, defaults);

    // CT 106's newest backup is ~25 h old: fine by the default 48 h, not by its override.
    let (s, v) = put(
        &server,
        json!({
            "interval": "1h",
            "overrides": {OTHER: {"backup_max_age_s": 72_000.0}},
        }),
    );
    assert_eq!(s, 200, "{v}");
    let (_, st) = server.get("/api/ai/patrol/status");
    assert_eq!(st["interval_seconds"], 3600, "{st}");
    assert_eq!(server.post("/api/ai/patrol/run", None).0, 200);
    let (_, list) = server.get("/api/ai/patrol/findings?category=backup");
    let mut backup: Vec<&str> = list["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["resource_id"].as_str().unwrap())
        .collect();
    backup.sort_unstable();
    assert_eq!(backup, [CT, OTHER], "{list}");

    // The table: most severe first, one line per finding plus what to do.
    let out = server.cli(&["findings"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("SEVERITY") && lines[0].contains("RESOURCE"),
        "{table}"
    );
    for (level, id) in [("CRITICAL", CT), ("WARNING", OTHER)] {
        assert!(
            lines.iter().any(|l| l.starts_with(level) && l.contains(id)),
            "{table}"
        );
    }
    assert!(table.contains("-> Check the backup job"), "{table}");
    let out = server.cli(&["findings", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, active) = server.get("/api/ai/patrol/findings?status=active");
    assert_eq!(json, active["findings"]);

    // Suppress: the finding is marked at once and a rule for its resource and category exists.
    let other = list["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["resource_id"] == OTHER)
        .unwrap();
    let (s, v) = server.post(
        &format!(
            "/api/ai/patrol/findings/{}/suppress",
            other["id"].as_str().unwrap()
        ),
        None,
    );
    assert!(s == 200 && v["suppressed"] == true, "{v}");
    let (_, rules) = server.get("/api/ai/patrol/suppressions");
    assert_eq!(rules[0]["id"], v["suppression_id"], "{rules} vs {v}");
    assert_eq!(
        (&rules[0]["resource_id"], &rules[0]["category"]),
        (&json!(OTHER), &json!("backup"))
    );

    // Saved settings outlive the process; the schedule follows them.
    server.restart();
    let (_, saved) = server.get("/api/ai/patrol/settings");
    assert_eq!(saved["interval"], "1h");
    assert_eq!(saved["overrides"][OTHER]["backup_max_age_s"], 72_000.0);
    let (_, st) = server.get("/api/ai/patrol/status");
    assert_eq!(st["interval_seconds"], 3600, "{st}");
    let (s, v) = put(&server, json!({"interval": "0"}));
    assert_eq!(s, 200, "{v}");
    let (_, st) = server.get("/api/ai/patrol/status");
    assert_eq!(
        (&st["scheduled"], &st["next_run_at"]),
        (&json!(false), &Value::Null),
        "{st}"
    );
}

/// Kubernetes through the real collector: a pod OOM-killed in a loop (the finding names the
/// cause and says to raise the memory limit), a node under memory pressure, and a storm of
/// Warning events about a running pod.
#[test]
fn kubernetes_signals_become_findings_with_their_cause() {
    const CLUSTER: &str = "k8s-trouble";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let kube = K8sSim::start(K8sSimOptions::default());
    let kubeconfig = dir.join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig).unwrap();
    let server = ServerProc::start(&dir.join("server"), &[]);
    let mut agent = AgentProc::new(
        &dir.join("agent"),
        &format!(
            "hostname = \"k8s-agent\"\n[collectors.host]\nenabled = false\n\
             [collectors.docker]\nenabled = false\n[collectors.kubernetes]\nenabled = true\n\
             cluster = \"{CLUSTER}\"\nkubeconfig = \"{}\"\ninterval = \"2s\"\ntimeout = \"2s\"\n",
            kubeconfig.display()
        ),
    );
    agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);

    // A running pod other than the one that will crash, for the storm.
    let noisy = kube
        .objects(Kind::Pod)
        .into_iter()
        .filter(|p| p["metadata"]["namespace"] == "shop" && p["metadata"]["name"] != "db-0")
        .find_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .expect("a second pod in shop");
    assert!(kube.crashloop_pod_with("shop", "db-0", "OOMKilled", 137));
    assert!(kube.set_node_pressure("worker-2", Pressure::Memory, true));
    for _ in 0..120 {
        kube.add_warning_event(
            "shop",
            "Pod",
            &noisy,
            "FailedMount",
            "MountVolume.SetUp failed for volume \"tls\" : secret \"web-tls\" not found",
        );
    }

    let pod = format!("pod:{CLUSTER}/shop/db-0");
    let node = format!("k8s-node:{CLUSTER}/worker-2");
    let cluster = format!("k8s-cluster:{CLUSTER}");
    let found = eventually(Duration::from_secs(60), "the three findings", || {
        let (s, run) = server.post("/api/ai/patrol/run", None);
        assert_eq!(s, 200, "{run}");
        let (_, v) = server.get("/api/ai/patrol/findings?include_linked=true&limit=500");
        let list = v["findings"].as_array().cloned().unwrap_or_default();
        let get = |id: &str, key: &str| {
            list.iter()
                .find(|f| f["resource_id"] == id && f["key"] == key)
                .cloned()
        };
        // All 120 warnings counted (the watch delivers them one by one).
        let storm = get(&cluster, "k8s-warning-storm")
            .filter(|f| f["evidence"].as_str().is_some_and(|e| e.contains(" 120 (")))?;
        let got = (
            get(&pod, "pod-crashloop")?,
            get(&node, "k8s-node-pressure")?,
            storm,
        );
        std::thread::sleep(Duration::from_millis(500));
        Some(got)
    });
    let (crash, pressure, storm) = found;
    let text = |f: &Value, field: &str| f[field].as_str().unwrap_or_default().to_owned();
    assert!(
        text(&crash, "evidence").contains("last termination: OOMKilled (exit code 137)"),
        "{crash}"
    );
    assert!(
        text(&crash, "recommendation").contains("resources.limits.memory"),
        "{crash}"
    );
    assert_eq!(pressure["severity"], "warning", "{pressure}");
    assert!(
        text(&pressure, "evidence").contains("MemoryPressure = True"),
        "{pressure}"
    );
    let evidence = text(&storm, "evidence");
    assert!(
        evidence.contains(&format!("pod:{CLUSTER}/shop/{noisy} 120 (FailedMount")),
        "{storm}"
    );
    assert_eq!(storm["severity"], "watch", "{storm}");
}

/// A server that has just started watching a Proxmox Backup Server has no history to forecast
/// from: PBS's own estimate (`estimated-full-date`) makes the datastore's forecast, and says so.
#[test]
fn a_new_server_forecasts_a_datastore_from_the_estimate_of_pbs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = PbsSimOptions::fast();
    let token = opts.token.clone();
    let pbs = PbsSim::start(opts);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // store1 full in 5 days (warning), slow-xfs growing slowly (a year: nothing).
    assert!(pbs.set_estimated_full_date("store1", Some(now_s + 5 * 86_400)));
    assert!(pbs.set_estimated_full_date("slow-xfs", Some(now_s + 365 * 86_400)));
    let (token_id, secret) = token.split_once(':').unwrap();
    let secret_file = dir.join("pbs.secret");
    warden_io::fs::write_private(&secret_file, format!("{secret}\n").as_bytes()).unwrap();
    let server = ServerProc::start(&dir.join("server"), &[]);
    let mut agent = AgentProc::new(
        &dir.join("agent"),
        &format!(
            "hostname = \"pbs1\"\n[collectors.host]\nenabled = false\n[collectors.docker]\n\
             enabled = false\n[collectors.pbs]\nenabled = true\nurl = \"{}\"\n\
             token_id = \"{token_id}\"\ntoken_secret_file = \"{}\"\nfingerprint = \"{}\"\n\
             interval = \"2s\"\ntimeout = \"2s\"\n",
            pbs.base_url(),
            secret_file.display(),
            pbs.cert_fingerprint()
        ),
    );
    agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    let store1 = eventually(Duration::from_secs(30), "PBS's estimate stored", || {
        let (_, list) = server.get("/api/resources");
        list.as_array()?
            .iter()
            .find(|r| {
                r["type"] == "pbs-datastore"
                    && r["name"] == "store1"
                    && r["metrics"]["datastore_days_to_full"]["value"].is_number()
            })
            .and_then(|r| r["id"].as_str().map(str::to_owned))
    });
    let (s, run) = server.post("/api/ai/patrol/run", None);
    assert_eq!(s, 200, "{run}");
    let (_, v) = server.get("/api/ai/patrol/findings?limit=500");
    let forecasts: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["key"] == "storage-forecast")
        .collect();
    assert_eq!(forecasts.len(), 1, "{v}");
    let f = forecasts[0];
    assert_eq!(
        (&f["resource_id"], &f["severity"], &f["source"]),
        (&json!(store1), &json!("warning"), &json!("forecast")),
        "{f}"
    );
    let evidence = f["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with("datastore_days_to_full = 5.0 (PBS's estimated-full-date)"),
        "{f}"
    );
    assert!(
        f["title"]
            .as_str()
            .unwrap()
            .contains("PBS expects it full in ~5 days"),
        "{f}"
    );
    let days = f["capacity_forecast"]["days_to_full"].as_f64().unwrap();
    assert!((4.9..=5.0).contains(&days), "{f}");
}
