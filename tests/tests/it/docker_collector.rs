//! The docker collector against the real dockerd at `/var/run/docker.sock`: exact resources for a
//! running, an exited, an OOM-killed and a restarting container, CPU % on the second run, and
//! Docker events triggering a run long before the interval. CI starts dockerd; without the
//! socket this test fails rather than passing vacuously.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use warden_agent::collectors::{CollectorsConfig, DockerConfig, HostConfig, spawn_all};
use warden_shared::metric;
use warden_shared::telemetry::{HealthStatus, ProvenancedBatch, Resource, TelemetryBatch, Value};
use warden_tests::collect::assert_provenance_complete;

const SOCKET: &str = "/var/run/docker.sock";
const IMAGE: &str = "warden-test/busybox:latest";
/// Every container this test creates starts with this, so leftovers can be removed.
const PREFIX: &str = "warden-dc-test-";
const HOST: &str = "itest";
/// Much longer than the test: every batch after the first must come from an event.
const INTERVAL: Duration = Duration::from_secs(60);

/// Runs the docker CLI and returns trimmed stdout; panics with stderr on failure.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn remove_containers_with_prefix() {
    let ids = docker(&["ps", "-aq", "--filter", &format!("name=^/{PREFIX}")]);
    for id in ids.lines().filter(|l| !l.is_empty()) {
        docker(&["rm", "-f", id]);
    }
}

/// Removes the test's containers even when an assertion fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name=^/{PREFIX}")])
            .output();
        if let Ok(out) = ids {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _removed = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "--format", format, name])
}

/// Polls `cond` until it holds or `limit` passes.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn find<'a>(batch: &'a TelemetryBatch, name: &str) -> &'a Resource {
    let id = format!("docker:{HOST}/{name}");
    batch
        .resources
        .iter()
        .find(|r| r.id.as_str() == id)
        .unwrap_or_else(|| panic!("{id} missing from batch: {:#?}", batch.resources))
}

fn attr<'a>(r: &'a Resource, key: &str) -> &'a Value {
    r.attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{} has no attr {key}: {:?}", r.id, r.attrs))
}

fn sample(batch: &TelemetryBatch, name: &str, metric: &str) -> Option<f64> {
    let id = format!("docker:{HOST}/{name}");
    batch
        .samples
        .iter()
        .find(|s| s.resource_id.as_str() == id && s.metric == metric)
        .map(|s| s.value)
}

fn health(batch: &TelemetryBatch) -> (HealthStatus, Option<&str>, u64) {
    let h = batch.health.as_ref().expect("every batch carries health");
    (h.status, h.message.as_deref(), h.duration_ms)
}

fn docker_only(socket: &str) -> CollectorsConfig {
    CollectorsConfig {
        host: HostConfig {
            enabled: false,
            ..HostConfig::default()
        },
        docker: DockerConfig {
            enabled: true,
            interval: INTERVAL,
            timeout: Duration::from_secs(10),
            socket: socket.to_owned(),
        },
        ..CollectorsConfig::default()
    }
}

/// Receives batches until one satisfies `pred`, failing after `limit`. Every batch with
/// samples must carry the provenance of all of them.
async fn recv_until(
    rx: &mut mpsc::Receiver<ProvenancedBatch>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&TelemetryBatch) -> bool,
) -> TelemetryBatch {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let batch = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no batch with {what} within {limit:?}"))
            .expect("collector channel closed");
        if !batch.batch.samples.is_empty() {
            assert_provenance_complete(&batch);
        }
        if pred(&batch.batch) {
            return batch.batch;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_collector_reports_real_containers() {
    assert!(
        Path::new(SOCKET).exists(),
        "{SOCKET} does not exist: this test needs a running dockerd \
         (start one with `dockerd >/tmp/dockerd.log 2>&1 &` and wait for `docker info`)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/docker-test-image.sh");
    let built = Command::new("bash")
        .arg(&script)
        .status()
        .expect("run docker-test-image.sh");
    assert!(built.success(), "{} failed", script.display());

    remove_containers_with_prefix();
    let _cleanup = Cleanup;
    let name = |s: &str| format!("{PREFIX}{}-{s}", std::process::id());
    let (running, exit3, oom, restarts, toggle) = (
        name("running"),
        name("exit3"),
        name("oom"),
        name("restarting"),
        name("toggle"),
    );

    docker(&["run", "-d", "--name", &running, IMAGE, "sleep", "3600"]);
    docker(&["run", "-d", "--name", &toggle, IMAGE, "sleep", "3600"]);
    docker(&["run", "-d", "--name", &exit3, IMAGE, "sh", "-c", "exit 3"]);
    docker(&[
        "run",
        "-d",
        "--name",
        &oom,
        "--memory",
        "8m",
        "--memory-swap",
        "8m",
        IMAGE,
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    docker(&[
        "run",
        "-d",
        "--name",
        &restarts,
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "exit 1",
    ]);
    assert_eq!(docker(&["wait", &exit3]), "3");
    assert_eq!(docker(&["wait", &oom]), "137");
    wait_until("two restarts", Duration::from_secs(30), || {
        inspect(&restarts, "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    // The kernel OOM killer on this cgroup v1 host has proven reliable for an 8 MiB limit; if
    // Docker itself did not record the OOM kill, the collector cannot report it either.
    let docker_saw_oom = inspect(&oom, "{{.State.OOMKilled}}") == "true";
    if !docker_saw_oom {
        eprintln!("dockerd did not record OOMKilled for {oom}; skipping the oom_killed assertion");
    }

    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let handles = spawn_all(&docker_only(SOCKET), HOST, tx, stop_rx);

    // Run 1: at start.
    let first = recv_until(&mut rx, Duration::from_secs(20), "the first run", |_| true).await;
    let (status, message, duration_ms) = health(&first);
    eprintln!(
        "first docker run: {duration_ms} ms for {} resources, {} samples",
        first.resources.len(),
        first.samples.len()
    );
    assert_eq!(first.collector, "docker");
    assert_eq!(first.seq, 0);
    assert_eq!(status, HealthStatus::Ok, "{message:?}");
    assert!(started.elapsed() < Duration::from_secs(20));

    let r = find(&first, &running);
    assert_eq!(r.status, "running");
    assert_eq!(r.name, running);
    assert_eq!(r.parent.as_ref().map(|p| p.as_str()), Some("node:itest"));
    assert_eq!(attr(r, "image"), &Value::from(IMAGE));
    assert_eq!(attr(r, metric::RESTART_COUNT), &Value::Int(0));
    assert_eq!(attr(r, "oom_killed"), &Value::Bool(false));
    assert_eq!(
        attr(r, "health"),
        &Value::Unknown,
        "no healthcheck configured"
    );
    assert!(matches!(attr(r, "started_at"), Value::Text(t) if t.starts_with("20")));
    assert!(sample(&first, &running, metric::MEM_USED_BYTES).is_some_and(|m| m > 0.0));
    assert!(sample(&first, &running, metric::MEM_LIMIT_BYTES).is_some_and(|m| m > 0.0));
    assert_eq!(sample(&first, &running, metric::RESTART_COUNT), Some(0.0));
    assert_eq!(
        sample(&first, &running, metric::CPU_PCT),
        None,
        "the first sample of a container has no CPU delta"
    );

    let e = find(&first, &exit3);
    assert_eq!(e.status, "exited");
    assert_eq!(attr(e, "exit_code"), &Value::Int(3));
    assert_eq!(attr(e, "oom_killed"), &Value::Bool(false));
    assert_eq!(attr(e, "image"), &Value::from(IMAGE));
    assert_eq!(
        sample(&first, &exit3, metric::MEM_USED_BYTES),
        None,
        "a stopped container's memory is unknown, not zero"
    );

    let o = find(&first, &oom);
    assert_eq!(o.status, "exited");
    assert_eq!(attr(o, "exit_code"), &Value::Int(137));
    assert_eq!(attr(o, metric::MEM_LIMIT_BYTES), &Value::Int(8 << 20));
    if docker_saw_oom {
        assert_eq!(attr(o, "oom_killed"), &Value::Bool(true));
    }

    let rs = find(&first, &restarts);
    assert_eq!(rs.status, "exited");
    assert_eq!(attr(rs, metric::RESTART_COUNT), &Value::Int(2));
    assert_eq!(attr(rs, "exit_code"), &Value::Int(1));
    assert_eq!(sample(&first, &restarts, metric::RESTART_COUNT), Some(2.0));

    let host = first
        .resources
        .iter()
        .find(|r| r.id.as_str() == "docker-host:itest")
        .expect("docker-host resource");
    assert!(matches!(attr(host, "server_version"), Value::Text(v) if !v.is_empty()));
    assert!(matches!(attr(host, metric::CONTAINERS_RUNNING), Value::Int(n) if *n >= 2));
    assert!(matches!(attr(host, metric::CONTAINERS_STOPPED), Value::Int(n) if *n >= 3));

    // Give the event stream a moment to be established, then stop a container: the `die`
    // event must bring a run long before the 60 s interval.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    docker(&["kill", &toggle]);
    let second = recv_until(
        &mut rx,
        Duration::from_secs(10),
        "the killed container",
        |b| {
            b.resources
                .iter()
                .any(|r| r.name == toggle && r.status == "exited")
        },
    )
    .await;
    let after_kill = killed_at.elapsed();
    eprintln!(
        "kill -> batch: {after_kill:?}; run took {} ms",
        health(&second).2
    );
    assert!(after_kill < Duration::from_secs(10));
    assert_eq!(health(&second).0, HealthStatus::Ok);
    // Second sample of the running container: now there is a CPU delta. `sleep` is idle, so
    // the value is near zero, but it is present and sane.
    let cpu = sample(&second, &running, metric::CPU_PCT).expect("cpu_pct on the second run");
    assert!((0.0..=100.0 * 64.0).contains(&cpu), "{cpu}");
    assert_eq!(sample(&second, &toggle, metric::CPU_PCT), None);
    assert_eq!(sample(&second, &toggle, metric::MEM_USED_BYTES), None);

    let started_at = Instant::now();
    docker(&["start", &toggle]);
    let third = recv_until(
        &mut rx,
        Duration::from_secs(10),
        "the restarted container",
        |b| {
            b.resources
                .iter()
                .any(|r| r.name == toggle && r.status == "running")
        },
    )
    .await;
    eprintln!("start -> batch: {:?}", started_at.elapsed());
    assert!(started_at.elapsed() < Duration::from_secs(10));
    assert_eq!(
        sample(&third, &toggle, metric::CPU_PCT),
        None,
        "a restarted container starts a fresh CPU baseline"
    );
    assert!(sample(&third, &toggle, metric::MEM_USED_BYTES).is_some_and(|m| m > 0.0));
    assert!(sample(&third, &running, metric::CPU_PCT).is_some());

    // Removing a container makes it disappear from the next (event-triggered) run.
    docker(&["rm", "-f", &exit3]);
    recv_until(
        &mut rx,
        Duration::from_secs(10),
        "the removed container gone",
        |b| !b.resources.iter().any(|r| r.name == exit3),
    )
    .await;

    stop_tx.send(true).expect("collectors still listening");
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("collector tasks stop on shutdown")
            .expect("collector task panicked");
    }
}

#[tokio::test]
async fn unreachable_socket_reports_failed_health_without_samples() {
    let (tx, mut rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = watch::channel(false);
    let handles = spawn_all(&docker_only("/nonexistent/docker.sock"), HOST, tx, stop_rx);
    let batch = recv_until(&mut rx, Duration::from_secs(10), "a failed run", |_| true).await;
    let (status, message, _) = health(&batch);
    assert_eq!(status, HealthStatus::Failed);
    assert_eq!(
        message,
        Some("docker socket /nonexistent/docker.sock: no such socket (is dockerd running?)")
    );
    assert!(batch.resources.is_empty() && batch.samples.is_empty());
    assert_eq!(batch.health.as_ref().and_then(|h| h.last_success_ms), None);
    stop_tx.send(true).expect("collectors still listening");
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("collector tasks stop on shutdown")
            .expect("collector task panicked");
    }
}
