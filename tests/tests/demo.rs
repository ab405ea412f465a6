//! `warden demo` end to end: it enrolls its agents through the real path, they report, and
//! Ctrl-C (SIGINT) stops everything cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::{bin, eventually, free_tcp, free_udp, http};

/// The demo process; if the test fails half-way, it is stopped with SIGTERM (so it stops its
/// agents) instead of being left running.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn demo_runs_a_fleet_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let (http_addr, quic) = (free_tcp(), free_udp());
    let log = std::fs::File::create(tmp.path().join("demo.log")).unwrap();
    let mut demo = Demo(
        Command::new(bin("warden"))
            .arg("--data-dir")
            .arg(tmp.path())
            .args([
                "demo",
                "--agents",
                "3",
                "--http",
                &http_addr.to_string(),
                "--quic",
                &quic.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let token_path = tmp.path().join("server/admin-token");
    let agents = eventually(Duration::from_secs(60), "3 demo agents connected", || {
        let token = std::fs::read_to_string(&token_path).ok()?;
        let (s, v) = http(
            &format!("http://{http_addr}/api/agents"),
            "GET",
            Some(token.trim()),
            None,
        );
        let list = v.as_array().cloned().unwrap_or_default();
        (s == 200 && list.iter().filter(|a| a["connected"] == true).count() == 3).then_some(list)
    });
    let token = std::fs::read_to_string(&token_path).unwrap();
    // Agent 0 collects this machine; the others simulate Proxmox-like nodes with guests.
    eventually(
        Duration::from_secs(30),
        "real and simulated resources",
        || {
            let (_, v) = http(
                &format!("http://{http_addr}/api/resources"),
                "GET",
                Some(token.trim()),
                None,
            );
            let list = v.as_array().cloned().unwrap_or_default();
            let has = |t: &str| list.iter().any(|r| r["type"] == t);
            (has("node")
                && has("vm")
                && has("storage")
                && list.iter().filter(|r| r["type"] == "node").count() == 3)
                .then_some(())
        },
    );
    assert_eq!(agents.len(), 3);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(demo.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = eventually(Duration::from_secs(20), "demo exits", || {
        demo.0.try_wait().unwrap()
    });
    let text = std::fs::read_to_string(tmp.path().join("demo.log")).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("3/3 agents connected"), "{text}");
    // No agent process outlives the demo.
    let leftover = Command::new("pgrep")
        .args(["-f", &tmp.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "agents left running: {}",
        String::from_utf8_lossy(&leftover.stdout)
    );
}
