//! The HTTP listener against hostile clients, on the real `warden` binary: slow clients under
//! a lowered descriptor limit (header, body and idle timeouts, the connection cap, `/healthz`
//! answering throughout), one JSON error shape for every malformed request on every route,
//! and key files that others can read refusing start.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use warden_tests::{ServerProc, TEST_KEK, bin, eventually, free_tcp, free_udp};

/// A raw HTTP/1.1 answer.
struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

/// Sends `head` (and `body`) on a fresh connection and reads the answer to its end.
fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("reading the answer to {head:?}: {e}"));
    let text = String::from_utf8_lossy(&out);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    Answer {
        status,
        headers: headers.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// A request head with the admin token and `Connection: close`.
fn head(method: &str, path: &str, token: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: warden\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n{extra}\r\n"
    )
}

/// Asserts the one error shape with `status` and `code`.
fn assert_shape(what: &str, a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{what}: {}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        a.body
    );
    assert!(
        a.headers.contains("content-type: application/json"),
        "{what}: {}",
        a.headers
    );
}

/// Every route of the router: its path (`{id}` and friends stand for path parameters) and
/// methods, whether it reads a JSON body, and whether it reads a query.
const ROUTES: &[(&str, &[&str], bool, bool)] = &[
    ("/healthz", &["GET"], false, false),
    ("/metrics", &["GET"], false, false),
    ("/api/agents", &["GET"], false, true),
    ("/api/agents/{id}/revoke", &["POST"], false, false),
    ("/api/agents/{id}/ping", &["POST"], false, false),
    ("/api/tokens", &["GET", "POST"], true, true),
    ("/api/tokens/{id}", &["DELETE"], false, false),
    ("/api/resources", &["GET"], false, true),
    ("/api/resources/{id}", &["GET"], false, false),
    ("/api/metrics/history", &["GET"], false, true),
    ("/api/metrics/query", &["POST"], true, false),
    ("/api/store", &["GET"], false, false),
    ("/api/ai/patrol/findings", &["GET"], false, true),
    (
        "/api/ai/patrol/findings/{id}/dismiss",
        &["POST"],
        true,
        false,
    ),
    ("/api/ai/patrol/run", &["POST"], false, false),
    ("/api/ai/patrol/runs", &["GET"], false, true),
    ("/api/ai/patrol/status", &["GET"], false, false),
    ("/api/ai/patrol/settings", &["GET", "PUT"], true, false),
    ("/api/ai/patrol/suppressions", &["GET", "POST"], true, true),
    (
        "/api/ai/patrol/suppressions/{id}",
        &["DELETE"],
        false,
        false,
    ),
    ("/api/alerts", &["GET"], false, true),
    ("/api/alerts/rules", &["GET", "PUT"], true, false),
    ("/api/alerts/{id}", &["GET"], false, false),
    ("/api/alerts/{id}/timeline", &["GET"], false, false),
    ("/api/alerts/{id}/acknowledge", &["POST"], true, false),
    ("/api/audit", &["GET"], false, true),
    ("/api/audit/status", &["GET"], false, false),
    ("/api/audit/verify", &["GET"], false, true),
    ("/api/audit/checkpoints", &["GET", "POST"], false, false),
    ("/api/audit/{id}/verify", &["GET"], false, false),
    ("/api/audit/{id}", &["GET"], false, false),
    ("/api/webhooks", &["GET", "POST"], true, true),
    ("/api/webhooks/{id}", &["GET", "PUT", "DELETE"], true, false),
    ("/api/webhooks/{id}/deliveries", &["GET"], false, true),
    ("/api/webhooks/{id}/dead-letters", &["GET"], false, true),
    (
        "/api/webhooks/{id}/dead-letters/{id}/retry",
        &["POST"],
        false,
        false,
    ),
];

/// The body-reading method of a route.
fn body_method(methods: &[&str]) -> &'static str {
    if methods.contains(&"PUT") {
        "PUT"
    } else {
        "POST"
    }
}

#[test]
fn every_route_answers_malformed_requests_in_the_json_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &[]);
    let token = server.admin_token();
    let addr = server.http;
    let json = "Content-Type: application/json\r\n";
    for &(route, methods, reads_json, reads_query) in ROUTES {
        let path = route.replace("{id}", "x");
        // Too large by its declared length, on every route and method: 413 before reading.
        for m in methods {
            let a = raw(
                addr,
                &head(
                    m,
                    &path,
                    &token,
                    &format!("{json}Content-Length: 3000000\r\n"),
                ),
                b"",
            );
            assert_shape(
                &format!("{m} {path} oversized"),
                &a,
                413,
                "payload_too_large",
            );
        }
        // A method the route does not have.
        let a = raw(addr, &head("PATCH", &path, &token, ""), b"");
        assert_shape(&format!("PATCH {path}"), &a, 405, "method_not_allowed");
        assert!(a.headers.contains("allow: "), "PATCH {path}: {}", a.headers);
        // A path parameter that is not UTF-8 once decoded.
        if route.contains("{id}") {
            let bad = route.replace("{id}", "%FF");
            for m in methods {
                let a = raw(addr, &head(m, &bad, &token, ""), b"");
                assert_shape(&format!("{m} {bad}"), &a, 400, "bad_request");
            }
        }
        // A query it cannot read: an unknown parameter, a non-number, invalid UTF-8.
        if reads_query {
            for q in ["bogus=1", "limit=abc", "limit=%FF"] {
                let a = raw(addr, &head("GET", &format!("{path}?{q}"), &token, ""), b"");
                assert_shape(&format!("GET {path}?{q}"), &a, 400, "bad_request");
            }
        }
        // A malformed body, and a body of the wrong type.
        if reads_json {
            let m = body_method(methods);
            let body = b"{\"unclosed\": ";
            let a = raw(
                addr,
                &head(
                    m,
                    &path,
                    &token,
                    &format!("{json}Content-Length: {}\r\n", body.len()),
                ),
                body,
            );
            assert_shape(&format!("{m} {path} malformed"), &a, 400, "bad_request");
            let body = b"{}";
            let a = raw(
                addr,
                &head(
                    m,
                    &path,
                    &token,
                    "Content-Type: text/plain\r\nContent-Length: 2\r\n",
                ),
                body,
            );
            assert_shape(
                &format!("{m} {path} text/plain"),
                &a,
                415,
                "unsupported_media_type",
            );
        }
    }
    // Unknown routes, with and without a token.
    for path in ["/api/nope", "/api/agents/x/nope", "/nope"] {
        let a = raw(addr, &head("GET", path, &token, ""), b"");
        assert_shape(&format!("GET {path}"), &a, 404, "not_found");
        let a = raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"),
            b"",
        );
        assert_shape(&format!("GET {path} without a token"), &a, 404, "not_found");
    }
    // A body larger than the limit sent without a length (chunked): 413 once read.
    let mut chunked = Vec::new();
    for _ in 0..33 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65_536).as_bytes());
        chunked.extend_from_slice(&[b' '; 65_536]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let a = raw(
        addr,
        &head(
            "POST",
            "/api/tokens",
            &token,
            &format!("{json}Transfer-Encoding: chunked\r\n"),
        ),
        &chunked,
    );
    assert_shape("chunked oversized", &a, 413, "payload_too_large");
    // Still serving, and nothing failed inside.
    let (status, _) = server.get("/api/agents");
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(
        !log.contains("panicked") && !log.contains("api request failed"),
        "{log}"
    );
}

/// A `warden run` under `ulimit -n <nofile>` with a config file, killed on drop.
struct Limited {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

impl Limited {
    fn start(dir: &Path, nofile: u32, config: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("server.toml");
        std::fs::write(&cfg, config).unwrap();
        let http = free_tcp();
        let log = dir.join("limited.log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(bin("warden"))
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("run")
            .arg("--http")
            .arg(http.to_string())
            .arg("--quic")
            .arg(free_udp().to_string())
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("WARDEN_AUDIT_KEK", TEST_KEK)
            .env("RUST_LOG", "info,warden_server=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn warden under ulimit");
        let s = Self { child, http, log };
        eventually(Duration::from_secs(20), "limited server /healthz", || {
            s.healthz().then_some(())
        });
        s
    }

    /// `GET /healthz` on a fresh connection answers 200 (within the read timeout).
    fn healthz(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.http, Duration::from_secs(5)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut out = Vec::new();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
            .is_ok()
            && s.read_to_end(&mut out).is_ok()
            && out.starts_with(b"HTTP/1.1 200")
    }

    /// The log without colours.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw.as_str();
        while let Some(i) = rest.find('\x1b') {
            out.push_str(&rest[..i]);
            rest = rest[i..].find('m').map_or("", |j| &rest[i + j + 1..]);
        }
        out.push_str(rest);
        out
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- limited warden log ---\n{}", self.log());
        }
    }
}

/// Whether the server has closed `s` (EOF or reset) without blocking.
fn closed(mut s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn slow_clients_cannot_exhaust_descriptors_or_starve_healthz() {
    let dir = tempfile::tempdir().unwrap();
    // 256 descriptors: a cap of 160 HTTP connections.
    let server = Limited::start(
        dir.path(),
        256,
        "http_header_timeout = \"8s\"\nhttp_body_timeout = \"2s\"\n",
    );
    assert!(
        server.log().contains("max_connections=160"),
        "{}",
        server.log()
    );

    // More slowloris connections than descriptors: each sends half a request line.
    let slow: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut s = TcpStream::connect(server.http).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHo").ok()?;
            Some(s)
        })
        .collect();
    let opened = Instant::now();
    // /healthz answers while they are open (each new connection evicts an idle slow one).
    for _ in 0..5 {
        assert!(server.healthz(), "/healthz failed during the slowloris");
    }
    let open = slow.iter().filter(|s| !closed(s)).count();
    assert!(
        opened.elapsed() < Duration::from_secs(8),
        "too slow to check within the header timeout"
    );
    assert!(
        (100..=160).contains(&open),
        "{open} slow connections open; the cap is 160"
    );

    // The header timeout closes the rest.
    eventually(Duration::from_secs(30), "slow connections closed", || {
        slow.iter().all(closed).then_some(())
    });

    // A body that never finishes: 408 in the error shape after the body timeout.
    let token = std::fs::read_to_string(dir.path().join("data/admin-token")).unwrap();
    let a = raw(
        server.http,
        &head(
            "POST",
            "/api/tokens",
            token.trim(),
            "Content-Type: application/json\r\nContent-Length: 100\r\n",
        ),
        b"{",
    );
    assert_shape("slow body", &a, 408, "request_timeout");

    // An idle kept-alive connection is closed by the header timeout too.
    let mut idle = TcpStream::connect(server.http).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: w\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    eventually(Duration::from_secs(30), "idle keep-alive closed", || {
        closed(&idle).then_some(())
    });

    // Still serving, and never out of descriptors.
    assert!(server.healthz());
    let log = server.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("http accept failed"), "{log}");
}

/// Runs `warden run` once and returns its exit status and stderr, or `None` if it is still
/// running after 20 s (then it is killed).
fn start_once(dir: &Path, kek_env: bool, config: Option<&Path>) -> Option<(ExitStatus, String)> {
    let log = dir.join("once.log");
    let mut cmd = Command::new(bin("warden"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("run")
        .arg("--http")
        .arg(free_tcp().to_string())
        .arg("--quic")
        .arg(free_udp().to_string())
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("WARDEN_AUDIT_KEK")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if kek_env {
        cmd.env("WARDEN_AUDIT_KEK", TEST_KEK);
    }
    let mut child = cmd.spawn().expect("spawn warden");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, std::fs::read_to_string(&log).unwrap_or_default()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn key_files_others_can_read_refuse_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProc::start(&data, &[]);
    let (_, v) = server.get("/api/audit/status");
    assert_eq!(v["signing"]["enabled"], true, "{v}");
    server.kill9();
    let set_mode = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    // The audit signing key, the admin token, the CA key and the QUIC reset key.
    for file in [
        ".audit-signing.key",
        "admin-token",
        "ca.key",
        "quic-reset.key",
    ] {
        let path = data.join(file);
        set_mode(&path, 0o644);
        let (status, log) = start_once(&data, true, None)
            .unwrap_or_else(|| panic!("warden started with {file} at 0644"));
        assert!(!status.success(), "{file}: {status}");
        assert!(
            log.contains(&format!("chmod 600 {}", path.display())),
            "{file}: {log}"
        );
        set_mode(&path, 0o600);
    }

    // The KEK file, when it is where the KEK comes from.
    let kek_file = dir.path().join("audit-kek");
    std::fs::write(&kek_file, TEST_KEK).unwrap();
    set_mode(&kek_file, 0o640);
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        format!("audit_kek_file = {:?}\n", kek_file.display().to_string()),
    )
    .unwrap();
    let (status, log) = start_once(&data, false, Some(&cfg)).expect("started with a 0640 KEK file");
    assert!(!status.success(), "{status}");
    assert!(
        log.contains(&format!("chmod 600 {}", kek_file.display())),
        "{log}"
    );
    set_mode(&kek_file, 0o600);

    // At 0600 everything starts, signed under the KEK file.
    drop(server);
    let cfg = cfg.display().to_string();
    let server = ServerProc::start_with_kek(&data, &["--config", &cfg], None);
    let (_, v) = server.get("/api/audit/status");
    assert_eq!(v["signing"]["enabled"], true, "{v}");
}
