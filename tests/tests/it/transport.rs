//! The QUIC transport against a real server: clients without a certificate or with one
//! from another CA are rejected; malformed, truncated and oversized frames close only the
//! offending connection; agents speaking every earlier minor protocol still work, and a new
//! agent talks to a server posing as an older one without the newer messages; the
//! certificate is renewed over the session; batches far larger than the server's
//! flow-control window are stored and acked.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use warden_shared::frame::{self, FRAME_VERSION};
use warden_shared::metric;
use warden_shared::proto::{AgentMessage, Hello, ProtocolVersion};
use warden_shared::{ALPN_AGENT, close};
use warden_tests::{AgentProc, ServerProc, eventually};

fn rt() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Client config trusting `ca_pem`, presenting `client` (cert, key) if given.
fn client_config(ca_pem: &str, client: Option<(String, String)>) -> quinn::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN_AGENT.to_vec()];
    quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ))
}

/// Connects, sends `bytes` on a new stream, and returns how the server closed the connection.
async fn send_raw(
    addr: SocketAddr,
    cfg: quinn::ClientConfig,
    bytes: Vec<u8>,
) -> quinn::ConnectionError {
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = match ep
        .connect_with(cfg, addr, warden_shared::SERVER_NAME)
        .unwrap()
        .await
    {
        Ok(c) => c,
        // A rejected client certificate may surface during the handshake already.
        Err(e) => return e,
    };
    if let Ok((mut send, mut recv)) = conn.open_bi().await {
        let _ = send.write_all(&bytes).await;
        let _ = send.finish();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(Some(_)) = recv.read(&mut buf).await {}
    }
    tokio::time::timeout(Duration::from_secs(15), conn.closed())
        .await
        .expect("server closes the connection")
}

fn app_code(e: &quinn::ConnectionError) -> Option<u64> {
    match e {
        quinn::ConnectionError::ApplicationClosed(a) => Some(a.error_code.into_inner()),
        _ => None,
    }
}

fn enrolled_identity(server: &ServerProc, dir: &std::path::Path) -> (String, String, String) {
    let agent = AgentProc::simulated(dir, "raw", "1s");
    agent.enroll_ok(&server.token("10m"));
    let read = |f: &str| std::fs::read_to_string(dir.join("identity").join(f)).unwrap();
    (read("ca.pem"), read("agent.pem"), read("agent.key"))
}

#[test]
fn clients_without_a_certificate_or_from_another_ca_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let other = ServerProc::start(&tmp.path().join("other"), &[]);
    let (ca, _, _) = enrolled_identity(&server, &tmp.path().join("ok"));
    let (_, other_cert, other_key) = enrolled_identity(&other, &tmp.path().join("foreign"));
    rt().block_on(async {
        let hello = frame::encode(&AgentMessage::Hello(Hello {
            protocol: ProtocolVersion::CURRENT,
            agent_version: "x".into(),
            hostname: "x".into(),
            os: "x".into(),
        }))
        .unwrap();
        let no_cert = send_raw(server.quic, client_config(&ca, None), hello.clone()).await;
        assert_eq!(
            app_code(&no_cert),
            Some(u64::from(close::CERT_REQUIRED)),
            "{no_cert}"
        );
        // A certificate from another CA fails the TLS handshake: unknown_ca (alert 48).
        let foreign = send_raw(
            server.quic,
            client_config(&ca, Some((other_cert, other_key))),
            hello,
        )
        .await;
        match &foreign {
            quinn::ConnectionError::ConnectionClosed(c) => {
                assert_eq!(u64::from(c.error_code), 0x100 + 48)
            }
            e => panic!("expected a TLS rejection, got {e}"),
        }
    });
    assert!(server.agents().iter().all(|a| a["connected"] == false));
}

#[test]
fn malformed_truncated_and_oversized_frames_close_only_that_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let mut good = AgentProc::simulated(&tmp.path().join("good"), "steady", "1s");
    let good_id = good.enroll_ok(&server.token("10m"));
    good.start(&[]);
    eventually(Duration::from_secs(20), "good agent connected", || {
        server.agent(&good_id).filter(|a| a["connected"] == true)
    });
    let (ca, cert, key) = enrolled_identity(&server, &tmp.path().join("bad"));
    let updated = || {
        let (_, v) = server.get("/api/resources/node:steady");
        v["updated_at"].as_str().map(str::to_owned)
    };
    rt().block_on(async {
        let cfg = || client_config(&ca, Some((cert.clone(), key.clone())));
        let garbage = vec![FRAME_VERSION, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
        let e = send_raw(server.quic, cfg(), garbage).await;
        assert_eq!(app_code(&e), Some(u64::from(close::PROTOCOL_ERROR)), "{e}");

        let oversized = vec![FRAME_VERSION, 0xff, 0xff, 0xff, 0xff];
        let e = send_raw(server.quic, cfg(), oversized).await;
        assert_eq!(app_code(&e), Some(u64::from(close::FRAME_TOO_LARGE)), "{e}");

        let mut truncated = frame::encode(&AgentMessage::Hello(Hello {
            protocol: ProtocolVersion::CURRENT,
            agent_version: "x".into(),
            hostname: "x".into(),
            os: "x".into(),
        }))
        .unwrap();
        truncated.truncate(truncated.len() - 2);
        let e = send_raw(server.quic, cfg(), truncated).await;
        assert_eq!(app_code(&e), Some(u64::from(close::PROTOCOL_ERROR)), "{e}");

        let bad_version = vec![9, 0, 0, 0, 1, 0];
        let e = send_raw(server.quic, cfg(), bad_version).await;
        assert_eq!(app_code(&e), Some(u64::from(close::PROTOCOL_ERROR)), "{e}");
    });
    // The well-behaved agent never noticed: still connected and still storing.
    let before = updated();
    eventually(
        Duration::from_secs(15),
        "good agent keeps streaming",
        || (updated() != before).then_some(()),
    );
    assert_eq!(server.agent(&good_id).unwrap()["connected"], true);
    assert!(
        !good.log().contains("server connection failed"),
        "{}",
        good.log()
    );
}

#[test]
fn agents_of_every_minor_version_still_work() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let major = ProtocolVersion::CURRENT.major;
    let mut agents = Vec::new();
    for minor in 0..=ProtocolVersion::CURRENT.minor {
        let host = format!("minor{minor}");
        let mut agent = AgentProc::simulated(&tmp.path().join(&host), &host, "1s");
        let id = agent.enroll_ok(&server.token("10m"));
        agent.start(&["--protocol-minor", &minor.to_string()]);
        agents.push((minor, host, id, agent));
    }
    for (minor, host, id, agent) in &agents {
        let a = eventually(Duration::from_secs(20), "agent connected", || {
            server.agent(id).filter(|a| a["connected"] == true)
        });
        assert_eq!(a["protocol"], format!("{major}.{minor}"));
        let node = eventually(Duration::from_secs(20), "telemetry stored", || {
            let (s, v) = server.get(&format!("/api/resources/node:{host}"));
            (s == 200 && v["metrics"][metric::CPU_PCT]["value"].is_number()).then_some(v)
        });
        let cpu = &node["metrics"][metric::CPU_PCT];
        if *minor >= 2 {
            // 1.2 carries each metric's provenance.
            assert_eq!(cpu["source"], "simulated", "{node}");
            assert!(
                cpu["method"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("model:")),
                "{node}"
            );
        } else {
            // Older agents cannot say where a value came from: unknown, never made up.
            assert_eq!(cpu["source"], Value::Null, "{node}");
            assert_eq!(cpu["method"], Value::Null, "{node}");
        }
        assert!(
            !agent.log().contains("server connection failed"),
            "{}",
            agent.log()
        );
    }
}

#[test]
fn a_new_agent_sends_bare_batches_to_an_older_server() {
    let tmp = tempfile::tempdir().unwrap();
    // A server that offers 1.1 decodes no 1.2 message; it closes the connection on one.
    let server = ServerProc::start(&tmp.path().join("server"), &["--protocol-minor", "1"]);
    let mut agent = AgentProc::simulated(&tmp.path().join("new"), "newagent", "1s");
    let id = agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    let a = eventually(Duration::from_secs(20), "agent connected", || {
        server.agent(&id).filter(|a| a["connected"] == true)
    });
    assert_eq!(
        a["protocol"],
        format!("{}.1", ProtocolVersion::CURRENT.major)
    );
    // Several batches stored over one session: the agent never sent what 1.1 lacks.
    let first = eventually(Duration::from_secs(20), "telemetry stored", || {
        let (s, v) = server.get("/api/resources/node:newagent");
        (s == 200).then(|| v["updated_at"].clone())
    });
    let node = eventually(Duration::from_secs(20), "more telemetry stored", || {
        let (_, v) = server.get("/api/resources/node:newagent");
        (v["updated_at"] != first).then_some(v)
    });
    assert_eq!(
        node["metrics"][metric::CPU_PCT]["source"],
        Value::Null,
        "{node}"
    );
    let log = agent.log();
    assert!(log.contains("metric provenance is not sent"), "{log}");
    assert!(!log.contains("server connection failed"), "{log}");
    assert_eq!(server.agent(&id).unwrap()["connected"], true);
}

#[test]
fn the_certificate_is_renewed_over_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    // 12 s certificates: the agent renews 8 s after receiving one.
    let mut server = ServerProc::start(&tmp.path().join("server"), &["--cert-ttl", "12s"]);
    let mut agent = AgentProc::simulated(&tmp.path().join("a"), "renewer", "1s");
    let id = agent.enroll_ok(&server.token("10m"));
    let first = server.agent(&id).unwrap()["certificate_expires_at"].clone();
    let cert_before = std::fs::read_to_string(agent.dir.join("identity/agent.pem")).unwrap();
    agent.start(&[]);
    eventually(Duration::from_secs(30), "certificate renewed", || {
        server
            .agent(&id)
            .filter(|a| a["certificate_expires_at"] != first && a["connected"] == true)
    });
    // The server records the new certificate just before the agent receives and saves it.
    eventually(
        Duration::from_secs(10),
        "agent saved the renewed certificate",
        || agent.log().contains("certificate renewed").then_some(()),
    );
    let cert_after = std::fs::read_to_string(agent.dir.join("identity/agent.pem")).unwrap();
    assert_ne!(cert_before, cert_after, "the renewed certificate was saved");
    // The renewal is on the audit record, with the agent's address.
    let (_, v) = server.get("/api/audit?action=agent.renew");
    let renewal = &v["items"][0];
    assert_eq!(renewal["target"], id.as_str(), "{v}");
    assert_eq!(renewal["outcome"]["result"], "success", "{v}");
    assert_eq!(renewal["source_ip"], "127.0.0.1", "{v}");
    // The renewed certificate authenticates a fresh connection after the old one expired.
    std::thread::sleep(Duration::from_secs(5));
    server.restart();
    eventually(
        Duration::from_secs(30),
        "reconnected with the renewed certificate",
        || server.agent(&id).filter(|a| a["connected"] == true),
    );
}

#[test]
fn garbage_on_the_enrollment_port_is_refused_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let (ca, _, _) = enrolled_identity(&server, &tmp.path().join("ok"));
    let enroll_cfg = || {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![warden_shared::ALPN_ENROLL.to_vec()];
        quinn::ClientConfig::new(std::sync::Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
        ))
    };
    rt().block_on(async {
        for junk in [
            vec![FRAME_VERSION, 0, 0, 0, 2, 0xff, 0xff],
            vec![FRAME_VERSION, 0xff, 0xff, 0xff, 0xff],
            vec![7; 3],
        ] {
            let e = send_raw(server.quic, enroll_cfg(), junk).await;
            assert_eq!(app_code(&e), Some(u64::from(close::ENROLL_REFUSED)), "{e}");
        }
    });
    // A valid token with a broken certificate request is refused without spending the token.
    let token = server.token("10m");
    let answer = rt().block_on(async {
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = ep
            .connect_with(enroll_cfg(), server.quic, warden_shared::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let req = warden_shared::proto::EnrollRequest {
            token: token.clone(),
            csr_pem:
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            hostname: "broken".into(),
            agent_version: "0".into(),
        };
        send.write_all(&frame::encode(&req).unwrap()).await.unwrap();
        send.finish().unwrap();
        let answer: warden_shared::proto::EnrollResponse =
            warden_io::framed::read(&mut recv).await.unwrap().unwrap();
        conn.close(0u32.into(), b"");
        answer
    });
    match answer {
        warden_shared::proto::EnrollResponse::Refused { reason } => {
            assert!(
                reason.contains("certificate request is invalid"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Still serving: the same token enrolls a real agent, and only that one agent exists.
    AgentProc::simulated(&tmp.path().join("after"), "after", "1s").enroll_ok(&token);
    assert_eq!(server.agents().len(), 2);
}

/// The server reads an agent's frame only once its writer has room for it, and buffers at
/// most a small flow-control window per connection: an agent that sends a spool's worth of
/// large batches back to back, each many times that window, has every one stored and acked.
#[test]
fn batches_far_larger_than_the_flow_control_window_are_stored_and_acked() {
    use warden_shared::ResourceId;
    use warden_shared::proto::ServerMessage;
    use warden_shared::telemetry::{Resource, Sample, TelemetryBatch};
    const BATCHES: u64 = 5;
    const SAMPLES: usize = 25_000;
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let (ca, cert, key) = enrolled_identity(&server, &tmp.path().join("bulk"));
    let node = ResourceId::new("node:bulk".to_owned()).unwrap();
    let base_ms = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 600_000)
        / 1000
        * 1000;
    let batch = move |seq: u64| TelemetryBatch {
        seq,
        collector: "bulk".to_owned(),
        collected_at_ms: base_ms,
        resources: vec![Resource {
            id: node.clone(),
            name: "bulk".to_owned(),
            parent: None,
            status: "online".to_owned(),
            attrs: Vec::new(),
        }],
        samples: (0..SAMPLES)
            .map(|j| Sample {
                resource_id: node.clone(),
                metric: metric::CPU_PCT.to_owned(),
                ts_ms: base_ms + (seq as i64 - 1) * SAMPLES as i64 + j as i64,
                value: j as f64 / 7.0,
            })
            .collect(),
        health: None,
        dropped_samples: 0,
    };
    rt().block_on(async {
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = ep
            .connect_with(
                client_config(&ca, Some((cert, key))),
                server.quic,
                warden_shared::SERVER_NAME,
            )
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = AgentMessage::Hello(Hello {
            protocol: ProtocolVersion::CURRENT,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: "bulk".to_owned(),
            os: "linux".to_owned(),
        });
        send.write_all(&frame::encode(&hello).unwrap())
            .await
            .unwrap();
        let welcome = warden_io::framed::read::<ServerMessage>(&mut recv)
            .await
            .unwrap();
        assert!(
            matches!(welcome, Some(ServerMessage::Welcome(ref w)) if w.last_stored_seq == 0),
            "{welcome:?}"
        );
        // Everything at once: the writes complete only as the server takes the frames in.
        let writer = tokio::spawn(async move {
            for seq in 1..=BATCHES {
                let bytes = frame::encode(&AgentMessage::Telemetry(batch(seq))).unwrap();
                assert!(bytes.len() > 8 * 64 * 1024, "{} bytes", bytes.len());
                send.write_all(&bytes).await.unwrap();
            }
            send
        });
        let mut acked = 0;
        while acked < BATCHES {
            let msg = tokio::time::timeout(
                Duration::from_secs(60),
                warden_io::framed::read::<ServerMessage>(&mut recv),
            )
            .await
            .expect("an ack within 60 s")
            .unwrap();
            match msg {
                Some(ServerMessage::Ack { seq }) => {
                    assert!(seq > acked && seq <= BATCHES, "ack {seq} after {acked}");
                    acked = seq;
                }
                other => panic!("expected an ack, got {other:?}"),
            }
        }
        let _send = writer.await.unwrap();
        conn.close(0u32.into(), b"done");
        ep.wait_idle().await;
    });
    // What was acked is stored: the last 10 s of the last batch, sample for sample.
    let last = base_ms + BATCHES as i64 * SAMPLES as i64 - 1;
    let (from, to) = (last - 9_999, last + 5_000);
    let (status, v) = server.get(&format!(
        "/api/metrics/history?resource_id=node%3Abulk&metric=cpu_pct&from={from}&to={to}"
    ));
    assert_eq!(status, 200, "{v}");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 10_000, "{}", points.len());
}
