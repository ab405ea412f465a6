//! Kubernetes collector: one kube-runtime watcher per object kind (and per namespace when
//! namespaces are listed) keeps a compact in-memory picture of the cluster, and each run
//! summarises that picture into resources and samples.
//!
//! Invariants:
//! - the API server is listed once per watcher start (and after a `410 Gone`), never per
//!   interval; changes arrive through watches;
//! - the cache holds small summaries, not whole objects, so 10,000 pods stay within the
//!   agent's memory budget;
//! - a watcher in error keeps its last good objects; they are re-sent with `stale = true` and
//!   no samples, and the run is `Degraded` saying why. Nothing ever seen and nothing readable is
//!   a `Failed` run, never zeros;
//! - ids: `k8s-cluster:<cluster>`, `k8s-node:<cluster>/<node>`, `pod:<cluster>/<ns>/<pod>`,
//!   `k8s-workload:<cluster>/<ns>/<kind>/<name>`, `pvc:<cluster>/<ns>/<claim>`.

use super::config::KubernetesConfig;
use super::{Collected, Collector, CollectorError};
use futures_util::StreamExt;
use k8s_openapi::Resource as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Node, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher as watch_stream;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;
use tracing::{debug, warn};
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::ResourceKind;
use warden_shared::resource::canonical;
use warden_shared::telemetry::{Provenance, Resource, Value};

/// Warning events older than this are not reported (the API server's own default event TTL).
const EVENT_WINDOW_MS: i64 = 3_600_000;
/// Longest event message kept in the cache.
const MAX_EVENT_MESSAGE: usize = 300;
/// Objects per list page: each page is decoded whole before it is summarised, so this bounds
/// the transient memory of a (re-)list (100 pods ≈ 0.5 MB of JSON).
const LIST_PAGE: u32 = 100;
/// First and longest wait before a failed watch is retried.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A retried watch that has not failed again for this long has recovered.
const RECOVERED_AFTER: Duration = Duration::from_secs(3);
/// How often the first run checks whether the initial lists are complete.
const SYNC_POLL: Duration = Duration::from_millis(50);

const fn k8s(kind: ResourceKind, metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(kind, metric, "kubernetes", method)
}

/// Where each metric comes from: the watched object and its fields.
const PROVENANCE: &[Provenance] = &[
    k8s(
        ResourceKind::K8sCluster,
        metric::NODES,
        "watch /api/v1/nodes: count of nodes (once the list is complete)",
    ),
    k8s(
        ResourceKind::K8sCluster,
        metric::NODES_READY,
        "watch /api/v1/nodes: count with condition Ready=True",
    ),
    k8s(
        ResourceKind::K8sCluster,
        metric::PODS,
        "watch /api/v1/pods: count of pods (once the list is complete)",
    ),
    k8s(
        ResourceKind::K8sCluster,
        metric::PODS_BY_PHASE,
        "watch /api/v1/pods: count by status.phase",
    ),
    k8s(
        ResourceKind::K8sCluster,
        metric::WARNING_EVENTS_1H,
        "watch /api/v1/events?fieldSelector=type=Warning: sum of count over events last seen within 1 h",
    ),
    k8s(
        ResourceKind::K8sNode,
        metric::READY,
        "watch /api/v1/nodes: status.conditions[type=Ready].status (1 = True, 0 = False; absent when Unknown)",
    ),
    k8s(
        ResourceKind::K8sNode,
        metric::WARNING_EVENTS_1H,
        "watch /api/v1/events?fieldSelector=type=Warning: sum of count for this node within 1 h",
    ),
    k8s(
        ResourceKind::Pod,
        metric::RESTARTS,
        "watch /api/v1/pods: sum of status.containerStatuses[].restartCount and initContainerStatuses[].restartCount",
    ),
    k8s(
        ResourceKind::Pod,
        metric::READY,
        "watch /api/v1/pods: status.conditions[type=Ready].status (1 = True, 0 = False)",
    ),
    k8s(
        ResourceKind::Pod,
        metric::WARNING_EVENTS_1H,
        "watch /api/v1/events?fieldSelector=type=Warning: sum of count for this pod within 1 h",
    ),
    k8s(
        ResourceKind::K8sWorkload,
        metric::REPLICAS_DESIRED,
        "watch /apis/apps/v1 deployments, statefulsets: spec.replicas (default 1); daemonsets: status.desiredNumberScheduled",
    ),
    k8s(
        ResourceKind::K8sWorkload,
        metric::REPLICAS_READY,
        "watch /apis/apps/v1: status.readyReplicas (daemonsets: status.numberReady)",
    ),
    k8s(
        ResourceKind::K8sWorkload,
        metric::REPLICAS_UNAVAILABLE,
        "watch /apis/apps/v1: desired - status.availableReplicas (daemonsets: numberAvailable), at least 0",
    ),
    k8s(
        ResourceKind::K8sWorkload,
        metric::JOB_FAILED,
        "watch /apis/batch/v1/jobs: 1 when status.conditions has Failed (or FailureTarget) = True",
    ),
    k8s(
        ResourceKind::K8sWorkload,
        metric::WARNING_EVENTS_1H,
        "watch /api/v1/events?fieldSelector=type=Warning: sum of count for this workload within 1 h",
    ),
    k8s(
        ResourceKind::Pvc,
        metric::CAPACITY_BYTES,
        "watch /api/v1/persistentvolumeclaims: status.capacity.storage (quantity in bytes)",
    ),
    k8s(
        ResourceKind::Pvc,
        metric::WARNING_EVENTS_1H,
        "watch /api/v1/events?fieldSelector=type=Warning: sum of count for this claim within 1 h",
    ),
];

/// Reads a Kubernetes cluster through watches.
pub(crate) struct KubernetesCollector {
    cfg: KubernetesConfig,
    client: Option<Client>,
    cache: Cache,
    tasks: Vec<AbortHandle>,
}

impl Drop for KubernetesCollector {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One watcher's share of the picture: its objects, whether its initial list finished, and
/// its current error.
struct Table<V> {
    /// What the watcher covers, for messages: `pods`, `pods in namespace shop`.
    scope: String,
    /// Key (`ns/name` or `name`) → (list epoch, summary).
    entries: HashMap<String, (u64, V)>,
    /// Incremented when the watcher re-lists; entries not seen in the new list are dropped.
    epoch: u64,
    synced: bool,
    error: Option<String>,
    started: Instant,
}

type Shared<V> = Arc<Mutex<Table<V>>>;

fn lock<V>(t: &Shared<V>) -> std::sync::MutexGuard<'_, Table<V>> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Cache {
    nodes: Vec<Shared<NodeInfo>>,
    pods: Vec<Shared<PodInfo>>,
    workloads: Vec<Shared<WorkloadInfo>>,
    pvcs: Vec<Shared<PvcInfo>>,
    events: Vec<Shared<EventInfo>>,
}

impl Cache {
    /// Every watcher has either finished its initial list or failed.
    fn settled(&self) -> bool {
        fn done<V>(ts: &[Shared<V>]) -> bool {
            ts.iter().all(|t| {
                let t = lock(t);
                t.synced || t.error.is_some()
            })
        }
        done(&self.nodes)
            && done(&self.pods)
            && done(&self.workloads)
            && done(&self.pvcs)
            && done(&self.events)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct NodeInfo {
    ready: Option<bool>,
    /// `MemoryPressure`, `DiskPressure`, `PIDPressure`, `NetworkUnavailable`: true, false or
    /// unknown (condition absent or `Unknown`).
    pressure: [Option<bool>; 4],
    unschedulable: bool,
    kubelet_version: Option<String>,
}

const PRESSURE: [(&str, &str); 4] = [
    ("MemoryPressure", "memory_pressure"),
    ("DiskPressure", "disk_pressure"),
    ("PIDPressure", "pid_pressure"),
    ("NetworkUnavailable", "network_unavailable"),
];

#[derive(Debug, Clone, PartialEq)]
struct PodInfo {
    namespace: String,
    name: String,
    phase: String,
    /// What `kubectl get pods` shows in STATUS: a waiting reason, `Terminating`, or the phase.
    status: String,
    waiting_reason: Option<String>,
    last_termination_reason: Option<String>,
    last_exit_code: Option<i64>,
    restarts: i64,
    ready: Option<bool>,
    node: Option<String>,
    workload: Option<(&'static str, String)>,
    created_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
struct WorkloadInfo {
    kind: &'static str,
    namespace: String,
    name: String,
    /// Deployments, statefulsets, daemonsets: desired / ready / available / unavailable.
    replicas: Option<Replicas>,
    /// Jobs only.
    job: Option<JobInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Replicas {
    desired: i64,
    ready: i64,
    available: i64,
    updated: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct JobInfo {
    active: i64,
    succeeded: i64,
    failed: i64,
    /// `Complete`, `Failed`, `Suspended` or `Running`.
    state: &'static str,
    reason: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct PvcInfo {
    namespace: String,
    name: String,
    phase: Option<String>,
    storage_class: Option<String>,
    volume: Option<String>,
    requested_bytes: Option<f64>,
    capacity_bytes: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
struct EventInfo {
    kind: String,
    namespace: String,
    name: String,
    reason: String,
    message: String,
    count: i64,
    last_ms: Option<i64>,
}

impl KubernetesCollector {
    pub(crate) fn new(cfg: &KubernetesConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            client: None,
            cache: Cache::default(),
            tasks: Vec::new(),
        }
    }

    async fn connect(&self) -> Result<Client, CollectorError> {
        let config = match &self.cfg.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    CollectorError::Kubernetes(format!("kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| {
                        CollectorError::Kubernetes(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            None => kube::Config::infer().await.map_err(|e| {
                CollectorError::Kubernetes(format!(
                    "no kubeconfig and not running in a pod ({e}); set collectors.kubernetes.kubeconfig"
                ))
            })?,
        };
        Client::try_from(config)
            .map_err(|e| CollectorError::Kubernetes(format!("building the client: {e}")))
    }

    /// Starts every watcher; called once, when the first client is built.
    fn start_watchers(&mut self, client: &Client) {
        let fields = self.namespace_selector();
        for ns in self.scopes() {
            let label = |what: &str| match &ns {
                Some(ns) => format!("{what} in namespace {ns}"),
                None => what.to_owned(),
            };
            let cfg = watcher::Config::default()
                .fields(&fields)
                .page_size(LIST_PAGE);
            let pods = self.spawn(
                scoped_api(client, ns.as_deref()),
                cfg.clone(),
                label(Pod::URL_PATH_SEGMENT),
                pod_info,
            );
            self.cache.pods.push(pods);
            let t = self.spawn(
                scoped_api(client, ns.as_deref()),
                cfg.clone(),
                label(Deployment::URL_PATH_SEGMENT),
                deployment_info,
            );
            self.cache.workloads.push(t);
            let t = self.spawn(
                scoped_api(client, ns.as_deref()),
                cfg.clone(),
                label(StatefulSet::URL_PATH_SEGMENT),
                statefulset_info,
            );
            self.cache.workloads.push(t);
            let t = self.spawn(
                scoped_api(client, ns.as_deref()),
                cfg.clone(),
                label(DaemonSet::URL_PATH_SEGMENT),
                daemonset_info,
            );
            self.cache.workloads.push(t);
            let t = self.spawn(
                scoped_api(client, ns.as_deref()),
                cfg.clone(),
                label(Job::URL_PATH_SEGMENT),
                job_info,
            );
            self.cache.workloads.push(t);
            let t = self.spawn(
                scoped_api(client, ns.as_deref()),
                cfg.clone(),
                label(PersistentVolumeClaim::URL_PATH_SEGMENT),
                pvc_info,
            );
            self.cache.pvcs.push(t);
            let warn_fields = if fields.is_empty() {
                "type=Warning".to_owned()
            } else {
                format!("type=Warning,{fields}")
            };
            let ecfg = watcher::Config::default()
                .fields(&warn_fields)
                .page_size(LIST_PAGE);
            let t = self.spawn(
                scoped_api(client, ns.as_deref()),
                ecfg,
                label(CoreEvent::URL_PATH_SEGMENT),
                event_info,
            );
            self.cache.events.push(t);
        }
        let nodes = self.spawn(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            Node::URL_PATH_SEGMENT.to_owned(),
            node_info,
        );
        self.cache.nodes.push(nodes);
    }

    /// `None` = the whole cluster; otherwise one watcher set per listed namespace.
    fn scopes(&self) -> Vec<Option<String>> {
        if self.cfg.namespaces.is_empty() {
            return vec![None];
        }
        self.cfg
            .namespaces
            .iter()
            .filter(|ns| !self.cfg.exclude_namespaces.contains(ns))
            .map(|ns| Some(ns.clone()))
            .collect()
    }

    /// `metadata.namespace!=a,metadata.namespace!=b` for cluster-wide watches; the server
    /// filters, so excluded namespaces cost nothing.
    fn namespace_selector(&self) -> String {
        if !self.cfg.namespaces.is_empty() {
            return String::new();
        }
        self.cfg
            .exclude_namespaces
            .iter()
            .map(|ns| format!("metadata.namespace!={ns}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn<K, V>(
        &mut self,
        api: Api<K>,
        cfg: watcher::Config,
        scope: String,
        summarise: fn(&K) -> V,
    ) -> Shared<V>
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        V: Send + 'static,
    {
        let table = Arc::new(Mutex::new(Table {
            scope,
            entries: HashMap::new(),
            epoch: 0,
            synced: false,
            error: None,
            started: Instant::now(),
        }));
        let handle = tokio::spawn(watch_into(api, cfg, Arc::clone(&table), summarise));
        self.tasks.push(handle.abort_handle());
        table
    }
}

fn scoped_api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Feeds one watcher's events into its table until the task is aborted.
///
/// The watcher retries after errors when polled again; this loop owns the backoff (0.5 s
/// doubling to 30 s) so it can also tell recovery: kube's watcher resumes a watch without
/// emitting anything, so a retry that has not failed again within [`RECOVERED_AFTER`] counts as
/// recovered and clears the table's error.
async fn watch_into<K, V>(
    api: Api<K>,
    cfg: watcher::Config,
    table: Shared<V>,
    summarise: fn(&K) -> V,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = std::pin::pin!(watch_stream(api, cfg));
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        let item = if failing {
            match tokio::time::timeout(RECOVERED_AFTER, stream.next()).await {
                Ok(item) => item,
                Err(_) => {
                    let mut t = lock(&table);
                    debug!(scope = %t.scope, "kubernetes watch recovered");
                    t.error = None;
                    failing = false;
                    backoff = MIN_BACKOFF;
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let Some(item) = item else { return };
        match item {
            Ok(event) => {
                failing = false;
                backoff = MIN_BACKOFF;
                apply(&mut lock(&table), event, summarise);
            }
            Err(e) => {
                let message = explain(&e);
                {
                    let mut t = lock(&table);
                    if t.error.as_deref() != Some(message.as_str()) {
                        warn!(scope = %t.scope, error = %message, "kubernetes watch failing");
                    }
                    t.error = Some(message);
                }
                failing = true;
                let jitter = rand::random_range(0.8..1.2);
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Applies one watch event to a table (the reflector's job, on summaries).
fn apply<K: kube::Resource, V>(t: &mut Table<V>, event: Event<K>, summarise: fn(&K) -> V) {
    match event {
        Event::Init => t.epoch += 1,
        Event::InitApply(obj) | Event::Apply(obj) => {
            t.error = None;
            let epoch = t.epoch;
            t.entries.insert(key(&obj), (epoch, summarise(&obj)));
        }
        Event::InitDone => {
            let epoch = t.epoch;
            t.entries.retain(|_, (e, _)| *e == epoch);
            t.synced = true;
            t.error = None;
            debug!(scope = %t.scope, objects = t.entries.len(), "watch synced");
        }
        Event::Delete(obj) => {
            t.entries.remove(&key(&obj));
        }
    }
}

fn key<K: kube::Resource>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// A short, actionable description of a watch failure.
fn explain(e: &watcher::Error) -> String {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.as_ref()),
        watcher::Error::WatchError(s) => Some(s.as_ref()),
        _ => None,
    };
    match api {
        Some(s) if s.code == 401 => {
            "401 unauthorized: the service account token is invalid or expired".to_owned()
        }
        Some(s) if s.code == 403 => format!(
            "403 forbidden: {} (apply packaging/kubernetes/warden-agent.yaml's ClusterRole)",
            s.message
        ),
        Some(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        None => e.to_string(),
    }
}

impl Collector for KubernetesCollector {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn provenance(&self) -> &[Provenance] {
        PROVENANCE
    }

    async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = self.connect().await?;
                self.start_watchers(&c);
                self.client = Some(c.clone());
                c
            }
        };
        // The first run waits (within its budget) for the initial lists, so its batch is the
        // whole cluster rather than whatever arrived first.
        let deadline = tokio::time::Instant::now() + self.cfg.timeout.mul_f64(0.4);
        while !self.cache.settled() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(SYNC_POLL).await;
        }
        // One cheap request per run proves the API server answers now; the watches alone
        // cannot tell "nothing changed" from "unreachable".
        let probe = tokio::time::timeout(self.cfg.timeout / 2, client.apiserver_version()).await;
        let (version, probe_error) = match probe {
            Ok(Ok(info)) => (Some(info.git_version), None),
            Ok(Err(kube::Error::Api(s))) if s.code == 401 => (
                None,
                Some("api server: 401 unauthorized: the token is invalid or expired".to_owned()),
            ),
            Ok(Err(e)) => (None, Some(format!("api server: {e}"))),
            Err(_) => (
                None,
                Some(format!(
                    "api server: no answer within {}",
                    humantime::format_duration(self.cfg.timeout / 2)
                )),
            ),
        };
        let summary = Summary {
            cluster: &self.cfg.cluster,
            now_ms,
            timeout: self.cfg.timeout,
            version,
            all_stale: probe_error.is_some(),
        };
        let mut out = summary.build(&self.cache)?;
        out.problems.extend(probe_error);
        if out.resources.len() <= 1 && !out.problems.is_empty() {
            // Only the cluster resource, and nothing was ever read: there is nothing to show.
            return Err(CollectorError::Kubernetes(out.problems.join("; ")));
        }
        Ok(out)
    }
}

/// Turns the cache into one run's resources and samples.
struct Summary<'a> {
    cluster: &'a str,
    now_ms: i64,
    timeout: Duration,
    version: Option<String>,
    /// The API server did not answer this run: everything is re-sent stale.
    all_stale: bool,
}

impl Summary<'_> {
    fn id(
        r: Result<ResourceId, warden_shared::ids::IdError>,
        what: &str,
    ) -> Result<ResourceId, CollectorError> {
        r.map_err(|source| CollectorError::ResourceId {
            what: what.to_owned(),
            source,
        })
    }

    /// Checks a table's health, adding a problem when it is failing or not yet synced; true
    /// when its objects are to be re-sent stale.
    fn stale<V>(&self, t: &Table<V>, problems: &mut Vec<String>) -> bool {
        if let Some(e) = &t.error {
            problems.push(format!("{}: {e}", t.scope));
        } else if !t.synced && t.started.elapsed() > self.timeout {
            problems.push(format!(
                "{}: initial list not complete after {}",
                t.scope,
                humantime::format_duration(self.timeout)
            ));
        }
        self.all_stale || t.error.is_some()
    }

    fn push(
        out: &mut Collected,
        r: Resource,
        stale: bool,
        samples: impl IntoIterator<Item = (String, f64)>,
        now_ms: i64,
    ) {
        if stale {
            out.resources.push(super::proxmox::api::mark_stale(r));
        } else {
            for (metric, v) in samples {
                out.sample(&r.id, metric, now_ms, v);
            }
            out.resources.push(r);
        }
    }

    fn build(&self, cache: &Cache) -> Result<Collected, CollectorError> {
        let mut out = Collected::default();
        let cluster_id = Self::id(canonical::k8s_cluster(self.cluster), "the cluster")?;
        let now = self.now_ms;

        // Warning events first: they are attached to the objects they are about.
        let mut warnings: HashMap<(String, String, String), (i64, &EventInfo)> = HashMap::new();
        let mut event_tables = Vec::new();
        for t in &cache.events {
            let t = lock(t);
            self.stale(&t, &mut out.problems);
            event_tables.push(t);
        }
        let mut cluster_warnings = 0;
        for t in &event_tables {
            for (_, e) in t.entries.values() {
                if e.last_ms.is_some_and(|ms| now - ms > EVENT_WINDOW_MS) {
                    continue;
                }
                cluster_warnings += e.count;
                let slot = warnings
                    .entry((e.kind.clone(), e.namespace.clone(), e.name.clone()))
                    .or_insert((0, e));
                slot.0 += e.count;
                if e.last_ms > slot.1.last_ms {
                    slot.1 = e;
                }
            }
        }
        let warning_of = |kind: &str, ns: &str, name: &str| {
            warnings.get(&(kind.to_owned(), ns.to_owned(), name.to_owned()))
        };
        let add_warning =
            |r: &mut Resource, w: Option<&(i64, &EventInfo)>, samples: &mut Vec<(String, f64)>| {
                if let Some((count, e)) = w {
                    r.attrs.push((
                        "last_warning".into(),
                        format!("{}: {}", e.reason, e.message).into(),
                    ));
                    if let Some(ms) = e.last_ms {
                        r.attrs.push(("last_warning_ms".into(), Value::Int(ms)));
                    }
                    samples.push((metric::WARNING_EVENTS_1H.into(), *count as f64));
                }
            };

        // Nodes.
        let mut nodes_total = 0;
        let mut nodes_ready = 0;
        let mut nodes_complete = true;
        for t in &cache.nodes {
            let t = lock(t);
            let stale = self.stale(&t, &mut out.problems);
            nodes_complete &= t.synced;
            for (name, (_, n)) in &t.entries {
                let id = Self::id(canonical::k8s_node(self.cluster, name), name)?;
                nodes_total += 1;
                if n.ready == Some(true) {
                    nodes_ready += 1;
                }
                let status = match n.ready {
                    Some(true) => "Ready",
                    Some(false) => "NotReady",
                    None => "Unknown",
                };
                let mut attrs = vec![
                    (metric::READY.into(), Value::from(n.ready)),
                    ("unschedulable".into(), Value::Bool(n.unschedulable)),
                    (
                        "kubelet_version".into(),
                        Value::from(n.kubelet_version.clone()),
                    ),
                ];
                for ((_, attr), v) in PRESSURE.iter().zip(n.pressure) {
                    attrs.push(((*attr).into(), Value::from(v)));
                }
                let mut r = Resource {
                    id,
                    name: name.clone(),
                    parent: Some(cluster_id.clone()),
                    status: status.into(),
                    attrs,
                };
                let mut samples: Vec<(String, f64)> = n
                    .ready
                    .map(|ready| (metric::READY.to_owned(), f64::from(u8::from(ready))))
                    .into_iter()
                    .collect();
                add_warning(&mut r, warning_of("Node", "", name), &mut samples);
                Self::push(&mut out, r, stale, samples, now);
            }
        }

        // Pods.
        let mut phases: HashMap<String, i64> = HashMap::new();
        let mut pods_total = 0;
        let mut pods_complete = true;
        for t in &cache.pods {
            let t = lock(t);
            let stale = self.stale(&t, &mut out.problems);
            pods_complete &= t.synced;
            for (_, p) in t.entries.values() {
                pods_total += 1;
                *phases.entry(p.phase.clone()).or_default() += 1;
                let id = Self::id(
                    canonical::pod(self.cluster, &p.namespace, &p.name),
                    &format!("pod {}/{}", p.namespace, p.name),
                )?;
                let parent = match &p.node {
                    Some(node) => Self::id(canonical::k8s_node(self.cluster, node), node)?,
                    None => cluster_id.clone(),
                };
                let mut attrs = vec![
                    ("namespace".into(), Value::from(p.namespace.as_str())),
                    ("phase".into(), Value::from(p.phase.as_str())),
                    (metric::READY.into(), Value::from(p.ready)),
                    (metric::RESTARTS.into(), Value::Int(p.restarts)),
                    ("node".into(), Value::from(p.node.clone())),
                ];
                if let Some(reason) = &p.waiting_reason {
                    attrs.push(("waiting_reason".into(), reason.as_str().into()));
                }
                if let Some(reason) = &p.last_termination_reason {
                    attrs.push(("last_termination_reason".into(), reason.as_str().into()));
                }
                if let Some(code) = p.last_exit_code {
                    attrs.push(("last_exit_code".into(), Value::Int(code)));
                }
                if let Some((kind, name)) = &p.workload {
                    let w = Self::id(
                        canonical::k8s_workload(self.cluster, &p.namespace, kind, name),
                        name,
                    )?;
                    attrs.push(("workload".into(), w.as_str().into()));
                }
                if let Some(ms) = p.created_ms {
                    attrs.push(("created_ms".into(), Value::Int(ms)));
                }
                let mut r = Resource {
                    id,
                    name: p.name.clone(),
                    parent: Some(parent),
                    status: p.status.clone(),
                    attrs,
                };
                let mut samples = vec![(metric::RESTARTS.to_owned(), p.restarts as f64)];
                if let Some(ready) = p.ready {
                    samples.push((metric::READY.into(), f64::from(u8::from(ready))));
                }
                add_warning(
                    &mut r,
                    warning_of("Pod", &p.namespace, &p.name),
                    &mut samples,
                );
                Self::push(&mut out, r, stale, samples, now);
            }
        }

        // Deployments, statefulsets, daemonsets, jobs.
        for t in &cache.workloads {
            let t = lock(t);
            let stale = self.stale(&t, &mut out.problems);
            for (_, w) in t.entries.values() {
                let id = Self::id(
                    canonical::k8s_workload(self.cluster, &w.namespace, w.kind, &w.name),
                    &format!("{} {}/{}", w.kind, w.namespace, w.name),
                )?;
                let mut attrs = vec![
                    ("namespace".into(), Value::from(w.namespace.as_str())),
                    ("kind".into(), Value::from(w.kind)),
                ];
                let mut samples = Vec::new();
                let status = if let Some(r) = w.replicas {
                    attrs.extend([
                        ("desired".into(), Value::Int(r.desired)),
                        (metric::READY.into(), Value::Int(r.ready)),
                        ("available".into(), Value::Int(r.available)),
                        ("updated".into(), Value::Int(r.updated)),
                    ]);
                    let unavailable = (r.desired - r.available).max(0);
                    samples.extend([
                        (metric::REPLICAS_DESIRED.to_owned(), r.desired as f64),
                        (metric::REPLICAS_READY.to_owned(), r.ready as f64),
                        (metric::REPLICAS_UNAVAILABLE.to_owned(), unavailable as f64),
                    ]);
                    if unavailable == 0 {
                        "Available"
                    } else {
                        "Degraded"
                    }
                } else if let Some(j) = &w.job {
                    attrs.extend([
                        ("active".into(), Value::Int(j.active)),
                        ("succeeded".into(), Value::Int(j.succeeded)),
                        ("failed".into(), Value::Int(j.failed)),
                    ]);
                    if let Some(reason) = &j.reason {
                        attrs.push(("failure_reason".into(), reason.as_str().into()));
                    }
                    if let Some(message) = &j.message {
                        attrs.push(("failure_message".into(), message.as_str().into()));
                    }
                    samples.push((
                        metric::JOB_FAILED.to_owned(),
                        f64::from(u8::from(j.state == "Failed")),
                    ));
                    j.state
                } else {
                    "Unknown"
                };
                let mut r = Resource {
                    id,
                    name: w.name.clone(),
                    parent: Some(cluster_id.clone()),
                    status: status.into(),
                    attrs,
                };
                add_warning(
                    &mut r,
                    warning_of(kind_name(w.kind), &w.namespace, &w.name),
                    &mut samples,
                );
                Self::push(&mut out, r, stale, samples, now);
            }
        }

        // Persistent volume claims.
        for t in &cache.pvcs {
            let t = lock(t);
            let stale = self.stale(&t, &mut out.problems);
            for (_, c) in t.entries.values() {
                let id = Self::id(
                    canonical::pvc(self.cluster, &c.namespace, &c.name),
                    &format!("pvc {}/{}", c.namespace, c.name),
                )?;
                let mut samples = Vec::new();
                if let Some(b) = c.capacity_bytes {
                    samples.push((metric::CAPACITY_BYTES.to_owned(), b));
                }
                let mut r = Resource {
                    id,
                    name: c.name.clone(),
                    parent: Some(cluster_id.clone()),
                    status: c.phase.clone().unwrap_or_else(|| "Unknown".into()),
                    attrs: vec![
                        ("namespace".into(), Value::from(c.namespace.as_str())),
                        ("storage_class".into(), Value::from(c.storage_class.clone())),
                        ("volume".into(), Value::from(c.volume.clone())),
                        ("requested_bytes".into(), Value::from(c.requested_bytes)),
                    ],
                };
                add_warning(
                    &mut r,
                    warning_of("PersistentVolumeClaim", &c.namespace, &c.name),
                    &mut samples,
                );
                Self::push(&mut out, r, stale, samples, now);
            }
        }

        // The cluster itself, first in the list.
        let mut attrs = vec![("version".into(), Value::from(self.version.clone()))];
        // Counts only from complete lists: a partial count would be a wrong number.
        let mut samples = vec![(
            metric::WARNING_EVENTS_1H.to_owned(),
            cluster_warnings as f64,
        )];
        if nodes_complete {
            samples.push((metric::NODES.to_owned(), f64::from(nodes_total)));
            samples.push((metric::NODES_READY.to_owned(), f64::from(nodes_ready)));
        }
        if pods_complete {
            samples.push((metric::PODS.to_owned(), f64::from(pods_total)));
            for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
                let n = phases.get(phase).copied().unwrap_or(0);
                samples.push((
                    metric::labelled(metric::PODS_BY_PHASE, "phase", phase),
                    n as f64,
                ));
            }
        }
        if let Some(w) = event_tables
            .iter()
            .flat_map(|t| t.entries.values().map(|(_, e)| e))
            .filter(|e| e.last_ms.is_some_and(|ms| now - ms <= EVENT_WINDOW_MS))
            .max_by_key(|e| e.last_ms)
        {
            attrs.push((
                "last_warning".into(),
                format!(
                    "{} {}/{}: {}: {}",
                    w.kind, w.namespace, w.name, w.reason, w.message
                )
                .into(),
            ));
        }
        drop(event_tables);
        let cluster = Resource {
            id: cluster_id,
            name: self.cluster.to_owned(),
            parent: None,
            status: if self.all_stale {
                "unreachable"
            } else {
                "reachable"
            }
            .into(),
            attrs,
        };
        Self::push(&mut out, cluster, self.all_stale, samples, now);
        out.resources.rotate_right(1);
        Ok(out)
    }
}

/// The Kubernetes `kind` of a workload kind word, as events name it.
fn kind_name(kind: &str) -> &'static str {
    match kind {
        "deployment" => "Deployment",
        "statefulset" => "StatefulSet",
        "daemonset" => "DaemonSet",
        "job" => "Job",
        _ => "",
    }
}

fn time_ms(t: &Time) -> i64 {
    t.0.as_millisecond()
}

fn condition(conds: Option<&[impl ConditionLike]>, kind: &str) -> Option<bool> {
    conds?
        .iter()
        .find(|c| c.kind() == kind)
        .and_then(|c| match c.status() {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        })
}

/// The `type`/`status` pair every Kubernetes condition has.
trait ConditionLike {
    fn kind(&self) -> &str;
    fn status(&self) -> &str;
}

macro_rules! condition_like {
    ($($t:ty),*) => {$(
        impl ConditionLike for $t {
            fn kind(&self) -> &str { &self.type_ }
            fn status(&self) -> &str { &self.status }
        }
    )*};
}
condition_like!(
    k8s_openapi::api::core::v1::NodeCondition,
    k8s_openapi::api::core::v1::PodCondition,
    k8s_openapi::api::batch::v1::JobCondition
);

fn node_info(n: &Node) -> NodeInfo {
    let conds = n.status.as_ref().and_then(|s| s.conditions.as_deref());
    NodeInfo {
        ready: condition(conds, "Ready"),
        pressure: PRESSURE.map(|(kind, _)| condition(conds, kind)),
        unschedulable: n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        kubelet_version: n
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.clone()),
    }
}

fn pod_info(p: &Pod) -> PodInfo {
    let status = p.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    let containers = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect::<Vec<_>>();
    let restarts = containers.iter().map(|c| i64::from(c.restart_count)).sum();
    let waiting_reason = containers
        .iter()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .next();
    let last = containers
        .iter()
        .filter_map(|c| c.last_state.as_ref()?.terminated.as_ref())
        .max_by_key(|t| t.finished_at.as_ref().map(time_ms));
    let ready = condition(status.and_then(|s| s.conditions.as_deref()), "Ready");
    let shown = if p.metadata.deletion_timestamp.is_some() {
        "Terminating".to_owned()
    } else if let Some(reason) = &waiting_reason {
        reason.clone()
    } else if let Some(reason) = status.and_then(|s| s.reason.clone()) {
        reason
    } else {
        phase.clone()
    };
    PodInfo {
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
        phase,
        status: shown,
        waiting_reason,
        last_termination_reason: last.and_then(|t| t.reason.clone()),
        last_exit_code: last.map(|t| i64::from(t.exit_code)),
        restarts,
        ready,
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        workload: workload_of(p),
        created_ms: p.metadata.creation_timestamp.as_ref().map(time_ms),
    }
}

/// The workload that owns a pod: its controller, with a ReplicaSet resolved to its
/// Deployment by the `pod-template-hash` naming rule (`<deployment>-<hash>`).
fn workload_of(p: &Pod) -> Option<(&'static str, String)> {
    let owner = p
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    Some(match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = p.labels().get("pod-template-hash");
            match hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
                Some(deployment) => ("deployment", deployment.to_owned()),
                None => ("replicaset", owner.name.clone()),
            }
        }
        "StatefulSet" => ("statefulset", owner.name.clone()),
        "DaemonSet" => ("daemonset", owner.name.clone()),
        "Job" => ("job", owner.name.clone()),
        _ => return None,
    })
}

fn workload(
    kind: &'static str,
    meta: &impl ResourceExt,
    replicas: Option<Replicas>,
) -> WorkloadInfo {
    WorkloadInfo {
        kind,
        namespace: meta.namespace().unwrap_or_default(),
        name: meta.name_any(),
        replicas,
        job: None,
    }
}

fn deployment_info(d: &Deployment) -> WorkloadInfo {
    let desired = i64::from(d.spec.replicas.unwrap_or(1));
    let replicas = d.status.as_ref().map(|s| Replicas {
        desired,
        ready: i64::from(s.ready_replicas.unwrap_or(0)),
        available: i64::from(s.available_replicas.unwrap_or(0)),
        updated: i64::from(s.updated_replicas.unwrap_or(0)),
    });
    workload("deployment", d, replicas)
}

fn statefulset_info(s: &StatefulSet) -> WorkloadInfo {
    let desired = i64::from(s.spec.replicas.unwrap_or(1));
    let replicas = s.status.as_ref().map(|st| Replicas {
        desired,
        ready: i64::from(st.ready_replicas.unwrap_or(0)),
        available: i64::from(st.available_replicas.unwrap_or(0)),
        updated: i64::from(st.updated_replicas.unwrap_or(0)),
    });
    workload("statefulset", s, replicas)
}

fn daemonset_info(d: &DaemonSet) -> WorkloadInfo {
    let replicas = d.status.as_ref().map(|s| Replicas {
        desired: i64::from(s.desired_number_scheduled),
        ready: i64::from(s.number_ready),
        available: i64::from(s.number_available.unwrap_or(0)),
        updated: i64::from(s.updated_number_scheduled.unwrap_or(0)),
    });
    workload("daemonset", d, replicas)
}

fn job_info(j: &Job) -> WorkloadInfo {
    let s = j.status.as_ref();
    let conds = s.and_then(|s| s.conditions.as_deref());
    let failed_cond = conds.and_then(|c| {
        c.iter()
            .find(|c| (c.type_ == "Failed" || c.type_ == "FailureTarget") && c.status == "True")
    });
    let state = if failed_cond.is_some() {
        "Failed"
    } else if condition(conds, "Complete") == Some(true) {
        "Complete"
    } else if condition(conds, "Suspended") == Some(true) {
        "Suspended"
    } else {
        "Running"
    };
    let mut w = workload("job", j, None);
    w.job = Some(JobInfo {
        active: i64::from(s.and_then(|s| s.active).unwrap_or(0)),
        succeeded: i64::from(s.and_then(|s| s.succeeded).unwrap_or(0)),
        failed: i64::from(s.and_then(|s| s.failed).unwrap_or(0)),
        state,
        reason: failed_cond.and_then(|c| c.reason.clone()),
        message: failed_cond.and_then(|c| c.message.clone()),
    });
    w
}

fn pvc_info(c: &PersistentVolumeClaim) -> PvcInfo {
    let storage = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| {
        m.and_then(|m| m.get("storage"))
            .and_then(|q| quantity_bytes(&q.0))
    };
    PvcInfo {
        namespace: c.namespace().unwrap_or_default(),
        name: c.name_any(),
        phase: c.status.as_ref().and_then(|s| s.phase.clone()),
        storage_class: c.spec.as_ref().and_then(|s| s.storage_class_name.clone()),
        volume: c.spec.as_ref().and_then(|s| s.volume_name.clone()),
        requested_bytes: storage(
            c.spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref()),
        ),
        capacity_bytes: storage(c.status.as_ref().and_then(|s| s.capacity.as_ref())),
    }
}

fn event_info(e: &CoreEvent) -> EventInfo {
    let mut message = e.message.clone().unwrap_or_default();
    if message.len() > MAX_EVENT_MESSAGE {
        let mut cut = MAX_EVENT_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let last_ms = e
        .last_timestamp
        .as_ref()
        .map(time_ms)
        .or_else(|| e.event_time.as_ref().map(|t| t.0.as_millisecond()))
        .or_else(|| e.first_timestamp.as_ref().map(time_ms))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(time_ms));
    EventInfo {
        kind: e.involved_object.kind.clone().unwrap_or_default(),
        namespace: e.involved_object.namespace.clone().unwrap_or_default(),
        name: e.involved_object.name.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        message,
        count: i64::from(e.count.unwrap_or(1).max(1)),
        last_ms,
    }
}

/// Bytes in a Kubernetes quantity (`10Gi`, `500M`, `1.5Ti`, `100`); `None` if unparseable.
fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("10Gi"), Some(10.0 * 1024f64.powi(3)));
        assert_eq!(quantity_bytes("500M"), Some(5e8));
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536.0));
        assert_eq!(quantity_bytes("100"), Some(100.0));
        assert_eq!(quantity_bytes("1e3"), Some(1000.0));
        assert_eq!(quantity_bytes("lots"), None);
        assert_eq!(quantity_bytes("5Xi"), None);
    }

    fn fixture<T: DeserializeOwned>(name: &str) -> T {
        let path = format!(
            "{}/../tests/fixtures/k8s/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn crashlooping_pod_from_a_real_capture() {
        let p = pod_info(&fixture::<Pod>("pod.crashloopbackoff.json"));
        assert_eq!(p.status, "CrashLoopBackOff");
        assert_eq!(p.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
        assert!(p.restarts > 0, "{p:?}");
        assert_eq!(p.ready, Some(false));
    }

    #[test]
    fn node_and_workloads_from_real_captures() {
        let n = node_info(&fixture::<Node>("node.minikube.ready.json"));
        assert_eq!(n.ready, Some(true));
        assert_eq!(n.pressure, [Some(false), Some(false), Some(false), None]);
        let ok = deployment_info(&fixture("deployment.available.json"));
        let bad = deployment_info(&fixture("deployment.unavailable.json"));
        let (ok, bad) = (ok.replicas.unwrap(), bad.replicas.unwrap());
        assert_eq!(ok.available, ok.desired);
        assert!(bad.available < bad.desired, "{bad:?}");
        let job = job_info(&fixture("job.complete.json")).job.unwrap();
        assert_eq!(job.state, "Complete");
        let pvc = pvc_info(&fixture("pvc.bound.json"));
        assert_eq!(pvc.phase.as_deref(), Some("Bound"));
    }
}
