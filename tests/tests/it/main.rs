//! The one process-level test binary: each module was its own test target, and linking
//! twenty-one binaries against the whole workspace cost minutes and gigabytes on CI.

mod alerts;
mod api;
mod api_lists;
mod audit;
mod audit_tamper;
mod cli;
mod cloned_identity;
mod demo;
mod disk_full;
mod docker_collector;
mod durability;
mod enrollment;
mod http_hardening;
mod k8s_sim;
mod kubernetes_collector;
mod metrics_query;
mod metrics_store;
mod patrol;
mod patrol_fleet;
mod pbs_collector;
mod pbs_sim;
mod proxmox_collector;
mod pve_sim;
mod remote_write;
mod spool;
mod tidy;
mod transport;
mod webhooks;
