//! Failed tasks of the last 24 h and backups: failed backups per guest (multi-guest jobs
//! attributed through their logs), and the newest backup's age and the count per guest on
//! backup storage.

use super::ProxmoxCollector;
use super::api::{label_value, num};
use super::cluster::{ClusterResource, ClusterView};
use super::guests::guest_kind;
use crate::collectors::Collected;
use serde::Deserialize;
use std::collections::BTreeMap;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};

/// Most task logs read per run (each once, see `ProxmoxCollector::task_logs`); the others
/// wait for the next runs.
const MAX_TASK_LOGS_PER_RUN: usize = 4;
/// Most lines of a task log read: a backup job logs some dozens per guest.
const TASK_LOG_LINES: u32 = 20_000;

/// One entry of `/nodes/{node}/tasks`; `type` and `id` repeat what the UPID says.
#[derive(Deserialize)]
struct TaskEntry {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    upid: Option<String>,
    /// `OK`, `WARNINGS: n`, or the error (`job errors` for a backup job with failed guests).
    status: Option<String>,
}

/// One line of `/nodes/{node}/tasks/{upid}/log`.
#[derive(Deserialize)]
struct TaskLogLine {
    #[serde(default)]
    t: String,
}

#[derive(Deserialize)]
struct BackupEntry {
    subtype: Option<String>,
    #[serde(default, deserialize_with = "num")]
    vmid: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    ctime: Option<f64>,
}

/// The fields of a task id, `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`
/// (pve-common `PVE::Tools::upid_decode`; pids and times in hex, `id` possibly empty).
#[derive(Debug, PartialEq, Eq)]
struct Upid<'a> {
    kind: &'a str,
    id: &'a str,
}

impl<'a> Upid<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let mut f = s.strip_prefix("UPID:")?.split(':');
        f.next().filter(|node| !node.is_empty())?;
        for _ in 0..3 {
            let hex = f.next()?;
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
        }
        let kind = f.next().filter(|k| !k.is_empty())?;
        let id = f.next()?;
        f.next().filter(|user| !user.is_empty())?;
        // The trailing `:` leaves one empty field, and nothing may follow.
        (f.next() == Some("") && f.next().is_none()).then_some(Self { kind, id })
    }
}

/// Whether a finished task's status says it failed: not `OK`, not `WARNINGS: n` (and a
/// running task, without status, has not failed yet).
fn backup_failed(status: Option<&str>) -> bool {
    status
        .map(str::trim)
        .is_some_and(|s| !s.is_empty() && s != "OK" && !s.starts_with("WARNINGS"))
}

/// The guests a failed backup job's log names as failed (sorted): those with an
/// `ERROR: Backup of VM <vmid> failed - …` line; without any, those its first line
/// (`INFO: starting new backup job: vzdump <vmid>… --option …`) lists and no
/// `Finished Backup of VM <vmid>` line covers (a job that died before or between guests).
/// Empty when the log names none (a job over `--all` or a pool that failed as a whole).
/// vzdump says `VM` for containers too.
fn vzdump_failures<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
    let vmid_after = |line: &str, marker: &str| -> Option<u32> {
        let rest = &line[line.find(marker)? + marker.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let (mut failed, mut listed, mut finished) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let line = line.trim();
        if line.starts_with("ERROR:") && line.contains(" failed") {
            failed.extend(vmid_after(line, "Backup of VM "));
        } else if let Some(v) = vmid_after(line, "Finished Backup of VM ") {
            finished.push(v);
        } else if let Some(i) = line.find("starting new backup job: vzdump") {
            let args = &line[i + "starting new backup job: vzdump".len()..];
            listed.extend(
                args.split_whitespace()
                    .take_while(|a| !a.starts_with('-'))
                    .filter_map(|a| a.parse::<u32>().ok()),
            );
        }
    }
    if failed.is_empty() {
        failed = listed
            .into_iter()
            .filter(|v| !finished.contains(v))
            .collect();
    }
    failed.sort_unstable();
    failed.dedup();
    failed
}

/// `s` as one URL path segment: unreserved characters and those a UPID carries (`:@!`) as
/// they are, the rest percent-encoded.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ProxmoxCollector {
    /// Failed tasks of this node in the last 24 h: a count on the node, and per own guest the
    /// failed backups (vzdump), 0 included, since the task list was read successfully. A
    /// backup job over several guests runs as one task without a VMID; its log names the
    /// guests whose backup failed (see [`vzdump_failures`]). Failed backup tasks no guest
    /// can be named for are counted on the node (`backup_failed_unattributed_24h`).
    pub(super) async fn failed_tasks(
        &mut self,
        out: &mut Collected,
        node_id: &ResourceId,
        view: &ClusterView,
        resources: &[ClusterResource],
        now_s: i64,
    ) {
        let path = format!(
            "/nodes/{}/tasks?errors=1&limit=500&since={}",
            self.node,
            now_s - 86_400
        );
        let tasks = match self.api.get::<Vec<TaskEntry>>(&path).await {
            Ok(t) => t,
            Err(e) => return out.problems.push(e.to_string()),
        };
        let now_ms = now_s * 1000;
        out.sample(
            node_id,
            metric::TASKS_FAILED_24H,
            now_ms,
            tasks.len() as f64,
        );
        // Failed backups per VMID.
        let mut failed: BTreeMap<u32, u32> = BTreeMap::new();
        let mut unattributed = 0u32;
        let mut reads = 0;
        for task in &tasks {
            let upid = task.upid.as_deref().and_then(Upid::parse);
            let kind = task.kind.as_deref().or(upid.as_ref().map(|u| u.kind));
            if kind != Some("vzdump") || !backup_failed(task.status.as_deref()) {
                continue;
            }
            let id = task.id.as_deref().or(upid.as_ref().map(|u| u.id));
            if let Some(vmid) = id.and_then(|i| i.parse::<u32>().ok()) {
                *failed.entry(vmid).or_default() += 1;
                continue;
            }
            let Some(upid) = task.upid.as_deref().filter(|_| upid.is_some()) else {
                unattributed += 1;
                continue;
            };
            if !self.task_logs.contains_key(upid) && reads < MAX_TASK_LOGS_PER_RUN {
                reads += 1;
                let log = format!(
                    "/nodes/{}/tasks/{}/log?start=0&limit={TASK_LOG_LINES}",
                    self.node,
                    path_segment(upid)
                );
                match self.api.get::<Vec<TaskLogLine>>(&log).await {
                    Ok(lines) => {
                        let guests = vzdump_failures(lines.iter().map(|l| l.t.as_str()));
                        self.task_logs.insert(upid.to_owned(), guests);
                    }
                    Err(e) => out.problems.push(e.to_string()),
                }
            }
            match self.task_logs.get(upid).filter(|g| !g.is_empty()) {
                Some(guests) => {
                    for vmid in guests {
                        *failed.entry(*vmid).or_default() += 1;
                    }
                }
                // Not read yet (the next run reads it) or naming nobody.
                None => unattributed += 1,
            }
        }
        self.task_logs
            .retain(|upid, _| tasks.iter().any(|t| t.upid.as_deref() == Some(upid)));
        out.sample(
            node_id,
            metric::BACKUP_FAILED_UNATTRIBUTED_24H,
            now_ms,
            f64::from(unattributed),
        );
        for r in resources
            .iter()
            .filter(|r| r.node.as_deref() == Some(self.node.as_str()))
        {
            let (Some(vmid), Some(kind)) = (r.vmid, guest_kind(&r.kind)) else {
                continue;
            };
            let count = failed.get(&(vmid as u32)).copied().unwrap_or(0);
            if let Ok(id) = canonical::guest(kind, &view.cluster, vmid as u32) {
                out.sample(&id, metric::BACKUP_FAILED_24H, now_ms, f64::from(count));
            }
        }
    }

    /// Age of the newest backup per guest on one backup storage, as
    /// `backup_last_age_seconds{storage="…"}` and `backup_count{storage="…"}`.
    pub(super) async fn backups(
        &mut self,
        out: &mut Collected,
        view: &ClusterView,
        storage: &str,
        now_s: i64,
    ) {
        let path = format!(
            "/nodes/{}/storage/{storage}/content?content=backup",
            self.node
        );
        let entries = match self.api.get::<Vec<BackupEntry>>(&path).await {
            Ok(e) => e,
            Err(e) => return out.problems.push(e.to_string()),
        };
        let mut newest: BTreeMap<(u32, ResourceKind), (i64, u32)> = Default::default();
        for e in &entries {
            let (Some(vmid), Some(ctime)) = (e.vmid, e.ctime) else {
                continue;
            };
            let kind = match e.subtype.as_deref() {
                Some("lxc") => ResourceKind::SystemContainer,
                _ => ResourceKind::Vm,
            };
            let slot = newest.entry((vmid as u32, kind)).or_insert((i64::MIN, 0));
            slot.0 = slot.0.max(ctime as i64);
            slot.1 += 1;
        }
        let now_ms = now_s * 1000;
        for ((vmid, kind), (ctime, count)) in newest {
            if let Ok(id) = canonical::guest(kind, &view.cluster, vmid) {
                let label = label_value(storage);
                out.sample(
                    &id,
                    metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", &label),
                    now_ms,
                    (now_s - ctime).max(0) as f64,
                );
                out.sample(
                    &id,
                    metric::labelled(metric::BACKUP_COUNT, "storage", &label),
                    now_ms,
                    f64::from(count),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::Collector;
    use crate::collectors::proxmox::tests::*;

    #[tokio::test]
    async fn backup_jobs_are_attributed_through_their_logs_read_once() {
        let (mut c, pve, server, _dir) = fake_pve1().await;
        for _ in 0..2 {
            let out = c.collect(NOW_S * 1000).await.unwrap();
            assert!(out.problems.is_empty(), "{:?}", out.problems);
            assert_eq!(
                value(&out, "node:pve1", metric::TASKS_FAILED_24H),
                Some(5.0)
            );
            // Its own failed task, not the job that backed it up.
            assert_eq!(
                value(&out, "vm:c/100", metric::BACKUP_FAILED_24H),
                Some(1.0)
            );
            // The job's log names it; the backup with warnings did not fail.
            assert_eq!(
                value(&out, "lxc:c/101", metric::BACKUP_FAILED_24H),
                Some(1.0)
            );
            // The job over all guests that failed as a whole names nobody.
            assert_eq!(
                value(&out, "node:pve1", metric::BACKUP_FAILED_UNATTRIBUTED_24H),
                Some(1.0)
            );
        }
        // Each failed job's log once; the per-guest tasks need none.
        let logs: Vec<(String, usize)> = pve
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|(p, _)| p.ends_with("/log"))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        assert_eq!(
            logs,
            vec![
                (
                    "/nodes/pve1/tasks/UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:/log"
                        .to_owned(),
                    1
                ),
                (
                    "/nodes/pve1/tasks/UPID:pve1:0000A003:00B00003:6A000003:vzdump::root@pam:/log"
                        .to_owned(),
                    1
                ),
            ]
        );
        // A log that cannot be read leaves the task unattributed and says why; it is read
        // again next time.
        let (mut c, pve, server2, _dir2) = fake_pve1().await;
        pve.lock().unwrap().failing = vec!["/nodes/pve1/tasks/UPID"];
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
        assert_eq!(
            value(&out, "lxc:c/101", metric::BACKUP_FAILED_24H),
            Some(0.0)
        );
        assert_eq!(
            value(&out, "node:pve1", metric::BACKUP_FAILED_UNATTRIBUTED_24H),
            Some(2.0)
        );
        pve.lock().unwrap().failing.clear();
        let out = c.collect(NOW_S * 1000).await.unwrap();
        assert_eq!(
            value(&out, "lxc:c/101", metric::BACKUP_FAILED_24H),
            Some(1.0)
        );
        server.abort();
        server2.abort();
    }

    #[test]
    fn vzdump_logs_name_the_guests_whose_backup_failed() {
        // Explicit per-guest errors win; containers are "VM" too.
        let log = [
            "INFO: starting new backup job: vzdump 100 101 102 --mode snapshot --storage pbs",
            "INFO: Starting Backup of VM 100 (qemu)",
            "ERROR: Backup of VM 100 failed - VM 100 qmp command 'backup' failed - got timeout",
            "INFO: Starting Backup of VM 101 (lxc)",
            "INFO: Finished Backup of VM 101 (00:01:02)",
            "INFO: Starting Backup of VM 102 (qemu)",
            "ERROR: Backup of VM 102 failed - unable to open file '/x' - Permission denied",
            "INFO: Backup job finished with errors",
            "TASK ERROR: job errors",
        ];
        assert_eq!(vzdump_failures(log), vec![100, 102]);
        // A job that died between guests: the listed ones it never finished.
        let died = [
            "INFO: starting new backup job: vzdump 100 101 --storage local --exclude 7",
            "INFO: Finished Backup of VM 100 (00:00:12)",
            "TASK ERROR: interrupted by signal",
        ];
        assert_eq!(vzdump_failures(died), vec![101]);
        // A job over all guests that failed before any: nobody to name.
        let all = [
            "INFO: starting new backup job: vzdump --all 1 --storage pbs",
            "TASK ERROR: could not activate storage 'pbs'",
        ];
        assert!(vzdump_failures(all).is_empty());
        assert!(vzdump_failures([]).is_empty());
        // Garbage is not a VMID.
        assert!(vzdump_failures(["ERROR: Backup of VM abc failed - x"]).is_empty());
    }

    #[test]
    fn upids_parse_with_and_without_an_id() {
        assert_eq!(
            Upid::parse("UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:"),
            Some(Upid {
                kind: "vzdump",
                id: ""
            })
        );
        assert_eq!(
            Upid::parse("UPID:node-2:002F3A1B:0A1B2C3D:65F0A1B2:vzdump:101:warden@pve!monitor:"),
            Some(Upid {
                kind: "vzdump",
                id: "101"
            })
        );
        for bad in [
            "",
            "UPID:",
            "UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam",
            "UPID:pve1:zz:00B00002:6A000002:vzdump::root@pam:",
            "UPID:pve1:0000A002:00B00002:6A000002:vzdump:::",
            "UPID:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:x",
            "TASK:pve1:0000A002:00B00002:6A000002:vzdump::root@pam:",
        ] {
            assert_eq!(Upid::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            path_segment("UPID:n:1:2:3:vzdump::a@pve!t:"),
            "UPID:n:1:2:3:vzdump::a@pve!t:"
        );
        assert_eq!(path_segment("a/b c%"), "a%2Fb%20c%25");
    }
}
