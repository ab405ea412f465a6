//! The agent-record writer: the updates sessions make to agent records (the hello when an
//! agent connects, when it was last seen when it disconnects) applied on one thread, all
//! queued updates in one store transaction. Thousands of agents reconnecting at once then
//! cost a few commits instead of one fsync each, and never hold tokio's blocking pool
//! waiting for the store's write lock (which starved the reads that precede a welcome).

use crate::model::AgentRecord;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Most updates applied in one transaction.
const MAX_PER_COMMIT: usize = 4096;
/// Updates waiting for the thread before senders wait.
const QUEUE: usize = 16_384;

type Update = Box<dyn FnOnce(&mut AgentRecord) + Send>;
type Done = oneshot::Sender<Result<bool, String>>;

/// Cloneable handle used by sessions.
#[derive(Clone)]
pub struct RecordWriter {
    tx: mpsc::Sender<(String, Update, Done)>,
}

impl RecordWriter {
    /// Applies `f` to the agent's record and waits until it is stored: `Ok(false)` if
    /// there is no such agent, `Err` with the reason if the store failed.
    ///
    /// # Errors
    /// The store's failure, as text, or that the writer is gone.
    pub async fn update(
        &self,
        agent_id: &str,
        f: impl FnOnce(&mut AgentRecord) + Send + 'static,
    ) -> Result<bool, String> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send((agent_id.to_owned(), Box::new(f), done))
            .await
            .map_err(|_| "the agent-record writer is gone".to_owned())?;
        rx.await
            .map_err(|_| "the agent-record writer is gone".to_owned())?
    }
}

/// Starts the writer on a thread of its own.
///
/// # Errors
/// If the thread cannot be spawned.
pub fn spawn(store: Arc<Store>) -> std::io::Result<RecordWriter> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("agent-records".into())
        .spawn(move || run(&store, rx))?;
    Ok(RecordWriter { tx })
}

fn run(store: &Store, mut rx: mpsc::Receiver<(String, Update, Done)>) {
    while let Some(first) = rx.blocking_recv() {
        let mut queued = vec![first];
        while queued.len() < MAX_PER_COMMIT {
            match rx.try_recv() {
                Ok(next) => queued.push(next),
                Err(_) => break,
            }
        }
        let mut updates = Vec::with_capacity(queued.len());
        let mut replies = Vec::with_capacity(queued.len());
        for (id, f, done) in queued {
            updates.push((id, f));
            replies.push(done);
        }
        match store.update_agents(updates) {
            Ok(found) => {
                for (done, found) in replies.into_iter().zip(found) {
                    let _ = done.send(Ok(found));
                }
            }
            Err(err) => {
                warn!(error = %err, updates = replies.len(), "could not store agent record updates");
                for done in replies {
                    let _ = done.send(Err(err.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            org_id: "default".into(),
            hostname: String::new(),
            version: String::new(),
            enrolled_at_ms: 1,
            revoked_at_ms: None,
            cert_serial: "01".into(),
            cert_not_after_unix: 2,
            last_seen_ms: None,
            protocol: None,
            dropped_samples: 0,
            collectors: std::collections::BTreeMap::new(),
            identity_conflict: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_updates_are_all_stored_and_unknown_agents_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("w.redb")).unwrap());
        for i in 0..500 {
            store.insert_agent(&agent(&format!("a{i}"))).unwrap();
        }
        let records = spawn(store.clone()).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500i64 {
            let records = records.clone();
            tasks.spawn(async move {
                records
                    .update(&format!("a{i}"), move |a| {
                        a.hostname = format!("host{i}");
                        a.last_seen_ms = Some(i);
                    })
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap(), Ok(true));
        }
        // Two updates of one agent apply in order.
        let first = records.update("a7", |a| a.version = "1".into());
        let second = records.update("a7", |a| a.version.push('2'));
        assert_eq!(tokio::join!(first, second), (Ok(true), Ok(true)));
        assert_eq!(records.update("nobody", |_| {}).await, Ok(false));
        for i in 0..500i64 {
            let a = store.get_agent(&format!("a{i}")).unwrap().unwrap();
            assert_eq!(a.hostname, format!("host{i}"));
            assert_eq!(a.last_seen_ms, Some(i));
        }
        assert_eq!(store.get_agent("a7").unwrap().unwrap().version, "12");
        assert!(store.get_agent("nobody").unwrap().is_none());
    }
}
