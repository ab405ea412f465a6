//! Patrol: deterministic detectors over a snapshot of state and history, each a pure
//! function of its inputs and `now`: `rules` (threshold rules), `forecast` (capacity
//! forecasts), `finding` (the vocabulary of what they report) and `lifecycle` (how findings
//! open, repeat, resolve and come back). [`snapshot`] is the one
//! place that reads the store for them.

pub mod anomaly;
pub mod correlate;
pub mod finding;
pub mod forecast;
#[cfg(test)]
mod ground_truth;
pub mod lifecycle;
pub mod rules;
pub mod run;
pub mod selfwatch;
pub mod settings;
pub mod silence;
pub mod snapshot;
#[cfg(test)]
mod store_tests;

pub use snapshot::snapshot;

/// Whether a firing alert may start a Patrol run: the single hook for the `ai_alerts` licence
/// gate (DESIGN §1.4). Until licences exist every installation may.
pub fn alert_runs_enabled() -> bool {
    true
}
