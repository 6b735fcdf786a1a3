//! Fuzz target: requests, responses and inode headers built from arbitrary
//! bytes survive emit and parse, as checked by
//! [`sheepdog_tests::fuzz_checks::roundtrip`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sheepdog_tests::fuzz_checks::roundtrip(data));
