//! Enrollment through the real binaries: the happy path, refusal of bad, reused, expired
//! and forged tokens, a wrong pinned CA, and revocation.

use std::time::Duration;
use warden_shared::token::JoinToken;
use warden_tests::{AgentProc, ServerProc, eventually};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn happy_path_enrolls_connects_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    // The CLI path: `warden token create` talks to the running server.
    let out = server.cli(&["token", "create", "--ttl", "10m"]);
    assert!(out.status.success(), "token create: {}", stderr(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let parsed = JoinToken::parse(&token).unwrap();
    assert_eq!(parsed.addrs, vec![server.quic.to_string()]);

    let mut agent = AgentProc::simulated(&tmp.path().join("a1"), "sim-one", "1s");
    let id = agent.enroll_ok(&token);
    assert!(id.starts_with("sim-one-"), "{id}");
    // `warden token list|revoke`: the used token shows its agent; a spare one is revoked.
    let spare = String::from_utf8(server.cli(&["token", "create"]).stdout).unwrap();
    let spare_id = JoinToken::parse(spare.trim()).unwrap().id;
    let out = server.cli(&["token", "revoke", &spare_id]);
    assert!(out.status.success(), "token revoke: {}", stderr(&out));
    let out = server.cli(&["token", "list"]);
    let list = String::from_utf8(out.stdout).unwrap();
    let row = |tid: &str| -> Vec<String> {
        let line = list
            .lines()
            .find(|l| l.starts_with(tid))
            .unwrap_or_default();
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row(&parsed.id)[1], "used", "{list}");
    assert_eq!(row(&parsed.id)[3], id, "{list}");
    assert_eq!(row(&spare_id)[1], "revoked", "{list}");
    let out = server.cli(&["token", "revoke", &parsed.id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already used"), "{}", stderr(&out));
    // Key files are private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(agent.dir.join("identity/agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(server.dir.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    agent.start(&[]);
    let a = eventually(Duration::from_secs(20), "agent connected", || {
        server.agent(&id).filter(|a| a["connected"] == true)
    });
    assert_eq!(a["hostname"], "sim-one");
    assert_eq!(a["protocol"], "1.2");
    assert!(
        a["certificate_expires_at"]
            .as_str()
            .unwrap()
            .starts_with('2')
    );
    // Telemetry arrives: the simulated node shows up as a resource with metrics.
    let node = eventually(Duration::from_secs(20), "node resource", || {
        let (s, v) = server.get("/api/resources/node:sim-one");
        (s == 200 && v["metrics"].as_object().is_some_and(|m| !m.is_empty())).then_some(v)
    });
    assert_eq!(node["agent_id"], id.as_str());
    assert_eq!(agent.terminate().code(), Some(0));
    eventually(Duration::from_secs(10), "agent shown disconnected", || {
        server.agent(&id).filter(|a| a["connected"] == false)
    });
}

#[test]
fn bad_reused_expired_and_forged_tokens_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);

    let garbage =
        AgentProc::simulated(&tmp.path().join("g"), "g", "1s").enroll("not-a-token", None);
    assert!(!garbage.status.success());
    assert!(
        stderr(&garbage).contains("not a warden join token"),
        "{}",
        stderr(&garbage)
    );

    let token = server.token("10m");
    let first = AgentProc::simulated(&tmp.path().join("first"), "first", "1s");
    first.enroll_ok(&token);
    // `--if-needed` (the Kubernetes init container): an enrolled agent is left alone.
    let again = std::process::Command::new(warden_tests::bin("warden-agent"))
        .arg("--config")
        .arg(&first.config)
        .args(["enroll", "--if-needed", "--token", &token])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already enrolled"));
    let reused =
        AgentProc::simulated(&tmp.path().join("second"), "second", "1s").enroll(&token, None);
    assert!(!reused.status.success());
    assert!(
        stderr(&reused).contains("already used"),
        "{}",
        stderr(&reused)
    );

    let short = server.token("1s");
    std::thread::sleep(Duration::from_millis(2100));
    let expired = AgentProc::simulated(&tmp.path().join("late"), "late", "1s").enroll(&short, None);
    assert!(!expired.status.success());
    assert!(stderr(&expired).contains("expired"), "{}", stderr(&expired));

    let mut forged = JoinToken::parse(&server.token("10m")).unwrap();
    forged.secret = [0x42; 32];
    let out = AgentProc::simulated(&tmp.path().join("forger"), "forger", "1s")
        .enroll(&forged.encode(), None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
    forged.id = "0000000000000000".into();
    let out = AgentProc::simulated(&tmp.path().join("forger2"), "forger2", "1s")
        .enroll(&forged.encode(), None);
    assert!(stderr(&out).contains("not known"), "{}", stderr(&out));

    // Only the one good enrollment exists; refused attempts wrote nothing.
    assert_eq!(server.agents().len(), 1);
    // The server log names refusals but never a token secret.
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("enrollment refused"));
    assert!(!log.contains(&token), "token leaked into the log");
}

#[test]
fn a_server_with_another_ca_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let real = ServerProc::start(&tmp.path().join("real"), &[]);
    let impostor = ServerProc::start(&tmp.path().join("impostor"), &[]);
    let token = real.token("10m");
    let agent = AgentProc::simulated(&tmp.path().join("a"), "a", "1s");
    let out = agent.enroll(&token, Some(impostor.quic));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not match the fingerprint"),
        "{}",
        stderr(&out)
    );
    assert!(impostor.agents().is_empty());
    assert!(
        !agent.dir.join("identity").exists(),
        "nothing saved after a refused enrollment"
    );
    // The token was not spent on the impostor, so it still works on the real server.
    agent.enroll_ok(&token);
}

#[test]
fn revoked_agent_is_disconnected_and_cannot_reconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut agent = AgentProc::simulated(&tmp.path().join("a"), "victim", "1s");
    let id = agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    eventually(Duration::from_secs(20), "connected", || {
        server.agent(&id).filter(|a| a["connected"] == true)
    });

    let out = server.cli(&["agent", "revoke", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(Duration::from_secs(10), "disconnected and revoked", || {
        server
            .agent(&id)
            .filter(|a| a["connected"] == false && a["revoked"] == true)
    });
    // The agent keeps trying and is refused every time, with a clear reason.
    eventually(Duration::from_secs(20), "agent logs the refusal", || {
        agent.log().contains("revoked").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.agent(&id).unwrap()["connected"], false);
    // Unknown ids are a 404 in the one error shape.
    let (status, body) = server.post("/api/agents/nope/revoke", None);
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}
