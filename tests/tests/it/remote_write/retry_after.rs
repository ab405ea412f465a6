//! A receiver that sheds load with `429 Too Many Requests` and `Retry-After: 2`: the sink
//! waits at least those two seconds before it tries again (its own backoff would be 50 ms),
//! says so in its log, and ships everything once the receiver takes it. The receiver is a
//! tiny HTTP/1.1 server on loopback that only counts requests; what a real TSDB stores is the
//! other modules' business.

use super::{BACKLOG, FAILED, SENT, feed, figure, server, stored};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_tests::{AgentProc, eventually};

/// The wait the receiver asks for, in seconds.
const ASKED: u64 = 2;
/// Requests answered with 429 before the receiver takes the rest.
const REFUSED: usize = 2;

/// When each request arrived (after its body was read), in order.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

/// Serves remote-write requests on a free loopback port in a background thread: the first
/// [`REFUSED`] get 429 with `Retry-After`, the rest 204. Each connection is closed after one
/// answer. The thread ends with the test process.
fn receiver() -> (SocketAddr, Arrivals) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(Instant::now());
                seen.len()
            };
            let answer = if n <= REFUSED {
                format!(
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {ASKED}\r\nContent-Length: 9\r\nConnection: close\r\n\r\nslow down"
                )
            } else {
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_owned()
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (addr, arrivals)
}

#[test]
fn retry_after_is_waited_for_before_the_next_try() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, arrivals) = receiver();
    // retry_base 50ms, retry_max 500ms: without Retry-After the next try comes within 0.5 s.
    let server = server(
        &tmp.path().join("server"),
        &format!("http://{addr}/api/v1/write"),
        "",
    );
    let node = AgentProc::simulated(&tmp.path().join("agent"), "slownode", "1s");
    feed(&server, node, || figure(&server, SENT) > 0.0);
    eventually(Duration::from_secs(30), "backlog shipped", || {
        (figure(&server, BACKLOG) == 0.0).then_some(())
    });
    let arrivals = arrivals.lock().unwrap().clone();
    assert!(arrivals.len() > REFUSED, "{} requests", arrivals.len());
    for pair in arrivals[..=REFUSED].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(ASKED),
            "the retry came {gap:?} after a 429 asking for {ASKED} s"
        );
    }
    assert_eq!(figure(&server, FAILED), REFUSED as f64);
    let total: usize = stored(&server).values().map(Vec::len).sum();
    assert_eq!(figure(&server, SENT), total as f64, "everything shipped");
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    let waits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("asked to retry later"))
        .collect();
    assert_eq!(waits.len(), REFUSED, "each wait is logged");
    assert!(
        waits
            .iter()
            .all(|l| l.contains("retry_after_ms") && l.contains("2000")),
        "the wait asked for is logged: {waits:?}"
    );
}
