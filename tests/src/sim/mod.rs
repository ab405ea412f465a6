//! In-process simulators of third-party APIs (Proxmox VE and Proxmox Backup Server) for tests
//! and the demo.
//!
//! A simulator serves HTTPS on `127.0.0.1:<free port>` from its own threads (one accept
//! thread, one thread per connection), so synchronous `#[test]` functions can use it without a
//! tokio runtime. The HTTP/1.1 layer is hand-written on purpose: it lets a simulator send
//! exactly what the real servers send, including non-standard reason phrases
//! (`401 No ticket`) and truncated bodies. [`https_get`] is a matching minimal client that
//! returns the raw status line, headers and body.

pub mod pbs;
pub mod pve;

use anyhow::{Context, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A throw-away CA plus a server certificate for `127.0.0.1`/`localhost` signed by it, as
/// on a real PVE node (`pve-root-ca.pem` + `pve-ssl.pem`).
pub struct TlsIdentity {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn validity(params: &mut rcgen::CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
}

impl TlsIdentity {
    /// Generates a CA (common name `ca_name`) and a server certificate for `hostname`,
    /// `localhost` and `127.0.0.1`.
    ///
    /// # Errors
    /// If rcgen fails.
    pub fn generate(ca_name: &str, hostname: &str) -> anyhow::Result<Self> {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca_params);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;

        let mut leaf = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            hostname.to_owned(),
        ])?;
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, hostname);
        leaf.is_ca = rcgen::IsCa::ExplicitNoCa;
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut leaf);
        let leaf_key = rcgen::KeyPair::generate()?;
        let cert = leaf.signed_by(&leaf_key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            cert_der: cert.der().clone(),
            key_der: leaf_key.serialize_der(),
        })
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// DER of the CA certificate.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// DER of the server (leaf) certificate.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the server certificate's DER, 64 lowercase hex digits.
    pub fn cert_der_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.cert_der.as_ref()))
    }

    /// The same digest in PVE's `ssl_fingerprint` style (`AB:CD:...`, upper case).
    pub fn fingerprint_colon(&self) -> String {
        Sha256::digest(self.cert_der.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)?;
        Ok(Arc::new(cfg))
    }
}

/// One parsed HTTP request (the body, if any, is discarded).
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// Percent-decoded path without the query string.
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// First query parameter with this name.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a simulator answers; `delay` is slept before anything is written.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase for the status line (may be anything, as with PVE).
    pub reason: String,
    /// Extra headers (`Content-Length` is added automatically).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running HTTPS listener; stops accepting when dropped.
pub struct HttpsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Binds `127.0.0.1:0` and serves `handler` over TLS with `identity`.
    ///
    /// # Errors
    /// If binding or the TLS configuration fails.
    pub fn start(identity: &TlsIdentity, handler: Handler) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), identity, handler)
    }

    /// Like [`Self::start`] on a given address (port 0 = any free port).
    ///
    /// # Errors
    /// If binding or the TLS configuration fails.
    pub fn start_on(
        bind: SocketAddr,
        identity: &TlsIdentity,
        handler: Handler,
    ) -> anyhow::Result<Self> {
        let cfg = identity.server_config()?;
        let listener = TcpListener::bind(bind).context("bind simulator")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::Builder::new()
            .name(format!("sim-accept-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    let cfg = cfg.clone();
                    let handler = handler.clone();
                    let _ = std::thread::Builder::new()
                        .name("sim-conn".into())
                        .spawn(move || serve_conn(tcp, cfg, &handler));
                }
            })?;
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_head(head: &str) -> Option<(Request, usize)> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?;
    let (path, qs) = target.split_once('?').unwrap_or((target, ""));
    let query = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Some((
        Request {
            method,
            path: percent_decode(path),
            query,
            headers,
        },
        len,
    ))
}

fn serve_conn(tcp: TcpStream, cfg: Arc<rustls::ServerConfig>, handler: &Handler) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let Some((req, body_len)) = parse_head(&head) else {
            return;
        };
        buf.drain(..end);
        while buf.len() < body_len {
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..body_len);
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = handler(&req);
        if !resp.delay.is_zero() {
            std::thread::sleep(resp.delay);
        }
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        if close {
            out.push_str("Connection: close\r\n");
        } else {
            out.push_str("Connection: Keep-Alive\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        if tls.write_all(&bytes).and_then(|()| tls.flush()).is_err() {
            return;
        }
        if close {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            return;
        }
    }
}

/// A raw HTTP answer as seen by [`https_get`].
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase exactly as sent.
    pub reason: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Body parsed as JSON.
    ///
    /// # Errors
    /// If the body is not valid JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }
}

/// `GET path` over TLS (verifying the server against `ca_der`) with extra `headers`;
/// one request per connection.
///
/// # Errors
/// On connection, TLS or framing errors.
pub fn https_get(
    addr: SocketAddr,
    ca_der: &CertificateDer<'static>,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<RawResponse> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes())?;
    tls.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        match tls.read(&mut chunk) {
            Ok(0) => bail!("connection closed before the response head"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e).context("reading response head"),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: Option<usize> = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok());
    let mut body = buf.split_off(end);
    loop {
        if len.is_some_and(|l| body.len() >= l) {
            break;
        }
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && len.is_none() => break,
            Err(e) => return Err(e).context("reading response body"),
        }
    }
    if let Some(l) = len {
        body.truncate(l);
    }
    Ok(RawResponse {
        status,
        reason,
        headers,
        body,
    })
}

/// Base path of the Proxmox APIs.
pub const API_PREFIX: &str = "/api2/json";

/// A running simulator: its HTTPS listener and TLS material, plus `H`, the product's control
/// handle, which it derefs to. Stops when dropped.
pub struct Sim<H> {
    handle: H,
    identity: TlsIdentity,
    server: HttpsServer,
}

impl<H> std::ops::Deref for Sim<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.handle
    }
}

impl<H: Clone> Sim<H> {
    fn new(handle: H, identity: TlsIdentity, server: HttpsServer) -> Self {
        Self {
            handle,
            identity,
            server,
        }
    }

    /// `https://127.0.0.1:PORT/api2/json`
    pub fn base_url(&self) -> String {
        format!("https://{}{API_PREFIX}", self.server.addr())
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// PEM of the CA that signed the server certificate (like `pve-root-ca.pem`).
    pub fn ca_pem(&self) -> &str {
        self.identity.ca_pem()
    }

    /// SHA-256 of the server certificate DER, 64 lowercase hex digits (for pinning).
    pub fn cert_der_sha256(&self) -> String {
        self.identity.cert_der_sha256()
    }

    /// The same fingerprint as Proxmox prints it (`AB:CD:…`).
    pub fn cert_fingerprint(&self) -> String {
        self.identity.fingerprint_colon()
    }

    /// TLS material.
    pub fn identity(&self) -> &TlsIdentity {
        &self.identity
    }

    /// A clone of the control handle (to move into other threads).
    pub fn handle(&self) -> H {
        self.handle.clone()
    }

    /// `GET {base}{path}` with the given `Authorization` header value (or none).
    ///
    /// # Panics
    /// On transport errors.
    pub fn get_with_auth(&self, path: &str, auth: Option<&str>) -> RawResponse {
        let full = format!("{API_PREFIX}{path}");
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        https_get(self.addr(), self.identity.ca_der(), &full, &headers)
            .unwrap_or_else(|e| panic!("GET {full}: {e:#}"))
    }
}
