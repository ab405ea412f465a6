//! A full spool: while the server is down longer than the agent's spool budget covers, the
//! oldest metric samples are dropped, the newest are kept and replayed, and the drop is
//! counted and reported by the server.

use std::time::Duration;
use warden_tests::{AgentProc, ServerProc, eventually};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_full_spool_drops_the_oldest_samples_and_reports_the_count() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut agent = AgentProc::new(
        &tmp.path().join("a"),
        "hostname = \"tight\"\n[spool]\nmax_size = \"16KiB\"\n[collectors.host]\nenabled = false\n\
         [collectors.docker]\nenabled = false\n[collectors.simulated]\nseed = 3\nguests = 6\ninterval = \"1s\"\n",
    );
    let id = agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    eventually(Duration::from_secs(20), "first telemetry", || {
        (server.get("/api/resources/node:tight").0 == 200).then_some(())
    });
    assert_eq!(server.agent(&id).unwrap()["dropped_samples"], 0);

    server.kill9();
    let down_from = now_ms();
    std::thread::sleep(Duration::from_secs(20));
    let down_to = now_ms();
    server.restart();

    eventually(
        Duration::from_secs(30),
        "agent reports dropped samples",
        || {
            server
                .agent(&id)
                .filter(|a| a["dropped_samples"].as_u64().unwrap_or(0) > 0)
        },
    );
    assert!(agent.log().contains("spool full"), "{}", agent.log());
    // The agent may still be in its reconnect backoff after the restart and keeps collecting
    // meanwhile, so "newest" is whatever it collected last: the stored series must end at the
    // present, run without holes from its first kept point, and miss the oldest part.
    let points = eventually(Duration::from_secs(60), "replayed newest samples", || {
        let to = now_ms();
        let (s, v) = server.get(&format!(
            "/api/metrics/history?resource_id=node:tight&metric=cpu_pct&from={down_from}&to={to}"
        ));
        assert_eq!(s, 200, "{v}");
        let ts: Vec<i64> = v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_i64().unwrap())
            .collect();
        ts.last().is_some_and(|t| *t >= to - 3_000).then_some(ts)
    });
    let first = *points.first().unwrap();
    assert!(
        first - down_from > 2_000,
        "the oldest samples should be the ones dropped: {points:?}"
    );
    assert!(first > down_from && first < down_to + 60_000);
    for w in points.windows(2) {
        assert!(
            w[1] - w[0] < 2_500,
            "the kept samples are the newest, without holes: {points:?}"
        );
    }
}
