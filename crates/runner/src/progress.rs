//! Progress of long pulls (backfills) while `sync` or a cycle of `run` works.
//!
//! - **On a terminal** (text logs): a bar per service whose pull has run for a second,
//!   its total the `total_count` of the pull's first page; it stays, full, when the
//!   pull ends.
//! - **Elsewhere** (a log file, cron, JSON logs): every interval (10 s) one line per
//!   service whose pull is still running, with the events fetched so far, the total and
//!   the rate; when such a pull ends, a last line with its final count. A pull that
//!   ends between two ticks without having had a line prints nothing.
//!
//! `RUNNER_PROGRESS_INTERVAL` (a humantime duration, for tests) sets both the interval
//! of the lines and how long a pull runs before it gets a bar.

use crate::output;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use telemetry::{Observer, Progress};
use tokio::task::JoinHandle;

/// The default interval between progress lines.
const INTERVAL: Duration = Duration::from_secs(10);

/// How long a pull runs before it gets a bar, by default.
const BAR_DELAY: Duration = Duration::from_secs(1);

/// How often bars are brought up to date.
const BAR_REFRESH: Duration = Duration::from_millis(100);

/// The environment variable that changes the interval and the bars' delay.
pub const INTERVAL_VAR: &str = "RUNNER_PROGRESS_INTERVAL";

/// `RUNNER_PROGRESS_INTERVAL` if it is a duration above zero.
fn configured() -> Option<Duration> {
    std::env::var(INTERVAL_VAR)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
}

/// What is shown, and what was shown so far.
enum Display {
    /// (source, service) of the pulls that got a progress line and no last line yet.
    Lines(HashSet<(String, String)>),
    Bars(Bars),
}

struct Bars {
    multi: MultiProgress,
    delay: Duration,
    bars: HashMap<(String, String), ProgressBar>,
}

/// The ticker; [`ProgressLog::stop`] shows where every pull ended.
pub struct ProgressLog {
    observer: Arc<Observer>,
    display: Arc<Mutex<Display>>,
    task: JoinHandle<()>,
}

impl ProgressLog {
    pub fn start(observer: Arc<Observer>) -> ProgressLog {
        let (display, every) = if output::progress_bars() {
            let bars = Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                delay: configured().unwrap_or(BAR_DELAY),
                bars: HashMap::new(),
            };
            (Display::Bars(bars), BAR_REFRESH)
        } else {
            (
                Display::Lines(HashSet::new()),
                configured().unwrap_or(INTERVAL),
            )
        };
        let display = Arc::new(Mutex::new(display));
        let task = {
            let (observer, display) = (observer.clone(), display.clone());
            tokio::spawn(async move {
                let first = tokio::time::Instant::now() + every;
                let mut ticks = tokio::time::interval_at(first, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    tick(&observer, &display);
                }
            })
        };
        ProgressLog {
            observer,
            display,
            task,
        }
    }

    /// Stops the ticker; the pulls that were shown get their last line or a full bar.
    pub fn stop(self) {
        self.task.abort();
        tick(&self.observer, &self.display);
        let mut display = self.display.lock().unwrap_or_else(PoisonError::into_inner);
        if let Display::Bars(bars) = &mut *display
            && !bars.bars.is_empty()
        {
            // The bars stay, full; indicatif leaves the cursor at the end of the last
            // one, and the summary starts on a line of its own.
            use std::io::Write;
            let _ = writeln!(std::io::stderr());
        }
    }
}

impl Drop for ProgressLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tick(observer: &Observer, display: &Mutex<Display>) {
    let now = Instant::now();
    let mut display = display.lock().unwrap_or_else(PoisonError::into_inner);
    match &mut *display {
        Display::Lines(reported) => {
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
        Display::Bars(bars) => {
            for progress in observer.progress() {
                bars.show(&progress, now);
            }
        }
    }
}

impl Bars {
    fn show(&mut self, progress: &Progress, now: Instant) {
        let key = (progress.source.clone(), progress.service.clone());
        let bar = match self.bars.get(&key) {
            Some(bar) => bar,
            None => {
                // Short pulls get no bar; a finished one needs none.
                if progress.finished.is_some() || now.duration_since(progress.started) < self.delay
                {
                    return;
                }
                // Styled before it is added: it is drawn as soon as it is.
                let bar = ProgressBar::no_length()
                    .with_style(style(progress.total.is_some()))
                    .with_prefix(format!("{}/{}", progress.source, progress.service));
                let bar = self.multi.add(bar);
                self.bars.entry(key).or_insert(bar)
            }
        };
        if bar.is_finished() {
            // A later pull of the same service (the next cycle of `run`) starts afresh.
            if progress.finished.is_none() {
                bar.reset();
                bar.set_position(0);
            } else {
                return;
            }
        }
        if let Some(total) = progress.total
            && bar.length() != Some(total.max(progress.fetched))
        {
            bar.set_style(style(true));
            bar.set_length(total.max(progress.fetched));
        }
        // The rate and what is left from the pull's own clock, not from the bar's
        // updates (which come in page-sized jumps).
        let rate = progress.events_per_second(now);
        let mut message = format!("{rate:.0} events/s");
        if let Some(total) = progress.total
            && progress.finished.is_none()
            && rate > 0.0
        {
            let left = total.saturating_sub(progress.fetched) as f64 / rate;
            message.push_str(&format!(
                ", {} left",
                humantime::format_duration(Duration::from_secs(left.ceil() as u64))
            ));
        }
        bar.set_message(message);
        bar.set_position(progress.fetched);
        if progress.finished.is_some() {
            bar.finish();
        }
    }
}

fn style(with_total: bool) -> ProgressStyle {
    let template = if with_total {
        "{prefix} [{bar:30}] {pos}/{len} events ({percent}%), {msg}"
    } else {
        "{prefix} {pos} events, {msg}"
    };
    // The templates are constants that parse; the default style is a fallback that
    // cannot be reached.
    ProgressStyle::with_template(template)
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}
