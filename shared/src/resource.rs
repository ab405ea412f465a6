//! The unified resource model: the kinds of things Warden watches and how their canonical
//! ids are built.
//!
//! Canonical ids are `<prefix>:<name>` (see [`ResourceId`]). The name is chosen so that an id
//! survives what the thing survives: a VM or container is named by its cluster and VMID, not
//! by the node it runs on, so a migration keeps its id; per-node things (local storage,
//! disks) name their node. Parents are separate fields ([`crate::telemetry::Resource::parent`]),
//! never part of a guest's id.
//!
//! Ids are lenient on the wire: a prefix this build does not know still decodes (a newer
//! agent may report new kinds), and [`ResourceKind::from_prefix`] returns `None` for it.

use crate::ids::{IdError, ResourceId};

/// What a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// A host: a Proxmox node or any machine running the agent.
    Node,
    /// A QEMU virtual machine.
    Vm,
    /// A system container (LXC).
    SystemContainer,
    /// A Docker or Podman engine.
    DockerHost,
    /// An application container (Docker/Podman).
    AppContainer,
    /// A storage pool (PVE storage, ZFS pool, ...).
    Storage,
    /// One backup (a PVE backup volume or a PBS snapshot).
    Backup,
    /// A Proxmox Backup Server datastore.
    PbsDatastore,
    /// A Kubernetes cluster.
    K8sCluster,
    /// A Kubernetes node.
    K8sNode,
    /// A Kubernetes pod.
    Pod,
    /// A Deployment, StatefulSet or DaemonSet.
    K8sWorkload,
    /// A PersistentVolumeClaim.
    Pvc,
    /// A physical disk (with SMART data).
    PhysicalDisk,
    /// A Proxmox VE storage replication job (its parent is the guest).
    Replication,
    /// An enrolled agent, as the subject of findings about the agent itself (silent,
    /// collector failing, identity in conflict). Collectors never report it.
    Agent,
    /// Warden's own server, as the subject of findings about itself (its disk).
    /// Collectors never report it.
    Server,
}

impl ResourceKind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 17] = [
        Self::Node,
        Self::Vm,
        Self::SystemContainer,
        Self::DockerHost,
        Self::AppContainer,
        Self::Storage,
        Self::Backup,
        Self::PbsDatastore,
        Self::K8sCluster,
        Self::K8sNode,
        Self::Pod,
        Self::K8sWorkload,
        Self::Pvc,
        Self::PhysicalDisk,
        Self::Replication,
        Self::Agent,
        Self::Server,
    ];

    /// The id prefix, e.g. `lxc` in `lxc:pve/101`. This is also the API's `type` field.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Vm => "vm",
            Self::SystemContainer => "lxc",
            Self::DockerHost => "docker-host",
            Self::AppContainer => "docker",
            Self::Storage => "storage",
            Self::Backup => "backup",
            Self::PbsDatastore => "pbs-datastore",
            Self::K8sCluster => "k8s-cluster",
            Self::K8sNode => "k8s-node",
            Self::Pod => "pod",
            Self::K8sWorkload => "k8s-workload",
            Self::Pvc => "pvc",
            Self::PhysicalDisk => "disk",
            Self::Replication => "replication",
            Self::Agent => "agent",
            Self::Server => "warden",
        }
    }

    /// The kind for an id prefix, if this build knows it.
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// The kind of `id`, if known.
    pub fn of(id: &ResourceId) -> Option<Self> {
        Self::from_prefix(id.kind())
    }

    /// Builds `<prefix>:<name>`.
    ///
    /// # Errors
    /// [`IdError`] if `name` is empty or has control characters.
    pub fn id(self, name: &str) -> Result<ResourceId, IdError> {
        ResourceId::of(self.prefix(), name)
    }
}

/// Constructors for canonical ids; one place decides each kind's naming.
pub mod canonical {
    use super::{IdError, ResourceId, ResourceKind};

    /// `node:<host>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn node(host: &str) -> Result<ResourceId, IdError> {
        ResourceKind::Node.id(host)
    }

    /// `vm:<cluster>/<vmid>` or `lxc:<cluster>/<vmid>`: the node is not part of the id, so a
    /// migration keeps it. `cluster` is the PVE cluster name (a standalone node's own name).
    ///
    /// # Errors
    /// An invalid name, or a kind other than `Vm`/`SystemContainer`.
    pub fn guest(kind: ResourceKind, cluster: &str, vmid: u32) -> Result<ResourceId, IdError> {
        match kind {
            ResourceKind::Vm | ResourceKind::SystemContainer => {
                kind.id(&format!("{cluster}/{vmid}"))
            }
            _ => Err(IdError::ResourceShape),
        }
    }

    /// `storage:<scope>/<pool>`: `scope` is the cluster for shared storage and the node for
    /// node-local storage, so the same shared pool seen from two nodes is one resource.
    ///
    /// # Errors
    /// An invalid name.
    pub fn storage(scope: &str, pool: &str) -> Result<ResourceId, IdError> {
        ResourceKind::Storage.id(&format!("{scope}/{pool}"))
    }

    /// `docker-host:<host>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn docker_host(host: &str) -> Result<ResourceId, IdError> {
        ResourceKind::DockerHost.id(host)
    }

    /// `docker:<host>/<container name>` (the name without Docker's leading `/`).
    ///
    /// # Errors
    /// An invalid name.
    pub fn app_container(host: &str, name: &str) -> Result<ResourceId, IdError> {
        ResourceKind::AppContainer.id(&format!("{host}/{}", name.trim_start_matches('/')))
    }

    /// `backup:<storage scope>/<volume or snapshot id>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn backup(scope: &str, volume: &str) -> Result<ResourceId, IdError> {
        ResourceKind::Backup.id(&format!("{scope}/{volume}"))
    }

    /// `pbs-datastore:<pbs host>/<datastore>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn pbs_datastore(pbs: &str, store: &str) -> Result<ResourceId, IdError> {
        ResourceKind::PbsDatastore.id(&format!("{pbs}/{store}"))
    }

    /// `k8s-cluster:<cluster>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn k8s_cluster(cluster: &str) -> Result<ResourceId, IdError> {
        ResourceKind::K8sCluster.id(cluster)
    }

    /// `k8s-node:<cluster>/<node>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn k8s_node(cluster: &str, node: &str) -> Result<ResourceId, IdError> {
        ResourceKind::K8sNode.id(&format!("{cluster}/{node}"))
    }

    /// `pod:<cluster>/<namespace>/<pod>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn pod(cluster: &str, namespace: &str, pod: &str) -> Result<ResourceId, IdError> {
        ResourceKind::Pod.id(&format!("{cluster}/{namespace}/{pod}"))
    }

    /// `k8s-workload:<cluster>/<namespace>/<kind>/<name>`, kind lowercase (`deployment`, ...).
    ///
    /// # Errors
    /// An invalid name.
    pub fn k8s_workload(
        cluster: &str,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<ResourceId, IdError> {
        ResourceKind::K8sWorkload.id(&format!(
            "{cluster}/{namespace}/{}/{name}",
            kind.to_ascii_lowercase()
        ))
    }

    /// `pvc:<cluster>/<namespace>/<claim>`.
    ///
    /// # Errors
    /// An invalid name.
    pub fn pvc(cluster: &str, namespace: &str, claim: &str) -> Result<ResourceId, IdError> {
        ResourceKind::Pvc.id(&format!("{cluster}/{namespace}/{claim}"))
    }

    /// `disk:<node>/<serial or device path>`; prefer the serial, which survives re-cabling.
    ///
    /// # Errors
    /// An invalid name.
    pub fn physical_disk(node: &str, serial_or_path: &str) -> Result<ResourceId, IdError> {
        ResourceKind::PhysicalDisk.id(&format!("{node}/{serial_or_path}"))
    }

    /// `replication:<cluster>/<job>`: the job id (`<vmid>-<n>`) is unique in the cluster and
    /// moves with the guest, like the guest's own id.
    ///
    /// # Errors
    /// An invalid name.
    pub fn replication(cluster: &str, job: &str) -> Result<ResourceId, IdError> {
        ResourceKind::Replication.id(&format!("{cluster}/{job}"))
    }

    /// `agent:<agent id>`, the subject of findings about an agent itself.
    ///
    /// # Errors
    /// An invalid name.
    pub fn agent(agent_id: &str) -> Result<ResourceId, IdError> {
        ResourceKind::Agent.id(agent_id)
    }

    /// `warden:server`, the subject of findings about Warden's own server.
    ///
    /// # Errors
    /// Never in practice; the name is constant.
    pub fn server() -> Result<ResourceId, IdError> {
        ResourceKind::Server.id("server")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip_and_are_unique() {
        for k in ResourceKind::ALL {
            assert_eq!(ResourceKind::from_prefix(k.prefix()), Some(k));
            // Every prefix is a valid id kind.
            assert!(k.id("x").is_ok(), "{k:?}");
        }
        let mut prefixes: Vec<_> = ResourceKind::ALL.iter().map(|k| k.prefix()).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), ResourceKind::ALL.len());
        assert_eq!(ResourceKind::from_prefix("hologram"), None);
    }

    #[test]
    fn a_migrated_guest_keeps_its_id() {
        let before = canonical::guest(ResourceKind::Vm, "prod", 101).unwrap();
        let after = canonical::guest(ResourceKind::Vm, "prod", 101).unwrap();
        assert_eq!(before, after);
        assert_eq!(before.as_str(), "vm:prod/101");
        assert_eq!(ResourceKind::of(&before), Some(ResourceKind::Vm));
        assert_ne!(
            before,
            canonical::guest(ResourceKind::SystemContainer, "prod", 101).unwrap()
        );
        assert!(canonical::guest(ResourceKind::Pod, "prod", 101).is_err());
    }

    #[test]
    fn canonical_shapes() {
        assert_eq!(
            canonical::app_container("h", "/web").unwrap().as_str(),
            "docker:h/web"
        );
        assert_eq!(
            canonical::storage("prod", "ceph").unwrap().as_str(),
            "storage:prod/ceph"
        );
        assert_eq!(
            canonical::k8s_workload("c", "ns", "Deployment", "api")
                .unwrap()
                .as_str(),
            "k8s-workload:c/ns/deployment/api"
        );
        assert_eq!(canonical::pod("c", "ns", "p").unwrap().kind(), "pod");
        assert_eq!(
            canonical::replication("c", "100-0").unwrap().as_str(),
            "replication:c/100-0"
        );
        assert_eq!(canonical::agent("a1").unwrap().as_str(), "agent:a1");
        assert_eq!(canonical::server().unwrap().as_str(), "warden:server");
        assert!(canonical::node("").is_err());
    }
}
