//! The simulator's API over real HTTP on 127.0.0.1: parameters and defaults, offset modes,
//! bounds, errors, admin endpoints and the sample fixture.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use simulator::{
    Behaviour, OffsetMode, SAMPLE_SERVICE_ID, SimConfig, SimEvent, SimHandle, Simulator, Spread,
};
use std::time::{Duration, Instant};

const END: i64 = 1_700_000_000_000;

fn start(config: SimConfig) -> SimHandle {
    Simulator::start("127.0.0.1:0".parse().unwrap(), config).unwrap()
}

fn config(events: usize, spread: Spread) -> SimConfig {
    SimConfig {
        services: 1,
        events_per_service: events,
        seed: 11,
        end_at_ms: Some(END),
        spread,
        ..SimConfig::default()
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
    project: String,
    token: String,
}

impl Api {
    fn new(sim: &SimHandle) -> Self {
        Self {
            client: http_client(),
            base: sim.base_url(),
            project: sim.project_id(),
            token: sim.token(),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> reqwest::Response {
        // Test values are plain ASCII, so no escaping is needed.
        let query: Vec<String> = query
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        self.client
            .get(format!("{}{}?{}", self.base, path, query.join("&")))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap()
    }

    async fn events_raw(&self, service: &str, query: &[(&str, String)]) -> reqwest::Response {
        self.get(
            &format!("/v1/{}/services/{service}/events", self.project),
            query,
        )
        .await
    }

    async fn events(&self, service: &str, query: &[(&str, String)]) -> Value {
        let response = self.events_raw(service, query).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    async fn services(&self, query: &[(&str, String)]) -> Value {
        let response = self
            .get(&format!("/v1/{}/services", self.project), query)
            .await;
        assert_eq!(response.status(), 200);
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }
}

fn q(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// (occur_time, event_type, event_info) of a response's rows.
fn rows(page: &Value) -> Vec<(i64, String, String)> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["occur_time"].as_i64().unwrap(),
                row["event_type"].as_str().unwrap().to_owned(),
                row["event_info"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn defaults_are_newest_first_up_to_1000_rows_with_total_count() {
    let sim = start(config(1_500, Spread::Realistic));
    let api = Api::new(&sim);
    let service = &sim.service_ids()[0];
    let page = api.events(service, &[]).await;
    let truth = sim.events(service);
    assert_eq!(page["service_id"], json!(service));
    assert_eq!(page["service_name"], json!("svc-1"));
    assert_eq!(page["total_count"], json!(1_500));
    assert_eq!(page["count"], json!(1_000));
    let mut newest_first = truth.clone();
    newest_first.reverse();
    assert_eq!(rows(&page), newest_first[..1_000].to_vec());
    assert_eq!(rows(&page)[0].0, END);

    // The explicit defaults give the same page.
    let explicit = q(&[
        ("offset", "0"),
        ("limit", "1000"),
        ("sort_by", "occur_time"),
        ("order", "desc"),
    ]);
    assert_eq!(api.events(service, &explicit).await, page);
}

#[tokio::test]
async fn order_asc_is_the_ground_truth_and_stable_inside_one_millisecond() {
    let sim = start(config(300, Spread::SameMillisecond));
    let api = Api::new(&sim);
    let service = &sim.service_ids()[0];
    let asc = api.events(service, &q(&[("order", "asc")])).await;
    assert_eq!(rows(&asc), sim.events(service));
    assert_eq!(api.events(service, &q(&[("order", "asc")])).await, asc);
    let mut desc = rows(&api.events(service, &q(&[("order", "desc")])).await);
    desc.reverse();
    assert_eq!(desc, rows(&asc));
}

#[tokio::test]
async fn event_type_filters_rows_and_total_count() {
    let sim = start(config(2_000, Spread::Realistic));
    let api = Api::new(&sim);
    let service = &sim.service_ids()[0];
    let truth = sim.events(service);
    for kind in ["normal", "abnormal"] {
        let page = api
            .events(service, &q(&[("event_type", kind), ("order", "asc")]))
            .await;
        let expected: Vec<_> = truth.iter().filter(|row| row.1 == kind).cloned().collect();
        assert!(!expected.is_empty());
        assert_eq!(page["total_count"], json!(expected.len()));
        assert_eq!(rows(&page), expected[..expected.len().min(1000)].to_vec());
    }
}

#[tokio::test]
async fn time_bounds_are_inclusive_by_default_and_switchable() {
    // Events at END-900, END-800, …, END.
    let sim = start(config(10, Spread::Uniform { step_ms: 100 }));
    let api = Api::new(&sim);
    let service = sim.service_ids()[0].clone();
    let window = [
        ("start_time", (END - 500).to_string()),
        ("end_time", (END - 200).to_string()),
        ("order", "asc".to_owned()),
    ];
    let times = |page: Value| {
        rows(&page)
            .into_iter()
            .map(|row| row.0 - END)
            .collect::<Vec<_>>()
    };

    assert_eq!(
        times(api.events(&service, &window).await),
        vec![-500, -400, -300, -200]
    );
    sim.set_behaviour(Behaviour {
        start_inclusive: false,
        ..Behaviour::default()
    });
    assert_eq!(
        times(api.events(&service, &window).await),
        vec![-400, -300, -200]
    );
    sim.set_behaviour(Behaviour {
        end_inclusive: false,
        ..Behaviour::default()
    });
    assert_eq!(
        times(api.events(&service, &window).await),
        vec![-500, -400, -300]
    );
    sim.set_behaviour(Behaviour {
        start_inclusive: false,
        end_inclusive: false,
        ..Behaviour::default()
    });
    let page = api.events(&service, &window).await;
    assert_eq!(page["total_count"], json!(2));
    assert_eq!(times(page), vec![-400, -300]);

    // Only one bound given.
    sim.set_behaviour(Behaviour::default());
    let page = api
        .events(&service, &[("start_time", (END - 100).to_string())])
        .await;
    assert_eq!(times(page), vec![0, -100]);
}

/// Asks `offset=1&limit=1000` of a server that serves at most 4 rows per page.
async fn offset_one_with_clamp(
    mode: OffsetMode,
    offset: &str,
) -> (Value, Vec<(i64, String, String)>) {
    let sim = start(config(20, Spread::Uniform { step_ms: 10 }));
    sim.set_behaviour(Behaviour {
        offset_mode: mode,
        max_page_size: Some(4),
        ..Behaviour::default()
    });
    let api = Api::new(&sim);
    let service = &sim.service_ids()[0];
    let page = api
        .events(
            service,
            &q(&[("order", "asc"), ("offset", offset), ("limit", "1000")]),
        )
        .await;
    (page, sim.events(service))
}

#[tokio::test]
async fn page_offsets_skip_whole_served_pages() {
    let (page, truth) = offset_one_with_clamp(OffsetMode::Page, "2").await;
    assert_eq!(page["total_count"], json!(20));
    assert_eq!(page["count"], json!(4));
    assert_eq!(rows(&page), truth[8..12].to_vec());
}

#[tokio::test]
async fn record_offsets_skip_rows() {
    let (page, truth) = offset_one_with_clamp(OffsetMode::Record, "6").await;
    assert_eq!(page["count"], json!(4));
    assert_eq!(rows(&page), truth[6..10].to_vec());
}

#[tokio::test]
async fn floored_record_offsets_skip_to_the_page_boundary() {
    let (page, truth) = offset_one_with_clamp(OffsetMode::RecordFloored, "6").await;
    assert_eq!(rows(&page), truth[4..8].to_vec());
    let (page, _) = offset_one_with_clamp(OffsetMode::RecordFloored, "3").await;
    assert_eq!(rows(&page), truth[0..4].to_vec());
}

#[tokio::test]
async fn limit_below_the_clamp_is_served_and_offset_past_the_end_is_empty() {
    let sim = start(config(20, Spread::Uniform { step_ms: 10 }));
    sim.set_behaviour(Behaviour {
        max_page_size: Some(8),
        ..Behaviour::default()
    });
    let api = Api::new(&sim);
    let service = &sim.service_ids()[0];
    let page = api
        .events(
            service,
            &q(&[("limit", "3"), ("offset", "1"), ("order", "asc")]),
        )
        .await;
    assert_eq!(rows(&page), sim.events(service)[3..6].to_vec());
    let page = api
        .events(service, &q(&[("limit", "5"), ("offset", "4")]))
        .await;
    assert_eq!(page["count"], json!(0));
    assert_eq!(page["total_count"], json!(20));
}

async fn error_body(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn bad_parameters_are_400_model_arts_0101() {
    let sim = start(config(5, Spread::Realistic));
    let api = Api::new(&sim);
    let service = &sim.service_ids()[0];
    let bad = [
        ("event_type", "WARNING"),
        ("limit", "0"),
        ("limit", "1001"),
        ("offset", "-1"),
        ("start_time", "now"),
        ("sort_by", "event_type"),
        ("order", "random"),
    ];
    for (name, value) in bad {
        let body = error_body(api.events_raw(service, &q(&[(name, value)])).await, 400).await;
        assert_eq!(
            body["error_code"],
            json!("ModelArts.0101"),
            "{name}={value}"
        );
        assert!(body["error_msg"].as_str().unwrap().contains(name));
    }
    let response = api
        .get(
            &format!("/v1/{}/services", api.project),
            &q(&[("limit", "5000")]),
        )
        .await;
    assert_eq!(
        error_body(response, 400).await["error_code"],
        json!("ModelArts.0101")
    );
}

#[tokio::test]
async fn auth_project_service_and_path_errors_have_model_arts_bodies() {
    let sim = start(config(5, Spread::Realistic));
    let api = Api::new(&sim);
    let service = &sim.service_ids()[0];
    let url = format!("{}/v1/{}/services/{service}/events", api.base, api.project);

    let missing = error_body(api.client.get(&url).send().await.unwrap(), 401).await;
    assert_eq!(missing["error_code"], json!("APIG.0301"));
    assert!(missing["request_id"].is_string());
    let wrong = api
        .client
        .get(&url)
        .header("X-Auth-Token", "stale")
        .send()
        .await
        .unwrap();
    assert!(wrong.headers().contains_key("x-request-id"));
    let wrong = error_body(wrong, 401).await;
    assert_eq!(wrong["error_code"], json!("APIG.0307"));
    assert!(
        !wrong.to_string().contains(&api.token),
        "the token must not be echoed"
    );

    let other_project = api
        .get(
            &format!("/v1/ffffffffffffffffffffffffffffffff/services/{service}/events"),
            &[],
        )
        .await;
    assert_eq!(
        error_body(other_project, 403).await["error_code"],
        json!("ModelArts.0210")
    );

    let unknown = error_body(api.events_raw("no-such-service", &[]).await, 404).await;
    assert_eq!(unknown["error_code"], json!("ModelArts.3502"));
    assert!(
        unknown["error_msg"]
            .as_str()
            .unwrap()
            .contains("no-such-service")
    );

    let nowhere = error_body(api.get("/v2/whatever", &[]).await, 404).await;
    assert_eq!(nowhere["error_code"], json!("APIG.0101"));
    let wrong_method = api
        .client
        .delete(&url)
        .header("X-Auth-Token", &api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 404);
}

#[tokio::test]
async fn admin_endpoints_add_services_and_rows_seen_by_the_next_request() {
    let sim = start(config(0, Spread::Realistic));
    let api = Api::new(&sim);
    let admin = |path: &str| format!("{}/admin/services{path}", api.base);

    let added = api
        .client
        .post(admin(""))
        .body(
            json!({"service_id": "svc-x", "service_name": "fraud", "status": "deploying"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    assert!(sim.service_ids().contains(&"svc-x".to_owned()));
    assert_eq!(api.events("svc-x", &[]).await["total_count"], json!(0));

    let huge = "x".repeat(1 << 20);
    let rows_body = json!([
        {"occur_time": 100, "event_type": "normal", "event_info": "start to deploy service"},
        {"sort_time": 100, "raw": {"occur_time": "100", "event_type": "normal", "event_info": "string time"}},
        {"sort_time": 150, "raw": {"event_type": "abnormal"}},
        {"sort_time": 200, "raw": {"occur_time": 200, "event_type": "WARNING", "event_info": huge}},
    ]);
    let response = api
        .client
        .post(admin("/svc-x/events"))
        .body(rows_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let page = api.events("svc-x", &q(&[("order", "asc")])).await;
    assert_eq!(page["count"], json!(4));
    assert_eq!(
        page["events"][1],
        json!({"occur_time": "100", "event_type": "normal", "event_info": "string time"})
    );
    assert_eq!(page["events"][2], json!({"event_type": "abnormal"}));
    assert_eq!(
        page["events"][3]["event_info"].as_str().unwrap().len(),
        1 << 20
    );
    // The raw rows' own event_type is what the filter sees.
    assert_eq!(
        api.events("svc-x", &q(&[("event_type", "abnormal")])).await["total_count"],
        json!(1)
    );

    let truth = sim.events("svc-x");
    assert_eq!(truth.len(), 2, "only the well-formed rows are ground truth");
    assert_eq!(
        truth[0],
        (
            100,
            "normal".to_owned(),
            "start to deploy service".to_owned()
        )
    );
    assert_eq!(truth[1].1, "WARNING");

    let unknown = api
        .client
        .post(admin("/nope/events"))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_body(unknown, 404).await["error_code"],
        json!("ModelArts.3502")
    );
    let malformed = api
        .client
        .post(admin("/svc-x/events"))
        .body("[{\"occur\": 1}]")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        sim.request_count(),
        3,
        "admin requests are not API requests"
    );
}

#[tokio::test]
async fn handle_adds_events_and_late_ones_keep_their_place() {
    let sim = start(config(0, Spread::Realistic));
    sim.add_service("late", "late-svc");
    let api = Api::new(&sim);
    sim.add_events(
        "late",
        vec![
            SimEvent::new(10, "normal", "a"),
            SimEvent::new(30, "normal", "c"),
        ],
    );
    assert_eq!(api.events("late", &[]).await["total_count"], json!(2));
    sim.add_events(
        "late",
        vec![
            SimEvent::new(20, "abnormal", "b"),
            SimEvent::new(10, "normal", "a"),
        ],
    );
    let page = api.events("late", &q(&[("order", "asc")])).await;
    let infos: Vec<String> = rows(&page).into_iter().map(|row| row.2).collect();
    assert_eq!(infos, vec!["a", "a", "b", "c"]);
}

#[tokio::test]
async fn events_after_request_arrive_between_two_page_requests() {
    let sim = start(config(10, Spread::Uniform { step_ms: 10 }));
    let api = Api::new(&sim);
    let service = sim.service_ids()[0].clone();
    sim.add_events_after_request(
        2,
        &service,
        vec![
            SimEvent::new(END + 5, "normal", "arrived"),
            SimEvent::new(END - 95, "normal", "late"),
        ],
    );
    // A services-list request does not count as an events request.
    api.services(&[]).await;
    assert_eq!(api.events(&service, &[]).await["total_count"], json!(10));
    assert_eq!(api.events(&service, &[]).await["total_count"], json!(10));
    let third = api.events(&service, &[]).await;
    assert_eq!(third["total_count"], json!(12));
    assert_eq!(third["events"][0]["event_info"], json!("arrived"));
    // Already past: added at once.
    sim.add_events_after_request(1, &service, vec![SimEvent::new(END, "normal", "now")]);
    assert_eq!(sim.events(&service).len(), 13);
}

#[tokio::test]
async fn services_list_filters_sorts_and_pages() {
    let sim = start(SimConfig {
        services: 5,
        events_per_service: 3,
        include_sample: true,
        ..config(0, Spread::Realistic)
    });
    let api = Api::new(&sim);
    sim.add_service("added", "svc-extra");
    let all = api.services(&[]).await;
    assert_eq!(all["total_count"], json!(7));
    assert_eq!(all["count"], json!(7));
    let first = &all["services"][0];
    assert_eq!(
        first["service_id"],
        json!("added"),
        "newest publish_at first by default"
    );
    assert_eq!(first["infer_type"], json!("real-time"));
    assert_eq!(first["status"], json!("running"));
    assert!(first["publish_at"].is_i64());

    let named = api
        .services(&q(&[
            ("service_name", "svc-"),
            ("sort_by", "service_name"),
            ("order", "asc"),
        ]))
        .await;
    let names: Vec<&str> = named["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["svc-1", "svc-2", "svc-3", "svc-4", "svc-5", "svc-extra"]
    );

    let paged = api
        .services(&q(&[
            ("sort_by", "service_name"),
            ("order", "asc"),
            ("limit", "2"),
            ("offset", "1"),
        ]))
        .await;
    assert_eq!(paged["total_count"], json!(7));
    let names: Vec<&str> = paged["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["svc-3", "svc-4"],
        "offset counts pages by default"
    );

    let client = http_client();
    let admin = format!("{}/admin/services", api.base);
    let body =
        json!({"service_id": "dead", "service_name": "broken", "status": "failed"}).to_string();
    client.post(&admin).body(body).send().await.unwrap();
    let failed = api.services(&q(&[("status", "failed")])).await;
    assert!(
        failed["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["service_id"] == json!("dead"))
    );
    assert!(
        failed["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == json!("failed"))
    );
}

#[tokio::test]
async fn sample_fixture_is_served_as_on_the_api_page() {
    let sim = start(SimConfig {
        include_sample: true,
        services: 0,
        ..SimConfig::default()
    });
    let api = Api::new(&sim);
    assert_eq!(sim.service_ids(), vec![SAMPLE_SERVICE_ID.to_owned()]);
    let page = api.events(SAMPLE_SERVICE_ID, &q(&[("order", "asc")])).await;
    let expected = json!({
        "service_id": "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e", "service_name": "zcjtest-07085",
        "count": 9, "total_count": 9,
        "events": [
            {"occur_time": 1562597251764u64, "event_type": "normal", "event_info": "start to deploy service"},
            {"occur_time": 1562597251788u64, "event_type": "normal", "event_info": "building image for model [zcjtestTF 3.0.0]"},
            {"occur_time": 1562597251805u64, "event_type": "normal", "event_info": "model (zcjtestTF 3.0.0) build image success"},
            {"occur_time": 1562597255744u64, "event_type": "normal", "event_info": "preparing environment"},
            {"occur_time": 1562597275915u64, "event_type": "normal", "event_info": "[zcjtestTF 3.0.0] prepare environment success"},
            {"occur_time": 1562597275921u64, "event_type": "normal", "event_info": "[zcjtestTF 3.0.0] schedule resource success"},
            {"occur_time": 1562597275928u64, "event_type": "normal", "event_info": "[zcjtestTF 3.0.0] pulling model image"},
            {"occur_time": 1562597332570u64, "event_type": "normal", "event_info": "[zcjtestTF 3.0.0] pull image success"},
            {"occur_time": 1562597332582u64, "event_type": "normal", "event_info": "[zcjtestTF 3.0.0] starting model"}
        ]
    });
    assert_eq!(page, expected);
}

#[tokio::test]
async fn same_seed_serves_the_same_data() {
    let a = start(SimConfig {
        services: 2,
        ..config(400, Spread::Realistic)
    });
    let b = start(SimConfig {
        services: 2,
        ..config(400, Spread::Realistic)
    });
    assert_eq!(a.service_ids(), b.service_ids());
    let service = &a.service_ids()[1];
    assert_eq!(
        Api::new(&a).events(service, &[]).await,
        Api::new(&b).events(service, &[]).await
    );
}

#[tokio::test]
async fn request_log_records_path_query_status_and_rows() {
    let sim = start(config(7, Spread::Realistic));
    let api = Api::new(&sim);
    let service = sim.service_ids()[0].clone();
    api.events(&service, &q(&[("limit", "5"), ("order", "asc")]))
        .await;
    api.events_raw(&service, &q(&[("limit", "0")])).await;
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].number, 1);
    assert_eq!(
        log[0].path,
        format!("/v1/{}/services/{service}/events", api.project)
    );
    assert_eq!(log[0].query.get("limit").map(String::as_str), Some("5"));
    assert_eq!((log[0].status, log[0].rows), (200, 5));
    assert_eq!((log[1].status, log[1].rows), (400, 0));
    assert_eq!(sim.request_count(), 2);
}

#[tokio::test]
async fn latency_delays_each_api_response() {
    let sim = start(config(3, Spread::Realistic));
    sim.set_behaviour(Behaviour {
        latency: Duration::from_millis(60),
        ..Behaviour::default()
    });
    let api = Api::new(&sim);
    let started = Instant::now();
    api.events(&sim.service_ids()[0], &[]).await;
    // A lower bound only: the response cannot come before the configured delay.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

/// A reqwest client; reqwest is built without a TLS crypto provider, and building any client
/// needs one installed.
fn http_client() -> reqwest::Client {
    // Err only means another test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn removed_services_are_gone_and_status_changes_show_in_the_list() {
    let sim = start(SimConfig {
        services: 3,
        ..config(5, Spread::Realistic)
    });
    let api = Api::new(&sim);
    let ids = sim.service_ids();

    assert!(sim.remove_service(&ids[0]));
    assert!(!sim.remove_service(&ids[0]));
    let gone = error_body(api.events_raw(&ids[0], &[]).await, 404).await;
    assert_eq!(gone["error_code"], "ModelArts.3502");
    let listed = api.services(&[]).await;
    assert_eq!(listed["total_count"], 2);
    assert!(!listed.to_string().contains(&ids[0]));
    // The services after the removed one still answer with their own rows.
    assert_eq!(api.events(&ids[2], &[]).await["count"], 5);

    assert!(sim.set_service_status(&ids[1], "stopped"));
    assert!(!sim.set_service_status(&ids[0], "stopped"));
    let stopped = api.services(&q(&[("status", "stopped")])).await;
    assert_eq!(stopped["total_count"], 1);
    assert_eq!(stopped["services"][0]["service_id"], ids[1].as_str());
    let running = api.services(&q(&[("status", "running")])).await;
    assert_eq!(running["total_count"], 1);
    assert_eq!(running["services"][0]["service_id"], ids[2].as_str());
}
