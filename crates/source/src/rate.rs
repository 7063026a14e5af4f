//! The per-source request-rate cap: request starts are spaced at least
//! `1 / max_requests_per_second` apart, across all services of the source
//! and including retries.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces request starts evenly. Shared by every request of one source.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_second` must be > 0 (the config validates it).
    pub fn new(per_second: f64) -> Self {
        let interval = if per_second.is_finite() && per_second > 0.0 {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::ZERO
        };
        RateLimiter {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Waits until the next request may start, and books that slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = match *next {
                Some(at) if at > now => at,
                _ => now,
            };
            *next = Some(slot + self.interval);
            slot
        };
        // Sleeping until a slot that is already due would still wait for
        // the timer's next tick.
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_by_the_interval() {
        let limiter = RateLimiter::new(4.0);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // Five starts at 4/s: the fifth starts one second after the first.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_banked() {
        let limiter = RateLimiter::new(2.0);
        limiter.acquire().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        // After a long pause the first request goes at once, the next waits a full interval.
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }
}
