//! The registry of connected agents: who is online, since when, and a handle to send them
//! control requests (request/response correlated by id inside the session).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use warden_shared::proto::{AgentResponse, ServerRequest};

/// A control request on its way to a session, with where the answer goes.
pub type ControlCall = (ServerRequest, oneshot::Sender<AgentResponse>);

struct Entry {
    session: u64,
    since_ms: i64,
    conn: quinn::Connection,
    control: mpsc::Sender<ControlCall>,
}

/// Connected agents by id.
#[derive(Default)]
pub struct LiveAgents {
    next: AtomicU64,
    map: Mutex<HashMap<String, Entry>>,
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The agent has no live session.
    #[error("agent is not connected")]
    NotConnected,
    /// The session ended before answering.
    #[error("agent disconnected before answering")]
    Dropped,
    /// No answer in time.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
}

impl LiveAgents {
    /// Registers a session, closing any older session of the same agent. Returns the
    /// session number to pass to [`LiveAgents::remove`].
    pub fn insert(
        &self,
        agent: &str,
        conn: quinn::Connection,
        control: mpsc::Sender<ControlCall>,
        now_ms: i64,
    ) -> u64 {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        let old = self.lock().insert(
            agent.to_owned(),
            Entry {
                session,
                since_ms: now_ms,
                conn,
                control,
            },
        );
        if let Some(old) = old {
            old.conn.close(
                warden_shared::close::REPLACED.into(),
                b"replaced by a newer connection",
            );
        }
        session
    }

    /// Removes the session if it is still the current one for `agent`.
    pub fn remove(&self, agent: &str, session: u64) {
        let mut map = self.lock();
        if map.get(agent).is_some_and(|e| e.session == session) {
            map.remove(agent);
        }
    }

    /// Every connected agent with when its session started.
    pub fn connected(&self) -> HashMap<String, i64> {
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.since_ms))
            .collect()
    }

    /// The address the agent's live session comes from, if it has one.
    pub fn remote(&self, agent: &str) -> Option<std::net::SocketAddr> {
        self.lock().get(agent).map(|e| e.conn.remote_address())
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no agent is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the agent's connection with `code` and `reason`.
    pub fn disconnect(&self, agent: &str, code: u32, reason: &str) {
        if let Some(e) = self.lock().remove(agent) {
            e.conn.close(code.into(), reason.as_bytes());
        }
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self, code: u32, reason: &str) {
        for (_, e) in self.lock().drain() {
            e.conn.close(code.into(), reason.as_bytes());
        }
    }

    /// Sends a control request and waits for the agent's answer.
    ///
    /// # Errors
    /// [`ControlError`] when the agent is offline, disconnects, or times out.
    pub async fn request(
        &self,
        agent: &str,
        req: ServerRequest,
        timeout: Duration,
    ) -> Result<AgentResponse, ControlError> {
        let control = self
            .lock()
            .get(agent)
            .map(|e| e.control.clone())
            .ok_or(ControlError::NotConnected)?;
        let (tx, rx) = oneshot::channel();
        control
            .send((req, tx))
            .await
            .map_err(|_| ControlError::Dropped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(ControlError::Dropped),
            Err(_) => Err(ControlError::Timeout(timeout)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A poisoned lock only means another thread panicked mid-update of a plain map;
        // the map itself is still consistent enough to keep serving.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
