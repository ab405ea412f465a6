//! `pve_sim`: the Proxmox VE API simulator as a process, with a cluster of any size, for
//! benchmarks (and later the demo). Prints one JSON line with the URL, certificate
//! fingerprint and API token, then serves until killed.
//!
//! ```text
//! target/release/pve_sim --nodes 500 --guests 5000
//! ```

use clap::Parser;
use warden_tests::sim::pve::{PveSim, PveSimOptions, World};

#[derive(Parser)]
#[command(about = "Proxmox VE API simulator")]
struct Args {
    /// Cluster nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Guests (VMs and containers), spread over the nodes.
    #[arg(long, default_value_t = 30)]
    guests: usize,
    /// Cluster name.
    #[arg(long, default_value = "bench")]
    cluster: String,
}

/// A cluster of `nodes` nodes and `guests` guests, cloned from the default world's shapes.
fn scaled(args: &Args) -> World {
    let mut w = World::default();
    let node_tpl = w.nodes[0].clone();
    let guest_tpls = w.guests.clone();
    let local_tpls: Vec<_> = w
        .storages
        .iter()
        .filter(|s| s.node == node_tpl.name && !s.shared)
        .cloned()
        .collect();
    let shared_tpls: Vec<_> = w
        .storages
        .iter()
        .filter(|s| s.node == node_tpl.name && s.shared)
        .cloned()
        .collect();
    let name = |i: usize| format!("node{:03}", i + 1);
    w.cluster_name = Some(args.cluster.clone());
    w.local_node = name(0);
    w.nodes = (0..args.nodes)
        .map(|i| {
            let mut n = node_tpl.clone();
            n.name = name(i);
            n.nodeid = u32::try_from(i + 1).unwrap_or(u32::MAX);
            n.ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
            n
        })
        .collect();
    w.guests = (0..args.guests)
        .map(|i| {
            let mut g = guest_tpls[i % guest_tpls.len()].clone();
            g.vmid = u32::try_from(100 + i).unwrap_or(u32::MAX);
            g.name = format!("guest-{}", 100 + i);
            g.node = name(i % args.nodes.max(1));
            g
        })
        .collect();
    w.storages = (0..args.nodes)
        .flat_map(|i| {
            let node = name(i);
            local_tpls.iter().chain(&shared_tpls).map(move |s| {
                let mut s = s.clone();
                s.node.clone_from(&node);
                s
            })
        })
        .collect();
    w.tasks.retain(|t| t.node == node_tpl.name);
    for t in &mut w.tasks {
        t.node = name(0);
    }
    w
}

fn main() {
    let args = Args::parse();
    let opts = PveSimOptions {
        world: scaled(&args),
        ..PveSimOptions::fast()
    };
    let token = opts.token.clone();
    let sim = PveSim::start(opts);
    let line = serde_json::json!({
        "url": sim.base_url(),
        "fingerprint": sim.cert_fingerprint(),
        "token": token,
        "nodes": args.nodes,
        "guests": args.guests,
    });
    println!("{line}");
    loop {
        std::thread::park();
    }
}
