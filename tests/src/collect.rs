//! Running the agent's collectors in-process for collector tests: start them, wait for a
//! batch that satisfies a condition, read values out of batches, and check that every metric
//! carries its provenance.

use std::time::Duration;
use tokio::sync::{mpsc, watch};
use warden_agent::collectors::{self, CollectorsConfig};
use warden_shared::telemetry::{HealthStatus, ProvenancedBatch, Resource, TelemetryBatch};

/// Collectors running on the current tokio runtime.
pub struct Running {
    rx: mpsc::Receiver<ProvenancedBatch>,
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
        self.next_provenanced_where(what, f).await.batch
    }

    /// Like [`Running::next_where`], with the provenance the batch carries.
    ///
    /// # Panics
    /// On timeout (naming `what`) or when the collectors stopped.
    pub async fn next_provenanced_where(
        &mut self,
        what: &str,
        f: impl Fn(&TelemetryBatch) -> bool,
    ) -> ProvenancedBatch {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // The health of the last batch that did not match, for the timeout's message.
        let mut last = None;
        loop {
            let b = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; health of the last batch: {last:?}")
                })
                .expect("collector stopped");
            if f(&b.batch) {
                return b;
            }
            last = b.batch.health;
        }
    }

    /// Stops the collectors.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Checks that every metric in `b` has a provenance entry for its resource kind: the
/// collector's table covers what it emitted in this run.
///
/// # Panics
/// Listing the (resource kind, metric) pairs without one, or when `b` has no samples.
pub fn assert_provenance_complete(b: &ProvenancedBatch) {
    assert!(
        !b.batch.samples.is_empty(),
        "the {} batch has no samples to check",
        b.batch.collector
    );
    let missing = b.unsourced();
    assert!(
        missing.is_empty(),
        "metrics of the {} collector without provenance: {missing:?}",
        b.batch.collector
    );
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
