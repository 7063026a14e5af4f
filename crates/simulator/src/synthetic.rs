//! Synthetic services and events that look like the real ones: deployments as bursts of events
//! within milliseconds to seconds (image build, environment, scheduling, image pull, start),
//! lifecycle operations and failures, seconds to minutes apart, with ties and identical twins.
//! Everything derives from one seed, so a seed always gives the same data.
//!
//! Also the API page's own sample service and its nine events, served when asked for.
//!
//! Upstream event catalogue: <https://docs.otc.t-systems.com/modelarts/umn/faqs/service_deployment/functional_consulting/what_are_the_events_and_their_types_for_a_service.html>

use crate::config::{SimConfig, Spread};
use crate::store::{Row, RowBody, Store};

/// The sample service of the events API page.
pub const SAMPLE_SERVICE_ID: &str = "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e";
/// The sample service's name on the events API page.
pub const SAMPLE_SERVICE_NAME: &str = "zcjtest-07085";

/// The nine events of the API page's sample response, ascending.
pub(crate) const SAMPLE_EVENTS: [(i64, &str); 9] = [
    (1_562_597_251_764, "start to deploy service"),
    (
        1_562_597_251_788,
        "building image for model [zcjtestTF 3.0.0]",
    ),
    (
        1_562_597_251_805,
        "model (zcjtestTF 3.0.0) build image success",
    ),
    (1_562_597_255_744, "preparing environment"),
    (
        1_562_597_275_915,
        "[zcjtestTF 3.0.0] prepare environment success",
    ),
    (
        1_562_597_275_921,
        "[zcjtestTF 3.0.0] schedule resource success",
    ),
    (1_562_597_275_928, "[zcjtestTF 3.0.0] pulling model image"),
    (1_562_597_332_570, "[zcjtestTF 3.0.0] pull image success"),
    (1_562_597_332_582, "[zcjtestTF 3.0.0] starting model"),
];

const MODELS: [&str; 8] = [
    "mnist",
    "resnet50",
    "bert-base",
    "yolov5",
    "ocr-det",
    "fraud-xgb",
    "sentiment",
    "whisper-small",
];
const VERSIONS: [&str; 5] = ["1.0.0", "1.0.1", "1.1.0", "2.0.0", "3.0.0"];

const NORMAL: &str = "normal";
const ABNORMAL: &str = "abnormal";

/// Mixes a seed so that neighbouring seeds give unrelated streams (SplitMix64 finalizer).
fn mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// A UUID-like id (version 4 layout) drawn from `rng`.
fn uuid_like(rng: &mut fastrand::Rng) -> String {
    let mut bits = rng.u128(..);
    bits = (bits & !(0xF << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Fills `store` with the configured services: the sample first (if asked), then the synthetic
/// ones in order.
pub(crate) fn populate(store: &mut Store, config: &SimConfig, end_at_ms: i64) {
    if config.include_sample {
        store.upsert_service(
            SAMPLE_SERVICE_ID,
            SAMPLE_SERVICE_NAME,
            "running",
            SAMPLE_EVENTS[0].0,
        );
        let rows = SAMPLE_EVENTS
            .iter()
            .map(|(occur_time, info)| Row {
                sort_time: *occur_time,
                body: RowBody::Event {
                    event_type: store.intern(NORMAL),
                    event_info: store.intern(info),
                },
            })
            .collect();
        store.push_sorted_rows(SAMPLE_SERVICE_ID, rows);
    }

    let mut id_rng = fastrand::Rng::with_seed(mix(config.seed));
    for index in 0..config.services {
        let service_id = uuid_like(&mut id_rng);
        let service_name = format!("svc-{}", index + 1);
        // One stream per service: a service's events do not depend on how many others exist.
        let mut rng = fastrand::Rng::with_seed(mix(config.seed ^ mix(index as u64 + 1)));
        let rows = generate_rows(
            store,
            &mut rng,
            &service_name,
            config.events_per_service,
            config.spread,
            end_at_ms,
        );
        let publish_at = rows.first().map_or(end_at_ms, |row| row.sort_time);
        let status = match rng.u8(0..10) {
            0 => "stopped",
            1 => "failed",
            _ => "running",
        };
        store.upsert_service(&service_id, &service_name, status, publish_at);
        store.push_sorted_rows(&service_id, rows);
    }
}

/// Builds the rows of one service in ascending order, the newest at `end_at_ms`.
fn generate_rows(
    store: &mut Store,
    rng: &mut fastrand::Rng,
    service_name: &str,
    count: usize,
    spread: Spread,
    end_at_ms: i64,
) -> Vec<Row> {
    let mut timeline = Timeline {
        store,
        now: 0,
        rows: Vec::with_capacity(count),
    };
    while timeline.rows.len() < count {
        timeline.episode(rng, service_name);
        timeline.now += pause_between_episodes(rng);
    }
    timeline.rows.truncate(count);
    let mut rows = timeline.rows;
    match spread {
        Spread::Realistic => {
            let shift = end_at_ms - rows.last().map_or(0, |row| row.sort_time);
            rows.iter_mut().for_each(|row| row.sort_time += shift);
        }
        Spread::SameMillisecond => rows.iter_mut().for_each(|row| row.sort_time = end_at_ms),
        Spread::Uniform { step_ms } => {
            let last = rows.len() as i64 - 1;
            for (index, row) in rows.iter_mut().enumerate() {
                row.sort_time = end_at_ms - (last - index as i64) * step_ms;
            }
        }
    }
    rows
}

/// Seconds to minutes, sometimes much longer: how far apart unrelated episodes are.
fn pause_between_episodes(rng: &mut fastrand::Rng) -> i64 {
    if rng.u8(0..10) < 7 {
        rng.i64(1_000..=120_000)
    } else {
        rng.i64(120_000..=2_700_000)
    }
}

/// Writes events forward in time from a relative origin; the caller shifts them into place.
struct Timeline<'a> {
    store: &'a mut Store,
    now: i64,
    rows: Vec<Row>,
}

impl Timeline<'_> {
    fn emit(&mut self, after_ms: i64, event_type: &str, event_info: &str) {
        self.now += after_ms;
        let body = RowBody::Event {
            event_type: self.store.intern(event_type),
            event_info: self.store.intern(event_info),
        };
        self.rows.push(Row {
            sort_time: self.now,
            body,
        });
    }

    /// Milliseconds between the steps of one burst; zero now and then, which makes ties.
    fn burst_step(rng: &mut fastrand::Rng) -> i64 {
        if rng.u8(0..8) == 0 {
            0
        } else {
            rng.i64(1..=40)
        }
    }

    fn episode(&mut self, rng: &mut fastrand::Rng, service_name: &str) {
        let model = format!(
            "{} {}",
            MODELS[rng.usize(..MODELS.len())],
            VERSIONS[rng.usize(..VERSIONS.len())]
        );
        match rng.u8(0..100) {
            0..=44 => self.deployment(rng, service_name, &model),
            45..=69 => self.lifecycle(rng, service_name),
            70..=81 => self.health_flap(rng, &model),
            _ => self.scaling(rng, service_name, &model),
        }
    }

    /// A deployment, as on the API page, that may fail at image build, scheduling or start.
    fn deployment(&mut self, rng: &mut fastrand::Rng, service_name: &str, model: &str) {
        self.emit(0, NORMAL, "start to deploy service");
        self.emit(
            Self::burst_step(rng),
            NORMAL,
            &format!("building image for model [{model}]"),
        );
        if rng.u8(0..20) == 0 {
            self.emit(
                rng.i64(5_000..=90_000),
                ABNORMAL,
                "Failed to create model image. Check the model configuration and the image build log, then try again.",
            );
            return;
        }
        self.emit(
            Self::burst_step(rng),
            NORMAL,
            &format!("model ({model}) build image success"),
        );
        self.emit(rng.i64(500..=6_000), NORMAL, "preparing environment");
        self.emit(
            rng.i64(2_000..=30_000),
            NORMAL,
            &format!("[{model}] prepare environment success"),
        );
        if rng.u8(0..15) == 0 {
            self.emit(
                Self::burst_step(rng),
                ABNORMAL,
                "Insufficient resources. Scheduling failed: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
            );
            self.emit(
                Self::burst_step(rng),
                ABNORMAL,
                &format!(
                    "Service {service_name} failed. Error: no resources available for the service"
                ),
            );
            return;
        }
        self.emit(
            Self::burst_step(rng),
            NORMAL,
            &format!("[{model}] schedule resource success"),
        );
        self.emit(
            Self::burst_step(rng),
            NORMAL,
            &format!("[{model}] pulling model image"),
        );
        self.emit(
            rng.i64(5_000..=60_000),
            NORMAL,
            &format!("[{model}] pull image success"),
        );
        self.emit(
            Self::burst_step(rng),
            NORMAL,
            &format!("[{model}] starting model"),
        );
        if rng.u8(0..15) == 0 {
            self.emit(
                rng.i64(60_000..=600_000),
                ABNORMAL,
                &format!(
                    "Service {service_name} failed. Error: model health check timed out after 1200s"
                ),
            );
            return;
        }
        self.emit(
            rng.i64(3_000..=45_000),
            NORMAL,
            &format!("[{model}] model start success"),
        );
        self.emit(
            Self::burst_step(rng),
            NORMAL,
            &format!("Service {service_name} started"),
        );
    }

    fn lifecycle(&mut self, rng: &mut fastrand::Rng, service_name: &str) {
        match rng.u8(0..3) {
            0 => {
                self.emit(0, NORMAL, "The service is being stopped");
                self.emit(
                    rng.i64(1_000..=20_000),
                    NORMAL,
                    &format!("Service {service_name} stopped"),
                );
            }
            1 => {
                self.emit(0, NORMAL, "The service is being started");
                self.emit(
                    rng.i64(5_000..=60_000),
                    NORMAL,
                    &format!("Service {service_name} started"),
                );
            }
            _ => {
                self.emit(0, NORMAL, "The service is being updated");
                if rng.u8(0..6) == 0 {
                    self.emit(
                        rng.i64(10_000..=120_000),
                        ABNORMAL,
                        "Failed to update the service. The rollback failed.",
                    );
                } else {
                    self.emit(
                        rng.i64(10_000..=120_000),
                        NORMAL,
                        &format!("Service {service_name} updated"),
                    );
                }
            }
        }
    }

    /// A failing health check reported by several instances in the same millisecond: the
    /// identical twins the shipper must keep apart.
    fn health_flap(&mut self, rng: &mut fastrand::Rng, model: &str) {
        let warning = format!("[{model}] instance health check failed, restarting the instance");
        self.emit(0, ABNORMAL, &warning);
        for _ in 0..rng.u8(1..=2) {
            self.emit(0, ABNORMAL, &warning);
        }
        self.emit(
            rng.i64(5_000..=40_000),
            NORMAL,
            &format!("[{model}] instance restarted"),
        );
    }

    fn scaling(&mut self, rng: &mut fastrand::Rng, service_name: &str, model: &str) {
        let instances = rng.u8(2..=6);
        self.emit(
            0,
            NORMAL,
            &format!("Service {service_name} is scaling to {instances} instances"),
        );
        self.emit(
            rng.i64(500..=3_000),
            NORMAL,
            &format!("[{model}] schedule resource success"),
        );
        self.emit(
            Self::burst_step(rng),
            NORMAL,
            &format!("[{model}] starting model"),
        );
        self.emit(
            rng.i64(3_000..=30_000),
            NORMAL,
            &format!("Service {service_name} scaled to {instances} instances"),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn generate(config: &SimConfig) -> Store {
        let mut store = Store::default();
        populate(&mut store, config, 1_700_000_000_000);
        store
    }

    fn config(services: usize, events: usize, seed: u64, spread: Spread) -> SimConfig {
        SimConfig {
            services,
            events_per_service: events,
            seed,
            spread,
            ..SimConfig::default()
        }
    }

    #[test]
    fn same_seed_gives_same_data_and_other_seed_does_not() {
        let a = generate(&config(3, 500, 7, Spread::Realistic));
        let b = generate(&config(3, 500, 7, Spread::Realistic));
        let c = generate(&config(3, 500, 8, Spread::Realistic));
        assert_eq!(a.service_ids(), b.service_ids());
        assert_ne!(a.service_ids(), c.service_ids());
        for id in a.service_ids() {
            assert_eq!(a.ground_truth(&id), b.ground_truth(&id));
        }
        assert_ne!(
            a.ground_truth(&a.service_ids()[0]),
            c.ground_truth(&c.service_ids()[0])
        );
    }

    #[test]
    fn realistic_data_has_ties_twins_abnormal_events_and_ends_at_end_time() {
        let store = generate(&config(1, 2_000, 42, Spread::Realistic));
        let id = &store.service_ids()[0];
        let truth = store.ground_truth(id);
        assert_eq!(truth.len(), 2_000);
        assert_eq!(truth.last().unwrap().0, 1_700_000_000_000);
        assert!(truth.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        let mut per_ms: HashMap<i64, usize> = HashMap::new();
        let mut per_event: HashMap<&(i64, String, String), usize> = HashMap::new();
        for event in &truth {
            *per_ms.entry(event.0).or_default() += 1;
            *per_event.entry(event).or_default() += 1;
        }
        assert!(per_ms.values().any(|n| *n >= 2), "no ties");
        assert!(per_event.values().any(|n| *n >= 2), "no identical twins");
        let abnormal = truth.iter().filter(|event| event.1 == ABNORMAL).count();
        assert!(
            abnormal > 0 && abnormal < truth.len() / 4,
            "abnormal: {abnormal}"
        );
        let span = truth.last().unwrap().0 - truth[0].0;
        assert!(
            span > 60_000 * 60,
            "events should spread over hours, got {span} ms"
        );
    }

    #[test]
    fn service_ids_look_like_uuids_and_names_count_from_one() {
        let store = generate(&config(2, 0, 3, Spread::Realistic));
        let id = &store.service_ids()[0];
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "4");
        assert_eq!(store.service(id).unwrap().service_name, "svc-1");
    }

    #[test]
    fn same_ms_and_uniform_spreads_place_events_as_asked() {
        let store = generate(&config(1, 50, 1, Spread::SameMillisecond));
        let truth = store.ground_truth(&store.service_ids()[0]);
        assert!(truth.iter().all(|event| event.0 == 1_700_000_000_000));

        let store = generate(&config(1, 5, 1, Spread::Uniform { step_ms: 100 }));
        let times: Vec<i64> = store
            .ground_truth(&store.service_ids()[0])
            .iter()
            .map(|e| e.0)
            .collect();
        let end = 1_700_000_000_000;
        assert_eq!(times, vec![end - 400, end - 300, end - 200, end - 100, end]);
    }

    #[test]
    fn sample_service_comes_first_with_the_nine_page_events() {
        let store = generate(&SimConfig {
            include_sample: true,
            ..config(1, 3, 1, Spread::Realistic)
        });
        assert_eq!(store.service_ids()[0], SAMPLE_SERVICE_ID);
        let truth = store.ground_truth(SAMPLE_SERVICE_ID);
        assert_eq!(truth.len(), 9);
        assert_eq!(
            truth[0],
            (
                1_562_597_251_764,
                "normal".to_owned(),
                "start to deploy service".to_owned()
            )
        );
    }

    #[test]
    fn generating_100k_events_is_fast() {
        let started = std::time::Instant::now();
        let store = generate(&config(1, 100_000, 9, Spread::Realistic));
        let elapsed = started.elapsed();
        assert_eq!(
            store.service(&store.service_ids()[0]).unwrap().rows.len(),
            100_000
        );
        // Generous bound so a debug build on a busy machine passes; release is far faster.
        assert!(
            elapsed < std::time::Duration::from_secs(3),
            "took {elapsed:?}"
        );
    }
}
