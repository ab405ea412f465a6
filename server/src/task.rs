//! Spawning the server's long-running tasks, each inside a span named after it.

use tokio::task::JoinHandle;
use tracing::Instrument;

/// Spawns a task inside a span named after it, so its logs say where they come from.
pub fn spawn_named<F>(name: &'static str, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.instrument(tracing::debug_span!("task", name)))
}
