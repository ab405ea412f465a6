//! Cross-system correlation and storm control, a pure pass over one run's detections: when
//! findings share a root cause, one root finding (source `correlation`) explains it and links
//! them, and each linked finding names its root. Rules, in order (a finding joins one root):
//!
//! 0. **One pool, two views**: a PVE storage of type `zfspool` is a dataset of a ZFS pool the
//!    same node reports; its capacity finding is linked under the pool's (no extra root).
//! 1. **Backup target full**: backup findings of guests whose backups go to a storage (or PBS
//!    datastore of the same name) that has a capacity finding.
//! 2. **Node down**: findings on resources of a node that is offline or not Ready.
//! 3. **Saturated node**: performance findings of guests on a node whose CPU or memory has a
//!    finding.
//! 4. **Host memory pressure**: container restarts and OOM kills on a host whose memory has
//!    stayed at or above the node warning level.
//! 5. **Storm**: what is left, grouped by issue key and node; [`STORM_MIN`] or more become one
//!    group root ("12 guests on pve2: last backup older than 48 h").

use super::rules::Thresholds;
use super::snapshot::Snapshot;
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity, Source};
use std::collections::{BTreeMap, HashMap};
use warden_shared::metric;
use warden_shared::resource::ResourceKind;

/// Findings of one issue on one node that make a storm.
pub const STORM_MIN: usize = 5;
/// Linked findings named in a root's text (the rest are counted).
const NAMED: usize = 5;

/// Adds root findings for shared causes and links the findings they explain.
pub fn correlate(s: &Snapshot, t: &Thresholds, mut found: Vec<Detection>) -> Vec<Detection> {
    let by_id: HashMap<&str, &ResourceRecord> =
        s.resources.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut roots = Vec::new();
    same_pool(&by_id, &mut found);
    backup_target_full(&by_id, &mut found, &mut roots);
    node_down(s, &mut found, &mut roots);
    saturated_node(&mut found, &mut roots);
    memory_pressure(s, t, &by_id, &mut found, &mut roots);
    storms(s, &mut found, &mut roots);
    found.extend(roots);
    found
}

/// Makes `root` the root of the findings at `members` (indices into `found`): links both
/// ways, takes the worst severity, and lists the first few in the evidence.
fn link(found: &mut [Detection], members: &[usize], mut root: Detection) -> Detection {
    let root_id = root.finding_id();
    for &i in members {
        found[i].root_id = Some(root_id.clone());
        root.related.push(found[i].finding_id());
        root.severity = root.severity.max(found[i].severity);
    }
    let named: Vec<String> = members
        .iter()
        .take(NAMED)
        .map(|&i| format!("{} ({})", found[i].title, found[i].resource_id))
        .collect();
    let more = members.len().saturating_sub(NAMED);
    let tail = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    root.evidence = format!("{}. Linked: {}{tail}", root.evidence, named.join("; "));
    root
}

fn root_on(r: &ResourceRecord, key: &str, category: Category) -> Detection {
    let mut d = Detection::on(r, key, Severity::Info, category);
    d.source = Source::Correlation;
    d
}

/// Not linked to a root, and not one itself.
fn unlinked(d: &Detection) -> bool {
    d.root_id.is_none() && d.source != Source::Correlation && d.related.is_empty()
}

/// Whether a resource type is a Proxmox VE guest (a VM or a system container).
fn is_guest(kind: &str) -> bool {
    matches!(
        ResourceKind::from_prefix(kind),
        Some(ResourceKind::Vm | ResourceKind::SystemContainer)
    )
}

/// The id of the ZFS pool resource (`storage:<node>/zfs:<pool>`) a PVE storage of type
/// `zfspool` lives on: the pool of the same name, or `rpool` for `local-zfs` (the installer's
/// `rpool/data`). The storage list of PVE names no pool, so this is by name.
fn pool_of(r: &ResourceRecord) -> Option<String> {
    if ResourceKind::from_prefix(&r.kind) != Some(ResourceKind::Storage)
        || r.attrs.get("plugin").and_then(|p| p.as_str()) != Some("zfspool")
    {
        return None;
    }
    let node = r.node()?;
    let pool = if r.name == "local-zfs" {
        "rpool"
    } else {
        r.name.as_str()
    };
    Some(format!("storage:{node}/zfs:{pool}"))
}

/// Rule 0: a capacity finding of a `zfspool` PVE storage joins the same finding of its ZFS
/// pool, which becomes its root: one full pool is one problem. The pool's finding takes the
/// worse severity and names the storage in its evidence.
fn same_pool(by_id: &HashMap<&str, &ResourceRecord>, found: &mut [Detection]) {
    let pools: HashMap<(String, String), usize> = found
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            ResourceKind::from_prefix(&d.resource_type) == Some(ResourceKind::Storage)
                && d.resource_id.contains("/zfs:")
        })
        .map(|(i, d)| ((d.resource_id.clone(), d.key.clone()), i))
        .collect();
    if pools.is_empty() {
        return;
    }
    for i in 0..found.len() {
        if found[i].category != Category::Capacity || !unlinked(&found[i]) {
            continue;
        }
        let Some(pool) = by_id
            .get(found[i].resource_id.as_str())
            .and_then(|r| pool_of(r))
        else {
            continue;
        };
        let Some(&p) = pools.get(&(pool, found[i].key.clone())) else {
            continue;
        };
        let (id, root_id) = (found[i].finding_id(), found[p].finding_id());
        found[i].root_id = Some(root_id);
        let (severity, name, evidence) = (
            found[i].severity,
            found[i].resource_name.clone(),
            found[i].evidence.clone(),
        );
        let root = &mut found[p];
        root.related.push(id);
        root.severity = root.severity.max(severity);
        root.description
            .push_str(&format!(" The PVE storage {name} is on this pool."));
        root.evidence
            .push_str(&format!("; PVE storage {name} on it: {evidence}"));
    }
}

/// The backup storages a guest's backups go to: the `storage` labels of its
/// `backup_last_age_seconds{storage="…"}` samples.
fn backup_targets(r: &ResourceRecord) -> impl Iterator<Item = &str> {
    r.latest.keys().filter_map(|m| {
        m.strip_prefix(metric::BACKUP_LAST_AGE_SECONDS)?
            .strip_prefix("{storage=\"")?
            .strip_suffix("\"}")
    })
}

fn backup_target_full(
    by_id: &HashMap<&str, &ResourceRecord>,
    found: &mut [Detection],
    roots: &mut Vec<Detection>,
) {
    // Capacity findings by the storage's name: PVE storages and PBS datastores alike.
    let mut full: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, d) in found.iter().enumerate() {
        let storage_like = matches!(
            ResourceKind::from_prefix(&d.resource_type),
            Some(ResourceKind::Storage | ResourceKind::PbsDatastore)
        );
        if storage_like && d.category == Category::Capacity && d.severity >= Severity::Warning {
            full.entry(d.resource_name.as_str()).or_default().push(i);
        }
    }
    if full.is_empty() {
        return;
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, d) in found.iter().enumerate() {
        if d.category != Category::Backup || !is_guest(&d.resource_type) {
            continue;
        }
        let Some(guest) = by_id.get(d.resource_id.as_str()) else {
            continue;
        };
        if let Some(cause) = backup_targets(guest).find_map(|name| full.get(name)) {
            members.entry(cause[0]).or_default().push(i);
        }
    }
    for (cause, guests) in members {
        let Some(target) = by_id.get(found[cause].resource_id.as_str()) else {
            continue;
        };
        let mut root = root_on(target, "correlated-backup-target-full", Category::Backup);
        let n = guests.len();
        let plural = if n == 1 { "" } else { "s" };
        root.title = format!(
            "Backups failing because {} is full: {n} guest{plural} affected",
            target.name
        );
        root.description = format!(
            "{n} guest{plural} back up to {}, which is short of space ({}); their backups are \
             stale or failing for that reason.",
            target.name, found[cause].title
        );
        root.recommendation = format!(
            "Free space on {} first (prune old backups, run garbage collection, extend it); \
             then run the missed backups. {}",
            target.name, found[cause].recommendation
        );
        root.evidence.clone_from(&found[cause].evidence);
        let all: Vec<usize> = std::iter::once(cause).chain(guests).collect();
        roots.push(link(found, &all, root));
    }
}

/// Nodes that are down: PVE nodes reported offline, Kubernetes nodes not Ready.
fn node_down(s: &Snapshot, found: &mut [Detection], roots: &mut Vec<Detection>) {
    for node in s
        .resources
        .iter()
        .filter(|r| match ResourceKind::from_prefix(&r.kind) {
            Some(ResourceKind::Node) => r.status == "offline",
            Some(ResourceKind::K8sNode) => r.status != "Ready",
            _ => false,
        })
    {
        let members: Vec<usize> = found
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                unlinked(d)
                    && d.node.as_deref() == Some(node.name.as_str())
                    && follows_from_down(&d.resource_type, &node.kind)
            })
            .map(|(i, _)| i)
            .collect();
        if members.len() < 2 {
            continue;
        }
        let mut root = root_on(node, "correlated-node-down", Category::Reliability);
        root.title = format!(
            "{} is down ({}): {} findings linked",
            node.name,
            node.status,
            members.len()
        );
        root.description = format!(
            "{} is {}. Everything on it is unreachable or being moved, so the findings of its \
             guests, pods and disks are symptoms, not separate problems.",
            node.name, node.status
        );
        root.recommendation = format!(
            "Bring {} back (power, network, kubelet or pve-cluster service); the linked \
             findings clear by themselves once it reports again.",
            node.name
        );
        root.evidence = format!("status = {}", node.status);
        roots.push(link(found, &members, root));
    }
}

/// Whether a finding on a resource of type `kind` follows from its node (of type
/// `node_kind`) being down: the node's own findings, its agent's, and what runs on it (PVE
/// guests on PVE nodes, pods on Kubernetes nodes). A worn disk or a full pool is not.
fn follows_from_down(kind: &str, node_kind: &str) -> bool {
    kind == node_kind
        || match (
            ResourceKind::from_prefix(kind),
            ResourceKind::from_prefix(node_kind),
        ) {
            (Some(ResourceKind::Agent), _) => true,
            (k, Some(ResourceKind::Node)) => matches!(
                k,
                Some(ResourceKind::Vm | ResourceKind::SystemContainer | ResourceKind::Replication)
            ),
            (k, _) => k == Some(ResourceKind::Pod),
        }
}

fn saturated_node(found: &mut [Detection], roots: &mut Vec<Detection>) {
    let causes: Vec<usize> = found
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            ResourceKind::from_prefix(&d.resource_type) == Some(ResourceKind::Node)
                && matches!(d.key.as_str(), "node-cpu" | "node-memory")
                && unlinked(d)
        })
        .map(|(i, _)| i)
        .collect();
    let mut done = std::collections::HashSet::new();
    for cause in causes {
        let node = found[cause].resource_name.clone();
        if !done.insert(node.clone()) {
            continue;
        }
        let members: Vec<usize> = found
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                unlinked(d)
                    && d.category == Category::Performance
                    && is_guest(&d.resource_type)
                    && d.node.as_deref() == Some(node.as_str())
            })
            .map(|(i, _)| i)
            .collect();
        if members.is_empty() {
            continue;
        }
        // Every saturation finding of the node joins its root.
        let node_causes: Vec<usize> = found
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                ResourceKind::from_prefix(&d.resource_type) == Some(ResourceKind::Node)
                    && d.resource_name == node
                    && matches!(d.key.as_str(), "node-cpu" | "node-memory")
            })
            .map(|(i, _)| i)
            .collect();
        let mut root = found[cause].clone();
        root.key = "correlated-node-saturation".into();
        root.source = Source::Correlation;
        root.category = Category::Performance;
        root.related.clear();
        root.capacity_forecast = None;
        root.title = format!(
            "{node} is saturated; {} guest{} on it slowed",
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        );
        root.description = format!(
            "{} The guests on {node} compete for what is left, so their own findings follow \
             from the node's.",
            found[cause].description
        );
        root.recommendation = format!(
            "Relieve {node} first: migrate the busiest guests to another node or limit them. {}",
            found[cause].recommendation
        );
        let all: Vec<usize> = node_causes.into_iter().chain(members).collect();
        roots.push(link(found, &all, root));
    }
}

fn memory_pressure(
    s: &Snapshot,
    t: &Thresholds,
    by_id: &HashMap<&str, &ResourceRecord>,
    found: &mut [Detection],
    roots: &mut Vec<Detection>,
) {
    let mut by_host: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in found.iter().enumerate() {
        if unlinked(d)
            && ResourceKind::from_prefix(&d.resource_type) == Some(ResourceKind::AppContainer)
            && matches!(d.key.as_str(), "container-restarts" | "container-oom")
            && let Some((host, _)) = d
                .resource_id
                .strip_prefix("docker:")
                .and_then(|r| r.split_once('/'))
        {
            by_host.entry(host.to_owned()).or_default().push(i);
        }
    }
    for (host, members) in by_host {
        // The host collector reports the machine as `node:<hostname>`.
        let host_id = format!("node:{host}");
        let Some(r) = by_id.get(host_id.as_str()) else {
            continue;
        };
        let Some(mem) = s
            .history
            .get(&(host_id.clone(), metric::MEM_USED_PCT.to_owned()))
            .and_then(|p| {
                let since = s.now_ms - t.window_ms;
                p.iter()
                    .filter(|x| x.0 >= since)
                    .map(|x| x.1)
                    .reduce(f64::min)
            })
            .filter(|&m| m >= t.node.warning)
        else {
            continue;
        };
        let mut root = root_on(r, "correlated-memory-pressure", Category::Reliability);
        root.severity = if mem >= t.node.critical {
            Severity::Critical
        } else {
            Severity::Warning
        };
        root.title = format!(
            "Memory pressure on {host} ({mem:.0} %) is killing containers: {} affected",
            members.len()
        );
        root.description = format!(
            "{host}'s memory has stayed at or above {mem:.1} % used, and containers on it are \
             being restarted or OOM-killed: the kernel is reclaiming memory from them."
        );
        root.recommendation = format!(
            "Free memory on {host} (stop or limit the biggest consumers, set container memory \
             limits) or add memory; restarting the containers alone will not hold."
        );
        root.evidence = format!(
            "mem_used_pct >= {mem:.1} % for {} min",
            t.window_ms / 60_000
        );
        // The host's own memory finding is the cause; it joins the root too.
        let cause = found
            .iter()
            .position(|d| d.resource_id == host_id && d.key == "node-memory" && unlinked(d));
        let all: Vec<usize> = cause.into_iter().chain(members).collect();
        roots.push(link(found, &all, root));
    }
}

fn storms(s: &Snapshot, found: &mut [Detection], roots: &mut Vec<Detection>) {
    let mut groups: BTreeMap<(String, Option<String>), Vec<usize>> = BTreeMap::new();
    for (i, d) in found.iter().enumerate().filter(|(_, d)| unlinked(d)) {
        groups
            .entry((d.key.clone(), d.node.clone()))
            .or_default()
            .push(i);
    }
    for ((key, node), members) in groups {
        if members.len() < STORM_MIN {
            continue;
        }
        let first = &found[members[0]];
        // The group lives on its node when the node is a known resource, else on the fleet.
        let anchor = node.as_deref().and_then(|n| {
            s.resources.iter().find(|r| {
                r.name == n
                    && matches!(
                        ResourceKind::from_prefix(&r.kind),
                        Some(ResourceKind::Node | ResourceKind::K8sNode)
                    )
            })
        });
        let mut root = match anchor {
            Some(r) => root_on(r, &format!("storm-{key}"), first.category),
            None => {
                let mut d = first.clone();
                d.resource_id = "fleet:all".into();
                d.resource_name = "fleet".into();
                d.resource_type = "fleet".into();
                d.node = node.clone();
                d.key = format!("storm-{key}");
                d.source = Source::Correlation;
                d.related.clear();
                d.capacity_forecast = None;
                d.alert_id = None;
                d
            }
        };
        let kind = &first.resource_type;
        let place = node
            .as_deref()
            .map_or_else(String::new, |n| format!(" on {n}"));
        root.title = format!(
            "{} {kind}s{place} share one issue: {}",
            members.len(),
            first.key
        );
        root.description = format!(
            "{} resources{place} raised the same finding at once; it is listed once here. \
             The first: {}",
            members.len(),
            first.description
        );
        root.recommendation = format!(
            "Look for what they have in common (a shared job, storage, network or node). {}",
            first.recommendation
        );
        root.evidence = format!("{} findings of `{key}`", members.len());
        roots.push(link(found, &members, root));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LatestSample;
    use crate::patrol::rules;

    const NOW: i64 = 1_800_000_000_000;

    fn record(id: &str, status: &str) -> ResourceRecord {
        let (kind, name) = id.split_once(':').unwrap();
        ResourceRecord {
            id: id.into(),
            kind: kind.into(),
            name: name.rsplit('/').next().unwrap().into(),
            status: status.into(),
            ..ResourceRecord::default()
        }
    }

    fn guest(vmid: u32, node: &str, backup_storage: &str, age_s: f64) -> ResourceRecord {
        let mut r = record(&format!("lxc:demo/{vmid}"), "running");
        r.attrs.insert("node".into(), node.into());
        r.latest.insert(
            metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", backup_storage),
            LatestSample {
                ts_ms: NOW,
                value: age_s,
            },
        );
        r
    }

    fn series(s: &mut Snapshot, id: &str, metric: &str, value: f64) {
        let points = (0..=30).map(|m| (NOW - (30 - m) * 60_000, value)).collect();
        s.history.insert((id.into(), metric.into()), points);
    }

    fn run(s: &Snapshot) -> Vec<Detection> {
        let t = Thresholds::default();
        let found = rules::detect(s, &t, &BTreeMap::new());
        correlate(s, &t, found)
    }

    fn roots(found: &[Detection]) -> Vec<&Detection> {
        found
            .iter()
            .filter(|d| d.source == Source::Correlation)
            .collect()
    }

    #[test]
    fn backups_failing_on_a_full_target_are_linked_to_it() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![
                record("storage:demo/pbs", "available"),
                record("storage:pve1/local", "available"),
                guest(104, "pve1", "pbs", 4.0 * 86_400.0),
                guest(105, "pve1", "pbs", 3.0 * 86_400.0),
                // Backs up elsewhere: its stale backup is its own problem.
                guest(106, "pve1", "local", 3.0 * 86_400.0),
                guest(107, "pve1", "pbs", 3600.0),
            ],
            ..Snapshot::default()
        };
        series(&mut s, "storage:demo/pbs", metric::STORAGE_USED_PCT, 93.5);
        series(&mut s, "storage:pve1/local", metric::STORAGE_USED_PCT, 40.0);
        let found = run(&s);
        let r = roots(&found);
        assert_eq!(r.len(), 1, "{found:#?}");
        let root = r[0];
        assert_eq!(root.key, "correlated-backup-target-full");
        assert_eq!(root.resource_id, "storage:demo/pbs");
        assert_eq!(root.severity, Severity::Critical);
        assert!(
            root.title.contains("pbs is full: 2 guests"),
            "{}",
            root.title
        );
        assert!(root.evidence.contains("93.5"), "{}", root.evidence);
        let linked: Vec<&str> = found
            .iter()
            .filter(|d| d.root_id.as_deref() == Some(root.finding_id().as_str()))
            .map(|d| d.resource_id.as_str())
            .collect();
        assert_eq!(linked, ["storage:demo/pbs", "lxc:demo/104", "lxc:demo/105"]);
        assert_eq!(root.related.len(), 3);
        let own = found
            .iter()
            .find(|d| d.resource_id == "lxc:demo/106")
            .unwrap();
        assert_eq!(own.root_id, None);
    }

    #[test]
    fn a_zfs_pool_and_its_pve_storage_are_one_problem() {
        let on = |id: &str, node: &str, attrs: &[(&str, &str)]| {
            let mut r = record(id, "available");
            r.parent = Some(format!("node:{node}"));
            for (k, v) in attrs {
                r.attrs.insert((*k).into(), (*v).into());
            }
            r
        };
        let zfs = |node: &str, pool: &str| {
            on(
                &format!("storage:{node}/zfs:{pool}"),
                node,
                &[("plugin", "zfs"), ("pool", pool)],
            )
        };
        let zfspool = |node: &str, name: &str| {
            on(
                &format!("storage:{node}/{name}"),
                node,
                &[("plugin", "zfspool")],
            )
        };
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![
                zfs("pve1", "tank"),
                zfspool("pve1", "tank"),
                zfs("pve1", "rpool"),
                zfspool("pve1", "local-zfs"),
                // Another node's pool of the same name is another pool.
                zfspool("pve2", "tank"),
                // A directory storage is not a dataset of the pool.
                on("storage:pve1/backup", "pve1", &[("plugin", "dir")]),
            ],
            ..Snapshot::default()
        };
        for (id, pct) in [
            ("storage:pve1/zfs:tank", 85.0),
            ("storage:pve1/tank", 91.0),
            ("storage:pve1/zfs:rpool", 82.0),
            ("storage:pve1/local-zfs", 81.0),
            ("storage:pve2/tank", 92.0),
            ("storage:pve1/backup", 83.0),
        ] {
            series(&mut s, id, metric::STORAGE_USED_PCT, pct);
        }
        let found = run(&s);
        assert!(roots(&found).is_empty(), "{found:#?}");
        let get = |id: &str| found.iter().find(|d| d.resource_id == id).unwrap();
        for (pool, storage) in [
            ("storage:pve1/zfs:tank", "storage:pve1/tank"),
            ("storage:pve1/zfs:rpool", "storage:pve1/local-zfs"),
        ] {
            let (p, st) = (get(pool), get(storage));
            assert_eq!(st.root_id, Some(p.finding_id()), "{st:#?}");
            assert_eq!(p.related, [st.finding_id()]);
            assert_eq!(p.root_id, None);
        }
        // The pool takes the storage's worse severity and names it.
        let tank = get("storage:pve1/zfs:tank");
        assert_eq!(tank.severity, Severity::Critical);
        assert!(
            tank.evidence
                .contains("; PVE storage tank on it: storage_used_pct >= 91.0 %"),
            "{}",
            tank.evidence
        );
        for alone in ["storage:pve2/tank", "storage:pve1/backup"] {
            assert_eq!(get(alone).root_id, None, "{alone}");
        }
        // The findings list shows one finding per pool.
        let shown = found.iter().filter(|d| d.root_id.is_none()).count();
        assert_eq!(shown, 4, "{found:#?}");
    }

    #[test]
    fn a_down_node_explains_what_runs_on_it() {
        let mut pod_a = record("pod:k8s/shop/web-1", "CrashLoopBackOff");
        pod_a.attrs.insert("node".into(), "w2".into());
        let mut pod_b = record("pod:k8s/shop/web-2", "ImagePullBackOff");
        pod_b.attrs.insert("node".into(), "w2".into());
        let s = Snapshot {
            now_ms: NOW,
            resources: vec![record("k8s-node:k8s/w2", "NotReady"), pod_a, pod_b],
            ..Snapshot::default()
        };
        let found = run(&s);
        let r = roots(&found);
        assert_eq!(r.len(), 1, "{found:#?}");
        assert_eq!(r[0].key, "correlated-node-down");
        assert_eq!(r[0].severity, Severity::Critical);
        assert!(
            found
                .iter()
                .filter(|d| d.source != Source::Correlation)
                .all(|d| d.root_id.is_some()),
            "{found:#?}"
        );
    }

    #[test]
    fn a_down_pve_node_links_its_guests_not_its_worn_disk() {
        let mut disk = record("disk:pve3/S3Z9", "healthy");
        disk.parent = Some("node:pve3".into());
        disk.latest.insert(
            metric::DISK_WEAROUT_PCT.into(),
            LatestSample {
                ts_ms: NOW,
                value: 12.0,
            },
        );
        let s = Snapshot {
            now_ms: NOW,
            resources: vec![
                record("node:pve3", "offline"),
                guest(104, "pve3", "local", 4.0 * 86_400.0),
                disk,
            ],
            ..Snapshot::default()
        };
        let found = run(&s);
        let r = roots(&found);
        assert_eq!(r.len(), 1, "{found:#?}");
        assert_eq!(r[0].key, "correlated-node-down");
        let linked = |key: &str| {
            found
                .iter()
                .find(|d| d.key == key)
                .unwrap()
                .root_id
                .is_some()
        };
        assert!(linked("node-offline") && linked("backup-age"));
        assert!(!linked("disk-wearout"), "a worn disk is its own problem");
    }

    #[test]
    fn guests_slowed_by_a_saturated_node() {
        let mut vm = record("vm:demo/100", "running");
        vm.attrs.insert("node".into(), "pve2".into());
        let mut other = record("vm:demo/200", "running");
        other.attrs.insert("node".into(), "pve1".into());
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![record("node:pve2", "online"), vm, other],
            ..Snapshot::default()
        };
        series(&mut s, "node:pve2", metric::CPU_PCT, 91.0);
        series(&mut s, "vm:demo/100", metric::MEM_USED_PCT, 90.0);
        series(&mut s, "vm:demo/200", metric::MEM_USED_PCT, 90.0);
        let found = run(&s);
        let r = roots(&found);
        assert_eq!(r.len(), 1, "{found:#?}");
        assert_eq!(r[0].key, "correlated-node-saturation");
        assert_eq!(r[0].resource_id, "node:pve2");
        let on_pve1 = found
            .iter()
            .find(|d| d.resource_id == "vm:demo/200")
            .unwrap();
        assert_eq!(
            on_pve1.root_id, None,
            "a guest on another node is not linked"
        );
    }

    #[test]
    fn container_restarts_under_host_memory_pressure() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![record("node:web1", "up")],
            ..Snapshot::default()
        };
        for name in ["api", "worker"] {
            let mut c = record(&format!("docker:web1/{name}"), "running");
            c.attrs.insert("oom_killed".into(), true.into());
            s.resources.push(c);
        }
        series(&mut s, "node:web1", metric::MEM_USED_PCT, 96.0);
        let found = run(&s);
        let r = roots(&found);
        assert_eq!(r.len(), 1, "{found:#?}");
        assert_eq!(r[0].key, "correlated-memory-pressure");
        assert_eq!(r[0].severity, Severity::Critical);
        assert_eq!(
            r[0].related.len(),
            3,
            "the host's memory finding and both containers"
        );
        assert!(
            found
                .iter()
                .all(|d| d.source == Source::Correlation || d.root_id.is_some())
        );
        // Without the pressure the OOM kills stand alone.
        series(&mut s, "node:web1", metric::MEM_USED_PCT, 40.0);
        assert!(roots(&run(&s)).is_empty());
    }

    #[test]
    fn a_storm_is_one_root_and_a_few_are_not() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![record("node:pve2", "online")],
            ..Snapshot::default()
        };
        for vmid in 0..12 {
            s.resources
                .push(guest(300 + vmid, "pve2", "local", 5.0 * 86_400.0));
        }
        for vmid in 0..3 {
            s.resources
                .push(guest(400 + vmid, "pve3", "local", 5.0 * 86_400.0));
        }
        let found = run(&s);
        let r = roots(&found);
        assert_eq!(r.len(), 1, "{found:#?}");
        assert_eq!(r[0].key, "storm-backup-age");
        assert_eq!(r[0].resource_id, "node:pve2");
        assert_eq!(r[0].related.len(), 12);
        assert!(r[0].title.starts_with("12 lxcs on pve2"), "{}", r[0].title);
        assert!(r[0].evidence.contains("and 7 more"), "{}", r[0].evidence);
        let alone = found.iter().filter(|d| d.root_id.is_none()).count();
        assert_eq!(alone, 1 + 3, "the root and pve3's three");
        // Stable: the same input gives the same root id.
        assert_eq!(roots(&run(&s))[0].finding_id(), r[0].finding_id());
    }

    #[test]
    fn nothing_to_correlate_leaves_findings_alone() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![guest(104, "pve1", "pbs", 4.0 * 86_400.0)],
            ..Snapshot::default()
        };
        s.resources.push(record("storage:demo/pbs", "available"));
        series(&mut s, "storage:demo/pbs", metric::STORAGE_USED_PCT, 50.0);
        let found = run(&s);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].root_id, None);
    }
}
