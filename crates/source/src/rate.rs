//! The per-source request-rate cap, adaptive: request starts are spaced at
//! least `1 / rate` apart across all services of the source (retries
//! included). The rate starts at `max_requests_per_second`; every throttling
//! answer (429) halves it down to a floor, and a run of successes raises it
//! again by half, never above the configured cap. The gateway's limits are
//! per user and not published (APIG.0308), so the source finds them by
//! listening rather than guessing.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;

/// The lowest rate throttling brings a source to (unless its configured
/// rate is lower still): slow enough to let a shared gateway limit recover,
/// fast enough that a throttled source still makes progress.
pub const FLOOR_PER_SECOND: f64 = 0.2;
/// The lowest `max_requests_per_second` a source may have: one request every 100 s.
/// Lower rates make a run last for hours, and their intervals overflow.
pub const MIN_PER_SECOND: f64 = 0.01;
/// The highest `max_requests_per_second` a source may have. Higher rates are no cap at
/// all (and no gateway takes them).
pub const MAX_PER_SECOND: f64 = 10_000.0;
/// Successes in a row after which the rate goes up again.
pub const RECOVERY_RUN: u32 = 10;
/// How much the rate goes up after a run of successes.
pub const RECOVERY_FACTOR: f64 = 1.5;

/// Spaces request starts evenly at a rate that adapts to throttling. Shared
/// by every request of one source.
#[derive(Debug)]
pub struct RateLimiter {
    /// The source's name, for the log line when the rate changes.
    source: String,
    configured: f64,
    floor: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    /// The earliest start of the next request.
    next: Option<Instant>,
    /// Successes since the last throttling or rate increase.
    successes: u32,
}

impl RateLimiter {
    /// `per_second` should be within [`MIN_PER_SECOND`]..=[`MAX_PER_SECOND`] (the
    /// config refuses other values). A lower one is raised to [`MIN_PER_SECOND`], so
    /// that no rate is so low that its interval overflows (which would turn the cap
    /// off); a value that is not a number is taken as "no cap".
    pub fn new(source: &str, per_second: f64) -> Self {
        let configured = if per_second.is_nan() {
            f64::MAX
        } else {
            per_second.max(MIN_PER_SECOND)
        };
        RateLimiter {
            source: source.to_owned(),
            configured,
            floor: FLOOR_PER_SECOND.min(configured),
            state: Mutex::new(State {
                rate: configured,
                next: None,
                successes: 0,
            }),
        }
    }

    /// The rate in requests per second now.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Waits until the next request may start, and books that slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut state = self.lock();
            let now = Instant::now();
            let slot = match state.next {
                Some(at) if at > now => at,
                _ => now,
            };
            state.next = Some(slot + interval(state.rate));
            slot
        };
        // Sleeping until a slot that is already due would still wait for
        // the timer's next tick.
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// A request was answered normally: after a run of these the rate goes
    /// back up.
    pub fn on_success(&self) {
        let mut state = self.lock();
        state.successes += 1;
        if state.successes < RECOVERY_RUN || state.rate >= self.configured {
            return;
        }
        state.successes = 0;
        let old = state.rate;
        state.rate = (old * RECOVERY_FACTOR).min(self.configured);
        drop(state);
        info!(
            source = %self.source,
            old_rate = old,
            new_rate = self.rate(),
            "Request rate raised after a run of successes."
        );
    }

    /// The server throttled a request: halve the rate (down to the floor).
    pub fn on_throttled(&self) {
        let mut state = self.lock();
        state.successes = 0;
        let old = state.rate;
        state.rate = (old / 2.0).max(self.floor);
        let new = state.rate;
        drop(state);
        if new != old {
            info!(
                source = %self.source,
                old_rate = old,
                new_rate = new,
                "Request rate lowered after throttling."
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few numbers updated in one step each; a panic in
        // another thread cannot leave them half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn interval(rate: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_by_the_interval() {
        let limiter = RateLimiter::new("s", 4.0);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // Five starts at 4/s: the fifth starts one second after the first.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_banked() {
        let limiter = RateLimiter::new("s", 2.0);
        limiter.acquire().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        // After a long pause the first request goes at once, the next waits a full interval.
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_and_widens_the_spacing() {
        let limiter = RateLimiter::new("s", 8.0);
        limiter.on_throttled();
        assert_eq!(limiter.rate(), 4.0);
        limiter.on_throttled();
        assert_eq!(limiter.rate(), 2.0);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        // At 2/s three starts span one second (at 8/s they would span 250 ms).
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn rates_too_low_to_space_requests_are_raised_and_never_turn_the_cap_off() {
        for (asked, kept) in [
            (1e-300, MIN_PER_SECOND),
            (0.0, MIN_PER_SECOND),
            (-5.0, MIN_PER_SECOND),
            (f64::NEG_INFINITY, MIN_PER_SECOND),
            (f64::NAN, f64::MAX),
            (2.0, 2.0),
        ] {
            assert_eq!(RateLimiter::new("s", asked).rate(), kept, "{asked}");
        }
        let slowest = RateLimiter::new("s", 1e-300);
        let start = Instant::now();
        slowest.acquire().await;
        slowest.acquire().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(100),
            "the cap is still on"
        );
    }

    #[test]
    fn throttling_stops_at_the_floor() {
        let limiter = RateLimiter::new("s", 10.0);
        for _ in 0..20 {
            limiter.on_throttled();
        }
        assert_eq!(limiter.rate(), FLOOR_PER_SECOND);
        // A configured rate below the floor is its own floor.
        let slow = RateLimiter::new("s", 0.05);
        slow.on_throttled();
        assert_eq!(slow.rate(), 0.05);
    }

    #[test]
    fn a_run_of_successes_raises_the_rate_up_to_the_cap() {
        let limiter = RateLimiter::new("s", 10.0);
        for _ in 0..3 {
            limiter.on_throttled();
        }
        assert_eq!(limiter.rate(), 1.25);
        for _ in 0..RECOVERY_RUN - 1 {
            limiter.on_success();
        }
        assert_eq!(limiter.rate(), 1.25, "one success short of a run");
        limiter.on_success();
        assert_eq!(limiter.rate(), 1.875);
        for _ in 0..10 * RECOVERY_RUN {
            limiter.on_success();
        }
        assert_eq!(limiter.rate(), 10.0, "never above the configured rate");
    }

    #[test]
    fn throttling_breaks_a_run_of_successes() {
        let limiter = RateLimiter::new("s", 10.0);
        limiter.on_throttled();
        for _ in 0..RECOVERY_RUN - 1 {
            limiter.on_success();
        }
        limiter.on_throttled();
        for _ in 0..RECOVERY_RUN - 1 {
            limiter.on_success();
        }
        assert_eq!(limiter.rate(), 2.5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_source_still_makes_progress() {
        // Every other request throttled: the rate falls to the floor and
        // stays there, but requests keep starting at that pace.
        let limiter = RateLimiter::new("s", 100.0);
        let start = Instant::now();
        for _ in 0..40 {
            limiter.acquire().await;
            limiter.on_throttled();
            limiter.acquire().await;
            limiter.on_success();
        }
        assert_eq!(limiter.rate(), FLOOR_PER_SECOND);
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_secs(80 * 5),
            "80 requests at no less than 0.2/s: {elapsed:?}"
        );
        assert!(
            elapsed > Duration::from_secs(60 * 5),
            "it did slow down: {elapsed:?}"
        );
    }
}
