//! End-to-end tests of what the runner tells about itself: the Prometheus metrics of
//! `[runner] listen` (`/metrics`) and of `sync --metrics-file`, the `/live` and `/health`
//! endpoints, the lag gauge, and the progress lines of a long backfill. The real binary
//! against the ModelArts simulator and a Loki double, all on 127.0.0.1.
//!
//! Metrics are parsed from the text format (every sample's family must be declared with
//! `# TYPE`), and their values are checked against the simulator's truth.

#![allow(clippy::unwrap_used)]

mod support;

use doubles::loki::{LokiDouble, LokiLimits, LokiSettings};
use serde_json::Value;
use simulator::{Behaviour, SimHandle};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{
    ConfigText, Dir, read_jsonl, sim_with, stderr_on_a_terminal, toml_str, truth, wait_until,
};

const FILE: &str = "out/events.jsonl";
const TENANT: &str = "e2e";

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a Prometheus text exposition (classic or OpenMetrics), checking that
/// every sample belongs to a family declared by `# TYPE` before it.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut declared: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" || line.starts_with("# HELP ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            declared.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap();
                let mut labels = BTreeMap::new();
                // Label values here hold no commas or quotes.
                for pair in inner.split(',').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap();
                    let value = value.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
                    labels.insert(key.to_owned(), value.to_owned());
                }
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        let family_of = |family: &str, kind: &str| match kind {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{family}{suffix}")),
            "counter" => name == family || name == format!("{family}_total"),
            _ => name == family,
        };
        assert!(
            declared
                .iter()
                .any(|(family, kind)| family_of(family, kind)),
            "sample {name} has no # TYPE line before it:\n{text}"
        );
        samples.push(Sample {
            name,
            labels,
            value: value.parse().unwrap(),
        });
    }
    samples
}

/// The value of the one sample named `name` with (at least) `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
    found.first().map(|s| s.value)
}

const P: &str = "modelarts_shipper_";

fn metric(name: &str) -> String {
    format!("{P}{name}")
}

/// A GET over a fresh connection: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The address of `run`'s start-up line: `…, metrics and health on http://ADDR`.
fn listening_address(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("metrics and health on http://"))?;
    let (_, addr) = line.split_once("metrics and health on http://")?;
    Some(addr.trim().to_owned())
}

fn loki_double() -> LokiDouble {
    LokiDouble::with(LokiSettings {
        auth_enabled: true,
        limits: LokiLimits {
            reject_old_samples_max_age: Duration::from_secs(3650 * 24 * 3600),
            ..LokiLimits::default()
        },
    })
    .unwrap()
}

fn loki_keys(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("endpoint", toml_str(endpoint)),
        ("tenant_id", toml_str(TENANT)),
        ("too_old_after", toml_str("3650d")),
        ("retry.initial_backoff", toml_str("5ms")),
        ("retry.max_backoff", toml_str("20ms")),
        ("retry.max_attempts", "2".to_owned()),
        ("batch.timeout", toml_str("100ms")),
        ("request.timeout", toml_str("5s")),
    ]
}

// `sync --metrics-file` writes the run's metrics in the textfile format: the events
// fetched and delivered per service and sink are exactly the simulator's, every request
// to the cloud answered 200, each service has a last successful poll, and each (service,
// sink) an acknowledged window inside the run, so a lag. Nothing but the file is left.
#[test]
fn sync_writes_a_metrics_file_whose_counts_match_the_simulator() {
    let dir = Dir::new("metrics-file");
    let sim = sim_with(3, 120, 41);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "50")
        .file_sink("archive", FILE)
        .file_sink("copy", "out/copy.jsonl");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let metrics_path = dir.join("textfile/runner.prom");
    std::fs::create_dir_all(metrics_path.parent().unwrap()).unwrap();

    let before = now_seconds();
    let out = dir
        .command(&[
            "sync",
            "--config",
            config_arg,
            "--metrics-file",
            metrics_path.to_str().unwrap(),
        ])
        .expect_code(0);
    let after = now_seconds();
    let text = std::fs::read_to_string(&metrics_path).unwrap();
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "the textfile collector reads the classic format:\n{text}"
    );
    let samples = parse_metrics(&text);
    let all = truth(&sim, &services);
    assert_eq!(
        read_jsonl(&dir.join(FILE)).len(),
        all.len(),
        "{}",
        out.stderr
    );
    for service in &services {
        let events = all.iter().filter(|e| &e.0 == service).count() as f64;
        let of = [("source", "sim"), ("service", service.as_str())];
        assert_eq!(
            value(&samples, &metric("events_fetched_total"), &of),
            Some(events),
            "{text}"
        );
        for sink in ["archive", "copy"] {
            let of = [
                ("source", "sim"),
                ("service", service.as_str()),
                ("sink", sink),
            ];
            assert_eq!(
                value(&samples, &metric("events_delivered_total"), &of),
                Some(events)
            );
            let through = value(
                &samples,
                &metric("acknowledged_through_timestamp_seconds"),
                &of,
            )
            .unwrap();
            assert!(
                before - 1.0 <= through && through <= after,
                "{before} {through} {after}"
            );
            let lag = value(&samples, &metric("lag_seconds"), &of).unwrap();
            assert!(lag >= 0.0, "{lag}");
        }
        let polled = value(
            &samples,
            &metric("last_successful_poll_timestamp_seconds"),
            &of,
        )
        .unwrap();
        assert!(before - 1.0 <= polled && polled <= after);
    }
    // 120 events in pages of 50: at least three requests per service, plus the probe.
    let requests: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == metric("cloud_requests_total"))
        .collect();
    assert!(
        requests
            .iter()
            .all(|s| s.labels["status"] == "200" && s.labels["source"] == "sim"),
        "{text}"
    );
    assert!(requests.iter().map(|s| s.value).sum::<f64>() >= 3.0 * 3.0 + 1.0);
    assert_eq!(
        value(&samples, &metric("cloud_retries_total"), &[]),
        None,
        "{text}"
    );
    // Every send of the file sinks is in the latency histogram.
    for sink in ["archive", "copy"] {
        let sends = value(
            &samples,
            &metric("sink_requests_total"),
            &[("sink", sink), ("outcome", "ok")],
        )
        .unwrap();
        assert!(sends >= 1.0);
        assert_eq!(
            value(
                &samples,
                &metric("sink_request_duration_seconds_count"),
                &[("sink", sink)]
            ),
            Some(sends)
        );
        assert_eq!(
            value(
                &samples,
                &metric("sink_request_duration_seconds_bucket"),
                &[("sink", sink), ("le", "+Inf")]
            ),
            Some(sends)
        );
    }
    let left: Vec<String> = std::fs::read_dir(metrics_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        vec!["runner.prom".to_owned()],
        "no temporary file is left"
    );
}

// `run` with `listen = "127.0.0.1:0"` says on its start-up line which port it took, and
// serves /live, /metrics and /health. With Loki down, /health turns 503 once Loki has
// been failing for `unhealthy_after`, naming it; the file sink has a lag, Loki none.
// When Loki comes back it catches up, /health turns 200, and Loki's acknowledged window
// is one that began after it came back.
#[test]
fn run_serves_metrics_and_health_and_health_names_the_sink_that_stays_down() {
    let dir = Dir::new("metrics-run");
    let sim = sim_with(2, 40, 43);
    let services = sim.service_ids();
    let loki = loki_double();
    loki.set_down(true).unwrap();
    let config = ConfigText::for_sim(&sim)
        .runner_key("interval", &toml_str("50ms"))
        .runner_key("listen", &toml_str("127.0.0.1:0"))
        .runner_key("health.unhealthy_after", &toml_str("200ms"))
        .file_sink("archive", FILE)
        .sink("loki", "loki", &loki_keys(&loki.base_url()));
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let running = dir.command(&["run", "--config", config_arg]).spawn();
    let mut addr = None;
    wait_until("run says where it listens", || {
        addr = listening_address(&running.stderr_so_far());
        addr.is_some()
    });
    let addr = addr.unwrap();
    assert_eq!(get(&addr, "/live").0, 200);
    assert_eq!(get(&addr, "/nothing").0, 404);

    let mut health = (0, String::new());
    wait_until("/health turns 503", || {
        health = get(&addr, "/health");
        health.0 == 503
    });
    let body: Value = serde_json::from_str(&health.1).unwrap();
    assert_eq!(body["status"], "unhealthy", "{body}");
    let failing = body["failing"].as_array().unwrap();
    let loki_entry = failing
        .iter()
        .find(|f| f["name"] == "loki")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(loki_entry["kind"], "sink");
    assert_eq!(loki_entry["unhealthy"], true);
    assert!(
        failing
            .iter()
            .all(|f| f["name"] != "archive" && f["kind"] != "source"),
        "only Loki fails: {body}"
    );

    let all = truth(&sim, &services);
    wait_until("the file has every event", || {
        dir.exists(FILE) && read_jsonl(&dir.join(FILE)).len() == all.len()
    });
    let (status, text) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let samples = parse_metrics(&text);
    for service in &services {
        let events = all.iter().filter(|e| &e.0 == service).count() as f64;
        let archive = [
            ("source", "sim"),
            ("service", service.as_str()),
            ("sink", "archive"),
        ];
        let to_loki = [
            ("source", "sim"),
            ("service", service.as_str()),
            ("sink", "loki"),
        ];
        assert_eq!(
            value(&samples, &metric("events_delivered_total"), &archive),
            Some(events)
        );
        assert!(value(&samples, &metric("lag_seconds"), &archive).is_some());
        assert_eq!(
            value(&samples, &metric("events_delivered_total"), &to_loki),
            None
        );
        assert_eq!(
            value(&samples, &metric("lag_seconds"), &to_loki),
            None,
            "Loki has acknowledged no window yet:\n{text}"
        );
    }
    assert!(
        value(
            &samples,
            &metric("sink_requests_total"),
            &[("sink", "loki"), ("outcome", "error")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(value(&samples, &metric("sink_retries_total"), &[("sink", "loki")]).unwrap() >= 1.0);

    let back = now_seconds();
    loki.set_down(false).unwrap();
    wait_until("/health turns 200 again", || get(&addr, "/health").0 == 200);
    wait_until("Loki has every event", || {
        loki.entries_of(TENANT).len() == all.len()
    });
    let mut samples = Vec::new();
    wait_until("Loki acknowledged a window after it came back", || {
        samples = parse_metrics(&get(&addr, "/metrics").1);
        services.iter().all(|service| {
            value(
                &samples,
                &metric("acknowledged_through_timestamp_seconds"),
                &[
                    ("source", "sim"),
                    ("service", service.as_str()),
                    ("sink", "loki"),
                ],
            )
            .is_some_and(|through| through >= back)
        })
    });
    for service in &services {
        let events = all.iter().filter(|e| &e.0 == service).count() as f64;
        assert_eq!(
            value(
                &samples,
                &metric("events_delivered_total"),
                &[
                    ("source", "sim"),
                    ("service", service.as_str()),
                    ("sink", "loki")
                ]
            ),
            Some(events)
        );
    }
    running.signal(libc::SIGTERM);
    let out = running.wait();
    out.assert_code(0);
}

/// A backfill long enough for progress: one service of 2,000 events read in pages of 50,
/// each answered after 5 ms. Returns the simulator (keep it alive), the service id and the
/// config's path in `dir`.
fn slow_backfill(dir: &Dir, seed: u64) -> (SimHandle, String, std::path::PathBuf) {
    let sim = sim_with(1, 2_000, seed);
    sim.set_behaviour(Behaviour {
        latency: Duration::from_millis(5),
        ..Behaviour::default()
    });
    let service = sim.service_ids()[0].clone();
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "50")
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    (sim, service, config_path)
}

// A long backfill logs progress lines (here every 20 ms instead of 10 s): their counts
// grow, they name the total the first page announced, and the last one, marked done,
// ends at it.
#[test]
fn a_long_backfill_logs_progress_lines_that_grow_to_the_total() {
    let dir = Dir::new("metrics-progress");
    let (_sim, service, config_path) = slow_backfill(&dir, 47);
    let out = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .env("RUNNER_PROGRESS_INTERVAL", "20ms")
        .expect_code(0);
    let prefix = format!("progress: sim/{service}: fetched ");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(" events ("))
        .collect();
    assert!(lines.len() >= 2, "{}", out.stderr);
    let counts: Vec<(u64, u64)> = lines
        .iter()
        .map(|l| {
            let rest = &l[prefix.len()..];
            let mut words = rest.split(' ');
            let fetched = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("of"), "{l}");
            let total = words.next().unwrap().parse().unwrap();
            (fetched, total)
        })
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0].0 <= w[1].0),
        "counts grow: {counts:?}"
    );
    assert!(
        counts.iter().all(|(_, total)| *total == 2_000),
        "{counts:?}"
    );
    assert!(counts[0].0 < 2_000, "a line came while the backfill ran");
    assert_eq!(counts.last().unwrap().0, 2_000);
    assert!(lines.last().unwrap().ends_with(", done"), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(", done")).count(),
        1,
        "{lines:?}"
    );
}

// A `listen` that is not an address is a configuration error naming the key and line.
#[test]
fn a_bad_listen_address_is_a_config_error_naming_the_key() {
    let dir = Dir::new("metrics-listen");
    let sim = sim_with(1, 1, 1);
    let config = ConfigText::for_sim(&sim)
        .runner_key("listen", &toml_str("localhost"))
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let out = dir
        .command(&["validate", "--config", config_path.to_str().unwrap()])
        .expect_code(2);
    assert!(
        out.stderr.contains("runner.listen") && out.stderr.contains("\"localhost\""),
        "{}",
        out.stderr
    );
}

// On a terminal a long backfill gets a progress bar (here after 20 ms instead of a
// second) whose total is the first page's `total_count`, left full at the end; and no
// progress lines.
#[test]
fn on_a_terminal_a_long_backfill_gets_a_bar_that_ends_full() {
    let dir = Dir::new("metrics-bar");
    let (_sim, service, config_path) = slow_backfill(&dir, 53);
    let stderr = stderr_on_a_terminal(
        &dir,
        &["sync", "--config", config_path.to_str().unwrap()],
        &[("RUNNER_PROGRESS_INTERVAL", Some("20ms"))],
    );
    assert!(
        stderr.contains(&format!("sim/{service} [")),
        "no bar named after the service:\n{stderr:?}"
    );
    // The last drawing of the bar, just before the summary on a line of its own, is full.
    let (bars, summary) = stderr
        .split_once(&format!("\nsim/{service} (svc-1): fetched 2000"))
        .unwrap_or_else(|| panic!("{stderr:?}"));
    let last = bars.rsplit("\u{1b}[1A").next().unwrap();
    assert!(last.contains("] 2000/2000 events (100%)"), "{last:?}");
    assert!(summary.contains("total: fetched 2000"), "{summary:?}");
    assert!(!stderr.contains("progress: "), "{stderr:?}");
}

// With JSON logs the progress lines are JSON too, their numbers in a `progress` field,
// the last one done at the total.
#[test]
fn json_progress_lines_carry_their_numbers() {
    let dir = Dir::new("metrics-progress-json");
    let (_sim, service, config_path) = slow_backfill(&dir, 59);
    let out = dir
        .command(&[
            "--log-format",
            "json",
            "sync",
            "--config",
            config_path.to_str().unwrap(),
        ])
        .env("RUNNER_PROGRESS_INTERVAL", "20ms")
        .expect_code(0);
    let progress: Vec<Value> = support::parse_json_lines(&out.stderr, "stderr")
        .into_iter()
        .filter_map(|line| line["fields"].get("progress").cloned())
        .collect();
    assert!(progress.len() >= 2, "{}", out.stderr);
    assert!(
        progress
            .iter()
            .all(|p| p["source"] == "sim" && p["service_id"] == service.as_str())
    );
    let fetched: Vec<u64> = progress
        .iter()
        .map(|p| p["fetched"].as_u64().unwrap())
        .collect();
    assert!(fetched.windows(2).all(|w| w[0] <= w[1]), "{fetched:?}");
    let last = progress.last().unwrap();
    assert_eq!(last["done"], true, "{last}");
    assert_eq!(last["fetched"], 2_000);
    assert_eq!(last["total"], 2_000);
    assert!(
        progress[..progress.len() - 1]
            .iter()
            .all(|p| p["done"] == false)
    );
}

// A source whose endpoint refuses connections is failing: its requests are counted with
// status `error`, and /health turns 503 naming the source (and no sink).
#[test]
fn health_names_a_source_that_cannot_be_reached() {
    let dir = Dir::new("metrics-source-down");
    let sim = sim_with(1, 5, 61);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = ConfigText::for_sim(&sim)
        .source_key("endpoint", &toml_str(&format!("http://{closed}")))
        .source_key("max_retries", "1")
        .runner_key("interval", &toml_str("50ms"))
        .runner_key("listen", &toml_str("127.0.0.1:0"))
        .runner_key("health.unhealthy_after", &toml_str("100ms"))
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let running = dir
        .command(&["run", "--config", config_path.to_str().unwrap()])
        .spawn();
    let mut addr = None;
    wait_until("run says where it listens", || {
        addr = listening_address(&running.stderr_so_far());
        addr.is_some()
    });
    let addr = addr.unwrap();
    let mut health = (0, String::new());
    wait_until("/health turns 503", || {
        health = get(&addr, "/health");
        health.0 == 503
    });
    let body: Value = serde_json::from_str(&health.1).unwrap();
    let failing = body["failing"].as_array().unwrap();
    assert_eq!(failing.len(), 1, "{body}");
    assert_eq!(failing[0]["kind"], "source");
    assert_eq!(failing[0]["name"], "sim");
    assert!(
        failing[0]["error"]
            .as_str()
            .unwrap()
            .contains(&closed.to_string()),
        "the error names the endpoint: {body}"
    );
    let samples = parse_metrics(&get(&addr, "/metrics").1);
    assert!(
        value(
            &samples,
            &metric("cloud_requests_total"),
            &[("source", "sim"), ("status", "error")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        value(
            &samples,
            &metric("cloud_retries_total"),
            &[("source", "sim")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        get(&addr, "/live").0,
        200,
        "not live is for a stuck process only"
    );
    running.signal(libc::SIGTERM);
    running.wait().assert_code(0);
}
