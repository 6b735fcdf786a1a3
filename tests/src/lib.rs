//! Integration tests, trace decoding and fuzzing support for sheepdog-core.

pub mod trace;
pub mod fuzz_checks;
pub mod server;
