//! Collector configuration: the `[collectors]` section of `agent.toml`, its defaults and validation.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default time between two runs of a collector.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default limit on one run of the host and Docker collectors (or their interval, if shorter).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit on one run of the collectors that read a remote API (Proxmox VE, PBS,
/// Kubernetes), or their interval, if shorter.
const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(10);
/// Default Docker socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Shortest allowed interval: anything faster costs more than it tells.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest allowed per-run timeout.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Most simulated nodes and guests, so a typo cannot exhaust the spool.
const MAX_SIM_NODES: u32 = 16;
const MAX_SIM_GUESTS: u32 = 500;

/// The `[collectors]` section: which sources this agent reads and how often.
///
/// A `timeout` left out of a collector's table defaults to that collector's default timeout
/// or its `interval`, whichever is shorter, so `interval = "1s"` alone is valid; a `timeout`
/// written out must not exceed the interval.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, default)]
pub struct CollectorsConfig {
    /// This machine: CPU, memory, filesystems, IO, temperatures (sysinfo).
    pub host: HostConfig,
    /// The local Docker daemon.
    pub docker: DockerConfig,
    /// A simulated Proxmox-like node for demos; absent unless configured.
    pub simulated: Option<SimulatedConfig>,
    /// The local Proxmox VE API; off unless enabled.
    pub proxmox: ProxmoxConfig,
    /// The local Proxmox Backup Server API; off unless enabled.
    pub pbs: PbsConfig,
    /// A Kubernetes cluster's API server; off unless enabled.
    pub kubernetes: KubernetesConfig,
}

/// `[collectors.kubernetes]`: a Kubernetes cluster, watched through its API server with a
/// read-only service account (see `packaging/kubernetes/`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// The cluster's name in Warden's resource ids (`k8s-cluster:<cluster>`).
    pub cluster: String,
    /// Kubeconfig to use; default: `$KUBECONFIG` or `~/.kube/config`, else the pod's service
    /// account (in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Only these namespaces (default: all).
    pub namespaces: Vec<String>,
    /// Never these namespaces.
    pub exclude_namespaces: Vec<String>,
    /// Time between runs (each run reads the watch cache; the API server is not re-listed).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Limit on one run, and how long an initial list may take before it is reported.
    #[serde(with = "humantime_serde", default = "timeout_unset")]
    pub timeout: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster: "kubernetes".into(),
            kubeconfig: None,
            namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            interval: Duration::from_secs(30),
            timeout: DEFAULT_API_TIMEOUT,
        }
    }
}

/// `[collectors.pbs]`: the local Proxmox Backup Server API, read with a read-only API token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PbsConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// API base URL.
    pub url: String,
    /// API token id, `USER@REALM!TOKENID` (role Audit on `/`).
    pub token_id: String,
    /// File holding the token's secret (mode 0600).
    pub token_secret_file: PathBuf,
    /// Certificate to trust (PBS's self-signed `proxy.pem` by default).
    pub ca_file: PathBuf,
    /// Instead of `ca_file`: SHA-256 fingerprint of the API's certificate.
    pub fingerprint: Option<String>,
    /// Time between runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Limit on one run (and on each request).
    #[serde(with = "humantime_serde", default = "timeout_unset")]
    pub timeout: Duration,
}

impl Default for PbsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "https://127.0.0.1:8007/api2/json".into(),
            token_id: String::new(),
            token_secret_file: PathBuf::from("/etc/warden/pbs-token"),
            ca_file: PathBuf::from("/etc/proxmox-backup/proxy.pem"),
            fingerprint: None,
            interval: Duration::from_secs(60),
            timeout: DEFAULT_API_TIMEOUT,
        }
    }
}

/// `[collectors.proxmox]`: the node's own Proxmox VE API, read with a read-only API token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxmoxConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// API base URL.
    pub url: String,
    /// API token id, `USER@REALM!TOKENID` (e.g. `warden@pve!agent`, role PVEAuditor).
    pub token_id: String,
    /// File holding the token's secret (mode 0600); never put the secret in this file.
    pub token_secret_file: PathBuf,
    /// CA that signed the API's certificate (default: the cluster CA).
    pub ca_file: PathBuf,
    /// Instead of `ca_file`: SHA-256 fingerprint of the API's certificate (hex, colons allowed).
    pub fingerprint: Option<String>,
    /// This node's name in the cluster (default: the agent's host name).
    pub node: Option<String>,
    /// Time between runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Limit on one run (and on each request).
    #[serde(with = "humantime_serde", default = "timeout_unset")]
    pub timeout: Duration,
}

impl Default for ProxmoxConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "https://127.0.0.1:8006/api2/json".into(),
            token_id: String::new(),
            token_secret_file: PathBuf::from("/etc/warden/pve-token"),
            ca_file: PathBuf::from("/etc/pve/pve-root-ca.pem"),
            fingerprint: None,
            node: None,
            interval: Duration::from_secs(30),
            timeout: DEFAULT_API_TIMEOUT,
        }
    }
}

/// `[collectors.host]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// Time between runs, e.g. `"10s"`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Limit on one run, e.g. `"5s"`.
    #[serde(with = "humantime_serde", default = "timeout_unset")]
    pub timeout: Duration,
    /// Root for the files the collector reads itself (`proc/diskstats`, `sys/block`); hidden,
    /// tests point it at fixture trees. sysinfo always reads the real `/proc` and `/sys`.
    #[doc(hidden)]
    pub root: PathBuf,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            root: PathBuf::from("/"),
        }
    }
}

/// `[collectors.docker]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// Time between full runs; Docker events trigger extra runs in between.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Limit on one run.
    #[serde(with = "humantime_serde", default = "timeout_unset")]
    pub timeout: Duration,
    /// Path of the Docker (or Podman) API socket.
    pub socket: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            socket: DEFAULT_DOCKER_SOCKET.to_owned(),
        }
    }
}

/// `[collectors.simulated]`: pretends this host is a Proxmox VE node with guests and storage.
///
/// Everything it reports is a pure function of `seed`, the guest index and the time since the
/// collector started, so two agents with the same seed tell the same story.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedConfig {
    /// Number of simulated nodes; the first is named after this host.
    pub nodes: u32,
    /// Number of simulated guests (a mix of VMs and LXC containers, some stopped).
    pub guests: u32,
    /// Seed for the deterministic noise.
    pub seed: u64,
    /// VMID of the first guest; give each demo agent its own range so ids do not collide.
    pub first_vmid: u32,
    /// Time between runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How fast the `local-lvm` pool fills, in percentage points per hour.
    pub storage_growth_pct_per_hour: f64,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        Self {
            nodes: 1,
            guests: 6,
            seed: 1,
            first_vmid: 100,
            interval: Duration::from_secs(5),
            storage_growth_pct_per_hour: 30.0,
        }
    }
}

/// Marks a `timeout` the file left out, until [`CollectorsConfig`]'s deserializer replaces it
/// (no one writes a timeout of 584 billion years).
fn timeout_unset() -> Duration {
    Duration::MAX
}

/// The timeout of a collector whose file left it out: `default`, or `interval` when shorter.
/// An interval already too short to be valid keeps the default (its problem is reported once).
fn default_timeout(timeout: &mut Duration, default: Duration, interval: Duration) {
    if *timeout == timeout_unset() {
        *timeout = if interval >= MIN_INTERVAL {
            default.min(interval)
        } else {
            default
        };
    }
}

impl<'de> Deserialize<'de> for CollectorsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The derived deserializer (`remote = "Self"`), then the timeouts left out.
        let mut c = Self::deserialize(d)?;
        default_timeout(&mut c.host.timeout, DEFAULT_TIMEOUT, c.host.interval);
        default_timeout(&mut c.docker.timeout, DEFAULT_TIMEOUT, c.docker.interval);
        default_timeout(
            &mut c.proxmox.timeout,
            DEFAULT_API_TIMEOUT,
            c.proxmox.interval,
        );
        default_timeout(&mut c.pbs.timeout, DEFAULT_API_TIMEOUT, c.pbs.interval);
        let k = &mut c.kubernetes;
        default_timeout(&mut k.timeout, DEFAULT_API_TIMEOUT, k.interval);
        Ok(c)
    }
}

impl CollectorsConfig {
    /// Name, interval and timeout of each enabled collector that has both.
    pub fn timings(&self) -> Vec<(&'static str, Duration, Duration)> {
        [
            (
                "host",
                self.host.enabled,
                self.host.interval,
                self.host.timeout,
            ),
            (
                "docker",
                self.docker.enabled,
                self.docker.interval,
                self.docker.timeout,
            ),
            (
                "proxmox",
                self.proxmox.enabled,
                self.proxmox.interval,
                self.proxmox.timeout,
            ),
            ("pbs", self.pbs.enabled, self.pbs.interval, self.pbs.timeout),
            (
                "kubernetes",
                self.kubernetes.enabled,
                self.kubernetes.interval,
                self.kubernetes.timeout,
            ),
        ]
        .into_iter()
        .filter(|t| t.1)
        .map(|(name, _, interval, timeout)| (name, interval, timeout))
        .collect()
    }

    /// All problems found (empty = valid), e.g. `collectors.host.interval must be at least 1s`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let h = &self.host;
        check_timing("host", h.interval, h.timeout, &mut problems);
        if !h.root.is_absolute() {
            problems.push(format!(
                "collectors.host.root must be an absolute path, got {:?}",
                h.root
            ));
        }
        let d = &self.docker;
        check_timing("docker", d.interval, d.timeout, &mut problems);
        let socket = d.socket.strip_prefix("unix://").unwrap_or(&d.socket);
        if !socket.starts_with('/') {
            problems.push(format!(
                "collectors.docker.socket must be an absolute unix socket path, got {:?}",
                d.socket
            ));
        }
        let p = &self.proxmox;
        if p.enabled {
            check_timing("proxmox", p.interval, p.timeout, &mut problems);
            check_api(
                "proxmox",
                &p.url,
                &p.token_id,
                p.fingerprint.as_deref(),
                &mut problems,
            );
        }
        let p = &self.pbs;
        if p.enabled {
            check_timing("pbs", p.interval, p.timeout, &mut problems);
            check_api(
                "pbs",
                &p.url,
                &p.token_id,
                p.fingerprint.as_deref(),
                &mut problems,
            );
        }
        let k = &self.kubernetes;
        if k.enabled {
            check_timing("kubernetes", k.interval, k.timeout, &mut problems);
            if let Err(e) = warden_shared::resource::canonical::k8s_cluster(&k.cluster) {
                problems.push(format!(
                    "collectors.kubernetes.cluster {:?}: {e}",
                    k.cluster
                ));
            }
            for ns in k.namespaces.iter().chain(&k.exclude_namespaces) {
                let label = !ns.is_empty()
                    && ns.len() <= 63
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !ns.starts_with('-')
                    && !ns.ends_with('-');
                if !label {
                    problems.push(format!(
                        "collectors.kubernetes: {ns:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
                    ));
                }
            }
            if !k.namespaces.is_empty()
                && k.namespaces
                    .iter()
                    .all(|ns| k.exclude_namespaces.contains(ns))
            {
                problems.push(
                    "collectors.kubernetes: every listed namespace is also excluded, so nothing would be watched".to_owned(),
                );
            }
        }
        if let Some(s) = &self.simulated {
            if s.interval < MIN_INTERVAL {
                problems.push("collectors.simulated.interval must be at least 1s".to_owned());
            }
            if !(1..=MAX_SIM_NODES).contains(&s.nodes) {
                problems.push(format!(
                    "collectors.simulated.nodes must be 1 to {MAX_SIM_NODES}, got {}",
                    s.nodes
                ));
            }
            if s.guests > MAX_SIM_GUESTS {
                problems.push(format!(
                    "collectors.simulated.guests must be at most {MAX_SIM_GUESTS}, got {}",
                    s.guests
                ));
            }
            if !(100..=999_000_000).contains(&s.first_vmid) {
                problems.push(format!(
                    "collectors.simulated.first_vmid must be 100 to 999000000, got {}",
                    s.first_vmid
                ));
            }
            let g = s.storage_growth_pct_per_hour;
            if !g.is_finite() || !(0.0..=1000.0).contains(&g) {
                problems.push(format!(
                    "collectors.simulated.storage_growth_pct_per_hour must be 0 to 1000, got {g}"
                ));
            }
        }
        problems
    }
}

fn check_api(
    name: &str,
    url: &str,
    token_id: &str,
    fingerprint: Option<&str>,
    problems: &mut Vec<String>,
) {
    if !url.starts_with("https://") {
        problems.push(format!(
            "collectors.{name}.url must be an https:// URL, got {url:?}"
        ));
    }
    let id_ok = token_id
        .split_once('!')
        .is_some_and(|(user, id)| user.contains('@') && !id.is_empty());
    if !id_ok {
        problems.push(format!(
            "collectors.{name}.token_id must look like USER@REALM!TOKENID, got {token_id:?}"
        ));
    }
    if let Some(fp) = fingerprint
        && crate::collectors::proxmox::api::parse_fingerprint(fp).is_none()
    {
        problems.push(format!(
            "collectors.{name}.fingerprint must be 64 hex digits (colons allowed), got {fp:?}"
        ));
    }
}

fn check_timing(name: &str, interval: Duration, timeout: Duration, problems: &mut Vec<String>) {
    if interval < MIN_INTERVAL {
        problems.push(format!("collectors.{name}.interval must be at least 1s"));
    }
    if timeout < MIN_TIMEOUT {
        problems.push(format!("collectors.{name}.timeout must be at least 100ms"));
    }
    // Against an interval that is already invalid, the comparison says nothing new.
    if timeout > interval && interval >= MIN_INTERVAL {
        problems.push(format!(
            "collectors.{name}.timeout ({}) must not exceed collectors.{name}.interval ({})",
            humantime::format_duration(timeout),
            humantime::format_duration(interval)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let cfg = CollectorsConfig::default();
        assert!(cfg.host.enabled && cfg.docker.enabled && cfg.simulated.is_none());
        assert_eq!(cfg.host.interval, Duration::from_secs(10));
        assert_eq!(cfg.docker.timeout, Duration::from_secs(5));
        assert_eq!(cfg.docker.socket, "/var/run/docker.sock");
        assert_eq!(cfg.validate(), Vec::<String>::new());
    }

    #[test]
    fn parses_humantime_and_partial_sections() {
        let cfg: CollectorsConfig = toml::from_str(
            r#"
            host = { interval = "30s" }
            docker = { enabled = false, socket = "/run/podman/podman.sock" }
            [simulated]
            guests = 3
            "#,
        )
        .unwrap();
        assert_eq!(cfg.host.interval, Duration::from_secs(30));
        assert_eq!(cfg.host.timeout, DEFAULT_TIMEOUT);
        assert!(!cfg.docker.enabled);
        assert_eq!(cfg.docker.socket, "/run/podman/podman.sock");
        let sim = cfg.simulated.unwrap();
        assert_eq!(sim.guests, 3);
        assert_eq!(sim.interval, Duration::from_secs(5));
    }

    #[test]
    fn a_timeout_left_out_follows_a_shorter_interval() {
        let cfg: CollectorsConfig = toml::from_str(
            r#"
            host = { interval = "1s" }
            docker = { interval = "2s", timeout = "1500ms" }
            proxmox = { interval = "4s" }
            kubernetes = { interval = "1m" }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.host.timeout, Duration::from_secs(1));
        assert_eq!(cfg.docker.timeout, Duration::from_millis(1500));
        assert_eq!(cfg.proxmox.timeout, Duration::from_secs(4));
        assert_eq!(cfg.kubernetes.timeout, DEFAULT_API_TIMEOUT);
        assert_eq!(cfg.pbs.timeout, DEFAULT_API_TIMEOUT);
        assert_eq!(cfg.validate(), Vec::<String>::new());

        // Written out, a timeout longer than the interval is still refused.
        let cfg: CollectorsConfig =
            toml::from_str("host = { interval = \"1s\", timeout = \"3s\" }").unwrap();
        assert_eq!(
            cfg.validate(),
            vec!["collectors.host.timeout (3s) must not exceed collectors.host.interval (1s)"]
        );
        // An invalid interval is reported once, not again through the timeout.
        let cfg: CollectorsConfig = toml::from_str("host = { interval = \"0s\" }").unwrap();
        assert_eq!(
            cfg.validate(),
            vec!["collectors.host.interval must be at least 1s"]
        );
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = toml::from_str::<CollectorsConfig>("host = { intervall = \"5s\" }").unwrap_err();
        assert!(err.to_string().contains("intervall"), "{err}");
        assert!(toml::from_str::<CollectorsConfig>("podman = {}").is_err());
    }

    #[test]
    fn validation_collects_every_problem() {
        let mut cfg = CollectorsConfig::default();
        cfg.host.interval = Duration::from_millis(500);
        cfg.docker.timeout = Duration::from_secs(20);
        cfg.docker.socket = "docker.sock".into();
        cfg.simulated = Some(SimulatedConfig {
            nodes: 0,
            storage_growth_pct_per_hour: f64::NAN,
            ..SimulatedConfig::default()
        });
        let problems = cfg.validate();
        assert_eq!(
            problems,
            vec![
                "collectors.host.interval must be at least 1s",
                "collectors.docker.timeout (20s) must not exceed collectors.docker.interval (10s)",
                "collectors.docker.socket must be an absolute unix socket path, got \"docker.sock\"",
                "collectors.simulated.nodes must be 1 to 16, got 0",
                "collectors.simulated.storage_growth_pct_per_hour must be 0 to 1000, got NaN",
            ]
        );
    }
}
