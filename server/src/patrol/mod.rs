//! Patrol: deterministic detectors over a snapshot of state and history, each a pure
//! function of its inputs and `now`: `heuristics` (threshold rules), `forecast` (capacity
//! forecasts), and `finding` (the vocabulary of what they report).

pub mod finding;
pub mod forecast;
pub mod heuristics;
