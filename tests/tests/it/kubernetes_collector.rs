//! The Kubernetes collector against the Kubernetes API simulator: exact resources and values
//! from a known world, trouble arriving through watches without re-listing, namespace
//! include/exclude filtered by the server, and every failure mode giving degraded health with
//! the last good objects marked stale.

use std::time::Duration;
use warden_agent::collectors::{CollectorsConfig, DockerConfig, HostConfig, KubernetesConfig};
use warden_shared::telemetry::{HealthStatus, TelemetryBatch, Value};
use warden_sim::k8s::{Fault, K8sSim, K8sSimOptions, Kind, Pressure};
use warden_tests::collect::{assert_provenance_complete, resource, runtime, start, status, value};

const CLUSTER: &str = "lab";

fn config(sim: &K8sSim, dir: &std::path::Path) -> CollectorsConfig {
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    CollectorsConfig {
        host: HostConfig {
            enabled: false,
            ..HostConfig::default()
        },
        docker: DockerConfig {
            enabled: false,
            ..DockerConfig::default()
        },
        kubernetes: KubernetesConfig {
            enabled: true,
            cluster: CLUSTER.into(),
            kubeconfig: Some(kubeconfig),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ..KubernetesConfig::default()
        },
        ..CollectorsConfig::default()
    }
}

fn attr<'a>(b: &'a TelemetryBatch, id: &str, name: &str) -> &'a Value {
    let r = resource(b, id);
    r.attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{id} has no attribute {name}: {:?}", r.attrs))
}

fn has(b: &TelemetryBatch, id: &str) -> bool {
    b.resources.iter().any(|r| r.id.as_str() == id)
}

fn count(b: &TelemetryBatch, prefix: &str) -> usize {
    b.resources
        .iter()
        .filter(|r| r.id.as_str().starts_with(prefix))
        .count()
}

fn stale(b: &TelemetryBatch, id: &str) -> bool {
    resource(b, id)
        .attrs
        .iter()
        .any(|(k, v)| k == "stale" && *v == Value::Bool(true))
}

fn message(b: &TelemetryBatch) -> String {
    b.health
        .as_ref()
        .and_then(|h| h.message.clone())
        .unwrap_or_default()
}

/// A full, healthy batch (every pod of the world listed).
async fn synced(r: &mut warden_tests::collect::Running, pods: usize) -> TelemetryBatch {
    r.next_where("a healthy batch with every pod", |b| {
        status(b) == HealthStatus::Ok && count(b, "pod:") == pods
    })
    .await
}

#[test]
fn resources_and_values_match_the_api() {
    let sim = K8sSim::start(K8sSimOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let pods = sim.count(Kind::Pod);
    let nodes = sim.count(Kind::Node);
    assert!(pods >= 10 && nodes >= 3, "{pods} pods, {nodes} nodes");
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path()), "k8s-agent");
        let full = r
            .next_provenanced_where("a healthy batch with every pod", |b| {
                status(b) == HealthStatus::Ok && count(b, "pod:") == pods
            })
            .await;
        r.stop();
        assert_provenance_complete(&full);
        let b = full.batch;

        let cluster = format!("k8s-cluster:{CLUSTER}");
        assert_eq!(b.resources[0].id.as_str(), cluster);
        assert_eq!(resource(&b, &cluster).status, "reachable");
        assert_eq!(*attr(&b, &cluster, "version"), Value::from("v1.34.1"));
        assert_eq!(value(&b, &cluster, "nodes"), Some(nodes as f64));
        assert_eq!(value(&b, &cluster, "pods"), Some(pods as f64));
        assert_eq!(count(&b, "k8s-node:"), nodes);

        // Every pod as the API has it: status, restarts, node, parent.
        for obj in sim.objects(Kind::Pod) {
            let ns = obj["metadata"]["namespace"].as_str().unwrap();
            let name = obj["metadata"]["name"].as_str().unwrap();
            let id = format!("pod:{CLUSTER}/{ns}/{name}");
            let restarts: i64 = obj["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(
                    obj["status"]["initContainerStatuses"]
                        .as_array()
                        .into_iter()
                        .flatten(),
                )
                .map(|c| c["restartCount"].as_i64().unwrap())
                .sum();
            assert_eq!(value(&b, &id, "restarts"), Some(restarts as f64), "{id}");
            let node = obj["spec"]["nodeName"].as_str().unwrap();
            let p = resource(&b, &id);
            assert_eq!(
                p.parent.as_ref().map(|p| p.as_str().to_owned()),
                Some(format!("k8s-node:{CLUSTER}/{node}"))
            );
            assert_eq!(*attr(&b, &id, "namespace"), Value::from(ns));
            let phase = obj["status"]["phase"].as_str().unwrap();
            assert_eq!(*attr(&b, &id, "phase"), Value::from(phase), "{id}");
        }

        // Workloads: desired vs ready exactly as in their status.
        for (kind, word) in [
            (Kind::Deployment, "deployment"),
            (Kind::StatefulSet, "statefulset"),
            (Kind::DaemonSet, "daemonset"),
        ] {
            let objs = sim.objects(kind);
            assert!(!objs.is_empty(), "the world has {word}s");
            for obj in objs {
                let ns = obj["metadata"]["namespace"].as_str().unwrap();
                let name = obj["metadata"]["name"].as_str().unwrap();
                let id = format!("k8s-workload:{CLUSTER}/{ns}/{word}/{name}");
                let ready = match kind {
                    Kind::DaemonSet => &obj["status"]["numberReady"],
                    _ => &obj["status"]["readyReplicas"],
                };
                assert_eq!(
                    value(&b, &id, "replicas_ready"),
                    Some(ready.as_f64().unwrap_or(0.0)),
                    "{id}"
                );
            }
        }
        // A pod owned by a Deployment's ReplicaSet names the Deployment.
        let owned = b
            .resources
            .iter()
            .find(|r| {
                r.attrs.iter().any(|(k, v)| {
                    k == "workload" && matches!(v, Value::Text(t) if t.contains("/deployment/"))
                })
            })
            .expect("a pod owned by a deployment");
        assert!(owned.id.as_str().starts_with("pod:"));
        assert_eq!(count(&b, "pvc:"), sim.count(Kind::PersistentVolumeClaim));
    });
}

#[test]
fn trouble_arrives_through_watches_without_relisting() {
    let sim = K8sSim::start(K8sSimOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let pods = sim.count(Kind::Pod);
    let pod = sim
        .objects(Kind::Pod)
        .into_iter()
        .find(|p| p["metadata"]["namespace"] == "shop")
        .unwrap();
    let (ns, name) = (
        pod["metadata"]["namespace"].as_str().unwrap().to_owned(),
        pod["metadata"]["name"].as_str().unwrap().to_owned(),
    );
    let pod_id = format!("pod:{CLUSTER}/{ns}/{name}");
    let node = sim.keys(Kind::Node).into_iter().last().unwrap();
    let node_id = format!("k8s-node:{CLUSTER}/{node}");
    let job = sim
        .objects(Kind::Job)
        .into_iter()
        .next()
        .expect("the world has a job");
    let (job_ns, job_name) = (
        job["metadata"]["namespace"].as_str().unwrap().to_owned(),
        job["metadata"]["name"].as_str().unwrap().to_owned(),
    );
    let pvc = sim
        .objects(Kind::PersistentVolumeClaim)
        .into_iter()
        .next()
        .unwrap();
    let (pvc_ns, pvc_name) = (
        pvc["metadata"]["namespace"].as_str().unwrap().to_owned(),
        pvc["metadata"]["name"].as_str().unwrap().to_owned(),
    );
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path()), "k8s-agent");
        synced(&mut r, pods).await;
        let lists = sim.list_count("pods");
        assert!(lists >= 1);

        assert!(sim.crashloop_pod(&ns, &name));
        assert!(sim.set_node_ready(&node, false));
        assert!(sim.set_node_pressure(&node, Pressure::Memory, true));
        assert!(sim.fail_job(&job_ns, &job_name));
        assert!(sim.set_pvc_phase(&pvc_ns, &pvc_name, "Lost"));
        let job_id = format!("k8s-workload:{CLUSTER}/{job_ns}/job/{job_name}");
        let pvc_id = format!("pvc:{CLUSTER}/{pvc_ns}/{pvc_name}");
        let b = r
            .next_where("the trouble", |b| {
                has(b, &pod_id)
                    && resource(b, &pod_id).status == "CrashLoopBackOff"
                    && has(b, &node_id)
                    && resource(b, &node_id).status == "NotReady"
                    && has(b, &job_id)
                    && resource(b, &job_id).status == "Failed"
                    && has(b, &pvc_id)
                    && resource(b, &pvc_id).status == "Lost"
            })
            .await;
        assert_eq!(
            *attr(&b, &pod_id, "waiting_reason"),
            Value::from("CrashLoopBackOff")
        );
        assert!(value(&b, &pod_id, "restarts").unwrap() >= 1.0);
        assert_eq!(*attr(&b, &node_id, "memory_pressure"), Value::Bool(true));
        assert_eq!(value(&b, &node_id, "ready"), Some(0.0));
        assert_eq!(value(&b, &job_id, "job_failed"), Some(1.0));
        assert!(matches!(
            attr(&b, &job_id, "failure_reason"),
            Value::Text(_)
        ));
        // The simulator records the kubelet's BackOff Warning event; it lands on the pod.
        let b = r
            .next_where("the BackOff warning on the pod", |b| {
                has(b, &pod_id) && value(b, &pod_id, "warning_events_1h").is_some()
            })
            .await;
        assert!(
            matches!(attr(&b, &pod_id, "last_warning"), Value::Text(t) if t.starts_with("BackOff"))
        );

        // OOMKilled shows as the last termination reason.
        assert!(sim.oom_kill(&ns, &name));
        r.next_where("OOMKilled", |b| {
            has(b, &pod_id)
                && resource(b, &pod_id)
                    .attrs
                    .iter()
                    .any(|(k, v)| k == "last_termination_reason" && *v == Value::from("OOMKilled"))
        })
        .await;

        // A node that goes away disappears; its pods stay (they are not deleted by the API).
        sim.delete(Kind::Node, "", &node).unwrap();
        r.next_where("the node gone", |b| {
            !has(b, &node_id) && count(b, "k8s-node:") > 0
        })
        .await;
        r.stop();
        // All of it came through watches: nothing was listed again.
        assert_eq!(sim.list_count("pods"), lists, "pods were re-listed");
        assert!(sim.watch_count("pods") >= 1);
    });
}

#[test]
fn namespaces_are_filtered_by_the_api_server() {
    let sim = K8sSim::start(K8sSimOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let pods = sim.objects(Kind::Pod);
    let outside = pods
        .iter()
        .filter(|p| p["metadata"]["namespace"] != "kube-system")
        .count();
    let shop = pods
        .iter()
        .filter(|p| p["metadata"]["namespace"] == "shop")
        .count();
    assert!(shop > 0 && outside > shop);
    runtime().block_on(async {
        let mut cfg = config(&sim, tmp.path());
        cfg.kubernetes.exclude_namespaces = vec!["kube-system".into()];
        let mut r = start(&cfg, "k8s-agent");
        let b = synced(&mut r, outside).await;
        r.stop();
        assert!(
            b.resources
                .iter()
                .all(|r| !r.id.as_str().contains("/kube-system/"))
        );
        assert!(sim.requests().iter().any(|q| q.path == "/api/v1/pods"
            && q.query("fieldSelector") == Some("metadata.namespace!=kube-system")));

        let mut cfg = config(&sim, tmp.path());
        cfg.kubernetes.namespaces = vec!["shop".into()];
        let mut r = start(&cfg, "k8s-agent");
        let b = synced(&mut r, shop).await;
        r.stop();
        assert!(
            b.resources
                .iter()
                .filter(|r| r.id.as_str().starts_with("pod:"))
                .all(|r| r.id.as_str().starts_with(&format!("pod:{CLUSTER}/shop/")))
        );
        assert!(
            sim.requests()
                .iter()
                .any(|q| q.path == "/api/v1/namespaces/shop/pods")
        );
    });
}

/// After a good start, `fault` makes runs degraded, with every object (or those of `kind`)
/// re-sent stale and without samples, and the message containing `expect`. Clearing the fault
/// recovers.
fn degrades_and_recovers(fault: Fault, expect: &str, all_stale: bool) {
    let sim = K8sSim::start(K8sSimOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let pods = sim.count(Kind::Pod);
    let pod = sim.keys(Kind::Pod).into_iter().next().unwrap();
    let pod_id = format!("pod:{CLUSTER}/{pod}");
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path()), "k8s-agent");
        synced(&mut r, pods).await;
        sim.set_fault(fault.clone());
        // Watches only notice when they reconnect; drop them so the fault is met at once.
        sim.drop_watches();
        let b = r
            .next_where(&format!("degraded with {expect:?}"), |b| {
                status(b) == HealthStatus::Degraded && message(b).contains(expect)
            })
            .await;
        if all_stale {
            assert!(stale(&b, &pod_id), "{pod_id} not stale: {}", message(&b));
            assert_eq!(count(&b, "pod:"), pods, "the last good pods are kept");
            assert!(
                b.samples
                    .iter()
                    .all(|s| !s.resource_id.as_str().starts_with("pod:")),
                "stale pods carry no samples"
            );
        }
        sim.clear_faults();
        r.next_where("recovered", |b| {
            status(b) == HealthStatus::Ok && has(b, &pod_id) && !stale(b, &pod_id)
        })
        .await;
        r.stop();
    });
}

#[test]
fn bad_token_keeps_last_good_values_stale() {
    degrades_and_recovers(Fault::BadToken, "401 unauthorized", true);
}

#[test]
fn server_errors_keep_last_good_values_stale() {
    degrades_and_recovers(Fault::server_error(500), "500", true);
}

#[test]
fn malformed_answers_keep_last_good_values_stale() {
    degrades_and_recovers(Fault::malformed().on("pods"), "pods", true);
}

#[test]
fn slow_api_server_is_reported() {
    degrades_and_recovers(
        Fault::slow(Duration::from_secs(3)),
        "api server: no answer",
        true,
    );
}

#[test]
fn missing_permission_names_the_kind_and_keeps_the_rest() {
    let sim = K8sSim::start(K8sSimOptions::default());
    sim.set_fault(Fault::forbidden("jobs"));
    let tmp = tempfile::tempdir().unwrap();
    let pods = sim.count(Kind::Pod);
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path()), "k8s-agent");
        let b = r
            .next_where("degraded on jobs", |b| {
                status(b) == HealthStatus::Degraded && count(b, "pod:") == pods
            })
            .await;
        r.stop();
        let m = message(&b);
        assert!(
            m.contains("jobs: 403 forbidden") && m.contains("cannot list resource \"jobs\""),
            "{m}"
        );
        assert!(!b.resources.iter().any(|r| r.id.as_str().contains("/job/")));
        assert!(value(&b, &format!("k8s-cluster:{CLUSTER}"), "pods").is_some());
    });
}

#[test]
fn unreachable_from_the_start_fails_without_zeros() {
    let sim = K8sSim::start(K8sSimOptions::default());
    sim.set_fault(Fault::BadToken);
    let tmp = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut r = start(&config(&sim, tmp.path()), "k8s-agent");
        let b = r
            .next_where("a failed run", |b| status(b) == HealthStatus::Failed)
            .await;
        r.stop();
        assert!(b.resources.is_empty() && b.samples.is_empty());
        assert!(message(&b).contains("401"), "{}", message(&b));
    });
}
