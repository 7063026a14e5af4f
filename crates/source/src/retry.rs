//! Retry timing: exponential backoff with jitter, honouring the server's
//! `Retry-After`. Which errors are retried is decided by
//! [`crate::SourceError::is_retryable`].

use crate::error::SourceError;
use std::time::Duration;

/// How long to wait before retry number `attempt` (0-based).
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub max_retries: u32,
}

impl Backoff {
    /// The delay before retry `attempt`: `initial * 2^attempt` capped at
    /// `max`, with "equal jitter" (a random point in the upper half) so that
    /// services that failed together do not retry in lockstep. A server's
    /// `Retry-After` replaces it (capped at `max`): the server knows best when
    /// it can take the next request.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, random: f64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        let jittered = exp.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0));
        match retry_after {
            Some(wait) => wait.min(self.max),
            None => jittered,
        }
    }
}

impl Backoff {
    /// How long to wait before retrying `error` at retry number `attempt`
    /// (0-based), or `None` when it is not retried: not retryable, or the
    /// retries are used up.
    pub fn retry_delay(&self, attempt: u32, error: &SourceError) -> Option<Duration> {
        (error.is_retryable() && attempt < self.max_retries)
            .then(|| self.delay(attempt, error.retry_after(), fastrand::f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_retries: 8,
        }
    }

    #[test]
    fn grows_exponentially_within_jitter_bounds() {
        let b = backoff();
        assert_eq!(b.delay(0, None, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(0, None, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, None, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(3, None, 0.0), Duration::from_millis(400));
    }

    #[test]
    fn is_capped_at_max() {
        let b = backoff();
        assert_eq!(b.delay(20, None, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX, None, 1.0), Duration::from_secs(2));
    }

    #[test]
    fn honours_retry_after_up_to_max() {
        let b = backoff();
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(1)), 0.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(30)), 0.0),
            Duration::from_secs(2)
        );
        // Retry-After: 0 means "now": no reason to wait for the backoff.
        assert_eq!(b.delay(5, Some(Duration::ZERO), 1.0), Duration::ZERO);
    }
}
