//! The engine against a hostile reference server, with the fuzzer's input
//! choosing the operations and which replies go wrong and how: see
//! `sheepdog_tests::sim::fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sheepdog_tests::sim::fuzz::engine(data));
