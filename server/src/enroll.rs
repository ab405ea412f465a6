//! Enrollment: redeems a one-time join token for a client certificate signed by the CA,
//! and creates join tokens.
//!
//! The token is checked, and marked used, in the same store transaction that creates the
//! agent; a refused enrollment writes nothing. The token secret is never logged.

use crate::chain::event::{Actor, NewEvent};
use crate::context::Context;
use crate::model::{AgentRecord, TokenRecord, TokenRefusal};
use crate::store::Store;
use std::time::Duration;
use tracing::{info, warn};
use warden_io::framed;
use warden_shared::close;
use warden_shared::proto::{EnrollRequest, EnrollResponse};
use warden_shared::token::JoinToken;

/// Creates and stores a join token.
///
/// # Errors
/// Store failures.
pub fn create_token(
    store: &Store,
    ca_fingerprint: [u8; 32],
    addrs: Vec<String>,
    org_id: &str,
    ttl: Duration,
    now_ms: i64,
) -> anyhow::Result<JoinToken> {
    let token = JoinToken {
        id: hex::encode(rand::random::<[u8; 8]>()),
        secret: rand::random(),
        ca_fingerprint,
        addrs,
        expires_unix: now_ms / 1000 + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
    };
    store.insert_token(&TokenRecord {
        id: token.id.clone(),
        org_id: org_id.to_owned(),
        secret_hash: token.secret_hash(),
        created_at_ms: now_ms,
        expires_unix: token.expires_unix,
        used_at_ms: None,
        used_by: None,
        revoked_at_ms: None,
    })?;
    Ok(token)
}

/// Serves one enrollment connection.
pub async fn serve(conn: quinn::Connection, shared: &Context) {
    let answer = match tokio::time::timeout(Duration::from_secs(15), exchange(&conn, shared)).await
    {
        Ok(Ok(())) => return,
        Ok(Err(err)) => err.to_string(),
        Err(_) => "enrollment timed out".to_owned(),
    };
    warn!(reason = %answer, "enrollment failed");
    conn.close(close::ENROLL_REFUSED.into(), answer.as_bytes());
}

async fn exchange(conn: &quinn::Connection, shared: &Context) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let req: EnrollRequest = framed::read(&mut recv)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no enrollment request"))?;
    let token_id = JoinToken::parse(&req.token).ok().map(|t| t.id);
    let hostname = req.hostname.chars().take(64).collect::<String>();
    let response = decide(req, shared).await;
    audit(
        shared,
        conn.remote_address().ip(),
        token_id,
        &hostname,
        &response,
    )
    .await;
    if let EnrollResponse::Refused { reason } = &response {
        warn!(reason = %reason, "enrollment refused");
    }
    framed::write(&mut send, &response).await?;
    send.finish()?;
    // Let the agent read the answer and close first.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    Ok(())
}

/// Audits an enrollment: `token.use` and `agent.enroll` when accepted; a refusal as a failed
/// `agent.enroll` (rate-limited per address, since anyone can try).
async fn audit(
    shared: &Context,
    ip: std::net::IpAddr,
    token_id: Option<String>,
    hostname: &str,
    response: &EnrollResponse,
) {
    let token = token_id.unwrap_or_else(|| "-".into());
    match response {
        EnrollResponse::Accepted {
            agent_id,
            org_id,
            not_after_unix,
            ..
        } => {
            let mut used = NewEvent::new(Actor::agent(agent_id), "token.use", &token)
                .from_ip(Some(ip))
                .details(serde_json::json!({ "agent_id": agent_id }));
            used.org_id.clone_from(org_id);
            let mut enrolled = NewEvent::new(Actor::agent(agent_id), "agent.enroll", agent_id)
                .from_ip(Some(ip))
                .details(serde_json::json!({
                    "hostname": hostname,
                    "token_id": token,
                    "certificate_expires_at": crate::clock::rfc3339_ms(not_after_unix * 1000),
                }));
            enrolled.org_id.clone_from(org_id);
            shared.audit.record(used).await;
            shared.audit.record(enrolled).await;
        }
        EnrollResponse::Refused { reason } => {
            if let Some(attempts) =
                shared
                    .audit
                    .limiter()
                    .failure("enroll", Some(ip), crate::clock::now_ms())
            {
                let e = NewEvent::new(Actor::anonymous(), "agent.enroll", format!("token:{token}"))
                    .from_ip(Some(ip))
                    .failed(reason.clone())
                    .details(serde_json::json!({ "hostname": hostname, "attempts": attempts }));
                shared.audit.record(e).await;
            }
        }
    }
}

async fn decide(req: EnrollRequest, shared: &Context) -> EnrollResponse {
    let refuse = |reason: &str| EnrollResponse::Refused {
        reason: reason.to_owned(),
    };
    let token = match JoinToken::parse(&req.token) {
        Ok(t) => t,
        Err(e) => return refuse(&e.to_string()),
    };
    if token.ca_fingerprint != shared.pki.fingerprint() {
        return refuse(
            "join token was issued by a different warden server (CA fingerprint differs)",
        );
    }
    // Checked before the token is spent, so a broken request does not burn it.
    if let Err(e) = rcgen::CertificateSigningRequestParams::from_pem(&req.csr_pem) {
        return refuse(&format!("certificate request is invalid: {e}"));
    }
    let hostname: String = req
        .hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(63)
        .collect();
    if hostname.is_empty() {
        return refuse("hostname is empty or has no usable characters");
    }
    let agent_id = format!(
        "{}-{}",
        hostname.to_ascii_lowercase(),
        hex::encode(rand::random::<[u8; 3]>())
    );
    let now = time::OffsetDateTime::now_utc();
    let now_ms = crate::clock::now_ms();
    // The org comes from the token record; sign after redemption so a refused token
    // never yields a certificate.
    let store = shared.store.clone();
    let (id, secret_hash, version) = (
        token.id.clone(),
        token.secret_hash(),
        req.agent_version.clone(),
    );
    let agent = agent_id.clone();
    let host = hostname.clone();
    let redeemed = tokio::task::spawn_blocking(move || {
        store.redeem_token(&id, &secret_hash, now_ms, |tok| AgentRecord {
            id: agent,
            org_id: tok.org_id.clone(),
            hostname: host,
            version,
            enrolled_at_ms: now_ms,
            revoked_at_ms: None,
            cert_serial: String::new(),
            cert_not_after_unix: 0,
            last_seen_ms: None,
            protocol: None,
            dropped_samples: 0,
            collectors: Default::default(),
            identity_conflict: None,
        })
    })
    .await;
    let record = match redeemed {
        Ok(Ok(Ok(rec))) => rec,
        Ok(Ok(Err(refusal))) => return refuse(&refusal_message(&refusal)),
        Ok(Err(err)) => {
            warn!(error = %err, "store failed during enrollment");
            return refuse("server storage error; try again");
        }
        Err(_) => return refuse("server error; try again"),
    };
    let cert = match shared.pki.sign_agent(
        &req.csr_pem,
        &record.id,
        &record.org_id,
        shared.cert_ttl,
        now,
    ) {
        Ok(c) => c,
        Err(e) => {
            // Signing a request that parsed should not fail; if it does, the token is spent
            // and the half-made agent is revoked so it can never connect.
            let store = shared.store.clone();
            let id = record.id.clone();
            let _ = tokio::task::spawn_blocking(move || {
                store.update_agent(&id, |a| a.revoked_at_ms = Some(now_ms))
            })
            .await;
            return refuse(&e.to_string());
        }
    };
    let store = shared.store.clone();
    let (id, serial, not_after) = (record.id.clone(), cert.serial.clone(), cert.not_after_unix);
    let _ = tokio::task::spawn_blocking(move || {
        store.update_agent(&id, |a| {
            a.cert_serial = serial;
            a.cert_not_after_unix = not_after;
        })
    })
    .await;
    info!(agent_id = %record.id, org_id = %record.org_id, hostname = %record.hostname, "agent enrolled");
    EnrollResponse::Accepted {
        agent_id: record.id,
        org_id: record.org_id,
        cert_pem: cert.pem,
        ca_pem: shared.pki.ca_pem().to_owned(),
        not_after_unix: cert.not_after_unix,
    }
}

fn refusal_message(r: &TokenRefusal) -> String {
    let when = |ms: i64| crate::clock::rfc3339_ms(ms).unwrap_or_else(|| ms.to_string());
    match r {
        TokenRefusal::Unknown => "join token is not known to this server; create one with `warden token create`".into(),
        TokenRefusal::Forged => "join token is invalid (its secret does not match); create a new one with `warden token create`".into(),
        TokenRefusal::AlreadyUsed { at_ms } => format!("join token was already used at {}; tokens are one-time, create a new one with `warden token create`", when(*at_ms)),
        TokenRefusal::Revoked { at_ms } => format!("join token was revoked at {}; create a new one with `warden token create`", when(*at_ms)),
        TokenRefusal::Expired { at_unix } => format!("join token expired at {}; create a new one with `warden token create`", when(at_unix * 1000)),
    }
}
