//! The agent's identity on disk: key (0600), client certificate, the server CA it trusts
//! and what enrollment told it (agent id, organisation, server addresses).
//!
//! Layout under `<data_dir>/identity/`: `agent.key`, `agent.pem`, `ca.pem`,
//! `enrollment.json`. Every file is replaced atomically. The data and identity directories
//! are 0700.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use warden_io::fs as fsutil;

const DIR: &str = "identity";
const KEY: &str = "agent.key";
const CERT: &str = "agent.pem";
const CA: &str = "ca.pem";
const META: &str = "enrollment.json";

/// What enrollment established.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrollment {
    /// Assigned agent id.
    pub agent_id: String,
    /// Organisation.
    pub org_id: String,
    /// Server addresses from the token (or `--server`).
    pub servers: Vec<String>,
    /// When the current certificate arrived, seconds since the epoch.
    pub cert_received_unix: i64,
    /// When it expires.
    pub cert_not_after_unix: i64,
}

impl Enrollment {
    /// When to renew: two thirds into the certificate's life as seen by this agent.
    pub fn renew_at_unix(&self) -> i64 {
        let life = (self.cert_not_after_unix - self.cert_received_unix).max(0);
        self.cert_received_unix + life * 2 / 3
    }
}

/// A loaded identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Enrollment facts.
    pub meta: Enrollment,
    /// Private key, PEM.
    pub key_pem: String,
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// CA certificate, PEM.
    pub ca_pem: String,
}

/// The identity directory under `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

impl Identity {
    /// Whether an identity exists under `data_dir`.
    pub fn exists(data_dir: &Path) -> bool {
        dir(data_dir).join(META).exists()
    }

    /// Loads the identity.
    ///
    /// # Errors
    /// Not enrolled, unreadable or insecure files.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let d = dir(data_dir);
        if !Self::exists(data_dir) {
            anyhow::bail!(
                "this agent is not enrolled (no {}); run `warden-agent enroll --token TOKEN` first",
                d.join(META).display()
            );
        }
        let read = |name: &str| {
            std::fs::read_to_string(d.join(name))
                .with_context(|| format!("reading {}", d.join(name).display()))
        };
        fsutil::check_private(&d.join(KEY))?;
        let meta: Enrollment =
            serde_json::from_str(&read(META)?).context("parsing enrollment.json")?;
        Ok(Self {
            meta,
            key_pem: read(KEY)?,
            cert_pem: read(CERT)?,
            ca_pem: read(CA)?,
        })
    }

    /// Writes every file (key first, metadata last, so a crash leaves no half identity).
    ///
    /// # Errors
    /// IO failures.
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let d = dir(data_dir);
        crate::spool::private_dir(data_dir)?;
        crate::spool::private_dir(&d)?;
        fsutil::write_private(&d.join(KEY), self.key_pem.as_bytes())?;
        fsutil::write_atomic(&d.join(CERT), self.cert_pem.as_bytes())?;
        fsutil::write_atomic(&d.join(CA), self.ca_pem.as_bytes())?;
        fsutil::write_atomic(
            &d.join(META),
            serde_json::to_string_pretty(&self.meta)?.as_bytes(),
        )?;
        Ok(())
    }
}

/// A fresh key pair and a CSR for it, both PEM.
///
/// # Errors
/// Key generation failure.
pub fn new_key_and_csr(hostname: &str) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context("generating agent key")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let csr = params.serialize_request(&key).context("building CSR")?;
    Ok((key.serialize_pem(), csr.pem().context("encoding CSR")?))
}
