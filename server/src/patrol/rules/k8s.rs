//! Kubernetes rules: failing pods, nodes not Ready or under pressure, workloads short of
//! replicas, failed jobs, unbound volume claims, Warning event storms.

use super::{Fleet, latest_value, text};
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use std::collections::{HashMap, HashSet};
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

/// Pending longer than this is a finding.
const POD_PENDING_MS: i64 = 5 * 60_000;
/// Whether the workload of a failing pod still serves: `Some(false)` when the workload
/// reports no replica available, `None` when that is unknown (a job's pod, a pod without a
/// known controller, a workload that is not reported).
fn still_served(fleet: &Fleet<'_>, r: &ResourceRecord) -> Option<bool> {
    let w = fleet.by_id.get(text(r, "workload")?)?;
    let desired = latest_value(w, metric::REPLICAS_DESIRED)?;
    let unavailable = latest_value(w, metric::REPLICAS_UNAVAILABLE)?;
    Some(desired <= 0.0 || unavailable < desired)
}

/// The last termination of a pod's container as evidence (`OOMKilled (exit code 137)`), and
/// what to do about a crash loop with that cause.
fn crash_cause(r: &ResourceRecord) -> (String, String) {
    let reason = text(r, "last_termination_reason");
    let code = r
        .attrs
        .get("last_exit_code")
        .and_then(serde_json::Value::as_i64);
    let ns = text(r, "namespace").unwrap_or("<namespace>");
    let logs = format!("`kubectl logs {} -n {ns} --previous`", r.name);
    let cause = match (reason, code) {
        (Some(reason), Some(code)) => format!("{reason} (exit code {code})"),
        (Some(reason), None) => reason.to_owned(),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "unknown".to_owned(),
    };
    let advice = match (reason, code) {
        (Some("OOMKilled"), _) => format!(
            "The container was killed for using more memory than its limit: restarting it will \
             not help. Raise `resources.limits.memory` (and the request) of the container in \
             its workload, or find what makes it grow ({logs} shows the last output before the \
             kill)."
        ),
        (_, Some(137)) => format!(
            "Exit code 137 without an OOM kill is a SIGKILL from outside, usually a failing \
             liveness probe: check the probe's path, timeout and initialDelaySeconds in \
             `kubectl describe pod {} -n {ns}`, and read {logs}.",
            r.name
        ),
        (_, Some(126 | 127)) | (Some("ContainerCannotRun" | "StartError"), _) => format!(
            "The container cannot start its command (exit 127: not found, 126: not \
             executable): check the image's entrypoint and the pod's `command`/`args`; \
             `kubectl describe pod {} -n {ns}` shows the runtime's error.",
            r.name
        ),
        (_, Some(0)) | (Some("Completed"), _) => format!(
            "The container exits successfully, and its pod's restartPolicy starts it again: \
             its main process must keep running (or the work belongs in a Job). Read {logs}."
        ),
        (_, Some(code)) => format!(
            "The application exits with code {code}: read why in the previous container's log, \
             {logs}, and the pod's events; fix the crash or its configuration (a missing \
             setting, secret or dependency)."
        ),
        _ => format!(
            "Read the previous container's log ({logs}) and the pod's events; fix the crash or \
             its configuration."
        ),
    };
    (cause, advice)
}

/// Crash loops, image pulls and pods pending too long: critical when the pod's workload has no
/// replica available (the service is down), else warning (degraded, or its impact unknown).
pub(super) fn pod(now_ms: i64, fleet: &Fleet<'_>, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let restarts = r.latest.get(metric::RESTARTS).map_or(0.0, |l| l.value);
    let created = r
        .attrs
        .get("created_ms")
        .and_then(serde_json::Value::as_i64);
    let down = still_served(fleet, r) == Some(false);
    let severity = if down {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = match r.status.as_str() {
        "CrashLoopBackOff" => {
            let (cause, advice) = crash_cause(r);
            let mut d = Detection::on(r, "pod-crashloop", severity, Category::Reliability);
            d.title = format!("{} is crash-looping", r.name);
            d.description = format!(
                "Pod {} keeps restarting ({restarts:.0} restarts; last exit: {cause}).",
                r.name
            );
            d.recommendation = advice;
            d.evidence = format!(
                "status CrashLoopBackOff, restarts = {restarts:.0}; last termination: {cause}"
            );
            d
        }
        "ImagePullBackOff" | "ErrImagePull" => {
            let mut d = Detection::on(r, "pod-image", severity, Category::Reliability);
            d.title = format!("{} cannot pull its image", r.name);
            d.description = format!("Pod {} is stuck in {}.", r.name, r.status);
            d.recommendation = "Check the image name and tag, and the registry credentials \
                                (imagePullSecrets)."
                .into();
            d.evidence = format!("status {}", r.status);
            d
        }
        _ if text(r, "phase") == Some("Pending")
            && created.is_some_and(|c| now_ms - c > POD_PENDING_MS) =>
        {
            let minutes = (now_ms - created.unwrap_or(now_ms)) / 60_000;
            let mut d = Detection::on(r, "pod-pending", severity, Category::Reliability);
            d.title = format!("{} pending for {minutes} min", r.name);
            d.description = format!(
                "Pod {} has not started {minutes} minutes after it was created.",
                r.name
            );
            d.recommendation = "Read the pod's events: unschedulable (resources, taints, node \
                                selectors), an unbound volume, or an image still pulling."
                .into();
            d.evidence = format!("phase Pending for {minutes} min (> 5)");
            d
        }
        _ => return,
    };
    if down {
        d.evidence.push_str(&format!(
            "; its workload {} has no replica available",
            text(r, "workload").unwrap_or_default()
        ));
    }
    if let Some(w) = text(r, "last_warning") {
        d.evidence.push_str(&format!("; last warning: {w}"));
    }
    out.push(d);
}

pub(super) fn k8s_node(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status == "Ready" {
        return;
    }
    let mut d = Detection::on(
        r,
        "k8s-node-not-ready",
        Severity::Critical,
        Category::Reliability,
    );
    d.title = format!("Kubernetes node {} is {}", r.name, r.status);
    d.description = format!(
        "Node {} is not Ready; its pods are not served and will be evicted.",
        r.name
    );
    d.recommendation = "Check the kubelet and the container runtime on the node, its network, \
                        and disk or memory pressure."
        .into();
    d.evidence = format!("condition Ready = {}", r.status);
    out.push(d);
}

pub(super) fn workload(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let kind = text(r, "kind").unwrap_or("workload");
    if r.latest
        .get(metric::JOB_FAILED)
        .is_some_and(|l| l.value > 0.0)
    {
        let mut d = Detection::on(r, "job-failed", Severity::Warning, Category::Reliability);
        d.title = format!("job {} failed", r.name);
        let reason = text(r, "failure_reason").unwrap_or("unknown reason");
        d.description = format!("Job {} failed: {reason}.", r.name);
        d.recommendation =
            "Read the logs of its failed pods and fix the cause; then re-run it.".into();
        d.evidence = format!(
            "condition Failed: {reason}{}",
            text(r, "failure_message")
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
        out.push(d);
        return;
    }
    let unavailable = r
        .latest
        .get(metric::REPLICAS_UNAVAILABLE)
        .map_or(0.0, |l| l.value);
    if unavailable <= 0.0 {
        return;
    }
    let desired = r
        .latest
        .get(metric::REPLICAS_DESIRED)
        .map_or(0.0, |l| l.value);
    let severity = if unavailable >= desired {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = Detection::on(r, "replicas-unavailable", severity, Category::Reliability);
    d.title = format!(
        "{kind} {}: {unavailable:.0} of {desired:.0} replicas unavailable",
        r.name
    );
    d.description = format!("The {kind} {} is running below its desired size.", r.name);
    d.recommendation =
        "Look at its pods (crash loops, pending, image pulls) and their events.".into();
    d.evidence = format!("replicas_unavailable = {unavailable:.0}, desired = {desired:.0}");
    out.push(d);
}

pub(super) fn pvc(r: &ResourceRecord, out: &mut Vec<Detection>) {
    let severity = match r.status.as_str() {
        "Pending" => Severity::Warning,
        "Lost" => Severity::Critical,
        _ => return,
    };
    let mut d = Detection::on(r, "pvc-unbound", severity, Category::Reliability);
    d.title = format!("volume claim {} is {}", r.name, r.status);
    d.description = format!(
        "The claim {} is {}: the pods that mount it cannot start.",
        r.name, r.status
    );
    d.recommendation = "Check its storage class and provisioner; a Lost claim's volume is gone \
                        and needs restoring from backup."
        .into();
    d.evidence = format!("phase {}", r.status);
    out.push(d);
}

/// A Kubernetes node's pressure conditions (the collector's `memory_pressure`,
/// `disk_pressure`, `pid_pressure` attributes): warning, one finding per node naming each
/// condition. The kubelet is evicting pods or refusing new ones, but the node still serves. A
/// node that is not Ready has its own critical finding, which says it all.
pub(super) fn k8s_pressure(r: &ResourceRecord, out: &mut Vec<Detection>) {
    if r.status != "Ready" {
        return;
    }
    let on: Vec<(&str, &str)> = [
        ("memory_pressure", "MemoryPressure"),
        ("disk_pressure", "DiskPressure"),
        ("pid_pressure", "PIDPressure"),
    ]
    .into_iter()
    .filter(|(attr, _)| r.attrs.get(*attr) == Some(&serde_json::Value::Bool(true)))
    .collect();
    if on.is_empty() {
        return;
    }
    let names: Vec<&str> = on.iter().map(|(_, c)| *c).collect();
    let mut d = Detection::on(
        r,
        "k8s-node-pressure",
        Severity::Warning,
        Category::Reliability,
    );
    d.title = format!("Kubernetes node {} under {}", r.name, names.join(", "));
    d.description = format!(
        "The kubelet on {} reports {}: it evicts pods to reclaim what runs short and admits no \
         new pods that need it.",
        r.name,
        names.join(" and ")
    );
    let mut advice = Vec::new();
    for (attr, _) in &on {
        advice.push(match *attr {
            "memory_pressure" => format!(
                "Memory: find the biggest consumers with `kubectl top pods -A --sort-by=memory` \
                 (on {}), set memory requests and limits so the scheduler places pods by what \
                 they use, or add memory or nodes.",
                r.name
            ),
            "disk_pressure" => "Disk: free the kubelet's filesystems (unused images with \
                                `crictl rmi --prune`, container logs, emptyDir volumes); check \
                                log rotation and the image garbage collection thresholds."
                .to_owned(),
            _ => "PIDs: find the process that forks or leaks threads (`ps -eLf | wc -l`, by \
                  container) and set a pod PID limit (`podPidsLimit`)."
                .to_owned(),
        });
    }
    d.recommendation = advice.join(" ");
    let mut evidence: Vec<String> = names.iter().map(|c| format!("{c} = True")).collect();
    if let Some(w) = text(r, "last_warning") {
        evidence.push(format!("last warning: {w}"));
    }
    d.evidence = evidence.join("; ");
    out.push(d);
}

/// Warning events within an hour on a cluster that no other finding explains, from which they
/// are a storm: watch, and warning from [`WARNING_STORM_WARNING`].
const WARNING_STORM_WATCH: f64 = 100.0;
const WARNING_STORM_WARNING: f64 = 500.0;
/// Objects named in a storm's evidence.
const STORM_OBJECTS: usize = 3;

/// Kubernetes Warning event storms: a cluster's `warning_events_1h` less the warnings of the
/// objects (pods, nodes, workloads, claims) that already have a finding, at or above
/// [`WARNING_STORM_WATCH`]. The evidence names the objects with the most warnings and their
/// latest one. Runs after the other rules, over their findings.
pub(super) fn warning_storms(resources: &[ResourceRecord], out: &mut Vec<Detection>) {
    const METRIC: &str = metric::WARNING_EVENTS_1H;
    let has_finding: HashSet<&str> = out.iter().map(|d| d.resource_id.as_str()).collect();
    // By cluster name, its objects with warnings: (count, sample time, object).
    let mut clusters: HashMap<&str, Vec<(f64, i64, &ResourceRecord)>> = HashMap::new();
    for r in resources {
        if !matches!(
            ResourceKind::from_prefix(&r.kind),
            Some(
                ResourceKind::Pod
                    | ResourceKind::K8sNode
                    | ResourceKind::K8sWorkload
                    | ResourceKind::Pvc
            )
        ) {
            continue;
        }
        let Some(l) = r.latest.get(METRIC).filter(|l| l.value > 0.0) else {
            continue;
        };
        if let Some(cluster) =
            r.id.split_once(':')
                .and_then(|(_, rest)| rest.split('/').next())
        {
            clusters
                .entry(cluster)
                .or_default()
                .push((l.value, l.ts_ms, r));
        }
    }
    let mut found = Vec::new();
    for r in resources
        .iter()
        .filter(|r| ResourceKind::from_prefix(&r.kind) == Some(ResourceKind::K8sCluster))
    {
        let Some(sum) = r.latest.get(METRIC) else {
            continue;
        };
        let total = sum.value;
        // An object whose warnings aged out is no longer sent: its last count is older than
        // the cluster's, which every run sends.
        let current = clusters
            .remove(r.name.as_str())
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.1 >= sum.ts_ms);
        let (mut explained, mut objects) = (0.0, Vec::new());
        for (n, _, o) in current {
            if has_finding.contains(o.id.as_str()) {
                explained += n;
            } else {
                objects.push((n, o));
            }
        }
        let rest = total - explained;
        let severity = if rest >= WARNING_STORM_WARNING {
            Severity::Warning
        } else if rest >= WARNING_STORM_WATCH {
            Severity::Watch
        } else {
            continue;
        };
        objects.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let mut d = Detection::on(r, "k8s-warning-storm", severity, Category::Reliability);
        d.title = format!(
            "Kubernetes cluster {}: {rest:.0} warning events in the last hour",
            r.name
        );
        d.description = format!(
            "The cluster {} recorded {total:.0} Warning events in the last hour, {rest:.0} of them \
             about objects no other finding covers: something keeps failing (mounts, probes, \
             scheduling, DNS, image pulls) without yet breaking a workload.",
            r.name
        );
        d.recommendation = "Group the warnings by reason with `kubectl get events -A \
                            --field-selector type=Warning --sort-by=.lastTimestamp`; the \
                            objects in the evidence have the most. Fix the most frequent \
                            reason first: one cause usually produces most of a storm."
            .into();
        let top: Vec<String> = objects
            .iter()
            .take(STORM_OBJECTS)
            .map(|(n, o)| match text(o, "last_warning") {
                Some(w) => format!("{} {n:.0} ({w})", o.id),
                None => format!("{} {n:.0}", o.id),
            })
            .collect();
        let mut evidence = format!(
            "warning_events_1h = {total:.0}, {explained:.0} on objects with their own finding \
             (watch from {WARNING_STORM_WATCH:.0}, warning from {WARNING_STORM_WARNING:.0})"
        );
        if !top.is_empty() {
            evidence.push_str(&format!("; most: {}", top.join("; ")));
        } else if let Some(w) = text(r, "last_warning") {
            evidence.push_str(&format!("; latest: {w}"));
        }
        d.evidence = evidence;
        found.push(d);
    }
    out.extend(found);
}

#[cfg(test)]
mod tests {
    use super::super::Thresholds;
    use super::super::tests::*;
    use super::*;

    #[test]
    fn kubernetes_node_pressure_names_each_condition() {
        let node = |name: &str, status: &str, memory: bool, disk: bool, pid: bool| {
            let mut r = record(&format!("k8s-node:k/{name}"), status);
            attr(&mut r, "memory_pressure", memory);
            attr(&mut r, "disk_pressure", disk);
            attr(&mut r, "pid_pressure", pid);
            r
        };
        let mut both = node("w1", "Ready", true, true, false);
        attr(
            &mut both,
            "last_warning",
            "EvictionThresholdMet: Attempting to reclaim memory",
        );
        let resources = vec![
            both,
            node("w2", "Ready", false, false, true),
            node("w3", "Ready", false, false, false),
            // Not Ready says it all.
            node("w4", "NotReady", true, false, false),
        ];
        let found = found(resources, &Thresholds::default());
        let got: Vec<(&str, &str, Severity)> = found
            .iter()
            .map(|d| (d.resource_id.as_str(), d.key.as_str(), d.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("k8s-node:k/w1", "k8s-node-pressure", Severity::Warning),
                ("k8s-node:k/w2", "k8s-node-pressure", Severity::Warning),
                ("k8s-node:k/w4", "k8s-node-not-ready", Severity::Critical),
            ]
        );
        assert_eq!(
            found[0].evidence,
            "MemoryPressure = True; DiskPressure = True; last warning: EvictionThresholdMet: \
             Attempting to reclaim memory"
        );
        assert!(found[0].recommendation.contains("kubectl top pods"));
        assert!(found[0].recommendation.contains("crictl rmi --prune"));
        assert!(
            found[1].title.ends_with("under PIDPressure"),
            "{}",
            found[1].title
        );
        assert!(found[1].recommendation.contains("podPidsLimit"));
    }

    #[test]
    fn a_warning_storm_counts_only_warnings_no_finding_explains() {
        let cluster = |name: &str, warnings: f64| {
            let mut r = record(&format!("k8s-cluster:{name}"), "reachable");
            latest(&mut r, metric::WARNING_EVENTS_1H, warnings);
            r
        };
        let pod = |id: &str, status: &str, warnings: f64, ts: i64, last: &str| {
            let mut r = record(id, status);
            latest_at(&mut r, metric::WARNING_EVENTS_1H, warnings, ts);
            attr(&mut r, "last_warning", last);
            r
        };
        let dns = "DNSConfigForming: Nameserver limits were exceeded";
        let resources = vec![
            // 130 unexplained of 400: the crash loop's 270 have their finding.
            cluster("a", 400.0),
            pod(
                "pod:a/shop/crash",
                "CrashLoopBackOff",
                270.0,
                NOW,
                "BackOff: Back-off",
            ),
            pod("pod:a/shop/web-1", "Running", 70.0, NOW, dns),
            pod("pod:a/shop/web-2", "Running", 60.0, NOW, dns),
            // Aged out an hour ago: no longer counted or named.
            pod("pod:a/shop/old", "Running", 900.0, NOW - 3_600_000, dns),
            // 600 on one cluster: warning.
            cluster("b", 600.0),
            pod("pod:b/x/y", "Running", 600.0, NOW, dns),
            // 150, but 100 of them explained: quiet.
            cluster("c", 150.0),
            pod("pod:c/x/crash", "CrashLoopBackOff", 100.0, NOW, "BackOff"),
            cluster("d", 99.0),
        ];
        let found = found(resources, &Thresholds::default());
        let storms = keyed(&found, "k8s-warning-storm");
        assert_eq!(
            storms,
            [
                ("k8s-cluster:a", Severity::Watch),
                ("k8s-cluster:b", Severity::Warning)
            ]
        );
        let a = found
            .iter()
            .find(|d| d.resource_id == "k8s-cluster:a")
            .unwrap();
        assert_eq!(
            a.title,
            "Kubernetes cluster a: 130 warning events in the last hour"
        );
        assert!(
            a.evidence
                .starts_with("warning_events_1h = 400, 270 on objects with their own finding"),
            "{}",
            a.evidence
        );
        assert!(
            a.evidence.contains(&format!(
                "most: pod:a/shop/web-1 70 ({dns}); pod:a/shop/web-2 60"
            )),
            "{}",
            a.evidence
        );
        assert!(!a.evidence.contains("old"), "{}", a.evidence);
    }

    #[test]
    fn crash_loop_evidence_names_the_cause_and_the_advice_follows_it() {
        let crash = |name: &str, reason: Option<&str>, code: Option<i64>| {
            let mut r = record(&format!("pod:k/shop/{name}"), "CrashLoopBackOff");
            attr(&mut r, "namespace", "shop");
            latest(&mut r, metric::RESTARTS, 9.0);
            if let Some(reason) = reason {
                attr(&mut r, "last_termination_reason", reason);
            }
            if let Some(code) = code {
                attr(&mut r, "last_exit_code", code);
            }
            r
        };
        let found = found(
            vec![
                crash("oom", Some("OOMKilled"), Some(137)),
                crash("error", Some("Error"), Some(1)),
                crash("killed", Some("Error"), Some(137)),
                crash("done", Some("Completed"), Some(0)),
                crash("nocmd", Some("StartError"), Some(128)),
                crash("unknown", None, None),
            ],
            &Thresholds::default(),
        );
        let by = |name: &str| {
            found
                .iter()
                .find(|d| d.resource_id == format!("pod:k/shop/{name}"))
                .unwrap()
        };
        let oom = by("oom");
        assert_eq!(
            oom.evidence,
            "status CrashLoopBackOff, restarts = 9; last termination: OOMKilled (exit code 137)"
        );
        assert!(oom.recommendation.contains("resources.limits.memory"));
        assert!(oom.recommendation.contains("restarting it will not help"));
        let error = by("error");
        assert!(
            error
                .evidence
                .ends_with("last termination: Error (exit code 1)")
        );
        assert!(
            error
                .recommendation
                .contains("`kubectl logs error -n shop --previous`"),
            "{}",
            error.recommendation
        );
        assert!(!error.recommendation.contains("memory"));
        assert!(by("killed").recommendation.contains("liveness probe"));
        assert!(by("done").recommendation.contains("restartPolicy"));
        assert!(by("nocmd").recommendation.contains("entrypoint"));
        assert!(
            by("unknown")
                .evidence
                .ends_with("last termination: unknown")
        );
    }
}
