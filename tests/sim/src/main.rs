//! `warden-sim`: the API simulators as a process. `fleet` is the world `warden demo` shows (a
//! 3-node Proxmox VE cluster, a Proxmox Backup Server and a small Kubernetes cluster, with
//! seeded trouble that develops over time); `pve` and `k8s` serve clusters of any size for
//! benchmarks. Each prints one JSON line saying where and how to connect, then serves until
//! killed. It is installed next to `warden`, which is where `warden demo` looks for it.
//!
//! ```text
//! warden-sim fleet --dir /tmp/fleet
//! warden-sim pve --nodes 500 --guests 5000
//! warden-sim k8s --nodes 100 --pods 10000 --dir /tmp/k8s
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden_shared::metric;
use warden_sim::k8s::{self, K8sSim, K8sSimOptions};
use warden_sim::pbs::{PbsSim, PbsSimOptions};
use warden_sim::pve::{self, PveSim, PveSimOptions};

#[derive(Parser)]
#[command(about = "Proxmox VE, Proxmox Backup Server and Kubernetes API simulators")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The demo world: PVE cluster, PBS and Kubernetes, with seeded trouble.
    Fleet {
        /// Directory for the kubeconfig.
        #[arg(long)]
        dir: PathBuf,
        /// When the third PVE node goes down (stops answering and shows offline).
        #[arg(long, default_value = "3m", value_parser = humantime_duration)]
        node_down_after: Duration,
    },
    /// A Proxmox VE cluster of any size.
    Pve {
        /// Cluster nodes (`node001`, `node002`, ...).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Guests (VMs and containers), spread over the nodes.
        #[arg(long, default_value_t = 30)]
        guests: usize,
        /// Cluster name.
        #[arg(long, default_value = "bench")]
        cluster: String,
    },
    /// A Kubernetes API server; without `--nodes`/`--pods`, the small default cluster.
    K8s {
        /// Nodes of a synthetic cluster.
        #[arg(long)]
        nodes: Option<usize>,
        /// Pods of a synthetic cluster (Deployments of 5 replicas spread over the nodes).
        #[arg(long)]
        pods: Option<usize>,
        /// Directory for the kubeconfig (default: a new directory under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Port to listen on (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Changes retained per resource for watches.
        #[arg(long, default_value_t = 1000)]
        history: usize,
        /// Pod changes per second (random pods start crash-looping or recover), so watches
        /// carry traffic.
        #[arg(long, default_value_t = 0.0)]
        churn: f64,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("installing the ring crypto provider"))?;
    match Args::parse().command {
        Command::Fleet {
            dir,
            node_down_after,
        } => fleet(&dir, node_down_after),
        Command::Pve {
            nodes,
            guests,
            cluster,
        } => {
            let names: Vec<String> = (0..nodes).map(|i| format!("node{:03}", i + 1)).collect();
            let opts = PveSimOptions {
                world: pve::World::scaled(&cluster, &names, guests),
                ..PveSimOptions::fast()
            };
            let token = opts.token.clone();
            let sim = PveSim::start(opts);
            println!(
                "{}",
                json!({
                    "url": sim.base_url(),
                    "fingerprint": sim.cert_fingerprint(),
                    "token": token,
                    "nodes": nodes,
                    "guests": guests,
                })
            );
            serve_forever()
        }
        Command::K8s {
            nodes,
            pods,
            dir,
            port,
            history,
            churn,
        } => {
            let world = if nodes.is_some() || pods.is_some() {
                k8s::World::synthetic(nodes.unwrap_or(3), pods.unwrap_or(15))
            } else {
                k8s::World::small()
            };
            let sim = K8sSim::try_start(K8sSimOptions {
                world,
                history,
                port,
                ..K8sSimOptions::default()
            })?;
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("k8s-sim-{}", std::process::id()))
            });
            let kubeconfig = write_kubeconfig(&sim, &dir)?;
            println!(
                "{}",
                json!({
                    "url": sim.url(),
                    "token": sim.token(),
                    "kubeconfig": kubeconfig,
                    "nodes": sim.count(k8s::Kind::Node),
                    "pods": sim.count(k8s::Kind::Pod),
                })
            );
            if churn <= 0.0 {
                return serve_forever();
            }
            let pods = sim.keys(k8s::Kind::Pod);
            let pause = Duration::from_secs_f64(1.0 / churn);
            loop {
                std::thread::sleep(pause);
                let key = &pods[rand::random_range(0..pods.len())];
                let (ns, pod) = key.split_once('/').unwrap_or_default();
                if rand::random_bool(0.5) {
                    sim.crashloop_pod(ns, pod);
                } else {
                    sim.set_pod_running(ns, pod);
                }
            }
        }
    }
}

fn serve_forever() -> anyhow::Result<()> {
    loop {
        std::thread::park();
    }
}

fn write_kubeconfig(sim: &K8sSim, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("kubeconfig");
    sim.write_kubeconfig(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// PVE nodes of the demo cluster.
const PVE_NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
/// Namespace and name prefix of the demo pod that crash-loops (one of the `web` replicas).
const CRASHLOOP: (&str, &str) = ("shop", "web-");

/// How fast `pve2`'s `local-zfs` fills, percentage points per hour.
const ZFS_FILL_PER_HOUR: f64 = 6.0;
/// How full the backup target of the demo's stopped backups is.
const FULL_TARGET: f64 = 0.93;

/// How PVE words a replication run that cannot reach its target.
const REPLICATION_ERROR: &str = "command '/usr/bin/ssh -e none -o 'BatchMode=yes' -o 'HostKeyAlias=pve2' root@10.0.0.2 -- pvesr prepare-local-job 100-0 local-zfs:vm-100-disk-0 --last_sync 0' failed: exit code 255";

/// The demo world. Seeded trouble (see docs/demo.md):
/// - `pve2`'s `local-zfs` fills at a steady 6 points per hour from 71 %;
/// - `/dev/sdb` (all nodes) has 18 % of its SSD life left and loses 2 points per hour;
/// - container 104's backups stopped four days ago, because their target is full: the
///   cluster's `pbs` storage (PBS datastore `store1`) is at 93 %;
/// - PBS datastore `store1`'s garbage collection fails;
/// - VM 100's replication to pve2 fails;
/// - a pod in `shop` is in CrashLoopBackOff, restarting about once a minute;
/// - `pve3` goes down after `node_down_after` and stays down.
fn fleet(dir: &Path, node_down_after: Duration) -> anyhow::Result<()> {
    let names: Vec<String> = PVE_NODES.iter().map(|&n| n.to_owned()).collect();
    let pve_opts = PveSimOptions {
        world: pve::World::scaled("demo", &names, 30),
        ..PveSimOptions::fast()
    };
    let pve_token = pve_opts.token.clone();
    let pve = PveSim::start(pve_opts);
    let zfs = pve
        .world()
        .storages
        .iter()
        .find(|s| s.node == "pve2" && s.storage == "local-zfs")
        .map(|s| s.total)
        .context("the scaled world has local-zfs")?;
    let pbs_total = pve
        .world()
        .storages
        .iter()
        .find(|s| s.storage == "pbs")
        .map(|s| s.total)
        .context("the scaled world has the pbs storage")?;
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    {
        pve.set_storage_usage("pve2", "local-zfs", (zfs as f64 * 0.71) as u64);
        pve.set_storage_fill_rate("pve2", "local-zfs", zfs as f64 * ZFS_FILL_PER_HOUR / 100.0);
        for node in PVE_NODES {
            pve.set_storage_usage(node, "pbs", (pbs_total as f64 * FULL_TARGET) as u64);
        }
    }
    pve.set_disk_wearout("/dev/sdb", 18.0);
    pve.set_disk_wear_rate("/dev/sdb", 2.0);
    pve.stop_backups(104, Duration::from_secs(4 * 86_400));
    pve.with_world(|w| w.replication.push(pve::ReplicationJob::new(100, 0, "pve2")));
    pve.set_replication_result("100-0", Some(REPLICATION_ERROR));

    let pbs_opts = PbsSimOptions::fast();
    let pbs_token = pbs_opts.token.clone();
    let pbs = PbsSim::start(pbs_opts);
    let store_total = pbs
        .world()
        .datastores
        .iter()
        .find(|d| d.name == "store1")
        .map(|d| d.usage.total)
        .context("the PBS world has store1")?;
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pbs.set_datastore_usage("store1", (store_total as f64 * FULL_TARGET) as u64);
    pbs.fail_gc(
        "store1",
        "unable to read chunk directory \"/mnt/datastore/store1/.chunks/3a4f\" - EIO: I/O error",
    );

    let kube = K8sSim::try_start(K8sSimOptions::default())?;
    let kubeconfig = write_kubeconfig(&kube, dir)?;
    let crashloop = kube
        .keys(k8s::Kind::Pod)
        .into_iter()
        .find(|k| k.starts_with(&format!("{}/{}", CRASHLOOP.0, CRASHLOOP.1)))
        .context("the small Kubernetes world has web pods in shop")?;
    let (ns, pod) = crashloop.split_once('/').unwrap_or_default();
    kube.crashloop_pod(ns, pod);

    let (pve_id, pve_secret) = pve_token.split_once('=').context("PVE token")?;
    let (pbs_id, pbs_secret) = pbs_token.split_once(':').context("PBS token")?;
    println!(
        "{}",
        json!({
            "pve": {
                "url": pve.base_url(),
                "fingerprint": pve.cert_fingerprint(),
                "token_id": pve_id,
                "token_secret": pve_secret,
                "nodes": PVE_NODES,
            },
            "pbs": {
                "url": pbs.base_url(),
                "fingerprint": pbs.cert_fingerprint(),
                "token_id": pbs_id,
                "token_secret": pbs_secret,
                "host": "pbs1",
            },
            "kubernetes": {
                "url": kube.url(),
                "kubeconfig": kubeconfig,
            },
            // The past that led here, for the demo to fill in (`warden demo` backfills 12 h
            // of each so trends and sustained levels show at once): percentage points per
            // hour of each seeded level.
            "history": [
                {"resource_id": "storage:pve2/local-zfs", "metric": metric::STORAGE_USED_PCT, "per_hour": ZFS_FILL_PER_HOUR},
                {"resource_id": "storage:demo/pbs", "metric": metric::STORAGE_USED_PCT, "per_hour": 0.0},
                {"resource_id": "pbs-datastore:pbs1/store1", "metric": metric::DATASTORE_USED_PCT, "per_hour": 0.0},
            ],
        })
    );

    // The trouble that develops: the crash loop keeps restarting, pve3 goes down once.
    let started = Instant::now();
    let mut last_crash = started;
    let mut node_down = false;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if last_crash.elapsed() >= Duration::from_secs(60) {
            kube.crashloop_pod(ns, pod);
            last_crash = Instant::now();
        }
        if !node_down && started.elapsed() >= node_down_after {
            pve.stop_node("pve3");
            node_down = true;
        }
    }
}
