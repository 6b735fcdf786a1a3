//! The engine fuzz target's body, shared with its seeded run in the test
//! suite (`tests/fuzz_smoke.rs`): the engine against a hostile reference
//! server, the fuzzer's bytes choosing the operations (first half) and
//! which replies are hostile and how (second half). The workload checks
//! the properties: every read matches the model or ends in an error,
//! every write is in the model or ends in an error, no operation is left
//! pending, and what was reported written is on the server.

use super::{Config, Workload};

/// Operations per input.
pub const OPS: u64 = 60;

/// Run one input; panics when a property does not hold.
pub fn engine(data: &[u8]) {
    let seed = data
        .iter()
        .fold(7u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let (ops, faults) = data.split_at(data.len() / 2);
    let mut cfg = Config::hostile(seed);
    // Far more hostile replies than the long simulation runs: each input
    // is short.
    cfg.faults.hostile = 50;
    cfg.max_io = 1 << 20;
    let mut w = Workload::scripted(cfg, ops);
    w.wire.script_faults(faults);
    w.run(OPS);
}
