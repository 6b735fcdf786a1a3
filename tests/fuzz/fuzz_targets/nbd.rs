//! Fuzz target: the NBD codec (handshake and transmission) against an
//! arbitrary client, as checked by [`sheepdog_tests::nbd_fuzz::nbd`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sheepdog_tests::nbd_fuzz::nbd(data));
