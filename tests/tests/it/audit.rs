//! The audit log through a real server: every audited act leaves a signed, chained event
//! with actor, target, outcome and source address; filters and cursor pagination; per-event
//! and whole-range verification; checkpoints; no secrets in events; the chain continues
//! across a restart; an unsigned server never reports "verified".

use serde_json::{Value, json};
use std::collections::BTreeSet;
use warden_tests::{AgentProc, ServerProc, http};

/// Every event, oldest first, through cursor pagination with small pages.
fn all_events(server: &ServerProc, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        let (s, v) = server.get(&format!("/api/audit?order=asc&limit=3{query}{c}"));
        assert_eq!(s, 200, "{v}");
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => return out,
        }
    }
}

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn audited_acts_are_signed_chained_filterable_and_verifiable() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("server.toml");
    std::fs::write(&cfg, "audit_checkpoint_interval = \"1s\"\n").unwrap();
    let mut server = ServerProc::start(
        &tmp.path().join("server"),
        &["--config", cfg.to_str().unwrap()],
    );
    let base = format!("http://{}", server.http);

    // A bad token is audited as a failed sign-in (with the address), never as its value.
    let (s, _) = http(
        &format!("{base}/api/agents"),
        "GET",
        Some("wdn_admin_guess"),
        None,
    );
    assert_eq!(s, 401);

    // Tokens: create two, revoke one; enrolling with the other is its first use.
    let (s, created) = server.post("/api/tokens", Some(json!({ "ttl": "1h" })));
    assert_eq!(s, 200, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    let spare = server.post("/api/tokens", None).1;
    let spare_id = spare["id"].as_str().unwrap().to_owned();
    let (s, v) = http(
        &format!("{base}/api/tokens/{spare_id}"),
        "DELETE",
        Some(&server.admin_token()),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "revoked");
    let (_, tokens) = server.get("/api/tokens");
    assert!(
        !tokens.to_string().contains(&secret),
        "token list leaks the secret"
    );
    let agent = AgentProc::simulated(&tmp.path().join("agent"), "audited", "1s");
    let agent_id = agent.enroll_ok(&secret);
    // A revoked token is refused, and the refusal is audited.
    let again = AgentProc::simulated(&tmp.path().join("agent2"), "refused", "1s");
    let out = again.enroll(spare["token"].as_str().unwrap(), None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));

    // Settings: a rejected change and an accepted one; a finding-free suppression rule.
    let (s, _) = http(
        &format!("{base}/api/ai/patrol/settings"),
        "PUT",
        Some(&server.admin_token()),
        Some(json!({ "interval": "1m" })),
    );
    assert_eq!(s, 400);
    let (s, v) = http(
        &format!("{base}/api/ai/patrol/settings"),
        "PUT",
        Some(&server.admin_token()),
        Some(json!({ "interval": "2h" })),
    );
    assert_eq!(s, 200, "{v}");
    let (s, _) = server.post(
        "/api/ai/patrol/suppressions",
        Some(json!({ "category": "performance" })),
    );
    assert_eq!(s, 200);
    let (s, _) = server.post(&format!("/api/agents/{agent_id}/revoke"), None);
    assert_eq!(s, 200);
    // The revoked agent tries to connect: refused, and on record.
    let mut agent = agent;
    agent.start(&[]);
    warden_tests::eventually(
        std::time::Duration::from_secs(20),
        "agent.connect refusal audited",
        || {
            let (_, v) = server.get("/api/audit?action=agent.connect&outcome=failure");
            let e = v["items"].as_array()?.first()?.clone();
            (e["target"] == agent_id.as_str()).then_some(e)
        },
    );

    let events = all_events(&server, "");
    let got = actions(&events);
    for want in [
        "auth.login",
        "token.create",
        "token.revoke",
        "token.use",
        "agent.enroll",
        "patrol.settings.update",
        "suppression.create",
        "agent.revoke",
        "agent.connect",
    ] {
        assert!(got.iter().any(|a| a == want), "no {want} in {got:?}");
    }
    // Contiguous sequence numbers from 1, every event verified and linked.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
        assert_eq!(e["id"], format!("default-{}", i + 1));
        assert_eq!(e["verification"]["state"], "verified", "{e}");
        assert_eq!(e["verification"]["chain"], "ok", "{e}");
        assert!(e["signature"].as_str().is_some_and(|s| s.len() == 64));
        assert!(e["time"].as_str().is_some());
    }
    let dump = Value::Array(events.clone()).to_string();
    assert!(
        !dump.contains(&secret),
        "an audit event holds the join token"
    );
    assert!(
        !dump.contains(&server.admin_token()),
        "an audit event holds the admin token"
    );
    assert!(
        !dump.contains("wdn_admin_guess"),
        "an audit event holds a presented token"
    );

    let find = |action: &str, outcome: &str| -> Value {
        events
            .iter()
            .find(|e| e["action"] == action && e["outcome"]["result"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} {action}"))
            .clone()
    };
    let failed_login = find("auth.login", "failure");
    assert_eq!(failed_login["actor"]["kind"], "anonymous");
    assert_eq!(failed_login["source_ip"], "127.0.0.1");
    assert_eq!(failed_login["outcome"]["reason"], "invalid bearer token");
    let login = find("auth.login", "success");
    assert_eq!(login["actor"], json!({ "kind": "token", "id": "admin" }));
    let create = find("token.create", "success");
    assert_eq!(create["target"], created["id"]);
    assert_eq!(create["source_ip"], "127.0.0.1");
    assert_eq!(create["details"]["ttl_s"], 3600);
    let enrolled = find("agent.enroll", "success");
    assert_eq!(enrolled["target"], agent_id.as_str());
    assert_eq!(enrolled["actor"]["kind"], "agent");
    assert_eq!(enrolled["details"]["hostname"], "audited");
    assert_eq!(find("token.use", "success")["target"], created["id"]);
    let refused = find("agent.enroll", "failure");
    assert!(
        refused["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let rejected = find("patrol.settings.update", "failure");
    assert!(
        rejected["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("interval")
    );
    let changed = find("patrol.settings.update", "success");
    assert_eq!(changed["details"]["after"]["interval"], "2h");
    assert_eq!(changed["details"]["before"]["interval"], "6h");

    // Filters.
    let only = |q: &str| actions(&all_events(&server, q));
    assert!(
        only("&action=token.*")
            .iter()
            .all(|a| a.starts_with("token."))
    );
    assert_eq!(only("&action=token.*").len(), 4);
    assert!(only("&outcome=failure").len() >= 3);
    assert!(
        all_events(&server, "&outcome=failure")
            .iter()
            .all(|e| e["outcome"]["result"] == "failure")
    );
    assert_eq!(
        only(&format!("&target={agent_id}")),
        ["agent.enroll", "agent.revoke", "agent.connect"]
    );
    assert!(
        only("&actor=agent")
            .iter()
            .all(|a| ["token.use", "agent.enroll", "agent.connect"].contains(&a.as_str()))
    );
    assert!(only("&since=2999-01-01T00:00:00Z").is_empty());
    assert_eq!(only("&until=2000-01-01T00:00:00Z").len(), 0);
    // Newest first by default.
    let (_, newest) = server.get("/api/audit?limit=1");
    assert_eq!(newest["items"][0]["seq"], events.len() as u64);
    for bad in [
        "order=up",
        "outcome=maybe",
        "limit=0",
        "since=yesterday",
        "bogus=1",
    ] {
        let (s, v) = server.get(&format!("/api/audit?{bad}"));
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (s, _) = server.get("/api/audit?org=other");
    assert_eq!(s, 404);

    // Verification, one event and the whole range.
    let (s, one) = server.get(&format!(
        "/api/audit/{}/verify",
        create["id"].as_str().unwrap()
    ));
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["state"], "verified");
    assert_eq!(one["chain"], "ok");
    for (bad, status) in [("nope", 400), ("default-999999", 404), ("other-1", 404)] {
        assert_eq!(
            server.get(&format!("/api/audit/{bad}/verify")).0,
            status,
            "{bad}"
        );
    }
    let (_, whole) = server.get("/api/audit/verify");
    assert_eq!(whole["state"], "verified", "{whole}");
    assert_eq!(whole["verified"], true);
    assert_eq!(whole["first_bad_seq"], Value::Null);
    assert_eq!(server.get("/api/audit/verify?from=4&to=2").0, 400);
    assert_eq!(server.get("/api/audit/verify?from=99999").0, 404);
    assert_eq!(
        server.get("/api/audit/verify?from=2999-01-01T00:00:00Z").0,
        404
    );
    assert_eq!(server.get("/api/audit/verify?from=soon").0, 400);
    let (_, part) = server.get("/api/audit/verify?from=2&to=4");
    assert_eq!(
        (part["checked"].as_u64(), part["first_seq"].as_u64()),
        (Some(3), Some(2))
    );

    // Checkpoints come on time (every second here) once the chain has grown.
    warden_tests::eventually(
        std::time::Duration::from_secs(10),
        "a timed checkpoint at the head",
        || {
            let (_, st) = server.get("/api/audit/status");
            let head = st["chains"][0]["head_seq"].as_u64()?;
            let (_, cps) = server.get("/api/audit/checkpoints");
            cps["checkpoints"]
                .as_array()?
                .iter()
                .any(|c| c["tree_size"] == head)
                .then_some(())
        },
    );
    // A checkpoint at the head, signed with the key the status names.
    let (s, cp) = server.post("/api/audit/checkpoints", None);
    assert_eq!(s, 200, "{cp}");
    let (_, status) = server.get("/api/audit/status");
    assert_eq!(status["signing"]["enabled"], true);
    assert_eq!(
        cp["checkpoint"]["public_key"],
        status["signing"]["public_key"]
    );
    let head = status["chains"][0]["head_seq"].as_u64().unwrap();
    assert!(cp["checkpoint"]["tree_size"].as_u64().unwrap() <= head);
    let (_, cps) = server.get("/api/audit/checkpoints");
    assert!(!cps["checkpoints"].as_array().unwrap().is_empty());

    // The chain continues across a crash and still verifies end to end.
    server.restart();
    let (s, _) = server.post("/api/tokens", None);
    assert_eq!(s, 200);
    let after = all_events(&server, "");
    let seqs: BTreeSet<u64> = after.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.len(), after.len());
    assert_eq!(*seqs.last().unwrap(), after.len() as u64);
    assert!(after.len() > events.len());
    let (_, whole) = server.get("/api/audit/verify");
    assert_eq!(whole["state"], "verified", "{whole}");
    assert_eq!(whole["checked"], after.len() as u64);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(!log.contains(&secret) && !log.contains(&server.admin_token()));
}

#[test]
fn without_a_key_encryption_key_events_are_unsigned_and_never_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    let server = ServerProc::start_with_kek(&dir, &[], None);
    let (s, _) = server.post("/api/tokens", None);
    assert_eq!(s, 200);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("AUDIT SIGNING UNAVAILABLE"), "{log}");
    assert!(!dir.join(".audit-signing.key").exists());
    let (_, status) = server.get("/api/audit/status");
    assert_eq!(status["signing"]["enabled"], false);
    assert!(
        status["signing"]["unavailable_reason"]
            .as_str()
            .unwrap()
            .contains("WARDEN_AUDIT_KEK")
    );
    let events = all_events(&server, "");
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["verification"]["state"], "unsigned", "{e}");
        assert_eq!(e["signature"], Value::Null);
        assert_eq!(e["verification"]["chain"], "ok");
    }
    let (_, one) = server.get("/api/audit/default-1/verify");
    assert_eq!(one["state"], "unsigned");
    let (_, whole) = server.get("/api/audit/verify");
    assert_eq!(whole["state"], "unsigned", "{whole}");
    assert_eq!(whole["verified"], false);
    assert_eq!(whole["unsigned"], events.len() as u64);
}

#[test]
fn the_key_encryption_key_comes_from_the_credential_then_the_environment_then_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    let (cred_kek, env_kek) = ("credential-kek-0123456789", "environment-kek-0123456789");
    let creds = tmp.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("audit-kek"), format!("{cred_kek}\n")).unwrap();
    let kek_file = tmp.path().join("audit-kek");
    let cfg = tmp.path().join("server.toml");
    std::fs::write(
        &cfg,
        format!("audit_kek_file = {:?}\n", kek_file.display().to_string()),
    )
    .unwrap();
    let key_id = |s: &ServerProc| {
        let (_, v) = s.get("/api/audit/status");
        v["signing"]["key_id"].as_str().map(str::to_owned)
    };

    // The credential wins over the environment variable; the key is created under it.
    let mut server = ServerProc::start_with_kek(&dir, &["--config", cfg.to_str().unwrap()], None);
    server.kek = Some(env_kek.into());
    server.credentials = Some(creds.clone());
    server.restart();
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("systemd credential"), "{log}");
    let id = key_id(&server).expect("signed under the credential");
    assert!(
        !log.contains(cred_kek) && !log.contains(env_kek),
        "a KEK reached the log"
    );

    // The environment variable alone, with the credential's value: the same key.
    server.credentials = None;
    server.kek = Some(cred_kek.into());
    server.restart();
    assert_eq!(key_id(&server).as_deref(), Some(id.as_str()));
    // The environment variable with another value cannot open it: unsigned, file untouched.
    server.kek = Some(env_kek.into());
    server.restart();
    assert_eq!(key_id(&server), None);
    let (_, v) = server.get("/api/audit/status");
    assert!(
        v["signing"]["unavailable_reason"]
            .as_str()
            .unwrap()
            .contains("wrong KEK"),
        "{v}"
    );

    // The file last: while others can read it the server refuses to start (http_hardening
    // covers the message), used once it is 0600.
    use std::os::unix::fs::PermissionsExt;
    server.kek = None;
    std::fs::write(&kek_file, cred_kek).unwrap();
    std::fs::set_permissions(&kek_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.kill9();
    let out = server
        .command()
        .args(["--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(&dir)
        .args(["run", "--http", "127.0.0.1:0", "--quic", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::set_permissions(&kek_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    server.restart();
    assert_eq!(key_id(&server).as_deref(), Some(id.as_str()));
    let (_, whole) = server.get("/api/audit/verify");
    // Events stored while signing was unavailable stay unsigned: never "verified".
    assert_eq!(whole["state"], "unsigned", "{whole}");
    assert_eq!(whole["first_bad_seq"], Value::Null, "{whole}");
}
