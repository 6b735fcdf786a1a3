//! Fuzz target: every sheepdog-core decoder on arbitrary bytes, with the
//! properties of [`sheepdog_tests::fuzz_checks::decode`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sheepdog_tests::fuzz_checks::decode(data));
