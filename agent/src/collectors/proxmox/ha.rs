//! HA-managed guests (`/cluster/ha/status/current`, read by the reporter): their `ha_state`
//! attribute.

use super::cluster::ClusterView;
use crate::collectors::Collected;
use serde::Deserialize;
use warden_shared::resource::{ResourceKind, canonical};
use warden_shared::telemetry::Value;

#[derive(Deserialize)]
pub(super) struct HaEntry {
    #[serde(rename = "type")]
    kind: String,
    sid: Option<String>,
    state: Option<String>,
}

/// HA-managed guests get an `ha_state` attribute (`started`, `fence`, `error`, ...);
/// guests without one are not HA-managed.
pub(super) fn ha_states(out: &mut Collected, view: &ClusterView, entries: &[HaEntry]) {
    for e in entries.iter().filter(|e| e.kind == "service") {
        let Some((kind, vmid)) = e.sid.as_deref().and_then(|s| s.split_once(':')) else {
            continue;
        };
        let kind = match kind {
            "vm" => ResourceKind::Vm,
            "ct" => ResourceKind::SystemContainer,
            _ => continue,
        };
        let Some(id) = vmid
            .parse()
            .ok()
            .and_then(|v| canonical::guest(kind, &view.cluster, v).ok())
        else {
            continue;
        };
        if let Some(r) = out.resources.iter_mut().find(|r| r.id == id) {
            r.attrs
                .push(("ha_state".into(), Value::from(e.state.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::proxmox::tests::*;
    use warden_shared::telemetry::Resource;

    #[test]
    fn ha_services_mark_their_guests() {
        let ha: Vec<HaEntry> = fixture("ha_status_current.pve9.2_maintenance.json");
        let view = ClusterView {
            cluster: "c".into(),
            nodes: vec![],
            reporter: None,
            quorate: None,
            standalone: false,
        };
        let mut out = Collected::default();
        out.resources.push(Resource {
            id: canonical::guest(ResourceKind::Vm, "c", 100).unwrap(),
            name: "g".into(),
            parent: None,
            status: "running".into(),
            attrs: vec![],
        });
        ha_states(&mut out, &view, &ha);
        assert_eq!(
            out.resources[0].attrs,
            vec![("ha_state".into(), Value::from("started"))]
        );
    }
}
