//! The QUIC edge: the listener (mutual TLS with ALPN `warden/1` for agent sessions and
//! `warden-enroll/1` for enrollment), dispatch per connection, and agent sessions.
//!
//! Invariants:
//! - a session only starts for a certificate that chains to this server's CA *and*
//!   names an agent the store knows and has not revoked;
//! - a batch is acknowledged only after the writer committed it (see `writer.rs`);
//! - a bad frame closes only that connection.

pub mod session;

use crate::context::Context;
use crate::pki::Pki;
use anyhow::Context as _;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{Instrument, debug, info_span, warn};
use warden_shared::{ALPN_AGENT, ALPN_ENROLL, close};

/// Bytes an agent may have in flight on one connection beyond what the server has read
/// (QUIC flow control), and the server's own send buffer per connection. It bounds what
/// the server buffers per agent while its writer is behind (10,000 agents × 16 KiB); an
/// agent still moves 160 KiB/s over a 100 ms round trip, far above what its collectors
/// produce, so a spool replay is paced by the server's writer, not by this window.
const RECEIVE_WINDOW: u32 = 16 * 1024;

/// Binds the QUIC endpoint with a large receive buffer (handshake bursts overflow the
/// default one). `reset_secret` is kept across restarts so that a restarted server sends
/// valid stateless resets and agents notice at once instead of after the idle timeout.
///
/// # Errors
/// Socket or TLS setup failures.
pub fn bind(
    listen: SocketAddr,
    pki: &Pki,
    names: &[String],
    reset_secret: &[u8],
) -> anyhow::Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(pki.ca_der().clone())
        .context("adding CA to the client verifier")?;
    // Unauthenticated clients are let through TLS only so enrollment can work on the
    // same port; `handle` refuses them on the agent ALPN.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("building client verifier")?;
    let (chain, key) = pki.server_identity(names, time::OffsetDateTime::now_utc())?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("tls versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("server certificate")?;
    tls.alpn_protocols = vec![ALPN_AGENT.to_vec(), ALPN_ENROLL.to_vec()];
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(Duration::from_secs(30).try_into()?))
        .max_concurrent_bidi_streams(4u32.into())
        .max_concurrent_uni_streams(0u32.into())
        // What an agent may send ahead of the session reading it is buffered here, per
        // connection: quinn's defaults (1.25 MiB a stream, unbounded per connection) would
        // let 10,000 agents replaying their spools park gigabytes. The session reads a frame
        // only once the writer has room for it (`session::spawn_reader`).
        .stream_receive_window(RECEIVE_WINDOW.into())
        .receive_window(RECEIVE_WINDOW.into())
        // Acks, pings and certificates are small; a peer that stops reading them cannot
        // make the server buffer more than this.
        .send_window(4 * u64::from(RECEIVE_WINDOW))
        .datagram_receive_buffer_size(None)
        // The server sends acks, not bulk: one datagram per send keeps each connection's
        // retained transmit buffer at one MTU instead of a segmentation-offload batch.
        .enable_segmentation_offload(false);
    server.transport_config(Arc::new(transport));

    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if listen.is_ipv6() {
        // Best effort: dual-stack where the OS allows it.
        let _ = socket.set_only_v6(false);
    }
    // Best effort; the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket
        .bind(&listen.into())
        .with_context(|| format!("binding QUIC on udp {listen}"))?;
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset_secret,
    )));
    // Connection ids must validate after a restart too, or the reset is never sent.
    let mut cid_key = [0u8; 8];
    cid_key
        .copy_from_slice(&ring::digest::digest(&ring::digest::SHA256, reset_secret).as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let endpoint = quinn::Endpoint::new(
        endpoint_config,
        Some(server),
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok(endpoint)
}

/// Accepts connections until `shutdown` fires.
pub async fn serve(
    endpoint: quinn::Endpoint,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.changed() => break,
        };
        let ctx = ctx.clone();
        let remote = incoming.remote_address();
        crate::task::spawn_named(
            "quic-conn",
            async move {
                match incoming.await {
                    Ok(conn) => handle(conn, ctx).await,
                    Err(err) => debug!(error = %err, "handshake failed"),
                }
            }
            .instrument(info_span!("conn", %remote)),
        );
    }
    ctx.live.close_all(close::SHUTDOWN, "server shutting down");
    endpoint.close(close::SHUTDOWN.into(), b"server shutting down");
}

async fn handle(conn: quinn::Connection, ctx: Arc<Context>) {
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    match alpn.as_deref() {
        Some(ALPN_ENROLL) => crate::enroll::serve(conn, &ctx).await,
        Some(ALPN_AGENT) => {
            // The certificate chain is a copy; it is dropped before the session runs rather
            // than kept for its lifetime.
            let certs = conn.peer_identity().and_then(|i| {
                i.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                    .ok()
            });
            let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
                warn!("agent connected without a client certificate");
                conn.close(
                    close::CERT_REQUIRED.into(),
                    b"client certificate required: enroll this agent first",
                );
                return;
            };
            let id = crate::pki::peer_identity(leaf);
            drop(certs);
            match id {
                Ok(id) => session::run(conn, id, ctx).await,
                Err(err) => {
                    warn!(error = %err, "unusable client certificate");
                    conn.close(
                        close::CERT_REQUIRED.into(),
                        b"client certificate lacks agent identity",
                    );
                }
            }
        }
        _ => conn.close(close::PROTOCOL_ERROR.into(), b"unknown ALPN"),
    }
}
