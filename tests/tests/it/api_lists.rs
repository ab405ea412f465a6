//! The API's one list convention through a real server: `{"items", "next"}` pages with an
//! opaque cursor over a fleet of a few hundred resources from simulated agents (every
//! resource once, in id order, while the fleet keeps reporting and grows mid-walk), the page
//! size bounds, refused cursors, each `/api/resources` filter, `/api/agents` paging, bad
//! queries in the standard error shape, and the audit actor taken from the caller.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use warden_tests::{AgentProc, ServerProc, eventually};

/// Guests of the big agent's simulated cluster: with its 3 nodes and their 6 pools, a
/// fleet of 259 resources.
const GUESTS: usize = 250;

fn simulated(dir: &std::path::Path, host: &str, nodes: u32, guests: usize) -> AgentProc {
    AgentProc::new(
        dir,
        &format!(
            "hostname = \"{host}\"\n[collectors.host]\nenabled = false\n[collectors.docker]\nenabled = false\n[collectors.simulated]\nseed = 7\nnodes = {nodes}\nguests = {guests}\ninterval = \"1s\"\n"
        ),
    )
}

/// A 400 in the standard shape whose message mentions `words`.
fn assert_bad(server: &ServerProc, path: &str, words: &str) {
    let (s, v) = server.get(path);
    assert_eq!(s, 400, "{path}: {v}");
    assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{path}: {v}");
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn resources_and_agents_page_with_a_cursor_and_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut big = simulated(&tmp.path().join("big"), "big", 3, GUESTS);
    let big_id = big.enroll_ok(&server.token("10m"));
    big.start(&[]);
    let guests = |server: &ServerProc| {
        ["vm", "lxc"]
            .iter()
            .map(|t| {
                server
                    .list_all(&format!("/api/resources?type={t}&agent={big_id}"))
                    .len()
            })
            .sum::<usize>()
    };
    eventually(Duration::from_secs(60), "every guest stored", || {
        (guests(&server) == GUESTS).then_some(())
    });
    let everything = server.list_all("/api/resources?limit=1000");
    assert_eq!(everything.len(), GUESTS + 3 + 6, "{:?}", ids(&everything));

    // Pages of 37 by id: each resource once, in order, though the fleet keeps reporting
    // and a second agent's resources arrive after the first page.
    let mut small = simulated(&tmp.path().join("small"), "small", 1, 2);
    let mut walked: Vec<Value> = Vec::new();
    let mut pages = 0;
    let mut url = "/api/resources?limit=37".to_owned();
    loop {
        let (s, v) = server.get(&url);
        assert_eq!(s, 200, "{v}");
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 37, "{v}");
        walked.extend(items.iter().cloned());
        pages += 1;
        if pages == 1 {
            small.enroll_ok(&server.token("10m"));
            small.start(&[]);
        }
        match v["next"].as_str() {
            Some(next) => url = format!("/api/resources?limit=37&cursor={next}"),
            None => break,
        }
    }
    let walked = ids(&walked);
    assert!(walked.windows(2).all(|w| w[0] < w[1]), "{walked:?}");
    let seen: BTreeSet<&String> = walked.iter().collect();
    for id in ids(&everything) {
        assert!(seen.contains(&id), "{id} missed by the walk");
    }
    assert!(pages >= everything.len().div_ceil(37), "{pages} pages");
    let small_node = eventually(Duration::from_secs(30), "the second agent", || {
        let (s, v) = server.get("/api/resources/node:small");
        (s == 200).then_some(v)
    });
    let small_id = small_node["agent_id"].as_str().unwrap().to_owned();

    // Page size: default 100, at most 1000.
    let (_, first) = server.get("/api/resources");
    assert_eq!(first["items"].as_array().unwrap().len(), 100, "{first}");
    assert!(first["next"].is_string(), "{first}");
    assert_eq!(server.get("/api/resources?limit=1000").0, 200);
    assert_bad(&server, "/api/resources?limit=1001", "1000");
    assert_bad(&server, "/api/resources?limit=0", "limit");

    // Cursors: only from the same list with the same filters.
    let (_, vms) = server.get("/api/resources?type=vm&limit=2");
    let vm_cursor = vms["next"].as_str().unwrap().to_owned();
    let (s, more) = server.get(&format!(
        "/api/resources?type=vm&limit=2&cursor={vm_cursor}"
    ));
    assert_eq!(s, 200, "{more}");
    assert!(ids(more["items"].as_array().unwrap())[0] > ids(vms["items"].as_array().unwrap())[1]);
    assert_bad(
        &server,
        &format!("/api/resources?type=lxc&cursor={vm_cursor}"),
        "cursor",
    );
    assert_bad(
        &server,
        &format!("/api/agents?cursor={vm_cursor}"),
        "cursor",
    );
    assert_bad(&server, "/api/resources?cursor=zz", "cursor");
    assert_bad(&server, "/api/resources?cursor=", "cursor");

    // Each filter.
    let only = |query: &str| server.list_all(&format!("/api/resources?{query}"));
    let vms = only("type=vm");
    assert!(!vms.is_empty() && vms.iter().all(|r| r["type"] == "vm"));
    let of_small = only(&format!("agent={small_id}"));
    assert!(
        ids(&of_small).contains(&"node:small".to_owned()),
        "{of_small:?}"
    );
    assert!(of_small.iter().all(|r| r["agent_id"] == small_id.as_str()));
    assert!(only("agent=nobody").is_empty());
    let children = only("parent=node:big");
    assert!(!children.is_empty());
    assert!(children.iter().all(|r| r["parent"] == "node:big"));
    let stopped = only("status=stopped");
    assert!(!stopped.is_empty() && stopped.iter().all(|r| r["status"] == "stopped"));
    let text = only("q=SMALL");
    assert!(!text.is_empty());
    assert!(text.iter().all(|r| {
        let hay = format!("{} {}", r["id"], r["name"]).to_lowercase();
        hay.contains("small")
    }));
    assert!(ids(&text).contains(&"node:small".to_owned()), "{text:?}");
    let both = only("type=node&q=big");
    assert_eq!(ids(&both), ["node:big", "node:big-2", "node:big-3"]);

    // Bad queries: the standard shape.
    assert_bad(&server, "/api/resources?bogus=1", "bogus");
    assert_bad(&server, "/api/resources?limit=abc", "limit");
    assert_bad(&server, "/api/resources?type=vm&type=lxc", "type");

    // Agents: the same convention, by id.
    let (s, one) = server.get("/api/agents?limit=1");
    assert_eq!(s, 200, "{one}");
    let mut agents = ids(one["items"].as_array().unwrap());
    let next = one["next"].as_str().unwrap();
    let (_, two) = server.get(&format!("/api/agents?limit=1&cursor={next}"));
    agents.extend(ids(two["items"].as_array().unwrap()));
    assert_eq!(two["next"], Value::Null, "{two}");
    let mut want = vec![big_id.clone(), small_id];
    want.sort();
    assert_eq!(agents, want);
    assert_bad(&server, "/api/agents?hostname=big", "hostname");
}

#[test]
fn small_lists_share_the_envelope_and_audit_names_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(tmp.path(), &[]);
    let mut made = Vec::new();
    for _ in 0..3 {
        let (s, v) = server.post("/api/tokens", Some(json!({ "ttl": "1h" })));
        assert_eq!(s, 200, "{v}");
        made.push(v["id"].as_str().unwrap().to_owned());
    }
    // Tokens: newest first, two pages of two.
    let (s, page) = server.get("/api/tokens?limit=2");
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    let all = server.list_all("/api/tokens?limit=2");
    let mut listed = ids(&all);
    listed.sort();
    made.sort();
    assert_eq!(listed, made);
    for path in [
        "/api/ai/patrol/runs",
        "/api/ai/patrol/suppressions",
        "/api/ai/patrol/findings",
        "/api/alerts",
        "/api/webhooks",
        "/api/audit",
    ] {
        let (s, v) = server.get(path);
        assert_eq!(s, 200, "{path}: {v}");
        assert!(v["items"].is_array(), "{path}: {v}");
        assert!(v.get("next").is_some(), "{path}: {v}");
        assert_bad(&server, &format!("{path}?limit=5000"), "1000");
        assert_bad(&server, &format!("{path}?cursor=00"), "cursor");
    }

    // The act is the caller's: the admin token in the default org, from loopback.
    let (_, created) = server.get("/api/audit?action=token.create&limit=1");
    let e = &created["items"][0];
    assert_eq!(e["actor"], json!({ "kind": "token", "id": "admin" }), "{e}");
    assert_eq!(e["org_id"], "default", "{e}");
    assert_eq!(e["source_ip"], "127.0.0.1", "{e}");
    assert!(
        made.contains(&e["target"].as_str().unwrap().to_owned()),
        "{e}"
    );

    // Audit pages by seq; `after` starts the walk at a sequence number.
    let oldest = server.list_all("/api/audit?order=asc&limit=2");
    let seqs: Vec<u64> = oldest.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
    let from_2 = server.list_all("/api/audit?order=asc&limit=2&after=2");
    assert_eq!(from_2.first().map(|e| e["seq"].clone()), Some(json!(3)));
    assert_eq!(from_2.len(), seqs.len() - 2);
}
