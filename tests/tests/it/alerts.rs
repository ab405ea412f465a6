//! Alerts end to end: a real agent reads the Proxmox VE simulator, a real server (alert
//! interval 1 s) stores it; a rule override with a 3-second duration set through the API makes
//! a filling storage fire an alert, which triggers a Patrol run, is acknowledged, survives a
//! server restart with its id, holds through the hysteresis band and resolves when the
//! storage is freed; the timeline tells the story in order. Bad rule sets get clear 400s.

use serde_json::{Value, json};
use std::time::Duration;
use warden_sim::pve::{PveSim, PveSimOptions};
use warden_tests::{AgentProc, ServerProc, eventually};

const STORAGE: &str = "storage:node1/local";
/// `local` on node1 in the simulator's default world.
const TOTAL: u64 = 951_055_941_632;
const WAIT: Duration = Duration::from_secs(60);

fn pct(p: f64) -> u64 {
    (TOTAL as f64 * p / 100.0) as u64
}

fn put(server: &ServerProc, path: &str, body: Value) -> (u16, Value) {
    warden_tests::http(
        &format!("http://{}{path}", server.http),
        "PUT",
        Some(&server.admin_token()),
        Some(body),
    )
}

/// The alerts of the storage in `state` (`firing`, `resolved`, `all`).
fn storage_alerts(server: &ServerProc, state: &str) -> Vec<Value> {
    let (s, v) = server.get(&format!("/api/alerts?state={state}&resource_id={STORAGE}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["offset"], 0, "{v}");
    let list = v["alerts"].as_array().cloned().unwrap_or_default();
    assert_eq!(v["total"].as_u64(), Some(list.len() as u64), "{v}");
    list
}

fn alert(server: &ServerProc, id: &str) -> Value {
    let (s, v) = server.get(&format!("/api/alerts/{id}"));
    assert_eq!(s, 200, "{v}");
    v
}

fn bad_rules(server: &ServerProc, body: Value, needle: &str) {
    let (s, v) = put(server, "/api/alerts/rules", body);
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
}

#[test]
fn a_filling_storage_fires_an_alert_that_is_acknowledged_analysed_and_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = PveSim::start(PveSimOptions::fast());
    let config = tmp.path().join("server.toml");
    std::fs::write(&config, "alert_interval = \"1s\"\n").unwrap();
    let mut server = ServerProc::start(
        &tmp.path().join("server"),
        &["--config", config.to_str().unwrap()],
    );

    let mut agent = AgentProc::proxmox(&tmp.path().join("agent"), &sim);
    agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    eventually(WAIT, "node1's local storage usage stored", || {
        let (s, v) = server.get(&format!("/api/resources/{STORAGE}"));
        (s == 200 && v["metrics"]["storage_used_pct"]["value"].is_number()).then_some(())
    });

    // The defaults are in force until a set is stored: Patrol's levels, 5 minutes.
    let (s, defaults) = server.get("/api/alerts/rules");
    assert_eq!(s, 200, "{defaults}");
    let storage_rule = defaults["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "storage-usage")
        .cloned()
        .expect("a default storage rule");
    assert_eq!(
        (
            &storage_rule["warning"],
            &storage_rule["critical"],
            &storage_rule["for_s"],
            &storage_rule["hysteresis"]
        ),
        (&json!(80.0), &json!(90.0), &json!(300), &json!(5.0))
    );
    assert!(storage_alerts(&server, "all").is_empty());

    // Bad rule sets: 400 with a message that says what and where; nothing stored.
    let with_rule = |patch: Value| {
        let mut set = defaults.clone();
        let rule = set["rules"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|r| r["id"] == "storage-usage")
            .unwrap();
        for (k, v) in patch.as_object().unwrap() {
            rule[k] = v.clone();
        }
        set
    };
    bad_rules(
        &server,
        with_rule(json!({"warning": 95.0})),
        "the warning level (95) must be below the critical level (90)",
    );
    bad_rules(
        &server,
        with_rule(json!({"for_s": 100_000})),
        "for_s must be 0 to 86400 seconds",
    );
    bad_rules(
        &server,
        with_rule(json!({"hysteresis": -2.0})),
        "hysteresis must be a number >= 0",
    );
    bad_rules(
        &server,
        with_rule(json!({"id": "node-cpu"})),
        "duplicate rule id \"node-cpu\"",
    );
    bad_rules(
        &server,
        with_rule(json!({"colour": "red"})),
        "unknown field `colour`",
    );
    let mut bad_override = defaults.clone();
    bad_override["overrides"] = json!([{"resource_id": "local", "rule_id": "storage-usage"}]);
    bad_rules(
        &server,
        bad_override,
        "overrides[0]: resource_id \"local\": resource id must look like <type>:<name>",
    );
    bad_rules(&server, json!({"rules": "all"}), "rules");
    assert_eq!(
        server.get("/api/alerts/rules").1,
        defaults,
        "nothing stored"
    );

    // This storage gets a 3-second duration; the rule set is read back as stored.
    let mut set = defaults.clone();
    set["overrides"] = json!([{"resource_id": STORAGE, "rule_id": "storage-usage", "for_s": 3}]);
    let (s, stored) = put(&server, "/api/alerts/rules", set.clone());
    assert_eq!(s, 200, "{stored}");
    assert_eq!(server.get("/api/alerts/rules").1, stored);
    assert_eq!(stored["overrides"][0]["for_s"], 3);

    // The storage fills to 94.6 %: critical once it has held for 3 seconds.
    assert!(sim.set_storage_usage("node1", "local", pct(94.6)));
    let fired = eventually(WAIT, "a firing alert on the storage", || {
        storage_alerts(&server, "firing").into_iter().next()
    });
    for field in [
        "id",
        "rule_id",
        "rule_name",
        "resource_id",
        "resource_name",
        "resource_type",
        "metric",
        "severity",
        "state",
        "value",
        "threshold",
        "fired_at",
        "acknowledged_at",
        "resolved_at",
        "org_id",
    ] {
        assert!(fired.get(field).is_some(), "missing {field}: {fired}");
    }
    assert_eq!(
        (
            &fired["rule_id"],
            &fired["resource_type"],
            &fired["resource_name"],
            &fired["metric"],
            &fired["severity"],
            &fired["state"],
            &fired["threshold"],
            &fired["org_id"],
        ),
        (
            &json!("storage-usage"),
            &json!("storage"),
            &json!("local"),
            &json!("storage_used_pct"),
            &json!("critical"),
            &json!("firing"),
            &json!(90.0),
            &json!("default"),
        ),
        "{fired}"
    );
    assert!(fired["value"].as_f64().unwrap() > 94.0, "{fired}");
    assert!(
        fired["fired_at"].as_str().unwrap().ends_with('Z'),
        "{fired}"
    );
    assert!(
        fired["acknowledged_at"].is_null() && fired["resolved_at"].is_null(),
        "{fired}"
    );
    assert!(
        fired.get("timeline").is_none(),
        "lists leave the timeline out"
    );
    let id = fired["id"].as_str().unwrap().to_owned();
    let one = alert(&server, &id);
    assert_eq!(one["timeline"][0]["event"], "fired", "{one}");
    let detail = one["timeline"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("critical >= 90"), "{detail}");

    // The alert asked Patrol for a run, which names it.
    let run = eventually(WAIT, "a patrol run triggered by the alert", || {
        let (s, runs) = server.get("/api/ai/patrol/runs");
        assert_eq!(s, 200, "{runs}");
        runs.as_array()?
            .iter()
            .find(|r| r["trigger"] == "alert" && r["alert_id"] == id.as_str())
            .cloned()
    });
    assert!(
        run["resources_checked"]["storage"].as_u64().unwrap() >= 1,
        "{run}"
    );
    // The finding it raised carries the alert's id; the alert's evidence is the finding's
    // while Patrol's own 10-minute window has not passed yet.
    let raised = run["alert_findings"].as_array().unwrap();
    assert_eq!(raised.len(), 1, "{run}");
    let (_, f) = server.get(&format!(
        "/api/ai/patrol/findings?resource_id={}",
        fired["resource_id"].as_str().unwrap()
    ));
    let f = &f["findings"][0];
    assert_eq!((&f["id"], &f["alert_id"]), (&raised[0], &json!(id)), "{f}");
    assert!(f["evidence"].as_str().unwrap().contains("94.6"), "{f}");

    // Acknowledge: once, with a comment; again changes nothing; unknown ids are 404s.
    let ack = |body: Option<Value>| server.post(&format!("/api/alerts/{id}/acknowledge"), body);
    let (s, acked) = ack(Some(json!({"comment": "ordering disks"})));
    assert_eq!(s, 200, "{acked}");
    assert!(acked["acknowledged_at"].is_string(), "{acked}");
    assert_eq!(
        (&acked["acknowledged"], &acked["state"]),
        (&json!(true), &json!("firing"))
    );
    let (s, again) = ack(None);
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["acknowledged_at"], acked["acknowledged_at"]);
    assert_eq!(
        ack(Some(json!({"note": "x"}))).0,
        400,
        "unknown body fields are refused"
    );
    let (s, v) = server.post("/api/alerts/00000000000000ff/acknowledge", None);
    assert_eq!((s, &v["error"]["code"]), (404, &json!("not_found")), "{v}");
    assert_eq!(server.get("/api/alerts/00000000000000ff").0, 404);
    assert_eq!(server.get("/api/alerts/00000000000000ff/timeline").0, 404);
    let (_, v) = server.get("/api/alerts?acknowledged=true");
    assert_eq!(v["total"], 1, "{v}");
    let (_, v) = server.get("/api/alerts?acknowledged=false");
    assert_eq!(v["total"], 0, "{v}");

    // A restart keeps the firing alert and its id: no second alert.
    let before = alert(&server, &id)["value_at"].as_str().unwrap().to_owned();
    server.restart();
    eventually(WAIT, "the alert updated by the restarted server", || {
        let a = alert(&server, &id);
        (a["value_at"].as_str().unwrap() > before.as_str()).then_some(())
    });
    let all = storage_alerts(&server, "all");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], id.as_str());

    // 87 % is under the critical level but within its hysteresis (90 - 5): still critical.
    assert!(sim.set_storage_usage("node1", "local", pct(87.0)));
    let a = eventually(WAIT, "the alert showing 87 %", || {
        let a = alert(&server, &id);
        (a["value"].as_f64().unwrap() < 90.0).then_some(a)
    });
    assert_eq!(
        (&a["state"], &a["severity"]),
        (&json!("firing"), &json!("critical")),
        "{a}"
    );

    // Freed: past 80 - 5, resolved.
    assert!(sim.set_storage_usage("node1", "local", pct(10.0)));
    let resolved = eventually(WAIT, "the alert resolved", || {
        let a = alert(&server, &id);
        (a["state"] == "resolved").then_some(a)
    });
    assert!(
        resolved["resolved_at"].as_str().unwrap().ends_with('Z'),
        "{resolved}"
    );
    assert_eq!(resolved["resolve_reason"], "recovered", "{resolved}");
    let events: Vec<&str> = resolved["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let order: Vec<&str> = events
        .iter()
        .copied()
        .filter(|e| ["fired", "acknowledged", "resolved"].contains(e))
        .collect();
    assert_eq!(order, ["fired", "acknowledged", "resolved"], "{events:?}");
    assert!(
        !events.contains(&"escalated") && !events.contains(&"deescalated"),
        "87 % stayed critical: {events:?}"
    );
    // Patrol's analysis lists what the alert's run raised on the storage.
    let analysis = resolved["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "analysis_attached")
        .expect("the alert's run attached its analysis");
    assert_eq!(analysis["finding_ids"], run["alert_findings"], "{resolved}");
    assert!(events.iter().position(|e| *e == "analysis_attached") > Some(0));
    let acked = resolved["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "acknowledged")
        .unwrap();
    assert_eq!(
        acked["detail"], "acknowledged: ordering disks",
        "{resolved}"
    );
    assert_eq!(acked["at"], resolved["acknowledged_at"], "{resolved}");
    let (s, tl) = server.get(&format!("/api/alerts/{id}/timeline"));
    assert_eq!(s, 200, "{tl}");
    assert_eq!(tl["timeline"], resolved["timeline"]);

    // Lists: firing by default; resolved on request; bad filters are 400s.
    assert!(storage_alerts(&server, "firing").is_empty());
    let (_, v) = server.get("/api/alerts");
    assert!(
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "firing"),
        "{v}"
    );
    assert_eq!(storage_alerts(&server, "resolved").len(), 1);
    for bad in [
        "/api/alerts?state=loud",
        "/api/alerts?severity=info",
        "/api/alerts?limit=0",
        "/api/alerts?colour=red",
        "/api/alerts?acknowledged=maybe",
    ] {
        let (s, v) = server.get(bad);
        assert_eq!(
            (s, &v["error"]["code"]),
            (400, &json!("bad_request")),
            "{bad}: {v}"
        );
    }
    assert_eq!(server.post("/api/alerts/rules", Some(json!({}))).0, 405);
    drop(agent);
}
