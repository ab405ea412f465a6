//! The node's certificates (`/nodes/{node}/certificates/info`, read hourly) and the time
//! each has left, sent every run.

use super::ProxmoxCollector;
use super::api::{label_value, num};
use super::slow::{Budget, SlowRead, SlowReads};
use crate::collectors::Collected;
use serde::Deserialize;
use warden_shared::ResourceId;
use warden_shared::metric;

/// How often the node's certificates are read.
const CERTS_EVERY_MS: i64 = 3_600_000;

/// One entry of `/nodes/{node}/certificates/info` (pve-common `PVE::Certificate`).
#[derive(Deserialize)]
struct CertInfo {
    /// `pve-root-ca.pem`, `pve-ssl.pem` or `pveproxy-ssl.pem`.
    filename: Option<String>,
    /// Expiry, epoch seconds.
    #[serde(default, deserialize_with = "num")]
    notafter: Option<f64>,
}

impl ProxmoxCollector {
    /// The node's certificates: read once an hour, and every run the time each has left
    /// according to the last answer, as `cert_expires_in_seconds{file="…"}` on the node.
    pub(super) async fn certificates(
        &mut self,
        out: &mut Collected,
        slow: &mut SlowReads,
        budget: &Budget,
        node_id: &ResourceId,
        now_ms: i64,
    ) {
        if slow.is_due(&SlowRead::Certificates, now_ms) {
            let path = format!("/nodes/{}/certificates/info", self.node);
            match budget.run(self.api.get::<Vec<CertInfo>>(&path)).await {
                // Out of time: the next run reads them.
                None => {}
                Some(Ok(certs)) => {
                    slow.certs = certs
                        .into_iter()
                        .filter_map(|c| Some((label_value(&c.filename?), c.notafter?)))
                        .collect();
                    slow.due
                        .insert(SlowRead::Certificates, now_ms + CERTS_EVERY_MS);
                }
                Some(Err(e)) => out.problems.push(e.to_string()),
            }
        }
        let now_s = now_ms as f64 / 1000.0;
        for (file, not_after) in &slow.certs {
            out.sample(
                node_id,
                metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", file),
                now_ms,
                not_after - now_s,
            );
        }
    }
}
