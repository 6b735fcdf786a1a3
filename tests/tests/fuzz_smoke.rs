//! A deterministic stand-in for the fuzz targets in `tests/fuzz`, for CI:
//! runs [`decode`] and [`roundtrip`] on pseudo-random inputs from a
//! fixed-seed xorshift generator and on mutated copies of every header and
//! payload in the recorded traces, [`engine`] (the engine against a
//! hostile server) and [`nbd`] (the NBD codec against an arbitrary client)
//! on pseudo-random inputs. A failure names the input that broke a
//! property, so it can be replayed by hand or added to the fuzz corpus.

use std::panic::{catch_unwind, resume_unwind};

use sheepdog_tests::fuzz_checks::{decode, roundtrip};
use sheepdog_tests::nbd_fuzz::nbd;
use sheepdog_tests::sim::fuzz::engine;
use sheepdog_tests::trace::load_all;

/// Random inputs per check. `decode` fills a 2 MiB bitmap for every
/// input, which costs far more than the other checks in a debug build.
const DECODE_INPUTS: usize = 20_000;
/// Random inputs for `roundtrip`.
const ROUNDTRIP_INPUTS: usize = 200_000;
/// Longest random input.
const MAX_LEN: usize = 600;
/// Inputs for the engine target (each runs a short hostile simulation).
const ENGINE_INPUTS: usize = 200;
/// Inputs for the NBD codec target.
const NBD_INPUTS: usize = 20_000;
/// Mutants made from each recorded header or payload.
const MUTANTS_PER_SEED: usize = 8;

/// Marsaglia's xorshift64: small, fast and the same on every platform.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// An input of 0 to `MAX_LEN` random bytes.
    fn input(&mut self) -> Vec<u8> {
        let len = self.below(MAX_LEN + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// `seed` with one to four bytes replaced and, one time in four, cut
    /// short at a random length.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        if !out.is_empty() {
            for _ in 0..=self.below(4) {
                let at = self.below(out.len());
                out[at] = self.next() as u8;
            }
        }
        if self.below(4) == 0 {
            out.truncate(self.below(out.len() + 1));
        }
        out
    }
}

/// Run `check` on `input`, naming the input if it panics.
fn run(check: fn(&[u8]), name: &str, input: &[u8]) {
    if let Err(panic) = catch_unwind(|| check(input)) {
        eprintln!("{name} failed on {} bytes: {input:02x?}", input.len());
        resume_unwind(panic);
    }
}

/// Every recorded header, every recorded payload (inode headers, bitmaps,
/// names) and each header followed by its payload.
fn trace_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for trace in load_all() {
        for frame in trace.frames {
            seeds.push(frame.header.to_vec());
            if !frame.payload.is_empty() {
                seeds.push(frame.payload.clone());
                seeds.push([&frame.header[..], &frame.payload].concat());
            }
        }
    }
    seeds
}

#[test]
fn decode_random_inputs() {
    let mut rng = XorShift(0x5eed_d0c5_2018_0628);
    for _ in 0..DECODE_INPUTS {
        run(decode, "decode", &rng.input());
    }
}

#[test]
fn roundtrip_random_inputs() {
    let mut rng = XorShift(0x0b5e_55ed_7000_0048);
    for _ in 0..ROUNDTRIP_INPUTS {
        run(roundtrip, "roundtrip", &rng.input());
    }
}

#[test]
fn trace_mutants() {
    let mut rng = XorShift(0x7ace_0001_5ee7_d06e);
    let seeds = trace_seeds();
    assert!(seeds.len() > 200, "only {} trace seeds", seeds.len());
    for seed in &seeds {
        run(decode, "decode", seed);
        run(roundtrip, "roundtrip", seed);
        for _ in 0..MUTANTS_PER_SEED {
            let mutant = rng.mutate(seed);
            run(decode, "decode", &mutant);
            run(roundtrip, "roundtrip", &mutant);
        }
    }
}

#[test]
fn engine_against_a_hostile_server_on_random_inputs() {
    let mut rng = XorShift(0x0e46_1e5e_ed00_0009);
    for _ in 0..ENGINE_INPUTS {
        run(engine, "engine", &rng.input());
    }
}

#[test]
fn nbd_codec_against_random_clients() {
    let mut rng = XorShift(0x00bd_5e4e_c0de_0809);
    for _ in 0..NBD_INPUTS {
        run(nbd, "nbd", &rng.input());
    }
}
