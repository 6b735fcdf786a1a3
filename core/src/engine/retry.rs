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
