//! The Prometheus remote-write sink against a real Prometheus (Debian's `prometheus`, with its
//! remote-write receiver on) started by the test: what Prometheus holds equals what Warden
//! stored; a receiver that is down lets the backlog grow and drains it later, across a
//! `kill -9` of the server; a full backlog drops the oldest samples and counts them; a receiver
//! that refuses every request drops them as rejected; one series Prometheus refuses (out of
//! order) costs only that series' samples. Skipped with a message when `prometheus` is not
//! installed (`scripts/test.sh` installs it). The same against VictoriaMetrics is in
//! `victoria_metrics`, and a receiver's `Retry-After` in `retry_after`.

mod retry_after;
mod victoria_metrics;

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use warden_server::remote_write::plan;
use warden_shared::metric;
use warden_tests::{AgentProc, ServerProc, eventually, free_tcp, http, now_ms};

/// Series by (resource id, Warden metric name): their points `(ts ms, value)`.
type Stored = BTreeMap<(String, String), Vec<(i64, f64)>>;
/// As [`Stored`], with each series' labels in Prometheus.
type Received = BTreeMap<(String, String), (Value, Vec<(i64, f64)>)>;

/// A Prometheus with its remote-write receiver on, on a fixed loopback port.
struct Prometheus {
    addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Prometheus {
    /// The `prometheus` binary, or `None` (and a message) when it is not installed.
    fn binary() -> Option<PathBuf> {
        installed("prometheus", "prometheus")
    }

    /// Prepares a Prometheus on a free port with its data under `dir`; not started.
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("prometheus.yml"), "global: {}\n").unwrap();
        Self {
            addr: free_tcp(),
            dir: dir.to_path_buf(),
            child: None,
        }
    }

    fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    fn start(&mut self, bin: &Path) {
        let log = std::fs::File::create(self.dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=1d")
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        self.child = Some(child);
        let url = format!("http://{}/-/ready", self.addr);
        eventually(Duration::from_secs(30), "prometheus ready", || {
            let up = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            (up.is_ok() && http(&url, "GET", None, None).0 == 200).then_some(())
        });
    }

    /// Every raw sample Prometheus holds for org `default` over the last `window`:
    /// (resource id, Warden metric name) -> [(ts ms, value)], with each series' labels.
    fn samples(&self, window: &str) -> Received {
        let query = format!("{{org=\"default\"}}[{window}]");
        let url = format!(
            "http://{}/api/v1/query?query={}&time={:.3}",
            self.addr,
            encode(&query),
            now_ms() as f64 / 1000.0
        );
        let (status, v) = http(&url, "GET", None, None);
        assert_eq!(status, 200, "{v}");
        let mut out = BTreeMap::new();
        for s in v["data"]["result"].as_array().expect("a matrix") {
            let labels = &s["metric"];
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let ts = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (ts, p[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            let key = series_key(labels);
            assert!(
                out.insert(key.clone(), (labels.clone(), points)).is_none(),
                "{key:?} twice"
            );
        }
        out
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The Warden series a receiver's labels name: (resource id, Warden metric name, with the
/// metric's own label put back).
fn series_key(labels: &Value) -> (String, String) {
    let mut name = labels["__name__"].as_str().unwrap().to_owned();
    let own: Vec<(&String, &Value)> = labels
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| {
            ![
                "__name__",
                plan::ORG,
                plan::RESOURCE_ID,
                plan::RESOURCE_TYPE,
                plan::AGENT,
            ]
            .contains(&k.as_str())
        })
        .collect();
    assert!(own.len() <= 1, "one metric label at most here: {labels}");
    if let Some((k, v)) = own.first() {
        name = metric::labelled(&name, k, v.as_str().unwrap());
    }
    (labels[plan::RESOURCE_ID].as_str().unwrap().to_owned(), name)
}

/// The binary `name` on the `PATH`, or `None` and a message saying which Debian `package`
/// has it.
fn installed(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!(
            "skipping: `{name}` is not installed (apt-get install {package}; scripts/test.sh does)"
        );
    }
    found
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A server whose config ships to `url`, with fast retries; `extra` goes into
/// `[remote_write]`.
fn server(dir: &Path, url: &str, extra: &str) -> ServerProc {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "[remote_write]\nurl = \"{url}\"\nretry_base = \"50ms\"\nretry_max = \"500ms\"\ntimeout = \"5s\"\n{extra}"
        ),
    )
    .unwrap();
    ServerProc::start(&dir.join("data"), &["--config", cfg.to_str().unwrap()])
}

/// One figure of `/metrics` (with its labels, if any, as written).
fn figure(server: &ServerProc, name: &str) -> f64 {
    let text = server.get_text("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

const BACKLOG: &str = "warden_remote_write_backlog_samples";
const SENT: &str = "warden_remote_write_sent_samples_total";
const FAILED: &str = "warden_remote_write_failed_requests_total";
const FULL: &str = "warden_remote_write_dropped_samples_total{reason=\"backlog_full\"}";
const REJECTED: &str = "warden_remote_write_dropped_samples_total{reason=\"rejected\"}";
const ROWS: &str = "warden_remote_write_backlog_rows";

/// Runs `agent` until `enough` says so, then stops it (so what Warden stored no longer
/// changes). Returns the agent id.
fn feed(server: &ServerProc, mut agent: AgentProc, mut enough: impl FnMut() -> bool) -> String {
    let id = agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    eventually(Duration::from_secs(60), "enough telemetry", || {
        enough().then_some(())
    });
    agent.terminate();
    // A batch in the writer when the agent stopped lands within a commit.
    std::thread::sleep(Duration::from_secs(1));
    id
}

/// Every raw sample Warden stored for every resource and metric it knows:
/// (resource id, metric) -> [(ts ms, value)].
/// Waits until the backlog is empty and returns what the store holds, checked to have been
/// sent exactly once with nothing left, dropped or rejected.
fn shipped_once(server: &ServerProc) -> Stored {
    let stored_samples = eventually(Duration::from_secs(30), "backlog shipped", || {
        (figure(server, BACKLOG) == 0.0).then(|| stored(server))
    });
    let total: usize = stored_samples.values().map(Vec::len).sum();
    assert_eq!(
        figure(server, SENT),
        total as f64,
        "each stored sample sent once"
    );
    assert_eq!(figure(server, ROWS), 0.0);
    assert_eq!(figure(server, FULL) + figure(server, REJECTED), 0.0);
    stored_samples
}

fn stored(server: &ServerProc) -> Stored {
    let mut out = BTreeMap::new();
    let from = now_ms() - 3_600_000;
    for r in server.list_all("/api/resources") {
        let id = r["id"].as_str().unwrap().to_owned();
        let (s, detail) = server.get(&format!("/api/resources/{id}"));
        assert_eq!(s, 200, "{detail}");
        let Some(metrics) = detail["metrics"].as_object() else {
            continue;
        };
        for name in metrics.keys() {
            let text = server.get_text(&format!(
                "/api/metrics/history?resource_id={}&metric={}&from={from}&to={}",
                encode(&id),
                encode(name),
                now_ms() + 60_000
            ));
            let points = points(&text);
            if !points.is_empty() {
                out.insert((id.clone(), name.clone()), points);
            }
        }
    }
    out
}

/// The `points` of a history answer, parsed from the text with Rust's exact float parser
/// (serde_json's default one can be a unit in the last place off).
fn points(text: &str) -> Vec<(i64, f64)> {
    let (_, rest) = text.split_once("\"points\":[").expect("points");
    let body = &rest[..rest.find("]]").map_or(0, |i| i + 1)];
    body.split("],")
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (ts, v) = p.trim_matches(['[', ']']).split_once(',').expect("[ts,v]");
            (ts.parse().expect("ts"), v.parse().expect("value"))
        })
        .collect()
}

/// Asserts Prometheus holds exactly `want` (every series, every point, bit for bit).
fn assert_same(got: &Received, want: &Stored) {
    let got_keys: Vec<_> = got.keys().collect();
    let want_keys: Vec<_> = want.keys().collect();
    assert_eq!(got_keys, want_keys, "the same series");
    for (k, points) in want {
        let (labels, have) = &got[k];
        assert_eq!(have.len(), points.len(), "{k:?} {labels}");
        for (a, b) in have.iter().zip(points) {
            assert_eq!(a.0, b.0, "{k:?}");
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{k:?} at {}", a.0);
        }
    }
}

/// An agent with this machine's host collector every second, as `hostname`: real values, and
/// metrics with labels (file systems).
fn host_agent(dir: &Path, hostname: &str) -> AgentProc {
    AgentProc::new(
        dir,
        &format!(
            "hostname = \"{hostname}\"\n[collectors.docker]\nenabled = false\n[collectors.host]\ninterval = \"1s\"\ntimeout = \"1s\"\n"
        ),
    )
}

/// The labels of the host resource `resource` fed by `agent`: its type and agent, and a
/// metric's own label kept as a label (the host collector's file systems).
fn assert_resource_labels(got: &Received, resource: &str, agent: &str) {
    let (labels, _) = &got[&(resource.to_owned(), metric::CPU_PCT.to_owned())];
    assert_eq!(labels[plan::RESOURCE_TYPE], "node", "{labels}");
    assert_eq!(labels[plan::AGENT], agent, "{labels}");
    assert_eq!(labels[plan::ORG], "default", "{labels}");
    assert!(
        got.keys().any(|(_, m)| m.contains('{')),
        "a labelled metric: {:?}",
        got.keys()
    );
}

#[test]
fn prometheus_holds_exactly_what_warden_stored() {
    let Some(bin) = Prometheus::binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::new(&tmp.path().join("prom"));
    prom.start(&bin);
    let server = server(
        &tmp.path().join("server"),
        &prom.write_url(),
        "batch_samples = 200\n",
    );
    let host = host_agent(&tmp.path().join("agent"), "rwnode");
    let agent = feed(&server, host, || figure(&server, SENT) >= 300.0);
    let stored_samples = shipped_once(&server);
    let total: usize = stored_samples.values().map(Vec::len).sum();
    let got = prom.samples("1h");
    assert_same(&got, &stored_samples);
    assert_resource_labels(&got, "node:rwnode", &agent);
    eprintln!(
        "remote write: {total} samples of {} series in Prometheus",
        got.len()
    );
}

#[test]
fn a_down_receiver_builds_a_backlog_that_survives_kill9_and_drains() {
    let Some(bin) = Prometheus::binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on its port yet.
    let mut prom = Prometheus::new(&tmp.path().join("prom"));
    let mut server = server(&tmp.path().join("server"), &prom.write_url(), "");
    let node = AgentProc::simulated(&tmp.path().join("agent"), "downnode", "1s");
    feed(&server, node, || {
        figure(&server, BACKLOG) >= 200.0 && figure(&server, FAILED) >= 2.0
    });
    let backlog = figure(&server, BACKLOG);
    assert_eq!(figure(&server, SENT), 0.0);

    // kill -9 with rows pending: the cursor (the rows left) survives.
    server.restart();
    assert_eq!(figure(&server, BACKLOG), backlog);

    prom.start(&bin);
    eventually(Duration::from_secs(60), "backlog drained", || {
        (figure(&server, BACKLOG) == 0.0).then_some(())
    });
    // Every pending sample went out exactly once from the outbox.
    assert_eq!(figure(&server, SENT), backlog);
    assert_eq!(figure(&server, ROWS), 0.0);
    assert_eq!(figure(&server, FULL) + figure(&server, REJECTED), 0.0);
    let want = stored(&server);
    assert_eq!(want.values().map(Vec::len).sum::<usize>() as f64, backlog);
    assert_same(&prom.samples("1h"), &want);
}

#[test]
fn a_full_backlog_drops_the_oldest_and_counts_them() {
    let Some(bin) = Prometheus::binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::new(&tmp.path().join("prom"));
    let server = server(
        &tmp.path().join("server"),
        &prom.write_url(),
        "batch_samples = 10\nmax_backlog_samples = 100\n",
    );
    let node = AgentProc::simulated(&tmp.path().join("agent"), "fullnode", "1s");
    feed(&server, node, || figure(&server, FULL) >= 200.0);
    let backlog = figure(&server, BACKLOG);
    let dropped = figure(&server, FULL);
    assert!(backlog <= 100.0, "bounded: {backlog}");

    prom.start(&bin);
    eventually(Duration::from_secs(60), "backlog drained", || {
        (figure(&server, BACKLOG) == 0.0).then_some(())
    });
    let want = stored(&server);
    let total = want.values().map(Vec::len).sum::<usize>() as f64;
    // Stored = shipped + dropped, and what was shipped is the newest.
    assert_eq!(figure(&server, SENT), backlog);
    assert_eq!(backlog + dropped, total);
    let got = prom.samples("1h");
    let shipped: usize = got.values().map(|(_, p)| p.len()).sum();
    assert_eq!(shipped as f64, backlog);
    let oldest_shipped = got.values().flat_map(|(_, p)| p.iter().map(|x| x.0)).min();
    let newest_stored = want.values().flat_map(|p| p.iter().map(|x| x.0)).max();
    let oldest_stored = want.values().flat_map(|p| p.iter().map(|x| x.0)).min();
    assert!(oldest_shipped > oldest_stored, "the oldest were dropped");
    assert_eq!(
        got.values().flat_map(|(_, p)| p.iter().map(|x| x.0)).max(),
        newest_stored,
        "the newest were kept"
    );
}

#[test]
fn a_refusing_receiver_drops_batches_as_rejected_and_says_so_once() {
    let Some(bin) = Prometheus::binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::new(&tmp.path().join("prom"));
    prom.start(&bin);
    // A path Prometheus does not serve: 404, which no retry will change.
    let url = prom.write_url().replace("/write", "/nowhere");
    let server = server(&tmp.path().join("server"), &url, "batch_samples = 20\n");
    let node = AgentProc::simulated(&tmp.path().join("agent"), "refusednode", "1s");
    feed(&server, node, || figure(&server, REJECTED) >= 100.0);
    eventually(Duration::from_secs(30), "backlog settled", || {
        (figure(&server, BACKLOG) == 0.0).then_some(())
    });
    let total: usize = stored(&server).values().map(Vec::len).sum();
    assert_eq!(figure(&server, REJECTED), total as f64);
    assert_eq!(figure(&server, SENT) + figure(&server, FAILED), 0.0);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert_eq!(log.matches("refused a request").count(), 1, "logged once");
    assert!(log.contains("404"), "the status is logged");
}

/// Posts `req` to Prometheus's write endpoint as Warden does; returns the status.
fn post(prom: &Prometheus, req: &plan::WriteRequest) -> u16 {
    warden_tests::install_crypto();
    let body = plan::body(req).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            reqwest::Client::new()
                .post(prom.write_url())
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
}

#[test]
fn one_refused_series_costs_only_its_own_samples() {
    let Some(bin) = Prometheus::binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::new(&tmp.path().join("prom"));
    prom.start(&bin);
    let server = server(&tmp.path().join("server"), &prom.write_url(), "");
    let mut node = AgentProc::simulated(&tmp.path().join("agent"), "bisnode", "1s");
    let agent = node.enroll_ok(&server.token("10m"));
    // Prometheus already holds a newer sample of the node's CPU series (ten minutes ahead), so
    // every CPU sample Warden sends is out of order and Prometheus refuses any request with
    // one of them (400).
    let label = |name: &str, value: &str| plan::Label {
        name: name.into(),
        value: value.into(),
    };
    let ahead = plan::WriteRequest {
        timeseries: vec![plan::TimeSeries {
            labels: vec![
                label("__name__", metric::CPU_PCT),
                label("agent", &agent),
                label("org", "default"),
                label("resource_id", "node:bisnode"),
                label("resource_type", "node"),
            ],
            samples: vec![plan::Sample {
                value: -1.0,
                timestamp: now_ms() + 600_000,
            }],
        }],
    };
    assert_eq!(post(&prom, &ahead), 204);
    node.start(&[]);
    let cpu = ("node:bisnode".to_owned(), metric::CPU_PCT.to_owned());
    eventually(Duration::from_secs(60), "refusals", || {
        (figure(&server, REJECTED) >= 10.0).then_some(())
    });
    node.terminate();
    std::thread::sleep(Duration::from_secs(1));
    eventually(Duration::from_secs(30), "backlog settled", || {
        (figure(&server, BACKLOG) == 0.0).then_some(())
    });
    let mut want = stored(&server);
    let refused = want.remove(&cpu).expect("the node's CPU series").len();
    let total: usize = want.values().map(Vec::len).sum::<usize>() + refused;
    assert_eq!(
        figure(&server, REJECTED),
        refused as f64,
        "only the CPU samples"
    );
    assert_eq!(figure(&server, SENT), (total - refused) as f64);
    let mut got = prom.samples("1h");
    // (The sample ahead is in the future, outside the query's window.)
    assert!(got.remove(&cpu).is_none(), "none of Warden's CPU samples");
    assert_same(&got, &want);
}
