//! The numbers a figure reports from its runs: medians (run-to-run noise on a shared
//! machine is as large as the margins the issue sets, so single runs prove nothing),
//! maxima of peak RSS (the larger is the one a memory target must hold for), and ratios.

use serde::Serialize;

/// The runs of one leg of one figure.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Runs {
    /// Wall seconds of every run, in the order they ran.
    pub seconds: Vec<f64>,
    /// Peak RSS of every run, KiB.
    pub peak_rss_kib: Vec<u64>,
    /// API requests the simulator answered during each run.
    pub requests: Vec<u64>,
}

impl Runs {
    pub fn push(&mut self, seconds: f64, peak_rss_kib: u64, requests: u64) {
        self.seconds.push(seconds);
        self.peak_rss_kib.push(peak_rss_kib);
        self.requests.push(requests);
    }

    pub fn median_seconds(&self) -> f64 {
        median(&self.seconds)
    }

    pub fn max_rss_kib(&self) -> u64 {
        self.peak_rss_kib.iter().copied().max().unwrap_or(0)
    }

    /// `events` over the median seconds.
    pub fn events_per_second(&self, events: usize) -> f64 {
        per_second(events, self.median_seconds())
    }

    /// The JSON of this leg: medians, maxima and every run; `events_per_s` is `null` when
    /// `events` is 0 (an idle sync delivers none).
    pub fn json(&self, events: usize) -> serde_json::Value {
        let rate = (events > 0).then(|| round(self.events_per_second(events), 0));
        serde_json::json!({
            "median_s": round(self.median_seconds(), 4),
            "events_per_s": rate,
            "max_peak_rss_kib": self.max_rss_kib(),
            "runs_s": self.seconds.iter().map(|s| round(*s, 4)).collect::<Vec<_>>(),
            "peak_rss_kib": self.peak_rss_kib,
            "requests": self.requests,
        })
    }
}

/// The median; the mean of the middle two for an even count; 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[middle],
        _ => (sorted[middle - 1] + sorted[middle]) / 2.0,
    }
}

/// `a / b`, or `None` when `b` is not positive (a leg that was skipped).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// A ratio for the JSON line: rounded, `null` when a leg was skipped.
pub fn ratio_json(value: Option<f64>) -> serde_json::Value {
    value.map_or(serde_json::Value::Null, |v| serde_json::json!(round(v, 3)))
}

/// `events / seconds`, 0 for no time.
pub fn per_second(events: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}

/// `value` rounded to `digits` decimals, for the JSON line.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_no_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
        assert_eq!(median(&[]), 0.0);
        // One wild run does not move the median.
        assert_eq!(median(&[1.0, 1.1, 50.0, 0.9, 1.2]), 1.1);
    }

    #[test]
    fn runs_report_medians_and_the_largest_rss() {
        let mut runs = Runs::default();
        runs.push(2.0, 16_000, 101);
        runs.push(1.0, 17_000, 101);
        runs.push(4.0, 15_000, 101);
        assert_eq!(runs.median_seconds(), 2.0);
        assert_eq!(runs.max_rss_kib(), 17_000);
        assert_eq!(runs.events_per_second(1000), 500.0);
        let json = runs.json(1000);
        assert_eq!(json["median_s"], 2.0);
        assert_eq!(json["runs_s"][1], 1.0);
        assert_eq!(json["max_peak_rss_kib"], 17_000);
        assert_eq!(json["events_per_s"], 500.0);
        assert!(runs.json(0)["events_per_s"].is_null());
    }

    #[test]
    fn ratios_of_skipped_legs_are_none() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(per_second(10, 0.0), 0.0);
        assert_eq!(round(1.23456, 2), 1.23);
    }
}
