//! Integration tests, trace decoding and fuzzing support for sheepdog-core.

pub mod trace;
