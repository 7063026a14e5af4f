//! The test harness shared by the integration tests: a simulator with one
//! service, source settings pointed at it, and a full "sync" of that service
//! through the real pipeline (the `pipeline` crate: cursors from the SQLite
//! state file, the pull, the delivery engine, commits) into a real file sink,
//! so that exactly-once can be checked across runs.
//!
//! Each sync opens the state file, the client, the server model and the sink
//! afresh, like a cron-started `runner sync`; only the state file and the
//! sink's file carry over.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use pipeline::{Followed, Mode, Pipeline, ServiceFailure, SinkRuntime, SourceRuntime, StateHandle};
use record::EventRecord;
use simulator::{Behaviour, SimConfig, SimEvent, SimHandle, Simulator};
use sink::file::FileConfig;
use sink::{RetrySettings, SinkFilter, SinkOptions, SinkSettings};
use source::checkpoint::CheckpointStore;
use source::{
    AuthSettings, ModelArtsClient, OffsetUnit, PullOptions, Secret, SecretSource, ServerModel,
    ServicePull, SourceError, SourceSettings, StartAt, TlsSettings,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

/// The id of the one service every harness serves.
pub const SERVICE: &str = "5f1e2d3c-0000-4000-8000-00000000c0de";
/// The source and sink names (they are not part of the id).
const SOURCE_NAME: &str = "sim";
const SINK_NAME: &str = "archive";

/// One event as a sink received it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivered {
    pub occur_time: i64,
    pub event_type: String,
    pub event_info: String,
    pub twin: u32,
    pub id: String,
}

/// What one sync did.
#[derive(Debug)]
pub struct SyncOutcome {
    pub delivered: Vec<Delivered>,
    /// Rows counted malformed by the pull.
    pub malformed: usize,
    /// Requests the pull made (not counting the client's retries).
    pub requests: u64,
    /// Where the sync stopped early, why (what was delivered before stays).
    pub error: Option<SourceError>,
}

/// A simulator with one service, settings pointing at it, and a state file.
pub struct Harness {
    pub sim: SimHandle,
    pub settings: SourceSettings,
    /// Where the cursor is kept between syncs.
    pub state_path: PathBuf,
    _state_dir: TempDir,
}

impl Harness {
    /// Starts a simulator with `behaviour`, one empty service and `events`.
    pub fn start(behaviour: Behaviour, events: Vec<SimEvent>) -> Harness {
        let config = SimConfig {
            services: 0,
            events_per_service: 0,
            behaviour,
            ..SimConfig::default()
        };
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
        sim.add_service(SERVICE, "sim-service");
        sim.add_events(SERVICE, events);
        let settings = settings_for(&sim);
        let state_dir = tempfile::tempdir().unwrap();
        let state_path = state_dir.path().join("state").join("events.db");
        Harness {
            sim,
            settings,
            state_path,
            _state_dir: state_dir,
        }
    }

    /// A sync that must succeed.
    pub async fn sync(&self) -> SyncOutcome {
        let outcome = self.try_sync().await;
        if let Some(error) = &outcome.error {
            panic!("sync failed: {error}");
        }
        outcome
    }

    /// One run of the pipeline for the service, into the file sink (also when the pull
    /// fails: what was delivered before stays delivered). What it delivered is read back
    /// from the file.
    pub async fn try_sync(&self) -> SyncOutcome {
        let _lock = CheckpointStore::lock(&self.state_path).unwrap();
        let state = StateHandle::new(CheckpointStore::open(&self.state_path).unwrap());
        let out = self.out_path();
        let before = std::fs::metadata(&out).map_or(0, |m| m.len());
        let sink = SinkRuntime::open(&file_sink(&out), &state, self.settings.lookback)
            .await
            .unwrap();
        assert!(
            sink.unavailable().is_none(),
            "the file sink cannot open {out:?}"
        );
        let client = ModelArtsClient::new(&self.settings).unwrap();
        let source = Arc::new(SourceRuntime::new(self.settings.clone(), client));
        let pipeline = Pipeline::new(vec![source.clone()], vec![Arc::new(sink)], 1);
        let followed = Followed {
            service_id: SERVICE.to_owned(),
            discovered: false,
            service_name: String::new(),
        };
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let report = pipeline
            .sync_services(
                &Arc::new(Mode::Deliver { state }),
                vec![(source, followed)],
                shutdown,
            )
            .await;
        for sink in &report.sinks {
            assert!(sink.failure.is_none(), "{}", sink.line());
        }
        let service = report.services.into_iter().next().expect("one service");
        let delivered = new_lines(&out, before)
            .iter()
            .map(|record| self.delivered(record))
            .collect();
        SyncOutcome {
            delivered,
            malformed: usize::try_from(service.malformed).unwrap(),
            requests: service.requests,
            error: service.failure.map(|failure| match failure {
                ServiceFailure::Source(error) => error,
                other => panic!("the sync failed outside the pull: {other}"),
            }),
        }
    }

    /// The file the harness's sink writes.
    pub fn out_path(&self) -> PathBuf {
        self.state_path.with_file_name("events.jsonl")
    }

    /// A record as delivered, with its twin number recovered from the pinned id.
    fn delivered(&self, record: &EventRecord) -> Delivered {
        let project_id = self.settings.project_id.as_deref().unwrap_or_default();
        let twin = (1..=100_000)
            .find(|&twin| {
                record::event_id(record::IdParts {
                    project_id,
                    service_id: SERVICE,
                    occur_time: record.occur_time,
                    event_type: &record.event_type,
                    event_info: &record.event_info,
                    twin,
                }) == record.id
            })
            .unwrap_or_else(|| panic!("no twin number gives the id of {record:?}"));
        Delivered {
            occur_time: record.occur_time,
            event_type: record.event_type.clone(),
            event_info: record.event_info.clone(),
            twin,
            id: record.id.to_string(),
        }
    }

    /// What a correct shipper delivers: the simulator's ground truth with
    /// twins numbered in their millisecond, as records with ids.
    pub fn expected(&self) -> Vec<Delivered> {
        let truth = self.sim.events(SERVICE);
        number(
            self.settings.project_id.as_deref().unwrap_or_default(),
            truth,
        )
    }
}

/// The harness's file sink writing `out`, with the engine's defaults.
fn file_sink(out: &Path) -> SinkSettings {
    SinkSettings {
        name: SINK_NAME.to_owned(),
        filter: SinkFilter::all(),
        options: SinkOptions {
            batch: sink::file::KIND.batch,
            retry: RetrySettings::default(),
            healthcheck: true,
            dead_letter_path: out.with_file_name("dead-letter.jsonl"),
            dead_letter_max_bytes: 1 << 20,
        },
        config: Arc::new(FileConfig {
            path: out.to_owned(),
            path_span: 0..0,
        }),
    }
}

/// The records appended to `out` after its first `from` bytes; a torn line fails.
fn new_lines(out: &Path, from: u64) -> Vec<EventRecord> {
    let bytes = std::fs::read(out).unwrap_or_default();
    let tail = &bytes[usize::try_from(from).unwrap().min(bytes.len())..];
    let text = std::str::from_utf8(tail).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a torn line in {out:?}"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Numbers identical events within each millisecond and computes ids.
pub fn number(project_id: &str, events: Vec<(i64, String, String)>) -> Vec<Delivered> {
    let mut counts: HashMap<(i64, String, String), u32> = HashMap::new();
    events
        .into_iter()
        .map(|(occur_time, event_type, event_info)| {
            let twin = counts
                .entry((occur_time, event_type.clone(), event_info.clone()))
                .or_insert(0);
            *twin += 1;
            let id = record::event_id(record::IdParts {
                project_id,
                service_id: SERVICE,
                occur_time,
                event_type: &event_type,
                event_info: &event_info,
                twin: *twin,
            });
            Delivered {
                occur_time,
                event_type,
                event_info,
                twin: *twin,
                id,
            }
        })
        .collect()
}

/// Settings for a simulator: fast retries, no rate cap to speak of, small pages. Also
/// installs the process's TLS crypto provider, which building a client from them needs
/// (the runner installs it in `main`; each test may run in its own process).
pub fn settings_for(sim: &SimHandle) -> SourceSettings {
    tls_provider::install();
    SourceSettings {
        name: SOURCE_NAME.to_owned(),
        endpoint: sim.base_url(),
        project_id: Some(sim.project_id()),
        discover: None,
        tls: TlsSettings::default(),
        services: vec![SERVICE.to_owned()],
        event_type: None,
        page_size: 10,
        lookback: Duration::from_secs(600),
        max_clock_skew: Duration::from_secs(300),
        start_at: StartAt::Beginning,
        offset_unit: OffsetUnit::Auto,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(10),
        max_requests_per_second: 1_000_000.0,
        max_retries: 8,
        max_response_bytes: 64 * 1024 * 1024,
        retry_initial_backoff: Duration::from_millis(2),
        retry_max_backoff: Duration::from_millis(20),
        auth: AuthSettings::Token {
            token: SecretSource::Inline(Secret::new(sim.token())),
        },
        origin: Default::default(),
    }
}

/// Checks that `delivered` (all runs together) holds every expected event
/// exactly once; describes the difference otherwise.
pub fn check_exactly_once(expected: &[Delivered], delivered: &[Delivered]) -> Result<(), String> {
    let mut want: BTreeMap<&str, (usize, &Delivered)> = BTreeMap::new();
    for event in expected {
        want.entry(&event.id).or_insert((0, event)).0 += 1;
    }
    let mut got: BTreeMap<&str, (usize, &Delivered)> = BTreeMap::new();
    for event in delivered {
        got.entry(&event.id).or_insert((0, event)).0 += 1;
    }
    let mut problems = Vec::new();
    for (id, (n, event)) in &want {
        if *n != 1 {
            problems.push(format!("ground truth has id {id} {n} times (harness bug)"));
        }
        if !got.contains_key(id) {
            problems.push(format!("missing {event:?}"));
        }
    }
    for (id, (n, event)) in &got {
        if !want.contains_key(id) {
            problems.push(format!("unexpected {event:?}"));
        } else if *n > 1 {
            problems.push(format!("delivered {n} times: {event:?}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let total = problems.len();
    problems.truncate(8);
    Err(format!(
        "{total} problems (expected {}, delivered {}): {}",
        expected.len(),
        delivered.len(),
        problems.join("; ")
    ))
}

/// Ordinary events, ties, identical twins in ordinary milliseconds, and
/// overfull milliseconds (more events than a page of 10 or 7) at the start,
/// in the middle next to each other, and at the end; about 140 events from
/// `base` on.
pub fn tricky_events(base: i64) -> Vec<SimEvent> {
    let mut events = Vec::new();
    let mut push = |t: i64, kind: &str, info: String| events.push(SimEvent::new(t, kind, &info));
    // Overfull first millisecond: read before any start_time is known.
    for i in 0..15 {
        let info = if i % 3 == 0 {
            "Created.".to_owned()
        } else {
            format!("Replica {i} created.")
        };
        push(base, "normal", info);
    }
    for i in 0..30 {
        let t = base + 5 + i * 5;
        push(t, "normal", format!("Step {i}."));
        if i % 7 == 3 {
            // Identical twins in an ordinary millisecond.
            push(t, "normal", format!("Step {i}."));
            push(t, "normal", format!("Step {i}."));
        }
        if i % 5 == 1 {
            push(t, "abnormal", "Probe failed.".to_owned());
            push(t, "abnormal", "Probe failed.".to_owned());
        }
    }
    let busy = base + 200;
    push(busy - 1, "normal", "Before the burst.".to_owned());
    push(busy - 1, "normal", "Before the burst.".to_owned());
    // 25 events in one millisecond, twins among them, interleaved.
    for i in 0..25 {
        let info = match i % 4 {
            0 => "Pulling image.".to_owned(),
            1 => "Scheduling.".to_owned(),
            _ => format!("Instance {i} ready."),
        };
        push(busy, "normal", info);
    }
    // The next millisecond is overfull too: windows that leak past their
    // end show its rows.
    for i in 0..12 {
        let kind = if i % 2 == 0 { "abnormal" } else { "normal" };
        push(busy + 1, kind, format!("Burst two {}.", i % 3));
    }
    for i in 0..20 {
        let t = busy + 10 + i * 3;
        push(t, "normal", format!("Serving {i}."));
        if i % 6 == 0 {
            push(t, "normal", format!("Tie {i}."));
            push(t, "normal", format!("Serving {i}."));
        }
    }
    // An overfull last millisecond of identical twins only.
    for _ in 0..11 {
        push(base + 400, "normal", "Heartbeat.".to_owned());
    }
    events
}

/// A simulator started from `config` (its identity, IAM users, access keys,
/// token lifetime, behaviour) with the harness's one service and `events`,
/// and settings pointing at it with token auth.
pub fn start_with(config: SimConfig, events: Vec<SimEvent>) -> Harness {
    let config = SimConfig {
        services: 0,
        events_per_service: 0,
        ..config
    };
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    sim.add_service(SERVICE, "sim-service");
    sim.add_events(SERVICE, events);
    let settings = settings_for(&sim);
    let state_dir = tempfile::tempdir().unwrap();
    let state_path = state_dir.path().join("state").join("events.db");
    Harness {
        sim,
        settings,
        state_path,
        _state_dir: state_dir,
    }
}

/// Every event of the harness's service through `client` (a fresh pull from
/// the beginning, no cursor), numbered and with ids under `project_id`.
pub async fn pull_all(
    client: &ModelArtsClient,
    project_id: &str,
    page_size: u32,
) -> Result<Vec<Delivered>, SourceError> {
    let model = Mutex::new(ServerModel::default());
    let options = PullOptions {
        page_size,
        event_type: None,
        offset_unit: OffsetUnit::Auto,
        max_clock_skew: Duration::from_secs(300),
    };
    let mut pull = ServicePull::new(client, &model, SERVICE, None, options);
    let mut delivered = Vec::new();
    while let Some(batch) = pull.next_batch().await? {
        for event in batch.events {
            let id = record::event_id(record::IdParts {
                project_id,
                service_id: SERVICE,
                occur_time: event.occur_time,
                event_type: &event.event_type,
                event_info: &event.event_info,
                twin: event.twin,
            });
            delivered.push(Delivered {
                occur_time: event.occur_time,
                event_type: event.event_type,
                event_info: event.event_info,
                twin: event.twin,
                id,
            });
        }
    }
    Ok(delivered)
}

/// `count` events one millisecond apart from `base`.
pub fn uniform_events(base: i64, count: i64) -> Vec<SimEvent> {
    (0..count)
        .map(|i| SimEvent::new(base + i, "normal", &format!("Event {i}.")))
        .collect()
}
