//! Silence / dead-man detection: an agent, a collector, a backup job or a replication that
//! stopped reporting or running is a finding; data that merely stopped coming is never
//! "healthy". A pure detector over a [`Snapshot`]'s resources and agents.
//!
//! Rules, each with its issue key (all of source `heuristic`):
//! - `agent-silent` (on `agent:<id>`): a non-revoked agent not heard from (no batch stored, no
//!   connect or disconnect) for [`SilenceConfig::agent_silent_after_s`]; never heard from
//!   counts from its enrollment.
//! - `agent-no-data` (on `agent:<id>`): an agent that is heard from but none of whose
//!   collectors has reported for [`SilenceConfig::collector_silent_after_s`] (stuck
//!   collectors, a spool backlog, or its clock far behind).
//! - `collector-silent:<c>`, `collector-failing:<c>`, `collector-degraded:<c>` (on
//!   `agent:<id>`): one collector of a live agent stopped running, keeps failing (a `failed`
//!   run, or a `degraded` one that re-sends its resources marked `stale`), or keeps losing
//!   part of its data.
//! - `stopped-reporting`: a resource its collector no longer reports although the collector
//!   runs fine; more than [`SilenceConfig::stopped_reporting_max_findings`] of one collector
//!   become one `stopped-reporting:<c>` finding on the agent instead.
//! - `backup-not-running` (guests), `pbs-<job>-not-running` (PBS datastores): a backup age
//!   that stopped being updated (a frozen age looks healthy), or a PBS job whose last run is
//!   too old.
//! - `replication-stale`: a replication job that says `ok` but has not synced for about two
//!   of its schedule's intervals.
//!
//! No double reporting: a silent or revoked agent hides everything about its collectors and
//! resources; a silent or failing collector hides its resources' `stopped-reporting`; the
//! backup and replication rules only judge resources that are themselves current.
//!
//! Clocks: `last_seen_ms` is the server's clock, collection times (`last_run_ms`,
//! `updated_at_ms`, sample times) the agent's. Agent-clock times are compared with each other
//! (a resource against its collector's last run, a collector against the agent's newest run),
//! so a skewed agent clock cannot make a whole fleet look silent; only `agent-silent` and
//! `agent-no-data` measure against `now_ms`.

use super::snapshot::Snapshot;
use crate::model::finding::{Category, Detection, Severity};
use crate::model::{AgentRecord, CollectorHealthRecord, ResourceRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use warden_shared::metric;
use warden_shared::resource::{ResourceKind, canonical};

/// The server's default QUIC port (`quic_listen` in the server config), named in advice.
const QUIC_PORT: u16 = 4433;
/// Resources named in a grouped finding's evidence.
const EXAMPLES: usize = 5;
const BACKUP_AGE: &str = metric::BACKUP_LAST_AGE_SECONDS;

/// How long silence is tolerated. Serialised as the `silence` object of
/// `/api/ai/patrol/settings`; a field missing from stored settings takes its default. A
/// threshold of 0 turns its rule (or, for a `*_critical_after_s`, its critical step) off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SilenceConfig {
    /// An agent not heard from for this long is a warning, seconds (agents send a batch every
    /// 10-60 s).
    pub agent_silent_after_s: u64,
    /// ... and critical after this long, seconds.
    pub agent_critical_after_s: u64,
    /// A collector that has not run for this long while its agent's other collectors have (or
    /// an agent none of whose collectors has), seconds.
    pub collector_silent_after_s: u64,
    /// A collector failing (or re-sending stale data) for this long, seconds.
    pub collector_failing_after_s: u64,
    /// Silent and failing collectors become critical after this long, seconds.
    pub collector_critical_after_s: u64,
    /// A resource its collector has not reported for this long while the collector runs fine,
    /// seconds.
    pub resource_silent_after_s: u64,
    /// Resource types that come and go on purpose (rolled pods, removed containers, pruned
    /// backup groups) and are never reported as stopped.
    pub stopped_reporting_ignore_kinds: Vec<String>,
    /// More stopped resources than this from one collector of one agent become one finding on
    /// the agent (a shared cause: lost permissions, a changed cluster view).
    pub stopped_reporting_max_findings: usize,
    /// A guest's backup age not updated for this long while the guest reports, seconds.
    pub backup_stale_after_s: u64,
    /// A PBS garbage collection, prune, verify or sync job that last ran longer ago than this,
    /// seconds (the agent does not send job schedules yet, so one limit fits weekly jobs).
    pub pbs_job_max_age_s: u64,
    /// A replication's last sync may be this many schedule intervals old.
    pub replication_schedule_factor: f64,
    /// ... but never less than this, seconds (a collector interval plus a sync's duration).
    pub replication_min_age_s: u64,
    /// The limit when the schedule cannot be read, seconds.
    pub replication_default_max_age_s: u64,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        Self {
            agent_silent_after_s: 5 * 60,
            agent_critical_after_s: 30 * 60,
            collector_silent_after_s: 15 * 60,
            collector_failing_after_s: 10 * 60,
            collector_critical_after_s: 60 * 60,
            resource_silent_after_s: 15 * 60,
            stopped_reporting_ignore_kinds: [
                ResourceKind::Pod,
                ResourceKind::AppContainer,
                ResourceKind::K8sWorkload,
                ResourceKind::K8sNode,
                ResourceKind::Pvc,
                ResourceKind::Backup,
                ResourceKind::Replication,
            ]
            .map(|k| k.prefix().to_owned())
            .to_vec(),
            stopped_reporting_max_findings: 25,
            backup_stale_after_s: 2 * 3600,
            pbs_job_max_age_s: 8 * 86_400,
            replication_schedule_factor: 2.0,
            replication_min_age_s: 15 * 60,
            replication_default_max_age_s: 3600,
        }
    }
}

impl SilenceConfig {
    /// Range and order checks, each problem reported under `field` (e.g. `silence`).
    pub fn check(&self, field: &str, problems: &mut Vec<String>) {
        let pairs = [
            (
                "agent_silent_after_s",
                self.agent_silent_after_s,
                "agent_critical_after_s",
                self.agent_critical_after_s,
            ),
            (
                "collector_failing_after_s",
                self.collector_failing_after_s,
                "collector_critical_after_s",
                self.collector_critical_after_s,
            ),
        ];
        for (warn_name, warn, crit_name, crit) in pairs {
            if warn > 0 && crit > 0 && crit < warn {
                problems.push(format!(
                    "{field}.{crit_name} ({crit}) must be at least {field}.{warn_name} ({warn}), \
                     or 0 for never critical"
                ));
            }
        }
        let f = self.replication_schedule_factor;
        if !(1.0..=100.0).contains(&f) {
            problems.push(format!(
                "{field}.replication_schedule_factor ({f}) must be from 1 to 100"
            ));
        }
        if self.stopped_reporting_max_findings == 0 {
            problems.push(format!(
                "{field}.stopped_reporting_max_findings must be at least 1"
            ));
        }
        if self
            .stopped_reporting_ignore_kinds
            .iter()
            .any(|k| k.trim().is_empty())
        {
            problems.push(format!(
                "{field}.stopped_reporting_ignore_kinds must not hold empty names"
            ));
        }
    }
}

/// Finds everything that went quiet.
pub fn detect(s: &Snapshot, cfg: &SilenceConfig) -> Vec<Detection> {
    let fleet = Fleet::index(s, cfg);
    let mut out = Vec::new();
    for a in &s.agents {
        let Some(info) = fleet.agents.get(a.id.as_str()) else {
            continue;
        };
        match info.state {
            AgentState::Revoked => {}
            AgentState::Silent { heard_ms } => {
                agent_silent(s.now_ms, cfg, info, heard_ms, &mut out)
            }
            AgentState::NoData { newest_ms } => {
                agent_no_data(s.now_ms, cfg, info, newest_ms, &mut out)
            }
            AgentState::Alive { newest_ms } => {
                for (name, h) in &a.collectors {
                    let stats = fleet.collector(&a.id, name);
                    collector(cfg, info, name, h, newest_ms, stats, &mut out);
                }
            }
        }
    }
    // (agent, collector) -> the resources it stopped reporting, with how long ago.
    let mut stopped: BTreeMap<(&str, &str), Vec<(&ResourceRecord, i64)>> = BTreeMap::new();
    for r in &s.resources {
        let Some(rep) = fleet.reporting(r, cfg) else {
            continue;
        };
        let lag = rep.ref_ms - activity_ms(r, |_| false);
        if reached(lag, cfg.resource_silent_after_s) {
            if rep.collector_ok && !cfg.stopped_reporting_ignore_kinds.contains(&r.kind) {
                stopped
                    .entry((r.agent_id.as_str(), r.collector.as_str()))
                    .or_default()
                    .push((r, lag));
            }
            continue;
        }
        if is_stale(r) {
            continue;
        }
        match ResourceKind::from_prefix(&r.kind) {
            Some(ResourceKind::Vm | ResourceKind::SystemContainer) => {
                backup_not_running(cfg, r, rep.ref_ms, &mut out);
            }
            Some(ResourceKind::PbsDatastore) => pbs_jobs(cfg, r, &mut out),
            Some(ResourceKind::Replication) => replication(cfg, r, rep.ref_ms, &mut out),
            _ => {}
        }
    }
    for ((agent, collector), list) in stopped {
        if list.len() > cfg.stopped_reporting_max_findings {
            if let Some(info) = fleet.agents.get(agent) {
                stopped_group(info, collector, &list, &mut out);
            }
        } else {
            for (r, lag) in list {
                stopped_reporting(r, collector, lag, &mut out);
            }
        }
    }
    out
}

// ---- the index: per agent and per (agent, collector), built once ----

/// Where an agent stands.
#[derive(Debug, Clone, Copy)]
enum AgentState {
    /// Revoked: nothing about it is reported.
    Revoked,
    /// Not heard from since `heard_ms` (server clock).
    Silent { heard_ms: i64 },
    /// Heard from, but its newest collection (agent clock) is `newest_ms`, long ago.
    NoData { newest_ms: i64 },
    /// Heard from and reporting; `newest_ms` is its newest collection, if it reported any.
    Alive { newest_ms: Option<i64> },
}

struct AgentInfo<'a> {
    rec: &'a AgentRecord,
    state: AgentState,
    /// Resources it last reported, by type.
    kinds: BTreeMap<&'a str, usize>,
}

impl AgentInfo<'_> {
    fn resources(&self) -> usize {
        self.kinds.values().sum()
    }

    fn host(&self) -> &str {
        host(self.rec)
    }
}

/// What one collector of one agent last reported.
#[derive(Default)]
struct CollectorStats {
    /// Resources it last reported.
    total: usize,
    /// Of those, re-sent marked `stale`.
    stale: usize,
    /// For each stale one with samples: its newest sample (the last fresh data).
    stale_fresh_ms: Vec<i64>,
}

struct Fleet<'a> {
    agents: HashMap<&'a str, AgentInfo<'a>>,
    collectors: HashMap<(&'a str, &'a str), CollectorStats>,
}

/// How a resource's own reporter is doing.
struct Reporting {
    /// The time the resource is measured against: its collector's last run (agent clock).
    ref_ms: i64,
    /// The collector's last run succeeded and it is not silent: a resource missing from its
    /// reports is the resource's matter, not the collector's.
    collector_ok: bool,
}

impl<'a> Fleet<'a> {
    fn index(s: &'a Snapshot, cfg: &SilenceConfig) -> Self {
        let mut agents: HashMap<&str, AgentInfo<'_>> = s
            .agents
            .iter()
            .map(|a| {
                let info = AgentInfo {
                    rec: a,
                    state: agent_state(a, s.now_ms, cfg),
                    kinds: BTreeMap::new(),
                };
                (a.id.as_str(), info)
            })
            .collect();
        let mut collectors: HashMap<(&str, &str), CollectorStats> = HashMap::new();
        for r in &s.resources {
            if let Some(a) = agents.get_mut(r.agent_id.as_str()) {
                *a.kinds.entry(r.kind.as_str()).or_default() += 1;
            }
            let c = collectors
                .entry((r.agent_id.as_str(), r.collector.as_str()))
                .or_default();
            c.total += 1;
            // Only what its latest run re-sent: a resource last described stale and gone
            // since keeps the mark forever.
            let in_latest_run = agents
                .get(r.agent_id.as_str())
                .and_then(|a| a.rec.collectors.get(&r.collector))
                .is_some_and(|h| r.updated_at_ms >= h.last_run_ms);
            if in_latest_run && is_stale(r) {
                c.stale += 1;
                if let Some(t) = r.latest.values().map(|l| l.ts_ms).max() {
                    c.stale_fresh_ms.push(t);
                }
            }
        }
        Self { agents, collectors }
    }

    fn collector(&self, agent: &'a str, name: &'a str) -> Option<&CollectorStats> {
        self.collectors.get(&(agent, name))
    }

    /// How `r`'s reporter is doing, or `None` when something else covers it (its agent is
    /// silent, revoked, sends nothing, or is unknown; its collector is silent).
    fn reporting(&self, r: &ResourceRecord, cfg: &SilenceConfig) -> Option<Reporting> {
        let info = self.agents.get(r.agent_id.as_str())?;
        let AgentState::Alive {
            newest_ms: Some(newest),
        } = info.state
        else {
            return None;
        };
        match info.rec.collectors.get(&r.collector) {
            Some(h) if reached(newest - h.last_run_ms, cfg.collector_silent_after_s) => None,
            Some(h) => Some(Reporting {
                ref_ms: h.last_run_ms,
                collector_ok: h.status == "ok",
            }),
            // An agent that does not report this collector's health: its newest run.
            None => Some(Reporting {
                ref_ms: newest,
                collector_ok: true,
            }),
        }
    }
}

fn agent_state(a: &AgentRecord, now_ms: i64, cfg: &SilenceConfig) -> AgentState {
    if a.revoked_at_ms.is_some() {
        return AgentState::Revoked;
    }
    let heard_ms = a.last_seen_ms.unwrap_or(a.enrolled_at_ms);
    if reached(now_ms - heard_ms, cfg.agent_silent_after_s) {
        return AgentState::Silent { heard_ms };
    }
    let newest_ms = a.collectors.values().map(|h| h.last_run_ms).max();
    match newest_ms {
        Some(t) if reached(now_ms - t, cfg.collector_silent_after_s) => {
            AgentState::NoData { newest_ms: t }
        }
        _ => AgentState::Alive { newest_ms },
    }
}

// ---- agents and collectors ----

fn agent_silent(
    now_ms: i64,
    cfg: &SilenceConfig,
    info: &AgentInfo<'_>,
    heard_ms: i64,
    out: &mut Vec<Detection>,
) {
    let a = info.rec;
    let silent = now_ms - heard_ms;
    let severity = if reached(silent, cfg.agent_critical_after_s) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let host = info.host();
    let mut d = on_agent(a, "agent-silent", severity);
    let resources = info.resources();
    let heard = match a.last_seen_ms {
        Some(t) => format!("last heard from {} ago ({})", dur(silent), at(t)),
        None => format!(
            "never heard from since it enrolled {} ago ({})",
            dur(silent),
            at(a.enrolled_at_ms)
        ),
    };
    d.title = format!("agent on {host} silent for {}", dur(silent));
    d.description = format!(
        "The Warden agent on {host} has sent nothing for {}: everything it watches is blind, \
         and the {resources} resources it reported show their last known state, not the \
         current one.",
        dur(silent)
    );
    d.evidence = format!(
        "{heard}; {resources} resources it reported are now stale{}",
        kinds_list(&info.kinds)
    );
    let cert_expired = a.cert_not_after_unix > 0 && a.cert_not_after_unix * 1000 <= now_ms;
    if cert_expired {
        d.evidence.push_str(&format!(
            "; its client certificate expired {}",
            at(a.cert_not_after_unix * 1000)
        ));
    }
    d.recommendation = format!(
        "On {host}: check `systemctl status warden-agent` and `journalctl -u warden-agent -n 100`; \
         check the host is up and reaches the server's QUIC port (UDP {QUIC_PORT} by default)."
    );
    if cert_expired {
        d.recommendation
            .push_str(" Its certificate expired: enroll it again with a new join token.");
    }
    d.recommendation.push_str(
        " If the host was decommissioned, revoke the agent so its resources stop counting.",
    );
    out.push(d);
}

fn agent_no_data(
    now_ms: i64,
    cfg: &SilenceConfig,
    info: &AgentInfo<'_>,
    newest_ms: i64,
    out: &mut Vec<Detection>,
) {
    let a = info.rec;
    let behind = now_ms - newest_ms;
    let mut d = on_agent(a, "agent-no-data", severity_after(behind, cfg));
    let host = info.host();
    d.title = format!("agent on {host} connected but sends no data");
    d.description = format!(
        "The agent on {host} is heard from, but the newest data of any of its collectors was \
         collected {} before now: its collectors are stuck, it is replaying a long backlog, or \
         its clock is that far behind.",
        dur(behind)
    );
    d.evidence = format!(
        "newest collection {} (agent clock), {} before the server's clock; last heard from {}; \
         {} collectors: {}",
        at(newest_ms),
        dur(behind),
        a.last_seen_ms.map_or_else(|| "never".to_owned(), at),
        a.collectors.len(),
        a.collectors
            .iter()
            .map(|(n, h)| format!("{n} last ran {}", at(h.last_run_ms)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    d.recommendation = format!(
        "On {host}: compare `date -u` with the server's time (`timedatectl` shows whether NTP is \
         synchronised); read `journalctl -u warden-agent -n 200` for stuck or failing \
         collectors, and restart it (`systemctl restart warden-agent`) if they are stuck."
    );
    out.push(d);
}

fn collector(
    cfg: &SilenceConfig,
    info: &AgentInfo<'_>,
    name: &str,
    h: &CollectorHealthRecord,
    newest_ms: Option<i64>,
    stats: Option<&CollectorStats>,
    out: &mut Vec<Detection>,
) {
    let a = info.rec;
    let host = info.host();
    let (total, stale) = stats.map_or((0, 0), |c| (c.total, c.stale));
    let message = h.message.as_deref().unwrap_or("no message");
    let behind = newest_ms.map_or(0, |t| t - h.last_run_ms);
    if reached(behind, cfg.collector_silent_after_s) {
        let mut d = on_agent(
            a,
            &format!("collector-silent:{name}"),
            severity_after(behind, cfg),
        );
        d.title = format!("{name} collector on {host} stopped running");
        d.description = format!(
            "The {name} collector on {host} has not run for {} while the agent's other \
             collectors have; the {total} resources it reports are frozen at their last state.",
            dur(behind)
        );
        d.evidence = format!(
            "last run {} ({} before the agent's newest collection); last status {}: {message}",
            at(h.last_run_ms),
            dur(behind),
            h.status
        );
        d.recommendation = format!(
            "Read `journalctl -u warden-agent` on {host} for the {name} collector and restart \
             the agent if it is stuck. If the collector was removed from the agent's config on \
             purpose, dismiss this finding."
        );
        out.push(d);
        return;
    }
    let failing = match h.status.as_str() {
        "failed" => Some(h.last_success_ms),
        // A degraded run that re-sends its resources stale failed its main read.
        "degraded" if stale > 0 => Some(stats.and_then(|c| median(&c.stale_fresh_ms))),
        "degraded" => None,
        _ => return,
    };
    let Some(since) = failing else {
        let mut d = on_agent(a, &format!("collector-degraded:{name}"), Severity::Watch);
        d.title = format!("{name} collector on {host} is missing data");
        d.description = format!(
            "The {name} collector on {host} runs but part of what it reads fails, so some \
             values of its {total} resources are missing or no longer updated."
        );
        d.evidence = format!("status degraded at {}: {message}", at(h.last_run_ms));
        d.recommendation = format!(
            "{}; the status message in the evidence names the failing call.",
            advice(name, host)
        );
        out.push(d);
        return;
    };
    // How long it has been failing; unknown when no success is on record (the agent may have
    // restarted since), or no stale resource has a sample to date its last fresh data.
    let failing_ms = since.map(|t| h.last_run_ms - t);
    if failing_ms.is_some_and(|f| !reached(f, cfg.collector_failing_after_s))
        || cfg.collector_failing_after_s == 0
    {
        return;
    }
    let severity = match failing_ms {
        Some(f) => severity_after(f, cfg),
        None => Severity::Warning,
    };
    let mut d = on_agent(a, &format!("collector-failing:{name}"), severity);
    let how_long = failing_ms.map_or_else(
        || "for an unknown time".to_owned(),
        |f| format!("for {}", dur(f)),
    );
    d.title = format!("{name} collector on {host} failing {how_long}");
    d.description = format!(
        "The {name} collector on {host} has been failing {how_long}; the {total} resources it \
         reports show their last good state, not the current one."
    );
    let last_good = match (h.status.as_str(), since) {
        ("failed", Some(t)) => format!("last success {}", at(t)),
        ("failed", None) => "no success on record".to_owned(),
        (_, Some(t)) => format!(
            "{stale} of its {total} resources re-sent marked stale; their data is from about {}",
            at(t)
        ),
        (_, None) => format!("{stale} of its {total} resources re-sent marked stale"),
    };
    d.evidence = format!(
        "status {} at {}: {message}; {last_good}",
        h.status,
        at(h.last_run_ms)
    );
    d.recommendation = format!(
        "{}; the status message in the evidence names the failing call.",
        advice(name, host)
    );
    out.push(d);
}

/// What to check when a collector fails or loses data, by collector (one clause).
fn advice(collector: &str, host: &str) -> String {
    match collector {
        "proxmox" => format!(
            "Check the Proxmox VE API on {host} (`systemctl status pveproxy pvedaemon`) and that \
             the agent's API token still exists with the PVEAuditor role on `/`"
        ),
        "pbs" => format!(
            "Check the Proxmox Backup Server API on {host} (`systemctl status \
             proxmox-backup-proxy`) and that the agent's token still has Datastore.Audit"
        ),
        "docker" => format!(
            "Check the Docker daemon on {host} (`systemctl status docker`) and the agent's access \
             to its socket"
        ),
        "kubernetes" => "Check the API server is reachable from the agent and that its service \
                         account may still list and watch what it reads (`kubectl auth can-i`)"
            .to_owned(),
        _ => format!("Read `journalctl -u warden-agent` on {host} for the collector's errors"),
    }
}

// ---- resources ----

fn stopped_reporting(r: &ResourceRecord, collector: &str, lag: i64, out: &mut Vec<Detection>) {
    let mut d = Detection::on(
        r,
        "stopped-reporting",
        Severity::Warning,
        Category::Reliability,
    );
    d.title = format!("{} {} stopped reporting", r.kind, r.name);
    d.description = format!(
        "The {collector} collector of agent {} still runs, but has not reported {} for {}; \
         Warden shows its state from {}, which may no longer be true.",
        r.agent_id,
        r.id,
        dur(lag),
        at(r.updated_at_ms)
    );
    d.evidence = format!(
        "last reported {} ({} before its collector's latest run); last status {}",
        at(activity_ms(r, |_| false)),
        dur(lag),
        r.status
    );
    let why = match ResourceKind::from_prefix(&r.kind) {
        Some(ResourceKind::Vm | ResourceKind::SystemContainer) => {
            "Check the guest still exists (`qm list` / `pct list`) and that the agent's API token \
             still sees it (guests outside the token's permissions vanish from the cluster view)"
        }
        Some(ResourceKind::Node) => {
            "Check the node is still a cluster member (`pvecm nodes`) and its agent runs"
        }
        Some(ResourceKind::Storage) => {
            "Check the storage is still enabled and active (`pvesm status`)"
        }
        Some(ResourceKind::PhysicalDisk) => {
            "A disk missing from the node's disk list may have dropped off the bus: check \
             `dmesg`, `lsblk` and its SMART state on the node"
        }
        Some(ResourceKind::PbsDatastore) => {
            "Check the datastore still exists and is mounted (`proxmox-backup-manager datastore \
             list`)"
        }
        _ => "Check the resource still exists and the agent may still read it",
    };
    d.recommendation = format!("{why}. If it was removed on purpose, dismiss this finding.");
    out.push(d);
}

fn stopped_group(
    info: &AgentInfo<'_>,
    collector: &str,
    list: &[(&ResourceRecord, i64)],
    out: &mut Vec<Detection>,
) {
    let host = info.host();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (r, _) in list {
        *kinds.entry(r.kind.as_str()).or_default() += 1;
    }
    let mut d = on_agent(
        info.rec,
        &format!("stopped-reporting:{collector}"),
        Severity::Warning,
    );
    d.title = format!(
        "{} resources of the {collector} collector on {host} stopped reporting",
        list.len()
    );
    d.description = format!(
        "The {collector} collector on {host} still runs, but {} resources it used to report are \
         missing from its reports. So many at once points to one cause: the agent's credentials \
         lost permissions, its view changed (a cluster role moved to a node without an agent), \
         or they were removed together.",
        list.len()
    );
    let examples: Vec<String> = list
        .iter()
        .take(EXAMPLES)
        .map(|(r, lag)| format!("{} ({} ago)", r.id, dur(*lag)))
        .collect();
    let more = list.len().saturating_sub(EXAMPLES);
    d.evidence = format!(
        "{} resources{} not reported since up to {} before the collector's latest run; e.g. {}{}",
        list.len(),
        kinds_list(&kinds),
        dur(list.iter().map(|(_, lag)| *lag).max().unwrap_or(0)),
        examples.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    d.recommendation = format!(
        "{}. If they were removed on purpose, dismiss this finding.",
        advice(collector, host)
    );
    out.push(d);
}

fn backup_not_running(
    cfg: &SilenceConfig,
    r: &ResourceRecord,
    ref_ms: i64,
    out: &mut Vec<Detection>,
) {
    let backups: Vec<(&str, i64, f64)> = r
        .latest
        .iter()
        .filter(|(m, _)| m.starts_with(BACKUP_AGE))
        .map(|(m, l)| (m.as_str(), l.ts_ms, l.value))
        .collect();
    let Some(updated_ms) = backups.iter().map(|b| b.1).max() else {
        return;
    };
    // The guest's own reports, without its backup metrics.
    let guest_ms = activity_ms(r, |m| m.starts_with("backup_"));
    if reached(ref_ms - guest_ms, cfg.resource_silent_after_s) {
        return;
    }
    let frozen = guest_ms.max(ref_ms) - updated_ms;
    if !reached(frozen, cfg.backup_stale_after_s) {
        return;
    }
    // The age each sample said plus the time since it said it: the least it can be now.
    let least_ms = backups
        .iter()
        .map(|(_, ts, v)| (v * 1000.0) as i64 + (ref_ms - ts).max(0))
        .min()
        .unwrap_or(0);
    let storages: Vec<&str> = backups
        .iter()
        .map(|(m, ..)| storage_label(m).unwrap_or("?"))
        .collect();
    let mut d = Detection::on(r, "backup-not-running", Severity::Warning, Category::Backup);
    d.title = format!("{}: backup status not updated for {}", r.name, dur(frozen));
    d.description = format!(
        "{} still reports, but the age of its newest backup has not been updated for {}: the \
         backup storage is no longer read (inactive or unreachable) or its backups are gone. A \
         frozen age looks healthy; the newest backup is at least {} old now, if it exists.",
        r.name,
        dur(frozen),
        dur(least_ms)
    );
    d.evidence = format!(
        "{BACKUP_AGE} last updated {} on storage {}, {} before the guest's latest report; it \
         said {}; at least {} by now",
        at(updated_ms),
        storages.join(", "),
        dur(frozen),
        backups
            .iter()
            .map(|(_, _, v)| dur((v * 1000.0) as i64))
            .collect::<Vec<_>>()
            .join(", "),
        dur(least_ms)
    );
    d.recommendation = format!(
        "Check that the backup storage ({}) is active on the node (`pvesm status`) and still \
         holds this guest's backups (`pvesm list <storage> --vmid <vmid>`); then check the backup \
         job that covers the guest and run one now.",
        storages.join(", ")
    );
    out.push(d);
}

fn pbs_jobs(cfg: &SilenceConfig, r: &ResourceRecord, out: &mut Vec<Detection>) {
    if cfg.pbs_job_max_age_s == 0 || r.status != "available" {
        return;
    }
    let ref_ms = activity_ms(r, |_| false);
    for (metric, l) in &r.latest {
        let Some(job) = metric
            .strip_prefix(metric::JOB_LAST_RUN_AGE_SECONDS)
            .and_then(|j| j.strip_prefix("{job=\""))
            .and_then(|j| j.strip_suffix("\"}"))
        else {
            continue;
        };
        // A job no longer in the datastore's report was removed; its last sample stays.
        if !r.attrs.contains_key(&format!("{job}_last_state")) {
            continue;
        }
        // A failed last run is the heuristics' `pbs-<job>-failed`.
        let failed = r
            .latest
            .get(&metric::labelled(metric::JOB_LAST_OK, "job", job))
            .is_some_and(|ok| ok.value == 0.0);
        if failed {
            continue;
        }
        let age_ms = (l.value * 1000.0) as i64 + (ref_ms - l.ts_ms).max(0);
        if !reached(age_ms, cfg.pbs_job_max_age_s) {
            continue;
        }
        let kind = job.split('/').next().unwrap_or(job);
        let mut d = Detection::on(
            r,
            &format!("pbs-{job}-not-running"),
            Severity::Warning,
            Category::Backup,
        );
        d.title = format!("{}: {job} has not run for {}", r.name, dur(age_ms));
        d.description = format!(
            "The {job} job of datastore {} last finished {} ago. It did not fail; it stopped \
             running (its schedule was removed or changed, or the PBS scheduler does not run).",
            r.name,
            dur(age_ms)
        );
        d.evidence = format!(
            "{metric} = {:.0} s at {}; {} by the datastore's latest report (limit {})",
            l.value,
            at(l.ts_ms),
            dur(age_ms),
            dur(ms(cfg.pbs_job_max_age_s))
        );
        let check = match kind {
            "gc" => format!(
                "the datastore's gc-schedule (`proxmox-backup-manager datastore show {}`); run \
                 `proxmox-backup-manager garbage-collection start {}`",
                r.name, r.name
            ),
            "prune" => "the prune job (`proxmox-backup-manager prune-job list`) and run it".into(),
            "verify" => {
                "the verify job (`proxmox-backup-manager verify-job list`) and run it".into()
            }
            "sync" => "the sync job and its remote (`proxmox-backup-manager sync-job list`, \
                       `proxmox-backup-manager remote list`) and run it"
                .into(),
            _ => "the job's schedule on the PBS host and run it".into(),
        };
        d.recommendation = format!(
            "Check {check}; `systemctl status proxmox-backup-proxy` shows whether the scheduler \
             runs."
        );
        out.push(d);
    }
}

fn replication(cfg: &SilenceConfig, r: &ResourceRecord, ref_ms: i64, out: &mut Vec<Detection>) {
    // `failing` is the heuristics' `replication-failing`; `pending` never synced; `disabled`
    // and `removing` are not meant to run.
    if !matches!(r.status.as_str(), "ok" | "syncing") {
        return;
    }
    let Some(last_sync_s) = r.attrs.get("last_sync").and_then(serde_json::Value::as_i64) else {
        return;
    };
    let schedule = r.attrs.get("schedule").and_then(serde_json::Value::as_str);
    let interval_s = schedule.and_then(schedule_interval_s);
    let limit_s = match interval_s {
        Some(i) => {
            ((i as f64 * cfg.replication_schedule_factor) as u64).max(cfg.replication_min_age_s)
        }
        None => cfg.replication_default_max_age_s,
    };
    let last_sync_ms = last_sync_s.saturating_mul(1000);
    let age = r.updated_at_ms.max(ref_ms) - last_sync_ms;
    if !reached(age, limit_s) {
        return;
    }
    let mut d = Detection::on(r, "replication-stale", Severity::Warning, Category::Backup);
    d.title = format!("replication {} has not synced for {}", r.name, dur(age));
    d.description = format!(
        "Storage replication job {} reports {} but its last successful sync was {} ago, more \
         than its schedule allows: the replica on the target is that far behind.",
        r.name,
        r.status,
        dur(age)
    );
    let plan = match (schedule, interval_s) {
        (Some(s), Some(i)) => format!(
            "schedule {s} (every {} at most) x {} = {}",
            dur(ms(i)),
            cfg.replication_schedule_factor,
            dur(ms(limit_s))
        ),
        (Some(s), None) => format!(
            "schedule {s} not understood; default limit {}",
            dur(ms(limit_s))
        ),
        (None, _) => format!("no schedule; default limit {}", dur(ms(limit_s))),
    };
    d.evidence = format!(
        "last_sync {} ({} before the job's latest report at {}); {plan}",
        at(last_sync_ms),
        dur(age),
        at(r.updated_at_ms)
    );
    if let Some(next) = r.attrs.get("next_sync").and_then(serde_json::Value::as_i64) {
        d.evidence
            .push_str(&format!("; next_sync {}", at(next.saturating_mul(1000))));
    }
    d.recommendation = "Check `pvesr status` on the guest's node and that `pvescheduler` runs \
                        (`systemctl status pvescheduler`); then run the job by hand \
                        (`pvesr run --id <job> --verbose`)."
        .into();
    out.push(d);
}

/// The longest gap between runs of a Proxmox calendar-event schedule (`*/15`, `hourly`,
/// `02:30`, `mon..fri 22:00`), in seconds, rounded up where the exact gap is hard to tell;
/// `None` for what it cannot read.
fn schedule_interval_s(spec: &str) -> Option<u64> {
    let spec = spec.trim().to_ascii_lowercase();
    let named = match spec.as_str() {
        "minutely" => Some(60),
        "hourly" => Some(3600),
        "daily" => Some(86_400),
        "weekly" => Some(7 * 86_400),
        "monthly" => Some(31 * 86_400),
        _ => None,
    };
    if named.is_some() {
        return named;
    }
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let (time, dated) = match parts.as_slice() {
        [t] => (*t, false),
        // A weekday part (`mon..fri`, `sat`); dates (`2024-01-01`) are not handled.
        [day, t] if !day.contains('-') => (*t, true),
        _ => return None,
    };
    let minutes = match time.split_once(':') {
        None => minute_gap(time)?,
        Some((h, m)) => {
            let m_gap = minute_gap(m)?;
            if h == "*" {
                m_gap
            } else if let Some(step) = h.strip_prefix("*/") {
                let step: u64 = step.parse().ok().filter(|s| (1..=24).contains(s))?;
                step * 60
            } else if h.split(',').all(|x| x.parse::<u8>().is_ok_and(|x| x < 24)) {
                // Given hours: at most a day apart.
                24 * 60
            } else {
                return None;
            }
        }
    };
    // On given weekdays only: up to a week between runs.
    Some(if dated { 7 * 86_400 } else { minutes * 60 })
}

/// The longest gap, in minutes, of a calendar event's minute field when the hour repeats:
/// `*` every minute, `*/5` every five, a given minute (or several) at most an hour.
fn minute_gap(m: &str) -> Option<u64> {
    if m == "*" {
        return Some(1);
    }
    if let Some((_, step)) = m.split_once('/') {
        return step.parse().ok().filter(|s| (1..=60).contains(s));
    }
    m.split(',')
        .all(|x| x.parse::<u8>().is_ok_and(|x| x < 60))
        .then_some(60)
}

// ---- helpers ----

/// A detection about an agent (or one of its collectors), which has no resource record: id
/// `agent:<id>`, named and located by its host. Enrollment makes agent ids that are valid
/// resource names, so the id is never empty.
pub(super) fn on_agent(a: &AgentRecord, key: &str, severity: Severity) -> Detection {
    let pseudo = ResourceRecord {
        id: canonical::agent(&a.id)
            .map(String::from)
            .unwrap_or_default(),
        kind: ResourceKind::Agent.prefix().to_owned(),
        name: host(a).to_owned(),
        ..ResourceRecord::default()
    };
    let mut d = Detection::on(&pseudo, key, severity, Category::Reliability);
    d.node = Some(host(a).to_owned());
    d
}

fn host(a: &AgentRecord) -> &str {
    if a.hostname.is_empty() {
        &a.id
    } else {
        &a.hostname
    }
}

/// Warning, or critical once `elapsed_ms` reaches the collector critical threshold.
fn severity_after(elapsed_ms: i64, cfg: &SilenceConfig) -> Severity {
    if reached(elapsed_ms, cfg.collector_critical_after_s) {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

/// Whether `elapsed_ms` has reached the threshold of `s` seconds; a 0 threshold never does.
fn reached(elapsed_ms: i64, s: u64) -> bool {
    s > 0 && elapsed_ms >= ms(s)
}

fn ms(s: u64) -> i64 {
    i64::try_from(s).map_or(i64::MAX, |s| s.saturating_mul(1000))
}

/// When `r` was last reported: its description or its newest sample, leaving out the metrics
/// `skip` names.
fn activity_ms(r: &ResourceRecord, skip: impl Fn(&str) -> bool) -> i64 {
    r.latest
        .iter()
        .filter(|(m, _)| !skip(m))
        .map(|(_, l)| l.ts_ms)
        .fold(r.updated_at_ms, i64::max)
}

/// Re-sent by a collector that could not read it this time (the shared stale rule).
fn is_stale(r: &ResourceRecord) -> bool {
    r.attrs.get("stale") == Some(&serde_json::Value::Bool(true))
}

fn storage_label(metric: &str) -> Option<&str> {
    metric
        .strip_prefix(metric::BACKUP_LAST_AGE_SECONDS)?
        .strip_prefix("{storage=\"")?
        .strip_suffix("\"}")
}

fn median(v: &[i64]) -> Option<i64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// ` (30 vm, 8 storage)`, or nothing for no resources.
fn kinds_list(kinds: &BTreeMap<&str, usize>) -> String {
    if kinds.is_empty() {
        return String::new();
    }
    let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(" ({})", list.join(", "))
}

/// A duration for people: `45 s`, `17 min`, `5 h 12 min`, `3 d 4 h`.
fn dur(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ => match (s / 86_400, s % 86_400 / 3600) {
            (d, 0) => format!("{d} d"),
            (d, h) => format!("{d} d {h} h"),
        },
    }
}

/// A time for people, RFC 3339 to the second.
fn at(ms: i64) -> String {
    crate::clock::rfc3339_ms(ms - ms.rem_euclid(1000)).unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LatestSample;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000;
    const S: i64 = 1000;
    const MIN: i64 = 60 * S;
    const H: i64 = 60 * MIN;
    const DAY: i64 = 24 * H;
    /// When the collectors of a healthy agent last ran.
    const RUN: i64 = NOW - 5 * S;

    fn ok() -> CollectorHealthRecord {
        CollectorHealthRecord {
            status: "ok".into(),
            message: None,
            last_success_ms: Some(RUN),
            last_run_ms: RUN,
            duration_ms: 120,
        }
    }

    fn failed(last_success_ms: Option<i64>) -> CollectorHealthRecord {
        CollectorHealthRecord {
            status: "failed".into(),
            message: Some("GET /cluster/status: connection refused".into()),
            last_success_ms,
            ..ok()
        }
    }

    fn degraded() -> CollectorHealthRecord {
        CollectorHealthRecord {
            status: "degraded".into(),
            message: Some("GET /nodes/pve1/disks/list: 403 permission denied".into()),
            ..ok()
        }
    }

    /// An agent heard from 10 s ago whose `collectors` all ran and succeeded 5 s ago.
    fn agent(id: &str, collectors: &[&str]) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            org_id: "default".into(),
            hostname: id.into(),
            version: "1.0.0".into(),
            enrolled_at_ms: NOW - 30 * DAY,
            revoked_at_ms: None,
            cert_serial: "01".into(),
            cert_not_after_unix: (NOW + 300 * DAY) / 1000,
            last_seen_ms: Some(NOW - 10 * S),
            protocol: Some("1.2".into()),
            dropped_samples: 0,
            collectors: collectors.iter().map(|c| ((*c).into(), ok())).collect(),
            identity_conflict: None,
        }
    }

    /// A resource reported by `agent`'s `collector` in its latest run, with one sample.
    fn res(id: &str, agent: &str, collector: &str) -> ResourceRecord {
        let (kind, name) = id.split_once(':').unwrap();
        let mut r = ResourceRecord {
            id: id.into(),
            org_id: "default".into(),
            kind: kind.into(),
            name: name.rsplit('/').next().unwrap().into(),
            status: "running".into(),
            agent_id: agent.into(),
            collector: collector.into(),
            updated_at_ms: RUN,
            ..ResourceRecord::default()
        };
        sample(&mut r, metric::CPU_PCT, RUN, 3.0);
        r
    }

    fn sample(r: &mut ResourceRecord, metric: &str, ts_ms: i64, value: f64) {
        r.latest
            .insert(metric.into(), LatestSample { ts_ms, value });
    }

    /// `r` last reported `ago` before its collector's latest run.
    fn last_reported(mut r: ResourceRecord, ago: i64) -> ResourceRecord {
        r.updated_at_ms = RUN - ago;
        for l in r.latest.values_mut() {
            l.ts_ms = RUN - ago;
        }
        r
    }

    fn attr(r: &mut ResourceRecord, k: &str, v: serde_json::Value) {
        r.attrs.insert(k.into(), v);
    }

    fn snap(agents: Vec<AgentRecord>, resources: Vec<ResourceRecord>) -> Snapshot {
        Snapshot {
            now_ms: NOW,
            resources,
            agents,
            ..Snapshot::default()
        }
    }

    fn found(s: &Snapshot) -> Vec<Detection> {
        detect(s, &SilenceConfig::default())
    }

    fn keys(found: &[Detection]) -> Vec<(&str, &str, Severity)> {
        found
            .iter()
            .map(|d| (d.resource_id.as_str(), d.key.as_str(), d.severity))
            .collect()
    }

    /// A guest with a fresh backup age, a datastore with recent jobs, a replication that
    /// synced on time, and the rest of a small fleet, all reporting.
    fn healthy() -> Snapshot {
        let mut vm = res("vm:c/100", "pve1", "proxmox");
        sample(
            &mut vm,
            &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
            RUN,
            10.0 * 3600.0,
        );
        sample(&mut vm, metric::BACKUP_FAILED_24H, RUN, 0.0);
        let mut repl = res("replication:c/100-0", "pve1", "proxmox");
        repl.status = "ok".into();
        repl.latest.clear();
        attr(&mut repl, "schedule", json!("*/15"));
        attr(&mut repl, "last_sync", json!((RUN - 5 * MIN) / 1000));
        let mut store = res("pbs-datastore:pbs1/store1", "pbs1", "pbs");
        store.status = "available".into();
        sample(
            &mut store,
            &metric::labelled(metric::JOB_LAST_RUN_AGE_SECONDS, "job", "gc"),
            RUN,
            86_400.0,
        );
        sample(
            &mut store,
            &metric::labelled(metric::JOB_LAST_OK, "job", "gc"),
            RUN,
            1.0,
        );
        attr(&mut store, "gc_last_state", json!("OK"));
        let mut node2 = res("node:pve2", "pve2", "proxmox");
        node2.status = "online".into();
        let mut revoked = agent("old", &["host"]);
        revoked.revoked_at_ms = Some(NOW - 90 * DAY);
        revoked.last_seen_ms = Some(NOW - 90 * DAY);
        snap(
            vec![
                agent("pve1", &["host", "proxmox"]),
                agent("pve2", &["host", "proxmox"]),
                agent("pbs1", &["host", "pbs"]),
                agent("k", &["kubernetes"]),
                revoked,
            ],
            vec![
                res("node:pve1", "pve1", "host"),
                vm,
                res("lxc:c/101", "pve1", "proxmox"),
                res("storage:pve1/local", "pve1", "proxmox"),
                res("disk:pve1/sda", "pve1", "proxmox"),
                repl,
                node2,
                store,
                res("pod:k/shop/web-1", "k", "kubernetes"),
                last_reported(res("node:old", "old", "host"), 90 * DAY),
            ],
        )
    }

    #[test]
    fn a_healthy_fleet_has_no_findings() {
        let found = found(&healthy());
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn ten_thousand_resources_are_indexed_once() {
        let mut agents = Vec::new();
        let mut resources = Vec::new();
        for a in 0..100 {
            let id = format!("pve{a}");
            agents.push(agent(&id, &["host", "proxmox"]));
            for g in 0..100 {
                let mut vm = res(&format!("vm:c/{}", a * 100 + g), &id, "proxmox");
                sample(
                    &mut vm,
                    &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
                    RUN,
                    3600.0,
                );
                resources.push(vm);
            }
        }
        let mut s = snap(agents, resources);
        assert!(found(&s).is_empty());
        s.agents[7].last_seen_ms = Some(NOW - 17 * MIN);
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [("agent:pve7", "agent-silent", Severity::Warning)]
        );
        assert!(
            found[0]
                .evidence
                .contains("100 resources it reported are now stale (100 vm)"),
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn silent_agents_warning_then_critical_never_seen_and_revoked() {
        let at_edge = |id: &str, silent: i64| {
            let mut a = agent(id, &["host"]);
            a.last_seen_ms = Some(NOW - silent);
            a
        };
        let mut never = agent("new", &[]);
        (never.last_seen_ms, never.enrolled_at_ms) = (None, NOW - 17 * MIN);
        let mut just_enrolled = agent("newer", &[]);
        (just_enrolled.last_seen_ms, just_enrolled.enrolled_at_ms) = (None, NOW - MIN);
        let mut revoked = at_edge("revoked", 30 * DAY);
        revoked.revoked_at_ms = Some(NOW - 29 * DAY);
        let s = snap(
            vec![
                at_edge("almost", 5 * MIN - 1),
                at_edge("five", 5 * MIN),
                at_edge("almost-critical", 30 * MIN - 1),
                at_edge("thirty", 30 * MIN),
                never,
                just_enrolled,
                revoked,
            ],
            vec![res("node:revoked", "revoked", "host")],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                ("agent:five", "agent-silent", Severity::Warning),
                ("agent:almost-critical", "agent-silent", Severity::Warning),
                ("agent:thirty", "agent-silent", Severity::Critical),
                ("agent:new", "agent-silent", Severity::Warning),
            ]
        );
        let d = &found[0];
        assert_eq!(
            (
                d.resource_type.as_str(),
                d.resource_name.as_str(),
                d.node.as_deref()
            ),
            ("agent", "five", Some("five"))
        );
        assert!(
            d.recommendation.contains("UDP 4433"),
            "{}",
            d.recommendation
        );
        assert!(
            found[3]
                .evidence
                .starts_with("never heard from since it enrolled 17 min ago"),
            "{}",
            found[3].evidence
        );
    }

    #[test]
    fn a_silent_agent_is_one_finding_with_its_numbers() {
        let mut pve3 = agent("pve3", &["host", "proxmox"]);
        pve3.hostname = "pve3.lab".into();
        pve3.last_seen_ms = Some(NOW - 17 * MIN);
        pve3.cert_not_after_unix = (NOW - DAY) / 1000;
        // Everything about it is as old as its last report, and its last proxmox run failed.
        pve3.collectors
            .insert("proxmox".into(), failed(Some(NOW - 3 * H)));
        for h in pve3.collectors.values_mut() {
            h.last_run_ms = NOW - 17 * MIN;
        }
        let mut vm = last_reported(res("vm:c/300", "pve3", "proxmox"), 17 * MIN);
        sample(
            &mut vm,
            &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
            NOW - 5 * H,
            60.0,
        );
        let s = snap(
            vec![pve3],
            vec![
                vm,
                last_reported(res("vm:c/301", "pve3", "proxmox"), 17 * MIN),
                last_reported(res("storage:pve3/local", "pve3", "proxmox"), 17 * MIN),
            ],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [("agent:pve3", "agent-silent", Severity::Warning)]
        );
        let d = &found[0];
        assert_eq!(d.title, "agent on pve3.lab silent for 17 min");
        assert!(
            d.evidence.starts_with(&format!(
                "last heard from 17 min ago ({}); 3 resources it reported are now stale \
                 (1 storage, 2 vm); its client certificate expired",
                at(NOW - 17 * MIN)
            )),
            "{}",
            d.evidence
        );
        assert!(d.recommendation.contains("enroll it again"));
        assert!(d.recommendation.contains("`systemctl status warden-agent`"));
    }

    #[test]
    fn failing_collectors_by_how_long() {
        let mut pve1 = agent("pve1", &["host"]);
        pve1.collectors
            .insert("proxmox".into(), failed(Some(RUN - 10 * MIN)));
        pve1.collectors
            .insert("docker".into(), failed(Some(RUN - 10 * MIN + 1)));
        pve1.collectors.insert("pbs".into(), failed(Some(RUN - H)));
        pve1.collectors.insert("kubernetes".into(), failed(None));
        // Its resources stopped with it: the collector finding covers them.
        let s = snap(
            vec![pve1],
            vec![last_reported(res("vm:c/100", "pve1", "proxmox"), 3 * H)],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                (
                    "agent:pve1",
                    "collector-failing:kubernetes",
                    Severity::Warning
                ),
                ("agent:pve1", "collector-failing:pbs", Severity::Critical),
                ("agent:pve1", "collector-failing:proxmox", Severity::Warning),
            ]
        );
        assert!(found[0].evidence.contains("no success on record"));
        assert!(
            found[2].evidence.contains("connection refused")
                && found[2].evidence.contains(&at(RUN - 10 * MIN)),
            "{}",
            found[2].evidence
        );
        assert!(found[2].recommendation.contains("pveproxy"));
    }

    #[test]
    fn degraded_collectors_failing_when_they_resend_stale() {
        // pve1: the API is down, its resources re-sent stale since their data is 20 min old.
        let mut pve1 = agent("pve1", &["host"]);
        pve1.collectors.insert("proxmox".into(), degraded());
        let stale = |id: &str, data_age: i64| {
            let mut r = res(id, "pve1", "proxmox");
            attr(&mut r, "stale", json!(true));
            r.latest.get_mut(metric::CPU_PCT).unwrap().ts_ms = RUN - data_age;
            r
        };
        // pve2: partial problems only, plus a stale leftover from a run long ago.
        let mut pve2 = agent("pve2", &["host"]);
        pve2.collectors.insert("proxmox".into(), degraded());
        let mut leftover = last_reported(res("vm:c/200", "pve2", "proxmox"), DAY);
        attr(&mut leftover, "stale", json!(true));
        // pve3: re-sent stale for only 5 min: transient.
        let mut pve3 = agent("pve3", &["host"]);
        pve3.collectors.insert("proxmox".into(), degraded());
        let mut pve3_node = res("node:pve3", "pve3", "proxmox");
        attr(&mut pve3_node, "stale", json!(true));
        pve3_node.latest.get_mut(metric::CPU_PCT).unwrap().ts_ms = RUN - 5 * MIN;
        let s = snap(
            vec![pve1, pve2, pve3],
            vec![
                stale("node:pve1", 20 * MIN),
                stale("storage:pve1/local", 20 * MIN),
                // Another collector still sends its samples; the median ignores it.
                stale("vm:c/100", 0),
                leftover,
                pve3_node,
            ],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                ("agent:pve1", "collector-failing:proxmox", Severity::Warning),
                ("agent:pve2", "collector-degraded:proxmox", Severity::Watch),
            ]
        );
        assert!(
            found[0]
                .evidence
                .contains("3 of its 3 resources re-sent marked stale"),
            "{}",
            found[0].evidence
        );
        assert!(
            found[0].title.ends_with("failing for 20 min"),
            "{}",
            found[0].title
        );
        assert!(found[1].evidence.contains("403 permission denied"));
    }

    #[test]
    fn silent_collectors_and_agents_that_send_nothing() {
        let mut pve1 = agent("pve1", &["host", "proxmox", "docker"]);
        pve1.collectors.get_mut("proxmox").unwrap().last_run_ms = RUN - 15 * MIN;
        pve1.collectors.get_mut("docker").unwrap().last_run_ms = RUN - 15 * MIN + 1;
        let mut pve2 = agent("pve2", &["host", "proxmox"]);
        for h in pve2.collectors.values_mut() {
            h.last_run_ms = NOW - 20 * MIN;
        }
        let s = snap(
            vec![pve1, pve2],
            vec![
                last_reported(res("vm:c/100", "pve1", "proxmox"), 15 * MIN),
                last_reported(res("node:pve2", "pve2", "host"), 20 * MIN),
            ],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                ("agent:pve1", "collector-silent:proxmox", Severity::Warning),
                ("agent:pve2", "agent-no-data", Severity::Warning),
            ]
        );
        assert!(
            found[0]
                .evidence
                .contains("15 min before the agent's newest")
        );
        assert!(found[1].description.contains("clock"));
    }

    #[test]
    fn resources_that_stopped_reporting() {
        let mut stale_resent = res("storage:pve1/nfs", "pve1", "proxmox");
        attr(&mut stale_resent, "stale", json!(true));
        // Known only from samples another agent keeps sending.
        let mut from_samples = last_reported(res("vm:c/102", "pve1", "proxmox"), 2 * H);
        sample(&mut from_samples, metric::GUEST_MEM_USED_BYTES, RUN, 1e9);
        let s = snap(
            vec![agent("pve1", &["host", "proxmox"])],
            vec![
                last_reported(res("vm:c/100", "pve1", "proxmox"), 15 * MIN),
                last_reported(res("vm:c/101", "pve1", "proxmox"), 15 * MIN - 1),
                last_reported(res("pod:k/shop/web-1", "pve1", "proxmox"), DAY),
                last_reported(res("disk:pve1/sdb", "pve1", "proxmox"), 3 * H),
                stale_resent,
                from_samples,
                // An agent this organisation does not know.
                last_reported(res("vm:c/900", "ghost", "proxmox"), DAY),
            ],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                ("vm:c/100", "stopped-reporting", Severity::Warning),
                ("disk:pve1/sdb", "stopped-reporting", Severity::Warning),
            ]
        );
        assert_eq!(found[0].category, Category::Reliability);
        assert!(
            found[0]
                .evidence
                .contains("15 min before its collector's latest run"),
            "{}",
            found[0].evidence
        );
        assert!(found[1].recommendation.contains("dmesg"));
    }

    #[test]
    fn many_stopped_resources_of_one_collector_are_one_finding() {
        let resources: Vec<ResourceRecord> = (0..30)
            .map(|g| last_reported(res(&format!("vm:c/{g}"), "pve1", "proxmox"), H))
            .collect();
        let s = snap(vec![agent("pve1", &["host", "proxmox"])], resources);
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [("agent:pve1", "stopped-reporting:proxmox", Severity::Warning)]
        );
        assert!(
            found[0].evidence.starts_with("30 resources (30 vm)")
                && found[0].evidence.ends_with("and 25 more"),
            "{}",
            found[0].evidence
        );
        let cfg = SilenceConfig {
            stopped_reporting_max_findings: 30,
            ..SilenceConfig::default()
        };
        assert_eq!(detect(&s, &cfg).len(), 30);
    }

    #[test]
    fn backups_whose_age_stopped_being_updated() {
        let backup = |id: &str, frozen: &[(&str, i64, f64)]| {
            let mut r = res(id, "pve1", "proxmox");
            for (storage, ago, value) in frozen {
                let m = metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", storage);
                sample(&mut r, &m, RUN - ago, *value);
            }
            r
        };
        let mut gone = last_reported(backup("lxc:c/103", &[]), 20 * MIN);
        sample(
            &mut gone,
            &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", "pbs"),
            RUN - 3 * H,
            60.0,
        );
        let s = snap(
            vec![agent("pve1", &["host", "proxmox"])],
            vec![
                backup("vm:c/100", &[("pbs", 2 * H, 3.0 * 3600.0)]),
                backup("vm:c/101", &[("pbs", 2 * H - 1, 3.0 * 3600.0)]),
                backup("vm:c/102", &[("pbs", 5 * H, 60.0), ("nfs", 0, 7200.0)]),
                gone,
                backup("vm:c/104", &[]),
            ],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                ("vm:c/100", "backup-not-running", Severity::Warning),
                ("lxc:c/103", "stopped-reporting", Severity::Warning),
            ]
        );
        let d = &found[0];
        assert_eq!(d.category, Category::Backup);
        assert_eq!(d.title, "100: backup status not updated for 2 h");
        assert!(
            d.evidence.contains("on storage pbs")
                && d.evidence.contains("it said 3 h")
                && d.evidence.ends_with("at least 5 h by now"),
            "{}",
            d.evidence
        );
    }

    #[test]
    fn pbs_jobs_that_stopped_running() {
        let job = |r: &mut ResourceRecord, job: &str, ago: i64, age_s: f64, ok: f64| {
            sample(
                r,
                &metric::labelled(metric::JOB_LAST_RUN_AGE_SECONDS, "job", job),
                RUN - ago,
                age_s,
            );
            sample(
                r,
                &metric::labelled(metric::JOB_LAST_OK, "job", job),
                RUN - ago,
                ok,
            );
            attr(r, &format!("{job}_last_state"), json!("OK"));
        };
        let mut store = res("pbs-datastore:pbs1/store1", "pbs1", "pbs");
        store.status = "available".into();
        job(&mut store, "gc", 0, 9.0 * 86_400.0, 1.0);
        job(&mut store, "sync/s1", 0, 86_400.0, 1.0);
        // Six days old two days ago: eight now.
        job(&mut store, "verify/v1", 2 * DAY, 6.0 * 86_400.0, 1.0);
        // Removed since: no longer in the datastore's attributes.
        job(&mut store, "prune/p1", 0, 20.0 * 86_400.0, 1.0);
        store.attrs.remove("prune/p1_last_state");
        // Failed: the heuristics report it.
        job(&mut store, "sync/s2", 0, 20.0 * 86_400.0, 0.0);
        let mut resting = res("pbs-datastore:pbs1/store2", "pbs1", "pbs");
        resting.status = "maintenance".into();
        job(&mut resting, "gc", 0, 30.0 * 86_400.0, 1.0);
        let s = snap(vec![agent("pbs1", &["host", "pbs"])], vec![store, resting]);
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                (
                    "pbs-datastore:pbs1/store1",
                    "pbs-gc-not-running",
                    Severity::Warning
                ),
                (
                    "pbs-datastore:pbs1/store1",
                    "pbs-verify/v1-not-running",
                    Severity::Warning
                ),
            ]
        );
        assert_eq!(found[0].title, "store1: gc has not run for 9 d");
        assert!(
            found[0]
                .recommendation
                .contains("garbage-collection start store1")
        );
        assert!(
            found[1]
                .evidence
                .contains("8 d by the datastore's latest report")
        );
    }

    #[test]
    fn replications_that_stopped_syncing() {
        let job = |id: &str, status: &str, schedule: Option<&str>, synced: Option<i64>| {
            let mut r = res(id, "pve1", "proxmox");
            r.status = status.into();
            r.latest.clear();
            if let Some(s) = schedule {
                attr(&mut r, "schedule", json!(s));
            }
            if let Some(ago) = synced {
                attr(&mut r, "last_sync", json!((RUN - ago) / 1000));
                attr(&mut r, "next_sync", json!((RUN - ago) / 1000 + 900));
            }
            r
        };
        let s = snap(
            vec![agent("pve1", &["host", "proxmox"])],
            vec![
                job("replication:c/100-0", "ok", Some("*/15"), Some(30 * MIN)),
                job(
                    "replication:c/101-0",
                    "ok",
                    Some("*/15"),
                    Some(30 * MIN - S),
                ),
                job("replication:c/102-0", "failing", Some("*/15"), Some(DAY)),
                job("replication:c/103-0", "disabled", Some("*/15"), Some(DAY)),
                job("replication:c/104-0", "pending", Some("*/15"), None),
                job("replication:c/105-0", "syncing", Some("whenever"), Some(H)),
                job("replication:c/106-0", "ok", Some("*/5"), Some(15 * MIN)),
                job("replication:c/107-0", "ok", Some("*/5"), Some(14 * MIN)),
            ],
        );
        let found = found(&s);
        assert_eq!(
            keys(&found),
            [
                (
                    "replication:c/100-0",
                    "replication-stale",
                    Severity::Warning
                ),
                (
                    "replication:c/105-0",
                    "replication-stale",
                    Severity::Warning
                ),
                (
                    "replication:c/106-0",
                    "replication-stale",
                    Severity::Warning
                ),
            ]
        );
        assert!(
            found[0]
                .evidence
                .contains("schedule */15 (every 15 min at most) x 2 = 30 min"),
            "{}",
            found[0].evidence
        );
        assert!(found[0].evidence.contains("next_sync"));
        assert!(
            found[1]
                .evidence
                .contains("not understood; default limit 60 min")
        );
    }

    #[test]
    fn schedules_read_as_their_longest_gap() {
        let cases = [
            ("*/15", Some(900)),
            ("*/5", Some(300)),
            ("hourly", Some(3600)),
            ("15", Some(3600)),
            ("0,30", Some(3600)),
            ("*:0/30", Some(1800)),
            ("*/2:00", Some(7200)),
            ("2:30", Some(86_400)),
            ("daily", Some(86_400)),
            ("mon..fri 22:00", Some(7 * 86_400)),
            ("sat 01:00", Some(7 * 86_400)),
            ("2024-01-01 00:00", None),
            ("whenever", None),
            ("", None),
        ];
        for (spec, want) in cases {
            assert_eq!(schedule_interval_s(spec), want, "{spec}");
        }
    }

    #[test]
    fn settings_json_defaults_checks_and_zero_turns_a_rule_off() {
        let v = serde_json::to_value(SilenceConfig::default()).unwrap();
        let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "agent_critical_after_s",
                "agent_silent_after_s",
                "backup_stale_after_s",
                "collector_critical_after_s",
                "collector_failing_after_s",
                "collector_silent_after_s",
                "pbs_job_max_age_s",
                "replication_default_max_age_s",
                "replication_min_age_s",
                "replication_schedule_factor",
                "resource_silent_after_s",
                "stopped_reporting_ignore_kinds",
                "stopped_reporting_max_findings",
            ]
        );
        let partial: SilenceConfig =
            serde_json::from_value(json!({"agent_silent_after_s": 600})).unwrap();
        assert_eq!(partial.agent_silent_after_s, 600);
        assert_eq!(partial.agent_critical_after_s, 1800);
        assert!(serde_json::from_value::<SilenceConfig>(json!({"agent_silent_s": 1})).is_err());
        assert!(
            serde_json::from_value::<SilenceConfig>(json!({"agent_silent_after_s": -1})).is_err()
        );

        let mut problems = Vec::new();
        SilenceConfig::default().check("silence", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = SilenceConfig {
            agent_critical_after_s: 60,
            replication_schedule_factor: 0.5,
            stopped_reporting_max_findings: 0,
            ..SilenceConfig::default()
        };
        bad.check("silence", &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("silence.agent_critical_after_s (60)"));

        let mut s = healthy();
        s.agents[0].last_seen_ms = Some(NOW - DAY);
        let off = SilenceConfig {
            agent_silent_after_s: 0,
            collector_silent_after_s: 0,
            ..SilenceConfig::default()
        };
        assert!(detect(&s, &off).is_empty());
        let never_critical = SilenceConfig {
            agent_critical_after_s: 0,
            ..SilenceConfig::default()
        };
        assert_eq!(
            keys(&detect(&s, &never_critical)),
            [("agent:pve1", "agent-silent", Severity::Warning)]
        );
    }

    #[test]
    fn durations_and_times_for_people() {
        assert_eq!(dur(45 * S), "45 s");
        assert_eq!(dur(17 * MIN + 59 * S), "17 min");
        assert_eq!(dur(5 * H + 12 * MIN), "5 h 12 min");
        assert_eq!(dur(3 * DAY + 4 * H), "3 d 4 h");
        assert_eq!(dur(-5), "0 s");
        assert_eq!(at(1_800_000_000_123), "2027-01-15T08:00:00Z");
    }
}
