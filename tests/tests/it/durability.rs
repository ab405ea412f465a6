//! Durability end to end: kill -9 the server while agents stream, keep it down, restart
//! it, and the stored series for that period has no gap and no duplicates.

use std::time::Duration;
use warden_tests::{AgentProc, ServerProc, eventually, now_ms};

#[test]
fn server_crash_loses_nothing_and_stores_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut agents: Vec<(AgentProc, String)> = (0..3)
        .map(|i| {
            let host = format!("crash-{i}");
            let mut a = AgentProc::simulated(&tmp.path().join(&host), &host, "1s");
            a.enroll_ok(&server.token("10m"));
            a.start(&[]);
            (a, host)
        })
        .collect();
    // Pick a metric the simulated node reports.
    let metric = eventually(Duration::from_secs(20), "first telemetry", || {
        let (s, v) = server.get("/api/resources/node:crash-0");
        if s != 200 {
            return None;
        }
        v["metrics"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
    });
    let from = now_ms();
    std::thread::sleep(Duration::from_secs(3));

    server.kill9();
    std::thread::sleep(Duration::from_secs(6));
    server.restart();

    // After the restart every agent replays its spool and catches up.
    std::thread::sleep(Duration::from_secs(4));
    let to = now_ms();
    for (_, host) in &agents {
        let points = eventually(Duration::from_secs(30), "replayed history", || {
            let (s, v) = server.get(&format!(
                "/api/metrics/history?resource_id=node:{host}&metric={}&from={from}&to={to}",
                urlencode(&metric)
            ));
            assert_eq!(s, 200, "{v}");
            let pts: Vec<(i64, f64)> = v["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            // Complete once the newest point is near `to`.
            pts.last()
                .is_some_and(|(t, _)| *t >= to - 2_000)
                .then_some(pts)
        });
        let span_s = (to - from) / 1000;
        assert!(
            points.len() as i64 >= span_s - 2,
            "{host}: {} points over {span_s}s",
            points.len()
        );
        for w in points.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(gap > 0, "{host}: duplicate or unordered timestamps {w:?}");
            assert!(
                gap < 2_500,
                "{host}: gap of {gap} ms in the stored series around {}",
                w[0].0
            );
        }
    }
    for (a, _) in &mut agents {
        assert_eq!(a.terminate().code(), Some(0));
    }
    assert!(server.terminate().success());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
