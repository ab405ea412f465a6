//! `warden demo` end to end: it starts the simulated fleet, enrolls one agent per system
//! through the real path, they report the fleet with its seeded trouble, and Ctrl-C (SIGINT)
//! stops everything cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;
use warden_shared::metric;
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
                "--node-down-after",
                "20s",
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
    // This machine, three PVE nodes, the PBS and the Kubernetes cluster.
    // (pve3 goes down after 20 s, so its agent is seen connected first.)
    let agents = eventually(Duration::from_secs(90), "6 demo agents connected", || {
        let token = std::fs::read_to_string(&token_path).ok()?;
        let (s, v) = http(
            &format!("http://{http_addr}/api/agents"),
            "GET",
            Some(token.trim()),
            None,
        );
        let list = v.as_array().cloned().unwrap_or_default();
        (s == 200 && list.iter().filter(|a| a["connected"] == true).count() == 6).then_some(list)
    });
    assert_eq!(agents.len(), 6);
    let token = std::fs::read_to_string(&token_path).unwrap();
    let resources = || {
        let (_, v) = http(
            &format!("http://{http_addr}/api/resources"),
            "GET",
            Some(token.trim()),
            None,
        );
        v.as_array().cloned().unwrap_or_default()
    };
    let find = |list: &[serde_json::Value], id: &str| list.iter().find(|r| r["id"] == id).cloned();
    let value_of = |r: &serde_json::Value, m: &str| r["metrics"][m]["value"].as_f64();
    // The fleet with its seeded trouble (docs/demo.md), each as its collector reports it.
    let list = eventually(Duration::from_secs(60), "the fleet and its trouble", || {
        let list = resources();
        let count = |t: &str| list.iter().filter(|r| r["type"] == t).count();
        let zfs = find(&list, "storage:pve2/local-zfs")?;
        let store = find(&list, "pbs-datastore:pbs1/store1")?;
        let ct104 = find(&list, "lxc:demo/104")?;
        let crashing = list
            .iter()
            .any(|r| r["type"] == "pod" && r["status"] == "CrashLoopBackOff");
        let pve3_down = find(&list, "node:pve3").is_some_and(|n| n["status"] == "offline");
        (count("vm") + count("lxc") == 30
            && count("pbs-datastore") == 2
            && count("k8s-node") == 3
            && find(&list, "node:this-machine").is_some()
            && value_of(&zfs, metric::STORAGE_USED_PCT).is_some_and(|p| p >= 70.0)
            && value_of(&store, &metric::labelled(metric::JOB_LAST_OK, "job", "gc")) == Some(0.0)
            && value_of(
                &ct104,
                &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
            )
            .is_some_and(|age| age > 3.0 * 86_400.0)
            && crashing
            && pve3_down)
            .then_some(list)
    });
    // Every metric says where it came from.
    let node = find(&list, "node:pve1").unwrap();
    assert_eq!(
        node["metrics"][metric::CPU_PCT]["source"],
        "proxmox",
        "{node}"
    );

    // Within a minute Patrol has turned each piece of trouble into a finding with real
    // numbers and advice, the full storage has a forecast, and the stopped backups are linked
    // to their full target (docs/demo.md).
    let want = [
        ("storage:pve2/local-zfs", "storage-forecast"),
        ("storage:demo/pbs", "correlated-backup-target-full"),
        ("lxc:demo/104", "backup-age"),
        ("pbs-datastore:pbs1/store1", "pbs-gc-failed"),
        ("replication:demo/100-0", "replication-failing"),
        ("pod", "pod-crashloop"),
        ("disk", "disk-wearout"),
        ("node:pve3", "node-offline"),
    ];
    let findings = eventually(
        Duration::from_secs(60),
        "a finding for each seeded problem",
        || {
            let (_, v) = http(
                &format!("http://{http_addr}/api/ai/patrol/findings?include_linked=true&limit=500"),
                "GET",
                Some(token.trim()),
                None,
            );
            let list = v["findings"].as_array().cloned().unwrap_or_default();
            want.iter()
                .all(|(on, key)| {
                    list.iter().any(|f| {
                        f["key"] == *key && (f["resource_id"] == *on || f["resource_type"] == *on)
                    })
                })
                .then_some(list)
        },
    );
    for (on, key) in want {
        let f = findings
            .iter()
            .find(|f| f["key"] == key && (f["resource_id"] == on || f["resource_type"] == on))
            .unwrap();
        let evidence = f["evidence"].as_str().unwrap();
        assert!(evidence.chars().any(|c| c.is_ascii_digit()), "{f}");
        assert!(f["recommendation"].as_str().unwrap().len() > 20, "{f}");
    }
    let forecast = findings
        .iter()
        .find(|f| f["key"] == "storage-forecast")
        .unwrap();
    // 71 % filling at 6 points an hour: full in about 5 hours.
    let days = forecast["capacity_forecast"]["days_to_full"]
        .as_f64()
        .unwrap();
    assert!((0.1..0.4).contains(&days), "{forecast}");
    let root = findings
        .iter()
        .find(|f| f["key"] == "correlated-backup-target-full")
        .unwrap();
    let ct104 = findings
        .iter()
        .find(|f| f["resource_id"] == "lxc:demo/104")
        .unwrap();
    assert_eq!(ct104["root_id"], root["id"], "{ct104}");
    assert!(
        root["related"].as_array().unwrap().contains(&ct104["id"]),
        "{root}"
    );
    assert_eq!(root["source"], "correlation");

    // Each enrollment is on the signed audit record, which verifies end to end.
    let audit = |path: &str| {
        http(
            &format!("http://{http_addr}{path}"),
            "GET",
            Some(token.trim()),
            None,
        )
        .1
    };
    let enrolled = audit("/api/audit?action=agent.enroll&outcome=success");
    assert_eq!(
        enrolled["events"].as_array().unwrap().len(),
        6,
        "{enrolled}"
    );
    let created = audit("/api/audit?action=token.create&actor=system:demo");
    assert_eq!(created["events"].as_array().unwrap().len(), 6, "{created}");
    let whole = audit("/api/audit/verify");
    assert_eq!(whole["state"], "verified", "{whole}");

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
    assert!(text.contains("6/6 agents connected"), "{text}");
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

/// The demo takes `warden-sim` from the directory of the `warden` it runs, and nowhere else:
/// a `warden` without one beside it stops at once, naming the path it looked at.
#[test]
fn demo_without_the_simulator_beside_it_names_the_path() {
    let warden = bin("warden");
    // Hard links in a directory of its own (same file system as the build): the running
    // executable's path is the link's, and only `warden` and `warden-agent` are there.
    let dir = tempfile::tempdir_in(warden.parent().unwrap()).unwrap();
    for name in ["warden", "warden-agent"] {
        std::fs::hard_link(bin(name), dir.path().join(name)).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(dir.path().join("warden"))
        .arg("--data-dir")
        .arg(data.path())
        .arg("demo")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = dir.path().join("warden-sim");
    assert!(
        stderr.contains(&format!("{} not found", missing.display())),
        "{stderr}"
    );
    assert!(!data.path().join("server").exists(), "no server started");
}
