//! Audit webhooks through a real server and a real HTTP receiver that checks every
//! signature: delivery after the receiver comes up (in order, without gaps), durability
//! across a SIGKILL restart, the request path never waiting on a hung receiver, dead
//! letters and their manual retry, and input validation with secrets kept secret.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_tests::{ServerProc, eventually, free_tcp, http};

const WAIT: Duration = Duration::from_secs(60);

/// What the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200.
    Accept,
    /// This status.
    Fail(u16),
    /// Keep the request open until the mode changes.
    Hold,
}

/// One request the receiver answered with 200.
#[derive(Debug, Clone)]
struct Got {
    delivery: String,
    body: Value,
    raw: Vec<u8>,
}

#[derive(Debug)]
struct Inbox {
    mode: Mode,
    got: Vec<Got>,
    /// Requests answered with an error status.
    refused: usize,
    /// Requests being held open right now.
    held: usize,
    /// Requests whose signature or headers were wrong, with why.
    invalid: Vec<String>,
}

type Shared = Arc<(Mutex<Inbox>, Condvar)>;

/// A webhook receiver on a fixed address; it verifies every request like docs/webhooks.md
/// tells a receiver to.
struct Receiver {
    addr: SocketAddr,
    inbox: Shared,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for i in 0..64 {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn now_s() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Checks a request like a receiver should; `Err` says what is wrong.
fn verify(secret: &str, headers: &BTreeMap<String, String>, raw: &[u8]) -> Result<Value, String> {
    let sig = headers
        .get("x-warden-signature")
        .ok_or("no X-Warden-Signature")?;
    let (t, v1) = sig.split_once(',').ok_or("signature without a comma")?;
    let t: i64 = t
        .strip_prefix("t=")
        .and_then(|t| t.parse().ok())
        .ok_or("bad t=")?;
    let v1 = v1.strip_prefix("v1=").ok_or("no v1=")?;
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(raw);
    if hex::encode(hmac_sha256(secret.as_bytes(), &msg)) != v1 {
        return Err(format!("signature mismatch: {sig}"));
    }
    if (now_s() - t).abs() > 300 {
        return Err(format!("t={t} is outside the replay window"));
    }
    let body: Value = serde_json::from_slice(raw).map_err(|e| format!("body: {e}"))?;
    let want = format!(
        "{}-{}",
        body["endpoint_id"].as_str().unwrap_or("?"),
        body["delivery_seq"]
    );
    if headers.get("x-warden-delivery") != Some(&want) {
        return Err(format!(
            "X-Warden-Delivery {:?} != {want}",
            headers.get("x-warden-delivery")
        ));
    }
    if headers.get("x-warden-event").map(String::as_str) != body["type"].as_str() {
        return Err("X-Warden-Event does not match the body type".into());
    }
    if !headers
        .get("user-agent")
        .is_some_and(|u| u.starts_with("warden/"))
    {
        return Err("User-Agent is not warden/<version>".into());
    }
    Ok(body)
}

fn handle(mut s: TcpStream, secret: &str, inbox: &Shared) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let raw = buf[head_end..head_end + len].to_vec();
    let (lock, cv) = &**inbox;
    let mut ib = lock.lock().unwrap();
    if ib.mode == Mode::Hold {
        ib.held += 1;
        cv.notify_all();
        ib = cv.wait_while(ib, |ib| ib.mode == Mode::Hold).unwrap();
        ib.held -= 1;
    }
    let status = match ib.mode {
        Mode::Fail(code) => {
            ib.refused += 1;
            code
        }
        _ => match verify(secret, &headers, &raw) {
            Ok(body) => {
                ib.got.push(Got {
                    delivery: headers["x-warden-delivery"].clone(),
                    body,
                    raw,
                });
                200
            }
            Err(why) => {
                ib.invalid.push(why);
                400
            }
        },
    };
    drop(ib);
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
}

impl Receiver {
    fn inbox(mode: Mode) -> Shared {
        Arc::new((
            Mutex::new(Inbox {
                mode,
                got: Vec::new(),
                refused: 0,
                held: 0,
                invalid: Vec::new(),
            }),
            Condvar::new(),
        ))
    }

    /// Starts listening on `addr`, recording into `inbox`.
    fn start(addr: SocketAddr, secret: &str, inbox: Shared) -> Self {
        let listener = eventually(Duration::from_secs(10), "bind the receiver", || {
            TcpListener::bind(addr).ok()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, ib, secret) = (stop.clone(), inbox.clone(), secret.to_owned());
        let accept = std::thread::spawn(move || {
            for s in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                let (ib, secret) = (ib.clone(), secret.clone());
                std::thread::spawn(move || handle(s, &secret, &ib));
            }
        });
        Self {
            addr,
            inbox,
            stop,
            accept: Some(accept),
        }
    }

    /// Stops listening (the port refuses connections afterwards).
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }

    fn set_mode(&self, mode: Mode) {
        let (lock, cv) = &*self.inbox;
        lock.lock().unwrap().mode = mode;
        cv.notify_all();
    }

    fn with<T>(&self, f: impl FnOnce(&Inbox) -> T) -> T {
        f(&self.inbox.0.lock().unwrap())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.set_mode(Mode::Accept);
        self.stop();
    }
}

fn config(dir: &Path, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("webhooks-test.toml");
    std::fs::write(&p, body).unwrap();
    p
}

fn start(tmp: &Path, cfg: &str) -> ServerProc {
    let c = config(tmp, cfg);
    ServerProc::start(&tmp.join("server"), &["--config", c.to_str().unwrap()])
}

fn req(server: &ServerProc, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    http(
        &format!("http://{}{path}", server.http),
        method,
        Some(&server.admin_token()),
        body,
    )
}

fn create_hook(server: &ServerProc, body: Value) -> String {
    let (s, v) = server.post("/api/webhooks", Some(body));
    assert_eq!(s, 200, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn tokens(server: &ServerProc, n: usize) {
    for _ in 0..n {
        let (s, v) = server.post("/api/tokens", None);
        assert_eq!(s, 200, "{v}");
    }
}

/// Every audit event (oldest first) from the seq of `webhook.create` of `id` on.
fn events_since_create(server: &ServerProc, id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, v) = server.get(&format!("/api/audit?order=asc&limit=500{cursor}"));
        assert_eq!(s, 200, "{v}");
        all.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    let start = all
        .iter()
        .position(|e| e["action"] == "webhook.create" && e["target"] == id)
        .expect("the webhook.create event");
    all.split_off(start)
}

/// The received messages without duplicates (a duplicate must be identical), in arrival
/// order, after asserting every request was valid.
fn unique(r: &Receiver) -> Vec<Value> {
    r.with(|ib| {
        assert!(ib.invalid.is_empty(), "invalid requests: {:?}", ib.invalid);
        let mut seen: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut out = Vec::new();
        for g in &ib.got {
            match seen.get(&g.delivery) {
                Some(raw) => assert_eq!(
                    serde_json::from_slice::<Value>(raw).unwrap()["event"],
                    g.body["event"],
                    "a redelivery of {} differs",
                    g.delivery
                ),
                None => {
                    seen.insert(g.delivery.clone(), g.raw.clone());
                    out.push(g.body.clone());
                }
            }
        }
        out
    })
}

fn event_seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .filter(|m| m["type"] == "audit.event")
        .map(|m| m["event"]["seq"].as_u64().unwrap())
        .collect()
}

/// Contiguous delivery seqs from 1 in arrival order, ascending audit seqs, each checkpoint
/// right after the event it covers; returns the event seqs.
fn check_order(msgs: &[Value]) -> Vec<u64> {
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m["delivery_seq"].as_u64(), Some(i as u64 + 1), "{m}");
    }
    let mut last = 0;
    for m in msgs {
        match m["type"].as_str() {
            Some("audit.event") => {
                let seq = m["event"]["seq"].as_u64().unwrap();
                assert!(seq > last, "event {seq} after {last}");
                assert!(m["event"]["hash"].as_str().is_some_and(|h| h.len() == 64));
                last = seq;
            }
            Some("audit.checkpoint") => {
                let t = m["checkpoint"]["tree_size"].as_u64().unwrap();
                assert_eq!(t, last, "checkpoint {t} must follow event {t}");
            }
            other => panic!("unexpected type {other:?}"),
        }
    }
    event_seqs(msgs)
}

fn deliveries(server: &ServerProc, id: &str) -> Vec<Value> {
    let (s, v) = server.get(&format!("/api/webhooks/{id}/deliveries?limit=1000"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["next"], Value::Null, "{v}");
    v["items"].as_array().unwrap().clone()
}

const FAST: &str = "webhook_retry_base = \"50ms\"\nwebhook_retry_max = \"300ms\"\n";
const SECRET: &str = "receiver-secret-0123456789";

#[test]
fn a_receiver_that_comes_up_late_gets_every_event_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), FAST);
    let addr = free_tcp();
    let id = create_hook(
        &server,
        json!({ "url": format!("http://{addr}/hook"), "secret": SECRET }),
    );
    tokens(&server, 5);
    let (s, v) = server.post("/api/audit/checkpoints", None);
    assert_eq!(s, 200, "{v}");
    let cp = v["checkpoint"]["tree_size"].as_u64().unwrap();
    tokens(&server, 5);
    // Nothing listens yet: attempts fail and are logged.
    eventually(WAIT, "failed attempts while the receiver is down", || {
        let log = deliveries(&server, &id);
        (log.len() >= 3 && log.iter().all(|d| d["outcome"] == "failed")).then_some(())
    });
    let (s, v) = server.get(&format!("/api/webhooks/{id}"));
    assert_eq!(s, 200);
    assert_eq!(v["status"]["delivered"], 0, "{v}");
    assert!(v["status"]["last_error"].as_str().is_some(), "{v}");

    let rx = Receiver::start(addr, SECRET, Receiver::inbox(Mode::Accept));
    let expected: Vec<u64> = events_since_create(&server, &id)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(expected.len() >= 11, "{expected:?}");
    let msgs = eventually(WAIT, "every event delivered", || {
        let m = unique(&rx);
        (event_seqs(&m) == expected).then_some(m)
    });
    assert_eq!(check_order(&msgs), expected);
    let cps: Vec<u64> = msgs
        .iter()
        .filter(|m| m["type"] == "audit.checkpoint")
        .map(|m| m["checkpoint"]["tree_size"].as_u64().unwrap())
        .collect();
    assert!(cps.contains(&cp), "checkpoint {cp} not delivered: {cps:?}");
    let first = &msgs[0]["event"];
    assert_eq!(first["action"], "webhook.create");
    assert!(first["signature"].as_str().is_some(), "{first}");
    let (_, v) = server.get(&format!("/api/webhooks/{id}"));
    assert_eq!(
        v["status"]["next_delivery_seq"],
        msgs.len() as u64 + 1,
        "{v}"
    );
    assert_eq!(v["status"]["pending_attempts"], 0, "{v}");
    // The same on /metrics: delivered, failed attempts, and no lag once caught up.
    let metrics = eventually(WAIT, "webhook lag 0 on /metrics", || {
        let text = server.get_text("/metrics");
        text.contains(&format!("warden_webhook_lag_events{{endpoint=\"{id}\"}} 0"))
            .then_some(text)
    });
    let value = |name: &str| -> u64 {
        let prefix = format!("{name}{{endpoint=\"{id}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(value("warden_webhook_delivered_total") >= msgs.len() as u64);
    assert!(value("warden_webhook_failed_attempts_total") >= 3);
    assert_eq!(value("warden_webhook_dead_letters"), 0);
}

#[test]
fn the_outbox_survives_a_kill_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start(tmp.path(), FAST);
    let addr = free_tcp();
    let inbox = Receiver::inbox(Mode::Accept);
    let mut rx = Receiver::start(addr, SECRET, inbox.clone());
    let id = create_hook(
        &server,
        json!({ "url": format!("http://{addr}/hook"), "secret": SECRET }),
    );
    tokens(&server, 3);
    eventually(WAIT, "the first batch delivered", || {
        (event_seqs(&unique(&rx)).len() >= 4).then_some(())
    });

    // The receiver goes away; events pile up in the outbox; the server is killed.
    rx.stop();
    tokens(&server, 5);
    eventually(WAIT, "a failed attempt before the kill", || {
        deliveries(&server, &id)
            .iter()
            .any(|d| d["outcome"] == "failed")
            .then_some(())
    });
    server.restart();
    tokens(&server, 5);
    let rx = Receiver::start(addr, SECRET, inbox);
    let expected: Vec<u64> = events_since_create(&server, &id)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(expected.len() >= 14, "{expected:?}");
    let msgs = eventually(WAIT, "every event delivered after the restart", || {
        let m = unique(&rx);
        (event_seqs(&m) == expected).then_some(m)
    });
    assert_eq!(check_order(&msgs), expected);
}

#[test]
fn a_hung_receiver_never_slows_audited_requests() {
    let tmp = tempfile::tempdir().unwrap();
    // A long timeout keeps the first delivery open for the whole test.
    let server = start(tmp.path(), &format!("{FAST}webhook_timeout = \"1h\"\n"));
    let addr = free_tcp();
    let rx = Receiver::start(addr, SECRET, Receiver::inbox(Mode::Hold));
    let id = create_hook(
        &server,
        json!({ "url": format!("http://{addr}/hook"), "secret": SECRET }),
    );
    eventually(WAIT, "the first delivery is held open", || {
        (rx.with(|ib| ib.held) == 1).then_some(())
    });
    for _ in 0..20 {
        let (s, v) = server.post("/api/tokens", None);
        assert_eq!(s, 200, "{v}");
    }
    // All 20 audited requests finished while the first delivery is still unanswered.
    assert_eq!(rx.with(|ib| (ib.held, ib.got.len())), (1, 0));
    assert!(deliveries(&server, &id).is_empty());

    rx.set_mode(Mode::Accept);
    let expected: Vec<u64> = events_since_create(&server, &id)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(expected.len() >= 21);
    let msgs = eventually(WAIT, "every event delivered once released", || {
        let m = unique(&rx);
        (event_seqs(&m) == expected).then_some(m)
    });
    assert_eq!(check_order(&msgs), expected);
}

#[test]
fn failures_become_dead_letters_that_a_manual_retry_delivers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &format!("{FAST}webhook_max_attempts = 2\n"));
    let addr = free_tcp();
    let rx = Receiver::start(addr, SECRET, Receiver::inbox(Mode::Fail(500)));
    let id = create_hook(
        &server,
        json!({ "url": format!("http://{addr}/hook"), "secret": SECRET, "events": ["token.*"] }),
    );
    let (s, tok) = server.post("/api/tokens", None);
    assert_eq!(s, 200);
    let token_id = tok["id"].as_str().unwrap().to_owned();
    let dead = eventually(WAIT, "a dead letter", || {
        let (s, v) = server.get(&format!("/api/webhooks/{id}/dead-letters"));
        assert_eq!(s, 200, "{v}");
        let list = v["items"].as_array().unwrap().clone();
        (!list.is_empty()).then_some(list)
    });
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["delivery_seq"], 1);
    assert_eq!(dead[0]["attempts"], 2);
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("500"),
        "{dead:?}"
    );
    let log = deliveries(&server, &id);
    let outcomes: Vec<_> = log
        .iter()
        .filter(|d| d["delivery_seq"] == 1)
        .map(|d| {
            (
                d["attempt"].as_u64().unwrap(),
                d["outcome"].as_str().unwrap().to_owned(),
                d["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (2, "dead_lettered".to_owned(), Some(500)),
            (1, "failed".to_owned(), Some(500))
        ]
    );
    assert_eq!(rx.with(|ib| ib.refused), 2);

    // Fixed receiver, manual retry: the letter arrives with its original delivery seq.
    rx.set_mode(Mode::Accept);
    let (s, v) = server.post(&format!("/api/webhooks/{id}/dead-letters/1/retry"), None);
    assert_eq!(s, 200, "{v}");
    let (s, _) = server.post(&format!("/api/webhooks/{id}/dead-letters/1/retry"), None);
    assert_eq!(s, 404, "a letter is re-queued once");
    let got = eventually(WAIT, "the retried letter", || {
        let m = unique(&rx);
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(got[0]["delivery_seq"], 1);
    assert_eq!(got[0]["event"]["action"], "token.create");
    assert_eq!(got[0]["event"]["target"], token_id);
    let (_, v) = server.get(&format!("/api/webhooks/{id}/dead-letters"));
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["requeued"].as_array().unwrap().len(), 0, "{v}");
    let log = deliveries(&server, &id);
    assert_eq!(log[0]["outcome"], "delivered", "{log:?}");
    assert_eq!(log[0]["retry"], true);
    assert_eq!(log[0]["delivery_seq"], 1);

    // The next event continues the sequence; the filter kept everything else out.
    tokens(&server, 1);
    let msgs = eventually(WAIT, "the next token event", || {
        let m = unique(&rx);
        (event_seqs(&m).len() == 2).then_some(m)
    });
    check_order(&msgs);
    assert!(
        msgs.iter()
            .filter(|m| m["type"] == "audit.event")
            .all(|m| m["event"]["action"] == "token.create"),
        "{msgs:?}"
    );
}

#[test]
fn bad_settings_are_refused_and_secrets_never_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "");
    let post = |body: Value| server.post("/api/webhooks", Some(body));
    let message = |v: &Value| {
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let (s, v) =
        post(json!({ "url": "ftp://example.com/x", "secret": "short", "events": ["Bad*"] }));
    assert_eq!(s, 400, "{v}");
    let m = message(&v);
    for want in [
        "url scheme",
        "secret is 5 characters",
        "events filter \"Bad*\"",
    ] {
        assert!(m.contains(want), "{want:?} missing in {m}");
    }
    assert!(!m.contains("\"short\""), "{m}");
    let (s, v) = post(json!({ "url": "https://user:pw@example.com/" }));
    assert_eq!(s, 400);
    assert!(message(&v).contains("user name or password"), "{v}");
    let (s, v) = post(json!({ "url": "not a url" }));
    assert_eq!(s, 400);
    assert!(message(&v).contains("not a valid absolute URL"), "{v}");
    let (s, v) = post(json!({ "url": "http://127.0.0.1:9/x", "bogus": 1 }));
    assert_eq!(s, 400);
    assert!(message(&v).contains("unknown field `bogus`"), "{v}");
    let (s, v) = post(json!({}));
    assert_eq!(s, 400);
    assert!(message(&v).contains("url is required"), "{v}");

    let provided = "provided-secret-7f3a9c2e1b";
    let rotated = "rotated-secret-4d8e6b0a2c";
    let (s, v) =
        post(json!({ "url": "http://127.0.0.1:9/a", "secret": provided, "description": "siem" }));
    assert_eq!(s, 200, "{v}");
    assert!(v.get("secret").is_none(), "{v}");
    assert_eq!(v["secret_set"], true);
    let a = v["id"].as_str().unwrap().to_owned();
    let (s, v) = post(json!({ "url": "http://127.0.0.1:9/b", "enabled": false }));
    assert_eq!(s, 200, "{v}");
    let generated = v["secret"].as_str().unwrap().to_owned();
    assert!(
        generated.starts_with("whsec_") && generated.len() >= 32,
        "{v}"
    );
    let b = v["id"].as_str().unwrap().to_owned();

    let (s, v) = req(
        &server,
        "PUT",
        &format!("/api/webhooks/{a}"),
        Some(json!({ "secret": rotated, "enabled": false, "events": ["agent.revoke", "token.*"] })),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    assert_eq!(v["events"], json!(["agent.revoke", "token.*"]));
    assert!(v.get("secret").is_none(), "{v}");
    let (s, v) = req(
        &server,
        "PUT",
        &format!("/api/webhooks/{a}"),
        Some(json!({ "url": "gopher://x", "secret": "tiny" })),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        message(&v).contains("url scheme") && message(&v).contains("secret is 4"),
        "{v}"
    );
    let (s, _) = req(
        &server,
        "PUT",
        "/api/webhooks/0000000000000000",
        Some(json!({ "enabled": true })),
    );
    assert_eq!(s, 404);

    let mut shown = Vec::new();
    for path in [
        "/api/webhooks".to_owned(),
        format!("/api/webhooks/{a}"),
        format!("/api/webhooks/{b}"),
        format!("/api/webhooks/{a}/deliveries"),
        format!("/api/webhooks/{a}/dead-letters"),
        "/api/audit?limit=500".to_owned(),
    ] {
        let (s, v) = server.get(&path);
        assert_eq!(s, 200, "{path}: {v}");
        shown.push(v.to_string());
    }
    let (_, list) = server.get("/api/webhooks");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, audit) = server.get("/api/audit?limit=500&action=webhook.*");
    let actions: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"]["result"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("webhook.update".to_owned(), "success".to_owned())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("webhook.create".to_owned(), "failure".to_owned())),
        "{actions:?}"
    );

    let (s, _) = req(&server, "DELETE", &format!("/api/webhooks/{b}"), None);
    assert_eq!(s, 200);
    let (s, _) = server.get(&format!("/api/webhooks/{b}"));
    assert_eq!(s, 404);
    let (s, _) = req(&server, "DELETE", &format!("/api/webhooks/{b}"), None);
    assert_eq!(s, 404);

    let log = std::fs::read_to_string(server.log_path()).unwrap();
    for secret in [provided, rotated, generated.as_str()] {
        for text in &shown {
            assert!(
                !text.contains(secret),
                "a secret in an API response: {text}"
            );
        }
        assert!(!log.contains(secret), "a secret in the server log");
    }
    // At rest the secrets are sealed with the audit keys: the database file holds none of
    // them in the clear.
    let db = std::fs::read(server.dir.join("warden.redb")).unwrap();
    for secret in [provided, rotated, generated.as_str()] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is stored in the clear"
        );
    }
}
