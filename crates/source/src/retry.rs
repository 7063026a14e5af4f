//! Retry timing: exponential backoff with jitter, honouring the server's
//! `Retry-After`. Which errors are retried is decided by
//! [`crate::SourceError::is_retryable`]; an endpoint that cannot be reached gets a
//! budget of its own, [`UNREACHABLE_RETRIES`].

use crate::error::{SourceError, UNREACHABLE_RETRIES};
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
    /// A refused connection, an unknown host or a connect timeout
    /// ([`SourceError::Unreachable`]) is retried at most [`UNREACHABLE_RETRIES`] times.
    pub fn retry_delay(&self, attempt: u32, error: &SourceError) -> Option<Duration> {
        let budget = match error {
            SourceError::Unreachable { .. } => self.max_retries.min(UNREACHABLE_RETRIES),
            _ => self.max_retries,
        };
        (error.is_retryable() && attempt < budget)
            .then(|| self.delay(attempt, error.retry_after(), fastrand::f64()))
    }

    /// [`Backoff::retry_delay`] for a probe (the request that proves the credentials at
    /// the start of a run, an IAM login): one that times out
    /// ([`SourceError::TimedOut`]) gets the small budget of an unreachable endpoint too,
    /// so that a server that accepts connections and never answers fails the run in a
    /// few `request_timeout`s, not in `max_retries` of them.
    pub fn probe_retry_delay(&self, attempt: u32, error: &SourceError) -> Option<Duration> {
        match error {
            SourceError::TimedOut { .. } if attempt >= UNREACHABLE_RETRIES => None,
            _ => self.retry_delay(attempt, error),
        }
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
    fn an_unreachable_endpoint_has_a_small_budget_and_a_probe_that_times_out_too() {
        let b = backoff();
        let unreachable = SourceError::Unreachable {
            request: "GET /x".into(),
            url: "http://127.0.0.1:1".into(),
            origin: "sources.s.endpoint".into(),
            cause: "Connection refused".into(),
        };
        let timed_out = SourceError::TimedOut {
            request: "GET /x".into(),
            url: "http://127.0.0.1:1".into(),
            key: "sources.s.request_timeout".into(),
            after: Duration::from_secs(1),
        };
        let retries = |delay: &dyn Fn(u32) -> Option<Duration>| {
            (0..20)
                .take_while(|&attempt| delay(attempt).is_some())
                .count()
        };
        assert_eq!(retries(&|a| b.retry_delay(a, &unreachable)), 2);
        assert_eq!(retries(&|a| b.probe_retry_delay(a, &unreachable)), 2);
        assert_eq!(retries(&|a| b.retry_delay(a, &timed_out)), 8);
        assert_eq!(retries(&|a| b.probe_retry_delay(a, &timed_out)), 2);
        let none = Backoff {
            max_retries: 0,
            ..backoff()
        };
        assert_eq!(retries(&|a| none.retry_delay(a, &unreachable)), 0);
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
