//! Tests of the Kubernetes API simulator with raw HTTPS requests: body shapes against the
//! real captures in `tests/fixtures/k8s/`, list pagination and selectors, watch streams
//! (changes, bookmarks, 410 Expired, timeouts, resets), authentication and RBAC bodies,
//! faults, the convenience mutations, the kubeconfig and `warden-sim k8s`.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_sim::k8s::{Fault, K8sSim, K8sSimOptions, Kind, Pressure, World};
use warden_sim::{HttpStream, StreamRead};

const WAIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/k8s/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sim() -> K8sSim {
    K8sSim::start(K8sSimOptions::default())
}

fn get_json(sim: &K8sSim, path: &str) -> Value {
    let r = sim.get(path);
    assert_eq!(
        r.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn rv_of(list: &Value) -> u64 {
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The next watch event that is not a BOOKMARK.
fn next_event(stream: &mut HttpStream) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.next_line(left) {
            StreamRead::Line(l) => {
                let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
                if v["type"] != "BOOKMARK" {
                    return v;
                }
            }
            other => panic!("expected a watch event, got {other:?}"),
        }
    }
}

/// Reads events until one satisfies `f`.
fn event_where(stream: &mut HttpStream, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no matching watch event");
        let e = next_event(stream);
        if f(&e) {
            return e;
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of the fixture's top level and of its `metadata`, `spec` and `status` exists in
/// the simulator's object with the same JSON kind (null in the fixture matches anything),
/// except the `skip`ped paths.
fn assert_fixture_shape(what: &str, sim_obj: &Value, fix: &Value, skip: &[&str]) {
    let mut checked = 0;
    for section in ["", "metadata", "spec", "status"] {
        let (f, s) = if section.is_empty() {
            (fix, sim_obj)
        } else {
            (&fix[section], &sim_obj[section])
        };
        let Some(fo) = f.as_object() else { continue };
        for (k, fv) in fo {
            let path = if section.is_empty() {
                k.clone()
            } else {
                format!("{section}.{k}")
            };
            if skip.contains(&path.as_str()) {
                continue;
            }
            let sv = s
                .get(k)
                .unwrap_or_else(|| panic!("{what}: {path} is missing (fixture has it)"));
            if !fv.is_null() {
                assert_eq!(
                    json_kind(sv),
                    json_kind(fv),
                    "{what}: {path} has another JSON type than in the fixture"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "{what}: only {checked} keys compared");
}

#[test]
fn bodies_have_the_shape_of_the_real_captures() {
    let sim = sim();
    // selfLink was removed in Kubernetes 1.24; modern servers omit a null dataSource.
    let cases: [(&str, Kind, &str, &str, &[&str]); 7] = [
        (
            "pod.crashloopbackoff.json",
            Kind::Pod,
            "shop",
            "db-0",
            &["metadata.annotations"],
        ),
        (
            "node.minikube.ready.json",
            Kind::Node,
            "",
            "worker-1",
            &["metadata.selfLink"],
        ),
        (
            "deployment.available.json",
            Kind::Deployment,
            "shop",
            "web",
            &["metadata.selfLink"],
        ),
        (
            "deployment.unavailable.json",
            Kind::Deployment,
            "shop",
            "web",
            &["status.unavailableReplicas"],
        ),
        (
            "pvc.bound.json",
            Kind::PersistentVolumeClaim,
            "shop",
            "data-db-0",
            &["metadata.selfLink", "spec.dataSource"],
        ),
        (
            "job.complete.json",
            Kind::Job,
            "shop",
            "backup-29384160",
            &["metadata.selfLink"],
        ),
        (
            "event.normal.pulled.json",
            Kind::Event,
            "shop",
            "",
            &["metadata.selfLink"],
        ),
    ];
    for (file, kind, ns, name, skip) in cases {
        let fix = fixture(file);
        let obj = if kind == Kind::Event {
            let list = get_json(&sim, "/api/v1/namespaces/shop/events");
            let mut e = list["items"][0].clone();
            e["kind"] = json!("Event");
            e["apiVersion"] = json!("v1");
            e
        } else {
            sim.object(kind, ns, name).unwrap()
        };
        assert_fixture_shape(file, &obj, &fix, skip);
    }
    // A synthetic pod is 3-5 KB of JSON, like a real one.
    let list = get_json(&sim, "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb");
    for pod in list["items"].as_array().unwrap() {
        let len = pod.to_string().len();
        assert!((3000..=6000).contains(&len), "pod body is {len} bytes");
        assert_fixture_shape(
            "web pod",
            pod,
            &fixture("pod.crashloopbackoff.json"),
            &["kind", "apiVersion", "metadata.annotations"],
        );
    }
}

#[test]
fn lists_paginate_with_limit_and_continue() {
    let sim = sim();
    let first = get_json(&sim, "/api/v1/pods?limit=5");
    assert_eq!(first["kind"], "PodList");
    assert_eq!(first["apiVersion"], "v1");
    let rv = rv_of(&first);
    assert_eq!(first["items"].as_array().unwrap().len(), 5);
    assert_eq!(first["metadata"]["remainingItemCount"], 12);
    for item in first["items"].as_array().unwrap() {
        assert!(item.get("kind").is_none() && item.get("apiVersion").is_none());
        assert!(item["metadata"]["uid"].is_string());
        assert!(item["metadata"]["creationTimestamp"].is_string());
        let item_rv: u64 = item["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(item_rv <= rv);
    }
    let mut all = names(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    let mut pages = 1;
    loop {
        let page = get_json(&sim, &format!("/api/v1/pods?limit=5&continue={token}"));
        pages += 1;
        assert_eq!(
            rv_of(&page),
            rv,
            "every page reports the first page's resourceVersion"
        );
        all.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(all.len(), 17);
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        17,
        "no duplicates"
    );
    assert_eq!(
        sim.list_count("pods"),
        1,
        "continuation pages are not new lists"
    );
    assert_eq!(sim.list_page_count("pods"), 4);

    // kube-runtime's first list.
    let any = get_json(&sim, "/api/v1/pods?resourceVersion=0&limit=500");
    assert_eq!(any["items"].as_array().unwrap().len(), 17);
    assert!(any["metadata"].get("continue").is_none());

    // Namespaced, paginated.
    let shop = get_json(&sim, "/api/v1/namespaces/shop/pods?limit=2");
    let mut shop_names = names(&shop);
    let t = shop["metadata"]["continue"].as_str().unwrap();
    let rest = get_json(
        &sim,
        &format!("/api/v1/namespaces/shop/pods?limit=10&continue={t}"),
    );
    shop_names.extend(names(&rest));
    assert_eq!(shop_names.len(), 5, "{shop_names:?}");
    assert!(shop_names.contains(&"db-0".to_owned()));

    // Other kinds and groups.
    for (path, kind, n) in [
        ("/api/v1/namespaces", "NamespaceList", 6),
        ("/api/v1/nodes", "NodeList", 3),
        (
            "/api/v1/persistentvolumeclaims",
            "PersistentVolumeClaimList",
            2,
        ),
        ("/apis/apps/v1/deployments", "DeploymentList", 2),
        (
            "/apis/apps/v1/namespaces/shop/statefulsets",
            "StatefulSetList",
            1,
        ),
        ("/apis/apps/v1/daemonsets", "DaemonSetList", 2),
        ("/apis/batch/v1/namespaces/shop/jobs", "JobList", 1),
    ] {
        let l = get_json(&sim, path);
        assert_eq!(l["kind"], kind, "{path}");
        assert_eq!(l["items"].as_array().unwrap().len(), n, "{path}");
    }
    let bad = sim.get("/api/v1/pods?limit=5&continue=not-a-token");
    assert_eq!(bad.status, 400);
}

#[test]
fn field_and_label_selectors() {
    let sim = sim();
    let count = |path: &str| get_json(&sim, path)["items"].as_array().unwrap().len();
    assert_eq!(
        count("/api/v1/pods?fieldSelector=metadata.namespace%3Dkube-system"),
        9
    );
    assert_eq!(
        count("/api/v1/pods?fieldSelector=metadata.namespace!%3Dkube-system"),
        8
    );
    assert_eq!(count("/api/v1/pods?fieldSelector=metadata.name%3Ddb-0"), 1);
    assert_eq!(count("/api/v1/pods?fieldSelector=spec.nodeName%3Dcp-1"), 6);
    assert_eq!(
        count("/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-2,metadata.namespace%3Dshop"),
        2
    );
    assert_eq!(
        count("/api/v1/pods?fieldSelector=status.phase%3DSucceeded"),
        1
    );
    assert_eq!(count("/api/v1/events?fieldSelector=type%3DWarning"), 0);
    sim.add_warning_event(
        "shop",
        "Pod",
        "db-0",
        "Unhealthy",
        "Readiness probe failed: connection refused",
    );
    assert_eq!(count("/api/v1/events?fieldSelector=type%3DWarning"), 1);
    assert_eq!(
        count(
            "/api/v1/namespaces/shop/events?fieldSelector=type%3DWarning,involvedObject.name%3Ddb-0"
        ),
        1
    );
    assert_eq!(
        count("/api/v1/namespaces/default/events?fieldSelector=type%3DWarning"),
        0
    );

    let bad = sim.get("/api/v1/pods?fieldSelector=spec.foo%3Dbar");
    assert_eq!(bad.status, 400);
    let body = bad.json().unwrap();
    assert_eq!(body["reason"], "BadRequest");
    assert_eq!(body["message"], "field label not supported: spec.foo");

    assert_eq!(count("/api/v1/pods?labelSelector=app%3Dweb"), 3);
    assert_eq!(count("/api/v1/pods?labelSelector=app+in+(web,db)"), 4);
    assert_eq!(count("/api/v1/pods?labelSelector=app,app!%3Dweb"), 9);
    assert_eq!(count("/api/v1/pods?labelSelector=!app"), 5);
    // With a selector, pages carry no remainingItemCount.
    let page = get_json(&sim, "/api/v1/pods?labelSelector=app&limit=2");
    assert!(page["metadata"]["continue"].is_string());
    assert!(page["metadata"].get("remainingItemCount").is_none());
}

#[test]
fn a_watch_delivers_changes_made_through_the_handle() {
    let sim = sim();
    let list = get_json(&sim, "/api/v1/namespaces/shop/pods");
    let rv = rv_of(&list);
    let mut w = sim.open_stream(&format!(
        "/api/v1/namespaces/shop/pods?watch=true&resourceVersion={rv}&timeoutSeconds=60&allowWatchBookmarks=true"
    ));
    assert_eq!(w.status, 200);
    assert_eq!(w.header("transfer-encoding"), Some("chunked"));
    assert_eq!(w.header("content-type"), Some("application/json"));
    assert!(sim.wait_for_watches("pods", 1, WAIT));
    assert_eq!(sim.watch_count("pods"), 1);

    assert!(sim.crashloop_pod("shop", "db-0"));
    let e = next_event(&mut w);
    assert_eq!(e["type"], "MODIFIED");
    let pod = &e["object"];
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["metadata"]["name"], "db-0");
    let new_rv: u64 = pod["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_rv > rv);
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 10s restarting failed container=db pod=db-0_shop(")
    );

    // A pod in another namespace is not seen; a deletion in this one is.
    sim.add_pod("default", "other", "worker-1");
    sim.add_pod("shop", "debug", "worker-2");
    let e = next_event(&mut w);
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("debug"))
    );
    let del_rv = sim.delete(Kind::Pod, "shop", "debug").unwrap();
    let e = next_event(&mut w);
    assert_eq!(e["type"], "DELETED");
    assert_eq!(
        e["object"]["metadata"]["resourceVersion"],
        del_rv.to_string()
    );
    assert_eq!(sim.list_count("pods"), 1, "watching does not list");
    drop(w);
}

#[test]
fn a_watch_from_zero_starts_with_the_current_state() {
    let sim = sim();
    let mut w = sim.open_stream("/api/v1/nodes?watch=true&resourceVersion=0&timeoutSeconds=60");
    let mut added = BTreeSet::new();
    for _ in 0..3 {
        let e = next_event(&mut w);
        assert_eq!(e["type"], "ADDED");
        assert_eq!(e["object"]["kind"], "Node");
        added.insert(e["object"]["metadata"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        added,
        ["cp-1", "worker-1", "worker-2"].map(str::to_owned).into()
    );
    assert!(sim.set_node_ready("worker-1", false));
    let e = event_where(&mut w, |e| e["type"] == "MODIFIED");
    let ready = e["object"]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "KubeletNotReady");
    let taints = e["object"]["spec"]["taints"].as_array().unwrap();
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready")
    );
}

#[test]
fn a_watch_ends_after_timeout_seconds() {
    let sim = sim();
    let rv = sim.resource_version();
    let mut w = sim.open_stream(&format!(
        "/apis/apps/v1/deployments?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    ));
    let started = Instant::now();
    loop {
        match w.next_line(WAIT) {
            StreamRead::Line(_) => {}
            StreamRead::End => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    warden_tests::eventually(WAIT, "watch closed", || {
        (sim.open_watches("deployments") == 0).then_some(())
    });
}

#[test]
fn a_field_selected_watch_sees_objects_leave_and_enter() {
    let sim = sim();
    let rv = sim.resource_version();
    let mut w = sim.open_stream(&format!(
        "/api/v1/namespaces/shop/pods?watch=true&resourceVersion={rv}&fieldSelector=status.phase%3DRunning&timeoutSeconds=60"
    ));
    assert!(sim.wait_for_watches("pods", 1, WAIT));
    assert!(sim.image_pull_backoff("shop", "db-0"));
    let e = next_event(&mut w);
    assert_eq!(e["type"], "DELETED", "left the selection: {e}");
    assert_eq!(e["object"]["metadata"]["name"], "db-0");
    assert_eq!(e["object"]["status"]["phase"], "Running", "previous state");
    assert!(sim.set_pod_running("shop", "db-0"));
    let e = next_event(&mut w);
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["status"]["containerStatuses"][0]["ready"], true);
}

#[test]
fn an_expired_resource_version_gets_410() {
    let sim = K8sSim::start(K8sSimOptions {
        history: 5,
        ..K8sSimOptions::default()
    });
    let old = rv_of(&get_json(&sim, "/api/v1/pods"));
    for _ in 0..8 {
        assert!(sim.oom_kill("shop", "db-0"));
    }
    let mut w = sim.open_stream(&format!(
        "/api/v1/pods?watch=true&resourceVersion={old}&timeoutSeconds=60"
    ));
    assert_eq!(w.status, 200);
    let StreamRead::Line(l) = w.next_line(WAIT) else {
        panic!("no error event")
    };
    let e: Value = serde_json::from_str(&l).unwrap();
    let oldest = sim.resource_version() - 5;
    assert_eq!(
        e,
        json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {old} ({oldest})"),
            "reason": "Expired", "code": 410
        }})
    );
    assert_eq!(w.next_line(WAIT), StreamRead::End);

    // Within the retained history a watch replays the changes.
    let mut w = sim.open_stream(&format!(
        "/api/v1/pods?watch=true&resourceVersion={oldest}&timeoutSeconds=60"
    ));
    for _ in 0..5 {
        assert_eq!(next_event(&mut w)["type"], "MODIFIED");
    }
    drop(w);

    // Other resources keep their own history.
    let mut w = sim.open_stream(&format!(
        "/api/v1/nodes?watch=true&resourceVersion={old}&timeoutSeconds=1"
    ));
    assert_eq!(w.next_line(WAIT), StreamRead::End);

    // Forced 410 on the next watch, whatever the resourceVersion; then normal again.
    let now = sim.resource_version();
    sim.force_gone_next_watch(Some("nodes"));
    let mut w = sim.open_stream(&format!(
        "/api/v1/nodes?watch=true&resourceVersion={now}&timeoutSeconds=1"
    ));
    assert_eq!(next_event(&mut w)["object"]["code"], 410);
    let mut w = sim.open_stream(&format!(
        "/api/v1/nodes?watch=true&resourceVersion={now}&timeoutSeconds=1"
    ));
    assert_eq!(w.next_line(WAIT), StreamRead::End);

    // A compaction expires everything before now.
    sim.set_node_pressure("cp-1", Pressure::Disk, true);
    let before = sim.resource_version() - 1;
    sim.compact();
    let mut w = sim.open_stream(&format!(
        "/api/v1/nodes?watch=true&resourceVersion={before}&timeoutSeconds=1"
    ));
    assert_eq!(next_event(&mut w)["object"]["reason"], "Expired");
}

#[test]
fn bookmarks_and_streaming_lists() {
    let sim = K8sSim::start(K8sSimOptions {
        bookmark_interval: Duration::from_millis(100),
        ..K8sSimOptions::default()
    });
    let rv = sim.resource_version();
    let mut w = sim.open_stream(&format!(
        "/apis/batch/v1/jobs?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=60"
    ));
    let StreamRead::Line(l) = w.next_line(WAIT) else {
        panic!("no bookmark")
    };
    let b: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(b["object"]["kind"], "Job");
    assert_eq!(b["object"]["apiVersion"], "batch/v1");
    assert_eq!(b["object"]["metadata"]["resourceVersion"], rv.to_string());
    drop(w);

    // Without allowWatchBookmarks there are none.
    let mut w = sim.open_stream(&format!(
        "/apis/batch/v1/jobs?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    ));
    assert_eq!(w.next_line(WAIT), StreamRead::End);

    // The watch-list protocol (kube-runtime's streaming list).
    let mut w = sim.open_stream(
        "/apis/apps/v1/deployments?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=60",
    );
    assert_eq!(next_event(&mut w)["type"], "ADDED");
    assert_eq!(next_event(&mut w)["type"], "ADDED");
    let end = loop {
        let StreamRead::Line(l) = w.next_line(WAIT) else {
            panic!("stream ended")
        };
        let v: Value = serde_json::from_str(&l).unwrap();
        if v["type"] == "BOOKMARK" {
            break v;
        }
    };
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(sim.set_deployment_ready("shop", "web", false));
    let e = next_event(&mut w);
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["status"]["unavailableReplicas"], 3);
}

#[test]
fn authentication_and_rbac_errors_have_apiserver_bodies() {
    let sim = sim();
    let r = sim.get_as("/api/v1/pods", Some("Bearer wrong"));
    assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized"));
    assert_eq!(
        r.json().unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    // Anonymous: /version is public, resources are not.
    assert_eq!(sim.get_as("/version", None).status, 200);
    let r = sim.get_as("/api/v1/nodes", None);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json().unwrap()["message"],
        "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );

    sim.set_fault(Fault::Forbidden {
        resource: "pods".to_owned(),
        allowed_namespaces: vec!["warden".to_owned()],
    });
    let user = "system:serviceaccount:warden:warden-agent";
    let r = sim.get("/api/v1/pods");
    assert_eq!((r.status, r.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        r.json().unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("pods is forbidden: User \"{user}\" cannot list resource \"pods\" in API group \"\" at the cluster scope"),
               "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    );
    let r = sim.get("/api/v1/namespaces/shop/pods?watch=true");
    assert_eq!(
        r.json().unwrap()["message"],
        format!(
            "pods is forbidden: User \"{user}\" cannot watch resource \"pods\" in API group \"\" in the namespace \"shop\""
        )
    );
    let r = sim.get("/api/v1/namespaces/shop/pods/db-0");
    assert_eq!(
        r.json().unwrap()["message"],
        format!(
            "pods \"db-0\" is forbidden: User \"{user}\" cannot get resource \"pods\" in API group \"\" in the namespace \"shop\""
        )
    );
    assert_eq!(sim.get("/api/v1/namespaces/warden/pods").status, 200);
    assert_eq!(sim.get("/api/v1/nodes").status, 200);

    sim.set_fault(Fault::forbidden("deployments"));
    assert_eq!(
        sim.get("/apis/apps/v1/deployments").json().unwrap()["message"],
        format!(
            "deployments is forbidden: User \"{user}\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
        )
    );

    sim.set_fault(Fault::BadToken);
    assert_eq!(sim.get("/api/v1/nodes").status, 401);
    sim.clear_faults();
    sim.set_token("rotated");
    assert_eq!(
        sim.get_as("/api/v1/nodes", Some("Bearer rotated")).status,
        200
    );
    assert_eq!(
        sim.get_as(
            "/api/v1/nodes",
            Some("Bearer warden-agent-token-6c1d8e9b0a4c7d2f")
        )
        .status,
        401
    );
}

#[test]
fn faults_server_errors_slowness_malformed_json() {
    let sim = sim();
    sim.set_fault(Fault::server_error(503));
    let r = sim.get("/api/v1/pods");
    assert_eq!((r.status, r.reason.as_str()), (503, "Service Unavailable"));
    assert_eq!(r.json().unwrap()["reason"], "ServiceUnavailable");
    sim.set_fault(Fault::server_error(500).on("nodes"));
    let r = sim.get("/api/v1/nodes");
    assert_eq!(r.status, 500);
    assert_eq!(r.json().unwrap()["reason"], "InternalError");
    assert_eq!(sim.get("/api/v1/pods").status, 200);
    sim.set_fault(Fault::server_error(429));
    let r = sim.get("/api/v1/pods");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));

    sim.set_fault(Fault::slow(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(sim.get("/api/v1/nodes").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    sim.set_fault(Fault::malformed().on("pods"));
    let r = sim.get("/api/v1/pods");
    assert_eq!(r.status, 200);
    assert!(r.json().is_err(), "body is cut");
    assert!(sim.get("/api/v1/nodes").json().is_ok());
    let mut w = sim
        .open_stream("/api/v1/namespaces/shop/pods?watch=true&resourceVersion=0&timeoutSeconds=60");
    let StreamRead::Line(l) = w.next_line(WAIT) else {
        panic!("no line")
    };
    assert!(
        serde_json::from_str::<Value>(&l).is_err(),
        "event line is cut: {l}"
    );
    drop(w);

    sim.set_fault(Fault::ContinueExpired);
    let first = get_json(&sim, "/api/v1/pods?limit=5");
    let t = first["metadata"]["continue"].as_str().unwrap();
    let r = sim.get(&format!("/api/v1/pods?limit=5&continue={t}"));
    assert_eq!(r.status, 410);
    let body = r.json().unwrap();
    assert_eq!(body["reason"], "Expired");
    assert!(body["metadata"]["continue"].is_string());

    sim.clear_faults();
    assert!(sim.get("/api/v1/pods").json().is_ok());
}

#[test]
fn watch_streams_can_be_dropped_abruptly() {
    let sim = sim();
    let mut a = sim.open_stream("/api/v1/pods?watch=true&resourceVersion=0&timeoutSeconds=60");
    let mut b = sim.open_stream("/api/v1/events?watch=true&resourceVersion=0&timeoutSeconds=60");
    assert!(sim.wait_for_watches("pods", 1, WAIT));
    assert!(sim.wait_for_watches("events", 1, WAIT));
    assert_eq!(sim.drop_watches(), 2);
    for w in [&mut a, &mut b] {
        let end = loop {
            match w.next_line(WAIT) {
                StreamRead::Line(_) => {}
                other => break other,
            }
        };
        assert!(matches!(end, StreamRead::Aborted(_)), "{end:?}");
    }
    warden_tests::eventually(WAIT, "streams closed", || {
        (sim.open_watches("pods") + sim.open_watches("events") == 0).then_some(())
    });

    sim.set_fault(Fault::AbortWatchesAfter(Duration::from_millis(200)));
    let rv = sim.resource_version();
    let mut w = sim.open_stream(&format!(
        "/api/v1/nodes?watch=true&resourceVersion={rv}&timeoutSeconds=60"
    ));
    assert!(matches!(w.next_line(WAIT), StreamRead::Aborted(_)));
}

#[test]
fn discovery_version_and_single_objects() {
    let sim = sim();
    let v = get_json(&sim, "/version");
    assert_eq!(
        (v["major"].as_str(), v["minor"].as_str()),
        (Some("1"), Some("34"))
    );
    assert_eq!(v["gitVersion"], "v1.34.1");
    for k in [
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(v[k].is_string(), "{k}");
    }
    let api = get_json(&sim, "/api");
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    let apis = get_json(&sim, "/apis");
    assert_eq!(apis["kind"], "APIGroupList");
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["apps", "batch"]);
    let core = get_json(&sim, "/api/v1");
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap()
        .clone();
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["namespaced"], true);
    assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
    let apps = get_json(&sim, "/apis/apps/v1");
    assert_eq!(apps["groupVersion"], "apps/v1");
    assert_eq!(apps["resources"].as_array().unwrap().len(), 3);
    assert_eq!(get_json(&sim, "/apis/batch")["kind"], "APIGroup");

    let pod = get_json(&sim, "/api/v1/namespaces/shop/pods/db-0");
    assert_eq!(
        (pod["kind"].as_str(), pod["apiVersion"].as_str()),
        (Some("Pod"), Some("v1"))
    );
    let node = get_json(&sim, "/api/v1/nodes/cp-1");
    assert_eq!(node["kind"], "Node");
    assert_eq!(
        get_json(&sim, "/api/v1/namespaces/shop")["kind"],
        "Namespace"
    );
    let r = sim.get("/api/v1/namespaces/shop/pods/nope");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json().unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "pods \"nope\" not found", "reason": "NotFound",
               "details": {"name": "nope", "kind": "pods"}, "code": 404})
    );
    assert_eq!(sim.get("/api/v1/namespaces/shop/nodes").status, 404);
    assert_eq!(sim.get("/apis/apps/v1/pods").status, 404);
    assert_eq!(sim.get_count("pods"), 2);
    assert!(sim.path_count("/api/v1/namespaces/shop/pods/db-0") == 1);
}

#[test]
fn convenience_mutations_have_real_shapes() {
    let sim = sim();
    assert!(sim.oom_kill("shop", "db-0"));
    let pod = sim.object(Kind::Pod, "shop", "db-0").unwrap();
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["reason"], "OOMKilled");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 137);
    assert_eq!(cs["restartCount"], 1);
    assert!(cs["state"]["running"]["startedAt"].is_string());

    assert!(sim.crashloop_pod_with("shop", "db-0", "OOMKilled", 137));
    assert!(sim.crashloop_pod_with("shop", "db-0", "OOMKilled", 137));
    let pod = sim.object(Kind::Pod, "shop", "db-0").unwrap();
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 3);
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 40s ")
    );
    let backoff = get_json(
        &sim,
        "/api/v1/namespaces/shop/events?fieldSelector=reason%3DBackOff",
    );
    assert_eq!(
        backoff["items"].as_array().unwrap().len(),
        1,
        "repeats bump count"
    );
    assert_eq!(backoff["items"][0]["count"], 2);
    assert_eq!(backoff["items"][0]["type"], "Warning");
    assert_eq!(
        backoff["items"][0]["involvedObject"]["fieldPath"],
        "spec.containers{db}"
    );

    assert!(sim.set_pvc_phase("shop", "data-db-0", "Pending"));
    let pvc = sim
        .object(Kind::PersistentVolumeClaim, "shop", "data-db-0")
        .unwrap();
    assert_eq!(pvc["status"], json!({"phase": "Pending"}));
    assert!(pvc["spec"].get("volumeName").is_none());
    assert!(sim.set_pvc_phase("shop", "data-db-0", "Lost"));
    assert!(sim.set_pvc_phase("shop", "data-db-0", "Bound"));
    assert_eq!(
        sim.object(Kind::PersistentVolumeClaim, "shop", "data-db-0")
            .unwrap()["status"]["phase"],
        "Bound"
    );
    assert!(!sim.set_pvc_phase("shop", "data-db-0", "Weird"));

    assert!(sim.fail_job("shop", "backup-29384160"));
    let job = sim.object(Kind::Job, "shop", "backup-29384160").unwrap();
    assert_eq!(job["status"]["failed"], 7);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap()
        .clone();
    assert_eq!(
        (failed["status"].as_str(), failed["reason"].as_str()),
        (Some("True"), Some("BackoffLimitExceeded"))
    );

    assert!(sim.set_deployment_ready("shop", "web", false));
    let d = sim.object(Kind::Deployment, "shop", "web").unwrap();
    assert_eq!(d["status"]["unavailableReplicas"], 3);
    assert!(d["status"].get("readyReplicas").is_none());
    let avail = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Available")
        .unwrap()
        .clone();
    assert_eq!(avail["reason"], "MinimumReplicasUnavailable");
    assert!(sim.set_deployment_ready("shop", "web", true));
    assert_eq!(
        sim.object(Kind::Deployment, "shop", "web").unwrap()["status"]["readyReplicas"],
        3
    );
    assert!(sim.set_statefulset_ready("shop", "db", 0));
    assert!(sim.set_daemonset_ready("kube-system", "kube-proxy", 2));
    assert_eq!(
        sim.object(Kind::DaemonSet, "kube-system", "kube-proxy")
            .unwrap()["status"]["numberUnavailable"],
        1
    );

    assert!(sim.set_node_pressure("worker-2", Pressure::Memory, true));
    let node = sim.object(Kind::Node, "", "worker-2").unwrap();
    let mem = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "MemoryPressure")
        .unwrap()
        .clone();
    assert_eq!(
        (mem["status"].as_str(), mem["reason"].as_str()),
        (Some("True"), Some("KubeletHasInsufficientMemory"))
    );
    assert!(sim.set_node_unreachable("worker-2"));
    assert!(sim.set_node_unschedulable("worker-2", true));
    assert_eq!(
        sim.object(Kind::Node, "", "worker-2").unwrap()["spec"]["unschedulable"],
        true
    );
    let node_events = get_json(
        &sim,
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.kind%3DNode",
    );
    assert!(node_events["items"].as_array().unwrap().len() >= 3);

    assert!(!sim.crashloop_pod("shop", "nope"));
    assert!(!sim.set_node_ready("nope", true));

    // apply / modify / delete any object.
    let mut ns = sim.object(Kind::Namespace, "", "shop").unwrap();
    ns["metadata"]["name"] = json!("shop2");
    ns["metadata"].as_object_mut().unwrap().remove("uid");
    sim.apply(ns).unwrap();
    assert_eq!(sim.count(Kind::Namespace), 7);
    assert!(
        sim.modify(Kind::Namespace, "", "shop2", |n| n["status"]["phase"] =
            json!("Terminating"))
            .is_some()
    );
    assert!(sim.delete(Kind::Namespace, "", "shop2").is_some());
    assert!(sim.delete(Kind::Namespace, "", "shop2").is_none());
    assert!(
        sim.apply(json!({"kind": "Secret", "metadata": {"name": "x"}}))
            .is_err()
    );
}

#[test]
fn kubeconfig_points_at_the_simulator() {
    let sim = sim();
    let yaml = sim.kubeconfig_yaml();
    assert!(yaml.contains(&format!("server: {}\n", sim.url())));
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    assert!(yaml.contains(&format!("token: \"{}\"", sim.token())));
    assert!(yaml.contains("current-context: warden-sim"));
    let ca_line = yaml
        .lines()
        .find(|l| l.contains("certificate-authority-data:"))
        .unwrap();
    let b64 = ca_line.split(':').nth(1).unwrap().trim();
    assert!(
        b64.starts_with("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"),
        "base64 of a PEM"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// A page of a list, without building the items (debug-build JSON parsing of megabytes is
/// slow).
#[derive(serde::Deserialize)]
struct Page {
    metadata: Value,
    items: Vec<serde::de::IgnoredAny>,
}

#[test]
fn a_synthetic_world_serves_thousands_of_pods() {
    // The 10,000-pod benchmark world (`k8s_sim --nodes 100 --pods 10000`) is of the same
    // make; a debug build takes seconds just to build it, so a smaller one is served here.
    let world = World::synthetic(20, 1_003);
    assert_eq!(world.count(Kind::Pod), 1_003);
    assert_eq!(world.count(Kind::Node), 20);
    let sim = K8sSim::start(K8sSimOptions::with_world(world));
    let mut seen = 0;
    let mut bytes = 0;
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            None => "/api/v1/pods?resourceVersion=0&limit=500".to_owned(),
            Some(t) => format!("/api/v1/pods?limit=500&continue={t}"),
        };
        let r = sim.get(&path);
        assert_eq!(r.status, 200);
        bytes += r.body.len();
        let page: Page = serde_json::from_slice(&r.body).unwrap();
        seen += page.items.len();
        match page.metadata["continue"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 1_003);
    let avg = bytes / seen;
    assert!((3000..=5500).contains(&avg), "average pod is {avg} bytes");
    assert_eq!(sim.list_count("pods"), 1);
    assert_eq!(sim.list_page_count("pods"), 3);

    // A node-local watch (as a DaemonSet agent would run it) only gets its node's pods.
    let mut w = sim.open_stream(
        "/api/v1/pods?watch=true&resourceVersion=0&fieldSelector=spec.nodeName%3Dnode-0007&timeoutSeconds=60",
    );
    for _ in 0..50 {
        let e = next_event(&mut w);
        assert_eq!(e["object"]["spec"]["nodeName"], "node-0007");
    }
    let one = get_json(
        &sim,
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-0007&limit=1",
    );
    let meta = &one["items"][0]["metadata"];
    let (ns, name) = (
        meta["namespace"].as_str().unwrap(),
        meta["name"].as_str().unwrap(),
    );
    assert!(sim.crashloop_pod(ns, name));
    let e = next_event(&mut w);
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["metadata"]["name"], name);
}

#[test]
fn the_binary_prints_url_token_and_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(warden_tests::bin("warden-sim"))
        .args(["k8s", "--nodes", "2", "--pods", "7", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let kubeconfig = info["kubeconfig"].as_str().unwrap();
    let yaml = std::fs::read_to_string(kubeconfig).unwrap();
    let url = info["url"].as_str().unwrap();
    assert!(yaml.contains(&format!("server: {url}")));
    assert!(yaml.contains(info["token"].as_str().unwrap()));
    assert_eq!(
        (info["nodes"].as_u64(), info["pods"].as_u64()),
        (Some(2), Some(7))
    );
    let _ = child.kill();
    let _ = child.wait();
}
