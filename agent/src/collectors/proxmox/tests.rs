//! Tests across the collector's areas (whole runs against a fake PVE: provenance, what a
//! failed run re-sends, the cadence of slow reads) and the helpers the per-area tests share.

use super::*;
use crate::collectors::proxmox::api::Envelope;
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};
use warden_shared::metric;

pub(super) fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/../tests/fixtures/pve/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str::<Envelope<T>>(&text).unwrap().data
}

/// A collector that is never run: for its provenance table.
pub(super) fn unconnected() -> ProxmoxCollector {
    ProxmoxCollector::new("pve1", &ProxmoxConfig::default())
}

pub(super) fn value(out: &Collected, id: &str, metric: &str) -> Option<f64> {
    out.samples
        .iter()
        .find(|s| s.resource_id.as_str() == id && s.metric == metric)
        .map(|s| s.value)
}

pub(super) fn view(cluster: &str) -> ClusterView {
    ClusterView {
        cluster: cluster.into(),
        nodes: vec![],
        reporter: None,
        quorate: None,
        standalone: false,
    }
}

pub(super) fn attr<'a>(out: &'a Collected, id: &str, key: &str) -> Option<&'a Value> {
    out.resources
        .iter()
        .find(|r| r.id.as_str() == id)
        .and_then(|r| r.attrs.iter().find(|(k, _)| k == key))
        .map(|(_, v)| v)
}

pub(super) const NOW_S: i64 = 1_780_000_000;

/// `pve1`'s failed tasks: VM 100's own backup, a backup job over VMs 100 and 101 whose
/// log says 101 failed, a job over all guests that failed as a whole, a backup with
/// warnings (not a failure) and a failed migration (not a backup).
const FAKE_TASKS: &str = r#"[
    {"type":"vzdump","id":"100","status":"unable to find configuration file for VM 100",
     "upid":"UPID:pve1:0000A001:00B00001:6A000001:vzdump:100:root@pam:"},
    {"type":"vzdump","id":"","status":"job errors",
     "upid":"UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:"},
    {"type":"vzdump","id":"","status":"could not activate storage 'pbs'",
     "upid":"UPID:pve1:0000A003:00B00003:6A000003:vzdump::root@pam:"},
    {"type":"vzdump","id":"101","status":"WARNINGS: 1",
     "upid":"UPID:pve1:0000A004:00B00004:6A000004:vzdump:101:root@pam:"},
    {"type":"qmigrate","id":"100","status":"migration aborted",
     "upid":"UPID:pve1:0000A005:00B00005:6A000005:qmigrate:100:root@pam:"}
]"#;

/// A cluster `c` seen by node `pve1`'s API: `pve1` (running VM 100 with a balloon driver
/// and container 101, both replicated and backed up), `pve2`, and `pve3`, which is down.
pub(super) struct FakePve {
    /// Nodes the cluster sees offline.
    offline: Vec<&'static str>,
    /// Path prefixes that answer `595 No route to host`.
    pub(super) failing: Vec<&'static str>,
    /// No cluster: `/cluster/status` lists only `pve1`.
    standalone: bool,
    /// Path prefixes that answer `403 Permission check failed`.
    pub(super) denied: Vec<&'static str>,
    /// VM 100's guest agent is not running (500).
    pub(super) agent_down: bool,
    /// Requests per path (without the query).
    pub(super) hits: BTreeMap<String, usize>,
}

impl Default for FakePve {
    fn default() -> Self {
        Self {
            offline: vec!["pve3"],
            failing: Vec::new(),
            standalone: false,
            denied: Vec::new(),
            agent_down: false,
            hits: BTreeMap::new(),
        }
    }
}

impl FakePve {
    /// `(status, body)` for a path with its query.
    fn answer(&mut self, path: &str) -> (u16, String) {
        let bare = path.split('?').next().unwrap_or_default();
        *self.hits.entry(bare.to_owned()).or_default() += 1;
        if self.failing.iter().any(|p| path.starts_with(p)) {
            return (595, String::new());
        }
        if self.denied.iter().any(|p| path.starts_with(p)) {
            let body =
                r#"{"data":null,"message":"Permission check failed (/vms/100, VM.Monitor)\n"}"#;
            return (403, body.to_owned());
        }
        let path = bare;
        let node = |name: &str| {
            let online = !self.offline.contains(&name);
            format!(
                r#"{{"type":"node","name":"{name}","online":{}}}"#,
                u8::from(online)
            )
        };
        let data = match path {
            "/cluster/status" if self.standalone => format!("[{}]", node("pve1")),
            "/cluster/status" => format!(
                r#"[{{"type":"cluster","name":"c","quorate":1}},{},{},{}]"#,
                node("pve1"),
                node("pve2"),
                node("pve3")
            ),
            "/nodes/pve1/status" => r#"{"cpu":0.25,"loadavg":["0.5","0.4","0.3"],
                "memory":{"total":1000,"used":600,"available":500},
                "swap":{"total":100,"used":10},"rootfs":{"total":200,"used":50},
                "uptime":3600,"kversion":"Linux 6.8","pveversion":"pve-manager/9.1.1",
                "cpuinfo":{"cpus":8,"model":"EPYC"}}"#
                .to_owned(),
            "/nodes/pve1/storage" => r#"[{"storage":"local","type":"dir",
                "content":"backup,iso","shared":0,"active":1,"enabled":1,
                "total":1000,"used":100}]"#
                .to_owned(),
            "/nodes/pve1/storage/local/content" | "/nodes/pve1/storage/nfs/content" => {
                format!(
                    r#"[{{"subtype":"qemu","vmid":100,"ctime":{}}},
                        {{"subtype":"lxc","vmid":101,"ctime":{}}}]"#,
                    NOW_S - 3600,
                    NOW_S - 7200
                )
            }
            "/nodes/pve1/disks/list" => r#"[{"devpath":"/dev/sda","serial":"S1",
                "model":"SSD","health":"PASSED","used":"ZFS","type":"ssd",
                "size":1000,"wearout":97}]"#
                .to_owned(),
            "/nodes/pve1/disks/smart" => r#"{"health":"PASSED","type":"ata","attributes":[
                {"id":"  9","name":"Power_On_Hours","flags":"-O--CK","value":97,
                 "normalized":97,"worst":97,"threshold":0,"fail":"-","raw":"14123"},
                {"id":"194","name":"Temperature_Celsius","flags":"-O---K","value":62,
                 "normalized":62,"worst":55,"threshold":0,"fail":"-",
                 "raw":"38 (Min/Max 20/45)"}]}"#
                .to_owned(),
            "/nodes/pve1/certificates/info" => format!(
                r#"[{{"filename":"pve-root-ca.pem","notafter":{},"notbefore":1}},
                    {{"filename":"pve-ssl.pem","notafter":{},"notbefore":1,
                      "subject":"/OU=PVE Cluster Node/CN=pve1"}}]"#,
                NOW_S + 3000 * 86_400,
                NOW_S + 400 * 86_400
            ),
            "/nodes/pve1/qemu/100/agent/get-fsinfo" if self.agent_down => {
                let body = r#"{"data":null,"message":"QEMU guest agent is not running\n"}"#;
                return (500, body.to_owned());
            }
            "/nodes/pve1/qemu/100/agent/get-fsinfo" => r#"{"result":[
                {"name":"sda1","mountpoint":"/","type":"ext4","total-bytes":1000,
                 "used-bytes":250,"disk":[{"bus-type":"scsi","serial":"drive-scsi0"}]}]}"#
                .to_owned(),
            "/nodes/pve1/disks/zfs" => r#"[{"name":"rpool","size":1000,"alloc":100,
                "free":900,"frag":3,"dedup":1.0,"health":"ONLINE"}]"#
                .to_owned(),
            "/nodes/pve1/apt/update" => r#"[{"Package":"pve-manager"}]"#.to_owned(),
            "/cluster/resources" => r#"[
                {"type":"qemu","vmid":100,"node":"pve1","status":"running","name":"v",
                 "cpu":0.5,"maxcpu":2,"mem":100,"maxmem":200,"maxdisk":1000,"uptime":60},
                {"type":"lxc","vmid":101,"node":"pve1","status":"running","name":"ct",
                 "cpu":0.1,"maxcpu":1,"mem":50,"maxmem":100,"disk":125,"maxdisk":500,
                 "uptime":30},
                {"type":"storage","storage":"nfs","node":"pve1","shared":1,
                 "status":"available","content":"backup","plugintype":"nfs",
                 "disk":10,"maxdisk":100}]"#
                .to_owned(),
            "/cluster/ha/status/current" => "[]".to_owned(),
            "/cluster/ceph/status" => r#"{"health":{"status":"HEALTH_OK","checks":{}},
                "pgmap":{"bytes_total":1000,"bytes_used":100},
                "osdmap":{"num_osds":3,"num_up_osds":3,"num_in_osds":3}}"#
                .to_owned(),
            "/nodes/pve1/qemu/100/status/current" => {
                r#"{"agent":1,"ballooninfo":{"total_mem":200,"free_mem":50}}"#.to_owned()
            }
            "/nodes/pve1/replication" => format!(
                r#"[{{"id":"100-0","guest":100,"vmtype":"qemu","target":"pve2",
                      "last_sync":{0},"duration":2,"fail_count":0}},
                    {{"id":"101-0","guest":101,"vmtype":"lxc","target":"pve2",
                      "last_sync":{0},"duration":1,"fail_count":0}}]"#,
                NOW_S - 600
            ),
            "/nodes/pve1/tasks" => FAKE_TASKS.to_owned(),
            log if log.starts_with("/nodes/pve1/tasks/") && log.ends_with("/log") => {
                let lines: &[&str] = if log.contains(":0000A002:") {
                    &[
                        "INFO: starting new backup job: vzdump 100 101 --mode snapshot \
                         --storage pbs --notes-template '{{guestname}}'",
                        "INFO: Starting Backup of VM 100 (qemu)",
                        "INFO: Finished Backup of VM 100 (00:00:12)",
                        "INFO: Starting Backup of VM 101 (lxc)",
                        "ERROR: Backup of VM 101 failed - unable to open file \
                         '/etc/pve/nodes/pve1/lxc/101.conf.tmp.4242' - Permission denied",
                        "INFO: Failed at 2026-06-01 02:00:14",
                        "INFO: Backup job finished with errors",
                        "TASK ERROR: job errors",
                    ]
                } else {
                    &[
                        "INFO: starting new backup job: vzdump --all 1 --storage pbs",
                        "TASK ERROR: could not activate storage 'pbs': pbs: error \
                         fetching datastores - 500 Can't connect to 10.0.0.9:8007",
                    ]
                };
                let lines: Vec<String> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, t)| serde_json::json!({"n": i + 1, "t": t}).to_string())
                    .collect();
                format!("[{}]", lines.join(","))
            }
            _ => return (404, String::new()),
        };
        (200, format!(r#"{{"data":{data}}}"#))
    }
}

/// A plain-HTTP [`FakePve`] (the TLS side is tested against the simulator).
async fn serve(listener: tokio::net::TcpListener, pve: Arc<Mutex<FakePve>>) {
    while let Ok((conn, _)) = listener.accept().await {
        let pve = Arc::clone(&pve);
        tokio::spawn(crate::collectors::answer_http(conn, move |path| {
            pve.lock().unwrap().answer(path)
        }));
    }
}

/// A collector for `pve1` against a [`FakePve`] that the test can change.
pub(super) async fn fake_pve1() -> (
    ProxmoxCollector,
    Arc<Mutex<FakePve>>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let pve = Arc::new(Mutex::new(FakePve::default()));
    let server = tokio::spawn(serve(listener, Arc::clone(&pve)));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let cfg = ProxmoxConfig {
        enabled: true,
        url,
        token_id: "warden@pve!agent".into(),
        token_secret_file: secret,
        // Plain HTTP never uses it; any well-formed pin will do.
        fingerprint: Some("00".repeat(32)),
        node: Some("pve1".into()),
        ..ProxmoxConfig::default()
    };
    (ProxmoxCollector::new("ignored", &cfg), pve, server, dir)
}

fn ids(out: &Collected) -> Vec<&str> {
    let mut ids: Vec<&str> = out.resources.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn every_metric_has_its_provenance() {
    let (mut c, _pve, server, _dir) = fake_pve1().await;
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let mut emitted: Vec<(&str, &str)> = out
        .samples
        .iter()
        .map(|s| (s.resource_id.kind(), warden_shared::metric::base(&s.metric)))
        .collect();
    emitted.sort_unstable();
    emitted.dedup();
    assert_eq!(
        emitted.len(),
        PROVENANCE.len(),
        "every entry is emitted: {emitted:?}"
    );
    crate::collectors::assert_provenance_complete(&c, &out);
    // Methods name the endpoint they read.
    assert!(PROVENANCE.iter().all(|p| p.method.contains("GET /")));
    server.abort();
}

#[tokio::test]
async fn a_failed_run_re_sends_only_what_this_agent_still_owns() {
    let (mut c, pve, server, _dir) = fake_pve1().await;
    let good = c.collect(NOW_S * 1000).await.unwrap();
    assert_eq!(
        ids(&good),
        vec![
            "disk:pve1/S1",
            "lxc:c/101",
            "node:pve1",
            "node:pve3",
            "replication:c/100-0",
            "replication:c/101-0",
            "storage:c/ceph",
            "storage:c/nfs",
            "storage:pve1/local",
            "storage:pve1/zfs:rpool",
            "vm:c/100",
        ]
    );
    let local = vec![
        "disk:pve1/S1",
        "storage:pve1/local",
        "storage:pve1/zfs:rpool",
    ];
    let stale = |out: &Collected| {
        assert!(out.samples.is_empty());
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert!(
            out.resources
                .iter()
                .all(|r| r.attrs.contains(&("stale".into(), Value::Bool(true))))
        );
    };

    // A failing endpoint costs only its part: the node's status keeps the node as it
    // was (stale, without samples); everything else is read afresh.
    pve.lock().unwrap().failing = vec!["/nodes/pve1/status"];
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert!(
        out.problems[0].contains("/nodes/pve1/status") && out.problems[0].contains("595"),
        "{:?}",
        out.problems
    );
    assert_eq!(ids(&out), ids(&good));
    let stale_ids = |out: &Collected| -> Vec<String> {
        let mut v: Vec<String> = out
            .resources
            .iter()
            .filter(|r| r.attrs.contains(&("stale".into(), Value::Bool(true))))
            .map(|r| r.id.as_str().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(stale_ids(&out), vec!["node:pve1"]);
    assert_eq!(value(&out, "node:pve1", metric::MEM_USED_BYTES), None);
    assert_eq!(value(&out, "vm:c/100", metric::MEM_USED_BYTES), Some(100.0));
    // Twice in a row: still there, still stale.
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert_eq!(stale_ids(&out), vec!["node:pve1"]);

    // Without /cluster/resources the reporter keeps the guests, shared storage and the
    // offline node it described last, stale; Ceph and the node-local parts are fresh.
    pve.lock().unwrap().failing = vec!["/cluster/resources"];
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert_eq!(ids(&out), ids(&good));
    assert_eq!(
        stale_ids(&out),
        vec!["lxc:c/101", "node:pve3", "storage:c/nfs", "vm:c/100"]
    );
    assert_eq!(
        value(&out, "node:pve1", metric::MEM_USED_BYTES),
        Some(500.0)
    );
    assert_eq!(value(&out, "vm:c/100", metric::MEM_USED_BYTES), None);
    // pve3 is back meanwhile: its own agent describes it, not this stale re-send.
    pve.lock().unwrap().offline.clear();
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert_eq!(
        stale_ids(&out),
        vec!["lxc:c/101", "storage:c/nfs", "vm:c/100"]
    );
    pve.lock().unwrap().failing.clear();
    pve.lock().unwrap().offline = vec!["pve3"];
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert!(stale_ids(&out).is_empty());

    // Without a view this run cannot know who owns what: again only the node-local ones.
    *pve.lock().unwrap() = FakePve {
        failing: vec!["/cluster/status"],
        ..FakePve::default()
    };
    let out = c.collect(NOW_S * 1000).await.unwrap();
    stale(&out);
    assert_eq!(ids(&out), local);

    // A node that the cluster sees offline but whose API answers: its samples, but the
    // node resource is the reporter's (pve2), as are the guests.
    *pve.lock().unwrap() = FakePve {
        offline: vec!["pve1", "pve3"],
        ..FakePve::default()
    };
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(
        ids(&out),
        vec![
            "disk:pve1/S1",
            "replication:c/100-0",
            "replication:c/101-0",
            "storage:pve1/local",
            "storage:pve1/zfs:rpool",
        ]
    );
    assert_eq!(
        value(&out, "node:pve1", metric::MEM_USED_BYTES),
        Some(500.0)
    );
    // That run's resources are now the last good ones: no node:pve1 to re-send.
    pve.lock().unwrap().failing = vec!["/cluster/status"];
    let out = c.collect(NOW_S * 1000).await.unwrap();
    assert_eq!(ids(&out), local);
    server.abort();
}

#[tokio::test]
async fn a_standalone_node_owns_everything_it_reports() {
    let (mut c, pve, server, _dir) = fake_pve1().await;
    pve.lock().unwrap().standalone = true;
    let good = c.collect(NOW_S * 1000).await.unwrap();
    assert!(ids(&good).contains(&"vm:pve1/100"), "{:?}", ids(&good));
    pve.lock().unwrap().failing = vec!["/cluster/status"];
    let out = c.collect(NOW_S * 1000).await.unwrap();
    let all: Vec<&str> = ids(&good)
        .into_iter()
        .filter(|id| !id.starts_with("replication:"))
        .collect();
    assert_eq!(ids(&out), all);
    server.abort();
}

pub(super) fn hits(pve: &Mutex<FakePve>, path: &str) -> usize {
    pve.lock().unwrap().hits.get(path).copied().unwrap_or(0)
}

#[tokio::test]
async fn slow_reads_keep_their_own_cadence() {
    let (mut c, pve, server, _dir) = fake_pve1().await;
    let smart = "/nodes/pve1/disks/smart";
    let certs = "/nodes/pve1/certificates/info";
    let fsinfo = "/nodes/pve1/qemu/100/agent/get-fsinfo";
    let at = |minutes: i64| NOW_S * 1000 + minutes * 60_000;
    let out = c.collect(at(0)).await.unwrap();
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(
        value(&out, "disk:pve1/S1", metric::DISK_TEMP_CELSIUS),
        Some(38.0)
    );
    let cert = &metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", "pve-ssl.pem");
    assert_eq!(value(&out, "node:pve1", cert), Some(400.0 * 86_400.0));
    assert_eq!(
        value(
            &out,
            "node:pve1",
            &metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", "pve-root-ca.pem")
        ),
        Some(3000.0 * 86_400.0)
    );
    assert_eq!(
        value(
            &out,
            "vm:c/100",
            &metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/")
        ),
        Some(25.0)
    );
    assert_eq!(
        value(&out, "lxc:c/101", metric::DISK_USED_BYTES),
        Some(125.0)
    );
    assert_eq!(value(&out, "lxc:c/101", metric::DISK_USED_PCT), Some(25.0));
    assert_eq!(
        value(&out, "vm:c/100", metric::DISK_USED_PCT),
        None,
        "a VM's disk is 0"
    );
    let once = [(smart, 1), (certs, 1), (fsinfo, 1)];
    for (p, n) in once {
        assert_eq!(hits(&pve, p), n, "{p}");
    }

    // A minute later: nothing slow is read again; the certificate countdown goes on.
    let out = c.collect(at(1)).await.unwrap();
    for (p, n) in once {
        assert_eq!(hits(&pve, p), n, "{p}");
    }
    assert_eq!(
        value(&out, "node:pve1", cert),
        Some(400.0 * 86_400.0 - 60.0)
    );
    assert_eq!(value(&out, "disk:pve1/S1", metric::DISK_TEMP_CELSIUS), None);
    assert_eq!(
        hits(&pve, "/nodes/pve1/status"),
        2,
        "the rest runs every time"
    );

    // A failed run leaves the schedule as it was: the next good run reads what is due.
    pve.lock().unwrap().failing = vec!["/cluster/status"];
    let out = c.collect(at(5)).await.unwrap();
    assert!(out.samples.is_empty());
    assert_eq!((hits(&pve, smart), hits(&pve, fsinfo)), (1, 1));
    pve.lock().unwrap().failing.clear();
    let out = c.collect(at(6)).await.unwrap();
    assert_eq!((hits(&pve, smart), hits(&pve, fsinfo)), (2, 2));
    assert_eq!(
        value(&out, "disk:pve1/S1", metric::DISK_TEMP_CELSIUS),
        Some(38.0)
    );
    assert_eq!(hits(&pve, certs), 1);

    // A failing read stays due, so the run says why until it works again.
    pve.lock().unwrap().failing = vec![smart];
    let out = c.collect(at(11)).await.unwrap();
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert!(
        out.problems[0].contains("disks/smart"),
        "{:?}",
        out.problems
    );
    let out = c.collect(at(12)).await.unwrap();
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    pve.lock().unwrap().failing.clear();
    let out = c.collect(at(13)).await.unwrap();
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(
        value(&out, "disk:pve1/S1", metric::DISK_TEMP_CELSIUS),
        Some(38.0)
    );

    // An hour after the first read, the certificates are read again.
    c.collect(at(61)).await.unwrap();
    assert_eq!(hits(&pve, certs), 2);
    server.abort();
}
