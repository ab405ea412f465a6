//! A full disk under the server's data directory: on a small tmpfs, the store refuses
//! telemetry below the audit reserve, answers 503 naming the disk when a write fails,
//! reports `degraded` on `/healthz`, tells agents why, and recovers by itself once space is
//! freed: the agents' spools replay what was collected meanwhile, and nothing is lost.
//! Needs root to mount a tmpfs; says so and passes vacuously where mounting is refused.

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use warden_tests::{AgentProc, ServerProc, eventually, http, now_ms};

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mb: u64) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here ({}); the disk-full tests need root",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self(dir.to_owned()))
    }

    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.0).unwrap();
        st.blocks_available() * st.fragment_size()
    }

    /// Writes `filler` until at most `leave` bytes are free (0: until the disk is full).
    fn fill(&self, leave: u64) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let chunk = vec![0xa5u8; 256 << 10];
        while self.free() > leave {
            let n = usize::try_from((self.free() - leave).min(chunk.len() as u64)).unwrap();
            if f.write_all(&chunk[..n.max(4096)]).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn health(server: &ServerProc) -> (u16, Value) {
    http(
        &format!("http://{}/healthz", server.http),
        "GET",
        None,
        None,
    )
}

/// Timestamps of the stored `cpu_pct` points of `node:<host>` in `[from, to]`.
fn points(server: &ServerProc, host: &str, from: i64, to: i64) -> Vec<i64> {
    let (s, v) = server.get(&format!(
        "/api/metrics/history?resource_id=node:{host}&metric=cpu_pct&from={from}&to={to}"
    ));
    assert_eq!(s, 200, "{v}");
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_i64().unwrap())
        .collect()
}

fn newest_point(server: &ServerProc, host: &str) -> Option<i64> {
    points(server, host, 0, now_ms() + 60_000).last().copied()
}

/// Starts a server on a fresh tmpfs of `size_mb` with `reserve_mb`, and a simulated agent
/// (its spool on the ordinary disk) streaming every second.
fn setup(
    tmp: &Path,
    size_mb: u64,
    reserve_mb: u64,
    host: &str,
) -> Option<(Tmpfs, ServerProc, AgentProc)> {
    let fs = Tmpfs::mount(&tmp.join("data"), size_mb)?;
    let cfg = tmp.join("server.toml");
    std::fs::write(&cfg, format!("store_reserve_mb = {reserve_mb}\n")).unwrap();
    let server = ServerProc::start(&fs.0, &["--config", cfg.to_str().unwrap()]);
    let mut agent = AgentProc::simulated(&tmp.join("agent"), host, "1s");
    agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    eventually(Duration::from_secs(30), "first telemetry", || {
        newest_point(&server, host)
    });
    Some((fs, server, agent))
}

/// Waits until the agent logs that the server cannot store telemetry; on timeout, fails with
/// the server's log.
fn told_why(agent: &AgentProc, server: &ServerProc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent
        .log()
        .contains("the server cannot store telemetry now")
    {
        assert!(
            Instant::now() < deadline,
            "the agent was not told why; server log:\n{}",
            std::fs::read_to_string(server.log_path()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_disk_degrades_the_server_and_it_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    // No reserve: the disk fills under the store itself, so its writes fail.
    let Some((fs, server, mut agent)) = setup(tmp.path(), 64, 0, "full") else {
        return;
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = now_ms();
    let stored_before = points(&server, "full", 0, before);
    assert!(!stored_before.is_empty());

    let filler = fs.fill(0);
    // The agent keeps streaming; the first commit that needs a new page fails.
    let (_, problem) = eventually(Duration::from_secs(60), "healthz degraded", || {
        let (s, v) = health(&server);
        (s == 503).then_some((s, v))
    });
    assert_eq!(problem["status"], "degraded", "{problem}");
    let text = problem["problems"][0].as_str().unwrap().to_owned();
    assert!(
        text.contains(&fs.0.display().to_string()),
        "the problem names the data directory: {text}"
    );
    // A write answers 503 `unavailable` with the same reason, not 500.
    let (s, v) = server.post("/api/tokens", Some(json!({ "ttl": "10m" })));
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store cannot write"),
        "{v}"
    );
    // Reads still answer, and the metrics say the store does not take writes.
    assert_eq!(server.get("/api/agents").0, 200);
    assert!(
        server
            .get_text("/metrics")
            .lines()
            .any(|l| l == "warden_store_writable 0")
    );
    // The agent is told why, keeps its spool, and does not hear "shutting down".
    told_why(&agent, &server);
    std::thread::sleep(Duration::from_secs(3));

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let freed_ms = now_ms();
    eventually(Duration::from_secs(30), "healthz ok again", || {
        (health(&server).0 == 200).then_some(())
    });
    // Replay resumes within seconds: a point collected after the disk was freed is stored.
    eventually(Duration::from_secs(30), "telemetry after recovery", || {
        newest_point(&server, "full")
            .filter(|t| *t > freed_ms)
            .map(|_| ())
    });
    let resumed = freed.elapsed();
    eprintln!("replay resumed {resumed:?} after space was freed");
    // Nothing acknowledged was lost, and what was collected during the outage came from
    // the spool: one point a second, no gap longer than a few seconds.
    let after = points(&server, "full", 0, now_ms());
    for t in &stored_before {
        assert!(
            after.contains(t),
            "point {t} stored before the outage is gone"
        );
    }
    let span: Vec<i64> = after.iter().copied().filter(|t| *t >= before).collect();
    for w in span.windows(2) {
        assert!(
            w[1] - w[0] < 4_000,
            "gap of {} ms at {} across the outage",
            w[1] - w[0],
            w[0]
        );
    }
    // Writes work again.
    let (s, v) = server.post("/api/tokens", Some(json!({ "ttl": "10m" })));
    assert!(s == 200 || s == 201, "{s} {v}");
    assert!(
        server
            .get_text("/metrics")
            .lines()
            .any(|l| l == "warden_store_writable 1")
    );
    assert_eq!(agent.terminate().code(), Some(0));
}

#[test]
fn the_audit_log_keeps_room_when_telemetry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((fs, server, mut agent)) = setup(tmp.path(), 64, 16, "reserve") else {
        return;
    };
    // Leave 8 MiB: below the 16 MiB reserve, well above what the audit log needs.
    let filler = fs.fill(8 << 20);
    let (_, v) = eventually(Duration::from_secs(30), "healthz degraded", || {
        let (s, v) = health(&server);
        (s == 503).then_some((s, v))
    });
    let text = v["problems"][0].as_str().unwrap();
    assert!(text.contains("reserve"), "{text}");
    told_why(&agent, &server);
    let refused_from = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    // Telemetry is held back...
    let newest = newest_point(&server, "reserve").unwrap();
    assert!(newest < refused_from, "telemetry stored below the reserve");
    // ... but audited acts still write, and their audit events are stored.
    let (s, v) = server.post("/api/tokens", Some(json!({ "ttl": "10m" })));
    assert!(s == 200 || s == 201, "{s} {v}");
    let (s, v) = server.get("/api/audit?action=token.create");
    assert_eq!(s, 200, "{v}");
    let n = v["items"].as_array().map_or(0, Vec::len);
    assert!(n >= 2, "both token creations audited: {v}");
    // Patrol raises Warden's own disk (its findings are stored within the reserve too).
    let (s, v) = server.post("/api/ai/patrol/run", None);
    assert_eq!(s, 200, "{v}");
    let (_, v) = server.get("/api/ai/patrol/findings?resource_id=warden:server");
    let disk = v["items"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["key"] == "warden-disk"))
        .unwrap_or_else(|| panic!("no warden-disk finding: {v}"));
    assert_eq!(disk["severity"], "critical", "{disk}");

    std::fs::remove_file(&filler).unwrap();
    let freed_ms = now_ms();
    eventually(
        Duration::from_secs(30),
        "telemetry after space is freed",
        || {
            newest_point(&server, "reserve")
                .filter(|t| *t > freed_ms)
                .map(|_| ())
        },
    );
    // What the agent collected while refused was replayed from its spool.
    let held = points(&server, "reserve", refused_from, freed_ms);
    assert!(
        held.len() >= 3,
        "points collected while telemetry was refused: {held:?}"
    );
    assert_eq!(health(&server).0, 200);
    assert_eq!(agent.terminate().code(), Some(0));
}
