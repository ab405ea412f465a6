//! Docker rules: containers restarting, OOM-killed or unhealthy.

use super::text;
use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity};
use crate::patrol::snapshot::Snapshot;
use warden_shared::metric;

/// A container restarting this often within an hour is a finding.
const RESTARTS_PER_HOUR: f64 = 3.0;
/// This often, it is down more than it runs: critical.
const RESTARTS_CRITICAL_PER_HOUR: f64 = 10.0;

pub(super) fn container(s: &Snapshot, r: &ResourceRecord, out: &mut Vec<Detection>) {
    let in_hour = s
        .history
        .get(&(r.id.clone(), metric::RESTART_COUNT.to_owned()))
        .and_then(|p| {
            let since = s.now_ms - 3_600_000;
            let recent: Vec<f64> = p.iter().filter(|x| x.0 >= since).map(|x| x.1).collect();
            Some(recent.last()? - recent.first()?)
        })
        .unwrap_or(0.0);
    let oom = r.attrs.get("oom_killed") == Some(&serde_json::Value::Bool(true));
    let unhealthy = text(r, "health") == Some("unhealthy");
    let (key, title, evidence) = if in_hour >= RESTARTS_PER_HOUR {
        (
            "container-restarts",
            format!("{} restarted {in_hour:.0} times in the last hour", r.name),
            format!("restart_count +{in_hour:.0} in 60 min (>= {RESTARTS_PER_HOUR:.0})"),
        )
    } else if oom {
        (
            "container-oom",
            format!("{} was OOM-killed", r.name),
            "oom_killed = true".to_owned(),
        )
    } else if unhealthy {
        (
            "container-unhealthy",
            format!("{} is unhealthy", r.name),
            "health = unhealthy".to_owned(),
        )
    } else {
        return;
    };
    let severity = if in_hour >= RESTARTS_CRITICAL_PER_HOUR {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut d = Detection::on(r, key, severity, Category::Reliability);
    d.title = title;
    d.description = format!(
        "Container {} on {}: {}.",
        r.name,
        d.node.clone().unwrap_or_default(),
        d.title
    );
    d.recommendation = "Read the container's log (`docker logs`); for OOM kills raise its memory \
                        limit or fix the leak; for failing health checks check what the check \
                        tests."
        .into();
    d.evidence = evidence;
    out.push(d);
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::{Thresholds, detect};
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_container_restarting_ten_times_an_hour_is_critical() {
        let mut s = Snapshot {
            now_ms: NOW,
            resources: vec![
                record("docker:h/flappy", "running"),
                record("docker:h/dead", "running"),
            ],
            ..Snapshot::default()
        };
        series(&mut s, "docker:h/flappy", metric::RESTART_COUNT, 60, |m| {
            (m / 15) as f64
        });
        series(&mut s, "docker:h/dead", metric::RESTART_COUNT, 60, |m| {
            (m / 5) as f64
        });
        let found = detect(&s, &Thresholds::default(), &BTreeMap::new());
        assert_eq!(
            sev(&found, "docker:h/flappy", "container-restarts"),
            Some(Severity::Warning)
        );
        assert_eq!(
            sev(&found, "docker:h/dead", "container-restarts"),
            Some(Severity::Critical)
        );
    }
}
