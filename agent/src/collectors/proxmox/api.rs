//! What the Proxmox VE and Proxmox Backup Server collectors share: an HTTPS client with an
//! API token (trusting a CA file or one pinned certificate), the `{"data": …}` envelope,
//! lenient numbers (PVE sends some as strings), operator-readable errors, and the rule that
//! a failed run re-sends the last good resources marked `stale` instead of zeros.

use super::{Collected, CollectorError};
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use warden_shared::ResourceId;
use warden_shared::telemetry::{Resource, Value};

/// Which product's token scheme and wording to use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Product {
    /// Proxmox VE: `PVEAPIToken=ID=SECRET`.
    Pve,
    /// Proxmox Backup Server: `PBSAPIToken=ID:SECRET`.
    Pbs,
}

impl Product {
    fn auth(self, token_id: &str, secret: &str) -> String {
        match self {
            Self::Pve => format!("PVEAPIToken={token_id}={secret}"),
            Self::Pbs => format!("PBSAPIToken={token_id}:{secret}"),
        }
    }

    fn role_hint(self) -> &'static str {
        match self {
            Self::Pve => "give the token the PVEAuditor role on /",
            Self::Pbs => "give the token the Audit role on /",
        }
    }
}

/// Where and how to reach one API.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) product: Product,
    pub(crate) url: String,
    pub(crate) token_id: String,
    pub(crate) token_secret_file: PathBuf,
    pub(crate) ca_file: PathBuf,
    pub(crate) fingerprint: Option<String>,
    pub(crate) timeout: Duration,
}

/// The pauses before the retries of a GET that failed in a way that may pass (HTTP 5xx, a
/// timeout, a broken connection): two retries.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(300)];
/// One attempt may take this share of the run's timeout (a third: PVE and PBS answer a wrong
/// token only after 3 s, which must still show as a 401 with the default 10 s).
const ATTEMPT_SHARE: u32 = 3;
/// After this share of the run's timeout no request starts, so that a run ends with what it
/// read well before [`settle`] gives up on it (at 90 %).
const READS_END: f64 = 0.8;

/// A lazily built client for one [`Endpoint`]. The token secret is read when the client is
/// built and lives only in a header marked sensitive (never logged).
///
/// Each attempt of a request has its own time limit (a third of the run's timeout); a GET
/// failing with a 5xx, a timeout or a connection error is retried twice (after 100 and
/// 300 ms), never on other answers; with a run started ([`ApiClient::start_run`]), no
/// attempt outlasts the run's reads.
pub(crate) struct ApiClient {
    endpoint: Endpoint,
    client: Option<reqwest::Client>,
    /// When the current run's reads end.
    deadline: Option<tokio::time::Instant>,
}

/// Why one attempt failed: worth another attempt or not.
enum Failure {
    Transient(String),
    Final(String),
}

impl ApiClient {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            client: None,
            deadline: None,
        }
    }

    /// Starts a run: from now on, requests end by [`READS_END`] of the timeout.
    pub(crate) fn start_run(&mut self) {
        self.deadline =
            Some(tokio::time::Instant::now() + self.endpoint.timeout.mul_f64(READS_END));
    }

    /// When the current run's reads end (now + the timeout's read share without a run).
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        self.deadline.unwrap_or_else(|| {
            tokio::time::Instant::now() + self.endpoint.timeout.mul_f64(READS_END)
        })
    }

    fn client(&mut self) -> Result<reqwest::Client, CollectorError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let ep = &self.endpoint;
        let secret = std::fs::read_to_string(&ep.token_secret_file).map_err(|e| {
            CollectorError::Proxmox(format!(
                "cannot read token secret {}: {e}",
                ep.token_secret_file.display()
            ))
        })?;
        let mut value =
            reqwest::header::HeaderValue::from_str(&ep.product.auth(&ep.token_id, secret.trim()))
                .map_err(|_| {
                CollectorError::Proxmox(
                    "the token id or secret contains characters a header cannot carry".into(),
                )
            })?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(ep)?)
            .default_headers(headers)
            .timeout(ep.timeout)
            .build()
            .map_err(|e| CollectorError::Proxmox(format!("building the HTTP client: {e}")))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// GETs `path` (relative to the API base) and returns its `data`, retrying failures that
    /// may pass (see [`ApiClient`]).
    ///
    /// # Errors
    /// [`CollectorError::Proxmox`] saying what failed and what to check.
    pub(crate) async fn get<T: DeserializeOwned>(
        &mut self,
        path: &str,
    ) -> Result<T, CollectorError> {
        self.get_unless(path, |_| false).await
    }

    /// Like [`ApiClient::get`], but a 5xx whose text `settled` accepts is the endpoint's
    /// answer (`zfsutils-linux not installed`, a guest agent that is not running) and is not
    /// retried.
    ///
    /// # Errors
    /// [`CollectorError::Proxmox`] saying what failed and what to check.
    pub(crate) async fn get_unless<T: DeserializeOwned>(
        &mut self,
        path: &str,
        settled: impl Fn(&str) -> bool,
    ) -> Result<T, CollectorError> {
        let client = self.client()?;
        let url = format!("{}{path}", self.endpoint.url.trim_end_matches('/'));
        // Whole milliseconds, so that messages read "333ms".
        let share = Duration::from_millis(
            u64::try_from((self.endpoint.timeout / ATTEMPT_SHARE).as_millis()).unwrap_or(u64::MAX),
        );
        let mut pauses = RETRY_PAUSES.iter();
        let mut attempts = 1;
        loop {
            let now = tokio::time::Instant::now();
            let limit = self.deadline.map_or(share, |d| {
                let left = d.saturating_duration_since(now);
                share.min(Duration::from_millis(
                    u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                ))
            });
            if limit.is_zero() {
                return Err(CollectorError::Proxmox(format!(
                    "GET {path}: not read, the run's time was up"
                )));
            }
            let failure = match self.attempt(&client, &url, path, limit).await {
                Ok(data) => return Ok(data),
                Err(Failure::Final(m)) => return Err(CollectorError::Proxmox(m)),
                Err(Failure::Transient(m)) => m,
            };
            let pause = pauses
                .next()
                .filter(|_| !settled(&failure))
                .filter(|p| self.deadline.is_none_or(|d| now + limit + **p < d));
            let Some(pause) = pause else {
                let tries = if attempts > 1 {
                    format!(" ({attempts} attempts)")
                } else {
                    String::new()
                };
                return Err(CollectorError::Proxmox(format!("{failure}{tries}")));
            };
            debug!(path, attempt = attempts, error = %failure, "retrying a failed read");
            tokio::time::sleep(*pause).await;
            attempts += 1;
        }
    }

    /// One GET of `url` within `limit`: the `data` of a 2xx answer.
    async fn attempt<T: DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        url: &str,
        path: &str,
        limit: Duration,
    ) -> Result<T, Failure> {
        let exchange = async {
            let resp = client
                .get(url)
                .send()
                .await
                .map_err(|e| Failure::Transient(format!("GET {path}: {e}")))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| Failure::Transient(format!("GET {path}: reading the answer: {e}")))?;
            if status.is_success() {
                return serde_json::from_slice::<Envelope<T>>(&body)
                    .map(|e| e.data)
                    .map_err(|e| Failure::Final(format!("GET {path}: malformed JSON: {e}")));
            }
            let text = explain_status(self.endpoint.product, path, status, &body);
            Err(if status.is_server_error() {
                Failure::Transient(text)
            } else {
                Failure::Final(text)
            })
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Transient(format!(
                "GET {path}: did not answer within {}",
                humantime::format_duration(limit)
            ))),
        }
    }
}

/// Runs `read` within 90 % of `timeout` (so the runner's own timeout never wins) and applies
/// the stale rule: success replaces `last_good`; a failure re-sends `last_good` marked
/// `stale = true` with no samples (a `Degraded` run), or fails plainly when nothing good
/// was seen yet.
pub(crate) async fn settle(
    last_good: &mut Vec<Resource>,
    timeout: Duration,
    read: impl Future<Output = Result<Collected, CollectorError>>,
) -> Result<Collected, CollectorError> {
    let deadline = timeout.mul_f64(0.9);
    let result = match tokio::time::timeout(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(CollectorError::Proxmox(format!(
            "the API did not answer within {}",
            humantime::format_duration(deadline)
        ))),
    };
    match result {
        Ok(out) => {
            last_good.clone_from(&out.resources);
            Ok(out)
        }
        Err(e) if last_good.is_empty() => Err(e),
        Err(e) => Ok(Collected {
            resources: last_good.iter().cloned().map(mark_stale).collect(),
            samples: Vec::new(),
            problems: vec![e.to_string()],
        }),
    }
}

pub(crate) fn mark_stale(mut r: Resource) -> Resource {
    r.attrs.retain(|(k, _)| k != "stale");
    r.attrs.push(("stale".into(), Value::Bool(true)));
    r
}

/// Operator-readable text for an HTTP error from the API.
pub(crate) fn explain_status(
    product: Product,
    path: &str,
    status: reqwest::StatusCode,
    body: &[u8],
) -> String {
    // PVE puts the reason in the status line and newer versions repeat it as `message`;
    // PBS sends the error text itself as the body.
    let message = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => v
            .get("message")
            .and_then(|m| m.as_str())
            .map(|m| m.trim().to_owned()),
        Err(_) => std::str::from_utf8(body)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 300)
            .map(str::to_owned),
    };
    let reason = message
        .or_else(|| status.canonical_reason().map(str::to_owned))
        .unwrap_or_default();
    match status.as_u16() {
        401 => format!(
            "GET {path}: authentication failed (401); check token_id and the token secret file"
        ),
        403 => format!(
            "GET {path}: permission denied (403 {reason}); {}",
            product.role_hint()
        ),
        code => format!("GET {path}: HTTP {code} {reason}"),
    }
}

/// rustls config: trust `ca_file`, or accept exactly the certificate with the pinned
/// fingerprint.
fn tls_config(ep: &Endpoint) -> Result<rustls::ClientConfig, CollectorError> {
    let err = CollectorError::Proxmox;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(format!("tls setup: {e}")))?;
    let config = match ep.fingerprint.as_deref() {
        Some(fp) => {
            let pin =
                parse_fingerprint(fp).ok_or_else(|| err(format!("invalid fingerprint {fp:?}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedLeaf { pin, provider }))
                .with_no_client_auth()
        }
        None => {
            let ca = ep.ca_file.display();
            let pem = std::fs::read(&ep.ca_file)
                .map_err(|e| err(format!("cannot read CA file {ca}: {e}")))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| err(format!("CA file {ca}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| err(format!("CA file {ca}: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// Parses a SHA-256 fingerprint written as hex, with or without colons.
pub(crate) fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    hex::decode(hex).ok()?.try_into().ok()
}

/// Accepts exactly one server certificate, by SHA-256 of its DER (how Proxmox shows it).
#[derive(Debug)]
struct PinnedLeaf {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let seen: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if seen == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} does not match the pinned one",
                hex::encode(seen)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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

/// The `{"data": …}` envelope of every answer.
#[derive(Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) data: T,
}

/// Number or numeric string; anything else (absent, `"N/A"`, null) is unknown.
pub(crate) fn num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
        _ => None,
    })
}

/// A list of [`num`]s.
pub(crate) fn nums<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Option<f64>>, D::Error> {
    let raw = Vec::<serde_json::Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|v| match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .collect())
}

/// `used / total` in percent, when both are known and total is positive.
pub(crate) fn pct(used: Option<f64>, total: Option<f64>) -> Option<f64> {
    match (used, total) {
        (Some(u), Some(t)) if t > 0.0 => Some(u / t * 100.0),
        _ => None,
    }
}

/// Adds a sample when the value is known.
pub(crate) fn put(out: &mut Collected, id: &ResourceId, metric: &str, now_ms: i64, v: Option<f64>) {
    if let Some(v) = v {
        out.sample(id, metric, now_ms, v);
    }
}

/// A label value safe inside `name{label="…"}`.
pub(crate) fn label_value(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let plain = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&plain), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons), Some([0xab; 32]));
        assert_eq!(parse_fingerprint("abc"), None);
    }

    /// A client for a plain-HTTP server on `addr` with run timeout `timeout`.
    fn client(addr: std::net::SocketAddr, dir: &std::path::Path, timeout: Duration) -> ApiClient {
        let secret = dir.join("secret");
        std::fs::write(&secret, "s\n").unwrap();
        ApiClient::new(Endpoint {
            product: Product::Pve,
            url: format!("http://{addr}"),
            token_id: "a@pve!t".into(),
            token_secret_file: secret,
            ca_file: PathBuf::new(),
            // Plain HTTP never uses it.
            fingerprint: Some("00".repeat(32)),
            timeout,
        })
    }

    /// Serves answers in turn (the last one from then on), counting requests; an answer
    /// with status 0 never comes.
    async fn serve(answers: Vec<(u16, &'static str)>) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let (status, body) = answers[n.min(answers.len() - 1)];
                if status == 0 {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(conn);
                    });
                    continue;
                }
                tokio::spawn(crate::collectors::answer_http(conn, move |_| {
                    (status, body.to_owned())
                }));
            }
        });
        (addr, count)
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(3);
        // A 500 and a hung answer, then the data: read on the third attempt.
        let (addr, count) = serve(vec![(500, ""), (0, ""), (200, r#"{"data":7}"#)]).await;
        let mut c = client(addr, dir.path(), t);
        c.start_run();
        assert_eq!(c.get::<u32>("/x").await.unwrap(), 7);
        assert_eq!(count.load(Ordering::SeqCst), 3);

        // Always 500: three attempts, then the error says so.
        let (addr, count) = serve(vec![(500, "")]).await;
        let mut c = client(addr, dir.path(), t);
        let e = c.get::<u32>("/x").await.unwrap_err().to_string();
        assert!(e.contains("HTTP 500") && e.contains("3 attempts"), "{e}");
        assert_eq!(count.load(Ordering::SeqCst), 3);

        // An answer that is the endpoint's, not a hiccup: once.
        let (addr, count) = serve(vec![(
            500,
            r#"{"data":null,"message":"binary not installed: /usr/bin/ceph-mon\n"}"#,
        )])
        .await;
        let mut c = client(addr, dir.path(), t);
        let e = c
            .get_unless::<u32>("/x", |m| m.contains("not installed"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not installed") && !e.contains("attempts"),
            "{e}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // 401, 403 and 404 are answers: never retried.
        for status in [401, 403, 404] {
            let (addr, count) = serve(vec![(status, "")]).await;
            let mut c = client(addr, dir.path(), t);
            assert!(c.get::<u32>("/x").await.is_err());
            assert_eq!(count.load(Ordering::SeqCst), 1, "{status}");
        }
    }

    #[tokio::test]
    async fn no_request_outlasts_the_runs_reads() {
        let dir = tempfile::tempdir().unwrap();
        // Never answers: each attempt gets a third of the timeout, the retries what is left
        // of the run's reads (80 %), and then requests are not even tried.
        let (addr, count) = serve(vec![(0, "")]).await;
        let mut c = client(addr, dir.path(), Duration::from_millis(600));
        c.start_run();
        let started = tokio::time::Instant::now();
        let e = c.get::<u32>("/x").await.unwrap_err().to_string();
        assert!(e.contains("GET /x: did not answer within"), "{e}");
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
        let e = c.get::<u32>("/y").await.unwrap_err().to_string();
        assert!(
            e.contains("/y") && (e.contains("time was up") || e.contains("did not answer")),
            "{e}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let e = c.get::<u32>("/z").await.unwrap_err().to_string();
        assert!(e.contains("GET /z: not read, the run's time was up"), "{e}");
        assert!(count.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn http_errors_say_what_to_fix() {
        let forbidden = explain_status(
            Product::Pve,
            "/nodes/pve1/status",
            reqwest::StatusCode::FORBIDDEN,
            br#"{"data":null,"message":"Permission check failed (/nodes/pve1, Sys.Audit)\n"}"#,
        );
        assert!(
            forbidden.contains("Sys.Audit") && forbidden.contains("PVEAuditor"),
            "{forbidden}"
        );
        let unauth = explain_status(
            Product::Pbs,
            "/status/datastore-usage",
            reqwest::StatusCode::UNAUTHORIZED,
            b"",
        );
        assert!(unauth.contains("token"), "{unauth}");
        assert_eq!(Product::Pbs.auth("a@pbs!t", "s"), "PBSAPIToken=a@pbs!t:s");
        let plain = explain_status(
            Product::Pbs,
            "/admin/gc",
            reqwest::StatusCode::BAD_REQUEST,
            b"datastore 'x' does not exist\n",
        );
        assert!(
            plain.ends_with("HTTP 400 datastore 'x' does not exist"),
            "{plain}"
        );
        assert_eq!(Product::Pve.auth("a@pve!t", "s"), "PVEAPIToken=a@pve!t=s");
    }
}
