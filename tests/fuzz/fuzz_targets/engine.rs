//! The engine against the reference server, with the fuzzer's input
//! choosing the operations (and the fault schedule's seed): every read
//! must match the model, nothing may panic or stall.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sheepdog_tests::sim::{Config, Workload};

fuzz_target!(|data: &[u8]| {
    let seed = data.iter().fold(7u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let mut cfg = Config::stormy(seed);
    cfg.max_io = 1 << 20;
    let mut w = Workload::scripted(cfg, data);
    w.run(60);
});
