//! What a run tells about itself while it works: one [`Observer`] per process, handed to
//! the source clients and the pipeline, serves the Prometheus metrics (`/metrics` of
//! `[runner] listen`, `sync --metrics-file`), the health of sources and sinks
//! (`/health`) and the progress of backfills (the progress lines and bars).
//!
//! Metrics are those of the Prometheus text formats
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): OpenMetrics for a
//! scrape, the classic text format for node-exporter's textfile collector
//! (<https://github.com/prometheus/node_exporter#textfile-collector>).
//!
//! The hot path pays one label lookup per page fetched and per batch sent, never per
//! event.
//!
//! **Lag** of a sink for a service is now minus the time up to which that sink has every
//! event of that service: the start of the last poll of the service that ended without
//! failure and whose events the sink all acknowledged (delivered or dead-lettered) by the
//! end of its cycle. The newest `occur_time` would not do: it stays put while a service
//! is quiet, so a lag computed from it grows although nothing is missing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The prefix of every metric name.
pub const PREFIX: &str = "modelarts_shipper";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceStatus {
    source: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    source: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CursorLabels {
    source: String,
    service: String,
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcome {
    sink: String,
    outcome: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramMaker = fn() -> Histogram;

fn latency_histogram() -> Histogram {
    // 5 ms to about 41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

struct Metrics {
    cloud_requests: Family<SourceStatus, Counter>,
    cloud_retries: Family<SourceLabel, Counter>,
    fetched: Family<ServiceLabels, Counter>,
    delivered: Family<CursorLabels, Counter>,
    dead_lettered: Family<CursorLabels, Counter>,
    sink_requests: Family<SinkOutcome, Counter>,
    sink_retries: Family<SinkLabel, Counter>,
    sink_latency: Family<SinkLabel, Histogram, HistogramMaker>,
    lag: Family<CursorLabels, FloatGauge>,
    acknowledged_through: Family<CursorLabels, FloatGauge>,
    last_poll: Family<ServiceLabels, FloatGauge>,
}

/// A source or a sink, as `/health` names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Component {
    /// `"source"` or `"sink"`.
    pub kind: &'static str,
    pub name: String,
}

/// A component that has been failing since `since`, with the last error it gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Failing {
    pub component: Component,
    pub since: SystemTime,
    pub error: String,
}

impl Failing {
    /// How long it has been failing at `now`.
    pub fn for_how_long(&self, now: SystemTime) -> Duration {
        now.duration_since(self.since).unwrap_or_default()
    }
}

/// The progress of one service's pull.
#[derive(Clone, Debug)]
pub struct Progress {
    pub source: String,
    pub service: String,
    /// Events fetched so far in this pull.
    pub fetched: u64,
    /// What the first page's `total_count` announced.
    pub total: Option<u64>,
    pub started: Instant,
    /// When the pull ended (`None` while it runs).
    pub finished: Option<Instant>,
}

impl Progress {
    /// Events fetched per second since the pull started (until it ended).
    pub fn events_per_second(&self, now: Instant) -> f64 {
        let end = self.finished.unwrap_or(now);
        let seconds = end.duration_since(self.started).as_secs_f64().max(0.001);
        self.fetched as f64 / seconds
    }
}

/// The metrics, health and progress of one process.
pub struct Observer {
    registry: Registry,
    metrics: Metrics,
    failing: Mutex<BTreeMap<Component, Failing>>,
    /// Per (source, service, sink): the time (ms since the epoch) up to which the sink has
    /// every event of the service.
    through: Mutex<BTreeMap<CursorLabels, i64>>,
    progress: Mutex<BTreeMap<(String, String), Progress>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new()
    }
}

/// A lock whose holder panicked still holds plain numbers: go on with them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Observer {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let metrics = Metrics {
            cloud_requests: Family::default(),
            cloud_retries: Family::default(),
            fetched: Family::default(),
            delivered: Family::default(),
            dead_lettered: Family::default(),
            sink_requests: Family::default(),
            sink_retries: Family::default(),
            sink_latency: Family::new_with_constructor(latency_histogram),
            lag: Family::default(),
            acknowledged_through: Family::default(),
            last_poll: Family::default(),
        };
        registry.register(
            "cloud_requests",
            "Requests to the ModelArts API (and IAM), by source and HTTP status (\"error\": no answer)",
            metrics.cloud_requests.clone(),
        );
        registry.register(
            "cloud_retries",
            "Requests to the cloud retried after a 429, 5xx or transport error, by source",
            metrics.cloud_retries.clone(),
        );
        registry.register(
            "events_fetched",
            "Events read from the API, by source and service (re-reads of lookback included)",
            metrics.fetched.clone(),
        );
        registry.register(
            "events_delivered",
            "Events a sink acknowledged and whose positions are committed, by source, service and sink",
            metrics.delivered.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Events a sink refused for good, written to its dead-letter file, by source, service and sink",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "sink_requests",
            "Sends to a sink, retries included, by sink and outcome (ok or error)",
            metrics.sink_requests.clone(),
        );
        registry.register(
            "sink_retries",
            "Sends to a sink retried after a retryable error, by sink",
            metrics.sink_retries.clone(),
        );
        registry.register(
            "sink_request_duration_seconds",
            "How long one send to a sink took, by sink",
            metrics.sink_latency.clone(),
        );
        registry.register(
            "lag_seconds",
            "Now minus the end of the last poll window whose events this sink has all acknowledged, by source, service and sink",
            metrics.lag.clone(),
        );
        registry.register(
            "acknowledged_through_timestamp_seconds",
            "The end of the last poll window whose events this sink has all acknowledged (Unix time), by source, service and sink",
            metrics.acknowledged_through.clone(),
        );
        registry.register(
            "last_successful_poll_timestamp_seconds",
            "When the last poll of a service that ended without failure started (Unix time), by source and service",
            metrics.last_poll.clone(),
        );
        Observer {
            registry,
            metrics,
            failing: Mutex::new(BTreeMap::new()),
            through: Mutex::new(BTreeMap::new()),
            progress: Mutex::new(BTreeMap::new()),
        }
    }

    /// One request to the cloud and how it ended: its HTTP status, or `None` when no
    /// answer came. `failure` is the error it became, if any: the source is failing
    /// until a request of it succeeds.
    pub fn cloud_request(&self, source: &str, status: Option<u16>, failure: Option<&str>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.metrics
            .cloud_requests
            .get_or_create(&SourceStatus {
                source: source.to_owned(),
                status,
            })
            .inc();
        let component = Component {
            kind: "source",
            name: source.to_owned(),
        };
        match failure {
            Some(error) => self.failing_now(component, error),
            None => self.recovered(&component),
        }
    }

    pub fn cloud_retry(&self, source: &str) {
        self.metrics
            .cloud_retries
            .get_or_create(&SourceLabel {
                source: source.to_owned(),
            })
            .inc();
    }

    /// Events of one page read from the API.
    pub fn fetched(&self, source: &str, service: &str, events: u64) {
        self.metrics
            .fetched
            .get_or_create(&ServiceLabels {
                source: source.to_owned(),
                service: service.to_owned(),
            })
            .inc_by(events);
        let mut progress = lock(&self.progress);
        if let Some(p) = progress.get_mut(&(source.to_owned(), service.to_owned())) {
            p.fetched += events;
        }
    }

    /// Events a sink acknowledged (committed): delivered and dead-lettered.
    pub fn acknowledged(
        &self,
        source: &str,
        service: &str,
        sink: &str,
        delivered: u64,
        dead_lettered: u64,
    ) {
        let labels = CursorLabels {
            source: source.to_owned(),
            service: service.to_owned(),
            sink: sink.to_owned(),
        };
        if delivered > 0 {
            self.metrics
                .delivered
                .get_or_create(&labels)
                .inc_by(delivered);
        }
        if dead_lettered > 0 {
            self.metrics
                .dead_lettered
                .get_or_create(&labels)
                .inc_by(dead_lettered);
        }
    }

    /// One send to a sink, how long it took, and the error it ended with, if any: the
    /// sink is failing until a send of it succeeds.
    pub fn sink_request(&self, sink: &str, took: Duration, failure: Option<&str>) {
        let label = SinkLabel {
            sink: sink.to_owned(),
        };
        self.metrics
            .sink_latency
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        let outcome = if failure.is_some() { "error" } else { "ok" };
        self.metrics
            .sink_requests
            .get_or_create(&SinkOutcome {
                sink: sink.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        let component = Component {
            kind: "sink",
            name: sink.to_owned(),
        };
        match failure {
            Some(error) => self.failing_now(component, error),
            None => self.recovered(&component),
        }
    }

    pub fn sink_retry(&self, sink: &str) {
        self.metrics
            .sink_retries
            .get_or_create(&SinkLabel {
                sink: sink.to_owned(),
            })
            .inc();
    }

    /// A sink failed for a cycle without a send saying so (it could not be opened, it
    /// is held after a permanent failure, its commit failed).
    pub fn sink_failed(&self, sink: &str, error: &str) {
        self.failing_now(
            Component {
                kind: "sink",
                name: sink.to_owned(),
            },
            error,
        );
    }

    /// A sink ended a cycle without failing and with nothing left behind: whatever
    /// failed before, it has everything now (a cycle with nothing to send has no send
    /// to say so).
    pub fn sink_caught_up(&self, sink: &str) {
        self.recovered(&Component {
            kind: "sink",
            name: sink.to_owned(),
        });
    }

    fn failing_now(&self, component: Component, error: &str) {
        let mut failing = lock(&self.failing);
        let entry = failing.entry(component.clone()).or_insert_with(|| Failing {
            component,
            since: SystemTime::now(),
            error: String::new(),
        });
        error.clone_into(&mut entry.error);
    }

    fn recovered(&self, component: &Component) {
        // Cheap when nothing fails: the map is empty.
        let mut failing = lock(&self.failing);
        if !failing.is_empty() {
            failing.remove(component);
        }
    }

    /// The components failing now, oldest failure first.
    pub fn failing(&self) -> Vec<Failing> {
        let mut all: Vec<Failing> = lock(&self.failing).values().cloned().collect();
        all.sort_by_key(|f| f.since);
        all
    }

    /// A poll of a service that started at `started_ms` ended without failure.
    pub fn polled(&self, source: &str, service: &str, started_ms: i64) {
        self.metrics
            .last_poll
            .get_or_create(&ServiceLabels {
                source: source.to_owned(),
                service: service.to_owned(),
            })
            .set(seconds(started_ms));
    }

    /// `sink` has every event of the service up to `through_ms` (the start of a poll
    /// whose events it all acknowledged). Never moves back.
    pub fn acknowledged_through(&self, source: &str, service: &str, sink: &str, through_ms: i64) {
        let labels = CursorLabels {
            source: source.to_owned(),
            service: service.to_owned(),
            sink: sink.to_owned(),
        };
        let mut through = lock(&self.through);
        let entry = through.entry(labels.clone()).or_insert(through_ms);
        *entry = (*entry).max(through_ms);
        self.metrics
            .acknowledged_through
            .get_or_create(&labels)
            .set(seconds(*entry));
    }

    /// The lag of every (source, service, sink) known, at `now_ms`.
    fn refresh_lag(&self, now_ms: i64) {
        for (labels, through) in lock(&self.through).iter() {
            let lag = (now_ms - through).max(0);
            self.metrics.lag.get_or_create(labels).set(seconds(lag));
        }
    }

    /// The metrics in the OpenMetrics text format (`/metrics`).
    pub fn openmetrics(&self) -> String {
        self.openmetrics_at(now_ms())
    }

    fn openmetrics_at(&self, now_ms: i64) -> String {
        self.refresh_lag(now_ms);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The metrics in the classic Prometheus text format (version 0.0.4) that
    /// node-exporter's textfile collector reads: counters are declared under their
    /// `_total` names, and there are no `# UNIT` or `# EOF` lines.
    pub fn textfile(&self) -> String {
        self.textfile_at(now_ms())
    }

    fn textfile_at(&self, now_ms: i64) -> String {
        let open = self.openmetrics_at(now_ms);
        let mut counters = Vec::new();
        for line in open.lines() {
            if let Some(name) = line
                .strip_prefix("# TYPE ")
                .and_then(|rest| rest.strip_suffix(" counter"))
            {
                counters.push(name.to_owned());
            }
        }
        let mut text = String::with_capacity(open.len());
        for line in open.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let declared = ["# TYPE ", "# HELP "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .iter()
                    .any(|c| c == name)
                    .then(|| format!("{prefix}{name}_total {tail}"))
            });
            text.push_str(declared.as_deref().unwrap_or(line));
            text.push('\n');
        }
        text
    }

    /// A service's pull starts: its progress starts from nothing.
    pub fn pull_started(&self, source: &str, service: &str) {
        lock(&self.progress).insert(
            (source.to_owned(), service.to_owned()),
            Progress {
                source: source.to_owned(),
                service: service.to_owned(),
                fetched: 0,
                total: None,
                started: Instant::now(),
                finished: None,
            },
        );
    }

    /// The `total_count` the pull's first page announced.
    pub fn pull_total(&self, source: &str, service: &str, total: u64) {
        let mut progress = lock(&self.progress);
        if let Some(p) = progress.get_mut(&(source.to_owned(), service.to_owned()))
            && p.total.is_none()
        {
            p.total = Some(total);
        }
    }

    pub fn pull_finished(&self, source: &str, service: &str) {
        let mut progress = lock(&self.progress);
        if let Some(p) = progress.get_mut(&(source.to_owned(), service.to_owned())) {
            p.finished.get_or_insert_with(Instant::now);
        }
    }

    /// Every pull of this process that started, in (source, service) order.
    pub fn progress(&self) -> Vec<Progress> {
        lock(&self.progress).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_textfile_declares_counters_by_their_sample_names() {
        let observer = Observer::new();
        observer.fetched("prod", "svc", 3);
        observer.sink_request("loki", Duration::from_millis(20), None);
        let text = observer.textfile();
        assert!(
            text.contains("# TYPE modelarts_shipper_events_fetched_total counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "modelarts_shipper_events_fetched_total{source=\"prod\",service=\"svc\"} 3\n"
        ));
        assert!(
            text.contains("# TYPE modelarts_shipper_sink_request_duration_seconds histogram\n")
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(observer.openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn a_component_fails_from_its_first_error_until_it_succeeds() {
        let observer = Observer::new();
        observer.sink_request("loki", Duration::ZERO, Some("HTTP 503"));
        let since = observer.failing()[0].since;
        observer.sink_request("loki", Duration::ZERO, Some("connection refused"));
        let failing = observer.failing();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].since, since, "the first error dates the failure");
        assert_eq!(failing[0].error, "connection refused");
        assert_eq!(failing[0].component.kind, "sink");
        observer.sink_request("loki", Duration::ZERO, None);
        assert!(observer.failing().is_empty());
    }

    #[test]
    fn lag_is_measured_from_the_acknowledged_window_and_never_moves_back() {
        let observer = Observer::new();
        observer.acknowledged_through("prod", "svc", "loki", 10_000);
        observer.acknowledged_through("prod", "svc", "loki", 5_000);
        let text = observer.textfile_at(12_500);
        assert!(
            text.contains(
                "modelarts_shipper_lag_seconds{source=\"prod\",service=\"svc\",sink=\"loki\"} 2.5\n"
            ),
            "{text}"
        );
    }
}
