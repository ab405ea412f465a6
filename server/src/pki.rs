//! The server's certificate authority: created on first start in the data directory,
//! it signs the server's QUIC certificate and the agents' short-lived client certificates.
//!
//! Invariants: key files are written 0600 and refused on load if group/world readable;
//! an agent CSR is never signed as-is (only its public key is used; names, CA flag and
//! usages come from the server's own record); every certificate gets explicit validity
//! and a random serial.

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

const CA_KEY: &str = "ca.key";
const CA_CERT: &str = "ca.pem";

/// The loaded CA.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
}

/// A certificate the CA signed for an agent.
pub struct AgentCert {
    /// PEM certificate.
    pub pem: String,
    /// Serial, hex.
    pub serial: String,
    /// Expiry, seconds since the epoch.
    pub not_after_unix: i64,
}

impl Pki {
    /// Loads the CA from `dir`, creating it on first start.
    ///
    /// # Errors
    /// Unreadable or insecure key files, or a damaged certificate.
    pub fn load_or_create(dir: &Path, now: OffsetDateTime) -> anyhow::Result<Self> {
        let key_path = dir.join(CA_KEY);
        let cert_path = dir.join(CA_CERT);
        if key_path.exists() {
            warden_io::fs::check_private(&key_path)?;
            let key_pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            let ca_pem = std::fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            let key = KeyPair::from_pem(&key_pem)
                .with_context(|| format!("parsing CA key {}", key_path.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
                .with_context(|| format!("parsing CA certificate {}", cert_path.display()))?;
            let ca_der = pem_to_der(&ca_pem)
                .with_context(|| format!("parsing CA certificate {}", cert_path.display()))?;
            return Ok(Self {
                issuer,
                ca_der,
                ca_pem,
            });
        }
        let key = KeyPair::generate().context("generating CA key")?;
        let mut params = CertificateParams::default();
        // A unique name per CA, so a certificate from another Warden CA is "unknown CA"
        // rather than a signature mismatch against a same-named issuer.
        let name = format!("Warden CA {}", hex::encode(rand::random::<[u8; 4]>()));
        params.distinguished_name = dn(&name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + Duration::from_secs(20 * 365 * 86_400);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).context("self-signing CA")?;
        warden_io::fs::write_private(&key_path, key.serialize_pem().as_bytes())?;
        warden_io::fs::write_atomic(&cert_path, cert.pem().as_bytes())?;
        let ca_pem = cert.pem();
        let ca_der = cert.der().clone();
        Ok(Self {
            issuer: Issuer::new(params, key),
            ca_der,
            ca_pem,
        })
    }

    /// SHA-256 of the CA certificate; join tokens pin it.
    pub fn fingerprint(&self) -> [u8; 32] {
        warden_shared::token::fingerprint(&self.ca_der)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A fresh server certificate (chain leaf + CA) and key for the QUIC listener.
    ///
    /// # Errors
    /// Key generation or signing failure.
    pub fn server_identity(
        &self,
        extra_names: &[String],
        now: OffsetDateTime,
    ) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate().context("generating server key")?;
        let mut names = vec![warden_shared::SERVER_NAME.to_owned()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names).context("server certificate names")?;
        params.distinguished_name = dn(warden_shared::SERVER_NAME, None);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + Duration::from_secs(365 * 86_400);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing server certificate")?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.ca_der.clone()], key_der))
    }

    /// Signs a client certificate for `agent_id` in `org_id` over the CSR's public key.
    /// Everything but the public key is taken from the arguments, never from the CSR.
    ///
    /// # Errors
    /// A CSR that does not parse or whose signature is wrong.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        agent_id: &str,
        org_id: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> anyhow::Result<AgentCert> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| anyhow::anyhow!("certificate request is invalid: {e}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(agent_id, Some(org_id));
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - Duration::from_secs(300);
        let not_after = now + ttl;
        params.not_after = not_after;
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .context("signing agent certificate")?;
        Ok(AgentCert {
            pem: cert.pem(),
            serial: serial_hex,
            not_after_unix: not_after.unix_timestamp(),
        })
    }
}

/// The identity named in a verified agent certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Common name: the agent id.
    pub agent_id: String,
    /// Organisation.
    pub org_id: String,
    /// Serial, hex.
    pub serial: String,
}

/// Reads agent id, org and serial from a DER certificate that rustls already verified.
///
/// # Errors
/// If the certificate does not parse or lacks the names.
pub fn peer_identity(der: &[u8]) -> anyhow::Result<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("bad certificate: {e}"))?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    let agent_id = first(&mut subject.iter_common_name()).context("certificate has no CN")?;
    let org_id = first(&mut subject.iter_organization()).context("certificate has no O")?;
    let serial = hex::encode(cert.raw_serial());
    if agent_id.is_empty() || org_id.is_empty() {
        bail!("certificate names are empty");
    }
    Ok(PeerIdentity {
        agent_id,
        org_id,
        serial,
    })
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Keep the serial positive and non-zero in DER.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn pem_to_der(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_only_the_public_key_and_names_from_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let pki = Pki::load_or_create(dir.path(), now).unwrap();
        // A hostile CSR asking to be a CA with another name.
        let key = KeyPair::generate().unwrap();
        let mut req = CertificateParams::new(vec!["evil".to_owned()]).unwrap();
        req.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        req.distinguished_name = dn("admin", Some("other-org"));
        let csr = req.serialize_request(&key).unwrap().pem().unwrap();
        let cert = pki
            .sign_agent(&csr, "agt-1", "default", Duration::from_secs(60), now)
            .unwrap();
        let der = pem_to_der(&cert.pem).unwrap();
        let id = peer_identity(&der).unwrap();
        assert_eq!(
            (id.agent_id.as_str(), id.org_id.as_str()),
            ("agt-1", "default")
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!parsed.is_ca());
        assert_eq!(parsed.validity().not_after.timestamp(), cert.not_after_unix);
        // Reload keeps the same CA.
        let again = Pki::load_or_create(dir.path(), now).unwrap();
        assert_eq!(again.fingerprint(), pki.fingerprint());
        assert!(
            pki.sign_agent("garbage", "a", "b", Duration::from_secs(1), now)
                .is_err()
        );
    }
}
