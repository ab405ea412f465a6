//! Running the agent's collectors in-process for collector tests: start them, wait for a
//! batch that satisfies a condition, and read values out of batches.

use std::time::Duration;
use tokio::sync::{mpsc, watch};
use warden_agent::collectors::{self, CollectorsConfig};
use warden_shared::telemetry::{HealthStatus, Resource, TelemetryBatch};

/// Collectors running on the current tokio runtime.
pub struct Running {
    rx: mpsc::Receiver<TelemetryBatch>,
    stop: watch::Sender<bool>,
}

/// Starts every collector `cfg` enables, reporting as `hostname`.
///
/// # Panics
/// Outside a tokio runtime.
pub fn start(cfg: &CollectorsConfig, hostname: &str) -> Running {
    let (tx, rx) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    // The tasks end when `stop` fires or the receiver drops; their handles are not needed.
    drop(collectors::spawn_all(cfg, hostname, tx, stop_rx));
    Running { rx, stop }
}

impl Running {
    /// The next batch for which `f` holds, within 20 s.
    ///
    /// # Panics
    /// On timeout (naming `what`) or when the collectors stopped.
    pub async fn next_where(
        &mut self,
        what: &str,
        f: impl Fn(&TelemetryBatch) -> bool,
    ) -> TelemetryBatch {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let b = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("collector stopped");
            if f(&b) {
                return b;
            }
        }
    }

    /// Stops the collectors.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// The batch's health status.
///
/// # Panics
/// If the batch carries no health (every collector batch does).
pub fn status(b: &TelemetryBatch) -> HealthStatus {
    b.health
        .as_ref()
        .expect("every batch carries health")
        .status
}

/// The value of `metric` on resource `id`, if the batch has it.
pub fn value(b: &TelemetryBatch, id: &str, metric: &str) -> Option<f64> {
    b.samples
        .iter()
        .find(|s| s.resource_id.as_str() == id && s.metric == metric)
        .map(|s| s.value)
}

/// The resource `id`.
///
/// # Panics
/// If the batch lacks it, listing what it has.
pub fn resource<'a>(b: &'a TelemetryBatch, id: &str) -> &'a Resource {
    b.resources
        .iter()
        .find(|r| r.id.as_str() == id)
        .unwrap_or_else(|| {
            panic!(
                "{id} missing from {:?}",
                b.resources
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
            )
        })
}

/// A multi-threaded runtime for collector tests.
///
/// # Panics
/// If the runtime cannot start.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
