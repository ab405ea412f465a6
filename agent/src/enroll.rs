//! `warden-agent enroll`: trades a join token for a client certificate, verifying the
//! server against the CA fingerprint pinned in the token, and saves the identity.

use crate::identity::{self, Enrollment, Identity};
use crate::transport::{self, tls};
use anyhow::{Context, anyhow, bail};
use std::path::Path;
use std::time::Duration;
use tracing::info;
use warden_io::framed;
use warden_shared::proto::{EnrollRequest, EnrollResponse};
use warden_shared::token::JoinToken;

/// Enrolls this agent and saves its identity under `data_dir`.
///
/// # Errors
/// A bad token, an unreachable or untrusted server, or a refusal (with the server's reason).
pub async fn enroll(
    data_dir: &Path,
    server: Option<&str>,
    token_text: &str,
    hostname: &str,
) -> anyhow::Result<Identity> {
    if Identity::exists(data_dir) {
        bail!(
            "this agent is already enrolled ({} exists); remove that directory to enroll again",
            identity::dir(data_dir).display()
        );
    }
    let token = JoinToken::parse(token_text)?;
    let servers: Vec<String> = match server {
        Some(s) => vec![s.to_owned()],
        None => token.addrs.clone(),
    };
    let addrs = transport::resolve(&servers).await?;
    let (config, refusal) = tls::enroll_config(token.ca_fingerprint)?;
    let endpoint = transport::endpoint_for(addrs[0])?;
    let conn = match transport::connect(&endpoint, &addrs, &config).await {
        Ok(c) => c,
        Err(e) => {
            let pinned = refusal.lock().ok().and_then(|r| r.clone());
            return Err(match pinned {
                Some(why) => anyhow!("cannot enroll: {why}"),
                None => e.context("cannot reach the server to enroll"),
            });
        }
    };
    let (key_pem, csr_pem) = identity::new_key_and_csr(hostname)?;
    let req = EnrollRequest {
        token: token_text.trim().to_owned(),
        csr_pem,
        hostname: hostname.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        framed::write(&mut send, &req).await?;
        send.finish()?;
        framed::read::<EnrollResponse>(&mut recv)
            .await?
            .ok_or_else(|| anyhow!("server sent no answer"))
    };
    let answer = tokio::time::timeout(Duration::from_secs(20), exchange).await;
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;
    let answer = match answer {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            return Err(match conn.close_reason() {
                Some(r) => anyhow!("enrollment failed: {}", transport::explain(&r)),
                None => e.context("enrollment failed"),
            });
        }
        Err(_) => bail!("enrollment timed out waiting for the server"),
    };
    match answer {
        EnrollResponse::Refused { reason } => bail!("enrollment refused by server: {reason}"),
        EnrollResponse::Accepted {
            agent_id,
            org_id,
            cert_pem,
            ca_pem,
            not_after_unix,
        } => {
            if warden_shared::token::fingerprint(&pem_der(&ca_pem)?) != token.ca_fingerprint {
                bail!("server returned a CA that does not match the token's fingerprint");
            }
            let now = transport::session::unix_now();
            let identity = Identity {
                meta: Enrollment {
                    agent_id,
                    org_id,
                    servers,
                    cert_received_unix: now,
                    cert_not_after_unix: not_after_unix,
                },
                key_pem,
                cert_pem,
                ca_pem,
            };
            identity.save(data_dir)?;
            info!(agent_id = %identity.meta.agent_id, org_id = %identity.meta.org_id, "enrolled");
            Ok(identity)
        }
    }
}

fn pem_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())
        .context("parsing CA from server")?
        .to_vec())
}
