//! The agent's side of the QUIC transport: endpoint and connection setup, the
//! reconnect loop with jittered exponential backoff, and clear explanations of why a
//! server refused us. The session's quinn driver is in `session.rs`; its protocol logic is
//! the sans-IO machine `warden_shared::session::agent`.

pub use warden_io::framed;
pub mod session;
pub mod tls;

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::time::Duration;
use warden_shared::close;

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Delay before reconnect attempt number `attempt` (0-based): exponential from
/// [`BACKOFF_MIN`] to [`BACKOFF_MAX`], scaled by `jitter` in [0.5, 1.0] so a fleet that
/// lost its server does not come back in lockstep.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    base.mul_f64(jitter.clamp(0.5, 1.0))
}

/// Resolves `host:port` strings, in order.
///
/// # Errors
/// If none resolves.
pub async fn resolve(addrs: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for a in addrs {
        match tokio::net::lookup_host(a.as_str()).await {
            Ok(found) => out.extend(found),
            Err(e) => tracing::warn!(address = %a, error = %e, "cannot resolve server address"),
        }
    }
    if out.is_empty() {
        bail!(
            "none of the server addresses resolves: {}",
            addrs.join(", ")
        );
    }
    Ok(out)
}

/// A client endpoint suitable for `addr`'s address family.
///
/// # Errors
/// Socket failures.
pub fn endpoint_for(addr: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    quinn::Endpoint::client(bind).context("creating QUIC client endpoint")
}

/// Connects to the first reachable address.
///
/// # Errors
/// The last connection error, explained.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addrs: &[SocketAddr],
    config: &quinn::ClientConfig,
) -> anyhow::Result<quinn::Connection> {
    let mut last = None;
    for addr in addrs {
        match endpoint
            .connect_with(config.clone(), *addr, warden_shared::SERVER_NAME)?
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(anyhow::anyhow!("{addr}: {}", explain(&e))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no server address")))
}

/// Retry delay for a server refusal that says when to come back, instead of the growing
/// backoff: a full disk on the server is fixed by an operator at any moment, so the spool
/// replays within seconds of the fix; an identity in use is retried slowly.
pub fn retry_hint(e: &quinn::ConnectionError) -> Option<Duration> {
    let quinn::ConnectionError::ApplicationClosed(a) = e else {
        return None;
    };
    match u32::try_from(a.error_code.into_inner()).ok()? {
        close::STORAGE_UNAVAILABLE => Some(STORAGE_RETRY),
        close::IDENTITY_IN_USE => Some(IDENTITY_RETRY),
        _ => None,
    }
}

/// Retry delay while the server's storage is unavailable.
pub const STORAGE_RETRY: Duration = Duration::from_secs(3);
/// Retry delay while another process holds this agent's identity.
pub const IDENTITY_RETRY: Duration = Duration::from_secs(15);

/// A refusal that names its own retry delay ([`retry_hint`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// What the server said, explained.
    pub message: String,
    /// When to try again.
    pub retry: Duration,
}

/// Whether an error means the server will never accept this agent as it is.
pub fn is_auth_failure(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            (0x100..0x200).contains(&code)
        }
        quinn::ConnectionError::ApplicationClosed(a) => {
            let code = a.error_code.into_inner();
            code == u64::from(close::AGENT_REVOKED) || code == u64::from(close::CERT_REQUIRED)
        }
        _ => false,
    }
}

/// Explains a connection error for an operator.
pub fn explain(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            if (0x100..0x200).contains(&code) {
                // TLS alerts arrive as QUIC crypto errors 0x100 + alert.
                match code - 0x100 {
                    48 => "authentication failed: the server does not trust this agent's certificate (unknown CA); re-enroll with a new token".into(),
                    116 => "authentication failed: the server requires a client certificate".into(),
                    45 => "authentication failed: this agent's certificate has expired; re-enroll with a new token".into(),
                    42 | 43 | 44 | 51 => "authentication failed: the server refused this agent's certificate".into(),
                    alert => format!("tls handshake failed (alert {alert}): {}", String::from_utf8_lossy(&c.reason)),
                }
            } else {
                format!("connection closed by server: {c}")
            }
        }
        quinn::ConnectionError::ApplicationClosed(a) => {
            let code = a.error_code.into_inner();
            let reason = String::from_utf8_lossy(&a.reason);
            let what = match u32::try_from(code).unwrap_or(u32::MAX) {
                close::AGENT_REVOKED => {
                    "refused: this agent is revoked or unknown to the server; re-enroll with a new token"
                }
                close::CERT_REQUIRED => "refused: the server requires a client certificate",
                close::VERSION_MISMATCH => "refused: protocol version not supported",
                close::ENROLL_REFUSED => "enrollment refused",
                close::SHUTDOWN => "server is shutting down",
                close::REPLACED => "replaced by a newer connection of this agent",
                close::STORAGE_UNAVAILABLE => {
                    "the server cannot store telemetry now; the spool keeps it and is replayed when the server recovers"
                }
                close::IDENTITY_IN_USE => {
                    "refused: another process is connected with this agent's identity (a copied key and certificate?); give each host its own enrollment"
                }
                close::PROTOCOL_ERROR | close::FRAME_TOO_LARGE => {
                    "server reported a protocol error"
                }
                _ => "closed by server",
            };
            format!("{what} ({reason})")
        }
        quinn::ConnectionError::TimedOut => "server did not answer (timed out)".into(),
        quinn::ConnectionError::Reset => "connection reset by the server (did it restart?)".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        assert_eq!(backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(10, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(40, 0.5), BACKOFF_MAX / 2);
        assert_eq!(
            backoff(1, 0.0),
            Duration::from_secs(1),
            "jitter is clamped to at least half"
        );
    }
}
