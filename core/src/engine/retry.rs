//! Bounded retries with exponential backoff for transient results. Time is
//! whatever the caller passes in, in nanoseconds from any origin.

/// How often and how patiently to retry transient results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries per request before giving up.
    pub max_retries: u8,
    /// Wait before the first retry, in nanoseconds.
    pub initial_backoff: u64,
    /// Longest wait between retries, in nanoseconds.
    pub max_backoff: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 8,
            initial_backoff: 100_000_000,
            max_backoff: 5_000_000_000,
        }
    }
}

impl RetryPolicy {
    /// The default backoff, with as many retries as it takes for the waits
    /// to add up to `total` nanoseconds: a cluster that waits for nodes to
    /// join, or halts for want of copies, gets that long to recover.
    pub fn lasting(total: u64) -> RetryPolicy {
        let mut p = RetryPolicy::default();
        let mut waited = 0u64;
        let mut attempt = 0u8;
        while waited < total && attempt < u8::MAX {
            attempt += 1;
            p.max_retries = attempt;
            waited = waited.saturating_add(p.backoff(attempt).unwrap_or(p.max_backoff));
        }
        p.max_retries = attempt.max(1);
        p
    }

    /// The wait before retry number `attempt` (1 for the first retry), or
    /// `None` once the retries are used up.
    pub fn backoff(&self, attempt: u8) -> Option<u64> {
        if attempt == 0 || attempt > self.max_retries {
            return None;
        }
        let shift = u32::from(attempt - 1).min(40);
        Some(
            self.initial_backoff
                .saturating_mul(1u64 << shift)
                .min(self.max_backoff),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RetryPolicy;

    #[test]
    fn lasting_adds_up_to_the_time_given() {
        let total = |p: RetryPolicy| {
            (1..=p.max_retries)
                .filter_map(|a| p.backoff(a))
                .sum::<u64>()
        };
        for secs in [1u64, 2, 30, 120] {
            let p = RetryPolicy::lasting(secs * 1_000_000_000);
            let t = total(p);
            assert!(t >= secs * 1_000_000_000, "{secs} s: {t}");
            assert!(t < secs * 1_000_000_000 + p.max_backoff, "{secs} s: {t}");
        }
        assert_eq!(RetryPolicy::lasting(30_000_000_000).max_retries, 11);
        assert_eq!(RetryPolicy::lasting(0).max_retries, 1);
    }
}
