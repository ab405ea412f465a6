//! `warden_sim`: in-process simulators of third-party APIs (Proxmox VE, Proxmox Backup Server
//! and the Kubernetes API server) for the tests, the benchmarks and `warden demo`; the
//! `warden-sim` binary (`src/main.rs`) serves them as a process.
//!
//! A simulator serves HTTPS on `127.0.0.1:<free port>` from its own threads (one accept
//! thread, one thread per connection), so synchronous `#[test]` functions can use it without a
//! tokio runtime. The HTTP/1.1 layer is hand-written on purpose: it lets a simulator send
//! exactly what the real servers send, including non-standard reason phrases
//! (`401 No ticket`) and truncated bodies. [`https_get`] is a matching minimal client that
//! returns the raw status line, headers and body. Long-lived answers (Kubernetes watches) are
//! served as `Transfer-Encoding: chunked` streams through [`HttpsServer::start_streaming`];
//! [`https_stream`] reads them line by line.

pub mod k8s;
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

/// What a streaming handler answers: a complete response or a chunked stream.
pub enum Answer {
    /// A complete response with `Content-Length`.
    Full(Response),
    /// A `Transfer-Encoding: chunked` stream.
    Stream(StreamResponse),
}

/// How a stream body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Send the terminating zero-length chunk; the connection may be reused.
    Finish,
    /// Drop the connection abruptly (TCP reset, no terminating chunk, no TLS close_notify).
    Abort,
}

/// Produces the body of a chunked stream; runs on the connection's thread.
pub type StreamBody = Box<dyn FnOnce(&mut ChunkedWriter<'_>) -> StreamEnd + Send>;

/// A chunked answer: the head is written first, then `body` writes chunks for as long as it
/// likes.
pub struct StreamResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase for the status line.
    pub reason: String,
    /// Extra headers (`Transfer-Encoding: chunked` is added automatically).
    pub headers: Vec<(String, String)>,
    /// Wait this long before writing the head.
    pub delay: Duration,
    /// Writes the chunks.
    pub body: StreamBody,
}

/// Writes the chunks of a [`StreamResponse`] to the client.
pub struct ChunkedWriter<'a> {
    tls: &'a mut TlsStream,
    stop: &'a AtomicBool,
}

impl ChunkedWriter<'_> {
    /// Sends `data` as one chunk and flushes it (empty data is skipped: a zero-length chunk
    /// would end the stream).
    ///
    /// # Errors
    /// If the client went away.
    pub fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.tls.write_all(&out)?;
        self.tls.flush()
    }

    /// Whether the server was dropped (long streams should end soon after).
    pub fn server_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A handler that may answer with a stream.
pub type StreamingHandler = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

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
        Self::start_streaming_on(
            bind,
            identity,
            Arc::new(move |req| Answer::Full(handler(req))),
        )
    }

    /// Binds `127.0.0.1:0` and serves `handler`, which may answer with chunked streams.
    ///
    /// # Errors
    /// If binding or the TLS configuration fails.
    pub fn start_streaming(
        identity: &TlsIdentity,
        handler: StreamingHandler,
    ) -> anyhow::Result<Self> {
        Self::start_streaming_on(SocketAddr::from(([127, 0, 0, 1], 0)), identity, handler)
    }

    /// Like [`Self::start_streaming`] on a given address (port 0 = any free port).
    ///
    /// # Errors
    /// If binding or the TLS configuration fails.
    pub fn start_streaming_on(
        bind: SocketAddr,
        identity: &TlsIdentity,
        handler: StreamingHandler,
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
                    let stop = stop2.clone();
                    let _ = std::thread::Builder::new()
                        .name("sim-conn".into())
                        .spawn(move || serve_conn(tcp, cfg, &handler, &stop));
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

fn response_head(
    status: u16,
    reason: &str,
    headers: &[(String, String)],
    framing: &str,
    close: bool,
) -> String {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(framing);
    if close {
        out.push_str("Connection: close\r\n");
    } else {
        out.push_str("Connection: Keep-Alive\r\n");
    }
    out.push_str("\r\n");
    out
}

fn serve_conn(
    tcp: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    handler: &StreamingHandler,
    stop: &AtomicBool,
) {
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
        match handler(&req) {
            Answer::Full(resp) => {
                if !resp.delay.is_zero() {
                    std::thread::sleep(resp.delay);
                }
                let framing = format!("Content-Length: {}\r\n", resp.body.len());
                let head = response_head(resp.status, &resp.reason, &resp.headers, &framing, close);
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(&resp.body);
                if tls.write_all(&bytes).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Answer::Stream(resp) => {
                if !resp.delay.is_zero() {
                    std::thread::sleep(resp.delay);
                }
                let head = response_head(
                    resp.status,
                    &resp.reason,
                    &resp.headers,
                    "Transfer-Encoding: chunked\r\n",
                    close,
                );
                if tls
                    .write_all(head.as_bytes())
                    .and_then(|()| tls.flush())
                    .is_err()
                {
                    return;
                }
                let end = (resp.body)(&mut ChunkedWriter {
                    tls: &mut tls,
                    stop,
                });
                match end {
                    StreamEnd::Finish => {
                        if tls
                            .write_all(b"0\r\n\r\n")
                            .and_then(|()| tls.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                    StreamEnd::Abort => {
                        // SO_LINGER 0: close() sends a TCP RST, like a crashed apiserver or a
                        // load balancer cutting the connection.
                        let _ = socket2::SockRef::from(&tls.sock).set_linger(Some(Duration::ZERO));
                        return;
                    }
                }
            }
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

type ClientTls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Status, reason and lower-cased headers of a response head.
type Head = (u16, String, Vec<(String, String)>);

/// Connects, sends `GET path` with `Connection: close` and reads the response head; returns
/// the stream, the head and the body bytes already read.
fn open_get(
    addr: SocketAddr,
    ca_der: &CertificateDer<'static>,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(ClientTls, Head, Vec<u8>)> {
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
    let body = buf.split_off(end);
    Ok((tls, (status, reason, headers), body))
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
}

/// `GET path` over TLS (verifying the server against `ca_der`) with extra `headers`;
/// one request per connection. A chunked body is decoded (read until its last chunk).
///
/// # Errors
/// On connection, TLS or framing errors.
pub fn https_get(
    addr: SocketAddr,
    ca_der: &CertificateDer<'static>,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<RawResponse> {
    let (mut tls, (status, reason, headers), mut body) = open_get(addr, ca_der, path, headers)?;
    if is_chunked(&headers) {
        let mut stream = HttpStream::new(tls, (status, reason, headers), body);
        let body = stream.read_to_end(Duration::from_secs(60))?;
        return Ok(RawResponse {
            status: stream.status,
            reason: stream.reason,
            headers: stream.headers,
            body,
        });
    }
    let len: Option<usize> = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok());
    let mut chunk = [0u8; 16384];
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

/// `GET path` like [`https_get`], but returns as soon as the head has arrived, so that a
/// long-lived (chunked) body can be read incrementally, e.g. a Kubernetes watch.
///
/// # Errors
/// On connection, TLS or framing errors before the head is complete.
pub fn https_stream(
    addr: SocketAddr,
    ca_der: &CertificateDer<'static>,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<HttpStream> {
    let (tls, head, body) = open_get(addr, ca_der, path, headers)?;
    Ok(HttpStream::new(tls, head, body))
}

/// One step of reading an [`HttpStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRead {
    /// A complete line, without the trailing `\n`.
    Line(String),
    /// The body ended cleanly (terminating chunk, or all `Content-Length` bytes read).
    End,
    /// The connection broke before the body ended (reset, EOF without the last chunk).
    Aborted(String),
    /// Nothing complete arrived within the timeout; the stream stays usable.
    TimedOut,
}

/// An HTTP response whose body is read incrementally (see [`https_stream`]).
pub struct HttpStream {
    /// Status code.
    pub status: u16,
    /// Reason phrase exactly as sent.
    pub reason: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    tls: ClientTls,
    /// Bytes received but not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet returned.
    body: Vec<u8>,
    chunked: bool,
    /// Body bytes still expected with `Content-Length`.
    remaining: Option<usize>,
    done: bool,
}

impl HttpStream {
    fn new(tls: ClientTls, (status, reason, headers): Head, raw: Vec<u8>) -> Self {
        let chunked = is_chunked(&headers);
        let remaining = if chunked {
            None
        } else {
            headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
        };
        let mut s = Self {
            status,
            reason,
            headers,
            tls,
            raw,
            body: Vec::new(),
            chunked,
            remaining,
            done: false,
        };
        s.decode();
        s
    }

    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Moves complete chunks (or plain body bytes) from `raw` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            let take = self
                .remaining
                .map_or(self.raw.len(), |r| r.min(self.raw.len()));
            self.body.extend(self.raw.drain(..take));
            if let Some(r) = &mut self.remaining {
                *r -= take;
                if *r == 0 {
                    self.done = true;
                }
            }
            return;
        }
        while !self.done {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&self.raw[..eol]).into_owned();
            let size_hex = line.split(';').next().unwrap_or_default().trim();
            let Ok(size) = usize::from_str_radix(size_hex, 16) else {
                // Not chunked framing after all: hand the rest over as it is.
                self.chunked = false;
                self.body.append(&mut self.raw);
                return;
            };
            if size == 0 {
                // Last chunk; trailers are not used by the simulators.
                self.done = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// Reads more bytes, waiting at most `wait`. `Ok(true)` = got some.
    fn fill(&mut self, wait: Duration) -> Result<bool, StreamRead> {
        let _ = self
            .tls
            .sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let mut chunk = [0u8; 16384];
        match self.tls.read(&mut chunk) {
            Ok(0) => {
                if self.chunked || self.remaining.is_some() {
                    Err(StreamRead::Aborted(
                        "connection closed before the end of the body".to_owned(),
                    ))
                } else {
                    self.done = true;
                    Ok(false)
                }
            }
            Ok(n) => {
                self.raw.extend_from_slice(&chunk[..n]);
                self.decode();
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(StreamRead::Aborted(e.to_string())),
        }
    }

    /// The next line of the body, waiting at most `timeout` for it. A last line without a
    /// trailing newline is returned when the body ends.
    pub fn next_line(&mut self, timeout: Duration) -> StreamRead {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.body.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=pos).collect();
                return StreamRead::Line(
                    String::from_utf8_lossy(&line[..line.len() - 1]).into_owned(),
                );
            }
            if self.done {
                if self.body.is_empty() {
                    return StreamRead::End;
                }
                let rest = std::mem::take(&mut self.body);
                return StreamRead::Line(String::from_utf8_lossy(&rest).into_owned());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return StreamRead::TimedOut;
            }
            if let Err(e) = self.fill(deadline - now) {
                return e;
            }
        }
    }

    /// Reads the rest of the body, waiting at most `timeout` in total.
    ///
    /// # Errors
    /// On timeout or if the connection broke before the body ended.
    pub fn read_to_end(&mut self, timeout: Duration) -> anyhow::Result<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        while !self.done {
            let now = std::time::Instant::now();
            if now >= deadline {
                bail!("timed out after {timeout:?} reading the body");
            }
            if let Err(e) = self.fill(deadline - now) {
                bail!("reading the body: {e:?}");
            }
        }
        Ok(std::mem::take(&mut self.body))
    }
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
