//! Kubernetes API server simulator: a mutable cluster (namespaces, nodes, pods, PVCs, events,
//! deployments, statefulsets, daemonsets, jobs) served over HTTPS with the apiserver's list and
//! watch semantics, for tests of the kube-rs based collector.
//!
//! Object bodies are shaped from the real captures in `tests/fixtures/k8s/` (see
//! `tests/fixtures/README.md` for their provenance); list items lack `kind`/`apiVersion`
//! and watch objects carry them, as on a real server. One global, monotonically increasing
//! `resourceVersion` numbers every change; each resource keeps the last
//! [`K8sSimOptions::history`] changes for watches, and older `resourceVersion`s get the
//! apiserver's `410 Expired` `ERROR` event.
//!
//! Objects are stored serialized (one JSON string per object, plus the labels and selectable
//! fields), so lists and watches of 10,000 pods only concatenate strings; a mutation parses
//! and re-serializes the one object it changes.
//!
//! ```no_run
//! use warden_sim::k8s::{Fault, K8sSim, K8sSimOptions};
//! let sim = K8sSim::start(K8sSimOptions::default());
//! sim.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig")).unwrap();
//! let pods = sim.get("/api/v1/pods?limit=5").json().unwrap();
//! sim.crashloop_pod("shop", "db-0");
//! sim.set_fault(Fault::forbidden("pods"));
//! assert_eq!(sim.list_count("pods"), 1);
//! ```

use super::{
    Answer, ChunkedWriter, HttpStream, HttpsServer, RawResponse, Request, Response, Sim, StreamEnd,
    StreamResponse, TlsIdentity, https_get, https_stream,
};
use anyhow::{Context, bail};
use rustls::pki_types::CertificateDer;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Resource kinds

/// The resources the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 `Namespace` (cluster-scoped).
    Namespace,
    /// core/v1 `Node` (cluster-scoped).
    Node,
    /// core/v1 `Pod`.
    Pod,
    /// core/v1 `PersistentVolumeClaim`.
    PersistentVolumeClaim,
    /// core/v1 `Event`.
    Event,
    /// apps/v1 `Deployment`.
    Deployment,
    /// apps/v1 `StatefulSet`.
    StatefulSet,
    /// apps/v1 `DaemonSet`.
    DaemonSet,
    /// batch/v1 `Job`.
    Job,
}

const KINDS: usize = 9;

impl Kind {
    /// Every kind, in discovery order.
    pub const ALL: [Self; KINDS] = [
        Self::Namespace,
        Self::Node,
        Self::Pod,
        Self::PersistentVolumeClaim,
        Self::Event,
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::Job,
    ];

    fn idx(self) -> usize {
        self as usize
    }

    /// Resource name in URLs (`pods`).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Namespace => "namespaces",
            Self::Node => "nodes",
            Self::Pod => "pods",
            Self::PersistentVolumeClaim => "persistentvolumeclaims",
            Self::Event => "events",
            Self::Deployment => "deployments",
            Self::StatefulSet => "statefulsets",
            Self::DaemonSet => "daemonsets",
            Self::Job => "jobs",
        }
    }

    /// Singular resource name (`pod`), as in discovery.
    pub fn singular(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Node => "node",
            Self::Pod => "pod",
            Self::PersistentVolumeClaim => "persistentvolumeclaim",
            Self::Event => "event",
            Self::Deployment => "deployment",
            Self::StatefulSet => "statefulset",
            Self::DaemonSet => "daemonset",
            Self::Job => "job",
        }
    }

    /// The `kind` field (`Pod`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Namespace => "Namespace",
            Self::Node => "Node",
            Self::Pod => "Pod",
            Self::PersistentVolumeClaim => "PersistentVolumeClaim",
            Self::Event => "Event",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
        }
    }

    /// API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Self::Deployment | Self::StatefulSet | Self::DaemonSet => "apps",
            Self::Job => "batch",
            _ => "",
        }
    }

    /// The `apiVersion` field (`v1`, `apps/v1`, `batch/v1`).
    pub fn api_version(self) -> &'static str {
        match self.group() {
            "apps" => "apps/v1",
            "batch" => "batch/v1",
            _ => "v1",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Self::Namespace | Self::Node)
    }

    /// The kind whose URL name is `plural`.
    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.plural() == plural)
    }

    /// The kind whose `kind` field is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn short_names(self) -> &'static [&'static str] {
        match self {
            Self::Namespace => &["ns"],
            Self::Node => &["no"],
            Self::Pod => &["po"],
            Self::PersistentVolumeClaim => &["pvc"],
            Self::Event => &["ev"],
            Self::Deployment => &["deploy"],
            Self::StatefulSet => &["sts"],
            Self::DaemonSet => &["ds"],
            Self::Job => &[],
        }
    }

    /// Field labels the real apiserver accepts in `fieldSelector` for this resource, besides
    /// `metadata.name` and `metadata.namespace`.
    fn field_labels(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            Self::Node => &["spec.unschedulable"],
            Self::Namespace => &["status.phase"],
            Self::Event => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            Self::Job => &["status.successful"],
            _ => &[],
        }
    }

    fn resource_or_plural(resource: &str) -> String {
        Self::ALL
            .into_iter()
            .find(|k| {
                k.plural() == resource
                    || k.singular() == resource
                    || k.name().eq_ignore_ascii_case(resource)
            })
            .map_or_else(|| resource.to_owned(), |k| k.plural().to_owned())
    }
}

/// The value of a field label of an object, as the apiserver's field selector sees it.
fn field_value(v: &Value, label: &str) -> String {
    let pointer = match label {
        "source" => "/source/component".to_owned(),
        "status.successful" => "/status/succeeded".to_owned(),
        l => format!("/{}", l.replace('.', "/")),
    };
    match v.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => match label {
            "spec.hostNetwork" | "spec.unschedulable" => "false".to_owned(),
            "status.successful" => "0".to_owned(),
            _ => String::new(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Options, faults, counters

/// A switchable misbehaviour. Resource names are plurals (`pods`), singular names and kinds
/// are accepted too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every authenticated request gets `401 Unauthorized` (as if the token was revoked).
    BadToken,
    /// RBAC denies `get`/`list`/`watch` of `resource`, with the apiserver's message
    /// (`pods is forbidden: User "…" cannot list resource "pods" in API group "" at the
    /// cluster scope`), except for requests inside one of `allowed_namespaces` (a Role
    /// binding there).
    Forbidden {
        /// Plural resource name.
        resource: String,
        /// Namespaces where the user still has access.
        allowed_namespaces: Vec<String>,
    },
    /// Requests (for `resource`, or all API requests) get this HTTP status with the matching
    /// `Status` body: 429 TooManyRequests (`Retry-After: 1`), 500 InternalError,
    /// 503 ServiceUnavailable, 504 Timeout, anything else InternalError.
    ServerError {
        /// HTTP status.
        code: u16,
        /// Plural resource name, or `None` for every request.
        resource: Option<String>,
    },
    /// Answers (for `resource`, or all) are delayed by this much before the head is sent.
    Slow {
        /// Delay.
        delay: Duration,
        /// Plural resource name, or `None` for every request.
        resource: Option<String>,
    },
    /// 200 bodies (for `resource`, or all) are cut in half; on watches every event line is
    /// cut in half (each still ends with a newline).
    MalformedJson {
        /// Plural resource name, or `None` for every request.
        resource: Option<String>,
    },
    /// Every watch stream is reset (TCP RST, no last chunk) this long after it opened.
    AbortWatchesAfter(Duration),
    /// Every list with a `continue` token gets `410 Expired` (the token's snapshot was
    /// compacted away), with the apiserver's message.
    ContinueExpired,
}

impl Fault {
    /// [`Fault::Forbidden`] in every namespace.
    pub fn forbidden(resource: &str) -> Self {
        Self::Forbidden {
            resource: Kind::resource_or_plural(resource),
            allowed_namespaces: Vec::new(),
        }
    }

    /// [`Fault::ServerError`] for every request.
    pub fn server_error(code: u16) -> Self {
        Self::ServerError {
            code,
            resource: None,
        }
    }

    /// [`Fault::Slow`] for every request.
    pub fn slow(delay: Duration) -> Self {
        Self::Slow {
            delay,
            resource: None,
        }
    }

    /// [`Fault::MalformedJson`] for every request.
    pub fn malformed() -> Self {
        Self::MalformedJson { resource: None }
    }

    /// Limits a `ServerError`, `Slow` or `MalformedJson` fault to one resource (other faults
    /// are returned unchanged).
    #[must_use]
    pub fn on(mut self, resource: &str) -> Self {
        if let Self::ServerError { resource: r, .. }
        | Self::Slow { resource: r, .. }
        | Self::MalformedJson { resource: r } = &mut self
        {
            *r = Some(Kind::resource_or_plural(resource));
        }
        self
    }

    fn applies_to(resource: Option<&String>, kind: Option<Kind>) -> bool {
        match resource {
            None => true,
            Some(r) => kind.is_some_and(|k| k.plural() == r),
        }
    }
}

/// Node pressure conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// `MemoryPressure`
    Memory,
    /// `DiskPressure`
    Disk,
    /// `PIDPressure`
    Pid,
}

impl Pressure {
    /// Condition type.
    pub fn condition(self) -> &'static str {
        match self {
            Self::Memory => "MemoryPressure",
            Self::Disk => "DiskPressure",
            Self::Pid => "PIDPressure",
        }
    }

    /// (reason, message) the kubelet reports for the condition being true / false.
    fn text(self, on: bool) -> (&'static str, &'static str) {
        match (self, on) {
            (Self::Memory, true) => (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (Self::Memory, false) => (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (Self::Disk, true) => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            (Self::Disk, false) => ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (Self::Pid, true) => (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (Self::Pid, false) => (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        }
    }

    fn taint(self) -> &'static str {
        match self {
            Self::Memory => "node.kubernetes.io/memory-pressure",
            Self::Disk => "node.kubernetes.io/disk-pressure",
            Self::Pid => "node.kubernetes.io/pid-pressure",
        }
    }
}

/// Start-up options.
#[derive(Clone, Debug)]
pub struct K8sSimOptions {
    /// Accepted bearer token.
    pub token: String,
    /// The user the token authenticates as (appears in 403 messages).
    pub user: String,
    /// Initial objects.
    pub world: World,
    /// Changes retained per resource for watches; older `resourceVersion`s get 410.
    pub history: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a `BOOKMARK` event.
    pub bookmark_interval: Duration,
    /// `gitVersion` reported by `/version` (`v1.34.1`).
    pub git_version: String,
    /// Whether the convenience mutations also record the core/v1 events the kubelet or the
    /// controllers would (`BackOff`, `Failed`, `NodeNotReady`, `BackoffLimitExceeded`, …).
    pub emit_events: bool,
    /// Port to listen on (`0` = any free port).
    pub port: u16,
}

impl Default for K8sSimOptions {
    fn default() -> Self {
        Self {
            token: "warden-agent-token-6c1d8e9b0a4c7d2f".to_owned(),
            user: "system:serviceaccount:warden:warden-agent".to_owned(),
            world: World::default(),
            history: 1000,
            bookmark_interval: Duration::from_secs(2),
            git_version: "v1.34.1".to_owned(),
            emit_events: true,
            port: 0,
        }
    }
}

impl K8sSimOptions {
    /// Defaults with another world.
    pub fn with_world(world: World) -> Self {
        Self {
            world,
            ..Self::default()
        }
    }
}

/// Request counters of one resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// List requests without a `continue` token (full lists started).
    pub lists: u64,
    /// All list requests, including continuation pages.
    pub list_pages: u64,
    /// Watch requests.
    pub watches: u64,
    /// Single-object `GET`s.
    pub gets: u64,
    /// Watch streams open right now.
    pub open_watches: u64,
}

/// One request as the simulator saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Decoded path.
    pub path: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Status of the answer (200 for watches, whose errors travel in the stream).
    pub status: u16,
}

impl LoggedRequest {
    /// First query parameter with this name.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

const LOG_LIMIT: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Small helpers: time, ids, base64

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// RFC 3339 UTC timestamp with second precision, as the apiserver writes them.
fn ts(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// 64 pseudo-random bits derived from `seed` and `round` (stable within a build; the
/// standard library's hasher is optimized even in debug builds, which matters for 10,000-pod
/// worlds).
fn hash64(seed: &str, round: u32) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    round.hash(&mut h);
    h.finish()
}

/// `n` lowercase hex digits derived from `seed`.
fn hex_of(seed: &str, n: usize) -> String {
    let mut out = String::with_capacity(n + 16);
    let mut i = 0u32;
    while out.len() < n {
        out.push_str(&format!("{:016x}", hash64(seed, i)));
        i += 1;
    }
    out.truncate(n);
    out
}

/// A version-4-shaped UUID derived from `seed`.
fn uuid(seed: &str) -> String {
    let h = hex_of(seed, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// `n` characters from the alphabet Kubernetes uses for generated name suffixes.
fn name_suffix(seed: &str, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bits = hash64(seed, 0);
    (0..n)
        .map(|i| {
            if i > 0 && i % 8 == 0 {
                bits = hash64(seed, u32::try_from(i).unwrap_or(0));
            }
            let c = ALPHABET[usize::try_from(bits % 27).unwrap_or(0)] as char;
            bits /= 27;
            c
        })
        .collect()
}

fn base64(data: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(alphabet[((n >> shift) & 63) as usize] as char);
            } else if !url_safe {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0u32;
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push(u8::try_from((bits >> nbits) & 0xff).unwrap_or(0));
        }
    }
    Some(out)
}

/// A fixture compiled into the binary, parsed once.
fn fixture(text: &'static str) -> Value {
    static PARSED: OnceLock<Mutex<HashMap<usize, Value>>> = OnceLock::new();
    let cache = PARSED.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .entry(text.as_ptr() as usize)
        // The fixtures are checked-in JSON files; `tests/tests/it/k8s_sim.rs` parses each of
        // them, so a broken one fails loudly there. A null template would only give odd
        // bodies.
        .or_insert_with(|| serde_json::from_str(text).unwrap_or(Value::Null))
        .clone()
}

const FIX_NODE: &str = include_str!("../../fixtures/k8s/node.minikube.ready.json");
const FIX_POD: &str = include_str!("../../fixtures/k8s/pod.crashloopbackoff.json");
const FIX_DEPLOYMENT: &str = include_str!("../../fixtures/k8s/deployment.available.json");
const FIX_DEPLOYMENT_UNAVAILABLE: &str =
    include_str!("../../fixtures/k8s/deployment.unavailable.json");
const FIX_PVC: &str = include_str!("../../fixtures/k8s/pvc.bound.json");
const FIX_JOB: &str = include_str!("../../fixtures/k8s/job.complete.json");
const FIX_EVENT: &str = include_str!("../../fixtures/k8s/event.normal.pulled.json");

/// Sets `v[key] = val` if `v` is an object.
fn set(v: &mut Value, key: &str, val: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_owned(), val);
    }
}

/// `v[key]` as a mutable object, created (or replaced if not an object) when needed.
fn obj<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(m) = v else {
        unreachable!("made an object above")
    };
    let e = m.entry(key.to_owned()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    let Value::Object(inner) = e else {
        unreachable!("made an object above")
    };
    inner
}

fn remove(v: &mut Value, key: &str) {
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
}

// ---------------------------------------------------------------------------------------------
// Object builders (shaped from the fixtures)

/// Fully qualified image reference, as containerd reports it in `containerStatuses[].image`.
fn qualified_image(image: &str) -> String {
    match image.split_once('/') {
        None => format!("docker.io/library/{image}"),
        Some((first, _)) if !first.contains('.') && !first.contains(':') => {
            format!("docker.io/{image}")
        }
        Some(_) => image.to_owned(),
    }
}

/// `repo@sha256:…` for an image.
fn image_id(image: &str) -> String {
    let q = qualified_image(image);
    let repo = match q.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r.to_owned(),
        _ => q.clone(),
    };
    format!("{repo}@sha256:{}", hex_of(&q, 64))
}

/// The controller owning an object (`metadata.ownerReferences[0]`).
#[derive(Clone, Debug)]
struct Owner {
    api_version: &'static str,
    kind: &'static str,
    name: String,
    uid: String,
}

impl Owner {
    fn to_json(&self) -> Value {
        json!([{
            "apiVersion": self.api_version,
            "blockOwnerDeletion": true,
            "controller": true,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
        }])
    }
}

/// What a pod (or pod template) runs.
#[derive(Clone, Debug)]
struct ContainerParams {
    name: String,
    image: String,
    /// (containerPort, port name)
    port: Option<(u16, String)>,
    command: Vec<String>,
    config_volume: bool,
    sa_volume: Option<String>,
}

fn container_obj(c: &ContainerParams) -> Value {
    let mut mounts = Vec::new();
    if c.config_volume {
        mounts.push(
            json!({"mountPath": format!("/etc/{}", c.name), "name": "config", "readOnly": true}),
        );
    }
    if let Some(v) = &c.sa_volume {
        mounts.push(json!({
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "name": v,
            "readOnly": true
        }));
    }
    let mut out = json!({
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
            {"name": "LOG_LEVEL", "value": "info"},
        ],
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "name": c.name,
        "resources": {
            "limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"}
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    });
    if !mounts.is_empty() {
        set(&mut out, "volumeMounts", Value::Array(mounts));
    }
    if !c.command.is_empty() {
        set(&mut out, "command", json!(c.command));
    }
    if let Some((port, pname)) = &c.port {
        set(
            &mut out,
            "ports",
            json!([{"containerPort": port, "name": pname, "protocol": "TCP"}]),
        );
        let probe = |path: &str, delay: u32| {
            json!({
                "failureThreshold": 3,
                "httpGet": {"path": path, "port": pname, "scheme": "HTTP"},
                "initialDelaySeconds": delay,
                "periodSeconds": 10,
                "successThreshold": 1,
                "timeoutSeconds": 1
            })
        };
        set(&mut out, "livenessProbe", probe("/healthz", 10));
        set(&mut out, "readinessProbe", probe("/ready", 5));
    }
    out
}

fn template_spec(container: &ContainerParams, restart_policy: &str) -> Value {
    let mut c = container.clone();
    c.sa_volume = None;
    let mut spec = json!({
        "containers": [container_obj(&c)],
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": restart_policy,
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30
    });
    if container.config_volume {
        set(
            &mut spec,
            "volumes",
            json!([{"configMap": {"defaultMode": 420, "name": format!("{}-config", container.name)}, "name": "config"}]),
        );
    }
    spec
}

/// A node of the world being built.
#[derive(Clone, Debug)]
struct NodeRef {
    name: String,
    ip: String,
    idx: usize,
    uid: String,
}

/// Everything that varies between pods.
#[derive(Clone, Debug)]
struct PodParams {
    ns: String,
    name: String,
    node: NodeRef,
    pod_ip: String,
    labels: Vec<(String, String)>,
    container: ContainerParams,
    owner: Option<Owner>,
    host_network: bool,
    static_pod: bool,
    daemon: bool,
    priority_class: Option<(&'static str, i64)>,
    restart_policy: &'static str,
    succeeded: bool,
    created: i64,
    service_account: String,
}

fn pod_obj(p: &PodParams) -> Value {
    let mut pod = fixture(FIX_POD);
    let uid = uuid(&format!("pod/{}/{}/{}", p.ns, p.name, p.created));
    let started = p.created + 3;
    let mut labels = Map::new();
    for (k, v) in &p.labels {
        labels.insert(k.clone(), json!(v));
    }
    let mut meta = json!({
        "creationTimestamp": ts(p.created),
        "labels": labels,
        "name": p.name,
        "namespace": p.ns,
        "uid": uid,
    });
    if p.static_pod {
        let hash = hex_of(&p.name, 32);
        set(
            &mut meta,
            "annotations",
            json!({
                "kubernetes.io/config.hash": hash,
                "kubernetes.io/config.mirror": hash,
                "kubernetes.io/config.seen": format!("{}.000000000Z", ts(p.created).trim_end_matches('Z')),
                "kubernetes.io/config.source": "file"
            }),
        );
    } else if let Some((port, _)) = &p.container.port {
        set(
            &mut meta,
            "annotations",
            json!({"prometheus.io/port": port.to_string(), "prometheus.io/scrape": "true"}),
        );
    }
    if let Some(o) = &p.owner {
        if o.kind != "Node" {
            let prefix = match p.name.rfind('-') {
                Some(i) => &p.name[..=i],
                None => p.name.as_str(),
            };
            set(&mut meta, "generateName", json!(prefix));
        }
        set(&mut meta, "ownerReferences", o.to_json());
    }
    set(&mut pod, "metadata", meta);

    let container = container_obj(&p.container);
    let mounts = container.get("volumeMounts").cloned();
    let spec = obj(&mut pod, "spec");
    spec.insert("containers".to_owned(), Value::Array(vec![container]));
    spec.insert("nodeName".to_owned(), json!(p.node.name));
    spec.insert("restartPolicy".to_owned(), json!(p.restart_policy));
    if let Some((class, prio)) = p.priority_class {
        spec.insert("priorityClassName".to_owned(), json!(class));
        spec.insert("priority".to_owned(), json!(prio));
    }
    if p.host_network {
        spec.insert("hostNetwork".to_owned(), json!(true));
    }
    let fixture_sa_volume = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut volumes = Vec::new();
    if p.container.config_volume {
        volumes.push(json!({"configMap": {"defaultMode": 420, "name": format!("{}-config", p.container.name)}, "name": "config"}));
    }
    if let Some(v) = &p.container.sa_volume {
        let mut sa = fixture_sa_volume;
        set(&mut sa, "name", json!(v));
        volumes.push(sa);
    }
    if p.static_pod {
        spec.remove("serviceAccount");
        spec.remove("serviceAccountName");
        spec.insert(
            "tolerations".to_owned(),
            json!([{"effect": "NoExecute", "operator": "Exists"}]),
        );
    } else {
        spec.insert("serviceAccount".to_owned(), json!(p.service_account));
        spec.insert("serviceAccountName".to_owned(), json!(p.service_account));
    }
    if volumes.is_empty() {
        spec.remove("volumes");
    } else {
        spec.insert("volumes".to_owned(), Value::Array(volumes));
    }
    if p.daemon {
        spec.insert(
            "affinity".to_owned(),
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [p.node.name]}]}
            ]}}}),
        );
        spec.insert(
            "tolerations".to_owned(),
            json!([
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists"},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists"},
                {"effect": "NoSchedule", "key": "node.kubernetes.io/disk-pressure", "operator": "Exists"},
                {"effect": "NoSchedule", "key": "node.kubernetes.io/memory-pressure", "operator": "Exists"},
                {"effect": "NoSchedule", "key": "node.kubernetes.io/pid-pressure", "operator": "Exists"},
                {"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable", "operator": "Exists"}
            ]),
        );
    }

    let cond = |typ: &str, ok: bool, t: i64| {
        let mut c = json!({"lastProbeTime": null, "lastTransitionTime": ts(t), "status": if ok { "True" } else { "False" }, "type": typ});
        if !ok && p.succeeded && typ != "PodReadyToStartContainers" {
            set(&mut c, "reason", json!("PodCompleted"));
        }
        c
    };
    let done = !p.succeeded;
    let conditions = json!([
        cond("PodReadyToStartContainers", done, started),
        if p.succeeded {
            json!({"lastProbeTime": null, "lastTransitionTime": ts(p.created), "reason": "PodCompleted", "status": "True", "type": "Initialized"})
        } else {
            cond("Initialized", true, p.created)
        },
        cond("Ready", done, started + 5),
        cond("ContainersReady", done, started + 5),
        cond("PodScheduled", true, p.created),
    ]);
    let container_id = format!("containerd://{}", hex_of(&uid, 64));
    let state = if p.succeeded {
        json!({"terminated": {
            "containerID": container_id,
            "exitCode": 0,
            "finishedAt": ts(started + 40),
            "reason": "Completed",
            "startedAt": ts(started)
        }})
    } else {
        json!({"running": {"startedAt": ts(started)}})
    };
    let mut cs = json!({
        "containerID": container_id,
        "image": qualified_image(&p.container.image),
        "imageID": image_id(&p.container.image),
        "lastState": {},
        "name": p.container.name,
        "ready": !p.succeeded,
        "restartCount": 0,
        "started": !p.succeeded,
        "state": state,
    });
    if let Some(Value::Array(mounts)) = mounts {
        let mounts: Vec<Value> = mounts
            .into_iter()
            .map(|mut m| {
                set(&mut m, "recursiveReadOnly", json!("Disabled"));
                m
            })
            .collect();
        set(&mut cs, "volumeMounts", Value::Array(mounts));
    }
    let status = obj(&mut pod, "status");
    status.insert("conditions".to_owned(), conditions);
    status.insert("containerStatuses".to_owned(), json!([cs]));
    status.insert("hostIP".to_owned(), json!(p.node.ip));
    status.insert("hostIPs".to_owned(), json!([{"ip": p.node.ip}]));
    status.insert("podIP".to_owned(), json!(p.pod_ip));
    status.insert("podIPs".to_owned(), json!([{"ip": p.pod_ip}]));
    status.insert(
        "phase".to_owned(),
        json!(if p.succeeded { "Succeeded" } else { "Running" }),
    );
    status.insert("qosClass".to_owned(), json!("Burstable"));
    status.insert("startTime".to_owned(), json!(ts(p.created)));
    pod
}

fn namespace_obj(name: &str, created: i64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "creationTimestamp": ts(created),
            "labels": {"kubernetes.io/metadata.name": name},
            "name": name,
            "uid": uuid(&format!("ns/{name}/{created}")),
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

fn node_obj(n: &NodeRef, control_plane: bool, created: i64, version: &str) -> Value {
    let mut node = fixture(FIX_NODE);
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
    });
    if control_plane {
        set(
            &mut labels,
            "node-role.kubernetes.io/control-plane",
            json!(""),
        );
        set(
            &mut labels,
            "node.kubernetes.io/exclude-from-external-load-balancers",
            json!(""),
        );
    }
    set(
        &mut node,
        "metadata",
        json!({
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"
            },
            "creationTimestamp": ts(created),
            "labels": labels,
            "name": n.name,
            "uid": n.uid,
        }),
    );
    let cidr = format!("10.244.{}.0/24", n.idx % 256);
    let mut spec = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    if control_plane {
        set(
            &mut spec,
            "taints",
            json!([{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}]),
        );
    }
    set(&mut node, "spec", spec);
    let heartbeat = ts(now() - 20);
    let status = obj(&mut node, "status");
    status.insert(
        "addresses".to_owned(),
        json!([{"address": n.ip, "type": "InternalIP"}, {"address": n.name, "type": "Hostname"}]),
    );
    if let Some(Value::Array(conds)) = status.get_mut("conditions") {
        for c in conds.iter_mut() {
            set(c, "lastHeartbeatTime", json!(heartbeat));
            set(c, "lastTransitionTime", json!(ts(created + 30)));
        }
    }
    status.insert(
        "images".to_owned(),
        json!([
            {"names": [format!("registry.k8s.io/kube-apiserver@sha256:{}", hex_of("apiserver", 64)), format!("registry.k8s.io/kube-apiserver:{version}")], "sizeBytes": 30_071_307},
            {"names": [format!("registry.k8s.io/kube-proxy@sha256:{}", hex_of("proxy", 64)), format!("registry.k8s.io/kube-proxy:{version}")], "sizeBytes": 31_928_488},
            {"names": [format!("registry.k8s.io/coredns/coredns@sha256:{}", hex_of("coredns", 64)), "registry.k8s.io/coredns/coredns:v1.12.1".to_owned()], "sizeBytes": 22_384_805},
            {"names": [format!("registry.k8s.io/pause@sha256:{}", hex_of("pause", 64)), "registry.k8s.io/pause:3.10".to_owned()], "sizeBytes": 320_368}
        ]),
    );
    let info = obj(&mut node, "status");
    let info = info
        .entry("nodeInfo".to_owned())
        .or_insert_with(|| json!({}));
    for (k, v) in [
        ("bootID", uuid(&format!("boot/{}", n.name))),
        ("containerRuntimeVersion", "containerd://1.7.27".to_owned()),
        ("kernelVersion", "6.8.0-71-generic".to_owned()),
        ("kubeProxyVersion", version.to_owned()),
        ("kubeletVersion", version.to_owned()),
        ("machineID", hex_of(&format!("machine/{}", n.name), 32)),
        ("osImage", "Ubuntu 24.04.3 LTS".to_owned()),
        (
            "systemUUID",
            uuid(&format!("system/{}", n.name)).to_ascii_uppercase(),
        ),
    ] {
        set(info, k, json!(v));
    }
    node
}

fn workload_meta(ns: &str, name: &str, kind: Kind, app: &str, created: i64) -> Value {
    json!({
        "creationTimestamp": ts(created),
        "generation": 1,
        "labels": {"app": app},
        "name": name,
        "namespace": ns,
        "uid": workload_uid(kind, ns, name),
    })
}

fn workload_uid(kind: Kind, ns: &str, name: &str) -> String {
    uuid(&format!("{}/{ns}/{name}", kind.plural()))
}

/// ReplicaSet name of a deployment (`name-<10 chars>`).
fn replicaset_name(ns: &str, name: &str) -> String {
    format!("{name}-{}", name_suffix(&format!("rs/{ns}/{name}"), 10))
}

fn deployment_obj(ns: &str, name: &str, replicas: u32, c: &ContainerParams, created: i64) -> Value {
    let mut d = fixture(FIX_DEPLOYMENT);
    let mut meta = workload_meta(ns, name, Kind::Deployment, name, created);
    set(
        &mut meta,
        "annotations",
        json!({"deployment.kubernetes.io/revision": "1"}),
    );
    set(&mut d, "metadata", meta);
    let spec = obj(&mut d, "spec");
    spec.insert("replicas".to_owned(), json!(replicas));
    spec.insert("revisionHistoryLimit".to_owned(), json!(10));
    spec.insert("selector".to_owned(), json!({"matchLabels": {"app": name}}));
    spec.insert(
        "template".to_owned(),
        json!({
            "metadata": {"creationTimestamp": null, "labels": {"app": name}},
            "spec": template_spec(c, "Always"),
        }),
    );
    let rs = replicaset_name(ns, name);
    let status = obj(&mut d, "status");
    status.insert("availableReplicas".to_owned(), json!(replicas));
    status.insert("readyReplicas".to_owned(), json!(replicas));
    status.insert("replicas".to_owned(), json!(replicas));
    status.insert("updatedReplicas".to_owned(), json!(replicas));
    if let Some(Value::Array(conds)) = status.get_mut("conditions") {
        for c in conds.iter_mut() {
            set(c, "lastTransitionTime", json!(ts(created + 5)));
            set(c, "lastUpdateTime", json!(ts(created + 5)));
            if c["type"] == "Progressing" {
                set(
                    c,
                    "message",
                    json!(format!("ReplicaSet \"{rs}\" has successfully progressed.")),
                );
            }
        }
    }
    d
}

fn statefulset_obj(
    ns: &str,
    name: &str,
    replicas: u32,
    c: &ContainerParams,
    storage: &str,
    created: i64,
) -> Value {
    let revision = format!("{name}-{}", name_suffix(&format!("sts/{ns}/{name}"), 10));
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": workload_meta(ns, name, Kind::StatefulSet, name, created),
        "spec": {
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "podManagementPolicy": "OrderedReady",
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": name}},
            "serviceName": name,
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": name}},
                "spec": template_spec(c, "Always"),
            },
            "updateStrategy": {"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"},
            "volumeClaimTemplates": [{
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"creationTimestamp": null, "name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": storage}},
                    "volumeMode": "Filesystem"
                },
                "status": {"phase": "Pending"}
            }]
        },
        "status": {
            "availableReplicas": replicas,
            "collisionCount": 0,
            "currentReplicas": replicas,
            "currentRevision": revision,
            "observedGeneration": 1,
            "readyReplicas": replicas,
            "replicas": replicas,
            "updateRevision": revision,
            "updatedReplicas": replicas
        }
    })
}

fn daemonset_obj(ns: &str, name: &str, nodes: u32, c: &ContainerParams, created: i64) -> Value {
    let mut meta = workload_meta(ns, name, Kind::DaemonSet, name, created);
    set(
        &mut meta,
        "annotations",
        json!({"deprecated.daemonset.template.generation": "1"}),
    );
    let mut spec = template_spec(c, "Always");
    set(&mut spec, "hostNetwork", json!(true));
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta,
        "spec": {
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": name}},
                "spec": spec,
            },
            "updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"}
        },
        "status": {
            "currentNumberScheduled": nodes,
            "desiredNumberScheduled": nodes,
            "numberAvailable": nodes,
            "numberMisscheduled": 0,
            "numberReady": nodes,
            "observedGeneration": 1,
            "updatedNumberScheduled": nodes
        }
    })
}

const STORAGE_CLASS: &str = "local-path";
const PROVISIONER: &str = "rancher.io/local-path";

fn pvc_obj(ns: &str, name: &str, size: &str, app: &str, created: i64) -> Value {
    let mut p = fixture(FIX_PVC);
    let uid = uuid(&format!("pvc/{ns}/{name}/{created}"));
    set(
        &mut p,
        "metadata",
        json!({
            "annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
                "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
                "volume.kubernetes.io/storage-provisioner": PROVISIONER
            },
            "creationTimestamp": ts(created),
            "finalizers": ["kubernetes.io/pvc-protection"],
            "labels": {"app": app},
            "name": name,
            "namespace": ns,
            "uid": uid,
        }),
    );
    set(
        &mut p,
        "spec",
        json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "volumeName": format!("pvc-{uid}"),
        }),
    );
    set(
        &mut p,
        "status",
        json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": size}, "phase": "Bound"}),
    );
    p
}

fn job_obj(ns: &str, name: &str, cronjob: &str, image: &str, created: i64) -> Value {
    let mut j = fixture(FIX_JOB);
    let uid = workload_uid(Kind::Job, ns, name);
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    set(
        &mut j,
        "metadata",
        json!({
            "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": ts(created)},
            "creationTimestamp": ts(created),
            "generation": 1,
            "labels": labels,
            "name": name,
            "namespace": ns,
            "ownerReferences": Owner {
                api_version: "batch/v1",
                kind: "CronJob",
                name: cronjob.to_owned(),
                uid: workload_uid(Kind::Job, ns, cronjob),
            }.to_json(),
            "uid": uid,
        }),
    );
    let spec = obj(&mut j, "spec");
    spec.insert("completionMode".to_owned(), json!("NonIndexed"));
    spec.insert("manualSelector".to_owned(), json!(false));
    spec.insert(
        "podReplacementPolicy".to_owned(),
        json!("TerminatingOrFailed"),
    );
    spec.insert(
        "selector".to_owned(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    spec.insert("suspend".to_owned(), json!(false));
    let template = spec
        .entry("template".to_owned())
        .or_insert_with(|| json!({}));
    set(
        template,
        "metadata",
        json!({"creationTimestamp": null, "labels": labels}),
    );
    if let Some(Value::Array(cs)) = template.pointer_mut("/spec/containers") {
        for c in cs.iter_mut() {
            set(c, "name", json!(cronjob));
            set(c, "image", json!(image));
            set(c, "imagePullPolicy", json!("IfNotPresent"));
            set(
                c,
                "args",
                json!([
                    "/bin/sh",
                    "-c",
                    "pg_dump --format=custom --file=/backup/db.dump"
                ]),
            );
        }
    }
    let done = ts(created + 45);
    set(
        &mut j,
        "status",
        json!({
            "completionTime": done,
            "conditions": [
                {"lastProbeTime": done, "lastTransitionTime": done, "message": "Reached expected number of succeeded pods", "reason": "CompletionsReached", "status": "True", "type": "SuccessCriteriaMet"},
                {"lastProbeTime": done, "lastTransitionTime": done, "message": "Reached expected number of succeeded pods", "reason": "CompletionsReached", "status": "True", "type": "Complete"}
            ],
            "ready": 0,
            "startTime": ts(created),
            "succeeded": 1,
            "terminating": 0,
            "uncountedTerminatedPods": {}
        }),
    );
    j
}

/// Who reports an event (`source` / `reportingComponent` / `reportingInstance`).
#[derive(Clone, Debug)]
struct Reporter {
    component: &'static str,
    host: Option<String>,
}

/// A core/v1 Event about `involved` (an `ObjectReference`), shaped like the fixture.
#[allow(clippy::too_many_arguments)]
fn event_obj(
    ns: &str,
    involved: &Value,
    typ: &str,
    reason: &str,
    message: &str,
    reporter: &Reporter,
    t: i64,
    seq: u64,
) -> Value {
    let mut e = fixture(FIX_EVENT);
    let iname = involved.get("name").and_then(Value::as_str).unwrap_or("");
    let name = format!(
        "{iname}.{:x}",
        u64::try_from(t).unwrap_or(0) * 1_000_000_000 + seq
    );
    set(&mut e, "count", json!(1));
    set(&mut e, "eventTime", Value::Null);
    set(&mut e, "firstTimestamp", json!(ts(t)));
    set(&mut e, "lastTimestamp", json!(ts(t)));
    set(&mut e, "involvedObject", involved.clone());
    set(&mut e, "message", json!(message));
    set(&mut e, "reason", json!(reason));
    set(&mut e, "type", json!(typ));
    set(
        &mut e,
        "metadata",
        json!({
            "creationTimestamp": ts(t),
            "name": name,
            "namespace": ns,
            "uid": uuid(&format!("event/{ns}/{name}")),
        }),
    );
    set(&mut e, "reportingComponent", json!(reporter.component));
    set(
        &mut e,
        "reportingInstance",
        json!(reporter.host.clone().unwrap_or_default()),
    );
    let mut source = json!({"component": reporter.component});
    if let Some(h) = &reporter.host {
        set(&mut source, "host", json!(h));
    }
    set(&mut e, "source", source);
    e
}

/// Namespace an event about `involved` lives in (`default` for cluster-scoped objects).
fn event_namespace(involved: &Value) -> String {
    involved
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_owned()
}

/// `ObjectReference` of an object for `involvedObject`.
fn object_ref(kind: Kind, obj: &Value, field_path: Option<&str>) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut r = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.name(),
        "name": meta.get("name").cloned().unwrap_or(Value::Null),
        "resourceVersion": meta.get("resourceVersion").cloned().unwrap_or(Value::Null),
        "uid": meta.get("uid").cloned().unwrap_or(Value::Null),
    });
    if kind.namespaced() {
        set(
            &mut r,
            "namespace",
            meta.get("namespace").cloned().unwrap_or(Value::Null),
        );
    }
    if let Some(fp) = field_path {
        set(&mut r, "fieldPath", json!(fp));
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Worlds

/// Kubernetes version the generated nodes and control-plane images report.
const KUBE_VERSION: &str = "v1.34.1";

/// The objects a simulator starts with, each a complete object with `kind` and `apiVersion`.
/// `metadata.resourceVersion` is assigned when the simulator loads them.
#[derive(Clone, Debug)]
pub struct World {
    /// The objects, in load order.
    pub objects: Vec<Value>,
}

impl Default for World {
    /// [`World::small`].
    fn default() -> Self {
        Self::small()
    }
}

struct WorldBuilder {
    objects: Vec<Value>,
    t0: i64,
    pod_ips: HashMap<usize, u32>,
    seq: u64,
}

impl WorldBuilder {
    fn new(t0: i64) -> Self {
        Self {
            objects: Vec::new(),
            t0,
            pod_ips: HashMap::new(),
            seq: 0,
        }
    }

    fn node(&mut self, name: &str, idx: usize, ip: String, control_plane: bool) -> NodeRef {
        let n = NodeRef {
            name: name.to_owned(),
            ip,
            idx,
            uid: uuid(&format!("node/{name}")),
        };
        self.objects
            .push(node_obj(&n, control_plane, self.t0, KUBE_VERSION));
        n
    }

    fn pod_ip(&mut self, node: &NodeRef) -> String {
        let n = self.pod_ips.entry(node.idx).or_insert(1);
        *n += 1;
        if *n < 255 {
            format!("10.244.{}.{}", node.idx % 256, n)
        } else {
            format!("10.{}.{}.{}", 128 + node.idx % 128, *n / 256, *n % 256)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn pod(
        &mut self,
        ns: &str,
        name: String,
        node: &NodeRef,
        labels: Vec<(String, String)>,
        container: ContainerParams,
        owner: Option<Owner>,
        host_network: bool,
        created: i64,
    ) -> Value {
        let pod_ip = if host_network {
            node.ip.clone()
        } else {
            self.pod_ip(node)
        };
        let p = PodParams {
            ns: ns.to_owned(),
            name,
            node: node.clone(),
            pod_ip,
            labels,
            container,
            owner,
            host_network,
            static_pod: false,
            daemon: false,
            priority_class: None,
            restart_policy: "Always",
            succeeded: false,
            created,
            service_account: "default".to_owned(),
        };
        pod_obj(&p)
    }

    fn event(
        &mut self,
        involved: Value,
        typ: &str,
        reason: &str,
        message: &str,
        reporter: &Reporter,
        t: i64,
    ) {
        self.seq += 1;
        let ns = event_namespace(&involved);
        self.objects.push(event_obj(
            &ns, &involved, typ, reason, message, reporter, t, self.seq,
        ));
    }

    /// The kubelet's Pulled / Created / Started events for a pod that came up at `started`.
    fn startup_events(&mut self, pod: &Value, started: i64) {
        let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) else {
            return;
        };
        let c = pod
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let image = pod
            .pointer("/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let reporter = Reporter {
            component: "kubelet",
            host: Some(node.to_owned()),
        };
        let fp = format!("spec.containers{{{c}}}");
        let r = object_ref(Kind::Pod, pod, Some(&fp));
        self.event(
            r.clone(),
            "Normal",
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
            &reporter,
            started,
        );
        self.event(
            r.clone(),
            "Normal",
            "Created",
            &format!("Created container: {c}"),
            &reporter,
            started,
        );
        self.event(
            r,
            "Normal",
            "Started",
            &format!("Started container {c}"),
            &reporter,
            started,
        );
    }

    fn container(
        name: &str,
        image: &str,
        port: Option<(u16, &str)>,
        config: bool,
    ) -> ContainerParams {
        ContainerParams {
            name: name.to_owned(),
            image: image.to_owned(),
            port: port.map(|(p, n)| (p, n.to_owned())),
            command: Vec::new(),
            config_volume: config,
            sa_volume: None,
        }
    }

    fn deployment(
        &mut self,
        ns: &str,
        name: &str,
        c: &ContainerParams,
        nodes: &[&NodeRef],
        events: bool,
    ) {
        let replicas = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
        let created = self.t0 + 3600;
        self.objects
            .push(deployment_obj(ns, name, replicas, c, created));
        let rs = replicaset_name(ns, name);
        let hash = rs.rsplit('-').next().unwrap_or_default().to_owned();
        let owner = Owner {
            api_version: "apps/v1",
            kind: "ReplicaSet",
            name: rs.clone(),
            uid: uuid(&format!("replicasets/{ns}/{rs}")),
        };
        for (i, node) in nodes.iter().enumerate() {
            let pod_name = format!("{rs}-{}", name_suffix(&format!("{ns}/{rs}/{i}"), 5));
            let mut c = c.clone();
            c.sa_volume = Some(format!("kube-api-access-{}", name_suffix(&pod_name, 5)));
            let pod = self.pod(
                ns,
                pod_name,
                node,
                vec![
                    ("app".to_owned(), name.to_owned()),
                    ("pod-template-hash".to_owned(), hash.clone()),
                ],
                c,
                Some(owner.clone()),
                false,
                created + 2,
            );
            if events {
                self.startup_events(&pod, created + 4);
            }
            self.objects.push(pod);
        }
    }
}

impl World {
    /// No objects at all.
    pub fn empty() -> Self {
        Self {
            objects: Vec::new(),
        }
    }

    /// A small healthy cluster: 3 nodes (`cp-1`, `worker-1`, `worker-2`); namespaces
    /// `default`, `kube-node-lease`, `kube-public`, `kube-system`, `monitoring`, `shop`;
    /// 17 pods (4 static control-plane pods, `coredns` ×2, DaemonSets `kube-proxy` and
    /// `monitoring/node-exporter` ×3 each, `shop/web` ×3, `shop/db-0`, and the pod of the
    /// completed job `shop/backup-29384160`); deployments `kube-system/coredns` and
    /// `shop/web`; statefulset `shop/db`; PVCs `shop/data-db-0` and `shop/uploads` (Bound);
    /// Normal events of the `web` pods and of the job.
    pub fn small() -> Self {
        let t0 = now() - 30 * 86_400;
        let mut b = WorldBuilder::new(t0);
        for ns in [
            "default",
            "kube-node-lease",
            "kube-public",
            "kube-system",
            "monitoring",
            "shop",
        ] {
            b.objects.push(namespace_obj(ns, t0));
        }
        let cp = b.node("cp-1", 0, "10.0.0.10".to_owned(), true);
        let w1 = b.node("worker-1", 1, "10.0.0.11".to_owned(), false);
        let w2 = b.node("worker-2", 2, "10.0.0.12".to_owned(), false);
        let all = [&cp, &w1, &w2];

        // Static control-plane pods (mirror pods owned by the node).
        for (component, image, args) in [
            (
                "etcd",
                "registry.k8s.io/etcd:3.6.4-0".to_owned(),
                vec![
                    "etcd",
                    "--advertise-client-urls=https://10.0.0.10:2379",
                    "--data-dir=/var/lib/etcd",
                ],
            ),
            (
                "kube-apiserver",
                format!("registry.k8s.io/kube-apiserver:{KUBE_VERSION}"),
                vec![
                    "kube-apiserver",
                    "--advertise-address=10.0.0.10",
                    "--secure-port=6443",
                ],
            ),
            (
                "kube-controller-manager",
                format!("registry.k8s.io/kube-controller-manager:{KUBE_VERSION}"),
                vec!["kube-controller-manager", "--leader-elect=true"],
            ),
            (
                "kube-scheduler",
                format!("registry.k8s.io/kube-scheduler:{KUBE_VERSION}"),
                vec!["kube-scheduler", "--leader-elect=true"],
            ),
        ] {
            let mut c = WorldBuilder::container(component, &image, None, false);
            c.command = args.into_iter().map(str::to_owned).collect();
            let p = PodParams {
                ns: "kube-system".to_owned(),
                name: format!("{component}-{}", cp.name),
                node: cp.clone(),
                pod_ip: cp.ip.clone(),
                labels: vec![
                    ("component".to_owned(), component.to_owned()),
                    ("tier".to_owned(), "control-plane".to_owned()),
                ],
                container: c,
                owner: Some(Owner {
                    api_version: "v1",
                    kind: "Node",
                    name: cp.name.clone(),
                    uid: cp.uid.clone(),
                }),
                host_network: true,
                static_pod: true,
                daemon: false,
                priority_class: Some(("system-node-critical", 2_000_001_000)),
                restart_policy: "Always",
                succeeded: false,
                created: t0 + 60,
                service_account: String::new(),
            };
            b.objects.push(pod_obj(&p));
        }

        let coredns = WorldBuilder::container(
            "coredns",
            "registry.k8s.io/coredns/coredns:v1.12.1",
            Some((8080, "http")),
            true,
        );
        b.deployment("kube-system", "coredns", &coredns, &[&w1, &w2], false);
        for o in &mut b.objects {
            if o["kind"] == "Pod" && o.pointer("/metadata/labels/app") == Some(&json!("coredns")) {
                let spec = obj(o, "spec");
                spec.insert(
                    "priorityClassName".to_owned(),
                    json!("system-cluster-critical"),
                );
                spec.insert("priority".to_owned(), json!(2_000_000_000));
                spec.insert("serviceAccount".to_owned(), json!("coredns"));
                spec.insert("serviceAccountName".to_owned(), json!("coredns"));
            }
        }

        for (ns, name, image, port) in [
            (
                "kube-system",
                "kube-proxy",
                format!("registry.k8s.io/kube-proxy:{KUBE_VERSION}"),
                None,
            ),
            (
                "monitoring",
                "node-exporter",
                "quay.io/prometheus/node-exporter:v1.9.1".to_owned(),
                Some((9100, "metrics")),
            ),
        ] {
            let c = WorldBuilder::container(name, &image, port, false);
            let created = t0 + 120;
            b.objects.push(daemonset_obj(ns, name, 3, &c, created));
            let owner = Owner {
                api_version: "apps/v1",
                kind: "DaemonSet",
                name: name.to_owned(),
                uid: workload_uid(Kind::DaemonSet, ns, name),
            };
            let revision = name_suffix(&format!("ds/{ns}/{name}"), 10);
            for node in all {
                let pod_name = format!(
                    "{name}-{}",
                    name_suffix(&format!("{ns}/{name}/{}", node.name), 5)
                );
                let mut c = c.clone();
                c.sa_volume = Some(format!("kube-api-access-{}", name_suffix(&pod_name, 5)));
                let p = PodParams {
                    ns: ns.to_owned(),
                    name: pod_name,
                    node: node.clone(),
                    pod_ip: node.ip.clone(),
                    labels: vec![
                        ("app".to_owned(), name.to_owned()),
                        ("controller-revision-hash".to_owned(), revision.clone()),
                        ("pod-template-generation".to_owned(), "1".to_owned()),
                    ],
                    container: c,
                    owner: Some(owner.clone()),
                    host_network: true,
                    static_pod: false,
                    daemon: true,
                    priority_class: Some(("system-node-critical", 2_000_001_000)),
                    restart_policy: "Always",
                    succeeded: false,
                    created: created + 2,
                    service_account: name.to_owned(),
                };
                b.objects.push(pod_obj(&p));
            }
        }

        let web = WorldBuilder::container("web", "nginx:1.27.5", Some((8080, "http")), true);
        b.deployment("shop", "web", &web, &[&w1, &w2, &w1], true);

        // StatefulSet db with one replica and its claim.
        let db = WorldBuilder::container("db", "postgres:17.5", Some((5432, "postgres")), false);
        let created = t0 + 7200;
        b.objects
            .push(statefulset_obj("shop", "db", 1, &db, "10Gi", created));
        b.objects
            .push(pvc_obj("shop", "data-db-0", "10Gi", "db", created + 1));
        let mut c = db.clone();
        c.sa_volume = Some(format!("kube-api-access-{}", name_suffix("db-0", 5)));
        let revision = format!("db-{}", name_suffix("sts/shop/db", 10));
        let mut pod = b.pod(
            "shop",
            "db-0".to_owned(),
            &w2,
            vec![
                ("app".to_owned(), "db".to_owned()),
                ("apps.kubernetes.io/pod-index".to_owned(), "0".to_owned()),
                ("controller-revision-hash".to_owned(), revision),
                (
                    "statefulset.kubernetes.io/pod-name".to_owned(),
                    "db-0".to_owned(),
                ),
            ],
            c,
            Some(Owner {
                api_version: "apps/v1",
                kind: "StatefulSet",
                name: "db".to_owned(),
                uid: workload_uid(Kind::StatefulSet, "shop", "db"),
            }),
            false,
            created + 2,
        );
        if let Some(Value::Array(vols)) = pod.pointer_mut("/spec/volumes") {
            vols.insert(
                0,
                json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}),
            );
        }
        let data_mount = json!({"mountPath": "/var/lib/postgresql/data", "name": "data"});
        if let Some(Value::Array(m)) = pod.pointer_mut("/spec/containers/0/volumeMounts") {
            m.insert(0, data_mount.clone());
        }
        if let Some(Value::Array(m)) = pod.pointer_mut("/status/containerStatuses/0/volumeMounts") {
            let mut status_mount = data_mount;
            set(&mut status_mount, "recursiveReadOnly", json!("Disabled"));
            m.insert(0, status_mount);
        }
        let spec = obj(&mut pod, "spec");
        spec.insert("hostname".to_owned(), json!("db-0"));
        spec.insert("subdomain".to_owned(), json!("db"));
        b.objects.push(pod);
        b.objects
            .push(pvc_obj("shop", "uploads", "5Gi", "web", t0 + 3600));

        // A completed CronJob run and its pod.
        let job_name = "backup-29384160";
        let created = now() - 3 * 3600;
        let job = job_obj("shop", job_name, "backup", "postgres:17.5", created);
        let job_uid = job
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut c = WorldBuilder::container("backup", "postgres:17.5", None, false);
        c.command = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "pg_dump --format=custom --file=/backup/db.dump".to_owned(),
        ];
        let pod_name = format!("{job_name}-{}", name_suffix(job_name, 5));
        c.sa_volume = Some(format!("kube-api-access-{}", name_suffix(&pod_name, 5)));
        let p = PodParams {
            ns: "shop".to_owned(),
            name: pod_name,
            node: w1.clone(),
            pod_ip: b.pod_ip(&w1),
            labels: vec![
                (
                    "batch.kubernetes.io/controller-uid".to_owned(),
                    job_uid.clone(),
                ),
                (
                    "batch.kubernetes.io/job-name".to_owned(),
                    job_name.to_owned(),
                ),
                ("controller-uid".to_owned(), job_uid.clone()),
                ("job-name".to_owned(), job_name.to_owned()),
            ],
            container: c,
            owner: Some(Owner {
                api_version: "batch/v1",
                kind: "Job",
                name: job_name.to_owned(),
                uid: job_uid,
            }),
            host_network: false,
            static_pod: false,
            daemon: false,
            priority_class: None,
            restart_policy: "OnFailure",
            succeeded: true,
            created: created + 1,
            service_account: "default".to_owned(),
        };
        let pod = pod_obj(&p);
        let reporter = Reporter {
            component: "job-controller",
            host: None,
        };
        b.event(
            object_ref(Kind::Job, &job, None),
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod: {}", p.name),
            &reporter,
            created + 1,
        );
        b.event(
            object_ref(Kind::Job, &job, None),
            "Normal",
            "Completed",
            "Job completed",
            &reporter,
            created + 45,
        );
        b.objects.push(job);
        b.objects.push(pod);
        Self { objects: b.objects }
    }

    /// A large cluster for benchmarks: `nodes` nodes (`node-0001`, …; the first one is the
    /// control plane), one namespace per 500 pods (`team-001`, …) plus `kube-system`, and
    /// exactly `pods` pods (3–5 KB of JSON each) in Deployments of 5 replicas
    /// (`svc-00001`, …) spread round-robin over the nodes; one Bound PVC per 10 deployments,
    /// one completed Job per namespace and one Normal event per 20 pods.
    pub fn synthetic(nodes: usize, pods: usize) -> Self {
        let t0 = now() - 30 * 86_400;
        let mut b = WorldBuilder::new(t0);
        let nodes = nodes.max(1);
        let node_refs: Vec<NodeRef> = (0..nodes)
            .map(|i| {
                b.node(
                    &format!("node-{:04}", i + 1),
                    i,
                    format!("10.1.{}.{}", i / 250, i % 250 + 1),
                    i == 0,
                )
            })
            .collect();
        let n_ns = pods.div_ceil(500).max(1);
        let namespaces: Vec<String> = (1..=n_ns).map(|i| format!("team-{i:03}")).collect();
        b.objects.push(namespace_obj("default", t0));
        b.objects.push(namespace_obj("kube-system", t0));
        for ns in &namespaces {
            b.objects.push(namespace_obj(ns, t0 + 600));
        }
        let reporter_for = |node: &str| Reporter {
            component: "kubelet",
            host: Some(node.to_owned()),
        };
        let deployments = pods.div_ceil(5);
        let mut pod_no = 0usize;
        for j in 0..deployments {
            let ns = &namespaces[j % n_ns];
            let name = format!("svc-{:05}", j + 1);
            let replicas = (pods - pod_no).min(5);
            let c = WorldBuilder::container(
                &name,
                &format!("registry.example.com/{ns}/{name}:1.{}.{}", j % 7, j % 13),
                Some((8080, "http")),
                true,
            );
            let created = t0 + 3600 + i64::try_from(j).unwrap_or(0);
            b.objects.push(deployment_obj(
                ns,
                &name,
                u32::try_from(replicas).unwrap_or(5),
                &c,
                created,
            ));
            let rs = replicaset_name(ns, &name);
            let hash = rs.rsplit('-').next().unwrap_or_default().to_owned();
            let owner = Owner {
                api_version: "apps/v1",
                kind: "ReplicaSet",
                name: rs.clone(),
                uid: uuid(&format!("replicasets/{ns}/{rs}")),
            };
            for r in 0..replicas {
                let node = &node_refs[pod_no % nodes];
                let pod_name = format!("{rs}-{}", name_suffix(&format!("{ns}/{rs}/{r}"), 5));
                let mut c = c.clone();
                c.sa_volume = Some(format!("kube-api-access-{}", name_suffix(&pod_name, 5)));
                let pod = b.pod(
                    ns,
                    pod_name,
                    node,
                    vec![
                        ("app".to_owned(), name.clone()),
                        ("app.kubernetes.io/name".to_owned(), name.clone()),
                        ("app.kubernetes.io/part-of".to_owned(), ns.clone()),
                        ("pod-template-hash".to_owned(), hash.clone()),
                    ],
                    c,
                    Some(owner.clone()),
                    false,
                    created + 2,
                );
                if pod_no.is_multiple_of(20) {
                    let cname = name.clone();
                    b.event(
                        object_ref(
                            Kind::Pod,
                            &pod,
                            Some(&format!("spec.containers{{{cname}}}")),
                        ),
                        "Normal",
                        "Started",
                        &format!("Started container {cname}"),
                        &reporter_for(&node.name),
                        created + 5,
                    );
                }
                b.objects.push(pod);
                pod_no += 1;
            }
            if j % 10 == 0 {
                b.objects
                    .push(pvc_obj(ns, &format!("data-{name}"), "20Gi", &name, created));
            }
        }
        for (i, ns) in namespaces.iter().enumerate() {
            let created = now() - 3600 - i64::try_from(i).unwrap_or(0);
            b.objects.push(job_obj(
                ns,
                &format!("report-{}", 29_384_100 + i),
                "report",
                "busybox:1.37",
                created,
            ));
        }
        Self { objects: b.objects }
    }

    /// Adds an object (with `kind` and `apiVersion`).
    pub fn push(&mut self, object: Value) {
        self.objects.push(object);
    }

    /// Number of objects of a kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.objects
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind.name()))
            .count()
    }
}

/// A standalone pod (no owner) named `name` in `ns`, running one `busybox` container on
/// `node`, shaped like the default world's pods. Add it with [`K8sSimHandle::apply`].
pub fn standalone_pod(ns: &str, name: &str, node: &str) -> Value {
    let created = now();
    let idx = usize::from(name_suffix(node, 1).as_bytes()[0] % 200);
    let node_ref = NodeRef {
        name: node.to_owned(),
        ip: format!("10.0.0.{}", 11 + idx % 200),
        idx,
        uid: uuid(&format!("node/{node}")),
    };
    let mut c = WorldBuilder::container(name, "busybox:1.37", None, false);
    c.command = vec!["sleep".to_owned(), "infinity".to_owned()];
    c.sa_volume = Some(format!("kube-api-access-{}", name_suffix(name, 5)));
    let ip_seed = name_suffix(&format!("{ns}/{name}"), 2);
    let p = PodParams {
        ns: ns.to_owned(),
        name: name.to_owned(),
        node: node_ref,
        pod_ip: format!(
            "10.244.{}.{}",
            idx % 256,
            10 + u32::from(ip_seed.as_bytes()[0]) % 240
        ),
        labels: vec![("run".to_owned(), name.to_owned())],
        container: c,
        owner: None,
        host_network: false,
        static_pod: false,
        daemon: false,
        priority_class: None,
        restart_policy: "Always",
        succeeded: false,
        created,
        service_account: "default".to_owned(),
    };
    pod_obj(&p)
}

// ---------------------------------------------------------------------------------------------
// Storage and change history

/// One stored object: its JSON without `kind`/`apiVersion` (the list-item form), plus what
/// selectors look at.
#[derive(Debug)]
struct Stored {
    name: String,
    namespace: String,
    uid: String,
    created: String,
    json: String,
    labels: Vec<(String, String)>,
    fields: Vec<(&'static str, String)>,
}

impl Stored {
    /// `v` has no `kind`/`apiVersion` and a complete `metadata`.
    fn new(kind: Kind, v: &Value) -> Self {
        let meta_str = |k: &str| {
            v.pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let labels = v
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let fields = ["metadata.name", "metadata.namespace"]
            .into_iter()
            .chain(kind.field_labels().iter().copied())
            .map(|l| (l, field_value(v, l)))
            .collect();
        Self {
            name: meta_str("name"),
            namespace: meta_str("namespace"),
            uid: meta_str("uid"),
            created: meta_str("creationTimestamp"),
            json: v.to_string(),
            labels,
            fields,
        }
    }

    fn field(&self, label: &str) -> &str {
        self.fields
            .iter()
            .find(|(l, _)| *l == label)
            .map_or("", |(_, v)| v.as_str())
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    /// The object with `kind` and `apiVersion`, as a string.
    fn typed_json(&self, kind: Kind) -> String {
        typed_json(kind, &self.json)
    }
}

/// Prefixes a list-item JSON object with `kind` and `apiVersion`. Stored objects always have
/// `metadata`, so `item` is never `{}`.
fn typed_json(kind: Kind, item: &str) -> String {
    let mut out = String::with_capacity(item.len() + 48);
    out.push_str("{\"kind\":\"");
    out.push_str(kind.name());
    out.push_str("\",\"apiVersion\":\"");
    out.push_str(kind.api_version());
    out.push_str("\",");
    out.push_str(item.get(1..).unwrap_or("}"));
    out
}

fn object_key(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One entry of a resource's change history. `obj` is the new state (for deletions: the last
/// state with the deletion's resourceVersion), `prev` the state before.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    typ: ChangeType,
    obj: Arc<Stored>,
    prev: Option<Arc<Stored>>,
}

#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<String, Arc<Stored>>,
    history: VecDeque<Change>,
    /// Highest resourceVersion whose change is no longer in `history`; watches must start at
    /// or after it.
    compacted_rv: u64,
}

struct State {
    rv: u64,
    stores: Vec<Store>,
    faults: Vec<Fault>,
    token: String,
    user: String,
    history_limit: usize,
    bookmark_interval: Duration,
    emit_events: bool,
    git_version: String,
    addr: String,
    watch_generation: u64,
    force_gone: Vec<Option<Kind>>,
    counts: [Counts; KINDS],
    requests: u64,
    log: VecDeque<LoggedRequest>,
    event_seq: u64,
}

impl State {
    fn new(opts: &K8sSimOptions) -> Self {
        Self {
            rv: 1000,
            stores: (0..KINDS).map(|_| Store::default()).collect(),
            faults: Vec::new(),
            token: opts.token.clone(),
            user: opts.user.clone(),
            history_limit: opts.history,
            bookmark_interval: opts.bookmark_interval,
            emit_events: opts.emit_events,
            git_version: opts.git_version.clone(),
            addr: String::new(),
            watch_generation: 0,
            force_gone: Vec::new(),
            counts: [Counts::default(); KINDS],
            requests: 0,
            log: VecDeque::new(),
            event_seq: 0,
        }
    }

    fn store(&self, kind: Kind) -> &Store {
        &self.stores[kind.idx()]
    }

    fn store_mut(&mut self, kind: Kind) -> &mut Store {
        &mut self.stores[kind.idx()]
    }

    fn record(&mut self, kind: Kind, change: Change) {
        let limit = self.history_limit;
        let store = self.store_mut(kind);
        store.history.push_back(change);
        while store.history.len() > limit {
            if let Some(old) = store.history.pop_front() {
                store.compacted_rv = store.compacted_rv.max(old.rv);
            }
        }
    }

    /// Creates or replaces an object; `record` = add a watch event.
    fn put(&mut self, kind: Kind, mut v: Value, record: bool) -> anyhow::Result<u64> {
        let Some(m) = v.as_object_mut() else {
            bail!("a {} must be a JSON object", kind.name());
        };
        m.remove("kind");
        m.remove("apiVersion");
        let meta = obj(&mut v, "metadata");
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .with_context(|| format!("a {} needs metadata.name", kind.name()))?
            .to_owned();
        let ns = if kind.namespaced() {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or("default")
                .to_owned();
            meta.insert("namespace".to_owned(), json!(ns));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        let key = object_key(&ns, &name);
        let prev = self.store(kind).objects.get(&key).cloned();
        self.rv += 1;
        let rv = self.rv;
        meta.insert("resourceVersion".to_owned(), json!(rv.to_string()));
        meta.entry("uid").or_insert_with(|| match &prev {
            Some(p) => json!(p.uid),
            None => json!(uuid(&format!("{}/{key}/{rv}", kind.plural()))),
        });
        meta.entry("creationTimestamp")
            .or_insert_with(|| match &prev {
                Some(p) => json!(p.created),
                None => json!(ts(now())),
            });
        let stored = Arc::new(Stored::new(kind, &v));
        self.store_mut(kind).objects.insert(key, stored.clone());
        if record {
            let typ = if prev.is_some() {
                ChangeType::Modified
            } else {
                ChangeType::Added
            };
            self.record(
                kind,
                Change {
                    rv,
                    typ,
                    obj: stored,
                    prev,
                },
            );
        }
        Ok(rv)
    }

    fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Arc<Stored>> {
        let ns = if kind.namespaced() { ns } else { "" };
        self.store(kind).objects.get(&object_key(ns, name)).cloned()
    }

    /// Applies `f` to a copy of the object and stores it; returns the new resourceVersion.
    fn modify(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<u64> {
        let cur = self.get(kind, ns, name)?;
        let mut v = cur.value();
        f(&mut v);
        // Identity cannot change through a modification.
        let meta = obj(&mut v, "metadata");
        meta.insert("name".to_owned(), json!(cur.name));
        if kind.namespaced() {
            meta.insert("namespace".to_owned(), json!(cur.namespace));
        }
        self.put(kind, v, true).ok()
    }

    fn remove(&mut self, kind: Kind, ns: &str, name: &str) -> Option<u64> {
        let ns = if kind.namespaced() { ns } else { "" };
        let prev = self.store_mut(kind).objects.remove(&object_key(ns, name))?;
        self.rv += 1;
        let rv = self.rv;
        let mut v = prev.value();
        let meta = obj(&mut v, "metadata");
        meta.insert("resourceVersion".to_owned(), json!(rv.to_string()));
        if kind == Kind::Pod {
            meta.insert("deletionTimestamp".to_owned(), json!(ts(now())));
            meta.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
        }
        let obj = Arc::new(Stored::new(kind, &v));
        self.record(
            kind,
            Change {
                rv,
                typ: ChangeType::Deleted,
                obj,
                prev: Some(prev),
            },
        );
        Some(rv)
    }

    /// Records a core/v1 event about `involved` (an ObjectReference), or bumps `count` and
    /// `lastTimestamp` of the same event (same object, type, reason, message) like the
    /// client-go event recorder does. Returns the event's name.
    fn event(
        &mut self,
        ns: &str,
        involved: &Value,
        typ: &str,
        reason: &str,
        message: &str,
        reporter: &Reporter,
    ) -> String {
        let ikind = involved.get("kind").and_then(Value::as_str).unwrap_or("");
        let iname = involved.get("name").and_then(Value::as_str).unwrap_or("");
        let prefix = format!("{ns}/");
        let existing = self
            .store(Kind::Event)
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, o)| o)
            .find(|o| {
                o.field("involvedObject.kind") == ikind
                    && o.field("involvedObject.name") == iname
                    && o.field("reason") == reason
                    && o.field("type") == typ
                    && o.value().get("message").and_then(Value::as_str) == Some(message)
            })
            .map(|o| o.name.clone());
        let t = now();
        if let Some(name) = existing {
            let bumped = self.modify(Kind::Event, ns, &name, |e| {
                let count = e.get("count").and_then(Value::as_u64).unwrap_or(1);
                set(e, "count", json!(count + 1));
                set(e, "lastTimestamp", json!(ts(t)));
            });
            if bumped.is_some() {
                return name;
            }
        }
        self.event_seq += 1;
        let e = event_obj(
            ns,
            involved,
            typ,
            reason,
            message,
            reporter,
            t,
            self.event_seq,
        );
        let name = e
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let _ = self.put(Kind::Event, e, true);
        name
    }

    /// The reference of a stored object for `involvedObject`.
    fn object_ref(&self, kind: Kind, ns: &str, name: &str, field_path: Option<&str>) -> Value {
        match self.get(kind, ns, name) {
            Some(o) => object_ref(kind, &o.value(), field_path),
            None => {
                let mut r =
                    json!({"apiVersion": kind.api_version(), "kind": kind.name(), "name": name});
                if kind.namespaced() {
                    set(&mut r, "namespace", json!(ns));
                }
                r
            }
        }
    }

    fn delay_for(&self, kind: Option<Kind>) -> Duration {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::Slow { delay, resource } if Fault::applies_to(resource.as_ref(), kind) => {
                    Some(*delay)
                }
                _ => None,
            })
            .sum()
    }

    fn malformed_for(&self, kind: Option<Kind>) -> bool {
        self.faults.iter().any(|f| {
            matches!(f, Fault::MalformedJson { resource } if Fault::applies_to(resource.as_ref(), kind))
        })
    }

    fn server_error_for(&self, kind: Option<Kind>) -> Option<u16> {
        self.faults.iter().find_map(|f| match f {
            Fault::ServerError { code, resource } if Fault::applies_to(resource.as_ref(), kind) => {
                Some(*code)
            }
            _ => None,
        })
    }

    fn forbidden(&self, kind: Kind, ns: Option<&str>) -> bool {
        self.faults.iter().any(|f| match f {
            Fault::Forbidden {
                resource,
                allowed_namespaces,
            } => {
                resource == kind.plural()
                    && !ns.is_some_and(|ns| allowed_namespaces.iter().any(|a| a == ns))
            }
            _ => false,
        })
    }

    fn abort_watches_after(&self) -> Option<Duration> {
        self.faults.iter().find_map(|f| match f {
            Fault::AbortWatchesAfter(d) => Some(*d),
            _ => None,
        })
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the lock and wakes the watch streams.
    fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_all();
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Handle

/// Cloneable control handle of a running simulator.
#[derive(Clone)]
pub struct K8sSimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
}

/// A running simulator; stops when dropped (open watch streams end within about a second).
/// Derefs to its [`K8sSimHandle`].
pub type K8sSim = Sim<K8sSimHandle>;

impl Sim<K8sSimHandle> {
    /// Starts the simulator on `127.0.0.1:<port>` with a fresh CA and certificate.
    ///
    /// # Panics
    /// If the certificate or the listener cannot be created, or an object of the world has
    /// no `kind` the simulator serves or no `metadata.name`.
    pub fn start(opts: K8sSimOptions) -> Self {
        Self::try_start(opts).unwrap_or_else(|e| panic!("start Kubernetes API simulator: {e:#}"))
    }

    /// Like [`Self::start`], returning errors.
    ///
    /// # Errors
    /// If the certificate or the listener cannot be created, or the world is invalid.
    pub fn try_start(opts: K8sSimOptions) -> anyhow::Result<Self> {
        let identity = TlsIdentity::generate("kubernetes", "kube-apiserver")?;
        let mut state = State::new(&opts);
        for o in opts.world.objects {
            let kind = o
                .get("kind")
                .and_then(Value::as_str)
                .and_then(Kind::from_name)
                .with_context(|| {
                    format!(
                        "world object without a served kind: {}",
                        o.get("kind").unwrap_or(&Value::Null)
                    )
                })?;
            state.put(kind, o, false)?;
        }
        let rv = state.rv;
        for s in &mut state.stores {
            s.compacted_rv = rv;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
        });
        let s2 = shared.clone();
        let server = HttpsServer::start_streaming_on(
            SocketAddr::from(([127, 0, 0, 1], opts.port)),
            &identity,
            Arc::new(move |req| handle(&s2, req)),
        )?;
        shared.lock().addr = server.addr().to_string();
        let handle = K8sSimHandle {
            shared,
            addr: server.addr(),
            ca_pem: identity.ca_pem().to_owned(),
            ca_der: identity.ca_der().clone(),
        };
        Ok(Self::new(handle, identity, server))
    }
}

/// Go's `time.Duration` formatting for whole seconds (`10s`, `2m40s`, `5m0s`).
fn go_duration(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// The kubelet's crash-loop back-off after `restarts` restarts: 10 s doubling, capped at 5 m.
fn crash_backoff(restarts: u64) -> u64 {
    let exp = u32::try_from(restarts.saturating_sub(1).min(10)).unwrap_or(10);
    (10u64 << exp).min(300)
}

/// Sets the pod's `Ready` and `ContainersReady` conditions.
fn set_pod_ready_conditions(pod: &mut Value, ready: bool, container: &str, t: i64) {
    if let Some(Value::Array(conds)) = pod.pointer_mut("/status/conditions") {
        for c in conds.iter_mut() {
            let typ = c.get("type").and_then(Value::as_str).unwrap_or_default();
            if typ != "Ready" && typ != "ContainersReady" {
                continue;
            }
            let want = if ready { "True" } else { "False" };
            if c.get("status").and_then(Value::as_str) != Some(want) {
                set(c, "lastTransitionTime", json!(ts(t)));
            }
            set(c, "status", json!(want));
            if ready {
                remove(c, "reason");
                remove(c, "message");
            } else {
                set(c, "reason", json!("ContainersNotReady"));
                set(
                    c,
                    "message",
                    json!(format!("containers with unready status: [{container}]")),
                );
            }
        }
    }
}

/// Reason and message of a deployment's `Available` condition, from the real captures.
fn available_condition(available: bool) -> (String, String) {
    let fix = fixture(if available {
        FIX_DEPLOYMENT
    } else {
        FIX_DEPLOYMENT_UNAVAILABLE
    });
    let cond = fix
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
        .cloned()
        .unwrap_or(Value::Null);
    let text = |k: &str| {
        cond.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (text("reason"), text("message"))
}

/// Sets (or adds) a condition of `v.status.conditions`; returns whether the status changed.
fn set_condition(
    v: &mut Value,
    typ: &str,
    status: &str,
    reason: &str,
    message: &str,
    t: i64,
    node: bool,
) -> bool {
    let status_obj = obj(v, "status");
    let conds = status_obj
        .entry("conditions".to_owned())
        .or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let Value::Array(list) = conds else {
        unreachable!("made an array above")
    };
    let idx = list
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some(typ));
    let idx = idx.unwrap_or_else(|| {
        list.push(json!({"type": typ}));
        list.len() - 1
    });
    let c = &mut list[idx];
    let changed = c.get("status").and_then(Value::as_str) != Some(status);
    if changed || c.get("lastTransitionTime").is_none() {
        set(c, "lastTransitionTime", json!(ts(t)));
    }
    if node {
        set(c, "lastHeartbeatTime", json!(ts(t)));
    } else {
        set(c, "lastUpdateTime", json!(ts(t)));
    }
    set(c, "status", json!(status));
    set(c, "reason", json!(reason));
    set(c, "message", json!(message));
    changed
}

/// Adds or removes a node taint.
fn set_taint(node: &mut Value, key: &str, effect: &str, on: bool, t: i64) {
    let spec = obj(node, "spec");
    let mut taints: Vec<Value> = spec
        .get("taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.retain(|x| !(x["key"] == key && x["effect"] == effect));
    if on {
        let mut taint = json!({"effect": effect, "key": key});
        if effect == "NoExecute" {
            set(&mut taint, "timeAdded", json!(ts(t)));
        }
        taints.push(taint);
    }
    if taints.is_empty() {
        spec.remove("taints");
    } else {
        spec.insert("taints".to_owned(), Value::Array(taints));
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl K8sSimHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    // --- connection ---------------------------------------------------------------------

    /// `https://127.0.0.1:PORT` (the cluster `server` URL).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The listening address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the cluster CA.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// DER of the cluster CA.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The accepted bearer token.
    pub fn token(&self) -> String {
        self.lock().token.clone()
    }

    /// Changes the accepted bearer token (old tokens get 401 from now on).
    pub fn set_token(&self, token: &str) {
        token.clone_into(&mut self.lock().token);
    }

    /// The user the token authenticates as.
    pub fn user(&self) -> String {
        self.lock().user.clone()
    }

    /// A kubeconfig for this simulator with the accepted token: one cluster `warden-sim`
    /// (`server: https://127.0.0.1:PORT`, `certificate-authority-data` = base64 of the CA
    /// PEM), user `warden-agent` with `token`, context `warden-sim` (namespace `default`),
    /// which is the current context.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_with_token(&self.token())
    }

    /// [`Self::kubeconfig_yaml`] with another token.
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        let ca = base64(self.ca_pem.as_bytes(), false);
        // A JSON string is a valid YAML double-quoted scalar.
        let token = Value::String(token.to_owned()).to_string();
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - cluster:\n    certificate-authority-data: {ca}\n    server: {url}\n  name: warden-sim\n\
             contexts:\n\
             - context:\n    cluster: warden-sim\n    namespace: default\n    user: warden-agent\n  name: warden-sim\n\
             current-context: warden-sim\n\
             preferences: {{}}\n\
             users:\n\
             - name: warden-agent\n  user:\n    token: {token}\n",
            url = self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path` with mode 0600 (it holds a credential).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(self.kubeconfig_yaml().as_bytes())
    }

    /// `GET path` with the accepted token.
    ///
    /// # Panics
    /// On transport errors.
    pub fn get(&self, path: &str) -> RawResponse {
        let auth = format!("Bearer {}", self.token());
        self.get_as(path, Some(&auth))
    }

    /// `GET path` with this `Authorization` header value (or none).
    ///
    /// # Panics
    /// On transport errors.
    pub fn get_as(&self, path: &str, authorization: Option<&str>) -> RawResponse {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        https_get(self.addr, &self.ca_der, path, &headers)
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    /// Opens `GET path` (typically `…?watch=true&…`) with the accepted token and returns as
    /// soon as the head arrived; read events with [`HttpStream::next_line`].
    ///
    /// # Panics
    /// On transport errors.
    pub fn open_stream(&self, path: &str) -> HttpStream {
        let auth = format!("Bearer {}", self.token());
        https_stream(self.addr, &self.ca_der, path, &[("Authorization", &auth)])
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    // --- faults -------------------------------------------------------------------------

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

    /// Resets every open watch stream right now (TCP RST, no last chunk); returns how many
    /// were open.
    pub fn drop_watches(&self) -> u64 {
        self.shared.mutate(|st| {
            st.watch_generation += 1;
            st.counts.iter().map(|c| c.open_watches).sum()
        })
    }

    /// The next watch request for `resource` (or for any resource) gets the `410 Expired`
    /// `ERROR` event, whatever its resourceVersion. Calls add up.
    pub fn force_gone_next_watch(&self, resource: Option<&str>) {
        let kind = resource.and_then(|r| Kind::from_plural(&Kind::resource_or_plural(r)));
        self.lock().force_gone.push(kind);
    }

    /// Forgets every resource's change history (like an etcd compaction): watches from any
    /// resourceVersion before now get 410, including open ones that have not caught up.
    pub fn compact(&self) {
        self.shared.mutate(|st| {
            let rv = st.rv;
            for s in &mut st.stores {
                s.history.clear();
                s.compacted_rv = rv;
            }
        });
    }

    /// Changes how many changes each resource retains.
    pub fn set_history_limit(&self, n: usize) {
        self.lock().history_limit = n;
    }

    /// Changes the interval of `BOOKMARK` events (for streams opened from now on).
    pub fn set_bookmark_interval(&self, d: Duration) {
        self.lock().bookmark_interval = d;
    }

    /// Whether convenience mutations record the events a real cluster would.
    pub fn set_emit_events(&self, on: bool) {
        self.lock().emit_events = on;
    }

    // --- counters -----------------------------------------------------------------------

    /// Request counters of a resource (`pods`, `Pod` or `pod`).
    pub fn counts(&self, resource: &str) -> Counts {
        Kind::from_plural(&Kind::resource_or_plural(resource))
            .map(|k| self.lock().counts[k.idx()])
            .unwrap_or_default()
    }

    /// Full lists started (requests without `continue`) of a resource.
    pub fn list_count(&self, resource: &str) -> u64 {
        self.counts(resource).lists
    }

    /// All list requests of a resource, continuation pages included.
    pub fn list_page_count(&self, resource: &str) -> u64 {
        self.counts(resource).list_pages
    }

    /// Watch requests of a resource.
    pub fn watch_count(&self, resource: &str) -> u64 {
        self.counts(resource).watches
    }

    /// Single-object GETs of a resource.
    pub fn get_count(&self, resource: &str) -> u64 {
        self.counts(resource).gets
    }

    /// Watch streams of a resource open right now.
    pub fn open_watches(&self, resource: &str) -> u64 {
        self.counts(resource).open_watches
    }

    /// Waits (without polling) until at least `n` watch streams of `resource` are open;
    /// false on timeout.
    pub fn wait_for_watches(&self, resource: &str, n: u64, timeout: Duration) -> bool {
        let Some(kind) = Kind::from_plural(&Kind::resource_or_plural(resource)) else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.counts[kind.idx()].open_watches >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
    }

    /// Requests answered so far (all paths, rejected ones included).
    pub fn request_count(&self) -> u64 {
        self.lock().requests
    }

    /// The last (up to 10,000) requests.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.iter().cloned().collect()
    }

    /// Requests whose path is exactly `path` (query not included).
    pub fn path_count(&self, path: &str) -> usize {
        self.lock().log.iter().filter(|r| r.path == path).count()
    }

    /// Zeroes the counters (not `open_watches`) and clears the request log.
    pub fn reset_counts(&self) {
        let mut st = self.lock();
        for c in &mut st.counts {
            *c = Counts {
                open_watches: c.open_watches,
                ..Counts::default()
            };
        }
        st.requests = 0;
        st.log.clear();
    }

    // --- world --------------------------------------------------------------------------

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object with `kind`/`apiVersion` (`ns` is ignored for cluster-scoped kinds).
    pub fn object(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.lock().get(kind, ns, name).map(|o| {
            let mut v = o.value();
            if let Some(m) = v.as_object_mut() {
                m.insert("kind".to_owned(), json!(kind.name()));
                m.insert("apiVersion".to_owned(), json!(kind.api_version()));
            }
            v
        })
    }

    /// All objects of a kind (list-item form, without `kind`/`apiVersion`), in list order.
    pub fn objects(&self, kind: Kind) -> Vec<Value> {
        let objs: Vec<Arc<Stored>> = self.lock().store(kind).objects.values().cloned().collect();
        objs.iter().map(|o| o.value()).collect()
    }

    /// Number of objects of a kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.lock().store(kind).objects.len()
    }

    /// Names (`ns/name`, or `name` for cluster-scoped kinds) of all objects of a kind.
    pub fn keys(&self, kind: Kind) -> Vec<String> {
        self.lock().store(kind).objects.keys().cloned().collect()
    }

    /// Creates or replaces an object (with `kind` and `metadata.name`; namespaced objects
    /// default to `default`); watchers get ADDED or MODIFIED. Returns the new
    /// resourceVersion.
    ///
    /// # Errors
    /// If the object has no served kind or no name.
    pub fn apply(&self, object: Value) -> anyhow::Result<u64> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .and_then(Kind::from_name)
            .context("object needs a `kind` the simulator serves")?;
        self.shared.mutate(|st| st.put(kind, object, true))
    }

    /// Changes an object in place; watchers get MODIFIED. Returns the new resourceVersion,
    /// or `None` if it does not exist.
    pub fn modify(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<u64> {
        self.shared.mutate(|st| st.modify(kind, ns, name, f))
    }

    /// Deletes an object; watchers get DELETED. Returns the deletion's resourceVersion, or
    /// `None` if it did not exist.
    pub fn delete(&self, kind: Kind, ns: &str, name: &str) -> Option<u64> {
        self.shared.mutate(|st| st.remove(kind, ns, name))
    }

    /// Adds a running standalone pod (see [`standalone_pod`]); returns its resourceVersion.
    pub fn add_pod(&self, ns: &str, name: &str, node: &str) -> u64 {
        self.shared.mutate(|st| {
            st.put(Kind::Pod, standalone_pod(ns, name, node), true)
                .unwrap_or(0)
        })
    }

    // --- convenience mutations ----------------------------------------------------------

    fn kubelet_event(
        st: &mut State,
        ns: &str,
        pod: &str,
        container: Option<&str>,
        typ: &str,
        reason: &str,
        message: &str,
    ) {
        if !st.emit_events {
            return;
        }
        let fp = container.map(|c| format!("spec.containers{{{c}}}"));
        let r = st.object_ref(Kind::Pod, ns, pod, fp.as_deref());
        let host = st
            .get(Kind::Pod, ns, pod)
            .map(|o| str_at(&o.value(), "/spec/nodeName").to_owned());
        st.event(
            ns,
            &r,
            typ,
            reason,
            message,
            &Reporter {
                component: "kubelet",
                host,
            },
        );
    }

    /// Puts the pod's first container into `CrashLoopBackOff` after a crash with reason
    /// `Error` and exit code 1 (see [`Self::crashloop_pod_with`]).
    pub fn crashloop_pod(&self, ns: &str, name: &str) -> bool {
        self.crashloop_pod_with(ns, name, "Error", 1)
    }

    /// Puts the pod's first container into `CrashLoopBackOff`: `restartCount` + 1,
    /// `lastState.terminated` with `reason`/`exit_code` (e.g. `OOMKilled`/137 for an OOM
    /// loop), `state.waiting` with the kubelet's back-off message, not ready; records a
    /// Warning `BackOff` event. Call it again for another crash. False if there is no pod.
    pub fn crashloop_pod_with(&self, ns: &str, name: &str, reason: &str, exit_code: i32) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            let mut container = String::new();
            let mut uid = String::new();
            let rv = st.modify(Kind::Pod, ns, name, |p| {
                uid = str_at(p, "/metadata/uid").to_owned();
                let Some(Value::Array(statuses)) = p.pointer_mut("/status/containerStatuses")
                else {
                    return;
                };
                let Some(cs) = statuses.first_mut() else {
                    return;
                };
                container = str_at(cs, "/name").to_owned();
                let restarts = cs.get("restartCount").and_then(Value::as_u64).unwrap_or(0) + 1;
                let old_id = cs
                    .get("containerID")
                    .cloned()
                    .unwrap_or_else(|| json!(format!("containerd://{}", hex_of(&uid, 64))));
                set(cs, "restartCount", json!(restarts));
                set(
                    cs,
                    "lastState",
                    json!({"terminated": {
                        "containerID": old_id,
                        "exitCode": exit_code,
                        "finishedAt": ts(t),
                        "reason": reason,
                        "startedAt": ts(t - 2)
                    }}),
                );
                set(
                    cs,
                    "state",
                    json!({"waiting": {
                        "message": format!(
                            "back-off {} restarting failed container={container} pod={name}_{ns}({uid})",
                            go_duration(crash_backoff(restarts))
                        ),
                        "reason": "CrashLoopBackOff"
                    }}),
                );
                set(
                    cs,
                    "containerID",
                    json!(format!("containerd://{}", hex_of(&format!("{uid}/{restarts}"), 64))),
                );
                set(cs, "ready", json!(false));
                set(cs, "started", json!(false));
                set_pod_ready_conditions(p, false, &container, t);
            });
            if rv.is_none() {
                return false;
            }
            let msg = format!("Back-off restarting failed container {container} in pod {name}_{ns}({uid})");
            Self::kubelet_event(st, ns, name, Some(&container), "Warning", "BackOff", &msg);
            true
        })
    }

    /// The pod's first container was OOM-killed and restarted: `restartCount` + 1,
    /// `lastState.terminated` reason `OOMKilled` exit code 137, running again (ready). For an
    /// OOM crash loop use `crashloop_pod_with(ns, pod, "OOMKilled", 137)`. False if there
    /// is no pod.
    pub fn oom_kill(&self, ns: &str, pod: &str) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            st.modify(Kind::Pod, ns, pod, |p| {
                let uid = str_at(p, "/metadata/uid").to_owned();
                let Some(Value::Array(statuses)) = p.pointer_mut("/status/containerStatuses")
                else {
                    return;
                };
                let Some(cs) = statuses.first_mut() else {
                    return;
                };
                let restarts = cs.get("restartCount").and_then(Value::as_u64).unwrap_or(0) + 1;
                let started = cs
                    .pointer("/state/running/startedAt")
                    .cloned()
                    .unwrap_or_else(|| json!(ts(t - 60)));
                let old_id = cs.get("containerID").cloned().unwrap_or(Value::Null);
                set(
                    cs,
                    "lastState",
                    json!({"terminated": {
                        "containerID": old_id,
                        "exitCode": 137,
                        "finishedAt": ts(t),
                        "reason": "OOMKilled",
                        "startedAt": started
                    }}),
                );
                set(cs, "restartCount", json!(restarts));
                set(cs, "state", json!({"running": {"startedAt": ts(t + 1)}}));
                set(
                    cs,
                    "containerID",
                    json!(format!(
                        "containerd://{}",
                        hex_of(&format!("{uid}/{restarts}"), 64)
                    )),
                );
                set(cs, "ready", json!(true));
                set(cs, "started", json!(true));
            })
            .is_some()
        })
    }

    /// The pod cannot pull its image: phase `Pending`, first container waiting with reason
    /// `ImagePullBackOff`, not ready; records the kubelet's Warning `Failed` and Normal
    /// `BackOff` events. False if there is no pod.
    pub fn image_pull_backoff(&self, ns: &str, pod: &str) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            let mut container = String::new();
            let mut image = String::new();
            let rv = st.modify(Kind::Pod, ns, pod, |p| {
                image = str_at(p, "/spec/containers/0/image").to_owned();
                if let Some(s) = p.get_mut("status") {
                    set(s, "phase", json!("Pending"));
                }
                let Some(Value::Array(statuses)) = p.pointer_mut("/status/containerStatuses")
                else {
                    return;
                };
                let Some(cs) = statuses.first_mut() else {
                    return;
                };
                container = str_at(cs, "/name").to_owned();
                remove(cs, "containerID");
                set(cs, "image", json!(image));
                set(cs, "imageID", json!(""));
                set(cs, "lastState", json!({}));
                set(cs, "ready", json!(false));
                set(cs, "started", json!(false));
                set(
                    cs,
                    "state",
                    json!({"waiting": {"message": format!("Back-off pulling image \"{image}\""), "reason": "ImagePullBackOff"}}),
                );
                set_pod_ready_conditions(p, false, &container, t);
            });
            if rv.is_none() {
                return false;
            }
            Self::kubelet_event(st, ns, pod, Some(&container), "Warning", "Failed", "Error: ImagePullBackOff");
            let msg = format!("Back-off pulling image \"{image}\"");
            Self::kubelet_event(st, ns, pod, Some(&container), "Normal", "BackOff", &msg);
            true
        })
    }

    /// The pod's first container runs and is ready again (phase `Running`; `restartCount`
    /// and `lastState` are kept). False if there is no pod.
    pub fn set_pod_running(&self, ns: &str, pod: &str) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            st.modify(Kind::Pod, ns, pod, |p| {
                let uid = str_at(p, "/metadata/uid").to_owned();
                let image = str_at(p, "/spec/containers/0/image").to_owned();
                if let Some(s) = p.get_mut("status") {
                    set(s, "phase", json!("Running"));
                }
                let mut container = String::new();
                if let Some(Value::Array(statuses)) = p.pointer_mut("/status/containerStatuses")
                    && let Some(cs) = statuses.first_mut()
                {
                    container = str_at(cs, "/name").to_owned();
                    let restarts = cs.get("restartCount").and_then(Value::as_u64).unwrap_or(0);
                    set(cs, "state", json!({"running": {"startedAt": ts(t)}}));
                    set(cs, "ready", json!(true));
                    set(cs, "started", json!(true));
                    set(cs, "image", json!(qualified_image(&image)));
                    set(cs, "imageID", json!(image_id(&image)));
                    set(
                        cs,
                        "containerID",
                        json!(format!(
                            "containerd://{}",
                            hex_of(&format!("{uid}/{restarts}/run"), 64)
                        )),
                    );
                }
                set_pod_ready_conditions(p, true, &container, t);
            })
            .is_some()
        })
    }

    fn node_event(st: &mut State, node: &str, reason: &str, component: &'static str) {
        if !st.emit_events {
            return;
        }
        let mut r = st.object_ref(Kind::Node, "", node, None);
        // The kubelet uses the node name as the reference's uid.
        set(&mut r, "uid", json!(node));
        remove(&mut r, "resourceVersion");
        st.event(
            "default",
            &r,
            "Normal",
            reason,
            &format!("Node {node} status is now: {reason}"),
            &Reporter {
                component,
                host: (component == "kubelet").then(|| node.to_owned()),
            },
        );
    }

    /// Sets the node's `Ready` condition (`KubeletReady` / `KubeletNotReady`) and the
    /// `node.kubernetes.io/not-ready` taints; records `NodeReady` / `NodeNotReady`. False if
    /// there is no such node.
    pub fn set_node_ready(&self, name: &str, ready: bool) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            let mut changed = false;
            let rv = st.modify(Kind::Node, "", name, |n| {
                changed = if ready {
                    set_condition(n, "Ready", "True", "KubeletReady", "kubelet is posting ready status", t, true)
                } else {
                    set_condition(
                        n,
                        "Ready",
                        "False",
                        "KubeletNotReady",
                        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
                        t,
                        true,
                    )
                };
                set_taint(n, "node.kubernetes.io/not-ready", "NoSchedule", !ready, t);
                set_taint(n, "node.kubernetes.io/not-ready", "NoExecute", !ready, t);
                set_taint(n, "node.kubernetes.io/unreachable", "NoSchedule", false, t);
                set_taint(n, "node.kubernetes.io/unreachable", "NoExecute", false, t);
            });
            if rv.is_none() {
                return false;
            }
            if changed {
                Self::node_event(st, name, if ready { "NodeReady" } else { "NodeNotReady" }, "kubelet");
            }
            true
        })
    }

    /// The node stopped reporting: every condition `Unknown` (`NodeStatusUnknown`,
    /// "Kubelet stopped posting node status."), `node.kubernetes.io/unreachable` taints, and
    /// the node controller's `NodeNotReady` event. `set_node_ready(name, true)` recovers.
    pub fn set_node_unreachable(&self, name: &str) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            let rv = st.modify(Kind::Node, "", name, |n| {
                if let Some(Value::Array(conds)) = n.pointer_mut("/status/conditions") {
                    for c in conds.iter_mut() {
                        if c.get("status").and_then(Value::as_str) != Some("Unknown") {
                            set(c, "lastTransitionTime", json!(ts(t)));
                        }
                        set(c, "status", json!("Unknown"));
                        set(c, "reason", json!("NodeStatusUnknown"));
                        set(c, "message", json!("Kubelet stopped posting node status."));
                    }
                }
                set_taint(n, "node.kubernetes.io/unreachable", "NoSchedule", true, t);
                set_taint(n, "node.kubernetes.io/unreachable", "NoExecute", true, t);
            });
            if rv.is_none() {
                return false;
            }
            Self::node_event(st, name, "NodeNotReady", "node-controller");
            true
        })
    }

    /// Sets a pressure condition (`MemoryPressure`, …) with the kubelet's reason and message,
    /// the matching `NoSchedule` taint, and a `NodeHas…` event. False if there is no node.
    pub fn set_node_pressure(&self, name: &str, pressure: Pressure, on: bool) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            let (reason, message) = pressure.text(on);
            let mut changed = false;
            let rv = st.modify(Kind::Node, "", name, |n| {
                let status = if on { "True" } else { "False" };
                changed = set_condition(n, pressure.condition(), status, reason, message, t, true);
                set_taint(n, pressure.taint(), "NoSchedule", on, t);
            });
            if rv.is_none() {
                return false;
            }
            if changed {
                Self::node_event(st, name, reason.trim_start_matches("Kubelet"), "kubelet");
            }
            true
        })
    }

    /// Cordons (`spec.unschedulable`, `node.kubernetes.io/unschedulable` taint) or uncordons
    /// a node. False if there is no node.
    pub fn set_node_unschedulable(&self, name: &str, unschedulable: bool) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            let rv = st.modify(Kind::Node, "", name, |n| {
                let spec = obj(n, "spec");
                if unschedulable {
                    spec.insert("unschedulable".to_owned(), json!(true));
                } else {
                    spec.remove("unschedulable");
                }
                set_taint(
                    n,
                    "node.kubernetes.io/unschedulable",
                    "NoSchedule",
                    unschedulable,
                    t,
                );
            });
            if rv.is_none() {
                return false;
            }
            let reason = if unschedulable {
                "NodeNotSchedulable"
            } else {
                "NodeSchedulable"
            };
            Self::node_event(st, name, reason, "kubelet");
            true
        })
    }

    /// All replicas available (`ready`) or none.
    pub fn set_deployment_ready(&self, ns: &str, name: &str, ready: bool) -> bool {
        let replicas = self
            .object(Kind::Deployment, ns, name)
            .and_then(|d| d.pointer("/spec/replicas").and_then(Value::as_u64))
            .unwrap_or(1);
        self.set_deployment_available(ns, name, if ready { replicas } else { 0 })
    }

    /// Sets `readyReplicas`/`availableReplicas`/`unavailableReplicas` and the `Available`
    /// condition (`MinimumReplicasAvailable` / `MinimumReplicasUnavailable`, with the 25 %
    /// `maxUnavailable` of the default rolling update). False if there is no deployment.
    pub fn set_deployment_available(&self, ns: &str, name: &str, available: u64) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            st.modify(Kind::Deployment, ns, name, |d| {
                let replicas = d
                    .pointer("/spec/replicas")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                let available = available.min(replicas);
                let unavailable = replicas - available;
                let status = obj(d, "status");
                status.insert("replicas".to_owned(), json!(replicas));
                status.insert("updatedReplicas".to_owned(), json!(replicas));
                for (k, v) in [
                    ("readyReplicas", available),
                    ("availableReplicas", available),
                    ("unavailableReplicas", unavailable),
                ] {
                    if v == 0 {
                        status.remove(k);
                    } else {
                        status.insert(k.to_owned(), json!(v));
                    }
                }
                let ok = unavailable <= replicas / 4;
                let (reason, message) = available_condition(ok);
                set_condition(
                    d,
                    "Available",
                    if ok { "True" } else { "False" },
                    &reason,
                    &message,
                    t,
                    false,
                );
            })
            .is_some()
        })
    }

    /// Sets a StatefulSet's `readyReplicas`/`availableReplicas`. False if there is none.
    pub fn set_statefulset_ready(&self, ns: &str, name: &str, ready: u64) -> bool {
        self.modify(Kind::StatefulSet, ns, name, |s| {
            let status = obj(s, "status");
            if ready == 0 {
                status.remove("readyReplicas");
            } else {
                status.insert("readyReplicas".to_owned(), json!(ready));
            }
            status.insert("availableReplicas".to_owned(), json!(ready));
        })
        .is_some()
    }

    /// Sets a DaemonSet's `numberReady`/`numberAvailable`/`numberUnavailable`. False if there
    /// is none.
    pub fn set_daemonset_ready(&self, ns: &str, name: &str, ready: u64) -> bool {
        self.modify(Kind::DaemonSet, ns, name, |s| {
            let desired = s
                .pointer("/status/desiredNumberScheduled")
                .and_then(Value::as_u64)
                .unwrap_or(ready);
            let ready = ready.min(desired);
            let status = obj(s, "status");
            status.insert("numberReady".to_owned(), json!(ready));
            for (k, v) in [
                ("numberAvailable", ready),
                ("numberUnavailable", desired - ready),
            ] {
                if v == 0 {
                    status.remove(k);
                } else {
                    status.insert(k.to_owned(), json!(v));
                }
            }
        })
        .is_some()
    }

    /// Sets a PVC's phase: `Bound` (volume, capacity), `Pending` (no volume; Warning
    /// `ProvisioningFailed`) or `Lost` (Warning `ClaimLost`). False for another phase or no
    /// such claim.
    pub fn set_pvc_phase(&self, ns: &str, name: &str, phase: &str) -> bool {
        if !matches!(phase, "Bound" | "Pending" | "Lost") {
            return false;
        }
        self.shared.mutate(|st| {
            let mut class = String::new();
            let rv = st.modify(Kind::PersistentVolumeClaim, ns, name, |p| {
                let uid = str_at(p, "/metadata/uid").to_owned();
                let size = str_at(p, "/spec/resources/requests/storage").to_owned();
                class = str_at(p, "/spec/storageClassName").to_owned();
                let modes = p
                    .pointer("/spec/accessModes")
                    .cloned()
                    .unwrap_or_else(|| json!(["ReadWriteOnce"]));
                match phase {
                    "Bound" => {
                        let spec = obj(p, "spec");
                        spec.entry("volumeName")
                            .or_insert_with(|| json!(format!("pvc-{uid}")));
                        let ann = obj(obj_value(p, "metadata"), "annotations");
                        ann.insert("pv.kubernetes.io/bind-completed".to_owned(), json!("yes"));
                        ann.insert("pv.kubernetes.io/bound-by-controller".to_owned(), json!("yes"));
                        set(p, "status", json!({"accessModes": modes, "capacity": {"storage": size}, "phase": "Bound"}));
                    }
                    "Pending" => {
                        obj(p, "spec").remove("volumeName");
                        if let Some(Value::Object(ann)) = p.pointer_mut("/metadata/annotations") {
                            ann.remove("pv.kubernetes.io/bind-completed");
                            ann.remove("pv.kubernetes.io/bound-by-controller");
                        }
                        set(p, "status", json!({"phase": "Pending"}));
                    }
                    _ => {
                        set(obj_value(p, "status"), "phase", json!("Lost"));
                    }
                }
            });
            if rv.is_none() {
                return false;
            }
            if st.emit_events && phase != "Bound" {
                let r = st.object_ref(Kind::PersistentVolumeClaim, ns, name, None);
                let (reason, msg) = if phase == "Pending" {
                    ("ProvisioningFailed", format!("storageclass.storage.k8s.io \"{class}\" not found"))
                } else {
                    ("ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!".to_owned())
                };
                st.event(
                    ns,
                    &r,
                    "Warning",
                    reason,
                    &msg,
                    &Reporter {
                        component: "persistentvolume-controller",
                        host: None,
                    },
                );
            }
            true
        })
    }

    /// The job failed: `status.failed` = backoffLimit + 1, conditions `FailureTarget` and
    /// `Failed` (reason `BackoffLimitExceeded`), no completion; records the job controller's
    /// Warning `BackoffLimitExceeded` event. False if there is no job.
    pub fn fail_job(&self, ns: &str, name: &str) -> bool {
        self.shared.mutate(|st| {
            let t = now();
            let rv = st.modify(Kind::Job, ns, name, |j| {
                let limit = j
                    .pointer("/spec/backoffLimit")
                    .and_then(Value::as_u64)
                    .unwrap_or(6);
                let start = j
                    .pointer("/status/startTime")
                    .cloned()
                    .unwrap_or_else(|| json!(ts(t - 600)));
                let cond = |typ: &str| {
                    json!({
                        "lastProbeTime": ts(t),
                        "lastTransitionTime": ts(t),
                        "message": "Job has reached the specified backoff limit",
                        "reason": "BackoffLimitExceeded",
                        "status": "True",
                        "type": typ
                    })
                };
                set(
                    j,
                    "status",
                    json!({
                        "conditions": [cond("FailureTarget"), cond("Failed")],
                        "failed": limit + 1,
                        "ready": 0,
                        "startTime": start,
                        "terminating": 0,
                        "uncountedTerminatedPods": {}
                    }),
                );
            });
            if rv.is_none() {
                return false;
            }
            if st.emit_events {
                let r = st.object_ref(Kind::Job, ns, name, None);
                st.event(
                    ns,
                    &r,
                    "Warning",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    &Reporter {
                        component: "job-controller",
                        host: None,
                    },
                );
            }
            true
        })
    }

    /// Records a `Warning` event in `ns` about the object `involved_kind`/`involved_name`
    /// (e.g. `"Pod"`, `"web-…"`), reported by the kubelet; repeats bump `count`. Returns
    /// the event's name.
    pub fn add_warning_event(
        &self,
        ns: &str,
        involved_kind: &str,
        involved_name: &str,
        reason: &str,
        message: &str,
    ) -> String {
        self.add_event(ns, involved_kind, involved_name, "Warning", reason, message)
    }

    /// Records an event of type `typ` (`Normal`/`Warning`); see [`Self::add_warning_event`].
    pub fn add_event(
        &self,
        ns: &str,
        involved_kind: &str,
        involved_name: &str,
        typ: &str,
        reason: &str,
        message: &str,
    ) -> String {
        self.shared.mutate(|st| {
            let r = match Kind::from_name(involved_kind) {
                Some(k) => st.object_ref(k, ns, involved_name, None),
                None => json!({"kind": involved_kind, "name": involved_name, "namespace": ns}),
            };
            let host = st
                .get(Kind::Pod, ns, involved_name)
                .map(|o| str_at(&o.value(), "/spec/nodeName").to_owned());
            st.event(
                ns,
                &r,
                typ,
                reason,
                message,
                &Reporter {
                    component: "kubelet",
                    host,
                },
            )
        })
    }
}

/// `v[key]` as a mutable value, created as an object when missing.
fn obj_value<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    obj(v, key);
    match v.get_mut(key) {
        Some(inner) => inner,
        None => unreachable!("inserted by obj() above"),
    }
}

// ---------------------------------------------------------------------------------------------
// Selectors

#[derive(Clone, Debug)]
struct FieldReq {
    label: String,
    equal: bool,
    value: String,
}

#[derive(Clone, Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// What a list or watch selects: the path's namespace plus `fieldSelector` and
/// `labelSelector`.
#[derive(Clone, Debug, Default)]
struct Selector {
    namespace: Option<String>,
    fields: Vec<FieldReq>,
    labels: Vec<LabelReq>,
}

impl Selector {
    fn parse(kind: Kind, namespace: Option<&str>, req: &Request) -> Result<Self, String> {
        let fields = match req.query("fieldSelector") {
            Some(s) => parse_fields(kind, s)?,
            None => Vec::new(),
        };
        let labels = match req.query("labelSelector") {
            Some(s) => parse_labels(s)?,
            None => Vec::new(),
        };
        Ok(Self {
            namespace: namespace.map(str::to_owned),
            fields,
            labels,
        })
    }

    fn has_selectors(&self) -> bool {
        !self.fields.is_empty() || !self.labels.is_empty()
    }

    fn matches(&self, o: &Stored) -> bool {
        if self.namespace.as_ref().is_some_and(|ns| *ns != o.namespace) {
            return false;
        }
        let fields_ok = self
            .fields
            .iter()
            .all(|f| (o.field(&f.label) == f.value) == f.equal);
        fields_ok
            && self.labels.iter().all(|l| match l {
                LabelReq::Eq(k, v) => o.label(k) == Some(v.as_str()),
                LabelReq::Ne(k, v) => o.label(k) != Some(v.as_str()),
                LabelReq::In(k, vs) => o.label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelReq::NotIn(k, vs) => !o.label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelReq::Exists(k) => o.label(k).is_some(),
                LabelReq::NotExists(k) => o.label(k).is_none(),
            })
    }
}

/// `a=b,c!=d,e==f`; only the field labels the real apiserver supports for the resource.
fn parse_fields(kind: Kind, s: &str) -> Result<Vec<FieldReq>, String> {
    let mut out = Vec::new();
    for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (label, equal, value) = if let Some((l, v)) = term.split_once("!=") {
            (l, false, v)
        } else if let Some((l, v)) = term.split_once("==") {
            (l, true, v)
        } else if let Some((l, v)) = term.split_once('=') {
            (l, true, v)
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            ));
        };
        let label = label.trim();
        let supported = label == "metadata.name"
            || label == "metadata.namespace"
            || kind.field_labels().contains(&label);
        if !supported {
            return Err(format!("field label not supported: {label}"));
        }
        out.push(FieldReq {
            label: label.to_owned(),
            equal,
            value: value.trim().to_owned(),
        });
    }
    Ok(out)
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. Numeric comparisons
/// (`k>1`) are accepted and match everything.
fn parse_labels(s: &str) -> Result<Vec<LabelReq>, String> {
    let set_values = |rest: &str| -> Result<Vec<String>, String> {
        let rest = rest.trim();
        let inner = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("unable to parse requirement: found '{rest}', expected: '('"))?;
        Ok(inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect())
    };
    let mut out = Vec::new();
    for term in split_top_level(s)
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let req = if let Some(k) = term.strip_prefix('!') {
            LabelReq::NotExists(k.trim().to_owned())
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            LabelReq::NotIn(k.trim().to_owned(), set_values(rest)?)
        } else if let Some((k, rest)) = term.split_once(" in ") {
            LabelReq::In(k.trim().to_owned(), set_values(rest)?)
        } else if let Some((k, v)) = term.split_once("!=") {
            LabelReq::Ne(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once("==") {
            LabelReq::Eq(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once('=') {
            LabelReq::Eq(k.trim().to_owned(), v.trim().to_owned())
        } else if term.contains('<') || term.contains('>') {
            continue;
        } else if term.contains('(') || term.contains(')') || term.contains(' ') {
            return Err(format!("unable to parse requirement: {term}"));
        } else {
            LabelReq::Exists(term.to_owned())
        };
        out.push(req);
    }
    Ok(out)
}

fn encode_continue(rv: u64, last_key: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{last_key}\u{0}")});
    base64(token.to_string().as_bytes(), true)
}

/// (resourceVersion, start key) of a continue token.
fn decode_continue(token: &str) -> Option<(u64, String)> {
    let v: Value = serde_json::from_slice(&base64_decode(token)?).ok()?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return None;
    }
    Some((v.get("rv")?.as_u64()?, v.get("start")?.as_str()?.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Request handling

enum Route {
    Version,
    Health,
    ApiVersions,
    GroupList,
    Group(&'static str),
    Resources(&'static str),
    Collection(Kind, Option<String>),
    Object(Kind, Option<String>, String),
    Unknown,
}

impl Route {
    fn kind(&self) -> Option<Kind> {
        match self {
            Self::Collection(k, _) | Self::Object(k, _, _) => Some(*k),
            _ => None,
        }
    }
}

fn static_group(g: &str) -> Option<&'static str> {
    ["apps", "batch"].into_iter().find(|x| *x == g)
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["api"] => Route::ApiVersions,
        ["api", "v1"] => Route::Resources(""),
        ["apis"] => Route::GroupList,
        ["apis", g] => static_group(g).map_or(Route::Unknown, Route::Group),
        ["apis", g, "v1"] => static_group(g).map_or(Route::Unknown, Route::Resources),
        ["api", "v1", rest @ ..] => resource_route("", rest),
        ["apis", g, "v1", rest @ ..] => {
            static_group(g).map_or(Route::Unknown, |g| resource_route(g, rest))
        }
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, rest: &[&str]) -> Route {
    let kind_in = |plural: &str| Kind::from_plural(plural).filter(|k| k.group() == group);
    match rest {
        [plural] => kind_in(plural).map_or(Route::Unknown, |k| Route::Collection(k, None)),
        [plural, name] => match kind_in(plural) {
            Some(k) if !k.namespaced() => Route::Object(k, None, (*name).to_owned()),
            _ => Route::Unknown,
        },
        ["namespaces", ns, plural] => match kind_in(plural) {
            Some(k) if k.namespaced() => Route::Collection(k, Some((*ns).to_owned())),
            _ => Route::Unknown,
        },
        ["namespaces", ns, plural, name] => match kind_in(plural) {
            Some(k) if k.namespaced() => {
                Route::Object(k, Some((*ns).to_owned()), (*name).to_owned())
            }
            _ => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A `Status` object, as the apiserver sends for errors.
fn status_json(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        set(&mut s, "details", d);
    }
    s
}

/// What a request turned into; bodies of lists are built after the lock is released.
enum Reply {
    Json {
        status: u16,
        body: Vec<u8>,
        extra_headers: Vec<(String, String)>,
    },
    Text(String),
    List(ListPage),
    Watch(Box<WatchPlan>),
}

struct ListPage {
    kind: Kind,
    rv: u64,
    continue_token: Option<String>,
    remaining: Option<u64>,
    items: Vec<Arc<Stored>>,
}

impl ListPage {
    fn body(&self) -> Vec<u8> {
        let mut meta = json!({"resourceVersion": self.rv.to_string()});
        if let Some(c) = &self.continue_token {
            set(&mut meta, "continue", json!(c));
        }
        if let Some(r) = self.remaining {
            set(&mut meta, "remainingItemCount", json!(r));
        }
        let len: usize = self.items.iter().map(|o| o.json.len() + 1).sum();
        let mut out = String::with_capacity(len + 256);
        out.push_str("{\"kind\":\"");
        out.push_str(self.kind.name());
        out.push_str("List\",\"apiVersion\":\"");
        out.push_str(self.kind.api_version());
        out.push_str("\",\"metadata\":");
        out.push_str(&meta.to_string());
        out.push_str(",\"items\":[");
        for (i, o) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&o.json);
        }
        out.push_str("]}");
        out.into_bytes()
    }
}

struct WatchPlan {
    kind: Kind,
    selector: Selector,
    initial: Vec<Arc<Stored>>,
    initial_end_bookmark: bool,
    gone: Option<String>,
    cursor: u64,
    deadline: Instant,
    bookmarks: bool,
    bookmark_interval: Duration,
    generation: u64,
    abort_at: Option<Instant>,
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::Json {
        status,
        body: body.to_string().into_bytes(),
        extra_headers: Vec::new(),
    }
}

fn status_reply(code: u16, reason: &str, message: &str, details: Option<Value>) -> Reply {
    json_reply(code, &status_json(code, reason, message, details))
}

fn forbidden_reply(
    user: &str,
    verb: &str,
    kind: Kind,
    ns: Option<&str>,
    name: Option<&str>,
) -> Reply {
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", kind.plural()),
        None => kind.plural().to_owned(),
    };
    let scope = match ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
        kind.plural(),
        kind.group()
    );
    let mut details = json!({"kind": kind.plural()});
    if let Some(n) = name {
        set(&mut details, "name", json!(n));
    }
    status_reply(403, "Forbidden", &message, Some(details))
}

fn server_error_reply(code: u16) -> Reply {
    let (reason, message, details) = match code {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.".to_owned(),
            Some(json!({"retryAfterSeconds": 1})),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_owned(),
            None,
        ),
        504 => (
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded".to_owned(),
            Some(json!({"retryAfterSeconds": 1})),
        ),
        _ => (
            "InternalError",
            "Internal error occurred: etcdserver: request timed out".to_owned(),
            Some(json!({"causes": [{"message": "etcdserver: request timed out"}]})),
        ),
    };
    let mut r = status_reply(code, reason, &message, details);
    if (code == 429 || code == 504)
        && let Reply::Json { extra_headers, .. } = &mut r
    {
        extra_headers.push(("Retry-After".to_owned(), "1".to_owned()));
    }
    r
}

fn version_json(git_version: &str) -> Value {
    let v = git_version.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("1").to_owned();
    let minor = parts.next().unwrap_or("0").to_owned();
    let prev_minor = minor
        .parse::<u32>()
        .map_or_else(|_| minor.clone(), |m| m.saturating_sub(1).to_string());
    json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": major,
        "minCompatibilityMinor": prev_minor,
        "gitVersion": git_version,
        "gitCommit": hex_of(git_version, 40),
        "gitTreeState": "clean",
        "buildDate": "2025-09-09T19:44:50Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn group_json(g: &str) -> Value {
    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
    json!({"name": g, "versions": [gv], "preferredVersion": gv})
}

fn resource_list_json(group: &str) -> Value {
    let resources: Vec<Value> = Kind::ALL
        .into_iter()
        .filter(|k| k.group() == group)
        .map(|k| {
            let mut r = json!({
                "name": k.plural(),
                "singularName": k.singular(),
                "namespaced": k.namespaced(),
                "kind": k.name(),
                "verbs": ["get", "list", "watch"],
            });
            if !k.short_names().is_empty() {
                set(&mut r, "shortNames", json!(k.short_names()));
            }
            if matches!(
                k,
                Kind::Pod | Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::Job
            ) {
                set(&mut r, "categories", json!(["all"]));
            }
            r
        })
        .collect();
    if group.is_empty() {
        json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
    } else {
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/v1"), "resources": resources})
    }
}

fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1"))
}

impl State {
    /// Decides the answer to `req` under the lock.
    fn reply(&mut self, req: &Request, route: &Route) -> Reply {
        let user = match req.header("authorization") {
            None => None,
            Some(a) => match a.strip_prefix("Bearer ") {
                Some(t) if t.trim() == self.token && !self.faults.contains(&Fault::BadToken) => {
                    Some(self.user.clone())
                }
                _ => return status_reply(401, "Unauthorized", "Unauthorized", None),
            },
        };
        if req.method != "GET" {
            return status_reply(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            );
        }
        match route {
            Route::Version => return json_reply(200, &version_json(&self.git_version)),
            Route::Health => return Reply::Text("ok".to_owned()),
            _ => {}
        }
        let Some(user) = user else {
            // Anonymous requests authenticate as system:anonymous, which may only read
            // /version and the health endpoints (system:public-info-viewer).
            const ANON: &str = "system:anonymous";
            return match route {
                Route::Collection(k, ns) => {
                    let verb = if is_true(req.query("watch")) {
                        "watch"
                    } else {
                        "list"
                    };
                    forbidden_reply(ANON, verb, *k, ns.as_deref(), None)
                }
                Route::Object(k, ns, name) => {
                    forbidden_reply(ANON, "get", *k, ns.as_deref(), Some(name))
                }
                _ => status_reply(
                    403,
                    "Forbidden",
                    &format!(
                        "forbidden: User \"{ANON}\" cannot get path \"{}\"",
                        req.path
                    ),
                    Some(json!({})),
                ),
            };
        };
        if let Some(code) = self.server_error_for(route.kind()) {
            return server_error_reply(code);
        }
        match route {
            Route::Version | Route::Health => Reply::Text("ok".to_owned()),
            Route::ApiVersions => json_reply(
                200,
                &json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.addr}]
                }),
            ),
            Route::GroupList => json_reply(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_json("apps"), group_json("batch")]}),
            ),
            Route::Group(g) => {
                let mut body = group_json(g);
                set(&mut body, "kind", json!("APIGroup"));
                set(&mut body, "apiVersion", json!("v1"));
                json_reply(200, &body)
            }
            Route::Resources(g) => json_reply(200, &resource_list_json(g)),
            Route::Unknown => status_reply(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some(json!({})),
            ),
            Route::Collection(kind, ns) => {
                let watch = is_true(req.query("watch"));
                if self.forbidden(*kind, ns.as_deref()) {
                    let verb = if watch { "watch" } else { "list" };
                    return forbidden_reply(&user, verb, *kind, ns.as_deref(), None);
                }
                if watch {
                    self.watch(*kind, ns.as_deref(), req)
                } else {
                    self.list(*kind, ns.as_deref(), req)
                }
            }
            Route::Object(kind, ns, name) => {
                if self.forbidden(*kind, ns.as_deref()) {
                    return forbidden_reply(&user, "get", *kind, ns.as_deref(), Some(name));
                }
                self.counts[kind.idx()].gets += 1;
                match self.get(*kind, ns.as_deref().unwrap_or(""), name) {
                    Some(o) => Reply::Json {
                        status: 200,
                        body: o.typed_json(*kind).into_bytes(),
                        extra_headers: Vec::new(),
                    },
                    None => status_reply(
                        404,
                        "NotFound",
                        &format!("{} \"{name}\" not found", kind.plural()),
                        Some(json!({"name": name, "kind": kind.plural()})),
                    ),
                }
            }
        }
    }

    fn list(&mut self, kind: Kind, ns: Option<&str>, req: &Request) -> Reply {
        let token = req.query("continue").filter(|c| !c.is_empty());
        let counts = &mut self.counts[kind.idx()];
        counts.list_pages += 1;
        if token.is_none() {
            counts.lists += 1;
        }
        let selector = match Selector::parse(kind, ns, req) {
            Ok(s) => s,
            Err(msg) => return status_reply(400, "BadRequest", &msg, None),
        };
        let limit = req
            .query("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let (rv, start) = match token {
            None => (self.rv, None),
            Some(t) => match decode_continue(t) {
                Some((rv, start)) => (rv, Some(start)),
                None => {
                    return status_reply(
                        400,
                        "BadRequest",
                        &format!("continue key is not valid: {t}"),
                        None,
                    );
                }
            },
        };
        if token.is_some() && self.faults.contains(&Fault::ContinueExpired) {
            let mut s = status_json(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                None,
            );
            if let Some(start) = &start {
                let last = start.trim_end_matches('\u{0}');
                set(
                    &mut s,
                    "metadata",
                    json!({"continue": encode_continue(self.rv, last)}),
                );
            }
            return json_reply(410, &s);
        }
        let prefix = ns.map(|n| format!("{n}/"));
        let mut lower = start.unwrap_or_default();
        if let Some(p) = &prefix
            && lower < *p
        {
            lower.clone_from(p);
        }
        let store = self.store(kind);
        let mut items = Vec::new();
        let mut last_key: Option<&String> = None;
        let mut more = false;
        let mut remaining = 0u64;
        for (k, o) in store
            .objects
            .range(lower..)
            .take_while(|(k, _)| prefix.as_ref().is_none_or(|p| k.starts_with(p)))
            .filter(|(_, o)| selector.matches(o))
        {
            if limit.is_some_and(|l| items.len() >= l) {
                more = true;
                remaining += 1;
                if selector.has_selectors() {
                    break;
                }
            } else {
                items.push(o.clone());
                last_key = Some(k);
            }
        }
        let continue_token = if more {
            last_key.map(|k| encode_continue(rv, k))
        } else {
            None
        };
        Reply::List(ListPage {
            kind,
            rv,
            remaining: (more && !selector.has_selectors()).then_some(remaining),
            continue_token,
            items,
        })
    }

    fn watch(&mut self, kind: Kind, ns: Option<&str>, req: &Request) -> Reply {
        self.counts[kind.idx()].watches += 1;
        let selector = match Selector::parse(kind, ns, req) {
            Ok(s) => s,
            Err(msg) => return status_reply(400, "BadRequest", &msg, None),
        };
        let rv_param = req.query("resourceVersion").unwrap_or("");
        let send_initial = is_true(req.query("sendInitialEvents"));
        let bookmarks = is_true(req.query("allowWatchBookmarks"));
        let timeout = req
            .query("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(1800)
            .min(3600);
        let compacted = self.store(kind).compacted_rv;
        let requested = if rv_param.is_empty() {
            0
        } else {
            match rv_param.parse::<u64>() {
                Ok(v) => v,
                Err(_) => {
                    return status_reply(
                        400,
                        "BadRequest",
                        &format!(
                            "resourceVersion: Invalid value: \"{rv_param}\": invalid resource version"
                        ),
                        None,
                    );
                }
            }
        };
        let mut gone = None;
        if let Some(i) = self
            .force_gone
            .iter()
            .position(|k| k.is_none_or(|k| k == kind))
        {
            self.force_gone.remove(i);
            gone = Some(format!(
                "too old resource version: {requested} ({compacted})"
            ));
        }
        let snapshot = send_initial || requested == 0;
        if gone.is_none() && !snapshot && requested < compacted {
            gone = Some(format!(
                "too old resource version: {requested} ({compacted})"
            ));
        }
        let initial = if snapshot && gone.is_none() {
            self.store(kind)
                .objects
                .values()
                .filter(|o| selector.matches(o))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let cursor = if snapshot { self.rv } else { requested };
        let now = Instant::now();
        self.counts[kind.idx()].open_watches += 1;
        Reply::Watch(Box::new(WatchPlan {
            kind,
            selector,
            initial,
            initial_end_bookmark: send_initial,
            gone,
            cursor,
            deadline: now + Duration::from_secs(timeout),
            bookmarks,
            bookmark_interval: self.bookmark_interval.max(Duration::from_millis(10)),
            generation: self.watch_generation,
            abort_at: self.abort_watches_after().map(|d| now + d),
        }))
    }
}

fn headers(content_type: &str, audit: u64) -> Vec<(String, String)> {
    vec![
        ("Audit-Id".to_owned(), uuid(&format!("audit/{audit}"))),
        ("Cache-Control".to_owned(), "no-cache, private".to_owned()),
        ("Content-Type".to_owned(), content_type.to_owned()),
    ]
}

/// Cuts a body in half (at a char boundary).
fn cut_in_half(body: &mut Vec<u8>) {
    let cut = body.len() / 2;
    body.truncate(cut);
}

fn handle(shared: &Arc<Shared>, req: &Request) -> Answer {
    let route = route(&req.path);
    let kind = route.kind();
    let (reply, delay, malformed, audit) = {
        let mut st = shared.lock();
        st.requests += 1;
        let reply = st.reply(req, &route);
        let status = match &reply {
            Reply::Json { status, .. } => *status,
            _ => 200,
        };
        if st.log.len() >= LOG_LIMIT {
            st.log.pop_front();
        }
        st.log.push_back(LoggedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            status,
        });
        (
            reply,
            st.delay_for(kind),
            st.malformed_for(kind),
            st.requests,
        )
    };
    let full =
        |status: u16, content_type: &str, mut body: Vec<u8>, extra: Vec<(String, String)>| {
            if malformed && status == 200 {
                cut_in_half(&mut body);
            }
            let mut h = headers(content_type, audit);
            h.extend(extra);
            Answer::Full(Response {
                status,
                reason: reason_phrase(status).to_owned(),
                headers: h,
                body,
                delay,
            })
        };
    match reply {
        Reply::Json {
            status,
            body,
            extra_headers,
        } => full(status, "application/json", body, extra_headers),
        Reply::Text(t) => full(200, "text/plain; charset=utf-8", t.into_bytes(), Vec::new()),
        Reply::List(page) => full(200, "application/json", page.body(), Vec::new()),
        Reply::Watch(plan) => {
            // A new stream changes `open_watches`; wake `wait_for_watches`.
            shared.changed.notify_all();
            let shared = shared.clone();
            Answer::Stream(StreamResponse {
                status: 200,
                reason: "OK".to_owned(),
                headers: headers("application/json", audit),
                delay,
                body: Box::new(move |w| run_watch(&shared, *plan, w)),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watch streams

/// Decrements `open_watches` when a stream ends, however it ends.
struct OpenWatch<'a> {
    shared: &'a Shared,
    kind: Kind,
}

impl Drop for OpenWatch<'_> {
    fn drop(&mut self) {
        self.shared.mutate(|st| {
            let c = &mut st.counts[self.kind.idx()].open_watches;
            *c = c.saturating_sub(1);
        });
    }
}

fn push_line(out: &mut String, line: &str, malformed: bool) {
    if malformed {
        let mut cut = line.len() / 2;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&line[..cut]);
    } else {
        out.push_str(line);
    }
    out.push('\n');
}

fn event_line(typ: &str, kind: Kind, item_json: &str) -> String {
    let mut line = String::with_capacity(item_json.len() + 80);
    line.push_str("{\"type\":\"");
    line.push_str(typ);
    line.push_str("\",\"object\":");
    line.push_str(&typed_json(kind, item_json));
    line.push('}');
    line
}

fn bookmark_line(kind: Kind, rv: u64, initial_events_end: bool) -> String {
    let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_events_end {
        set(
            &mut meta,
            "annotations",
            json!({"k8s.io/initial-events-end": "true"}),
        );
    }
    json!({
        "type": "BOOKMARK",
        "object": {"kind": kind.name(), "apiVersion": kind.api_version(), "metadata": meta}
    })
    .to_string()
}

fn error_line(message: &str) -> String {
    json!({"type": "ERROR", "object": status_json(410, "Expired", message, None)}).to_string()
}

/// Renders one change for a watcher with `selector`, like the apiserver's watch cache: an
/// object entering the selection is ADDED, one leaving it DELETED (its previous state with
/// the change's resourceVersion).
fn render_change(out: &mut String, kind: Kind, selector: &Selector, c: &Change, malformed: bool) {
    let now_matches = c.typ != ChangeType::Deleted && selector.matches(&c.obj);
    let was_matching = c.prev.as_ref().is_some_and(|p| selector.matches(p));
    let line = match (c.typ, now_matches, was_matching) {
        (ChangeType::Deleted, _, true) => event_line("DELETED", kind, &c.obj.json),
        (ChangeType::Deleted, _, false) | (_, false, false) => return,
        (_, true, false) => event_line("ADDED", kind, &c.obj.json),
        (_, true, true) => event_line("MODIFIED", kind, &c.obj.json),
        (_, false, true) => {
            let mut prev = c.prev.as_ref().map_or(Value::Null, |p| p.value());
            obj(&mut prev, "metadata")
                .insert("resourceVersion".to_owned(), json!(c.rv.to_string()));
            event_line("DELETED", kind, &prev.to_string())
        }
    };
    push_line(out, &line, malformed);
}

const CHUNK_TARGET: usize = 64 * 1024;

fn run_watch(shared: &Shared, mut plan: WatchPlan, w: &mut ChunkedWriter<'_>) -> StreamEnd {
    let kind = plan.kind;
    let _open = OpenWatch { shared, kind };
    let mut out = String::new();
    if let Some(msg) = &plan.gone {
        push_line(&mut out, &error_line(msg), false);
        return match w.send(out.as_bytes()) {
            Ok(()) => StreamEnd::Finish,
            Err(_) => StreamEnd::Abort,
        };
    }
    let malformed = shared.lock().malformed_for(Some(kind));
    for o in std::mem::take(&mut plan.initial) {
        push_line(&mut out, &event_line("ADDED", kind, &o.json), malformed);
        if out.len() >= CHUNK_TARGET {
            if w.send(out.as_bytes()).is_err() {
                return StreamEnd::Abort;
            }
            out.clear();
        }
    }
    if plan.initial_end_bookmark && plan.bookmarks {
        push_line(&mut out, &bookmark_line(kind, plan.cursor, true), false);
    }
    if w.send(out.as_bytes()).is_err() {
        return StreamEnd::Abort;
    }
    let mut next_bookmark = Instant::now() + plan.bookmark_interval;
    loop {
        let mut changes: Vec<Change> = Vec::new();
        let malformed;
        {
            let mut st = shared.lock();
            loop {
                let now = Instant::now();
                if st.watch_generation != plan.generation
                    || plan.abort_at.is_some_and(|t| now >= t)
                    || w.server_stopped()
                {
                    return StreamEnd::Abort;
                }
                let store = st.store(kind);
                if plan.cursor < store.compacted_rv {
                    // The watcher fell behind the retained history.
                    let msg = format!(
                        "too old resource version: {} ({})",
                        plan.cursor, store.compacted_rv
                    );
                    drop(st);
                    out.clear();
                    push_line(&mut out, &error_line(&msg), false);
                    return match w.send(out.as_bytes()) {
                        Ok(()) => StreamEnd::Finish,
                        Err(_) => StreamEnd::Abort,
                    };
                }
                let from = store.history.partition_point(|c| c.rv <= plan.cursor);
                changes.extend(store.history.iter().skip(from).cloned());
                plan.cursor = plan.cursor.max(st.rv);
                if !changes.is_empty()
                    || now >= plan.deadline
                    || (plan.bookmarks && now >= next_bookmark)
                {
                    break;
                }
                let mut wake = plan.deadline.min(now + Duration::from_secs(1));
                if plan.bookmarks {
                    wake = wake.min(next_bookmark);
                }
                if let Some(t) = plan.abort_at {
                    wake = wake.min(t);
                }
                st = shared
                    .changed
                    .wait_timeout(st, wake.saturating_duration_since(now))
                    .map_or_else(|e| e.into_inner().0, |(g, _)| g);
            }
            malformed = st.malformed_for(Some(kind));
        }
        out.clear();
        for c in &changes {
            render_change(&mut out, kind, &plan.selector, c, malformed);
        }
        let now = Instant::now();
        if plan.bookmarks && now >= next_bookmark {
            push_line(&mut out, &bookmark_line(kind, plan.cursor, false), false);
            next_bookmark = now + plan.bookmark_interval;
        }
        if w.send(out.as_bytes()).is_err() {
            return StreamEnd::Abort;
        }
        if now >= plan.deadline {
            return StreamEnd::Finish;
        }
    }
}
