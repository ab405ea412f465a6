//! The HTTP API of a real server: authentication on every `/api` route, the one error
//! shape, resources and history from a real agent's telemetry, the provenance of a real
//! host's metrics, and the metrics endpoint.

use serde_json::Value;
use std::time::Duration;
use warden_shared::metric;
use warden_tests::{AgentProc, ServerProc, eventually, http};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[test]
fn api_authenticates_validates_and_serves_telemetry() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let base = format!("http://{}", server.http);

    // Health needs no token; everything under /api does.
    assert_eq!(http(&format!("{base}/healthz"), "GET", None, None).0, 200);
    for path in [
        "/api/agents",
        "/api/resources",
        "/api/resources/node:x",
        "/api/metrics/history",
        "/api/store",
        "/metrics",
    ] {
        let (s, b) = http(&format!("{base}{path}"), "GET", None, None);
        assert_error(s, &b, 401, "unauthorized");
        let (s, b) = http(
            &format!("{base}{path}"),
            "GET",
            Some("wdn_admin_wrong"),
            None,
        );
        assert_error(s, &b, 401, "unauthorized");
    }
    let (s, b) = http(&format!("{base}/api/tokens"), "POST", None, None);
    assert_error(s, &b, 401, "unauthorized");
    // Errors keep the shape everywhere.
    let (s, b) = server.get("/nope");
    assert_error(s, &b, 404, "not_found");
    let (s, b) = http(
        &format!("{base}/api/agents"),
        "DELETE",
        Some(&server.admin_token()),
        None,
    );
    assert_error(s, &b, 405, "method_not_allowed");
    let (s, b) = server.get("/api/metrics/history?metric=cpu_pct");
    assert_error(s, &b, 400, "bad_request");
    let (s, b) = server.get("/api/metrics/history?resource_id=node:x&metric=m&from=yesterday");
    assert_error(s, &b, 400, "bad_request");
    let (s, b) = server.get("/api/metrics/history?resource_id=node:x&metric=m&step=0");
    assert_error(s, &b, 400, "bad_request");
    let (s, b) = server.post("/api/tokens", Some(serde_json::json!({ "ttl": "forever" })));
    assert_error(s, &b, 400, "bad_request");
    let (s, b) = server.post(
        "/api/tokens",
        Some(serde_json::json!({ "ttl": "1h", "extra": 1 })),
    );
    assert_error(s, &b, 400, "bad_request");
    let (s, b) = server.get("/api/resources/node:missing");
    assert_error(s, &b, 404, "not_found");

    // Real telemetry from a simulated node.
    let mut agent = AgentProc::simulated(&tmp.path().join("a"), "apinode", "1s");
    let id = agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    let node = eventually(Duration::from_secs(20), "node with metrics", || {
        let (s, v) = server.get("/api/resources/node:apinode");
        (s == 200 && v["metrics"][metric::CPU_PCT]["value"].is_number()).then_some(v)
    });
    assert_eq!(node["type"], "node");
    assert_eq!(node["agent_id"], id.as_str());
    assert_eq!(node["org_id"], "default");
    // Storage pools are children of the node and can be listed by type.
    let (s, pools) = server.get("/api/resources?type=storage");
    assert_eq!(s, 200, "{pools}");
    let pools = pools["items"].as_array().unwrap();
    assert!(!pools.is_empty());
    assert!(
        pools
            .iter()
            .all(|p| p["type"] == "storage" && p["parent"] == "node:apinode"),
        "{pools:?}"
    );

    // History: raw points, then averaged per step.
    std::thread::sleep(Duration::from_secs(3));
    let (s, raw) = server.get("/api/metrics/history?resource_id=node:apinode&metric=cpu_pct");
    assert_eq!(s, 200, "{raw}");
    let points = raw["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{raw}");
    let (s, stepped) =
        server.get("/api/metrics/history?resource_id=node:apinode&metric=cpu_pct&step=1h");
    assert_eq!(s, 200, "{stepped}");
    let buckets = stepped["points"].as_array().unwrap();
    assert!((1..=2).contains(&buckets.len()), "{stepped}");

    // A control request travels server -> agent -> server over the session.
    let (s, pong) = server.post(&format!("/api/agents/{id}/ping"), None);
    assert_eq!(s, 200, "{pong}");
    assert!(
        pong["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{pong}"
    );
    let (s, b) = server.post("/api/agents/nobody/ping", None);
    assert_error(s, &b, 404, "not_found");

    // The agent list shows the collector's health.
    let a = server.agent(&id).unwrap();
    assert_eq!(a["collectors"]["simulated"]["status"], "ok", "{a}");

    // Prometheus counters.
    let url = format!("{base}/metrics");
    warden_tests::install_crypto();
    let text = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            reqwest::Client::new()
                .get(&url)
                .bearer_auth(server.admin_token())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    assert!(text.contains("warden_agents_connected 1"), "{text}");
    let stored: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("warden_ingest_samples_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(stored > 0, "{text}");
    assert!(text.contains("warden_audit_signing_enabled 1"), "{text}");
    assert!(
        text.contains("warden_audit_write_failures_total 0"),
        "{text}"
    );
    assert!(text.contains("warden_audit_events_total "), "{text}");
}

#[test]
fn host_metrics_show_their_source_and_method() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut agent = AgentProc::new(
        &tmp.path().join("a"),
        "hostname = \"provhost\"\n[collectors.docker]\nenabled = false\n[collectors.host]\ninterval = \"1s\"\ntimeout = \"1s\"\n",
    );
    let id = agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    let node = eventually(Duration::from_secs(30), "host metrics", || {
        let (s, v) = server.get("/api/resources/node:provhost");
        (s == 200 && v["metrics"][metric::CPU_PCT]["value"].is_number()).then_some(v)
    });
    assert_eq!(server.agent(&id).unwrap()["protocol"], "1.2");
    let metric_of = |name: &str| &node["metrics"][name];
    assert_eq!(metric_of(metric::CPU_PCT)["source"], "host", "{node}");
    assert_eq!(
        metric_of(metric::CPU_PCT)["method"],
        "sysinfo: /proc/stat, busy share of all CPUs between two reads"
    );
    assert_eq!(
        metric_of(metric::MEM_USED_BYTES)["source"],
        "host",
        "{node}"
    );
    assert!(
        metric_of(metric::MEM_USED_BYTES)["method"]
            .as_str()
            .is_some_and(|m| m.contains("/proc/meminfo")),
        "{node}"
    );
    // Every metric has both, labelled ones (filesystems, interfaces) through their family.
    let metrics = node["metrics"].as_object().unwrap();
    for (name, m) in metrics {
        assert_eq!(m["source"], "host", "{name}: {m}");
        assert!(
            m["method"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: {m}"
        );
    }

    // History answers with the series' provenance as well.
    let (s, h) = server.get("/api/metrics/history?resource_id=node:provhost&metric=mem_used_pct");
    assert_eq!(s, 200, "{h}");
    assert!(!h["points"].as_array().unwrap().is_empty(), "{h}");
    assert_eq!(h["source"], "host");
    assert_eq!(
        h["method"],
        "sysinfo: /proc/meminfo (MemTotal - MemAvailable) / MemTotal"
    );
    // A series nobody reported has neither.
    let (s, h) = server.get("/api/metrics/history?resource_id=node:provhost&metric=nope");
    assert_eq!(s, 200, "{h}");
    assert_eq!((&h["source"], &h["method"]), (&Value::Null, &Value::Null));
}
