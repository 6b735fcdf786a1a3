//! Progress of a migration: bytes shipped of the bytes the plans expect,
//! with the rate and what is left, one line per snapshot shipped.

use std::time::Instant;

use crate::size::human;

/// Bytes shipped so far and expected in all.
pub struct Progress {
    start: Instant,
    done: u64,
    expected: u64,
    quiet: bool,
}

impl Progress {
    /// Nothing shipped yet of `expected` bytes.
    pub fn new(expected: u64, quiet: bool) -> Progress {
        Progress {
            start: Instant::now(),
            done: 0,
            expected,
            quiet,
        }
    }

    /// `bytes` more were shipped, as `what` says.
    pub fn shipped(&mut self, what: &str, bytes: u64) {
        self.done += bytes;
        if self.quiet {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let left = self.expected.saturating_sub(self.done);
        let eta = if self.done >= 1 << 20 && left > 0 {
            format!(", about {:.0} s left", left as f64 / rate)
        } else {
            String::new()
        };
        eprintln!(
            "{what}: shipped {}; in all {} of {} at {}/s{eta}",
            human(bytes),
            human(self.done),
            human(self.expected.max(self.done)),
            human(rate as u64)
        );
    }
}
