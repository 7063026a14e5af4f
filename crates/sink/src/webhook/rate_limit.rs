//! The per-sink rate limit of a webhook sink: at most `messages` posts in any window of
//! `per`, for each configured limit (Feishu has two: 5 per second and 100 per minute),
//! and nothing at all while the platform's penalty runs (DingTalk throttles a robot for
//! ten minutes after its 21st message in a minute).
//!
//! A post counts from the moment its answer arrived (or it failed), not from when it
//! was sent, and a post in flight counts as one in every window. The platform counts
//! posts when they reach it, which is after they were sent and before they were
//! answered; so the `messages + 1`-th post starts at least `per` after the answer to
//! the first of them, and therefore reaches the platform at least `per` after it did,
//! however the network delays either. Counting from the send would let jitter put two
//! posts closer together at the platform than they left here.
//!
//! Time is tokio's clock, so the tests run on a paused clock.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::info;

/// At most `messages` posts in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub messages: usize,
    pub per: Duration,
}

impl RateLimit {
    pub const fn new(messages: usize, per: Duration) -> Self {
        RateLimit { messages, per }
    }
}

/// The posts of one sink, paced by its [`RateLimit`]s. Safe to share between sends in
/// flight (`request.concurrency` above 1).
#[derive(Debug)]
pub struct RateLimiter {
    sink: String,
    limits: Vec<RateLimit>,
    state: Mutex<State>,
    /// Woken when a post finishes (a slot may be free).
    finished: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// When recent posts finished, oldest first; pruned past the longest window.
    finished: VecDeque<Instant>,
    in_flight: usize,
    /// No post before this (the platform's penalty, or its `Retry-After`).
    blocked_until: Option<Instant>,
}

/// What a post must wait for.
enum Wait {
    Until(Instant),
    /// A post in flight fills a window: wait for one to finish.
    Finish,
}

/// A post in flight; it counts as finished when dropped (also when the send was
/// cancelled: the request may have reached the platform).
#[must_use = "the post counts as finished when the permit is dropped"]
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.finished.push_back(Instant::now());
        drop(state);
        self.limiter.finished.notify_waiters();
    }
}

impl RateLimiter {
    /// A limiter for the sink `sink` (named in its logs); no limits: never waits, except
    /// for a penalty.
    pub fn new(sink: &str, limits: Vec<RateLimit>) -> Self {
        RateLimiter {
            sink: sink.to_owned(),
            limits,
            state: Mutex::new(State::default()),
            finished: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a post is allowed, and counts it as in flight until the permit is
    /// dropped.
    pub async fn acquire(&self) -> Permit<'_> {
        let mut announced = false;
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            // Registered before the state is read, so a post finishing in between
            // still wakes this one.
            finished.as_mut().enable();
            let wait = {
                let mut state = self.lock();
                let now = Instant::now();
                match self.wait(&mut state, now) {
                    None => {
                        state.in_flight += 1;
                        return Permit { limiter: self };
                    }
                    Some(wait) => wait,
                }
            };
            match wait {
                Wait::Until(until) => {
                    let delay = until.saturating_duration_since(Instant::now());
                    if !announced && delay >= Duration::from_secs(1) {
                        announced = true;
                        info!(sink = %self.sink, wait = %humantime::format_duration(round(delay)),
                            "Waiting for the platform's rate limit before the next message.");
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = &mut finished => {}
                    }
                }
                Wait::Finish => finished.await,
            }
        }
    }

    /// No post before `until` (a rate-limit answer's penalty); a later penalty already
    /// set stays.
    pub fn block_until(&self, until: Instant) {
        let mut state = self.lock();
        if state.blocked_until.is_none_or(|at| at < until) {
            state.blocked_until = Some(until);
        }
    }

    /// What a post must wait for now, if anything.
    fn wait(&self, state: &mut State, now: Instant) -> Option<Wait> {
        let longest = self.limits.iter().map(|l| l.per).max().unwrap_or_default();
        while state
            .finished
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= longest)
        {
            state.finished.pop_front();
        }
        let mut until = state.blocked_until.filter(|at| *at > now);
        for limit in &self.limits {
            if state.in_flight >= limit.messages {
                return Some(Wait::Finish);
            }
            // Finished posts inside the window, newest last.
            let recent: Vec<Instant> = state
                .finished
                .iter()
                .copied()
                .filter(|at| now.saturating_duration_since(*at) < limit.per)
                .collect();
            let count = recent.len() + state.in_flight;
            if count >= limit.messages {
                // The window must lose `excess` of its posts: wait for the
                // `excess`-th oldest to leave it.
                let excess = count + 1 - limit.messages;
                if let Some(at) = recent.get(excess - 1) {
                    let free = *at + limit.per;
                    until = Some(until.map_or(free, |u| u.max(free)));
                }
            }
        }
        until.map(Wait::Until)
    }
}

/// A delay rounded to whole milliseconds, for logs.
fn round(delay: Duration) -> Duration {
    Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// When each of `count` posts was allowed, each finishing `takes` after it started.
    async fn starts(limiter: &RateLimiter, count: usize, takes: Duration) -> Vec<Instant> {
        let mut starts = Vec::new();
        for _ in 0..count {
            let permit = limiter.acquire().await;
            starts.push(Instant::now());
            tokio::time::sleep(takes).await;
            drop(permit);
        }
        starts
    }

    /// The most posts that started in any window of `per`.
    fn most_in_window(starts: &[Instant], per: Duration) -> usize {
        (0..starts.len())
            .map(|i| {
                starts[i..]
                    .iter()
                    .take_while(|at| at.duration_since(starts[i]) < per)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_never_waits() {
        let limiter = RateLimiter::new("x", Vec::new());
        let begin = Instant::now();
        let starts = starts(&limiter, 50, Duration::ZERO).await;
        assert_eq!(starts.len(), 50);
        assert_eq!(Instant::now(), begin);
    }

    #[tokio::test(start_paused = true)]
    async fn one_per_second_spaces_posts_from_the_answers() {
        let limiter = RateLimiter::new("slack", vec![RateLimit::new(1, Duration::from_secs(1))]);
        let takes = Duration::from_millis(200);
        let starts = starts(&limiter, 5, takes).await;
        for pair in starts.windows(2) {
            // One second after the previous answer, not after the previous send.
            assert_eq!(pair[1] - pair[0], Duration::from_secs(1) + takes);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_limits_hold_together() {
        // Feishu's shape, shortened: 5 per 100 ms and 20 per second.
        let limiter = RateLimiter::new(
            "feishu",
            vec![
                RateLimit::new(5, Duration::from_millis(100)),
                RateLimit::new(20, Duration::from_secs(1)),
            ],
        );
        let begin = Instant::now();
        let starts = starts(&limiter, 60, Duration::from_millis(1)).await;
        assert!(most_in_window(&starts, Duration::from_millis(100)) <= 5);
        assert!(most_in_window(&starts, Duration::from_secs(1)) <= 20);
        // The per-second limit makes 60 posts take more than two seconds.
        assert!(Instant::now() - begin > Duration::from_secs(2));
        // The first burst goes at once.
        assert!(
            starts[..5]
                .iter()
                .all(|at| *at - begin < Duration::from_millis(5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_penalty_blocks_every_post_until_it_ends() {
        let limiter = RateLimiter::new("ding", vec![RateLimit::new(20, Duration::from_secs(60))]);
        let begin = Instant::now();
        limiter.block_until(begin + Duration::from_secs(600));
        // An earlier penalty does not shorten it.
        limiter.block_until(begin + Duration::from_secs(5));
        let starts = starts(&limiter, 1, Duration::ZERO).await;
        assert_eq!(starts[0] - begin, Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn posts_in_flight_count_in_every_window() {
        let limiter = Arc::new(RateLimiter::new(
            "x",
            vec![RateLimit::new(2, Duration::from_secs(1))],
        ));
        let first = limiter.acquire().await;
        let second = limiter.acquire().await;
        let third = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let _permit = limiter.acquire().await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!third.is_finished(), "two posts in flight fill the window");
        let released = Instant::now();
        drop(first);
        let started = third.await.unwrap();
        // A full window after the first answer.
        assert_eq!(started - released, Duration::from_secs(1));
        drop(second);
    }
}
