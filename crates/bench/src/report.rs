//! What the benchmark prints: a table per figure on stdout as soon as the figure is
//! measured (medians, every run, ratios against the targets), progress on stderr,
//! and, last, one JSON line with every number for scripts and closing notes.

use crate::stats::{Runs, ratio};

/// A figure's title line.
pub fn heading(title: &str) {
    println!("\n== {title}");
}

/// One table row per leg: median seconds, events/s (`-` when `events` is 0: an idle sync
/// delivers none), requests, the largest peak RSS, and every run's seconds in the order they
/// ran.
pub fn legs(events: usize, legs: &[(&str, &Runs)]) {
    println!(
        "{:<16} {:>9} {:>11} {:>9} {:>13}  runs (s)",
        "leg", "seconds", "events/s", "requests", "peak RSS MiB"
    );
    for (name, runs) in legs {
        println!(
            "{:<16} {:>9} {:>11} {:>9} {:>13.1}  {}",
            name,
            seconds(runs.median_seconds()),
            if events == 0 {
                "-".to_owned()
            } else {
                format!("{:.0}", runs.events_per_second(events))
            },
            range(&runs.requests),
            mib(runs.max_rss_kib()),
            runs.seconds
                .iter()
                .map(|s| seconds(*s))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// A ratio line against a target: `runner / fetch-only: 7.53x (target <= 1.25x: not met)`.
pub fn ratio_line(what: &str, value: Option<f64>, target: Target) {
    match value {
        Some(value) => println!(
            "{what}: {value:.2}x (target {target}: {})",
            if target.met(value) { "met" } else { "not met" }
        ),
        None => println!("{what}: - (a leg was skipped)"),
    }
}

/// A ratio printed to explain a figure, with no target of its own.
pub fn info_line(what: &str, value: Option<f64>) {
    match value {
        Some(value) => println!("{what}: {value:.2}x"),
        None => println!("{what}: - (a leg was skipped)"),
    }
}

/// A bound a figure is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtMost(bound) => value <= bound,
            Target::AtLeast(bound) => value >= bound,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtMost(bound) => write!(f, "<= {bound}x"),
            Target::AtLeast(bound) => write!(f, ">= {bound}x"),
        }
    }
}

/// The median-seconds ratio of two legs, `a / b`.
pub fn seconds_ratio(a: &Runs, b: &Runs) -> Option<f64> {
    ratio(a.median_seconds(), b.median_seconds())
}

/// Seconds with enough digits for both 18 s backfills and 30 ms idle syncs.
pub fn seconds(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.3}")
    } else {
        format!("{value:.2}")
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `n` if every run gave `n`, `fewest-most` if they differed.
pub fn range(values: &[u64]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(fewest), Some(most)) if fewest == most => fewest.to_string(),
        (Some(fewest), Some(most)) => format!("{fewest}-{most}"),
        _ => "-".to_owned(),
    }
}

/// Progress on stderr, so that stdout holds only the tables and the JSON line.
pub fn progress(text: &str) {
    eprintln!("bench: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_hold_or_not() {
        assert!(Target::AtMost(1.25).met(1.25));
        assert!(!Target::AtMost(1.25).met(1.26));
        assert!(Target::AtLeast(10.0).met(12.0));
        assert!(!Target::AtLeast(10.0).met(2.8));
        assert_eq!(Target::AtMost(1.2).to_string(), "<= 1.2x");
    }

    #[test]
    fn numbers_are_formatted_for_the_table() {
        assert_eq!(seconds(0.0304), "0.030");
        assert_eq!(seconds(18.456), "18.46");
        assert_eq!(range(&[3, 3]), "3");
        assert_eq!(range(&[4, 2, 3]), "2-4");
        assert_eq!(range(&[]), "-");
        assert_eq!(mib(16 * 1024), 16.0);
    }

    #[test]
    fn ratios_use_medians() {
        let mut fast = Runs::default();
        let mut slow = Runs::default();
        for (f, s) in [(1.0, 3.0), (2.0, 5.0), (9.0, 4.0)] {
            fast.push(f, 1, 1);
            slow.push(s, 1, 1);
        }
        assert_eq!(seconds_ratio(&slow, &fast), Some(2.0));
        assert_eq!(seconds_ratio(&slow, &Runs::default()), None);
    }
}
