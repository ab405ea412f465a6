//! Warden watching itself: the disk that holds its own store (raised before telemetry is
//! refused, and while writes fail), and agent identities that two live processes presented
//! (a copied key and certificate). Pure: a function of the snapshot.

use super::snapshot::Snapshot;
use crate::model::finding::{Category, Detection, Severity};
use crate::model::{AgentRecord, ResourceRecord};
use crate::store::disk::bytes;
use warden_shared::resource::{ResourceKind, canonical};

/// Share of the disk in use from which the store's disk is a warning.
const DISK_WARNING_PCT: f64 = 90.0;
/// How long a refused second process keeps the identity finding open.
const CONFLICT_MEMORY_MS: i64 = 24 * 3_600_000;

/// Findings about Warden itself.
pub fn detect(s: &Snapshot) -> Vec<Detection> {
    let mut out: Vec<Detection> = s
        .agents
        .iter()
        .filter_map(|a| conflict(a, s.now_ms))
        .collect();
    out.extend(store_disk(s));
    out
}

fn store_disk(s: &Snapshot) -> Option<Detection> {
    let status = s.store.as_ref()?;
    let server = ResourceRecord {
        id: canonical::server().ok()?.into(),
        kind: ResourceKind::Server.prefix().to_owned(),
        name: "warden".to_owned(),
        ..ResourceRecord::default()
    };
    let path = status.path.display().to_string();
    let mut d = Detection::on(
        &server,
        "warden-disk",
        Severity::Critical,
        Category::Capacity,
    );
    if let Some(f) = &status.failure {
        d.category = Category::Reliability;
        d.title = "Warden cannot write its store".into();
        d.description = format!(
            "A write to {path} failed, so telemetry, settings and audit events are refused \
             (503) until the store is reopened; agents keep their data in their spools."
        );
        d.recommendation = "Free space on that disk (or fix the device); Warden reopens the \
                            store by itself within seconds and agents replay their spools."
            .into();
        d.evidence = f.reason.clone();
        return Some(d);
    }
    let space = status.space?;
    let used = space.used_pct();
    let evidence = format!(
        "{} free of {} ({used:.1} % used) on the disk holding {path}; audit reserve {}",
        bytes(space.free),
        bytes(space.total),
        bytes(status.reserve)
    );
    if space.free < status.reserve {
        d.title = "Warden refuses telemetry: its disk is below the audit reserve".into();
        d.description = "The disk holding Warden's store has less free space than the reserve \
                         kept for the audit log, so agents' telemetry is refused and waits in \
                         their spools."
            .into();
    } else if space.free < status.reserve.saturating_mul(2) || used >= DISK_WARNING_PCT {
        d.severity = Severity::Warning;
        d.title = "Warden's disk is nearly full".into();
        d.description = "The disk holding Warden's store is close to the reserve kept for the \
                         audit log; below it, telemetry is refused."
            .into();
    } else {
        return None;
    }
    d.recommendation = "Free space on that disk or grow it; shorten the audit retention or \
                        move the data directory to a larger disk."
        .into();
    d.evidence = evidence;
    Some(d)
}

fn conflict(a: &AgentRecord, now_ms: i64) -> Option<Detection> {
    let c = a.identity_conflict.as_ref()?;
    if now_ms - c.last_ms > CONFLICT_MEMORY_MS {
        return None;
    }
    let mut d = super::silence::on_agent(a, "agent-identity-conflict", Severity::Critical);
    d.category = Category::Security;
    d.title = format!("Two processes use the identity of agent {}", a.id);
    d.description = format!(
        "While agent {} was connected from {}, another process presented the same key and \
         certificate from {} and was refused. A copied data directory (a cloned VM or \
         container) or a stolen key does this.",
        a.id, c.connected_from, c.refused_from
    );
    d.recommendation = format!(
        "Find the host at {}: if it is a clone, delete its agent data directory and enroll it \
         with its own join token. If you cannot account for it, revoke the agent \
         (`warden agent revoke {}`) and enroll the real host again.",
        c.refused_from, a.id
    );
    d.evidence = format!(
        "{} connection(s) refused, the last from {}; the connected session is from {}",
        c.refused, c.refused_from, c.connected_from
    );
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreStatus;
    use crate::store::disk::{DiskSpace, Failure};

    const NOW: i64 = 1_800_000_000_000;
    const MIB: u64 = 1 << 20;

    fn snap(free: u64, failure: Option<&str>) -> Snapshot {
        Snapshot {
            now_ms: NOW,
            store: Some(StoreStatus {
                path: "/var/lib/warden/warden.redb".into(),
                space: Some(DiskSpace {
                    total: 1000 * MIB,
                    free,
                }),
                reserve: 20 * MIB,
                failure: failure.map(|r| Failure {
                    reason: r.into(),
                    since_ms: NOW,
                }),
            }),
            ..Snapshot::default()
        }
    }

    fn severity(s: &Snapshot) -> Option<Severity> {
        let found = detect(s);
        assert!(found.len() <= 1);
        found.first().map(|d| d.severity)
    }

    #[test]
    fn the_store_disk_is_raised_before_it_is_full() {
        assert_eq!(severity(&snap(500 * MIB, None)), None);
        // Under twice the reserve, or 90 % used: a warning while telemetry still flows.
        assert_eq!(severity(&snap(39 * MIB, None)), Some(Severity::Warning));
        assert_eq!(severity(&snap(95 * MIB, None)), Some(Severity::Warning));
        // Below the reserve telemetry is refused: critical.
        let s = snap(10 * MIB, None);
        assert_eq!(severity(&s), Some(Severity::Critical));
        let d = &detect(&s)[0];
        assert!(
            d.evidence.contains("/var/lib/warden/warden.redb"),
            "{}",
            d.evidence
        );
        assert_eq!(d.resource_id, canonical::server().unwrap().as_str());
        // A failed write is critical whatever the free space says, with the OS error.
        let s = snap(500 * MIB, Some("cannot write x: No space left on device"));
        let d = &detect(&s)[0];
        assert_eq!(d.severity, Severity::Critical);
        assert!(d.evidence.contains("No space left"));
    }

    #[test]
    fn a_refused_copy_of_an_identity_is_a_critical_security_finding_for_a_day() {
        let mut a = AgentRecord {
            id: "web-1-abc".into(),
            org_id: "default".into(),
            hostname: "web-1".into(),
            version: String::new(),
            enrolled_at_ms: 0,
            revoked_at_ms: None,
            cert_serial: String::new(),
            cert_not_after_unix: 0,
            last_seen_ms: None,
            protocol: None,
            dropped_samples: 0,
            collectors: Default::default(),
            identity_conflict: None,
        };
        let mut s = Snapshot {
            now_ms: NOW,
            agents: vec![a.clone()],
            ..Snapshot::default()
        };
        assert!(detect(&s).is_empty());
        a.identity_conflict = Some(crate::model::IdentityConflict {
            last_ms: NOW - 60_000,
            first_ms: NOW - 120_000,
            refused: 3,
            connected_from: "10.0.0.5:4000".into(),
            refused_from: "10.0.0.9:5000".into(),
        });
        s.agents = vec![a.clone()];
        let found = detect(&s);
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!(
            (d.severity, d.category, d.resource_id.as_str()),
            (Severity::Critical, Category::Security, "agent:web-1-abc")
        );
        assert!(d.recommendation.contains("10.0.0.9:5000"));
        assert!(d.evidence.contains("3 connection(s) refused"));
        s.now_ms = NOW + CONFLICT_MEMORY_MS;
        assert!(
            detect(&s).is_empty(),
            "forgotten after a day without refusals"
        );
    }
}
