//! What the engine tests share: a *recording fake sink* whose answers a test scripts
//! (fail N times, reject or retry given records, fail permanently, wait at a gate), a
//! world of a ModelArts simulator on 127.0.0.1 and a real SQLite state file, and a way
//! to read back what was committed.
//!
//! The fake stands in for a destination (Loki, Elasticsearch, a webhook): everything
//! between the pull and the destination is the real engine.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod sim_settings;

pub use sim_settings::sim_settings;

use pipeline::{Mode, Pipeline, RunReport, Selection, SinkRuntime, SourceRuntime, StateHandle};
use record::SharedRecord;
use simulator::{SimConfig, SimHandle, Simulator, Spread};
use sink::config::{BuildContext, BuiltSink};
use sink::{
    BatchSettings, Delivery, ItemRetry, Rejection, RetrySettings, Sink, SinkConfig, SinkError,
    SinkFilter, SinkOptions, SinkSettings,
};
use source::checkpoint::{CheckpointStore, CursorKey, CursorState, PositionRow};
use source::{ModelArtsClient, SourceSettings};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::{Semaphore, watch};

/// What a fake sink answers to one send.
pub enum Answer {
    /// Every record accepted.
    Accept,
    /// The whole batch fails.
    Fail(SinkError),
    /// Per-record outcomes; records in neither list are accepted.
    Items {
        reject: Vec<usize>,
        retry: Vec<usize>,
    },
    /// Records held back for a later run, and records refused in a way the sink expects
    /// (`too_old`); the others are accepted.
    Loki {
        hold: Vec<usize>,
        too_old: Vec<usize>,
    },
    /// Records acknowledged without being "sent" (too old to alert about); the others are
    /// accepted.
    Skip(Vec<usize>),
    /// Outcomes as given, unchecked (for impossible answers).
    Raw(Delivery),
}

/// One call to `send`, as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub records: Vec<SharedRecord>,
}

impl Call {
    /// The services (source/service) the batch spans.
    pub fn services(&self) -> HashSet<String> {
        self.records
            .iter()
            .map(|r| format!("{}/{}", r.source, r.service_id))
            .collect()
    }
}

type Script = Box<dyn Fn(usize, &[SharedRecord]) -> Answer + Send + Sync>;

/// A destination that records every call and every record it accepted, answering as
/// its script says. Sends wait at its gate, if it has one.
pub struct FakeSink {
    name: String,
    script: Script,
    calls: Mutex<Vec<Call>>,
    accepted: Mutex<Vec<SharedRecord>>,
    gate: Option<Arc<Semaphore>>,
    /// The first send waits until this many sends have arrived.
    hold_first_until: usize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// How long each send after the first takes.
    later_sends_take: Duration,
    /// Sends ended and roll-backs asked, in order: `sent N`, `rollback`.
    events: Mutex<Vec<String>>,
}

impl FakeSink {
    /// A sink answering each send (number `n`, from 0) with `script(n, batch)`.
    pub fn new(
        name: &str,
        script: impl Fn(usize, &[SharedRecord]) -> Answer + Send + Sync + 'static,
    ) -> Arc<FakeSink> {
        Arc::new(FakeSink {
            name: name.to_owned(),
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
            gate: None,
            hold_first_until: 0,
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            later_sends_take: Duration::ZERO,
            events: Mutex::new(Vec::new()),
        })
    }

    /// The same sink, each of whose sends after the first takes `time`.
    pub fn with_later_sends_taking(sink: Arc<FakeSink>, time: Duration) -> Arc<FakeSink> {
        Self::changed(sink, |s| s.later_sends_take = time)
    }

    /// `sink`, not yet shared, with `change` made to it.
    fn changed(sink: Arc<FakeSink>, change: impl FnOnce(&mut FakeSink)) -> Arc<FakeSink> {
        let mut sink = Arc::into_inner(sink).unwrap();
        change(&mut sink);
        Arc::new(sink)
    }

    /// Sends ended and roll-backs asked, in the order they happened.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// A sink that accepts everything.
    pub fn accepting(name: &str) -> Arc<FakeSink> {
        Self::new(name, |_, _| Answer::Accept)
    }

    /// A sink that accepts everything, one send per permit of `gate`.
    pub fn gated(name: &str, gate: Arc<Semaphore>) -> Arc<FakeSink> {
        Self::changed(Self::accepting(name), |s| s.gate = Some(gate))
    }

    /// The same sink, whose first send waits until `sends` sends have arrived (so that
    /// later batches overtake it).
    pub fn holding_the_first_send_until(sink: Arc<FakeSink>, sends: usize) -> Arc<FakeSink> {
        Self::changed(sink, |s| s.hold_first_until = sends)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Records accepted, in the order they were accepted.
    pub fn accepted(&self) -> Vec<SharedRecord> {
        self.accepted.lock().unwrap().clone()
    }

    pub fn accepted_ids(&self) -> Vec<String> {
        self.accepted().iter().map(|r| r.id.to_string()).collect()
    }

    /// The most sends that were in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Sink for FakeSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn send(&self, batch: &[SharedRecord]) -> Result<Delivery, SinkError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Call {
                records: batch.to_vec(),
            });
            calls.len() - 1
        };
        if n == 0 {
            for _ in 0..60_000 {
                if self.calls.lock().unwrap().len() >= self.hold_first_until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if n > 0 {
            tokio::time::sleep(self.later_sends_take).await;
        }
        let answer = (self.script)(n, batch);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.events.lock().unwrap().push(format!("sent {n}"));
        let delivery = match answer {
            Answer::Accept => Delivery::all_accepted(),
            Answer::Fail(e) => return Err(e),
            Answer::Raw(delivery) => return Ok(delivery),
            Answer::Skip(indices) => Delivery {
                skipped: indices
                    .into_iter()
                    .map(|index| sink::ItemSkip {
                        index,
                        kind: "too_old_to_alert",
                    })
                    .collect(),
                ..Delivery::default()
            },
            Answer::Loki { hold, too_old } => Delivery {
                rejected: too_old
                    .into_iter()
                    .map(|index| Rejection {
                        index,
                        reason: "entry too far behind".to_owned(),
                        status: Some(400),
                        expected: Some("too_old"),
                    })
                    .collect(),
                held: hold
                    .into_iter()
                    .map(|index| sink::ItemHold {
                        index,
                        reason: "dated ahead of the clock".to_owned(),
                    })
                    .collect(),
                ..Delivery::default()
            },
            Answer::Items { reject, retry } => Delivery {
                rejected: reject
                    .into_iter()
                    .map(|index| Rejection {
                        index,
                        reason: format!("refused {}", batch[index].event_info),
                        status: Some(400),
                        expected: None,
                    })
                    .collect(),
                retry: retry
                    .into_iter()
                    .map(|index| ItemRetry {
                        index,
                        reason: "busy".to_owned(),
                        status: Some(429),
                    })
                    .collect(),
                ..Delivery::default()
            },
        };
        let refused: HashSet<usize> = delivery
            .rejected
            .iter()
            .map(|r| r.index)
            .chain(delivery.retry.iter().map(|r| r.index))
            .chain(delivery.held.iter().map(|h| h.index))
            .chain(delivery.skipped.iter().map(|k| k.index))
            .collect();
        let mut accepted = self.accepted.lock().unwrap();
        for (i, record) in batch.iter().enumerate() {
            if !refused.contains(&i) {
                accepted.push(record.clone());
            }
        }
        Ok(delivery)
    }

    async fn rollback(&self, _: Option<&sink::SinkState>) -> Result<(), SinkError> {
        self.events.lock().unwrap().push("rollback".to_owned());
        Ok(())
    }
}

/// The fake's settings, so that the engine opens it like any configured sink.
#[derive(Debug)]
pub struct FakeConfig {
    sink: Arc<FakeSink>,
    concurrency: usize,
}

impl std::fmt::Debug for FakeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSink")
            .field("name", &self.name)
            .finish()
    }
}

#[async_trait::async_trait]
impl SinkConfig for FakeConfig {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn build(&self, _: &str, _: BuildContext) -> Result<BuiltSink, SinkError> {
        Ok(BuiltSink {
            sink: self.sink.clone(),
            state: None,
            recovered: Vec::new(),
        })
    }

    async fn check(&self, _: &str) -> Result<(), SinkError> {
        Ok(())
    }
}

/// How a test configures one fake sink.
#[derive(Clone)]
pub struct SinkSpec {
    pub batch: BatchSettings,
    pub retry: RetrySettings,
    pub filter: SinkFilter,
    pub concurrency: usize,
    pub dead_letter_max_bytes: u64,
    /// `None`: `<dir>/dead-letter/<sink>.jsonl`.
    pub dead_letter_path: Option<PathBuf>,
}

impl Default for SinkSpec {
    fn default() -> Self {
        SinkSpec {
            batch: BatchSettings {
                max_events: 500,
                max_bytes: 1 << 20,
                timeout: Duration::from_millis(200),
            },
            retry: RetrySettings {
                max_attempts: 4,
                initial_backoff: Duration::from_millis(2),
                max_backoff: Duration::from_millis(20),
            },
            filter: SinkFilter::all(),
            concurrency: 1,
            dead_letter_max_bytes: 1 << 20,
            dead_letter_path: None,
        }
    }
}

/// A simulator with some services, a state file, and the source pointed at them.
pub struct World {
    pub sim: SimHandle,
    pub dir: TempDir,
    pub settings: SourceSettings,
}

impl World {
    /// `services` services of `events` events each, spread over weeks like real ones;
    /// pages of `page_size`.
    pub fn new(services: usize, events: usize, page_size: u32) -> World {
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                services,
                events_per_service: events,
                seed: 7,
                spread: Spread::Realistic,
                ..SimConfig::default()
            },
        )
        .unwrap();
        let settings = sim_settings(&sim, page_size);
        World {
            sim,
            dir: tempfile::tempdir().unwrap(),
            settings,
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state").join("events.db")
    }

    pub fn dead_letter_path(&self, sink: &str) -> PathBuf {
        self.dir
            .path()
            .join("dead-letter")
            .join(format!("{sink}.jsonl"))
    }

    /// The settings the engine opens `fake` with.
    pub fn sink_settings(&self, fake: &Arc<FakeSink>, spec: &SinkSpec) -> SinkSettings {
        SinkSettings {
            name: fake.name.clone(),
            filter: spec.filter.clone(),
            options: SinkOptions {
                batch: spec.batch,
                retry: spec.retry,
                healthcheck: true,
                dead_letter_path: spec
                    .dead_letter_path
                    .clone()
                    .unwrap_or_else(|| self.dead_letter_path(&fake.name)),
                dead_letter_max_bytes: spec.dead_letter_max_bytes,
            },
            config: Arc::new(FakeConfig {
                sink: fake.clone(),
                concurrency: spec.concurrency,
            }),
        }
    }

    /// A pipeline over the world's source and `sinks`, opened on the state file (like
    /// one `runner run` process: keep it for several cycles).
    pub async fn pipeline(
        &self,
        sinks: &[(&Arc<FakeSink>, SinkSpec)],
        concurrency: usize,
    ) -> (Pipeline, Arc<Mode>) {
        let state = StateHandle::new(CheckpointStore::open(&self.state_path()).unwrap());
        let mut runtimes = Vec::new();
        for (fake, spec) in sinks {
            let settings = self.sink_settings(fake, spec);
            runtimes.push(Arc::new(
                SinkRuntime::open(&settings, &state, Duration::from_secs(600))
                    .await
                    .unwrap(),
            ));
        }
        let client = ModelArtsClient::new(&self.settings).unwrap();
        let source = Arc::new(SourceRuntime::new(self.settings.clone(), client));
        let pipeline = Pipeline::new(vec![source], runtimes, concurrency);
        (pipeline, Arc::new(Mode::Deliver { state }))
    }

    /// One `runner sync`: a pipeline opened afresh, one cycle.
    pub async fn sync(
        &self,
        sinks: &[(&Arc<FakeSink>, SinkSpec)],
        concurrency: usize,
    ) -> RunReport {
        let (pipeline, mode) = self.pipeline(sinks, concurrency).await;
        cycle(&pipeline, &mode).await
    }

    /// Every event id the simulator holds, per service.
    pub fn truth(&self) -> BTreeMap<String, Vec<String>> {
        let project_id = self.sim.project_id();
        self.sim
            .service_ids()
            .into_iter()
            .map(|service| {
                let mut counts: BTreeMap<(i64, String, String), u32> = BTreeMap::new();
                let ids = self
                    .sim
                    .events(&service)
                    .into_iter()
                    .map(|(t, kind, info)| {
                        let twin = counts.entry((t, kind.clone(), info.clone())).or_insert(0);
                        *twin += 1;
                        record::event_id(record::IdParts {
                            project_id: &project_id,
                            service_id: &service,
                            occur_time: t,
                            event_type: &kind,
                            event_info: &info,
                            twin: *twin,
                        })
                    })
                    .collect();
                (service, ids)
            })
            .collect()
    }

    /// Every event id, all services together.
    pub fn all_ids(&self) -> Vec<String> {
        self.truth().into_values().flatten().collect()
    }

    /// The committed positions.
    pub fn positions(&self) -> Vec<PositionRow> {
        CheckpointStore::open_read_only(&self.state_path())
            .unwrap()
            .map(|s| s.positions().unwrap())
            .unwrap_or_default()
    }

    /// The committed cursor of `sink` on `service`.
    pub fn cursor(&self, service: &str, sink: &str) -> Option<CursorState> {
        let store = CheckpointStore::open_read_only(&self.state_path())
            .unwrap()
            .unwrap();
        store
            .cursor(&CursorKey {
                source: "sim".to_owned(),
                service_id: service.to_owned(),
                sink: sink.to_owned(),
            })
            .unwrap()
    }

    /// The newest `occur_time` of `service`.
    pub fn newest(&self, service: &str) -> i64 {
        self.sim
            .events(service)
            .iter()
            .map(|(t, _, _)| *t)
            .max()
            .unwrap()
    }
}

/// One sync cycle of `pipeline`, never interrupted.
pub async fn cycle(pipeline: &Pipeline, mode: &Arc<Mode>) -> RunReport {
    let (_stop, shutdown) = watch::channel(false);
    pipeline.sync(mode, &Selection::default(), shutdown).await
}

/// Asserts that `got` holds every id of `want` exactly once, and nothing else.
pub fn assert_exactly_once(got: &[String], want: &[String], what: &str) {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for id in want {
        *counts.entry(id).or_default() -= 1;
    }
    for id in got {
        *counts.entry(id).or_default() += 1;
    }
    let wrong: Vec<(&&str, &i64)> = counts.iter().filter(|(_, n)| **n != 0).take(5).collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} delivered, {} expected; off (id, delivered - expected): {wrong:?}",
        got.len(),
        want.len()
    );
}

/// A retryable error with an optional `Retry-After`.
pub fn retryable(sink: &str, retry_after: Option<Duration>) -> SinkError {
    SinkError::retryable(sink, "service unavailable")
        .with_status(503)
        .with_retry_after(retry_after)
}

/// A permanent error.
pub fn forbidden(sink: &str) -> SinkError {
    SinkError::permanent(sink, "forbidden").with_status(403)
}
