//! Progress of long pulls (backfills) while `sync` or a cycle of `run` works: every
//! interval (10 s; `RUNNER_PROGRESS_INTERVAL` changes it, for tests) one line per
//! service whose pull is still running, with the events fetched so far, the total its
//! first page announced (`total_count`) and the rate; when such a pull ends, a last line
//! with its final count. A pull shorter than the interval prints nothing.

use crate::output;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use telemetry::Observer;
use tokio::task::JoinHandle;

/// The default interval between progress lines.
const INTERVAL: Duration = Duration::from_secs(10);

/// The environment variable that changes the interval (a humantime duration).
pub const INTERVAL_VAR: &str = "RUNNER_PROGRESS_INTERVAL";

/// The interval: `RUNNER_PROGRESS_INTERVAL` if it is a duration above zero, else 10 s.
fn interval() -> Duration {
    std::env::var(INTERVAL_VAR)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(INTERVAL)
}

/// The ticker; [`ProgressLog::stop`] prints the last lines.
pub struct ProgressLog {
    observer: Arc<Observer>,
    /// (source, service) of the pulls that got a progress line and no last line yet.
    reported: Arc<Mutex<HashSet<(String, String)>>>,
    task: JoinHandle<()>,
}

impl ProgressLog {
    pub fn start(observer: Arc<Observer>) -> ProgressLog {
        let reported = Arc::new(Mutex::new(HashSet::new()));
        let every = interval();
        let task = {
            let (observer, reported) = (observer.clone(), reported.clone());
            tokio::spawn(async move {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    tick(&observer, &reported);
                }
            })
        };
        ProgressLog {
            observer,
            reported,
            task,
        }
    }

    /// Stops the ticker and prints the last line of every pull that had a progress line.
    pub fn stop(self) {
        self.task.abort();
        tick(&self.observer, &self.reported);
    }
}

impl Drop for ProgressLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tick(observer: &Observer, reported: &Mutex<HashSet<(String, String)>>) {
    let now = Instant::now();
    let mut reported = reported.lock().unwrap_or_else(PoisonError::into_inner);
    for progress in observer.progress() {
        let key = (progress.source.clone(), progress.service.clone());
        if progress.finished.is_none() {
            output::progress(&progress, now);
            reported.insert(key);
        } else if reported.remove(&key) {
            output::progress(&progress, now);
        }
    }
}
