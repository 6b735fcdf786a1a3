//! A small deterministic random generator (xorshift64*): the same seed
//! gives the same simulation on every machine.

/// xorshift64* generator, optionally fed by a script of bytes first (so
/// that a fuzzer's input decides the choices).
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    script: Vec<u8>,
    at: usize,
}

impl Rng {
    /// A generator from a seed (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            script: Vec::new(),
            at: 0,
        }
    }

    /// A generator whose first values come from `script`, 8 bytes each,
    /// then from a generator seeded by it.
    pub fn scripted(script: &[u8]) -> Rng {
        let seed = script.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = Rng::new(seed);
        rng.script = script.to_vec();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if self.at < self.script.len() {
            let mut b = [0u8; 8];
            let n = (self.script.len() - self.at).min(8);
            b[..n].copy_from_slice(&self.script[self.at..self.at + n]);
            self.at += n;
            return u64::from_le_bytes(b);
        }
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// Fill with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}
