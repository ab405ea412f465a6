//! What only a guest's node reads: the memory running VMs see (balloon driver) and their
//! filesystems through the guest agent, at its own cadence; and PVE's guest types.

use super::ProxmoxCollector;
use super::api::{label_value, num, pct, put};
use super::cluster::{ClusterResource, ClusterView};
use super::slow::{Budget, SlowRead, SlowReads};
use crate::collectors::{Collected, CollectorError};
use serde::Deserialize;
use std::collections::HashSet;
use tracing::warn;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};

/// How often each VM's filesystems are read through its guest agent.
const GUEST_FS_EVERY_MS: i64 = 5 * 60_000;

/// How long guest-agent reads pause after a 403: PVE 8 requires `VM.Monitor` for them, which
/// `PVEAuditor` lacks (PVE 9's `VM.GuestAgent.Audit` is in it).
const AGENT_DENIED_PAUSE_MS: i64 = 3_600_000;
/// Filesystems a guest agent may list whose usage means nothing: read-only images, always
/// full (snap packages, a cloud-init or installer CD).
const IMAGE_FS: &[&str] = &["squashfs", "iso9660", "udf"];
/// Most filesystems reported per VM (a Kubernetes node may mount hundreds of volumes).
const MAX_GUEST_FS: usize = 32;

#[derive(Deserialize)]
struct GuestStatus {
    ballooninfo: Option<BalloonInfo>,
    /// 1 when the guest agent is enabled in the VM's configuration.
    #[serde(default, deserialize_with = "num")]
    agent: Option<f64>,
}

/// The `{"result": …}` of guest agent commands.
#[derive(Deserialize)]
struct AgentResult<T> {
    result: T,
}

/// One filesystem of `guest-get-fsinfo` (QEMU guest agent).
#[derive(Deserialize)]
struct GuestFsInfo {
    /// The device (`sda1`, `dm-0`; a volume GUID path on Windows).
    name: Option<String>,
    mountpoint: Option<String>,
    #[serde(rename = "type")]
    fstype: Option<String>,
    /// Capacity available to users (without blocks reserved for root), bytes.
    #[serde(rename = "total-bytes", default, deserialize_with = "num")]
    total: Option<f64>,
    #[serde(rename = "used-bytes", default, deserialize_with = "num")]
    used: Option<f64>,
}

#[derive(Deserialize)]
struct BalloonInfo {
    #[serde(default, deserialize_with = "num")]
    total_mem: Option<f64>,
    #[serde(default, deserialize_with = "num")]
    free_mem: Option<f64>,
}

/// Whether a guest-agent error says the agent cannot answer (not running, not configured,
/// hung, the VM stopped meanwhile): the guest's state, not a failure of the run.
fn agent_unavailable(message: &str) -> bool {
    ["guest agent", "is not running", "got timeout"]
        .iter()
        .any(|m| message.contains(m))
}

/// A VM's filesystems as `guest_fs_used_bytes`, `guest_fs_total_bytes` and
/// `guest_fs_used_pct`, labelled `mountpoint`: read-only images ([`IMAGE_FS`]) and
/// filesystems without a size are skipped, a device mounted twice (bind mounts, btrfs
/// subvolumes) counts once at its shortest mount point, and at most [`MAX_GUEST_FS`].
fn guest_fs_samples(out: &mut Collected, id: &ResourceId, fs: &[GuestFsInfo], now_ms: i64) {
    let mut fs: Vec<(&GuestFsInfo, String)> = fs
        .iter()
        .filter(|f| {
            f.fstype
                .as_deref()
                .is_none_or(|t| !IMAGE_FS.contains(&t.to_ascii_lowercase().as_str()))
        })
        .filter(|f| f.total.is_some_and(|t| t > 0.0) && f.used.is_some())
        .filter_map(|f| {
            let label = label_value(f.mountpoint.as_deref()?);
            (!label.is_empty()).then_some((f, label))
        })
        .collect();
    fs.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.1.cmp(&b.1)));
    let mut devices = HashSet::new();
    let mut mounts = HashSet::new();
    for (f, mount) in fs {
        if f.name.as_ref().is_some_and(|d| !devices.insert(d.as_str()))
            || !mounts.insert(mount.clone())
        {
            continue;
        }
        if mounts.len() > MAX_GUEST_FS {
            break;
        }
        let label = |m: &str| metric::labelled(m, "mountpoint", &mount);
        put(out, id, &label(metric::GUEST_FS_USED_BYTES), now_ms, f.used);
        put(
            out,
            id,
            &label(metric::GUEST_FS_TOTAL_BYTES),
            now_ms,
            f.total,
        );
        put(
            out,
            id,
            &label(metric::GUEST_FS_USED_PCT),
            now_ms,
            pct(f.used, f.total),
        );
    }
}

pub(super) fn guest_kind(pve_type: &str) -> Option<ResourceKind> {
    match pve_type {
        "qemu" => Some(ResourceKind::Vm),
        "lxc" => Some(ResourceKind::SystemContainer),
        _ => None,
    }
}

impl ProxmoxCollector {
    /// The filesystems of this node's running VMs with an enabled guest agent (`vms`), each
    /// VM every [`GUEST_FS_EVERY_MS`] (see [`guest_fs_samples`]). A guest agent that is not
    /// running or does not answer is the guest's business, not a problem of the run; a 403
    /// pauses these reads for [`AGENT_DENIED_PAUSE_MS`].
    pub(super) async fn guest_filesystems(
        &mut self,
        out: &mut Collected,
        slow: &mut SlowReads,
        budget: &Budget,
        view: &ClusterView,
        vms: &[u32],
        now_ms: i64,
    ) {
        slow.due.retain(|read, _| match read {
            SlowRead::GuestFs(v) => vms.contains(v),
            _ => true,
        });
        if now_ms < slow.agent_denied_until_ms {
            return;
        }
        for &vmid in vms {
            let read = SlowRead::GuestFs(vmid);
            if !slow.is_due(&read, now_ms) {
                continue;
            }
            let path = format!("/nodes/{}/qemu/{vmid}/agent/get-fsinfo", self.node);
            match budget
                .run(
                    self.api
                        .get_unless::<AgentResult<Vec<GuestFsInfo>>>(&path, agent_unavailable),
                )
                .await
            {
                None => break,
                Some(Ok(answer)) => {
                    if let Ok(id) = canonical::guest(ResourceKind::Vm, &view.cluster, vmid) {
                        guest_fs_samples(out, &id, &answer.result, now_ms);
                    }
                    slow.due.insert(read, now_ms + GUEST_FS_EVERY_MS);
                }
                Some(Err(CollectorError::Proxmox(m))) if m.contains("(403 ") => {
                    warn!(
                        node = %self.node,
                        error = %m,
                        "guest agent reads are not permitted, so VM filesystem usage is not \
                         collected (PVE 9: VM.GuestAgent.Audit, in PVEAuditor; PVE 8: \
                         VM.Monitor); retrying in an hour"
                    );
                    slow.agent_denied_until_ms = now_ms + AGENT_DENIED_PAUSE_MS;
                    break;
                }
                Some(Err(CollectorError::Proxmox(m))) if agent_unavailable(&m) => {
                    slow.due.insert(read, now_ms + GUEST_FS_EVERY_MS);
                }
                Some(Err(e)) => out.problems.push(e.to_string()),
            }
        }
    }

    /// The memory running VMs on this node see themselves (balloon driver), as
    /// `guest_mem_used_bytes` / `guest_mem_total_bytes`; absent where the guest has no driver.
    /// Returns those VMs whose guest agent is enabled.
    pub(super) async fn balloon_memory(
        &mut self,
        out: &mut Collected,
        view: &ClusterView,
        resources: &[ClusterResource],
        now_ms: i64,
    ) -> Vec<u32> {
        let mut with_agent = Vec::new();
        let own_vms: Vec<u32> = resources
            .iter()
            .filter(|r| r.kind == "qemu" && r.node.as_deref() == Some(self.node.as_str()))
            .filter(|r| r.status.as_deref() == Some("running"))
            .filter_map(|r| r.vmid.map(|v| v as u32))
            .collect();
        for vmid in own_vms {
            let path = format!("/nodes/{}/qemu/{vmid}/status/current", self.node);
            match self.api.get::<GuestStatus>(&path).await {
                Ok(st) => {
                    if st.agent == Some(1.0) {
                        with_agent.push(vmid);
                    }
                    let Some(b) = st.ballooninfo else { continue };
                    let (Some(total), Some(free)) = (b.total_mem, b.free_mem) else {
                        continue;
                    };
                    if let Ok(id) = canonical::guest(ResourceKind::Vm, &view.cluster, vmid) {
                        out.sample(&id, metric::GUEST_MEM_TOTAL_BYTES, now_ms, total);
                        out.sample(&id, metric::GUEST_MEM_USED_BYTES, now_ms, total - free);
                    }
                }
                Err(e) => out.problems.push(e.to_string()),
            }
        }
        with_agent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::Collector;
    use crate::collectors::proxmox::tests::*;

    #[test]
    fn guest_filesystems_skip_images_and_second_mounts() {
        let fs: Vec<GuestFsInfo> = serde_json::from_str(
            r#"[
            {"name":"sda1","mountpoint":"/","type":"ext4","total-bytes":31500000000,
             "used-bytes":9000000000,"total-bytes-privileged":33000000000,
             "disk":[{"bus-type":"scsi","bus":0,"target":0,"unit":0,"serial":"drive-scsi0",
                      "dev":"/dev/sda1"}]},
            {"name":"sda15","mountpoint":"/boot/efi","type":"vfat","total-bytes":109422592,
             "used-bytes":6334464,"disk":[]},
            {"name":"loop0","mountpoint":"/snap/core22/1380","type":"squashfs",
             "total-bytes":77463552,"used-bytes":77463552,"disk":[]},
            {"name":"sr0","mountpoint":"/media/cdrom","type":"iso9660","total-bytes":374784,
             "used-bytes":374784,"disk":[]},
            {"name":"sda1","mountpoint":"/var/lib/docker/volumes","type":"ext4",
             "total-bytes":31500000000,"used-bytes":9000000000,"disk":[]},
            {"name":"sdb","mountpoint":"/data","type":"xfs","disk":[]},
            {"name":"\\\\?\\Volume{7d4f2e15-0000-0000-0000-100000000000}\\","mountpoint":"C:\\",
             "type":"NTFS","total-bytes":"63757611008","used-bytes":"31878805504","disk":[]}
        ]"#,
        )
        .unwrap();
        let id = canonical::guest(ResourceKind::Vm, "c", 100).unwrap();
        let mut out = Collected::default();
        guest_fs_samples(&mut out, &id, &fs, 7);
        let mut got: Vec<(String, f64)> = out
            .samples
            .iter()
            .filter(|s| s.metric.starts_with(metric::GUEST_FS_USED_PCT))
            .map(|s| (s.metric.clone(), (s.value * 10.0).round() / 10.0))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                (
                    metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/"),
                    28.6
                ),
                (
                    metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "/boot/efi"),
                    5.8
                ),
                (
                    metric::labelled(metric::GUEST_FS_USED_PCT, "mountpoint", "C:"),
                    50.0
                ),
            ]
        );
        assert_eq!(
            value(
                &out,
                "vm:c/100",
                &metric::labelled(metric::GUEST_FS_TOTAL_BYTES, "mountpoint", "/")
            ),
            Some(31_500_000_000.0)
        );
        assert_eq!(
            value(
                &out,
                "vm:c/100",
                &metric::labelled(metric::GUEST_FS_USED_BYTES, "mountpoint", "C:")
            ),
            Some(31_878_805_504.0)
        );
        // Many volumes (a Kubernetes node): at most MAX_GUEST_FS.
        let many: Vec<GuestFsInfo> = (0..100)
            .map(|i| GuestFsInfo {
                name: Some(format!("sd{i}")),
                mountpoint: Some(format!("/var/lib/kubelet/pods/{i:03}")),
                fstype: Some("ext4".into()),
                total: Some(100.0),
                used: Some(1.0),
            })
            .collect();
        let mut out = Collected::default();
        guest_fs_samples(&mut out, &id, &many, 7);
        assert_eq!(out.samples.len(), 3 * MAX_GUEST_FS);
    }

    #[tokio::test]
    async fn guest_agent_trouble_is_the_guests_not_the_runs() {
        let (mut c, pve, server, _dir) = fake_pve1().await;
        let fsinfo = "/nodes/pve1/qemu/100/agent/get-fsinfo";
        let at = |minutes: i64| NOW_S * 1000 + minutes * 60_000;
        let fs_samples = |out: &Collected| {
            out.samples
                .iter()
                .filter(|s| s.metric.starts_with("guest_fs_"))
                .count()
        };
        pve.lock().unwrap().agent_down = true;
        let out = c.collect(at(0)).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(fs_samples(&out), 0);
        // Asked again at the usual cadence, not every run.
        c.collect(at(1)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 1);
        pve.lock().unwrap().agent_down = false;
        let out = c.collect(at(5)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 2);
        assert_eq!(fs_samples(&out), 3);

        // Not permitted (PVE 8 without VM.Monitor): no problem, and no retry for an hour.
        pve.lock().unwrap().denied = vec!["/nodes/pve1/qemu/100/agent"];
        let out = c.collect(at(10)).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(hits(&pve, fsinfo), 3);
        c.collect(at(30)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 3);
        pve.lock().unwrap().denied.clear();
        let out = c.collect(at(71)).await.unwrap();
        assert_eq!(hits(&pve, fsinfo), 4);
        assert_eq!(fs_samples(&out), 3);
        server.abort();
    }
}
