//! Deterministic simulation: the engine against the pure reference server,
//! with replies reordered and failures injected, every read checked
//! against a plain model of each disk. A seed reproduces a run exactly.

pub mod fuzz;
pub mod hostile;
pub mod model;
pub mod rng;
pub mod wire;
pub mod workload;

pub use workload::{Config, Stats, Workload};
