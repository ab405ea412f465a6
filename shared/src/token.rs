//! Join tokens: one-time, expiring secrets that also tell the agent where the server is
//! and which CA to trust (by SHA-256 fingerprint of the CA certificate's DER).
//!
//! Text form: `wdn1_` followed by unpadded base64url of the postcard-encoded
//! [`JoinToken`]. The server stores only the SHA-256 of the secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const PREFIX: &str = "wdn1_";

/// Why a token string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a Warden join token at all.
    #[error("not a warden join token (expected it to start with {PREFIX})")]
    Prefix,
    /// The body is damaged.
    #[error("join token is damaged or incomplete; copy it again from `warden token create`")]
    Damaged,
}

/// The contents of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// Public id of the token; the server looks the secret up by it.
    pub id: String,
    /// The secret.
    pub secret: [u8; 32],
    /// SHA-256 of the server CA certificate (DER).
    pub ca_fingerprint: [u8; 32],
    /// QUIC addresses (`host:port`) the agent may use.
    pub addrs: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub expires_unix: i64,
}

impl JoinToken {
    /// Text form for the operator to copy.
    pub fn encode(&self) -> String {
        // Serializing plain fixed-size data into a Vec cannot fail.
        let bytes = postcard::to_stdvec(self).unwrap_or_default();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses the text form (surrounding whitespace is ignored).
    ///
    /// # Errors
    /// [`TokenError`] if the prefix or body is wrong.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let body = s.trim().strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Damaged)?;
        let (tok, rest): (Self, _) =
            postcard::take_from_bytes(&bytes).map_err(|_| TokenError::Damaged)?;
        if !rest.is_empty() {
            return Err(TokenError::Damaged);
        }
        Ok(tok)
    }

    /// SHA-256 of the secret, as stored by the server.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }
}

/// SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Fingerprint as colon-free lowercase hex, for display.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    hex::encode(fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let t = JoinToken {
            id: "abc".into(),
            secret: [7; 32],
            ca_fingerprint: [9; 32],
            addrs: vec!["127.0.0.1:4433".into()],
            expires_unix: 1_800_000_000,
        };
        let s = t.encode();
        assert!(s.starts_with(PREFIX));
        assert_eq!(JoinToken::parse(&format!("  {s}\n")).unwrap(), t);
        assert_eq!(JoinToken::parse("hello"), Err(TokenError::Prefix));
        assert_eq!(
            JoinToken::parse(&s[..s.len() - 4]),
            Err(TokenError::Damaged)
        );
        assert_ne!(t.secret_hash(), [0; 32]);
    }
}
