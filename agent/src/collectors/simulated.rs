//! The `simulated` collector: pretends this host is a Proxmox VE node (or a small cluster) with
//! guests and storage pools, for demos and tests.
//!
//! Everything is a pure function of the configuration (seed, counts), the time the collector
//! started (`origin_ms`) and the current time, see [`simulate`]. Guests are a mix of VMs and LXC
//! containers, some stopped; `local-lvm` fills at `storage_growth_pct_per_hour` from 40 %, so a
//! capacity forecast has something to find; `local` stays near 22 %.

use super::{Collected, Collector, CollectorError, SimulatedConfig, resource_id};
use std::f64::consts::TAU;
use warden_shared::ResourceId;
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::{Provenance, Resource, Value};

const GIB: u64 = 1 << 30;
const NODE_MEM_BYTES: u64 = 64 * GIB;
const NODE_CPUS: u32 = 16;
/// Memory the node itself uses besides its guests.
const NODE_BASE_MEM_BYTES: u64 = 4 * GIB;
const LVM_TOTAL_BYTES: u64 = 500 * GIB;
const LVM_START_PCT: f64 = 40.0;
const LOCAL_TOTAL_BYTES: u64 = 100 * GIB;
const LOCAL_PCT: f64 = 22.0;
const GUEST_NAMES: &[&str] = &[
    "web",
    "db",
    "cache",
    "mail",
    "git",
    "ci-runner",
    "monitor",
    "backup",
    "dns",
    "proxy",
];

/// A metric computed by the model in [`simulate`].
const fn model(kind: ResourceKind, metric: &'static str, method: &'static str) -> Provenance {
    Provenance::new(kind, metric, "simulated", method)
}

/// Where each metric comes from: nowhere real; the methods name the model's formula.
const PROVENANCE: &[Provenance] = &[
    model(
        ResourceKind::Node,
        metric::CPU_PCT,
        "model: 3 + running guests' CPU x vCPUs / 16 cores + 5-minute wave",
    ),
    model(ResourceKind::Node, metric::MEM_TOTAL_BYTES, "model: 64 GiB"),
    model(
        ResourceKind::Node,
        metric::MEM_USED_BYTES,
        "model: 4 GiB + running guests' used memory",
    ),
    model(
        ResourceKind::Node,
        metric::MEM_USED_PCT,
        "model: used / 64 GiB",
    ),
    model(
        ResourceKind::Node,
        metric::LOAD1,
        "model: cpu_pct x 16 cores / 100",
    ),
    model(
        ResourceKind::Node,
        metric::UPTIME_SECONDS,
        "model: 40 days + time since the agent started",
    ),
    model(
        ResourceKind::Vm,
        metric::CPU_PCT,
        "model: seeded base + 10-minute wave + noise",
    ),
    model(
        ResourceKind::Vm,
        metric::MEM_TOTAL_BYTES,
        "model: 2, 4 or 8 GiB by seed",
    ),
    model(
        ResourceKind::Vm,
        metric::MEM_USED_BYTES,
        "model: mem_used_pct x mem_total_bytes",
    ),
    model(
        ResourceKind::Vm,
        metric::MEM_USED_PCT,
        "model: seeded 30-80 % + 30-minute wave",
    ),
    model(
        ResourceKind::Vm,
        metric::UPTIME_SECONDS,
        "model: booted up to 30 days (by seed) before the agent started",
    ),
    model(
        ResourceKind::SystemContainer,
        metric::CPU_PCT,
        "model: seeded base + 10-minute wave + noise",
    ),
    model(
        ResourceKind::SystemContainer,
        metric::MEM_TOTAL_BYTES,
        "model: 1 or 2 GiB by seed",
    ),
    model(
        ResourceKind::SystemContainer,
        metric::MEM_USED_BYTES,
        "model: mem_used_pct x mem_total_bytes",
    ),
    model(
        ResourceKind::SystemContainer,
        metric::MEM_USED_PCT,
        "model: seeded 30-80 % + 30-minute wave",
    ),
    model(
        ResourceKind::SystemContainer,
        metric::UPTIME_SECONDS,
        "model: booted up to 30 days (by seed) before the agent started",
    ),
    model(
        ResourceKind::Storage,
        metric::STORAGE_TOTAL_BYTES,
        "model: local-lvm 500 GiB, local 100 GiB",
    ),
    model(
        ResourceKind::Storage,
        metric::STORAGE_USED_BYTES,
        "model: storage_used_pct x storage_total_bytes",
    ),
    model(
        ResourceKind::Storage,
        metric::STORAGE_USED_PCT,
        "model: local-lvm 40 % + storage_growth_pct_per_hour since the agent started; \
         local 22 % + 1-hour wave",
    ),
];

/// Simulates a Proxmox-like node from its configuration.
pub(crate) struct SimulatedCollector {
    hostname: String,
    cfg: SimulatedConfig,
    /// When the first run happened; storage growth counts from here.
    origin_ms: Option<i64>,
}

impl SimulatedCollector {
    pub(crate) fn new(hostname: &str, cfg: &SimulatedConfig) -> Self {
        Self {
            hostname: hostname.to_owned(),
            cfg: cfg.clone(),
            origin_ms: None,
        }
    }
}

impl Collector for SimulatedCollector {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn provenance(&self) -> &[Provenance] {
        PROVENANCE
    }

    async fn collect(&mut self, now_ms: i64) -> Result<Collected, CollectorError> {
        let origin_ms = *self.origin_ms.get_or_insert(now_ms);
        simulate(&self.cfg, &self.hostname, origin_ms, now_ms)
    }
}

/// SplitMix64: a tiny, well-mixed deterministic hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A deterministic number in [0, 1) for (seed, key).
fn unit(seed: u64, key: u64) -> f64 {
    (mix(seed ^ mix(key)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A smooth wave in [-1, 1] with a period of `period_s`, phase-shifted per key.
fn wave(seed: u64, key: u64, t_s: f64, period_s: f64) -> f64 {
    (TAU * (t_s / period_s + unit(seed, key ^ 0xA5A5))).sin()
}

/// Used percentage of `local-lvm` `hours` after the collector started.
pub(crate) fn lvm_used_pct(growth_pct_per_hour: f64, hours: f64) -> f64 {
    (LVM_START_PCT + growth_pct_per_hour * hours.max(0.0)).min(100.0)
}

/// One simulated guest, fixed by seed and index.
#[derive(Debug, Clone, PartialEq)]
struct Guest {
    vmid: u32,
    lxc: bool,
    name: String,
    node: usize,
    running: bool,
    cpus: u32,
    mem_total: u64,
}

fn guests(cfg: &SimulatedConfig) -> Vec<Guest> {
    let seed = cfg.seed;
    let nodes = cfg.nodes.max(1) as usize;
    (0..cfg.guests)
        .map(|i| {
            let key = u64::from(i);
            let lxc = (key + seed) % 3 == 2;
            let base = GUEST_NAMES[i as usize % GUEST_NAMES.len()];
            let round = i as usize / GUEST_NAMES.len();
            let name = if round == 0 {
                base.to_owned()
            } else {
                format!("{base}-{}", round + 1)
            };
            let sizes: [u64; 3] = if lxc { [1, 1, 2] } else { [2, 4, 8] };
            Guest {
                vmid: cfg.first_vmid.saturating_add(i),
                lxc,
                name,
                node: i as usize % nodes,
                // Every fifth guest is stopped; which one depends on the seed.
                running: (key + seed / 3) % 5 != 4,
                cpus: 1 << (mix(seed ^ key ^ 0xC0) % 3),
                mem_total: sizes[(mix(seed ^ key ^ 0x3E) % 3) as usize] * GIB,
            }
        })
        .collect()
}

fn node_name(hostname: &str, index: usize) -> String {
    if index == 0 {
        hostname.to_owned()
    } else {
        format!("{hostname}-{}", index + 1)
    }
}

/// The whole simulated state at `now_ms` for a collector that started at `origin_ms`.
pub(crate) fn simulate(
    cfg: &SimulatedConfig,
    hostname: &str,
    origin_ms: i64,
    now_ms: i64,
) -> Result<Collected, CollectorError> {
    let seed = cfg.seed;
    let t_s = now_ms as f64 / 1000.0;
    let since_start_s = (now_ms - origin_ms).max(0) as f64 / 1000.0;
    let mut out = Collected::default();
    let nodes: Vec<(String, ResourceId)> = (0..cfg.nodes.max(1) as usize)
        .map(|i| {
            let name = node_name(hostname, i);
            resource_id(&name, canonical::node(&name)).map(|id| (name, id))
        })
        .collect::<Result<_, _>>()?;
    let mut node_cpu = vec![0.0f64; nodes.len()];
    let mut node_mem = vec![NODE_BASE_MEM_BYTES; nodes.len()];

    for g in guests(cfg) {
        let (kind, typ) = if g.lxc {
            (ResourceKind::SystemContainer, "lxc")
        } else {
            (ResourceKind::Vm, "qemu")
        };
        // The cluster (this simulated host) and VMID name a guest, not its node.
        let id = resource_id(
            &g.vmid.to_string(),
            canonical::guest(kind, hostname, g.vmid),
        )?;
        let (node_name, node_id) = &nodes[g.node];
        let key = u64::from(g.vmid);
        // Boot time: up to 30 days before the collector started.
        let uptime_s = since_start_s + (unit(seed, key ^ 0x0B) * 30.0 * 86_400.0).floor();
        if g.running {
            let base = 5.0 + 35.0 * unit(seed, key ^ 0xC1);
            let noise = 3.0 * (unit(seed, key ^ (now_ms as u64 / 1000)) - 0.5);
            let cpu = (base + 15.0 * wave(seed, key, t_s, 600.0) + noise).clamp(0.0, 100.0);
            let mem_pct =
                (30.0 + 50.0 * unit(seed, key ^ 0x4D) + 5.0 * wave(seed, key ^ 1, t_s, 1800.0))
                    .clamp(1.0, 99.0);
            let mem_used = (g.mem_total as f64 * mem_pct / 100.0).round();
            out.sample(&id, metric::CPU_PCT, now_ms, cpu);
            out.sample(&id, metric::MEM_TOTAL_BYTES, now_ms, g.mem_total as f64);
            out.sample(&id, metric::MEM_USED_BYTES, now_ms, mem_used);
            out.sample(&id, metric::MEM_USED_PCT, now_ms, mem_pct);
            out.sample(&id, metric::UPTIME_SECONDS, now_ms, uptime_s);
            node_cpu[g.node] += cpu * f64::from(g.cpus);
            node_mem[g.node] += mem_used as u64;
        }
        out.resources.push(Resource {
            id,
            name: g.name.clone(),
            parent: Some(node_id.clone()),
            status: if g.running { "running" } else { "stopped" }.to_owned(),
            attrs: vec![
                ("vmid".to_owned(), Value::Int(i64::from(g.vmid))),
                ("type".to_owned(), Value::from(typ)),
                ("node".to_owned(), Value::from(node_name.as_str())),
                ("cpus".to_owned(), Value::Int(i64::from(g.cpus))),
                ("maxmem_bytes".to_owned(), Value::Int(g.mem_total as i64)),
                ("simulated".to_owned(), Value::Bool(true)),
            ],
        });
    }

    let lvm_pct = lvm_used_pct(cfg.storage_growth_pct_per_hour, since_start_s / 3600.0);
    for (i, (name, node_id)) in nodes.iter().enumerate() {
        let key = i as u64;
        // Guests' CPU is in units of one guest vCPU; the node has NODE_CPUS cores.
        let cpu =
            (3.0 + node_cpu[i] / f64::from(NODE_CPUS) + 2.0 * wave(seed, key ^ 0x70, t_s, 300.0))
                .clamp(0.0, 100.0);
        let mem_used = node_mem[i].min(NODE_MEM_BYTES);
        out.sample(node_id, metric::CPU_PCT, now_ms, cpu);
        out.sample(
            node_id,
            metric::MEM_TOTAL_BYTES,
            now_ms,
            NODE_MEM_BYTES as f64,
        );
        out.sample(node_id, metric::MEM_USED_BYTES, now_ms, mem_used as f64);
        out.sample(
            node_id,
            metric::MEM_USED_PCT,
            now_ms,
            mem_used as f64 * 100.0 / NODE_MEM_BYTES as f64,
        );
        out.sample(
            node_id,
            metric::LOAD1,
            now_ms,
            cpu / 100.0 * f64::from(NODE_CPUS),
        );
        out.sample(
            node_id,
            metric::UPTIME_SECONDS,
            now_ms,
            since_start_s + 40.0 * 86_400.0 + 3600.0 * key as f64,
        );
        out.resources.push(Resource {
            id: node_id.clone(),
            name: name.clone(),
            parent: None,
            status: "online".to_owned(),
            attrs: vec![
                ("type".to_owned(), Value::from("pve-node")),
                ("pve_version".to_owned(), Value::from("9.0.3 (simulated)")),
                ("cpu_count".to_owned(), Value::Int(i64::from(NODE_CPUS))),
                ("hostname".to_owned(), Value::from(name.as_str())),
                ("simulated".to_owned(), Value::Bool(true)),
            ],
        });

        let local_pct = LOCAL_PCT + 0.5 * wave(seed, key ^ 0x10CA, t_s, 3600.0);
        for (pool, typ, content, total, pct) in [
            (
                "local-lvm",
                "lvmthin",
                "images,rootdir",
                LVM_TOTAL_BYTES,
                lvm_pct,
            ),
            (
                "local",
                "dir",
                "iso,vztmpl,backup",
                LOCAL_TOTAL_BYTES,
                local_pct,
            ),
        ] {
            let id = resource_id(pool, canonical::storage(name, pool))?;
            let used = (total as f64 * pct / 100.0).round();
            out.sample(&id, metric::STORAGE_TOTAL_BYTES, now_ms, total as f64);
            out.sample(&id, metric::STORAGE_USED_BYTES, now_ms, used);
            out.sample(&id, metric::STORAGE_USED_PCT, now_ms, pct);
            out.resources.push(Resource {
                id,
                name: pool.to_owned(),
                parent: Some(node_id.clone()),
                status: "available".to_owned(),
                attrs: vec![
                    ("type".to_owned(), Value::from(typ)),
                    ("content".to_owned(), Value::from(content)),
                    ("node".to_owned(), Value::from(name.as_str())),
                    ("shared".to_owned(), Value::Bool(false)),
                    ("simulated".to_owned(), Value::Bool(true)),
                ],
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    const T0: i64 = 1_790_000_000_000;

    fn value(c: &Collected, id: &str, metric: &str) -> Option<f64> {
        c.samples
            .iter()
            .find(|s| s.resource_id.as_str() == id && s.metric == metric)
            .map(|s| s.value)
    }

    #[test]
    fn storage_grows_at_the_configured_rate() {
        let cfg = SimulatedConfig::default();
        let start = simulate(&cfg, "pve1", T0, T0).unwrap();
        let later = simulate(&cfg, "pve1", T0, T0 + HOUR_MS).unwrap();
        let lvm = "storage:pve1/local-lvm";
        assert_eq!(value(&start, lvm, metric::STORAGE_USED_PCT), Some(40.0));
        assert_eq!(value(&later, lvm, metric::STORAGE_USED_PCT), Some(70.0));
        let used = value(&later, lvm, metric::STORAGE_USED_BYTES).unwrap();
        let total = value(&later, lvm, metric::STORAGE_TOTAL_BYTES).unwrap();
        assert!((used / total * 100.0 - 70.0).abs() < 1e-6);
        // Full after two hours at 30 %/h, and it stays full rather than overflowing.
        let full = simulate(&cfg, "pve1", T0, T0 + 5 * HOUR_MS).unwrap();
        assert_eq!(value(&full, lvm, metric::STORAGE_USED_PCT), Some(100.0));
        // `local` stays steady.
        let local = "storage:pve1/local";
        let a = value(&start, local, metric::STORAGE_USED_PCT).unwrap();
        let b = value(&full, local, metric::STORAGE_USED_PCT).unwrap();
        assert!((a - b).abs() <= 1.0, "{a} vs {b}");
        assert_eq!(lvm_used_pct(0.0, 100.0), 40.0);
    }

    #[test]
    fn deterministic_for_seed_and_time() {
        let cfg = SimulatedConfig::default();
        let a = simulate(&cfg, "pve1", T0, T0 + 12_345).unwrap();
        let b = simulate(&cfg, "pve1", T0, T0 + 12_345).unwrap();
        assert_eq!(a, b);
        let other = SimulatedConfig {
            seed: 99,
            ..cfg.clone()
        };
        let c = simulate(&other, "pve1", T0, T0 + 12_345).unwrap();
        assert_ne!(a.samples, c.samples);
    }

    #[test]
    fn guests_are_a_mix_with_some_stopped() {
        let cfg = SimulatedConfig::default();
        let out = simulate(&cfg, "pve1", T0, T0).unwrap();
        let guests: Vec<&Resource> = out
            .resources
            .iter()
            .filter(|r| matches!(r.id.kind(), "vm" | "lxc"))
            .collect();
        assert_eq!(guests.len(), 6);
        assert!(guests.iter().any(|g| g.id.kind() == "vm"));
        assert!(guests.iter().any(|g| g.id.kind() == "lxc"));
        assert!(guests.iter().any(|g| g.status == "stopped"));
        assert!(guests.iter().any(|g| g.status == "running"));
        for g in &guests {
            assert_eq!(g.parent.as_ref().unwrap().as_str(), "node:pve1");
            let cpu = value(&out, g.id.as_str(), metric::CPU_PCT);
            if g.status == "running" {
                assert!(cpu.is_some_and(|c| (0.0..=100.0).contains(&c)));
            } else {
                assert_eq!(cpu, None, "a stopped guest has no cpu sample");
            }
        }
        assert_eq!(guests[0].id.as_str(), "vm:pve1/100");
        let node = out
            .resources
            .iter()
            .find(|r| r.id.as_str() == "node:pve1")
            .unwrap();
        assert_eq!(node.status, "online");
        let mem = value(&out, "node:pve1", metric::MEM_USED_PCT).unwrap();
        assert!(mem > 0.0 && mem <= 100.0);
    }

    #[tokio::test]
    async fn every_metric_has_its_provenance() {
        let cfg = SimulatedConfig::default();
        let mut c = SimulatedCollector::new("pve1", &cfg);
        let out = c.collect(T0).await.unwrap();
        crate::collectors::assert_provenance_complete(&c, &out);
        let kinds: std::collections::HashSet<&str> =
            out.samples.iter().map(|s| s.resource_id.kind()).collect();
        assert_eq!(kinds.len(), 4, "node, vm, lxc and storage are all checked");
    }

    #[test]
    fn several_nodes_share_the_guests() {
        let cfg = SimulatedConfig {
            nodes: 2,
            guests: 4,
            first_vmid: 200,
            ..SimulatedConfig::default()
        };
        let out = simulate(&cfg, "pve", T0, T0).unwrap();
        let ids: Vec<&str> = out.resources.iter().map(|r| r.id.as_str()).collect();
        for id in [
            "node:pve",
            "node:pve-2",
            "storage:pve-2/local-lvm",
            "vm:pve/200",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        let on_second = out
            .resources
            .iter()
            .filter(|r| {
                r.parent
                    .as_ref()
                    .is_some_and(|p| p.as_str() == "node:pve-2")
            })
            .count();
        assert_eq!(on_second, 2 + 2, "two guests and two pools");
    }
}
