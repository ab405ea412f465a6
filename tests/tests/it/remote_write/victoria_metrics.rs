//! The remote-write sink against a real VictoriaMetrics (Debian's `victoria-metrics`, single
//! node) started by the test on loopback with a temporary data directory: what
//! VictoriaMetrics holds equals what Warden stored, value for value and millisecond for
//! millisecond, with the resource labels. Skipped with a message when `victoria-metrics` is
//! not installed (`scripts/test.sh` installs it).

use super::{
    Received, SENT, Stored, assert_resource_labels, assert_same, encode, feed, figure, host_agent,
    installed, series_key, server, shipped_once,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use warden_tests::{eventually, free_tcp, http};

/// A single-node VictoriaMetrics on a free loopback port, killed when dropped.
struct VictoriaMetrics {
    addr: SocketAddr,
    child: Child,
}

impl VictoriaMetrics {
    /// Starts `bin` with its data and log under `dir` and waits until it is healthy.
    fn start(bin: &Path, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let addr = free_tcp();
        let log = std::fs::File::create(dir.join("victoria-metrics.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr={addr}"))
            .arg("-retentionPeriod=1d")
            // Each poll reads the store afresh, not a cached answer.
            .arg("-search.disableCache")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn victoria-metrics");
        let vm = Self { addr, child };
        let url = format!("http://{addr}/health");
        eventually(Duration::from_secs(30), "victoria-metrics healthy", || {
            let up = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            (up.is_ok() && http(&url, "GET", None, None).0 == 200).then_some(())
        });
        vm
    }

    fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Every raw sample VictoriaMetrics holds for org `default`, as [`Received`], read with
    /// `/api/v1/export` (one JSON line per series: labels, values, ms timestamps). Rows
    /// VictoriaMetrics still buffers in memory are flushed first, so what it acknowledged is
    /// searchable.
    fn samples(&self) -> Received {
        let (status, _) = http(
            &format!("http://{}/internal/force_flush", self.addr),
            "GET",
            None,
            None,
        );
        assert_eq!(status, 200, "force_flush");
        let url = format!(
            "http://{}/api/v1/export?match[]={}",
            self.addr,
            encode("{org=\"default\"}")
        );
        let text = get_text(&url);
        let mut out: Received = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let labels = v["metric"].clone();
            let timestamps: Vec<i64> = v["timestamps"]
                .as_array()
                .expect("timestamps")
                .iter()
                .map(|t| t.as_i64().expect("ms"))
                .collect();
            let values = values(line);
            assert_eq!(values.len(), timestamps.len(), "{line}");
            // A series may come as more than one line (one per stored block): merge them.
            let entry = out
                .entry(series_key(&labels))
                .or_insert_with(|| (labels, Vec::new()));
            entry.1.extend(timestamps.into_iter().zip(values));
        }
        for (_, points) in out.values_mut() {
            points.sort_by_key(|p| p.0);
        }
        out
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `values` of an export line, parsed from the text with Rust's exact float parser (as
/// [`super::points`] does for Warden's answers).
fn values(line: &str) -> Vec<f64> {
    let (_, rest) = line.split_once("\"values\":[").expect("values");
    let body = &rest[..rest.find(']').expect("the end of values")];
    body.split(',')
        .filter(|v| !v.is_empty())
        .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("{v:?}: {e}")))
        .collect()
}

/// The body of a GET of `url`, which must answer 2xx.
fn get_text(url: &str) -> String {
    warden_tests::install_crypto();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
                .text()
                .await
                .expect("body")
        })
}

/// How many samples `got` holds.
fn count(got: &Received) -> usize {
    got.values().map(|(_, p)| p.len()).sum()
}

#[test]
fn victoria_metrics_holds_exactly_what_warden_stored() {
    let Some(bin) = installed("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let vm = VictoriaMetrics::start(&bin, &tmp.path().join("vm"));
    let server = server(
        &tmp.path().join("server"),
        &vm.write_url(),
        "batch_samples = 200\n",
    );
    let host = host_agent(&tmp.path().join("agent"), "vmnode");
    let agent = feed(&server, host, || figure(&server, SENT) >= 300.0);
    let want: Stored = shipped_once(&server);
    let total: usize = want.values().map(Vec::len).sum();
    // Acknowledged is stored; searchable once flushed (and the series indexed): poll until
    // every sample is there (or more, which `assert_same` reports), with a deadline.
    let got = eventually(
        Duration::from_secs(30),
        "samples in victoria-metrics",
        || {
            let got = vm.samples();
            (count(&got) >= total).then_some(got)
        },
    );
    assert_same(&got, &want);
    assert_resource_labels(&got, "node:vmnode", &agent);
    eprintln!(
        "remote write: {total} samples of {} series in VictoriaMetrics",
        got.len()
    );
}
