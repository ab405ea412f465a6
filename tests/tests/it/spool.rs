//! The agent's spool through the real binaries: a full spool drops the oldest samples and
//! reports the count; the spool is private (0700/0600) and an agent stopped while its server
//! is down exits at once, leaving a spool the next run delivers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use warden_shared::metric;
use warden_tests::{AgentProc, ServerProc, eventually, now_ms};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// The spooled batch files, oldest first.
fn batch_files(spool: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "batch"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_stop_while_the_server_is_down_is_prompt_and_leaves_a_private_spool_that_is_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut agent = AgentProc::simulated(&tmp.path().join("a"), "stopper", "1s");
    agent.enroll_ok(&server.token("10m"));
    // Directories as an older agent (or a hand-made setup) left them.
    let spool = agent.dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    chmod(&agent.dir, 0o755);
    chmod(&spool, 0o755);

    // Nothing listens at the server's address now: every connection attempt hangs in the
    // QUIC handshake until its timeout.
    server.kill9();
    let down_from = now_ms();
    agent.start(&[]);
    eventually(Duration::from_secs(20), "three spooled batches", || {
        (batch_files(&spool).len() >= 3).then_some(())
    });
    let started = Instant::now();
    let status = agent.terminate();
    let took = started.elapsed();
    eprintln!("agent stopped {took:?} after SIGTERM with its server down");
    assert!(status.success(), "{status}: {}", agent.log());
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?}: {}",
        agent.log()
    );
    let down_to = now_ms();

    let log = agent.log();
    assert!(log.contains("tightened directory permissions"), "{log}");
    let spooled = batch_files(&spool);
    assert!(spooled.len() >= 3, "{spooled:?}");
    assert_eq!((mode(&agent.dir), mode(&spool)), (0o700, 0o700));
    assert_eq!(mode(&agent.dir.join("identity")), 0o700);
    for f in &spooled {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // A file left world-readable is tightened on the next start, which delivers the spool.
    chmod(&spooled[0], 0o644);
    server.restart();
    agent.start(&[]);
    eventually(Duration::from_secs(30), "the spool is delivered", || {
        batch_files(&spool).is_empty().then_some(())
    });
    assert!(
        agent.log().contains("tightened spool file permissions"),
        "{}",
        agent.log()
    );
    let (s, v) = server.get(&format!(
        "/api/metrics/history?resource_id=node:stopper&metric={}&from={down_from}&to={down_to}",
        metric::CPU_PCT
    ));
    assert_eq!(s, 200, "{v}");
    let points = v["points"].as_array().unwrap().len();
    assert!(
        points >= spooled.len(),
        "{} batches spooled while the server was down, {points} points stored: {v}",
        spooled.len()
    );
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
            "/api/metrics/history?resource_id=node:tight&metric={}&from={down_from}&to={to}",
            metric::CPU_PCT
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
