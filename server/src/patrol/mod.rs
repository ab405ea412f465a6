//! Patrol: deterministic detectors over a snapshot of state and history, each a pure
//! function of its inputs and `now`. So far: capacity forecasts (`forecast`).

pub mod forecast;
