//! Progress on stderr: bytes, rate and time left.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::size::human;

/// A progress line that redraws itself at most a few times a second.
pub struct Progress {
    enabled: bool,
    what: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// Progress of `total` bytes; shown when `forced` or stderr is a
    /// terminal, never when `quiet`.
    pub fn new(what: &'static str, total: u64, forced: bool, quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && (forced || std::io::stderr().is_terminal()),
            what,
            total,
            done: 0,
            start: Instant::now(),
            last: None,
        }
    }

    /// `n` more bytes are done.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now - l < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(now);
        self.draw(false);
    }

    fn draw(&self, last: bool) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        let rate = self.done as f64 / secs;
        let left = self.total.saturating_sub(self.done) as f64 / rate.max(1.0);
        let pct = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let line = format!(
            "\r{} {} / {} ({pct:.0}%), {}/s, {}",
            self.what,
            human(self.done),
            human(self.total),
            human(rate as u64),
            if last {
                format!("{secs:.1} s")
            } else {
                format!("ETA {left:.0} s")
            }
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{line}\x1b[K");
        if last {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }

    /// Draw the final line.
    pub fn finish(&self) {
        if self.enabled {
            self.draw(true);
        }
    }
}
