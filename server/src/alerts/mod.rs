//! Alerts: threshold rules with a duration ("for 5 minutes") and hysteresis, per-resource
//! overrides that follow the resource's canonical id, and alert records with a timeline
//! (fired, escalated, de-escalated, acknowledged, analysis attached, resolved).
//!
//! - `rules.rs`: [`rules::RuleSet`] (rules, overrides, `stale_after_s`), the defaults, and
//!   validation. Pure.
//! - `engine.rs`: [`engine::evaluate`], a pure function of its memory, the rules, the resources'
//!   latest samples and `now`, returning [`engine::AlertEvent`]s.
//! - `record.rs`: [`record::AlertRecord`] and the pure updates events and operators make to it.
//! - `service.rs`: the task that evaluates every `alert_interval`, stores the events and asks
//!   Patrol for a run when an alert fires.
//!
//! # One (rule, resource, series)
//!
//! A rule watches every resource of its kind (or all, `*`) that reports its metric; a metric
//! without labels also covers each labelled series of it. Each (rule, resource, series) is
//! judged on its latest sample at every evaluation; a sample already judged teaches nothing.
//! With `op = above` a level (warning, critical) is *past* when `value >= level`; with `below`
//! when `value <= level`.
//!
//! ```text
//!            past a level                 held for for_s (sample times)
//!   idle ─────────────────▶ pending ─────────────────────────────▶ firing(severity)
//!    ▲                        │ not past any more                    │  │ a higher level held for for_s:
//!    └────────────────────────┘                                      │  │   escalated
//!    ▲                                                               │  │ the current level cleared
//!    │ back past the lowest level ∓ hysteresis: resolved (recovered) │  │ (past level ∓ hysteresis),
//!    └───────────────────────────────────────────────────────────────┘  │ a lower one holds: de-escalated
//!      latest sample older than stale_after_s: resolved (stale)         ▼
//! ```
//!
//! - **Duration.** A level fires (or escalates) only once a sample at least `for_s` after the
//!   first sample past it is still past it. Durations are measured in sample time, so a slow
//!   agent cannot make a condition look longer than it was witnessed; a gap between samples
//!   longer than `stale_after_s` starts the duration over.
//! - **Hysteresis.** A level the alert has reached holds until the value goes back past
//!   `level - hysteresis` (`+` for `below`), so a value wobbling around a threshold neither
//!   resolves and re-fires nor flips severity. Levels above the current severity use the plain
//!   threshold.
//! - **Stale data.** A latest sample older than `stale_after_s` (default 5 minutes) is no
//!   data: nothing stays pending on it, and a firing alert resolves with reason `stale` rather
//!   than fire forever on a value nobody reports any more. If the data comes back still bad, a
//!   new alert fires after `for_s`. For `stale_after_s` after the evaluator starts, stale
//!   data resolves nothing: the server's own downtime is not the resources' silence, and the
//!   agents need time to reconnect and replay their spools.
//! - **Gone.** A firing alert whose series is no longer watched resolves: `resource_gone`,
//!   `no_data` (the resource dropped the metric), or `rule_changed` (rule removed, disabled,
//!   overridden off, or now for another kind). Threshold changes apply from the next sample.
//! - **Identity.** An alert is one episode: its id hashes (rule, resource, series, fired at),
//!   so the same condition firing again later is a new alert with a new id. Overrides are
//!   keyed by canonical resource id, which does not name the node of a guest, so an override
//!   follows a VM or container through a migration.
//! - **Restarts.** Pending durations live only in memory and start over after a restart;
//!   firing alerts are stored, and the engine's memory is rebuilt from them
//!   ([`engine::AlertState::restore`]), so a restart neither re-fires them with new ids nor
//!   loses them.
//! - **Acknowledge** marks an alert (first time only) and adds a timeline entry; it keeps
//!   firing until its condition clears.

pub mod engine;
pub mod record;
pub mod rules;
pub mod service;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
