//! What one sync cycle did: a summary per service, per sink and per failed source, and
//! whether everything was delivered (exit code 0) or not (1).

use crate::error::{ServiceFailure, SinkFailure, SourceFailure};
use source::checkpoint::DiscoveredService;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Counts of one service for the end-of-run summary.
#[derive(Debug, Default)]
pub struct ServiceSummary {
    pub source: String,
    pub service_id: String,
    pub service_name: String,
    pub fetched: u64,
    /// Events that at least one sink takes (its filter accepts them) and did not have yet.
    pub new: u64,
    /// Per sink that takes the service: records acknowledged and committed.
    pub delivered: BTreeMap<String, u64>,
    /// `--dry-run` only: per sink that takes the service, records it would receive.
    pub would_deliver: BTreeMap<String, u64>,
    /// A `--dry-run` summary: nothing was delivered, the state was not touched.
    pub dry_run: bool,
    /// Per sink: records refused for good and written to its dead-letter file.
    pub dead_lettered: BTreeMap<String, u64>,
    pub malformed: u64,
    /// Requests made to the cloud for this service.
    pub requests: u64,
    /// Why the service's pull stopped early, if it did.
    pub failure: Option<ServiceFailure>,
    /// A discovered service whose events answer 404: it disappeared.
    pub gone: bool,
    /// When the pull that read the service to its end started (ms since the epoch):
    /// every event listed before it was read. `None` when the pull stopped early.
    pub polled_at: Option<i64>,
}

impl ServiceSummary {
    pub fn new(source: &str, service_id: &str) -> Self {
        ServiceSummary {
            source: source.to_owned(),
            service_id: service_id.to_owned(),
            ..ServiceSummary::default()
        }
    }

    /// The one-line summary printed on stderr:
    /// `SOURCE/SERVICE (NAME): fetched F, new N, delivered a=1 b=2, malformed M, failed K …`
    /// (`would deliver a=1 b=2` in a dry run).
    pub fn line(&self) -> String {
        let name = if self.service_name.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.service_name)
        };
        let delivered = if self.dry_run {
            format!("would deliver {}", per_sink(&self.would_deliver))
        } else {
            format!("delivered {}", per_sink(&self.delivered))
        };
        let mut line = format!(
            "{}/{}{}: fetched {}, new {}, {delivered}",
            self.source, self.service_id, name, self.fetched, self.new
        );
        if self.dead_lettered.values().any(|n| *n > 0) {
            let _ = write!(line, ", dead-lettered {}", per_sink(&self.dead_lettered));
        }
        let _ = write!(
            line,
            ", malformed {}, failed {}",
            self.malformed,
            usize::from(self.failure.is_some())
        );
        if let Some(failure) = &self.failure {
            let _ = write!(line, " [source: {failure}]");
        }
        if self.gone {
            line.push_str(" [gone: the service no longer exists; its state is kept]");
        }
        line
    }

    /// Whether anything happened to the service that an operator would want to read
    /// about: new events, a failure, malformed rows, dead-lettered records, its removal.
    pub fn eventful(&self) -> bool {
        self.new > 0
            || self.failure.is_some()
            || self.malformed > 0
            || self.gone
            || self.dead_lettered.values().any(|n| *n > 0)
    }
}

/// `a=1 b=2`, or `-` for no sink.
fn per_sink(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    map.iter()
        .map(|(sink, n)| format!("{sink}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sums of a run over its services: the total line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub services: u64,
    pub fetched: u64,
    pub new: u64,
    /// Per sink: delivered (or, in a dry run, would be delivered).
    pub delivered: BTreeMap<String, u64>,
    pub dead_lettered: u64,
    pub malformed: u64,
    pub failed: u64,
    pub dry_run: bool,
}

impl Totals {
    /// Events fetched per second of `elapsed`.
    pub fn events_per_second(&self, elapsed: Duration) -> f64 {
        let seconds = elapsed.as_secs_f64().max(0.001);
        self.fetched as f64 / seconds
    }

    /// `total: fetched F, new N, delivered a=1 b=2, dead-lettered D, malformed M,
    /// S service(s) in 1.23s, R events/s` (a dry run says so and what it would deliver).
    pub fn line(&self, elapsed: Duration) -> String {
        let mut line = if self.dry_run {
            format!(
                "total (dry run: nothing sent, the state untouched): fetched {}, new {}, would deliver {}",
                self.fetched,
                self.new,
                per_sink(&self.delivered)
            )
        } else {
            format!(
                "total: fetched {}, new {}, delivered {}, dead-lettered {}",
                self.fetched,
                self.new,
                per_sink(&self.delivered),
                self.dead_lettered
            )
        };
        let _ = write!(
            line,
            ", malformed {}, {} service(s) in {:.2}s, {:.0} events/s",
            self.malformed,
            self.services,
            elapsed.as_secs_f64(),
            self.events_per_second(elapsed)
        );
        if self.failed > 0 {
            let _ = write!(line, "; {} service(s) failed", self.failed);
        }
        line
    }
}

/// What one sink did in a cycle.
#[derive(Debug)]
pub struct SinkSummary {
    pub name: String,
    pub kind: &'static str,
    pub delivered: u64,
    pub dead_lettered: u64,
    /// Dead-lettered records of kinds the sink does not expect (these fail the run).
    pub unexpected_dead_lettered: u64,
    /// Dead-lettered records the sink expected, by kind (Loki's `too_old`).
    pub expected_dead_lettered: BTreeMap<&'static str, u64>,
    /// Records the sink held back for a later run (their positions wait).
    pub held: u64,
    /// Records the sink acknowledged without sending, by kind (`too_old_to_alert`).
    pub skipped: BTreeMap<&'static str, u64>,
    pub dead_letter_path: PathBuf,
    pub batches: u64,
    /// Sends, counting retries.
    pub requests: u64,
    /// Services the pull went on without because the sink was slower, and whether the
    /// catch-up after the other sinks brought it level.
    pub fell_behind: Vec<(String, String)>,
    pub caught_up: bool,
    pub failure: Option<SinkFailure>,
}

impl SinkSummary {
    pub fn new(name: &str, kind: &'static str, dead_letter_path: PathBuf) -> Self {
        SinkSummary {
            name: name.to_owned(),
            kind,
            delivered: 0,
            dead_lettered: 0,
            unexpected_dead_lettered: 0,
            expected_dead_lettered: BTreeMap::new(),
            held: 0,
            skipped: BTreeMap::new(),
            dead_letter_path,
            batches: 0,
            requests: 0,
            fell_behind: Vec::new(),
            caught_up: true,
            failure: None,
        }
    }

    /// The one-line summary printed on stderr.
    pub fn line(&self) -> String {
        let mut line = format!(
            "sink {} ({}): delivered {} in {} batch(es), {} request(s)",
            self.name, self.kind, self.delivered, self.batches, self.requests
        );
        if self.dead_lettered > 0 {
            let expected: Vec<String> = self
                .expected_dead_lettered
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            let expected = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected: {}", expected.join(", "))
            };
            let _ = write!(
                line,
                ", dead-lettered {} (in {}{expected})",
                self.dead_lettered,
                self.dead_letter_path.display()
            );
        }
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = self
                .skipped
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            let _ = write!(line, ", not sent by design: {}", skipped.join(", "));
        }
        if self.held > 0 {
            let _ = write!(
                line,
                ", held back {} for a later run (dated ahead of the clock)",
                self.held
            );
        }
        if !self.fell_behind.is_empty() {
            let n = self.fell_behind.len();
            if self.caught_up && self.failure.is_none() {
                let _ = write!(
                    line,
                    "; slower than the pull of {n} service(s), caught up after the other sinks"
                );
            } else {
                let _ = write!(
                    line,
                    "; slower than the pull of {n} service(s), which it catches up next run"
                );
            }
        }
        if let Some(failure) = &self.failure {
            let _ = write!(
                line,
                "; FAILED: {failure}; its positions are kept and it catches up from them"
            );
        }
        line
    }

    /// Whether the sink did its part: no failure, nothing unexpected dead-lettered.
    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.unexpected_dead_lettered == 0
    }
}

/// A source that could not be synced at all this run.
#[derive(Debug)]
pub struct SourceProblem {
    pub source: String,
    pub failure: SourceFailure,
}

impl SourceProblem {
    /// `prod: FAILED: why`.
    pub fn line(&self) -> String {
        format!("{}: FAILED: {}", self.source, self.failure)
    }
}

/// The line of a discovered service that disappeared.
pub fn gone_line(source: &str, service: &DiscoveredService) -> String {
    format!(
        "{source}/{} ({}): no longer in the project or no longer matches `discover`; stopped following it, its state is kept",
        service.service_id, service.service_name
    )
}

/// What one run (or one poll of `run`) did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub services: Vec<ServiceSummary>,
    pub sinks: Vec<SinkSummary>,
    /// Sources that failed before reaching their services (authentication,
    /// discovery), and selections that matched nothing.
    pub sources: Vec<SourceProblem>,
    /// Discovered services that disappeared in this run (each reported once).
    pub gone: Vec<(String, DiscoveredService)>,
}

impl RunReport {
    /// Whether everything was delivered (a service that disappeared is not a failure,
    /// nor is a sink that was slower than the pull).
    pub fn ok(&self) -> bool {
        self.sources.is_empty()
            && self.services.iter().all(|s| s.failure.is_none())
            && self.sinks.iter().all(SinkSummary::ok)
    }

    /// Whether this was a `--dry-run`.
    pub fn dry_run(&self) -> bool {
        self.services.iter().any(|s| s.dry_run)
    }

    /// The sums over the services, and every sink of the run (at 0 if no service fed it).
    pub fn totals(&self) -> Totals {
        let mut totals = Totals {
            dry_run: self.dry_run(),
            ..Totals::default()
        };
        for sink in &self.sinks {
            totals.delivered.insert(sink.name.clone(), 0);
        }
        for service in &self.services {
            totals.services += 1;
            totals.fetched += service.fetched;
            totals.new += service.new;
            totals.malformed += service.malformed;
            totals.failed += u64::from(service.failure.is_some());
            totals.dead_lettered += service.dead_lettered.values().sum::<u64>();
            let delivered = if service.dry_run {
                &service.would_deliver
            } else {
                &service.delivered
            };
            for (sink, n) in delivered {
                *totals.delivered.entry(sink.clone()).or_default() += n;
            }
        }
        totals
    }

    /// The summary lines, in order: failed sources, services, sinks, services gone.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.sources.iter().map(SourceProblem::line).collect();
        lines.extend(self.services.iter().map(ServiceSummary::line));
        lines.extend(self.sinks.iter().map(SinkSummary::line));
        for (source, service) in &self.gone {
            lines.push(gone_line(source, service));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_line_keeps_its_shape() {
        let mut s = ServiceSummary::new("prod", "35de");
        s.service_name = "zcj".into();
        s.fetched = 12;
        s.new = 3;
        s.delivered.insert("archive".into(), 3);
        s.delivered.insert("console".into(), 2);
        assert_eq!(
            s.line(),
            "prod/35de (zcj): fetched 12, new 3, delivered archive=3 console=2, malformed 0, failed 0"
        );
        s.dead_lettered.insert("console".into(), 1);
        assert!(
            s.line()
                .contains("delivered archive=3 console=2, dead-lettered console=1, malformed 0")
        );
    }

    #[test]
    fn the_total_sums_the_services_and_a_dry_run_says_so() {
        let mut report = RunReport::default();
        report
            .sinks
            .push(SinkSummary::new("idle", "file", PathBuf::from("dl/idle")));
        for (id, fetched, new) in [("a", 10, 4), ("b", 6, 0)] {
            let mut s = ServiceSummary::new("prod", id);
            s.fetched = fetched;
            s.new = new;
            s.malformed = 1;
            s.delivered.insert("archive".into(), new);
            s.dead_lettered.insert("archive".into(), 1);
            report.services.push(s);
        }
        assert_eq!(
            report.totals().line(Duration::from_millis(500)),
            "total: fetched 16, new 4, delivered archive=4 idle=0, dead-lettered 2, malformed 2, 2 service(s) in 0.50s, 32 events/s"
        );
        report.services[1].failure = Some(ServiceFailure::Task("it panicked".into()));
        assert!(
            report
                .totals()
                .line(Duration::ZERO)
                .ends_with(" events/s; 1 service(s) failed")
        );

        let mut dry = ServiceSummary::new("prod", "a");
        dry.dry_run = true;
        dry.fetched = 3;
        dry.new = 3;
        dry.would_deliver.insert("archive".into(), 3);
        assert_eq!(
            dry.line(),
            "prod/a: fetched 3, new 3, would deliver archive=3, malformed 0, failed 0"
        );
        let report = RunReport {
            services: vec![dry],
            ..RunReport::default()
        };
        assert_eq!(
            report.totals().line(Duration::from_secs(1)),
            "total (dry run: nothing sent, the state untouched): fetched 3, new 3, would deliver archive=3, malformed 0, 1 service(s) in 1.00s, 3 events/s"
        );
    }

    #[test]
    fn a_failed_or_dead_lettering_sink_fails_the_run_but_a_slow_one_does_not() {
        let mut report = RunReport::default();
        let mut slow = SinkSummary::new("loki", "loki", PathBuf::from("dl/loki.jsonl"));
        slow.fell_behind.push(("prod".into(), "svc".into()));
        report.sinks.push(slow);
        assert!(report.ok());
        assert!(report.lines()[0].contains("caught up after the other sinks"));
        let mut expected = SinkSummary::new("l2", "loki", PathBuf::from("dl/l2.jsonl"));
        expected.dead_lettered = 4;
        report.sinks.push(expected);
        assert!(report.ok(), "expected refusals do not fail the run");
        report.sinks[1].unexpected_dead_lettered = 1;
        assert!(!report.ok());
        assert!(report.lines()[1].contains("dead-lettered 4 (in dl/l2.jsonl)"));
    }
}
