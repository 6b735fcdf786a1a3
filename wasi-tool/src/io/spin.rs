//! Polling before sleeping: a loop about to sleep in `poll(2)` first
//! looks at its sockets without sleeping for a short window, so that an
//! answer about to come is taken without a wake-up. A process woken on an
//! idle CPU pays for that CPU's halt and wake-up (on a virtual machine a
//! halt is an exit to the host; on bare metal a deep C-state): on this
//! project's machines tens of microseconds, more than everything else a
//! request costs the server, so at queue depth 1 the window decides the
//! latency. The technique is QEMU's IOThread polling (`poll-max-ns`) and
//! SPDK's.
//!
//! QEMU grows its window from 4 µs while waits end within the maximum.
//! Measured here, that never starts: a wait is only short once the CPU
//! stays awake, which only polling does, so a sleeping loop sees long
//! waits and never grows its window. The rule here is simpler: after a
//! wait that ended with something ready within [`BUSY`] windows the next
//! wait polls the whole maximum; after a longer one, or a timeout, it
//! sleeps at once. An idle server never polls; a busy one polls at most
//! the maximum per wait. A maximum of zero turns polling off.

use std::time::Duration;

/// Answers that come within this many maxima keep the loop polling.
pub const BUSY: u32 = 4;

/// The polling window of one loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spin {
    max: Duration,
    window: Duration,
}

impl Spin {
    /// A loop that polls `max` before it sleeps while busy (zero: never).
    pub fn new(max: Duration) -> Spin {
        Spin {
            max,
            window: Duration::ZERO,
        }
    }

    /// How long the next wait may poll before it sleeps.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Learn from a wait that took `waited` (polling and sleeping
    /// together) and ended with something ready (`ready`) or with its
    /// timeout.
    pub fn waited(&mut self, waited: Duration, ready: bool) {
        self.window = if ready && waited <= self.max * BUSY {
            self.max
        } else {
            Duration::ZERO
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(100);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn off_never_polls() {
        let mut s = Spin::new(Duration::ZERO);
        for w in [0, 1, 10, 1_000] {
            s.waited(us(w), true);
            assert_eq!(s.window(), Duration::ZERO);
        }
    }

    #[test]
    fn sleeps_until_answers_come_soon_then_polls_the_maximum() {
        let mut s = Spin::new(MAX);
        assert_eq!(s.window(), Duration::ZERO, "starts by sleeping");
        s.waited(us(350), true);
        assert_eq!(s.window(), MAX, "an answer within four maxima: busy");
        s.waited(us(20), true);
        assert_eq!(s.window(), MAX);
        s.waited(us(400), true);
        assert_eq!(s.window(), MAX, "the edge is still busy");
    }

    #[test]
    fn an_idle_client_or_a_timeout_stops_polling_at_once() {
        let mut s = Spin::new(MAX);
        s.waited(us(50), true);
        assert_eq!(s.window(), MAX);
        s.waited(us(401), true);
        assert_eq!(
            s.window(),
            Duration::ZERO,
            "answers that come seldom cost no polling"
        );
        s.waited(us(50), true);
        assert_eq!(s.window(), MAX);
        s.waited(us(30), false);
        assert_eq!(
            s.window(),
            Duration::ZERO,
            "nothing came: no reason to poll"
        );
        s.waited(Duration::from_secs(1), false);
        assert_eq!(s.window(), Duration::ZERO);
    }
}
