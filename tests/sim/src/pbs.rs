//! Proxmox Backup Server API simulator: datastores, snapshots, jobs and tasks served over HTTPS.
//!
//! Field names and JSON types follow the trimmed captures in `tests/fixtures/pbs/` and the PBS
//! half of the schema notes (`{"data": ...}` envelope, `"total"` beside the task list, real JSON
//! booleans, `loadavg` as numbers, `root` instead of PVE's `rootfs`, UPIDs with the extra
//! task-id field). Authentication uses `Authorization: PBSAPIToken=USER@REALM!TOKENID:SECRET`.
//!
//! Error answers follow `proxmox-rest-server` (the `JsonFormatter` and `handle_request` code
//! of the PBS API daemon) by default: the status line has the standard reason phrase, the body
//! is the plain error text (not JSON) under `Content-Type: application/json;charset=UTF-8`,
//! and authentication failures are delayed by 3 s. [`ErrorBody::PveLike`] switches to
//! PVE-style bodies instead (empty 401, `{"data":null,"message":"…\n"}` otherwise).
//!
//! ```no_run
//! use warden_sim::pbs::{Fault, PbsSim, PbsSimOptions};
//! let sim = PbsSim::start(PbsSimOptions::fast());
//! let r = sim.get("/admin/datastore/store1/snapshots");
//! assert_eq!(r.status, 200);
//! sim.fail_gc("store1", "unable to access chunk store");
//! sim.set_fault(Fault::DatastoreUnavailable("store2".into()));
//! ```

pub use super::API_PREFIX;
use super::{HttpsServer, RawResponse, Request, Response, Sim, TlsIdentity};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The node name PBS uses in its API paths and UPIDs.
pub const NODE: &str = "localhost";

/// `memory` / `swap` counters of `/nodes/localhost/status`, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemUsage {
    /// `total`
    pub total: u64,
    /// `used`
    pub used: u64,
    /// `free`
    pub free: u64,
}

/// Space counters (`root` in node status; datastore `total`/`used`/`avail`), bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// `total`
    pub total: u64,
    /// `used`
    pub used: u64,
    /// `avail`
    pub avail: u64,
}

/// `/nodes/localhost/status`.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// `cpu`, fraction 0..1.
    pub cpu: f64,
    /// `wait`, IO wait fraction 0..1.
    pub wait: f64,
    /// `memory`
    pub memory: MemUsage,
    /// `swap`
    pub swap: MemUsage,
    /// `root` (the root filesystem).
    pub root: DiskUsage,
    /// `loadavg` 1/5/15 min (numbers on PBS).
    pub loadavg: [f64; 3],
    /// `uptime`, seconds.
    pub uptime: u64,
    /// `kversion` (legacy kernel string).
    pub kversion: String,
    /// `cpuinfo.model`
    pub cpu_model: String,
    /// `cpuinfo.cpus`
    pub cpus: u32,
    /// `cpuinfo.sockets`
    pub sockets: u32,
}

/// Garbage-collection state of one datastore: the `/admin/gc` and
/// `/admin/datastore/{store}/gc` fields (the counters also appear as `gc-status` in the
/// datastore status and usage answers).
#[derive(Clone, Debug, Default)]
pub struct GcStatus {
    /// `upid` of the last GC task.
    pub upid: Option<String>,
    /// `last-run-state` (`OK`, or the error text).
    pub last_run_state: Option<String>,
    /// `last-run-endtime`, epoch seconds.
    pub last_run_endtime: Option<i64>,
    /// `next-run`, epoch seconds.
    pub next_run: Option<i64>,
    /// `schedule`
    pub schedule: Option<String>,
    /// `duration` of the last run, seconds.
    pub duration: Option<i64>,
    /// `index-file-count`
    pub index_file_count: u64,
    /// `index-data-bytes` (logical bytes referenced by indexes).
    pub index_data_bytes: u64,
    /// `disk-bytes` (bytes on disk; dedup factor = index-data-bytes / disk-bytes).
    pub disk_bytes: u64,
    /// `disk-chunks`
    pub disk_chunks: u64,
    /// `pending-bytes`
    pub pending_bytes: u64,
    /// `pending-chunks`
    pub pending_chunks: u64,
    /// `removed-bytes`
    pub removed_bytes: u64,
    /// `removed-chunks`
    pub removed_chunks: u64,
    /// `removed-bad`
    pub removed_bad: u64,
    /// `still-bad`
    pub still_bad: u64,
}

impl GcStatus {
    /// The counter fields (the schema's required `gc-status.*` members) plus `upid`.
    fn counters(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: u64| {
            m.insert(k.to_owned(), json!(v));
        };
        put("index-file-count", self.index_file_count);
        put("index-data-bytes", self.index_data_bytes);
        put("disk-bytes", self.disk_bytes);
        put("disk-chunks", self.disk_chunks);
        put("pending-bytes", self.pending_bytes);
        put("pending-chunks", self.pending_chunks);
        put("removed-bytes", self.removed_bytes);
        put("removed-chunks", self.removed_chunks);
        put("removed-bad", self.removed_bad);
        put("still-bad", self.still_bad);
        if let Some(u) = &self.upid {
            m.insert("upid".to_owned(), json!(u));
        }
        m
    }
}

/// One datastore.
#[derive(Clone, Debug)]
pub struct Datastore {
    /// `store`
    pub name: String,
    /// Filesystem path (configuration only; none of the served endpoints carries it).
    pub path: String,
    /// `comment`
    pub comment: Option<String>,
    /// `backend-type`: `filesystem` or `s3`.
    pub backend_type: String,
    /// `mount-status`: `mounted`, `notmounted` or `nonremovable`.
    pub mount_status: String,
    /// Space of the underlying storage.
    pub usage: DiskUsage,
    /// Garbage collection.
    pub gc: GcStatus,
    /// Namespaces besides the root `""`.
    pub namespaces: Vec<String>,
    /// `estimated-full-date` of `/status/datastore-usage`, epoch seconds: PBS's linear
    /// estimate from its usage history (0 when usage does not grow); absent without history.
    pub estimated_full_date: Option<i64>,
}

/// `verification` of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// `state`: `ok` or `failed`.
    pub state: String,
    /// `upid` of the verify task.
    pub upid: String,
}

/// One backup snapshot.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Datastore holding it.
    pub store: String,
    /// `backup-type`: `vm`, `ct` or `host`.
    pub backup_type: String,
    /// `backup-id`
    pub backup_id: String,
    /// `backup-time`, epoch seconds.
    pub backup_time: i64,
    /// `size`, bytes.
    pub size: Option<u64>,
    /// `files`
    pub files: Vec<String>,
    /// `owner`
    pub owner: Option<String>,
    /// `protected`
    pub protected: bool,
    /// `comment`
    pub comment: Option<String>,
    /// `verification`; `None` = never verified (the key is absent).
    pub verification: Option<Verification>,
}

/// Prune, verify or sync job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// `/admin/prune`
    Prune,
    /// `/admin/verify`
    Verify,
    /// `/admin/sync`
    Sync,
}

impl JobKind {
    /// Task worker type of a run (`prunejob`, `verificationjob`, `syncjob`).
    pub fn worker_type(self) -> &'static str {
        match self {
            Self::Prune => "prunejob",
            Self::Verify => "verificationjob",
            Self::Sync => "syncjob",
        }
    }
}

/// A configured job with its last-run state.
#[derive(Clone, Debug)]
pub struct Job {
    /// Which list it appears in.
    pub kind: JobKind,
    /// `id`
    pub id: String,
    /// `store`
    pub store: String,
    /// `schedule`
    pub schedule: Option<String>,
    /// `comment`
    pub comment: Option<String>,
    /// `last-run-state` (`OK`, `WARNINGS: n` or the error text).
    pub last_run_state: Option<String>,
    /// `last-run-endtime`, epoch seconds.
    pub last_run_endtime: Option<i64>,
    /// `last-run-upid`
    pub last_run_upid: Option<String>,
    /// `next-run`, epoch seconds.
    pub next_run: Option<i64>,
    /// Kind-specific configuration keys as sent (`keep-last`, `remote`, `remote-store`,
    /// `ignore-verified`, …); names from the schema notes.
    pub config: Map<String, Value>,
}

/// One task of `/nodes/localhost/tasks`.
#[derive(Clone, Debug)]
pub struct Task {
    /// Worker PID.
    pub pid: u32,
    /// Process start (clock ticks).
    pub pstart: u64,
    /// Per-process task counter (the PBS-only UPID field).
    pub task_id: u32,
    /// Start, epoch seconds.
    pub starttime: i64,
    /// End, epoch seconds; `None` while running.
    pub endtime: Option<i64>,
    /// `worker_type` (`garbage_collection`, `verificationjob`, `syncjob`, `prunejob`, `backup`, …).
    pub worker_type: String,
    /// `worker_id`
    pub worker_id: Option<String>,
    /// `user` (auth id).
    pub user: String,
    /// `status`: `OK`, `WARNINGS: n`, the error text; `None` while running.
    pub status: Option<String>,
}

impl Task {
    /// `UPID:localhost:<pid hex8>:<pstart hex8>:<task_id hex8>:<starttime hex8>:<type>:<id>:<user>:`
    pub fn upid(&self) -> String {
        format!(
            "UPID:{NODE}:{:08X}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.pid,
            self.pstart,
            self.task_id,
            self.starttime,
            self.worker_type,
            self.worker_id.as_deref().unwrap_or(""),
            self.user
        )
    }

    /// Finished with a status other than `OK` / `WARNINGS: n`.
    pub fn failed(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s != "OK" && !s.starts_with("WARNINGS"))
    }
}

/// Everything the simulator serves; change it through [`PbsSimHandle::with_world`].
#[derive(Clone, Debug)]
pub struct World {
    /// Host name (certificate subject; the API itself always says `localhost`).
    pub hostname: String,
    /// `/version`: (`version`, `release`, `repoid`).
    pub version: (String, String, String),
    /// `/nodes/localhost/status`.
    pub node: NodeStatus,
    /// Datastores.
    pub datastores: Vec<Datastore>,
    /// Snapshots of all datastores.
    pub snapshots: Vec<Snapshot>,
    /// Prune, verify and sync jobs.
    pub jobs: Vec<Job>,
    /// Task list (oldest first; served newest first).
    pub tasks: Vec<Task>,
    /// `/nodes/localhost/subscription` object.
    pub subscription: Value,
}

/// A switchable misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every request gets 401 (token refused; delayed by the auth delay).
    BadToken,
    /// Requests needing a privilege on this ACL path (`/`, `/system/status`, `/system/tasks`,
    /// `/system`, `/datastore/<store>`) get `403` with `permission check failed`; lists leave
    /// such datastores out, as PBS does. `/` denies everything.
    MissingPrivilege {
        /// ACL path.
        path: String,
    },
    /// Every request gets `500` with this text.
    ServerError(String),
    /// Every answer is delayed by this much.
    Slow(Duration),
    /// Every 200 answer body is cut in half.
    MalformedJson,
    /// The datastore is in offline maintenance: its `/admin/datastore/{store}/…` calls get
    /// `400 offline maintenance mode: <name> unavailable`, and `/status/datastore-usage`
    /// shows it with an `error` text and no space counters.
    DatastoreUnavailable(String),
}

/// How error bodies look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorBody {
    /// As `proxmox-rest-server` sends them: plain text body (e.g.
    /// `authentication failed - no authentication credentials provided.`, `permission check
    /// failed`), standard reason phrase, JSON content type.
    RestServer,
    /// PVE-like: empty 401 body, `{"data":null,"message":"<text>\n"}` for other errors, the text
    /// also in the reason phrase.
    PveLike,
}

/// Start-up options.
#[derive(Clone, Debug)]
pub struct PbsSimOptions {
    /// Accepted API token, `USER@REALM!TOKENID:SECRET`.
    pub token: String,
    /// Delay of 401 answers (real PBS: 3 s from the start of the request).
    pub auth_delay: Duration,
    /// Error body style.
    pub error_body: ErrorBody,
    /// Listening port on 127.0.0.1; `None` = any free port (real PBS: 8007, which parallel
    /// tests cannot share).
    pub port: Option<u16>,
    /// Initial world.
    pub world: World,
}

impl Default for PbsSimOptions {
    fn default() -> Self {
        Self {
            token: "warden@pbs!monitor:6b1f0c3e-2a4d-4e8f-9b7c-5d3e2f1a0b9c".to_owned(),
            auth_delay: Duration::from_secs(3),
            error_body: ErrorBody::RestServer,
            port: None,
            world: World::default(),
        }
    }
}

impl PbsSimOptions {
    /// Defaults with a zero 401 delay (for tests).
    pub fn fast() -> Self {
        Self {
            auth_delay: Duration::ZERO,
            ..Self::default()
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn fixture_data(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|mut v| v.get_mut("data").map(Value::take))
        .unwrap_or(Value::Null)
}

const GIB: u64 = 1 << 30;

fn task(n: u32, starttime: i64, worker_type: &str, worker_id: &str, status: &str) -> Task {
    Task {
        pid: 1_200 + n * 7,
        pstart: 4_000_000 + u64::from(n) * 1_000,
        task_id: n,
        starttime,
        endtime: Some(starttime + 60),
        worker_type: worker_type.to_owned(),
        worker_id: (!worker_id.is_empty()).then(|| worker_id.to_owned()),
        user: "root@pam".to_owned(),
        status: Some(status.to_owned()),
    }
}

fn snapshot(
    store: &str,
    ty: &str,
    id: &str,
    time: i64,
    comment: &str,
    verified: Option<&str>,
) -> Snapshot {
    let files = match ty {
        "vm" => vec![
            "qemu-server.conf.blob",
            "drive-scsi0.img.fidx",
            "index.json.blob",
        ],
        "ct" => vec![
            "pct.conf.blob",
            "root.pxar.didx",
            "catalog.pcat1.didx",
            "index.json.blob",
        ],
        _ => vec!["root.pxar.didx", "catalog.pcat1.didx", "index.json.blob"],
    };
    Snapshot {
        store: store.to_owned(),
        backup_type: ty.to_owned(),
        backup_id: id.to_owned(),
        backup_time: time,
        size: Some(8 * GIB + u64::try_from(time % 1_000_000).unwrap_or(0)),
        files: files.into_iter().map(str::to_owned).collect(),
        owner: Some("root@pam".to_owned()),
        protected: false,
        comment: (!comment.is_empty()).then(|| comment.to_owned()),
        verification: verified.map(|s| Verification {
            state: s.to_owned(),
            upid: format!("UPID:{NODE}:000004D2:003D0900:00000001:{time:08X}:verify_snapshot:{store}:root@pam:"),
        }),
    }
}

fn job(kind: JobKind, id: &str, store: &str, schedule: &str, config: Value) -> Job {
    Job {
        kind,
        id: id.to_owned(),
        store: store.to_owned(),
        schedule: Some(schedule.to_owned()),
        comment: None,
        last_run_state: None,
        last_run_endtime: None,
        last_run_upid: None,
        next_run: None,
        config: config.as_object().cloned().unwrap_or_default(),
    }
}

impl Default for World {
    /// Node values from `nodes_localhost_status.trimmed.json`, version from
    /// `version.pbs4.2.json`, the `slow-xfs` store from `status_datastore_usage.trimmed.json`,
    /// snapshots shaped like `datastore_snapshots.trimmed.json`, subscription from
    /// `nodes_localhost_subscription.notfound.json`; jobs and tasks are consistent with those.
    fn default() -> Self {
        let t = now();
        let day = 86_400;
        let mut tasks = Vec::new();
        let mut world = Self {
            hostname: "pbs".to_owned(),
            version: (
                "4.2".to_owned(),
                "1".to_owned(),
                "04249710f076bea8966c4e60ce32198d626ad9d6".to_owned(),
            ),
            node: NodeStatus {
                cpu: 0.004_284_949_116_229_231,
                wait: 0.000_5,
                memory: MemUsage {
                    total: 8_195_104_768,
                    used: 598_495_232,
                    free: 7_356_518_400,
                },
                swap: MemUsage {
                    total: 8_191_471_616,
                    used: 0,
                    free: 8_191_471_616,
                },
                root: DiskUsage {
                    total: 224_872_357_888,
                    used: 4_948_684_800,
                    avail: 208_426_250_240,
                },
                loadavg: [0.02, 0.03, 0.04],
                uptime: 803,
                kversion:
                    "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)"
                        .to_owned(),
                cpu_model: "Intel(R) Core(TM) i5-8500T CPU @ 2.10GHz".to_owned(),
                cpus: 6,
                sockets: 1,
            },
            datastores: vec![
                Datastore {
                    name: "slow-xfs".to_owned(),
                    path: "/mnt/datastore/slow-xfs".to_owned(),
                    comment: None,
                    backend_type: "filesystem".to_owned(),
                    mount_status: "nonremovable".to_owned(),
                    usage: DiskUsage {
                        total: 7_999_425_155_072,
                        used: 409_493_594_112,
                        avail: 7_589_931_560_960,
                    },
                    gc: GcStatus::default(),
                    namespaces: vec!["proxmox-v2".to_owned()],
                    estimated_full_date: None,
                },
                Datastore {
                    name: "store1".to_owned(),
                    path: "/mnt/datastore/store1".to_owned(),
                    comment: Some("local backups".to_owned()),
                    backend_type: "filesystem".to_owned(),
                    mount_status: "nonremovable".to_owned(),
                    usage: DiskUsage {
                        total: 2_000 * GIB,
                        used: 600 * GIB,
                        avail: 1_400 * GIB,
                    },
                    gc: GcStatus::default(),
                    namespaces: Vec::new(),
                    estimated_full_date: None,
                },
            ],
            snapshots: vec![
                snapshot(
                    "slow-xfs",
                    "ct",
                    "503",
                    1_779_474_301,
                    "mail-archover.home.arpa",
                    None,
                ),
                snapshot(
                    "slow-xfs",
                    "ct",
                    "503",
                    1_780_597_498,
                    "mail-archover.home.arpa",
                    Some("ok"),
                ),
                snapshot(
                    "slow-xfs",
                    "ct",
                    "503",
                    1_780_683_922,
                    "mail-archover.home.arpa",
                    Some("ok"),
                ),
                snapshot(
                    "slow-xfs",
                    "vm",
                    "100",
                    1_780_867_436,
                    "minilab, homelab, 100",
                    Some("failed"),
                ),
                snapshot("store1", "vm", "101", t - day, "vm101", Some("ok")),
                snapshot("store1", "host", "pbs", t - 2 * day, "", None),
            ],
            jobs: vec![
                job(
                    JobKind::Prune,
                    "p-slow-xfs",
                    "slow-xfs",
                    "daily",
                    json!({
                        "keep-last": 3, "keep-daily": 7, "keep-weekly": 4, "keep-monthly": 6
                    }),
                ),
                job(
                    JobKind::Verify,
                    "v-slow-xfs",
                    "slow-xfs",
                    "daily",
                    json!({
                        "ignore-verified": true, "outdated-after": 30
                    }),
                ),
                job(
                    JobKind::Sync,
                    "s-offsite",
                    "store1",
                    "hourly",
                    json!({
                        "remote": "offsite", "remote-store": "backup", "remove-vanished": false,
                        "sync-direction": "pull", "owner": "root@pam"
                    }),
                ),
            ],
            tasks: Vec::new(),
            subscription: fixture_data(include_str!(
                "../../fixtures/pbs/nodes_localhost_subscription.notfound.json"
            )),
        };
        // A successful history: one GC per store, one run per job.
        let mut n = 1;
        for ds in &mut world.datastores {
            let mut tk = task(
                n,
                t - 3_600 - i64::from(n) * 60,
                "garbage_collection",
                &ds.name,
                "OK",
            );
            tk.endtime = Some(tk.starttime + 45);
            ds.gc = GcStatus {
                upid: Some(tk.upid()),
                last_run_state: Some("OK".to_owned()),
                last_run_endtime: tk.endtime,
                next_run: Some(t + day),
                schedule: Some("daily".to_owned()),
                duration: Some(45),
                index_file_count: 120,
                index_data_bytes: ds.usage.used * 5,
                disk_bytes: ds.usage.used,
                disk_chunks: ds.usage.used / (4 << 20),
                pending_bytes: 0,
                pending_chunks: 0,
                removed_bytes: 2 * GIB,
                removed_chunks: 512,
                removed_bad: 0,
                still_bad: 0,
            };
            tasks.push(tk);
            n += 1;
        }
        for j in &mut world.jobs {
            let tk = task(
                n,
                t - 1_800 - i64::from(n) * 60,
                j.kind.worker_type(),
                &j.id,
                "OK",
            );
            j.last_run_state = Some("OK".to_owned());
            j.last_run_endtime = tk.endtime;
            j.last_run_upid = Some(tk.upid());
            j.next_run = Some(t + 3_600);
            tasks.push(tk);
            n += 1;
        }
        world.tasks = tasks;
        world
    }
}

struct State {
    world: World,
    faults: Vec<Fault>,
    token: String,
    auth_delay: Duration,
    error_body: ErrorBody,
    requests: u64,
    fingerprint: String,
}

/// Cloneable control handle of a running simulator.
#[derive(Clone)]
pub struct PbsSimHandle {
    state: Arc<Mutex<State>>,
}

/// A running simulator; stops when dropped. Derefs to its [`PbsSimHandle`].
pub type PbsSim = Sim<PbsSimHandle>;

impl Sim<PbsSimHandle> {
    /// Starts the simulator on `127.0.0.1:<free port>` (not 8007: tests run in parallel) with a
    /// fresh CA and certificate.
    ///
    /// # Panics
    /// If the certificate or the listener cannot be created.
    pub fn start(opts: PbsSimOptions) -> Self {
        let identity = TlsIdentity::generate("Proxmox Backup Server", &opts.world.hostname)
            .expect("simulator certificate");
        let state = Arc::new(Mutex::new(State {
            world: opts.world,
            faults: Vec::new(),
            token: opts.token,
            auth_delay: opts.auth_delay,
            error_body: opts.error_body,
            requests: 0,
            fingerprint: identity.fingerprint_colon(),
        }));
        let st = state.clone();
        let bind = std::net::SocketAddr::from(([127, 0, 0, 1], opts.port.unwrap_or(0)));
        let server = HttpsServer::start_on(bind, &identity, Arc::new(move |req| handle(&st, req)))
            .expect("start PBS simulator");
        Self::new(PbsSimHandle { state }, identity, server)
    }

    /// `Authorization` header value for the configured token (`PBSAPIToken=…:SECRET`).
    pub fn auth_header(&self) -> String {
        format!("PBSAPIToken={}", self.lock().token)
    }

    /// `GET {base}{path}` with the configured token (path relative to `/api2/json`).
    ///
    /// # Panics
    /// On transport errors.
    pub fn get(&self, path: &str) -> RawResponse {
        let auth = self.auth_header();
        self.get_with_auth(path, Some(&auth))
    }
}

impl PbsSimHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces all faults with this one.
    pub fn set_fault(&self, fault: Fault) {
        self.lock().faults = vec![fault];
    }

    /// Adds a fault to the active ones.
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Active faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// Changes the accepted token (`USER@REALM!TOKENID:SECRET`).
    pub fn set_token(&self, token: &str) {
        token.clone_into(&mut self.lock().token);
    }

    /// Changes the delay of 401 answers.
    pub fn set_auth_delay(&self, d: Duration) {
        self.lock().auth_delay = d;
    }

    /// Changes the error body style.
    pub fn set_error_body(&self, style: ErrorBody) {
        self.lock().error_body = style;
    }

    /// Number of requests answered so far (including rejected ones).
    pub fn request_count(&self) -> u64 {
        self.lock().requests
    }

    /// A snapshot of the world.
    pub fn world(&self) -> World {
        self.lock().world.clone()
    }

    /// Runs `f` on the world under the lock.
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.lock().world)
    }

    /// Sets a datastore's used bytes (`avail` = `total - used`). False if unknown.
    pub fn set_datastore_usage(&self, store: &str, used: u64) -> bool {
        self.with_world(|w| {
            let Some(ds) = w.datastores.iter_mut().find(|d| d.name == store) else {
                return false;
            };
            ds.usage.used = used.min(ds.usage.total);
            ds.usage.avail = ds.usage.total - ds.usage.used;
            true
        })
    }

    /// Sets PBS's estimate of when `store` is full (`estimated-full-date`, epoch seconds), or
    /// none. False if the store is unknown.
    pub fn set_estimated_full_date(&self, store: &str, at: Option<i64>) -> bool {
        self.with_world(|w| {
            let Some(ds) = w.datastores.iter_mut().find(|d| d.name == store) else {
                return false;
            };
            ds.estimated_full_date = at;
            true
        })
    }

    /// A GC run of `store` that failed with `error`: adds a failed `garbage_collection` task
    /// and sets `last-run-state` to `error`, `upid`/`last-run-endtime` to the task. Returns the
    /// UPID, `None` if the store is unknown.
    pub fn fail_gc(&self, store: &str, error: &str) -> Option<String> {
        self.with_world(|w| {
            let idx = w.datastores.iter().position(|d| d.name == store)?;
            let tk = push_task(w, "garbage_collection", store, error);
            let gc = &mut w.datastores[idx].gc;
            gc.upid = Some(tk.upid());
            gc.last_run_state = Some(error.to_owned());
            gc.last_run_endtime = tk.endtime;
            gc.duration = tk.endtime.map(|e| e - tk.starttime);
            Some(tk.upid())
        })
    }

    /// Adds a snapshot (`verification` absent, size 1 GiB) taken now; returns its
    /// `backup-time`.
    pub fn add_snapshot(&self, store: &str, backup_type: &str, backup_id: &str) -> i64 {
        self.with_world(|w| {
            let t = now().max(
                w.snapshots
                    .iter()
                    .map(|s| s.backup_time + 1)
                    .max()
                    .unwrap_or(0),
            );
            let mut s = snapshot(store, backup_type, backup_id, t, "", None);
            s.size = Some(GIB);
            w.snapshots.push(s);
            t
        })
    }

    /// Marks a snapshot's `verification` as `{"state":"failed","upid":…}` (only the snapshot
    /// changes; no task is added). False if not found.
    pub fn fail_verification(
        &self,
        store: &str,
        backup_type: &str,
        backup_id: &str,
        backup_time: i64,
    ) -> bool {
        self.with_world(|w| {
            let Some(s) = w.snapshots.iter_mut().find(|s| {
                s.store == store
                    && s.backup_type == backup_type
                    && s.backup_id == backup_id
                    && s.backup_time == backup_time
            }) else {
                return false;
            };
            let upid = format!(
                "UPID:{NODE}:000004D2:003D0900:00000002:{:08X}:verify_snapshot:{store}:root@pam:",
                now()
            );
            s.verification = Some(Verification {
                state: "failed".to_owned(),
                upid,
            });
            true
        })
    }

    /// A run of sync job `id` that failed with `error`: adds a failed `syncjob` task and sets
    /// the job's `last-run-state`/`last-run-endtime`/`last-run-upid`. Returns the UPID.
    pub fn fail_sync_job(&self, id: &str, error: &str) -> Option<String> {
        self.fail_job(JobKind::Sync, id, error)
    }

    /// Same as [`Self::fail_sync_job`] for any job kind.
    pub fn fail_job(&self, kind: JobKind, id: &str, error: &str) -> Option<String> {
        self.with_world(|w| {
            let idx = w.jobs.iter().position(|j| j.kind == kind && j.id == id)?;
            let tk = push_task(w, kind.worker_type(), id, error);
            let j = &mut w.jobs[idx];
            j.last_run_state = Some(error.to_owned());
            j.last_run_endtime = tk.endtime;
            j.last_run_upid = Some(tk.upid());
            Some(tk.upid())
        })
    }
}

fn push_task(w: &mut World, worker_type: &str, worker_id: &str, status: &str) -> Task {
    let t = now();
    let n = u32::try_from(w.tasks.len()).unwrap_or(0) + 100;
    let tk = task(n, t - 30, worker_type, worker_id, status);
    let mut tk = tk;
    tk.endtime = Some(t);
    w.tasks.push(tk.clone());
    tk
}

// ---------------------------------------------------------------------------------------------
// Request handling

enum Reply {
    Data(Value),
    DataTotal(Value, usize),
    Error(u16, String),
}

const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

fn canonical_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        405 => "Method Not Allowed",
        501 => "Not Implemented",
        _ => "Error",
    }
}

fn error_response(style: ErrorBody, status: u16, text: &str, delay: Duration) -> Response {
    let headers = vec![("Content-Type".to_owned(), JSON_CONTENT_TYPE.to_owned())];
    match style {
        ErrorBody::RestServer => Response {
            status,
            reason: canonical_reason(status).to_owned(),
            headers,
            body: text.as_bytes().to_vec(),
            delay,
        },
        ErrorBody::PveLike if status == 401 => Response {
            status,
            reason: text.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            delay,
        },
        ErrorBody::PveLike => Response {
            status,
            reason: text.to_owned(),
            headers,
            body: json!({ "data": null, "message": format!("{text}\n") })
                .to_string()
                .into_bytes(),
            delay,
        },
    }
}

fn handle(state: &Mutex<State>, req: &Request) -> Response {
    let mut st = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    st.requests += 1;
    let slow: Duration = st
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::Slow(d) => Some(*d),
            _ => None,
        })
        .sum();

    // Authentication comes first and is delayed on failure.
    let unauthorized = match req.header("authorization") {
        None => Some("authentication failed - no authentication credentials provided."),
        Some(a)
            if st.faults.contains(&Fault::BadToken)
                || a.strip_prefix("PBSAPIToken=") != Some(st.token.as_str()) =>
        {
            Some("authentication failed - invalid API token")
        }
        Some(_) => None,
    };
    if let Some(text) = unauthorized {
        return error_response(st.error_body, 401, text, st.auth_delay + slow);
    }

    let reply = match req.path.strip_prefix(API_PREFIX) {
        Some(rest) if req.method == "GET" => {
            if let Some(text) = st.faults.iter().find_map(|f| match f {
                Fault::ServerError(t) => Some(t.clone()),
                _ => None,
            }) {
                Reply::Error(500, text)
            } else {
                route(&st, rest.trim_end_matches('/'), req)
            }
        }
        Some(_) => Reply::Error(
            405,
            format!("Method '{}' not allowed for '{}'.", req.method, req.path),
        ),
        None => Reply::Error(404, format!("Path '{}' not found.", req.path)),
    };

    let body = match reply {
        Reply::Data(d) => json!({ "data": d }),
        Reply::DataTotal(d, total) => json!({ "data": d, "total": total }),
        Reply::Error(status, text) => return error_response(st.error_body, status, &text, slow),
    };
    let mut bytes = body.to_string().into_bytes();
    if st.faults.contains(&Fault::MalformedJson) {
        let cut = bytes.len() / 2;
        bytes.truncate(cut);
    }
    Response {
        status: 200,
        reason: "OK".to_owned(),
        headers: vec![("Content-Type".to_owned(), JSON_CONTENT_TYPE.to_owned())],
        body: bytes,
        delay: slow,
    }
}

impl State {
    fn denied(&self, acl_path: &str) -> bool {
        self.faults.iter().any(|f| match f {
            Fault::MissingPrivilege { path } => path == acl_path || path == "/",
            _ => false,
        })
    }

    fn store_denied(&self, store: &str) -> bool {
        self.denied(&format!("/datastore/{store}"))
    }

    fn unavailable(&self, store: &str) -> bool {
        self.faults
            .contains(&Fault::DatastoreUnavailable(store.to_owned()))
    }

    /// Datastores the caller may see.
    fn visible(&self) -> impl Iterator<Item = &Datastore> {
        self.world
            .datastores
            .iter()
            .filter(|d| !self.store_denied(&d.name))
    }
}

fn forbidden() -> Reply {
    Reply::Error(403, "permission check failed".to_owned())
}

fn not_found(path: &str) -> Reply {
    Reply::Error(404, format!("Path '{API_PREFIX}{path}' not found."))
}

fn route(st: &State, path: &str, req: &Request) -> Reply {
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let w = &st.world;
    match seg.as_slice() {
        ["version"] => Reply::Data(json!({
            "version": w.version.0, "release": w.version.1, "repoid": w.version.2
        })),
        ["nodes", NODE, "status"] => {
            if st.denied("/system/status") {
                return forbidden();
            }
            Reply::Data(node_status(st))
        }
        ["nodes", NODE, "subscription"] => {
            if st.denied("/system") {
                return forbidden();
            }
            Reply::Data(w.subscription.clone())
        }
        ["nodes", NODE, "tasks"] => {
            if st.denied("/system/tasks") {
                return forbidden();
            }
            node_tasks(w, req)
        }
        ["status", "datastore-usage"] => Reply::Data(Value::Array(
            st.visible().map(|d| datastore_usage(st, d)).collect(),
        )),
        ["admin", "datastore"] => Reply::Data(Value::Array(
            st.visible().map(datastore_list_entry).collect(),
        )),
        ["admin", "gc"] => Reply::Data(Value::Array(st.visible().map(gc_entry).collect())),
        ["admin", kind @ ("prune" | "verify" | "sync")] => {
            let kind = match *kind {
                "prune" => JobKind::Prune,
                "verify" => JobKind::Verify,
                _ => JobKind::Sync,
            };
            let dir = req.query("sync-direction");
            Reply::Data(Value::Array(
                w.jobs
                    .iter()
                    .filter(|j| j.kind == kind && !st.store_denied(&j.store))
                    .filter(|j| match dir {
                        None | Some("all") => true,
                        Some(d) => {
                            j.config
                                .get("sync-direction")
                                .and_then(Value::as_str)
                                .unwrap_or("pull")
                                == d
                        }
                    })
                    .map(job_entry)
                    .collect(),
            ))
        }
        ["admin", "datastore", store, rest @ ..] => datastore_route(st, store, rest, req, path),
        _ => not_found(path),
    }
}

fn datastore_route(st: &State, store: &str, rest: &[&str], req: &Request, path: &str) -> Reply {
    let w = &st.world;
    let Some(ds) = w.datastores.iter().find(|d| d.name == store) else {
        return Reply::Error(400, format!("datastore '{store}' does not exist"));
    };
    if st.store_denied(store) {
        return forbidden();
    }
    if st.unavailable(store) {
        return Reply::Error(
            400,
            format!("offline maintenance mode: {store} unavailable"),
        );
    }
    let snaps = || w.snapshots.iter().filter(move |s| s.store == store);
    match rest {
        ["status"] => Reply::Data(datastore_status(ds, &snaps().collect::<Vec<_>>())),
        ["gc"] => Reply::Data(gc_entry(ds)),
        ["namespace"] => Reply::Data(Value::Array(
            std::iter::once("")
                .chain(ds.namespaces.iter().map(String::as_str))
                .map(|ns| json!({ "ns": ns }))
                .collect(),
        )),
        ["snapshots"] => {
            let ty = req.query("backup-type");
            let id = req.query("backup-id");
            let mut list: Vec<&Snapshot> = snaps()
                .filter(|s| ty.is_none_or(|t| s.backup_type == t))
                .filter(|s| id.is_none_or(|i| s.backup_id == i))
                .collect();
            list.sort_by(|a, b| {
                (&a.backup_type, &a.backup_id, a.backup_time).cmp(&(
                    &b.backup_type,
                    &b.backup_id,
                    b.backup_time,
                ))
            });
            Reply::Data(Value::Array(list.into_iter().map(snapshot_entry).collect()))
        }
        ["groups"] => Reply::Data(groups(&snaps().collect::<Vec<_>>())),
        _ => not_found(path),
    }
}

fn node_status(st: &State) -> Value {
    let n = &st.world.node;
    let mem = |m: &MemUsage| json!({ "free": m.free, "total": m.total, "used": m.used });
    json!({
        "boot-info": { "mode": "efi", "secureboot": false },
        "cpu": n.cpu,
        "cpuinfo": { "cpus": n.cpus, "model": n.cpu_model, "sockets": n.sockets },
        "current-kernel": {
            "machine": "x86_64",
            "release": n.kversion.split_whitespace().nth(1).unwrap_or_default(),
            "sysname": "Linux",
            "version": n.kversion.split_whitespace().skip(2).collect::<Vec<_>>().join(" "),
        },
        "info": { "fingerprint": st.fingerprint },
        "kversion": n.kversion,
        "loadavg": n.loadavg,
        "memory": mem(&n.memory),
        "root": { "avail": n.root.avail, "total": n.root.total, "used": n.root.used },
        "swap": mem(&n.swap),
        "uptime": n.uptime,
        "wait": n.wait,
    })
}

fn datastore_list_entry(d: &Datastore) -> Value {
    let mut v = json!({
        "backend-type": d.backend_type,
        "mount-status": d.mount_status,
        "store": d.name,
    });
    if let Some(c) = &d.comment {
        v["comment"] = json!(c);
    }
    v
}

fn datastore_usage(st: &State, d: &Datastore) -> Value {
    let mut v = json!({
        "backend-type": d.backend_type,
        "mount-status": d.mount_status,
        "store": d.name,
    });
    if st.unavailable(&d.name) {
        v["error"] = json!(format!("offline maintenance mode: {} unavailable", d.name));
        return v;
    }
    v["avail"] = json!(d.usage.avail);
    v["total"] = json!(d.usage.total);
    v["used"] = json!(d.usage.used);
    v["gc-status"] = Value::Object(d.gc.counters());
    if let Some(at) = d.estimated_full_date {
        v["estimated-full-date"] = json!(at);
    }
    v
}

fn datastore_status(d: &Datastore, snaps: &[&Snapshot]) -> Value {
    let mut counts = Map::new();
    for ty in ["ct", "host", "vm"] {
        let of: Vec<&&Snapshot> = snaps.iter().filter(|s| s.backup_type == ty).collect();
        let mut ids: Vec<&str> = of.iter().map(|s| s.backup_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        if !of.is_empty() {
            counts.insert(
                ty.to_owned(),
                json!({ "groups": ids.len(), "snapshots": of.len() }),
            );
        }
    }
    json!({
        "avail": d.usage.avail,
        "backend-type": d.backend_type,
        "counts": counts,
        "gc-status": d.gc.counters(),
        "total": d.usage.total,
        "used": d.usage.used,
    })
}

fn gc_entry(d: &Datastore) -> Value {
    let g = &d.gc;
    let mut m = g.counters();
    m.insert("store".to_owned(), json!(d.name));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    opt(
        "last-run-state",
        g.last_run_state.as_ref().map(|s| json!(s)),
    );
    opt("last-run-endtime", g.last_run_endtime.map(|t| json!(t)));
    opt("next-run", g.next_run.map(|t| json!(t)));
    opt("schedule", g.schedule.as_ref().map(|s| json!(s)));
    opt("duration", g.duration.map(|t| json!(t)));
    Value::Object(m)
}

fn job_entry(j: &Job) -> Value {
    let mut m = j.config.clone();
    m.insert("id".to_owned(), json!(j.id));
    m.insert("store".to_owned(), json!(j.store));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    opt("schedule", j.schedule.as_ref().map(|s| json!(s)));
    opt("comment", j.comment.as_ref().map(|s| json!(s)));
    opt(
        "last-run-state",
        j.last_run_state.as_ref().map(|s| json!(s)),
    );
    opt("last-run-endtime", j.last_run_endtime.map(|t| json!(t)));
    opt("last-run-upid", j.last_run_upid.as_ref().map(|s| json!(s)));
    opt("next-run", j.next_run.map(|t| json!(t)));
    Value::Object(m)
}

fn snapshot_entry(s: &Snapshot) -> Value {
    let mut v = json!({
        "backup-id": s.backup_id,
        "backup-time": s.backup_time,
        "backup-type": s.backup_type,
        "files": s.files,
        "protected": s.protected,
    });
    if let Some(c) = &s.comment {
        v["comment"] = json!(c);
    }
    if let Some(o) = &s.owner {
        v["owner"] = json!(o);
    }
    if let Some(size) = s.size {
        v["size"] = json!(size);
    }
    if let Some(ver) = &s.verification {
        v["verification"] = json!({ "state": ver.state, "upid": ver.upid });
    }
    v
}

fn groups(snaps: &[&Snapshot]) -> Value {
    let mut keys: Vec<(&str, &str)> = snaps
        .iter()
        .map(|s| (s.backup_type.as_str(), s.backup_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    Value::Array(
        keys.into_iter()
            .map(|(ty, id)| {
                let of: Vec<&&Snapshot> = snaps
                    .iter()
                    .filter(|s| s.backup_type == ty && s.backup_id == id)
                    .collect();
                let Some(last) = of.iter().max_by_key(|s| s.backup_time) else {
                    return Value::Null;
                };
                let mut v = json!({
                    "backup-count": of.len(),
                    "backup-id": id,
                    "backup-type": ty,
                    "files": last.files,
                    "last-backup": last.backup_time,
                });
                if let Some(o) = &last.owner {
                    v["owner"] = json!(o);
                }
                if let Some(c) = &last.comment {
                    v["comment"] = json!(c);
                }
                v
            })
            .collect(),
    )
}

fn task_entry(t: &Task) -> Value {
    let mut v = json!({
        "node": NODE,
        "pid": t.pid,
        "pstart": t.pstart,
        "starttime": t.starttime,
        "upid": t.upid(),
        "user": t.user,
        "worker_type": t.worker_type,
    });
    if let Some(e) = t.endtime {
        v["endtime"] = json!(e);
    }
    if let Some(s) = &t.status {
        v["status"] = json!(s);
    }
    if let Some(id) = &t.worker_id {
        v["worker_id"] = json!(id);
    }
    v
}

fn flag(req: &Request, name: &str) -> bool {
    matches!(req.query(name), Some("1" | "true" | "on" | "yes"))
}

/// `/nodes/localhost/tasks` with `running`, `errors`, `typefilter`, `since`, `until`, `start`
/// and `limit` (default 50); newest first; `total` counts the filtered list.
fn node_tasks(w: &World, req: &Request) -> Reply {
    let num = |k: &str| req.query(k).and_then(|v| v.parse::<i64>().ok());
    let running = flag(req, "running");
    let errors = flag(req, "errors");
    let ty = req.query("typefilter");
    let mut list: Vec<&Task> = w
        .tasks
        .iter()
        .filter(|t| !running || t.endtime.is_none())
        .filter(|t| !errors || t.failed())
        .filter(|t| ty.is_none_or(|f| t.worker_type.contains(f)))
        .filter(|t| num("since").is_none_or(|s| t.starttime >= s))
        .filter(|t| num("until").is_none_or(|u| t.starttime <= u))
        .collect();
    list.sort_by_key(|t| std::cmp::Reverse(t.starttime));
    let total = list.len();
    let start = usize::try_from(num("start").unwrap_or(0)).unwrap_or(0);
    let limit = usize::try_from(num("limit").unwrap_or(50)).unwrap_or(50);
    let page = list
        .into_iter()
        .skip(start)
        .take(limit)
        .map(task_entry)
        .collect();
    Reply::DataTotal(page, total)
}
