//! The Kubernetes part of the ground-truth fleet: nodes, pods, workloads, jobs and volume
//! claims, and the cluster's counts.

use super::*;

impl Gen {
    pub(super) fn kubernetes(&mut self) {
        self.agent(K8S_AGENT, &["kubernetes"]);
        let now = self.now;
        let cluster = format!("k8s-cluster:{K8S}");
        let mut pods = 0;
        let mut phases: BTreeMap<&str, u32> = BTreeMap::new();
        let mut ready_nodes = 0;

        let nodes: Vec<&str> = std::iter::once("cp-1").chain(K8S_WORKERS).collect();
        for &n in &nodes {
            let not_ready = n == "worker-4" && self.has(Trouble::K8sNodeNotReady);
            let disk_pressure = n == "worker-3" && self.has(Trouble::K8sNodePressure);
            ready_nodes += u32::from(!not_ready);
            let mut attrs = json!({
                metric::READY: !not_ready,
                "unschedulable": false,
                "kubelet_version": "v1.31.4",
                "memory_pressure": false,
                "disk_pressure": disk_pressure,
                "pid_pressure": false,
                "network_unavailable": false,
            });
            if disk_pressure {
                attrs["last_warning"] = json!(
                    "FreeDiskSpaceFailed: Failed to garbage collect required amount of images. \
                     Attempted to free 9663676416 bytes, but only found 0 bytes eligible to free."
                );
                attrs["last_warning_ms"] = json!(now - 3 * MIN);
            }
            if not_ready {
                attrs["last_warning"] =
                    json!("NodeNotReady: Node worker-4 status is now: NodeNotReady");
                attrs["last_warning_ms"] = json!(now - 4 * MIN);
            }
            let i = self.add(
                K8S_AGENT,
                "kubernetes",
                &format!("k8s-node:{K8S}/{n}"),
                n,
                Some(&cluster),
                if not_ready { "NotReady" } else { "Ready" },
                attrs,
            );
            self.gauge(i, metric::READY, f64::from(u8::from(!not_ready)));
            if disk_pressure {
                self.gauge(i, metric::WARNING_EVENTS_1H, 6.0);
            }
        }

        // (namespace, kind, name, replicas); daemonsets run one pod per node.
        let workloads: [(&str, &str, &str, usize); 12] = [
            ("kube-system", "deployment", "coredns", 2),
            ("kube-system", "daemonset", "kube-proxy", 5),
            ("monitoring", "daemonset", "node-exporter", 5),
            ("monitoring", "statefulset", "prometheus", 1),
            ("monitoring", "deployment", "grafana", 1),
            ("shop", "deployment", "web", 3),
            ("shop", "deployment", "checkout", 3),
            ("shop", "deployment", "api", 3),
            ("shop", "deployment", "cart", 2),
            ("shop", "deployment", "search", 2),
            ("shop", "statefulset", "db", 2),
            ("shop", "statefulset", "cache", 3),
        ];
        for (ns, kind, name, replicas) in workloads {
            let wid = format!("k8s-workload:{K8S}/{ns}/{kind}/{name}");
            let mut available = replicas;
            let mut updated = replicas;
            if name == "checkout" && self.has(Trouble::PodCrashLoop) {
                available -= 1;
            }
            if name == "search" && self.has(Trouble::PodOomKilled) {
                available -= 1;
            }
            if name == "db" && self.has(Trouble::ReplicasUnavailable) {
                available = 0;
            }
            if name == "api" && self.has(Trouble::PodImagePull) {
                // A rollout: the new pod cannot start, the old ones keep serving.
                updated = 1;
            }
            let unavailable = replicas - available;
            let mut attrs = json!({
                "namespace": ns,
                "kind": kind,
                "desired": replicas,
                metric::READY: available,
                "available": available,
                "updated": updated,
            });
            if name == "db" && self.has(Trouble::ReplicasUnavailable) {
                attrs["last_warning"] = json!(
                    "Unhealthy: Readiness probe failed: pg_isready: no response from 10.42.3.17:5432"
                );
            }
            let w = self.add(
                K8S_AGENT,
                "kubernetes",
                &wid,
                name,
                Some(&cluster),
                if unavailable == 0 {
                    "Available"
                } else {
                    "Degraded"
                },
                attrs,
            );
            self.gauge(w, metric::REPLICAS_DESIRED, replicas as f64);
            self.gauge(w, metric::REPLICAS_READY, available as f64);
            self.gauge(w, metric::REPLICAS_UNAVAILABLE, unavailable as f64);
            for r in 0..replicas {
                let (pod, node) = match kind {
                    "statefulset" => (format!("{name}-{r}"), K8S_WORKERS[r % 4]),
                    "daemonset" => (
                        format!("{name}-{}", alnum(hash(&format!("{name}{r}")), 5)),
                        nodes[r % nodes.len()],
                    ),
                    _ => (pod_name(name, r), K8S_WORKERS[(r + name.len()) % 4]),
                };
                let mut p = PodSpec::running(ns, &pod, node, &wid, now - 9 * DAY);
                if name == "checkout" && r == 0 && self.has(Trouble::PodCrashLoop) {
                    p.status = "CrashLoopBackOff";
                    p.ready = false;
                    p.restarts = 14;
                    p.extra = json!({
                        "waiting_reason": "CrashLoopBackOff",
                        "last_termination_reason": "Error",
                        "last_exit_code": 1,
                        "last_warning": format!(
                            "BackOff: Back-off restarting failed container checkout in pod \
                             {pod}_shop"
                        ),
                        "last_warning_ms": now - MIN,
                    });
                }
                if name == "search" && r == 0 && self.has(Trouble::PodOomKilled) {
                    p.status = "CrashLoopBackOff";
                    p.ready = false;
                    p.restarts = 23;
                    p.extra = json!({
                        "waiting_reason": "CrashLoopBackOff",
                        "last_termination_reason": "OOMKilled",
                        "last_exit_code": 137,
                        "last_warning": format!(
                            "BackOff: Back-off restarting failed container search in pod \
                             {pod}_shop"
                        ),
                        "last_warning_ms": now - 2 * MIN,
                    });
                }
                if name == "db" && self.has(Trouble::ReplicasUnavailable) {
                    p.ready = false;
                }
                if node == "worker-1"
                    && self.has(Trouble::K8sWarningStorm)
                    && p.extra.get("last_warning").is_none()
                {
                    p.extra = json!({
                        "last_warning": "DNSConfigForming: Nameserver limits were exceeded, some \
                                         nameservers have been omitted, the applied nameserver \
                                         line is: 10.0.0.2 10.0.0.3 10.0.0.4",
                        "last_warning_ms": now - 20 * SEC,
                    });
                    p.warnings = 20.0;
                }
                pods += 1;
                *phases.entry(p.phase).or_default() += 1;
                self.pod(&p);
            }
            if name == "api" && self.has(Trouble::PodImagePull) {
                let mut p =
                    PodSpec::running(ns, &image_pull_pod(), "worker-2", &wid, now - 20 * MIN);
                p.phase = "Pending";
                p.status = "ImagePullBackOff";
                p.ready = false;
                p.extra = json!({
                    "waiting_reason": "ImagePullBackOff",
                    "last_warning": "Failed: Failed to pull image \
                                     \"registry.example.com/shop/api:2.4.1\": rpc error: code = \
                                     NotFound desc = manifest unknown",
                    "last_warning_ms": now - 2 * MIN,
                });
                pods += 1;
                *phases.entry(p.phase).or_default() += 1;
                self.pod(&p);
            }
        }
        // A pod evicted under disk pressure last week, left for its logs.
        let mut evicted = PodSpec::running(
            "shop",
            &format!("search-{}-evctd", alnum(hash("search"), 10)),
            "worker-3",
            "",
            now - 6 * DAY,
        );
        evicted.workload = "";
        evicted.phase = "Failed";
        evicted.status = "Evicted";
        evicted.ready = false;
        pods += 1;
        *phases.entry(evicted.phase).or_default() += 1;
        self.pod(&evicted);
        // Static control-plane pods.
        for c in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let p = PodSpec::running(
                "kube-system",
                &format!("{c}-cp-1"),
                "cp-1",
                "",
                now - 30 * DAY,
            );
            pods += 1;
            *phases.entry(p.phase).or_default() += 1;
            self.pod(&p);
        }
        // Jobs: last night's ETL (failed in trouble), the hourly report.
        let etl = etl_job();
        // The report job is named by its hour; the pending one started before this hour's.
        let report = if self.has(Trouble::PodPending) {
            report_job(pending_since(now))
        } else {
            report_job(now)
        };
        for (job, ns) in [(etl.as_str(), "batch"), (report.as_str(), "batch")] {
            let wid = format!("k8s-workload:{K8S}/{ns}/job/{job}");
            let etl_failed = job == etl && self.has(Trouble::JobFailed);
            let pending = job == report && self.has(Trouble::PodPending);
            let (status, active, succeeded, failed) = match (etl_failed, pending) {
                (true, _) => ("Failed", 0, 0, 4),
                (_, true) => ("Running", 1, 0, 0),
                _ => ("Complete", 0, 1, 0),
            };
            let mut attrs = json!({
                "namespace": ns,
                "kind": "job",
                "active": active,
                "succeeded": succeeded,
                "failed": failed,
            });
            if etl_failed {
                attrs["failure_reason"] = json!("BackoffLimitExceeded");
                attrs["failure_message"] = json!("Job has reached the specified backoff limit");
            }
            let w = self.add(
                K8S_AGENT,
                "kubernetes",
                &wid,
                job,
                Some(&cluster),
                status,
                attrs,
            );
            self.gauge(w, metric::JOB_FAILED, f64::from(u8::from(etl_failed)));
            let started = if job == etl {
                last_daily(now, 120)
            } else {
                now.div_euclid(HOUR) * HOUR
            };
            let attempts = if etl_failed { 4 } else { 1 };
            for a in 0..attempts {
                let mut p = PodSpec::running(ns, &pod_name(job, a), "worker-3", &wid, started);
                if etl_failed {
                    p.phase = "Failed";
                    p.status = "Error";
                    p.ready = false;
                    p.extra = json!({"last_termination_reason": "Error", "last_exit_code": 2});
                } else if pending {
                    p.phase = "Pending";
                    p.status = "Pending";
                    p.node = None;
                    p.ready = false;
                    p.created_ms = pending_since(now);
                    p.extra = json!({
                        "last_warning": "FailedScheduling: 0/5 nodes are available: 1 node(s) \
                                         had untolerated taint {node-role.kubernetes.io/\
                                         control-plane: }, 4 Insufficient memory. preemption: \
                                         0/5 nodes are available",
                        "last_warning_ms": now - MIN,
                    });
                } else {
                    p.phase = "Succeeded";
                    p.status = "Succeeded";
                    p.ready = false;
                }
                pods += 1;
                *phases.entry(p.phase).or_default() += 1;
                self.pod(&p);
            }
        }
        // Volume claims.
        let mut claims = vec![
            ("shop", "data-db-0".to_owned(), "Bound"),
            ("shop", "data-db-1".to_owned(), "Bound"),
            ("shop", "uploads".to_owned(), "Bound"),
            (
                "monitoring",
                "prometheus-data-prometheus-0".to_owned(),
                "Bound",
            ),
            ("monitoring", "grafana".to_owned(), "Bound"),
        ];
        if self.has(Trouble::PvcPending) {
            claims.push(("shop", "uploads-v2".to_owned(), "Pending"));
        }
        for (ns, claim, phase) in claims {
            let bound = phase == "Bound";
            let mut attrs = json!({
                "namespace": ns,
                "storage_class": if bound { "longhorn" } else { "fast-ssd" },
                "volume": if bound { json!(format!("pvc-{:08x}", hash(&claim) & 0xFFFF_FFFF)) } else { Value::Null },
                "requested_bytes": 20.0 * GIB,
            });
            if !bound {
                attrs["last_warning"] =
                    json!("ProvisioningFailed: storageclass.storage.k8s.io \"fast-ssd\" not found");
            }
            let i = self.add(
                K8S_AGENT,
                "kubernetes",
                &format!("pvc:{K8S}/{ns}/{claim}"),
                &claim,
                Some(&cluster),
                phase,
                attrs,
            );
            if bound {
                self.gauge(i, metric::CAPACITY_BYTES, 20.0 * GIB);
            }
        }
        let c = self.add(
            K8S_AGENT,
            "kubernetes",
            &cluster,
            K8S,
            None,
            "reachable",
            json!({"version": "v1.31.4"}),
        );
        self.gauge(c, metric::NODES, nodes.len() as f64);
        self.gauge(c, metric::NODES_READY, f64::from(ready_nodes));
        self.gauge(c, metric::PODS, f64::from(pods));
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let n = phases.get(phase).copied().unwrap_or(0);
            self.gauge(
                c,
                &metric::labelled(metric::PODS_BY_PHASE, "phase", phase),
                f64::from(n),
            );
        }
        let storm = if self.has(Trouble::K8sWarningStorm) {
            412.0
        } else {
            0.0
        };
        self.gauge(c, metric::WARNING_EVENTS_1H, storm);
    }

    fn pod(&mut self, p: &PodSpec<'_>) {
        let id = format!("pod:{K8S}/{}/{}", p.ns, p.name);
        let parent = p.node.map_or_else(
            || format!("k8s-cluster:{K8S}"),
            |n| format!("k8s-node:{K8S}/{n}"),
        );
        let mut attrs = json!({
            "namespace": p.ns,
            "phase": p.phase,
            metric::READY: p.ready,
            metric::RESTARTS: p.restarts,
            "node": p.node,
            "created_ms": p.created_ms,
        });
        if !p.workload.is_empty() {
            attrs["workload"] = json!(p.workload);
        }
        if let (Value::Object(a), Value::Object(extra)) = (&mut attrs, &p.extra) {
            a.extend(extra.clone());
        }
        let i = self.add(
            K8S_AGENT,
            "kubernetes",
            &id,
            &p.name,
            Some(&parent),
            p.status,
            attrs,
        );
        self.gauge(i, metric::RESTARTS, p.restarts as f64);
        self.gauge(i, metric::READY, f64::from(u8::from(p.ready)));
        if p.extra.get("last_warning").is_some() {
            self.gauge(i, metric::WARNING_EVENTS_1H, p.warnings);
        }
    }
}

/// A pod as the Kubernetes collector describes it.
struct PodSpec<'a> {
    ns: &'a str,
    name: String,
    node: Option<&'a str>,
    workload: &'a str,
    phase: &'static str,
    status: &'static str,
    ready: bool,
    restarts: i64,
    created_ms: i64,
    extra: Value,
    /// Its Warning events in the last hour, when `extra` has a `last_warning`.
    warnings: f64,
}

impl<'a> PodSpec<'a> {
    fn running(ns: &'a str, name: &str, node: &'a str, workload: &'a str, created_ms: i64) -> Self {
        Self {
            ns,
            name: name.to_owned(),
            node: Some(node),
            workload,
            phase: "Running",
            status: "Running",
            ready: true,
            restarts: i64::try_from(hash(name) % 3).unwrap_or(0),
            created_ms,
            extra: json!({}),
            warnings: 3.0,
        }
    }
}

/// The pod of the `api` rollout that cannot pull its image.
pub(super) fn image_pull_pod() -> String {
    format!("api-{}-q8w2e", alnum(hash("api-2.4.1"), 10))
}

/// The nightly ETL job (named by its CronJob's schedule time, fixed here).
pub(super) fn etl_job() -> String {
    "nightly-etl-29450400".to_owned()
}
