//! Replication jobs of the guests on this node (`/nodes/{node}/replication`): samples on the
//! guest and a `replication:<cluster>/<job>` resource per job.

use super::ProxmoxCollector;
use super::api::{label_value, num, put};
use super::cluster::{ClusterResource, ClusterView};
use super::guests::guest_kind;
use crate::collectors::{Collected, resource_id};
use serde::Deserialize;
use warden_shared::metric;
use warden_shared::resource::canonical;
use warden_shared::telemetry::{Resource, Value};

/// One entry of `/nodes/{node}/replication`: the job's configuration plus this node's state.
#[derive(Deserialize)]
struct ReplicationEntry {
    id: String,
    #[serde(default, deserialize_with = "num")]
    guest: Option<f64>,
    target: Option<String>,
    schedule: Option<String>,
    comment: Option<String>,
    /// `qemu` or `lxc`.
    vmtype: Option<String>,
    #[serde(default, deserialize_with = "num")]
    disable: Option<f64>,
    remove_job: Option<String>,
    /// Start of the last successful sync; 0 = never.
    #[serde(default, deserialize_with = "num")]
    last_sync: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    next_sync: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    duration: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    fail_count: Option<f64>,
    error: Option<String>,
    /// Set while a sync runs.
    #[serde(default, deserialize_with = "num")]
    pid: Option<f64>,
}

/// One replication job of a guest on `node`: `replication_fail_count{job="…"}`,
/// `replication_last_sync_age_seconds{job="…"}` (absent until the first successful sync; PVE
/// sends 0 then) and `replication_last_duration_seconds{job="…"}` on the guest, and a
/// `replication:<cluster>/<job>` resource (parent: the guest) with status `ok`, `failing`,
/// `syncing`, `pending` (never synced yet), `disabled` or `removing`, and the last error.
fn replication_job(
    out: &mut Collected,
    view: &ClusterView,
    resources: &[ClusterResource],
    node: &str,
    j: &ReplicationEntry,
    now_ms: i64,
) {
    let Some(vmid) = j.guest.map(|g| g as u32) else {
        return out
            .problems
            .push(format!("replication job {}: no guest", j.id));
    };
    let kind = j.vmtype.as_deref().and_then(guest_kind).or_else(|| {
        resources
            .iter()
            .find(|r| r.vmid == Some(f64::from(vmid)))
            .and_then(|r| guest_kind(&r.kind))
    });
    let Some(kind) = kind else {
        return out.problems.push(format!(
            "replication job {}: guest {vmid} is neither a VM nor a container",
            j.id
        ));
    };
    let (guest_id, job_id) = match (
        resource_id(&j.id, canonical::guest(kind, &view.cluster, vmid)),
        resource_id(&j.id, canonical::replication(&view.cluster, &j.id)),
    ) {
        (Ok(g), Ok(r)) => (g, r),
        (Err(e), _) | (_, Err(e)) => return out.problems.push(e.to_string()),
    };
    let label = label_value(&j.id);
    let last_sync = j.last_sync.filter(|t| *t > 0.0);
    let now_s = (now_ms / 1000) as f64;
    put(
        out,
        &guest_id,
        &metric::labelled(metric::REPLICATION_FAIL_COUNT, "job", &label),
        now_ms,
        j.fail_count,
    );
    put(
        out,
        &guest_id,
        &metric::labelled(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, "job", &label),
        now_ms,
        last_sync.map(|t| (now_s - t).max(0.0)),
    );
    put(
        out,
        &guest_id,
        &metric::labelled(metric::REPLICATION_LAST_DURATION_SECONDS, "job", &label),
        now_ms,
        j.duration,
    );
    let failing = j.fail_count.is_some_and(|f| f > 0.0);
    let status = if j.disable == Some(1.0) {
        "disabled"
    } else if j.remove_job.is_some() {
        "removing"
    } else if failing {
        "failing"
    } else if j.pid.is_some() {
        "syncing"
    } else if last_sync.is_none() {
        "pending"
    } else {
        "ok"
    };
    let mut attrs = vec![
        ("guest".into(), Value::Int(i64::from(vmid))),
        ("source".into(), Value::from(node)),
        ("target".into(), Value::from(j.target.clone())),
        // PVE's default when the job has none.
        (
            "schedule".into(),
            Value::from(j.schedule.as_deref().unwrap_or("*/15")),
        ),
        (
            "fail_count".into(),
            Value::from(j.fail_count.map(|f| f as i64)),
        ),
    ];
    if let Some(t) = last_sync {
        attrs.push(("last_sync".into(), Value::Int(t as i64)));
    }
    if let Some(t) = j.next_sync.filter(|t| *t > 0.0) {
        attrs.push(("next_sync".into(), Value::Int(t as i64)));
    }
    if let Some(e) = j.error.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        attrs.push(("error".into(), Value::from(e)));
    }
    if let Some(c) = &j.comment {
        attrs.push(("comment".into(), Value::from(c.as_str())));
    }
    out.resources.push(Resource {
        id: job_id,
        name: j.id.clone(),
        parent: Some(guest_id),
        status: status.into(),
        attrs,
    });
}

impl ProxmoxCollector {
    /// Replication jobs whose guest runs on this node (see [`replication_job`]).
    pub(super) async fn replication(
        &mut self,
        out: &mut Collected,
        view: &ClusterView,
        resources: &[ClusterResource],
        now_ms: i64,
    ) {
        let path = format!("/nodes/{}/replication", self.node);
        match self.api.get::<Vec<ReplicationEntry>>(&path).await {
            Ok(jobs) => {
                for job in &jobs {
                    replication_job(out, view, resources, &self.node, job, now_ms);
                }
            }
            Err(e) => out.problems.push(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::proxmox::tests::*;

    /// Field set of `/nodes/{node}/replication` per pve-manager `PVE/API2/Replication.pm`
    /// and pve-guest-common `PVE/ReplicationState.pm` (no public capture exists).
    const REPLICATION: &str = r#"[
        {"type":"local","id":"100-0","guest":100,"jobnum":0,"target":"pve2","source":"pve1",
         "vmtype":"qemu","schedule":"*/5","last_sync":1700000000,"last_try":1700000000,
         "next_sync":1700000300,"fail_count":0,"duration":3.2},
        {"type":"local","id":"105-1","guest":"105","jobnum":1,"target":"pve3","source":"pve1",
         "vmtype":"lxc","last_sync":1699990000,"last_try":1700000500,"next_sync":1700002300,
         "fail_count":"4","duration":0.8,"error":"storage 'local-zfs' is not available\n"},
        {"type":"local","id":"102-0","guest":102,"jobnum":0,"target":"pve2","source":"pve1",
         "last_sync":0,"last_try":0,"next_sync":900,"fail_count":0},
        {"type":"local","id":"103-0","guest":103,"jobnum":0,"target":"pve2","source":"pve1",
         "vmtype":"qemu","disable":1,"last_sync":1690000000,"last_try":1690000000,
         "next_sync":0,"fail_count":0}
    ]"#;

    #[test]
    fn replication_jobs_report_on_the_guest_and_as_a_job_resource() {
        let jobs: Vec<ReplicationEntry> = serde_json::from_str(REPLICATION).unwrap();
        // 102 has no vmtype: its kind comes from the cluster resources.
        let resources: Vec<ClusterResource> =
            serde_json::from_str(r#"[{"type":"lxc","vmid":102,"node":"pve1","status":"running"}]"#)
                .unwrap();
        let mut out = Collected::default();
        let now_ms = 1_700_000_600_000;
        for j in &jobs {
            replication_job(&mut out, &view("c"), &resources, "pve1", j, now_ms);
        }
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let ok = "vm:c/100";
        assert_eq!(
            value(
                &out,
                ok,
                &metric::labelled(metric::REPLICATION_FAIL_COUNT, "job", "100-0")
            ),
            Some(0.0)
        );
        assert_eq!(
            value(
                &out,
                ok,
                &metric::labelled(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, "job", "100-0")
            ),
            Some(600.0)
        );
        assert_eq!(
            value(
                &out,
                ok,
                &metric::labelled(metric::REPLICATION_LAST_DURATION_SECONDS, "job", "100-0")
            ),
            Some(3.2)
        );
        let failing = "lxc:c/105";
        assert_eq!(
            value(
                &out,
                failing,
                &metric::labelled(metric::REPLICATION_FAIL_COUNT, "job", "105-1")
            ),
            Some(4.0)
        );
        assert_eq!(
            value(
                &out,
                failing,
                &metric::labelled(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, "job", "105-1")
            ),
            Some(10_600.0)
        );
        // Never synced: PVE says 0, which is no age at all.
        assert_eq!(
            value(
                &out,
                "lxc:c/102",
                &metric::labelled(metric::REPLICATION_LAST_SYNC_AGE_SECONDS, "job", "102-0")
            ),
            None
        );
        assert_eq!(
            value(
                &out,
                "lxc:c/102",
                &metric::labelled(metric::REPLICATION_FAIL_COUNT, "job", "102-0")
            ),
            Some(0.0)
        );

        let statuses: Vec<(&str, &str, &str)> = out
            .resources
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.status.as_str(),
                    r.parent.as_ref().map_or("", |p| p.as_str()),
                )
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("replication:c/100-0", "ok", "vm:c/100"),
                ("replication:c/105-1", "failing", "lxc:c/105"),
                ("replication:c/102-0", "pending", "lxc:c/102"),
                ("replication:c/103-0", "disabled", "vm:c/103"),
            ]
        );
        let id = "replication:c/105-1";
        assert_eq!(
            attr(&out, id, "error"),
            Some(&Value::from("storage 'local-zfs' is not available"))
        );
        assert_eq!(attr(&out, id, "target"), Some(&Value::from("pve3")));
        assert_eq!(attr(&out, id, "source"), Some(&Value::from("pve1")));
        assert_eq!(attr(&out, id, "schedule"), Some(&Value::from("*/15")));
        assert_eq!(attr(&out, id, "fail_count"), Some(&Value::Int(4)));
        assert_eq!(
            attr(&out, id, "last_sync"),
            Some(&Value::Int(1_699_990_000))
        );
        assert_eq!(attr(&out, "replication:c/100-0", "error"), None);
        assert_eq!(attr(&out, "replication:c/102-0", "last_sync"), None);
        assert_eq!(attr(&out, "replication:c/103-0", "next_sync"), None);
        crate::collectors::assert_provenance_complete(&unconnected(), &out);
    }

    #[test]
    fn a_replication_job_of_an_unknown_guest_is_a_problem_not_a_guess() {
        let jobs: Vec<ReplicationEntry> =
            serde_json::from_str(r#"[{"id":"300-0","guest":300,"target":"b"}]"#).unwrap();
        let mut out = Collected::default();
        replication_job(&mut out, &view("c"), &[], "a", &jobs[0], 1);
        assert!(out.resources.is_empty() && out.samples.is_empty());
        assert_eq!(out.problems.len(), 1);
    }
}
