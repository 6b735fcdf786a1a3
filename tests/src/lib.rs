//! Integration tests, the reference server, trace decoding, deterministic
//! simulation and fuzzing support for sheepdog-core.

pub mod fuzz_checks;
pub mod nbd_fuzz;
pub mod server;
pub mod sim;
pub mod trace;
