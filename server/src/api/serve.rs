//! The HTTP listener: an accept loop over hyper's HTTP/1 connections with a header read
//! timeout (which also bounds idle kept-alive connections), a whole-body read timeout, and a
//! connection cap sized from the open file limit. At the cap a new connection evicts the
//! oldest one that is waiting for a request (a slow or idle client), or is closed at once
//! when every connection is busy, so slow clients cannot starve `/healthz` or the process
//! of descriptors. Shutdown stops accepting and lets requests in flight finish.

use super::error::ApiError;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Listener limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request's headers; also the longest idle keep-alive.
    pub header_timeout: Duration,
    /// Time to send a whole request body, from the end of its headers.
    pub body_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Connections evicted but not yet closed may exceed the cap by this many; beyond, accepting
/// waits (at most [`EVICT_WAIT`]) for them to close.
const EVICT_SLACK: usize = 32;
const EVICT_WAIT: Duration = Duration::from_millis(500);
/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// Raises the soft open file limit to the hard one and returns the soft limit in force.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(err) => {
            warn!(error = %err, "cannot read the open file limit; assuming 1024");
            return 1024;
        }
    };
    if soft >= hard {
        info!(soft, hard, "open file limit");
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            info!(soft = hard, hard, was = soft, "raised the open file limit");
            hard
        }
        Err(err) => {
            warn!(soft, hard, error = %err, "cannot raise the open file limit");
            soft
        }
    }
}

/// HTTP connections allowed under an open file limit: what is left after a reserve for the
/// QUIC socket, the store, the audit log, webhook deliveries and connections being evicted.
pub fn connection_cap(nofile: u64) -> usize {
    let reserve = (nofile / 4).clamp(64, 1024);
    let cap = nofile.saturating_sub(reserve + EVICT_SLACK as u64).max(16);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Serves `app` on `listener` until `shutdown` turns true, then waits (a bounded time) for
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let conns = Arc::new(Conns::default());
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|v| *v) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(err) => {
                // Out of descriptors or buffers: the cap's reserve was not enough. Back off
                // briefly rather than spin; say so at most once a second.
                if last_accept_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(error = %err, "http accept failed");
                    last_accept_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(conn) = conns.admit(limits.max_connections).await else {
            debug!(peer = %peer, "http connection over the cap closed");
            continue;
        };
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            conn,
            conns.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, conns.drained()).await.is_err() {
        info!(
            open = conns.len(),
            "http connections still open at shutdown are dropped"
        );
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    conn: Arc<Conn>,
    conns: Arc<Conns>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req| {
            handle(req, peer, app.clone(), conn.clone(), limits.body_timeout)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let http = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let stop = async move {
        let _ = shutdown.wait_for(|v| *v).await;
    };
    tokio::select! {
        r = http.as_mut() => {
            if let Err(err) = r {
                debug!(peer = %peer, error = %err, "http connection ended");
            }
        }
        () = conn.evict.notified() => debug!(peer = %peer, "idle http connection evicted at the cap"),
        () = stop => {
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        }
    }
    conns.remove(conn.id);
}

/// One request: the client address for handlers, the body read under its deadline, and the
/// connection marked busy until the response body is sent.
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    app: Router,
    conn: Arc<Conn>,
    body_timeout: Duration,
) -> Result<Response<Body>, std::convert::Infallible> {
    let busy = Busy::new(conn);
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut req = req.map(|b| {
        Body::new(Tracked {
            inner: b,
            deadline: Some(Box::pin(tokio::time::sleep(body_timeout))),
            timed_out: Some(timed_out.clone()),
            busy: None,
        })
    });
    req.extensions_mut().insert(ConnectInfo(peer));
    let Ok(mut resp) = app.oneshot(req).await;
    if timed_out.load(Ordering::Relaxed) {
        resp = ApiError::Rejected(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}",
                humantime::format_duration(body_timeout)
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp.map(|b| {
        Body::new(Tracked {
            inner: b,
            deadline: None,
            timed_out: None,
            busy: Some(busy),
        })
    }))
}

/// A body with an optional deadline for all of it (request bodies) or a busy mark held
/// until it is sent (response bodies).
struct Tracked<B> {
    inner: B,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: Option<Arc<AtomicBool>>,
    busy: Option<Busy>,
}

impl<B> HttpBody for Tracked<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() {
                this.deadline = None;
                this.busy = None;
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            if let Some(flag) = &this.timed_out {
                flag.store(true, Ordering::Relaxed);
            }
            return Poll::Ready(Some(Err("request body timed out".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const EVICTED: u8 = 2;

/// One open connection.
struct Conn {
    id: u64,
    /// `IDLE` (waiting for a request), `BUSY` (a request in flight) or `EVICTED`.
    state: AtomicU8,
    evict: Notify,
}

/// Marks a connection busy while it lives.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: Arc<Conn>) -> Self {
        let _ = conn
            .state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self
            .0
            .state
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// What [`Conns::try_admit`] decided.
enum Admit {
    Open(Arc<Conn>),
    /// Every connection is busy with a request.
    Refuse,
    /// Evicted connections are still closing.
    Wait,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Conns {
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    closed: Notify,
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Registers a new connection; at the cap, evicts the oldest idle one first, and refuses
    /// (`None`) when there is none. While too many evicted connections are still closing
    /// (a burst), waits a moment for them.
    async fn admit(&self, cap: usize) -> Option<Arc<Conn>> {
        let deadline = tokio::time::Instant::now() + EVICT_WAIT;
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            match self.try_admit(cap) {
                Admit::Open(conn) => return Some(conn),
                Admit::Refuse => return None,
                Admit::Wait => {
                    if tokio::time::timeout_at(deadline, closed).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    fn try_admit(&self, cap: usize) -> Admit {
        let mut open = self.lock();
        if open.len() >= cap {
            if open.len() >= cap + EVICT_SLACK {
                return Admit::Wait;
            }
            let Some(victim) = open.values().find(|c| {
                c.state
                    .compare_exchange(IDLE, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            }) else {
                return Admit::Refuse;
            };
            victim.evict.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            state: AtomicU8::new(IDLE),
            evict: Notify::new(),
        });
        open.insert(id, conn.clone());
        Admit::Open(conn)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.closed.notify_waiters();
    }

    /// Resolves once no connection is open.
    async fn drained(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            closed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_reserve() {
        assert_eq!(connection_cap(1024), 1024 - 256 - 32);
        assert_eq!(connection_cap(256), 256 - 64 - 32);
        assert_eq!(connection_cap(65_536), 65_536 - 1024 - 32);
        assert_eq!(connection_cap(50), 16);
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_is_evicted() {
        let conns = Conns::default();
        let a = conns.admit(2).await.unwrap();
        let b = conns.admit(2).await.unwrap();
        let busy_a = Busy::new(a.clone());
        // `a` is busy, so `b` (idle) goes.
        let c = conns.admit(2).await.unwrap();
        assert_eq!(b.state.load(Ordering::Acquire), EVICTED);
        assert_eq!(a.state.load(Ordering::Acquire), BUSY);
        conns.remove(b.id);
        // Everything busy: a new connection is refused.
        let _busy_c = Busy::new(c.clone());
        assert!(conns.admit(2).await.is_none());
        // `a` finished its request and is idle again: it is evicted next.
        drop(busy_a);
        assert!(conns.admit(2).await.is_some());
        assert_eq!(a.state.load(Ordering::Acquire), EVICTED);
    }

    #[tokio::test]
    async fn a_burst_waits_for_evicted_connections_to_close() {
        let conns = Arc::new(Conns::default());
        let first: Vec<_> = (0..EVICT_SLACK + 1)
            .map(|_| match conns.try_admit(1) {
                Admit::Open(c) => c,
                _ => panic!("admitted by eviction"),
            })
            .collect();
        // One over the cap plus the slack, all evicted but the newest: the next one waits
        // until an evicted connection closes.
        let closer = {
            let conns = conns.clone();
            let id = first[0].id;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                conns.remove(id);
            })
        };
        assert!(matches!(conns.try_admit(1), Admit::Wait));
        assert!(conns.admit(1).await.is_some());
        closer.await.unwrap();
    }
}
