//! TLS client configurations: mutual TLS for sessions (trusting only the enrolled CA) and
//! the pinned-fingerprint verifier used once, during enrollment.

use anyhow::Context;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_shared::{ALPN_AGENT, ALPN_ENROLL};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn quic_client(mut tls: rustls::ClientConfig, alpn: &[u8]) -> anyhow::Result<quinn::ClientConfig> {
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).context("quic tls config")?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_secs(10)))
        .max_idle_timeout(Some(Duration::from_secs(30).try_into()?));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// The session client config: our certificate, trusting only `ca_pem`.
///
/// # Errors
/// Unparsable PEM.
pub fn session_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.context("parsing CA certificate")?)?;
    }
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing agent certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parsing agent key")?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("agent certificate and key do not match")?;
    quic_client(tls, ALPN_AGENT)
}

/// The enrollment client config: accepts a server whose chain contains the CA with the
/// pinned SHA-256 fingerprint and whose leaf that CA signed. Returns a slot that holds
/// the verifier's refusal reason, for a clear error message.
///
/// # Errors
/// TLS setup failures.
pub fn enroll_config(
    pin: [u8; 32],
) -> anyhow::Result<(quinn::ClientConfig, Arc<Mutex<Option<String>>>)> {
    let refusal = Arc::new(Mutex::new(None));
    let verifier = Arc::new(PinnedCa {
        pin,
        provider: provider(),
        refusal: refusal.clone(),
    });
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((quic_client(tls, ALPN_ENROLL)?, refusal))
}

#[derive(Debug)]
struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl PinnedCa {
    fn refuse(&self, why: String) -> rustls::Error {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(why.clone());
        }
        rustls::Error::General(why)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| warden_shared::token::fingerprint(c) == self.pin)
        else {
            return Err(self.refuse(
                "the server's CA does not match the fingerprint pinned in the join token; \
                 check the --server address or ask for a new token"
                    .into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| self.refuse(format!("pinned CA is unusable: {e}")))?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| self.refuse(format!("pinned CA is unusable: {e}")))?;
        inner
            .verify_server_cert(end_entity, &[], server_name, ocsp, now)
            .map_err(|e| {
                self.refuse(format!(
                    "server certificate not signed by the pinned CA: {e}"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
