//! Fixtures the rules' unit tests share, and tests across several kinds of resource.

use super::*;
use crate::model::LatestSample;

pub(super) const NOW: i64 = 1_800_000_000_000;

pub(super) fn record(id: &str, status: &str) -> ResourceRecord {
    let (kind, name) = id.split_once(':').unwrap();
    ResourceRecord {
        id: id.into(),
        kind: kind.into(),
        name: name.rsplit('/').next().unwrap().into(),
        status: status.into(),
        ..ResourceRecord::default()
    }
}

pub(super) fn latest(r: &mut ResourceRecord, metric: &str, value: f64) {
    r.latest
        .insert(metric.into(), LatestSample { ts_ms: NOW, value });
}

/// A series of `minutes` one-minute samples ending now.
pub(super) fn series(
    s: &mut Snapshot,
    id: &str,
    metric: &str,
    minutes: i64,
    f: impl Fn(i64) -> f64,
) {
    let points = (0..=minutes)
        .map(|m| (NOW - (minutes - m) * 60_000, f(m)))
        .collect();
    s.history.insert((id.into(), metric.into()), points);
}

#[test]
pub(super) fn backups_pods_and_disks_from_their_latest_state() {
    let mut old = record("lxc:demo/104", "running");
    latest(
        &mut old,
        &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
        4.0 * 86_400.0,
    );
    let mut fresh_elsewhere = record("vm:demo/100", "running");
    latest(
        &mut fresh_elsewhere,
        &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
        5.0 * 86_400.0,
    );
    latest(
        &mut fresh_elsewhere,
        &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "nfs"),
        3600.0,
    );
    let mut failing = record("vm:demo/101", "running");
    latest(
        &mut failing,
        &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
        3600.0,
    );
    latest(&mut failing, metric::BACKUP_FAILED_24H, 1.0);
    let mut crash = record("pod:k/shop/web-1", "CrashLoopBackOff");
    latest(&mut crash, metric::RESTARTS, 7.0);
    crash
        .attrs
        .insert("last_termination_reason".into(), "OOMKilled".into());
    let running = record("pod:k/shop/web-2", "Running");
    let mut worn = record("disk:pve1/sdb", "healthy");
    latest(&mut worn, metric::DISK_WEAROUT_PCT, 18.0);
    let mut unknown = record("disk:pve1/sda", "healthy");
    unknown
        .attrs
        .insert("wearout".into(), serde_json::Value::Null);
    let s = Snapshot {
        now_ms: NOW,
        resources: vec![old, fresh_elsewhere, failing, crash, running, worn, unknown],
        ..Snapshot::default()
    };
    let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
    let keys: Vec<(&str, &str)> = found
        .iter()
        .map(|d| (d.resource_id.as_str(), d.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("lxc:demo/104", "backup-age"),
            ("vm:demo/101", "backup-failed"),
            ("pod:k/shop/web-1", "pod-crashloop"),
            ("disk:pve1/sdb", "disk-wearout"),
        ]
    );
    assert!(found[0].title.contains("96 h"), "{}", found[0].title);
    assert!(found[2].description.contains("OOMKilled"));
    assert_eq!(found[3].severity, Severity::Warning);
}

#[test]
pub(super) fn kubernetes_pbs_replication_containers_and_guest_memory() {
    let attr = |r: &mut ResourceRecord, k: &str, v: serde_json::Value| {
        r.attrs.insert(k.into(), v);
    };
    let mut pending = record("pod:k/shop/new-1", "Pending");
    attr(&mut pending, "phase", "Pending".into());
    attr(&mut pending, "created_ms", (NOW - 6 * 60_000).into());
    let mut young = record("pod:k/shop/new-2", "Pending");
    attr(&mut young, "phase", "Pending".into());
    attr(&mut young, "created_ms", (NOW - 60_000).into());
    let mut pull = record("pod:k/shop/bad-image", "ImagePullBackOff");
    attr(&mut pull, "phase", "Pending".into());
    attr(
        &mut pull,
        "last_warning",
        "Failed: rpc error: not found".into(),
    );
    let node = record("k8s-node:k/worker-2", "NotReady");
    let ready = record("k8s-node:k/worker-1", "Ready");
    let mut deploy = record("k8s-workload:k/shop/deployment/web", "Degraded");
    attr(&mut deploy, "kind", "deployment".into());
    latest(&mut deploy, metric::REPLICAS_DESIRED, 3.0);
    latest(&mut deploy, metric::REPLICAS_UNAVAILABLE, 1.0);
    let mut job = record("k8s-workload:k/shop/job/backup-1", "Failed");
    attr(&mut job, "failure_reason", "BackoffLimitExceeded".into());
    latest(&mut job, metric::JOB_FAILED, 1.0);
    let lost = record("pvc:k/shop/data", "Lost");
    let bound = record("pvc:k/shop/uploads", "Bound");
    let mut store = record("pbs-datastore:pbs1/store1", "available");
    latest(
        &mut store,
        &metric::labelled(metric::JOB_LAST_OK, "job", "gc"),
        0.0,
    );
    latest(
        &mut store,
        &metric::labelled(metric::JOB_LAST_OK, "job", "sync/s-offsite"),
        1.0,
    );
    attr(&mut store, "gc_last_state", "EIO: I/O error".into());
    let mut repl = record("replication:demo/100-0", "failing");
    attr(&mut repl, "error", "exit code 255".into());
    attr(&mut repl, "fail_count", 3.into());
    let mut oom = record("docker:h/worker", "running");
    attr(&mut oom, "oom_killed", true.into());
    let restarting = record("docker:h/flappy", "running");
    let mut vm = record("vm:demo/100", "running");
    vm.attrs.insert("node".into(), "pve1".into());
    let mut s = Snapshot {
        now_ms: NOW,
        resources: vec![
            pending, young, pull, node, ready, deploy, job, lost, bound, store, repl, oom,
            restarting, vm,
        ],
        ..Snapshot::default()
    };
    series(&mut s, "docker:h/flappy", metric::RESTART_COUNT, 50, |m| {
        (m / 10) as f64
    });
    series(&mut s, "vm:demo/100", metric::MEM_USED_PCT, 15, |_| 90.0);
    let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
    let got: Vec<(&str, &str, Severity)> = found
        .iter()
        .map(|d| (d.resource_id.as_str(), d.key.as_str(), d.severity))
        .collect();
    assert_eq!(
        got,
        vec![
            ("pod:k/shop/new-1", "pod-pending", Severity::Warning),
            ("pod:k/shop/bad-image", "pod-image", Severity::Warning),
            (
                "k8s-node:k/worker-2",
                "k8s-node-not-ready",
                Severity::Critical
            ),
            (
                "k8s-workload:k/shop/deployment/web",
                "replicas-unavailable",
                Severity::Warning
            ),
            (
                "k8s-workload:k/shop/job/backup-1",
                "job-failed",
                Severity::Warning
            ),
            ("pvc:k/shop/data", "pvc-unbound", Severity::Critical),
            (
                "pbs-datastore:pbs1/store1",
                "pbs-gc-failed",
                Severity::Warning
            ),
            (
                "replication:demo/100-0",
                "replication-failing",
                Severity::Critical
            ),
            ("docker:h/worker", "container-oom", Severity::Warning),
            ("docker:h/flappy", "container-restarts", Severity::Warning),
            ("vm:demo/100", "guest-memory", Severity::Critical),
        ]
    );
    assert!(
        found[1].evidence.contains("rpc error"),
        "{}",
        found[1].evidence
    );
    assert!(found[6].evidence.contains("EIO"), "{}", found[6].evidence);
    assert!(
        found[7].evidence.contains("fail_count = 3"),
        "{}",
        found[7].evidence
    );
    assert!(found[9].title.contains("5 times"), "{}", found[9].title);
    assert_eq!(found[10].node.as_deref(), Some("pve1"));
}

pub(super) fn latest_at(r: &mut ResourceRecord, metric: &str, value: f64, ts_ms: i64) {
    r.latest
        .insert(metric.into(), LatestSample { ts_ms, value });
}

pub(super) fn attr(r: &mut ResourceRecord, k: &str, v: impl Into<serde_json::Value>) {
    r.attrs.insert(k.into(), v.into());
}

#[test]
pub(super) fn severity_policy_escalates_what_puts_data_or_service_at_risk() {
    let t = Thresholds::default();
    let mut resources = Vec::new();
    // Backups: 3 days old is a warning, 5 days critical.
    for (vmid, days) in [(100, 3.0), (101, 5.0)] {
        let mut g = record(&format!("vm:c/{vmid}"), "running");
        latest(
            &mut g,
            &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
            days * 86_400.0,
        );
        resources.push(g);
    }
    // PBS: a failed verify is critical at once; GC after repeated failures.
    let mut ds = record("pbs-datastore:pbs/a", "available");
    latest(
        &mut ds,
        &metric::labelled(metric::JOB_LAST_OK, "job", "verify/v1"),
        0.0,
    );
    latest(
        &mut ds,
        &metric::labelled(metric::JOB_LAST_OK, "job", "gc"),
        0.0,
    );
    latest(&mut ds, metric::TASKS_FAILED_24H, 2.0);
    resources.push(ds);
    let mut ds = record("pbs-datastore:pbs/b", "available");
    latest(
        &mut ds,
        &metric::labelled(metric::JOB_LAST_OK, "job", "gc"),
        0.0,
    );
    latest(
        &mut ds,
        &metric::labelled(metric::JOB_LAST_OK, "job", "sync/s1"),
        0.0,
    );
    latest(&mut ds, metric::TASKS_FAILED_24H, 3.0);
    resources.push(ds);
    // Replication: one failure a warning, three in a row critical.
    for (job, fails) in [("100-0", 1), ("101-0", 3)] {
        let mut r = record(&format!("replication:c/{job}"), "failing");
        attr(&mut r, "fail_count", fails);
        resources.push(r);
    }
    // A crash-looping pod whose deployment still serves, and one whose does not.
    for (name, desired, unavailable) in [("web", 3.0, 1.0), ("db", 1.0, 1.0)] {
        let wid = format!("k8s-workload:k/shop/deployment/{name}");
        let mut w = record(&wid, "Degraded");
        latest(&mut w, metric::REPLICAS_DESIRED, desired);
        latest(&mut w, metric::REPLICAS_UNAVAILABLE, unavailable);
        resources.push(w);
        let mut p = record(&format!("pod:k/shop/{name}-1"), "CrashLoopBackOff");
        attr(&mut p, "workload", wid.as_str());
        resources.push(p);
    }
    let f = found(resources, &t);
    let want = [
        ("vm:c/100", "backup-age", Severity::Warning),
        ("vm:c/101", "backup-age", Severity::Critical),
        (
            "pbs-datastore:pbs/a",
            "pbs-verify/v1-failed",
            Severity::Critical,
        ),
        ("pbs-datastore:pbs/a", "pbs-gc-failed", Severity::Warning),
        ("pbs-datastore:pbs/b", "pbs-gc-failed", Severity::Critical),
        (
            "pbs-datastore:pbs/b",
            "pbs-sync/s1-failed",
            Severity::Critical,
        ),
        (
            "replication:c/100-0",
            "replication-failing",
            Severity::Warning,
        ),
        (
            "replication:c/101-0",
            "replication-failing",
            Severity::Critical,
        ),
        ("pod:k/shop/web-1", "pod-crashloop", Severity::Warning),
        (
            "k8s-workload:k/shop/deployment/web",
            "replicas-unavailable",
            Severity::Warning,
        ),
        ("pod:k/shop/db-1", "pod-crashloop", Severity::Critical),
        (
            "k8s-workload:k/shop/deployment/db",
            "replicas-unavailable",
            Severity::Critical,
        ),
    ];
    for (id, key, severity) in want {
        assert_eq!(sev(&f, id, key), Some(severity), "{id} {key}: {f:#?}");
    }
    assert_eq!(f.len(), want.len(), "{f:#?}");
    let db = f
        .iter()
        .find(|d| d.resource_id == "pod:k/shop/db-1")
        .unwrap();
    assert!(
        db.evidence.contains("has no replica available"),
        "{}",
        db.evidence
    );
    let old = f.iter().find(|d| d.resource_id == "vm:c/101").unwrap();
    assert!(
        old.evidence.contains("critical over 345600"),
        "{}",
        old.evidence
    );
}

pub(super) fn found(resources: Vec<ResourceRecord>, t: &Thresholds) -> Vec<Detection> {
    let s = Snapshot {
        now_ms: NOW,
        resources,
        ..Snapshot::default()
    };
    detect(&s, t, &BTreeMap::new())
}

/// The resources and severities of the findings with `key`.
pub(super) fn keyed<'a>(found: &'a [Detection], key: &str) -> Vec<(&'a str, Severity)> {
    found
        .iter()
        .filter(|d| d.key == key)
        .map(|d| (d.resource_id.as_str(), d.severity))
        .collect()
}

pub(super) fn sev(found: &[Detection], id: &str, key: &str) -> Option<Severity> {
    found
        .iter()
        .find(|d| d.resource_id == id && d.key == key)
        .map(|d| d.severity)
}

const GIB: f64 = 1_073_741_824.0;

/// A container whose root disk is `pct` % of 8 GiB full.
pub(super) fn container(vmid: u32, pct: f64) -> ResourceRecord {
    let mut r = record(&format!("lxc:c/{vmid}"), "running");
    r.attrs.insert("vmid".into(), vmid.into());
    latest(&mut r, metric::DISK_USED_PCT, pct);
    latest(&mut r, metric::DISK_USED_BYTES, 8.0 * GIB * pct / 100.0);
    latest(&mut r, metric::DISK_TOTAL_BYTES, 8.0 * GIB);
    r
}

pub(super) fn vm_fs(r: &mut ResourceRecord, mount: &str, used_gib: f64, total_gib: f64, ts: i64) {
    let m = |name: &str| format!("{name}{{mountpoint=\"{mount}\"}}");
    latest_at(r, &m(metric::GUEST_FS_USED_BYTES), used_gib * GIB, ts);
    latest_at(r, &m(metric::GUEST_FS_TOTAL_BYTES), total_gib * GIB, ts);
    latest_at(
        r,
        &m(metric::GUEST_FS_USED_PCT),
        used_gib / total_gib * 100.0,
        ts,
    );
}

#[test]
pub(super) fn offline_nodes_and_failing_disks_are_critical() {
    let mut pve3 = record("node:pve3", "offline");
    pve3.updated_at_ms = NOW - 4 * 60_000;
    let mut sdb = record("disk:pve1/S3Z9NB0K", "failing");
    sdb.name = "/dev/sdb".into();
    sdb.attrs.insert("health".into(), "FAILED".into());
    let list = found(
        vec![
            pve3,
            record("node:pve1", "online"),
            sdb,
            record("disk:pve1/S3Z9NB0J", "healthy"),
        ],
        &Thresholds::default(),
    );
    assert_eq!(list.len(), 2, "{list:#?}");
    assert_eq!(
        sev(&list, "node:pve3", "node-offline"),
        Some(Severity::Critical)
    );
    assert_eq!(
        sev(&list, "disk:pve1/S3Z9NB0K", "disk-health"),
        Some(Severity::Critical)
    );
    let node = list.iter().find(|d| d.key == "node-offline").unwrap();
    assert!(node.evidence.contains("4 min ago"), "{}", node.evidence);
}

#[test]
pub(super) fn a_healthy_fleet_raises_nothing_and_old_settings_take_the_new_defaults() {
    let t = Thresholds::default();
    let mut vm = record("vm:c/100", "running");
    vm_fs(&mut vm, "/", 10.0, 50.0, NOW);
    let mut hdd = record("disk:pve1/Z1", "healthy");
    latest(&mut hdd, metric::DISK_TEMP_CELSIUS, 38.0);
    let mut node = record("node:pve1", "online");
    latest(
        &mut node,
        &metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", "pve-ssl.pem"),
        500.0 * 86_400.0,
    );
    host_mount(&mut node, "/", 84.9, NOW);
    host_mount(&mut node, "/boot/efi", 1.2, NOW);
    let resources = vec![
        container(104, 30.0),
        vm,
        hdd,
        node,
        zfs("pve1", "rpool", "online", &[]),
        ceph_cluster("healthy", "HEALTH_OK", "", [15.0, 15.0, 15.0]),
    ];
    let f = found(resources, &t);
    assert!(f.is_empty(), "{f:?}");

    // Settings stored before these thresholds existed read with their defaults.
    let old: Thresholds = serde_json::from_value(serde_json::json!({
        "window_ms": 600_000,
        "storage_watch": 70.0,
        "wearout_min_pct": 20.0
    }))
    .unwrap();
    assert_eq!(old, t);
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["guest_disk_watch"], 75.0);
    assert_eq!(v["guest_disk"]["critical"], 92.0);
    assert_eq!(v["disk_temp_c"]["warning"], 55.0);
    assert_eq!(v["nvme_temp_c"]["warning"], 70.0);
    assert_eq!(v["cert_warning_days"], 14.0);
    assert_eq!(v["cert_critical_days"], 3.0);
    assert_eq!(v["host_fs"]["warning"], 85.0);
    assert_eq!(v["host_fs"]["critical"], 95.0);
}

/// A ZFS pool as the PVE collector describes it: status the health in lower case, the
/// `zpool status` texts for a pool that is not online.
pub(super) fn zfs(node: &str, pool: &str, status: &str, detail: &[(&str, &str)]) -> ResourceRecord {
    let mut r = record(&format!("storage:{node}/zfs:{pool}"), status);
    r.name = pool.into();
    r.parent = Some(format!("node:{node}"));
    r.attrs.insert("plugin".into(), "zfs".into());
    r.attrs.insert("pool".into(), pool.into());
    r.attrs
        .insert("health".into(), status.to_ascii_uppercase().into());
    for (k, v) in detail {
        r.attrs.insert((*k).into(), (*v).into());
    }
    latest(&mut r, metric::STORAGE_USED_PCT, 40.0);
    r
}

/// The cluster's Ceph: status, health, health checks and OSDs (total, up, in).
pub(super) fn ceph_cluster(
    status: &str,
    health: &str,
    checks: &str,
    osds: [f64; 3],
) -> ResourceRecord {
    let mut r = record("storage:prod/ceph", status);
    r.attrs.insert("plugin".into(), "ceph".into());
    r.attrs.insert("health".into(), health.into());
    r.attrs.insert("health_checks".into(), checks.into());
    for (m, v) in [
        metric::CEPH_OSDS_TOTAL,
        metric::CEPH_OSDS_UP,
        metric::CEPH_OSDS_IN,
    ]
    .into_iter()
    .zip(osds)
    {
        latest(&mut r, m, v);
    }
    r
}

/// A filesystem of a host as the host collector reports it (of 100 GiB).
pub(super) fn host_mount(r: &mut ResourceRecord, mount: &str, pct: f64, ts: i64) {
    let m = |name: &str| format!("{name}{{mount=\"{mount}\"}}");
    latest_at(r, &m(metric::FS_TOTAL_BYTES), 100.0 * GIB, ts);
    latest_at(r, &m(metric::FS_USED_BYTES), pct * GIB, ts);
    latest_at(r, &m(metric::FS_USED_PCT), pct, ts);
}
