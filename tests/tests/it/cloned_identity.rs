//! Two processes with one agent identity (a copied key and certificate): the second is
//! refused while the first is connected, the refusal is audited, counted and recorded on
//! the agent; when the first stops, the second takes over and every batch it collected
//! meanwhile is stored (renumbered above the server's sequence, not discarded as a replay).

use std::time::Duration;
use warden_tests::{AgentProc, ServerProc, eventually, now_ms};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Timestamps of the stored `cpu_pct` points of `node:<host>`.
fn points(server: &ServerProc, host: &str) -> Vec<i64> {
    let (s, v) = server.get(&format!(
        "/api/metrics/history?resource_id=node:{host}&metric=cpu_pct&from=0&to={}",
        now_ms() + 60_000
    ));
    if s == 404 {
        return Vec::new();
    }
    assert_eq!(s, 200, "{v}");
    v["points"]
        .as_array()
        .map(|a| a.iter().map(|p| p[0].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn a_second_process_with_one_identity_is_refused_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut first = AgentProc::simulated(&tmp.path().join("first"), "twin-a", "1s");
    let id = first.enroll_ok(&server.token("10m"));
    first.start(&[]);
    eventually(Duration::from_secs(30), "first agent's telemetry", || {
        (!points(&server, "twin-a").is_empty()).then_some(())
    });

    // The copy: the same identity files, another host name and its own spool.
    let mut second = AgentProc::simulated(&tmp.path().join("second"), "twin-b", "1s");
    copy_dir(&first.dir.join("identity"), &second.dir.join("identity"));
    second.start(&[]);
    eventually(Duration::from_secs(30), "second agent refused", || {
        second
            .log()
            .contains("another process is connected with this agent's identity")
            .then_some(())
    });
    let refused_at = now_ms();

    // The refusal is on record: audit, metric, and the agent's record.
    let (s, v) = server.get("/api/audit?action=agent.connect&outcome=failure");
    assert_eq!(s, 200, "{v}");
    let events = v["items"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["target"] == id
            && e["outcome"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("identity in use"))),
        "{v}"
    );
    let metrics = server.get_text("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("warden_agent_identity_conflicts_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let agent = server.agent(&id).expect("agent record");
    assert!(
        agent["identity_conflict"]["refused"].as_u64() >= Some(1),
        "{agent}"
    );
    // Patrol raises it as a critical security finding on the agent.
    assert_eq!(server.post("/api/ai/patrol/run", None).0, 200);
    let (_, v) = server.get(&format!("/api/ai/patrol/findings?resource_id=agent:{id}"));
    let found = v["items"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["key"] == "agent-identity-conflict"))
        .unwrap_or_else(|| panic!("no identity finding: {v}"));
    assert_eq!(
        (&found["severity"], &found["category"]),
        (&"critical".into(), &"security".into()),
        "{found}"
    );

    // The first process kept its session all along.
    let before = points(&server, "twin-a").len();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        points(&server, "twin-a").len() > before,
        "first agent still streams"
    );
    assert!(!first.log().contains("replaced by a newer connection"));
    assert!(
        points(&server, "twin-b").is_empty(),
        "second agent stored nothing"
    );

    // When the first stops, the copy takes over and delivers what it spooled while refused.
    assert_eq!(first.terminate().code(), Some(0));
    let stopped_at = now_ms();
    let delivered = eventually(Duration::from_secs(60), "second agent's spool", || {
        let p = points(&server, "twin-b");
        p.last().is_some_and(|t| *t > stopped_at).then_some(p)
    });
    let held: Vec<i64> = delivered
        .iter()
        .copied()
        .filter(|t| *t < stopped_at)
        .collect();
    assert!(
        held.first().is_some_and(|t| *t < refused_at + 2_000),
        "the copy's batches from while it was refused are stored: {delivered:?}"
    );
    for w in delivered.windows(2) {
        assert!(w[1] - w[0] < 4_000, "gap in the copy's series: {w:?}");
    }
    assert!(
        second.log().contains("renumbered"),
        "the copy says its batches were renumbered"
    );
    assert_eq!(second.terminate().code(), Some(0));
}
